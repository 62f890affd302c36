"""The deployment baseline: what the view looked like when the unit was put up.

Learned from a few sampled frames at deployment start and kept on disk (one `.npz` file
with the reference picture, per-cell texture and a JSON header), so that blur, obstruction
and a knocked camera are judged against this site, not against fixed numbers, and the
judgement survives restarts.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_agent.errors import AgentError
from edge_agent.selftest.analysis import (
    GRID_COLS,
    GRID_ROWS,
    PreparedFrame,
    cell_texture,
    prepare,
    sharpness,
)

__all__ = ["Baseline", "BaselineError", "learn_baseline", "measured_fps"]

FORMAT_VERSION = 1
MIN_SAMPLES = 3


class BaselineError(AgentError):
    """A baseline that cannot be learned, read or written."""

    def __init__(self, reason: str, *, path: Path | None = None) -> None:
        where = f"{path}: " if path is not None else ""
        super().__init__(f"self-test baseline: {where}{reason}")
        self.reason = reason
        self.path = path


def measured_fps(frame_times: Sequence[float]) -> float | None:
    """Frames per second over a run of frame timestamps (seconds), or None if fewer than
    two frames or no time passed."""
    if len(frame_times) < 2:
        return None
    span = max(frame_times) - min(frame_times)
    if span <= 0:
        return None
    return (len(frame_times) - 1) / span


@dataclass(frozen=True, slots=True, eq=False)
class Baseline:
    """Reference picture and measures taken at deployment start."""

    reference: npt.NDArray[np.uint8]
    """Grey reference picture at the analysis width."""
    cell_texture: npt.NDArray[np.float64]
    """Median texture per grid cell over the learning samples."""
    sharpness: float
    """Median focus measure over the learning samples."""
    expected_fps: float
    source_size: tuple[int, int]
    created_at: datetime
    samples: int

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename) so a power cut leaves the old one."""
        header = {
            "format": FORMAT_VERSION,
            "sharpness": self.sharpness,
            "expected_fps": self.expected_fps,
            "source_size": list(self.source_size),
            "created_at": self.created_at.isoformat(),
            "samples": self.samples,
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".baseline-", suffix=".npz", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez_compressed(
                    fh,
                    reference=self.reference,
                    cell_texture=self.cell_texture,
                    header=np.array(json.dumps(header)),
                )
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except OSError as exc:
            Path(tmp).unlink(missing_ok=True)
            raise BaselineError(f"cannot write: {exc.strerror or exc}", path=path) from exc

    @classmethod
    def load(cls, path: Path) -> Baseline:
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                reference = np.asarray(data["reference"], dtype=np.uint8)
                texture = np.asarray(data["cell_texture"], dtype=np.float64)
        except FileNotFoundError as exc:
            raise BaselineError("no baseline yet", path=path) from exc
        except (OSError, ValueError, KeyError) as exc:
            raise BaselineError(f"unreadable: {exc}", path=path) from exc
        if header.get("format") != FORMAT_VERSION:
            raise BaselineError(f"unsupported format {header.get('format')!r}", path=path)
        if reference.ndim != 2 or texture.shape != (GRID_ROWS * GRID_COLS,):
            raise BaselineError("arrays have the wrong shape", path=path)
        try:
            width, height = (int(v) for v in header["source_size"])
            return cls(
                reference=reference,
                cell_texture=texture,
                sharpness=float(header["sharpness"]),
                expected_fps=float(header["expected_fps"]),
                source_size=(width, height),
                created_at=datetime.fromisoformat(header["created_at"]),
                samples=int(header["samples"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BaselineError(f"bad header: {exc}", path=path) from exc


def _as_prepared(samples: Sequence[PreparedFrame | npt.NDArray[np.uint8]]) -> list[PreparedFrame]:
    return [s if isinstance(s, PreparedFrame) else prepare(s) for s in samples]


def learn_baseline(
    samples: Sequence[PreparedFrame | npt.NDArray[np.uint8]],
    *,
    frame_times: Sequence[float] = (),
    expected_fps: float | None = None,
    now: datetime | None = None,
) -> Baseline:
    """Learn the baseline from sampled frames (about one a second, a few seconds' worth).

    The frame rate is the one observed over `frame_times` unless `expected_fps` is given.
    The reference picture is the sample closest to the per-pixel median of all samples:
    the one with the fewest passers-by in it.
    """
    prepared = _as_prepared(samples)
    if len(prepared) < MIN_SAMPLES:
        raise BaselineError(f"need at least {MIN_SAMPLES} sampled frames, got {len(prepared)}")
    if len({p.grey.shape for p in prepared}) != 1:
        raise BaselineError("sampled frames differ in size")
    fps = expected_fps if expected_fps is not None else measured_fps(frame_times)
    if fps is None or fps <= 0:
        raise BaselineError("no frame rate: give frame timestamps or the expected fps")
    thumbs = np.stack([p.thumb.astype(np.float64) for p in prepared])
    median = np.median(thumbs, axis=0)
    typical = int(np.argmin([np.mean(np.abs(t - median)) for t in thumbs]))
    return Baseline(
        reference=prepared[typical].grey.copy(),
        cell_texture=np.median(np.stack([cell_texture(p.grey) for p in prepared]), axis=0),
        sharpness=float(np.median([sharpness(p.grey) for p in prepared])),
        expected_fps=float(fps),
        source_size=prepared[typical].source_size,
        created_at=now or datetime.now(UTC),
        samples=len(prepared),
    )
