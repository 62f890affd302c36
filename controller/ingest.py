"""Ingest: every message from the units, validated, de-duplicated and stored in batches.

For each received message:
1. the topic must be a unit topic (`Topics.parse`); messages on the to-unit channels
   (our own commands and authorizations, echoed by the broker) are ignored;
2. the payload must decode (`protocol.messages.decode`), its `unit_id` must be the
   topic's and its kind must travel on the topic's channel; anything else is
   quarantined (topic, payload prefix, reason, time) and counted, never raised;
3. `seq` is per unit and monotonic across restarts: a seq at or below the highest seen
   is a duplicate (a QoS 1 redelivery) and dropped, unless it falls in a recorded gap,
   which it then fills (an outbox replay after a reconnect arrives after the newer
   online state). A jump records the missing range as a gap. The one seq a unit reserves
   for its last will at each connection (the seq just before its online state) is kept
   as a gap of reason "will", not counted as loss, and filled if the will fires;
4. only a message newer than everything applied may change the live state, so a late
   replay never rolls a unit's state back.

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
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiomqtt
from sqlalchemy import select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from controller.callouts import CalloutService, preload_faults
from controller.config import ControllerSettings
from controller.ingest_apply import apply_message, known_reports
from controller.metrics import ControllerMetrics
from controller.notify import Notifier
from controller.store.base import Database, utcnow
from controller.store.fleet import QuarantinedMessage, SeqGap, Unit, UnitStatus
from protocol.errors import (
    MessageError,
    PayloadTooLarge,
    ProtocolError,
    UnknownKind,
    UnknownTopic,
    VersionMismatch,
)
from protocol.messages import Event, Message, UnitState, channel_for, decode
from protocol.topics import Direction

__all__ = ["Handler", "Ingest", "Received"]

log = logging.getLogger(__name__)

#: Extra handling per message kind (e.g. "recording_index", "command_ack"), run in the
#: batch's transaction after the message is accepted.
Handler = Callable[[AsyncSession, Message], Awaitable[None]]
PREFIX_BYTES = 256
#: A seq at or below this from a boot id not seen before, far below the highest seq,
#: means the unit's seq store was reset (a reinstalled unit): start again from it.
SEQ_RESET_MAX = 16
_IN_CHUNK = 500


@dataclass(slots=True)
class Received:
    topic: str
    payload: bytes
    received_at: datetime


@dataclass(slots=True)
class _Accepted:
    item: Received
    unit_id: str
    message: Message


@dataclass(slots=True)
class _Rejected:
    item: Received
    unit_id: str | None
    reason: str
    detail: str


@dataclass(slots=True)
class _Batch:
    accepted: list[_Accepted] = field(default_factory=list)
    rejected: list[_Rejected] = field(default_factory=list)


def _reason(exc: ProtocolError) -> str:
    if isinstance(exc, PayloadTooLarge):
        return "too_large"
    if isinstance(exc, UnknownKind):
        return "unknown_kind"
    if isinstance(exc, VersionMismatch):
        return "version"
    return "malformed"


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

    def classify(self, items: Sequence[Received]) -> _Batch:
        out = _Batch()
        for item in items:
            try:
                unit_id, channel = self.topics.parse(item.topic)
            except UnknownTopic as exc:
                out.rejected.append(_Rejected(item, None, "unknown_topic", str(exc)))
                continue
            if channel.direction is Direction.TO_UNIT:
                continue  # the controller's own commands/authorizations, echoed back
            try:
                message = decode(item.payload)
            except MessageError as exc:
                out.rejected.append(_Rejected(item, unit_id, _reason(exc), str(exc)))
                continue
            if message.unit_id != unit_id:
                detail = f"message unit_id {message.unit_id!r} on unit {unit_id!r}'s topic"
                out.rejected.append(_Rejected(item, unit_id, "unit_mismatch", detail))
            elif channel_for(message) != channel:
                detail = f"a {message.kind!r} message on the {channel.value!r} channel"
                out.rejected.append(_Rejected(item, unit_id, "wrong_channel", detail))
            else:
                out.accepted.append(_Accepted(item, unit_id, message))
        return out

    async def _store_with_retry(self, items: list[Received]) -> None:
        batch = self.classify(items)
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
                await self._store(_Batch(accepted=[accepted]))
            except Exception as exc:  # a bug or bad data must not stop ingest
                log.exception("unit=%s message could not be stored", accepted.unit_id)
                reject = _Rejected(
                    accepted.item,
                    accepted.unit_id,
                    "processing_error",
                    f"{type(exc).__name__}: {exc}",
                )
                await self._store(_Batch(rejected=[reject]))
        if batch.rejected:
            await self._store(_Batch(rejected=batch.rejected))

    async def _store(self, batch: _Batch) -> None:
        applied: list[_Accepted] = []
        async with self.db.session() as session:
            for rejected in batch.rejected:
                self._quarantine(session, rejected)
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

    def _quarantine(self, session: AsyncSession, rejected: _Rejected) -> None:
        payload = rejected.item.payload
        session.add(
            QuarantinedMessage(
                received_at=rejected.item.received_at,
                topic=rejected.item.topic[:300],
                unit_id=rejected.unit_id,
                reason=rejected.reason,
                detail=rejected.detail[:500],
                payload_size=len(payload),
                payload_prefix=payload[:PREFIX_BYTES].decode("utf-8", "backslashreplace"),
            )
        )

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

    async def _apply(self, session: AsyncSession, accepted: list[_Accepted]) -> list[_Accepted]:
        unit_ids = sorted({a.unit_id for a in accepted})
        need_units = {a.unit_id for a in accepted if isinstance(a.message, Event)}
        units, statuses, gaps = await self._load(session, unit_ids, need_units)
        await known_reports(session, [a.message for a in accepted])
        applied = []
        for item in accepted:
            status = statuses[item.unit_id]
            verdict = await self._sequence(session, status, gaps.setdefault(item.unit_id, []), item)
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

    async def _sequence(
        self, session: AsyncSession, status: UnitStatus, gaps: list[SeqGap], item: _Accepted
    ) -> bool | None:
        """True: newest message; False: a late one filling a gap; None: a duplicate."""
        message, seq = item.message, item.message.seq
        last = status.last_seq
        if last is None or seq > last:
            if last is not None and seq > last + 1:
                self._record_gap(session, status, gaps, last + 1, seq - 1, message)
            elif last is None and seq > 0 and isinstance(message, UnitState) and message.online:
                # First contact: still keep the seq reserved for this connection's will.
                self._record_gap(session, status, gaps, seq - 1, seq - 1, message)
            status.last_seq = seq
            return True
        for gap in gaps:
            if gap.first_seq <= seq <= gap.last_seq:
                await self._fill(session, gaps, gap, seq)
                if gap.reason == "missing":
                    status.missing = max(0, status.missing - 1)
                    self.metrics.late.inc()
                return False
        if seq <= SEQ_RESET_MAX < last - seq and message.boot_id != status.boot_id:
            log.warning(
                "unit=%s seq reset from %s to %s (new boot %s)",
                item.unit_id,
                last,
                seq,
                message.boot_id,
            )
            for gap in list(gaps):
                await self._drop(session, gaps, gap)
            session.info.setdefault("seq_resets", []).append(item.unit_id)
            status.last_seq = seq
            return True
        return None

    def _record_gap(
        self,
        session: AsyncSession,
        status: UnitStatus,
        gaps: list[SeqGap],
        first: int,
        last: int,
        message: Message,
    ) -> None:
        now = utcnow()
        if isinstance(message, UnitState) and message.online:
            # The seq just before a unit's online state is reserved for its will.
            ranges = [(first, last - 1, "missing"), (last, last, "will")]
        else:
            ranges = [(first, last, "missing")]
        for a, b, reason in ranges:
            if a > b:
                continue
            gap = SeqGap(
                unit_id=status.unit_id, first_seq=a, last_seq=b, reason=reason, detected_at=now
            )
            session.add(gap)
            gaps.append(gap)
            if reason == "missing":
                status.missing += b - a + 1
                self.metrics.gaps.inc(b - a + 1)

    async def _drop(self, session: AsyncSession, gaps: list[SeqGap], gap: SeqGap) -> None:
        gaps.remove(gap)
        if gap in session.new:
            session.expunge(gap)
        else:
            await session.delete(gap)

    async def _fill(self, session: AsyncSession, gaps: list[SeqGap], gap: SeqGap, seq: int) -> None:
        await self._drop(session, gaps, gap)
        pieces = [(gap.first_seq, seq - 1), (seq + 1, gap.last_seq)]
        for a, b in pieces:
            if a <= b:
                piece = SeqGap(
                    unit_id=gap.unit_id,
                    first_seq=a,
                    last_seq=b,
                    reason=gap.reason,
                    detected_at=gap.detected_at,
                )
                session.add(piece)
                gaps.append(piece)

    def is_fresh(self, sent_at: datetime, now: datetime) -> bool:
        return sent_at >= now - timedelta(seconds=self.settings.offline_timeout_s)
