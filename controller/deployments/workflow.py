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
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from controller import audit
from controller.deployments.authorization import (
    Publisher,
    issue_authorization,
    issue_revocation,
    publish_pending,
)
from controller.deployments.errors import (
    ApprovalBlocked,
    DeploymentRefused,
    InvalidDeployment,
    NotPermitted,
    UnknownDeployment,
    UnknownLocation,
)
from controller.deployments.models import (
    ApproveRequest,
    DeploymentPolicy,
    DeploymentRequest,
    RenewRequest,
)
from controller.deployments.pia import (
    Evaluation,
    PriorConsultation,
    PrivacyImpactAssessment,
    RiskLevel,
)
from controller.errors import UnknownUnitError
from controller.store.base import Database, utcnow
from controller.store.deployments import (
    AuthorizationRow,
    DeploymentRow,
    LocationRow,
    get_deployment,
    live_on_unit,
)
from controller.store.fleet import Unit
from protocol.signing import Signer

__all__ = ["Actor", "DeploymentWorkflow"]

log = logging.getLogger(__name__)

MANAGER, OPERATOR = "manager", "operator"
REQUESTERS = (MANAGER, OPERATOR)


class Actor(Protocol):
    """Who acts: the API's signed-in user, or any object with these two attributes."""

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


def _day_end(day: date) -> datetime:
    """A review date means 'by the end of that day' (UTC)."""
    return datetime.combine(day + timedelta(days=1), time(0), UTC)


class DeploymentWorkflow:
    def __init__(
        self,
        db: Database,
        *,
        signer: Signer | None,
        link: Publisher | None = None,
        policy: DeploymentPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db = db
        self.signer = signer
        self.link = link
        self.policy = policy or DeploymentPolicy()
        self.clock = clock

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _role(actor: Actor, action: str, roles: tuple[str, ...]) -> None:
        if str(actor.role) not in roles:
            raise NotPermitted(actor.username, action, f"it needs the role {' or '.join(roles)}")

    async def _load(self, session: AsyncSession, deployment_id: str) -> DeploymentRow:
        row = await get_deployment(session, deployment_id, for_update=True)
        if row is None:
            raise UnknownDeployment(deployment_id)
        return row

    @staticmethod
    def _expect(row: DeploymentRow, action: str, allowed: tuple[str, ...], why: str) -> None:
        if row.status not in allowed:
            raise DeploymentRefused(row.id, row.status, action, why)

    async def _audit(
        self, session: AsyncSession, actor: str, action: str, row: DeploymentRow, **details: Any
    ) -> None:
        details.setdefault("status", row.status)
        details.setdefault("unit_id", row.unit_id)
        details.setdefault("location_id", row.location_id)
        await audit.record(
            session, actor=actor, action=f"deployment.{action}", subject=f"deployment:{row.id}",
            details=details, at=self.clock(),
        )  # fmt: skip

    def _review_due(self, start: datetime, review_by: date | None, now: datetime) -> datetime:
        base = max(start, now)
        if review_by is None:
            return base + timedelta(days=self.policy.review_default_days)
        due = _day_end(review_by)
        latest = base + timedelta(days=self.policy.review_max_days)
        if due <= now:
            raise InvalidDeployment(f"the review date {review_by} has already passed")
        if due > latest + timedelta(days=1):
            raise InvalidDeployment(
                f"the review date {review_by} is more than {self.policy.review_max_days} days "
                "ahead (the policy's maximum)"
            )
        return min(due, latest)

    def _check_request(self, req: DeploymentRequest) -> None:
        if req.pia.retention_days > self.policy.retention_max_days:
            raise InvalidDeployment(
                f"retention of {req.pia.retention_days} days exceeds the policy maximum of "
                f"{self.policy.retention_max_days}"
            )

    async def _location(self, session: AsyncSession, location_id: int) -> LocationRow:
        location = await session.get(LocationRow, location_id)
        if location is None:
            raise UnknownLocation(location_id)
        return location

    def _signer(self, row: DeploymentRow, action: str) -> Signer:
        if self.signer is None:
            raise DeploymentRefused(
                row.id, row.status, action,
                "the controller has no signing key (signing_key_file), so it cannot sign the "
                "unit's authorization",
            )  # fmt: skip
        return self.signer

    async def _publish(self) -> None:
        await publish_pending(self.db, self.link)

    # ------------------------------------------------------------------ requests

    async def create(self, actor: Actor, req: DeploymentRequest) -> DeploymentRow:
        self._role(actor, "raise a deployment request", REQUESTERS)
        self._check_request(req)
        now = self.clock()
        async with self.db.session() as session:
            if await session.get(Unit, req.unit_id) is None:
                raise UnknownUnitError(req.unit_id)
            location = await self._location(session, req.location_id)
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
            await self._audit(session, actor.username, "create", row)
            await session.commit()
        log.info("deployment created id=%s unit=%s by=%s", row.id, row.unit_id, actor.username)
        return row

    def _fill(self, row: DeploymentRow, req: DeploymentRequest, now: datetime) -> None:
        row.unit_id = req.unit_id
        row.location_id = req.location_id
        row.planned_start = req.planned_start.astimezone(UTC)
        row.planned_end = req.planned_end.astimezone(UTC)
        row.review_due = self._review_due(row.planned_start, req.review_by, now)
        row.retention_days = req.pia.retention_days
        row.residual_risk = req.pia.residual_risk.value
        row.referral_source = req.pia.referral.source.value
        row.pia = req.pia.model_dump(mode="json")
        row.profile = req.profile.model_dump(mode="json")
        row.updated_at = now

    async def update(
        self, actor: Actor, deployment_id: str, req: DeploymentRequest
    ) -> DeploymentRow:
        self._role(actor, "edit a deployment request", REQUESTERS)
        self._check_request(req)
        now = self.clock()
        async with self.db.session() as session:
            row = await self._load(session, deployment_id)
            self._expect(row, "edited", ("draft",), "only a draft can be edited")
            if await session.get(Unit, req.unit_id) is None:
                raise UnknownUnitError(req.unit_id)
            await self._location(session, req.location_id)
            self._fill(row, req, now)
            await self._audit(session, actor.username, "update", row)
            await session.commit()
        return row

    async def submit(self, actor: Actor, deployment_id: str) -> DeploymentRow:
        self._role(actor, "submit a deployment request", REQUESTERS)
        now = self.clock()
        async with self.db.session() as session:
            row = await self._load(session, deployment_id)
            self._expect(row, "submitted", ("draft",), "only a draft can be submitted")
            pia = PrivacyImpactAssessment.model_validate(row.pia)
            if pia.dpo_advice is None:
                raise DeploymentRefused(
                    row.id, row.status, "submitted",
                    "the data protection officer's advice must be recorded in the PIA first",
                )  # fmt: skip
            row.status, row.submitted_by, row.submitted_at, row.updated_at = (
                "submitted", actor.username, now, now,
            )  # fmt: skip
            await self._audit(
                session, actor.username, "submit", row, residual_risk=row.residual_risk
            )
            await session.commit()
        return row

    async def record_prior_consultation(
        self, actor: Actor, deployment_id: str, consultation: PriorConsultation
    ) -> DeploymentRow:
        self._role(actor, "record prior consultation", REQUESTERS)
        now = self.clock()
        async with self.db.session() as session:
            row = await self._load(session, deployment_id)
            self._expect(
                row, "given a prior consultation", ("draft", "submitted"),
                "prior consultation is recorded before the decision",
            )  # fmt: skip
            pia = PrivacyImpactAssessment.model_validate(row.pia)
            pc = PriorConsultation.model_validate(consultation.model_dump())
            row.pia = pia.model_copy(update={"prior_consultation": pc}).model_dump(mode="json")
            row.ico_consulted_on = datetime.combine(pc.consulted_on, time(0), UTC)
            row.updated_at = now
            await self._audit(
                session, actor.username, "prior_consultation", row, reference=pc.reference,
                consulted_on=pc.consulted_on.isoformat(),
            )  # fmt: skip
            await session.commit()
        return row

    # ------------------------------------------------------------------ decisions

    def _independent(self, actor: Actor, row: DeploymentRow, action: str) -> None:
        self._role(actor, f"{action} a deployment", (MANAGER,))
        if actor.username in (row.submitted_by, row.created_by):
            raise NotPermitted(
                actor.username, f"{action} deployment {row.id}",
                "a manager cannot decide a request they raised or submitted; another manager "
                "must decide it",
            )  # fmt: skip

    @staticmethod
    def _needs_consultation(row: DeploymentRow, pia: PrivacyImpactAssessment, action: str) -> None:
        if pia.residual_risk is RiskLevel.HIGH and pia.prior_consultation is None:
            raise ApprovalBlocked(
                row.id, row.status, action,
                "its residual risk is HIGH: record prior consultation with the ICO first",
            )  # fmt: skip

    async def approve(
        self, actor: Actor, deployment_id: str, req: ApproveRequest | None = None
    ) -> DeploymentRow:
        req = req or ApproveRequest()
        now = self.clock()
        async with self.db.session() as session:
            row = await self._load(session, deployment_id)
            self._expect(row, "approved", ("submitted",), "only a submitted request is decided")
            self._independent(actor, row, "approve")
            pia = PrivacyImpactAssessment.model_validate(row.pia)
            self._needs_consultation(row, pia, "approved")
            signer = self._signer(row, "approved")
            if row.planned_end <= now:
                raise DeploymentRefused(
                    row.id, row.status, "approved", "its planned end has passed"
                )
            others = await live_on_unit(session, row.unit_id, excluding=row.id)
            if others:
                raise DeploymentRefused(
                    row.id, row.status, "approved",
                    f"unit {row.unit_id} is already deployed under {others[0].id}; end it first",
                )  # fmt: skip
            location = await self._location(session, row.location_id)
            if location.retired_at is not None:
                raise DeploymentRefused(row.id, row.status, "approved", "its location is retired")
            if req.review_by is not None:
                row.review_due = self._review_due(row.planned_start, req.review_by, now)
            row.status = "active" if row.planned_start <= now else "approved"
            row.decided_by, row.decided_at, row.decision_reason = actor.username, now, req.notes
            row.updated_at = now
            auth = issue_authorization(
                session, signer=signer, link=self.link, deployment=row, location=location,
                actor=actor.username, now=now, valid_from=row.planned_start,
                masks=pia.mask_polygons(),
            )  # fmt: skip
            await self._audit(
                session, actor.username, "approve", row, authorization_id=auth.authorization_id,
                valid_until=auth.valid_until.isoformat(), review_due=row.review_due.isoformat(),
                residual_risk=row.residual_risk, notes=req.notes,
            )  # fmt: skip
            await session.commit()
        log.info("deployment approved id=%s unit=%s by=%s", row.id, row.unit_id, actor.username)
        await self._publish()
        return row

    async def reject(self, actor: Actor, deployment_id: str, reason: str) -> DeploymentRow:
        now = self.clock()
        async with self.db.session() as session:
            row = await self._load(session, deployment_id)
            self._expect(row, "rejected", ("submitted",), "only a submitted request is decided")
            self._independent(actor, row, "reject")
            row.status, row.decided_by, row.decided_at = "rejected", actor.username, now
            row.decision_reason, row.updated_at = reason, now
            await self._audit(session, actor.username, "reject", row, reason=reason)
            await session.commit()
        return row

    async def decide_not_to_deploy(
        self, actor: Actor, deployment_id: str, reason: str
    ) -> DeploymentRow:
        """Record a decision NOT to deploy (e.g. the PIA shows a less intrusive option)."""
        self._role(actor, "record a decision not to deploy", REQUESTERS)
        now = self.clock()
        async with self.db.session() as session:
            row = await self._load(session, deployment_id)
            self._expect(
                row, "closed as not deployed", ("draft", "submitted"),
                "the decision not to deploy is taken before approval (revoke or end it instead)",
            )  # fmt: skip
            row.status, row.decided_by, row.decided_at = "not_deployed", actor.username, now
            row.decision_reason, row.updated_at = reason, now
            await self._audit(session, actor.username, "not_deployed", row, reason=reason)
            await session.commit()
        return row

    # ------------------------------------------------------------------ live deployments

    async def _withdraw(
        self, actor: Actor, deployment_id: str, *, action: str, status: str, reason: str
    ) -> DeploymentRow:
        now = self.clock()
        async with self.db.session() as session:
            row = await self._load(session, deployment_id)
            verb = "revoked" if action == "revoke" else "ended"
            self._expect(
                row, verb, ("approved", "active", "review_due"),
                "it holds no authorization (reject or close the request instead)",
            )  # fmt: skip
            signer = self._signer(row, verb)
            row.status, row.ended_at, row.ended_by = status, now, actor.username
            row.end_reason, row.updated_at = reason, now
            revocation_id = None
            if row.authorization_id is not None:
                auth = await session.get(AuthorizationRow, row.authorization_id)
                if auth is not None and auth.revoked_at is None:
                    revocation = issue_revocation(
                        session, signer=signer, link=self.link, authorization=auth,
                        actor=actor.username, reason=f"{verb}: {reason}", now=now,
                    )  # fmt: skip
                    revocation_id = revocation.revocation_id
            row.authorized_until = min(row.authorized_until or now, now)
            await self._audit(
                session, actor.username, action, row, reason=reason,
                authorization_id=row.authorization_id, revocation_id=revocation_id,
            )  # fmt: skip
            await session.commit()
        log.info("deployment %s id=%s unit=%s by=%s", verb, row.id, row.unit_id, actor.username)
        await self._publish()
        return row

    async def revoke(self, actor: Actor, deployment_id: str, reason: str) -> DeploymentRow:
        self._role(actor, "revoke a deployment", (MANAGER,))
        return await self._withdraw(
            actor, deployment_id, action="revoke", status="revoked", reason=reason
        )

    async def end(self, actor: Actor, deployment_id: str, reason: str) -> DeploymentRow:
        self._role(actor, "end a deployment", REQUESTERS)
        return await self._withdraw(
            actor, deployment_id, action="end", status="ended", reason=reason
        )

    async def renew(self, actor: Actor, deployment_id: str, req: RenewRequest) -> DeploymentRow:
        """A fresh review of the PIA: a new review date and a fresh authorization."""
        self._role(actor, "renew a deployment", (MANAGER,))
        now = self.clock()
        async with self.db.session() as session:
            row = await self._load(session, deployment_id)
            self._expect(
                row, "renewed", ("active", "review_due"), "only a live deployment is renewed"
            )
            pia = req.pia or PrivacyImpactAssessment.model_validate(row.pia)
            if pia.retention_days > self.policy.retention_max_days:
                raise InvalidDeployment("retention exceeds the policy maximum")
            self._needs_consultation(row, pia, "renewed")
            signer = self._signer(row, "renewed")
            if req.planned_end is not None:
                if req.planned_end <= now:
                    raise InvalidDeployment("the new planned end has already passed")
                row.planned_end = req.planned_end.astimezone(UTC)
            row.pia, row.residual_risk = pia.model_dump(mode="json"), pia.residual_risk.value
            row.retention_days = pia.retention_days
            row.review_due = self._review_due(now, req.review_by, now)
            row.status, row.review_reminded_at, row.lapsed_at = "active", None, None
            row.renewals += 1
            row.updated_at = now
            location = await self._location(session, row.location_id)
            auth = issue_authorization(
                session, signer=signer, link=self.link, deployment=row, location=location,
                actor=actor.username, now=now, valid_from=min(now, row.planned_start),
                masks=pia.mask_polygons(),
            )  # fmt: skip
            await self._audit(
                session, actor.username, "renew", row, authorization_id=auth.authorization_id,
                review_due=row.review_due.isoformat(), notes=req.review_notes,
                valid_until=auth.valid_until.isoformat(),
            )  # fmt: skip
            await session.commit()
        await self._publish()
        return row

    async def attach_evaluation(
        self, actor: Actor, deployment_id: str, evaluation: Evaluation
    ) -> DeploymentRow:
        self._role(actor, "attach an evaluation", REQUESTERS)
        now = self.clock()
        async with self.db.session() as session:
            row = await self._load(session, deployment_id)
            self._expect(row, "evaluated", ("ended", "revoked"), "the evaluation comes at the end")
            data = Evaluation.model_validate(evaluation.model_dump())
            row.evaluation = data.model_copy(update={"evaluated_at": now}).model_dump(mode="json")
            row.updated_at = now
            await self._audit(session, actor.username, "evaluation", row)
            await session.commit()
        return row

    async def get(self, deployment_id: str) -> DeploymentRow:
        async with self.db.session() as session:
            row = await get_deployment(session, deployment_id)
            if row is None:
                raise UnknownDeployment(deployment_id)
            return row
