"""Building blocks for pure domain modules: events as pydantic models and aggregates folded from them."""

from __future__ import annotations

from typing import Any, ClassVar, Self, get_args

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from .personal import DECLARED, Personal


class DomainEvent(BaseModel):
    """A past-tense fact. Its class name is its event type on the store and on the bus."""

    model_config = ConfigDict(frozen=True)
    # The version of the payload's shape this code writes. Raise it (and register an upcaster from the old
    # version, kizuna.upcasting) when a field is renamed, restructured or removed; not for a new optional
    # field (docs/architecture.md, "Changing an event"). Not in the docstring: the catalogue shows that.
    schema_version: ClassVar[int] = 1
    # Per defining module, so two services may each have an event of the same name in one process.
    registry: ClassVar[dict[str, dict[str, type[DomainEvent]]]] = {}
    # The highest schema version any class declares per event type (what kizuna.upcasting reads).
    versions: ClassVar[dict[str, int]] = {}
    # Which fields are someone's personal data, and whose (kizuna.personal): sealed when stored, erasable.
    personal: ClassVar[Personal | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.personal is not None:
            DECLARED[cls.__name__] = cls.personal
        DomainEvent.registry.setdefault(cls.__module__, {})[cls.__name__] = cls
        DomainEvent.versions[cls.__name__] = max(DomainEvent.versions.get(cls.__name__, 1), cls.schema_version)

    @classmethod
    def event_type(cls) -> str:
        return cls.__name__

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def decode(cls, event_type: str, data: dict[str, Any], module: str, *, version: int) -> DomainEvent | None:
        """The typed event of ``module`` (a service's domain module) for a stored one of schema ``version``
        (upcast first when older; the event store's reads give it current already), or None."""
        model = cls.registry.get(module, {}).get(event_type)
        if model is None:
            return None
        from .upcasting import upcast  # imported here: kizuna.upcasting builds on this module

        return model.model_validate(upcast(event_type, version, data)[1])


class Aggregate:
    """State rebuilt by folding its stream's events; ``version`` is the last applied stream version."""

    version: int = 0

    @classmethod
    def from_events(cls, events: list[DomainEvent]) -> Self:
        state = cls()
        for event in events:
            state.apply(event)
            state.version += 1
        return state

    def apply(self, event: DomainEvent) -> None:
        handler = getattr(self, f"_on_{type(event).__name__}", None)
        if handler is not None:
            handler(event)


class StrictModel(BaseModel):
    """A request body, or a part of one, that refuses fields it does not know: a typo such as
    ``member_cpa`` is a 422 naming the field, never a silently ignored setting (docs/api.md)."""

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="before")
    @classmethod
    def _no_guessing_between_json_types(cls, value: Any, info: ValidationInfo) -> Any:
        # Pydantic would read 0 or "no" as false, true as 1 and "3" as 3: a JSON boolean or number must
        # arrive as one, so a client's mistake is named instead of guessed at.
        field = cls.model_fields.get(info.field_name or "")
        if field is None or value is None:
            return value
        kinds = set(get_args(field.annotation)) or {field.annotation}
        if bool in kinds and not isinstance(value, bool) and not kinds & {int, float, str}:
            raise ValueError("must be true or false")
        if kinds & {int, float} and (isinstance(value, bool) or (isinstance(value, str) and str not in kinds)):
            raise ValueError("must be a number")
        return value
