"""Per-tenant secrets: envelope encryption, both key modes, rotation with crashes, read auditing,
and the master key never reaching the server log, pg_stat_activity or an error message."""

from __future__ import annotations

import json
import os
import pwd
import secrets as random
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgaudit_py import secrets
from pgaudit_py.errors import (
    InvalidArgument,
    InvalidContext,
    MasterKeyUnavailable,
    SecretIntegrityError,
    UndeclaredSecret,
)
from pgaudit_py.installer import install, status
from pgaudit_py.tempdb import TemporaryCluster

Connect = Callable[..., psycopg.Connection]


class Keys:
    """Master keys made for one test; after it, none of them may be in the server log."""

    def __init__(self, cluster: TemporaryCluster):
        self.cluster = cluster
        self.made: list[str] = []
        self.log_start = Path(cluster.log).stat().st_size

    def logged(self) -> str:
        """What the server logged since the test began."""
        with Path(self.cluster.log).open("rb") as f:
            f.seek(self.log_start)
            return f.read().decode("utf-8", "replace")

    def new(self) -> str:
        key = random.token_hex(32)
        self.made.append(key)
        return key

    def file(self, key: str) -> str:
        """A key file only the server's system user can read."""
        path = self.cluster.directory / f"master-{key[:8]}.key"
        path.write_text(key + "\n")
        path.chmod(0o600)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)
        return str(path)

    def found_in(self, text: str) -> list[str]:
        """Each key made, in any of its forms, that `text` holds."""
        return [form for key in self.made for form in (key, key.upper(), bytes.fromhex(key).decode("latin-1"))
                if form in text]

    def assert_absent_from(self, text: str) -> None:
        assert self.found_in(text) == []


@pytest.fixture
def keys(pg_cluster: TemporaryCluster) -> Iterator[Keys]:
    made = Keys(pg_cluster)
    yield made
    made.assert_absent_from(made.logged())


@pytest.fixture
def app(connect: Connect) -> psycopg.Connection:
    return connect("app_secrets")


def client_key_setup(conn: psycopg.Connection, key: str) -> None:
    with secrets.use_master_key(conn, None, new_key=key):
        secrets.add_master_key(conn)
    secrets._set(conn, "master_key", key)


def events_of(db: psycopg.Connection, kind: str) -> list[tuple[object, ...]]:
    return db.execute("SELECT tenant_id, target_id, actor_id, db_role, payload, outcome FROM audit.event_intake"
                      " WHERE kind = %s ORDER BY intake_id", (kind,)).fetchall()


def test_round_trip_in_client_key_mode(db: psycopg.Connection, app: psycopg.Connection, keys: Keys) -> None:
    client_key_setup(app, keys.new())
    secrets.declare_secret(app, "stripe.api_key", "Stripe secret key")
    assert secrets.put_secret(app, "t1", "stripe.api_key", "sk_live_1") == 1
    secrets.put_secret(app, "t2", "stripe.api_key", "sk_live_2 ünïcode")
    assert secrets.read_secret(app, "t1", "stripe.api_key") == "sk_live_1"
    assert secrets.read_secret(app, "t2", "stripe.api_key") == "sk_live_2 ünïcode"
    assert secrets.read_secret(app, "t3", "stripe.api_key") is None

    listed = secrets.list_secrets(app)
    assert [(s.tenant_id, s.key, s.description, s.key_version, s.written_by) for s in listed] == [
        ("t1", "stripe.api_key", "Stripe secret key", 1, "app_secrets"),
        ("t2", "stripe.api_key", "Stripe secret key", 1, "app_secrets")]
    # What is stored is not the value.
    stored = db.execute("SELECT string_agg(encode(ciphertext, 'escape'), '') FROM audit.secret_values").fetchone()
    assert stored and "sk_live" not in stored[0]

    secrets.list_secrets(app, tenant_id="t2")
    # Listing is recorded as reading is: who listed whose secrets, and how many.
    assert events_of(db, "secret.listed") == [
        (None, None, "app_secrets", "app_secrets", {"tenant_id": None, "count": 2}, "success"),
        ("t2", None, "app_secrets", "app_secrets", {"tenant_id": "t2", "count": 1}, "success")]
    # A listing that finds nothing is recorded too.
    assert secrets.list_secrets(app, tenant_id="nobody") == []
    assert events_of(db, "secret.listed")[-1] == (
        "nobody", None, "app_secrets", "app_secrets", {"tenant_id": "nobody", "count": 0}, "success")

    reads = events_of(db, "tenant.secret.read")
    assert reads == [("t1", "stripe.api_key", "app_secrets", "app_secrets", {"found": True, "key_version": 1}, "success"),
                     ("t2", "stripe.api_key", "app_secrets", "app_secrets", {"found": True, "key_version": 1}, "success"),
                     ("t3", "stripe.api_key", "app_secrets", "app_secrets", {"found": False, "key_version": None},
                      "failure")]
    everything = db.execute("SELECT string_agg(payload::text, ' ') FROM audit.events").fetchone()
    assert everything and "sk_live" not in everything[0]

    assert secrets.delete_secret(app, "t1", "stripe.api_key") is True
    assert secrets.delete_secret(app, "t1", "stripe.api_key") is False
    assert secrets.read_secret(app, "t1", "stripe.api_key") is None
    assert [e[0] for e in events_of(db, "tenant.secret.deleted")] == ["t1"]
    assert [e[4] for e in events_of(db, "tenant.secret.written")] == [{"key_version": 1, "replaced": False}] * 2


@pytest.fixture
def server_keys(db: psycopg.Connection) -> Iterator[None]:
    """Server-key mode: the owner role may read server files. Roles belong to the whole cluster, so
    the grant is taken back afterwards: other tests' databases see the installer's default."""
    install(db, server_keys=True)
    yield
    db.execute("REVOKE pg_read_server_files FROM audit_owner")


def test_round_trip_in_server_key_mode_with_every_statement_logged(
        db: psycopg.Connection, connect: Connect, keys: Keys, server_keys: None) -> None:
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_statement = 'all'")
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_min_error_statement = 'debug5'")
    app = connect("app_secrets")
    path = keys.file(keys.new())
    added = secrets.add_master_key(db, path)  # registering a key file takes a superuser
    assert (added.version, added.state, added.key_file) == (1, "active", path)
    secrets.declare_secret(app, "webhook.token", "Webhook signing token")
    secrets.put_secret(app, "t1", "webhook.token", "whsec_1")
    assert secrets.read_secret(app, "t1", "webhook.token") == "whsec_1"
    # The session holds no key at all: the server read it from the file.
    assert app.execute("SELECT pg_catalog.to_regclass('pg_temp.pgaudit_py_master_keys')").fetchone() == (None,)
    activity = db.execute("SELECT string_agg(query, ' ') FROM pg_stat_activity").fetchone()
    keys.assert_absent_from(activity[0] if activity else "")
    assert secrets.exposure_warnings(app) == []  # nothing client-supplied to expose
    assert "read_secret" in keys.logged()  # every statement was logged (and the key, checked after, was not)


class ActivitySampler:
    """Reads pg_stat_activity.query of one backend from another connection, in a thread, over and
    over, and keeps every text it saw. `caught_up()` waits for a sample begun after the call, which
    still shows the backend's last statement (an idle backend keeps showing it)."""

    def __init__(self, watcher: psycopg.Connection, pid: int):
        self.watcher, self.pid = watcher, pid
        self.seen: set[str] = set()
        self.samples = 0
        self.changed = threading.Condition()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self.stop.is_set():
            row = self.watcher.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (self.pid,)).fetchone()
            with self.changed:
                if row and row[0]:
                    self.seen.add(row[0])
                self.samples += 1
                self.changed.notify_all()

    def caught_up(self) -> None:
        with self.changed:
            wanted = self.samples + 2  # the sample under way may have begun before the statement ended
            assert self.changed.wait_for(lambda: self.samples >= wanted, timeout=10), "the sampler is stuck"

    def __enter__(self) -> ActivitySampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def test_the_client_key_is_in_no_statement_text_logged_or_shown_at_any_step(
        db: psycopg.Connection, connect: Connect, keys: Keys) -> None:
    """Every client-key step, with every statement logged (parameters left out of the log, as the
    docs/secrets.md advises) and the backend's pg_stat_activity.query read throughout from another
    connection: the key is bound as a parameter, so it is in neither."""
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_statement = 'all'")
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_parameter_max_length = 0")
    old, new = keys.new(), keys.new()
    sampler: list[ActivitySampler] = []

    class SampledConnection(psycopg.Connection[Any]):
        """Each statement of the app's connection is seen by the sampler before the next one runs. On
        the connection, not a cursor_factory: the package's functions run through cursors of their own
        (docs/python.md), but every statement waits through its connection."""

        def wait(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return super().wait(*args, **kwargs)
            finally:
                if sampler and not sampler[0].stop.is_set():  # not once it has stopped (closing)
                    sampler[0].caught_up()

    i = db.info
    watcher = connect()
    watcher.execute("SET log_statement = 'none'")  # its thousands of samples would only fill the log
    with (SampledConnection.connect(host=i.host, port=i.port, dbname=i.dbname, user="app_secrets",
                                    autocommit=True) as app,
          ActivitySampler(watcher, app.info.backend_pid) as watching):
        sampler.append(watching)
        with secrets.use_master_key(app, None, new_key=old):
            assert secrets.add_master_key(app).state == "active"
        with secrets.use_master_key(app, old):
            secrets.declare_secret(app, "stripe.api_key", "Stripe secret key")
            secrets.put_secret(app, "t1", "stripe.api_key", "sk_live_1")
            secrets.put_secret(app, "t1", "stripe.api_key", "sk_live_2")
            secrets.put_secret(app, "t2", "stripe.api_key", "sk_live_3")
            assert secrets.read_secret(app, "t1", "stripe.api_key") == "sk_live_2"
            assert [s.tenant_id for s in secrets.list_secrets(app)] == ["t1", "t2"]
            assert secrets.delete_secret(app, "t2", "stripe.api_key") is True
        with secrets.use_master_key(app, old, new_key=new):
            assert secrets.add_master_key(app).state == "next"
            assert secrets.rotate_master_key(app, batch_size=1).done
        with secrets.use_master_key(app, new):
            assert secrets.rotate_tenant_key(app, "t1", batch_size=1).done
            assert secrets.read_secret(app, "t1", "stripe.api_key") == "sk_live_2"
        app.execute("SELECT 'client-key steps done'")
    shown, logged = "\n".join(sorted(watching.seen)), keys.logged()
    steps = ("hold_master_key", "add_master_key", "declare_secret", "put_secret", "read_secret", "list_secrets",
             "delete_secret", "rotate_master_key", "rotate_tenant_key", "client-key steps done")
    assert [step for step in steps if step not in shown] == []  # the sampler saw every step
    assert [step for step in steps if step not in logged] == []  # and every statement was logged
    assert {"pg_stat_activity": keys.found_in(shown), "server log": keys.found_in(logged)} == {
        "pg_stat_activity": [], "server log": []}
    assert db.execute("SELECT version, state, key_file FROM audit.master_keys ORDER BY 1").fetchall() == [
        (1, "retired", None), (2, "active", None)]


def test_the_key_is_in_no_statement_text_nor_error(db: psycopg.Connection, app: psycopg.Connection,
                                                    keys: Keys) -> None:
    key = keys.new()
    client_key_setup(app, key)
    secrets.declare_secret(app, "s", "a slot")
    secrets.put_secret(app, "t1", "s", "v")
    activity = db.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (app.info.backend_pid,)).fetchone()
    assert activity is not None
    keys.assert_absent_from(activity[0])
    wrong = keys.new()
    secrets._set(app, "master_key", wrong)
    with pytest.raises(MasterKeyUnavailable) as caught:
        secrets.read_secret(app, "t1", "s")
    message = f"{caught.value} {caught.value.detail} {caught.value.hint} {caught.value.__cause__}"
    assert "wrong key?" in message
    keys.assert_absent_from(message)
    with pytest.raises(MasterKeyUnavailable) as caught:
        secrets._set(app, "master_key", key[:-1] + "x")  # not hexadecimal: refused when held
    assert str(caught.value) == "the master_key given does not hold a master key (64 hexadecimal digits)"
    assert events_of(db, "tenant.secret.read") == []  # neither failed read is recorded as a read


def test_wrong_or_missing_master_key_writes_nothing(db: psycopg.Connection, app: psycopg.Connection,
                                                    keys: Keys) -> None:
    client_key_setup(app, keys.new())
    secrets.declare_secret(app, "s", "a slot")
    before = db.execute("SELECT (SELECT count(*) FROM audit.events), (SELECT count(*) FROM audit.data_keys)").fetchone()
    secrets._set(app, "master_key", keys.new())
    with pytest.raises(MasterKeyUnavailable, match="is not master key version 1"):
        secrets.put_secret(app, "t1", "s", "v")
    secrets._set(app, "master_key", "")
    with pytest.raises(MasterKeyUnavailable, match="not available in this session"):
        secrets.put_secret(app, "t1", "s", "v")
    after = db.execute("SELECT (SELECT count(*) FROM audit.events), (SELECT count(*) FROM audit.data_keys)").fetchone()
    assert after == before
    assert db.execute("SELECT count(*) FROM audit.secret_values").fetchone() == (0,)


def test_a_failure_inside_the_callers_transaction_block_surfaces_and_the_key_is_forgotten(
        db: psycopg.Connection, app: psycopg.Connection, keys: Keys) -> None:
    key = keys.new()
    client_key_setup(app, key)
    secrets._set(app, "master_key", "")
    secrets.declare_secret(app, "s", "a slot")
    with pytest.raises(UndeclaredSecret), app.transaction(), secrets.use_master_key(app, key):
        secrets.put_secret(app, "t1", "s", "v")
        secrets.put_secret(app, "t1", "undeclared", "v")  # fails the block: psycopg forbids rollback() in it
    with pytest.raises(MasterKeyUnavailable, match="not available in this session"):  # forgotten
        secrets.put_secret(app, "t1", "s", "v")
    assert db.execute("SELECT count(*) FROM audit.secret_values").fetchone() == (0,)


def test_no_master_key_set_up(db: psycopg.Connection, app: psycopg.Connection, keys: Keys) -> None:
    secrets.declare_secret(app, "s", "a slot")
    with pytest.raises(MasterKeyUnavailable, match="no master key is set up"):
        secrets.put_secret(app, "t1", "s", "v")
    assert db.execute("SELECT (SELECT count(*) FROM audit.data_keys), (SELECT count(*) FROM audit.wrapped_data_keys),"
                      " (SELECT count(*) FROM audit.secret_values)").fetchone() == (0, 0, 0)
    assert events_of(db, "tenant.secret.written") == []


def test_tampered_or_moved_ciphertext_is_an_error_never_garbage(db: psycopg.Connection, app: psycopg.Connection,
                                                                keys: Keys) -> None:
    client_key_setup(app, keys.new())
    secrets.declare_secret(app, "a", "slot a")
    secrets.declare_secret(app, "b", "slot b")
    for tenant in ("t1", "t2"):
        for slot in ("a", "b"):
            secrets.put_secret(app, tenant, slot, f"{tenant}-{slot}")
    # A flipped bit in the ciphertext.
    db.execute("UPDATE audit.secret_values SET ciphertext = set_byte(ciphertext, 20, get_byte(ciphertext, 20) # 1)"
               " WHERE tenant_id = 't1' AND key = 'a'")
    with pytest.raises(SecretIntegrityError, match="the secret asked of tenant t1 does not authenticate"):
        secrets.read_secret(app, "t1", "a")
    # t2's ciphertext copied to t1 (same slot) and slot b's to slot a (same tenant).
    db.execute("UPDATE audit.secret_values v SET ciphertext = o.ciphertext FROM audit.secret_values o"
               " WHERE v.tenant_id = 't1' AND v.key = 'b' AND o.tenant_id = 't2' AND o.key = 'b'")
    with pytest.raises(SecretIntegrityError):
        secrets.read_secret(app, "t1", "b")
    db.execute("UPDATE audit.secret_values v SET ciphertext = o.ciphertext FROM audit.secret_values o"
               " WHERE v.tenant_id = 't2' AND v.key = 'a' AND o.tenant_id = 't2' AND o.key = 'b'")
    with pytest.raises(SecretIntegrityError):
        secrets.read_secret(app, "t2", "a")
    # A wrapped data key moved to another tenant.
    db.execute("UPDATE audit.wrapped_data_keys w SET wrapped = o.wrapped FROM audit.wrapped_data_keys o"
               " WHERE w.tenant_id = 't2' AND o.tenant_id = 't1'")
    with pytest.raises(SecretIntegrityError, match="the data key of tenant t2"):
        secrets.read_secret(app, "t2", "b")
    # A failed read leaves no event claiming it succeeded.
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'tenant.secret.read'").fetchone() == (0,)


def test_undeclared_slot_and_bad_arguments(db: psycopg.Connection, app: psycopg.Connection, keys: Keys) -> None:
    client_key_setup(app, keys.new())
    with pytest.raises(UndeclaredSecret, match="this secret slot is not declared"):
        secrets.put_secret(app, "t1", "nope", "v")
    with pytest.raises(UndeclaredSecret):
        secrets.read_secret(app, "t1", "nope")
    with pytest.raises(InvalidArgument, match="invalid secret slot name"):
        secrets.declare_secret(app, "bad name", "x")
    with pytest.raises(InvalidArgument, match="needs a description"):
        secrets.declare_secret(app, "ok", " ")
    secrets.declare_secret(app, "ok", "fine")
    with pytest.raises(InvalidArgument, match="tenant_id"):
        secrets.put_secret(app, "", "ok", "v")
    with pytest.raises(InvalidArgument, match="at most 64 KiB"):
        secrets.put_secret(app, "t1", "ok", "x" * 65537)
    with pytest.raises(InvalidArgument, match="has no data key"):
        secrets.rotate_tenant_key(app, "never")
    assert db.execute("SELECT count(*) FROM audit.secret_values").fetchone() == (0,)
    assert db.execute("SELECT key FROM audit.secret_slots").fetchall() == [("ok",)]
    assert db.execute("SELECT count(*) FROM audit.data_keys").fetchone() == (0,)  # not even for t1's refused value
    assert db.execute("SELECT kind FROM audit.events WHERE kind LIKE 'tenant.%' OR kind LIKE 'secret.%'"
                      " ORDER BY intake_id").fetchall() == [("secret.master_key_added",), ("secret.slot_declared",)]


@pytest.mark.parametrize("role", ["app_reader", "app_writer", "app_maintainer", "app_attacker"])
def test_only_the_secrets_role_reads(db: psycopg.Connection, app: psycopg.Connection, connect: Connect,
                                     keys: Keys, role: str) -> None:
    key = keys.new()
    client_key_setup(app, key)
    secrets.declare_secret(app, "s", "a slot")
    secrets.put_secret(app, "t1", "s", "v")
    other = connect(role)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # nor may it hold the key
        secrets._set(other, "master_key", key)
    for call in ("SELECT audit.read_secret('t1', 's')", "SELECT * FROM audit.list_secrets()",
                 "SELECT audit.put_secret('t1', 's', 'x')", "SELECT * FROM audit.secret_values",
                 "SELECT * FROM audit.wrapped_data_keys", "SELECT audit._data_key('t1', 1)"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            other.execute(call)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="may register a key file"):
        app.execute("SELECT audit.add_master_key('/etc/passwd')")
    assert db.execute("SELECT version, key_file FROM audit.master_keys").fetchall() == [(1, None)]
    assert [e[4] for e in events_of(db, "tenant.secret.written")] == [{"key_version": 1, "replaced": False}]
    for table in ("secret_values", "wrapped_data_keys", "master_keys"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute(f"SELECT * FROM audit.{table}")
    assert secrets.read_secret(app, "t1", "s") == "v"


def test_a_read_whose_event_cannot_be_written_fails(db: psycopg.Connection, app: psycopg.Connection,
                                                    keys: Keys) -> None:
    client_key_setup(app, keys.new())
    secrets.declare_secret(app, "s", "a slot")
    secrets.put_secret(app, "t1", "s", "v")
    app.execute("SET pgaudit_py.client_addr = 'not an address'")
    with pytest.raises(InvalidContext):
        secrets.read_secret(app, "t1", "s")
    with pytest.raises(InvalidContext):  # no event, no list either
        secrets.list_secrets(app)
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind IN ('tenant.secret.read', 'secret.listed')"
                      ).fetchone() == (0,)


def _fill(app: psycopg.Connection, tenants: int, slots: int = 2) -> dict[tuple[str, str], str]:
    values = {}
    for slot in range(slots):
        secrets.declare_secret(app, f"slot{slot}", f"slot {slot}")
    for t in range(tenants):
        for slot in range(slots):
            values[(f"t{t}", f"slot{slot}")] = value = f"value-{t}-{slot}"
            secrets.put_secret(app, f"t{t}", f"slot{slot}", value)
    return values


def _read_all(conn: psycopg.Connection, values: dict[tuple[str, str], str]) -> None:
    for (tenant, slot), value in values.items():
        assert secrets.read_secret(conn, tenant, slot) == value


def _crash_mid_batch(conn: psycopg.Connection, db: psycopg.Connection, call: str, params: tuple[object, ...],
                     reader: psycopg.Connection, values: dict[tuple[str, str], str]) -> None:
    """Run one batch; while it is open, read everything from another connection without
    waiting; then kill the batch's connection before it commits."""
    conn.autocommit = False
    progress = conn.execute(call, params).fetchone()
    assert progress is not None and progress[-1] is False  # not done: the batch was mid-rotation
    reader.execute("SET lock_timeout = '2s'")
    _read_all(reader, values)
    db.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")


def test_master_rotation_survives_a_crash_and_keeps_reads_working(
        db: psycopg.Connection, connect: Connect, keys: Keys) -> None:
    old, new = keys.new(), keys.new()
    app = connect("app_secrets")
    client_key_setup(app, old)
    values = _fill(app, tenants=10)
    with secrets.use_master_key(app, old, new_key=new):
        assert secrets.add_master_key(app).state == "next"
        for _ in range(2):  # two committed batches (autocommit)
            app.execute("SELECT * FROM audit.rotate_master_key(3)")
    assert db.execute("SELECT count(*) FROM audit.wrapped_data_keys WHERE master_version = 2").fetchone() == (6,)

    crashing, reader = connect("app_secrets"), connect("app_secrets")
    secrets._set(reader, "master_key", old)
    with secrets.use_master_key(crashing, old, new_key=new):
        _crash_mid_batch(crashing, db, "SELECT * FROM audit.rotate_master_key(%s)", (3,), reader, values)
    assert db.execute("SELECT count(*) FROM audit.wrapped_data_keys WHERE master_version = 2").fetchone() == (6,)

    # Meanwhile other sessions read and write with the old key alone, and with the new key alone.
    old_only = connect("app_secrets")
    secrets._set(old_only, "master_key", old)
    _read_all(old_only, values)
    secrets.put_secret(old_only, "t_new", "slot0", "written mid-rotation")
    values[("t_new", "slot0")] = "written mid-rotation"
    new_only = connect("app_secrets")
    secrets._set(new_only, "master_key", new)
    assert secrets.read_secret(new_only, "t0", "slot0") == "value-0-0"

    resumed = connect("app_secrets")
    batches: list[secrets.MasterRotation] = []
    with secrets.use_master_key(resumed, old, new_key=new):
        final = secrets.rotate_master_key(resumed, batch_size=3, on_batch=batches.append)
    assert final.done and (final.from_version, final.to_version) == (1, 2)
    assert sum(b.rewrapped for b in batches) == 11 - 6  # ten tenants plus t_new, six done before
    assert db.execute("SELECT version, state FROM audit.master_keys ORDER BY 1").fetchall() == [
        (1, "retired"), (2, "active")]
    assert db.execute("SELECT DISTINCT master_version FROM audit.wrapped_data_keys").fetchall() == [(2,)]
    _read_all(new_only, values)
    with pytest.raises(MasterKeyUnavailable, match="is not master key version 2"):
        secrets.read_secret(old_only, "t0", "slot0")
    # The old key cannot come back.
    with secrets.use_master_key(resumed, None, new_key=old), pytest.raises(InvalidArgument, match="retired"):
        secrets.add_master_key(resumed)
    assert db.execute("SELECT version, state FROM audit.master_keys ORDER BY 1").fetchall() == [
        (1, "retired"), (2, "active")]
    assert [e[4] for e in events_of(db, "secret.master_key_rotated")] == [{"from_version": 1, "to_version": 2}]


def test_tenant_key_rotation_survives_a_crash_and_keeps_reads_working(
        db: psycopg.Connection, connect: Connect, keys: Keys) -> None:
    key = keys.new()
    app = connect("app_secrets")
    client_key_setup(app, key)
    values = _fill(app, tenants=2, slots=7)
    app.execute("SELECT * FROM audit.rotate_tenant_key('t0', 3)")  # starts: version 2, three values moved
    crashing, reader = connect("app_secrets"), connect("app_secrets")
    for conn in (crashing, reader):
        secrets._set(conn, "master_key", key)
    _crash_mid_batch(crashing, db, "SELECT * FROM audit.rotate_tenant_key(%s, %s)", ("t0", 2), reader, values)
    assert db.execute("SELECT key_version, count(*) FROM audit.secret_values WHERE tenant_id = 't0'"
                      " GROUP BY 1 ORDER BY 1").fetchall() == [(1, 4), (2, 3)]
    _read_all(reader, values)  # both versions readable mid-rotation
    assert secrets.put_secret(reader, "t0", "slot0", "rewritten") == 2  # writes use the new version
    values[("t0", "slot0")] = "rewritten"

    final = secrets.rotate_tenant_key(app, "t0", batch_size=2)
    assert final.done and (final.from_version, final.to_version) == (1, 2)
    assert db.execute("SELECT tenant_id, version FROM audit.data_keys ORDER BY 1, 2").fetchall() == [
        ("t0", 2), ("t1", 1)]
    _read_all(reader, values)
    assert [e[0] for e in events_of(db, "tenant.data_key.rotated")] == ["t0"]


@pytest.mark.parametrize(("first_batch", "second_goes"), [(2, (1, 2, True)), (4, (2, 3, True))],
                         ids=["the first mid-rotation", "the first finished"])
def test_a_tenant_rotation_that_waited_on_another_goes_on_from_what_that_one_left(
        db: psycopg.Connection, connect: Connect, keys: Keys, first_batch: int,
        second_goes: tuple[int, int, bool]) -> None:
    """Two rotations of one tenant started at once: the second waits on the first's lock and, once
    the first commits, goes on from the versions it left (finishing its rotation, or starting the
    next), instead of failing on the version the first made or finding no data key."""
    key = keys.new()
    app = connect("app_secrets")
    client_key_setup(app, key)
    values = _fill(app, tenants=1, slots=4)
    first, second = connect("app_secrets", autocommit=False), connect("app_secrets")
    for conn in (first, second):
        secrets._set(conn, "master_key", key)
    first.commit()
    first.execute("SELECT * FROM audit.rotate_tenant_key('t0', %s)", (first_batch,))
    out: list[object] = []

    def rotate() -> None:
        try:
            out.append(second.execute(
                "SELECT from_version, to_version, done FROM audit.rotate_tenant_key('t0', 4)").fetchone())
        except psycopg.Error as exc:
            out.append(exc)

    waiting = threading.Thread(target=rotate)
    waiting.start()
    for _ in range(400):
        if db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s",
                      (second.info.backend_pid,)).fetchone() == ("Lock",):
            break
        threading.Event().wait(0.05)
    else:
        raise AssertionError("the second rotation never waited for the first")
    first.commit()
    waiting.join(30)
    assert out == [second_goes]
    assert db.execute("SELECT version FROM audit.data_keys WHERE tenant_id = 't0'").fetchall() == [(second_goes[1],)]
    assert db.execute("SELECT DISTINCT key_version FROM audit.secret_values WHERE tenant_id = 't0'").fetchall() == [
        (second_goes[1],)]
    _read_all(app, values)
    assert [e[4] for e in events_of(db, "tenant.data_key.rotated")] == [
        {"from_version": v, "to_version": v + 1} for v in range(1, second_goes[1])]


def test_client_key_exposure_warnings(db: psycopg.Connection, connect: Connect, keys: Keys) -> None:
    app = connect("app_secrets")
    assert secrets.exposure_warnings(app) == []  # no key yet
    client_key_setup(app, keys.new())
    assert secrets.exposure_warnings(app) == []  # default logging exposes nothing
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_min_duration_statement = 0")
    warnings = secrets.exposure_warnings(connect())
    assert len(warnings) == 1 and warnings[0].startswith("log_min_duration_statement >= 0")
    assert warnings == status(connect()).warnings
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_parameter_max_length = 0")
    assert secrets.exposure_warnings(connect()) == []


def test_status_says_it_cannot_tell_when_the_readers_own_settings_hide_the_servers(
    db: psycopg.Connection, connect: Connect, keys: Keys
) -> None:
    """A reader that may not read the configuration files (pg_show_all_file_settings) and whose own
    log_statement (its role's, set by a superuser) hides the server's cannot see what the
    key-holding sessions log: status says so, naming the setting, rather than judging PostgreSQL's
    default."""
    client_key_setup(connect("app_secrets"), keys.new())
    db.execute("CREATE ROLE hidden_settings_reader LOGIN IN ROLE audit_reader")
    try:
        db.execute("ALTER ROLE hidden_settings_reader SET log_statement = 'none'")
        reader = connect("hidden_settings_reader")
        assert reader.execute("SELECT pg_catalog.has_function_privilege('pg_catalog.pg_show_all_file_settings()',"
                              " 'EXECUTE')").fetchone() == (False,)
        assert status(reader).warnings == [
            "this session's own log_statement hide the server's, which this role may not read (pg_file_settings): "
            "ask without those settings, or as a member of pg_read_all_settings, to know whether the key-holding "
            "sessions log the key"]
        reader.close()
        # A reader that may read the files judges by them, and has nothing to say.
        assert status(connect(options="-c log_statement=none")).warnings == []
        db.execute("ALTER ROLE hidden_settings_reader RESET log_statement")
        assert status(connect("hidden_settings_reader")).warnings == []
    finally:
        db.execute("DROP ROLE hidden_settings_reader")


def test_status_warns_of_pgcrypto_in_a_schema_a_role_that_is_no_superuser_owns(
    db: psycopg.Connection, connect: Connect
) -> None:
    """An earlier release left pgcrypto where CREATE EXTENSION put it (public, the database owner's
    in PostgreSQL 15): that schema's owner may drop it with the secrets functions. Status names the
    schema, its owner and the move; the secrets functions, bound by oid, work wherever it is."""
    home = db.execute("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace"
                      " WHERE e.extname = 'pgcrypto'").fetchone()[0]
    assert not any("pgcrypto" in w for w in status(db).warnings)
    db.execute("CREATE ROLE crypto_squatter")
    try:
        db.execute("CREATE SCHEMA squatted AUTHORIZATION crypto_squatter")
        db.execute("ALTER EXTENSION pgcrypto SET SCHEMA squatted")
        assert [w for w in status(db).warnings if "pgcrypto" in w] == [
            "pgcrypto is in schema squatted, owned by crypto_squatter, who is no superuser and may drop it with"
            " the secrets functions: move it to a superuser's schema (ALTER EXTENSION pgcrypto SET SCHEMA ...)"]
        assert status(db).problems == []
        db.execute("ALTER SCHEMA squatted OWNER TO CURRENT_USER")  # a superuser's schema: nothing to say
        assert not any("pgcrypto" in w for w in status(db).warnings)
    finally:
        db.execute(f"ALTER EXTENSION pgcrypto SET SCHEMA {home}")
        db.execute("DROP SCHEMA IF EXISTS squatted")
        db.execute("DROP ROLE crypto_squatter")


def test_command_line_in_client_key_mode(db: psycopg.Connection, keys: Keys, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from pgaudit_py.cli import cli

    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_secrets"

    def run(*args: str, input: str | None = None, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        where = [] if args[0] == "keygen" else ["--dsn", dsn]
        result = CliRunner().invoke(cli, ["secrets", *args, *where], input=input, env=env, catch_exceptions=False)
        assert "Traceback" not in result.output + result.stderr
        keys.assert_absent_from(result.output + result.stderr)
        return result.exit_code, result.stdout, result.stderr

    key_file, new_key_file = tmp_path / "master.key", tmp_path / "new.key"
    assert run("keygen", str(key_file))[0] == 0
    assert key_file.stat().st_mode & 0o777 == 0o600
    keys.made.append(key_file.read_text().strip())
    assert run("keygen", str(key_file))[0] == 2  # never overwrites a key
    env = {"PGAUDIT_MASTER_KEY": key_file.read_text()}
    assert run("init", env=env)[1] == "master key version 1 (client-supplied key) is active\n"
    # Again with the key that is active: says so, registers nothing (docs/cli.md).
    assert run("init", env=env)[:2] == (0, "master key version 1 (client-supplied key) is active\n")
    assert db.execute("SELECT version, state FROM audit.master_keys").fetchall() == [(1, "active")]
    assert run("declare", "stripe.api_key", "Stripe secret key")[0] == 0
    code, _, err = run("put", "--tenant", "t1", "stripe.api_key", input="sk_live_1", env=env)
    assert code == 0 and "data key version 1" in err
    assert run("get", "--tenant", "t1", "stripe.api_key", env=env)[:2] == (0, "sk_live_1")
    assert run("get", "--tenant", "t1", "stripe.api_key", "--master-key-file", str(key_file))[:2] == (0, "sk_live_1")
    code, _, err = run("get", "--tenant", "t1", "stripe.api_key")  # no key: server-key mode, which has none
    assert code == 1 and "master key version 1 is not available in this session" in err
    code, out, _ = run("list", "--json")
    assert code == 0 and "sk_live" not in out and json.loads(out)[0]["key"] == "stripe.api_key"

    assert run("keygen", str(new_key_file))[0] == 0
    keys.made.append(new_key_file.read_text().strip())
    code, out, err = run("rotate-master", "--new-master-key-file", str(new_key_file), "--batch-size", "1", env=env)
    assert code == 0 and "version 2 is active; version 1 is retired" in out and "re-wrapped 1 data keys" in err
    code, _, err = run("get", "--tenant", "t1", "stripe.api_key", env=env)
    assert code == 1 and "is not master key version 2" in err
    new_env = {"PGAUDIT_MASTER_KEY": new_key_file.read_text()}
    code, out, _ = run("rotate-tenant", "--tenant", "t1", env=new_env)
    assert code == 0 and "data key version 2 in use; version 1 deleted" in out
    assert run("get", "--tenant", "t1", "stripe.api_key", env=new_env)[:2] == (0, "sk_live_1")
    assert run("delete", "--tenant", "t1", "stripe.api_key")[0] == 0
    assert run("get", "--tenant", "t1", "stripe.api_key", env=new_env)[0] == 1
    # Keys are never command-line arguments.
    result = CliRunner().invoke(cli, ["secrets", "get", "--tenant", "t1", "stripe.api_key", "--master-key", "x"])
    assert result.exit_code == 2 and "No such option" in result.output


def _open_blob(key: bytes, bound: list[str], blob: bytes) -> bytes:
    """docs/secrets.md, followed outside PostgreSQL."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc_key = hmac.new(key, b"pgaudit_py enc", hashlib.sha256).digest()
    mac_key = hmac.new(key, b"pgaudit_py mac", hashlib.sha256).digest()
    body, tag = blob[:-32], blob[-32:]
    assert body[0] == 1
    assert hmac.compare_digest(tag, hmac.new(mac_key, b"\0".join(p.encode() for p in bound) + body,
                                             hashlib.sha256).digest())
    decryptor = Cipher(algorithms.AES(enc_key), modes.CBC(body[1:17])).decryptor()
    padded = decryptor.update(body[17:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def test_the_documented_format_decrypts_outside_postgresql(db: psycopg.Connection, app: psycopg.Connection,
                                                           keys: Keys) -> None:
    import hashlib
    import hmac

    key = keys.new()
    client_key_setup(app, key)
    secrets.declare_secret(app, "oauth.client_secret", "OAuth")
    secrets.put_secret(app, "tenant-ü", "oauth.client_secret", "s3cr3t ✓")
    master = bytes.fromhex(key)
    fingerprint = db.execute("SELECT fingerprint FROM audit.master_keys").fetchone()
    assert fingerprint == (hmac.new(master, b"pgaudit_py master key fingerprint v1", hashlib.sha256).digest(),)
    wrapped = db.execute("SELECT wrapped FROM audit.wrapped_data_keys").fetchone()
    value = db.execute("SELECT ciphertext FROM audit.secret_values").fetchone()
    assert wrapped and value
    data_key = _open_blob(master, ["data-key", "tenant-ü", "1", "1"], wrapped[0])
    assert _open_blob(data_key, ["value", "tenant-ü", "oauth.client_secret", "1"], value[0]).decode() == "s3cr3t ✓"


def _wait_until_blocked(db: psycopg.Connection, pid: int) -> None:
    import time

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        row = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError("the rotation never waited for the open write")


def _in_thread(conn: psycopg.Connection, query: str, params: tuple[object, ...]) -> Callable[[], tuple[object, ...]]:
    import threading

    out: list[tuple[object, ...]] = []
    thread = threading.Thread(target=lambda: out.append(conn.execute(query, params).fetchone() or ()))
    thread.start()

    def result() -> tuple[object, ...]:
        thread.join(20)
        assert out, "the rotation did not finish"
        return out[0]
    return result


def test_a_write_under_the_old_data_key_holds_off_the_end_of_its_rotation(
        db: psycopg.Connection, connect: Connect, keys: Keys) -> None:
    key = keys.new()
    app = connect("app_secrets")
    client_key_setup(app, key)
    values = _fill(app, tenants=1, slots=2)
    secrets.declare_secret(app, "late", "written during the rotation")
    writer = connect("app_secrets", autocommit=False)
    secrets._set(writer, "master_key", key)
    writer.commit()
    assert secrets.put_secret(writer, "t0", "late", "late value") == 1  # open, under data key 1
    rotator = connect("app_secrets")
    secrets._set(rotator, "master_key", key)
    first = _in_thread(rotator, "SELECT done, remaining FROM audit.rotate_tenant_key('t0', 100)", ())
    _wait_until_blocked(db, rotator.info.backend_pid)  # deleting key 1 waits for the write
    writer.commit()
    assert first() == (False, 1)  # the write landed under key 1: not done, and key 1 kept
    assert secrets.rotate_tenant_key(rotator, "t0").done
    assert db.execute("SELECT version FROM audit.data_keys WHERE tenant_id = 't0'").fetchall() == [(2,)]
    _read_all(rotator, {**values, ("t0", "late"): "late value"})


def test_a_master_rotation_waits_for_a_writer_wrapping_under_the_old_key(
        db: psycopg.Connection, connect: Connect, keys: Keys) -> None:
    old, new = keys.new(), keys.new()
    app = connect("app_secrets")
    client_key_setup(app, old)
    values = _fill(app, tenants=2, slots=1)
    with secrets.use_master_key(app, None, new_key=new):
        secrets.add_master_key(app)
    writer = connect("app_secrets", autocommit=False)
    secrets._set(writer, "master_key", old)  # holds only the old key
    writer.commit()
    secrets.put_secret(writer, "t_new", "slot0", "new tenant")  # its first data key, wrapped under 1 only
    rotator = connect("app_secrets")
    secrets._set(rotator, "master_key", old)
    secrets._set(rotator, "new_master_key", new)
    first = _in_thread(rotator, "SELECT done, remaining FROM audit.rotate_master_key(100)", ())
    _wait_until_blocked(db, rotator.info.backend_pid)  # retiring version 1 waits for the writer
    writer.commit()
    assert first() == (False, 1)  # the new tenant's key still needs wrapping under version 2
    assert secrets.rotate_master_key(rotator).done
    new_only = connect("app_secrets")
    secrets._set(new_only, "master_key", new)
    _read_all(new_only, {**values, ("t_new", "slot0"): "new tenant"})
