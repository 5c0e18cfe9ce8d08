"""The model: feature selection, Spark ML pipeline, class resampling and the siren split.

The pipeline carries its own preprocessing (imputation, binning, scaling), so the logged
``PipelineModel`` scores raw panel rows, nulls included. Functions here are shared by the
``train``, ``tune`` and ``backtest`` stages.

xgboost is imported only when an xgboost estimator is built: it is heavy and optional.
"""

from __future__ import annotations

from importlib import metadata

import numpy as np
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier
from pyspark.ml.feature import (
    Bucketizer,
    OneHotEncoder,
    OneHotEncoderModel,
    SQLTransformer,
    StandardScaler,
    StringIndexer,
    StringIndexerModel,
    VectorAssembler,
)
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sf_ml.calibration import CalibratedProbability
from sf_ml.config import AGGREGATIONS, ConfigError, ExperimentConfig, aggregated_name
from sf_ml.panel import TARGET

FEATURES_COL = "features"
PROBABILITY_COL = "probability"  # Spark ML default of every classifier used
IMPUTED_SUFFIX = "__imputed"
BIN_SUFFIX = "__bin"
ONE_HOT_SUFFIX = "__onehot"
INDEX_SUFFIX = "__index"
CATEGORY_SUFFIX = "__category"
MISSING_SUFFIX = "_manquant"
SPLIT_BUCKETS = 10_000
XGBOOST = "xgboost"
# model.type values whose learner handles missing values itself: no imputation stage, NaN features.
NATIVE_MISSING_TYPES = (XGBOOST,)
# XGBoost parameters that must be integers (hyperopt and YAML overrides may give floats).
XGBOOST_INTEGER_PARAMS = (
    "max_depth", "n_estimators", "num_workers", "max_bin", "max_leaves", "num_parallel_tree",
    "early_stopping_rounds", "max_cat_to_onehot",
)
XGBOOST_DEFAULTS = {"num_workers": 1, "verbose": False}
AUTO = "auto"


def feature_columns(config: ExperimentConfig) -> list[str]:
    """The panel columns the model reads, in a stable order.

    Base variables, then their time aggregations, then (with ``features.missing_indicators``)
    one ``<variable>_manquant`` indicator per base variable.

    Args:
        config: Experiment configuration.

    Returns:
        Column names, without duplicates.
    """
    columns = [*config.features.variables, *config.aggregated_columns()]
    if config.features.missing_indicators:
        columns += [f"{variable}{MISSING_SUFFIX}" for variable in config.features.variables]
    return list(dict.fromkeys(columns))


def input_columns(config: ExperimentConfig) -> list[str]:
    """Every panel column the model reads: :func:`feature_columns`, then the categorical ones."""
    return [*feature_columns(config), *config.features.categorical]


def category_indexer(categorical: list[str]) -> StringIndexer:
    """Index each categorical column by label (alphabetical) into ``<column>__index``.

    A label unseen in training, or a null, gets the extra "unknown" index (``handleInvalid="keep"``).

    Args:
        categorical: Text columns (at least one).

    Returns:
        The unfitted ``StringIndexer``.
    """
    indexed = [c + INDEX_SUFFIX for c in categorical]
    return StringIndexer(inputCols=list(categorical), outputCols=indexed, handleInvalid="keep",
                         stringOrderType="alphabetAsc")


def category_stages(categorical: list[str]) -> list:
    """Index each categorical column by label (alphabetical) and one-hot encode it.

    A label unseen in training, or a null, gets the indexer's extra "unknown" index, whose slot
    the encoder drops: it scores as all zeros (no category) instead of failing.

    Args:
        categorical: Text columns.

    Returns:
        The two stages (none without categorical columns); outputs ``<column>__category``.
    """
    if not categorical:
        return []
    indexer = category_indexer(categorical)
    return [
        indexer,
        OneHotEncoder(inputCols=indexer.getOutputCols(), outputCols=[c + CATEGORY_SUFFIX for c in categorical],
                      dropLast=True),
    ]


def fill_values(config: ExperimentConfig, columns: list[str]) -> dict[str, float]:
    """The imputation value of each feature column.

    A variable's ``fill_default_values`` entry also applies to its aggregated columns
    (``dette_sociale_patronale_lag3m`` is filled like ``dette_sociale_patronale``); missing
    indicators and columns without a configured default are filled with 0.0.

    Args:
        config: Experiment configuration.
        columns: Feature columns.

    Returns:
        ``{column: value}`` for every column.
    """
    base_of = {
        aggregated_name(variable, kind, months): variable
        for kind in AGGREGATIONS
        for variable, month_list in config.features.time_aggregation.get(kind, {}).items()
        for months in month_list
    }
    defaults = config.fill_default_values
    values = {}
    for column in columns:
        if column in defaults:
            values[column] = float(defaults[column])
        elif column.endswith(MISSING_SUFFIX):
            values[column] = 0.0
        else:
            values[column] = float(defaults.get(base_of.get(column, column), 0.0))
    return values


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def imputer(fill: dict[str, float]) -> SQLTransformer:
    """A SQL stage adding ``<column>__imputed`` doubles: nulls and NaNs replaced by constants.

    Args:
        fill: ``{column: value}`` (see :func:`fill_values`).

    Returns:
        A persistable ``SQLTransformer`` that keeps the input columns unchanged.
    """
    expressions = []
    for column, value in fill.items():
        constant = f"CAST('{float(value)!r}' AS DOUBLE)"
        expressions.append(
            f"nanvl(coalesce(CAST({_quote(column)} AS DOUBLE), {constant}), {constant})"
            f" AS {_quote(column + IMPUTED_SUFFIX)}"
        )
    return SQLTransformer(statement=f"SELECT *, {', '.join(expressions)} FROM __THIS__")


def estimator(model_type: str, params: dict, seed: int | None = None,
              counts: tuple[int, int] | None = None, feature_types: list[str] | None = None):
    """The Spark ML classifier of ``model.type`` reading ``features`` and ``failure_18m``.

    Args:
        model_type: ``logistic_regression``, ``random_forest``, ``gbt`` or ``xgboost``.
        params: Estimator parameters (floats are accepted for integer parameters).
        seed: Random seed (ignored by logistic regression, which has none).
        counts: ``(rows, positives)`` of the training rows, for ``scale_pos_weight: auto``
            (xgboost only).
        feature_types: ``"q"`` (numeric) or ``"c"`` (category) per slot (xgboost only).

    Returns:
        An unfitted classifier.
    """
    if model_type == XGBOOST:
        return xgboost_estimator(params, seed, counts, feature_types)
    classes = {
        "logistic_regression": LogisticRegression,
        "random_forest": RandomForestClassifier,
        "gbt": GBTClassifier,
    }
    if model_type not in classes:
        raise ConfigError(f"model.type: {model_type!r} is not one of {sorted([*classes, XGBOOST])}")
    model = classes[model_type](featuresCol=FEATURES_COL, labelCol=TARGET)
    unknown = sorted(name for name in params if not model.hasParam(name))
    if unknown:
        raise ConfigError(f"model.params: {model_type} has no parameter(s) {unknown}")
    model.setParams(**params)
    if seed is not None and model.hasParam("seed"):
        model.setSeed(int(seed))
    return model


def xgboost_params(params: dict, counts: tuple[int, int] | None = None) -> dict:
    """``model.params`` of an xgboost model, typed for ``SparkXGBClassifier``.

    Integer parameters (:data:`XGBOOST_INTEGER_PARAMS`) given as floats are rounded to ints, and
    ``scale_pos_weight: auto`` becomes negatives / positives of the training rows.

    Args:
        params: Parameters as configured or proposed by the tuner.
        counts: ``(rows, positives)`` of the training rows (after resampling), for ``auto``.

    Returns:
        A new dict of parameters.

    Raises:
        ConfigError: ``scale_pos_weight: auto`` without usable counts.
    """
    typed = {
        name: int(round(float(value))) if name in XGBOOST_INTEGER_PARAMS and value is not None else value
        for name, value in params.items()
    }
    if typed.get("scale_pos_weight") == AUTO:
        typed["scale_pos_weight"] = auto_scale_pos_weight(counts)
    return typed


def positive_weight(config: ExperimentConfig, counts: tuple[int, int]) -> float:
    """The weight of a positive training row relative to a negative one (1.0 without weighting).

    Weighting positives by w multiplies the odds the model learns by w, like resampling does:
    the prior calibration divides by both.

    Args:
        config: Experiment configuration (``model.params.scale_pos_weight`` of xgboost).
        counts: ``(rows, positives)`` of the rows the model is fitted on.

    Returns:
        The weight.
    """
    if config.model.type != XGBOOST or "scale_pos_weight" not in config.model.params:
        return 1.0
    return float(xgboost_params({"scale_pos_weight": config.model.params["scale_pos_weight"]}, counts)
                 ["scale_pos_weight"])


def auto_scale_pos_weight(counts: tuple[int, int] | None) -> float:
    """``scale_pos_weight: auto``: negatives / positives of the training rows.

    Args:
        counts: ``(rows, positives)``.

    Returns:
        The weight of a positive row relative to a negative one.

    Raises:
        ConfigError: No counts, or no positive or no negative row.
    """
    if counts is None:
        raise ConfigError("model.params.scale_pos_weight: auto needs the training rows' class counts")
    rows, positives = counts
    if not 0 < positives < rows:
        raise ConfigError(
            f"model.params.scale_pos_weight: auto needs both classes ({positives} positives in {rows} rows)"
        )
    return (rows - positives) / positives


def xgboost_estimator(params: dict, seed: int | None = None, counts: tuple[int, int] | None = None,
                      feature_types: list[str] | None = None):
    """An unfitted ``xgboost.spark.SparkXGBClassifier`` with the project's columns.

    Missing values are NaN (``missing=nan``): the pipeline does not impute for xgboost, and each
    split learns a default direction for them. ``num_workers`` defaults to 1 (one barrier task,
    ``spark.task.cpus`` threads); set it to the cores available (2 on a ``local[2]`` session).

    Args:
        params: ``model.params`` (see :func:`xgboost_params`; unknown names are rejected).
        seed: Random seed (``random_state``).
        counts: ``(rows, positives)`` of the training rows, for ``scale_pos_weight: auto``.
        feature_types: ``"q"`` (numeric) or ``"c"`` (category index) per slot; ``None``: all numeric.

    Returns:
        The estimator, writing ``rawPrediction``, ``probability`` and ``prediction``.
    """
    from xgboost.spark import SparkXGBClassifier

    model = SparkXGBClassifier(
        features_col=FEATURES_COL, label_col=TARGET, probability_col=PROBABILITY_COL,
        prediction_col="prediction", missing=float("nan"), feature_types=feature_types,
    )
    unknown = sorted(name for name in params if not model.hasParam(name))
    if unknown:
        raise ConfigError(f"model.params: xgboost has no parameter(s) {unknown}")
    model.setParams(**{**XGBOOST_DEFAULTS, **xgboost_params(params, counts)})
    if seed is not None:
        model.setParams(random_state=int(seed))
    return model


def model_requirements(model_type: str) -> list[str]:
    """pip requirements a logged model of ``model.type`` needs besides pyspark and mlflow.

    Args:
        model_type: ``model.type``.

    Returns:
        ``["xgboost==<installed version>"]`` for xgboost, else nothing.
    """
    if model_type != XGBOOST:
        return []
    return [f"xgboost=={metadata.version('xgboost')}"]


def booster_of(model):
    """The ``xgboost.Booster`` of a fitted pipeline (or of its ``SparkXGBClassifierModel`` stage)."""
    classifier = classifier_of(model) if isinstance(model, PipelineModel) else model
    return classifier.get_booster()


def gain_importances(classifier, width: int):
    """Total split gain of each feature slot of an xgboost classifier, normalised to sum to 1.

    Total gain (not xgboost's average ``gain``) sums the loss reduction of every split on a slot,
    as Spark's impurity importances do; slots no tree splits on get 0.

    Args:
        classifier: ``SparkXGBClassifierModel``.
        width: Number of feature slots.

    Returns:
        A ``(width,)`` numpy array.
    """
    values = np.zeros(width)
    for name, gain in classifier.get_booster().get_score(importance_type="total_gain").items():
        values[int(name.removeprefix("f"))] = gain
    total = values.sum()
    return values / total if total > 0 else values


def build_pipeline(
    config: ExperimentConfig, feature_columns: list[str], seed: int | None = None,
    counts: tuple[int, int] | None = None,
) -> Pipeline:
    """The unfitted pipeline: imputation, binning, assembling, scaling and the classifier.

    Stages: a ``SQLTransformer`` filling nulls/NaNs with ``fill_default_values`` (also for
    aggregated columns; 0.0 for columns without a default), the ``features.categorical``
    columns indexed and one-hot encoded (:func:`category_stages`), then for each ``model.bins``
    variable a ``Bucketizer`` and a ``OneHotEncoder`` replacing the raw variable, a
    ``VectorAssembler``, a ``StandardScaler`` of the numeric (non one-hot) features when
    ``model.scale``, and the ``model.type`` estimator with ``model.params`` and the seed.

    ``xgboost`` (:data:`NATIVE_MISSING_TYPES`) has no imputation stage: the raw columns are
    assembled with ``handleInvalid="keep"``, nulls and NaNs become NaN slots, and a true 0.0
    stays 0.0 (xgboost reads sparse vectors densely, see :func:`xgboost_estimator`); each
    categorical column is one slot of label indices that xgboost splits as a category.

    Args:
        config: Experiment configuration.
        feature_columns: Panel columns to use (see :func:`input_columns`); those of
            ``features.categorical`` are encoded as categories.
        seed: Model seed; default ``config.seed``.
        counts: ``(rows, positives)`` of the training rows, for ``scale_pos_weight: auto``.

    Returns:
        A ``Pipeline`` whose fitted model adds ``features``, ``probability`` and ``prediction``.
    """
    seed = config.seed if seed is None else seed
    categorical = [c for c in feature_columns if c in config.features.categorical]
    feature_columns = [c for c in feature_columns if c not in categorical]
    categories = [c + CATEGORY_SUFFIX for c in categorical]
    if config.model.type in NATIVE_MISSING_TYPES:
        return _native_missing_pipeline(config, feature_columns, categorical, seed, counts)
    stages: list = [imputer(fill_values(config, feature_columns)), *category_stages(categorical)]
    binned = [v for v in config.model.bins if v in feature_columns]
    numeric = [c + IMPUTED_SUFFIX for c in feature_columns if c not in binned]
    one_hot = []
    for variable in binned:
        splits = [float(s) for s in config.model.bins[variable]]
        if len(splits) < 3 or splits != sorted(splits):
            raise ConfigError(f"model.bins.{variable}: need at least 3 increasing split points")
        stages.append(Bucketizer(
            splits=splits, inputCol=variable + IMPUTED_SUFFIX, outputCol=variable + BIN_SUFFIX,
            handleInvalid="keep",
        ))
        one_hot.append(variable + ONE_HOT_SUFFIX)
    if binned:
        # handleInvalid="keep" + dropLast: every bin seen in training gets a slot and a bin unseen
        # in training scores as the (dropped) reference instead of failing.
        stages.append(OneHotEncoder(
            inputCols=[v + BIN_SUFFIX for v in binned], outputCols=one_hot, handleInvalid="keep",
        ))
    if config.model.scale and numeric:
        stages += [
            VectorAssembler(inputCols=numeric, outputCol="numeric_features"),
            StandardScaler(inputCol="numeric_features", outputCol="scaled_features", withMean=True, withStd=True),
            VectorAssembler(inputCols=["scaled_features", *one_hot, *categories], outputCol=FEATURES_COL),
        ]
    else:
        stages.append(VectorAssembler(inputCols=[*numeric, *one_hot, *categories], outputCol=FEATURES_COL))
    stages.append(estimator(config.model.type, config.model.params, seed))
    return Pipeline(stages=stages)


def _native_missing_pipeline(
    config: ExperimentConfig, feature_columns: list[str], categorical: list[str], seed: int,
    counts: tuple[int, int] | None,
) -> Pipeline:
    """Category indices, assembler (nulls kept as NaN) and a learner that handles both itself.

    Each categorical column is one slot holding its label's index, declared a category to
    xgboost (``feature_types`` ``"c"``): a split sends a set of sectors one way. One slot instead
    of one per label keeps the workers' copy of the training rows about 40% smaller.
    """
    if config.model.bins or config.model.scale:
        raise ConfigError(f"model.bins and model.scale are not supported with model.type {config.model.type}")
    def assembler(inputs: list[str]) -> VectorAssembler:
        return VectorAssembler(inputCols=inputs, outputCol=FEATURES_COL, handleInvalid="keep")

    if not categorical:
        learner = estimator(config.model.type, config.model.params, seed, counts)
        return Pipeline(stages=[assembler(feature_columns), learner])
    indexer = category_indexer(categorical)
    feature_types = ["q"] * len(feature_columns) + ["c"] * len(categorical)
    learner = estimator(config.model.type, config.model.params, seed, counts, feature_types)
    return Pipeline(stages=[indexer, assembler([*feature_columns, *indexer.getOutputCols()]), learner])


def feature_slot_names(model: PipelineModel) -> list[str]:
    """Names of the slots of the ``features`` vector of a fitted pipeline.

    Numeric features keep their panel name; one-hot bins are named ``<variable>_bin<k>``
    (``paydex_bin3`` is the 4th interval of ``model.bins.paydex``) and one-hot categories
    ``<column>=<label>`` (``naf_section=I``); xgboost's category slots keep the column's name.

    Args:
        model: A pipeline fitted by :func:`build_pipeline`.

    Returns:
        One name per vector slot, in order.
    """
    sizes: dict[str, int] = {}
    labels: dict[str, list[str]] = {}
    for stage in model.stages:
        if isinstance(stage, StringIndexerModel):
            for column, names in zip(stage.getInputCols(), stage.labelsArray):
                labels[column + CATEGORY_SUFFIX] = list(names)
        if isinstance(stage, OneHotEncoderModel):
            extra = int(stage.getHandleInvalid() == "keep") - int(stage.getDropLast())
            for column, size in zip(stage.getOutputCols(), stage.categorySizes):
                sizes[column] = size + extra
    assemblers = [s for s in model.stages if isinstance(s, VectorAssembler)]
    by_output = {a.getOutputCol(): a.getInputCols() for a in assemblers}

    def expand(column: str) -> list[str]:
        if column in by_output:
            return [name for inner in by_output[column] for name in expand(inner)]
        if column == "scaled_features":
            return expand("numeric_features")
        if column in labels:
            variable = column.removesuffix(CATEGORY_SUFFIX)
            return [f"{variable}={label}" for label in labels[column][:sizes[column]]]
        if column.endswith(INDEX_SUFFIX):  # a category index (xgboost): one slot for the column
            return [column.removesuffix(INDEX_SUFFIX)]
        if column in sizes:
            variable = column.removesuffix(ONE_HOT_SUFFIX)
            return [f"{variable}_bin{k}" for k in range(sizes[column])]
        return [column.removesuffix(IMPUTED_SUFFIX)]

    return expand(FEATURES_COL)


def classifier_of(model: PipelineModel):
    """The fitted classifier of a pipeline: its last stage that is not a calibration stage.

    Args:
        model: A pipeline fitted by :func:`build_pipeline`, possibly followed by
            :class:`sf_ml.calibration.CalibratedProbability`.

    Returns:
        The classifier model stage.
    """
    return [stage for stage in model.stages if not isinstance(stage, CalibratedProbability)][-1]


def positive_probability(column: str = PROBABILITY_COL) -> Column:
    """The probability of class 1 from a Spark ML probability vector column."""
    return vector_to_array(F.col(column))[1]


def class_counts(df: DataFrame, label: str = TARGET) -> tuple[int, int]:
    """Rows and positives of a labelled frame, in one aggregation.

    Args:
        df: Frame with a 0/1 ``label`` column.
        label: Label column.

    Returns:
        ``(rows, positives)``.
    """
    row = df.agg(F.count(F.lit(1)).alias("rows"), F.sum(F.col(label)).alias("positives")).first()
    return int(row["rows"]), int(row["positives"] or 0)


def resample(
    df: DataFrame,
    strategy: str,
    minority_ratio: float,
    seed: int,
    label: str = TARGET,
    counts: tuple[int, int] | None = None,
) -> DataFrame:
    """Rebalance a training set so that positives make up about ``minority_ratio`` of it.

    ``oversample`` repeats each positive row ``floor(f)`` or ``floor(f) + 1`` times (a seeded
    draw for the fractional part of ``f``); ``undersample`` keeps a seeded Bernoulli sample of
    negatives. Nothing changes when the share is already at or above the target, or with
    ``none``. Apply to training data only.

    Args:
        df: Labelled training rows.
        strategy: ``oversample``, ``undersample`` or ``none``.
        minority_ratio: Target share of positives, in (0, 1).
        seed: Sampling seed.
        label: 0/1 label column.
        counts: ``(rows, positives)`` of ``df`` if already known.

    Returns:
        The resampled frame (same columns).
    """
    if strategy == "none":
        return df
    if strategy not in ("oversample", "undersample"):
        raise ConfigError(f"sampling.strategy: unknown strategy {strategy!r}")
    if not 0 < minority_ratio < 1:
        raise ConfigError("sampling.minority_ratio must be strictly between 0 and 1")
    rows, positives = counts or class_counts(df, label)
    negatives = rows - positives
    if positives == 0 or negatives == 0 or positives / rows >= minority_ratio:
        return df
    is_positive = F.col(label) == 1
    draw = F.rand(seed)
    if strategy == "undersample":
        keep = positives * (1 - minority_ratio) / minority_ratio / negatives
        copies = F.when(is_positive, 1).otherwise((draw < keep).cast("int"))
    else:
        factor = minority_ratio * negatives / ((1 - minority_ratio) * positives)
        whole, remainder = int(factor), factor - int(factor)
        copies = F.when(is_positive, F.lit(whole) + (draw < remainder).cast("int")).otherwise(1)
    # One narrow pass (no union): the partitioning, hence the training jobs' task count, is unchanged.
    return (
        df.withColumn("__copies", copies)
        .withColumn("__copy", F.explode(F.array_repeat(F.lit(0), F.col("__copies"))))
        .drop("__copies", "__copy")
    )


def held_out(siren: Column | str, test_fraction: float, seed: int) -> Column:
    """Whether a siren belongs to the held-out companies (deterministic, hash-based).

    Args:
        siren: Siren column.
        test_fraction: Share of sirens held out.
        seed: Split seed.

    Returns:
        A boolean column, the same for every row of one siren.
    """
    siren = F.col(siren) if isinstance(siren, str) else siren
    bucket = F.pmod(F.xxhash64(siren, F.lit(int(seed))), F.lit(SPLIT_BUCKETS))
    return bucket < F.lit(int(round(test_fraction * SPLIT_BUCKETS)))


def split_by_siren(df: DataFrame, test_fraction: float, seed: int) -> tuple[DataFrame, DataFrame]:
    """Split rows into train and test by company: no siren is on both sides.

    Args:
        df: Frame with a ``siren`` column.
        test_fraction: Share of sirens held out (about, by hash).
        seed: Split seed; the same seed always holds out the same sirens.

    Returns:
        ``(train, test)``.
    """
    mask = held_out("siren", test_fraction, seed)
    return df.where(~mask), df.where(mask)
