"""`cctv-controller evidence decrypt` end to end on real H.264 footage: segments muxed by
PyAV straight into the encrypted writer (as the recorder does), indexed by the unit's
index, exported with its signed manifest, then verified, decrypted and remuxed."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from controller.evidence.cli import PASSPHRASE_ENV, evidence_app
from edge_agent.recorder.index import SegmentIndex
from protocol.evidence_keys import EvidencePrivateKey, generate_evidence_key
from protocol.segment.reader import seal_truncated
from protocol.segment.writer import SegmentWriter
from tests.harness.footage import SAMPLE_CLIP, require_sample_clip

SOURCE = SAMPLE_CLIP
UNIT = "unit-7"
PASSPHRASE = "correct horse battery"
T0 = datetime(2025, 3, 1, 7, 0, tzinfo=UTC)
# short fragments, as the recorder writes them, so a power cut loses little
FMP4 = {"movflags": "frag_keyframe+empty_moov+default_base_moof", "frag_duration": "200000"}


@dataclass
class Export:
    folder: Path
    segments: dict[str, Path]
    packets: dict[str, list[bytes]]
    manifest: Path
    unit_pub: Path
    key_file: Path
    key: EvidencePrivateKey


def source_packets() -> list[list[av.Packet]]:
    """The source's H.264 packets split into groups that each start on a keyframe."""
    groups: list[list[av.Packet]] = []
    with av.open(str(SOURCE)) as src:
        for packet in src.demux(video=0):
            if packet.dts is None or packet.size == 0:
                continue
            if packet.is_keyframe or not groups:
                groups.append([])
            groups[-1].append(packet)
    return groups


def record(
    folder: Path, sid: str, packets: list[av.Packet], key: EvidencePrivateKey, *, cut: int = 0
):
    """Mux packets into a fragmented MP4 written straight into the segment writer."""
    path = folder / f"{sid}.seg"
    with av.open(str(SOURCE)) as src, path.open("wb") as f:
        writer = SegmentWriter(
            f, unit_id=UNIT, segment_id=sid, evidence_key=key.public_key(),
            started_at=T0, chunk_size=64 * 1024,
        )  # fmt: skip
        with av.open(writer, "w", format="mp4", options=FMP4) as out:
            stream = out.add_stream_from_template(src.streams.video[0])
            for packet in packets[: len(packets) - cut]:
                packet.stream = stream
                out.mux(packet)
        if cut:  # a power cut: the writer never finishes
            writer.close()
            f.flush()
            f.seek(0)
            return path, None
        return path, writer.finish(ended_at=T0 + timedelta(seconds=3))


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    require_sample_clip()
    folder = tmp_path_factory.mktemp("export")
    key = generate_evidence_key()
    key_file = folder / "evidence-private.json"
    key_file.write_bytes(key.to_encrypted_json(PASSPHRASE))
    signing = Ed25519PrivateKey.generate()
    unit_pub = folder / "signing.pub"
    unit_pub.write_bytes(
        signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    groups = source_packets()
    assert len(groups) >= 3
    segs = folder / "unit"
    segs.mkdir()
    paths: dict[str, Path] = {}
    packets: dict[str, list[bytes]] = {}
    with SegmentIndex(folder / "index.db", unit_id=UNIT, signing_key=signing) as index:
        for i, group in enumerate(groups[:3]):
            sid = f"seg-{i}"
            paths[sid], summary = record(segs, sid, group, key)
            assert summary is not None and summary.chunks > 2
            index.add(summary)
            packets[sid] = [bytes(p) for p in group]
        paths["seg-cut"], _ = record(segs, "seg-cut", groups[0], key, cut=40)
        with paths["seg-cut"].open("r+b") as f:
            index.add(seal_truncated(f))
        packets["seg-cut"] = [bytes(p) for p in groups[0]]
        paths["seg-retired"], summary = record(segs, "seg-retired", groups[1][:10], key)
        assert summary is not None
        index.add(summary)
        index.mark_deleted("seg-retired", "retention")
        manifest = folder / "manifest.json"
        manifest.write_bytes(index.export_manifest(list(paths)))
    return Export(folder, paths, packets, manifest, unit_pub, key_file, key)


def run(export: Export, files: list[Path], out: Path, manifest: Path | None = None, **env: str):
    args = ["decrypt", *map(str, files), "--manifest", str(manifest or export.manifest)]
    args += ["--unit-key", str(export.unit_pub), "--key", str(export.key_file)]
    result = CliRunner().invoke(
        evidence_app, [*args, "--out", str(out)], env={PASSPHRASE_ENV: PASSPHRASE, **env}
    )
    report = out / "report.json"
    rows = json.loads(report.read_text())["results"] if report.exists() else []
    return result, {r["segment_id"]: r for r in rows}


def packets_of(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        assert c.format.name.startswith("mov,mp4")
        assert c.streams.video[0].codec_context.name == "h264"
        return [bytes(p) for p in c.demux(video=0) if p.size]


def test_decrypt_writes_playable_bit_identical_mp4(export: Export, tmp_path: Path) -> None:
    files = [export.segments[s] for s in ("seg-0", "seg-1", "seg-2", "seg-cut")]
    result, rows = run(export, files, tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "all supplied segments verified" in result.output
    assert [rows[s]["status"] for s in ("seg-0", "seg-1", "seg-2")] == ["ok"] * 3
    assert rows["seg-cut"]["status"] == "truncated"
    assert rows["seg-retired"]["status"] == "deleted"
    for sid in ("seg-0", "seg-1", "seg-2"):
        assert packets_of(tmp_path / "out" / f"{sid}.mp4") == export.packets[sid]
        with av.open(str(tmp_path / "out" / f"{sid}.mp4")) as c:
            frames = sum(1 for _ in c.decode(video=0))
        assert frames == len(export.packets[sid])  # every frame decodes
    kept = packets_of(tmp_path / "out" / "seg-cut.mp4")
    assert 0 < len(kept) < len(export.packets["seg-cut"])
    assert kept == export.packets["seg-cut"][: len(kept)]  # what survived the cut is intact


def test_tampering_is_found_and_named(export: Export, tmp_path: Path) -> None:
    work = tmp_path / "in"
    work.mkdir()
    for sid in ("seg-0", "seg-1", "seg-2"):
        shutil.copy(export.segments[sid], work)
    # seg-0: one byte flipped inside a chunk
    flipped = bytearray((work / "seg-0.seg").read_bytes())
    flipped[len(flipped) // 2] ^= 0x01
    (work / "seg-0.seg").write_bytes(bytes(flipped))
    # seg-1: replaced by another, perfectly valid recording under the same id
    record(work, "seg-1", source_packets()[2][:30], export.key)
    # seg-2 withheld (missing); an extra segment nobody listed
    (work / "seg-2.seg").unlink()
    extra, _ = record(work, "seg-extra", source_packets()[0][:20], export.key)
    files = [work / "seg-0.seg", work / "seg-1.seg", extra]
    result, rows = run(export, files, tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert "TAMPERING FOUND" in result.output
    assert rows["seg-0"]["status"] == "tampered"
    assert rows["seg-0"]["chunk"] is not None
    assert f"chunk {rows['seg-0']['chunk']}" in rows["seg-0"]["detail"]
    assert "segment seg-0" in rows["seg-0"]["detail"]
    assert rows["seg-1"]["status"] == "replaced"
    assert rows["seg-2"]["status"] == "missing"
    assert rows["seg-extra"]["status"] == "not in manifest"
    assert not (tmp_path / "out" / "seg-0.mp4").exists()


def test_swapped_file_names_are_named(export: Export, tmp_path: Path) -> None:
    work = tmp_path / "in"
    work.mkdir()
    shutil.copy(export.segments["seg-0"], work / "seg-1.seg")
    shutil.copy(export.segments["seg-1"], work / "seg-0.seg")
    shutil.copy(export.segments["seg-2"], work / "seg-2.seg")
    files = [work / f"seg-{i}.seg" for i in range(3)]
    result, rows = run(export, files, tmp_path / "out")
    assert result.exit_code == 1
    assert rows["seg-0"]["status"] == rows["seg-1"]["status"] == "renamed"
    assert rows["seg-0"]["detail"] == "file seg-1.seg holds segment seg-0 (listed as seg-0.seg)"
    assert rows["seg-2"]["status"] == "ok"


def test_reordered_or_forged_manifest_is_refused(export: Export, tmp_path: Path) -> None:
    doc = json.loads(export.manifest.read_text())
    doc["entries"][0], doc["entries"][1] = doc["entries"][1], doc["entries"][0]
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(doc))
    result, _rows = run(export, [export.segments["seg-0"]], tmp_path / "out", manifest=forged)
    assert result.exit_code == 1
    problems = json.loads((tmp_path / "out" / "report.json").read_text())["results"]
    assert any(
        p["status"] == "manifest" and "entries removed, inserted or reordered" in p["detail"]
        for p in problems
    )


def test_wrong_passphrase_and_bad_key_exit_2(export: Export, tmp_path: Path) -> None:
    result, _ = run(export, [export.segments["seg-0"]], tmp_path / "a", **{PASSPHRASE_ENV: "no"})
    assert result.exit_code == 2 and "wrong passphrase" in result.output
    bad = tmp_path / "bad.pub"
    bad.write_bytes(os.urandom(64))
    args = ["decrypt", str(export.segments["seg-0"]), "--manifest", str(export.manifest)]
    args += ["--unit-key", str(bad), "--key", str(export.key_file), "--out", str(tmp_path / "b")]
    result = CliRunner().invoke(evidence_app, args, env={PASSPHRASE_ENV: PASSPHRASE})
    assert result.exit_code == 2 and "not a PEM public key" in result.output


def test_passphrase_is_prompted_when_not_in_the_environment(
    export: Export, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    args = ["decrypt", str(export.segments["seg-2"]), "--manifest", str(export.manifest)]
    args += ["--unit-key", str(export.unit_pub), "--key", str(export.key_file)]
    args += ["--out", str(tmp_path / "out")]
    result = CliRunner().invoke(evidence_app, args, input=PASSPHRASE + "\n")
    assert "Evidence key passphrase" in result.output
    assert result.exit_code == 1  # seg-0 and seg-1 were listed and not supplied
    assert (tmp_path / "out" / "seg-2.mp4").exists()
