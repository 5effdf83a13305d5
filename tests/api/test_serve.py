"""``threadkeep serve`` as a real process, and ``threadkeep token``.

The server runs as a subprocess on a free port against a SQLite file in a
temporary data dir (THREADKEEP_DATA_DIR and THREADKEEP_CONFIG point into
tmp_path, so the real user dirs are never touched).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from threadkeep import Actor, Threadkeep
from threadkeep.cli.main import app
from threadkeep.model.common import utcnow
from threadkeep.service.tokens import InvalidToken, Scope

STARTUP_TIMEOUT = 30.0


class Server:
    """A ``threadkeep serve`` subprocess and what it printed."""

    def __init__(
        self, env: dict[str, str], log_path: Path, args: Sequence[str] = (), *, wait: bool = True
    ) -> None:
        self.log = log_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "threadkeep.cli", "serve", "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=env,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stdout: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.base = ""
        if wait:
            self.wait_until_serving()

    def wait_until_serving(self) -> None:
        """Wait for the banner and a healthy /healthz."""
        self.base = self._wait_for(r"serving (http://127\.0\.0\.1:\d+)")
        self._wait_until_healthy()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def _wait_for(self, pattern: str) -> str:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.stdout.append(line)
            m = re.search(pattern, line)
            if m:
                return m.group(1)
        raise AssertionError(f"no line matching {pattern!r}; stdout so far: {self.stdout}")

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise AssertionError("the server never answered /healthz")

    def printed(self) -> list[str]:
        """Every stdout line so far (waiting briefly for the rest of the banner)."""
        time.sleep(0.2)
        while True:
            try:
                self.stdout.append(self.lines.get_nowait())
            except queue.Empty:
                return self.stdout

    def stop(self) -> int:
        """SIGTERM, and the exit code once the server has shut down."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        self.close()
        return code

    def close(self) -> None:
        """Kill the process if it still runs, and release its pipe and log."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("THREADKEEP_")}
    out["THREADKEEP_DATA_DIR"] = str(tmp_path / "data")
    out["THREADKEEP_CONFIG"] = str(tmp_path / "no-config.toml")
    return out


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for s in started:
        s.close()


def test_serve_on_a_fresh_machine_then_restart_with_the_data_intact(
    env: dict[str, str], tmp_path: Path, servers: list[Server]
) -> None:
    log = tmp_path / "server.log"
    first = Server(env, log)
    servers.append(first)
    printed = "\n".join(first.printed())
    token = re.search(r"token: (tk_[A-Za-z0-9_-]+)", printed)
    assert token, printed
    assert f"{first.base}/?token={token.group(1)}" in printed
    auth = {"Authorization": f"Bearer {token.group(1)}"}

    with httpx.Client(base_url=first.base, headers=auth, timeout=10) as client:
        me = client.get("/v1/me").json()
        assert sorted(me["token"]["scopes"]) == ["admin", "read", "write"]
        created = client.post("/v1/sessions", json={"title": "kept"})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        appended = client.post(
            f"/v1/sessions/{sid}/messages",
            json={"messages": [{"role": "user", "content": "hello"}]},
        )
        assert appended.status_code == 201 and isinstance(appended.json()["txid"], int)
        listed = client.get("/v1/sessions").json()["items"]
        assert [s["id"] for s in listed] == [sid]

    assert first.stop() == 0
    assert (tmp_path / "data" / "threadkeep.db").exists()
    logs = log.read_text().splitlines()
    assert logs and all(json.loads(line)["level"] for line in logs)  # JSON lines only
    assert token.group(1) not in log.read_text()  # the token never reaches the log
    assert any(json.loads(line).get("route") == "/v1/sessions" for line in logs)

    second = Server(env, log)
    servers.append(second)
    again = "\n".join(second.printed())
    assert not re.search(r"tk_[A-Za-z0-9_-]{20}", again)
    assert "threadkeep token create" in again
    with httpx.Client(base_url=second.base, headers=auth, timeout=10) as client:
        assert [s["id"] for s in client.get("/v1/sessions").json()["items"]] == [sid]
        messages = client.get(f"/v1/sessions/{sid}/messages").json()["items"]
        assert [m["content"] for m in messages] == ["hello"]
    assert second.stop() == 0


def test_sigterm_lets_a_write_in_flight_finish(
    env: dict[str, str], tmp_path: Path, servers: list[Server]
) -> None:
    server = Server(env, tmp_path / "server.log")
    servers.append(server)
    token = re.search(r"token: (tk_\S+)", "\n".join(server.printed()))
    assert token
    auth = {"Authorization": f"Bearer {token.group(1)}"}
    sid = httpx.post(f"{server.base}/v1/sessions", json={}, headers=auth).json()["id"]

    body = json.dumps({"messages": [{"role": "user", "content": "in flight"}]}).encode()
    started, resume = threading.Event(), threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield body[:10]
        started.set()
        resume.wait(10)
        yield body[10:]

    result: dict[str, httpx.Response] = {}

    def send() -> None:
        result["r"] = httpx.post(
            f"{server.base}/v1/sessions/{sid}/messages",
            content=slow_body(),
            headers={**auth, "content-type": "application/json"},
            timeout=20,
        )

    sender = threading.Thread(target=send)
    sender.start()
    assert started.wait(10)
    time.sleep(0.3)  # the server has the request's head and waits for the body
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # it is shutting down, with the request still in flight
    resume.set()
    sender.join(20)

    assert result["r"].status_code == 201, result["r"].text
    assert server.proc.wait(timeout=30) == 0
    url = f"sqlite:///{tmp_path / 'data' / 'threadkeep.db'}"
    with Threadkeep.open(url) as tk:
        user = tk.list_users()[0]
        contents = [m.content for m in tk.get_messages(Actor(user.id), sid)]
    assert contents == ["in flight"]


def test_serve_says_what_to_do_when_the_port_is_taken(env: dict[str, str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(
            [sys.executable, "-m", "threadkeep.cli", "serve", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert r.returncode == 2, r.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--port" in r.stderr


# --- threadkeep token ------------------------------------------------------------------


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("THREADKEEP_CONFIG", str(tmp_path / "no-config.toml"))
    monkeypatch.setenv("THREADKEEP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("THREADKEEP_DATABASE_URL", raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), prog_name="threadkeep")


def test_token_create_list_and_revoke(db_url: str, isolated: None) -> None:
    made = run("token", "create", "--name", "laptop", "--database-url", db_url)
    assert made.exit_code == 0, made.output
    assert "created the user 'local'" in made.stdout
    laptop = made.stdout.strip().splitlines()[-1]
    assert laptop.startswith("tk_")

    ci = run(
        "token", "create", "--name", "ci", "--scopes", "read", "--expires-in", "30d",
        "--database-url", db_url,
    )  # fmt: skip
    assert ci.exit_code == 0, ci.output
    ci_token = ci.stdout.strip().splitlines()[-1]

    with Threadkeep.open(db_url) as tk:
        assert tk.authenticate(laptop).scopes == [Scope.READ, Scope.WRITE]
        read_only = tk.authenticate(ci_token)
        assert read_only.scopes == [Scope.READ]
        assert read_only.expires_at is not None
        assert abs(read_only.expires_at - (utcnow() + timedelta(days=30))) < timedelta(minutes=5)
        laptop_id = tk.authenticate(laptop).id

    listed = run("token", "list", "--database-url", db_url)
    assert listed.exit_code == 0, listed.output
    assert "laptop" in listed.stdout and "ci" in listed.stdout
    assert "tk_" not in listed.stdout

    revoked = run("token", "revoke", laptop_id, "--database-url", db_url)
    assert revoked.exit_code == 0, revoked.output
    with Threadkeep.open(db_url) as tk, pytest.raises(InvalidToken, match="revoked"):
        tk.authenticate(laptop)

    missing = run("token", "revoke", "no-such-token", "--database-url", db_url)
    assert missing.exit_code == 2 and "not found" in missing.stderr
    bad_scope = run("token", "create", "--name", "x", "--scopes", "root", "--database-url", db_url)
    assert bad_scope.exit_code == 2 and "unknown scope" in bad_scope.stderr
    bad_expiry = run("token", "create", "--name", "x", "--expires-in", "soon")
    assert bad_expiry.exit_code == 2 and "duration" in bad_expiry.output

    with Threadkeep.open(db_url) as tk:
        other = tk.create_user("bob").value
    unclear = run("token", "create", "--name", "x", "--database-url", db_url)
    assert unclear.exit_code == 2 and "--user" in unclear.stderr
    for_bob = run(
        "token", "create", "--name", "bob's", "--user", other.id, "--database-url", db_url
    )
    assert for_bob.exit_code == 0, for_bob.output
    with Threadkeep.open(db_url) as tk:
        assert tk.authenticate(for_bob.stdout.strip().splitlines()[-1]).user_id == other.id
