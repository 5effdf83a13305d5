"""The HTTP API (FastAPI): the only layer that knows about HTTP."""

from threadkeep.api.app import create_app
from threadkeep.api.settings import ApiSettings

__all__ = ["ApiSettings", "create_app"]
