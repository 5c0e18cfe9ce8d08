"""Calendar windows per company, vectorised: carried states, rolling counts/max/means, lags.

Spark's window operator evaluates every frame row by row through generic projections; on the
panel (a few dozen frames over every company-month) it was most of the build time. Here the same
windows run as NumPy array operations over a whole partition at once, inside ``mapInArrow``:
rows sorted by (siren, month) get a strictly increasing key ``company * 2**20 + month``, so
"the row of the same company exactly d months earlier" is one ``searchsorted`` for all rows.
Everything is linear in the rows (times the window length, at most a few dozen), and memory is
bounded: a partition is processed in chunks of whole companies.

Semantics are those of Spark range frames over a month index (calendar-correct whatever months
are missing): nulls are ignored by ``count``/``max``/``mean`` and propagate through ``lag``,
``diff`` and ``ratio``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

KINDS = ("carry", "count", "max", "mean", "lag", "diff", "ratio")
# Rows gathered before a chunk is processed (cut at the last company boundary).
CHUNK_ROWS = 200_000
_MONTH_BITS = 20  # month indexes (year * 12 + month - 1) stay below 2**20 until year 87,000


@dataclass(frozen=True)
class WindowOp:
    """One computed column, evaluated over the rows of each company ordered by month.

    Args:
        output: Name of the column produced.
        kind: ``carry`` (latest value so far, from the rows where ``known`` is true, else
            ``default``), ``count`` (non-null values over the last ``months`` months, current
            included), ``max``, ``mean`` (idem), ``lag`` (value of the month exactly ``months``
            earlier, null when that month has no row), ``diff`` (value minus its lag), ``ratio``
            (sum of ``sources`` over ``denominator``, null for a zero or null denominator).
        source: Input column (earlier outputs may be used).
        months: Window length or lag, in months.
        known: For ``carry``: boolean column of the rows that hold a state (default: the rows
            where ``source`` is not null).
        default: For ``carry``: value before the first known row.
        sources: For ``ratio``: the numerator's terms.
        denominator: For ``ratio``: the denominator column.
    """

    output: str
    kind: str
    source: str = ""
    months: int = 0
    known: str | None = None
    default: float | None = None
    sources: tuple[str, ...] = ()
    denominator: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown window kind {self.kind!r}; one of {KINDS}")
        if self.kind in ("count", "max", "mean", "lag", "diff") and self.months < 1:
            raise ValueError(f"{self.output}: {self.kind} needs months >= 1")

    def inputs(self) -> set[str]:
        """Columns this operation reads."""
        used = {self.source} | set(self.sources) | {self.denominator, self.known or ""}
        return used - {""}


class _Offsets:
    """Positions of the rows exactly ``d`` months earlier, computed once per ``d``."""

    def __init__(self, key: np.ndarray):
        self.key = key
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def at(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        if d not in self._cache:
            key, wanted = self.key, self.key - d
            # With one row per month, the row d months earlier is at most d rows back, and
            # exactly d rows back where the company's months are dense: search only the others.
            index = np.maximum(np.arange(len(key)) - d, 0)
            missed = np.flatnonzero(key[index] != wanted)
            if len(missed):
                index[missed] = np.minimum(np.searchsorted(key, wanted[missed]), len(key) - 1)
            self._cache[d] = index, key[index] == wanted
        return self._cache[d]

    def values(self, column: np.ndarray, d: int) -> np.ndarray:
        """``column`` of the row d months earlier, NaN when there is none."""
        index, found = self.at(d)
        return np.where(found, column[index], np.nan)


def monthly_windows(
    company: np.ndarray, month: np.ndarray, columns: dict[str, np.ndarray], ops: Iterable[WindowOp]
) -> dict[str, np.ndarray]:
    """Evaluate ``ops`` over rows sorted by (company, month), one row per company and month.

    Args:
        company: Company number per row (non-decreasing).
        month: Month index per row (strictly increasing within a company).
        columns: Input columns as float arrays (NaN = null) or boolean arrays.
        ops: Operations, evaluated in order (each may read earlier outputs).

    Returns:
        The output arrays by name (float, NaN = null; ``count`` as int64).
    """
    n = len(month)
    key = (company.astype(np.int64) << _MONTH_BITS) + month.astype(np.int64)
    if n > 1 and not (np.diff(key) > 0).all():
        raise ValueError("rows must be sorted by (siren, month) with one row per company and month")
    starts = np.r_[True, company[1:] != company[:-1]] if n else np.zeros(0, dtype=bool)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else np.zeros(0, np.int64)
    offsets = _Offsets(key)
    values = dict(columns)
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for op in ops:
            result = _evaluate(op, values, offsets, group_start, n)
            values[op.output] = out[op.output] = result
    return out


def _evaluate(op: WindowOp, values: dict, offsets: _Offsets, group_start: np.ndarray, n: int) -> np.ndarray:
    if op.kind == "ratio":
        numerator = sum(values[s] for s in op.sources) if op.sources else np.ones(n)
        denominator = values[op.denominator]
        return np.where(np.isnan(denominator) | (denominator == 0), np.nan, numerator / denominator)
    column = values[op.source]
    if op.kind == "carry":
        known = values[op.known] if op.known else ~np.isnan(column)
        latest = np.maximum.accumulate(np.where(known, np.arange(n), -1)) if n else np.zeros(0, np.int64)
        valid = latest >= group_start
        default = np.nan if op.default is None else op.default
        return np.where(valid, column[np.maximum(latest, 0)] if n else column, default)
    if op.kind == "lag":
        return offsets.values(column, op.months)
    if op.kind == "diff":
        return column - offsets.values(column, op.months)
    # Rolling windows over the last `months` months, oldest first (Spark's summation order).
    total, count, largest = np.zeros(n), np.zeros(n, dtype=np.int64), np.full(n, np.nan)
    for d in range(op.months - 1, -1, -1):
        shifted = offsets.values(column, d) if d else column
        present = ~np.isnan(shifted)
        count += present
        if op.kind == "mean":
            total += np.where(present, shifted, 0.0)
        elif op.kind == "max":
            largest = np.fmax(largest, shifted)
    if op.kind == "count":
        return count
    if op.kind == "max":
        return largest
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def arrow_partition_windows(
    batches: Iterator, ops: list[WindowOp], keep: str | None, drop: Iterable[str] = ()
) -> Iterator:
    """``mapInArrow`` body: the rows of one partition (sorted by siren, month) with ``ops`` added.

    Rows are gathered into chunks of whole companies (a company's rows never span two chunks),
    each evaluated by :func:`monthly_windows`.

    Args:
        batches: Arrow record batches of the partition, with ``siren``, ``month`` and the inputs.
        ops: Operations to evaluate.
        keep: Boolean column: only rows where it is true are returned (None: all rows).
        drop: Input columns left out of the result.

    Yields:
        Record batches: the input columns (less ``drop``) and every op output whose name does not
        start with ``__``.
    """
    import pyarrow as pa

    pending: list = []
    rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        if rows >= CHUNK_ROWS:
            table = pa.Table.from_batches(pending)
            cut = _last_company_start(table)
            if cut > 0:
                yield from _evaluate_chunk(table.slice(0, cut), ops, keep, drop)
                pending, rows = table.slice(cut).to_batches(), table.num_rows - cut
    if pending:
        yield from _evaluate_chunk(pa.Table.from_batches(pending), ops, keep, drop)


def _last_company_start(table) -> int:
    """Row index where the table's last company starts."""
    import pyarrow.compute as pc

    siren = table.column("siren")
    last = siren[len(siren) - 1]
    # Rows are sorted by siren: the last company's rows are those equal to the last value.
    return len(siren) - pc.sum(pc.equal(siren, last)).as_py()


def _evaluate_chunk(table, ops: list[WindowOp], keep: str | None, drop: Iterable[str]) -> Iterator:
    import pyarrow as pa
    import pyarrow.compute as pc

    siren = table.column("siren").combine_chunks()
    n = len(siren)
    changes = pc.not_equal(siren.slice(1), siren.slice(0, n - 1)).to_numpy(zero_copy_only=False) if n > 1 else []
    company = np.r_[0, np.cumsum(changes)].astype(np.int64) if n else np.zeros(0, np.int64)
    month = table.column("month").to_numpy().astype(np.int64)
    needed = set().union(*(op.inputs() for op in ops)) - {op.output for op in ops}
    columns = {}
    for name in needed:
        column = table.column(name)
        if pa.types.is_boolean(column.type):
            columns[name] = column.fill_null(False).to_numpy(zero_copy_only=False)
        else:
            columns[name] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    results = monthly_windows(company, month, columns, ops)
    mask = table.column(keep).fill_null(False).to_numpy(zero_copy_only=False) if keep else None
    if mask is not None:
        table = table.filter(pa.array(mask))
    drop = set(drop)
    arrays, names = [], []
    for name in table.column_names:
        if name not in drop:
            arrays.append(table.column(name))
            names.append(name)
    for op in ops:
        if op.output.startswith("__"):
            continue
        values = results[op.output] if mask is None else results[op.output][mask]
        arrays.append(pa.array(values, type=pa.int64()) if op.kind == "count" else pa.array(values, from_pandas=True))
        names.append(op.output)
    yield from pa.Table.from_arrays(arrays, names=names).to_batches()


def output_fields(input_fields: list, ops: list[WindowOp], drop: Iterable[str] = ()) -> list:
    """Spark fields of :func:`arrow_partition_windows`'s result, given the input's fields."""
    from pyspark.sql import types as T

    drop = set(drop)
    fields = [f for f in input_fields if f.name not in drop]
    for op in ops:
        if not op.output.startswith("__"):
            kind = T.LongType() if op.kind == "count" else T.DoubleType()
            fields.append(T.StructField(op.output, kind, True))
    return fields
