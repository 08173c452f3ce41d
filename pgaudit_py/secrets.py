"""Per-tenant secrets: thin wrappers of the SQL functions, master keys, and rotation loops.

A master key is 32 random bytes written as 64 hexadecimal digits. In client-key mode this
module hands it to the session with audit.hold_master_key and a bound parameter, so the key never appears
in a statement's text (pg_stat_activity, log_statement); see `exposure_warnings` for the
settings that would still log it.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import psycopg
from psycopg import sql

from pgaudit_py.calls import Call, ValueCall, function_call, value_call
from pgaudit_py.errors import InvalidArgument, MasterKeyUnavailable, translated
from pgaudit_py.key_files import read_key_file
from pgaudit_py.session import tuples
from pgaudit_py.transactions import end_failed_transaction, require_no_transaction

MASTER_KEY_ENV = "PGAUDIT_MASTER_KEY"
NEW_MASTER_KEY_ENV = "PGAUDIT_NEW_MASTER_KEY"
_KEY_TEXT = re.compile(r"[0-9A-Fa-f]{64}")  # fullmatch: $ would let a final newline pass


@dataclass(frozen=True)
class SecretSlot:
    key: str
    description: str
    declared_at: datetime
    declared_by: str


@dataclass(frozen=True)
class StoredSecret:
    tenant_id: str
    key: str
    description: str
    key_version: int
    written_at: datetime
    written_by: str


@dataclass(frozen=True)
class MasterKey:
    version: int
    fingerprint: bytes
    key_file: str | None
    state: str
    added_at: datetime
    added_by: str
    retired_at: datetime | None


@dataclass(frozen=True)
class MasterRotation:
    from_version: int | None
    to_version: int | None
    rewrapped: int
    remaining: int
    done: bool


@dataclass(frozen=True)
class TenantKeyRotation:
    tenant_id: str
    from_version: int
    to_version: int
    reencrypted: int
    remaining: int
    done: bool


def generate_master_key(path: Path) -> None:
    """Write a new master key to `path` (mode 0600); never overwrites a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")


def parse_master_key(text: str, source: str) -> str:
    key = text.strip()
    if not _KEY_TEXT.fullmatch(key):
        # Never echo the text: it may be a key with a typo, or another file's content.
        raise InvalidArgument(f"{source} does not hold a master key (64 hexadecimal digits)")
    return key.lower()


def load_master_key(path: Path | None = None, *, env: str = MASTER_KEY_ENV) -> str:
    """The client-mode master key from a file, else from the environment variable `env`."""
    if path is not None:
        try:
            text = read_key_file(Path(path)).decode("utf-8", "replace")
        except OSError as exc:
            raise InvalidArgument(f"cannot read key file {path}: {exc.strerror}") from None
        return parse_master_key(text, f"key file {path}")
    value = os.environ.get(env)
    if value is None:
        raise MasterKeyUnavailable(f"no master key: give --master-key-file FILE or set {env}")
    return parse_master_key(value, f"environment variable {env}")


# Which keys a session may hold: its master key, and the new one it rotates to.
KEYS = ("master_key", "new_master_key")


def hold_key_statement(audit_schema: str) -> sql.Composed:
    """The key goes as a bound parameter, never in a statement's text, to hold_master_key, which
    keeps it where no other code of the session can read it (a setting, any code could)."""
    return sql.SQL("SELECT {}.hold_master_key(%s::pg_catalog.text, %s::pg_catalog.text)").format(
        sql.Identifier(audit_schema))


def _set(conn: psycopg.Connection, which: str, value: str, audit_schema: str = "audit") -> None:
    with translated():
        tuples(conn).execute(hold_key_statement(audit_schema), (value, which))


@contextmanager
def use_master_key(conn: psycopg.Connection, key: str | None, *, new_key: str | None = None,
                   audit_schema: str = "audit") -> Iterator[None]:
    """Client-key mode: let this session use `key` (and, to rotate, `new_key`); forgotten on exit.
    Both are read before either is held, so a bad second key leaves nothing held."""
    held = {which: parse_master_key(value, which) for which, value in zip(KEYS, (key, new_key), strict=True)
            if value is not None}
    try:
        for which, value in held.items():
            _set(conn, which, value, audit_schema)
        yield
    finally:
        # Left failed inside the caller's block, whose rollback forgets the keys held within it.
        if not conn.closed and not conn.broken and end_failed_transaction(conn):
            forget_keys(conn, held, audit_schema)


def forget_keys(conn: psycopg.Connection, held: Iterable[str], audit_schema: str) -> None:
    """Forgotten for good: a transaction begun for the forgetting is committed, so that a later
    rollback (the caller's, a pool's reset) does not bring the keys back. In a transaction the
    caller left open, the forgetting is its (docs/secrets.md)."""
    began = not conn.autocommit and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    for which in held:
        _set(conn, which, "", audit_schema)
    if began:
        conn.commit()


def _call(audit_schema: str, text: str) -> sql.Composed:
    return sql.SQL(text).format(s=sql.Identifier(audit_schema))


def declare_secret_call(key: str, description: str, *, audit_schema: str = "audit") -> Call[SecretSlot]:
    return function_call(audit_schema, "declare_secret", SecretSlot, {"key": "text", "description": "text"},
                         (key, description))


def put_secret_call(tenant_id: str, key: str, value: str, *, audit_schema: str = "audit") -> ValueCall:
    return value_call(audit_schema, "put_secret", {"tenant_id": "text", "key": "text", "value": "text"},
                      (tenant_id, key, value))


def read_secret_call(tenant_id: str, key: str, *, audit_schema: str = "audit") -> ValueCall:
    return value_call(audit_schema, "read_secret", {"tenant_id": "text", "key": "text"}, (tenant_id, key))


def delete_secret_call(tenant_id: str, key: str, *, audit_schema: str = "audit") -> ValueCall:
    return value_call(audit_schema, "delete_secret", {"tenant_id": "text", "key": "text"}, (tenant_id, key))


def list_secrets_call(tenant_id: str | None = None, *, audit_schema: str = "audit") -> Call[StoredSecret]:
    return function_call(audit_schema, "list_secrets", StoredSecret, {"tenant_id": "text"}, (tenant_id,))


def declare_secret(conn: psycopg.Connection, key: str, description: str, *, audit_schema: str = "audit") -> SecretSlot:
    return declare_secret_call(key, description, audit_schema=audit_schema).one(conn)


def put_secret(conn: psycopg.Connection, tenant_id: str, key: str, value: str, *, audit_schema: str = "audit") -> int:
    """Store a secret; returns the tenant's data-key version it was encrypted under."""
    return int(put_secret_call(tenant_id, key, value, audit_schema=audit_schema).one(conn))


def read_secret(conn: psycopg.Connection, tenant_id: str, key: str, *, audit_schema: str = "audit") -> str | None:
    """The secret's value, or None if none is stored; the read is recorded as an event."""
    value = read_secret_call(tenant_id, key, audit_schema=audit_schema).one(conn)
    return None if value is None else str(value)


def delete_secret(conn: psycopg.Connection, tenant_id: str, key: str, *, audit_schema: str = "audit") -> bool:
    return bool(delete_secret_call(tenant_id, key, audit_schema=audit_schema).one(conn))


def list_secrets(conn: psycopg.Connection, tenant_id: str | None = None, *,
                 audit_schema: str = "audit") -> list[StoredSecret]:
    return list_secrets_call(tenant_id, audit_schema=audit_schema).all(conn)


def add_master_key(conn: psycopg.Connection, key_file: str | None = None, *, audit_schema: str = "audit") -> MasterKey:
    """Register a master key: a server key file, or the new key the session holds (use_master_key's new_key)."""
    return function_call(audit_schema, "add_master_key", MasterKey, {"key_file": "text"}, (key_file,)).one(conn)


def rotate_master_key(conn: psycopg.Connection, batch_size: int = 100, *, audit_schema: str = "audit",
                      on_batch: Callable[[MasterRotation], None] | None = None) -> MasterRotation:
    """Run (or resume) a master-key rotation to the end, one committed batch at a time."""
    require_no_transaction(conn, "rotate_master_key commits every batch")
    while True:
        with conn.transaction():
            result = function_call(audit_schema, "rotate_master_key", MasterRotation, {"batch_size": "int4"},
                                   (batch_size,)).one(conn)
        if on_batch:
            on_batch(result)
        if result.done:
            return result


def rotate_tenant_key(conn: psycopg.Connection, tenant_id: str, batch_size: int = 100, *,
                      audit_schema: str = "audit",
                      on_batch: Callable[[TenantKeyRotation], None] | None = None) -> TenantKeyRotation:
    """Rotate a tenant's data key (or resume an interrupted rotation), one committed batch at a time."""
    require_no_transaction(conn, "rotate_tenant_key commits every batch")
    while True:
        with conn.transaction():
            result = function_call(audit_schema, "rotate_tenant_key", TenantKeyRotation,
                                   {"tenant_id": "text", "batch_size": "int4"}, (tenant_id, batch_size)).one(conn)
        if on_batch:
            on_batch(result)
        if result.done:
            return result


# Settings under which a key given to hold_master_key as a bound parameter reaches the server log,
# read from pg_settings, which gives each in its base unit (current_setting prints '250ms').
_LOGGING_PARAMETERS = ("log_statement", "log_min_duration_statement", "log_min_duration_sample",
                       "log_statement_sample_rate", "log_transaction_sample_rate", "log_parameter_max_length",
                       "log_parameter_max_length_on_error")
# Settings that log a statement's tree or plan, where a bound parameter is folded into a constant.
_PLAN_LOGGING = ("debug_print_parse", "debug_print_rewritten", "debug_print_plan")
_PRELOADS = ("shared_preload_libraries", "session_preload_libraries", "local_preload_libraries")
_AUTO_EXPLAIN = "auto_explain.log_min_duration"
_WATCHED = (*_LOGGING_PARAMETERS, *_PLAN_LOGGING, *_PRELOADS, _AUTO_EXPLAIN)
_DECIMAL = re.compile(r"[0-9]*\.?[0-9]*(?:e[+-]?[0-9]+)?")  # matches any text, if only its start
_SERVER_WIDE = ("default", "configuration file", "environment variable", "command line", "override")


def exposure_warnings(conn: psycopg.Connection, client_master_keys: int | None = None, *,
                      audit_schema: str = "audit") -> list[str]:
    """Why a client-supplied master key could reach the server log, if any master key in use is
    client-supplied (counted here unless the caller knows: install_status counts them for the
    reader); empty otherwise."""
    if client_master_keys is None:
        exists = tuples(conn).execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                                      (f"{audit_schema}.master_keys",)).fetchone()
        if not exists or not exists[0]:
            return []
        try:
            row = tuples(conn).execute(_call(audit_schema, "SELECT pg_catalog.count(*) FROM {s}.master_keys"
                                                           " WHERE key_file IS NULL"
                                                           " AND state OPERATOR(pg_catalog.<>) 'retired'")).fetchone()
        except psycopg.errors.InsufficientPrivilege:
            return []
        client_master_keys = int(row[0]) if row else 0
    if not client_master_keys:
        return []
    rows = tuples(conn).execute("SELECT name, setting, source, boot_val FROM pg_catalog.pg_settings"
                                " WHERE pg_catalog.lower(name) OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.text[])",
                                (list(_WATCHED),)).fetchall()
    session: dict[str, str] = {name.lower(): value for name, value, _, _ in rows}
    # What a session that sets nothing of its own starts with: this one's value where it is the
    # server's (its default or configuration file); where this session's own options (PGOPTIONS,
    # SET, its role's or the database's setting) hide it, the configuration files' value if this
    # role may read them (pg_file_settings), else PostgreSQL's default, with a warning that the
    # server's own setting could not be seen.
    files = _file_settings(conn)
    server = {name.lower(): value if source in _SERVER_WIDE else (files or {}).get(name.lower(), boot or "")
              for name, value, source, boot in rows}
    hidden = sorted(name.lower() for name, _, source, _ in rows
                    if source not in _SERVER_WIDE and files is None and name.lower() in _LOGGING_PARAMETERS)
    warnings = _logging_risks(session)
    warnings += [w for w in _logging_risks(server) if w not in warnings]
    if hidden:
        warnings.append(f"this session's own {', '.join(hidden)} hide the server's, which this role may not read "
                        "(pg_file_settings): ask without those settings, or as a member of pg_read_all_settings, "
                        "to know whether the key-holding sessions log the key")
    # The sessions that send the key need not log as this one does: a role's or the database's own
    # settings (ALTER ROLE ... SET, ALTER DATABASE ... SET; pg_db_role_setting, readable by all)
    # apply to them. Each is laid over the server's settings in turn.
    stored = tuples(conn).execute(
        "SELECT coalesce(r.rolname, ''), d.datname, s.setconfig FROM pg_catalog.pg_db_role_setting s"
        " LEFT JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) s.setrole"
        " LEFT JOIN pg_catalog.pg_database d ON d.oid OPERATOR(pg_catalog.=) s.setdatabase"
        " WHERE s.setdatabase OPERATOR(pg_catalog.=) 0"
        " OR d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()"
        " ORDER BY 1, 2").fetchall()
    for role, database, config in stored:
        # Names as PostgreSQL matches them: in any case (an unloaded module's are kept as written).
        pairs = (item.split("=", 1) for item in config or [] if "=" in item)
        overrides = {name.lower(): value for name, value in pairs}
        if not overrides.keys() & set(_WATCHED):
            continue
        if role or not database:
            where = f"ALTER ROLE {role or 'ALL'}" + (f" IN DATABASE {database}" if database else "")
        else:
            where = f"ALTER DATABASE {database}"
        warnings += [f"{w} ({where} sets it for its sessions)" for w in _logging_risks({**server, **overrides})
                     if w not in warnings]
    return warnings


def _file_settings(conn: psycopg.Connection) -> dict[str, str] | None:
    """The configuration files' applied values (postgresql.conf, its includes, ALTER SYSTEM's
    postgresql.auto.conf), the last of each name; None when this role may not read them."""
    allowed = tuples(conn).execute("SELECT pg_catalog.has_function_privilege("
                                   "'pg_catalog.pg_show_all_file_settings()', 'EXECUTE')").fetchone()
    if not allowed or not allowed[0]:
        return None
    rows = tuples(conn).execute("SELECT name, setting FROM pg_catalog.pg_show_all_file_settings()"
                                " WHERE applied AND error IS NULL ORDER BY seqno").fetchall()
    return {name.lower(): value for name, value in rows}


def _amount(value: str) -> float:
    """A setting's number as PostgreSQL reads it (C's strtol with base 0, or strtod), whatever its
    unit: 0, 250ms, -1, +1, 0.5, .5, 1e3, 0x40 (64), 0x1 (1.0), 0x.8p1. Only its sign and zero matter."""
    text = value.strip().strip("'\"").strip().lower()
    sign, text = (-1.0 if text.startswith("-") else 1.0), text.lstrip("+-")
    if text.startswith("inf"):
        return sign * math.inf
    hexadecimal = re.match(r"0x([0-9a-f]*\.?[0-9a-f]*(?:p[+-]?[0-9]+)?)", text)
    number = ("0x" + hexadecimal[1]) if hexadecimal else _DECIMAL.match(text).group()  # type: ignore[union-attr]
    try:
        return sign * (float.fromhex(number) if hexadecimal else float(number))
    except ValueError:  # nothing a number starts with ('0x' alone is strtol's 0)
        return 0.0


def _on(value: str) -> bool:
    """A boolean setting as PostgreSQL reads it: on, 1, or any prefix of true or yes, in any case."""
    word = value.strip().strip("'\"").lower()
    return word in ("on", "1") or (word != "" and ("true".startswith(word) or "yes".startswith(word)))


def _logging_risks(setting: dict[str, str]) -> list[str]:
    statement = setting["log_statement"].strip().strip("'\"").lower() == "all"
    duration = _amount(setting["log_min_duration_statement"]) >= 0
    sample = _amount(setting["log_min_duration_sample"]) >= 0 and _amount(setting["log_statement_sample_rate"]) > 0
    transactions = _amount(setting["log_transaction_sample_rate"]) > 0
    parameters = _amount(setting["log_parameter_max_length"]) != 0
    on_error = _amount(setting["log_parameter_max_length_on_error"]) != 0
    warnings = []
    if parameters:
        for on, name in ((statement, "log_statement = 'all'"), (duration, "log_min_duration_statement >= 0"),
                         (sample, "log_min_duration_sample with log_statement_sample_rate > 0"),
                         (transactions, "log_transaction_sample_rate > 0")):
            if on:
                warnings.append(f"{name} with log_parameter_max_length <> 0 logs the client-supplied master key "
                                "(set log_parameter_max_length = 0, or use a server key file)")
    if on_error:
        warnings.append("log_parameter_max_length_on_error <> 0 logs the client-supplied master key when a "
                        "statement fails (set it to 0, or use a server key file)")
    for name in _PLAN_LOGGING:
        if _on(setting.get(name, "off")):
            warnings.append(f"{name} = on logs the client-supplied master key (set it off, or use a server key file)")
    # Unseen unless loaded here or by a setting: shared_preload_libraries only a privileged reader sees.
    loaded = any("auto_explain" in setting.get(name, "") for name in _PRELOADS) or _AUTO_EXPLAIN in setting
    if loaded and _amount(setting.get(_AUTO_EXPLAIN, "-1")) >= 0:
        warnings.append("auto_explain with auto_explain.log_min_duration >= 0 can log the client-supplied master key "
                        "(set it to -1, or use a server key file)")
    return warnings
