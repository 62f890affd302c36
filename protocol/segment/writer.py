"""`SegmentWriter`: encrypts the muxer's byte stream into a segment file (format 2, see
docs/segment-format.md and `protocol.segment.format`).

It sits on the recorder's hot path, so every byte is touched as few times as it can be:
kept as the muxer handed it over (joined only when a chunk spans several writes),
encrypted once (straight into a record buffer reused for every chunk), hashed once (the
whole-file SHA-256 the unit's signed index records) and written once. The trailer's
records digest covers only each record's head, nonce and tag: the tag already
authenticates that chunk's ciphertext.
"""

from __future__ import annotations

import base64
import hashlib
import io
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, BinaryIO

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from protocol.evidence_keys import EvidencePublicKey
from protocol.segment.format import (
    AEAD_NAME,
    CHUNK,
    CHUNK_HEAD,
    FINAL,
    FORMAT_VERSION,
    MAGIC,
    MAX_CHUNK_SIZE,
    MAX_HEADER_BYTES,
    MIN_CHUNK_SIZE,
    NONCE,
    PREAMBLE,
    SEGMENT_ID,
    TAG,
    SegmentHeader,
    SegmentSummaryInfo,
    SegmentTrailer,
    canonical_json,
    chunk_aad,
    chunk_aad_prefix,
    key_info,
    new_nonce,
    summarize,
    sync,
    trailer_bytes,
    trailer_mac,
)
from protocol.topics import validate_unit_id

__all__ = ["SegmentWriter"]

_SEALED_AT = CHUNK_HEAD.size + NONCE  # record offset of the ciphertext


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
        if not SEGMENT_ID.fullmatch(segment_id):
            raise ValueError(f"invalid segment id {segment_id!r}: 1-128 of [A-Za-z0-9._:-]")
        if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE} bytes")
        if started_at.tzinfo is None:
            raise ValueError("started_at must be timezone-aware")
        self._file = fileobj
        self._durable = durable
        self._chunk_size = chunk_size
        self._key = AESGCM.generate_key(bit_length=256)
        self._aead: AESGCM | None = AESGCM(self._key)
        wrapped = evidence_key.wrap(self._key, info=key_info(unit_id, segment_id))
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
        head = PREAMBLE.pack(MAGIC, FORMAT_VERSION, len(body)) + body
        self._header_hash = hashlib.sha256(head).digest()
        self._aad_prefix = chunk_aad_prefix(self._header, self._header_hash)
        self._file_hash = hashlib.sha256()
        self._records_hash = hashlib.sha256()
        self._pending: list[bytes] = []  # plaintext of the open chunk, as written
        self._pending_bytes = 0
        self._record = bytearray(_SEALED_AT + chunk_size + TAG)  # reused for every chunk
        self._index = 0
        self._plaintext_bytes = 0
        self._file_bytes = 0
        self._summary: SegmentSummaryInfo | None = None
        self._emit(head)
        sync(fileobj, durable)

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
        if self._summary is not None or self.closed:
            self._check_open()
        if type(data) is not bytes:  # a mutable buffer may change after we return: copy
            data = memoryview(data).tobytes()
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes >= self._chunk_size:
            self._seal_full_chunks()
        return len(data)

    def flush_chunk(self) -> None:
        """Seal what is buffered now as a (short) chunk; nothing if the buffer is empty."""
        self._check_open()
        if self._pending_bytes:
            self._seal_pending(final=False)

    def finish(self, *, ended_at: datetime) -> SegmentSummaryInfo:
        """Seal the buffered rest as the final chunk (possibly empty), write the trailer."""
        self._check_open()
        self._seal_pending(final=True)
        trailer = SegmentTrailer(
            chunks=self._index,
            plaintext_bytes=self._plaintext_bytes,
            records_sha256=self._records_hash.hexdigest(),
            header_sha256=self._header_hash.hex(),
            ended_at=ended_at.astimezone(UTC),
            truncated=False,
        )
        mac = trailer_mac(self._key, trailer, new_nonce())
        trailer = trailer.model_copy(update={"mac": mac})
        self._emit(trailer_bytes(trailer))
        sync(self._file, self._durable)
        self._key, self._aead, self._record = b"", None, bytearray()
        self._summary = summarize(
            self._header, trailer, self._file_bytes, self._file_hash.hexdigest()
        )
        return self._summary

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("segment writer is closed")
        if self._summary is not None:
            raise ValueError(f"segment {self._header.segment_id} is already finished")

    def _seal_full_chunks(self) -> None:
        data, size, done = b"".join(self._pending), self._chunk_size, 0
        with memoryview(data) as view:
            while len(data) - done >= size:
                self._seal(view[done : done + size], final=False)
                done += size
            rest = view[done:].tobytes()
        self._pending = [rest] if rest else []
        self._pending_bytes = len(rest)

    def _seal_pending(self, *, final: bool) -> None:
        data = b"".join(self._pending)  # the one piece itself when there is only one
        with memoryview(data) as view:
            self._seal(view, final=final)
        self._pending.clear()
        self._pending_bytes = 0

    def _seal(self, plaintext: memoryview, *, final: bool) -> None:
        """Encrypt one chunk into the record buffer, hash it, write it, make it durable."""
        aead = self._aead
        assert aead is not None  # only `finish` drops it, and nothing seals after that
        flags = FINAL if final else 0
        now_us = time.time_ns() // 1000
        nonce = new_nonce()
        end = _SEALED_AT + len(plaintext) + TAG
        record = self._record
        CHUNK_HEAD.pack_into(record, 0, CHUNK, flags, end - CHUNK_HEAD.size, now_us)
        record[CHUNK_HEAD.size : _SEALED_AT] = nonce
        aad = chunk_aad(self._aad_prefix, self._index, flags, now_us)
        with memoryview(record) as out:
            aead.encrypt_into(nonce, plaintext, aad, out[_SEALED_AT:end])
            self._records_hash.update(out[:_SEALED_AT])  # head and nonce
            self._records_hash.update(out[end - TAG : end])  # tag
            self._emit(out[:end])
        sync(self._file, self._durable)
        self._index += 1
        self._plaintext_bytes += len(plaintext)

    def _emit(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        self._file_hash.update(data)
        self._file_bytes += len(data)
