"""Benchmark training per config on a generated 50,000-company panel, and tuning overhead per trial.

Builds (or reuses) the features panel of a generated world, then, in one run on one machine:
- trains each config (standard, tree_based, gbt) and prints the training time with the panel size;
- runs a 3-trial tune of the standard config and prints seconds per trial against one plain fit.

Usage: python bench/bench_train.py [--companies 50000] [--workdir /tmp/sf_ml_bench_train]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=50_000)
    parser.add_argument("--workdir", default="/tmp/sf_ml_bench_train")
    parser.add_argument("--configs", nargs="+", default=["standard", "tree_based", "gbt"])
    parser.add_argument("--train-start", default="2016-01-01")
    parser.add_argument("--train-end", default="2022-06-01")
    args = parser.parse_args()

    import mlflow

    from sf_ml.config import load_config
    from sf_ml.features import build_features
    from sf_ml.generate import generate_world
    from sf_ml.spark import get_spark
    from sf_ml.train import train_model
    from sf_ml.tune import tune_model

    work = Path(args.workdir)
    raw, features = work / f"raw_{args.companies}", work / f"features_{args.companies}"
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    spark = get_spark("sf_ml-bench-train")
    if not (raw / "urssaf_effectif.csv").exists():
        generate_world(raw, n_companies=args.companies, seed=2)
    if not features.exists():
        build_features(raw, features, load_config("standard"), "2016-01-01", "2025-12-01", spark=spark)
    panel = spark.read.parquet(str(features))
    rows = panel.count()
    print(f"panel: {args.companies} companies, {rows} rows, {len(panel.columns)} columns")
    fits = {}
    for name in args.configs:
        with mlflow.start_run(run_name=f"bench-{name}"):
            began = time.monotonic()
            summary = train_model(features, load_config(name), args.train_start, args.train_end,
                                  model_name="sf_failure_bench", spark=spark)
            fits[name] = summary["metrics"]["fit_seconds"]
            print(f"{name:11s} train {time.monotonic() - began:7.1f} s (fit {fits[name]:.1f} s), "
                  f"test AP {summary['metrics']['test_average_precision']:.3f}, "
                  f"out-of-time AP {summary['metrics'].get('oot_average_precision', float('nan')):.3f} "
                  f"(base rate {summary['metrics'].get('oot_positive_rate', float('nan')):.3f})")
    if "standard" in fits:
        with mlflow.start_run(run_name="bench-tune"):
            result = tune_model(features, load_config("standard"), args.train_start, args.train_end,
                                max_evals=3, model_name="sf_failure_bench", spark=spark, progress=False)
            per_trial = mlflow.get_run(mlflow.active_run().info.run_id).data.metrics["seconds_per_trial"]
        print(f"tune: {per_trial:.1f} s per trial vs {fits['standard']:.1f} s for one fit "
              f"(overhead x{per_trial / fits['standard']:.2f}); best {result['best_params']}")


if __name__ == "__main__":
    main()
