"""A benchmark record names its commit and, where the code measured was not yet committed, the files."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import records


def _git(folder: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(folder), *args], check=True, capture_output=True)


def test_a_record_lists_the_tracked_files_changed_since_its_commit_but_not_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "bench" / "results").mkdir(parents=True)
    for name in ("code.py", "other.py", "bench/results/old.json"):
        (tmp_path / name).write_text("before\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-qm", "first")
    monkeypatch.setattr(records, "RESULTS", tmp_path / "bench" / "results")
    assert records.machine_record("P0")["uncommitted_changes"] == []
    (tmp_path / "code.py").write_text("after\n")
    (tmp_path / "bench" / "results" / "old.json").write_text("rewritten\n")
    (tmp_path / "untracked.py").write_text("new\n")
    record = records.machine_record("P0")
    assert record["uncommitted_changes"] == ["code.py"]
    assert len(record["commit"]) >= 7
