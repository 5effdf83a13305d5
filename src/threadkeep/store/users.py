"""Queries on users."""

from __future__ import annotations

import sqlalchemy as sa

from threadkeep.errors import AlreadyExists, UserNotFound
from threadkeep.model.users import User
from threadkeep.store.contract import WriteTx
from threadkeep.store.tables import users


def insert_user(tx: WriteTx, user_id: str, name: str) -> User:
    if tx.conn.execute(sa.select(users.c.id).where(users.c.id == user_id)).first():
        raise AlreadyExists("user", user_id)
    values = {"id": user_id, "name": name, "created_at": tx.now, "disabled": False}
    tx.conn.execute(users.insert().values(**values))
    return User(**values)


# Built once: SQLAlchemy memoizes a statement's cache key, so executing the
# same object skips building and keying the select on every call.
_BY_ID = sa.select(users).where(users.c.id == sa.bindparam("uid"))


def get_user(conn: sa.Connection, user_id: str) -> User:
    row = conn.execute(_BY_ID, {"uid": user_id}).first()
    if row is None:
        raise UserNotFound(user_id)
    return User.model_validate(row._mapping)


def list_users(conn: sa.Connection) -> list[User]:
    rows = conn.execute(sa.select(users).order_by(users.c.created_at, users.c.id))
    return [User.model_validate(r._mapping) for r in rows]
