"""A real Mosquitto broker for integration tests, configured by `provisioning` itself.

    broker = MosquittoBroker(fleet, workdir)
    broker.start()            # free loopback port, TLS + ACL + CRL, waits until it accepts TLS
    broker.stop()             # SIGTERM: clean shutdown, persistence saved (an outage)
    broker.start()            # again on the SAME port
    broker.kill()             # SIGKILL: a crash, nothing saved
    broker.reload()           # SIGHUP: re-reads the config, ACL and CRL
    broker.reconfigure()      # rewrite the config from the fleet (after revoke / add-unit)

Mosquitto's output goes to `log_file` (kept across restarts) and is quoted when it fails;
`connections()` and `takeovers()` read what it logged about client connections.
"""

from __future__ import annotations

import asyncio
import getpass
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path
from types import TracebackType

from provisioning import Fleet, write_broker_config
from tests.harness.tls import tls_context

__all__ = ["BrokerError", "MosquittoBroker", "free_port"]

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
_POLL = 0.02
# "New client connected from 127.0.0.1:58877 as cam-02 (p2, c1, k60, u'cam-02')."
_CONNECTED = re.compile(r"New client connected from \S+ as (\S+) \(.*?u'([^']*)'\)")
# "Client cam-02 already connected, closing old connection."
_TAKEN_OVER = re.compile(r"Client (\S+) already connected, closing old connection")


class BrokerError(RuntimeError):
    """The broker did not start or stop; the message quotes the end of its log."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class MosquittoBroker:
    def __init__(
        self,
        fleet: Fleet,
        workdir: Path,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        persistence: bool = True,
        binary: str = "mosquitto",
    ) -> None:
        self.fleet = fleet
        self.workdir = Path(workdir)
        self.host = host
        self.port = port or free_port(host)
        self.persistence = persistence
        self.log_file = self.workdir / "mosquitto.log"
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self.config_file = self.reconfigure()

    # -- configuration --------------------------------------------------------------------

    def reconfigure(self) -> Path:
        """(Re)write the broker's config, ACL and CRL from the fleet's current state."""
        files = write_broker_config(
            self.fleet,
            self.workdir / "config",
            port=self.port,
            bind_host=self.host,
            persistence_dir=self.workdir / "persistence" if self.persistence else None,
            run_as=getpass.getuser(),
            force=True,
        )
        self.config_file = files.config
        return files.config

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc else None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start mosquitto and return once it completes a TLS handshake."""
        if self.running:
            raise BrokerError("broker already running")
        binary = shutil.which(self._binary)
        if binary is None:
            raise BrokerError(f"{self._binary!r} not found on PATH")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("ab") as log:
            log.write(f"--- starting mosquitto on {self.host}:{self.port}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                [binary, "-c", str(self.config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        identity = self.fleet.controller_identity()
        context = tls_context(identity)
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise BrokerError(f"mosquitto exited with code {code} at start:\n{self.log_tail()}")
            try:
                with (
                    socket.create_connection((self.host, self.port), timeout=1.0) as raw,
                    context.wrap_socket(raw, server_hostname=self.host),
                ):
                    return
            except (OSError, ssl.SSLError) as exc:
                last_error = exc
                time.sleep(_POLL)
        self.kill()
        raise BrokerError(
            f"mosquitto did not accept TLS on {self.host}:{self.port} within {timeout:.0f} s "
            f"({last_error}):\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Clean shutdown (SIGTERM): mosquitto writes its persistence file and exits."""
        self._signal_and_wait(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """Crash (SIGKILL): nothing is saved."""
        self._signal_and_wait(signal.SIGKILL, STOP_TIMEOUT)

    def _signal_and_wait(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.wait(timeout)
            raise BrokerError(
                f"mosquitto ignored {sig.name} for {timeout} s:\n{self.log_tail()}"
            ) from exc

    def restart(self, *, reconfigure: bool = False) -> None:
        self.stop()
        if reconfigure:
            self.reconfigure()
        self.start()

    def reload(self) -> None:
        """SIGHUP: mosquitto re-reads its config, ACL, certificates and CRL."""
        if not self.running or self._proc is None:
            raise BrokerError("broker is not running")
        os.kill(self._proc.pid, signal.SIGHUP)

    async def start_async(self) -> None:
        """`start()` in a worker thread, so the test's event loop keeps running."""
        await asyncio.to_thread(self.start)

    async def stop_async(self) -> None:
        await asyncio.to_thread(self.stop)

    async def restart_async(self, *, reconfigure: bool = False) -> None:
        await asyncio.to_thread(self.restart, reconfigure=reconfigure)

    # -- diagnostics ----------------------------------------------------------------------

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def connections(self) -> list[tuple[str, str]]:
        """(client id, username) of every connection the broker accepted, in order."""
        return [(m[1], m[2]) for m in _CONNECTED.finditer(self.log_text())]

    def takeovers(self) -> list[str]:
        """Client ids whose connection a newer connection with the same id closed."""
        return _TAKEN_OVER.findall(self.log_text())

    def __enter__(self) -> MosquittoBroker:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<MosquittoBroker {self.host}:{self.port} {state}>"
