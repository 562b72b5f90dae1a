"""Offering rules without servers: terms, commitments, consent to changes, settlement, shifts,
deliveries and lead-user feedback."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from kizuna.domain import DomainEvent
from kizuna.errors import Conflict, Forbidden, Invalid, NotFound
from services.referrals.domain import MakeReferral, Referral, ReferralMade
from services.referrals.offerings.domain import (
    AnswerTermsChange,
    ApplyTermsChange,
    ChangeTerms,
    CommitmentReleased,
    CommitShares,
    DeliveryRecorded,
    GiveLeadUserFeedback,
    LeadUserFeedbackGiven,
    Offering,
    OfferingConfirmed,
    OfferingLapsed,
    OfferingTerms,
    OfferingTermsChanged,
    PublishOffering,
    RecordDelivery,
    ShareProgress,
    SharesCommitted,
    TermsChangeProposed,
    WithdrawCommitment,
)

NOW = datetime(2031, 4, 1, 9, 0, tzinfo=UTC)
DEADLINE = datetime(2031, 5, 1, tzinfo=UTC)
AFTER = DEADLINE + timedelta(minutes=1)


def terms(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Summer vegetable share", "season": "Summer 2031", "shares": 10, "minimum_shares": 4,
        "price": {"kind": "money", "amount": 12000, "currency": "JPY"}, "commitment_deadline": DEADLINE,
        "delivery_dates": [date(2031, 7, 19), date(2031, 7, 5)],
        "help_shifts": [{"date": date(2031, 7, 12), "place": "Sato farm", "hands": 2, "what": "harvest"}]}
    body.update(changes)
    return body


def run(agg: Offering, events: list[DomainEvent]) -> list[DomainEvent]:
    for e in events:
        agg.apply(e)
        agg.version += 1
    return events


def published(**changes: Any) -> Offering:
    offering = Offering()
    run(offering, offering.publish("o1", "c1", "farmer", PublishOffering(**terms(**changes)), NOW))
    return offering


def committed(shares: dict[str, int], **changes: Any) -> Offering:
    offering = published(**changes)
    for member, n in shares.items():
        run(offering, offering.commit(member, CommitShares(shares=n), NOW))
    return offering


def confirmed(shares: dict[str, int] | None = None) -> Offering:
    offering = committed(shares or {"ken": 2, "mei": 3})
    run(offering, offering.settle(AFTER))
    assert offering.status == "confirmed"
    return offering


# ---- publishing ----

def test_publish_records_the_terms_with_sorted_delivery_dates() -> None:
    offering = published()
    assert offering.producer == "farmer" and offering.status == "open"
    assert offering.current.delivery_dates == [date(2031, 7, 5), date(2031, 7, 19)]
    assert offering.shares_left == 10
    snap = offering.snapshot()
    assert snap["available"] == 10 and snap["help_shifts"][0]["shift_id"] == "1"


def test_naive_deadline_is_utc() -> None:
    naive = PublishOffering(**terms(commitment_deadline=datetime(2031, 5, 1)))  # noqa: DTZ001 - a local wall time, as the API takes it
    assert naive.commitment_deadline == DEADLINE


@pytest.mark.parametrize(("changes", "field"), [
    ({"shares": 0}, "shares"), ({"shares": -3}, "shares"), ({"minimum_shares": 0}, "minimum_shares"),
    ({"delivery_dates": []}, "delivery_dates"), ({"title": ""}, "title"),
    ({"help_shifts": [{"date": date(2031, 7, 12), "place": "farm", "hands": 0}]}, "help_shifts"),
])
def test_schema_refusals_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as error:
        PublishOffering(**terms(**changes))
    assert field in str(error.value.errors()[0]["loc"][0])


@pytest.mark.parametrize(("changes", "field"), [
    ({"commitment_deadline": NOW - timedelta(hours=1)}, "commitment_deadline"),
    ({"commitment_deadline": datetime(2031, 7, 6, tzinfo=UTC)}, "commitment_deadline"),  # after the first delivery
    ({"commitment_deadline": datetime(2031, 7, 5, 8, tzinfo=UTC)}, "commitment_deadline"),  # on its day
    ({"minimum_shares": 11}, "minimum_shares"),
    ({"price": {"kind": "money", "amount": 12000}}, "price.currency"),
    ({"price": {"kind": "money", "amount": 12000, "currency": "yen"}}, "price.currency"),
    ({"price": {"kind": "money", "currency": "JPY"}}, "price.amount"),
    ({"price": {"kind": "money", "amount": 0, "currency": "JPY"}}, "price.amount"),
    ({"price": {"kind": "money", "amount": float("inf"), "currency": "JPY"}}, "price.amount"),
    ({"price": {"kind": "barter"}}, "price.barter"),
    ({"help_shifts": [{"date": date(2031, 3, 1), "place": "farm", "hands": 2}]}, "help_shifts.0.date"),
])
def test_domain_refusals_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as error:
        Offering().publish("o", "c", "p", PublishOffering(**terms(**changes)), NOW)
    assert error.value.extensions["errors"][0]["field"] == field


def test_barter_and_gratitude_prices_are_fine() -> None:
    assert published(price={"kind": "barter", "barter": "a day of help"}).current.price.kind == "barter"
    assert published(price={"kind": "none"}).current.price.kind == "none"


# ---- commitments ----

def test_commitments_add_up_and_never_exceed_the_shares() -> None:
    offering = committed({"ken": 3, "mei": 4})
    [event] = offering.commit("ken", CommitShares(shares=2), NOW)
    assert isinstance(event, SharesCommitted) and event.member_shares == 5 and event.shares_left == 1
    run(offering, [event])
    with pytest.raises(Conflict) as error:
        offering.commit("sora", CommitShares(shares=2), NOW)
    assert error.value.slug == "not-enough-shares" and error.value.extensions["shares_left"] == 1
    assert "only 1 of 10 shares" in error.value.detail
    run(offering, offering.commit("sora", CommitShares(shares=1), NOW))
    assert offering.committed == 10 and offering.shares_left == 0
    with pytest.raises(Conflict) as error:
        offering.commit("aiko", CommitShares(shares=1), NOW)
    assert error.value.extensions["shares_left"] == 0


def test_zero_or_negative_commitment_is_refused_by_the_schema() -> None:
    for bad in (0, -1):
        with pytest.raises(ValidationError) as error:
            CommitShares(shares=bad)
        assert error.value.errors()[0]["loc"] == ("shares",)


def test_commit_after_the_deadline_names_what_was_left() -> None:
    offering = committed({"ken": 3})
    with pytest.raises(Conflict) as error:
        offering.commit("mei", CommitShares(shares=1), DEADLINE)
    assert error.value.slug == "commitment-deadline-passed" and error.value.extensions["shares_left"] == 7


def test_the_producer_does_not_commit_to_their_own_offering() -> None:
    with pytest.raises(Invalid):
        published().commit("farmer", CommitShares(shares=1), NOW)


def test_withdraw_before_the_deadline_frees_the_shares() -> None:
    offering = committed({"ken": 3})
    run(offering, offering.withdraw("ken", WithdrawCommitment(reason="moving away"), NOW))
    assert offering.committed == 0 and offering.ledger["ken"]["status"] == "withdrawn"
    with pytest.raises(Conflict) as error:
        offering.withdraw("ken", WithdrawCommitment(), NOW)
    assert error.value.slug == "no-commitment"
    run(offering, offering.commit("ken", CommitShares(shares=1), NOW))
    with pytest.raises(Conflict):
        offering.withdraw("ken", WithdrawCommitment(), DEADLINE)


# ---- terms changes ----

def test_terms_change_freely_before_anyone_commits() -> None:
    offering = published()
    [event] = offering.propose_terms_change("farmer", "p1", ChangeTerms(terms=OfferingTerms(**terms(shares=12))),
                                            NOW)
    assert isinstance(event, OfferingTermsChanged)
    run(offering, [event])
    assert offering.current.shares == 12
    with pytest.raises(Forbidden):
        offering.change_terms("ken", ChangeTerms(terms=OfferingTerms(**terms())), NOW)


def test_terms_are_fixed_once_anyone_committed() -> None:
    offering = committed({"ken": 1})
    with pytest.raises(Conflict) as error:
        offering.change_terms("farmer", ChangeTerms(terms=OfferingTerms(**terms(shares=12))), NOW)
    assert error.value.status == 409 and error.value.slug == "consent-required"


def test_a_change_needs_every_committed_members_consent() -> None:
    offering = committed({"ken": 2, "mei": 3})
    new = OfferingTerms(**terms(price={"kind": "money", "amount": 13000, "currency": "JPY"}))
    [proposed] = run(offering, offering.propose_terms_change("farmer", "p1", ChangeTerms(terms=new, reason="seed"),
                                                             NOW))
    assert isinstance(proposed, TermsChangeProposed) and proposed.awaiting == ["ken", "mei"]
    run(offering, offering.answer_terms_change("ken", "p1", AnswerTermsChange(consent=True), NOW))
    assert offering.answer_terms_change("ken", "p1", AnswerTermsChange(consent=True), NOW) == []
    with pytest.raises(Forbidden):
        offering.answer_terms_change("sora", "p1", AnswerTermsChange(consent=True), NOW)
    with pytest.raises(NotFound):
        offering.answer_terms_change("mei", "old", AnswerTermsChange(consent=True), NOW)
    with pytest.raises(Conflict) as error:
        offering.apply_terms_change("farmer", "p1", ApplyTermsChange(), NOW)
    assert error.value.slug == "consent-missing" and error.value.extensions["not_consented"] == ["mei"]
    run(offering, offering.answer_terms_change("mei", "p1", AnswerTermsChange(consent=True), NOW))
    [changed] = run(offering, offering.apply_terms_change("farmer", "p1", ApplyTermsChange(), NOW))
    assert isinstance(changed, OfferingTermsChanged) and changed.consented_by == ["ken", "mei"]
    assert offering.current.price.amount == 13000 and offering.proposal is None and offering.committed == 5


def test_members_who_do_not_consent_are_released() -> None:
    offering = committed({"ken": 2, "mei": 3, "sora": 1})
    new = OfferingTerms(**terms(delivery_dates=[date(2031, 8, 2)]))
    run(offering, offering.propose_terms_change("farmer", "p1", ChangeTerms(terms=new), NOW))
    run(offering, offering.answer_terms_change("ken", "p1", AnswerTermsChange(consent=True), NOW))
    run(offering, offering.answer_terms_change("mei", "p1", AnswerTermsChange(consent=False, reason="away"), NOW))
    events = run(offering, offering.apply_terms_change("farmer", "p1",
                                                       ApplyTermsChange(release_non_consenting=True), NOW))
    released = [e for e in events if isinstance(e, CommitmentReleased)]
    assert [(e.member_id, e.shares, e.cause) for e in released] == [
        ("mei", 3, "terms-change-not-consented"), ("sora", 1, "terms-change-not-consented")]
    assert offering.commitments == {"ken": 2} and offering.ledger["mei"]["status"] == "released"
    assert "consent" in offering.ledger["mei"]["reason"]


def test_new_terms_keep_room_for_commitments_and_help_already_given() -> None:
    offering = committed({"ken": 6})
    run(offering, offering.sign_up("mei", "1", NOW))
    with pytest.raises(Invalid) as error:  # a shift someone signed up for cannot disappear
        offering.propose_terms_change("farmer", "p", ChangeTerms(terms=OfferingTerms(**terms(help_shifts=[]))), NOW)
    assert error.value.extensions["errors"][0]["field"] == "help_shifts"
    fewer = OfferingTerms(**terms(shares=5, minimum_shares=2))
    run(offering, offering.propose_terms_change("farmer", "p", ChangeTerms(terms=fewer), NOW))
    run(offering, offering.answer_terms_change("ken", "p", AnswerTermsChange(consent=True), NOW))
    with pytest.raises(Invalid) as error:  # fewer shares than the consenting members hold
        offering.apply_terms_change("farmer", "p", ApplyTermsChange(), NOW)
    assert error.value.extensions["errors"][0]["field"] == "shares"


# ---- settlement ----

def test_settling_before_the_deadline_is_refused() -> None:
    with pytest.raises(Conflict) as error:
        committed({"ken": 5}).settle(NOW)
    assert error.value.slug == "deadline-not-reached"


def test_confirmed_when_the_minimum_is_reached() -> None:
    offering = committed({"ken": 2, "mei": 2})
    [event] = run(offering, offering.settle(DEADLINE))
    assert isinstance(event, OfferingConfirmed) and event.committed == 4 and "minimum was 4" in event.reason
    assert offering.status == "confirmed" and offering.settle(AFTER) == []
    with pytest.raises(Conflict):
        offering.commit("sora", CommitShares(shares=1), AFTER)


def test_lapsed_below_the_minimum_releases_every_commitment_with_the_reason() -> None:
    offering = committed({"ken": 1, "mei": 2})
    events = run(offering, offering.settle(AFTER))
    assert isinstance(events[0], OfferingLapsed) and "only 3 of the minimum 4" in events[0].reason
    released = [e for e in events[1:] if isinstance(e, CommitmentReleased)]
    assert {(e.member_id, e.shares, e.cause) for e in released} == {("ken", 1, "offering-lapsed"),
                                                                  ("mei", 2, "offering-lapsed")}
    assert all("lapsed" in e.reason for e in released)
    assert offering.status == "lapsed" and offering.commitments == {} and offering.committed == 0
    assert {c["status"] for c in offering.snapshot()["commitments"]} == {"released"}
    with pytest.raises(Conflict):
        offering.sign_up("ken", "1", AFTER)


def test_a_pending_terms_change_ends_with_settlement() -> None:
    offering = committed({"ken": 5})
    run(offering, offering.propose_terms_change("farmer", "p1", ChangeTerms(terms=OfferingTerms(**terms())), NOW))
    run(offering, offering.settle(AFTER))
    assert offering.proposal is None and offering.snapshot()["pending_terms_change"] is None


# ---- during and after ----

def test_progress_is_shared_by_the_producer() -> None:
    offering = committed({"ken": 1})
    with pytest.raises(Forbidden):
        offering.share_progress("ken", "u", ShareProgress(note="hi"), NOW)
    run(offering, offering.share_progress("farmer", "u1", ShareProgress(stage="sowing", note="40 rows"), NOW))
    assert offering.snapshot()["progress"][0]["stage"] == "sowing"


def test_help_shifts_never_take_more_hands_than_needed() -> None:
    offering = committed({"ken": 1})
    run(offering, offering.sign_up("ken", "1", NOW))
    with pytest.raises(Conflict) as error:
        offering.sign_up("ken", "1", NOW)
    assert error.value.slug == "already-signed-up"
    run(offering, offering.sign_up("mei", "1", NOW))
    with pytest.raises(Conflict) as error:
        offering.sign_up("sora", "1", NOW)
    assert error.value.slug == "shift-full" and error.value.extensions["hands"] == 2
    run(offering, offering.cancel_sign_up("mei", "1"))
    run(offering, offering.sign_up("sora", "1", NOW))
    assert offering.signups["1"] == ["ken", "sora"]
    with pytest.raises(NotFound):
        offering.sign_up("aiko", "2", NOW)
    with pytest.raises(Conflict) as error:
        offering.sign_up("aiko", "1", datetime(2031, 7, 13, tzinfo=UTC))
    assert error.value.slug in ("shift-passed", "shift-full")
    with pytest.raises(Invalid):
        offering.sign_up("farmer", "1", NOW)


def test_deliveries_per_member_and_a_short_harvest_is_a_smaller_portion_not_a_refund() -> None:
    offering = confirmed()
    assert len(offering.snapshot()["deliveries_outstanding"]) == 4
    with pytest.raises(Forbidden):
        offering.record_delivery("ken", RecordDelivery(member_id="ken", delivery_date=date(2031, 7, 5)))
    [event] = run(offering, offering.record_delivery("farmer", RecordDelivery(
        member_id="ken", delivery_date=date(2031, 7, 5), portion_per_share=0.6, note="a dry June")))
    assert isinstance(event, DeliveryRecorded) and event.shares == 2 and event.refund_owed is None
    with pytest.raises(Conflict):
        offering.record_delivery("farmer", RecordDelivery(member_id="ken", delivery_date=date(2031, 7, 5)))
    with pytest.raises(Invalid) as error:
        offering.record_delivery("farmer", RecordDelivery(member_id="ken", delivery_date=date(2031, 7, 6)))
    assert error.value.extensions["errors"][0]["field"] == "delivery_date"
    with pytest.raises(Invalid):
        offering.record_delivery("farmer", RecordDelivery(member_id="sora", delivery_date=date(2031, 7, 5)))
    outstanding = offering.snapshot()["deliveries_outstanding"]
    assert ("ken", "2031-07-05") not in {(d["member_id"], d["delivery_date"]) for d in outstanding}
    assert len(outstanding) == 3


def test_deliveries_wait_for_confirmation() -> None:
    with pytest.raises(Conflict):
        committed({"ken": 5}).record_delivery("farmer", RecordDelivery(member_id="ken",
                                                                       delivery_date=date(2031, 7, 5)))


def test_a_pro_rata_refund_only_when_the_terms_say_so() -> None:
    offering = committed({"ken": 4}, short_harvest="pro-rata-refund")
    run(offering, offering.settle(AFTER))
    [event] = offering.record_delivery("farmer", RecordDelivery(member_id="ken", delivery_date=date(2031, 7, 5),
                                                                portion_per_share=0.5))
    assert isinstance(event, DeliveryRecorded)
    assert event.refund_owed == 12000 * 4 / 2 * 0.5 and event.currency == "JPY"


def test_lead_user_feedback_after_a_delivery_once_per_member() -> None:
    offering = confirmed()
    good = GiveLeadUserFeedback(good="sweet tomatoes", improve="earlier notice", would_commit_again=True)
    with pytest.raises(Conflict) as error:
        offering.give_feedback("ken", good, AFTER)
    assert error.value.slug == "no-delivery-yet"
    run(offering, offering.record_delivery("farmer", RecordDelivery(member_id="ken", delivery_date=date(2031, 7, 5))))
    [event] = run(offering, offering.give_feedback("ken", good, AFTER))
    assert isinstance(event, LeadUserFeedbackGiven) and event.producer_id == "farmer"
    with pytest.raises(Conflict):
        offering.give_feedback("ken", good, AFTER)
    with pytest.raises(Forbidden):
        offering.give_feedback("sora", good, AFTER)
    assert offering.snapshot()["feedback"][0]["would_commit_again"] is True


# ---- introducing a trusted producer ----

def test_a_referral_whose_subject_is_an_offering() -> None:
    cmd = MakeReferral(referred_id="farmer", to_member_id="mei", offering_id="o1", note="her tomatoes!")
    [event] = Referral().make("r1", "c1", "ken", cmd)
    assert isinstance(event, ReferralMade)
    assert event.offering_id == "o1" and event.to_member_id == "mei"
    with pytest.raises(ValidationError):
        MakeReferral(referred_id="farmer", job_id="j1", offering_id="o1")


def test_shift_ids_are_exactly_the_numbers_the_terms_give() -> None:
    offering = committed({"ken": 1})
    for odd in ("\u0661", "01", " 1", "0", ""):
        with pytest.raises(NotFound):
            offering.sign_up("mei", odd, NOW)


def test_a_deadline_at_the_end_of_time_is_refused_not_crashed() -> None:
    far = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-5)))
    with pytest.raises(Invalid) as error:
        Offering().publish("o", "c", "p", PublishOffering(**terms(commitment_deadline=far)), NOW)
    assert error.value.extensions["errors"][0]["field"] == "commitment_deadline"
