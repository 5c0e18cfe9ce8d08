"""Tables for the notebooks: what they show is computed here, so the notebooks stay thin."""

from __future__ import annotations

import mlflow
import pandas as pd

RUN_METRICS = ("test_average_precision", "oot_average_precision", "test_roc_auc", "oot_roc_auc",
               "oot_risque_modere_recall")
CONFIG_SECTIONS = ("name", "seed", "model", "sampling", "split", "features")


def flat_config(config: dict) -> dict[str, object]:
    """A logged experiment config (``config.json``) flattened to ``section.key`` columns.

    Args:
        config: The config dict as logged by a run.

    Returns:
        ``{"model.type": ..., "model.params.maxDepth": ...}``; lists and dicts as strings.
    """
    kept = {key: value for key, value in config.items() if key in CONFIG_SECTIONS}
    flat = pd.json_normalize(kept, sep=".").iloc[0].to_dict() if kept else {}
    return {key: (str(value) if isinstance(value, (list, dict)) else value) for key, value in flat.items()}


def train_runs_table(runs: pd.DataFrame, load_config=None) -> pd.DataFrame:
    """Train runs side by side: config name, the settings that differ between them, their metrics.

    Args:
        runs: ``mlflow.search_runs`` output (pandas) of train runs.
        load_config: ``run_id -> dict`` reading a run's config; default: its ``config.json`` artifact.

    Returns:
        One row per run (index ``run_id``), columns ``name``, ``start``, the differing settings and
        :data:`RUN_METRICS`, sorted by out-of-time average precision (best first).
    """
    if load_config is None:
        def load_config(run_id: str) -> dict:
            return mlflow.artifacts.load_dict(f"runs:/{run_id}/config.json")

    configs = pd.DataFrame([flat_config(load_config(run_id)) for run_id in runs["run_id"]],
                           index=pd.Index(runs["run_id"], name="run_id"))
    if "name" not in configs:
        configs["name"] = runs.get("tags.config_name", pd.Series("?", index=runs.index)).to_numpy()
    differing = [c for c in configs.columns if c != "name" and configs[c].astype(str).nunique() > 1]
    indexed = runs.set_index("run_id")
    metrics = indexed[[f"metrics.{m}" for m in RUN_METRICS if f"metrics.{m}" in indexed.columns]]
    metrics.columns = [c.removeprefix("metrics.") for c in metrics.columns]
    table = pd.concat([configs[["name", *differing]], metrics], axis=1)
    table.insert(1, "start", pd.to_datetime(indexed["start_time"]).dt.strftime("%Y-%m-%d %H:%M"))
    order = "oot_average_precision" if "oot_average_precision" in table else "start"
    return table.sort_values(order, ascending=False)
