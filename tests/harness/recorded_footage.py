"""Footage recorded by the real recorder from the sample clip, with the unit's signed
index manifest beside it: the folder a retrieval from a unit leaves on the controller
(segment files under their unit file names plus `manifest.json`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge_agent.capture import open_source
from edge_agent.recorder.index import IndexEntry, SegmentIndex
from edge_agent.recorder.recorder import Recorder, RecorderConfig
from protocol.evidence_keys import EvidencePrivateKey
from protocol.segment.manifest import Checkpoint
from tests.harness.footage import require_sample_clip

__all__ = ["RecordedFootage", "record_footage"]


@dataclass
class RecordedFootage:
    unit_id: str
    folder: Path
    signing_key: Ed25519PrivateKey
    entries: list[IndexEntry]
    #: Checkpoints signed while recording, as the unit reports them over MQTT.
    reported: list[Checkpoint] = field(default_factory=list)

    def range_over(self, first: int, last: int) -> tuple[datetime, datetime]:
        """A time range from the middle of segment `first` to the middle of `last`."""
        a, b = self.entries[first], self.entries[last]
        return (a.started_at + (a.ended_at - a.started_at) / 2,
                b.started_at + (b.ended_at - b.started_at) / 2)  # fmt: skip


async def _record(recorder: Recorder, sealed: list[object], segments: int) -> None:
    await recorder.start()
    async with asyncio.timeout(60):
        while len(sealed) < segments:  # noqa: ASYNC110 - the recorder's thread fills it
            await asyncio.sleep(0.05)
    await recorder.stop()


def record_footage(
    folder: Path,
    *,
    unit_id: str,
    evidence_key: EvidencePrivateKey,
    segments: int = 7,
    signing_key: Ed25519PrivateKey | None = None,
) -> RecordedFootage:
    """Record at least `segments` 2-second segments of the looped sample clip (as fast as
    it decodes) into `folder`, sign a checkpoint after the third (reported) and export the
    manifest of every segment. Runs its own event loop: call it from a sync fixture."""
    clip = require_sample_clip()
    key = signing_key or Ed25519PrivateKey.generate()
    folder.mkdir(parents=True, exist_ok=True)
    reported: list[Checkpoint] = []
    sealed: list[object] = []
    with SegmentIndex(folder.parent / f"{unit_id}-index.sqlite", unit_id=unit_id,
                      signing_key=key) as index:  # fmt: skip

        def on_segment(summary: object, chain: object) -> None:
            sealed.append(summary)
            if len(sealed) == 3:
                reported.append(index.checkpoint())

        recorder = Recorder(
            source=open_source(f"file:{clip}?realtime=0"),
            index=index,
            evidence_key=evidence_key.public_key(),
            config=RecorderConfig(unit_id=unit_id, data_dir=folder, segment_seconds=2.0),
            on_segment=on_segment,
        )
        asyncio.run(_record(recorder, sealed, segments))
        reported.append(index.checkpoint())
        entries = index.entries()
        (folder / "manifest.json").write_bytes(
            index.export_manifest([e.segment_id for e in entries])
        )
    return RecordedFootage(unit_id, folder, key, entries, reported)
