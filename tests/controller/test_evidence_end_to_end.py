"""The evidence path end to end with real parts only: the real agent recording the sample
clip and reporting over the real broker, the real controller process (`cctv-controller
serve`) with its JSON API and its HTTPS evidence endpoint.

A case is raised by a data controller, who cannot approve it, and approved by another
data controller; the agent acknowledges the hold. Then, with the controller stopped, the
agent runs with its clock moved 32 days on: retention deletes every segment but the held
ones. The controller comes back with its evidence endpoint, the agent with today's clock:
the upload it was asked for on approval completes and every file verifies. A data
controller releases the footage through the release API with the passphrase; the
exhibit's zip, unpacked alone in an empty folder, is checked by `python3 -I verify.py`
with the system's python3: every file verifies, and one flipped byte in any file makes it
name that file and fail. The exhibit's decoded pictures are the sample clip's own."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from controller.accounts import Accounts, AuthSettings, Role
from controller.store import Database
from controller.store.reports import CheckpointRecord
from edge_agent.recorder.index import SegmentIndex
from protocol.messages import RecordingIndex
from provisioning import Fleet
from tests.controller.conftest import eventually
from tests.controller.test_case_holds_agent import start_with_clock_moved
from tests.controller.test_exhibits import frame_digests, packets
from tests.edge_agent.test_agent_service import publish_authz, watch
from tests.harness import FLEET_PASSPHRASE
from tests.harness.agent import AgentProcess, authorization
from tests.harness.broker import MosquittoBroker, free_port
from tests.harness.controller import ControllerProcess, write_controller_config
from tests.harness.footage import require_sample_clip

pytestmark = pytest.mark.slow

UNIT = "cam-01"
#: Past the agent's default retention of 31 days.
MOVED_ON = timedelta(days=32)
FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "a long test password"
PEOPLE = {"dan": Role.DATA_CONTROLLER, "dora": Role.DATA_CONTROLLER}
RELEASE = {
    "recipient_name": "PC 1234 Ali Khan",
    "recipient_org": "Example Constabulary",
    "reason": "Identification of the suspect in a theft from a market stall",
    "lawful_basis": "Data Protection Act 2018, Schedule 2 paragraph 2 (crime)",
    "reference": "URN 44/3003",
    "method": "secure download",
}


def system_python() -> str:
    """The operating system's python3 (not the project's venv): what a recipient has."""
    found = shutil.which("python3", path=os.pathsep.join(["/usr/bin", "/bin"]))
    if found is None:
        pytest.fail("no system python3 in /usr/bin or /bin", pytrace=False)
    return found


def run_verify(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [system_python(), "-I", "verify.py"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


@asynccontextmanager
async def signed_in(base_url: str, username: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        answer = await client.post("/api/login", json={"username": username, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield client


def live_segments(agent: AgentProcess) -> list[str]:
    """The segments the agent's own index holds undeleted (read with the agent stopped)."""
    index = SegmentIndex(agent.data_dir / "index.sqlite", unit_id=agent.unit_id)
    try:
        return [e.segment_id for e in index.entries(include_deleted=False)]
    finally:
        index.close()


def controller_config(
    path: Path, broker: MosquittoBroker, url: str, http_port: int, store: Path, uploads: int | None
) -> Path:
    """The controller's settings; `uploads`: the evidence endpoint's port (None: no
    endpoint, a unit's upload waits)."""
    write_controller_config(
        path, broker, url, http_port=http_port, evidence={"store_dir": str(store)}
    )
    if uploads is not None:
        with path.open("a") as toml:
            toml.write(f"\n[evidence.uploads]\nport = {uploads}\n")
    return path


async def test_case_to_verified_exhibit_through_hold_retention_and_retrieval(
    fresh_fleet: Any, make_broker: Any, tmp_path: Path
) -> None:
    system_python()  # a recipient's python3, before anything starts
    fleet: Fleet = fresh_fleet(units=(UNIT,))
    broker: MosquittoBroker = make_broker(fleet)
    url = f"sqlite+aiosqlite:///{tmp_path / 'controller.db'}"
    db = Database(url)
    http_port, upload_port = free_port(), free_port()
    api = f"http://127.0.0.1:{http_port}"
    store = tmp_path / "store"
    config = tmp_path / "controller.toml"
    ctl = ControllerProcess(
        controller_config(config, broker, url, http_port, store, None), tmp_path / "ctl"
    )
    agent = AgentProcess(
        fleet, UNIT, broker, tmp_path,
        storage={"segment_seconds": 5, "retention_interval_s": 5},
        evidence={"upload_url": f"https://127.0.0.1:{upload_port}", "bandwidth_bytes_s": 0,
                  "retry_base_s": 0.3, "retry_cap_s": 1.0},
    )  # fmt: skip
    try:
        await db.migrate()
        accounts = Accounts(db, FAST)
        for username, role in PEOPLE.items():
            await accounts.add_user(username, role, PASSWORD, contractor=None, actor="test")
        # ----------------------------------------------------- the unit records the clip
        ctl.start()
        await ctl.wait_for_log("broker connected", within=30)
        async with watch(broker) as w:
            agent.start()
            await publish_authz(w, fleet, UNIT, authorization(fleet, UNIT))

            def sealed() -> list[Any]:
                seen = {s.segment_id: s for m in w.of(RecordingIndex) for s in m.segments}
                return sorted(seen.values(), key=lambda s: s.started_at)

            segments = await eventually(lambda: len(sealed()) >= 4 and sealed(), within=90)
        held = segments[1:3]

        async def reported() -> bool:  # the checkpoints the controller checks uploads with
            async with db.session() as session:
                count = await session.scalar(
                    select(CheckpointRecord.count)
                    .where(CheckpointRecord.unit_id == UNIT, CheckpointRecord.status == "verified")
                    .order_by(CheckpointRecord.count.desc())
                    .limit(1)
                )
            return count is not None and count >= 3

        await eventually(reported, within=30)

        # ------------------------------------ raised, approved by another, hold acknowledged
        start = held[0].started_at + timedelta(milliseconds=500)
        end = held[-1].ended_at - timedelta(milliseconds=500)
        async with signed_in(api, "dan") as dan:
            raised = await dan.post(
                "/api/cases",
                json={
                    "case_type": "police_request",
                    "external_ref": "URN 44/3003",
                    "requester_name": "PC 1234 Ali Khan",
                    "requester_org": "Example Constabulary",
                    "lawful_basis": "Prevention and detection of crime",
                    "reason": "Theft from a market stall.",
                    "ranges": [
                        {"unit_id": UNIT, "start": start.isoformat(), "end": end.isoformat()}
                    ],
                },
            )
            assert raised.status_code == 201, raised.text
            number = raised.json()["summary"]["number"]
            own = await dan.post(f"/api/cases/{number}/approve", json={})
            assert own.status_code == 403 and "cannot decide a case they raised" in own.text
        async with signed_in(api, "dora") as dora:
            approved = await dora.post(f"/api/cases/{number}/approve", json={"notes": "Needed."})
            assert approved.status_code == 200, approved.text

            async def case() -> dict[str, Any]:
                answer = await dora.get(f"/api/cases/{number}")
                assert answer.status_code == 200, answer.text
                return dict(answer.json())

            async def hold_held() -> bool:
                return [h["state"] for h in (await case())["holds"]] == ["held"]

            await eventually(hold_held, within=20, every=0.2)
            detail = await case()
            assert [r["unit_id"] for r in detail["retrievals"]] == [UNIT]  # asked on approval

        # ---------------------- 32 days on: retention keeps the held range, deletes the rest
        assert ctl.stop() == 0
        assert await asyncio.to_thread(agent.terminate) == 0
        before = live_segments(agent)
        held_ids = [s.segment_id for s in held]
        assert set(held_ids) < set(before) and len(before) >= 4
        sweeps = agent.log().count("retention deleted=")
        start_with_clock_moved(agent, MOVED_ON)
        await asyncio.to_thread(
            agent.wait_for,
            lambda: agent.log().count("retention deleted=") > sweeps,
            60,
            "a retention sweep with the clock moved on",
        )
        assert await asyncio.to_thread(agent.terminate) == 0
        assert live_segments(agent) == held_ids, agent.log()[-3000:]
        on_disk = {p.name for p in agent.segments()}
        assert {f"{s}.seg" for s in held_ids} <= on_disk
        assert not [s for s in before if s not in held_ids and f"{s}.seg" in on_disk]

        # -------------------- back on today's clock: the upload completes and verifies
        controller_config(config, broker, url, http_port, store, upload_port)
        ctl.start()
        await ctl.wait_for_log("evidence endpoint listening", within=30)
        await ctl.wait_for_log("broker connected", within=30)
        agent.start()
        async with signed_in(api, "dan") as dan:

            async def retrieved() -> dict[str, Any] | None:
                answer = (await dan.get(f"/api/cases/{number}")).json()
                return dict(answer) if answer["summary"]["status"] == "retrieved" else None

            detail = await eventually(retrieved, within=90, every=0.5)
            (retrieval,) = detail["retrievals"]
            assert retrieval["status"] == "complete", retrieval
            assert retrieval["received_bytes"] == retrieval["total_bytes"]
            files = {f["name"]: f["status"] for f in retrieval["files"]}
            assert files == {"manifest.json": "verified"} | {
                f"{s}.seg": "verified" for s in held_ids
            }

            # ------------------------------- the exhibit, made with the passphrase, released
            made = await dan.post(
                f"/api/cases/{number}/releases", json={**RELEASE, "passphrase": FLEET_PASSPHRASE}
            )
            assert made.status_code == 202, made.text

            async def job_over() -> dict[str, Any] | None:
                job = dict((await dan.get(made.json()["progress"])).json())
                return job if job["state"] != "running" else None

            job = await eventually(job_over, within=60, every=0.2)
            assert job["state"] == "done", job
            download = await dan.get(f"{made.json()['exhibit_url']}/download")
            assert download.status_code == 200, download.text
            detail = (await dan.get(f"/api/cases/{number}")).json()
        assert detail["summary"]["status"] == "released"
        steps = [t["action"] for t in detail["timeline"]]
        for step in ("case.raise", "case.approve", "case.hold_acknowledged",
                     "case.retrieved", "exhibit.made", "case.released"):  # fmt: skip
            assert step in steps, steps
        assert steps.index("case.hold_acknowledged") < steps.index("case.retrieved")
    finally:
        agent.kill()
        ctl.stop()
        await db.dispose()

    await asyncio.to_thread(check_as_recipient, download.content, tmp_path, held_ids, (start, end))


def check_as_recipient(
    archive: bytes, tmp_path: Path, held_ids: list[str], wanted: tuple[datetime, datetime]
) -> None:
    """What the recipient of the exhibit's zip sees, with nothing of the project."""
    clip = require_sample_clip()
    python = system_python()
    # ------------------------ verify.py alone, with the system's python3, in an empty folder
    empty = tmp_path / "recipient"
    empty.mkdir()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        zf.extractall(empty)
    (folder,) = empty.iterdir()
    probe = subprocess.run([python, "-I", "-c", "import controller"], cwd=folder)
    assert probe.returncode != 0, "the project must not be importable where verify.py runs"
    result = run_verify(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "EVERYTHING VERIFIES" in result.stdout
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    manifest = json.loads((folder / "manifest.json").read_text())
    footage = [item["file"] for item in manifest["footage"]]
    assert footage and set(footage) < set(names)
    for name in ("manifest.json", "manifest.sig", "verify.py", *footage):
        assert f"{name}: verifies" in result.stdout, result.stdout
    assert f"unit {UNIT} recording record: verifies" in result.stdout
    assert [s["segment_id"] for s in manifest["sources"]] == held_ids

    # One flipped byte in any file: verify.py names that file and fails.
    for i, name in enumerate(names):
        changed = tmp_path / "flipped" / str(i)
        shutil.copytree(folder, changed)
        data = bytearray((changed / name).read_bytes())
        data[len(data) // 2] ^= 0x01
        (changed / name).write_bytes(bytes(data))
        flipped = run_verify(changed)
        said = flipped.stdout + flipped.stderr
        assert flipped.returncode != 0, f"{name}: {said}"
        if name == "verify.py" and not flipped.stdout:
            assert 'verify.py", line' in flipped.stderr, said  # it no longer even runs
            continue
        failed = [line for line in flipped.stdout.splitlines() if "NOT VERIFIED" in line]
        assert failed == [f"NOT VERIFIED: {name}"], f"{name}: {said}"

    # The exhibit's pictures are the sample clip's own, for the same stretch of it.
    clip_packets = packets(clip)
    original = frame_digests(clip)
    assert len(original) == len(clip_packets)
    n = len(clip_packets)
    for file in footage:
        exhibit_packets = packets(folder / file)
        offset = clip_packets.index(exhibit_packets[0])
        assert exhibit_packets == [
            clip_packets[(offset + k) % n] for k in range(len(exhibit_packets))
        ]
        frames = frame_digests(folder / file)
        assert len(frames) == len(exhibit_packets) > 100  # two 5-second segments
        for k, digest in enumerate(frames):
            assert digest == original[(offset + k) % n], f"{file} frame {k} is not the clip's"
    # The footage covers the case's range.
    item = manifest["footage"][0]
    assert datetime.fromisoformat(item["start"]) <= wanted[0]
    assert datetime.fromisoformat(item["end"]) >= wanted[1]
