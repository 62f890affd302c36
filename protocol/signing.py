"""Ed25519 signatures on what the controller tells a unit to do.

Commands, deployment authorizations and revocations are signed by the controller's
signing key over a canonical encoding of their body (JSON, sorted keys, no spaces, UTF-8)
prefixed with a domain tag, so a signature for one kind can never be passed off as
another. A unit obeys nothing the controller did not sign, even if the broker is
compromised. Each body carries an id and an expiry: a late delivery or a replay (the
same command id twice) is refused. Every refusal names its reason (`RefusalReason`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocol.errors import RefusalReason, SignatureRefused
from protocol.messages import (
    Authorization,
    AuthorizationBody,
    Command,
    CommandBody,
    Model,
    Revocation,
    RevocationBody,
    utcnow,
)

__all__ = [
    "MemorySeenIds",
    "SeenIds",
    "Signer",
    "Verifier",
    "canonical_bytes",
    "key_id",
    "load_private_key",
    "load_public_key",
]

_S = TypeVar("_S", Command, Authorization, Revocation)

_DOMAIN = {
    CommandBody: b"cctv-command-v1\0",
    AuthorizationBody: b"cctv-authorization-v1\0",
    RevocationBody: b"cctv-revocation-v1\0",
}
#: Clock difference tolerated between controller and unit for "issued in the future".
DEFAULT_MAX_SKEW = timedelta(minutes=5)


def canonical_bytes(body: Model) -> bytes:
    """The exact bytes that are signed: domain tag + canonical JSON of the body."""
    doc = body.model_dump(mode="json")
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return _DOMAIN[type(body)] + text.encode("utf-8")


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def load_private_key(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("not an Ed25519 private key")
    return key


def load_public_key(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


class SeenIds(Protocol):
    """Remembers the ids of accepted commands until they expire (a durable store on the
    unit, so a replay is refused across restarts too)."""

    def seen(self, ident: str) -> bool: ...

    def remember(self, ident: str, until: datetime) -> None: ...


class MemorySeenIds:
    def __init__(self) -> None:
        self._ids: dict[str, datetime] = {}

    def seen(self, ident: str) -> bool:
        return ident in self._ids

    def remember(self, ident: str, until: datetime) -> None:
        self._ids[ident] = until


class Signer:
    """The controller's side: builds signed messages."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.key_id = key_id(private_key.public_key())

    def _sign(self, body: Model) -> str:
        return base64.b64encode(self._key.sign(canonical_bytes(body))).decode("ascii")

    def _signed(self, cls: type[_S], body: Model, seq: int, boot_id: str) -> _S:
        return cls(
            unit_id=body.unit_id,  # type: ignore[attr-defined]
            seq=seq,
            sent_at=utcnow(),
            boot_id=boot_id,
            key_id=self.key_id,
            signature=self._sign(body),
            body=body,
        )

    def command(self, body: CommandBody, *, seq: int, boot_id: str) -> Command:
        return self._signed(Command, body, seq, boot_id)

    def authorization(self, body: AuthorizationBody, *, seq: int, boot_id: str) -> Authorization:
        return self._signed(Authorization, body, seq, boot_id)

    def revocation(self, body: RevocationBody, *, seq: int, boot_id: str) -> Revocation:
        return self._signed(Revocation, body, seq, boot_id)


class Verifier:
    """The unit's side: checks that a signed message is the controller's, for this unit,
    current, and (for commands) not seen before."""

    def __init__(
        self,
        public_key: Ed25519PublicKey,
        *,
        unit_id: str,
        seen: SeenIds | None = None,
        clock: Callable[[], datetime] = utcnow,
        max_skew: timedelta = DEFAULT_MAX_SKEW,
    ) -> None:
        self._key = public_key
        self.key_id = key_id(public_key)
        self.unit_id = unit_id
        self._seen: SeenIds = seen if seen is not None else MemorySeenIds()
        self._clock = clock
        self._skew = max_skew

    def _check_signature(self, msg: Command | Authorization | Revocation) -> None:
        if msg.key_id != self.key_id:
            raise SignatureRefused(
                RefusalReason.UNKNOWN_KEY,
                f"signed by key {msg.key_id}, this unit trusts {self.key_id}",
            )
        try:
            sig = base64.b64decode(msg.signature, validate=True)
            self._key.verify(sig, canonical_bytes(msg.body))
        except (InvalidSignature, ValueError) as exc:
            raise SignatureRefused(
                RefusalReason.BAD_SIGNATURE, "signature does not match the content (tampered?)"
            ) from exc

    def _check_unit(self, msg: Command | Authorization | Revocation) -> None:
        if msg.body.unit_id != self.unit_id or msg.unit_id != self.unit_id:
            raise SignatureRefused(
                RefusalReason.WRONG_UNIT,
                f"addressed to {msg.body.unit_id!r}, this unit is {self.unit_id!r}",
            )

    def _check_issued(self, issued_at: datetime, now: datetime) -> None:
        if issued_at > now + self._skew:
            raise SignatureRefused(
                RefusalReason.NOT_YET_VALID, f"issued in the future ({issued_at.isoformat()})"
            )

    def command(self, msg: Command) -> CommandBody:
        """Verify a command; on success its id is remembered so it runs only once."""
        self._check_signature(msg)
        self._check_unit(msg)
        body = msg.body
        now = self._clock()
        self._check_issued(body.issued_at, now)
        if body.expires_at <= now:
            raise SignatureRefused(
                RefusalReason.EXPIRED, f"command expired at {body.expires_at.isoformat()}"
            )
        if self._seen.seen(body.command_id):
            raise SignatureRefused(
                RefusalReason.REPLAYED, f"command {body.command_id} was already received"
            )
        self._seen.remember(body.command_id, body.expires_at)
        return body

    def authorization(self, msg: Authorization) -> AuthorizationBody:
        """Verify an authorization's origin and addressee; its validity window is checked
        here and again by the gate as time passes (it is retained, so it is delivered again
        on every reconnect: redelivery is not a replay)."""
        self._check_signature(msg)
        self._check_unit(msg)
        now = self._clock()
        self._check_issued(msg.body.issued_at, now)
        if msg.body.valid_until <= now:
            raise SignatureRefused(
                RefusalReason.EXPIRED,
                f"authorization ended at {msg.body.valid_until.isoformat()}",
            )
        return msg.body

    def revocation(self, msg: Revocation) -> RevocationBody:
        self._check_signature(msg)
        self._check_unit(msg)
        self._check_issued(msg.body.issued_at, self._clock())
        return msg.body
