"""Signed authorizations and revocations: built from a deployment, stored, then published
retained on the unit's authz topic.

A message is signed once, stored with the transaction that changes the deployment, and
published after commit. If the broker is down, the row stays unpublished and
`publish_pending` (run by the review job) sends it later, in `issued_at` order per unit, so
the retained message left on a unit's topic is always the newest one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
import weakref
from datetime import datetime
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from controller.errors import LinkError
from controller.store.base import Database, utcnow
from controller.store.deployments import (
    AuthorizationRow,
    DeploymentRow,
    LocationRow,
    RevocationRow,
    unpublished,
)
from protocol.messages import (
    Authorization,
    AuthorizationBody,
    Envelope,
    GeoFence,
    RecordingProfile,
    Revocation,
    RevocationBody,
)
from protocol.signing import Signer

__all__ = ["Publisher", "issue_authorization", "issue_revocation", "publish_pending"]

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """What the workflow needs of the controller's broker link (`ControllerLink`)."""

    boot_id: str

    def next_seq(self) -> int: ...

    async def publish(self, message: Envelope, *, retain: bool = False) -> None: ...


def _seq(link: Publisher | None) -> int:
    return link.next_seq() if link is not None else time.time_ns() // 1000


def _new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


def issue_authorization(
    session: AsyncSession,
    *,
    signer: Signer,
    link: Publisher | None,
    deployment: DeploymentRow,
    location: LocationRow,
    actor: str,
    now: datetime,
    valid_from: datetime,
    masks: list[list[tuple[float, float]]],
) -> AuthorizationRow:
    """Sign a fresh authorization for the deployment and add it to the session."""
    valid_until = min(deployment.review_due, deployment.planned_end)
    body = AuthorizationBody(
        authorization_id=_new_id("authz"),
        unit_id=deployment.unit_id,
        deployment_id=deployment.id,
        location_name=location.name,
        geofence=GeoFence(lat=location.lat, lon=location.lon, radius_m=location.geofence_radius_m),
        valid_from=valid_from,
        valid_until=valid_until,
        issued_at=now,
        masks=masks,
        retention_days=deployment.retention_days,
        profile=RecordingProfile.model_validate(deployment.profile or {}),
    )
    message = signer.authorization(body, seq=_seq(link), boot_id=_boot(link))
    row = AuthorizationRow(
        authorization_id=body.authorization_id,
        deployment_id=deployment.id,
        unit_id=deployment.unit_id,
        issued_at=now,
        issued_by=actor,
        valid_from=valid_from,
        valid_until=valid_until,
        message=message.model_dump(mode="json"),
        published_at=None,
        revoked_at=None,
    )
    session.add(row)
    deployment.authorization_id = body.authorization_id
    deployment.authorized_until = valid_until
    return row


def issue_revocation(
    session: AsyncSession,
    *,
    signer: Signer,
    link: Publisher | None,
    authorization: AuthorizationRow,
    actor: str,
    reason: str,
    now: datetime,
) -> RevocationRow:
    body = RevocationBody(
        revocation_id=_new_id("revoke"),
        unit_id=authorization.unit_id,
        authorization_id=authorization.authorization_id,
        deployment_id=authorization.deployment_id,
        issued_at=now,
        reason=reason[:2000],
    )
    message = signer.revocation(body, seq=_seq(link), boot_id=_boot(link))
    row = RevocationRow(
        revocation_id=body.revocation_id,
        authorization_id=authorization.authorization_id,
        deployment_id=authorization.deployment_id,
        unit_id=authorization.unit_id,
        issued_at=now,
        issued_by=actor,
        reason=body.reason,
        message=message.model_dump(mode="json"),
        published_at=None,
    )
    session.add(row)
    authorization.revoked_at = now
    return row


def _boot(link: Publisher | None) -> str:
    return link.boot_id if link is not None else "controller"


#: One publishing pass at a time per link: two interleaved passes could leave an older
#: message retained after a newer one.
_LOCKS: weakref.WeakKeyDictionary[object, asyncio.Lock] = weakref.WeakKeyDictionary()


async def publish_pending(db: Database, link: Publisher | None) -> int:
    """Publish (retained) every stored message the broker has not acknowledged yet.
    Returns how many were published; stops at the first failure (retried next time)."""
    if link is None:
        return 0
    lock = _LOCKS.setdefault(link, asyncio.Lock())
    async with lock:
        return await _publish_pending(db, link)


async def _publish_pending(db: Database, link: Publisher) -> int:
    async with db.session() as session:
        auths, revs = await unpublished(session)
        pending: list[tuple[datetime, str, str, Envelope]] = [
            (a.issued_at, "a", a.authorization_id, Authorization.model_validate(a.message))
            for a in auths
        ] + [
            (r.issued_at, "r", r.revocation_id, Revocation.model_validate(r.message)) for r in revs
        ]
    pending.sort(key=lambda item: item[0])
    sent = 0
    for _, kind, ident, message in pending:
        try:
            await link.publish(message, retain=True)
        except LinkError as exc:
            log.warning("authz publish deferred unit=%s id=%s: %s", message.unit_id, ident, exc)
            break
        async with db.session() as session:
            row: AuthorizationRow | RevocationRow | None = (
                await session.get(AuthorizationRow, ident)
                if kind == "a"
                else await session.get(RevocationRow, ident)
            )
            if row is not None:
                row.published_at = utcnow()
                await session.commit()
        log.info("authz published unit=%s id=%s", message.unit_id, ident)
        sent += 1
    return sent
