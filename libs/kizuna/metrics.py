"""Metrics an operator can scrape: ``GET /metrics`` on every service, in the Prometheus text format.

HTTP requests are counted by route template (never the raw path: ids would make every request a series
of its own) and status, with latency histograms. Everything else is read when Prometheus scrapes, so a
figure is never older than the scrape and nothing runs between scrapes: how far the outbox relay is
behind the event store, each durable consumer's pending, unacknowledged and redelivered messages, the
dead letters per consumer, the database pool, and whatever a service adds (the gateway: its federation
outbox per partnership and status). When ``KIZUNA_METRICS_TOKEN`` is set the endpoint wants it as a
bearer token (docs/operations.md, "What to watch"; alert rules and a dashboard in deploy/prometheus and
deploy/grafana).
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import Unauthorized

if TYPE_CHECKING:
    from .service import Runtime

log = logging.getLogger("kizuna.metrics")
RELAY_LAG_CAP = 1_000_000  # events behind are counted up to this (a count past it costs a long scan)
disable_created_metrics()  # a *_created series per counter only doubles what Prometheus stores
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """One registry per app, so several services can live in one process (the tests do)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.registry = CollectorRegistry()
        self.requests = Counter("kizuna_http_requests", "HTTP requests answered", ["service", "method", "route",
                                "status"], registry=self.registry)
        self.latency = Histogram("kizuna_http_request_duration_seconds", "Time to answer an HTTP request",
                                 ["service", "method", "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.relay_lag = Gauge("kizuna_relay_lag_events", "Events in the store not yet published to the bus",
                               ["service"], registry=self.registry)
        self.pending = Gauge("kizuna_consumer_pending_messages", "Messages on the bus not yet delivered to "
                             "the durable consumer", ["service", "durable"], registry=self.registry)
        self.unacknowledged = Gauge("kizuna_consumer_ack_pending_messages", "Messages delivered, not yet "
                                    "acknowledged", ["service", "durable"], registry=self.registry)
        self.redelivered = Gauge("kizuna_consumer_redelivered_messages", "Messages delivered more than once and "
                                 "not yet acknowledged", ["service", "durable"], registry=self.registry)
        self.dead_letters = Gauge("kizuna_dead_letters", "Messages in the dead-letter stream, per consumer",
                                  ["service", "consumer"], registry=self.registry)
        self.pool = Gauge("kizuna_db_pool_connections", "Database pool connections by state",
                          ["service", "state"], registry=self.registry)
        self.bus_connected = Gauge("kizuna_bus_connected", "1 while connected to NATS JetStream", ["service"],
                                   registry=self.registry)
        self._gauges: dict[str, Gauge] = {}

    def gauge(self, name: str, documentation: str, labels: Sequence[str]) -> Gauge:
        """A service's own gauge, made once (samplers call this on every scrape)."""
        if name not in self._gauges:
            self._gauges[name] = Gauge(name, documentation, labels, registry=self.registry)
        return self._gauges[name]

    async def sample(self, runtime: Runtime | None,
                     samplers: Sequence[Callable[[Runtime, Metrics], Awaitable[None]]]) -> None:
        if runtime is None:
            return
        pool = runtime.pool
        self.pool.labels(self.service, "in_use").set(pool.get_size() - pool.get_idle_size())
        self.pool.labels(self.service, "idle").set(pool.get_idle_size())
        self.pool.labels(self.service, "max").set(pool.get_max_size())
        connected = runtime.nc is not None and runtime.nc.is_connected
        self.bus_connected.labels(self.service).set(1 if connected else 0)
        figures: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("relay", lambda: self._relay(runtime)), ("consumers", lambda: self._consumers(runtime)),
            *((getattr(s, "__name__", "sampler"), lambda s=s: s(runtime, self)) for s in samplers)]
        for name, read in figures:
            try:
                await read()
            except Exception as error:  # a figure that cannot be read now is left as it was, and said so
                log.warning("metric not sampled", extra={"metric": name, "error": repr(error)})

    async def _relay(self, runtime: Runtime) -> None:
        checkpoint = await runtime.store.load_checkpoint(runtime.relay.checkpoint_name if runtime.relay else "relay")
        async with runtime.pool.acquire() as conn:
            behind = await conn.fetchval(
                "SELECT count(*) FROM (SELECT 1 FROM events WHERE (transaction_id, global_position) > "
                "($1::text::xid8, $2) LIMIT $3) behind",
                str(checkpoint.transaction_id), checkpoint.global_position, RELAY_LAG_CAP)
        self.relay_lag.labels(self.service).set(behind)

    async def _consumers(self, runtime: Runtime) -> None:
        if runtime.js is None:
            return
        for consumer in runtime.consumers:
            info = await runtime.js.consumer_info(consumer.stream, consumer.durable)
            self.pending.labels(self.service, consumer.durable).set(info.num_pending or 0)
            self.unacknowledged.labels(self.service, consumer.durable).set(info.num_ack_pending or 0)
            self.redelivered.labels(self.service, consumer.durable).set(info.num_redelivered or 0)
        settings = runtime.settings
        dlq = await runtime.js.stream_info(f"{settings.stream_name}_DLQ",
                                           subjects_filter=f"{settings.subject_prefix}_dlq.>")
        subjects: dict[str, int] = dlq.state.subjects or {}
        for consumer in runtime.consumers:
            subject = f"{settings.subject_prefix}_dlq.{consumer.subscription.name}"
            self.dead_letters.labels(self.service, consumer.subscription.name).set(subjects.get(subject, 0))


class MetricsMiddleware:
    """Counts and times every HTTP request by the route template it matched."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/metrics":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            self.metrics.requests.labels(self.metrics.service, method, route, str(status)).inc()
            self.metrics.latency.labels(self.metrics.service, method, route).observe(time.perf_counter() - started)


def metrics_router(samplers: Sequence[Callable[[Runtime, Metrics], Awaitable[None]]]) -> APIRouter:
    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    async def metrics(request: Request) -> Response:
        token: str = request.app.state.settings.metrics_token
        if token:
            given = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), token.encode()):
                raise Unauthorized("the metrics token is required", slug="missing-token")
        registry: Metrics = request.app.state.metrics
        await registry.sample(getattr(request.app.state, "runtime", None), samplers)
        return Response(generate_latest(registry.registry), media_type=CONTENT_TYPE_LATEST)

    return router
