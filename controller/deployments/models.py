"""What people send to the deployment workflow, and its policy settings."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from controller.deployments.pia import Evaluation, PriorConsultation, PrivacyImpactAssessment
from protocol.messages import RecordingProfile
from protocol.topics import UNIT_ID_PATTERN

__all__ = [
    "ApproveRequest",
    "DeploymentPolicy",
    "DeploymentRequest",
    "DeploymentUpdate",
    "DraftSave",
    "DraftStart",
    "EvaluationRequest",
    "LocationIn",
    "PriorConsultationRequest",
    "ReasonRequest",
    "RenewRequest",
]

Reason = Annotated[str, Field(min_length=3, max_length=4000)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentPolicy(_Model):
    """How long an approval lasts before its review, and when reminders go out."""

    review_default_days: int = Field(90, ge=1, le=3650, description="Review after this many days")
    review_max_days: int = Field(365, ge=1, le=3650, description="Latest review allowed, days")
    reminder_days: int = Field(14, ge=0, le=365, description="Remind this many days before")
    retention_max_days: int = Field(31, ge=1, le=3650, description="Longest retention allowed")
    reminder_webhooks: list[str] = Field(
        default_factory=list, description="Webhook URLs told when a review falls due"
    )

    @model_validator(mode="after")
    def _order(self) -> DeploymentPolicy:
        if self.review_default_days > self.review_max_days:
            raise ValueError("review_default_days exceeds review_max_days")
        return self


class LocationIn(_Model):
    name: str = Field(min_length=1, max_length=200, description="Short unique name")
    address: str = Field("", max_length=500, description="Street address or description")
    lat: float = Field(ge=-90, le=90, description="Latitude of the camera position (WGS84)")
    lon: float = Field(ge=-180, le=180, description="Longitude of the camera position (WGS84)")
    geofence_radius_m: float = Field(
        150, gt=0, le=100_000, description="The unit must stay within this many metres"
    )
    notes: str = Field("", max_length=4000, description="Access, mounting, power, hazards")


class DraftStart(_Model):
    """What a deployment request needs before its PIA is begun: the unit, the place and
    the dates. A draft holds these and the PIA as far as it is filled in."""

    unit_id: str = Field(
        pattern=UNIT_ID_PATTERN.pattern, max_length=64, description="Unit to deploy"
    )
    location_id: int = Field(ge=1, description="Where")
    planned_start: AwareDatetime = Field(description="Recording may start from")
    planned_end: AwareDatetime = Field(description="Recording must stop by")
    review_by: date | None = Field(None, description="Review date (default from policy)")
    profile: RecordingProfile = Field(
        default_factory=RecordingProfile, description="Recording profile sent to the unit"
    )

    @field_validator("planned_end")
    @classmethod
    def _after_start(cls, end: datetime, info: ValidationInfo) -> datetime:
        start = info.data.get("planned_start")
        if isinstance(start, datetime) and end <= start:
            raise ValueError("the planned end must be after the planned start")
        return end


class DeploymentRequest(DraftStart):
    """A deployment request with its complete PIA."""

    pia: PrivacyImpactAssessment = Field(description="The privacy impact assessment")

    @model_validator(mode="after")
    def _window(self) -> DeploymentRequest:
        signage = self.pia.signage
        if signage.erect_by > self.planned_start.date():
            raise ValueError("signage must be up on or before the planned start")
        if signage.remove_by < self.planned_end.date():
            raise ValueError("signage must stay up until the planned end")
        return self


class DraftSave(_Model):
    """A draft saved as it stands: its unit, place and dates, and/or its PIA so far (kept
    as given, complete or not; checked when the draft is submitted)."""

    start: DraftStart | None = Field(None, description="The unit, place and dates, if changed")
    pia: dict[str, Any] | None = Field(None, description="The PIA as far as it is filled in")


class DeploymentUpdate(DeploymentRequest):
    """A draft replaced as a whole (same fields as the request)."""


class ApproveRequest(_Model):
    review_by: date | None = Field(None, description="Review date, if not the requested one")
    notes: str = Field("", max_length=4000, description="The manager's notes on the decision")
    assessment_read: bool = Field(
        False,
        description="The manager confirms they have read the assessment (recorded in the "
        "audit log; the pages ask for it before approving)",
    )


class ReasonRequest(_Model):
    reason: Reason = Field(description="Why (recorded and audited)")


class PriorConsultationRequest(PriorConsultation):
    """Record the ICO's prior consultation on a high residual risk."""


class RenewRequest(_Model):
    review_notes: Reason = Field(description="What the fresh review of the PIA found")
    review_by: date | None = Field(None, description="Next review date (default from policy)")
    planned_end: AwareDatetime | None = Field(None, description="A new planned end, if changed")
    pia: PrivacyImpactAssessment | None = Field(None, description="The PIA as reviewed, if changed")


class EvaluationRequest(Evaluation):
    """The evaluation at the end of a deployment."""
