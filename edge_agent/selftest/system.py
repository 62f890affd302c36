"""System checks: recording, storage, clock, UPS, temperature, broker round trip.

Each takes what it measures as plain inputs or small callables supplied by the module that
owns the thing (the recorder, the power monitor, the link), so this module imports none of
them. Checks that touch the disk are plain functions (the runner runs them in a thread);
those that wait on the network are coroutines with their own time limit.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from edge_agent.selftest.measurements import ClockOffsets, read_temperature
from edge_agent.selftest.outcome import CheckOutcome, Verdict
from edge_agent.selftest.sntp import NtpError, sntp_query
from edge_agent.selftest.thresholds import SelfTestThresholds
from protocol.faults import FaultCode

__all__ = [
    "BrokerRoundTrip",
    "UpsStatus",
    "check_broker",
    "check_clock",
    "check_recording",
    "check_storage",
    "check_temperature",
    "check_ups",
]

DEFAULTS = SelfTestThresholds()
PROBE_NAME = ".selftest-probe"

UpsStatus = Callable[[], tuple[bool, str | None] | Awaitable[tuple[bool, str | None]]]
"""(the UPS answered, its own last self-test result as NUT words it, e.g. 'Done and passed')."""
BrokerRoundTrip = Callable[[], float | Awaitable[float | None] | None]
"""Seconds for a publish to come back from the broker, or None when it did not."""


T = TypeVar("T")


async def _call(fn: Callable[[], T | Awaitable[T]]) -> T:
    result = fn()
    if inspect.isawaitable(result):
        return await result
    return result


def check_recording(
    newest_segment_end: datetime | None,
    *,
    segment_intact: Callable[[], bool] | None = None,
    recording_expected: bool = True,
    now: datetime | None = None,
    thresholds: SelfTestThresholds = DEFAULTS,
) -> CheckOutcome:
    """Recording progresses: the newest segment ended recently and reads back intact
    (`segment_intact` is the recorder's own verification of it)."""
    name, fault, t = "recording", FaultCode.RECORDING_STALLED, thresholds
    limit = t.recording_max_age_s
    if not recording_expected:
        return CheckOutcome(
            name, "pass", None, limit, "s", "not recording: not authorised here", fault
        )
    if newest_segment_end is None:
        return CheckOutcome(name, "fail", None, limit, "s", "no segment recorded yet", fault)
    age = ((now or datetime.now(UTC)) - newest_segment_end).total_seconds()
    if age > limit:
        msg = f"newest segment ended {age:.0f} s ago (limit {limit:g} s): recording has stopped"
        return CheckOutcome(name, "fail", round(age, 1), limit, "s", msg, fault)
    if segment_intact is not None:
        try:
            intact = segment_intact()
        except Exception as exc:  # the recorder's verification failing is the finding
            msg = f"newest segment cannot be verified: {exc}"
            return CheckOutcome(name, "fail", round(age, 1), limit, "s", msg, fault)
        if not intact:
            msg = "newest segment is damaged (verification failed)"
            return CheckOutcome(name, "fail", round(age, 1), limit, "s", msg, fault)
    msg = f"newest segment ended {max(age, 0.0):.0f} s ago" + (", intact" if segment_intact else "")
    return CheckOutcome(name, "pass", round(age, 1), limit, "s", msg, fault)


def check_storage(path: Path, thresholds: SelfTestThresholds = DEFAULTS) -> CheckOutcome:
    """Storage has room and really writes: free share by statvfs, then a probe file
    written, fsynced, read back and removed (a worn SD card often fails only here)."""
    name, t = "storage", thresholds
    try:
        stats = os.statvfs(path)
    except OSError as exc:
        msg = f"{path}: {exc.strerror or exc}"
        return CheckOutcome(
            name, "fail", None, t.storage_free_fail_pct, "%", msg, FaultCode.STORAGE_FAILED
        )
    free_pct = stats.f_bavail / stats.f_blocks * 100.0 if stats.f_blocks else 0.0
    probe = path / PROBE_NAME
    payload = os.urandom(4096)
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, payload)
            os.fsync(fd)
        finally:
            os.close(fd)
        if probe.read_bytes() != payload:
            raise OSError("probe file reads back different bytes")
    except OSError as exc:
        msg = f"cannot write to {path}: {exc.strerror or exc}"
        return CheckOutcome(
            name,
            "fail",
            round(free_pct, 1),
            t.storage_free_fail_pct,
            "%",
            msg,
            FaultCode.STORAGE_FAILED,
        )
    finally:
        with contextlib.suppress(OSError):  # nothing to remove where nothing was written
            probe.unlink(missing_ok=True)
    free_gb = stats.f_bavail * stats.f_frsize / 1e9
    verdict: Verdict = (
        "fail"
        if free_pct < t.storage_free_fail_pct
        else "warn"
        if free_pct < t.storage_free_warn_pct
        else "pass"
    )
    msg = f"{free_pct:.1f}% free ({free_gb:.1f} GB), writable"
    return CheckOutcome(
        name, verdict, round(free_pct, 2), t.storage_free_fail_pct, "%", msg, FaultCode.STORAGE_LOW
    )


async def check_clock(
    server: str | None,
    *,
    port: int = 123,
    reference_offset_s: float | None = None,
    thresholds: SelfTestThresholds = DEFAULTS,
    measured: ClockOffsets | None = None,
) -> CheckOutcome:
    """Footage carries the right time: offset from an NTP server, or, without one (or when
    it does not answer), `reference_offset_s` measured against the controller's clock.

    Offsets are the reference clock minus ours: positive means the unit's clock is behind.
    With no offset to judge by (no NTP server, or one that does not answer, and none from
    the controller) the clock is `not_assessed`, naming the reason: unverified, not known
    to be wrong. Each offset measured against the NTP server is kept in `measured` (for
    the heartbeat).
    """
    name, fault, t = "clock", FaultCode.CLOCK_DRIFT, thresholds
    source, offset, problem = "", None, ""
    if server:
        try:
            result = await sntp_query(server, port, timeout_s=t.ntp_timeout_s)
            offset, source = result.offset_s, f"NTP {server}"
            if measured is not None:
                measured.record(round(offset, 4))
        except NtpError as exc:
            problem = str(exc)
    if offset is None and reference_offset_s is not None:
        offset, source = reference_offset_s, "the controller's clock"
    if offset is None:
        why = problem or "no NTP server configured and no offset from the controller"
        msg = f"not assessed: {why}"
        return CheckOutcome(name, "not_assessed", None, t.clock_fail_s, "s", msg, fault)
    size = abs(offset)
    verdict: Verdict = (
        "fail" if size > t.clock_fail_s else "warn" if size > t.clock_warn_s else "pass"
    )
    msg = f"clock {'behind' if offset > 0 else 'ahead of'} {source} by {size:.3f} s"
    if problem:
        msg += f" ({problem})"
    return CheckOutcome(name, verdict, round(offset, 4), t.clock_fail_s, "s", msg, fault)


def _ups_verdict(test_result: str | None) -> tuple[Verdict, str]:
    text = (test_result or "").strip().lower()
    if not text or "no test" in text or "not supported" in text:
        return "pass", "no UPS self-test result yet"
    if "fail" in text or "error" in text or "abort" in text:
        return "fail", f"UPS self-test: {test_result}"
    if "warning" in text:
        return "warn", f"UPS self-test: {test_result}"
    return "pass", f"UPS self-test: {test_result}"


async def check_ups(status: UpsStatus | None) -> CheckOutcome:
    """UPS answers and passed its own last self-test (`status` comes from the power
    monitor). Units without a UPS pass with nothing to check."""
    name = "ups"
    if status is None:
        return CheckOutcome(name, "pass", None, None, "", "no UPS fitted", None)
    reachable, test_result = await _call(status)
    if not reachable:
        msg = "UPS does not answer (NUT)"
        return CheckOutcome(name, "fail", None, None, "", msg, FaultCode.UPS_COMMS_LOST)
    verdict, msg = _ups_verdict(test_result)
    return CheckOutcome(name, verdict, None, None, "", msg, FaultCode.UPS_SELFTEST_FAILED)


def check_temperature(
    root: Path = Path("/sys/class/thermal"), thresholds: SelfTestThresholds = DEFAULTS
) -> CheckOutcome:
    """Unit is not overheating: the hottest `thermal_zone*/temp` (millidegrees C)."""
    name, fault, t = "temperature", FaultCode.OVER_TEMPERATURE, thresholds
    reading = read_temperature(root)
    if reading is None:
        msg = f"not assessed: no readable thermal zone under {root}"
        return CheckOutcome(name, "not_assessed", None, t.temperature_fail_c, "C", msg, fault)
    hottest = reading.celsius
    verdict: Verdict = (
        "fail"
        if hottest > t.temperature_fail_c
        else "warn"
        if hottest > t.temperature_warn_c
        else "pass"
    )
    msg = f"{hottest:.1f} C ({reading.zone}, hottest of {reading.zones})"
    return CheckOutcome(name, verdict, round(hottest, 1), t.temperature_fail_c, "C", msg, fault)


async def check_broker(
    round_trip: BrokerRoundTrip | None, thresholds: SelfTestThresholds = DEFAULTS
) -> CheckOutcome:
    """The control room can be reached: a message's round trip through the broker."""
    name, fault, t = "broker", FaultCode.BROKER_UNREACHABLE, thresholds
    if round_trip is None:
        msg = "not assessed: no broker link configured"
        return CheckOutcome(name, "not_assessed", None, t.broker_rtt_fail_s, "s", msg, fault)
    started = time.monotonic()
    seconds = await _call(round_trip)
    if seconds is None:
        msg = f"no round trip through the broker (after {time.monotonic() - started:.1f} s)"
        return CheckOutcome(name, "fail", None, t.broker_rtt_fail_s, "s", msg, fault)
    verdict: Verdict = (
        "fail"
        if seconds > t.broker_rtt_fail_s
        else "warn"
        if seconds > t.broker_rtt_warn_s
        else "pass"
    )
    msg = f"round trip {seconds * 1000:.0f} ms"
    return CheckOutcome(name, verdict, round(seconds, 4), t.broker_rtt_fail_s, "s", msg, fault)
