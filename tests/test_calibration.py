"""Calibration: hand-computed maps, Platt recovery, ECE, and the Spark stage inside a saved pipeline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from sf_ml.calibration import (
    Calibration,
    expected_calibration_error,
    fit_calibration,
    fit_platt,
    odds_ratio,
)


def test_odds_ratio_of_oversampling_to_a_third():
    # q = 0.2 (odds 1/4) resampled to r = 0.5 (odds 1): odds multiplied by 4.
    assert odds_ratio(0.5, 0.2) == pytest.approx(4.0)
    assert odds_ratio(0.2, 0.2) == pytest.approx(1.0)
    assert odds_ratio(0.5, 0.0) == 1.0


def test_prior_correction_brings_a_resampled_probability_back():
    # p_s = 0.5 with k = 4: p = 0.5 / (0.5 + 4 * 0.5) = 0.2.
    calibration = fit_calibration("prior", np.array([0, 1]), np.array([0.3, 0.6]), k=4.0, min_positives=30)
    assert calibration.method == "prior"
    assert calibration.intercept == pytest.approx(-math.log(4.0))
    assert calibration.apply(np.array([0.5]))[0] == pytest.approx(0.2)


def test_platt_falls_back_to_prior_with_too_few_positives():
    y = np.array([0] * 50 + [1] * 5)
    p = np.linspace(0.1, 0.9, 55)
    calibration = fit_calibration("platt", y, p, k=2.0, min_positives=30)
    assert (calibration.method, calibration.rows, calibration.positives) == ("prior", 55, 5)
    assert calibration.intercept == pytest.approx(-math.log(2.0))


def test_none_is_the_identity():
    calibration = fit_calibration("none", np.array([0, 1]), np.array([0.3, 0.6]), k=4.0, min_positives=1)
    assert np.allclose(calibration.apply(np.array([0.01, 0.5, 0.99])), [0.01, 0.5, 0.99])


def test_platt_recovers_the_map_that_generated_the_labels():
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.02, 0.98, 200_000)
    true_p = Calibration("platt", 0.7, -2.0).apply(raw)
    y = (rng.random(raw.size) < true_p).astype(int)
    slope, intercept = fit_platt(y, raw)
    assert slope == pytest.approx(0.7, abs=0.02)
    assert intercept == pytest.approx(-2.0, abs=0.03)


def test_expected_calibration_error_by_hand():
    # Two quantile bins: [0.1, 0.1] with labels [0, 0] (gap 0.1) and [0.9, 0.9] with [1, 0] (gap 0.4).
    y = np.array([0, 0, 1, 0])
    p = np.array([0.1, 0.1, 0.9, 0.9])
    assert expected_calibration_error(y, p, bins=2) == pytest.approx((0.1 * 2 + 0.4 * 2) / 4)
    assert math.isnan(expected_calibration_error(np.array([]), np.array([])))


def test_stage_matches_numpy_and_survives_save_and_load(spark, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import VectorAssembler

    from sf_ml.calibration import RAW_PROBABILITY_COL
    from sf_ml.modeling import classifier_of, positive_probability

    rng = np.random.default_rng(0)
    x = rng.normal(size=300)
    y = (rng.random(300) < 1 / (1 + np.exp(-2 * x))).astype(int)
    frame = spark.createDataFrame(pd.DataFrame({"x": x, "label": y}))
    fitted = Pipeline(stages=[VectorAssembler(inputCols=["x"], outputCol="features"),
                              LogisticRegression()]).fit(frame)
    calibration = Calibration("platt", 0.5, -1.0)
    model = PipelineModel(stages=[*fitted.stages, calibration.stage()])
    model.write().overwrite().save(str(tmp_path / "model"))
    loaded = PipelineModel.load(str(tmp_path / "model"))

    out = loaded.transform(frame).select(
        RAW_PROBABILITY_COL, "prediction", positive_probability().alias("p")).toPandas()
    assert np.allclose(out["prediction"], calibration.apply(out[RAW_PROBABILITY_COL]), atol=1e-12)
    assert np.allclose(out["p"], out["prediction"], atol=1e-12)
    assert type(classifier_of(loaded)).__name__ == "LogisticRegressionModel"
    assert loaded.stages[-1].calibration().slope == 0.5


def test_contributions_move_to_the_calibrated_log_odds_and_still_add_up():
    from sf_ml.calibration import Calibration
    from sf_ml.explain import calibrated_contributions

    calibration = Calibration("platt", 0.8, -2.0)
    phi = np.array([[0.5, -0.25], [1.0, 2.0], [0.0, 0.0]])
    scaled, expected, margin = calibrated_contributions(phi, -1.0, "log_odds", calibration)
    assert margin == "log_odds" and expected == pytest.approx(0.8 * -1.0 - 2.0)
    np.testing.assert_allclose(scaled, phi * 0.8)

    # A forest explains its probability: each row keeps its shares and reaches its calibrated logit.
    phi = np.array([[0.10, 0.05], [-0.02, -0.01], [0.0, 0.0]])
    scaled, expected, margin = calibrated_contributions(phi, 0.2, "probability", calibration)
    raw = 0.2 + phi.sum(axis=1)
    np.testing.assert_allclose(expected + scaled.sum(axis=1), 0.8 * np.log(raw / (1 - raw)) - 2.0)
    np.testing.assert_allclose(scaled[0, 0] / scaled[0, 1], 2.0)
    assert (scaled[2] == 0).all() and margin == "log_odds"
