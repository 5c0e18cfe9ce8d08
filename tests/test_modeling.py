"""Modeling: feature columns, in-pipeline imputation and binning, resampling, siren split."""

from __future__ import annotations


import pytest

from sf_ml import modeling as M
from sf_ml.config import load_config
from sf_ml.panel import TARGET
from tests.panels import FAST_OVERRIDES, read_features, synthetic_panel, write_features

@pytest.fixture(scope="module")
def panel_df(spark, tmp_path_factory):
    panel = synthetic_panel(n_sirens=150, n_months=24, failing_share=0.25, seed=1)
    return read_features(spark, write_features(panel, tmp_path_factory.mktemp("modeling") / "features")).cache()


def test_synthetic_panel_has_the_features_schema(panel_df):
    types = dict(panel_df.dtypes)
    assert types["siren"] == "string" and types["periode"] == "date" and types[TARGET] == "int"
    assert types["dette_sociale_patronale_lag3m"] == "double" and types["paydex_manquant"] == "int"
    counts = panel_df.groupBy(panel_df[TARGET].isNull().alias("unknown")).count().collect()
    assert {r.unknown for r in counts} == {True, False}


def test_feature_columns_and_fill_values_cover_aggregations():
    config = load_config("standard", ["fill_default_values.dette_sociale_patronale=5.0",
                                      "features.missing_indicators=true"])
    columns = M.feature_columns(config)
    assert columns[: len(config.features.variables)] == config.features.variables
    assert "dette_sociale_patronale_lag3m" in columns and "paydex_manquant" in columns
    assert len(columns) == len(set(columns))
    fill = M.fill_values(config, columns)
    assert fill["dette_sociale_patronale"] == fill["dette_sociale_patronale_lag3m"] == 5.0
    assert fill["paydex_diff12m"] == 0.0 and fill["paydex_manquant"] == 0.0


def test_split_by_siren_is_disjoint_and_deterministic(panel_df):
    train, test = M.split_by_siren(panel_df, 0.2, seed=7)
    sirens = lambda df: {r.siren for r in df.select("siren").distinct().collect()}  # noqa: E731
    train_sirens, test_sirens = sirens(train), sirens(test)
    assert not train_sirens & test_sirens
    assert train_sirens | test_sirens == sirens(panel_df)
    assert 0.1 < len(test_sirens) / len(train_sirens | test_sirens) < 0.3
    assert sirens(M.split_by_siren(panel_df, 0.2, seed=7)[1]) == test_sirens
    assert sirens(M.split_by_siren(panel_df, 0.2, seed=8)[1]) != test_sirens


@pytest.mark.parametrize("strategy", ["oversample", "undersample"])
def test_resample_reaches_minority_ratio(panel_df, strategy):
    labelled = panel_df.where(f"{TARGET} IS NOT NULL")
    rows, positives = M.class_counts(labelled)
    assert positives / rows < 0.3
    out = M.resample(labelled, strategy, 0.35, seed=3)
    out_rows, out_positives = M.class_counts(out)
    assert out_positives / out_rows == pytest.approx(0.35, abs=0.03)
    kept = out_rows - out_positives if strategy == "oversample" else out_positives
    assert kept == (rows - positives if strategy == "oversample" else positives)
    assert M.resample(labelled, "none", 0.35, seed=3) is labelled


def test_pipeline_imputes_nulls_and_bins_paydex(spark, panel_df):
    config = load_config("standard", FAST_OVERRIDES["standard"])
    columns = M.feature_columns(config)
    labelled = panel_df.where(f"{TARGET} IS NOT NULL")
    model = M.build_pipeline(config, columns).fit(labelled)

    slots = M.feature_slot_names(model)
    assert "paydex" not in slots and "paydex_diff12m" in slots and "paydex_bin3" in slots
    assert len(slots) == model.stages[-1].numFeatures

    empty = spark.createDataFrame([(None,) * len(columns)], ", ".join(f"`{c}` double" for c in columns))
    probe = empty.unionByName(
        spark.createDataFrame([{c: 1.0 for c in columns} | {"paydex": 45.0}]).select(*columns)
    )
    out = model.transform(probe).collect()
    assert len(out) == 2 and all(0 <= row.probability[1] <= 1 for row in out)
    assert out[0]["dette_sociale_patronale_lag3m__imputed"] == 0.0
    assert out[0]["paydex__bin"] == 1.0  # imputed 0.0 falls in [0, 15)
    assert out[1]["paydex__bin"] == 3.0  # 45 falls in [30, 60): slot paydex_bin3


@pytest.mark.parametrize("name", ["tree_based", "gbt"])
def test_tree_pipelines_fit_and_score_nulls(spark, panel_df, name):
    config = load_config(name, [*FAST_OVERRIDES[name], "model.params.numTrees=5"] if name == "tree_based"
                         else FAST_OVERRIDES[name])
    columns = M.feature_columns(config)
    model = M.build_pipeline(config, columns).fit(panel_df.where(f"{TARGET} IS NOT NULL"))
    assert M.feature_slot_names(model) == columns
    nulls = spark.createDataFrame([(None,) * len(columns)], ", ".join(f"`{c}` double" for c in columns))
    assert 0 <= model.transform(nulls).first().probability[1] <= 1


def test_estimator_rejects_unknown_params():
    from sf_ml.config import ConfigError

    with pytest.raises(ConfigError, match="numTreez"):
        M.estimator("random_forest", {"numTreez": 3})
    assert M.estimator("gbt", {"maxDepth": 4.0}, seed=1).getMaxDepth() == 4
