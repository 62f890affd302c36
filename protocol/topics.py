"""The MQTT topic table: the only place topic strings are built.

    {root}/unit/{u}/state                  unit ->   QoS 1, retained, LWT offline
    {root}/unit/{u}/telemetry/heartbeat    unit ->   QoS 1
    {root}/unit/{u}/telemetry/power        unit ->   QoS 1
    {root}/unit/{u}/telemetry/selftest     unit ->   QoS 1
    {root}/unit/{u}/event                  unit ->   QoS 1
    {root}/unit/{u}/recording/index        unit ->   QoS 1
    {root}/unit/{u}/snapshot               unit ->   QoS 1  (one reference picture, on request)
    {root}/unit/{u}/cmd                    -> unit   QoS 1
    {root}/unit/{u}/cmd/ack                unit ->   QoS 1
    {root}/unit/{u}/authz                  -> unit   QoS 1, retained

`{u}` is the unit id, which is also the CN of the unit's certificate and therefore its
broker username: the broker's ACL patterns (`%u`) are generated from this same table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from protocol.errors import InvalidUnitId, UnknownTopic

__all__ = [
    "DEFAULT_ROOT",
    "RESERVED_IDS",
    "UNIT_ID_PATTERN",
    "Channel",
    "Direction",
    "Topics",
    "validate_unit_id",
]

DEFAULT_ROOT = "cctv/v1"
UNIT_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: Names a unit may not take: they are identities of the centre's own clients.
RESERVED_IDS = frozenset({"controller", "broker", "admin", "simulator", "root"})


class Direction(StrEnum):
    FROM_UNIT = "from_unit"
    TO_UNIT = "to_unit"


class Channel(StrEnum):
    """The last part of a unit topic, below `{root}/unit/{u}/`."""

    STATE = "state"
    HEARTBEAT = "telemetry/heartbeat"
    POWER = "telemetry/power"
    SELFTEST = "telemetry/selftest"
    EVENT = "event"
    INDEX = "recording/index"
    SNAPSHOT = "snapshot"
    CMD = "cmd"
    CMD_ACK = "cmd/ack"
    AUTHZ = "authz"

    @property
    def direction(self) -> Direction:
        return Direction.TO_UNIT if self in (Channel.CMD, Channel.AUTHZ) else Direction.FROM_UNIT

    @property
    def retained(self) -> bool:
        return self in (Channel.STATE, Channel.AUTHZ)


def validate_unit_id(unit_id: str) -> str:
    """Return `unit_id` if it can be a certificate CN, a broker username and a topic level."""
    if not UNIT_ID_PATTERN.fullmatch(unit_id):
        raise InvalidUnitId(
            unit_id,
            "a unit id is 1-63 characters of lower-case letters, digits, '-' and '_', "
            "starting with a letter or digit",
        )
    if unit_id in RESERVED_IDS:
        raise InvalidUnitId(unit_id, f"'{unit_id}' is reserved for the control room's own clients")
    return unit_id


@dataclass(frozen=True, slots=True)
class Topics:
    """Builds and parses the fleet's topics under one root."""

    root: str = DEFAULT_ROOT

    def __post_init__(self) -> None:
        if not self.root or self.root.startswith("/") or self.root.endswith("/"):
            raise ValueError("topic root must be non-empty with no leading or trailing '/'")
        if any(c in self.root for c in "+#"):
            raise ValueError("topic root must not contain MQTT wildcards")

    def unit(self, unit_id: str, channel: Channel) -> str:
        validate_unit_id(unit_id)
        return f"{self.root}/unit/{unit_id}/{channel.value}"

    def unit_filter(self, unit_id: str) -> str:
        """Every topic of one unit."""
        validate_unit_id(unit_id)
        return f"{self.root}/unit/{unit_id}/#"

    def fleet_filter(self, channel: Channel | None = None) -> str:
        """Every unit's topics, or one channel of every unit."""
        if channel is None:
            return f"{self.root}/unit/+/#"
        return f"{self.root}/unit/+/{channel.value}"

    def shared_fleet_filter(self, group: str = "controllers") -> str:
        """MQTT v5 shared subscription for several controllers splitting the load."""
        return f"$share/{group}/{self.root}/unit/+/#"

    def acl_pattern(self, channel: Channel) -> str:
        """The Mosquitto `pattern` form of a unit topic (`%u` is the username = unit id)."""
        return f"{self.root}/unit/%u/{channel.value}"

    def parse(self, topic: str) -> tuple[str, Channel]:
        """Split a unit topic into (unit id, channel); raise UnknownTopic otherwise."""
        prefix = f"{self.root}/unit/"
        if not topic.startswith(prefix):
            raise UnknownTopic(topic)
        rest = topic[len(prefix) :]
        unit_id, sep, tail = rest.partition("/")
        if not sep:
            raise UnknownTopic(topic)
        try:
            channel = Channel(tail)
            validate_unit_id(unit_id)
        except (ValueError, InvalidUnitId) as exc:
            raise UnknownTopic(topic) from exc
        return unit_id, channel
