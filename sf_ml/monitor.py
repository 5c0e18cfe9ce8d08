"""Stage ``monitor``: compare past alert lists with what happened, once their 18 months are known.

Every scoring output under ``scores_dir`` (a directory holding the ``predictions.parquet`` and
``manifest.json`` that ``score`` writes, at any depth) is joined on ``siren`` and ``periode`` with
the realised ``failure_18m`` of a features panel built from a later export: a company counts
when that panel knows its label, i.e. when the judgments it was built from cover the 18 months
after the scored month. Scorings with no such company yet are listed as pending.

The active MLflow run (one is opened with :func:`sf_ml.tracking.stage_run` if none is) receives,
overall and per scoring month: average precision, ROC AUC, Brier, expected calibration error,
mean probability against the realised rate, and the precision and recall of each alert level
(``risque_modere`` counts the companies at or above its threshold, ``risque_fort`` included);
per NAF section and per region the same table (``by_naf_section.csv``, ``by_region.csv``);
and the reliability and precision-recall plots.

matplotlib is imported inside the plotting function only: it is heavy and only needed to draw.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from sklearn.metrics import precision_recall_curve

from sf_ml.evaluation import score_metrics
from sf_ml.panel import TARGET
from sf_ml.spark import get_spark
from sf_ml.tracking import stage_run

log = logging.getLogger(__name__)

PREDICTIONS = "predictions.parquet"
MANIFEST = "manifest.json"
GROUPINGS = ("naf_section", "region")
LEVELS = ("risque_fort", "risque_modere")


class MonitoringError(ValueError):
    """Monitoring inputs that cannot be used."""


def find_scorings(scores_dir: str | Path) -> list[Path]:
    """The scoring output directories under ``scores_dir`` (itself included), sorted by path.

    Raises:
        MonitoringError: The directory does not exist or holds no scoring output.
    """
    root = Path(scores_dir)
    if not root.is_dir():
        raise MonitoringError(f"scores directory {scores_dir} does not exist")
    found = sorted({p.parent for p in root.rglob(PREDICTIONS) if (p.parent / MANIFEST).exists()})
    if not found:
        raise MonitoringError(f"no scoring output ({PREDICTIONS} with {MANIFEST}) under {scores_dir}")
    return found


def read_predictions(directories: list[Path]) -> pd.DataFrame:
    """The predictions of every scoring, with ``scoring`` (the directory) and ``periode`` as a date."""
    frames = []
    for directory in directories:
        frame = pd.read_parquet(directory / PREDICTIONS,
                                columns=["siren", "periode", *GROUPINGS, "probability", "alert", "model_version"])
        frames.append(frame.assign(scoring=str(directory), periode=pd.to_datetime(frame["periode"]).dt.date))
    return pd.concat(frames, ignore_index=True)


def realised_outcomes(spark, features_dir: str | Path, periodes: list) -> pd.DataFrame:
    """``siren, periode, failure_18m`` of the panel's rows with a known label at ``periodes``."""
    panel = spark.read.parquet(str(features_dir))
    known = panel.where(F.col("periode").isin(list(periodes)) & F.col(TARGET).isNotNull())
    frame = known.select(F.col("siren").cast("string"), "periode", F.col(TARGET).cast("int")).toPandas()
    return frame.assign(periode=pd.to_datetime(frame["periode"]).dt.date)


def outcome_metrics(y: np.ndarray, p: np.ndarray, alert: np.ndarray) -> dict[str, float]:
    """Ranking, calibration and alert metrics of predictions ``p``/``alert`` against outcomes ``y``.

    Returns:
        :func:`sf_ml.evaluation.score_metrics` plus ``<level>_precision``, ``<level>_recall``
        and ``<level>_alerts`` (``risque_modere``: at or above that level).
    """
    y = np.asarray(y, dtype=int)
    metrics = score_metrics(y, p)
    flagged = {"risque_fort": alert == "risque_fort"}
    flagged["risque_modere"] = flagged["risque_fort"] | (alert == "risque_modere")
    for level in LEVELS:
        hits = int((flagged[level] & (y == 1)).sum())
        alerts = int(flagged[level].sum())
        metrics[f"{level}_alerts"] = float(alerts)
        metrics[f"{level}_precision"] = hits / alerts if alerts else float("nan")
        metrics[f"{level}_recall"] = hits / y.sum() if y.sum() else float("nan")
    return metrics


def metrics_by(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """:func:`outcome_metrics` per value of ``column`` (one row each, largest groups first)."""
    rows = []
    for value, group in frame.groupby(frame[column].fillna("(inconnu)"), sort=False):
        metrics = outcome_metrics(group[TARGET].to_numpy(), group["probability"].to_numpy(float),
                                  group["alert"].to_numpy(str))
        rows.append({column: value, **metrics})
    return pd.DataFrame(rows).sort_values(["rows", column], ascending=[False, True]).reset_index(drop=True)


def _figures(frame: pd.DataFrame):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, p = frame[TARGET].to_numpy(int), frame["probability"].to_numpy(float)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    # Reliability on equal-count bins, log scale: risks of a few percent are the common case.
    bins = pd.qcut(p, q=min(10, max(1, len(np.unique(p)))), duplicates="drop")
    table = pd.DataFrame({"p": p, "y": y}).groupby(bins, observed=True).mean()
    observed = table["y"][table["y"] > 0]
    floor = max(1e-4, min(float(table["p"].min()), float(observed.min()) if len(observed) else 1.0) / 2)
    left.plot([floor, 1], [floor, 1], color="grey", linestyle="--", label="perfect calibration")
    left.plot(table["p"], table["y"].clip(lower=floor), "o-", label="realised rate per decile")
    left.set(xscale="log", yscale="log", xlabel="mean predicted probability",
             ylabel="realised failure rate", title="Calibration of past alerts")
    left.legend()
    precision, recall, _ = precision_recall_curve(y, p)
    right.plot(recall, precision)
    right.axhline(y.mean(), color="grey", linestyle="--", label=f"base rate {y.mean():.3f}")
    right.set(xlabel="recall", ylabel="precision", title="Precision-recall of past scores")
    right.legend()
    figure.tight_layout()
    return figure


def monitor_scorings(scores_dir: str | Path, features_dir: str | Path, spark=None) -> dict[str, Any]:
    """Compare every past scoring under ``scores_dir`` with the outcomes known in ``features_dir``.

    Args:
        scores_dir: Directory of scoring outputs (see :func:`find_scorings`).
        features_dir: Features panel from an export whose judgments cover the months to check.
        spark: Spark session (default: :func:`sf_ml.spark.get_spark`).

    Returns:
        ``metrics`` (overall), ``by_month`` (one row per scored month), ``by_naf_section``,
        ``by_region`` (frames), ``evaluated`` and ``pending`` (scoring directories) and ``run_id``.

    Raises:
        MonitoringError: No scoring output, or no scored company has a known outcome yet.
    """
    if mlflow.active_run() is None:
        context = stage_run("monitor", dict(scores_dir=str(scores_dir), features_dir=str(features_dir)))
    else:
        context = contextlib.nullcontext(mlflow.active_run())
    with context as run:
        return _monitor(scores_dir, features_dir, spark, run.info.run_id)


def _monitor(scores_dir, features_dir, spark, run_id) -> dict[str, Any]:
    spark = spark or get_spark("sf_ml-monitor")
    predictions = read_predictions(find_scorings(scores_dir))
    outcomes = realised_outcomes(spark, features_dir, sorted(predictions["periode"].unique()))
    joined = predictions.merge(outcomes, on=["siren", "periode"], how="inner")
    evaluated = sorted(joined["scoring"].unique())
    pending = sorted(set(predictions["scoring"]) - set(evaluated))
    if joined.empty:
        raise MonitoringError(
            f"no scored company of {scores_dir} has a known outcome in {features_dir}: its judgments "
            f"do not cover 18 months after any scored month ({len(pending)} scoring(s) pending)"
        )
    overall = outcome_metrics(joined[TARGET].to_numpy(), joined["probability"].to_numpy(float),
                              joined["alert"].to_numpy(str))
    by_month = metrics_by(joined.assign(month=joined["periode"].astype(str)), "month").sort_values("month")
    tables = {column: metrics_by(joined, column) for column in GROUPINGS}
    log.info("monitor: %d scored companies with known outcomes in %d scoring(s), %d pending; AP %.3f, "
             "mean probability %.4f for a realised rate %.4f", len(joined), len(evaluated), len(pending),
             overall["average_precision"], overall["mean_probability"], overall["positive_rate"])

    mlflow.log_metrics({k: float(v) for k, v in overall.items() if np.isfinite(v)})
    mlflow.log_metrics({"scorings_evaluated": len(evaluated), "scorings_pending": len(pending),
                        "companies_without_outcome": float(len(predictions) - len(joined))})
    mlflow.log_text(by_month.to_csv(index=False), "by_month.csv")
    for column, table in tables.items():
        mlflow.log_text(table.to_csv(index=False), f"by_{column}.csv")
    mlflow.log_dict({"evaluated": evaluated, "pending": pending}, "scorings.json")
    mlflow.log_figure(_figures(joined), "monitor.png")
    return {"metrics": overall, "by_month": by_month, "by_naf_section": tables["naf_section"],
            "by_region": tables["region"], "evaluated": evaluated, "pending": pending, "run_id": run_id}


def format_summary(summary: dict[str, Any]) -> str:
    """A few lines for the terminal: overall metrics and the months evaluated."""
    m = summary["metrics"]
    lines = [f"{len(summary['evaluated'])} scoring(s) evaluated, {len(summary['pending'])} pending",
             f"AP {m['average_precision']:.3f}  ROC AUC {m['roc_auc']:.3f}  Brier {m['brier']:.4f}  "
             f"mean probability {m['mean_probability']:.4f} vs realised {m['positive_rate']:.4f}"]
    for level in LEVELS:
        lines.append(f"{level}: {m[f'{level}_alerts']:.0f} alerts, precision {m[f'{level}_precision']:.2f}, "
                     f"recall {m[f'{level}_recall']:.2f}")
    lines.append(json.dumps({"run_id": summary["run_id"]}))
    return "\n".join(lines)
