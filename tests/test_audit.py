"""The audit trail (R8, R12): every state change is an event chained to the one before, and any edit,
deletion or reordering is found and named by `cfl-graph verify`."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import select, text

from cfl_graph.access.parties import add_party
from cfl_graph.access.tokens import revoke_token
from cfl_graph.audit import SYSTEM, Actor, export_range, record, verify_chain, verify_export
from cfl_graph.database import Database
from cfl_graph.doors.web.app import create_app
from cfl_graph.settings import Settings
from cfl_graph.tables import AuditEvent, Role
from cpl_sync.sync import sync_cpl
from tests.fixtures.cli import run_cli
from tests.fixtures.cpl_files import versions, write_csv
from tests.fixtures.parties import Tokens, make_tokens


async def events(db: Database) -> list[AuditEvent]:
    async with db.sessions() as session:
        return list((await session.execute(select(AuditEvent).order_by(AuditEvent.id))).scalars())


async def problems(db: Database) -> list[str]:
    async with db.sessions() as session:
        return (await verify_chain(session)).problems


async def test_state_changes_are_recorded_with_who_did_them(db: Database, tmp_path: Path) -> None:
    tokens = await make_tokens(db)
    await sync_cpl(db, str(write_csv(tmp_path / "cpl.csv", versions(3))), work_dir=tmp_path, trigger="cli")
    async with db.sessions() as session, session.begin():
        await revoke_token(session, tokens.supplier.split("_")[1], actor=Actor("Library Operator", 6))
    recorded = await events(db)
    actions = [e.action for e in recorded]
    assert actions.count("party.added") == 7 and actions.count("token.issued") == 10
    assert actions[-2:] == ["cpl.sync.applied", "token.revoked"]
    sync_event = recorded[-2]
    assert sync_event.actor.startswith("cli:")
    assert sync_event.details["row_count"] == 3 and len(sync_event.details["content_sha256"]) == 64
    assert (recorded[-1].actor, recorded[-1].actor_party_id) == ("Library Operator", 6)
    assert [e.id for e in recorded] == list(range(1, len(recorded) + 1))
    assert await problems(db) == []


async def test_a_change_that_rolls_back_leaves_no_event(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.sessions() as session, session.begin():
            await add_party(session, "Calder Supply Ltd", Role.SUPPLIER, actor=SYSTEM)
            raise RuntimeError("something after the change failed")
    assert await events(db) == []
    async with db.sessions() as session, session.begin():
        await add_party(session, "Calder Supply Ltd", Role.SUPPLIER, actor=SYSTEM)
    assert [e.id for e in await events(db)] == [1]
    assert await problems(db) == []


async def five_events(db: Database) -> None:
    for n in range(5):
        async with db.sessions() as session, session.begin():
            await record(session, SYSTEM, "test.event", f"event number {n + 1}", {"n": n + 1})


@pytest.mark.parametrize(
    "tamper,expected",
    [
        (
            "UPDATE audit_events SET subject = 'nothing to see' WHERE id = 3",
            ["event 3 edited or moved: its content no longer matches its hash"],
        ),
        (
            "UPDATE audit_events SET details = '{\"n\": 99}' WHERE id = 2",
            ["event 2 edited or moved: its content no longer matches its hash"],
        ),
        ("DELETE FROM audit_events WHERE id = 3", ["event 3 deleted: the ids jump from 2 to 4"]),
        ("DELETE FROM audit_events WHERE id IN (2, 3)", ["events 2-3 deleted: the ids jump from 1 to 4"]),
        (
            "DELETE FROM audit_events WHERE id = 5",
            [
                "the trail ends at event 4 but the head names event 5: the newest events were deleted or the head was altered"
            ],
        ),
    ],
    ids=["edited subject", "edited details", "deleted", "two deleted", "tail deleted"],
)
async def test_tampering_is_found_and_named(db: Database, tamper: str, expected: list[str]) -> None:
    await five_events(db)
    assert await problems(db) == []
    async with db.engine.begin() as conn:
        await conn.execute(text(tamper))
    assert await problems(db) == expected


async def test_reordered_events_are_found_and_named(db: Database) -> None:
    await five_events(db)
    async with db.engine.begin() as conn:  # swap the rows of events 2 and 3, ids and all
        await conn.execute(text("UPDATE audit_events SET id = 1000 WHERE id = 2"))
        await conn.execute(text("UPDATE audit_events SET id = 2 WHERE id = 3"))
        await conn.execute(text("UPDATE audit_events SET id = 3 WHERE id = 1000"))
    found = await problems(db)
    assert "event 3 is out of order: it occurred before event 2" in found
    assert "event 2 edited or moved: its content no longer matches its hash" in found
    assert "event 3 edited or moved: its content no longer matches its hash" in found


async def test_concurrent_appends_make_one_unbroken_chain(db: Database) -> None:
    async def append(n: int) -> None:
        async with db.sessions() as session, session.begin():
            await record(session, SYSTEM, "test.concurrent", f"writer {n}")

    await asyncio.gather(*(append(n) for n in range(30)))
    recorded = await events(db)
    assert [e.id for e in recorded] == list(range(1, 31))
    assert sorted(e.subject for e in recorded) == sorted(f"writer {n}" for n in range(30))
    assert await problems(db) == []


async def test_an_exported_range_verifies_on_its_own_and_names_a_forgery(db: Database) -> None:
    await five_events(db)
    async with db.sessions() as session:
        exported = [item async for item in export_range(session, 2, 4)]
    assert [item.get("id") for item in exported[:-1]] == [2, 3, 4]
    assert exported[-1] == {"chain_head": {"id": 5, "hash": (await events(db))[-1].hash}}
    assert verify_export(exported).problems == []
    forged = [dict(item) for item in exported]
    forged[1]["details"] = {"n": 42}
    assert verify_export(forged).problems == [
        "event 3 edited or moved: its content no longer matches its hash"
    ]


async def test_verify_command_exit_codes(db: Database, database_url: str) -> None:
    await five_events(db)

    def verify() -> subprocess.CompletedProcess[str]:
        return run_cli(database_url, "verify")

    ok = verify()
    assert ok.returncode == 0 and "audit trail intact: 5 events, head 5" in ok.stdout
    async with db.engine.begin() as conn:
        await conn.execute(text("DELETE FROM audit_events WHERE id = 2"))
    broken = verify()
    assert broken.returncode == 1
    assert "audit trail BROKEN: 1 problem(s)" in broken.stderr
    assert "event 2 deleted: the ids jump from 1 to 3" in broken.stderr

    exported = await asyncio.to_thread(run_cli, database_url, "audit", "export", "--from", "3")
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert [line.get("id") for line in lines] == [3, 4, 5, None]


async def test_panel_and_admin_export_the_trail_over_http(db: Database) -> None:
    tokens: Tokens = await make_tokens(db)
    app = create_app(Settings(database_url=db.url), db=db)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as http:

        async def get(token: str | None, query: str = "") -> httpx2.Response:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            return await http.get(f"/api/v1/audit/events{query}", headers=headers)

        panel = await get(tokens.panel, "?from=2&to=3")
        assert panel.status_code == 200
        lines = [json.loads(line) for line in panel.text.splitlines()]
        assert [line.get("id") for line in lines] == [2, 3, None]
        assert verify_export(lines).problems == []
        assert (await get(tokens.admin)).status_code == 200
        supplier = await get(tokens.supplier)
        assert supplier.status_code == 403
        assert "the supplier role does not include it" in supplier.json()["error"]
        assert (await get(tokens.manufacturer)).status_code == 403
        assert (await get(None)).status_code == 401
        bad = await get(tokens.panel, "?from=abc")
        assert bad.status_code == 400 and bad.json()["error"].startswith("`from` (an event id) must be")
        backwards = await get(tokens.panel, "?from=5&to=2")
        assert backwards.status_code == 400
