"""A user archive (``threadkeep user export``) imported back, on both engines:
every session-scoped row as it was, upload bytes included, into the same
user or another one; a damaged or altered archive writes nothing; rows the
archive cannot place are reported, never dropped silently."""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_roundtrip import UPLOAD_BYTES, USER, dump, populate
from typer.testing import CliRunner

from conftest import empty_database, row_counts
from threadkeep import Actor, Threadkeep
from threadkeep.cli.main import app
from threadkeep.config import Limits
from threadkeep.importers import FORMATS, detect, import_source
from threadkeep.importers.threadkeep_archive import read

FORMAT = "threadkeep-archive"
UPLOAD_SHA = hashlib.sha256(UPLOAD_BYTES).hexdigest()


def branchy(tk: Threadkeep, me: Actor) -> None:
    """Branches whose ids sort before their parents' (client-chosen ids),
    a branch of a branch, and sessions between them in id order: the
    archive's merge must hold a group back until its last branch."""
    tk.create_session(me, id="zz-root")
    tk.append_messages(me, "zz-root", [{"role": "user", "content": f"z{i}"} for i in range(4)])
    tk.fork_session(me, "zz-root", at_seq=2, id="aa-branch")
    tk.append_message(me, "aa-branch", {"role": "assistant", "content": "other"})
    tk.fork_session(me, "aa-branch", at_seq=3, id="m-branch-of-branch")
    tk.append_message(me, "m-branch-of-branch", {"role": "user", "content": "deeper"})
    tk.create_session(me, id="c-plain")
    tk.append_message(me, "c-plain", {"role": "user", "content": "plain"})


@pytest.fixture
def second(engine_name: str, tmp_path: Path) -> Iterator[Threadkeep]:
    """An empty store of the same engine, its blobs in a directory of its own."""
    (tmp_path / "second").mkdir()
    with empty_database(engine_name, tmp_path / "second" / "threadkeep.db") as url:
        with Threadkeep.open(url) as store:
            yield store


@pytest.fixture
def archive(tk: Threadkeep, tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """The archive of a user with every kind of row, and those rows."""
    me = populate(tk)
    branchy(tk, me)
    tk.create_token(me, name="laptop")
    path = tmp_path / "ada.zip"
    tk.export_user(me.user_id, path)
    return path, dump(tk)


def import_archive(store: Threadkeep, me: Actor, path: Path, **kw: Any) -> Any:
    return import_source(store, me, path, FORMAT, **kw)


def owned_by(rows: dict[str, Any], owner: str) -> dict[str, Any]:
    return {
        t: [{**r, "owner_id": owner} if "owner_id" in r else r for r in rs]
        for t, rs in rows.items()
    }


def test_an_archive_imported_into_an_empty_store_gives_the_same_rows_and_bytes(
    archive: tuple[Path, dict[str, Any]], second: Threadkeep
) -> None:
    path, original = archive
    assert detect(path) == FORMAT
    me = Actor(second.create_user("Ada", id=USER).value.id)
    report = import_archive(second, me, path, verify=True)
    assert report.failed == [] and report.verified is True, report.as_dict()
    assert dump(second) == original
    assert b"".join(second.blobs.open(UPLOAD_SHA)) == UPLOAD_BYTES
    reasons = [r for _, r in report.skipped]
    assert any("user account is not imported" in r for r in reasons)
    assert any("1 API token(s) not imported" in r for r in reasons)
    assert not any("upload" in r for r in reasons)
    # Search and histories are those of the first store.
    assert [m.content for m in second.get_history(me, "m-branch-of-branch")] == [
        "z0", "z1", "other", "deeper"
    ]  # fmt: skip
    assert second.search(me, "deeper").items
    # Again: nothing changes.
    before = row_counts(second)
    again = import_archive(second, me, path)
    assert again.failed == [] and again.count("created") == 0
    assert row_counts(second) == before


def test_an_archive_goes_to_the_importing_user_whatever_its_id(
    archive: tuple[Path, dict[str, Any]], second: Threadkeep
) -> None:
    path, original = archive
    bea = Actor(second.create_user("Bea").value.id)
    report = import_archive(second, bea, path)
    assert report.failed == [], report.as_dict()
    assert dump(second) == owned_by(original, bea.user_id)
    assert second.get_session(bea, "aa-branch").parent_session_id == "zz-root"


def test_a_dry_run_writes_nothing_and_counts_the_uploads_the_archive_holds(
    archive: tuple[Path, dict[str, Any]], second: Threadkeep
) -> None:
    path, _ = archive
    me = Actor(second.create_user("Ada", id=USER).value.id)
    before = row_counts(second)
    report = import_archive(second, me, path, dry_run=True)
    assert report.failed == []
    assert report.totals("would_create").uploads == 1
    assert not any("upload" in r for _, r in report.skipped)
    assert row_counts(second) == before
    assert not second.blobs.exists(UPLOAD_SHA)


# --- damaged and altered archives: refused whole -------------------------------


def rewrite(
    src: Path,
    dest: Path,
    change: Callable[[dict[str, bytes]], None],
    *,
    fix_manifest: bool = False,
) -> Path:
    """``src`` with its files changed by ``change`` (name -> bytes; the
    manifest as ``manifest.json``); with ``fix_manifest``, the manifest's
    sizes and digests are made to match again (an archive edited on purpose)."""
    with zipfile.ZipFile(src) as zf:
        files = {name: zf.read(name) for name in zf.namelist()}
    change(files)
    if fix_manifest:
        manifest = json.loads(files["manifest.json"])
        for name in manifest["files"]:
            data = files[name]
            manifest["files"][name].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        files["manifest.json"] = json.dumps(manifest).encode()
    with zipfile.ZipFile(dest, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return dest


def _flip(files: dict[str, bytes]) -> None:
    files["messages.jsonl"] = files["messages.jsonl"].replace(b"more", b"mora", 1)


def _extra(files: dict[str, bytes]) -> None:
    files["blobs/" + "0" * 64] = b"sneaked in"


def _missing(files: dict[str, bytes]) -> None:
    del files["todos.jsonl"]


def _bad_blob(files: dict[str, bytes]) -> None:
    files[f"blobs/{UPLOAD_SHA}"] = b"other bytes"


def _newer(files: dict[str, bytes]) -> None:
    manifest = json.loads(files["manifest.json"])
    manifest["schema_revision"] = "9999"
    files["manifest.json"] = json.dumps(manifest).encode()


def _version(files: dict[str, bytes]) -> None:
    manifest = json.loads(files["manifest.json"])
    manifest["format_version"] = 99
    files["manifest.json"] = json.dumps(manifest).encode()


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (_flip, "messages.jsonl"),
        (_extra, "not in the manifest"),
        (_missing, "todos.jsonl"),
        (_bad_blob, f"blobs/{UPLOAD_SHA}"),
        (_version, "version 99 is unknown"),
        (_newer, "schema revision 9999"),
    ],
    ids=[
        "changed-bytes",
        "extra-file",
        "missing-file",
        "changed-blob",
        "unknown-version",
        "newer-schema",
    ],
)
def test_a_damaged_or_altered_archive_is_refused_and_writes_nothing(
    archive: tuple[Path, dict[str, Any]],
    second: Threadkeep,
    tmp_path: Path,
    change: Callable[[dict[str, bytes]], None],
    says: str,
) -> None:
    path, _ = archive
    bad = rewrite(path, tmp_path / "bad.zip", change)
    me = Actor(second.create_user("Ada", id=USER).value.id)
    before = row_counts(second)
    report = import_archive(second, me, bad)
    assert len(report.failed) == 1 and report.sessions == [], report.as_dict()
    where, reason = report.failed[0]
    assert says in f"{where}: {reason}"
    assert row_counts(second) == before
    assert not second.blobs.exists(UPLOAD_SHA)


def test_a_blob_named_for_other_bytes_is_refused_even_with_a_matching_manifest(
    archive: tuple[Path, dict[str, Any]], second: Threadkeep, tmp_path: Path
) -> None:
    path, _ = archive
    bad = rewrite(path, tmp_path / "bad.zip", _bad_blob, fix_manifest=True)
    me = Actor(second.create_user("Ada", id=USER).value.id)
    report = import_archive(second, me, bad)
    assert [r for _, r in report.failed] == ["a blob's name must be its sha256"]
    assert row_counts(second)["sessions"] == 0


def test_a_blob_larger_than_this_store_takes_refuses_the_archive_and_writes_no_row(
    archive: tuple[Path, dict[str, Any]], second: Threadkeep
) -> None:
    path, _ = archive
    small = Threadkeep(
        second.engine, Limits(max_upload_bytes=len(UPLOAD_BYTES) - 1), blobs=second.blobs
    )
    me = Actor(small.create_user("Ada", id=USER).value.id)
    report = import_archive(small, me, path)
    assert [w for w, _ in report.failed] == [f"{path.name}: blobs/{UPLOAD_SHA}"], report.failed
    assert report.sessions == [] and row_counts(small)["sessions"] == 0


def test_rows_of_a_session_the_archive_does_not_hold_are_reported_not_dropped(
    archive: tuple[Path, dict[str, Any]], second: Threadkeep, tmp_path: Path
) -> None:
    """An export pages each table on its own: a session made while it ran
    can have rows in messages.jsonl and none in sessions.jsonl."""
    path, original = archive

    def drop_plain(files: dict[str, bytes]) -> None:
        lines = files["sessions.jsonl"].splitlines(keepends=True)
        files["sessions.jsonl"] = b"".join(x for x in lines if b'"id":"c-plain"' not in x)

    edited = rewrite(path, tmp_path / "edited.zip", drop_plain, fix_manifest=True)
    me = Actor(second.create_user("Ada", id=USER).value.id)
    report = import_archive(second, me, edited)
    assert report.failed == [], report.as_dict()
    orphans = [(w, r) for w, r in report.skipped if "c-plain" in r]
    assert len(orphans) == 1 and orphans[0][0].endswith("messages.jsonl line 10"), orphans
    assert "does not hold" in orphans[0][1]
    got = dump(second)
    assert [s["id"] for s in got["sessions"]] == sorted(
        s["id"] for s in original["sessions"] if s["id"] != "c-plain"
    )


def test_a_bad_row_fails_its_session_and_its_branches_only(
    archive: tuple[Path, dict[str, Any]], second: Threadkeep, tmp_path: Path
) -> None:
    path, _ = archive

    def break_branch(files: dict[str, bytes]) -> None:
        files["messages.jsonl"] = files["messages.jsonl"].replace(
            b'"content":"deeper"', b'"content":"deeper","role":"wizard"'
        )

    edited = rewrite(path, tmp_path / "edited.zip", break_branch, fix_manifest=True)
    me = Actor(second.create_user("Ada", id=USER).value.id)
    report = import_archive(second, me, edited)
    failed = [s.session_id for s in report.sessions if s.status == "failed"]
    assert failed == ["zz-root"], report.as_dict()
    ids = {s.id for s in second.list_sessions(me, limit=100).items}
    assert ids.isdisjoint({"zz-root", "aa-branch", "m-branch-of-branch"})
    assert {"a", "a-fork", "a-tail", "c-plain"} <= ids


def test_read_alone_reports_a_file_that_is_not_an_archive(tmp_path: Path) -> None:
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK not really")
    assert not FORMATS[FORMAT].looks_like(junk)
    (item,) = list(read(junk, "u"))
    assert "not a readable zip archive" in item.reason  # type: ignore[union-attr]


# --- the command line -----------------------------------------------------------


def test_threadkeep_import_takes_an_archive(
    archive: tuple[Path, dict[str, Any]], engine_name: str, tmp_path: Path
) -> None:
    path, original = archive
    (tmp_path / "cli").mkdir()
    with empty_database(engine_name, tmp_path / "cli" / "threadkeep.db") as url:
        with Threadkeep.open(url) as store:
            store.create_user("Ada", id=USER)
        runner = CliRunner()
        dry = runner.invoke(app, ["import", str(path), "--dry-run", "--database-url", url])
        assert dry.exit_code == 0, dry.output
        assert "would create 6 session(s) (10 with branches)" in dry.output
        assert "1 uploads" in dry.output
        done = runner.invoke(app, ["import", str(path), "--verify", "--database-url", url])
        assert done.exit_code == 0, done.output
        assert "created 6 session(s) (10 with branches)" in done.output
        with Threadkeep.open(url) as store:
            assert dump(store) == original


def test_a_branch_whose_parent_is_not_before_it_fails_alone_and_by_its_own_id(
    tmp_path: Path,
) -> None:
    """The JSONL reader, which the archive shares: such a branch once failed
    under the id of the session before it (which had been imported)."""
    from threadkeep.importers import threadkeep_jsonl

    lines = [
        {"format": "threadkeep", "version": 1},
        {"type": "session", "data": {"id": "a", "head_seq": 1}},
        {"type": "message", "data": {"id": "m1", "role": "user", "content": "x", "seq": 1}},
        {"type": "session", "data": {"id": "b", "head_seq": 2, "parent_session_id": "gone"}},
        {"type": "message", "data": {"id": "m2", "role": "user", "content": "y", "seq": 2}},
        {"type": "session", "data": {"id": "c", "head_seq": 0}},
    ]
    path = tmp_path / "orphan.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    items = list(threadkeep_jsonl.read(path, "u"))
    got = [
        (type(i).__name__, getattr(i, "id", None) or getattr(i, "session_id", None)) for i in items
    ]
    assert got == [("ImportedSession", "a"), ("Failed", "b"), ("ImportedSession", "c")]
    assert "branch of gone" in items[1].reason  # type: ignore[union-attr]


def test_a_session_line_that_cannot_be_read_fails_alone_not_the_session_before_it(
    tmp_path: Path,
) -> None:
    """Once, a session line without an id failed the group before it (whole
    and good), under that group's id, and that session was not imported."""
    from threadkeep.importers import threadkeep_jsonl

    lines = [
        {"format": "threadkeep", "version": 1},
        {"type": "session", "data": {"id": "a", "head_seq": 1}},
        {"type": "message", "data": {"id": "m1", "role": "user", "content": "x", "seq": 1}},
        {"type": "session", "data": {"head_seq": 1}},
        {"type": "message", "data": {"id": "m2", "role": "user", "content": "y", "seq": 1}},
        {"type": "session", "data": {"id": "c", "head_seq": 0}},
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    items = list(threadkeep_jsonl.read(path, "u"))
    assert [type(i).__name__ for i in items] == ["ImportedSession", "Failed", "ImportedSession"]
    assert [getattr(i, "id", None) for i in items] == ["a", None, "c"]
    assert items[1].where == "bad.jsonl line 4"  # type: ignore[union-attr]
    assert "missing field 'id'" in items[1].reason  # type: ignore[union-attr]
