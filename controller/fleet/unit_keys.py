"""Units' Ed25519 signing public keys: read from the provisioning fleet directory
(`units/<id>/signing.pub`, PEM) when the inventory is imported, kept in the units table as
the raw key in hex, and turned back into a key to check a unit's index checkpoints."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from controller.errors import InventoryError

__all__ = ["SIGNING_KEY_FILE", "public_key", "read_signing_key"]

#: Beside each unit's `unit.json` in the fleet directory.
SIGNING_KEY_FILE = "signing.pub"


def read_signing_key(path: Path) -> str | None:
    """The raw public key in hex, or None when the file does not exist (a fleet made
    before units had signing keys). A file that is not an Ed25519 public key is an error."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InventoryError(str(path), f"unreadable signing key ({exc.strerror})") from exc
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise InventoryError(str(path), f"not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise InventoryError(str(path), "not an Ed25519 public key")
    return key.public_bytes_raw().hex()


def public_key(raw_hex: str) -> Ed25519PublicKey:
    """The key stored by `read_signing_key` (ValueError if it is not one)."""
    return Ed25519PublicKey.from_public_bytes(bytes.fromhex(raw_hex))
