"""Where the evidence store (`[evidence] store_dir`) keeps things.

    <store_dir>/cases/<case number, / as _>/<unit_id>/     retrieved ciphertext, verified:
        <segment file>...  manifest.json                    the unit's own file names and
                                                            its signed index manifest
        .incoming/<name>                                    files still arriving
        refused/<name>                                      files the checks refused
    <store_dir>/exhibits/<exhibit number, / as _>/          exhibits

The controller never keeps decrypted footage outside an exhibit it was asked to make.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "INCOMING",
    "REFUSED",
    "case_unit_dir",
    "exhibit_dir",
    "fsync_dir",
    "safe_name",
]

INCOMING = ".incoming"
REFUSED = "refused"


def safe_name(number: str) -> str:
    """A case or exhibit number as one folder name ("C-2026-0007/EX1" -> "C-2026-0007_EX1")."""
    name = number.replace("/", "_")
    if not name or name in (".", "..") or "\0" in name:
        raise ValueError(f"not a usable case or exhibit number: {number!r}")
    return name


def case_unit_dir(store_dir: Path, case_number: str, unit_id: str) -> Path:
    return Path(store_dir) / "cases" / safe_name(case_number) / unit_id


def exhibit_dir(store_dir: Path, exhibit_number: str) -> Path:
    return Path(store_dir) / "exhibits" / safe_name(exhibit_number)


def fsync_dir(path: Path) -> None:
    """Make a file created, renamed or removed in `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
