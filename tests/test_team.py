"""Team set-up against real processes: PostgreSQL, ``mlflow server`` with proxied artifacts,
concurrent clients, a server outage, a Spark standalone cluster and the UI in headless Chromium.

One PostgreSQL cluster and one tracking server on it serve the whole module. The stages run
in-process (the session's local Spark) or as ``python -m sf_ml.cli`` subprocesses, all with
``MLFLOW_TRACKING_URI=http://127.0.0.1:<port>``. The outage test runs last: it stops and
restarts the module's server.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from sf_ml.server import free_port, server_command, start_server
from tests.bench_scripts import bench_module
from tests.panels import synthetic_panel, write_features
from tests.team_fixtures import (
    FAST,
    PANEL_END,
    PANEL_START,
    ROOT,
    SCORE_DATE,
    TRAIN_END,
    TRAIN_START,
    PostgresCluster,
    SparkStandalone,
    mlflow_client_state,
    small_world,
    subprocess_env,
)

pytestmark = pytest.mark.server

MODEL = "sf_team"
CONCURRENT_MODEL = "sf_team_concurrent"
EXPERIMENT = "sf_team"
TIMINGS: dict[str, float] = {}


class Timer:
    """Records how long real components take (printed at the end of the module)."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.began = time.monotonic()
        return self

    def __exit__(self, *exc):
        TIMINGS[self.name] = time.monotonic() - self.began
        print(f"[team timing] {self.name}: {TIMINGS[self.name]:.1f} s")


@pytest.fixture(scope="module", autouse=True)
def report_timings():
    yield
    if TIMINGS:
        print("\n[team timings] " + ", ".join(f"{k}={v:.1f}s" for k, v in TIMINGS.items()))


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL cluster (database ``mlflow``) for the module."""
    with Timer("postgres_start"):
        cluster = PostgresCluster().start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def team_server(postgres, tmp_path_factory):
    """``mlflow server`` on the PostgreSQL database with proxied artifacts, for the module.

    A dict so that the outage test can replace the handle by the restarted server.
    """
    home = tmp_path_factory.mktemp("team_server")
    with Timer("server_start"):
        server = start_server(postgres.uri(), home / "mlartifacts", log_path=home / "server.log")
    slot = {"server": server, "artifacts": home / "mlartifacts", "url": server.url}
    yield slot
    slot["server"].stop()


@pytest.fixture(scope="module")
def client(team_server):
    from mlflow import MlflowClient

    return MlflowClient(team_server["url"])


@pytest.fixture(scope="module")
def pipeline(spark, team_server, tmp_path_factory):
    """build_features -> train -> promote -> score in-process, tracked on the team server."""

    from sf_ml.config import load_config
    from sf_ml.features import build_features
    from sf_ml.promote import PromotionGate, promote
    from sf_ml.score import score_companies
    from sf_ml.tracking import stage_run
    from sf_ml.train import train_model

    work = tmp_path_factory.mktemp("team_pipeline")
    raw = small_world(tmp_path_factory)
    features, scores = work / "features", work / "scores"
    config = load_config("standard", FAST)
    out = {"raw": raw, "features": features, "scores": scores, "runs": {}}
    with mlflow_client_state(team_server["url"], EXPERIMENT, work):
        with Timer("pipeline_build_features"):
            params = dict(raw_dir=raw, output_dir=features, config="standard", start=PANEL_START, end=PANEL_END)
            with stage_run("build_features", params, config.to_dict()) as run:
                out["build"] = build_features(raw, features, config, PANEL_START, PANEL_END, spark=spark)
            out["runs"]["build_features"] = run.info.run_id
        with Timer("pipeline_train"):
            params = dict(features_dir=features, config="standard", train_start=TRAIN_START,
                          train_end=TRAIN_END, model_name=MODEL)
            with stage_run("train", params, config.to_dict()) as run:
                out["train"] = train_model(features, config, TRAIN_START, TRAIN_END, model_name=MODEL,
                                           spark=spark)
            out["runs"]["train"] = run.info.run_id
        with Timer("pipeline_promote"):
            # The server is under test, not the model: any better-than-chance first model passes.
            out["promote"] = promote(MODEL, "challenger", features, spark=spark,
                                     gate=PromotionGate(min_lift_without_champion=1.0))
            out["runs"]["promote"] = out["promote"]["run_id"]
        with Timer("pipeline_score"):
            out["score"] = score_companies(f"models:/{MODEL}@champion", SCORE_DATE, scores,
                                           features_dir=features, spark=spark)
            out["runs"]["score"] = out["score"]["run_id"]
    return out


@pytest.fixture(scope="module")
def small_panel(tmp_path_factory):
    """A synthetic features panel (standard config columns) written without Spark: fast trainings."""
    return write_features(synthetic_panel(n_sirens=150, n_months=30, seed=1),
                          tmp_path_factory.mktemp("team_panel") / "features")


def train_command(features_dir, model_name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sf_ml.cli", "train", "--features-dir", str(features_dir),
            "--config", "standard", "--train-start", "2018-01-01", "--train-end", "2019-06-01",
            "--model-name", model_name, *(arg for o in FAST for arg in ("--override", o)), *extra]


# ----------------------------------------------------------------------------------------------
# sf-ml server
# ----------------------------------------------------------------------------------------------


def test_sf_ml_server_command_serves_runs_and_proxies_artifacts(tmp_path):
    """``sf-ml server`` (defaults: 127.0.0.1, SQLite, ./mlartifacts, 1 worker, no job runner) serves."""
    from mlflow import MlflowClient

    from sf_ml.server import _health

    printed = subprocess.run([sys.executable, "-m", "sf_ml.cli", "server", "--print-command"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120, env=subprocess_env(), check=False)
    assert printed.returncode == 0, printed.stderr
    line = printed.stdout.strip()
    assert line.startswith("MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false ")
    for part in ("--backend-store-uri sqlite:///mlflow.db", "--serve-artifacts",
                 f"--artifacts-destination {tmp_path / 'mlartifacts'}", "--host 127.0.0.1", "--port 5000",
                 "--workers 1"):
        assert part in line, part
    assert server_command()[1:4] == ["-m", "mlflow", "server"]

    port = free_port()
    env = subprocess_env()
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(tmp_path / "server.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "sf_ml.cli", "server", "--port", str(port)],
                                   cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        with Timer("cli_server_start"):
            url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 180
            while not _health(url) and time.monotonic() < deadline:
                assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
                time.sleep(0.25)
        assert _health(url), (tmp_path / "server.log").read_text()[-3000:]
        client = MlflowClient(url)
        experiment_id = client.create_experiment("cli_server")
        assert client.get_experiment(experiment_id).artifact_location.startswith("mlflow-artifacts:")
        run = client.create_run(experiment_id)
        client.log_text(run.info.run_id, "hello", "notes/hello.txt")
        stored = tmp_path / "mlartifacts" / experiment_id / run.info.run_id / "artifacts" / "notes" / "hello.txt"
        assert stored.read_text() == "hello"
        assert (tmp_path / "mlflow.db").exists()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


# ----------------------------------------------------------------------------------------------
# The pipeline through the PostgreSQL-backed server
# ----------------------------------------------------------------------------------------------


def test_pipeline_through_server(pipeline, client, team_server, postgres):
    import sqlalchemy

    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    for stage, run_id in pipeline["runs"].items():
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED", stage
        assert run.info.experiment_id == experiment.experiment_id
        assert run.data.tags["stage"] == stage
    train_run = client.get_run(pipeline["runs"]["train"])
    assert {"test_average_precision", "oot_average_precision"} <= set(train_run.data.metrics)
    assert train_run.data.tags["registered_version"] == "1"

    # Registry: one version, challenger and champion on it, promotion recorded.
    versions = client.search_model_versions(f"name = '{MODEL}'")
    assert [v.version for v in versions] == ["1"]
    assert versions[0].run_id == pipeline["runs"]["train"]
    assert pipeline["promote"]["decision"] == "promoted"
    assert client.get_registered_model(MODEL).aliases == {"challenger": "1", "champion": "1"}
    assert client.get_model_version(MODEL, "1").tags["promotion_run_id"] == pipeline["runs"]["promote"]

    # Predictions written by the champion.
    scores = Path(pipeline["scores"])
    assert {"predictions.parquet", "predictions.csv", "alert_list.json", "manifest.json"} <= {
        p.name for p in scores.iterdir()}
    manifest = json.loads((scores / "manifest.json").read_text())
    assert manifest["model"]["version"] == 1 and manifest["prediction_date"] == SCORE_DATE
    predictions = pd.read_parquet(scores / "predictions.parquet")
    assert len(predictions) == pipeline["score"]["rows"] > 0
    assert predictions["probability"].between(0, 1).all()

    # Artifacts went through the server's proxy into its destination directory.
    artifacts = Path(team_server["artifacts"])
    run_dir = artifacts / experiment.experiment_id / pipeline["runs"]["train"] / "artifacts"
    for name in ("config.json", "metrics.csv", "features.json", "evaluation/pr_curve.png"):
        assert (run_dir / name).is_file(), name
    assert (artifacts / experiment.experiment_id / pipeline["runs"]["build_features"] / "artifacts"
            / "periode_profile.png").is_file()
    assert any(artifacts.rglob("MLmodel")), "the logged model's files are in the artifacts destination"
    assert not list(Path(pipeline["features"]).parent.glob("mlruns")), "nothing logged client-side"

    # And the runs live in PostgreSQL.
    engine = sqlalchemy.create_engine(postgres.uri())
    try:
        with engine.connect() as connection:
            stored = connection.execute(sqlalchemy.text("select count(*) from runs")).scalar()
            names = connection.execute(sqlalchemy.text("select name from registered_models")).scalars().all()
    finally:
        engine.dispose()
    assert stored >= 4 and MODEL in names


# ----------------------------------------------------------------------------------------------
# Concurrent clients
# ----------------------------------------------------------------------------------------------


def test_three_concurrent_trainings_get_consistent_versions(team_server, client, small_panel, tmp_path):
    env = subprocess_env(team_server["url"], MLFLOW_EXPERIMENT_NAME="sf_team_concurrent")
    processes = []
    with Timer("concurrent_trainings_x3"):
        for seed in (1, 2, 3):
            log = open(tmp_path / f"train{seed}.log", "w")  # noqa: SIM115 - closed below
            processes.append((subprocess.Popen(train_command(small_panel, CONCURRENT_MODEL, "--seed", str(seed)),
                                               cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                               text=True), log))
        for process, log in processes:
            process.wait(900)
            log.close()
    for seed, (process, _) in zip((1, 2, 3), processes):
        assert process.returncode == 0, (tmp_path / f"train{seed}.log").read_text()[-4000:]

    versions = sorted(client.search_model_versions(f"name = '{CONCURRENT_MODEL}'"), key=lambda v: int(v.version))
    assert [v.version for v in versions] == ["1", "2", "3"]
    assert len({v.run_id for v in versions}) == 3
    seeds = set()
    for version in versions:
        run = client.get_run(version.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["registered_version"] == version.version
        assert run.data.tags["registered_model"] == CONCURRENT_MODEL
        assert version.tags["run_id"] == version.run_id
        assert {"threshold_risque_fort", "threshold_risque_modere", "config_name"} <= set(version.tags)
        assert version.status == "READY"
        seeds.add(version.tags["seed"])
    assert seeds == {"1", "2", "3"}
    aliases = client.get_registered_model(CONCURRENT_MODEL).aliases
    assert set(aliases) == {"challenger"} and aliases["challenger"] in {"1", "2", "3"}


# ----------------------------------------------------------------------------------------------
# Spark standalone cluster
# ----------------------------------------------------------------------------------------------


# Both stages in one driver (one Spark application). A script file, not ``python -c``: pyspark
# takes a main module without __file__ for its own doctests and exits 0 when Spark Connect is absent.
CLUSTER_SCRIPT = """
from sf_ml.cli import cli

for args in ({build!r}, {train!r}):
    try:
        cli.main(args, prog_name="sf-ml", standalone_mode=False)
    except SystemExit as stop:
        if stop.code:
            raise
"""


@pytest.fixture
def spark_cluster(tmp_path_factory):
    """Master + one worker (2 cores, 2 GB) on 127.0.0.1, stopped after the test."""
    with Timer("spark_cluster_start"):
        cluster = SparkStandalone(tmp_path_factory.mktemp("spark_cluster"), cores=2, memory="2g").start()
    yield cluster
    cluster.stop()


def test_spark_standalone_cluster_matches_local_mode(pipeline, spark_cluster, team_server, client, tmp_path):
    """build_features then train on spark://127.0.0.1:<port>: same panel, same metrics as local[2]."""
    features = tmp_path / "features"
    build = ["build-features", "--raw-dir", str(pipeline["raw"]), "--output-dir", str(features),
             "--config", "standard", "--start", PANEL_START, "--end", PANEL_END,
             *(arg for o in FAST for arg in ("--override", o))]
    train = ["train", "--features-dir", str(features), "--config", "standard", "--train-start", TRAIN_START,
             "--train-end", TRAIN_END, "--model-name", MODEL, "--no-register",
             *(arg for o in FAST for arg in ("--override", o))]
    env = subprocess_env(team_server["url"], master=spark_cluster.master_url,
                         MLFLOW_EXPERIMENT_NAME="sf_team_cluster")
    with Timer("cluster_build_features_and_train"):
        script = tmp_path / "cluster_stages.py"
        script.write_text(CLUSTER_SCRIPT.format(build=build, train=train))
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=1200, check=False)
    assert done.returncode == 0, done.stderr[-4000:] + spark_cluster.log_tail()
    apps = spark_cluster.status()
    ran = apps.get("completedapps", []) + apps.get("activeapps", [])
    assert ran and all(app["name"].startswith("sf_ml") for app in ran), "the stages ran on the cluster"

    local = pd.read_parquet(pipeline["features"])
    remote = pd.read_parquet(features)
    assert sorted(local.columns) == sorted(remote.columns)
    key = ["siren", "periode"]
    local = local.assign(periode=local["periode"].astype(str)).sort_values(key).reset_index(drop=True)
    remote = remote.assign(periode=remote["periode"].astype(str)).sort_values(key).reset_index(drop=True)[
        local.columns]
    assert len(remote) == len(local) == pipeline["build"]["rows"]
    pd.testing.assert_frame_equal(remote, local, check_exact=False, rtol=1e-9, check_categorical=False)

    experiment = client.get_experiment_by_name("sf_team_cluster")
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'train'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    remote_metrics = runs[0].data.metrics
    local_metrics = {**pipeline["train"]["metrics"],
                     **{f"threshold_{level}": value for level, value in pipeline["train"]["thresholds"].items()}}
    for name in ("train_rows", "train_rows_resampled", "test_rows", "oot_rows"):
        if name in local_metrics:
            assert remote_metrics[name] == local_metrics[name], name
    for name in ("test_average_precision", "test_roc_auc", "oot_average_precision", "oot_roc_auc",
                 "threshold_risque_fort", "threshold_risque_modere"):
        assert remote_metrics[name] == pytest.approx(local_metrics[name], abs=1e-6), name


# ----------------------------------------------------------------------------------------------
# UI
# ----------------------------------------------------------------------------------------------


def test_ui_compare_page_shows_both_runs(spark, pipeline, team_server, small_panel, tmp_path):
    """Two real train runs of different configs (standard from the pipeline, tree_based here)."""
    ui_check = bench_module("ui_check")
    if ui_check.chromium_binary() is None:
        pytest.skip("chromium is not installed (scripts/ci_services.sh installs it when it can)")
    from sf_ml.config import load_config
    from sf_ml.train import train_model
    from tests.panels import FAST_OVERRIDES

    with mlflow_client_state(team_server["url"], EXPERIMENT, tmp_path):
        train_model(small_panel, load_config("tree_based", FAST_OVERRIDES["tree_based"]), "2018-01-01",
                    "2019-06-01", spark=spark, register=False)
    experiment_id, runs = ui_check.latest_train_runs(team_server["url"], EXPERIMENT)
    assert pipeline["runs"]["train"] in runs and len(runs) == 2
    with Timer("ui_check"):
        result = ui_check.check(team_server["url"], runs, experiment_id, tmp_path / "compare.png")
    assert result.ok, f"missing from {result.url}: {result.missing}"
    assert Path(result.screenshot).stat().st_size > 10_000


# ----------------------------------------------------------------------------------------------
# Outage (last: stops and restarts the module's server)
# ----------------------------------------------------------------------------------------------


def test_server_outage_fails_the_run_cleanly_then_a_rerun_succeeds(spark, pipeline, team_server, client,
                                                                   small_panel, tmp_path):
    before = client.get_registered_model(MODEL)
    versions_before = sorted(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'"))
    env = subprocess_env(team_server["url"], MLFLOW_EXPERIMENT_NAME="sf_team_outage",
                         MLFLOW_HTTP_REQUEST_MAX_RETRIES="0", MLFLOW_HTTP_REQUEST_TIMEOUT="10")
    process = subprocess.Popen(train_command(small_panel, MODEL), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    began = time.monotonic()
    try:
        # Wait until the run exists and has logged its parameters: training is under way.
        run = None
        while run is None and process.poll() is None and time.monotonic() - began < 300:
            experiment = client.get_experiment_by_name("sf_team_outage")
            if experiment is not None:
                found = client.search_runs([experiment.experiment_id])
                if found and found[0].data.params:
                    run = found[0]
            time.sleep(0.2)
        assert run is not None, process.communicate(timeout=60)[1][-4000:]
        team_server["server"].stop()
        with Timer("outage_failed_run"):
            _, stderr = process.communicate(timeout=600)
    finally:
        if process.poll() is None:
            process.kill()
        if not team_server["server"].running():
            with Timer("server_restart"):
                team_server["server"] = team_server["server"].restart()
    assert process.returncode == 3, stderr[-3000:]
    message = stderr.strip().splitlines()[-1]
    assert message.startswith(f"error: the MLflow tracking server {team_server['url']} is unreachable"), message
    assert "no registry alias was changed" in message and "Traceback" not in stderr

    # Same backend after the restart: nothing moved, the interrupted run never finished.
    after = client.get_registered_model(MODEL)
    assert after.aliases == before.aliases
    assert sorted(int(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")) == versions_before
    assert client.get_run(run.info.run_id).info.status != "FINISHED"

    # The rerun (in-process on the warm session: the command itself was exercised above).
    from sf_ml.config import load_config
    from sf_ml.train import train_model

    with Timer("outage_rerun"), mlflow_client_state(team_server["url"], "sf_team_outage", tmp_path):
        rerun = train_model(small_panel, load_config("standard", FAST), "2018-01-01", "2019-06-01",
                            model_name=MODEL, spark=spark)
    new_version = str(max(versions_before) + 1)
    assert rerun["version"] == int(new_version)
    aliases = client.get_registered_model(MODEL).aliases
    assert aliases["challenger"] == new_version
    assert aliases["champion"] == before.aliases["champion"]
    assert client.get_run(rerun["run_id"]).info.status == "FINISHED"
