"""Operators register parties and tokens from the CLI; a token is printed once, alone on stdout."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from cfl_graph.access.tokens import TOKEN_PATTERN, authenticate
from cfl_graph.database import Database
from cfl_graph.tables import Role
from tests.fixtures.cli import run_cli
from tests.fixtures.parties import make_tokens


def cfl(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(database_url, *args)


async def test_parties_and_tokens_from_the_cli(db: Database, database_url: str, tmp_path: Path) -> None:
    added = cfl(
        database_url,
        "party",
        "add",
        "Northfield Metering Ltd",
        "--role",
        "manufacturer",
        "--manufacturer-id",
        "10b2",
        "--manufacturer-id",
        "0x1C",
    )
    assert (added.returncode, added.stdout.strip()) == (
        0,
        "added manufacturer party Northfield Metering Ltd for manufacturer ids 001C, 10B2",
    )

    created = cfl(
        database_url, "token", "create", "Northfield Metering Ltd", "--expires-in", "7", "--read-only"
    )
    assert created.returncode == 0
    token = created.stdout.strip()
    assert TOKEN_PATTERN.fullmatch(token)
    assert "shown once" in created.stderr and token not in created.stderr
    async with db.sessions() as session:
        principal = await authenticate(session, token)
    assert (principal.role, principal.read_only, principal.manufacturer_ids) == (
        Role.MANUFACTURER,
        True,
        frozenset({"10B2", "001C"}),
    )

    listed = cfl(database_url, "token", "list")
    public_id = token.split("_")[1]
    assert public_id in listed.stdout and "read-only" in listed.stdout and token not in listed.stdout

    revoked = cfl(database_url, "token", "revoke", public_id)
    assert (revoked.returncode, revoked.stdout.strip()) == (0, f"revoked token {public_id}")
    assert "revoked" in cfl(database_url, "token", "list").stdout
    assert "Northfield Metering Ltd" in cfl(database_url, "party", "list").stdout


async def test_bad_party_requests_are_refused_with_reasons(db: Database, database_url: str) -> None:
    assert cfl(database_url, "party", "add", "Calder Supply Ltd", "--role", "supplier").returncode == 0
    cases = [
        (
            ["party", "add", "Calder Supply Ltd", "--role", "supplier"],
            'a party named "Calder Supply Ltd" already exists',
        ),
        (["party", "add", "Harrow plc", "--role", "manufacturer"], "needs at least one manufacturer id"),
        (
            ["party", "add", "Harrow plc", "--role", "supplier", "--manufacturer-id", "10B2"],
            "only manufacturer parties",
        ),
        (
            ["party", "add", "Harrow plc", "--role", "manufacturer", "--manufacturer-id", "XYZ"],
            "is not hexadecimal",
        ),
        (["token", "create", "Nobody Ltd"], 'no party named "Nobody Ltd"'),
        (["token", "create", "Calder Supply Ltd", "--expires-in", "999"], "between 1 and 366 days"),
        (["token", "revoke", "aaaaaaaaaaaa"], "no token aaaaaaaaaaaa"),
    ]
    for args, reason in cases:
        result = cfl(database_url, *args)
        assert result.returncode == 1, args
        assert reason in result.stderr, (args, result.stderr)
    taken = cfl(database_url, "party", "add", "A Ltd", "--role", "manufacturer", "--manufacturer-id", "10B2")
    assert taken.returncode == 0
    again = cfl(database_url, "party", "add", "B Ltd", "--role", "manufacturer", "--manufacturer-id", "10b2")
    assert again.returncode == 1 and "manufacturer id 10B2 is already registered to A Ltd" in again.stderr


async def test_party_list_shows_the_downloads_the_policy_grants(db: Database, database_url: str) -> None:
    await make_tokens(db)
    listed = cfl(database_url, "party", "list", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    downloads = {party["party"]: party["downloads"] for party in map(json.loads, listed.stdout.splitlines())}
    assert downloads == {
        "Calder Supply Ltd": True,
        "Northfield Metering Ltd": True,
        "Harrow Instruments plc": True,
        "SEC Panel": False,
        "SEC Panel Audit": True,
        "Library Operator": False,  # admins manage; they do not download (the policy refuses them)
        "Gone Energy Ltd": False,  # disabled: none of its tokens works
    }
