"""Resolving a callout asks the unit to prove the repair: the callout is resolved (awaiting
verification) and the unit is sent a signed self-test at once. Its report verifies the
callout, or sends it back to attending when the fault is still there (the fault rules,
`controller.callouts.faults`); until then the page says the check is pending. The JSON API
and the pages resolve through `resolve` alike.

What the page shows about it (`verification_state`) is read from the callout's own log.

Not imported by `controller.callouts` itself: sending a command needs the broker link,
whose settings module imports the callouts' SLA clock.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from controller.callouts.service import CalloutService
from controller.errors import ConfigError, LinkError, UnknownCallout
from controller.fleet.commands import selftest_now
from controller.link import ControllerLink
from controller.store.base import Database
from controller.store.fleet import Callout, CalloutEvent

__all__ = [
    "LOG_KINDS",
    "Resolved",
    "VerificationState",
    "resolve",
    "verification_state",
    "verification_states",
]

log = logging.getLogger(__name__)

#: Events of a callout's log that say how its verification went.
REQUESTED, NOT_SENT = "verification_requested", "verification_not_sent"
FINDINGS = ("verified", "repair_failed", "not_verified")
#: The kinds of event `verification_state` reads.
LOG_KINDS = ("resolved", REQUESTED, NOT_SENT, *FINDINGS)


@dataclass(frozen=True, slots=True)
class Resolved:
    """A resolve: the self-test command sent to verify it, or why it could not be sent."""

    callout_id: int
    unit_id: str
    command_id: str | None
    not_sent: str | None


async def resolve(
    service: CalloutService,
    db: Database,
    link: ControllerLink | None,
    callout_id: int,
    *,
    actor: str,
    note: str,
) -> Resolved:
    """Resolve the callout (refused as the lifecycle refuses), then send its unit a signed
    self-test to verify the repair. A broker that is away does not undo the resolve: the
    callout's log says the check could not be sent, and the next self-test verifies it."""
    async with db.session() as session:
        callout = await service.lifecycle.transition(
            session, callout_id, "resolved", actor=actor, note=note
        )
        unit_id = callout.unit_id
        await session.commit()
    # Publish outside the resolve's transaction: waiting on the broker holds no lock.
    async with db.session() as session:
        row = await session.get(Callout, callout_id)
        if row is None:
            raise UnknownCallout(callout_id)
        try:
            if link is None:
                raise LinkError("the controller has no broker connection")
            command = await selftest_now(link, session, unit_id, actor=actor)
        except (LinkError, ConfigError) as exc:
            reason = str(exc)
            await service.lifecycle.event(
                session,
                row,
                NOT_SENT,
                actor,
                f"The self-test to verify the repair could not be sent ({reason}); "
                "the unit's next self-test verifies it.",
            )
            await session.commit()
            log.warning("callout=%s verification not sent: %s", callout_id, reason)
            return Resolved(callout_id, unit_id, None, reason)
        command_id = command.body.command_id
        await service.lifecycle.event(
            session,
            row,
            REQUESTED,
            actor,
            "Self-test sent to the unit to verify the repair.",
            {"command_id": command_id},
        )
        await session.commit()
    return Resolved(callout_id, unit_id, command_id, None)


@dataclass(frozen=True, slots=True)
class VerificationState:
    """Where the verification of the latest resolve stands, for the page.

    `state`: `pending` (self-test sent, no finding yet), `not_sent`, `waiting` (resolved
    with nothing sent: awaiting the next self-test), `verified`, `failed` (the repair did
    not hold; the callout is back to attending), `open` (a report could not tell)."""

    state: Literal["pending", "not_sent", "waiting", "verified", "failed", "open"]
    since: datetime
    note: str


def verification_state(
    callout: Callout, events: Sequence[CalloutEvent]
) -> VerificationState | None:
    """How the check of the callout's latest resolve went, from its log; None when it was
    never resolved, or when it is no longer awaited (the callout went back to work)."""
    latest: VerificationState | None = None
    for event in events:
        if event.kind == "resolved":
            latest = VerificationState("waiting", event.at, "")
        elif latest is None:
            continue
        elif event.kind == REQUESTED:
            latest = VerificationState("pending", event.at, event.note)
        elif event.kind == NOT_SENT:
            latest = VerificationState("not_sent", event.at, event.note)
        elif event.kind == "verified":
            latest = VerificationState("verified", event.at, event.note)
        elif event.kind == "repair_failed":
            latest = VerificationState("failed", event.at, event.note)
        elif event.kind == "not_verified" and latest.state in ("pending", "waiting", "open"):
            latest = VerificationState("open", event.at, event.note)
    awaiting = latest is not None and latest.state in ("pending", "not_sent", "waiting", "open")
    if awaiting and callout.status != "resolved":
        return None  # sent back to work by hand, or the fault came back: nothing awaited
    return latest


def verification_states(
    callouts: Sequence[Callout], logs: Mapping[int, Sequence[CalloutEvent]]
) -> dict[int, VerificationState]:
    """Callout id -> `verification_state`, from each callout's events of `LOG_KINDS`
    (callouts never resolved are left out)."""
    found = {c.id: verification_state(c, logs.get(c.id, ())) for c in callouts}
    return {k: v for k, v in found.items() if v is not None}
