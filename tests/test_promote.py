"""Gated promotion against a real registry: first model, a worse (shuffled-label) model, dry run."""

from __future__ import annotations

import numpy as np
import pytest

from sf_ml.config import load_config
from sf_ml.promote import PromotionGate, promote, promotion_history
from tests.panels import FAST_OVERRIDES, synthetic_panel, write_features

MODEL = "sf_failure_promote_test"
TRAIN = ("2018-01-01", "2019-06-01")


def test_gate_rules():
    gate = PromotionGate(max_average_precision_drop=0.01, max_recall_drop=0.02, min_lift_without_champion=3)
    first = {"average_precision": 0.2, "positive_rate": 0.05, "risque_modere_recall": 0.5}
    assert gate.decide(first, None)[0]
    assert not gate.decide({**first, "average_precision": 0.1}, None)[0]
    champion = {"average_precision": 0.3, "positive_rate": 0.05, "risque_modere_recall": 0.6}
    ok, reason = gate.decide({**champion, "average_precision": 0.295}, champion)
    assert ok, reason
    refused, reason = gate.decide({**champion, "risque_modere_recall": 0.55}, champion)
    assert not refused and "recall" in reason


@pytest.fixture(scope="module")
def panels(tmp_path_factory):
    base = tmp_path_factory.mktemp("promote")
    panel = synthetic_panel(n_sirens=300, n_months=36, seed=7)
    shuffled = panel.copy()
    labelled = shuffled["failure_18m"].notna()
    rng = np.random.default_rng(0)
    shuffled.loc[labelled, "failure_18m"] = rng.permutation(shuffled.loc[labelled, "failure_18m"].to_numpy())
    return write_features(panel, base / "features"), write_features(shuffled, base / "shuffled")


def test_first_model_promoted_then_worse_model_refused(spark, tracking_uri, panels):
    import mlflow

    from sf_ml.train import train_model

    features, shuffled = panels
    config = load_config("standard", FAST_OVERRIDES["standard"])
    client = mlflow.MlflowClient()

    with mlflow.start_run():
        good = train_model(features, config, *TRAIN, model_name=MODEL, spark=spark)
    first = promote(MODEL, "challenger", features, spark=spark)
    assert first["decision"] == "promoted" and first["previous_champion"] is None
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == good["version"]

    with mlflow.start_run():
        worse = train_model(shuffled, config, *TRAIN, model_name=MODEL, spark=spark)
    dry = promote(MODEL, str(worse["version"]), features, dry_run=True, spark=spark)
    assert dry["decision"] == "refused"
    refused = promote(MODEL, "challenger", features, spark=spark)
    assert refused["decision"] == "refused" and "average precision" in refused["reason"]
    assert refused["candidate_metrics"]["average_precision"] < refused["champion_metrics"]["average_precision"]
    assert int(client.get_model_version_by_alias(MODEL, "champion").version) == good["version"]
    assert refused["evaluation_window"][0] == "2019-07-01"  # out of time for both models

    version = client.get_model_version(MODEL, str(worse["version"]))
    assert version.tags["promotion_decision"] == "refused" and "refused" in version.description
    history = promotion_history(MODEL)
    assert [h["decision"] for h in history] == ["promoted", "refused", "refused"]
    run = client.get_run(refused["run_id"])
    assert "champion_average_precision" in run.data.metrics and "candidate_average_precision" in run.data.metrics
