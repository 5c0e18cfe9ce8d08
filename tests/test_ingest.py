"""Ingestion: reading CSV and parquet raw directories, validation against the contract, typing."""

from __future__ import annotations

import csv
import datetime as dt
import json
import logging
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sf_ml import contract
from sf_ml.contract import BOOL, DATE, FLOAT, INT, TABLES
from sf_ml.ingest import RawDataError, ValidationIssue, ingest, read_raw, typed_schema

D = dt.date


def _world() -> dict[str, list[dict]]:
    """A tiny valid world: three companies, typed Python values (ids as unpadded integers)."""
    dgfip = {name: None for name in contract.DGFIP_AMOUNT_COLUMNS}
    return {
        "sirene_etablissements": [
            dict(siren=12345678, siret=1234567800012, etablissementSiege=True,
                 codeCommuneEtablissement="75056", activitePrincipaleEtablissement="62.01Z"),
            dict(siren=12345678, siret=1234567800020, etablissementSiege=False,
                 codeCommuneEtablissement="2A004", activitePrincipaleEtablissement="62.01Z"),
            dict(siren=552100554, siret=55210055400013, etablissementSiege=True,
                 codeCommuneEtablissement="97105", activitePrincipaleEtablissement="29.10Z"),
            dict(siren=775672272, siret=77567227200016, etablissementSiege=True,
                 codeCommuneEtablissement="69123", activitePrincipaleEtablissement="47.11F"),
        ],
        "sirene_unites_legales": [
            dict(siren=12345678, categorieJuridiqueUniteLegale="5710", dateCreationUniteLegale=D(2001, 5, 3)),
            dict(siren=552100554, categorieJuridiqueUniteLegale="5499", dateCreationUniteLegale=D(1955, 1, 1)),
            dict(siren=775672272, categorieJuridiqueUniteLegale="5710", dateCreationUniteLegale=None),
        ],
        "sirene_etablissements_historique": [
            dict(siret=1234567800012, dateDebut=D(2001, 5, 3), dateFin=None, etatAdministratifEtablissement="A"),
            dict(siret=55210055400013, dateDebut=D(1955, 1, 1), dateFin=D(2021, 6, 1),
                 etatAdministratifEtablissement="A"),
            dict(siret=55210055400013, dateDebut=D(2021, 6, 1), dateFin=None, etatAdministratifEtablissement="F"),
        ],
        "urssaf_effectif": [
            dict(siren=12345678, periode=D(2020, 1, 1), effectif=12),
            dict(siren=12345678, periode=D(2020, 2, 1), effectif=13),
            dict(siren=552100554, periode=D(2020, 1, 1), effectif=250),
            dict(siren=775672272, periode=D(2020, 1, 1), effectif=0),
        ],
        "urssaf_cotisation": [
            dict(siret=1234567800012, numero_compte="117000001", periode_debut=D(2020, 1, 1),
                 periode_fin=D(2020, 2, 1), du=1500.5, encaisse=1500.5),
            dict(siret=55210055400013, numero_compte="117000002", periode_debut=D(2020, 1, 1),
                 periode_fin=D(2020, 4, 1), du=90000.0, encaisse=None),
        ],
        "urssaf_debit": [
            dict(siret=55210055400013, numero_compte="117000002", numero_ecart_negatif=101,
                 numero_historique=1, date_traitement=D(2020, 5, 2), periode_debut=D(2020, 1, 1),
                 periode_fin=D(2020, 4, 1), dette_sociale_ouvriere=1000.0, dette_sociale_patronale=2500.25,
                 etat_compte=1, code_procedure_collective="0"),
        ],
        "ap_demande": [
            dict(id_da="DA0001", siret=1234567800012, date_statut=D(2020, 3, 20), date_debut=D(2020, 3, 16),
                 date_fin=D(2020, 6, 30), hta=1200.0, eff_etab=10, motif_recours_se=1),
        ],
        "ap_consommation": [
            dict(id_da="DA0001", siret=1234567800012, periode=D(2020, 4, 1), heures=300.0, montant=2500.0,
                 effectif=8),
        ],
        "dgfip_bilans": [
            {**dgfip, "siren": 12345678, "date_debut_exercice": D(2019, 1, 1),
             "date_fin_exercice": D(2019, 12, 31), "date_depot": None, "mnt_af_ca": 1.0e6, "rto_6": -3.5},
        ],
        "altares_paydex": [
            dict(siren=552100554, date_valeur=D(2020, 2, 15), paydex=-2.0, nbr_fournisseurs=14,
                 encours_etudies=35000.0, fpi_30=12.5, fpi_90=0.0),
        ],
        "procedures_collectives": [
            dict(siren=552100554, date_jugement=D(2021, 6, 1), nature_jugement="4"),
        ],
    }


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _write_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> None:
    columns = columns or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_text(row.get(c)) for c in columns])


_ARROW = {contract.SIREN: pa.int64(), contract.SIRET: pa.int64(), DATE: pa.date32(), BOOL: pa.bool_(),
          INT: pa.int64(), FLOAT: pa.float64(), contract.STRING: pa.string()}


def _write_parquet(path: Path, table: str, rows: list[dict]) -> None:
    columns = TABLES[table].columns
    schema = pa.schema([(c.name, _ARROW[c.kind]) for c in columns] + [("extra_col", pa.string())])
    data = {c.name: [row.get(c.name) for row in rows] for c in columns}
    data["extra_col"] = ["x"] * len(rows)
    pq.write_table(pa.table(data, schema=schema), path)


def write_world(raw_dir: Path, fmt: str = "csv", optional=True, changes: dict | None = None) -> Path:
    """Write the tiny world to ``raw_dir``.

    ``optional`` is True (all optional tables), False (none) or the optional tables to write;
    ``changes`` maps a table to replacement rows (CSV only).
    """
    raw_dir.mkdir(parents=True, exist_ok=True)
    world = _world()
    world.update(changes or {})
    for name, rows in world.items():
        if not TABLES[name].required and not (optional is True or (optional and name in optional)):
            continue
        if fmt == "csv":
            columns = TABLES[name].column_names + ["unknown_extra"]
            _write_csv(raw_dir / f"{name}.csv", [{**r, "unknown_extra": "zz"} for r in rows], columns)
        else:
            _write_parquet(raw_dir / f"{name}.parquet", name, rows)
    return raw_dir


def _sorted_rows(frame) -> list[tuple]:
    return sorted((tuple(r) for r in frame.collect()), key=repr)


def _assert_rejected(spark, raw_dir: Path) -> RawDataError:
    """``ingest`` fails with RawDataError and leaves no output nor temporary directory behind."""
    parent = raw_dir.parent / "out"
    with pytest.raises(RawDataError) as info:
        ingest(raw_dir, parent / "typed", spark=spark)
    assert not parent.exists()
    return info.value


def _issue(error: RawDataError, file: str, column: str | None) -> ValidationIssue:
    matching = [i for i in error.errors if i.file == file and i.column == column]
    assert len(matching) == 1, error.errors
    return matching[0]


@pytest.fixture(scope="module", autouse=True)
def _no_adaptive_planning(spark):
    """No adaptive re-planning for these tiny frames (the session already evaluates plans
    interpreted): it costs more than it saves. Semantics are the same; restored after the module.
    """
    settings = {"spark.sql.adaptive.enabled": "false"}
    previous = {key: spark.conf.get(key, None) for key in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    yield
    for key, value in previous.items():
        if value is None:
            spark.conf.unset(key)
        else:
            spark.conf.set(key, value)


@pytest.fixture(scope="module")
def csv_world(spark, tmp_path_factory):
    """The full tiny world as CSV, read once: (raw_dir, {table: schema}, {table: sorted rows})."""
    raw = write_world(tmp_path_factory.mktemp("csv_world") / "raw")
    frames = read_raw(spark, raw)
    return raw, {n: f.schema for n, f in frames.items()}, {n: _sorted_rows(f) for n, f in frames.items()}


# ---------------------------------------------------------------------------------------------
# Valid input


def test_typed_schema_follows_contract():
    schema = typed_schema("urssaf_effectif")
    assert [(f.name, f.dataType.simpleString()) for f in schema.fields] == [
        ("siren", "string"), ("periode", "date"), ("effectif", "int"),
    ]
    assert typed_schema("sirene_etablissements")["etablissementSiege"].dataType.simpleString() == "boolean"
    assert typed_schema("altares_paydex")["fpi_30"].dataType.simpleString() == "double"


def test_valid_csv_reads_typed_padded_frames(csv_world):
    _, schemas, rows = csv_world
    assert set(schemas) == set(TABLES)
    for name, schema in schemas.items():
        assert schema == typed_schema(name), name
        assert schema.names == TABLES[name].column_names  # the extra CSV column is dropped

    etab = sorted(rows["sirene_etablissements"], key=lambda r: r[1])
    assert etab[0][:3] == ("012345678", "01234567800012", True)  # written 12345678 / 1234567800012
    assert etab[1][:3] == ("012345678", "01234567800020", False)
    assert etab[0][3] == "75056" and etab[1][3] == "2A004"
    ul = {r[0]: r for r in rows["sirene_unites_legales"]}
    assert ul["012345678"][2] == D(2001, 5, 3) and ul["775672272"][2] is None
    cot = {r[1]: r for r in rows["urssaf_cotisation"]}
    assert cot["117000001"][4] == 1500.5 and cot["117000002"][5] is None
    assert ("012345678", D(2020, 1, 1), 12) in rows["urssaf_effectif"]
    bilan = dict(zip(TABLES["dgfip_bilans"].column_names, rows["dgfip_bilans"][0]))
    assert bilan["rto_6"] == -3.5 and bilan["date_depot"] is None and bilan["mnt_af_bfonc_bfr"] is None


def test_absent_optional_table_is_a_warning(spark, tmp_path, caplog):
    raw = write_world(tmp_path / "raw", optional=False)
    with caplog.at_level(logging.WARNING, logger="sf_ml.ingest"):
        frames = read_raw(spark, raw, tables=["urssaf_effectif", "altares_paydex"])
    assert set(frames) == {"urssaf_effectif"}
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("altares_paydex" in m and "features will be null" in m for m in messages), messages


def test_lenient_text_forms_are_normalised(spark, tmp_path):
    raw = write_world(tmp_path / "raw", optional=False, changes={
        "sirene_etablissements": [
            dict(siren=" 12345678 ", siret="1234567800012", etablissementSiege="True",
                 codeCommuneEtablissement="75056", activitePrincipaleEtablissement="62.01Z"),
            dict(siren="552100554", siret="55210055400013", etablissementSiege="1",
                 codeCommuneEtablissement="97105", activitePrincipaleEtablissement="29.10Z"),
            dict(siren="552100554", siret="55210055400021", etablissementSiege="FALSE",
                 codeCommuneEtablissement="97105", activitePrincipaleEtablissement=" "),
        ],
        "urssaf_effectif": [dict(siren="12345678", periode="2020-01-01", effectif="12.0")],
    })
    frames = read_raw(spark, raw, tables=["sirene_etablissements", "urssaf_effectif"])
    assert set(frames) == {"sirene_etablissements", "urssaf_effectif"}
    etab = {r["siret"]: r for r in frames["sirene_etablissements"].collect()}
    assert etab["01234567800012"]["siren"] == "012345678"
    assert [etab[s]["etablissementSiege"] for s in sorted(etab)] == [True, True, False]
    assert etab["55210055400021"]["activitePrincipaleEtablissement"] is None
    assert frames["urssaf_effectif"].first()["effectif"] == 12


def test_guarded_trim_equals_trimming_every_value(spark):
    """The cheap guard of _trimmed_sql never skips a value that trimming would change."""
    from pyspark.sql import functions as F

    from sf_ml.ingest import _BLANKS, _trimmed_sql

    cores = ["", "1", "12", "a b", "\u00e9t\u00e9", "\x01", "!", "~", "\u009f", "\u00a1", "\uff00"]
    values = {c for c in cores}
    for blank in _BLANKS:
        for core in cores:
            values |= {blank + core, core + blank, blank + core + blank, blank * 2 + core + "\x01" + blank}
    frame = spark.createDataFrame([(v,) for v in sorted(values)], "text string")
    rows = frame.select(
        "text", F.expr(_trimmed_sql("text")).alias("guarded"), F.trim("text", F.lit(_BLANKS)).alias("full")
    ).collect()
    assert len(rows) == len(values) > 300
    assert [r["guarded"] for r in rows] == [r["full"] for r in rows]
    assert {r["text"]: r["guarded"] for r in rows}["\u00a012\u00a0"] == "12"


def test_sql_string_literals_round_trip(spark):
    """Expressions are compiled from SQL text: every literal must read back as the same string."""
    from sf_ml.ingest import _BLANKS
    from sf_ml.sqltext import string

    values = [
        "", "it's", "back\\slash", "\\u0041 stays text", _BLANKS, "\u00e9t\u00e9", "\U0001f600", "a\x00b", "%_",
    ]
    row = spark.sql("SELECT " + ", ".join(f"{string(v)} AS v{i}" for i, v in enumerate(values))).first()
    assert list(row) == values


def test_csv_and_parquet_inputs_give_identical_frames(spark, tmp_path, csv_world):
    _, schemas, rows = csv_world
    from_parquet = read_raw(spark, write_world(tmp_path / "parquet", fmt="parquet"))
    assert set(from_parquet) == set(TABLES)
    for name in TABLES:
        assert from_parquet[name].schema == schemas[name], name
        assert _sorted_rows(from_parquet[name]) == rows[name], name


def test_ingest_writes_typed_parquet_and_logs_to_active_run(spark, tmp_path, csv_world, tracking_uri):
    import mlflow

    raw, _, expected = csv_world
    (tmp_path / "raw").mkdir()
    for name in TABLES:  # the world without ap_demande
        if name != "ap_demande":
            (tmp_path / "raw" / f"{name}.csv").symlink_to(raw / f"{name}.csv")
    out = tmp_path / "typed"
    with mlflow.start_run() as run:
        counts = ingest(tmp_path / "raw", out, spark=spark)

    tables = set(TABLES) - {"ap_demande"}
    assert set(counts) == tables
    assert counts["sirene_etablissements"] == 4 and counts["urssaf_effectif"] == 4
    assert sorted(p.name for p in out.iterdir()) == sorted([*tables, "manifest.json"])
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == counts and manifest["absent_optional_tables"] == ["ap_demande"]
    assert manifest["sources"]["urssaf_effectif"]["file"] == "urssaf_effectif.csv"
    assert manifest["sources"]["urssaf_effectif"]["bytes"] == (raw / "urssaf_effectif.csv").stat().st_size
    assert len(manifest["sources"]["urssaf_effectif"]["sha256"]) == 64 and manifest["checks_passed"]
    assert all(name.split("/")[0] in tables for name in manifest["typed_files"])
    for name in tables:
        back = spark.read.parquet(str(out / name))
        assert back.schema == typed_schema(name), name
        assert _sorted_rows(back) == expected[name], name
    data = mlflow.get_run(run.info.run_id).data
    assert data.metrics["rows.urssaf_effectif"] == 4 and data.metrics["rows.dgfip_bilans"] == 1
    assert data.tags["ingest.absent_optional_tables"] == "ap_demande"

    # A Spark-written parquet directory is accepted as a raw table.
    raw2 = tmp_path / "raw2"
    raw2.mkdir()
    (out / "urssaf_cotisation").rename(raw2 / "urssaf_cotisation.parquet")
    again = read_raw(spark, raw2, tables=["urssaf_cotisation"])
    assert _sorted_rows(again["urssaf_cotisation"]) == expected["urssaf_cotisation"]


def test_read_raw_stages_typed_tables_for_the_caller(spark, tmp_path, csv_world, monkeypatch):
    raw, schemas, rows = csv_world
    stage = tmp_path / "stage"
    frames = read_raw(spark, raw, staging_dir=stage)
    assert sorted(p.name for p in stage.iterdir()) == sorted(TABLES)
    for name, frame in frames.items():
        assert frame.schema == schemas[name], name
        assert _sorted_rows(frame) == rows[name], name
        assert all(str(stage / name) in f for f in frame.inputFiles()), name  # staged parquet, not raw

    # Without a staging directory, the temporary one is removed, also when validation fails.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    read_raw(spark, raw, tables=["urssaf_effectif"])
    bad = write_world(tmp_path / "bad", optional=False, changes={
        "urssaf_effectif": [dict(siren="12345678", periode="2020-13-01", effectif=3)],
    })
    with pytest.raises(RawDataError, match="periode=2020-13-01"):
        read_raw(spark, bad, tables=["urssaf_effectif"])
    assert list(scratch.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# Bad input. One raw directory holds one bad-input kind per table; a single ingest must report
# them all, each naming file, column, row count and an example, and write nothing.


@pytest.fixture(scope="module")
def bad_world(spark, tmp_path_factory) -> RawDataError:
    world = _world()
    etab = [dict(r) for r in world["sirene_etablissements"]]
    etab[1]["etablissementSiege"] = True  # siren 012345678 gets two head offices
    effectif = [dict(r) for r in world["urssaf_effectif"]]
    effectif[1]["periode"] = "01/02/2020"
    effectif[2]["periode"] = "2020-02-30"
    effectif.append(dict(siren="012345678", periode=D(2020, 1, 1), effectif=14))  # = row 0 once padded
    cotisation = [dict(r) for r in world["urssaf_cotisation"]]
    cotisation[0]["encaisse"] = "1 500,50"
    cotisation[1]["du"] = -12.5
    debit = [dict(r) for r in world["urssaf_debit"]]
    debit[0]["siret"] = "5521OO55400013"
    history = [dict(r) for r in world["sirene_etablissements_historique"]]
    history[0]["siret"] = "123456789012345"
    paydex = [dict(r) for r in world["altares_paydex"]]
    paydex[0]["fpi_90"] = 100.5
    raw = write_world(tmp_path_factory.mktemp("bad") / "raw", changes={
        "sirene_etablissements": etab, "urssaf_effectif": effectif, "urssaf_cotisation": cotisation,
        "urssaf_debit": debit, "sirene_etablissements_historique": history, "altares_paydex": paydex,
    })
    columns = TABLES["sirene_unites_legales"].column_names
    _write_csv(raw / "sirene_unites_legales.csv", world["sirene_unites_legales"],
               [c for c in columns if c != "categorieJuridiqueUniteLegale"])
    _write_csv(raw / "procedures_collectives.csv", [], TABLES["procedures_collectives"].column_names)
    _write_parquet(raw / "ap_consommation.parquet", "ap_consommation", world["ap_consommation"])
    (raw / "ap_demande.csv").unlink()
    demande = [dict(r) for r in world["ap_demande"]]
    demande[0]["siret"] = -5
    _write_parquet(raw / "ap_demande.parquet", "ap_demande", demande)
    return _assert_rejected(spark, raw)


def test_all_issues_are_reported_together(bad_world):
    found = sorted((i.file, i.column or "") for i in bad_world.errors)
    assert found == sorted([
        ("sirene_etablissements.csv", "etablissementSiege"),
        ("sirene_unites_legales.csv", "categorieJuridiqueUniteLegale"),
        ("sirene_etablissements_historique.csv", "siret"),
        ("urssaf_effectif.csv", "periode"),
        ("urssaf_effectif.csv", "siren, periode"),
        ("urssaf_cotisation.csv", "du"),
        ("urssaf_cotisation.csv", "encaisse"),
        ("urssaf_debit.csv", "siret"),
        ("ap_demande.parquet", "siret"),
        ("ap_consommation.csv", ""),
        ("altares_paydex.csv", "fpi_90"),
        ("procedures_collectives.csv", ""),
    ])
    assert str(bad_world).count("\n  - ") == len(bad_world.errors)


def test_missing_required_column(bad_world):
    issue = _issue(bad_world, "sirene_unites_legales.csv", "categorieJuridiqueUniteLegale")
    assert issue.count == 3 and "missing" in issue.problem
    assert ("sirene_unites_legales.csv, column 'categorieJuridiqueUniteLegale': "
            "required column missing (3 rows)") in str(bad_world)


def test_unparsable_date(bad_world):
    issue = _issue(bad_world, "urssaf_effectif.csv", "periode")
    assert issue.count == 2 and "ISO" in issue.problem
    assert "periode=01/02/2020" in issue.example or "periode=2020-02-30" in issue.example
    assert f"urssaf_effectif.csv, column 'periode': {issue.problem} (2 rows); example: siren=" in str(bad_world)


def test_identifier_with_non_digit_characters(bad_world):
    issue = _issue(bad_world, "urssaf_debit.csv", "siret")
    assert issue.count == 1 and "non-digit" in issue.problem
    assert "siret=5521OO55400013" in issue.example
    assert "urssaf_debit.csv, column 'siret'" in str(bad_world) and "(1 row)" in str(bad_world)


def test_identifier_longer_than_its_width(bad_world):
    issue = _issue(bad_world, "sirene_etablissements_historique.csv", "siret")
    assert issue.count == 1 and "longer than 14" in issue.problem
    assert issue.example.startswith("siret=123456789012345, dateDebut=2001-05-03")


def test_parquet_identifier_not_digits(bad_world):
    issue = _issue(bad_world, "ap_demande.parquet", "siret")
    assert issue.count == 1 and "siret=-5" in issue.example


def test_negative_amount(bad_world):
    issue = _issue(bad_world, "urssaf_cotisation.csv", "du")
    assert issue.count == 1 and ">= 0" in issue.problem and "du=-12.5" in issue.example
    assert "urssaf_cotisation.csv, column 'du'" in str(bad_world)


def test_not_a_number(bad_world):
    issue = _issue(bad_world, "urssaf_cotisation.csv", "encaisse")
    assert issue.count == 1 and "encaisse=1 500,50" in issue.example


def test_out_of_bounds(bad_world):
    issue = _issue(bad_world, "altares_paydex.csv", "fpi_90")
    assert issue.count == 1 and "[0, 100]" in issue.problem and "fpi_90=100.5" in issue.example


def test_duplicate_key_after_padding(bad_world):
    issue = _issue(bad_world, "urssaf_effectif.csv", "siren, periode")
    assert issue.count == 2 and "duplicate" in issue.problem
    assert issue.example == "siren=012345678, periode=2020-01-01"
    assert "urssaf_effectif.csv, column 'siren, periode'" in str(bad_world)


def test_empty_required_table(bad_world):
    _issue(bad_world, "procedures_collectives.csv", None)
    assert "procedures_collectives.csv: required table is empty (0 rows)" in str(bad_world)


def test_head_office_not_unique(bad_world):
    issue = _issue(bad_world, "sirene_etablissements.csv", "etablissementSiege")
    assert issue.count == 2 and issue.example == "siren=012345678, head_offices=2"


def test_csv_and_parquet_both_present(bad_world):
    issue = _issue(bad_world, "ap_consommation.csv", None)
    assert "both ap_consommation.csv and ap_consommation.parquet" in issue.problem


def test_missing_required_file(spark, tmp_path):
    raw = write_world(tmp_path / "raw", optional=False)
    (raw / "urssaf_cotisation.csv").unlink()
    error = _assert_rejected(spark, raw)
    assert len(error.errors) == 1
    assert "urssaf_cotisation.csv: required table missing" in str(error)


def test_missing_raw_dir(spark, tmp_path):
    error = _assert_rejected(spark, tmp_path / "nowhere")
    assert "nowhere" in str(error) and "does not exist" in str(error)


def test_unknown_table_name_is_a_programming_error(spark, tmp_path):
    with pytest.raises(KeyError):
        read_raw(spark, tmp_path, tables=["nope"])
