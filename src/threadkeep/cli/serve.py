"""``threadkeep serve``: the REST API over the configured database.

On a fresh machine it needs no configuration: it opens (and migrates) the
SQLite file in the user's data dir, binds 127.0.0.1:8765, and on first start
creates a local user and an admin token, printed once with a URL to open.
SIGTERM or Ctrl-C stops it gracefully: the server stops accepting, lets the
requests in flight finish, and only then is the store closed.
"""

from __future__ import annotations

import logging
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console

from threadkeep import __version__
from threadkeep.cli.errors import EXIT_ERROR, print_error, reported_errors
from threadkeep.cli.migrate import DatabaseUrl
from threadkeep.cli.token import ensure_local_user
from threadkeep.config import load_settings
from threadkeep.library import Threadkeep
from threadkeep.model.common import Actor
from threadkeep.store import shown_url
from threadkeep.store.translate import translate_errors

_LOOPBACK = ("127.0.0.1", "localhost", "::1")
log = logging.getLogger("threadkeep.serve")


class _Stopped(Exception):
    """SIGTERM, turned into an exception so the store is closed on the way out."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise _Stopped


def _server(config: Any, on_exit: Callable[[], None]) -> Any:
    """uvicorn's server, telling sync when a shutdown starts: held live
    requests (up to 20 s each) then answer at once instead of holding the
    graceful shutdown until their long poll ends. (uvicorn is imported here, as
    in ``serve``, to keep the other commands quick to start.)"""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            on_exit()
            super().handle_exit(sig, frame)

    return Server(config)


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def serve(
    host: Annotated[
        str | None,
        typer.Option(
            "--host",
            metavar="ADDRESS",
            help=(
                "The address to listen on. Default: THREADKEEP_HOST, the config file, "
                "then 127.0.0.1 (this machine only)."
            ),
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            metavar="PORT",
            help=(
                "The TCP port (0: any free one). Default: THREADKEEP_PORT, the config "
                "file, then 8765."
            ),
            show_default=False,
        ),
    ] = None,
    database_url: DatabaseUrl = None,
    log_level: Annotated[
        str,
        typer.Option(
            "--log-level",
            metavar="LEVEL",
            help="debug, info, warning or error. Logs are JSON lines on stderr.",
        ),
    ] = "info",
) -> None:
    """Serve the REST API (and print a token on first start).

    Migrates the database first. On first start (no users yet) it creates the
    user 'local' and an admin token, and prints them with a URL; the token is
    shown only then. Stop with Ctrl-C or SIGTERM: requests in flight finish first.
    """
    import uvicorn

    from threadkeep.api import create_app
    from threadkeep.api.logs import configure_logging

    out = Console(highlight=False, soft_wrap=True)
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter("use debug, info, warning or error", param_hint="--log-level")
    with reported_errors():
        settings = load_settings(database_url=database_url, host=host, port=port)
    configure_logging(log_level)
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        try:
            sock = _listen(settings.host, settings.port)
        except OSError as exc:
            print_error(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}; "
                "choose another address or port with --host/--port, or stop what uses it"
            )
            raise typer.Exit(EXIT_ERROR) from None
        with sock:
            with reported_errors(), translate_errors():
                tk = Threadkeep.open(settings=settings)
            try:
                bound_port = sock.getsockname()[1]
                base = f"http://{_url_host(settings.host)}:{bound_port}"
                out.print(
                    f"threadkeep {__version__} serving {base} "
                    f"(database: {shown_url(settings.database_url)})",
                    markup=False,
                )
                if settings.host not in _LOOPBACK:
                    out.print(
                        f"note: listening on {settings.host}, not only this machine; "
                        "put a TLS proxy in front before exposing it",
                        markup=False,
                    )
                with reported_errors():
                    _first_start(tk, base, out)
                app = create_app(tk, settings)
                config = uvicorn.Config(
                    app,
                    log_config=None,
                    access_log=False,  # threadkeep logs each request itself, with its id
                    server_header=False,
                    timeout_graceful_shutdown=30,
                )
                server = _server(config, app.state.sync.drain_threadsafe)
                try:
                    server.run(sockets=[sock])
                except (_Stopped, KeyboardInterrupt):
                    # uvicorn has already shut down gracefully and re-raised the
                    # signal it caught; it ends here.
                    pass
            finally:
                tk.close()
                log.info("stopped: requests in flight finished and the store is closed")
    except (_Stopped, KeyboardInterrupt):
        pass  # stopped before serving; the store, if opened, is closed
    finally:
        signal.signal(signal.SIGTERM, previous)


def _first_start(tk: Threadkeep, base: str, out: Console) -> None:
    """On a database with no user, create ``local`` and print an admin token.

    Two instances starting at once on one PostgreSQL database may both find no
    user; the local user's id is fixed, so only one creates it (and prints a
    token) and the other is told that a user already exists.
    """
    if tk.list_users():
        _already_set_up(out)
        return
    user, created = ensure_local_user(tk)
    if not created:
        _already_set_up(out)
        return
    issued = tk.create_token(
        Actor(user.id), "threadkeep serve (first start)", scopes=["admin", "read", "write"]
    ).value
    out.print(
        f"first start: created the user {user.name!r} ({user.id}) and an admin token.",
        markup=False,
    )
    out.print("The token is shown only this once; keep it:", markup=False)
    out.print(f"  token: {issued.token}", markup=False)
    out.print(f"  open:  {base}/?token={issued.token}", markup=False)


def _already_set_up(out: Console) -> None:
    out.print(
        "a user already exists: authenticate with an API token "
        "(Authorization: Bearer tk_...); "
        "create one with `threadkeep token create --name NAME`",
        markup=False,
    )


def register(app: typer.Typer) -> None:
    """Add ``threadkeep serve`` to the root command."""
    app.command("serve")(serve)
