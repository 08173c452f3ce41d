"""API tokens: made by the client and shown once, kept as their SHA-256 only, created and revoked
by a maintainer alone, each change an event; `pgaudit tokens create/list/revoke`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from pgaudit_py import seal
from pgaudit_py.errors import InvalidInput
from pgaudit_py.tokens import create_token, list_tokens, revoke_token


def test_the_database_keeps_the_hash_and_never_the_token(db, connect):
    new = create_token(connect("app_maintainer"), "ci-reader", "reader", tenant_id="t1")
    assert new.token.startswith(f"pga_{new.info.token_id}_") and len(new.token) > 50
    row = db.execute("SELECT token_sha256, row_to_json(a)::text FROM audit.api_tokens a").fetchone()
    assert bytes(row[0]) == hashlib.sha256(new.token.encode()).digest()
    secret = new.token.rsplit("_", 1)[1]
    # Nowhere in the row, the log or the intake: only its hash.
    everything = db.execute("SELECT (SELECT string_agg(row_to_json(e)::text, '') FROM audit.events e)").fetchone()[0]
    assert secret not in row[1] and secret not in everything and row[0].hex() not in everything


def test_creating_and_revoking_are_audit_events(db, connect):
    maintainer = connect("app_maintainer")
    new = create_token(maintainer, "ops", "maintainer", expires_at=datetime.now(timezone.utc) + timedelta(days=90))
    revoke_token(maintainer, "ops")
    seal(db)
    rows = db.execute("SELECT kind, target_type, target_id, actor_id, payload FROM audit.events"
                      " WHERE kind LIKE 'audit.api_token.%' ORDER BY seq").fetchall()
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("audit.api_token.created", "api_token", new.info.token_id, "app_maintainer"),
        ("audit.api_token.revoked", "api_token", new.info.token_id, "app_maintainer")]
    assert rows[0][4]["role"] == "maintainer" and rows[0][4]["name"] == "ops" and rows[0][4]["expires_at"]
    (listed,) = list_tokens(maintainer)
    assert listed.revoked_by == "app_maintainer" and listed.revoked_at is not None


@pytest.mark.parametrize("role", ["app_reader", "app_writer", "app_secrets", "app_attacker"])
def test_only_a_maintainer_creates_lists_or_revokes_tokens(connect, role, make_token):
    make_token(name="existing")
    conn = connect(role)
    for call in (lambda: create_token(conn, "mine", "maintainer"), lambda: list_tokens(conn),
                 lambda: revoke_token(conn, "existing"),
                 lambda: conn.execute("SELECT * FROM audit.api_tokens"),
                 lambda: conn.execute("UPDATE audit.api_tokens SET revoked_at = NULL")):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            call()


def test_the_reader_may_only_ask_whether_a_hash_is_a_live_token(connect, make_token):
    token = make_token(tenant_id="t9")
    reader = connect("app_reader")
    digest = hashlib.sha256(token.encode()).digest()
    assert reader.execute("SELECT role, tenant_id FROM audit.authenticate_api_token(%s)", (digest,)).fetchall() == [
        ("reader", "t9")]
    assert reader.execute("SELECT * FROM audit.authenticate_api_token(%s)", (b"\0" * 32,)).fetchall() == []
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        connect("app_writer").execute("SELECT * FROM audit.authenticate_api_token(%s)", (digest,))


def test_expired_and_revoked_tokens_authenticate_as_nobody(db, connect, make_token):
    expired, revoked = make_token(name="old"), make_token(name="gone")
    db.execute("UPDATE audit.api_tokens SET expires_at = now() - interval '1 second' WHERE name = 'old'")
    revoke_token(connect("app_maintainer"), "gone")
    for token in (expired, revoked):
        assert db.execute("SELECT * FROM audit.authenticate_api_token(%s)",
                          (hashlib.sha256(token.encode()).digest(),)).fetchall() == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "x", "role": "maintainer", "tenant_id": "t1"}, "only a reader token"),
    ({"name": "x", "role": "owner"}, "reader or maintainer"),
    ({"name": "bad name", "role": "reader"}, "invalid token name"),
    ({"name": "x'; DROP TABLE audit.api_tokens; --", "role": "reader"}, "invalid token name"),
    ({"name": "x", "role": "reader", "expires_at": datetime(2020, 1, 1, tzinfo=timezone.utc)}, "not in the future"),
    ({"name": "x", "role": "reader", "tenant_id": "t" * 257}, "1 to 256"),
])
def test_bad_token_requests_are_refused_and_nothing_is_written(db, connect, kwargs, message):
    with pytest.raises(InvalidInput, match=message):
        create_token(connect("app_maintainer"), **kwargs)
    assert db.execute("SELECT count(*) FROM audit.api_tokens").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM audit.events").fetchone()[0] == 0


def test_a_name_stays_taken_after_revocation(connect):
    maintainer = connect("app_maintainer")
    create_token(maintainer, "ci", "reader")
    revoke_token(maintainer, "ci")
    with pytest.raises(InvalidInput, match="exists already"):
        create_token(maintainer, "ci", "reader")
    with pytest.raises(InvalidInput, match="no unrevoked token"):
        revoke_token(maintainer, "ci")


def test_a_whole_token_pasted_to_revoke_is_revoked_by_its_id_and_never_sent(db, connect):
    maintainer = connect("app_maintainer")
    made = create_token(maintainer, "pasted", "reader")
    revoked = revoke_token(maintainer, made.token)
    assert revoked.name == "pasted" and revoked.revoked_at is not None
    secret = made.token.rsplit("_", 1)[1]
    held = db.execute("SELECT count(*) FROM audit.events WHERE payload::text LIKE %s OR target_id LIKE %s",
                      (f"%{secret}%", f"%{secret}%")).fetchone()
    assert held == (0,)
    # A token that is no longer live, pasted again: refused without repeating it.
    with pytest.raises(InvalidInput) as refused:
        revoke_token(maintainer, made.token)
    assert secret not in str(refused.value) and made.token not in repr(refused.value)


def _pgaudit(db, *args: str, role: str = "app_maintainer") -> subprocess.CompletedProcess[str]:
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user={role}"
    return subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args, "--dsn", dsn], capture_output=True,
                          text=True, timeout=60)


def test_the_cli_prints_a_token_once_and_lists_and_revokes_by_name(db):
    made = _pgaudit(db, "tokens", "create", "--name", "dashboard", "--role", "reader", "--tenant", "acme",
                    "--expires", "90d")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip()
    assert token.startswith("pga_") and "only time it is shown" in made.stderr and token not in made.stderr
    listed = _pgaudit(db, "tokens", "list", "--json")
    assert listed.returncode == 0 and token.rsplit("_", 1)[1] not in listed.stdout
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["role"], row["tenant_id"], row["revoked_at"]) == ("dashboard", "reader", "acme", None)
    assert datetime.fromisoformat(row["expires_at"]) > datetime.now(timezone.utc) + timedelta(days=89)
    assert _pgaudit(db, "tokens", "revoke", "dashboard").returncode == 0
    assert "revoked" in _pgaudit(db, "tokens", "list").stdout
    refused = _pgaudit(db, "tokens", "create", "--name", "x", "--role", "maintainer", "--tenant", "acme")
    assert refused.returncode == 2 and "only a reader token" in refused.stderr
    denied = _pgaudit(db, "tokens", "create", "--name", "y", role="app_reader")
    # The database's message is in its own language; the hint after it is ours.
    assert denied.returncode == 1 and "create_api_token (docs/cli.md names the least role" in denied.stderr
