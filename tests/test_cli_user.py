"""``threadkeep user export`` and ``threadkeep user erase`` on both engines."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner, Result

from threadkeep import Actor, Threadkeep
from threadkeep.cli.main import app

pytestmark = pytest.mark.usefixtures("isolated_settings")


def run(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(app, list(args), prog_name="threadkeep", input=input)


def test_export_then_erase_with_confirmation(db_url: str, tmp_path: Path) -> None:
    with Threadkeep.open(db_url) as tk:
        me = Actor(tk.create_user("ada", id="ada").value.id)
        sid = tk.create_session(me, title="t").value.id
        tk.append_message(me, sid, {"role": "user", "content": "hello"})
        tk.upload(me, sid, [b"bytes"], filename="f.txt")
        tk.create_user("bob", id="bob")

    dest = tmp_path / "ada.zip"
    got = run("user", "export", "ada", str(dest), "--database-url", db_url)
    assert got.exit_code == 0, got.output
    assert "exported user ada: 4 rows and 1 blobs" in got.output
    with zipfile.ZipFile(io.BytesIO(dest.read_bytes())) as zf:
        manifest = orjson.loads(zf.read("manifest.json"))
    assert manifest["counts"]["messages"] == 1 and manifest["counts"]["uploads"] == 1

    declined = run("user", "erase", "ada", "--database-url", db_url, input="n\n")
    assert declined.exit_code == 1 and "nothing was erased" in declined.output
    assert "1 messages" in declined.output and "cannot be undone" in declined.output
    with Threadkeep.open(db_url) as tk:
        assert tk.user_row_counts("ada")["messages"] == 1

    erased = run("user", "erase", "ada", "--database-url", db_url, input="y\n")
    assert erased.exit_code == 0, erased.output
    assert "erased user ada:" in erased.output and "1 blobs" in erased.output
    with Threadkeep.open(db_url) as tk:
        assert set(tk.user_row_counts("ada").values()) == {0}
        assert tk.get_user("bob").name == "bob"

    again = run("user", "erase", "ada", "--yes", "--database-url", db_url)
    assert again.exit_code == 2 and "user" in again.output and "ada" in again.output
    missing = run("user", "export", "nobody", str(tmp_path / "n.zip"), "--database-url", db_url)
    assert missing.exit_code == 2 and "nobody" in missing.output
    assert not (tmp_path / "n.zip").exists()


def test_create_list_then_restore_an_erased_user_from_its_archive(
    db_url: str, tmp_path: Path
) -> None:
    """The way back from a mistaken erasure, by the command line alone:
    export, erase, create the user again under its id, import the archive."""
    made = run("user", "create", "Ada", "--id", "ada", "--database-url", db_url)
    assert made.exit_code == 0 and made.output.strip() == "ada", made.output
    with Threadkeep.open(db_url) as tk:
        me = Actor("ada")
        sid = tk.create_session(me, title="kept").value.id
        tk.append_message(me, sid, {"role": "user", "content": "hello"})
        tk.upload(me, sid, [b"bytes"], filename="f.txt")
    listed = run("user", "list", "--database-url", db_url)
    assert listed.exit_code == 0 and "ada" in listed.output and "Ada" in listed.output
    taken = run("user", "create", "Other", "--id", "ada", "--database-url", db_url)
    assert taken.exit_code == 2 and "ada" in taken.output, taken.output
    bad = run("user", "create", "", "--database-url", db_url)
    assert bad.exit_code == 2 and "name" in bad.output, bad.output

    archive = tmp_path / "ada.zip"
    assert run("user", "export", "ada", str(archive), "--database-url", db_url).exit_code == 0
    assert run("user", "erase", "ada", "--yes", "--database-url", db_url).exit_code == 0
    assert run("user", "create", "Ada", "--id", "ada", "--database-url", db_url).exit_code == 0
    back = run("import", str(archive), "--user", "ada", "--verify", "--database-url", db_url)
    assert back.exit_code == 0, back.output
    with Threadkeep.open(db_url) as tk:
        me = Actor("ada")
        assert [m.content for m in tk.get_history(me, sid)] == ["hello"]
        (upload,) = tk.list_uploads(me, sid)
        assert tk.open_upload(me, upload.id).read() == b"bytes"
