"""`cctv-controller evidence import`, run as the real command: a folder collected from a
unit's export folder goes through the same checks as an upload."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from controller.evidence.store_layout import case_unit_dir
from controller.store import Database
from protocol.evidence_upload import MANIFEST_NAME
from provisioning import Fleet
from provisioning.files import toml_document
from tests.controller.evidence_uploads import UNIT, Setup, make_setup

REPO = Path(__file__).resolve().parents[2]


def _stage_export(setup: Setup, out: Path) -> list[str]:
    """What the unit's `request_export` command stages: every live segment of a range
    (here the whole recording, wider than the case) and the signed manifest of them."""
    out.mkdir(parents=True)
    index = setup.footage.index
    entries = index.entries(include_deleted=False)
    for entry in entries:
        shutil.copy2(setup.footage.segments_dir / entry.file_name, out / entry.file_name)
    (out / MANIFEST_NAME).write_bytes(index.export_manifest([e.segment_id for e in entries]))
    return [e.file_name for e in entries]


def _import(setup: Setup, folder: Path, tmp_path: Path, unit: str = UNIT) -> tuple[int, str]:
    config = tmp_path / "controller.toml"
    config.write_bytes(
        toml_document(
            {
                "database_url": setup.db.url,
                "evidence": {"store_dir": str(setup.store_dir)},
            }
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "controller.cli", "evidence", "import", str(folder),
         "--case", setup.case_number, "--unit", unit, "--config", str(config),
         "--actor", "eddie"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr


async def test_an_export_folder_imports_with_the_upload_checks(
    db: Database, fleet: Fleet, tmp_path: Path
) -> None:
    async with make_setup(db, fleet, tmp_path / "i01") as setup:
        staged = _stage_export(setup, tmp_path / "export")
        code, out = _import(setup, tmp_path / "export", tmp_path)
        assert code == 0, out
        assert "every file imported verified" in out
        # Segments 0 and 5 were staged for the export's range, not asked for by the case.
        assert f"left out: {staged[0]}, {staged[5]}" in out
        files = await setup.files()  # the upload asked of the unit was stood down
        assert files == {}
        folder = case_unit_dir(setup.store_dir, setup.case_number, UNIT)
        for name in staged[1:5]:
            assert (folder / name).read_bytes() == (tmp_path / "export" / name).read_bytes()
        assert not (folder / staged[0]).exists()
        assert await setup.case_status() == "retrieved"
        # A second import for the same unit and case is refused: one retrieval each.
        code, out = _import(setup, tmp_path / "export", tmp_path)
        assert code == 2 and "already has a retrieval" in out, out


async def test_a_tampered_export_is_refused_naming_the_file(
    db: Database, fleet: Fleet, tmp_path: Path
) -> None:
    async with make_setup(db, fleet, tmp_path / "i02") as setup:
        staged = _stage_export(setup, tmp_path / "export")
        victim = tmp_path / "export" / staged[3]
        data = bytearray(victim.read_bytes())
        data[len(data) // 2] ^= 0x01  # one flipped bit in the ciphertext
        victim.write_bytes(bytes(data))
        code, out = _import(setup, tmp_path / "export", tmp_path)
        assert code == 1, out
        assert f"REFUSED: {staged[3]}" in out
        assert await setup.case_status() == "retrieving"
        code, out = _import(setup, tmp_path / "export", tmp_path, unit="cam-02")
        assert code == 2 and "asks for no footage from unit cam-02" in out, out
