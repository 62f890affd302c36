"""The fleet's evidence key pair: units wrap each segment's data key to its public part
with HPKE (RFC 9180); only the data controller, holding the passphrase-protected private
part, can unwrap them. A unit therefore holds no key that decrypts its own footage.

Two suites are offered. `x25519` (DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM)
is the default; `mlkem768-x25519` (the hybrid post-quantum KEM ML-KEM-768 + X25519) is a
fleet option for footage that may be kept for years as evidence.

File forms:
- public: JSON `{"format": "cctv-evidence-public", "suite": ..., "key": base64}`
- private: JSON `{"format": "cctv-evidence-private", "suite": ..., "kdf": "scrypt", ...}`
  with the raw private key sealed by AES-256-GCM under a scrypt-derived key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from protocol.errors import ProtocolError

__all__ = [
    "EvidenceKeyError",
    "EvidencePrivateKey",
    "EvidencePublicKey",
    "EvidenceSuite",
    "generate_evidence_key",
]

_PUBLIC_FORMAT = "cctv-evidence-public"
_PRIVATE_FORMAT = "cctv-evidence-private"
_X25519_LEN = 32
_MLKEM768_PUBLIC_LEN = 1184
_MLKEM768_SEED_LEN = 64
_SCRYPT_N = 2**15


class EvidenceKeyError(ProtocolError):
    """An evidence key file that cannot be read, or a wrong passphrase."""


class EvidenceSuite(StrEnum):
    X25519 = "x25519"
    MLKEM768_X25519 = "mlkem768-x25519"

    def hpke_suite(self) -> hpke.Suite:
        kem = hpke.KEM.X25519 if self is EvidenceSuite.X25519 else hpke.KEM.MLKEM768_X25519
        return hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: Any, what: str) -> bytes:
    if not isinstance(text, str):
        raise EvidenceKeyError(f"{what} is missing or not a string")
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise EvidenceKeyError(f"{what} is not valid base64") from exc


def _load_json(data: bytes, fmt: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EvidenceKeyError("not an evidence key file (not JSON)") from exc
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise EvidenceKeyError(f"not an evidence key file (expected format {fmt!r})")
    try:
        doc["suite"] = EvidenceSuite(str(doc.get("suite")))
    except ValueError as exc:
        raise EvidenceKeyError(f"unknown evidence suite {doc.get('suite')!r}") from exc
    return doc


@dataclass(frozen=True)
class EvidencePublicKey:
    suite: EvidenceSuite
    raw: bytes

    def hpke_key(self) -> x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey:
        if self.suite is EvidenceSuite.X25519:
            return x25519.X25519PublicKey.from_public_bytes(self.raw)
        return hpke.MLKEM768X25519PublicKey(
            mlkem.MLKEM768PublicKey.from_public_bytes(self.raw[:_MLKEM768_PUBLIC_LEN]),
            x25519.X25519PublicKey.from_public_bytes(self.raw[_MLKEM768_PUBLIC_LEN:]),
        )

    def wrap(self, secret: bytes, info: bytes) -> bytes:
        """HPKE single-shot seal of `secret` (a segment data key) to this key."""
        return self.suite.hpke_suite().encrypt(secret, self.hpke_key(), info=info)

    def fingerprint(self) -> str:
        return hashlib.sha256(self.suite.value.encode() + b"\0" + self.raw).hexdigest()[:16]

    def to_json(self) -> bytes:
        doc = {"format": _PUBLIC_FORMAT, "suite": self.suite.value, "key": _b64(self.raw)}
        return json.dumps(doc, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes) -> EvidencePublicKey:
        doc = _load_json(data, _PUBLIC_FORMAT)
        key = cls(doc["suite"], _unb64(doc.get("key"), "key"))
        try:
            key.hpke_key()
        except ValueError as exc:
            raise EvidenceKeyError(f"evidence public key is not a valid {key.suite} key") from exc
        return key


@dataclass(frozen=True)
class EvidencePrivateKey:
    suite: EvidenceSuite
    raw: bytes  # X25519: 32-byte private; hybrid: 64-byte ML-KEM seed + 32-byte X25519

    def _hpke_key(self) -> x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey:
        if self.suite is EvidenceSuite.X25519:
            return x25519.X25519PrivateKey.from_private_bytes(self.raw)
        return hpke.MLKEM768X25519PrivateKey(
            mlkem.MLKEM768PrivateKey.from_seed_bytes(self.raw[:_MLKEM768_SEED_LEN]),
            x25519.X25519PrivateKey.from_private_bytes(self.raw[_MLKEM768_SEED_LEN:]),
        )

    def public_key(self) -> EvidencePublicKey:
        if self.suite is EvidenceSuite.X25519:
            pub = x25519.X25519PrivateKey.from_private_bytes(self.raw).public_key()
            return EvidencePublicKey(self.suite, pub.public_bytes_raw())
        ml = mlkem.MLKEM768PrivateKey.from_seed_bytes(self.raw[:_MLKEM768_SEED_LEN])
        xk = x25519.X25519PrivateKey.from_private_bytes(self.raw[_MLKEM768_SEED_LEN:])
        return EvidencePublicKey(
            self.suite,
            ml.public_key().public_bytes_raw() + xk.public_key().public_bytes_raw(),
        )

    def unwrap(self, wrapped: bytes, info: bytes) -> bytes:
        """Open a secret sealed by `EvidencePublicKey.wrap`; raises EvidenceKeyError."""
        try:
            return self.suite.hpke_suite().decrypt(wrapped, self._hpke_key(), info=info)
        except Exception as exc:  # the Rust binding raises InvalidTag or ValueError
            raise EvidenceKeyError("data key does not open with this evidence key") from exc

    def to_encrypted_json(self, passphrase: str) -> bytes:
        if len(passphrase) < 8:
            raise EvidenceKeyError("the evidence key passphrase must be at least 8 characters")
        salt = os.urandom(16)
        nonce = os.urandom(12)
        kek = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1).derive(passphrase.encode())
        sealed = AESGCM(kek).encrypt(nonce, self.raw, self.suite.value.encode())
        doc = {
            "format": _PRIVATE_FORMAT,
            "suite": self.suite.value,
            "kdf": "scrypt",
            "kdf_params": {"n": _SCRYPT_N, "r": 8, "p": 1, "salt": _b64(salt)},
            "nonce": _b64(nonce),
            "sealed_key": _b64(sealed),
            "public_key": _b64(self.public_key().raw),
        }
        return json.dumps(doc, indent=2).encode() + b"\n"

    @classmethod
    def from_encrypted_json(cls, data: bytes, passphrase: str) -> EvidencePrivateKey:
        doc = _load_json(data, _PRIVATE_FORMAT)
        params = doc.get("kdf_params")
        if doc.get("kdf") != "scrypt" or not isinstance(params, dict):
            raise EvidenceKeyError("unsupported key derivation in evidence key file")
        try:
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
        except (KeyError, TypeError, ValueError) as exc:
            raise EvidenceKeyError("bad key derivation parameters") from exc
        salt = _unb64(params.get("salt"), "salt")
        kek = Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())
        try:
            raw = AESGCM(kek).decrypt(
                _unb64(doc.get("nonce"), "nonce"),
                _unb64(doc.get("sealed_key"), "sealed_key"),
                doc["suite"].value.encode(),
            )
        except InvalidTag as exc:
            raise EvidenceKeyError("wrong passphrase for the evidence private key") from exc
        return cls(doc["suite"], raw)


def generate_evidence_key(suite: EvidenceSuite = EvidenceSuite.X25519) -> EvidencePrivateKey:
    if suite is EvidenceSuite.X25519:
        return EvidencePrivateKey(suite, x25519.X25519PrivateKey.generate().private_bytes_raw())
    seed = mlkem.MLKEM768PrivateKey.generate().private_bytes_raw()
    assert len(seed) == _MLKEM768_SEED_LEN
    return EvidencePrivateKey(suite, seed + x25519.X25519PrivateKey.generate().private_bytes_raw())
