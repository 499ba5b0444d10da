"""No token reaches a log line (R8): every logger at DEBUG, over a real HTTP connection, while tokens of
every kind (valid, tampered, unknown, expired, revoked, of a disabled party) are sent as bearer tokens, as
a feed reader's Basic password and to the sign-in form, and refusals and errors are logged.

This extends `tests/access/test_http.py::test_no_token_secret_reaches_a_log_line` (in-process, root
logger, the secret part of valid and malformed tokens in the formatted text) to the server's own loggers,
SQL with its parameters, every record's message, arguments and traceback, the whole token text, tokens
that do not match a row at all, and the session cookie a sign-in opens.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from cfl_graph.access.sessions import SESSION_COOKIE
from cfl_graph.access.tokens import TOKEN_PATTERN, new_token_text
from cfl_graph.database import Database
from tests.fixtures.library import GOOD_NOTES, OWN_A1, OWN_A2, World, client, make_world, serving

pytestmark = pytest.mark.postgres

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
QUERY = {"query": "{ cplSnapshot { id } }"}
REFUSED_MUTATION = {
    "query": "mutation($id: ID!) { publishImage(id: $id) { id } }",
    "variables": {"id": "999"},
}
# The test's own HTTP client logs the response headers it receives, Set-Cookie included, at DEBUG: its
# records are checked for tokens, which it never logs, but not for the session cookies the service sets.
CLIENT_LOGGERS = ("httpx2", "httpcore2")


def tampered(text: str) -> list[str]:
    """The ways a token may arrive wrong: mangled, another secret, another public id."""
    found = TOKEN_PATTERN.fullmatch(text)
    assert found is not None
    public_id, secret = found.groups()
    _, other_public_id, other_secret = new_token_text()
    return [
        text + "x",
        f"cflg_{public_id}_{other_secret}",
        f"cflg_{other_public_id}_{secret}",
    ]


@contextlib.contextmanager
def every_logger_at_debug(handler: logging.Handler) -> Iterator[None]:
    """Every logger that exists now at DEBUG; those that do not pass records on to the root logger
    (uvicorn's) also hand them to `handler`. Put back as it was afterwards."""
    loggers = [logging.getLogger()] + [
        found for found in logging.Logger.manager.loggerDict.values() if isinstance(found, logging.Logger)
    ]
    saved = [(logger, logger.level, logger.disabled) for logger in loggers]
    extra = [logger for logger in loggers if not logger.propagate and handler not in logger.handlers]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
        logger.disabled = False
    for logger in extra:
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in extra:
            logger.removeHandler(handler)
        for logger, level, disabled in saved:
            logger.setLevel(level)
            logger.disabled = disabled


def everything_logged(record: logging.LogRecord) -> str:
    """What a record could carry into a log: message, template, arguments, traceback, stack."""
    parts = [str(record.msg), repr(record.args), record.exc_text or "", record.stack_info or ""]
    with contextlib.suppress(Exception):
        parts.append(record.getMessage())
    if record.exc_info:
        parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


async def sign_in(http: httpx2.AsyncClient, token: str) -> httpx2.Response:
    form = await http.get("/login", headers={"Accept": "text/html"})
    found = CSRF.search(form.text)
    assert found is not None, form.text
    return await http.post("/login", data={"token": token, "csrf_token": found.group(1), "next": "/"})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def requests_of_every_kind(
    world: World, http: httpx2.AsyncClient, tokens: list[str], wrong: list[str]
) -> list[str]:
    """Send the representative requests; return the session cookies the sign-ins opened.

    Every token goes to GraphQL and the sign-in form; the tokens as issued also to a refused mutation
    (logged with its traceback), a download, the audit export and, as a Basic password, the feed."""
    published = await world.upload(world.image(OWN_A1))
    await world.publish(published.id)
    cookies = []
    for text in tokens + wrong:
        await http.post("/graphql", json=QUERY, headers=bearer(text))
        if text in tokens:
            await http.post("/graphql", json=REFUSED_MUTATION, headers=bearer(text))
            await http.get(f"/api/v1/images/{published.id}/file", headers=bearer(text))
            await http.get("/api/v1/audit/events", headers=bearer(text))
            basic = base64.b64encode(f"reader:{text}".encode()).decode()
            await http.get("/feeds/images.atom", headers={"Authorization": f"Basic {basic}"})
        http.cookies.clear()
        if (await sign_in(http, text)).status_code == 303:
            cookies.append(http.cookies[SESSION_COOKIE])
            await http.get("/", headers={"Accept": "text/html"})
        http.cookies.clear()
    upload = {"file": ("image.zigbee", world.image(OWN_A2), "application/octet-stream")}
    uploaded = await http.post(
        "/api/v1/images",
        files=upload,
        data={"releaseNotes": GOOD_NOTES},
        headers=bearer(world.tokens.manufacturer),
    )
    assert uploaded.status_code == 201, uploaded.text
    not_an_image = {"file": ("image.zigbee", b"PK\x03\x04", "application/octet-stream")}
    refused = await http.post("/api/v1/images", files=not_an_image, headers=bearer(world.tokens.manufacturer))
    assert refused.status_code == 422, refused.text
    return cookies


async def test_no_token_text_or_secret_reaches_any_log_record(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    world = await make_world(db, tmp_path)
    tokens = list(world.tokens.as_dict().values())
    # Every token takes the same path through the code; two kinds' worth of tampering covers it.
    wrong = tampered(world.tokens.supplier) + tampered(world.tokens.manufacturer)
    wrong.append(f"cflg_{'a' * 12}_{secrets.token_urlsafe(32)}")  # no such token at all
    caplog.set_level(logging.DEBUG)
    async with serving(world.app()) as url, client(url, None) as http:
        with every_logger_at_debug(caplog.handler):
            cookies = await requests_of_every_kind(world, http, tokens, wrong)
    assert len(cookies) == 7, "every usable token opened a session"
    heard = {record.name for record in caplog.records}
    # The server's access log (on, since its logger now has a handler), the GraphQL layer's log of
    # refusals (schema.errors: strawberry's own error log is replaced), the library's own lines, and SQL
    # with its parameters and rows were all listened to.
    assert {
        "uvicorn.access",
        "cfl_graph.doors.graph.errors",
        "cfl_graph.images.library",
        "sqlalchemy.engine.Engine",
    } <= heard
    secrets_sent = set(tokens) | set(wrong)
    for text in tokens + wrong:
        found = TOKEN_PATTERN.search(text)
        assert found is not None
        secrets_sent.add(found.group(2))
    leaks = []
    for record in caplog.records:
        logged = everything_logged(record)
        by_service = not record.name.startswith(CLIENT_LOGGERS)
        if any(s in logged for s in secrets_sent) or (by_service and any(c in logged for c in cookies)):
            leaks.append(f"{record.name}:{record.levelname}: {record.msg!r} % {record.args!r}"[:400])
    assert not leaks, "\n".join(leaks[:20])
