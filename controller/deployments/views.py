"""JSON shapes of locations and deployments for the API and pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from controller.store.deployments import DeploymentRow, LocationRow

__all__ = ["deployment_summary", "deployment_view", "location_view"]


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def location_view(row: LocationRow, history: list[DeploymentRow] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "address": row.address,
        "lat": row.lat,
        "lon": row.lon,
        "geofence_radius_m": row.geofence_radius_m,
        "notes": row.notes,
        "created_at": _iso(row.created_at),
        "created_by": row.created_by,
        "retired_at": _iso(row.retired_at),
    }
    if history is not None:
        out["deployments"] = [deployment_summary(d) for d in history]
    return out


def deployment_summary(row: DeploymentRow) -> dict[str, Any]:
    """What a list shows: no PIA content beyond the figures queried on."""
    return {
        "id": row.id,
        "unit_id": row.unit_id,
        "location_id": row.location_id,
        "status": row.status,
        "planned_start": _iso(row.planned_start),
        "planned_end": _iso(row.planned_end),
        "review_due": _iso(row.review_due),
        "residual_risk": row.residual_risk,
        "referral_source": row.referral_source,
        "retention_days": row.retention_days,
        "created_by": row.created_by,
        "submitted_by": row.submitted_by,
        "decided_by": row.decided_by,
        "decided_at": _iso(row.decided_at),
        "decision_reason": row.decision_reason,
        "authorization_id": row.authorization_id,
        "authorized_until": _iso(row.authorized_until),
        "lapsed_at": _iso(row.lapsed_at),
        "ended_at": _iso(row.ended_at),
        "end_reason": row.end_reason,
        "prior_consultation_needed": row.residual_risk == "high" and row.ico_consulted_on is None,
    }


def deployment_view(row: DeploymentRow) -> dict[str, Any]:
    out = deployment_summary(row)
    out.update(
        {
            "pia": row.pia,
            "profile": row.profile,
            "evaluation": row.evaluation,
            "created_at": _iso(row.created_at),
            "submitted_at": _iso(row.submitted_at),
            "review_reminded_at": _iso(row.review_reminded_at),
            "ended_by": row.ended_by,
            "renewals": row.renewals,
        }
    )
    return out
