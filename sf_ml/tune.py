"""Stage ``tune``: hyperparameter search, each trial a nested MLflow run, best model registered.

The search space is the experiment config's ``search_space``; the objective is the grouped-test
average precision (companies held out of training, whole window). ``bench/bench_quality.py``
measured it within 0.01-0.04 of the forward AP 18 months later, where the held-out companies'
latest 12 months (``latest_``, logged next to it) overstate it by 0.09 on average: their base
rate moves with the economy, and AP with it. Trials run through
:class:`sf_ml.tuner.Tuner` (hyperopt TPE by default), ``parallelism`` at a time on the driver.
The best parameters are then trained once more by :func:`sf_ml.train.train_model` inside the
parent run, which logs the full evaluation and registers the version as ``challenger``.

matplotlib is imported inside the plotting function only: it is heavy and only needed to draw.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from sf_ml.config import ExperimentConfig
from sf_ml.evaluation import collect_predictions, score_metrics
from sf_ml.spark import get_spark
from sf_ml.tracking import stage_run
from sf_ml.train import fit, train_model, training_sets
from sf_ml.tuner import HyperoptTuner, Trial, Tuner

log = logging.getLogger(__name__)


def with_model_params(config: ExperimentConfig, params: dict[str, Any]) -> ExperimentConfig:
    """A copy of ``config`` whose ``model.params`` are updated with ``params``."""
    model = dataclasses.replace(config.model, params={**config.model.params, **params})
    return dataclasses.replace(config, model=model)


def _log_trials(trials: list[Trial], run_ids: dict[int, str]) -> pd.DataFrame:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pd.DataFrame(
        [{"trial": t.number, "run_id": run_ids.get(t.number), "average_precision": -t.loss, **t.params}
         for t in trials]
    )
    mlflow.log_text(table.to_csv(index=False), "tuning/trials.csv")
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(table["trial"], table["average_precision"], "o", label="trial")
    ax.plot(table["trial"], table["average_precision"].cummax(), "-", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("grouped-test average precision")
    ax.legend()
    ax.set_title("Hyperparameter search")
    fig.tight_layout()
    mlflow.log_figure(fig, "tuning/trials.png")
    plt.close(fig)
    return table


def tune_model(
    features_dir: str | Path,
    config: ExperimentConfig,
    train_start: str,
    train_end: str,
    max_evals: int = 20,
    parallelism: int = 1,
    model_name: str = "sf_failure",
    seed: int | None = None,
    spark=None,
    tuner: Tuner | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Search ``config.search_space``, log each trial as a nested run, register the best model.

    Args:
        features_dir: Features panel (parquet partitioned by periode).
        config: Experiment configuration (its ``search_space`` is searched).
        train_start: First training periode (ISO date).
        train_end: Last training periode; later labelled periodes are the out-of-time test.
        max_evals: Number of trials.
        parallelism: Trials evaluated at the same time.
        model_name: Registered model name for the best model.
        seed: Seed of split, resampling, models and search; default ``config.seed``.
        spark: Spark session (default: :func:`sf_ml.spark.get_spark`).
        tuner: Search strategy (default: :class:`HyperoptTuner`).
        progress: Show a progress bar.

    Returns:
        ``best_trial``, ``best_params``, ``trials`` (a table), and the final training summary of
        :func:`sf_ml.train.train_model` (``run_id``, ``version``, ``metrics``, ``thresholds``).
    """
    seed = config.seed if seed is None else int(seed)
    spark = spark or get_spark("sf_ml-tune")
    tuner = tuner or HyperoptTuner()
    if mlflow.active_run() is None:
        params = dict(features_dir=str(features_dir), config=config.name, train_start=train_start,
                      train_end=train_end, max_evals=max_evals, parallelism=parallelism,
                      model_name=model_name, seed=seed)
        context = stage_run("tune", params, config.to_dict())
    else:
        context = contextlib.nullcontext(mlflow.active_run())
    with context as parent:
        client = mlflow.MlflowClient()
        experiment_id, parent_id = parent.info.experiment_id, parent.info.run_id
        sets = training_sets(spark, features_dir, config, train_start, train_end, seed)
        # Every trial reads the same two frames: materialise them once.
        sets = dataclasses.replace(sets, train=sets.train.cache(), test=sets.test.cache(),
                                   calibration=sets.calibration.cache())
        run_ids: dict[int, str] = {}

        def objective(number: int, params: dict[str, Any]) -> float:
            child = client.create_run(experiment_id, tags={
                MLFLOW_PARENT_RUN_ID: parent_id, MLFLOW_RUN_NAME: f"trial-{number:03d}",
                "stage": "tune_trial", "trial": str(number), "config_name": config.name,
            })
            run_ids[number] = child.info.run_id
            began = time.monotonic()
            try:
                for name, value in params.items():
                    client.log_param(child.info.run_id, name, value)
                model, fit_metrics = fit(with_model_params(config, params), sets, seed)
                scores = score_metrics(*collect_predictions(model.transform(sets.test)))
                latest = score_metrics(*collect_predictions(model.transform(sets.calibration)))
                metrics = {**fit_metrics, **{f"test_{k}": v for k, v in scores.items()},
                           **{f"latest_{k}": v for k, v in latest.items()}, "trial_seconds": time.monotonic() - began}
                for name, value in metrics.items():
                    client.log_metric(child.info.run_id, name, float(value))
            except Exception:
                client.set_terminated(child.info.run_id, "FAILED")
                raise
            client.set_terminated(child.info.run_id, "FINISHED")
            return -scores["average_precision"]

        began = time.monotonic()
        trials = tuner.minimize(objective, config.search_space, max_evals, parallelism, seed, progress)
        search_seconds = time.monotonic() - began
        sets.train.unpersist()
        sets.test.unpersist()
        sets.calibration.unpersist()
        best = min(trials, key=lambda t: t.loss)
        table = _log_trials(trials, run_ids)
        mlflow.set_tags({"best_trial": str(best.number), "best_trial_run_id": run_ids[best.number]})
        mlflow.log_params({f"best.{k}": v for k, v in best.params.items()})
        mlflow.log_metrics({
            "best_trial_test_average_precision": -best.loss,
            "search_seconds": search_seconds,
            "seconds_per_trial": search_seconds / len(trials),
        })
        log.info("best trial %d: %s (AP %.4f)", best.number, best.params, -best.loss)
        final = train_model(features_dir, with_model_params(config, best.params), train_start, train_end,
                            model_name=model_name, seed=seed, spark=spark)
    return {"best_trial": best.number, "best_params": best.params, "trials": table, **final}
