"""Model registry: register a run's model under an alias; resolve a registry URI to a version.

Versions are addressed by alias (``challenger`` for a freshly trained model, ``champion`` for the
one in use), never by stage. Alert thresholds travel with a version as its tags
``threshold_risque_fort`` and ``threshold_risque_modere``, checked (:func:`check_thresholds`) when
a version is registered and whenever it is resolved (:func:`resolve_version`, the one resolution
that ``score``, ``promote`` and the notebooks share).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sf_ml.config import ConfigError, config_from_dict
from sf_ml.tracking import retry_on_store_conflict

CHALLENGER = "challenger"
CHAMPION = "champion"
THRESHOLD_TAG_PREFIX = "threshold_"
THRESHOLD_LEVELS = ("risque_fort", "risque_modere")  # from the highest threshold down

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


def _client():
    return MlflowClient()


def register_model(
    run_id: str,
    artifact_path: str,
    model_name: str,
    alias: str | None = CHALLENGER,
    tags: dict[str, Any] | None = None,
) -> int:
    """Register a run's logged model as a new version, tag it and point ``alias`` at it.

    Args:
        run_id: Run that logged the model.
        artifact_path: The model's artifact path in the run (``model``).
        model_name: Registered model name (created if needed).
        alias: Alias moved to the new version (``challenger``), or None.
        tags: Version tags (values stringified), with the alert thresholds ``threshold_<level>``.

    Returns:
        The new version number.

    Raises:
        RegistryError: The threshold tags break :func:`check_thresholds` (nothing is registered).
    """
    check_thresholds({key.removeprefix(THRESHOLD_TAG_PREFIX): value for key, value in (tags or {}).items()
                      if key.startswith(THRESHOLD_TAG_PREFIX)}, f"the model of run {run_id}")
    version = retry_on_store_conflict(lambda: mlflow.register_model(
        f"runs:/{run_id}/{artifact_path}", model_name,
        tags={key: str(value) for key, value in (tags or {}).items()},
    ))
    if alias:
        set_alias(model_name, alias, int(version.version))
    return int(version.version)


def set_alias(model_name: str, alias: str, version: int, attempts: int = 5) -> None:
    """Point ``alias`` at ``version``, retrying when a concurrent writer created the alias first.

    The tracking store sets an alias by looking it up, then inserting or updating it: two
    trainings finishing together can both try the insert, and the loser gets a unique-constraint
    error. The alias then exists, so the retry updates it (the last writer wins).

    Args:
        model_name: Registered model name.
        alias: Alias to move.
        version: Version it points to afterwards.
        attempts: Tries before the error is raised.
    """
    retry_on_store_conflict(
        lambda: _client().set_registered_model_alias(model_name, alias, str(version)), attempts
    )


def model_version(model_uri: str):
    """The registered ``ModelVersion`` of ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.

    Args:
        model_uri: Registry URI.

    Returns:
        An ``mlflow.entities.model_registry.ModelVersion``.
    """
    match = _MODEL_URI.match(model_uri)
    if not match:
        raise RegistryError(f"{model_uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
    client = _client()
    if match["alias"]:
        return client.get_model_version_by_alias(match["name"], match["alias"])
    return client.get_model_version(match["name"], match["version"])


class RegistryError(ValueError):
    """A registry URI that does not resolve to a usable version: unknown, or tags that break the rules."""


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version, resolved with what scoring and promotion need.

    Args:
        uri: The URI asked for (may hold an alias).
        name: Registered model name.
        version: Version number the URI resolved to.
        run_id: The training run of that version.
        thresholds: ``{"risque_fort": t, "risque_modere": t}`` from the version's tags.
        config: The training configuration (``config.json`` of the training run).
        tags: Every tag of the version (``train_end``, ``seed``, ...).
    """

    uri: str
    name: str
    version: int
    run_id: str
    thresholds: dict[str, float]
    config: Any = field(compare=False)
    tags: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def version_uri(self) -> str:
        """``models:/<name>/<version>``: the exact version, immune to a moving alias."""
        return f"models:/{self.name}/{self.version}"


def check_thresholds(thresholds: dict[str, float], where: str) -> dict[str, float]:
    """The alert thresholds if they follow the rules: both levels, each in (0, 1), fort >= modere.

    Args:
        thresholds: ``{level: threshold}``.
        where: What they belong to, for the error message.

    Returns:
        ``{"risque_fort": t, "risque_modere": t}`` as floats.

    Raises:
        RegistryError: A level missing, a threshold outside (0, 1), or risque fort below risque modere.
    """
    missing = [level for level in THRESHOLD_LEVELS if level not in thresholds]
    if missing:
        raise RegistryError(f"{where} has no {', '.join(THRESHOLD_TAG_PREFIX + m for m in missing)}: "
                            "register it with sf_ml.train")
    values = {level: float(thresholds[level]) for level in THRESHOLD_LEVELS}
    outside = {level: value for level, value in values.items() if not 0.0 < value < 1.0}
    if outside:
        raise RegistryError(f"{where}: thresholds {outside} are not probabilities in (0, 1)")
    if values["risque_fort"] < values["risque_modere"]:
        raise RegistryError(f"{where}: risque_fort threshold {values['risque_fort']} is below the "
                            f"risque_modere one {values['risque_modere']}")
    return values


def resolve_version(model_uri: str) -> RegisteredVersion:
    """Resolve ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` to a checked version.

    The one place where a registry URI becomes a version, its thresholds and its configuration:
    ``score``, ``promote`` and the notebooks all come through here.

    Args:
        model_uri: Registry URI.

    Returns:
        The resolved version (the model itself is not loaded).

    Raises:
        RegistryError: Malformed URI; unknown name, alias or version; threshold tags missing or
            breaking :func:`check_thresholds`; no readable ``config.json`` in the training run.
    """
    try:
        version = model_version(model_uri)
    except MlflowException as error:
        raise RegistryError(f"model {model_uri!r} does not resolve to a registered version "
                            f"(unknown name, alias or version): {error.message}") from error
    where = f"{model_uri} (version {version.version})"
    tags = dict(version.tags or {})
    thresholds = check_thresholds({key.removeprefix(THRESHOLD_TAG_PREFIX): value for key, value in tags.items()
                                   if key.startswith(THRESHOLD_TAG_PREFIX)}, where)
    run_id = version.run_id or tags.get("run_id")
    if not run_id:
        raise RegistryError(f"{where} has no training run")
    try:
        config = config_from_dict(mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json"))
    except (MlflowException, OSError, ConfigError) as error:
        raise RegistryError(f"cannot read the training configuration (config.json) of run {run_id} "
                            f"of {model_uri}: {error}") from error
    return RegisteredVersion(model_uri, version.name, int(version.version), run_id, thresholds, config, tags)


def current_version(model_name: str, alias: str):
    """The version an alias points to, or None when the model or the alias does not exist."""
    try:
        return _client().get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
