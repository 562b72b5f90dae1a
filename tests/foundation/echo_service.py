"""A minimal service built on the shared factory, for foundation tests that need a real process."""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, Depends, Request

from kizuna.auth import Principal, principal
from kizuna.consumer import Subscription
from kizuna.envelope import Envelope
from kizuna.eventstore import NewEvent
from kizuna.handling import CommandContext
from kizuna.serve import serve
from kizuna.service import Migration, ServiceSpec, create_service, runtime_of
from kizuna.settings import ServiceSettings

router = APIRouter()


@router.post("/communities/{community_id}/echoes", status_code=201)
async def echo(community_id: str, request: Request, who: Principal = Depends(principal)) -> dict[str, int]:
    ctx = CommandContext.from_request(request, who, community_id)
    [event] = await runtime_of(request).store.append(
        f"echo-{community_id}", [NewEvent("EchoRequested", {"said": "hello"}, ctx.metadata())]
    )
    return {"position": event.global_position}


@router.get("/echoes/heard")
async def heard(request: Request) -> dict[str, int]:
    async with runtime_of(request).pool.acquire() as conn:
        return {"count": await conn.fetchval("SELECT count(*) FROM heard")}


async def hear(conn: asyncpg.Connection, envelope: Envelope) -> None:
    await conn.execute("INSERT INTO heard (event_id) VALUES ($1)", envelope.id)


SPEC = ServiceSpec(
    name="echo", title="Echo", description="Foundation test service", routers=[router],
    migrations=[Migration("echo_0001", "CREATE TABLE heard (event_id uuid PRIMARY KEY)")],
    subscriptions=[Subscription("echo-hearer", ["*.echo.>"], hear)],
)

if __name__ == "__main__":
    settings = ServiceSettings(service_name="echo")
    serve(create_service(SPEC, settings), settings)
