"""The checks of a unit's self-test, by the name each carries in a report (`CheckResult.name`),
with what it looks at in words and the fault it raises when it fails.

With `protocol.faults` (each fault's title and what to check) this is the one table a
check or a fault is read by: the controller shows both through it, never a bare name.

A check's verdict is `pass`, `warn`, `fail`, or `not_assessed` when the check could not
judge (no picture to look at, no time server, no temperature sensor): nothing was
measured, so it counts neither for nor against the unit. A report's verdict is the worst
of its assessed checks (`warn` when none could be assessed).
"""

from __future__ import annotations

from enum import StrEnum

from protocol.faults import FaultCode

__all__ = ["CHECK_INFO", "VERDICTS", "CheckInfo", "CheckName"]

#: Every verdict a check may carry, from best to worst, then the neutral one.
VERDICTS = ("pass", "warn", "fail", "not_assessed")


class CheckName(StrEnum):
    CAMERA_SIGNAL = "camera_signal"
    IMAGE_BLACK = "image_black"
    IMAGE_OVEREXPOSED = "image_overexposed"
    BLUR = "blur"
    FROZEN = "frozen"
    VIEW_OBSTRUCTED = "view_obstructed"
    VIEW_MOVED = "view_moved"
    PRIVACY_MASKS = "privacy_masks"
    #: The picture checks as a whole, reported when they could not run at all.
    PICTURE = "picture"
    RECORDING = "recording"
    STORAGE = "storage"
    CLOCK = "clock"
    UPS = "ups"
    TEMPERATURE = "temperature"
    BROKER = "broker"

    @property
    def info(self) -> CheckInfo:
        return CHECK_INFO[self]


class CheckInfo:
    """What a check looks at, for the people who read its result."""

    __slots__ = ("fault", "looks_at", "title")

    def __init__(self, title: str, looks_at: str, fault: FaultCode | None) -> None:
        self.title = title
        self.looks_at = looks_at
        self.fault = fault


_F = FaultCode

CHECK_INFO: dict[CheckName, CheckInfo] = {
    CheckName.CAMERA_SIGNAL: CheckInfo(
        "Camera signal",
        "Frames per second from the camera, against the rate learned at deployment.",
        _F.CAMERA_NO_SIGNAL,
    ),
    CheckName.IMAGE_BLACK: CheckInfo(
        "Picture brightness",
        "Mean brightness of the picture, 0 (black) to 255 (white).",
        _F.IMAGE_BLACK,
    ),
    CheckName.IMAGE_OVEREXPOSED: CheckInfo(
        "Picture exposure",
        "Share of the picture clipped to white.",
        _F.IMAGE_OVEREXPOSED,
    ),
    CheckName.BLUR: CheckInfo(
        "Picture focus",
        "Sharpness of the picture as a share of its sharpness at deployment.",
        _F.BLUR,
    ),
    CheckName.FROZEN: CheckInfo(
        "Live picture",
        "How much the picture changes between samples a few seconds apart.",
        _F.FROZEN,
    ),
    CheckName.VIEW_OBSTRUCTED: CheckInfo(
        "Clear view",
        "Share of the view that lost its detail against the reference picture.",
        _F.VIEW_OBSTRUCTED,
    ),
    CheckName.VIEW_MOVED: CheckInfo(
        "Camera aim",
        "How far the view has shifted from the reference picture, as a share of its width.",
        _F.VIEW_MOVED,
    ),
    CheckName.PRIVACY_MASKS: CheckInfo(
        "Privacy masks",
        "Share of each masked area that is black in the recorded footage.",
        _F.PRIVACY_MASK_INEFFECTIVE,
    ),
    CheckName.PICTURE: CheckInfo(
        "Picture checks",
        "The picture checks as a whole; reported when they could not run.",
        _F.CAMERA_NO_SIGNAL,
    ),
    CheckName.RECORDING: CheckInfo(
        "Recording",
        "How long ago the newest recorded segment ended, and that it reads back intact.",
        _F.RECORDING_STALLED,
    ),
    CheckName.STORAGE: CheckInfo(
        "Storage",
        "Free space on the recording disk, and that a test file writes and reads back.",
        _F.STORAGE_FAILED,
    ),
    CheckName.CLOCK: CheckInfo(
        "Clock",
        "Difference between the unit's clock and a time server.",
        _F.CLOCK_DRIFT,
    ),
    CheckName.UPS: CheckInfo(
        "UPS",
        "That the UPS answers, and the result of its own last self-test.",
        _F.UPS_COMMS_LOST,
    ),
    CheckName.TEMPERATURE: CheckInfo(
        "Temperature",
        "The hottest temperature sensor inside the unit.",
        _F.OVER_TEMPERATURE,
    ),
    CheckName.BROKER: CheckInfo(
        "Link to the control room",
        "Round trip of a message through the broker.",
        _F.BROKER_UNREACHABLE,
    ),
}
