"""Ingest: every message from the units, validated, de-duplicated and stored in batches.

For each received message:
1. it is validated (`ingest_validation`): a message on a to-unit channel (our own,
   echoed by the broker) is ignored; a bad topic, payload, unit or channel is
   quarantined (topic, payload prefix, reason, time) and counted, never raised;
2. its per-unit `seq` (`ingest_sequence`) tells a new message from a QoS 1 redelivery
   (dropped) or a late one filling a recorded gap (an outbox replay after a reconnect);
3. only a message newer than everything applied may change the live state, so a late
   replay never rolls a unit's state back (`ingest_apply`).

Writes are batched: one transaction per `ingest.batch_max` messages or
`ingest.batch_interval_ms`, whichever comes first. A failing batch is retried message
by message so one bad message is quarantined (reason "processing_error") without
losing the rest; while the database is unreachable the batch waits and is retried.
Per message, the publish-to-commit latency (`sent_at` -> commit) goes to the metrics
and to any `lag_observers`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import aiomqtt
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from controller.callout_faults import preload_faults
from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.ingest_apply import apply_message, known_reports
from controller.ingest_sequence import sequence
from controller.ingest_validation import Accepted, Batch, Received, Rejected, classify, quarantine
from controller.metrics import ControllerMetrics
from controller.notify import Notifier
from controller.store.base import Database, utcnow
from controller.store.fleet import SeqGap, Unit, UnitStatus
from protocol.messages import Event, Message

__all__ = ["Handler", "Ingest", "Received"]

log = logging.getLogger(__name__)

#: Extra handling per message kind (e.g. "recording_index", "command_ack"), run in the
#: batch's transaction after the message is accepted.
Handler = Callable[[AsyncSession, Message], Awaitable[None]]
_IN_CHUNK = 500


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
    ) -> None:
        self.db = db
        self.settings = settings
        self.topics = settings.topics
        self.callouts = callouts
        self.metrics = metrics
        self.notifier = notifier
        self.handlers = dict(handlers or {})
        self.lag_observers: list[Callable[[Sequence[float]], None]] = []
        self._pending: list[Received] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.stored = 0
        self.quarantined = 0
        self.duplicates = 0
        self.dropped = 0

    # -- intake (called from the broker link's receive loop: must not block) -----------

    def submit(self, message: aiomqtt.Message) -> None:
        payload = message.payload
        if isinstance(payload, str):
            payload = payload.encode()
        elif not isinstance(payload, (bytes, bytearray)):
            payload = b"" if payload is None else str(payload).encode()
        self.submit_raw(message.topic.value, bytes(payload))

    def submit_raw(self, topic: str, payload: bytes, received_at: datetime | None = None) -> None:
        self._pending.append(Received(topic, payload, received_at or utcnow()))
        self._idle.clear()
        self._wake.set()
        self.metrics.queue_depth.set(len(self._pending))

    async def idle(self) -> None:
        """Return once every submitted message has been stored or dropped."""
        await self._idle.wait()

    # -- the writer -----------------------------------------------------------------------

    async def run(self) -> None:
        settings = self.settings.ingest
        interval = settings.batch_interval_ms / 1000
        while True:
            await self._wake.wait()
            if len(self._pending) < settings.batch_max:
                await asyncio.sleep(interval)  # let a batch gather
            batch, self._pending = (
                self._pending[: settings.batch_max],
                self._pending[settings.batch_max :],
            )
            if not self._pending:
                self._wake.clear()
            self.metrics.queue_depth.set(len(self._pending))
            if batch:
                try:
                    await self._store_with_retry(batch)
                except Exception:  # never stop ingest; the messages are lost, say so
                    self.dropped += len(batch)
                    log.exception("batch of %d messages could not be stored: dropped", len(batch))
            if not self._pending:
                self._idle.set()

    async def _store_with_retry(self, items: list[Received]) -> None:
        batch = classify(self.topics, items)
        attempt = 0
        while True:
            try:
                await self._store(batch)
                return
            except DBAPIError as exc:
                if not exc.connection_invalidated and "locked" not in str(exc.orig).lower():
                    break
                delay = random.uniform(0.5, min(30.0, 2.0**attempt))
                attempt += 1
                log.error(
                    "database unavailable, batch of %d waits %.1fs: %s", len(items), delay, exc
                )
                await asyncio.sleep(delay)
            except Exception as exc:  # retried one by one below
                log.exception("batch of %d failed (%s): retrying one by one", len(items), exc)
                break
        for accepted in batch.accepted:
            try:
                await self._store(Batch(accepted=[accepted]))
            except Exception as exc:  # a bug or bad data must not stop ingest
                log.exception("unit=%s message could not be stored", accepted.unit_id)
                reject = Rejected(
                    accepted.item,
                    accepted.unit_id,
                    "processing_error",
                    f"{type(exc).__name__}: {exc}",
                )
                await self._store(Batch(rejected=[reject]))
        if batch.rejected:
            await self._store(Batch(rejected=batch.rejected))

    async def _store(self, batch: Batch) -> None:
        applied: list[Accepted] = []
        async with self.db.session() as session:
            for rejected in batch.rejected:
                quarantine(session, rejected)
            if batch.accepted:
                applied = await self._apply(session, batch.accepted)
            await session.commit()
            if self.notifier is not None:
                self.notifier.wake_if_queued(session)
        committed = utcnow()
        lags = [max(0.0, (committed - a.message.sent_at).total_seconds()) for a in applied]
        kinds: dict[str, int] = {}
        for accepted in applied:
            kinds[accepted.message.kind] = kinds.get(accepted.message.kind, 0) + 1
        for kind, count in kinds.items():
            self.metrics.messages.labels(kind).inc(count)
        for lag in lags:
            self.metrics.lag.observe(lag)
        for reject in batch.rejected:
            self.metrics.quarantined.labels(reject.reason).inc()
            log.warning(
                "quarantined topic=%s unit=%s reason=%s detail=%s",
                reject.item.topic[:200],
                reject.unit_id,
                reject.reason,
                reject.detail[:200],
            )
        self.metrics.batch_size.observe(len(batch.accepted) + len(batch.rejected))
        self.stored += len(applied)
        self.quarantined += len(batch.rejected)
        for observer in self.lag_observers:
            observer(lags)

    async def _load(
        self, session: AsyncSession, unit_ids: list[str], need_units: set[str]
    ) -> tuple[dict[str, Unit], dict[str, UnitStatus], dict[str, list[SeqGap]]]:
        """Statuses and gaps of the batch's units (one query each per chunk); the inventory
        rows only where needed (units with events) or missing (registered here)."""
        units: dict[str, Unit] = {}
        statuses: dict[str, UnitStatus] = {}
        gaps: dict[str, list[SeqGap]] = {}
        for i in range(0, len(unit_ids), _IN_CHUNK):
            chunk = unit_ids[i : i + _IN_CHUNK]
            rows = await session.execute(select(UnitStatus).where(UnitStatus.unit_id.in_(chunk)))
            statuses.update((s.unit_id, s) for s in rows.scalars())
            for gap in (
                await session.execute(select(SeqGap).where(SeqGap.unit_id.in_(chunk)))
            ).scalars():
                gaps.setdefault(gap.unit_id, []).append(gap)
        wanted = sorted(need_units | {u for u in unit_ids if u not in statuses})
        for i in range(0, len(wanted), _IN_CHUNK):
            found = await session.execute(
                select(Unit).where(Unit.unit_id.in_(wanted[i : i + _IN_CHUNK]))
            )
            units.update((u.unit_id, u) for u in found.scalars())
        now = utcnow()
        new = [unit_id for unit_id in wanted if unit_id not in units]
        if new:
            log.info(
                "%d units not in the inventory registered from the broker (%s...)",
                len(new),
                ", ".join(new[:5]),
            )
        for unit_id in new:
            units[unit_id] = Unit(unit_id=unit_id, source="broker", registered_at=now)
            session.add(units[unit_id])
        for unit_id in unit_ids:
            if unit_id not in statuses:
                statuses[unit_id] = UnitStatus(
                    unit_id=unit_id,
                    online_reason="",
                    recording_reason="",
                    gate_reason="",
                    reported_faults=[],
                    messages=0,
                    duplicates=0,
                    missing=0,
                )
                session.add(statuses[unit_id])
        if new:
            await session.flush()
        await preload_faults(session, unit_ids)
        return units, statuses, gaps

    async def _apply(self, session: AsyncSession, accepted: list[Accepted]) -> list[Accepted]:
        unit_ids = sorted({a.unit_id for a in accepted})
        need_units = {a.unit_id for a in accepted if isinstance(a.message, Event)}
        units, statuses, gaps = await self._load(session, unit_ids, need_units)
        await known_reports(session, [a.message for a in accepted])
        applied = []
        for item in accepted:
            status = statuses[item.unit_id]
            unit_gaps = gaps.setdefault(item.unit_id, [])
            verdict = await sequence(session, self.metrics, status, unit_gaps, item.message)
            if verdict is None:
                status.duplicates += 1
                self.duplicates += 1
                self.metrics.duplicates.inc()
                continue
            status.messages += 1
            await apply_message(
                session,
                self,
                units.get(item.unit_id),
                status,
                item.message,
                item.item.received_at,
                newest=verdict,
            )
            handler = self.handlers.get(item.message.kind)
            if handler is not None:
                await handler(session, item.message)
            applied.append(item)
        return applied

    def is_fresh(self, sent_at: datetime, now: datetime) -> bool:
        return sent_at >= now - timedelta(seconds=self.settings.offline_timeout_s)
