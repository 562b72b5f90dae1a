"""Identity's pure rules: where a sign-in may send someone, what counts as one address, operator rights."""

from __future__ import annotations

import pytest

from kizuna.domain import DomainEvent
from kizuna.errors import Invalid
from services.identity.domain import Person, normalise_email, safe_next


@pytest.mark.parametrize("raw", ["//evil.example", "https://evil.example/", "/\\\\evil", "me", "/a\\nb", "/x\\x00",
                                 "javascript:alert(1)", "/" + "a" * 600, ""])
def test_next_is_always_a_path_on_this_site(raw: str) -> None:
    assert safe_next(raw) == "/me"


def test_a_path_here_is_kept() -> None:
    assert safe_next("/join/abc?x=1") == "/join/abc?x=1"


def test_one_inbox_is_one_address() -> None:
    assert normalise_email("  Hana@Example.TEST ") == "hana@example.test"
    with pytest.raises(Invalid):
        normalise_email("not an address")


def _person() -> Person:
    person = Person()
    for event in person.register("p1", "oidc"):
        person.apply(event)
        person.version += 1
    return person


def _apply(person: Person, events: list[DomainEvent]) -> None:
    for event in events:
        person.apply(event)


def test_rights_from_a_claim_last_while_the_claim_does_and_never_undo_the_command() -> None:
    person = _person()
    _apply(person, person.follow_operator_claim("corp", holds_claim=True))
    assert person.operator
    assert person.follow_operator_claim("corp", holds_claim=True) == []
    _apply(person, person.follow_operator_claim("corp", holds_claim=False))
    assert not person.operator
    _apply(person, person.grant_operator("command"))
    assert person.follow_operator_claim("corp", holds_claim=False) == []  # the command's grant stays
    assert person.operator
