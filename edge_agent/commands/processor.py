"""Commands from the controller: verified before anything runs, acknowledged at each step.

Order of checks (any failure -> `rejected` with the reason): signature by the controller's
key, addressed to this unit, issued not in the future, not expired, not seen before. Then
`accepted`, the action runs, and `done` (with its result) or `failed` (with the reason).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal

from edge_agent.errors import AgentError
from protocol.errors import SignatureRefused
from protocol.messages import Command, CommandBody
from protocol.signing import Verifier

__all__ = ["AckSender", "ActionHandler", "CommandFailed", "CommandProcessor"]

log = logging.getLogger(__name__)

AckStatus = Literal["accepted", "rejected", "done", "failed"]
AckSender = Callable[[str, AckStatus, str, dict[str, Any]], Awaitable[None]]
ActionHandler = Callable[[CommandBody], Awaitable[dict[str, Any]]]


class CommandFailed(AgentError):
    """An action that was accepted but could not be carried out; the message is sent back."""


class CommandProcessor:
    def __init__(
        self,
        verifier: Verifier,
        *,
        send_ack: AckSender,
        actions: Mapping[str, ActionHandler],
    ) -> None:
        self._verifier = verifier
        self._send_ack = send_ack
        self._actions = dict(actions)
        self.rejected = 0

    async def handle(self, message: Command) -> AckStatus:
        command_id = message.body.command_id
        action = message.body.action.action
        try:
            body = self._verifier.command(message)
        except SignatureRefused as exc:
            self.rejected += 1
            log.warning("command refused id=%s action=%s reason=%s", command_id, action, exc.reason)
            await self._send_ack(command_id, "rejected", f"{exc.reason.value}: {exc.detail}", {})
            return "rejected"
        handler = self._actions.get(action)
        if handler is None:
            await self._send_ack(command_id, "rejected", f"unsupported action {action!r}", {})
            return "rejected"
        await self._send_ack(command_id, "accepted", "", {})
        log.info("command accepted id=%s action=%s by=%s", command_id, action, body.issued_by)
        try:
            result = await handler(body)
        except (CommandFailed, ValueError) as exc:
            log.warning("command failed id=%s action=%s: %s", command_id, action, exc)
            await self._send_ack(command_id, "failed", str(exc), {})
            return "failed"
        except Exception as exc:  # an action must never take the agent down
            log.exception("command crashed id=%s action=%s", command_id, action)
            await self._send_ack(command_id, "failed", f"internal error: {type(exc).__name__}", {})
            return "failed"
        await self._send_ack(command_id, "done", "", result)
        return "done"
