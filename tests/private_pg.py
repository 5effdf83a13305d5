"""A throwaway PostgreSQL server of the tests' own, for a test that breaks
its server on purpose.

A full tablespace makes the server's checkpoints fail until space is freed,
and every ``CREATE DATABASE`` asks for a checkpoint: on the shared test
server that failed other tests running beside it. So the full-disk test gets
a server of its own: ``initdb`` into a temporary directory, started on a free
port, listening on 127.0.0.1 and a socket in that directory, with trust
auth, no fsync (nothing here needs to survive a crash of the machine) and no
autovacuum (nothing writes but the test).

PostgreSQL refuses to run as root; as root it is set up and started as the
``postgres`` user (``runuser``).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def find_bindir() -> str | None:
    """The directory of ``initdb`` and ``pg_ctl``: Debian keeps them out of PATH."""
    initdb = shutil.which("initdb")
    if initdb is not None and shutil.which("pg_ctl") is not None:
        return str(Path(initdb).parent)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return str(Path(found[-1]).parent) if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivatePostgres:
    """``with PrivatePostgres(bindir) as pg: pg.url``."""

    def __init__(self, bindir: str) -> None:
        self.bindir = bindir
        self.port = _free_port()
        # Under /tmp itself: the postgres user must reach it, and pytest's
        # directories are private to the user running the tests.
        self.root = Path(tempfile.mkdtemp(prefix="tk-private-pg-"))
        self.data = self.root / "data"
        self.as_root = os.geteuid() == 0
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.as_root:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    def start(self) -> None:
        if self.as_root:
            shutil.chown(self.root, "postgres", "postgres")
        done = self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-N")
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.strip() or done.stdout.strip()}")
        # No autovacuum: its ANALYZE writes pg_statistic pages of its own
        # accord, and on a full tablespace a dirty page the server cannot
        # write back made an ordinary read fail with "could not write block"
        # (one CI run in six). A test that fills a disk wants the server to
        # write only what the test asks for.
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c shared_buffers=16MB -c max_connections=20 -c autovacuum=off"
        )
        log = str(self.root / "server.log")
        done = self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", log, "-w", "start")
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stderr.strip() or done.stdout.strip()}")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
