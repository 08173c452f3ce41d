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
    SecretIntegrityError,
    StorageError,
    UndeclaredSecret,
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
from pgaudit_py.installer import InstallReport, InstallStatus, install, status
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
    "ArchiveConflict", "ArchiveIntegrityError", "CannotConnect", "CheckpointError", "KeyFileError",
    "MasterKeyUnavailable", "NotArchived", "ObjectTooLarge", "SecretIntegrityError", "StorageError", "UndeclaredSecret",
    "AppendOnlyViolation", "Event", "EventCount", "EventType", "HistoryIncomplete", "IdempotencyConflict",
    "InstallError", "InstallReport", "InstallStatus", "InvalidArgument", "InvalidContext",
    "InvalidInput", "InvalidKind", "InvalidPayload", "InvalidTarget", "MonthlyCount", "PgAuditError",
    "PrunePreview", "PruneResult", "SchemaViolation", "SealResult", "SealStatus", "audit_context",
    "count_events", "install", "list_events", "monthly_event_counts", "preview_prune",
    "prune_events", "record", "register_event_type", "seal", "seal_status", "status",
    "TrackedTable", "disable_tracking", "enable_tracking", "row_as_of", "row_history", "tracked_tables",
    "RowState", "row_state_as_of",
    "RateLimit", "RateLimitBypassRefused", "RateLimited", "disable_rate_limit", "enable_rate_limit", "rate_limit",
    "rate_limited", "rate_limits", "record_refusal", "set_operation_limit",
]
