"""Concurrent identical questions share one round trip, begun after each of them was asked
(`cfl_graph.round_trips`): never an answer older than the question, every error to everyone who shared
it, and a caller gone does not take the others' answer with it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cfl_graph.round_trips import RoundTrips


class Server:
    """Stands in for the database's side of a round trip: each question sent is counted, and the answer
    is the count at the moment it was sent; `hold` keeps the next questions on their way until released."""

    def __init__(self) -> None:
        self.sent: list[Hashable] = []
        self.hold = asyncio.Event()
        self.hold.set()
        self.failing: Exception | None = None

    def question(self, key: Hashable) -> Callable[[], Awaitable[int]]:
        async def asked() -> int:
            self.sent.append(key)
            answer = len(self.sent)  # what the database held when the question arrived
            await self.hold.wait()
            if self.failing is not None:
                raise self.failing
            return answer

        return asked


async def _under_way(trips: RoundTrips, server: Server, key: Hashable = "k") -> asyncio.Task[int]:
    """A question on its way (held), sent by its own caller."""
    server.hold.clear()
    first = asyncio.create_task(trips.ask(key, server.question(key)))
    await asyncio.sleep(0)
    assert server.sent == [key]
    return first


async def _waiting(trips: RoundTrips, server: Server, count: int) -> list[asyncio.Task[int]]:
    """`count` callers of the same key, come while its question is on its way, now waiting."""
    callers = [asyncio.create_task(trips.ask("k", server.question("k"))) for _ in range(count)]
    await asyncio.sleep(0)
    return callers


async def test_a_question_asked_alone_is_sent_by_its_caller_and_answered() -> None:
    trips, server = RoundTrips(), Server()
    assert await trips.ask("k", server.question("k")) == 1
    assert await trips.ask("k", server.question("k")) == 2
    assert server.sent == ["k", "k"]


async def test_those_who_ask_while_a_round_trip_is_on_its_way_share_the_next_never_that_one() -> None:
    trips, server = RoundTrips(), Server()
    first = await _under_way(trips, server)
    later = await _waiting(trips, server, 5)
    assert server.sent == ["k"]  # nobody else's question goes while the first is on its way
    server.hold.set()
    assert await first == 1
    # One more round trip, begun after all five asked, answers all five: none gets the first's answer.
    assert await asyncio.gather(*later) == [2] * 5
    assert server.sent == ["k", "k"]


async def test_different_questions_are_never_shared() -> None:
    trips, server = RoundTrips(), Server()
    first = await _under_way(trips, server, "a")
    other = asyncio.create_task(trips.ask("b", server.question("b")))
    await asyncio.sleep(0)
    assert server.sent == ["a", "b"]  # sent at once, beside the first
    server.hold.set()
    assert (await first, await other) == (1, 2)


async def test_an_error_reaches_everyone_who_shared_the_round_trip_and_the_next_question_is_sent_anew() -> (
    None
):
    trips, server = RoundTrips(), Server()
    first = await _under_way(trips, server)
    later = await _waiting(trips, server, 3)
    server.failing = ConnectionError("the database went away")
    server.hold.set()
    for caller in (first, *later):
        with pytest.raises(ConnectionError, match="went away"):
            await caller
    server.failing = None
    assert await trips.ask("k", server.question("k")) == 3


async def test_a_caller_gone_while_it_waits_leaves_the_others_their_answer() -> None:
    trips, server = RoundTrips(), Server()
    first = await _under_way(trips, server)
    gone, staying = await _waiting(trips, server, 2)
    gone.cancel()
    server.hold.set()
    assert (await first, await staying) == (1, 2)
    assert gone.cancelled()


async def test_the_sender_gone_while_its_question_is_on_its_way_leaves_those_waiting_answered() -> None:
    trips, server = RoundTrips(), Server()
    first = await _under_way(trips, server)
    waiting = await _waiting(trips, server, 2)
    first.cancel()  # its client went away mid-question
    with pytest.raises(asyncio.CancelledError):
        await first
    server.hold.set()
    assert await asyncio.gather(*waiting) == [2, 2]
    # Nothing is left under way: the next question is sent by its own caller.
    assert await trips.ask("k", server.question("k")) == 3


async def test_a_caller_handed_the_turn_as_it_goes_hands_it_on_to_the_next() -> None:
    trips, server = RoundTrips(), Server()
    first = await _under_way(trips, server)
    handed, next_one = await _waiting(trips, server, 2)
    server.hold.set()
    await asyncio.sleep(0)  # the first's answer came: the turn is handed to `handed`, not yet running
    assert first.done() and not handed.done()
    handed.cancel()
    assert await next_one == 2  # sent by the next caller waiting, for itself
    assert handed.cancelled()
    assert server.sent == ["k", "k"]


def test_a_new_event_loop_starts_with_no_round_trip_under_way() -> None:
    trips, server = RoundTrips(), Server()

    async def abandoned() -> None:  # a loop that ends with a question on its way and another waiting
        first = await _under_way(trips, server)
        waiting = asyncio.create_task(trips.ask("k", server.question("k")))
        await asyncio.sleep(0)
        assert not (first.done() or waiting.done())

    asyncio.run(abandoned())

    async def afresh() -> int:
        return await asyncio.wait_for(trips.ask("k", Server().question("k")), 5)

    assert asyncio.run(afresh()) == 1  # sent at once: not left waiting on the old loop's round trip


# --- any interleaving: a property of every schedule -----------------------------------------------------

# What can happen next: a caller asks under a key; the round trip under way for a key comes back, or fails;
# a caller goes away (its client gone). Then the event loop turns 0 to 3 times, so that a step can fall
# between any two of the others' (a turn handed to a caller who goes before it runs, say).
_STEP = st.tuples(
    st.one_of(
        st.tuples(st.just("ask"), st.sampled_from("ab")),
        st.tuples(st.sampled_from(["answer", "fail"]), st.sampled_from("ab")),
        st.tuples(st.just("cancel"), st.integers(0, 7)),
    ),
    st.integers(0, 3),
)


class _Schedule:
    """Round trips the test ends by hand: each question waits for its own event, and every moment (an ask,
    a round trip's start) takes the next number of one clock."""

    def __init__(self) -> None:
        self.clock = 0
        self.on_its_way: dict[str, list[tuple[int, asyncio.Future[int]]]] = {"a": [], "b": []}

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def question(self, key: str) -> Callable[[], Awaitable[int]]:
        async def asked() -> int:
            began = self.tick()
            assert not self.on_its_way[key], "two round trips of one key under way at once"
            answer = asyncio.get_running_loop().create_future()
            self.on_its_way[key].append((began, answer))
            try:
                await answer
            finally:
                self.on_its_way[key].remove((began, answer))
            return began  # the answer names the moment its round trip began

        return asked

    def end(self, key: str, failed: bool) -> None:
        for began, answer in self.on_its_way[key]:
            if not answer.done():
                answer.set_exception(_Failed(began)) if failed else answer.set_result(began)


class _Failed(Exception):
    def __init__(self, began: int) -> None:
        super().__init__(f"the round trip begun at {began} failed")
        self.began = began


@settings(max_examples=500, deadline=None)
@given(st.lists(_STEP, max_size=30))
def test_every_answer_and_every_error_comes_from_a_round_trip_begun_after_its_caller_asked(
    steps: list[tuple[tuple[str, Any], int]],
) -> None:
    """Whatever the order of asks, answers, failures and callers going away: one round trip per key at a
    time; each caller's answer (or error) is from a round trip begun after it asked, under its own key; and
    once every round trip comes back, nobody is left waiting."""

    async def run() -> None:
        trips, schedule = RoundTrips(), _Schedule()
        callers: list[tuple[str, list[int], asyncio.Task[int]]] = []

        async def caller(key: str, asked: list[int]) -> int:
            asked.append(schedule.tick())  # the moment it asks: nothing runs between this and the ask
            return await trips.ask(key, schedule.question(key))

        for (step, arg), turns in steps:
            if step == "ask":
                asked: list[int] = []
                callers.append((arg, asked, asyncio.create_task(caller(arg, asked))))
            elif step in ("answer", "fail"):
                schedule.end(arg, failed=step == "fail")
            elif arg < len(callers):
                callers[arg][2].cancel()
            for _ in range(turns):
                await asyncio.sleep(0)
        for _ in range(len(callers) + 2):  # then every round trip comes back, those handed on too
            for key in "ab":
                schedule.end(key, failed=False)
            for _ in range(3):
                await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*(task for _, _, task in callers), return_exceptions=True), 5)
        for key, asked, task in callers:
            if task.cancelled():
                continue
            error = task.exception()
            began = error.began if isinstance(error, _Failed) else task.result()
            assert error is None or isinstance(error, _Failed), error
            assert began > asked[0], (key, asked, began)
            assert schedule.on_its_way[key] == []

    asyncio.run(run())
