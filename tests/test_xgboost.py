"""XGBoost (xgboost.spark) as the fourth learner: pipeline, native missing values, explanations, logging."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sf_ml import modeling as M
from sf_ml.config import ConfigError, load_config
from sf_ml.panel import TARGET
from tests.panels import synthetic_panel

pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")

FAST = ["model.params.n_estimators=20", "model.params.max_depth=3", "model.params.num_workers=2",
        "features.variables=[paydex, effectif, cotisation, dette_sociale_patronale, ebe_sur_ca, fpi_30]",
        "features.time_aggregation={lag: {dette_sociale_patronale: [3]}}"]


@pytest.fixture(scope="module")
def fitted(spark):
    config = load_config("xgboost", FAST)
    columns = M.feature_columns(config)
    panel = synthetic_panel(n_sirens=150, n_months=24, seed=5, time_aggregation=config.features.time_aggregation)
    # Labelled rows only, filtered in pandas: whether a NaN label reaches Spark as NaN or null
    # depends on the session's Arrow setting.
    rows = panel.loc[panel[TARGET].notna(), ["siren", *columns, TARGET]].astype({TARGET: "int32"})
    labelled = spark.createDataFrame(rows)
    model = M.build_pipeline(config, columns).fit(labelled)
    return config, columns, model, labelled


def _frame(spark, rows, columns):
    return spark.createDataFrame(rows, ", ".join(f"`{c}` double" for c in columns))


def test_config_accepts_xgboost_and_rejects_imputation_only_options(spark):
    config = load_config("xgboost")
    assert config.model.type == "xgboost" and not config.fill_default_values
    assert config.search_space["max_depth"]["type"] == "quniform"
    columns = M.feature_columns(config)
    assert len(M.build_pipeline(config, columns).getStages()) == 2  # assembler + learner: no imputer
    with pytest.raises(ConfigError, match="model.bins"):
        M.build_pipeline(load_config("xgboost", ["model.scale=true"]), columns)


def test_integer_params_are_cast_and_unknown_params_rejected():
    model = M.estimator("xgboost", {"max_depth": 4.0, "n_estimators": 30.0, "num_workers": 2.0,
                                    "learning_rate": 0.1, "min_child_weight": 3.0}, seed=7)
    values = {name: model.getOrDefault(name) for name in
              ("max_depth", "n_estimators", "num_workers", "learning_rate", "random_state", "missing")}
    assert values["max_depth"] == 4 and isinstance(values["max_depth"], int)
    assert isinstance(values["n_estimators"], int) and isinstance(values["num_workers"], int)
    assert values["learning_rate"] == 0.1 and values["random_state"] == 7 and math.isnan(values["missing"])
    assert model.getOrDefault("min_child_weight") == 3.0
    with pytest.raises(ConfigError, match="max_detph"):
        M.estimator("xgboost", {"max_detph": 3})


def test_scale_pos_weight_auto_is_negatives_over_positives():
    model = M.estimator("xgboost", {"scale_pos_weight": "auto"}, counts=(100, 20))
    assert model.getOrDefault("scale_pos_weight") == 4.0
    assert M.estimator("xgboost", {"scale_pos_weight": 2.5}).getOrDefault("scale_pos_weight") == 2.5
    with pytest.raises(ConfigError, match="auto"):
        M.estimator("xgboost", {"scale_pos_weight": "auto"})


def test_missing_and_zero_stay_distinct_even_in_sparse_vectors(spark):
    """Label 1 iff ``a`` is missing: a sparse row (a = 0 implicit) must score like a dense 0."""
    from pyspark.ml.linalg import SparseVector

    config = load_config("xgboost", ["model.params.n_estimators=5", "model.params.max_depth=2",
                                     "model.params.learning_rate=1.0", "model.params.min_child_weight=1",
                                     "features.variables=[a, b, c, d]", "features.time_aggregation={}"])
    columns = ["a", "b", "c", "d"]
    rows = [(None if i % 3 == 0 else float(i % 2), 0.0, 0.0, float(i % 7 == 0)) for i in range(300)]
    schema = ", ".join(f"{c} double" for c in columns) + f", {TARGET} int"
    train = spark.createDataFrame([(*r, int(r[0] is None)) for r in rows], schema)
    model = M.build_pipeline(config, columns).fit(train)
    probe = _frame(spark, [(0.0, 0.0, 0.0, 0.0), (None, 0.0, 0.0, 0.0), (float("nan"), 0.0, 0.0, 0.0)], columns)
    out = model.transform(probe).collect()
    assert isinstance(out[0].features, SparseVector) and out[0].features.numNonzeros() == 0
    assert np.isnan(out[1].features[0]) and np.isnan(out[2].features[0])  # null and NaN: both missing
    assert out[0].probability[1] < 0.2 < 0.8 < out[1].probability[1]
    assert out[1].probability[1] == pytest.approx(out[2].probability[1])
    import xgboost

    booster = M.booster_of(model)
    dense_zero = booster.predict(xgboost.DMatrix(np.zeros((1, 4)), missing=np.nan))[0]
    assert out[0].probability[1] == pytest.approx(dense_zero, abs=1e-6)


def test_pipeline_scores_nulls_and_importances_cover_slots(spark, fitted):
    from sf_ml.evaluation import feature_importances

    config, columns, model, _ = fitted
    assert M.feature_slot_names(model) == columns
    nulls = _frame(spark, [(None,) * len(columns)], columns)
    assert 0 <= model.transform(nulls).first().probability[1] <= 1
    importances = feature_importances(model, columns)
    assert set(importances["feature"]) == set(columns) and set(importances["kind"]) == {"gain"}
    assert importances["value"].sum() == pytest.approx(1.0) and (importances["value"] >= 0).all()


def test_contributions_add_up_to_the_booster_margin(spark, fitted):
    import xgboost
    from pyspark.ml import PipelineModel

    from sf_ml.calibration import CalibratedProbability
    from sf_ml.explain import LOG_ODDS, explain

    config, columns, model, labelled = fitted
    frame = labelled.limit(40).toPandas()
    frame.loc[::3, "paydex"] = np.nan  # missing values are explained too
    rows = spark.createDataFrame(frame).drop(TARGET)
    explained = explain(model, rows, config)
    assert explained.attrs["margin"] == LOG_ODDS
    contrib = explained[[c for c in explained.columns if c.startswith("contrib.")]].to_numpy()
    total = explained["expected_value"].to_numpy() + contrib.sum(axis=1)
    margin = M.booster_of(model).predict(xgboost.DMatrix(frame[columns].to_numpy(float), missing=np.nan),
                                         output_margin=True)
    np.testing.assert_allclose(total, margin, atol=1e-5)
    p = explained["probability"].to_numpy()
    np.testing.assert_allclose(total, np.log(p / (1 - p)), atol=1e-4)
    # Saabas attributions (approximate) add up to the same margin but are other values.
    saabas = explain(model, rows, config, approximate=True)
    saabas_contrib = saabas[[c for c in saabas.columns if c.startswith("contrib.")]].to_numpy()
    np.testing.assert_allclose(saabas["expected_value"] + saabas_contrib.sum(axis=1), margin, atol=1e-5)
    assert not np.allclose(saabas_contrib, contrib)
    calibrated = PipelineModel(stages=[*model.stages, CalibratedProbability(slope=0.5, intercept=-1.0)])
    again = explain(calibrated, rows, config)  # the classifier is found behind the calibration stage
    names = [c for c in explained.columns if c.startswith("contrib.")]
    # Behind a calibration stage the contributions explain the calibrated log-odds, exactly.
    np.testing.assert_allclose(again[names].to_numpy(), 0.5 * contrib, atol=1e-9)
    q = again["probability"].to_numpy()
    np.testing.assert_allclose(again["expected_value"] + again[names].sum(axis=1), np.log(q / (1 - q)), atol=1e-4)


def test_mlflow_spark_round_trip(spark, fitted, tracking_uri):
    import mlflow
    import mlflow.spark
    from pyspark.ml import PipelineModel

    from sf_ml.calibration import CalibratedProbability
    from sf_ml.train import log_pipeline_model

    config, columns, model, labelled = fitted
    model = PipelineModel(stages=[*model.stages, CalibratedProbability(slope=0.9, intercept=-0.5)])
    with mlflow.start_run():
        info = log_pipeline_model(model, config, columns)
    loaded = mlflow.spark.load_model(info.model_uri)
    assert type(M.classifier_of(loaded)).__name__ == "SparkXGBClassifierModel"
    sample = labelled.limit(50)
    before = [r.probability[1] for r in model.transform(sample).select("probability").collect()]
    after = [r.probability[1] for r in loaded.transform(sample).select("probability").collect()]
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-12)
    requirements = mlflow.pyfunc.get_model_dependencies(info.model_uri)
    assert "xgboost==3.2.0" in open(requirements).read()


def test_positive_weight_enters_the_prior_correction():
    assert M.positive_weight(load_config("xgboost"), (100, 20)) == 1.0
    weighted = load_config("xgboost", ["model.params.scale_pos_weight=auto"])
    assert M.positive_weight(weighted, (100, 20)) == 4.0
    assert M.positive_weight(load_config("tree_based"), (100, 20)) == 1.0
