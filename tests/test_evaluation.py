"""Evaluation: metrics and thresholds checked against scikit-learn, collection and artifacts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from sf_ml import evaluation as E


@pytest.fixture(scope="module")
def predictions():
    rng = np.random.default_rng(5)
    y = (rng.random(3000) < 0.08).astype(int)
    # Rounded scores: many ties, like tree ensembles produce.
    p = np.clip(rng.normal(0.25 + 0.3 * y, 0.15), 0, 1).round(3)
    return y, p


def brute_force_threshold(y, p, beta):
    candidates = np.unique(p)
    scores = [skm.fbeta_score(y, (p >= t).astype(int), beta=beta, zero_division=0) for t in candidates]
    best = int(np.argmax(scores))
    return candidates[best], scores[best]


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
def test_best_threshold_is_the_brute_force_argmax_of_fbeta(predictions, beta):
    y, p = predictions
    threshold, score = E.best_threshold(y, p, beta)
    expected_threshold, expected_score = brute_force_threshold(y, p, beta)
    assert threshold == expected_threshold
    assert score == pytest.approx(expected_score, rel=1e-12)


def test_choose_thresholds_orders_risk_levels(predictions):
    thresholds = E.choose_thresholds(*predictions)
    assert set(thresholds) == {"risque_fort", "risque_modere"}
    assert thresholds["risque_fort"] >= thresholds["risque_modere"]


def test_a_level_never_flags_more_than_its_share():
    # Hand-computed: positives at 0.1 and 0.9, eight negatives between. F2 ties at 5/9 between
    # flagging everyone (t = 0.1: precision 0.2, recall 1) and flagging the top row (t = 0.9:
    # precision 1, recall 0.5); uncapped the lowest wins, which is no alert list.
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    p = np.array([0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    assert E.best_threshold(y, p, 2.0) == (0.1, pytest.approx(5 / 9))
    # At most 2 of 10 rows: t = 0.8 (precision 0.5, recall 0.5, F2 0.5) or t = 0.9 (F2 5/9).
    assert E.best_threshold(y, p, 2.0, max_share=0.2) == (0.9, pytest.approx(5 / 9))
    # Nothing flags at most 5% of 10 rows: the highest threshold (one row) is returned.
    assert E.best_threshold(y, p, 2.0, max_share=0.05)[0] == 0.9


@pytest.mark.parametrize("share", [0.02, 0.1, 0.3])
def test_capped_threshold_is_the_brute_force_argmax_within_the_share(predictions, share):
    y, p = predictions
    candidates = [t for t in np.unique(p) if (p >= t).mean() <= share]
    scores = [skm.fbeta_score(y, (p >= t).astype(int), beta=2.0, zero_division=0) for t in candidates]
    threshold, score = E.best_threshold(y, p, 2.0, max_share=share)
    assert threshold == candidates[int(np.argmax(scores))]
    assert score == pytest.approx(max(scores), rel=1e-12)
    assert (p >= threshold).mean() <= share


def test_thresholds_of_a_model_that_cannot_rank_keep_short_lists(caplog):
    rng = np.random.default_rng(3)
    y = (rng.random(2000) < 0.05).astype(int)
    p = rng.random(2000) * 0.1  # unrelated to y: every F-beta optimum flags (nearly) everyone
    with caplog.at_level("WARNING", logger="sf_ml.evaluation"):
        thresholds = E.choose_thresholds(y[:400], p[:400])
    for level, cap in E.MAX_ALERT_SHARE.items():
        assert (p[:400] >= thresholds[level]).mean() <= cap
    assert "positives (< 30)" in caplog.text and "optimum flags more than" in caplog.text


def test_score_metrics_equal_scikit_learn(predictions):
    y, p = predictions
    metrics = E.score_metrics(y, p)
    assert metrics["average_precision"] == pytest.approx(skm.average_precision_score(y, p))
    assert metrics["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert metrics["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    assert metrics["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert metrics["positive_rate"] == pytest.approx(y.mean()) and metrics["rows"] == len(y)
    single = E.score_metrics(np.zeros(5, dtype=int), np.full(5, 0.1))
    assert np.isnan(single["roc_auc"]) and np.isnan(single["average_precision"])


def test_metrics_at_threshold_equal_scikit_learn(predictions):
    y, p = predictions
    threshold = 0.5
    alert = (p >= threshold).astype(int)
    metrics = E.metrics_at_threshold(y, p, threshold, beta=2.0)
    tn, fp, fn, tp = skm.confusion_matrix(y, alert).ravel()
    assert (metrics["tn"], metrics["fp"], metrics["fn"], metrics["tp"]) == (tn, fp, fn, tp)
    assert metrics["precision"] == pytest.approx(skm.precision_score(y, alert))
    assert metrics["recall"] == pytest.approx(skm.recall_score(y, alert))
    assert metrics["fbeta"] == pytest.approx(skm.fbeta_score(y, alert, beta=2.0))
    assert metrics["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, alert))
    assert metrics["alert_share"] == pytest.approx(alert.mean())


def test_collect_predictions_reads_class_one_and_drops_unknown_labels(spark):
    from pyspark.ml.linalg import Vectors

    rows = [(1, Vectors.dense([0.2, 0.8])), (0, Vectors.dense([0.9, 0.1])), (None, Vectors.dense([0.5, 0.5]))]
    frame = spark.createDataFrame(rows, ["failure_18m", "probability"])
    y, p = E.collect_predictions(frame)
    assert sorted(zip(y.tolist(), p.tolist())) == [(0, pytest.approx(0.1)), (1, pytest.approx(0.8))]
    y_sampled, _ = E.collect_predictions(frame, max_rows=1, seed=1)
    assert len(y_sampled) <= 2


def test_log_evaluation_writes_plots_and_their_data(tracking_uri, predictions, tmp_path, monkeypatch):
    import mlflow
    import pandas as pd

    monkeypatch.chdir(tmp_path)  # the store's default artifact root is ./mlruns

    y, p = predictions
    thresholds = E.choose_thresholds(y, p)
    importances = pd.DataFrame({"feature": ["a", "paydex_bin3"], "kind": "coefficient", "value": [0.5, -1.0]})
    with mlflow.start_run() as run:
        logged = E.log_evaluation({"test": (y, p), "oot": (y[:1000], p[:1000])}, thresholds, importances)
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "evaluation")}
    for plot in ("pr_curve", "roc_curve", "fbeta_threshold", "calibration", "feature_importances"):
        assert {f"evaluation/{plot}.png", f"evaluation/{plot}.csv"} <= names
    assert set(logged) <= names
    data = E.curves({"test": (y, p)})
    assert len(data["pr_curve"]) <= E.MAX_CURVE_POINTS and {"f0.5", "f2"} <= set(data["fbeta_threshold"])
