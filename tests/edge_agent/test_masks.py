"""Privacy masks: rasterised polygons, applied to 4:2:0 pictures, and recorded footage that
is black under the mask (and only there) after decryption and decoding."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from edge_agent.capture import SyntheticSource, open_source
from edge_agent.recorder.masks import MaskError, PrivacyMasks
from edge_agent.recorder.recorder import RecorderState
from protocol.evidence_keys import EvidencePrivateKey
from protocol.segment.reader import read_segment
from tests.edge_agent.test_recorder import (
    CLIP,
    clip_packets,
    evidence_key,
    make_recorder,
    mp4_packets,
    require_clip,
    wait_for,
)

__all__ = ["evidence_key"]  # the fixture, shared with the recorder tests

TOP_LEFT = [(0.0, 0.0), (0.4, 0.0), (0.4, 0.5), (0.0, 0.5)]
TRIANGLE = [(0.6, 1.0), (1.0, 0.5), (1.0, 1.0)]


def test_bad_polygons_are_refused() -> None:
    with pytest.raises(MaskError, match="at least 3"):
        PrivacyMasks([[(0.0, 0.0), (1.0, 1.0)]])
    with pytest.raises(MaskError, match=r"outside 0\.\.1"):
        PrivacyMasks([[(0.0, 0.0), (1.2, 0.0), (0.5, 0.5)]])
    assert not PrivacyMasks([])
    assert PrivacyMasks([TOP_LEFT]) == PrivacyMasks([tuple(TOP_LEFT)])


def test_raster_covers_the_polygon_and_nothing_else() -> None:
    masks = PrivacyMasks([TOP_LEFT, TRIANGLE])
    raster = masks.raster(1280, 720)
    assert raster.shape == (720, 1280) and raster.dtype == bool
    assert raster[:360, :512].all(), "the whole rectangle, edges included"
    assert not raster[362:, :700].any() and not raster[:, 514:760].any()
    triangle_area = 0.5 * 512 * 360
    assert raster[:, 700:].sum() == pytest.approx(triangle_area, rel=0.02)
    assert masks.raster(1280, 720) is raster, "one raster per picture size"
    assert masks.raster(640, 360).shape == (360, 640)


def test_chroma_is_masked_wherever_any_luma_pixel_is() -> None:
    masks = PrivacyMasks([[(0.5, 0.5), (0.5 + 1 / 64, 0.5), (0.5, 0.5 + 1 / 64)]])
    frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="bgr24")
    out = masks.apply(frame.reformat(format="yuv420p"))
    planes = out.to_ndarray()
    luma, u = planes[:64], planes[64:80].reshape(32, 32)
    assert (luma == 16).sum() == masks.raster(64, 64).sum() > 0
    ys, xs = np.nonzero(masks.raster(64, 64))
    for y, x in zip(ys, xs, strict=True):
        assert u[y // 2, x // 2] == 128


def test_masked_pixels_are_black_in_bgr() -> None:
    image = np.full((720, 1280, 3), 180, np.uint8)
    PrivacyMasks([TOP_LEFT]).apply_bgr(image)
    assert image[:360, :512].max() == 0 and image[400:, 600:].min() == 180


def _check_masked(picture: np.ndarray[Any, Any], margin: int = 12) -> None:
    h, w = picture.shape[:2]
    inside = picture[: h // 2 - margin, : int(0.4 * w) - margin]
    outside = picture[:, int(0.4 * w) + margin :]
    assert inside.max() <= 24, "black under the mask"
    assert outside.mean() > 60, "the rest of the view is not black"


async def test_recorded_file_footage_is_black_under_the_mask(
    tmp_path: Path, evidence_key: EvidencePrivateKey
) -> None:
    require_clip()
    source = open_source(f"file:{CLIP}?realtime=0", sample_interval=None)
    recorder, index, sealed, _ = make_recorder(
        source, tmp_path, evidence_key, masks=[TOP_LEFT], config={"segment_seconds": 2.0}
    )
    await recorder.start()
    await wait_for(lambda: len(sealed) >= 2, 60, "masked segments")
    await recorder.stop()
    samples = recorder.masked_samples()  # what the privacy-mask self-test inspects
    assert samples and samples[0].shape == (720, 1280, 3)
    for picture in samples:
        _check_masked(picture)
    pictures = 0
    for entry in index.entries():
        with (tmp_path / entry.file_name).open("rb") as f:
            segment = read_segment(f, evidence_key)
        assert segment.header.metadata["path"] == "encode"
        assert segment.header.metadata["privacy_masks"] == "1"
        with av.open(io.BytesIO(segment.plaintext), "r") as c:
            for frame in c.decode(video=0):
                _check_masked(frame.to_ndarray(format="bgr24"))
                pictures += 1
    assert pictures >= 50
    index.close()


async def test_recorded_synthetic_footage_is_black_under_the_mask(
    tmp_path: Path, evidence_key: EvidencePrivateKey
) -> None:
    source = SyntheticSource("synthetic:?width=640&height=360&fps=25&realtime=0")
    recorder, index, sealed, _ = make_recorder(
        source, tmp_path, evidence_key, masks=[TOP_LEFT], config={"segment_seconds": 1.0}
    )
    await recorder.start()
    await wait_for(lambda: len(sealed) >= 1, 30, "a masked segment")
    await recorder.stop()
    entry = index.entries()[0]
    with (tmp_path / entry.file_name).open("rb") as f:
        segment = read_segment(f, evidence_key)
    with av.open(io.BytesIO(segment.plaintext), "r") as c:
        frames = [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]
    assert len(frames) >= 20
    for picture in frames:
        _check_masked(picture, margin=8)
    index.close()


async def test_masks_switch_the_path_at_a_keyframe(
    tmp_path: Path, evidence_key: EvidencePrivateKey
) -> None:
    """Remux without masks; masks set: re-encode from the next keyframe; masks cleared:
    back to remux. No picture is lost across the switches."""
    require_clip()
    source = open_source(f"file:{CLIP}", sample_interval=None)  # real time: 25 fps
    recorder, index, sealed, _ = make_recorder(
        source, tmp_path, evidence_key, config={"segment_seconds": 60.0}
    )
    await recorder.start()
    await wait_for(lambda: recorder.status.state is RecorderState.RECORDING, 10, "recording")
    recorder.set_masks([TOP_LEFT])
    await wait_for(lambda: len(sealed) >= 1, 15, "remux segment sealed at the next keyframe")
    recorder.set_masks([])
    await wait_for(lambda: len(sealed) >= 2, 15, "masked segment sealed at the next keyframe")
    await recorder.stop()

    paths, pictures = [], 0
    for entry in index.entries():
        with (tmp_path / entry.file_name).open("rb") as f:
            segment = read_segment(f, evidence_key)
        paths.append(segment.header.metadata["path"])
        packets = mp4_packets(segment.plaintext)
        if segment.header.metadata["path"] == "remux":
            reference = clip_packets()
            start = pictures % len(reference)
            for n, packet in enumerate(packets):
                assert bytes(packet) == reference[(start + n) % len(reference)]
        else:
            with av.open(io.BytesIO(segment.plaintext), "r") as c:
                for frame in c.decode(video=0):
                    _check_masked(frame.to_ndarray(format="bgr24"))
        pictures += len(packets)
    assert paths == ["remux", "encode", "remux"]
    assert recorder.masked_samples() == (), "cleared with the masks"
    index.close()
