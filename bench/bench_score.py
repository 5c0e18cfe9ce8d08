"""Benchmark scoring: registry-loaded model vs native in-memory PipelineModel, and explanations.

In one run, on one month of ``--companies`` companies (rows resampled from a synthetic panel,
cached in memory so that both sides score the same frame without I/O):

- (a) registry: ``mlflow.spark.load_model("models:/...")`` (one-off load, timed apart), then
  ``transform`` + collect of (siren, probability) to the driver;
- (b) native: the same ``transform`` + collect with the fitted ``PipelineModel`` held in memory;

prints companies scored per second for both (median of ``--repeats``, load excluded) and the
ratio a/b (target >= 0.8), then the cost of :func:`sf_ml.explain.explain` per 1,000 companies
and, unless ``--no-end-to-end``, the whole :func:`sf_ml.score.score_companies` on that month.

By default a quick standard model is trained on a small synthetic panel into a throw-away
tracking store under ``--workdir``; ``--model-uri`` uses an existing registered model instead
(its store from ``MLFLOW_TRACKING_URI``), then (b) is the same model loaded once.
Prints numbers; asserts nothing.

Usage: python bench/bench_score.py [--companies 50000] [--repeats 3] [--model-uri models:/sf_failure@champion]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.panels: the synthetic panel generator
PREDICTION_DATE = dt.date(2021, 6, 1)


def month_of(panel, companies: int, seed: int):
    """``companies`` rows drawn from the panel's rows, renamed as distinct sirens of one periode."""
    import numpy as np

    rng = np.random.default_rng(seed)
    month = panel.iloc[rng.integers(0, len(panel), companies)].reset_index(drop=True).copy()
    month["siren"] = [f"{300000000 + i:09d}" for i in range(companies)]
    month["periode"] = PREDICTION_DATE
    return month


def collect_scores(model, frame) -> int:
    """transform + (siren, P(failure)) to the driver, as scoring does; returns the row count."""
    from sf_ml.modeling import positive_probability
    from sf_ml.score import _to_pandas

    return len(_to_pandas(model.transform(frame).select("siren", positive_probability().alias("p"))))


def timed(function, *args):
    began = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - began, result


def train_quick(spark, work: Path, config):
    """Train and register a quick standard model; return (model_uri, in-memory PipelineModel)."""
    import mlflow

    from sf_ml.registry import CHALLENGER, register_model
    from sf_ml.tracking import stage_run
    from sf_ml.train import fit, log_pipeline_model, training_sets
    from tests.panels import synthetic_panel, write_features

    features = work / "train_features"
    if not features.exists():
        write_features(synthetic_panel(n_sirens=2000, n_months=36, seed=0), features)
    with stage_run("train", {"bench": "score"}, config.to_dict()) as run:
        sets = training_sets(spark, features, config, "2018-01-01", "2019-06-01", config.seed)
        began = time.perf_counter()
        model, _ = fit(config, sets, config.seed)
        log_pipeline_model(model, config, sets.columns)
        version = register_model(run.info.run_id, "model", "sf_bench_score", CHALLENGER,
                                 {"threshold_risque_fort": 0.6, "threshold_risque_modere": 0.3})
        print(f"trained and registered sf_bench_score version {version} in {time.perf_counter() - began:.1f} s")
    mlflow.MlflowClient().set_registered_model_alias("sf_bench_score", "champion", version)
    return "models:/sf_bench_score@champion", model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--explain-rows", type=int, default=5_000, help="Rows explained to time explain().")
    parser.add_argument("--model-uri", default="", help="Existing registered model (default: train one).")
    parser.add_argument("--workdir", default="/tmp/sf_ml_bench_score")
    parser.add_argument("--no-end-to-end", action="store_true", help="Skip the full score_companies run.")
    args = parser.parse_args()

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if not args.model_uri:
        os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'mlflow.db'}")
    os.chdir(work)  # the sqlite store's default artifact root is ./mlruns

    import mlflow
    import mlflow.spark

    from sf_ml.config import load_config
    from sf_ml.modeling import feature_columns
    from sf_ml.score import resolve_model, score_companies
    from sf_ml.spark import get_spark
    from sf_ml.tracking import setup_tracking
    from tests.panels import FAST_OVERRIDES, synthetic_panel, write_features

    setup_tracking()
    spark = get_spark("sf_ml-bench-score")
    if args.model_uri:
        model_uri = args.model_uri
        load_seconds, native = timed(mlflow.spark.load_model, resolve_model(model_uri).version_uri)
        print(f"native side: {model_uri} loaded once in {load_seconds:.1f} s and kept in memory")
    else:
        model_uri, native = train_quick(spark, work, load_config("standard", FAST_OVERRIDES["standard"]))
    resolved = resolve_model(model_uri)
    config = resolved.config
    columns = feature_columns(config)

    source = synthetic_panel(n_sirens=1000, n_months=24, seed=7)
    month = month_of(source, args.companies, seed=1)
    features_dir = work / f"month_{args.companies}"
    if features_dir.exists():
        shutil.rmtree(features_dir)
    write_features(month, features_dir)
    frame = (spark.read.parquet(str(features_dir)).where(f"periode = '{PREDICTION_DATE}'")
             .select("siren", "periode", *columns).persist())
    rows = frame.count()
    print(f"{rows} companies x {len(columns)} model columns cached, Spark default parallelism "
          f"{spark.sparkContext.defaultParallelism}")

    load_seconds, registry = timed(mlflow.spark.load_model, resolved.version_uri)
    print(f"(a) one-off mlflow.spark.load_model({resolved.version_uri}): {load_seconds:.2f} s (excluded below)")
    collect_scores(native, frame)  # warm-up: code generation, Arrow, JIT
    collect_scores(registry, frame)
    registry_times, native_times = [], []
    for _ in range(args.repeats):  # interleaved, so that load drifts hit both sides alike
        registry_times.append(timed(collect_scores, registry, frame)[0])
        native_times.append(timed(collect_scores, native, frame)[0])
    rate_a = rows / statistics.median(registry_times)
    rate_b = rows / statistics.median(native_times)
    print(f"(a) registry-loaded model: {rate_a:,.0f} companies/s (runs: "
          + ", ".join(f"{t:.2f}" for t in registry_times) + " s)")
    print(f"(b) native PipelineModel:  {rate_b:,.0f} companies/s (runs: "
          + ", ".join(f"{t:.2f}" for t in native_times) + " s)")
    print(f"ratio a/b = {rate_a / rate_b:.2f} (target >= 0.8)")

    try:
        from sf_ml.explain import explain
    except ImportError:
        print("explain: sf_ml.explain not available, skipped")
    else:
        sample = frame.limit(min(args.explain_rows, rows)).persist()
        explained_rows = sample.count()
        explain(registry, sample, config)  # warm-up
        seconds = statistics.median(timed(explain, registry, sample, config)[0] for _ in range(args.repeats))
        print(f"explain(): {seconds / explained_rows * 1000:.3f} s per 1,000 companies "
              f"({explained_rows} rows in {seconds:.2f} s, {config.model.type})")
        sample.unpersist()
    frame.unpersist()

    if not args.no_end_to_end:
        out = work / "scores"
        seconds, summary = timed(lambda: score_companies(model_uri, PREDICTION_DATE, out,
                                                         features_dir=features_dir, spark=spark))
        print(f"end to end score_companies: {summary['rows']} companies in {seconds:.1f} s "
              f"({summary['rows'] / seconds:,.0f} companies/s, model load, explanations, drift, outputs "
              f"and logging included); alerts {summary['counts']}")


if __name__ == "__main__":
    main()
