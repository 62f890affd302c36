"""The controller's evidence upload endpoint in provisioning: its server certificate from
the fleet CA, its URL in every unit's agent.toml, and `cctv-provision evidence-endpoint`
to move it."""

from __future__ import annotations

import ipaddress
import stat
import tomllib
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from typer.testing import CliRunner

from edge_agent.config import load_config
from provisioning import Fleet
from provisioning.cli import PASSPHRASE_ENV, app
from provisioning.config import CertStatus
from provisioning.fleet import UPLOADS_CN
from provisioning.pki import Role

PASSPHRASE = "a long enough passphrase"


def _names(cert: x509.Certificate) -> set[str]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(n) for n in san.get_values_for_type(x509.IPAddress)
    }


def test_a_new_fleet_has_an_upload_endpoint_and_units_are_told_its_url(tmp_path: Path) -> None:
    fleet = Fleet.create(
        tmp_path / "fleet", name="Test", evidence_passphrase=PASSPHRASE,
        broker_host="broker.example", uploads_host="cctv.example", uploads_port=9443,
    )  # fmt: skip
    cert = x509.load_pem_x509_certificate(fleet.layout.uploads_cert.read_bytes())
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert {"cctv.example", "localhost", "127.0.0.1", str(ipaddress.ip_address("::1"))} <= _names(
        cert
    )
    assert stat.S_IMODE(fleet.layout.uploads_key.stat().st_mode) == 0o600
    issued = fleet.registry().current(UPLOADS_CN)
    assert issued is not None and issued.role is Role.UPLOADS
    # Not a client: it is never listed with the centre clients, nor as a revoked name.
    assert UPLOADS_CN not in fleet.centre_clients() and UPLOADS_CN not in fleet.revoked_names()
    bundle = fleet.add_unit("cam-01")
    doc = tomllib.loads((bundle / "agent.toml").read_text())
    assert doc["evidence"] == {"upload_url": "https://cctv.example:9443", "ca_file": "ca.crt"}
    settings = load_config(bundle / "agent.toml")
    assert settings.evidence.upload_url == "https://cctv.example:9443"
    assert settings.evidence.ca_file == (bundle / "ca.crt").resolve()
    # The endpoint's certificate chains to the CA the bundle trusts.
    ca = x509.load_pem_x509_certificate((bundle / "ca.crt").read_bytes())
    cert.verify_directly_issued_by(ca)


def test_evidence_endpoint_moves_the_endpoint(tmp_path: Path) -> None:
    runner = CliRunner(env={PASSPHRASE_ENV: PASSPHRASE, "CCTV_FLEET_DIR": None})
    root = tmp_path / "fleet"
    result = runner.invoke(app, ["--fleet", str(root), "init", "--name", "Test"])
    assert result.exit_code == 0, result.output
    before = Fleet.open(root).registry().current(UPLOADS_CN)
    assert before is not None
    result = runner.invoke(
        app,
        ["--fleet", str(root), "evidence-endpoint", "--host", "2001:db8::5", "--host",
         "cctv.example", "--port", "10443"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "https://[2001:db8::5]:10443" in result.stdout
    fleet = Fleet.open(root)
    assert fleet.config.uploads is not None
    assert fleet.config.uploads.url == "https://[2001:db8::5]:10443"
    cert = x509.load_pem_x509_certificate(fleet.layout.uploads_cert.read_bytes())
    assert {"2001:db8::5", "cctv.example"} <= _names(cert)
    # The certificate it replaces is superseded, so it is on the CRL.
    old = next(c for c in fleet.registry().certificates if c.serial == before.serial)
    assert old.status is CertStatus.SUPERSEDED
    crl = x509.load_pem_x509_crl(fleet.layout.crl.read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(old.serial_int) is not None
    bundle = fleet.add_unit("cam-01")
    doc = tomllib.loads((bundle / "agent.toml").read_text())
    assert doc["evidence"]["upload_url"] == "https://[2001:db8::5]:10443"
    result = runner.invoke(app, ["--fleet", str(root), "evidence-endpoint", "--host", "bad host"])
    assert result.exit_code == 2 and "not a host name" in result.stderr
