"""What the heartbeat carries from the unit's own measurements: the clock offset of the
last NTP measurement while it is fresh, and the temperature of a readable thermal zone;
neither when the unit has no such measurement or sensor."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import ConfigError, load_config
from edge_agent.selftest.measurements import ClockOffsets, max_clock_age_s, read_temperature
from edge_agent.selftest.sntp import NTP_PORT, parse_server
from edge_agent.selftest.system import check_clock, check_temperature
from edge_agent.selftest.thresholds import SelfTestThresholds
from tests.edge_agent.test_selftest_system import free_udp_port, ntp_server


def thermal(root: Path, **zones: str) -> Path:
    for name, value in zones.items():
        (root / name).mkdir(parents=True)
        (root / name / "temp").write_text(value)
    return root


def test_hottest_readable_zone_is_the_temperature(tmp_path: Path) -> None:
    root = thermal(tmp_path, thermal_zone0="41500\n", thermal_zone1="38000", thermal_zone2="n/a")
    reading = read_temperature(root)
    assert reading is not None
    assert (reading.celsius, reading.zone, reading.zones) == (41.5, "thermal_zone0", 2)
    assert check_temperature(root).value == 41.5


def test_no_sensor_no_temperature(tmp_path: Path) -> None:
    assert read_temperature(tmp_path) is None
    assert read_temperature(thermal(tmp_path / "broken", thermal_zone0="")) is None
    assert check_temperature(tmp_path).value is None


def test_clock_offset_is_kept_only_while_fresh() -> None:
    now = [1000.0]
    offsets = ClockOffsets(max_age_s=lambda: 60.0, monotonic=lambda: now[0])
    assert offsets.latest() is None
    offsets.record(-0.25)
    now[0] += 60.0
    assert offsets.latest() == -0.25
    now[0] += 0.1
    assert offsets.latest() is None
    offsets.record(0.5)
    assert offsets.latest() == 0.5


@pytest.mark.parametrize(
    ("schedule", "hours"),
    [(["07:00", "19:00"], 13.0), (["23:00", "07:00", "15:00"], 9.0), (["06:00"], 25.0),
     ([], 25.0), (["23:30", "00:30"], 24.0)],
)  # fmt: skip
def test_offset_lasts_the_longest_wait_between_scheduled_tests(
    schedule: list[str], hours: float
) -> None:
    assert max_clock_age_s(schedule) == hours * 3600


async def test_clock_check_keeps_what_it_measured_against_ntp() -> None:
    offsets = ClockOffsets(max_age_s=lambda: 3600.0)
    async with ntp_server(0.75) as (port, _):
        outcome = await check_clock("127.0.0.1", port=port, measured=offsets)
    assert outcome.verdict == "pass"
    assert offsets.latest() == pytest.approx(0.75, abs=0.05)


async def test_an_unanswered_ntp_query_measures_nothing() -> None:
    offsets = ClockOffsets(max_age_s=lambda: 3600.0)
    fast = SelfTestThresholds().with_overrides({"ntp_timeout_s": 0.3})
    outcome = await check_clock(
        "127.0.0.1", port=free_udp_port(), thresholds=fast, measured=offsets
    )
    assert outcome.value is None and offsets.latest() is None
    # Measured against the controller's clock instead: not an NTP measurement.
    outcome = await check_clock(None, reference_offset_s=0.2, measured=offsets)
    assert outcome.value == 0.2 and offsets.latest() is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [("ntp.example.org", ("ntp.example.org", NTP_PORT)), ("127.0.0.1:1123", ("127.0.0.1", 1123)),
     ("[::1]:124", ("::1", 124)), ("::1", ("::1", NTP_PORT)), ("[fe80::1]", ("fe80::1", NTP_PORT))],
)  # fmt: skip
def test_ntp_server_with_or_without_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_server(text) == expected


@pytest.mark.parametrize("text", [":123", "host:0", "host:http", "host:70000", "[::1]x"])
def test_a_bad_ntp_server_is_refused_at_start(tmp_path: Path, text: str) -> None:
    with pytest.raises(ValueError):
        parse_server(text)
    config = tmp_path / "agent.toml"
    config.write_text(f'unit_id = "cam-01"\n[selftest]\nntp_server = "{text}"\n')
    with pytest.raises(ConfigError, match=r"selftest\.ntp_server"):
        load_config(config)
