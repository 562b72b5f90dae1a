"""Wiring of the notifications service: what people hear about, by email and in their inbox."""

from __future__ import annotations

from fastapi import FastAPI

from kizuna.erasure import Scrub
from kizuna.personal_data import personal_data_router
from kizuna.service import ServiceSpec, create_service
from kizuna.settings import ServiceSettings

from .api import router
from .consumers import ROSTER, SUBSCRIPTIONS, raising_reaction
from .digest import send_due_digests
from .mailer import send_due_mail
from .projections import INLINE_PROJECTIONS, MIGRATIONS, PERSONAL_DATA, READ_MODEL_TABLES
from .reminders import send_reminders
from .webhooks import deliver_webhooks

SPEC = ServiceSpec(
    name="notifications",
    title="Kizuna notifications",
    description="What needs a person reaches them: an inbox per member, email in their language and time zone "
                "(with calendar updates for moved sessions), per-kind preferences and one-click unsubscribe; "
                "and what systems asked for: a community's events as signed webhooks (Standard Webhooks).",
    routers=[router, personal_data_router("notifications", PERSONAL_DATA)],
    migrations=MIGRATIONS,
    inline_projections=INLINE_PROJECTIONS,
    subscriptions=SUBSCRIPTIONS,
    reactions=[raising_reaction],
    read_model_tables=READ_MODEL_TABLES,
    background=[send_due_mail, send_due_digests, deliver_webhooks, send_reminders],
    # An erased member's name, goal words and skills leave the tables kept for messages, their inbox's words
    # leave with them, and what notifications to others quoted of them goes (names are put in from the
    # roster when composed, so they read "erased member"; kizuna.erasure).
    erasure=[ROSTER.erasure(), Scrub("known_goals", "member_id", {"statement": ""}),
             Scrub("known_member_skills", "member_id", {"skills": []}),
             Scrub("notifications_view", "member_id", {"facts": "{}"}),
             Scrub("notifications_view", "quoted_from", {"quoted": "{}"}),
             # An erased person's address leaves the directory (so nothing is mailed to them again), and what was
             # kept only for them goes: unsubscribe links, digests waiting and their retries. Their preferences
             # stream stays, unsealed: kinds, a language, a zone and hours say nothing of who they were once
             # identity has forgotten the person id (docs/data-rights.md).
             Scrub("people", "person_id", {"email": ""}, kind="person"),
             Scrub("unsubscribe_links", "person_id", kind="person", delete=True),
             Scrub("digest_queue", "person_id", kind="person", delete=True),
             Scrub("digest_attempts", "person_id", kind="person", delete=True)],
    public_paths=("/healthz", "/readyz", "/unsubscribe/"),
    openapi_tags=[{"name": "notifications", "description": "A member's inbox and a person's preferences"},
                  {"name": "webhooks", "description": "A community's events, signed, to systems that ask"}],
)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service(SPEC, settings or ServiceSettings(service_name="notifications"))
