"""Run one scenario of test_file_durability.py under fslog.c.

``python fs_child.py ROOT SCENARIO``: everything is made under ROOT. After
each call that told its caller the work was done, an ``ack <label>`` line
goes into the record ($TK_FSLOG), where the test checks what a power cut
could still have taken at that moment.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from threadkeep import Actor, Threadkeep

# The bytes the erasure and collection scenarios delete (the test watches
# every name they had).
ERASED = b"bytes that must not come back"


def ack(label: str) -> None:
    ack_to(os.environ["TK_FSLOG"], label)


def ack_to(log: str | os.PathLike[str], label: str) -> None:
    """One ``ack`` line, appended after everything the record holds so far
    (the test's own process writes it when a server it watches answered)."""
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"ack {label}\n".encode())
    finally:
        os.close(fd)


def store_with_an_upload(root: Path) -> tuple[Threadkeep, Actor, str]:
    tk = Threadkeep.open(f"sqlite:///{root}/tk.db")
    user = tk.create_user("ada").value
    actor = Actor(user.id)
    session = tk.create_session(actor, title="notes").value.id
    tk.append_message(actor, session, {"role": "user", "content": "keep this"})
    tk.upload(actor, session, [b"the bytes of a file"], filename="a.txt")
    return tk, actor, session


def new_store(root: Path) -> None:
    tk = Threadkeep.open(f"sqlite:///{root}/data/deep/tk.db")
    actor = Actor(tk.create_user("ada").value.id)
    session = tk.create_session(actor).value.id
    tk.append_message(actor, session, {"role": "user", "content": "hello"})
    ack("first append")
    tk.close()


def uploads(root: Path) -> None:
    tk = Threadkeep.open(f"sqlite:///{root}/tk.db")
    actor = Actor(tk.create_user("ada").value.id)
    first, second = (tk.create_session(actor).value.id for _ in range(2))
    tk.upload(actor, first, [b"first file"], filename="a.txt")
    ack("first upload")
    tk.upload(actor, first, [b"second file"], filename="b.txt")
    ack("second upload")
    tk.upload(actor, second, [b"first file"], filename="a-again.txt")
    ack("the same bytes again")
    tk.close()


def kept_by_collect(root: Path) -> None:
    """A collector that sets a blob aside and finds it referenced puts it back."""
    from threadkeep.blobs.filesystem import FilesystemBlobStore

    blobs = FilesystemBlobStore(root / "blobs")
    info = blobs.put([b"still wanted"], max_bytes=100)
    path = blobs.path(info.sha256)
    old = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    os.utime(path, (old, old))
    checks = iter([False, True])  # unused when listed; referenced by the time it is aside
    deleted = blobs.collect(lambda _: next(checks), datetime.now(UTC) - timedelta(days=1))
    assert deleted == [] and path.exists(), deleted
    ack("kept")


def erasure(root: Path) -> None:
    """The erased user's blob must not come back (its bytes: ERASED)."""
    tk = Threadkeep.open(f"sqlite:///{root}/tk.db")
    actor = Actor(tk.create_user("ada").value.id)
    session = tk.create_session(actor).value.id
    tk.upload(actor, session, [ERASED], filename="private.txt")
    tk.erase_user(actor.user_id)
    ack("erased")
    tk.close()


def collected(root: Path) -> None:
    """A deleted upload's blob, once collected, must not come back."""
    tk = Threadkeep.open(f"sqlite:///{root}/tk.db")
    actor = Actor(tk.create_user("ada").value.id)
    session = tk.create_session(actor).value.id
    upload = tk.upload(actor, session, [ERASED], filename="old.txt").value
    tk.delete_upload(actor, upload.id)
    assert len(tk.collect_garbage(grace_seconds=0)) == 1
    ack("collected")
    tk.close()


def export(root: Path) -> None:
    tk, actor, _ = store_with_an_upload(root)
    tk.export_user(actor.user_id, root / "export.zip")
    ack("export")
    tk.close()


def backup_and_restore(root: Path) -> None:
    from threadkeep.backup import backup_store, restore_store
    from threadkeep.config import load_settings

    tk, _, _ = store_with_an_upload(root)
    backup_store(tk, root / "backups" / "monday")
    ack("backup")
    tk.close()
    restore_store(
        root / "backups" / "monday",
        settings=load_settings(database_url=f"sqlite:///{root}/restored/tk.db"),
    )
    ack("restore")


def cli_files(root: Path) -> None:
    from typer.testing import CliRunner

    from threadkeep.cli.main import app

    tk, actor, _ = store_with_an_upload(root)
    tk.close()
    url = ["--database-url", f"sqlite:///{root}/tk.db"]
    runner = CliRunner()

    def cli(*args: str) -> None:
        done = runner.invoke(app, [*args, *url], catch_exceptions=False)
        assert done.exit_code == 0, done.output

    cli("export", "--all-users", "--output", str(root / "exports" / "everyone"))
    ack("export --all-users")
    cli("export", "--user", actor.user_id, "--output", str(root / "ada.jsonl"))
    ack("export --output")
    source = root.parent / "history.json"  # the user's file, not one threadkeep makes
    chat = {"id": 7, "title": "old", "messages": [{"role": "user", "content": "from an old app"}]}
    source.write_text(json.dumps(chat))
    report = str(root / "report.json")
    cli(
        "import",
        str(source),
        "--format",
        "legacy-json",
        "--user",
        actor.user_id,
        "--report",
        report,
    )
    ack("import --report")


SCENARIOS = {
    f.__name__.replace("_", "-"): f
    for f in (
        new_store,
        uploads,
        kept_by_collect,
        erasure,
        collected,
        export,
        backup_and_restore,
        cli_files,
    )
}

if __name__ == "__main__":
    SCENARIOS[sys.argv[2]](Path(sys.argv[1]))
