"""A real PgBouncer in transaction mode in front of the test server.

Started once per pytest worker by the ``pgbouncer`` fixture (conftest.py) on
a free port, with the server's own credentials, and few server connections
per database, so that clients share them: whatever a test leaves in a server
session is what the next client of that connection finds, as in production.
PgBouncer refuses to run as root; as root it is started as ``postgres``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

# Server connections per (database, user). Two, not one: a store whose
# operations needed two at once would hang on one, which no real pooler
# would show either.
SERVER_CONNECTIONS = 2


def find_binary() -> str | None:
    return shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.access("/usr/sbin/pgbouncer", os.X_OK) else None
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgBouncer:
    """One PgBouncer process; :meth:`url` turns a server URL into its own."""

    def __init__(self, binary: str, server_url: str) -> None:
        server = sa.make_url(server_url)
        self.port = _free_port()
        # Not under pytest's tmp_path: as root, PgBouncer runs as postgres,
        # which may not enter root's private directories.
        self.dir = Path(tempfile.mkdtemp(prefix="tk-pgbouncer-"))
        self.dir.chmod(0o755)
        user = server.username or "postgres"
        users = self.dir / "users.txt"
        users.write_text(f'"{user}" "{server.password or ""}"\n')
        ini = self.dir / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={server.host or '127.0.0.1'} port={server.port or 5432}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {SERVER_CONNECTIONS}\n"
            "max_client_conn = 1000\n"
            "server_check_delay = 0\n"
        )
        for f in (users, ini):
            f.chmod(0o644)
        args = [binary, str(ini)]
        if os.geteuid() == 0:
            args[1:1] = ["-u", "postgres"]
        self.log = self.dir / "pgbouncer.log"
        with open(self.log, "wb") as out:
            self._proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"PgBouncer exited: {self.log.read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"PgBouncer did not listen within 10 s: {self.log.read_text()}")

    def url(self, server_url: str, *, declared: bool = True) -> str:
        """``server_url`` through this PgBouncer; ``declared`` adds
        ``?pgbouncer=true``, without which threadkeep takes it for a server."""
        u = sa.make_url(server_url).set(host="127.0.0.1", port=self.port)
        if declared:
            u = u.update_query_dict({"pgbouncer": "true"})
        return u.render_as_string(hide_password=False)

    def stop(self) -> None:
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
