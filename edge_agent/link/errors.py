"""Errors of the unit's MQTT link.

AgentError
└── LinkError
    ├── LinkRefused      the broker will not accept this unit (certificate, authorisation):
    │                    fatal, retrying cannot help; `.detail`, `.attempts`
    ├── LinkDown         an operation needs a live connection and there is none
    └── LinkClosed       the link was closed; it publishes nothing more
(OutboxError, from `edge_agent.link.outbox`, is also an AgentError.)
"""

from __future__ import annotations

from edge_agent.errors import AgentError

__all__ = ["LinkClosed", "LinkDown", "LinkError", "LinkRefused"]


class LinkError(AgentError):
    """Root of the link's errors."""


class LinkRefused(LinkError):
    def __init__(self, host: str, port: int, detail: str, attempts: int) -> None:
        super().__init__(
            f"broker {host}:{port} refuses this unit: {detail} "
            f"({attempts} consecutive attempts; check the unit's enrollment bundle)"
        )
        self.host = host
        self.port = port
        self.detail = detail
        self.attempts = attempts


class LinkDown(LinkError):
    def __init__(self, what: str, why: str = "not connected to the broker") -> None:
        super().__init__(f"cannot {what}: {why}")
        self.what = what
        self.why = why


class LinkClosed(LinkError):
    def __init__(self) -> None:
        super().__init__("the link is closed")
