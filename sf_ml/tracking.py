"""MLflow tracking set-up shared by every stage.

The tracking URI is ``MLFLOW_TRACKING_URI`` when set (a team server), else a SQLite store
``mlflow.db`` in the working directory. Each stage opens its run with :func:`stage_run`, which
logs the stage's parameters, the resolved configuration, the git commit and library versions.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import mlflow
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException

from sf_ml.panel import TARGET

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_EXPERIMENT = "sf_ml"
TRACKED_LIBRARIES = ("mlflow", "pyspark", "scikit-learn", "hyperopt", "pandas", "numpy", "pyarrow", "xgboost")


# Database errors of concurrent writes to a tracking store (the store rolls the request back).
_CONFLICTS = ("unique", "deadlock", "could not serialize", "integrityerror")


def retry_on_store_conflict(call, attempts: int = 5):
    """``call()``, tried again with a short back-off when the tracking store reports a write conflict.

    Several MLflow writes look a row up and then insert it (registered model versions, aliases,
    dataset inputs): two processes writing the same row together make one of them fail on a
    unique constraint. The store rolled that request back, so the retry finds the row and reuses it.

    Args:
        call: The store write, without arguments.
        attempts: Tries before the error is raised.

    Returns:
        What ``call()`` returns.
    """
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except MlflowException as exc:
            text = str(exc).lower()
            if attempt == attempts or not any(conflict in text for conflict in _CONFLICTS):
                raise
            time.sleep(0.2 * attempt)


def log_panel_input(panel, features_dir: str | Path, digest: str, context: str) -> None:
    """Log a features panel as a dataset input of the active run: source, digest and schema.

    ``mlflow.data.from_spark`` alone would also profile the panel with an approximate count: a
    Python job over every row, which outlives its 5 s timeout on a large panel and goes on
    running (and failing once the stage's process has exited). Row counts are logged as
    metrics by the stages instead.

    Args:
        panel: The panel read from ``features_dir``.
        features_dir: Directory of the panel (the dataset's source).
        digest: Digest of the panel's files.
        context: Input context (``features``, ``training``).
    """
    features_dir = Path(features_dir)
    spark_dataset = mlflow.data.from_spark(
        panel, path=str(features_dir), name=f"features:{features_dir.name}", targets=TARGET, digest=digest,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")  # the target
        schema = spark_dataset.schema
    dataset = MetaDataset(spark_dataset.source, name=spark_dataset.name, digest=digest, schema=schema)
    # Concurrent runs logging the same panel race on the dataset row.
    retry_on_store_conflict(lambda: mlflow.log_input(dataset, context=context))


def setup_tracking() -> str:
    """Point MLflow at the configured tracking store and return its URI."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    mlflow.set_tracking_uri(uri)
    return uri


def git_commit(path: str | Path | None = None) -> str | None:
    """The git commit of the project checkout (``-dirty`` appended if modified), or None."""
    cwd = Path(path) if path else Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{commit}-dirty" if dirty else commit


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that shape results."""
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@contextlib.contextmanager
def stage_run(
    stage: str,
    params: dict[str, Any],
    config: dict[str, Any] | None = None,
    experiment: str | None = None,
    nested: bool = False,
) -> Iterator[Any]:
    """Open (or continue) the MLflow run of one stage and log its provenance.

    Under ``mlflow run`` the run already exists (``MLFLOW_RUN_ID``) and is continued.

    Args:
        stage: Stage name (``generate``, ``build_features`` ...), logged as tag ``stage``.
        params: The stage's parameters, logged as run parameters.
        config: The resolved configuration as a dict, logged as ``config.json``.
        experiment: Experiment name when no run is active (``MLFLOW_EXPERIMENT_NAME`` or ``sf_ml``).
        nested: Open a child run of the active run.

    Yields:
        The active ``mlflow.ActiveRun``.
    """
    setup_tracking()
    if not os.environ.get("MLFLOW_RUN_ID") and mlflow.active_run() is None:
        mlflow.set_experiment(
            experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        )
    with mlflow.start_run(nested=nested, run_name=None if os.environ.get("MLFLOW_RUN_ID") else stage) as run:
        tags = {"stage": stage, **{f"version.{k}": v for k, v in library_versions().items()}}
        commit = git_commit()
        if commit:
            tags["git_commit"] = commit
        mlflow.set_tags(tags)
        # Under `mlflow run` the entry point's parameters are already logged (shell-quoted):
        # MLflow refuses to log a parameter twice with another value, so only new ones are added.
        logged = mlflow.get_run(run.info.run_id).data.params
        mlflow.log_params(
            {k: ("" if v is None else str(v))[:6000] for k, v in params.items() if k not in logged}
        )
        if config is not None:
            mlflow.log_dict(config, "config.json")
        yield run
