"""Wiring of the sessions service: sessions, calendar, ties and goals."""

from __future__ import annotations

from fastapi import FastAPI

from kizuna.personal_data import personal_data_router
from kizuna.service import ServiceSpec, create_service
from kizuna.settings import ServiceSettings

from .api import router
from .consumers import ERASURE, SUBSCRIPTIONS
from .projections import INLINE_PROJECTIONS, MIGRATIONS, PERSONAL_DATA, READ_MODEL_TABLES

SPEC = ServiceSpec(
    name="sessions",
    title="Kizuna sessions",
    description="Group coaching and shared experiences: sessions with capacity and waitlist, attendance and the "
                "ties it builds, iCalendar export, and personal goals with KPI check-ins.",
    routers=[router, personal_data_router("sessions", PERSONAL_DATA)],
    migrations=MIGRATIONS,
    inline_projections=INLINE_PROJECTIONS,
    subscriptions=SUBSCRIPTIONS,
    read_model_tables=READ_MODEL_TABLES,
    erasure=ERASURE,
    openapi_tags=[
        {"name": "sessions", "description": "Scheduling, registration, waitlist and attendance"},
        {"name": "calendar", "description": "iCalendar export"},
        {"name": "ties", "description": "Shared experiences between members"},
        {"name": "goals", "description": "Personal goals, KPIs and check-ins"},
    ],
)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service(SPEC, settings or ServiceSettings(service_name="sessions"))
