# SPDX-License-Identifier: Apache-2.0
"""A real PostgreSQL server for tests: a fresh cluster in a temporary folder on a free 127.0.0.1 port.

    with Postgres(tmp_path) as pg:         # initdb + pg_ctl start
        dsn = pg.dsn                       # "host=127.0.0.1 port=<port> dbname=postgres user=twin"
        pg.stop(); pg.start()              # a database restart, same port and data

PostgreSQL refuses to run as root: when the tests run as root, the server runs as the ``postgres`` system user
(Debian's package creates it) through ``runuser``. `require_postgres` fails under ``CI=true`` and skips otherwise
when the binaries are missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["Postgres", "find_postgres_bin", "require_postgres"]


def find_postgres_bin() -> Path | None:
    """Folder holding initdb and pg_ctl ($POSTGRES_BIN, /usr/local/bin, Debian's /usr/lib/postgresql/*/bin), or None."""
    candidates = [os.environ.get("POSTGRES_BIN"), "/usr/local/bin"]
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    for folder in candidates:
        if folder and (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    return None


def require_postgres() -> Path:
    """The PostgreSQL bin folder; under CI=true a missing one fails the test, otherwise skips it."""
    import pytest

    folder = find_postgres_bin()
    message = "PostgreSQL is not installed: `apt-get install -y postgresql` (initdb and pg_ctl are needed)"
    if folder is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Postgres:
    """One PostgreSQL cluster in ``workdir`` (trust authentication on 127.0.0.1 only; user ``twin``)."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.bin = find_postgres_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed: `apt-get install -y postgresql`")
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:  # the postgres user cannot enter root's 0700 temporary folders: a folder of its own in /tmp
            self.workdir = Path(tempfile.mkdtemp(prefix="twin_ext_pg_"))
            shutil.chown(self.workdir, "postgres")
        else:
            self.workdir = Path(workdir)
            self.workdir.mkdir(parents=True, exist_ok=True)
        self.data = self.workdir / "data"
        self.port = port or _free_port()
        self.log = self.workdir / "postgres.log"
        self._run("initdb", "-D", str(self.data), "-U", "twin", "-A", "trust", "--no-sync", "-E", "UTF8")

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        result = subprocess.run(
            [*self._as, str(self.bin / tool), *args], capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stderr.strip() or result.stdout.strip()}")

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} dbname=postgres user=twin"

    def start(self) -> None:
        opts = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.workdir} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: clients are disconnected; ``immediate``: like a crash)."""
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def __enter__(self) -> Postgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self._as:
            shutil.rmtree(self.workdir, ignore_errors=True)
