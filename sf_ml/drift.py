"""Population drift between two scorings: fixed quantile bins and the population stability index.

A scoring run stores, for every model feature, the edges of its quantile bins and the share of
companies in each bin (:func:`profile`, logged as ``drift/profile.json``). The next scoring of the
same model counts its own companies in those same edges (:func:`bin_proportions`) and compares the
two distributions with :func:`psi`, without reloading the earlier data.

Bins of a feature with edges ``e_1 < ... < e_k`` are ``(-inf, e_1], (e_1, e_2], ..., (e_k, +inf)``
plus a last bin for missing values (null or NaN): ``k + 2`` proportions summing to 1. Edges are
de-duplicated quantiles, so a spike (many zeros) is one bin instead of many empty ones.

Everything that touches Spark is one pass over the frame (the quantiles of every feature in one
aggregation, the bin counts of every feature in one ``mapInArrow``); nothing is collected but
aggregated values.

The bin-counting closure imports numpy and pyarrow itself: it is pickled by value and runs on executors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pyspark.sql import functions as F

DEFAULT_BINS = 10
EPSILON = 1e-4  # floor of a bin's share in the PSI (an empty bin would make it infinite)
PROFILE_VERSION = 1
ACCURACY = 1_000  # percentile_approx: rank error about rows / ACCURACY, plenty for deciles


def psi(expected_props: Sequence[float], actual_props: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of two distributions over the same bins.

    ``PSI = sum_i (a_i - e_i) * ln(a_i / e_i)``, each share floored at ``epsilon``. Rule of thumb:
    < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 significant shift.

    Args:
        expected_props: Shares of the reference population per bin (sum 1).
        actual_props: Shares of the current population in the same bins.
        epsilon: Floor applied to every share before the logarithm.

    Returns:
        The index (>= 0; 0 for identical distributions).

    Raises:
        ValueError: Different numbers of bins.
    """
    if len(expected_props) != len(actual_props):
        raise ValueError(f"psi: {len(expected_props)} expected bins but {len(actual_props)} actual bins")
    total = 0.0
    for expected, actual in zip(expected_props, actual_props):
        e, a = max(float(expected), epsilon), max(float(actual), epsilon)
        total += (a - e) * math.log(a / e)
    return total


def quantile_levels(n_bins: int = DEFAULT_BINS) -> list[float]:
    """The inner quantile levels of ``n_bins`` equal-frequency bins (``0.1 ... 0.9`` for 10)."""
    if n_bins < 2:
        raise ValueError("n_bins must be at least 2")
    return [round(i / n_bins, 10) for i in range(1, n_bins)]


def _value_sql(column: str) -> str:
    """The column as a double, NaN turned into null (NaN counts as missing)."""
    value = "CAST(`" + column.replace("`", "``") + "` AS DOUBLE)"
    return f"(CASE WHEN isnan({value}) THEN NULL ELSE {value} END)"


def _clean_edges(values: Iterable[Any] | None) -> list[float]:
    if not values:
        return []
    finite = {float(v) for v in values if v is not None and math.isfinite(float(v))}
    return sorted(finite)


def quantile_edges(frame, columns: Sequence[str], n_bins: int = DEFAULT_BINS) -> dict[str, list[float]]:
    """Quantile bin edges of several numeric columns, in one aggregation (``percentile_approx``).

    NaN counts as missing (ignored, like null).

    Args:
        frame: Spark frame.
        columns: Numeric columns (cast to double; nulls and NaNs ignored).
        n_bins: Number of equal-frequency bins wanted (fewer on ties).

    Returns:
        ``{column: sorted distinct finite edges}`` (empty for an all-missing column).
    """
    if not columns:
        return {}
    levels = ", ".join(repr(level) for level in quantile_levels(n_bins))
    row = frame.agg(*(
        F.expr(f"percentile_approx({_value_sql(column)}, array({levels}), {ACCURACY})").alias(f"q{i}")
        for i, column in enumerate(columns)
    )).first()
    return {column: _clean_edges(row[f"q{i}"]) for i, column in enumerate(columns)}


def bin_index(value: float | None, edges: Sequence[float]) -> int:
    """The bin of one value (pure Python twin of :func:`bin_proportions`): ``len(edges) + 1`` if missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return len(edges) + 1
    return sum(1 for edge in edges if value > edge)


def bin_proportions(frame, bins: Mapping[str, tuple[str, Sequence[float]]]) -> tuple[int, dict[str, list[float]]]:
    """Share of the rows of ``frame`` in each bin of several binnings, in one pass.

    Each partition counts its rows per bin with numpy (``mapInArrow``: a binary search per value
    and key), and only those counts are summed: the frame is never collected, and the cost does
    not grow with the number of expressions as a SQL aggregation of one counter per bin would.

    Args:
        frame: Spark frame.
        bins: ``{key: (column, edges)}``: the same column may appear under several keys (its own
            edges and a reference's).

    Returns:
        ``(rows, {key: proportions})``: ``len(edges) + 2`` shares per key (the last one for
        missing values); all zeros when ``frame`` is empty.
    """
    keys = list(bins)
    columns = list(dict.fromkeys(column for column, _ in bins.values()))
    specs = [(columns.index(column), [float(e) for e in edges]) for column, edges in (bins[k] for k in keys)]
    sizes = [len(edges) + 2 for _, edges in specs]

    def count(batches):
        # Self-contained (pickled by value): executors need numpy and pyarrow only.
        import numpy
        import pyarrow

        totals = [numpy.zeros(size, dtype=numpy.int64) for size in sizes]
        rows = 0
        for batch in batches:
            rows += batch.num_rows
            values = [batch.column(i).to_numpy(zero_copy_only=False).astype(numpy.float64)
                      for i in range(batch.num_columns)]  # nulls become NaN: the missing bin
            for k, (i, edges) in enumerate(specs):
                v = values[i]
                index = numpy.where(numpy.isnan(v), len(edges) + 1,
                                    numpy.searchsorted(numpy.asarray(edges), v, side="left"))
                totals[k] += numpy.bincount(index, minlength=sizes[k])
        k_column = numpy.concatenate([numpy.full(size, k, dtype=numpy.int32) for k, size in enumerate(sizes)]
                                     + [numpy.array([-1], dtype=numpy.int32)])
        b_column = numpy.concatenate([numpy.arange(size, dtype=numpy.int32) for size in sizes]
                                     + [numpy.array([0], dtype=numpy.int32)])
        n_column = numpy.concatenate(totals + [numpy.array([rows], dtype=numpy.int64)])
        yield pyarrow.RecordBatch.from_arrays(
            [pyarrow.array(k_column), pyarrow.array(b_column), pyarrow.array(n_column)], names=["k", "b", "n"])

    values = frame.select(*(F.col(f"`{c}`").cast("double").alias(f"c{i}") for i, c in enumerate(columns)))
    counted = (values.mapInArrow(count, "k int, b int, n long")
               .groupBy("k", "b").agg(F.sum("n").alias("n")).collect())
    counts = {key: [0] * size for key, size in zip(keys, sizes)}
    rows = 0
    for row in counted:
        if row["k"] < 0:
            rows = int(row["n"])
        else:
            counts[keys[row["k"]]][row["b"]] = int(row["n"])
    return rows, {key: [n / rows if rows else 0.0 for n in values] for key, values in counts.items()}


def profile(frame, columns: Sequence[str], n_bins: int = DEFAULT_BINS,
            reference: Mapping[str, Any] | None = None) -> tuple[dict[str, Any], dict[str, list[float]]]:
    """The binned distribution of ``columns`` and, optionally, their shares in a reference's bins.

    Two passes in all: the quantile edges, then the counts of every bin (own and
    reference edges together).

    Args:
        frame: Spark frame (e.g. the companies of one scoring).
        columns: Numeric columns.
        n_bins: Equal-frequency bins per column.
        reference: An earlier :func:`profile` (its ``features`` edges are reused).

    Returns:
        ``(profile, in_reference)``: ``profile`` is ``{"version", "n_bins", "rows", "features":
        {column: {"edges", "proportions"}}}`` (JSON-ready); ``in_reference`` is
        ``{column: proportions in the reference's edges}`` for the columns both share.
    """
    edges = quantile_edges(frame, columns, n_bins)
    bins: dict[str, tuple[str, Sequence[float]]] = {f"own:{c}": (c, edges[c]) for c in columns}
    shared = []
    if reference:
        for column in columns:
            spec = reference.get("features", {}).get(column)
            if spec is not None:
                bins[f"ref:{column}"] = (column, spec["edges"])
                shared.append(column)
    rows, shares = bin_proportions(frame, bins)
    result = {
        "version": PROFILE_VERSION,
        "n_bins": n_bins,
        "rows": rows,
        "features": {c: {"edges": edges[c], "proportions": shares[f"own:{c}"]} for c in columns},
    }
    return result, {c: shares[f"ref:{c}"] for c in shared}


def psi_by_feature(reference: Mapping[str, Any], in_reference: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """PSI of each feature: reference proportions vs current proportions in the reference's bins.

    Args:
        reference: An earlier :func:`profile`.
        in_reference: Current shares in the reference's bins (second output of :func:`profile`).

    Returns:
        ``{feature: psi}``, sorted by feature name.
    """
    features = reference.get("features", {})
    return {column: psi(features[column]["proportions"], in_reference[column])
            for column in sorted(in_reference) if column in features}


def alert_rate_change(previous_rate: float | None, current_rate: float) -> float | None:
    """Change of the share of companies on alert, in points of share (current - previous)."""
    if previous_rate is None or not math.isfinite(previous_rate):
        return None
    return float(current_rate) - float(previous_rate)
