"""The members rules, without servers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kizuna.errors import Conflict, Forbidden, Invalid, NotFound
from services.members.domain import (
    ChangeCap,
    ChangeConsent,
    ChangeRole,
    Community,
    CommunityCapChanged,
    FoundCommunity,
    JoinCommunity,
    LeaveCommunity,
    MemberJoined,
    MemberProfileUpdated,
    MemberRoleChanged,
    MemberWaitlisted,
    OwnershipTransferred,
    Profile,
    RemoveMember,
    SharingConsentChanged,
    TransferOwnership,
    UpdateProfile,
    normalise_skill,
)

OWNER = "member:owner"  # the actor of the founding owner ("owner"), as a command context names it


def community(cap: int = 3) -> Community:
    c = Community()
    for event in c.found("c1", "owner", FoundCommunity(name="Hikari", owner_display_name="Yui", member_cap=cap), 150):
        c.apply(event)
    return c


def joined(c: Community, member_id: str) -> None:
    for event in c.join(member_id, JoinCommunity(display_name=member_id), "owner"):
        c.apply(event)


def test_founding_makes_the_owner_the_first_member_and_defaults_the_cap() -> None:
    c = Community()
    [event] = c.found("c1", "o", FoundCommunity(name=" Hikari ", owner_display_name="Yui"), 150)
    c.apply(event)
    assert c.cap == 150 and c.roles == {"o": "owner"} and c.owner == "o"
    c.version = 1
    with pytest.raises(Conflict):
        c.found("c1", "o", FoundCommunity(name="again", owner_display_name="Yui"), 150)


def test_blank_names_are_refused() -> None:
    with pytest.raises(ValidationError):
        FoundCommunity(name="   ", owner_display_name="Yui")


def test_joins_stop_at_the_cap_or_go_to_the_waitlist() -> None:
    c = community(cap=3)
    joined(c, "a")
    joined(c, "b")
    with pytest.raises(Conflict) as full:
        c.join("x", JoinCommunity(display_name="X"), None)
    assert full.value.slug == "community-full" and full.value.extensions["member_cap"] == 3
    [waiting] = c.join("x", JoinCommunity(display_name="X", waitlist_if_full=True), "a")
    assert isinstance(waiting, MemberWaitlisted) and waiting.position == 1 and waiting.vouched_by == "a"


def test_a_join_records_how_the_person_came_and_who_vouched() -> None:
    c = community()
    [event] = c.join("m", JoinCommunity(display_name="Ken", joined_via="referral"), "a")
    assert isinstance(event, MemberJoined) and event.joined_via == "referral" and event.vouched_by == "a"
    assert event.role == "member"


def test_cap_changes() -> None:
    c = community(cap=3)
    joined(c, "a")
    joined(c, "b")
    with pytest.raises(Invalid) as below:
        c.change_cap(ChangeCap(member_cap=2), OWNER)
    assert "current size of 3" in below.value.detail
    with pytest.raises(Invalid) as unexplained:
        c.change_cap(ChangeCap(member_cap=200), OWNER)
    assert unexplained.value.extensions["errors"][0]["field"] == "reason"
    [raised] = c.change_cap(ChangeCap(member_cap=200, reason="merging two cohorts"), OWNER)
    assert isinstance(raised, CommunityCapChanged)
    assert raised.new_cap == 200 and raised.reason == "merging two cohorts"
    assert c.change_cap(ChangeCap(member_cap=3), OWNER) == []


def test_roles_and_a_single_owner() -> None:
    c = community()
    joined(c, "a")
    [promoted] = c.change_role("a", ChangeRole(role="facilitator", reason="runs cohort B"), OWNER)
    assert isinstance(promoted, MemberRoleChanged)
    c.apply(promoted)
    assert c.roles["a"] == "facilitator" and promoted.changed_by == OWNER
    assert c.change_role("a", ChangeRole(role="facilitator"), OWNER) == []
    with pytest.raises(Conflict):
        c.change_role("owner", ChangeRole(role="member"), OWNER)
    with pytest.raises(NotFound):
        c.change_role("ghost", ChangeRole(role="member"), OWNER)
    [handed] = c.transfer_ownership(TransferOwnership(to_member_id="a", reason="moving away"), OWNER)
    c.apply(handed)
    assert c.roles == {"owner": "facilitator", "a": "owner"}
    assert [r for r in c.roles.values()].count("owner") == 1


def test_leaving_and_removal() -> None:
    c = community()
    joined(c, "a")
    with pytest.raises(Conflict):
        c.leave("owner", LeaveCommunity())
    with pytest.raises(Forbidden):
        c.remove("owner", RemoveMember(reason="x"), "operator")
    [left] = c.leave("a", LeaveCommunity(reason="moving"))
    c.apply(left)
    assert "a" not in c.roles
    with pytest.raises(NotFound):
        c.leave("a", LeaveCommunity())


def test_profiles_normalise_skills_and_limit_the_vector() -> None:
    [event] = Profile().update("c1", "m", UpdateProfile(display_name="Ken", vector="  picture book  ",
                                                        skills=["Video Editing", "video-editing", "  UX/UI "]))
    assert isinstance(event, MemberProfileUpdated)
    assert event.skills == ["ux-ui", "video-editing"] and event.vector == "picture book"
    with pytest.raises(ValidationError):
        UpdateProfile(display_name="Ken", vector="x" * 10_000)
    assert normalise_skill("Patent  Law!") == "patent-law"


def test_consent_always_includes_the_display_name() -> None:
    p = Profile()
    assert p.change_consent("c1", "m", ChangeConsent(shared_fields=["display_name"])) == []
    [event] = p.change_consent("c1", "m", ChangeConsent(shared_fields=["skills"]))
    assert isinstance(event, SharingConsentChanged)
    assert event.shared_fields == ["display_name", "skills"]
    with pytest.raises(ValidationError):
        ChangeConsent.model_validate({"shared_fields": ["goals"]})


def test_only_the_current_owner_hands_ownership_over() -> None:
    """Issue 17, hole 3: a former owner's token still says "owner"; the aggregate asks the stream."""
    c = community(cap=5)
    joined(c, "a")
    joined(c, "b")
    with pytest.raises(Forbidden):
        c.transfer_ownership(TransferOwnership(to_member_id="a"), "member:a")
    [handed] = c.transfer_ownership(TransferOwnership(to_member_id="a"), OWNER)
    c.apply(handed)
    with pytest.raises(Forbidden) as refused:
        c.transfer_ownership(TransferOwnership(to_member_id="b"), OWNER)  # Yui, now a facilitator
    assert refused.value.status == 403 and refused.value.extensions["required_role"] == "owner"
    [again] = c.transfer_ownership(TransferOwnership(to_member_id="b"), "operator")  # the operator always may
    assert isinstance(again, OwnershipTransferred)
    assert again.from_member_id == "a" and again.to_member_id == "b"


EVERY = {"owner", "facilitator"}


@pytest.mark.parametrize("actor, allowed", [("operator", EVERY), ("member:owner", EVERY),
                                            ("member:f", {"facilitator"}), ("member:m", set()),
                                            ("member:gone", set()), ("member:visitor", set()),
                                            ("system:offer-expiry", set()), ("owner", set())])
def test_owner_and_facilitator_decisions_check_the_role_held_now(actor: str, allowed: set[str]) -> None:
    c = community(cap=6)
    for member in ("f", "m", "gone"):
        joined(c, member)
    c.apply(c.change_role("f", ChangeRole(role="facilitator"), OWNER)[0])
    c.apply(c.leave("gone", LeaveCommunity())[0])
    decisions = {
        "owner": [lambda: c.change_cap(ChangeCap(member_cap=5), actor),
                  lambda: c.change_role("m", ChangeRole(role="facilitator"), actor),
                  lambda: c.transfer_ownership(TransferOwnership(to_member_id="m"), actor)],
        "facilitator": [lambda: c.remove("m", RemoveMember(reason="r"), actor)],
    }
    for role, decide in decisions.items():
        for one in decide:
            if role in allowed:
                assert one(), (actor, role)
            else:
                with pytest.raises(Forbidden):
                    one()
