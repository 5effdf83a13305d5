"""PostgreSQL URLs as threadkeep reads them: which driver, and which schema.

``?schema=NAME`` gives threadkeep a schema of its own, so that it can share a
database with the application it serves. Without it, threadkeep's tables and
its Alembic ``alembic_version`` live in ``public``, where an application's own
``users``, ``sessions`` or ``alembic_version`` would collide with them.

``schema`` is not a libpq parameter. It is taken out of the URL and becomes
the ``search_path`` of every connection threadkeep opens: the SQLAlchemy
pool, the one-statement append's connections, the change listener, pg_dump
and pg_restore. So no statement names the schema, and the search path holds
nothing else: a table of the application's can never answer for one of
threadkeep's. (Prisma reads the same parameter the same way.)

``?pgbouncer=true`` says that the URL reaches the server through a
transaction pooler, which keeps no session state between transactions
(store/pg_connect.py says what threadkeep does then). Also Prisma's
spelling. Like ``schema``, it is threadkeep's, not libpq's, and is taken out
of the URL before libpq sees it.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import psycopg.conninfo
import sqlalchemy as sa

from threadkeep.errors import StoreError

SCHEMA_PARAM = "schema"
POOLER_PARAM = "pgbouncer"
_OURS = (SCHEMA_PARAM, POOLER_PARAM)
APPLICATION_NAME = "threadkeep"

# Lower-case unquoted identifiers only: what psql users type without quotes,
# never folded or quoted differently by one tool or another. 45 characters
# leave room for the change channel's name (63 at most) that includes it.
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,44}")
_RESERVED = ("pg_", "information_schema")

_OWN_OPTION = re.compile(r"-c search_path=([a-z_][a-z0-9_]*)$")

_DRIVERS = ("postgresql", "postgres", "postgresql+psycopg", "postgresql+psycopg2")


def parse(url: str | sa.URL) -> sa.URL:
    """``url`` as a URL object, refused unless it names PostgreSQL."""
    u = sa.make_url(url)
    if u.drivername not in _DRIVERS:
        raise StoreError(f"not a PostgreSQL URL: {u.render_as_string(hide_password=True)}")
    return u


def schema_of(url: str | sa.URL) -> str | None:
    """The schema ``?schema=`` names, checked; None when the URL names none."""
    value = parse(url).query.get(SCHEMA_PARAM)
    if value is None and isinstance(url, str) and _blank(url, SCHEMA_PARAM):
        value = ""  # SQLAlchemy drops a blank value; a typo must not mean public
    if value is None:
        return None
    if not isinstance(value, str) or not _NAME.fullmatch(value) or value.startswith(_RESERVED):
        shown = value if isinstance(value, str) else ", ".join(value)
        raise StoreError(
            f"invalid schema {shown!r} in the database URL: a schema for threadkeep is "
            "1 to 45 lower-case letters, digits and underscores, not starting with a "
            "digit or 'pg_' (for example ?schema=threadkeep)"
        )
    return value


def through_pooler(url: str | sa.URL) -> bool:
    """True when ``?pgbouncer=true``: the URL reaches the server through a
    transaction pooler. Only ``true`` and ``false`` are read; anything else is
    refused, since a misspelt ``true`` would mean session state that does not
    hold."""
    value = parse(url).query.get(POOLER_PARAM)
    if value is None and isinstance(url, str) and _blank(url, POOLER_PARAM):
        value = ""  # SQLAlchemy drops a blank value
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise StoreError(
        f"invalid {POOLER_PARAM}={value!r} in the database URL: use ?{POOLER_PARAM}=true "
        "when the URL reaches PostgreSQL through a transaction pooler such as PgBouncer"
    )


def _blank(url: str, param: str) -> bool:
    """True if ``url`` gives ``param`` an empty value."""
    query = urllib.parse.urlsplit(url).query
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
    return any(k == param and not v for k, v in pairs)


def _named(u: sa.URL) -> dict[str, str]:
    """``fallback_application_name=threadkeep``, so that an operator sharing
    the server tells threadkeep's connections apart in ``pg_stat_activity``
    and the logs. A fallback: the URL's ``application_name`` and PGAPPNAME
    win; a URL's own fallback is kept."""
    if "fallback_application_name" in u.query:
        return {}
    return {"fallback_application_name": APPLICATION_NAME}


def _search_path_option(u: sa.URL, schema: str) -> str:
    """libpq's ``options`` with the search path appended to any the URL sets."""
    given = u.query.get("options")
    own = f"-c search_path={schema}"
    return f"{given} {own}" if isinstance(given, str) and given else own


# The engine execution option that names the schema of a pooled engine
# (store/pg_connect.py), whose connections carry no search path of their own.
SCHEMA_OPTION = "threadkeep_schema"


def schema_of_engine(engine: sa.Engine) -> str | None:
    """The schema an engine made by :func:`sa_url` or store/pg_connect.py
    connects to (read back from the search path it sets, or the option a
    pooled engine carries); None on SQLite and for ``public``."""
    if engine.dialect.name != "postgresql":
        return None
    given = engine.get_execution_options().get(SCHEMA_OPTION)
    if given is not None:
        return str(given)
    options = engine.url.query.get("options")
    found = _OWN_OPTION.search(options) if isinstance(options, str) else None
    return found.group(1) if found else None


def sa_url(url: str | sa.URL) -> sa.URL:
    """The URL SQLAlchemy connects with: psycopg 3 as the driver (a bare
    ``postgresql://`` would make SQLAlchemy look for psycopg2), and the schema
    turned into the connections' search path (except through a pooler, which
    refuses startup options: store/pg_connect.py sets it per transaction)."""
    u = parse(url)
    schema = schema_of(u)
    pooled = through_pooler(u)
    u = u.set(drivername="postgresql+psycopg").difference_update_query(_OURS)
    u = u.update_query_dict(_named(u))
    if schema is None or pooled:
        return u
    return u.update_query_dict({"options": _search_path_option(u, schema)})


def conninfo(url: str | sa.URL, *, with_password: bool = True, options: str = "") -> str:
    """A libpq connection string (``key=value`` pairs, quoted by psycopg) for
    psycopg and for pg_dump/pg_restore. Built from the parts rather than by
    rendering a URL: a rendered URL writes the space in ``-c search_path=...``
    as ``+``, which libpq does not read back as a space.

    ``options`` are added to the connection's: libpq takes a connection
    string's ``options`` instead of the ``PGOPTIONS`` environment variable,
    not as well as it, so a setting that must hold goes here."""
    u = parse(url)
    schema = schema_of(u)
    pooled = through_pooler(u)
    params: dict[str, Any] = {
        k: v for k, v in u.query.items() if k not in _OURS and isinstance(v, str)
    }
    params.update(_named(u))
    if schema is not None and not pooled:
        params["options"] = _search_path_option(u, schema)
    if options:
        params["options"] = f"{params.get('options', '')} {options}".strip()
    for key, value in (
        ("host", u.host),
        ("port", u.port),
        ("user", u.username),
        ("dbname", u.database),
        ("password", u.password if with_password else None),
    ):
        if value is not None:
            params[key] = value
    return psycopg.conninfo.make_conninfo("", **params)
