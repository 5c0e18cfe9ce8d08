"""One typed experiment configuration, loaded from ``experiments/*.yaml``.

The YAML file is the single source of an experiment's choices (features and their time
aggregations, imputation, model and search space, resampling, topic groups). Entry-point
parameters may override any leaf with ``section.key=value`` strings, and the resolved object is
logged to MLflow as a dict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

# Time aggregations of a variable over its last k months (see sf_ml.windows.WindowOp for each).
AGGREGATIONS = ("lag", "diff", "mean", "growth", "min", "max", "std", "slope", "months_positive",
                "since_increase", "since_first_positive")
# The config of main, train, tune, backtest and the demo unless told otherwise: the best of
# bench/bench_quality.py (see the README's table).
DEFAULT_CONFIG = "xgboost_history"
# The panel's text columns a model may read as categories (its metadata columns).
CATEGORICAL_COLUMNS = ("naf_section", "code_naf", "region", "categorie_juridique")
MODEL_TYPES = ("logistic_regression", "random_forest", "gbt", "xgboost")


class ConfigError(ValueError):
    """An experiment configuration that cannot be used."""


@dataclass
class FeatureConfig:
    """Which features are built and how they are aggregated over time.

    Args:
        variables: Base (monthly) features fed to the model.
        time_aggregation: ``{kind: {variable: [months, ...]}}`` with a kind of ``AGGREGATIONS``.
        missing_indicators: Add a ``<variable>_manquant`` 0/1 column per base variable.
        categorical: Text columns of the panel fed to the model one-hot encoded (one of
            ``CATEGORICAL_COLUMNS``: sector, region, legal form).
    """

    variables: list[str] = field(default_factory=list)
    time_aggregation: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    missing_indicators: bool = False
    categorical: list[str] = field(default_factory=list)


@dataclass
class ModelConfig:
    """The classifier and its preprocessing.

    Args:
        type: ``logistic_regression``, ``random_forest``, ``gbt`` or ``xgboost``.
        params: Keyword arguments of the Spark ML estimator (``SparkXGBClassifier`` for
            ``xgboost``, whose ``scale_pos_weight`` may be ``auto``).
        scale: Standard-scale the numeric features (linear models).
        bins: Features to bin into ordinal classes and one-hot encode, with their split points.
    """

    type: str = "logistic_regression"
    params: dict[str, Any] = field(default_factory=dict)
    scale: bool = False
    bins: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class SamplingConfig:
    """Class resampling of the training set.

    Args:
        strategy: ``oversample``, ``undersample`` or ``none``.
        minority_ratio: Target share of positives after resampling.
    """

    strategy: str = "oversample"
    minority_ratio: float = 0.35


@dataclass
class CalibrationConfig:
    """How the model's probabilities are brought back to the real scale (:mod:`sf_ml.calibration`).

    Args:
        method: ``platt`` (fitted on the latest held-out rows), ``prior`` (exact resampling
            correction) or ``none``.
        months: The calibration slice: held-out companies over the last ``months`` periodes of
            the training window.
        min_positives: Fewest positives Platt scaling is fitted on; below, ``prior`` is used.
    """

    method: str = "platt"
    months: int = 12
    min_positives: int = 30


@dataclass
class SplitConfig:
    """Train/test split.

    Args:
        test_fraction: Share of companies (sirens) held out.
    """

    test_fraction: float = 0.2


@dataclass
class ExperimentConfig:
    """An experiment: everything that differs between two runs of the same code.

    Args:
        name: Short name, logged as the run's ``config_name`` tag.
        description: What the experiment is about.
        features: Feature selection and time aggregation.
        fill_default_values: Imputation value per feature (applied to aggregated columns too).
        model: Classifier and preprocessing.
        sampling: Class resampling.
        split: Train/test split.
        calibration: Calibration of the probabilities.
        topic_groups: Explanation groups: ``{group: [base variables]}``.
        search_space: Hyperopt search space, ``{param: {"type": ..., ...}}``.
        seed: Random seed for splits, resampling and models.
    """

    name: str = "unnamed"
    description: str = ""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    fill_default_values: dict[str, float] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    topic_groups: dict[str, list[str]] = field(default_factory=dict)
    search_space: dict[str, dict[str, Any]] = field(default_factory=dict)
    seed: int = 42

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain data (for ``mlflow.log_dict``)."""
        return dataclasses.asdict(self)

    def aggregated_columns(self) -> list[str]:
        """Names of the columns the time aggregations produce, in a stable order."""
        return [
            aggregated_name(variable, kind, months)
            for kind in AGGREGATIONS
            for variable, month_list in sorted(self.features.time_aggregation.get(kind, {}).items())
            for months in month_list
        ]


def aggregated_name(variable: str, kind: str, months: int) -> str:
    """Column name of one time aggregation, as sf_datalake names it (``paydex_diff12m``)."""
    return f"{variable}_{kind}{months}m"


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(known)}")
    kwargs = {}
    for name, value in data.items():
        sub = {
            "features": FeatureConfig, "model": ModelConfig,
            "sampling": SamplingConfig, "split": SplitConfig, "calibration": CalibrationConfig,
        }.get(name) if cls is ExperimentConfig else None
        kwargs[name] = _build(sub, value, f"{where}.{name}") if sub else value
    return cls(**kwargs)


def _validate(config: ExperimentConfig) -> ExperimentConfig:
    for kind in config.features.time_aggregation:
        if kind not in AGGREGATIONS:
            raise ConfigError(f"features.time_aggregation: unknown aggregation {kind!r}")
        for variable, months in config.features.time_aggregation[kind].items():
            if not all(isinstance(m, int) and m > 0 for m in months):
                raise ConfigError(
                    f"features.time_aggregation.{kind}.{variable}: months must be positive "
                    f"integers, got {months}"
                )
    unknown = sorted(set(config.features.categorical) - set(CATEGORICAL_COLUMNS))
    if unknown:
        raise ConfigError(f"features.categorical: {unknown} not among {list(CATEGORICAL_COLUMNS)}")
    if config.model.type not in MODEL_TYPES:
        raise ConfigError(f"model.type: {config.model.type!r} is not one of {MODEL_TYPES}")
    if config.sampling.strategy not in ("oversample", "undersample", "none"):
        raise ConfigError(f"sampling.strategy: unknown strategy {config.sampling.strategy!r}")
    if not 0 < config.sampling.minority_ratio < 1:
        raise ConfigError("sampling.minority_ratio must be strictly between 0 and 1")
    if config.calibration.method not in ("platt", "prior", "none"):
        raise ConfigError(f"calibration.method: {config.calibration.method!r} is not platt, prior or none")
    if config.calibration.months < 1:
        raise ConfigError("calibration.months must be a positive number of months")
    if not 0 < config.split.test_fraction < 1:
        raise ConfigError("split.test_fraction must be strictly between 0 and 1")
    return config


def _parse_scalar(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (values parsed as YAML) to a config mapping.

    Args:
        data: The mapping loaded from YAML (modified in place).
        overrides: Override strings.

    Returns:
        The same mapping.
    """
    for item in overrides or []:
        path, sep, raw = item.partition("=")
        if not sep or not path.strip():
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        node = data
        keys = path.strip().split(".")
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {key!r} is not a section")
        node[keys[-1]] = _parse_scalar(raw.strip())
    return data


def resolve_config_path(config: str | Path) -> Path:
    """Find a config file: a path as given, or a name under ``experiments/``.

    Args:
        config: ``experiments/standard.yaml``, ``standard.yaml`` or ``standard``.

    Returns:
        An existing path.
    """
    path = Path(config)
    candidates = [path]
    if not path.suffix:
        candidates.append(path.with_suffix(".yaml"))
    root = Path(__file__).resolve().parent.parent / "experiments"
    candidates += [root / path.name, root / f"{path.name}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise ConfigError(f"config {str(config)!r} not found (looked in {[str(c) for c in candidates]})")


def load_config(config: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load, override and validate an experiment configuration.

    Args:
        config: Path or name of an ``experiments/*.yaml`` file.
        overrides: ``section.key=value`` strings applied after loading.

    Returns:
        The typed configuration.
    """
    path = resolve_config_path(config)
    with path.open(encoding="utf-8") as handle:
        data = yaml.safe_load(handle) or {}
    data.setdefault("name", path.stem)
    return _validate(_build(ExperimentConfig, apply_overrides(data, overrides), path.name))


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Rebuild and validate a configuration from its ``to_dict()`` form (e.g. a run's config.json)."""
    return _validate(_build(ExperimentConfig, dict(data), "config"))
