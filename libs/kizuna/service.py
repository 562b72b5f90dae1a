"""One factory for every service's process: the same wiring, health checks and shutdown everywhere.

A service hands over its routers, its read-model migrations, its inline projections (run in the
append's transaction) and its bus subscriptions; the factory connects PostgreSQL and NATS, runs
migrations under an advisory lock (safe when replicas start together), and runs the outbox relay
and the consumers for the life of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi_offline import FastAPIOffline
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from opentelemetry import trace
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import bus, contract
from .auth import Authenticator, load_public_keys
from .consumer import InboxConsumer, Subscription
from .erasure import Scrub, erasure_subscription
from .eventstore import EventStore, InlineProjection, RecordedEvent, append_function_sql, schema_sql
from .logs import configure_logging
from .metrics import Metrics, MetricsMiddleware, metrics_router
from .ordering import APPLIED_VERSIONS_SQL
from .problems import install_problem_handlers
from .relay import OutboxRelay
from .retention import INBOX, Retention, trim_forever
from .settings import ServiceSettings
from .telemetry import configure_tracing, context_from, tracer
from .vault import KeyVault

log = logging.getLogger("kizuna.service")
MIGRATION_LOCK_KEY = 0x4B5A4D4947  # one migrator at a time per database


@dataclass(frozen=True)
class Migration:
    name: str
    sql: str


@dataclass
class ServiceSpec:
    name: str
    title: str
    description: str
    routers: Sequence[APIRouter]
    migrations: Sequence[Migration] = ()
    inline_projections: Sequence[InlineProjection] = ()
    subscriptions: Sequence[Subscription] = ()
    read_model_tables: Sequence[str] = ()
    openapi_tags: Sequence[dict[str, Any]] = ()
    # Subscriptions that act (append to this service's aggregates) rather than project; they need the
    # runtime's store, and a rebuild never replays them.
    reactions: Sequence[Callable[[Runtime], Subscription]] = ()
    # Rebuilds replay own events on several connections when every read-model row an event touches is
    # keyed by what this returns (e.g. its community): events with one key keep their order.
    replay_partition: Callable[[RecordedEvent], str] | None = None
    # Long-running jobs of the service (delivery workers, expiry sweeps), started once the bus is up.
    background: Sequence[Callable[[Runtime], Awaitable[None]]] = ()
    # Tables whose old rows are deleted (libs/kizuna/retention.py); every service has an inbox.
    retention: Sequence[Retention] = (INBOX,)
    # Figures of the service's own read at every scrape of /metrics (libs/kizuna/metrics.py).
    metric_samplers: Sequence[Callable[[Runtime, Metrics], Awaitable[None]]] = ()
    # Paths served without a token (a trailing "/" means everything below); the OpenAPI says so.
    public_paths: Sequence[str] = contract.PUBLIC_PATHS
    # The read-model copies of people's personal data, scrubbed when they are erased (kizuna.erasure).
    erasure: Sequence[Scrub] = ()


@dataclass
class Runtime:
    settings: ServiceSettings
    pool: asyncpg.Pool
    store: EventStore
    vault: KeyVault | None = None
    nc: NATS | None = None
    js: JetStreamContext | None = None
    relay: OutboxRelay | None = None
    consumers: list[InboxConsumer] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def create_pool(database_url: str, *, wait_seconds: float = 60.0, max_size: int = 10,
                      **kwargs: Any) -> asyncpg.Pool:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return await asyncpg.create_pool(database_url, min_size=1, max_size=max_size,
                                             reset=_keep_session, **kwargs)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Pool connections here carry no session state (no SET, LISTEN, prepared cursors or session locks
    outlive a checkout: listeners and lock holders use connections of their own), so the reset query
    asyncpg runs on every release is skipped; asyncpg still rolls back a transaction left open."""


async def migrate(pool: asyncpg.Pool, migrations: Sequence[Migration]) -> None:
    """Apply each named migration once, in order; concurrent starters wait on the lock."""
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            applied = {r["name"] for r in await conn.fetch("SELECT name FROM schema_migrations")}
            store_migrations = [Migration("0000_event_store", schema_sql()),
                                Migration("0001_event_store_append_function", append_function_sql("0001")),
                                Migration("0002_event_store_append_lean", append_function_sql("0002")),
                                Migration("0003_event_store_append_in_order", append_function_sql("0003")),
                                Migration("0003_applied_versions", APPLIED_VERSIONS_SQL),
                                Migration("0004_inbox_by_age", "CREATE INDEX inbox_by_age ON inbox (processed_at)"),
                                Migration("0005_event_schema_version", append_function_sql())]
            for migration in [*store_migrations, *migrations]:
                if migration.name in applied:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", migration.name)
                log.info("migration applied", extra={"migration": migration.name})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


class TracingMiddleware:
    """A server span per request, continuing the caller's ``traceparent`` when there is one.

    Plain ASGI rather than ``BaseHTTPMiddleware``: the request runs in the caller's task and the
    response passes straight through (the benchmark profile showed the wrapper's cost per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in ("/healthz", "/readyz"):
            await self.app(scope, receive, send)
            return
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        method, path = scope["method"], scope["path"]
        with tracer().start_as_current_span(f"{method} {path}", context=context_from(headers),
                                            kind=trace.SpanKind.SERVER) as span:
            span.set_attribute("http.request.method", method)
            span.set_attribute("url.path", path)
            ctx = span.get_span_context()
            traceparent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01".encode()

            async def send_with_trace(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                    message = {**message, "headers": [*message.get("headers", []), (b"traceparent", traceparent)]}
                await send(message)

            await self.app(scope, receive, send_with_trace)


def create_service(spec: ServiceSpec, settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings(service_name=spec.name)
    configure_logging(spec.name, settings.log_level)
    configure_tracing(spec.name, settings.otel_exporter, settings.otel_endpoint, settings.otel_file)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await start_runtime(spec, settings)
        app.state.runtime = runtime
        try:
            yield
        finally:
            await stop_runtime(runtime)

    # FastAPI's own OpenTelemetry instrumentation (on whenever a tracer provider exists) would add a second
    # server span, operation spans and metrics to every request: TracingMiddleware is the one server span,
    # continuing the caller's traceparent and answering with it. Measured: /healthz 3.1k → 6.7k requests/s.
    # /docs and /redoc load Swagger UI and ReDoc from /static-offline-docs (the fastapi-offline package),
    # never from a CDN: an air-gapped operator still gets them.
    app = FastAPIOffline(title=spec.title, description=spec.description, version="1.0.0", lifespan=lifespan,
                         openapi_tags=list(spec.openapi_tags) or None,
                         telemetry={"tracing": False, "metrics": False, "logs": False})
    app.state.settings = settings
    app.state.authenticator = Authenticator(settings.operator_token, load_public_keys(settings.jwt_public_keys))
    app.state.metrics = Metrics(spec.name)
    app.add_middleware(TracingMiddleware)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    install_problem_handlers(app)
    app.include_router(health_router())
    app.include_router(metrics_router(spec.metric_samplers))
    for router in spec.routers:
        app.include_router(router)
    _document_the_real_contract(app, spec)
    return app


def _document_the_real_contract(app: FastAPI, spec: ServiceSpec) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = contract.truthful(FastAPI.openapi(app), spec.public_paths)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


async def start_runtime(spec: ServiceSpec, settings: ServiceSettings) -> Runtime:
    pool = await create_pool(settings.database_url, max_size=settings.database_pool_size)
    await migrate(pool, spec.migrations)
    vault = await KeyVault.open(settings.keys_database_url) if settings.keys_database_url else None
    if vault is None:  # every service of a deployment must share one vault, so none is guessed for it
        log.warning("no KIZUNA_KEYS_DATABASE_URL: personal fields are stored unsealed and nobody can be erased")
    store = EventStore(pool, spec.inline_projections, vault=vault)
    runtime = Runtime(settings=settings, pool=pool, store=store, vault=vault)
    runtime.tasks.append(asyncio.create_task(_connect_bus(runtime, spec)))
    runtime.tasks.append(asyncio.create_task(trim_forever(runtime, spec.retention)))
    return runtime


async def _connect_bus(runtime: Runtime, spec: ServiceSpec) -> None:
    """Connects in the background so the API serves (and /readyz reports) while NATS is away."""
    settings = runtime.settings
    runtime.nc = await bus.connect(settings.nats_url, f"kizuna-{spec.name}", wait_seconds=float("inf"))
    runtime.js = runtime.nc.jetstream()
    while True:
        try:
            await bus.ensure_streams(runtime.js, settings.stream_name, settings.subject_prefix,
                                     settings.jetstream_replicas)
            break
        except Exception as error:
            log.warning("JetStream not ready", extra={"error": repr(error)})
            await asyncio.sleep(0.5)
    runtime.relay = OutboxRelay(
        runtime.store, runtime.js, service=spec.name, prefix=settings.subject_prefix,
        database_url=settings.database_url, batch_size=settings.relay_batch_size,
        idle_seconds=settings.relay_idle_seconds,
    )
    runtime.tasks.append(asyncio.create_task(runtime.relay.run()))
    # Reactions load aggregates through the pool, which cannot see a batch transaction's earlier appends,
    # so they take one message per transaction.
    followers = [(subscription, True) for subscription in spec.subscriptions]
    reactions = [(react(runtime), False) for react in spec.reactions]
    erasure = (erasure_subscription(spec.name, spec.erasure), False)  # every service scrubs its copies
    for subscription, together in [*followers, *reactions, erasure]:
        consumer = InboxConsumer(
            runtime.js, runtime.pool, subscription, stream=settings.stream_name, prefix=settings.subject_prefix,
            max_deliver=settings.consumer_max_deliver, ack_wait=settings.consumer_ack_wait_seconds,
            together=together, vault=runtime.vault,
        )
        runtime.consumers.append(consumer)
        runtime.tasks.append(asyncio.create_task(consumer.run()))
    for job in spec.background:
        runtime.tasks.append(asyncio.create_task(_supervised(job, runtime)))


async def _supervised(job: Callable[[Runtime], Awaitable[None]], runtime: Runtime) -> None:
    """Restart a background job after an error, so one failure never silently stops it."""
    while True:
        try:
            await job(runtime)
            return
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background job failed; restarting", extra={"job": getattr(job, "__name__", "job")})
            await asyncio.sleep(1)


async def stop_runtime(runtime: Runtime) -> None:
    for task in runtime.tasks:
        task.cancel()
    await asyncio.gather(*runtime.tasks, return_exceptions=True)
    if runtime.nc is not None and runtime.nc.is_connected:
        # Close rather than drain: every message is acknowledged explicitly, so there is nothing to
        # flush, and draining waits on open pull subscriptions (e.g. a dashboard's event stream).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runtime.nc.close(), 3)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(runtime.pool.close(), 5)
    if runtime.vault is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(runtime.vault.close(), 5)


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])
    launched_as = os.environ.get("KIZUNA_INSTANCE", "")  # a nonce `make up` gives each process it starts

    @router.get("/healthz", summary="Liveness: the process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Readiness: PostgreSQL and NATS JetStream answer",
                responses={503: {"description": "a dependency is not ready"}})
    async def readyz(request: Request, response: Response) -> dict[str, Any]:
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        checks = {"postgres": False, "nats": False}
        if runtime is not None:
            with contextlib.suppress(Exception):
                async with runtime.pool.acquire(timeout=2) as conn:
                    checks["postgres"] = await conn.fetchval("SELECT true", timeout=2)
            if runtime.js is not None and runtime.nc is not None and runtime.nc.is_connected:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(runtime.js.account_info(), 2)
                    checks["nats"] = True
        ready = all(checks.values())
        if not ready:
            response.status_code = 503
        if launched_as:  # so the launcher knows the process answering on its port is the one it started
            response.headers["kizuna-instance"] = launched_as
        return {"status": "ready" if ready else "not ready", "checks": checks}

    return router


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime
