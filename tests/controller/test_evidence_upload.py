"""Evidence retrieval over real HTTPS: the agent's uploader against the controller's
evidence endpoint, with the fleet's certificates on both ends, a real database and real
encrypted segments in the unit's own index.

- cut at random points (connection dropped, the endpoint restarted, the uploader killed
  and started again from its state folder) the upload resumes and completes, and the
  controller's record shows no acknowledged chunk arrived twice;
- a unit that rewrote its index after reporting it, a replaced segment and another
  unit's segment are each refused with the file named;
- a unit cannot upload outside an upload asked of it, nor to another unit's; a revoked
  unit cannot connect; a chunk re-sent over acknowledged bytes is refused and counted;
- the bandwidth cap holds within 15 %.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import shutil
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from controller.evidence.receiver import UploadReceiver
from controller.evidence.store_layout import case_unit_dir
from controller.evidence.uploads import UploadService
from controller.store import Database
from controller.store.audit import AuditEntry
from edge_agent.link.tls import client_context
from edge_agent.recorder.index import SegmentIndex
from protocol.evidence_upload import MANIFEST_NAME, ContentRange
from protocol.segment.manifest import SegmentManifest
from provisioning import Fleet
from tests.controller.evidence_uploads import (
    UNIT,
    Setup,
    endpoint_files,
    make_setup,
    report,
    unit_uploader,
    wait_job,
)
from tests.harness.cutting_proxy import CuttingProxy
from tests.harness.unit_footage import write_segment


async def _run(uploader: Any) -> asyncio.Task[None]:
    return asyncio.create_task(uploader.run(), name="test-uploader")


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def _same_bytes(setup: Setup, folder: Path, names: list[str]) -> None:
    for name in names:
        assert (folder / name).read_bytes() == (setup.footage.segments_dir / name).read_bytes()


async def _audit(db: Database, action: str) -> list[tuple[str, dict[str, Any]]]:
    """(subject, details) of each audit entry of `action`."""
    async with db.session() as session:
        rows = await session.execute(select(AuditEntry).where(AuditEntry.action == action))
        return [(e.subject, json.loads(e.details_json)) for e in rows.scalars()]


async def test_upload_cut_at_random_points_resumes_and_completes_without_resending(
    db: Database, fleet: Fleet, tmp_path: Path
) -> None:
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print(f"random seed {seed}")
    async with make_setup(db, fleet, tmp_path / "a01", segments=6, payload=400_000) as setup:
        proxy = CuttingProxy("127.0.0.1", setup.receiver.bound_port)
        await proxy.start()
        chunk = 64 * 1024
        uploader = unit_uploader(setup, url=f"https://127.0.0.1:{proxy.port}")
        await uploader.start_job("cmd-1", setup.action())
        job = uploader.jobs.get(setup.upload_id)
        assert job is not None
        total = job.total_bytes
        task = await _run(uploader)
        cuts = 0
        try:
            for kind in ("connection", "endpoint", "uploader", "connection"):
                # A random point of what is left, well before the end.
                target = proxy.relayed + rng.randrange(20_000, total // 6)
                async with asyncio.timeout(30):
                    while proxy.relayed < target:  # noqa: ASYNC110 - the uploader moves it
                        await asyncio.sleep(0.002)
                if kind == "connection":
                    proxy.cut_after(rng.randrange(1, 30_000))
                    await proxy.wait_cut(30)
                elif kind == "endpoint":  # its connections go with it
                    await setup.restart_receiver()
                else:  # the unit dies mid-chunk and boots again
                    await _stop(task)
                    uploader = unit_uploader(setup, url=f"https://127.0.0.1:{proxy.port}")
                    task = await _run(uploader)
                cuts += 1
            done = await wait_job(uploader, setup.upload_id, within=60)
        finally:
            await _stop(task)
            await proxy.close()
        assert done.status == "complete", done.problem
        files = await setup.files()
        assert all(f.status == "verified" for f in files.values()), {
            n: f.problem for n, f in files.items()
        }
        # The controller's record: not one acknowledged byte arrived a second time.
        assert [f.resent_bytes for f in files.values()] == [0] * len(files)
        row = await setup.retrieval()
        assert row.status == "complete" and row.received_bytes == row.total_bytes == total
        assert await setup.case_status() == "retrieved"
        folder = case_unit_dir(setup.store_dir, setup.case_number, UNIT)
        segments = [n for n in files if n != MANIFEST_NAME]
        _same_bytes(setup, folder, segments)
        assert not any((folder / ".incoming").iterdir())
        sent = uploader.jobs.counter(setup.upload_id).value
        print(f"cuts {cuts}: sent {sent} bytes for {total}, again {sent - total}")
        # What went again is at most what was in flight at each cut: under one chunk each.
        assert total <= sent < total + cuts * chunk


@pytest.mark.parametrize("tamper", ["rewritten_index", "replaced_segment", "other_units_segment"])
async def test_tampered_evidence_is_refused_naming_the_file(
    db: Database, fleet: Fleet, tmp_path: Path, tamper: str
) -> None:
    async with make_setup(db, fleet, tmp_path / "t01", segments=6) as setup:
        entries = setup.footage.index.entries()
        victim = entries[2]  # inside the case's range (segments 1..4)
        path = setup.footage.segments_dir / victim.file_name
        if tamper == "rewritten_index":
            # The unit rebuilds its index without segment 2 and signs it with its own key:
            # a consistent, validly signed chain, but not the one it reported.
            setup.footage.index.close()
            rebuilt = setup.footage.root / "rebuilt.sqlite"
            with SegmentIndex(
                rebuilt, unit_id=UNIT, signing_key=setup.footage.signing_key
            ) as index:
                for e in entries:
                    if e.segment_id != victim.segment_id:
                        index.add(e.summary(UNIT), file_name=e.file_name)
            path.unlink()
            shutil.move(rebuilt, setup.footage.root / "index.sqlite")
            for suffix in ("-wal", "-shm"):
                (setup.footage.root / f"index.sqlite{suffix}").unlink(missing_ok=True)
            setup.footage.index = SegmentIndex(
                setup.footage.root / "index.sqlite",
                unit_id=UNIT,
                signing_key=setup.footage.signing_key,
            )
            refused, why = MANIFEST_NAME, "rewritten"
        elif tamper == "replaced_segment":
            # Same segment id, same size, other content: a file swapped on the unit's disk.
            write_segment(
                path, unit_id=UNIT, segment_id=victim.segment_id,
                evidence_key=setup.footage.evidence_key, started_at=victim.started_at,
                ended_at=victim.ended_at, payload=b"\0" * 200_000,
            )  # fmt: skip
            refused, why = victim.file_name, "replaced or altered"
        else:
            # A segment recorded by cam-02 put in the place of cam-01's.
            write_segment(
                path, unit_id="cam-02", segment_id=victim.segment_id,
                evidence_key=setup.footage.evidence_key, started_at=victim.started_at,
                ended_at=victim.ended_at, payload=b"\1" * 200_000,
            )  # fmt: skip
            refused, why = victim.file_name, "recorded by unit 'cam-02'"
        assert tamper == "rewritten_index" or path.stat().st_size == victim.size
        uploader = unit_uploader(setup)
        await uploader.start_job("cmd-1", setup.action())
        task = await _run(uploader)
        try:
            done = await wait_job(uploader, setup.upload_id, within=30)
        finally:
            await _stop(task)
        files = await setup.files()
        assert files[refused].status == "refused"
        assert why in (files[refused].problem or ""), files[refused].problem
        assert done.status == "refused" and refused in (done.problem or "")
        row = await setup.retrieval()
        assert row.status == "refused" and refused in (row.problem or "")
        assert await setup.case_status() == "retrieving"
        logged = await _audit(db, "evidence.file_refused")
        assert [d["file"] for _, d in logged if d["file"] == refused] == [refused]
        folder = case_unit_dir(setup.store_dir, setup.case_number, UNIT)
        assert not (folder / refused).exists() and (folder / "refused" / refused).exists()
        if tamper != "rewritten_index":  # the others stand: each file is judged alone
            good = [n for n in files if n != refused]
            assert all(files[n].status == "verified" for n in good)


def _raw_client(fleet: Fleet, who: str, port: int) -> httpx.AsyncClient:
    bundle = fleet.layout.bundle_dir(who)
    context = client_context(bundle / "ca.crt", bundle / "unit.crt", bundle / "unit.key")
    return httpx.AsyncClient(
        base_url=f"https://127.0.0.1:{port}", verify=context, timeout=10, trust_env=False
    )


async def test_a_unit_uploads_only_to_its_own_requested_upload(
    db: Database, fleet: Fleet, tmp_path: Path
) -> None:
    async with make_setup(db, fleet, tmp_path / "u01") as setup:
        uploader = unit_uploader(setup)
        await uploader.start_job("cmd-1", setup.action())
        job = uploader.jobs.get(setup.upload_id)
        assert job is not None
        offer = job.offer().model_dump_json().encode()
        port = setup.receiver.bound_port
        first = job.files[1]
        data = first.path.read_bytes()[:1000]
        span = ContentRange(first=0, last=999, size=first.size)
        put = {"content-range": span.header(), "content-length": "1000"}
        async with _raw_client(fleet, "cam-02", port) as other:
            # Another unit: not its upload, whatever it tries.
            assert (await other.get(f"/uploads/{setup.upload_id}")).status_code == 403
            answer = await other.post(f"/uploads/{setup.upload_id}", content=offer)
            assert answer.status_code == 403
            answer = await other.put(
                f"/uploads/{setup.upload_id}/files/{first.name}", content=data, headers=put
            )
            assert answer.status_code == 403
        async with _raw_client(fleet, UNIT, port) as own:
            # Its own unit, but an upload nobody asked for.
            answer = await own.post("/uploads/up-never-asked", content=offer)
            assert answer.status_code == 404 and "asked for no upload" in answer.json()["error"]
            # The upload asked of it: offered, then one chunk...
            assert (await own.post(f"/uploads/{setup.upload_id}", content=offer)).is_success
            answer = await own.put(
                f"/uploads/{setup.upload_id}/files/{first.name}", content=data, headers=put
            )
            assert answer.status_code == 200
            held = answer.json()["files"][1]
            assert (held["name"], held["received"]) == (first.name, 1000)
            # ...and the same chunk again: refused, the offset named, the bytes counted.
            answer = await own.put(
                f"/uploads/{setup.upload_id}/files/{first.name}", content=data, headers=put
            )
            assert answer.status_code == 409 and "holds 1000 bytes" in answer.json()["error"]
        files = await setup.files()
        assert files[first.name].received_bytes == 1000
        assert files[first.name].resent_bytes == 1000
        refused = await _audit(db, "evidence.upload_refused")
        assert {(subject, d["upload_id"]) for subject, d in refused} == {
            ("unit:cam-02", setup.upload_id),
            (f"unit:{UNIT}", "up-never-asked"),
        }
        assert await setup.case_status() == "retrieving"


async def test_a_revoked_unit_cannot_connect(
    db: Database, fresh_fleet: Callable[..., Fleet], tmp_path: Path
) -> None:
    fleet = fresh_fleet(units=(UNIT, "cam-02"), probes=())
    async with make_setup(db, fleet, tmp_path / "r01") as setup:
        port = setup.receiver.bound_port
        async with _raw_client(fleet, "cam-02", port) as client:
            assert (await client.get(f"/uploads/{setup.upload_id}")).status_code == 403
        fleet.revoke("cam-02")  # the CRL is rewritten; the endpoint reads it again
        bundle = fleet.layout.bundle_dir("cam-02")
        context = client_context(bundle / "ca.crt", bundle / "unit.crt", bundle / "unit.key")
        context.maximum_version = ssl.TLSVersion.TLSv1_2  # the refusal fails the handshake
        async with httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{port}", verify=context, timeout=10, trust_env=False
        ) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get(f"/uploads/{setup.upload_id}")


async def test_the_bandwidth_cap_holds_within_15_percent(
    db: Database, fleet: Fleet, tmp_path: Path
) -> None:
    cap = 400_000
    async with make_setup(db, fleet, tmp_path / "b01", payload=700_000) as setup:
        uploader = unit_uploader(setup, bandwidth_bytes_s=cap, chunk_bytes=256 * 1024)
        await uploader.start_job("cmd-1", setup.action())
        job = uploader.jobs.get(setup.upload_id)
        assert job is not None
        began = time.monotonic()
        task = await _run(uploader)
        try:
            done = await wait_job(uploader, setup.upload_id, within=60)
        finally:
            await _stop(task)
        elapsed = time.monotonic() - began
        assert done.status == "complete"
        rate = uploader.jobs.counter(setup.upload_id).value / elapsed
        print(f"cap {cap} B/s: {job.total_bytes} bytes in {elapsed:.2f} s = {rate:.0f} B/s")
        assert 0.85 * cap <= rate <= 1.15 * cap


async def test_later_reports_that_continue_the_chain_leave_the_upload_verified(
    db: Database, fleet: Fleet, tmp_path: Path
) -> None:
    """The reports stored over MQTT are what the manifest is held against: reports made
    after the range, continuing the chain, agree with it; every entry is matched."""
    async with make_setup(db, fleet, tmp_path / "m01") as setup:
        more = setup.footage.record(setup.end + (setup.end - setup.start), 2)
        await report(db, setup.footage.report())
        assert more
        uploader = unit_uploader(setup)
        await uploader.start_job("cmd-1", setup.action())
        task = await _run(uploader)
        try:
            done = await wait_job(uploader, setup.upload_id, within=30)
        finally:
            await _stop(task)
        assert done.status == "complete"
        folder = case_unit_dir(setup.store_dir, setup.case_number, UNIT)
        manifest = SegmentManifest.from_json((folder / MANIFEST_NAME).read_bytes())
        assert manifest.checkpoint.count == len(setup.footage.index.entries())
        verified = await _audit(db, "evidence.file_verified")
        (entry,) = [d for _, d in verified if d["file"] == MANIFEST_NAME]
        assert entry["entries_matching_mqtt_reports"] == len(manifest.entries)


async def test_an_endpoint_refuses_a_chunk_too_large_and_a_bad_range(
    db: Database, fleet: Fleet, tmp_path: Path
) -> None:
    async with make_setup(db, fleet, tmp_path / "c01") as setup:
        small = UploadReceiver(
            UploadService(db, store_dir=setup.store_dir, max_chunk_bytes=64 * 1024),
            endpoint_files(fleet),
            host="127.0.0.1",
            port=0,
        )
        await small.start()
        try:
            uploader = unit_uploader(setup)
            await uploader.start_job("cmd-1", setup.action())
            job = uploader.jobs.get(setup.upload_id)
            assert job is not None
            first = job.files[1]
            async with _raw_client(fleet, UNIT, small.bound_port) as own:
                offer = job.offer().model_dump_json().encode()
                assert (await own.post(f"/uploads/{setup.upload_id}", content=offer)).is_success
                big = first.path.read_bytes()[: 100 * 1024]
                span = ContentRange(first=0, last=len(big) - 1, size=first.size)
                answer = await own.put(
                    f"/uploads/{setup.upload_id}/files/{first.name}",
                    content=big,
                    headers={"content-range": span.header()},
                )
                assert answer.status_code == 413
                answer = await own.put(
                    f"/uploads/{setup.upload_id}/files/{first.name}",
                    content=b"x" * 10,
                    headers={"content-range": "bytes 0-9"},
                )
                assert answer.status_code == 400 and "Content-Range" in answer.json()["error"]
        finally:
            await small.close()
