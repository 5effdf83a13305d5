"""The random writes of tests/random_writes.py sent through the REST API, as
an app does, instead of through the library: every user write goes over
HTTP to ``threadkeep serve`` and every txid it answers is kept, so a test
can wait for each one on the clients the way a TanStack DB app does
(``awaitTxId``). Reads that only steer the choices stay on the library, as
do the writes that have no user route: retention (an operator's job) and
imports (the ``threadkeep import`` command)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from random_writes import WORD, World
from record_kinds import KINDS, Ctx
from threadkeep import ThreadkeepError

# The session record's tables as the API names their collections.
ROUTES = {k.table: k.table.replace("_", "-") for k in KINDS} | {
    "hookify_decisions": "hook-decisions"
}
# Tables whose rows the API takes in batches (``{"events": [...]}``).
BATCHED = {"analytics_events"}


class Refused(ThreadkeepError):
    """The API answered a problem (4xx): the write was refused, as the
    library's error would have refused it."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"{status}: {body[:300]}")


class Rest:
    """One user's HTTP client. Every 2xx write's txid goes to ``txids``
    (in the order answered); a 4xx raises :class:`Refused`; anything else
    fails the test, because no random write may break the server."""

    def __init__(self, base: str, token: str) -> None:
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        self.txids: list[int] = []

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        r = self.http.request(method, path, **kw)
        if 400 <= r.status_code < 500:
            raise Refused(r.status_code, r.text)
        assert r.status_code < 300, f"{method} {path}: {r.status_code} {r.text}"
        if r.headers.get("content-type", "").startswith("text/event-stream"):
            return self._events(r.text)
        body = r.json()
        if isinstance(body, dict) and "txid" in body:
            self.txids.append(body["txid"])
        return body

    def _events(self, text: str) -> list[tuple[str, dict[str, Any]]]:
        """A streamed message's SSE answer, its txids kept like a body's."""
        events = []
        for block in text.strip().split("\n\n"):
            fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
            data = json.loads(fields["data"])
            events.append((fields["event"], data))
            if "txid" in data:
                self.txids.append(data["txid"])
        return events

    def close(self) -> None:
        self.http.close()


class HttpWorld(World):
    """:class:`World` whose user writes go through ``rest`` (``theirs`` for the
    other user's)."""

    def __init__(self, world: World, rest: Rest, theirs: Rest) -> None:
        super().__init__(world.tk, world.me, world.them, world.transcript_path.parent)
        self.sessions = list(world.sessions)
        self.rest, self.theirs = rest, theirs

    def ctx(self, sid: str) -> Ctx:
        history = self.tk.last_messages(self.me, sid, 1)
        own = [m for m in history if m.session_id == sid]
        if own:
            msg = own[0].id
        else:
            msg = self._post_messages(sid, [self.message()])["messages"][0]["id"]
        ev = self.rest("POST", f"/v1/sessions/{sid}/tool-events", json={"name": "edit"})
        return Ctx(self.tk, self.me, sid, msg, ev["id"])

    def _post_messages(self, sid: str, messages: list[dict[str, Any]], **events: Any) -> Any:
        return self.rest(
            "POST", f"/v1/sessions/{sid}/messages", json={"messages": messages, **events}
        )

    # --- the operations, over HTTP -----------------------------------------------------

    def create_session(self) -> None:
        title = self.pick([None, "plans", "notes"])
        s = self.rest("POST", "/v1/sessions", json={"title": title, "tags": ["t"]})
        self.sessions.append(s["id"])

    def update_session(self) -> None:
        self.rest("PATCH", f"/v1/sessions/{self.session()}", json=self.session_changes())

    def stale_update(self) -> None:
        sid = self.session()
        version = self.tk.get_session(self.me, sid).version
        self.rest(
            "PATCH",
            f"/v1/sessions/{sid}",
            json={"title": "stale"},
            headers={"If-Match": f'"{version - 1}"'},
        )

    def append(self) -> None:
        n = self.number(1, 3)
        with_ids = self.flag()  # ids repeat: some appends are retries
        self._post_messages(self.session(), [self.message(with_ids) for _ in range(n)])

    def append_with_events(self) -> None:
        sid = self.session()
        c = self.ctx(sid)
        self._post_messages(
            sid,
            [self.message()],
            tool_events=[{"name": "grep", "message_id": c.message_id, "status": "succeeded"}],
            timeline_events=[{"kind": "note", "payload": {"x": 1}, "message_id": c.message_id}],
        )

    def stream(self) -> None:
        """NDJSON in, SSE out. Without a ``done`` line the API finishes the
        message ``incomplete`` (it never leaves one streaming, unlike the
        library's World, which sometimes does)."""
        lines: list[dict[str, Any]] = [{"role": "assistant"}]
        lines += [{"delta": " more"} for _ in range(self.number(0, 2))]
        if self.flag():
            lines.append({"done": True, "status": self.pick(["complete", "incomplete"])})
        body = "".join(json.dumps(x) + "\n" for x in lines)
        self.rest(
            "POST",
            f"/v1/sessions/{self.session()}/messages/stream",
            content=body,
            headers={"Content-Type": "application/x-ndjson"},
        )

    def finish_stream(self) -> None:
        """The app finishes, over HTTP, a stream whose writer (an agent on
        the library) died; sometimes one finished already (409)."""
        body: dict[str, Any] = {"status": self.pick(["complete", "incomplete"])}
        if self.flag():
            body["content"] = f"final {WORD}"
        self.rest("POST", f"/v1/messages/{self.open_stream()}/finish", json=body)

    def tool_event(self) -> None:
        if self.tool_events and self.flag():
            ev = self.pick(self.tool_events)
            if self.flag():
                self.rest(
                    "PATCH", f"/v1/tool-events/{ev}", json={"status": "running", "output": [1]}
                )
            else:
                self.rest("POST", f"/v1/tool-events/{ev}/finish", json={"output": {"ok": True}})
            return
        ev = self.rest(
            "POST", f"/v1/sessions/{self.session()}/tool-events", json={"name": "run", "input": [1]}
        )
        self.tool_events.append(ev["id"])

    def timeline(self) -> None:
        events = [{"kind": "step", "payload": {"i": i}} for i in range(self.number(1, 3))]
        self.rest("POST", f"/v1/sessions/{self.session()}/timeline-events", json={"events": events})

    def fork(self) -> None:
        sid = self.session()
        at = self.number(0, self.head(sid))
        self.sessions.append(
            self.rest("POST", f"/v1/sessions/{sid}/fork", json={"at_seq": at})["id"]
        )

    def rewind(self) -> None:
        sid = self.session()
        to = self.number(0, self.head(sid))
        done = self.rest("POST", f"/v1/sessions/{sid}/rewind", json={"to_seq": to})
        if done["branch"] is not None:
            self.sessions.append(done["branch"]["id"])

    def trash(self) -> None:
        self.rest("DELETE", f"/v1/sessions/{self.session()}")

    def restore(self) -> None:
        self.rest("POST", f"/v1/sessions/{self.session()}/restore")

    def purge(self) -> None:
        sid = self.session()
        self.rest("POST", f"/v1/sessions/{sid}/purge")
        self.sessions.remove(sid)

    def record(self) -> None:
        i = self.number(0, len(KINDS) - 1)
        c = self.ctx(self.session())
        table, fields = KINDS[i].table, KINDS[i].fields(c)
        path = f"/v1/sessions/{c.sid}/{ROUTES[table]}"
        if table in BATCHED:
            row = self.rest("POST", path, json={"events": [fields]})["items"][0]
        else:
            row = self.rest("POST", path, json=fields)
        self.records.append((i, c.sid, row["id"]))

    def update_record(self) -> None:
        if self.records:
            i, sid, key = self.pick(self.records)
            path = f"/v1/sessions/{sid}/{ROUTES[KINDS[i].table]}/{key}"
            self.rest("PATCH", path, json=KINDS[i].update)

    def delete_record(self) -> None:
        if self.records:
            i, sid, key = self.pick(self.records)
            self.rest("DELETE", f"/v1/sessions/{sid}/{ROUTES[KINDS[i].table]}/{key}")

    def todos(self) -> None:
        sid = self.session()
        self.rest("PUT", f"/v1/sessions/{sid}/todos", json={"todos": self.todo_list(sid)})

    def summary(self) -> None:
        path = f"/v1/sessions/{self.session()}/summary"
        if self.flag():
            self.rest("PUT", path, json={"summary": f"so far {next(self.names)}"})
        else:
            self.rest("DELETE", path)

    def upload(self) -> None:
        if self.uploads and self.flag():
            self.rest("DELETE", f"/v1/uploads/{self.uploads.pop()}")
            return
        up = self.rest(
            "POST",
            f"/v1/sessions/{self.session()}/uploads",
            params={"filename": "a.txt"},
            content=b"%d" % next(self.names),
        )
        self.uploads.append(up["id"])

    def other_user(self) -> None:
        """Another user writes, in their own session and (refused) in ours."""
        theirs = self.theirs("POST", "/v1/sessions", json={"title": "theirs"})["id"]
        mine = {"messages": [{"role": "user", "content": "mine"}]}
        self.theirs("POST", f"/v1/sessions/{theirs}/messages", json=mine)
        yours = {"messages": [{"role": "user", "content": "yours"}]}
        self.theirs("POST", f"/v1/sessions/{self.session()}/messages", json=yours)
