"""The encrypted segment container: round trips, and every kind of damage detected and
named (segment + chunk)."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import os
import struct
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.errors import SegmentError
from protocol.evidence_keys import EvidencePrivateKey, EvidenceSuite, generate_evidence_key
from protocol.segment.format import FORMAT_VERSION, MIN_CHUNK_SIZE, SegmentSummaryInfo
from protocol.segment.reader import inspect_segment, read_segment, seal_truncated
from protocol.segment.writer import SegmentWriter

T0 = datetime(2025, 3, 1, 7, 0, tzinfo=UTC)
CS = MIN_CHUNK_SIZE
PREAMBLE = 14
CHUNK_HEAD = 14
OVERHEAD = CHUNK_HEAD + 12 + 16  # per chunk record


@pytest.fixture(scope="module")
def key() -> EvidencePrivateKey:
    return generate_evidence_key()


def make(
    key: EvidencePrivateKey,
    data: bytes,
    *,
    chunk_size: int = CS,
    pieces: int = 3,
    segment_id: str = "seg-1",
    finish: bool = True,
) -> tuple[bytes, SegmentSummaryInfo | None]:
    buf = io.BytesIO()
    w = SegmentWriter(
        buf,
        unit_id="unit-7",
        segment_id=segment_id,
        evidence_key=key.public_key(),
        started_at=T0,
        chunk_size=chunk_size,
        metadata={"camera": "north"},
    )
    step = max(1, len(data) // pieces)
    for i in range(0, len(data), step):
        assert w.write(data[i : i + step]) == len(data[i : i + step])
    summary = w.finish(ended_at=T0 + timedelta(seconds=60)) if finish else None
    return buf.getvalue(), summary


def records(raw: bytes) -> list[tuple[int, int]]:
    """(start, end) of every chunk record."""
    (hlen,) = struct.unpack(">I", raw[10:14])
    pos, out = PREAMBLE + hlen, []
    while pos < len(raw) and raw[pos] == 0x43:
        (length,) = struct.unpack(">I", raw[pos + 2 : pos + 6])
        out.append((pos, pos + CHUNK_HEAD + length))
        pos += CHUNK_HEAD + length
    return out


def decode(raw: bytes, key: EvidencePrivateKey) -> bytes:
    return read_segment(io.BytesIO(raw), key, expected_unit="unit-7").plaintext


@pytest.mark.parametrize("suite", list(EvidenceSuite))
def test_round_trip_both_suites(suite: EvidenceSuite) -> None:
    key = generate_evidence_key(suite)
    data = os.urandom(3 * CS + 123)
    raw, summary = make(key, data)
    decoded = read_segment(io.BytesIO(raw), key, expected_unit="unit-7", expected_segment="seg-1")
    assert decoded.plaintext == data
    assert not decoded.truncated
    assert decoded.header.suite == suite.value
    assert decoded.header.metadata == {"camera": "north"}
    assert summary is not None
    assert summary.chunks == 4 and summary.plaintext_bytes == len(data)
    assert summary.file_bytes == len(raw)
    assert inspect_segment(io.BytesIO(raw)).summary() == summary


@pytest.mark.parametrize("size", [0, 1, CS - 1, CS, CS + 1, 2 * CS, 2 * CS + 1])
def test_chunk_boundaries(key: EvidencePrivateKey, size: int) -> None:
    data = os.urandom(size)
    raw, summary = make(key, data)
    assert summary is not None
    # every full chunk is sealed at once; the final chunk holds the rest, maybe nothing
    assert summary.chunks == size // CS + 1
    assert len(records(raw)) == summary.chunks
    assert decode(raw, key) == data


def test_empty_segment_is_authenticated(key: EvidencePrivateKey) -> None:
    raw, summary = make(key, b"")
    assert summary is not None and summary.chunks == 1 and summary.plaintext_bytes == 0
    assert decode(raw, key) == b""
    for offset in range(len(raw)):  # even with no footage, every byte is covered
        bad = bytearray(raw)
        bad[offset] ^= 0x80
        with pytest.raises(SegmentError):
            decode(bytes(bad), key)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=5 * CS),
    chunk_size=st.integers(CS, 3 * CS),
    cuts=st.lists(st.integers(0, 5 * CS), max_size=6),
    flush_at=st.sets(st.integers(0, 6), max_size=3),
)
def test_round_trip_random(
    key: EvidencePrivateKey, data: bytes, chunk_size: int, cuts: list[int], flush_at: set[int]
) -> None:
    buf = io.BytesIO()
    w = SegmentWriter(
        buf, unit_id="unit-7", segment_id="seg-r", evidence_key=key.public_key(),
        started_at=T0, chunk_size=chunk_size, durable=False,
    )  # fmt: skip
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for i, (a, b) in enumerate(itertools.pairwise(bounds)):
        w.write(memoryview(data)[a:b])
        if i in flush_at:
            w.flush_chunk()
    summary = w.finish(ended_at=T0)
    assert summary.plaintext_bytes == len(data)
    assert read_segment(io.BytesIO(buf.getvalue()), key).plaintext == data


def test_every_flipped_byte_is_detected_and_placed(key: EvidencePrivateKey) -> None:
    raw, _ = make(key, os.urandom(2 * CS + 500))
    recs = records(raw)
    trailer_start = recs[-1][1]
    for offset in range(len(raw)):
        bad = bytearray(raw)
        bad[offset] ^= 0x01 if offset % 2 else 0x40
        with pytest.raises(SegmentError) as err:
            read_segment(io.BytesIO(bytes(bad)), key, expected_segment="seg-1")
        assert err.value.segment_id == "seg-1", offset
        where = [i for i, (a, b) in enumerate(recs) if a <= offset < b]
        if where:
            assert err.value.chunk == where[0], (offset, str(err.value))
        elif offset == trailer_start:  # the record type byte: neither chunk nor trailer
            assert "unknown record type" in str(err.value), offset
        elif offset > trailer_start:
            assert err.value.chunk is None, (offset, str(err.value))
            assert "trailer" in str(err.value) or "footer" in str(err.value), offset
        else:
            assert err.value.chunk in (None, 0), (offset, str(err.value))


def test_header_change_is_named_as_header(key: EvidencePrivateKey) -> None:
    raw, _ = make(key, os.urandom(CS))
    bad = raw.replace(b'"camera":"north"', b'"camera":"south"')
    with pytest.raises(SegmentError, match="header altered") as err:
        decode(bad, key)
    assert err.value.segment_id == "seg-1" and err.value.chunk == 0


def test_swapped_chunks_are_named(key: EvidencePrivateKey) -> None:
    raw, _ = make(key, os.urandom(4 * CS))
    (a0, a1), (b0, b1) = records(raw)[1], records(raw)[2]
    swapped = raw[:a0] + raw[b0:b1] + raw[a0:a1] + raw[b1:]
    with pytest.raises(SegmentError, match="chunk 2 found at position 1") as err:
        decode(swapped, key)
    assert (err.value.segment_id, err.value.chunk) == ("seg-1", 1)


def test_dropped_chunk_is_named(key: EvidencePrivateKey) -> None:
    raw, _ = make(key, os.urandom(4 * CS))
    a, b = records(raw)[1]
    with pytest.raises(SegmentError, match="chunk 1 dropped") as err:
        decode(raw[:a] + raw[b:], key)
    assert err.value.chunk == 1


def test_chunk_from_another_segment_is_refused(key: EvidencePrivateKey) -> None:
    raw, _ = make(key, os.urandom(2 * CS))
    other, _ = make(key, os.urandom(2 * CS), segment_id="seg-2")
    a, b = records(raw)[1]
    c, d = records(other)[1]
    with pytest.raises(SegmentError, match="authentication failed") as err:
        decode(raw[:a] + other[c:d] + raw[b:], key)
    assert err.value.chunk == 1


def test_truncated_file_without_trailer_is_named(key: EvidencePrivateKey) -> None:
    raw, _ = make(key, os.urandom(3 * CS))
    recs = records(raw)
    with pytest.raises(SegmentError, match="without a trailer") as err:
        decode(raw[: recs[1][1]], key)
    assert (err.value.segment_id, err.value.chunk) == ("seg-1", 2)
    with pytest.raises(SegmentError, match="ends inside a chunk") as err:
        decode(raw[: recs[2][0] + 100], key)
    assert err.value.chunk == 2


def test_wrong_unit_and_wrong_key(key: EvidencePrivateKey) -> None:
    raw, _ = make(key, b"x" * 100)
    with pytest.raises(SegmentError, match="recorded by unit unit-7, not unit-8"):
        read_segment(io.BytesIO(raw), key, expected_unit="unit-8")
    with pytest.raises(SegmentError, match="does not open") as err:
        read_segment(io.BytesIO(raw), generate_evidence_key())
    assert err.value.segment_id == "seg-1"


def test_seal_truncated_at_every_offset_keeps_every_complete_chunk(
    key: EvidencePrivateKey,
) -> None:
    data = os.urandom(3 * CS + 10)
    raw, _ = make(key, data, finish=False)  # a power cut: no final chunk, no trailer
    recs = records(raw)
    header_end = recs[0][0]
    offsets = sorted({*range(header_end, len(raw), 97), *(b for _, b in recs), len(raw)})
    for cut in offsets:
        f = io.BytesIO(raw[:cut])
        summary = seal_truncated(f, durable=False)
        complete = sum(1 for _, b in recs if b <= cut)
        assert summary.truncated and summary.chunks == complete, cut
        sealed = f.getvalue()
        assert summary.file_bytes == len(sealed)
        decoded = read_segment(io.BytesIO(sealed), key)
        assert decoded.truncated
        assert decoded.plaintext == data[: complete * CS]
        assert seal_truncated(io.BytesIO(sealed), durable=False) == summary  # idempotent
        assert inspect_segment(io.BytesIO(sealed)).summary() == summary


def test_seal_truncated_ends_at_the_last_chunk_and_flips_are_caught(
    key: EvidencePrivateKey,
) -> None:
    raw, _ = make(key, os.urandom(2 * CS + 5), finish=False)
    f = io.BytesIO(raw + b"\0" * 300)  # power cut: the filesystem kept a zeroed tail
    summary = seal_truncated(f, durable=False)
    assert summary.chunks == 2 and summary.ended_at > T0
    sealed = f.getvalue()
    for offset in range(len(sealed)):
        bad = bytearray(sealed)
        bad[offset] ^= 0x04
        with pytest.raises(SegmentError):
            read_segment(io.BytesIO(bytes(bad)), key)


def test_seal_truncated_drops_a_torn_chunk(key: EvidencePrivateKey) -> None:
    raw, _ = make(key, os.urandom(3 * CS), finish=False)
    _a, b = records(raw)[2]
    torn = raw[: b - 16] + bytes(16)  # the record's last page never reached the disk
    f = io.BytesIO(torn)
    assert seal_truncated(f, durable=False).chunks == 2
    assert len(read_segment(io.BytesIO(f.getvalue()), key).plaintext) == 2 * CS


def test_seal_truncated_leaves_a_complete_file_alone(key: EvidencePrivateKey) -> None:
    raw, summary = make(key, os.urandom(CS + 1))
    f = io.BytesIO(raw)
    assert seal_truncated(f, durable=False) == summary
    assert f.getvalue() == raw


def test_seal_truncated_refuses_damage_a_crash_cannot_cause(key: EvidencePrivateKey) -> None:
    raw, _ = make(key, os.urandom(CS))
    with pytest.raises(SegmentError, match="data after the footer"):
        seal_truncated(io.BytesIO(raw + b"extra"), durable=False)


def test_inspect_reports_an_unsealed_file(key: EvidencePrivateKey) -> None:
    raw, _ = make(key, os.urandom(2 * CS), finish=False)
    found = inspect_segment(io.BytesIO(raw))
    assert found.trailer is None and found.summary() is None
    assert found.header.segment_id == "seg-1" and found.chunks == 2


def test_writer_on_a_real_file_is_durable_per_chunk(tmp_path, key: EvidencePrivateKey) -> None:
    path = tmp_path / "seg-1.seg"
    with path.open("wb") as f:
        w = SegmentWriter(
            f, unit_id="unit-7", segment_id="seg-1", evidence_key=key.public_key(),
            started_at=T0, chunk_size=CS,
        )  # fmt: skip
        header_only = path.stat().st_size
        assert header_only > 0  # the header is on disk before any footage
        w.write(b"a" * (CS + 10))
        assert path.stat().st_size == header_only + CS + OVERHEAD  # sealed chunk written
        w.close()  # closed without finish: as after a crash
    with path.open("r+b") as f:
        summary = seal_truncated(f)
    assert summary.chunks == 1
    with path.open("rb") as f:
        assert read_segment(f, key).plaintext == b"a" * CS


def test_writer_rejects_bad_arguments(key: EvidencePrivateKey) -> None:
    pub = key.public_key()
    with pytest.raises(ValueError, match="segment id"):
        SegmentWriter(io.BytesIO(), unit_id="u1", segment_id="a/b", evidence_key=pub, started_at=T0)
    with pytest.raises(ValueError, match="timezone"):
        SegmentWriter(
            io.BytesIO(), unit_id="u1", segment_id="s", evidence_key=pub,
            started_at=datetime(2025, 1, 1),
        )  # fmt: skip
    w = SegmentWriter(io.BytesIO(), unit_id="u1", segment_id="s", evidence_key=pub, started_at=T0)
    w.finish(ended_at=T0)
    with pytest.raises(ValueError, match="already finished"):
        w.write(b"x")


def test_records_digest_covers_heads_nonces_and_tags(key: EvidencePrivateKey) -> None:
    raw, summary = make(key, os.urandom(2 * CS + 500))
    assert summary is not None and struct.unpack(">H", raw[8:10]) == (FORMAT_VERSION,) == (2,)
    expected = hashlib.sha256()
    for start, end in records(raw):
        expected.update(raw[start : start + CHUNK_HEAD + 12] + raw[end - 16 : end])
    trailer = read_segment(io.BytesIO(raw), key).trailer
    assert trailer.records_sha256 == expected.hexdigest()
    assert summary.file_sha256 == hashlib.sha256(raw).hexdigest()  # still every byte


# A format 1 segment (records digest over the whole chunk records), as an earlier release
# wrote it: 100 bytes of plaintext in one final chunk. It must stay readable, and sealable
# after a crash, with the key below.
V1_KEY = EvidencePrivateKey(
    EvidenceSuite.X25519,
    bytes.fromhex("803775f4dcce19f75de1724486a4bc0da8ec56f1bf8f16ac64563b89b562277b"),
)
V1_SEGMENT = base64.b64decode(
    "Q0NUVlNFRwAAAQAAAWt7ImFlYWQiOiJBRVMtMjU2LUdDTSIsImNodW5rX3NpemUiOjQwOTYsImV2aWRlbmNl"
    "X2tleSI6IjViNTBjMjQ2YTQ3NjFiOWEiLCJmb3JtYXQiOiJjY3R2LXNlZ21lbnQiLCJtZWRpYV90eXBlIjoi"
    "dmlkZW8vbXA0IiwibWV0YWRhdGEiOnt9LCJzZWdtZW50X2lkIjoic2VnLXYxIiwic3RhcnRlZF9hdCI6IjIw"
    "MjUtMDMtMDFUMDc6MDA6MDAuMDAwMDAwWiIsInN1aXRlIjoieDI1NTE5IiwidW5pdF9pZCI6InVuaXQtNyIs"
    "IndyYXBwZWRfa2V5IjoiQlErRnp1UW9oUlJNa3dKa1pJdFBNQkszaWpYYTZpUE5WQUwrMjk1QzR6ckV3dytu"
    "UzJtSEVkMkNMZFR0aUg0dTVTMXZWZFVhdHgvTnZnNUUwRG92N0ZDQUZqbEdWZEF1YklWc29jMkJhN3c9In1D"
    "AQAAAIAABmDu95zG0REQKkGkKCW2XlEHuTeD8pJrRR1Gvlxy3UuEnrxpjjGZ2Xl/PdWsx3cDUA9XKOB9XPyv"
    "mWCc8mox5HvPtJqqTJjD5S7QDStaxs5RUjRMh69ZmHsJmo0WFHiFdLKL2f+cMQPSWr+hCor6OL6qHDMiqDr1"
    "uxupoqQWcxzLq/2V7n7ZVAAAAAE1eyJjaHVua3MiOjEsImVuZGVkX2F0IjoiMjAyNS0wMy0wMVQwNzowMTow"
    "MC4wMDAwMDBaIiwiaGVhZGVyX3NoYTI1NiI6IjY1MjNjOTNmZDQxNWQ2MzlhZTg4YTRkZjMwYzliYTdhMDRj"
    "NDBiMzJiYWQ1MDkyNjM2OTU2NjhlNDU2NDIxYWYiLCJtYWMiOiJMdHZxcDVISCtiamIxZWtqcXk0VlJzS0Ro"
    "Tytnc0p1ZXpxRUcwQT09IiwicGxhaW50ZXh0X2J5dGVzIjoxMDAsInJlY29yZHNfc2hhMjU2IjoiZmM5ZmNm"
    "NDJmOTc0YjI1YTk3NTkzMDQ1YTdkMTIyN2RhOTg4NGNlYmNhZWZlMWU4NmZhYjhlNWM0NjY1YzM1ZiIsInRy"
    "dW5jYXRlZCI6ZmFsc2V9AAABO0NDVFZFTkQA"
)


def test_format_1_segments_are_still_read_and_sealed() -> None:
    decoded = read_segment(io.BytesIO(V1_SEGMENT), V1_KEY, expected_unit="unit-7")
    assert decoded.plaintext == bytes(range(100)) and not decoded.truncated
    found = inspect_segment(io.BytesIO(V1_SEGMENT)).summary()
    assert found is not None and found.file_sha256 == hashlib.sha256(V1_SEGMENT).hexdigest()
    cut = V1_SEGMENT[: records(V1_SEGMENT)[-1][1]]  # a crash before the trailer
    f = io.BytesIO(cut)
    summary = seal_truncated(f, durable=False)
    assert summary.truncated and summary.chunks == 1
    assert read_segment(io.BytesIO(f.getvalue()), V1_KEY).plaintext == bytes(range(100))
    bad = bytearray(V1_SEGMENT)
    bad[records(V1_SEGMENT)[0][0] + 40] ^= 1  # ciphertext
    with pytest.raises(SegmentError, match="authentication failed") as err:
        read_segment(io.BytesIO(bytes(bad)), V1_KEY)
    assert err.value.chunk == 0
