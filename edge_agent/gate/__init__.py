"""The deployment gate: the unit records only while it holds a valid authorization
(`Gate`); `GateReports` tells the controller what the gate refused and when it opened or
closed."""

from edge_agent.gate.gate import Gate, GateEvent, GateOutcome, GateStateError
from edge_agent.gate.reports import GateReports

__all__ = ["Gate", "GateEvent", "GateOutcome", "GateReports", "GateStateError"]
