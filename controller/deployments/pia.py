"""The privacy impact assessment (PIA / DPIA) a council completes for every new location of
a deployable camera, following the structure of the ICO's DPIA template and the
Surveillance Camera Commissioner's DPIA for surveillance cameras.

Every model refuses unknown fields and every field says what it holds. Risks are scored on
the ICO matrix: likelihood (remote / possible / probable) x severity (minimal /
significant / severe) gives the overall risk (low / medium / high); each measure says its
effect and the residual risk left. A HIGH residual risk needs prior consultation with the
ICO (UK GDPR art. 36) before approval.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)

__all__ = [
    "CollateralIntrusion",
    "ConsultationRecord",
    "DpoAdvice",
    "EqualityAssessment",
    "Evaluation",
    "EvaluationFigures",
    "EvidenceItem",
    "EvidenceOfNeed",
    "IntrusionKind",
    "LawfulBasis",
    "Likelihood",
    "Measure",
    "PriorConsultation",
    "PrivacyImpactAssessment",
    "PrivacyMask",
    "ProtectedCharacteristic",
    "Referral",
    "ReferralSource",
    "Risk",
    "RiskLevel",
    "Severity",
    "Signage",
    "overall_risk",
]

Text = Annotated[str, Field(min_length=1, max_length=4000)]
Short = Annotated[str, Field(min_length=1, max_length=200)]
Unit01 = Annotated[float, Field(ge=0, le=1)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _drop_computed(cls, data: Any) -> Any:
        """Derived values (overall and residual risk, totals) are shown but never taken as
        input: a stored or re-sent PIA recomputes them."""
        if isinstance(data, dict) and cls.model_computed_fields:
            return {k: v for k, v in data.items() if k not in cls.model_computed_fields}
        return data


class ReferralSource(StrEnum):
    PUBLIC = "public"
    POLICE = "police"
    COUNCIL_SERVICE = "council_service"


class LawfulBasis(StrEnum):
    PUBLIC_TASK = "public_task"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"


class IntrusionKind(StrEnum):
    HOME = "home"
    GARDEN = "garden"
    PLACE_OF_WORSHIP = "place_of_worship"
    SCHOOL = "school"
    HEALTHCARE = "healthcare"
    OTHER = "other"


class ProtectedCharacteristic(StrEnum):
    """The nine protected characteristics of the Equality Act 2010."""

    AGE = "age"
    DISABILITY = "disability"
    GENDER_REASSIGNMENT = "gender_reassignment"
    MARRIAGE_CIVIL_PARTNERSHIP = "marriage_civil_partnership"
    PREGNANCY_MATERNITY = "pregnancy_maternity"
    RACE = "race"
    RELIGION_BELIEF = "religion_belief"
    SEX = "sex"
    SEXUAL_ORIENTATION = "sexual_orientation"


class Likelihood(StrEnum):
    REMOTE = "remote"
    POSSIBLE = "possible"
    PROBABLE = "probable"


class Severity(StrEnum):
    MINIMAL = "minimal"
    SIGNIFICANT = "significant"
    SEVERE = "severe"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return _RANK[self]


_RANK = {RiskLevel.LOW: 1, RiskLevel.MEDIUM: 2, RiskLevel.HIGH: 3}
_SCORE = {
    Likelihood.REMOTE: 1, Likelihood.POSSIBLE: 2, Likelihood.PROBABLE: 3,
    Severity.MINIMAL: 1, Severity.SIGNIFICANT: 2, Severity.SEVERE: 3,
}  # fmt: skip


def overall_risk(likelihood: Likelihood, severity: Severity) -> RiskLevel:
    """The ICO matrix: likelihood x severity scored 1..3 each; 1-2 low, 3-4 medium,
    6-9 high. (Remote + severe is medium; possible + significant is medium; probable +
    significant and possible + severe are high.)"""
    score = _SCORE[likelihood] * _SCORE[severity]
    return RiskLevel.LOW if score <= 2 else RiskLevel.MEDIUM if score <= 4 else RiskLevel.HIGH


class Referral(_Model):
    source: ReferralSource = Field(description="Who asked for the camera")
    referrer: Short = Field(description="The person, team or force that referred it")
    received_on: date = Field(description="When the request was received")


class EvidenceItem(_Model):
    reference: Short = Field(description="Crime or ASB reference (police or council log)")
    category: Short = Field(description="e.g. 'burglary', 'criminal damage', 'ASB: drug use'")
    count: int = Field(ge=0, description="Incidents under this reference in the period")


class EvidenceOfNeed(_Model):
    period_start: date = Field(description="First day of the period the figures cover")
    period_end: date = Field(description="Last day of the period the figures cover")
    items: list[EvidenceItem] = Field(min_length=1, description="Crime / ASB references")
    summary: Text = Field(description="What the figures show")

    @model_validator(mode="after")
    def _period(self) -> EvidenceOfNeed:
        if self.period_end < self.period_start:
            raise ValueError("the evidence period ends before it starts")
        return self

    @computed_field(description="Incidents over the period, all references")  # type: ignore[prop-decorator]
    @property
    def total_incidents(self) -> int:
        return sum(item.count for item in self.items)


class CollateralIntrusion(_Model):
    kind: IntrusionKind = Field(description="What private or sensitive place is in view")
    description: Text = Field(description="Where it is in the view and how much is seen")
    masked: bool = Field(description="Whether a privacy mask covers it")


class PrivacyMask(_Model):
    label: Short = Field(description="What the mask hides, e.g. 'windows of no. 12'")
    polygon: list[tuple[Unit01, Unit01]] = Field(
        min_length=3, max_length=64, description="Corners (x, y) normalised 0..1 on the frame"
    )


class Signage(_Model):
    description: Text = Field(description="Signs, wording, contact point and where placed")
    erect_by: date = Field(description="Date signs will be up (on or before the start)")
    erected_on: date | None = Field(None, description="Date the signs actually went up")
    remove_by: date = Field(description="Date signs come down (on or after the end)")
    removed_on: date | None = Field(None, description="Date the signs actually came down")

    @model_validator(mode="after")
    def _order(self) -> Signage:
        if self.remove_by < self.erect_by:
            raise ValueError("signage removal date is before its erection date")
        return self


class ConsultationRecord(_Model):
    party: Short = Field(description="Who was consulted: residents, ward members, police...")
    consulted_on: date = Field(description="When")
    outcome: Text = Field(description="What they said and how it was taken into account")


class EqualityAssessment(_Model):
    characteristic: ProtectedCharacteristic = Field(description="Protected characteristic")
    impact: str = Field(pattern="^(none|positive|negative)$", description="none/positive/negative")
    notes: str = Field("", max_length=4000, description="Why, and any mitigation")


class Measure(_Model):
    description: Text = Field(description="What is done to reduce the risk")
    effect: str = Field(pattern="^(eliminated|reduced|accepted)$", description="Its effect")
    residual_risk: RiskLevel = Field(description="Risk left once the measure is in place")

    @model_validator(mode="after")
    def _consistent(self) -> Measure:
        if self.effect == "eliminated" and self.residual_risk is not RiskLevel.LOW:
            raise ValueError("an eliminated risk leaves a low residual risk")
        return self


class Risk(_Model):
    title: Short = Field(description="The risk to individuals, in a line")
    description: Text = Field(description="Source of the risk and nature of potential harm")
    likelihood: Likelihood = Field(description="Likelihood of harm")
    severity: Severity = Field(description="Severity of harm")
    measures: list[Measure] = Field(default_factory=list, description="Measures for this risk")

    @computed_field(description="ICO matrix: likelihood x severity")  # type: ignore[prop-decorator]
    @property
    def overall(self) -> RiskLevel:
        return overall_risk(self.likelihood, self.severity)

    @computed_field(description="Lowest residual risk of its measures; else overall")  # type: ignore[prop-decorator]
    @property
    def residual(self) -> RiskLevel:
        if not self.measures:
            return self.overall
        return min((m.residual_risk for m in self.measures), key=lambda r: r.rank)

    @model_validator(mode="after")
    def _not_worse(self) -> Risk:
        for measure in self.measures:
            if measure.residual_risk.rank > self.overall.rank:
                raise ValueError(
                    f"risk {self.title!r}: a measure cannot leave more risk "
                    f"({measure.residual_risk}) than the risk itself ({self.overall})"
                )
        return self


class DpoAdvice(_Model):
    dpo_name: Short = Field(description="The data protection officer who advised")
    advised_on: date = Field(description="When the advice was given")
    advice: Text = Field(description="The DPO's advice")
    outcome: str = Field(pattern="^(accepted|overruled)$", description="accepted / overruled")
    reasons: str = Field("", max_length=4000, description="Why, required when overruled")

    @model_validator(mode="after")
    def _reasons(self) -> DpoAdvice:
        if self.outcome == "overruled" and not self.reasons.strip():
            raise ValueError("overruling the DPO's advice needs the reasons")
        return self


class PriorConsultation(_Model):
    """Prior consultation with the ICO (UK GDPR art. 36), needed for a high residual risk."""

    consulted_on: date = Field(description="When the ICO was consulted")
    reference: Short = Field(description="The ICO's case reference")
    outcome: Text = Field(description="The ICO's written advice, in short")


class PrivacyImpactAssessment(_Model):
    referral: Referral = Field(description="Where the request came from")
    evidence_of_need: EvidenceOfNeed = Field(description="Crime / ASB figures over a period")
    purpose: Text = Field(description="The specified purpose of the camera")
    pressing_need: Text = Field(description="The pressing need it meets")
    alternatives_considered: Text = Field(description="Less intrusive options and why not")
    lawful_basis: LawfulBasis = Field(LawfulBasis.PUBLIC_TASK, description="UK GDPR art. 6")
    lawful_basis_detail: Text = Field(
        "Public task: Criminal Justice and Public Order Act 1994 s.163; Crime and Disorder "
        "Act 1998 s.17",
        description="The law the task rests on",
    )
    affected: Text = Field(description="Who is affected: residents, passers-by, workers...")
    collateral_intrusion: list[CollateralIntrusion] = Field(
        default_factory=list, description="Homes, gardens, places of worship, schools in view"
    )
    reference_frame: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        title="Picture the masks were drawn on",
        description="SHA-256 of the unit's reference picture the masks were drawn on",
    )
    masks: list[PrivacyMask] = Field(
        default_factory=list, validate_default=True, description="Privacy masks"
    )
    signage: Signage = Field(description="Signage plan and dates")
    retention_days: int = Field(31, ge=1, le=3650, description="Days footage is kept")
    consultation: list[ConsultationRecord] = Field(
        default_factory=list, description="Consultation done"
    )
    equality: list[EqualityAssessment] = Field(
        description="Equality impact on each of the nine protected characteristics"
    )
    risks: list[Risk] = Field(min_length=1, description="Risks to individuals and measures")
    dpo_advice: DpoAdvice | None = Field(None, description="DPO advice (needed to submit)")
    prior_consultation: PriorConsultation | None = Field(
        None, description="ICO prior consultation (needed when residual risk is high)"
    )

    @field_validator("masks")
    @classmethod
    def _claimed(cls, masks: list[PrivacyMask], info: ValidationInfo) -> list[PrivacyMask]:
        intrusions = info.data.get("collateral_intrusion") or []
        claimed = [c.kind.value for c in intrusions if c.masked]
        if claimed and not masks:
            raise ValueError(f"intrusion marked masked ({', '.join(claimed)}) but no mask drawn")
        return masks

    @field_validator("equality")
    @classmethod
    def _all_nine(cls, equality: list[EqualityAssessment]) -> list[EqualityAssessment]:
        seen = [e.characteristic for e in equality]
        missing = [c.value.replace("_", " ") for c in ProtectedCharacteristic if c not in seen]
        if missing:
            raise ValueError(f"equality impact missing for: {', '.join(missing)}")
        if len(seen) != len(set(seen)):
            raise ValueError("equality impact lists a characteristic twice")
        return equality

    @computed_field(description="Highest residual risk over all risks")  # type: ignore[prop-decorator]
    @property
    def residual_risk(self) -> RiskLevel:
        return max((r.residual for r in self.risks), key=lambda r: r.rank)

    def mask_polygons(self) -> list[list[tuple[float, float]]]:
        return [list(mask.polygon) for mask in self.masks]


class EvaluationFigures(_Model):
    period_start: date = Field(description="First day of the period")
    period_end: date = Field(description="Last day of the period")
    crime: int = Field(ge=0, description="Recorded crime in the area")
    asb: int = Field(ge=0, description="Recorded anti-social behaviour")
    incidents_captured: int = Field(0, ge=0, description="Incidents the camera captured")
    arrests: int = Field(0, ge=0, description="Arrests instigated or assisted by the camera")
    evidence_releases: int = Field(0, ge=0, description="Footage released to police/others")

    @model_validator(mode="after")
    def _period(self) -> EvaluationFigures:
        if self.period_end < self.period_start:
            raise ValueError("the period ends before it starts")
        return self


class Evaluation(_Model):
    before: EvaluationFigures = Field(description="Figures before the deployment")
    during: EvaluationFigures = Field(description="Figures while deployed")
    after: EvaluationFigures = Field(description="Figures after removal")
    complaints: int = Field(0, ge=0, description="Complaints about the camera")
    conclusion: Text = Field(description="Was it effective and proportionate; lessons")
    evaluated_at: AwareDatetime | None = Field(None, description="Set by the controller")

    @model_validator(mode="after")
    def _ordered(self) -> Evaluation:
        if not (
            self.before.period_end <= self.during.period_start
            and self.during.period_end <= self.after.period_start
        ):
            raise ValueError("evaluation periods must run before, during, after in order")
        return self
