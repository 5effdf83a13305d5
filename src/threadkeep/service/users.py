"""Users. Creating one is an administrative act: no actor."""

from __future__ import annotations

from threadkeep.errors import InvalidInput
from threadkeep.model.common import Committed
from threadkeep.model.ids import new_id
from threadkeep.model.text import check_text
from threadkeep.model.users import User
from threadkeep.service.base import ServiceBase
from threadkeep.store import users as user_q


class UserOps(ServiceBase):
    def create_user(self, name: str, *, id: str | None = None) -> Committed[User]:
        """Create a user; every session and message belongs to one.

        Args:
            name: a display name (1-200 characters).
            id: a chosen id; a UUID when omitted.
        """
        check_text("name", name)
        if not name or len(name) > 200:
            raise InvalidInput("name", "must be 1 to 200 characters")
        user_id = id or new_id()
        check_text("id", user_id)
        return self.engine.write(lambda tx: user_q.insert_user(tx, user_id, name))

    def get_user(self, user_id: str) -> User:
        return self.engine.read(lambda c: user_q.get_user(c, user_id))

    def list_users(self) -> list[User]:
        return self.engine.read(user_q.list_users)
