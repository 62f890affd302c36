"""The edge agent's error root. Every error the agent raises on purpose derives from
`AgentError`; each concern (recorder, link, power, gate, ...) hangs its own subclasses,
carrying data, below it."""

from __future__ import annotations

__all__ = ["AgentError"]


class AgentError(Exception):
    """Root of every error raised by `edge_agent`."""
