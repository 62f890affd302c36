from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import ConfigError, load_config


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
