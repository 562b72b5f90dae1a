"""The roster: who belongs to which community, with which skills and vector, from the members service's events."""

from __future__ import annotations

import json

from kizuna.consumer import Subscription
from kizuna.erasure import Scrub
from kizuna.personal import ERASED_CARD, ERASED_NAME, PARTNER_MEMBER
from kizuna.roster import RosterFollower

ROSTER = RosterFollower("roster", profile=True)
SUBSCRIPTIONS = [Subscription("referrals-roster", ["*.members.>"], ROSTER)]
# The copies of a member's words these read models take, set to their placeholders when the member is erased
# (kizuna.erasure): the jobs, feedback and introductions stay, with their figures.
JOB_OFFER_WORDS = {"why_next_step": "", "note": "", "display_name": ERASED_NAME}
ERASURE = [
    ROSTER.erasure(),
    Scrub("jobs", "requester_id", {"description": ""}),
    Scrub("jobs", "job_id", json_column="offers", json_values=JOB_OFFER_WORDS),
    Scrub("feedback", "giver_id", {"comment": ""}),
    Scrub("referrals", "referrer_id", {"note": ""}),
    # offerings: what committed members wrote (a withdrawal's or a declined change's reason, lead-user feedback)
    Scrub("offering_commitments", "member_id", {"reason": ""}),
    Scrub("offering_feedback", "member_id", {"good": "", "improve": ""}),
    Scrub("offerings_view", "offering_id", json_column="state", json_values={"reason": "", "good": "", "improve": ""}),
    # partner members (another deployment's, erased there: PartnerMemberErased) — their cards and words here
    Scrub("jobs", "job_id", kind=PARTNER_MEMBER, json_column="partner_offers", json_subject_key="partner_member",
          json_values={"card": ERASED_CARD}),
    Scrub("jobs", "job_id", kind=PARTNER_MEMBER, json_column="partner_offers", json_subject_key="partner_author",
          json_values={"note": "", "referred_by_name": ERASED_NAME}),
    Scrub("partner_introductions", "partner_member", {"card": json.dumps(ERASED_CARD)}, kind=PARTNER_MEMBER),
    Scrub("partner_introductions", "partner_author", {"note": "", "introduced_by_name": ERASED_NAME},
          kind=PARTNER_MEMBER),
    Scrub("offerings_view", "offering_id", kind=PARTNER_MEMBER, json_column="state", json_subject_key="partner_member",
          json_values={"display_name": ERASED_NAME}),
]
