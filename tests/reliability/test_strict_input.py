"""Strict input (issue 17, holes 7 and 8): an unknown field, or a wall time the clocks skip or show
twice, is a 422 problem naming the field, and nothing is written.

The first test holds every request body of every service (and each object inside one) to
``additionalProperties: false`` in the OpenAPI documents, so a route added later cannot forget it.
"""

from __future__ import annotations

import importlib
from typing import Any

import httpx
import pytest

from kizuna.auth import generate_private_key_pem
from kizuna.settings import ServiceSettings
from tests.reliability.harness import found
from tests.reliability.test_bad_input import event_counts
from tests.support import SERVICES, Ecosystem, eventually

# Valid JSON request bodies, which the cases below spread and misspell.
SESSION: dict[str, Any] = {"kind": "group-coaching", "title": "Cohort", "starts_at": "2031-05-01T19:00:00",
                           "ends_at": "2031-05-01T21:00:00", "time_zone": "Asia/Tokyo", "place": "House",
                           "capacity": 8}
JOB: dict[str, Any] = {"title": "Picture book", "deadline": "2031-03-01",
                       "compensation": {"kind": "money", "amount": 30000, "currency": "JPY"}}


def _objects(schema: Any, components: dict[str, Any], seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """Every object schema reachable from ``schema``, named by its component (or 'inline')."""
    found_objects: list[tuple[str, dict[str, Any]]] = []
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in seen:
                seen.add(name)
                target = components[name]
                if target.get("type") == "object" or "properties" in target:
                    found_objects.append((name, target))
                found_objects += _objects(target, components, seen)
        for value in schema.values():
            found_objects += _objects(value, components, seen)
    elif isinstance(schema, list):
        for value in schema:
            found_objects += _objects(value, components, seen)
    return found_objects


@pytest.mark.parametrize("service", SERVICES)
def test_every_request_body_refuses_unknown_fields(service: str) -> None:
    app = importlib.import_module(f"services.{service}.app").create_app(
        ServiceSettings(service_name=service, jwt_private_key=generate_private_key_pem()))
    document = app.openapi()
    components = document.get("components", {}).get("schemas", {})
    lax = []
    bodies = 0
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if not isinstance(operation, dict) or "requestBody" not in operation:
                continue
            bodies += 1
            for name, schema in _objects(operation["requestBody"], components, set()):
                if schema.get("additionalProperties") is not False:
                    lax.append(f"{method.upper()} {path}: {name}")
    assert bodies > 0
    assert not lax, "request bodies that ignore unknown fields:\n" + "\n".join(sorted(set(lax)))



async def test_typos_and_impossible_wall_times_are_refused_by_name(every_service: httpx.AsyncClient,
                                                                   ecosystem: Ecosystem) -> None:
    http, eco = every_service, ecosystem
    cid, owner = await found(http, eco, "Strict")
    as_owner = eco.headers(cid, owner, "owner")

    async def sessions_know_the_owner() -> bool:
        answer = await http.get(f"/v1/communities/{cid}/sessions", headers=as_owner)
        jobs = await http.get(f"/v1/communities/{cid}/jobs", headers=as_owner)
        return answer.status_code == 200 and jobs.status_code == 200

    await eventually(sessions_know_the_owner)
    before = await event_counts(eco)
    c = f"/v1/communities/{cid}"
    cases = [
        ("PUT", f"{c}/cap", {"member_cap": 150, "reason": "x", "member_cpa": 3}, "member_cpa"),
        ("POST", f"{c}/jobs", {**JOB, "dead_line": "2031-04-01"}, "dead_line"),
        ("POST", f"{c}/jobs", {**JOB, "compensation": {**JOB["compensation"], "ammount": 1}},
         "compensation.ammount"),
        ("POST", f"{c}/members", {"display_name": "Ken", "rol": "owner"}, "rol"),
        ("POST", f"{c}/sessions", {**SESSION, "capacityy": 9}, "capacityy"),
        ("POST", f"{c}/sessions", {**SESSION, "time_zone": "America/New_York", "starts_at": "2031-03-09T02:30:00",
                                   "ends_at": "2031-03-09T03:30:00"}, "starts_at"),
        ("POST", f"{c}/sessions", {**SESSION, "time_zone": "America/New_York", "starts_at": "2031-11-02T01:30:00",
                                   "ends_at": "2031-11-02T03:30:00"}, "starts_at"),
        ("POST", f"{c}/sessions", {**SESSION, "time_zone": "Europe/Berlin", "starts_at": "2031-03-30T01:00:00",
                                   "ends_at": "2031-03-30T02:30:00"}, "ends_at"),
        ("POST", "/v1/tokens", {"community_id": cid, "member_id": owner, "scopes": "dashboard"}, "scopes"),
        ("POST", f"/v1/join/{cid}", {"display_name": "Hana", "waitlist_if_ful": True}, "waitlist_if_ful"),
    ]
    for method, path, body, field in cases:
        headers = {} if path.startswith("/v1/join") else eco.operator_headers() if path == "/v1/tokens" else as_owner
        answer = await http.request(method, path, headers=headers, json=body)
        assert answer.status_code == 422, (path, body, answer.status_code, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        problem = answer.json()
        fields = [error["field"] for error in problem.get("errors", [])] or [problem.get("field")]
        assert field in fields or field in problem["detail"], (field, problem)
    # An offset time says which of the two 01:30s is meant: accepted.
    explicit = await http.post(f"{c}/sessions", headers=as_owner, json={
        **SESSION, "time_zone": "America/New_York", "starts_at": "2031-11-02T01:30:00-05:00",
        "ends_at": "2031-11-02T03:30:00"})
    assert explicit.status_code == 201, explicit.text
    after = await event_counts(eco)
    after["sessions"] -= 1  # the explicit session
    assert after == before, f"refused input left events behind: {before} → {after}"
