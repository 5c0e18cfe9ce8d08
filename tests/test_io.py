"""Output helpers: atomic directories and scratch directories leave nothing behind on error."""

from __future__ import annotations

import pytest

from sf_ml.io import atomic_directory, scratch_directory


def test_atomic_directory_failure_removes_staging_and_created_parents(tmp_path):
    target = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            staging.mkdir()
            (staging / "part").write_text("x")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_failure_keeps_existing_parent_and_target(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as staging:
            staging.mkdir()
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert (target / "old").read_text() == "old"


def test_scratch_directory_is_a_removed_sibling(tmp_path):
    near = tmp_path / "sub" / "features"
    with pytest.raises(RuntimeError):
        with scratch_directory(near) as scratch:
            assert scratch.parent == near.parent and scratch.name.startswith(".features.scratch-")
            (scratch / "table").mkdir(parents=True)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    with scratch_directory(tmp_path / "kept" / "out") as scratch:
        scratch.mkdir()
    assert list((tmp_path / "kept").iterdir()) == []
