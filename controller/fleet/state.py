"""Changes of a unit's live state that are not tied to one message: going online or
offline, and what a heartbeat sets.

Heartbeats are most of the traffic and change nothing but live-status columns, all named
in `HEARTBEAT_COLUMNS` (`apply_heartbeat`). `set_online` is the one way a unit goes
online or offline: from its own messages (ingest) or its silence (the periodic sweep).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.callouts import CalloutBatch, CalloutService
from controller.store.fleet import UnitStatus
from controller.store.live_status import LiveStatus
from protocol.messages import Heartbeat

__all__ = ["HEARTBEAT_COLUMNS", "KEEP", "Status", "apply_heartbeat", "set_online"]

#: A heartbeat value that leaves its column as it was.
KEEP: Any = object()

#: The live-status columns a heartbeat sets, each with how its value comes from the
#: message: the one mapping of a heartbeat onto `unit_status` (a new column is a line).
HEARTBEAT_COLUMNS: dict[str, Callable[[Heartbeat], Any]] = {
    "heartbeat_at": attrgetter("sent_at"),
    "recording": attrgetter("recording"),
    "recording_reason": attrgetter("recording_reason"),
    "gate_open": attrgetter("gate_open"),
    "gate_reason": attrgetter("gate_reason"),
    "deployment_id": attrgetter("deployment_id"),
    "outbox_depth": attrgetter("outbox_depth"),
    "outbox_dropped": attrgetter("outbox_dropped"),
    "uptime_s": attrgetter("uptime_s"),
    "temperature_c": attrgetter("temperature_c"),
    "clock_offset_s": attrgetter("clock_offset_s"),
    "reported_faults": lambda m: [f.value for f in m.open_faults],
    "position_lat": lambda m: m.position[0] if m.position else None,
    "position_lon": lambda m: m.position[1] if m.position else None,
    "storage_total_bytes": lambda m: m.storage.total_bytes if m.storage else KEEP,
    "storage_free_bytes": lambda m: m.storage.free_bytes if m.storage else KEEP,
}

#: A unit's live state: the ORM row, or ingest's batch copy of it.
Status = UnitStatus | LiveStatus


def apply_heartbeat(status: Status, message: Heartbeat) -> None:
    values = {}
    for column, value_of in HEARTBEAT_COLUMNS.items():
        value = value_of(message)
        if value is not KEEP:
            values[column] = value
    if isinstance(status, LiveStatus):
        status.assign(values)
    else:
        for column, value in values.items():
            setattr(status, column, value)


async def set_online(
    session: AsyncSession,
    callouts: CalloutService,
    status: Status,
    online: bool,
    reason: str,
    at: datetime,
    *,
    batch: CalloutBatch | None = None,
) -> bool:
    """Change a unit's online state; audit it; note a return on its offline callout."""
    status.online_reason = reason[:200]
    if status.online is online:
        return False
    status.online, status.online_changed_at = online, at
    await audit.record(
        session,
        actor="system",
        action="unit.online" if online else "unit.offline",
        subject=f"unit:{status.unit_id}",
        details={"reason": reason[:200]},
        at=at,
    )
    if online:
        await callouts.faults.unit_online(session, status.unit_id, at, batch=batch)
    return True
