"""Concurrent identical questions to the database share one round trip, begun after each was asked.

Every request with a token looks the token up, and every health probe asks the database (`/healthz`).
Twenty connections of one client asking at once asked twenty identical questions, each with its pooled
connection and its round trip. Here the first to ask sends the question; those who ask the same while it
is on its way wait, then share the next round trip, which they all asked before it began. So each answer
is one the database gave after its caller asked, as if each had asked alone at that moment: a token
revoked before a request arrived is still refused on that request, and an outage is still seen by every
probe that arrives during it. What is shared is the database's answer, never a decision: each caller
still compares its own secret with the token's digest.

Only questions that read (a single statement, atomic by itself) are shared, by a key that names the
statement and every value it is asked with. A caller that is cancelled (its client gone) leaves the
round trip to the others; an error is raised to every caller who shared it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Turn:
    """Handed to one caller waiting for the next round trip: it sends the question, for `mates` too."""

    mates: list[asyncio.Future[Any]]


@dataclass
class RoundTrips:
    """The round trips of one event loop's questions, by key: at most one under way per key.

    A caller who finds none under way for its key sends its question itself, costing nothing more than
    asking alone. Those who come while it is on its way wait; when it returns, the first of them still
    waiting is handed the turn and sends the question for all of them (no task of its own: a closing loop
    cancels only its callers). If that caller goes (its client gone) before the answer comes, the turn
    passes to the next of those still waiting, with everyone who came meanwhile."""

    _loop: asyncio.AbstractEventLoop | None = None
    _busy: set[Hashable] = field(default_factory=set)  # keys with a round trip under way
    _waiting: dict[Hashable, list[asyncio.Future[Any]]] = field(default_factory=dict)

    async def ask(self, key: Hashable, question: Callable[[], Awaitable[T]]) -> T:
        """The answer to `question`, from a round trip begun after this call (shared with every caller of
        the same `key` whose question had not yet been sent)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run several): the old one's round trips are gone
            self._loop, self._busy, self._waiting = loop, set(), {}
        mates: list[asyncio.Future[Any]] = []
        if key in self._busy:
            mine: asyncio.Future[Any] = loop.create_future()
            self._waiting.setdefault(key, []).append(mine)
            try:
                handed = await mine  # the shared answer (or error), or the turn to send
            except asyncio.CancelledError:
                if mine.done() and not mine.cancelled() and isinstance(turn := mine.result(), _Turn):
                    self._hand_on(key, turn.mates)  # handed the turn as its caller went: the next sends
                raise
            if not isinstance(handed, _Turn):
                shared: T = handed
                return shared
            mates = handed.mates
        else:
            self._busy.add(key)
        try:
            result = await question()
        except Exception as exc:
            for mate in mates:
                if not mate.done():
                    mate.set_exception(exc)
            self._hand_on(key, [])
            raise
        except BaseException:  # the caller gone mid-question: its mates still need a round trip
            self._hand_on(key, mates)
            raise
        for mate in mates:
            if not mate.done():
                mate.set_result(result)
        self._hand_on(key, [])
        return result

    def _hand_on(self, key: Hashable, unanswered: list[asyncio.Future[Any]]) -> None:
        """After a round trip under `key`: the first caller still waiting (of `unanswered`, then of those
        who came meanwhile) sends the next for all of them; with none, nothing is under way for `key`."""
        waiting = [future for future in (*unanswered, *self._waiting.pop(key, ())) if not future.done()]
        if not waiting:
            self._busy.discard(key)
            return
        waiting[0].set_result(_Turn(waiting[1:]))
