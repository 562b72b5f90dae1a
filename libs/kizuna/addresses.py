"""Where Kizuna may send a request on someone's say-so — a partner's origin, a webhook's endpoint: never to an
address inside the deployment's own networks (private, loopback, link-local…), unless the operator allows it
(a development machine, partners on one host). The name is resolved and every address it gives is checked."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class UnsafeAddress(ValueError):
    """The address resolves to somewhere Kizuna must not reach (private, loopback, link-local…)."""


@dataclass(frozen=True)
class AddressGuard:
    allow_private: bool = False

    async def check(self, origin: str) -> None:
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UnsafeAddress(f"{origin} is not an http(s) origin")
        if parts.username or parts.password:
            raise UnsafeAddress(f"{origin} carries credentials")
        if self.allow_private:
            return
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except OSError as error:
            raise UnsafeAddress(f"{parts.hostname} does not resolve: {error}") from error
        for address in {str(info[4][0]) for info in infos}:
            if not is_public_address(address):
                raise UnsafeAddress(f"{parts.hostname} resolves to {address}, which is not a public address")


def is_public_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    # is_global is false for private, loopback, link-local, shared (100.64/10), reserved and unspecified.
    return ip.is_global and not ip.is_multicast
