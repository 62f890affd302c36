"""Ingest: every message from the units, validated, de-duplicated and stored in batches;
acknowledged to the broker only once stored.

For each received message:
1. it is validated (`controller.ingest.validation`): a message on a to-unit channel (our
   own, echoed by the broker) is ignored; a bad topic, payload, unit or channel is
   quarantined (topic, payload prefix, reason, time) and counted, never raised;
2. its per-unit `seq` (`controller.ingest.sequence`) tells a new message from a QoS 1
   redelivery (dropped), a late one filling a recorded gap (an outbox replay after a
   reconnect), or one implausibly far ahead (quarantined);
3. only a message newer than everything applied may change the live state, so a late
   replay never rolls a unit's state back (`controller.ingest.apply`).

Writes are batched: one transaction per `ingest.batch_max` messages or
`ingest.batch_interval_ms`, whichever comes first. **Acknowledged means stored**: the
batch's messages are acknowledged to the broker (in the order received) only after the
commit, quarantined and dropped ones included, so a crash loses nothing and the broker
redelivers whatever was not yet acknowledged (dropped again here by unit and seq).

**The database going away** (`store.base.is_unavailable`: server down or restarting,
connection lost, SQLite busy) pauses the writer: the same batch is retried with capped
backoff and full jitter (`controller.backoff`) until the database is back, nothing is
acknowledged meanwhile, and the broker holds back what does not fit the Receive Maximum
(`ingest.queue_max`).

**One bad message never spoils its neighbours**: a batch that fails for any other reason
is retried message by message, each in its own transaction; a message that still fails
is quarantined alone (reason "processing_error"), and each rejected message is
quarantined in its own transaction if the quarantine rows of the batch fail together.

Per message, the publish-to-commit latency (`sent_at` -> commit) goes to the metrics and
to any `lag_observers`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from controller.backoff import full_jitter
from controller.callouts import CalloutService, Notifier
from controller.config import ControllerSettings
from controller.ingest.apply import BatchContext, Handler, apply_message
from controller.ingest.sequence import SEQ_AHEAD_SLACK, Sequencer, Verdict
from controller.ingest.validation import Accepted, Batch, Received, Rejected, classify, quarantine
from controller.link import Delivery
from controller.metrics import ControllerMetrics
from controller.store.base import Database, is_unavailable, utcnow
from controller.store.fleet import SeqGap, Unit
from controller.store.live_status import LiveStatus, load_statuses, write_statuses
from protocol.messages import Event, SelfTestReport

__all__ = ["Handler", "Ingest", "Received"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A received message waiting for its batch: topic, payload, time of receipt and the
#: fields of its `Delivery` (None: not from the broker). A tuple of plain values, which
#: the garbage collector stops tracking: a backlog of tens of thousands waiting costs no
#: collection time. Its `Received` is made when its batch is taken.
_Waiting = tuple[str, bytes, datetime, tuple[object, ...] | None]
_IN_CHUNK = 500
#: Waits between attempts while the database is unavailable: full jitter from
#: RETRY_FLOOR_S, doubling from RETRY_BASE_S up to RETRY_CAP_S.
RETRY_FLOOR_S = 0.05
RETRY_BASE_S = 0.25
RETRY_CAP_S = 5.0
#: While the database stays unavailable, say so again at most this often.
OUTAGE_LOG_EVERY_S = 30.0


@dataclass(slots=True)
class _Outcome:
    applied: list[Accepted] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    duplicates: int = 0
    #: Notifications were queued (wake the notifier once committed).
    notified: bool = False


class Ingest:
    def __init__(
        self,
        db: Database,
        settings: ControllerSettings,
        callouts: CalloutService,
        *,
        metrics: ControllerMetrics,
        notifier: Notifier | None = None,
        handlers: dict[str, Handler] | None = None,
        acknowledge: Callable[[list[Delivery]], object] | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.topics = settings.topics
        self.callouts = callouts
        self.metrics = metrics
        self.notifier = notifier
        self.handlers = dict(handlers or {})
        #: Called with each batch's deliveries once they are stored (the broker link's ack).
        self.acknowledge = acknowledge
        self.lag_observers: list[Callable[[Sequence[float]], None]] = []
        self._sequencer = Sequencer(metrics)
        self._pending: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._outage_since: float | None = None
        self._outage_logged = 0.0
        self._random = random.Random()
        self._now_tick, self._now_value = 0.0, utcnow()
        metrics.queue_depth.set_function(lambda: len(self._pending))
        self.stored = 0
        self.quarantined = 0
        self.duplicates = 0
        self.dropped = 0

    # -- intake (called from the broker link's receive path: must not block) -------------

    def submit(self, delivery: Delivery) -> None:
        self._pending.append((delivery.topic, delivery.payload, self._now(), tuple(delivery)))
        self._woken()

    def _now(self) -> datetime:
        """The time of receipt, read from the clock at most once a millisecond (a burst of
        messages read together was received together)."""
        tick = time.monotonic()
        if tick - self._now_tick > 0.001:
            self._now_tick, self._now_value = tick, utcnow()
        return self._now_value

    def submit_raw(self, topic: str, payload: bytes, received_at: datetime | None = None) -> None:
        """A message that did not come from the broker (nothing to acknowledge)."""
        self._pending.append((topic, payload, received_at or utcnow(), None))
        self._woken()

    def _woken(self) -> None:
        if self._idle.is_set():
            self._idle.clear()
        if not self._wake.is_set():
            self._wake.set()

    async def idle(self) -> None:
        """Return once every submitted message has been stored or dropped."""
        await self._idle.wait()

    @property
    def is_idle(self) -> bool:
        """Nothing received is waiting to be stored."""
        return self._idle.is_set()

    @property
    def waiting_for_database(self) -> bool:
        return self._outage_since is not None

    # -- the writer -----------------------------------------------------------------------

    async def run(self) -> None:
        settings = self.settings.ingest
        interval = settings.batch_interval_ms / 1000
        while True:
            await self._wake.wait()
            if len(self._pending) < settings.batch_max:
                await asyncio.sleep(interval)  # let a batch gather
            batch = [
                Received(topic, payload, at, None if fields is None else Delivery._make(fields))
                for topic, payload, at, fields in self._pending[: settings.batch_max]
            ]
            del self._pending[: settings.batch_max]
            if not self._pending:
                self._wake.clear()
            if batch:
                await self._commit(batch)
                self._ack(batch)
            if not self._pending:
                self._idle.set()

    def _ack(self, items: list[Received]) -> None:
        if self.acknowledge is not None:
            self.acknowledge([r.delivery for r in items if r.delivery is not None])

    async def _commit(self, items: list[Received]) -> None:
        """Store the batch; on an error that is not the database's absence, store each
        message alone. Returns once every message is stored, quarantined or dropped."""
        batch = classify(self.topics, items)
        try:
            await self._while_unavailable(lambda: self._store(batch), len(items))
            return
        except Exception as exc:  # retried one by one below
            log.warning("batch of %d failed (%s): storing one by one", len(items), exc)
        for accepted in batch.accepted:
            single = Batch(accepted=[accepted])
            try:
                await self._while_unavailable(partial(self._store, single), 1)
            except Exception as exc:  # a bug or bad data must not stop ingest
                log.exception("unit=%s message could not be stored", accepted.unit_id)
                detail = f"{type(exc).__name__}: {exc}"
                reject = Rejected(accepted.item, accepted.unit_id, "processing_error", detail)
                await self._quarantine([reject])
        await self._quarantine(batch.rejected)

    async def _quarantine(self, rejected: list[Rejected]) -> None:
        """Quarantine together; if that fails, each alone; if one still fails, drop it
        (logged and counted: it cannot be kept, and it must not block the fleet)."""
        if not rejected:
            return
        try:
            await self._while_unavailable(lambda: self._store(Batch(rejected=rejected)), 0)
            return
        except Exception as exc:
            if len(rejected) == 1:
                self.dropped += 1
                log.exception(
                    "unit=%s message could not be quarantined: dropped", rejected[0].unit_id
                )
                return
            log.warning("%d quarantine rows failed together (%s): one by one", len(rejected), exc)
        for one in rejected:
            await self._quarantine([one])

    async def _while_unavailable(self, work: Callable[[], Awaitable[T]], size: int) -> T:
        """Run `work`, again and again while the database is unavailable."""
        attempt = 0
        while True:
            try:
                result = await work()
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                self._unavailable(exc, size)
                attempt += 1
                await asyncio.sleep(
                    full_jitter(
                        attempt,
                        base=RETRY_BASE_S,
                        cap=RETRY_CAP_S,
                        floor=RETRY_FLOOR_S,
                        rng=self._random,
                    )
                )
                continue
            if self._outage_since is not None:
                log.warning(
                    "database back after %.0f s: ingest resumes",
                    time.monotonic() - self._outage_since,
                )
                self._outage_since = None
                self.metrics.database_up.set(1)
            return result

    def _unavailable(self, exc: BaseException, size: int) -> None:
        now = time.monotonic()
        if self._outage_since is None:
            self._outage_since = now
            self.metrics.database_up.set(0)
        if now - self._outage_logged >= OUTAGE_LOG_EVERY_S:
            self._outage_logged = now
            log.error(
                "database unavailable for %.0f s: ingest waits, nothing is acknowledged "
                "(%d messages in this batch, %d more received): %s",
                now - self._outage_since,
                size,
                len(self._pending),
                exc,
            )

    async def _store(self, batch: Batch) -> None:
        outcome = _Outcome()
        async with self.db.session() as session:
            if batch.accepted:
                await self._apply(session, batch.accepted, outcome)
            rejected = [*batch.rejected, *outcome.rejected]
            for reject in rejected:
                quarantine(session, reject)
            await session.commit()
        if outcome.notified and self.notifier is not None:
            self.notifier.wake()
        self._count(outcome, rejected, len(batch.accepted) + len(batch.rejected))

    def _count(self, outcome: _Outcome, rejected: list[Rejected], size: int) -> None:
        """Metrics and counters of a committed batch."""
        committed = utcnow()
        lags = [max(0.0, (committed - a.message.sent_at).total_seconds()) for a in outcome.applied]
        kinds: dict[str, int] = {}
        for accepted in outcome.applied:
            kinds[accepted.message.kind] = kinds.get(accepted.message.kind, 0) + 1
        for kind, count in kinds.items():
            self.metrics.messages.labels(kind).inc(count)
        for lag in lags:
            self.metrics.lag.observe(lag)
        for reject in rejected:
            self.metrics.quarantined.labels(reject.reason).inc()
            log.warning(
                "quarantined topic=%s unit=%s reason=%s detail=%s",
                reject.item.topic[:200],
                reject.unit_id,
                reject.reason,
                reject.detail[:200],
            )
        if outcome.duplicates:
            self.metrics.duplicates.inc(outcome.duplicates)
        self.metrics.batch_size.observe(size)
        self.stored += len(outcome.applied)
        self.quarantined += len(rejected)
        self.duplicates += outcome.duplicates
        for observer in self.lag_observers:
            observer(lags)

    async def _apply(
        self, session: AsyncSession, accepted: list[Accepted], outcome: _Outcome
    ) -> None:
        unit_ids = sorted({a.unit_id for a in accepted})
        statuses = await load_statuses(session, unit_ids, registered_at=utcnow())
        gaps = await _gaps(session, _gaps_needed(accepted, statuses))
        units = await _units(
            session,
            sorted({a.unit_id for a in accepted if isinstance(a.message, Event | SelfTestReport)}),
        )
        context = await BatchContext.load(
            session,
            self.callouts,
            self.settings.offline_timeout_s,
            [a.message for a in accepted],
        )
        for item in accepted:
            unit_id, message, received_at = item.unit_id, item.message, item.item.received_at
            status = statuses[unit_id]
            verdict = await self._sequencer.sequence(
                session, status, gaps.setdefault(unit_id, []), message, received_at
            )
            if verdict is Verdict.DUPLICATE:
                status.duplicates += 1
                outcome.duplicates += 1
                continue
            if verdict is Verdict.AHEAD:
                last = status.last_seq or 0
                detail = (
                    f"seq {message.seq} is {message.seq - last} past the unit's last stored "
                    f"seq {last}; at most {self._sequencer.window(status, received_at)} is "
                    "plausible now"
                )
                outcome.rejected.append(Rejected(item.item, unit_id, "seq_ahead", detail))
                continue
            status.messages += 1
            await apply_message(
                session,
                context,
                units.get(unit_id),
                status,
                message,
                received_at,
                newest=verdict is Verdict.NEWEST,
            )
            handler = self.handlers.get(message.kind)
            if handler is not None:
                await handler(session, message, context)
            outcome.applied.append(item)
        context.collapse.release_all()
        await write_statuses(session, statuses.values())
        outcome.notified = context.changes.queued > 0


def _gaps_needed(accepted: list[Accepted], statuses: dict[str, LiveStatus]) -> list[str]:
    """Units whose recorded gaps the batch may read: those with a message not beyond
    everything before it (late, duplicate, a reset), or far enough ahead to start the
    count again. A unit whose messages only move forward only adds gaps."""
    highest = {unit_id: status.last_seq for unit_id, status in statuses.items()}
    needed: set[str] = set()
    for item in accepted:
        seq, last = item.message.seq, highest[item.unit_id]
        if last is not None and (seq <= last or seq > last + SEQ_AHEAD_SLACK):
            needed.add(item.unit_id)
        if last is None or seq > last:
            highest[item.unit_id] = seq
    return sorted(needed)


async def _gaps(session: AsyncSession, unit_ids: list[str]) -> dict[str, list[SeqGap]]:
    gaps: dict[str, list[SeqGap]] = {}
    for i in range(0, len(unit_ids), _IN_CHUNK):
        chunk = unit_ids[i : i + _IN_CHUNK]
        for gap in (
            await session.execute(select(SeqGap).where(SeqGap.unit_id.in_(chunk)))
        ).scalars():
            gaps.setdefault(gap.unit_id, []).append(gap)
    return gaps


async def _units(session: AsyncSession, unit_ids: list[str]) -> dict[str, Unit]:
    """The inventory rows of units with events (their callouts need the contractor) or
    self-test reports (which checks their contract requires), read together."""
    units: dict[str, Unit] = {}
    for i in range(0, len(unit_ids), _IN_CHUNK):
        found = await session.execute(
            select(Unit).where(Unit.unit_id.in_(unit_ids[i : i + _IN_CHUNK]))
        )
        units.update((u.unit_id, u) for u in found.scalars())
    return units
