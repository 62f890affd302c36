"""`cctv-controller serve` as a separate process, for tests that stop, kill and restart it.

    config = write_controller_config(tmp_path / "controller.toml", broker, db_url)
    ctl = ControllerProcess(config, tmp_path / "ctl")
    ctl.start()
    await ctl.wait_for_log("broker connected")     # after the start just made
    ctl.kill()                                     # SIGKILL: a crash, nothing flushed
    ctl.stop()                                     # SIGTERM: a clean stop (exit 0)

The config is the default one plus what a test must say (where the broker, the database
and the fleet are): no client id, so the controller connects as its certificate's CN.
Output goes to `log_file`, kept across restarts and quoted when a wait fails.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from provisioning.files import toml_document
from tests.harness.broker import MosquittoBroker, free_port

__all__ = ["ControllerProcess", "write_controller_config"]

STOP_TIMEOUT = 20.0


def write_controller_config(
    path: Path,
    broker: MosquittoBroker,
    database_url: str,
    *,
    http_port: int | None = None,
    **sections: dict[str, Any],
) -> Path:
    """A controller.toml for `broker` and `database_url`; `sections` add tables (e.g.
    `ingest={"batch_max": 200}`)."""
    doc: dict[str, Any] = {
        "database_url": database_url,
        "fleet_dir": str(broker.fleet.root),
        "sweep_interval_s": 1,
        "broker": {
            "host": broker.host,
            "port": broker.port,
            "topic_root": broker.fleet.topics.root,
        },
        "http": {"host": "127.0.0.1", "port": http_port or free_port()},
    }
    for name, table in sections.items():
        doc[name] = {**doc.get(name, {}), **table}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(toml_document(doc))
    return path


class ControllerProcess:
    def __init__(self, config: Path, workdir: Path) -> None:
        self.config = config
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_file = self.workdir / "controller.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_from = 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        if self.running:
            raise RuntimeError("controller already running")
        with self.log_file.open("ab") as log:
            self._log_from = log.tell()
            env = {**os.environ, "PYTHONUNBUFFERED": "1"}
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "controller.cli", "serve", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
                env=env,
                start_new_session=True,
            )

    def log_text(self, *, since_start: bool = True) -> str:
        try:
            data = self.log_file.read_bytes()
        except FileNotFoundError:
            return ""
        return data[self._log_from if since_start else 0 :].decode(errors="replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text(since_start=False).splitlines()[-lines:])

    async def wait_for_log(self, text: str, *, within: float = 30.0) -> None:
        """Until `text` appears in the output of the current run."""
        deadline = time.monotonic() + within
        while text not in self.log_text():
            if not self.running:
                raise AssertionError(f"controller exited waiting for {text!r}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {text!r} within {within} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the process dies at once, whatever it was doing."""
        self._signal(signal.SIGKILL)

    def stop(self) -> int:
        """SIGTERM: a clean stop. Returns the exit code."""
        return self._signal(signal.SIGTERM)

    def _signal(self, sig: signal.Signals) -> int:
        proc, self._proc = self._proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_TIMEOUT)
            raise AssertionError(
                f"controller ignored {sig.name} for {STOP_TIMEOUT} s:\n{self.log_tail()}"
            ) from None
