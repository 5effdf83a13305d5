"""Settings: defaults < TOML file in the user's config dir < THREADKEEP_* env < flags.

One object, validated by pydantic, so a bad value fails at start with the
name of the setting and where it came from, not at the first request.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from platformdirs import user_config_dir, user_data_dir
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

APP = "threadkeep"


def data_dir() -> Path:
    return Path(os.environ.get("THREADKEEP_DATA_DIR") or user_data_dir(APP))


def config_file() -> Path:
    return Path(os.environ.get("THREADKEEP_CONFIG") or Path(user_config_dir(APP)) / "config.toml")


def default_database_url() -> str:
    return f"sqlite:///{data_dir() / 'threadkeep.db'}"


class Limits(BaseModel):
    """Size limits on what one call may store. Over a limit: TooLarge, nothing written."""

    model_config = ConfigDict(extra="forbid")

    max_message_bytes: int = Field(default=1_048_576, ge=1)
    max_json_bytes: int = Field(default=1_048_576, ge=1)
    max_batch: int = Field(default=1_000, ge=1)
    max_page: int = Field(default=1_000, ge=1)
    max_upload_bytes: int = Field(default=1024 * 1024 * 1024, ge=0)
    #: A user archive sent to ``POST /v1/me/import`` (spooled to a temporary
    #: file while it arrives, so this much disk may be used at once).
    max_import_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=0)


class BlobSettings(BaseModel):
    """Where upload bytes live (docs/blobs.md).

    The ``[blobs]`` table of the config file, ``THREADKEEP_BLOBS__*`` variables
    (e.g. ``THREADKEEP_BLOBS__BACKEND=s3``), or ``load_settings(blobs=...)``.
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "fs", "postgres", "s3"] = Field(
        default="auto",
        description=(
            "auto: a directory next to the SQLite file, or the PostgreSQL database "
            "itself when the store is PostgreSQL (every server instance sees it)."
        ),
    )
    path: str | None = Field(
        default=None, description="The directory of the fs backend (default: next to the DB)."
    )
    s3_bucket: str | None = None
    s3_prefix: str = "threadkeep/"
    s3_endpoint_url: str | None = Field(
        default=None, description="For S3-compatible servers (MinIO, R2, Ceph...)."
    )
    s3_region: str | None = None
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    gc_grace_seconds: float = Field(
        default=3600.0,
        ge=0,
        description=(
            "An unreferenced blob is collected only when it was last stored longer "
            "ago than this: an upload between its bytes and its row is never robbed."
        ),
    )


class ApiSettings(BaseModel):
    """Settings of the HTTP layer: limits on what one request may send.

    The ``[api]`` table of the config file, ``THREADKEEP_API__*`` variables
    (e.g. ``THREADKEEP_API__MAX_BODY_BYTES``), or ``load_settings(api=...)``.
    """

    model_config = ConfigDict(extra="forbid")

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


class SyncSettings(BaseModel):
    """The shape endpoint: live long-polls, the fallback poll, log pruning.

    The ``[sync]`` table of the config file or ``THREADKEEP_SYNC__*`` variables.
    """

    model_config = ConfigDict(extra="forbid")

    long_poll_seconds: float = Field(
        default=20.0,
        gt=0,
        le=40,
        description="How long a live request is held when nothing changes "
        "(the client gives up after 45 s).",
    )
    poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often held requests look at the log without being woken: "
        "a lost notification (another instance, another process) delays, never loses.",
    )
    retention_hours: float = Field(
        default=7 * 24,
        gt=0,
        description="Changes older than this are pruned; a client further behind "
        "refetches its shape (409 must-refetch).",
    )
    prune_every_seconds: float = Field(
        default=3600.0, gt=0, description="How often the server prunes the change log."
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Browser origins allowed to call the API (CORS); '*' for any.",
    )


class RetentionSettings(BaseModel):
    """What ``threadkeep cleanup`` and the server's schedule delete (docs/retention.md).

    The ``[retention]`` table of the config file or ``THREADKEEP_RETENTION__*``
    variables (e.g. ``THREADKEEP_RETENTION__SNAPSHOT_DAYS=14``). A period of 0
    turns its rule off: those rows are kept for ever.
    """

    model_config = ConfigDict(extra="forbid")

    snapshot_days: float = Field(
        default=30.0,
        ge=0,
        description="Non-starred snapshots neither created nor changed for this many "
        "days are deleted; starred ones are always kept. 0: keep all.",
    )
    analytics_days: float = Field(
        default=90.0,
        ge=0,
        description="Analytics events older than this many days are deleted. 0: keep all.",
    )
    trash_days: float = Field(
        default=30.0,
        ge=0,
        description="Sessions in the trash for this many days are purged with "
        "everything in them. 0: keep the trash.",
    )
    stream_hours: float = Field(
        default=24.0,
        ge=0,
        description="Messages still streaming this many hours after they started are "
        "finished `incomplete`, keeping their text: their writer died mid-stream (a killed "
        "server, a crashed agent). Nothing is deleted. 0: leave them streaming.",
    )
    collect_blobs: bool = Field(
        default=True,
        description="Also delete the blobs no upload uses any more (after blobs.gc_grace_seconds).",
    )
    batch_size: int = Field(
        default=500,
        ge=1,
        le=10_000,
        description="Rows deleted per transaction (a purged session is one "
        "transaction, whatever its size).",
    )
    run_every_seconds: float = Field(
        default=3600.0,
        ge=0,
        description="How often `threadkeep serve` applies these rules; 0: never "
        "(run `threadkeep cleanup` from cron instead).",
    )


class PoolSettings(BaseModel):
    """PostgreSQL connections per open store (``THREADKEEP_POOL__SIZE``...).

    Each store keeps two sets of this size: SQLAlchemy's pool, and the
    one-statement append's own connections (store/pg_append.py). Under full
    load a process may hold ``2 * (size + max_overflow)`` connections, plus
    two for sync's LISTEN and NOTIFY: size them so that every process's
    share fits the server's ``max_connections``."""

    size: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Connections kept open in each set; more open under load, up to "
        "size + max_overflow.",
    )
    max_overflow: int = Field(
        default=20,
        ge=0,
        le=1000,
        description="Connections each set may open above `size` under load, closed "
        "again when they are handed back.",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="THREADKEEP_", env_nested_delimiter="__", extra="forbid"
    )

    database_url: str = Field(default_factory=default_database_url)
    limits: Limits = Field(default_factory=Limits)
    api: ApiSettings = Field(default_factory=ApiSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    # Proxy mode: with an Electric service's URL, /v1/shape forwards to it
    # (THREADKEEP_ELECTRIC_URL, THREADKEEP_ELECTRIC_SECRET).
    electric_url: str | None = None
    electric_secret: str | None = None
    blobs: BlobSettings = Field(default_factory=BlobSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    pool: PoolSettings = Field(default_factory=PoolSettings)
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Earlier sources win: flags (init) > env > TOML > defaults.
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file()),
        )


def load_settings(**flags: Any) -> Settings:
    """Settings with ``flags`` (None values ignored) on top of env, TOML and defaults."""
    return Settings(**{k: v for k, v in flags.items() if v is not None})
