"""Thresholds of every self-test check, with defaults calibrated on real footage.

Every field is a plain number so a `set_config` command can change one by its dotted key
(`thresholds.blur_ratio_fail`); `with_overrides` applies such a change and validates it.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_agent.errors import AgentError

__all__ = ["SelfTestThresholds", "ThresholdError"]


class ThresholdError(AgentError):
    """A threshold override that cannot be applied."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid self-test thresholds: {reason}")
        self.reason = reason


class SelfTestThresholds(BaseModel):
    """Limits of the self-test checks. `*_warn` values give early notice, `*_fail` values
    raise the check's fault."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # camera signal
    fps_warn_ratio: float = Field(
        0.8, gt=0, le=1, description="Warn below this share of the expected frame rate"
    )
    fps_fail_ratio: float = Field(
        0.5, gt=0, le=1, description="Fail below this share of the expected frame rate"
    )
    signal_timeout_s: float = Field(
        5.0, gt=0, description="Fail when the newest frame is older than this (s)"
    )
    # exposure
    black_luma_warn: float = Field(
        40.0, ge=0, le=255, description="Warn below this median luminance (0-255)"
    )
    black_luma_fail: float = Field(
        25.0, ge=0, le=255, description="Fail below this median luminance (0-255)"
    )
    clipped_warn_pct: float = Field(
        20.0, ge=0, le=100, description="Warn above this share of clipped (white) pixels, %"
    )
    clipped_fail_pct: float = Field(
        40.0, ge=0, le=100, description="Fail above this share of clipped (white) pixels, %"
    )
    # focus
    blur_ratio_warn: float = Field(
        0.6,
        gt=0,
        le=1,
        description="Warn below this sharpness, as a ratio to the deployment baseline",
    )
    blur_ratio_fail: float = Field(
        0.4,
        gt=0,
        le=1,
        description="Fail below this sharpness, as a ratio to the deployment baseline",
    )
    # frozen picture
    frozen_max_diff: float = Field(
        2.0,
        gt=0,
        description="Frozen when no two successive samples differ by more than this "
        "(mean grey levels after contrast stretch)",
    )
    frozen_min_span_s: float = Field(
        3.0, gt=0, description="Samples must span at least this long to call the picture frozen (s)"
    )
    # obstruction
    cell_lost_ratio: float = Field(
        0.3,
        gt=0,
        lt=1,
        description="A grid cell is lost when its texture falls below this ratio to the reference",
    )
    obstructed_warn_pct: float = Field(
        20.0, gt=0, le=100, description="Warn when this share of the view is lost, %"
    )
    obstructed_fail_pct: float = Field(
        30.0, gt=0, le=100, description="Fail when this share of the view is lost, %"
    )
    # view moved
    moved_warn_pct: float = Field(
        3.0,
        gt=0,
        description="Warn when the view moved by this much (mean corner displacement, % of width)",
    )
    moved_fail_pct: float = Field(
        5.0,
        gt=0,
        description="Fail when the view moved by this much (mean corner displacement, % of width)",
    )
    moved_min_inliers: int = Field(
        25, ge=6, description="Feature matches needed to trust a view comparison"
    )
    # privacy masks
    mask_dark_level: int = Field(
        32,
        ge=0,
        le=255,
        description="A masked pixel counts as blacked out at or below this grey level",
    )
    mask_dark_min_pct: float = Field(
        95.0, gt=0, le=100, description="Fail when fewer masked pixels than this are blacked out, %"
    )
    # recording
    recording_max_age_s: float = Field(
        150.0, gt=0, description="Fail when the newest segment ended longer ago than this (s)"
    )
    # storage
    storage_free_warn_pct: float = Field(
        15.0, ge=0, le=100, description="Warn below this share of free space, %"
    )
    storage_free_fail_pct: float = Field(
        5.0, ge=0, le=100, description="Fail below this share of free space, %"
    )
    # clock
    clock_warn_s: float = Field(
        1.0, gt=0, description="Warn when the clock is off by more than this (s)"
    )
    clock_fail_s: float = Field(
        5.0, gt=0, description="Fail when the clock is off by more than this (s)"
    )
    ntp_timeout_s: float = Field(3.0, gt=0, description="How long to wait for the NTP server (s)")
    # temperature
    temperature_warn_c: float = Field(75.0, description="Warn above this temperature (deg C)")
    temperature_fail_c: float = Field(85.0, description="Fail above this temperature (deg C)")
    # broker
    broker_rtt_warn_s: float = Field(
        2.0, gt=0, description="Warn when a broker round trip takes longer (s)"
    )
    broker_rtt_fail_s: float = Field(
        10.0, gt=0, description="Fail when a broker round trip takes longer (s)"
    )
    # running
    check_timeout_s: float = Field(
        20.0, gt=0, description="A check still running after this fails (s)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> SelfTestThresholds:
        pairs = [
            ("fps_fail_ratio", "fps_warn_ratio"),
            ("black_luma_fail", "black_luma_warn"),
            ("clipped_warn_pct", "clipped_fail_pct"),
            ("blur_ratio_fail", "blur_ratio_warn"),
            ("obstructed_warn_pct", "obstructed_fail_pct"),
            ("moved_warn_pct", "moved_fail_pct"),
            ("storage_free_fail_pct", "storage_free_warn_pct"),
            ("clock_warn_s", "clock_fail_s"),
            ("temperature_warn_c", "temperature_fail_c"),
            ("broker_rtt_warn_s", "broker_rtt_fail_s"),
        ]
        for low, high in pairs:
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} must not exceed {high}")
        return self

    def with_overrides(self, values: Mapping[str, float]) -> SelfTestThresholds:
        """A copy with some thresholds changed; keys may carry a `thresholds.` prefix."""
        changes = {key.removeprefix("thresholds."): value for key, value in values.items()}
        unknown = sorted(set(changes) - set(type(self).model_fields))
        if unknown:
            raise ThresholdError(f"unknown threshold {', '.join(unknown)}")
        try:
            return type(self).model_validate({**self.model_dump(), **changes})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "thresholds"
            raise ThresholdError(f"{where}: {first['msg']}") from exc
