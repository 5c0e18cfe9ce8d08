"""Benchmark ingest and build_features against the I/O floor, and their growth from 10k to 50k companies.

For each world size, in one run on one machine:
- I/O floor: Spark reads the same raw CSV files and writes them back as parquet (no computation);
- build: the full panel of the standard config over the same periodes (validation and typing of
  the raw tables, then the panel), as ``build_features`` runs it on a raw directory;
- ingest: ``sf_ml.ingest.ingest`` of the raw directory (validation, typed parquet, manifest);
- build from typed: ``build_features`` of the same panel from that typed directory (checked
  against its manifest, not validated again), as ``main`` runs it.
Prints the ratio build / floor per size (target <= 3), the share of validation in the build,
ingest / floor (target <= 2) and build from typed / floor (target <= 2.5), and the growth of
build time from the smallest to the largest world (target <= 5.5 for 5x the companies: linear).

The JVM is warmed up first on a small world (floor, build, ingest and build from typed once, not
measured): otherwise the first measurement pays the JIT compilation of Spark's code paths, a
constant that flatters the floor of the first size. ``--no-warmup`` measures cold, as a one-off
process would. ``--repeat N`` measures floor, build, ingest and build from typed N times per size,
in turn: the later rounds show the steady state of a long-lived session (generated code compiled
and JIT-compiled once). Each round measures them back to back, so its ratios are taken under the
same machine load; with several rounds, the median of each ratio per size and the growth of the
median build are printed too (on this machine, load alone moves the ratio of one round by several
tenths).

``--compare CONFIG`` also builds the panel of another config in each round, right after the
standard one, and prints its build time over the standard's (the long-history features of
``xgboost_history``: target <= 1.5).

Usage: python bench/bench_features.py [--sizes 10000 50000] [--workdir /tmp/sf_ml_bench] [--no-warmup]
       [--repeat N] [--compare xgboost_history]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path


def io_floor(spark, raw_dir: Path, out: Path) -> float:
    began = time.monotonic()
    for csv in sorted(raw_dir.glob("*.csv")):
        spark.read.option("header", True).csv(str(csv)).write.mode("overwrite").parquet(str(out / csv.stem))
    return time.monotonic() - began


def ingest_and_build(spark, raw: Path, typed: Path, features: Path, config, start: str, end: str):
    """Seconds of ``ingest`` (raw -> typed) and of ``build_features`` from the typed directory."""
    from sf_ml.features import build_features
    from sf_ml.ingest import ingest

    began = time.monotonic()
    ingest(raw, typed, spark=spark)
    ingested = time.monotonic() - began
    return ingested, build_features(typed, features, config, start, end, spark=spark)["seconds"]


def world(work: Path, size: int) -> Path:
    """The raw directory of a generated world of ``size`` companies (generated once, seed 1)."""
    from sf_ml.generate import generate_world

    raw = work / f"raw_{size}"
    if not (raw / "urssaf_effectif.csv").exists():
        began = time.monotonic()
        generate_world(raw, n_companies=size, start="2014-01-01", end="2025-12-31", seed=1)
        print(f"[{size}] generated in {time.monotonic() - began:.1f} s")
    return raw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    parser.add_argument("--workdir", default="/tmp/sf_ml_bench")
    parser.add_argument("--start", default="2016-01-01")
    parser.add_argument("--end", default="2023-12-01")
    parser.add_argument("--no-warmup", action="store_true", help="measure from a cold JVM")
    parser.add_argument("--repeat", type=int, default=1, help="rounds of floor and build per size")
    parser.add_argument("--compare", default=None, help="another config built after the standard one")
    args = parser.parse_args()

    from sf_ml.config import load_config
    from sf_ml.features import build_features
    from sf_ml.spark import get_spark

    spark = get_spark("sf_ml-bench")
    config = load_config("standard")
    work = Path(args.workdir)
    if not args.no_warmup:
        began = time.monotonic()
        raw = world(work, 1_000)
        io_floor(spark, raw, work / "floor_warmup")
        build_features(raw, work / "features_warmup", config, args.start, args.end, spark=spark)
        ingest_and_build(spark, raw, work / "typed_warmup", work / "features_warmup", config, args.start, args.end)
        shutil.rmtree(work / "floor_warmup", ignore_errors=True)
        print(f"warm-up (1,000 companies, not measured): {time.monotonic() - began:.1f} s")
    results = []
    for size in args.sizes:
        raw = world(work, size)
        rounds = []
        for round_number in range(1, args.repeat + 1):
            floor = io_floor(spark, raw, work / f"floor_{size}")
            summary = build_features(raw, work / f"features_{size}", config, args.start, args.end, spark=spark)
            build, validation = summary["seconds"], summary["validation_seconds"]
            label = f"[{size}]" if args.repeat == 1 else f"[{size} round {round_number}]"
            print(f"{label} I/O floor {floor:.1f} s, build {build:.1f} s (validation {validation:.1f} s, "
                  f"panel {build - validation:.1f} s), ratio {build / floor:.2f} (target <= 3), "
                  f"validation alone {validation / floor:.2f}x floor, {summary['rows']} panel rows")
            ingested, typed_build = ingest_and_build(spark, raw, work / f"typed_{size}", work / f"features_{size}",
                                                     config, args.start, args.end)
            print(f"{label} ingest {ingested:.1f} s: ingest / I/O floor {ingested / floor:.2f} (target <= 2); "
                  f"build from typed {typed_build:.1f} s: build-from-typed / I/O floor {typed_build / floor:.2f} "
                  f"(target <= 2.5)")
            shutil.rmtree(work / f"floor_{size}", ignore_errors=True)
            rounds.append((floor, build, ingested, typed_build))
            if args.compare:
                other = build_features(raw, work / f"features_{size}_{args.compare}", load_config(args.compare),
                                       args.start, args.end, spark=spark)
                print(f"{label} {args.compare} build {other['seconds']:.1f} s: x{other['seconds'] / build:.2f} "
                      f"the standard build (target <= 1.5)")
        if len(rounds) > 1:
            for name, step in (("build", 1), ("ingest", 2), ("build-from-typed", 3)):
                ratios = [measured[step] / measured[0] for measured in rounds]
                print(f"[{size}] median {name} / I/O floor {statistics.median(ratios):.2f} over {len(rounds)} "
                      f"rounds (min {min(ratios):.2f}, max {max(ratios):.2f})")
        results.append((size, statistics.median(measured[1] for measured in rounds)))
    if len(results) > 1:
        (small, t_small), (large, t_large) = results[0], results[-1]
        print(f"growth {small} -> {large} companies ({large / small:.0f}x): median build time x{t_large / t_small:.2f} "
              f"(target <= {5.5 * large / small / 5:.1f})")


if __name__ == "__main__":
    main()
