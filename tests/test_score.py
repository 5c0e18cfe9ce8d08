"""Stage score: a registered champion scores one month, writes idempotent outputs, logs drift."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sf_ml import drift
from sf_ml.config import load_config
from sf_ml.labels import describe
from sf_ml.report import format_value
from sf_ml.score import (
    ALERT_LIST,
    ALERT_REPORT,
    MANIFEST,
    PREDICTIONS_CSV,
    PREDICTIONS_PARQUET,
    ScoringError,
    score_companies,
)
from tests.panels import FAST_OVERRIDES, synthetic_panel, write_features
from tests.test_report import assert_self_contained, report_screenshot_module

ROOT = Path(__file__).resolve().parent.parent
MODEL = "sf_score_test"
TRAIN_START, TRAIN_END = "2018-01-01", "2019-06-01"
N_MONTHS = 30  # periodes 2018-01 .. 2020-06; labels unknown from 2020-01
EARLY, LATE, LAST = dt.date(2020, 1, 1), dt.date(2020, 5, 1), dt.date(2020, 6, 1)
FILES = (PREDICTIONS_PARQUET, PREDICTIONS_CSV, ALERT_LIST, ALERT_REPORT, MANIFEST)


@pytest.fixture(scope="module")
def panel():
    return synthetic_panel(n_sirens=300, n_months=N_MONTHS, unlabelled_months=6, seed=3)


@pytest.fixture(scope="module")
def features_dir(panel, tmp_path_factory):
    return write_features(panel, tmp_path_factory.mktemp("score") / "features")


@pytest.fixture(scope="module")
def champion(spark, features_dir, tmp_path_factory):
    """A sqlite tracking store shared by this module, with a tiny standard model as champion.

    Module-scoped twin of the ``tracking_uri`` fixture, so that the model is trained once.
    """
    import mlflow

    from sf_ml.train import train_model

    home = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{home / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(home)
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        patch.delenv("MLFLOW_RUN_ID", raising=False)
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment_id="0")
        config = load_config("standard", FAST_OVERRIDES["standard"])
        summary = train_model(features_dir, config, TRAIN_START, TRAIN_END, model_name=MODEL, spark=spark)
        mlflow.MlflowClient().set_registered_model_alias(MODEL, "champion", summary["version"])
        yield {"uri": uri, "version": summary["version"], "run_id": summary["run_id"],
               "thresholds": summary["thresholds"], "config": config}
        while mlflow.active_run() is not None:
            mlflow.end_run()


def _score(spark, features_dir, output_dir, date, model_uri=f"models:/{MODEL}@champion", explain="alerts"):
    return score_companies(model_uri, date, output_dir, features_dir=features_dir, spark=spark, explain=explain)


def _bytes(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in FILES}


def test_score_writes_one_row_per_company_with_consistent_alerts(spark, champion, panel, features_dir, tmp_path):
    import mlflow

    out = tmp_path / "scores"
    summary = _score(spark, features_dir, out, "2020-03-15")  # any day of the month: its first is scored
    at_date = panel[panel["periode"] == dt.date(2020, 3, 1)]
    assert summary["prediction_date"] == "2020-03-01" and summary["rows"] == len(at_date)
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert not list(tmp_path.glob(".scores*")), "no staging or working directory left behind"

    table = pd.read_parquet(out / PREDICTIONS_PARQUET)
    schema = pq.read_schema(out / PREDICTIONS_PARQUET)
    assert schema.field("periode").type == pa.date32() and schema.field("model_version").type == pa.int64()
    assert schema.field("top3_value").type == pa.float64() and schema.metadata is None
    assert list(table["siren"]) == sorted(at_date["siren"])
    assert table["siren"].is_unique and set(table["periode"].astype(str)) == {"2020-03-01"}
    for column in ("probability", "alert", "model_name", "model_version", "run_id", "scored_at",
                   "code_naf", "region", "top1_feature", "top1_contribution", "top1_value"):
        assert column in table.columns, column
    groups = {f"group_{g}" for g in champion["config"].topic_groups}
    assert groups <= set(table.columns)
    assert table["probability"].between(0, 1).all()
    # Explanations line up with their company: for logistic regression the groups (every variable
    # in exactly one) plus the intercept add up to the row's own log-odds. By default only the
    # companies on alert are explained; the others have no explanation at all.
    all_groups = [c for c in table.columns if c.startswith("group_")]
    logit = np.log(table["probability"] / (1 - table["probability"]))
    on_alert = (table["alert"] != "pas_d_alerte").to_numpy()
    explained = table.loc[on_alert]
    assert np.allclose(explained[all_groups].sum(axis=1) + explained["expected_value"], logit[on_alert], atol=1e-6)
    quiet = table.loc[~on_alert, [*all_groups, "expected_value", "top1_feature", "top1_contribution"]]
    assert len(quiet) and quiet.isna().all().all()
    everyone = _score(spark, features_dir, tmp_path / "all", "2020-03-15", explain="all")
    full = pd.read_parquet(tmp_path / "all" / PREDICTIONS_PARQUET)
    assert everyone["rows"] == len(table) and full["expected_value"].notna().all()
    assert np.allclose(full[all_groups].sum(axis=1) + full["expected_value"], logit, atol=1e-6)
    pd.testing.assert_frame_equal(full.loc[on_alert, all_groups], explained[all_groups])
    t = champion["thresholds"]
    expected = np.where(table["probability"] >= t["risque_fort"], "risque_fort",
                        np.where(table["probability"] >= t["risque_modere"], "risque_modere", "pas_d_alerte"))
    assert (table["alert"].to_numpy() == expected).all()
    assert (table["model_name"] == MODEL).all() and (table["model_version"] == champion["version"]).all()
    assert (table["run_id"] == champion["run_id"]).all()
    counts = table["alert"].value_counts().to_dict()
    assert 0 < counts.get("risque_fort", 0) + counts.get("risque_modere", 0) < len(table)

    csv = pd.read_csv(out / PREDICTIONS_CSV, dtype={"siren": str})
    assert list(csv["siren"]) == list(table["siren"]) and list(csv["alert"]) == list(table["alert"])
    assert np.allclose(csv["probability"], table["probability"], rtol=1e-9)

    alerts = json.loads((out / ALERT_LIST).read_text(encoding="utf-8"))
    assert alerts["model"] == {"name": MODEL, "version": champion["version"], "run_id": champion["run_id"],
                               "uri": f"models:/{MODEL}/{champion['version']}"}
    assert alerts["prediction_date"] == "2020-03-01"
    assert alerts["counts"] == {"companies": len(table), **{k: counts.get(k, 0) for k in
                                                             ("risque_fort", "risque_modere", "pas_d_alerte")}}
    listed = alerts["alerts"]
    assert len(listed) == counts.get("risque_fort", 0) + counts.get("risque_modere", 0)
    keys = [(-entry["probability"], entry["siren"]) for entry in listed]
    assert keys == sorted(keys), "riskiest first, ties by siren"
    by_siren = table.set_index("siren")
    for entry in listed:
        row = by_siren.loc[entry["siren"]]
        assert entry["alert"] == row["alert"] != "pas_d_alerte"
        assert entry["risk_percent"] == round(row["probability"] * 100, 1)
        assert entry["code_naf"] == "62.01Z" and entry["region"] == "Bretagne"
        assert entry["threshold_risque_fort"] == t["risque_fort"]
        assert entry["threshold_risque_modere"] == t["risque_modere"]
        assert set(champion["config"].topic_groups) <= set(entry["groups"])
        assert 1 <= len(entry["top_features"]) <= 3
        _assert_labelled(entry, at_date)
        contributions = [f["contribution"] for f in entry["top_features"]]
        assert contributions == sorted(contributions, reverse=True) and contributions[0] > 0

    manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["model"]["uri"] == f"models:/{MODEL}@champion"
    assert manifest["model"]["version"] == champion["version"] and manifest["model"]["run_id"] == champion["run_id"]
    assert manifest["prediction_date"] == "2020-03-01" and manifest["rows"]["predictions"] == len(table)
    assert manifest["rows"]["explained"] == len(listed) and manifest["inputs"]["explain"] == "alerts"
    assert manifest["features"]["digest"] == summary["features_digest"]
    assert set(manifest["files"]) == {PREDICTIONS_PARQUET, PREDICTIONS_CSV, ALERT_LIST, ALERT_REPORT}
    assert_self_contained((out / ALERT_REPORT).read_text(encoding="utf-8"))

    run = mlflow.MlflowClient().get_run(summary["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["stage"] == "score"
    assert run.data.tags["model_name"] == MODEL and run.data.tags["model_version"] == str(champion["version"])
    assert run.data.tags["prediction_date"] == "2020-03-01"
    assert run.data.params["model_uri"] == f"models:/{MODEL}@champion"
    metrics = run.data.metrics
    assert metrics["alerts_risque_fort"] == counts.get("risque_fort", 0)
    assert metrics["alerts_pas_d_alerte"] == counts.get("pas_d_alerte", 0)
    assert metrics["alert_rate"] == pytest.approx(len(listed) / len(table))
    assert metrics["probability_q50"] == pytest.approx(table["probability"].median(), abs=1e-9)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(summary["run_id"])}
    assert {"score_distribution.png", "drift", "scoring"} <= artifacts


def _assert_labelled(entry: dict, at_date: pd.DataFrame) -> None:
    """An alert list entry's top features carry the labels table's label and unit; its headcount is the month's."""
    assert {"feature", "label", "unit", "contribution", "value"} == set(entry["top_features"][0])
    for top in entry["top_features"]:
        assert (top["label"], top["unit"]) == describe(top["feature"], strict=True)[:2]
    headcount = float(at_date.set_index("siren").loc[entry["siren"], "effectif"])
    assert entry["effectif"] == pytest.approx(headcount, abs=0.005)  # 2 decimals


def test_scoring_twice_gives_byte_identical_files(spark, champion, features_dir, tmp_path, monkeypatch):
    """Once through the API, once as ``mlflow run . -e score`` runs it: same bytes."""
    import shlex

    import mlflow
    from click.testing import CliRunner

    from sf_ml.cli import cli

    out = tmp_path / "scores"
    first = _score(spark, features_dir, out, EARLY.isoformat())
    before = _bytes(out)
    # What `mlflow run` does before the command: a run holding the entry point's parameters,
    # shell-quoted (an empty one logged as ''), handed over in MLFLOW_RUN_ID.
    parameters = {"model_uri": f"models:/{MODEL}@champion", "prediction_date": EARLY.isoformat(),
                  "features_dir": str(features_dir), "raw_dir": "", "output_dir": str(out)}
    client = mlflow.MlflowClient()
    project_run = client.create_run(mlflow.get_experiment_by_name("sf_ml").experiment_id)
    for key, value in parameters.items():
        client.log_param(project_run.info.run_id, key, shlex.quote(value))
    monkeypatch.setenv("MLFLOW_RUN_ID", project_run.info.run_id)
    done = CliRunner().invoke(cli, ["score", *[f"--{k.replace('_', '-')}={v}" for k, v in parameters.items()]])
    assert done.exit_code == 0, done.output
    assert f"alert list: {out / ALERT_LIST}" in done.output
    assert _bytes(out) == before
    assert json.loads(before[MANIFEST])["scored_at"] == first["scored_at"]
    second = client.get_run(project_run.info.run_id)
    assert second.info.status == "FINISHED" and second.data.tags["stage"] == "score"
    assert second.data.tags["features_digest"] == first["features_digest"]


def test_alert_report_opens_in_headless_chromium(spark, champion, features_dir, tmp_path):
    """The written report, opened from its file by Chromium: both levels, one company explained."""
    report_screenshot = report_screenshot_module()
    binary = report_screenshot.ui_check.chromium_binary()
    if binary is None:
        pytest.skip("no chromium installed (scripts/ci_services.sh installs it where it can)")
    out = tmp_path / "scores"
    _score(spark, features_dir, out, EARLY)
    alerts = json.loads((out / ALERT_LIST).read_text(encoding="utf-8"))
    levels = {level: sum(e["alert"] == level for e in alerts["alerts"]) for level in ("risque_fort", "risque_modere")}
    assert min(levels.values()) > 0, f"the fixture's month should have both levels: {levels}"
    result = report_screenshot.check_report(out, binary=binary)
    assert result.ok, result.missing
    assert {row.level for row in result.rows} == {"risque_fort", "risque_modere"}
    assert [h.split(" — ")[0] for h in result.headings] == ["Risque fort", "Risque modéré"]
    entry = next(e for e in alerts["alerts"] if e["top_features"] and e["top_features"][0]["value"] is not None)
    top = entry["top_features"][0]
    shown = next(row.text for row in result.rows if row.siren == entry["siren"])
    assert entry["siren"] in shown and top["unit"] and top["label"] != top["feature"]
    assert f"{top['label']}\u00a0: {format_value(top['value'], top['unit'])}" in shown, (top, shown)
    assert top["unit"] in shown


def test_refusals_write_nothing(spark, champion, features_dir, tmp_path):
    import mlflow

    out = tmp_path / "scores"
    with pytest.raises(ScoringError, match=r"no company in scope at 2031-01-01.*2018-01-01 to 2020-06-01"):
        _score(spark, features_dir, out, "2031-01-01")
    with pytest.raises(ScoringError, match="does not resolve"):
        _score(spark, features_dir, out, EARLY, f"models:/{MODEL}@no_such_alias")
    with pytest.raises(ScoringError, match="does not resolve"):
        _score(spark, features_dir, out, EARLY, "models:/no_such_model@champion")
    with pytest.raises(ScoringError, match="does not resolve"):
        _score(spark, features_dir, out, EARLY, f"models:/{MODEL}/999")
    with pytest.raises(ScoringError, match="is not models:/"):
        _score(spark, features_dir, out, EARLY, "runs:/abc/model")
    with pytest.raises(ScoringError, match="exactly one"):
        score_companies(f"models:/{MODEL}@champion", EARLY, out, spark=spark)
    with pytest.raises(ScoringError, match="explain must be one of alerts, all, not 'some'"):
        _score(spark, features_dir, out, EARLY, explain="some")
    narrow = pd.read_parquet(features_dir).drop(columns=["paydex", "dette_par_effectif_diff3m"])
    with pytest.raises(ScoringError, match=r"lack the model's column\(s\) \['paydex', 'dette_par_effectif_diff3m'\]"):
        _score(spark, write_features(narrow, tmp_path / "narrow"), out, EARLY)
    assert not out.exists() and not list(tmp_path.glob(".scores*"))
    failed = mlflow.search_runs(search_all_experiments=True, output_format="list",
                                filter_string="tags.stage = 'score' and attributes.status = 'FAILED'")
    assert len(failed) >= 6  # each refusal after the argument checks ends its run as FAILED


def test_later_scoring_logs_drift_against_the_previous_one(spark, champion, panel, features_dir, tmp_path):
    import mlflow

    client = mlflow.MlflowClient()
    first = _score(spark, features_dir, tmp_path / "may", LATE)
    # June's companies with a paydex shifted far up: paydex drifts, the other features do not.
    june = panel[panel["periode"] == LAST].copy()
    june["paydex"] = june["paydex"] + 60
    shifted = write_features(june, tmp_path / "june_features")
    second = _score(spark, shifted, tmp_path / "june", LAST)

    metrics = client.get_run(second["run_id"]).data.metrics
    previous = client.get_run(first["run_id"]).data.metrics
    assert "psi_max" in metrics and "psi.paydex" in metrics and "psi.effectif" in metrics
    assert metrics["psi.paydex"] > 0.25 and metrics["psi.effectif"] < 0.1
    assert metrics["psi_max"] == pytest.approx(max(v for k, v in metrics.items() if k.startswith("psi.")))
    assert metrics["alert_rate_change"] == pytest.approx(metrics["alert_rate"] - previous["alert_rate"])
    path = mlflow.artifacts.download_artifacts(run_id=second["run_id"], artifact_path="drift/psi.json",
                                               dst_path=str(tmp_path / "dl"))
    report = json.loads(Path(path).read_text())
    assert report["reference_run_id"] == first["run_id"] and report["reference_prediction_date"] == LATE.isoformat()
    assert report["psi"]["paydex"] == pytest.approx(metrics["psi.paydex"])
    assert client.get_run(second["run_id"]).data.tags["drift_reference_run_id"] == first["run_id"]
    # May compares with an earlier month (March, scored above), never with the later June.
    assert client.get_run(first["run_id"]).data.tags.get("drift_reference_run_id") != second["run_id"]


def test_cli_refusals_and_mlproject_entry_point(champion, features_dir, tmp_path):
    from click.testing import CliRunner
    from mlflow.projects._project_spec import load_project

    from sf_ml.cli import cli

    runner = CliRunner()
    both = runner.invoke(cli, ["score", "--prediction-date", "2020-01-01", "--features-dir", str(features_dir),
                               "--raw-dir", "x", "--output-dir", str(tmp_path / "nope")])
    assert both.exit_code == 2 and "exactly one" in both.output
    unknown = runner.invoke(cli, ["score", "--model-uri", f"models:/{MODEL}@nobody", "--prediction-date",
                                  "2020-01-01", "--features-dir", str(features_dir), "--output-dir",
                                  str(tmp_path / "nope")])
    assert unknown.exit_code == 2 and "does not resolve" in unknown.output
    assert not (tmp_path / "nope").exists()

    entry = load_project(str(ROOT)).get_entry_point("score")
    assert {"model_uri", "prediction_date", "features_dir", "raw_dir", "output_dir"} <= set(entry.parameters)
    command = entry.compute_command({"prediction_date": "2020-01-01", "features_dir": "data/features",
                                     "output_dir": "data/scores"}, str(tmp_path))
    assert "--raw-dir ''" in command and "--model-uri models:/sf_failure@champion" in command


def test_psi_matches_a_hand_computed_value():
    expected, actual = [0.25, 0.25, 0.5, 0.0], [0.5, 0.25, 0.25, 0.0]
    # (0.5-0.25)ln(2) + 0 + (0.25-0.5)ln(0.5) + 0 (empty in both) = 0.5 ln 2
    assert drift.psi(expected, actual) == pytest.approx(0.5 * math.log(2), rel=1e-12)
    assert drift.psi(expected, expected) == 0.0
    # An empty bin is floored at epsilon: (0.1 - 1e-4) ln(0.1 / 1e-4) + (0.9 - 1) ln(0.9)
    assert drift.psi([1.0, 0.0], [0.9, 0.1]) == pytest.approx(
        (0.1 - 1e-4) * math.log(0.1 / 1e-4) + (0.9 - 1.0) * math.log(0.9), rel=1e-12)
    with pytest.raises(ValueError, match="bins"):
        drift.psi([0.5, 0.5], [1.0])


def test_profile_bins_and_proportions_in_one_pass(spark):
    values = [float(v) for v in range(1, 11)] + [None, float("nan")] + [0.0] * 8
    frame = spark.createDataFrame([(v, 1) for v in values], "x double, flag int")
    result, _ = drift.profile(frame, ["x", "flag"], n_bins=4)
    x = result["features"]["x"]
    assert x["edges"] == sorted(set(x["edges"])) and 0.0 in x["edges"]
    assert sum(x["proportions"]) == pytest.approx(1.0) and len(x["proportions"]) == len(x["edges"]) + 2
    assert x["proportions"][-1] == pytest.approx(2 / 20)  # null and NaN are the missing bin
    counts = [0] * (len(x["edges"]) + 2)
    for v in values:
        counts[drift.bin_index(v, x["edges"])] += 1
    assert x["proportions"] == pytest.approx([c / 20 for c in counts])
    assert result["features"]["flag"] == {"edges": [1.0], "proportions": [1.0, 0.0, 0.0]}
    _, in_reference = drift.profile(frame, ["x"], n_bins=4, reference=result)
    assert drift.psi_by_feature(result, in_reference) == {"x": pytest.approx(0.0, abs=1e-12)}


def _month_of_features(panel, config, date=EARLY):
    from sf_ml.modeling import input_columns

    month = panel[panel["periode"] == date].sort_values("siren").reset_index(drop=True)
    return month, month[input_columns(config)]


def test_pyfunc_and_spark_clients_read_the_alert_list_probabilities(spark, champion, panel, features_dir, tmp_path):
    """What plain MLflow serves is what the alert list says: pyfunc on pandas, Spark flavor on Spark."""
    import mlflow.pyfunc
    import mlflow.spark

    _score(spark, features_dir, tmp_path / "scores", EARLY)
    scored = pd.read_parquet(tmp_path / "scores" / PREDICTIONS_PARQUET)
    month, inputs = _month_of_features(panel, champion["config"])
    assert list(month["siren"]) == list(scored["siren"])

    served = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    output = served.metadata.get_output_schema().to_dict()
    assert output == [{"type": "double", "name": "prediction", "required": True}]
    probabilities = np.asarray(served.predict(inputs), dtype=float)
    np.testing.assert_allclose(probabilities, scored["probability"], rtol=0, atol=1e-9)
    assert probabilities.mean() == pytest.approx(scored["probability"].mean(), abs=1e-12)

    frame = spark.createDataFrame(month[["siren", *inputs.columns]])
    model = mlflow.spark.load_model(f"models:/{MODEL}@champion")
    on_spark = model.transform(frame).select("siren", "prediction").toPandas().sort_values("siren")
    np.testing.assert_allclose(on_spark["prediction"], scored["probability"], rtol=0, atol=1e-9)


@pytest.mark.slow
def test_models_serve_answers_invocations_with_probabilities(champion, panel, features_dir, tmp_path):
    """``mlflow models serve -m models:/...@champion --env-manager local`` on 127.0.0.1, stopped by pid."""
    import os
    import signal
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from sf_ml.server import free_port

    month, inputs = _month_of_features(panel, champion["config"])
    expected = np.asarray(
        __import__("mlflow").pyfunc.load_model(f"models:/{MODEL}/{champion['version']}").predict(inputs.head(5)))
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": champion["uri"], "SPARK_LOCAL_IP": "127.0.0.1",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{MODEL}@champion", "--env-manager",
         "local", "-h", "127.0.0.1", "-p", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "serve.log", "w"), start_new_session=True)
    try:
        body = json.dumps({"dataframe_split": json.loads(inputs.head(5).to_json(orient="split", index=False))})
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body.encode(),
                                         headers={"Content-Type": "application/json"})
        deadline = time.monotonic() + 180
        while True:
            try:
                answer = json.loads(urllib.request.urlopen(request, timeout=120).read())
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the model server did not answer within 180 s"
                time.sleep(1)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    np.testing.assert_allclose(answer["predictions"], expected, rtol=0, atol=1e-9)
    assert all(0 < p < 1 for p in answer["predictions"])


def test_thresholds_are_checked_when_registered_and_when_scored(spark, champion, features_dir, tmp_path):
    import mlflow

    from sf_ml.registry import RegistryError, check_thresholds, register_model

    assert check_thresholds({"risque_fort": "0.4", "risque_modere": 0.2}, "x") == {
        "risque_fort": 0.4, "risque_modere": 0.2}
    for bad, message in (({"risque_fort": 0.2, "risque_modere": 0.4}, "below the risque_modere"),
                         ({"risque_fort": 1.0, "risque_modere": 0.4}, r"not probabilities in \(0, 1\)"),
                         ({"risque_fort": 0.5, "risque_modere": 0.0}, r"not probabilities in \(0, 1\)"),
                         ({"risque_fort": 0.5}, "no threshold_risque_modere")):
        with pytest.raises(RegistryError, match=message):
            check_thresholds(bad, "version 9")
    client = mlflow.MlflowClient()
    versions = len(client.search_model_versions(f"name = '{MODEL}'"))
    with pytest.raises(RegistryError, match="below the risque_modere"):
        register_model(champion["run_id"], "model", MODEL, None,
                       {"threshold_risque_fort": 0.1, "threshold_risque_modere": 0.3})
    assert len(client.search_model_versions(f"name = '{MODEL}'")) == versions  # nothing registered
    # A version whose tags were written around the check is refused at scoring, nothing written.
    source = client.get_model_version(MODEL, str(champion["version"])).source
    broken = client.create_model_version(MODEL, source, run_id=champion["run_id"],
                                         tags={"threshold_risque_fort": "0.1", "threshold_risque_modere": "0.3"})
    with pytest.raises(ScoringError, match=rf"version {broken.version}\): risque_fort threshold 0.1 is below"):
        _score(spark, features_dir, tmp_path / "out", EARLY, f"models:/{MODEL}/{broken.version}")
    assert not (tmp_path / "out").exists()
