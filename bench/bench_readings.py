"""Benchmark the readings of ingestion on one export: is the native path worth its code?

``sf_ml.ingest`` types a raw file by one of two paths (its module docstring): the string path
(every value read as text, typed by guarded casts, ``reading="guarded"``, or by the contract's
regular expressions, ``"reference"``) and the native path (Spark's CSV parsers type a clean file,
the string path takes over on any doubt; ``"auto"``, the default). The project keeps the native
path only while it saves more than 30% of the ingest time of a France-scale export
(``KEEP_SAVING``): this script measures that saving.

In one Spark session, after a warm-up ingest of a 1,000-company world (JIT compilation, not
measured), ``sf_ml.ingest.ingest`` of the same raw directory runs with each reading in turn,
``--rounds`` times (the order rotates each round, so load drifts hit every reading alike). Prints
the median seconds of each reading, its ratio to ``auto``, the I/O floor (Spark reads the CSV
files and writes them as parquet, no typing) and the verdict on the native path. Asserts nothing.

Usage: python bench/bench_readings.py (--raw DIR | --companies N) [--readings auto,guarded,reference]
       [--rounds 2] [--workdir /tmp/sf_ml_bench_readings]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

from sf_ml.ingest import ingest
from sf_ml.spark import get_spark

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_features import io_floor, world  # noqa: E402  (bench/ is not a package)

KEEP_SAVING = 0.30  # issue 17.2: a second path must save more than this share of the ingest time


def timed_ingest(spark, raw_dir: Path, out: Path, reading: str) -> float:
    """Seconds of one ``ingest`` of ``raw_dir`` with ``reading`` (its output removed after)."""
    shutil.rmtree(out, ignore_errors=True)
    began = time.monotonic()
    ingest(raw_dir, out, spark=spark, reading=reading)
    seconds = time.monotonic() - began
    shutil.rmtree(out, ignore_errors=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--raw", help="an existing raw directory (e.g. bench_scale's WORKDIR/N/raw)")
    source.add_argument("--companies", type=int, help="generate a world of this many companies (as bench_features)")
    parser.add_argument("--readings", default="auto,guarded,reference", help="comma-separated readings")
    parser.add_argument("--rounds", type=int, default=2, help="ingests per reading")
    parser.add_argument("--workdir", default="/tmp/sf_ml_bench_readings")
    args = parser.parse_args()
    readings = args.readings.split(",")
    work = Path(args.workdir)
    spark = get_spark("sf_ml-bench-readings")
    warm = world(work, 1_000)
    for reading in readings:
        timed_ingest(spark, warm, work / "typed", reading)
    raw = Path(args.raw) if args.raw else world(work, args.companies)
    size = sum(f.stat().st_size for f in raw.iterdir()) / 1e6
    floor = io_floor(spark, raw, work / "floor")
    shutil.rmtree(work / "floor", ignore_errors=True)
    seconds: dict[str, list[float]] = {r: [] for r in readings}
    for round_number in range(args.rounds):
        for reading in readings[round_number % len(readings):] + readings[:round_number % len(readings)]:
            seconds[reading].append(timed_ingest(spark, raw, work / "typed", reading))
            print(f"round {round_number + 1}: {reading} {seconds[reading][-1]:.1f} s", flush=True)
    median = {r: statistics.median(s) for r, s in seconds.items()}
    base = median.get("auto", median[readings[0]])
    print(f"\n{raw} ({size:.0f} MB), I/O floor {floor:.1f} s, median of {args.rounds} rounds\n")
    print("| reading | seconds | / auto | / I/O floor |\n|---|---|---|---|")
    for reading in readings:
        print(f"| {reading} | {median[reading]:.1f} | {median[reading] / base:.2f} | {median[reading] / floor:.2f} |")
    if "auto" in median and "guarded" in median:
        saving = 1 - median["auto"] / median["guarded"]
        verdict = "keep it" if saving > KEEP_SAVING else "remove it (one path)"
        print(f"\nnative path saves {saving:.0%} of the guarded string path's ingest time "
              f"(keep if > {KEEP_SAVING:.0%} on a France-scale export): {verdict}")


if __name__ == "__main__":
    main()
