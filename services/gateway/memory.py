"""What each gateway process keeps in memory between requests: health answers, revoked token ids and
members' current standing (active or not, and their role) in each community.

Both follow the read model's own writes: triggers on the tables they come from send ``pg_notify`` in
the transaction that changes them (``kizuna_gateway_health`` with the community id, or ``*`` when a
table is emptied; ``kizuna_gateway_revocations`` with the token id — see the gateway_0002 migration in
projections.py), and each gateway process LISTENs on one dedicated connection (``ReadModelListener``).
While that connection is down nothing is answered from memory: health figures are computed,
revocations are looked up in the database. After it reconnects the health answers are dropped and
the revoked ids read again (notifications sent while it was away are lost).

Health answers are eventually consistent, as the read model they come from already is: an answer
may be served until the notification of a change arrives (milliseconds), and never for longer than
``KIZUNA_HEALTH_CACHE_SECONDS`` (``joined_last_30_days`` moves with the clock alone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger("kizuna.gateway.memory")

HEALTH_CHANNEL = "kizuna_gateway_health"
REVOCATIONS_CHANNEL = "kizuna_gateway_revocations"
ALL_COMMUNITIES = "*"  # the health payload when a table was emptied (a rebuild): drop every answer
HEALTH_CACHE_ENTRIES = 1000  # answers (community, few_ties) kept, least recently used dropped first
PING_SECONDS = 5.0  # how often the listener checks that its connection still answers
LISTENER_NAME = "kizuna-gateway-listener"  # its application_name in pg_stat_activity


class _Fill:
    """One computation of an answer in flight; made stale if its community changes meanwhile."""

    __slots__ = ("epoch", "stale")

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        self.stale = False


class HealthCache:
    """Encoded health answers per (community, few_ties), least recently used dropped past ``entries``."""

    def __init__(self, max_age: float, entries: int = HEALTH_CACHE_ENTRIES) -> None:
        self.max_age, self.entries = max_age, entries
        self.listening = False  # set by the listener: answers are kept and served only while it is up
        self.hits = self.misses = 0
        self._answers: OrderedDict[tuple[str, int], tuple[float, bytes]] = OrderedDict()
        self._keys: dict[str, set[int]] = {}  # community → the few_ties values it has answers for
        self._filling: dict[str, set[_Fill]] = {}
        self._epoch = 0  # moves when the listener (re)connects: answers begun before are not kept

    @property
    def enabled(self) -> bool:
        return self.max_age > 0

    async def get(self, community_id: str, variant: int, compute: Callable[[], Awaitable[bytes]]) -> bytes:
        if not (self.enabled and self.listening):
            return await compute()
        key = (community_id, variant)
        kept = self._answers.get(key)
        if kept is not None:
            if time.monotonic() - kept[0] < self.max_age:
                self._answers.move_to_end(key)
                self.hits += 1
                return kept[1]
            self._forget(key)
        self.misses += 1
        fill = _Fill(self._epoch)
        fills = self._filling.setdefault(community_id, set())
        fills.add(fill)
        try:
            answer = await compute()
        finally:
            fills.discard(fill)
            if not fills and self._filling.get(community_id) is fills:
                del self._filling[community_id]
        if not fill.stale and fill.epoch == self._epoch and self.listening:
            self._keep(key, answer)
        return answer

    def invalidate(self, community_id: str) -> None:
        """The community's read model changed: drop its answers, and don't keep those being computed."""
        for variant in self._keys.pop(community_id, set()):
            self._answers.pop((community_id, variant), None)
        for fill in self._filling.get(community_id, ()):
            fill.stale = True

    def clear(self) -> None:
        self._answers.clear()
        self._keys.clear()
        self._epoch += 1

    def __len__(self) -> int:
        return len(self._answers)

    def _keep(self, key: tuple[str, int], answer: bytes) -> None:
        self._answers[key] = (time.monotonic(), answer)
        self._answers.move_to_end(key)
        self._keys.setdefault(key[0], set()).add(key[1])
        while len(self._answers) > self.entries:
            self._forget(next(iter(self._answers)))

    def _forget(self, key: tuple[str, int]) -> None:
        self._answers.pop(key, None)
        variants = self._keys.get(key[0])
        if variants is not None:
            variants.discard(key[1])
            if not variants:
                del self._keys[key[0]]


class Revocations:
    """The revoked token ids, read at start and kept fresh by the listener.

    ``is_revoked`` answers from memory while the listener is up and says ``None`` (ask the database)
    while it is not. A revocation made through this process is added at once (read your own write);
    other replicas learn it from the notification, or from the database while their listener is down.
    An id is forgotten ``keep_seconds`` after its revocation (longer than any token lives, so the token
    has expired by then), as the table's retention deletes its row: the set does not grow forever."""

    def __init__(self, keep_seconds: float = 31 * 86400) -> None:
        self.listening = False
        self.keep_seconds = keep_seconds
        self._revoked_at: dict[str, float] = {}  # token id → when it was revoked (seconds since the epoch)
        self._pruned_at = time.time()

    def is_revoked(self, token_id: str) -> bool | None:
        if not self.listening:
            return None
        return token_id in self._revoked_at

    def add(self, token_id: str, revoked_at: float | None = None) -> None:
        self._revoked_at.setdefault(token_id, time.time() if revoked_at is None else revoked_at)
        self._prune()

    def load(self, revoked: dict[str, float]) -> None:
        # A union, not a replacement: ids added while the query ran (notified, or revoked here) stay.
        # A revocation is never undone (a rebuild replays the same TokenRevoked events).
        for token_id, revoked_at in revoked.items():
            self._revoked_at.setdefault(token_id, revoked_at)
        self._prune(force=True)

    def _prune(self, force: bool = False) -> None:
        now = time.time()
        if not force and now - self._pruned_at < 3600:  # at most hourly: a pass looks at every id
            return
        self._pruned_at = now
        for token_id in [t for t, at in self._revoked_at.items() if now - at > self.keep_seconds]:
            del self._revoked_at[token_id]

    def __len__(self) -> int:
        return len(self._revoked_at)


STANDINGS_ENTRIES = 20_000  # (community, member) pairs remembered, least recently used dropped first


class Standings:
    """Whether a member is still in a community, and with which role, as the directory says now.

    A token says what the member's role was when it was issued; authority is taken from this instead,
    so a role change, leaving or removal takes effect on the next request (docs/api.md). Answers are
    kept only while the listener is up, and a community's are dropped whenever its directory rows change
    (the directory is one of the health tables, so its triggers notify the community id)."""

    def __init__(self, entries: int = STANDINGS_ENTRIES) -> None:
        self.listening = False
        self.entries = entries
        self._known: OrderedDict[tuple[str, str], str | None] = OrderedDict()
        self._by_community: dict[str, set[str]] = {}
        self._epoch = 0

    async def role_of(self, community_id: str, member_id: str,
                      lookup: Callable[[], Awaitable[str | None]]) -> str | None:
        """What ``lookup`` says of the member (their role now, or that they are gone), remembered."""
        key = (community_id, member_id)
        if self.listening and key in self._known:
            self._known.move_to_end(key)
            return self._known[key]
        epoch = self._epoch
        role = await lookup()
        if self.listening and epoch == self._epoch:
            self._known[key] = role
            self._by_community.setdefault(community_id, set()).add(member_id)
            while len(self._known) > self.entries:
                (old_cid, old_mid), _ = self._known.popitem(last=False)
                self._by_community.get(old_cid, set()).discard(old_mid)
        return role

    def invalidate(self, community_id: str) -> None:
        self._epoch += 1  # a lookup that began before this change must not be kept
        for member_id in self._by_community.pop(community_id, set()):
            self._known.pop((community_id, member_id), None)

    def clear(self) -> None:
        self._epoch += 1
        self._known.clear()
        self._by_community.clear()


class ReadModelListener:
    """One dedicated connection LISTENing for the gateway read model's notifications, reconnecting
    when it drops. Only while it is connected (and has caught up) are the cache and the revoked ids
    marked as listening."""

    def __init__(self, database_url: str, health: HealthCache, revocations: Revocations,
                 ping_seconds: float = PING_SECONDS, standings: Standings | None = None) -> None:
        self.database_url, self.health, self.revocations = database_url, health, revocations
        self.standings = standings or Standings()
        self.ping_seconds = ping_seconds
        self.connected = asyncio.Event()
        self.connections = 0  # how many times it has connected (tests and logs)

    @property
    def listening(self) -> bool:
        return self.revocations.listening

    def _set_listening(self, up: bool) -> None:
        self.health.listening = self.revocations.listening = self.standings.listening = up
        if up:
            self.connected.set()
        else:
            self.connected.clear()

    async def run(self) -> None:
        delay = 0.2
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(self.database_url, timeout=10,
                                             server_settings={"application_name": LISTENER_NAME})
                lost = asyncio.Event()

                def on_lost(_: object, lost: asyncio.Event = lost) -> None:
                    self._set_listening(False)
                    lost.set()

                conn.add_termination_listener(on_lost)
                await conn.add_listener(HEALTH_CHANNEL, self._on_health)
                await conn.add_listener(REVOCATIONS_CHANNEL, self._on_revocation)
                # LISTEN first, then read: anything committed after the read is notified.
                self.health.clear()
                self.standings.clear()
                self.revocations.load({r["token_id"]: r["at"] for r in await conn.fetch(
                    "SELECT token_id, extract(epoch FROM revoked_at)::float8 AS at FROM revoked_tokens")})
                self._set_listening(True)
                self.connections += 1
                delay = 0.2
                log.info("listening for read-model changes",
                         extra={"revoked_tokens": len(self.revocations), "connections": self.connections})
                while not lost.is_set():  # a dropped connection ends the wait at once; a silent one, the ping
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), self.ping_seconds)
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=self.ping_seconds)
                log.warning("read-model listener connection lost; answering from the database until it is back")
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("read-model listener down; answering from the database until it is back",
                            extra={"error": repr(error)})
            finally:
                self._set_listening(False)
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    def _on_health(self, _conn: object, _pid: int, _channel: str, community_id: str) -> None:
        if community_id == ALL_COMMUNITIES:
            self.health.clear()
            self.standings.clear()
        else:
            self.health.invalidate(community_id)
            self.standings.invalidate(community_id)

    def _on_revocation(self, _conn: object, _pid: int, _channel: str, token_id: str) -> None:
        self.revocations.add(token_id)


class GatewayMemory:
    """The gateway process's health cache, revoked ids and the listener that keeps both fresh."""

    def __init__(self, database_url: str, cache_seconds: float, revocations_kept_seconds: float = 31 * 86400) -> None:
        self.health = HealthCache(cache_seconds)
        self.revocations = Revocations(revocations_kept_seconds)
        self.standings = Standings()
        self.listener = ReadModelListener(database_url, self.health, self.revocations, standings=self.standings)
