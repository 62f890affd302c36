from __future__ import annotations

import pytest

from protocol.errors import InvalidUnitId, UnknownTopic
from protocol.messages import KINDS
from protocol.topics import Channel, Direction, Topics, validate_unit_id


def test_topic_table() -> None:
    t = Topics()
    assert t.unit("cam-01", Channel.STATE) == "cctv/v1/unit/cam-01/state"
    assert t.unit("cam-01", Channel.CMD_ACK) == "cctv/v1/unit/cam-01/cmd/ack"
    assert t.fleet_filter() == "cctv/v1/unit/+/#"
    assert t.acl_pattern(Channel.AUTHZ) == "cctv/v1/unit/%u/authz"
    assert (
        Topics("council/x").unit("u1", Channel.HEARTBEAT) == "council/x/unit/u1/telemetry/heartbeat"
    )


@pytest.mark.parametrize("channel", list(Channel))
def test_parse_inverts_build(channel: Channel) -> None:
    t = Topics()
    assert t.parse(t.unit("cam_7", channel)) == ("cam_7", channel)


@pytest.mark.parametrize(
    "topic",
    [
        "cctv/v1/unit/cam-01",
        "cctv/v1/unit/cam-01/nope",
        "other/unit/a/state",
        "cctv/v1/unit/+/state",
        "cctv/v1/unit/CAM/state",
        "cctv/v1/unit/controller/state",
    ],
)
def test_parse_refuses_foreign_topics(topic: str) -> None:
    with pytest.raises(UnknownTopic):
        Topics().parse(topic)


@pytest.mark.parametrize("bad", ["", "a/b", "a+b", "#", "UPPER", "-lead", "x" * 64, "controller"])
def test_unit_ids_that_cannot_be_a_topic_level_or_cn(bad: str) -> None:
    with pytest.raises(InvalidUnitId):
        validate_unit_id(bad)


def test_every_kind_has_a_channel_in_the_right_direction() -> None:
    to_unit = {k for k, model in KINDS.items() if model.channel.direction is Direction.TO_UNIT}
    assert to_unit == {"command", "authorization", "revocation"}
    assert Channel.STATE.retained and Channel.AUTHZ.retained and not Channel.CMD.retained
    # A reference picture comes from the unit (the broker lets only that unit write it).
    assert KINDS["reference_snapshot"].channel is Channel.SNAPSHOT
    assert Channel.SNAPSHOT.direction is Direction.FROM_UNIT and not Channel.SNAPSHOT.retained
