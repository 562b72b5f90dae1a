"""Wiring of the referrals service: introductions, job requests, 360° feedback and reputation."""

from __future__ import annotations

from fastapi import FastAPI

from kizuna.personal_data import personal_data_router
from kizuna.service import ServiceSpec, create_service
from kizuna.settings import ServiceSettings

from .api import router
from .consumers import ERASURE, SUBSCRIPTIONS
from .offerings import api as offerings_api
from .offerings import handlers as offerings_handlers
from .offerings import projections as offerings_projections
from .partners import api as partners_api
from .partners import consumers as partners_consumers
from .partners import projections as partners_projections
from .projections import INLINE_PROJECTIONS, MIGRATIONS, PERSONAL_DATA, READ_MODEL_TABLES

SPEC = ServiceSpec(
    name="referrals",
    title="Kizuna referrals",
    description="Members introduce people they trust, post job requests to their own community first, and give "
                "one another 360° feedback that builds each member's reputation inside the community.",
    routers=[router, offerings_api.router, partners_api.router, personal_data_router("referrals", PERSONAL_DATA)],
    migrations=[*MIGRATIONS, *offerings_projections.MIGRATIONS, *partners_projections.MIGRATIONS],
    inline_projections=[*INLINE_PROJECTIONS, *offerings_projections.INLINE_PROJECTIONS,
                        partners_projections.apply_job_event],
    subscriptions=[*SUBSCRIPTIONS, partners_consumers.PROJECTION],
    reactions=[partners_consumers.partner_offer_reaction],
    read_model_tables=[*READ_MODEL_TABLES, *offerings_projections.READ_MODEL_TABLES,
                       *partners_projections.READ_MODEL_TABLES],
    background=[offerings_handlers.settle_due_offerings],
    erasure=ERASURE,
    openapi_tags=[
        {"name": "jobs", "description": "Community-sourced job requests and matching"},
        {"name": "feedback", "description": "360° feedback and reputation"},
        {"name": "referrals", "description": "Introductions and the trust graph"},
        {"name": "offerings", "description": "Pre-commitment offerings: commitments, help shifts, deliveries"},
    ],
)


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service(SPEC, settings or ServiceSettings(service_name="referrals"))
