"""The unit's health: the faults it reports, and the self-tests that raise and clear most
of them.

`Faults` tells the controller of each fault raised or cleared (by a self-test, the power
monitor or the recorder's storage) and keeps the self-tests' open faults in `faults.json`
across restarts. `SelfTests` runs the suite at boot, at the scheduled times (shift change)
and on command, one run at a time, and reports each run.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from edge_agent.config import RuntimeSettings
from edge_agent.selftest import FaultTracker, SelfTestRunner, SelfTestThresholds, next_run
from edge_agent.selftest.outcome import CheckOutcome
from edge_agent.selftest.runner import SelfTestReport, Trigger
from edge_agent.telemetry import Publish, Telemetry
from protocol.faults import FaultCode
from protocol.messages import FaultCleared, FaultRaised

__all__ = ["Faults", "SelfTests"]

log = logging.getLogger(__name__)


class Faults:
    """Raises and clears faults towards the controller; the self-tests' open faults
    survive a restart, so the controller is told when they clear."""

    def __init__(self, path: Path, *, telemetry: Telemetry, publish: Publish) -> None:
        self.unit_id = telemetry.unit_id
        self._path = path
        self._telemetry = telemetry
        self._publish = publish
        self._tracker = FaultTracker()
        self._restore()

    @property
    def open_faults(self) -> dict[str, FaultCode]:
        """Check name -> the fault it holds open."""
        return self._tracker.open_faults

    async def raise_fault(
        self,
        code: FaultCode,
        detail: str,
        *,
        check: str | None = None,
        facts: dict[str, Any] | None = None,
    ) -> None:
        log.warning("unit=%s fault=%s raised: %s", self.unit_id, code, detail)
        body = FaultRaised(code=code, check=check, detail=detail[:2000], facts=facts or {})
        await self._publish(self._telemetry.event(body))

    async def clear_fault(self, code: FaultCode, detail: str) -> None:
        log.info("unit=%s fault=%s cleared", self.unit_id, code)
        await self._publish(self._telemetry.event(FaultCleared(code=code, detail=detail[:2000])))

    async def update(self, outcomes: Iterable[CheckOutcome]) -> None:
        """Feed a self-test's outcomes: save the open faults if they changed, then report
        each fault raised or cleared."""
        changes = self._tracker.update(outcomes)
        if changes:
            await asyncio.to_thread(self._save)
        for change in changes:
            if change.kind == "raised":
                await self.raise_fault(change.fault, change.detail, check=change.check)
            else:
                await self.clear_fault(change.fault, change.detail)

    def _restore(self) -> None:
        try:
            doc = json.loads(self._path.read_text())
            self._tracker.restore({name: FaultCode(code) for name, code in doc.items()})
        except FileNotFoundError:
            pass
        except (ValueError, AttributeError) as exc:
            log.warning("unit=%s open faults not restored: %s", self.unit_id, exc)

    def _save(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps({k: v.value for k, v in self._tracker.open_faults.items()}))
        tmp.replace(self._path)


class SelfTests:
    """Runs the self-test suite (one run at a time), reports each run and feeds its
    outcomes to `Faults`."""

    def __init__(
        self,
        runner: SelfTestRunner,
        *,
        faults: Faults,
        settings: RuntimeSettings,
        at_boot: bool,
        timezone: str,
        telemetry: Telemetry,
        publish: Publish,
        clock: Callable[[], datetime],
    ) -> None:
        self.runner = runner
        self.unit_id = telemetry.unit_id
        self._faults = faults
        self._settings = settings
        self._at_boot = at_boot
        self._timezone = timezone
        self._telemetry = telemetry
        self._publish = publish
        self._clock = clock
        self.lock = asyncio.Lock()
        self.last_report: SelfTestReport | None = None

    @property
    def thresholds(self) -> SelfTestThresholds:
        """The limits the checks apply (a signed `set_config` may change them)."""
        return self.runner.thresholds

    @thresholds.setter
    def thresholds(self, value: SelfTestThresholds) -> None:
        self.runner.thresholds = value

    async def run(self, trigger: Trigger, command_id: str | None = None) -> SelfTestReport:
        async with self.lock:
            report = await self.runner.run(trigger)
            self.last_report = report
            report_id = f"{self.unit_id}-{uuid.uuid4().hex[:12]}"
            await self._publish(self._telemetry.selftest(report, report_id, command_id))
            await self._faults.update(report.outcomes)
            return report

    async def run_schedule(self) -> None:
        """At boot (once there is some picture), then at each scheduled time."""
        if self._at_boot:
            await asyncio.sleep(8)  # a few seconds of picture first
            await self.run("boot")
        while True:
            due = next_run(self._clock(), self._settings.selftest_schedule, self._timezone)
            delay = max(0.0, (due - self._clock()).total_seconds())
            await asyncio.sleep(min(delay, 60))  # re-evaluate: the schedule may change
            if self._clock() >= due:
                await self.run("schedule")
