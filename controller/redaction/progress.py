"""Progress of long redaction work, and how long it has left.

The work (`analyse`, `render`) reports to a `Progress`: `stage(name, total)` when it
starts a stage, `done(count)` as it goes. `ProgressMeter` is the `Progress` a job keeps:
another thread (a page asking how far the job is) reads a `ProgressReport` from it at
any time, with the time left estimated from the rate of the stage so far. A meter that
was told to stop raises `JobCancelled` from the work's next `done`, so the work stops at
its next frame.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from controller.redaction.errors import JobCancelled

__all__ = ["Progress", "ProgressMeter", "ProgressReport"]

#: No estimate of the time left before the stage has run this long and done this share:
#: the first frames (model loading, encoder start) are slower than the rest.
_SETTLE_SECONDS = 1.0
_SETTLE_SHARE = 0.02


class Progress(Protocol):
    """Where long work reports how far it is."""

    def stage(self, name: str, total: int) -> None:
        """A stage starts: `name` as a person reads it, `total` units (frames) of work,
        0 when not known."""

    def done(self, count: int) -> None:
        """`count` units of the current stage are done (a running total)."""


@dataclass(frozen=True, slots=True)
class ProgressReport:
    """How far work is, as a page shows it."""

    stage: str
    done: int
    total: int
    elapsed: float  # seconds since the stage started
    left: float | None  # seconds, estimated; None until there is enough to go on

    @property
    def fraction(self) -> float:
        """Share of the stage done, 0-1 (0 while the total is not known)."""
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


class ProgressMeter:
    """A thread-safe `Progress` that can be read, and told to stop, from other threads."""

    def __init__(self, *, name: str, clock: Callable[[], float] = time.monotonic) -> None:
        self._name = name
        self._clock = clock  # also read by subclasses
        self._lock = threading.Lock()
        self._stage = "waiting"
        self._total = 0
        self._done = 0
        self._started = clock()
        self._stop = threading.Event()

    def stage(self, name: str, total: int) -> None:
        self._check()
        with self._lock:
            self._stage = name
            self._total = max(0, total)
            self._done = 0
            self._started = self._clock()

    def done(self, count: int) -> None:
        self._check()
        with self._lock:
            self._done = count
            # An estimated total (a container's frame count) can be short.
            self._total = max(self._total, count) if self._total else 0

    def stop(self) -> None:
        """Make the work stop at its next report."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def report(self) -> ProgressReport:
        with self._lock:
            stage, done, total, started = self._stage, self._done, self._total, self._started
        elapsed = max(0.0, self._clock() - started)
        left: float | None = None
        if total > 0 and done > 0 and elapsed >= _SETTLE_SECONDS and done / total >= _SETTLE_SHARE:
            left = max(0.0, (total - done) * elapsed / done)
            left = left if math.isfinite(left) else None
        return ProgressReport(stage=stage, done=done, total=total, elapsed=elapsed, left=left)

    def _check(self) -> None:
        if self._stop.is_set():
            raise JobCancelled(self._name)
