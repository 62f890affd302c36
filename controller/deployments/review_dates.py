"""When a deployment's review falls due: the requested review date, held to the policy's
default and maximum interval."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from controller.deployments.errors import InvalidDeployment
from controller.deployments.models import DeploymentPolicy

__all__ = ["review_due"]


def _day_end(day: date) -> datetime:
    """A review date means 'by the end of that day' (UTC)."""
    return datetime.combine(day + timedelta(days=1), time(0), UTC)


def review_due(
    policy: DeploymentPolicy, start: datetime, review_by: date | None, now: datetime
) -> datetime:
    """The review deadline of a deployment starting at `start` (or now, if later): the end
    of `review_by`, or the policy's default interval; never beyond its maximum."""
    base = max(start, now)
    if review_by is None:
        return base + timedelta(days=policy.review_default_days)
    due = _day_end(review_by)
    latest = base + timedelta(days=policy.review_max_days)
    if due <= now:
        raise InvalidDeployment(f"the review date {review_by} has already passed")
    if due > latest + timedelta(days=1):
        raise InvalidDeployment(
            f"the review date {review_by} is more than {policy.review_max_days} days "
            "ahead (the policy's maximum)"
        )
    return min(due, latest)
