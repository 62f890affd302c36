"""Maintenance callouts: raised from the units' faults with SLA deadlines in contract hours,
moved through their lifecycle by hand, verified when the unit shows the fault clear (a
passing self-test or its own clear event after the repair), swept for SLA breaches, and
notified to the contractor by email and webhook.

    raised -> acknowledged -> attending -> resolved -> verified -> closed

`CalloutService` (`service`) holds the `lifecycle` (`lifecycle`: states, steps, event
log) and the fault rules (`faults`); `sla` computes deadlines in contract hours,
`notify` delivers notifications, `views` shows callouts.
"""

from controller.callouts.faults import POWER_FAULTS, CalloutBatch, FaultRules
from controller.callouts.lifecycle import OPEN_STATES, STATES, SYSTEM, CalloutLifecycle
from controller.callouts.notify import Notifier, queue_notifications
from controller.callouts.service import CalloutService
from controller.callouts.views import (
    CalloutEventView,
    CalloutView,
    RepairFinding,
    repair_finding,
    repaired_at,
)

__all__ = [
    "OPEN_STATES",
    "POWER_FAULTS",
    "STATES",
    "SYSTEM",
    "CalloutBatch",
    "CalloutEventView",
    "CalloutLifecycle",
    "CalloutService",
    "CalloutView",
    "FaultRules",
    "Notifier",
    "RepairFinding",
    "queue_notifications",
    "repair_finding",
    "repaired_at",
]
