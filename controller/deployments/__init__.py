"""Deployments gated on an approved privacy impact assessment: locations, the PIA, the
workflow, the signed authorizations sent to units, and the periodic review job."""

from controller.deployments.errors import (
    ApprovalBlocked,
    DeploymentError,
    DeploymentRefused,
    InvalidDeployment,
    LocationInUse,
    NotPermitted,
    UnknownDeployment,
    UnknownLocation,
)
from controller.deployments.models import DeploymentPolicy, DeploymentRequest, LocationIn
from controller.deployments.pia import PrivacyImpactAssessment, overall_risk
from controller.deployments.reminders import ReviewPass, review_job
from controller.deployments.workflow import Actor, DeploymentWorkflow

__all__ = [
    "Actor",
    "ApprovalBlocked",
    "DeploymentError",
    "DeploymentPolicy",
    "DeploymentRefused",
    "DeploymentRequest",
    "DeploymentWorkflow",
    "InvalidDeployment",
    "LocationIn",
    "LocationInUse",
    "NotPermitted",
    "PrivacyImpactAssessment",
    "ReviewPass",
    "UnknownDeployment",
    "UnknownLocation",
    "overall_risk",
    "review_job",
]
