"""A real PostgreSQL server for the database tests: a temporary data directory, loopback only,
a free port, its unix socket in the temporary directory, stopped (and removed) at the end.

PostgreSQL refuses to run as root; as root, initdb and pg_ctl run as the ``postgres`` user on
a directory chowned to it.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.service.servers import free_port

USER = "medsight"


def binaries() -> tuple[str, str] | None:
    """initdb and pg_ctl from PATH or the newest /usr/lib/postgresql/N/bin; None when absent."""
    found = [shutil.which(name) for name in ("initdb", "pg_ctl")]
    if all(found):
        return found[0], found[1]  # type: ignore[return-value]
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if all(os.access(Path(folder) / name, os.X_OK) for name in ("initdb", "pg_ctl")):
            return str(Path(folder) / "initdb"), str(Path(folder) / "pg_ctl")
    return None


class PostgresServer:
    def __init__(self, initdb: str, pg_ctl: str):
        self.initdb, self.pg_ctl = initdb, pg_ctl
        self.root = Path(tempfile.mkdtemp(prefix="medsight-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.port = free_port()
        self.started = False

    def _as_owner(self, *args: str) -> list[str]:
        if os.geteuid() != 0:
            return list(args)
        return ["runuser", "-u", "postgres", "--", *args]

    def _run(self, *args: str) -> None:
        done = subprocess.run(self._as_owner(*args), capture_output=True, text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def start(self) -> "PostgresServer":
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        self._run(self.initdb, "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync",
                  "--no-instructions")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")
        self.started = True
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """A fresh, empty database; its URL."""
        from sqlalchemy import create_engine, text

        engine = create_engine(self.url().replace("postgresql://", "postgresql+psycopg://"),
                               isolation_level="AUTOCOMMIT")
        with engine.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return self.url(name)

    def stop(self) -> None:
        try:
            if self.started:
                self._run(self.pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
                self.started = False
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
