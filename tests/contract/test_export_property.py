"""Export, then import into another store, is lossless whatever was written.

tests/importers/test_roundtrip.py shows it for one hand-made user. Here the
user's data comes from random sequences of every kind of write
(random_writes.py): branches of rewound branches, re-parented forks, purges,
retention, streams left open, refused writes. The threadkeep JSONL export of
that user, imported into a second database on the same engine, must hold the
same rows in every synced table (but which transaction wrote them), and
exporting it again must give the same lines.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given

from conftest import create_pg_database, db_property, drop_pg_database
from random_writes import STEPS, make_world
from threadkeep import Actor, Threadkeep
from threadkeep.config import BlobSettings
from threadkeep.exporters import export
from threadkeep.importers import FORMATS, import_source, run_import
from threadkeep.store import tables


@pytest.fixture
def second(db_url: str, tmp_path: Path) -> Iterator[Threadkeep]:
    """An empty database beside ``db_url``'s, on the same engine."""
    url = db_url.replace("threadkeep.db", "second.db")
    if url == db_url:  # PostgreSQL: a fresh database of its own
        url = create_pg_database()
    try:
        with Threadkeep.open(url) as tk:
            yield tk
    finally:
        if not url.startswith("sqlite"):
            drop_pg_database(url)


def _rows(tk: Threadkeep, owner_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every synced row of one user, by table, without the writing txid."""
    out: dict[str, list[dict[str, Any]]] = {}
    with tk.engine.sa_engine.connect() as conn:
        for name in tables.SYNCED_TABLES:
            t = tables.metadata.tables[name]
            got = conn.execute(sa.select(t).where(t.c.owner_id == owner_id).order_by(t.c.id))
            out[name] = [{k: v for k, v in r.items() if k != "txid"} for r in got.mappings()]
    return out


def _exported(tk: Threadkeep, actor: Actor) -> str:
    buf = io.StringIO()
    export(tk, actor, buf, format="jsonl")
    return buf.getvalue()


@db_property(max_examples=30)
@given(steps=STEPS)
def test_an_export_imported_into_another_store_holds_the_same_rows(
    tk: Threadkeep, second: Threadkeep, tmp_path: Path, steps: list[tuple[str, list[int]]]
) -> None:
    world = make_world(tk, tmp_path)
    for op, numbers in steps:
        world.run(op, numbers)
    me = world.me
    text = _exported(world.tk, me)
    path = tmp_path / f"{me.user_id}.jsonl"
    path.write_text(text, encoding="utf-8")

    # The same user in the second store, sharing the blob directory: the export
    # holds the uploads' metadata, and an operator copies the bytes beside it.
    there = Threadkeep(second.engine, second.limits, blobs=world.tk.blob_settings)
    there.create_user("replay", id=me.user_id)
    items = FORMATS["threadkeep"].read(path, me.user_id)
    report = run_import(there, me, items, format="threadkeep", path=str(path), verify=True)
    assert (report.failed, report.skipped) == ([], []), steps
    assert report.verified is not False, steps
    assert _rows(there, me.user_id) == _rows(world.tk, me.user_id), steps
    assert _exported(there, me).splitlines()[1:] == text.splitlines()[1:], steps


@db_property(max_examples=25)
@given(steps=STEPS)
def test_a_user_archive_imported_into_another_store_holds_the_same_rows_and_bytes(
    tk: Threadkeep, second: Threadkeep, tmp_path: Path, steps: list[tuple[str, list[int]]]
) -> None:
    """The same, through the user archive (``export_user``, then
    ``threadkeep import ARCHIVE.zip``): the second store has a blob directory
    of its own, so every upload's bytes must come from the archive."""
    world = make_world(tk, tmp_path / "first")
    for op, numbers in steps:
        world.run(op, numbers)
    me = world.me
    archive = tmp_path / f"{me.user_id}.zip"
    world.tk.export_user(me.user_id, archive)

    there = Threadkeep(
        second.engine, second.limits, blobs=BlobSettings(backend="fs", path=str(tmp_path / "b"))
    )
    there.create_user("replay", id=me.user_id)
    report = import_source(there, me, archive, "threadkeep-archive", verify=True)
    assert report.failed == [], steps
    assert all("not imported" in r and ("account" in r or "token" in r) for _, r in report.skipped)
    assert report.verified is not False, steps
    assert _rows(there, me.user_id) == _rows(world.tk, me.user_id), steps
    for upload in _rows(there, me.user_id)["uploads"]:
        assert b"".join(there.blobs.open(upload["sha256"])) == b"".join(
            world.tk.blobs.open(upload["sha256"])
        )
