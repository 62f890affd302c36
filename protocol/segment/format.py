"""The encrypted segment container: what a unit writes to disk for each recorded segment.
Described byte by byte in docs/segment-format.md.

    file    = preamble header chunk* trailer footer
    preamble= "CCTVSEG\\0" u16 version u32 header_len          (big-endian)
    header  = canonical JSON: ids, times, suite, HPKE-wrapped data key
    chunk   = "C" u8 flags u32 len u64 sealed_at_us  nonce[12] ciphertext+tag[len-12]
    trailer = "T" u8 flags u32 len  canonical JSON (counts, digests, ended_at, mac)
    footer  = u32 trailer_record_len "CCTVEND\\0"

Each segment has a fresh 32-byte data key, wrapped to the fleet's evidence public key, so
the unit cannot read back what it recorded. Chunks are AES-256-GCM with a fresh random
nonce; their AAD binds unit, segment, the header's hash, the chunk index, the final flag
and the seal time, so an altered, reordered, dropped or foreign chunk fails its tag. A
power cut loses at most the open chunk: `seal_truncated` closes such a file without any key.

This module holds what writer and reader share (layout, models, AAD and MAC); the writer
is `protocol.segment.writer`, the readers `protocol.segment.reader`.

Pure: file-like objects only, no paths. Every verification failure is a `SegmentError`
naming the segment and, where it applies, the chunk.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import struct
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "SEGMENT_SUFFIX",
    "DecodedSegment",
    "SegmentHeader",
    "SegmentInspection",
    "SegmentSummaryInfo",
    "SegmentTrailer",
    "canonical_json",
    "segment_file_name",
]

MAGIC = b"CCTVSEG\0"
END_MAGIC = b"CCTVEND\0"
# 2: the trailer's `records_sha256` covers each chunk record's head, nonce and tag, not
# its ciphertext (1: whole records). Version 1 files are still read and sealed.
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
SEGMENT_SUFFIX = ".seg"
AEAD_NAME = "AES-256-GCM"
MIN_CHUNK_SIZE = 4 * 1024
MAX_CHUNK_SIZE = 16 * 1024 * 1024
MAX_HEADER_BYTES = 64 * 1024
CHUNK, TRAILER = 0x43, 0x54  # record types "C", "T"
FINAL = 0x01  # chunk flag: last chunk of a complete segment
TRUNCATED = 0x01  # trailer flag: sealed after a crash, without the data key
NONCE, TAG = 12, 16
PREAMBLE = struct.Struct(">8sHI")
CHUNK_HEAD = struct.Struct(">BBIQ")
TRAILER_HEAD = struct.Struct(">BBI")
FOOTER = struct.Struct(">I8s")
SEGMENT_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
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


def key_info(unit_id: str, segment_id: str) -> bytes:
    """HPKE `info` for a segment's data key: a key moved into another header won't open."""
    return _KEY_INFO + unit_id.encode() + b"\0" + segment_id.encode()


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentHeader(_Model):
    """Written by the unit at the start of every segment file (in clear, authenticated by
    every chunk's AAD)."""

    format: str = Field(pattern=r"^cctv-segment$")
    unit_id: str
    segment_id: str = Field(pattern=SEGMENT_ID.pattern)
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
    records_sha256: str = Field(
        pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 over every chunk record's head, nonce and tag, in order "
        "(format 1: over the whole records)",
    )
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
        return summarize(self.header, self.trailer, self.file_bytes, self.file_sha256)


class DecodedSegment(_Model):
    """A segment decrypted and verified: every chunk's tag, the order, the trailer."""

    header: SegmentHeader
    trailer: SegmentTrailer
    plaintext: bytes
    truncated: bool


def summarize(h: SegmentHeader, t: SegmentTrailer, size: int, sha: str) -> SegmentSummaryInfo:
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


def chunk_aad_prefix(h: SegmentHeader, header_hash: bytes) -> bytes:
    """The part of every chunk's AAD that is the same for the whole segment."""
    return _CHUNK_AAD + h.unit_id.encode() + b"\0" + h.segment_id.encode() + b"\0" + header_hash


def chunk_aad(prefix: bytes, index: int, flags: int, sealed_at_us: int) -> bytes:
    return prefix + struct.pack(">QBQ", index, flags, sealed_at_us)


def trailer_mac(key: bytes, trailer: SegmentTrailer, nonce: bytes) -> str:
    aad = _TRAILER_AAD + canonical_json(trailer.document(with_mac=False))
    return base64.b64encode(nonce + AESGCM(key).encrypt(nonce, b"", aad)).decode()


def trailer_bytes(trailer: SegmentTrailer) -> bytes:
    """The trailer record and the footer."""
    body = canonical_json(trailer.document())
    flags = TRUNCATED if trailer.truncated else 0
    record = TRAILER_HEAD.pack(TRAILER, flags, len(body)) + body
    return record + FOOTER.pack(len(record), END_MAGIC)


def new_nonce() -> bytes:
    return os.urandom(NONCE)


def sync(fileobj: BinaryIO, durable: bool) -> None:
    """Flush; with `durable`, fsync too (a stream without a descriptor has nothing to sync)."""
    fileobj.flush()
    if not durable:
        return
    try:
        fd = fileobj.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        return  # an in-memory stream: nothing to make durable
    os.fsync(fd)
