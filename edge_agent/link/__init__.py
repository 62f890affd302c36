"""The unit's MQTT link: a durable outbox, ordered replay, reconnect, and the inbound
command / authorization channel."""

from edge_agent.link.client import AuthorizationHandler, CommandHandler, UnitLink
from edge_agent.link.errors import LinkClosed, LinkDown, LinkError, LinkRefused
from edge_agent.link.outbox import (
    DEFAULT_MAX_ROWS,
    MessageClass,
    Outbox,
    OutboxError,
    OutboxItem,
    class_for,
)
from edge_agent.link.settings import LinkSettings

__all__ = [
    "DEFAULT_MAX_ROWS",
    "AuthorizationHandler",
    "CommandHandler",
    "LinkClosed",
    "LinkDown",
    "LinkError",
    "LinkRefused",
    "LinkSettings",
    "MessageClass",
    "Outbox",
    "OutboxError",
    "OutboxItem",
    "UnitLink",
    "class_for",
]
