"""Units' live status rows in bulk, for ingest: read once per batch, written once per batch.

    statuses = await load_statuses(session, unit_ids, registered_at=now)  # creates missing
    statuses["cam-01"].recording = True                                  # plain attributes
    await write_statuses(session, statuses.values())                     # changed columns

A `LiveStatus` is one `unit_status` row as plain Python attributes: no ORM identity map,
no per-attribute instrumentation, and only the columns ingest reads are read
(`READ_COLUMNS`; most of a heartbeat is written, never read). Assigning a value that
differs from the row (or any value to a column not read) marks the column changed;
`write_statuses` sends one UPDATE per set of changed columns for the whole batch (an
executemany), so a batch of a thousand heartbeats costs one statement, not a thousand
ORM flushes. On PostgreSQL the rows are read `FOR UPDATE` in unit order, so
controllers sharing the load never interleave updates of one unit (SQLite has one
writer at a time anyway, see `store.base`). Units heard of for the first time are
registered (inventory row, source "broker") with an empty status.

Ingest's sessions must not also load `UnitStatus` ORM objects of these units: the two
views would disagree until commit.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, Table, Text, bindparam, insert, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.ext.asyncio import AsyncSession

from controller.store.fleet import Unit, UnitStatus

__all__ = ["COLUMNS", "READ_COLUMNS", "LiveStatus", "load_statuses", "write_statuses"]

log = logging.getLogger(__name__)

_TABLE: Table = cast(Table, UnitStatus.__table__)
_UNITS: Table = cast(Table, Unit.__table__)
#: Every column of `unit_status`: the attributes a `LiveStatus` may have.
COLUMNS = frozenset(c.name for c in _TABLE.columns)
#: The columns loaded with a status: those ingest reads, and those a heartbeat sets that
#: cost little to read and seldom change (comparing them spares writing them). The rest
#: are only written (a heartbeat's time and uptime change every time anyway): assigning
#: one always counts as a change, and reading one before it is set is an error.
READ_COLUMNS = (
    "unit_id",
    "online",
    "last_seen_at",
    "boot_id",
    "last_seq",
    "state_seq",
    "messages",
    "duplicates",
    "missing",
    "last_selftest_at",
    "last_pass_at",
    "recording",
    "recording_reason",
    "gate_open",
    "gate_reason",
    "deployment_id",
    "outbox_depth",
    "outbox_dropped",
    "storage_total_bytes",
    "storage_free_bytes",
    "temperature_c",
    "clock_offset_s",
    "position_lat",
    "position_lon",
    "reported_faults",
)
#: Text columns with a length: a longer value is cut to fit, the same on every database
#: (PostgreSQL would refuse it, SQLite would keep it whole).
_LENGTHS = {
    c.name: c.type.length
    for c in _TABLE.columns
    if isinstance(c.type, String) and c.type.length is not None
}
#: The columns a status is read with. `reported_faults` comes as its JSON text, parsed
#: here (`_faults`): nearly always the empty list, which needs no JSON parser.
_READ = [
    sql_cast(_TABLE.c[name], Text).label(name) if name == "reported_faults" else _TABLE.c[name]
    for name in READ_COLUMNS
]
_CHUNK = 500
_UNREAD = object()
#: A new unit's status: what the ORM model's defaults would give.
_EMPTY: dict[str, Any] = {
    **{c.name: None for c in _TABLE.columns},
    "online_reason": "",
    "recording_reason": "",
    "gate_reason": "",
    "reported_faults": [],
    "messages": 0,
    "duplicates": 0,
    "missing": 0,
}


class LiveStatus:
    """One unit's live status row. Attribute names are the `unit_status` columns; the
    annotated ones are those ingest uses by name (the heartbeat columns are set from
    `controller.fleet.state.HEARTBEAT_COLUMNS`). Only `READ_COLUMNS` can be read back
    before being set."""

    unit_id: str
    online: bool | None
    online_reason: str
    online_changed_at: datetime | None
    last_seen_at: datetime | None
    boot_id: str | None
    agent_version: str | None
    recording: bool | None
    recording_reason: str
    gate_open: bool | None
    gate_reason: str
    deployment_id: str | None
    heartbeat_at: datetime | None
    power_source: str | None
    on_battery: bool | None
    low_battery: bool | None
    charge_pct: float | None
    power_at: datetime | None
    last_selftest_at: datetime | None
    last_selftest_verdict: str | None
    last_selftest_id: str | None
    last_pass_at: datetime | None
    last_seq: int | None
    state_seq: int | None
    messages: int
    duplicates: int
    missing: int

    def __init__(self, row: Mapping[str, Any]) -> None:
        self.__dict__.update(row)
        self.__dict__["_changed"] = set()

    def __setattr__(self, name: str, value: Any) -> None:
        values = self.__dict__
        if name not in COLUMNS:
            raise AttributeError(f"unit_status has no column {name!r}")
        if type(value) is str and name in _LENGTHS:
            value = value[: _LENGTHS[name]]
        old = values.get(name, _UNREAD)
        if old is _UNREAD or old != value or type(old) is not type(value):
            values[name] = value
            values["_changed"].add(name)

    def assign(self, values: Mapping[str, Any]) -> None:
        """Set several columns at once (a heartbeat's), as attribute assignment would."""
        if not COLUMNS.issuperset(values):
            unknown = sorted(values.keys() - COLUMNS)[0]
            raise AttributeError(f"unit_status has no column {unknown!r}")
        mine = self.__dict__
        changed = mine["_changed"]
        for name, value in values.items():
            if type(value) is str and name in _LENGTHS:
                value = value[: _LENGTHS[name]]
            old = mine.get(name, _UNREAD)
            # (The same object, e.g. None, True or 0, is the same value of the same type.)
            if old is not value and (
                old is _UNREAD or old != value or type(old) is not type(value)
            ):
                mine[name] = value
                changed.add(name)

    @property
    def changed(self) -> frozenset[str]:
        """The columns assigned a new value since the row was read."""
        return frozenset(self.__dict__["_changed"])

    def values(self, columns: Iterable[str]) -> dict[str, Any]:
        return {name: self.__dict__[name] for name in columns}

    def __repr__(self) -> str:
        return f"<LiveStatus {self.unit_id} seq={self.last_seq} changed={sorted(self.changed)}>"


async def load_statuses(
    session: AsyncSession, unit_ids: Iterable[str], *, registered_at: datetime
) -> dict[str, LiveStatus]:
    """The status of each unit (sorted, locked on PostgreSQL); units with no status row
    get one, and units missing from the inventory are registered from the broker."""
    wanted = sorted(set(unit_ids))
    found: dict[str, LiveStatus] = {}
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        query = select(*_READ).where(_TABLE.c.unit_id.in_(chunk)).order_by(_TABLE.c.unit_id)
        for row in await session.execute(query.with_for_update()):
            values = dict(zip(READ_COLUMNS, row, strict=True))
            values["reported_faults"] = _faults(values["reported_faults"])
            found[row[0]] = LiveStatus(values)
    missing = [unit_id for unit_id in wanted if unit_id not in found]
    if missing:
        new = await _create(session, missing, registered_at)
        if new:
            log.info(
                "%d units not in the inventory registered from the broker (%s...)",
                len(new),
                ", ".join(new[:5]),
            )
        found.update((u, LiveStatus(_empty(u))) for u in missing)
    return found


def _faults(text: str | None) -> list[str] | None:
    """`reported_faults` from its JSON text (see `_READ`)."""
    if text is None:
        return None
    if text == "[]":
        return []
    faults: list[str] = json.loads(text)
    return faults


def _empty(unit_id: str) -> dict[str, Any]:
    return {**_EMPTY, "unit_id": unit_id, "reported_faults": []}


async def _create(session: AsyncSession, unit_ids: list[str], at: datetime) -> list[str]:
    """Status rows for `unit_ids`, and inventory rows for those not in it. Returns the
    units registered from the broker."""
    known: set[str] = set()
    for i in range(0, len(unit_ids), _CHUNK):
        rows = await session.execute(
            select(_UNITS.c.unit_id).where(_UNITS.c.unit_id.in_(unit_ids[i : i + _CHUNK]))
        )
        known.update(rows.scalars())
    new = [unit_id for unit_id in unit_ids if unit_id not in known]
    if new:
        await session.execute(
            insert(_UNITS), [{"unit_id": u, "source": "broker", "registered_at": at} for u in new]
        )
    await session.execute(insert(_TABLE), [_empty(u) for u in unit_ids])
    return new


async def write_statuses(session: AsyncSession, statuses: Iterable[LiveStatus]) -> int:
    """Write every changed column: one executemany per distinct set of changed columns.
    Returns the number of rows written."""
    groups: dict[frozenset[str], list[LiveStatus]] = {}
    for status in statuses:
        changed = status.changed
        if changed:
            groups.setdefault(changed, []).append(status)
    written = 0
    for columns, members in groups.items():
        keys = [(f"new_{name}", name) for name in sorted(columns)]
        statement = (
            update(_TABLE)
            .where(_TABLE.c.unit_id == bindparam("key_unit_id"))
            .values({name: bindparam(key) for key, name in keys})
        )
        params = []
        for status in members:
            row = status.__dict__
            values = {key: row[name] for key, name in keys}
            values["key_unit_id"] = status.unit_id
            params.append(values)
        await session.execute(statement, params)
        for status in members:
            status.__dict__["_changed"].clear()
        written += len(members)
    return written
