"""Wiring of the members service: communities, membership, roles and profiles."""

from __future__ import annotations

import asyncio
import logging

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kizuna.handling import CommandContext
from kizuna.personal_data import personal_data_router
from kizuna.service import Runtime, ServiceSpec, create_service
from kizuna.settings import ServiceSettings

from . import handlers, projections
from .api import router
from .projections import ERASURE, INLINE_PROJECTIONS, MIGRATIONS, PERSONAL_DATA, READ_MODEL_TABLES, replay_partition

log = logging.getLogger("kizuna.members")


class MembersSettings(BaseSettings):
    """Settings only the members service reads (``KIZUNA_`` prefix like the shared ones)."""

    model_config = SettingsConfigDict(env_prefix="KIZUNA_", extra="ignore")
    offer_sweep_seconds: float = Field(15.0, gt=0, description="How often due place offers are expired and passed on.")


async def expire_due_offers(runtime: Runtime) -> None:
    """Expires place offers past their time through the ordinary command, so each place passes to the
    next person waiting. Idempotent: two replicas sweeping at once append nothing twice."""
    interval = MembersSettings().offer_sweep_seconds
    while True:
        at = handlers.now()
        async with runtime.pool.acquire() as conn:
            due = await projections.communities_with_due_offers(conn, at)
        for community_id in due:
            expired = await handlers.expire_offers(runtime.store, community_id,
                                                   CommandContext(actor="system:offer-expiry",
                                                                  community_id=community_id), at)
            log.info("place offers expired", extra={"community_id": community_id, "expired": expired})
        await asyncio.sleep(interval)

SPEC = ServiceSpec(
    name="members",
    title="Kizuna members",
    description="Communities, their members, roles and profiles, and the member cap that keeps a community "
                "small enough for everyone to know everyone.",
    routers=[router, personal_data_router("members", PERSONAL_DATA)],
    migrations=MIGRATIONS,
    inline_projections=INLINE_PROJECTIONS,
    replay_partition=replay_partition,
    read_model_tables=READ_MODEL_TABLES,
    openapi_tags=[
        {"name": "communities", "description": "Founding, caps and the ecosystem view"},
        {"name": "members", "description": "Joining, leaving, the directory and the waitlist"},
        {"name": "roles", "description": "Facilitators and ownership"},
        {"name": "profiles", "description": "Vector, skills, values and sharing consent"},
        {"name": "admission", "description": "Admission policy, applications and invitations"},
        {"name": "waitlist", "description": "Place offers to people on the waitlist"},
        {"name": "linking", "description": "Sister communities and the ecosystem view"},
    ],
    background=[expire_due_offers],
    erasure=ERASURE,
)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service(SPEC, settings or ServiceSettings(service_name="members"))
