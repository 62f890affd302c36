"""The workflow steps that sign and publish to the unit: approval and renewal issue a
signed authorization, revoke and end a signed revocation in its place. Each is written in
the transaction that makes the step, then published (later, if the broker is down)."""

from __future__ import annotations

import logging
from datetime import UTC

from controller.deployments.authorization import (
    Publisher,
    issue_authorization,
    issue_revocation,
    publish_pending,
)
from controller.deployments.errors import DeploymentRefused, InvalidDeployment
from controller.deployments.models import ApproveRequest, RenewRequest
from controller.deployments.pia import PrivacyImpactAssessment
from controller.deployments.records import DeploymentRecords
from controller.deployments.review_dates import review_due
from controller.deployments.rules import (
    MANAGERS,
    REQUESTERS,
    Actor,
    require_consultation,
    require_independent,
    require_role,
    require_status,
)
from controller.store.deployments import AuthorizationRow, DeploymentRow, live_on_unit
from protocol.signing import Signer

__all__ = ["SignedSteps"]

log = logging.getLogger(__name__)


class SignedSteps:
    """Approve, renew, revoke and end: the steps that need the controller's signer. Each
    reads and writes through `records` and publishes on `link`."""

    def __init__(
        self, records: DeploymentRecords, *, signer: Signer | None, link: Publisher | None
    ) -> None:
        self.records = records
        self.signer = signer
        self.link = link

    def _signer(self, row: DeploymentRow, action: str) -> Signer:
        if self.signer is None:
            raise DeploymentRefused(
                row.id, row.status, action,
                "the controller has no signing key (signing_key_file), so it cannot sign the "
                "unit's authorization",
            )  # fmt: skip
        return self.signer

    async def _publish(self) -> None:
        await publish_pending(self.records.db, self.link)

    async def approve(
        self, actor: Actor, deployment_id: str, req: ApproveRequest | None = None
    ) -> DeploymentRow:
        req = req or ApproveRequest()
        now = self.records.clock()
        async with self.records.db.session() as session:
            row = await self.records.load(session, deployment_id)
            require_status(row, "approved", ("submitted",), "only a submitted request is decided")
            require_independent(actor, row, "approve")
            pia = PrivacyImpactAssessment.model_validate(row.pia)
            require_consultation(row, pia, "approved")
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
            location = await self.records.location(session, row.location_id)
            if location.retired_at is not None:
                raise DeploymentRefused(row.id, row.status, "approved", "its location is retired")
            if req.review_by is not None:
                row.review_due = review_due(
                    self.records.policy, row.planned_start, req.review_by, now
                )
            row.status = "active" if row.planned_start <= now else "approved"
            row.decided_by, row.decided_at, row.decision_reason = actor.username, now, req.notes
            row.updated_at = now
            auth = issue_authorization(
                session, signer=signer, link=self.link, deployment=row, location=location,
                actor=actor.username, now=now, valid_from=row.planned_start,
                masks=pia.mask_polygons(),
            )  # fmt: skip
            await self.records.audit(
                session, actor.username, "approve", row, authorization_id=auth.authorization_id,
                valid_until=auth.valid_until.isoformat(), review_due=row.review_due.isoformat(),
                residual_risk=row.residual_risk, notes=req.notes,
                assessment_read=req.assessment_read,
            )  # fmt: skip
            await session.commit()
        log.info("deployment approved id=%s unit=%s by=%s", row.id, row.unit_id, actor.username)
        await self._publish()
        return row

    async def _withdraw(
        self, actor: Actor, deployment_id: str, *, action: str, status: str, reason: str
    ) -> DeploymentRow:
        now = self.records.clock()
        async with self.records.db.session() as session:
            row = await self.records.load(session, deployment_id)
            verb = "revoked" if action == "revoke" else "ended"
            require_status(
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
            await self.records.audit(
                session, actor.username, action, row, reason=reason,
                authorization_id=row.authorization_id, revocation_id=revocation_id,
            )  # fmt: skip
            await session.commit()
        log.info("deployment %s id=%s unit=%s by=%s", verb, row.id, row.unit_id, actor.username)
        await self._publish()
        return row

    async def revoke(self, actor: Actor, deployment_id: str, reason: str) -> DeploymentRow:
        require_role(actor, "revoke a deployment", MANAGERS)
        return await self._withdraw(
            actor, deployment_id, action="revoke", status="revoked", reason=reason
        )

    async def end(self, actor: Actor, deployment_id: str, reason: str) -> DeploymentRow:
        require_role(actor, "end a deployment", REQUESTERS)
        return await self._withdraw(
            actor, deployment_id, action="end", status="ended", reason=reason
        )

    async def renew(self, actor: Actor, deployment_id: str, req: RenewRequest) -> DeploymentRow:
        """A fresh review of the PIA: a new review date and a fresh authorization."""
        require_role(actor, "renew a deployment", MANAGERS)
        now = self.records.clock()
        async with self.records.db.session() as session:
            row = await self.records.load(session, deployment_id)
            require_status(
                row, "renewed", ("active", "review_due"), "only a live deployment is renewed"
            )
            pia = req.pia or PrivacyImpactAssessment.model_validate(row.pia)
            if pia.retention_days > self.records.policy.retention_max_days:
                raise InvalidDeployment("retention exceeds the policy maximum")
            require_consultation(row, pia, "renewed")
            signer = self._signer(row, "renewed")
            if req.planned_end is not None:
                if req.planned_end <= now:
                    raise InvalidDeployment("the new planned end has already passed")
                row.planned_end = req.planned_end.astimezone(UTC)
            row.pia, row.residual_risk = pia.model_dump(mode="json"), pia.residual_risk.value
            row.retention_days = pia.retention_days
            row.review_due = review_due(self.records.policy, now, req.review_by, now)
            row.status, row.review_reminded_at, row.lapsed_at = "active", None, None
            row.renewals += 1
            row.updated_at = now
            location = await self.records.location(session, row.location_id)
            auth = issue_authorization(
                session, signer=signer, link=self.link, deployment=row, location=location,
                actor=actor.username, now=now, valid_from=min(now, row.planned_start),
                masks=pia.mask_polygons(),
            )  # fmt: skip
            await self.records.audit(
                session, actor.username, "renew", row, authorization_id=auth.authorization_id,
                review_due=row.review_due.isoformat(), notes=req.review_notes,
                valid_until=auth.valid_until.isoformat(),
            )  # fmt: skip
            await session.commit()
        await self._publish()
        return row
