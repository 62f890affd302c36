"""The encrypted segment container: what a unit writes to disk for each recorded segment,
and the hash-chained manifest that lists segments for export. Described byte by byte in
docs/segment-format.md.

    file    = preamble header chunk* trailer footer
    preamble= "CCTVSEG\\0" u16 version u32 header_len          (big-endian)
    header  = canonical JSON: ids, times, suite, HPKE-wrapped data key
    chunk   = "C" u8 flags u32 len u64 sealed_at_us  nonce[12] ciphertext+tag[len-12]
    trailer = "T" u8 flags u32 len  canonical JSON (counts, hashes, ended_at, mac)
    footer  = u32 trailer_record_len "CCTVEND\\0"

Each segment has a fresh 32-byte data key, wrapped to the fleet's evidence public key, so
the unit cannot read back what it recorded. Chunks are AES-256-GCM with a fresh random
nonce; their AAD binds unit, segment, the header's hash, the chunk index, the final flag
and the seal time, so an altered, reordered, dropped or foreign chunk fails its tag. A
power cut loses at most the open chunk: `seal_truncated` closes such a file without any key.

Pure: file-like objects only, no paths. Every verification failure is a `SegmentError`
naming the segment and, where it applies, the chunk.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from protocol.errors import SegmentError
from protocol.evidence_keys import EvidenceKeyError, EvidencePrivateKey, EvidencePublicKey
from protocol.topics import validate_unit_id

__all__ = [
    "FORMAT_VERSION",
    "SEGMENT_SUFFIX",
    "DecodedSegment",
    "SegmentHeader",
    "SegmentInspection",
    "SegmentSummaryInfo",
    "SegmentTrailer",
    "SegmentWriter",
    "canonical_json",
    "inspect_segment",
    "read_segment",
    "seal_truncated",
    "segment_file_name",
]

MAGIC = b"CCTVSEG\0"
END_MAGIC = b"CCTVEND\0"
FORMAT_VERSION = 1
SEGMENT_SUFFIX = ".seg"
AEAD_NAME = "AES-256-GCM"
MIN_CHUNK_SIZE = 4 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
_CHUNK, _TRAILER = 0x43, 0x54  # "C", "T"
_FINAL = 0x01  # chunk flag: last chunk of a complete segment
_TRUNCATED = 0x01  # trailer flag: sealed after a crash, without the data key
_NONCE, _TAG = 12, 16
_PREAMBLE = struct.Struct(">8sHI")
_CHUNK_HEAD = struct.Struct(">BBIQ")
_TRAILER_HEAD = struct.Struct(">BBI")
_FOOTER = struct.Struct(">I8s")
_SEGMENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_KEY_INFO = b"cctv-segment-key-v1\0"
_CHUNK_AAD = b"cctv-segment-chunk-v1\0"
_TRAILER_AAD = b"cctv-segment-trailer-v1\0"


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, ASCII: the one byte form that is hashed, signed or MACed."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def iso_utc(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def segment_file_name(segment_id: str) -> str:
    return segment_id + SEGMENT_SUFFIX


def _key_info(unit_id: str, segment_id: str) -> bytes:
    return _KEY_INFO + unit_id.encode() + b"\0" + segment_id.encode()


def _micros(value: datetime) -> int:
    return int(value.timestamp() * 1_000_000)


def _from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentHeader(_Model):
    """Written by the unit at the start of every segment file (in clear, authenticated by
    every chunk's AAD)."""

    format: str = Field(pattern=r"^cctv-segment$")
    unit_id: str
    segment_id: str = Field(pattern=_SEGMENT_ID.pattern)
    started_at: AwareDatetime
    media_type: str = Field(min_length=1, max_length=100)
    suite: str = Field(description="Evidence key suite the data key is wrapped with")
    aead: str = Field(pattern=r"^AES-256-GCM$")
    chunk_size: int = Field(ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE)
    evidence_key: str = Field(description="Fingerprint of the evidence public key")
    wrapped_key: str = Field(description="Base64 HPKE encapsulation + sealed data key")
    metadata: dict[str, str] = Field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        doc = self.model_dump()
        doc["started_at"] = iso_utc(self.started_at)
        return doc


class SegmentTrailer(_Model):
    """Written after the last chunk: by the unit's writer (complete, with a MAC under the
    data key) or by `seal_truncated` after a crash (truncated, no MAC)."""

    chunks: int = Field(ge=0)
    plaintext_bytes: int = Field(ge=0)
    records_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    header_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    ended_at: AwareDatetime
    truncated: bool
    mac: str | None = None

    def document(self, *, with_mac: bool = True) -> dict[str, Any]:
        doc = self.model_dump(exclude=set() if with_mac else {"mac"})
        doc["ended_at"] = iso_utc(self.ended_at)
        return doc


class SegmentSummaryInfo(_Model):
    """What the unit knows about a sealed segment file, without any key."""

    segment_id: str
    unit_id: str
    started_at: AwareDatetime
    ended_at: AwareDatetime
    chunks: int = Field(ge=0)
    plaintext_bytes: int = Field(ge=0)
    file_bytes: int = Field(ge=0)
    file_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    truncated: bool


class SegmentInspection(_Model):
    """The structure of a segment file, checked without decrypting."""

    header: SegmentHeader
    trailer: SegmentTrailer | None = Field(description="None: the file was never sealed")
    chunks: int
    plaintext_bytes: int
    file_bytes: int
    file_sha256: str

    def summary(self) -> SegmentSummaryInfo | None:
        if self.trailer is None:
            return None
        return _summary(self.header, self.trailer, self.file_bytes, self.file_sha256)


class DecodedSegment(_Model):
    """A segment decrypted and verified: every chunk's tag, the order, the trailer."""

    header: SegmentHeader
    trailer: SegmentTrailer
    plaintext: bytes
    truncated: bool


def _summary(h: SegmentHeader, t: SegmentTrailer, size: int, sha: str) -> SegmentSummaryInfo:
    return SegmentSummaryInfo(
        segment_id=h.segment_id,
        unit_id=h.unit_id,
        started_at=h.started_at,
        ended_at=t.ended_at,
        chunks=t.chunks,
        plaintext_bytes=t.plaintext_bytes,
        file_bytes=size,
        file_sha256=sha,
        truncated=t.truncated,
    )


def _chunk_aad(h: SegmentHeader, header_hash: bytes, index: int, flags: int, us: int) -> bytes:
    ids = h.unit_id.encode() + b"\0" + h.segment_id.encode() + b"\0"
    return _CHUNK_AAD + ids + header_hash + struct.pack(">QBQ", index, flags, us)


def _trailer_mac(key: bytes, trailer: SegmentTrailer, nonce: bytes) -> str:
    aad = _TRAILER_AAD + canonical_json(trailer.document(with_mac=False))
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, b"", aad)).decode()


def _trailer_bytes(trailer: SegmentTrailer) -> bytes:
    body = canonical_json(trailer.document())
    flags = _TRUNCATED if trailer.truncated else 0
    record = _TRAILER_HEAD.pack(_TRAILER, flags, len(body)) + body
    return record + _FOOTER.pack(len(record), END_MAGIC)


def _sync(fileobj: BinaryIO, durable: bool) -> None:
    fileobj.flush()
    if not durable:
        return
    try:
        fd = fileobj.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return  # an in-memory stream: nothing to make durable
    os.fsync(fd)


class SegmentWriter(io.RawIOBase):
    """Encrypts a byte stream (fragmented MP4 from the muxer) into a segment file.

    Not seekable, so a muxer writes it front to back. The header is written and made
    durable on construction; every full chunk is sealed, written and made durable (fsync
    when `durable` and the file has a descriptor) as soon as it fills, so a power cut loses
    at most the open chunk. `finish` seals the rest as the final chunk and writes the
    trailer; `close` without `finish` leaves an unsealed file for `seal_truncated`. The
    underlying file is never closed by the writer.
    """

    def __init__(
        self,
        fileobj: BinaryIO,
        *,
        unit_id: str,
        segment_id: str,
        evidence_key: EvidencePublicKey,
        started_at: datetime,
        chunk_size: int = 256 * 1024,
        media_type: str = "video/mp4",
        metadata: Mapping[str, str] | None = None,
        durable: bool = True,
    ) -> None:
        super().__init__()
        validate_unit_id(unit_id)
        if not _SEGMENT_ID.fullmatch(segment_id):
            raise ValueError(f"invalid segment id {segment_id!r}: 1-128 of [A-Za-z0-9._:-]")
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes")
        if started_at.tzinfo is None:
            raise ValueError("started_at must be timezone-aware")
        self._file = fileobj
        self._durable = durable
        self._chunk_size = chunk_size
        self._key = AESGCM.generate_key(bit_length=256)
        wrapped = evidence_key.wrap(self._key, info=_key_info(unit_id, segment_id))
        self._header = SegmentHeader(
            format="cctv-segment",
            unit_id=unit_id,
            segment_id=segment_id,
            started_at=started_at.astimezone(UTC),
            media_type=media_type,
            suite=evidence_key.suite.value,
            aead=AEAD_NAME,
            chunk_size=chunk_size,
            evidence_key=evidence_key.fingerprint(),
            wrapped_key=base64.b64encode(wrapped).decode(),
            metadata=dict(metadata or {}),
        )
        body = canonical_json(self._header.document())
        if len(body) > MAX_HEADER_BYTES:
            raise ValueError("segment header too large (metadata?)")
        head = _PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(body)) + body
        self._header_hash = hashlib.sha256(head).digest()
        self._file_hash = hashlib.sha256()
        self._records_hash = hashlib.sha256()
        self._buffer = bytearray()
        self._index = 0
        self._plaintext_bytes = 0
        self._file_bytes = 0
        self._summary: SegmentSummaryInfo | None = None
        self._emit(head)
        _sync(fileobj, durable)

    @property
    def header(self) -> SegmentHeader:
        return self._header

    @property
    def chunks_sealed(self) -> int:
        return self._index

    @property
    def file_bytes(self) -> int:
        return self._file_bytes

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def write(self, data: Any) -> int:
        self._check_open()
        view = memoryview(data).cast("B")
        self._buffer += view
        while len(self._buffer) >= self._chunk_size:
            self._seal(bytes(self._buffer[: self._chunk_size]), final=False)
            del self._buffer[: self._chunk_size]
        return len(view)

    def flush_chunk(self) -> None:
        """Seal what is buffered now as a (short) chunk; nothing if the buffer is empty."""
        self._check_open()
        if self._buffer:
            self._seal(bytes(self._buffer), final=False)
            self._buffer.clear()

    def finish(self, *, ended_at: datetime) -> SegmentSummaryInfo:
        """Seal the buffered rest as the final chunk (possibly empty), write the trailer."""
        self._check_open()
        self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        trailer = SegmentTrailer(
            chunks=self._index,
            plaintext_bytes=self._plaintext_bytes,
            records_sha256=self._records_hash.hexdigest(),
            header_sha256=self._header_hash.hex(),
            ended_at=ended_at.astimezone(UTC),
            truncated=False,
        )
        trailer = trailer.model_copy(update={"mac": _trailer_mac(self._key, trailer, _nonce())})
        self._emit(_trailer_bytes(trailer))
        _sync(self._file, self._durable)
        self._key = b""
        self._summary = _summary(
            self._header, trailer, self._file_bytes, self._file_hash.hexdigest()
        )
        return self._summary

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("segment writer is closed")
        if self._summary is not None:
            raise ValueError(f"segment {self._header.segment_id} is already finished")

    def _seal(self, plaintext: bytes, *, final: bool) -> None:
        flags = _FINAL if final else 0
        now = _micros(datetime.now(UTC))
        nonce = _nonce()
        aad = _chunk_aad(self._header, self._header_hash, self._index, flags, now)
        sealed = AESGCM(self._key).encrypt(nonce, plaintext, aad)
        record = _CHUNK_HEAD.pack(_CHUNK, flags, _NONCE + len(sealed), now) + nonce + sealed
        self._records_hash.update(record)
        self._emit(record)
        _sync(self._file, self._durable)
        self._index += 1
        self._plaintext_bytes += len(plaintext)

    def _emit(self, data: bytes) -> None:
        self._file.write(data)
        self._file_hash.update(data)
        self._file_bytes += len(data)


def _nonce() -> bytes:
    return os.urandom(_NONCE)


# --- reading -------------------------------------------------------------------------


class _Reader:
    """Sequential reads that know where they are and hash what they consume."""

    def __init__(self, fileobj: BinaryIO) -> None:
        self.file = fileobj
        self.offset = 0
        self.hash = hashlib.sha256()

    def read(self, n: int) -> bytes:
        data = self.file.read(n) if n else b""
        self.offset += len(data)
        self.hash.update(data)
        return data


def _read_header(r: _Reader, sid: str | None) -> tuple[SegmentHeader, bytes]:
    pre = r.read(_PREAMBLE.size)
    if len(pre) < _PREAMBLE.size:
        raise SegmentError("file too short to hold a segment header", segment_id=sid)
    magic, version, length = _PREAMBLE.unpack(pre)
    if magic != MAGIC:
        raise SegmentError("not a segment file (bad magic)", segment_id=sid)
    if version != FORMAT_VERSION:
        raise SegmentError(f"unsupported segment format version {version}", segment_id=sid)
    if length > MAX_HEADER_BYTES:
        raise SegmentError(f"header length {length} is implausible", segment_id=sid)
    body = r.read(length)
    if len(body) < length:
        raise SegmentError("file ends inside the header", segment_id=sid)
    try:
        header = SegmentHeader.model_validate_json(body)
        validate_unit_id(header.unit_id)
    except ValueError as exc:
        raise SegmentError(f"header unreadable: {exc}", segment_id=sid) from exc
    if canonical_json(header.document()) != body:
        raise SegmentError("header altered (not in canonical form)", segment_id=header.segment_id)
    return header, hashlib.sha256(pre + body).digest()


def _read_trailer(r: _Reader, sid: str, flags: int) -> SegmentTrailer:
    head = r.read(_TRAILER_HEAD.size - 2)
    if len(head) < 4:
        raise SegmentError("file ends inside the trailer", segment_id=sid)
    (length,) = struct.unpack(">I", head)
    if length > MAX_HEADER_BYTES:
        raise SegmentError(f"trailer length {length} is implausible", segment_id=sid)
    body = r.read(length)
    footer = r.read(_FOOTER.size)
    if len(body) < length or len(footer) < _FOOTER.size:
        raise SegmentError("file ends inside the trailer", segment_id=sid)
    if b"\0" in body or footer[4:] == bytes(8):
        raise SegmentError("file ends inside the trailer (torn write)", segment_id=sid)
    try:
        trailer = SegmentTrailer.model_validate_json(body)
    except ValueError as exc:
        raise SegmentError(f"trailer unreadable: {exc}", segment_id=sid) from exc
    if canonical_json(trailer.document()) != body:
        raise SegmentError("trailer altered (not in canonical form)", segment_id=sid)
    if flags != (_TRUNCATED if trailer.truncated else 0):
        raise SegmentError("trailer flags disagree with its truncated field", segment_id=sid)
    if _FOOTER.unpack(footer) != (_TRAILER_HEAD.size + length, END_MAGIC):
        raise SegmentError("bad footer after the trailer", segment_id=sid)
    if r.file.read(1):
        raise SegmentError("data after the footer", segment_id=sid)
    return trailer


class _Scan:
    """Walks the records of a file without a key; `on_chunk` may decrypt each one."""

    def __init__(self, fileobj: BinaryIO, sid_hint: str | None, *, torn: bool = False) -> None:
        self.r = _Reader(fileobj)
        self.torn = torn  # treat a record with a zeroed nonce or tag as torn by a crash
        self.trailer_flags = 0
        self.header, self.header_hash = _read_header(self.r, sid_hint)
        self.sid = self.header.segment_id
        self.records = hashlib.sha256()
        self.chunks = 0
        self.plaintext_bytes = 0
        self.last_sealed_us: int | None = None
        self.final_seen = False
        self.end_of_chunks = self.r.offset
        self.hash_at_end_of_chunks = self.r.hash.copy()

    def next_chunk(self) -> tuple[int, int, bytes] | None:
        """The next chunk (flags, sealed_at_us, body), or None at the trailer. Raises a
        SegmentError naming the chunk when the file ends inside a record."""
        index, sid = self.chunks, self.sid
        kind = self.r.read(2)
        if not kind:
            raise SegmentError(
                f"file ends after {index} chunk(s) without a trailer (unsealed or cut)",
                segment_id=sid,
                chunk=index,
            )
        if len(kind) == 2 and kind[0] == _TRAILER:
            self.trailer_flags = kind[1]
            return None
        if len(kind) < 2 or kind[0] != _CHUNK:
            raise SegmentError(
                f"unknown record type 0x{kind[0]:02x} where chunk {index} or the trailer "
                f"belongs (at byte {self.r.offset - len(kind)})",
                segment_id=sid,
                chunk=index,
            )
        rest = self.r.read(_CHUNK_HEAD.size - 2)
        if len(rest) < _CHUNK_HEAD.size - 2:
            raise SegmentError("file ends inside a chunk record", segment_id=sid, chunk=index)
        length, sealed_us = struct.unpack(">IQ", rest)
        if not _NONCE + _TAG <= length <= MAX_CHUNK_SIZE + _NONCE + _TAG:
            raise SegmentError(f"chunk length {length} is implausible", segment_id=sid, chunk=index)
        body = self.r.read(length)
        if len(body) < length:
            raise SegmentError("file ends inside a chunk record", segment_id=sid, chunk=index)
        if self.torn and (not any(body[:_NONCE]) or not any(body[-_TAG:])):
            raise SegmentError("file ends inside a chunk record (torn write)", chunk=index)
        if self.final_seen:
            raise SegmentError("a chunk follows the final chunk", segment_id=sid, chunk=index)
        self.records.update(kind + rest + body)
        self.chunks += 1
        self.plaintext_bytes += length - _NONCE - _TAG
        self.last_sealed_us = sealed_us
        self.final_seen = bool(kind[1] & _FINAL)
        self.end_of_chunks = self.r.offset
        self.hash_at_end_of_chunks = self.r.hash.copy()
        return kind[1], sealed_us, body

    def check_trailer(self, t: SegmentTrailer, key: bytes | None) -> None:
        sid = self.sid
        if t.header_sha256 != self.header_hash.hex():
            raise SegmentError(
                "header altered: its hash differs from the trailer's", segment_id=sid
            )
        if t.chunks != self.chunks:
            raise SegmentError(
                f"trailer counts {t.chunks} chunks, the file holds {self.chunks}", segment_id=sid
            )
        if (
            t.plaintext_bytes != self.plaintext_bytes
            or t.records_sha256 != self.records.hexdigest()
        ):
            raise SegmentError("trailer does not match the chunk records", segment_id=sid)
        if t.truncated:
            us = self.last_sealed_us
            expected = self.header.started_at if us is None else _from_micros(us)
            if t.mac is not None or t.ended_at != expected:
                raise SegmentError("truncated trailer altered (time or mac)", segment_id=sid)
            return
        if not self.final_seen or t.mac is None:
            raise SegmentError("complete trailer without a final chunk or mac", segment_id=sid)
        try:
            raw = base64.b64decode(t.mac, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != _NONCE + _TAG:
            raise SegmentError("trailer altered: its MAC is malformed", segment_id=sid)
        if key is not None and _trailer_mac(key, t, raw[:_NONCE]) != t.mac:
            raise SegmentError("trailer altered: its MAC does not verify", segment_id=sid)

    def finish(self, key: bytes | None) -> SegmentTrailer:
        trailer = _read_trailer(self.r, self.sid, self.trailer_flags)
        self.check_trailer(trailer, key)
        return trailer


def inspect_segment(fileobj: BinaryIO, *, segment_id: str | None = None) -> SegmentInspection:
    """Check a segment file's structure and hash it, without decrypting. A file that was
    never sealed (no trailer: a crash) comes back with `trailer=None`; damage that is not
    a crash raises SegmentError."""
    scan = _Scan(fileobj, segment_id)
    trailer: SegmentTrailer | None
    try:
        while scan.next_chunk() is not None:
            pass
        trailer = scan.finish(None)
    except SegmentError as exc:
        if not _is_crash_tail(exc):
            raise
        trailer = None
    return SegmentInspection(
        header=scan.header,
        trailer=trailer,
        chunks=scan.chunks,
        plaintext_bytes=scan.plaintext_bytes,
        file_bytes=scan.r.offset,
        file_sha256=scan.r.hash.hexdigest(),
    )


def _is_crash_tail(exc: SegmentError) -> bool:
    return exc.detail.startswith(("file ends", "unknown record type 0x00"))


def seal_truncated(fileobj: BinaryIO, *, durable: bool = True) -> SegmentSummaryInfo:
    """Close a segment file left unsealed by a crash, with no key: cut it after the last
    complete chunk record and append a trailer flagged truncated, whose `ended_at` is the
    seal time of that last chunk. A file already sealed is returned as it is. Damage that
    a crash cannot cause raises SegmentError. `fileobj` must be opened r+b, seekable."""
    fileobj.seek(0)
    scan = _Scan(fileobj, None, torn=True)
    try:
        while scan.next_chunk() is not None:
            pass
        trailer = scan.finish(None)
        return _summary(scan.header, trailer, scan.r.offset, scan.r.hash.hexdigest())
    except SegmentError as exc:
        if not _is_crash_tail(exc):
            raise
    us = scan.last_sealed_us
    trailer = SegmentTrailer(
        chunks=scan.chunks,
        plaintext_bytes=scan.plaintext_bytes,
        records_sha256=scan.records.hexdigest(),
        header_sha256=scan.header_hash.hex(),
        ended_at=scan.header.started_at if us is None else _from_micros(us),
        truncated=True,
    )
    tail = _trailer_bytes(trailer)
    fileobj.seek(scan.end_of_chunks)
    fileobj.truncate()
    fileobj.write(tail)
    _sync(fileobj, durable)
    digest = scan.hash_at_end_of_chunks
    digest.update(tail)
    return _summary(scan.header, trailer, scan.end_of_chunks + len(tail), digest.hexdigest())


def read_segment(
    fileobj: BinaryIO,
    evidence_key: EvidencePrivateKey,
    *,
    expected_unit: str | None = None,
    expected_segment: str | None = None,
) -> DecodedSegment:
    """Decrypt and verify a whole segment: header, every chunk's tag and position, the
    trailer. A segment sealed after a crash decodes with `truncated=True`. Anything else
    wrong raises SegmentError naming the segment and the chunk at fault."""
    scan = _Scan(fileobj, expected_segment)
    h, sid = scan.header, scan.sid
    if expected_segment is not None and sid != expected_segment:
        raise SegmentError(f"file holds segment {sid}", segment_id=expected_segment)
    if expected_unit is not None and h.unit_id != expected_unit:
        raise SegmentError(f"recorded by unit {h.unit_id}, not {expected_unit}", segment_id=sid)
    if h.suite != evidence_key.suite.value:
        raise SegmentError(f"data key wrapped for suite {h.suite}", segment_id=sid)
    try:
        wrapped = base64.b64decode(h.wrapped_key, validate=True)
        key = evidence_key.unwrap(wrapped, info=_key_info(h.unit_id, sid))
    except (ValueError, EvidenceKeyError) as exc:
        raise SegmentError(
            "data key does not open with this evidence key (wrong key, or header altered)",
            segment_id=sid,
        ) from exc
    aead = AESGCM(key)
    parts: list[bytes] = []
    while (chunk := scan.next_chunk()) is not None:
        index = scan.chunks - 1
        flags, us, body = chunk
        aad = _chunk_aad(h, scan.header_hash, index, flags, us)
        try:
            parts.append(aead.decrypt(body[:_NONCE], body[_NONCE:], aad))
        except InvalidTag:
            why = _diagnose(aead, scan, index, chunk, key)
            raise SegmentError(why, segment_id=sid, chunk=index) from None
    trailer = scan.finish(key)
    return DecodedSegment(
        header=h, trailer=trailer, plaintext=b"".join(parts), truncated=trailer.truncated
    )


def _diagnose(
    aead: AESGCM, scan: _Scan, index: int, chunk: tuple[int, int, bytes], key: bytes
) -> str:
    """Say why chunk `index` failed its tag: found at the wrong place, or altered."""
    flags, us, body = chunk

    def opens(j: int, f: int) -> bool:
        try:
            aead.decrypt(
                body[:_NONCE], body[_NONCE:], _chunk_aad(scan.header, scan.header_hash, j, f, us)
            )
        except InvalidTag:
            return False
        return True

    for j in range(max(0, index - 64), index + 65):
        if j != index and (opens(j, flags) or opens(j, flags ^ _FINAL)):
            if j > index:
                lost = str(index) if j == index + 1 else f"{index}..{j - 1}"
                return f"chunk {j} found at position {index}: chunk {lost} dropped or reordered"
            return f"chunk {j} found again at position {index}: chunks reordered or duplicated"
    if opens(index, flags ^ _FINAL):
        return "the chunk's final flag was altered"
    if index == 0 and _trailer_disowns_header(scan.r.file, scan.header_hash, key):
        return "header altered: its hash differs from the authenticated trailer's"
    return "authentication failed: the chunk record, or the segment header, was altered"


def _trailer_disowns_header(fileobj: BinaryIO, header_hash: bytes, key: bytes) -> bool:
    try:
        here = fileobj.tell()
        fileobj.seek(-_FOOTER.size, io.SEEK_END)
        length, magic = _FOOTER.unpack(fileobj.read(_FOOTER.size))
        fileobj.seek(-_FOOTER.size - length + _TRAILER_HEAD.size, io.SEEK_END)
        raw = fileobj.read(length - _TRAILER_HEAD.size)
        fileobj.seek(here)
        trailer = SegmentTrailer.model_validate_json(raw)
    except (OSError, ValueError, struct.error):
        return False
    if magic != END_MAGIC or trailer.mac is None:
        return False
    mac = base64.b64decode(trailer.mac)
    good = _trailer_mac(key, trailer, mac[:_NONCE]) == trailer.mac
    return good and trailer.header_sha256 != header_hash.hex()
