"""The tamper-evident audit log.

Every decision and state change is appended with `record(session, ...)` inside the
transaction that makes the change, so the entry exists exactly when the change does.
Rows form a hash chain:

    row_hash = sha256(prev_hash || canonical(row))      prev_hash of row 1 = 64 zeros

where `canonical(row)` is compact, key-sorted JSON of seq, at (UTC ISO-8601 with
microseconds), actor, action, subject and details. `verify(db)` recomputes the chain and
names the first row that was edited, deleted or inserted.

Appends are serialised: on SQLite every transaction is `BEGIN IMMEDIATE` (one writer,
see `store.base`); on PostgreSQL the append takes a transaction-level advisory lock, so
two appends can never both chain to the same head.

The chain proves the log was not altered *after* the fact by someone who cannot rewrite
every later row; to also catch a rewrite of the whole tail, note the head hash that
`verify` prints (e.g. in the annual review) and compare later.

`entries(db, ...)` reads the log newest first, a page at a time, for the JSON API and the
audit page alike.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from controller.store.audit import AuditEntry
from controller.store.base import Database, utcnow

__all__ = [
    "GENESIS",
    "AuditEntry",
    "AuditPage",
    "AuditRecord",
    "VerifyResult",
    "canonical_row",
    "entries",
    "names",
    "record",
    "verify",
]

GENESIS = "0" * 64
_LOCK_KEY = 0x43435456_A0D1  # PostgreSQL advisory lock of the audit chain
_PAGE = 2000
_HEAD_KEY = "audit_head"


def _details_json(details: dict[str, Any]) -> str:
    return json.dumps(
        details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def canonical_row(
    seq: int, at: datetime, actor: str, action: str, subject: str, details_json: str
) -> bytes:
    doc = {
        "seq": seq,
        "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": json.loads(details_json),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _hash(prev_hash: str, row: bytes) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + row).hexdigest()


async def record(
    session: AsyncSession,
    *,
    actor: str,
    action: str,
    subject: str,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    """Append one entry in the session's transaction (committed with it)."""
    # Within one transaction the head cannot move under us (we hold the lock), so it is
    # read once and then carried forward in memory.
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(_HEAD_KEY)
    if cached is not None and transaction is not None and cached[0] is transaction:
        seq, prev = cached[1] + 1, cached[2]
    else:
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        head = (
            await session.execute(
                select(AuditEntry.seq, AuditEntry.row_hash).order_by(AuditEntry.seq.desc()).limit(1)
            )
        ).first()
        seq, prev = (1, GENESIS) if head is None else (int(head[0]) + 1, str(head[1]))
    # Stored at microsecond precision, as every backend keeps it.
    when = (at or utcnow()).astimezone(UTC)
    body = _details_json(details or {})
    entry = AuditEntry(
        seq=seq,
        at=when,
        actor=actor[:200],
        action=action[:100],
        subject=subject[:300],
        details_json=body,
        prev_hash=prev,
        row_hash=_hash(
            prev, canonical_row(seq, when, actor[:200], action[:100], subject[:300], body)
        ),
    )
    session.add(entry)
    session.info[_HEAD_KEY] = (session.sync_session.get_transaction(), seq, entry.row_hash)
    return entry


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    rows: int
    head_seq: int
    head_hash: str
    bad_seq: int | None = None
    reason: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"audit log intact: {self.rows} rows, head {self.head_seq} {self.head_hash}"
        return f"audit log TAMPERED at row {self.bad_seq}: {self.reason}"


async def verify(db: Database) -> VerifyResult:
    """Recompute the chain; the result names the first bad row, if any."""
    expected_seq, prev, rows, last_id = 1, GENESIS, 0, None
    async with db.session() as session:
        while True:
            query = select(AuditEntry).order_by(AuditEntry.seq).limit(_PAGE)
            if last_id is not None:
                query = query.where(AuditEntry.seq > last_id)
            page = list((await session.execute(query)).scalars())
            if not page:
                break
            for row in page:
                rows += 1
                if row.seq != expected_seq:
                    what = "missing (deleted)" if row.seq > expected_seq else "out of order"
                    return VerifyResult(
                        False, rows, expected_seq - 1, prev, expected_seq,
                        f"row {expected_seq} is {what}; found row {row.seq} next",
                    )  # fmt: skip
                if row.prev_hash != prev:
                    return VerifyResult(
                        False, rows, row.seq - 1, prev, row.seq,
                        "its prev_hash does not match the row before it (a row was inserted "
                        "or removed here)",
                    )  # fmt: skip
                try:
                    body = canonical_row(
                        row.seq, row.at, row.actor, row.action, row.subject, row.details_json
                    )
                except ValueError:
                    body = b""
                if _hash(prev, body) != row.row_hash:
                    return VerifyResult(
                        False, rows, row.seq - 1, prev, row.seq,
                        "its content does not match its hash (the row was edited)",
                    )  # fmt: skip
                prev, expected_seq = row.row_hash, row.seq + 1
            last_id = page[-1].seq
    return VerifyResult(True, rows, expected_seq - 1, prev)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One row of the log as read back, its details decoded."""

    seq: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    row_hash: str


@dataclass(frozen=True, slots=True)
class AuditPage:
    """Rows newest first; `older` is the `before` of the next (older) page, None at the end."""

    records: list[AuditRecord]
    older: int | None


def _details(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text[:200]}
    return value if isinstance(value, dict) else {"value": value}


async def entries(
    db: Database,
    *,
    limit: int,
    before: int | None = None,
    actor: str | None = None,
    action: str | None = None,
    subject: str | None = None,
    family: str | None = None,
    unit: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditPage:
    """At most `limit` rows older than `before` (all when None), newest first, of one actor,
    action or subject when given; of one `family` of actions (`"callout"`: every
    `callout.*`); about one `unit` (its own rows, and the callouts, commands and deployments
    that name it); from `since` and before `until`."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    query = select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.seq < before)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if action is not None:
        query = query.where(AuditEntry.action == action)
    if subject is not None:
        query = query.where(AuditEntry.subject == subject)
    if family is not None:
        query = query.where(AuditEntry.action.startswith(family + ".", autoescape=True))
    if unit is not None:
        quoted = json.dumps(unit, ensure_ascii=False)
        query = query.where(
            or_(
                AuditEntry.subject == f"unit:{unit}",
                AuditEntry.details_json.contains(f'"unit":{quoted}', autoescape=True),
                AuditEntry.details_json.contains(f'"unit_id":{quoted}', autoescape=True),
            )
        )
    if since is not None:
        query = query.where(AuditEntry.at >= since)
    if until is not None:
        query = query.where(AuditEntry.at < until)
    async with db.session() as session:
        rows = list((await session.execute(query)).scalars())
    records = [
        AuditRecord(
            seq=row.seq,
            at=row.at,
            actor=row.actor,
            action=row.action,
            subject=row.subject,
            details=_details(row.details_json),
            row_hash=row.row_hash,
        )
        for row in rows
    ]
    older = rows[-1].seq if len(rows) == limit and rows[-1].seq > 1 else None
    return AuditPage(records, older)


async def names(db: Database) -> tuple[list[str], list[str]]:
    """The actions and the actors the log holds, each sorted: the choices of its filters."""
    async with db.session() as session:
        actions = (await session.execute(select(AuditEntry.action).distinct())).scalars()
        actors = (await session.execute(select(AuditEntry.actor).distinct())).scalars()
        return sorted(actions), sorted(actors)
