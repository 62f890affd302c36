"""Cases: why footage is wanted, who decided, and where it stands.

    requested --approve--> approved --(upload starts)--> retrieving --(all verified)-->
        |                    retrieved --(exhibit released)--> released --close--> closed
        \\--refuse--> refused --close--> closed

- Raised by an operator, a manager or a data controller, with one or more unit + time
  ranges: the units must exist, each range must end after it starts, not after now, and
  last no longer than `[evidence] max_range_hours`.
- Approved or refused by a data controller who did not raise it; a refusal keeps its reason.
  Approval places a hold on each range (`controller.evidence.holds`) and asks for the
  footage to be retrieved (`controller.evidence.retrieval`, when installed).
- A subject access request carries its deadline (`controller.evidence.sar`): one month
  from receipt, extendable once or twice up to two further months with a reason.
- The outcome (arrest, charge, ..., for the KPIs) may be set at any time before closing.
- Closing releases the holds. A case is closed from any state but `requested` (which is
  decided first).
- `mark_retrieving`, `mark_retrieved` and `mark_released` move a case for the retrieval and
  release steps, in their callers' transactions.

Every step is written to the audit chain, under the subject `case:<number>`, in the
transaction that makes it. A step the case's state does not allow is refused with a
sentence (`CaseRefused`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.accounts.permissions import Permission, may, roles_for
from controller.evidence import holds
from controller.evidence.case_errors import (
    CaseNotPermitted,
    CaseRefused,
    InvalidCase,
    UnknownCase,
)
from controller.evidence.case_models import (
    CaseRequest,
    CloseRequest,
    DecisionRequest,
    ExtendRequest,
    OutcomeRequest,
    RefuseRequest,
)
from controller.evidence.retrieval import request_retrieval
from controller.evidence.sar import LOCAL_ZONE, MAX_EXTENSION_MONTHS, due_by, extended_by
from controller.evidence.settings import EvidenceSettings
from controller.link import ControllerLink
from controller.store.base import Database, utcnow
from controller.store.evidence import CaseHoldRow, CaseRangeRow, CaseRow
from controller.store.fleet import Unit

__all__ = [
    "CLOSABLE",
    "Actor",
    "CaseWorkflow",
    "case_with_ranges",
    "load_case",
    "mark_released",
    "mark_retrieved",
    "mark_retrieving",
    "require_permission",
]

log = logging.getLogger(__name__)

CLOSABLE = ("approved", "refused", "retrieving", "retrieved", "released")
#: How far in the future a range may end (clocks of browsers and units differ a little).
CLOCK_SLACK = timedelta(minutes=2)
_NUMBER_LOCK = 0x43435456_CA5E
SYSTEM = "system"


class Actor(Protocol):
    """Who acts: the API's signed-in user, or any object with these two attributes."""

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


def require_permission(actor: Actor, permission: Permission, action: str) -> None:
    """Refuse (`CaseNotPermitted`) an actor whose role does not have `permission` in the
    permission table (`controller.accounts.permissions`)."""
    try:
        allowed = may(actor.role, permission)
    except ValueError:  # not a role at all
        allowed = False
    if not allowed:
        words = " or ".join(role.label for role in roles_for(permission))
        raise CaseNotPermitted(actor.username, action, f"it needs the role {words}")


async def load_case(session: AsyncSession, number: str, *, for_update: bool = False) -> CaseRow:
    """The case with this number (`UnknownCase` when none)."""
    query = select(CaseRow).where(CaseRow.number == number)
    if for_update:
        query = query.with_for_update()
    row = await session.scalar(query)
    if row is None:
        raise UnknownCase(number)
    return row


async def case_with_ranges(
    session: AsyncSession, number: str
) -> tuple[CaseRow, list[CaseRangeRow]]:
    """The case (`UnknownCase` when none) and its unit ranges, by unit then start."""
    row = await load_case(session, number)
    ranges = await session.execute(
        select(CaseRangeRow)
        .where(CaseRangeRow.case_id == row.id)
        .order_by(CaseRangeRow.unit_id, CaseRangeRow.start)
    )
    return row, list(ranges.scalars())


async def _record(
    session: AsyncSession, actor: str, action: str, row: CaseRow, at: datetime, **details: Any
) -> None:
    await audit.record(
        session,
        actor=actor,
        action=f"case.{action}",
        subject=holds.case_subject(row.number),
        details={"status": row.status, "case_type": row.case_type, **details},
        at=at,
    )


# ----------------------------------------------------- steps for retrieval and release


async def _move(
    session: AsyncSession,
    case_id: int,
    *,
    to: str,
    allowed: tuple[str, ...],
    actor: str,
    at: datetime | None,
    details: dict[str, Any],
) -> CaseRow:
    row = await session.get(CaseRow, case_id, with_for_update=True)
    if row is None:
        raise UnknownCase(f"#{case_id}")
    if row.status == to:
        return row
    if row.status not in allowed:
        raise CaseRefused(
            row.number,
            row.status,
            to.replace("_", " "),
            f"only a case that is {' or '.join(allowed)} can be",
        )
    before, row.status = row.status, to
    await _record(session, actor, to, row, at or utcnow(), previous=before, **details)
    return row


async def mark_retrieving(
    session: AsyncSession,
    case_id: int,
    *,
    actor: str,
    at: datetime | None = None,
    **details: Any,
) -> CaseRow:
    """An upload of the case's footage has started (from `approved`; again: no change)."""
    return await _move(
        session,
        case_id,
        to="retrieving",
        allowed=("approved",),
        actor=actor,
        at=at,
        details=details,
    )


async def mark_retrieved(
    session: AsyncSession,
    case_id: int,
    *,
    actor: str,
    at: datetime | None = None,
    **details: Any,
) -> CaseRow:
    """Every retrieval of the case is complete and verified."""
    return await _move(
        session,
        case_id,
        to="retrieved",
        allowed=("approved", "retrieving"),
        actor=actor,
        at=at,
        details=details,
    )


async def mark_released(
    session: AsyncSession,
    case_id: int,
    *,
    actor: str,
    at: datetime | None = None,
    **details: Any,
) -> CaseRow:
    """An exhibit of the case was released (again for a later release: audited, no change)."""
    row = await session.get(CaseRow, case_id, with_for_update=True)
    if row is not None and row.status == "released":
        await _record(session, actor, "released_again", row, at or utcnow(), **details)
        return row
    return await _move(
        session,
        case_id,
        to="released",
        allowed=("retrieved",),
        actor=actor,
        at=at,
        details=details,
    )


# ------------------------------------------------------------------------ workflow


class CaseWorkflow:
    """Raising, deciding, extending, outcome and closing of cases."""

    def __init__(
        self,
        db: Database,
        *,
        link: ControllerLink | None = None,
        settings: EvidenceSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.link = link
        self.settings = settings or EvidenceSettings()
        self.clock = clock

    # -------------------------------------------------------------- who may act

    @staticmethod
    def _independent(actor: Actor, row: CaseRow, action: str) -> None:
        require_permission(actor, Permission.DECIDE_CASE, f"{action} a case")
        if actor.username == row.raised_by:
            raise CaseNotPermitted(
                actor.username,
                f"{action} case {row.number}",
                "a data controller cannot decide a case they raised; another data controller "
                "must decide it",
            )

    @staticmethod
    def _expect(row: CaseRow, action: str, allowed: tuple[str, ...], why: str) -> None:
        if row.status not in allowed:
            raise CaseRefused(row.number, row.status, action, why)

    # -------------------------------------------------------------------- raise

    async def raise_case(self, actor: Actor, req: CaseRequest) -> CaseRow:
        require_permission(actor, Permission.RAISE_CASE, "raise a case")
        now = self.clock()
        self._check_ranges(req, now)
        received = req.received_at
        if req.case_type == "subject_access":
            received = (received or now).astimezone(UTC)
            if received > now + CLOCK_SLACK:
                raise InvalidCase("a subject access request cannot be received in the future")
        async with self.db.session() as session:
            await self._check_units(session, req)
            row = CaseRow(
                number=await self._next_number(session, now),
                case_type=req.case_type,
                external_ref=req.external_ref,
                requester_name=req.requester_name,
                requester_org=req.requester_org,
                requester_contact=req.requester_contact,
                lawful_basis=req.lawful_basis,
                reason=req.reason,
                status="requested",
                raised_by=actor.username,
                raised_at=now,
                received_at=received,
                due_at=due_by(received) if received is not None else None,
            )
            session.add(row)
            await session.flush()
            for span in req.ranges:
                session.add(
                    CaseRangeRow(
                        case_id=row.id,
                        unit_id=span.unit_id,
                        start=span.start.astimezone(UTC),
                        end=span.end.astimezone(UTC),
                    )
                )
            await _record(
                session,
                actor.username,
                "raise",
                row,
                now,
                requester=req.requester_name,
                requester_org=req.requester_org,
                external_ref=req.external_ref,
                lawful_basis=req.lawful_basis,
                ranges=[
                    {
                        "unit_id": s.unit_id,
                        "start": s.start.astimezone(UTC).isoformat(),
                        "end": s.end.astimezone(UTC).isoformat(),
                    }
                    for s in req.ranges
                ],
                due_at=row.due_at.isoformat() if row.due_at else None,
            )
            await session.commit()
        log.info("case raised number=%s type=%s by=%s", row.number, row.case_type, actor.username)
        return row

    def _check_ranges(self, req: CaseRequest, now: datetime) -> None:
        if len(req.ranges) > self.settings.max_ranges:
            raise InvalidCase(
                f"a case may ask for at most {self.settings.max_ranges} ranges; "
                "raise another case for more"
            )
        longest = timedelta(hours=self.settings.max_range_hours)
        for number, span in enumerate(req.ranges, start=1):
            if span.end > now + CLOCK_SLACK:
                raise InvalidCase(
                    f"range {number} ({span.unit_id}) ends in the future: footage can only "
                    "be asked for once it has been recorded"
                )
            if span.end - span.start > longest:
                raise InvalidCase(
                    f"range {number} ({span.unit_id}) is longer than "
                    f"{self.settings.max_range_hours:g} hours: ask only for the footage needed, "
                    "in shorter ranges"
                )

    @staticmethod
    async def _check_units(session: AsyncSession, req: CaseRequest) -> None:
        wanted = sorted({s.unit_id for s in req.ranges})
        rows = await session.execute(
            select(Unit.unit_id, Unit.retired_at).where(Unit.unit_id.in_(wanted))
        )
        known = dict(rows.all())
        for unit_id in wanted:
            if unit_id not in known:
                raise InvalidCase(f"there is no unit {unit_id!r} in the inventory")

    async def _next_number(self, session: AsyncSession, now: datetime) -> str:
        """`C-<year>-<nnnn>`, the year on the local calendar; numbered in order within it."""
        if session.get_bind().dialect.name == "postgresql":
            await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _NUMBER_LOCK})
        prefix = f"C-{now.astimezone(LOCAL_ZONE).year}-"
        last = await session.scalar(
            select(CaseRow.number)
            .where(CaseRow.number.like(f"{prefix}%"))
            .order_by(func.length(CaseRow.number).desc(), CaseRow.number.desc())
            .limit(1)
        )
        seq = int(last.removeprefix(prefix)) + 1 if last else 1
        return f"{prefix}{seq:04d}"

    # ---------------------------------------------------------------- decisions

    async def approve(
        self, actor: Actor, number: str, req: DecisionRequest | None = None
    ) -> CaseRow:
        req = req or DecisionRequest()
        now = self.clock()
        async with self.db.session() as session:
            row = await load_case(session, number, for_update=True)
            self._independent(actor, row, "approve")
            self._expect(row, "approved", ("requested",), "only a requested case is decided")
            row.status, row.decided_by, row.decided_at = "approved", actor.username, now
            spans = list(
                (
                    await session.execute(
                        select(CaseRangeRow)
                        .where(CaseRangeRow.case_id == row.id)
                        .order_by(CaseRangeRow.id)
                    )
                ).scalars()
            )
            hold_ids = []
            for span in spans:
                hold_id = f"{row.number}.{span.id}.{uuid.uuid4().hex[:8]}"
                hold_ids.append(hold_id)
                session.add(
                    CaseHoldRow(
                        case_id=row.id, range_id=span.id, unit_id=span.unit_id, hold_id=hold_id
                    )
                )
            await _record(
                session, actor.username, "approve", row, now, notes=req.notes, holds=hold_ids
            )
            await session.commit()
        log.info("case approved number=%s by=%s", row.number, actor.username)
        await holds.send_pending(self.db, self.link, now=now, actor=actor.username, case_id=row.id)
        await self._start_retrieval(actor, row, now)
        return row

    async def _start_retrieval(self, actor: Actor, row: CaseRow, now: datetime) -> None:
        """Ask the units for the footage (the retrieval step records and sends it)."""
        await request_retrieval(self.db, self.link, case_id=row.id, actor=actor.username, now=now)

    async def refuse(self, actor: Actor, number: str, req: RefuseRequest) -> CaseRow:
        now = self.clock()
        async with self.db.session() as session:
            row = await load_case(session, number, for_update=True)
            self._independent(actor, row, "refuse")
            self._expect(row, "refused", ("requested",), "only a requested case is decided")
            row.status, row.decided_by, row.decided_at = "refused", actor.username, now
            row.refusal_reason = req.reason
            await _record(session, actor.username, "refuse", row, now, reason=req.reason)
            await session.commit()
        log.info("case refused number=%s by=%s", row.number, actor.username)
        return row

    # ------------------------------------------------------------------ the SAR

    async def extend(self, actor: Actor, number: str, req: ExtendRequest) -> CaseRow:
        """Extend a SAR's deadline to `months` further months after the first (1 or 2 in
        all, counted from receipt); a later extension may lengthen it, never shorten it."""
        require_permission(actor, Permission.DECIDE_CASE, "extend a subject access request")
        now = self.clock()
        async with self.db.session() as session:
            row = await load_case(session, number, for_update=True)
            if row.case_type != "subject_access" or row.received_at is None:
                raise CaseRefused(
                    row.number,
                    row.status,
                    "extended",
                    "only a subject access request has a deadline to extend",
                )
            self._expect(
                row,
                "extended",
                ("requested", "approved", "retrieving", "retrieved"),
                "the request has been answered",
            )
            until = extended_by(row.received_at, req.months)
            if row.extended_to is not None and until <= row.extended_to:
                raise CaseRefused(
                    row.number,
                    row.status,
                    "extended",
                    f"it is already extended to {row.extended_to.astimezone(LOCAL_ZONE):%d %b %Y}"
                    f"; the most allowed is {MAX_EXTENSION_MONTHS} further months",
                )
            row.extended_to, row.extension_reason = until, req.reason
            row.reminded_at = row.overdue_at = None
            await _record(
                session,
                actor.username,
                "extend",
                row,
                now,
                months=req.months,
                reason=req.reason,
                extended_to=until.isoformat(),
                due_at=row.due_at.isoformat() if row.due_at else None,
            )
            await session.commit()
        return row

    # ---------------------------------------------------------- outcome, closing

    async def set_outcome(self, actor: Actor, number: str, req: OutcomeRequest) -> CaseRow:
        require_permission(actor, Permission.RECORD_CASE_OUTCOME, "record the outcome of a case")
        now = self.clock()
        async with self.db.session() as session:
            row = await load_case(session, number, for_update=True)
            self._expect(row, "given an outcome", (*CLOSABLE, "requested"), "it is closed")
            before, row.outcome = row.outcome, req.outcome
            await _record(
                session,
                actor.username,
                "outcome",
                row,
                now,
                outcome=req.outcome,
                previous=before,
                note=req.note,
            )
            await session.commit()
        return row

    async def close(self, actor: Actor, number: str, req: CloseRequest | None = None) -> CaseRow:
        """Close the case and release its holds on the units."""
        req = req or CloseRequest()
        require_permission(actor, Permission.DECIDE_CASE, "close a case")
        now = self.clock()
        async with self.db.session() as session:
            row = await load_case(session, number, for_update=True)
            self._expect(row, "closed", CLOSABLE, "a requested case is approved or refused first")
            before = row.status
            row.status, row.closed_by, row.closed_at = "closed", actor.username, now
            await _record(
                session,
                actor.username,
                "close",
                row,
                now,
                previous=before,
                note=req.note,
                outcome=row.outcome,
            )
            await session.commit()
        log.info("case closed number=%s by=%s", row.number, actor.username)
        await holds.send_pending(self.db, self.link, now=now, actor=actor.username, case_id=row.id)
        return row
