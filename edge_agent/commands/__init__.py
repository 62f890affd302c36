"""Commands from the controller: `CommandProcessor` verifies each one and sends the
acknowledgements; `CommandActions` carries out what a verified command asks."""

from edge_agent.commands.actions import RUNTIME_KEYS, CommandActions
from edge_agent.commands.processor import (
    AckSender,
    AckStatus,
    ActionHandler,
    CommandFailed,
    CommandProcessor,
)

__all__ = [
    "RUNTIME_KEYS",
    "AckSender",
    "AckStatus",
    "ActionHandler",
    "CommandActions",
    "CommandFailed",
    "CommandProcessor",
]
