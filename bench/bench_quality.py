"""Benchmark model quality forward in time against the generator's true failure probability.

For each generator setting and seed, in one run: generate a world (``--companies`` companies,
2014-01..2025-12) with its truth file for the prediction date T (outside the raw directory,
read by no stage, only here); build the features with the judgments known at T; train each
config on 2016-01..T-18 months (every training label is known at T); register it; score T from
the registry with ``sf_ml.score.score_companies``; then compare the scored companies with what
happened (realised ``failure_18m``) and with the true probability ``p_failure_18m`` (the
ceiling: the best any model could do from the company's latent state).

Prints one table, one row per (setting, seed, config):
- ``AP/ceil``: forward average precision over the ceiling's (the truth's AP on the same rows);
- ``AUC`` and the ceiling's; ``Brier/ceil``; ``mean p/rate``: mean probability over the realised rate;
- precision and recall of risque fort (``fort``) and of risque modere or above (``mod+``);
- ``test-fwd``: the AP the training run reports on its grouped test set (held-out companies,
  whole window: what ``tune`` selects on and the thresholds are chosen on) minus the forward AP;
  ``latest-fwd``: the same for the held-out companies' latest months (``latest_``).

The table is also written as ``quality.md`` and ``quality.csv`` under ``--workdir``.
Asserts nothing.

Usage: python bench/bench_quality.py [--companies 20000] [--seeds 1 2]
       [--settings baseline statement_driven] [--configs tree_based xgboost xgboost_history]

A config may carry overrides after a colon, comma-separated, to compare variants of one config:
``xgboost_history:sampling.strategy=none,model.params.scale_pos_weight=auto``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

START, END = "2014-01-01", "2025-12-31"
TRAIN_START = "2016-01-01"


def months_before(date: dt.date, months: int) -> dt.date:
    """The first day of the month ``months`` before ``date``'s."""
    index = date.year * 12 + date.month - 1 - months
    return dt.date(index // 12, index % 12 + 1, 1)


def forward_metrics(y: np.ndarray, p: np.ndarray, truth: np.ndarray, alert: np.ndarray) -> dict[str, float]:
    """Forward quality of probabilities ``p`` and alert levels against outcomes ``y`` and the truth."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    def precision_recall(flagged: np.ndarray) -> tuple[float, float]:
        hits = float((flagged & (y == 1)).sum())
        return (hits / flagged.sum() if flagged.any() else float("nan")), hits / max(y.sum(), 1)

    fort = alert == "risque_fort"
    moderate_or_above = fort | (alert == "risque_modere")
    metrics = {
        "ap": average_precision_score(y, p), "ceiling_ap": average_precision_score(y, truth),
        "auc": roc_auc_score(y, p), "ceiling_auc": roc_auc_score(y, truth),
        "brier": brier_score_loss(y, p), "ceiling_brier": brier_score_loss(y, truth),
        "mean_probability": float(p.mean()), "realised_rate": float(y.mean()),
        "mean_truth": float(truth.mean()), "rows": float(len(y)),
        "fort_share": float(fort.mean()), "moderate_share": float(moderate_or_above.mean()),
    }
    metrics["fort_precision"], metrics["fort_recall"] = precision_recall(fort)
    metrics["moderate_precision"], metrics["moderate_recall"] = precision_recall(moderate_or_above)
    return metrics


def features_key(config) -> str:
    """A short digest of what the panel depends on in a config (its feature definitions)."""
    spec = json.dumps(config.to_dict()["features"], sort_keys=True, default=str)
    return hashlib.sha256(spec.encode()).hexdigest()[:10]


def evaluate_world(work: Path, setting: str, seed: int, args, spark) -> list[dict]:
    """Generate one world, then train, score and measure every config on it."""
    import mlflow

    from sf_ml.config import load_config
    from sf_ml.features import build_features
    from sf_ml.generate import generate_world
    from sf_ml.score import score_companies
    from sf_ml.train import train_model

    T = dt.date.fromisoformat(args.prediction_date)
    train_end = months_before(T, 18).isoformat()
    world = work / f"{setting}_seed{seed}_{args.companies}"
    raw, truth_dir = world / "raw", world / "truth"
    began = time.monotonic()
    if not (truth_dir / "truth.parquet").exists():
        generate_world(raw, n_companies=args.companies, start=START, end=END, seed=seed, settings=setting,
                       truth_dir=truth_dir, truth_dates=[T.isoformat()])
    generate_seconds = time.monotonic() - began
    truth = pd.read_parquet(truth_dir / "truth.parquet")
    truth = truth[pd.to_datetime(truth["periode"]).dt.date == T].drop(columns="periode").set_index("siren")
    rows = []
    for name in args.configs:
        base, _, overrides = name.partition(":")
        config = load_config(base, [o for o in overrides.split(",") if o])
        features = world / f"features_{features_key(config)}"
        began = time.monotonic()
        if not features.exists():
            build_features(raw, features, config, TRAIN_START, T.isoformat(), labels_until=T.isoformat(),
                           spark=spark)
        build_seconds = time.monotonic() - began
        model_name = f"quality_{setting}_{seed}"
        with mlflow.start_run(run_name=f"train-{name}-{setting}-{seed}"):
            began = time.monotonic()
            trained = train_model(features, config, TRAIN_START, train_end, model_name=model_name, spark=spark)
            train_seconds = time.monotonic() - began
        with mlflow.start_run(run_name=f"score-{name}-{setting}-{seed}"):
            began = time.monotonic()
            scores_dir = world / ("scores_" + "".join(c if c.isalnum() else "_" for c in name))
            scored = score_companies(f"models:/{model_name}/{trained['version']}", T, scores_dir,
                                     features_dir=features, spark=spark)
            score_seconds = time.monotonic() - began
        predictions = pd.read_parquet(Path(scored["output_dir"]) / "predictions.parquet")
        joined = predictions.join(truth, on="siren", how="inner")
        joined = joined[joined["failure_18m"].notna()]
        metrics = forward_metrics(joined["failure_18m"].to_numpy(int), joined["probability"].to_numpy(float),
                                  joined["p_failure_18m"].to_numpy(float), joined["alert"].to_numpy(str))
        latest = trained["metrics"]["latest_average_precision"]
        rows.append({
            "setting": setting, "seed": seed, "config": name, **metrics,
            "scored": float(len(predictions)), "without_truth": float(len(predictions) - len(joined)),
            "latest_ap": latest, "selection_minus_forward": latest - metrics["ap"],
            "test_ap": trained["metrics"]["test_average_precision"],
            "test_minus_forward": trained["metrics"]["test_average_precision"] - metrics["ap"],
            "generate_s": generate_seconds, "build_s": build_seconds, "train_s": train_seconds,
            "score_s": score_seconds,
        })
        print(f"  {setting} seed {seed} {name}: AP {metrics['ap']:.3f} (ceiling {metrics['ceiling_ap']:.3f}), "
              f"mean p {metrics['mean_probability']:.4f} vs {metrics['realised_rate']:.4f}, "
              f"train {train_seconds:.0f} s, score {score_seconds:.0f} s", flush=True)
    return rows


def quality_table(results: pd.DataFrame) -> pd.DataFrame:
    """The printed table: ratios to the ceiling and to the realised rate, alert precision/recall."""
    r = results
    return pd.DataFrame({
        "setting": r["setting"], "seed": r["seed"], "config": r["config"],
        "AP": r["ap"].round(3), "ceil AP": r["ceiling_ap"].round(3), "AP/ceil": (r["ap"] / r["ceiling_ap"]).round(2),
        "AUC": r["auc"].round(3), "ceil AUC": r["ceiling_auc"].round(3),
        "Brier/ceil": (r["brier"] / r["ceiling_brier"]).round(3),
        "mean p/rate": (r["mean_probability"] / r["realised_rate"]).round(2),
        "fort P": r["fort_precision"].round(2), "fort R": r["fort_recall"].round(2),
        "mod+ P": r["moderate_precision"].round(2), "mod+ R": r["moderate_recall"].round(2),
        "test-fwd": r["test_minus_forward"].round(3), "latest-fwd": r["selection_minus_forward"].round(3),
    })


def markdown(table: pd.DataFrame) -> str:
    """``table`` as a GitHub-flavoured markdown table (for the closing notes)."""
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--settings", nargs="+", default=["baseline", "statement_driven"])
    parser.add_argument("--configs", nargs="+", default=["tree_based", "xgboost", "xgboost_history"])
    parser.add_argument("--prediction-date", default="2024-01-01", help="T (first day of a month)")
    parser.add_argument("--workdir", default="/tmp/sf_ml_bench_quality")
    args = parser.parse_args()

    import mlflow

    from sf_ml.spark import get_spark

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{work / 'quality.db'}")
    mlflow.set_experiment("bench-quality")
    spark = get_spark("sf_ml-bench-quality")
    rows = []
    for setting in args.settings:
        for seed in args.seeds:
            rows += evaluate_world(work, setting, seed, args, spark)
    results = pd.DataFrame(rows)
    results.to_csv(work / "quality.csv", index=False)
    table = quality_table(results)
    (work / "quality.md").write_text(markdown(table))
    means = table.groupby("config")[["AP/ceil", "Brier/ceil", "mean p/rate", "test-fwd", "latest-fwd"]].mean().round(3)
    print(f"\nforward quality at T={args.prediction_date}, {args.companies} companies, "
          f"trained on {TRAIN_START}..{months_before(dt.date.fromisoformat(args.prediction_date), 18)}")
    print(table.to_string(index=False))
    print("\nmean over worlds:\n" + means.to_string())
    print("\nseconds per step (mean):\n"
          + results.groupby("config")[["build_s", "train_s", "score_s"]].mean().round(1).to_string())


if __name__ == "__main__":
    main()
