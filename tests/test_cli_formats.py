"""Every list command of the CLI prints a table for people or JSON lines or CSV for scripts
(`--format table|json|csv`), with every value whole: ids and hashes are never cut, whatever the width,
and a table takes the terminal's width when there is one (issue 19)."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from cfl_graph.database import Database
from tests.fixtures.cli import run_cli
from tests.fixtures.cpl_files import write_csv
from tests.fixtures.library import CPL, OWN_A1, World, make_world

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Each list command, and a key every item of it carries.
LISTS = {
    ("cpl", "snapshots"): "content_sha256",
    ("cpl", "runs"): "outcome",
    ("cpl", "diff", "1", "2"): "change",
    ("party", "list"): "role",
    ("token", "list"): "token",
    ("key", "list"): "key_id",
    ("image", "list"): "file_sha256",
}


@pytest.fixture
async def world(db: Database, tmp_path: Path) -> World:
    """A library with two snapshots (the second drops a version), parties, tokens, a key and an image."""
    made = await make_world(db, tmp_path)
    await made.publish((await made.upload(made.image(OWN_A1))).id)
    smaller = write_csv(tmp_path / "second.csv", [v.as_row() for v in CPL[1:]])
    synced = run_cli(made.db.url, "sync-cpl", str(smaller), work=tmp_path / "cli")
    assert synced.returncode == 0, synced.stdout + synced.stderr
    return made


def _narrow(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The command in a pipe, with COLUMNS=80 as a script's environment often has."""
    env = {**os.environ, "CFL_DATABASE_URL": database_url, "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "cfl_graph", *args], capture_output=True, text=True, env=env, timeout=60
    )


async def test_every_list_command_speaks_json_lines_csv_and_whole_tables(world: World) -> None:
    url = world.db.url
    for command, key in LISTS.items():
        as_json = run_cli(url, *command, "--format", "json")
        assert as_json.returncode == 0, (command, as_json.stderr)
        items = [json.loads(line) for line in as_json.stdout.splitlines()]
        assert items and all(isinstance(item, dict) and key in item for item in items), command
        as_csv = run_cli(url, *command, "--format", "csv")
        assert as_csv.returncode == 0, (command, as_csv.stderr)
        rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
        assert [row[key] for row in rows] == ["" if i[key] is None else str(i[key]) for i in items], command
        table = _narrow(url, *command)
        assert table.returncode == 0, (command, table.stderr)
        # Every value of the table is whole on its line, however wide the line gets.
        for item in items:
            value = item[key]
            if isinstance(value, str) and len(value) > 8:
                assert any(value in line for line in table.stdout.splitlines()), (command, value)
    hashes = [
        json.loads(line)["content_sha256"]
        for line in run_cli(url, "cpl", "snapshots", "--format", "json").stdout.splitlines()
    ]
    assert all(len(h) == 64 for h in hashes)
    images = [
        json.loads(line) for line in run_cli(url, "image", "list", "--format", "json").stdout.splitlines()
    ]
    assert (
        images[0]["firmware_version"] == OWN_A1.firmware_version and images[0]["state"] == "held"
    )  # the second list dropped it
    assert images[0]["published_at"].endswith("+00:00")  # ISO 8601, in UTC
    assert images[0]["problems"] == ["not-on-cpl"]  # a list in JSON; in CSV its items joined by "; "
    held = next(csv.DictReader(io.StringIO(run_cli(url, "image", "list", "--format", "csv").stdout)))
    assert held["problems"] == "not-on-cpl"


@pytest.mark.parametrize("form", ["xml", "", "JSONL"])
async def test_a_format_it_does_not_speak_is_refused_naming_those_it_does(db: Database, form: str) -> None:
    refused = run_cli(db.url, "party", "list", "--format", form)
    assert refused.returncode == 2
    assert "'table', 'json', 'csv'" in refused.stderr


async def test_a_table_on_a_terminal_takes_its_width_and_folds_ids_rather_than_cut_them(world: World) -> None:
    """In a 60-column terminal the 64-digit key id cannot fit on a line: it folds, every digit kept."""
    listed = json.loads(run_cli(world.db.url, "key", "list", "--format", "json").stdout.splitlines()[0])
    shown = _in_a_terminal(world.db.url, 60, "key", "list")
    lines = [ANSI.sub("", line) for line in shown.replace("\r", "").splitlines()]
    assert lines and max(len(line) for line in lines) <= 60, lines
    header = next(line for line in lines if "key id" in line)
    start, end = header.index("key id"), header.index("added")
    folded = "".join(line[start:end].strip() for line in lines[lines.index(header) + 1 :])
    assert listed["key_id"] in folded, lines


def _in_a_terminal(database_url: str, columns: int, *args: str) -> str:
    """What `cfl-graph ARGS` shows in a terminal `columns` wide (a pseudo-terminal of that size)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env |= {"CFL_DATABASE_URL": database_url, "TERM": "xterm"}
    process = subprocess.Popen(
        [sys.executable, "-m", "cfl_graph", *args], stdout=follower, stderr=follower, env=env
    )
    os.close(follower)
    shown = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        shown += chunk
    assert process.wait(timeout=10) == 0, shown
    os.close(leader)
    return shown.decode()
