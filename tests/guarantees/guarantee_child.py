"""A child process for the guarantee tests (run as a script, never collected).

    guarantee_child.py append URL USER SESSION N WRITER
        open, print "ready", wait for "go" on stdin, append N messages
        (guarantee_helpers.write_messages), print "ack WRITER CLIENT_ID SEQ ID"
        per message, then "done".
    guarantee_child.py loop URL USER SESSION PREFIX THREADS
        open, print "ready", then THREADS threads append for ever (singles and
        small batches, unique client ids). A message's "ack" line is printed,
        and flushed, only after the call that wrote it returned. Meant to be
        killed with SIGKILL.
    guarantee_child.py random URL USER OTHER SESSION FILES SEED THREADS
        open, print "ready", then THREADS threads run random writes of every
        kind (tests/random_writes.py) on USER's SESSION and what they make,
        for ever, printing "did OP" after each. Meant to be killed with SIGKILL.
    guarantee_child.py branches URL USER ROOT SEED THREADS SECONDS
        open, print "ready", wait for "go", then THREADS threads run random
        branch operations (branch_tree.py) on the tree under ROOT for SECONDS,
        then print "done COUNTS" (a JSON object: operation -> times done).
    guarantee_child.py open URL
        print "ready", wait for "go", Threadkeep.open(URL) (which migrates),
        print "rev REVISION".

Any unexpected error: the traceback on stderr, exit status 3.
"""

from __future__ import annotations

import json
import os
import random
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from guarantee_helpers import append_with_ids, write_messages

from threadkeep import Actor, Threadkeep
from threadkeep.config import BlobSettings
from threadkeep.store.migrate import database_revision

_out = threading.Lock()


def emit(*lines: str) -> None:
    with _out:
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()


def wait_go() -> None:
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("expected go")


def run_threads(n: int, run: Callable[[int], None]) -> None:
    """Print "ready", then run ``run(0)`` .. ``run(n - 1)`` in threads until
    killed. Any exception is unexpected: its traceback on stderr, exit 3."""

    def guarded(t: int) -> None:
        try:
            run(t)
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(3)

    workers = [threading.Thread(target=guarded, args=(t,), daemon=True) for t in range(n)]
    emit("ready")
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def cmd_append(url: str, user: str, session: str, n: str, writer: str) -> None:
    tk = Threadkeep.open(url)
    emit("ready")
    wait_go()
    calls = write_messages(tk, Actor(user), session, writer, int(n))
    emit(*(f"ack {a.writer} {a.client_id} {a.seq} {a.id}" for call in calls for a in call))
    emit("done")
    tk.close()


SIZES = (1, 3, 1, 1, 5, 2, 1, 4)


def cmd_loop(url: str, user: str, session: str, prefix: str, threads: str) -> None:
    tk = Threadkeep.open(url)
    actor = Actor(user)

    def run(t: int) -> None:
        writer = f"{prefix}.t{t}"
        k = 0
        for i in range(10**9):
            size = SIZES[(i + t) % len(SIZES)]
            cids = [f"{writer}-{k + j}" for j in range(size)]
            k += size
            msgs = append_with_ids(tk, actor, session, cids)
            emit(*(f"ack {writer} {m.client_id} {m.seq} {m.id}" for m in msgs))

    run_threads(int(threads), run)


def cmd_random(
    url: str, user: str, other: str, session: str, files: str, seed: str, threads: str
) -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/
    from random_writes import World, random_steps

    opened = Threadkeep.open(url)
    tk = Threadkeep(opened.engine, opened.limits, blobs=BlobSettings(backend="fs", path=files))

    def run(t: int) -> None:
        world = World(tk, Actor(user), Actor(other), Path(files))
        world.sessions = [session]
        rng = random.Random(f"{seed}-{t}")
        while True:
            for op, numbers in random_steps(rng, 50):
                world.run(op, numbers)  # a refused write is fine; anything else is not
                emit(f"did {op}")

    run_threads(int(threads), run)


def cmd_branches(url: str, user: str, root: str, seed: str, threads: str, seconds: str) -> None:
    sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/, for replay_checks
    from branch_tree import Tree

    tk = Threadkeep.open(url)
    tree = Tree(tk, Actor(user), root)
    emit("ready")
    wait_go()
    end = time.monotonic() + float(seconds)

    def run(t: int) -> None:
        rng = random.Random(f"{seed}-{t}")
        try:
            while time.monotonic() < end:
                tree.step(rng)  # a refused operation is fine; anything else is not
        except BaseException:
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(3)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(int(threads))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    emit("done " + json.dumps(tree.done))
    tk.close()


def cmd_open(url: str) -> None:
    emit("ready")
    wait_go()
    tk = Threadkeep.open(url)
    with tk.engine.sa_engine.connect() as conn:
        rev = database_revision(conn)
    emit(f"rev {rev}")
    tk.close()


def main() -> None:
    mode, *args = sys.argv[1:]
    try:
        commands = {
            "append": cmd_append,
            "loop": cmd_loop,
            "random": cmd_random,
            "branches": cmd_branches,
            "open": cmd_open,
        }
        commands[mode](*args)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)


if __name__ == "__main__":
    main()
