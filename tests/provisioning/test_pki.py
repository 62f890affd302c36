"""The certificates, keys and CRL a fleet issues, checked with `cryptography` and `ssl`."""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from provisioning import Fleet, InvalidInput, ValiditySettings
from tests.harness import FLEET_PASSPHRASE


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_and_identities(fleet: Fleet) -> None:
    ca = load(fleet.layout.ca_cert)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert ca.not_valid_after_utc - ca.not_valid_before_utc > timedelta(days=3649)

    unit = load(fleet.client_identity("cam-01").cert_file)
    assert cn(unit) == "cam-01"
    assert eku(unit) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not unit.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(unit.public_key(), ec.EllipticCurvePublicKey)
    assert unit.public_key().curve.name == "secp256r1"  # type: ignore[union-attr]
    lifetime = unit.not_valid_after_utc - unit.not_valid_before_utc
    assert timedelta(days=729) < lifetime < timedelta(days=731)
    unit.verify_directly_issued_by(ca)

    controller = load(fleet.controller_identity().cert_file)
    assert cn(controller) == "controller"
    assert eku(controller) == [ExtendedKeyUsageOID.CLIENT_AUTH]

    broker = load(fleet.layout.broker_dir / "broker.crt")
    assert eku(broker) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]


def test_unit_signing_keys_are_ed25519_and_distinct(fleet: Fleet) -> None:
    keys = [fleet.unit_signing_public_key(u) for u in ("cam-01", "cam-02")]
    assert all(isinstance(k, ed25519.Ed25519PublicKey) for k in keys)
    assert keys[0] != keys[1]
    controller = fleet.controller_signing_key()
    signature = controller.sign(b"command")
    public = (fleet.layout.controller_signing_pub).read_bytes()
    bundle_copy = (fleet.layout.bundle_dir("cam-01") / "controller-signing.pub").read_bytes()
    assert public == bundle_copy
    controller.public_key().verify(signature, b"command")


def test_evidence_key_opens_only_with_the_passphrase(fleet: Fleet) -> None:
    private = fleet.evidence_private_key(FLEET_PASSPHRASE)
    wrapped = fleet.evidence_public_key().wrap(b"k" * 32, b"info")
    assert private.unwrap(wrapped, b"info") == b"k" * 32
    with pytest.raises(InvalidInput, match="wrong passphrase"):
        fleet.evidence_private_key("wrong passphrase!")


def test_extra_broker_hosts_go_into_the_certificate_and_agent_toml(tmp_path: Path) -> None:
    fleet = Fleet.create(
        tmp_path / "f",
        name="Test",
        evidence_passphrase=FLEET_PASSPHRASE,
        broker_host="cctv.example.org",
        broker_port=18883,
        extra_hosts=("10.20.0.5",),
    )
    broker = load(fleet.layout.broker_dir / "broker.crt")
    san = broker.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "cctv.example.org" in san.get_values_for_type(x509.DNSName)
    assert ipaddress.ip_address("10.20.0.5") in san.get_values_for_type(x509.IPAddress)
    fleet.add_unit("cam-01")
    agent = tomllib.loads((fleet.layout.bundle_dir("cam-01") / "agent.toml").read_text())
    assert agent["broker"]["host"] == "cctv.example.org"
    assert agent["broker"]["port"] == 18883


def test_bad_broker_host_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="not a host name"):
        Fleet.create(
            tmp_path / "f",
            name="Test",
            evidence_passphrase=FLEET_PASSPHRASE,
            broker_host="bad host/name",
        )
    assert not (tmp_path / "f").exists()


def test_validity_is_configurable_and_capped_by_the_ca(tmp_path: Path) -> None:
    fleet = Fleet.create(
        tmp_path / "f",
        name="Test",
        evidence_passphrase=FLEET_PASSPHRASE,
        validity=ValiditySettings(ca_days=100, cert_days=365, crl_days=7),
    )
    fleet.add_unit("cam-01")
    ca = load(fleet.layout.ca_cert)
    unit = load(fleet.client_identity("cam-01").cert_file)
    assert unit.not_valid_after_utc <= ca.not_valid_after_utc
    crl = x509.load_pem_x509_crl(fleet.layout.crl.read_bytes())
    assert crl.next_update_utc is not None
    assert crl.next_update_utc - datetime.now(UTC) < timedelta(days=7, minutes=1)


def test_fresh_fleets_have_distinct_cas(fresh_fleet: Callable[..., Fleet]) -> None:
    a, b = fresh_fleet(units=()), fresh_fleet(units=())
    assert a.layout.ca_cert.read_bytes() != b.layout.ca_cert.read_bytes()
