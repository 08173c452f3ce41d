"""pgaudit_py: an append-only, tamper-evident audit log inside PostgreSQL."""

from pgaudit_py.context import audit_context
from pgaudit_py.errors import (
    AppendOnlyViolation,
    ArchiveConflict,
    ArchiveIntegrityError,
    CannotConnect,
    CheckpointError,
    HistoryIncomplete,
    IdempotencyConflict,
    InstallError,
    InvalidArgument,
    InvalidContext,
    InvalidInput,
    InvalidKind,
    InvalidPayload,
    InvalidTarget,
    KeyFileError,
    MasterKeyUnavailable,
    NotArchived,
    ObjectTooLarge,
    PgAuditError,
    RateLimitBypassRefused,
    RateLimited,
    SchemaViolation,
    SealConflict,
    SecretIntegrityError,
    StorageError,
    UndeclaredSecret,
    UnsupportedSession,
    translated,
)
from pgaudit_py.events import (
    Event,
    EventCount,
    EventType,
    MonthlyCount,
    count_events,
    list_events,
    monthly_event_counts,
    record,
    register_event_type,
)
from pgaudit_py.installer import InstallReport, InstallStatus, install, migrations_dir, sql_dir, status
from pgaudit_py.rate_limits import (
    RateLimit,
    disable_rate_limit,
    enable_rate_limit,
    rate_limit,
    rate_limited,
    rate_limits,
    record_refusal,
    set_operation_limit,
)
from pgaudit_py.retention import PrunePreview, PruneResult, preview_prune, prune_events
from pgaudit_py.sealing import SealResult, SealStatus, seal, seal_status
from pgaudit_py.tracking import (
    RowState,
    TrackedTable,
    disable_tracking,
    enable_tracking,
    row_as_of,
    row_history,
    row_state_as_of,
    tracked_tables,
)

__all__ = [
    "AppendOnlyViolation", "ArchiveConflict", "ArchiveIntegrityError", "CannotConnect", "CheckpointError", "Event",
    "EventCount", "EventType", "HistoryIncomplete", "IdempotencyConflict", "InstallError", "InstallReport",
    "InstallStatus", "InvalidArgument", "InvalidContext", "InvalidInput", "InvalidKind", "InvalidPayload",
    "InvalidTarget", "KeyFileError", "MasterKeyUnavailable", "MonthlyCount", "NotArchived", "ObjectTooLarge",
    "PgAuditError", "PrunePreview", "PruneResult", "RateLimit", "RateLimitBypassRefused", "RateLimited", "RowState",
    "SchemaViolation", "SealConflict", "SealResult", "SealStatus", "SecretIntegrityError", "StorageError",
    "TrackedTable", "UndeclaredSecret", "UnsupportedSession", "audit_context", "count_events", "disable_rate_limit",
    "disable_tracking", "enable_rate_limit", "enable_tracking", "install", "list_events", "migrations_dir",
    "monthly_event_counts", "preview_prune", "prune_events", "rate_limit", "rate_limited", "rate_limits", "record",
    "record_refusal", "register_event_type", "row_as_of", "row_history", "row_state_as_of", "seal", "seal_status",
    "set_operation_limit", "sql_dir", "status", "tracked_tables", "translated",
]
