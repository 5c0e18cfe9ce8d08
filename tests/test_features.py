"""build_features on generated worlds: truncation invariance, outputs, logging (real Spark/MLflow)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from sf_ml.config import AGGREGATIONS, load_config
from sf_ml.contract import TABLES
from sf_ml.panel import TARGET, build_panel

# The date column that dates each record, per table (records dated on or after T are dropped).
RECORD_DATES = {
    "urssaf_effectif": "periode",
    "urssaf_cotisation": "periode_debut",
    "urssaf_debit": "date_traitement",
    "ap_demande": "date_statut",
    "ap_consommation": "periode",
    "altares_paydex": "date_valeur",
    "procedures_collectives": "date_jugement",
}


@pytest.fixture(scope="module")
def raw_world(tmp_path_factory):
    from sf_ml.generate import generate_world

    path = tmp_path_factory.mktemp("world") / "raw"
    generate_world(path, n_companies=400, start="2014-01-01", end="2023-12-31", seed=11)
    return path


def truncate_world(raw_dir: Path, cutoff: str, target: Path) -> Path:
    """Copy a CSV world keeping only records dated strictly before ``cutoff``."""
    target.mkdir(parents=True)
    for name in TABLES:
        source = raw_dir / f"{name}.csv"
        if not source.exists():
            continue
        frame = pd.read_csv(source, dtype=str, keep_default_na=False)
        if name in RECORD_DATES:
            frame = frame[frame[RECORD_DATES[name]] < cutoff]
        elif name == "dgfip_bilans":
            fin = pd.to_datetime(frame["date_fin_exercice"])
            depot = pd.to_datetime(frame["date_depot"].replace("", None)).fillna(fin + pd.DateOffset(months=4))
            frame = frame[depot < pd.Timestamp(cutoff)]
        frame.to_csv(target / f"{name}.csv", index=False)
    return target


def test_truncation_invariance(spark, raw_world, tmp_path):
    """Deleting every record dated on or after T changes no feature of periode T."""
    from sf_ml.ingest import read_raw

    # Every aggregation kind: waterfall's and xgboost_history's long-history windows.
    aggregations = load_config("waterfall").features.time_aggregation
    for kind, spec in load_config("xgboost_history").features.time_aggregation.items():
        for variable, months in spec.items():
            merged = aggregations.setdefault(kind, {}).setdefault(variable, [])
            merged += [m for m in months if m not in merged]
    assert set(aggregations) == set(AGGREGATIONS)
    cutoffs = ["2019-01-01", "2020-07-01"]

    def panel_rows(tables, start, end):
        panel = build_panel(tables, start, end, aggregations,
                            labels_until="2023-12-31", missing_indicators=True)
        return panel.drop(TARGET).toPandas()

    # The full world is typed and built once, over both cutoffs: the rows of a periode do not
    # depend on the range built around it.
    full_tables = read_raw(spark, raw_world, staging_dir=tmp_path / "typed-full")
    full_panel = panel_rows(full_tables, cutoffs[0], cutoffs[-1])
    for cutoff in cutoffs:
        truncated = truncate_world(raw_world, cutoff, tmp_path / f"cut-{cutoff}")
        cut_tables = read_raw(spark, truncated, staging_dir=tmp_path / f"typed-{cutoff}")
        cut = panel_rows(cut_tables, cutoff, cutoff).sort_values("siren").reset_index(drop=True)
        full = full_panel[full_panel["periode"] == dt.date.fromisoformat(cutoff)]
        full = full.sort_values("siren").reset_index(drop=True)
        assert len(full) > 100
        pd.testing.assert_frame_equal(full, cut, check_exact=False, rtol=1e-9)


def test_build_features_writes_partitioned_panel_and_logs_run(spark, raw_world, tmp_path, tracking_uri):
    import mlflow

    from sf_ml.generate import _measure_positive_rate

    from sf_ml.features import build_features
    from sf_ml.tracking import stage_run

    out = tmp_path / "features"
    config = load_config("standard")
    with stage_run("build_features", {"raw_dir": str(raw_world)}, config.to_dict()) as run:
        summary = build_features(raw_world, out, config, start="2017-01-01", end="2022-12-01", spark=spark)
    assert summary["periodes"] == 72
    assert 0.01 < summary["positive_rate"] < 0.10
    partitions = sorted(p.name for p in out.iterdir() if p.name.startswith("periode="))
    assert partitions[0] == "periode=2017-01-01" and len(partitions) == 72
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging left
    panel = spark.read.parquet(str(out))
    assert dict(panel.dtypes)["periode"] == "date"
    assert "dette_sociale_patronale_lag12m" in panel.columns
    assert panel.groupBy("siren", "periode").count().where("count > 1").count() == 0
    # judgments are known to the latest one (end of 2023): 2022-12 + 18 months lies beyond
    labelled = {r.periode: r.n for r in panel.groupBy("periode").agg(F.count(TARGET).alias("n")).collect()}
    assert labelled[dt.date(2022, 12, 1)] == 0 and labelled[dt.date(2021, 6, 1)] > 0
    # One scope rule (contract.SCOPE): the generator's NumPy rate check counts exactly these rows.
    counts = panel.agg(F.count(TARGET).alias("samples"), F.sum(TARGET).alias("positives")).first()
    measured = _measure_positive_rate(raw_world, "2017-01-01", "2022-12-01")
    assert (measured["samples"], measured["positives"]) == (counts["samples"], counts["positives"])

    logged = mlflow.get_run(run.info.run_id)
    assert logged.data.metrics["rows"] == summary["rows"]
    assert "null_rate.paydex" in logged.data.metrics
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert {"periode_profile.png", "periode_profile.json", "null_rates.json", "config.json"} <= artifacts
    assert logged.inputs.dataset_inputs[0].dataset.name == f"features:{out.name}"
    # Source, digest and schema only: no profile, whose approximate count is a job over every row.
    assert not logged.inputs.dataset_inputs[0].dataset.profile


def test_build_features_bad_raw_dir_writes_nothing(spark, raw_world, tmp_path):
    from sf_ml.features import build_features
    from sf_ml.ingest import RawDataError

    broken = truncate_world(raw_world, "2030-01-01", tmp_path / "broken")
    frame = pd.read_csv(broken / "urssaf_effectif.csv", dtype=str)
    frame.loc[3, "periode"] = "2020-13-45"
    frame.to_csv(broken / "urssaf_effectif.csv", index=False)
    out = tmp_path / "features"
    with pytest.raises(RawDataError, match="urssaf_effectif.csv") as error:
        build_features(broken, out, load_config("standard"), start="2018-01-01", end="2018-03-01", spark=spark)
    assert "2020-13-45" in str(error.value)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging nor scratch left


def test_typed_directory_builds_the_raw_panel_and_refuses_tampering(spark, raw_world, tmp_path):
    """Validate once, build many: ingest's typed directory gives exactly the raw directory's panel;
    a typed directory without its manifest, or with a changed file, is refused and nothing written."""
    import shutil

    from sf_ml.features import build_features
    from sf_ml.ingest import ingest
    from sf_ml.manifest import MANIFEST, TypedDataError, export_unchanged

    config = load_config("xgboost_history")
    typed = tmp_path / "typed"
    ingest(raw_world, typed, spark=spark)
    assert export_unchanged(raw_world, typed)
    window = dict(start="2019-06-01", end="2019-09-01", labels_until="2023-12-31", spark=spark)
    build_features(raw_world, tmp_path / "from_raw", config, **window)
    build_features(typed, tmp_path / "from_typed", config, **window)

    def read(path):
        frame = spark.read.parquet(str(path)).toPandas()
        return frame.sort_values(["periode", "siren"]).reset_index(drop=True)

    from_raw, from_typed = read(tmp_path / "from_raw"), read(tmp_path / "from_typed")
    assert len(from_raw) > 500 and len(from_raw.columns) > 60
    pd.testing.assert_frame_equal(from_raw, from_typed[from_raw.columns], check_exact=True)

    out = tmp_path / "refused"
    manifest_less = tmp_path / "manifest_less"
    shutil.copytree(typed, manifest_less)
    (manifest_less / MANIFEST).unlink()
    with pytest.raises(TypedDataError, match=f"no readable {MANIFEST}.*not written by sf-ml ingest"):
        build_features(manifest_less, out, config, **window)
    tampered = tmp_path / "tampered"
    shutil.copytree(typed, tampered)
    part = next((tampered / "urssaf_debit").glob("*.parquet"))
    table = pd.read_parquet(part)
    table.iloc[1:].to_parquet(part, index=False)  # one debt line gone
    with pytest.raises(TypedDataError, match=r"1 file\(s\) changed, 0 missing, 0 added.*changed: urssaf_debit/"):
        build_features(tampered, out, config, **window)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]

    changed_export = tmp_path / "export"
    shutil.copytree(raw_world, changed_export)
    with (changed_export / "urssaf_effectif.csv").open("a") as handle:
        handle.write("")  # same bytes: still the same export
    assert export_unchanged(changed_export, typed)
    lines = (changed_export / "urssaf_effectif.csv").read_text().splitlines()
    (changed_export / "urssaf_effectif.csv").write_text("\n".join(lines[:-1]) + "\n")
    assert not export_unchanged(changed_export, typed)
