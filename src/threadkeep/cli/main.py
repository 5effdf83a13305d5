"""The ``threadkeep`` command: ``app`` is the console-script entry point."""

from __future__ import annotations

import typer
from rich.console import Console

from threadkeep import __version__
from threadkeep.cli import (
    backup,
    cleanup,
    copy,
    doctor,
    imports,
    migrate,
    reindex,
    serve,
    token,
    user,
)

app = typer.Typer(
    name="threadkeep",
    help=(
        "threadkeep: the durable store for AI chat and agent sessions. "
        "Settings come from defaults, the config file, THREADKEEP_* environment "
        "variables and flags, each overriding the one before."
    ),
    no_args_is_help=True,
    add_completion=False,
    # Tracebacks are for bugs; their locals could print a database password.
    pretty_exceptions_show_locals=False,
)

app.command("migrate")(migrate.migrate)
serve.register(app)
doctor.register(app)
token.register(app)
imports.register(app)
cleanup.register(app)
backup.register(app)
copy.register(app)
reindex.register(app)
user.register(app)


@app.command("version")
def version() -> None:
    """Print the threadkeep version and the schema revision it migrates to."""
    from threadkeep.store.migrate import code_head

    Console(highlight=False).print(f"threadkeep {__version__} (schema revision {code_head()})")


if __name__ == "__main__":  # pragma: no cover - `python -m threadkeep.cli` is the way
    app()
