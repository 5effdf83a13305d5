"""A 200 MB upload is streamed, never held: the resident memory of the process
doing it grows by a few MB, through the library and through the HTTP API.

The bytes are generated on the fly in the child (no fixture file). Each
measurement runs in a fresh child process: the peak resident size
(VmHWM from /proc: getrusage's ru_maxrss would include the pytest
process the child was forked from) against the
resident size just before the upload.
"""

from __future__ import annotations

import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_upload_crash import child_args

from conftest import Bench
from threadkeep import Actor

MIB = 200
MAX_GROWTH_KB = 50 * 1024  # far below the 200 MB that buffering would take
MAX_LIBRARY_RSS_KB = 100 * 1024


@pytest.mark.slow
@pytest.mark.parametrize(
    "bench",
    [("sqlite", "fs"), ("postgres", "postgres")],
    ids=["sqlite-fs", "postgres-postgres"],
    indirect=True,
)
def test_a_200_mb_upload_through_the_library_stays_small(bench: Bench, me: Actor) -> None:
    s = bench.tk.create_session(me).value
    args = [*child_args(bench, "memory", me, s.id), str(MIB)]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    _, before, peak = proc.stdout.split()
    growth = int(peak) - int(before)
    print(f"library {bench.engine_name}-{bench.backend}: rss {before} KB, peak {peak} KB")
    assert growth < MAX_GROWTH_KB, (before, peak)
    assert int(peak) < MAX_LIBRARY_RSS_KB, (before, peak)
    [up] = bench.tk.list_uploads(me, s.id)
    assert up.size == MIB * 1024 * 1024


def _peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _generated() -> Iterator[bytes]:
    rnd = random.Random(11)
    for _ in range(MIB * 16):
        yield rnd.randbytes(64 * 1024)


@pytest.mark.slow
@pytest.mark.parametrize("bench", [("sqlite", "fs")], ids=["sqlite-fs"], indirect=True)
def test_a_200_mb_upload_through_the_http_api_stays_small(bench: Bench, me: Actor) -> None:
    s = bench.tk.create_session(me).value
    server = subprocess.Popen(
        child_args(bench, "serve", me, s.id),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert line.startswith("ready "), server.stderr.read() if server.stderr else line
        _, port, token, _ = line.split()
        before = _peak_kb(server.pid)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "video/mp4"}
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=120
        ) as client:
            r = client.post(
                f"/v1/sessions/{s.id}/uploads", params={"filename": "big.mp4"}, content=_generated()
            )
            assert r.status_code == 201, r.text
            got = 0
            with client.stream("GET", f"/v1/uploads/{r.json()['id']}/content") as body:
                for chunk in body.iter_bytes():
                    got += len(chunk)
            assert got == r.json()["size"] == MIB * 1024 * 1024
        peak = _peak_kb(server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    print(f"http server: rss before {before} KB, peak {peak} KB")
    assert peak - before < MAX_GROWTH_KB, (before, peak)
