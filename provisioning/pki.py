"""X.509 for the fleet: a private CA, TLS identities (ECDSA P-256) and the CRL.

The broker trusts exactly this CA (`require_certificate true`), and takes the client
certificate's CN as the MQTT username and client id (`use_identity_as_username`,
`use_username_as_clientid`), so the CN of a unit's certificate is its unit id, the ACL's
`%u` and its session's name.

Roles and their extensions:
    ca          basicConstraints CA:true (pathlen 0), keyUsage keyCertSign + cRLSign
    broker      extendedKeyUsage serverAuth, subjectAltName for every address units dial
    uploads     the controller's evidence upload endpoint (HTTPS): as broker
    unit, controller, simulator
                extendedKeyUsage clientAuth
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning.errors import InvalidInput

__all__ = [
    "CertificateAuthority",
    "Revocation",
    "Role",
    "build_crl",
    "cert_pem",
    "create_ca",
    "issue_certificate",
    "load_certificate",
    "new_signing_key",
    "new_tls_key",
    "private_key_pem",
    "public_key_pem",
    "subject_alt_names",
]

#: Backdate notBefore a little so a unit whose clock lags accepts a certificate issued now.
_CLOCK_SKEW = timedelta(minutes=10)


class Role(StrEnum):
    UNIT = "unit"
    CONTROLLER = "controller"
    SIMULATOR = "simulator"
    BROKER = "broker"
    #: The controller's HTTPS endpoint units upload evidence to.
    UPLOADS = "uploads"

    @property
    def is_client(self) -> bool:
        return not self.is_server

    @property
    def is_server(self) -> bool:
        return self in (Role.BROKER, Role.UPLOADS)


@dataclass(frozen=True)
class CertificateAuthority:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


@dataclass(frozen=True)
class Revocation:
    serial: int
    revoked_at: datetime
    reason: x509.ReasonFlags = x509.ReasonFlags.unspecified


def new_tls_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def new_signing_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def private_key_pem(key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: ed25519.Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_certificate(data: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(data)


def _name(common_name: str, organisation: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _serial() -> int:
    # 159 random bits: positive, at most 20 octets (RFC 5280 4.1.2.2).
    return secrets.randbits(159) | 1


def create_ca(organisation: str, *, days: int, now: datetime | None = None) -> CertificateAuthority:
    now = now or datetime.now(UTC)
    key = new_tls_key()
    name = _name(f"{organisation} fleet CA", organisation)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key, cert)


def subject_alt_names(hosts: list[str]) -> list[x509.GeneralName]:
    """IP addresses become iPAddress entries, anything else a dNSName."""
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host or any(c in host for c in " /:@"):
                raise InvalidInput(f"not a host name or IP address: {host!r}") from None
            names.append(x509.DNSName(host))
    return names


def issue_certificate(
    ca: CertificateAuthority,
    *,
    common_name: str,
    role: Role,
    days: int,
    hosts: list[str] | None = None,
    now: datetime | None = None,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A fresh P-256 key and its certificate signed by `ca`."""
    now = now or datetime.now(UTC)
    key = new_tls_key()
    organisation = ca.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    eku = ExtendedKeyUsageOID.SERVER_AUTH if role.is_server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, str(organisation)))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(min(now + timedelta(days=days), ca.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if hosts:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(subject_alt_names(hosts)), critical=False
        )
    return key, builder.sign(ca.key, hashes.SHA256())


def build_crl(
    ca: CertificateAuthority,
    revocations: list[Revocation],
    *,
    number: int,
    days: int,
    now: datetime | None = None,
) -> bytes:
    """A PEM CRL listing `revocations`, valid for `days`.

    OpenSSL (and so Mosquitto) refuses EVERY client once the CRL's nextUpdate has passed,
    so the CRL must be re-signed before then (`cctv-provision renew-crl`)."""
    now = now or datetime.now(UTC)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(now - _CLOCK_SKEW)
        .next_update(now + timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    for rev in revocations:
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(rev.serial)
            .revocation_date(rev.revoked_at)
            .add_extension(x509.CRLReason(rev.reason), critical=False)
            .build()
        )
        builder = builder.add_revoked_certificate(entry)
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
