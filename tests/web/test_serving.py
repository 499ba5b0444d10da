"""How `serve` runs uvicorn (issue 15): repeated log records are held back and counted, secrets never
reach the access log, and the connection cap fits the process's descriptor limit."""

from __future__ import annotations

import logging
import resource
from pathlib import Path

import httpx2
import pytest

from cfl_graph import migrate
from cfl_graph.access.tokens import new_token_text
from cfl_graph.database import Database
from cfl_graph.doors.web.serving import (
    BACKLOG,
    BURSTS_IN_FLIGHT,
    FD_RESERVE,
    MAX_LINGERING,
    RepeatedRecords,
    connection_limits,
    redact_request_target,
)
from cfl_graph.settings import Settings
from tests.fixtures.server import ServerProcess, server_env


def record(
    message: str, *args: object, name: str = "uvicorn.error", level: int = logging.WARNING
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, None)


def test_one_of_identical_records_passes_per_interval_and_the_next_says_how_many_were_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("cfl_graph.doors.web.serving.time.monotonic", lambda: clock[0])
    repeats = RepeatedRecords(interval=10)
    passed = [repeats.filter(record("Invalid HTTP request received.")) for _ in range(50_000)]
    assert passed.count(True) == 1
    # Different text, level or logger: its own kind.
    assert repeats.filter(record("Invalid HTTP request received.", level=logging.INFO))
    assert repeats.filter(record("Invalid HTTP request received.", name="asyncio"))
    assert repeats.filter(record("open %d of %d", 3, 5)) and not repeats.filter(record("open %d of %d", 3, 5))
    assert repeats.filter(record("open %d of %d", 4, 5))
    clock[0] += 10.5
    later = record("Invalid HTTP request received.")
    assert repeats.filter(later)
    assert later.getMessage() == (
        "Invalid HTTP request received. [and 49,999 more like it in the 10 s before, not logged]"
    )
    templated = record("refused %d%% of %s", 50, "them")
    assert repeats.filter(templated) and not repeats.filter(record("refused %d%% of %s", 50, "them"))
    clock[0] += 11
    again = record("refused %d%% of %s", 50, "them")
    assert repeats.filter(again) and again.getMessage().startswith("refused 50% of them [and 1 more like it")


def test_records_of_different_exceptions_are_not_held_back() -> None:
    repeats = RepeatedRecords(interval=10)
    for problem in ("a", "b", "c"):
        failed = record("Exception in ASGI application\n", level=logging.ERROR)
        failed.exc_info = (RuntimeError, RuntimeError(problem), None)
        assert repeats.filter(failed)
    same = record("Exception in ASGI application\n", level=logging.ERROR)
    same.exc_info = (RuntimeError, RuntimeError("a"), None)
    assert not repeats.filter(same)


def test_the_kinds_remembered_are_bounded() -> None:
    repeats = RepeatedRecords(interval=10, max_kinds=100)
    for n in range(10_000):
        assert repeats.filter(record(f"message {n}"))
    assert len(repeats._seen) == 100


@pytest.mark.parametrize(
    "target,kept",
    [
        ("/feeds/images.atom?token=SECRET", "/feeds/images.atom?token=[redacted]"),
        ("/upload?csrf_token=SECRET&x=1", "/upload?csrf_token=[redacted]&x=1"),
        (
            "/a?access_token=SECRET&TOKEN=SECRET&Csrf_Token=SECRET",
            "/a?access_token=[redacted]&TOKEN=[redacted]&Csrf_Token=[redacted]",
        ),
        ("/a?to%6Ben=SECRET", "/a?to%6Ben=[redacted]"),
        ("/a?token+=SECRET", "/a?token+=[redacted]"),
        ("/a?tokens=kept&mytoken=kept", "/a?tokens=kept&mytoken=kept"),
        ("/a?token", "/a?token"),
        ("/healthz", "/healthz"),
    ],
)
def test_secret_query_parameters_are_redacted(target: str, kept: str) -> None:
    assert redact_request_target(target) == kept


def test_a_token_anywhere_in_a_request_target_is_redacted() -> None:
    token, public_id, secret = new_token_text()
    shown = redact_request_target(f"/login?next=/feeds?x%3D{token}&q={token}")
    assert secret not in shown and f"cflg_{public_id}_[redacted]" in shown


def test_the_connection_cap_fits_the_descriptor_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    overhead = FD_RESERVE + MAX_LINGERING + BURSTS_IN_FLIGHT * BACKLOG
    modest = connection_limits(Settings(max_connections=100, header_timeout=3, body_timeout=7))
    assert (modest.max_connections, modest.header_timeout, modest.body_timeout) == (100, 3, 7)
    huge = connection_limits(Settings(max_connections=10**9))
    now_soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert huge.max_connections == now_soft - overhead <= hard - overhead
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_no_secret_reaches_the_access_log_of_a_real_server(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/cfl.sqlite3"
    db = Database.connect(url)
    await migrate.upgrade(db.engine)
    await db.dispose()
    env = server_env(url, tmp_path / "blobs", tmp_path / "work", CFL_LOG_LEVEL="INFO", PYTHONUNBUFFERED="1")
    server = ServerProcess(env, tmp_path / "server.log", access_log=True)
    await server.start()
    token, _, secret = new_token_text()
    secrets = [secret, "csrf-value-that-must-not-be-kept", "an-access-token-value", "percent-encoded-name"]
    try:
        async with httpx2.AsyncClient(base_url=server.base, timeout=10) as http:
            await http.get(f"/feeds/images.atom?token={token}")
            await http.get("/healthz", headers={"Authorization": f"Bearer {token}"})
            await http.post(f"/upload?csrf_token={secrets[1]}", content=b"x")
            await http.get(f"/models?access_token={secrets[2]}&search=meter")
            await http.get(f"/models?to%6Ben={secrets[3]}")
            await http.get(f"/login?next=/feeds/images.atom%3Ftoken%3D{token}")
    finally:
        server.stop()
    text = server.log.read_text()
    assert '"GET /feeds/images.atom?token=[redacted] HTTP/1.1" 401' in text
    assert '"GET /models?access_token=[redacted]&search=meter HTTP/1.1"' in text
    assert "/upload?csrf_token=[redacted]" in text
    for value in secrets:
        assert value not in text, value
    assert "Authorization" not in text and "Bearer" not in text
