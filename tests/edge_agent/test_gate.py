from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.gate import Gate, GateOutcome
from edge_agent.position import GpsdClient, Position, haversine_m
from protocol import messages as m
from protocol.errors import RefusalReason
from protocol.faults import FaultCode
from protocol.signing import Signer, Verifier
from tests.harness.binaries import require_binary

KEY = Ed25519PrivateKey.generate()
UNIT = "cam-07"
FENCE = m.GeoFence(lat=51.5, lon=-0.116666667, radius_m=200)


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now


def authz(
    ident: str,
    *,
    issued: datetime,
    until: timedelta = timedelta(days=30),
    start: timedelta = timedelta(0),
    unit: str = UNIT,
    key: Ed25519PrivateKey = KEY,
    fence: m.GeoFence | None = None,
) -> m.Authorization:
    body = m.AuthorizationBody(
        authorization_id=ident,
        unit_id=unit,
        deployment_id=f"dep-{ident}",
        location_name="High Street",
        geofence=fence,
        valid_from=issued + start,
        valid_until=issued + until,
        issued_at=issued,
        masks=[[(0.0, 0.0), (0.2, 0.0), (0.2, 0.3)]],
        retention_days=14,
    )
    return Signer(key).authorization(body, seq=1, boot_id="ctl")


def revoke(ident: str, *, issued: datetime, key: Ed25519PrivateKey = KEY) -> m.Revocation:
    body = m.RevocationBody(
        revocation_id=f"rev-{ident}",
        unit_id=UNIT,
        authorization_id=ident,
        deployment_id=f"dep-{ident}",
        issued_at=issued,
        reason="PIA review found signage missing",
    )
    return Signer(key).revocation(body, seq=2, boot_id="ctl")


def make_gate(tmp_path: Path, clock: Clock | None = None, **kw: object) -> Gate:
    clk = clock or Clock()
    verifier = Verifier(KEY.public_key(), unit_id=UNIT, clock=clk)
    return Gate(verifier, state_path=tmp_path / "gate.json", clock=clk, **kw)  # type: ignore[arg-type]


def refused(outcome: GateOutcome) -> RefusalReason | None:
    assert outcome.status == "refused", outcome
    return outcome.reason


async def test_closed_without_authorization_open_with_one(tmp_path: Path) -> None:
    clock = Clock()
    gate = make_gate(tmp_path, clock)
    assert not gate.is_open
    assert gate.reason == "no deployment authorization"
    assert gate.deployment_id is None and gate.masks == []

    outcome = gate.handle(authz("a1", issued=clock.now))
    assert outcome.accepted
    assert gate.is_open, gate.reason
    assert gate.deployment_id == "dep-a1"
    assert gate.retention_days == 14
    assert gate.masks == [[(0.0, 0.0), (0.2, 0.0), (0.2, 0.3)]]
    assert gate.profile == m.RecordingProfile()
    event = await asyncio.wait_for(gate.wait_for_change(), 1)
    assert isinstance(event, m.GateChanged)
    assert event.open and event.deployment_id == "dep-a1" and event.authorization_id == "a1"

    # The retained message comes again on every reconnect: quietly accepted, no event.
    again = gate.handle(authz("a1", issued=clock.now))
    assert again.accepted and again.detail == "already held"
    assert gate.pending_events() == []


async def test_revocation_closes_and_replays_are_refused_with_distinct_reasons(
    tmp_path: Path,
) -> None:
    clock = Clock()
    t0 = clock.now
    gate = make_gate(tmp_path, clock)
    older = authz("a0", issued=t0 - timedelta(hours=1))  # signed earlier, never delivered
    current = authz("a1", issued=t0)
    assert gate.handle(current).accepted and gate.is_open
    gate.pending_events()

    clock.now = t0 + timedelta(minutes=5)
    assert gate.handle(revoke("a1", issued=clock.now)).accepted
    assert not gate.is_open
    assert gate.reason.startswith("authorization a1 revoked ")
    assert "signage missing" in gate.reason
    (closed,) = gate.pending_events()
    assert isinstance(closed, m.GateChanged) and not closed.open

    reasons = {
        "replayed after revocation": refused(gate.handle(current)),
        "older one replayed": refused(gate.handle(older)),
        "forged (other key)": refused(
            gate.handle(authz("f1", issued=clock.now, key=Ed25519PrivateKey.generate()))
        ),
        "another unit": refused(gate.handle(authz("o1", issued=clock.now, unit="cam-08"))),
    }
    assert reasons == {
        "replayed after revocation": RefusalReason.REVOKED,
        "older one replayed": RefusalReason.SUPERSEDED,
        "forged (other key)": RefusalReason.UNKNOWN_KEY,
        "another unit": RefusalReason.WRONG_UNIT,
    }
    # Forged with our key id copied in: the signature itself fails.
    genuine = authz("t1", issued=clock.now)
    tampered_body = genuine.body.model_copy(update={"unit_id": UNIT, "retention_days": 3650})
    tampered = genuine.model_copy(update={"body": tampered_body})
    assert refused(gate.handle(tampered)) is RefusalReason.BAD_SIGNATURE
    assert gate.refused == 5
    assert not gate.is_open and gate.pending_events() == []

    # A fresh authorization issued after the revocation opens it again.
    clock.now += timedelta(minutes=1)
    assert gate.handle(authz("a2", issued=clock.now)).accepted
    assert gate.is_open and gate.deployment_id == "dep-a2"


async def test_state_survives_restart(tmp_path: Path) -> None:
    clock = Clock()
    t0 = clock.now
    gate = make_gate(tmp_path, clock)
    a1 = authz("a1", issued=t0)
    gate.handle(a1)
    reopened = make_gate(tmp_path, clock)
    assert reopened.is_open and reopened.deployment_id == "dep-a1"

    clock.now = t0 + timedelta(seconds=10)
    reopened.handle(revoke("a1", issued=clock.now))
    after_restart = make_gate(tmp_path, clock)
    assert not after_restart.is_open
    assert refused(after_restart.handle(a1)) is RefusalReason.REVOKED
    older = authz("a0", issued=t0 - timedelta(seconds=1))
    assert refused(after_restart.handle(older)) is RefusalReason.SUPERSEDED


async def test_damaged_state_file_starts_closed(tmp_path: Path) -> None:
    (tmp_path / "gate.json").write_text('{"authorization": {"kind": "authorization"}')
    gate = make_gate(tmp_path)
    assert not gate.is_open and gate.reason == "no deployment authorization"


async def test_closes_at_valid_until_by_the_clock_alone(tmp_path: Path) -> None:
    clock = Clock()
    t0 = clock.now
    gate = make_gate(tmp_path, clock)
    a1 = authz("a1", issued=t0, start=timedelta(minutes=10), until=timedelta(hours=2))
    gate.handle(a1)
    assert not gate.is_open
    assert gate.reason.startswith("authorization valid from ")
    clock.now = t0 + timedelta(minutes=10)
    gate.tick()
    assert gate.is_open
    clock.now = t0 + timedelta(hours=2)
    gate.tick()
    assert not gate.is_open
    assert gate.reason == f"authorization ended {(t0 + timedelta(hours=2)).isoformat()[:19]}Z"
    # Retained redelivery of the ended authorization does not reopen it.
    assert refused(gate.handle(a1)) is RefusalReason.EXPIRED
    assert not gate.is_open


async def test_timer_closes_on_time_with_no_broker(tmp_path: Path) -> None:
    verifier = Verifier(KEY.public_key(), unit_id=UNIT)
    gate = Gate(verifier, state_path=tmp_path / "gate.json")
    now = datetime.now(UTC)
    until = now + timedelta(seconds=1.5)
    body = authz("s1", issued=now).body.model_copy(update={"valid_until": until})
    gate.handle(Signer(KEY).authorization(body, seq=1, boot_id="ctl"))
    assert gate.is_open
    gate.pending_events()
    task = asyncio.create_task(gate.run(), name="gate-timer")
    try:
        event = await asyncio.wait_for(gate.wait_for_change(), 5)
        closed_at = datetime.now(UTC)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert isinstance(event, m.GateChanged) and not event.open
    assert event.reason.startswith("authorization ended ")
    lateness = (closed_at - until).total_seconds()
    assert 0 <= lateness < 0.5, lateness


async def test_fixed_position_outside_geofence_closes_and_raises_unit_moved(
    tmp_path: Path,
) -> None:
    clock = Clock()
    inside = Position(51.5005, -0.116666667)  # ~56 m from the centre
    gate = make_gate(tmp_path, clock, fixed_position=inside)
    gate.handle(authz("g1", issued=clock.now, fence=FENCE))
    assert gate.is_open, gate.reason
    gate.pending_events()

    far = Position(51.5, -0.116666667 + 0.009)  # ~623 m east
    gate.update_position(far)
    assert not gate.is_open
    outside = haversine_m(51.5, -0.116666667, far.lat, far.lon) - 200
    assert gate.reason == f"outside geofence by {outside:.0f} m"
    events = gate.pending_events()
    assert [type(e) for e in events] == [m.FaultRaised, m.GateChanged]
    fault = events[0]
    assert isinstance(fault, m.FaultRaised) and fault.code is FaultCode.UNIT_MOVED
    # A fix lost: the fixed position applies again (inside), the fault clears.
    gate.update_position(None)
    assert gate.is_open
    assert [type(e) for e in gate.pending_events()] == [m.FaultCleared, m.GateChanged]
    # Jitter just past the edge, within the fix's own error, does not close the gate.
    edge = Position(51.5 + 0.00200, -0.116666667, error_m=40)  # ~222 m: 22 m out
    gate.update_position(edge)
    assert gate.is_open


def test_haversine_known_distance() -> None:
    # London (51.5074, -0.1278) to Paris (48.8566, 2.3522): about 343.5 km.
    assert haversine_m(51.5074, -0.1278, 48.8566, 2.3522) == pytest.approx(343_500, rel=0.005)


# ---------------------------------------------------------------------- real gpsd


def _nmea(body: str) -> str:
    check = 0
    for ch in body:
        check ^= ord(ch)
    return f"${body}*{check:02X}"


def _fixes(lat_min: str, count: int, first_second: int) -> list[str]:
    lines = []
    for i in range(count):
        t = f"1200{first_second + i:02d}.00"
        lines.append(_nmea(f"GPGGA,{t},{lat_min},N,00007.0000,W,1,08,0.9,10.0,M,47.0,M,,"))
        lines.append(_nmea(f"GPRMC,{t},A,{lat_min},N,00007.0000,W,0.0,0.0,231126,,,A"))
    return lines


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def gpsfake(tmp_path: Path) -> Iterator[int]:
    """A real gpsd fed by gpsfake: 8 fixes at the fence centre (51°30'N 0°07'W), then 8
    fixes at 51°31'N, ~1.85 km north. gpsfake starts the replay when a client connects."""
    require_binary("gpsd")
    require_binary("gpsfake")
    log = tmp_path / "drive.nmea"
    log.write_text("\n".join(_fixes("5130.0000", 8, 0) + _fixes("5131.0000", 8, 8)) + "\n")
    port = _free_port()
    env = dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    out_path = tmp_path / "gpsfake.out"
    with out_path.open("wb") as out:
        proc = subprocess.Popen(
            ["gpsfake", "-1", "-q", "-c", "0.1", "-P", str(port), str(log)],
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                out = out_path.read_text(errors="replace")
                pytest.fail(f"gpsfake did not start on port {port}: {out[-2000:]}")
            time.sleep(0.05)
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_real_gpsd_fix_outside_geofence_closes_gate(tmp_path: Path, gpsfake: int) -> None:
    clock = Clock()
    gate = make_gate(tmp_path, clock)
    gate.handle(authz("g1", issued=clock.now, fence=FENCE))
    assert gate.is_open  # no fix yet: decided on the authorization alone
    gate.pending_events()

    client = GpsdClient(port=gpsfake, stale_after_s=5, backoff_base_s=0.1)
    seen: list[tuple[float, bool]] = []

    async def follow() -> None:
        async for fix in client.fixes():
            gate.update_position(fix)
            if fix is not None:
                seen.append((fix.lat, gate.is_open))

    task = asyncio.create_task(follow(), name="gpsd-follow")
    try:
        first = await asyncio.wait_for(gate.wait_for_change(), 15)
        second = await asyncio.wait_for(gate.wait_for_change(), 5)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert seen and seen[0] == (pytest.approx(51.5), True), seen
    assert isinstance(first, m.FaultRaised) and first.code is FaultCode.UNIT_MOVED
    assert isinstance(second, m.GateChanged) and not second.open
    assert gate.reason.startswith("outside geofence by ")
    metres = int(gate.reason.split()[3])
    assert 1600 < metres < 1700, gate.reason  # 1' of latitude (~1853 m) minus the 200 m fence
