"""Per-company explanations: additivity against each model's own probability, grouping, top features."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from sf_ml.config import load_config
from sf_ml.explain import base_variable, explain, saved_nodes, top_features, walked_nodes
from sf_ml.modeling import build_pipeline, feature_columns
from sf_ml.panel import TARGET
from tests.panels import FAST_OVERRIDES, synthetic_panel, write_features

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # shap's matplotlib colormaps

TRAIN_START, TRAIN_END = "2018-01-01", "2019-06-01"
MONTH = dt.date(2020, 6, 1)  # the panel's last periode: unlabelled, as when scoring
# The configs' aggregations, bins and groups, but fewer variables: half the fitting time.
FEW_VARIABLES = [
    "features.variables=[paydex, effectif, cotisation, dette_sociale_ouvriere, dette_sociale_patronale, "
    + "dette_par_effectif, ebe_sur_ca, fpi_30]"
]


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    panel = synthetic_panel(n_sirens=200, n_months=30, seed=3)
    return write_features(panel, tmp_path_factory.mktemp("explain") / "features")


def _fitted(spark, features_dir, name, overrides=()):
    from pyspark.sql import functions as F

    config = load_config(name, [*FAST_OVERRIDES[name], *FEW_VARIABLES, *overrides])
    panel = spark.read.parquet(str(features_dir))
    # No split nor resampling: the model only has to be a real fitted pipeline.
    train = panel.where(F.col(TARGET).isNotNull() & F.col("periode").between(TRAIN_START, TRAIN_END))
    model = build_pipeline(config, feature_columns(config)).fit(train)
    return config, model, panel.where(F.col("periode") == F.lit(MONTH))


def _contrib(explanations):
    return explanations[[c for c in explanations.columns if c.startswith("contrib.")]]


def _logit(p):
    return np.log(p / (1 - p))


def test_base_variable_maps_columns_and_slots_to_their_variable():
    config = load_config("standard")
    assert base_variable("dette_sociale_patronale_lag3m", config) == "dette_sociale_patronale"
    assert base_variable("paydex_diff12m", config) == "paydex"
    assert base_variable("paydex_bin3", config) == "paydex"
    assert base_variable("effectif_manquant", config) == "effectif"
    assert base_variable("cotisation_mean12m", config) == "cotisation"
    assert base_variable("dette_par_effectif_diff3m__imputed", config) == "dette_par_effectif"
    # A base variable named like an aggregation stays itself.
    assert base_variable("dette_sur_cotisation_mean12m", config) == "dette_sur_cotisation_mean12m"
    assert base_variable("effectif", config) == "effectif"
    assert base_variable("code_naf", config) == "code_naf"


def test_logistic_contributions_add_up_to_the_log_odds(spark, features_dir):
    config, model, month = _fitted(spark, features_dir, "standard", ["features.missing_indicators=true"])
    del config.topic_groups["misc"]  # effectif, and paydex below, now belong to no group
    config.topic_groups["retards_paiement"] = []
    explanations = explain(model, month, config)

    rows = month.select("siren").toPandas()
    assert explanations["siren"].tolist() == rows["siren"].tolist()
    assert (explanations["periode"] == MONTH).all()
    assert explanations.attrs["margin"] == "log_odds"
    contrib = _contrib(explanations)
    assert set(contrib.columns) == {f"contrib.{v}" for v in config.features.variables}
    np.testing.assert_allclose(explanations["expected_value"], model.stages[-1].intercept)
    np.testing.assert_allclose(explanations["expected_value"] + contrib.sum(axis=1),
                               _logit(explanations["probability"]), rtol=0, atol=1e-6)
    assert contrib["contrib.paydex"].abs().sum() > 0  # bins and diff summed into paydex

    groups = [c for c in explanations.columns if c.startswith("group.")]
    assert groups == [f"group.{g}" for g in config.topic_groups] + ["group.misc"]
    for group, members in config.topic_groups.items():
        used = [f"contrib.{v}" for v in members if f"contrib.{v}" in explanations]
        expected = explanations[used].sum(axis=1)
        np.testing.assert_allclose(explanations[f"group.{group}"], expected, atol=1e-12)
    assert (explanations["group.activite_partielle"] == 0).all()  # no variable of it in the model
    unassigned = ["contrib.effectif", "contrib.paydex", "contrib.fpi_30"]  # fpi_30: in no group of standard
    np.testing.assert_allclose(explanations["group.misc"], explanations[unassigned].sum(axis=1), atol=1e-12)
    np.testing.assert_allclose(explanations[groups].sum(axis=1), contrib.sum(axis=1), atol=1e-9)

    values = month.select("siren", *config.features.variables).toPandas()
    tops = top_features(explanations, values)
    for row, top in enumerate(tops):
        positive = np.sort(contrib.iloc[row].to_numpy())[::-1]
        positive = positive[positive > 0][:3]
        assert [t["contribution"] for t in top] == pytest.approx(positive.tolist())
        for item in top:
            assert item["contribution"] == contrib.at[row, f"contrib.{item['feature']}"]
            value = values.at[row, item["feature"]]
            assert item["value"] == (None if pd.isna(value) else pytest.approx(value))


@pytest.fixture(scope="module")
def forest(spark, features_dir):
    return _fitted(spark, features_dir, "tree_based")


@pytest.fixture(scope="module")
def boosted(spark, features_dir):
    return _fitted(spark, features_dir, "gbt")


def _per_variable(phi, model, config):
    from sf_ml.modeling import feature_slot_names

    bases = np.array([base_variable(slot, config) for slot in feature_slot_names(model)])
    return {variable: phi[:, bases == variable].sum(axis=1) for variable in set(bases)}


def _shap_own_conversion(model, month):
    """SHAP values from shap's own (py4j) reading of the Spark model: an independent reference."""
    import shap
    from pyspark.ml.functions import vector_to_array

    assembled = model.transform(month).select(vector_to_array("features").alias("f")).toPandas()
    phi = shap.TreeExplainer(model.stages[-1]).shap_values(np.array(assembled["f"].tolist()),
                                                           check_additivity=False)
    return phi[..., 1] if phi.ndim == 3 else phi  # a forest has one output per class


def test_random_forest_shap_values_add_up_to_its_probability(forest):
    config, model, month = forest
    explanations = explain(model, month, config)

    # A forest averages its trees' probabilities: SHAP explains P(failure) itself.
    assert explanations.attrs["margin"] == "probability"
    contrib = _contrib(explanations)
    np.testing.assert_allclose(explanations["expected_value"] + contrib.sum(axis=1),
                               explanations["probability"], rtol=0, atol=1e-9)
    assert (contrib.abs().sum(axis=1) > 0).all()
    assert explanations["siren"].tolist() == month.select("siren").toPandas()["siren"].tolist()
    for variable, expected in _per_variable(_shap_own_conversion(model, month), model, config).items():
        np.testing.assert_allclose(contrib[f"contrib.{variable}"], expected, atol=1e-12)


def test_gbt_shap_values_add_up_to_its_log_odds(boosted):
    config, model, month = boosted
    explanations = explain(model, month, config)

    # Spark's GBT: P = 1 / (1 + exp(-2F)); SHAP explains 2F = logit(P).
    assert explanations.attrs["margin"] == "log_odds"
    contrib = _contrib(explanations)
    logit = _logit(explanations["probability"])
    np.testing.assert_allclose(explanations["expected_value"] + contrib.sum(axis=1), logit, rtol=0, atol=1e-6)
    assert (contrib.abs().sum(axis=1) > 0).all()
    for variable, expected in _per_variable(2 * _shap_own_conversion(model, month), model, config).items():
        np.testing.assert_allclose(contrib[f"contrib.{variable}"], expected, atol=1e-9)

    approximate = explain(model, month, config, approximate=True)
    np.testing.assert_allclose(approximate["expected_value"] + _contrib(approximate).sum(axis=1), logit,
                               rtol=0, atol=1e-6)
    assert not np.allclose(_contrib(approximate), contrib)


def test_py4j_walk_reads_the_nodes_spark_saves(boosted):
    classifier = boosted[1].stages[-1]
    saved, walked = saved_nodes(classifier), walked_nodes(classifier)

    assert len(saved) == classifier.totalNumNodes
    pd.testing.assert_frame_equal(saved.drop(columns="impurityStats"), walked.drop(columns="impurityStats"),
                                  check_dtype=False)
    for a, b in zip(saved["impurityStats"], walked["impurityStats"]):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_top_features_picks_the_largest_positive_contributions_in_order():
    explanations = pd.DataFrame({
        "siren": ["1", "2", "3"],
        "probability": [0.5, 0.2, 0.1],
        "contrib.a": [0.5, -0.1, -0.3],
        "contrib.b": [-0.2, 0.4, -0.1],
        "contrib.c": [1.0, 0.0, -0.2],
        "contrib.d": [0.1, -0.3, -0.5],
        "contrib.e": [0.3, -0.2, 0.0],
        "group.misc": [9.0, 9.0, 9.0],
        "expected_value": [-2.0, -2.0, -2.0],
    })
    values = pd.DataFrame({"siren": ["1", "2", "3"], "a": [10.0, 1.0, 2.0], "c": [np.nan, 3.0, 4.0],
                           "e": [7, 8, 9]})

    tops = top_features(explanations, values)

    assert tops[0] == [
        {"feature": "c", "contribution": 1.0, "value": None},
        {"feature": "a", "contribution": 0.5, "value": 10.0},
        {"feature": "e", "contribution": 0.3, "value": 7},
    ]
    assert tops[1] == [{"feature": "b", "contribution": 0.4, "value": None}]  # no "b" value given
    assert tops[2] == []
    assert [t["feature"] for t in top_features(explanations, values, k=4)[0]] == ["c", "a", "e", "d"]
    with pytest.raises(ValueError, match="siren order"):
        top_features(explanations, values.iloc[::-1].reset_index(drop=True))
