"""Reference pictures: the camera's latest picture as a bounded JPEG, and the real agent
answering a signed `reference_snapshot` command with the camera's view before privacy masks
(while the masks black out the footage it records)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import cv2
import numpy as np
import pytest

from edge_agent.capture import SyntheticSource
from edge_agent.capture.reference import NoPicture, encode_reference, take_reference
from protocol.messages import (
    CommandAck,
    CommandBody,
    Heartbeat,
    ReferenceSnapshot,
    ReferenceSnapshotRequest,
    encode,
)
from protocol.signing import Signer
from protocol.topics import Channel
from tests.edge_agent.test_agent_service import agent_factory, publish_authz, watch
from tests.harness.agent import authorization
from tests.harness.footage import closest_clip_frame

__all__ = ["agent_factory"]  # the fixture, shared with the agent service tests


def test_a_picture_too_large_for_the_bound_is_made_to_fit() -> None:
    noise = np.random.default_rng(7).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    unbounded, width, height = encode_reference(noise, max_bytes=10**8)
    assert (width, height) == (1280, 720) and len(unbounded) > 512 * 1024
    jpeg, width, height = encode_reference(noise, max_bytes=200 * 1024)
    assert len(jpeg) <= 200 * 1024 and jpeg.startswith(b"\xff\xd8\xff")
    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (height, width, 3) and width <= 640
    with pytest.raises(NoPicture, match="does not fit"):
        encode_reference(noise, max_bytes=100)


async def test_take_reference_sends_the_latest_picture_or_says_why_not() -> None:
    source = SyntheticSource("synthetic:?width=320&height=180&fps=10")
    with pytest.raises(NoPicture, match="no picture since the agent started"):
        await take_reference(source.latest_frame, now=lambda: datetime.now(UTC), wait_s=0.3)
    source.start(None)
    try:
        picture = await take_reference(source.latest_frame, now=lambda: datetime.now(UTC))
    finally:
        await asyncio.to_thread(source.stop)
    assert (picture.width, picture.height) == (320, 180)
    assert abs((datetime.now(UTC) - picture.captured_at).total_seconds()) < 5
    later = lambda: datetime.now(UTC) + timedelta(minutes=5)  # noqa: E731
    with pytest.raises(NoPicture, match=r"no picture for 30\d s"):
        await take_reference(source.latest_frame, now=later, wait_s=0.3)


@pytest.mark.slow
async def test_the_agent_sends_the_cameras_view_before_privacy_masks(
    fresh_fleet: Any, make_broker: Any, agent_factory: Any
) -> None:
    fleet = fresh_fleet(units=("cam-01",))
    broker = make_broker(fleet)
    agent = agent_factory(fleet, "cam-01", broker)  # plays the sample clip
    top_left = [(0.0, 0.0), (0.4, 0.0), (0.4, 0.5), (0.0, 0.5)]
    signer = Signer(fleet.controller_signing_key())
    async with watch(broker) as w:
        agent.start()
        await w.wait(lambda: w.of(Heartbeat), 30, "the first heartbeat")
        await publish_authz(w, fleet, "cam-01", authorization(fleet, "cam-01", masks=[top_left]))
        await w.wait(lambda: w.events("recording_started"), 10, "masked recording to start")
        now = datetime.now(UTC)
        body = CommandBody(
            command_id=uuid.uuid4().hex,
            unit_id="cam-01",
            issued_at=now,
            expires_at=now + timedelta(minutes=5),
            issued_by="operator1",
            action=ReferenceSnapshotRequest(request_id="req-1"),
        )
        command = signer.command(body, seq=10, boot_id="test-ctl")
        asked = time.monotonic()
        await w.client.publish(fleet.topics.unit("cam-01", Channel.CMD), encode(command), qos=1)
        await w.wait(lambda: w.of(ReferenceSnapshot), 10, "the reference picture")
        print(f"command -> picture at the broker: {time.monotonic() - asked:.2f} s")
        (snapshot,) = w.of(ReferenceSnapshot)
        await w.wait(lambda: [a for a in w.of(CommandAck) if a.status == "done"], 5, "the done ack")
        assert await asyncio.to_thread(agent.terminate) == 0
    done = next(a for a in w.of(CommandAck) if a.status == "done")
    assert done.result["sha256"] == snapshot.sha256 and done.result["request_id"] == "req-1"
    assert snapshot.request_id == "req-1" and (snapshot.width, snapshot.height) == (1280, 720)
    picture = snapshot.image()
    index, difference = closest_clip_frame(picture)
    print(f"closest clip frame {index}, mean difference {difference:.2f} grey levels")
    assert difference < 3.0, "the picture is a frame of the camera's clip"
    image = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert image[: 360 - 8, : 512 - 8].mean() > 40, "not blacked out: taken before the masks"
