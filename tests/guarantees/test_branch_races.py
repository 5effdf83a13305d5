"""Branch operations racing each other on one tree of sessions, on both engines.

Forks, rewinds (by seq and by message id), appends, streamed replies, tool
events, checkpoints and file changes that name messages and tool events a
rewind may move, todo lists, and trash-then-purge of leaves, from several
writers at once (branch_tree.py). Each operation either happens whole or is
refused with a typed error. Afterwards every history is whole (seq 1..head,
and a branch's first ``fork_seq`` messages are exactly its parent's), and the
change log, followed from before the writers started, rebuilds every synced
table as a sync client would hold it.

Two races of this kind were found by luck (a fork racing a rewind of its
parent, and a fork at a message id racing a rewind and an append; see
CHANGELOG.md). These tests look for the whole family on purpose: first in
threads of one store, then across OS processes and two store instances
(two server instances in miniature), where only the database orders writers.
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
from collections import Counter

import pytest
from branch_tree import Tree, check_tree, snapshot
from guarantee_helpers import Child

from conftest import running_in_threads
from threadkeep import Actor, Threadkeep

THREADS = 4
SECONDS = 2.0


def _seed() -> int:
    seed = int(os.environ.get("THREADKEEP_TEST_SEED", time.time_ns() % 1_000_000))
    print(f"THREADKEEP_TEST_SEED={seed}")
    return seed


def _root(tk: Threadkeep, actor: Actor) -> str:
    root = tk.create_session(actor, title="root").value.id
    tk.append_messages(actor, root, [{"role": "user", "content": f"r{i}"} for i in range(30)])
    return root


def _assert_raced(done: dict[str, int]) -> None:
    assert done.get("fork", 0) + done.get("fork_at_message", 0) > 5, done
    assert done.get("rewind", 0) > 5, done


def test_forks_rewinds_appends_and_purges_racing_keep_every_history_whole(
    tk: Threadkeep, actor: Actor, retried: list[BaseException]
) -> None:
    """Also: no write met a deadlock (or another error the PostgreSQL store
    retries). A retry loses nothing, but a deadlock stalls its writers for
    deadlock_timeout; every branch operation locks parents before branches,
    so none should arise (tests/contract/test_branches.py has the case)."""
    seed = _seed()
    root = _root(tk, actor)
    start = snapshot(tk, actor)
    tree = Tree(tk, actor, root)
    loops = [functools.partial(tree.step, random.Random(seed * 10 + i)) for i in range(THREADS)]
    with running_in_threads(*loops):
        time.sleep(SECONDS)
    _assert_raced(tree.done)
    check_tree(tk, actor, start, seed)
    assert retried == [], (seed, retried)


@pytest.mark.slow
def test_branch_races_across_processes_and_store_instances_keep_every_history_whole(
    db_url: str, tk: Threadkeep, actor: Actor
) -> None:
    """Two OS processes and two store instances in this one, two threads
    each, on one tree: the same operations, ordered only by the database
    (PostgreSQL's row locks; SQLite's file lock, since each process has its
    own group-commit writer)."""
    seed = _seed()
    root = _root(tk, actor)
    start = snapshot(tk, actor)
    children = [
        Child("branches", db_url, actor.user_id, root, str(seed * 10 + i), "2", str(SECONDS))
        for i in range(2)
    ]
    other = Threadkeep.open(db_url)
    try:
        for c in children:
            c.wait_ready(timeout=60)
        trees = [Tree(store, actor, root) for store in (tk, other)]
        loops = [
            functools.partial(trees[i % 2].step, random.Random(seed * 10 + 2 + i)) for i in range(4)
        ]
        with running_in_threads(*loops):
            for c in children:
                c.go()
            time.sleep(SECONDS)
        rcs = [c.finish(timeout=120) for c in children]
    finally:
        other.close()
        for c in children:
            if c.proc.poll() is None:
                c.proc.kill()
                c.finish(timeout=10)
    for c, rc in zip(children, rcs, strict=True):
        assert rc == 0, f"child exited with {rc}:\n{c.stderr}"
        assert c.lines and c.lines[-1].startswith("done "), (c.lines[-3:], c.stderr)
    done: Counter[str] = Counter()
    for counts in (*(json.loads(c.lines[-1][5:]) for c in children), *(t.done for t in trees)):
        done.update(counts)
    print(done)
    _assert_raced(done)
    check_tree(tk, actor, start, seed)
