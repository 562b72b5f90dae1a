"""Ids derived from an Idempotency-Key (kizuna.handling): deterministic per request, distinct per caller, and a
retried command whose events are stored answers with them instead of deciding again (real PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

import asyncpg

from kizuna.domain import Aggregate, DomainEvent
from kizuna.errors import Conflict
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute


def ctx(key: str | None = "retry-me", actor: str = "member:aiko", community: str = "c1") -> CommandContext:
    return CommandContext(actor=actor, community_id=community, idempotency_key=key)


def test_new_id_is_the_same_for_a_retry_and_differs_per_principal_community_key_and_purpose() -> None:
    assert ctx().new_id("job") == ctx().new_id("job")
    uuid.UUID(ctx().new_id("job"))  # a real uuid, as the random ones
    others = {ctx(actor="member:ken").new_id("job"), ctx(community="c2").new_id("job"),
              ctx(key="another").new_id("job"), ctx().new_id("referral"), ctx(actor="operator").new_id("job")}
    assert ctx().new_id("job") not in others and len(others) == 5
    assert ctx(key=None).new_id("job") != ctx(key=None).new_id("job"), "without a key: random"


def test_event_ids_are_numbered_per_stream_and_append() -> None:
    first, second = ctx(), ctx()
    assert first.event_ids("job-1", first.next_append("job-1"), 2) == second.event_ids("job-1",
                                                                                         second.next_append("job-1"), 2)
    again = first.event_ids("job-1", first.next_append("job-1"), 2)
    assert again is not None and not set(again) & set(second.event_ids("job-1", 0, 2) or [])
    assert first.event_ids("job-2", 0, 1) != first.event_ids("job-1", 0, 1)
    assert ctx(key=None).event_ids("job-1", 0, 2) is None


class Posted(DomainEvent):
    title: str


class Noted(DomainEvent):
    text: str


class Board(Aggregate):
    def __init__(self) -> None:
        self.title: str | None = None
        self.notes: list[str] = []

    def post(self, title: str) -> Sequence[DomainEvent]:
        if self.title is not None:
            raise Conflict("already posted")
        return [Posted(title=title), Noted(text="first note")]

    def _on_Posted(self, event: Posted) -> None:
        self.title = event.title

    def _on_Noted(self, event: Noted) -> None:
        self.notes.append(event.text)


async def test_a_retried_create_answers_with_the_stored_events_not_a_conflict(pool: asyncpg.Pool) -> None:
    store = EventStore(pool)
    stream = f"board-{ctx().new_id('board')}"
    _, recorded = await execute(store, stream, Board, lambda b: b.post("Logo"), ctx())
    # Something else happens on the stream after the first attempt committed and before the retry.
    await execute(store, stream, Board, lambda b: [Noted(text="later")], ctx(key=None))

    retried_state, retried = await execute(store, stream, Board, lambda b: b.post("Logo, retried"), ctx())
    assert [e.event_id for e in retried] == [e.event_id for e in recorded]
    assert [e.global_position for e in retried] == [e.global_position for e in recorded]
    assert (retried_state.title, retried_state.notes, retried_state.version) == ("Logo", ["first note"], 2), \
        "the answer is the state the first attempt left, not today's"
    assert await store.stream_version(stream) == 3, "nothing new appended"

    other_caller = CommandContext(actor="member:ken", community_id="c1", idempotency_key="retry-me")
    try:
        await execute(store, stream, Board, lambda b: b.post("Logo"), other_caller)
    except Conflict:
        pass
    else:
        raise AssertionError("another principal's same key is another request: it decides, and is refused")


async def test_the_second_append_of_one_request_to_a_stream_is_not_mistaken_for_the_first(
    pool: asyncpg.Pool,
) -> None:
    store = EventStore(pool)
    stream = "board-twice"
    request = ctx(key="two-appends")
    await execute(store, stream, Board, lambda b: b.post("Logo"), request)
    _, second = await execute(store, stream, Board, lambda b: [Noted(text="second append")], request)
    assert [e.stream_version for e in second] == [3]

    retry = ctx(key="two-appends")
    _, first_again = await execute(store, stream, Board, lambda b: b.post("Logo"), retry)
    _, second_again = await execute(store, stream, Board, lambda b: [Noted(text="second append")], retry)
    assert [e.stream_version for e in first_again] == [1, 2] and [e.event_id for e in second_again] == \
        [e.event_id for e in second]
    assert await store.stream_version(stream) == 3
