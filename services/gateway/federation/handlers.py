"""Federation commands: an owner's decisions about partnerships, members' offers to partner jobs, and
messages arriving from partners. Each loads a partnership side, decides, and appends."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg
import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kizuna.addresses import AddressGuard, UnsafeAddress
from kizuna.auth import Principal
from kizuna.domain import DomainEvent
from kizuna.errors import Forbidden, Invalid, NotFound, Problem
from kizuna.eventstore import EventStore
from kizuna.handling import CommandContext, execute, load, run_again_if_refused
from kizuna.personal import PARTNER_MEMBER

from .. import projections as gateway_projections
from . import projections
from .domain import (
    Decision,
    FederationListing,
    OfferToPartnerJob,
    Partnership,
    PartnershipRequested,
    ProposePartnership,
    ReferToPartnerJob,
    member_card,
)
from .identity import PartnerKeys, fetch_document, key_in, remember_keys
from .signing import key_id_of, public_key_from_text


def stream_of(partnership_id: str, community_id: str) -> str:
    return f"partnership-{partnership_id}-{community_id}"


async def community_name(conn: asyncpg.Connection, community_id: str) -> str:
    name = await conn.fetchval("SELECT name FROM community_caps WHERE community_id = $1", community_id)
    if name is None:
        raise NotFound("community not found")
    return str(name)


async def propose(store: EventStore, http: httpx.AsyncClient, guard: AddressGuard, who: Principal,
                  community_id: str, cmd: ProposePartnership, ctx: CommandContext, own_origin: str) -> str:
    who.require_role(community_id, "owner")
    origin = str(cmd.partner_origin).rstrip("/")
    async with store.pool.acquire() as conn:
        name = await community_name(conn, community_id)
    if origin == own_origin:  # two communities on this deployment: the same protocol, no network hop
        if cmd.partner_community_id == community_id:
            raise Invalid("partner_community_id", "a community does not partner with itself")
        async with store.pool.acquire() as conn:
            partner = {"name": await conn.fetchval("SELECT name FROM community_caps WHERE community_id = $1",
                                                   cmd.partner_community_id)}
        if partner["name"] is None:
            raise Invalid("partner_community_id", "this deployment hosts no such community")
    else:
        partner = await _remote_community(store, http, guard, origin, cmd.partner_community_id)
    pid = str(uuid.uuid4())
    await execute(store, stream_of(pid, community_id), Partnership,
                  lambda _: Partnership.propose(pid, community_id, name, str(partner.get("name", "")), cmd,
                                                who.actor), ctx, community_id=community_id)
    return pid


async def _remote_community(store: EventStore, http: httpx.AsyncClient, guard: AddressGuard, origin: str,
                            partner_community_id: str) -> dict[str, Any]:
    """The partner deployment's document, fetched because this owner named it (no connection held meanwhile).

    Communities need not be listed there: the owners exchanged the community id. A listed one gives its
    name now; otherwise the name arrives with the acceptance, and a wrong id is refused by the partner."""
    try:
        document = await fetch_document(http, origin, guard)
        async with store.pool.acquire() as conn:
            await remember_keys(conn, origin, document)
    except UnsafeAddress as error:
        raise Invalid("partner_origin", f"refused: {error}") from error
    except (httpx.HTTPError, ValueError, KeyError, TypeError) as error:
        # A 4xx, not a 502: the caller can fix the origin (or retry once the partner is up).
        raise Invalid("partner_origin", f"no Kizuna deployment answered at {origin}: {error}") from error
    hosted = {c.get("community_id"): c for c in document.get("communities", []) if isinstance(c, dict)}
    return hosted.get(partner_community_id) or {"name": ""}


async def accept(store: EventStore, keys: PartnerKeys, who: Principal, community_id: str, partnership_id: str,
                 ctx: CommandContext) -> Partnership:
    """The owner accepts a proposal. Only now is the proposer's deployment asked for its document (the
    owner chose this partner), and the key the proposal was signed with must be one it publishes:
    a proposal that names someone else's origin is refused here, before anything is shared."""
    who.require_role(community_id, "owner")
    stream = stream_of(partnership_id, community_id)
    state = await load(store, stream, Partnership)
    if state.version == 0:
        raise NotFound("partnership not found")
    if state.status == "requested" and state.partner_origin != keys.identity.origin:
        await _confirm_proposer(store, keys, state)
    async with store.pool.acquire() as conn:
        name = await community_name(conn, community_id)
    accepted, _ = await execute(store, stream, Partnership, lambda p: p.accept(who.actor, community_name=name), ctx,
                                community_id=community_id)
    return accepted


async def _confirm_proposer(store: EventStore, keys: PartnerKeys, state: Partnership) -> None:
    origin = state.partner_origin
    try:
        document = await fetch_document(keys.http, origin, keys.guard)
    except UnsafeAddress as error:
        raise Problem(f"the proposing deployment is not reachable safely: {error}", status=409,
                      slug="proposal-unverified", title="Proposal not verified") from error
    except (httpx.HTTPError, ValueError) as error:
        raise Problem(f"the proposing deployment {origin} did not answer ({error}); try again later", status=502,
                      slug="partner-unreachable", title="Partner deployment unreachable") from error
    try:
        async with store.pool.acquire() as conn:
            published = await remember_keys(conn, origin, document)
    except (ValueError, KeyError, TypeError) as error:
        raise Problem(f"{origin} publishes an invalid document: {error}", status=409, slug="proposal-unverified",
                      title="Proposal not verified") from error
    if state.proposer_key_id and key_in(published, state.proposer_key_id, datetime.now(UTC)) is None:
        raise Problem(f"{origin} does not publish the key the proposal was signed with: it did not come from "
                      "there; decline it", status=409, slug="proposal-unverified", title="Proposal not verified")


async def set_listing(store: EventStore, who: Principal, community_id: str, listed: bool,
                      ctx: CommandContext) -> bool:
    who.require_role(community_id, "owner")
    async with store.pool.acquire() as conn:
        await community_name(conn, community_id)
    state, _ = await execute(store, f"federation-listing-{community_id}", FederationListing,
                             lambda s: s.set_listed(community_id, listed, who.actor), ctx, community_id=community_id)
    return state.listed


async def decide(store: EventStore, who: Principal, community_id: str, partnership_id: str, ctx: CommandContext,
                 decision: Callable[[Partnership, str], Sequence[DomainEvent]],
                 minimum: Literal["owner", "facilitator"] = "owner") -> Partnership:
    who.require_role(community_id, minimum)
    stream = stream_of(partnership_id, community_id)
    if (await load(store, stream, Partnership)).version == 0:
        raise NotFound("partnership not found")
    state, _ = await execute(store, stream, Partnership, lambda p: decision(p, who.actor), ctx,
                             community_id=community_id)
    return state


async def acting_member(store: EventStore, who: Principal, community_id: str) -> asyncpg.Record:
    """The caller's directory row: only an active member acts across a partnership, as themselves."""
    who.require_community(community_id)
    if who.is_operator or who.member_id is None or who.scope != "member":
        raise Forbidden("only members act across a partnership")
    async with store.pool.acquire() as conn:
        member = await gateway_projections.member(conn, community_id, who.member_id)
    if member is None:
        raise Forbidden("only active members of this community may do this", slug="not-a-member")
    return member


def consented_card(member: asyncpg.Record) -> dict[str, Any]:
    return member_card(member["display_name"], list(member["shared_fields"]),
                       {"skills": list(member["skills"]), "vector": member["vector"]})


async def offer_to_partner_job(store: EventStore, who: Principal, community_id: str, partnership_id: str,
                               job_id: str, body: OfferToPartnerJob | ReferToPartnerJob,
                               ctx: CommandContext) -> str:
    """A member offers (or refers a fellow member) to a partner's job: only the consented card leaves."""
    actor = await acting_member(store, who, community_id)
    kind: Literal["offer", "referral"] = "referral" if isinstance(body, ReferToPartnerJob) else "offer"
    subject_id = body.member_id if isinstance(body, ReferToPartnerJob) else actor["member_id"]
    async with store.pool.acquire() as conn:
        subject = await gateway_projections.member(conn, community_id, subject_id)
    if subject is None:
        raise Invalid("member_id", "is not an active member of this community")
    card = consented_card(subject)
    offer_id = str(uuid.uuid4())
    stream = stream_of(partnership_id, community_id)
    if (await load(store, stream, Partnership)).version == 0:
        raise NotFound("partnership not found")
    await execute(store, stream, Partnership,
                  lambda p: p.send_offer(job_id, offer_id, subject_id, card, body.note, kind,
                                         actor["display_name"] if kind == "referral" else None,
                                         note_by=actor["member_id"]),
                  ctx, community_id=community_id)
    return offer_id


# ---- receiving ----

class Endpoint(BaseModel):
    origin: str = Field(max_length=500)
    community_id: str = Field(max_length=64)


class FederationMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    protocol: Literal["kizuna-federation/1"]
    message_id: str = Field(min_length=8, max_length=64)
    type: str = Field(max_length=64)
    partnership_id: str = Field(min_length=1, max_length=64)
    sent_at: str
    sender: Endpoint = Field(alias="from")
    to: Endpoint
    payload: dict[str, Any]


def parse_message(raw: bytes) -> FederationMessage:
    try:
        return FederationMessage.model_validate_json(raw)
    except ValidationError as error:
        first = error.errors()[0]
        raise Invalid(".".join(str(p) for p in first["loc"]) or "body", first["msg"]) from error


async def receive(store: EventStore, message: FederationMessage, origin: str, own_origin: str,
                  proposer_key: tuple[str, str] = ("", "")) -> str:
    """Turns an authenticated message into events here; ``duplicate`` when its id was seen before."""
    if message.sender.origin.rstrip("/") != origin:
        raise Forbidden("the message claims to come from another deployment than the one that signed it",
                        slug="origin-mismatch")
    if message.to.origin.rstrip("/") != own_origin:
        raise Problem("this message is addressed to another deployment", status=421, slug="misdirected",
                      title="Misdirected request")
    community_id = message.to.community_id
    ctx = CommandContext(actor=f"partner:{origin}", community_id=community_id, causation_id=message.message_id)
    # The receipt is written before the append, so the append may be refused to keep the stream in order.
    return await run_again_if_refused(lambda: _receive_once(store, message, origin, community_id, ctx,
                                                            proposer_key))


async def _receive_once(store: EventStore, message: FederationMessage, origin: str, community_id: str,
                        ctx: CommandContext, proposer_key: tuple[str, str]) -> str:
    p = message.payload
    async with store.pool.acquire() as conn, conn.transaction():
        await community_name(conn, community_id)
        first = await conn.fetchval("INSERT INTO federation_received (message_id, origin, type) VALUES ($1, $2, $3) "
                                    "ON CONFLICT DO NOTHING RETURNING true", message.message_id, origin, message.type)
        if not first:
            return "duplicate"
        stream = stream_of(message.partnership_id, community_id)
        state = await load(store, stream, Partnership)
        if message.type == "partnership.proposed":
            if state.version:
                return "duplicate"
            request = _requested(message, origin, proposer_key)
            await execute(store, stream, Partnership, lambda _: [request], ctx, community_id=community_id,
                          connection=conn)
            return "accepted"
        if state.version == 0 or state.partner_origin != origin or \
                state.partner_community_id != message.sender.community_id:
            raise Forbidden("no partnership between these communities covers this message", slug="no-partnership")
        decide = _inbound(message.type, p, origin)
        if message.type == "member.erased":
            await _erase_partner_member(store, state, str(uuid.UUID(str(p["member_ref"]))))
        await execute(store, stream, Partnership, decide, ctx, community_id=community_id, connection=conn)
    return "accepted"


async def _erase_partner_member(store: EventStore, state: Partnership, ref: str) -> None:
    """Key first (as for a member here): from now on nothing of theirs opens in any service of this deployment;
    ``PartnerMemberErased`` then makes every service scrub its read-model copies. A retry repeats it harmlessly."""
    subject = state.partner_ref(ref)
    if store.vault is not None and subject:
        await store.vault.erase([f"{PARTNER_MEMBER}:{subject}"])


def _requested(message: FederationMessage, origin: str, proposer_key: tuple[str, str]) -> DomainEvent:
    p = message.payload
    try:
        # The proposer's "sends" is what this side receives, and the other way round.
        return PartnershipRequested(
            partnership_id=message.partnership_id, community_id=message.to.community_id, partner_origin=origin,
            partner_community_id=message.sender.community_id,
            partner_community_name=str(p.get("community_name", ""))[:200], sends=p.get("receives", []),
            receives=p.get("sends", []), note=str(p.get("note", ""))[:2000], proposer_key_id=proposer_key[0],
            proposer_public_key=proposer_key[1])
    except ValidationError as error:
        raise Invalid("payload", "sends and receives list job_requests and/or referrals") from error


def _inbound(kind: str, p: dict[str, Any], origin: str) -> Callable[[Partnership], Sequence[DomainEvent]]:
    actor = f"partner:{origin}"
    reason = str(p.get("reason", ""))[:1000]
    try:
        if kind == "partnership.accepted":
            name = str(p.get("community_name", ""))
            return lambda s: s.accept(actor, by="partner", community_name=name)
        if kind == "partnership.declined":
            return lambda s: s.decline(actor, reason, by="partner")
        if kind == "partnership.suspended":
            return lambda s: s.suspend(actor, reason, by="partner")
        if kind == "partnership.resumed":
            return lambda s: s.resume(actor, by="partner")
        if kind == "partnership.ended":
            return lambda s: s.end(actor, reason, by="partner")
        if kind == "job.shared":
            raw_job, job_id = p["job"], str(p["job_id"])
            return lambda s: s.receive_job(job_id, lambda: _shared_job(raw_job))
        if kind == "job.status":
            job_id, state, assigned = str(p["job_id"]), str(p["state"]), [str(o) for o in p["assigned_offer_ids"]]
            return lambda s: s.receive_job_status(job_id, state, assigned)
        if kind == "job.offer":
            offer_kind: Literal["offer", "referral"] = "referral" if p.get("kind") == "referral" else "offer"
            card = {k: p["card"][k] for k in ("display_name", "skills", "vector", "values") if k in p["card"]}
            referred_by = p.get("referred_by_name")
            refs = _refs(p)
            return lambda s: s.receive_offer(str(p["job_id"]), str(p["offer_id"]), offer_kind, card,
                                             str(p.get("note", ""))[:2000],
                                             str(referred_by) if referred_by else None, *refs)
        if kind == "offering.shared":
            offering, offering_id = _shared_offering(p["offering"]), str(p["offering_id"])
            return lambda s: s.receive_offering(offering_id, offering)
        if kind == "offering.status":
            offering_id, status = str(p["offering_id"]), str(p["status"])
            return lambda s: s.receive_offering_status(offering_id, status)
        if kind == "offering.pledge":
            card = {k: p["card"][k] for k in ("display_name", "skills", "vector", "values") if k in p["card"]}
            shares = int(p["shares"])
            if not 1 <= shares <= 1000:
                raise Invalid("payload.shares", "must be between 1 and 1000")
            ref = _refs(p)[0]
            return lambda s: s.receive_pledge(str(p["offering_id"]), str(p["pledge_id"]), shares, card, ref)
        if kind == "referral.introduced":
            card = {k: p["card"][k] for k in ("display_name", "skills", "vector", "values") if k in p["card"]}
            note, by = str(p.get("note", ""))[:1000], str(p.get("introduced_by_name", ""))[:120]
            subject = str(p["offering_id"]) if p.get("offering_id") else None
            refs = _refs(p)
            return lambda s: s.receive_introduction(str(p["referral_id"]), card, note, by, subject, *refs)
        if kind == "member.erased":
            erased = _refs({"member_ref": p["member_ref"]})[0]
            if not erased:
                raise Invalid("payload.member_ref", "names the erased member's reference")
            return lambda s: s.receive_erasure_notice(erased)
        if kind == "referral.outcome":
            referral_id, worked, note = str(p["referral_id"]), bool(p["worked"]), str(p.get("note", ""))[:1000]
            return lambda s: s.receive_introduction_outcome(referral_id, worked, note)
        if kind == "offering.pledge_result":
            pledge_id, accepted = str(p["pledge_id"]), bool(p["accepted"])
            reason, left = str(p.get("reason", ""))[:500], int(p.get("shares_left", 0))
            return lambda s: s.receive_pledge_result(pledge_id, accepted, reason, left)
    except (KeyError, TypeError, ValueError) as error:
        raise Invalid(f"payload.{error}", f"is required by a {kind} message") from error
    raise Invalid("type", f"unknown message type {kind!r}")


def _refs(p: dict[str, Any]) -> tuple[str, str]:
    """The member references a message carries (``member_ref``: whose card; ``author_ref``: who wrote its note),
    each a UUID or none: a partner that sends none has its members' fields kept unsealed, as before."""
    refs = []
    for name in ("member_ref", "author_ref"):
        value = p.get(name)
        if value in (None, ""):
            refs.append("")
            continue
        try:
            refs.append(str(uuid.UUID(str(value))))
        except ValueError as error:
            raise Invalid(f"payload.{name}", "must be a member reference (a UUID)") from error
    return refs[0], refs[1]


def _shared_job(job: dict[str, Any]) -> dict[str, Any]:
    """Only the fields the protocol lets a job request carry across, each of its kind: a title and a deadline
    are needed (a 422 naming the field otherwise); a partner that sends no description, skills or compensation
    shares an empty one, so every job a member lists has the same shape."""
    if not isinstance(job, dict):
        raise Invalid("payload.job", "must be an object")
    for name in ("title", "deadline"):
        if not isinstance(job.get(name), str) or not job[name].strip():
            raise Invalid(f"payload.job.{name}", "is required, as text")
    shared: dict[str, Any] = {"title": job["title"][:200], "deadline": job["deadline"][:40],
                              "description": job.get("description", ""), "skills": job.get("skills", []),
                              "compensation": job.get("compensation", {})}
    if not isinstance(shared["description"], str):
        raise Invalid("payload.job.description", "must be text")
    if not isinstance(shared["skills"], list) or not all(isinstance(x, str) for x in shared["skills"]):
        raise Invalid("payload.job.skills", "must be a list of text")
    if not isinstance(shared["compensation"], dict):
        raise Invalid("payload.job.compensation", "must be an object")
    if "community_name" in job:
        shared["community_name"] = str(job["community_name"])[:120]
    return shared


def _shared_offering(offering: dict[str, Any]) -> dict[str, Any]:
    allowed = ("title", "description", "season", "shares", "minimum_shares", "price", "commitment_deadline",
               "delivery_dates", "community_name")
    return {k: offering[k] for k in allowed if k in offering}


def offering_card(terms: dict[str, Any], community_name: str) -> dict[str, Any]:
    """What a partner sees of an offering: its public terms, never who produces or who committed."""
    return {**_shared_offering(terms), "community_name": community_name}


async def pledge_to_partner_offering(store: EventStore, who: Principal, community_id: str, partnership_id: str,
                                     offering_id: str, shares: int, ctx: CommandContext) -> str:
    """A member pledges shares of a partner community's offering; only their consented card leaves."""
    card = consented_card(await acting_member(store, who, community_id))
    stream = stream_of(partnership_id, community_id)
    if (await load(store, stream, Partnership)).version == 0:
        raise NotFound("partnership not found")
    pledge_id = str(uuid.uuid4())
    await execute(store, stream, Partnership,
                  lambda p: p.send_pledge(offering_id, pledge_id, who.member_id or "", shares, card), ctx,
                  community_id=community_id)
    return pledge_id


def job_card(data: dict[str, Any], community_name: str) -> dict[str, Any]:
    return {"title": data["title"], "description": data.get("description", ""), "skills": data.get("skills", []),
            "compensation": data.get("compensation", {"kind": "none"}), "deadline": data["deadline"],
            "community_name": community_name}


__all__ = ["Decision", "FederationMessage", "job_card", "parse_message", "projections", "receive"]


def proposal_key(message: FederationMessage, key_id: str) -> tuple[str, str] | None:
    """The key a ``partnership.proposed`` message carries for itself (``payload.proposer_key``), if it is
    the key the message names. First contact needs it: the proposer's document is fetched only once an
    owner here accepts, so until then this key vouches for this proposal and nothing else."""
    if message.type != "partnership.proposed":
        return None
    carried = message.payload.get("proposer_key")
    if not isinstance(carried, dict) or carried.get("key_id") != key_id:
        return None
    try:
        text = str(carried["public_key"])
        if key_id_of(public_key_from_text(text)) != key_id:
            return None
    except (KeyError, ValueError):
        return None
    return key_id, text


async def pending_proposal_key(store: EventStore, message: FederationMessage, origin: str,
                               key_id: str) -> str | None:
    """The key a still-unanswered proposal from ``origin`` was signed with: it may withdraw (end) its own
    proposal before the owner here answers; the domain refuses anything else on a requested link."""
    state = await load(store, stream_of(message.partnership_id, message.to.community_id), Partnership)
    if state.version and state.status == "requested" and state.partner_origin == origin \
            and state.proposer_key_id == key_id and state.proposer_public_key:
        return state.proposer_public_key
    return None
