"""`cctv-provision` through typer's CliRunner (in-process) and once as a real process."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cryptography import x509
from typer.testing import CliRunner

from protocol.evidence_keys import EvidenceSuite
from protocol.topics import Channel, Direction, Topics
from provisioning import Fleet
from provisioning.bundle import BUNDLE_FILES
from provisioning.cli import PASSPHRASE_ENV, app

PASSPHRASE = "a long enough passphrase"
PRIVATE_FILES = [
    "ca/ca.key",
    "controller/controller.key",
    "controller/signing.key",
    "broker/broker.key",
    "evidence/evidence-private.json",
]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={PASSPHRASE_ENV: PASSPHRASE, "CCTV_FLEET_DIR": None})


def ok(runner: CliRunner, fleet: Path, *args: str) -> str:
    result = runner.invoke(app, ["--fleet", str(fleet), *args])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return result.stdout


def refused(runner: CliRunner, fleet: Path, *args: str, input: str | None = None) -> str:
    """Exit code 2 and exactly one line on stderr, no traceback; returns that line."""
    result = runner.invoke(app, ["--fleet", str(fleet), *args], input=input)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.output
    return lines[0]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fleet_dir(tmp_path: Path, runner: CliRunner) -> Path:
    root = tmp_path / "fleet"
    ok(runner, root, "init", "--name", "Test Council")
    ok(runner, root, "add-unit", "cam-01", "--site", "High St", "--ups", "nut://ups.local/ups1")
    return root


def test_init_and_add_unit_write_private_keys_0600_and_a_complete_bundle(fleet_dir: Path) -> None:
    for rel in PRIVATE_FILES:
        assert mode(fleet_dir / rel) == 0o600, rel
    for rel in (
        "ca/ca.crt",
        "ca/crl.pem",
        "controller/signing.pub",
        "evidence/evidence-public.json",
    ):
        assert mode(fleet_dir / rel) == 0o644, rel
    bundle = fleet_dir / "units/cam-01/bundle"
    assert sorted(p.name for p in bundle.iterdir()) == sorted(BUNDLE_FILES)
    assert mode(bundle / "unit.key") == 0o600
    assert mode(bundle / "unit-signing.key") == 0o600
    assert (fleet_dir / "units/cam-01/signing.pub").is_file()
    # No fleet secret travels with the unit.
    ca_key = (fleet_dir / "ca/ca.key").read_bytes()
    for path in bundle.iterdir():
        assert path.read_bytes() != ca_key
        assert b"cctv-evidence-private" not in path.read_bytes()


def test_agent_toml_points_at_the_bundle_files(fleet_dir: Path) -> None:
    bundle = fleet_dir / "units/cam-01/bundle"
    doc = tomllib.loads((bundle / "agent.toml").read_text())
    assert doc["unit_id"] == "cam-01"
    assert doc["broker"]["host"] == "127.0.0.1"
    assert doc["broker"]["port"] == 8883
    assert doc["broker"]["topic_root"] == "cctv/v1"
    assert doc["camera"] == {"url": "synthetic:"}
    assert doc["storage"] == {"data_dir": "data"}
    files = [doc["broker"][k] for k in ("ca_file", "cert_file", "key_file")]
    files += list(doc["keys"].values())
    assert sorted(files) == sorted(f for f in BUNDLE_FILES if f != "agent.toml")
    for name in files:
        assert (bundle / name).is_file()
    cert = x509.load_pem_x509_certificate((bundle / doc["broker"]["cert_file"]).read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "cam-01"


def test_unit_inventory_is_recorded(fleet_dir: Path) -> None:
    info = Fleet.open(fleet_dir).unit_info("cam-01")
    assert info.site == "High St"
    assert info.ups == "nut://ups.local:3493/ups1"


def test_nothing_is_overwritten_without_force(runner: CliRunner, fleet_dir: Path) -> None:
    ca_key = (fleet_dir / "ca/ca.key").read_bytes()
    unit_key = (fleet_dir / "units/cam-01/bundle/unit.key").read_bytes()
    assert "--force" in refused(runner, fleet_dir, "init")
    assert "--force" in refused(runner, fleet_dir, "add-unit", "cam-01")
    assert (fleet_dir / "ca/ca.key").read_bytes() == ca_key
    assert (fleet_dir / "units/cam-01/bundle/unit.key").read_bytes() == unit_key

    out = fleet_dir.parent / "broker"
    ok(runner, fleet_dir, "broker-config", "--out", str(out), "--port", "18883")
    assert "--force" in refused(runner, fleet_dir, "broker-config", "--out", str(out))
    ok(runner, fleet_dir, "broker-config", "--out", str(out), "--force")

    ok(runner, fleet_dir, "add-unit", "cam-01", "--force")
    assert (fleet_dir / "units/cam-01/bundle/unit.key").read_bytes() != unit_key
    ok(runner, fleet_dir, "init", "--force")
    assert (fleet_dir / "ca/ca.key").read_bytes() != ca_key
    assert Fleet.open(fleet_dir).unit_ids() == []


def test_reissued_unit_certificate_is_superseded_on_the_crl(
    runner: CliRunner, fleet_dir: Path
) -> None:
    old = x509.load_pem_x509_certificate((fleet_dir / "units/cam-01/unit.crt").read_bytes())
    ok(runner, fleet_dir, "add-unit", "cam-01", "--force")
    crl = x509.load_pem_x509_crl((fleet_dir / "ca/crl.pem").read_bytes())
    entry = crl.get_revoked_certificate_by_serial_number(old.serial_number)
    assert entry is not None
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason is (
        x509.ReasonFlags.superseded
    )
    assert ok(runner, fleet_dir, "units").split("\t")[:2] == ["cam-01", "valid"]


@pytest.mark.parametrize(
    ("unit_id", "reason"),
    [
        ("Cam 01", "invalid unit id"),
        ("_cam", "invalid unit id"),
        ("controller", "reserved"),
        ("x" * 64, "invalid unit id"),
    ],
)
def test_bad_unit_id_is_one_line(
    runner: CliRunner, fleet_dir: Path, unit_id: str, reason: str
) -> None:
    assert reason in refused(runner, fleet_dir, "add-unit", unit_id)
    assert not (fleet_dir / "units" / unit_id).exists()


def test_bad_ups_address_is_one_line(runner: CliRunner, fleet_dir: Path) -> None:
    line = refused(runner, fleet_dir, "add-unit", "cam-02", "--ups", "http://x/ups")
    assert "nut://" in line
    assert not (fleet_dir / "units/cam-02").exists()


def test_unknown_unit_and_double_revocation(runner: CliRunner, fleet_dir: Path) -> None:
    assert "unknown unit 'cam-99'" in refused(runner, fleet_dir, "revoke", "cam-99")
    assert "revoked cam-01" in ok(runner, fleet_dir, "revoke", "cam-01")
    assert "already revoked" in refused(runner, fleet_dir, "revoke", "cam-01")


def test_missing_fleet_dir_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    for args in (["add-unit", "cam-01"], ["revoke", "cam-01"], ["broker-config", "--out", "x"]):
        assert "no fleet at" in refused(runner, missing, *args)
    assert not missing.exists()


def test_fleet_dir_from_the_environment(tmp_path: Path) -> None:
    runner = CliRunner(env={PASSPHRASE_ENV: PASSPHRASE, "CCTV_FLEET_DIR": str(tmp_path / "f")})
    assert runner.invoke(app, ["init"]).exit_code == 0
    assert (tmp_path / "f/fleet.toml").is_file()


def test_revoke_puts_the_serial_on_a_crl_signed_by_the_ca(
    runner: CliRunner, fleet_dir: Path
) -> None:
    cert = x509.load_pem_x509_certificate((fleet_dir / "units/cam-01/unit.crt").read_bytes())
    ca = x509.load_pem_x509_certificate((fleet_dir / "ca/ca.crt").read_bytes())
    before = x509.load_pem_x509_crl((fleet_dir / "ca/crl.pem").read_bytes())
    assert before.get_revoked_certificate_by_serial_number(cert.serial_number) is None
    out = ok(runner, fleet_dir, "revoke", "cam-01")
    assert "restart or reload the broker" in " ".join(out.split())
    crl = x509.load_pem_x509_crl((fleet_dir / "ca/crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None
    assert crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    assert crl.issuer == ca.subject
    number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    old_number = before.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    assert number > old_number
    assert Fleet.open(fleet_dir).unit_status("cam-01").value == "revoked"

    acl_dir = fleet_dir.parent / "broker"
    ok(runner, fleet_dir, "broker-config", "--out", str(acl_dir))
    assert (acl_dir / "crl.pem").read_bytes() == (fleet_dir / "ca/crl.pem").read_bytes()
    assert "user cam-01\ntopic deny #" in (acl_dir / "acl").read_text()


def test_broker_config_is_built_from_the_topic_table(runner: CliRunner, fleet_dir: Path) -> None:
    out = fleet_dir.parent / "broker"
    ok(runner, fleet_dir, "broker-config", "--out", str(out), "--port", "18999")
    conf = (out / "mosquitto.conf").read_text()
    for line in (
        "listener 18999 127.0.0.1",
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "allow_anonymous false",
        f"crlfile {out / 'crl.pem'}",
        f"acl_file {out / 'acl'}",
    ):
        assert line in conf.splitlines()
    assert sum(line.startswith("listener") for line in conf.splitlines()) == 1
    assert mode(out / "broker.key") == 0o600
    acl = (out / "acl").read_text().splitlines()
    topics = Topics()
    for channel in Channel:
        access = "write" if channel.direction is Direction.FROM_UNIT else "read"
        assert f"pattern {access} {topics.acl_pattern(channel)}" in acl
    # Nothing else: exactly one pattern per channel.
    assert sum(line.startswith("pattern") for line in acl) == len(Channel)
    assert "topic readwrite cctv/v1/#" in acl


def test_the_passphrase_is_never_an_argument(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["--fleet", str(tmp_path / "f"), "init", "--passphrase", "x" * 12])
    assert result.exit_code == 2
    assert "no such option" in result.stderr.lower()
    assert not (tmp_path / "f").exists()


def test_passphrase_prompt_confirms_and_seals_the_evidence_key(tmp_path: Path) -> None:
    runner = CliRunner(env={PASSPHRASE_ENV: None})
    root = tmp_path / "f"
    result = runner.invoke(
        app,
        ["--fleet", str(root), "init", "--evidence-suite", "mlkem768-x25519"],
        input=f"{PASSPHRASE}\n{PASSPHRASE}\n",
    )
    assert result.exit_code == 0, result.stderr
    assert PASSPHRASE not in result.output  # hidden input is not echoed
    fleet = Fleet.open(root)
    private = fleet.evidence_private_key(PASSPHRASE)
    assert private.suite is EvidenceSuite.MLKEM768_X25519
    assert private.public_key() == fleet.evidence_public_key()
    with pytest.raises(ValueError, match="wrong passphrase"):
        fleet.evidence_private_key("not the passphrase")


def test_short_or_missing_passphrase_is_refused(tmp_path: Path) -> None:
    runner = CliRunner(env={PASSPHRASE_ENV: "short"})
    assert "at least 8" in refused(runner, tmp_path / "a", "init")
    runner = CliRunner(env={PASSPHRASE_ENV: None})
    result = runner.invoke(app, ["--fleet", str(tmp_path / "b"), "init"], input="")
    assert result.exit_code == 2
    _prompt, line = result.stderr.strip().splitlines()  # the prompt, then one error line
    assert line.startswith("error: ")
    assert PASSPHRASE_ENV in line
    assert not (tmp_path / "b/fleet.toml").exists()
    assert not (tmp_path / "a/fleet.toml").exists()


def test_simulator_and_controller_identities(runner: CliRunner, fleet_dir: Path) -> None:
    out = ok(runner, fleet_dir, "add-client", "simulator")
    assert "clients/simulator/client.crt" in out
    assert mode(fleet_dir / "clients/simulator/client.key") == 0o600
    assert "--force" in refused(runner, fleet_dir, "add-client", "simulator")
    assert "give the role" in refused(runner, fleet_dir, "add-client", "cam-01")
    unit_name = refused(runner, fleet_dir, "add-client", "cam-01", "--role", "controller")
    assert "already a unit identity" in unit_name
    key = (fleet_dir / "controller/controller.key").read_bytes()
    assert "controller/controller.crt" in ok(runner, fleet_dir, "controller-identity")
    assert (fleet_dir / "controller/controller.key").read_bytes() == key
    ok(runner, fleet_dir, "controller-identity", "--force")
    assert (fleet_dir / "controller/controller.key").read_bytes() != key
    assert mode(fleet_dir / "controller/controller.key") == 0o600


def test_as_a_real_process(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2]
    env = {**os.environ, PASSPHRASE_ENV: PASSPHRASE, "PYTHONPATH": str(repo)}
    cmd = [sys.executable, "-m", "provisioning", "--fleet", str(tmp_path / "f")]
    help_text = subprocess.run(
        [*cmd, "--help"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    for command in ("init", "add-unit", "revoke", "broker-config", "controller-identity"):
        assert command in help_text
    bad = subprocess.run(
        [*cmd, "add-unit", "Bad Id"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert bad.stderr.startswith("error: ")


def test_schema_export(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "schema"
    listed = ok(runner, tmp_path / "unused-fleet", "schema", str(out)).split()
    assert listed
    for path in map(Path, listed):
        assert path.parent == out
        assert path.read_text().lstrip().startswith("{")
