"""Who may erase whom in a community (services/members/domain.py, Community.erase)."""

from __future__ import annotations

import pytest

from kizuna.errors import Conflict, Forbidden, NotFound
from services.members.domain import Community, CommunityFounded, MemberErased, MemberJoined, MemberLeft


def community() -> Community:
    return Community.from_events([
        CommunityFounded(community_id="c", name="Hikari", purpose="", values=[], member_cap=10,
                         owner_member_id="owner", owner_display_name="Yui"),
        MemberJoined(community_id="c", member_id="aiko", display_name="Aiko", role="member", joined_via="open"),
        MemberJoined(community_id="c", member_id="ren", display_name="Ren", role="member", joined_via="open"),
        MemberLeft(community_id="c", member_id="aiko", reason="moving"),
    ])


def test_a_former_member_is_erased_by_themselves_or_the_operator_once() -> None:
    state = community()
    assert state.erase("aiko", "member:aiko") == [MemberErased(community_id="c", member_id="aiko",
                                                               erased_by="member:aiko")]
    assert state.erase("aiko", "operator")
    state.apply(MemberErased(community_id="c", member_id="aiko", erased_by="operator"))
    assert state.erase("aiko", "operator") == []  # a repeat records nothing


def test_nobody_else_erases_and_an_active_member_leaves_first() -> None:
    state = community()
    with pytest.raises(Forbidden):
        state.erase("aiko", "member:ren")
    with pytest.raises(Forbidden):
        state.erase("aiko", "member:owner")  # not even the owner: it is the member's right, or the operator's
    with pytest.raises(Conflict):
        state.erase("ren", "member:ren")
    with pytest.raises(NotFound):
        state.erase("stranger", "operator")
