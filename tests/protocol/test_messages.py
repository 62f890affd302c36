from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import messages as m
from protocol.errors import (
    MalformedMessage,
    MessageError,
    PayloadTooLarge,
    UnknownKind,
    VersionMismatch,
)
from tests.protocol.strategies import messages


def heartbeat(**over: object) -> m.Heartbeat:
    fields: dict[str, object] = dict(
        unit_id="cam-01",
        seq=7,
        sent_at=datetime(2026, 1, 1, tzinfo=UTC),
        boot_id="b1",
        recording=True,
        gate_open=True,
    )
    fields.update(over)
    return m.Heartbeat(**fields)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(messages)
def test_every_kind_round_trips(msg: m.Envelope) -> None:
    wire = m.encode(msg)
    back = m.decode(wire)
    assert back == msg
    assert type(back) is type(msg)
    assert m.encode(back) == wire


def test_every_kind_is_generated() -> None:
    seen: set[str] = set()

    # Derandomized: the same examples every run, so a rare branch cannot go missing by chance.
    @settings(max_examples=1000, derandomize=True, database=None)
    @given(messages)
    def collect(msg: m.Envelope) -> None:
        seen.add(msg.kind)  # type: ignore[attr-defined]

    collect()
    assert seen == set(m.KINDS)


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{not json", MalformedMessage),
        (b"\xff\xfe\x00", MalformedMessage),
        (b"[1, 2]", MalformedMessage),
        (b'"a string"', MalformedMessage),
        (b'{"kind": "teleport", "v": "1.0"}', UnknownKind),
        (b'{"v": "1.0"}', UnknownKind),
    ],
)
def test_bad_payloads_raise_protocol_errors(payload: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        m.decode(payload)


def test_missing_field_names_the_field() -> None:
    doc = json.loads(m.encode(heartbeat()))
    del doc["gate_open"]
    with pytest.raises(MalformedMessage, match="gate_open"):
        m.decode(json.dumps(doc))


def test_wrong_type_and_extra_field_are_malformed() -> None:
    doc = json.loads(m.encode(heartbeat()))
    with pytest.raises(MalformedMessage, match="seq"):
        m.decode(json.dumps({**doc, "seq": -1}))
    with pytest.raises(MalformedMessage, match="surprise"):
        m.decode(json.dumps({**doc, "surprise": 1}))


def test_oversize_payload_is_refused() -> None:
    big = b'{"kind":"heartbeat","pad":"' + b"x" * m.MAX_PAYLOAD_BYTES + b'"}'
    with pytest.raises(PayloadTooLarge) as info:
        m.decode(big)
    assert info.value.size == len(big) and info.value.limit == m.MAX_PAYLOAD_BYTES
    # Above the largest bound (a reference picture's), before it is even parsed.
    huge = b"{not json" + b"x" * m.MAX_SNAPSHOT_PAYLOAD_BYTES
    with pytest.raises(PayloadTooLarge) as info:
        m.decode(huge)
    assert info.value.limit == m.MAX_SNAPSHOT_PAYLOAD_BYTES


def snapshot(picture: bytes, **over: object) -> dict[str, object]:
    # Whole seconds: the timestamps keep one length, so the size bounds below stay exact.
    taken = datetime.now(UTC).replace(microsecond=0)
    doc: dict[str, object] = {
        "v": m.PROTOCOL_VERSION,
        "kind": "reference_snapshot",
        "unit_id": "cam-01",
        "seq": 9,
        "sent_at": (taken + timedelta(seconds=1)).isoformat(),
        "boot_id": "b1",
        "request_id": "r1",
        "captured_at": taken.isoformat(),
        "width": 1280,
        "height": 720,
        "sha256": hashlib.sha256(picture).hexdigest(),
        "jpeg": base64.b64encode(picture).decode(),
    }
    doc.update(over)
    return doc


def test_a_reference_picture_of_the_largest_size_is_accepted_and_one_byte_more_is_not() -> None:
    largest = b"\xff\xd8\xff" + bytes(m.MAX_SNAPSHOT_JPEG_BYTES - 3)
    wire = json.dumps(snapshot(largest)).encode()
    assert m.MAX_PAYLOAD_BYTES < len(wire) <= m.MAX_SNAPSHOT_PAYLOAD_BYTES
    message = m.decode(wire)
    assert isinstance(message, m.ReferenceSnapshot) and message.image() == largest
    assert m.channel_for(message).value == "snapshot"
    with pytest.raises(MalformedMessage, match="jpeg"):
        m.decode(json.dumps(snapshot(largest + b"\x00")))


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"jpeg": "not base64!"}, "not base64"),
        ({"jpeg": base64.b64encode(b"GIF89a...").decode()}, "not hold a JPEG"),
        ({"sha256": "0" * 64}, "not the SHA-256"),
        ({"width": 0}, "width"),
    ],
)
def test_a_bad_reference_picture_is_malformed(over: dict[str, object], match: str) -> None:
    doc = snapshot(b"\xff\xd8\xff\xe0 a picture", **over)
    with pytest.raises(MalformedMessage, match=match):
        m.decode(json.dumps(doc))


def test_other_major_version_is_refused() -> None:
    doc = json.loads(m.encode(heartbeat()))
    with pytest.raises(VersionMismatch):
        m.decode(json.dumps({**doc, "v": "2.0"}))


def test_other_minor_version_is_accepted_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    doc = json.loads(m.encode(heartbeat()))
    doc.update(v="1.7", field_from_the_future=True)
    with caplog.at_level(logging.WARNING, logger="protocol.messages"):
        msg = m.decode(json.dumps(doc))
    assert isinstance(msg, m.Heartbeat) and msg.v == "1.7"
    assert "minor version" in caplog.text


def test_naive_timestamp_is_refused() -> None:
    doc = json.loads(m.encode(heartbeat()))
    doc["sent_at"] = "2026-01-01T00:00:00"
    with pytest.raises(MalformedMessage, match="sent_at"):
        m.decode(json.dumps(doc))


@settings(max_examples=500)
@given(st.binary(max_size=2000) | st.text(max_size=500).map(str.encode))
def test_arbitrary_bytes_raise_only_protocol_errors(payload: bytes) -> None:
    with contextlib.suppress(MessageError):  # anything else fails the test
        m.decode(payload)


@settings(max_examples=300)
@given(messages, st.data())
def test_mutated_messages_raise_only_protocol_errors(msg: m.Envelope, data: st.DataObject) -> None:
    doc = json.loads(m.encode(msg))
    key = data.draw(st.sampled_from(sorted(doc)))
    doc[key] = data.draw(
        st.none()
        | st.integers()
        | st.text(max_size=5)
        | st.lists(st.integers(), max_size=2)
        | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
    )
    with contextlib.suppress(MessageError):  # anything else fails the test
        m.decode(json.dumps(doc))


def test_deeply_nested_json_is_malformed_not_a_crash() -> None:
    with pytest.raises(MessageError):
        m.decode(b"[" * 100_000 + b"]" * 100_000, max_bytes=10**6)
