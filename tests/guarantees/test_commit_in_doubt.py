"""A SQLite commit whose fsync fails is in doubt, and is reported so.

When ``fsync`` of the write-ahead log fails, the commit's frames may already
be in the file: SQLite rolls the transaction back in the process, but a
restart before the next commit replays them. A writer told "nothing was
written" could then find its write there after all, or write it twice. So
such a failure raises ``CommitInDoubt``, and a retry with the same
``client_id`` after the restart stores the message once.

A disk whose fsync fails cannot be had here, so a small LD_PRELOAD shim
(failsync.c, built with the system C compiler) makes ``fsync`` and
``fdatasync`` of ``*-wal`` files fail with EIO once armed; the database and
everything else are real. Linux only; without a C compiler the test skips,
and under CI=true it fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import preload
import pytest

from threadkeep import Actor, Threadkeep

HERE = Path(__file__).parent


@pytest.mark.parametrize("writers", [1, 4], ids=["one writer", "four writers at once"])
def test_a_commit_whose_fsync_fails_is_in_doubt_and_a_retry_stores_it_once(
    tmp_path: Path, writers: int
) -> None:
    """With four writers, group commit may put several in one batch: each
    of them is told, and none is told its write is safely not there."""
    shim = preload.build("failsync.c", tmp_path)
    db = tmp_path / "tk.db"
    armed = tmp_path / "armed"
    env = {**os.environ, "LD_PRELOAD": str(shim), "TK_FAIL_SYNC_FLAG": str(armed)}
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "commit_child.py"),
            f"sqlite:///{db}",
            str(armed),
            str(writers),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout.strip().splitlines()[-1])
    last = [f"last-{n}" for n in range(writers)]
    assert sorted(told) == last
    for cid in last:
        assert told[cid]["error"] == "CommitInDoubt", told
        assert "may or may not have been applied" in told[cid]["message"]

    tk = Threadkeep.open(f"sqlite:///{db}")
    me = Actor("u1")
    before = [m.client_id for m in tk.get_history(me, "s1")]
    assert before[:5] == [f"ok-{i}" for i in range(5)]
    # What makes "in doubt" the only honest answer: some may have survived.
    assert set(before[5:]) <= set(last) and len(before[5:]) == len(set(before[5:]))
    # The retry that the error recommends stores each exactly once either way.
    for cid in last:
        tk.append_message(me, "s1", {"role": "user", "content": cid, "client_id": cid})
    after = tk.get_history(me, "s1")
    assert sorted(m.client_id or "" for m in after[5:]) == last
    assert [m.client_id for m in after[:5]] == [f"ok-{i}" for i in range(5)]
    assert [m.seq for m in after] == list(range(1, 6 + writers))
    tk.close()
