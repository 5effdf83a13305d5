"""The one schema definition, as SQLAlchemy Core tables.

Alembic migrations are written from these tables, and a test checks that
``alembic autogenerate`` finds no difference between the two on either engine.

Every session-scoped table carries ``owner_id`` and ``session_id`` itself, and
the composite foreign key ``(session_id, owner_id) -> sessions(id, owner_id)``
makes it impossible to attach a row to another user's session, whatever the
code above does.
"""

from __future__ import annotations

import sqlalchemy as sa

from threadkeep.store.types import BigIntPK, JSONType, UTCDateTime

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.String(128)
MESSAGE_STATUSES = ("complete", "streaming", "incomplete")
ROLES = ("system", "developer", "user", "assistant", "tool")
TOOL_STATUSES = ("started", "running", "succeeded", "failed", "cancelled")
OPERATIONS = ("insert", "update", "delete")
# The session flags the list filters on, each with its own index.
SESSION_FLAGS = ("starred", "pinned", "archived")
# The rest of the session record (revision 0003).
TODO_STATUSES = ("pending", "in_progress", "completed")
SEVERITIES = ("low", "medium", "high", "critical")
HOOK_EVENTS = ("tool_call", "prompt", "stop")
HOOK_DECISIONS = ("allow", "warn", "block")
SNAPSHOT_KINDS = ("auto", "manual", "system")
FILE_CHANGE_KINDS = ("create", "modify", "delete", "rename")


def one_of(column: str, values: tuple[str, ...]) -> str:
    """A CHECK that ``column`` holds one of ``values``, written as a chain of
    equalities rather than ``column IN (...)``: SQLite (3.40) builds a
    temporary b-tree for a constant IN list every time it checks a row, which
    cost about 9 µs per row and constraint on the append path; the chain costs
    nothing measurable. PostgreSQL treats both alike. Revision 0009 rewrote
    the older ``IN`` checks to this form."""
    return " OR ".join(f"{column} = {v!r}" for v in values)


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.text("false")),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("user_id", ID, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    # sha256 of the token; the token itself is never stored.
    sa.Column("token_hash", sa.String(128), nullable=False, unique=True),
    sa.Column("scopes", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Index(None, "user_id"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, sa.ForeignKey("users.id"), nullable=False),
    sa.Column("title", sa.String(1000), nullable=True),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("provider", sa.String(200), nullable=True),
    sa.Column("state", sa.String(64), nullable=False),
    sa.Column("tags", JSONType, nullable=False),
    sa.Column("starred", sa.Boolean(), nullable=False),
    sa.Column("pinned", sa.Boolean(), nullable=False),
    sa.Column("archived", sa.Boolean(), nullable=False),
    sa.Column("metadata", JSONType, nullable=False),
    sa.Column("parent_session_id", ID, sa.ForeignKey("sessions.id"), nullable=True),
    sa.Column("fork_seq", sa.BigInteger(), nullable=True),
    sa.Column("head_seq", sa.BigInteger(), nullable=False),
    sa.Column("event_seq", sa.BigInteger(), nullable=False),
    sa.Column("input_tokens", sa.BigInteger(), nullable=False),
    sa.Column("output_tokens", sa.BigInteger(), nullable=False),
    sa.Column("cost_usd", sa.Float(), nullable=False),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("last_activity_at", UTCDateTime(), nullable=False),
    sa.Column("deleted_at", UTCDateTime(), nullable=True),
    sa.UniqueConstraint("id", "owner_id"),
    sa.CheckConstraint("head_seq >= 0 AND event_seq >= 0", name="counters"),
    sa.CheckConstraint("version >= 1", name="version"),
    sa.CheckConstraint("input_tokens >= 0 AND output_tokens >= 0", name="tokens"),
    sa.CheckConstraint(
        "(parent_session_id IS NULL AND fork_seq IS NULL) OR "
        "(parent_session_id IS NOT NULL AND fork_seq >= 0 AND fork_seq <= head_seq)",
        name="fork",
    ),
    # The session list: newest activity first, live sessions only. Keyset
    # pagination walks this index, so page 2,000 costs what page 1 costs.
    sa.Index(
        "ix_sessions_live_activity",
        "owner_id",
        "last_activity_at",
        "id",
        sqlite_where=sa.text("deleted_at IS NULL"),
        postgresql_where=sa.text("deleted_at IS NULL"),
    ),
    # The starred, pinned and archived views of that list: a flag few
    # sessions carry would otherwise walk the whole list to fill a page
    # (14-23 ms at 50,000 sessions; 0.1 ms with these). Rows without the
    # flag cost them no write.
    *(
        sa.Index(
            f"ix_sessions_{flag}",
            "owner_id",
            "last_activity_at",
            "id",
            sqlite_where=sa.text(f"deleted_at IS NULL AND {flag} = 1"),
            postgresql_where=sa.text(f"deleted_at IS NULL AND {flag}"),
        )
        for flag in SESSION_FLAGS
    ),
    sa.Index(
        "ix_sessions_trash",
        "owner_id",
        "deleted_at",
        sqlite_where=sa.text("deleted_at IS NOT NULL"),
        postgresql_where=sa.text("deleted_at IS NOT NULL"),
    ),
    sa.Index(None, "parent_session_id"),
)


# Which of a user's sessions carry a tag: the list's tag filter reads this
# instead of opening every session's ``tags`` array. The database keeps it
# from ``sessions.tags`` by triggers (revision 0011), so no write path can
# forget it and an append, which never sets ``tags``, costs it nothing. It is
# derived: a copy, an export or an erasure deals with ``sessions`` and the
# triggers follow (``DERIVED`` below).
session_tags = sa.Table(
    "session_tags",
    metadata,
    sa.Column("owner_id", ID, nullable=False),
    # Text, not a length: the triggers copy whatever ``tags`` holds, and a
    # limit here would turn a tag that got past the model into a failed write.
    sa.Column("tag", sa.Text(), nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.PrimaryKeyConstraint("owner_id", "tag", "session_id"),
)

# Tables the database fills from others by itself: never copied, exported or
# erased as rows of their own.
DERIVED = frozenset({"session_tags"})


def _session_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["session_id", "owner_id"], ["sessions.id", "sessions.owner_id"])


# The condition of the partial index of open streams, as SQL text. A query
# meant to use that index states it in these words (store/retention.py).
OPEN_STREAMS = "status = 'streaming'"

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("content", sa.Text(), nullable=False),
    sa.Column("parts", JSONType, nullable=True),
    sa.Column("tool_calls", JSONType, nullable=True),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("input_tokens", sa.BigInteger(), nullable=True),
    sa.Column("output_tokens", sa.BigInteger(), nullable=True),
    sa.Column("client_id", ID, nullable=True),
    sa.Column("metadata", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # The transaction that wrote the row: an idempotent retry answers with it,
    # so a sync client waiting for that txid sees it arrive.
    sa.Column("txid", sa.BigInteger(), nullable=True),
    # complete, or streaming (an assistant reply still arriving), or incomplete
    # (the stream stopped before it was finished). Revision 0002.
    sa.Column("status", sa.String(16), nullable=False, server_default="complete"),
    _session_fk(),
    # One order, no duplicates: the database enforces both. The client_id
    # index is partial: appends without a client id pay nothing for it.
    sa.UniqueConstraint("session_id", "seq"),
    sa.Index(
        "uq_messages_session_client",
        "session_id",
        "client_id",
        unique=True,
        sqlite_where=sa.text("client_id IS NOT NULL"),
        postgresql_where=sa.text("client_id IS NOT NULL"),
    ),
    # The streams still open, oldest first: retention finishes those whose
    # writer died mid-stream (revision 0008). Partial, so a finished message,
    # the common case, costs nothing here.
    sa.Index(
        "ix_messages_streaming",
        "created_at",
        "id",
        sqlite_where=sa.text(OPEN_STREAMS),
        postgresql_where=sa.text(OPEN_STREAMS),
    ),
    sa.CheckConstraint("seq >= 1", name="seq"),
    sa.CheckConstraint(one_of("role", ROLES), name="role"),
    sa.CheckConstraint(one_of("status", MESSAGE_STATUSES), name="status"),
)

tool_events = sa.Table(
    "tool_events",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("message_id", ID, sa.ForeignKey("messages.id"), nullable=True),
    sa.Column("call_id", ID, nullable=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("input", JSONType, nullable=True),
    sa.Column("output", JSONType, nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("duration_ms", sa.BigInteger(), nullable=True),
    sa.Column("version", sa.BigInteger(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.CheckConstraint(one_of("status", TOOL_STATUSES), name="status"),
    sa.CheckConstraint("duration_ms IS NULL OR duration_ms >= 0", name="duration"),
    sa.Index(None, "session_id", "created_at"),
    sa.Index(None, "message_id"),
)

timeline_events = sa.Table(
    "timeline_events",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("payload", JSONType, nullable=True),
    sa.Column("message_id", ID, sa.ForeignKey("messages.id"), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.UniqueConstraint("session_id", "seq"),
    sa.CheckConstraint("seq >= 1", name="seq"),
    sa.Index(None, "message_id"),
)

uploads = sa.Table(
    "uploads",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("filename", sa.String(255), nullable=False),
    sa.Column("media_type", sa.String(255), nullable=False),
    sa.Column("size", sa.BigInteger(), nullable=False),
    # The key of the bytes in the blob store (which holds each content once).
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.CheckConstraint("size >= 0", name="size"),
    sa.Index(None, "session_id", "created_at"),
    # Garbage collection asks "does any upload still use this blob?".
    sa.Index(None, "sha256"),
)

# The PostgreSQL blob store (blobs/postgres.py): the bytes of each blob as rows
# of at most 1 MiB, so neither side ever holds a whole file. The chunks are
# written under a fresh data_id first and the blob row naming them last, in
# one transaction: a blob row always has all its chunks. Not synced, no
# change-log rows: bytes reach clients through the uploads' content route.
blobs = sa.Table(
    "blobs",
    metadata,
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("data_id", ID, nullable=False, unique=True),
    sa.Column("size", sa.BigInteger(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # Last stored or stored again: garbage collection spares younger blobs.
    sa.Column("touched_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("size >= 0", name="size"),
)

blob_chunks = sa.Table(
    "blob_chunks",
    metadata,
    sa.Column("data_id", ID, primary_key=True),
    sa.Column("idx", sa.Integer(), primary_key=True),
    sa.Column("data", sa.LargeBinary(), nullable=False),
)

# --- the rest of the session record (revision 0003) ---------------------------
# Every table below is session-scoped like the ones above: owner_id and
# session_id on the row, the composite foreign key to sessions, and reads that
# walk an index starting with session_id.
#
# References to messages and tool events (a checkpoint's message, the tool
# event a hook decision judged...) are checked when written (same owner, same
# session; store/records.py check_refs) but are not foreign keys: a rewind
# moves messages and tool events into a new branch, and purging that branch
# must not be blocked by the parent's rows that named them.

todos = sa.Table(
    "todos",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    # The list order. Not unique: replacing the list renumbers rows in place,
    # and a unique (session_id, position) would trip over its own swaps.
    sa.Column("position", sa.BigInteger(), nullable=False),
    sa.Column("content", sa.Text(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("active_form", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.CheckConstraint(one_of("status", TODO_STATUSES), name="status"),
    sa.CheckConstraint("position >= 0", name="position"),
    sa.Index(None, "session_id", "position"),
)

misalignments = sa.Table(
    "misalignments",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("kind", sa.String(100), nullable=False),
    sa.Column("severity", sa.String(16), nullable=False),
    sa.Column("description", sa.Text(), nullable=False),
    # [{"kind": "message" | "tool_event", "id": ...}], each checked on write.
    sa.Column("evidence", JSONType, nullable=False),
    sa.Column("detected_by", sa.String(200), nullable=True),
    sa.Column("resolved_at", UTCDateTime(), nullable=True),
    sa.Column("resolution", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.CheckConstraint(one_of("severity", SEVERITIES), name="severity"),
    sa.CheckConstraint("resolution IS NULL OR resolved_at IS NOT NULL", name="resolution"),
    sa.Index(None, "session_id", "created_at"),
)

hookify_decisions = sa.Table(
    "hookify_decisions",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("rule_id", sa.String(200), nullable=False),
    sa.Column("rule_name", sa.String(200), nullable=True),
    sa.Column("event", sa.String(16), nullable=False),
    sa.Column("decision", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("tool_event_id", ID, nullable=True),
    sa.Column("message_id", ID, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.CheckConstraint(one_of("event", HOOK_EVENTS), name="event"),
    sa.CheckConstraint(one_of("decision", HOOK_DECISIONS), name="decision"),
    sa.Index(None, "session_id", "created_at"),
    sa.Index(None, "tool_event_id"),
    sa.Index(None, "message_id"),
)

repo_bindings = sa.Table(
    "repo_bindings",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("path", sa.String(4096), nullable=True),
    sa.Column("remote_url", sa.String(2048), nullable=True),
    sa.Column("branch", sa.String(255), nullable=True),
    sa.Column("commit_sha", sa.String(64), nullable=True),
    sa.Column("bound_at", UTCDateTime(), nullable=False),
    # NULL while the binding is the session's active one; set when it ends.
    sa.Column("unbound_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.CheckConstraint("path IS NOT NULL OR remote_url IS NOT NULL", name="target"),
    sa.CheckConstraint("unbound_at IS NULL OR unbound_at >= bound_at", name="period"),
    # At most one active binding per session: a constraint, not a convention.
    # Ended bindings stay as the session's history.
    sa.Index(
        "uq_repo_bindings_active",
        "session_id",
        unique=True,
        sqlite_where=sa.text("unbound_at IS NULL"),
        postgresql_where=sa.text("unbound_at IS NULL"),
    ),
    sa.Index(None, "session_id", "bound_at"),
)

snapshots = sa.Table(
    "snapshots",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("trigger", sa.String(200), nullable=True),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("starred", sa.Boolean(), nullable=False),
    sa.Column("state", JSONType, nullable=False),
    sa.Column("summary", JSONType, nullable=True),
    # Bytes of state + summary as compact JSON, measured on write.
    sa.Column("size_bytes", sa.BigInteger(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.CheckConstraint(one_of("kind", SNAPSHOT_KINDS), name="kind"),
    sa.CheckConstraint("size_bytes >= 0", name="size"),
    sa.Index(None, "session_id", "created_at"),
    # Retention walks a user's old, unstarred snapshots.
    sa.Index(None, "owner_id", "starred", "created_at"),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("message_id", ID, nullable=False),
    sa.Column("label", sa.String(200), nullable=True),
    sa.Column("context", JSONType, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.Index(None, "session_id", "created_at"),
    sa.Index(None, "message_id"),
)

summaries = sa.Table(
    "summaries",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("title", sa.String(1000), nullable=True),
    sa.Column("summary", sa.Text(), nullable=False),
    sa.Column("key_decisions", JSONType, nullable=False),
    sa.Column("artifacts", JSONType, nullable=False),
    sa.Column("final_message_count", sa.BigInteger(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.UniqueConstraint("session_id"),  # one summary per session
    sa.CheckConstraint("final_message_count >= 0", name="count"),
)

recordings = sa.Table(
    "recordings",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("name", sa.String(200), nullable=True),
    # The replayable events, in order: a JSON list.
    sa.Column("events", JSONType, nullable=False),
    sa.Column("event_count", sa.BigInteger(), nullable=False),
    sa.Column("duration_ms", sa.BigInteger(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.CheckConstraint("event_count >= 0", name="count"),
    sa.CheckConstraint("duration_ms IS NULL OR duration_ms >= 0", name="duration"),
    sa.Index(None, "session_id", "created_at"),
)

file_changes = sa.Table(
    "file_changes",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("tool_event_id", ID, nullable=True),
    sa.Column("path", sa.String(4096), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("old_path", sa.String(4096), nullable=True),
    sa.Column("diff", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.CheckConstraint(one_of("kind", FILE_CHANGE_KINDS), name="kind"),
    sa.Index(None, "session_id", "created_at"),
    sa.Index(None, "tool_event_id"),
)

analytics_events = sa.Table(
    "analytics_events",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=False),
    sa.Column("event_type", sa.String(100), nullable=False),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("input_tokens", sa.BigInteger(), nullable=True),
    sa.Column("output_tokens", sa.BigInteger(), nullable=True),
    sa.Column("cost_usd", sa.Float(), nullable=True),
    sa.Column("duration_ms", sa.BigInteger(), nullable=True),
    sa.Column("properties", JSONType, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    _session_fk(),
    sa.CheckConstraint(
        "(input_tokens IS NULL OR input_tokens >= 0) AND "
        "(output_tokens IS NULL OR output_tokens >= 0)",
        name="tokens",
    ),
    sa.CheckConstraint("cost_usd IS NULL OR cost_usd >= 0", name="cost"),
    sa.CheckConstraint("duration_ms IS NULL OR duration_ms >= 0", name="duration"),
    sa.Index(None, "session_id", "created_at"),
    # Retention deletes a user's analytics by age.
    sa.Index(None, "owner_id", "created_at"),
)

# The session-record tables: purging a session deletes their rows first.
SESSION_RECORD_TABLES = (
    todos,
    misalignments,
    hookify_decisions,
    repo_bindings,
    snapshots,
    checkpoints,
    summaries,
    recordings,
    file_changes,
    analytics_events,
)

changes = sa.Table(
    "changes",
    metadata,
    # Insert order. Not the reading order: see log_offset.
    sa.Column("id", BigIntPK, primary_key=True, autoincrement=True),
    # The order readers follow. Assigned in commit order (store/changes.py), so a
    # reader asking for log_offset > N can never miss a row that commits later
    # with a smaller number. NULL until assigned (PostgreSQL only).
    sa.Column("log_offset", sa.BigInteger(), nullable=True, unique=True),
    sa.Column("txid", sa.BigInteger(), nullable=False),
    sa.Column("table_name", sa.String(64), nullable=False),
    sa.Column("row_key", ID, nullable=False),
    sa.Column("op", sa.String(8), nullable=False),
    sa.Column("row", JSONType, nullable=True),
    sa.Column("owner_id", ID, nullable=False),
    sa.Column("session_id", ID, nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint(one_of("op", OPERATIONS), name="op"),
    # Readers follow one user's log (sync scopes every shape to its owner).
    # Kept to this one index on purpose: every index here is written once per
    # changed row, on the hottest path there is.
    sa.Index(None, "owner_id", "log_offset"),
    sa.Index(
        "ix_changes_unsequenced",
        "id",
        sqlite_where=sa.text("log_offset IS NULL"),
        postgresql_where=sa.text("log_offset IS NULL"),
    ),
)

# One row: the last offset and txid handed out. Assigning offsets updates it,
# which both keeps offsets increasing after the log is pruned and serialises
# the assigners (a row lock on PostgreSQL, the write lock on SQLite).
log_state = sa.Table(
    "log_state",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("last_offset", sa.BigInteger(), nullable=False),
    sa.Column("last_txid", sa.BigInteger(), nullable=False),
    # Sync handles name an epoch (µs since 1970). It moves forward whenever
    # handles issued before it may no longer be served whole: the log was
    # pruned (up to pruned_offset) or the database was restored / reset
    # (reset_epoch: every older handle must refetch).
    sa.Column("epoch", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    sa.Column("reset_epoch", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    sa.Column("pruned_offset", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    sa.CheckConstraint("id = 1", name="single_row"),
)

# Where each server instance's live sync readers are: the lowest offset any of
# them asked for recently. Pruning the change log never goes past it, so a
# client that is following the log is never cut off by a prune.
sync_readers = sa.Table(
    "sync_readers",
    metadata,
    sa.Column("instance_id", ID, primary_key=True),
    sa.Column("min_offset", sa.BigInteger(), nullable=False),
    sa.Column("seen_at", UTCDateTime(), nullable=False),
)

SYNCED_TABLES = (
    "sessions",
    "messages",
    "tool_events",
    "timeline_events",
    "uploads",
    *(t.name for t in SESSION_RECORD_TABLES),
)
