"""What ingestion knows of each logical type of the data contract: one object per type.

A contract column's kind (:mod:`sf_ml.contract`: ``siren``, ``siret``, ``date``, ``bool``, ``int``,
``float``, ``string``) names one :class:`ColumnType` of :data:`COLUMN_TYPES`, which holds:

- its Spark type once ingested (``spark_type``);
- its readings of a trimmed text value (SQL text, see :mod:`sf_ml.sqltext`): the reference
  reading (``reference_sql``: regular expressions, the contract's rule as written) and the guarded
  casts (``guarded_sql``: equal to the reference on every value, cheaper on the usual ones);
- whether Spark's CSV reader parses it natively (``native``), the characters on which that
  parse and the contract differ (``forbidden``) and the native values the reference reading must
  settle (``suspicious_sql``);
- its row checks, with the problem each reports (``checks``);
- the text a value of a typed (parquet) source column stands for (``as_text``).

Adding a type to the contract means adding one object here; :mod:`sf_ml.ingest` applies them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pyspark.sql import Column as SparkColumn
from pyspark.sql import functions as F
from pyspark.sql import types as T

from sf_ml import sqltext
from sf_ml.contract import BOOL, DATE, FLOAT, ID_WIDTH, INT, STRING

_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_INTEGER = r"^[+-]?[0-9]+(\.0*)?$"
_NUMBER = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"
_INFINITY = "CAST('Infinity' AS DOUBLE)"


@dataclass(frozen=True)
class ColumnType:
    """A logical column type of the contract; the base reads values as text (``string``).

    Every method takes SQL text: ``text`` the trimmed text of a value (null when empty),
    ``value`` its typed value (the column holding the result of a reading).

    Args:
        kind: The contract's name of the type (a key of :data:`COLUMN_TYPES`).
    """

    kind: str

    spark_type: ClassVar[T.DataType] = T.StringType()
    # Parsed by Spark's CSV reader on the native path of sf_ml.ingest.
    native: ClassVar[bool] = False
    # Printable ASCII characters that keep a CSV file holding this type off the native path.
    forbidden: ClassVar[str] = ""
    # Shown in the example rows of wide tables (see sf_ml.ingest._example_columns).
    identifying: ClassVar[bool] = False
    # The problem reported for a value that does not read as this type; None: every value reads.
    problem: ClassVar[str | None] = None
    # A float or decimal source column of whole numbers is read as those integers.
    whole_numbers: ClassVar[bool] = True

    def reference_sql(self, text: str) -> str:
        """The typed value, read as the contract's rule says.

        Args:
            text: The trimmed text.

        Returns:
            SQL of the typed value; null when the text does not read as this type.
        """
        return text

    def guarded_sql(self, text: str, printable: bool = False) -> str:
        """The typed value of :meth:`reference_sql`, cheaper: casts under a few byte comparisons.

        Args:
            text: The trimmed text.
            printable: The text is known to be trimmed printable ASCII (the native path's files).

        Returns:
            SQL equal to :meth:`reference_sql` on every value.
        """
        return text

    def checks(self, text: str, value: str, cheap: bool = False) -> list[tuple[str, str]]:
        """Row checks of a value: (problem, SQL condition true on a bad row).

        Args:
            text: The trimmed text.
            value: The typed value.
            cheap: Give conditions without regular expressions, true on exactly the rows failing
                a check, for flagging rows (their problem is not reported).

        Returns:
            The checks, in the order they are reported.
        """
        return [] if self.problem is None else [(self.problem, _unparsed(text, value))]

    def suspicious_sql(self, value: str) -> str | None:
        """Condition on a natively parsed value that the reference reading must settle.

        Args:
            value: The value parsed by Spark's CSV reader.

        Returns:
            SQL true on a suspicious value; None when every native value is the reference's.
        """
        return None

    def as_text(self, col: SparkColumn, dtype: T.DataType) -> SparkColumn:
        """The text a value of a source column of Spark type ``dtype`` stands for.

        Whole numbers in a float or decimal column (ids or counts that went through a nullable
        float) are read as those integers, unless ``whole_numbers`` is false.

        Args:
            col: The source column.
            dtype: Its Spark type.

        Returns:
            The column as text (``col`` itself for a string column).
        """
        if isinstance(dtype, T.StringType):
            return col
        text = col.cast(T.StringType())
        if self.whole_numbers and isinstance(dtype, T.DecimalType):
            whole = col.try_cast(T.DecimalType(38, 0))
            return F.when(col == whole, whole.cast(T.StringType())).otherwise(text)
        if self.whole_numbers and isinstance(dtype, (T.FloatType, T.DoubleType)):
            whole = col.try_cast(T.DecimalType(38, 0))
            return (
                F.when(F.isnan(col), F.lit(None).cast(T.StringType()))
                .when((col == F.round(col, 0)) & whole.isNotNull(), whole.cast(T.StringType()))
                .otherwise(text)
            )
        return text


@dataclass(frozen=True)
class Identifier(ColumnType):
    """A siren or siret: digits only in text, at most ``width`` of them, left-padded with zeros.

    Args:
        kind: ``siren`` or ``siret``.
        width: Number of digits once padded.
    """

    width: int
    identifying: ClassVar[bool] = True

    def reference_sql(self, text: str) -> str:
        width = self.width
        return (
            f"CASE WHEN {text} RLIKE '^[0-9]+$' AND length({text}) <= {width}"
            f" THEN lpad({text}, {width}, '0') END"
        )

    def guarded_sql(self, text: str, printable: bool = False) -> str:
        # First and last chars are digits (nothing for the cast to trim, no sign), no '.' and
        # the 64-bit cast reads only digits in between, so the text is digits only; at most
        # 14 bytes cannot overflow. Trimmed printable ASCII has nothing for the cast to trim
        # whatever its last char (the cast trims only control characters, DEL and spaces).
        ends = f"{text} >= '0' AND {text} < ':'" + ("" if printable else f" AND {_last_digit(text)}")
        fast = (
            f"{ends} AND octet_length({text}) <= {self.width}"
            f" AND NOT contains({text}, '.') AND try_cast({text} AS BIGINT) IS NOT NULL"
        )
        return _guarded(fast, f"lpad({text}, {self.width}, '0')", self.reference_sql(text))

    def checks(self, text: str, value: str, cheap: bool = False) -> list[tuple[str, str]]:
        if cheap:  # no typed value: true on exactly the rows failing either check
            return [("identifier is not valid", _unparsed(text, value))]
        digits = f"{text} RLIKE '^[0-9]+$'"
        return [
            ("identifier has non-digit characters", f"{text} IS NOT NULL AND NOT ({digits})"),
            (f"identifier longer than {self.width} digits", f"{digits} AND length({text}) > {self.width}"),
        ]


class Date(ColumnType):
    """An ISO ``yyyy-MM-dd`` date."""

    spark_type = T.DateType()
    native = True
    forbidden = "+"  # Spark's date parser reads +02020-01-05 as 2020-01-05
    identifying = True
    problem = "date does not parse as ISO yyyy-MM-dd"

    def reference_sql(self, text: str) -> str:
        # On ISO-shaped text the cast parses exactly as to_date(yyyy-MM-dd), several times faster.
        return f"CASE WHEN {text} RLIKE {sqltext.string(_ISO_DATE)} THEN try_cast({text} AS DATE) END"

    def guarded_sql(self, text: str, printable: bool = False) -> str:
        # 10 bytes, '-' at 5 and 8, a digit last: the date cast then needs a 4-digit year in
        # 1-4 (a sign or a trimmed blank leaves 3), a 2-digit month in 6-7 and a 2-digit day
        # (a ' ' or 'T' in 9 leaves none), i.e. exactly yyyy-MM-dd. A cast to null is null both ways.
        fast = (
            f"octet_length({text}) = 10 AND substring({text}, 5, 1) = '-'"
            f" AND substring({text}, 8, 1) = '-' AND {_last_digit(text)}"
        )
        return _guarded(fast, f"try_cast({text} AS DATE)", self.reference_sql(text))

    def suspicious_sql(self, value: str) -> str | None:
        return f"{value} < DATE'0001-01-01'"  # a year before 1, from a leading '-'

    def as_text(self, col: SparkColumn, dtype: T.DataType) -> SparkColumn:
        if isinstance(dtype, (T.TimestampType, T.TimestampNTZType)):
            return col.cast(T.DateType()).cast(T.StringType())
        return super().as_text(col, dtype)


class Boolean(ColumnType):
    """``true``/``false``/``1``/``0``, case-insensitive."""

    spark_type = T.BooleanType()
    problem = "not a boolean (true/false/1/0)"

    def reference_sql(self, text: str) -> str:
        return (
            f"CASE WHEN lower({text}) IN ('true', '1') THEN true"
            f" WHEN lower({text}) IN ('false', '0') THEN false END"
        )

    def guarded_sql(self, text: str, printable: bool = False) -> str:
        return (
            f"CASE WHEN {text} = 'true' OR {text} = '1' THEN true"
            f" WHEN {text} = 'false' OR {text} = '0' THEN false ELSE {self.reference_sql(text)} END"
        )


class Integer(ColumnType):
    """A 32-bit integer: ``12`` and ``12.0``, not ``12.5``."""

    spark_type = T.IntegerType()
    native = True
    problem = "not an integer (32-bit)"

    def reference_sql(self, text: str) -> str:
        return (
            f"CASE WHEN {text} RLIKE {sqltext.string(_INTEGER)}"
            f" THEN try_cast(substring_index({text}, '.', 1) AS INT) END"
        )

    def guarded_sql(self, text: str, printable: bool = False) -> str:
        # The int cast trims blanks and control characters and takes a sign; a first char
        # among + - 0-9 (the others fail), a last digit and no '.' leave [+-]?[0-9]+, read
        # the same way by both.
        value = f"try_cast({text} AS INT)"
        fast = (
            f"{_first_ok(text)} AND {_last_digit(text)} AND NOT contains({text}, '.')"
            f" AND {value} IS NOT NULL"
        )
        return _guarded(fast, value, self.reference_sql(text))


class Float(ColumnType):
    """A finite decimal-point number with an optional exponent; ``NaN`` reads as null."""

    spark_type = T.DoubleType()
    native = True
    forbidden = "dDfFxX"  # Java's parseDouble takes d/f suffixes and hexadecimal (0x1p3)
    problem = "not a finite number"
    whole_numbers = False

    def reference_sql(self, text: str) -> str:
        value = f"try_cast({text} AS DOUBLE)"
        return (
            f"CASE WHEN {text} RLIKE {sqltext.string(_NUMBER)} AND NOT isnan({value})"
            f" AND abs({value}) != {_INFINITY} THEN {value} END"
        )

    def guarded_sql(self, text: str, printable: bool = False) -> str:
        # Java's parseDouble also takes surrounding chars <= ' ', a d/f suffix, hex (0x...p..),
        # NaN and Infinity: a first char among + - . 0-9, a last char among . 0-9 and no 'x'
        # leave decimal numbers with an optional exponent, the language of _NUMBER.
        value, last = f"try_cast({text} AS DOUBLE)", _last(text)
        fast = (
            f"{_first_ok(text)} AND ({last} >= '.' AND {last} <= '9') AND NOT contains({text}, 'x')"
            f" AND NOT contains({text}, 'X') AND {value} IS NOT NULL"
        )
        finite = f"CASE WHEN abs({value}) != {_INFINITY} THEN {value} END"
        return _guarded(fast, finite, self.reference_sql(text))

    def checks(self, text: str, value: str, cheap: bool = False) -> list[tuple[str, str]]:
        return [(self.problem, f"{_unparsed(text, value)} AND lower({text}) != 'nan'")]

    def suspicious_sql(self, value: str) -> str | None:
        return f"isnan({value}) OR abs({value}) = {_INFINITY}"


COLUMN_TYPES: dict[str, ColumnType] = {
    **{kind: Identifier(kind, width) for kind, width in ID_WIDTH.items()},
    DATE: Date(DATE),
    BOOL: Boolean(BOOL),
    INT: Integer(INT),
    FLOAT: Float(FLOAT),
    STRING: ColumnType(STRING),
}


def _unparsed(text: str, value: str) -> str:
    """A text that does not read as its type."""
    return f"{text} IS NOT NULL AND {value} IS NULL"


def _guarded(fast: str, value: str, reference: str) -> str:
    """``value`` where the guard ``fast`` holds, else the reference reading."""
    return f"CASE WHEN {fast} THEN {value} ELSE {reference} END"


def _last(text: str) -> str:
    return f"substring({text}, -1, 1)"


def _last_digit(text: str) -> str:
    return f"({_last(text)} >= '0' AND {_last(text)} <= '9')"


def _first_ok(text: str) -> str:
    """First character in ``+ , - . / 0-9``."""
    return f"({text} >= '+' AND {text} < ':')"
