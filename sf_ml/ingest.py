"""Ingestion: read the raw directory, validate it against the data contract, type it, write it.

The raw directory holds one file per contract table (``NAME.csv`` or ``NAME.parquet``, see
``shared/data-contract.md``). Both formats go through one code path: every contract column is
first turned into a trimmed string (empty = null), then validated and typed from that string.
Validation collects every problem of every table before failing, so one run reports all of
them; :func:`ingest` writes nothing unless the whole directory is valid.

Cost: each table is scanned once by one aggregation that computes all its checks (grouping
queries for examples of duplicates or head-office anomalies run only when there are some), then
once more to be written. Nothing is cached: every table must be validated before the first
write, so caching would hold the whole raw data set at once.

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

import csv
import functools
import logging
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pyspark.sql import Column as SparkColumn
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sf_ml.contract import BOOL, DATE, FLOAT, ID_WIDTH, INT, REQUIRED_TABLES, TABLES, Column, Table
from sf_ml.io import atomic_directory

logger = logging.getLogger(__name__)

_SPARK_TYPES = {
    DATE: T.DateType(),
    BOOL: T.BooleanType(),
    INT: T.IntegerType(),
    FLOAT: T.DoubleType(),
}
_BLANKS = r"^[\s\u00A0\uFEFF]+|[\s\u00A0\uFEFF]+$"
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_INTEGER = r"^[+-]?[0-9]+(\.0*)?$"
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
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


@dataclass
class _Loaded:
    """Result of reading and validating the raw directory (internal)."""

    frames: dict[str, DataFrame] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)


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
    return T.StructType([T.StructField(c.name, _SPARK_TYPES.get(c.kind, T.StringType()), True) for c in columns])


def read_raw(
    spark: SparkSession, raw_dir: str | Path, tables: Iterable[str] | None = None
) -> dict[str, DataFrame]:
    """Read, validate and type the contract tables of a raw directory.

    Every issue of every requested table is collected before failing. Absent optional tables
    are logged as a warning and left out of the result.

    Args:
        spark: Spark session.
        raw_dir: Directory holding ``NAME.csv`` or ``NAME.parquet`` per table.
        tables: Contract tables to read; all of them when None.

    Returns:
        Table name to typed DataFrame, with exactly the contract columns, in contract order,
        identifiers left-padded with zeros. The frames are lazy: each use reads the raw file.

    Raises:
        RawDataError: The directory violates the data contract.
        KeyError: A requested table is not in the contract.
    """
    return _read_validated(spark, raw_dir, tables).frames


def ingest(
    raw_dir: str | Path, output_dir: str | Path, spark: SparkSession | None = None
) -> dict[str, int]:
    """Validate a raw directory and write its typed tables as parquet, all or nothing.

    ``output_dir/<table>/`` is written for each table present; an existing ``output_dir`` is
    replaced only once the new one is complete. When an MLflow run is active, row counts are
    logged as metrics ``rows.<table>`` and absent optional tables as tag
    ``ingest.absent_optional_tables``.

    Args:
        raw_dir: Raw directory following the data contract.
        output_dir: Directory to write the typed tables to.
        spark: Spark session; the project's default session when None.

    Returns:
        Table name to row count, for the tables written.

    Raises:
        RawDataError: The raw directory violates the contract; nothing has been written.
    """
    if spark is None:
        from sf_ml.spark import get_spark

        spark = get_spark()
    loaded = _read_validated(spark, raw_dir, None)
    with atomic_directory(output_dir) as staging:
        for name, frame in loaded.frames.items():
            frame.write.parquet(str(staging / name))
    logger.info("Ingested %s into %s: %s", raw_dir, output_dir, loaded.counts)

    import mlflow

    if mlflow.active_run() is not None:
        mlflow.log_metrics({f"rows.{name}": n for name, n in loaded.counts.items()})
        mlflow.set_tag("ingest.absent_optional_tables", ",".join(loaded.absent) or "none")
    return dict(loaded.counts)


def _read_validated(spark: SparkSession, raw_dir: str | Path, tables: Iterable[str] | None) -> _Loaded:
    """Read and validate the requested tables; raise one RawDataError listing all issues."""
    names = list(TABLES) if tables is None else [TABLES[name].name for name in tables]
    raw_path = Path(raw_dir)
    if not raw_path.is_dir():
        raise RawDataError([ValidationIssue(str(raw_dir), None, "raw directory does not exist", 0)])

    loaded = _Loaded()
    issues: list[ValidationIssue] = []
    for name in names:
        table = TABLES[name]
        candidates = [p for p in (raw_path / f"{name}.csv", raw_path / f"{name}.parquet") if p.exists()]
        if not candidates:
            if name in REQUIRED_TABLES:
                issues.append(ValidationIssue(
                    f"{name}.csv", None,
                    f"required table missing: neither {name}.csv nor {name}.parquet is in {raw_dir}", 0,
                ))
            else:
                loaded.absent.append(name)
                logger.warning(
                    "Optional table %s is absent from %s: its features will be null.", name, raw_dir
                )
            continue
        if len(candidates) > 1:
            issues.append(ValidationIssue(
                f"{name}.csv", None,
                f"both {name}.csv and {name}.parquet are present; keep exactly one", 0,
            ))
            continue
        table_issues, typed, count = _load_and_check(spark, table, candidates[0])
        issues.extend(table_issues)
        if typed is not None:
            loaded.frames[name] = typed
            loaded.counts[name] = count
    if issues:
        raise RawDataError(issues)
    return loaded


def _load_and_check(
    spark: SparkSession, table: Table, path: Path
) -> tuple[list[ValidationIssue], DataFrame | None, int]:
    """Read one raw file as trimmed strings, run every check of its table and type it.

    All row checks, the row count, the unique-key check and the head-office check are computed
    in one aggregation pass; the grouping queries that count and show duplicates or head-office
    anomalies run only when that pass found some.

    Returns:
        The issues found, the typed frame (None if the file cannot be read) and its row count.
    """
    file = path.name
    try:
        source, header = _read_source(spark, path)
    except Exception as exc:  # noqa: BLE001 - any read failure is reported as bad input
        problem = "cannot be read: " + (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if "NANOS" in problem:
            problem += " (write dates as parquet date, or timestamps in micro- or milliseconds)"
        return [ValidationIssue(file, None, problem, 0)], None, 0
    if source is None or not header:
        return [ValidationIssue(file, None, "file is empty (no header row)", 0)], None, 0

    issues: list[ValidationIssue] = []
    positions, missing = _match_columns(header, table, file, issues)
    # Positional names make the selection immune to odd or case-colliding header names.
    renamed = source.toDF(*[f"_c{i}" for i in range(len(header))])
    exprs = []
    for col in table.columns:
        if col.name in positions:
            i = positions[col.name]
            text = _as_string(F.col(f"_c{i}"), source.schema[i].dataType, col.kind)
            text = F.regexp_replace(text, _BLANKS, "")
            exprs.append(F.when(text != "", text).alias(col.name))
        else:
            exprs.append(F.lit(None).cast(T.StringType()).alias(col.name))
    raw = renamed.select(*exprs)
    # Each typed value is computed once, next to its text, for all the checks that use it.
    checked = raw.select("*", *[_typed(c).alias(_typed_name(c.name)) for c in table.columns])

    present = [c for c in table.columns if c.name in positions]
    checks = _row_checks(table, present)
    aggs = [F.count(F.lit(1)).alias("rows")]
    aggs += [F.sum(F.when(cond, 1).otherwise(0)).alias(f"check{i}") for i, (_, _, cond) in enumerate(checks)]
    check_key = bool(table.key) and all(k in positions for k in table.key)
    if check_key:
        key_complete = functools.reduce(operator.and_, [_value(k).isNotNull() for k in table.key])
        key = F.struct(*[_value(k) for k in table.key])
        aggs += [
            F.sum(F.when(key_complete, 1).otherwise(0)).alias("keyed_rows"),
            F.count_distinct(F.when(key_complete, key)).alias("distinct_keys"),
        ]
    check_head_office = (
        table.name == "sirene_etablissements" and {"siren", "etablissementSiege"} <= positions.keys()
    )
    if check_head_office:
        siren = _value("siren")
        head_office_siren = F.when(_value("etablissementSiege"), siren)
        aggs += [
            F.count_distinct(siren).alias("sirens"),
            F.count(head_office_siren).alias("head_offices"),
            F.count_distinct(head_office_siren).alias("sirens_with_head_office"),
        ]
    totals = checked.agg(*aggs).first()
    rows = totals["rows"]

    for name in sorted(missing, key=table.column_names.index):
        issues.append(ValidationIssue(file, name, "required column missing", rows))
    for i, (column, problem, cond) in enumerate(checks):
        if totals[f"check{i}"]:
            shown = _example_columns(table, present, column)
            example = checked.filter(cond).select(*shown).limit(1).first()
            issues.append(ValidationIssue(file, column, problem, totals[f"check{i}"], _format_row(example)))
    if rows == 0 and table.required:
        issues.append(ValidationIssue(file, None, "required table is empty (0 rows)", 0))
    elif rows == 0:
        logger.warning("Optional table %s is empty: its features will be null.", table.name)

    typed = raw.select(*[_typed(c).alias(c.name) for c in table.columns])
    if check_key and rows:
        if totals["keyed_rows"] < rows:
            logger.warning(
                "%s: %d row(s) have an empty or invalid part of the key (%s), not checked for duplicates.",
                file, rows - totals["keyed_rows"], ", ".join(table.key),
            )
        if totals["distinct_keys"] < totals["keyed_rows"]:
            issues.append(_duplicate_issue(typed, table, file))
    if check_head_office and rows and not (
        totals["sirens"] == totals["head_offices"] == totals["sirens_with_head_office"]
    ):
        issues.append(_head_office_issue(typed, file))
    return issues, typed, rows


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
    """Map each contract column to its position in the header (exact name, then case-insensitive)."""
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


def _as_string(col: SparkColumn, dtype: T.DataType, kind: str) -> SparkColumn:
    """Render a source column (CSV string or typed parquet) as the string it stands for."""
    if isinstance(dtype, T.StringType):
        return col
    text = col.cast(T.StringType())
    if kind == DATE and isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
        return col.cast(T.DateType()).cast(T.StringType())
    if kind != FLOAT and isinstance(dtype, T.DecimalType):
        whole = col.try_cast(T.DecimalType(38, 0))
        return F.when(col == whole, whole.cast(T.StringType())).otherwise(text)
    if kind != FLOAT and isinstance(dtype, (T.FloatType, T.DoubleType)):
        # Whole numbers in a float column: ids or counts that went through a nullable float.
        whole = col.try_cast(T.DecimalType(38, 0))
        return (
            F.when(F.isnan(col), F.lit(None).cast(T.StringType()))
            .when((col == F.round(col, 0)) & whole.isNotNull(), whole.cast(T.StringType()))
            .otherwise(text)
        )
    return text


def _typed(col: Column) -> SparkColumn:
    """The typed value of a contract column from its trimmed string; null when it does not parse."""
    text = F.col(col.name)
    if col.kind in ID_WIDTH:
        width = ID_WIDTH[col.kind]
        return F.when(text.rlike("^[0-9]+$") & (F.length(text) <= width), F.lpad(text, width, "0"))
    if col.kind == DATE:
        return F.when(text.rlike(_ISO_DATE), F.try_to_date(text, "yyyy-MM-dd"))
    if col.kind == BOOL:
        lower = F.lower(text)
        return F.when(lower.isin("true", "1"), F.lit(True)).when(lower.isin("false", "0"), F.lit(False))
    if col.kind == INT:
        digits = F.regexp_extract(text, r"^([+-]?[0-9]+)", 1)
        return F.when(text.rlike(_INTEGER), digits.try_cast(T.IntegerType()))
    if col.kind == FLOAT:
        value = text.try_cast(T.DoubleType())
        finite = ~F.isnan(value) & (F.abs(value) != F.lit(float("inf")))
        return F.when(text.rlike(_NUMBER) & finite, value)
    return text


def _typed_name(name: str) -> str:
    return f"typed__{name}"


def _value(name: str) -> SparkColumn:
    """The typed value of a column in the frame being checked."""
    return F.col(_typed_name(name))


def _row_checks(table: Table, present: list[Column]) -> list[tuple[str, str, SparkColumn]]:
    """Row-level checks of a table as (column, problem, condition true on a bad row)."""
    checks = []
    for col in present:
        text, value = F.col(col.name), _value(col.name)
        unparsed = text.isNotNull() & value.isNull()
        if col.kind in ID_WIDTH:
            width, digits = ID_WIDTH[col.kind], text.rlike("^[0-9]+$")
            checks.append((col.name, "identifier has non-digit characters", text.isNotNull() & ~digits))
            checks.append((col.name, f"identifier longer than {width} digits", digits & (F.length(text) > width)))
        elif col.kind == DATE:
            checks.append((col.name, "date does not parse as ISO yyyy-MM-dd", unparsed))
        elif col.kind == BOOL:
            checks.append((col.name, "not a boolean (true/false/1/0)", unparsed))
        elif col.kind == INT:
            checks.append((col.name, "not an integer (32-bit)", unparsed))
        elif col.kind == FLOAT:
            checks.append((col.name, "not a finite number", unparsed & (F.lower(text) != "nan")))
        if col.non_negative:
            checks.append((col.name, "negative value where the contract requires >= 0", value < 0))
        if col.bounds is not None:
            low, high = col.bounds
            checks.append((col.name, f"value outside [{low:g}, {high:g}]", (value < low) | (value > high)))
    names = {c.name for c in present}
    if {"siren", "siret"} <= names:
        checks.append((
            "siren", "siren is not the first 9 digits of siret",
            _value("siren") != F.substring(_value("siret"), 1, 9),
        ))
    return checks


def _duplicate_issue(typed: DataFrame, table: Table, file: str) -> ValidationIssue:
    """Count and show the duplicated unique keys (after padding) of a table known to have some."""
    key = list(table.key)
    complete = typed.filter(functools.reduce(operator.and_, [F.col(k).isNotNull() for k in key]))
    dups = complete.groupBy(*key).count().filter(F.col("count") > 1)
    summary = dups.agg(
        F.count(F.lit(1)).alias("keys"), F.sum("count").alias("rows"), F.min(F.struct(*key)).alias("example")
    ).first()
    return ValidationIssue(
        file, ", ".join(key), f"duplicate unique key: {summary['keys']} key value(s) appear more than once",
        summary["rows"], _format_row(summary["example"]),
    )


def _head_office_issue(typed: DataFrame, file: str) -> ValidationIssue:
    """Count and show the sirens of ``sirene_etablissements`` without exactly one head office."""
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
    return ValidationIssue(
        file, "etablissementSiege",
        f"{summary['sirens']} siren(s) without exactly one head office (etablissementSiege=true)",
        summary["rows"], _format_row(summary["example"]),
    )


def _example_columns(table: Table, present: list[Column], failing: str) -> list[str]:
    """Columns shown in an example row: all of them, or identifying ones plus the failing one."""
    if len(present) <= _MAX_EXAMPLE_COLUMNS:
        return [c.name for c in present]
    keep = set(table.key) | {c.name for c in present if c.kind in ID_WIDTH or c.kind == DATE} | {failing}
    return [c.name for c in present if c.name in keep]


def _format_row(row) -> str | None:
    """``col=value, ...`` for a Row (null shown as ``null``)."""
    if row is None:
        return None
    return ", ".join(f"{k}={'null' if v is None else v}" for k, v in row.asDict().items())
