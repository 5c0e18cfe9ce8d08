"""Spark session factory.

Local mode (``local[*]``) by default, sized for a 2-core / 24 GB machine; a cluster is one
setting away: pass ``master`` or set ``SF_ML_SPARK_MASTER`` (e.g. ``spark://host:7077``), and add
any Spark property through ``conf`` or ``SF_ML_SPARK_CONF`` (``key=value;key=value``). Spark's
own logs are quiet: ``sf_ml/log4j2.properties`` sets them to ERROR on the driver unless
``SF_ML_SPARK_LOG_LEVEL`` (``WARN``, ``INFO``, ...) turns them up. Nothing is created at import time.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_MASTER = "local[*]"
DEFAULT_CONF: dict[str, str] = {
    # Local mode runs everything in the driver JVM: give it most of a 24 GB machine.
    "spark.driver.memory": "8g",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.shuffle.partitions": "16",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.sources.partitionOverwriteMode": "static",
    "spark.sql.parquet.int96RebaseModeInWrite": "CORRECTED",
    "spark.sql.parquet.datetimeRebaseModeInWrite": "CORRECTED",
    # A panel has one directory per periode (about a hundred): listing them from the driver takes
    # half the time of the Spark job used above 32 paths.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "1024",
    # One panel build compiles ~230 classes of generated code; with Spark's default cache of 100
    # each build evicts the previous one's and recompiles (Janino, then the JIT) everything.
    "spark.sql.codegen.cache.maxEntries": "1000",
}


LOG4J_CONFIG = Path(__file__).resolve().with_name("log4j2.properties")


def spark_log_level() -> str:
    """Level of Spark's own logs: ``SF_ML_SPARK_LOG_LEVEL``, ERROR by default."""
    return os.environ.get("SF_ML_SPARK_LOG_LEVEL", "ERROR").upper()


def with_quiet_logs(settings: dict[str, str]) -> dict[str, str]:
    """The settings with the driver JVM pointed at the project's log configuration (kept if set)."""
    options = settings.get("spark.driver.extraJavaOptions", "")
    if "log4j2.configurationFile" in options:
        return settings
    quiet = f"-Dlog4j2.configurationFile=file:{LOG4J_CONFIG}"
    return {**settings, "spark.driver.extraJavaOptions": f"{options} {quiet}".strip()}


def _conf_from_env() -> dict[str, str]:
    raw = os.environ.get("SF_ML_SPARK_CONF", "")
    conf = {}
    for item in filter(None, (part.strip() for part in raw.split(";"))):
        key, _, value = item.partition("=")
        conf[key.strip()] = value.strip()
    return conf


def resolve_master(master: str | None = None) -> str:
    """The Spark master to use: argument, then ``SF_ML_SPARK_MASTER``, then local.

    Args:
        master: Explicit master URL, or None.

    Returns:
        The master URL.
    """
    return master or os.environ.get("SF_ML_SPARK_MASTER") or DEFAULT_MASTER


def get_spark(app_name: str = "sf_ml", master: str | None = None, conf: dict | None = None):
    """Return the active SparkSession, creating it on first use.

    An already active session (e.g. one created by ``spark-submit``) is returned as is.

    Args:
        app_name: Application name shown in the Spark UI.
        master: Spark master URL; defaults to ``SF_ML_SPARK_MASTER`` or ``local[*]``.
        conf: Extra Spark properties; they override the defaults and ``SF_ML_SPARK_CONF``.

    Returns:
        A SparkSession.
    """
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    settings = with_quiet_logs({**DEFAULT_CONF, **_conf_from_env(), **(conf or {})})
    builder = SparkSession.builder.appName(app_name)
    # Under spark-submit (it starts the Python driver with a gateway), its --master stands.
    if master or os.environ.get("SF_ML_SPARK_MASTER") or not os.environ.get("PYSPARK_GATEWAY_PORT"):
        builder = builder.master(resolve_master(master))
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(spark_log_level())
    return spark
