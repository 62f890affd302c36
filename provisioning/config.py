"""The fleet directory's layout and its two data files, `fleet.toml` and `ca/issued.json`.

FLEET/
  fleet.toml                      name, topic_root, broker host/port, evidence suite, validity
  ca/ca.crt ca.key crl.pem issued.json
  controller/controller.crt controller.key signing.key signing.pub
  controller/uploads.crt uploads.key        the evidence upload endpoint's server identity
  clients/<name>/client.crt client.key      other centre clients (controller-2, simulator...)
  broker/broker.crt broker.key
  evidence/evidence-public.json evidence-private.json
  units/<unit_id>/unit.crt signing.pub unit.json bundle/
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal

from cryptography import x509
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from protocol.evidence_keys import EvidenceSuite
from protocol.topics import DEFAULT_ROOT, Topics
from provisioning.errors import AlreadyRevoked, FleetConfigError, FleetNotFound, UnknownUnit
from provisioning.files import toml_document, write_bytes
from provisioning.pki import Revocation, Role

__all__ = [
    "BrokerSettings",
    "CertStatus",
    "FleetConfig",
    "FleetLayout",
    "IssuedCertificate",
    "Registry",
    "UploadEndpoint",
    "ValiditySettings",
]


class _Data(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BrokerSettings(_Data):
    host: str = Field("127.0.0.1", description="Address the units dial; also in the broker cert.")
    port: int = Field(8883, ge=1, le=65535, description="The broker's TLS port.")
    extra_hosts: list[str] = Field(
        default_factory=list,
        description="More names/addresses in the broker certificate besides the loopback ones.",
    )


class UploadEndpoint(_Data):
    host: str = Field(
        "127.0.0.1", description="Address units reach the controller's evidence endpoint at."
    )
    port: int = Field(8443, ge=1, le=65535, description="The endpoint's HTTPS port.")
    extra_hosts: list[str] = Field(
        default_factory=list,
        description="More names/addresses in the endpoint certificate besides loopback.",
    )

    @property
    def url(self) -> str:
        """The upload URL written into each unit's agent.toml."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"


class ValiditySettings(_Data):
    ca_days: int = Field(3650, ge=1, description="Lifetime of the fleet CA.")
    cert_days: int = Field(730, ge=1, description="Lifetime of broker, controller and unit certs.")
    crl_days: int = Field(
        365, ge=1, description="How long a CRL stays valid; re-sign it before (renew-crl)."
    )


class FleetConfig(_Data):
    name: str = Field(min_length=1, max_length=64, description="Organisation / fleet name.")
    topic_root: str = Field(DEFAULT_ROOT, description="MQTT topic root of every fleet topic.")
    evidence_suite: EvidenceSuite = Field(
        EvidenceSuite.X25519, description="HPKE suite of the fleet evidence key."
    )
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    uploads: UploadEndpoint | None = Field(
        None, description="The controller's evidence upload endpoint; None in older fleets."
    )
    validity: ValiditySettings = Field(default_factory=ValiditySettings)

    @field_validator("topic_root")
    @classmethod
    def _valid_root(cls, value: str) -> str:
        Topics(value)  # raises ValueError with the reason
        return value

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_root)

    def to_toml(self) -> bytes:
        return toml_document(
            {
                "name": self.name,
                "topic_root": self.topic_root,
                "evidence_suite": self.evidence_suite.value,
                "broker": {
                    "host": self.broker.host,
                    "port": self.broker.port,
                    "extra_hosts": self.broker.extra_hosts,
                },
                "validity": {
                    "ca_days": self.validity.ca_days,
                    "cert_days": self.validity.cert_days,
                    "crl_days": self.validity.crl_days,
                },
                **(
                    {}
                    if self.uploads is None
                    else {
                        "uploads": {
                            "host": self.uploads.host,
                            "port": self.uploads.port,
                            "extra_hosts": self.uploads.extra_hosts,
                        }
                    }
                ),
            },
            header="CCTV fleet settings (cctv-provision). Certificates already issued keep\n"
            "the broker host and validity they were issued with.",
        )


class CertStatus(StrEnum):
    VALID = "valid"
    REVOKED = "revoked"
    #: replaced by a re-issue; listed in the CRL like a revoked one
    SUPERSEDED = "superseded"


class IssuedCertificate(_Data):
    serial: str = Field(description="Serial number, lower-case hex.")
    cn: str
    role: Role
    status: CertStatus = CertStatus.VALID
    issued_at: datetime
    not_after: datetime
    revoked_at: datetime | None = None

    @property
    def serial_int(self) -> int:
        return int(self.serial, 16)


class Registry(_Data):
    """Every certificate the fleet CA has issued, and the CRL counter."""

    format: Literal["cctv-issued-certificates"] = "cctv-issued-certificates"
    crl_number: int = 0
    certificates: tuple[IssuedCertificate, ...] = ()

    def current(self, cn: str, role: Role | None = None) -> IssuedCertificate | None:
        """The latest certificate issued for `cn` (any status), or None if never issued."""
        for cert in reversed(self.certificates):  # kept in issue order
            if cert.cn == cn and (role is None or cert.role is role):
                return cert
        return None

    def with_issued(self, entry: IssuedCertificate) -> Registry:
        """Add `entry`; the previous valid certificate of the same name and role is
        superseded (and so goes on the CRL)."""
        certs = [
            c.model_copy(update={"status": CertStatus.SUPERSEDED, "revoked_at": entry.issued_at})
            if c.cn == entry.cn and c.role is entry.role and c.status is CertStatus.VALID
            else c
            for c in self.certificates
        ]
        return self.model_copy(update={"certificates": (*certs, entry)})

    def with_revoked(self, name: str, now: datetime) -> tuple[Registry, list[IssuedCertificate]]:
        """Revoke every valid client certificate of `name`; return the new registry and
        the certificates revoked. Raises UnknownUnit / AlreadyRevoked."""
        mine = [c for c in self.certificates if c.cn == name and c.role.is_client]
        if not mine:
            raise UnknownUnit(name)
        serials = {c.serial for c in mine if c.status is CertStatus.VALID}
        if not serials:
            raise AlreadyRevoked(name)
        certs = tuple(
            c.model_copy(update={"status": CertStatus.REVOKED, "revoked_at": now})
            if c.serial in serials
            else c
            for c in self.certificates
        )
        new = self.model_copy(update={"certificates": certs})
        return new, [c for c in certs if c.serial in serials]

    def revocations(self) -> list[Revocation]:
        """What the CRL lists: every certificate that is not valid any more."""
        return [
            Revocation(
                c.serial_int,
                c.revoked_at or c.issued_at,
                x509.ReasonFlags.superseded
                if c.status is CertStatus.SUPERSEDED
                else x509.ReasonFlags.unspecified,
            )
            for c in self.certificates
            if c.status is not CertStatus.VALID
        ]

    def revoked_names(self) -> set[str]:
        """Client names (unit ids, ...) that hold no valid certificate any more."""
        names = {c.cn for c in self.certificates if c.role.is_client}
        return names - {c.cn for c in self.certificates if c.status is CertStatus.VALID}

    def valid_names(self, roles: Iterable[Role]) -> dict[str, Role]:
        """Every name that holds a valid certificate of one of `roles`, with that role,
        sorted by name."""
        wanted = set(roles)
        found = {
            c.cn: c.role
            for c in self.certificates
            if c.role in wanted and c.status is CertStatus.VALID
        }
        return dict(sorted(found.items()))

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode() + b"\n"


@dataclass(frozen=True)
class FleetLayout:
    """Paths inside one fleet directory. Pure: touches no disk except `require`/`read_*`."""

    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "fleet.toml"

    @property
    def ca_dir(self) -> Path:
        return self.root / "ca"

    @property
    def ca_cert(self) -> Path:
        return self.ca_dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.ca_dir / "ca.key"

    @property
    def crl(self) -> Path:
        return self.ca_dir / "crl.pem"

    @property
    def registry(self) -> Path:
        return self.ca_dir / "issued.json"

    @property
    def controller_dir(self) -> Path:
        return self.root / "controller"

    @property
    def controller_signing_key(self) -> Path:
        return self.controller_dir / "signing.key"

    @property
    def controller_signing_pub(self) -> Path:
        return self.controller_dir / "signing.pub"

    @property
    def uploads_cert(self) -> Path:
        return self.controller_dir / "uploads.crt"

    @property
    def uploads_key(self) -> Path:
        return self.controller_dir / "uploads.key"

    @property
    def broker_dir(self) -> Path:
        return self.root / "broker"

    @property
    def evidence_public(self) -> Path:
        return self.root / "evidence" / "evidence-public.json"

    @property
    def evidence_private(self) -> Path:
        return self.root / "evidence" / "evidence-private.json"

    def client_cert(self, name: str) -> tuple[Path, Path]:
        """(certificate, key) of a centre client (`controller`, `simulator-2`, ...)."""
        if name == "controller":
            return self.controller_dir / "controller.crt", self.controller_dir / "controller.key"
        return (
            self.root / "clients" / name / "client.crt",
            self.root / "clients" / name / "client.key",
        )

    def unit_dir(self, unit_id: str) -> Path:
        return self.root / "units" / unit_id

    def bundle_dir(self, unit_id: str) -> Path:
        return self.unit_dir(unit_id) / "bundle"

    def require(self) -> None:
        if not self.config_file.is_file():
            raise FleetNotFound(self.root)

    def read_config(self) -> FleetConfig:
        self.require()
        try:
            doc = tomllib.loads(self.config_file.read_text(encoding="utf-8"))
            return FleetConfig.model_validate(doc)
        except tomllib.TOMLDecodeError as exc:
            raise FleetConfigError(self.config_file, f"not valid TOML: {exc}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(top)"
            raise FleetConfigError(self.config_file, f"{where}: {first['msg']}") from exc

    def read_registry(self) -> Registry:
        try:
            return Registry.model_validate(json.loads(self.registry.read_bytes()))
        except FileNotFoundError as exc:
            raise FleetConfigError(self.registry, "missing (is this a fleet directory?)") from exc
        except (ValueError, ValidationError) as exc:
            raise FleetConfigError(self.registry, "not a valid certificate registry") from exc

    def write_registry(self, registry: Registry) -> None:
        write_bytes(self.registry, registry.to_json(), force=True)
