"""A private PostgreSQL server for tests that stop and start the database itself.

    server = PostgresServer(tmp_path / "pg")
    server.start()                  # initdb on first start, then pg_ctl start; waits ready
    server.url("cctv")              # postgresql+asyncpg://postgres@127.0.0.1:PORT/cctv
    server.stop()                   # pg_ctl stop -m fast: an outage
    server.start()                  # again on the SAME port, same data
    server.destroy()                # stop and remove the data directory

It runs from /usr/lib/postgresql/*/bin on a free loopback port with its own data directory
and socket directory, trust authentication for `postgres`, and never touches the system
server on 5432. PostgreSQL refuses to run as root: as root it runs as the `postgres`
system user, with its data directory in a fresh directory under the system temp dir
(pytest's tmp_path is private to root, so that user could not reach it).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.harness.binaries import missing
from tests.harness.broker import free_port

__all__ = ["PostgresServer", "postgres_bin"]

START_TIMEOUT = 30.0
_RUN_AS = "postgres"


def postgres_bin() -> Path:
    """The newest installed PostgreSQL's bin directory; skip (locally) / fail (CI) if none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=_version)
    if not found:
        missing("PostgreSQL server binaries not found in /usr/lib/postgresql/*/bin")
    return Path(found[-1]).parent


def _version(path: str) -> tuple[int, ...]:
    part = Path(path).parent.parent.name
    return tuple(int(p) for p in part.split(".") if p.isdigit())


class PostgresServer:
    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.bin = postgres_bin()
        self.port = port or free_port()
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam(_RUN_AS)
            except KeyError:
                missing(f"running as root and there is no {_RUN_AS!r} user to run PostgreSQL")
            self.root = Path(tempfile.mkdtemp(prefix="cctv-test-pg-"))
            os.chown(self.root, self._user.pw_uid, self._user.pw_gid)
        else:
            self.root = Path(workdir)
            self.root.mkdir(parents=True, exist_ok=True)
        self.data = self.root / "data"
        self.log_file = self.root / "postgres.log"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, object] = {}
        if self._user is not None:
            kwargs = {"user": self._user.pw_uid, "group": self._user.pw_gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=check,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 30,
            cwd=self.root,
            **kwargs,  # type: ignore[arg-type]
        )

    def start(self) -> None:
        if not (self.data / "PG_VERSION").exists():
            self._run(
                "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
            "-c fsync=off -c full_page_writes=off -c max_connections=50"
        )
        done = self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.log_file), "-o", options,
            "-w", "-t", str(int(START_TIMEOUT)), "start", check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr}\n{self.log_tail()}")
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            ready = self._run(
                "pg_isready", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                check=False,
            )  # fmt: skip
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"PostgreSQL not ready on port {self.port}:\n{self.log_tail()}")

    def stop(self) -> None:
        """A fast shutdown: open connections are closed, the server is gone."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    @property
    def running(self) -> bool:
        return self._run("pg_ctl", "-D", str(self.data), "status", check=False).returncode == 0

    def create_database(self, name: str) -> None:
        self._run(
            "psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres",
            "-c", f'CREATE DATABASE "{name}"',
        )  # fmt: skip

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_file.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            if self.data.exists():
                self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def __repr__(self) -> str:
        return f"<PostgresServer 127.0.0.1:{self.port} {self.data}>"
