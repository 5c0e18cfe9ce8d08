"""The evaluation wiring of ``train``: which companies and periodes each set holds, where thresholds come from.

Each test here was seen failing on the mutation it names (the issue's three one-line changes).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from pyspark.sql import functions as F

from sf_ml import evaluation as E
from sf_ml.config import load_config
from sf_ml.panel import TARGET
from sf_ml.train import evaluate_model, fit, training_sets
from tests.panels import FAST_OVERRIDES, synthetic_panel, write_features

TRAIN_START, TRAIN_END = "2018-01-01", "2019-06-01"


@pytest.fixture(scope="module")
def sets(spark, tmp_path_factory):
    features = write_features(synthetic_panel(n_sirens=300, n_months=36, seed=11),
                              tmp_path_factory.mktemp("wiring") / "features")
    config = load_config("standard", FAST_OVERRIDES["standard"])
    return config, training_sets(spark, features, config, TRAIN_START, TRAIN_END, seed=5)


def _sirens(frame) -> set[str]:
    return {row["siren"] for row in frame.select("siren").distinct().collect()}


def _periodes(frame) -> tuple[dt.date, dt.date]:
    row = frame.agg(F.min("periode").alias("first"), F.max("periode").alias("last")).first()
    return row["first"], row["last"]


def test_out_of_time_set_holds_the_held_out_companies_only(sets):
    """Mutation: ``oot`` built from the training companies (``~held_out``) -> fails."""
    _, s = sets
    train, test, oot = _sirens(s.train), _sirens(s.test), _sirens(s.oot)
    assert train and test and oot
    assert not train & test and not train & oot
    assert len(oot & test) >= 0.8 * len(oot), "the out-of-time companies are the held-out ones, later"


def test_training_rows_stop_at_train_end(sets):
    """Mutation: the window without its upper bound -> training rows after train_end -> fails."""
    _, s = sets
    end = dt.date.fromisoformat(TRAIN_END)
    for frame in (s.train, s.test, s.calibration):
        first, last = _periodes(frame)
        assert dt.date.fromisoformat(TRAIN_START) <= first and last <= end
    assert s.last_periode == end
    assert _periodes(s.oot)[0] > end
    assert s.rows == s.train.count() and s.positives == s.train.where(F.col(TARGET) == 1).count()


def test_thresholds_are_chosen_on_the_grouped_test_set(sets):
    """Mutation: thresholds chosen on the out-of-time predictions -> fails (they differ here)."""
    config, s = sets
    model, _ = fit(config, s, seed=5)
    predictions, thresholds, by_set = evaluate_model(model, s)
    on_test = E.choose_thresholds(*predictions["test"][:2])
    on_oot = E.choose_thresholds(*predictions["oot"][:2])
    assert on_test != on_oot, "the two sets must disagree for this test to discriminate"
    assert thresholds == on_test
    assert thresholds["risque_fort"] >= thresholds["risque_modere"]
    y, p, _ = predictions["oot"]
    expected = E.evaluate(y, p, on_test)
    assert by_set["oot"]["average_precision"] == pytest.approx(expected["average_precision"])
    assert np.isclose(by_set["oot"]["risque_fort_precision"], expected["risque_fort_precision"])
