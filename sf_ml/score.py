"""Stage ``score``: score every company in scope at a prediction date with a registered model.

The model URI (``models:/sf_failure@champion`` by default, or ``models:/<name>/<version>``) is
resolved once by :func:`sf_ml.registry.resolve_version` to a version with its alert thresholds
(version tags) and training configuration. That exact version is loaded the way any MLflow client
loads it (``mlflow.pyfunc.load_model``) and its pyfunc ``predict`` gives the probabilities; the
explanations read the Spark pipeline that same pyfunc wraps. Features come from a features
directory (the ``periode`` partition of the date) or are built for that month only from a raw
directory with the model's configuration. The stages: :func:`month_features` ->
:func:`load_month` -> :func:`predict` -> explanations -> :func:`write_scoring` -> logging.

Outputs, written atomically into ``output_dir`` (a staging directory moved into place):

- ``predictions.parquet`` and ``predictions.csv``: one row per company, sorted by siren, with its
  explanation (group sums, top features) when it was explained: by default the companies on
  alert only (``explain="alerts"``: exact TreeSHAP costs ~5 CPU-ms per company, 90 % of the
  scoring time when every company of a month is explained), every company with ``explain="all"``;
- ``alert_list.json``: the companies on alert for the front end, riskiest first, their top
  features with a plain-French ``label`` and ``unit`` (:mod:`sf_ml.labels`);
- ``alert_report.html``: the same list as a self-contained page for agents (:mod:`sf_ml.report`);
- ``manifest.json``: model, date, features digest, counts, ``scored_at`` and file hashes.

Scoring is idempotent: the same model version, thresholds, date and features give byte-identical
files. ``scored_at`` is the only clock reading, and it is reused from the manifest already in
``output_dir`` when that manifest's inputs are identical; every sort order and float format is
fixed. The features digest is a content hash of the scored rows (not of file names, which Spark
randomises), so rebuilding the same month from the same raw directory keeps it.

The active MLflow run (one is opened with :func:`sf_ml.tracking.stage_run` if none is) receives
counts and rates per alert level, the score distribution, and the drift against the previous
scoring of the same registered model (:mod:`sf_ml.drift`).

matplotlib is imported inside the plotting function only: it is heavy and only needed to draw.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import math
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException
from pyspark.errors import AnalysisException
from pyspark.sql import functions as F

from sf_ml import drift
from sf_ml.config import ExperimentConfig
from sf_ml.explain import explain, top_features
from sf_ml.features import build_features
from sf_ml.io import atomic_directory
from sf_ml.labels import describe, group_label
from sf_ml.modeling import feature_columns, input_columns
from sf_ml.panel import METADATA_COLUMNS, first_of_month
from sf_ml.progress import PhaseLog
from sf_ml.registry import THRESHOLD_LEVELS, RegisteredVersion, RegistryError, resolve_version
from sf_ml.report import render_report, risk_shares
from sf_ml.spark import get_spark
from sf_ml.tracking import stage_run

log = logging.getLogger(__name__)

DEFAULT_MODEL_URI = "models:/sf_failure@champion"
LEVELS = THRESHOLD_LEVELS  # from the highest threshold down
NO_ALERT = "pas_d_alerte"
ALERTS = (*LEVELS, NO_ALERT)
TOP_K = 3
EXPLAIN_SCOPES = ("alerts", "all")  # which companies get an explanation: those on alert, or every one
PREDICTIONS_PARQUET = "predictions.parquet"
PREDICTIONS_CSV = "predictions.csv"
ALERT_LIST = "alert_list.json"
ALERT_REPORT = "alert_report.html"
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
CSV_FLOAT_FORMAT = "%.10g"
QUANTILES = (0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99)
DRIFT_PROFILE = "drift/profile.json"
DRIFT_PSI = "drift/psi.json"


class ScoringError(ValueError):
    """A scoring that cannot run: unresolvable model, unusable features or an empty date."""


def resolve_model(model_uri: str) -> RegisteredVersion:
    """:func:`sf_ml.registry.resolve_version`, its refusals raised as :class:`ScoringError`."""
    try:
        return resolve_version(model_uri)
    except RegistryError as error:
        raise ScoringError(str(error)) from error


def alert_levels(probabilities, thresholds: dict[str, float]) -> np.ndarray:
    """Alert level per probability: ``risque_fort`` if p >= its threshold, else ``risque_modere``
    if p >= its threshold, else ``pas_d_alerte``."""
    p = np.asarray(probabilities, dtype=float)
    return np.where(p >= thresholds["risque_fort"], "risque_fort",
                    np.where(p >= thresholds["risque_modere"], "risque_modere", NO_ALERT)).astype(object)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _finite_or_none(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def _rounded(value: Any, digits: int = 6) -> float | None:
    value = _finite_or_none(value)
    return None if value is None else round(float(value), digits)


def _periodes_in(path: Path) -> list[str]:
    return sorted(p.name.split("=", 1)[1] for p in path.glob("periode=*") if p.is_dir())


def month_frame(spark, features_dir: str | Path, prediction_date: dt.date, config: ExperimentConfig):
    """The rows of one periode of a features directory, with the columns scoring needs.

    Args:
        spark: Spark session.
        features_dir: Features panel (parquet partitioned by periode).
        prediction_date: The periode (first of a month).
        config: The model's configuration (its feature columns are required).

    Returns:
        ``siren, periode``, the metadata columns (text; null where the panel lacks them, unless
        the model reads them) and the model's feature columns: a lazy frame (partition-pruned read).

    Raises:
        ScoringError: Missing directory or model columns.
    """
    path = Path(features_dir)
    if not path.exists():
        raise ScoringError(f"features directory {features_dir} does not exist")
    try:
        panel = spark.read.parquet(str(path))
    except Exception as error:  # AnalysisException: no parquet file
        raise ScoringError(f"cannot read a features panel in {features_dir}: {error}") from error
    columns = feature_columns(config)
    missing = [c for c in ("siren", "periode", *input_columns(config)) if c not in panel.columns]
    if missing:
        raise ScoringError(
            f"features in {features_dir} lack the model's column(s) {missing}: rebuild them with the "
            f"model's config ({config.name})"
        )
    metadata = [F.col(c).cast("string").alias(c) if c in panel.columns else F.lit(None).cast("string").alias(c)
                for c in METADATA_COLUMNS]
    return panel.where(F.col("periode") == F.lit(prediction_date)).select(
        F.col("siren").cast("string").alias("siren"), "periode", *metadata, *columns,
    )


def frame_digest(frame) -> tuple[int, int, str]:
    """Rows, distinct sirens and an order-independent content digest of a frame, in one aggregation.

    The digest combines the xor and the modular sum of a 64-bit hash of every row: it changes
    when any value changes, not when files are renamed or rows reordered.
    """
    row_hash = F.xxhash64(*(F.col(f"`{c}`") for c in frame.columns))
    row = frame.agg(
        F.count(F.lit(1)).alias("rows"),
        F.countDistinct("siren").alias("sirens"),
        F.bit_xor(row_hash).alias("xor"),
        F.sum(F.pmod(row_hash, F.lit(2_147_483_647))).alias("sum"),
    ).first()
    rows = int(row["rows"])
    text = f"{rows}:{row['xor']}:{row['sum']}:{','.join(frame.columns)}"
    return rows, int(row["sirens"]), hashlib.sha256(text.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _arrow_transfers(spark):
    """Arrow for pandas <-> Spark transfers during the block (much faster on wide frames), then restored."""
    key = "spark.sql.execution.arrow.pyspark.enabled"
    before = spark.conf.get(key, "false")
    spark.conf.set(key, "true")
    try:
        yield
    finally:
        spark.conf.set(key, before)


def _to_pandas(frame) -> pd.DataFrame:
    """``toPandas`` with Arrow transfers."""
    with _arrow_transfers(frame.sparkSession):
        return frame.toPandas()


def _explanations(model, frame, config: ExperimentConfig, values: pd.DataFrame,
                  explained_sirens: pd.Series) -> tuple[pd.DataFrame, list]:
    """Group scores and top features of ``explained_sirens``, on the rows of ``values`` (sorted by siren).

    Rows of ``values`` outside ``explained_sirens`` get NaN contributions and no top feature.
    """
    chosen = values[values["siren"].isin(set(explained_sirens))].reset_index(drop=True)
    if len(chosen) < len(values):
        keys = frame.sparkSession.createDataFrame(chosen[["siren"]])
        frame = frame.join(F.broadcast(keys), "siren", "left_semi")
    explained = explain(model, frame, config)
    explained = explained.assign(siren=explained["siren"].astype(str))
    if len(explained) != len(chosen) or set(explained["siren"]) != set(chosen["siren"]):
        raise RuntimeError(f"explain() returned {len(explained)} rows for {len(chosen)} companies")
    by_siren = explained.set_index("siren")
    tops_of = dict(zip(chosen["siren"], top_features(by_siren.loc[chosen["siren"]].reset_index(), chosen, k=TOP_K)))
    tops = [tops_of.get(siren, []) for siren in values["siren"]]
    return by_siren.reindex(values["siren"]).reset_index(), tops


def predictions_schema(groups: list[str]):
    """The predictions file's columns and types, in order: the one declaration of its schema.

    Args:
        groups: The model's topic groups (one ``group_<group>`` column each, sorted).

    Returns:
        A ``pyarrow.Schema``.
    """
    text, number = pa.string(), pa.float64()
    fields = [("siren", text), ("periode", pa.date32()), *[(c, text) for c in METADATA_COLUMNS],
              ("probability", number), ("alert", text), ("model_name", text), ("model_version", pa.int64()),
              ("run_id", text), ("scored_at", text), ("expected_value", number)]
    fields += [(f"group_{group}", number) for group in sorted(groups)]
    for i in range(1, TOP_K + 1):
        fields += [(f"top{i}_feature", text), (f"top{i}_contribution", number), (f"top{i}_value", number)]
    return pa.schema(fields)


def predictions_table(scored: pd.DataFrame, explained: pd.DataFrame, tops: list, model: RegisteredVersion,
                      scored_at: str) -> pd.DataFrame:
    """The predictions file: one row per company, sorted by siren, columns of :func:`predictions_schema`.

    ``top<i>_*`` (i = 1..3) are null where fewer features push the risk up; ``expected_value``
    and ``group_*`` are null, and every ``top<i>_*`` too, for a company not explained.
    """
    groups = [c.removeprefix("group.") for c in explained.columns if c.startswith("group.")]
    table = scored[["siren", "periode", *METADATA_COLUMNS, "probability", "alert"]].copy()
    table["model_name"] = model.name
    table["model_version"] = np.int64(model.version)
    table["run_id"] = model.run_id
    table["scored_at"] = scored_at
    table["expected_value"] = (explained["expected_value"].astype(float).to_numpy()
                               if "expected_value" in explained.columns else np.nan)
    for group in groups:
        table[f"group_{group}"] = explained[f"group.{group}"].astype(float).to_numpy()
    for i in range(TOP_K):
        entries = [row[i] if i < len(row) else None for row in tops]
        table[f"top{i + 1}_feature"] = [e["feature"] if e else None for e in entries]
        for kind in ("contribution", "value"):
            table[f"top{i + 1}_{kind}"] = np.array([_finite_or_none(e[kind]) if e else None for e in entries],
                                                   dtype=float)
    return table[predictions_schema(groups).names].reset_index(drop=True)


def _alert_entry(row: dict, groups: list[str], model: RegisteredVersion, headcount: Any) -> dict[str, Any]:
    """One company of the alert list: identity, risk, group sums and shares, labelled top features."""
    sums = {g.removeprefix("group_"): _rounded(row[g]) for g in groups}
    tops = []
    for i in range(1, TOP_K + 1):
        feature = row[f"top{i}_feature"]
        if feature is None:
            continue
        label = describe(feature)
        tops.append({"feature": feature, "label": label.label, "unit": label.unit,
                     "contribution": _rounded(row[f"top{i}_contribution"]), "value": _rounded(row[f"top{i}_value"])})
    return {
        "siren": row["siren"],
        **{column: _finite_or_none(row[column]) for column in METADATA_COLUMNS},
        "effectif": _rounded(headcount, 2),
        "risk_percent": round(float(row["probability"]) * 100, 1),
        "probability": round(float(row["probability"]), 6),
        "alert": row["alert"],
        "threshold_risque_fort": model.thresholds["risque_fort"],
        "threshold_risque_modere": model.thresholds["risque_modere"],
        "groups": sums,
        "group_shares": {g: round(share, 4) for g, share in risk_shares(sums).items()},
        "top_features": tops,
    }


def alert_list(table: pd.DataFrame, model: RegisteredVersion, prediction_date: dt.date, scored_at: str,
               counts: dict[str, int], headcounts: pd.Series | None = None) -> dict[str, Any]:
    """The front end's list: header, then each company on alert, riskiest first (ties by siren).

    Args:
        table: The predictions table (:func:`predictions_table`).
        model: The scoring's version.
        prediction_date: The periode scored.
        scored_at: The scoring's timestamp.
        counts: Companies per alert level.
        headcounts: ``effectif`` by siren (the month's latest known headcount); null when None.

    Returns:
        ``model``, ``prediction_date``, ``scored_at``, ``thresholds``, ``counts``, ``group_labels``
        (plain French, :mod:`sf_ml.labels`) and ``alerts``: per company its metadata, ``effectif``,
        probability and level, ``groups`` (summed log-odds contributions), ``group_shares``
        (:func:`sf_ml.report.risk_shares`) and ``top_features`` (``feature``, ``label``, ``unit``,
        ``contribution``, ``value``).
    """
    groups = [c for c in table.columns if c.startswith("group_")]
    on_alert = table[table["alert"] != NO_ALERT].sort_values(
        ["probability", "siren"], ascending=[False, True], kind="mergesort")
    headcount = {} if headcounts is None else headcounts.to_dict()
    alerts = [_alert_entry(row, groups, model, headcount.get(row["siren"]))
              for row in on_alert.to_dict("records")]
    return {
        "model": {"name": model.name, "version": model.version, "run_id": model.run_id,
                  "uri": model.version_uri},
        "prediction_date": prediction_date.isoformat(),
        "scored_at": scored_at,
        "thresholds": dict(model.thresholds),
        "counts": {"companies": len(table), **{level: int(counts[level]) for level in ALERTS}},
        "group_labels": {g.removeprefix("group_"): group_label(g.removeprefix("group_")) for g in groups},
        "alerts": alerts,
    }


def _dump_json(data: Any, path: Path) -> None:
    """UTF-8, indented, no NaN (a non-finite value is an error, not an invalid JSON token)."""
    with path.open("w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False, allow_nan=False)
        handle.write("\n")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_outputs(target: Path, table: pd.DataFrame, alerts: dict, manifest: dict) -> dict:
    """Write the five files into ``target`` atomically (staging directory moved into place).

    Parquet is written by pyarrow as one file with a fixed schema (no random part names, no
    timestamps, no library versions in its metadata); the CSV uses a fixed float format; JSON is
    UTF-8 without NaN; the HTML report (:func:`sf_ml.report.render_report`) is rendered from the
    alert list itself, so the page and the JSON say the same.

    Returns:
        The manifest as written (with the size and SHA-256 of the other files).
    """
    groups = [c.removeprefix("group_") for c in table.columns if c.startswith("group_")]
    schema = predictions_schema(groups)
    with atomic_directory(target) as staging:
        staging.mkdir(parents=True, exist_ok=True)
        arrow = pa.Table.from_pandas(table, schema=schema, preserve_index=False)
        arrow = arrow.replace_schema_metadata(None)  # pandas metadata holds the pandas version
        pq.write_table(arrow, staging / PREDICTIONS_PARQUET, compression="snappy")
        csv = table.assign(periode=table["periode"].map(lambda d: d.isoformat()))
        csv.to_csv(staging / PREDICTIONS_CSV, index=False, float_format=CSV_FLOAT_FORMAT, lineterminator="\n")
        _dump_json(alerts, staging / ALERT_LIST)
        (staging / ALERT_REPORT).write_text(render_report(alerts), encoding="utf-8", newline="\n")
        manifest = {**manifest, "files": {
            name: {"sha256": _sha256(staging / name), "bytes": (staging / name).stat().st_size}
            for name in (PREDICTIONS_PARQUET, PREDICTIONS_CSV, ALERT_LIST, ALERT_REPORT)
        }}
        _dump_json(manifest, staging / MANIFEST)
    return manifest


def previous_scored_at(output_dir: Path, inputs: dict[str, Any]) -> str | None:
    """``scored_at`` of the manifest already in ``output_dir`` if it scored the same inputs."""
    path = output_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("inputs") == inputs and isinstance(manifest.get("scored_at"), str):
        return manifest["scored_at"]
    return None


def previous_scoring(model_name: str, prediction_date: dt.date, exclude_run_id: str | None = None):
    """The latest finished ``score`` run of ``model_name`` at an earlier prediction date, or None.

    Searched in every experiment on the tags ``stage``, ``model_name`` and ``prediction_date``;
    the latest prediction date wins, then the latest start.
    """
    quoted = model_name.replace("\\", "\\\\").replace("'", "\\'")
    runs = mlflow.search_runs(
        search_all_experiments=True, output_format="list",
        filter_string=f"tags.stage = 'score' and tags.model_name = '{quoted}' and attributes.status = 'FINISHED'",
    )
    earlier = [r for r in runs
               if r.info.run_id != exclude_run_id and r.data.tags.get("prediction_date", "") < prediction_date.isoformat()
               and r.data.tags.get("prediction_date")]
    if not earlier:
        return None
    return max(earlier, key=lambda r: (r.data.tags["prediction_date"], r.info.start_time or 0))


def _drift(frame, columns: list[str], model: RegisteredVersion, prediction_date: dt.date, run_id: str | None):
    """This scoring's feature profile, and PSI against the previous scoring's profile if any."""
    reference_run = previous_scoring(model.name, prediction_date, run_id)
    reference = None
    if reference_run is not None:
        try:
            reference = mlflow.artifacts.load_dict(f"runs:/{reference_run.info.run_id}/{DRIFT_PROFILE}")
        except (MlflowException, OSError) as error:
            log.warning("previous scoring %s has no readable %s: no drift (%s)",
                        reference_run.info.run_id, DRIFT_PROFILE, error)
            reference_run = None
    own, in_reference = drift.profile(frame, columns, reference=reference)
    if reference is None:
        return own, None, None
    return own, reference_run, drift.psi_by_feature(reference, in_reference)


def _log_distribution(probabilities: np.ndarray, thresholds: dict[str, float], prediction_date: dt.date) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    ax.hist(probabilities, bins=50, range=(0, 1), color="#9ab")
    colors = {"risque_fort": "#c33", "risque_modere": "#e90"}
    for level, value in thresholds.items():
        ax.axvline(value, color=colors.get(level, "k"), linestyle="--", label=f"{level} ({value:.3f})")
    ax.set_yscale("log")
    ax.set_xlabel("probability of failure within 18 months")
    ax.set_ylabel("companies")
    ax.set_title(f"Scores at {prediction_date.isoformat()}")
    ax.legend()
    fig.tight_layout()
    mlflow.log_figure(fig, "score_distribution.png")
    plt.close(fig)


def _log_run(model: RegisteredVersion, prediction_date: dt.date, table: pd.DataFrame, counts: dict[str, int],
             profile: dict, reference_run, psi: dict[str, float] | None, manifest: dict, seconds: float) -> dict:
    rows = len(table)
    rates = {level: counts[level] / rows for level in ALERTS}
    alert_rate = (counts["risque_fort"] + counts["risque_modere"]) / rows
    probabilities = table["probability"].to_numpy(dtype=float)
    metrics = {
        "companies_scored": float(rows),
        **{f"alerts_{level}": float(counts[level]) for level in ALERTS},
        **{f"alert_rate_{level}": rates[level] for level in ALERTS},
        "alert_rate": alert_rate,
        "probability_mean": float(probabilities.mean()),
        **{f"probability_q{round(q * 100):02d}": float(np.quantile(probabilities, q)) for q in QUANTILES},
        "score_seconds": seconds,
    }
    mlflow.set_tags({
        "model_name": model.name, "model_version": str(model.version), "model_run_id": model.run_id,
        "prediction_date": prediction_date.isoformat(), "features_digest": manifest["inputs"]["features_digest"],
    })
    run_id = mlflow.active_run().info.run_id
    if "stage" not in mlflow.MlflowClient().get_run(run_id).data.tags:  # a caller's own run
        mlflow.set_tag("stage", "score")
    mlflow.log_dict(profile, DRIFT_PROFILE)
    result = {}
    if psi is not None:
        previous = reference_run.data.metrics.get("alert_rate")
        change = drift.alert_rate_change(previous, alert_rate)
        result = {"reference_run_id": reference_run.info.run_id,
                  "reference_prediction_date": reference_run.data.tags["prediction_date"],
                  "reference_model_version": reference_run.data.tags.get("model_version"),
                  "psi": psi, "psi_max": max(psi.values(), default=0.0),
                  "alert_rate_previous": previous, "alert_rate_change": change}
        for level in ALERTS:
            before = reference_run.data.metrics.get(f"alert_rate_{level}")
            level_change = drift.alert_rate_change(before, rates[level])
            if level_change is not None:
                metrics[f"alert_rate_change_{level}"] = level_change
        metrics.update({f"psi.{name}": value for name, value in psi.items()})
        metrics["psi_max"] = result["psi_max"]
        if change is not None:
            metrics["alert_rate_change"] = change
        mlflow.log_dict(result, DRIFT_PSI)
        mlflow.set_tag("drift_reference_run_id", reference_run.info.run_id)
    mlflow.log_metrics(metrics)
    mlflow.log_dict(manifest, "scoring/manifest.json")
    _log_distribution(probabilities, model.thresholds, prediction_date)
    return {**metrics, **({"drift": result} if result else {})}


@dataclass
class Month:
    """One month's companies, loaded for scoring.

    Args:
        date: The periode scored.
        frame: Persisted Spark frame: ``siren, periode``, metadata and the model's input columns.
        values: The same rows in pandas, sorted by siren.
        source: ``{"kind": "features_dir" | "raw_dir", "path": ...}``.
        digest: Content digest of the rows (:func:`frame_digest`).
    """

    date: dt.date
    frame: Any
    values: pd.DataFrame
    source: dict[str, str]
    digest: str


@contextlib.contextmanager
def month_features(model: RegisteredVersion, date: dt.date, features_dir: str | None, raw_dir: str | None,
                   output_dir: Path, spark):
    """The features directory holding ``date`` and its source, removed at exit if built here.

    From ``features_dir`` as it is; from ``raw_dir``, the month is built with the model's config
    into a working directory next to ``output_dir``, deleted when the block ends.
    """
    if raw_dir is None:
        yield Path(features_dir), {"kind": "features_dir", "path": str(Path(features_dir).resolve())}
        return
    workdir = output_dir.resolve().parent / f".{output_dir.name}.features-{uuid.uuid4().hex[:8]}"
    try:
        try:
            _build_month(raw_dir, workdir, model.config, date, spark)
        except AnalysisException as error:  # an empty month: Spark cannot read back a panel without files
            if any(workdir.rglob("*.parquet")):
                raise
            raise ScoringError(f"no company in scope at {date.isoformat()} in raw directory {raw_dir}") from error
        yield workdir, {"kind": "raw_dir", "path": str(Path(raw_dir).resolve())}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def load_month(path: Path, source: dict[str, str], model: RegisteredVersion, date: dt.date, spark) -> Month:
    """Read, check and persist the month's rows (the caller unpersists ``frame``).

    Raises:
        ScoringError: No company at the date, or a siren twice.
    """
    frame = month_frame(spark, path, date, model.config).persist()
    rows, sirens, digest = frame_digest(frame)
    if rows == 0 or sirens != rows:
        frame.unpersist()
        if rows == 0:
            available = _periodes_in(path)
            span = f"{available[0]} to {available[-1]}" if available else "none"
            raise ScoringError(
                f"no company in scope at {date.isoformat()} in {source['path']} (periodes available: {span})")
        raise ScoringError(f"{rows - sirens} duplicate siren(s) at {date.isoformat()} in {source['path']}")
    values = _to_pandas(frame).sort_values("siren", kind="mergesort").reset_index(drop=True)
    values["periode"] = date  # one periode: a plain date whatever the Arrow conversion gave
    return Month(date, frame, values, source, digest)


def predict(served, month: Month, model: RegisteredVersion) -> pd.DataFrame:
    """The registered model's own answer for every company: its pyfunc ``predict``, then the alert level.

    The same call any MLflow client makes (``mlflow.pyfunc.load_model(uri).predict``), so the
    alert list and what the registry serves cannot diverge.

    Args:
        served: The version loaded with ``mlflow.pyfunc.load_model``.
        month: The month's companies.
        model: The resolved version (thresholds, config).

    Returns:
        ``siren, periode``, metadata, ``probability`` and ``alert``, sorted by siren.
    """
    with _arrow_transfers(month.frame.sparkSession):
        probability = np.asarray(served.predict(month.values[input_columns(model.config)]), dtype=float)
    if probability.shape != (len(month.values),):
        raise RuntimeError(f"the model returned {probability.shape} values for {len(month.values)} companies")
    scored = month.values[["siren", "periode", *METADATA_COLUMNS]].copy()
    scored["probability"] = probability
    scored["alert"] = alert_levels(probability, model.thresholds)
    return scored


def write_scoring(output_dir: Path, month: Month, scored: pd.DataFrame, explained: pd.DataFrame, tops: list,
                  model: RegisteredVersion, counts: dict[str, int], explain: str) -> tuple[pd.DataFrame, dict]:
    """Predictions, alert list, alert report and manifest, written atomically.

    ``scored_at`` is kept from the manifest already in ``output_dir`` when the inputs are unchanged.

    Returns:
        ``(predictions table, manifest as written)``.
    """
    inputs = {
        "model_name": model.name, "model_version": model.version, "model_run_id": model.run_id,
        "thresholds": dict(model.thresholds), "prediction_date": month.date.isoformat(),
        "features_digest": month.digest, "explain": explain,
    }
    scored_at = previous_scored_at(output_dir, inputs) or _now()
    table = predictions_table(scored, explained, tops, model, scored_at)
    headcounts = (month.values.set_index("siren")["effectif"] if "effectif" in month.values.columns else None)
    alerts = alert_list(table, model, month.date, scored_at, counts, headcounts)
    manifest = {
        "manifest_version": MANIFEST_VERSION,
        "inputs": inputs,
        "model": {"uri": model.uri, "version_uri": model.version_uri, "name": model.name,
                  "version": model.version, "run_id": model.run_id, "config_name": model.config.name},
        "prediction_date": month.date.isoformat(),
        "features": {**month.source, "digest": month.digest, "rows": len(month.values)},
        "rows": {"predictions": len(table), "alerts": counts["risque_fort"] + counts["risque_modere"],
                 **counts, "explained": int(explained["expected_value"].notna().sum())},
        "scored_at": scored_at,
    }
    return table, write_outputs(output_dir, table, alerts, manifest)


def score_companies(
    model_uri: str = DEFAULT_MODEL_URI,
    prediction_date: str | dt.date | None = None,
    output_dir: str | Path | None = None,
    features_dir: str | Path | None = None,
    raw_dir: str | Path | None = None,
    spark=None,
    explain: str = "alerts",
) -> dict[str, Any]:
    """Score every company in scope at ``prediction_date`` and write the alert list.

    Logs to the active MLflow run (one is opened with :func:`sf_ml.tracking.stage_run` if none is).

    Args:
        model_uri: ``models:/<name>@<alias>`` or ``models:/<name>/<version>``.
        prediction_date: ISO date; its month's first day is the periode scored.
        output_dir: Directory replaced atomically by the outputs.
        features_dir: Features panel (parquet partitioned by periode) holding the periode.
        raw_dir: Raw directory (data contract): the month is built with the model's config.
            Exactly one of ``features_dir`` and ``raw_dir``.
        spark: Spark session (default: :func:`sf_ml.spark.get_spark`).
        explain: Which companies get an explanation in the predictions: ``"alerts"`` (those on
            alert, all the alert list needs) or ``"all"``.

    Returns:
        ``output_dir``, ``alert_list`` (path), ``rows``, ``counts`` per level, ``model_name``,
        ``model_version``, ``prediction_date``, ``features_digest``, ``scored_at``, ``metrics``
        (as logged; with ``drift`` when an earlier scoring exists) and ``run_id`` (the scoring run).

    Raises:
        ScoringError: Bad arguments, an unresolvable model URI, features without the model's
            columns, or no company at the date (nothing is written in any of these cases).
        sf_ml.ingest.RawDataError: ``raw_dir`` breaks the data contract.
    """
    if prediction_date is None or not str(prediction_date).strip():
        raise ScoringError("a prediction date is required")
    if output_dir is None or not str(output_dir).strip():
        raise ScoringError("an output directory is required")
    features_dir = features_dir if features_dir and str(features_dir).strip() else None
    raw_dir = raw_dir if raw_dir and str(raw_dir).strip() else None
    if (features_dir is None) == (raw_dir is None):
        raise ScoringError("give exactly one of features_dir and raw_dir")
    if explain not in EXPLAIN_SCOPES:
        raise ScoringError(f"explain must be one of {', '.join(EXPLAIN_SCOPES)}, not {explain!r}")
    try:
        date = prediction_date.replace(day=1) if isinstance(prediction_date, dt.date) else \
            first_of_month(prediction_date)
    except ValueError as error:
        raise ScoringError(f"prediction date {prediction_date!r} is not an ISO date") from error
    if mlflow.active_run() is None:
        params = dict(model_uri=model_uri, prediction_date=date.isoformat(), output_dir=str(output_dir),
                      features_dir=features_dir or "", raw_dir=raw_dir or "", explain=explain)
        context = stage_run("score", params)
    else:
        context = contextlib.nullcontext(mlflow.active_run())
    with context as run:
        return _score(model_uri, date, Path(output_dir), features_dir, raw_dir, spark, run.info.run_id, explain)


def _score(model_uri: str, date: dt.date, output_dir: Path, features_dir: str | None, raw_dir: str | None,
           spark, run_id: str, explain: str) -> dict[str, Any]:
    """Resolve -> load the month -> predict -> explain -> write outputs -> log."""
    phases = PhaseLog("score", log)
    model = resolve_model(model_uri)
    phases.done(f"resolve {model_uri}", model=model.name, version=model.version, periode=date)
    spark = spark or get_spark("sf_ml-score")
    columns = feature_columns(model.config)
    with month_features(model, date, features_dir, raw_dir, output_dir, spark) as (path, source):
        month = load_month(path, source, model, date, spark)
        phases.done("load the month", companies=len(month.values))
        try:
            served = mlflow.pyfunc.load_model(model.version_uri)
            scored = predict(served, month, model)
            phases.done("predict", mean_probability=float(scored["probability"].mean()))
            chosen = scored["siren"] if explain == "all" else scored.loc[scored["alert"] != NO_ALERT, "siren"]
            explained, tops = _explanations(served.get_raw_model(), month.frame, model.config,
                                            month.values[["siren", "periode", *columns]], chosen)
            phases.done(f"explain ({explain})", companies=len(chosen))
            profile, reference_run, psi = _drift(month.frame, columns, model, date, run_id)
        finally:
            month.frame.unpersist()
    counts = {level: int((scored["alert"] == level).sum()) for level in ALERTS}
    table, manifest = write_scoring(output_dir, month, scored, explained, tops, model, counts, explain)
    phases.done(f"write {output_dir}", **counts)
    metrics = _log_run(model, date, table, counts, profile, reference_run, psi, manifest, phases.seconds)
    phases.done("log metrics, drift and distribution", alert_list=output_dir / ALERT_LIST)
    return {
        "output_dir": str(output_dir), "alert_list": str(output_dir / ALERT_LIST), "rows": len(table),
        "counts": counts, "model_name": model.name, "model_version": model.version,
        "prediction_date": date.isoformat(), "features_digest": month.digest,
        "scored_at": manifest["scored_at"], "metrics": metrics, "run_id": run_id,
    }


def _build_month(raw_dir, workdir: Path, config: ExperimentConfig, date: dt.date, spark) -> None:
    """Build the features of one month into ``workdir``, in a nested ``build_features`` run."""
    params = dict(raw_dir=str(raw_dir), output_dir=str(workdir), config=config.name,
                  start=date.isoformat(), end=date.isoformat(), labels_until="")
    with stage_run("build_features", params, config.to_dict(), nested=True):
        build_features(raw_dir, workdir, config, date.isoformat(), date.isoformat(), spark=spark)
