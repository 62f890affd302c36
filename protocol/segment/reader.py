"""Reading segment files (see docs/segment-format.md and `protocol.segment.format`):
`read_segment` decrypts and verifies with the evidence private key; `inspect_segment`
checks the structure and hashes the file without a key; `seal_truncated` closes a file
a crash left unsealed, without a key. Formats 1 and 2 are both read.
"""

from __future__ import annotations

import base64
import hashlib
import io
import struct
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol.errors import SegmentError
from protocol.evidence_keys import EvidenceKeyError, EvidencePrivateKey
from protocol.segment.format import (
    CHUNK,
    CHUNK_HEAD,
    END_MAGIC,
    FINAL,
    FOOTER,
    MAGIC,
    MAX_CHUNK_SIZE,
    MAX_HEADER_BYTES,
    NONCE,
    PREAMBLE,
    READABLE_VERSIONS,
    TAG,
    TRAILER,
    TRAILER_HEAD,
    TRUNCATED,
    DecodedSegment,
    SegmentHeader,
    SegmentInspection,
    SegmentSummaryInfo,
    SegmentTrailer,
    canonical_json,
    chunk_aad,
    chunk_aad_prefix,
    from_micros,
    key_info,
    summarize,
    sync,
    trailer_bytes,
    trailer_mac,
)
from protocol.topics import validate_unit_id

__all__ = ["inspect_segment", "read_segment", "seal_truncated"]


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


def _read_header(r: _Reader, sid: str | None) -> tuple[SegmentHeader, bytes, int]:
    """The header, its hash and the file's format version."""
    pre = r.read(PREAMBLE.size)
    if len(pre) < PREAMBLE.size:
        raise SegmentError("file too short to hold a segment header", segment_id=sid)
    magic, version, length = PREAMBLE.unpack(pre)
    if magic != MAGIC:
        raise SegmentError("not a segment file (bad magic)", segment_id=sid)
    if version not in READABLE_VERSIONS:
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
    return header, hashlib.sha256(pre + body).digest(), version


def _read_trailer(r: _Reader, sid: str, flags: int) -> SegmentTrailer:
    head = r.read(TRAILER_HEAD.size - 2)
    if len(head) < 4:
        raise SegmentError("file ends inside the trailer", segment_id=sid)
    (length,) = struct.unpack(">I", head)
    if length > MAX_HEADER_BYTES:
        raise SegmentError(f"trailer length {length} is implausible", segment_id=sid)
    body = r.read(length)
    footer = r.read(FOOTER.size)
    if len(body) < length or len(footer) < FOOTER.size:
        raise SegmentError("file ends inside the trailer", segment_id=sid)
    if b"\0" in body or footer[4:] == bytes(8):
        raise SegmentError("file ends inside the trailer (torn write)", segment_id=sid)
    try:
        trailer = SegmentTrailer.model_validate_json(body)
    except ValueError as exc:
        raise SegmentError(f"trailer unreadable: {exc}", segment_id=sid) from exc
    if canonical_json(trailer.document()) != body:
        raise SegmentError("trailer altered (not in canonical form)", segment_id=sid)
    if flags != (TRUNCATED if trailer.truncated else 0):
        raise SegmentError("trailer flags disagree with its truncated field", segment_id=sid)
    if FOOTER.unpack(footer) != (TRAILER_HEAD.size + length, END_MAGIC):
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
        self.header, self.header_hash, self.version = _read_header(self.r, sid_hint)
        self.sid = self.header.segment_id
        self.aad_prefix = chunk_aad_prefix(self.header, self.header_hash)
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
        if len(kind) == 2 and kind[0] == TRAILER:
            self.trailer_flags = kind[1]
            return None
        if len(kind) < 2 or kind[0] != CHUNK:
            raise SegmentError(
                f"unknown record type 0x{kind[0]:02x} where chunk {index} or the trailer "
                f"belongs (at byte {self.r.offset - len(kind)})",
                segment_id=sid,
                chunk=index,
            )
        rest = self.r.read(CHUNK_HEAD.size - 2)
        if len(rest) < CHUNK_HEAD.size - 2:
            raise SegmentError("file ends inside a chunk record", segment_id=sid, chunk=index)
        length, sealed_us = struct.unpack(">IQ", rest)
        if not NONCE + TAG <= length <= MAX_CHUNK_SIZE + NONCE + TAG:
            raise SegmentError(f"chunk length {length} is implausible", segment_id=sid, chunk=index)
        body = self.r.read(length)
        if len(body) < length:
            raise SegmentError("file ends inside a chunk record", segment_id=sid, chunk=index)
        if self.torn and (not any(body[:NONCE]) or not any(body[-TAG:])):
            raise SegmentError("file ends inside a chunk record (torn write)", chunk=index)
        if self.final_seen:
            raise SegmentError("a chunk follows the final chunk", segment_id=sid, chunk=index)
        if self.version == 1:
            self.records.update(kind + rest + body)
        else:  # head, nonce and tag: the tag authenticates the ciphertext
            self.records.update(kind + rest + body[:NONCE] + body[-TAG:])
        self.chunks += 1
        self.plaintext_bytes += length - NONCE - TAG
        self.last_sealed_us = sealed_us
        self.final_seen = bool(kind[1] & FINAL)
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
            expected = self.header.started_at if us is None else from_micros(us)
            if t.mac is not None or t.ended_at != expected:
                raise SegmentError("truncated trailer altered (time or mac)", segment_id=sid)
            return
        if not self.final_seen or t.mac is None:
            raise SegmentError("complete trailer without a final chunk or mac", segment_id=sid)
        try:
            raw = base64.b64decode(t.mac, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != NONCE + TAG:
            raise SegmentError("trailer altered: its MAC is malformed", segment_id=sid)
        if key is not None and trailer_mac(key, t, raw[:NONCE]) != t.mac:
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
        return summarize(scan.header, trailer, scan.r.offset, scan.r.hash.hexdigest())
    except SegmentError as exc:
        if not _is_crash_tail(exc):
            raise
    us = scan.last_sealed_us
    trailer = SegmentTrailer(
        chunks=scan.chunks,
        plaintext_bytes=scan.plaintext_bytes,
        records_sha256=scan.records.hexdigest(),
        header_sha256=scan.header_hash.hex(),
        ended_at=scan.header.started_at if us is None else from_micros(us),
        truncated=True,
    )
    tail = trailer_bytes(trailer)
    fileobj.seek(scan.end_of_chunks)
    fileobj.truncate()
    fileobj.write(tail)
    sync(fileobj, durable)
    digest = scan.hash_at_end_of_chunks
    digest.update(tail)
    return summarize(scan.header, trailer, scan.end_of_chunks + len(tail), digest.hexdigest())


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
        key = evidence_key.unwrap(wrapped, info=key_info(h.unit_id, sid))
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
        aad = chunk_aad(scan.aad_prefix, index, flags, us)
        try:
            parts.append(aead.decrypt(body[:NONCE], body[NONCE:], aad))
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
            aead.decrypt(body[:NONCE], body[NONCE:], chunk_aad(scan.aad_prefix, j, f, us))
        except InvalidTag:
            return False
        return True

    for j in range(max(0, index - 64), index + 65):
        if j != index and (opens(j, flags) or opens(j, flags ^ FINAL)):
            if j > index:
                lost = str(index) if j == index + 1 else f"{index}..{j - 1}"
                return f"chunk {j} found at position {index}: chunk {lost} dropped or reordered"
            return f"chunk {j} found again at position {index}: chunks reordered or duplicated"
    if opens(index, flags ^ FINAL):
        return "the chunk's final flag was altered"
    if index == 0 and _trailer_disowns_header(scan.r.file, scan.header_hash, key):
        return "header altered: its hash differs from the authenticated trailer's"
    return "authentication failed: the chunk record, or the segment header, was altered"


def _trailer_disowns_header(fileobj: BinaryIO, header_hash: bytes, key: bytes) -> bool:
    try:
        here = fileobj.tell()
        fileobj.seek(-FOOTER.size, io.SEEK_END)
        length, magic = FOOTER.unpack(fileobj.read(FOOTER.size))
        fileobj.seek(-FOOTER.size - length + TRAILER_HEAD.size, io.SEEK_END)
        raw = fileobj.read(length - TRAILER_HEAD.size)
        fileobj.seek(here)
        trailer = SegmentTrailer.model_validate_json(raw)
    except (OSError, ValueError, struct.error):
        return False
    if magic != END_MAGIC or trailer.mac is None:
        return False
    mac = base64.b64decode(trailer.mac)
    good = trailer_mac(key, trailer, mac[:NONCE]) == trailer.mac
    return good and trailer.header_sha256 != header_hash.hex()
