"""The controller's side of evidence retrieval: taking a case's files from a unit, chunk by
chunk, and checking each as soon as it is complete. The HTTPS endpoint
(`controller.evidence.receiver`) and `cctv-controller evidence import` both come here.

A unit may write only to an upload the controller asked of it (`retrievals`, made by
`controller.evidence.retrieval`): an unknown upload id is refused (404), another unit's
upload is refused (403); both are audited. The unit first offers its files (the signed
manifest first); the offer is registered once (`retrieved_files`) and must be the same
every time after. Then each chunk:

- is taken only at the offset the controller holds for the file: a chunk that starts
  earlier would send acknowledged bytes again; it is refused (409) and the bytes it
  claims are counted in `resent_bytes` (the record that none was taken twice);
- is written under `.incoming/` in the case's folder and flushed to disk (fsync) before
  the new offset is committed, and only then acknowledged; bytes beyond the committed
  offset (a crash between the two) are cut off before the next write;
- when the connection is cut part way, keeps what arrived (flushed and committed the
  same way): the unit asks for the state and goes on from there.

A complete file is checked at once (`controller.evidence.retrieval_checks`): verified, it
moves into the case's folder under its own name; refused, to `refused/`, with the reason
named in `retrieved_files` and the audit chain. A refused manifest refuses every file of
the upload. When every file of the upload is settled, the retrieval is `complete` (all
verified) or `refused`; when the latest retrieval from each unit of the case is complete,
the case moves to `retrieved` (`controller.evidence.cases.mark_retrieved`); the first
stored bytes move it to `retrieving`. The controller never decrypts anything here.

A unit sends one request at a time: a request for an upload while a chunk of it is still
being read means the old connection is gone, so that read is stopped (what arrived is
kept) and the answer waits until the chunk is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.evidence.case_errors import CaseError
from controller.evidence.cases import mark_retrieved, mark_retrieving
from controller.evidence.holds import case_subject
from controller.evidence.retrieval_checks import (
    ManifestCheck,
    Range,
    Reported,
    check_manifest,
    check_segment,
    file_sha256,
    load_reported,
    parse_manifest,
    reported_segments,
    unit_signing_key,
)
from controller.evidence.store_layout import INCOMING, REFUSED, case_unit_dir, fsync_dir
from controller.evidence.upload_errors import (
    BodyCut,
    ChunkTooLarge,
    NotYourUpload,
    UnknownUpload,
    UploadBusy,
    UploadConflict,
    UploadOver,
    UploadRefused,
)
from controller.store.base import Database, utcnow
from controller.store.evidence import CaseRangeRow, CaseRow, RetrievalRow, RetrievedFileRow
from controller.store.fleet import Unit
from protocol.evidence_upload import (
    MANIFEST_NAME,
    MAX_CHUNK_BYTES,
    ContentRange,
    FileState,
    UploadOffer,
    UploadState,
)
from protocol.segment.manifest import ManifestError

__all__ = ["UploadService"]

log = logging.getLogger(__name__)

#: Upload states in which files are still taken.
OPEN = ("requested", "uploading")
SETTLED = ("verified", "refused")


@dataclass(frozen=True)
class _Where:
    """What a file check needs to know, read in one short transaction."""

    retrieval_id: int
    upload_id: str
    unit_id: str
    case_id: int
    case_number: str
    folder: Path
    ranges: tuple[Range, ...]
    #: Sent by the unit for this upload ("upload") or taken from its export folder.
    source: str = "upload"


def _write_chunk(path: Path, offset: int, data: bytes) -> int:
    """Write `data` at `offset`, cutting off anything stored beyond `offset` first, and
    flush it to disk. Returns the file's size before, which is less than `offset` only
    when acknowledged bytes were lost (then nothing is written)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        before = os.fstat(fd).st_size
        if before < offset:
            return before
        if before != offset:
            os.ftruncate(fd, offset)
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.pwrite(fd, view[done:], offset + done)
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        fsync_dir(path.parent)
    return before


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    fsync_dir(target.parent)
    if source.parent != target.parent:
        fsync_dir(source.parent)


class UploadService:
    """Offers, state and chunks of uploads, for the endpoint and for imports."""

    def __init__(
        self,
        db: Database,
        *,
        store_dir: Path,
        max_chunk_bytes: int = MAX_CHUNK_BYTES,
        lock_wait_s: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.store_dir = Path(store_dir)
        self.max_chunk_bytes = max_chunk_bytes
        self.lock_wait_s = lock_wait_s
        self.clock = clock
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        #: The request reading a body now, per (upload, file): how to stop it.
        self._readers: dict[tuple[str, str], tuple[asyncio.Event, Callable[[], None] | None]] = {}
        self._manifests: dict[int, ManifestCheck] = {}

    # ------------------------------------------------------------------ lookups

    async def _load(
        self, session: AsyncSession, unit_id: str, upload_id: str, *, lock: bool = False
    ) -> tuple[RetrievalRow, CaseRow]:
        query = select(RetrievalRow).where(RetrievalRow.upload_id == upload_id)
        if lock:
            query = query.with_for_update()
        row = await session.scalar(query)
        if row is None:
            raise UnknownUpload(f"the controller asked for no upload {upload_id!r}")
        if row.unit_id != unit_id:
            raise NotYourUpload(f"upload {upload_id} was not asked of unit {unit_id}")
        case = await session.get(CaseRow, row.case_id)
        if case is None:  # pragma: no cover - the foreign key keeps it
            raise UnknownUpload(f"upload {upload_id} has no case")
        return row, case

    @staticmethod
    async def _files(session: AsyncSession, retrieval_id: int) -> list[RetrievedFileRow]:
        rows = await session.execute(
            select(RetrievedFileRow)
            .where(RetrievedFileRow.retrieval_id == retrieval_id)
            .order_by(RetrievedFileRow.id)
        )
        return list(rows.scalars())

    @staticmethod
    def _state(row: RetrievalRow, files: Sequence[RetrievedFileRow]) -> UploadState:
        return UploadState(
            upload_id=row.upload_id,
            status=row.status,
            received_bytes=row.received_bytes,
            total_bytes=row.total_bytes,
            files=[
                FileState(
                    name=f.name,
                    role=f.role,
                    size=f.size,
                    received=f.received_bytes,
                    status=f.status,
                    problem=f.problem,
                )
                for f in files
            ],
            problem=row.problem,
        )

    async def _refused_attempt(self, unit_id: str, upload_id: str, exc: UploadRefused) -> None:
        """A unit writing where it was not asked to: logged and audited."""
        log.warning("unit=%s upload=%s refused: %s", unit_id, upload_id, exc.reason)
        async with self.db.session() as session:
            await audit.record(
                session,
                actor=f"unit:{unit_id}",
                action="evidence.upload_refused",
                subject=f"unit:{unit_id}",
                details={"upload_id": upload_id, "reason": exc.reason},
                at=self.clock(),
            )
            await session.commit()

    async def _checked_load(
        self, session: AsyncSession, unit_id: str, upload_id: str, *, lock: bool = False
    ) -> tuple[RetrievalRow, CaseRow]:
        try:
            return await self._load(session, unit_id, upload_id, lock=lock)
        except (UnknownUpload, NotYourUpload) as exc:
            await session.rollback()
            await self._refused_attempt(unit_id, upload_id, exc)
            raise

    @staticmethod
    async def _ranges(session: AsyncSession, case_id: int, unit_id: str) -> tuple[Range, ...]:
        rows = await session.execute(
            select(CaseRangeRow.start, CaseRangeRow.end)
            .where(CaseRangeRow.case_id == case_id, CaseRangeRow.unit_id == unit_id)
            .order_by(CaseRangeRow.start)
        )
        return tuple((start, end) for start, end in rows.all())

    def folder(self, case_number: str, unit_id: str) -> Path:
        return case_unit_dir(self.store_dir, case_number, unit_id)

    # -------------------------------------------------------------- the protocol

    async def _identify(self, unit_id: str, upload_id: str) -> None:
        """Refuse (and audit) a unit writing where it was not asked to."""
        async with self.db.session() as session:
            await self._checked_load(session, unit_id, upload_id)

    def _supersede(self, upload_id: str) -> None:
        """A unit sends one request at a time: a body of the upload still being read
        belongs to a connection that is gone (or given up on). Stop reading it; what
        arrived is kept."""
        for (upload, _), (stop, interrupt) in list(self._readers.items()):
            if upload == upload_id and not stop.is_set():
                stop.set()
                if interrupt is not None:
                    interrupt()

    async def _quiet(self, upload_id: str) -> None:
        """Until no chunk of the upload is being written: a state is answered only from
        what is committed, never while a chunk is on its way to the disk."""
        self._supersede(upload_id)
        for (upload, _), lock in list(self._locks.items()):
            if upload == upload_id:
                try:
                    async with asyncio.timeout(self.lock_wait_s):
                        await lock.acquire()
                except TimeoutError:
                    raise UploadBusy("a chunk is being written: try again") from None
                lock.release()

    async def state(self, unit_id: str, upload_id: str) -> UploadState:
        await self._identify(unit_id, upload_id)
        await self._quiet(upload_id)
        async with self.db.session() as session:
            row, _ = await self._checked_load(session, unit_id, upload_id)
            return self._state(row, await self._files(session, row.id))

    async def offer(self, unit_id: str, upload_id: str, offer: UploadOffer) -> UploadState:
        """Register the unit's files (the first time) or check they are the same."""
        await self._identify(unit_id, upload_id)
        await self._quiet(upload_id)
        async with self.db.session() as session:
            row, case = await self._checked_load(session, unit_id, upload_id, lock=True)
            files = await self._files(session, row.id)
            if offer.case_number != case.number:
                raise UploadConflict(
                    f"upload {upload_id} is for case {case.number}, not {offer.case_number}"
                )
            if files:
                registered = [(f.name, f.role, f.size, f.sha256) for f in files]
                offered = [(f.name, f.role, f.size, f.sha256) for f in offer.files]
                if registered != offered:
                    raise UploadConflict(
                        "these files differ from the ones first offered for this upload",
                        state=self._state(row, files),
                    )
                return self._state(row, files)
            if row.status not in OPEN or case.status == "closed":
                raise UploadOver(f"upload {upload_id} is {row.status}: nothing more is taken")
            for f in offer.files:
                session.add(
                    RetrievedFileRow(
                        retrieval_id=row.id,
                        name=f.name,
                        role=f.role,
                        size=f.size,
                        sha256=f.sha256,
                        received_bytes=0,
                        status="pending",
                        resent_bytes=0,
                    )
                )
            row.total_bytes = offer.total_bytes
            await audit.record(
                session,
                actor=f"unit:{unit_id}",
                action="evidence.upload_offered",
                subject=case_subject(case.number),
                details={
                    "upload_id": upload_id,
                    "unit_id": unit_id,
                    "files": len(offer.files),
                    "bytes": offer.total_bytes,
                    "manifest_sha256": offer.files[0].sha256,
                },
                at=self.clock(),
            )
            await session.flush()
            state = self._state(row, await self._files(session, row.id))
            await session.commit()
        log.info(
            "unit=%s upload=%s case=%s offered files=%d bytes=%d",
            unit_id, upload_id, case.number, len(offer.files), offer.total_bytes,
        )  # fmt: skip
        return state

    @contextlib.asynccontextmanager
    async def _file_lock(self, upload_id: str, name: str) -> AsyncIterator[None]:
        key = (upload_id, name)
        self._supersede(upload_id)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with asyncio.timeout(self.lock_wait_s):
                await lock.acquire()
        except TimeoutError:
            raise UploadBusy(f"{name} is being written by another request: try again") from None
        try:
            yield
        finally:
            lock.release()
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]

    async def receive(
        self,
        unit_id: str,
        upload_id: str,
        name: str,
        span: ContentRange,
        body: AsyncIterator[bytes],
        interrupt: Callable[[], None] | None = None,
    ) -> UploadState:
        """Store one chunk of file `name` (see the module docstring). Raises BodyCut after
        keeping what arrived when the body stopped early. `interrupt` ends the body's
        connection, should a newer request of the unit supersede it."""
        if span.length > self.max_chunk_bytes:
            raise ChunkTooLarge(f"a chunk may hold at most {self.max_chunk_bytes} bytes")
        await self._identify(unit_id, upload_id)
        async with self._file_lock(upload_id, name):
            where, offset = await self._before_chunk(unit_id, upload_id, name, span)
            parts: list[bytes] = []
            got = 0
            cut: BodyCut | None = None
            try:
                async for data in self._until_superseded(upload_id, name, body, interrupt):
                    got += len(data)
                    if got > span.length:
                        raise UploadRefused("the body is longer than its Content-Range")
                    parts.append(data)
            except BodyCut as exc:
                cut = exc
            if cut is None and got != span.length:
                raise UploadRefused("the body is shorter than its Content-Range")
            if got:
                await self._store(where, name, offset, b"".join(parts))
            if cut is not None:
                raise cut
            return await self._after_chunk(where, name)

    async def _until_superseded(
        self,
        upload_id: str,
        name: str,
        body: AsyncIterator[bytes],
        interrupt: Callable[[], None] | None,
    ) -> AsyncIterator[bytes]:
        """`body`, ended by BodyCut when a newer request of the unit supersedes it
        (`interrupt` stops the read at once: it closes the old connection)."""
        key = (upload_id, name)
        stop = asyncio.Event()
        self._readers[key] = (stop, interrupt)
        try:
            async for data in body:
                if stop.is_set():
                    raise BodyCut("superseded by a newer request of the unit")
                yield data
        finally:
            if self._readers.get(key, (None, None))[0] is stop:
                del self._readers[key]

    async def _before_chunk(
        self, unit_id: str, upload_id: str, name: str, span: ContentRange
    ) -> tuple[_Where, int]:
        async with self.db.session() as session:
            row, case = await self._checked_load(session, unit_id, upload_id, lock=True)
            files = await self._files(session, row.id)
            f = next((x for x in files if x.name == name), None)
            if not files:
                raise UploadConflict("offer the upload's files before sending any")
            if f is None:
                raise UploadRefused(f"upload {upload_id} has no file {name!r}")
            if row.status not in OPEN or case.status == "closed":
                if row.status in ("complete", "refused"):
                    raise UploadConflict(
                        f"upload {upload_id} is {row.status}", state=self._state(row, files)
                    )
                raise UploadOver(f"upload {upload_id} is {row.status}: nothing more is taken")
            if span.size != f.size:
                raise UploadRefused(f"{name} has {f.size} bytes, not {span.size}")
            if f.status in SETTLED or span.first != f.received_bytes:
                if span.first < f.received_bytes:
                    again = min(f.received_bytes, span.last + 1) - span.first
                    f.resent_bytes += again
                    log.warning(
                        "unit=%s upload=%s file=%s sent %d acknowledged bytes again",
                        unit_id, upload_id, name, again,
                    )  # fmt: skip
                    await session.commit()
                why = (
                    f"{name} is already {f.status}"
                    if f.status in SETTLED
                    else f"{name}: the controller holds {f.received_bytes} bytes; "
                    f"send from there, not from {span.first}"
                )
                raise UploadConflict(why, state=self._state(row, files))
            where = _Where(
                retrieval_id=row.id,
                upload_id=upload_id,
                unit_id=unit_id,
                case_id=case.id,
                case_number=case.number,
                folder=self.folder(case.number, unit_id),
                ranges=await self._ranges(session, case.id, unit_id),
                source=row.source,
            )
            return where, f.received_bytes

    async def _store(self, where: _Where, name: str, offset: int, data: bytes) -> None:
        """Write and flush, then commit the new offset: only then is it acknowledged."""
        path = where.folder / INCOMING / name
        before = await asyncio.to_thread(_write_chunk, path, offset, data)
        now = self.clock()
        async with self.db.session() as session:
            row = await session.get(RetrievalRow, where.retrieval_id, with_for_update=True)
            f = await session.scalar(
                select(RetrievedFileRow)
                .where(
                    RetrievedFileRow.retrieval_id == where.retrieval_id,
                    RetrievedFileRow.name == name,
                )
                .with_for_update()
            )
            assert row is not None and f is not None
            if before < offset:  # acknowledged bytes lost from the disk: ask for them again
                log.error(
                    "upload=%s file=%s: %d acknowledged bytes missing on disk",
                    where.upload_id, name, offset - before,
                )  # fmt: skip
                row.received_bytes -= offset - before
                f.received_bytes = before
                f.status = "receiving" if before else "pending"
                await session.commit()
                raise UploadConflict(f"{name}: send again from {before}")
            f.received_bytes = offset + len(data)
            f.status = "receiving"
            row.received_bytes += len(data)
            await self._begin(session, row, where, now)
            await session.commit()

    async def _begin(
        self, session: AsyncSession, row: RetrievalRow, where: _Where, now: datetime
    ) -> None:
        """The first bytes of a retrieval are stored: it is under way, and so is the case."""
        if row.started_at is not None:
            return
        row.started_at = now
        row.status = "uploading"
        await audit.record(
            session,
            actor=f"unit:{where.unit_id}",
            action="evidence.upload_started",
            subject=case_subject(where.case_number),
            details={"upload_id": where.upload_id, "unit_id": where.unit_id, "source": row.source},
            at=now,
        )
        try:
            await mark_retrieving(
                session, where.case_id, actor=f"unit:{where.unit_id}", at=now,
                upload_id=where.upload_id,
            )  # fmt: skip
        except CaseError as exc:
            log.info("case=%s stays as it is: %s", where.case_number, exc)

    async def _after_chunk(self, where: _Where, name: str) -> UploadState:
        async with self.db.session() as session:
            f = await session.scalar(
                select(RetrievedFileRow).where(
                    RetrievedFileRow.retrieval_id == where.retrieval_id,
                    RetrievedFileRow.name == name,
                )
            )
            complete = f is not None and f.status == "receiving" and f.received_bytes == f.size
        if complete:
            await self.check_file(where, name)
        async with self.db.session() as session:
            row = await session.get(RetrievalRow, where.retrieval_id)
            assert row is not None
            return self._state(row, await self._files(session, row.id))

    # ------------------------------------------------------------- file checks

    async def where(self, retrieval_id: int) -> _Where:
        async with self.db.session() as session:
            row = await session.get(RetrievalRow, retrieval_id)
            assert row is not None
            case = await session.get(CaseRow, row.case_id)
            assert case is not None
            return _Where(
                retrieval_id=row.id,
                upload_id=row.upload_id,
                unit_id=row.unit_id,
                case_id=case.id,
                case_number=case.number,
                folder=self.folder(case.number, row.unit_id),
                ranges=await self._ranges(session, case.id, row.unit_id),
                source=row.source,
            )

    async def check_file(self, where: _Where, name: str) -> None:
        """Check a complete file and settle it (verified or refused); then settle the
        retrieval. A segment waits for its manifest to be verified first."""
        async with self.db.session() as session:
            files = {f.name: f for f in await self._files(session, where.retrieval_id)}
            unit = await session.get(Unit, where.unit_id)
            f = files.get(name)
            if f is None or f.status != "receiving" or f.received_bytes != f.size:
                return
            role, offered_sha = f.role, f.sha256
            manifest_row = files.get(MANIFEST_NAME)
            manifest_status = manifest_row.status if manifest_row is not None else "refused"
            segments = [n for n, x in files.items() if x.role == "segment"]
            signing_key = unit.signing_public_key if unit is not None else None
            reported: Reported | None = None
            if role == "manifest":
                try:
                    data = await asyncio.to_thread((where.folder / INCOMING / name).read_bytes)
                    parsed = parse_manifest(data)
                    last = parsed.checkpoint.count
                    first = min((e.seq for e in parsed.entries), default=last)
                    reported = await load_reported(session, where.unit_id, first, last)
                except (OSError, ManifestError):
                    pass
        if role == "manifest":
            await self._check_manifest(where, name, offered_sha, signing_key, reported, segments)
        elif manifest_status == "verified":
            await self._check_segment(where, name)
        elif manifest_status == "refused":
            await self._settle_file(where, name, None, "the upload's manifest was refused")
        # else: the manifest is still on its way; the segment is checked after it

    async def _check_manifest(
        self,
        where: _Where,
        name: str,
        offered_sha: str,
        signing_key: str | None,
        reported: Reported | None,
        segments: list[str],
    ) -> None:
        path = where.folder / INCOMING / name

        def run() -> ManifestCheck:
            data = path.read_bytes()
            check = check_manifest(
                data,
                unit_id=where.unit_id,
                unit_key=unit_signing_key(signing_key),
                reported=reported if reported is not None else Reported(),
                offered=segments,
                ranges=where.ranges,
                exact=where.source == "upload",
            )
            _, sha = file_sha256(path)
            if sha != offered_sha:
                check.problems.insert(0, "its SHA-256 is not the one the unit offered")
            return check

        try:
            check = await asyncio.to_thread(run)
        except OSError as exc:
            check = ManifestCheck(None, [f"cannot be read back: {exc.strerror or exc}"])
        problem = "; ".join(check.problems[:20]) or None
        if problem is None:
            self._manifests[where.retrieval_id] = check
        await self._settle_file(
            where, name, None, problem, matched=check.matched_reported if not problem else None
        )
        # Segments that finished before their manifest are checked now.
        async with self.db.session() as session:
            waiting = [
                f.name
                for f in await self._files(session, where.retrieval_id)
                if f.role == "segment" and f.status == "receiving" and f.received_bytes == f.size
            ]
        for segment in waiting:
            if problem is None:
                await self._check_segment(where, segment)
        if problem is not None:
            await self._refuse_rest(where, "the upload's manifest was refused")

    async def _manifest(self, where: _Where) -> ManifestCheck | None:
        check = self._manifests.get(where.retrieval_id)
        if check is not None:
            return check
        path = where.folder / MANIFEST_NAME
        try:
            data = await asyncio.to_thread(path.read_bytes)
            manifest = parse_manifest(data)
        except (OSError, ManifestError) as exc:
            log.error("upload=%s verified manifest unreadable: %s", where.upload_id, exc)
            return None
        segments = manifest.segments()
        by_name = {segments[s].file_name: segments[s] for s in manifest.selected if s in segments}
        check = ManifestCheck(manifest, [], by_name)
        self._manifests[where.retrieval_id] = check
        return check

    async def _check_segment(self, where: _Where, name: str) -> None:
        manifest = await self._manifest(where)
        if manifest is None:
            await self._settle_file(where, name, None, "the verified manifest cannot be read")
            return
        listed = manifest.by_name
        entry = listed.get(name)
        async with self.db.session() as session:
            reported = await reported_segments(
                session, where.unit_id, [entry.segment_id] if entry is not None else []
            )
        sid, problem = await asyncio.to_thread(
            check_segment,
            where.folder / INCOMING / name,
            name,
            unit_id=where.unit_id,
            listed=listed,
            reported=reported,
            ranges=where.ranges,
        )
        await self._settle_file(where, name, sid, problem)

    async def _refuse_rest(self, where: _Where, why: str) -> None:
        async with self.db.session() as session:
            names = [
                f.name
                for f in await self._files(session, where.retrieval_id)
                if f.status not in SETTLED
            ]
        for name in names:
            await self._settle_file(where, name, None, why, moved=False)

    async def _settle_file(
        self,
        where: _Where,
        name: str,
        segment_id: str | None,
        problem: str | None,
        *,
        matched: int | None = None,
        moved: bool = True,
    ) -> None:
        """Mark the file verified (problem None) or refused; move it; audit; settle the
        retrieval."""
        incoming = where.folder / INCOMING / name
        target = where.folder / (name if problem is None else f"{REFUSED}/{name}")
        if moved and incoming.exists():
            await asyncio.to_thread(_move, incoming, target)
        now = self.clock()
        async with self.db.session() as session:
            row = await session.get(RetrievalRow, where.retrieval_id, with_for_update=True)
            f = await session.scalar(
                select(RetrievedFileRow)
                .where(
                    RetrievedFileRow.retrieval_id == where.retrieval_id,
                    RetrievedFileRow.name == name,
                )
                .with_for_update()
            )
            if row is None or f is None or f.status in SETTLED:
                return
            f.segment_id = segment_id
            f.status = "verified" if problem is None else "refused"
            f.problem = problem
            f.verified_at = now if problem is None else None
            details: dict[str, Any] = {
                "upload_id": where.upload_id,
                "unit_id": where.unit_id,
                "file": name,
                "role": f.role,
                "size": f.size,
                "sha256": f.sha256,
            }
            if segment_id is not None:
                details["segment_id"] = segment_id
            if matched is not None:
                details["entries_matching_mqtt_reports"] = matched
            if problem is not None:
                details["problem"] = problem
            await audit.record(
                session,
                actor="system",
                action="evidence.file_verified" if problem is None else "evidence.file_refused",
                subject=case_subject(where.case_number),
                details=details,
                at=now,
            )
            await self._settle_retrieval(session, row, where, now)
            await session.commit()
        if problem is None:
            log.info("upload=%s file=%s verified", where.upload_id, name)
        else:
            log.warning("upload=%s file=%s refused: %s", where.upload_id, name, problem)

    async def _settle_retrieval(
        self, session: AsyncSession, row: RetrievalRow, where: _Where, now: datetime
    ) -> None:
        await session.flush()
        files = await self._files(session, row.id)
        if row.status not in OPEN or any(f.status not in SETTLED for f in files):
            return
        refused = [f for f in files if f.status == "refused"]
        row.status = "refused" if refused else "complete"
        row.finished_at = now
        row.problem = "; ".join(f"{f.name}: {f.problem}" for f in refused[:10]) or None
        self._manifests.pop(row.id, None)
        await audit.record(
            session,
            actor="system",
            action=f"evidence.retrieval_{row.status}",
            subject=case_subject(where.case_number),
            details={
                "upload_id": row.upload_id,
                "unit_id": row.unit_id,
                "files": len(files),
                "refused": [f.name for f in refused],
                "bytes": row.received_bytes,
            },
            at=now,
        )
        log.info("upload=%s case=%s %s", row.upload_id, where.case_number, row.status)
        if refused:
            return
        others = await session.execute(
            select(RetrievalRow.unit_id, RetrievalRow.status)
            .where(RetrievalRow.case_id == row.case_id)
            .order_by(RetrievalRow.id)
        )
        latest = dict(others.all())  # each unit's latest retrieval (an import may replace one)
        if all(status == "complete" for status in latest.values()):
            try:
                await mark_retrieved(
                    session, row.case_id, actor="system", at=now, upload_id=row.upload_id
                )
            except CaseError as exc:
                log.info("case=%s stays as it is: %s", where.case_number, exc)

    # ------------------------------------------------------------- local files

    async def take_local_file(self, where: _Where, name: str, source: Path, size: int) -> None:
        """Copy a file from a folder (an import) into the upload as if it had been sent
        in one piece, then check it."""

        def copy() -> None:
            target = where.folder / INCOMING / name
            target.parent.mkdir(parents=True, exist_ok=True)
            with source.open("rb") as src, target.open("wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
                dst.flush()
                os.fsync(dst.fileno())
            fsync_dir(target.parent)
            if target.stat().st_size != size:
                raise OSError(f"{source} changed while it was copied")

        await asyncio.to_thread(copy)
        async with self.db.session() as session:
            row = await session.get(RetrievalRow, where.retrieval_id, with_for_update=True)
            f = await session.scalar(
                select(RetrievedFileRow)
                .where(
                    RetrievedFileRow.retrieval_id == where.retrieval_id,
                    RetrievedFileRow.name == name,
                )
                .with_for_update()
            )
            assert row is not None and f is not None
            f.received_bytes = size
            f.status = "receiving"
            row.received_bytes += size
            await self._begin(session, row, where, self.clock())
            await session.commit()
        await self.check_file(where, name)
