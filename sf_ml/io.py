"""Output helpers: atomic directory writes and scratch directories next to an output."""

from __future__ import annotations

import contextlib
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def _first_missing_ancestor(path: Path) -> Path | None:
    """The highest ancestor of ``path`` that does not exist yet (None if its parent exists)."""
    missing = None
    for parent in path.parents:
        if parent.exists():
            break
        missing = parent
    return missing


def _remove_created_parents(path: Path, first_created: Path | None) -> None:
    """Remove the empty parents of ``path`` up to ``first_created`` (those this module created)."""
    if first_created is None:
        return
    for parent in path.parents:
        try:
            parent.rmdir()
        except OSError:
            return
        if parent == first_created:
            return


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Write a directory atomically: yield a temporary sibling, move it into place on success.

    On error the temporary directory is removed, as are the parent directories created for it
    (when empty), and ``target`` is left as it was. An existing ``target`` is replaced only once
    the new content is complete.

    Args:
        target: Final directory path (local file system).

    Yields:
        The temporary directory to write into.
    """
    target = Path(target).resolve()
    first_created = _first_missing_ancestor(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    done = False
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
        done = True
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if not done:
            _remove_created_parents(target, first_created)


@contextlib.contextmanager
def scratch_directory(near: str | Path) -> Iterator[Path]:
    """A temporary directory next to ``near``, removed on exit, success or error.

    The directory is a hidden sibling of ``near`` (same file system, so intermediate data sits
    where the output goes); it is not created. Parent directories created for it are removed
    on exit when empty.

    Args:
        near: Path whose parent holds the scratch directory (local file system).

    Yields:
        The scratch directory path.
    """
    near = Path(near).resolve()
    first_created = _first_missing_ancestor(near)
    near.parent.mkdir(parents=True, exist_ok=True)
    scratch = near.parent / f".{near.name}.scratch-{uuid.uuid4().hex[:8]}"
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        _remove_created_parents(near, first_created)
