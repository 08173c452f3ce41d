"""The one place where database errors become pgaudit_py exceptions.

Each project SQLSTATE (class ``PA``) has one exception class; any other psycopg error passes
through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import ClassVar

import psycopg


class PgAuditError(Exception):
    """Base of every error pgaudit_py raises on purpose."""

    sqlstate: ClassVar[str | None] = None

    def __init__(self, message: str, *, detail: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.detail = detail
        self.hint = hint


class InvalidInput(PgAuditError):
    """Bad input, refused before anything was written (the CLI exits 2)."""


class InvalidKind(InvalidInput):
    sqlstate = "PA001"


class InvalidPayload(InvalidInput):
    sqlstate = "PA002"


class SchemaViolation(InvalidInput):
    """The payload does not match the schema registered for a strict kind."""

    sqlstate = "PA003"


class IdempotencyConflict(InvalidInput):
    """An idempotency key came back with different content."""

    sqlstate = "PA004"


class InvalidArgument(InvalidInput):
    sqlstate = "PA005"


class AppendOnlyViolation(PgAuditError):
    """Someone tried to change or remove events outside seal and prune."""

    sqlstate = "PA006"


class InvalidContext(InvalidInput):
    """A pgaudit_py.* setting holds a value that cannot be used."""

    sqlstate = "PA007"


class InvalidTarget(InvalidInput):
    """A table that cannot be tracked (a view, a partition, the audit log itself), or an action
    on a tracked table that would stop its capture."""

    sqlstate = "PA008"


class RateLimited(PgAuditError):
    """A write limit was reached; `retry_after` says when to try again (seconds). `recorded`
    turns true once record_refusal has committed its security.rate_limited event."""

    sqlstate = "PA009"
    recorded = False

    @property
    def retry_after_ms(self) -> int:
        match = re.search(r"retry_after_ms=(\d+)", self.detail or "")
        return int(match.group(1)) if match else 1000

    @property
    def retry_after(self) -> float:
        return self.retry_after_ms / 1000


class RateLimitBypassRefused(PgAuditError):
    """pgaudit_py.rate_limit_bypass was set by a role that is not the maintainer."""

    sqlstate = "PA010"


class MasterKeyUnavailable(PgAuditError):
    """No usable master key: none supplied, the wrong one, a retired version, or an unreadable
    key file. Nothing was written."""

    sqlstate = "PA011"


class SecretIntegrityError(PgAuditError):
    """A stored ciphertext or wrapped key failed authentication: changed, or moved to another
    tenant or slot."""

    sqlstate = "PA012"


class UndeclaredSecret(InvalidInput):
    """The slot was never declared with declare_secret."""

    sqlstate = "PA013"


class NotArchived(PgAuditError):
    """delete_archived was asked to delete events that no recorded archive batch covers."""

    sqlstate = "PA014"


class HistoryIncomplete(PgAuditError):
    """row_history/row_as_of cannot answer: a captured event of that row (or a TRUNCATE of its
    table) is in the quarantine, so the history would leave out a change."""

    sqlstate = "PA015"


class SealConflict(PgAuditError):
    """seal() found the log other than it writes it: events at or past the seq it writes next, which
    it did not write, or (when an event fails) the log, the intake, a package function or the
    partition not as installed. It seals nothing until that is mended (`pgaudit status` names it)."""

    sqlstate = "PA017"


class InstallError(PgAuditError):
    """The installer refused to proceed (for example, a schema it did not create)."""


class CheckpointError(PgAuditError):
    """A checkpoint that cannot be made, read, or does not match the chain."""


class KeyFileError(CheckpointError, InvalidInput):
    """A key or checkpoint file that cannot be used: missing, unreadable, of the wrong kind, or
    (when writing one) already there. Bad input: the CLI exits 2."""


class StorageError(PgAuditError):
    """The archive target failed, or holds something it should not."""


class ObjectTooLarge(StorageError):
    """An archive object is larger than what it should hold can be (refused before it is read)."""


class ArchiveConflict(StorageError):
    """The target holds different content under a key this batch needs: archiving stops."""


class ArchiveIntegrityError(StorageError):
    """The log does not verify for a batch about to be archived: nothing is uploaded."""


class CannotConnect(PgAuditError):
    """The server could not be reached, or refused the session."""


class UnsupportedSession(PgAuditError):
    """The session's settings would make what the package reads wrong or unreadable (pgaudit_py.session)."""


_BY_SQLSTATE: dict[str, type[PgAuditError]] = {
    cls.sqlstate: cls
    for cls in (InvalidKind, InvalidPayload, SchemaViolation, IdempotencyConflict,
                InvalidArgument, AppendOnlyViolation, InvalidContext, InvalidTarget, RateLimited,
                RateLimitBypassRefused, MasterKeyUnavailable, SecretIntegrityError, UndeclaredSecret,
                NotArchived, HistoryIncomplete, SealConflict)
    if cls.sqlstate
}


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise project SQLSTATEs as their exception class; leave every other error alone."""
    try:
        yield
    except psycopg.Error as exc:
        cls = _BY_SQLSTATE.get(exc.sqlstate or "")
        if cls is None:
            raise
        diag = exc.diag
        raise cls(diag.message_primary or str(exc), detail=diag.message_detail,
                  hint=diag.message_hint) from exc
