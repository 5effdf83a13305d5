"""A database error's text holds no value of the statement that failed.

The values are people's messages, titles and uploads' names, and an error's
text goes to logs (the API logs every unexpected error with its traceback,
chained driver error included), which are often shipped to a third party.
SQLAlchemy prints a statement's parameters in its errors unless the engine
hides them; every engine threadkeep makes does.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from threadkeep import Threadkeep
from threadkeep.errors import StoreError
from threadkeep.store import backup as backup_q
from threadkeep.store import copy as copy_q
from threadkeep.store.translate import translate_errors

SECRET = "the text of somebody's private message"

ENGINES: dict[str, Callable[[Threadkeep, str], sa.Engine]] = {
    "the store's": lambda tk, _url: tk.engine.sa_engine,
    "backup's": lambda _tk, url: backup_q.raw_engine(url),
    "copy's": lambda _tk, url: copy_q._engine(url),
}

# Errors that reach the API as 5xx, which it logs with their traceback. (A
# constraint a row breaks is the caller's input: a 4xx, answered to the
# caller and not logged; PostgreSQL's text for it quotes the row.)
FAILING: dict[str, Callable[[sa.Connection], object]] = {
    "a statement the database refuses": lambda conn: conn.execute(
        sa.text("SELECT * FROM no_such_table WHERE title = :title"), {"title": SECRET}
    ),
    "a write into a table that is not there": lambda conn: conn.execute(
        sa.table("gone", sa.column("content")).insert().values(content=SECRET)
    ),
}


@pytest.mark.parametrize("failing", list(FAILING))
@pytest.mark.parametrize("engine", list(ENGINES))
def test_an_error_and_its_cause_leave_the_values_out(
    tk: Threadkeep, db_url: str, engine: str, failing: str
) -> None:
    made = ENGINES[engine](tk, db_url)
    try:
        with pytest.raises(StoreError) as err:
            with made.connect() as conn, translate_errors():
                FAILING[failing](conn)
    finally:
        if made is not tk.engine.sa_engine:
            made.dispose()
    logged = "".join(traceback.format_exception(err.value))
    assert err.value.__cause__ is not None  # the driver's error is chained, and logged
    assert SECRET not in logged, logged
