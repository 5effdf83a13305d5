"""``GET /v1/me/export`` (the caller's own archive, streamed) and ``DELETE /v1/me``
(admin scope and the user's id as confirmation)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
from api_helpers import (
    Api,
    Caller,
    api_client_fixture,
    api_store_fixture,
    assert_problem,
    new_caller,
    writes_nothing,
)

from threadkeep import Threadkeep
from threadkeep.config import Limits

store = api_store_fixture()
api = api_client_fixture()


def test_export_me_streams_my_archive_and_nothing_of_others(api: Api, store: Threadkeep) -> None:
    me, other = new_caller(store), new_caller(store)
    for caller, text in ((me, "mine"), (other, "theirs")):
        sid = api.post("/v1/sessions", json={"title": text}, headers=caller.headers).json()["id"]
        r = api.post(
            f"/v1/sessions/{sid}/messages",
            json={"messages": [{"role": "user", "content": text}]},
            headers=caller.headers,
        )
        assert r.status_code == 201, r.text
        api.request(
            "POST",
            f"/v1/sessions/{sid}/uploads",
            content=text.encode() * 3,
            params={"filename": "f.txt"},
            headers=caller.headers,
        )
    got = api.get("/v1/me/export", headers=me.headers)
    assert got.status_code == 200, got.text
    assert got.headers["content-type"] == "application/zip"
    assert "attachment" in got.headers["content-disposition"]
    with zipfile.ZipFile(io.BytesIO(got.content)) as zf:
        manifest = orjson.loads(zf.read("manifest.json"))
        messages = [orjson.loads(x) for x in zf.read("messages.jsonl").splitlines()]
        blobs = [n for n in zf.namelist() if n.startswith("blobs/")]
        assert zf.read(blobs[0]) == b"minemine" + b"mine"
    assert manifest["user_id"] == me.actor.user_id
    assert [m["content"] for m in messages] == ["mine"]
    assert len(blobs) == 1
    assert b"theirs" not in got.content


def test_delete_me_needs_admin_and_the_confirmation(api: Api, store: Threadkeep) -> None:
    me = new_caller(store)
    api.post("/v1/sessions", json={"title": "bye"}, headers=me.headers)
    rw = store.create_token(me.actor, "rw", scopes=["read", "write"]).value.token
    with writes_nothing(store):
        assert_problem(
            api.delete(
                "/v1/me",
                params={"confirm": me.actor.user_id},
                headers={"Authorization": f"Bearer {rw}"},
            ),
            403,
        )
        assert_problem(api.delete("/v1/me", headers=me.headers), 422)
        problem = assert_problem(
            api.delete("/v1/me", params={"confirm": "someone"}, headers=me.headers), 422
        )
        assert "nothing was erased" in problem["detail"]

    done = api.delete("/v1/me", params={"confirm": me.actor.user_id}, headers=me.headers)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["rows"]["sessions"] == 1 and body["rows"]["api_tokens"] == 2
    assert isinstance(body["txid"], int)
    assert set(store.user_row_counts(me.actor.user_id).values()) == {0}
    # the token went with the user
    assert_problem(api.get("/v1/me", headers=me.headers), 401)
    assert_problem(api.get("/v1/me/export", headers=me.headers), 401)


def test_delete_me_does_not_tell_whether_another_user_uploaded_the_same_bytes(
    api: Api, store: Threadkeep
) -> None:
    # Blobs are content-addressed and shared: an erasure keeps the bytes another
    # user's upload also holds. Which of the erased user's blobs were kept is
    # therefore a fact about other users, and the answer must not carry it:
    # otherwise anyone can learn whether someone else has a given file by
    # uploading it and erasing their own (throwaway) account.
    victim, prober, control = (new_caller(store) for _ in range(3))
    secret, unknown = b"the victim's contract, v3", b"a file nobody else has"

    def upload(caller: Caller, data: bytes) -> str:
        sid: str = api.post("/v1/sessions", json={}, headers=caller.headers).json()["id"]
        r = api.post(
            f"/v1/sessions/{sid}/uploads",
            content=data,
            params={"filename": "f.txt"},
            headers=caller.headers,
        )
        assert r.status_code == 201, r.text
        return sid

    vsid = upload(victim, secret)
    answers = []
    for caller, probe in ((prober, secret), (control, unknown)):
        upload(caller, probe)
        confirm = {"confirm": caller.actor.user_id}
        done = api.delete("/v1/me", params=confirm, headers=caller.headers)
        assert done.status_code == 200, done.text
        body = done.json()
        answers.append({k: v for k, v in body.items() if k not in ("user_id", "txid")})
    # The same account, the same kind of upload: the same answer, whoever else
    # holds the bytes.
    assert answers[0] == answers[1]
    assert answers[0]["blobs"] == 1
    # The victim's file is intact.
    (upload,) = store.list_uploads(victim.actor, vsid)
    got = api.get(f"/v1/uploads/{upload.id}/content", headers=victim.headers)
    assert got.status_code == 200 and got.content == secret


# --- POST /v1/me/import -------------------------------------------------------------


def _my_archive(api: Api, caller: Caller) -> tuple[bytes, str, str]:
    """A caller with a session, a branch of it and an upload; its archive,
    the session's id and the upload's bytes."""
    sid = api.post("/v1/sessions", json={"title": "trip"}, headers=caller.headers).json()["id"]
    msgs = [{"role": "user", "content": f"leg {i}"} for i in range(3)]
    r = api.post(f"/v1/sessions/{sid}/messages", json={"messages": msgs}, headers=caller.headers)
    assert r.status_code == 201, r.text
    r = api.post(f"/v1/sessions/{sid}/fork", json={"at_seq": 2}, headers=caller.headers)
    assert r.status_code == 201, r.text
    data = f"ticket of {caller.actor.user_id}".encode()
    up = api.post(
        f"/v1/sessions/{sid}/uploads",
        content=data,
        params={"filename": "t.txt"},
        headers=caller.headers,
    )
    assert up.status_code == 201, up.text
    got = api.get("/v1/me/export", headers=caller.headers)
    assert got.status_code == 200, got.text
    return got.content, sid, data.decode()


async def _chunked(data: bytes, size: int = 1024) -> AsyncIterator[bytes]:
    """A body sent in chunks, without a Content-Length."""
    for i in range(0, len(data), size):
        yield data[i : i + size]


def _import(api: Api, caller: Caller, body: Any, **params: Any) -> httpx.Response:
    headers = {**caller.headers, "content-type": "application/zip"}
    return api.post("/v1/me/import", content=body, headers=headers, params=params)


def test_import_me_brings_an_erased_account_back_with_its_branches_and_bytes(
    api: Api, store: Threadkeep
) -> None:
    me = new_caller(store)
    archive, sid, data = _my_archive(api, me)
    erased = api.delete("/v1/me", params={"confirm": me.actor.user_id}, headers=me.headers)
    assert erased.status_code == 200, erased.text
    again = new_caller(store)  # the same person, a new account
    with writes_nothing(store):
        dry = _import(api, again, archive, dry_run="true")
    assert dry.status_code == 200, dry.text
    assert dry.json()["created"] == 1 and dry.json()["rows"]["uploads"] == 1
    done = _import(api, again, archive)
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["ok"] is True and body["created"] == 1, body
    assert body["rows"] == {"sessions": 2, "messages": 3, "uploads": 1}
    assert any("token" in s["reason"] for s in body["skipped"])
    branches = api.get(f"/v1/sessions/{sid}/branches", headers=again.headers).json()
    assert len(branches["items"]) == 1
    (upload,) = api.get(f"/v1/sessions/{sid}/uploads", headers=again.headers).json()["items"]
    content = api.get(f"/v1/uploads/{upload['id']}/content", headers=again.headers)
    assert content.text == data
    # The same archive again: nothing changes.
    with writes_nothing(store):
        twice = _import(api, again, archive)
    assert twice.status_code == 200 and twice.json()["unchanged"] == 1


def test_import_me_refuses_what_is_not_a_whole_archive_and_writes_nothing(
    api: Api, store: Threadkeep
) -> None:
    me = new_caller(store)
    archive, _, _ = _my_archive(api, me)
    api.delete("/v1/me", params={"confirm": me.actor.user_id}, headers=me.headers)
    caller = new_caller(store)
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        files = {n: zf.read(n) for n in zf.namelist()}
    files["messages.jsonl"] = files["messages.jsonl"].replace(b"leg 1", b"leg 9")
    damaged = io.BytesIO()
    with zipfile.ZipFile(damaged, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    reader = new_caller(store, scopes=("read",))
    spooled = Path(tempfile.gettempdir()).glob("threadkeep-import-*")
    left_before = set(spooled)
    with writes_nothing(store):
        p = assert_problem(_import(api, caller, damaged.getvalue()), 422)
        assert "messages.jsonl" in p["detail"] and "nothing was imported" in p["detail"]
        p = assert_problem(_import(api, caller, b"not a zip at all"), 422)
        assert "zip" in p["detail"]
        assert_problem(_import(api, caller, b""), 422)
        assert_problem(_import(api, reader, archive), 403)
        limits = store.limits
        store.limits = Limits(max_import_bytes=len(archive) - 1)
        try:
            assert_problem(_import(api, caller, archive), 413)  # by Content-Length
            assert_problem(_import(api, caller, _chunked(archive)), 413)  # as it arrives
        finally:
            store.limits = limits
    # Every spooled body was removed, whatever the refusal.
    assert set(Path(tempfile.gettempdir()).glob("threadkeep-import-*")) == left_before


def test_import_me_fails_a_session_whose_id_another_user_holds_and_imports_the_rest(
    api: Api, store: Threadkeep
) -> None:
    me = new_caller(store)
    _, sid, _ = _my_archive(api, me)
    extra = api.post("/v1/sessions", json={"title": "gone"}, headers=me.headers).json()["id"]
    archive = api.get("/v1/me/export", headers=me.headers).content
    purged = api.delete(f"/v1/sessions/{extra}", params={"purge": "true"}, headers=me.headers)
    assert purged.status_code == 200, purged.text
    other = new_caller(store)  # me still holds sid; extra is free again
    r = _import(api, other, archive)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["ok"] is False and body["created"] == 1
    (failed,) = [s for s in body["sessions"] if s["status"] == "failed"]
    assert failed["session_id"] == sid
    assert api.get(f"/v1/sessions/{extra}", headers=other.headers).status_code == 200
    mine = api.get(f"/v1/sessions/{sid}/messages", headers=me.headers).json()
    assert len(mine["items"]) == 3  # the holder's session is untouched
