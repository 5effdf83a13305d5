"""Files threadkeep says it kept survive a power cut: their bytes and their names.

A power cut cannot be had here, so each scenario runs in a child process
under fslog.c, an LD_PRELOAD shim that records every directory entry made,
moved or removed and every fsync, in the order they took effect. At each
moment the code under test returned (an ``ack`` line), fslog.py replays the
record and lists every file or directory made under the test's root whose
name (its directory not fsynced since) or bytes (not fsynced since it was
made) a power cut could still take. The list must be empty. The files,
directories and SQLite databases are real; only the cut is inferred.

Before threadkeep/own_files.py, these failed for: a SQLite store's new
data directories, each blob's new fan-out directories, the user export's
final name, a backup's blob files and directories, and the CLI's export and
import-report files.

The last test is a real crash: a blob collector killed while a blob is set
aside must not lose it.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import fs_child
import fslog
import httpx
import preload
import pytest

from threadkeep.blobs.filesystem import FilesystemBlobStore

HERE = Path(__file__).parent
CHILD = HERE / "fs_child.py"

# Scenario -> the acks it must reach, in order.
SCENARIOS = {
    "new-store": ["first append"],
    "uploads": ["first upload", "second upload", "the same bytes again"],
    "kept-by-collect": ["kept"],
    "erasure": ["erased"],
    "collected": ["collected"],
    "export": ["export"],
    "backup-and-restore": ["backup", "restore"],
    "cli-files": ["export --all-users", "export --output", "import --report"],
}


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return preload.build("fslog.c", tmp_path_factory.mktemp("fslog"))


def under_the_shim(shim: Path, tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """The root everything is made under, the record, and the environment
    of a process whose file operations go into it."""
    root = tmp_path / "w"
    root.mkdir()
    log = tmp_path / "fs.log"
    log.touch()
    env = {
        **os.environ,
        "LD_PRELOAD": str(shim),
        "TK_FSLOG": str(log),
        "PYTHONDONTWRITEBYTECODE": "1",
        # Blobs beside the database, whatever the caller's environment says.
        "THREADKEEP_BLOBS__BACKEND": "fs",
    }
    env.pop("THREADKEEP_DATABASE_URL", None)
    return root, log, env


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_what_threadkeep_says_it_kept_is_durable_at_that_moment(
    shim: Path, tmp_path: Path, scenario: str
) -> None:
    root, log, env = under_the_shim(shim, tmp_path)
    done = subprocess.run(
        [sys.executable, str(CHILD), str(root), scenario],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    erased = hashlib.sha256(fs_child.ERASED).hexdigest()
    problems = fslog.replay(log, root, gone=lambda path: erased in path)
    assert list(problems) == SCENARIOS[scenario]
    made = [line for line in log.read_text().splitlines() if str(root) in line]
    assert any(line.startswith(("create ", "rename ")) for line in made), "nothing recorded"
    assert problems == {ack: [] for ack in SCENARIOS[scenario]}


SERVE_ACKS = ["first start: the token shown", "session", "append", "upload"]


def test_what_threadkeep_serve_answered_is_durable_at_that_moment(
    shim: Path, tmp_path: Path
) -> None:
    """The same check through a real ``threadkeep serve`` under the shim, the
    acks being what a user sees: on first start it makes its data
    directory, database, user and token and prints the token, which must be
    kept by then (its hash is what lets it in); then each write the API
    answered 2xx, a file upload included."""
    root, log, env = under_the_shim(shim, tmp_path)
    env["THREADKEEP_DATA_DIR"] = str(root / "data")
    env["THREADKEEP_CONFIG"] = str(tmp_path / "no-config.toml")
    proc = subprocess.Popen(
        [sys.executable, "-m", "threadkeep.cli", "serve", "--port", "0"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base, token, said = _serving(proc)
        assert base and token, said[-3000:]
        fs_child.ack_to(log, SERVE_ACKS[0])
        with httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as c:
            made = c.post("/v1/sessions", json={"title": "kept"})
            assert made.status_code == 201, made.text
            fs_child.ack_to(log, SERVE_ACKS[1])
            sid = made.json()["id"]
            said_ok = c.post(
                f"/v1/sessions/{sid}/messages",
                json={"messages": [{"role": "user", "content": "keep this"}]},
            )
            assert said_ok.status_code == 201, said_ok.text
            fs_child.ack_to(log, SERVE_ACKS[2])
            up = c.post(
                f"/v1/sessions/{sid}/uploads",
                params={"filename": "a.txt"},
                content=b"the bytes of a file sent over HTTP",
            )
            assert up.status_code == 201, up.text
            fs_child.ack_to(log, SERVE_ACKS[3])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()
    problems = fslog.replay(log, root)
    assert list(problems) == SERVE_ACKS
    recorded = [line for line in log.read_text().splitlines() if str(root) in line]
    assert any(line.startswith("rename ") and "-blobs/" in line for line in recorded), recorded
    assert problems == {ack: [] for ack in SERVE_ACKS}


def _serving(proc: subprocess.Popen[str]) -> tuple[str | None, str | None, str]:
    """The URL and token ``threadkeep serve`` printed on first start."""
    assert proc.stdout is not None
    base = token = None
    said = ""
    deadline = time.monotonic() + 60
    while (base is None or token is None) and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        said += line
        if m := re.search(r"serving (http://127\.0\.0\.1:\d+)", line):
            base = m.group(1)
        if m := re.search(r"token: (tk_\S+)", line):
            token = m.group(1)
    return base, token, said


def test_the_replay_finds_a_name_or_bytes_a_power_cut_could_take(tmp_path: Path) -> None:
    """The checker itself: each rule, and what satisfies it."""
    root = tmp_path / "w"
    lines = [
        f"mkdir {root}/a",
        f"create {root}/a/f",
        "ack made",
        f"sync {root}/a/f",
        "ack file synced",
        f"sync {root}",
        f"sync {root}/a",
        "ack all synced",
        f"create {root}/tmp",
        f"sync {root}/tmp",
        f"rename {root}/tmp\t{root}/a/g",
        "ack renamed",
        f"sync {root}/a",
        f"unlink {root}/a/f",
        "ack renamed and synced",
        f"create {root}/a/b-shm",
        f"create {tmp_path}/elsewhere",
        "ack not ours",
    ]
    r = fslog.Replay(str(root))
    for line in lines:
        r.line(line)
    assert r.problems == {
        "made": [
            f"{root}/a: its name is not durable (no fsync of {root} after it)",
            f"{root}/a/f: its name is not durable (no fsync of {root}/a after it)",
            f"{root}/a/f: its bytes were never fsynced",
        ],
        "file synced": [
            f"{root}/a: its name is not durable (no fsync of {root} after it)",
            f"{root}/a/f: its name is not durable (no fsync of {root}/a after it)",
        ],
        "all synced": [],
        "renamed": [f"{root}/a/g: its name is not durable (no fsync of {root}/a after it)"],
        "renamed and synced": [],
        "not ours": [],  # SQLite's -shm, and a file outside the root
    }


def test_the_replay_finds_a_removal_a_power_cut_could_undo(tmp_path: Path) -> None:
    root = tmp_path / "w"
    r = fslog.Replay(str(root), gone=lambda path: "secret" in path)
    for line in [
        f"create {root}/secret",
        f"sync {root}/secret",
        f"sync {root}",
        f"rename {root}/secret\t{root}/tmp/secret-aside",
        f"unlink {root}/tmp/secret-aside",
        f"unlink {root}/other",
        "ack deleted",
        f"sync {root}",
        "ack one directory synced",
        f"sync {root}/tmp",
        "ack both synced",
    ]:
        r.line(line)
    in_root = f"{root}/secret: its removal is not durable (no fsync of {root} after it)"
    aside = f"{root}/tmp/secret-aside: its removal is not durable (no fsync of {root}/tmp after it)"
    assert r.problems == {
        "deleted": [in_root, aside],
        "one directory synced": [aside],
        "both synced": [],
    }


_COLLECTOR = """
import sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from threadkeep.blobs.filesystem import FilesystemBlobStore

blobs = FilesystemBlobStore(sys.argv[1])
calls = []

def referenced(sha256):
    calls.append(sha256)
    if len(calls) == 2:  # the re-check, with the blob set aside
        Path(sys.argv[2]).touch()
        time.sleep(60)
    return False

blobs.collect(referenced, datetime.now(UTC) + timedelta(days=1))
"""


def test_a_collector_killed_with_a_blob_set_aside_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL between setting a blob aside and deciding on it: the next
    open of the store puts it back, and it reads whole."""
    root = tmp_path / "blobs"
    blobs = FilesystemBlobStore(root)
    info = blobs.put([b"an upload a row still names"], max_bytes=1000)
    path = blobs.path(info.sha256)
    aside = tmp_path / "aside"
    child = subprocess.Popen([sys.executable, "-c", _COLLECTOR, str(root), str(aside)])
    try:
        deadline = time.monotonic() + 60
        while not aside.exists():
            assert child.poll() is None, "the collector ended before setting the blob aside"
            assert time.monotonic() < deadline, "the collector never set the blob aside"
            time.sleep(0.01)
        assert not path.exists()  # set aside, as the collector does
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        if child.poll() is None:
            child.kill()
    reopened = FilesystemBlobStore(root)
    assert b"".join(reopened.open(info.sha256)) == b"an upload a row still names"
    assert [p.name for p in reopened.tmp.iterdir()] == []


@pytest.mark.parametrize("used_by_then", [False, True], ids=["still unused", "used by then"])
def test_a_collector_whose_blob_another_process_put_back_decides_again(
    tmp_path: Path, used_by_then: bool
) -> None:
    """Two processes share the directory: one opens the store (and puts back
    what looks abandoned) while the other's collector has the blob aside.
    The collector decides again, so an erasure still deletes an unused blob."""
    blobs = FilesystemBlobStore(tmp_path)
    info = blobs.put([b"shared"], max_bytes=100)
    calls: list[str] = []

    def referenced(sha256: str) -> bool:
        calls.append(sha256)
        if len(calls) == 2:  # the re-check, with the blob set aside
            FilesystemBlobStore(tmp_path)  # the other process, opening
        return used_by_then and len(calls) > 2

    deleted = blobs.collect(referenced, datetime.now(UTC) + timedelta(days=1))
    assert len(calls) == 3  # listed, re-checked aside, re-checked after the put-back
    assert deleted == ([] if used_by_then else [info.sha256])
    assert blobs.exists(info.sha256) == used_by_then
    assert list(blobs.tmp.iterdir()) == []
