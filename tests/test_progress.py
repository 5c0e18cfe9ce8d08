"""Readable runs: phase lines, quiet Spark logs by default, a setting to turn them up."""

from __future__ import annotations

import logging
import time

from sf_ml.progress import PhaseLog
from sf_ml.spark import LOG4J_CONFIG, spark_log_level, with_quiet_logs


def test_phase_lines_give_counts_and_seconds(caplog):
    log = logging.getLogger("sf_ml.test_progress")
    with caplog.at_level(logging.INFO, logger="sf_ml.test_progress"):
        phases = PhaseLog("train", log)
        time.sleep(0.05)
        first = phases.done("read and split", training_rows=10112, positive_rate=0.041836, last_periode="2020-06-01")
        second = phases.done("register")
    assert [r.getMessage().rsplit("|", 1)[0] for r in caplog.records] == [
        "train | read and split: training rows 10,112, positive rate 0.04184, last periode 2020-06-01 ",
        "train | register ",
    ]
    assert first >= 0.05 and 0 <= second < first and phases.seconds >= first + second
    assert caplog.records[0].getMessage().endswith(f"| {first:.1f} s")


def test_spark_logs_are_quiet_unless_asked(monkeypatch):
    monkeypatch.delenv("SF_ML_SPARK_LOG_LEVEL", raising=False)
    assert spark_log_level() == "ERROR"
    monkeypatch.setenv("SF_ML_SPARK_LOG_LEVEL", "warn")
    assert spark_log_level() == "WARN"
    assert "rootLogger.level = ${env:SF_ML_SPARK_LOG_LEVEL:-ERROR}" in LOG4J_CONFIG.read_text()
    quiet = with_quiet_logs({"spark.driver.extraJavaOptions": "-Xss4m"})
    assert quiet["spark.driver.extraJavaOptions"] == f"-Xss4m -Dlog4j2.configurationFile=file:{LOG4J_CONFIG}"
    own = {"spark.driver.extraJavaOptions": "-Dlog4j2.configurationFile=file:/etc/spark/log4j2.properties"}
    assert with_quiet_logs(own) == own  # a team's own log configuration stands
