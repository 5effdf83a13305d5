"""Uploads after a crash: bytes first, then the row. A process killed between
the two leaves an orphan blob (collected later), never a row without bytes;
one killed at random moments leaves every visible upload whole."""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from guarantee_helpers import settle_after_kill

from conftest import Bench, row_counts
from threadkeep import Actor, Threadkeep

CHILD = str(Path(__file__).with_name("upload_child.py"))
PAIRS = [("sqlite", "fs"), ("postgres", "postgres"), ("sqlite", "s3")]
IDS = [f"{e}-{b}" for e, b in PAIRS]


def child_args(bench: Bench, cmd: str, me: Actor, session_id: str) -> list[str]:
    blobs = bench.blobs.model_dump(mode="json")
    secret = bench.blobs.s3_secret_access_key
    blobs["s3_secret_access_key"] = secret.get_secret_value() if secret else None
    return [sys.executable, CHILD, cmd, bench.url, json.dumps(blobs), me.user_id, session_id]


def rows(tk: Threadkeep) -> dict[str, int]:
    """Row counts but the PostgreSQL blob store's own tables (which hold the orphan)."""
    return {k: v for k, v in row_counts(tk).items() if k not in ("blobs", "blob_chunks")}


def check_every_upload_is_whole(tk: Threadkeep, me: Actor, session_id: str) -> int:
    """Every visible upload's bytes are there, with its size and sha256."""
    ups = tk.list_uploads(me, session_id)
    for up in ups:
        h, size = hashlib.sha256(), 0
        for chunk in tk.open_upload(me, up.id):
            h.update(chunk)
            size += len(chunk)
        assert (size, h.hexdigest()) == (up.size, up.sha256), up
    if tk.dialect == "sqlite":
        with tk.engine.sa_engine.connect() as conn:
            assert conn.execute(sa.text("PRAGMA integrity_check")).scalar() == "ok"
    return len(ups)


@pytest.mark.slow
@pytest.mark.parametrize("bench", PAIRS, ids=IDS, indirect=True)
def test_a_kill_between_the_bytes_and_the_row_leaves_only_an_orphan_blob(
    bench: Bench, me: Actor
) -> None:
    s = bench.tk.create_session(me).value
    before = rows(bench.tk)
    proc = subprocess.run(
        child_args(bench, "between", me, s.id), capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
    [line] = proc.stdout.splitlines()
    sha256 = line.removeprefix("stored ")
    tk = bench.reopen()  # opens cleanly
    assert rows(tk) == before  # no row, no change-log entry
    assert tk.list_uploads(me, s.id) == []
    assert tk.blobs.exists(sha256)  # the bytes were durable before the row
    assert tk.collect_garbage() == []  # young: it could be an upload in progress
    assert tk.collect_garbage(grace_seconds=0) == [sha256]
    assert not tk.blobs.exists(sha256)


@pytest.mark.slow
@pytest.mark.parametrize("bench", PAIRS[:2], ids=IDS[:2], indirect=True)
def test_kills_at_random_moments_leave_every_visible_upload_whole(bench: Bench, me: Actor) -> None:
    s = bench.tk.create_session(me).value
    rnd = random.Random(5)
    acked: list[tuple[str, str]] = []
    for _ in range(3):
        child = subprocess.Popen(
            child_args(bench, "loop", me, s.id),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        first = child.stdout.readline()  # started uploading
        time.sleep(rnd.uniform(0.0, 0.4))
        child.send_signal(signal.SIGKILL)
        rest, err = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL, err
        for line in [first, *rest.splitlines()]:
            if line.startswith("ack "):
                _, upload_id, sha256 = line.split()
                acked.append((upload_id, sha256))
    settle_after_kill(bench.url)  # an upload in doubt at a kill commits or not, then stops
    tk = bench.reopen()
    assert len(acked) >= 3
    for upload_id, sha256 in acked:  # acknowledged means there
        assert tk.get_upload(me, upload_id).sha256 == sha256
    visible = check_every_upload_is_whole(tk, me, s.id)
    assert visible >= len(acked)
    tk.collect_garbage(grace_seconds=0)  # orphans of the kills go, nothing else
    assert check_every_upload_is_whole(tk, me, s.id) == visible
    assert all(tk.blobs.exists(up.sha256) for up in tk.list_uploads(me, s.id))
