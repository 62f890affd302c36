"""Hypothesis strategies producing valid protocol messages of every kind."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

from protocol import messages as m
from protocol.faults import FaultCode

unit_ids = st.from_regex(r"\A[a-z0-9][a-z0-9_-]{0,20}\Z").filter(
    lambda s: s not in {"controller", "broker", "admin", "simulator", "root"}
)
idents = st.from_regex(r"\A[A-Za-z0-9._:-]{1,40}\Z")
texts = st.text(max_size=60)
times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
)
floats = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
pct = st.floats(min_value=0, max_value=100, allow_nan=False)
nonneg = st.integers(min_value=0, max_value=2**40)
faults = st.sampled_from(list(FaultCode))
hexes = st.from_regex(r"\A[0-9a-f]{64}\Z")
unit01 = st.floats(min_value=0, max_value=1, allow_nan=False)


def envelope() -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries(
        {"unit_id": unit_ids, "seq": nonneg, "sent_at": times, "boot_id": idents}
    )


def _build(model: type[m.Envelope], **fields: st.SearchStrategy[object]) -> st.SearchStrategy:
    return st.builds(lambda env, f: model(**env, **f), envelope(), st.fixed_dictionaries(fields))


storage = st.builds(
    m.StorageStatus,
    total_bytes=nonneg,
    free_bytes=nonneg,
    footage_bytes=nonneg,
    held_bytes=nonneg,
    segments=nonneg,
    oldest_segment_at=st.none() | times,
)
checks = st.builds(
    m.CheckResult,
    name=st.from_regex(r"\A[a-z_]{1,20}\Z"),
    verdict=st.sampled_from(["pass", "warn", "fail", "not_assessed"]),
    value=st.none() | floats,
    threshold=st.none() | floats,
    unit=st.sampled_from(["", "%", "fps", "s", "C"]),
    message=texts,
    fault=st.none() | faults,
)
event_bodies = st.one_of(
    st.builds(m.FaultRaised, code=faults, detail=texts, check=st.none() | texts),
    st.builds(m.FaultCleared, code=faults, detail=texts),
    st.builds(m.GateChanged, open=st.booleans(), reason=texts, deployment_id=st.none() | idents),
    st.builds(m.RecordingStarted, deployment_id=st.none() | idents),
    st.builds(
        m.AuthorizationRefused,
        authorization_id=idents,
        reason=st.sampled_from(["bad_signature", "wrong_unit", "revoked"]),
        detail=texts,
    ),
    st.builds(m.RecordingStopped, reason=texts),
)
segments = st.builds(
    m.SegmentSummary,
    segment_id=idents,
    started_at=times,
    ended_at=times,
    size=nonneg,
    sha256=hexes,
    chain_hash=hexes,
    truncated=st.booleans(),
)


@st.composite
def _window(draw: st.DrawFn) -> tuple[datetime, datetime]:
    start = draw(times)
    return start, start + timedelta(seconds=draw(st.integers(1, 10**8)))


@st.composite
def actions(draw: st.DrawFn) -> object:
    start, end = draw(_window())
    return draw(
        st.one_of(
            st.just(m.SelfTestNow()),
            st.builds(
                m.SetHold,
                hold_id=idents,
                start=st.just(start),
                end=st.just(end),
                reference=st.text(min_size=1, max_size=40),
            ),
            st.builds(m.ReleaseHold, hold_id=idents),
            st.builds(
                m.SetConfig,
                values=st.dictionaries(
                    st.sampled_from(["selftest.schedule", "heartbeat_interval_s"]),
                    st.integers() | texts,
                ),
            ),
            st.builds(m.RequestExport, export_id=idents, start=st.just(start), end=st.just(end)),
            st.builds(
                m.UploadEvidence,
                upload_id=idents,
                case_number=st.from_regex(r"\AC-20[0-9]{2}-[0-9]{4}\Z"),
                ranges=st.lists(
                    st.builds(m.TimeRange, start=st.just(start), end=st.just(end)),
                    min_size=1,
                    max_size=3,
                ),
            ),
            st.builds(m.ReferenceSnapshotRequest, request_id=idents),
        )
    )


@st.composite
def auth_bodies(draw: st.DrawFn, unit_id: str) -> m.AuthorizationBody:
    start, end = draw(_window())
    poly = st.lists(st.tuples(unit01, unit01), min_size=3, max_size=6)
    return m.AuthorizationBody(
        authorization_id=draw(idents),
        unit_id=unit_id,
        deployment_id=draw(idents),
        location_name=draw(texts),
        valid_from=start,
        valid_until=end,
        issued_at=draw(times),
        geofence=draw(
            st.none()
            | st.builds(
                m.GeoFence,
                lat=st.floats(-90, 90),
                lon=st.floats(-180, 180),
                radius_m=st.floats(1, 5000),
            )
        ),
        masks=draw(st.lists(poly, max_size=3)),
        retention_days=draw(st.integers(1, 3650)),
    )


sig = {"key_id": st.from_regex(r"\A[0-9a-f]{16}\Z"), "signature": st.just("c2ln")}


@st.composite
def signed(draw: st.DrawFn) -> m.Envelope:
    env = draw(envelope())
    which = draw(st.sampled_from(["command", "authorization", "revocation"]))
    extra = {k: draw(v) for k, v in sig.items()}
    if which == "command":
        body = m.CommandBody(
            command_id=draw(idents),
            unit_id=env["unit_id"],
            issued_at=draw(times),
            expires_at=draw(times),
            action=draw(actions()),
        )
        return m.Command(**env, **extra, body=body)
    if which == "authorization":
        return m.Authorization(**env, **extra, body=draw(auth_bodies(str(env["unit_id"]))))
    body = m.RevocationBody(
        revocation_id=draw(idents),
        unit_id=env["unit_id"],
        authorization_id=draw(idents),
        deployment_id=draw(idents),
        issued_at=draw(times),
        reason=draw(texts),
    )
    return m.Revocation(**env, **extra, body=body)


@st.composite
def snapshots(draw: st.DrawFn) -> m.ReferenceSnapshot:
    """A picture as the JPEG start of image and arbitrary bytes (the protocol checks the
    marker, the size and the SHA-256, not the whole picture)."""
    picture = b"\xff\xd8\xff" + draw(st.binary(max_size=300))
    return m.ReferenceSnapshot(
        **draw(envelope()),
        request_id=draw(idents),
        captured_at=draw(times),
        width=draw(st.integers(1, 8192)),
        height=draw(st.integers(1, 8192)),
        sha256=hashlib.sha256(picture).hexdigest(),
        jpeg=base64.b64encode(picture).decode(),
    )


messages = st.one_of(
    _build(m.UnitState, online=st.booleans(), agent_version=texts, reason=texts),
    _build(
        m.Heartbeat,
        recording=st.booleans(),
        recording_reason=texts,
        gate_open=st.booleans(),
        gate_reason=texts,
        storage=st.none() | storage,
        outbox_depth=nonneg,
        clock_offset_s=st.none() | floats,
        open_faults=st.lists(faults, max_size=4),
    ),
    _build(
        m.PowerStatus,
        source=st.sampled_from(["mains", "battery", "unknown"]),
        on_battery=st.booleans(),
        low_battery=st.booleans(),
        charge_pct=st.none() | pct,
        runtime_s=st.none() | st.floats(0, 1e6),
        ups_status=texts,
        comms_ok=st.booleans(),
    ),
    _build(
        m.SelfTestReport,
        report_id=idents,
        trigger=st.sampled_from(["boot", "schedule", "command", "manual"]),
        started_at=times,
        finished_at=times,
        verdict=st.sampled_from(["pass", "warn", "fail"]),
        checks=st.lists(checks, max_size=14),
    ),
    _build(m.Event, at=times, event=event_bodies),
    _build(m.RecordingIndex, segments=st.lists(segments, max_size=5)),
    _build(
        m.CommandAck,
        command_id=idents,
        status=st.sampled_from(["accepted", "rejected", "done", "failed"]),
        reason=texts,
    ),
    snapshots(),
    signed(),
)
