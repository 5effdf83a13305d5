"""Settings of the HTTP layer: limits on what one request may send.

They are read from ``THREADKEEP_API__*`` environment variables (e.g.
``THREADKEEP_API__MAX_BODY_BYTES``), the names they will keep once they move
into :class:`threadkeep.config.Settings` as its ``api`` section.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="THREADKEEP_API__", extra="forbid")

    max_body_bytes: int = Field(
        default=16 * 1024 * 1024,
        ge=1,
        description="Largest request body, in bytes; a bigger one gets 413.",
    )
    max_json_depth: int = Field(
        default=100,
        ge=1,
        description="Deepest nesting of a JSON body; a deeper one gets 400.",
    )
