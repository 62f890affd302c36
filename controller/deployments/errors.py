"""Errors of the deployment workflow, under the controller's root.

ControllerError
└── DeploymentError              (409; each class's `status` is its HTTP status)
    ├── UnknownLocation          no such location (404)
    ├── UnknownDeployment        no such deployment (404)
    ├── LocationInUse            a location with live deployments cannot be retired (409)
    ├── InvalidDeployment        a request that breaks the policy (dates, retention) (422)
    ├── DeploymentRefused        a step the workflow does not allow now; the message is
    │                            the sentence shown to the user (409)
    │   ├── ApprovalBlocked      approval needs something first (prior consultation)
    │   └── IncompleteRequest    a draft submitted before its request and PIA are complete;
    │                            `problems` names each field (422)
    └── NotPermitted             the caller's role or part in the request forbids it (403)
"""

from __future__ import annotations

from controller.errors import ControllerError

__all__ = [
    "ApprovalBlocked",
    "DeploymentError",
    "DeploymentRefused",
    "IncompleteRequest",
    "InvalidDeployment",
    "LocationInUse",
    "NotPermitted",
    "UnknownDeployment",
    "UnknownLocation",
]


class DeploymentError(ControllerError):
    """Root of the deployment workflow's errors."""

    status = 409


class UnknownLocation(DeploymentError):
    status = 404

    def __init__(self, location_id: int) -> None:
        super().__init__(f"no location #{location_id}")
        self.location_id = location_id


class UnknownDeployment(DeploymentError):
    status = 404

    def __init__(self, deployment_id: str) -> None:
        super().__init__(f"no deployment {deployment_id!r}")
        self.deployment_id = deployment_id


class LocationInUse(DeploymentError):
    status = 409

    def __init__(self, location_id: int, deployments: list[str]) -> None:
        super().__init__(
            f"location #{location_id} has live deployments ({', '.join(deployments)}): "
            "end them first"
        )
        self.location_id = location_id
        self.deployments = deployments


class InvalidDeployment(DeploymentError):
    """A request the policy does not allow (the message says which rule)."""

    status = 422

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeploymentRefused(DeploymentError):
    status = 409

    def __init__(self, deployment_id: str, state: str, action: str, reason: str) -> None:
        super().__init__(f"deployment {deployment_id} ({state}) cannot be {action}: {reason}")
        self.deployment_id = deployment_id
        self.state = state  # the deployment's workflow status (`status` is the HTTP one)
        self.action = action
        self.reason = reason


class ApprovalBlocked(DeploymentRefused):
    """Approval waits for something that must be recorded first."""

    status = 409


class IncompleteRequest(DeploymentRefused):
    """A draft that cannot be submitted yet: `problems` maps each field (its dotted path in
    the request, "" for the request as a whole) to what is wrong with it."""

    status = 422

    def __init__(self, deployment_id: str, problems: dict[str, str]) -> None:
        first = next(iter(problems.items()), ("", "it is not complete"))
        where = f"{first[0]}: " if first[0] else ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(
            deployment_id, "draft", "submitted", f"it is not complete: {where}{first[1]}{more}"
        )
        self.problems = problems


class NotPermitted(DeploymentError):
    status = 403

    def __init__(self, username: str, action: str, reason: str) -> None:
        super().__init__(f"{username} may not {action}: {reason}")
        self.username = username
        self.action = action
        self.reason = reason
