"""How threadkeep connects to PostgreSQL: to the server itself, or through a
transaction pooler.

Hosted PostgreSQL often hands out a pooler's address first (PgBouncer,
Supabase's Supavisor, Neon's ``-pooler`` host). In transaction mode a pooler
lends a server connection for one transaction and then gives it to another
client, so nothing a server session holds lasts from one transaction to the
next. threadkeep relies on three such things when it talks to the server
directly, and ``?pgbouncer=true`` (store/pg_url.py) swaps each for what
holds through a pooler:

* **psycopg's prepared statements.** psycopg prepares a query it has run a
  few times, on the server session. Through a pooler (PgBouncer before 1.21)
  the next execution finds no such statement, or another client's statement
  of the same name: an error at best, another client's query at worst. Off
  (``prepare_threshold=None``).
* **Session settings.** ``synchronous_commit=on`` (acknowledged means
  durable) and the schema's ``search_path`` are set once per connection,
  which a pooler does not carry over, and PgBouncer refuses the startup
  ``options`` that carry the search path. Set instead at the start of every
  transaction, with ``set_config(..., true)``, which ends with it: nothing
  leaks into the server connection the next client gets. So nothing runs
  outside a transaction: the one-statement append and the one-statement
  reads take the ordinary path.
* **LISTEN.** A listener needs a session of its own. Other instances'
  commits reach held sync requests by the hub's poll (one second) instead
  of a notification. NOTIFY still goes out, for instances that listen on a
  direct URL.

``pg_dump`` and ``pg_restore`` need a session too, and are refused
(store/backup.py): back up through the server's own address.
"""

from __future__ import annotations

from typing import Any

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy import event

from threadkeep.model.jsontext import dumps
from threadkeep.store import pg_url


def transaction_settings(url: str | sa.URL) -> str | None:
    """The statement that starts every transaction through a pooler; None
    when the URL reaches the server directly (the settings are the
    session's)."""
    if not pg_url.through_pooler(url):
        return None
    settings = [("synchronous_commit", "on"), ("TimeZone", "UTC")]
    schema = pg_url.schema_of(url)
    if schema is not None:
        settings.append(("search_path", schema))  # a checked identifier
    calls = ", ".join(f"set_config('{name}', '{value}', true)" for name, value in settings)
    return f"SELECT {calls}"


def create_engine(url: str | sa.URL, **kwargs: Any) -> sa.Engine:
    """A SQLAlchemy engine on ``url`` (JSON as threadkeep writes and reads
    it). Through a pooler: no prepared statements, and each transaction
    begins with :func:`transaction_settings`; an engine in autocommit must
    then run them itself after its own BEGIN (store/copy.py)."""
    kwargs.setdefault("json_serializer", dumps)
    # An error's text leaves out the statement's values: they are people's
    # messages, and the text reaches logs (translate.py, api/problems.py).
    kwargs.setdefault("hide_parameters", True)
    # psycopg decodes json/jsonb itself, with json.loads unless told
    # otherwise: orjson (the same values) halves the CPU cost of reading
    # messages back.
    kwargs.setdefault("json_deserializer", orjson.loads)
    settings = transaction_settings(url)
    if settings is None:
        return sa.create_engine(pg_url.sa_url(url), **kwargs)
    kwargs["connect_args"] = {**kwargs.get("connect_args", {}), "prepare_threshold": None}
    schema = pg_url.schema_of(url)
    if schema is not None:
        kwargs["execution_options"] = {
            **kwargs.get("execution_options", {}),
            pg_url.SCHEMA_OPTION: schema,
        }
    engine = sa.create_engine(pg_url.sa_url(url), **kwargs)

    def begin_with_settings(conn: sa.Connection) -> None:
        # On the driver's connection: psycopg opens the transaction with this
        # statement (SQLAlchemy's own BEGIN is a no-op for it), after the
        # isolation level a caller set on the connection.
        raw = conn.connection.dbapi_connection
        if raw is not None and not raw.autocommit:
            raw.execute(settings)

    event.listen(engine, "begin", begin_with_settings)
    return engine


def connect(url: str | sa.URL, **kwargs: Any) -> psycopg.Connection[Any]:
    """A psycopg connection on ``url`` outside SQLAlchemy's pool (the
    one-statement append's, the change channel's)."""
    if pg_url.through_pooler(url):
        kwargs["prepare_threshold"] = None
    return psycopg.connect(pg_url.conninfo(url), **kwargs)
