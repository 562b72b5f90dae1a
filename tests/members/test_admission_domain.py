"""Admission, the moving waitlist and sister communities, without servers: every policy and transition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from kizuna.domain import DomainEvent
from kizuna.errors import Conflict, Forbidden, Gone, Invalid, NotFound
from services.members.domain import (
    AcceptInvitation,
    AcceptOffer,
    AdmissionPolicyChanged,
    AdmissionQuestion,
    ApplicationApproved,
    ApplicationDeclined,
    ApplicationSubmitted,
    ChangeAdmission,
    ChangeCap,
    ChangeRole,
    ClaimCodes,
    Community,
    CommunityCapChanged,
    CommunityFounded,
    DecideApplication,
    DeclineOffer,
    FoundCommunity,
    FoundSisterCommunity,
    InvitationAccepted,
    InvitationIssued,
    IssueInvitation,
    JoinCommunity,
    LeaveCommunity,
    MemberAccountLinked,
    MemberJoined,
    MemberLeft,
    MemberWaitlisted,
    PlaceOfferAccepted,
    PlaceOfferClaimCodeIssued,
    PlaceOfferDeclined,
    PlaceOffered,
    PlaceOfferExpired,
    RemoveMember,
    Role,
    SisterCommunityFounded,
    SubmitApplication,
    code_hash,
)

T0 = datetime(2025, 4, 1, 9, 0, tzinfo=UTC)
CODES = ClaimCodes()  # every claim code minted by these tests, by offer id (as a notification would carry them)
VISITOR = "member:visitor"  # the front door's actor
QUESTIONS = [AdmissionQuestion(id="why", text="Why join?"),
             AdmissionQuestion(id="share", text="What could you share?", required=False)]


def apply(c: Community, events: list[DomainEvent]) -> list[DomainEvent]:
    for event in events:
        c.apply(event)
        c.version += 1
    return events


def community(cap: int = 4, members: tuple[str, ...] = ()) -> Community:
    c = Community()
    apply(c, c.found("c1", "owner", FoundCommunity(name="Hikari", owner_display_name="Yui", member_cap=cap,
                                                    purpose="makers", values=["share first"]), 150))
    for member in members:
        apply(c, c.join(member, JoinCommunity(display_name=member.title()), "owner"))
    return c


def admission(c: Community, policy: str, **extra: object) -> None:
    apply(c, c.change_admission(ChangeAdmission.model_validate({"policy": policy, "reason": "because", **extra}),
                                "member:owner"))


def waitlist(c: Community, *people: str) -> None:
    for person in people:
        [event] = apply(c, c.join(person, JoinCommunity(display_name=person.title(), waitlist_if_full=True), "owner"))
        assert isinstance(event, MemberWaitlisted)


def offers(events: list[DomainEvent]) -> list[PlaceOffered]:
    return [e for e in events if isinstance(e, PlaceOffered)]


def claim(offer_id: str) -> AcceptOffer:
    """The person's answer, with the claim code they were given."""
    return AcceptOffer(claim_code=CODES.minted.get(offer_id))


# ---- policy ----

def test_the_owner_changes_the_policy_and_the_event_records_who_and_why() -> None:
    c = community()
    assert c.policy == "open" and c.offer_ttl_seconds == 72 * 3600
    [event] = c.change_admission(ChangeAdmission(policy="application", questions=QUESTIONS, max_open_invitations=2,
                                                 offer_ttl_seconds=60, reason="screen newcomers"), "member:owner")
    assert isinstance(event, AdmissionPolicyChanged)
    assert (event.changed_by, event.reason, event.policy) == ("member:owner", "screen newcomers", "application")
    apply(c, [event])
    assert c.questions == QUESTIONS and c.max_open_invitations == 2 and c.offer_ttl_seconds == 60
    same = ChangeAdmission(policy="application", questions=QUESTIONS, max_open_invitations=2, offer_ttl_seconds=60,
                           reason="again")
    assert c.change_admission(same, "member:owner") == []


def test_policy_changes_need_a_reason_and_unique_questions() -> None:
    c = community()
    with pytest.raises(ValidationError):
        ChangeAdmission.model_validate({"policy": "invitation"})
    with pytest.raises(Invalid) as blank:
        c.change_admission(ChangeAdmission(policy="invitation", reason="   "), "member:owner")
    assert blank.value.extensions["errors"][0]["field"] == "reason"
    with pytest.raises(Invalid) as twice:
        c.change_admission(ChangeAdmission(policy="application", reason="r", questions=[QUESTIONS[0], QUESTIONS[0]]),
                           "member:owner")
    assert twice.value.extensions["errors"][0]["field"] == "questions.why"
    with pytest.raises(ValidationError):
        ChangeAdmission.model_validate({"policy": "lottery", "reason": "r"})


@pytest.mark.parametrize(("policy", "actor_role", "allowed"), [
    ("open", "member", True), ("open", None, True),
    ("application", "member", False), ("application", "facilitator", False), ("application", "owner", True),
    ("application", None, True), ("invitation", "member", False), ("invitation", "owner", True),
    ("invitation", None, True),
])
def test_direct_adds_follow_the_policy(policy: str, actor_role: Role | None, allowed: bool) -> None:
    c = community()
    admission(c, policy)
    cmd = JoinCommunity(display_name="Ken")
    if allowed:
        [event] = c.join("ken", cmd, "a", actor_role)
        assert isinstance(event, MemberJoined)
    else:
        with pytest.raises(Conflict) as refused:
            c.join("ken", cmd, "a", actor_role)
        assert refused.value.slug == "admission-policy" and refused.value.extensions["policy"] == policy


# ---- applications ----

def test_applications_are_only_taken_under_the_application_policy() -> None:
    c = community()
    with pytest.raises(Conflict) as refused:
        c.submit_application("a1", "p1", SubmitApplication(display_name="Mika"), None)
    assert refused.value.slug == "admission-policy"


def test_answers_are_checked_against_the_questions_asked() -> None:
    c = community()
    admission(c, "application", questions=[q.model_dump() for q in QUESTIONS])
    with pytest.raises(Invalid) as unknown:
        c.submit_application("a1", "p1", SubmitApplication(display_name="Mika", answers={"why": "x", "age": "30"}),
                             None)
    assert unknown.value.extensions["errors"][0]["field"] == "answers.age"
    with pytest.raises(Invalid) as missing:
        c.submit_application("a1", "p1", SubmitApplication(display_name="Mika", answers={"share": "video"}), None)
    assert missing.value.extensions["errors"][0]["field"] == "answers.why"
    with pytest.raises(Invalid) as blank:
        c.submit_application("a1", "p1", SubmitApplication(display_name="Mika", answers={"why": "  "}), None)
    assert blank.value.extensions["errors"][0]["field"] == "answers.why"
    with pytest.raises(Invalid) as stranger:
        c.submit_application("a1", "p1", SubmitApplication(display_name="Mika", answers={"why": "x"}), "ghost")
    assert stranger.value.extensions["errors"][0]["field"] == "referred_by"
    [event] = c.submit_application("a1", "p1", SubmitApplication(display_name=" Mika ", answers={"why": " books "}),
                                   None)
    assert isinstance(event, ApplicationSubmitted) and event.answers == {"why": "books"}


def _applied(c: Community, application_id: str, applicant: str, referred_by: str | None = None) -> None:
    apply(c, c.submit_application(application_id, applicant, SubmitApplication(
        display_name=applicant.title(), answers={"why": "x"} if c.questions else {}), referred_by))


def test_approval_joins_and_the_referrer_or_the_approver_vouches() -> None:
    c = community(cap=10, members=("fac", "ken"))
    apply(c, c.change_role("fac", ChangeRole(role="facilitator"), "member:owner"))
    admission(c, "application", questions=[QUESTIONS[0].model_dump()])
    _applied(c, "a1", "mika", referred_by="ken")
    _applied(c, "a2", "sora")
    approved, joined = apply(c, c.decide_application("a1", DecideApplication(decision="approve", reason="ok"),
                                                     "member:fac", "fac"))
    assert isinstance(approved, ApplicationApproved) and approved.reason == "ok" and approved.decided_by == "member:fac"
    assert isinstance(joined, MemberJoined) and joined.member_id == "mika"
    assert (joined.joined_via, joined.vouched_by) == ("application", "ken")
    [_, by_approver] = c.decide_application("a2", DecideApplication(decision="approve", reason="ok"), "member:fac",
                                            "fac")
    assert isinstance(by_approver, MemberJoined) and by_approver.vouched_by == "fac"


def test_only_owners_and_facilitators_decide_and_only_once() -> None:
    c = community(members=("ken",))
    admission(c, "application")
    _applied(c, "a1", "mika")
    with pytest.raises(Forbidden):
        c.decide_application("a1", DecideApplication(decision="approve", reason="x"), "member:ken", "ken")
    with pytest.raises(NotFound):
        c.decide_application("nope", DecideApplication(decision="approve", reason="x"), "operator", None)
    [declined] = apply(c, c.decide_application("a1", DecideApplication(decision="decline", reason="not now"),
                                               "member:owner", "owner"))
    assert isinstance(declined, ApplicationDeclined) and declined.reason == "not now"
    with pytest.raises(Conflict) as again:
        c.decide_application("a1", DecideApplication(decision="approve", reason="x"), "member:owner", "owner")
    assert again.value.slug == "application-decided"
    with pytest.raises(ValidationError):
        DecideApplication.model_validate({"decision": "approve", "reason": ""})


def test_an_approved_applicant_waits_when_the_community_is_full() -> None:
    c = community(cap=2, members=("ken",))
    admission(c, "application")
    _applied(c, "a1", "mika")
    [_, waiting] = apply(c, c.decide_application("a1", DecideApplication(decision="approve", reason="ok"),
                                                 "operator", None))
    assert isinstance(waiting, MemberWaitlisted) and waiting.joined_via == "application"
    assert c.waitlist == ["mika"]


# ---- invitations ----

def _invite(c: Community, issuer: str, invitation_id: str, code: str, ttl: int = 3600,
            now: datetime = T0) -> InvitationIssued:
    [event] = apply(c, c.issue_invitation(invitation_id, code, issuer, IssueInvitation(ttl_seconds=ttl), now))
    assert isinstance(event, InvitationIssued)
    return event


def test_an_invitation_is_single_use_and_the_inviter_vouches() -> None:
    c = community(members=("ken",))
    admission(c, "invitation")
    issued = _invite(c, "ken", "i1", "secret-code")
    assert issued.code_sha256 == code_hash("secret-code") and "secret-code" not in issued.model_dump_json()
    assert issued.expires_at == T0 + timedelta(hours=1)
    accepted, joined = apply(c, c.accept_invitation(AcceptInvitation(code="secret-code", display_name="Mika"), "m1",
                                                    T0 + timedelta(minutes=5)))
    assert isinstance(accepted, InvitationAccepted) and accepted.issued_by == "ken"
    assert isinstance(joined, MemberJoined) and (joined.joined_via, joined.vouched_by) == ("invitation", "ken")
    with pytest.raises(Conflict) as used:
        c.accept_invitation(AcceptInvitation(code="secret-code", display_name="Again"), "m2", T0)
    assert used.value.slug == "invitation-used" and used.value.status == 409


def test_an_expired_invitation_is_gone_and_an_unknown_code_is_not_found() -> None:
    c = community(members=("ken",))
    _invite(c, "ken", "i1", "code", ttl=60)
    with pytest.raises(Gone) as expired:
        c.accept_invitation(AcceptInvitation(code="code", display_name="Mika"), "m1", T0 + timedelta(seconds=60))
    assert expired.value.status == 410 and expired.value.slug == "invitation-expired"
    with pytest.raises(NotFound):
        c.accept_invitation(AcceptInvitation(code="guess", display_name="Mika"), "m1", T0)
    with pytest.raises(NotFound):
        c.issue_invitation("i2", "c2", "stranger", IssueInvitation(), T0)


def test_the_owner_limits_open_invitations_per_member() -> None:
    c = community(members=("ken", "aiko"))
    admission(c, "invitation", max_open_invitations=2)
    _invite(c, "ken", "i1", "a", ttl=60)
    _invite(c, "ken", "i2", "b", ttl=3600)
    with pytest.raises(Conflict) as limit:
        c.issue_invitation("i3", "c", "ken", IssueInvitation(), T0)
    assert limit.value.slug == "invitation-limit" and limit.value.extensions["open_invitations"] == 2
    _invite(c, "aiko", "i4", "d")  # the limit is per member
    apply(c, c.accept_invitation(AcceptInvitation(code="b", display_name="B"), "mb", T0))
    _invite(c, "ken", "i5", "e")  # a used invitation no longer counts
    later = T0 + timedelta(seconds=61)
    _invite(c, "ken", "i6", "f", now=later)  # nor does an expired one


def test_an_invitee_waits_when_the_community_is_full() -> None:
    c = community(cap=2, members=("ken",))
    _invite(c, "ken", "i1", "code")
    [_, waiting] = c.accept_invitation(AcceptInvitation(code="code", display_name="Mika"), "m1", T0)
    assert isinstance(waiting, MemberWaitlisted) and (waiting.joined_via, waiting.vouched_by) == ("invitation", "ken")


# ---- the moving waitlist ----

def test_freed_places_go_to_the_first_waiting_one_offer_per_place() -> None:
    c = community(cap=3, members=("a", "b"))
    waitlist(c, "w1", "w2", "w3")
    [left, offer] = apply(c, c.leave("a", LeaveCommunity(), T0, CODES))
    assert isinstance(left, MemberLeft) and isinstance(offer, PlaceOffered)
    assert offer.applicant_id == "w1" and offer.expires_at == T0 + timedelta(hours=72)
    assert c.places_free == 0 and c.open_offers == 1 and c.waitlist == ["w2", "w3"]
    raised = apply(c, c.change_cap(ChangeCap(member_cap=5, reason="a second cohort"), "member:owner", T0, CODES))
    assert isinstance(raised[0], CommunityCapChanged)
    assert [o.applicant_id for o in offers(raised)] == ["w2", "w3"]
    assert c.size + c.open_offers == c.cap == 5 and c.waitlist == []
    waitlist(c, "w4")
    [_, after_removal] = apply(c, c.remove("b", RemoveMember(reason="left town"), "member:owner", T0, CODES))
    assert isinstance(after_removal, PlaceOffered) and after_removal.applicant_id == "w4"


def test_open_offers_hold_places_against_new_joins_and_cap_cuts() -> None:
    c = community(cap=3, members=("a", "b"))
    waitlist(c, "w1")
    apply(c, c.leave("a", LeaveCommunity(), T0, CODES))
    with pytest.raises(Conflict) as full:
        c.join("late", JoinCommunity(display_name="Late"), "owner")
    assert full.value.slug == "community-full" and full.value.extensions["open_offers"] == 1
    with pytest.raises(Invalid) as cut:
        c.change_cap(ChangeCap(member_cap=2), "member:owner", T0)
    assert "open place offers" in cut.value.detail


def test_accepting_an_offer_joins_with_the_original_voucher() -> None:
    c = community(cap=2, members=("a",))
    [invited] = c.join("w1", JoinCommunity(display_name="W1", joined_via="referral", waitlist_if_full=True), "a")
    apply(c, [invited])
    [_, offer] = apply(c, c.leave("a", LeaveCommunity(), T0, CODES))
    assert isinstance(offer, PlaceOffered)
    accepted, joined = apply(c, c.accept_offer(offer.offer_id, claim(offer.offer_id), VISITOR, T0 + timedelta(hours=1)))
    assert isinstance(accepted, PlaceOfferAccepted) and isinstance(joined, MemberJoined)
    assert (joined.member_id, joined.joined_via, joined.vouched_by) == ("w1", "referral", "a")
    assert c.size == c.cap and c.open_offers == 0
    with pytest.raises(Conflict) as twice:
        c.accept_offer(offer.offer_id, claim(offer.offer_id), VISITOR, T0)
    assert twice.value.slug == "offer-used"
    with pytest.raises(NotFound):
        c.accept_offer("nope", claim("nope"), "operator", T0)


def test_declined_and_expired_offers_pass_to_the_next_person() -> None:
    c = community(cap=3, members=("a", "b"))
    admission(c, "open", offer_ttl_seconds=600)
    waitlist(c, "w1", "w2", "w3")
    [_, first] = apply(c, c.leave("a", LeaveCommunity(), T0, CODES))
    assert isinstance(first, PlaceOffered) and first.expires_at == T0 + timedelta(seconds=600)
    answer = DeclineOffer(claim_code=CODES.minted[first.offer_id], reason="moving abroad")
    declined, second = apply(c, c.decline_offer(first.offer_id, answer, VISITOR, T0, CODES))
    assert isinstance(declined, PlaceOfferDeclined) and isinstance(second, PlaceOffered)
    assert second.applicant_id == "w2" and "w1" not in c.waiting
    with pytest.raises(Conflict) as again:
        c.decline_offer(first.offer_id, DeclineOffer(claim_code=CODES.minted[first.offer_id]), VISITOR, T0)
    assert again.value.slug == "offer-declined"

    assert c.expire_offers(T0 + timedelta(seconds=599)) == []
    expiry = T0 + timedelta(seconds=600)
    with pytest.raises(Gone) as late:
        # past its time even before the sweep records it
        c.accept_offer(second.offer_id, claim(second.offer_id), VISITOR, expiry)
    assert late.value.slug == "offer-expired" and late.value.status == 410
    expired, third = apply(c, c.expire_offers(expiry, CODES))
    assert isinstance(expired, PlaceOfferExpired) and expired.applicant_id == "w2"
    assert isinstance(third, PlaceOffered) and third.applicant_id == "w3"
    assert third.expires_at == expiry + timedelta(seconds=600)
    with pytest.raises(Gone):
        c.accept_offer(second.offer_id, claim(second.offer_id), VISITOR, T0)
    assert c.expire_offers(expiry) == []  # sweeping twice records nothing twice
    [last] = apply(c, c.expire_offers(third.expires_at, CODES))
    assert isinstance(last, PlaceOfferExpired) and c.waitlist == [] and c.places_free == 1


def test_offers_of_a_second_round_get_new_ids() -> None:
    c = community(cap=2, members=("a",))
    waitlist(c, "w1")
    [_, offer] = apply(c, c.leave("a", LeaveCommunity(), T0, CODES))
    apply(c, c.expire_offers(T0 + timedelta(days=4)))
    apply(c, c.join("x", JoinCommunity(display_name="X"), "owner"))
    waitlist(c, "w1")  # asks again
    assert isinstance(offer, PlaceOffered)
    [again] = offers(apply(c, c.leave("x", LeaveCommunity(), T0 + timedelta(days=5), CODES)))
    assert again.applicant_id == "w1" and again.offer_id != offer.offer_id


def test_only_the_claim_code_answers_an_offer_and_a_wrong_one_learns_nothing() -> None:
    """Issue 17, hole 2: the offer id alone — or a wrong code — is the same 404 as a missing offer."""
    c = community(cap=3, members=("a", "b"))
    waitlist(c, "w1", "w2")
    [_, offer] = apply(c, c.leave("a", LeaveCommunity(), T0, CODES))
    assert isinstance(offer, PlaceOffered)
    code = CODES.minted[offer.offer_id]
    assert len(code) >= 32 and offer.claim_code_sha256 == code_hash(code) and code not in offer.model_dump_json()
    for attempt in (None, "", "guess", code[:-1], code_hash(code)):
        accept, decline = AcceptOffer.model_construct(claim_code=attempt), DeclineOffer.model_construct(
            claim_code=attempt, reason="")
        for actor in (VISITOR, "operator", "member:owner"):  # nobody answers without the code
            with pytest.raises(NotFound) as refused_acceptance:
                c.accept_offer(offer.offer_id, accept, actor, T0)
            with pytest.raises(NotFound) as refused_decline:
                c.decline_offer(offer.offer_id, decline, actor, T0)
            assert refused_acceptance.value.detail == refused_decline.value.detail == "offer not found"
    declined, _ = apply(c, c.decline_offer(offer.offer_id, DeclineOffer(claim_code=code), VISITOR, T0, CODES))
    assert isinstance(declined, PlaceOfferDeclined)
    with pytest.raises(NotFound):  # a wrong code does not learn that the offer was declined...
        c.accept_offer(offer.offer_id, AcceptOffer(claim_code="guess"), VISITOR, T0)
    with pytest.raises(Conflict):  # ...the right one does
        c.accept_offer(offer.offer_id, AcceptOffer(claim_code=code), VISITOR, T0)


def test_offer_ids_and_codes_are_random_not_derived() -> None:
    made = []
    for _ in range(2):  # the same community, applicant and round, twice
        c = community(cap=2, members=("a",))
        waitlist(c, "w1")
        made.append(offers(c.leave("a", LeaveCommunity(), T0, CODES))[0])
    assert made[0].offer_id != made[1].offer_id and made[0].claim_code_sha256 != made[1].claim_code_sha256


def test_a_facilitator_issues_a_claim_code_that_replaces_the_earlier_one() -> None:
    c = community(cap=4, members=("fac", "ken", "a"))
    apply(c, c.change_role("fac", ChangeRole(role="facilitator"), "member:owner"))
    waitlist(c, "w1")
    [_, offer] = apply(c, c.leave("a", LeaveCommunity(), T0, CODES))
    assert isinstance(offer, PlaceOffered)
    first = CODES.minted[offer.offer_id]
    for refused_actor in ("member:ken", "member:w1", VISITOR, "member:a"):
        with pytest.raises(Forbidden):
            c.issue_claim_code(offer.offer_id, refused_actor, T0, ClaimCodes())
    with pytest.raises(NotFound):
        c.issue_claim_code("nope", "member:fac", T0, ClaimCodes())
    codes = ClaimCodes()
    [issued] = apply(c, c.issue_claim_code(offer.offer_id, "member:fac", T0, codes))
    assert isinstance(issued, PlaceOfferClaimCodeIssued)
    second = codes.minted[offer.offer_id]
    assert (issued.claim_code_sha256, issued.issued_by, issued.applicant_id) == (code_hash(second), "member:fac", "w1")
    with pytest.raises(NotFound):
        c.accept_offer(offer.offer_id, AcceptOffer(claim_code=first), VISITOR, T0)
    apply(c, c.accept_offer(offer.offer_id, AcceptOffer(claim_code=second), VISITOR, T0))
    with pytest.raises(Conflict):
        c.issue_claim_code(offer.offer_id, "operator", T0, ClaimCodes())


def test_an_offer_recorded_before_claim_codes_is_answered_only_by_the_operator_or_the_owner() -> None:
    c = community(cap=3, members=("fac", "a"))
    apply(c, c.change_role("fac", ChangeRole(role="facilitator"), "member:owner"))
    waitlist(c, "w1", "w2")
    [left, offer] = c.leave("a", LeaveCommunity(), T0, CODES)
    assert isinstance(offer, PlaceOffered)
    # An event stored before claim codes existed: no hash field at all.
    legacy = offer.model_dump(mode="json")
    del legacy["claim_code_sha256"]
    old = DomainEvent.decode("PlaceOffered", legacy, "services.members.domain", version=1)
    assert isinstance(old, PlaceOffered) and old.claim_code_sha256 is None
    apply(c, [left, old])
    for refused_actor in (VISITOR, "member:fac", "member:w1"):
        with pytest.raises(NotFound):
            c.accept_offer(offer.offer_id, AcceptOffer(claim_code="anything"), refused_actor, T0)
    [_, joined] = c.accept_offer(offer.offer_id, AcceptOffer(), "member:owner", T0)
    assert isinstance(joined, MemberJoined) and joined.member_id == "w1"
    assert c.decline_offer(offer.offer_id, DeclineOffer(), "operator", T0, CODES)


def test_many_places_freed_at_once_are_offered_in_waitlist_order() -> None:
    c = community(cap=21, members=tuple(f"m{i}" for i in range(20)))
    people = [f"w{i:03}" for i in range(100)]
    waitlist(c, *people)
    made = offers(apply(c, c.change_cap(ChangeCap(member_cap=41, reason="merge"), "member:owner", T0, CODES)))
    assert [o.applicant_id for o in made] == people[:20]
    assert c.size + c.open_offers == c.cap


# ---- growth by linking ----

def _full_with_facilitator() -> Community:
    c = community(cap=3, members=("fac", "ken"))
    apply(c, c.change_role("fac", ChangeRole(role="facilitator"), "member:owner"))
    admission(c, "application", questions=[QUESTIONS[0].model_dump()], offer_ttl_seconds=3600)
    waitlist(c, "w1", "w2", "w3")
    return c


def test_a_sister_is_founded_only_at_the_cap_with_a_facilitator_as_owner() -> None:
    c = community(cap=5, members=("fac",))
    apply(c, c.change_role("fac", ChangeRole(role="facilitator"), "member:owner"))
    with pytest.raises(Conflict) as not_full:
        c.found_sister("s1", FoundSisterCommunity(name="West", new_owner_member_id="fac"), "member:owner")
    assert not_full.value.slug == "not-at-cap"
    c = _full_with_facilitator()
    for who, message in (("ken", "facilitators"), ("ghost", "not a member")):
        with pytest.raises(Invalid) as refused:
            c.found_sister("s1", FoundSisterCommunity(name="West", new_owner_member_id=who), "member:owner")
        assert refused.value.extensions["errors"][0]["field"] == "new_owner_member_id"
        assert message in refused.value.detail


def test_a_sister_carries_purpose_values_and_rules_and_offers_the_waitlist_in_order() -> None:
    c = _full_with_facilitator()
    [founded] = apply(c, c.found_sister("s1", FoundSisterCommunity(name="West", new_owner_member_id="fac",
                                                                    member_cap=3), "member:owner"))
    assert isinstance(founded, SisterCommunityFounded)
    assert (founded.purpose, founded.values, founded.waitlist_offered) == ("makers", ["share first"],
                                                                           ["w1", "w2", "w3"])
    assert c.roles["fac"] == "facilitator" and c.waitlist == ["w1", "w2", "w3"] and c.sisters == ["s1"]
    sister = Community()
    events = apply(sister, sister.begin_as_sister(c, founded, "Aiko", T0, CODES))
    born = events[0]
    assert isinstance(born, CommunityFounded) and born.sister_of == "c1" and born.owner_member_id == "fac"
    assert isinstance(events[1], AdmissionPolicyChanged) and events[1].questions == c.questions
    waiting = [e for e in events if isinstance(e, MemberWaitlisted)]
    assert [(w.applicant_id, w.joined_via) for w in waiting] == [("w1", "sister-community"),
                                                                  ("w2", "sister-community"),
                                                                  ("w3", "sister-community")]
    assert [o.applicant_id for o in offers(events)] == ["w1", "w2"]  # cap 3 counts the new owner
    assert offers(events)[0].expires_at == T0 + timedelta(hours=1)
    assert sister.roles == {"fac": "owner"} and sister.waitlist == ["w3"]
    with pytest.raises(Conflict):
        sister.begin_as_sister(c, founded, "Aiko", T0)


@pytest.mark.parametrize("seed", range(20))
def test_members_plus_open_offers_never_exceed_the_cap(seed: int) -> None:
    """Any sequence of joins, leaves, cap changes, acceptances, declines and expiries keeps the cap."""
    import random

    rng = random.Random(seed)
    c = community(cap=5)
    now, n = T0, 0
    for _ in range(300):
        now += timedelta(hours=rng.choice([0, 1, 30]))
        n += 1
        action = rng.randrange(7)
        open_offers = [oid for oid, o in c.offers.items() if o.status == "open"]
        members = [m for m, r in c.roles.items() if r != "owner"]
        try:
            if action == 0:
                apply(c, c.join(f"p{n}", JoinCommunity(display_name="P", waitlist_if_full=True), "owner"))
            elif action == 1 and members:
                apply(c, c.leave(rng.choice(members), LeaveCommunity(), now, CODES))
            elif action == 2:
                apply(c, c.change_cap(ChangeCap(member_cap=rng.randint(2, 12), reason="r"), "member:owner", now, CODES))
            elif action == 3 and open_offers:
                apply(c, c.accept_offer(offer_id := rng.choice(open_offers), claim(offer_id), VISITOR, now))
            elif action == 4 and open_offers:
                apply(c, c.decline_offer(offer_id := rng.choice(open_offers),
                                           DeclineOffer(claim_code=CODES.minted[offer_id]), VISITOR, now, CODES))
            elif action == 5:
                apply(c, c.expire_offers(now, CODES))
            elif action == 6 and members:
                apply(c, c.remove(rng.choice(members), RemoveMember(reason="r"), "member:owner", now, CODES))
        except (Conflict, Gone, Invalid):
            pass
        assert c.size + c.open_offers <= c.cap
        assert not (c.places_free > 0 and c.waitlist), "a free place while people wait"


# ---- people's accounts ----

def test_an_account_comes_in_once_whether_joined_waiting_or_applying() -> None:
    c = community(cap=2)
    [_, linked] = apply(c, [*c.join("aya", JoinCommunity(display_name="Aya"), None),
                                 *c.link_account("aya", "acct-1")])
    assert isinstance(linked, MemberAccountLinked) and linked.member_id == "aya"
    with pytest.raises(Conflict):
        c.link_account("aya-again", "acct-1")
    waitlist(c, "ben")  # full now (owner and Aya): Ben waits
    apply(c, c.link_account("ben", "acct-2"))
    with pytest.raises(Conflict):
        c.link_account("ben-again", "acct-2")
    apply(c, c.leave("aya", LeaveCommunity(), T0))
    apply(c, c.link_account("aya-back", "acct-1"))  # someone who left may come back


def test_an_owner_code_ties_an_existing_member_to_an_account_once_until_it_expires() -> None:
    c = community(members=("aya",))
    with pytest.raises(Forbidden):
        c.issue_account_claim("aya", "code-1", "member:aya", T0, 3600)
    apply(c, c.issue_account_claim("aya", "code-1", "member:owner", T0, 3600))
    apply(c, c.issue_account_claim("owner", "code-2", "operator", T0, 60))
    with pytest.raises(NotFound):
        c.claim_account("wrong", "acct-9", T0)
    with pytest.raises(Gone):
        c.claim_account("code-2", "acct-9", T0 + timedelta(seconds=61))
    [claimed] = apply(c, c.claim_account("code-1", "acct-1", T0))
    assert isinstance(claimed, MemberAccountLinked) and claimed.member_id == "aya"
    with pytest.raises(Conflict):
        c.claim_account("code-1", "acct-2", T0)
    with pytest.raises(Conflict):
        c.issue_account_claim("aya", "code-3", "member:owner", T0, 3600)
