"""Ingestion: read the raw directory, validate it against the data contract, type it, write it.

The contract: one file per contract table in the raw directory (``NAME.csv`` or ``NAME.parquet``,
``docs/data-contract.md``, :mod:`sf_ml.contract`); every value is a trimmed string (empty =
null) that reads as its column's type (:mod:`sf_ml.column_types`) and passes the row checks, and
each table's unique key and head-office rule hold. Every problem of every table is collected
(file, column, row count, one example row) before failing with :class:`RawDataError`, so one run
reports all of them; :func:`ingest` writes nothing unless the whole directory is valid.

Each raw file is parsed and typed once, by one of two paths, chosen by the ``reading`` parameter:

- the string path reads every contract column as trimmed strings and types them by guarded casts
  (``"guarded"``: a few byte comparisons prove that Spark's cast reads a value as the contract
  does; regular expressions only for the others) or by the reference reading (``"reference"``:
  the regular expressions of the contract's rules, on every value);
- the native path has a clean CSV file's dates, ints and floats parsed by Spark's own CSV
  parsers, several times cheaper; any doubt (a forbidden byte, a corrupt row, a suspicious value,
  a failed check) sends the table to the string path, which reports its issues exactly.

``"auto"`` (the default) takes the native path for CSV files of 4 MiB or more and guarded casts
elsewhere; ``"native"`` takes the native path whatever the size. All give the same tables and
the same issues. The native path earns its code at France scale: on a 200,000-company export it
ingests in 166 s against 284 s by guarded casts (``bench/bench_readings.py``).

Cost: the typed frame is written as parquet to a staging directory while the row count and the
number of rows failing any row check are observed on the rows flowing through that write; the
unique key and the head-office rule are then checked on the written parquet, reading only the
columns they need (one grouping of the 64-bit key hashes of all tables, then an exact grouping
of the rows whose hash repeats, only in the tables where one does). Per-check counts and example
rows are computed from the raw file only when a check fails. Tables are loaded by a few threads
at once (Spark runs their jobs concurrently); issues are still reported in table order.
:func:`ingest` stages straight into its output; :func:`read_raw` stages into a directory given by
its caller (whose frames then read the typed parquet instead of parsing the raw files again) or
into a temporary one.

Decisions beyond the contract text:

- A table given both as ``NAME.csv`` and ``NAME.parquet`` is bad input (which one is current
  cannot be guessed).
- Header names are matched exactly, then case-insensitively, ignoring surrounding blanks.
- Identifiers must be digits only in text; a parquet float or decimal column holding whole
  numbers (ids that went through pandas with missing values) is read as those integers.
- ``int`` columns accept ``12`` and ``12.0`` (not ``12.5``); ``float`` columns accept decimal
  point numbers with an optional exponent; ``NaN`` is read as null, infinities are bad input.
- In ``sirene_etablissements`` a ``siren`` that is not the first 9 digits of its ``siret`` is
  bad input, as is a ``siren`` without exactly one head office.
- Rows with an empty (or invalid) part of their unique key are not checked for duplicates;
  their count is logged as a warning.
"""

from __future__ import annotations

import concurrent.futures
import csv
import functools
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import mlflow
from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, Observation, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sf_ml import sqltext
from sf_ml.column_types import COLUMN_TYPES
from sf_ml.contract import REQUIRED_TABLES, TABLES, Column, Table
from sf_ml.io import atomic_directory
from sf_ml.manifest import check_typed_directory, is_typed_directory, write_manifest
from sf_ml.spark import get_spark

logger = logging.getLogger(__name__)

# The values of the ``reading`` parameter (see the module docstring).
READINGS = ("auto", "native", "guarded", "reference")
# Trimmed from both ends of every value: Java regex \s, no-break space and byte order mark.
_BLANKS = " \t\n\x0b\f\r\u00a0\ufeff"
_CORRUPT = "__corrupt_record"
# Below this size a CSV file takes the string path with reading "auto": the native path's fixed
# costs (its observations, a second write when in doubt) outweigh its gain (measured on the
# two-pass reading).
_NATIVE_MIN_BYTES = 4 << 20
# Tables loaded at once: enough to overlap small tables and key checks with the large scans.
_THREADS = 3
# Above this many columns an example row shows only identifying columns and the failing one.
_MAX_EXAMPLE_COLUMNS = 12


@dataclass(frozen=True)
class ValidationIssue:
    """One problem found in the raw directory.

    Args:
        file: File name (``urssaf_effectif.csv``), or the directory for directory-level issues.
        column: Column concerned (several joined by ``, `` for a key), or None.
        problem: What is wrong, in words.
        count: Number of rows affected (0 for file-level issues).
        example: One offending row as ``col=value, ...``, or None.
    """

    file: str
    column: str | None
    problem: str
    count: int
    example: str | None = None

    def __str__(self) -> str:
        where = self.file if self.column is None else f"{self.file}, column '{self.column}'"
        text = f"{where}: {self.problem}"
        if self.count:
            text += f" ({self.count} row{'s' if self.count != 1 else ''})"
        if self.example is not None:
            text += f"; example: {self.example}"
        return text


class RawDataError(ValueError):
    """The raw directory does not follow the data contract.

    Args:
        errors: Every issue found, across all tables.
    """

    def __init__(self, errors: list[ValidationIssue]):
        self.errors = list(errors)
        lines = "\n".join(f"  - {issue}" for issue in self.errors)
        noun = "issue" if len(self.errors) == 1 else "issues"
        super().__init__(f"raw data violates the data contract ({len(self.errors)} {noun}):\n{lines}")


def typed_schema(table: str) -> T.StructType:
    """The Spark schema of a contract table once ingested.

    Identifiers and strings are ``string``, dates ``date``, booleans ``boolean``, ints
    ``int`` (32-bit) and floats ``double``; every column is nullable.

    Args:
        table: Contract table name.

    Returns:
        The schema, columns in contract order.
    """
    columns = TABLES[table].columns
    return T.StructType([T.StructField(c.name, COLUMN_TYPES[c.kind].spark_type, True) for c in columns])


def read_raw(
    spark: SparkSession,
    raw_dir: str | Path,
    tables: Iterable[str] | None = None,
    staging_dir: str | Path | None = None,
    reading: str = "auto",
) -> dict[str, DataFrame]:
    """Read, validate and type the contract tables of a raw directory.

    Every issue of every requested table is collected before failing. Absent optional tables
    are logged as a warning and left out of the result.

    Args:
        spark: Spark session.
        raw_dir: Directory holding ``NAME.csv`` or ``NAME.parquet`` per table.
        tables: Contract tables to read; all of them when None.
        staging_dir: New directory (local file system) owned by the caller, who removes it
            once done with the frames. The typed tables are written there as parquet
            (``staging_dir/<table>/``) during validation and the returned frames read them:
            raw files are parsed once. When None, a temporary directory is used for
            validation and removed before returning, and the frames read the raw files.
        reading: How values are typed, one of :data:`READINGS` (see the module docstring);
            every reading gives the same frames and issues.

    Returns:
        Table name to typed DataFrame, with exactly the contract columns, in contract order,
        identifiers left-padded with zeros. The frames are lazy: each use reads the staged
        parquet (``staging_dir`` given) or the raw file (otherwise).

    Raises:
        RawDataError: The directory violates the data contract.
        KeyError: A requested table is not in the contract.
        ValueError: ``reading`` is not one of :data:`READINGS`.
    """
    names = _table_names(tables)
    if staging_dir is not None:
        loaded = _read_validated(spark, raw_dir, names, Path(staging_dir), reading)
        return {name: _read_staged(spark, Path(staging_dir), name) for name in loaded.frames}
    with tempfile.TemporaryDirectory(prefix="sf_ml-read_raw-") as scratch:
        return _read_validated(spark, raw_dir, names, Path(scratch) / "typed", reading).frames


def read_typed(spark: SparkSession, typed_dir: str | Path) -> dict[str, DataFrame]:
    """The tables of a typed directory written by :func:`ingest`, checked against its manifest.

    Args:
        spark: Spark session.
        typed_dir: Typed directory.

    Returns:
        Table name to typed DataFrame, as :func:`read_raw` returns them (no parsing or validation).

    Raises:
        sf_ml.manifest.TypedDataError: No manifest, or files that no longer match it.
    """
    manifest = check_typed_directory(typed_dir)
    logger.info("Reading typed tables of %s (validated by ingest at %s)", typed_dir, manifest["ingested_at"])
    return {name: _read_staged(spark, Path(typed_dir), name) for name in TABLES if name in manifest["rows"]}


def read_tables(
    spark: SparkSession, directory: str | Path, staging_dir: str | Path, reading: str = "auto"
) -> dict[str, DataFrame]:
    """The typed tables of a raw directory (validated, typed into ``staging_dir``) or of a typed one.

    Args:
        spark: Spark session.
        directory: A raw directory (contract files) or a typed directory (:func:`ingest`'s output).
        staging_dir: For a raw directory, as in :func:`read_raw`; unused for a typed one.
        reading: For a raw directory, as in :func:`read_raw`; unused for a typed one.

    Returns:
        Table name to typed DataFrame.
    """
    if is_typed_directory(directory):
        return read_typed(spark, directory)
    return read_raw(spark, directory, staging_dir=staging_dir, reading=reading)


def ingest(
    raw_dir: str | Path, output_dir: str | Path, spark: SparkSession | None = None, reading: str = "auto"
) -> dict[str, int]:
    """Validate a raw directory and write its typed tables as parquet, all or nothing.

    ``output_dir/<table>/`` is written for each table present, with ``output_dir/manifest.json``
    (:mod:`sf_ml.manifest`); an existing ``output_dir`` is replaced only once the new one is
    complete. When an MLflow run is active, row counts are logged as metrics ``rows.<table>``
    and absent optional tables as tag ``ingest.absent_optional_tables``.

    Args:
        raw_dir: Raw directory following the data contract.
        output_dir: Directory to write the typed tables to.
        spark: Spark session; the project's default session when None.
        reading: How values are typed, as in :func:`read_raw`.

    Returns:
        Table name to row count, for the tables written.

    Raises:
        RawDataError: The raw directory violates the contract; nothing has been written.
        ValueError: ``reading`` is not one of :data:`READINGS`; nothing has been written.
    """
    if spark is None:
        spark = get_spark()
    with atomic_directory(output_dir) as staging:
        loaded = _read_validated(spark, raw_dir, _table_names(None), staging, reading)
        write_manifest(staging, raw_dir, loaded.counts, loaded.absent)
    logger.info("Ingested %s into %s: %s", raw_dir, output_dir, loaded.counts)
    if mlflow.active_run() is not None:
        mlflow.log_metrics({f"rows.{name}": n for name, n in loaded.counts.items()})
        mlflow.set_tag("ingest.absent_optional_tables", ",".join(loaded.absent) or "none")
    return dict(loaded.counts)


# ---------------------------------------------------------------------------------------------
# The raw directory: locate the files, load them a few at once, check the unique keys


@dataclass
class _Loaded:
    """The valid tables of a raw directory (:func:`_read_validated`).

    Attributes:
        frames: Table name to its typed frame, read from the raw file.
        counts: Table name to its row count.
        absent: The optional tables without a file.
    """

    frames: dict[str, DataFrame] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _TableLoad:
    """One raw file read, typed into its staging directory and checked (:func:`_load_and_check`).

    Attributes:
        issues: The issues found, the unique key's aside (checked for all tables at once).
        frame: The typed frame read from the raw file; None when the file cannot be read.
        rows: The file's row count.
        check_key: Whether its unique key is to be checked (all key columns present, some rows).
    """

    issues: list[ValidationIssue]
    frame: DataFrame | None = None
    rows: int = 0
    check_key: bool = False


def _table_names(tables: Iterable[str] | None) -> list[str]:
    """Contract names of the requested tables (all when None); KeyError for an unknown one."""
    return list(TABLES) if tables is None else [TABLES[name].name for name in tables]


def _read_staged(spark: SparkSession, staging_dir: Path, name: str) -> DataFrame:
    """A typed table staged by :func:`_read_validated`, read with its contract schema."""
    return spark.read.schema(typed_schema(name)).parquet(str(staging_dir / name))


def _read_validated(
    spark: SparkSession, raw_dir: str | Path, names: list[str], staging_dir: Path, reading: str
) -> _Loaded:
    """Read and validate the requested tables; raise one RawDataError listing all issues.

    Each readable table is written typed to ``staging_dir/<table>/`` (also when it has issues);
    the frames of the result are typed from the raw files. Issues are listed in the order of
    ``names``, whatever order the tables were loaded in.
    """
    if reading not in READINGS:
        raise ValueError(f"unknown reading {reading!r}: expected one of {', '.join(READINGS)}")
    if not Path(raw_dir).is_dir():
        raise RawDataError([ValidationIssue(str(raw_dir), None, "raw directory does not exist", 0)])
    loaded = _Loaded()
    found = _find_files(raw_dir, names, loaded.absent)
    files = {name: path for name, path in found if isinstance(path, Path)}
    loads = _load_tables(spark, files, staging_dir, reading)
    keyed = [name for name, load in loads.items() if load.check_key]
    repeated = _repeated_key_tables(spark, staging_dir, keyed, sum(loads[name].rows for name in keyed))
    issues: list[ValidationIssue] = []
    for name, path in found:
        if not isinstance(path, Path):
            issues.extend(path)
            continue
        load = loads[name]
        issues.extend(load.issues)
        if name in repeated:
            issues.extend(_duplicate_issues(_read_staged(spark, staging_dir, name), TABLES[name], path.name))
        if load.frame is not None:
            loaded.frames[name] = load.frame
            loaded.counts[name] = load.rows
    if issues:
        raise RawDataError(issues)
    return loaded


def _find_files(
    raw_dir: str | Path, names: list[str], absent: list[str]
) -> list[tuple[str, list[ValidationIssue] | Path]]:
    """Per requested table, in order: the file to load, or its file-level issues.

    An absent optional table is appended to ``absent`` and logged as a warning instead.
    """
    raw_path = Path(raw_dir)
    found: list[tuple[str, list[ValidationIssue] | Path]] = []
    for name in names:
        candidates = [p for p in (raw_path / f"{name}.csv", raw_path / f"{name}.parquet") if p.exists()]
        if len(candidates) == 1:
            found.append((name, candidates[0]))
        elif candidates:
            problem = f"both {name}.csv and {name}.parquet are present; keep exactly one"
            found.append((name, [ValidationIssue(f"{name}.csv", None, problem, 0)]))
        elif name in REQUIRED_TABLES:
            problem = f"required table missing: neither {name}.csv nor {name}.parquet is in {raw_dir}"
            found.append((name, [ValidationIssue(f"{name}.csv", None, problem, 0)]))
        else:
            absent.append(name)
            logger.warning("Optional table %s is absent from %s: its features will be null.", name, raw_dir)
    return found


def _load_tables(
    spark: SparkSession, files: dict[str, Path], staging_dir: Path, reading: str
) -> dict[str, _TableLoad]:
    """:func:`_load_and_check` of each table's file, into ``staging_dir/<table>/``, a few at once.

    Spark runs the jobs of several threads at once: the small tables' fixed costs and the key
    checks overlap with the scans of the large ones, whose files are submitted first. An
    unexpected error of one table is raised once every table is done.
    """
    largest_first = sorted(files, key=lambda name: -_size(files[name]))
    with concurrent.futures.ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="sf_ml-ingest") as pool:
        futures = {
            name: pool.submit(_load_and_check, spark, TABLES[name], files[name], staging_dir / name, reading)
            for name in largest_first
        }
    return {name: future.result() for name, future in futures.items()}


def _size(path: Path) -> int:
    """Bytes of a raw file, or of the files of a directory (a Spark-written table)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _repeated_key_tables(spark: SparkSession, staging_dir: Path, names: list[str], rows: int) -> set[str]:
    """The staged tables among ``names`` in which the hash of some complete unique key repeats.

    One job for all the tables: the 64-bit hashes of their keys are grouped together. Equal keys
    have equal hashes, so a table outside the result has no duplicate key; one inside may have
    (:func:`_duplicate_issues` checks exactly). ``rows`` (the tables' row count) sets the number
    of partitions of the grouping.
    """
    if not names:
        return set()
    hashes = [
        _key_hashes(_read_staged(spark, staging_dir, name), TABLES[name].key)
        .selectExpr(f"{number} AS table_number", "__key_hash")
        for number, name in enumerate(names)
    ]
    # Nearly every hash is distinct: an aggregation before the shuffle would only copy the rows
    # into a hash map. Shuffling first leaves one aggregation, after the shuffle. At most ~1M
    # hashes a partition, in a number of partitions given explicitly (adaptive execution leaves
    # those alone): coalesced into 4 partitions at 50k companies, the hash maps of 4M entries
    # made this job ~25% slower (6.1-6.4 s against 4.9-5.4 s).
    partitions = max(int(spark.conf.get("spark.sql.shuffle.partitions")), -(-rows // 1_000_000))
    stacked = functools.reduce(DataFrame.unionByName, hashes).repartition(partitions, "table_number", "__key_hash")
    repeated = stacked.groupBy("table_number", "__key_hash").count().where("count > 1").select("table_number")
    return {names[row.table_number] for row in repeated.distinct().collect()}


def _key_hashes(typed: DataFrame, key: tuple[str, ...]) -> DataFrame:
    """The rows of ``typed`` with a complete ``key``: its columns and their 64-bit hash ``__key_hash``.

    Grouping the hashes is much cheaper than grouping the key itself; equal keys have equal
    hashes, so only rows whose hash repeats can be duplicates.
    """
    columns = [sqltext.name(k) for k in key]
    return typed.selectExpr(*columns, f"xxhash64({', '.join(columns)}) AS __key_hash").where(
        " AND ".join(f"{c} IS NOT NULL" for c in columns)
    )


def _duplicate_issues(typed: DataFrame, table: Table, file: str) -> list[ValidationIssue]:
    """The duplicated unique keys (after padding) of a table, counted and shown; [] if none.

    Called for the tables whose key hashes repeat (:func:`_repeated_key_tables`): the keys are
    compared exactly among the rows of those hashes only.
    """
    key = list(table.key)
    hashed = _key_hashes(typed, table.key)
    repeated = hashed.groupBy("__key_hash").count().filter(F.col("count") > 1).select("__key_hash")
    suspects = hashed.join(repeated, "__key_hash", "left_semi").select(*key)
    dups = suspects.groupBy(*key).count().filter(F.col("count") > 1)
    summary = dups.agg(
        F.count(F.lit(1)).alias("keys"), F.sum("count").alias("rows"), F.min(F.struct(*key)).alias("example")
    ).first()
    if not summary["keys"]:
        return []
    return [ValidationIssue(
        file, ", ".join(key), f"duplicate unique key: {summary['keys']} key value(s) appear more than once",
        summary["rows"], _format_row(summary["example"]),
    )]


# ---------------------------------------------------------------------------------------------
# One table: read its file, type it into the staging directory, check its rows


def _load_and_check(spark: SparkSession, table: Table, path: Path, target: Path, reading: str) -> _TableLoad:
    """Read one raw file, type it into ``target`` and run every check but the unique key's.

    With reading ``auto`` or ``native``, a clean CSV file is typed by Spark's CSV parsers
    (:func:`_write_native`); any other file, or one whose native reading is in doubt, takes the
    string path: read as trimmed strings, typed from them by guarded casts (or the reference
    reading). The row count and the count of rows failing any row check are observed on the rows
    written to ``target`` (one scan of the raw file); per-check counts and example rows of failed
    row checks are looked up in the raw file, only when some check failed.
    """
    file = path.name
    try:
        source, header = _read_source(spark, path)
    except Exception as exc:  # noqa: BLE001 - any read failure is reported as bad input
        return _TableLoad([_unreadable(file, exc)])
    if source is None or not header:
        return _TableLoad([ValidationIssue(file, None, "file is empty (no header row)", 0)])

    issues: list[ValidationIssue] = []
    positions, missing = _match_columns(header, table, file, issues)
    typing = "reference" if reading == "reference" else "guarded"
    texts = _text_frame(source, header, table, positions)
    # Each typed value is computed once, next to its text, for all the checks that use it.
    checked = texts.select("*", *[_typed(c, typing).alias(_typed_name(c.name)) for c in table.columns])
    present = [c for c in table.columns if c.name in positions]
    check_key = bool(table.key) and all(k in positions for k in table.key)
    totals, native = None, None
    if not issues and len(present) == len(table.columns) and _tries_native(path, reading):
        totals = _write_native(spark, table, path, header, positions, check_key, target)
        native = totals is not None
    if totals is None:
        totals = _write_observed(checked, table, _observed_metrics(table, present, check_key), target)
    doubt = "native reading in doubt, " if native is False else ""
    logger.debug("%s: %styped by the %s reading", file, doubt, "native" if native else typing)
    rows = totals["rows"]

    issues += [ValidationIssue(file, name, "required column missing", rows)
               for name in sorted(missing, key=table.column_names.index)]
    if totals.get("failed_rows"):  # per-check counts and examples: only on bad input
        issues += _row_issues(checked, table, present, file)
    issues += _empty_table_issues(table, file, rows)
    if check_key and rows and totals["keyed_rows"] < rows:
        logger.warning(
            "%s: %d row(s) have an empty or invalid part of the key (%s), not checked for duplicates.",
            file, rows - totals["keyed_rows"], ", ".join(table.key),
        )
    if rows and table.name == "sirene_etablissements" and {"siren", "etablissementSiege"} <= positions.keys():
        issues += _head_office_issues(_read_staged(spark, target.parent, table.name), file)
    typed = texts.select(*[_typed(c, typing).alias(c.name) for c in table.columns])
    return _TableLoad(issues, typed, rows, bool(check_key and rows))


def _unreadable(file: str, exc: Exception) -> ValidationIssue:
    """The issue of a file Spark cannot read, from the first line of its error."""
    problem = "cannot be read: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if "NANOS" in problem:
        problem += " (write dates as parquet date, or timestamps in micro- or milliseconds)"
    return ValidationIssue(file, None, problem, 0)


def _read_source(spark: SparkSession, path: Path) -> tuple[DataFrame | None, list[str]]:
    """The raw file as Spark reads it (CSV: all strings) and its column names; None if empty."""
    if path.suffix != ".csv":
        frame = spark.read.parquet(str(path))
        return frame, frame.columns
    reader = spark.read.option("header", True).option("encoding", "UTF-8").option("escape", '"')
    if path.is_dir():
        frame = reader.option("inferSchema", False).csv(str(path))
        return frame, frame.columns
    # Reading the header here spares Spark a job; the given schema is applied by position.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        return None, []
    usable = all(header) and len({h.lower() for h in header}) == len(header)
    names = header if usable else [f"_c{i}" for i in range(len(header))]
    schema = T.StructType([T.StructField(name, T.StringType()) for name in names])
    return reader.schema(schema).csv(str(path)), header


def _match_columns(
    header: list[str], table: Table, file: str, issues: list[ValidationIssue]
) -> tuple[dict[str, int], set[str]]:
    """Map each contract column to its position in the header (exact name, then case-insensitive).

    Returns:
        The position of each column found once, and the required columns not found. A column
        found several times is appended to ``issues``.
    """
    cleaned = [h.strip().lstrip("\ufeff").strip() for h in header]
    positions: dict[str, int] = {}
    missing: set[str] = set()
    for col in table.columns:
        found = [i for i, h in enumerate(cleaned) if h == col.name]
        if not found:
            found = [i for i, h in enumerate(cleaned) if h.lower() == col.name.lower()]
        if len(found) == 1:
            positions[col.name] = found[0]
        elif len(found) > 1:
            problem = f"column appears {len(found)} times in the header"
            issues.append(ValidationIssue(file, col.name, problem, 0))
        elif col.required:
            missing.add(col.name)
    return positions, missing


def _text_frame(source: DataFrame, header: list[str], table: Table, positions: dict[str, int]) -> DataFrame:
    """The contract columns of the source as the contract reads their values: trimmed text, empty
    as null (a typed parquet column first as the text it stands for); null where absent."""
    # Positional names make the selection immune to odd or case-colliding header names.
    renamed = source.toDF(*[f"_c{i}" for i in range(len(header))])
    as_text = {
        f"_c{i}": COLUMN_TYPES[col.kind].as_text(F.col(f"_c{i}"), source.schema[i].dataType)
        for col in table.columns
        if (i := positions.get(col.name)) is not None and not isinstance(source.schema[i].dataType, T.StringType)
    }
    if as_text:
        renamed = renamed.withColumns(as_text)
    return renamed.select(*[
        _text(f"_c{positions[col.name]}").alias(col.name) if col.name in positions
        else F.expr("CAST(NULL AS STRING)").alias(col.name)
        for col in table.columns
    ])


def _write_observed(checked: DataFrame, table: Table, metrics: list[SparkColumn], target: Path) -> dict[str, int]:
    """Write the typed columns of ``checked`` to ``target`` as parquet; return ``metrics`` observed
    on the rows written (one scan of the source)."""
    observation = Observation()
    typed_columns = [_value(c.name).alias(c.name) for c in table.columns]
    checked.observe(observation, *metrics).select(*typed_columns).write.parquet(str(target))
    return observation.get


def _observed_metrics(
    table: Table, present: list[Column], check_key: bool, extra: list[str] = ()
) -> list[SparkColumn]:
    """Aggregates observed on the rows being written: ``rows``, ``failed_rows`` (any row check,
    or any of the SQL conditions ``extra``, failed) and ``keyed_rows`` (rows with a complete
    unique key)."""
    metrics = [F.expr("count(1)").alias("rows")]
    flags = [sql for _, _, sql in _row_checks(table, present, cheap=True)] + list(extra)
    if flags:
        # One flag per row for all the row checks: per-check counts are only needed on bad input.
        any_failed = " OR ".join(f"coalesce({flag}, false)" for flag in flags)
        metrics.append(F.expr(f"sum(CASE WHEN {any_failed} THEN 1 ELSE 0 END)").alias("failed_rows"))
    if check_key:
        key_complete = " AND ".join(f"{sqltext.name(_typed_name(k))} IS NOT NULL" for k in table.key)
        metrics.append(F.expr(f"sum(CASE WHEN {key_complete} THEN 1 ELSE 0 END)").alias("keyed_rows"))
    return metrics


def _empty_table_issues(table: Table, file: str, rows: int) -> list[ValidationIssue]:
    """A required table without rows is bad input; an optional one is logged as a warning."""
    if rows == 0 and table.required:
        return [ValidationIssue(file, None, "required table is empty (0 rows)", 0)]
    if rows == 0:
        logger.warning("Optional table %s is empty: its features will be null.", table.name)
    return []


# ---------------------------------------------------------------------------------------------
# Values: trimmed text, and its typed value by the guarded casts or the reference reading


def _trimmed_sql(name: str) -> str:
    """SQL of column ``name`` without the blanks of ``_BLANKS`` at either end.

    Trimming with a character set costs more than parsing the CSV, so it only runs on values
    that may need it: a first or last character below ``!`` or at/above U+00A0 (every blank is
    one of those; a few byte comparisons per value).
    """
    text, last, nbsp = sqltext.name(name), f"substring({sqltext.name(name)}, -1, 1)", sqltext.string("\u00a0")
    dirty = f"{text} < '!' OR {text} >= {nbsp} OR {last} < '!' OR {last} >= {nbsp}"
    return f"CASE WHEN {dirty} THEN trim(BOTH {sqltext.string(_BLANKS)} FROM {text}) ELSE {text} END"


def _printable_text_sql(name: str) -> str:
    """SQL of :func:`_text` on values of printable ASCII only (the native path's files).

    A space is the only blank of ``_BLANKS`` there, and ``trim`` removes exactly the spaces at
    either end (returning the value itself when there are none): at 50k companies, reading the
    two text columns of ``urssaf_cotisation`` took 2.3 s this way against 3.2 s with the guards
    of :func:`_trimmed_sql`.
    """
    return f"nullif(trim({sqltext.name(name)}), '')"


def _text(name: str) -> SparkColumn:
    """Column ``name`` as the contract reads a value: trimmed, empty as null."""
    return F.expr(f"nullif({_trimmed_sql(name)}, '')")


def _typed(col: Column, reading: str = "guarded") -> SparkColumn:
    """The typed value of a contract column from its trimmed text (column ``col.name``); null when
    it does not read. See :func:`_typed_sql`."""
    return F.expr(_typed_sql(col, reading))


def _typed_sql(col: Column, reading: str = "guarded", printable: bool = False) -> str:
    """SQL of :func:`_typed` by the ``reading`` of the column's type (:mod:`sf_ml.column_types`).

    Args:
        col: The contract column; its trimmed text is the column ``col.name``.
        reading: ``guarded`` (guarded casts, equal to the reference on every value) or
            ``reference`` (the reference reading's regular expressions).
        printable: The values are known to be trimmed printable ASCII (the native path's files),
            which spares the guarded casts a test.
    """
    column_type, text = COLUMN_TYPES[col.kind], sqltext.name(col.name)
    if reading == "reference":
        return column_type.reference_sql(text)
    return column_type.guarded_sql(text, printable)


def _typed_name(name: str) -> str:
    """The column holding the typed value of column ``name`` in the frame being checked."""
    return f"typed__{name}"


def _value(name: str) -> SparkColumn:
    """The typed value of a column in the frame being checked."""
    return F.col(_typed_name(name))


# ---------------------------------------------------------------------------------------------
# The native path: Spark's CSV parsers on clean CSV files


def _tries_native(path: Path, reading: str) -> bool:
    """Whether the reading tries the native path on this file: a CSV file (large for ``auto``)."""
    if reading not in ("auto", "native") or path.suffix != ".csv" or not path.is_file():
        return False
    return reading == "native" or path.stat().st_size >= _NATIVE_MIN_BYTES


def _write_native(
    spark: SparkSession, table: Table, path: Path, header: list[str], positions: dict[str, int],
    check_key: bool, target: Path,
) -> dict[str, int] | None:
    """Type a clean CSV file with Spark's own parsers, or return None to take the string path.

    Spark parses dates, ints and floats straight from the CSV bytes several times faster than
    the string reading does, but its parsers accept a few spellings the contract does not; see
    :func:`_native_frame` for how those are kept out. A forbidden byte after the header line
    (:func:`_has_forbidden_bytes`, checked first), a row check failure, a corrupt row (a header
    line repeated in the file is one) or a suspicious value (:func:`_suspicious_flags`) sends the
    table to the string path, which reports the issues exactly.

    Returns:
        The observed totals (as :func:`_observed_metrics`), the typed table written to ``target``;
        or None, with nothing left in ``target``.
    """
    checked = _native_frame(spark, table, path, header, positions)
    if checked is None:
        return None
    metrics = _observed_metrics(table, list(table.columns), check_key, _suspicious_flags(table))
    totals = _write_observed(checked, table, metrics, target)
    if totals["failed_rows"]:
        shutil.rmtree(target, ignore_errors=True)
        return None
    return totals


def _native_frame(
    spark: SparkSession, table: Table, path: Path, header: list[str], positions: dict[str, int]
) -> DataFrame | None:
    """The table parsed natively, as the frame the checks run on; None when it cannot be.

    The file is parsed by Spark's CSV reader with the Spark types of its natively parsed columns
    (``ColumnType.native``: dates, ints and floats), and only if no forbidden byte follows its
    header line (:func:`_has_forbidden_bytes`). On the remaining alphabet the native parse of a
    value either fails (its row is corrupt), gives a value flagged by :func:`_suspicious_flags`
    (NaN, infinity, a year before 1 from a leading ``-``), or gives the value of the reference
    reading. A header line repeated in the file makes a corrupt row: its cell of a natively parsed
    column is a column name, which no native parser accepts. Identifiers, strings and booleans are
    read as strings and typed as the string path types them on printable ASCII, more cheaply
    (:func:`_printable_text_sql`, ``_typed_sql(..., printable=True)``). Blank lines are skipped, as
    the string path does.

    Returns:
        None if the table has no natively parsed column, the header line is not UTF-8 or a
        forbidden byte follows it. Else the frame, with columns ``<name>`` (trimmed text, or the
        native value), ``typed__<name>`` (the typed value) per contract column and
        ``__corrupt_record`` (the row failed to parse).
    """
    native = {c.name for c in table.columns if COLUMN_TYPES[c.kind].native}
    if not native:
        return None
    try:
        # newline="": the line ends at the first \n, \r or \r\n, as for Spark's line reader.
        with path.open(encoding="utf-8", newline="") as handle:
            header_line = handle.readline()
    except UnicodeDecodeError:
        return None
    if _has_forbidden_bytes(path, len(header_line.encode("utf-8")), {c.kind for c in table.columns}):
        return None
    types = ["STRING"] * len(header)
    for col in table.columns:
        if col.name in native:
            types[positions[col.name]] = COLUMN_TYPES[col.kind].spark_type.simpleString().upper()
    schema = ", ".join([*(f"_c{i} {kind}" for i, kind in enumerate(types)), f"{_CORRUPT} STRING"])
    source = spark.read.schema(schema).csv(str(path), **{
        "header": True, "encoding": "UTF-8", "escape": '"', "mode": "PERMISSIVE", "dateFormat": "yyyy-MM-dd",
        "columnNameOfCorruptRecord": _CORRUPT,
    })
    columns = []
    for col in table.columns:
        value = f"_c{positions[col.name]}"
        columns.append((F.col(value) if col.name in native else F.expr(_printable_text_sql(value))).alias(col.name))
    frame = source.select(*columns, F.col(_CORRUPT).isNotNull().alias(_CORRUPT))
    # A natively typed column is its own text: a value that failed to parse makes a corrupt row.
    return frame.select("*", *[
        (F.col(c.name) if c.name in native else F.expr(_typed_sql(c, printable=True))).alias(_typed_name(c.name))
        for c in table.columns
    ])


def _allowed_bytes(kinds: set[str]) -> bytes:
    """The bytes a CSV file holding columns of ``kinds`` may hold after its header line to be
    parsed natively.

    Outside printable ASCII, Java's parsers accept what the contract does not (non-ASCII
    digits in ``parseInt``, control characters around a ``parseDouble`` number); inside it, the
    ``forbidden`` characters of each type (:mod:`sf_ml.column_types`). Every character outside
    printable ASCII is encoded in UTF-8 by bytes outside it, so a byte test is a character test.
    Line ends (``\\n``, ``\\r``) are allowed: they separate lines, the unit both CSV readings parse.
    """
    forbidden = "".join(COLUMN_TYPES[kind].forbidden for kind in kinds)
    return bytes(b for b in range(0x20, 0x7F) if chr(b) not in forbidden) + b"\n\r"


def _has_forbidden_bytes(path: Path, header_bytes: int, kinds: set[str]) -> bool:
    """Whether the file holds a byte outside :func:`_allowed_bytes` after its first ``header_bytes``.

    Read in blocks of 8 MiB on the driver: deleting the allowed bytes of a block runs at
    ~1.5 GB/s, a few times cheaper than a regular expression over every line in Spark.
    """
    allowed = _allowed_bytes(kinds)
    with path.open("rb") as handle:
        handle.seek(header_bytes)
        while block := handle.read(8 << 20):
            if block.translate(None, allowed):
                return True
    return False


def _suspicious_flags(table: Table) -> list[str]:
    """Conditions (SQL) on a :func:`_native_frame` row that the reference reading must settle:
    a corrupt row, or a value its type finds suspicious (``ColumnType.suspicious_sql``)."""
    flags = [sqltext.name(_CORRUPT)]
    for col in table.columns:
        flag = COLUMN_TYPES[col.kind].suspicious_sql(sqltext.name(_typed_name(col.name)))
        if flag is not None:
            flags.append(flag)
    return flags


# ---------------------------------------------------------------------------------------------
# Checks: row checks, the head-office rule, example rows


def _row_checks(table: Table, present: list[Column], cheap: bool = False) -> list[tuple[str, str, str]]:
    """Row-level checks of a table as (column, problem, SQL condition true on a bad row).

    Per present column, the checks of its type (``ColumnType.checks``, ``cheap`` as there), its
    sign and its bounds; per table, a siren that is not the first 9 digits of its siret.
    """
    checks = []
    for col in present:
        text, value = sqltext.name(col.name), sqltext.name(_typed_name(col.name))
        checks += [(col.name, problem, sql) for problem, sql in COLUMN_TYPES[col.kind].checks(text, value, cheap)]
        if col.non_negative:
            checks.append((col.name, "negative value where the contract requires >= 0", f"{value} < 0"))
        if col.bounds is not None:
            low, high = col.bounds
            checks.append((
                col.name, f"value outside [{low:g}, {high:g}]",
                f"{value} < CAST('{low!r}' AS DOUBLE) OR {value} > CAST('{high!r}' AS DOUBLE)",
            ))
    if {"siren", "siret"} <= {c.name for c in present}:
        checks.append((
            "siren", "siren is not the first 9 digits of siret",
            f"{sqltext.name(_typed_name('siren'))} != substring({sqltext.name(_typed_name('siret'))}, 1, 9)",
        ))
    return checks


def _row_issues(checked: DataFrame, table: Table, present: list[Column], file: str) -> list[ValidationIssue]:
    """One issue per failed row check of ``checked`` (a frame of texts and typed values), with
    its count and one example row (one job for the counts, one per failed check)."""
    checks = [(column, problem, F.expr(sql)) for column, problem, sql in _row_checks(table, present)]
    counts = checked.agg(
        *(F.sum(F.when(cond, 1).otherwise(0)).alias(f"check{i}") for i, (_, _, cond) in enumerate(checks))
    ).first()
    issues = []
    for i, (column, problem, cond) in enumerate(checks):
        if counts[f"check{i}"]:
            example = checked.filter(cond).select(*_example_columns(table, present, column)).limit(1).first()
            issues.append(ValidationIssue(file, column, problem, counts[f"check{i}"], _format_row(example)))
    return issues


def _head_office_issues(typed: DataFrame, file: str) -> list[ValidationIssue]:
    """The sirens of ``sirene_etablissements`` without exactly one head office; [] if none."""
    per_siren = (
        typed.filter(F.col("siren").isNotNull())
        .groupBy("siren")
        .agg(
            F.count(F.lit(1)).alias("establishments"),
            F.sum(F.when(F.col("etablissementSiege"), 1).otherwise(0)).alias("head_offices"),
        )
        .filter(F.col("head_offices") != 1)
    )
    summary = per_siren.agg(
        F.count(F.lit(1)).alias("sirens"),
        F.sum("establishments").alias("rows"),
        F.min(F.struct("siren", "head_offices")).alias("example"),
    ).first()
    if not summary["sirens"]:
        return []
    return [ValidationIssue(
        file, "etablissementSiege",
        f"{summary['sirens']} siren(s) without exactly one head office (etablissementSiege=true)",
        summary["rows"], _format_row(summary["example"]),
    )]


def _example_columns(table: Table, present: list[Column], failing: str) -> list[str]:
    """Columns shown in an example row: all of them, or identifying ones plus the failing one."""
    if len(present) <= _MAX_EXAMPLE_COLUMNS:
        return [c.name for c in present]
    identifying = {c.name for c in present if COLUMN_TYPES[c.kind].identifying}
    keep = set(table.key) | identifying | {failing}
    return [c.name for c in present if c.name in keep]


def _format_row(row) -> str | None:
    """``col=value, ...`` for a Row (null shown as ``null``)."""
    if row is None:
        return None
    return ", ".join(f"{k}={'null' if v is None else v}" for k, v in row.asDict().items())
