"""The `cfl-graph` command as an operator runs it: a real process, real files, exit codes that scripts rely on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cfl_graph.database import Database
from cpl_sync.lock import sync_lock
from tests.fixtures.cli import run_cli
from tests.fixtures.cpl_files import row, versions, write_csv


def cfl(database_url: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(database_url, *args, work=tmp_path)


def test_db_upgrade_applies_migrations_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/fresh.sqlite3"
    first = cfl(url, tmp_path, "db", "upgrade")
    assert (first.returncode, first.stdout.strip()) == (
        0,
        "applied 0001, 0002, 0003, 0004, 0005, 0006, 0007, 0008, 0009, 0010, 0011",
    )
    again = cfl(url, tmp_path, "db", "upgrade")
    assert (again.returncode, again.stdout.strip()) == (0, "database is up to date")


async def test_sync_cpl_exit_codes_and_messages(db: Database, database_url: str, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", versions(3))
    applied = cfl(database_url, tmp_path, "sync-cpl", str(good))
    assert applied.returncode == 0, applied.stderr
    assert "applied: snapshot 1, 3 certified versions of 1 device models" in applied.stdout

    unchanged = cfl(database_url, tmp_path, "sync-cpl", str(good))
    assert unchanged.returncode == 0
    assert "unchanged: snapshot 1" in unchanged.stdout

    bad = write_csv(tmp_path / "bad.csv", [*versions(3), row(firmware_version="zz", image_hash="12")])
    rejected = cfl(database_url, tmp_path, "sync-cpl", str(bad))
    assert rejected.returncode == 1
    assert rejected.stderr.splitlines() == [
        "rejected: 2 error(s); the current snapshot stays current",
        "row 5, column F \"Firmware Version\": firmware version 'zz' is not hexadecimal: up to 8 digits 0-9 "
        "and A-F, like 01020A04",
        'row 5, column J "Manufacturer Image Hash": image hash has 2 hex digits; a SHA-256 has 64',
    ]

    missing = cfl(database_url, tmp_path, "sync-cpl", str(tmp_path / "nowhere.xlsx"))
    assert missing.returncode == 2
    assert "nowhere.xlsx" in missing.stderr

    changed = write_csv(tmp_path / "changed.csv", versions(5))
    second = cfl(database_url, tmp_path, "sync-cpl", str(changed))
    assert second.returncode == 0
    assert "changes from the previous snapshot: 2 added, 0 removed, 0 changed" in second.stdout

    snapshots = cfl(database_url, tmp_path, "cpl", "snapshots", "--format", "json")
    assert snapshots.returncode == 0
    listed = [json.loads(line) for line in snapshots.stdout.splitlines()]
    assert [(Path(s["source"]).name, s["current"]) for s in listed] == [
        ("changed.csv", True),
        ("good.csv", False),
    ]

    diff = cfl(database_url, tmp_path, "cpl", "diff", "1", "2")
    assert diff.returncode == 0
    assert "snapshot 1 -> 2: 2 added, 0 removed, 0 changed" in diff.stdout
    assert "+ 10B2/0001/0100/00040000" in diff.stdout

    runs = cfl(database_url, tmp_path, "cpl", "runs")
    assert [o for o in ("applied", "unchanged", "rejected", "fetch_failed") if o in runs.stdout] == [
        "applied",
        "unchanged",
        "rejected",
        "fetch_failed",
    ]


async def test_sync_cpl_waits_for_a_running_sync_then_gives_up_with_exit_2(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    good = write_csv(tmp_path / "good.csv", versions(3))
    async with sync_lock(db.engine):
        busy = cfl(database_url, tmp_path, "sync-cpl", str(good), "--wait", "0.5")
    assert busy.returncode == 2
    assert "another CPL sync is running" in busy.stderr
    after = cfl(database_url, tmp_path, "sync-cpl", str(good))
    assert after.returncode == 0


def test_sync_cpl_without_a_source_says_how_to_give_one(tmp_path: Path) -> None:
    result = cfl(f"sqlite:///{tmp_path}/x.sqlite3", tmp_path, "sync-cpl")
    assert result.returncode == 2
    assert "CFL_CPL_SOURCE" in result.stderr


@pytest.mark.parametrize(
    "variable,value", [("CFL_DATABASE_URL", "mysql://x"), ("CFL_CPL_SYNC_INTERVAL", "soon")]
)
def test_bad_configuration_is_named(tmp_path: Path, variable: str, value: str) -> None:
    env_url = value if variable == "CFL_DATABASE_URL" else f"sqlite:///{tmp_path}/x.sqlite3"
    env = {**os.environ, "CFL_DATABASE_URL": env_url}
    if variable != "CFL_DATABASE_URL":
        env[variable] = value
    result = subprocess.run(
        [sys.executable, "-m", "cfl_graph", "db", "upgrade"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 3
    assert f"configuration error: {variable}=" in result.stderr


# Every command that reads or writes the library's tables, with arguments it would otherwise accept.
COMMANDS_THAT_NEED_THE_SCHEMA = [
    ["sync-cpl", "SOURCE"],
    ["cpl", "snapshots"],
    ["cpl", "runs"],
    ["cpl", "diff", "1", "2"],
    ["party", "add", "Calder Supply Ltd", "--role", "supplier"],
    ["party", "list"],
    ["token", "create", "Calder Supply Ltd"],
    ["token", "list"],
    ["token", "revoke", "abcdef"],
    ["key", "add", "Calder Supply Ltd", "SOURCE"],
    ["key", "list"],
    ["key", "revoke", "0123456789abcdef"],
    ["verify"],
    ["image", "import", "SOURCE", "--party", "Calder Supply Ltd"],
    ["image", "list"],
    ["audit", "export"],
    ["serve", "--port", "1"],
]


@pytest.mark.parametrize("command", COMMANDS_THAT_NEED_THE_SCHEMA, ids=" ".join)
def test_a_command_on_an_unmigrated_database_says_to_run_db_upgrade(
    tmp_path: Path, command: list[str]
) -> None:
    source = write_csv(tmp_path / "cpl.csv", versions(2))
    url = f"sqlite:///{tmp_path}/never-migrated.sqlite3"
    ran = cfl(url, tmp_path, *[str(source) if arg == "SOURCE" else arg for arg in command])
    assert ran.returncode == 3, (ran.stdout, ran.stderr)
    assert "run `cfl-graph db upgrade` first" in ran.stderr
    assert "Traceback" not in ran.stderr and "OperationalError" not in ran.stderr + ran.stdout


async def test_numeric_arguments_are_ascii_digits_within_the_id_columns(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    for args in (
        ["audit", "export", "--to", "٣"],
        ["audit", "export", "--to", "²"],
        ["audit", "export", "--from", "99999999999999999999"],
        ["cpl", "diff", "1", "²"],
        ["cpl", "diff", "1", str(2**40)],
        ["cpl", "snapshots", "--limit", "10000000000000000000000"],
        ["image", "list", "--limit", "۱۰"],
        ["token", "create", "Calder Supply Ltd", "--expires-in", "٣٠"],
    ):
        ran = cfl(database_url, tmp_path, *args)
        assert ran.returncode == 2, (args, ran.stdout, ran.stderr)
        assert "must be a whole number from" in " ".join(ran.stderr.split()), (args, ran.stderr)
        assert "Traceback" not in ran.stderr, args


async def test_an_image_state_to_list_by_is_one_of_the_four(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    ran = cfl(database_url, tmp_path, "image", "list", "--state", "publishd")
    assert ran.returncode == 2, (ran.stdout, ran.stderr)
    said = " ".join(ran.stderr.split())
    assert "'publishd' is not one of" in said and "'withdrawn'" in said, said
    assert "Traceback" not in ran.stderr
