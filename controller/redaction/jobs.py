"""Redaction as background jobs the case page can follow: finding the faces of a clip
(`RedactionJobs.find_faces`) and making its redacted copy (`RedactionJobs.make_copy`).

Jobs run one at a time by default on named worker threads (`redaction-job-N`): the work
is CPU-bound and the controller has its request handling to keep responsive. Each `Job`
can be polled from any thread or awaited from the event loop:

    job = jobs.find_faces(master, settings)
    job.status()          # JobStatus: state, stage, frames done of total, time left
    plan = await job.wait()
    job.cancel()          # stops at the next frame; a half-written copy is removed

A job's `listener`, when given, is called with each new `JobStatus` when the job starts,
ends and at most every `report_every` seconds between (from the worker thread).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

from controller.errors import sentence
from controller.redaction.analysis import analyse
from controller.redaction.errors import JobCancelled
from controller.redaction.plan import RedactionPlan
from controller.redaction.progress import ProgressMeter, ProgressReport
from controller.redaction.render import RenderResult, render
from controller.redaction.settings import DetectionSettings, EncodeSettings, MaskStyle

__all__ = ["Job", "JobState", "JobStatus", "RedactionJobs"]

log = logging.getLogger(__name__)

T = TypeVar("T")
JobState = Literal["queued", "running", "finished", "failed", "cancelled"]


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job as the case page shows it."""

    job_id: str
    name: str
    state: JobState
    progress: ProgressReport
    error: str | None  # a sentence for a person, when the job failed


class _ListeningMeter(ProgressMeter):
    """A meter that also tells a listener, at most every `every` seconds."""

    def __init__(
        self,
        *,
        name: str,
        clock: Callable[[], float],
        notify: Callable[[], None],
        every: float,
    ) -> None:
        super().__init__(name=name, clock=clock)
        self._notify = notify
        self._every = every
        self._last = float("-inf")

    def stage(self, name: str, total: int) -> None:
        super().stage(name, total)
        self._last = self._clock()
        self._notify()

    def done(self, count: int) -> None:
        super().done(count)
        now = self._clock()
        if now - self._last >= self._every:
            self._last = now
            self._notify()


class Job(Generic[T]):
    """One piece of redaction work, queued, running or ended."""

    def __init__(
        self,
        *,
        job_id: str,
        name: str,
        clock: Callable[[], float],
        listener: Callable[[JobStatus], None] | None,
        report_every: float,
    ) -> None:
        self.job_id = job_id
        self.name = name
        self._listener = listener
        self._meter = _ListeningMeter(name=name, clock=clock, notify=self._tell, every=report_every)
        self._state: JobState = "queued"
        self._error: str | None = None
        self._future: Future[T] | None = None
        self._lock = threading.Lock()

    def status(self) -> JobStatus:
        with self._lock:
            state, error = self._state, self._error
        return JobStatus(self.job_id, self.name, state, self._meter.report(), error)

    def cancel(self) -> None:
        """Stop the job: a queued job never starts, a running one stops at its next frame."""
        self._meter.stop()
        if self._future is not None and self._future.cancel():
            self._set("cancelled", None)

    def result(self, timeout: float | None = None) -> T:
        """The job's result, waiting up to `timeout` seconds; its error if it failed;
        `JobCancelled` if it was cancelled."""
        assert self._future is not None
        try:
            return self._future.result(timeout)
        except CancelledError:
            raise JobCancelled(self.name) from None

    async def wait(self) -> T:
        """The job's result, awaited without blocking the event loop."""
        assert self._future is not None
        try:
            return await asyncio.wrap_future(self._future)
        except asyncio.CancelledError:
            if self._future.cancelled():
                raise JobCancelled(self.name) from None
            raise

    def _start(self, pool: ThreadPoolExecutor, work: Callable[[ProgressMeter], T]) -> None:
        self._future = pool.submit(self._run, work)

    def _run(self, work: Callable[[ProgressMeter], T]) -> T:
        if self._meter.stopping:
            self._set("cancelled", None)
            raise JobCancelled(self.name)
        self._set("running", None)
        log.info("redaction job started job=%s name=%s", self.job_id, self.name)
        try:
            result = work(self._meter)
        except JobCancelled:
            self._set("cancelled", None)
            log.info("redaction job cancelled job=%s", self.job_id)
            raise
        except BaseException as exc:
            self._set("failed", sentence(exc))
            log.exception("redaction job failed job=%s", self.job_id)
            raise
        self._set("finished", None)
        log.info("redaction job finished job=%s", self.job_id)
        return result

    def _set(self, state: JobState, error: str | None) -> None:
        with self._lock:
            self._state, self._error = state, error
        self._tell()

    def _tell(self) -> None:
        if self._listener is None:
            return
        try:
            self._listener(self.status())
        except Exception:  # a page's listener must not break the job
            log.exception("redaction job listener failed job=%s", self.job_id)


class RedactionJobs:
    """Runs redaction jobs in the background, `workers` at a time."""

    def __init__(
        self,
        *,
        workers: int = 1,
        detector_threads: int = 1,
        clock: Callable[[], float] = time.monotonic,
        report_every: float = 0.5,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be 1 or more, not {workers}")
        if detector_threads < 1:
            raise ValueError(f"detector_threads must be 1 or more, not {detector_threads}")
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="redaction-job")
        self._detector_threads = detector_threads
        self._clock = clock
        self._report_every = report_every
        self._jobs: dict[str, Job[Any]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def find_faces(
        self,
        master: Path,
        settings: DetectionSettings | None = None,
        *,
        style: MaskStyle | None = None,
        listener: Callable[[JobStatus], None] | None = None,
    ) -> Job[RedactionPlan]:
        """Find the faces in `master`: the job's result is the clip's first plan."""
        threads = self._detector_threads
        return self.submit(
            f"finding faces in {master.name}",
            lambda progress: analyse(
                master, settings=settings, style=style, threads=threads, progress=progress
            ),
            listener=listener,
        )

    def make_copy(
        self,
        master: Path,
        plan: RedactionPlan,
        derived: Path,
        encode: EncodeSettings | None = None,
        *,
        listener: Callable[[JobStatus], None] | None = None,
    ) -> Job[RenderResult]:
        """Make the redacted copy of `master` under `plan` at `derived`."""
        return self.submit(
            f"making the redacted copy of {master.name}",
            lambda progress: render(master, plan, derived, encode=encode, progress=progress),
            listener=listener,
        )

    def submit(
        self,
        name: str,
        work: Callable[[ProgressMeter], T],
        *,
        listener: Callable[[JobStatus], None] | None = None,
    ) -> Job[T]:
        """Queue `work`, which reports to the `ProgressMeter` it is given."""
        with self._lock:
            job_id = f"redaction-{next(self._ids)}"
            job: Job[T] = Job(
                job_id=job_id,
                name=name,
                clock=self._clock,
                listener=listener,
                report_every=self._report_every,
            )
            self._jobs[job_id] = job
        job._tell()  # queued
        job._start(self._pool, work)
        return job

    def job(self, job_id: str) -> Job[Any]:
        """The job with that id (`KeyError` if none)."""
        with self._lock:
            return self._jobs[job_id]

    def forget(self, job_id: str) -> None:
        """Drop an ended job from `statuses` (once its result has been kept elsewhere)."""
        with self._lock:
            job = self._jobs[job_id]
            if job.status().state in ("queued", "running"):
                raise ValueError(f"{job_id} has not ended")
            del self._jobs[job_id]

    def statuses(self) -> list[JobStatus]:
        with self._lock:
            jobs = list(self._jobs.values())
        return [j.status() for j in jobs]

    def shutdown(self, *, cancel: bool = True) -> None:
        """Stop taking jobs; with `cancel`, stop the running ones at their next frame.
        Returns once the workers have ended."""
        if cancel:
            with self._lock:
                jobs = list(self._jobs.values())
            for job in jobs:
                job.cancel()
        self._pool.shutdown(wait=True, cancel_futures=cancel)
