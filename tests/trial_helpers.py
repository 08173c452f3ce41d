"""What the attacker's trials (tests/test_trust_attacks_*.py) share: acting as the owner role,
sealing and re-installing as an operator would, and reading what status and both verifiers say."""

from __future__ import annotations

import subprocess
from contextlib import suppress

import psycopg

from pgaudit_py import install, seal, status
from pgaudit_py.chain import verify_chain
from pgaudit_py.install_script import install_script
from pgaudit_py.tempdb import find_binary


def as_owner(db: psycopg.Connection, statements: str) -> None:
    """What a member of audit_owner may do (its rights, none of the superuser's)."""
    try:
        db.execute(f"SET ROLE audit_owner; {statements}")
    finally:
        db.execute("RESET ROLE")


def owner_tries(db: psycopg.Connection, statements: str) -> str | None:
    """As the owner role; the error's first line when refused, else None."""
    try:
        as_owner(db, statements)
        return None
    except psycopg.Error as e:
        with suppress(Exception):
            db.execute("RESET ROLE")
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"


def owner_publishes(db: psycopg.Connection, statements: str) -> bool:
    """The owner role, while it may create in the database (the database's owner, a member of the owner
    role, installed the package), runs statements; the right to create is taken back after.
    False when refused."""
    db.execute(f"GRANT CREATE ON DATABASE {db.info.dbname} TO audit_owner")
    try:
        as_owner(db, statements)
        return True
    except psycopg.Error:
        db.execute("RESET ROLE")
        return False
    finally:
        db.execute(f"REVOKE CREATE ON DATABASE {db.info.dbname} FROM audit_owner")


def problems_of(db: psycopg.Connection, schema: str = "audit") -> list[str]:
    return status(db, schema).problems


def verified(db: psycopg.Connection, schema: str = "audit") -> tuple[bool, str | None]:
    return tuple(db.execute(f"SELECT ok, problem FROM {schema}.verify()").fetchone())  # type: ignore[return-value]


def both_verifiers(db: psycopg.Connection, schema: str = "audit") -> tuple[bool, bool]:
    return verified(db, schema)[0], verify_chain(db, audit_schema=schema).ok


def seal_all(db: psycopg.Connection, schema: str = "audit") -> str | None:
    """Seal until nothing moves; the first failure's text, if any."""
    try:
        while seal(db, audit_schema=schema).sealed:
            pass
    except Exception as e:  # noqa: BLE001
        with suppress(Exception):
            db.execute("ROLLBACK")
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return None


def reinstall(db: psycopg.Connection, schema: str = "audit") -> str | None:
    """What status asks for: the installer again; its error's first line if it fails."""
    try:
        install(db, schema)
        return None
    except Exception as e:  # noqa: BLE001
        with suppress(Exception):
            db.execute("ROLLBACK")
        with suppress(Exception):
            db.execute("RESET ROLE")
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"


def script_reinstall(db: psycopg.Connection) -> str | None:
    """The psql script path: install_script's output applied with psql; its stderr tail if it fails."""
    try:
        script = install_script(db, "audit")
    except Exception as e:  # noqa: BLE001
        return f"install_script: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    info = db.info
    done = subprocess.run([find_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", info.host,
                           "-p", str(info.port), "-U", info.user, "-d", info.dbname, "-f", "-"],
                          input=script, capture_output=True, text=True, timeout=300)
    return None if done.returncode == 0 else done.stderr[-400:]
