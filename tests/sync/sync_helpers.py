"""Helpers for the sync tests: a real ``threadkeep serve`` per engine, callers
with tokens, and the real Electric client / TanStack DB collection in Node.

The Node packages are pinned in tests/sync/node/package-lock.json and
installed by `.ci/run` (`npm ci`). Without Node or without them, these tests
skip with a message saying how to enable them; under CI=true they fail.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from threadkeep import Actor, Threadkeep

NODE_DIR = Path(__file__).parent / "node"
PROBE = NODE_DIR / "probe.mjs"


def require_node() -> None:
    problem = None
    if shutil.which("node") is None:
        problem = "Node.js is not installed"
    elif not (NODE_DIR / "node_modules" / "@electric-sql" / "client").is_dir():
        problem = f"the pinned npm packages are missing: run `npm ci` in {NODE_DIR}"
    if problem is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI needs the real Electric client: {problem}")
    pytest.skip(f"{problem}; install Node.js 20+ and run `npm ci` in {NODE_DIR} to enable")


@dataclass
class Caller:
    actor: Actor
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def new_caller(tk: Threadkeep) -> Caller:
    user = tk.create_user(f"user-{uuid.uuid4().hex[:8]}").value
    actor = Actor(user.id)
    return Caller(actor, tk.create_token(actor, "sync-test").value.token)


class Serve:
    """``threadkeep serve`` on a free port against ``db_url``."""

    def __init__(self, db_url: str, tmp: Path, extra_env: dict[str, str] | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("THREADKEEP_")}
        name = uuid.uuid4().hex[:6]
        env["THREADKEEP_DATA_DIR"] = str(tmp / f"data-{name}")
        env["THREADKEEP_CONFIG"] = str(tmp / "no-config.toml")
        env["THREADKEEP_DATABASE_URL"] = db_url
        env.update(extra_env or {})
        self.env = env
        self.log_path = tmp / f"serve-{name}.log"
        self.base = ""
        self.start()

    def start(self, port: int = 0) -> None:
        self.log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "threadkeep.cli", "serve", "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=self.env,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        for line in self.proc.stdout:
            if "serving http://" in line:
                self.base = line.split("serving ")[1].split()[0]
                break
            if time.monotonic() > deadline:
                break
        self._drainer = threading.Thread(target=self._drain, daemon=True)
        self._drainer.start()
        if not self.base:
            raise AssertionError(f"serve did not start; see {self.log_path}")
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError("serve never became healthy")

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for _ in self.proc.stdout:
            pass

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as in a crash."""
        if self.proc.poll() is None:
            self.proc.kill()
        self._reap()

    def stop(self) -> None:
        """SIGTERM, and wait for the graceful shutdown."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._reap()

    def _reap(self) -> None:
        self.proc.wait()
        self._drainer.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.log.close()

    def shape_url(self) -> str:
        return f"{self.base}/v1/shape"


class Probe:
    """One Node process running tests/sync/node/probe.mjs."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        mode: str = "stream",
        params: dict[str, Any] | None = None,
        offset: str | None = None,
        handle: str | None = None,
        sse: bool = False,
    ) -> None:
        env = dict(os.environ)
        env.update(
            PROBE_URL=url,
            PROBE_TOKEN=token,
            PROBE_MODE=mode,
            PROBE_PARAMS=json.dumps(params or {}),
        )
        if offset:
            env["PROBE_OFFSET"] = offset
        if handle:
            env["PROBE_HANDLE"] = handle
        if sse:
            env["PROBE_LIVE_SSE"] = "1"
        self.proc = subprocess.Popen(
            ["node", str(PROBE)],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.events: list[dict[str, Any]] = []
        self._q: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._q.put(json.loads(line))
            except json.JSONDecodeError:
                self._q.put({"kind": "garbage", "text": line})

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def wait_for(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 15.0
    ) -> dict[str, Any]:
        """The first event (seen before or arriving within ``timeout``) matching ``pred``."""
        for e in self.events:
            if pred(e):
                return e
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no matching probe event in {timeout}s; got: {self.events[-8:]}; "
                    f"stderr: {self.stderr_tail()}"
                )
            try:
                e = self._q.get(timeout=left)
            except queue.Empty:
                continue
            self.events.append(e)
            if pred(e):
                return e

    def drain(self, seconds: float) -> None:
        """Collect whatever arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.events.append(self._q.get(timeout=left))
            except queue.Empty:
                return

    def stderr_tail(self) -> str:
        if self.proc.poll() is None:
            return "(running)"
        assert self.proc.stderr is not None
        return self.proc.stderr.read()[-2000:]

    def batches(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == "batch"]

    def changes(self) -> list[dict[str, Any]]:
        """Every change message received so far, in order."""
        return [m for b in self.batches() for m in b["messages"] if "key" in m]

    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == "error"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()


def up_to_date(e: dict[str, Any]) -> bool:
    return e["kind"] == "batch" and any(
        m.get("headers", {}).get("control") == "up-to-date" for m in e["messages"]
    )


@contextmanager
def probes() -> Iterator[list[Probe]]:
    started: list[Probe] = []
    try:
        yield started
    finally:
        for p in started:
            p.close()


# Short enough to keep the suite quick, long enough to prove holding.
LONG_POLL = "3"
POLL = "0.5"


def server_fixture(**extra_env: str) -> Any:
    """A module-scoped ``threadkeep serve`` over the module's ``store``."""

    @pytest.fixture(scope="module")
    def _server(store: Threadkeep, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
        require_node()
        env = {
            "THREADKEEP_SYNC__LONG_POLL_SECONDS": LONG_POLL,
            "THREADKEEP_SYNC__POLL_SECONDS": POLL,
        }
        s = Serve(store.engine.url, tmp_path_factory.mktemp("serve"), {**env, **extra_env})
        try:
            yield s
        finally:
            s.kill()

    return _server
