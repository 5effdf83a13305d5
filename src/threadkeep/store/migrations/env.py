"""Alembic environment. threadkeep always hands Alembic an open connection in an
open transaction (see store/migrate.py), so a migration and the row that records
it commit together, and no two processes migrate at once."""

from __future__ import annotations

from alembic import context

from threadkeep.store.search import include_object
from threadkeep.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - guarded by store/migrate.py
    raise RuntimeError("run migrations through `threadkeep migrate` or threadkeep.open()")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    transactional_ddl=True,
    # The search index (revision 0006) is not in tables.py: FTS5 tables and
    # generated tsvector columns are the database's, named search_*.
    include_object=include_object,
)
context.run_migrations()
