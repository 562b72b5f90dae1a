"""Building blocks for pure domain modules: events as pydantic models and aggregates folded from them."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict


class DomainEvent(BaseModel):
    """A past-tense fact. Its class name is its event type on the store and on the bus."""

    model_config = ConfigDict(frozen=True)
    # Per defining module, so two services may each have an event of the same name in one process.
    registry: ClassVar[dict[str, dict[str, type[DomainEvent]]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        DomainEvent.registry.setdefault(cls.__module__, {})[cls.__name__] = cls

    @classmethod
    def event_type(cls) -> str:
        return cls.__name__

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def decode(cls, event_type: str, data: dict[str, Any], module: str) -> DomainEvent | None:
        """The typed event of ``module`` (a service's domain module) for a stored one, or None."""
        model = cls.registry.get(module, {}).get(event_type)
        return model.model_validate(data) if model else None


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
