"""The federation's pure parts: message signatures and the partnership state machine. No servers."""

from __future__ import annotations

import json

import pytest

from kizuna.auth import generate_private_key_pem, load_private_key
from kizuna.errors import Conflict, Forbidden, Invalid
from services.gateway.federation.domain import (
    IntroductionOutcome,
    PartnerJobStatusReceived,
    Partnership,
    PartnershipRequested,
    ProposePartnership,
    member_card,
)
from services.gateway.federation.signing import SignatureRejected, read, sign, verify
from services.referrals.domain import MakeReferral, Referral, ReferralOutcomeRecorded

KEY = load_private_key(generate_private_key_pem())
BODY = json.dumps({"message_id": "m-1", "type": "job.shared"}).encode()


def signed(body: bytes = BODY, created: int = 1_000_000, nonce: str = "nonce-0001") -> dict[str, str]:
    headers = sign(KEY, method="POST", path="/federation/inbox", body=body, origin="https://a.example",
                   message_id="m-1", created=created, nonce=nonce)
    return {k.lower(): v for k, v in headers.items()}


def check(headers: dict[str, str], body: bytes = BODY, now: int = 1_000_010, path: str = "/federation/inbox") -> None:
    verify(read(headers, method="POST", path=path, body=body, now=now), KEY.public_key())


def test_a_signed_message_verifies_and_every_covered_part_matters() -> None:
    check(signed())
    with pytest.raises(SignatureRejected) as tampered:
        check(signed(), body=BODY.replace(b"job.shared", b"job.status"))
    assert tampered.value.slug == "digest-mismatch"
    with pytest.raises(SignatureRejected):
        check(signed(), path="/federation/other")
    with pytest.raises(SignatureRejected):
        check({**signed(), "kizuna-origin": "https://evil.example"})
    with pytest.raises(SignatureRejected):
        check({**signed(), "kizuna-message-id": "m-2"})
    other_key = load_private_key(generate_private_key_pem())
    with pytest.raises(SignatureRejected):
        verify(read(signed(), method="POST", path="/federation/inbox", body=BODY, now=1_000_010),
               other_key.public_key())


def test_missing_stale_and_malformed_signatures_are_refused() -> None:
    with pytest.raises(SignatureRejected) as unsigned:
        check({})
    assert unsigned.value.slug == "unsigned"
    with pytest.raises(SignatureRejected) as stale:
        check(signed(created=1_000_000), now=1_000_000 + 301)
    assert stale.value.slug == "stale-signature"
    check(signed(created=1_000_000), now=1_000_000 + 299)
    narrowed = signed()
    narrowed["signature-input"] = narrowed["signature-input"].replace(' "kizuna-message-id"', "")
    with pytest.raises(SignatureRejected):
        check(narrowed)


def proposed() -> Partnership:
    cmd = ProposePartnership(partner_origin="https://b.example", partner_community_id="cb",
                             sends=["job_requests"], receives=["job_requests", "referrals"])
    return Partnership.from_events(Partnership.propose("p1", "ca", "Ringo", "Nagano", cmd, "owner"))


def requested() -> Partnership:
    return Partnership.from_events([PartnershipRequested(
        partnership_id="p1", community_id="cb", partner_origin="https://a.example", partner_community_id="ca",
        partner_community_name="Ringo", sends=["job_requests", "referrals"], receives=["job_requests"], note="")])


def test_partnership_lifecycle_and_illegal_transitions() -> None:
    mine, theirs = proposed(), requested()
    with pytest.raises(Conflict):
        mine.accept("owner")  # the proposer cannot accept its own proposal
    for event in theirs.accept("owner-b"):
        theirs.apply(event)
    for event in mine.accept("partner", by="partner"):
        mine.apply(event)
    assert mine.status == theirs.status == "active"
    assert mine.accept("owner") == []  # accepting twice changes nothing
    with pytest.raises(Conflict):
        mine.resume("owner")
    for event in mine.suspend("owner", "a pause"):
        mine.apply(event)
    assert mine.share_job("j1", {"title": "t"}) == [], "nothing new crosses while suspended"
    for event in mine.resume("owner"):
        mine.apply(event)
    for event in mine.end("owner", "done"):
        mine.apply(event)
    assert mine.status == "ended" and mine.end("owner", "again") == []
    with pytest.raises(Conflict):
        mine.suspend("owner", "too late")


def test_what_crosses_follows_what_each_side_agreed() -> None:
    cmd = ProposePartnership(partner_origin="https://b.example", partner_community_id="cb",
                             sends=["job_requests"], receives=[])
    ringo = Partnership.from_events(Partnership.propose("p1", "ca", "Ringo", "Nagano", cmd, "owner"))
    assert ringo.share_job("j1", {"title": "t"}) == [], "nothing is shared before the partner accepts"
    for event in ringo.accept("partner", by="partner"):
        ringo.apply(event)
    shared = ringo.share_job("j1", {"title": "t"})
    assert len(shared) == 1
    ringo.apply(shared[0])
    assert ringo.share_job("j1", {"title": "t"}) == [], "a job is shared once"
    with pytest.raises(Forbidden):
        ringo.receive_job("j9", {"title": "theirs"})  # Ringo receives nothing
    with pytest.raises(Invalid):
        ringo.receive_offer("j-unknown", "o1", "offer", {"display_name": "Mio"}, "", None)
    assert len(ringo.receive_offer("j1", "o1", "offer", {"display_name": "Mio"}, "", None)) == 1
    with pytest.raises(Forbidden):
        ringo.receive_offer("j1", "o2", "referral", {"display_name": "Rin"}, "", "Mio")  # referrals not received


def test_offers_to_a_partner_job() -> None:
    nagano = requested()
    for event in nagano.accept("owner-b"):
        nagano.apply(event)
    with pytest.raises(Invalid):
        nagano.send_offer("j1", "o1", "mio", {"display_name": "Mio"}, "", "offer", None)  # never received
    for event in nagano.receive_job("j1", {"title": "t"}):
        nagano.apply(event)
    offer = nagano.send_offer("j1", "o1", "mio", {"display_name": "Mio"}, "", "offer", None)
    nagano.apply(offer[0])
    with pytest.raises(Conflict):
        nagano.send_offer("j1", "o2", "mio", {"display_name": "Mio"}, "", "offer", None)
    [status] = nagano.receive_job_status("j1", "assigned", ["o1", "someone-elses"])
    assert isinstance(status, PartnerJobStatusReceived)
    assert status.assigned_offer_ids == ["o1"], "only this side's own offers are named"
    nagano.apply(status)
    with pytest.raises(Conflict):
        nagano.send_offer("j1", "o3", "ken", {"display_name": "Ken"}, "", "offer", None)


def test_a_member_card_holds_only_what_they_consented_to() -> None:
    profile = {"skills": ["weaving"], "vector": "my own studio", "values": ["care"]}
    assert member_card("Mio", ["display_name"], profile) == {"display_name": "Mio"}
    assert member_card("Mio", ["display_name", "skills"], profile) == {"display_name": "Mio", "skills": ["weaving"]}


def test_introductions_across_a_partnership() -> None:
    ringo = proposed()
    assert ringo.send_introduction("r1", {"display_name": "Aiko"}, "", "Yui", None) == [], "not before acceptance"
    for event in ringo.accept("partner", by="partner"):
        ringo.apply(event)
    assert ringo.send_introduction("r1", {"display_name": "Aiko"}, "", "Yui", None) == [], \
        "Ringo's side does not send referrals in this partnership"
    nagano = requested()
    for event in nagano.accept("owner-b"):
        nagano.apply(event)
    with pytest.raises(Forbidden):
        nagano.receive_introduction("r1", {"display_name": "Aiko"}, "", "Yui", None)  # it receives job requests only
    sent = nagano.send_introduction("r2", {"display_name": "Mio"}, "weaver", "Owner", None)
    nagano.apply(sent[0])
    with pytest.raises(Invalid):
        nagano.receive_introduction_outcome("r-unknown", True, "")
    assert len(nagano.receive_introduction_outcome("r2", True, "")) == 1

    referral = Referral.from_events(Referral().make("r2", "cb", "owner-b", MakeReferral(
        referred_id="mio", to_partnership_id="p1")))
    events = referral.record_partner_outcome("partner:Ringo", True, "great")
    assert [type(e).__name__ for e in events] == ["ReferralAccepted", "ReferralOutcomeRecorded"]
    assert isinstance(events[1], ReferralOutcomeRecorded) and events[1].recorded_by == "partner:Ringo"
    for event in events:
        referral.apply(event)
    assert referral.record_partner_outcome("partner:Ringo", False, "") == [], "recorded once"
    with pytest.raises(ValueError):
        MakeReferral(referred_id="mio", to_partnership_id="p1", to_member_id="ken")
    assert IntroductionOutcome(worked=True).note == ""
