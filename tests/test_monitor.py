"""Stage monitor: past scorings against the outcomes a later panel knows (real Spark, MLflow, registry)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score

from sf_ml.config import load_config
from sf_ml.monitor import MonitoringError, monitor_scorings
from sf_ml.panel import TARGET
from tests.panels import FAST_OVERRIDES, synthetic_panel, write_features

MODEL = "sf_monitor_test"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A panel labelled to 2019-12 (periodes 2018-01..2020-06), with two sectors and two regions."""
    panel = synthetic_panel(n_sirens=300, n_months=30, unlabelled_months=6, seed=8)
    second = panel["siren"].astype(int) % 2 == 1
    panel.loc[second, "naf_section"] = "C"
    panel.loc[panel["siren"].astype(int) % 3 == 0, "region"] = "Occitanie"
    return panel, write_features(panel, tmp_path_factory.mktemp("monitor") / "features")


def test_monitor_matches_outcomes_and_leaves_pending_months(spark, world, tmp_path, tracking_uri):
    import mlflow

    from sf_ml.score import score_companies
    from sf_ml.train import train_model

    panel, features = world
    config = load_config("standard", FAST_OVERRIDES["standard"])
    trained = train_model(features, config, "2018-01-01", "2018-12-01", model_name=MODEL, spark=spark)
    mlflow.end_run()
    uri = f"models:/{MODEL}/{trained['version']}"
    scores = tmp_path / "scores"
    for date in ("2019-06-01", "2019-09-01", "2020-03-01"):  # the last month has no known outcome
        score_companies(uri, date, scores / date, features_dir=features, spark=spark)
        mlflow.end_run()

    summary = monitor_scorings(scores, features, spark=spark)
    assert [p.rsplit("/", 1)[-1] for p in summary["evaluated"]] == ["2019-06-01", "2019-09-01"]
    assert [p.rsplit("/", 1)[-1] for p in summary["pending"]] == ["2020-03-01"]

    # The same numbers from the files, computed here by hand.
    predicted = pd.concat([pd.read_parquet(scores / d / "predictions.parquet") for d in ("2019-06-01", "2019-09-01")])
    predicted["periode"] = pd.to_datetime(predicted["periode"]).dt.date
    truth = panel[["siren", "periode", TARGET]].assign(periode=lambda f: pd.to_datetime(f["periode"]).dt.date)
    joined = predicted.merge(truth, on=["siren", "periode"])
    y, p = joined[TARGET].astype(int).to_numpy(), joined["probability"].to_numpy()
    metrics = summary["metrics"]
    assert metrics["rows"] == len(joined) and metrics["positive_rate"] == pytest.approx(y.mean())
    assert metrics["average_precision"] == pytest.approx(average_precision_score(y, p))
    fort = joined["alert"] == "risque_fort"
    moderate = fort | (joined["alert"] == "risque_modere")
    assert metrics["risque_modere_alerts"] == moderate.sum()
    assert metrics["risque_modere_recall"] == pytest.approx((moderate & (y == 1)).sum() / y.sum())
    if fort.any():
        assert metrics["risque_fort_precision"] == pytest.approx((fort & (y == 1)).sum() / fort.sum())

    by_section = summary["by_naf_section"].set_index("naf_section")
    assert set(by_section.index) == {"C", "J"} and by_section["rows"].sum() == len(joined)
    c_rows = joined[joined["naf_section"] == "C"]
    assert by_section.loc["C", "positive_rate"] == pytest.approx(c_rows[TARGET].astype(int).mean())
    assert set(summary["by_region"]["region"]) == {"Bretagne", "Occitanie"}
    assert list(summary["by_month"]["month"]) == ["2019-06-01", "2019-09-01"]

    run = mlflow.get_run(summary["run_id"])
    assert run.data.metrics["scorings_pending"] == 1 and run.data.tags["stage"] == "monitor"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(summary["run_id"])}
    assert {"monitor.png", "by_naf_section.csv", "by_region.csv", "by_month.csv"} <= artifacts
    assert np.isfinite(run.data.metrics["ece"])

    with pytest.raises(MonitoringError, match="no scored company"):
        monitor_scorings(scores / "2020-03-01", features, spark=spark)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MonitoringError, match="no scoring output"):
        monitor_scorings(tmp_path / "empty", features, spark=spark)
