"""Readable runs: one line per phase of a stage, with its counts and its seconds.

A stage makes one :class:`PhaseLog` and calls :meth:`PhaseLog.done` at the end of each phase; the
line goes to the stage's logger at INFO (``sf-ml --log-level`` sets the level). Counts are only
ones the stage already has: a phase line never costs a Spark job.
"""

from __future__ import annotations

import logging
import time


def _shown(value) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"


class PhaseLog:
    """Logs ``<stage> | <phase>: <counts> | <seconds> s`` at the end of each phase.

    Args:
        stage: Stage name (``train``, ``build_features``, ...).
        logger: Logger of the stage's module.
    """

    def __init__(self, stage: str, logger: logging.Logger) -> None:
        self.stage, self._log = stage, logger
        self._began = self._last = time.monotonic()

    def done(self, phase: str, **counts) -> float:
        """Log the phase just finished and return its seconds.

        Args:
            phase: What the phase did (``fit``, ``write outputs``, ...).
            **counts: Facts to show, e.g. ``rows=10112`` (underscores shown as spaces).

        Returns:
            Seconds since the previous phase ended (or since the stage began).
        """
        now = time.monotonic()
        seconds, self._last = now - self._last, now
        details = ", ".join(f"{key.replace('_', ' ')} {_shown(value)}" for key, value in counts.items())
        self._log.info("%s | %s%s | %.1f s", self.stage, phase, f": {details}" if details else "", seconds)
        return seconds

    @property
    def seconds(self) -> float:
        """Seconds since the stage began."""
        return time.monotonic() - self._began
