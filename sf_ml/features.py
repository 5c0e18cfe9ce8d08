"""Stage ``build_features``: contract raw directory -> point-in-time panel on disk.

Reads and validates the raw tables (typed once into a scratch parquet copy next to the output,
removed at the end), or reads the typed tables of a directory ``ingest`` wrote (validate once,
build many), builds the panel of :mod:`sf_ml.panel` with the experiment's time
aggregations, writes it as parquet partitioned by ``periode`` (atomically: into a staging
directory moved into place at the end) and logs its profile to the active MLflow run.

matplotlib is imported inside the plotting function only: it is heavy and only needed to draw.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import mlflow
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType

from sf_ml.config import ExperimentConfig
from sf_ml.ingest import read_tables
from sf_ml.io import atomic_directory, scratch_directory
from sf_ml.manifest import is_typed_directory
from sf_ml.panel import BASE_FEATURES, KEY, METADATA_COLUMNS, TARGET, build_panel
from sf_ml.progress import PhaseLog
from sf_ml.spark import get_spark
from sf_ml.tracking import log_panel_input

log = logging.getLogger(__name__)


def periode_profile(panel: DataFrame) -> DataFrame:
    """Rows, known labels, positives and positive rate per periode.

    Args:
        panel: A built panel.

    Returns:
        One row per periode, ordered (small: one row a month).
    """
    return (
        panel.groupBy("periode")
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.count(TARGET).alias("labelled"),
            F.sum(TARGET).alias("positives"),
        )
        .withColumn("positive_rate", F.col("positives") / F.col("labelled"))
        .orderBy("periode")
    )


def null_rates(panel: DataFrame) -> dict[str, float]:
    """Share of null values per feature column, in one aggregation pass."""
    features = [c for c in panel.columns if c not in (*KEY, *METADATA_COLUMNS, TARGET)]
    row = panel.agg(
        F.count(F.lit(1)).alias("__rows"), *(F.count(c).alias(c) for c in features)
    ).first()
    total = row["__rows"] or 1
    return {c: 1.0 - row[c] / total for c in features}


def directory_digest(path: str | Path) -> str:
    """A digest of a directory's files (names and sizes): changes whenever the output does."""
    digest = hashlib.md5()
    for file in sorted(Path(path).rglob("*")):
        if file.is_file() and not file.name.startswith((".", "_")):
            digest.update(f"{file.relative_to(path)}:{file.stat().st_size}".encode())
    return digest.hexdigest()[:16]


def _log_run(
    features_dir: Path, panel: DataFrame, profile, rates: dict[str, float], seconds: float, validation_seconds: float
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labelled = profile["labelled"].sum()
    mlflow.log_metrics(
        {
            "rows": float(profile["rows"].sum()),
            "companies_mean_per_periode": float(profile["rows"].mean()),
            "positive_rate": float(profile["positives"].sum() / labelled) if labelled else 0.0,
            "labelled_rows": float(labelled),
            "build_seconds": seconds,
            "validation_seconds": validation_seconds,
        }
    )
    mlflow.log_metrics({f"null_rate.{name}": rate for name, rate in rates.items() if name in BASE_FEATURES})
    mlflow.log_table(profile.assign(periode=profile["periode"].astype(str)), "periode_profile.json")
    mlflow.log_dict(rates, "null_rates.json")

    fig, left = plt.subplots(figsize=(10, 4))
    periodes = profile["periode"].astype("datetime64[ns]")
    left.bar(periodes, profile["rows"], width=25, color="#9ab", label="companies in scope")
    left.set_ylabel("companies in scope")
    right = left.twinx()
    right.plot(periodes, profile["positive_rate"] * 100, color="#c33", label="failure within 18 months (%)")
    right.set_ylabel("positive rate (%)")
    left.set_title("Panel: companies in scope and positive rate per periode")
    fig.tight_layout()
    mlflow.log_figure(fig, "periode_profile.png")
    plt.close(fig)

    log_panel_input(panel, features_dir, directory_digest(features_dir), context="features")


def build_features(
    raw_dir: str | Path,
    output_dir: str | Path,
    config: ExperimentConfig,
    start: str,
    end: str,
    labels_until: str | None = None,
    spark=None,
) -> dict:
    """Build the panel of ``raw_dir`` for periodes ``start``..``end`` into ``output_dir``.

    Args:
        raw_dir: Raw directory following the data contract, or a typed directory written by
            ``ingest`` (checked against its manifest, not parsed or validated again).
        output_dir: Features directory, replaced atomically (parquet partitioned by periode).
        config: Experiment configuration (time aggregations, missing indicators).
        start: First periode (ISO date).
        end: Last periode (ISO date).
        labels_until: Date judgments are known to (default: latest judgment date).
        spark: Spark session (default: :func:`sf_ml.spark.get_spark`).

    Returns:
        Summary: ``rows``, ``positive_rate``, ``periodes``, ``seconds`` (of which
        ``validation_seconds``: reading, validating and typing the raw tables), ``output_dir``.

    Raises:
        sf_ml.ingest.RawDataError: The raw directory breaks the contract (nothing is written).
        sf_ml.manifest.TypedDataError: A typed directory without a manifest or that no longer
            matches it (nothing is written).
    """
    spark = spark or get_spark("sf_ml-build_features")
    phases = PhaseLog("build_features", log)
    output_dir = Path(output_dir)
    with atomic_directory(output_dir) as staging, scratch_directory(output_dir) as typed_dir:
        tables = read_tables(spark, raw_dir, staging_dir=typed_dir)
        validation_seconds = phases.done(
            "read typed tables (checked against the manifest)" if is_typed_directory(raw_dir)
            else "read, validate and type the raw tables", tables=len(tables))
        panel = build_panel(
            tables, start, end, config.features.time_aggregation, labels_until,
            config.features.missing_indicators,
        )
        # One shuffle by periode: each periode is written by one task, as one file sorted by
        # siren (cheaper than sorting every task's rows by periode, and no small files).
        writer = panel.repartition("periode").sortWithinPartitions("periode", "siren").write
        # Dictionary encoding of the feature columns (floating-point, mostly distinct values)
        # costs a quarter of the write and saves only ~5% of the size.
        for field in panel.schema.fields:
            if isinstance(field.dataType, DoubleType):
                writer = writer.option(f"parquet.enable.dictionary#{field.name}", "false")
        writer.partitionBy("periode").parquet(str(staging))
    phases.done("build and write the panel", start=start, end=end)
    written = spark.read.parquet(str(output_dir))
    profile = periode_profile(written).toPandas()  # one row per month: small on purpose
    rows, labelled = int(profile["rows"].sum()), int(profile["labelled"].sum())
    positive_rate = float(profile["positives"].sum() / labelled) if labelled else 0.0
    phases.done(f"profile {output_dir}", rows=rows, periodes=len(profile), positive_rate=positive_rate)
    seconds = phases.seconds
    if mlflow.active_run() is not None:
        _log_run(output_dir, written, profile, null_rates(written), seconds, validation_seconds)
        phases.done("log profile, null rates and dataset")
    return {
        "rows": rows,
        "positive_rate": positive_rate,
        "periodes": len(profile),
        "seconds": seconds,
        "validation_seconds": validation_seconds,
        "output_dir": str(output_dir),
    }
