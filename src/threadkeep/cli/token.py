"""``threadkeep token create/list/revoke``: manage API tokens.

A token is printed once, when created; the database keeps only its hash.
These commands act on the database directly (whoever may open it is an
administrator), so they need no token themselves.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from threadkeep.cli.errors import reported_errors
from threadkeep.cli.migrate import DatabaseUrl, missing_sqlite_file
from threadkeep.config import load_settings
from threadkeep.errors import AlreadyExists, InvalidInput, StoreError
from threadkeep.library import Threadkeep
from threadkeep.model.common import Actor, utcnow
from threadkeep.model.users import User
from threadkeep.service.tokens import ApiToken
from threadkeep.store.translate import translate_errors

#: The name of the user ``threadkeep serve`` creates on first start.
LOCAL_USER = "local"
#: Its id, fixed and well known: when two processes (two ``serve`` instances on
#: one PostgreSQL, or ``serve`` and ``token create``) find no user at once, only
#: one insert succeeds and the other finds that user instead of making a second.
LOCAL_USER_ID = "local"

app = typer.Typer(
    name="token",
    help=(
        "Create, list and revoke API tokens. A token is shown once, when created; "
        "the database keeps only its hash."
    ),
    no_args_is_help=True,
)

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``15m``, ``12h``, ``30d``, ``2w`` -> a timedelta."""
    m = re.fullmatch(r"\s*(\d{1,6})\s*([smhdw])\s*", text)
    if m is None or int(m.group(1)) == 0:
        raise typer.BadParameter(
            f"{text!r} is not a duration; use a number and a unit: 90s, 15m, 12h, 30d, 2w"
        )
    return timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})


def open_store(database_url: str | None, *, existing: bool = False) -> Threadkeep:
    """The store the settings name, migrated. ``existing``: for a command that
    reads a store (backup, export, a list...), a SQLite file that does not
    exist is an error, where opening would make an empty one, and the
    command would then report on nothing as if all were well (a backup of a
    mistyped path, every night)."""
    settings = load_settings(database_url=database_url)
    if existing and (missing := missing_sqlite_file(settings.database_url)) is not None:
        raise StoreError(
            f"{missing} does not exist: there is no threadkeep database there; check "
            "--database-url or THREADKEEP_DATABASE_URL (`threadkeep migrate` makes a new one)"
        )
    with translate_errors():
        return Threadkeep.open(settings=settings)


def ensure_local_user(tk: Threadkeep) -> tuple[User, bool]:
    """The only user, or a new ``local`` one when there is none (True: created).

    Raises:
        InvalidInput: several users exist, so which one is meant is unclear.
    """
    users = tk.list_users()
    if not users:
        try:
            return tk.create_user(LOCAL_USER, id=LOCAL_USER_ID).value, True
        except AlreadyExists:
            # Another process created it between list_users and here.
            return tk.get_user(LOCAL_USER_ID), False
    if len(users) == 1:
        return users[0], False
    known = ", ".join(f"{u.id} ({u.name})" for u in users)
    raise InvalidInput("user", f"there are several users; pass --user with one of: {known}")


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _status(token: ApiToken) -> str:
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= utcnow():
        return "expired"
    return "active"


@app.command("create")
def create(
    name: Annotated[
        str,
        typer.Option(
            "--name", metavar="NAME", help="What the token is for (shown by `token list`)."
        ),
    ],
    scopes: Annotated[
        str,
        typer.Option(
            "--scopes",
            metavar="SCOPES",
            help="Comma-separated: read (GET routes), write (changes), admin (tokens).",
        ),
    ] = "read,write",
    expires_in: Annotated[
        str | None,
        typer.Option(
            "--expires-in",
            metavar="DURATION",
            help="Expire after this long: 90s, 15m, 12h, 30d, 2w. Default: never.",
            show_default=False,
        ),
    ] = None,
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            metavar="ID",
            help=(
                "The user id the token acts for. Default: the only user (created as "
                "'local' when there is none)."
            ),
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API token and print it (the only time it is shown)."""
    out = Console(highlight=False, soft_wrap=True)
    lifetime = parse_duration(expires_in) if expires_in is not None else None
    with reported_errors():
        tk = open_store(database_url)
        try:
            if user is not None:
                owner, created = tk.get_user(user), False
            else:
                owner, created = ensure_local_user(tk)
            expires_at = utcnow() + lifetime if lifetime is not None else None
            issued = tk.create_token(
                Actor(owner.id), name, scopes=scopes, expires_at=expires_at
            ).value
        finally:
            tk.close()
    if created:
        out.print(f"created the user {owner.name!r} ({owner.id})", markup=False)
    out.print(
        f"created token {issued.id} {issued.name!r} for user {owner.name!r} ({owner.id}); "
        f"scopes: {', '.join(s.value for s in issued.scopes)}; "
        f"expires: {_when(issued.expires_at) if issued.expires_at else 'never'}",
        markup=False,
    )
    out.print("The token is shown only this once; keep it:", markup=False)
    # Alone on the last line, so a script can take it with `tail -n 1`.
    typer.echo(issued.token)


@app.command("list")
def list_tokens(
    user: Annotated[
        str | None,
        typer.Option("--user", metavar="ID", help="Only this user's tokens.", show_default=False),
    ] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List API tokens (never the tokens themselves: only their ids and details)."""
    with reported_errors():
        tk = open_store(database_url, existing=True)
        try:
            users = {u.id: u for u in tk.list_users()}
            tokens = (
                tk.list_tokens(Actor(tk.get_user(user).id))
                if user is not None
                else tk.list_all_tokens()
            )
        finally:
            tk.close()
    out = Console(highlight=False)
    if not tokens:
        out.print("no tokens; create one with `threadkeep token create --name NAME`", markup=False)
        return
    table = Table("id", "name", "user", "scopes", "status", "created", "expires", "last used")
    for t in tokens:
        owner = users.get(t.user_id)
        table.add_row(
            t.id,
            t.name,
            owner.name if owner else t.user_id,
            ",".join(s.value for s in t.scopes),
            _status(t),
            _when(t.created_at),
            _when(t.expires_at),
            _when(t.last_used_at),
        )
    out.print(table)


@app.command("revoke")
def revoke(
    token_id: Annotated[
        str, typer.Argument(metavar="ID", help="The token's id (see `token list`).")
    ],
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke an API token: it stops working at once."""
    with reported_errors():
        tk = open_store(database_url, existing=True)
        try:
            found = tk.find_token(token_id)
            revoked = tk.revoke_token(Actor(found.user_id), token_id).value
        finally:
            tk.close()
    Console(highlight=False, soft_wrap=True).print(
        f"revoked token {revoked.id} {revoked.name!r}", markup=False
    )


def register(root: typer.Typer) -> None:
    """Add ``threadkeep token ...`` to the root command."""
    root.add_typer(app, name="token")
