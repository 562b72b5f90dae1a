"""HTTP Message Signatures (RFC 9421) as Kizuna gateways use them. Pure: no I/O, no clock.

A message is signed over its method, path, body digest (RFC 9530 ``Content-Digest``), the
sending deployment (``Kizuna-Origin``) and the message id, with ``created``, ``keyid``,
``alg="ed25519"`` and a fresh ``nonce`` as signature parameters. The receiver checks the digest,
the time window, the key and the signature, and remembers nonces for the window so a captured
request cannot be replayed. Retries of one message carry the same message id but a new nonce.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

LABEL = "kizuna"
COVERED = ("@method", "@path", "content-digest", "kizuna-origin", "kizuna-message-id")
WINDOW_SECONDS = 300


class SignatureRejected(Exception):
    """The request is not a valid signed message; ``reason`` says which check failed."""

    def __init__(self, reason: str, slug: str = "bad-signature", status: int = 401) -> None:
        super().__init__(reason)
        # 401 unless retrying later can help (503: the sender's deliverer retries, it does not give up).
        self.reason, self.slug, self.status = reason, slug, status


@dataclass(frozen=True)
class SignedRequest:
    """What a receiver learns from the headers before it knows the sender's key."""

    origin: str
    key_id: str
    message_id: str
    created: int
    nonce: str
    signature: bytes
    base: bytes


def content_digest(body: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(body).digest()).decode()}:"


def public_key_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def public_key_from_text(text: str) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def key_id_of(key: Ed25519PublicKey) -> str:
    """A short, stable id: the first 16 hex digits of the raw key's SHA-256."""
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _params(created: int, key_id: str, nonce: str) -> str:
    components = " ".join(f'"{c}"' for c in COVERED)
    return f'({components});created={created};keyid="{key_id}";alg="ed25519";nonce="{nonce}"'


def signature_base(method: str, path: str, digest: str, origin: str, message_id: str, params: str) -> bytes:
    values = {"@method": method.upper(), "@path": path, "content-digest": digest, "kizuna-origin": origin,
              "kizuna-message-id": message_id}
    lines = [f'"{name}": {values[name]}' for name in COVERED]
    lines.append(f'"@signature-params": {params}')
    return "\n".join(lines).encode()


def sign(key: Ed25519PrivateKey, *, method: str, path: str, body: bytes, origin: str, message_id: str,
         created: int, nonce: str) -> dict[str, str]:
    """The headers that make this request a signed Kizuna message."""
    digest = content_digest(body)
    params = _params(created, key_id_of(key.public_key()), nonce)
    signature = key.sign(signature_base(method, path, digest, origin, message_id, params))
    return {
        "Content-Digest": digest,
        "Kizuna-Origin": origin,
        "Kizuna-Message-Id": message_id,
        "Signature-Input": f"{LABEL}={params}",
        "Signature": f"{LABEL}=:{base64.b64encode(signature).decode()}:",
    }


_INPUT = re.compile(rf'^{LABEL}=\((?P<components>[^)]*)\);created=(?P<created>\d+);keyid="(?P<keyid>[^"]+)";'
                    r'alg="ed25519";nonce="(?P<nonce>[A-Za-z0-9_-]{8,64})"$')
_SIGNATURE = re.compile(rf"^{LABEL}=:(?P<sig>[A-Za-z0-9+/=]+):$")


def read(headers: Mapping[str, str], *, method: str, path: str, body: bytes, now: int,
         window: int = WINDOW_SECONDS) -> SignedRequest:
    """Checks everything that needs no key: presence, covered components, digest and time window."""
    required = ("signature-input", "signature", "content-digest", "kizuna-origin", "kizuna-message-id")
    missing = [name for name in required if not headers.get(name)]
    if missing:
        raise SignatureRejected(f"unsigned request: missing {', '.join(missing)}", "unsigned")
    match = _INPUT.match(headers["signature-input"].strip())
    if match is None:
        raise SignatureRejected("Signature-Input is not a Kizuna signature (see docs/federation.md)")
    if match["components"].split() != [f'"{c}"' for c in COVERED]:
        raise SignatureRejected(f"the signature must cover {', '.join(COVERED)}")
    signature = _SIGNATURE.match(headers["signature"].strip())
    if signature is None:
        raise SignatureRejected("Signature header is malformed")
    if headers["content-digest"] != content_digest(body):
        raise SignatureRejected("Content-Digest does not match the body", "digest-mismatch")
    created = int(match["created"])
    if abs(now - created) > window:
        raise SignatureRejected(f"the signature was created {now - created} s ago; the window is ±{window} s",
                                "stale-signature")
    params = headers["signature-input"].strip()[len(LABEL) + 1:]
    base = signature_base(method, path, headers["content-digest"], headers["kizuna-origin"],
                          headers["kizuna-message-id"], params)
    return SignedRequest(origin=headers["kizuna-origin"].rstrip("/"), key_id=match["keyid"],
                         message_id=headers["kizuna-message-id"], created=created, nonce=match["nonce"],
                         signature=base64.b64decode(signature["sig"]), base=base)


def verify(request: SignedRequest, key: Ed25519PublicKey) -> None:
    try:
        key.verify(request.signature, request.base)
    except InvalidSignature as error:
        raise SignatureRejected("the signature does not verify with the sender's published key") from error
