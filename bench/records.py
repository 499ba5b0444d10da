"""What every benchmark record starts with (what ran, when, at which commit, on which machine), and
where records go: bench/results/<name>-<date>.json."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], capture_output=True, text=True, check=False, cwd=RESULTS.parent.parent
    ).stdout


def changed_files() -> list[str]:
    """The tracked files that differ from the commit, records aside: code measured before it was
    committed is not the commit's."""
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results")
    return [line[3:] for line in status.splitlines()]


def machine_record(benchmark: str, **fields: Any) -> dict[str, Any]:
    """The head of a record; `fields` follow it."""
    commit = _git("rev-parse", "--short", "HEAD").strip()
    return {
        "benchmark": benchmark,
        "date": time.strftime("%Y-%m-%dT%H%M%S"),
        "commit": commit or "unknown",
        "uncommitted_changes": changed_files(),
        "machine": platform.node(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        **fields,
    }


def write_record(record: dict[str, Any], name: str, indent: int = 2) -> Path:
    """Write `record` (made by `machine_record`) to bench/results/<name>-<its date>.json, and say so."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}-{record['date']}.json"
    out.write_text(json.dumps(record, indent=indent, default=str) + "\n")
    print(f"written {out}", flush=True)
    return out
