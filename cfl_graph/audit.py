"""The tamper-evident audit trail: append in the same transaction as the change, verify, export.

Each event's hash covers its id, time, actor, action, subject, details and the previous event's
hash, so an edited, deleted, inserted or reordered event breaks the chain where it happened, and the
head row (updated with every append) shows when the newest events were cut off.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cfl_graph.access.principal import Principal
from cfl_graph.tables import GENESIS_HASH, AuditEvent, AuditHead
from cfl_graph.tables.base import utc_now


@dataclass(frozen=True)
class Actor:
    name: str
    party_id: int | None = None

    @classmethod
    def of(cls, principal: Principal) -> Actor:
        return cls(principal.party_name, principal.party_id)

    @classmethod
    def cli(cls) -> Actor:
        """An operator at the command line, named by their login (the CLI has no token)."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = "unknown"
        return cls(f"cli:{user}")


SYSTEM = Actor("system")


class AuditHeadMissing(RuntimeError):
    def __init__(self) -> None:
        super().__init__(
            "the audit trail's head row is missing; nothing can be recorded until `cfl-graph verify` "
            "has been run and the trail repaired"
        )


def _plain(details: Mapping[str, Any] | None) -> dict[str, Any]:
    """Details as the JSON column will give them back, so the hash of a stored event can be recomputed."""
    return dict(json.loads(json.dumps(dict(details or {}), default=str)))


def event_hash(
    *,
    id: int,
    occurred_at: dt.datetime,
    actor: str,
    actor_party_id: int | None,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    canonical = json.dumps(
        {
            "id": id,
            "occurred_at": occurred_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
            "actor": actor,
            "actor_party_id": actor_party_id,
            "action": action,
            "subject": subject,
            "details": details,
            "prev_hash": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _hash_of(event: AuditEvent) -> str:
    return event_hash(
        id=event.id,
        occurred_at=event.occurred_at,
        actor=event.actor,
        actor_party_id=event.actor_party_id,
        action=event.action,
        subject=event.subject,
        details=event.details,
        prev_hash=event.prev_hash,
    )


async def recent_events(
    session: AsyncSession, limit: int, *, action: str = "", actor: str = "", before: int | None = None
) -> list[AuditEvent]:
    """Events newest first: those whose action starts with `action`, whose actor contains `actor`, and
    older than event `before`, as the audit page pages through them."""
    statement = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if action:
        statement = statement.where(AuditEvent.action.startswith(action, autoescape=True))
    if actor:
        statement = statement.where(AuditEvent.actor.contains(actor, autoescape=True))
    if before is not None:
        statement = statement.where(AuditEvent.id < before)
    return list((await session.execute(statement)).scalars())


async def record(
    session: AsyncSession, actor: Actor, action: str, subject: str, details: Mapping[str, Any] | None = None
) -> AuditEvent:
    """Append an event inside the caller's transaction: it commits, or vanishes, with the change itself."""
    # Touching the head row first takes its lock (a row lock on PostgreSQL, the write lock on SQLite),
    # so concurrent appenders queue here instead of forking the chain.
    # One statement takes the lock and reads the head (UPDATE ... RETURNING: PostgreSQL, SQLite 3.35+).
    head = (
        await session.execute(
            update(AuditHead)
            .where(AuditHead.id == 1)
            .values(last_id=AuditHead.last_id)
            .returning(AuditHead.last_id, AuditHead.last_hash)
        )
    ).one_or_none()
    if head is None:
        raise AuditHeadMissing()
    last_id, last_hash = head
    occurred_at = utc_now()
    plain = _plain(details)
    event = AuditEvent(
        id=last_id + 1,
        occurred_at=occurred_at,
        actor=actor.name,
        actor_party_id=actor.party_id,
        action=action,
        subject=subject,
        details=plain,
        prev_hash=last_hash,
    )
    event.hash = _hash_of(event)
    session.add(event)
    await session.flush()
    await session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(last_id=event.id, last_hash=event.hash)
    )
    return event


@dataclass
class ChainReport:
    events: int = 0
    head_id: int = 0
    head_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)
    last_time: dt.datetime | None = None

    @property
    def intact(self) -> bool:
        return not self.problems


async def _events(
    session: AsyncSession, first: int = 1, last: int | None = None
) -> AsyncIterator[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.id >= first).order_by(AuditEvent.id)
    if last is not None:
        query = query.where(AuditEvent.id <= last)
    result = await session.stream_scalars(query.execution_options(yield_per=1000))
    async for event in result:
        yield event


def walk(events: Iterable[AuditEvent], *, prev_hash: str = GENESIS_HASH, first_id: int = 1) -> ChainReport:
    """Check a run of events that should start at `first_id` after an event hashed `prev_hash`."""
    report = ChainReport(head_id=first_id - 1, head_hash=prev_hash)
    for event in events:
        _check(report, event)
    return report


def _check(report: ChainReport, event: AuditEvent) -> None:
    expected_id = report.head_id + 1
    gap = event.id != expected_id
    if event.id > expected_id:
        missing = (
            f"event {expected_id}" if event.id == expected_id + 1 else f"events {expected_id}-{event.id - 1}"
        )
        report.problems.append(f"{missing} deleted: the ids jump from {report.head_id} to {event.id}")
    elif event.id < expected_id:
        report.problems.append(f"event {event.id} is out of order: it comes after event {report.head_id}")
    if report.last_time is not None and event.occurred_at < report.last_time:
        report.problems.append(f"event {event.id} is out of order: it occurred before event {report.head_id}")
    if _hash_of(event) != event.hash:
        report.problems.append(f"event {event.id} edited or moved: its content no longer matches its hash")
    elif event.prev_hash != report.head_hash and not gap:
        report.problems.append(
            f"event {event.id} does not follow event {report.head_id}: its previous-hash link is broken "
            "(an event was replaced, inserted or reordered)"
        )
    report.events += 1
    report.head_id = event.id
    report.head_hash = event.hash
    report.last_time = event.occurred_at


async def verify_chain(session: AsyncSession) -> ChainReport:
    """Walk the whole trail and compare its end with the head row; every break is named."""
    report = ChainReport()
    async for event in _events(session):
        _check(report, event)
    head = (await session.execute(select(AuditHead.last_id, AuditHead.last_hash))).one_or_none()
    if head is None:
        report.problems.append("the head row is missing: the newest events cannot be checked")
    elif (head.last_id, head.last_hash) != (report.head_id, report.head_hash):
        report.problems.append(
            f"the trail ends at event {report.head_id} but the head names event {head.last_id}: "
            "the newest events were deleted or the head was altered"
        )
    return report


def as_record(event: AuditEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "occurred_at": event.occurred_at.isoformat(timespec="microseconds"),
        "actor": event.actor,
        "actor_party_id": event.actor_party_id,
        "action": event.action,
        "subject": event.subject,
        "details": event.details,
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


async def export_range(
    session: AsyncSession, first: int = 1, last: int | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Events `first`..`last` as plain records, then the chain head at the time of export, so the
    receiver can check the range on its own and later prove it against a newer export."""
    async for event in _events(session, first, last):
        yield as_record(event)
    head = (await session.execute(select(AuditHead.last_id, AuditHead.last_hash))).one()
    yield {"chain_head": {"id": head.last_id, "hash": head.last_hash}}


def verify_export(records: Iterable[Mapping[str, Any]]) -> ChainReport:
    """Check an exported range without the database: hashes, links and ids (the first event's
    previous hash is taken on trust; compare it with an earlier export to extend the proof)."""
    events: list[AuditEvent] = []
    for rec in records:
        if "chain_head" in rec:
            continue
        events.append(
            AuditEvent(
                id=rec["id"],
                occurred_at=dt.datetime.fromisoformat(rec["occurred_at"]),
                actor=rec["actor"],
                actor_party_id=rec["actor_party_id"],
                action=rec["action"],
                subject=rec["subject"],
                details=rec["details"],
                prev_hash=rec["prev_hash"],
                hash=rec["hash"],
            )
        )
    if not events:
        return ChainReport()
    return walk(events, prev_hash=events[0].prev_hash, first_id=events[0].id)
