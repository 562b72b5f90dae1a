"""The roster: who belongs to which community, with which role, learned from the members service's events."""

from __future__ import annotations

from kizuna.consumer import Subscription
from kizuna.erasure import Scrub
from kizuna.personal import ERASED_NAME
from kizuna.roster import RosterFollower

ROSTER = RosterFollower("roster")
SUBSCRIPTIONS = [Subscription("sessions-roster", ["*.members.>"], ROSTER)]
# The copies of a member's words and name these read models take, set to their placeholders when the member is
# erased (kizuna.erasure): a goal's snapshot is the member's (its revisions and check-ins with it); a session's
# lists people by id, with a name where it shows one.
ERASURE = [
    ROSTER.erasure(),
    Scrub("goals_view", "member_id", json_column="state",
          json_values={"statement": "", "motivation": "", "note": "", "reason": ""}),
    Scrub("sessions_view", "session_id", json_column="state", json_values={"display_name": ERASED_NAME}),
]
