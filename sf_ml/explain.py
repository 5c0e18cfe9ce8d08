"""Per-company explanations of a fitted failure model, as sf_datalake produces them.

For each scored company: the contribution of every base variable to the model's margin (its
lags, means, diffs, one-hot bins and missing indicator summed into it), their sums by topic
group, and the few "concerning" variables that push the most towards failure.

What is explained, by classifier (``explanations.attrs["margin"]`` says it too):

* logistic regression: the log-odds ``logit(P(failure))``, exactly. Contributions are
  ``coefficient * feature`` in the model's input space (imputed, standard-scaled, one-hot) and
  ``expected_value`` is the intercept.
* gradient-boosted trees: the log-odds too. Spark's GBT margin is ``F = sum(w_t * tree_t(x))``
  with ``P = 1 / (1 + exp(-2F))``; path-dependent TreeSHAP explains ``2F``, so
  ``expected_value + sum(contrib)`` equals ``logit(P)`` up to floating point.
* xgboost: the log-odds, from the booster's own TreeSHAP (``pred_contribs``), run by Spark's
  Python workers with the booster shipped as bytes; ``expected_value`` is its bias term (base
  score included), so ``expected_value + sum(contrib)`` is the booster's margin. Missing inputs
  are not imputed: a NaN feature gets the contribution of its split's default direction.
* random forest: the probability itself. Spark averages the trees' normalized leaf class
  counts, so the forest is additive in probability, not in log-odds; TreeSHAP explains
  ``P(failure)`` and ``expected_value`` is the forest's mean training probability.

A pipeline ending with its calibration stage (every trained model) is explained on the calibrated
scale: the contributions are brought to the calibrated log-odds (:func:`calibrated_contributions`),
so ``expected_value + sum(contrib)`` is ``logit`` of the calibrated probability the model serves,
for every classifier (``attrs["margin"]`` is then ``"log_odds"``).

Cost: path-dependent TreeSHAP is O(trees x leaves x depth^2) per company, about 6 CPU-seconds per
1,000 companies for 100 trees of depth 9 (5 for xgboost's 300 trees of depth 6), so :func:`explain`
runs it in Spark's Python workers, where it spreads over the cluster's cores (``approximate=True``,
Saabas attributions, is a thousand times cheaper). A logistic regression costs one pass over the
frame.

xgboost and shap are imported inside the functions that need them: heavy, needed by some models
only (the Arrow closures that run on executors import their own modules).
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.ml.classification import GBTClassificationModel, LogisticRegressionModel, RandomForestClassificationModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, StructField, StructType

from sf_ml.calibration import EPSILON, CalibratedProbability
from sf_ml.config import AGGREGATIONS, ExperimentConfig, aggregated_name
from sf_ml.modeling import (
    FEATURES_COL,
    IMPUTED_SUFFIX,
    MISSING_SUFFIX,
    PROBABILITY_COL,
    classifier_of,
    feature_slot_names,
)

CONTRIB_PREFIX = "contrib."
GROUP_PREFIX = "group."
MISC_GROUP = "misc"
EXPECTED_VALUE = "expected_value"
PROBABILITY = "probability"
LOG_ODDS = "log_odds"
_BIN_SLOT = re.compile(r"^(?P<variable>.+)_bin\d+$")
_CATEGORY_SLOT = re.compile(r"^(?P<variable>[^=]+)=")
_AGGREGATED = re.compile(rf"^(?P<variable>.+)_(?:{'|'.join(AGGREGATIONS)})\d+m$")
_NODE_COLUMNS = ["treeID", "id", "prediction", "impurityStats", "leftChild", "rightChild",
                 "featureIndex", "threshold", "numCategories"]


def base_variable(slot_or_column: str, config: ExperimentConfig) -> str:
    """The base variable a model column or feature-vector slot is derived from.

    ``dette_sociale_patronale_lag3m`` -> ``dette_sociale_patronale``; ``paydex_diff12m`` and
    ``paydex_bin3`` -> ``paydex``; ``effectif_manquant`` -> ``effectif``; ``naf_section=I`` ->
    ``naf_section``. A base variable maps to
    itself, even one whose name looks aggregated (``dette_sur_cotisation_mean12m``).

    Args:
        slot_or_column: Panel column, ``<column>__imputed`` column or feature slot name.
        config: Experiment configuration (variables, time aggregations, bins).

    Returns:
        The base variable (the name itself when it derives from no known variable).
    """
    name = slot_or_column.removesuffix(IMPUTED_SUFFIX)
    variables = set(config.features.variables) | set(config.model.bins) | set(config.features.categorical)
    if name in variables:
        return name
    for kind in AGGREGATIONS:
        for variable, months in config.features.time_aggregation.get(kind, {}).items():
            if any(name == aggregated_name(variable, kind, m) for m in months):
                return variable
    for pattern in (_CATEGORY_SLOT, _BIN_SLOT, _AGGREGATED):
        match = pattern.match(name)
        if match and match["variable"] in variables:
            return match["variable"]
    stem = name.removesuffix(MISSING_SUFFIX)
    return stem if stem != name and stem in variables else name


def explain(model, frame: DataFrame, config: ExperimentConfig, *, approximate: bool = False) -> pd.DataFrame:
    """Contributions of every base variable and topic group to each row's failure score.

    Logistic regression contributions are computed on the driver from the collected feature
    vectors. Tree SHAP values are computed by Spark's Python workers, a batch of rows at a time;
    only their results reach the driver.

    Args:
        model: ``PipelineModel`` of :func:`sf_ml.modeling.build_pipeline` ending with a logistic
            regression, random forest, GBT or xgboost classifier.
        frame: Panel rows of one prediction month: ``siren`` (``periode`` optional) and the
            model's input columns. One row per company and a few dozen doubles per row come back
            to the driver: do not pass a whole panel.
        config: The model's experiment configuration.
        approximate: Trees only: Saabas path attributions instead of TreeSHAP values (additive
            too, a thousand times faster, but not consistent).

    Returns:
        One row per input row, in the frame's order, with a default index: ``siren`` (and
        ``periode``), ``probability`` (the model's own P(failure)), ``contrib.<variable>`` per
        base variable the model uses, ``group.<group>`` per topic group plus ``group.misc``
        (variables of no group; a variable listed in several groups counts in the first), and
        ``expected_value``. ``expected_value + sum(contrib.*)`` is the explained margin,
        ``attrs["margin"]``: ``"log_odds"`` (``logit(probability)``; logistic regression, exact,
        GBT and xgboost) or ``"probability"`` (random forest).

    Raises:
        TypeError: The classifier is of another kind.
    """
    from xgboost.spark import SparkXGBClassifierModel

    classifier = classifier_of(model)
    if not isinstance(classifier, (LogisticRegressionModel, RandomForestClassificationModel,
                                   GBTClassificationModel, SparkXGBClassifierModel)):
        raise TypeError(f"cannot explain a {type(classifier).__name__}")
    slots = feature_slot_names(model)
    scored = _scored(model, frame)
    if isinstance(classifier, LogisticRegressionModel):
        table = scored.toArrow()  # one month: ~350k rows x a few dozen doubles on the driver
        phi = _matrix(table.column("__features"), len(slots)) * classifier.coefficients.toArray()
        expected, margin = float(classifier.intercept), LOG_ODDS
    elif isinstance(classifier, SparkXGBClassifierModel):
        booster = classifier.get_booster()
        table = _spark_contributions(scored, len(slots), _xgboost_batch_explainer(booster, len(slots), approximate))
        phi = _matrix(table.column("__phi"), len(slots))
        expected, margin = xgboost_bias(booster, len(slots)), LOG_ODDS
    else:
        trees = spark_tree_ensemble(classifier)
        table = _spark_contributions(scored, len(slots), _shap_batch_explainer(trees, approximate))
        phi = _matrix(table.column("__phi"), len(slots))
        expected, margin = tree_expected_value(trees), trees.margin
    keys = table.select([c for c in table.column_names if not c.startswith("__")]).to_pandas()
    probability = table.column("__probability").to_numpy(zero_copy_only=False).astype(np.float64)
    calibration = _calibration_of(model)
    if calibration is not None:
        phi, expected, margin = calibrated_contributions(phi, expected, margin, calibration)
    return _assemble(keys, probability, phi, expected, slots, config, margin)


def _calibration_of(model):
    """The :class:`sf_ml.calibration.Calibration` of a pipeline's last stage, or None."""
    last = model.stages[-1]
    return last.calibration() if isinstance(last, CalibratedProbability) else None


def calibrated_contributions(phi: np.ndarray, expected: float, margin: str, calibration) -> tuple:
    """Contributions to the classifier's margin, turned into contributions to the calibrated log-odds.

    The calibration is affine in log-odds (``z = slope * logit(p) + intercept``): a log-odds
    margin's contributions are multiplied by the slope and the intercept joins the expected
    value, exactly. A probability margin (random forest) is not linear in log-odds: each row's
    contributions are rescaled together so that they keep their shares and add up to the
    row's calibrated log-odds minus that of the expected value.

    Args:
        phi: ``(rows, slots)`` contributions to the classifier's margin.
        expected: The margin's expected value.
        margin: ``"log_odds"`` or ``"probability"``.
        calibration: The pipeline's calibration map.

    Returns:
        ``(phi, expected, "log_odds")`` on the calibrated log-odds scale.
    """
    slope, intercept = calibration.slope, calibration.intercept
    if margin == LOG_ODDS:
        return phi * slope, slope * expected + intercept, LOG_ODDS

    def calibrated_logit(p):
        p = np.clip(p, EPSILON, 1 - EPSILON)
        return slope * np.log(p / (1 - p)) + intercept

    base = float(calibrated_logit(np.asarray(expected)))
    total = phi.sum(axis=1)
    moved = calibrated_logit(expected + total) - base
    scale = np.divide(moved, total, out=np.zeros_like(total), where=np.abs(total) > 1e-12)
    return phi * scale[:, None], base, LOG_ODDS


def xgboost_bias(booster, width: int) -> float:
    """The bias term of an xgboost booster's TreeSHAP contributions (base score included).

    It is the same for every row: the last column of ``pred_contribs`` for one row of NaN.
    """
    import xgboost

    contribs = booster.predict(xgboost.DMatrix(np.full((1, width), np.nan), missing=np.nan), pred_contribs=True)
    return float(contribs[0, width])


def _xgboost_batch_explainer(booster, width: int, approximate: bool):
    """A factory, run on an executor, of ``features -> contributions`` by the booster's own TreeSHAP.

    The booster travels as its raw bytes; each task uses one thread (``spark.task.cpus``), so a
    month's explanations spread over the executors' cores like the Spark trees' do.
    """
    raw = bytes(booster.save_raw("ubj"))

    def make():
        import numpy
        import xgboost

        model = xgboost.Booster(params={"nthread": 1}, model_file=bytearray(raw))

        def contributions(features):
            matrix = xgboost.DMatrix(features, missing=numpy.nan)
            return model.predict(matrix, pred_contribs=True, approx_contribs=approximate)[:, :width]

        return contributions

    return make


def _shap_batch_explainer(trees: TreeArrays, approximate: bool):
    """A factory, run on an executor, of ``features -> contributions`` by shap's TreeSHAP of ``trees``."""
    arrays = trees.trees

    def make():
        import shap

        explainer = shap.TreeExplainer(
            {"trees": arrays, "tree_output": "raw_value", "base_offset": 0.0},
            feature_perturbation="tree_path_dependent",
        )
        return lambda features: explainer.shap_values(features, check_additivity=False, approximate=approximate)

    return make


def _scored(model, frame: DataFrame) -> DataFrame:
    """Keys, feature array and P(failure) of the frame transformed by the pipeline."""
    return model.transform(frame).select(
        *[c for c in ("siren", "periode") if c in frame.columns],
        vector_to_array(F.col(FEATURES_COL)).alias("__features"),
        vector_to_array(F.col(PROBABILITY_COL))[1].alias("__probability"),
    )


def _matrix(column, width: int) -> np.ndarray:
    """A list<double> Arrow column of equal-length lists as a ``(rows, width)`` matrix."""
    flat = column.combine_chunks().flatten() if hasattr(column, "combine_chunks") else column.flatten()
    return flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(column), width)


def _spark_contributions(scored: DataFrame, width: int, make_explainer) -> pa.Table:
    """The scored rows with a ``__phi`` list column of contributions, as an Arrow table.

    Rows are spread over the default parallelism (a month of parquet may be one partition) and
    put back in the frame's order on the driver. Each Python worker builds its explainer once
    (``make_explainer()``, a closure pickled by value: executors need shap or xgboost, not
    sf_ml) and explains Arrow batches of ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows
    (10,000 by default); only the contributions reach the driver.
    """
    parallelism = scored.sparkSession.sparkContext.defaultParallelism
    numbered = scored.withColumn("__row", F.monotonically_increasing_id()).repartition(parallelism)
    kept = [c for c in numbered.columns if c != "__features"]
    schema = StructType([
        *[numbered.schema[c] for c in kept], StructField("__phi", ArrayType(DoubleType(), False)),
    ])

    def explained_batches(batches):
        import numpy
        import pyarrow

        contributions = make_explainer()
        for batch in batches:
            rows = batch.num_rows
            features = batch.column("__features").flatten().to_numpy(zero_copy_only=False)
            phi = numpy.zeros((rows, width))
            if rows:
                phi = numpy.asarray(contributions(features.reshape(rows, width)), dtype=numpy.float64)
            offsets = pyarrow.array(numpy.arange(rows + 1, dtype=numpy.int32) * width)
            values = pyarrow.ListArray.from_arrays(offsets, pyarrow.array(phi.reshape(-1), pyarrow.float64()))
            yield pyarrow.RecordBatch.from_arrays(
                [batch.column(c) for c in kept] + [values], names=[*kept, "__phi"],
            )

    table = numbered.mapInArrow(explained_batches, schema).toArrow()  # one month, like the features
    return table.take(pa.array(np.argsort(table.column("__row").to_numpy(), kind="stable")))


@dataclass
class TreeArrays:
    """A Spark tree ensemble in shap's custom-tree format.

    Args:
        trees: Per tree, a dict of node arrays: ``children_left``, ``children_right``,
            ``children_default``, ``features``, ``thresholds``, ``values`` (``(nodes, 1)``,
            scaled so that the ensemble's output is the sum over trees) and
            ``node_sample_weight`` (weighted training counts).
        margin: What the summed tree outputs are: ``"probability"`` or ``"log_odds"``.
    """

    trees: list[dict[str, np.ndarray]]
    margin: str


def spark_tree_ensemble(classifier, nodes: pd.DataFrame | None = None) -> TreeArrays:
    """A Spark random forest or GBT classifier as arrays that add up to its margin.

    Random forest: a leaf's value is its class-1 share of (bootstrap-weighted) training counts
    divided by the number of trees, as Spark averages the trees' normalized counts. GBT: a
    leaf's value is ``2 * treeWeight * prediction``, so the trees add up to the log-odds.
    Splits go left when ``x <= threshold`` in both Spark and shap; a split of a one-hot slot
    (categorical with 2 categories in Spark) becomes the same split at 0.5.

    Args:
        classifier: ``RandomForestClassificationModel`` or ``GBTClassificationModel``.
        nodes: Node table (:func:`saved_nodes` or :func:`walked_nodes`); read if None.

    Returns:
        The trees and the margin they add up to.

    Raises:
        NotImplementedError: The trees split a feature of more than 2 categories.
    """
    if nodes is None:
        nodes = _node_table(classifier)
    boosted = isinstance(classifier, GBTClassificationModel)
    weights = np.asarray(classifier.treeWeights, dtype=np.float64)
    trees = []
    for tree_id, tree in nodes.groupby("treeID", sort=True):
        tree = tree.sort_values("id")
        if not np.array_equal(tree["id"].to_numpy(), np.arange(len(tree))):
            raise ValueError(f"tree {tree_id}: node ids are not 0..{len(tree) - 1}")
        left, right = tree["leftChild"].to_numpy(np.int32), tree["rightChild"].to_numpy(np.int32)
        internal = left >= 0
        categories = tree["numCategories"].to_numpy()
        if np.any(internal & (categories > 2)):
            raise NotImplementedError("explaining trees with splits over more than 2 categories is not supported")
        # A split of a 0/1 slot (one-hot) sending category c left: x <= 0.5 goes left when c is
        # 0; when c is 1 the children swap.
        binary = internal & (categories == 2)
        thresholds = np.where(binary, 0.5, tree["threshold"].to_numpy(np.float64))
        swap = binary & (tree["threshold"].to_numpy(np.float64) == 1.0)
        left, right = np.where(swap, right, left), np.where(swap, left, right)
        stats = np.stack(tree["impurityStats"].to_numpy()).astype(np.float64)
        if boosted:
            cover = stats[:, 0]  # variance impurity: [weighted count, sum, sum of squares]
            values = 2.0 * weights[tree_id] * tree["prediction"].to_numpy(np.float64)
        else:
            cover = stats.sum(axis=1)
            share = np.divide(stats[:, 1], cover, out=np.zeros(len(cover)), where=cover > 0)
            values = share / len(weights)
        trees.append({
            "children_left": left,
            "children_right": right,
            "children_default": left.copy(),  # the pipeline imputes: no missing value reaches a tree
            "features": np.where(internal, tree["featureIndex"].to_numpy(), -2).astype(np.int32),
            "thresholds": np.where(internal, thresholds, -2.0),
            "values": values.reshape(-1, 1),
            "node_sample_weight": cover,
        })
    return TreeArrays(trees, LOG_ODDS if boosted else PROBABILITY)


def tree_expected_value(trees: TreeArrays) -> float:
    """The ensemble's mean output over its training data (covers): TreeSHAP's base value.

    Args:
        trees: Output of :func:`spark_tree_ensemble`.

    Returns:
        The base value, in the trees' margin.
    """
    return float(np.ravel(_explainer(trees).expected_value)[0])


def _explainer(trees: TreeArrays):
    import shap

    return shap.TreeExplainer(
        {"trees": trees.trees, "tree_output": "raw_value", "base_offset": 0.0},
        feature_perturbation="tree_path_dependent",
    )


def _node_table(classifier) -> pd.DataFrame:
    spark = SparkSession.getActiveSession()
    if spark is not None and spark.sparkContext.master.startswith("local"):
        return saved_nodes(classifier)
    return walked_nodes(classifier)


def saved_nodes(classifier) -> pd.DataFrame:
    """Every node of every tree, from the classifier's own saved data.

    Spark's model writer serializes 100 trees of depth 9 (45k nodes) in a few seconds where a
    py4j walk (:func:`walked_nodes`, shap's own conversion) takes 40 s. The temporary directory is on the driver's disk, which the executors share
    in local mode only (:func:`explain` walks the trees through py4j otherwise).

    Args:
        classifier: ``RandomForestClassificationModel`` or ``GBTClassificationModel``.

    Returns:
        One row per node: ``treeID``, preorder ``id``, ``prediction``, ``impurityStats``,
        children ids (-1 for leaves), ``featureIndex``, ``threshold`` (NaN for leaves; for a
        categorical split, its first left category) and ``numCategories`` (-1 unless the split
        is categorical).
    """
    with tempfile.TemporaryDirectory(prefix="sf_ml_trees_") as directory:
        path = Path(directory) / "model"
        classifier.write().save(path.as_uri())
        table = pq.read_table(path / "data")
    node = table.column("nodeData").combine_chunks()
    split = node.field("split")
    frame = pd.DataFrame({
        "treeID": table.column("treeID").to_numpy(),
        **{name: node.field(name).to_pandas() for name in (
            "id", "prediction", "impurityStats", "leftChild", "rightChild")},
        "featureIndex": split.field("featureIndex").to_numpy(),
        "threshold": [v[0] if len(v) else math.nan
                      for v in split.field("leftCategoriesOrThreshold").to_pylist()],
        "numCategories": split.field("numCategories").to_numpy(),
    })
    frame["threshold"] = np.where(frame["leftChild"] >= 0, frame["threshold"], math.nan)
    return frame[_NODE_COLUMNS]


def walked_nodes(classifier) -> pd.DataFrame:
    """Every node of every tree, read node by node through py4j (any deployment; slow).

    Args:
        classifier: ``RandomForestClassificationModel`` or ``GBTClassificationModel``.

    Returns:
        The table of :func:`saved_nodes`, with the same preorder ids.
    """
    rows: list[dict] = []

    def visit(tree_id: int, first_row: int, node) -> int:
        node_id = len(rows) - first_row  # preorder, like Spark's writer
        row = {"treeID": tree_id, "id": node_id, "prediction": float(node.prediction()),
               "impurityStats": np.array(list(node.impurityStats().stats()), dtype=np.float64),
               "leftChild": -1, "rightChild": -1, "featureIndex": -1, "threshold": math.nan,
               "numCategories": -1}
        rows.append(row)
        if node.getClass().getSimpleName() == "InternalNode":
            split = node.split()
            row["featureIndex"] = int(split.featureIndex())
            if split.getClass().getSimpleName() == "CategoricalSplit":
                row["numCategories"] = int(split.numCategories())
                row["threshold"] = float(split.leftCategories()[0])
            else:
                row["threshold"] = float(split.threshold())
            row["leftChild"] = visit(tree_id, first_row, node.leftChild())
            row["rightChild"] = visit(tree_id, first_row, node.rightChild())
        return node_id

    for tree_id, tree in enumerate(classifier.trees):
        visit(tree_id, len(rows), tree._java_obj.rootNode())
    return pd.DataFrame(rows, columns=_NODE_COLUMNS)


def _groups_of(variables: list[str], config: ExperimentConfig) -> dict[str, list[str]]:
    group_of: dict[str, str] = {}
    for group, members in config.topic_groups.items():
        for variable in members:
            group_of.setdefault(variable, group)
    groups: dict[str, list[str]] = {group: [] for group in config.topic_groups}
    groups.setdefault(MISC_GROUP, [])
    for variable in variables:
        groups[group_of.get(variable, MISC_GROUP)].append(variable)
    return groups


def _assemble(keys: pd.DataFrame, probability: np.ndarray, phi: np.ndarray, expected: float,
              slots: list[str], config: ExperimentConfig, margin: str) -> pd.DataFrame:
    """Sum slot contributions into base variables and groups; build the explanations frame."""
    bases = [base_variable(slot, config) for slot in slots]
    variables = list(dict.fromkeys(bases))
    to_variable = np.zeros((len(slots), len(variables)))
    to_variable[np.arange(len(slots)), [variables.index(b) for b in bases]] = 1.0
    contrib = phi @ to_variable
    groups = _groups_of(variables, config)
    to_group = np.zeros((len(variables), len(groups)))
    for column, members in enumerate(groups.values()):
        to_group[[variables.index(v) for v in members], column] = 1.0
    out = pd.concat([
        keys.reset_index(drop=True),
        pd.DataFrame({PROBABILITY: probability}),
        pd.DataFrame(contrib, columns=[CONTRIB_PREFIX + v for v in variables]),
        pd.DataFrame(contrib @ to_group, columns=[GROUP_PREFIX + g for g in groups]),
        pd.DataFrame({EXPECTED_VALUE: np.full(len(probability), expected)}),
    ], axis=1)
    out.attrs["margin"] = margin
    return out


def top_features(explanations: pd.DataFrame, values: pd.DataFrame, k: int = 3) -> list[list[dict]]:
    """The ``k`` base variables pushing each row the most towards failure.

    Args:
        explanations: Output of :func:`explain`.
        values: The base variables' current values, one row per explanations row in the same
            order (positional; when both frames have ``siren`` they must agree).
        k: Features per row at most.

    Returns:
        Per row, up to ``k`` dicts ``{"feature", "contribution", "value"}`` for the variables
        with a strictly positive contribution, largest first; ``value`` is None when the
        variable is missing from ``values`` or null there.

    Raises:
        ValueError: The frames differ in length or in their ``siren`` sequence.
    """
    if len(values) != len(explanations):
        raise ValueError(f"{len(values)} value rows for {len(explanations)} explanations")
    if "siren" in values.columns and "siren" in explanations.columns and not np.array_equal(
        values["siren"].to_numpy(), explanations["siren"].to_numpy()
    ):
        raise ValueError("values and explanations are not in the same siren order")
    columns = [c for c in explanations.columns if c.startswith(CONTRIB_PREFIX)]
    names = [c.removeprefix(CONTRIB_PREFIX) for c in columns]
    contrib = explanations[columns].to_numpy(dtype=np.float64)
    order = np.argsort(-contrib, axis=1, kind="stable")[:, :k]
    current = {n: values[n].to_numpy(dtype=object) for n in names if n in values.columns}
    result = []
    for row, indices in enumerate(order):
        picked = []
        for index in indices:
            contribution = contrib[row, index]
            if not contribution > 0:
                break
            name = names[index]
            value = current[name][row] if name in current else None
            picked.append({"feature": name, "contribution": float(contribution), "value": _plain(value)})
        result.append(picked)
    return result


def _plain(value):
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value
