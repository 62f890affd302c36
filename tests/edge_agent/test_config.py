from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from edge_agent.config import ConfigError, LinkConfig, load_config
from edge_agent.link import LinkSettings
from edge_agent.power import NutConfig, NutSource, PowerConfig
from edge_agent.service import Agent
from provisioning import Fleet


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_bundle_config_loads_with_paths_beside_it(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, 'unit_id = "cam-01"\n[broker]\nport = 18883\n'))
    assert cfg.broker.port == 18883
    assert cfg.broker.ca_file == tmp_path / "ca.crt"
    assert cfg.storage.data_dir == tmp_path / "data"
    assert cfg.storage.retention_days == 31
    assert cfg.selftest.schedule == ["07:00", "19:00"]


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCTV_AGENT_CAMERA__URL", "rtsp://127.0.0.1:8554/cam")
    cfg = load_config(write(tmp_path, 'unit_id = "cam-01"\n[camera]\nurl = "synthetic:"\n'))
    assert cfg.camera.url == "rtsp://127.0.0.1:8554/cam"


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('unit_id = "cam-01"\n[broker]\nport = 70000\n', "broker.port", "less than or equal"),
        ('unit_id = "cam-01"\n[brokr]\nport = 1\n', "brokr", "Extra inputs"),
        ('unit_id = "Cam/1"\n', "unit_id", "unit id"),
        ('unit_id = "cam-01"\n[selftest]\nschedule = ["25:00"]\n', "selftest.schedule", "HH:MM"),
        ("[broker]\nport = 1\n", "unit_id", "required"),
    ],
)
def test_bad_config_names_key_and_reason(tmp_path: Path, text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.key == key
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_and_unparsable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "unit_id = \n"))


# -- one schema: the link and the power monitor take their sections as they are -------------


def toml_text(doc: dict[str, Any], prefix: str = "") -> str:
    """TOML for nested tables of strings, numbers and booleans."""
    lines = [
        f"{key} = {json.dumps(value)}" for key, value in doc.items() if not isinstance(value, dict)
    ]
    for key, value in doc.items():
        if isinstance(value, dict):
            lines.append(f"\n[{prefix}{key}]\n" + toml_text(value, f"{prefix}{key}."))
    return "\n".join(lines) + "\n"


def unit_bundle(fleet: Fleet, tmp_path: Path) -> Path:
    """A copy of cam-01's enrollment bundle (its agent.toml as cctv-provision wrote it)."""
    folder = tmp_path / "cam-01"
    shutil.copytree(fleet.layout.bundle_dir("cam-01"), folder)
    return folder


#: A value for every link and power setting, none of them the default.
BROKER = {
    "host": "broker.fleet.test",
    "port": 18883,
    "topic_root": "cctv-test/v1",
    "ca_file": "tls/ca.pem",
    "cert_file": "tls/unit.pem",
    "key_file": "tls/unit-key.pem",
    "keepalive_s": 45,
    "connect_timeout_s": 7.5,
    "ack_timeout_s": 9.5,
    "backoff_base_s": 0.25,
    "backoff_cap_s": 12.0,
    "stable_after_s": 11.0,
    "refusals_before_fatal": 5,
    "inflight": 32,
    "close_flush_s": 2.5,
}
LINK = {"heartbeat_interval_s": 12.0, "power_interval_s": 45.0, "outbox_max": 1234}
NUT = {
    "host": "ups.fleet.test",
    "port": 13493,
    "ups": "rack-ups",
    "username": "monuser",
    "password": "not-the-default",
    "timeout_s": 4.5,
}
POWER = {
    "source": "nut",
    "sysfs_root": "battery",
    "poll_interval_s": 2.5,
    "comms_lost_after": 4,
    "low_charge_pct": 30.0,
    "low_runtime_s": 120.0,
    "low_clear_margin_pct": 7.5,
    "low_clear_margin_s": 90.0,
    "nut": NUT,
}


def expected(model: type[BaseModel], values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """`values` as the running objects should hold them: every field of `model` set, to a
    value that is not its default; relative paths read from the bundle folder."""
    assert set(values) == set(model.model_fields), "the test must set every field"
    out: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        value = values[name]
        if isinstance(value, dict):
            continue  # a nested table, checked on its own
        if field.annotation is Path:
            value = (folder / value).resolve()
        assert value != field.get_default(call_default_factory=True), name
        out[name] = value
    return out


async def test_every_link_and_power_setting_reaches_the_running_objects(
    fleet: Fleet, tmp_path: Path
) -> None:
    folder = unit_bundle(fleet, tmp_path)
    doc = tomllib.loads((folder / "agent.toml").read_text())
    doc["broker"] = BROKER
    doc["link"] = LINK
    doc["power"] = POWER
    (folder / "agent.toml").write_text(toml_text(doc))

    agent = Agent(load_config(folder / "agent.toml"))  # as `cctv-agent run` builds it
    try:
        link = agent.link.settings
        for name, value in expected(LinkSettings, BROKER, folder).items():
            assert getattr(link, name) == value, f"broker.{name}"
        assert agent.link.unit_id == "cam-01"

        assert agent.outbox.max_rows == LINK["outbox_max"]
        assert agent.settings.heartbeat_interval_s == LINK["heartbeat_interval_s"]
        assert agent.settings.power_interval_s == LINK["power_interval_s"]
        assert set(LINK) == set(LinkConfig.model_fields)

        assert agent.power is not None
        power = agent.power.config
        for name, value in expected(PowerConfig, POWER, folder).items():
            assert getattr(power, name) == value, f"power.{name}"
        source = agent.power.source
        assert isinstance(source, NutSource) and source.config is power.nut
        for name, value in expected(NutConfig, NUT, folder).items():
            held = getattr(source.config, name)
            if isinstance(held, SecretStr):
                assert "not-the-default" not in repr(held)
                held = held.get_secret_value()
            assert held == value, f"power.nut.{name}"
    finally:
        await agent._close_stores()


def test_the_bundle_agent_toml_loads(fleet: Fleet, tmp_path: Path) -> None:
    folder = unit_bundle(fleet, tmp_path)
    cfg = load_config(folder / "agent.toml")
    assert cfg.unit_id == "cam-01"
    assert cfg.broker.host == fleet.config.broker.host
    assert cfg.broker.port == fleet.config.broker.port
    assert cfg.broker.ca_file == (folder / "ca.crt").resolve()
    assert cfg.keys.signing_key_file == (folder / "unit-signing.key").resolve()
    assert cfg.power.source == "none"


def test_flat_nut_settings_read_as_the_nut_table(tmp_path: Path) -> None:
    flat = (
        'unit_id = "cam-01"\n[power]\nsource = "nut"\nnut_host = "ups.fleet.test"\n'
        'nut_port = 13493\nnut_ups = "rack-ups"\nnut_username = "monuser"\n'
        'nut_password = "not-the-default"\npoll_s = 2.5\nlow_charge_pct = 30.0\n'
    )
    cfg = load_config(write(tmp_path, flat))
    nested = {
        k: v for k, v in POWER.items() if k in ("source", "poll_interval_s", "low_charge_pct")
    }
    nested["nut"] = {k: v for k, v in NUT.items() if k != "timeout_s"}
    assert cfg.power == PowerConfig.model_validate(nested)


@pytest.mark.parametrize(
    ("power", "words"),
    [
        ('nut_host = "a"\n[power.nut]\nhost = "b"\n', "nut_host and nut.host are one setting"),
        ("poll_s = 1\npoll_interval_s = 2\n", "poll_s and poll_interval_s are one setting"),
        ("[power.nut]\nport = 0\n", "greater than or equal to 1"),
        ('nut_ups = "a b"\n', "should match pattern"),
    ],
)
def test_bad_power_settings_name_the_key(tmp_path: Path, power: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'unit_id = "cam-01"\n[power]\n{power}'))
    assert str(info.value).startswith(f"{tmp_path / 'agent.toml'}: power")
    assert words in str(info.value)


def test_the_nut_password_may_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCTV_AGENT_POWER__NUT__PASSWORD", "from-env")
    cfg = load_config(write(tmp_path, 'unit_id = "cam-01"\n[power.nut]\nusername = "u"\n'))
    assert cfg.power.nut.password is not None
    assert cfg.power.nut.password.get_secret_value() == "from-env"
    assert "from-env" not in repr(cfg)
