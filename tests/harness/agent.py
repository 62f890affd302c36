"""Runs the real edge agent (`python -m edge_agent.cli run`) as a subprocess against a test
broker, from a copy of a unit's enrollment bundle."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from protocol.messages import AuthorizationBody, GeoFence, RevocationBody
from protocol.signing import Signer
from provisioning import Fleet
from provisioning.files import toml_document
from tests.harness.footage import SAMPLE_CLIP

__all__ = ["CLIP", "AgentProcess", "authorization", "revocation", "write_toml"]

CLIP = SAMPLE_CLIP


def write_toml(path: Path, doc: dict[str, Any]) -> None:
    path.write_bytes(toml_document(doc))


class AgentProcess:
    """One unit's agent. `overrides` are merged into agent.toml: a dict by section, any
    other value as a top-level key."""

    def __init__(
        self,
        fleet: Fleet,
        unit_id: str,
        endpoint: Any,
        workdir: Path,
        *,
        camera: str | None = None,
        **overrides: Any,
    ) -> None:
        self.unit_id = unit_id
        self.dir = workdir / unit_id
        if not self.dir.exists():
            shutil.copytree(fleet.root / "units" / unit_id / "bundle", self.dir)
        doc = tomllib.loads((self.dir / "agent.toml").read_text())
        doc["broker"]["port"] = endpoint.port
        doc["broker"]["host"] = endpoint.host
        doc.setdefault("camera", {})["url"] = camera or str(CLIP)
        doc.setdefault("link", {}).setdefault("heartbeat_interval_s", 1.0)
        doc.setdefault("storage", {}).setdefault("segment_seconds", 5)
        doc["storage"].setdefault("min_free_mb", 16)
        doc.setdefault("selftest", {}).setdefault("at_boot", False)
        for key, values in overrides.items():
            if isinstance(values, dict):
                doc.setdefault(key, {}).update(values)
            else:  # a top-level key
                doc[key] = values
        self.config = self.dir / "agent.toml"
        write_toml(self.config, doc)
        self.data_dir = self.dir / doc["storage"].get("data_dir", "data")
        self.log_path = self.dir / "agent.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "edge_agent.cli", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=Path(__file__).resolve().parents[2],
            )

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def segments(self, pattern: str = "*.seg") -> list[Path]:
        return sorted((self.data_dir / "segments").glob(pattern))

    def wait_for(self, predicate: Any, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return
            time.sleep(0.1)
        raise AssertionError(
            f"timed out waiting for {what}\n--- agent log ---\n{self.log()[-4000:]}"
        )


def authorization(
    fleet: Fleet,
    unit_id: str,
    *,
    ident: str = "auth-1",
    seq: int = 1,
    valid_for: timedelta = timedelta(days=30),
    masks: Any = (),
    geofence: GeoFence | None = None,
    issued_at: datetime | None = None,
    signer_key: Any = None,
) -> Any:
    now = issued_at or datetime.now(UTC)
    body = AuthorizationBody(
        authorization_id=ident,
        unit_id=unit_id,
        deployment_id=f"dep-{ident}",
        location_name="High Street",
        valid_from=now - timedelta(minutes=1),
        valid_until=now + valid_for,
        issued_at=now,
        masks=[list(m) for m in masks],
        geofence=geofence,
    )
    return Signer(signer_key or fleet.controller_signing_key()).authorization(
        body, seq=seq, boot_id="test-controller"
    )


def revocation(fleet: Fleet, unit_id: str, *, ident: str = "auth-1", seq: int = 2) -> Any:
    body = RevocationBody(
        revocation_id=f"rev-{ident}",
        unit_id=unit_id,
        authorization_id=ident,
        deployment_id=f"dep-{ident}",
        issued_at=datetime.now(UTC),
        reason="test revocation",
    )
    return Signer(fleet.controller_signing_key()).revocation(body, seq=seq, boot_id="test-ctl")
