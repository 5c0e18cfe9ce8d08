"""Stage ``backtest``: the honest forward measure, date by date.

For each prediction date T the model is trained only on periodes whose 18-month outcome was
known at T (periodes up to T - 18 months), its alert thresholds are chosen on companies held out
of that training, and it then scores every company in scope at T; the scores are compared with
the outcomes realised afterwards. Each date is a nested run; the parent logs the series.

matplotlib is imported inside the plotting function only: it is heavy and only needed to draw.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import time
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME
from pyspark.sql import functions as F
from tqdm import tqdm

from sf_ml import evaluation as E
from sf_ml.config import ExperimentConfig
from sf_ml.contract import TARGET_HORIZON_MONTHS
from sf_ml.panel import TARGET, add_months, first_of_month
from sf_ml.spark import get_spark
from sf_ml.tracking import stage_run
from sf_ml.train import fit, training_sets

log = logging.getLogger(__name__)
SERIES_METRICS = ("average_precision", "roc_auc", "positive_rate", "risque_fort_precision",
                  "risque_fort_recall", "risque_modere_precision", "risque_modere_recall")


def parse_dates(prediction_dates: str | list[str]) -> list[dt.date]:
    """Prediction dates from a list or a comma-separated string, as sorted firsts of month."""
    if isinstance(prediction_dates, str):
        prediction_dates = [d for d in (x.strip() for x in prediction_dates.split(",")) if d]
    if not prediction_dates:
        raise ValueError("no prediction date given")
    return sorted({first_of_month(d) for d in prediction_dates})


def _log_series(table: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mlflow.log_text(table.to_csv(index=False), "backtest/metrics_by_date.csv")
    fig, ax = plt.subplots(figsize=(9, 4))
    dates = pd.to_datetime(table["prediction_date"])
    ax.plot(dates, table["average_precision"], "o-", label="average precision")
    ax.plot(dates, table["positive_rate"], "s--", label="base rate (failures within 18 months)")
    ax.plot(dates, table["risque_fort_precision"], "^-", label="precision, risque fort")
    ax.plot(dates, table["risque_modere_recall"], "v-", label="recall, risque modere")
    ax.set_ylim(0, 1)
    ax.set_xlabel("prediction date")
    ax.legend(fontsize=8)
    ax.set_title("Backtest: trained on outcomes known at the date, scored on all companies in scope")
    fig.tight_layout()
    mlflow.log_figure(fig, "backtest/metrics_by_date.png")
    plt.close(fig)


def backtest(
    features_dir: str | Path,
    config: ExperimentConfig,
    prediction_dates: str | list[str],
    train_start: str | None = None,
    seed: int | None = None,
    spark=None,
) -> pd.DataFrame:
    """Train as of each prediction date, predict at it, evaluate against realised outcomes.

    Args:
        features_dir: Features panel (parquet partitioned by periode).
        config: Experiment configuration.
        prediction_dates: Dates T (ISO, list or comma-separated).
        train_start: First training periode (default: the panel's first periode).
        seed: Seed of split, resampling and models; default ``config.seed``.
        spark: Spark session (default: :func:`sf_ml.spark.get_spark`).

    Returns:
        One row per date: ``train_end``, ``train_last_periode`` (the latest periode the model
        was trained on, whose label window ends 18 months later, at the date at the latest),
        the metrics of :func:`sf_ml.evaluation.evaluate` and the thresholds used.

    Raises:
        ValueError: A date whose outcomes are not yet known (no labelled row at T).
    """
    seed = config.seed if seed is None else int(seed)
    spark = spark or get_spark("sf_ml-backtest")
    dates = parse_dates(prediction_dates)
    panel = spark.read.parquet(str(features_dir))
    if train_start is None:
        train_start = panel.agg(F.min("periode")).first()[0].isoformat()
    if mlflow.active_run() is None:
        params = dict(features_dir=str(features_dir), config=config.name, seed=seed, train_start=train_start,
                      prediction_dates=",".join(d.isoformat() for d in dates))
        context = stage_run("backtest", params, config.to_dict())
    else:
        context = contextlib.nullcontext(mlflow.active_run())
    rows = []
    with context, tqdm(total=len(dates), desc="backtest", unit="date") as bar:
        for step, date in enumerate(dates):
            train_end = add_months(date, -TARGET_HORIZON_MONTHS)
            began = time.monotonic()
            with mlflow.start_run(nested=True, run_name=f"backtest-{date}", tags={
                MLFLOW_RUN_NAME: f"backtest-{date}", "stage": "backtest_date", "config_name": config.name,
            }):
                mlflow.log_params({"prediction_date": date.isoformat(), "train_start": train_start,
                                   "train_end": train_end.isoformat()})
                sets = training_sets(spark, features_dir, config, train_start, train_end.isoformat(), seed)
                mlflow.log_param("train_last_periode", sets.last_periode.isoformat())
                model, fit_metrics = fit(config, sets, seed)
                thresholds = E.choose_thresholds(*E.collect_predictions(model.transform(sets.test)))
                at_date = panel.where((F.col("periode") == F.lit(date)) & F.col(TARGET).isNotNull())
                y, p = E.collect_predictions(model.transform(at_date))
                if len(y) == 0:
                    raise ValueError(
                        f"no company with a known outcome at {date}: its 18-month horizon is not covered "
                        "by the judgments of the panel"
                    )
                metrics = E.evaluate(y, p, thresholds)
                mlflow.log_metrics({k: float(v) for k, v in {**fit_metrics, **metrics}.items() if v == v})
                mlflow.log_metrics({f"threshold_{k}": v for k, v in thresholds.items()})
            row = {"prediction_date": date.isoformat(), "train_end": train_end.isoformat(),
                   "train_last_periode": sets.last_periode.isoformat(),
                   **metrics, **{f"threshold_{k}": v for k, v in thresholds.items()},
                   "seconds": time.monotonic() - began}
            rows.append(row)
            mlflow.log_metrics({f"backtest_{k}": float(row[k]) for k in SERIES_METRICS}, step=step)
            log.info("backtest | %s: AP %.3f, base rate %.3f | %.1f s", date, metrics["average_precision"],
                     metrics["positive_rate"], row["seconds"])
            bar.update(1)
        table = pd.DataFrame(rows)
        _log_series(table)
        mlflow.log_metrics({
            "backtest_mean_average_precision": float(table["average_precision"].mean()),
            "backtest_mean_positive_rate": float(table["positive_rate"].mean()),
        })
    return table
