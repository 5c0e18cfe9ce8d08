"""Shared fixtures: one local Spark session and a throw-away MLflow store per test session."""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture(scope="session")
def spark():
    """A real local Spark session, small and quiet, shared by the whole test session."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from sf_ml.spark import get_spark
    from tests.team_fixtures import SPARK_TEST_CONF

    session = get_spark(
        "sf_ml-tests", master="local[2]", conf={**SPARK_TEST_CONF, "spark.driver.memory": "4g"}
    )
    yield session
    session.stop()


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch):
    """A fresh SQLite MLflow tracking store for one test, its artifacts under ``tmp_path``."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.chdir(tmp_path)  # the default artifact root (./mlruns) lands in the temp dir
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    import mlflow

    mlflow.set_tracking_uri(uri)
    # Forget the experiment a previous test made active in another store: "0" exists in every store.
    mlflow.set_experiment(experiment_id="0")
    yield uri
    while mlflow.active_run() is not None:
        mlflow.end_run()
