"""The unit's side of evidence uploads, without the network: the bandwidth cap's token
bucket, the upload job kept across reboots, what an upload command selects, and the
`[evidence]` settings."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_agent.commands import CommandFailed
from edge_agent.config import ConfigError, EvidenceConfig, load_config
from edge_agent.uploads import JobStore, TokenBucket, Uploader
from protocol.evidence_upload import MANIFEST_NAME
from protocol.messages import TimeRange, UploadEvidence
from protocol.segment.manifest import SegmentManifest, verify_manifest
from provisioning import Fleet
from tests.harness.unit_footage import UnitFootage


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_token_bucket_holds_the_rate_over_time(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    monkeypatch.setattr(asyncio, "sleep", sleep)
    bucket = TokenBucket(100_000, burst=10_000, clock=clock)
    for _ in range(100):
        await bucket.take(10_000)
    # 1 000 000 bytes at 100 000 B/s: ten seconds less the first burst.
    assert sum(slept) == pytest.approx(9.9, rel=1e-6)
    clock.now += 60  # a long pause refills only the burst
    slept.clear()
    await bucket.take(10_000)
    await bucket.take(10_000)
    assert sum(slept) == pytest.approx(0.1, rel=1e-6)


async def test_an_unlimited_bucket_never_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    async def sleep(seconds: float) -> None:
        raise AssertionError("an unlimited bucket slept")

    monkeypatch.setattr(asyncio, "sleep", sleep)
    bucket = TokenBucket(0)
    for _ in range(10):
        await bucket.take(10**9)
    with pytest.raises(ValueError):
        TokenBucket(-1)


def _uploader(fleet: Fleet, footage: UnitFootage, **values: object) -> Uploader:
    bundle = fleet.layout.bundle_dir(footage.unit_id)
    settings: dict[str, object] = {"upload_url": "https://127.0.0.1:9"}
    settings.update(values)
    return Uploader(
        EvidenceConfig(**settings),
        unit_id=footage.unit_id,
        cert_file=bundle / "unit.crt",
        key_file=bundle / "unit.key",
        index=footage.index,
        segments_dir=footage.segments_dir,
        jobs_dir=footage.root / "uploads",
    )


async def test_an_upload_job_selects_the_ranges_and_survives_a_reboot(
    fleet: Fleet, tmp_path: Path
) -> None:
    footage = UnitFootage(fleet, "cam-01", tmp_path / "cam-01")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=5)
    entries = footage.record(start, 8, seconds=60, payload=10_000)
    try:
        uploader = _uploader(fleet, footage)
        ranges = [
            TimeRange(start=entries[1].started_at, end=entries[2].ended_at),
            TimeRange(start=entries[5].started_at + timedelta(seconds=1), end=entries[5].ended_at),
        ]
        action = UploadEvidence(upload_id="up-1", case_number="C-2026-0001", ranges=ranges)
        result = await uploader.start_job("cmd-1", action)
        assert result == {
            "upload_id": "up-1",
            "segments": 3,
            "bytes": sum(e.size for e in (entries[1], entries[2], entries[5]))
            + (footage.root / "uploads" / "up-1" / MANIFEST_NAME).stat().st_size,
        }
        job = JobStore(footage.root / "uploads").get("up-1")  # as read after a reboot
        assert job is not None and job.status == "pending"
        assert [f.name for f in job.files] == [
            MANIFEST_NAME, entries[1].file_name, entries[2].file_name, entries[5].file_name,
        ]  # fmt: skip
        manifest = SegmentManifest.from_json(job.files[0].path.read_bytes())
        assert verify_manifest(manifest, footage.signing_key.public_key()) == []
        assert manifest.selected == [e.segment_id for e in (entries[1], entries[2], entries[5])]
        # The same command again (sent again by the controller) keeps the job.
        again = await uploader.start_job("cmd-2", action)
        assert again == result
        other = action.model_copy(update={"ranges": ranges[:1]})
        with pytest.raises(CommandFailed, match="asked before for other footage"):
            await uploader.start_job("cmd-3", other)
        empty = UploadEvidence(
            upload_id="up-2",
            case_number="C-2026-0001",
            ranges=[TimeRange(start=start - timedelta(days=2), end=start - timedelta(days=1))],
        )
        with pytest.raises(CommandFailed, match="no footage"):
            await uploader.start_job("cmd-4", empty)
        with pytest.raises(CommandFailed, match="upload_url"):
            await _uploader(fleet, footage, upload_url=None).start_job("cmd-5", action)
    finally:
        footage.close()


def test_the_evidence_settings_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text(
        'unit_id = "cam-01"\n[evidence]\nupload_url = "https://ctl.example:8443/"\n'
        "bandwidth_bytes_s = 0\n"
    )
    loaded = load_config(config)
    assert loaded.evidence.upload_url == "https://ctl.example:8443"
    assert loaded.evidence.ca_file == tmp_path / "ca.crt"
    assert EvidenceConfig().bandwidth_bytes_s == 250_000  # 2 Mbit/s unless told
    for bad, why in (
        ('upload_url = "http://ctl.example:8443"', "https://"),
        ('upload_url = "https://ctl.example:84x3"', "bad port"),
        ('upload_url = "https://ctl.example/uploads"', "without a path"),
        ("bandwidth_bytes_s = -5", "greater than or equal to 0"),
    ):
        config.write_text(f'unit_id = "cam-01"\n[evidence]\n{bad}\n')
        with pytest.raises(ConfigError, match=why) as caught:
            load_config(config)
        assert caught.value.key is not None and caught.value.key.startswith("evidence.")
