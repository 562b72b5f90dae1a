"""Wiring of the members service: communities, membership, roles and profiles."""

from __future__ import annotations

from fastapi import FastAPI

from kizuna.service import ServiceSpec, create_service
from kizuna.settings import ServiceSettings

from .api import router
from .projections import INLINE_PROJECTIONS, MIGRATIONS, READ_MODEL_TABLES

SPEC = ServiceSpec(
    name="members",
    title="Kizuna members",
    description="Communities, their members, roles and profiles, and the member cap that keeps a community "
                "small enough for everyone to know everyone.",
    routers=[router],
    migrations=MIGRATIONS,
    inline_projections=INLINE_PROJECTIONS,
    read_model_tables=READ_MODEL_TABLES,
    openapi_tags=[
        {"name": "communities", "description": "Founding, caps and the ecosystem view"},
        {"name": "members", "description": "Joining, leaving, the directory and the waitlist"},
        {"name": "roles", "description": "Facilitators and ownership"},
        {"name": "profiles", "description": "Vector, skills, values and sharing consent"},
    ],
)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service(SPEC, settings or ServiceSettings(service_name="members"))
