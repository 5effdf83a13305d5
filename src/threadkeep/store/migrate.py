"""Applying the schema: Alembic, run when a store opens and by `threadkeep migrate`.

Each engine takes its own lock for the whole migration (PostgreSQL: a
transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``), and DDL is
transactional on both, so concurrent openers migrate once and a failed
migration leaves the previous schema intact.

Before anything is written, the database is checked for another
application's tables where threadkeep's would go: its ``alembic_version``,
or tables named like threadkeep's. Migrating there would fail halfway
through DDL at best, and at worst write threadkeep's revision into the
application's version table, which its own ``alembic upgrade`` could then
no longer read. Either is refused with a way out: a schema of threadkeep's
own (``?schema=``, store/pg_url.py), which is created here when missing.
"""

from __future__ import annotations

import logging
from importlib.resources import files

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from threadkeep.errors import SchemaInUse, SchemaTooNew, StoreError
from threadkeep.store import diagnostics, pg_url
from threadkeep.store.tables import metadata

log = logging.getLogger(__name__)

# Any constant will do; it names threadkeep's migration lock on PostgreSQL.
_PG_LOCK_KEY = 0x7468_6B65_6570  # "thkeep"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("threadkeep.store") / "migrations"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def code_head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    script = ScriptDirectory.from_config(alembic_config())
    return {rev.revision for rev in script.walk_revisions()}


def database_revision(conn: sa.Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def check_not_newer(conn: sa.Connection) -> str | None:
    """The database's revision. Raises SchemaTooNew for a newer threadkeep's,
    SchemaInUse when the version table or the tables are another
    application's."""
    current = database_revision(conn)
    if current is not None and current not in known_revisions():
        # log_state is threadkeep's own bookkeeping: its version table beside it
        # is a newer threadkeep's, not an application's.
        if "log_state" in sa.inspect(conn).get_table_names():
            raise SchemaTooNew(current, code_head())
        raise SchemaInUse(
            _where(conn),
            f"its alembic_version holds another application's revision {current!r}",
            sqlite=conn.dialect.name == "sqlite",
        )
    if current is None:
        present = set(sa.inspect(conn).get_table_names())
        taken = sorted(present & set(metadata.tables))
        if taken:
            raise SchemaInUse(
                _where(conn),
                f"it already has tables named {', '.join(taken)} (not threadkeep's)",
                sqlite=conn.dialect.name == "sqlite",
            )
    return current


def _where(conn: sa.Connection) -> str:
    """The schema (PostgreSQL) or file (SQLite) being checked, for messages."""
    if conn.dialect.name == "sqlite":
        return f"the database file {conn.engine.url.database}"
    schema = diagnostics.current_schema(conn)
    return f"schema {schema!r} of database {conn.engine.url.database!r}"


def ensure_schema(conn: sa.Connection, schema: str) -> None:
    """Create ``schema`` if it is missing (in the caller's transaction, under
    the migration lock). An existing schema needs no privilege to create it,
    so an administrator may create it for a role that cannot."""
    exists = conn.execute(
        sa.text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}
    ).first()
    if exists is None:
        try:
            with conn.begin_nested():
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        except sa.exc.ProgrammingError as exc:
            user = conn.execute(sa.text("SELECT current_user")).scalar()
            raise StoreError(
                f"schema {schema!r} does not exist and the role {user!r} may not create "
                f"it ({str(exc.orig).splitlines()[0]}); as an administrator, run: "
                f'CREATE SCHEMA "{schema}" AUTHORIZATION "{user}"'
            ) from None
    # The search path comes from libpq's startup ``options``, which a pooler
    # may drop (PgBouncer refuses them, or ignores them when told to): then
    # every statement would silently run in the server's default schema.
    used = diagnostics.current_schema(conn)
    if used != schema:
        raise StoreError(
            f"the database URL names schema {schema!r} but its connections use {used!r}: "
            "the search path threadkeep sets when connecting did not reach the server "
            "(a pooler such as PgBouncer drops libpq's options); behind a transaction "
            "pooler add ?pgbouncer=true to the URL, or connect to PostgreSQL directly "
            "(docs/postgresql.md)"
        )


def _warn_of_a_store_in_public(conn: sa.Connection, schema: str) -> None:
    """A new store in ``schema`` while ``public`` holds one with sessions: most
    likely a deployment that added ?schema= to its URL and now sees an empty
    store. Nothing is lost (the old store is untouched), but say so, and how
    to move it."""
    found = conn.execute(
        sa.text(
            "SELECT to_regclass('public.log_state') IS NOT NULL "
            "AND to_regclass('public.alembic_version') IS NOT NULL "
            "AND to_regclass('public.sessions') IS NOT NULL"
        )
    ).scalar()
    if not found:
        return
    revision = conn.execute(sa.text("SELECT version_num FROM public.alembic_version")).scalar()
    if revision not in known_revisions():
        return
    sessions = conn.execute(sa.text("SELECT count(*) FROM public.sessions")).scalar()
    if not sessions:
        return
    log.warning(
        "creating an empty threadkeep store in schema %r, while schema 'public' of this "
        "database holds a threadkeep store with %d session(s), left as it is. If you meant "
        "to keep using that one, remove ?schema= from the URL; to move it into %r, run "
        "`threadkeep copy` from the old URL to the new one (docs/postgresql.md)",
        schema,
        sessions,
        schema,
    )


def upgrade(engine: sa.Engine, target: str = "head") -> str | None:
    """Bring the database to ``target``; return the revision it was at before.
    On PostgreSQL, the schema the URL gave threadkeep is created first if
    missing."""
    schema = pg_url.schema_of_engine(engine)
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        try:
            if schema is not None:
                ensure_schema(conn, schema)
            before = check_not_newer(conn)
            if schema is not None and before is None:
                try:
                    with conn.begin_nested():  # a role that may not read public is fine
                        _warn_of_a_store_in_public(conn, schema)
                except sa.exc.DBAPIError:
                    pass
            if before != target and not (target == "head" and before == code_head()):
                command.upgrade(alembic_config(conn), target)
        except BaseException:
            if engine.dialect.name == "sqlite":
                conn.exec_driver_sql("ROLLBACK")
            else:
                conn.rollback()
            raise
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("COMMIT")
        else:
            conn.commit()
        return before


def is_current(conn: sa.Connection) -> bool:
    return database_revision(conn) == code_head()
