"""End to end: `mlflow run . -e main --env-manager local` on a small world, then again (all reused)."""

from __future__ import annotations

import json
import os
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


@pytest.mark.slow
def test_main_pipeline_end_to_end_then_reused(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = run_main(tmp_path, uri)
    assert first.returncode == 0, first.stderr[-4000:]

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
        "generate", "build_features", "train", "promote", "score"}
    promote = next(c for c in children if c.data.tags.get("mlflow.project.entryPoint") == "promote")
    assert promote.data.tags["decision"] == "promoted"

    scores = tmp_path / "work" / "scores" / "2025-12-01"
    alert_list = json.loads((scores / "alert_list.json").read_text())
    assert (scores / "predictions.csv").exists() and alert_list
    before = {p.name: p.read_bytes() for p in scores.iterdir() if p.is_file()}

    second = run_main(tmp_path, uri)
    assert second.returncode == 0, second.stderr[-4000:]
    assert second.stdout.count("(reused)") == 5, second.stdout
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

    def fake_step(entry_point, parameters, outputs=None):
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
    assert steps == ["build_features", "train", "promote"]
    assert not (tmp_path / "work" / "scores").exists()
