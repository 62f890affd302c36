"""The unit's evidence uploads, from the signed command to the controller's last check.

`Uploader.start_job(command_id, action)` (the `upload_evidence` command handler) picks the
sealed, undeleted segments that overlap the command's ranges from the segment index,
writes the signed index manifest and keeps the job in the state folder. Nothing else
starts an upload, and it goes only to `[evidence] upload_url` of the unit's own config.
The case's hold, which the controller places before it asks for the footage, keeps
retention and disk pressure off the segments; one that is gone all the same by the time
it is sent ends the job, named.

`Uploader.run()` (one task of the agent) sends the jobs one after another. For each: offer
the files (manifest first), then for each file not yet settled, send the bytes the
controller does not hold, in chunks of `[evidence] chunk_bytes`, each from the offset the
controller last acknowledged: after a cut connection, a controller restart or a reboot
the unit asks the controller where it stands and goes on from there, so no acknowledged
chunk is ever sent again. Writes pass the token bucket of `[evidence]
bandwidth_bytes_s`. A failed attempt waits (capped exponential backoff with full jitter)
and tries again; the controller refusing the upload itself (403, 404, 410) ends the job.
The job ends when the controller has settled every file (complete, or refused naming
each refused file).

Recording goes on meanwhile: file reads run in a thread, and the upload is one task.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.backoff import Backoff
from edge_agent.commands.processor import CommandFailed
from edge_agent.config import EvidenceConfig
from edge_agent.link.tls import client_context
from edge_agent.recorder.errors import RecorderError
from edge_agent.recorder.index import IndexEntry, SegmentIndex
from edge_agent.uploads.jobs import JobError, JobFile, JobStatus, JobStore, UploadJob
from edge_agent.uploads.throttle import TokenBucket
from edge_agent.uploads.transfer import EndpointClient, EndpointError
from protocol.evidence_upload import MANIFEST_NAME, UploadState
from protocol.messages import UploadEvidence, utcnow

__all__ = ["Uploader"]

log = logging.getLogger(__name__)

_SETTLED = ("verified", "refused")


class _JobOver(Exception):
    """The job cannot go on (the controller refused the upload, a file is unreadable)."""


def _read(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as f:
        f.seek(offset)
        data = f.read(size)
    if len(data) != size:
        raise OSError(f"{path.name} is shorter than the unit's index says")
    return data


class Uploader:
    def __init__(
        self,
        config: EvidenceConfig,
        *,
        unit_id: str,
        cert_file: Path,
        key_file: Path,
        index: SegmentIndex,
        segments_dir: Path,
        jobs_dir: Path,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.unit_id = unit_id
        self._cert_file = cert_file
        self._key_file = key_file
        self._index = index
        self._segments_dir = segments_dir
        self.jobs = JobStore(jobs_dir)
        self._clock = clock
        self._wake = asyncio.Event()
        self._backoff = Backoff(base=config.retry_base_s, cap=config.retry_cap_s, floor=0.05)
        #: The job being sent now (upload id), for status and tests.
        self.current: str | None = None

    # ------------------------------------------------------------- from a command

    async def start_job(self, command_id: str, action: UploadEvidence) -> dict[str, Any]:
        """Prepare and keep the job; it runs in `run()`. The same upload asked for again
        (a command sent again) goes on with the job already kept."""
        if self.config.upload_url is None:
            raise CommandFailed(
                "no evidence upload endpoint is configured ([evidence] upload_url in agent.toml)"
            )
        try:
            job = await asyncio.to_thread(self._prepare, command_id, action)
        except (JobError, RecorderError, OSError) as exc:
            raise CommandFailed(f"upload not prepared: {exc}") from exc
        self._wake.set()
        segments = len(job.files) - 1
        log.info(
            "unit=%s upload=%s case=%s segments=%d bytes=%d queued",
            self.unit_id, job.upload_id, job.case_number, segments, job.total_bytes,
        )  # fmt: skip
        return {"upload_id": job.upload_id, "segments": segments, "bytes": job.total_bytes}

    def _prepare(self, command_id: str, action: UploadEvidence) -> UploadJob:
        ranges = [(r.start, r.end) for r in action.ranges]
        existing = self.jobs.get(action.upload_id)
        if existing is not None:
            if existing.case_number != action.case_number or existing.ranges != ranges:
                raise CommandFailed(f"upload {action.upload_id} was asked before for other footage")
            return existing
        chosen: dict[str, IndexEntry] = {}
        for start, end in ranges:
            for entry in self._index.entries(start=start, end=end, include_deleted=False):
                chosen.setdefault(entry.segment_id, entry)
        entries = sorted(chosen.values(), key=lambda e: e.seq)
        if not entries:
            raise CommandFailed("this unit holds no footage in the requested ranges")
        manifest = self._index.export_manifest([e.segment_id for e in entries])
        manifest_path = self.jobs.write_manifest(action.upload_id, manifest)
        files = [
            JobFile(
                name=MANIFEST_NAME,
                role="manifest",
                path=manifest_path,
                size=len(manifest),
                sha256=hashlib.sha256(manifest).hexdigest(),
            )
        ] + [
            JobFile(
                name=e.file_name,
                role="segment",
                path=self._segments_dir / e.file_name,
                size=e.size,
                sha256=e.sha256,
            )
            for e in entries
        ]
        job = UploadJob(
            upload_id=action.upload_id,
            case_number=action.case_number,
            command_id=command_id,
            ranges=ranges,
            created_at=self._clock(),
            files=files,
        )
        self.jobs.save(job)
        return job

    # ---------------------------------------------------------------- the task

    async def run(self) -> None:
        """Send pending jobs, oldest first, for as long as the agent runs."""
        if self.config.upload_url is None:
            return
        while True:
            pending = [j for j in await asyncio.to_thread(self.jobs.all) if j.status == "pending"]
            if not pending:
                await self._wake.wait()
                self._wake.clear()
                continue
            await self._send(pending[0])

    async def _send(self, job: UploadJob) -> None:
        self.current = job.upload_id
        counter = await asyncio.to_thread(self.jobs.counter, job.upload_id)
        bucket = TokenBucket(self.config.bandwidth_bytes_s)
        attempt = 0
        try:
            context = client_context(self.config.ca_file, self._cert_file, self._key_file)
            assert self.config.upload_url is not None
            while True:
                async with EndpointClient(
                    self.config.upload_url,
                    context,
                    timeout_s=self.config.timeout_s,
                    bucket=bucket,
                    on_sent=counter.add,
                ) as client:
                    sent_before = counter.value
                    try:
                        state = await self._attempt(client, job)
                    except EndpointError as exc:
                        if not exc.retry:
                            raise _JobOver(str(exc)) from exc
                        if counter.value > sent_before:
                            attempt = 0  # it got somewhere: start the backoff again
                        delay = self._backoff.delay(attempt)
                        attempt += 1
                        log.warning(
                            "unit=%s upload=%s attempt %d failed, again in %.1f s: %s",
                            self.unit_id, job.upload_id, attempt, delay, exc,
                        )  # fmt: skip
                    else:
                        if state is not None:
                            await self._finish(job, state.status, state.problem)
                            return
                        attempt = 0
                        delay = self._backoff.delay(0)
                await asyncio.sleep(delay)
        except _JobOver as exc:
            log.error("unit=%s upload=%s failed: %s", self.unit_id, job.upload_id, exc)
            await self._finish(job, "failed", str(exc))
        except OSError as exc:  # certificate files unreadable
            log.error("unit=%s upload=%s cannot start: %s", self.unit_id, job.upload_id, exc)
            await self._finish(job, "failed", str(exc))
        finally:
            self.current = None
            counter.close()

    async def _attempt(self, client: EndpointClient, job: UploadJob) -> UploadState | None:
        """One pass over the job. The final state when the controller settled every
        file; None when it has not yet (asked again after a pause)."""
        state = await client.offer(job.upload_id, job.offer().model_dump_json().encode())
        for f in job.files:
            if state.status in ("complete", "refused"):
                return state
            state = await self._send_file(client, job, f, state)
        if state.status in ("complete", "refused"):
            return state
        return None

    async def _send_file(
        self, client: EndpointClient, job: UploadJob, f: JobFile, state: UploadState
    ) -> UploadState:
        chunk = self.config.chunk_bytes
        while True:
            held = state.file(f.name)
            if held is None:
                raise _JobOver(f"the controller does not list {f.name}")
            if held.status in _SETTLED or held.received >= f.size:
                return state
            offset = held.received
            size = min(chunk, f.size - offset)
            try:
                data = await asyncio.to_thread(_read, f.path, offset, size)
            except OSError as exc:
                raise _JobOver(f"{f.name} cannot be read on the unit: {exc}") from exc
            state = await client.put(job.upload_id, f.name, offset, f.size, data)
            if state.status in ("complete", "refused"):
                return state

    async def _finish(self, job: UploadJob, status: str, problem: str | None) -> None:
        final: JobStatus = (
            "complete" if status == "complete" else ("refused" if status == "refused" else "failed")
        )
        done = job.finished(final, problem, self._clock())
        await asyncio.to_thread(self.jobs.save, done)
        log.info(
            "unit=%s upload=%s case=%s %s%s",
            self.unit_id, job.upload_id, job.case_number, final,
            f": {problem}" if problem else "",
        )  # fmt: skip
