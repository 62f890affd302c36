"""A deployment request filled in step by step, kept as a draft between the steps.

A draft exists once its unit, place and dates are given (`DraftStart`); its PIA is then
filled in one step at a time and saved as it stands, complete or not, so nothing typed is
lost. Each step holds some of the PIA's sections (`STEPS`); `problems` says, field by
field, what still keeps the request from being submitted, and `step_problems` which of
those belong to one step. Submitting (`DeploymentWorkflow.submit`) takes the draft only
when nothing is left.

A rejected request is revised by copying it into a new draft (`DraftSteps.copy`): the
copy names the request it revises in the audit log, and the rejected one its revision.

    draft = await flow.start_draft(actor, DraftStart(unit_id="cam-01", ...))
    await flow.save_draft(actor, draft.id, pia={**draft.pia, "purpose": "..."})
    problems(draft)        # {"pia.referral": "This is required", ...}
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import TypeAdapter, ValidationError

from controller import audit
from controller.deployments.errors import InvalidDeployment
from controller.deployments.models import DeploymentRequest, DraftStart
from controller.deployments.pia import ReferralSource, Risk, RiskLevel
from controller.deployments.records import DeploymentRecords
from controller.deployments.review_dates import review_due
from controller.deployments.rules import REQUESTERS, Actor, require_role, require_status
from controller.errors import UnknownUnitError
from controller.store.base import Database
from controller.store.deployments import DeploymentRow
from controller.store.fleet import Unit

__all__ = [
    "REQUEST_FIELDS",
    "STEPS",
    "DraftSteps",
    "Revisions",
    "Step",
    "draft_residual_risk",
    "problems",
    "request_data",
    "revisions",
    "step_of",
    "step_problems",
]

#: The request's own fields (step "request"); everything else is in the PIA.
REQUEST_FIELDS = tuple(DraftStart.model_fields)
DEFAULT_RETENTION_DAYS = 31


@dataclass(frozen=True, slots=True)
class Step:
    """One step of the request: `key` names it, `fields` are the request's fields (step
    "request") or the PIA's top-level sections it holds."""

    key: str
    title: str
    fields: tuple[str, ...]
    intro: str


STEPS: tuple[Step, ...] = (
    Step(
        "request",
        "Unit, place and dates",
        REQUEST_FIELDS,
        "Which unit goes where, and when it may record.",
    ),
    Step(
        "need",
        "Why the camera is needed",
        (
            "referral",
            "evidence_of_need",
            "purpose",
            "pressing_need",
            "alternatives_considered",
            "lawful_basis",
            "lawful_basis_detail",
        ),
        "Who asked for it, the crime and anti-social behaviour figures that show the need, "
        "and the law the council relies on.",
    ),
    Step(
        "privacy",
        "Privacy: who and what is in view",
        (
            "affected",
            "collateral_intrusion",
            "reference_frame",
            "masks",
            "signage",
            "retention_days",
        ),
        "Who the camera affects, the homes, gardens or other private places in its view and "
        "the masks drawn over them, the signs, and how long footage is kept.",
    ),
    Step(
        "people",
        "Consultation and equality",
        ("consultation", "equality"),
        "Who was consulted, and the impact on each of the nine protected characteristics.",
    ),
    Step(
        "risks",
        "Risks and measures",
        ("risks",),
        "Each risk to people, how likely and how severe, and the measures that reduce it.",
    ),
    Step(
        "advice",
        "Advice: the DPO, and the ICO at high risk",
        ("dpo_advice", "prior_consultation"),
        "The data protection officer's advice is needed to submit. Prior consultation "
        "with the ICO is needed only when the residual risk is high.",
    ),
)
_STEP_OF_FIELD = {
    (f"pia.{name}" if step.key != "request" else name): step.key
    for step in STEPS
    for name in step.fields
}


def step_of(path: str) -> str | None:
    """The step holding the field at `path` (dotted, in the request); None for a problem
    of the request as a whole."""
    parts = path.split(".")
    for length in (2, 1):
        key = ".".join(parts[:length])
        if key in _STEP_OF_FIELD:
            return _STEP_OF_FIELD[key]
    return None


def request_data(row: DeploymentRow) -> dict[str, Any]:
    """The draft's request and PIA as a person entered them, in the request's shape."""
    return {
        "unit_id": row.unit_id,
        "location_id": row.location_id,
        "planned_start": row.planned_start.isoformat(),
        "planned_end": row.planned_end.isoformat(),
        "review_by": _review_day(row.review_due).isoformat(),
        "profile": row.profile,
        "pia": dict(row.pia or {}),
    }


def _review_day(due: datetime) -> date:
    """The day a review deadline falls on: a deadline at midnight ends the day before."""
    return (due - timedelta(microseconds=1)).date()


def _sentence_path(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc if not str(p).startswith("function-"))


def _problems_of(exc: ValidationError) -> dict[str, str]:
    found: dict[str, str] = {}
    for error in exc.errors():
        path = _sentence_path(error.get("loc", ()))
        message = str(error.get("msg", "not valid")).removeprefix("Value error, ")
        if error.get("type") == "missing":
            message = "This is required"
        found.setdefault(path, message)
    return found


def problems(row: DeploymentRow) -> dict[str, str]:
    """What keeps the draft from being submitted, by field (dotted path in the request;
    "" for the request as a whole): the request's and the PIA's own rules, and the
    data protection officer's advice, which a request is submitted with."""
    try:
        req = DeploymentRequest.model_validate(request_data(row))
    except ValidationError as exc:
        found = _problems_of(exc)
        advised = bool((row.pia or {}).get("dpo_advice"))
    else:
        found, advised = {}, req.pia.dpo_advice is not None
    if not advised:
        found.setdefault(
            "pia.dpo_advice",
            "The data protection officer's advice must be recorded before the request is submitted",
        )
    return found


def step_problems(found: Mapping[str, str], step: str) -> dict[str, str]:
    """Those of `found` that belong to `step` ("review": those of the request as a
    whole)."""
    wanted = None if step == "review" else step
    return {path: text for path, text in found.items() if step_of(path) == wanted}


_RISKS = TypeAdapter(list[Risk])


def draft_residual_risk(pia: Mapping[str, Any]) -> RiskLevel | None:
    """The highest residual risk of the draft's risks, once they are all assessed."""
    try:
        risks = _RISKS.validate_python(pia.get("risks"))
    except ValidationError:
        return None
    if not risks:
        return None
    return max((r.residual for r in risks), key=lambda level: level.rank)


def _referral_source(pia: Mapping[str, Any]) -> str:
    referral = pia.get("referral")
    source = referral.get("source") if isinstance(referral, Mapping) else None
    try:
        return ReferralSource(str(source)).value
    except ValueError:
        return ""


def _retention(pia: Mapping[str, Any]) -> int:
    try:
        days = int(pia.get("retention_days", DEFAULT_RETENTION_DAYS))
    except (TypeError, ValueError):
        return DEFAULT_RETENTION_DAYS
    return days if 1 <= days <= 3650 else DEFAULT_RETENTION_DAYS


@dataclass(frozen=True, slots=True)
class Revisions:
    """The rejected request a draft revises, and the draft that revises a rejected one."""

    revises: str | None
    revised_as: str | None


async def revisions(db: Database, deployment_id: str) -> Revisions:
    """Read from the deployment's entries in the audit log."""
    page = await audit.entries(db, limit=50, subject=f"deployment:{deployment_id}")
    revises = revised_as = None
    for record in page.records:
        if record.action == "deployment.create" and record.details.get("revises"):
            revises = str(record.details["revises"])
        if record.action == "deployment.revised" and revised_as is None:
            revised_as = str(record.details.get("revised_as", "")) or None
    return Revisions(revises, revised_as)


class DraftSteps:
    """Start a draft, save its steps, copy a rejected request into a new draft. Each step
    reads and writes through `records` and is audited in its transaction."""

    def __init__(self, records: DeploymentRecords) -> None:
        self.records = records

    def _place(self, row: DeploymentRow, start: DraftStart, now: datetime) -> None:
        row.unit_id, row.location_id = start.unit_id, start.location_id
        row.planned_start = start.planned_start.astimezone(UTC)
        row.planned_end = start.planned_end.astimezone(UTC)
        row.review_due = review_due(self.records.policy, row.planned_start, start.review_by, now)
        row.profile = start.profile.model_dump(mode="json")

    def _figures(self, row: DeploymentRow, pia: Mapping[str, Any]) -> None:
        """The columns the lists show, as far as the draft's PIA tells them."""
        residual = draft_residual_risk(pia)
        row.residual_risk = "" if residual is None else residual.value
        row.referral_source = _referral_source(pia)
        row.retention_days = _retention(pia)

    async def _check_start(self, session: Any, start: DraftStart) -> None:
        if await session.get(Unit, start.unit_id) is None:
            raise UnknownUnitError(start.unit_id)
        location = await self.records.location(session, start.location_id)
        if location.retired_at is not None:
            raise InvalidDeployment(f"location {location.name!r} is retired")

    async def start(
        self, actor: Actor, start: DraftStart, pia: Mapping[str, Any] | None = None
    ) -> DeploymentRow:
        """A new draft for `start`, its PIA `pia` as far as it goes (empty by default)."""
        require_role(actor, "raise a deployment request", REQUESTERS)
        now = self.records.clock()
        answers = dict(pia or {})
        async with self.records.db.session() as session:
            await self._check_start(session, start)
            row = DeploymentRow(
                id=f"dep-{uuid.uuid4().hex[:12]}",
                status="draft",
                created_by=actor.username,
                created_at=now,
                updated_at=now,
                decision_reason="",
                end_reason="",
                renewals=0,
                evaluation=None,
                pia=answers,
            )
            self._place(row, start, now)
            self._figures(row, answers)
            session.add(row)
            await session.flush()
            await self.records.audit(session, actor.username, "create", row, draft=True)
            await session.commit()
        return row

    async def save(
        self,
        actor: Actor,
        deployment_id: str,
        *,
        start: DraftStart | None = None,
        pia: Mapping[str, Any] | None = None,
        step: str = "",
    ) -> DeploymentRow:
        """Save a step of a draft: its unit, place and dates (`start`) and/or its PIA as
        entered so far (`pia`, replacing the stored one)."""
        require_role(actor, "edit a deployment request", REQUESTERS)
        now = self.records.clock()
        async with self.records.db.session() as session:
            row = await self.records.load(session, deployment_id)
            require_status(row, "edited", ("draft",), "only a draft can be edited")
            if start is not None:
                await self._check_start(session, start)
                self._place(row, start, now)
            if pia is not None:
                row.pia = dict(pia)
                self._figures(row, pia)
            row.updated_at = now
            await self.records.audit(session, actor.username, "update", row, step=step)
            await session.commit()
        return row

    async def copy(self, actor: Actor, deployment_id: str) -> DeploymentRow:
        """A new draft with the request and PIA of the rejected request `deployment_id`,
        for its requester to revise and submit again."""
        require_role(actor, "revise a deployment request", REQUESTERS)
        now = self.records.clock()
        async with self.records.db.session() as session:
            old = await self.records.load(session, deployment_id)
            require_status(
                old, "copied", ("rejected",),
                "only a rejected request is copied to be revised",
            )  # fmt: skip
            row = DeploymentRow(
                id=f"dep-{uuid.uuid4().hex[:12]}",
                status="draft",
                created_by=actor.username,
                created_at=now,
                updated_at=now,
                decision_reason="",
                end_reason="",
                renewals=0,
                evaluation=None,
                unit_id=old.unit_id,
                location_id=old.location_id,
                planned_start=old.planned_start,
                planned_end=old.planned_end,
                review_due=review_due(self.records.policy, old.planned_start, None, now),
                profile=dict(old.profile or {}),
                pia=dict(old.pia or {}),
                residual_risk=old.residual_risk,
                referral_source=old.referral_source,
                retention_days=old.retention_days,
            )
            session.add(row)
            await session.flush()
            await self.records.audit(session, actor.username, "create", row, revises=old.id)
            await self.records.audit(session, actor.username, "revised", old, revised_as=row.id)
            await session.commit()
        return row
