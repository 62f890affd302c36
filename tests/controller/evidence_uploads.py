"""A controller ready to take a case's footage from unit cam-01, for the upload tests: the
fleet's units on record (with their signing keys), footage recorded on the unit and
reported over "MQTT" (the reports stored as ingest stores them), an approved case with a
range on the unit, its retrieval requested, and the real HTTPS evidence endpoint running
on a free port. `unit_uploader(...)` is the agent's own uploader for that unit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from controller.callouts import CalloutService
from controller.config import ControllerSettings
from controller.evidence.receiver import UploadReceiver
from controller.evidence.retrieval import request_retrieval
from controller.evidence.upload_settings import UploadEndpointFiles
from controller.evidence.uploads import UploadService
from controller.fleet import import_units
from controller.fleet.index_checkpoints import record_index
from controller.store import Database
from controller.store.evidence import CaseRangeRow, CaseRow, RetrievalRow, RetrievedFileRow
from edge_agent.config import EvidenceConfig
from edge_agent.uploads import Uploader
from protocol.messages import RecordingIndex, TimeRange, UploadEvidence, utcnow
from provisioning import Fleet
from tests.harness.unit_footage import UnitFootage

__all__ = ["Setup", "endpoint_files", "make_setup", "report", "unit_uploader", "wait_job"]

UNIT = "cam-01"


def endpoint_files(fleet: Fleet) -> UploadEndpointFiles:
    layout = fleet.layout
    return UploadEndpointFiles(
        cert_file=layout.uploads_cert,
        key_file=layout.uploads_key,
        ca_file=layout.ca_cert,
        crl_file=layout.crl,
    )


async def report(db: Database, message: RecordingIndex) -> None:
    """Store a unit's recording-index report as ingest does."""
    async with db.session() as session:
        await record_index(session, CalloutService(ControllerSettings()), message, utcnow())
        await session.commit()


@dataclass
class Setup:
    db: Database
    fleet: Fleet
    footage: UnitFootage
    case_id: int
    case_number: str
    upload_id: str
    start: datetime
    end: datetime
    store_dir: Path
    receiver: UploadReceiver

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.receiver.bound_port}"

    def action(self) -> UploadEvidence:
        return UploadEvidence(
            upload_id=self.upload_id,
            case_number=self.case_number,
            ranges=[TimeRange(start=self.start, end=self.end)],
        )

    async def restart_receiver(self) -> None:
        """Stop the endpoint (whatever it is doing) and start a new one on the same port."""
        port = self.receiver.bound_port
        await self.receiver.close()
        self.receiver = UploadReceiver(
            UploadService(self.db, store_dir=self.store_dir),
            endpoint_files(self.fleet),
            host="127.0.0.1",
            port=port,
            idle_timeout_s=10,
        )
        await self.receiver.start()

    async def retrieval(self) -> RetrievalRow:
        async with self.db.session() as session:
            row = await session.scalar(
                select(RetrievalRow).where(RetrievalRow.upload_id == self.upload_id)
            )
            assert row is not None
            return row

    async def files(self) -> dict[str, RetrievedFileRow]:
        row = await self.retrieval()
        async with self.db.session() as session:
            rows = await session.execute(
                select(RetrievedFileRow).where(RetrievedFileRow.retrieval_id == row.id)
            )
            return {f.name: f for f in rows.scalars()}

    async def case_status(self) -> str:
        async with self.db.session() as session:
            case = await session.get(CaseRow, self.case_id)
            assert case is not None
            return case.status


@contextlib.asynccontextmanager
async def make_setup(
    db: Database,
    fleet: Fleet,
    root: Path,
    *,
    segments: int = 6,
    payload: int = 200_000,
    wanted: tuple[int, int] = (1, 4),
) -> AsyncIterator[Setup]:
    """Footage of `segments` one-minute segments on cam-01, reported; a case asking for
    segments `wanted` (first, last), approved; its retrieval requested."""
    now = utcnow().replace(microsecond=0)
    async with db.session() as session:
        await import_units(session, fleet.root)
        await session.commit()
    footage = UnitFootage(fleet, UNIT, root / UNIT)
    begin = now - timedelta(hours=3)
    entries = footage.record(begin, segments, seconds=60, payload=payload)
    await report(db, footage.report())
    first, last = wanted
    start = entries[first].started_at + timedelta(seconds=10)
    end = entries[last].started_at + timedelta(seconds=10)
    async with db.session() as session:
        case = CaseRow(
            number=f"C-{now.year}-0001",
            case_type="police_request",
            requester_name="PC Example",
            lawful_basis="Prevention and detection of crime",
            reason="Assault near the bus station",
            status="approved",
            raised_by="olive",
            raised_at=now,
            decided_by="dora",
            decided_at=now,
        )
        session.add(case)
        await session.flush()
        session.add(CaseRangeRow(case_id=case.id, unit_id=UNIT, start=start, end=end))
        await session.commit()
        case_id, number = case.id, case.number
    (upload_id,) = await request_retrieval(db, None, case_id=case_id, actor="dora")
    store = root / "store"
    receiver = UploadReceiver(
        UploadService(db, store_dir=store),
        endpoint_files(fleet),
        host="127.0.0.1",
        port=0,
        idle_timeout_s=10,
    )
    await receiver.start()
    setup = Setup(db, fleet, footage, case_id, number, upload_id, start, end, store, receiver)
    try:
        yield setup
    finally:
        await setup.receiver.close()
        footage.close()


def unit_uploader(
    setup: Setup,
    *,
    url: str | None = None,
    unit_id: str = UNIT,
    jobs: str = "uploads",
    **config: Any,
) -> Uploader:
    """The agent's uploader on the unit's footage, as the agent builds it."""
    bundle = setup.fleet.layout.bundle_dir(unit_id)
    values: dict[str, Any] = {
        "upload_url": url or setup.url,
        "ca_file": bundle / "ca.crt",
        "bandwidth_bytes_s": 0,
        "chunk_bytes": 64 * 1024,
        "retry_base_s": 0.05,
        "retry_cap_s": 0.5,
        "timeout_s": 10,
    }
    values.update(config)
    return Uploader(
        EvidenceConfig(**values),
        unit_id=unit_id,
        cert_file=bundle / "unit.crt",
        key_file=bundle / "unit.key",
        index=setup.footage.index,
        segments_dir=setup.footage.segments_dir,
        jobs_dir=setup.footage.root / jobs,
    )


async def wait_job(uploader: Uploader, upload_id: str, *, within: float) -> Any:
    """Until the uploader's job has ended; returns it."""
    async with asyncio.timeout(within):
        while True:
            job = await asyncio.to_thread(uploader.jobs.get, upload_id)
            if job is not None and job.status != "pending":
                return job
            await asyncio.sleep(0.05)
