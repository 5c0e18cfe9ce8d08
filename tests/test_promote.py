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
    assert refused["evaluation_set"]["companies"] == "held out by every version compared"
    assert 0 < refused["evaluation_set"]["n_companies"] < 300 * 0.3


def test_evaluation_rows_are_unseen_companies_after_both_windows(spark):
    import pandas as pd
    from pyspark.sql import functions as F

    from sf_ml.modeling import held_out
    from sf_ml.promote import TrainingFootprint, evaluation_rows

    sirens = [f"{100000000 + i:09d}" for i in range(400)]
    periodes = [pd.Timestamp("2019-05-01").date(), pd.Timestamp("2019-07-01").date(),
                pd.Timestamp("2019-12-01").date(), pd.Timestamp("2020-01-01").date()]
    rows = [(s, p, None if p == periodes[-1] else (1 if i % 7 == 0 else 0))
            for i, s in enumerate(sirens) for p in periodes]
    panel = spark.createDataFrame(rows, "siren string, periode date, failure_18m int")
    footprints = [TrainingFootprint(1, "2019-06-01", 0.5, 3), TrainingFootprint(2, "2019-06-01", 0.5, 11)]
    rows = evaluation_rows(panel, footprints, "2019-07-01", "2020-06-01")
    marked = panel.select("siren", held_out("siren", 0.5, 3).alias("a"), held_out("siren", 0.5, 11).alias("b"))
    unseen = {r.siren for r in marked.where(F.col("a") & F.col("b")).collect()}
    kept = rows.toPandas()
    assert 60 < len(unseen) < 140  # about a quarter: the two splits are independent
    assert set(kept["siren"]) == unseen
    assert sorted(set(kept["periode"].astype(str))) == ["2019-07-01", "2019-12-01"]  # after the windows, labelled
    assert len(kept) == 2 * len(unseen)


def _register_memoriser(spark, features: str, config, seed: int, model_name: str) -> int:
    """A "model" that is a lookup of every failing row of its training companies, at every periode,
    the evaluation periodes included; honest tags (train_end, seed) say which companies it trained on."""
    import mlflow
    import mlflow.spark
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import SQLTransformer, VectorAssembler
    from pyspark.sql import functions as F

    from sf_ml.modeling import held_out
    from sf_ml.registry import register_model

    panel = spark.read.parquet(features)
    trained_on = panel.where(~held_out("siren", config.split.test_fraction, seed) & (F.col("failure_18m") == 1))
    keys = ", ".join(f"'{r.siren}|{r.periode.isoformat()}'" for r in trained_on.select("siren", "periode").collect())
    lookup = Pipeline(stages=[
        SQLTransformer(statement="SELECT *, CASE WHEN concat(siren, '|', cast(periode AS string)) IN "
                                 f"({keys}) THEN 0.95 ELSE 0.02 END AS remembered FROM __THIS__"),
        SQLTransformer(statement="SELECT *, 1.0 - remembered AS forgotten FROM __THIS__"),
        VectorAssembler(inputCols=["forgotten", "remembered"], outputCol="probability"),
    ]).fit(panel.limit(1))
    with mlflow.start_run() as run:
        mlflow.log_dict(config.to_dict(), "config.json")
        mlflow.spark.log_model(lookup, artifact_path="model", pip_requirements=[])
    tags = {"threshold_risque_fort": 0.5, "threshold_risque_modere": 0.1, "train_end": TRAIN[1], "seed": seed}
    return register_model(run.info.run_id, "model", model_name, "challenger", tags)


def test_a_model_that_memorised_the_evaluation_rows_cannot_win(spark, tracking_uri, panels):
    from pyspark.sql import functions as F

    from sf_ml.promote import evaluate_version
    from sf_ml.registry import resolve_version
    from sf_ml.train import train_model

    features, _ = panels
    config = load_config("standard", FAST_OVERRIDES["standard"])
    name = MODEL + "_memo"
    import mlflow

    with mlflow.start_run():
        honest = train_model(features, config, *TRAIN, model_name=name, spark=spark)
    assert promote(name, "challenger", features, spark=spark)["decision"] == "promoted"
    memoriser = _register_memoriser(spark, features, config, config.seed, name)

    record = promote(name, "challenger", features, spark=spark)
    assert record["candidate_version"] == memoriser and record["decision"] == "refused", record["reason"]
    assert record["candidate_metrics"]["average_precision"] < record["champion_metrics"]["average_precision"]
    # The same two versions judged on every company of the window: the memoriser would have won.
    start, end = record["evaluation_window"]
    every_company = spark.read.parquet(features).where(
        F.col("failure_18m").isNotNull() & F.col("periode").between(start, end))
    seen = {v: evaluate_version(resolve_version(f"models:/{name}/{v}"), every_company)["average_precision"]
            for v in (honest["version"], memoriser)}
    assert seen[memoriser] > seen[honest["version"]] + 0.1, seen
