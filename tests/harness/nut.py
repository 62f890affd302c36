"""A real NUT `upsd` with the `dummy-ups` driver, run entirely inside a temporary folder.

    with NutServer(tmp_path) as nut:            # or nut.start() ... nut.stop()
        nut.set_state({"ups.status": "OB DISCHRG", "battery.charge": 80})
        nut.set_state(ups_status="OL", ups_test_result="Done and passed")  # _ -> .
        nut.stop_upsd(); nut.start_upsd()       # same port, driver kept running

The driver runs in `dummy-once` mode: it re-reads its `.dev` file when the file's mtime
changes, so `set_state` rewrites the whole file (earlier values are kept unless
overwritten; a variable cannot be removed) and bumps the mtime, then waits, polling with
`upsc`, until upsd reports every new value. Own `ups.conf`, `upsd.conf` (LISTEN on a free
127.0.0.1 port), `upsd.users`, `nut.conf`; `NUT_CONFPATH`/`NUT_STATEPATH` point into the
folder; no system service is touched. Logs stay in the folder and are quoted in failures.

Binaries missing: the test is skipped, or fails when the environment variable CI is set.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType

from tests.harness.binaries import missing

__all__ = ["DEFAULT_STATE", "NutBinaries", "NutHarnessError", "NutServer", "nut_binaries"]

#: A healthy UPS on mains; `set_state` changes it from here.
DEFAULT_STATE: dict[str, str] = {
    "ups.status": "OL CHRG",
    "ups.model": "Dummy UPS 1500",
    "ups.mfr": "Dummy",
    "ups.load": "23",
    "ups.test.result": "No test initiated",
    "battery.charge": "100",
    "battery.runtime": "3600",
    "input.voltage": "230.0",
}

_BIN_DIRS = (
    "/lib/nut",
    "/usr/lib/nut",
    "/usr/libexec/nut",
    "/usr/local/ups/bin",
    "/usr/local/ups/sbin",
    "/usr/sbin",
    "/sbin",
    "/usr/bin",
)
_START_TIMEOUT_S = 10.0
_STATE_TIMEOUT_S = 10.0


class NutHarnessError(RuntimeError):
    """The NUT test server did not do what was asked; the message quotes its logs."""


class NutBinaries:
    def __init__(self, upsd: Path, driver: Path, upsc: Path) -> None:
        self.upsd = upsd
        self.driver = driver
        self.upsc = upsc


def _is_elf(path: Path) -> bool:
    # Debian's /sbin/upsd is a shell wrapper that refuses to run unless /etc/nut/nut.conf
    # enables it: the harness needs the real daemon.
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _find(name: str) -> Path | None:
    dirs = [os.environ["NUT_BINDIR"]] if os.environ.get("NUT_BINDIR") else []
    for directory in [*dirs, *_BIN_DIRS]:
        candidate = Path(directory) / name
        if os.access(candidate, os.X_OK) and _is_elf(candidate):
            return candidate
    found = shutil.which(name)
    return Path(found) if found and _is_elf(Path(found)) else None


def nut_binaries() -> NutBinaries:
    """The NUT binaries; skips the test when missing (fails instead when CI is set)."""
    found = {name: _find(name) for name in ("upsd", "dummy-ups", "upsc")}
    absent = sorted(name for name, path in found.items() if path is None)
    if absent:
        missing(f"NUT binaries not found: {', '.join(absent)} (install nut-server, nut-client)")
    upsd, driver, upsc = found["upsd"], found["dummy-ups"], found["upsc"]
    assert upsd is not None and driver is not None and upsc is not None
    return NutBinaries(upsd, driver, upsc)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _format(value: object) -> str:
    text = str(value)
    if "\n" in text:
        raise ValueError(f"a NUT value cannot span lines: {text!r}")
    return text


class NutServer:
    """upsd + dummy-ups in `tmpdir`. Attributes for clients: host, port, ups_name,
    username, password."""

    def __init__(
        self,
        tmpdir: Path,
        *,
        ups_name: str = "ups",
        username: str = "monitor",
        initial: Mapping[str, object] | None = None,
    ) -> None:
        self.binaries = nut_binaries()
        self.dir = Path(tmpdir) / "nut"
        self.state_dir = self.dir / "state"
        self.dev_file = self.dir / f"{ups_name}.dev"
        self.host = "127.0.0.1"
        self.port = 0
        self.ups_name = ups_name
        self.username = username
        self.password = secrets.token_hex(12)
        self._state = dict(DEFAULT_STATE)
        self._state.update({k: _format(v) for k, v in (initial or {}).items()})
        self._mtime = 0
        self._driver: subprocess.Popen[bytes] | None = None
        self._upsd: subprocess.Popen[bytes] | None = None
        self._user = pwd.getpwuid(os.getuid()).pw_name

    # -- lifecycle ----------------------------------------------------------------------

    def __enter__(self) -> NutServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def agent_power(self, poll_s: float = 0.5) -> dict[str, object]:
        """The `[power]` section of an agent.toml that watches this UPS."""
        return {
            "source": "nut",
            "nut_host": self.host,
            "nut_port": self.port,
            "nut_ups": self.ups_name,
            "nut_username": self.username,
            "nut_password": self.password,
            "poll_s": poll_s,
        }

    @property
    def target(self) -> str:
        """`ups@host:port`, as upsc and upsmon name it."""
        return f"{self.ups_name}@{self.host}:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "NUT_CONFPATH": str(self.dir),
            "NUT_STATEPATH": str(self.state_dir),
            "NUT_ALTPIDPATH": str(self.state_dir),
        }

    def start(self) -> None:
        """Write the config, start the driver, then upsd on a free port (retried if taken)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        self._write_dev()
        self._write_file("nut.conf", "MODE=standalone\n")
        self._write_file(
            "ups.conf",
            f"[{self.ups_name}]\n"
            "  driver = dummy-ups\n"
            f"  port = {self.dev_file}\n"
            "  mode = dummy-once\n"
            "  pollinterval = 1\n"
            '  desc = "test UPS"\n',
        )
        self._write_file(
            "upsd.users",
            f"[{self.username}]\n  password = {self.password}\n  upsmon primary\n",
        )
        self._start_driver()
        last_error: NutHarnessError | None = None
        for _ in range(3):
            self.port = _free_port()
            self._write_file("upsd.conf", f"LISTEN {self.host} {self.port}\nMAXAGE 15\n")
            try:
                self.start_upsd()
                return
            except NutHarnessError as exc:  # the port was taken in between: try another
                last_error = exc
                self.stop_upsd()
        self.stop()
        assert last_error is not None
        raise last_error

    def _start_driver(self) -> None:
        socket_path = self.state_dir / f"dummy-ups-{self.ups_name}"
        self._driver = self._spawn(
            [str(self.binaries.driver), "-a", self.ups_name, "-u", self._user, "-F"], "driver"
        )
        self._wait(lambda: socket_path.exists(), self._driver, "driver socket")

    def start_upsd(self) -> None:
        """Start upsd (again) on the same port and wait until it serves the UPS."""
        if self._upsd is not None and self._upsd.poll() is None:
            return
        self._upsd = self._spawn([str(self.binaries.upsd), "-u", self._user, "-F"], "upsd")
        # Until the driver has sent its data, upsd answers ups.status "WAIT".
        self._wait(lambda: self._upsc("ups.status") not in (None, "WAIT"), self._upsd, "upsd")

    def stop_upsd(self) -> None:
        """Stop upsd; the driver keeps running, clients see the connection refused."""
        self._terminate(self._upsd)
        self._upsd = None

    def stop(self) -> None:
        self.stop_upsd()
        self._terminate(self._driver)
        self._driver = None

    # -- state --------------------------------------------------------------------------

    def set_state(self, variables: Mapping[str, object] | None = None, /, **kw: object) -> None:
        """Set NUT variables (a dict of dotted names, or keywords with `_` for `.`) and wait
        until upsd reports every new value."""
        changes = {k: _format(v) for k, v in (variables or {}).items()}
        changes.update({k.replace("_", "."): _format(v) for k, v in kw.items()})
        self._state.update(changes)
        self._write_dev()
        deadline = time.monotonic() + _STATE_TIMEOUT_S
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            seen = self.read_all()
            if all(seen.get(k) == v for k, v in changes.items()):
                return
            time.sleep(0.1)
        wrong = {k: seen.get(k) for k, v in changes.items() if seen.get(k) != v}
        raise NutHarnessError(f"upsd did not report {changes} within {_STATE_TIMEOUT_S} s: {wrong}")

    def read_all(self) -> dict[str, str]:
        """Every variable upsd reports now (empty if it does not answer)."""
        result = self._run_upsc(self.target)
        if result is None:
            return {}
        pairs = (line.split(": ", 1) for line in result.splitlines() if ": " in line)
        return {k: v for k, v in pairs}

    def _write_dev(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        text = "".join(f"{k}: {v}\n" for k, v in self._state.items())
        tmp = self.dev_file.with_suffix(".tmp")
        tmp.write_text(text, encoding="ascii")
        # dummy-once compares whole-second mtimes: make each rewrite visibly newer.
        self._mtime = max(int(time.time()), self._mtime + 1)
        os.utime(tmp, (self._mtime, self._mtime))
        tmp.replace(self.dev_file)

    # -- plumbing -----------------------------------------------------------------------

    def _write_file(self, name: str, text: str) -> None:
        path = self.dir / name
        path.write_text(text, encoding="ascii")
        path.chmod(0o600)

    def _spawn(self, argv: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (self.dir / f"{name}.log").open("ab")
        try:
            return subprocess.Popen(
                argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        finally:
            log.close()

    def _upsc(self, variable: str) -> str | None:
        out = self._run_upsc(self.target, variable)
        return None if out is None else out.strip()

    def _run_upsc(self, *args: str) -> str | None:
        try:
            result = subprocess.run(
                [str(self.binaries.upsc), *args],
                env=self.env,
                capture_output=True,
                timeout=5,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None
        return result.stdout.decode() if result.returncode == 0 else None

    def _wait(self, ready: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NutHarnessError(f"{what} exited with {proc.returncode}\n{self.logs()}")
            if ready():
                return
            time.sleep(0.05)
        raise NutHarnessError(f"{what} not ready within {_START_TIMEOUT_S} s\n{self.logs()}")

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes] | None) -> None:
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def logs(self) -> str:
        """The tail of the driver and upsd logs, for failure messages."""
        parts = []
        for name in ("driver", "upsd"):
            with contextlib.suppress(OSError):
                text = (self.dir / f"{name}.log").read_text(errors="replace")
                parts.append(f"--- {name}.log ---\n" + "\n".join(text.splitlines()[-30:]))
        return "\n".join(parts)
