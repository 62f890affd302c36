"""Power awareness against a real NUT upsd (dummy-ups driver) and real sysfs-like folders."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from edge_agent.power import (
    BatterySysfsError,
    NutConfig,
    NutSource,
    PowerConfig,
    PowerEvent,
    PowerEventKind,
    PowerMonitor,
    SysfsSource,
    UpsReadError,
    UpsUnreachable,
    parse_ups_vars,
    selftest_verdict,
)
from protocol.faults import FaultCode
from tests.harness.nut import DEFAULT_STATE, NutServer, nut_binaries

K = PowerEventKind


def kinds(events: list[PowerEvent]) -> list[PowerEventKind]:
    return [e.kind for e in events]


def drain(queue: asyncio.Queue[PowerEvent]) -> list[PowerEventKind]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait().kind)
    return out


# -- real upsd --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_nut(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NutServer]:
    nut_binaries()
    with NutServer(tmp_path_factory.mktemp("nut")) as server:
        yield server


@pytest.fixture
def nut(shared_nut: NutServer) -> NutServer:
    """The module's upsd, back to a healthy UPS on mains before each test."""
    shared_nut.start_upsd()
    shared_nut.set_state(DEFAULT_STATE)
    return shared_nut


def nut_config(server: NutServer, **overrides: object) -> PowerConfig:
    nut = NutConfig(
        host=server.host,
        port=server.port,
        ups=server.ups_name,
        username=server.username,
        password=SecretStr(server.password),
        timeout_s=1.0,
    )
    values: dict[str, object] = {"source": "nut", "nut": nut, "poll_interval_s": 0.2}
    values["comms_lost_after"] = 2
    values.update(overrides)
    return PowerConfig.model_validate(values)


async def test_healthy_ups_reads_every_field_and_raises_nothing(nut: NutServer) -> None:
    queue: asyncio.Queue[PowerEvent] = asyncio.Queue()
    monitor = PowerMonitor.from_config(nut_config(nut), queue=queue, unit_id="cam-01")
    try:
        assert await monitor.poll_once() == []
        s = monitor.status
        assert (s.source, s.on_battery, s.low_battery, s.replace_battery) == (
            "mains", False, False, False,
        )  # fmt: skip
        assert (s.charge_pct, s.runtime_s, s.input_voltage, s.load_pct) == (100, 3600, 230, 23)
        assert (s.ups_status, s.test_result, s.model) == (
            "OL CHRG", "No test initiated", "Dummy UPS 1500",
        )  # fmt: skip
        assert s.comms_ok and monitor.should_record and monitor.active_faults == frozenset()
        assert monitor.status_for_selftest() == (True, "No test initiated")
        assert queue.empty()
    finally:
        await monitor.aclose()


async def test_mains_failure_then_restored(nut: NutServer) -> None:
    queue: asyncio.Queue[PowerEvent] = asyncio.Queue()
    monitor = PowerMonitor.from_config(nut_config(nut), queue=queue)
    try:
        await monitor.poll_once()
        nut.set_state(ups_status="OB DISCHRG", battery_charge=90, input_voltage=0)
        events = await monitor.poll_once()
        assert kinds(events) == [K.MAINS_FAILURE]
        assert events[0].fault is FaultCode.MAINS_FAILURE and events[0].raised
        assert events[0].status.on_battery and events[0].status.source == "battery"
        # Riding through a mains failure is what the UPS is for: keep recording.
        assert monitor.should_record and not monitor.status.low_battery
        assert await monitor.poll_once() == []  # raised once, not on every poll

        nut.set_state(ups_status="OL CHRG", input_voltage=231.5)
        events = await monitor.poll_once()
        assert kinds(events) == [K.MAINS_RESTORED]
        assert events[0].fault is FaultCode.MAINS_FAILURE and not events[0].raised
        assert monitor.status.input_voltage == 231.5
        assert drain(queue) == [K.MAINS_FAILURE, K.MAINS_RESTORED]
    finally:
        await monitor.aclose()


async def test_low_battery_stops_recording_until_mains_returns(nut: NutServer) -> None:
    monitor = PowerMonitor.from_config(nut_config(nut))
    try:
        await monitor.poll_once()
        nut.set_state(ups_status="OB LB", battery_charge=50, battery_runtime=1800)
        # LB from the UPS counts even with charge and runtime above the unit's thresholds.
        assert kinds(await monitor.poll_once()) == [K.MAINS_FAILURE, K.BATTERY_LOW]
        assert monitor.status.low_battery and not monitor.should_record
        assert monitor.active_faults == {FaultCode.MAINS_FAILURE, FaultCode.BATTERY_LOW}

        nut.set_state(ups_status="OL CHRG", battery_charge=52)
        assert kinds(await monitor.poll_once()) == [K.MAINS_RESTORED, K.BATTERY_LOW_CLEARED]
        assert monitor.should_record and monitor.active_faults == frozenset()
    finally:
        await monitor.aclose()


async def test_charge_and_runtime_thresholds_without_lb(nut: NutServer) -> None:
    monitor = PowerMonitor.from_config(
        nut_config(nut, low_charge_pct=30, low_runtime_s=600, low_clear_margin_pct=5)
    )
    try:
        nut.set_state(ups_status="OB DISCHRG", battery_charge=40, battery_runtime=1200)
        assert kinds(await monitor.poll_once()) == [K.MAINS_FAILURE]
        nut.set_state(battery_charge=29)
        assert kinds(await monitor.poll_once()) == [K.BATTERY_LOW]
        # A reading bouncing just over the threshold does not flap the fault.
        nut.set_state(battery_charge=32)
        assert await monitor.poll_once() == []
        nut.set_state(battery_charge=36)
        assert kinds(await monitor.poll_once()) == [K.BATTERY_LOW_CLEARED]
        nut.set_state(battery_runtime=500)
        assert kinds(await monitor.poll_once()) == [K.BATTERY_LOW]
        assert not monitor.should_record
    finally:
        await monitor.aclose()


async def test_replace_battery_raised_and_cleared(nut: NutServer) -> None:
    monitor = PowerMonitor.from_config(nut_config(nut))
    try:
        await monitor.poll_once()
        nut.set_state(ups_status="OL RB")
        events = await monitor.poll_once()
        assert kinds(events) == [K.REPLACE_BATTERY]
        assert events[0].fault is FaultCode.REPLACE_BATTERY
        assert monitor.status.replace_battery and monitor.should_record
        nut.set_state(ups_status="OL CHRG")
        assert kinds(await monitor.poll_once()) == [K.REPLACE_BATTERY_CLEARED]
    finally:
        await monitor.aclose()


async def test_ups_selftest_failure_stays_until_a_passing_result(nut: NutServer) -> None:
    monitor = PowerMonitor.from_config(nut_config(nut))
    try:
        await monitor.poll_once()
        nut.set_state(ups_test_result="Done and error")
        events = await monitor.poll_once()
        assert kinds(events) == [K.UPS_SELFTEST_FAILED]
        assert events[0].fault is FaultCode.UPS_SELFTEST_FAILED
        assert monitor.status_for_selftest() == (True, "Done and error")
        nut.set_state(ups_test_result="In progress")  # neutral: the failure stands
        assert await monitor.poll_once() == []
        nut.set_state(ups_test_result="Done and passed")
        assert kinds(await monitor.poll_once()) == [K.UPS_SELFTEST_FAILED_CLEARED]
        assert await monitor.check_now() == (True, "Done and passed")
    finally:
        await monitor.aclose()


async def test_upsd_stopped_raises_comms_lost_only_then_restored(nut: NutServer) -> None:
    queue: asyncio.Queue[PowerEvent] = asyncio.Queue()
    monitor = PowerMonitor.from_config(nut_config(nut, comms_lost_after=2), queue=queue)
    try:
        nut.set_state(ups_status="OB DISCHRG", battery_charge=70)
        assert kinds(await monitor.poll_once()) == [K.MAINS_FAILURE]
        nut.stop_upsd()
        assert await monitor.poll_once() == []  # one failed poll is not yet a lost UPS
        assert monitor.status_for_selftest() == (False, "No test initiated")
        assert monitor.last_error is not None and "unreachable" in monitor.last_error
        events = await monitor.poll_once()
        assert kinds(events) == [K.UPS_COMMS_LOST]
        assert events[0].fault is FaultCode.UPS_COMMS_LOST and events[0].raised
        assert await monitor.poll_once() == []
        # Last known values stay, flagged stale; nothing else flips.
        s = monitor.status
        assert not s.comms_ok and s.on_battery and s.charge_pct == 70
        assert monitor.active_faults == {FaultCode.MAINS_FAILURE, FaultCode.UPS_COMMS_LOST}

        nut.start_upsd()
        assert kinds(await monitor.poll_once()) == [K.UPS_COMMS_RESTORED]
        assert monitor.status.comms_ok and monitor.status_for_selftest()[0]
        nut.set_state(ups_status="OL")
        assert kinds(await monitor.poll_once()) == [K.MAINS_RESTORED]
        assert drain(queue) == [
            K.MAINS_FAILURE, K.UPS_COMMS_LOST, K.UPS_COMMS_RESTORED, K.MAINS_RESTORED,
        ]  # fmt: skip
    finally:
        await monitor.aclose()


async def test_run_loop_wakes_the_service_on_low_battery(nut: NutServer) -> None:
    received: list[PowerEventKind] = []

    async def on_event(event: PowerEvent) -> None:
        received.append(event.kind)

    monitor = PowerMonitor.from_config(nut_config(nut, poll_interval_s=0.1), on_event=on_event)
    try:
        await monitor.poll_once()
        assert monitor.status.comms_ok
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(monitor.run(), name="power-monitor")
            generation = monitor.generation
            await asyncio.to_thread(nut.set_state, ups_status="OB LB", battery_charge=8)
            async with asyncio.timeout(5):
                while monitor.should_record:
                    await monitor.wait_for_change(after=generation)
                    generation = monitor.generation
            assert received == [K.MAINS_FAILURE, K.BATTERY_LOW]

            await asyncio.to_thread(nut.set_state, ups_status="OL CHRG")
            async with asyncio.timeout(5):
                while not monitor.should_record:
                    await monitor.wait_for_change(after=generation)
                    generation = monitor.generation
            task.cancel()
        assert received[2:] == [K.MAINS_RESTORED, K.BATTERY_LOW_CLEARED]
    finally:
        await monitor.aclose()


async def test_unknown_ups_and_closed_port_are_clear_errors(nut: NutServer) -> None:
    wrong = NutSource(NutConfig(host=nut.host, port=nut.port, ups="nosuch", timeout_s=1))
    try:
        with pytest.raises(UpsReadError, match="UNKNOWN-UPS"):
            await wrong.read()
    finally:
        await wrong.aclose()
    closed = NutSource(NutConfig(host="127.0.0.1", port=_closed_port(), timeout_s=1))
    try:
        with pytest.raises(UpsUnreachable, match="unreachable"):
            await closed.read()
    finally:
        await closed.aclose()


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- battery sysfs ----------------------------------------------------------------------


def supply(root: Path, name: str, **attrs: object) -> None:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in attrs.items():
        (folder / key).write_text(f"{value}\n")


def sysfs_monitor(root: Path, **overrides: object) -> PowerMonitor:
    values: dict[str, object] = {"source": "sysfs", "sysfs_root": root, "comms_lost_after": 2}
    values.update(overrides)
    return PowerMonitor.from_config(PowerConfig.model_validate(values))


async def test_battery_unit_charging_discharging_then_low(tmp_path: Path) -> None:
    supply(tmp_path, "AC", type="Mains", online=1)
    supply(
        tmp_path, "BAT0", type="Battery", status="Charging", capacity=80,
        capacity_level="Normal", health="Good", present=1, model_name="LP-12",
        manufacturer="Acme", time_to_empty_now=0,
    )  # fmt: skip
    # A wireless mouse's battery is not the unit's.
    supply(tmp_path, "hidpp_battery_0", type="Battery", scope="Device", status="Discharging",
           capacity=3)  # fmt: skip
    monitor = sysfs_monitor(tmp_path)
    assert await monitor.poll_once() == []
    s = monitor.status
    assert (s.source, s.ups_status, s.charge_pct, s.model) == ("mains", "OL CHRG", 80, "Acme LP-12")

    supply(tmp_path, "AC", online=0)
    supply(tmp_path, "BAT0", status="Discharging", capacity=60, time_to_empty_now=7200)
    assert kinds(await monitor.poll_once()) == [K.MAINS_FAILURE]
    assert monitor.status.runtime_s == 7200 and monitor.should_record

    supply(tmp_path, "BAT0", capacity=5, time_to_empty_now=600)
    events = await monitor.poll_once()
    assert kinds(events) == [K.BATTERY_LOW]
    assert events[0].fault is FaultCode.BATTERY_LOW and not monitor.should_record

    supply(tmp_path, "AC", online=1)
    supply(tmp_path, "BAT0", status="Charging", capacity=6)
    assert kinds(await monitor.poll_once()) == [K.MAINS_RESTORED, K.BATTERY_LOW_CLEARED]
    assert monitor.should_record
    assert monitor.status_for_selftest() == (True, None)


async def test_battery_only_tree_follows_the_battery_status(tmp_path: Path) -> None:
    supply(tmp_path, "battery", type="Battery", status="Charging", capacity=90)
    monitor = sysfs_monitor(tmp_path)
    assert await monitor.poll_once() == []
    assert monitor.status.source == "mains"
    supply(tmp_path, "battery", status="Discharging")
    assert kinds(await monitor.poll_once()) == [K.MAINS_FAILURE]
    supply(tmp_path, "battery", capacity=5)
    assert kinds(await monitor.poll_once()) == [K.BATTERY_LOW]
    assert monitor.status.ups_status == "OB DISCHRG"


async def test_battery_health_and_critical_level(tmp_path: Path) -> None:
    supply(tmp_path, "BAT0", type="Battery", status="Full", capacity=100, health="Good")
    monitor = sysfs_monitor(tmp_path)
    await monitor.poll_once()
    supply(tmp_path, "BAT0", health="Dead")
    assert kinds(await monitor.poll_once()) == [K.REPLACE_BATTERY]
    supply(tmp_path, "BAT0", status="Discharging", capacity=45, capacity_level="Critical")
    # The gauge's own Critical counts even above the percent threshold.
    assert kinds(await monitor.poll_once()) == [K.MAINS_FAILURE, K.BATTERY_LOW]
    assert monitor.status.ups_status == "OB DISCHRG LB RB"


async def test_unreadable_sysfs_raises_comms_lost(tmp_path: Path) -> None:
    with pytest.raises(BatterySysfsError, match="no Battery or Mains"):
        await SysfsSource(tmp_path).read()
    monitor = sysfs_monitor(tmp_path / "missing")
    assert await monitor.poll_once() == []
    assert kinds(await monitor.poll_once()) == [K.UPS_COMMS_LOST]
    supply(tmp_path / "missing", "BAT0", type="Battery", status="Full", capacity=100)
    assert kinds(await monitor.poll_once()) == [K.UPS_COMMS_RESTORED]


# -- pure parts ---------------------------------------------------------------------------


def test_parse_ups_vars_flags_and_bad_numbers() -> None:
    r = parse_ups_vars(
        {"ups.status": "OB  DISCHRG FSD", "battery.charge": "104", "battery.runtime": "-1",
         "ups.load": "n/a", "device.model": "Back-UPS"}
    )  # fmt: skip
    assert (r.source, r.device_low, r.replace_battery, r.ups_status) == (
        "battery", True, False, "OB DISCHRG FSD",
    )  # fmt: skip
    assert (r.charge_pct, r.runtime_s, r.load_pct, r.model) == (100, None, None, "Back-UPS")
    assert parse_ups_vars({"ups.status": "OFF"}).source == "unknown"
    with pytest.raises(ValueError, match=r"ups\.status"):
        parse_ups_vars({"battery.charge": "50"})


@pytest.mark.parametrize(
    ("result", "was_failed", "failed"),
    [
        ("Done and error", False, True),
        ("Failed", False, True),
        ("Done and passed", True, False),
        ("In progress", True, True),
        ("No test initiated", False, False),
        (None, True, True),
    ],
)
def test_selftest_verdict(result: str | None, was_failed: bool, failed: bool) -> None:
    assert selftest_verdict(result, was_failed) is failed


async def test_a_failing_callback_does_not_stop_the_monitor(tmp_path: Path) -> None:
    supply(tmp_path, "BAT0", type="Battery", status="Discharging", capacity=50)
    calls: list[PowerEventKind] = []

    def on_event(event: PowerEvent) -> None:
        calls.append(event.kind)
        raise RuntimeError("subscriber bug")

    monitor = PowerMonitor(SysfsSource(tmp_path), on_event=on_event)
    assert kinds(await monitor.poll_once()) == [K.MAINS_FAILURE]
    supply(tmp_path, "BAT0", status="Charging")
    assert kinds(await monitor.poll_once()) == [K.MAINS_RESTORED]
    assert calls == [K.MAINS_FAILURE, K.MAINS_RESTORED]
