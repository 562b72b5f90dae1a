"""Rate limits: who a caller really is, and a bounded token bucket per caller.

A visitor (no token: the front door) is known by the client's address. The address is the TCP peer,
unless the peer is one of the operator's reverse proxies (``KIZUNA_TRUSTED_PROXIES``), in which case
it is the right-most ``X-Forwarded-For`` entry that is not itself a trusted proxy — entries to its left
were written by the client and prove nothing. An authenticated caller is known by the id of the token
it verified with (or as the operator), never by the raw header it sent, so inventing headers buys
nothing. Each gateway replica counts on its own (docs/operations.md, "Rate limits").
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from fastapi import Request

from kizuna.auth import Principal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
BUCKETS = 100_000  # callers remembered per process; the least recently seen is forgotten first


@dataclass
class TokenBucket:
    rate: float
    burst: float
    capacity: int = BUCKETS
    tokens: OrderedDict[str, tuple[float, float]] = field(default_factory=OrderedDict)

    def take(self, key: str) -> float:
        """0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        level, last = self.tokens.pop(key, (self.burst, now))
        level = min(self.burst, level + (now - last) * self.rate)
        allowed = level >= 1
        self.tokens[key] = (level - 1 if allowed else level, now)
        while len(self.tokens) > self.capacity:
            # Forgetting a caller refills their bucket: only one who was quiet longest is forgotten, and
            # pushing them out takes ``capacity`` other callers — addresses or tokens nobody can mint freely.
            self.tokens.popitem(last=False)
        return 0.0 if allowed else (1 - level) / self.rate


def parse_networks(text: str) -> tuple[Network, ...]:
    """``KIZUNA_TRUSTED_PROXIES``: comma-separated addresses or CIDR networks."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in text.split(",") if item.strip())


def _trusted(address: str, proxies: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in proxies)


def client_address(request: Request, proxies: tuple[Network, ...]) -> str:
    peer = request.client.host if request.client else "unknown"
    if not _trusted(peer, proxies):
        return peer
    hops = [hop.strip() for header in request.headers.getlist("x-forwarded-for") for hop in header.split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _trusted(hop, proxies):
            return hop
    return peer  # every hop is a proxy of ours: the request began inside


def visitor_key(request: Request) -> str:
    return "visitor:" + client_address(request, request.app.state.trusted_proxies)


def caller_key(who: Principal) -> str:
    if who.is_operator:
        return "operator"
    return "token:" + hashlib.sha256(str(who.token_id).encode()).hexdigest()[:32]
