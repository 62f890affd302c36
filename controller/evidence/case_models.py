"""What a caller sends to raise or move a case (the JSON API's bodies and the forms' data).

Rules that need the database or the clock (units exist, not in the future, length of a
range) are checked by `controller.evidence.cases`; these models check shape and order.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from protocol.topics import UNIT_ID_PATTERN

__all__ = [
    "CaseOutcome",
    "CaseRequest",
    "CaseType",
    "CloseRequest",
    "DecisionRequest",
    "ExtendRequest",
    "OutcomeRequest",
    "RangeIn",
    "RefuseRequest",
]

CaseType = Literal["police_request", "subject_access", "insurance_civil", "internal_review"]
CaseOutcome = Literal[
    "arrest", "charge", "caution", "no_further_action", "disclosed", "refused", "other"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class RangeIn(_Model):
    unit_id: str = Field(pattern=UNIT_ID_PATTERN.pattern, description="The unit that recorded it")
    start: AwareDatetime = Field(description="First instant of footage wanted")
    end: AwareDatetime = Field(description="Last instant of footage wanted")

    @model_validator(mode="after")
    def _ordered(self) -> RangeIn:
        if self.end <= self.start:
            raise ValueError("the end of a range must be after its start")
        return self


class CaseRequest(_Model):
    case_type: CaseType = Field(description="Why the footage is wanted")
    external_ref: str = Field(
        "", max_length=200, description="Police URN, incident number or SAR reference"
    )
    requester_name: str = Field(min_length=1, max_length=200, description="Who asks")
    requester_org: str = Field("", max_length=200, description="Their organisation")
    requester_contact: str = Field("", max_length=300, description="Email, phone or address")
    lawful_basis: str = Field(
        min_length=3, max_length=2000, description="The law that allows the disclosure"
    )
    reason: str = Field(min_length=3, max_length=4000, description="What happened, what is sought")
    received_at: AwareDatetime | None = Field(
        None, description="When a subject access request was received (its deadline runs from it)"
    )
    ranges: list[RangeIn] = Field(min_length=1, description="The unit and time ranges wanted")

    @model_validator(mode="after")
    def _sar(self) -> CaseRequest:
        if self.received_at is not None and self.case_type != "subject_access":
            raise ValueError("only a subject access request has a date of receipt")
        return self


class DecisionRequest(_Model):
    notes: str = Field("", max_length=2000, description="Anything the decision should record")


class RefuseRequest(_Model):
    reason: str = Field(min_length=3, max_length=2000, description="Why the request is refused")


class ExtendRequest(_Model):
    months: int = Field(ge=1, le=2, description="Further months beyond the first (1 or 2)")
    reason: str = Field(min_length=3, max_length=2000, description="Why more time is needed")


class OutcomeRequest(_Model):
    outcome: CaseOutcome = Field(description="What came of the case")
    note: str = Field("", max_length=2000, description="Anything to record with it")


class CloseRequest(_Model):
    note: str = Field("", max_length=2000, description="Anything to record on closing")
