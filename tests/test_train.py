"""Stage train: fit, evaluate, log and register on a synthetic features panel with a planted signal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from sf_ml.config import load_config, resolve_config_path
from sf_ml.modeling import feature_columns
from sf_ml.registry import resolve_version
from sf_ml.tracking import stage_run
from sf_ml.train import TrainingDataError, synthetic_input_example, train_model
from tests.panels import FAST_OVERRIDES, synthetic_panel, write_features
from tests.team_fixtures import spark_conf

ROOT = Path(__file__).resolve().parent.parent
TRAIN_START, TRAIN_END = "2018-01-01", "2019-06-01"  # labels known to 2020-06, out-of-time after
MODEL = "sf_failure_test"


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    return write_features(synthetic_panel(n_sirens=400, n_months=36, seed=0),
                          tmp_path_factory.mktemp("train") / "features")


@pytest.fixture
def store(tracking_uri, tmp_path, monkeypatch):
    """The test's tracking store, with artifacts under the test's directory."""
    monkeypatch.chdir(tmp_path)  # the sqlite store's default artifact root is ./mlruns
    return tracking_uri


@pytest.mark.parametrize("name", ["standard", "tree_based", "gbt"])
def test_train_model_beats_base_rate_and_registers_a_challenger(spark, store, features_dir, name):
    import mlflow
    import mlflow.spark

    config = load_config(name, FAST_OVERRIDES[name])
    with stage_run("train", {"config": name}, config.to_dict()) as run:
        summary = train_model(features_dir, config, TRAIN_START, TRAIN_END, model_name=MODEL, spark=spark)
    metrics = summary["metrics"]
    print(f"{name}: oot AP {metrics['oot_average_precision']:.3f} vs positive rate "
          f"{metrics['oot_positive_rate']:.3f}; test AP {metrics['test_average_precision']:.3f}")
    assert metrics["oot_rows"] > 0 and metrics["oot_positive_rate"] > 0
    assert metrics["oot_average_precision"] >= 3 * metrics["oot_positive_rate"]
    assert metrics["train_positive_rate_resampled"] == pytest.approx(0.35, abs=0.03)
    assert summary["run_id"] == run.info.run_id

    client = mlflow.MlflowClient()
    logged = client.get_run(run.info.run_id).data
    for key in ("test_average_precision", "test_roc_auc", "test_brier", "test_log_loss",
                "oot_average_precision", "oot_risque_fort_precision", "oot_risque_modere_recall",
                "threshold_risque_fort", "threshold_risque_modere"):
        assert key in logged.metrics, key
    assert float(logged.params["threshold_risque_fort"]) == summary["thresholds"]["risque_fort"]
    assert logged.tags["config_name"] == name
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model", "evaluation", "metrics.csv", "features.json", "config.json"} <= artifacts
    evaluation = {a.path for a in client.list_artifacts(run.info.run_id, "evaluation")}
    assert {"evaluation/pr_curve.png", "evaluation/feature_importances.csv"} <= evaluation
    model_files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/MLmodel", "model/input_example.json"} <= model_files

    version = client.get_model_version_by_alias(MODEL, "challenger")
    assert int(version.version) == summary["version"]
    assert version.tags["config_name"] == name and "oot_average_precision" in version.tags
    assert {"features_digest", "features_path", "git_commit"} <= set(version.tags)
    expected = pytest.approx(summary["thresholds"])
    assert resolve_version(f"models:/{MODEL}@challenger").thresholds == expected
    resolved = resolve_version(f"models:/{MODEL}/{version.version}")
    assert resolved.thresholds == expected and resolved.config.name == name and resolved.run_id == run.info.run_id
    assert summary["thresholds"]["risque_fort"] >= summary["thresholds"]["risque_modere"]

    if name == "standard":
        # What scoring will do: load the registered model and score rows with nulls.
        model = mlflow.spark.load_model(f"models:/{MODEL}@challenger")
        example = synthetic_input_example(config, feature_columns(config))
        scored = model.transform(spark.createDataFrame(example)).collect()
        assert len(scored) == 3 and all(0 <= row.probability[1] <= 1 for row in scored)
        info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
        assert "paydex" in info.signature.inputs.input_names()


def test_train_model_refuses_an_empty_window(spark, store, features_dir):
    config = load_config("standard", FAST_OVERRIDES["standard"])
    with pytest.raises(TrainingDataError, match="no labelled rows"):
        train_model(features_dir, config, "2030-01-01", "2030-12-01", model_name=MODEL, spark=spark)
    with pytest.raises(TrainingDataError, match="after"):
        train_model(features_dir, config, TRAIN_END, TRAIN_START, model_name=MODEL, spark=spark)


def test_train_model_refuses_a_window_without_positives(spark, store, tmp_path):
    config = load_config("standard", FAST_OVERRIDES["standard"])
    healthy = write_features(synthetic_panel(n_sirens=20, n_months=8, unlabelled_months=0, failing_share=0.0),
                             tmp_path / "healthy")
    with pytest.raises(TrainingDataError, match="no positive"):
        train_model(healthy, config, TRAIN_START, TRAIN_END, model_name=MODEL, spark=spark)


@pytest.mark.slow
def test_mlflow_run_train_entry_point(store, features_dir, tmp_path):
    import mlflow

    config = yaml.safe_load(resolve_config_path("standard").read_text(encoding="utf-8"))
    config["model"]["params"]["maxIter"] = 20
    config_path = tmp_path / "fast_standard.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    experiment = mlflow.create_experiment("train_cli", artifact_location=(tmp_path / "artifacts").as_uri())
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "SF_ML_SPARK_MASTER": "local[2]",
        "SF_ML_SPARK_CONF": spark_conf("2g"),
    }
    env.pop("MLFLOW_RUN_ID", None)
    params = dict(features_dir=features_dir, config=str(config_path), train_start=TRAIN_START,
                  train_end=TRAIN_END, model_name="sf_cli", seed="3")
    command = [str(Path(bin_dir) / "mlflow"), "run", str(ROOT), "-e", "train", "--env-manager", "local",
               "--experiment-id", experiment]
    for key, value in params.items():
        command += ["-P", f"{key}={value}"]
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]

    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("sf_cli", "challenger")
    assert version.tags["seed"] == "3" and "threshold_risque_fort" in version.tags
    run = client.get_run(version.run_id)
    assert run.data.tags["stage"] == "train" and run.data.params["resolved_seed"] == "3"
    assert run.data.metrics["oot_average_precision"] >= 3 * run.data.metrics["oot_positive_rate"]


# A generated world big enough for the random forest's out-of-time ranking to be stable; the panel
# covers only what the test uses: training 2019-01..2020-06, out-of-time 2020-07..2021-06 (labels
# are known to 2022-12, the world's end).
GENERATED_WORLD = dict(n_companies=2500, start="2016-01-01", end="2022-12-31", seed=11)
WORLD_PANEL = ("2019-01-01", "2021-06-01")
WORLD_TRAIN = ("2019-01-01", "2020-06-01")


@pytest.fixture(scope="module")
def generated_world_features(spark, tmp_path_factory):
    """Features (standard config: every base variable and the shared aggregations) of a generated world."""
    from sf_ml.features import build_features
    from sf_ml.generate import generate_world

    home = tmp_path_factory.mktemp("generated_world")
    generate_world(home / "raw", **GENERATED_WORLD)
    build_features(home / "raw", home / "features", load_config("standard"), *WORLD_PANEL, spark=spark)
    return home / "features"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["standard", "tree_based", "gbt"])
def test_each_config_beats_three_times_the_base_rate_on_a_generated_world(spark, store, generated_world_features,
                                                                          name):
    """The full configs, out of time on a generated world: average precision >= 3x the positive rate."""
    summary = train_model(generated_world_features, load_config(name), *WORLD_TRAIN, model_name=MODEL,
                          spark=spark, register=False)
    metrics = summary["metrics"]
    print(f"generated world, {name}: oot AP {metrics['oot_average_precision']:.3f} vs positive rate "
          f"{metrics['oot_positive_rate']:.3f} ({metrics['oot_rows']:.0f} rows); "
          f"test AP {metrics['test_average_precision']:.3f} vs {metrics['test_positive_rate']:.3f}")
    assert metrics["oot_positive_rate"] > 0
    assert metrics["oot_average_precision"] >= 3 * metrics["oot_positive_rate"]
