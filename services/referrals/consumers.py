"""The roster: who belongs to which community, with which skills and vector, from the members service's events."""

from __future__ import annotations

from kizuna.consumer import Subscription
from kizuna.roster import RosterFollower

ROSTER = RosterFollower("roster", profile=True)
SUBSCRIPTIONS = [Subscription("referrals-roster", ["*.members.>"], ROSTER)]
