"""The model: feature selection, Spark ML pipeline, class resampling and the siren split.

The pipeline carries its own preprocessing (imputation, binning, scaling), so the logged
``PipelineModel`` scores raw panel rows, nulls included. Functions here are shared by the
``train``, ``tune`` and ``backtest`` stages.
"""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import (
    Bucketizer,
    OneHotEncoder,
    OneHotEncoderModel,
    SQLTransformer,
    StandardScaler,
    VectorAssembler,
)
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sf_ml.config import AGGREGATIONS, ConfigError, ExperimentConfig, aggregated_name
from sf_ml.panel import TARGET

FEATURES_COL = "features"
PROBABILITY_COL = "probability"  # Spark ML default of every classifier used
IMPUTED_SUFFIX = "__imputed"
BIN_SUFFIX = "__bin"
ONE_HOT_SUFFIX = "__onehot"
MISSING_SUFFIX = "_manquant"
SPLIT_BUCKETS = 10_000


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


def estimator(model_type: str, params: dict, seed: int | None = None):
    """The Spark ML classifier of ``model.type`` reading ``features`` and ``failure_18m``.

    Args:
        model_type: ``logistic_regression``, ``random_forest`` or ``gbt``.
        params: Estimator parameters (floats are accepted for integer parameters).
        seed: Random seed (ignored by logistic regression, which has none).

    Returns:
        An unfitted classifier.
    """
    from pyspark.ml.classification import GBTClassifier, LogisticRegression, RandomForestClassifier

    classes = {
        "logistic_regression": LogisticRegression,
        "random_forest": RandomForestClassifier,
        "gbt": GBTClassifier,
    }
    if model_type not in classes:
        raise ConfigError(f"model.type: {model_type!r} is not one of {sorted(classes)}")
    model = classes[model_type](featuresCol=FEATURES_COL, labelCol=TARGET)
    unknown = sorted(name for name in params if not model.hasParam(name))
    if unknown:
        raise ConfigError(f"model.params: {model_type} has no parameter(s) {unknown}")
    model.setParams(**params)
    if seed is not None and model.hasParam("seed"):
        model.setSeed(int(seed))
    return model


def build_pipeline(
    config: ExperimentConfig, feature_columns: list[str], seed: int | None = None
) -> Pipeline:
    """The unfitted pipeline: imputation, binning, assembling, scaling and the classifier.

    Stages: a ``SQLTransformer`` filling nulls/NaNs with ``fill_default_values`` (also for
    aggregated columns; 0.0 for columns without a default), then for each ``model.bins``
    variable a ``Bucketizer`` and a ``OneHotEncoder`` replacing the raw variable, a
    ``VectorAssembler``, a ``StandardScaler`` of the numeric (non one-hot) features when
    ``model.scale``, and the ``model.type`` estimator with ``model.params`` and the seed.

    Args:
        config: Experiment configuration.
        feature_columns: Panel columns to use (see :func:`feature_columns`).
        seed: Model seed; default ``config.seed``.

    Returns:
        A ``Pipeline`` whose fitted model adds ``features``, ``probability`` and ``prediction``.
    """
    seed = config.seed if seed is None else seed
    stages: list = [imputer(fill_values(config, feature_columns))]
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
            VectorAssembler(inputCols=["scaled_features", *one_hot], outputCol=FEATURES_COL),
        ]
    else:
        stages.append(VectorAssembler(inputCols=[*numeric, *one_hot], outputCol=FEATURES_COL))
    stages.append(estimator(config.model.type, config.model.params, seed))
    return Pipeline(stages=stages)


def feature_slot_names(model: PipelineModel) -> list[str]:
    """Names of the slots of the ``features`` vector of a fitted pipeline.

    Numeric features keep their panel name; one-hot bins are named ``<variable>_bin<k>``
    (``paydex_bin3`` is the 4th interval of ``model.bins.paydex``).

    Args:
        model: A pipeline fitted by :func:`build_pipeline`.

    Returns:
        One name per vector slot, in order.
    """
    sizes: dict[str, int] = {}
    for stage in model.stages:
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
        if column in sizes:
            variable = column.removesuffix(ONE_HOT_SUFFIX)
            return [f"{variable}_bin{k}" for k in range(sizes[column])]
        return [column.removesuffix(IMPUTED_SUFFIX)]

    return expand(FEATURES_COL)


def positive_probability(column: str = PROBABILITY_COL) -> Column:
    """The probability of class 1 from a Spark ML probability vector column."""
    from pyspark.ml.functions import vector_to_array

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
