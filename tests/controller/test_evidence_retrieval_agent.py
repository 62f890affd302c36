"""Retrieval end to end with real parts: the real agent recording the sample clip and
reporting its index over the real broker, the real controller process with its HTTPS
evidence endpoint, a case raised and approved by two people. The controller sends the
signed upload command; the agent uploads the case's segments with its signed manifest,
is killed part way (SIGKILL) and started again, then the controller is killed part way
and started again; the upload resumes each time, completes, every file verifies, the
case is retrieved, and the controller's record shows no acknowledged chunk arrived
twice. The unit records throughout."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from controller.evidence.case_models import CaseRequest
from controller.evidence.cases import CaseWorkflow
from controller.evidence.store_layout import case_unit_dir
from controller.store import Database
from controller.store.evidence import CaseRow, RetrievalRow, RetrievedFileRow
from controller.store.reports import CheckpointRecord
from edge_agent.uploads import JobStore
from protocol.evidence_upload import MANIFEST_NAME
from protocol.messages import RecordingIndex
from provisioning import Fleet
from tests.controller.conftest import eventually
from tests.edge_agent.test_agent_service import publish_authz, watch
from tests.harness.agent import AgentProcess, authorization
from tests.harness.broker import MosquittoBroker, free_port
from tests.harness.controller import ControllerProcess, write_controller_config

pytestmark = pytest.mark.slow

UNIT = "cam-01"


@dataclass(frozen=True)
class Person:
    username: str
    role: str


async def _retrieval(db: Database) -> RetrievalRow | None:
    async with db.session() as session:
        return await session.scalar(select(RetrievalRow).where(RetrievalRow.unit_id == UNIT))


async def _received(db: Database) -> int:
    row = await _retrieval(db)
    return row.received_bytes if row is not None else 0


async def test_real_agent_uploads_a_case_through_kills_and_restarts(
    fresh_fleet: Any, make_broker: Any, tmp_path: Path
) -> None:
    fleet: Fleet = fresh_fleet(units=(UNIT,))
    broker: MosquittoBroker = make_broker(fleet)
    port = free_port()
    store = tmp_path / "store"
    url = f"sqlite+aiosqlite:///{tmp_path / 'controller.db'}"
    config = write_controller_config(
        tmp_path / "controller.toml", broker, url, evidence={"store_dir": str(store)}
    )
    with config.open("a") as toml:
        toml.write(f"\n[evidence.uploads]\nport = {port}\n")
    ctl = ControllerProcess(config, tmp_path / "ctl")
    agent = AgentProcess(
        fleet, UNIT, broker, tmp_path,
        evidence={"upload_url": f"https://127.0.0.1:{port}", "bandwidth_bytes_s": 120_000,
                  "chunk_bytes": 64 * 1024, "retry_base_s": 0.3, "retry_cap_s": 2.0},
    )  # fmt: skip
    db = Database(url)
    try:
        ctl.start()
        await ctl.wait_for_log("evidence endpoint listening", within=30)
        await ctl.wait_for_log("broker connected", within=30)
        async with watch(broker) as w:
            agent.start()
            await publish_authz(w, fleet, UNIT, authorization(fleet, UNIT))

            def sealed() -> list[Any]:
                seen = {s.segment_id: s for m in w.of(RecordingIndex) for s in m.segments}
                return sorted(seen.values(), key=lambda s: s.started_at)

            segments = await eventually(lambda: len(sealed()) >= 4 and sealed(), within=90)

        async def reported() -> bool:
            async with db.session() as session:
                count = await session.scalar(
                    select(CheckpointRecord.count)
                    .where(CheckpointRecord.unit_id == UNIT, CheckpointRecord.status == "verified")
                    .order_by(CheckpointRecord.count.desc())
                    .limit(1)
                )
            return count is not None and count >= 4

        await eventually(reported, within=30)
        wanted = segments[1:4]
        flow = CaseWorkflow(db)  # the controller process sends the commands
        case = await flow.raise_case(
            Person("olly", "operator"),
            CaseRequest.model_validate(
                {
                    "case_type": "police_request",
                    "external_ref": "URN 44/2002",
                    "requester_name": "DC Jones",
                    "requester_org": "Example Constabulary",
                    "lawful_basis": "Prevention and detection of crime",
                    "reason": "Theft from a market stall.",
                    "ranges": [
                        {
                            "unit_id": UNIT,
                            "start": wanted[0].started_at + timedelta(milliseconds=200),
                            "end": wanted[-1].ended_at - timedelta(milliseconds=200),
                        }
                    ],
                }
            ),
        )
        await flow.approve(Person("dora", "data_controller"), case.number)
        assert await eventually(lambda: _retrieval(db), within=10)
        total = sum(s.size for s in wanted)
        print(f"case {case.number}: {len(wanted)} segments, {total} bytes at 120 kB/s")

        # The unit dies part way through and boots again.
        await eventually(lambda: _received(db), within=60)
        agent.kill()
        before = await _received(db)
        agent.start()
        # The controller dies part way through and starts again.
        await eventually(lambda: _more(db, before), within=60)
        ctl.kill()
        ctl.start()
        await ctl.wait_for_log("evidence endpoint listening", within=30)

        async def retrieved() -> bool:
            async with db.session() as session:
                status = await session.scalar(
                    select(CaseRow.status).where(CaseRow.number == case.number)
                )
            return status == "retrieved"

        began = time.monotonic()
        await eventually(retrieved, within=180, every=0.5)
        print(f"retrieved {time.monotonic() - began:.1f} s after the controller restarted")
        assert await asyncio.to_thread(agent.terminate) == 0
    finally:
        agent.kill()
        ctl.stop()

    row = await _retrieval(db)
    assert row is not None and row.status == "complete" and row.received_bytes == row.total_bytes
    async with db.session() as session:
        files = list(
            (
                await session.execute(
                    select(RetrievedFileRow).where(RetrievedFileRow.retrieval_id == row.id)
                )
            ).scalars()
        )
    await db.dispose()
    assert {f.name for f in files} == {MANIFEST_NAME} | {f"{s.segment_id}.seg" for s in wanted}
    assert all(f.status == "verified" for f in files), [(f.name, f.problem) for f in files]
    assert [f.resent_bytes for f in files] == [0] * len(files)
    folder = case_unit_dir(store, case.number, UNIT)
    for f in files:
        if f.role == "segment":
            unit_copy = agent.data_dir / "segments" / f.name
            assert (folder / f.name).read_bytes() == unit_copy.read_bytes()
    job = JobStore(agent.data_dir / "uploads").get(row.upload_id)
    assert job is not None and job.status == "complete"
    sent = JobStore(agent.data_dir / "uploads").counter(row.upload_id).value
    print(f"unit sent {sent} bytes for {row.total_bytes}: {sent - row.total_bytes} again")
    # The unit kept recording while it uploaded.
    newest = max(p.stat().st_mtime for p in agent.segments())
    assert newest > (folder / MANIFEST_NAME).stat().st_mtime - 60
    assert len(agent.segments()) > len(segments)


async def _more(db: Database, than: int) -> bool:
    return await _received(db) > than
