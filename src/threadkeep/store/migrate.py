"""Applying the schema: Alembic, run when a store opens and by `threadkeep migrate`.

Each engine takes its own lock for the whole migration (PostgreSQL: a
transaction-scoped advisory lock; SQLite: ``BEGIN IMMEDIATE``), and DDL is
transactional on both, so concurrent openers migrate once and a failed
migration leaves the previous schema intact.
"""

from __future__ import annotations

from importlib.resources import files

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from threadkeep.errors import SchemaTooNew

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
    current = database_revision(conn)
    if current is not None and current not in known_revisions():
        raise SchemaTooNew(current, code_head())
    return current


def upgrade(engine: sa.Engine, target: str = "head") -> str | None:
    """Bring the database to ``target``; return the revision it was at before."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
        try:
            before = check_not_newer(conn)
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
