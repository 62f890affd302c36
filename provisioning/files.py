"""The one place provisioning writes to disk.

Every file is written to a temporary name in its target folder and renamed over the
target, so a crash never leaves half a key. Private keys are created with mode 0600 by
`os.open` itself (never chmod after the fact, which would leave a window where the key is
world-readable).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from provisioning.errors import AlreadyExists, ProvisioningError

__all__ = [
    "PRIVATE_MODE",
    "PUBLIC_MODE",
    "fleet_lock",
    "refuse_existing",
    "toml_document",
    "write_bytes",
]

PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644

TomlScalar = str | int | bool
TomlTable = Mapping[str, "TomlScalar | list[str] | TomlTable"]


def refuse_existing(paths: list[Path], *, force: bool, what: str = "file") -> None:
    """Raise AlreadyExists for the first existing path unless `force`.

    Called before an operation writes anything, so a refusal leaves no partial state."""
    if force:
        return
    for path in paths:
        if path.exists():
            raise AlreadyExists(path, what)


def write_bytes(path: Path, data: bytes, *, private: bool = False, force: bool = False) -> Path:
    """Atomically write `data` to `path`; 0600 when `private`, else 0644."""
    if path.exists() and not force:
        raise AlreadyExists(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = PRIVATE_MODE if private else PUBLIC_MODE
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ProvisioningError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return path


@contextlib.contextmanager
def fleet_lock(root: Path) -> Iterator[None]:
    """Serialise changes to one fleet directory between processes."""
    lock_path = root / ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, PRIVATE_MODE)
    except OSError as exc:
        raise ProvisioningError(f"cannot lock {root}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | os.PathLike):
        # A JSON string with ensure_ascii is a valid TOML basic string.
        return json.dumps(os.fspath(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_document(doc: Mapping[str, Any], header: str = "") -> bytes:
    """Render a two-level TOML document: top-level keys, then one table per mapping."""
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    tables: list[tuple[str, Mapping[str, Any]]] = []
    for key, value in doc.items():
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{key} = {_toml_value(value)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        for key, value in table.items():
            if isinstance(value, Mapping):
                raise TypeError("toml_document renders two levels only")
            lines.append(f"{key} = {_toml_value(value)}")
    return ("\n".join(lines) + "\n").encode()
