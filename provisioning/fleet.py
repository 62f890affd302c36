"""A fleet directory: create it, issue identities into it, revoke them.

`Fleet.create(...)` makes the CA, the broker's and the controller's identities (with the
server identity of its evidence upload endpoint), the controller's command-signing key
and the evidence key pair; `Fleet.open(path)` opens an
existing one. `add_unit` issues a camera unit, `issue_client` a centre client (another
controller, a simulator connection: see `provisioning.clients`). Every change runs under
an exclusive lock on the directory.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from pydantic import ValidationError

from protocol.evidence_keys import (
    EvidenceKeyError,
    EvidencePrivateKey,
    EvidencePublicKey,
    EvidenceSuite,
    generate_evidence_key,
)
from protocol.topics import DEFAULT_ROOT, Topics
from provisioning import pki
from provisioning.bundle import UnitInfo, check_unit_id, check_ups_url, unit_files
from provisioning.clients import (
    CENTRE_ROLES,
    ClientIdentity,
    centre_role,
    check_client_name,
    role_named_by,
)
from provisioning.config import (
    BrokerSettings,
    CertStatus,
    FleetConfig,
    FleetLayout,
    IssuedCertificate,
    Registry,
    UploadEndpoint,
    ValiditySettings,
)
from provisioning.errors import (
    AlreadyExists,
    FleetConfigError,
    InvalidInput,
    ProvisioningError,
    UnknownUnit,
)
from provisioning.files import fleet_lock, refuse_existing, write_bytes

__all__ = ["LOOPBACK_HOSTS", "UPLOADS_CN", "Fleet"]

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
#: Common name of the evidence upload endpoint's server certificate.
UPLOADS_CN = "controller-uploads"


def _uploads_endpoint(host: str, port: int, extra_hosts: tuple[str, ...]) -> UploadEndpoint:
    extra = [h for h in dict.fromkeys(extra_hosts) if h not in LOOPBACK_HOSTS and h != host]
    pki.subject_alt_names([host, *extra])  # raises InvalidInput for a bad name
    try:
        return UploadEndpoint(host=host, port=port, extra_hosts=extra)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidInput(f"upload endpoint {first['loc'][0]}: {first['msg']}") from exc


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Fleet:
    def __init__(self, layout: FleetLayout, config: FleetConfig) -> None:
        self.layout = layout
        self.config = config

    # -- opening and creating -------------------------------------------------------------

    @classmethod
    def open(cls, root: Path) -> Fleet:
        layout = FleetLayout(Path(root))
        return cls(layout, layout.read_config())

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        name: str,
        evidence_passphrase: str,
        evidence_suite: EvidenceSuite = EvidenceSuite.X25519,
        broker_host: str = "127.0.0.1",
        broker_port: int = 8883,
        extra_hosts: tuple[str, ...] = (),
        topic_root: str = DEFAULT_ROOT,
        validity: ValiditySettings | None = None,
        uploads_host: str | None = None,
        uploads_port: int = 8443,
        force: bool = False,
    ) -> Fleet:
        """Create a fleet at `root`. Refuses an existing fleet unless `force`. The
        evidence upload endpoint is at `uploads_host` (default: the broker's host)."""
        root = Path(root)
        layout = FleetLayout(root)
        if len(evidence_passphrase) < 8:
            raise InvalidInput("the evidence key passphrase must be at least 8 characters")
        try:
            Topics(topic_root)
        except ValueError as exc:
            raise InvalidInput(f"topic root {topic_root!r}: {exc}") from exc
        hosts = [h for h in dict.fromkeys([broker_host, *extra_hosts]) if h not in LOOPBACK_HOSTS]
        pki.subject_alt_names(hosts)  # validate before writing anything
        uploads = _uploads_endpoint(uploads_host or broker_host, uploads_port, ())
        try:
            config = FleetConfig(
                name=name,
                topic_root=topic_root,
                evidence_suite=evidence_suite,
                broker=BrokerSettings(host=broker_host, port=broker_port, extra_hosts=hosts),
                uploads=uploads,
                validity=validity or ValiditySettings(),
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(f"fleet setting {where}: {first['msg']}") from exc
        refuse_existing([layout.config_file, layout.ca_key], force=force, what="fleet")
        root.mkdir(parents=True, exist_ok=True)
        with fleet_lock(root):
            if force:
                for sub in ("ca", "controller", "clients", "broker", "evidence", "units"):
                    shutil.rmtree(root / sub, ignore_errors=True)
            ca = pki.create_ca(name, days=config.validity.ca_days)
            write_bytes(layout.ca_key, pki.private_key_pem(ca.key), private=True, force=force)
            write_bytes(layout.ca_cert, pki.cert_pem(ca.cert), force=force)
            layout.write_registry(Registry())
            fleet = cls(layout, config)
            fleet._issue_broker(ca)
            fleet._issue_uploads(ca, uploads)
            fleet._issue_client(ca, "controller", pki.Role.CONTROLLER, force=force)
            signing = pki.new_signing_key()
            write_bytes(
                layout.controller_signing_key,
                pki.private_key_pem(signing),
                private=True,
                force=force,
            )
            write_bytes(layout.controller_signing_pub, pki.public_key_pem(signing), force=force)
            evidence = generate_evidence_key(evidence_suite)
            write_bytes(
                layout.evidence_private,
                evidence.to_encrypted_json(evidence_passphrase),
                private=True,
                force=force,
            )
            write_bytes(layout.evidence_public, evidence.public_key().to_json(), force=force)
            fleet._write_crl(ca)
            # fleet.toml last: its presence is what marks a complete fleet.
            write_bytes(layout.config_file, config.to_toml(), force=force)
        return fleet

    # -- reading --------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.layout.root

    @property
    def topics(self) -> Topics:
        return self.config.topics

    def registry(self) -> Registry:
        return self.layout.read_registry()

    def _ca(self) -> pki.CertificateAuthority:
        try:
            key = serialization.load_pem_private_key(self.layout.ca_key.read_bytes(), None)
            cert = pki.load_certificate(self.layout.ca_cert.read_bytes())
        except (OSError, ValueError) as exc:
            raise FleetConfigError(self.layout.ca_dir, f"cannot load the fleet CA: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise FleetConfigError(self.layout.ca_key, "the CA key is not an EC key")
        return pki.CertificateAuthority(key, cert)

    def client_identity(self, name: str) -> ClientIdentity:
        """The TLS identity (valid or not) of a unit (by unit id) or of a centre client
        (`controller`, `simulator-2`, ...)."""
        check_client_name(name)
        issued = self.registry().current(name)
        centre = issued.role in CENTRE_ROLES if issued else role_named_by(name) is not None
        if centre:
            cert, key = self.layout.client_cert(name)
        else:
            cert, key = (
                self.layout.bundle_dir(name) / "unit.crt",
                self.layout.bundle_dir(name) / "unit.key",
            )
        if not cert.is_file() or not key.is_file():
            if centre:
                how = "controller-identity" if name == "controller" else f"add-client {name}"
                raise ProvisioningError(
                    f"no {name!r} identity in this fleet (issue it with 'cctv-provision {how}')"
                )
            raise UnknownUnit(name)
        return ClientIdentity(name, cert, key, self.layout.ca_cert)

    def centre_clients(self, role: pki.Role | None = None) -> dict[str, pki.Role]:
        """Every centre client that holds a valid certificate (of `role`, or of any centre
        role), with its role, by name."""
        return self.registry().valid_names(CENTRE_ROLES if role is None else (role,))

    def controller_identity(self) -> ClientIdentity:
        return self.client_identity("controller")

    def unit_ids(self) -> list[str]:
        units = self.layout.root / "units"
        if not units.is_dir():
            return []
        return sorted(p.name for p in units.iterdir() if (p / "unit.json").is_file())

    def unit_info(self, unit_id: str) -> UnitInfo:
        path = self.layout.unit_dir(check_unit_id(unit_id)) / "unit.json"
        if not path.is_file():
            raise UnknownUnit(unit_id)
        return UnitInfo.model_validate_json(path.read_bytes())

    def unit_status(self, unit_id: str) -> CertStatus:
        entry = self.registry().current(check_unit_id(unit_id), pki.Role.UNIT)
        if entry is None:
            raise UnknownUnit(unit_id)
        return entry.status

    def unit_signing_public_key(self, unit_id: str) -> ed25519.Ed25519PublicKey:
        path = self.layout.unit_dir(check_unit_id(unit_id)) / "signing.pub"
        if not path.is_file():
            raise UnknownUnit(unit_id)
        key = serialization.load_pem_public_key(path.read_bytes())
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise FleetConfigError(path, "not an Ed25519 public key")
        return key

    def controller_signing_key(self) -> ed25519.Ed25519PrivateKey:
        key = serialization.load_pem_private_key(
            self.layout.controller_signing_key.read_bytes(), None
        )
        if not isinstance(key, ed25519.Ed25519PrivateKey):
            raise FleetConfigError(self.layout.controller_signing_key, "not an Ed25519 key")
        return key

    def evidence_public_key(self) -> EvidencePublicKey:
        return EvidencePublicKey.from_json(self.layout.evidence_public.read_bytes())

    def evidence_private_key(self, passphrase: str) -> EvidencePrivateKey:
        try:
            return EvidencePrivateKey.from_encrypted_json(
                self.layout.evidence_private.read_bytes(), passphrase
            )
        except EvidenceKeyError as exc:
            raise InvalidInput(str(exc)) from exc

    # -- issuing --------------------------------------------------------------------------

    def _record(self, cert: x509.Certificate, cn: str, role: pki.Role) -> None:
        entry = IssuedCertificate(
            serial=format(cert.serial_number, "x"),
            cn=cn,
            role=role,
            issued_at=_now(),
            not_after=cert.not_valid_after_utc,
        )
        self.layout.write_registry(self.layout.read_registry().with_issued(entry))

    def _issue_broker(self, ca: pki.CertificateAuthority) -> None:
        hosts = [*LOOPBACK_HOSTS, *self.config.broker.extra_hosts]
        key, cert = pki.issue_certificate(
            ca,
            common_name="broker",
            role=pki.Role.BROKER,
            days=self.config.validity.cert_days,
            hosts=hosts,
        )
        write_bytes(
            self.layout.broker_dir / "broker.key",
            pki.private_key_pem(key),
            private=True,
            force=True,
        )
        write_bytes(self.layout.broker_dir / "broker.crt", pki.cert_pem(cert), force=True)
        self._record(cert, "broker", pki.Role.BROKER)

    def _issue_uploads(self, ca: pki.CertificateAuthority, endpoint: UploadEndpoint) -> None:
        hosts = list(dict.fromkeys([*LOOPBACK_HOSTS, endpoint.host, *endpoint.extra_hosts]))
        key, cert = pki.issue_certificate(
            ca,
            common_name=UPLOADS_CN,
            role=pki.Role.UPLOADS,
            days=self.config.validity.cert_days,
            hosts=hosts,
        )
        write_bytes(self.layout.uploads_key, pki.private_key_pem(key), private=True, force=True)
        write_bytes(self.layout.uploads_cert, pki.cert_pem(cert), force=True)
        self._record(cert, UPLOADS_CN, pki.Role.UPLOADS)

    def set_uploads_endpoint(
        self, host: str, port: int = 8443, extra_hosts: tuple[str, ...] = ()
    ) -> UploadEndpoint:
        """(Re)issue the evidence upload endpoint's server certificate for `host` (and
        `extra_hosts`) and record its URL in fleet.toml; units enrolled (or re-enrolled)
        from now on get that URL in their agent.toml."""
        endpoint = _uploads_endpoint(host, port, extra_hosts)
        with fleet_lock(self.root):
            ca = self._ca()
            self.config = self.config.model_copy(update={"uploads": endpoint})
            self._issue_uploads(ca, endpoint)
            self._write_crl(ca)  # the previous endpoint certificate is superseded
            write_bytes(self.layout.config_file, self.config.to_toml(), force=True)
        return endpoint

    def _issue_client(
        self, ca: pki.CertificateAuthority, name: str, role: pki.Role, *, force: bool
    ) -> ClientIdentity:
        cert_path, key_path = self.layout.client_cert(name)
        refuse_existing([cert_path, key_path], force=force, what=f"{name} identity")
        key, cert = pki.issue_certificate(
            ca, common_name=name, role=role, days=self.config.validity.cert_days
        )
        write_bytes(key_path, pki.private_key_pem(key), private=True, force=True)
        write_bytes(cert_path, pki.cert_pem(cert), force=True)
        self._record(cert, name, role)
        return ClientIdentity(name, cert_path, key_path, self.layout.ca_cert)

    def issue_client(
        self, name: str, *, role: pki.Role | None = None, force: bool = False
    ) -> ClientIdentity:
        """(Re)issue a centre client's identity: `controller`, `controller-2`, `simulator`,
        ..., or any other name with its `role` (see `provisioning.clients`).

        Re-issuing supersedes the previous certificate: it goes on the CRL. The broker's
        ACL grants a new identity its rights once regenerated (`write_broker_config`) and
        reloaded."""
        role = centre_role(name, role)
        with fleet_lock(self.root):
            self._refuse_other_role(name, role)
            ca = self._ca()
            identity = self._issue_client(ca, name, role, force=force)
            self._write_crl(ca)
        return identity

    def _refuse_other_role(self, name: str, role: pki.Role) -> None:
        """One name, one role: a unit can never take a centre client's name (its rights)."""
        issued = self.registry().current(name)
        if issued is not None and issued.role is not role:
            raise InvalidInput(
                f"{name!r} is already a {issued.role.value} identity of this fleet, "
                f"so it cannot be a {role.value}"
            )

    def reissue_broker(self) -> None:
        """A fresh broker key and certificate (e.g. after adding an address)."""
        with fleet_lock(self.root):
            ca = self._ca()
            self._issue_broker(ca)
            self._write_crl(ca)

    def add_unit(
        self,
        unit_id: str,
        *,
        site: str | None = None,
        model: str | None = None,
        ups: str | None = None,
        contractor: str | None = None,
        force: bool = False,
    ) -> Path:
        """Issue a unit's identity and write its enrollment bundle; return the bundle dir."""
        check_unit_id(unit_id)
        ups = check_ups_url(ups) if ups is not None else None
        unit_dir = self.layout.unit_dir(unit_id)
        bundle = self.layout.bundle_dir(unit_id)
        if not force and (unit_dir / "unit.json").exists():
            raise AlreadyExists(unit_dir, f"unit {unit_id!r}")
        refuse_existing([unit_dir / "unit.json", bundle / "unit.key"], force=force)
        with fleet_lock(self.root):
            self._refuse_other_role(unit_id, pki.Role.UNIT)
            ca = self._ca()
            key, cert = pki.issue_certificate(
                ca, common_name=unit_id, role=pki.Role.UNIT, days=self.config.validity.cert_days
            )
            signing = pki.new_signing_key()
            files = unit_files(self.layout, self.config, unit_id, key, cert, signing)
            for path, data, private in files:
                write_bytes(path, data, private=private, force=True)
            info = UnitInfo(
                unit_id=unit_id,
                site=site,
                model=model,
                ups=ups,
                contractor=contractor,
                serial=format(cert.serial_number, "x"),
                issued_at=_now(),
            )
            self._record(cert, unit_id, pki.Role.UNIT)
            self._write_crl(ca)  # a re-issue supersedes the old certificate
            write_bytes(
                unit_dir / "unit.json", info.model_dump_json(indent=2).encode() + b"\n", force=True
            )
        return bundle

    # -- revocation -----------------------------------------------------------------------

    def revoke(self, name: str) -> list[IssuedCertificate]:
        """Revoke every valid certificate of a unit (or centre client); rewrite the CRL.

        The broker reads the CRL and ACL at start and on SIGHUP: regenerate its config
        (`write_broker_config`) and reload or restart it for the revocation to take effect."""
        check_client_name(name)
        with fleet_lock(self.root):
            registry, revoked = self.layout.read_registry().with_revoked(name, _now())
            self.layout.write_registry(registry)
            self._write_crl(self._ca())
        return revoked

    def revoked_names(self) -> set[str]:
        """Client names (unit ids, ...) that hold no valid certificate any more."""
        return self.registry().revoked_names()

    def renew_crl(self) -> Path:
        """Re-sign the CRL with a fresh nextUpdate (run well before it expires)."""
        with fleet_lock(self.root):
            self._write_crl(self._ca())
        return self.layout.crl

    def _write_crl(self, ca: pki.CertificateAuthority) -> None:
        reg = self.layout.read_registry()
        number = reg.crl_number + 1
        days = self.config.validity.crl_days
        write_bytes(
            self.layout.crl,
            pki.build_crl(ca, reg.revocations(), number=number, days=days),
            force=True,
        )
        self.layout.write_registry(reg.model_copy(update={"crl_number": number}))
