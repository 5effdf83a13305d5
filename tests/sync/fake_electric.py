"""A stand-in for a real Electric service, for the proxy-mode tests.

A real Electric (Elixir, logical replication, Docker) cannot run here, so this
process speaks the part of the HTTP shape protocol the proxy relies on, over
a fixed in-memory table, on loopback. It checks what a real service would
refuse (a wrong secret, a missing table) and prints every request it gets as
a JSON line on stdout, so a test can see exactly what the proxy forwarded.

It answers ``offset=-1`` with the rows whose owner_id is ``params[1]`` (and
whose session_id is ``params[2]`` when the ``where`` names it), then
up-to-date; a live request is held briefly and answered up-to-date; a handle
"expired-..." gets 409 with a new handle.

Usage: python fake_electric.py SECRET   (prints "listening <port>" first)
"""

from __future__ import annotations

import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

ROWS = [
    {"id": "s1", "owner_id": "alice", "title": "alice's", "deleted_at": None},
    {"id": "s2", "owner_id": "bob", "title": "bob's", "deleted_at": None},
    {"id": "s3", "owner_id": "alice", "title": "alice's other", "deleted_at": None},
]
SCHEMA = {
    "id": {"type": "text", "pk_index": 0},
    "owner_id": {"type": "text"},
    "title": {"type": "text"},
    "deleted_at": {"type": "timestamptz"},
}


class Handler(BaseHTTPRequestHandler):
    secret = ""

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: object, headers: dict[str, str]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        pairs = parse_qsl(url.query, keep_blank_values=True)
        print(json.dumps({"path": url.path, "query": pairs}), flush=True)
        q = dict(pairs)
        if q.get("secret") != self.secret:
            return self._send(401, {"message": "Unauthorized"}, {})
        if url.path != "/v1/shape" or "table" not in q:
            return self._send(400, {"message": "Invalid request"}, {})
        handle = q.get("handle", "")
        if handle.startswith("expired"):
            return self._send(
                409, [{"headers": {"control": "must-refetch"}}], {"electric-handle": "h-2"}
            )
        base = {"electric-handle": handle or "h-1", "cache-control": "public, max-age=60"}
        if q.get("offset") == "-1":
            rows = [r for r in ROWS if r["owner_id"] == q.get("params[1]")]
            body = [
                {
                    "key": f'"public"."{q["table"]}"/"{r["id"]}"',
                    "value": r,
                    "headers": {"operation": "insert"},
                }
                for r in rows
            ]
            body.append({"headers": {"control": "up-to-date", "global_last_seen_lsn": "7"}})
            return self._send(
                200,
                body,
                {
                    **base,
                    "electric-offset": "7_0",
                    "electric-schema": json.dumps(SCHEMA),
                    "electric-up-to-date": "",
                },
            )
        if q.get("live") == "true":
            time.sleep(0.3)
            return self._send(
                200,
                [{"headers": {"control": "up-to-date", "global_last_seen_lsn": "7"}}],
                {
                    **base,
                    "electric-offset": q["offset"],
                    "electric-cursor": "100",
                    "electric-up-to-date": "",
                },
            )
        return self._send(
            200,
            [{"headers": {"control": "up-to-date", "global_last_seen_lsn": "7"}}],
            {
                **base,
                "electric-offset": q["offset"],
                "electric-schema": json.dumps(SCHEMA),
                "electric-up-to-date": "",
            },
        )


def main() -> None:
    Handler.secret = sys.argv[1]
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
