"""Redaction benchmark: throughput on 720p footage and the coverage of known faces, side
by side with `deface` itself.

The clip is the sample footage (`samples/concourse-720p.avi`, 1280x720, 25 frames a
second, 341 frames) with six face pictures (`skimage.data.lfw_subset()`, 40-120 pixels)
moving along known paths (`tests/harness/faces.py`), encoded as an H.264 MP4 master.

  (a) the controller's redaction: `analyse` (CenterFace on every `--every`-th frame at
      `--width`, tracks between) then `render` (solid fill, libx264 once), after the
      review step of un-masking the requester (one click, as on the review page);
  (b) `deface` (its command, in its own virtual environment, created here if missing with
      `python3 -m venv` and `pip install deface onnx onnxruntime`: onnx and onnxruntime
      give deface its faster onnxruntime backend, the runtime (a) uses) with
      `--replacewith solid` (black boxes, like (a)), `--execution-provider
      CPUExecutionProvider` (as (a)) and otherwise its defaults: CenterFace on every frame
      at full size, threshold 0.2, mask scale 1.3.

Printed for each: wall time, CPU time (the process and its threads; for (b) its whole
process tree, from `os.wait4`), frames a second, the wall time that rate gives for 10
minutes of 720p footage (target: under 10 minutes), and the coverage measured on the
same run's output: the share of face-frames (the five faces that are not the requester)
whose square is at least 95 % solid fill in the decoded copy, and the largest share of the
requester's face filled on any frame ((b) has no way to leave anyone visible).

The machine is shared (2 cores, other work running): the load average before and after
is printed with the figures, and CPU time is the steadier measure.

    python bench/redaction.py [--frames 341] [--every 5] [--width 960] [--threads 1]
                              [--preset veryfast] [--crf 20]
                              [--no-deface] [--deface-venv /tmp/deface-venv]
                              [--deface-scale WxH]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.redaction import (  # noqa: E402
    DetectionSettings,
    EncodeSettings,
    RedactionPlan,
    Unmask,
    analyse,
    render,
)
from tests.harness.faces import Coverage, FaceClip, coverage, decode_luma, make_face_clip  # noqa: E402

TEN_MINUTES = 10 * 60


@dataclass(frozen=True)
class Run:
    name: str
    wall: float
    cpu: float
    frames: int
    coverage: Coverage
    size: int
    note: str = ""

    @property
    def fps(self) -> float:
        return self.frames / self.wall

    def ten_minutes(self, frame_rate: float) -> float:
        """Wall seconds for 10 minutes of footage at this rate."""
        return TEN_MINUTES * frame_rate / self.fps


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def run_ours(
    clip: FaceClip, out: Path, settings: DetectionSettings, encode: EncodeSettings, threads: int
) -> Run:
    wall0, cpu0 = time.perf_counter(), _cpu_self()
    plan = analyse(clip.path, settings=settings, threads=threads)
    wall1, cpu1 = time.perf_counter(), _cpu_self()
    plan = _unmask_requester(plan, clip)
    derived = out / "ours.mp4"
    wall2, cpu2 = time.perf_counter(), _cpu_self()
    result = render(clip.path, plan, derived, encode=encode)
    wall3, cpu3 = time.perf_counter(), _cpu_self()
    measured = coverage(clip, decode_luma(derived))
    frames = plan.frame_count
    note = (
        f"finding faces {wall1 - wall0:.1f} s wall / {cpu1 - cpu0:.1f} s CPU "
        f"({frames / (wall1 - wall0):.1f} frames/s), {len(plan.tracks)} tracks; "
        f"copy {wall3 - wall2:.1f} s wall / {cpu3 - cpu2:.1f} s CPU "
        f"({frames / (wall3 - wall2):.1f} frames/s)"
    )
    return Run(
        name=f"controller (every {settings.every}, {settings.width} px, {encode.preset})",
        wall=(wall1 - wall0) + (wall3 - wall2),
        cpu=(cpu1 - cpu0) + (cpu3 - cpu2),
        frames=frames,
        coverage=measured,
        size=result.bytes,
        note=note,
    )


def _unmask_requester(plan: RedactionPlan, clip: FaceClip) -> RedactionPlan:
    frame = clip.frames // 2
    box = clip.requester.box_at(frame)
    assert box is not None
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    for track in plan.tracks_at(frame, x, y):
        plan = plan.apply(Unmask(at=datetime.now(UTC), by="bench", track_id=track.track_id))
    return plan


def ensure_deface(venv: Path) -> Path:
    """The `deface` command in `venv`, which is made when missing."""
    command = venv / "bin" / "deface"
    if command.exists():
        return command
    print(f"making {venv} for deface (python3 -m venv; pip install deface onnx onnxruntime)")
    subprocess.run(["python3", "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "deface", "onnx", "onnxruntime"],
        capture_output=True,
        text=True,
        check=False,
    )
    if pip.returncode != 0 or not command.exists():
        raise SystemExit(f"pip could not install deface into {venv}:\n{pip.stderr[-3000:]}")
    return command


def run_deface(clip: FaceClip, out: Path, venv: Path, scale: str | None) -> Run:
    command = ensure_deface(venv)
    derived = out / "deface.mp4"
    args = [str(command), str(clip.path), "-o", str(derived), "--replacewith", "solid"]
    # onnxruntime lists its Azure provider first, which deface would otherwise pick (and
    # then run every node on the CPU provider anyway): name the CPU provider, as (a) uses.
    args += ["--execution-provider", "CPUExecutionProvider"]
    if scale:
        args += ["--scale", scale]
    wall0 = time.perf_counter()
    with open(out / "deface.log", "wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - wall0
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(
            f"deface failed ({process.returncode}):\n{(out / 'deface.log').read_text()[-2000:]}"
        )
    frames = decode_luma(derived)
    log_lines = (out / "deface.log").read_text(errors="replace").splitlines()
    backend = [line for line in log_lines if line.startswith("Running on")]
    note = backend[0] if backend else "OpenCV backend (onnxruntime not used)"
    if len(frames) != clip.frames:
        note += f"; it wrote {len(frames)} frames of {clip.frames}"
        frames = frames[: clip.frames]
    return Run(
        name="deface " + (f"(--scale {scale})" if scale else "(every frame, full size)"),
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        frames=clip.frames,
        coverage=coverage(clip, frames),
        size=derived.stat().st_size,
        note=note,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=341, help="frames of the clip (max 341)")
    parser.add_argument("--every", type=int, default=DetectionSettings().every)
    parser.add_argument("--width", type=int, default=DetectionSettings().width)
    parser.add_argument("--threads", type=int, default=1, help="detector CPU threads")
    parser.add_argument("--preset", default=EncodeSettings().preset, help="x264 preset")
    parser.add_argument("--crf", type=int, default=EncodeSettings().crf)
    parser.add_argument("--no-deface", action="store_true", help="skip the deface run")
    parser.add_argument("--deface-venv", type=Path, default=Path("/tmp/deface-venv"))
    parser.add_argument("--deface-scale", default=None, help="deface --scale, e.g. 960x540")
    args = parser.parse_args()

    print(f"machine: {os.cpu_count()} cores, shared with other work; load average {_load()}")
    with tempfile.TemporaryDirectory(prefix="redaction-bench-") as tmp:
        out = Path(tmp)
        clip = make_face_clip(out / "master.mp4", frames=args.frames)
        frame_rate = float(clip.frame_rate)
        print(
            f"clip: {clip.frames} frames, {clip.width}x{clip.height}, {frame_rate:g} frames/s "
            f"({clip.frames / frame_rate:.1f} s); {clip.face_frames()} face-frames of "
            f"{len(clip.others)} faces to mask, and the requester's"
        )
        settings = DetectionSettings(every=args.every, width=args.width)
        encode = EncodeSettings(preset=args.preset, crf=args.crf)
        runs = [run_ours(clip, out, settings, encode, args.threads)]
        print(f"load average after the controller's run: {_load()}")
        if not args.no_deface:
            runs.append(run_deface(clip, out, args.deface_venv, args.deface_scale))
            print(f"load average after deface: {_load()}")

    print()
    header = (
        f"{'':44} {'wall s':>7} {'CPU s':>7} {'frames/s':>9} {'10 min takes':>13} "
        f"{'covered':>8} {'requester':>10} {'MB':>6}"
    )
    print(header + f" {'CPU ms/frame':>13}")
    for run in runs:
        ten = run.ten_minutes(frame_rate)
        verdict = "ok" if ten < TEN_MINUTES else "over"
        print(
            f"{run.name:44} {run.wall:7.1f} {run.cpu:7.1f} {run.fps:9.1f} "
            f"{ten / 60:8.1f} min {verdict:>4} {run.coverage.share:7.1%} "
            f"{run.coverage.requester_worst:9.0%} {run.size / 1e6:6.1f} "
            f"{1000 * run.cpu / run.frames:13.0f}"
        )
    print()
    cores = os.cpu_count() or 1
    for run in runs:
        cpu_ten = TEN_MINUTES * frame_rate * run.cpu / run.frames
        print(
            f"{run.name}: {run.note}\n  CPU time for 10 minutes of footage: "
            f"{cpu_ten / 60:.1f} min on {cores} cores shared with other work (the wall "
            "time above includes the time spent waiting for a core)"
        )
        missed = run.coverage.missed
        if missed:
            print(f"  missed {len(missed)} face-frames, e.g. {list(missed[:6])}")
    print(
        "\n'covered': face-frames (requester excluded) with >= 95 % of the face square solid "
        "fill in the decoded output; 'requester': the largest share of the requester's face "
        "filled on any frame (0 % = never masked). 10 min takes: 10 minutes of 720p footage "
        "at the measured rate (target under 10 min), on a machine shared with other work."
    )


if __name__ == "__main__":
    main()
