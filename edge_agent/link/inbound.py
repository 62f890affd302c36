"""What reaches the unit on its `cmd` and `authz` topics: decoded, checked against the
topic it came on, and handed to the service's handlers. A malformed message is logged,
counted and dropped; a failing handler is logged and counted; neither stops the link.

Signatures are NOT checked here: the handlers pass commands and authorizations to
`protocol.signing.Verifier`, which refuses anything the controller did not sign.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from protocol.errors import MessageError
from protocol.messages import Authorization, Command, Revocation, decode
from protocol.topics import Channel, Topics

__all__ = ["AuthorizationHandler", "CommandHandler", "Inbound"]

log = logging.getLogger(__name__)

CommandHandler = Callable[[Command], Awaitable[None]]
AuthorizationHandler = Callable[[Authorization | Revocation], Awaitable[None]]


class Inbound:
    def __init__(self, unit_id: str, topics: Topics) -> None:
        self.unit_id = unit_id
        self.cmd_topic = topics.unit(unit_id, Channel.CMD)
        self.authz_topic = topics.unit(unit_id, Channel.AUTHZ)
        self.command_handlers: list[CommandHandler] = []
        self.authz_handlers: list[AuthorizationHandler] = []
        #: Messages dropped: not a valid message, or not the kind its topic carries.
        self.malformed = 0
        #: Messages a handler raised on.
        self.handler_errors = 0

    async def dispatch(self, topic: str, payload: Any) -> None:
        """Decode one inbound payload and run the handlers for it, one after another.
        Handlers run on the link's receive task: they should be quick and start long work
        (a self-test, an export) in a task of their own."""
        unit = self.unit_id
        if payload is None or payload in (b"", ""):
            # An empty retained message: the controller cleared the topic.
            log.debug("unit=%s link: empty message on %s (retained cleared)", unit, topic)
            return
        if not isinstance(payload, bytes | bytearray | str):
            payload = str(payload)
        try:
            message = decode(payload)
        except MessageError as exc:
            self.malformed += 1
            log.warning("unit=%s link: dropped malformed message on %s: %s", unit, topic, exc)
            return
        handlers: list[Callable[[Any], Awaitable[None]]]
        if topic == self.cmd_topic and isinstance(message, Command):
            handlers = list(self.command_handlers)
        elif topic == self.authz_topic and isinstance(message, Authorization | Revocation):
            handlers = list(self.authz_handlers)
        else:
            self.malformed += 1
            log.warning("unit=%s link: dropped %r message on %s", unit, message.kind, topic)
            return
        for handler in handlers:
            try:
                await handler(message)
            except Exception:
                self.handler_errors += 1
                log.exception(
                    "unit=%s link: handler failed for %s on %s", unit, message.kind, topic
                )
