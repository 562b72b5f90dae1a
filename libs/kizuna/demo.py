"""The demo `make up` seeds through the public API: two linked partner communities with members, roles
and profiles, a job request shared across the link with an offer from the partner, a coaching session,
a goal and a pre-commitment offering."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .progress import Progress

COMMUNITIES = [
    {"name": "Hikari Makers", "purpose": "Makers in Kamakura who help each other turn craft into a living",
     "values": ["share first", "equality", "good work over hourly rates"], "owner_display_name": "Yui Sato",
     "members": [("Ken Mori", "publish my own picture book by spring", ["illustration", "watercolour"]),
                 ("Aiko Tanaka", "run video workshops for local shops", ["video-editing", "teaching"]),
                 ("Mei Suzuki", "find my first three clients as a patent attorney", ["patent-law"]),
                 ("Sora Ito", "grow vegetables for twenty families", ["farming", "logistics"])]},
    {"name": "Tsubasa Publishing", "purpose": "Writers and editors publishing together",
     "values": ["honest feedback", "finish what we start"], "owner_display_name": "Haruto Kobayashi",
     "members": [("Rin Yamada", "edit a community anthology", ["editing"]),
                 ("Daiki Kato", "design book covers full time", ["design", "illustration"])]},
]


class Api:
    def __init__(self, gateway: str, operator_token: str) -> None:
        self.http = httpx.Client(base_url=gateway, timeout=30)
        self.operator = {"Authorization": f"Bearer {operator_token}"}

    def call(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> Any:
        response = self.http.request(method, f"/v1{path}", headers=headers or self.operator, **kwargs)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json() if response.content else None

    def token(self, community_id: str, member_id: str, scope: str = "member", ttl: int = 7 * 24 * 3600) -> str:
        """Issued once the gateway has learned the member from the bus (eventually consistent)."""
        deadline = time.monotonic() + 30
        while True:
            response = self.http.post("/v1/tokens", headers=self.operator, json={
                "community_id": community_id, "member_id": member_id, "scope": scope, "ttl_seconds": ttl})
            if response.status_code == 201:
                return str(response.json()["token"])
            if time.monotonic() > deadline:
                raise RuntimeError(f"token for {member_id}: {response.status_code} {response.text[:200]}")
            time.sleep(0.2)

    def retry(self, method: str, path: str, headers: dict[str, str], **kwargs: Any) -> Any:
        """For writes that need another service's read model to have caught up with the roster."""
        deadline = time.monotonic() + 30
        while True:
            try:
                return self.call(method, path, headers, **kwargs)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)


def seed(gateway: str, operator_token: str) -> dict[str, Any]:
    api = Api(gateway, operator_token)
    progress = Progress("seeding demo", 16)
    ids: list[dict[str, Any]] = []
    for spec in COMMUNITIES:
        founded = api.call("POST", "/communities", json={k: spec[k] for k in (
            "name", "purpose", "values", "owner_display_name")})
        cid, owner = founded["community_id"], founded["owner_member_id"]
        members = {}
        for name, vector, skills in spec["members"]:
            member_id = api.call("POST", f"/communities/{cid}/members",
                                 json={"display_name": name, "joined_via": "invitation"})["member_id"]
            api.call("PUT", f"/communities/{cid}/members/{member_id}/profile",
                     json={"display_name": name, "vector": vector, "skills": skills})
            members[name] = member_id
        ids.append({"community_id": cid, "owner": owner, "members": members, "name": spec["name"]})
        progress.advance(3)
    hikari = ids[0]
    cid, owner, m = hikari["community_id"], hikari["owner"], hikari["members"]
    api.call("PUT", f"/communities/{cid}/members/{m['Aiko Tanaka']}/role",
             json={"role": "facilitator", "reason": "runs the Tuesday coaching cohort"})
    as_owner = {"Authorization": f"Bearer {api.token(cid, owner)}"}
    as_ken = {"Authorization": f"Bearer {api.token(cid, m['Ken Mori'])}"}
    as_aiko = {"Authorization": f"Bearer {api.token(cid, m['Aiko Tanaka'], ttl=3600)}"}
    progress.advance(2)
    # The two communities link as partners (the same protocol as across deployments, delivered locally).
    tsubasa = ids[1]
    as_haruto = {"Authorization": f"Bearer {api.token(tsubasa['community_id'], tsubasa['owner'])}"}
    link = api.call("POST", f"/communities/{cid}/partnerships", as_owner, json={
        "partner_origin": gateway, "partner_community_id": tsubasa["community_id"],
        "note": "Makers and publishers: picture books need both"})
    api.retry("POST", f"/communities/{tsubasa['community_id']}/partnerships/{link['partnership_id']}/acceptance",
              as_haruto)
    _wait_until_active(api, cid, link["partnership_id"], as_owner)
    progress.advance(2)
    deadline = (datetime.now(UTC).date() + timedelta(days=60)).isoformat()
    job = api.retry("POST", f"/communities/{cid}/jobs", as_owner, json={
        "title": "Illustrations for the farm-share newsletter", "description": "Four watercolour vignettes",
        "skills": ["illustration"], "compensation": {"kind": "barter", "barter": "a season of vegetables"},
        "deadline": deadline, "visibility": "partners"})
    api.retry("POST", f"/communities/{cid}/jobs/{job['job_id']}/offers", as_ken,
              json={"why_next_step": "my first commissioned series"})
    daiki = tsubasa["members"]["Daiki Kato"]
    api.call("PUT", f"/communities/{tsubasa['community_id']}/members/{daiki}/consent",
             json={"shared_fields": ["display_name", "skills"]})
    as_daiki = {"Authorization": f"Bearer {api.token(tsubasa['community_id'], daiki)}"}
    api.retry("POST", f"/communities/{tsubasa['community_id']}/partnerships/{link['partnership_id']}/jobs/"
              f"{job['job_id']}/offers", as_daiki, json={"note": "I draw covers; vignettes would be a joy"})
    progress.advance(1)
    start = datetime.now(UTC) + timedelta(days=3)
    session = api.retry("POST", f"/communities/{cid}/sessions", as_aiko, json={
        "kind": "group-coaching", "title": "Cohort A — putting your vector into words",
        "starts_at": start.replace(tzinfo=None, microsecond=0).isoformat(),
        "ends_at": (start + timedelta(hours=2)).replace(tzinfo=None, microsecond=0).isoformat(),
        "time_zone": "Asia/Tokyo", "place": "Kominka, Kamakura", "capacity": 8, "cohort": "A"})
    for name in ("Ken Mori", "Mei Suzuki", "Sora Ito"):
        api.retry("POST", f"/communities/{cid}/sessions/{session['session_id']}/registrations", as_aiko,
                  json={"member_id": m[name]})
    progress.advance(2)
    api.retry("POST", f"/communities/{cid}/goals", as_ken, json={
        "facilitator_id": m["Aiko Tanaka"], "statement": "Publish my first picture book",
        "motivation": "I want my daughter to read a story I drew for her",
        "kpis": [{"name": "spreads finished", "unit": "spreads", "baseline": 0, "target": 12,
                  "direction": "increase"}],
        "due_date": (datetime.now(UTC).date() + timedelta(days=120)).isoformat()})
    progress.advance(3)
    # A pre-commitment offering: Sora's summer vegetable share, with two members committed and help wanted.
    as_sora = {"Authorization": f"Bearer {api.token(cid, m['Sora Ito'])}"}
    first_box = datetime.now(UTC).date() + timedelta(days=45)
    offering = api.retry("POST", f"/communities/{cid}/offerings", as_sora, json={
        "title": "Summer vegetable share", "description": "A box of whatever the field gives, every other week",
        "season": f"Summer {first_box.year}", "shares": 20, "minimum_shares": 8,
        "price": {"kind": "money", "amount": 12000, "currency": "JPY"},
        "commitment_deadline": (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat(),
        "delivery_dates": [(first_box + timedelta(days=14 * i)).isoformat() for i in range(4)],
        "help_shifts": [{"date": (first_box + timedelta(days=7)).isoformat(), "place": "Ito field, Kamakura",
                         "hands": 4, "what": "tomato harvest"}]})
    for name, shares in (("Ken Mori", 2), ("Aiko Tanaka", 1)):
        as_member = as_ken if name == "Ken Mori" else as_aiko
        api.retry("POST", f"/communities/{cid}/offerings/{offering['offering_id']}/commitments", as_member,
                  json={"shares": shares})
    api.retry("POST", f"/communities/{cid}/offerings/{offering['offering_id']}/progress", as_sora,
              json={"stage": "sowing", "note": "The tomato seedlings went out today: forty rows."})
    progress.finish()
    return {"communities": ids, "summary": summary(ids)}


def _wait_until_active(api: Api, cid: str, partnership_id: str, headers: dict[str, str]) -> None:
    deadline = time.monotonic() + 30
    while api.call("GET", f"/communities/{cid}/partnerships/{partnership_id}", headers)["status"] != "active":
        if time.monotonic() > deadline:
            raise RuntimeError("the demo partnership did not become active")
        time.sleep(0.2)


def summary(ids: list[dict[str, Any]]) -> dict[str, str]:
    return {f"Community {i + 1}": f"{c['name']} ({c['community_id']})" for i, c in enumerate(ids)}


def dashboard_token(gateway: str, operator_token: str, demo: dict[str, Any]) -> str:
    """A fresh read-only token for the first community's dashboard, issued at every `make up`."""
    first = demo["communities"][0]
    return Api(gateway, operator_token).token(first["community_id"], first["owner"], scope="dashboard",
                                              ttl=24 * 3600)


def owner_sign_in_path(gateway: str, operator_token: str, demo: dict[str, Any]) -> str | None:
    """Where the first community's owner (Yui) becomes herself when signed in: a fresh single-use code at every
    `make up` until someone has claimed her member; None once someone has."""
    first = demo["communities"][0]
    api = Api(gateway, operator_token)
    response = api.http.post(f"/v1/communities/{first['community_id']}/members/{first['owner']}/account-claim",
                             headers=api.operator, json={})
    if response.status_code == 409:
        return None
    if response.status_code != 201:
        raise RuntimeError(f"owner's sign-in code: {response.status_code} {response.text[:200]}")
    return str(response.json()["claim_path"])
