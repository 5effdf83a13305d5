"""Uploads through the library, on every (engine, blob backend) pair: the row
and its change-log entry, the bytes, dedupe, limits, bad input with nothing
written, scoping, garbage collection, and survival of close + reopen."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from typing import Any

import pytest
from contract_helpers import missing_id, not_raising

from conftest import Bench, row_counts
from threadkeep import Actor, InvalidInput, InvalidState, SessionNotFound, TooLarge
from threadkeep.config import Limits
from threadkeep.errors import ChecksumMismatch, UploadNotFound


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_keys(bench: Bench) -> list[str]:
    return sorted(k for k, _ in bench.tk.blobs.list_blobs())


def state(bench: Bench) -> tuple[dict[str, int], list[str]]:
    """Everything a failed upload must leave as it was: rows, log, blobs."""
    return row_counts(bench.tk), blob_keys(bench)


def test_an_upload_round_trips_with_its_row_and_change(bench: Bench, me: Actor) -> None:
    tk = bench.tk
    s = tk.create_session(me, title="files").value
    data = os.urandom(2 * 1024 * 1024 + 3)
    done = tk.upload(
        me, s.id, [data[:5], data[5:]], filename="ünïcode report.pdf", media_type="application/pdf"
    )
    up = done.value
    assert (up.session_id, up.owner_id, up.filename, up.media_type) == (
        s.id,
        me.user_id,
        "ünïcode report.pdf",
        "application/pdf",
    )
    assert (up.size, up.sha256) == (len(data), sha(data))
    assert tk.get_upload(me, up.id) == up
    assert tk.list_uploads(me, s.id) == [up]
    content = tk.open_upload(me, up.id)
    assert content.upload == up and content.read() == data
    [change] = tk.read_changes(me, tables=["uploads"])
    assert (change.op.value, change.key, change.txid, change.session_id) == (
        "insert",
        up.id,
        done.txid,
        s.id,
    )
    assert change.row is not None and change.row["sha256"] == sha(data)


def test_identical_bytes_are_stored_once_for_many_uploads(bench: Bench, me: Actor) -> None:
    tk = bench.tk
    s1 = tk.create_session(me).value
    s2 = tk.create_session(me).value
    a = tk.upload(me, s1.id, [b"same"], filename="a.txt").value
    b = tk.upload(me, s2.id, io.BytesIO(b"same"), filename="b.txt").value
    assert a.id != b.id and a.sha256 == b.sha256 == sha(b"same")
    assert blob_keys(bench) == [sha(b"same")]
    assert tk.open_upload(me, b.id).read() == b"same"


def test_a_wrong_sha256_stores_nothing(bench: Bench, me: Actor) -> None:
    s = bench.tk.create_session(me).value
    before = state(bench)
    with pytest.raises(ChecksumMismatch):
        bench.tk.upload(me, s.id, [b"bytes"], filename="f", sha256=sha(b"other"))
    assert state(bench) == before
    good = bench.tk.upload(me, s.id, [b"bytes"], filename="f", sha256=sha(b"bytes").upper())
    assert good.value.sha256 == sha(b"bytes")


def test_an_upload_over_the_size_limit_stores_nothing(bench: Bench, me: Actor) -> None:
    tk = bench.reopen(Limits(max_upload_bytes=1000))
    s = tk.create_session(me).value
    before = state(bench)
    with pytest.raises(TooLarge) as err:
        tk.upload(me, s.id, [b"x" * 700, b"x" * 700], filename="big.bin")
    assert err.value.limit == 1000 and "over the limit of 1000 bytes" in str(err.value)
    assert state(bench) == before
    assert tk.upload(me, s.id, [b"x" * 1000], filename="just.bin").value.size == 1000


def test_bad_input_is_refused_with_nothing_written(bench: Bench, me: Actor) -> None:
    tk = bench.tk
    s = tk.create_session(me).value
    ok: dict[str, Any] = {"filename": "f.txt", "media_type": "text/plain"}
    cases: dict[str, dict[str, Any]] = {
        "empty filename": {"filename": ""},
        "long filename": {"filename": "x" * 256},
        "NUL in filename": {"filename": "a\x00b"},
        "newline in filename": {"filename": "a\nb"},
        "lone surrogate": {"filename": "a\ud800"},
        "filename not text": {"filename": b"f.txt"},
        "media type without subtype": {"media_type": "text"},
        "media type with spaces": {"media_type": "text/ plain"},
        "media type too long": {"media_type": "a/" + "b" * 300},
        "short sha256": {"sha256": "abc"},
        "sha256 not hex": {"sha256": "z" * 64},
        "data is bytes": {"data": b"raw"},
        "data holds text": {"data": ["text"]},
        "data is None": {"data": None},
        "bad session id": {"session_id": ""},
        "no actor": {"actor": "me"},
    }
    before = state(bench)

    def call(case: dict[str, Any]) -> Any:
        kwargs = {**ok, **case}
        actor = kwargs.pop("actor", me)
        sid = kwargs.pop("session_id", s.id)
        data = kwargs.pop("data", [b"bytes"])
        return tk.upload(actor, sid, data, **kwargs)

    assert not_raising(cases, call, InvalidInput) == {}
    assert state(bench) == before


def test_an_unknown_or_trashed_session_is_refused_before_any_byte_is_read(
    bench: Bench, me: Actor
) -> None:
    tk = bench.tk
    read = []

    def source() -> Iterator[bytes]:
        read.append(True)
        yield b"bytes"

    before = state(bench)
    with pytest.raises(SessionNotFound):
        tk.upload(me, missing_id(), source(), filename="f")
    s = tk.create_session(me).value
    tk.delete_session(me, s.id)
    before = state(bench)
    with pytest.raises(InvalidState):
        tk.upload(me, s.id, source(), filename="f")
    assert read == [] and state(bench) == before
    with pytest.raises(SessionNotFound):
        tk.list_uploads(me, missing_id())


def test_another_user_sees_nothing_and_changes_nothing(
    bench: Bench, me: Actor, them: Actor
) -> None:
    tk = bench.tk
    s = tk.create_session(me).value
    up = tk.upload(me, s.id, [b"private"], filename="secret.txt").value
    before = state(bench)
    with pytest.raises(UploadNotFound):
        tk.get_upload(them, up.id)
    with pytest.raises(UploadNotFound):
        tk.open_upload(them, up.id)
    with pytest.raises(UploadNotFound):
        tk.delete_upload(them, up.id)
    with pytest.raises(SessionNotFound):
        tk.list_uploads(them, s.id)
    with pytest.raises(SessionNotFound):
        tk.upload(them, s.id, [b"intruder"], filename="x")
    assert state(bench) == before
    assert tk.read_changes(them, tables=["uploads"]) == []
    # Missing ids answer exactly the same.
    with pytest.raises(UploadNotFound):
        tk.get_upload(me, missing_id())


def test_delete_then_collect_removes_bytes_only_when_the_last_upload_is_gone(
    bench: Bench, me: Actor
) -> None:
    tk = bench.tk
    s = tk.create_session(me).value
    a = tk.upload(me, s.id, [b"shared"], filename="a").value
    b = tk.upload(me, s.id, [b"shared"], filename="b").value
    solo = tk.upload(me, s.id, [b"solo"], filename="c").value
    deleted = tk.delete_upload(me, a.id)
    assert deleted.value == a
    assert [c.op.value for c in tk.read_changes(me, tables=["uploads"])][-1] == "delete"
    with pytest.raises(UploadNotFound):
        tk.get_upload(me, a.id)
    with pytest.raises(UploadNotFound):
        tk.delete_upload(me, a.id)
    tk.delete_upload(me, solo.id)
    # Within the grace period nothing goes, referenced or not.
    assert tk.collect_garbage() == []
    assert blob_keys(bench) == sorted([sha(b"shared"), sha(b"solo")])
    assert tk.collect_garbage(grace_seconds=0) == [sha(b"solo")]
    assert blob_keys(bench) == [sha(b"shared")]
    assert tk.open_upload(me, b.id).read() == b"shared"
    tk.delete_upload(me, b.id)
    assert tk.collect_garbage(grace_seconds=0) == [sha(b"shared")]
    assert blob_keys(bench) == []
    with pytest.raises(InvalidInput):
        tk.collect_garbage(grace_seconds=-1)


def test_purging_a_session_deletes_its_uploads(bench: Bench, me: Actor) -> None:
    tk = bench.tk
    s = tk.create_session(me).value
    up = tk.upload(me, s.id, [b"goes with the session"], filename="f").value
    tk.purge_session(me, s.id)
    with pytest.raises(UploadNotFound):
        tk.get_upload(me, up.id)
    assert ("delete", up.id) in [
        (c.op.value, c.key) for c in tk.read_changes(me, tables=["uploads"])
    ]
    assert tk.collect_garbage(grace_seconds=0) == [sha(b"goes with the session")]


def test_uploads_survive_close_and_reopen(bench: Bench, me: Actor) -> None:
    s = bench.tk.create_session(me).value
    ups = [
        bench.tk.upload(me, s.id, [f"file {i}".encode() * 1000], filename=f"{i}.txt").value
        for i in range(3)
    ]
    tk = bench.reopen()
    assert tk.list_uploads(me, s.id) == ups
    for i, up in enumerate(ups):
        assert tk.open_upload(me, up.id).read() == f"file {i}".encode() * 1000
    assert tk.collect_garbage(grace_seconds=0) == []
