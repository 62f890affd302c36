"""`IndexEntry`: one sealed segment as the unit's segment index (`edge_agent.recorder.index`)
holds it: its times, file, size and sha256, its chain hash, and whether it was deleted or
is held.
"""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict

from protocol.segment.format import SegmentSummaryInfo

__all__ = ["IndexEntry"]


class IndexEntry(BaseModel):
    """One segment as the index holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    segment_id: str
    started_at: AwareDatetime
    ended_at: AwareDatetime
    file_name: str
    size: int
    sha256: str
    chunks: int
    plaintext_bytes: int
    truncated: bool
    chain_hash: str
    deleted_at: AwareDatetime | None
    deleted_reason: str | None
    held: bool

    def summary(self, unit_id: str) -> SegmentSummaryInfo:
        return SegmentSummaryInfo(
            segment_id=self.segment_id,
            unit_id=unit_id,
            started_at=self.started_at,
            ended_at=self.ended_at,
            chunks=self.chunks,
            plaintext_bytes=self.plaintext_bytes,
            file_bytes=self.size,
            file_sha256=self.sha256,
            truncated=self.truncated,
        )
