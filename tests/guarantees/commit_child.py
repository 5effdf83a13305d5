"""The child process of test_commit_in_doubt.py: appends, arms the fault shim,
has each of ``writers`` threads append once more (together, so that group
commit can put them in one batch), prints what each was told, and exits
without closing the store (as a crash would)."""

from __future__ import annotations

import json
import os
import sys
import threading

from threadkeep import Actor, Threadkeep


def main() -> None:
    url, armed, writers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    tk = Threadkeep.open(url)
    me = Actor(tk.create_user("doubt", id="u1").value.id)
    sid = tk.create_session(me, id="s1").value.id
    for i in range(5):
        tk.append_message(me, sid, {"role": "user", "content": f"ok {i}", "client_id": f"ok-{i}"})
    open(armed, "w").close()  # from now on, every fsync of the -wal file fails
    told: dict[str, dict[str, str | None]] = {}
    start = threading.Barrier(writers)

    def last(n: int) -> None:
        cid = f"last-{n}"
        start.wait()
        try:
            tk.append_message(me, sid, {"role": "user", "content": cid, "client_id": cid})
            told[cid] = {"error": None, "message": ""}
        except Exception as exc:
            told[cid] = {"error": type(exc).__name__, "message": str(exc)}

    threads = [threading.Thread(target=last, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    print(json.dumps(told), flush=True)
    os._exit(0)  # no close, no checkpoint: what a crash right after would leave


if __name__ == "__main__":
    main()
