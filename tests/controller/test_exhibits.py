"""Exhibits made from footage the real recorder wrote from the sample clip: the pictures
are the camera's own, `python3 -I verify.py` in an empty folder says every file verifies,
and one changed byte anywhere makes it name that file and fail."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from controller.evidence.exhibits import (
    CaseSummary,
    Exhibit,
    ExhibitError,
    ReleaseRecord,
    UnitEvidence,
    make_exhibit,
    zip_exhibit,
)
from protocol.evidence_keys import EvidencePrivateKey, generate_evidence_key
from protocol.segment.manifest import Checkpoint
from tests.harness.footage import SAMPLE_CLIP
from tests.harness.recorded_footage import RecordedFootage, record_footage

UNIT = "unit-7"
FIRST, LAST = 2, 4  # the case asks for segments 2 to 4 of the recording


@dataclass
class Made:
    footage: RecordedFootage
    evidence_key: EvidencePrivateKey
    signing_key: Ed25519PrivateKey
    exhibit: Exhibit
    make: Callable[..., Exhibit]


def release_record(number: str) -> ReleaseRecord:
    return ReleaseRecord(
        exhibit_number=number,
        released_at=datetime.now(UTC),
        released_by="dana.controller",
        recipient_name="PC 1234 Ali Khan",
        recipient_org="Example Constabulary",
        reason="Assault on the concourse, identification of the suspect",
        lawful_basis="Data Protection Act 2018, Schedule 2 paragraph 2 (crime)",
        reference="URN 01XY2345678",
        method="secure download",
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    root = tmp_path_factory.mktemp("exhibit")
    evidence_key = generate_evidence_key()
    footage = record_footage(root / "retrieved", unit_id=UNIT, evidence_key=evidence_key)
    assert len(footage.entries) > LAST + 1
    signing_key = Ed25519PrivateKey.generate()

    def make(
        out: Path,
        *,
        folder: Path | None = None,
        reported: tuple[Checkpoint, ...] | None = None,
        key: EvidencePrivateKey | None = None,
    ) -> Exhibit:
        unit = UnitEvidence(
            unit_id=UNIT,
            folder=folder or footage.folder,
            signing_key=footage.signing_key.public_key(),
            ranges=(footage.range_over(FIRST, LAST),),
            reported=tuple(footage.reported) if reported is None else reported,
        )
        return make_exhibit(
            out_dir=out,
            case=CaseSummary(number="C-0001", case_type="police_request", external_ref="URN"),
            release=release_record("C-0001/EX1"),
            units=[unit],
            evidence_key=key or evidence_key,
            signing_key=signing_key,
            made_at=datetime.now(UTC),
        )

    exhibit = make(root / "exhibits" / "C-0001_EX1")
    return Made(footage, evidence_key, signing_key, exhibit, make)


def packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(video=0) if p.size]


def frame_digests(path: Path) -> list[str]:
    """SHA-256 of each decoded picture (its full YUV planes), in display order."""
    with av.open(str(path)) as c:
        return [hashlib.sha256(f.to_ndarray().tobytes()).hexdigest() for f in c.decode(video=0)]


def test_exhibit_frames_are_the_original_clips_frames(made: Made) -> None:
    (mp4,) = made.exhibit.footage
    path = made.exhibit.path / mp4
    with av.open(str(path)) as c:
        assert c.format.name.startswith("mov,mp4")
        assert c.streams.video[0].codec_context.name == "h264"
    manifest = json.loads((made.exhibit.path / "manifest.json").read_text())
    wanted = [e.segment_id for e in made.footage.entries[FIRST : LAST + 1]]
    assert [s["segment_id"] for s in manifest["sources"]] == wanted
    assert manifest["footage"][0]["segments"] == wanted
    # Where in the looped clip the range starts: its first picture is a keyframe of the clip.
    clip_packets = packets(SAMPLE_CLIP)
    exhibit_packets = packets(path)
    offset = clip_packets.index(exhibit_packets[0])
    n = len(clip_packets)
    assert exhibit_packets == [clip_packets[(offset + k) % n] for k in range(len(exhibit_packets))]
    original = frame_digests(SAMPLE_CLIP)
    frames = frame_digests(path)
    assert len(frames) == len(exhibit_packets) > 100  # every frame of three segments decodes
    assert len(original) == n
    for k, digest in enumerate(frames):
        assert digest == original[(offset + k) % n], f"frame {k} differs from the clip"


def test_manifest_holds_release_sources_checkpoints(made: Made) -> None:
    root = made.exhibit.path
    manifest = json.loads((root / "manifest.json").read_text())
    release = manifest["release"]
    assert release["recipient_name"] == "PC 1234 Ali Khan"
    assert release["recipient_org"] == "Example Constabulary"
    assert release["method"] == "secure download"
    assert release["exhibit_number"] == "C-0001/EX1"
    assert release["released_at_local"].endswith(("GMT", "BST"))
    sources = {s["segment_id"]: s for s in manifest["sources"]}
    for entry in made.footage.entries[FIRST : LAST + 1]:
        encrypted = (made.footage.folder / entry.file_name).read_bytes()
        assert sources[entry.segment_id]["sha256"] == hashlib.sha256(encrypted).hexdigest()
        assert sources[entry.segment_id]["result"] == "ok"
    listed = {f["name"]: f["sha256"] for f in manifest["files"]}
    on_disk = {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", "manifest.sig", "controller-key.pem")
    }
    assert set(listed) == on_disk
    for name, digest in listed.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest
    (unit,) = manifest["units"]
    assert unit["checkpoint"]["count"] == len(made.footage.entries)
    assert len(unit["reported_checkpoints"]) == 2
    assert all(cp["agrees"] for cp in unit["reported_checkpoints"])
    signature = json.loads((root / "manifest.sig").read_text())
    assert signature["manifest_sha256"] == made.exhibit.manifest_sha256
    assert not (root.parent / f"{root.name}.partial").exists()
    assert not list(root.rglob(".work"))  # no per-segment footage left behind
    readme = (root / "README.txt").read_text()
    assert "python3 verify.py" in readme and "C-0001/EX1" in readme


def run_verify(folder: Path) -> subprocess.CompletedProcess[str]:
    """`python3 -I verify.py` with the interpreter the project's venv was made from: no
    project, no site packages."""
    python = getattr(sys, "_base_executable", None) or sys.executable
    return subprocess.run(
        [python, "-I", "verify.py"], cwd=folder, capture_output=True, text=True, timeout=60
    )


def copy_exhibit(made: Made, dest: Path) -> Path:
    assert not dest.exists()
    shutil.copytree(made.exhibit.path, dest)
    return dest


def test_verify_py_runs_alone_and_everything_verifies(made: Made, tmp_path: Path) -> None:
    python = getattr(sys, "_base_executable", None) or sys.executable
    probe = subprocess.run([python, "-I", "-c", "import controller"], cwd=tmp_path)
    assert probe.returncode != 0, "the project must not be importable where verify.py runs"
    folder = copy_exhibit(made, tmp_path / "empty" / "exhibit")
    result = run_verify(folder)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "EVERYTHING VERIFIES" in result.stdout
    for name in ("manifest.json", "manifest.sig", "verify.py", *made.exhibit.footage):
        assert f"{name}: verifies" in result.stdout
    assert f"unit {UNIT} recording record: verifies" in result.stdout


def exhibit_files(made: Made) -> list[str]:
    root = made.exhibit.path
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_one_flipped_byte_in_any_file_is_named(made: Made, tmp_path: Path) -> None:
    names = exhibit_files(made)
    assert {
        "README.txt",
        "verify.py",
        "manifest.json",
        "manifest.sig",
        "controller-key.pem",
    } <= set(names)
    for i, name in enumerate(names):
        size = (made.exhibit.path / name).stat().st_size
        for where in (0, size // 2, size - 2):
            folder = copy_exhibit(made, tmp_path / f"{i}-{where}")
            data = bytearray((folder / name).read_bytes())
            data[where] ^= 0x01
            (folder / name).write_bytes(bytes(data))
            result = run_verify(folder)
            said = result.stdout + result.stderr
            assert result.returncode != 0, f"{name} byte {where}: {said}"
            if name == "verify.py" and not result.stdout:
                # The altered program does not even run: Python names it and fails.
                assert 'verify.py", line' in result.stderr, said
                continue
            failed = [line for line in result.stdout.splitlines() if "NOT VERIFIED" in line]
            assert failed == [f"NOT VERIFIED: {name}"], f"{name} byte {where}: {said}"
            shutil.rmtree(folder)


def test_missing_file_is_named(made: Made, tmp_path: Path) -> None:
    folder = copy_exhibit(made, tmp_path / "exhibit")
    (folder / made.exhibit.footage[0]).unlink()
    result = run_verify(folder)
    assert result.returncode == 1
    assert f"{made.exhibit.footage[0]}: DOES NOT VERIFY (missing)" in result.stdout


def test_replaced_segment_stops_the_exhibit(made: Made, tmp_path: Path) -> None:
    folder = tmp_path / "retrieved"
    shutil.copytree(made.footage.folder, folder)
    a, b = made.footage.entries[FIRST], made.footage.entries[FIRST + 1]
    shutil.copy(folder / b.file_name, folder / a.file_name)  # another real segment in its place
    out = tmp_path / "exhibit"
    with pytest.raises(ExhibitError) as caught:
        made.make(out, folder=folder)
    assert any(p.startswith(a.segment_id) for p in caught.value.problems), caught.value
    assert not out.exists() and not (tmp_path / "exhibit.partial").exists()


def test_rewritten_index_after_report_stops_the_exhibit(made: Made, tmp_path: Path) -> None:
    reported = made.footage.reported[0]
    forged = Checkpoint.create(
        made.footage.signing_key, unit_id=UNIT, count=reported.count, head="ab" * 32,
        signed_at=reported.signed_at,
    )  # fmt: skip
    with pytest.raises(ExhibitError, match="index was rewritten after it was reported"):
        made.make(tmp_path / "exhibit", reported=(forged,))


def test_wrong_evidence_key_stops_the_exhibit(made: Made, tmp_path: Path) -> None:
    with pytest.raises(ExhibitError, match="does not verify"):
        made.make(tmp_path / "exhibit", key=generate_evidence_key())
    assert not (tmp_path / "exhibit").exists()


def test_existing_folder_is_never_overwritten(made: Made) -> None:
    with pytest.raises(ExhibitError, match="already exists"):
        made.make(made.exhibit.path)


def test_zip_holds_the_exhibit_folder(made: Made, tmp_path: Path) -> None:
    import zipfile

    archive = zip_exhibit(made.exhibit.path, tmp_path / "exhibit.zip")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(tmp_path / "unzipped")
    result = run_verify(tmp_path / "unzipped" / made.exhibit.path.name)
    assert result.returncode == 0, result.stdout


def test_progress_is_reported_step_by_step(made: Made, tmp_path: Path) -> None:
    steps: list[tuple[int, int, str]] = []
    unit = UnitEvidence(
        unit_id=UNIT,
        folder=made.footage.folder,
        signing_key=made.footage.signing_key.public_key(),
        ranges=(made.footage.range_over(FIRST, LAST),),
    )
    make_exhibit(
        out_dir=tmp_path / "exhibit",
        case=CaseSummary(number="C-0002", case_type="subject_access"),
        release=release_record("C-0002/EX1"),
        units=[unit],
        evidence_key=made.evidence_key,
        signing_key=made.signing_key,
        made_at=datetime.now(UTC),
        on_progress=lambda done, total, stage: steps.append((done, total, stage)),
    )
    segments = LAST - FIRST + 1
    assert [done for done, _, _ in steps] == list(range(1, segments + 2))
    assert {total for _, total, _ in steps} == {segments + 1}  # each segment, then the join
    assert steps[0][2].startswith("decrypted ") and steps[-1][2].startswith("joined ")
