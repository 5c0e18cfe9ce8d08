"""The cheap typing of ingestion (sf_ml.ingest._typed) equals the reference reading on edge cases."""

from __future__ import annotations

import functools
import itertools
import logging
import operator
import math
import re

import pytest

from sf_ml import contract, ingest
from sf_ml.column_types import COLUMN_TYPES
from sf_ml.contract import BOOL, DATE, FLOAT, INT, SIREN, SIRET, STRING, TABLES, Column
from test_ingest import _no_adaptive_planning, write_world  # noqa: F401 - autouse fixture: tiny frames

CORES = [
    # numbers
    "0", "12", "012", "0012", "+5", "-3", "-0", "+0", "1e3", "1E-2", "1e+2", "12.0", "12.00", "12.", ".5",
    "5.", "12.5", "-12.5", "1.2.3", "1d", "1f", "1D", "1F", "0x1p3", "0X1P3", "+0x1p3", "0x10", "Infinity",
    "-Infinity", "+Infinity", "inf", "-inf", "Inf", "NaN", "nan", "-NaN", "+nan", "1,5", "1 500,50", "1_0",
    "\u0661\u0662", "\uff11\uff12", "2147483647", "2147483648", "-2147483648", "-2147483649", "1e400",
    "-1e400", "4.9e-324", "1e-400", "e3", ".", "+", "-", "+-1", "--1", "1-", "1e", "1e+", "12a", "a12",
    # dates
    "2020-01-01", "2020-1-1", "2020-01-1", "2020-1-01", "20200-01-01", "2020-02-30", "2020-02-29",
    "2019-02-29", "2020-13-01", "2020-00-10", "2020-01-00", "2020-01-1T", "2020-01-1 ", "2020-1T-01",
    "02020-1-01", "+2020-01-01", "-2020-01-01", "2020-01-01T", "2020-01-01T10:00", "2020-01-01 10:00",
    "0000-01-01", "0001-01-01", "0999-12-31", "9999-12-31", "2020/01/01", "01/02/2020", "2020-01-0a",
    "202a-01-01", "2020-01-01Z", "2020-01--1", "2020--1-01", "2020-0101", "2020", "2020-01",
    # booleans
    "true", "false", "TRUE", "True", "FALSE", "1", "yes", "t",
    # identifiers
    "123456789", "12345678", "1234567890", "12345678901234", "123456789012345", "1234567800012",
    "5521OO554", "55210055400013", "-5", "12345678.0", "1.2345678e8", "0x1234567",
    # text
    "", "a b", "x", "\u00e9", "62.01Z", "2A004",
]
WRAPPERS = [
    "{}", " {}", "{} ", "  {}  ", "\u00a0{}", "{}\u00a0", "\ufeff{}", "\t{}\n", "\r{}\x0b", "\f{}",
    "\x01{}", "{}\x01", "\x1c{}", "{}\x1f", "{}\u2003", "\u3000{}", "{}\x00",
]
KINDS = [SIREN, SIRET, DATE, BOOL, INT, FLOAT, STRING]


def _corpus() -> list[str | None]:
    values = {w.format(c) for c, w in itertools.product(CORES, WRAPPERS)}
    return [None] + sorted(values)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("ansi", ["true", "false"])
def test_fast_typing_equals_detailed_typing(spark, ansi):
    from pyspark.sql import functions as F

    values = _corpus()
    assert len(values) > 2000
    columns = [Column(f"v_{kind}", kind) for kind in KINDS]
    raw = spark.createDataFrame([(v,) for v in values], "raw string")
    texts = raw.select("raw", *[ingest._text("raw").alias(c.name) for c in columns])
    def comparable(value, kind):  # year 0 and 5-digit years have no Python date: compare day numbers
        return F.unix_date(value) if kind == DATE else value

    typed = texts.select(
        "raw",
        *[comparable(ingest._typed(c), c.kind).alias(f"fast_{c.kind}") for c in columns],
        *[comparable(ingest._typed(c, "reference"), c.kind).alias(f"ref_{c.kind}") for c in columns],
    )
    previous = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", ansi)
    try:
        rows = typed.collect()
    finally:
        spark.conf.set("spark.sql.ansi.enabled", previous)
    assert len(rows) == len(values)
    differences = [
        (row["raw"], kind, row[f"fast_{kind}"], row[f"ref_{kind}"])
        for row in rows for kind in KINDS if not _same(row[f"fast_{kind}"], row[f"ref_{kind}"])
    ]
    assert differences == []
    # The corpus reaches both sides of every kind.
    for kind in KINDS:
        assert any(row[f"ref_{kind}"] is not None for row in rows), kind
        assert any(row[f"ref_{kind}"] is None and row["raw"] for row in rows), kind
    by_raw = {row["raw"]: row for row in rows}
    assert by_raw["\u00a012"]["fast_int"] == by_raw["  12  "]["fast_int"] == 12 and by_raw["12.0"]["fast_int"] == 12
    assert by_raw["1d"]["fast_float"] is None and by_raw["0x1p3"]["fast_float"] is None
    assert by_raw["NaN"]["fast_float"] is None and by_raw[" 1e3"]["fast_float"] == 1000.0
    assert by_raw["2020-01-01 "]["fast_date"] == 18262 and by_raw["20200-01-01"]["fast_date"] is None
    assert by_raw["12345678"]["fast_siren"] == "012345678" and by_raw["\u0661\u0662"]["fast_int"] is None


@pytest.mark.parametrize("ansi", ["true", "false"])
def test_printable_text_and_typing_equal_the_reference_on_printable_ascii(spark, ansi):
    """The native path's cheaper text and identifier typing equal the reference reading on the
    values its byte scan lets through (printable ASCII; line ends never are inside a value)."""
    from pyspark.sql import functions as F

    values = [v for v in _corpus() if v is None or not (_forbidden(v, set()) or "\n" in v or "\r" in v)]
    assert len(values) > 300
    columns = [Column(f"v_{kind}", kind) for kind in (SIREN, SIRET, STRING, BOOL)]
    raw = spark.createDataFrame([(v,) for v in values], "raw string")
    native = raw.select(*[F.expr(ingest._printable_text_sql("raw")).alias(c.name) for c in columns]).select(
        *[F.expr(ingest._typed_sql(c, printable=True)).alias(c.kind) for c in columns]
    )
    reference = raw.select(*[ingest._text("raw").alias(c.name) for c in columns]).select(
        *[ingest._typed(c, "reference").alias(c.kind) for c in columns]
    )
    previous = spark.conf.get("spark.sql.ansi.enabled")
    spark.conf.set("spark.sql.ansi.enabled", ansi)
    try:
        native_rows, reference_rows = native.collect(), reference.collect()
    finally:
        spark.conf.set("spark.sql.ansi.enabled", previous)
    assert len(native_rows) == len(reference_rows) == len(values)
    differences = [(v, n, r) for v, n, r in zip(values, native_rows, reference_rows) if n != r]
    assert differences == []
    for c in columns:  # both sides of every kind are reached
        assert any(r[c.kind] is not None for r in reference_rows) and any(r[c.kind] is None for r in reference_rows)
    by_raw = dict(zip(values, native_rows))
    assert by_raw["  12345678  "][SIREN] == "012345678" and by_raw["12345678 "][SIRET] == "00000012345678"
    assert by_raw["  a b  "][STRING] == "a b" and by_raw["12345678.0"][SIREN] is None and by_raw["-5"][SIREN] is None


def _corpus_world(tmp_path, values: list[str], by_kind: dict[str, list[str]] | None = None):
    """A raw directory whose ap_demande and sirene_etablissements hold ``values`` in every column.

    With ``by_kind``, row i of a column of kind K holds ``by_kind[K][i % len(by_kind[K])]``.
    """
    import csv

    raw = tmp_path / "raw"
    raw.mkdir(parents=True)
    for name in ("ap_demande", "sirene_etablissements"):
        table = TABLES[name]
        with (raw / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(table.column_names + ["odd, extra \"col\""])
            for i, value in enumerate(values):
                row = [value] * len(table.columns)
                if by_kind:
                    row = [by_kind[c.kind][i % len(by_kind[c.kind])] for c in table.columns]
                row[0] = str(10**8 + i)  # a valid, unique key (id_da / siren)
                if name == "sirene_etablissements":
                    row[1] = f"{10**8 + i}{i % 100000:05d}"
                    row[2] = "true"
                writer.writerow(row + ["zz"])
    return raw


def _read(spark, raw, staging, reading="auto"):
    try:
        frames = ingest.read_raw(
            spark, raw, tables=["ap_demande", "sirene_etablissements"], staging_dir=staging, reading=reading
        )
        return {name: sorted(map(tuple, frame.collect()), key=repr) for name, frame in frames.items()}, None
    except ingest.RawDataError as error:
        return None, error.errors


def test_fast_and_detailed_readings_give_the_same_frames_and_issues(spark, tmp_path):
    bad = sorted({w.format(c) for c, w in itertools.product(CORES, WRAPPERS[:3])})
    good = {
        SIRET: ["1234567800012", " 55210055400013", "\u00a000000000000001\t", ""],
        DATE: ["2020-01-01", " 2020-02-29", "\ufeff1999-12-31\u00a0", "", "0999-01-01"],
        FLOAT: ["1.5", " 1e3", "+.5\u00a0", "NaN", "", "0", "12.", "nan"],
        INT: ["12", " 12.0", "+5", "0", "", "7.", "\t003 "],
        STRING: ["DA1", " x y ", ""],
        SIREN: ["1"], BOOL: ["true"],
    }
    for label, values, by_kind in (("bad", bad, None), ("good", list(range(40)), good)):
        raw = _corpus_world(tmp_path / label, values, by_kind)
        fast = _read(spark, raw, tmp_path / label / "fast")
        detailed = _read(spark, raw, tmp_path / label / "detailed", reading="reference")
        assert fast == detailed, label
        if label == "good":
            assert fast[0] is not None and len(fast[0]["ap_demande"]) == 40
        else:
            assert fast[1] is not None and {i.column for i in fast[1]} >= {"siret", "date_statut", "hta", "eff_etab"}


def test_concurrent_tables_report_issues_in_contract_order(spark, tmp_path, monkeypatch):
    raw = write_world(tmp_path / "raw", changes={
        "sirene_unites_legales": [dict(siren="12x", categorieJuridiqueUniteLegale="5710",
                                       dateCreationUniteLegale="2001-05-03")],
        "urssaf_effectif": [dict(siren="12345678", periode="2020-13-01", effectif=3)],
        "dgfip_bilans": [{**{n: None for n in contract.DGFIP_AMOUNT_COLUMNS}, "siren": 1,
                          "date_debut_exercice": "x", "date_fin_exercice": "2019-12-31", "mnt_af_ca": "1d"}],
        "procedures_collectives": [dict(siren=552100554, date_jugement="2021-6-1", nature_jugement="4")],
    })
    expected = [
        ("sirene_unites_legales.csv", "siren"), ("urssaf_effectif.csv", "periode"),
        ("dgfip_bilans.csv", "date_debut_exercice"), ("dgfip_bilans.csv", "mnt_af_ca"),
        ("procedures_collectives.csv", "date_jugement"),
    ]
    for _ in range(2):  # completion order varies between runs, the report does not
        with pytest.raises(ingest.RawDataError) as info:
            ingest.read_raw(spark, raw)
        assert [(i.file, i.column) for i in info.value.errors] == expected

    # An unexpected error in one table is raised once the others are done; ingest writes nothing.
    original, seen = ingest._load_and_check, []

    def failing(spark_, table, path, target, reading):
        if table.name == "urssaf_debit":
            raise RuntimeError("boom")
        seen.append(table.name)
        return original(spark_, table, path, target, reading)

    monkeypatch.setattr(ingest, "_load_and_check", failing)
    with pytest.raises(RuntimeError, match="boom"):
        ingest.ingest(raw, tmp_path / "out" / "typed", spark=spark)
    assert sorted(seen) == sorted(set(TABLES) - {"urssaf_debit"})
    assert not (tmp_path / "out").exists()


def test_every_contract_kind_has_one_column_type():
    """Each kind of the contract has its one type object, which the typed schema follows."""
    kinds = {c.kind for table in TABLES.values() for c in table.columns}
    assert kinds == set(COLUMN_TYPES) == set(KINDS)
    assert {kind for kind, column_type in COLUMN_TYPES.items() if column_type.native} == {DATE, INT, FLOAT}
    for name in TABLES:
        assert [f.dataType for f in ingest.typed_schema(name)] == [COLUMN_TYPES[c.kind].spark_type for c in TABLES[name].columns]


def test_an_unknown_reading_is_refused_and_nothing_written(spark, tmp_path):
    raw = write_world(tmp_path / "raw")
    with pytest.raises(ValueError, match="unknown reading 'fast': expected one of auto, native, guarded, reference"):
        ingest.ingest(raw, tmp_path / "out" / "typed", spark=spark, reading="fast")
    assert not (tmp_path / "out").exists()


def _forbidden(value: str, kinds) -> bool:
    """Whether ``value`` holds a byte that keeps a CSV file off the native parse."""
    return bool(value.encode("utf-8").translate(None, ingest._allowed_bytes(kinds)))


def test_forbidden_bytes_are_exactly_those_of_the_unsafe_characters():
    everything = [chr(c) for c in range(0x3000)] + ["\U0001f600", "\U0010fffd"]
    for kinds, letters in [({INT}, ""), ({FLOAT}, "dDfFxX"), ({DATE}, "+"), ({INT, FLOAT, DATE}, "dDfFxX+")]:
        # Line ends are not in a line's characters: both CSV readings split lines on them.
        expected = {c for c in everything if not 0x20 <= ord(c) <= 0x7E} - {"\n", "\r"} | set(letters)
        assert {c for c in everything if _forbidden(c, kinds)} == expected, kinds


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_forbidden_bytes_are_looked_for_after_the_header_line_only(tmp_path, ending):
    """The header's letters are allowed (column names); any line after it is scanned to the end."""
    path = tmp_path / "t.csv"
    clean = ["siren,periode,du", "000000001,2020-01-01,12.5", "000000002,2020-02-01,3"]
    header_bytes = len(clean[0] + ending)
    path.write_bytes(ending.join(clean).encode() + ending.encode())
    assert not ingest._has_forbidden_bytes(path, header_bytes, {DATE, FLOAT})
    for bad in ["1d", "+2020-01-01", "\u0663", "1\t", "\u00a012"]:
        path.write_bytes(ending.join([*clean, "0" * 9 + ",2020-03-01," + bad]).encode())
        assert ingest._has_forbidden_bytes(path, header_bytes, {DATE, FLOAT}), bad
    # Without floats and dates, the letters and the sign of their spellings are allowed.
    path.write_bytes(ending.join([*clean, "0" * 9 + ",+2020-03-01,1d"]).encode())
    assert not ingest._has_forbidden_bytes(path, header_bytes, {INT})


@pytest.mark.parametrize("kind", [INT, FLOAT, DATE])
def test_native_parse_agrees_with_the_reference_reading_on_clean_files(spark, tmp_path, kind):
    """On the bytes the scan lets through, a native value is flagged or the reference one."""
    import csv

    from pyspark.sql import functions as F

    # Blank lines are skipped by the CSV reader (both readings).
    values = [v for v in _corpus() if v and v.strip() and not _forbidden(v, {kind})]
    assert len(values) > 150
    path = tmp_path / "t.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["v"])
        writer.writerows([v] for v in values)
    table = contract.Table("t", (Column("v", kind),))

    native = ingest._native_frame(spark, table, path, ["v"], {"v": 0})
    flagged = functools.reduce(operator.or_, [F.coalesce(F.expr(f), F.lit(False)) for f in ingest._suspicious_flags(table)])
    # Dates as text: a native date may lie before year 1 (flagged), out of Python's range.
    as_text = (lambda c: c.cast("string")) if kind == DATE else (lambda c: c)
    native_rows = native.select(as_text(ingest._value("v")).alias("value"), flagged.alias("flagged")).collect()
    source, _ = ingest._read_source(spark, path)
    text = source.select(ingest._text("v").alias("v"))
    reference = [row[0] for row in text.select(as_text(ingest._typed(Column("v", kind)))).collect()]

    assert len(native_rows) == len(reference) == len(values)
    differing = [(v, n.value, r) for v, n, r in zip(values, native_rows, reference) if not n.flagged and not _same(n.value, r)]
    assert differing == []
    accepted = [n for n in native_rows if not n.flagged and n.value is not None]
    assert len(accepted) >= 5  # the corpus exercises the native parse, not only its rejections


def _readings(caplog) -> dict[str, str]:
    """Table -> the reading that typed it, from ingest's debug log: ``native``, ``guarded``,
    ``reference``, or ``native in doubt`` (the native reading tried, then the string path taken)."""
    readings = {}
    for record in caplog.records:
        found = re.fullmatch(r"(\w+)\.\w+: (native reading in doubt, )?typed by the (\w+) reading", record.getMessage())
        if found:
            readings[found[1]] = "native in doubt" if found[2] else found[3]
    return readings


def test_native_and_reference_paths_stage_identical_tables(spark, tmp_path, caplog):
    """Clean CSV tables take the native parse; the staged tables equal the reference path's."""
    raw = write_world(tmp_path / "raw")
    with caplog.at_level(logging.DEBUG, logger="sf_ml.ingest"):
        native = _read_all(spark, raw, tmp_path / "native", reading="native")  # the tiny world's files too
    taken = _readings(caplog)
    assert {"urssaf_cotisation", "urssaf_effectif", "urssaf_debit", "altares_paydex"} <= {n for n, r in taken.items() if r == "native"}
    assert native == _read_all(spark, raw, tmp_path / "reference", reading="reference")


def _read_all(spark, raw, staging, reading):
    tables = ["urssaf_effectif", "urssaf_cotisation", "urssaf_debit", "altares_paydex", "dgfip_bilans",
              "ap_demande", "sirene_etablissements_historique"]
    frames = ingest.read_raw(spark, raw, tables=tables, staging_dir=staging, reading=reading)
    return {name: (frame.schema, sorted(map(tuple, frame.collect()), key=repr)) for name, frame in frames.items()}


def test_bad_values_in_native_sized_files_are_reported_as_by_the_reference_path(spark, tmp_path, caplog):
    """A value the native parse rejects (12.5 as int), one the text scan keeps off it (1d), one it
    reads as infinity (1e400) and a repeated header line are reported with file, column, count and
    example; nothing is written."""
    raw = write_world(tmp_path / "raw", changes={
        "urssaf_effectif": [dict(siren=12345678, periode="2020-01-01", effectif="12.5")],
        "urssaf_cotisation": [dict(siret=1234567800012, numero_compte="117000001", periode_debut="2020-01-01",
                                   periode_fin="2020-02-01", du="1d", encaisse="10")],
        "altares_paydex": [dict(siren=12345678, date_valeur="2020-01-05", paydex="1e400", nbr_fournisseurs=3,
                                encours_etudies=100, fpi_30=10, fpi_90=5)],
    })
    debit = raw / "urssaf_debit.csv"
    header_line = debit.read_text(encoding="utf-8").splitlines()[0]
    with debit.open("a", encoding="utf-8") as handle:  # a second header line, as in concatenated exports
        handle.write(header_line + "\n")
    with caplog.at_level(logging.DEBUG, logger="sf_ml.ingest"), pytest.raises(ingest.RawDataError) as info:
        ingest.ingest(raw, tmp_path / "out" / "typed", spark=spark, reading="native")  # the tiny world's files too
    assert not (tmp_path / "out").exists()
    taken = _readings(caplog)
    assert {name: taken[name] for name in ("urssaf_effectif", "urssaf_cotisation", "altares_paydex", "urssaf_debit")} == {
        "urssaf_effectif": "native in doubt", "urssaf_cotisation": "native in doubt",
        "altares_paydex": "native in doubt", "urssaf_debit": "native in doubt"}
    issues = {(i.file, i.column): i for i in info.value.errors}
    assert {key for key in issues if key[0] != "urssaf_debit.csv"} == {
        ("urssaf_effectif.csv", "effectif"), ("urssaf_cotisation.csv", "du"), ("altares_paydex.csv", "paydex")}
    siret = issues[("urssaf_debit.csv", "siret")]
    assert siret.problem == "identifier has non-digit characters" and siret.count == 1
    assert "siret=siret" in siret.example
    effectif = issues[("urssaf_effectif.csv", "effectif")]
    assert effectif.problem == "not an integer (32-bit)" and effectif.count == 1 and "effectif=12.5" in effectif.example
    assert issues[("urssaf_cotisation.csv", "du")].problem == "not a finite number"
    assert "du=1d" in issues[("urssaf_cotisation.csv", "du")].example
    assert "paydex=1e400" in issues[("altares_paydex.csv", "paydex")].example


def test_a_repeated_header_line_without_forbidden_bytes_is_reported(spark, tmp_path):
    """``siren,periode,effectif`` passes the byte scan (no float, no date sign): its line parses
    as a corrupt row, so the table takes the reference path, which reports it."""
    raw = write_world(tmp_path / "raw")
    effectif = raw / "urssaf_effectif.csv"
    header_line = effectif.read_text(encoding="utf-8").splitlines()[0]
    assert not _forbidden(header_line, {INT, DATE})
    with effectif.open("a", encoding="utf-8") as handle:
        handle.write(header_line + "\n")
    with pytest.raises(ingest.RawDataError) as info:
        ingest.read_raw(spark, raw, tables=["urssaf_effectif"], reading="native")  # the tiny world's files too
    issues = {(i.column, i.problem): i for i in info.value.errors}
    siren = issues[("siren", "identifier has non-digit characters")]
    assert siren.count == 1 and "siren=siren, periode=periode, effectif=effectif" in siren.example
