"""Centre client identities (`provisioning.clients`, `Fleet.issue_client`) and the broker
config and ACL generated for them: one identity per concurrent centre-side client, rights
by role, never a name shared by a unit and a centre client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from protocol.topics import Channel, Direction
from provisioning import Fleet, InvalidInput, ProvisioningError, UnknownUnit, render_acl
from provisioning.broker import write_broker_config
from provisioning.cli import PASSPHRASE_ENV, app
from provisioning.clients import centre_role
from provisioning.pki import Role

FROM_UNIT = [c for c in Channel if c.direction is Direction.FROM_UNIT]


def acl_grants(acl: str) -> dict[str, list[str]]:
    """The ACL's `user` blocks: user name -> its `topic` lines."""
    blocks: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in acl.splitlines():
        if line.startswith("user "):
            name = line.removeprefix("user ")
            assert name not in blocks, f"user {name} twice in the ACL"
            current = blocks[name] = []
        elif line.startswith("topic "):
            assert current is not None, f"{line!r} outside a user block"
            current.append(line)
    return blocks


def test_generated_config_makes_the_certificate_cn_the_client_id(
    fleet: Fleet, tmp_path: Path
) -> None:
    files = write_broker_config(fleet, tmp_path / "broker", port=18883)
    lines = files.config.read_text().splitlines()
    listener = lines.index("listener 18883 127.0.0.1")
    for option in ("use_identity_as_username true", "use_username_as_clientid true"):
        assert lines.count(option) == 1
        assert lines.index(option) > listener  # in the (only) listener's settings
    assert "use_identity_as_username false" not in lines
    assert not any(line.startswith(("clientid_prefixes", "use_subject_as")) for line in lines)


@pytest.mark.parametrize(
    ("name", "role", "expected"),
    [
        ("controller", None, Role.CONTROLLER),
        ("controller-2", None, Role.CONTROLLER),
        ("controller-2", Role.CONTROLLER, Role.CONTROLLER),
        ("simulator", None, Role.SIMULATOR),
        ("simulator-17", None, Role.SIMULATOR),
        ("probe-1", Role.CONTROLLER, Role.CONTROLLER),
        ("loadgen", Role.SIMULATOR, Role.SIMULATOR),
    ],
)
def test_a_name_carries_its_role_or_is_given_one(
    name: str, role: Role | None, expected: Role
) -> None:
    assert centre_role(name, role) is expected


@pytest.mark.parametrize(
    ("name", "role", "reason"),
    [
        ("probe-1", None, "give the role"),
        ("simulator-2", Role.CONTROLLER, "names a simulator identity"),
        ("controller", Role.SIMULATOR, "names a controller identity"),
        ("probe-1", Role.UNIT, "not a centre client role"),
        ("probe-1", Role.BROKER, "not a centre client role"),
        ("broker", Role.CONTROLLER, "reserved"),
        ("admin", Role.CONTROLLER, "reserved"),
        ("Controller-2", None, "invalid client name"),
        ("../controller", None, "invalid client name"),
        ("", None, "invalid client name"),
    ],
)
def test_bad_centre_client_is_refused(name: str, role: Role | None, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        centre_role(name, role)


def test_a_name_is_a_unit_or_a_centre_client_never_both(
    fresh_fleet: Callable[..., Fleet],
) -> None:
    fleet = fresh_fleet(units=("cam-01",), simulator=False, probes=())
    with pytest.raises(InvalidInput, match="already a unit identity"):
        fleet.issue_client("cam-01", role=Role.CONTROLLER)
    fleet.issue_client("relay-1", role=Role.SIMULATOR)
    with pytest.raises(InvalidInput, match="already a simulator identity"):
        fleet.add_unit("relay-1")
    with pytest.raises(InvalidInput, match="already a simulator identity"):
        fleet.issue_client("relay-1", role=Role.CONTROLLER, force=True)
    assert not (fleet.root / "units" / "relay-1").exists()
    assert fleet.centre_clients() == {"controller": Role.CONTROLLER, "relay-1": Role.SIMULATOR}


def test_client_identity_finds_units_and_centre_clients(
    fresh_fleet: Callable[..., Fleet],
) -> None:
    fleet = fresh_fleet(units=("cam-01",), simulator=False, probes=())
    second = fleet.issue_client("controller-2")
    assert fleet.client_identity("controller-2") == second
    assert second.cert_file == fleet.root / "clients" / "controller-2" / "client.crt"
    assert (
        fleet.client_identity("controller").cert_file == fleet.layout.client_cert("controller")[0]
    )
    assert fleet.client_identity("cam-01").cert_file.parent == fleet.layout.bundle_dir("cam-01")
    with pytest.raises(ProvisioningError, match="add-client simulator-2"):
        fleet.client_identity("simulator-2")
    with pytest.raises(UnknownUnit):
        fleet.client_identity("cam-99")
    with pytest.raises(InvalidInput):
        fleet.client_identity("../ca")


def test_acl_grants_every_valid_centre_identity_by_role(
    fresh_fleet: Callable[..., Fleet],
) -> None:
    fleet = fresh_fleet(units=("cam-01",), probes=("probe-1",))
    for name in ("controller-2", "controller-3", "simulator-2", "simulator-3"):
        fleet.issue_client(name)
    fleet.revoke("controller-3")
    fleet.revoke("simulator-3")
    topics = fleet.topics
    controller = [f"topic readwrite {topics.root}/#"]
    simulator = [f"topic write {topics.fleet_filter(c)}" for c in FROM_UNIT]
    assert acl_grants(render_acl(fleet)) == {
        "controller": controller,
        "controller-2": controller,
        "probe-1": controller,
        "simulator": simulator,
        "simulator-2": simulator,
        "controller-3": ["topic deny #"],
        "simulator-3": ["topic deny #"],
    }
    assert set(fleet.centre_clients(Role.SIMULATOR)) == {"simulator", "simulator-2"}


def test_cli_issues_lists_and_revokes_centre_clients(tmp_path: Path) -> None:
    runner = CliRunner(env={PASSPHRASE_ENV: "a long enough passphrase", "CCTV_FLEET_DIR": None})
    root = str(tmp_path / "fleet")

    def run(*args: str) -> tuple[int, str, str]:
        result = runner.invoke(app, ["--fleet", root, *args])
        return result.exit_code, result.stdout, result.stderr

    assert run("init")[0] == 0
    code, out, _ = run("add-client", "controller-2")
    assert code == 0 and "clients/controller-2/client.crt" in out and "reload" in out
    assert run("add-client", "probe", "--role", "controller")[0] == 0
    code, _, err = run("add-client", "probe-2", "--role", "unit")
    assert code == 2 and "--role must be one of controller, simulator" in err
    code, _, err = run("add-client", "probe-2")
    assert code == 2 and "give the role" in err
    assert run("clients")[1].splitlines() == [
        "controller\tcontroller",
        "controller-2\tcontroller",
        "probe\tcontroller",
    ]
    assert run("revoke", "controller-2")[0] == 0
    assert "controller-2" not in run("clients")[1]
    assert run("broker-config", "--out", str(tmp_path / "broker"))[0] == 0
    acl = tmp_path / "broker" / "acl"
    assert acl_grants(acl.read_text())["controller-2"] == ["topic deny #"]


def test_controller_config_finds_a_second_identity_by_name(
    fresh_fleet: Callable[..., Fleet],
) -> None:
    from controller.config import ControllerSettings

    fleet = fresh_fleet(units=("cam-01",), simulator=False, probes=())
    second = fleet.issue_client("controller-2")
    first = ControllerSettings(fleet_dir=fleet.root).resolved()
    assert first.broker.cert_file == fleet.layout.client_cert("controller")[0]
    other = ControllerSettings(fleet_dir=fleet.root, broker={"identity": "controller-2"}).resolved()
    assert other.broker.cert_file == second.cert_file
    assert other.broker.key_file == second.key_file
    assert other.broker.ca_file == first.broker.ca_file
