"""Settings of the HTTP layer: limits on what one request may send.

They are part of the one settings object, :class:`threadkeep.config.Settings`,
as its ``api`` section: defaults < the ``[api]`` table of the config file <
``THREADKEEP_API__*`` environment variables (e.g.
``THREADKEEP_API__MAX_BODY_BYTES``) < flags. The model lives in
``threadkeep.config`` (which must not import the api); it is re-exported here.
"""

from __future__ import annotations

from threadkeep.config import ApiSettings

__all__ = ["ApiSettings"]
