"""A child process for the upload crash tests (run as a script, never collected).

    upload_child.py between URL BLOBS USER SESSION
        open the store with the blob settings BLOBS (JSON), upload one file, and
        SIGKILL itself the moment the bytes are stored, before the row is
        written (the blob store's put is wrapped to do so). Prints
        "stored SHA256" first.
    upload_child.py loop URL BLOBS USER SESSION
        upload files of random sizes for ever, printing "ack ID SHA256" after
        each upload call returned. Meant to be killed with SIGKILL.
    upload_child.py memory URL BLOBS USER SESSION MIB
        upload MIB MiB generated on the fly and read them back, then print
        "rss BEFORE_KB PEAK_KB" (the resident size before the upload, and the
        peak, VmHWM).
    upload_child.py serve URL BLOBS USER SESSION
        serve the HTTP API (uvicorn) on a free port; print "ready PORT TOKEN
        RSS_KB" once listening (the test streams to it and reads the peak
        resident size from /proc). Stops on SIGTERM.

Any unexpected error: the traceback on stderr, exit status 3.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import traceback
from collections.abc import Iterator
from typing import Any

from threadkeep import Actor, Threadkeep
from threadkeep.config import BlobSettings, load_settings


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def open_store(url: str, blobs: str) -> Threadkeep:
    return Threadkeep.open(url, settings=load_settings(blobs=BlobSettings(**json.loads(blobs))))


def generated(mib: int, seed: int = 7) -> Iterator[bytes]:
    """``mib`` MiB of pseudo-random bytes, made a chunk at a time."""
    rnd = random.Random(seed)
    for _ in range(mib * 16):
        yield rnd.randbytes(64 * 1024)


def cmd_between(url: str, blobs: str, user: str, session: str) -> None:
    tk = open_store(url, blobs)
    put = tk.blobs.put

    def put_then_die(*args: Any, **kwargs: Any) -> Any:
        info = put(*args, **kwargs)
        emit(f"stored {info.sha256}")
        os.kill(os.getpid(), signal.SIGKILL)
        return info

    tk.blobs.put = put_then_die  # type: ignore[method-assign]
    tk.upload(Actor(user), session, generated(2), filename="doomed.bin")
    raise SystemExit("still alive after the kill")


def cmd_loop(url: str, blobs: str, user: str, session: str) -> None:
    tk = open_store(url, blobs)
    rnd = random.Random(os.getpid())
    while True:
        size = rnd.choice((0, 1, 1000, 70_000, 1_100_000, 2_500_000))
        data = rnd.randbytes(size)
        done = tk.upload(Actor(user), session, [data[:500], data[500:]], filename="f.bin")
        emit(f"ack {done.value.id} {done.value.sha256}")


def rss_kb(field: str = "VmRSS") -> int:
    """Resident size now (VmRSS) or at its peak (VmHWM). Not getrusage's
    ru_maxrss: Linux carries that over exec, so a child would report the peak
    of the pytest process it was forked from."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def cmd_memory(url: str, blobs: str, user: str, session: str, mib: str) -> None:
    tk = open_store(url, blobs)
    before = rss_kb()
    done = tk.upload(Actor(user), session, generated(int(mib)), filename="big.bin")
    assert done.value.size == int(mib) * 1024 * 1024
    total = sum(len(c) for c in tk.open_upload(Actor(user), done.value.id))
    assert total == done.value.size
    emit(f"rss {before} {rss_kb('VmHWM')}")
    tk.close()


def cmd_serve(url: str, blobs: str, user: str, session: str) -> None:
    import socket

    import uvicorn

    from threadkeep.api import create_app

    tk = open_store(url, blobs)
    token = tk.create_token(Actor(user), "memory", scopes=("read", "write")).value.token
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(tk), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started:
            threading.Event().wait(0.02)
        emit(f"ready {sock.getsockname()[1]} {token} {rss_kb()}")

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])
    tk.close()


def main() -> None:
    cmd, *args = sys.argv[1:]
    try:
        {"between": cmd_between, "loop": cmd_loop, "memory": cmd_memory, "serve": cmd_serve}[cmd](
            *args
        )
    except BaseException:
        traceback.print_exc()
        sys.exit(3)


if __name__ == "__main__":
    main()
