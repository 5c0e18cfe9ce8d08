"""Stage ``train``: fit the configured pipeline on a features panel, evaluate, log, register.

Rows with a known label in ``[train_start, train_end]`` are split by siren (80/20 by default);
the training companies are resampled and the pipeline is fitted on them, then calibrated: a
log-odds map fitted on the held-out companies' latest months (:mod:`sf_ml.calibration`) becomes
the model's last stage, so every probability it returns is on the real scale. Three test sets
are scored: the held-out companies over the same window (``test_``, where the alert thresholds are
chosen, and what ``tune`` selects on), the same companies over the window's latest
``calibration.months`` months (``latest_``, where the calibration is fitted), and the same companies at later
periodes with known labels (``oot_``, out-of-time, thresholds applied unchanged); each reports
Brier and ECE before and after calibration. The fitted ``PipelineModel`` is logged with a
signature and a synthetic input example, then registered as a new version with alias
``challenger``, its thresholds and main metrics as version tags.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.spark
import numpy as np
import pandas as pd
import pyspark
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema
from pyspark.ml import PipelineModel
from pyspark.sql import functions as F

from sf_ml import evaluation as E
from sf_ml.calibration import RAW_PROBABILITY_COL, fit_calibration, odds_ratio
from sf_ml.config import AGGREGATIONS, ExperimentConfig, aggregated_name
from sf_ml.evaluation import collect_predictions
from sf_ml.features import directory_digest
from sf_ml.modeling import (
    MISSING_SUFFIX,
    build_pipeline,
    class_counts,
    feature_slot_names,
    held_out,
    input_columns,
    model_requirements,
    positive_weight,
    resample,
    split_by_siren,
)
from sf_ml.panel import TARGET
from sf_ml.progress import PhaseLog
from sf_ml.registry import CHALLENGER, THRESHOLD_TAG_PREFIX, register_model
from sf_ml.spark import get_spark
from sf_ml.tracking import git_commit, log_panel_input, stage_run

log = logging.getLogger(__name__)

MODEL_ARTIFACT_PATH = "model"
VERSION_TAG_METRICS = (
    "test_average_precision", "test_roc_auc", "latest_average_precision", "oot_average_precision", "oot_roc_auc",
    "oot_risque_fort_precision", "oot_risque_fort_recall",
    "oot_risque_modere_precision", "oot_risque_modere_recall",
)
# Typical magnitudes of base variables, for the synthetic input example (never real rows).
TYPICAL_VALUES = {
    "effectif": 25.0, "cotisation": 8000.0, "dette_sociale_ouvriere": 1500.0,
    "dette_sociale_patronale": 3000.0, "ap_heures_consommees": 0.0, "ap_heures_autorisees": 0.0,
    "paydex": 20.0, "fpi_30": 0.2, "fpi_90": 0.05, "dette_par_effectif": 180.0,
    "dette_sur_cotisation_mean12m": 0.55, "age_entreprise": 12.0,
}


class TrainingDataError(ValueError):
    """The features panel cannot train a model over the requested window."""


def synthetic_input_example(config: ExperimentConfig, columns: list[str]) -> pd.DataFrame:
    """Three made-up rows with the model's input columns: typical, stressed, missing.

    Built from column names and typical magnitudes only, so no company data ends up in the
    model artifact. The third row has every feature null (NaN; indicators 1): the model imputes.

    Args:
        config: Experiment configuration (to map aggregated columns to their variable).
        columns: Model input columns (:func:`sf_ml.modeling.input_columns`).

    Returns:
        A pandas frame: doubles, int32 ``*_manquant`` indicators and text categorical columns.
    """
    kind_of = {
        aggregated_name(variable, kind, months): (variable, kind)
        for kind in AGGREGATIONS
        for variable, month_list in config.features.time_aggregation.get(kind, {}).items()
        for months in month_list
    }
    data: dict[str, Any] = {}
    for column in columns:
        if column in config.features.categorical:
            data[column] = ["X", "Y", None]  # labels of no real category: scored as unknown
            continue
        if column.endswith(MISSING_SUFFIX):
            data[column] = np.array([0, 0, 1], dtype=np.int32)
            continue
        variable, kind = kind_of.get(column, (column, None))
        typical = 0.0 if kind == "diff" else TYPICAL_VALUES.get(variable, 0.1)
        stressed = 10.0 if kind == "diff" else typical * 1.8 + 0.1
        data[column] = [typical, stressed, np.nan]
    return pd.DataFrame(data, columns=columns)


@dataclass
class TrainingSets:
    """The frames of one training window (lazy Spark frames; counts of ``train`` only).

    Args:
        panel: The whole features panel as read.
        train: Labelled rows of the training companies within the window (not resampled).
        test: Labelled rows of the held-out companies within the window.
        oot: Labelled rows of the held-out companies after the window (out-of-time).
        calibration: The rows of ``test`` in the last ``calibration.months`` periodes of the
            window, where the probability calibration is fitted.
        columns: Model input columns.
        rows: Rows of ``train``.
        positives: Positive rows of ``train``.
        last_periode: The latest periode of ``train`` (its label window ends 18 months later).
    """

    panel: Any
    train: Any
    test: Any
    oot: Any
    calibration: Any
    columns: list[str]
    rows: int
    positives: int
    last_periode: dt.date | None = None


def training_sets(
    spark, features_dir: str | Path, config: ExperimentConfig, train_start: str, train_end: str, seed: int
) -> TrainingSets:
    """Read a features panel and split it into train, grouped test and out-of-time test sets.

    Args:
        spark: Spark session.
        features_dir: Features panel (parquet partitioned by periode).
        config: Experiment configuration (features, ``split.test_fraction``).
        train_start: First training periode (ISO date, inclusive).
        train_end: Last training periode (inclusive).
        seed: Split seed.

    Returns:
        The sets, with the training set's class counts.

    Raises:
        TrainingDataError: Missing columns, an inverted window, or no labelled rows or no
            positives among the training companies of the window.
    """
    if str(train_start)[:10] > str(train_end)[:10]:
        raise TrainingDataError(f"train_start {train_start} is after train_end {train_end}")
    columns = input_columns(config)
    panel = spark.read.parquet(str(features_dir))
    missing = sorted({"siren", "periode", TARGET, *columns} - set(panel.columns))
    if missing:
        raise TrainingDataError(
            f"features in {features_dir} lack column(s) {missing}: rebuild them with this config"
        )
    labelled = panel.where(F.col(TARGET).isNotNull()).select("siren", "periode", *columns, TARGET)
    start, end = F.to_date(F.lit(str(train_start))), F.to_date(F.lit(str(train_end)))
    window = labelled.where((F.col("periode") >= start) & (F.col("periode") <= end))
    train, test = split_by_siren(window, config.split.test_fraction, seed)
    oot = labelled.where((F.col("periode") > end) & held_out("siren", config.split.test_fraction, seed))
    calibration = test.where(F.col("periode") > F.add_months(end, -config.calibration.months))
    counts = train.agg(F.count(F.lit(1)).alias("rows"), F.sum(TARGET).alias("positives"),
                       F.max("periode").alias("last")).first()
    rows, positives = int(counts["rows"]), int(counts["positives"] or 0)
    if rows == 0:
        raise TrainingDataError(f"no labelled rows in {features_dir} between {train_start} and {train_end}")
    if positives == 0:
        raise TrainingDataError(f"no positive ({TARGET}=1) rows between {train_start} and {train_end}")
    return TrainingSets(panel, train, test, oot, calibration, columns, rows, positives, counts["last"])


def fit(config: ExperimentConfig, sets: TrainingSets, seed: int) -> tuple[Any, dict[str, float]]:
    """Resample the training set, fit the configured pipeline on it, then calibrate it.

    The calibration (:mod:`sf_ml.calibration`) is fitted on ``sets.calibration`` and appended to
    the pipeline as its last stage, so the returned model predicts real-scale probabilities.

    Args:
        config: Experiment configuration (model, sampling, calibration).
        sets: Output of :func:`training_sets`.
        seed: Resampling and model seed.

    Returns:
        ``(PipelineModel, metrics)`` with ``train_*`` counts, ``fit_seconds`` and the
        ``calibration_*`` parameters.
    """
    sampling = config.sampling
    # Not persisted: the estimators cache their own assembled input.
    balanced = resample(sets.train, sampling.strategy, sampling.minority_ratio, seed,
                        counts=(sets.rows, sets.positives))
    rows, positives = class_counts(balanced)
    log.debug("training on %d rows (%d positives), %d after %s", sets.rows, sets.positives, rows, sampling.strategy)
    began = time.monotonic()
    model = build_pipeline(config, sets.columns, seed, counts=(rows, positives)).fit(balanced)
    fit_seconds = time.monotonic() - began
    k = odds_ratio(positives / rows, sets.positives / sets.rows) * positive_weight(config, (rows, positives))
    settings = config.calibration
    calibration = fit_calibration(settings.method, *collect_predictions(model.transform(sets.calibration)),
                                  k, settings.min_positives)
    log.debug("calibration %s: slope %.3f, intercept %.3f on %d rows (%d positives)", calibration.method,
             calibration.slope, calibration.intercept, calibration.rows, calibration.positives)
    return PipelineModel(stages=[*model.stages, calibration.stage()]), {
        "train_rows": float(sets.rows), "train_positive_rate": sets.positives / sets.rows,
        "train_rows_resampled": float(rows), "train_positive_rate_resampled": positives / rows,
        "fit_seconds": fit_seconds, "resampling_odds_ratio": k, **calibration.metrics(),
    }


def evaluate_model(model, sets: TrainingSets) -> tuple[dict, dict[str, float], dict[str, dict[str, float]]]:
    """Score both test sets, choose the thresholds on the grouped test set, apply them to both.

    Thresholds are chosen on calibrated probabilities. Each set also reports its expected
    calibration error and, ``uncalibrated_*``, the Brier score and ECE of the classifier's own
    probabilities (before calibration).

    Args:
        model: Fitted ``PipelineModel`` ending with its calibration stage (see :func:`fit`).
        sets: Output of :func:`training_sets`.

    Returns:
        ``(predictions, thresholds, metrics_by_set)``: ``{"test"|"latest"|"oot": (y, p,
        p_uncalibrated)}``, ``{level: threshold}`` and ``{"test"|"latest"|"oot": metrics}``
        (unprefixed).

    Raises:
        TrainingDataError: The grouped test set has no rows or no positives.
    """
    predictions = {name: E.collect_predictions(model.transform(frame), raw_col=RAW_PROBABILITY_COL)
                   for name, frame in (("test", sets.test), ("latest", sets.calibration), ("oot", sets.oot))}
    y_test = predictions["test"][0]
    if len(y_test) == 0 or y_test.sum() == 0:
        raise TrainingDataError(
            f"the held-out companies have no {'rows' if len(y_test) == 0 else 'positives'} in the window: "
            "widen the window or raise split.test_fraction"
        )
    if len(predictions["oot"][0]) == 0:
        log.warning("no labelled periode after the training window: no out-of-time evaluation")
    thresholds = E.choose_thresholds(*predictions["test"][:2])
    by_set = {name: E.evaluate(y, p, thresholds, p_uncalibrated=raw) for name, (y, p, raw) in predictions.items()}
    return predictions, thresholds, by_set


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(v)}


def log_pipeline_model(model, config: ExperimentConfig, columns: list[str]) -> Any:
    """Log a fitted pipeline with the Spark flavor, a signature and a synthetic input example.

    MLflow checks the example by scoring it with the logged model. The pyfunc output,
    ``prediction``, is the calibrated probability of a failure within 18 months: the last stage,
    :class:`sf_ml.calibration.CalibratedProbability`, writes it there.

    Args:
        model: Fitted ``PipelineModel``.
        config: Experiment configuration.
        columns: Model input columns.

    Returns:
        The ``ModelInfo`` of the logged model (artifact path :data:`MODEL_ARTIFACT_PATH`).
    """
    example = synthetic_input_example(config, columns)
    # Every input may be null (the pipeline imputes); indicators are ints like in the panel.
    kinds = {c: "string" for c in config.features.categorical}
    inputs = Schema([
        ColSpec(kinds.get(c, "integer" if example[c].dtype == np.int32 else "double"), c, required=False)
        for c in columns
    ])
    signature = ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double", "prediction")]))
    return mlflow.spark.log_model(
        model,
        artifact_path=MODEL_ARTIFACT_PATH,
        signature=signature,
        input_example=example,
        pip_requirements=[f"pyspark=={pyspark.__version__}", f"mlflow=={mlflow.__version__}",
                          *model_requirements(config.model.type)],
    )


def train_model(
    features_dir: str | Path,
    config: ExperimentConfig,
    train_start: str,
    train_end: str,
    model_name: str = "sf_failure",
    seed: int | None = None,
    spark=None,
    register: bool = True,
) -> dict[str, Any]:
    """Train, evaluate, log and (optionally) register a failure model.

    Logs to the active MLflow run (one is opened with :func:`sf_ml.tracking.stage_run` if none is).

    Args:
        features_dir: Features panel (parquet partitioned by periode).
        config: Experiment configuration.
        train_start: First training periode (ISO date, inclusive).
        train_end: Last training periode (inclusive); later labelled periodes are out-of-time.
        model_name: Registered model name.
        seed: Seed of split, resampling and model; default ``config.seed``.
        spark: Spark session (default: :func:`sf_ml.spark.get_spark`).
        register: Register the model as a new version with alias ``challenger``.

    Returns:
        ``run_id``, ``version`` (None without registration), ``model_uri``, ``metrics``
        (prefixed ``train_``/``test_``/``oot_``), ``thresholds`` ``{level: threshold}``.

    Raises:
        TrainingDataError: Missing columns, no labelled rows or no positives in the window, or
            a held-out set without positives.
    """
    seed = config.seed if seed is None else int(seed)
    if mlflow.active_run() is None:
        params = dict(features_dir=str(features_dir), config=config.name, train_start=train_start,
                      train_end=train_end, model_name=model_name, seed=seed, register=register)
        context = stage_run("train", params, config.to_dict())
    else:
        context = contextlib.nullcontext(mlflow.active_run())
    with context as run:
        return _train(features_dir, config, train_start, train_end, model_name, seed, spark, register,
                      run.info.run_id)


def _train(features_dir, config, train_start, train_end, model_name, seed, spark, register, run_id):
    phases = PhaseLog("train", log)
    spark = spark or get_spark("sf_ml-train")
    features_dir = Path(features_dir)
    sets = training_sets(spark, features_dir, config, train_start, train_end, seed)
    phases.done("read and split", training_rows=sets.rows, positives=sets.positives, last_periode=sets.last_periode)
    model, metrics = fit(config, sets, seed)
    phases.done(f"fit {config.model.type} and calibrate", rows_after_resampling=int(metrics["train_rows_resampled"]),
                calibration_rows=int(metrics["calibration_rows"]),
                calibration_positives=int(metrics["calibration_positives"]))
    predictions, thresholds, by_set = evaluate_model(model, sets)
    phases.done("evaluate", test_AP=by_set["test"]["average_precision"],
                out_of_time_AP=by_set.get("oot", {}).get("average_precision", float("nan")),
                **{f"threshold_{level}": value for level, value in thresholds.items()})
    for name, values in by_set.items():
        metrics.update({f"{name}_{key}": value for key, value in values.items()})
    threshold_keys = {f"{THRESHOLD_TAG_PREFIX}{level}": value for level, value in thresholds.items()}
    mlflow.log_metrics(_finite({**metrics, **threshold_keys}))
    mlflow.log_params({**{k: repr(v) for k, v in threshold_keys.items()}, "feature_count": len(sets.columns),
                       "train_last_periode": str(sets.last_periode)})
    mlflow.set_tags({"config_name": config.name, "model_type": config.model.type})
    # The config the model was fitted with travels with its run: scoring and promotion read it back.
    mlflow.log_dict(config.to_dict(), "config.json")

    table = pd.DataFrame(by_set).rename_axis("metric").reset_index()
    mlflow.log_text(table.to_csv(index=False), "metrics.csv")
    mlflow.log_table(table, "metrics_table.json")
    slots = feature_slot_names(model)
    mlflow.log_dict({"feature_columns": sets.columns, "slots": slots}, "features.json")
    E.log_evaluation(predictions, thresholds, E.feature_importances(model, slots))

    digest = directory_digest(features_dir)
    log_panel_input(sets.panel, features_dir, digest, context="training")
    info = log_pipeline_model(model, config, sets.columns)

    phases.done("log metrics, plots and model", run=run_id)
    version = None
    if register:
        tags = {
            **{k: repr(v) for k, v in threshold_keys.items()},
            **{k: f"{metrics[k]:.6g}" for k in VERSION_TAG_METRICS if k in metrics and math.isfinite(metrics[k])},
            "config_name": config.name, "model_type": config.model.type,
            "git_commit": git_commit() or "unknown", "features_path": str(features_dir.resolve()),
            "features_digest": digest, "train_start": str(train_start), "train_end": str(train_end),
            "seed": str(seed), "run_id": run_id,
        }
        version = register_model(run_id, MODEL_ARTIFACT_PATH, model_name, CHALLENGER, tags)
        mlflow.set_tags({"registered_model": model_name, "registered_version": str(version)})
        phases.done("register", model=model_name, version=version, alias=CHALLENGER)
    metrics["train_seconds"] = phases.seconds
    mlflow.log_metric("train_seconds", metrics["train_seconds"])
    return {
        "run_id": run_id,
        "version": version,
        "model_uri": info.model_uri,
        "metrics": metrics,
        "thresholds": thresholds,
    }
