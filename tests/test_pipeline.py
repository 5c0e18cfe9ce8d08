"""End to end: `mlflow run . -e main --env-manager local` on a small world, then again (all reused)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.team_fixtures import spark_conf

ROOT = Path(__file__).resolve().parent.parent


def run_main(tmp_path: Path, uri: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "SPARK_LOCAL_IP": "127.0.0.1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SF_ML_SPARK_CONF": spark_conf("3g")}
    for inherited in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME"):
        env.pop(inherited, None)  # earlier tests may leave them; the command names its experiment
    command = [
        sys.executable, "-m", "mlflow", "run", str(ROOT), "-e", "main", "--env-manager", "local",
        "--experiment-name", "sf_ml_e2e",
        "-P", f"workdir={tmp_path / 'work'}", "-P", "n_companies=400", "-P", "start=2017-01-01",
        "-P", "end=2025-12-01", "-P", "train_start=2017-01-01", "-P", "train_end=2022-06-01",
        "-P", "model_name=sf_failure_e2e",
    ]
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)


def _world_sirens(raw_dir: Path) -> set[str]:
    import pandas as pd

    return set(pd.read_csv(raw_dir / "sirene_unites_legales.csv", dtype=str, usecols=["siren"])["siren"])


def _record_bytes(client, run, into: Path):
    """Every record a run left in the store, as (where, bytes): artifacts (parquet decoded), the
    artifacts of the models it logged, its dataset inputs, params and tags."""
    import mlflow
    import pandas as pd

    roots = [Path(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(into / "run")))]
    for model in client.search_logged_models([run.info.experiment_id]):
        if model.source_run_id == run.info.run_id:
            roots.append(Path(mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location,
                                                                  dst_path=str(into / model.model_id))))
    for path in (p for root in roots for p in root.rglob("*") if p.is_file()):
        yield str(path), path.read_bytes()
        if path.suffix == ".parquet":
            yield f"{path} (decoded)", pd.read_parquet(path).to_csv().encode()
    yield "params and tags", json.dumps([run.data.params, run.data.tags]).encode()
    for given in run.inputs.dataset_inputs:
        dataset = given.dataset
        yield f"dataset {dataset.name}", json.dumps([dataset.source, dataset.schema, dataset.profile]).encode()


def sirens_recorded(client, runs, sirens: set[str], into: Path) -> dict[str, set[str]]:
    """Where the runs' records hold a siren of ``sirens`` (input examples, tables, dicts, datasets, models)."""
    digits = re.compile(rb"(?<![0-9.])[0-9]{6,9}(?![0-9])")  # a whole number, not a fraction's digits
    forms = {**{s.lstrip("0"): s for s in sirens}, **{s: s for s in sirens}}  # as text, or as an integer
    found = {}
    for run in runs:
        for where, data in _record_bytes(client, run, into / run.info.run_id):
            hits = {forms[m.decode()] for m in digits.findall(data) if m.decode() in forms}
            if hits:
                found[f"{run.data.tags.get('stage')}: {where}"] = hits
    return found


def example_rows_in_panel(model_uri: str, features_dir: Path, into: Path) -> int:
    """How many rows of a registered model's input example are rows of the panel (all values equal)."""
    import mlflow
    import pandas as pd

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(into)))
    example = json.loads((local / "input_example.json").read_text())
    example = pd.DataFrame(example["data"], columns=example["columns"])
    panel = pd.read_parquet(features_dir, columns=list(example.columns))
    found = 0
    for _, row in example.iterrows():
        given = row.dropna()
        found += int((panel[given.index] == given).all(axis=1).any()) if len(given) else 0
    return found


@pytest.mark.slow
def test_main_pipeline_end_to_end_then_reused(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = run_main(tmp_path, uri)
    assert first.returncode == 0, first.stderr[-4000:]

    # Readable: Spark's internals stay quiet, each stage says what it did, phase by phase.
    spark_lines = re.findall(r"^\d\d/\d\d/\d\d \d\d:\d\d:\d\d (?:WARN|INFO) .*$", first.stderr, re.M)
    assert spark_lines == [] and "Setting default log level" not in first.stderr
    for phase in ("build_features | read typed tables", "build_features | build and write the panel",
                  "train | fit xgboost and calibrate", "promote | evaluate version 1", "score | write"):
        assert phase in first.stderr, phase

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("sf_failure_e2e", "champion")
    challenger = client.get_model_version_by_alias("sf_failure_e2e", "challenger")
    assert champion.version == challenger.version == 1
    experiment = client.get_experiment_by_name("sf_ml_e2e")
    parents = client.search_runs([experiment.experiment_id], "tags.stage = 'main'")
    assert len(parents) == 1
    children = client.search_runs([experiment.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert {c.data.tags.get("mlflow.project.entryPoint") for c in children} == {
        "generate", "ingest", "build_features", "train", "promote", "score"}
    promote = next(c for c in children if c.data.tags.get("mlflow.project.entryPoint") == "promote")
    assert promote.data.tags["decision"] == "promoted"
    # No siren of the world leaves the data: the store of train, promote and score runs holds none.
    sirens = _world_sirens(tmp_path / "work" / "raw")
    assert len(sirens) >= 400
    stages = [c for c in children if c.data.tags.get("stage") in ("train", "promote", "score")]
    assert len(stages) == 3
    assert sirens_recorded(client, stages, sirens, tmp_path / "records") == {}
    assert example_rows_in_panel("models:/sf_failure_e2e/1", tmp_path / "work" / "features", tmp_path / "example") == 0

    scores = tmp_path / "work" / "scores" / "2025-12-01"
    alert_list = json.loads((scores / "alert_list.json").read_text())
    assert (scores / "predictions.csv").exists() and alert_list
    before = {p.name: p.read_bytes() for p in scores.iterdir() if p.is_file()}

    second = run_main(tmp_path, uri)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count("(reused)") == 6, second.stdout  # the typed tables too: same export
    assert len(client.search_model_versions("name = 'sf_failure_e2e'")) == 1
    assert {p.name: p.read_bytes() for p in scores.iterdir() if p.is_file()} == before


def test_a_refused_first_model_stops_main_before_scoring(tracking_uri, tmp_path, monkeypatch):
    """No champion after the promote step: a clear message, exit status 2, and score never runs."""
    import mlflow
    from click.testing import CliRunner

    from sf_ml import pipeline
    from sf_ml.cli import cli

    client = mlflow.MlflowClient()
    client.create_registered_model("sf_refused")
    client.create_model_version("sf_refused", str(tmp_path / "model"))
    with pytest.raises(pipeline.PipelineStopped, match=r"did not promote version 1 of sf_refused "
                                                       r"\(refused: average precision too low\).*nothing was scored"):
        pipeline.champion_after_promotion("sf_refused", "1", {"decision": "refused",
                                                              "reason": "average precision too low"}, "abc")

    steps = []

    def fake_step(entry_point, parameters, outputs=None, reusable=True):
        """The real steps' tags, without their Spark work: train registered v1, the gate refused it."""
        steps.append(entry_point)
        tags = {"train": {"registered_version": "1"}, "promote": {"decision": "refused", "reason": "AP 0.01"}}
        with mlflow.start_run(nested=True, run_name=entry_point, tags=tags.get(entry_point, {})) as run:
            pass
        return client.get_run(run.info.run_id), False

    monkeypatch.setattr(pipeline, "run_step", fake_step)
    done = CliRunner().invoke(cli, ["run-all", "--workdir", str(tmp_path / "work"), "--raw-dir", str(tmp_path),
                                    "--model-name", "sf_refused"])
    assert done.exit_code == 2, done.output
    assert "did not promote version 1 of sf_refused (refused: AP 0.01)" in done.output
    assert steps == ["ingest", "build_features", "train", "promote"]
    assert not (tmp_path / "work" / "scores").exists()
