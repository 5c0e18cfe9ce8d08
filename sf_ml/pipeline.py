"""Entry point ``main``: generate -> ingest -> build_features -> train -> promote -> score.

Each step is the project's own entry point launched with ``mlflow.run`` (``--env-manager local``),
so it becomes a child run of the pipeline's (parent) run. A step whose entry point already finished with
the same parameters at the same git commit (and whose outputs still exist) is not run again:
its earlier run is reused and recorded as such. ``ingest`` is reused only while the export holds
the very files its typed directory's manifest records (:func:`sf_ml.manifest.export_unchanged`),
and once a step runs again, every later step runs again too.
"""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

import mlflow
from mlflow.utils.git_utils import get_git_commit

from sf_ml.config import DEFAULT_CONFIG
from sf_ml.manifest import export_unchanged
from sf_ml.registry import CHAMPION, current_version

log = logging.getLogger(__name__)
PROJECT_DIR = Path(__file__).resolve().parent.parent


def _find_finished(client, experiment_id: str, entry_point: str, parameters: dict[str, str], commit: str | None):
    """The latest finished run of ``entry_point`` with exactly ``parameters`` at ``commit``, or None."""
    query = f"tags.`mlflow.project.entryPoint` = '{entry_point}' and attributes.status = 'FINISHED'"
    for run in client.search_runs([experiment_id], query, order_by=["attributes.start_time DESC"], max_results=50):
        if commit and run.data.tags.get("mlflow.source.git.commit") != commit:
            continue
        # mlflow run stores parameters shell-quoted (an empty one as '').
        if all(run.data.params.get(k) in (str(v), shlex.quote(str(v))) for k, v in parameters.items()):
            return run
    return None


def run_step(entry_point: str, parameters: dict[str, Any], outputs: list[str] | None = None,
             reusable: bool = True) -> tuple[Any, bool]:
    """Run one entry point as a child run, or reuse an identical finished one.

    Args:
        entry_point: MLproject entry point.
        parameters: Its parameters (stringified).
        outputs: Paths the step writes; a reused run needs them to still exist.
        reusable: False to run the step even if an identical run exists (its inputs changed).

    Returns:
        ``(run, reused)`` with the child's ``mlflow.entities.Run``.
    """
    client = mlflow.MlflowClient()
    parent = mlflow.active_run()
    parameters = {k: str(v) for k, v in parameters.items()}
    commit = get_git_commit(str(PROJECT_DIR))
    earlier = _find_finished(client, parent.info.experiment_id, entry_point, parameters, commit)
    if reusable and earlier is not None and all(Path(p).exists() for p in outputs or []):
        log.info("step %s: reusing run %s (same parameters, commit %s)", entry_point, earlier.info.run_id, commit)
        mlflow.set_tag(f"step.{entry_point}", f"reused {earlier.info.run_id}")
        return earlier, True
    log.info("step %s: running with %s", entry_point, parameters)
    submitted = mlflow.run(
        str(PROJECT_DIR), entry_point=entry_point, parameters=parameters, env_manager="local",
        experiment_id=parent.info.experiment_id, synchronous=True,
    )
    mlflow.set_tag(f"step.{entry_point}", f"ran {submitted.run_id}")
    return client.get_run(submitted.run_id), False


class PipelineStopped(RuntimeError):
    """The pipeline cannot go on: the steps after the one named were not run."""


def champion_after_promotion(model_name: str, trained_version: str, promote_tags: dict[str, str],
                             promote_run_id: str):
    """The version ``champion`` points to after the promote step, or stop the pipeline.

    Args:
        model_name: Registered model name.
        trained_version: The version the train step registered.
        promote_tags: The promote run's tags (``decision``, ``reason``).
        promote_run_id: The promote run.

    Returns:
        The champion ``ModelVersion``.

    Raises:
        PipelineStopped: No champion (the gate refused the first model): nothing is scored.
    """
    champion = current_version(model_name, CHAMPION)
    if champion is None:
        raise PipelineStopped(
            f"the promotion gate did not promote version {trained_version} of {model_name} "
            f"({promote_tags.get('decision', 'no decision')}: {promote_tags.get('reason', 'no reason recorded')}) "
            f"and no earlier version is champion, so nothing was scored (promote run {promote_run_id})"
        )
    return champion


def run_all(
    workdir: str = "data",
    raw_dir: str | None = None,
    config: str = DEFAULT_CONFIG,
    n_companies: int = 5000,
    seed: int = 0,
    start: str = "2016-01-01",
    end: str = "2025-12-01",
    train_start: str = "2016-01-01",
    train_end: str = "2022-06-01",
    prediction_date: str = "2025-12-01",
    model_name: str = "sf_failure",
) -> dict[str, Any]:
    """Run the whole pipeline inside the active (parent) run.

    Args:
        workdir: Directory for the world, the features and the scores.
        raw_dir: Contract raw directory; when None a synthetic world is generated.
        config: Experiment config name or path.
        n_companies: Companies of the generated world.
        seed: Seed of the generated world.
        start: First periode of the features panel.
        end: Last periode of the features panel.
        train_start: First training periode.
        train_end: Last training periode.
        prediction_date: Month scored.
        model_name: Registered model name.

    Returns:
        Run ids per step, the trained version, the promotion decision and the score outputs.

    Raises:
        PipelineStopped: The gate refused the first model (no champion to score with).
    """
    work = Path(workdir).resolve()
    client = mlflow.MlflowClient()
    steps: dict[str, Any] = {}

    def step(entry_point: str, parameters: dict[str, Any], outputs: list[str] | None = None, reusable: bool = True):
        rerun_all = any(not reused for _, reused in steps.values())  # an input of this step changed
        run, reused = run_step(entry_point, parameters, outputs, reusable=reusable and not rerun_all)
        steps[entry_point] = (run.info.run_id, reused)
        return run

    if raw_dir is None:
        raw_dir = str(work / "raw")
        step("generate", dict(output_dir=raw_dir, n_companies=n_companies, seed=seed, start="2014-01-01",
                              end="2025-12-31", file_format="csv"), [raw_dir])
    typed_dir, features_dir = str(work / "typed"), str(work / "features")
    step("ingest", dict(raw_dir=raw_dir, output_dir=typed_dir), [typed_dir], export_unchanged(raw_dir, typed_dir))
    step("build_features", dict(raw_dir=typed_dir, output_dir=features_dir, config=config, start=start, end=end,
                                labels_until=""), [features_dir])
    run = step("train", dict(features_dir=features_dir, config=config, train_start=train_start,
                             train_end=train_end, model_name=model_name, seed=""))
    version = run.data.tags["registered_version"]
    run = step("promote", dict(model_name=model_name, candidate=version, features_dir=features_dir,
                               dry_run="false", eval_start="", eval_end=""))
    promote_tags = client.get_run(run.info.run_id).data.tags
    decision = promote_tags.get("decision")
    champion = champion_after_promotion(model_name, version, promote_tags, run.info.run_id)
    scores_dir = str(work / "scores" / prediction_date)
    step("score", dict(model_uri=f"models:/{model_name}/{champion.version}", prediction_date=prediction_date,
                       features_dir=features_dir, raw_dir="", output_dir=scores_dir), [scores_dir])
    summary = {
        "steps": {name: {"run_id": rid, "reused": r} for name, (rid, r) in steps.items()},
        "trained_version": int(version), "promotion": decision, "champion_version": int(champion.version),
        "alert_list": str(Path(scores_dir) / "alert_list.json"), "features_dir": features_dir,
    }
    mlflow.log_dict(summary, "pipeline.json")
    mlflow.set_tags({"trained_version": version, "promotion": decision or "", "champion_version": champion.version})
    return summary
