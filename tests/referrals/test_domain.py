"""Referrals rules without servers: job lifecycle, 360° feedback, introductions, matching."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from kizuna.domain import DomainEvent
from kizuna.errors import Conflict, Forbidden, Invalid
from services.referrals.domain import (
    AssignJob,
    CancelJob,
    Compensation,
    FeedbackGiven,
    GiveFeedback,
    Job,
    JobRequestPosted,
    MakeReferral,
    OfferToTake,
    PostJobRequest,
    RecordOutcome,
    Referral,
    ReferToJob,
    match_score,
    recency_weight,
)

TODAY = date(2030, 1, 1)


def run(agg: Job | Referral, events: Sequence[DomainEvent]) -> None:
    for e in events:
        agg.apply(e)


def posted() -> Job:
    job = Job()
    run(job, job.post("j1", "c1", "req", PostJobRequest(title="Logo", skills=["Design "], deadline=date(2030, 2, 1)),
                      TODAY))
    return job


def feedback(subject: str) -> GiveFeedback:
    return GiveFeedback(subject_id=subject, quality=5, reliability=4, beyond=5, collaboration=3)


def the_feedback(events: Sequence[DomainEvent]) -> FeedbackGiven:
    """The one FeedbackGiven a give_feedback decided."""
    [given] = events
    assert isinstance(given, FeedbackGiven)
    return given


def test_compensation_rules() -> None:
    assert Compensation(kind="money", amount=3000, currency="JPY").amount == 3000
    for bad in ({"kind": "money", "amount": -1, "currency": "JPY"}, {"kind": "money", "amount": 5},
                {"kind": "money", "amount": 5, "currency": "yen"}):
        with pytest.raises(ValidationError):
            Compensation.model_validate(bad)


def test_deadline_must_be_in_the_future_and_skills_are_normalised() -> None:
    with pytest.raises(Invalid):
        Job().post("j", "c", "r", PostJobRequest(title="x", deadline=TODAY), TODAY)
    assert posted().state == "posted"
    [event] = Job().post("j", "c", "r", PostJobRequest(title="x", skills=["Video Editing"],
                                                        deadline=date(2030, 3, 1)), TODAY)
    assert isinstance(event, JobRequestPosted)
    assert event.skills == ["video-editing"]


def test_full_lifecycle_and_illegal_transitions() -> None:
    job = posted()
    with pytest.raises(Invalid):
        job.offer("req", OfferToTake())
    run(job, job.offer("a", OfferToTake(why_next_step="first client work")))
    with pytest.raises(Conflict):
        job.offer("a", OfferToTake())
    run(job, job.refer("a", ReferToJob(member_id="b")))
    with pytest.raises(Forbidden):
        job.assign("a", AssignJob(member_ids=["a"]))
    with pytest.raises(Invalid):
        job.assign("req", AssignJob(member_ids=["stranger"]))
    with pytest.raises(Conflict) as early:
        job.complete("req")
    assert early.value.extensions["current_state"] == "posted"
    run(job, job.assign("req", AssignJob(member_ids=["a", "b"])))
    with pytest.raises(Conflict):
        job.assign("req", AssignJob(member_ids=["a"]))  # a second assignment loses
    run(job, job.start("a"))
    run(job, job.complete("req"))
    with pytest.raises(Conflict):
        job.cancel("req", CancelJob())
    assert job.state == "completed"


def test_360_feedback_rules() -> None:
    job = posted()
    run(job, job.offer("a", OfferToTake()))
    run(job, job.offer("b", OfferToTake()))
    run(job, job.offer("p", OfferToTake()))  # took part, not assigned: a peer
    with pytest.raises(Conflict):
        job.give_feedback("req", feedback("a"))  # not completed yet
    run(job, job.assign("req", AssignJob(member_ids=["a", "b"])))
    run(job, job.start("req"))
    run(job, job.complete("req"))
    from_requester = the_feedback(job.give_feedback("req", feedback("a")))
    run(job, [from_requester])
    assert from_requester.giver_relation == "requester"
    with pytest.raises(Conflict):
        job.give_feedback("req", feedback("a"))
    assert the_feedback(job.give_feedback("b", feedback("a"))).giver_relation == "co-worker"
    assert the_feedback(job.give_feedback("p", feedback("a"))).giver_relation == "peer"
    assert the_feedback(job.give_feedback("a", feedback("req"))).giver_relation == "worker"
    with pytest.raises(Invalid):
        job.give_feedback("a", feedback("a"))
    with pytest.raises(Forbidden):
        job.give_feedback("outsider", feedback("a"))
    with pytest.raises(Forbidden):
        job.give_feedback("p", feedback("req"))
    with pytest.raises(ValidationError):
        GiveFeedback(subject_id="a", quality=6, reliability=1, beyond=1, collaboration=1)


def test_referral_lifecycle() -> None:
    with pytest.raises(ValidationError):
        MakeReferral(referred_id="b")
    r = Referral()
    with pytest.raises(Invalid):
        r.make("r1", "c1", "a", MakeReferral(referred_id="a", to_member_id="c"))
    run(r, r.make("r1", "c1", "a", MakeReferral(referred_id="b", to_member_id="c", note="great patent attorney")))
    with pytest.raises(Forbidden):
        r.answer("c", True)
    with pytest.raises(Conflict):
        r.record_outcome("a", RecordOutcome(worked=True))
    run(r, r.answer("b", True))
    with pytest.raises(Forbidden):
        r.record_outcome("stranger", RecordOutcome(worked=True))
    run(r, r.record_outcome("c", RecordOutcome(worked=True)))
    with pytest.raises(Conflict):
        r.record_outcome("a", RecordOutcome(worked=False))


def test_matching_and_recency() -> None:
    strong, why = match_score(["illustration"], "picture book spreads", ["illustration"], "my picture book", 0)
    busy, _ = match_score(["illustration"], "picture book spreads", ["illustration"], "my picture book", 2)
    none, _ = match_score(["illustration"], "picture book", ["accounting"], "", 0)
    assert strong > busy > none == 0 and any("illustration" in r for r in why)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    assert recency_weight(now, now) == 1.0
    assert recency_weight(now - timedelta(days=180), now) == pytest.approx(0.5)
