"""The library's invariants under random interleavings from several clients (issue 15): a stateful test.

Hypothesis's rule-based state machine drives a real `cfl-graph serve` process on each database. Each
step fires two to four operations *at once*, from separate clients (the uploading manufacturer, a second
token of it that approves, a supplier): uploads (also the same bytes for another model), approvals,
publications, commercial declarations, new release notes, withdrawals, discards, and CPL syncs through
the real `cfl-graph sync-cpl` command with a CPL that drops a version, withdraws one, changes a hash,
or goes back. After every step, with everything settled, it checks:

1. never a published image of a version declared commercial (R2);
2. one image per version, ever;
3. every record's bytes present in the store and hashing to its SHA-256;
4. an approval covers exactly what is published (the manufacturer publishes only approved drafts);
5. nothing withdrawn or held is served, and everything published is, byte for byte;
6. published images are exactly those the current CPL certifies as they are; held ones are not.

Bounded: `EXAMPLES` runs of `STEPS` steps on each database; the figures at the end of the run say how
many steps, operations and clients it ran.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from cfl_graph.database import Database
from tests.fixtures import figures
from tests.fixtures.cli import run_cli
from tests.fixtures.cpl_files import write_csv
from tests.fixtures.library import (
    CPL,
    GOOD_NOTES,
    OWN_A1,
    OWN_A2,
    OWN_A3,
    OWN_B_HW1,
    OWN_B_HW2,
    Version,
    make_world,
    require_approval,
)
from tests.fixtures.parties import OWN_MANUFACTURER_ID
from tests.fixtures.server import ServerProcess, server_env

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(900)]

EXAMPLES = 3
STEPS = 25
MORE = [Version(OWN_MANUFACTURER_ID, "0003", "0100", f"{0x05000000 + n:08X}") for n in range(8)]
VERSIONS = [OWN_A1, OWN_A2, OWN_A3, OWN_B_HW1, OWN_B_HW2, *MORE]
# "advance" takes a version's next step (upload with notes, approve, publish), so that random batches
# reach published images often enough to race them; it is drawn more often than the rest.
OPERATIONS = (
    *["advance"] * 4,
    "upload",
    "upload elsewhere",
    "approve",
    "publish",
    "declare",
    "notes",
    "withdraw",
    "discard",
    "sync",
)


@dataclass
class Context:
    base: str
    database_url: str
    blobs: Path
    work: Path
    uploader: str
    approver: str
    supplier: str
    images: dict[Version, bytes]
    cpls: dict[str, Path]
    operations: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    steps: int = 0
    verified: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.database_url.startswith("sqlite"):
            path = self.database_url.split("///", 1)[1]
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                return list(conn.execute(sql))

        async def fetch() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self.database_url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                return [tuple(r) for r in await conn.fetch(sql)]
            finally:
                await conn.close()

        return asyncio.run(fetch())


def _key(version: Version) -> str:
    return (
        f"manufacturer_id = '{version.manufacturer_id}' AND model_id = '{version.model_id}' AND "
        f"hardware_version = '{version.hardware_version}' AND firmware_version = '{version.firmware_version}'"
    )


class Library(RuleBasedStateMachine):
    context: Context  # set on the class before each run

    def __init__(self) -> None:
        super().__init__()
        c = self.context
        self.clients = {
            token: httpx2.Client(base_url=c.base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            for token in (c.uploader, c.approver, c.supplier)
        }

    def teardown(self) -> None:
        for http in self.clients.values():
            http.close()

    # --- the operations ---------------------------------------------------------------------------

    def _image_id(self, version: Version) -> int | None:
        found = self.context.rows(f"SELECT id FROM library_images WHERE {_key(version)}")
        return None if not found else int(found[0][0])

    def _graphql(self, token: str, query: str, **variables: Any) -> dict[str, Any]:
        answer = self.clients[token].post("/graphql", json={"query": query, "variables": variables})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        assert not any(
            e.get("extensions", {}).get("code") == "INTERNAL_ERROR" for e in body.get("errors", [])
        ), body
        return body

    def _operate(self, operation: str, version: Version, salt: int) -> str:
        c = self.context
        if operation == "advance":
            found = c.rows(f"SELECT state, approved_at FROM library_images WHERE {_key(version)}")
            if not found:
                operation = "upload"
            elif found[0][0] == "draft":
                operation = "approve" if found[0][1] is None else "publish"
            else:
                return "nothing to advance"
        if operation in ("upload", "upload elsewhere"):
            # The bytes of `version`, uploaded for it, or for its sibling model (same bytes, another record).
            target = version
            if operation == "upload elsewhere":
                target = {OWN_B_HW1: OWN_B_HW2, OWN_B_HW2: OWN_B_HW1}.get(version, version)
            answer = self.clients[c.uploader].post(
                "/api/v1/images",
                files={"file": ("image.zigbee", c.images[version])},
                data={
                    "modelId": target.model_id,
                    "hardwareVersion": target.hardware_version,
                    "releaseNotes": GOOD_NOTES,
                },
            )
            assert answer.status_code in (201, 409), answer.text
            return f"{operation} {answer.status_code}"
        if operation == "sync":
            variant = sorted(c.cpls)[salt % len(c.cpls)]
            synced = run_cli(c.database_url, "sync-cpl", str(c.cpls[variant]), work=c.work, timeout=120)
            assert synced.returncode == 0, synced.stdout + synced.stderr
            return variant
        if operation == "declare":
            body = self._graphql(
                c.uploader,
                DECLARE,
                model=version.model_id,
                hw=version.hardware_version,
                fw=version.firmware_version,
            )
            return "ok" if "errors" not in body else body["errors"][0]["extensions"]["code"]
        image_id = self._image_id(version)
        if image_id is None:
            return "no image"
        token = c.approver if operation == "approve" else c.uploader
        query, variables = {
            "approve": (APPROVE, {}),
            "publish": (PUBLISH, {}),
            "withdraw": (WITHDRAW, {"reason": "a defect found in the field by a supplier"}),
            "notes": (NOTES, {"m": GOOD_NOTES + f"\n- Revision {salt}: the display dims at night.\n"}),
            "discard": (DISCARD, {}),
        }[operation]
        body = self._graphql(token, query, id=image_id, **variables)
        return "ok" if "errors" not in body else body["errors"][0]["extensions"]["code"]

    @rule(
        batch=st.lists(
            st.tuples(st.sampled_from(OPERATIONS), st.sampled_from(VERSIONS), st.integers(0, 1000)),
            min_size=2,
            max_size=4,
        )
    )
    def at_once(self, batch: list[tuple[str, Version, int]]) -> None:
        """Two to four operations sent at the same moment by their clients."""
        barrier = threading.Barrier(len(batch))

        def run(operation: str, version: Version, salt: int) -> str:
            barrier.wait()
            return self._operate(operation, version, salt)

        with ThreadPoolExecutor(len(batch)) as pool:
            outcomes = [f.result() for f in [pool.submit(run, *op) for op in batch]]
        with self.context.lock:
            self.context.steps += 1
            for (operation, _, _), outcome in zip(batch, outcomes, strict=True):
                self.context.operations[operation] += 1
                self.context.outcomes[
                    outcome if outcome.startswith(operation) else f"{operation} {outcome}"
                ] += 1

    # --- what must always hold --------------------------------------------------------------------

    @invariant()
    def never_a_published_commercial_version(self) -> None:
        found = self.context.rows(
            "SELECT i.id FROM library_images i JOIN commercial_declarations d ON "
            "d.manufacturer_id = i.manufacturer_id AND d.model_id = i.model_id AND "
            "d.hardware_version = i.hardware_version AND d.firmware_version = i.firmware_version "
            "WHERE i.state IN ('published', 'held')"
        )
        assert found == [], f"published or held images of commercial versions: {found}"

    @invariant()
    def one_image_per_version(self) -> None:
        found = self.context.rows(
            "SELECT manufacturer_id, model_id, hardware_version, firmware_version, COUNT(*) FROM library_images "
            "GROUP BY manufacturer_id, model_id, hardware_version, firmware_version HAVING COUNT(*) > 1"
        )
        assert found == []

    @invariant()
    def every_record_has_its_bytes(self) -> None:
        c = self.context
        for (sha256,) in c.rows("SELECT DISTINCT file_sha256 FROM library_images"):
            if sha256 in c.verified:
                continue
            path = c.blobs / "sha256" / sha256[:2] / sha256[2:4] / sha256
            assert path.exists(), f"blob {sha256} of a record is missing"
            assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
            c.verified.add(sha256)
        # A blob deleted later and put again is checked again.
        c.verified &= {row[0] for row in c.rows("SELECT file_sha256 FROM library_images")}

    @invariant()
    def an_approval_covers_what_is_published(self) -> None:
        for image_id, notes, approved in self.context.rows(
            "SELECT id, release_notes_markdown, approved_notes_sha256 FROM library_images WHERE state = 'published'"
        ):
            assert approved == hashlib.sha256((notes or "").encode()).hexdigest(), f"image {image_id}"

    @invariant()
    def only_published_images_are_served(self) -> None:
        c = self.context
        supplier = self.clients[c.supplier]
        for image_id, state, sha256 in c.rows("SELECT id, state, file_sha256 FROM library_images"):
            answer = supplier.get(f"/api/v1/images/{image_id}/file")
            expected = {"published": 200, "held": 409, "withdrawn": 410, "draft": 404}[state]
            assert answer.status_code == expected, f"image {image_id} ({state}): {answer.status_code}"
            if state == "published":
                assert hashlib.sha256(answer.content).hexdigest() == sha256

    @invariant()
    def published_images_are_what_the_current_cpl_certifies(self) -> None:
        for image_id, state, certified in self.context.rows(
            "SELECT i.id, i.state, (f.status = 'active' AND f.image_hash = i.manufacturer_image_sha256) "
            "FROM library_images i LEFT JOIN cpl_certified_firmware f ON "
            "f.snapshot_id = (SELECT snapshot_id FROM cpl_current) AND f.manufacturer_id = i.manufacturer_id "
            "AND f.model_id = i.model_id AND f.hardware_version = i.hardware_version "
            "AND f.firmware_version = i.firmware_version WHERE i.state IN ('published', 'held')"
        ):
            assert bool(certified) == (state == "published"), f"image {image_id} is {state}"


NOTES = "mutation($id: ID!, $m: String!) { updateReleaseNotes(id: $id, markdown: $m) { imageId } }"
APPROVE = "mutation($id: ID!) { approveImage(id: $id) { imageId } }"
PUBLISH = "mutation($id: ID!) { publishImage(id: $id) { imageId } }"
WITHDRAW = "mutation($id: ID!, $reason: String!) { withdrawImage(id: $id, reason: $reason) { imageId } }"
DISCARD = "mutation($id: ID!) { discardImage(id: $id) }"
DECLARE = """mutation($model: String!, $hw: String!, $fw: String!) { declareCommercial(manufacturerId: "10B2",
  modelId: $model, hardwareVersion: $hw, firmwareVersion: $fw, reason: "built for one supplier only") {
  firmwareVersion } }"""


def _cpls(folder: Path) -> dict[str, Path]:
    """The CPL as it is, and as it moves under the library: a version dropped, withdrawn, re-hashed."""
    rows = [*CPL, *MORE]
    moved: dict[str, Callable[[Version], Any]] = {
        "as it is": lambda v: v.as_row(),
        "A1 dropped": lambda v: None if v == OWN_A1 else v.as_row(),
        "A2 withdrawn": lambda v: v.as_row(status="Withdrawn") if v == OWN_A2 else v.as_row(),
        "B re-hashed": lambda v: v.as_row(image_hash="ee" * 32) if v == OWN_B_HW1 else v.as_row(),
    }
    return {
        name: write_csv(folder / f"cpl-{index}.csv", [r for r in map(change, rows) if r is not None])
        for index, (name, change) in enumerate(moved.items())
    }


async def test_random_interleavings_from_several_clients_keep_every_invariant(
    db: Database, tmp_path: Path
) -> None:
    world = await make_world(db, tmp_path)
    assert (await world.sync([*CPL, *MORE])).outcome.value == "applied"
    approver = await require_approval(world)
    server = ServerProcess(server_env(db.url, tmp_path / "blobs", tmp_path / "work"), tmp_path / "server.log")
    await server.start()
    try:
        Library.context = Context(
            base=server.base,
            database_url=db.url,
            blobs=tmp_path / "blobs",
            work=tmp_path,
            uploader=world.tokens.manufacturer,
            approver=approver,
            supplier=world.tokens.supplier,
            images={v: world.image(v) for v in VERSIONS},
            cpls=_cpls(tmp_path),
        )
        await asyncio.to_thread(
            run_state_machine_as_test,
            Library,
            settings=settings(
                max_examples=EXAMPLES,
                stateful_step_count=STEPS,
                deadline=None,
                derandomize=False,
                database=None,
                suppress_health_check=list(HealthCheck),
            ),
        )
    finally:
        server.stop()
    c = Library.context
    figures.report(
        f"stateful invariants on {db.engine.dialect.name}: {c.steps} steps of 2-4 concurrent operations "
        f"({sum(c.operations.values())} in all) from 3 clients and the sync command, checked after each; "
        + ", ".join(f"{outcome} {count}" for outcome, count in sorted(c.outcomes.items()))
    )
    assert c.steps >= EXAMPLES
    # Each run starts from the state the previous one left (a real server is not reset between runs),
    # which only makes the interleavings longer; the invariants held after every step of every run.
