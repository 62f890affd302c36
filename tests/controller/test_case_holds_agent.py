"""A case's hold on the real agent through the real broker: approval by a second data
controller sends the signed hold, the unit's acknowledgement shows on the case; the agent
restarted with its clock moved 32 days on (libfaketime) deletes, by retention, every
segment but the held one; back on today's clock, closing the case releases the hold on
the unit and the release is acknowledged. Every step is in the audit chain."""

from __future__ import annotations

import asyncio
import glob
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from controller import audit
from controller.config import ControllerSettings
from controller.evidence import holds
from controller.evidence.case_models import CaseRequest
from controller.evidence.case_views import case_detail
from controller.evidence.cases import CaseWorkflow
from controller.store import Database
from controller.store.audit import AuditEntry
from edge_agent.recorder.holds import HoldStore
from edge_agent.recorder.index import SegmentIndex
from protocol.messages import RecordingIndex
from tests.controller.conftest import eventually, running_controller
from tests.edge_agent.test_agent_service import publish_authz, watch
from tests.harness import MosquittoBroker
from tests.harness.agent import AgentProcess, authorization
from tests.harness.binaries import missing, require_binary

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FAKETIME_SITE = ROOT / "tests" / "harness" / "faketime_site"
#: Past the default retention of 31 days.
MOVED_ON = timedelta(days=32)


@dataclass(frozen=True)
class Person:
    username: str
    role: str


def libfaketime() -> str:
    """Debian's libfaketime (package faketime), preloaded straight into the agent so that
    signals reach the agent itself (the `faketime` wrapper does not pass them on)."""
    require_binary("faketime")
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        missing("libfaketime.so.1 is not installed (Debian package faketime)")
    return found[0]


def start_with_clock_moved(agent: AgentProcess, by: timedelta) -> None:
    """Start the agent with its time of day `by` ahead (the monotonic clock stays real:
    see tests/harness/faketime_site/sitecustomize.py)."""
    path = [str(FAKETIME_SITE), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = os.environ | {
        "PYTHONUNBUFFERED": "1",
        "LD_PRELOAD": libfaketime(),
        "FAKETIME": f"+{by.days}d",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": os.pathsep.join(path),
    }
    with agent.log_path.open("ab") as log:
        agent.proc = subprocess.Popen(
            [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(agent.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_hold_acknowledged_by_the_real_agent_survives_retention_and_is_released(
    db: Database,
    broker: MosquittoBroker,
    controller_settings: Callable[..., ControllerSettings],
    tmp_path: Path,
) -> None:
    fleet = broker.fleet
    agent = AgentProcess(
        fleet,
        "cam-01",
        broker,
        tmp_path,
        camera="synthetic:?width=320&height=180&fps=5",
        storage={"segment_seconds": 5, "retention_interval_s": 5},
    )
    settings = controller_settings(broker)
    try:
        async with running_controller(settings, db) as service, watch(broker) as w:
            agent.start()
            await publish_authz(w, fleet, "cam-01", authorization(fleet, "cam-01"))

            def sealed() -> list[Any]:
                seen = {s.segment_id: s for m in w.of(RecordingIndex) for s in m.segments}
                return sorted(seen.values(), key=lambda s: s.started_at)

            segments = await eventually(lambda: len(sealed()) >= 4 and sealed(), within=60)
            held = segments[1]
            flow = CaseWorkflow(db, link=service.link)
            case = await flow.raise_case(
                Person("olly", "operator"),
                CaseRequest.model_validate(
                    {
                        "case_type": "police_request",
                        "external_ref": "URN 44/1001",
                        "requester_name": "DC Jones",
                        "requester_org": "Example Constabulary",
                        "lawful_basis": "Prevention and detection of crime",
                        "reason": "Criminal damage to a parked car.",
                        "ranges": [
                            {
                                "unit_id": "cam-01",
                                "start": held.started_at + timedelta(milliseconds=500),
                                "end": held.ended_at - timedelta(milliseconds=500),
                            }
                        ],
                    }
                ),
            )
            await flow.approve(Person("dora", "data_controller"), case.number)

            async def hold_state() -> str:
                async with db.session() as session:
                    detail = await case_detail(session, case.number, now=flow.clock())
                return detail.holds[0].state

            await eventually(lambda: _is(hold_state, "held"), within=15)
            async with db.session() as session:
                hold_id = (
                    (await case_detail(session, case.number, now=flow.clock())).holds[0].hold_id
                )
            assert await asyncio.to_thread(agent.terminate) == 0

        # The unit's own records, read with the agent stopped.
        data = agent.data_dir
        store = HoldStore(data / "holds.sqlite")
        try:
            on_unit = store.get(hold_id)
        finally:
            store.close()
        assert on_unit is not None and on_unit.active and on_unit.reference == case.number
        assert (on_unit.start, on_unit.end) == (
            held.started_at + timedelta(milliseconds=500),
            held.ended_at - timedelta(milliseconds=500),
        )
        live_before = _live_segments(agent)
        assert held.segment_id in live_before and len(live_before) >= 4

        # 32 days on: retention deletes everything but the held segment.
        start_with_clock_moved(agent, MOVED_ON)
        await asyncio.to_thread(
            agent.wait_for, lambda: "retention deleted=" in agent.log(), 60, "a retention sweep"
        )
        assert await asyncio.to_thread(agent.terminate) == 0
        live_after = _live_segments(agent)
        assert live_after == [held.segment_id], agent.log()[-3000:]
        files = {p.name for p in agent.segments()}
        assert any(held.segment_id in name for name in files)
        assert not any(s in name for s in live_before if s != held.segment_id for name in files)

        # Back on today's clock: closing the case releases the hold on the unit.
        async with running_controller(settings, db) as service:
            agent.start()
            flow = CaseWorkflow(db, link=service.link)
            await eventually(lambda: service.link.connected.is_set(), within=10)
            await flow.close(Person("dan", "data_controller"), case.number)
            await eventually(lambda: _is(hold_state, "released"), within=20)
            assert await asyncio.to_thread(agent.terminate) == 0
        store = HoldStore(data / "holds.sqlite")
        try:
            released = store.get(hold_id)
            assert released is not None and released.released_at is not None
        finally:
            store.close()
    finally:
        agent.kill()
    async with db.session() as session:
        actions = list(
            (
                await session.execute(
                    select(AuditEntry.action)
                    .where(AuditEntry.subject == holds.case_subject(case.number))
                    .order_by(AuditEntry.seq)
                )
            ).scalars()
        )
    assert [a for a in actions if a.startswith("case.")] == [
        "case.raise",
        "case.approve",
        "case.hold_sent",
        "case.hold_acknowledged",
        "case.close",
        "case.hold_release_sent",
        "case.hold_released",
    ]
    assert (await audit.verify(db)).ok


async def _is(probe: Callable[[], Any], wanted: str) -> bool:
    return bool(await probe() == wanted)


def _live_segments(agent: AgentProcess) -> list[str]:
    index = SegmentIndex(agent.data_dir / "index.sqlite", unit_id=agent.unit_id)
    try:
        return [e.segment_id for e in index.entries(include_deleted=False)]
    finally:
        index.close()
