"""The vectorised calendar-window kernel, on hand-computed arrays (no Spark needed)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sf_ml import windows
from sf_ml.windows import WindowOp, arrow_partition_windows, monthly_windows

NAN = np.nan


def assert_same(actual, expected):
    np.testing.assert_array_equal(np.asarray(actual, dtype=float), np.asarray(expected, dtype=float))


# Company 0: months 100, 101, 103 (102 missing), 104; company 1: months 101, 102.
COMPANY = np.array([0, 0, 0, 0, 1, 1])
MONTH = np.array([100, 101, 103, 104, 101, 102])


def run(columns, *ops):
    return monthly_windows(COMPANY, MONTH, {k: np.asarray(v) for k, v in columns.items()}, ops)


def test_lag_and_diff_are_calendar_lags_within_a_company():
    x = [1.0, 2.0, 4.0, NAN, 9.0, 10.0]
    out = run({"x": x}, WindowOp("lag1", "lag", "x", 1), WindowOp("lag2", "lag", "x", 2),
              WindowOp("diff3", "diff", "x", 3))
    assert_same(out["lag1"], [NAN, 1.0, NAN, 4.0, NAN, 9.0])  # 102 has no row: null, not 101's value
    assert_same(out["lag2"], [NAN, NAN, 2.0, NAN, NAN, NAN])  # never across companies
    assert_same(out["diff3"], [NAN, NAN, 3.0, NAN, NAN, NAN])  # 104 - 101 with a null current value


def test_rolling_windows_ignore_nulls_and_absent_months():
    x = [1.0, 2.0, 4.0, NAN, 9.0, 10.0]
    out = run({"x": x}, WindowOp("mean3", "mean", "x", 3), WindowOp("max3", "max", "x", 3),
              WindowOp("n3", "count", "x", 3))
    assert_same(out["mean3"], [1.0, 1.5, 3.0, 4.0, 9.0, 9.5])  # 103: months 101..103 -> (2 + 4) / 2
    assert_same(out["max3"], [1.0, 2.0, 4.0, 4.0, 9.0, 10.0])
    assert out["n3"].tolist() == [1, 2, 2, 1, 1, 2]
    assert out["n3"].dtype == np.int64


def test_long_history_statistics_ignore_nulls_and_absent_months():
    x = [1.0, 2.0, 4.0, NAN, 9.0, 10.0]
    out = run({"x": x}, WindowOp("min3", "min", "x", 3), WindowOp("std3", "std", "x", 3),
              WindowOp("slope3", "slope", "x", 3), WindowOp("growth1", "growth", "x", 1))
    assert_same(out["min3"], [1.0, 1.0, 2.0, 4.0, 9.0, 9.0])
    assert_same(out["std3"], [NAN, 0.5, 1.0, NAN, NAN, 0.5])  # population std, null below 2 values
    # 103: 2 at month 101 and 4 at month 103: +1 per month (the absent month 102 counts as time).
    assert_same(out["slope3"], [NAN, 1.0, 1.0, NAN, NAN, 1.0])
    assert_same(out["growth1"], [NAN, 1.0, NAN, NAN, NAN, 10.0 / 9.0 - 1.0])


def test_event_counts_and_months_since_events():
    y = [0.0, 3.0, -1.0, NAN, 5.0, 0.0]
    out = run({"y": y}, WindowOp("pos3", "months_positive", "y", 3),
              WindowOp("up3", "since_increase", "y", 3), WindowOp("first3", "since_first_positive", "y", 3),
              WindowOp("growth1", "growth", "y", 1))
    assert out["pos3"].tolist() == [0, 1, 1, 0, 1, 1]
    assert out["pos3"].dtype == np.int64
    # 103: the latest rise in months 101..103 is 101 (3 > 0), 2 months ago; 102 and 104 have no row.
    assert_same(out["up3"], [NAN, 0.0, 2.0, NAN, NAN, NAN])
    assert_same(out["first3"], [NAN, 0.0, 2.0, NAN, 0.0, 1.0])
    assert_same(out["growth1"], [NAN, NAN, NAN, NAN, NAN, -1.0])  # no growth from a zero


def test_all_null_window_gives_null_mean_and_max():
    out = run({"x": [NAN] * 6}, WindowOp("m", "mean", "x", 12), WindowOp("mx", "max", "x", 12))
    assert np.isnan(out["m"]).all() and np.isnan(out["mx"]).all()


def test_carry_keeps_the_latest_known_state_including_its_nulls():
    known = np.array([False, True, False, True, False, False])
    value = np.array([NAN, 5.0, NAN, NAN, 7.0, NAN])  # 104 holds a state whose value is null
    out = run({"k": known, "v": value}, WindowOp("c", "carry", "v", known="k"),
              WindowOp("d", "carry", "v", known="k", default=0.0))
    assert_same(out["c"], [NAN, 5.0, 5.0, NAN, NAN, NAN])
    assert_same(out["d"], [0.0, 5.0, 5.0, NAN, 0.0, 0.0])  # company 1 never had a state


def test_carry_without_mask_skips_nulls():
    out = run({"v": [NAN, 3.0, NAN, 4.0, NAN, 2.0]}, WindowOp("c", "carry", "v"))
    assert_same(out["c"], [NAN, 3.0, 3.0, 4.0, NAN, 2.0])


def test_ratio_is_null_for_zero_or_null_denominators_and_chains_earlier_outputs():
    cols = {"a": [1.0, 2.0, 3.0, NAN, 5.0, 6.0], "b": [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],
            "d": [2.0, 0.0, NAN, 4.0, 5.0, 3.0]}
    out = run(cols, WindowOp("r", "ratio", sources=("a", "b"), denominator="d"),
              WindowOp("r_lag1", "lag", "r", 1))
    assert_same(out["r"], [1.0, NAN, NAN, NAN, 1.2, 7.0 / 3.0])
    assert_same(out["r_lag1"], [NAN, 1.0, NAN, NAN, NAN, 1.2])


def test_unsorted_rows_are_refused():
    with pytest.raises(ValueError, match="sorted"):
        monthly_windows(np.array([0, 0]), np.array([5, 4]), {"x": np.ones(2)}, [WindowOp("l", "lag", "x", 1)])


def test_unknown_kind_and_bad_months_are_refused():
    with pytest.raises(ValueError, match="unknown window kind"):
        WindowOp("x", "median", "y", 3)
    with pytest.raises(ValueError, match="months"):
        WindowOp("x", "lag", "y", 0)


def test_arrow_chunks_never_split_a_company(monkeypatch):
    """Chunks of a few rows give the same result as one chunk, and ``keep``/``drop`` apply."""
    rng = np.random.default_rng(0)
    sirens, months = [], []
    for company in range(40):
        chosen = np.sort(rng.choice(np.arange(24_000, 24_030), size=rng.integers(1, 12), replace=False))
        sirens += [f"{company:09d}"] * len(chosen)
        months += chosen.tolist()
    n = len(sirens)
    x = rng.normal(size=n)
    x[rng.random(n) < 0.2] = np.nan
    table = pa.table({
        "company": sirens, "month": pa.array(months, pa.int32()), "x": pa.array(x, from_pandas=True),
        "__keep": rng.random(n) < 0.7, "__hidden": np.ones(n),
    })
    ops = [WindowOp("x_lag2m", "lag", "x", 2), WindowOp("x_mean3m", "mean", "x", 3), WindowOp("n", "count", "x", 6)]
    batches = table.to_batches(max_chunksize=7)

    def collect():
        return pa.Table.from_batches(list(arrow_partition_windows(iter(batches), ops, "__keep", ["__keep", "__hidden"])))

    whole = collect()
    monkeypatch.setattr(windows, "CHUNK_ROWS", 10)
    chunked = collect()
    assert whole.column_names == ["company", "month", "x", "x_lag2m", "x_mean3m", "n"]
    assert whole.num_rows == int(table.column("__keep").to_numpy(zero_copy_only=False).sum())
    assert chunked.equals(whole)
    expected = monthly_windows(
        np.repeat(np.arange(40), np.unique(sirens, return_counts=True)[1]), np.array(months), {"x": x}, ops
    )
    keep = table.column("__keep").to_numpy(zero_copy_only=False)
    assert_same(whole.column("x_mean3m").to_numpy(zero_copy_only=False), expected["x_mean3m"][keep])


def test_grid_inserts_the_missing_months_between_the_marker_bounds():
    # Company 0: rows at 100, 103 (marker), 105 (marker), 110; company 1: 101 (no marker);
    # company 2: 104 (marker). Grid: first marker + 0 .. last marker + 2, clipped to [95, 106].
    grid = windows.MonthlyGrid(marker="m", first_offset=0, last_offset=2, low=95, high=106, keep_from=0)
    company = np.array([0, 0, 0, 0, 1, 2])
    month = np.array([100, 103, 105, 110, 101, 104])
    marked = np.array([False, True, True, False, False, True])
    source, in_grid, key = grid.densify(company, month, marked)
    rows = list(zip((key >> 20).tolist(), (key & (2**20 - 1)).tolist(), source.tolist(), in_grid.tolist()))
    assert rows == [
        (0, 100, 0, False), (0, 103, 1, True), (0, 104, -1, True), (0, 105, 2, True), (0, 106, -1, True),
        (0, 110, 3, False),  # after the clipped end: kept as input, not in the grid
        (1, 101, 4, False),  # no marker: no grid
        (2, 104, 5, True), (2, 105, -1, True), (2, 106, -1, True),
    ]


def test_arrow_grid_fills_company_periode_and_per_company_columns_and_applies_require():
    # One company: headcount records known at 24240 (2020-01) and 24242, a flow at 24238.
    table = pa.table({
        "company": ["000000001"] * 3,
        "month": pa.array([24238, 24240, 24242], pa.int32()),
        "__marker": [None, True, True],
        "__created": pa.array([17532] * 3, pa.date32()),  # 2018-01-01, on every row of the company
        "x": [5.0, 1.0, 3.0],
    })
    grid = windows.MonthlyGrid(marker="__marker", first_offset=0, last_offset=2, low=0, high=24243,
                               keep_from=24241, per_company=("__created",))
    ops = [WindowOp("n", "count", "x", 2), WindowOp("age", "years_since", "__created")]
    out = pa.Table.from_batches(list(arrow_partition_windows(
        iter(table.to_batches()), ops, None, ["__marker", "__created"], grid=grid, require={"n": 1},
    )))
    # 24241 (inserted, x of 24240 in its 2-month window), 24242 (record), 24243 (inserted, 24242
    # in window); 24240 is before keep_from, 24238 out of the grid.
    assert out.column("month").to_pylist() == [24241, 24242, 24243]
    assert out.column("company").to_pylist() == ["000000001"] * 3
    assert [str(d) for d in out.column("periode").to_pylist()] == ["2020-02-01", "2020-03-01", "2020-04-01"]
    assert out.column("x").to_pylist() == [None, 3.0, None]
    assert out.column("n").to_pylist() == [1, 1, 1]
    assert out.column("age").to_pylist() == [pytest.approx(2 + 1 / 12), pytest.approx(2 + 2 / 12), pytest.approx(2.25)]
    # require drops the rows whose count is below 1.
    none = arrow_partition_windows(iter(table.to_batches()), ops, None, [], grid=grid, require={"n": 3})
    assert sum(batch.num_rows for batch in none) == 0


def test_years_since_matches_spark_months_between(spark):
    """Bit for bit, on dates of every day of month and leap days, against month starts."""
    import datetime as dt

    from pyspark.sql import functions as F

    dates = [dt.date(1990, 1, 1) + dt.timedelta(days=int(d)) for d in np.arange(0, 12_000, 37)]
    dates += [dt.date(2000, 2, 29), dt.date(2019, 12, 31), dt.date(2020, 1, 31), dt.date(1900, 3, 15)]
    months = np.array([2020 * 12 + 4, 2016 * 12, 1995 * 12 + 11])
    pairs = [(d, int(m)) for d in dates for m in months]
    frame = spark.createDataFrame(
        [(d, dt.date(m // 12, m % 12 + 1, 1)) for d, m in pairs], "created date, periode date"
    )
    expected = [r[0] for r in frame.select(F.months_between("periode", "created") / 12.0).collect()]
    days = np.array([(d - dt.date(1970, 1, 1)).days for d, _ in pairs], dtype=float)
    actual = windows._years_since(days, np.array([m for _, m in pairs]))
    assert actual.tolist() == expected
    assert np.isnan(windows._years_since(np.array([np.nan]), np.array([24240]))).all()
