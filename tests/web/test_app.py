"""The served app: health, the CPL snapshot query, start-up checks, the scheduled sync, and the demo."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx2
import pytest
from starlette.testclient import TestClient

from cfl_graph.access.parties import add_party
from cfl_graph.access.tokens import issue_token
from cfl_graph.audit import SYSTEM
from cfl_graph.database import Database
from cfl_graph.doors.web.app import SchemaNotCurrent, create_app
from cfl_graph.settings import Settings
from cfl_graph.tables import Role
from cpl_sync.sync import sync_cpl
from tests.fixtures.cli import run_cli
from tests.fixtures.cpl_files import versions, write_csv

SNAPSHOT_QUERY = (
    "query($id: ID) { cplSnapshot(id: $id) { snapshotId rowCount deviceModelCount isCurrent contentSha256 } }"
)


async def graphql(
    db: Database, token: str, tmp_path: Path, query: str, variables: dict[str, Any] | None = None
) -> Any:
    app = create_app(Settings(database_url=db.url, work_dir=tmp_path), db=db)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as client:
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


@pytest.fixture
async def token(db: Database) -> str:
    async with db.sessions() as session, session.begin():
        party = await add_party(session, "Calder Supply Ltd", Role.SUPPLIER, actor=SYSTEM)
        return (await issue_token(session, party, actor=SYSTEM)).text


async def test_cpl_snapshot_is_null_before_the_first_sync(db: Database, token: str, tmp_path: Path) -> None:
    assert await graphql(db, token, tmp_path, SNAPSHOT_QUERY) == {"cplSnapshot": None}


async def test_cpl_snapshot_answers_the_current_and_any_earlier_snapshot(
    db: Database, token: str, tmp_path: Path
) -> None:
    first = await sync_cpl(db, str(write_csv(tmp_path / "a.csv", versions(3))), work_dir=tmp_path)
    second = await sync_cpl(db, str(write_csv(tmp_path / "b.csv", versions(5))), work_dir=tmp_path)
    current = (await graphql(db, token, tmp_path, SNAPSHOT_QUERY))["cplSnapshot"]
    assert current["snapshotId"] == second.snapshot_id
    assert (current["rowCount"], current["deviceModelCount"], current["isCurrent"]) == (5, 1, True)
    earlier = (await graphql(db, token, tmp_path, SNAPSHOT_QUERY, {"id": str(first.snapshot_id)}))[
        "cplSnapshot"
    ]
    assert (earlier["rowCount"], earlier["isCurrent"]) == (3, False)
    assert (await graphql(db, token, tmp_path, SNAPSHOT_QUERY, {"id": "999"}))["cplSnapshot"] is None
    # An id that names no snapshot at all is refused, naming what an id is (issue 15), not answered null.
    app = create_app(Settings(database_url=db.url, work_dir=tmp_path), db=db)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as client:
        refused = await client.post(
            "/graphql",
            json={"query": SNAPSHOT_QUERY, "variables": {"id": "not-a-number"}},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_healthz_reports_the_database(db: Database, tmp_path: Path) -> None:
    app = create_app(Settings(database_url=db.url), db=db)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as client:
        ok = await client.get("/healthz")
    assert (ok.status_code, ok.json()) == (200, {"status": "ok", "database": "ok"})


async def test_healthz_says_503_when_the_database_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    db = Database.connect(f"postgresql+asyncpg://postgres@127.0.0.1:{port}/none", connect_args={"timeout": 2})
    app = create_app(Settings(database_url=db.url), db=db)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test") as client:
        down = await client.get("/healthz")
    await db.dispose()
    assert (down.status_code, down.json()) == (503, {"status": "unavailable", "database": "unreachable"})


def test_the_service_refuses_to_start_on_an_unmigrated_database(tmp_path: Path) -> None:
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/empty.sqlite3"))
    with pytest.raises(SchemaNotCurrent, match="run `cfl-graph db upgrade`"), TestClient(app):
        pass


def test_serve_syncs_the_cpl_on_its_interval(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cfl.sqlite3"
    source = write_csv(tmp_path / "cpl.csv", versions(4))
    settings = Settings(
        database_url=url,
        work_dir=tmp_path / "work",
        blob_dir=tmp_path / "blobs",
        cpl_source=str(source),
        cpl_sync_interval=1,
    )

    def cfl(*args: str) -> str:
        done = run_cli(url, *args)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    cfl("db", "upgrade")
    cfl("party", "add", "Calder Supply Ltd", "--role", "supplier")
    token = cfl("token", "create", "Calder Supply Ltd")
    with TestClient(create_app(settings)) as client:
        deadline = time.monotonic() + 20
        data: Any = None
        while time.monotonic() < deadline:
            data = client.post(
                "/graphql", json={"query": SNAPSHOT_QUERY}, headers={"Authorization": f"Bearer {token}"}
            ).json()["data"]
            if data["cplSnapshot"] is not None:
                break
            time.sleep(0.2)
    assert data["cplSnapshot"]["rowCount"] == 4


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_demo_command_serves_realistic_data_from_nothing(tmp_path: Path) -> None:
    """The README's first command: a fresh folder, `cfl-graph serve --demo`, and a catalogue answers with a
    history: quarterly snapshots, images published weeks after their listing (at the times the demo's
    clock said), held and withdrawn ones; the console counts rather than logging every upload, and ends
    with the address, the tokens file and a curl on the port in use."""
    port = _free_port()
    env = {
        **os.environ,
        "CFL_DATABASE_URL": f"sqlite:///{tmp_path}/var/cfl.sqlite3",
        "CFL_BLOB_DIR": str(tmp_path / "var" / "blobs"),
        "CFL_WORK_DIR": str(tmp_path / "var" / "work"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cfl_graph", "serve", "--demo", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    console: list[str] = []
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 240  # about 50 s on an idle 2-core machine
        assert server.stdout is not None
        while not any(line.startswith("serving on") for line in console):
            assert server.poll() is None, "".join(console) + server.stdout.read()
            console.append(server.stdout.readline())
            assert time.monotonic() < deadline, "demo did not finish loading in 240 s:\n" + "".join(console)
        while True:
            try:
                if httpx2.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            assert time.monotonic() < deadline, "demo server did not come up"
            time.sleep(0.3)
        text = "".join(console)
        assert len(console) < 30, text  # counts, not a log line per upload
        assert "INFO" not in text, text
        assert "demo: CPL list 8 of 8 synchronised" in text
        tokens_file = tmp_path / "var" / "work" / "demo" / "tokens.txt"
        assert f"sign in at {base}/ with a token from {tokens_file}" in text
        curl = next(line for line in console if "curl" in line)
        assert curl.rstrip().endswith(f"{base}/graphql")
        assert tokens_file.stat().st_mode & 0o077 == 0  # readable by its owner only
        tokens = re.findall(r"^(\w+) .*\n\s+(cflg_\S+)$", tokens_file.read_text(), re.MULTILINE)
        assert [role for role, _ in tokens] == ["supplier", "manufacturer", "panel", "admin"]
        # The console's own curl, run as a reader would paste it.
        pasted = subprocess.run(
            ["bash", "-c", "".join(line for line in console if line.startswith("  "))],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert '"rowCount":2993' in pasted.stdout, pasted
        auth = {"Authorization": f"Bearer {tokens[0][1]}"}
        assert httpx2.post(f"{base}/graphql", json={"query": SNAPSHOT_QUERY}, timeout=10).status_code == 401
        body = httpx2.post(f"{base}/graphql", json={"query": SNAPSHOT_QUERY}, headers=auth, timeout=10).json()
        current = body["data"]["cplSnapshot"]
        assert current["snapshotId"] == 8  # eight quarterly lists, 2025-01-01 to 2026-10-01
        earlier = httpx2.post(
            f"{base}/graphql",
            json={"query": SNAPSHOT_QUERY, "variables": {"id": "1"}},
            headers=auth,
            timeout=10,
        ).json()["data"]["cplSnapshot"]
        assert 0 < earlier["rowCount"] < current["rowCount"]
        panel = {"Authorization": f"Bearer {tokens[2][1]}"}
        timely = httpx2.post(
            f"{base}/graphql",
            json={"query": "{ timeliness(groupBy: DEVICE_TYPE) { key published medianDays p90Days } }"},
            headers=panel,
            timeout=10,
        ).json()["data"]["timeliness"]
        assert sum(g["published"] for g in timely) > 400
        # Published weeks after listing, not on the day the demo ran.
        assert all(3 <= g["medianDays"] <= 30 for g in timely), timely
        # The demo library holds real signed images: the feed lists them and the bytes are the CPL's.
        feed = httpx2.get(f"{base}/feeds/images.atom", headers=auth, timeout=10)
        atom = "{http://www.w3.org/2005/Atom}"
        updated = [e.text for e in ElementTree.fromstring(feed.content).iter(f"{atom}updated")]
        assert len({stamp[:10] for stamp in updated if stamp}) > 5, updated[:10]  # spread over days
        enclosures = [
            link.attrib["href"].split("/")[-2]
            for link in ElementTree.fromstring(feed.content).iter(f"{atom}link")
            if link.attrib.get("rel") == "enclosure"
        ]
        assert len(enclosures) >= 50, feed.text[:500]
        image = httpx2.get(f"{base}/api/v1/images/{enclosures[0]}", headers=auth, timeout=10).json()
        data = httpx2.get(f"{base}/api/v1/images/{enclosures[0]}/file", headers=auth, timeout=10).content
        assert hashlib.sha256(data).hexdigest() == image["fileSha256"]
        offset, length = image["manufacturerImageOffset"], image["manufacturerImageLength"]
        assert hashlib.sha256(data[offset : offset + length]).hexdigest() == image["manufacturerImageSha256"]
        assert image["problems"] == [] and image["state"] == "published"
        # Every time the demo recorded is in order, and the chain is whole.
        verified = run_cli(env["CFL_DATABASE_URL"], "verify", work=tmp_path / "var", timeout=120)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        server.terminate()
        server.wait(timeout=20)
