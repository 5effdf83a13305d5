"""Errors -> exit codes and one red line on stderr; the CLI's only error mapping.

Exit codes:

* 0: done;
* 1: a check found something to do (``threadkeep migrate --check``);
* 2: threadkeep could not do what was asked (a :class:`ThreadkeepError`, such
  as :class:`SchemaTooNew`, or invalid settings); the message says why and
  what to do. Click's usage errors (a bad option) also exit 2.

Anything else is a bug in threadkeep and keeps its traceback.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from contextlib import contextmanager

import pydantic
import sqlalchemy.exc as sa_exc
import typer
from rich.console import Console
from rich.text import Text

from threadkeep.errors import StoreError, ThreadkeepError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_ERROR = 2

_CONNECT_HINT = (
    "check that the database server is running and that the database URL "
    "(--database-url or THREADKEEP_DATABASE_URL) is right"
)


def _one_line(text: str) -> str:
    # SQLAlchemy appends "(Background on this error at: ...)" on its own line.
    lines = [ln.strip() for ln in text.splitlines()]
    return " ".join(ln for ln in lines if ln and not ln.startswith("(Background on this error"))


def describe(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and the message for an error a user can act on; None for a bug."""
    if isinstance(exc, ThreadkeepError):
        message = _one_line(str(exc))
        if isinstance(exc, StoreError) and isinstance(exc.__cause__, sa_exc.OperationalError):
            message = f"{message}; {_CONNECT_HINT}"
        return EXIT_ERROR, message
    if isinstance(exc, pydantic.ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or exc.title
        env = "THREADKEEP_" + "__".join(str(p) for p in err["loc"]).upper()
        return EXIT_ERROR, (
            f"invalid setting {where}: {err['msg']} (check {env} and the config file)"
        )
    if isinstance(exc, tomllib.TOMLDecodeError):
        return EXIT_ERROR, f"the config file is not valid TOML: {_one_line(str(exc))}"
    return None


def print_error(message: str) -> None:
    # soft_wrap: one line however long, so it can be grepped and copied whole.
    Console(stderr=True, soft_wrap=True, highlight=False).print(
        Text.assemble(("Error: ", "bold red"), (message, "red"))
    )


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn an error the user can act on into its message and exit code."""
    try:
        yield
    except Exception as exc:
        described = describe(exc)
        if described is None:
            raise
        code, message = described
        print_error(message)
        raise typer.Exit(code) from None
