"""A forty-fifth attacker's trial, on the per-tenant secrets (sql/78_secrets.sql), the HTTP API's
tokens (sql/58_api_tokens.sql, pgaudit_py/server/auth.py) and the write rate limits
(sql/75_rate_limits.sql), in variants the earlier trials left: a credential handed to the wrong
argument of a function that refuses it (a master key where hold_master_key's `which` goes, a
secret value where the slot goes, a whole API token given to revoke) and whether the refusal
writes it into the error and the server log; two master-key rotations racing to their last step;
rotations killed in their last step (after the old wrappings or data key are deleted, before the
event); two data-key rotations of one tenant at once; the spellings of a tenant (case, NFD,
trailing and invisible characters); values at the edges (empty, exactly 64 KiB of four-byte
characters, one byte more, control and non-characters); every audit table and event holding no
value, data key, master key or token; master keys given wrong (raw bytes, short, spaced) through
the library; expired and revoked tokens on every endpoint and a tenant token asking for another
spelling of its tenant; and limited writes routed through a maintainer's SECURITY DEFINER function,
another table's trigger and rule, writable CTEs, a procedure that commits and a DO block, and two
sessions of one user racing across window boundaries.

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from pgaudit_py import enable_rate_limit, secrets
from pgaudit_py.tokens import revoke_token

Connect = Callable[..., psycopg.Connection]


# -- helpers ---------------------------------------------------------------------------------------


class ServerLog:
    """What the cluster's server log gained since the test began."""

    def __init__(self, cluster):
        self.path = Path(cluster.log)
        self.start = self.path.stat().st_size

    def text(self) -> str:
        with self.path.open("rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", "replace")


@pytest.fixture
def server_log(pg_cluster) -> ServerLog:
    return ServerLog(pg_cluster)


def new_key() -> str:
    return os.urandom(32).hex()


def key_forms(key: str) -> list[str]:
    return [key, key.upper(), key[:32], key[32:]]


def hold(conn: psycopg.Connection, key: str, which: str = "master_key") -> None:
    conn.execute("SELECT audit.hold_master_key(%s::text, %s::text)", (key, which))


def setup_master(conn: psycopg.Connection, key: str) -> None:
    """Registers `key` as the first master key and leaves it held by `conn`."""
    hold(conn, key, "new_master_key")
    conn.execute("SELECT audit.add_master_key()")
    hold(conn, "", "new_master_key")
    hold(conn, key)


def fill(conn: psycopg.Connection, tenants: list[str], slots: list[str]) -> dict[tuple[str, str], str]:
    values = {}
    for slot in slots:
        conn.execute("SELECT audit.declare_secret(%s, %s)", (slot, f"slot {slot}"))
    for tenant in tenants:
        for slot in slots:
            values[(tenant, slot)] = value = f"v-{tenant}-{slot}-{os.urandom(4).hex()}"
            conn.execute("SELECT audit.put_secret(%s, %s, %s)", (tenant, slot, value))
    return values


def read(conn: psycopg.Connection, tenant: str, slot: str) -> str | None:
    row = conn.execute("SELECT audit.read_secret(%s, %s)", (tenant, slot)).fetchone()
    assert row is not None
    return row[0]


def read_all(conn: psycopg.Connection, values: dict[tuple[str, str], str]) -> None:
    assert {k: read(conn, *k) for k in values} == values


def events(db: psycopg.Connection, kind: str) -> list[tuple]:
    return db.execute(
        "SELECT tenant_id, target_id, payload, outcome FROM audit.event_intake WHERE kind = %s ORDER BY intake_id",
        (kind,),
    ).fetchall()


def wait_until_waiting(db: psycopg.Connection, pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError("the session never waited for a lock")


def in_thread(conn: psycopg.Connection, query: str, params: tuple = ()) -> Callable[[], object]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(conn.execute(query, params).fetchall())
        except psycopg.Error as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()

    def result() -> object:
        thread.join(30)
        assert out, "the call did not finish"
        return out[0]

    return result


def error_text(exc: BaseException) -> str:
    parts = [str(exc)]
    diag = getattr(exc, "diag", None)
    if diag is not None:
        parts += [diag.message_primary or "", diag.message_detail or "", diag.message_hint or "", diag.context or ""]
    cause = exc.__cause__
    if cause is not None:
        parts.append(error_text(cause))
    return "\n".join(parts)


def open_blob(key: bytes, bound: list[str], blob: bytes) -> bytes:
    """docs/secrets.md's format, opened outside PostgreSQL."""
    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc_key = hmac.new(key, b"pgaudit_py enc", hashlib.sha256).digest()
    mac_key = hmac.new(key, b"pgaudit_py mac", hashlib.sha256).digest()
    body, tag = blob[:-32], blob[-32:]
    assert hmac.compare_digest(
        tag, hmac.new(mac_key, b"\0".join(p.encode() for p in bound) + body, hashlib.sha256).digest()
    )
    decryptor = Cipher(algorithms.AES(enc_key), modes.CBC(body[1:17])).decryptor()
    padded = decryptor.update(body[17:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def all_audit_text(db: psycopg.Connection) -> str:
    """Every row of every table in the audit schema, as text (bytea as hex), and the events view."""
    tables = [
        r[0]
        for r in db.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'audit' AND c.relkind IN ('r', 'p', 'v') ORDER BY 1"
        ).fetchall()
    ]
    chunks = []
    for table in tables:
        row = db.execute(f"SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {table} t").fetchone()
        chunks.append(row[0] if row else "")
    return "\n".join(chunks).lower()


# -- secrets: credentials handed to the wrong argument ----------------------------------------------


def test_a_master_key_given_where_which_goes_is_in_no_error_nor_the_server_log(db, connect, server_log):
    """Attack (a mix-up an attacker waits for): the client binds its parameters in the wrong order,
    `hold_master_key(which => key, key => 'master_key')`. _parse_key is written never to quote a
    key; the refusal of `which` comes first and says what it was given. Safe: the key is in neither
    the error the client gets nor the server log (log_min_messages logs every ERROR by default)."""
    app = connect("app_secrets")
    key = new_key()
    with pytest.raises(psycopg.Error) as caught:
        app.execute("SELECT audit.hold_master_key(which => %s::text, key => %s::text)", (key, "master_key"))
    said, logged = error_text(caught.value), server_log.text()
    assert {
        "error": [f for f in key_forms(key) if f in said],
        "server log": [f for f in key_forms(key) if f in logged],
    } == {"error": [], "server log": []}


def test_a_secret_value_given_where_the_slot_goes_is_in_no_error_nor_the_server_log(db, connect, server_log):
    """Attack (the same mix-up on a tenant's credential): put_secret with the value and the slot
    swapped (`key => value, value => slot`). The refusal of an undeclared slot quotes the slot it
    was given, which is the value. Safe: the value is in neither the error nor the server log."""
    app = connect("app_secrets")
    setup_master(app, new_key())
    app.execute("SELECT audit.declare_secret('stripe.api_key', 'Stripe')")
    value = "sk_live_" + os.urandom(12).hex()
    with pytest.raises(psycopg.Error) as caught:
        app.execute("SELECT audit.put_secret(tenant_id => %s, key => %s, value => %s)", ("t1", value, "stripe.api_key"))
    said, logged = error_text(caught.value), server_log.text()
    assert {"error": value in said, "server log": value in logged} == {"error": False, "server log": False}
    assert db.execute("SELECT count(*) FROM audit.secret_values").fetchone() == (0,)


def test_a_whole_api_token_given_to_revoke_is_in_no_error_nor_the_server_log(db, connect, make_token, server_log):
    """Attack (an operator's paste): `pgaudit tokens revoke` takes an id or a name; the operator
    pastes the token itself (what they have in hand when a token leaked). sql/58_api_tokens.sql says
    the token never reaches the database, its logs or its events. The refusal quotes what it was
    given: the live token, now in the server log while it stays valid. Safe: the revocation either
    works or fails without the token in its error or the server log."""
    maintainer = connect("app_maintainer")
    token = make_token(name="dashboard")
    secret_part = token.rsplit("_", 1)[1]
    said = ""
    try:
        revoke_token(maintainer, token)
    except Exception as exc:  # noqa: BLE001 - any refusal; what matters is what it says
        said = error_text(exc)
    logged = server_log.text()
    assert {"error": secret_part in said, "server log": secret_part in logged} == {
        "error": False,
        "server log": False,
    }


# -- secrets: rotations ------------------------------------------------------------------------------


def test_two_master_rotations_racing_to_the_end_record_one_rotation_and_one_retirement(db, connect):
    """Attack (by circumstance: a cron job and an operator both run `pgaudit secrets rotate-master`):
    rotator A finishes the rotation in a transaction not yet committed; rotator B, begun meanwhile,
    waits on A's new wrappings, then finds none left and runs the last step again after A commits.
    Safe: one secret.master_key_rotated event for one rotation, and the old version's retirement
    time is A's, not rewritten."""
    old, new = new_key(), new_key()
    app = connect("app_secrets")
    setup_master(app, old)
    values = fill(app, ["t0", "t1", "t2"], ["s"])
    hold(app, new, "new_master_key")
    assert app.execute("SELECT state FROM audit.add_master_key()").fetchone() == ("next",)

    a = connect("app_secrets", autocommit=False)
    b = connect("app_secrets")
    for conn in (a, b):
        hold(conn, old)
        hold(conn, new, "new_master_key")
    a.commit()
    assert a.execute("SELECT done FROM audit.rotate_master_key(100)").fetchone() == (True,)
    second = in_thread(b, "SELECT done FROM audit.rotate_master_key(100)")
    wait_until_waiting(db, b.info.backend_pid)
    a.commit()
    retired_by_a = db.execute("SELECT retired_at FROM audit.master_keys WHERE version = 1").fetchone()
    second()
    assert db.execute("SELECT version, state FROM audit.master_keys ORDER BY 1").fetchall() == [
        (1, "retired"),
        (2, "active"),
    ]
    assert {
        "rotated events": [e[2] for e in events(db, "secret.master_key_rotated")],
        "retired_at": db.execute("SELECT retired_at FROM audit.master_keys WHERE version = 1").fetchone(),
    } == {"rotated events": [{"from_version": 1, "to_version": 2}], "retired_at": retired_by_a}
    new_only = connect("app_secrets")
    hold(new_only, new)
    read_all(new_only, values)


@pytest.mark.parametrize("rotation", ["master", "tenant"])
def test_a_rotation_killed_in_its_last_step_leaves_every_secret_readable_and_resumes_once(db, connect, rotation):
    """Attack (by circumstance): the rotation's last batch has deleted the old wrappings (master) or
    the old data key (tenant) and is writing its event when its backend is killed (the event's
    insert is held up by a lock, then pg_terminate_backend). Safe: nothing of the last batch stays,
    every secret reads with the key(s) that read it before, and resuming finishes with exactly one
    rotation event."""
    old, new = new_key(), new_key()
    app = connect("app_secrets")
    setup_master(app, old)
    if rotation == "master":
        values = fill(app, ["t0", "t1", "t2"], ["s"])
        hold(app, new, "new_master_key")
        app.execute("SELECT audit.add_master_key()")
        app.execute("SELECT * FROM audit.rotate_master_key(2)")  # one committed batch: two of three
        call, params, kind = "SELECT done FROM audit.rotate_master_key(100)", (), "secret.master_key_rotated"
    else:
        values = fill(app, ["t0", "t1"], ["s0", "s1", "s2"])
        app.execute("SELECT * FROM audit.rotate_tenant_key('t0', 2)")  # version 2; two of three moved
        call, params, kind = "SELECT done FROM audit.rotate_tenant_key(%s, 100)", ("t0",), "tenant.data_key.rotated"
    before = {
        "wrapped": db.execute(
            "SELECT tenant_id, version, master_version, wrapped FROM audit.wrapped_data_keys ORDER BY 1, 2, 3"
        ).fetchall(),
        "values": db.execute(
            "SELECT tenant_id, key, key_version, ciphertext FROM audit.secret_values ORDER BY 1, 2"
        ).fetchall(),
        "masters": db.execute("SELECT version, state, retired_at FROM audit.master_keys ORDER BY 1").fetchall(),
    }

    locker = connect(autocommit=False)
    locker.execute("LOCK TABLE audit.event_intake IN SHARE MODE")
    victim = connect("app_secrets", autocommit=False)
    hold(victim, old)
    hold(victim, new, "new_master_key")
    victim.commit()
    pending = in_thread(victim, call, params)
    wait_until_waiting(db, victim.info.backend_pid)
    # It waits in its last step, writing its event: the deletions are done.
    assert db.execute(
        "SELECT relation::regclass::text FROM pg_locks WHERE pid = %s AND NOT granted", (victim.info.backend_pid,)
    ).fetchall() == [("audit.event_intake",)]
    deleted_meanwhile = (
        "SELECT count(*) FROM audit.wrapped_data_keys WHERE master_version = 1"
        if rotation == "master"
        else "SELECT count(*) FROM audit.data_keys WHERE tenant_id = 't0' AND version = 1"
    )
    assert db.execute(deleted_meanwhile).fetchone()[0] > 0  # still there for everyone else
    db.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
    assert isinstance(pending(), psycopg.Error)
    locker.rollback()

    after = {
        "wrapped": db.execute(
            "SELECT tenant_id, version, master_version, wrapped FROM audit.wrapped_data_keys ORDER BY 1, 2, 3"
        ).fetchall(),
        "values": db.execute(
            "SELECT tenant_id, key, key_version, ciphertext FROM audit.secret_values ORDER BY 1, 2"
        ).fetchall(),
        "masters": db.execute("SELECT version, state, retired_at FROM audit.master_keys ORDER BY 1").fetchall(),
    }
    assert after == before
    assert events(db, kind) == []
    old_only = connect("app_secrets")
    hold(old_only, old)
    read_all(old_only, values)

    resumer = connect("app_secrets")
    hold(resumer, old)
    hold(resumer, new, "new_master_key")
    for _ in range(5):
        if resumer.execute(call, params).fetchone() == (True,):
            break
    assert len(events(db, kind)) == 1
    reader = connect("app_secrets")
    hold(reader, new if rotation == "master" else old)
    read_all(reader, values)


def test_two_data_key_rotations_of_one_tenant_at_once_leave_one_key_and_every_value_readable(db, connect):
    """Attack (by circumstance): two rotate_tenant_key calls for one tenant at once, the first
    still open when the second starts. Safe: whatever the second answers, the tenant ends with one
    data key after the rotation is resumed, every value decrypts, and one rotation event per
    finished rotation, each naming versions that follow each other."""
    key = new_key()
    app = connect("app_secrets")
    setup_master(app, key)
    values = fill(app, ["t0", "t1"], ["s0", "s1", "s2", "s3"])
    a = connect("app_secrets", autocommit=False)
    b = connect("app_secrets")
    hold(a, key)
    hold(b, key)
    a.commit()
    assert a.execute("SELECT done FROM audit.rotate_tenant_key('t0', 2)").fetchone() == (False,)
    second = in_thread(b, "SELECT done FROM audit.rotate_tenant_key('t0', 2)")
    wait_until_waiting(db, b.info.backend_pid)
    a.commit()
    assert second() == [(True,)]  # it goes on from the first's version 2 (a unique violation before)
    for _ in range(10):
        if app.execute("SELECT done FROM audit.rotate_tenant_key('t0', 2)").fetchone() == (True,):
            break
    versions = db.execute("SELECT version FROM audit.data_keys WHERE tenant_id = 't0'").fetchall()
    assert len(versions) == 1
    assert (
        db.execute("SELECT DISTINCT key_version FROM audit.secret_values WHERE tenant_id = 't0'").fetchall() == versions
    )
    read_all(app, values)
    for e in events(db, "tenant.data_key.rotated"):
        assert e[2]["to_version"] == e[2]["from_version"] + 1


# -- secrets: tenants, values, leaks, wrong keys ---------------------------------------------------


def test_other_spellings_of_a_tenant_reach_none_of_its_secrets(db, connect):
    """Attack: read, list and rotate tenant 'Café-Ü' under other spellings: case, NFD, a trailing
    space, a trailing no-break space, a leading zero-width space. Safe: each reads nothing, lists
    nothing, has no data key to rotate; the tenant's own secret and data key stay as they were."""
    app = connect("app_secrets")
    setup_master(app, new_key())
    tenant = unicodedata.normalize("NFC", "Café-Ü")
    fill(app, [tenant], ["s"])
    before = db.execute("SELECT * FROM audit.wrapped_data_keys ORDER BY 1, 2, 3").fetchall()
    spellings = [
        tenant.lower(),
        tenant.upper(),
        unicodedata.normalize("NFD", tenant),
        tenant + " ",
        tenant + "\u00a0",
        "\u200b" + tenant,
    ]
    assert len(set(spellings) | {tenant}) == len(spellings) + 1
    for spelling in spellings:
        assert read(app, spelling, "s") is None
        assert app.execute("SELECT count(*) FROM audit.list_secrets(%s)", (spelling,)).fetchone() == (0,)
        with pytest.raises(psycopg.Error) as caught:
            app.execute("SELECT * FROM audit.rotate_tenant_key(%s, 10)", (spelling,))
        assert caught.value.sqlstate == "PA005"
    assert db.execute("SELECT * FROM audit.wrapped_data_keys ORDER BY 1, 2, 3").fetchall() == before
    assert db.execute("SELECT DISTINCT tenant_id FROM audit.data_keys").fetchall() == [(tenant,)]
    found = [e[2]["found"] for e in events(db, "tenant.secret.read")]
    assert found == [False] * len(spellings)


def test_values_at_the_edges_read_back_exactly_and_one_byte_over_writes_nothing(db, connect):
    """Attack: values at the edges: empty, exactly 65,536 bytes of four-byte characters, control and
    non-characters, text that looks like a stored blob, the word NULL. Safe: each reads back exactly
    (an empty value is '' and found, not None); one byte over is refused (PA005) with no row, no
    data key and no event."""
    app = connect("app_secrets")
    setup_master(app, new_key())
    edge = {
        "empty": "",
        "max4": "\U0001d11e" * 16384,
        "controls": "\x01\x07\x1b[31m\x7f\u0085\u2028\u2029\ufeff\uffff\U0010ffff",
        "bloblike": "\\x01" + "00" * 80,
        "null": "NULL",
    }
    for slot, value in edge.items():
        app.execute("SELECT audit.declare_secret(%s, 'edge')", (slot,))
        app.execute("SELECT audit.put_secret('t1', %s, %s)", (slot, value))
    got = {slot: read(app, "t1", slot) for slot in edge}
    assert got == edge
    assert [e[2]["found"] for e in events(db, "tenant.secret.read")] == [True] * len(edge)

    app.execute("SELECT audit.declare_secret('over', 'edge')")
    before = db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.data_keys)")
    before_counts = before.fetchone()
    for value in ("\U0001d11e" * 16384 + "a", "a" * 65537):
        for tenant in ("t1", "t2"):
            with pytest.raises(psycopg.Error) as caught:
                app.execute("SELECT audit.put_secret(%s, 'over', %s)", (tenant, value))
            assert caught.value.sqlstate == "PA005"
    assert db.execute("SELECT count(*) FROM audit.secret_values WHERE key = 'over'").fetchone() == (0,)
    assert (
        db.execute(
            "SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.data_keys)"
        ).fetchone()
        == before_counts
    )


def test_no_audit_table_or_event_holds_a_value_a_data_key_or_a_master_key(db, connect):
    """Attack (by reading everything a superuser, a backup or a reader sees): after writes, reads,
    listings, a deletion, a data-key rotation and a master-key rotation, look for each value (as
    text and as hex), each data key (opened from its wrapping, outside PostgreSQL) and both master
    keys in every row of every audit table and view. Safe: none is there."""
    old, new = new_key(), new_key()
    app = connect("app_secrets")
    setup_master(app, old)
    values = fill(app, ["t0", "t1"], ["a", "b"])
    read_all(app, values)
    app.execute("SELECT count(*) FROM audit.list_secrets()")
    app.execute("SELECT audit.delete_secret('t1', 'b')")
    deleted = values.pop(("t1", "b"))
    app.execute("SELECT * FROM audit.rotate_tenant_key('t0', 100)")
    hold(app, new, "new_master_key")
    app.execute("SELECT audit.add_master_key()")
    app.execute("SELECT * FROM audit.rotate_master_key(100)")
    read_all(app, values)

    data_keys = []
    for tenant, version, master_version, wrapped in db.execute(
        "SELECT tenant_id, version, master_version, wrapped FROM audit.wrapped_data_keys"
    ).fetchall():
        assert master_version == 2
        data_keys.append(open_blob(bytes.fromhex(new), ["data-key", tenant, str(version), "2"], wrapped))
    text = all_audit_text(db)
    needles = {
        **{f"value {k}": v.lower() for k, v in values.items()},
        "deleted value": deleted.lower(),
        **{f"value hex {k}": v.encode().hex() for k, v in values.items()},
        **{f"data key {i}": k.hex() for i, k in enumerate(data_keys)},
        "old master": old,
        "new master": new,
    }
    assert [name for name, needle in needles.items() if needle in text] == []


@pytest.mark.parametrize(
    "given",
    ["raw bytes", "63 digits", "65 digits", "inner space", "0x prefixed", "fullwidth digits"],
)
def test_a_master_key_given_wrong_through_the_library_is_refused_clearly_and_holds_nothing(db, connect, given):
    """Attack (a key mangled on its way to use_master_key): raw bytes instead of hex, a digit short
    or over, a space inside, a 0x prefix, full-width digits. Safe: refused before anything is held
    or written, and the refusal quotes no part of the key."""
    app = connect("app_secrets")
    key = new_key()
    setup_master(app, key)
    app.execute("SELECT audit.declare_secret('s', 'slot')")
    hold(app, "")
    mangled: object = {
        "raw bytes": bytes.fromhex(key),
        "63 digits": key[:-1],
        "65 digits": key + "0",
        "inner space": key[:32] + " " + key[32:],
        "0x prefixed": "0x" + key,
        "fullwidth digits": key.translate(str.maketrans("0123456789", "０１２３４５６７８９")),
    }[given]
    before = db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.master_keys)")
    counts = before.fetchone()
    # The kind of refusal is free; its text is not.
    with pytest.raises(Exception) as caught, secrets.use_master_key(app, mangled):  # type: ignore[arg-type]  # noqa: PT011
        secrets.put_secret(app, "t1", "s", "v")
    said = error_text(caught.value)
    assert [f for f in key_forms(key) if f in said] == []
    assert db.execute("SELECT count(*) FROM audit.secret_values").fetchone() == (0,)
    assert (
        db.execute(
            "SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.master_keys)"
        ).fetchone()
        == counts
    )
    with pytest.raises(psycopg.Error) as unavailable:
        app.execute("SELECT audit.put_secret('t1', 's', 'v')")
    assert unavailable.value.sqlstate == "PA011"  # nothing held: the session has no key


# -- tokens ---------------------------------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/v1/audit"),
    ("GET", "/v1/audit/count"),
    ("GET", "/v1/audit/monthly"),
    ("GET", "/v1/audit/stream"),
    ("HEAD", "/v1/audit/stream"),
    ("GET", "/v1/audit/verify"),
    ("GET", "/v1/audit/status"),
    ("GET", "/v1/audit/archives"),
    ("GET", "/v1/whoami"),
    ("GET", "/v1/audit/tracked"),
    ("GET", "/v1/audit/limits"),
    ("POST", "/v1/audit/archive/run"),
]


def test_expired_and_revoked_tokens_are_refused_by_every_endpoint(db, connect, start_api, make_token):
    """Attack: a reader and a maintainer token each, expired (by a second) and revoked, presented
    to every endpoint, after each was used once successfully (so the server has seen it good).
    Safe: 401 everywhere, and no stream opens."""
    server = start_api("app_maintainer", failures_allowed=1000)
    tokens = {}
    for role in ("reader", "maintainer"):
        for fate in ("expired", "revoked"):
            tokens[(role, fate)] = token = make_token(role, name=f"{role}-{fate}")
            with server.client(token) as client:
                assert client.get("/v1/whoami").status_code == 200
    db.execute("UPDATE audit.api_tokens SET expires_at = now() - interval '1 second' WHERE name LIKE '%-expired'")
    maintainer = connect("app_maintainer")
    for role in ("reader", "maintainer"):
        revoke_token(maintainer, f"{role}-revoked")
    answered = {}
    for (role, fate), token in tokens.items():
        with server.client(token) as client:
            for method, path in ENDPOINTS:
                with client.stream(method, path) as response:
                    answered[(role, fate, method, path)] = response.status_code
    assert {k: v for k, v in answered.items() if v != 401} == {}


def test_a_tenant_token_asking_for_another_spelling_of_its_tenant_is_refused(db, connect, start_api, make_token):
    """Attack: a token bound to tenant 'acme' asks for 'ACME', 'acme ', NFD-like and zero-width
    spellings, each of which has events of its own. Safe: 403 for each, and the token's own
    listing holds only 'acme' events."""
    writer = connect("app_writer")
    spellings = ["acme", "ACME", "acme ", "acme\u200b", "\u0061cme\u0301"]
    for tenant in spellings:
        writer.execute(
            "SELECT audit.record(kind => 'order.paid', tenant_id => %s, actor_id => 'u', target_type => 'order',"
            " target_id => '1')",
            (tenant,),
        )
    server = start_api("app_reader")
    token = make_token("reader", tenant_id="acme")
    with server.client(token) as client:
        refused = {s: client.get("/v1/audit", params={"tenant_id": s}).status_code for s in spellings[1:]}
        for path in ("/v1/audit/count", "/v1/audit/monthly"):
            refused.update({(path, s): client.get(path, params={"tenant_id": s}).status_code for s in spellings[1:]})
        own = client.get("/v1/audit").json()["events"]
    assert {k: v for k, v in refused.items() if v != 403} == {}
    assert {e["tenant_id"] for e in own} == {"acme"}


def test_no_table_event_or_server_log_line_holds_an_api_token(db, connect, start_api, make_token, server_log):
    """Attack (by reading everything): with every statement logged, parameters and all, create
    tokens (one bound to a tenant, one expiring), use them, revoke one by name and one by id. Safe:
    the token (and its 64-digit secret part) is in no audit table, event or log line."""
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_statement = 'all'")
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_min_error_statement = 'debug5'")
    server = start_api("app_maintainer", failures_allowed=1000)
    made = [make_token("reader", name="dash"), make_token("reader", name="acme-dash", tenant_id="acme")]
    made.append(make_token("maintainer", name="archiver"))
    for token in made:
        with server.client(token) as client:
            assert client.get("/v1/whoami").status_code == 200
    maintainer = connect("app_maintainer")
    revoke_token(maintainer, "dash")
    token_id = made[1].split("_")[1]
    revoke_token(maintainer, token_id)
    with server.client(made[0]) as client:
        assert client.get("/v1/audit").status_code == 401
    text = all_audit_text(db) + server_log.text().lower()
    assert "read" in server_log.text()  # statements were logged
    assert [t[:20] for t in made if t.rsplit("_", 1)[1] in text] == []


# -- rate limits ------------------------------------------------------------------------------------


@pytest.fixture
def limited(db, connect):
    """public.notes (the maintainer's), limited to 5 writes per user per minute; app_writer may
    write it and create objects in public."""
    db.execute("""CREATE TABLE public.notes (id serial PRIMARY KEY, body text, at timestamptz DEFAULT clock_timestamp());
                  ALTER TABLE public.notes OWNER TO app_maintainer;
                  GRANT ALL ON public.notes, public.notes_id_seq TO app_writer;
                  GRANT CREATE ON SCHEMA public TO app_writer""")
    enable_rate_limit(connect("app_maintainer"), "public.notes", per_user_per_minute=5, per_tenant_per_minute=1000)
    yield "public.notes"
    db.execute("REVOKE CREATE ON SCHEMA public FROM app_writer")


# Each route: its setup (as the writer), the statement it repeats, and the rows one counted write
# lands (one write is one statement whatever its row count: docs/rate-limits.md).
ROUTES = {
    "maintainer's security definer function": (None, "SELECT public.add_note_as_maintainer()", 1),
    "trigger of the writer's table writing twice": (
        """CREATE TABLE public.mine (x int);
           CREATE FUNCTION public.mine_trg() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN INSERT INTO public.notes (body) VALUES ('t1'); INSERT INTO public.notes (body) VALUES ('t2');
                 RETURN NULL; END $$;
           CREATE TRIGGER mine_trg AFTER INSERT ON public.mine FOR EACH STATEMENT EXECUTE FUNCTION public.mine_trg()""",
        "INSERT INTO public.mine VALUES (1)",
        1,
    ),
    "rule of the writer's table": (
        """CREATE TABLE public.mine (x int);
           CREATE RULE mine_rule AS ON INSERT TO public.mine DO ALSO INSERT INTO public.notes (body) VALUES ('r')""",
        "INSERT INTO public.mine VALUES (1), (2), (3)",
        3,
    ),
    "two writable CTEs and the main statement": (
        None,
        "WITH a AS (INSERT INTO public.notes (body) VALUES ('a') RETURNING 1),"
        " b AS (INSERT INTO public.notes (body) VALUES ('b') RETURNING 1)"
        " INSERT INTO public.notes (body) SELECT 'c' FROM a, b",
        3,
    ),
    "procedure committing between writes": (
        """CREATE PROCEDURE public.spray() LANGUAGE plpgsql AS $$
           BEGIN FOR i IN 1..3 LOOP
               BEGIN INSERT INTO public.notes (body) VALUES ('p'); EXCEPTION WHEN SQLSTATE 'PA009' THEN NULL; END;
               COMMIT; END LOOP; END $$""",
        "CALL public.spray()",
        1,
    ),
    "DO block swallowing refusals": (
        None,
        """DO $$ BEGIN FOR i IN 1..4 LOOP
               BEGIN INSERT INTO public.notes (body) VALUES ('d'); EXCEPTION WHEN SQLSTATE 'PA009' THEN NULL; END;
           END LOOP; END $$""",
        1,
    ),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_limited_user_gets_no_more_writes_in_through_another_route(db, connect, limited, route):
    """Attack: a limited user (5 writes a minute) writes the limited table through a route other
    than a plain statement of its own: a SECURITY DEFINER function the (unlimited) maintainer owns,
    a trigger or a rule of a table of its own, writable CTEs, a procedure that commits between
    writes, a DO block that swallows refusals. Safe: at most 5 counted writes land however often it
    tries (5 rows, or 5 statements' rows where one statement writes several)."""
    setup, statement, rows_per_write = ROUTES[route]
    db.execute("""CREATE FUNCTION public.add_note_as_maintainer() RETURNS void LANGUAGE sql SECURITY DEFINER
                  SET search_path = pg_catalog AS $$ INSERT INTO public.notes (body) VALUES ('sd') $$;
                  ALTER FUNCTION public.add_note_as_maintainer() OWNER TO app_maintainer;
                  GRANT EXECUTE ON FUNCTION public.add_note_as_maintainer() TO app_writer""")
    writer = connect("app_writer")
    if setup:
        writer.execute(setup)
    writer.execute(
        "SELECT set_config('pgaudit_py.tenant_id', 't1', false), set_config('pgaudit_py.actor_id', 'mallory', false)"
    )
    for _ in range(12):
        try:
            writer.execute(statement)
        except psycopg.Error as exc:
            assert exc.sqlstate == "PA009", exc
    landed = db.execute("SELECT count(*) FROM public.notes").fetchone()[0]
    assert landed <= 5 * rows_per_write
    assert landed > 0  # the route reached the table


def test_two_sessions_of_one_user_racing_across_window_boundaries_stay_within_the_limit(db, connect, limited):
    """Attack (window boundary races): two sessions of one user write as fast as they can for about
    three one-second windows against a limit of 4 a second. Safe: no fixed window admits more than
    4 writes, and no sliding second more than 8 (docs/rate-limits.md's bound)."""
    enable_rate_limit(
        connect("app_maintainer"), "public.notes", per_user_per_minute=4, per_tenant_per_minute=None, window_seconds=1
    )
    stop = time.monotonic() + 3.2
    sessions = [connect("app_writer"), connect("app_writer")]

    def hammer(conn: psycopg.Connection) -> None:
        conn.execute("SELECT set_config('pgaudit_py.actor_id', 'mallory', false)")
        while time.monotonic() < stop:
            try:
                conn.execute("INSERT INTO public.notes (body) VALUES ('x')")
            except psycopg.Error as exc:
                assert exc.sqlstate == "PA009", exc

    threads = [threading.Thread(target=hammer, args=(c,)) for c in sessions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    stamps = [
        r[0] for r in db.execute("SELECT extract(epoch FROM at)::float8 FROM public.notes ORDER BY at").fetchall()
    ]
    assert stamps, "nothing was admitted"
    per_window = Counter(int(s // 1) for s in stamps)
    sliding = max(sum(1 for t in stamps if s <= t < s + 1) for s in stamps)
    assert {"most in a fixed window": max(per_window.values()), "most in a sliding second": sliding} == {
        "most in a fixed window": min(max(per_window.values()), 4),
        "most in a sliding second": min(sliding, 8),
    }
