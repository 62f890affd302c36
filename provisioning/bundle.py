"""A unit's inventory record (`units/<id>/unit.json`) and its enrollment bundle.

The bundle is the folder copied onto the camera unit. It holds the unit's own TLS and
signing keys, the fleet CA, the controller's signing public key and the evidence PUBLIC
key; never the evidence private key, never the CA key.

    bundle/
      agent.toml                 paths in it are relative to the bundle folder; its
                                 [evidence] upload_url is the controller's upload endpoint
      unit.crt unit.key          TLS client identity (CN = unit id)
      unit-signing.key           Ed25519, signs the unit's recording-index checkpoints
      ca.crt                     the fleet CA: the broker's certificate must chain to it
      controller-signing.pub     only commands/authorizations signed by this key are obeyed
      evidence-public.json       segment data keys are wrapped to this key
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import BaseModel, ConfigDict, Field

from protocol.topics import validate_unit_id
from provisioning import pki
from provisioning.config import FleetConfig, FleetLayout
from provisioning.errors import InvalidInput
from provisioning.files import toml_document

__all__ = [
    "AGENT_CONFIG",
    "BUNDLE_FILES",
    "UnitInfo",
    "agent_toml",
    "check_unit_id",
    "check_ups_url",
    "unit_files",
]

AGENT_CONFIG = "agent.toml"
BUNDLE_FILES = (
    AGENT_CONFIG,
    "unit.crt",
    "unit.key",
    "unit-signing.key",
    "ca.crt",
    "controller-signing.pub",
    "evidence-public.json",
)
NUT_DEFAULT_PORT = 3493


class UnitInfo(BaseModel):
    """Inventory of one unit, kept by the fleet for the controller and the contractor."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    unit_id: str
    site: str | None = Field(None, description="Where the unit is (free text).")
    model: str | None = Field(None, description="Camera / unit hardware model.")
    ups: str | None = Field(None, description="NUT UPS address, nut://host:port/upsname.")
    contractor: str | None = Field(None, description="Maintenance contractor responsible.")
    serial: str = Field(description="Serial (hex) of the unit's current certificate.")
    issued_at: datetime


def check_unit_id(unit_id: str) -> str:
    try:
        return validate_unit_id(unit_id)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from exc


def check_ups_url(url: str) -> str:
    """Accept `nut://host[:port]/upsname`; return it with the port made explicit."""
    parts = urlsplit(url)
    name = parts.path.removeprefix("/")
    try:
        port = parts.port or NUT_DEFAULT_PORT
    except ValueError:
        port = -1
    if (
        parts.scheme != "nut"
        or not parts.hostname
        or not name
        or "/" in name
        or parts.query
        or parts.fragment
        or not 0 < port < 65536
    ):
        raise InvalidInput(f"UPS must look like nut://host:3493/upsname, not {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"nut://{host}:{port}/{name}"


def agent_toml(config: FleetConfig, unit_id: str) -> bytes:
    evidence = (
        {}
        if config.uploads is None
        else {"evidence": {"upload_url": config.uploads.url, "ca_file": "ca.crt"}}
    )
    return toml_document(
        {
            "unit_id": unit_id,
            "broker": {
                "host": config.broker.host,
                "port": config.broker.port,
                "topic_root": config.topic_root,
                "ca_file": "ca.crt",
                "cert_file": "unit.crt",
                "key_file": "unit.key",
            },
            "keys": {
                "signing_key_file": "unit-signing.key",
                "controller_public_key_file": "controller-signing.pub",
                "evidence_public_key_file": "evidence-public.json",
            },
            "camera": {"url": "synthetic:"},
            "storage": {"data_dir": "data"},
            **evidence,
        },
        header=f"Enrollment of unit {unit_id} in fleet {config.name!r} (cctv-provision).\n"
        "Paths are relative to this file's folder.",
    )


def unit_files(
    layout: FleetLayout,
    config: FleetConfig,
    unit_id: str,
    tls_key: ec.EllipticCurvePrivateKey,
    cert: x509.Certificate,
    signing: ed25519.Ed25519PrivateKey,
) -> list[tuple[Path, bytes, bool]]:
    """(path, content, private) of every file a newly issued unit gets: its bundle, and
    the certificate and signing public key the fleet keeps (`units/<id>/`)."""
    bundle, unit_dir = layout.bundle_dir(unit_id), layout.unit_dir(unit_id)
    return [
        (bundle / "unit.key", pki.private_key_pem(tls_key), True),
        (bundle / "unit-signing.key", pki.private_key_pem(signing), True),
        (bundle / "unit.crt", pki.cert_pem(cert), False),
        (bundle / "ca.crt", layout.ca_cert.read_bytes(), False),
        (bundle / "controller-signing.pub", layout.controller_signing_pub.read_bytes(), False),
        (bundle / "evidence-public.json", layout.evidence_public.read_bytes(), False),
        (bundle / AGENT_CONFIG, agent_toml(config, unit_id), False),
        (unit_dir / "unit.crt", pki.cert_pem(cert), False),
        (unit_dir / "signing.pub", pki.public_key_pem(signing), False),
    ]
