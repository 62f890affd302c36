"""The deployment workflow: no recording at a location without an approved, current PIA.

    draft --submit--> submitted --approve--> approved --(planned start)--> active
      |                  |  \\--reject--> rejected                          |
      |                  \\--not_deploy--> not_deployed      (reminder) review_due
      \\--not_deploy--> not_deployed                                  |       |
                                                    renew --> active <-/       |
    approved / active / review_due --revoke--> revoked; --end--> ended <------/

- Approve and reject are for a manager who neither raised nor submitted the request.
- A HIGH residual risk blocks approval until prior consultation with the ICO is recorded.
- Approval and renewal sign an authorization (valid until the review date or the planned
  end, whichever is first) and publish it retained to the unit; revoke and end publish a
  signed revocation in its place. If the broker is down, the message is sent later.
- Every transition is written to the audit log in the transaction that makes it. A step
  the workflow does not allow is refused with a sentence (`DeploymentRefused`).
- A PIA that records the picture its masks were drawn on (its SHA-256) names one the
  control room holds from the unit (kept by `controller.fleet.snapshots`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time
from typing import Any

from sqlalchemy import select

from controller.deployments.authorization import Publisher
from controller.deployments.drafts import DraftSteps, problems, request_data
from controller.deployments.errors import (
    IncompleteRequest,
    InvalidDeployment,
    UnknownDeployment,
)
from controller.deployments.models import (
    ApproveRequest,
    DeploymentPolicy,
    DeploymentRequest,
    DraftStart,
    RenewRequest,
)
from controller.deployments.pia import Evaluation, PriorConsultation, PrivacyImpactAssessment
from controller.deployments.records import DeploymentRecords
from controller.deployments.review_dates import review_due
from controller.deployments.rules import (
    REQUESTERS,
    Actor,
    check_request,
    require_independent,
    require_role,
    require_status,
)
from controller.deployments.signed_steps import SignedSteps
from controller.errors import UnknownUnitError
from controller.store.base import Database, Session, utcnow
from controller.store.deployments import DeploymentRow, get_deployment
from controller.store.fleet import Unit
from controller.store.snapshots import ReferenceSnapshotRecord
from protocol.signing import Signer

__all__ = ["Actor", "DeploymentWorkflow"]

log = logging.getLogger(__name__)


async def _check_picture(session: Session, req: DeploymentRequest) -> None:
    """The PIA's masks were drawn on a picture the control room holds from the unit."""
    sha256 = req.pia.reference_frame
    held = select(ReferenceSnapshotRecord.id).where(
        ReferenceSnapshotRecord.unit_id == req.unit_id, ReferenceSnapshotRecord.sha256 == sha256
    )
    if sha256 is not None and await session.scalar(held.limit(1)) is None:
        raise InvalidDeployment(
            f"the privacy masks were drawn on a picture (SHA-256 {sha256}) that the control "
            f"room does not hold from {req.unit_id}: ask the unit for a picture and draw the "
            "masks on it"
        )


class DeploymentWorkflow:
    """Every step of a deployment. It holds `records` (database, policy, clock, audit),
    `signed` (the steps that sign and publish: approve, renew, revoke, end) and `drafts`
    (a request filled in step by step, and a rejected one copied to be revised)."""

    def __init__(
        self,
        db: Database,
        *,
        signer: Signer | None,
        link: Publisher | None = None,
        policy: DeploymentPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.records = DeploymentRecords(db, policy=policy, clock=clock)
        self.signed = SignedSteps(self.records, signer=signer, link=link)
        self.drafts = DraftSteps(self.records)

    @property
    def db(self) -> Database:
        return self.records.db

    @property
    def policy(self) -> DeploymentPolicy:
        return self.records.policy

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.records.clock

    # ------------------------------------------------------------------ requests

    async def create(self, actor: Actor, req: DeploymentRequest) -> DeploymentRow:
        require_role(actor, "raise a deployment request", REQUESTERS)
        check_request(self.policy, req)
        now = self.clock()
        async with self.db.session() as session:
            if await session.get(Unit, req.unit_id) is None:
                raise UnknownUnitError(req.unit_id)
            await _check_picture(session, req)
            location = await self.records.location(session, req.location_id)
            if location.retired_at is not None:
                raise InvalidDeployment(f"location {location.name!r} is retired")
            row = DeploymentRow(
                id=f"dep-{uuid.uuid4().hex[:12]}",
                status="draft",
                created_by=actor.username,
                created_at=now,
                decision_reason="",
                end_reason="",
                renewals=0,
                evaluation=None,
            )
            self._fill(row, req, now)
            session.add(row)
            await session.flush()
            await self.records.audit(session, actor.username, "create", row)
            await session.commit()
        log.info("deployment created id=%s unit=%s by=%s", row.id, row.unit_id, actor.username)
        return row

    def _fill(self, row: DeploymentRow, req: DeploymentRequest, now: datetime) -> None:
        row.unit_id = req.unit_id
        row.location_id = req.location_id
        row.planned_start = req.planned_start.astimezone(UTC)
        row.planned_end = req.planned_end.astimezone(UTC)
        row.review_due = review_due(self.policy, row.planned_start, req.review_by, now)
        row.retention_days = req.pia.retention_days
        row.residual_risk = req.pia.residual_risk.value
        row.referral_source = req.pia.referral.source.value
        row.pia = req.pia.model_dump(mode="json")
        row.profile = req.profile.model_dump(mode="json")
        row.updated_at = now

    async def update(
        self, actor: Actor, deployment_id: str, req: DeploymentRequest
    ) -> DeploymentRow:
        require_role(actor, "edit a deployment request", REQUESTERS)
        check_request(self.policy, req)
        now = self.clock()
        async with self.db.session() as session:
            row = await self.records.load(session, deployment_id)
            require_status(row, "edited", ("draft",), "only a draft can be edited")
            if await session.get(Unit, req.unit_id) is None:
                raise UnknownUnitError(req.unit_id)
            await _check_picture(session, req)
            await self.records.location(session, req.location_id)
            self._fill(row, req, now)
            await self.records.audit(session, actor.username, "update", row)
            await session.commit()
        return row

    async def submit(self, actor: Actor, deployment_id: str) -> DeploymentRow:
        """Submit a draft for a manager's decision: only once its request and PIA are
        complete (`IncompleteRequest` names each field that is not), with the DPO's
        advice recorded."""
        require_role(actor, "submit a deployment request", REQUESTERS)
        now = self.clock()
        async with self.db.session() as session:
            row = await self.records.load(session, deployment_id)
            require_status(row, "submitted", ("draft",), "only a draft can be submitted")
            missing = problems(row)
            if missing:
                raise IncompleteRequest(row.id, missing)
            req = DeploymentRequest.model_validate(request_data(row))
            check_request(self.policy, req)
            await _check_picture(session, req)
            # The PIA as validated: typed answers in their stored form, figures derived.
            row.pia = req.pia.model_dump(mode="json")
            row.residual_risk = req.pia.residual_risk.value
            row.referral_source = req.pia.referral.source.value
            row.retention_days = req.pia.retention_days
            row.status, row.submitted_by, row.submitted_at, row.updated_at = (
                "submitted", actor.username, now, now,
            )  # fmt: skip
            await self.records.audit(
                session, actor.username, "submit", row, residual_risk=row.residual_risk
            )
            await session.commit()
        return row

    # ------------------------------------------------------------------ drafts

    async def start_draft(
        self, actor: Actor, start: DraftStart, pia: Mapping[str, Any] | None = None
    ) -> DeploymentRow:
        """A draft with its unit, place and dates; its PIA is filled in step by step."""
        return await self.drafts.start(actor, start, pia)

    async def save_draft(
        self,
        actor: Actor,
        deployment_id: str,
        *,
        start: DraftStart | None = None,
        pia: Mapping[str, Any] | None = None,
        step: str = "",
    ) -> DeploymentRow:
        """Save one step of a draft, complete or not."""
        return await self.drafts.save(actor, deployment_id, start=start, pia=pia, step=step)

    async def copy_rejected(self, actor: Actor, deployment_id: str) -> DeploymentRow:
        """A new draft from a rejected request, to be revised and submitted again."""
        return await self.drafts.copy(actor, deployment_id)

    async def record_prior_consultation(
        self, actor: Actor, deployment_id: str, consultation: PriorConsultation
    ) -> DeploymentRow:
        require_role(actor, "record prior consultation", REQUESTERS)
        now = self.clock()
        async with self.db.session() as session:
            row = await self.records.load(session, deployment_id)
            require_status(
                row, "given a prior consultation", ("draft", "submitted"),
                "prior consultation is recorded before the decision",
            )  # fmt: skip
            pc = PriorConsultation.model_validate(consultation.model_dump())
            if row.status == "draft":  # a draft's PIA may not be complete yet
                row.pia = {**(row.pia or {}), "prior_consultation": pc.model_dump(mode="json")}
            else:
                pia = PrivacyImpactAssessment.model_validate(row.pia)
                updated = pia.model_copy(update={"prior_consultation": pc})
                row.pia = updated.model_dump(mode="json")
            row.ico_consulted_on = datetime.combine(pc.consulted_on, time(0), UTC)
            row.updated_at = now
            await self.records.audit(
                session, actor.username, "prior_consultation", row, reference=pc.reference,
                consulted_on=pc.consulted_on.isoformat(),
            )  # fmt: skip
            await session.commit()
        return row

    # ------------------------------------------------------------------ decisions

    async def approve(
        self, actor: Actor, deployment_id: str, req: ApproveRequest | None = None
    ) -> DeploymentRow:
        return await self.signed.approve(actor, deployment_id, req)

    async def revoke(self, actor: Actor, deployment_id: str, reason: str) -> DeploymentRow:
        return await self.signed.revoke(actor, deployment_id, reason)

    async def end(self, actor: Actor, deployment_id: str, reason: str) -> DeploymentRow:
        return await self.signed.end(actor, deployment_id, reason)

    async def renew(self, actor: Actor, deployment_id: str, req: RenewRequest) -> DeploymentRow:
        """A fresh review of the PIA: a new review date and a fresh authorization."""
        return await self.signed.renew(actor, deployment_id, req)

    async def reject(self, actor: Actor, deployment_id: str, reason: str) -> DeploymentRow:
        now = self.clock()
        async with self.db.session() as session:
            row = await self.records.load(session, deployment_id)
            require_status(row, "rejected", ("submitted",), "only a submitted request is decided")
            require_independent(actor, row, "reject")
            row.status, row.decided_by, row.decided_at = "rejected", actor.username, now
            row.decision_reason, row.updated_at = reason, now
            await self.records.audit(session, actor.username, "reject", row, reason=reason)
            await session.commit()
        return row

    async def decide_not_to_deploy(
        self, actor: Actor, deployment_id: str, reason: str
    ) -> DeploymentRow:
        """Record a decision NOT to deploy (e.g. the PIA shows a less intrusive option)."""
        require_role(actor, "record a decision not to deploy", REQUESTERS)
        now = self.clock()
        async with self.db.session() as session:
            row = await self.records.load(session, deployment_id)
            require_status(
                row, "closed as not deployed", ("draft", "submitted"),
                "the decision not to deploy is taken before approval (revoke or end it instead)",
            )  # fmt: skip
            row.status, row.decided_by, row.decided_at = "not_deployed", actor.username, now
            row.decision_reason, row.updated_at = reason, now
            await self.records.audit(session, actor.username, "not_deployed", row, reason=reason)
            await session.commit()
        return row

    # ------------------------------------------------------------------ after the end

    async def attach_evaluation(
        self, actor: Actor, deployment_id: str, evaluation: Evaluation
    ) -> DeploymentRow:
        require_role(actor, "attach an evaluation", REQUESTERS)
        now = self.clock()
        async with self.db.session() as session:
            row = await self.records.load(session, deployment_id)
            require_status(
                row, "evaluated", ("ended", "revoked"), "the evaluation comes at the end"
            )
            data = Evaluation.model_validate(evaluation.model_dump())
            row.evaluation = data.model_copy(update={"evaluated_at": now}).model_dump(mode="json")
            row.updated_at = now
            await self.records.audit(session, actor.username, "evaluation", row)
            await session.commit()
        return row

    async def get(self, deployment_id: str) -> DeploymentRow:
        async with self.db.session() as session:
            row = await get_deployment(session, deployment_id)
            if row is None:
                raise UnknownDeployment(deployment_id)
            return row
