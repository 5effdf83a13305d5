"""The store: the only place SQL exists. ``open_engine`` picks the engine from
the URL and brings the schema up to date."""

from __future__ import annotations

import sqlalchemy as sa

from threadkeep.errors import StoreError
from threadkeep.store.contract import StoreEngine, WriteTx


def shown_url(url: str) -> str:
    """``url`` without its password, fit to print or log."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        return url
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def open_engine(
    url: str, *, migrate: bool = True, pool_size: int = 10, max_overflow: int = 20
) -> StoreEngine:
    """Open the database at ``url`` (``sqlite:///...`` or ``postgresql://...``).
    ``pool_size`` and ``max_overflow`` size PostgreSQL's two connection sets
    (config.PoolSettings); SQLite has one writer and a reader per thread."""
    from threadkeep.store import migrate as migrations
    from threadkeep.store.translate import translate_errors

    engine: StoreEngine
    if url.startswith("sqlite"):
        from threadkeep.store.sqlite import SqliteStore

        # Its first connection switches the file to WAL, which writes: a
        # full disk or an unopenable file is a threadkeep error from here.
        with translate_errors():
            engine = SqliteStore(url)
    elif url.startswith(("postgresql", "postgres")):
        from threadkeep.store.postgres import PostgresStore

        engine = PostgresStore(url, pool_size=pool_size, max_overflow=max_overflow)
    else:
        raise StoreError(
            f"unsupported database URL {url!r}: use sqlite:///path/to/file.db or "
            "postgresql://user@host/dbname"
        )
    try:
        with translate_errors():
            if migrate:
                migrations.upgrade(engine.sa_engine)
            else:
                with engine.sa_engine.connect() as conn:
                    migrations.check_not_newer(conn)
    except BaseException:
        engine.close()
        raise
    return engine


__all__ = ["StoreEngine", "WriteTx", "open_engine", "shown_url"]
