"""The roster: who belongs to which community, with which skills and vector, from the members service's events."""

from __future__ import annotations

from kizuna.consumer import Subscription
from kizuna.erasure import Scrub
from kizuna.personal import ERASED_NAME
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
]
