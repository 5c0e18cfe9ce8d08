"""Calibration: failure probabilities on the real, un-resampled scale, inside the logged model.

A classifier fitted on resampled rows (positives oversampled to a share r where the true share is
q) predicts on the resampled scale: its probabilities are several times too high. The map fitted
here brings them back, on the log-odds scale::

    p = sigmoid(slope * logit(p_model) + intercept)

* ``prior``: the exact correction of the resampling, ``slope = 1`` and ``intercept = -log k``
  with ``k = (r / (1 - r)) / (q / (1 - q))`` (exact for logistic regression, a first-order
  correction for trees).
* ``platt``: slope and intercept fitted by maximum likelihood on labelled rows the model was not
  fitted on and that are the latest of its window (the held-out companies over the last
  ``calibration.months`` months); falls back to ``prior`` when that slice has fewer than
  ``calibration.min_positives`` positives.
* ``none``: the identity.

Both maps are increasing, so rankings (average precision, ROC AUC) are unchanged. The fitted map is
the last stage of the logged ``PipelineModel``, :class:`CalibratedProbability`: it rewrites the
``probability`` vector (every reader gets calibrated values), keeps the classifier's own value in
``raw_probability`` and sets ``prediction`` to the calibrated probability, so a generic MLflow
client (pyfunc) receives the risk itself.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

log = logging.getLogger(__name__)

METHODS = ("platt", "prior", "none")
RAW_PROBABILITY_COL = "raw_probability"
EPSILON = 1e-9  # probabilities are clipped to [EPSILON, 1 - EPSILON] before the logit


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities clipped to ``[EPSILON, 1 - EPSILON]``."""
    p = np.clip(np.asarray(p, dtype=float), EPSILON, 1 - EPSILON)
    return np.log(p / (1 - p))


def odds_ratio(resampled_rate: float, true_rate: float) -> float:
    """``k``: how many times resampling multiplied the odds of a positive.

    Args:
        resampled_rate: Share of positives the model was fitted on (r).
        true_rate: Share of positives before resampling (q).

    Returns:
        ``(r / (1 - r)) / (q / (1 - q))``; 1.0 when nothing was resampled.
    """
    if not 0 < true_rate < 1 or not 0 < resampled_rate < 1:
        return 1.0
    return (resampled_rate / (1 - resampled_rate)) / (true_rate / (1 - true_rate))


@dataclass(frozen=True)
class Calibration:
    """A fitted log-odds map ``p = sigmoid(slope * logit(p_model) + intercept)``.

    Args:
        method: ``platt``, ``prior`` or ``none`` (the method actually used).
        slope: Multiplier of the model's log-odds.
        intercept: Added to the scaled log-odds.
        rows: Rows of the calibration slice (0 for ``prior`` and ``none``).
        positives: Positives of the calibration slice.
    """

    method: str
    slope: float = 1.0
    intercept: float = 0.0
    rows: int = 0
    positives: int = 0

    def apply(self, p: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of model probabilities (numpy, same as the Spark stage)."""
        z = self.slope * logit(p) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def stage(self) -> CalibratedProbability:
        """The pipeline stage applying this map to a ``probability`` column."""
        return CalibratedProbability(slope=self.slope, intercept=self.intercept, method=self.method)

    def metrics(self) -> dict[str, float]:
        """Parameters as run metrics (``calibration_*``)."""
        return {"calibration_slope": self.slope, "calibration_intercept": self.intercept,
                "calibration_rows": float(self.rows), "calibration_positives": float(self.positives)}


def fit_platt(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood slope and intercept of a logistic regression of ``y`` on ``logit(p)``.

    Newton-Raphson on two parameters, started from the identity; a tiny ridge keeps the Hessian
    invertible on separable slices.

    Args:
        y: 0/1 labels.
        p: Model probabilities.

    Returns:
        ``(slope, intercept)``.
    """
    x = logit(p)
    y = np.asarray(y, dtype=float)
    design = np.column_stack([x, np.ones_like(x)])
    theta = np.array([1.0, 0.0])
    for _ in range(50):
        q = 1.0 / (1.0 + np.exp(-(design @ theta)))
        gradient = design.T @ (q - y) + 1e-6 * theta
        hessian = (design * (q * (1 - q))[:, None]).T @ design + 1e-6 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        theta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return float(theta[0]), float(theta[1])


def fit_calibration(
    method: str, y: np.ndarray, p: np.ndarray, k: float, min_positives: int
) -> Calibration:
    """Fit the configured calibration on a labelled slice of model probabilities.

    Args:
        method: ``platt``, ``prior`` or ``none``.
        y: 0/1 labels of the calibration slice.
        p: The model's (uncalibrated) probabilities of that slice.
        k: Odds ratio of the resampling (:func:`odds_ratio`).
        min_positives: Fewest positives Platt scaling is fitted on; below, ``prior`` is used.

    Returns:
        The fitted :class:`Calibration`.
    """
    if method not in METHODS:
        raise ValueError(f"calibration.method: {method!r} is not one of {METHODS}")
    y = np.asarray(y, dtype=int)
    rows, positives = len(y), int(y.sum())
    if method == "none":
        return Calibration("none", rows=rows, positives=positives)
    if method == "platt" and positives >= min_positives and positives < rows:
        slope, intercept = fit_platt(y, p)
        return Calibration("platt", slope, intercept, rows, positives)
    if method == "platt":
        log.warning("calibration slice has %d positives (< %d): prior correction instead of Platt",
                    positives, min_positives)
    return Calibration("prior", 1.0, -math.log(k), rows, positives)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Row-weighted mean of |observed rate - mean probability| over quantile bins of ``p``.

    Args:
        y: 0/1 labels.
        p: Probabilities.
        bins: Number of quantile bins.

    Returns:
        The ECE (NaN without rows).
    """
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    if not len(y):
        return float("nan")
    order = np.argsort(p, kind="stable")
    gaps = [abs(y[part].mean() - p[part].mean()) * len(part)
            for part in np.array_split(order, min(bins, len(y))) if len(part)]
    return float(np.sum(gaps) / len(y))


class CalibratedProbability(Transformer, DefaultParamsReadable, DefaultParamsWritable):
    """Pipeline stage: ``probability`` rewritten through a fitted log-odds map.

    Adds ``raw_probability`` (the classifier's P(failure)), replaces ``probability`` by
    ``[1 - p, p]`` and ``prediction`` by ``p``, the calibrated P(failure). Spark built-in
    expressions only (no Python UDF); saved and loaded with the pipeline.
    """

    slope = Param(Params._dummy(), "slope", "multiplier of the model's log-odds",
                  typeConverter=TypeConverters.toFloat)
    intercept = Param(Params._dummy(), "intercept", "added to the scaled log-odds",
                      typeConverter=TypeConverters.toFloat)
    method = Param(Params._dummy(), "method", "calibration method that fitted the map",
                   typeConverter=TypeConverters.toString)

    @keyword_only
    def __init__(self, *, slope: float = 1.0, intercept: float = 0.0, method: str = "none"):
        super().__init__()
        self._setDefault(slope=1.0, intercept=0.0, method="none")
        self._set(**self._input_kwargs)

    def calibration(self) -> Calibration:
        """The map this stage applies."""
        return Calibration(self.getOrDefault(self.method), self.getOrDefault(self.slope),
                           self.getOrDefault(self.intercept))

    def _transform(self, dataset: DataFrame) -> DataFrame:
        raw = vector_to_array(F.col("probability"))[1]
        clipped = F.least(F.greatest(raw, F.lit(EPSILON)), F.lit(1 - EPSILON))
        z = (F.lit(self.getOrDefault(self.slope)) * F.log(clipped / (F.lit(1.0) - clipped))
             + F.lit(self.getOrDefault(self.intercept)))
        p = F.lit(1.0) / (F.lit(1.0) + F.exp(-z))
        return (dataset.withColumn(RAW_PROBABILITY_COL, raw)
                .withColumn("prediction", p)
                .withColumn("probability", array_to_vector(F.array(F.lit(1.0) - p, p))))
