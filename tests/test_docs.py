"""The docs are tested too: the CLI reference is current, every command and
option explains itself, and the code in README.md and docs/migrating.md runs."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer

from threadkeep import Actor, InvalidInput, Threadkeep
from threadkeep.cli.main import app

ROOT = Path(__file__).resolve().parent.parent


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def walk(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from walk(sub, (*path, name))


COMMANDS = list(walk(typer.main.get_command(app)))
COMMAND_IDS = [" ".join(path) or "root" for path, _ in COMMANDS]


def code_blocks(path: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", path.read_text(encoding="utf-8"), re.M | re.S)


# --- the CLI reference ---------------------------------------------------------


def test_cli_reference_is_generated_from_the_current_help() -> None:
    expected = load_script("gen_cli_docs").render()
    actual = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")

    assert actual == expected, "docs/cli.md is stale: run `make gen`"


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=COMMAND_IDS)
def test_every_command_has_help_and_a_section_in_the_reference(
    path: tuple[str, ...], cmd: Any
) -> None:
    assert (cmd.help or "").strip(), f"threadkeep {' '.join(path)} has no help text"
    heading = "## `" + " ".join(["threadkeep", *path]) + "`"
    assert heading in (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=COMMAND_IDS)
def test_every_option_and_argument_has_help(path: tuple[str, ...], cmd: Any) -> None:
    for param in cmd.params:
        assert (getattr(param, "help", None) or "").strip(), (
            f"threadkeep {' '.join(path)}: {param.name} has no help text"
        )


# --- README --------------------------------------------------------------------


def test_readme_set_up_has_exactly_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    set_up = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^```sh\n(.*?)^```", set_up, re.M | re.S)

    assert [c.strip() for c in commands] == [
        "make venv && .venv/bin/threadkeep serve",
        "make test",
    ]


def test_readme_links_point_at_files_that_exist() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#]+)\)", readme):
        if "://" not in target:
            assert (ROOT / target).exists(), target


@pytest.mark.parametrize("index", range(len(code_blocks(ROOT / "README.md", "python"))))
def test_readme_python_example_runs(index: int, tmp_path: Path) -> None:
    code = code_blocks(ROOT / "README.md", "python")[index]
    env = {
        **os.environ,
        "THREADKEEP_CONFIG": str(tmp_path / "no-config.toml"),
        "THREADKEEP_DATA_DIR": str(tmp_path / "data"),
        "PYTHONWARNINGS": "error",
    }
    env.pop("THREADKEEP_DATABASE_URL", None)

    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert (tmp_path / "chats.db").exists()


# --- docs/migrating.md -----------------------------------------------------------


@pytest.fixture
def migrating_guide() -> dict[str, Any]:
    """The guide's Python blocks, run as one module (its __main__ part skipped)."""
    namespace: dict[str, Any] = {"__name__": "migrating_guide"}
    code = "\n\n".join(code_blocks(ROOT / "docs" / "migrating.md", "python"))
    exec(compile(code, "docs/migrating.md", "exec"), namespace)
    return namespace


def write_chats(folder: Path) -> None:
    folder.mkdir()
    sample = json.loads(code_blocks(ROOT / "docs" / "migrating.md", "json")[0])
    (folder / "42.json").write_text(json.dumps(sample))
    long_chat = {
        "id": "7",
        "messages": [
            {"role": "human" if i % 2 == 0 else "bot", "content": f"turn {i}"} for i in range(1203)
        ],
    }
    (folder / "7.json").write_text(json.dumps(long_chat))


def test_migrating_guide_importer_is_idempotent(
    tk: Threadkeep, migrating_guide: dict[str, Any], tmp_path: Path
) -> None:
    g = migrating_guide
    write_chats(tmp_path / "chats")
    me = g["get_or_create_user"](tk, "ada", "Ada")

    assert g["import_chats"](tk, me, g["read_json_files"](tmp_path / "chats")) == 2
    # A second run (after a crash, or to pick up new turns) writes nothing new.
    assert g["import_chats"](tk, me, g["read_json_files"](tmp_path / "chats")) == 2
    assert g["get_or_create_user"](tk, "ada", "Ada") == me

    trip = tk.get_history(me, "legacy-42")
    assert [(m.seq, m.role, m.content) for m in trip] == [
        (1, "user", "Where should we go in May?"),
        (2, "assistant", "Lisbon is lovely in May."),
    ]
    assert trip[0].metadata == {"original_time": "2024-04-01T09:00:00Z"}
    assert tk.get_session(me, "legacy-42").title == "Trip plans"
    assert tk.count_messages(me, "legacy-7") == 1203
    assert [m.content for m in tk.last_messages(me, "legacy-7", 2)] == ["turn 1201", "turn 1202"]


def test_migrating_guide_unknown_role_names_the_field(
    tk: Threadkeep, migrating_guide: dict[str, Any]
) -> None:
    g = migrating_guide
    me = g["get_or_create_user"](tk, "ada", "Ada")
    chat = {"id": "9", "messages": [{"role": "user", "content": "a"}, {"role": "robot"}]}

    with pytest.raises(InvalidInput, match=r"messages\[1\]\.role"):
        g["import_chat"](tk, me, chat)
    assert tk.count_messages(me, "legacy-9") == 0


def test_migrating_guide_local_storage_and_dict_replacement(
    tk: Threadkeep, actor: Actor, migrating_guide: dict[str, Any], tmp_path: Path
) -> None:
    g = migrating_guide
    dump = tmp_path / "chats.json"
    dump.write_text(
        json.dumps({"a1": {"id": "a1", "messages": [{"role": "user", "content": "hello"}]}})
    )

    assert g["import_chats"](tk, actor, g["read_local_storage_dump"](dump)) == 1
    assert tk.count_messages(actor, "legacy-a1") == 1

    session = tk.create_session(actor, title="live").value
    first = g["on_user_message"](tk, actor, session.id, "hi", "req-1")
    retried = g["on_user_message"](tk, actor, session.id, "hi", "req-1")
    assert [m.content for m in first] == ["hi"]
    assert retried == first
