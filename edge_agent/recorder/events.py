"""What a recorder tells its owner: its status, and the owner's callbacks (recording
started, stopped, a storage fault, a segment sealed), delivered on the owner's event loop
although the recorder raises them in its capture thread; and the answers to `seal_now`
callers waiting for the open segment to be sealed.

`RecorderEvents` is used under its recorder's lock.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from datetime import datetime
from typing import Any

from edge_agent.recorder.status import RecorderState, RecorderStatus, StopReason
from protocol.faults import FaultCode
from protocol.segment.format import SegmentSummaryInfo

__all__ = ["RecorderEvents", "SealWaiter", "SegmentCallback", "StatusCallback"]

StatusCallback = Callable[[RecorderStatus], None]
SegmentCallback = Callable[[SegmentSummaryInfo, str], None]  # summary, chain hash
SealWaiter = concurrent.futures.Future[SegmentSummaryInfo | None]


class RecorderEvents:
    """A recorder's status and its owner's callbacks."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime],
        on_started: StatusCallback | None,
        on_stopped: StatusCallback | None,
        on_storage_fault: Callable[[FaultCode, str], None] | None,
        on_segment: SegmentCallback | None,
    ) -> None:
        self._clock = clock
        self._on_started, self._on_stopped = on_started, on_stopped
        self._on_storage_fault, self._on_segment = on_storage_fault, on_segment
        self.loop: asyncio.AbstractEventLoop | None = None  # where callbacks run
        self.status = RecorderStatus(
            RecorderState.STOPPED, StopReason.NOT_STARTED, None, 0, clock()
        )
        self._seal_waiters: list[SealWaiter] = []

    def set(self, state: RecorderState, reason: StopReason | None, segment_id: str | None) -> None:
        """The recorder's state now; a change to recording or to stopped is reported."""
        old = self.status
        if (old.state, old.reason) == (state, reason):
            if old.segment_id != segment_id:
                self.status = RecorderStatus(
                    state, reason, segment_id, old.segments_sealed, old.since
                )
            return
        self.status = RecorderStatus(state, reason, segment_id, old.segments_sealed, self._clock())
        if state is RecorderState.RECORDING:
            self._emit(self._on_started, self.status)
        elif state is RecorderState.STOPPED and old.state is not RecorderState.STOPPED:
            self._emit(self._on_stopped, self.status)

    def storage_fault(self, fault: FaultCode, detail: str) -> None:
        self._emit(self._on_storage_fault, fault, detail)

    def segment(self, summary: SegmentSummaryInfo, chain: str) -> None:
        """A segment added to the index (`chain`: its chain hash there)."""
        self._emit(self._on_segment, summary, chain)

    def seal_waiter(self) -> SealWaiter:
        """A future answered with the summary of the open segment once it is sealed."""
        waiter: SealWaiter = concurrent.futures.Future()
        self._seal_waiters.append(waiter)
        return waiter

    def sealed(self, summary: SegmentSummaryInfo, chain: str) -> None:
        """The open segment was sealed and indexed: counted, reported, waiters answered."""
        old = self.status
        self.status = RecorderStatus(old.state, old.reason, None, old.segments_sealed + 1,
                                     old.since)  # fmt: skip
        self.segment(summary, chain)
        waiters, self._seal_waiters = self._seal_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(summary)

    def nothing_to_seal(self) -> None:
        """Recording stopped on a fault: the waiters get None."""
        for waiter in self._seal_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._seal_waiters = []

    def _emit(self, callback: Callable[..., None] | None, *args: Any) -> None:
        if callback is None:
            return
        loop = self.loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(callback, *args)
                return
            except RuntimeError:  # the loop is closing: deliver in this thread
                pass
        callback(*args)
