"""Model registry helpers: register a run's model under an alias, read a version's tags back.

Versions are addressed by alias (``challenger`` for a freshly trained model, ``champion`` for the
one in use), never by stage. Alert thresholds travel with a version as its tags
``threshold_risque_fort`` and ``threshold_risque_modere``.
"""

from __future__ import annotations

import re
from typing import Any

from sf_ml.tracking import retry_on_store_conflict

CHALLENGER = "challenger"
CHAMPION = "champion"
THRESHOLD_TAG_PREFIX = "threshold_"

_MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))/?$")


def _client():
    from mlflow import MlflowClient

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
        tags: Version tags (values stringified).

    Returns:
        The new version number.
    """
    import mlflow

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
        raise ValueError(f"{model_uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
    client = _client()
    if match["alias"]:
        return client.get_model_version_by_alias(match["name"], match["alias"])
    return client.get_model_version(match["name"], match["version"])


def thresholds_for(model_uri: str) -> dict[str, float]:
    """The alert thresholds stored as tags of a registered model version.

    Args:
        model_uri: ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.

    Returns:
        ``{"risque_fort": t, "risque_modere": t}`` (every ``threshold_<level>`` tag).
    """
    version = model_version(model_uri)
    thresholds = {
        key.removeprefix(THRESHOLD_TAG_PREFIX): float(value)
        for key, value in version.tags.items()
        if key.startswith(THRESHOLD_TAG_PREFIX)
    }
    if not thresholds:
        raise ValueError(f"{model_uri} (version {version.version}) has no {THRESHOLD_TAG_PREFIX}* tags")
    return thresholds


def version_config(model_uri: str):
    """The experiment configuration a registered version was trained with (its run's config.json).

    Args:
        model_uri: ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.

    Returns:
        An :class:`sf_ml.config.ExperimentConfig`.
    """
    import mlflow

    from sf_ml.config import config_from_dict

    version = model_version(model_uri)
    return config_from_dict(mlflow.artifacts.load_dict(f"runs:/{version.run_id}/config.json"))


def current_version(model_name: str, alias: str):
    """The version an alias points to, or None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return _client().get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise
