"""Output helpers: atomic directory writes."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Write a directory atomically: yield a temporary sibling, move it into place on success.

    On error the temporary directory is removed and ``target`` is left as it was. An existing
    ``target`` is replaced only once the new content is complete.

    Args:
        target: Final directory path (local file system).

    Yields:
        The temporary directory to write into.
    """
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        yield staging
        staging.mkdir(parents=True, exist_ok=True)
        if target.exists():
            retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            target.rename(retired)
            staging.rename(target)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
