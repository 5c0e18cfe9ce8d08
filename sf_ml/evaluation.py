"""Evaluation of failure probabilities: scores, alert thresholds, plots.

Metrics are computed on the driver from two numpy arrays (label, probability of failure) collected
from a predictions frame. Alert levels follow Signaux Faibles: ``risque fort`` at the threshold
maximising F0.5 (precision first), ``risque modéré`` at the one maximising F2 (recall first),
both chosen on the grouped test set and then applied unchanged to other sets (out-of-time).
Each level flags at most its :data:`MAX_ALERT_SHARE` of the rows: where the model barely ranks
(a small world, a weak config), the F-beta optimum is to flag everyone, which is no alert list.

matplotlib is imported inside the plotting functions only: it is heavy and only needed to draw.
"""

from __future__ import annotations

import json
import logging

import mlflow
import numpy as np
import pandas as pd
from pyspark.sql import functions as F
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from sf_ml.calibration import expected_calibration_error
from sf_ml.modeling import classifier_of, gain_importances, positive_probability
from sf_ml.panel import TARGET

log = logging.getLogger(__name__)

# Alert level -> beta of the F-beta score its threshold maximises.
RISK_LEVELS = {"risque_fort": 0.5, "risque_modere": 2.0}
# Alert level -> largest share of the rows its threshold may flag.
MAX_ALERT_SHARE = {"risque_fort": 0.05, "risque_modere": 0.20}
# Below this many positives in the set thresholds are chosen on, they are said to be unreliable.
MIN_THRESHOLD_POSITIVES = 30
MAX_COLLECTED_ROWS = 5_000_000
MAX_CURVE_POINTS = 1_000
MAX_PLOTTED_FEATURES = 30
CALIBRATION_PLOT_FLOOR = 1e-4  # lowest rate shown on the log axes of the reliability plot


def collect_predictions(
    predictions,
    label: str = TARGET,
    probability_col: str = "probability",
    max_rows: int = MAX_COLLECTED_ROWS,
    seed: int = 0,
    raw_col: str | None = None,
) -> tuple[np.ndarray, ...]:
    """Labels and probabilities of failure of a Spark predictions frame, as numpy arrays.

    Args:
        predictions: Output of a fitted pipeline (a probability vector column and the label).
        label: 0/1 label column; rows where it is null are dropped.
        probability_col: Spark ML probability vector column (class 1 is read).
        max_rows: Above this many rows a seeded uniform sample of about ``max_rows`` is taken.
        seed: Sampling seed.
        raw_col: A double column to collect as well (e.g. the uncalibrated probability).

    Returns:
        ``(y, p)``, or ``(y, p, raw)`` with ``raw_col``: int labels and floats, same length.
    """
    columns = [F.col(label).cast("int").alias("y"), positive_probability(probability_col).alias("p")]
    if raw_col:
        columns.append(F.col(raw_col).cast("double").alias("raw"))
    pairs = predictions.where(F.col(label).isNotNull()).select(*columns)
    rows = pairs.count()
    if rows > max_rows:
        log.warning("evaluating a seeded sample of %d of %d predictions", max_rows, rows)
        pairs = pairs.sample(False, max_rows / rows, seed)
    # Only two or three numeric columns reach the driver: a test set or one month of companies is
    # a few hundred thousand rows at most, and larger frames are sampled down to max_rows above.
    frame = pairs.toPandas()
    out = (frame["y"].to_numpy(dtype=int), frame["p"].to_numpy(dtype=float))
    return (*out, frame["raw"].to_numpy(dtype=float)) if raw_col else out


def score_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Threshold-free metrics: average precision, ROC AUC, Brier score, log loss.

    Args:
        y: 0/1 labels.
        p: Probabilities of class 1.

    Returns:
        ``average_precision, roc_auc, brier, log_loss, ece, mean_probability, positive_rate,
        rows`` (NaN where a metric is undefined, e.g. one class only).
    """
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    both = 0 < y.sum() < len(y)
    return {
        "ece": expected_calibration_error(y, p),
        "mean_probability": float(p.mean()) if len(p) else float("nan"),
        "average_precision": float(average_precision_score(y, p)) if y.sum() else float("nan"),
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "brier": float(brier_score_loss(y, p, labels=[0, 1])) if len(y) else float("nan"),
        "log_loss": float(log_loss(y, p, labels=[0, 1])) if len(y) else float("nan"),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
        "rows": float(len(y)),
    }


def fbeta_curve(y: np.ndarray, p: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """F-beta of the rule ``p >= t`` for every distinct candidate threshold ``t``.

    Thresholds below the one first reaching full recall are left out: they only lower precision.

    Args:
        y: 0/1 labels.
        p: Probabilities of class 1.
        beta: Weight of recall relative to precision.

    Returns:
        ``(thresholds, fbeta)``, thresholds increasing.
    """
    precision, recall, thresholds = precision_recall_curve(y, p)
    precision, recall = precision[:-1], recall[:-1]
    b2 = beta * beta
    denominator = b2 * precision + recall
    with np.errstate(invalid="ignore", divide="ignore"):
        fbeta = np.where(denominator > 0, (1 + b2) * precision * recall / denominator, 0.0)
    return thresholds, fbeta


def best_threshold(y: np.ndarray, p: np.ndarray, beta: float, max_share: float = 1.0) -> tuple[float, float]:
    """The threshold maximising F-beta among those flagging at most ``max_share`` of the rows.

    Ties go to the lowest threshold. If even the highest candidate flags more than ``max_share``
    (many tied top probabilities), it is returned.

    Args:
        y: 0/1 labels (at least one positive).
        p: Probabilities of class 1.
        beta: Weight of recall relative to precision (0.5: precision first; 2: recall first).
        max_share: Largest share of rows the rule ``p >= threshold`` may flag.

    Returns:
        ``(threshold, fbeta)``: alert when ``p >= threshold``.
    """
    if not np.asarray(y).sum():
        raise ValueError("best_threshold needs at least one positive label")
    thresholds, fbeta = fbeta_curve(y, p, beta)
    ordered = np.sort(np.asarray(p, dtype=float))
    flagged = (len(ordered) - np.searchsorted(ordered, thresholds, side="left")) / len(ordered)
    allowed = flagged <= max_share
    if not allowed.any():
        return float(thresholds[-1]), float(fbeta[-1])
    best = int(np.argmax(np.where(allowed, fbeta, -1.0)))
    return float(thresholds[best]), float(fbeta[best])


def choose_thresholds(y: np.ndarray, p: np.ndarray, levels: dict[str, float] | None = None) -> dict[str, float]:
    """Alert thresholds per level: argmax of each level's F-beta within its :data:`MAX_ALERT_SHARE`.

    Warns when the cap decides a threshold (the F-beta optimum flags more) and when the set has
    fewer than :data:`MIN_THRESHOLD_POSITIVES` positives.

    Args:
        y: 0/1 labels (the grouped test set).
        p: Probabilities of class 1.
        levels: ``{level: beta}``; default :data:`RISK_LEVELS`.

    Returns:
        ``{level: threshold}``.
    """
    positives = int(np.asarray(y).sum())
    if positives < MIN_THRESHOLD_POSITIVES:
        log.warning("alert thresholds chosen on %d positives (< %d): unreliable, train on a larger panel",
                    positives, MIN_THRESHOLD_POSITIVES)
    thresholds = {}
    for level, beta in (levels or RISK_LEVELS).items():
        cap = MAX_ALERT_SHARE.get(level, 1.0)
        thresholds[level], _ = best_threshold(y, p, beta, cap)
        if thresholds[level] > best_threshold(y, p, beta)[0]:
            log.warning("%s: the F%g optimum flags more than %.0f%% of the rows; threshold %.4f keeps %.0f%%",
                        level, beta, 100 * cap, thresholds[level], 100 * cap)
    return thresholds


def metrics_at_threshold(y: np.ndarray, p: np.ndarray, threshold: float, beta: float) -> dict[str, float]:
    """Classification metrics of the alert rule ``p >= threshold``.

    Args:
        y: 0/1 labels.
        p: Probabilities of class 1.
        threshold: Alert threshold.
        beta: Beta of the reported F-beta.

    Returns:
        ``precision, recall, fbeta, balanced_accuracy, alert_share, tp, fp, fn, tn``.
    """
    y = np.asarray(y, dtype=int).astype(bool)
    alert = np.asarray(p, dtype=float) >= threshold
    tp, fp = int(np.sum(alert & y)), int(np.sum(alert & ~y))
    fn, tn = int(np.sum(~alert & y)), int(np.sum(~alert & ~y))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    specificity = tn / (tn + fp) if tn + fp else 0.0
    b2 = beta * beta
    fbeta = (1 + b2) * precision * recall / (b2 * precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "fbeta": fbeta,
        "balanced_accuracy": (recall + specificity) / 2,
        "alert_share": float(alert.mean()) if len(alert) else 0.0,
        "tp": float(tp),
        "fp": float(fp),
        "fn": float(fn),
        "tn": float(tn),
    }


def evaluate(
    y: np.ndarray,
    p: np.ndarray,
    thresholds: dict[str, float],
    levels: dict[str, float] | None = None,
    p_uncalibrated: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of one set at given alert thresholds, as a flat dict.

    Args:
        y: 0/1 labels.
        p: Probabilities of class 1.
        thresholds: ``{level: threshold}`` (see :func:`choose_thresholds`).
        levels: ``{level: beta}``; default :data:`RISK_LEVELS`.
        p_uncalibrated: The classifier's probabilities before calibration, if any.

    Returns:
        :func:`score_metrics` plus ``<level>_<metric>`` for :func:`metrics_at_threshold`, and
        ``uncalibrated_brier``, ``uncalibrated_ece``, ``uncalibrated_mean_probability`` with
        ``p_uncalibrated``.
    """
    levels = levels or RISK_LEVELS
    metrics = score_metrics(y, p)
    if p_uncalibrated is not None and len(y):
        metrics["uncalibrated_brier"] = float(np.mean((np.asarray(p_uncalibrated) - y) ** 2))
        metrics["uncalibrated_ece"] = expected_calibration_error(y, p_uncalibrated)
        metrics["uncalibrated_mean_probability"] = float(np.mean(p_uncalibrated))
    for level, threshold in thresholds.items():
        for name, value in metrics_at_threshold(y, p, threshold, levels[level]).items():
            metrics[f"{level}_{name}"] = value
    return metrics


def _thin(frame: pd.DataFrame, max_points: int = MAX_CURVE_POINTS) -> pd.DataFrame:
    if len(frame) <= max_points:
        return frame
    keep = np.unique(np.linspace(0, len(frame) - 1, max_points).round().astype(int))
    return frame.iloc[keep]


def curves(sets: dict[str, tuple[np.ndarray, np.ndarray]], levels: dict[str, float] | None = None) -> dict[str, pd.DataFrame]:
    """The data behind the evaluation plots, one long frame per plot (column ``set``).

    Curves are thinned to at most :data:`MAX_CURVE_POINTS` points per set.

    Args:
        sets: ``{set name: (y, p)}`` or ``{set name: (y, p, p_uncalibrated)}``; the uncalibrated
            probabilities add a ``<set> before calibration`` reliability curve.
        levels: ``{level: beta}``; default :data:`RISK_LEVELS`.

    Returns:
        ``{"pr_curve", "roc_curve", "fbeta_threshold", "calibration"}`` frames.
    """
    levels = levels or RISK_LEVELS
    parts: dict[str, list[pd.DataFrame]] = {"pr_curve": [], "roc_curve": [], "fbeta_threshold": [], "calibration": []}
    for name, (y, p, *uncalibrated) in sets.items():
        if len(y) == 0 or not 0 < np.sum(y) < len(y):
            continue
        precision, recall, thresholds = precision_recall_curve(y, p)
        parts["pr_curve"].append(_thin(pd.DataFrame({
            "set": name, "threshold": np.append(thresholds, np.nan), "precision": precision, "recall": recall,
        })))
        fpr, tpr, roc_thresholds = roc_curve(y, p)
        parts["roc_curve"].append(_thin(pd.DataFrame({
            "set": name, "threshold": roc_thresholds, "false_positive_rate": fpr, "true_positive_rate": tpr,
        })))
        fbeta = pd.DataFrame({"set": name, "threshold": thresholds})
        for level, beta in levels.items():
            fbeta[f"f{beta:g}"] = fbeta_curve(y, p, beta)[1]
        parts["fbeta_threshold"].append(_thin(fbeta))
        for label, probabilities in ((name, p), *((f"{name} before calibration", u) for u in uncalibrated)):
            observed, predicted = calibration_curve(y, probabilities, n_bins=10, strategy="quantile")
            parts["calibration"].append(pd.DataFrame({
                "set": label, "mean_predicted": predicted, "observed_rate": observed,
            }))
    return {key: pd.concat(frames, ignore_index=True) if frames else pd.DataFrame() for key, frames in parts.items()}


def feature_importances(model, slot_names: list[str]) -> pd.DataFrame:
    """Coefficients (linear model), impurity importances (trees) or gain shares (xgboost) per slot.

    Args:
        model: Fitted ``PipelineModel`` (its last stage is the classifier).
        slot_names: Names of the ``features`` slots (``sf_ml.modeling.feature_slot_names``).

    Returns:
        ``feature, kind, value`` sorted by decreasing ``|value|``.
    """
    classifier = classifier_of(model)
    if hasattr(classifier, "coefficients"):
        kind, values = "coefficient", classifier.coefficients.toArray()
    elif hasattr(classifier, "get_booster"):  # xgboost: share of the total split gain
        kind, values = "gain", gain_importances(classifier, len(slot_names))
    else:
        kind, values = "importance", classifier.featureImportances.toArray()
    if len(values) != len(slot_names):
        raise ValueError(f"{len(values)} model weights for {len(slot_names)} feature names")
    frame = pd.DataFrame({"feature": slot_names, "kind": kind, "value": values})
    order = frame["value"].abs().sort_values(ascending=False, kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def figures(
    data: dict[str, pd.DataFrame],
    thresholds: dict[str, float],
    importances: pd.DataFrame | None = None,
) -> dict:
    """Matplotlib figures of :func:`curves` data (and importances), by plot name.

    Args:
        data: Output of :func:`curves`.
        thresholds: ``{level: threshold}``, marked on the F-beta plot.
        importances: Output of :func:`feature_importances`, or None.

    Returns:
        ``{name: Figure}``; close them after use.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = {}

    def panel(name, title, xlabel, ylabel):
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        out[name] = fig
        return ax

    if not data["pr_curve"].empty:
        ax = panel("pr_curve", "Precision-recall", "recall", "precision")
        for name, part in data["pr_curve"].groupby("set", sort=False):
            ax.plot(part["recall"], part["precision"], label=name, drawstyle="steps-post")
        ax.legend()
    if not data["roc_curve"].empty:
        ax = panel("roc_curve", "ROC", "false positive rate", "true positive rate")
        for name, part in data["roc_curve"].groupby("set", sort=False):
            ax.plot(part["false_positive_rate"], part["true_positive_rate"], label=name)
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
        ax.legend()
    if not data["fbeta_threshold"].empty:
        ax = panel("fbeta_threshold", "F-beta vs alert threshold", "threshold", "F-beta")
        scores = [c for c in data["fbeta_threshold"].columns if c not in ("set", "threshold")]
        for name, part in data["fbeta_threshold"].groupby("set", sort=False):
            for score in scores:
                ax.plot(part["threshold"], part[score], label=f"{name} {score}")
        for level, threshold in thresholds.items():
            ax.axvline(threshold, color="grey", linestyle="--")
            ax.annotate(level, (threshold, 0.02), rotation=90, fontsize=8)
        ax.legend()
    if not data["calibration"].empty:
        # Log axes: failures are rare, and the low deciles are where most companies are.
        ax = panel("calibration", "Reliability (deciles of predicted probability)",
                   "mean predicted probability", "observed failure rate")
        calibration = data["calibration"]
        floor = CALIBRATION_PLOT_FLOOR
        for name, part in calibration.groupby("set", sort=False):
            ax.plot(part["mean_predicted"].clip(lower=floor), part["observed_rate"].clip(lower=floor),
                    marker="o", linestyle="--" if "before" in name else "-", label=name)
        top = float(np.nanmax(calibration[["mean_predicted", "observed_rate"]].to_numpy())) * 1.5
        ax.plot([floor, top], [floor, top], color="grey", linestyle=":", label="perfect calibration")
        ax.set(xscale="log", yscale="log", xlim=(floor, top), ylim=(floor, top))
        ax.legend(fontsize=8)
    if importances is not None and not importances.empty:
        top = importances.head(MAX_PLOTTED_FEATURES).iloc[::-1]
        fig, ax = plt.subplots(figsize=(7, 0.25 * len(top) + 1.5))
        ax.barh(top["feature"], top["value"], color=np.where(top["value"] >= 0, "#c33", "#39c"))
        ax.set(title=f"Feature {top['kind'].iloc[0]}s (top {len(top)})", xlabel=top["kind"].iloc[0])
        ax.tick_params(axis="y", labelsize=7)
        fig.tight_layout()
        out["feature_importances"] = fig
    return out


def log_evaluation(
    sets: dict[str, tuple[np.ndarray, np.ndarray]],
    thresholds: dict[str, float],
    importances: pd.DataFrame | None = None,
    artifact_dir: str = "evaluation",
    levels: dict[str, float] | None = None,
) -> list[str]:
    """Log evaluation plots (PNG) and their data (CSV) to the active MLflow run.

    Args:
        sets: ``{set name: (y, p)}`` or ``(y, p, p_uncalibrated)``, e.g. ``{"test": ..., "oot": ...}``.
        thresholds: ``{level: threshold}``.
        importances: Output of :func:`feature_importances`, or None.
        artifact_dir: Run artifact directory.
        levels: ``{level: beta}``; default :data:`RISK_LEVELS`.

    Returns:
        Artifact paths logged.
    """
    import matplotlib.pyplot as plt

    data = curves(sets, levels)
    if importances is not None:
        data["feature_importances"] = importances
    logged = []
    for name, frame in data.items():
        if not frame.empty:
            mlflow.log_text(frame.to_csv(index=False), f"{artifact_dir}/{name}.csv")
            logged.append(f"{artifact_dir}/{name}.csv")
    for name, fig in figures(data, thresholds, importances).items():
        mlflow.log_figure(fig, f"{artifact_dir}/{name}.png")
        plt.close(fig)
        logged.append(f"{artifact_dir}/{name}.png")
    mlflow.log_text(json.dumps(thresholds, indent=2), f"{artifact_dir}/thresholds.json")
    logged.append(f"{artifact_dir}/thresholds.json")
    return logged
