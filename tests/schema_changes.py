"""What the attacker's trials of schema changes (tests/test_trust_attacks_20.py to _24.py) ask of the
database: the schema-change events recorded, whether a command was recorded or refused, a table's
columns, both verifiers' verdicts."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from click.testing import CliRunner

from pgaudit_py import InvalidTarget, enable_tracking
from pgaudit_py.chain import verify_chain
from pgaudit_py.cli import cli

SCHEMA_KINDS = ("audit.tracked_table_ddl", "audit.tracked_type_altered", "audit.tracked_table_altered")
# And the events of a tracked table, or a partition of one, gone.
GONE_KINDS = [*SCHEMA_KINDS, "audit.tracked_table_dropped", "audit.tracked_partition_removed"]

Event = tuple[str, str, dict[str, Any]]


def schema_events(db: psycopg.Connection) -> list[Event]:
    """Every schema-change event, pending or sealed, in the order written: kind, target, payload."""
    return [(r[0], r[1], r[2]) for r in db.execute(
        "SELECT kind, target_id, payload FROM audit.events WHERE kind = ANY (%s)"
        " ORDER BY occurred_at, intake_id", (list(SCHEMA_KINDS),)).fetchall()]


def names_table(event: Event, table: str) -> bool:
    kind, target, payload = event
    return target == table or table in (payload.get("tables") or [])


def recorded_or_refused(db: psycopg.Connection, conn: psycopg.Connection, command: str, table: str,
                        pg_refusals: tuple[str, ...] = ()) -> list[Event] | None:
    """Run command; return the schema-change events it recorded naming table (None when it was
    refused with PA008, or by PostgreSQL with one of pg_refusals). Fails when it ran and recorded
    nothing about the table."""
    n = len(schema_events(db))
    try:
        conn.execute(command)
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008" or exc.sqlstate in pg_refusals, (command, exc.sqlstate, exc)
        return None
    new = [e for e in schema_events(db)[n:] if names_table(e, table)]
    assert new, f"{command!r} changed {table} with nothing recorded: {schema_events(db)[n:]}"
    return new


def columns(db: psycopg.Connection, table: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        " ORDER BY attnum", (table,))]


def both_verifiers_ok(db: psycopg.Connection) -> None:
    sql_ok = db.execute("SELECT ok, problem FROM audit.verify()").fetchone()
    assert sql_ok is not None and sql_ok[0], sql_ok
    db.autocommit = True
    py = verify_chain(db)
    assert py.ok, py.problem


def hidden(*commands: str) -> str:
    """A DO block running the commands through EXECUTE of base64 text: the query string the event
    records names none of them."""
    body = "; ".join(f"EXECUTE convert_from(decode('{base64.b64encode(c.encode()).decode()}', 'base64'), 'UTF8')"
                     for c in commands)
    return f"DO $$ BEGIN {body}; END $$"


@contextmanager
def made_without_the_temporary_check(db: psycopg.Connection) -> Iterator[None]:
    """Objects made as before the audit was installed: the event trigger that refuses a permanent
    object with something temporary beneath it (audit_temporary) off while the block runs, so that
    the checks at tracking and at later changes can be tried on what it would have refused."""
    db.execute("ALTER EVENT TRIGGER audit_temporary DISABLE")
    try:
        yield
    finally:
        db.execute("ALTER EVENT TRIGGER audit_temporary ENABLE")


def tracked_or_refused(connect: Any, table: str) -> bool:
    """enable_tracking as app_maintainer: True when tracked, False when refused (PA008)."""
    try:
        enable_tracking(connect("app_maintainer"), table)
    except InvalidTarget:
        return False
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return False
    return True


def gone_events(db: psycopg.Connection) -> list[Event]:
    """Every schema-change event, and every table or partition gone, in the order written."""
    return [(r[0], r[1], r[2]) for r in db.execute(
        "SELECT kind, target_id, payload FROM audit.events WHERE kind = ANY (%s) ORDER BY occurred_at, intake_id",
        (GONE_KINDS,)).fetchall()]


def events_naming(db: psycopg.Connection, table: str, since: int) -> list[Event]:
    return [e for e in gone_events(db)[since:] if names_table(e, table)]


def ran_or_refused(conn: psycopg.Connection, commands: list[str], pg_refusals: tuple[str, ...] = ()) -> bool:
    """Run the commands; False when one was refused (PA008, or PostgreSQL with one of pg_refusals)."""
    for command in commands:
        try:
            conn.execute(command)
        except psycopg.Error as exc:
            assert exc.sqlstate == "PA008" or exc.sqlstate in pg_refusals, (command, exc.sqlstate, exc)
            return False
    return True


def checkpoint_readers(verifier: Path, directory: Path, public: Path, checkpoint: Path,
                       info: psycopg.ConnectionInfo) -> dict[str, list[str]]:
    """The three commands that read a checkpoint file, each by its name: the standalone verifier,
    `pgaudit archive verify --offline` and `pgaudit verify` (online, against `info`'s database)."""
    return {
        "standalone": [sys.executable, "-I", str(verifier), str(directory), "--public-key", str(public),
                       "--checkpoint", str(checkpoint)],
        "archive verify --offline": [sys.executable, "-m", "pgaudit_py.cli", "archive", "verify", "--offline",
                                     "--target", f"file://{directory}", "--public-key", str(public),
                                     "--checkpoint", str(checkpoint)],
        "verify --checkpoint": [sys.executable, "-m", "pgaudit_py.cli", "verify", "--checkpoint", str(checkpoint),
                                "--public-key", str(public), "--dsn",
                                f"host={info.host} port={info.port} dbname={info.dbname} user={info.user}"],
    }


def verifier_and_key(tmp_path: Path) -> tuple[Path, Path]:
    """The standalone verifier as `pgaudit archive verifier` prints it, and an Ed25519 public key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    printed = CliRunner().invoke(cli, ["archive", "verifier"])
    assert printed.exit_code == 0
    verifier = tmp_path / "verify_archive.py"
    verifier.write_text(printed.output)
    key = tmp_path / "checkpoint-ed25519.pub.pem"
    key.write_bytes(ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return verifier, key
