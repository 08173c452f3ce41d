"""A ninety-fourth attacker's trial: the sealer under concurrency and killed mid-round, the worker under
signals, hostile NOTIFYs and lost sessions, checkpoints and the hash chain under forgery and tampering,
and sessions with odd locale and settings.

Classes (test names carry the letter):
  S. the sealer: two sealers and many writers at once (some rolled back, some committing late), a
     sealing round terminated, timed out or refused a lock midway, max_events at and past its edges;
     afterwards every committed event is sealed exactly once, in a chain both verifiers accept, and no
     rolled-back one appears. A lesser role (writer, reader, table owner, plain login) tries to seal,
     move the intake's ids, or move, reorder or drop intake rows.
  W. the worker (`pgaudit worker`): hostile NOTIFY payloads on its channel, a terminated backend, SIGTERM
     with a backlog; nothing lost, duplicated or misordered, and no DSN password in its output.
  K. checkpoints and the chain: a checkpoint signed by another key, keys of the wrong kind, a checkpoint
     taken while a round is open, a tail cut and resealed; one field of a sealed event changed (each
     column in turn), two events swapped, an event inserted: caught by BOTH verifiers, which agree;
     hostile honest data (deep JSON, -0, 1e308, NFC/NFD twins, control characters) raises no alarm.
  L. locale and settings: writer, maintainer and reader logins with odd DateStyle, IntervalStyle,
     TimeZone, extra_float_digits, bytea_output, standard_conforming_strings and a search_path whose
     first schema shadows pg_catalog's functions; German lc_messages: nothing refused that should pass,
     no false alarm, the same verdicts and no guard bypassed.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when
an honest use is refused). Roles and objects made here are named t94_* and dropped afterwards.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from contextlib import suppress

import psycopg
import pytest
from conftest import messages_locale_available
from trial_helpers import both_verifiers, login, seal_all, table_owner_kit, tamper, verified

from pgaudit_py import record, seal
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import generate_keys, load_keys, make_checkpoint

PASSWORD = "t94Sup3rSecretPw_ZZqq"


def dsn_of(db, user: str, password: bool = False) -> str:
    i = db.info
    extra = f" password={PASSWORD}" if password else ""
    return f"host={i.host} port={i.port} dbname={i.dbname} user={user}{extra}"


def cli(*args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def log_state(db) -> dict:
    """What the log holds of the t94 events: kinds by seq, duplicate count, pending count."""
    rows = db.execute("SELECT seq, kind, payload->>'n' FROM audit.events WHERE kind LIKE 't94.%%'"
                      " ORDER BY seq NULLS LAST, intake_id").fetchall()
    sealed = [r for r in rows if r[0] is not None]
    return {"sealed": [r[1] for r in sealed], "ns": [r[2] for r in sealed],
            "pending": sum(1 for r in rows if r[0] is None)}


def seqs_contiguous(db) -> bool:
    row = db.execute("SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM audit.event_log").fetchone()
    return row[0] == row[1] and (row[0] == 0 or row[3] - row[2] + 1 == row[0])


def wait_for(pred, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


# ============================================ class S ============================================

def test_s1_two_sealers_and_writers_with_rollbacks_and_late_commits_seal_each_committed_event_once(db, connect):
    """Four writer threads (a third of their transactions rolled back, some held open across rounds)
    against two sealer threads sealing 3 at a time. Safe: each committed event sealed exactly once,
    none rolled back, seqs contiguous, both verifiers accept."""
    committed: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()
    errors: list[str] = []

    def writer(w: int) -> None:
        conn = connect("app_writer", autocommit=False)
        rnd = random.Random(w)
        for i in range(25):
            name = f"t94.s1.w{w}.{i}"
            try:
                record(conn, name, payload={"n": name})
                if rnd.random() < 0.2:
                    time.sleep(0.05)  # held open while a round runs
                if rnd.random() < 0.33:
                    conn.rollback()
                else:
                    conn.commit()
                    with lock:
                        committed.append(name)
            except Exception as e:  # noqa: BLE001
                errors.append(f"writer {w}: {e}")
                conn.rollback()

    def sealer() -> None:
        conn = connect("app_maintainer")
        while not stop.is_set():
            try:
                seal(conn, max_events=3)
            except Exception as e:  # noqa: BLE001
                errors.append(f"sealer: {type(e).__name__}: {e}")
                with suppress(Exception):
                    conn.rollback()

    sealers = [threading.Thread(target=sealer) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in sealers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in sealers:
        t.join()
    assert seal_all(connect("app_maintainer")) is None
    got = log_state(db)
    assert errors == []
    assert got["pending"] == 0
    assert sorted(got["sealed"]) == sorted(committed)
    assert len(set(got["sealed"])) == len(got["sealed"])
    assert seqs_contiguous(db)
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("how", ["terminate", "cancel", "statement_timeout", "lock_timeout"])
def test_s2_a_sealer_stopped_mid_round_loses_and_duplicates_nothing(db, connect, how):
    """One sealer holds a round open (uncommitted); it is terminated or cancelled, or a second sealer
    behind it times out on statement_timeout or lock_timeout, while writers commit. Safe: afterwards
    each committed event sealed once, chain intact for both verifiers."""
    writer = connect("app_writer")
    for i in range(6):
        record(writer, f"t94.s2.a{i}", payload={"n": i})
    m1 = connect("app_maintainer", autocommit=False)
    m1.execute("SELECT * FROM audit.seal(4)")  # the round is open, its transaction not committed
    for i in range(3):
        record(writer, f"t94.s2.b{i}", payload={"n": 10 + i})
    if how in ("terminate", "cancel"):
        fn = "pg_terminate_backend" if how == "terminate" else "pg_cancel_backend"
        db.execute(f"SELECT {fn}(%s)", [m1.info.backend_pid])
        with suppress(psycopg.Error):
            m1.execute("SELECT 1")
        with suppress(psycopg.Error):
            m1.rollback()
    else:
        m2 = connect("app_maintainer")
        setting = "statement_timeout" if how == "statement_timeout" else "lock_timeout"
        m2.execute(f"SET {setting} = '300ms'")
        failed = None
        try:
            seal(m2, max_events=2)
        except Exception as e:  # noqa: BLE001
            failed = e
        assert failed is not None, "the second sealer did not wait for the first"
        m1.commit()
    assert seal_all(connect("app_maintainer")) is None
    got = log_state(db)
    expected = sorted([f"t94.s2.a{i}" for i in range(6)] + [f"t94.s2.b{i}" for i in range(3)])
    assert sorted(got["sealed"]) == expected and got["pending"] == 0
    assert seqs_contiguous(db)
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("max_events", [0, -1, 1_000_001, 2**31 - 1, -(2**31)])
def test_s3_max_events_out_of_range_is_refused_and_moves_nothing(db, connect, max_events):
    """seal(max_events) beyond 1..1,000,000. Safe: refused, nothing sealed, nothing lost."""
    writer = connect("app_writer")
    for i in range(3):
        record(writer, f"t94.s3.{i}")
    m = connect("app_maintainer")
    refused = None
    try:
        m.execute("SELECT * FROM audit.seal(%s)", [max_events])
    except psycopg.Error as e:
        refused = e.sqlstate
    assert refused is not None
    assert log_state(db) == {"sealed": [], "ns": [], "pending": 3}


def test_s4_max_events_one_and_the_edge_seal_in_order(db, connect):
    """Rounds of one event each, then one round of 1,000,000 (the edge) over the rest: order kept."""
    writer = connect("app_writer")
    for i in range(5):
        record(writer, f"t94.s4.{i}", payload={"n": str(i)})
    m = connect("app_maintainer")
    r1 = m.execute("SELECT sealed FROM audit.seal(1)").fetchone()[0]
    r2 = m.execute("SELECT sealed FROM audit.seal(1)").fetchone()[0]
    r3 = m.execute("SELECT sealed FROM audit.seal(1000000)").fetchone()[0]
    assert (r1, r2, r3) == (1, 1, 3)
    assert log_state(db)["ns"] == ["0", "1", "2", "3", "4"]
    assert both_verifiers(db) == (True, True)


S_MOVES = {
    "seal": "SELECT * FROM audit.seal(10)",
    "seal_backlog": "CALL audit.seal_backlog(10)",
    "update_intake": "UPDATE audit.event_intake SET kind = 't94.moved'",
    "delete_intake": "DELETE FROM audit.event_intake",
    "truncate_intake": "TRUNCATE audit.event_intake",
    "reorder_ids": "UPDATE audit.event_intake SET intake_id = intake_id + 1000",
    "setval": "SELECT setval('audit.event_intake_intake_id_seq', 1)",
    "alter_seq": "ALTER SEQUENCE audit.event_intake_intake_id_seq RESTART WITH 1",
    "insert_log": "INSERT INTO audit.event_log SELECT * FROM audit.event_log LIMIT 1",
    "update_state": "UPDATE audit.seal_state SET last_seq = last_seq + 5",
}


@pytest.mark.parametrize("role", ["app_writer", "app_reader", "owner", "mallory", "app_maintainer"])
@pytest.mark.parametrize("move", sorted(S_MOVES))
def test_s5_a_lesser_role_cannot_seal_or_move_reorder_or_drop_intake_rows(db, connect, role, move):
    """Writer, reader, a table owner, a plain login (and the maintainer, but for sealing) each try to seal or touch the intake, its id
    sequence or the sealer's state. Safe: refused; the pending events and sequence unchanged."""
    with table_owner_kit(db, connect, "t94") as kit:
        for i in range(3):
            record(kit.writer, f"t94.s5.{i}", payload={"n": str(i)})
        before = db.execute("SELECT intake_id, kind FROM audit.event_intake ORDER BY intake_id").fetchall()
        seq_before = db.execute("SELECT last_value FROM audit.event_intake_intake_id_seq").fetchone()[0]
        conn = {"owner": kit.owner, "mallory": kit.mallory}.get(role) or connect(role)
        if role == "app_maintainer" and move in ("seal", "seal_backlog"):
            return  # the maintainer's to do
        got = None
        try:
            conn.execute(S_MOVES[move])
        except psycopg.Error as e:
            got = e.sqlstate
        after = db.execute("SELECT intake_id, kind FROM audit.event_intake ORDER BY intake_id").fetchall()
        seq_after = db.execute("SELECT last_value FROM audit.event_intake_intake_id_seq").fetchone()[0]
        assert got is not None, f"{role} ran {move}"
        assert after == before and seq_after == seq_before
        assert log_state(db)["sealed"] == []


# ============================================ class W ============================================

def _worker(db, user: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "worker", "--dsn",
                             dsn_of(db, user, password=True), "--interval", "0.05", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


HOSTILE_PAYLOADS = ["", "-1", "0", "99999999999999999999999", "1e308", "NaN", "' ; DROP TABLE audit.event_log; --",
                    "\u202e\u0000".replace("\u0000", ""), "x" * 7999, "{\"seq\": -5}", "\x1b[2J"]


def test_w1_hostile_notifies_and_a_terminated_session_lose_or_duplicate_nothing(db, connect):
    """While the worker runs (DSN with a password): hostile NOTIFY payloads on `audit` and on
    pgaudit_py_idle, its backend terminated twice, events written throughout. Safe: every event
    sealed once in write order, both verifiers accept, it stops with exit 0, and its output never holds
    the DSN's password."""
    worker = _worker(db, "app_maintainer")
    writer = connect("app_writer")
    noisy = connect("app_attacker")
    try:
        n = 0
        for round_ in range(3):
            for p in HOSTILE_PAYLOADS:
                noisy.execute("SELECT pg_notify('audit', %s)", [p])
                noisy.execute("SELECT pg_notify('pgaudit_py_idle', %s)", [p])
                record(writer, "t94.w1", payload={"n": f"{n:04d}"})
                n += 1
            if round_ < 2:
                assert wait_for(lambda: db.execute("SELECT count(*) FROM pg_stat_activity"
                                                   " WHERE application_name = 'pgaudit worker'").fetchone()[0] == 1)
                db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                           " WHERE application_name = 'pgaudit worker'")
        assert wait_for(lambda: log_state(db)["pending"] == 0, 60)
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    got = log_state(db)
    assert got["ns"] == [f"{i:04d}" for i in range(n)]
    assert seqs_contiguous(db)
    assert both_verifiers(db) == (True, True)
    assert worker.returncode == 0, err[-500:]
    assert PASSWORD not in out + err
    assert "Traceback" not in err


def test_w2_sigterm_with_a_big_backlog_loses_and_duplicates_nothing(db, connect):
    """5,000 events committed at once; the worker gets SIGTERM a moment after it starts, maybe mid
    round. Safe: exit 0; after another seal every event is sealed exactly once and both verifiers
    accept."""
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 't94.w2', payload => jsonb_build_object('n', lpad(g::text, 5, '0')))"
                   " FROM generate_series(1, 5000) g")
    worker = _worker(db, "app_maintainer")
    wait_for(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgaudit worker'"
                                " AND state = 'active'").fetchone()[0] == 1, 10)
    worker.send_signal(signal.SIGTERM)
    out, err = worker.communicate(timeout=60)
    assert worker.returncode == 0, err[-500:]
    assert seal_all(connect("app_maintainer")) is None
    got = log_state(db)
    assert got["ns"] == [f"{i:05d}" for i in range(1, 5001)]
    assert seqs_contiguous(db)
    assert both_verifiers(db) == (True, True)
    assert PASSWORD not in out + err


def test_w3_a_worker_whose_first_connection_fails_says_so_without_the_password(db):
    """A wrong database name with a password in the DSN. Safe: exit 1 at once, no password printed."""
    i = db.info
    done = cli("worker", "--dsn", f"host={i.host} port={i.port} dbname=t94_nodb user=app_maintainer"
               f" password={PASSWORD}", timeout=30)
    assert done.returncode == 1
    assert PASSWORD not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr


# ============================================ class K ============================================

@pytest.fixture
def sealed3(db, connect):
    """Three blocks of three events, the middle event of block 2 with every field filled."""
    writer = connect("app_writer")
    m = connect("app_maintainer")
    for b in range(3):
        for i in range(3):
            if (b, i) == (1, 1):
                record(writer, "t94.k.full", tenant_id="t94t", actor_type="user", actor_id="u1", target_type="doc",
                       target_id="d1", payload={"a": [1, 2.5, "x"], "b": None}, correlation_id="c1",
                       idempotency_key="ik1")
            else:
                record(writer, f"t94.k.{b}.{i}", payload={"n": f"{b}{i}"})
        seal(m)
    assert both_verifiers(db) == (True, True)
    return m


@pytest.fixture
def keydir(tmp_path):
    generate_keys(tmp_path / "keys")
    other = tmp_path / "other"
    generate_keys(other)
    return tmp_path


def test_k1_a_checkpoint_signed_by_another_key_is_refused(db, sealed3, keydir):
    """A checkpoint of the true head, signed by a key pair the auditor does not hold. Safe: `verify`
    with the auditor's public key refuses it (exit 1 or 2), never says it holds."""
    out = keydir / "cp.json"
    made = cli("checkpoint", "--dsn", dsn_of(db, "app_reader"), "--signing-key",
               str(keydir / "other/checkpoint-ed25519.pem"), "--out", str(out))
    assert made.returncode == 0, made.stderr
    done = cli("verify", "--dsn", dsn_of(db, "app_reader"), "--checkpoint", str(out), "--public-key",
               str(keydir / "keys/checkpoint-ed25519.pub.pem"))
    assert done.returncode in (1, 2) and "holds" not in done.stdout


@pytest.mark.parametrize("which", ["private_as_public", "hmac_as_public", "short_hmac", "empty_public"])
def test_k2_keys_of_the_wrong_kind_are_refused_before_any_verdict(db, sealed3, keydir, which):
    """The private PEM, an HMAC key or an empty file given as --public-key; a 15-byte HMAC key.
    Safe: exit 2 with a reason, no 'holds', no traceback, no key bytes printed."""
    out = keydir / "cp.json"
    assert cli("checkpoint", "--dsn", dsn_of(db, "app_reader"), "--signing-key",
               str(keydir / "keys/checkpoint-ed25519.pem"), "--out", str(out)).returncode == 0
    keys = keydir / "keys"
    (keydir / "short.key").write_bytes(os.urandom(15))
    (keydir / "empty.pem").write_bytes(b"")
    opts = {"private_as_public": ["--public-key", str(keys / "checkpoint-ed25519.pem")],
            "hmac_as_public": ["--public-key", str(keys / "checkpoint-hmac.key")],
            "short_hmac": ["--hmac-key-file", str(keydir / "short.key")],
            "empty_public": ["--public-key", str(keydir / "empty.pem")]}[which]
    done = cli("verify", "--dsn", dsn_of(db, "app_reader"), "--checkpoint", str(out), *opts)
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "holds" not in done.stdout and "Traceback" not in done.stderr
    private = (keys / "checkpoint-ed25519.pem").read_text().splitlines()[1]
    assert private not in done.stdout + done.stderr


def test_k3_a_checkpoint_taken_while_a_round_is_open_still_holds_after_it_commits(db, connect, sealed3, keydir):
    """A sealing round open (uncommitted) while the reader signs a checkpoint; the round commits.
    Safe: the checkpoint names the head it saw, and verify says it holds (exit 0)."""
    writer = connect("app_writer")
    for i in range(4):
        record(writer, f"t94.k3.{i}")
    m1 = connect("app_maintainer", autocommit=False)
    m1.execute("SELECT * FROM audit.seal(10)")
    out = keydir / "cp.json"
    made = cli("checkpoint", "--dsn", dsn_of(db, "app_reader"), "--signing-key",
               str(keydir / "keys/checkpoint-ed25519.pem"), "--out", str(out), timeout=60)
    m1.commit()
    assert made.returncode == 0, made.stderr
    assert json.loads(out.read_text())["checkpoint"]["block_no"] == 3
    done = cli("verify", "--dsn", dsn_of(db, "app_reader"), "--checkpoint", str(out), "--public-key",
               str(keydir / "keys/checkpoint-ed25519.pub.pem"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "holds" in done.stdout


def test_k4_a_tail_cut_and_resealed_is_caught_by_the_checkpoint(db, connect, sealed3, keydir):
    """Checkpoint of block 3; a superuser deletes block 3 and its events, sets the sealer's head back
    to block 2, and new events are sealed as a new block 3. Safe: verify with the checkpoint fails."""
    keys = load_keys(signing_key=keydir / "keys/checkpoint-ed25519.pem")
    cp = keydir / "cp.json"
    cp.write_text(json.dumps(make_checkpoint(connect("app_reader"), keys)))
    b2 = db.execute("SELECT block_no, last_seq, block_hash FROM audit.blocks WHERE block_no = 2").fetchone()
    tamper(db, f"""DELETE FROM audit.event_log WHERE block_no = 3; DELETE FROM audit.blocks WHERE block_no = 3;
                   UPDATE audit.seal_state SET last_block_no = 2, last_seq = {b2[1]},
                          last_block_hash = '\\x{bytes(b2[2]).hex()}'""")
    for i in range(2):
        record(connect("app_writer"), f"t94.k4.{i}")
    seal_all(connect("app_maintainer"))
    done = cli("verify", "--dsn", dsn_of(db, "app_reader"), "--checkpoint", str(cp), "--public-key",
               str(keydir / "keys/checkpoint-ed25519.pub.pem"))
    assert done.returncode == 1 and "holds" not in done.stdout


def _column_change(col: str, typ: str) -> str:
    if col == "outcome":
        return "outcome = CASE WHEN outcome = 'success' THEN 'failure' ELSE 'success' END"
    if col == "origin":
        return "origin = CASE WHEN origin = 'record' THEN 'system' ELSE 'record' END"
    if col == "actor_type":
        return "actor_type = CASE WHEN actor_type = 'user' THEN 'service' ELSE 'user' END"
    if typ in ("text", "character varying"):
        return f"{col} = CASE WHEN {col} IS NULL THEN 't94' ELSE {col} || 'x' END"
    if typ == "jsonb":
        return f"{col} = coalesce({col}, '{{}}'::jsonb) || '{{\"t94\": 1}}'::jsonb"
    if typ == "uuid":
        return f"{col} = gen_random_uuid()"
    if typ.startswith("timestamp"):
        return f"{col} = {col} + interval '1 microsecond'"
    if typ == "inet":
        return f"{col} = CASE WHEN {col} = '10.9.9.9' THEN '10.9.9.8'::inet ELSE '10.9.9.9'::inet END"
    if typ == "boolean":
        return f"{col} = CASE WHEN {col} IS NULL THEN true ELSE NOT {col} END"
    if typ == "xid8":
        return f"{col} = ({col}::text::bigint + 1)::text::xid8"
    if typ in ("bigint", "integer", "smallint"):
        return f"{col} = {col} + 1"
    return f"{col} = ({col}::text || 'x')::{typ}"


LOG_COLUMNS = ["id", "tenant_id", "actor_type", "actor_id", "db_role", "client_addr", "application_name", "kind",
               "target_type", "target_id", "outcome", "correlation_id", "idempotency_key", "txid", "occurred_at",
               "payload", "schema_valid", "row_before", "row_after", "changed", "origin", "block_no"]


@pytest.mark.parametrize("col", LOG_COLUMNS)
def test_k5_one_field_of_a_sealed_event_changed_is_caught_by_both_verifiers_alike(db, sealed3, col):
    """A superuser (triggers off) changes one column of the fully filled event in block 2. Safe: both
    verifiers say not ok, and name the same block."""
    typ = db.execute("SELECT data_type FROM information_schema.columns WHERE table_schema = 'audit'"
                     " AND table_name = 'event_log' AND column_name = %s", [col]).fetchone()[0]
    change = _column_change(col, typ)
    before = db.execute(f"SELECT {col}::text FROM audit.event_log WHERE kind = 't94.k.full'").fetchone()[0]
    try:
        tamper(db, f"UPDATE audit.event_log SET {change} WHERE kind = 't94.k.full'")
    except psycopg.Error as e:
        pytest.fail(f"the tamper itself failed, the test is wrong: {e}")
    after = db.execute(f"SELECT {col}::text FROM audit.event_log WHERE kind = 't94.k.full'").fetchone()
    assert after is None or after[0] != before
    sql_ok, sql_problem = verified(db)
    py = verify_chain(db)
    sql_bad = db.execute("SELECT bad_block FROM audit.verify()").fetchone()[0]
    assert (sql_ok, py.ok) == (False, False), (sql_problem, py.problem)
    assert sql_bad == py.bad_block == 2, (sql_problem, py.problem)


@pytest.mark.parametrize("how", ["swap_in_block", "swap_across_blocks", "insert_copy_inside", "insert_after_head",
                                 "delete_first", "move_to_other_partition_seq"])
def test_k6_reorder_insert_delete_are_caught_by_both_verifiers_alike(db, sealed3, how):
    """Two events' seqs swapped (in a block, across blocks), a copy inserted inside the chain or after
    its head, the first event deleted. Safe: both not ok, naming the same block."""
    seqs = [r[0] for r in db.execute("SELECT seq FROM audit.event_log ORDER BY seq")]
    a, b, K = seqs[3], seqs[4], 500000
    stmt = {
        "swap_in_block": f"UPDATE audit.event_log SET seq = seq + 500000 WHERE seq IN ({a}, {b});"
                         f" UPDATE audit.event_log SET seq = CASE seq WHEN {a + K} THEN {b} ELSE {a} END"
                         f" WHERE seq IN ({a + K}, {b + K})",
        "swap_across_blocks": f"UPDATE audit.event_log SET seq = seq + 500000 WHERE seq IN ({seqs[2]}, {seqs[3]});"
                              f" UPDATE audit.event_log SET seq = CASE seq WHEN {seqs[2] + K} THEN {seqs[3]}"
                              f" ELSE {seqs[2]} END, block_no = CASE seq WHEN {seqs[2] + K} THEN 2 ELSE 1 END"
                              f" WHERE seq IN ({seqs[2] + K}, {seqs[3] + K})",
        "insert_copy_inside": f"UPDATE audit.event_log SET seq = seq + 1 WHERE seq > {seqs[-2]};"
                              f" INSERT INTO audit.event_log SELECT * FROM audit.event_log WHERE seq = {seqs[-2]}",
        "insert_after_head": f"INSERT INTO audit.event_log SELECT * FROM audit.event_log WHERE seq = {seqs[-1]};",
        "delete_first": f"DELETE FROM audit.event_log WHERE seq = {seqs[0]}",
        "move_to_other_partition_seq": f"UPDATE audit.event_log SET seq = 1500000 WHERE seq = {seqs[-1]}",
    }[how]
    if how == "insert_copy_inside":
        stmt = (f"UPDATE audit.event_log SET seq = seq + 100 WHERE seq = {seqs[-1]};"
                f" INSERT INTO audit.event_log SELECT * FROM audit.event_log WHERE seq = {seqs[-2]}")
        # the copy needs a seq of its own; it is placed where the last event was
        stmt = (f"CREATE TEMP TABLE t94_copy AS SELECT * FROM audit.event_log WHERE seq = {seqs[-2]};"
                f" UPDATE t94_copy SET seq = {seqs[-1]}; DELETE FROM audit.event_log WHERE seq = {seqs[-1]};"
                " INSERT INTO audit.event_log SELECT * FROM t94_copy; DROP TABLE t94_copy")
    if how == "insert_after_head":
        stmt = (f"CREATE TEMP TABLE t94_copy AS SELECT * FROM audit.event_log WHERE seq = {seqs[-1]};"
                f" UPDATE t94_copy SET seq = {seqs[-1] + 1}; INSERT INTO audit.event_log SELECT * FROM t94_copy;"
                " DROP TABLE t94_copy")
    if how == "move_to_other_partition_seq":
        stmt = (f"CREATE TABLE audit.t94_p1 PARTITION OF audit.event_log FOR VALUES FROM (1000000) TO (2000000);"
                f" UPDATE audit.event_log SET seq = 1500000 WHERE seq = {seqs[-1]}")
    try:
        tamper(db, stmt)
    except psycopg.Error as e:
        if how == "move_to_other_partition_seq":
            tamper(db, f"UPDATE audit.event_log SET seq = 999999 WHERE seq = {seqs[-1]}")
        else:
            pytest.fail(f"the tamper itself failed, the test is wrong: {e}")
    sql_ok, sql_problem = verified(db)
    py = verify_chain(db)
    sql_bad = db.execute("SELECT bad_block FROM audit.verify()").fetchone()[0]
    assert (sql_ok, py.ok) == (False, False), (sql_problem, py.problem)
    assert sql_bad == py.bad_block, (sql_problem, py.problem)


HOSTILE_JSON = [
    '{"neg0": -0, "negf": -0.0, "big": 1e308, "tiny": 1e-308, "e": 1E+2, "z": 0.000, "n": 123456789012345678901234567890}',
    '{"\u00e9": 1, "e\u0301": 2, "\uac00": 3, "\u1100\u1161": 4}',
    '{"c": "\\u0001\\u001f\\u007f\\u0085\\u2028\\u2029\\ufeff\\u200b\\u202e", "\\u0007": "bell"}',
    '{"s": "\\ud83d\\ude00 \\u00ff \\\\ \\" / \\/ \\b\\f\\n\\r\\t", "k": ["", " ", "\\t"]}',
    '{"v": ' + "[" * 400 + "1" + "]" * 400 + "}",
    '{"a": ' * 300 + "null" + "}" * 300,
    '{"v": "' + "x" * 60000 + '"}',
    '{"dup": 1, "dup": 2, "arr": [1.0, 1.00, 10e-1, 0.1e1]}',
]


def test_k7_hostile_honest_data_raises_no_false_alarm_in_either_verifier(db, connect, keydir):
    """Events whose payloads and fields hold -0, 1e308, NFC/NFD and Hangul twins, control and
    format characters, deep nesting, a 200 kB string, duplicate keys. Safe: all recorded and sealed
    (none quarantined), both verifiers ok, a checkpoint of it holds."""
    writer = connect("app_writer")
    for i, text in enumerate(HOSTILE_JSON):
        writer.execute("SELECT audit.record(kind => %s, payload => %s::jsonb, actor_id => %s, target_id => %s)",
                       [f"t94.k7.{i}", text, "jos\u00e9" if i % 2 else "jose\u0301", "\u2028\u00a0\u3164"])
    assert seal_all(connect("app_maintainer")) is None
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 't94.k7.%'").fetchone()[0] == len(
        HOSTILE_JSON)
    assert both_verifiers(db) == (True, True)
    cp = keydir / "cp.json"
    assert cli("checkpoint", "--dsn", dsn_of(db, "app_reader"), "--signing-key",
               str(keydir / "keys/checkpoint-ed25519.pem"), "--out", str(cp)).returncode == 0
    done = cli("verify", "--dsn", dsn_of(db, "app_reader"), "--checkpoint", str(cp), "--public-key",
               str(keydir / "keys/checkpoint-ed25519.pub.pem"))
    assert done.returncode == 0, done.stdout + done.stderr


# ============================================ class L ============================================

ODD = {"DateStyle": "'SQL, DMY'", "IntervalStyle": "'sql_standard'", "TimeZone": "'Pacific/Chatham'",
       "extra_float_digits": "'-15'", "bytea_output": "'escape'", "standard_conforming_strings": "off",
       "search_path": "'t94_shadow, pg_catalog, public'", "datestyle": "'Postgres, MDY'",
       "default_transaction_isolation": "'repeatable read'", "lc_monetary": "'C'",
       "escape_string_warning": "off", "array_nulls": "off", "check_function_bodies": "off"}


def _shadow_schema(db) -> None:
    """t94_shadow: functions and operators shadowing pg_catalog's, first on the odd sessions' path."""
    db.execute("""CREATE SCHEMA t94_shadow; GRANT USAGE ON SCHEMA t94_shadow TO PUBLIC;
        CREATE FUNCTION t94_shadow.sha256(bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$;
        CREATE FUNCTION t94_shadow.digest(bytea, text) RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$;
        CREATE FUNCTION t94_shadow.digest(text, text) RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$;
        CREATE FUNCTION t94_shadow.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT 'epoch'::timestamptz $$;
        CREATE FUNCTION t94_shadow.t94_eq(bytea, bytea) RETURNS boolean LANGUAGE sql AS $$ SELECT true $$;
        CREATE OPERATOR t94_shadow.= (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = t94_shadow.t94_eq);
        CREATE FUNCTION t94_shadow.t94_ne(bytea, bytea) RETURNS boolean LANGUAGE sql AS $$ SELECT false $$;
        CREATE OPERATOR t94_shadow.<> (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = t94_shadow.t94_ne)
    """)


def test_l1_odd_settings_for_writer_sealer_and_reader_refuse_nothing_and_raise_no_alarm(db, connect, keydir):
    """Writer, maintainer and reader logins whose every session has odd output settings and a path
    with shadowing functions. Safe: records, seals and verifies (both verifiers, a checkpoint) pass."""
    _shadow_schema(db)
    settings = {k: v for k, v in ODD.items() if k != "datestyle"}
    try:
        with login(db, connect, "t94_w", "audit_writer", settings) as w, \
                login(db, connect, "t94_m", "audit_maintainer", settings) as m, \
                login(db, connect, "t94_r", "audit_reader", settings) as r:
            for i in range(6):
                w.execute("SELECT audit.record(kind => %s, payload => %s::jsonb)",
                          [f"t94.l1.{i}", json.dumps({"f": 0.1 + i, "t": "2026-01-02 03:04:05+05:45", "b": "\\x00"})])
                if i == 2:  # the CLI as t94_m, whose own settings it overrides where it must
                    done = cli("seal", "--dsn", dsn_of(db, "t94_m"))
                    assert done.returncode == 0, done.stderr
            # SQL as t94_m, at READ COMMITTED as docs/sealing.md asks, the rest of its settings odd
            m.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            m.execute("SELECT * FROM audit.seal(100)")
            m.execute("COMMIT")
            assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 't94.l1.%'").fetchone()[0] == 6
            assert [tuple(x) for x in r.execute("SELECT ok, problem FROM audit.verify()")] == [(True, None)]
            assert both_verifiers(db) == (True, True)
            cp = keydir / "cp.json"
            made = cli("checkpoint", "--dsn", dsn_of(db, "t94_r"), "--signing-key",
                       str(keydir / "keys/checkpoint-ed25519.pem"), "--out", str(cp))
            assert made.returncode == 0, made.stderr
            done = cli("verify", "--dsn", dsn_of(db, "t94_r"), "--checkpoint", str(cp), "--public-key",
                       str(keydir / "keys/checkpoint-ed25519.pub.pem"))
            assert done.returncode == 0, done.stdout + done.stderr
    finally:
        db.execute("DROP SCHEMA IF EXISTS t94_shadow CASCADE")


def test_l2_a_reader_with_a_shadowing_path_still_sees_tampering(db, connect, sealed3):
    """A payload changed by a superuser; the reader's session puts functions and operators that call
    every hash equal first on its path. Safe: audit.verify from that session still says not ok."""
    _shadow_schema(db)
    try:
        tamper(db, "UPDATE audit.event_log SET payload = payload || '{\"t94\": 2}' WHERE kind = 't94.k.full'")
        with login(db, connect, "t94_r2", "audit_reader", {"search_path": "'t94_shadow, pg_catalog, public'",
                                                             "standard_conforming_strings": "off"}) as r:
            ok, problem = r.execute("SELECT ok, problem FROM audit.verify()").fetchone()
            assert ok is False
            assert not verify_chain(r).ok
    finally:
        db.execute("DROP SCHEMA IF EXISTS t94_shadow CASCADE")


def test_l3_german_messages_give_the_same_verdicts_and_refusals(db, connect, sealed3):
    """Under lc_messages de_DE (when the machine has it) and C: the same verify problem after
    tampering, the same SQLSTATE for a writer's seal and for a second sealer's lock timeout."""
    locales = ["C"] + (["de_DE.UTF-8"] if messages_locale_available() else [])
    tamper(db, "UPDATE audit.event_log SET actor_id = 'u2' WHERE kind = 't94.k.full'")
    seen = []
    for loc in locales:
        for role in ("app_writer", "app_reader", "app_maintainer"):
            db.execute(f"ALTER ROLE {role} IN DATABASE {db.info.dbname} SET lc_messages = '{loc}'")
        try:
            w, r, m2 = connect("app_writer"), connect("app_reader"), connect("app_maintainer")
            problem = r.execute("SELECT ok, problem, bad_block FROM audit.verify()").fetchone()
            py = verify_chain(r)
            writer_seal = None
            try:
                w.execute("SELECT * FROM audit.seal(1)")
            except psycopg.Error as e:
                writer_seal = e.sqlstate
            m1 = connect("app_maintainer", autocommit=False)
            record(connect("app_writer"), "t94.l3")
            m1.execute("SELECT * FROM audit.seal(1)")
            m2.execute("SET lock_timeout = '200ms'")
            second = None
            try:
                m2.execute("SELECT * FROM audit.seal(1)")
            except psycopg.Error as e:
                second = e.sqlstate
            m1.rollback()
            seen.append((tuple(problem), py.ok, py.bad_block, writer_seal, second))
        finally:
            for role in ("app_writer", "app_reader", "app_maintainer"):
                db.execute(f"ALTER ROLE {role} IN DATABASE {db.info.dbname} RESET lc_messages")
    assert all(s == seen[0] for s in seen), seen
    assert seen[0][0][0] is False and seen[0][1] is False
    assert seen[0][3] is not None and seen[0][4] is not None


def test_l4_odd_settings_in_the_sealers_own_transaction_seal_the_same_lines(db, connect):
    """The maintainer seals with each odd setting SET in its session (TimeZone far east, DateStyle
    German, IntervalStyle postgres_verbose, extra_float_digits 3, bytea hex/escape, lc_numeric).
    Safe: each round seals and both verifiers stay ok after every round."""
    m = connect("app_maintainer")
    w = connect("app_writer")
    sets = ["SET TimeZone = 'Pacific/Kiritimati'", "SET DateStyle = 'German, DMY'",
            "SET IntervalStyle = 'postgres_verbose'", "SET extra_float_digits = 3", "SET bytea_output = 'escape'",
            "SET standard_conforming_strings = off", "SET search_path = public", "SET TimeZone = 'UTC-14'",
            "SET jit = on", "SET enable_indexscan = off", "SET work_mem = '64kB'"]
    bad = []
    for i, s in enumerate(sets):
        w.execute("SELECT audit.record(kind => %s, payload => %s::jsonb)",
                  [f"t94.l4.{i}", json.dumps({"x": 1.1 * i, "s": s})])
        m.execute(s)
        try:
            got = m.execute("SELECT sealed FROM audit.seal(100)").fetchone()[0]
        except psycopg.Error as e:
            bad.append((s, e.sqlstate, str(e).splitlines()[0]))
            continue
        if got != 1 or both_verifiers(db) != (True, True):
            bad.append((s, got, verified(db)))
    assert bad == []


# ============================================ more S, W ============================================

def test_s7_a_huge_round_across_a_partition_end_with_a_reader_holding_the_log(db, connect, near_end):
    """Five seqs before the first partition ends, 3,000 pending events; a reader holds the log open
    in a REPEATABLE READ transaction mid-cursor; one round of max_events 1,000,000 under a 5 s
    lock_timeout. Safe: the round completes, splits at the partition end, sends one NOTIFY with its
    last seq, and both verifiers accept."""
    w = connect("app_writer")
    w.execute("SELECT audit.record(kind => 't94.s7', payload => jsonb_build_object('n', lpad(g::text, 5, '0')))"
              " FROM generate_series(1, 3000) g")
    reader = connect("app_reader", autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    reader.execute("DECLARE t94_c CURSOR FOR SELECT * FROM audit.event_log")
    reader.execute("FETCH 1 FROM t94_c")
    listener = connect("app_reader")
    listener.execute("LISTEN audit")
    m = connect("app_maintainer")
    m.execute("SET lock_timeout = '5s'")
    got = m.execute("SELECT sealed, first_seq, last_seq FROM audit.seal(1000000)").fetchone()
    reader.rollback()
    assert got[0] == 3000
    notes = [n.payload for n in listener.notifies(timeout=2, stop_after=5)]
    assert notes == [str(got[2])]
    crossing = db.execute("SELECT count(*) FROM audit.blocks WHERE first_seq <= 999999 AND last_seq > 999999")
    assert crossing.fetchone()[0] == 0
    assert log_state(db)["ns"] == [f"{i:05d}" for i in range(1, 3001)]
    assert both_verifiers(db) == (True, True)


def test_w4_a_plain_login_cannot_pass_for_a_connected_worker_in_status(db, connect):
    """A login with no audit role connects as application `pgaudit worker` while nothing seals.
    Safe: `status` does not count it as a connected worker."""
    fake = connect("app_attacker", application_name="pgaudit worker")
    fake.execute("SELECT 1")
    done = cli("status", "--dsn", dsn_of(db, "app_reader"), "--json")
    workers = json.loads(done.stdout)["workers"]
    assert workers == 0, f"status counts {workers} worker(s): the attacker's idle session"


def test_w5_a_failed_reconnection_withholds_libpqs_message_when_the_dsn_has_a_password(db, connect):
    """The worker (DSN with a password) loses its session while the database refuses new ones.
    Safe, per docs/cli.md: its 'cannot connect' lines withhold libpq's message; no password anywhere;
    after the database accepts again it seals what was written meanwhile."""
    worker = _worker(db, "app_maintainer")
    i = db.info
    admin = psycopg.connect(host=i.host, port=i.port, user=i.user, dbname="postgres", autocommit=True)
    try:
        record(connect("app_writer"), "t94.w5.a")
        assert wait_for(lambda: log_state(db)["pending"] == 0)
        admin.execute(f'ALTER DATABASE "{i.dbname}" ALLOW_CONNECTIONS false')
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgaudit worker'")
        db.execute("SELECT audit.record(kind => 't94.w5.b')")
        time.sleep(3.5)
        admin.execute(f'ALTER DATABASE "{i.dbname}" ALLOW_CONNECTIONS true')
        assert wait_for(lambda: log_state(db)["pending"] == 0)
    finally:
        with suppress(psycopg.Error):
            admin.execute(f'ALTER DATABASE "{i.dbname}" ALLOW_CONNECTIONS true')
        admin.close()
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert log_state(db)["sealed"] == ["t94.w5.a", "t94.w5.b"]
    lines = [ln for ln in err.splitlines() if "cannot connect" in ln]
    assert lines, err
    assert all("withheld" in ln for ln in lines), lines
    assert PASSWORD not in out + err


def test_s8_a_sealer_timed_out_mid_round_of_a_huge_backlog_leaves_nothing_half_moved(db, connect):
    """20,000 pending events; the sealer's own statement_timeout (20 ms) cancels it mid-round, three
    times. Safe: each cancelled round moved nothing (all still pending, log empty); then rounds of
    7,000 seal all, in order, once, and both verifiers accept."""
    connect("app_writer").execute("SELECT audit.record(kind => 't94.s8', payload => jsonb_build_object('n',"
                                  " lpad(g::text, 5, '0'))) FROM generate_series(1, 20000) g")
    m = connect("app_maintainer")
    m.execute("SET statement_timeout = '20ms'")
    outcomes = []
    for _ in range(3):
        try:
            outcomes.append(m.execute("SELECT sealed FROM audit.seal(1000000)").fetchone()[0])
        except psycopg.Error as e:
            outcomes.append(e.sqlstate)
        assert db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0] in (0, 20000)
    m.execute("SET statement_timeout = 0")
    while m.execute("SELECT sealed FROM audit.seal(7000)").fetchone()[0]:
        pass
    got = log_state(db)
    assert got["ns"] == [f"{i:05d}" for i in range(1, 20001)] and got["pending"] == 0
    assert seqs_contiguous(db)
    assert both_verifiers(db) == (True, True)


def test_l5_the_sealers_odd_session_does_not_change_the_row_images_it_computes(db, connect):
    """Two identical rows written to a tracked table; one sealed by a default session, the other by a
    maintainer session with every output setting odd. Safe: the two row images are equal."""
    with table_owner_kit(db, connect, "t94") as kit:
        from trial_helpers import track_new_table
        track_new_table(kit, "t94_img", "id int PRIMARY KEY, f float8, r real, ts timestamptz, t timestamp,"
                                        " d date, iv interval, b bytea, mo money, nu numeric, arr float8[], j json")
        row = ("0.1, 1.0000001, '2026-03-04 05:06:07.123456+05:45', '2026-03-04 05:06:07', '2026-03-04',"
               " '1 year 2 mons 3 days 04:05:06.7', '\\x00ff'::bytea, 12.34, 1.10, '{0.1,1e300,-0}', '{\"a\": 1.0}'")
        kit.writer.execute(f"INSERT INTO public.t94_img VALUES (1, {row})")
        seal_all(connect("app_maintainer"))
        kit.writer.execute(f"INSERT INTO public.t94_img VALUES (2, {row})")
        odd = connect("app_maintainer")
        for st in ["SET TimeZone = 'Asia/Kathmandu'", "SET extra_float_digits = -15", "SET DateStyle = 'SQL, DMY'",
                   "SET IntervalStyle = 'iso_8601'", "SET bytea_output = 'escape'", "SET lc_monetary = 'C'",
                   "SET quote_all_identifiers = on", "SET standard_conforming_strings = off"]:
            odd.execute(st)
        if messages_locale_available():
            with suppress(psycopg.Error):
                odd.execute("SET lc_monetary = 'de_DE.UTF-8'")
        odd.execute("SELECT * FROM audit.seal(100)")
        imgs = [r[0] for r in db.execute("SELECT row_after - 'id' FROM audit.event_log"
                                         " WHERE kind LIKE '%t94_img%insert' ORDER BY seq")]
        assert len(imgs) == 2
        assert imgs[0] == imgs[1]
        assert both_verifiers(db) == (True, True)


def test_l6_a_writer_with_a_shadowing_path_records_true_values(db, connect):
    """A writer login whose search_path puts functions shadowing now(), to_jsonb, jsonb_build_object,
    current_user and session_user first. Safe: the event records the true role and time, and its
    payload as given."""
    _shadow_schema(db)
    db.execute("""CREATE FUNCTION t94_shadow.to_jsonb(anyelement) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
                  CREATE FUNCTION t94_shadow.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE sql
                      AS $$ SELECT '{"forged": true}'::jsonb $$;
                  CREATE FUNCTION t94_shadow.clock_timestamp() RETURNS timestamptz LANGUAGE sql
                      AS $$ SELECT 'epoch'::timestamptz $$;
                  CREATE FUNCTION t94_shadow.statement_timestamp() RETURNS timestamptz LANGUAGE sql
                      AS $$ SELECT 'epoch'::timestamptz $$;
                  CREATE FUNCTION t94_shadow.txid_current() RETURNS bigint LANGUAGE sql AS $$ SELECT 1::bigint $$;
                  CREATE FUNCTION t94_shadow.pg_current_xact_id() RETURNS xid8 LANGUAGE sql AS $$ SELECT '1'::xid8 $$;
                  CREATE FUNCTION t94_shadow.inet_client_addr() RETURNS inet LANGUAGE sql AS $$ SELECT '6.6.6.6'::inet $$;
               """)
    try:
        with login(db, connect, "t94_w6", "audit_writer", {"search_path": "'t94_shadow, pg_catalog, public'"}) as w:
            w.execute("SELECT audit.record(kind => 't94.l6', payload => '{\"x\": 1}'::jsonb)")
            row = db.execute("SELECT db_role, occurred_at > now() - interval '1 hour', payload, txid::text,"
                             " client_addr::text FROM audit.events WHERE kind = 't94.l6'").fetchone()
            assert row[0] == "t94_w6" and row[1] is True and row[2] == {"x": 1}
            assert row[3] != "1" and row[4] != "6.6.6.6/32"
            assert seal_all(connect("app_maintainer")) is None
            assert both_verifiers(db) == (True, True)
    finally:
        db.execute("DROP SCHEMA IF EXISTS t94_shadow CASCADE")


@pytest.mark.parametrize("tz", ["Asia/Kathmandu", "America/St_Johns", "Pacific/Kiritimati", "<+1234>-12:34",
                                "Europe/Amsterdam", "Etc/GMT-14", "Asia/Tehran"])
def test_l7_the_python_verifier_in_an_odd_time_zone_raises_no_false_alarm(db, connect, tz):
    """The reader's session in a time zone with an odd offset (minutes, seconds, +14). Safe: the
    Python verifier agrees with audit.verify: ok."""
    w = connect("app_writer")
    for i in range(3):
        record(w, f"t94.l7.{i}")
    assert seal_all(connect("app_maintainer")) is None
    r = connect("app_reader")
    r.execute(f"SET TimeZone = '{tz}'")
    py = verify_chain(r)
    assert (py.ok, py.problem) == (True, None)
    assert verified(r) == (True, None)


def test_l8_the_cli_under_hostile_pgoptions_seals_checkpoints_and_verifies(db, connect, keydir):
    """PGOPTIONS sets DateStyle German, IntervalStyle sql_standard, TimeZone +05:45, extra_float_digits -15,
    bytea_output escape, a shadowing search_path, repeatable read
    by default. Safe: `seal`, `checkpoint`, `verify --checkpoint` and `status` succeed and agree."""
    _shadow_schema(db)
    try:
        for i in range(4):
            record(connect("app_writer"), f"t94.l8.{i}", payload={"f": 0.1 * i})
        opts = ("-c DateStyle=German,DMY -c IntervalStyle=sql_standard -c TimeZone=Asia/Kathmandu"
                " -c extra_float_digits=-15 -c bytea_output=escape -c search_path=t94_shadow,pg_catalog,public"
                " -c default_transaction_isolation=repeatable\\ read -c standard_conforming_strings=off")
        env = {"PGOPTIONS": opts}
        done = cli("seal", "--dsn", dsn_of(db, "app_maintainer"), env=env)
        assert done.returncode == 0, done.stderr
        assert log_state(db)["pending"] == 0
        cp = keydir / "cp.json"
        done = cli("checkpoint", "--dsn", dsn_of(db, "app_reader"), "--signing-key",
                   str(keydir / "keys/checkpoint-ed25519.pem"), "--out", str(cp), env=env)
        assert done.returncode == 0, done.stderr
        done = cli("verify", "--dsn", dsn_of(db, "app_reader"), "--checkpoint", str(cp), "--public-key",
                   str(keydir / "keys/checkpoint-ed25519.pub.pem"), env=env)
        assert done.returncode == 0 and "holds" in done.stdout, done.stdout + done.stderr
        assert both_verifiers(db) == (True, True)
    finally:
        db.execute("DROP SCHEMA IF EXISTS t94_shadow CASCADE")


@pytest.mark.parametrize("how", ["garbage", "null", "other_block", "short", "empty"])
def test_k8_line_hashes_changed_alone_change_no_verdict_and_with_an_edit_still_fail(db, sealed3, how):
    """A block's line_hashes replaced (garbage, NULL, another block's). Safe: both verifiers still ok
    (they only locate); then with an event of that block edited, both say not ok, for block 2."""
    new = {"garbage": "'\\x" + "ab" * 96 + "'::bytea", "null": "NULL",
           "other_block": "(SELECT line_hashes FROM audit.blocks WHERE block_no = 3)",
           "short": "'\\x" + "cd" * 33 + "'::bytea", "empty": "'\\x'::bytea"}[how]
    tamper(db, f"UPDATE audit.blocks SET line_hashes = {new} WHERE block_no = 2")
    assert both_verifiers(db) == (True, True)
    tamper(db, "UPDATE audit.event_log SET target_id = 'd2' WHERE kind = 't94.k.full'")
    py = verify_chain(db)
    ok, problem = verified(db)
    assert (ok, py.ok) == (False, False)
    assert db.execute("SELECT bad_block FROM audit.verify()").fetchone()[0] == py.bad_block == 2, (problem, py.problem)


def test_w6_a_worker_cancelled_while_its_round_waits_for_a_lock_goes_on_sealing(db, connect):
    """Another maintainer holds a round open; the worker's round waits behind it; its backend is sent
    pg_cancel_backend; the open round commits. Safe (docs/sealing.md: a cancel fails the round, to be
    tried again): the worker lives and seals what comes after, once each, in order."""
    worker = _worker(db, "app_maintainer")
    try:
        record(connect("app_writer"), "t94.w6", payload={"n": "0"})
        assert wait_for(lambda: log_state(db)["pending"] == 0)
        m1 = connect("app_maintainer", autocommit=False)
        record(connect("app_writer"), "t94.w6", payload={"n": "1"})
        m1.execute("SELECT * FROM audit.seal(10)")
        record(connect("app_writer"), "t94.w6", payload={"n": "2"})
        assert wait_for(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name ="
                                           " 'pgaudit worker' AND wait_event_type = 'Lock'").fetchone()[0] == 1, 10)
        db.execute("SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgaudit worker'")
        time.sleep(0.5)
        m1.commit()
        record(connect("app_writer"), "t94.w6", payload={"n": "3"})
        assert wait_for(lambda: log_state(db)["pending"] == 0, 30)
        alive = worker.poll() is None
    finally:
        worker.send_signal(signal.SIGTERM)
        out, err = worker.communicate(timeout=30)
    assert alive, err[-500:]
    assert log_state(db)["ns"] == ["0", "1", "2", "3"]
    assert both_verifiers(db) == (True, True)
    assert worker.returncode == 0 and "Traceback" not in err


def test_w7_a_follower_under_hostile_notifies_yields_each_sealed_event_once_in_order(db, connect):
    """A follower (pgaudit_py.follow) while an attacker NOTIFYs `audit` with forged seqs (far ahead,
    negative, junk) between real rounds. Safe: it yields every sealed event once, in seq order, none
    skipped because a payload named a later seq."""
    from pgaudit_py.follow import follow

    stop = threading.Event()
    got: list[str] = []
    conn = connect("app_reader")

    def run() -> None:
        for ev in follow(conn, since_seq=0, poll_interval=0.5, stop=stop, kind_prefix="t94."):
            got.append(ev.payload["n"])

    t = threading.Thread(target=run)
    t.start()
    noisy = connect("app_attacker")
    w, m = connect("app_writer"), connect("app_maintainer")
    try:
        for i in range(12):
            noisy.execute("SELECT pg_notify('audit', %s)", [HOSTILE_PAYLOADS[i % len(HOSTILE_PAYLOADS)]])
            noisy.execute("SELECT pg_notify('audit', '999999999')")
            record(w, "t94.w7", payload={"n": f"{i:02d}"})
            if i % 3 == 2:
                seal(m)
        seal(m)
        assert wait_for(lambda: len(got) >= 12, 30)
        time.sleep(1)
    finally:
        stop.set()
        t.join(10)
    assert got == [f"{i:02d}" for i in range(12)]


@pytest.mark.parametrize("edit", ["duplicate_key", "bom", "block_no_float", "block_no_true", "nan", "extra_field",
                                  "hash_upper", "trailing_garbage"])
def test_k9_a_signed_checkpoint_reworded_without_changing_its_meaning_is_refused_or_still_exact(
        db, sealed3, keydir, edit):
    """A valid signed checkpoint file edited in its bytes: a duplicate block_no, a BOM, block_no 3.0 or
    true, NaN, an extra unsigned field, the hash in capitals, trailing garbage. Safe: `verify` refuses
    the file (exit 2) or checks it as signed; it never says 'holds' for a block other than 3."""
    cp = keydir / "cp.json"
    assert cli("checkpoint", "--dsn", dsn_of(db, "app_reader"), "--signing-key",
               str(keydir / "keys/checkpoint-ed25519.pem"), "--out", str(cp)).returncode == 0
    text = cp.read_text()
    doc = json.loads(text)
    if edit == "duplicate_key":
        text = text.replace('"block_no": 3', '"block_no": 3, "block_no": 2', 1).replace(
            '"block_no":3', '"block_no":3,"block_no":2', 1)
    elif edit == "bom":
        text = "\ufeff" + text
    elif edit == "block_no_float":
        doc["checkpoint"]["block_no"] = 3.0
        text = json.dumps(doc)
    elif edit == "block_no_true":
        doc["checkpoint"]["block_no"] = True
        text = json.dumps(doc)
    elif edit == "nan":
        doc["checkpoint"]["event_count"] = float("nan")
        text = json.dumps(doc)
    elif edit == "extra_field":
        doc["checkpoint"]["note"] = "unsigned"
        text = json.dumps(doc)
    elif edit == "hash_upper":
        doc["checkpoint"]["block_hash"] = doc["checkpoint"]["block_hash"].upper()
        text = json.dumps(doc)
    else:
        text = text + "\n{}"
    cp.write_text(text, encoding="utf-8")
    done = cli("verify", "--dsn", dsn_of(db, "app_reader"), "--checkpoint", str(cp), "--public-key",
               str(keydir / "keys/checkpoint-ed25519.pub.pem"))
    assert "Traceback" not in done.stderr
    if edit in ("duplicate_key", "bom", "nan", "trailing_garbage", "block_no_true", "block_no_float"):
        assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    else:
        assert done.returncode != 0 and "holds" not in done.stdout, (done.stdout, done.stderr)


def test_s9_an_old_snapshot_sees_every_event_pending_or_sealed_while_the_intake_rotates(db, connect):
    """17,000 events span two intake partitions; a reader's REPEATABLE READ snapshot taken before any
    sealing stays open over several rounds (which drain and may TRUNCATE a partition). Safe: the old
    snapshot still counts all 17,000; afterwards all are sealed once and both verifiers accept."""
    connect("app_writer").execute("SELECT audit.record(kind => 't94.s9', payload => jsonb_build_object('n',"
                                  " lpad(g::text, 5, '0'))) FROM generate_series(1, 17000) g")
    reader = connect("app_reader", autocommit=False)
    reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
    count = "SELECT count(*) FROM audit.events WHERE kind = 't94.s9'"
    seen = [reader.execute(count).fetchone()[0]]
    m = connect("app_maintainer")
    for _ in range(4):
        m.execute("SELECT * FROM audit.seal(6000)")
        record(connect("app_writer"), "t94.s9x")
        seen.append(reader.execute(count).fetchone()[0])
    reader.rollback()
    assert seen == [17000] * 5
    assert seal_all(m) is None
    got = log_state(db)
    assert [n for n in got["ns"] if n] == [f"{i:05d}" for i in range(1, 17001)]
    assert seqs_contiguous(db) and both_verifiers(db) == (True, True)


def test_s10_events_of_rolled_back_subtransactions_never_reach_the_log(db, connect):
    """In committed transactions: a record in a savepoint rolled back, in a PL/pgSQL block whose
    exception is caught, in a statement that fails under a savepoint; a maintainer seals inside a
    savepoint it rolls back. Safe: only the events of what committed are sealed, once."""
    w = connect("app_writer", autocommit=False)
    w.execute("SELECT audit.record(kind => 't94.s10.kept1')")
    w.execute("SAVEPOINT a")
    w.execute("SELECT audit.record(kind => 't94.s10.gone1')")
    w.execute("ROLLBACK TO SAVEPOINT a")
    w.execute("""DO $$ BEGIN
                   BEGIN PERFORM audit.record(kind => 't94.s10.gone2'); RAISE EXCEPTION 'x';
                   EXCEPTION WHEN OTHERS THEN NULL; END;
                   PERFORM audit.record(kind => 't94.s10.kept2');
                 END $$""")
    w.execute("SAVEPOINT b")
    with suppress(psycopg.Error):
        w.execute("SELECT audit.record(kind => 't94.s10.gone3'), 1 / 0")
    w.execute("ROLLBACK TO SAVEPOINT b")
    w.commit()
    m = connect("app_maintainer", autocommit=False)
    m.execute("SAVEPOINT s")
    m.execute("SELECT * FROM audit.seal(100)")
    m.execute("ROLLBACK TO SAVEPOINT s")
    m.commit()
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0] == 0
    assert seal_all(connect("app_maintainer")) is None
    got = log_state(db)
    assert sorted(got["sealed"]) == ["t94.s10.kept1", "t94.s10.kept2"] and got["pending"] == 0
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("signed,given", [("hmac", "public"), ("ed25519", "hmac"), ("both_hmac_wrong", "hmac")])
def test_k10_a_checkpoint_without_the_signature_the_auditor_checks_is_refused(db, sealed3, keydir, signed, given):
    """Signed with HMAC only and checked with the public key; signed with Ed25519 only and checked
    with an HMAC key; signed with both, its HMAC from another key. Safe: exit non-zero, no 'holds'."""
    keys = keydir / "keys"
    args = {"hmac": ["--hmac-key-file", str(keys / "checkpoint-hmac.key")],
            "ed25519": ["--signing-key", str(keys / "checkpoint-ed25519.pem")],
            "both_hmac_wrong": ["--signing-key", str(keys / "checkpoint-ed25519.pem"),
                                "--hmac-key-file", str(keydir / "other/checkpoint-hmac.key")]}[signed]
    cp = keydir / "cp.json"
    made = cli("checkpoint", "--dsn", dsn_of(db, "app_reader"), *args, "--out", str(cp))
    assert made.returncode == 0, made.stderr
    check = {"public": ["--public-key", str(keys / "checkpoint-ed25519.pub.pem")],
             "hmac": ["--hmac-key-file", str(keys / "checkpoint-hmac.key")]}[given]
    done = cli("verify", "--dsn", dsn_of(db, "app_reader"), "--checkpoint", str(cp), *check)
    assert done.returncode != 0 and "holds" not in done.stdout, (done.stdout, done.stderr)


def test_k11_odd_role_names_and_application_names_raise_no_false_alarm(db, connect):
    """Writers whose login names hold a quote, a space, a backslash, NFD and RTL marks, connected
    with odd application_names. Safe: all recorded with their true role, sealed, both verifiers ok."""
    names = ['t94_a"b c', "t94_x\\y", "t94_jose\u0301", "t94_\u202eevil", "t94_\u3164"]
    made = []
    try:
        for n in names:
            q = '"' + n.replace('"', '""') + '"'
            db.execute(f"CREATE ROLE {q} LOGIN IN ROLE audit_writer")
            made.append(q)
            c = connect(n, application_name="t94 \u00e9\u0301\t\\x")
            c.execute("SELECT audit.record(kind => 't94.k11')")
        roles = sorted(r[0] for r in db.execute("SELECT db_role FROM audit.events WHERE kind = 't94.k11'"))
        assert roles == sorted(names)
        assert seal_all(connect("app_maintainer")) is None
        assert both_verifiers(db) == (True, True)
    finally:
        for q in made:
            with suppress(psycopg.Error):
                db.execute(f"DROP ROLE {q}")


@pytest.mark.parametrize("role", ["app_writer", "app_attacker", "app_secrets"])
def test_w8_a_worker_run_by_a_role_without_rights_stops_with_a_reason_and_moves_nothing(db, connect, role):
    """`pgaudit worker` as the writer, a plain login, the secrets role (DSN with a password).
    Safe: it ends by itself (exit 1) with a one-line reason, seals nothing, prints no password."""
    record(connect("app_writer"), "t94.w8")
    try:
        done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "worker", "--dsn", dsn_of(db, role, True),
                               "--interval", "0.05"], capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker kept running without the right to seal")
    assert done.returncode == 1, done.stderr
    assert log_state(db) == {"sealed": [], "ns": [], "pending": 1}
    assert PASSWORD not in done.stdout + done.stderr and "Traceback" not in done.stderr
    assert len([ln for ln in done.stderr.splitlines() if ln.strip()]) >= 1


@pytest.mark.parametrize("when", ["infinity", "-infinity", "10000-01-01 00:00:00+00", "0044-03-15 12:00:00+00 BC",
                                  "0001-01-01 00:00:00+00"])
def test_k12_a_sealed_time_python_cannot_hold_is_named_as_tampering_not_a_crash(db, sealed3, when):
    """A superuser sets a sealed event's occurred_at to a time Python's datetime cannot hold (or its
    first moment). Safe: both verifiers say not ok for block 2; the Python one returns a verdict
    instead of raising, and `pgaudit verify` exits 1 (a failure), not with a traceback."""
    tamper(db, f"UPDATE audit.event_log SET occurred_at = '{when}' WHERE kind = 't94.k.full'")
    ok, problem = verified(db)
    assert ok is False
    try:
        py = verify_chain(db)
        py_verdict = (py.ok, py.bad_block)
    except Exception as e:  # noqa: BLE001
        py_verdict = ("raised", f"{type(e).__name__}: {e}")
    done = cli("verify", "--dsn", dsn_of(db, "app_reader"))
    said = (done.returncode, done.stdout[-200:], done.stderr[-300:])
    assert py_verdict == (False, 2), (problem, py_verdict, said)
    assert done.returncode == 1 and "Traceback" not in done.stderr, said


K13 = {
    "version_3": "UPDATE audit.blocks SET canonical_version = 3 WHERE block_no = 2",
    "version_0": "UPDATE audit.blocks SET canonical_version = 0 WHERE block_no = 2",
    "version_null": "UPDATE audit.blocks SET canonical_version = NULL WHERE block_no = 2",
    "occurred_null": "UPDATE audit.event_log SET occurred_at = NULL WHERE kind = 't94.k.full'",
    "id_null": "UPDATE audit.event_log SET id = NULL WHERE kind = 't94.k.full'",
    "kind_null": "UPDATE audit.event_log SET kind = NULL WHERE kind = 't94.k.full'",
    "events_hash_empty": "UPDATE audit.blocks SET events_hash = '\\x'::bytea WHERE block_no = 2",
    "prev_hash_null": "UPDATE audit.blocks SET prev_hash = NULL WHERE block_no = 2",
    "head_hash_null": "UPDATE audit.seal_state SET last_block_hash = NULL",
    "payload_json_null": "UPDATE audit.event_log SET payload = 'null'::jsonb WHERE kind = 't94.k.full'",
    "payload_sql_null": "UPDATE audit.event_log SET payload = NULL WHERE kind = 't94.k.full'",
    "chain_start_null": "UPDATE audit.seal_state SET chain_start_seq = NULL",
    "head_no_null": "UPDATE audit.seal_state SET last_block_no = NULL",
    "head_seq_null": "UPDATE audit.seal_state SET last_seq = NULL",
    "two_heads": "INSERT INTO audit.seal_state SELECT * FROM audit.seal_state",
    "event_count_null": "UPDATE audit.blocks SET event_count = NULL WHERE block_no = 2",
    "first_seq_null": "UPDATE audit.blocks SET first_seq = NULL WHERE block_no = 2",
    "event_block_null": "UPDATE audit.event_log SET block_no = NULL WHERE kind = 't94.k.full'",
    "seq_far": "UPDATE audit.event_log SET seq = 999999 WHERE kind = 't94.k.full'",
    "prune_point_null_hash": "INSERT INTO audit.prune_points (block_no, last_seq) SELECT 1, last_seq FROM audit.blocks"
                             " WHERE block_no = 1",
    "prune_point_past_head": "INSERT INTO audit.prune_points (block_no, block_hash, last_seq) VALUES (99, '\\x00', 9999)",
    "prune_point_negative": "INSERT INTO audit.prune_points (block_no, block_hash, last_seq) SELECT -1, block_hash,"
                            " -5 FROM audit.blocks WHERE block_no = 1",
    "archived_garbage": "INSERT INTO audit.archive_batches SELECT * FROM json_populate_record(NULL::audit.archive_batches,"
                        " '{\"state\": \"deleted\", \"last_block\": 2, \"last_seq\": 6}')",
}


@pytest.mark.parametrize("how", sorted(K13))
def test_k13_odd_values_written_by_hand_get_a_verdict_from_both_verifiers(db, sealed3, how):
    """A superuser writes values the sealer never would (NULLs, an unknown canonical version, an empty
    hash). Safe (where the table takes the value at all): both verifiers say not ok, the Python one
    as a verdict rather than an exception."""
    try:
        tamper(db, K13[how])
    except psycopg.Error:
        return  # the table refuses the value itself: nothing to verify
    try:
        ok, problem = verified(db)
    except psycopg.Error as e:
        ok, problem = "raised", f"{type(e).__name__}: {e}"
    try:
        py = verify_chain(db)
        py_verdict = (py.ok, py.problem)
    except Exception as e:  # noqa: BLE001
        py_verdict = ("raised", f"{type(e).__name__}: {e}")
    done = cli("verify", "--dsn", dsn_of(db, "app_reader"))
    said = (done.returncode, "Traceback" in done.stderr, done.stderr.strip().splitlines()[-1:])
    assert (ok, py_verdict[0]) == (False, False), (problem, py_verdict, said)
    assert done.returncode == 1 and "Traceback" not in done.stderr, said


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_w9_a_second_stop_signal_mid_round_still_stops_cleanly_and_loses_nothing(db, connect, sig):
    """Ctrl-C or SIGTERM twice in quick succession while the worker seals a 20,000-event backlog.
    Safe: it stops with exit 0 and "stopped", no traceback; after another seal every event is in the
    log once and both verifiers accept."""
    connect("app_writer").execute("SELECT audit.record(kind => 't94.w9', payload => jsonb_build_object('n',"
                                  " lpad(g::text, 5, '0'))) FROM generate_series(1, 20000) g")
    worker = _worker(db, "app_maintainer")
    wait_for(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgaudit worker'"
                                " AND state = 'active'").fetchone()[0] == 1, 10)
    worker.send_signal(sig)
    time.sleep(0.02)
    worker.send_signal(sig)
    out, err = worker.communicate(timeout=60)
    assert seal_all(connect("app_maintainer")) is None
    got = log_state(db)
    assert got["ns"] == [f"{i:05d}" for i in range(1, 20001)]
    assert both_verifiers(db) == (True, True)
    assert worker.returncode == 0 and "Traceback" not in err, (worker.returncode, err[-600:])


@pytest.mark.parametrize("tz", ["Europe/Amsterdam", "Africa/Monrovia", "Asia/Kolkata"])
def test_k14_a_sealed_time_moved_into_local_mean_time_gets_a_verdict_in_any_reader_zone(db, connect, sealed3, tz):
    """A superuser moves a sealed event's occurred_at to 1850, when these zones had offsets in
    seconds (LMT); the reader's session is in that zone. Safe: the Python verifier returns not ok for
    block 2, as audit.verify does, rather than raising."""
    tamper(db, "UPDATE audit.event_log SET occurred_at = '1850-06-01 12:00:00+00' WHERE kind = 't94.k.full'")
    r = connect("app_reader")
    r.execute(f"SET TimeZone = '{tz}'")
    try:
        py = verify_chain(r)
        got = (py.ok, py.bad_block)
    except Exception as e:  # noqa: BLE001
        got = ("raised", f"{type(e).__name__}: {e}")
    assert verified(r)[0] is False
    assert got == (False, 2)
