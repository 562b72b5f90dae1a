"""The gateway's own figures for /metrics (libs/kizuna/metrics.py): its federation outbox."""

from __future__ import annotations

from kizuna.metrics import Metrics
from kizuna.service import Runtime


async def federation_outbox(runtime: Runtime, metrics: Metrics) -> None:
    """Messages to partner deployments per partnership and status (pending, delivered, rejected, dead)."""
    gauge = metrics.gauge("kizuna_federation_outbox_messages", "Federation messages per partnership and status",
                          ["partnership_id", "status"])
    async with runtime.pool.acquire() as conn:
        rows = await conn.fetch("SELECT partnership_id, status, count(*) AS n FROM federation_outbox "
                                "GROUP BY partnership_id, status")
    gauge.clear()  # a partnership whose messages are all gone leaves no stale series
    for row in rows:
        gauge.labels(row["partnership_id"], row["status"]).set(row["n"])
