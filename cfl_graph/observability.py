"""What is known about the request being served, wherever in the code it is (issue 18): its id, the SQL
statements it ran, the reference of an error masked in its answer. The web door opens one per request;
the database counts into it and the graph's error masking notes its reference there, and every log
record written meanwhile carries the request's id."""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from cfl_graph.access.tokens import redact


@dataclass
class RequestFacts:
    request_id: str
    sql_statements: int = 0
    error_references: list[str] = field(default_factory=list)


CURRENT: contextvars.ContextVar[RequestFacts | None] = contextvars.ContextVar("cfl_request", default=None)


def note_error_reference(reference: str) -> None:
    """An unexpected error was masked in the answer under `reference`: the request's log line names it."""
    if (facts := CURRENT.get()) is not None:
        facts.error_references.append(reference)


def count_statement(*_: Any) -> None:
    """One more statement sent for the request being served (also the engine's listener)."""
    if (facts := CURRENT.get()) is not None:
        facts.sql_statements += 1


def count_statements(engine: AsyncEngine) -> None:
    """Count each statement the engine sends into the request that sent it (SQLAlchemy carries the
    request's context into the greenlet that runs the driver)."""
    if not event.contains(engine.sync_engine, "before_cursor_execute", count_statement):
        event.listen(engine.sync_engine, "before_cursor_execute", count_statement)


class RequestIdFilter(logging.Filter):
    """Puts the id of the request being served (or "-") on every record, as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        facts = CURRENT.get()
        if not hasattr(record, "request_id"):
            record.request_id = facts.request_id if facts is not None else "-"
        return True


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(item) for item in value]
    return value


class JsonLines(JsonFormatter):
    """One JSON object a record: time, level, logger, message, the request's id and whatever the record
    carries (a request line's party, route, status, duration...); a traceback as `exc_info`. Every
    string is passed through the token redaction, wherever in the record a token might have got to."""

    def __init__(self) -> None:
        super().__init__(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s",
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's coloured copy of the message
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )

    def process_log_record(self, log_record: dict[str, Any]) -> dict[str, Any]:
        return {key: _redacted(value) for key, value in log_record.items()}


class PlainLines(logging.Formatter):
    """`time LEVEL logger: message` a line, with any API token redacted from the line (and its traceback)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))
