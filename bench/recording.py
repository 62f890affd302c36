"""Recording benchmark: CPU per hour of footage and peak memory of

  (a) the recorder: remux into fragmented MP4, encrypted segments, index (the normal path)
  (b) ``ffmpeg -c copy -f segment`` on the same input (no encryption, no index, no fsync)
  (c) the recorder's masked path: decode, black out a privacy mask, x264 encode, encrypt

Each runs in its own process, reading the sample clip in a loop as fast as it can; the
figures are that process's own (``os.wait4``: every thread, start-up included), and both
write to the same filesystem. Two ratios are printed:

- whole process: (a)/(b) CPU for `--passes` passes, start-up and shutdown included;
- steady state: the CPU each adds per extra pass, from runs of `--passes` and of one pass
  ((cpu_N - cpu_1) / (N - 1)), so a fixed cost (the recorder's Python start-up and
  imports, ffmpeg's own start-up) counts for neither side.

The interpreter start-up and imports alone are shown too, for reference, and so is the
CPU that SHA-256 alone takes over (a)'s output (timed here with hashlib): the whole-file
hash the unit's signed index records, which (b) does not compute. The default 200 passes
are 45 minutes of footage.

(a) and (b) run `--repeat` times, alternately, and the median run is shown. Output goes
to a tmpfs by default: the kernel charges disk writeback unevenly (an fsync'd write to the
writer, as the recorder does for every chunk; a buffered write to its flusher threads, as
for ffmpeg), so on a disk the comparison measures the kernel more than the recorders.
``--out /some/disk/dir`` measures on a disk anyway. Before every run the pages it will
write are made resident (`_prewarm`), which on a virtual machine steadies system time.

    python bench/recording.py [--clip PATH] [--passes 200] [--masked-passes 3] [--repeat 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIP = ROOT / "samples" / "concourse-720p.avi"  # the sample footage in the repository
CLIP_PACKETS = 341  # video packets in one pass of the clip
CLIP_FPS = 25.0
CLIP_BYTES_PER_PASS = 2_800_000  # output a pass (a little over), for `_prewarm`

IMPORTS = """
import asyncio, gc, pathlib, sys
from edge_agent.capture import open_source
from edge_agent.recorder.index import SegmentIndex
from edge_agent.recorder.recorder import Recorder, RecorderConfig
from protocol.evidence_keys import EvidencePublicKey
"""

# Records exactly `passes` passes of the clip, as fast as the file can be read: the source
# ends after them (`loops=`), as a camera that stops, and the recorder seals the segment.
RECORDER = (
    IMPORTS
    + """
import logging
logging.basicConfig(level=logging.ERROR)  # the end of the clip is logged as a lost signal
data, clip, key_file = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
passes, masked = int(sys.argv[4]), sys.argv[5] == "masked"

async def main() -> None:
    index = SegmentIndex(data / "index.sqlite", unit_id="unit-bench-01")
    ended = asyncio.Event()
    recorder = Recorder(
        source=open_source(f"file:{clip}?realtime=0&loops={passes}", sample_interval=None),
        index=index,
        evidence_key=EvidencePublicKey.from_json(key_file.read_bytes()),
        config=RecorderConfig(unit_id="unit-bench-01", data_dir=data),
        masks=[[(0.0, 0.0), (0.4, 0.0), (0.4, 0.5), (0.0, 0.5)]] if masked else [],
        on_stopped=lambda status: ended.set(),
    )
    await recorder.start()
    await ended.wait()
    await recorder.stop()
    entries = index.entries()
    if sum(e.size for e in entries) == 0:
        raise SystemExit("nothing recorded")
    index.close()

gc.freeze()  # as `cctv-agent run` does once started (edge_agent.service.run_agent)
asyncio.run(main())
"""
)


@dataclass
class Run:
    name: str
    footage_s: float
    user_s: float
    sys_s: float
    peak_rss_mb: float
    wall_s: float
    output_mb: float

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    @property
    def cpu_per_hour(self) -> float:
        return self.cpu_s * 3600.0 / self.footage_s if self.footage_s else 0.0


def _measure(name: str, cmd: list[str], footage_s: float, out_dir: Path) -> Run:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: exited with {proc.returncode}")
    size = sum(p.stat().st_size for p in out_dir.rglob("*") if p.is_file())
    return Run(
        name=name,
        footage_s=footage_s,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024.0,  # kilobytes on Linux
        wall_s=wall,
        output_mb=size / 1e6,
    )


def _prewarm(directory: Path, nbytes: int) -> None:
    """Write and delete `nbytes` in `directory` just before a measured run. On a virtual
    machine whose free memory goes back to the host, the first write to a page the host
    took back costs the writer a fault on the host; this makes the pages the run will
    write to resident for every run alike, so the system time measures the recorders."""
    block = bytes(8 << 20)
    path = directory / "prewarm"
    with path.open("wb") as f:
        for _ in range(0, nbytes, len(block)):
            f.write(block)
    path.unlink()


def _sha256_cpu(nbytes: int) -> float:
    """CPU seconds that hashlib's SHA-256 takes over `nbytes` here (the recorder hashes
    every byte it writes once, for the whole-file hash in the unit's signed index)."""
    block = os.urandom(1 << 20)
    digest = hashlib.sha256()
    start = time.process_time()
    for _ in range(0, nbytes, len(block)):
        digest.update(block)
    return time.process_time() - start


def _median(runs: list[Run]) -> Run:
    return sorted(runs, key=lambda r: r.cpu_s)[len(runs) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip", type=Path, default=CLIP)
    parser.add_argument("--passes", type=int, default=200, help="passes for (a) and (b)")
    parser.add_argument("--masked-passes", type=int, default=3, help="passes for (c)")
    parser.add_argument("--repeat", type=int, default=5, help="runs of (a) and (b): median")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None,
        help="where output goes (default: tmpfs; give a disk path to include disk writes)",
    )
    args = parser.parse_args()
    if not args.clip.is_file():
        raise SystemExit(f"no clip at {args.clip}")

    sys.path.insert(0, str(ROOT))  # run as a script from a checkout
    from protocol.evidence_keys import generate_evidence_key

    with tempfile.TemporaryDirectory(prefix="cctv-bench-", dir=args.out) as tmp:
        base = Path(tmp)
        key_file = base / "evidence-public.json"
        key_file.write_bytes(generate_evidence_key().public_key().to_json())
        py = sys.executable
        passes = args.passes

        expected = passes * CLIP_BYTES_PER_PASS

        def measure(name: str, cmd: list[str], footage_s: float, out: Path) -> Run:
            out.mkdir()
            os.sync()  # no earlier run's dirty pages are written back during this one
            _prewarm(base, expected)
            try:
                return _measure(name, cmd, footage_s, out)
            finally:
                shutil.rmtree(out)  # 550 MB a run at the default passes

        def recorder(name: str, n: int, mode: str, tag: str) -> Run:
            out = base / tag
            cmd = [py, "-c", RECORDER, str(out), str(args.clip), str(key_file), str(n), mode]
            return measure(name, cmd, n * CLIP_PACKETS / CLIP_FPS, out)

        def ffmpeg(tag: str, passes: int) -> Run:
            out = base / tag
            cmd = [
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-fflags", "+genpts",
                "-stream_loop", str(passes - 1), "-i", str(args.clip), "-an", "-c", "copy",
                "-f", "segment", "-segment_time", "60", "-reset_timestamps", "1",
                str(out / "seg%05d.mp4"),
            ]  # fmt: skip
            name = "(b) ffmpeg -c copy -f segment"
            return measure(name, cmd, passes * CLIP_PACKETS / CLIP_FPS, out)

        startup = measure("start-up only", [py, "-c", IMPORTS], 0.0, base / "startup")
        a_runs, b_runs, a1_runs, b1_runs = [], [], [], []
        for n in range(args.repeat):  # alternate, so both see the same machine load
            a_runs.append(recorder("(a) recorder, encrypted", passes, "remux", f"a{n}"))
            b_runs.append(ffmpeg(f"b{n}", passes))
            a1_runs.append(recorder("(a) one pass", 1, "remux", f"a1-{n}"))
            b1_runs.append(ffmpeg(f"b1-{n}", 1))
        c = recorder("(c) masked, re-encoded", args.masked_passes, "masked", "c")
    a, b, a1, b1 = _median(a_runs), _median(b_runs), _median(a1_runs), _median(b1_runs)
    runs = [a, b, c]

    print(f"clip {args.clip.name}: {CLIP_PACKETS} packets, {CLIP_PACKETS / CLIP_FPS:.2f} s a pass")
    spread = (
        ", ".join(f"{r.cpu_s:.2f}" for r in a_runs),
        ", ".join(f"{r.cpu_s:.2f}" for r in b_runs),
    )
    print(f"CPU s of each run: (a) {spread[0]}; (b) {spread[1]} (median shown)")
    print(f"output to {args.out or tempfile.gettempdir()}")
    header = f"{'path':34} {'footage s':>9} {'CPU s':>7} {'(user':>6} {'sys)':>5}"
    print(header + f" {'CPU s/h':>8} {'peak RSS MB':>11} {'wall s':>7} {'out MB':>7}")
    for r in runs:
        print(
            f"{r.name:34} {r.footage_s:9.1f} {r.cpu_s:7.2f} {r.user_s:6.2f} {r.sys_s:5.2f}"
            f" {r.cpu_per_hour:8.1f} {r.peak_rss_mb:11.1f} {r.wall_s:7.2f} {r.output_mb:7.1f}"
        )
    print(
        f"{'(interpreter start-up + imports)':34} {'':9} {startup.cpu_s:7.2f} {'':8} "
        f"{startup.peak_rss_mb:11.1f} {startup.wall_s:7.2f}"
    )
    print(f"one-pass runs (CPU s): (a) {a1.cpu_s:.2f}; (b) {b1.cpu_s:.2f} (median)")
    ratio = a.cpu_per_hour / b.cpu_per_hour if b.cpu_per_hour else float("inf")
    extra = a.footage_s - a1.footage_s
    steady_a = (a.cpu_s - a1.cpu_s) * 3600.0 / extra if extra else 0.0
    steady_b = (b.cpu_s - b1.cpu_s) * 3600.0 / extra if extra else 0.0
    steady_ratio = steady_a / steady_b if steady_b > 0 else float("inf")
    print(f"steady state CPU s/h (per extra pass): (a) {steady_a:.2f}; (b) {steady_b:.2f}")
    print(
        f"(a)/(b) CPU: whole process {ratio:.2f}x; steady state {steady_ratio:.2f}x"
        " (target <= 1.5x)"
    )
    sha_s_per_h = _sha256_cpu(round(a.output_mb * 1e6)) * 3600.0 / a.footage_s
    less_sha = (steady_a - sha_s_per_h) / steady_b if steady_b > 0 else float("inf")
    print(
        f"of (a)'s steady state, the whole-file SHA-256 alone: {sha_s_per_h:.2f} CPU s/h"
        f" ({sha_s_per_h / steady_b:.2f}x (b)); (a) less it: {less_sha:.2f}x"
    )
    print(f"(a) peak RSS: {a.peak_rss_mb:.1f} MB (target < 150 MB)")
    print(f"(c)/(a) CPU per hour: {c.cpu_per_hour / a.cpu_per_hour:.1f}x")


if __name__ == "__main__":
    main()
