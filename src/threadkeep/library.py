"""``Threadkeep``: the library API that apps and agent frameworks call.

Each operation is implemented once, in the service mixins; this class only
puts them together with an engine. :class:`threadkeep.AsyncThreadkeep` offers
the same operations to asyncio code (it is generated from this class).
"""

from __future__ import annotations

import threading
from types import TracebackType

from threadkeep.blobs import BlobStore
from threadkeep.config import BlobSettings, Limits, RetentionSettings, Settings, load_settings
from threadkeep.service.activity import ActivityOps
from threadkeep.service.branches import BranchOps
from threadkeep.service.changes import ChangeOps
from threadkeep.service.events import EventOps
from threadkeep.service.imports import ImportOps
from threadkeep.service.oversight import OversightOps
from threadkeep.service.repos import RepoOps
from threadkeep.service.retention import RetentionOps
from threadkeep.service.search import SearchOps
from threadkeep.service.sessions import SessionOps
from threadkeep.service.snapshots import SnapshotOps
from threadkeep.service.streaming import StreamOps
from threadkeep.service.sync import SyncOps
from threadkeep.service.todos import TodoOps
from threadkeep.service.tokens import TokenOps
from threadkeep.service.uploads import UploadOps
from threadkeep.service.userdata import UserDataOps
from threadkeep.service.users import UserOps
from threadkeep.store import open_engine
from threadkeep.store.contract import StoreEngine


class Threadkeep(
    UserOps,
    SessionOps,
    EventOps,
    BranchOps,
    ChangeOps,
    TokenOps,
    StreamOps,
    TodoOps,
    OversightOps,
    RepoOps,
    SnapshotOps,
    ActivityOps,
    SyncOps,
    RetentionOps,  # these three before UploadOps, which they build on
    UserDataOps,
    ImportOps,
    UploadOps,
    SearchOps,
):
    """A durable store of chat and agent sessions.

    Examples:
        >>> tk = Threadkeep.open("sqlite:///chats.db")        # doctest: +SKIP
        >>> user = tk.create_user("ada").value                  # doctest: +SKIP
        >>> me = Actor(user.id)                                  # doctest: +SKIP
        >>> s = tk.create_session(me, title="Plans").value      # doctest: +SKIP
        >>> tk.append_message(me, s.id, {"role": "user", "content": "hi"})  # doctest: +SKIP

    Thread-safe: share one instance across threads. Every write is durable when
    its call returns.
    """

    def __init__(
        self,
        engine: StoreEngine,
        limits: Limits | None = None,
        *,
        blobs: BlobSettings | BlobStore | None = None,
        retention: RetentionSettings | None = None,
    ) -> None:
        self.engine = engine
        self.limits = limits or Limits()
        # The blob store: given, or opened from these settings on first use.
        self._blob_store = blobs if isinstance(blobs, BlobStore) else None
        self.blob_settings = blobs if isinstance(blobs, BlobSettings) else BlobSettings()
        self._blob_lock = threading.Lock()
        # The rules apply_retention uses when given none.
        self.retention_settings = retention or RetentionSettings()

    @classmethod
    def open(
        cls,
        url: str | None = None,
        *,
        settings: Settings | None = None,
        migrate: bool = True,
    ) -> Threadkeep:
        """Open (and, unless ``migrate=False``, migrate) the store at ``url``.

        Args:
            url: ``sqlite:///path.db`` or ``postgresql://user@host/db``; default:
                ``THREADKEEP_DATABASE_URL``, the config file, or a SQLite file in
                the user's data dir.
            settings: explicit settings (``url`` still wins when given).

        Raises:
            SchemaTooNew: the database was migrated by a newer threadkeep.
            SchemaInUse: another application's tables are where threadkeep's
                would go (nothing written; see ``?schema=`` in docs/postgresql.md).
            StoreError: the URL or its ``?schema=`` is invalid, or the database
                cannot be reached or migrated.
        """
        settings = settings or load_settings()
        engine = open_engine(
            url or settings.database_url,
            migrate=migrate,
            pool_size=settings.pool.size,
            max_overflow=settings.pool.max_overflow,
        )
        return cls(engine, settings.limits, blobs=settings.blobs, retention=settings.retention)

    @property
    def dialect(self) -> str:
        return self.engine.dialect

    def close(self) -> None:
        """Wait for writes in flight, then release every connection."""
        if self._blob_store is not None:
            self._blob_store.close()
        self.engine.close()

    def __enter__(self) -> Threadkeep:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
