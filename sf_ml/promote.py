"""Stage ``promote``: gated move of the ``champion`` alias, always recorded.

The candidate (an alias such as ``challenger`` or a version number) and the current champion are
scored on the same evaluation set, made of rows neither has seen: the labelled periodes of the
features panel after both models' training windows (or an explicit window), of the companies both
held out (each version's split seed and fraction are its tags and config). The set is recorded. The :class:`PromotionGate` below
decides; the alias moves only when it passes (and not in a dry run). Every decision is a run
(both metric sets, the gate, the decision and its reason) and is written on the versions' tags
and descriptions, so who held ``champion`` when, and why, stays auditable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
from dataclasses import asdict, dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import mlflow
import mlflow.spark
from pyspark.sql import functions as F

from sf_ml import evaluation as E
from sf_ml.modeling import held_out, input_columns
from sf_ml.panel import TARGET, add_months, first_of_month
from sf_ml.progress import PhaseLog
from sf_ml.registry import CHAMPION, current_version, model_version, resolve_version, set_alias
from sf_ml.spark import get_spark
from sf_ml.tracking import stage_run

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionGate:
    """What a candidate must show to become champion (validation thresholds, kept in code).

    Args:
        max_average_precision_drop: Candidate AP may be at most this much below the champion's.
        max_recall_drop: Candidate recall at its "risque modere" threshold may be at most this
            much below the champion's at its own.
        min_lift_without_champion: With no champion, AP must reach this multiple of the base rate.
    """

    max_average_precision_drop: float = 0.01
    max_recall_drop: float = 0.02
    min_lift_without_champion: float = 3.0

    def decide(self, candidate: dict[str, float], champion: dict[str, float] | None) -> tuple[bool, str]:
        """Apply the gate.

        Args:
            candidate: Candidate metrics on the evaluation set (``average_precision``,
                ``positive_rate``, ``risque_modere_recall``).
            champion: Champion metrics on the same set, or None when there is no champion.

        Returns:
            ``(passed, reason)``.
        """
        ap = candidate["average_precision"]
        if champion is None:
            floor = self.min_lift_without_champion * candidate["positive_rate"]
            if ap >= floor:
                return True, f"no champion; average precision {ap:.4f} >= {self.min_lift_without_champion:g} x base rate ({floor:.4f})"
            return False, f"no champion; average precision {ap:.4f} < {self.min_lift_without_champion:g} x base rate ({floor:.4f})"
        failures = []
        if ap < champion["average_precision"] - self.max_average_precision_drop:
            failures.append(
                f"average precision {ap:.4f} < champion {champion['average_precision']:.4f} - "
                f"{self.max_average_precision_drop:g}"
            )
        recall, champion_recall = candidate["risque_modere_recall"], champion["risque_modere_recall"]
        if recall < champion_recall - self.max_recall_drop:
            failures.append(
                f"recall at risque_modere {recall:.4f} < champion {champion_recall:.4f} - {self.max_recall_drop:g}"
            )
        if failures:
            return False, "; ".join(failures)
        return True, (
            f"average precision {ap:.4f} vs champion {champion['average_precision']:.4f}, recall at "
            f"risque_modere {recall:.4f} vs {champion_recall:.4f}: within tolerances"
        )


GATE = PromotionGate()


def _candidate_uri(model_name: str, candidate: str) -> str:
    candidate = str(candidate).strip()
    return f"models:/{model_name}/{candidate}" if candidate.isdigit() else f"models:/{model_name}@{candidate}"


@dataclass(frozen=True)
class TrainingFootprint:
    """The rows a version may have learnt from: periodes up to ``train_end`` (labels reaching 18
    months further), of every company outside its held-out set (:func:`sf_ml.modeling.held_out`).

    Args:
        version: Version number.
        train_end: Last training periode (ISO date).
        test_fraction: Share of companies the version held out.
        seed: Split seed the version held them out with.
    """

    version: int
    train_end: str
    test_fraction: float
    seed: int


def training_footprint(version) -> TrainingFootprint:
    """What a resolved version (:class:`sf_ml.registry.RegisteredVersion`) was trained on, from its tags.

    Raises:
        ValueError: The version lacks the ``train_end`` or ``seed`` tag that ``train`` writes.
    """
    missing = [tag for tag in ("train_end", "seed") if not version.tags.get(tag, "").strip()]
    if missing:
        raise ValueError(f"{version.version_uri} has no {' or '.join(missing)} tag: its training rows are "
                         "unknown, so no evaluation set can be proven unseen (register it with sf-ml train)")
    return TrainingFootprint(version.version, version.tags["train_end"], version.config.split.test_fraction,
                             int(version.tags["seed"]))


def evaluation_window(features_dir: str | Path, train_ends: list[str], spark,
                      eval_start: str | None = None, eval_end: str | None = None) -> tuple[str, str]:
    """The evaluation periodes: labelled periodes after every model's training window.

    Args:
        features_dir: Features panel.
        train_ends: ``train_end`` of the models compared.
        spark: Spark session.
        eval_start: Explicit first periode (overrides the rule).
        eval_end: Explicit last periode (default: the last labelled periode).

    Returns:
        ``(start, end)`` ISO dates.
    """
    labelled = spark.read.parquet(str(features_dir)).where(F.col(TARGET).isNotNull())
    last = labelled.agg(F.max("periode")).first()[0]
    if last is None:
        raise ValueError(f"no labelled periode in {features_dir}: nothing to evaluate on")
    start = eval_start or add_months(max(first_of_month(d) for d in train_ends), 1).isoformat()
    end = eval_end or last.isoformat()
    if start > end:
        raise ValueError(
            f"no labelled periode after the training windows (ending {max(train_ends)}) in {features_dir}; "
            "give eval_start/eval_end"
        )
    return start, end


def evaluation_rows(panel, footprints: list[TrainingFootprint], start: str, end: str):
    """Labelled rows of ``start``..``end`` whose company every compared version held out.

    Neither model saw these companies, so neither can win by having memorised them (their labels
    overlap the training labels of the same company through the 18-month target window).

    Args:
        panel: Features panel (``siren``, ``periode``, ``failure_18m``).
        footprints: Training footprints of the versions compared.
        start: First periode (ISO date).
        end: Last periode (ISO date).

    Returns:
        The rows of the panel kept.
    """
    unseen = reduce(lambda a, b: a & b, [held_out("siren", f.test_fraction, f.seed) for f in footprints])
    return panel.where(F.col(TARGET).isNotNull() & (F.col("periode") >= F.lit(start).cast("date"))
                       & (F.col("periode") <= F.lit(end).cast("date")) & unseen)


def describe_evaluation_set(rows, footprints: list[TrainingFootprint], start: str, end: str) -> dict[str, Any]:
    """Which rows the gate judged on, with counts; refuses a set without a failure.

    Returns:
        ``periodes``, ``companies`` (the rule), ``held_out_by`` (each version's split),
        ``n_companies``, ``n_rows``, ``n_positive``.

    Raises:
        ValueError: No labelled row, or no positive one, in the set.
    """
    counts = rows.agg(F.countDistinct("siren").alias("companies"), F.count("*").alias("rows"),
                      F.coalesce(F.sum(F.col(TARGET).cast("long")), F.lit(0)).alias("positive")).first()
    splits = ", ".join(f"version {f.version} (seed {f.seed}, held out {f.test_fraction:g})" for f in footprints)
    if counts["positive"] == 0:
        raise ValueError(f"no failure among the {counts['rows']} labelled rows of {start}..{end} of the companies "
                         f"held out by {splits}: train the versions with the same seed and split, or widen the window")
    return {"periodes": [start, end], "companies": "held out by every version compared",
            "held_out_by": [asdict(f) for f in footprints], "n_companies": int(counts["companies"]),
            "n_rows": int(counts["rows"]), "n_positive": int(counts["positive"])}


def evaluate_version(version, rows) -> dict[str, float]:
    """Metrics of a resolved version on evaluation rows, at the version's own thresholds.

    Args:
        version: :class:`sf_ml.registry.RegisteredVersion`.
        rows: Labelled panel rows (from :func:`evaluation_rows`).

    Returns:
        :func:`sf_ml.evaluation.evaluate` metrics.
    """
    columns = input_columns(version.config)
    missing = sorted(set(columns) - set(rows.columns))
    if missing:
        raise ValueError(f"the evaluation panel lacks the columns {missing} that {version.version_uri} needs")
    model = mlflow.spark.load_model(version.version_uri)
    y, p = E.collect_predictions(model.transform(rows.select("siren", "periode", TARGET, *columns)))
    return E.evaluate(y, p, version.thresholds)


def _record_on_versions(model_name: str, cand, champ, record: dict[str, Any]) -> None:
    """Write the decision on the versions' tags and description; move ``champion`` if promoted."""
    client = mlflow.MlflowClient()
    note = f"{record['decided_at']} promote run {record['run_id']}: {record['decision']} ({record['reason']})"
    if record["decision"] == "promoted":
        set_alias(model_name, CHAMPION, int(cand.version))
        client.set_model_version_tag(model_name, cand.version, "champion_since", record["decided_at"])
        if champ is not None:
            client.set_model_version_tag(model_name, champ.version, "champion_until", record["decided_at"])
            client.set_model_version_tag(model_name, champ.version, "replaced_by", cand.version)
    client.set_model_version_tag(model_name, cand.version, "promotion_decision", record["decision"])
    client.set_model_version_tag(model_name, cand.version, "promotion_run_id", record["run_id"])
    description = (cand.description or "").strip()
    client.update_model_version(model_name, cand.version, (description + "\n" + note).strip())
    log.debug("%s version %s: %s", model_name, cand.version, note)


def _log_decision(record: dict[str, Any], gate: PromotionGate) -> None:
    evaluated = record["evaluation_set"]
    mlflow.log_params({"eval_start_resolved": evaluated["periodes"][0], "eval_end_resolved": evaluated["periodes"][1],
                       "eval_companies": "held_out_by_all", **{f"gate.{k}": v for k, v in asdict(gate).items()}})
    mlflow.log_metrics({f"eval_{k}": evaluated[k] for k in ("n_companies", "n_rows", "n_positive")})
    for side in ("candidate", "champion"):
        if record[f"{side}_metrics"] is not None:
            mlflow.log_metrics({f"{side}_{k}": float(v) for k, v in record[f"{side}_metrics"].items() if v == v})
    mlflow.set_tags({"decision": record["decision"], "reason": record["reason"][:5000],
                     "model_name": record["model_name"], "candidate_version": str(record["candidate_version"]),
                     "previous_champion": str(record["previous_champion"] or "none")})
    mlflow.log_dict(record, "promotion.json")


def promote(
    model_name: str = "sf_failure",
    candidate: str = "challenger",
    features_dir: str | Path = "data/features",
    dry_run: bool = False,
    eval_start: str | None = None,
    eval_end: str | None = None,
    gate: PromotionGate = GATE,
    spark=None,
) -> dict[str, Any]:
    """Compare a candidate with the champion on rows neither saw; move ``champion`` if it passes.

    The evaluation set is the labelled periodes after both training windows (or ``eval_start``..
    ``eval_end``), restricted to the companies both versions held out (:func:`evaluation_rows`).

    Args:
        model_name: Registered model name.
        candidate: Alias (``challenger``) or version number of the candidate.
        features_dir: Features panel holding the evaluation periodes.
        dry_run: Evaluate and record, but never move the alias.
        eval_start: First evaluation periode (default: after both training windows).
        eval_end: Last evaluation periode (default: last labelled periode).
        gate: The promotion gate.
        spark: Spark session (default: :func:`sf_ml.spark.get_spark`).

    Returns:
        ``decision`` (``promoted``, ``refused``, ``would_promote``, ``unchanged``), ``reason``,
        ``candidate_version``, ``previous_champion``, the metrics of both, ``evaluation_window``,
        ``evaluation_set`` (:func:`describe_evaluation_set`), ``run_id``.
    """
    spark = spark or get_spark("sf_ml-promote")
    phases = PhaseLog("promote", log)
    params = dict(model_name=model_name, candidate=candidate, features_dir=str(features_dir), dry_run=dry_run,
                  eval_start=eval_start, eval_end=eval_end)
    context = (stage_run("promote", params) if mlflow.active_run() is None
               else contextlib.nullcontext(mlflow.active_run()))
    with context as run:
        try:
            cand = model_version(_candidate_uri(model_name, candidate))
        except Exception as error:  # noqa: BLE001 - re-raised with the registry's message
            raise ValueError(f"candidate {candidate!r} of {model_name!r} does not resolve: {error}") from None
        champ = current_version(model_name, CHAMPION)
        versions = [cand] + ([champ] if champ is not None and champ.version != cand.version else [])
        resolved = {v.version: resolve_version(f"models:/{model_name}/{v.version}") for v in versions}
        footprints = [training_footprint(r) for r in resolved.values()]
        start, end = evaluation_window(features_dir, [f.train_end for f in footprints], spark, eval_start, eval_end)
        # Counted once, then scored by each version: read the panel's evaluation rows once.
        rows = evaluation_rows(spark.read.parquet(str(features_dir)), footprints, start, end).cache()
        evaluation_set = describe_evaluation_set(rows, footprints, start, end)
        phases.done(f"evaluation set {start}..{end}, companies both versions held out",
                    **{k.removeprefix("n_"): evaluation_set[k] for k in ("n_companies", "n_rows", "n_positive")})
        metrics = {}
        for number, version in resolved.items():
            metrics[number] = evaluate_version(version, rows)
            phases.done(f"evaluate version {number}", AP=metrics[number]["average_precision"],
                        recall_risque_modere=metrics[number]["risque_modere_recall"])
        cand_metrics = metrics[cand.version]
        champ_metrics = metrics.get(champ.version) if champ is not None else None
        if champ is not None and champ.version == cand.version:
            passed, reason, decision = False, f"version {cand.version} already holds {CHAMPION}", "unchanged"
        else:
            passed, reason = gate.decide(cand_metrics, champ_metrics)
            decision = ("would_promote" if dry_run else "promoted") if passed else "refused"
        record = {
            "decision": decision, "reason": reason, "model_name": model_name,
            "candidate_version": int(cand.version),
            "previous_champion": int(champ.version) if champ is not None else None,
            "evaluation_window": [start, end], "evaluation_set": evaluation_set, "gate": asdict(gate),
            "dry_run": dry_run, "candidate_metrics": cand_metrics, "champion_metrics": champ_metrics,
            "run_id": run.info.run_id,
            "decided_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        _log_decision(record, gate)
        rows.unpersist()
        _record_on_versions(model_name, cand, champ, record)
        phases.done(decision, candidate=int(cand.version), champion=record["previous_champion"] or "none")
    return record


def promotion_history(model_name: str) -> list[dict[str, Any]]:
    """Every recorded promotion decision of a model, oldest first (from the promote runs).

    Args:
        model_name: Registered model name.

    Returns:
        One dict per decision: run id, time, candidate, previous champion, decision, reason.
    """
    client = mlflow.MlflowClient()
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, f"tags.stage = 'promote' and tags.model_name = '{model_name}'",
        order_by=["attributes.start_time ASC"],
    )
    return [
        {"run_id": r.info.run_id, "start_time": r.info.start_time, "decision": r.data.tags.get("decision"),
         "candidate_version": r.data.tags.get("candidate_version"),
         "previous_champion": r.data.tags.get("previous_champion"), "reason": r.data.tags.get("reason")}
        for r in runs
    ]


def format_record(record: dict[str, Any]) -> str:
    """A one-paragraph human summary of a promotion record."""
    summary = {k: record[k] for k in ("decision", "reason", "candidate_version", "previous_champion",
                                      "evaluation_window")}
    summary["evaluated_on"] = {k: record["evaluation_set"][k] for k in ("companies", "n_companies", "n_rows")}
    return json.dumps(summary, ensure_ascii=False)
