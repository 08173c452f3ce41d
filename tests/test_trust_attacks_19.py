"""Trial 19: against restore_archive_batch's lock of its batch row (FOR UPDATE) and the per-user key's
fourth part, the database role vouched for when the type is 'db_role'. Does not repeat
tests/test_trust_attacks_16.py, _17.py or _18.py.

Each test asserts the SAFE outcome: it fails when the attack works."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from test_trust_attacks_14 import limited_notes
from test_trust_attacks_16 import _count, _ctx, _restore, two_batches  # noqa: F401  (a fixture)
from test_trust_attacks_17 import _insert
from test_trust_attacks_18 import restore_committed

from pgaudit_py import enable_tracking

# --- 1. restore_archive_batch's lock --------------------------------------------------------------------


def _in_thread(fn):
    got = {}

    def run():
        try:
            got["r"] = fn()
        except psycopg.Error as e:
            got["r"] = f"{e.sqlstate}: {str(e).splitlines()[0]}"
    t = threading.Thread(target=run)
    t.start()
    return t, got


def test_a_second_restore_of_one_batch_under_repeatable_read_is_not_refused_as_forged(db, connect, two_batches):  # noqa: F811
    """A maintainer whose transactions are REPEATABLE READ (default_transaction_isolation, an ORM's
    setting): the second restore waits on the lock, but its snapshot predates the first's rows, so its
    DELETE misses them and its INSERT meets them in the primary key. The genuine lines must not be
    refused as forged (PA005); a serialization failure (40001) would be an honest, retryable answer."""
    ids, lines = two_batches
    second = ids[1]
    a = connect("app_maintainer", autocommit=False)
    b = connect("app_maintainer", autocommit=False)
    b.execute("SET default_transaction_isolation = 'repeatable read'")
    b.commit()
    assert _restore(a, second, lines[second]) == 10

    t, got = _in_thread(lambda: restore_committed(b, second, lines[second]))
    t.join(1.5)
    a.commit()
    t.join(30)
    assert got.get("r") == 10 or str(got.get("r")).startswith("40001"), got
    assert _count(db, "SELECT count(*) FROM audit.restored_events WHERE batch_id = %s", (second,)) == 10


def test_a_drop_and_reload_in_one_transaction_beside_a_restore_does_not_deadlock(db, connect, two_batches):  # noqa: F811
    """drop_restored_batch takes no lock of the batch: a maintainer dropping then reloading a batch in one
    transaction holds its restored rows, then waits for the batch row; a concurrent restore holds the
    batch row, then waits for those rows. Both are genuine: neither may be aborted (40P01) or refused."""
    ids, lines = two_batches
    second = ids[1]
    connect("app_maintainer").execute("SELECT audit.restore_archive_batch(%s, %s::jsonb[])", (second, lines[second]))
    a = connect("app_maintainer", autocommit=False)
    b = connect("app_maintainer", autocommit=False)
    assert a.execute("SELECT audit.drop_restored_batch(%s)", (second,)).fetchone()[0] == 10

    t, got = _in_thread(lambda: restore_committed(b, second, lines[second]))
    time.sleep(1.0)
    try:
        got["a"] = _restore(a, second, lines[second])
        a.commit()
    except psycopg.Error as e:
        got["a"] = f"{e.sqlstate}: {str(e).splitlines()[0]}"
        a.rollback()
    t.join(30)
    assert got.get("a") == 10 and got.get("r") == 10, got
    assert _count(db, "SELECT count(*) FROM audit.restored_events WHERE batch_id = %s", (second,)) == 10


def test_a_drop_concurrent_with_a_reload_either_drops_the_batch_or_waits_for_nothing(db, connect, two_batches):  # noqa: F811
    """A batch restored; a maintainer reloads it (uncommitted); another drops it. The drop waits on the
    reload's deleted rows, then finds neither them nor the reload's new ones: it returns 0 and records
    nothing, and the batch stays restored, an outcome no order of the two gives (drop first: 10 dropped;
    reload first: the reload's 10 dropped)."""
    ids, lines = two_batches
    second = ids[1]
    connect("app_maintainer").execute("SELECT audit.restore_archive_batch(%s, %s::jsonb[])", (second, lines[second]))
    a = connect("app_maintainer", autocommit=False)
    b = connect("app_maintainer")
    assert _restore(a, second, lines[second]) == 10
    t, got = _in_thread(lambda: b.execute("SELECT audit.drop_restored_batch(%s)", (second,)).fetchone()[0])
    t.join(1.0)
    a.commit()
    t.join(30)
    left = _count(db, "SELECT count(*) FROM audit.restored_events WHERE batch_id = %s", (second,))
    assert (got.get("r"), left) in ((10, 0),), (got, left)


def test_restores_of_two_batches_at_once_both_succeed_and_nothing_waits_on_them(db, connect, two_batches):  # noqa: F811
    """Two restores of different batches in open transactions; meanwhile the archiver's planning, a prune,
    verify(), readers of restored_events and archive_batches, the other batch's drop, all with a 3 s
    lock_timeout: none waits."""
    ids, lines = two_batches
    first, second = ids
    a = connect("app_maintainer", autocommit=False)
    b = connect("app_maintainer", autocommit=False)
    assert _restore(a, first, lines[first]) == 10
    t, got = _in_thread(lambda: _restore(b, second, lines[second]))
    t.join(10)
    assert got.get("r") == 10, got
    others = {}
    m = connect("app_maintainer")
    m.execute("SET lock_timeout = '3s'")
    r = connect("app_reader")
    r.execute("SET lock_timeout = '3s'")
    for name, conn, q in [
        ("next_archive_batch", m, "SELECT (audit.next_archive_batch()).batch_id"),
        ("prune_events", m, "SELECT (audit.prune_events('1 day', 1000)).deleted"),
        ("verify", r, "SELECT (audit.verify(NULL, NULL)).ok"),
        ("reader of restored_events", r, "SELECT count(*) FROM audit.restored_events"),
        ("reader of archive_batches", r, "SELECT count(*) FROM audit.archive_batches"),
    ]:
        try:
            others[name] = conn.execute(q).fetchone()[0]
        except psycopg.Error as e:
            others[name] = f"{e.sqlstate}: {str(e).splitlines()[0]}"
    # The archiver's own steps on a batch being restored (record, delete) wait for the restore to end:
    # the intended serialization, bounded by the maintainer's transaction; after it, they go through.
    rerun = (f"SELECT (audit.record_archive_batch('{first}', NULL, NULL, NULL, NULL, NULL,"
             f" (SELECT manifest_sha256 FROM audit.archive_batches WHERE batch_id = '{first}'), NULL)).state")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        m.execute(rerun)
    a.commit()
    b.commit()
    assert m.execute(rerun).fetchone()[0] == "deleted"
    assert not any(str(v).startswith("55P03") for v in others.values()), others
    assert _count(db, "SELECT count(*) FROM audit.restored_events") == 20


@pytest.mark.parametrize("role", ["app_reader", "app_writer", "app_attacker"])
def test_no_role_but_the_archive_functions_can_hold_a_batch_row_a_restore_waits_on(db, connect, two_batches, role):  # noqa: F811
    """Any lock that conflicts with FOR UPDATE on an archive_batches row (a row lock of any strength, a
    table lock of SHARE or above) would let its holder stall every restore and the archiver forever."""
    ids, _ = two_batches
    conn = connect(role)
    taken = {}
    for q in ["SELECT 1 FROM audit.archive_batches FOR KEY SHARE",
              "SELECT 1 FROM audit.archive_batches FOR SHARE",
              "SELECT 1 FROM audit.archive_batches FOR NO KEY UPDATE",
              "SELECT 1 FROM audit.archive_batches FOR UPDATE",
              "SELECT 1 FROM audit.restored_events FOR KEY SHARE",
              "LOCK TABLE audit.archive_batches IN EXCLUSIVE MODE",
              "LOCK TABLE audit.archive_batches IN ACCESS EXCLUSIVE MODE",
              "LOCK TABLE audit.restored_events IN SHARE MODE",
              "LOCK TABLE audit.blocks IN EXCLUSIVE MODE",
              "CREATE TABLE public.t19_fk (b text REFERENCES audit.archive_batches)"]:
        try:
            with conn.transaction():
                conn.execute(q)
                taken[q] = "taken"
        except psycopg.Error as e:
            if e.sqlstate not in ("42501", "3F000"):
                taken[q] = e.sqlstate
    assert taken == {}, taken


# --- 2. The per-user key's database role ----------------------------------------------------------------

ODD_ROLES = ["NULL", "null", "t19 a,b", "t19 {x}", 't19 x"y', "t19 x'y", "t19\\x", " t19", "t19 ", "t19bob",
             "T19BOB", "T19Bob", "t19 db_role", "t19,db_role", "{t19}", "t19 NULL"]


@pytest.fixture
def odd_roles(db):
    made = []
    for name in ODD_ROLES:
        db.execute(psycopg.sql.SQL("CREATE ROLE {} NOLOGIN").format(psycopg.sql.Identifier(name)))
        made.append(name)
        db.execute(psycopg.sql.SQL("GRANT {} TO app_writer").format(psycopg.sql.Identifier(name)))
    yield made
    for name in made:
        db.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(psycopg.sql.Identifier(name)))
        db.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(name)))


def _grant_notes(db, role: str) -> None:
    db.execute(psycopg.sql.SQL("GRANT INSERT ON public.notes TO {0}; GRANT USAGE ON SEQUENCE public.notes_id_seq TO {0}")
               .format(psycopg.sql.Identifier(role)))


def test_roles_whose_names_quote_case_or_spell_null_each_have_their_own_counter(db, connect, odd_roles):
    """app_writer SET ROLE to each odd role and writes once with no actor named, and once more naming
    actor_type db_role and, as actor_id, the next role's name: every (role, claim) one counter, as the log
    records them apart by db_role."""
    limited_notes(db, connect, 3)
    enable_tracking(connect("app_maintainer"), "public.notes")
    for r in odd_roles:
        _grant_notes(db, r)
    for i, r in enumerate(odd_roles):
        w = connect("app_writer")
        w.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(r)))
        assert _insert(w) is None, r
        _ctx(w, actor_type="db_role", actor_id=odd_roles[(i + 1) % len(odd_roles)])
        assert _insert(w) is None, r
    recorded = db.execute("SELECT count(DISTINCT (actor_type, actor_id, db_role)) FROM audit.event_intake"
                          " WHERE kind = 'public.notes.insert'").fetchone()[0]
    keys = db.execute("SELECT array_agg(DISTINCT key) FROM audit.rate_counters").fetchone()[0]
    assert recorded == 2 * len(odd_roles)
    assert len(keys) == recorded, keys


def test_a_role_string_longer_than_a_name_does_not_open_another_counter(db, connect):
    """set_config('role', <a role's 63-byte name + more>): were it taken, _db_role() would return the
    longer string, a fresh counter for one role each time."""
    name = "t19" + "l" * 60
    db.execute(f'CREATE ROLE "{name}" NOLOGIN; GRANT "{name}" TO app_writer')
    try:
        limited_notes(db, connect, 3)
        _grant_notes(db, name)
        admitted, said = 0, set()
        for tail in ["", "x", "yy", "zzz", "!"]:
            w = connect("app_writer")
            try:
                w.execute("SELECT set_config('role', %s, false)", (name + tail,))
            except psycopg.Error:
                continue
            said.add(w.execute("SELECT current_setting('role')").fetchone()[0])
            admitted += _insert(w) is None
        keys = db.execute("SELECT array_agg(DISTINCT key) FROM audit.rate_counters").fetchone()[0]
        assert admitted <= 3 and said == {name}, (admitted, said, keys)
    finally:
        db.execute(f'DROP OWNED BY "{name}"; DROP ROLE "{name}"')


def test_a_security_definer_function_of_the_writers_own_spends_its_callers_allowance_not_the_writers(db, connect):
    """app_writer makes a SECURITY DEFINER function that writes the table and lets app_attacker call it:
    the write is recorded as app_attacker's (the role vouched for), so it must be counted as
    app_attacker's, leaving app_writer's own allowance whole."""
    limited_notes(db, connect, 3)
    enable_tracking(connect("app_maintainer"), "public.notes")
    db.execute("GRANT CREATE ON SCHEMA public TO app_writer")
    try:
        w = connect("app_writer")
        w.execute("""CREATE FUNCTION public.t19_write() RETURNS void LANGUAGE sql SECURITY DEFINER
                     AS $$ INSERT INTO public.notes (body) VALUES ('via') $$;
                     GRANT EXECUTE ON FUNCTION public.t19_write() TO app_attacker""")
        m = connect("app_attacker")
        for claim in ({}, {"actor_type": "db_role", "actor_id": "app_writer"}):
            _ctx(m, **claim)
            for _ in range(3):
                try:
                    m.execute("SELECT public.t19_write()")
                except psycopg.Error as e:
                    assert e.sqlstate == "PA009", e
        got = _insert(connect("app_writer"))
        recorded = db.execute("SELECT actor_type, actor_id, db_role, count(*) FROM audit.event_intake"
                              " WHERE kind = 'public.notes.insert' GROUP BY 1, 2, 3 ORDER BY 3, 2").fetchall()
        assert got is None, (got, recorded)
    finally:
        db.execute("DROP FUNCTION IF EXISTS public.t19_write(); REVOKE CREATE ON SCHEMA public FROM app_writer")


@pytest.mark.xfail(strict=True, reason="a known limit (docs/rate-limits.md, What counts): the limit counts the role "
                   "said when the statement starts, the capture records the one said when it ends; strict, so that "
                   "a change that closes it says so")
def test_a_role_set_during_the_statement_is_counted_as_the_role_recorded(db, connect, odd_roles):
    """INSERT ... SELECT FROM (SELECT set_config('role', R, true)): the limit (BEFORE) counts the role at
    the statement's start, the capture (AFTER) records R. Only roles the session may SET ROLE to anyway."""
    limited_notes(db, connect, 3)
    enable_tracking(connect("app_maintainer"), "public.notes")
    r = "t19bob"
    _grant_notes(db, r)
    w = connect("app_writer")
    admitted = 0
    for _ in range(4):
        try:
            with w.transaction():
                w.execute("INSERT INTO public.notes (body) SELECT 'x' FROM (SELECT set_config('role', %s, true)) s", (r,))
            admitted += 1
        except psycopg.Error as e:
            assert e.sqlstate == "PA009", e
    recorded = db.execute("SELECT DISTINCT db_role FROM audit.event_intake WHERE kind = 'public.notes.insert'").fetchall()
    keys = db.execute("SELECT array_agg(DISTINCT key) FROM audit.rate_counters").fetchone()[0]
    assert all(r in k for k in keys), (recorded, keys)


def test_set_session_authorization_counts_the_role_it_names(db, connect):
    """A superuser's session under SET SESSION AUTHORIZATION app_writer is recorded as app_writer; it is
    counted as app_writer (session_user), and app_writer's own session then shares that counter."""
    limited_notes(db, connect, 3)
    enable_tracking(connect("app_maintainer"), "public.notes")
    s = connect()
    s.execute("SET SESSION AUTHORIZATION app_writer")
    for _ in range(3):
        assert _insert(s) is None
    got = _insert(connect("app_writer"))
    recorded = db.execute("SELECT DISTINCT db_role FROM audit.event_intake WHERE kind = 'public.notes.insert'").fetchall()
    assert recorded == [("app_writer",)]
    assert got == "PA009", got
