"""Typed config loading/overrides and the provenance every stage run logs (real sqlite store)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sf_ml.config import ConfigError, load_config


def test_standard_config_matches_sf_datalake():
    config = load_config("standard")
    assert config.model.type == "logistic_regression"
    assert config.model.params == {"regParam": 0.12, "maxIter": 500}
    assert config.features.time_aggregation["lag"]["dette_sociale_patronale"] == [1, 2, 3, 6, 12]
    assert config.features.time_aggregation["mean"]["cotisation"] == [12]
    assert config.features.time_aggregation["diff"] == {"paydex": [12], "dette_par_effectif": [3]}
    assert len(config.model.bins["paydex"]) == 7  # 6 bins
    assert "dette_sociale_patronale_lag12m" in config.aggregated_columns()


def test_tree_based_config_is_the_2024_production_model():
    config = load_config("experiments/tree_based.yaml")
    assert config.model.type == "random_forest"
    assert config.model.params == {"maxDepth": 9, "numTrees": 100, "featureSubsetStrategy": "sqrt"}


def test_overrides_are_typed_and_validated():
    config = load_config("standard", ["model.params.regParam=0.5", "sampling.strategy=undersample", "seed=7"])
    assert config.model.params["regParam"] == 0.5
    assert config.sampling.strategy == "undersample"
    assert config.seed == 7
    with pytest.raises(ConfigError, match="unknown key"):
        load_config("standard", ["model.typo=1"])
    with pytest.raises(ConfigError, match="model.type"):
        load_config("standard", ["model.type=svm"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("no_such_experiment")


def test_stage_run_logs_params_config_commit_and_versions(tracking_uri):
    import mlflow

    from sf_ml.tracking import stage_run

    config = load_config("standard")
    with stage_run("unit", {"a": 1, "b": None}, config.to_dict()) as run:
        run_id = run.info.run_id
    logged = mlflow.get_run(run_id)
    assert logged.data.params == {"a": "1", "b": ""}
    assert logged.data.tags["stage"] == "unit"
    assert logged.data.tags["version.pyspark"] == "4.3.0"
    assert logged.data.tags["version.mlflow"] == "3.17.2"
    assert "git_commit" in logged.data.tags
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="config.json")
    assert json.load(open(path))["model"]["params"]["regParam"] == 0.12


def test_every_entry_point_defaults_to_the_one_default_config():
    import yaml

    from sf_ml.config import DEFAULT_CONFIG, load_config

    project = yaml.safe_load((Path(__file__).resolve().parent.parent / "MLproject").read_text())
    defaults = {name: spec["parameters"]["config"]["default"]
                for name, spec in project["entry_points"].items() if "config" in spec["parameters"]}
    assert set(defaults) >= {"main", "train", "tune", "backtest"}
    assert set(defaults.values()) == {DEFAULT_CONFIG}
    assert load_config(DEFAULT_CONFIG).name == DEFAULT_CONFIG
