"""The export job: gathers each planned part in turn, keeping each as it arrives (a restart goes on from the
next), then writes the JSON and readable documents; and deletes exports whose time is up.

One replica works at a time: a session advisory lock on a pool connection, taken for one round and released
after it (no transaction stays open while services are asked, so nothing holds back the relays' snapshot). A
replica that dies loses its connection and with it the lock; the next round of another replica goes on."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kizuna.handling import CommandContext, to_new_events
from kizuna.personal_data import Section, personal_data
from kizuna.service import Runtime

from ..proxy import in_turn
from .domain import KEPT_DAYS, ExportCompleted, ExportDeleted, Step, document
from .readable import render

log = logging.getLogger("kizuna.gateway.exports")
LOCK = 0x6B697A756E61_23  # one replica at a time gathers exports
# What the gateway itself holds about a member: its directory's copy of who they are. (Tokens issued to them
# and what crossed to partners are events, found by the events that name them.)
GATEWAY_SECTIONS = [Section("directory", "SELECT to_jsonb(t) AS row FROM directory t "
                                         "WHERE community_id = $1 AND member_id = $2")]

Fetch = Callable[[Step, str], Awaitable[dict[str, Any]]]  # a step of the person's export → its part


class ExportSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KIZUNA_EXPORT_", extra="ignore")
    poll_seconds: float = Field(1.0, gt=0, description="Gateway: how often the export job looks for work.")
    step_delay_seconds: float = Field(0.0, ge=0, description="Gateway: a pause after each part gathered (tests "
                                      "use it to watch progress; 0 in production).")
    kept_days: float = Field(float(KEPT_DAYS), gt=0, description="Gateway: days an export can be downloaded "
                                                                  "before it is deleted.")


class StepFailed(Exception):
    """A part could not be gathered this time (a service away or refusing): tried again next round."""


async def run_exports(runtime: Runtime, fetch: Fetch, settings: ExportSettings | None = None) -> None:
    settings = settings or ExportSettings()
    while True:
        try:
            await work_once(runtime, fetch, settings)
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("exports not worked on", extra={"error": repr(error)})
        await asyncio.sleep(settings.poll_seconds)


async def work_once(runtime: Runtime, fetch: Fetch, settings: ExportSettings) -> None:
    async with runtime.pool.acquire() as lock:
        if not await lock.fetchval("SELECT pg_try_advisory_lock($1)", LOCK):
            return
        try:
            await _delete_expired(runtime)
            async with runtime.pool.acquire() as conn:
                running = await conn.fetch("SELECT export_id FROM exports WHERE status = 'running' "
                                           "ORDER BY requested_at")
            for row in running:
                await _advance(runtime, str(row["export_id"]), fetch, settings)
        finally:
            await lock.execute("SELECT pg_advisory_unlock($1)", LOCK)


async def _advance(runtime: Runtime, export_id: str, fetch: Fetch, settings: ExportSettings) -> None:
    async with runtime.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT person_id, language, steps FROM exports WHERE export_id = $1", export_id)
        done = {r["step"] for r in await conn.fetch("SELECT step FROM export_parts WHERE export_id = $1", export_id)}
    if row is None:
        return
    steps = [Step.from_json(step) for step in json.loads(row["steps"])]
    for number, step in enumerate(steps):
        if number in done:
            continue
        try:
            part = await fetch(step, str(row["person_id"]))
        except StepFailed as failed:
            async with runtime.pool.acquire() as conn:
                await conn.execute("UPDATE exports SET last_error = $2 WHERE export_id = $1", export_id, str(failed))
            return
        async with runtime.pool.acquire() as conn:
            await conn.execute("INSERT INTO export_parts (export_id, step, part) VALUES ($1, $2, $3::jsonb) "
                               "ON CONFLICT DO NOTHING", export_id, number, json.dumps(part))
            await conn.execute("UPDATE exports SET last_error = NULL WHERE export_id = $1", export_id)
        if settings.step_delay_seconds:
            await asyncio.sleep(settings.step_delay_seconds)
    await _finish(runtime, export_id, str(row["person_id"]), str(row["language"]), steps, settings)


async def _finish(runtime: Runtime, export_id: str, person_id: str, language: str, steps: list[Step],
                  settings: ExportSettings) -> None:
    now = datetime.now(UTC)
    async with runtime.pool.acquire() as conn:
        parts = {r["step"]: json.loads(r["part"]) for r in await conn.fetch(
            "SELECT step, part FROM export_parts WHERE export_id = $1", export_id)}
    whole = document(export_id, person_id, language, now.isoformat(), steps, parts)
    html = render(whole, language)
    event = ExportCompleted(export_id=export_id, person_id=person_id)
    metadata = CommandContext(actor="gateway:exports").metadata(None)
    async with runtime.store.unit_of_work() as conn:
        finished = await conn.fetchval(
            "UPDATE exports SET status = 'ready', document = $2::jsonb, html = $3, completed_at = $4, "
            "expires_at = $5 WHERE export_id = $1 AND status = 'running' RETURNING export_id",
            export_id, json.dumps(whole), html, now, now + timedelta(days=settings.kept_days))
        if finished is not None:
            await runtime.store.append(f"export-{export_id}", to_new_events([event], metadata), connection=conn)
    log.info("export ready", extra={"export_id": export_id, "steps": len(steps)})


async def _delete_expired(runtime: Runtime) -> None:
    metadata = CommandContext(actor="gateway:exports").metadata(None)
    async with runtime.store.unit_of_work() as conn:
        gone = await conn.fetch("DELETE FROM exports WHERE expires_at < now() RETURNING export_id, person_id")
        for row in gone:
            event = ExportDeleted(export_id=row["export_id"], person_id=row["person_id"], reason="expired")
            await runtime.store.append(f"export-{row['export_id']}", to_new_events([event], metadata),
                                       connection=conn)


def fetcher(runtime: Runtime, http: httpx.AsyncClient, services: dict[str, list[str]], identity: list[str],
            token: Callable[[], str], timeout: float) -> Fetch:
    """How each part is gathered: identity's and the services' internal routes with a short operator token
    the gateway signs; the gateway's own part from its own database."""

    async def ask(replicas: list[str], path: str, what: str) -> dict[str, Any]:
        for base in in_turn(replicas):
            try:
                answer = await http.get(f"{base}{path}", headers={"authorization": f"Bearer {token()}"},
                                        timeout=timeout)
            except httpx.HTTPError:
                continue
            if answer.status_code == 200:
                return dict(answer.json())
            raise StepFailed(f"{what} answered {answer.status_code}")
        raise StepFailed(f"{what} is not reachable")

    async def fetch(step: Step, person_id: str) -> dict[str, Any]:
        if step.service == "identity":
            return await ask(identity, f"/internal/people/{person_id}/personal-data", "identity")
        if step.community_id is None:  # a service's part about the person themself (domain.PERSON_SERVICES)
            return await ask(services.get(step.service, []), f"/internal/people/{person_id}/personal-data",
                             step.service)
        assert step.community_id is not None and step.member_id is not None  # noqa: S101 - planned that way
        if step.service == "gateway":
            return await personal_data(runtime.pool, runtime.store, "gateway", GATEWAY_SECTIONS,
                                       step.community_id, step.member_id)
        return await ask(services.get(step.service, []),
                         f"/internal/communities/{step.community_id}/members/{step.member_id}/personal-data",
                         step.service)

    return fetch
