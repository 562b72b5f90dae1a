"""Event versions and upcasters: older stored or published forms of an event become the current one on read.

Every event type has a schema version, 1 unless its ``DomainEvent`` class says otherwise
(``schema_version: ClassVar[int] = 2``). The events table stores it per row (``schema_version``, 1 for
every row written before versions existed) and the bus envelope carries it (the CloudEvents extension
``dataversion``, 1 when absent). An upcaster turns the payload of one version into the next:

    @upcaster("MemberJoined", from_version=1)
    def _member_joined_v1(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "display_name": data.pop("name")}

Every read path upcasts before anything interprets the payload: the event store's reads (an aggregate's
stream, a category, ``read_all`` for rebuilds), ``DomainEvent.decode``, the bus consumer before a
projection or reaction sees the envelope, and the rebuild's bus replay. The one exception is the relay: it
publishes what is stored, with the version stored, so a relay never needs to understand an event to pass
it on (whichever replica holds its lock during a rolling upgrade).

An event *newer* than this code knows cannot be upcast (nothing turns a newer form into an older one):
reading it raises ``EventVersionTooNew``. The bus consumer holds such a message instead of failing it, so
it never counts towards dead-lettering (docs/architecture.md, "Changing an event").

The version this process knows for a type is the highest of: its ``DomainEvent`` class's, and what the
registered upcasters reach. Every service runs from one codebase (one image), so a process knows every
service's events: the services' domain modules are imported on first use (``kizuna.catalog``), the way
the catalogue finds them; upcasters live next to the event class they serve.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .domain import DomainEvent
from .errors import Problem

if TYPE_CHECKING:  # the event store and the envelope upcast through this module
    from .envelope import Envelope
    from .eventstore import RecordedEvent

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]

_UPCASTERS: dict[tuple[str, int], Upcaster] = {}
_REACHED: dict[str, int] = {}  # the highest version the upcasters of each type lead to


class EventVersionTooNew(Problem):
    """A stored or published event of a newer version than this code knows: written by a newer replica
    during a rolling upgrade. A request that meets one may succeed on a newer replica or after the upgrade."""

    status, slug, title = 503, "event-version-too-new", "Event newer than this replica"

    def __init__(self, event_type: str, version: int, known: int) -> None:
        super().__init__(f"{event_type} version {version} is newer than this code knows ({known}); "
                         "a newer replica, or this one once upgraded, can read it",
                         event_type=event_type, version=version, known_version=known)
        self.event_type, self.version, self.known = event_type, version, known


class MissingUpcaster(LookupError):
    """A version step with no upcaster: a bug of the code that raised the event's version."""


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Registers the function that turns ``event_type``'s payload of ``from_version`` into ``from_version + 1``.
    It gets a copy of the payload, so it may change and return it."""
    def register(function: Upcaster) -> Upcaster:
        key = (event_type, from_version)
        if key in _UPCASTERS and _UPCASTERS[key] is not function:
            raise ValueError(f"{event_type} already has an upcaster from version {from_version}")
        _UPCASTERS[key] = function
        _REACHED[event_type] = max(_REACHED.get(event_type, 1), from_version + 1)
        return function
    return register


def current_version(event_type: str) -> int:
    """The version of ``event_type`` this code reads and writes (1 for a type it has never heard of: a new
    type starts at 1, and a consumer ignores types it does not handle)."""
    _import_event_modules()
    return max(DomainEvent.versions.get(event_type, 1), _REACHED.get(event_type, 1))


def missing_upcasters() -> list[str]:
    """The version steps an event class's ``schema_version`` promises and no upcaster provides (a bug: stored
    events of the older version could not be read)."""
    _import_event_modules()
    return [f"{event_type} {older}→{older + 1}" for event_type, version in sorted(DomainEvent.versions.items())
            for older in range(1, version) if (event_type, older) not in _UPCASTERS]


def upcast(event_type: str, version: int, data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """``data`` of ``version`` as the current version of ``event_type``: (current version, payload). The
    payload given is never changed; it is returned as is when it is current already."""
    current = current_version(event_type)
    if version == current:
        return version, data
    if version > current:
        raise EventVersionTooNew(event_type, version, current)
    data = dict(data)
    while version < current:
        step = _UPCASTERS.get((event_type, version))
        if step is None:
            raise MissingUpcaster(f"{event_type} has no upcaster from version {version} to {version + 1}")
        data = step(data)
        version += 1
    return version, data


def upcast_recorded(event: RecordedEvent) -> RecordedEvent:
    version, data = upcast(event.type, event.schema_version, event.data)
    return event if data is event.data else dataclasses.replace(event, data=data, schema_version=version)


def upcast_envelope(envelope: Envelope) -> Envelope:
    version, data = upcast(envelope.type, envelope.data_version, envelope.data)
    return envelope if data is envelope.data else dataclasses.replace(envelope, data=data, data_version=version)


@functools.cache
def _import_event_modules() -> None:
    # Imported here, not at the top: the catalogue imports the services' domain modules, which import this
    # library; by the time anything reads an event, the library is loaded.
    from .catalog import import_event_modules

    import_event_modules()
