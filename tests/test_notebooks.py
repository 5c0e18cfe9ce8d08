"""The notebooks execute top to bottom (real kernel, real Spark, real tracking store) and plot.

``01_explore_world`` generates its own small world (150 companies, 2019-2022); two quick trainings (standard, tree_based) in a
temporary SQLite store feed ``02_compare_runs``; the standard one, registered with alias
``champion``, feeds ``03_company_risk_history``. Parameters are injected after each notebook's
``parameters`` cell, papermill-style.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from sf_ml.config import load_config
from tests.panels import FAST_OVERRIDES, synthetic_panel, write_features
from tests.team_fixtures import mlflow_client_state, spark_conf

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
MODEL = "sf_notebook_test"
EXPERIMENT = "sf_notebooks"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def store(spark, tmp_path_factory):
    """A SQLite tracking store with two finished train runs and a champion, plus their features."""
    import mlflow

    from sf_ml.train import train_model

    home = tmp_path_factory.mktemp("notebooks")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    features = write_features(synthetic_panel(n_sirens=120, n_months=30, seed=4), home / "features")
    with mlflow_client_state(uri, EXPERIMENT, home):
        versions = {}
        for name in ("standard", "tree_based"):
            summary = train_model(features, load_config(name, FAST_OVERRIDES[name]), "2018-01-01", "2019-06-01",
                                  model_name=MODEL, spark=spark)
            versions[name] = summary["version"]
        mlflow.MlflowClient().set_registered_model_alias(MODEL, "champion", versions["standard"])
    return {"uri": uri, "features": features, "home": home, "versions": versions}


def kernel_env(tracking_uri: str | None = None) -> dict[str, str]:
    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SF_ML_SPARK_MASTER": "local[2]",
        "SF_ML_SPARK_CONF": spark_conf("1g"),
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    env.pop("MLFLOW_RUN_ID", None)
    if tracking_uri:
        env["MLFLOW_TRACKING_URI"] = tracking_uri
    return env


def execute(name: str, parameters: dict, cwd: Path, env: dict[str, str]):
    """Execute a notebook with ``parameters`` injected after its ``parameters`` cell; save it to ``cwd``."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell("\n".join(f"{key} = {value!r}" for key, value in parameters.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, injected)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(cwd)}})
    client.execute(env=env)
    nbformat.write(notebook, cwd / name)
    return notebook


def outputs(notebook, kind: str) -> list:
    """Every output of a data kind (``image/png``, ``text/plain``, ``text/html``) or stream text."""
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "stream" and output.get("output_type") == "stream":
                found.append(output.get("text", ""))
            elif kind in output.get("data", {}):
                found.append(output["data"][kind])
    return found


def test_notebooks_are_thin_and_parameterised():
    import nbformat

    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        code = [cell for cell in notebook.cells if cell.cell_type == "code"]
        assert "parameters" in code[0].metadata.get("tags", []), path.name
        assert all(not cell.get("outputs") for cell in code), f"{path.name} is committed with outputs"
        assert "def " not in "".join(c.source for c in code), path.name
    assert {p.name for p in NOTEBOOKS.glob("*.ipynb")} >= {
        "01_explore_world.ipynb", "02_compare_runs.ipynb", "03_company_risk_history.ipynb"}


def test_explore_world_notebook(tmp_path):
    parameters = {"raw_dir": "", "n_companies": 150, "seed": 3, "world_start": "2019-01-01",
                  "world_end": "2022-12-31", "generate_dir": str(tmp_path / "raw")}
    notebook = execute("01_explore_world.ipynb", parameters, tmp_path, kernel_env())
    assert f"generated 150 companies into {tmp_path / 'raw'}" in "".join(outputs(notebook, "stream"))
    assert len(outputs(notebook, "image/png")) >= 2  # failure rate, short-time work
    tables = "".join(outputs(notebook, "text/html"))
    for table in ("urssaf_effectif", "procedures_collectives", "failure_rate_12m_pct"):
        assert table in tables, table


def test_compare_runs_notebook(store, tmp_path):
    notebook = execute("02_compare_runs.ipynb", {"tracking_uri": store["uri"], "experiments": EXPERIMENT},
                       tmp_path, kernel_env(store["uri"]))
    assert len(outputs(notebook, "image/png")) >= 1
    assert "2 finished train runs" in "".join(outputs(notebook, "stream"))
    html = "".join(outputs(notebook, "text/html"))
    assert "standard" in html and "tree_based" in html and "test_average_precision" in html
    assert "model.type" in html  # the settings that differ between the two configs


def test_company_risk_history_notebook(store, tmp_path):
    notebook = execute("03_company_risk_history.ipynb",
                       {"tracking_uri": store["uri"], "model_uri": f"models:/{MODEL}@champion",
                        "features_dir": str(store["features"]), "siren": ""},
                       tmp_path, kernel_env(store["uri"]))
    text = "".join(outputs(notebook, "stream"))
    assert f"{MODEL} version {store['versions']['standard']}" in text and "riskiest company" in text
    assert len(outputs(notebook, "image/png")) >= 2  # score history, contributions (or feature history)


def test_train_runs_table_keeps_differing_settings_and_metrics():
    import pandas as pd

    from sf_ml.reports import train_runs_table

    runs = pd.DataFrame({
        "run_id": ["a", "b"],
        "start_time": pd.to_datetime(["2026-01-01 10:00", "2026-01-02 11:30"], utc=True),
        "metrics.test_average_precision": [0.30, 0.35],
        "metrics.oot_average_precision": [0.20, 0.25],
    })
    configs = {
        "a": {"name": "standard", "seed": 42, "model": {"type": "logistic_regression", "params": {"regParam": 0.12}},
              "description": "ignored"},
        "b": {"name": "tree_based", "seed": 42, "model": {"type": "random_forest", "params": {"maxDepth": 9}}},
    }
    table = train_runs_table(runs, configs.__getitem__)
    assert list(table.index) == ["b", "a"]  # best out-of-time average precision first
    assert list(table.columns[:2]) == ["name", "start"] and "seed" not in table  # same seed: not shown
    assert table.loc["a", "model.type"] == "logistic_regression" and table.loc["b", "model.params.maxDepth"] == 9
    assert pd.isna(table.loc["b", "model.params.regParam"])
    assert table.loc["b", "start"] == "2026-01-02 11:30"
    assert table.loc["a", "oot_average_precision"] == 0.20
