"""Tuning (hyperopt behind the Tuner interface, nested runs) and backtesting, on real Spark/MLflow."""

from __future__ import annotations

import datetime as dt

import pytest

from sf_ml.config import load_config
from sf_ml.panel import add_months
from sf_ml.tuner import HyperoptTuner
from tests.panels import FAST_OVERRIDES, synthetic_panel, write_features

MODEL = "sf_failure_tune_test"


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    return write_features(synthetic_panel(n_sirens=300, n_months=36, seed=3),
                          tmp_path_factory.mktemp("tune") / "features")


def test_hyperopt_tuner_minimises_in_parallel_rounds():
    space = {
        "x": {"type": "uniform", "low": -5, "high": 5},
        "depth": {"type": "quniform", "low": 2, "high": 9, "q": 1},
        "kind": {"type": "choice", "options": ["a", "b"]},
    }
    seen = []

    def objective(number, params):
        seen.append(number)
        return (params["x"] - 1) ** 2 + (params["kind"] == "a")

    trials = HyperoptTuner().minimize(objective, space, max_evals=30, parallelism=3, seed=5, progress=False)
    assert sorted(seen) == list(range(30)) and len(trials) == 30
    best = min(trials, key=lambda t: t.loss)
    assert best.params["kind"] == "b" and abs(best.params["x"] - 1) < 0.5
    assert all(isinstance(t.params["depth"], int) and 2 <= t.params["depth"] <= 9 for t in trials)
    again = HyperoptTuner().minimize(objective, space, max_evals=30, parallelism=3, seed=5, progress=False)
    assert [t.params for t in again] == [t.params for t in trials]  # deterministic for a seed


def test_tune_logs_nested_trials_and_registers_best(spark, tracking_uri, features_dir):
    import mlflow

    from sf_ml.tracking import stage_run
    from sf_ml.tune import tune_model

    config = load_config("standard", FAST_OVERRIDES["standard"])
    with stage_run("tune", {"max_evals": 3}, config.to_dict()) as run:
        summary = tune_model(features_dir, config, "2018-01-01", "2019-06-01", max_evals=3, parallelism=2,
                             model_name=MODEL, spark=spark, progress=False)
    client = mlflow.MlflowClient()
    children = client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert len(children) == 3
    assert all(c.info.status == "FINISHED" and {"test_average_precision", "latest_average_precision"}
               <= set(c.data.metrics) for c in children)
    assert {c.data.params["regParam"] for c in children} == {str(v) for v in summary["trials"]["regParam"]}
    parent = client.get_run(run.info.run_id).data
    best_child = client.get_run(parent.tags["best_trial_run_id"]).data
    assert best_child.metrics["test_average_precision"] == pytest.approx(
        max(c.data.metrics["test_average_precision"] for c in children))
    assert float(parent.params["best.regParam"]) == pytest.approx(float(best_child.params["regParam"]))
    version = client.get_model_version_by_alias(MODEL, "challenger")
    assert version.run_id == run.info.run_id and int(version.version) == summary["version"]
    assert "threshold_risque_fort" in version.tags


def test_backtest_trains_on_known_outcomes_only(spark, tracking_uri, features_dir):
    import mlflow

    from sf_ml.backtest import backtest
    from sf_ml.tracking import stage_run

    config = load_config("standard", FAST_OVERRIDES["standard"])
    with stage_run("backtest", {}, config.to_dict()) as run:
        table = backtest(features_dir, config, "2020-06-01, 2020-01-01", spark=spark)
    assert list(table["prediction_date"]) == ["2020-01-01", "2020-06-01"]
    assert list(table["train_end"]) == ["2018-07-01", "2018-12-01"]  # T - 18 months
    # What the models were trained on, not what was computed: no label window reaches past T.
    for date, last in zip(table["prediction_date"], table["train_last_periode"], strict=True):
        assert add_months(dt.date.fromisoformat(last), 18) <= dt.date.fromisoformat(date)
    assert list(table["train_last_periode"]) == ["2018-07-01", "2018-12-01"]
    assert (table["average_precision"] > 2 * table["positive_rate"]).all()
    client = mlflow.MlflowClient()
    history = client.get_metric_history(run.info.run_id, "backtest_average_precision")
    assert [m.step for m in history] == [0, 1]
    names = {a.path for a in client.list_artifacts(run.info.run_id, "backtest")}
    assert {"backtest/metrics_by_date.csv", "backtest/metrics_by_date.png"} <= names
    with pytest.raises(ValueError, match="not covered"):
        backtest(features_dir, config, "2020-12-01", spark=spark)
