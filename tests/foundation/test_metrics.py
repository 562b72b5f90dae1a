"""/metrics on every service while it works (issue 19, item 9): the figures an operator alerts on are
there and move — requests by route and status, relay lag, consumers' pending messages, dead letters,
the database pool and the gateway's federation outbox — and a metrics token, when set, is required."""

from __future__ import annotations

import re

import httpx

from tests.reliability.harness import found
from tests.support import SERVICES, Ecosystem, eventually

METRICS_TOKEN = "scrape-me"


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus text exposition, or None when it is absent."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            return float(match.group(2))
    return None


async def test_every_service_exposes_figures_that_move(ecosystem: Ecosystem) -> None:
    eco = ecosystem
    eco.start(*SERVICES, KIZUNA_METRICS_TOKEN=METRICS_TOKEN)
    scrape_headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    async with httpx.AsyncClient(timeout=15) as http:
        for service in SERVICES:
            refused = await http.get(f"{eco.url(service)}/metrics")
            assert refused.status_code == 401, service
        gateway = eco.url("gateway")
        before = (await http.get(f"{gateway}/metrics", headers=scrape_headers)).text
        cid, _ = await found(http.__class__(base_url=gateway, timeout=15), eco, "Metrics")
        for name in ("Aiko", "Ken", "Sora"):
            joined = await http.post(f"{gateway}/v1/communities/{cid}/members", headers=eco.operator_headers(),
                                     json={"display_name": name})
            assert joined.status_code == 201, joined.text
        route = "/communities/{community_id}/members"
        members = (await http.get(f"{eco.url('members')}/metrics", headers=scrape_headers)).text
        assert sample(members, "kizuna_http_requests_total", route=route, method="POST", status="201") == 3
        assert sample(members, "kizuna_http_request_duration_seconds_count", route=route, method="POST") == 3
        assert sample(members, "kizuna_db_pool_connections", state="max") == 10
        after = (await http.get(f"{gateway}/metrics", headers=scrape_headers)).text
        forwarded = {"route": "/v1/{path:path}", "method": "POST", "status": "201"}
        assert (sample(after, "kizuna_http_requests_total", **forwarded) or 0) > (
            sample(before, "kizuna_http_requests_total", **forwarded) or 0)

        async def caught_up() -> bool:
            text = (await http.get(f"{eco.url('members')}/metrics", headers=scrape_headers)).text
            gateway_text = (await http.get(f"{gateway}/metrics", headers=scrape_headers)).text
            return (sample(text, "kizuna_relay_lag_events") == 0 and sample(text, "kizuna_bus_connected") == 1
                    and sample(gateway_text, "kizuna_consumer_pending_messages",
                               durable=f"{eco.prefix}-gateway-directory") == 0)

        assert await eventually(caught_up)
        gateway_text = (await http.get(f"{gateway}/metrics", headers=scrape_headers)).text
        assert sample(gateway_text, "kizuna_dead_letters", consumer="gateway-directory") == 0
        assert sample(gateway_text, "kizuna_consumer_redelivered_messages",
                      durable=f"{eco.prefix}-gateway-directory") == 0
        assert "# TYPE kizuna_federation_outbox_messages gauge" in gateway_text
