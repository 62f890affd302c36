"""The background job runner on its own: queued, running, finished, failed and cancelled
jobs, awaited from the event loop or polled, with work that takes no video."""

from __future__ import annotations

import threading

import pytest

from controller.redaction import (
    EditRefused,
    JobCancelled,
    JobStatus,
    ProgressMeter,
    RedactionJobs,
)


async def test_a_job_is_awaited_from_the_event_loop_with_its_progress_reported() -> None:
    jobs = RedactionJobs(report_every=0.0)
    seen: list[JobStatus] = []

    def count(progress: ProgressMeter) -> int:
        progress.stage("counting", 3)
        for n in range(1, 4):
            progress.done(n)
        return 42

    try:
        job = jobs.submit("counting to three", count, listener=seen.append)
        assert await job.wait() == 42
    finally:
        jobs.shutdown()
    assert [(s.state, s.progress.stage, s.progress.done) for s in seen] == [
        ("queued", "waiting", 0),
        ("running", "waiting", 0),
        ("running", "counting", 0),
        ("running", "counting", 1),
        ("running", "counting", 2),
        ("running", "counting", 3),
        ("finished", "counting", 3),
    ]
    assert job.status().progress.fraction == 1.0


async def test_a_queued_job_cancelled_never_starts_and_a_failed_one_says_why() -> None:
    jobs = RedactionJobs()  # one at a time
    release = threading.Event()
    started: list[str] = []

    def blocker(progress: ProgressMeter) -> str:
        started.append("blocker")
        assert release.wait(timeout=60)
        return "done"

    def never(progress: ProgressMeter) -> str:
        started.append("never")
        return "ran"

    def failing(progress: ProgressMeter) -> str:
        raise EditRefused("box-1", "it is already removed")

    try:
        first = jobs.submit("blocker", blocker)
        queued = jobs.submit("queued behind it", never)
        failed = jobs.submit("failing", failing)
        assert queued.status().state == "queued"
        queued.cancel()
        assert queued.status().state == "cancelled"
        release.set()
        assert first.result(timeout=60) == "done"
        with pytest.raises(JobCancelled, match="queued behind it was cancelled"):
            await queued.wait()
        with pytest.raises(EditRefused):
            failed.result(timeout=60)
        status = failed.status()
        assert (status.state, status.error) == ("failed", "Box box-1: it is already removed.")
        assert started == ["blocker"]
        hold = threading.Event()
        held = jobs.submit("held", lambda progress: hold.wait(timeout=60))
        with pytest.raises(ValueError, match="has not ended"):
            jobs.forget(held.job_id)
        hold.set()
        assert held.result(timeout=60) is True
    finally:
        release.set()
        jobs.shutdown()
    assert {s.job_id for s in jobs.statuses()} >= {first.job_id, failed.job_id}
    jobs.forget(first.job_id)
    assert first.job_id not in {s.job_id for s in jobs.statuses()}
