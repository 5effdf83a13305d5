"""What ``threadkeep doctor`` asks the database: the settings in force.

Read-only queries, kept here because the store is the only place SQL exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

_SQLITE_SYNCHRONOUS = {0: "off", 1: "normal", 2: "full", 3: "extra"}


def sqlite_file_journal(path: Path) -> str | None:
    """The journal mode recorded in a SQLite file's header, before anything
    opens it: ``wal``, ``rollback`` (delete, truncate, persist...), or None for
    a file too short to have a header yet."""
    try:
        with path.open("rb") as f:
            header = f.read(20)
    except OSError:
        return None
    if len(header) < 20 or not header.startswith(b"SQLite format 3\x00"):
        return None
    # Bytes 18 and 19: file format write/read versions, 2 in WAL mode, 1 otherwise.
    return "wal" if header[18] == 2 else "rollback"


def sqlite_pragmas(conn: sa.Connection) -> dict[str, str]:
    """journal_mode and synchronous on this connection."""
    journal = conn.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    sync = int(conn.exec_driver_sql("PRAGMA synchronous").scalar_one())
    return {
        "journal_mode": str(journal).lower(),
        "synchronous": _SQLITE_SYNCHRONOUS.get(sync, str(sync)),
    }


def current_schema(conn: sa.Connection) -> str | None:
    """The schema this connection creates and finds tables in: the first of
    its search path that exists (None if none does)."""
    value = conn.execute(sa.text("SELECT current_schema()")).scalar()
    return None if value is None else str(value)


def postgres_settings(conn: sa.Connection) -> dict[str, Any]:
    """Server version, the durability settings (on this connection and the
    server's default for others) and connection head-room."""
    rows = conn.execute(
        sa.text(
            "SELECT name, setting, reset_val FROM pg_settings "
            "WHERE name IN ('server_version', 'synchronous_commit', 'fsync', "
            "'max_connections', 'full_page_writes')"
        )
    ).all()
    out: dict[str, Any] = {}
    for name, setting, reset_val in rows:
        out[name] = setting
        out[f"{name}.default"] = reset_val
    out["current_schema"] = current_schema(conn)
    # None over a Unix socket; through a pooler, the server's port, not the URL's.
    out["server_port"] = conn.execute(sa.text("SELECT inet_server_port()")).scalar()
    out["connections"] = int(
        conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity")).scalar_one()
    )
    return out
