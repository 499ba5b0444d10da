"""What is known about the request being served, wherever in the code it is (issue 18): its id, the SQL
statements it ran, the reference of an error masked in its answer. The web door opens one per request;
the database counts into it and the graph's error masking notes its reference there, and every log
record written meanwhile carries the request's id."""

from __future__ import annotations

import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


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


def _counted(*_: Any) -> None:
    if (facts := CURRENT.get()) is not None:
        facts.sql_statements += 1


def count_statements(engine: AsyncEngine) -> None:
    """Count each statement the engine sends into the request that sent it (SQLAlchemy carries the
    request's context into the greenlet that runs the driver)."""
    if not event.contains(engine.sync_engine, "before_cursor_execute", _counted):
        event.listen(engine.sync_engine, "before_cursor_execute", _counted)


class RequestIdFilter(logging.Filter):
    """Puts the id of the request being served (or "-") on every record, as `request_id`."""

    def filter(self, record: logging.LogRecord) -> bool:
        facts = CURRENT.get()
        if not hasattr(record, "request_id"):
            record.request_id = facts.request_id if facts is not None else "-"
        return True
