"""Runs the configured checks, turns results into a report, and tracks faults with
hysteresis so a flickering check does not flood the control room with callouts."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from edge_agent.selftest.outcome import CheckOutcome, ReportVerdict, worst_verdict
from edge_agent.selftest.thresholds import SelfTestThresholds
from protocol.faults import FaultCode
from protocol.messages import SelfTestReport as SelfTestReportMessage

__all__ = [
    "FaultTracker",
    "FaultTransition",
    "SelfTestCheck",
    "SelfTestReport",
    "SelfTestRunner",
    "Trigger",
]

log = logging.getLogger(__name__)

Trigger = Literal["boot", "schedule", "command", "manual"]
CheckResultT = CheckOutcome | Sequence[CheckOutcome]
CheckFn = Callable[[], CheckResultT | Awaitable[CheckResultT]]


@dataclass(frozen=True, slots=True)
class SelfTestCheck:
    """One check as the runner sees it.

    `run` is a coroutine function, or a plain function when `blocking` is true (disk I/O,
    image analysis): the runner then runs it in a worker thread so the agent's loop keeps
    serving MQTT. It returns one outcome, or several for a suite that shares work (the
    picture checks share their sampled frames). `fault` is what a crash or time-out of the
    check reports.
    """

    name: str
    run: CheckFn
    fault: FaultCode | None = None
    blocking: bool = False
    timeout_s: float | None = None
    """Overrides the thresholds' `check_timeout_s` for this check."""


@dataclass(frozen=True, slots=True)
class SelfTestReport:
    started_at: datetime
    finished_at: datetime
    outcomes: tuple[CheckOutcome, ...]
    trigger: Trigger = "manual"

    @property
    def verdict(self) -> ReportVerdict:
        return worst_verdict(o.verdict for o in self.outcomes)

    @property
    def failed(self) -> list[CheckOutcome]:
        return [o for o in self.outcomes if o.verdict == "fail"]

    def outcome(self, name: str) -> CheckOutcome:
        for candidate in self.outcomes:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def to_message(
        self,
        *,
        unit_id: str,
        seq: int,
        boot_id: str,
        report_id: str,
        command_id: str | None = None,
        sent_at: datetime | None = None,
    ) -> SelfTestReportMessage:
        """The `selftest` telemetry message for the controller."""
        return SelfTestReportMessage(
            unit_id=unit_id,
            seq=seq,
            sent_at=sent_at or datetime.now(UTC),
            boot_id=boot_id,
            report_id=report_id,
            trigger=self.trigger,
            command_id=command_id,
            started_at=self.started_at,
            finished_at=self.finished_at,
            verdict=self.verdict,
            checks=[o.to_message() for o in self.outcomes],
        )


class SelfTestRunner:
    """Runs every check concurrently, each under its own time limit. A check that raises
    or overruns becomes a `fail` naming the reason; the runner itself never raises."""

    def __init__(
        self,
        checks: Sequence[SelfTestCheck],
        *,
        thresholds: SelfTestThresholds | None = None,
        unit_id: str = "-",
    ) -> None:
        names = [c.name for c in checks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate check names: {', '.join(duplicates)}")
        self._checks = list(checks)
        self.thresholds = thresholds or SelfTestThresholds()
        self._unit_id = unit_id

    @property
    def check_names(self) -> list[str]:
        return [c.name for c in self._checks]

    async def run(self, trigger: Trigger = "manual") -> SelfTestReport:
        started = datetime.now(UTC)
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._run_one(check), name=f"selftest:{check.name}")
                for check in self._checks
            ]
        outcomes = tuple(outcome for task in tasks for outcome in task.result())
        report = SelfTestReport(started, datetime.now(UTC), outcomes, trigger)
        log.info(
            "selftest unit=%s trigger=%s verdict=%s failed=%s",
            self._unit_id,
            trigger,
            report.verdict,
            ",".join(o.name for o in report.failed) or "-",
        )
        return report

    async def _run_one(self, check: SelfTestCheck) -> list[CheckOutcome]:
        limit = check.timeout_s or self.thresholds.check_timeout_s
        started = time.monotonic()
        try:
            async with asyncio.timeout(limit):
                if check.blocking:
                    result = await asyncio.to_thread(check.run)
                else:
                    result = check.run()
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            reason = f"check did not finish within {limit:g} s"
        except Exception as exc:  # a broken check is a finding, never a crash of the agent
            log.warning(
                "selftest unit=%s check=%s raised %s", self._unit_id, check.name, type(exc).__name__
            )
            reason = f"check error: {type(exc).__name__}: {exc}"
        else:
            if isinstance(result, CheckOutcome):
                return [result]
            if isinstance(result, Sequence) and all(isinstance(o, CheckOutcome) for o in result):
                return list(result)
            reason = f"check returned {type(result).__name__}, not an outcome"
        log.warning(
            "selftest unit=%s check=%s fault=%s failed after %.1f s: %s",
            self._unit_id,
            check.name,
            check.fault or "-",
            time.monotonic() - started,
            reason,
        )
        return [CheckOutcome(check.name, "fail", None, None, "", reason, check.fault)]


@dataclass(frozen=True, slots=True)
class FaultTransition:
    """A fault raised or cleared by the tracker."""

    kind: Literal["raised", "cleared"]
    fault: FaultCode
    check: str
    detail: str


@dataclass
class _CheckState:
    fault: FaultCode | None = None
    passes: int = 0
    detail: str = field(default="")


class FaultTracker:
    """Raises a check's fault on its first failure and clears it only after the check
    passed `clear_after` consecutive times (default 2): a check flickering between pass and
    fail raises one fault, not a storm. A `warn` or a `not_assessed` neither raises nor
    counts towards clearing.

    State is per check name; `restore()` reloads the faults open before a restart.
    """

    def __init__(self, *, clear_after: int = 2) -> None:
        if clear_after < 1:
            raise ValueError("clear_after must be at least 1")
        self.clear_after = clear_after
        self._state: dict[str, _CheckState] = {}

    @property
    def open_faults(self) -> dict[str, FaultCode]:
        """Check name -> the fault it holds open."""
        return {name: s.fault for name, s in self._state.items() if s.fault is not None}

    def restore(self, open_faults: dict[str, FaultCode]) -> None:
        for name, fault in open_faults.items():
            self._state[name] = _CheckState(fault=fault)

    def update(self, outcomes: Iterable[CheckOutcome]) -> list[FaultTransition]:
        """Feed one report's outcomes; returns the transitions to announce, in order."""
        transitions: list[FaultTransition] = []
        for outcome in outcomes:
            state = self._state.setdefault(outcome.name, _CheckState())
            if outcome.verdict == "fail" and outcome.fault is not None:
                state.passes = 0
                if state.fault == outcome.fault:
                    continue
                if state.fault is not None:  # same check, another fault: the old one is over
                    transitions.append(self._clear(outcome.name, state, "replaced"))
                state.fault, state.detail = outcome.fault, outcome.message
                transitions.append(
                    FaultTransition("raised", outcome.fault, outcome.name, outcome.message)
                )
            elif outcome.verdict == "pass" and state.fault is not None:
                state.passes += 1
                if state.passes >= self.clear_after:
                    transitions.append(self._clear(outcome.name, state, outcome.message))
        for item in transitions:
            log.info("fault %s fault=%s check=%s", item.kind, item.fault, item.check)
        return transitions

    @staticmethod
    def _clear(name: str, state: _CheckState, detail: str) -> FaultTransition:
        assert state.fault is not None
        cleared = FaultTransition("cleared", state.fault, name, detail)
        state.fault, state.passes, state.detail = None, 0, ""
        return cleared
