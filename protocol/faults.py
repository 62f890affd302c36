"""Fault codes raised by units (and by the controller about units), each with its default
maintenance-callout priority.

The priorities follow a public-space CCTV maintenance contract: P1 is an urgent callout
(the camera is not doing its job: no picture, no recording, evidence at risk), P2 is
non-urgent (degraded picture, power running on UPS, storage getting low), P3 waits for
the next routine visit.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["FAULT_INFO", "FaultCode", "FaultInfo", "Priority"]


class Priority(StrEnum):
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"


class FaultCode(StrEnum):
    CAMERA_NO_SIGNAL = "camera_no_signal"
    IMAGE_BLACK = "image_black"
    IMAGE_OVEREXPOSED = "image_overexposed"
    BLUR = "blur"
    FROZEN = "frozen"
    VIEW_OBSTRUCTED = "view_obstructed"
    VIEW_MOVED = "view_moved"
    PRIVACY_MASK_INEFFECTIVE = "privacy_mask_ineffective"
    RECORDING_STALLED = "recording_stalled"
    STORAGE_LOW = "storage_low"
    STORAGE_FAILED = "storage_failed"
    CLOCK_DRIFT = "clock_drift"
    MAINS_FAILURE = "mains_failure"
    BATTERY_LOW = "battery_low"
    REPLACE_BATTERY = "replace_battery"
    UPS_SELFTEST_FAILED = "ups_selftest_failed"
    UPS_COMMS_LOST = "ups_comms_lost"
    OVER_TEMPERATURE = "over_temperature"
    UNIT_OFFLINE = "unit_offline"
    SELFTEST_OVERDUE = "selftest_overdue"
    UNIT_MOVED = "unit_moved"
    BROKER_UNREACHABLE = "broker_unreachable"
    INDEX_CHECK_FAILED = "index_check_failed"

    @property
    def info(self) -> FaultInfo:
        return FAULT_INFO[self]

    @property
    def priority(self) -> Priority:
        return FAULT_INFO[self].priority


class FaultInfo:
    """What a fault means to the people who fix it."""

    __slots__ = ("advice", "priority", "raised_by", "title")

    def __init__(self, priority: Priority, title: str, advice: str, raised_by: str = "unit"):
        self.priority = priority
        self.title = title
        self.advice = advice
        self.raised_by = raised_by


P1, P2, P3 = Priority.P1, Priority.P2, Priority.P3

FAULT_INFO: dict[FaultCode, FaultInfo] = {
    FaultCode.CAMERA_NO_SIGNAL: FaultInfo(
        P1, "Camera gives no picture", "Check the camera cable, power to the camera and its stream."
    ),
    FaultCode.IMAGE_BLACK: FaultInfo(
        P1, "Picture is black", "Check the lens cap, IR illuminator and exposure settings."
    ),
    FaultCode.IMAGE_OVEREXPOSED: FaultInfo(
        P2, "Picture is washed out", "Check exposure, iris and whether the camera faces a light."
    ),
    FaultCode.BLUR: FaultInfo(
        P2, "Picture is out of focus", "Clean the dome or lens; refocus; check for condensation."
    ),
    FaultCode.FROZEN: FaultInfo(
        P1, "Picture is frozen", "The stream repeats one image: restart the camera or encoder."
    ),
    FaultCode.VIEW_OBSTRUCTED: FaultInfo(
        P1, "View is obstructed", "Something covers part of the view: foliage, a sign, vandalism."
    ),
    FaultCode.VIEW_MOVED: FaultInfo(
        P2, "Camera has been knocked", "The view no longer matches the reference: realign it."
    ),
    FaultCode.PRIVACY_MASK_INEFFECTIVE: FaultInfo(
        P1,
        "Privacy masks are not applied",
        "Recorded footage shows areas the PIA masks: stop and check the recorder.",
    ),
    FaultCode.RECORDING_STALLED: FaultInfo(
        P1, "Recording has stopped", "No new footage is being written: check storage and recorder."
    ),
    FaultCode.STORAGE_LOW: FaultInfo(
        P2, "Storage is nearly full", "Held evidence is filling the disk: export or release holds."
    ),
    FaultCode.STORAGE_FAILED: FaultInfo(
        P1, "Storage has failed", "The recording disk cannot be written: replace the card or disk."
    ),
    FaultCode.CLOCK_DRIFT: FaultInfo(
        P2, "Clock is wrong", "Footage would carry the wrong time: check NTP and the RTC battery."
    ),
    FaultCode.MAINS_FAILURE: FaultInfo(
        P2, "Mains power has failed", "The unit runs on its UPS or battery: restore the supply."
    ),
    FaultCode.BATTERY_LOW: FaultInfo(
        P1, "Battery is low", "The unit will stop recording soon: restore power or swap battery."
    ),
    FaultCode.REPLACE_BATTERY: FaultInfo(
        P2, "Battery needs replacing", "The UPS reports a worn battery: replace it."
    ),
    FaultCode.UPS_SELFTEST_FAILED: FaultInfo(
        P2, "UPS failed its self-test", "Service the UPS; its battery may not carry the load."
    ),
    FaultCode.UPS_COMMS_LOST: FaultInfo(
        P2, "UPS does not answer", "Check the UPS cable and that the NUT service is running."
    ),
    FaultCode.OVER_TEMPERATURE: FaultInfo(
        P2, "Unit is too hot", "Check the enclosure fan, vents and sun shield."
    ),
    FaultCode.UNIT_OFFLINE: FaultInfo(
        P1, "Unit is offline", "No contact: check power and the 4G or network link.", "controller"
    ),
    FaultCode.SELFTEST_OVERDUE: FaultInfo(
        P2,
        "Function check overdue",
        "The unit missed its twice-daily function check: run one remotely.",
        "controller",
    ),
    FaultCode.UNIT_MOVED: FaultInfo(
        P1, "Unit moved off its site", "The unit is outside its approved geofence: recording stops."
    ),
    FaultCode.BROKER_UNREACHABLE: FaultInfo(
        P3, "Broker round trip failing", "The unit cannot reach the control room reliably."
    ),
    FaultCode.INDEX_CHECK_FAILED: FaultInfo(
        P1,
        "Recording index failed its check",
        "The unit's signed record of its footage does not verify or does not continue the "
        "record the control room holds: footage may have been altered, removed or replaced. "
        "Treat its footage as unverified; inspect the unit and its storage.",
        "controller",
    ),
}
