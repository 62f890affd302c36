"""System checks against real things: a temp directory, a read-only filesystem, a UDP NTP
responder on loopback, a sysfs-shaped thermal folder; then the runner, fault hysteresis,
the engineer's table and the schedule."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import pytest
from rich.console import Console

from edge_agent.selftest import (
    CheckOutcome,
    FaultTracker,
    NtpError,
    ScheduleError,
    SelfTestCheck,
    SelfTestRunner,
    SelfTestThresholds,
    ThresholdError,
    check_broker,
    check_clock,
    check_recording,
    check_storage,
    check_temperature,
    check_ups,
    next_run,
    next_runs,
    render_table,
    sntp_query,
)
from edge_agent.selftest.sntp import from_ntp, to_ntp
from edge_agent.selftest.system import PROBE_NAME
from protocol.faults import FaultCode
from protocol.messages import SelfTestReport as SelfTestReportMessage
from tests.harness import require_binary

PACKET = struct.Struct("!BBbb11I")

# --------------------------------------------------------------------------- storage


def test_storage_on_a_real_directory(tmp_path: Path) -> None:
    outcome = check_storage(tmp_path)
    assert outcome.verdict == "pass", outcome
    assert outcome.value is not None and 0 < outcome.value <= 100
    assert outcome.unit == "%" and "writable" in outcome.message
    assert not (tmp_path / PROBE_NAME).exists()


def test_storage_low_space_by_threshold(tmp_path: Path) -> None:
    strict = SelfTestThresholds().with_overrides(
        {"storage_free_warn_pct": 100.0, "storage_free_fail_pct": 99.999}
    )
    outcome = check_storage(tmp_path, strict)
    assert outcome.verdict == "fail" and outcome.fault is FaultCode.STORAGE_LOW


def test_storage_missing_or_not_a_directory(tmp_path: Path) -> None:
    missing = check_storage(tmp_path / "gone")
    assert missing.verdict == "fail" and missing.fault is FaultCode.STORAGE_FAILED
    assert "No such file" in missing.message
    afile = tmp_path / "file"
    afile.write_text("x")
    not_dir = check_storage(afile)
    assert not_dir.verdict == "fail" and not_dir.fault is FaultCode.STORAGE_FAILED
    assert "cannot write" in not_dir.message


@contextlib.contextmanager
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory this process cannot write: permissions for a normal user; for root
    (who ignores them) a read-only tmpfs mount."""
    target = tmp_path / "ro"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o500)
        try:
            yield target
        finally:
            target.chmod(0o700)
        return
    mount, umount = require_binary("mount"), require_binary("umount")
    done = subprocess.run(
        [mount, "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, f"cannot mount a read-only tmpfs: {done.stderr.strip()}"
    try:
        yield target
    finally:
        subprocess.run([umount, str(target)], check=False)


def test_storage_unwritable_directory(tmp_path: Path) -> None:
    with read_only_dir(tmp_path) as target:
        outcome = check_storage(target)
    assert outcome.verdict == "fail" and outcome.fault is FaultCode.STORAGE_FAILED
    assert outcome.message.startswith(f"cannot write to {target}")


# ----------------------------------------------------------------------------- clock


class NtpResponder(asyncio.DatagramProtocol):
    """A real SNTP server on loopback whose clock runs `offset` seconds ahead of ours."""

    def __init__(self, offset: float, *, stratum: int = 2, silent: bool = False) -> None:
        self.offset, self.stratum, self.silent = offset, stratum, silent
        self.transport: asyncio.DatagramTransport | None = None
        self.requests = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.requests += 1
        if self.silent or self.transport is None or len(data) < PACKET.size:
            return
        request = PACKET.unpack_from(data)
        received = to_ntp(time.time() + self.offset)
        sent = to_ntp(time.time() + self.offset)
        reply = PACKET.pack(
            0x24, self.stratum, 4, -20, 0, 0, 0x7F000001,
            *received, request[13], request[14], *received, *sent,
        )  # fmt: skip
        self.transport.sendto(reply, addr)


@contextlib.asynccontextmanager
async def ntp_server(offset: float, **kw: object) -> AsyncIterator[tuple[int, NtpResponder]]:
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.create_datagram_endpoint(
        lambda: NtpResponder(offset, **kw),  # type: ignore[arg-type]
        local_addr=("127.0.0.1", 0),
    )
    try:
        yield transport.get_extra_info("sockname")[1], protocol
    finally:
        transport.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_ntp_timestamps_round_trip() -> None:
    now = time.time()
    assert from_ntp(*to_ntp(now)) == pytest.approx(now, abs=1e-6)


@pytest.mark.parametrize(("offset", "verdict"), [(0.0, "pass"), (2.5, "warn"), (-30.0, "fail")])
async def test_clock_against_a_local_ntp_server(offset: float, verdict: str) -> None:
    async with ntp_server(offset) as (port, server):
        outcome = await check_clock("127.0.0.1", port=port)
    assert server.requests == 1
    assert outcome.verdict == verdict, outcome
    assert outcome.value == pytest.approx(offset, abs=0.05)
    assert outcome.unit == "s" and outcome.threshold == 5.0
    assert "NTP 127.0.0.1" in outcome.message


async def test_sntp_query_measures_offset_and_delay() -> None:
    async with ntp_server(-1.25) as (port, _):
        result = await sntp_query("127.0.0.1", port, timeout_s=2.0)
    assert result.offset_s == pytest.approx(-1.25, abs=0.05)
    assert 0 <= result.delay_s < 0.5 and result.stratum == 2


async def test_unsynchronised_server_is_refused() -> None:
    async with ntp_server(0.0, stratum=0) as (port, _):
        with pytest.raises(NtpError, match="not synchronised"):
            await sntp_query("127.0.0.1", port, timeout_s=2.0)


async def test_clock_with_ntp_unreachable_is_not_assessed_with_the_reason() -> None:
    fast = SelfTestThresholds().with_overrides({"ntp_timeout_s": 0.3})
    async with ntp_server(0.0, silent=True) as (port, server):
        started = time.monotonic()
        silent = await check_clock("127.0.0.1", port=port, thresholds=fast)
        assert time.monotonic() - started < 2.0
    assert server.requests == 1
    assert silent.verdict == "not_assessed" and silent.value is None
    assert "no answer within 0.3 s" in silent.message
    closed = await check_clock("127.0.0.1", port=free_udp_port(), thresholds=fast)
    assert closed.verdict == "not_assessed"
    assert closed.message.startswith("not assessed: NTP 127.0.0.1")


async def test_clock_falls_back_to_the_controllers_offset() -> None:
    fast = SelfTestThresholds().with_overrides({"ntp_timeout_s": 0.3})
    outcome = await check_clock(
        "127.0.0.1", port=free_udp_port(), reference_offset_s=7.5, thresholds=fast
    )
    assert outcome.verdict == "fail" and outcome.value == 7.5
    assert "controller's clock" in outcome.message and "NTP 127.0.0.1" in outcome.message
    nothing = await check_clock(None)
    assert nothing.verdict == "not_assessed" and "no NTP server configured" in nothing.message


# ----------------------------------------------------------------------- temperature


def make_zone(root: Path, name: str, content: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "temp").write_text(content)


def test_temperature_from_a_sysfs_folder(tmp_path: Path) -> None:
    make_zone(tmp_path, "thermal_zone0", "45000\n")
    make_zone(tmp_path, "thermal_zone1", "61500\n")
    make_zone(tmp_path, "thermal_zone2", "garbage\n")
    ok = check_temperature(tmp_path)
    assert ok.verdict == "pass" and ok.value == 61.5 and "thermal_zone1" in ok.message
    make_zone(tmp_path, "thermal_zone3", "91000\n")
    hot = check_temperature(tmp_path)
    assert hot.verdict == "fail" and hot.value == 91.0 and hot.fault is FaultCode.OVER_TEMPERATURE


def test_temperature_without_sensors(tmp_path: Path) -> None:
    outcome = check_temperature(tmp_path)
    assert outcome.verdict == "not_assessed" and "no readable thermal zone" in outcome.message


# --------------------------------------------------------------- recording, UPS, broker


def test_recording_progress() -> None:
    now = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    fresh = now - timedelta(seconds=20)
    ok = check_recording(fresh, segment_intact=lambda: True, now=now)
    assert ok.verdict == "pass" and ok.value == 20.0 and "intact" in ok.message
    stalled = check_recording(now - timedelta(minutes=10), now=now)
    assert stalled.verdict == "fail" and stalled.fault is FaultCode.RECORDING_STALLED
    damaged = check_recording(fresh, segment_intact=lambda: False, now=now)
    assert damaged.verdict == "fail" and "damaged" in damaged.message

    def broken() -> bool:
        raise OSError("trailer missing")

    unverifiable = check_recording(fresh, segment_intact=broken, now=now)
    assert unverifiable.verdict == "fail" and "trailer missing" in unverifiable.message
    assert check_recording(None, now=now).verdict == "fail"
    assert check_recording(None, recording_expected=False, now=now).verdict == "pass"


async def test_ups_status() -> None:
    async def polled() -> tuple[bool, str | None]:
        return True, "Done and passed"

    assert (await check_ups(polled)).verdict == "pass"
    lost = await check_ups(lambda: (False, None))
    assert lost.verdict == "fail" and lost.fault is FaultCode.UPS_COMMS_LOST
    failed = await check_ups(lambda: (True, "Done and error"))
    assert failed.verdict == "fail" and failed.fault is FaultCode.UPS_SELFTEST_FAILED
    assert (await check_ups(lambda: (True, "Done and warning"))).verdict == "warn"
    assert (await check_ups(lambda: (True, "No test initiated"))).verdict == "pass"
    assert (await check_ups(None)).message == "no UPS fitted"


async def test_broker_round_trip() -> None:
    async def quick() -> float | None:
        return 0.04

    ok = await check_broker(quick)
    assert ok.verdict == "pass" and ok.value == 0.04 and ok.message == "round trip 40 ms"
    assert (await check_broker(lambda: 3.0)).verdict == "warn"
    gone = await check_broker(lambda: None)
    assert gone.verdict == "fail" and gone.fault is FaultCode.BROKER_UNREACHABLE


# ------------------------------------------------------------------------ the runner


async def test_runner_turns_crashes_and_overruns_into_failures(tmp_path: Path) -> None:
    def explodes() -> CheckOutcome:
        raise RuntimeError("sensor bus wedged")

    async def hangs() -> CheckOutcome:
        await asyncio.sleep(30)
        raise AssertionError("not reached")

    runner = SelfTestRunner(
        [
            SelfTestCheck("storage", lambda: check_storage(tmp_path), blocking=True),
            SelfTestCheck("temperature", explodes, FaultCode.OVER_TEMPERATURE, blocking=True),
            SelfTestCheck("broker", hangs, FaultCode.BROKER_UNREACHABLE, timeout_s=0.2),
            SelfTestCheck("ups", lambda: check_ups(lambda: (True, "Done and passed"))),
        ]
    )
    started = time.monotonic()
    report = await runner.run("command")
    assert time.monotonic() - started < 5
    assert [o.name for o in report.outcomes] == ["storage", "temperature", "broker", "ups"]
    assert report.verdict == "fail"
    crashed = report.outcome("temperature")
    assert crashed.verdict == "fail" and crashed.fault is FaultCode.OVER_TEMPERATURE
    assert crashed.message == "check error: RuntimeError: sensor bus wedged"
    overran = report.outcome("broker")
    assert overran.message == "check did not finish within 0.2 s"
    assert report.outcome("storage").verdict == "pass"

    message = report.to_message(unit_id="cam-0001", seq=7, boot_id="boot-1", report_id="r-1")
    assert isinstance(message, SelfTestReportMessage)
    assert message.verdict == "fail" and len(message.checks) == 4 and message.trigger == "command"

    console = Console(record=True, width=180)
    console.print(render_table(report))
    text = console.export_text()
    for needle in ("storage", "FAIL", "sensor bus wedged", "Overall: FAIL", "Unit is too hot"):
        assert needle in text


async def test_runner_flattens_suites_and_refuses_non_outcomes() -> None:
    pair = [
        CheckOutcome("a", "pass", 1.0, 2.0, "s", "fine"),
        CheckOutcome("b", "warn", 3.0, 2.0, "s", "slow"),
    ]

    async def suite() -> list[CheckOutcome]:
        return pair

    runner = SelfTestRunner(
        [
            SelfTestCheck("suite", suite),
            SelfTestCheck("odd", lambda: "yes", FaultCode.STORAGE_FAILED),  # type: ignore[arg-type,return-value]
        ]
    )
    report = await runner.run()
    assert [o.name for o in report.outcomes] == ["a", "b", "odd"]
    assert report.outcome("odd").message == "check returned str, not an outcome"
    assert report.verdict == "fail"


def test_runner_refuses_duplicate_names() -> None:
    check = SelfTestCheck("x", lambda: check_temperature(Path("/nonexistent")))
    with pytest.raises(ValueError, match="duplicate check names: x"):
        SelfTestRunner([check, check])


def outcome(verdict: str, fault: FaultCode | None = FaultCode.BLUR) -> CheckOutcome:
    return CheckOutcome("blur", verdict, None, None, "%", verdict, fault)  # type: ignore[arg-type]


def test_fault_hysteresis_raises_once_and_clears_after_two_passes() -> None:
    tracker = FaultTracker()
    seen = [tracker.update([outcome(v)]) for v in ["pass", "fail", "fail", "pass", "warn", "pass"]]
    assert [[(t.kind, t.fault) for t in step] for step in seen] == [
        [],
        [("raised", FaultCode.BLUR)],
        [],
        [],
        [],
        [("cleared", FaultCode.BLUR)],
    ]
    assert tracker.open_faults == {}


def test_flapping_check_raises_one_fault_and_never_clears() -> None:
    tracker = FaultTracker(clear_after=2)
    kinds = [t.kind for v in ["fail", "pass"] * 5 for t in tracker.update([outcome(v)])]
    assert kinds == ["raised"]
    assert tracker.open_faults == {"blur": FaultCode.BLUR}


def test_fault_tracker_restores_and_switches_fault() -> None:
    tracker = FaultTracker(clear_after=1)
    tracker.restore({"ups": FaultCode.UPS_COMMS_LOST})
    step = tracker.update(
        [CheckOutcome("ups", "fail", None, None, "", "bad", FaultCode.UPS_SELFTEST_FAILED)]
    )
    assert [(t.kind, t.fault) for t in step] == [
        ("cleared", FaultCode.UPS_COMMS_LOST),
        ("raised", FaultCode.UPS_SELFTEST_FAILED),
    ]


# -------------------------------------------------------------- thresholds, schedule


def test_threshold_overrides_are_validated() -> None:
    t = SelfTestThresholds()
    assert t.with_overrides({"thresholds.blur_ratio_fail": 0.3}).blur_ratio_fail == 0.3
    with pytest.raises(ThresholdError, match="unknown threshold nope"):
        t.with_overrides({"nope": 1.0})
    with pytest.raises(ThresholdError, match="blur_ratio_fail must not exceed blur_ratio_warn"):
        t.with_overrides({"blur_ratio_fail": 0.9})
    assert all(f.description for f in SelfTestThresholds.model_fields.values())


def test_schedule_shift_change_in_london() -> None:
    winter = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    assert next_runs(winter, count=3) == [
        datetime(2026, 1, 10, 19, 0, tzinfo=UTC),
        datetime(2026, 1, 11, 7, 0, tzinfo=UTC),
        datetime(2026, 1, 11, 19, 0, tzinfo=UTC),
    ]
    summer = datetime(2026, 7, 1, 6, 59, tzinfo=UTC)  # 07:59 BST: 07:00 has passed
    assert next_run(summer) == datetime(2026, 7, 1, 18, 0, tzinfo=UTC)
    # The night the clocks go forward, 07:00 local is 06:00 UTC.
    assert next_run(datetime(2026, 3, 29, 0, 30, tzinfo=UTC)) == datetime(
        2026, 3, 29, 6, 0, tzinfo=UTC
    )
    assert next_run(winter, ["06:30"], "Australia/Sydney") == datetime(
        2026, 1, 10, 19, 30, tzinfo=UTC
    )


def test_schedule_rejects_bad_input() -> None:
    now = datetime.now(UTC)
    with pytest.raises(ScheduleError, match="'25:00' is not a time of day"):
        next_run(now, ["25:00"])
    with pytest.raises(ScheduleError, match="unknown time zone"):
        next_run(now, tz="Mars/Olympus")
    with pytest.raises(ScheduleError, match="timezone-aware"):
        next_run(datetime(2026, 1, 1), ["07:00"])
