"""A fiftieth attacker's trial, against this session's mends: rotate_tenant_key locking again until
what it locked is what a fresh statement sees (8fcfaea); every seal() round notifying so that none
can be prepared, and the intake's rotation and the archiver's claim reading pg_stat_activity afresh
(bdf90b3); and the command line's `the value given`, token names without a run of 32 hex digits,
interval text only in forms PostgreSQL takes, `pgaudit status` judging by the server's settings, and
the offline verifier naming what it cannot read (a13e047).

New variants: a tenant rotation whose caller runs at REPEATABLE READ or SERIALIZABLE with a
snapshot older than another rotation's start (the loop's "fresh statement" is no fresher than the
transaction's snapshot), three rotations and writers of the same tenant racing; a maintainer's
transaction that PREPAREs after another function the background worker needs the locks of
(set_archive_settings, prune_events, next_archive_batch, claim_archiver), in a cluster of this
module's own with max_prepared_transactions; on the command line, a numeric secret as an extra
argument (numbers are never "values"), a key with a trailing space, a key file's path that pathlib
normalizes ('./KEY', 'KEY/'), a 64-character key as a table's name that PostgreSQL truncates to 63,
and a key as the database of a DSN; a token's secret part split into runs shorter than 32 by
characters a name may hold, as a name and to revoke; interval text whose unit matches only by
Unicode case folding ('dayſ', 'mınutes'); a server configuration that logs every statement, read
by `pgaudit status` in a session whose own options (PGOPTIONS, its role's ALTER ROLE ... SET) turn
it off; and FIFOs, devices, loops and directories in the archive directory for the offline
verifier.

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from test_trust_attacks_44 import ROOT, keys_in
from test_trust_attacks_46 import (
    ServerLog,
    error_text,
    fill,
    hold,
    key_forms,
    new_key,
    setup_master,
    wait_until_waiting,
)
from test_trust_attacks_48 import one_batch

from pgaudit_py import record, seal, secrets
from pgaudit_py.archive import archive_if_due
from pgaudit_py.archive_targets import open_target
from pgaudit_py.checkpoint import load_keys
from pgaudit_py.errors import InvalidArgument
from pgaudit_py.installer import install
from pgaudit_py.retention import prune_events
from pgaudit_py.tempdb import TemporaryCluster
from pgaudit_py.tokens import create_token, list_tokens, revoke_token
from pgaudit_py.worker import run_worker


@pytest.fixture
def server_log(pg_cluster) -> ServerLog:
    return ServerLog(pg_cluster)


def said_by(call: Callable[[], object]) -> str:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - any refusal; what matters is what it says
        return error_text(exc)
    return ""


# ====================== 1. rotate_tenant_key: callers at other isolation levels, racers ======================


KEYS: dict[int, str] = {}  # id(app connection) -> the master key it holds


def tenant_with_secrets(connect, tenant: str = "t1", n: int = 3) -> tuple[psycopg.Connection, dict]:
    app = connect("app_secrets")
    setup_master(app, key := new_key())
    KEYS[id(app)] = key
    values = fill(app, [tenant], [f"s{k}" for k in range(n)])
    return app, values


def holding(connect, app: psycopg.Connection, autocommit: bool = True) -> psycopg.Connection:
    """Another app_secrets session holding the same master key as app."""
    conn = connect("app_secrets", autocommit=autocommit)
    hold(conn, KEYS[id(app)])
    if not autocommit:
        conn.commit()
    return conn


def data_key_versions(db, tenant: str) -> list[int]:
    return [r[0] for r in db.execute("SELECT version FROM audit.data_keys WHERE tenant_id = %s ORDER BY 1",
                                     (tenant,)).fetchall()]


def readable(conn: psycopg.Connection, values: dict) -> dict:
    return {k: conn.execute("SELECT audit.read_secret(%s, %s)", k).fetchone()[0] for k in values}


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_a_rotation_whose_snapshot_predates_another_rotation_fails_cleanly(db, connect, isolation):
    """Attack (a caller's isolation level, which rotate_tenant_key does not check): B's transaction
    at REPEATABLE READ or SERIALIZABLE takes its snapshot; A starts the tenant's rotation (a second
    data key) and commits; B calls rotate_tenant_key. B's loop compares what it locked with 'a fresh
    statement', which at these levels reads B's old snapshot: both see one version, so B starts a
    rotation of its own and inserts the version A made. Safe: B is refused by pgaudit_py's own error
    or a serialization failure (to retry), never a raw unique violation; the rotation then finishes
    with one data key and every value readable."""
    app, values = tenant_with_secrets(connect)
    b = holding(connect, app, autocommit=False)
    b.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    b.execute("SELECT 1")  # the snapshot is taken
    first = app.execute("SELECT to_version, done FROM audit.rotate_tenant_key('t1', 1)").fetchone()
    assert first == (2, False)
    state = ""
    try:
        b.execute("SELECT * FROM audit.rotate_tenant_key('t1', 1)")
    except psycopg.Error as exc:
        state = exc.sqlstate or ""
    b.rollback()
    while not app.execute("SELECT done FROM audit.rotate_tenant_key('t1', 100)").fetchone()[0]:
        pass
    assert {"B's error": state if state in ("23505", "XX000") else "clean",
            "data keys": data_key_versions(db, "t1"), "values": readable(app, values)} == {
        "B's error": "clean", "data keys": [2], "values": values}


def test_three_rotations_and_writers_of_one_tenant_racing_leave_one_key_and_every_value(db, connect):
    """Attack (by circumstance, widened from the mend's two): rotation A re-encrypts a first batch
    uncommitted; rotations B and C wait on it, as do a put_secret of a new slot and a delete_secret
    of an old one; A commits; each rotator then goes on until done. Safe: no error but a clean
    refusal, one data key, every value written readable, the deleted one gone."""
    app, values = tenant_with_secrets(connect, n=4)
    app.execute("SELECT audit.declare_secret('extra', 'x')")
    a = holding(connect, app, autocommit=False)
    b, c, w, d = (holding(connect, app) for _ in range(4))
    assert a.execute("SELECT to_version, done FROM audit.rotate_tenant_key('t1', 1)").fetchone() == (2, False)
    results: dict[str, object] = {}

    def go(name: str, conn: psycopg.Connection, query: str, params: tuple = ()) -> threading.Thread:
        def run() -> None:
            try:
                results[name] = conn.execute(query, params).fetchall()
            except psycopg.Error as exc:
                results[name] = exc
        t = threading.Thread(target=run)
        t.start()
        return t

    threads = [go("B", b, "SELECT done FROM audit.rotate_tenant_key('t1', 1)")]
    wait_until_waiting(db, b.info.backend_pid)
    threads.append(go("C", c, "SELECT done FROM audit.rotate_tenant_key('t1', 1)"))
    wait_until_waiting(db, c.info.backend_pid)
    threads.append(go("put", w, "SELECT audit.put_secret('t1', 'extra', 'late-value')"))
    threads.append(go("delete", d, "SELECT audit.delete_secret('t1', 's3')"))
    time.sleep(0.3)
    a.commit()
    for t in threads:
        t.join(30)
    errors = {k: (v.sqlstate, str(v)[:120]) for k, v in results.items() if isinstance(v, Exception)}
    for conn in (a, b, c):
        for _ in range(20):
            try:
                row = conn.execute("SELECT done FROM audit.rotate_tenant_key('t1', 2)").fetchone()
            except psycopg.Error as exc:
                errors[f"after {conn.info.backend_pid}"] = (exc.sqlstate, str(exc)[:120])
                with suppress(psycopg.Error):
                    conn.rollback()
                break
            if not conn.autocommit:
                conn.commit()
            if row and row[0]:
                break
    want = {k: v for k, v in values.items() if k != ("t1", "s3")} | {("t1", "extra"): "late-value"}
    got = readable(app, {**want, ("t1", "s3"): None})
    assert {"errors": {k: v for k, v in errors.items() if v[0] not in ("PA005", "40001", "40P01")},
            "data keys": len(data_key_versions(db, "t1")), "values": got} == {
        "errors": {}, "data keys": 1, "values": {**want, ("t1", "s3"): None}}


def test_a_rotation_killed_while_it_waits_leaves_the_other_to_finish(db, connect):
    """Attack (by circumstance): B waits on A's uncommitted first batch and is terminated; A commits
    and finishes. Safe: one data key, every value readable, one rotation recorded."""
    app, values = tenant_with_secrets(connect)
    a = holding(connect, app, autocommit=False)
    b = holding(connect, app)
    assert a.execute("SELECT done FROM audit.rotate_tenant_key('t1', 1)").fetchone() == (False,)
    out: list[object] = []
    t = threading.Thread(target=lambda: out.append(said_by(
        lambda: b.execute("SELECT audit.rotate_tenant_key('t1', 1)"))))
    t.start()
    wait_until_waiting(db, b.info.backend_pid)
    db.execute("SELECT pg_terminate_backend(%s)", (b.info.backend_pid,))
    t.join(20)
    a.commit()
    a.autocommit = True
    while not a.execute("SELECT done FROM audit.rotate_tenant_key('t1', 100)").fetchone()[0]:
        pass
    rotated = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'tenant.data_key.rotated'").fetchone()[0]
    assert (data_key_versions(db, "t1"), readable(app, values), rotated) == ([2], values, 1)


# ====================== 2. a maintainer's prepared transaction and the worker ======================

MAINT, WRITER, READER = "t50_maint", "t50_writer", "t50_reader"
ROLES = {MAINT: "audit_maintainer", WRITER: "audit_writer", READER: "audit_reader"}


@pytest.fixture(scope="module")
def cl() -> Iterator[TemporaryCluster]:
    with TemporaryCluster.start(settings={"max_prepared_transactions": "10"}) as started:
        with psycopg.connect(started.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE t50_template")
        try:
            with psycopg.connect(started.dsn("t50_template"), autocommit=True) as admin:
                install(admin)
                for role, group in ROLES.items():
                    admin.execute(f"CREATE ROLE {role} LOGIN")
                    admin.execute(f"GRANT {group} TO {role}")
            yield started
        finally:
            with psycopg.connect(started.dsn(), autocommit=True) as admin:
                for name, in admin.execute("SELECT datname FROM pg_database WHERE datname LIKE 't50_%'").fetchall():
                    admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
                for role in ROLES:
                    admin.execute(f"DROP ROLE IF EXISTS {role}")


class Db:
    def __init__(self, cluster: TemporaryCluster, name: str) -> None:
        self.cluster, self.name = cluster, name
        self.opened: list[psycopg.Connection] = []
        self.admin = self.conn()

    def conn(self, role: str | None = None, autocommit: bool = True) -> psycopg.Connection:
        c = psycopg.connect(self.cluster.dsn(self.name, role), autocommit=autocommit)
        self.opened.append(c)
        return c

    def rollback_prepared(self) -> None:
        for gid, in self.admin.execute("SELECT gid FROM pg_prepared_xacts WHERE database = %s",
                                       (self.name,)).fetchall():
            self.admin.execute(f"ROLLBACK PREPARED '{gid}'")


@pytest.fixture
def d(cl: TemporaryCluster) -> Iterator[Db]:
    name = f"t50_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cl.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE t50_template")
    db = Db(cl, name)
    try:
        yield db
    finally:
        with suppress(psycopg.Error):
            db.rollback_prepared()
        for c in db.opened:
            with suppress(psycopg.Error):
                c.close()
        with psycopg.connect(cl.dsn(), autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def archive_ready(d: Db, tmp_path: Path) -> tuple[Callable[[psycopg.Connection], None], Path]:
    """Sealed events to archive, the worker's hour come (00 UTC), and the worker's daily duty."""
    w = d.conn(WRITER)
    for k in range(3):
        record(w, "t50.e", payload={"k": k})
    seal(d.admin)
    d.admin.execute("SELECT audit.set_archive_settings(interval '1 millisecond', 100, 0)")
    time.sleep(0.01)
    signing, _public = keys_in(tmp_path)
    directory = tmp_path / "archive"
    directory.mkdir()
    target, keys = open_target(f"file://{directory}"), load_keys(signing_key=signing)
    return (lambda conn: archive_if_due(conn, target, keys) and None), directory


PREPARED_BY_A_MAINTAINER = {
    # the control: the same call, committed (the worker seals, and archives)
    "HELD: set_archive_settings committed": "SELECT audit.set_archive_settings(interval '1 millisecond', 100, 0)",
    # an UPDATE of archive_settings' one row: claim_daily_archive_run updates it too
    "set_archive_settings": "SELECT audit.set_archive_settings(interval '1 millisecond', 100, 0)",
    # LOCK archive_batches IN SHARE ROW EXCLUSIVE MODE: next_archive_batch takes the same
    "prune_events": "SELECT audit.prune_events(interval '30 days', 100)",
    # archive planning: archive_settings FOR UPDATE and archive_batches' lock
    "next_archive_batch": "SELECT audit.next_archive_batch(interval '30 days')",
}


@pytest.mark.parametrize("left_open", [False, True], ids=["prepared", "left open"])
@pytest.mark.parametrize("call", list(PREPARED_BY_A_MAINTAINER))
def test_a_maintainers_prepared_call_does_not_stop_the_worker_sealing(d, tmp_path, call, left_open):
    """Attack (bdf90b3 closed it for seal() alone): a maintainer calls another function whose locks
    the worker's daily archive run needs, in a transaction, and PREPAREs it (none of them sends a
    notification). The worker (`pgaudit worker --archive-target`) claims the day, then waits on the
    prepared lock without end, between two rounds: sealing stops until someone resolves the
    prepared transaction. Safe: an event recorded after it is sealed within 15 seconds."""
    daily, _directory = archive_ready(d, tmp_path)
    m = d.conn(MAINT)
    m.execute("BEGIN")
    m.execute(PREPARED_BY_A_MAINTAINER[call])
    # (Mended: PREPARE is refused, rolling the transaction back; a transaction left open instead
    # holds its locks until its session ends, and the worker's duty gives up waiting on them.)
    if not left_open:
        with suppress(psycopg.Error):
            m.execute("COMMIT" if call.startswith("HELD") else "PREPARE TRANSACTION 't50_maint'")
    stop = threading.Event()
    t = threading.Thread(target=lambda: run_worker(lambda: psycopg.connect(d.cluster.dsn(d.name, MAINT),
                                                                           autocommit=True),
                                                   stop, interval=0.05, daily=daily), daemon=True)
    t.start()
    try:
        time.sleep(1)
        record(d.conn(WRITER), "t50.after", payload={})
        deadline = time.monotonic() + 15
        sealed = False
        while time.monotonic() < deadline and not sealed:
            sealed = d.admin.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't50.after'").fetchone() == (1,)
            time.sleep(0.1)
    finally:
        d.rollback_prepared()
        m.close()
        stop.set()
        t.join(15)
    assert sealed, "the worker stopped sealing behind a maintainer's prepared transaction"


@pytest.mark.parametrize("how", ["prepared", "HELD: committed"])
def test_a_maintainers_prepared_archive_claim_does_not_stop_archiving_for_good(d, tmp_path, how):
    """Attack: a maintainer calls claim_archiver inside a transaction and PREPAREs it (its session
    advisory lock goes with the session; the claim row's lock stays with the prepared transaction).
    Every later archiver's claim skips the locked row and reports another archiver running, for as
    long as the prepared transaction lasts. Safe: the worker's daily run archives the due batch."""
    daily, directory = archive_ready(d, tmp_path)
    m = d.conn(MAINT)
    m.execute("BEGIN")
    m.execute("SELECT audit.claim_archiver()")
    with suppress(psycopg.Error):
        m.execute("COMMIT" if how.startswith("HELD") else "PREPARE TRANSACTION 't50_claim'")
    m.close()
    worker = d.conn(MAINT)
    worker.execute("SET statement_timeout = '10s'")
    with suppress(psycopg.Error):
        daily(worker)
    archived = d.admin.execute("SELECT count(*) FROM audit.archive_batches WHERE state <> 'planned'").fetchone()[0]
    assert archived >= 1, f"nothing archived; files: {sorted(p.name for p in directory.iterdir())}"


def test_an_ordinary_roles_prepared_read_of_the_log_stops_neither_sealing_nor_pruning(d):
    """Held check (ordinary roles): a reader PREPAREs a transaction that read audit.events (every
    partition of the log and the intake). Safe: seal() and prune_events still finish at once."""
    w = d.conn(WRITER)
    for k in range(3):
        record(w, "t50.e", payload={"k": k})
    seal(d.admin)
    w = d.conn(READER)
    w.execute("BEGIN")
    w.execute("SELECT count(*) FROM audit.events")
    w.execute("PREPARE TRANSACTION 't50_read'")
    record(d.conn(WRITER), "t50.next", payload={})
    m = d.conn(MAINT)
    m.execute("SET statement_timeout = '10s'")
    assert seal(m).sealed == 1
    time.sleep(0.01)
    assert prune_events(m, timedelta(milliseconds=1)).deleted >= 3


# ====================== 3. the command line: values it still prints ======================


def cli_values(tmp: Path) -> dict[str, tuple[str, Callable[[str], list[str]], Callable[[str], dict[str, str]]]]:
    """name -> (what leaks, argv, env). The secret is a 64-hex key unless the case says otherwise."""
    none: Callable[[str], dict[str, str]] = lambda k: {}  # noqa: E731
    card = "4929123456789012"
    return {
        # a number is never a "value" (remember_given drops it): a card number or PIN given as an extra
        # argument instead of on standard input is printed in "Got unexpected extra argument (...)"
        "a numeric secret as an extra argument": (
            card, lambda k: ["secrets", "put", "--tenant", "t1", "card", card], none),
        # a value with a space is never replaced outside refusals of the command line: a paste's
        # trailing space
        "a key with a trailing space as --batch": (
            "", lambda k: ["archive", "restore", "--batch", k + " ", "--target", f"file://{tmp}"], none),
        # click.Path makes a pathlib.Path, which drops './' and a trailing '/': the message names
        # 'KEY', the value given was './KEY'
        "--signing-key ./KEY": ("", lambda k: ["checkpoint", "--out", str(tmp / "c.json"), "--signing-key", f"./{k}"],
                                none),
        "--signing-key KEY/": ("", lambda k: ["checkpoint", "--out", str(tmp / "c.json"), "--signing-key", f"{k}/"],
                               none),
        # PostgreSQL truncates an identifier to 63 bytes and names the truncated one
        "a 64-character key as a table's name": ("", lambda k: ["track", f"public.{k}"], none),
        # 40 characters, not truncated: the server's message quotes it in its own language's marks
        # (the suite's cluster speaks German: »public.KEY«), which are not among those a value may
        # stand after (space, ', ", (, [)
        "a 40-character key as a table's name": ("first 40", lambda k: ["track", f"public.{k[:40]}"], none),
        # a key as the database of a DSN with no password: libpq's message names the database alone
        "a key as the DSN's database": ("", lambda k: ["status"], lambda k: {"PGAUDIT_DSN": f"dbname={k}"}),
    }


@pytest.mark.parametrize("case", list(cli_values(Path("/"))))
def test_a_value_given_is_not_printed_back_in_another_form(db, tmp_path, case):
    """Attack (a13e047's replacement): the command line replaces a value given only where the same
    text stands as a word, of 32 characters or more without a space, and never a number. A secret
    given in the wrong place in forms the message transforms (a path normalized, an identifier
    truncated, a DSN parsed), with a trailing space, or all digits. docs/security.md: 'The command
    line prints no value it was given in a refusal of the command line itself ... In any other
    error it replaces each value given ... that is 32 characters or more without a space.' Safe:
    refused, and neither the key (nor half of it) nor the secret in stdout or stderr."""
    key = new_key()
    secret, argv, env = cli_values(tmp_path)[case]
    args = argv(key)
    if "PGAUDIT_DSN" in env(key):
        done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args], capture_output=True, text=True,
                              timeout=60, env={**os.environ, **env(key), "PGHOST": db.info.host,
                                               "PGPORT": str(db.info.port), "PGUSER": "app_maintainer"},
                              cwd=tmp_path)
    else:
        done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args, "--dsn",
                               f"host={db.info.host} port={db.info.port} dbname={db.info.dbname} user=app_maintainer"],
                              capture_output=True, text=True, timeout=60, env={**os.environ, **env(key)}, cwd=tmp_path)
    said = done.stdout + done.stderr
    forms = [key[:40]] if secret == "first 40" else [secret] if secret else key_forms(key) + [key[:40]]
    assert done.returncode != 0, said[-400:]
    assert [f[:8] for f in forms if f in said] == [], said[-400:]


# ====================== 4. a token's secret part split into names' characters ======================

SPLITS: dict[str, Callable[[str], str]] = {
    # a 64-hex secret part in groups of eight, as some tools print long hex ('-')
    "dash every 8": lambda s: "-".join(s[i:i + 8] for i in range(0, 64, 8)),
    # runs of 31, joined by '.'
    "dot every 31": lambda s: ".".join(s[i:i + 31] for i in range(0, 64, 31)),
}


@pytest.mark.parametrize("split", list(SPLITS))
def test_a_tokens_secret_part_split_by_name_characters_is_not_kept_as_a_name(db, connect, server_log, split):
    """Attack: a token's secret part (its id is public to whoever lists tokens) given as a new
    token's name, split by characters a name may hold so that no run of 32 hex digits is left.
    docs/http.md: a name holds no run of 32 hex digits, 'so that a token, or its secret part,
    pasted as a name is never kept or recorded'. Safe: refused, and no name holds it."""
    maintainer = connect("app_maintainer")
    token = create_token(maintainer, "t50-leaked", "reader").token
    secret_part = token.rsplit("_", 1)[1]
    name = SPLITS[split](secret_part)
    said_by(lambda: create_token(maintainer, name, "reader"))
    names = [t.name for t in list_tokens(maintainer)]
    kept = [n for n in names if re.sub(r"[^0-9a-f]", "", n.lower()) == secret_part]
    assert kept == []


def test_a_tokens_secret_part_split_by_dashes_is_not_sent_to_revoke(db, connect, server_log):
    """Attack (an operator's paste through a tool that groups hex): revoke_token given the secret
    part in groups of eight. With log_statement = 'all', safe: the groups are not all in the log."""
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_statement = 'all'")
    maintainer = connect("app_maintainer")
    token = create_token(maintainer, "t50-revoked", "reader").token
    secret_part = token.rsplit("_", 1)[1]
    said_by(lambda: revoke_token(maintainer, SPLITS["dash every 8"](secret_part)))
    logged = server_log.text()
    assert "create_api_token" in logged
    assert SPLITS["dash every 8"](secret_part) not in logged


# ====================== 5. interval text matched by Unicode case folding ======================

FOLDED = {
    "long s (ſ) in 'days'": "90 dayſ",
    "dotless i (ı) in 'minutes'": "30 mınutes",
}


@pytest.mark.parametrize("text", list(FOLDED))
def test_interval_text_with_a_unit_matched_only_by_case_folding_is_refused_as_an_argument(db, connect, text):
    """Attack: `_interval_text` matches units with re.IGNORECASE, which folds 'ſ' to 's' and 'ı' to
    'i', then looks the unit up by str.lower(), which does not. Safe: the wrapper refuses the text
    as it refuses any other (InvalidArgument), or PostgreSQL takes it; never another exception."""
    maintainer = connect("app_maintainer")
    try:
        prune_events(maintainer, FOLDED[text])
        outcome = "sent"
    except InvalidArgument:
        outcome = "refused"
    except psycopg.Error as exc:
        outcome = f"PostgreSQL: {exc.sqlstate}"
    except Exception as exc:  # noqa: BLE001 - what it is, is the finding
        outcome = f"{type(exc).__name__}: {exc}"
    assert outcome in ("refused", "sent")


# ====================== 6. pgaudit status and the server's configuration ======================


@pytest.fixture
def server_logs_every_statement(db):
    """The server's own configuration (postgresql.auto.conf) logs every statement with its parameters."""
    db.execute("ALTER SYSTEM SET log_statement = 'all'")
    db.execute("SELECT pg_reload_conf()")
    time.sleep(0.3)
    try:
        yield
    finally:
        db.execute("ALTER SYSTEM RESET log_statement")
        db.execute("SELECT pg_reload_conf()")
        time.sleep(0.3)


READER_OPTIONS = {
    "HELD: the reader sets nothing of its own": ("none", None),
    "PGOPTIONS -c log_statement=none": ("options", None),
    "ALTER ROLE reader SET log_statement = 'none'": ("role", "t50_dba"),
}


@pytest.mark.parametrize("how", list(READER_OPTIONS))
def test_status_warns_of_the_servers_configuration_whatever_the_readers_own_settings(
    db, connect, server_logs_every_statement, how
):
    """Attack (a careful DBA's own settings): the server's configuration file logs every statement
    (ALTER SYSTEM), so every session that holds a client-supplied key logs it; the reader's session
    turns log_statement off for itself (PGOPTIONS, or ALTER ROLE of the reader). exposure_warnings
    takes a setting whose source is the reader's own (client, user) as PostgreSQL's boot value, not
    the configuration file's. docs/security.md: status 'judges the sessions that send a key by the
    server's own settings ... not by the reader's own options'. Safe: the key-holder's session logs
    every statement only if status warns."""
    setup_master(connect("app_secrets"), new_key())
    holder = connect("app_secrets").execute("SELECT current_setting('log_statement'),"
                                            " current_setting('log_parameter_max_length')").fetchone()
    kind, role = READER_OPTIONS[how]
    if kind == "none":
        warnings = secrets.exposure_warnings(connect())
    elif kind == "options":
        reader = connect(options="-c log_statement=none")
        warnings = secrets.exposure_warnings(reader)
    else:
        db.execute(f"CREATE ROLE {role} LOGIN SUPERUSER")
        try:
            db.execute(f"ALTER ROLE {role} SET log_statement = 'none'")
            reader = connect(role)
            assert reader.execute("SHOW log_statement").fetchone() == ("none",)
            warnings = secrets.exposure_warnings(reader)
            reader.close()
        finally:
            db.execute(f"DROP ROLE {role}")
    assert holder[0] == "all" and holder[1] != "0"
    assert any("log_statement" in w for w in warnings), warnings


# ====================== 7. the offline verifier and what is not a regular file ======================

ODD_FILES = {
    "a FIFO as the data object": lambda p: (p.unlink(), os.mkfifo(p)),
    "a symlink to /dev/zero as the data object": lambda p: (p.unlink(), p.symlink_to("/dev/zero")),
    "a symlink loop as the data object": lambda p: (p.unlink(), p.symlink_to(p.name)),
    "a directory as the data object": lambda p: (p.unlink(), p.mkdir()),
}


@pytest.mark.parametrize("odd", list(ODD_FILES))
def test_an_object_that_is_no_regular_file_is_a_problem_not_a_hang(db, connect, tmp_path, odd):
    """Held check: the offline verifier over an archive whose data object is a FIFO (an open blocks
    until a writer comes), a device, a symlink loop or a directory. Safe: within 20 s, a PROBLEM
    named, exit 1, no traceback."""
    directory, _signing, public, batch = one_batch(db, connect, tmp_path)
    ODD_FILES[odd](directory / batch.data_object)
    done = subprocess.run([sys.executable, str(ROOT / "pgaudit_py" / "verify_archive.py"), str(directory),
                           "--public-key", str(public)], capture_output=True, text=True, timeout=20)
    assert (done.returncode, "PROBLEM" in done.stdout, "Traceback" in done.stderr) == (1, True, False), (
        done.stdout[-400:], done.stderr[-400:])
