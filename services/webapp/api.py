"""The member app's pages (docs/member-app.md): server-rendered, every action a plain form post (no script is
needed), in the person's language, laid out for a phone first — one module per part of a community's life.

Each page is the signed-in person looking at one community through the public API (``client.PersonApi``);
what they may see and do is the API's decision, never the page's. A form post carries the session's CSRF
token and must come from this site. A refusal is shown on the page it came from, in the person's language,
with the field it names; nothing is half-done (the API decided it whole).
"""

from __future__ import annotations

from fastapi import APIRouter

from . import (
    assets,
    directory,
    front_door,
    goals,
    health,
    home,
    introductions,
    jobs,
    live,
    my_data,
    notifications,
    offerings,
    partners,
    profile,
    sessions,
    stewarding,
)

router = APIRouter(include_in_schema=False)
for part in (home, jobs, introductions, profile, sessions, goals, offerings, directory, stewarding, health,
             partners, notifications, my_data, live, assets):
    router.include_router(part.router, prefix="/app")
# The front door keeps the addresses people were given in join links, invitations and claim codes.
router.include_router(front_door.router)
