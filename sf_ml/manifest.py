"""The manifest of a typed directory: proof that ``ingest`` validated an export, and of what.

``ingest`` writes, next to the typed tables (``<table>/``, parquet), ``manifest.json``: the contract
version, each source file's size and SHA-256, the row counts, the absent optional tables, the
checks that passed, and the SHA-256 of every typed file. A stage given a typed directory in place
of a raw one (:func:`is_typed_directory`) calls :func:`check_typed_directory` and skips parsing and
validation; a directory without a manifest, or whose files no longer match it, is refused
(:class:`TypedDataError`). :func:`export_unchanged` tells whether a raw directory still holds the
files a typed directory was made from, so ``main`` can reuse it. Pure Python: no Spark here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

from sf_ml.contract import CONTRACT_VERSION, TABLES

MANIFEST = "manifest.json"
CHECKS_PASSED = (
    "every required table present, one file per table, every required column in its header",
    "every value of its column's type: identifiers digits (left-padded), ISO dates, booleans, ints, floats",
    "the contract's value rules (non-negative amounts, known codes)",
    "unique keys",
    "in sirene_etablissements: siren = first 9 digits of siret, exactly one head office per siren",
)
_CHUNK = 1 << 20


class TypedDataError(ValueError):
    """A typed directory that cannot be trusted: no manifest, another contract, or changed files."""


def file_digest(path: Path) -> str:
    """SHA-256 of a file, or of a directory's files (relative names and contents, sorted)."""
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def source_files(raw_dir: str | Path) -> dict[str, dict[str, Any]]:
    """Each contract table's file in a raw directory: name, size in bytes and SHA-256."""
    raw_dir = Path(raw_dir)
    found = {}
    for name in TABLES:
        for path in (raw_dir / f"{name}.csv", raw_dir / f"{name}.parquet"):
            if path.exists():
                size = path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*"))
                found[name] = {"file": path.name, "bytes": size, "sha256": file_digest(path)}
    return found


def typed_files(typed_dir: str | Path) -> dict[str, str]:
    """SHA-256 of every data file of the typed tables (Spark's markers and checksums left out)."""
    typed_dir = Path(typed_dir)
    return {
        str(path.relative_to(typed_dir)): file_digest(path)
        for name in TABLES if (typed_dir / name).is_dir()
        for path in sorted((typed_dir / name).rglob("*"))
        if path.is_file() and not path.name.startswith((".", "_"))
    }


def write_manifest(typed_dir: str | Path, raw_dir: str | Path, rows: dict[str, int], absent: list[str]) -> dict:
    """Write ``manifest.json`` into a typed directory that ``ingest`` has just validated and written.

    Args:
        typed_dir: The typed directory (its tables complete).
        raw_dir: The raw directory they were read from.
        rows: Row count per table written.
        absent: Optional tables absent from the export.

    Returns:
        The manifest written.
    """
    manifest = {
        "contract_version": CONTRACT_VERSION,
        "raw_dir": str(Path(raw_dir).resolve()),
        "ingested_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "sources": source_files(raw_dir),
        "rows": dict(rows),
        "absent_optional_tables": list(absent),
        "checks_passed": list(CHECKS_PASSED),
        "typed_files": typed_files(typed_dir),
    }
    (Path(typed_dir) / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def is_typed_directory(path: str | Path) -> bool:
    """Whether ``path`` looks like a typed directory (a manifest, or a table directory without suffix)."""
    path = Path(path)
    return (path / MANIFEST).exists() or any((path / name).is_dir() for name in TABLES)


def check_typed_directory(typed_dir: str | Path) -> dict[str, Any]:
    """The manifest of a typed directory, once its files are checked against it.

    Args:
        typed_dir: Directory written by ``ingest``.

    Returns:
        The manifest (``rows`` lists the tables present).

    Raises:
        TypedDataError: No manifest, another contract version, or typed files missing, changed or
            added since ``ingest`` wrote them.
    """
    typed_dir = Path(typed_dir)
    redo = f"run sf-ml ingest --raw-dir <export> --output-dir {typed_dir} again"
    try:
        manifest = json.loads((typed_dir / MANIFEST).read_text())
    except (OSError, ValueError) as error:
        raise TypedDataError(f"{typed_dir} holds typed tables but no readable {MANIFEST} ({error}): it was not "
                             f"written by sf-ml ingest, so nothing proves it was validated; {redo}") from None
    if manifest.get("contract_version") != CONTRACT_VERSION:
        raise TypedDataError(f"{typed_dir} was ingested under contract {manifest.get('contract_version')!r}, "
                             f"this code reads contract {CONTRACT_VERSION!r}; {redo}")
    expected, found = manifest.get("typed_files", {}), typed_files(typed_dir)
    changed = sorted(name for name in expected.keys() & found.keys() if expected[name] != found[name])
    missing, added = sorted(expected.keys() - found.keys()), sorted(found.keys() - expected.keys())
    if changed or missing or added:
        examples = "; ".join(f"{kind}: {names[0]}" for kind, names in
                             (("changed", changed), ("missing", missing), ("added", added)) if names)
        raise TypedDataError(f"{typed_dir} does not match its {MANIFEST}: {len(changed)} file(s) changed, "
                             f"{len(missing)} missing, {len(added)} added since ingest ({examples}); {redo}")
    return manifest


def export_unchanged(raw_dir: str | Path, typed_dir: str | Path) -> bool:
    """Whether ``typed_dir`` is a valid typed copy of exactly the files now in ``raw_dir``."""
    try:
        manifest = check_typed_directory(typed_dir)
    except TypedDataError:
        return False
    return manifest.get("sources") == source_files(raw_dir)
