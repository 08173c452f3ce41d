"""Attacks on the log's partitions (sql/12_log_partitions.sql, migrations/0018_log_partitions.sql),
as each role. Every test passes when the defence holds.

As in tests/test_log_partitions.py, the sealer's count starts five seqs before the first
partition's end instead of sealing a million events."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import psycopg
import pytest
from conftest import FIRST_PARTITION_END as FIRST_END
from test_log_partitions import partitions, record_old
from test_upgrade import installer_at

from pgaudit_py import prune_events, record, seal, status
from pgaudit_py.chain import verify_chain
from pgaudit_py.installer import _apply_migrations, install

LOGIN_ROLES = ["app_writer", "app_reader", "app_maintainer", "app_secrets", "app_attacker"]


def oid_of(db, name):
    return db.execute("SELECT %s::regclass::oid::bigint", [name]).fetchone()[0]


def verified(db):
    return db.execute("SELECT ok FROM audit.verify()").fetchone()[0], verify_chain(db).ok


@pytest.fixture
def two_partitions(near_end):
    """Five old events sealed to the first partition's end, one in the second (made by seal())."""
    db = near_end
    record_old(db, 5, "a")
    seal(db, 100)
    record_old(db, 1, "b")
    seal(db, 100)
    assert [p[0] for p in partitions(db)] == ["audit.event_log_000000", "audit.event_log_000001"]
    return db


class Background:
    """A call on its own thread; .error or .value once done."""

    def __init__(self, call):
        self.value = self.error = None
        self.thread = threading.Thread(target=self._run, args=(call,), daemon=True)
        self.thread.start()

    def _run(self, call):
        try:
            self.value = call()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def join(self, timeout):
        self.thread.join(timeout)
        return not self.thread.is_alive()


def timed_read(conn, limit_s):
    """Seconds a reader's query of the events took; None when it had to be cancelled."""
    conn.execute(f"SET statement_timeout = '{int(limit_s * 1000)}ms'")
    started = time.monotonic()
    try:
        conn.execute("SELECT count(*) FROM audit.events").fetchone()
    except psycopg.errors.QueryCanceled:
        return None
    return time.monotonic() - started


# --- Nobody but the owner changes what the log's partitions are ---------------------------------

@pytest.mark.parametrize("role", LOGIN_ROLES + ["table_owner"])
def test_no_role_may_make_a_table_in_the_audit_schema_to_squat_the_next_partition(two_partitions, connect,
                                                                                  attacker, role):
    db = two_partitions
    conn = attacker if role == "table_owner" else connect(role)
    for statement in ["CREATE TABLE audit.event_log_000002 (seq bigint)",
                      "CREATE TABLE audit.event_log_000002 PARTITION OF audit.event_log"
                      " FOR VALUES FROM (2000000) TO (3000000)",
                      "CREATE VIEW audit.event_log_000002 AS SELECT 1",
                      "CREATE TYPE audit._event_log_000002 AS (a int)"]:
        with pytest.raises(psycopg.Error) as raised:
            conn.execute(statement)
        assert raised.value.sqlstate in ("42501", "3F000"), (statement, raised.value)
    assert db.execute("SELECT to_regclass('audit.event_log_000002'), to_regtype('audit._event_log_000002')"
                      ).fetchone() == (None, None)


@pytest.mark.parametrize("role", LOGIN_ROLES + ["table_owner"])
def test_no_role_but_the_owner_may_attach_detach_drop_or_unguard_a_partition(two_partitions, connect, attacker, role):
    db = two_partitions
    conn = attacker if role == "table_owner" else connect(role)
    conn.execute("CREATE TEMP TABLE fake (LIKE pg_catalog.pg_class)")  # any table it owns
    for statement in [
        "ALTER TABLE audit.event_log DETACH PARTITION audit.event_log_000000",
        "ALTER TABLE audit.event_log DETACH PARTITION audit.event_log_000001 CONCURRENTLY",
        "ALTER TABLE audit.event_log ATTACH PARTITION pg_temp.fake FOR VALUES FROM (5000000) TO (6000000)",
        "DROP TABLE audit.event_log_000000",
        "ALTER TABLE audit.event_log_000001 DISABLE TRIGGER guard_update",
        "DROP TRIGGER guard_delete ON audit.event_log_000001",
        "CREATE TRIGGER x BEFORE INSERT ON audit.event_log_000001 FOR EACH ROW EXECUTE FUNCTION audit._guard_append_only()",
        "ALTER TABLE audit.event_log_000001 OWNER TO CURRENT_USER",
        "GRANT ALL ON audit.event_log_000001 TO PUBLIC",
        "SELECT audit._add_log_partitions(1000000, 9000000)",
        "SELECT audit._drop_log_partitions()",
        "SELECT audit._guard_log_partition('audit.event_log_000001')",
    ]:
        with pytest.raises(psycopg.Error) as raised:
            conn.execute(statement)
        assert raised.value.sqlstate in ("42501", "42P01", "3F000", "25001"), (statement, raised.value)
    assert [p[0] for p in partitions(db)] == ["audit.event_log_000000", "audit.event_log_000001"]
    assert status(db).problems == []


# --- Every way of changing rows meets the guards, on every partition --------------------------------

PARTITION_STATEMENTS = [
    "MERGE INTO {p} t USING (SELECT {s} AS seq) s ON t.seq = s.seq WHEN MATCHED THEN UPDATE SET payload = '{{\"forged\": 1}}'",
    "MERGE INTO {p} t USING (SELECT {s} AS seq) s ON t.seq = s.seq WHEN MATCHED THEN DELETE",
    "INSERT INTO {p} SELECT * FROM audit.event_log WHERE seq = {s}"
    " ON CONFLICT (seq) DO UPDATE SET payload = '{{\"forged\": 1}}'",
    "WITH gone AS (DELETE FROM {p} WHERE seq = {s} RETURNING *) SELECT count(*) FROM gone",
    "WITH moved AS (UPDATE {p} SET payload = '{{\"forged\": 1}}' WHERE seq = {s} RETURNING *) SELECT count(*) FROM moved",
    "UPDATE {p} SET seq = seq + 1000000 WHERE seq = {s}",
    "TRUNCATE {p}",
    "COPY",
]


@pytest.mark.parametrize("statement", PARTITION_STATEMENTS)
@pytest.mark.parametrize("target", ["audit.event_log_000000", "audit.event_log_000001", "audit.event_log"])
@pytest.mark.parametrize("role", [None, "audit_owner"])
def test_merge_copy_upsert_and_writable_ctes_meet_the_guards(two_partitions, statement, target, role):
    """Superusers, and the owner role after granting itself every right back (an owner may), meet
    the guards on the parent and on each partition, the one seal() made included."""
    db = two_partitions
    db.execute("GRANT ALL ON audit.event_log, audit.event_log_000000, audit.event_log_000001 TO audit_owner")
    seq = FIRST_END if target.endswith("000000") else FIRST_END + 1
    with db.transaction():
        if role:
            db.execute(f"SET LOCAL ROLE {role}")
        with pytest.raises(psycopg.Error) as raised, db.transaction():
            if statement == "COPY":
                with db.cursor().copy(f"COPY (SELECT * FROM audit.event_log WHERE seq = {seq}) TO STDOUT") as out:
                    line = b"".join(bytes(chunk) for chunk in out)
                moved = seq + 500_000 if not target.endswith("000000") else seq - 1_000
                with db.cursor().copy(f"COPY {target} FROM STDIN") as copy:
                    copy.write(str(moved).encode() + line[line.index(b"\t"):])
            else:
                db.execute(statement.format(p=target, s=seq))
        assert raised.value.sqlstate == "PA006", raised.value
    assert db.execute("SELECT count(*), count(*) FILTER (WHERE payload ? 'forged') FROM audit.event_log").fetchone() == (6, 0)
    assert verified(db) == (True, True)


# --- Sealing at a partition's end ------------------------------------------------------------------

def test_an_unsealable_event_at_a_partitions_end_is_quarantined_and_nothing_is_lost(near_end, connect):
    db = near_end
    writer = connect("app_writer")
    for n in range(4):
        record(writer, f"before.{n}")
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload, origin)
                  VALUES ('user', 'x', 'bad kind!', 'success', '1', now(), '{}', 'record')""")  # the 5th: refused by the log
    for n in range(4):
        record(writer, f"after.{n}")
    while seal(db, 100).sealed:
        pass
    kinds = [r[0] for r in db.execute("SELECT kind FROM audit.event_log ORDER BY seq")]
    assert [k for k in kinds if k != "audit.event_quarantined"] == [f"before.{n}" for n in range(4)] + [
        f"after.{n}" for n in range(4)]
    assert kinds.count("audit.event_quarantined") == 1
    assert db.execute("SELECT kind FROM audit.quarantine").fetchall() == [("bad kind!",)]
    # No block crosses the partition's end; the chain is whole.
    assert db.execute("SELECT count(*) FROM audit.blocks WHERE first_seq <= %s AND last_seq > %s",
                      [FIRST_END, FIRST_END]).fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)
    assert verified(db) == (True, True)


def test_planted_functions_and_operators_never_run_when_partitions_are_made_or_dropped(near_end, connect, attacker):
    """A table owner plants look-alikes of what the partition functions call in public, and the
    maintainer's session puts public first: neither seal() making a partition nor prune dropping one
    runs them."""
    db = near_end
    for signature, returns, body in [
            ("lpad(text, integer, text)", "text", "SELECT CASE WHEN public.spy('lpad') THEN $1 END"),
            ("regexp_match(text, text)", "text[]", "SELECT CASE WHEN public.spy('regexp_match') THEN ARRAY['0','1'] END"),
            ("pg_get_expr(pg_node_tree, oid)", "text", "SELECT CASE WHEN public.spy('pg_get_expr') THEN '' END"),
            ("set_config(text, text, boolean)", "text", "SELECT CASE WHEN public.spy('set_config') THEN $2 END"),
            ("format(text, bigint, bigint)", "text", "SELECT CASE WHEN public.spy('format') THEN $1 END"),
            ("spy_le(bigint, bigint)", "boolean", "SELECT public.spy('<=')"),
            ("spy_eq(bigint, bigint)", "boolean", "SELECT public.spy('=')")]:
        attacker.execute(f"CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE sql AS $${body}$$")
        attacker.execute(f"GRANT EXECUTE ON FUNCTION public.{signature} TO PUBLIC")
    attacker.execute("CREATE OPERATOR public.<= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.spy_le)")
    attacker.execute("CREATE OPERATOR public.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = public.spy_eq)")
    maintainer = connect("app_maintainer")
    maintainer.execute("SET search_path = public, pg_catalog, audit")
    record_old(db, 5, "a")
    seal(maintainer, 100)
    record_old(db, 1, "b")
    seal(maintainer, 100)
    assert len(partitions(db)) == 2
    assert prune_events(maintainer, timedelta(days=30), batch_size=1).deleted == 5
    assert [p[0] for p in partitions(db)] == ["audit.event_log_000001"]
    assert db.execute("SELECT who, what FROM public.who_ran WHERE who <> 'app_maintainer'").fetchall() == []


# --- Prune drops nothing it should not ---------------------------------------------------------------

def test_prune_never_drops_a_partition_an_archive_batch_or_newer_events_still_hold(near_end, connect):
    db = near_end
    record_old(db, 5, "a")
    seal(db, 100)
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                  VALUES ('user', 'x', 'new.event', 'success', pg_current_xact_id(), now(), '{}')""")
    seal(db, 100)  # the second partition: one new event
    maintainer = connect("app_maintainer")
    maintainer.execute("SELECT audit.set_archive_settings('30 days', 2, NULL)")
    batch = maintainer.execute("SELECT batch_id, first_seq, last_seq FROM audit.next_archive_batch()").fetchone()
    assert batch[1:] == (FIRST_END - 4, FIRST_END)  # the whole first partition: one block of 5 events
    # The batch is planned: prune leaves its blocks (and so the partition) alone.
    assert prune_events(maintainer, timedelta(days=30), batch_size=1).deleted == 0
    assert len(partitions(db)) == 2
    # An archive batch's deletion drops the partition once all of it is pruned, nothing after it.
    maintainer.execute("SELECT audit.record_archive_batch(%s, 'file:///x', 1, 1, '\\x00', '\\x00', '\\x01', NULL)",
                       [batch[0]])
    assert maintainer.execute("SELECT audit.delete_archived(%s)", [batch[0]]).fetchone() == (5,)
    assert [p[0] for p in partitions(db)] == ["audit.event_log_000001"]
    assert prune_events(maintainer, timedelta(days=30), batch_size=1).deleted == 0  # the new event stays
    assert db.execute("SELECT kind FROM audit.event_log").fetchall() == [("new.event",)]
    assert verified(db) == (True, True)


def test_prune_does_not_silently_drop_events_sealed_before_the_chain_began(db, connect):
    """An upgraded install keeps the events sealed before the chain began (seq <= chain_start_seq,
    migrations/0003_chain.sql): no block covers them, so prune never deleted them. Dropping the
    first partition must not take them with it unrecorded."""
    with db.transaction():
        db.execute("SET LOCAL ROLE audit_sealer")  # seal_state's guard lets the sealer alone move it
        db.execute("UPDATE audit.seal_state SET last_seq = %s, chain_start_seq = %s", [FIRST_END - 5, FIRST_END - 5])
    with db.transaction():
        db.execute("SET LOCAL ROLE audit_sealer")  # what the sealer of an earlier release wrote
        db.execute("""INSERT INTO audit.event_log (seq, id, actor_type, db_role, kind, outcome, txid, occurred_at,
                                                   sealed_at, payload, origin)
                      SELECT g, gen_random_uuid(), 'user', 'x', 'legacy.event', 'success', '1',
                             now() - interval '400 days', now() - interval '400 days', '{}', 'record'
                        FROM generate_series(1, 3) g""")
    record_old(db, 5, "a")
    seal(db, 100)
    record_old(db, 1, "b")
    seal(db, 100)
    result = prune_events(connect("app_maintainer"), timedelta(days=30), batch_size=1)
    legacy = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 'legacy.event'").fetchone()[0]
    assert legacy == 3 or result.deleted == 8, f"{3 - legacy} legacy events went, prune says it deleted {result.deleted}"


@pytest.mark.parametrize("via", ["prune", "delete_archived"])
@pytest.mark.parametrize("who", ["app_attacker", "table_owner"])
def test_an_object_depending_on_a_partition_cannot_stop_prune(two_partitions, connect, attacker, who, via):
    """Any role that can connect makes an object depend on a partition by its oid (a regclass
    constant needs no right on the schema): a temporary view, or a lasting one where it may create.
    Prune and delete_archived must still remove the events, not fail for good."""
    db = two_partitions
    oid = oid_of(db, "audit.event_log_000000")
    if who == "app_attacker":
        connect("app_attacker").execute(f"CREATE TEMP VIEW pin AS SELECT '{int(oid)}'::regclass AS r")
    else:
        attacker.execute(f"CREATE VIEW public.pin AS SELECT '{int(oid)}'::regclass AS r")
    maintainer = connect("app_maintainer")
    if via == "prune":
        removed = prune_events(maintainer, timedelta(days=30), batch_size=1).deleted
    else:
        batch = maintainer.execute("SELECT batch_id FROM audit.next_archive_batch('30 days')").fetchone()[0]
        maintainer.execute("SELECT audit.record_archive_batch(%s, 'file:///x', 1, 1, '\\x00', '\\x00', '\\x01', NULL)",
                           [batch])
        removed = maintainer.execute("SELECT audit.delete_archived(%s)", [batch]).fetchone()[0]
    assert removed == 5
    assert db.execute("SELECT min(seq) FROM audit.event_log").fetchone() == (FIRST_END + 1,)
    assert verified(db) == (True, True)


def test_status_stays_clean_after_prune_drops_a_partition(two_partitions, connect):
    db = two_partitions
    assert status(db).problems == []
    prune_events(connect("app_maintainer"), timedelta(days=30), batch_size=1)
    assert [p[0] for p in partitions(db)] == ["audit.event_log_000001"]
    assert status(db).problems == []


# --- Lock games -----------------------------------------------------------------------------------

def hold_the_log(connect, db, who):
    """A session that holds the log (AccessShareLock on event_log and its first partition) in an
    open transaction: a reader's query, or any role's catalogue function that locks and keeps."""
    conn = connect(who, autocommit=False)
    if who == "app_reader":
        conn.execute("SELECT count(*) FROM audit.events")
    else:  # no right on anything in the schema: pg_get_partition_constraintdef keeps its locks
        conn.execute("SELECT pg_get_partition_constraintdef(%s::oid)", [oid_of(db, "audit.event_log_000000")])
    held = db.execute("SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                      " WHERE a.usename = %s AND l.relation = 'audit.event_log'::regclass AND l.granted", [who]).fetchone()
    assert held == (1,)
    return conn


@pytest.mark.parametrize("who", ["app_attacker", "app_reader"])
def test_a_session_holding_the_log_stalls_neither_sealing_nor_readers_at_a_partitions_end(near_end, connect, who):
    db = near_end
    holder = hold_the_log(connect, db, who)
    record_old(db, 12)
    maintainer = connect("app_maintainer")
    maintainer.execute("SET statement_timeout = '8s'")
    sealing = Background(lambda: seal(maintainer, 100))
    time.sleep(1)
    read_took = timed_read(connect("app_reader"), 3)
    finished = sealing.join(15)
    holder.rollback()
    sealing.join(15)
    problems = []
    if not (finished and sealing.error is None):
        problems.append(f"seal() waited on the log until cancelled: {sealing.error!r}")
    if read_took is None:
        problems.append("a reader queued behind seal()'s lock request on the log for 3 s and was cancelled")
    assert problems == []


@pytest.mark.parametrize("bounds", ["DEFAULT", "FOR VALUES FROM (MINVALUE) TO (0)"])
def test_status_names_an_unguarded_partition_whatever_its_bounds(two_partitions, bounds):
    db = two_partitions
    db.execute("CREATE TABLE audit.odd (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    db.execute(f"ALTER TABLE audit.event_log ATTACH PARTITION audit.odd {bounds}")
    assert [p for p in status(db).problems if "audit.odd" in p]


def test_prune_does_not_make_readers_queue_behind_a_partition_drop(two_partitions, connect):
    db = two_partitions
    holder = hold_the_log(connect, db, "app_attacker")
    maintainer = connect("app_maintainer")
    pruning = Background(lambda: prune_events(maintainer, timedelta(days=30), batch_size=1))
    time.sleep(0.5)
    read_took = timed_read(connect("app_reader"), 2)
    pruning.join(30)
    holder.rollback()
    assert pruning.error is None and pruning.value.deleted == 5
    assert read_took is not None, "a reader queued behind prune's DROP TABLE for 2 s and was cancelled"


# --- Tampering by DDL is detected -----------------------------------------------------------------

def tamper_detach(db):
    db.execute("ALTER TABLE audit.event_log DETACH PARTITION audit.event_log_000000")


def tamper_drop(db):
    db.execute("DROP TABLE audit.event_log_000001")


def tamper_swap(db):
    db.execute("ALTER TABLE audit.event_log DETACH PARTITION audit.event_log_000000")
    db.execute("CREATE TABLE audit.swapped (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    db.execute("INSERT INTO audit.swapped SELECT * FROM audit.event_log_000000")
    db.execute(f"UPDATE audit.swapped SET payload = '{{\"forged\": 1}}' WHERE seq = {FIRST_END - 2}")
    db.execute(f"ALTER TABLE audit.event_log ATTACH PARTITION audit.swapped FOR VALUES FROM (0) TO ({FIRST_END + 1})")


def tamper_ahead(db):
    db.execute("CREATE TABLE audit.ahead (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    db.execute(f"INSERT INTO audit.ahead SELECT * FROM audit.event_log WHERE seq = {FIRST_END + 1}")
    db.execute("UPDATE audit.ahead SET seq = 2000000, kind = 'forged.event'")
    db.execute("ALTER TABLE audit.event_log ATTACH PARTITION audit.ahead FOR VALUES FROM (2000000) TO (3000000)")


def tamper_move(db):
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")  # a superuser's way past the guards
        db.execute(f"UPDATE audit.event_log SET seq = {FIRST_END + 10} WHERE seq = {FIRST_END}")
    assert db.execute(f"SELECT tableoid::regclass::text FROM audit.event_log WHERE seq = {FIRST_END + 10}"
                      ).fetchone() == ("audit.event_log_000001",)


@pytest.mark.parametrize("constraints", ["INCLUDING CONSTRAINTS", ""])
def test_the_owner_role_cannot_attach_a_partition_of_events_below_the_chain(two_partitions, constraints):
    """No block covers a seq below 1, so neither verifier would look there: the log's CHECK (seq > 0),
    which a partition must carry to be attached, keeps any event out, DDL alone or not."""
    db = two_partitions
    # Refused at the insert (the copied check), or at the attach (a partition lacking the log's checks).
    with pytest.raises((psycopg.errors.CheckViolation, psycopg.errors.DatatypeMismatch)), db.transaction():
        db.execute("SET LOCAL ROLE audit_owner")
        db.execute(f"CREATE TABLE audit.before_time (LIKE audit.event_log INCLUDING DEFAULTS {constraints})")
        db.execute(f"INSERT INTO audit.before_time SELECT * FROM audit.event_log WHERE seq = {FIRST_END + 1}")
        db.execute("UPDATE audit.before_time SET seq = -1, kind = 'forged.event', block_no = NULL")
        db.execute("ALTER TABLE audit.event_log ATTACH PARTITION audit.before_time FOR VALUES FROM (MINVALUE) TO (0)")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'forged.event'").fetchone() == (0,)


@pytest.mark.parametrize("tamper", [tamper_detach, tamper_drop, tamper_swap, tamper_ahead, tamper_move])
def test_verify_and_the_python_verifier_catch_partition_tampering(two_partitions, tamper):
    db = two_partitions
    assert verified(db) == (True, True)
    tamper(db)
    sql_ok, python_ok = verified(db)
    assert not sql_ok, "audit.verify() says the log is intact"
    assert not python_ok, "verify_chain says the log is intact"


# --- Ids ------------------------------------------------------------------------------------------

def test_no_audit_role_can_choose_an_events_id(db, connect, attacker):
    from pgaudit_py import enable_tracking
    writer = connect("app_writer")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute("""INSERT INTO audit.event_intake (id, actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                          VALUES (gen_random_uuid(), 'user', 'x', 'k', 'success', '1', now(), '{}')""")
    with pytest.raises(psycopg.errors.UndefinedFunction):
        writer.execute("SELECT audit.record(kind => 'a.b', id => gen_random_uuid())")
    attacker.execute("CREATE TABLE public.many (id int PRIMARY KEY)")
    enable_tracking(connect("app_maintainer"), "public.many")
    for _ in range(3):
        attacker.execute("INSERT INTO public.many SELECT g FROM generate_series(1, 2000) g")
        attacker.execute("DELETE FROM public.many")
    for n in range(50):
        record(writer, "same.ms", payload={"n": n})
    seal(db, 100_000)
    assert db.execute("SELECT count(*) = count(DISTINCT id) FROM audit.event_log").fetchone() == (True,)


# --- The upgrade ----------------------------------------------------------------------------------

PREVIOUS = "39bc3fe"  # the commit before the log's partitions


def apply_migrations_only(db, schema):
    """What the installer commits before it runs the sql/ files: writers and the old sealer run between."""
    db.execute(f"SET ROLE {schema}_owner")
    _apply_migrations(db, schema)
    db.execute("RESET ROLE")
    db.execute("RESET search_path")


def test_an_old_sealer_between_migration_0018_and_the_sql_files_loses_nothing(db, tmp_path_factory):
    installer_at(PREVIOUS, tmp_path_factory).install(db, "upgp")
    db.execute("SELECT upgp.record(kind => 'sealed.before', payload => jsonb_build_object('n', g))"
               " FROM generate_series(1, 3) g")
    assert db.execute("SELECT sealed FROM upgp.seal()").fetchone() == (3,)
    db.execute("SELECT upgp.record(kind => 'pending.across') FROM generate_series(1, 2)")
    apply_migrations_only(db, "upgp")
    assert db.execute("SELECT relkind FROM pg_class WHERE oid = 'upgp.event_log'::regclass").fetchone() == ("p",)
    # The old seal() either seals into the first partition or fails cleanly; then writers go on.
    try:
        with db.transaction():
            db.execute("SELECT * FROM upgp.seal()")
    except psycopg.errors.UndefinedFunction:
        pass  # what it does: 0018 dropped _canonical_event(event_log, smallint), which it calls
    db.execute("SELECT upgp.record(kind => 'written.between')")
    install(db, "upgp")
    while seal(db, 100, audit_schema="upgp").sealed:
        pass
    kinds = [r[0] for r in db.execute("SELECT kind FROM upgp.event_log ORDER BY seq")]
    assert [k for k in kinds if not k.startswith("audit.")] == ["sealed.before"] * 3 + ["pending.across"] * 2 + [
        "written.between"]
    assert db.execute("SELECT count(*) FROM upgp.quarantine").fetchone() == (0,)
    assert db.execute("SELECT ok FROM upgp.verify()").fetchone() == (True,)
    assert verify_chain(db, audit_schema="upgp").ok
    assert status(db, "upgp").problems == []
