"""Files named after the process that writes them (`<pid>-<random><suffix>`): uploads being staged, CPL
downloads under way. The process id in the name lets a start-up, or the next sync, delete what a killed
process left behind without touching the files of processes still running beside it on the same host.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cfl_graph.row_ids import is_ascii_number


def process_alive(pid: int) -> bool:
    """Whether a process of this host still runs under `pid`."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def new_name(prefix: str, suffix: str) -> str:
    """A name for this process's next file: `<prefix><pid>-<random><suffix>`."""
    return f"{prefix}{os.getpid()}-{secrets.token_hex(8)}{suffix}"


def remove_abandoned(folder: Path, prefix: str, suffix: str) -> list[Path]:
    """Delete the files of `folder` named by `new_name` whose process is gone; return what was deleted.

    A name no process of ours wrote ('²-…', a pid no kernel issues) is nobody's, and deleted too."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.glob(f"{prefix}*{suffix}"):
        pid_text = path.name.removeprefix(prefix).split("-", 1)[0]
        pid = int(pid_text) if is_ascii_number(pid_text) and len(pid_text) <= 9 else None
        if pid is not None and pid != os.getpid() and process_alive(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed
