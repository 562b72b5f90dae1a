"""Pledges from partner communities' members become commitments like any other, or recorded refusals."""

from __future__ import annotations

from services.referrals.offerings.domain import (
    PartnerPledgeRecorded,
    PartnerPledgeRefused,
    SharesCommitted,
    partner_key,
)
from tests.referrals.test_offerings_domain import AFTER, NOW, committed, published, run


def pledge(pledge_id: str, shares: int) -> PartnerPledgeRecorded:
    return PartnerPledgeRecorded(community_id="c1", offering_id="o1", pledge_id=pledge_id, partnership_id="p1",
                                 from_community_name="Kaki growers", card={"display_name": "Mio"}, shares=shares)


def test_a_partner_pledge_commits_shares_under_the_same_bound() -> None:
    offering = committed({"ken": 7}, visibility="partners")
    events = run(offering, offering.pledge_from_partner(pledge("pl1", 2), NOW))
    assert [type(e).__name__ for e in events] == [PartnerPledgeRecorded.__name__, SharesCommitted.__name__]
    assert offering.commitments[partner_key("pl1")] == 2 and offering.shares_left == 1
    assert offering.pledge_from_partner(pledge("pl1", 2), NOW) == [], "a redelivered pledge changes nothing"
    refused = run(offering, offering.pledge_from_partner(pledge("pl2", 2), NOW))
    assert isinstance(refused[0], PartnerPledgeRefused) and refused[0].shares_left == 1
    assert "only 1 of 10 shares are left" in refused[0].reason
    view = offering.snapshot()
    entry = next(c for c in view["commitments"] if c["member_id"] == partner_key("pl1"))
    assert entry["display_name"] == "Mio" and entry["from_community"] == "Kaki growers"


def test_pledges_to_a_community_only_or_closed_offering_are_refused() -> None:
    local = published()
    refused = local.pledge_from_partner(pledge("pl1", 1), NOW)
    assert isinstance(refused[0], PartnerPledgeRefused) and "not shared" in refused[0].reason
    late = published(visibility="partners")
    refused = late.pledge_from_partner(pledge("pl2", 1), AFTER)
    assert isinstance(refused[0], PartnerPledgeRefused) and "closed" in refused[0].reason
