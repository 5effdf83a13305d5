"""``GET /v1/me/export`` (the caller's own archive, streamed) and ``DELETE /v1/me``
(admin scope and the user's id as confirmation)."""

from __future__ import annotations

import io
import zipfile

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
