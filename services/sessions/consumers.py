"""The roster: who belongs to which community, with which role, learned from the members service's events."""

from __future__ import annotations

from kizuna.consumer import Subscription
from kizuna.roster import RosterFollower

ROSTER = RosterFollower("roster")
SUBSCRIPTIONS = [Subscription("sessions-roster", ["*.members.>"], ROSTER)]
