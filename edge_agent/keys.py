"""The keys of the unit's enrollment bundle, read and checked when the agent starts.

A key file missing, unreadable or not a usable key fails the start with an `AgentError`
naming the key and the path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edge_agent.config import KeysConfig
from edge_agent.errors import AgentError
from protocol.evidence_keys import EvidencePublicKey
from protocol.signing import load_private_key, load_public_key

__all__ = ["UnitKeys", "load_keys"]


@dataclass(frozen=True)
class UnitKeys:
    controller: Ed25519PublicKey  # verifies commands and authorizations
    signing: Ed25519PrivateKey  # the unit's: signs the index checkpoints
    evidence: EvidencePublicKey  # segment data keys are wrapped to it


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AgentError(f"cannot read the {what} at {path}: {exc.strerror}") from exc


def load_keys(cfg: KeysConfig) -> UnitKeys:
    try:
        return UnitKeys(
            controller=load_public_key(
                _read(cfg.controller_public_key_file, "controller public key")
            ),
            signing=load_private_key(_read(cfg.signing_key_file, "unit signing key")),
            evidence=EvidencePublicKey.from_json(
                _read(cfg.evidence_public_key_file, "evidence public key")
            ),
        )
    except ValueError as exc:
        raise AgentError(f"a key in the enrollment bundle is not usable: {exc}") from exc
