"""The child process of test_commit_in_doubt.py: appends, then makes one more
append after the fault shim was armed, prints what it was told, and exits
without closing the store (as a crash would)."""

from __future__ import annotations

import json
import os
import sys

from threadkeep import Actor, Threadkeep


def main() -> None:
    url, armed = sys.argv[1], sys.argv[2]
    tk = Threadkeep.open(url)
    me = Actor(tk.create_user("doubt", id="u1").value.id)
    sid = tk.create_session(me, id="s1").value.id
    for i in range(5):
        tk.append_message(me, sid, {"role": "user", "content": f"ok {i}", "client_id": f"ok-{i}"})
    open(armed, "w").close()  # from now on, every fsync of the -wal file fails
    try:
        tk.append_message(me, sid, {"role": "user", "content": "last", "client_id": "last"})
        told = {"error": None, "message": ""}
    except Exception as exc:
        told = {"error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(told), flush=True)
    os._exit(0)  # no close, no checkpoint: what a crash right after would leave


if __name__ == "__main__":
    main()
