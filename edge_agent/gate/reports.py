"""The recording gate, as the agent reports it: the authorizations it refused, and each
time it opens or closes.

Every gate change wakes recording control at once; a gate opening on a new deployment
resets the picture baseline, for the self-tests to learn the new site's view.
"""

from __future__ import annotations

from collections.abc import Callable

from edge_agent.gate.gate import Gate
from edge_agent.selftest.suite import LiveSampler
from edge_agent.telemetry import Publish, Telemetry
from protocol.messages import Authorization, AuthorizationRefused, GateChanged, Revocation

__all__ = ["GateReports"]


class GateReports:
    """`on_authorization` is the link's authorization handler; `run()` is the agent's
    gate-events task."""

    def __init__(
        self,
        gate: Gate,
        *,
        sampler: LiveSampler,
        telemetry: Telemetry,
        publish: Publish,
        on_change: Callable[[], None],
    ) -> None:
        self._gate = gate
        self._sampler = sampler
        self._telemetry = telemetry
        self._publish = publish
        self._on_change = on_change

    async def on_authorization(self, message: Authorization | Revocation) -> None:
        outcome = self._gate.handle(message)
        if not outcome.accepted:
            body = AuthorizationRefused(
                authorization_id=outcome.ident[:128],
                reason=outcome.reason.value if outcome.reason else "refused",
                detail=f"{outcome.kind}: {outcome.detail}"[:2000],
            )
            await self._publish(self._telemetry.event(body))
        self._on_change()

    async def run(self) -> None:
        """Report what the gate decides (it closes itself at the authorization's end, with
        or without the broker), and react at once."""
        deployment = self._gate.deployment_id
        while True:
            event = await self._gate.wait_for_change()
            if isinstance(event, GateChanged) and event.open and event.deployment_id != deployment:
                self._sampler.reset_baseline()  # a new site: learn its view
                deployment = event.deployment_id
            await self._publish(self._telemetry.event(event))
            self._on_change()
