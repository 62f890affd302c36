"""Evidence retrieval over a slow link (prints figures; not a test).

The unit's side runs in a network namespace joined to the controller's by a veth pair;
the unit's end is shaped with `tc` tbf (default 8 Mbit/s: this kernel has no netem).
The controller's evidence endpoint (`controller.evidence.receiver`, SQLite, fsync per
chunk) runs as a process of its own in the root namespace; the unit's uploader
(`edge_agent.uploads`, the agent's own code, cap off: the link is the limit) as a process
in the namespace, on real encrypted segments in the unit's own index: the sample clip
(`samples/`) written by the real recorder, looped, in segments of 60 s of video. One run
prints:

(a) goodput of the unit's upload of a ~100 MB range against `curl --upload-file` of the
    same bytes (one file) over the same link, to a TLS sink with the same certificates
    (target: the unit at least 90 % of curl);
(b) bytes sent again after three cuts of a second upload of the range: the connection
    dropped (`ss -K` in the unit's namespace), the endpoint killed (SIGKILL) and
    started again, the unit's uploader killed (SIGKILL) and started again (target: less
    than one chunk per cut), and the controller's record of acknowledged bytes that
    arrived again (must be 0);
(c) the endpoint process's CPU seconds per GB received (user + system, from /proc, over
    the clean upload of (a));
(d) the controller's CPU seconds per GB exported: the exhibit made from the range the
    clean upload of (a) retrieved, as a release makes it (`ReleaseService`: the evidence
    key unlocked, every segment checked and decrypted, MP4 by stream copy, manifest,
    signature, zip, the release recorded), in a process of its own; the process CPU time
    of that step alone (all its threads), per GB of MP4 footage in the exhibit.

Needs root (namespaces, tc) and `ip`, `tc`, `ss`, `curl`.

    .venv/bin/python bench/retrieval.py [--mbytes 100] [--rate 8mbit] [--chunk-kib 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

UNIT = "cam-01"
CTL_IP, UNIT_IP = "10.77.0.1", "10.77.0.2"
PASSPHRASE = "benchmark evidence passphrase"
#: Video in each segment the recorder writes (the sample clip is about 1.7 Mbit/s).
SEGMENT_SECONDS = 60


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------ the link


class Link:
    """A namespace for the unit and a veth pair to it, shaped on the unit's end."""

    def __init__(self, rate: str) -> None:
        self.ns = f"cctvbench{os.getpid()}"
        self.ctl_if, self.unit_if = f"cb{os.getpid() % 100000}a", f"cb{os.getpid() % 100000}b"
        self.rate = rate

    def __enter__(self) -> Link:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.ctl_if, "type", "veth", "peer", "name", self.unit_if)
        sh("ip", "link", "set", self.unit_if, "netns", self.ns)
        sh("ip", "addr", "add", f"{CTL_IP}/24", "dev", self.ctl_if)
        sh("ip", "link", "set", self.ctl_if, "up")
        self.run("ip", "addr", "add", f"{UNIT_IP}/24", "dev", self.unit_if)
        self.run("ip", "link", "set", self.unit_if, "up")
        self.run("ip", "link", "set", "lo", "up")
        self.run(
            "tc", "qdisc", "add", "dev", self.unit_if, "root", "tbf", "rate", self.rate,
            "burst", "16kb", "latency", "100ms",
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        sh("ip", "link", "del", self.ctl_if, check=False)
        sh("ip", "netns", "del", self.ns, check=False)

    def prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh(*self.prefix(), *args, check=check)

    def drop_connections(self, port: int) -> None:
        self.run("ss", "-K", "dst", CTL_IP, "dport", "=", str(port), check=False)


# ------------------------------------------------------- the processes' roles


async def _serve_endpoint(args: argparse.Namespace) -> None:
    from controller.evidence.receiver import UploadReceiver
    from controller.evidence.upload_settings import UploadSettings
    from controller.evidence.uploads import UploadService
    from controller.store import Database

    db = Database(args.db)
    files = UploadSettings().files(Path(args.fleet))
    receiver = UploadReceiver(
        UploadService(db, store_dir=Path(args.store)), files, host=CTL_IP, port=args.port
    )
    await receiver.start()
    print("ready", flush=True)
    await asyncio.Event().wait()


async def _serve_sink(args: argparse.Namespace) -> None:
    """Reads each request's body and throws it away: curl's other end."""
    import h11

    from controller.evidence.receiver import server_context
    from controller.evidence.upload_settings import UploadSettings

    context = server_context(UploadSettings().files(Path(args.fleet)))

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(256 * 1024))
                continue
            if isinstance(event, h11.EndOfMessage):
                body = b"ok\n"
                writer.write(conn.send(h11.Response(status_code=200, headers=[
                    ("content-length", str(len(body))), ("connection", "close")])))  # fmt: skip
                writer.write(conn.send(h11.Data(data=body)))
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                writer.close()
                return
            if isinstance(event, h11.ConnectionClosed):
                return

    server = await asyncio.start_server(serve, CTL_IP, args.port, ssl=context)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


async def _export(args: argparse.Namespace) -> None:
    """Make and release the exhibit of case `args.case` as the controller does; print the
    CPU time of that step."""
    from controller.config import ControllerSettings
    from controller.evidence.releases import ReleaseRequest, ReleaseService
    from controller.store import Database

    class DataController:
        username, role = "dora", "data_controller"

    settings = ControllerSettings(
        database_url=args.db, fleet_dir=Path(args.fleet), evidence={"store_dir": Path(args.store)}
    ).resolved()
    db = Database(args.db)
    service = ReleaseService(db, settings)
    request = ReleaseRequest(
        recipient_name="Benchmark", reason="Benchmark export", lawful_basis="Benchmark",
        method="secure download", passphrase=PASSPHRASE,
    )  # fmt: skip
    cpu, began = time.process_time(), time.monotonic()
    job = await service.start(DataController(), args.case, request)
    await service.wait(job.id)
    cpu, elapsed = time.process_time() - cpu, time.monotonic() - began
    folder = service.exhibit_dir(job.exhibit_number)
    footage = sum(p.stat().st_size for p in (folder / "footage").glob("*.mp4"))
    zipped = folder.with_name(folder.name + ".zip")
    size = zipped.stat().st_size if zipped.exists() else 0
    await db.dispose()
    doc = {"state": job.state, "problem": job.problem, "cpu": cpu, "elapsed": elapsed,
           "footage": footage, "zip": size}  # fmt: skip
    print(json.dumps(doc), flush=True)


async def _unit(args: argparse.Namespace) -> None:
    from edge_agent.config import EvidenceConfig
    from edge_agent.recorder.index import SegmentIndex
    from edge_agent.uploads import Uploader
    from protocol.messages import TimeRange, UploadEvidence
    from protocol.signing import load_private_key

    work, bundle = Path(args.work), Path(args.bundle)
    key = load_private_key((bundle / "unit-signing.key").read_bytes())
    index = SegmentIndex(work / "unit" / "index.sqlite", unit_id=UNIT, signing_key=key)
    uploader = Uploader(
        EvidenceConfig(
            upload_url=args.url, ca_file=bundle / "ca.crt", bandwidth_bytes_s=0,
            chunk_bytes=args.chunk, retry_base_s=0.2, retry_cap_s=1.0, timeout_s=10,
        ),
        unit_id=UNIT, cert_file=bundle / "unit.crt", key_file=bundle / "unit.key",
        index=index, segments_dir=work / "unit" / "segments",
        jobs_dir=work / "unit" / "uploads",
    )  # fmt: skip
    entries = index.entries()
    ranges = [TimeRange(start=entries[0].started_at, end=entries[-1].ended_at)]
    action = UploadEvidence(upload_id=args.upload_id, case_number=args.case, ranges=ranges)
    began = time.monotonic()
    await uploader.start_job("bench", action)
    task = asyncio.create_task(uploader.run(), name="uploader")
    while True:
        job = uploader.jobs.get(args.upload_id)
        if job is not None and job.status != "pending":
            break
        await asyncio.sleep(0.05)
    elapsed = time.monotonic() - began
    task.cancel()
    sent = uploader.jobs.counter(args.upload_id).value
    print(json.dumps({"status": job.status, "problem": job.problem, "elapsed": elapsed,
                      "sent": sent, "total": job.total_bytes}), flush=True)  # fmt: skip


# --------------------------------------------------------------- the set-up


async def _prepare(work: Path, mbytes: int) -> tuple[Any, list[tuple[str, str]]]:
    """A fleet whose endpoint is at CTL_IP, ~`mbytes` MB of footage on the unit reported to
    the controller's database, and two approved cases asking for all of it, each with
    its retrieval requested: [(case number, upload id)]."""
    from controller.callouts import CalloutService
    from controller.config import ControllerSettings
    from controller.evidence.retrieval import request_retrieval
    from controller.fleet import import_units
    from controller.fleet.index_checkpoints import record_index
    from controller.store import Database
    from controller.store.evidence import CaseRangeRow, CaseRow
    from protocol.messages import utcnow
    from provisioning import Fleet
    from tests.harness.footage import require_sample_clip
    from tests.harness.unit_footage import UnitFootage

    fleet = Fleet.create(
        work / "fleet", name="Bench", evidence_passphrase=PASSPHRASE, uploads_host=CTL_IP
    )
    fleet.add_unit(UNIT)
    footage = UnitFootage(fleet, UNIT, work / "unit")
    entries = await footage.record_clip(
        require_sample_clip(), seconds=SEGMENT_SECONDS, at_least_bytes=mbytes * 1_000_000
    )
    now = utcnow().replace(microsecond=0)
    db = Database(f"sqlite+aiosqlite:///{work / 'controller.db'}")
    await db.migrate()
    async with db.session() as session:
        await import_units(session, fleet.root)
        await record_index(session, CalloutService(ControllerSettings()), footage.report(), now)
        await session.commit()
    footage.close()
    made = []
    for n in (1, 2):
        async with db.session() as session:
            case = CaseRow(
                number=f"C-{now.year}-{n:04d}", case_type="police_request",
                requester_name="Bench", lawful_basis="Benchmark", reason="Benchmark",
                status="approved", raised_by="olly", raised_at=now, decided_by="dora",
                decided_at=now,
            )  # fmt: skip
            session.add(case)
            await session.flush()
            first, last = entries[0].started_at, entries[-1].ended_at
            session.add(CaseRangeRow(case_id=case.id, unit_id=UNIT, start=first, end=last))
            await session.commit()
            case_id, number = case.id, case.number
        (upload_id,) = await request_retrieval(db, None, case_id=case_id, actor="bench")
        made.append((number, upload_id))
    await db.dispose()
    with (work / "all.bin").open("wb") as out:
        for e in entries:
            with (work / "unit" / "segments" / e.file_name).open("rb") as f:
                shutil.copyfileobj(f, out, 1024 * 1024)
    return fleet, made


async def _retrieval_row(work: Path, upload_id: str) -> tuple[int, int, str]:
    """(received bytes, acknowledged bytes that arrived again, status) of an upload."""
    from sqlalchemy import func, select

    from controller.store import Database
    from controller.store.evidence import RetrievalRow, RetrievedFileRow

    db = Database(f"sqlite+aiosqlite:///{work / 'controller.db'}")
    try:
        async with db.session() as session:
            row = await session.scalar(
                select(RetrievalRow).where(RetrievalRow.upload_id == upload_id)
            )
            assert row is not None
            again = await session.scalar(
                select(func.coalesce(func.sum(RetrievedFileRow.resent_bytes), 0)).where(
                    RetrievedFileRow.retrieval_id == row.id
                )
            )
            return row.received_bytes, int(again or 0), row.status
    finally:
        await db.dispose()


class Proc:
    """A role of this script as a process (optionally inside the unit's namespace)."""

    def __init__(
        self, args: list[str], *, prefix: list[str] | None = None, ready: bool = True
    ) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.p = subprocess.Popen(
            [*(prefix or []), sys.executable, __file__, *args], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        if ready:
            line = self.p.stdout.readline() if self.p.stdout else ""
            if line.strip() != "ready":
                raise RuntimeError(f"{args[1]} did not start")

    @property
    def pid(self) -> int:
        return self.p.pid

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
        self.p.wait(10)

    def result(self) -> dict[str, Any]:
        out, _ = self.p.communicate(timeout=3600)
        doc: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        return doc


async def _wait_received(work: Path, upload_id: str, at_least: int) -> None:
    while (await _retrieval_row(work, upload_id))[0] < at_least:  # noqa: ASYNC110 - another process
        await asyncio.sleep(0.2)


async def orchestrate(args: argparse.Namespace) -> None:
    for tool in ("ip", "tc", "ss", "curl"):
        if shutil.which(tool) is None:
            sys.exit(f"needs {tool}")
    if os.geteuid() != 0:
        sys.exit("needs root: network namespaces and tc")
    chunk = args.chunk_kib * 1024
    with tempfile.TemporaryDirectory(prefix="cctv-retrieval-") as tmp:
        work = Path(tmp)
        print(f"preparing {args.mbytes} MB of footage ...", flush=True)
        fleet, ((clean_case, clean_id), (cut_case, cut_id)) = await _prepare(work, args.mbytes)
        bundle = fleet.layout.bundle_dir(UNIT)
        total = (work / "all.bin").stat().st_size
        common = ["--work", str(work), "--fleet", str(fleet.root), "--bundle", str(bundle)]
        db_url = f"sqlite+aiosqlite:///{work / 'controller.db'}"
        port, sink_port = 8443, 8444
        with Link(args.rate) as link:
            endpoint_args = ["--role", "endpoint", *common, "--db", db_url,
                             "--store", str(work / "store"), "--port", str(port)]  # fmt: skip
            endpoint = Proc(endpoint_args)
            sink = Proc(["--role", "sink", *common, "--port", str(sink_port)])
            try:
                # (a) curl, then the unit, over the same link
                curl = link.run(
                    "curl", "-sS", "-o", "/dev/null", "-H", "Expect:", "-w", "%{time_total}",
                    "--cacert", str(bundle / "ca.crt"), "--cert", str(bundle / "unit.crt"),
                    "--key", str(bundle / "unit.key"), "--upload-file", str(work / "all.bin"),
                    f"https://{CTL_IP}:{sink_port}/sink",
                )  # fmt: skip
                curl_s = float(curl.stdout.strip())
                unit_args = ["--role", "unit", *common, "--url", f"https://{CTL_IP}:{port}",
                             "--chunk", str(chunk)]  # fmt: skip
                cpu_before = cpu_seconds(endpoint.pid)
                clean = Proc(
                    [*unit_args, "--upload-id", clean_id, "--case", clean_case],
                    prefix=link.prefix(),
                    ready=False,
                )
                result = clean.result()
                cpu = cpu_seconds(endpoint.pid) - cpu_before
                received, again_clean, status = await _retrieval_row(work, clean_id)
                if result["status"] != "complete" or status != "complete":
                    sys.exit(f"clean upload did not complete: {result} / {status}")
                unit_s = result["elapsed"]

                # (b) three cuts
                cut_args = [*unit_args, "--upload-id", cut_id, "--case", cut_case]
                unit = Proc(cut_args, prefix=link.prefix(), ready=False)
                await _wait_received(work, cut_id, total // 4)
                link.drop_connections(port)  # 1: the connection dropped
                await _wait_received(work, cut_id, total // 2)
                endpoint.kill()  # 2: the controller's endpoint killed and started again
                endpoint = Proc(endpoint_args)
                await _wait_received(work, cut_id, 3 * total // 4)
                unit.kill()  # 3: the unit killed and started again
                unit = Proc(cut_args, prefix=link.prefix(), ready=False)
                cut = unit.result()
                _, again_cut, cut_status = await _retrieval_row(work, cut_id)
            finally:
                endpoint.kill()
                sink.kill()
        # (d) the exhibit of the range the clean upload retrieved
        export_args = ["--role", "export", *common, "--db", db_url,
                       "--store", str(work / "store"), "--case", clean_case]  # fmt: skip
        export = Proc(export_args, ready=False).result()
        if export["state"] != "done":
            sys.exit(f"the exhibit was not made: {export}")
    resent = cut["sent"] - cut["total"]
    print()
    print(f"link: {args.rate} tbf, unit in its own network namespace; {total / 1e6:.1f} MB "
          f"range ({total} bytes), chunks of {chunk // 1024} KiB")  # fmt: skip
    print("(a) goodput over the same link")
    print(f"    curl --upload-file      {total / curl_s * 8 / 1e6:6.2f} Mbit/s  ({curl_s:.1f} s)")
    print(f"    unit upload (resumable) {total / unit_s * 8 / 1e6:6.2f} Mbit/s  ({unit_s:.1f} s)"
          f"   = {curl_s / unit_s * 100:.1f} % of curl (target >= 90 %)")  # fmt: skip
    print(f"    acknowledged bytes that arrived again: {again_clean}")
    print("(b) three cuts: connection dropped, endpoint killed + restarted, unit killed + "
          "restarted")  # fmt: skip
    print(f"    upload {cut['status']} / controller {cut_status}; unit sent {cut['sent']} bytes "
          f"for {cut['total']}")  # fmt: skip
    print(f"    sent again: {resent} bytes = {resent / 3 / chunk:.2f} chunk per cut "
          "(target < 1)")  # fmt: skip
    print(f"    acknowledged bytes that arrived again (controller's record): {again_cut}")
    print("(c) endpoint CPU over the clean upload")
    print(f"    {cpu:.2f} s for {received / 1e9:.3f} GB = {cpu / (received / 1e9):.1f} CPU s/GB "
          "received (TLS, HTTP, fsync per chunk, SHA-256 and checks of every file)")  # fmt: skip
    exported = export["footage"] / 1e9
    print("(d) controller CPU making the exhibit of the retrieved range (one process)")
    print(f"    {export['cpu']:.2f} s CPU ({export['elapsed']:.1f} s) for {exported:.3f} GB of MP4 "
          f"= {export['cpu'] / exported:.1f} CPU s/GB exported (key unlocked, every segment "
          "checked and decrypted, stream copy, manifest, signature, zip of "
          f"{export['zip'] / 1e6:.1f} MB, release recorded)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mbytes", type=int, default=100, help="Size of the range (MB)")
    parser.add_argument("--rate", default="8mbit", help="tbf rate of the link")
    parser.add_argument("--chunk-kib", type=int, default=1024, help="Upload chunk (KiB)")
    parser.add_argument("--role", default="run", help=argparse.SUPPRESS)
    for hidden in ("--work", "--fleet", "--bundle", "--db", "--store", "--url",
                   "--upload-id", "--case"):  # fmt: skip
        parser.add_argument(hidden, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--chunk", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    role = {
        "run": orchestrate,
        "endpoint": _serve_endpoint,
        "sink": _serve_sink,
        "unit": _unit,
        "export": _export,
    }[args.role]
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(role(args))


if __name__ == "__main__":
    main()
