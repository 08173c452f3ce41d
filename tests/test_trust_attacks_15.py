"""Trial 15: new variants against this session's changes (intake bounds checked by the writers,
the sealer's inlined changed columns, record() in PL/pgSQL, the rate limit's ctid update and the
inlined exemption). Does not repeat tests/test_trust_attacks_14.py.

Each test asserts the SAFE outcome: it fails when the attack works."""

from __future__ import annotations

import random
import threading
from contextlib import suppress

import psycopg
import pytest
from test_trust_attacks_14 import limited_notes

from pgaudit_py import enable_rate_limit, enable_tracking, seal


def _pending(db) -> int:
    return int(db.execute("SELECT count(*) FROM audit.event_intake").fetchone()[0])


def _count(db, sql: str, args=None) -> int:
    return int(db.execute(sql, args).fetchone()[0])


def _intake_too_long(db) -> int:
    return _count(db,
        "SELECT count(*) FROM audit.event_intake WHERE char_length(tenant_id) > 256 OR char_length(actor_type) > 64"
        " OR char_length(actor_id) > 256 OR char_length(kind) > 128 OR char_length(target_type) > 128"
        " OR char_length(target_id) > 512 OR char_length(correlation_id) > 256"
        " OR char_length(idempotency_key) > 256 OR char_length(payload ->> 'moved_from') > 512")


def _quarantined(db) -> list:
    return db.execute("SELECT coalesce(array_agg(kind || ': ' || sqlstate || ' ' || left(error, 90)), '{}')"
                      " FROM audit.quarantine").fetchone()[0]


def _seals_cleanly(db) -> None:
    assert _intake_too_long(db) == 0
    pending = _pending(db)
    result = seal(db)
    assert _quarantined(db) == []
    assert result.sealed == pending
    assert _pending(db) == 0


def _ctx(conn, **settings: str) -> None:
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", ("pgaudit_py." + name, value))


def _astral(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(chr(0x10000 + rng.randint(0, 60000)) for _ in range(n))


# --- 1. The session context on paths test 14 did not take ------------------------------------------

SANDBOX_DDL = ("CREATE TYPE public.mood AS ENUM ('ok', 'bad');"
               "CREATE TABLE public.k (id int PRIMARY KEY, m public.mood, v int)")


@pytest.mark.parametrize("setting,bound", [("actor_id", 256), ("correlation_id", 256), ("tenant_id", 256),
                                           ("actor_type", 64)])
@pytest.mark.parametrize("op", ["insert", "update", "delete", "upsert", "cte"])
def test_sandbox_path_refuses_a_long_context(db, connect, attacker, setting, bound, op):
    """A table with an enum column takes the sandbox path (a subtransaction between DECLARE and the
    INSERT): the check after the INSERT must still run."""
    attacker.execute(SANDBOX_DDL)
    attacker.execute("CREATE TABLE public.k2 (id int PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.k")
    enable_tracking(connect("app_maintainer"), "public.k2")
    attacker.execute("INSERT INTO public.k VALUES (1, 'ok', 1)")
    before = _pending(db)
    _ctx(attacker, **{setting: _astral(bound + 1, 7)})
    sql = {"insert": "INSERT INTO public.k VALUES (2, 'bad', 2)",
           "update": "UPDATE public.k SET m = 'bad'",
           "delete": "DELETE FROM public.k",
           "upsert": "INSERT INTO public.k VALUES (1, 'bad', 9) ON CONFLICT (id) DO UPDATE SET v = excluded.v",
           "cte": "WITH a AS (INSERT INTO public.k2 VALUES (5, 5) RETURNING 1) UPDATE public.k SET v = 3"}[op]
    with pytest.raises(psycopg.errors.CheckViolation):
        attacker.execute(sql)
    assert db.execute("SELECT id, m::text, v FROM public.k").fetchall() == [(1, "ok", 1)]
    assert _pending(db) == before
    _seals_cleanly(db)


def test_a_long_context_in_a_user_trigger_that_writes_a_tracked_table(db, connect, attacker):
    """The statement itself writes no captured row of k, but its trigger writes k2 (tracked) after
    switching the context to a long actor_id (set_config in the trigger, then reset)."""
    attacker.execute("""
        CREATE TABLE public.k (id int PRIMARY KEY, v int);
        CREATE TABLE public.k2 (id int PRIMARY KEY, v int);
        CREATE FUNCTION public.sneak() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM set_config('pgaudit_py.actor_id', repeat('A', 5000), true);
            INSERT INTO public.k2 VALUES (NEW.id, NEW.v);
            PERFORM set_config('pgaudit_py.actor_id', '', true);
            RETURN NEW;
        END $$;
        CREATE TRIGGER sneak AFTER INSERT ON public.k FOR EACH ROW EXECUTE FUNCTION public.sneak()""")
    enable_tracking(connect("app_maintainer"), "public.k2")
    try:
        attacker.execute("INSERT INTO public.k VALUES (1, 1)")
    except psycopg.errors.CheckViolation as e:
        print("trigger path refused:", str(e)[:100])
    _seals_cleanly(db)


def test_a_baseline_refuses_a_long_correlation_or_actor_id(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, v int); INSERT INTO public.k VALUES (1, 1)")
    maintainer = connect("app_maintainer")
    for setting, value in [("correlation_id", _astral(257, 1)), ("actor_id", _astral(257, 2))]:
        _ctx(maintainer, **{setting: value})
        with suppress(psycopg.Error):
            maintainer.execute("SELECT audit.enable_tracking('public.k'::regclass, baseline => true)")
        _ctx(maintainer, **{setting: ""})
        with suppress(psycopg.Error):
            maintainer.execute("SELECT audit.disable_tracking('public.k'::regclass)")
    _seals_cleanly(db)


# --- 2. Values within bounds in characters, large in bytes, in other indexes -----------------------

def test_record_moved_from_and_target_type_at_their_bounds_in_four_byte_characters_seal(db, connect):
    """event_log_moved_from is (target_type, payload ->> 'moved_from', seq): 128 + 512 four-byte
    characters, and the same for a moved_from that is a JSON object whose text is 512 characters."""
    writer = connect("app_writer")
    writer.execute("SELECT audit.record('app.moved', target_type => %s, target_id => %s, payload => %s::jsonb)",
                   (_astral(128, 1), _astral(512, 2), '{"moved_from": "' + _astral(512, 3) + '"}'))
    obj = '{"a": "' + _astral(512 - 9, 4) + '"}'  # {"a": "..."} prints as 9 + n characters
    assert len('{"a": ""}') == 9
    writer.execute("SELECT audit.record('app.moved', target_type => %s, payload => jsonb_build_object('moved_from', %s::jsonb))",
                   (_astral(128, 5), obj))
    _seals_cleanly(db)


def test_record_moved_from_as_an_object_whose_text_is_too_long_is_refused(db, connect):
    writer = connect("app_writer")
    with suppress(psycopg.Error):
        writer.execute("SELECT audit.record('app.moved', target_type => 'doc', payload => jsonb_build_object("
                       "'moved_from', jsonb_build_object('a', %s::text)))", (_astral(600, 6),))
    with suppress(psycopg.Error):  # a number whose text is long: 1e399 prints 400 digits; two of them in an array
        writer.execute("SELECT audit.record('app.moved', target_type => 'doc', payload => '{\"moved_from\": [1e399, 1e399]}')")
    _seals_cleanly(db)


def test_a_captured_key_move_at_the_bound_in_four_byte_characters_seals(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (id text PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.k",
                    kind_prefix="p" * 100)
    old, new = _astral(512, 11), _astral(512, 12)
    attacker.execute("INSERT INTO public.k VALUES (%s, 1)", (old,))
    attacker.execute("UPDATE public.k SET id = %s", (new,))
    moved = db.execute("SELECT payload ->> 'moved_from' FROM audit.event_intake WHERE kind LIKE '%.update'").fetchone()[0]
    assert moved == old
    _seals_cleanly(db)


# --- 3. Package writers of system events taking user input -----------------------------------------

def test_an_operation_limit_with_a_long_name_does_not_reach_the_intake(db, connect):
    maintainer = connect("app_maintainer")
    with suppress(psycopg.Error):
        maintainer.execute("SELECT audit.set_operation_limit(%s, 5)", ("o" * 600,))
    with suppress(psycopg.Error):
        maintainer.execute("SELECT audit.set_operation_limit(%s, 5)", ("a." + "o" * 120,))
    _seals_cleanly(db)


def test_schema_change_events_of_long_named_objects_seal(db, connect, attacker):
    """Identifiers of 63 double quotes print as 128 characters each: table and type names in system
    events (tracked_table_altered, tracked_type_altered) as target_id."""
    q = '"' * 63
    qi = '"' + '"' * 126 + '"'
    attacker.execute(f"CREATE SCHEMA {qi}")
    attacker.execute(f"CREATE TYPE {qi}.{qi} AS (a int, b text)")
    attacker.execute(f"CREATE TABLE {qi}.t (id int PRIMARY KEY, c {qi}.{qi})")
    db.execute(f"GRANT USAGE ON SCHEMA {qi} TO app_maintainer")
    with suppress(psycopg.Error):
        enable_tracking(connect("app_maintainer"), f"{qi}.t", kind_prefix="weird.t")
    with suppress(psycopg.Error):
        attacker.execute(f"ALTER TYPE {qi}.{qi} ADD ATTRIBUTE {qi} text")
    with suppress(psycopg.Error):
        attacker.execute(f"ALTER TABLE {qi}.t ADD COLUMN {qi} text")
    with suppress(psycopg.Error):
        attacker.execute(f"ALTER TABLE {qi}.t RENAME TO {qi}")
    with suppress(psycopg.Error):
        attacker.execute(f"INSERT INTO {qi}.{qi} (id) VALUES (1)")
    assert q
    print(db.execute("SELECT kind, target_type, char_length(target_id) FROM audit.event_intake").fetchall())
    _seals_cleanly(db)


# --- 4. The sealer's inlined changed columns -------------------------------------------------------

def test_sealed_changed_columns_equal_the_pending_view_and__changed(db, connect, attacker):
    attacker.execute("""CREATE TABLE public.k (id int PRIMARY KEY, "a b" text, j jsonb, js json, n numeric,
                                               arr int[], secret text, hidden text, " " text)""")
    enable_tracking(connect("app_maintainer"), "public.k", exclude_columns=["hidden"], redact_columns=["secret"])
    attacker.execute("""INSERT INTO public.k VALUES (1, NULL, 'null', '{"a":1,"a":2}', 1.0, '{1,2}', 's', 'h', 'e')""")
    for sql in ["""UPDATE public.k SET j = NULL""",                       # JSON null -> SQL null: same image
                """UPDATE public.k SET js = '{"a":2}'""",                 # duplicate keys -> one
                """UPDATE public.k SET n = 1.00""",                       # trailing zeros
                """UPDATE public.k SET "a b" = '', " " = NULL""",
                """UPDATE public.k SET secret = 't', hidden = 'i'""",
                """UPDATE public.k SET arr = '[0:1]={1,2}'""",
                """UPDATE public.k SET id = 2, j = '{"x": null}'"""]:
        attacker.execute(sql)
    pending = dict(db.execute("SELECT id, changed FROM audit.events WHERE kind = 'public.k.update'").fetchall())
    assert pending
    _seals_cleanly(db)
    sealed = db.execute("SELECT id, changed, audit._changed(row_before, row_after), payload FROM audit.event_log"
                        " WHERE kind = 'public.k.update'").fetchall()
    assert {i: c for i, c, _, _ in sealed} == pending
    for _, changed, recomputed, payload in sealed:
        if "omitted" not in payload and "replaced" not in payload and "secret" not in changed:
            assert changed == recomputed


def test_sealed_changed_columns_of_wild_and_large_images_equal_the_pending_view(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, j jsonb, big text)")
    enable_tracking(connect("app_maintainer"), "public.k")
    many = "[" + ", ".join(["1"] * 101) + ", 0." + "0" * 400 + "1]"
    attacker.execute("INSERT INTO public.k VALUES (1, %s::jsonb, 'x')", (many,))
    attacker.execute("UPDATE public.k SET j = '1e500'")
    attacker.execute("UPDATE public.k SET j = '2e500'")                        # wild -> wild: a change
    attacker.execute("UPDATE public.k SET big = %s", ("b" * 1_100_000,))
    attacker.execute("UPDATE public.k SET big = 'y', j = %s::jsonb", (many,))
    pending = dict(db.execute("SELECT id, changed FROM audit.events WHERE kind = 'public.k.update'").fetchall())
    assert len(pending) == 4
    _seals_cleanly(db)
    sealed = dict(db.execute("SELECT id, changed FROM audit.event_log WHERE kind = 'public.k.update'").fetchall())
    assert sealed == pending
    assert all(c for c in sealed.values())  # every update changed something, and says so


# --- 5. record() as PL/pgSQL ----------------------------------------------------------------------

def test_record_retry_returns_the_first_row_and_writes_one_event(db, connect):
    writer = connect("app_writer")
    _ctx(writer, actor_id="u1", tenant_id="t1")
    cols = ("id, tenant_id, actor_type, actor_id, kind, target_type, target_id, outcome, correlation_id,"
            " idempotency_key, payload, origin, db_role")
    first = writer.execute(f"SELECT {cols} FROM audit.record('app.x', payload => '{{\"a\": 1}}',"
                           " idempotency_key => 'k1', target_type => 'doc', target_id => '7')").fetchone()
    again = writer.execute(f"SELECT {cols} FROM audit.record(idempotency_key => 'k1', target_id => '7',"
                           " kind => 'app.x', target_type => 'doc', payload => '{\"a\": 1}')").fetchone()
    assert first == again and first[0] is not None
    assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'app.x'") == 1
    # One call, one event: in FROM, and as a scalar.
    writer.execute("SELECT * FROM audit.record('app.y')")
    writer.execute("SELECT (audit.record('app.z')).id")
    assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind IN ('app.y', 'app.z')") == 2
    # Another role, same key and request: not handed the first event.
    other = connect("app_maintainer")
    _ctx(other, actor_id="u1", tenant_id="t1")
    with suppress(psycopg.Error):
        row = other.execute("SELECT id FROM audit.record('app.x', payload => '{\"a\": 1}', idempotency_key => 'k1',"
                            " target_type => 'doc', target_id => '7')").fetchone()
        assert row[0] is None or row[0] != first[0]


def test_record_retry_after_the_first_event_was_sealed_or_quarantined(db, connect):
    writer = connect("app_writer")
    first = writer.execute("SELECT id FROM audit.record('app.x', idempotency_key => 'k2')").fetchone()[0]
    seal(db)
    again = writer.execute("SELECT id FROM audit.record('app.x', idempotency_key => 'k2')").fetchone()[0]
    assert again == first
    assert _count(db, "SELECT count(*) FROM audit.events WHERE kind = 'app.x'") == 1


def test_record_cannot_write_reserved_kinds_whatever_the_search_path(db, connect):
    """_reserved_kind is inlined without a SET clause: a writer's own operator = or starts_with
    cannot change its answer (record() is SECURITY DEFINER with its own search_path)."""
    db.execute("CREATE SCHEMA evil; GRANT ALL ON SCHEMA evil TO PUBLIC")
    writer = connect("app_writer")
    writer.execute("""CREATE FUNCTION evil.starts_with(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT false';
                      CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT false';
                      CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq)""")
    writer.execute("SET search_path = evil, pg_temp, pg_catalog")
    for kind in ["audit", "audit.tracking_enabled", "secret.read", "tenant.secret.read", "tenant.data_key.rotated"]:
        with pytest.raises(psycopg.Error):
            writer.execute("SELECT audit.record(%s)", (kind,))
        with pytest.raises(psycopg.Error):
            writer.execute("SELECT audit._reserved_kind(%s) AND audit.record(%s) IS NULL", (kind, kind))
    assert _count(db, "SELECT count(*) FROM audit.event_intake") == 0


def _hammered(db, hammer, clients: int) -> tuple[int, int]:
    """Run hammer(i) in a thread per client; then the rows written and what the counters hold. A window
    that ends while the threads run moves a shard's count to its prev_count: both are the test's."""
    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (_count(db, "SELECT count(*) FROM public.notes"),
            _count(db, "SELECT coalesce(sum(count + prev_count), 0) FROM audit.rate_counters WHERE key LIKE 'table:%'"))


# --- 6. Rate limits --------------------------------------------------------------------------------

@pytest.fixture
def limited(db, connect):
    return limited_notes(db, connect, 40)


def test_concurrent_writers_are_counted_exactly(db, connect, limited):
    """Four sessions, 40 inserts each, 4 shards of 10: at most 40 admitted, and each admitted write
    counted (an UPDATE by an address that found nothing would admit uncounted)."""
    conns = [connect("app_writer") for _ in range(4)]
    for c in conns:
        _ctx(c, actor_id="u1")
    admitted = [0] * len(conns)

    def hammer(i):
        for _ in range(40):
            try:
                conns[i].execute("INSERT INTO public.notes (body) VALUES ('x')")
                admitted[i] += 1
            except psycopg.Error:
                pass

    rows, counted = _hammered(db, hammer, len(conns))
    assert rows == sum(admitted)
    assert rows <= 40
    assert counted == rows


@pytest.mark.parametrize("isolation", ["REPEATABLE READ", "SERIALIZABLE"])
def test_a_writer_with_an_old_snapshot_is_not_admitted_uncounted(db, connect, limited, isolation):
    """B's snapshot predates A's writes (the counter row, then its updates): B's SELECT ... FOR UPDATE
    sees the old row, or none; B must not be admitted past the limit."""
    a = connect("app_writer")
    b = connect("app_writer", autocommit=False)
    for c in (a, b):
        _ctx(c, actor_id="u1")
    b.commit()
    b.execute(f"SET TRANSACTION ISOLATION LEVEL {isolation}")
    b.execute("SELECT count(*) FROM public.notes")  # the snapshot
    for _ in range(45):
        with suppress(psycopg.Error):
            a.execute("INSERT INTO public.notes (body) VALUES ('a')")
    ok = 0
    for _ in range(5):
        try:
            b.execute("SAVEPOINT s")
            b.execute("INSERT INTO public.notes (body) VALUES ('b')")
            b.execute("RELEASE SAVEPOINT s")
            ok += 1
        except psycopg.Error as e:
            print("B refused:", e.sqlstate, str(e)[:80])
            with suppress(psycopg.Error):
                b.execute("ROLLBACK TO SAVEPOINT s")
    with suppress(psycopg.Error):
        b.commit()
    b.rollback()
    rows = _count(db, "SELECT count(*) FROM public.notes")
    assert rows <= 40
    assert _count(db, "SELECT coalesce(sum(count + prev_count), 0) FROM audit.rate_counters WHERE key LIKE 'table:%'") == rows


def test_a_counter_row_purged_and_recreated_between_writes_is_counted(db, connect):
    """window_seconds=1: the counter rows go stale within seconds and purge_rate_counters deletes them
    while writers write; every admitted write in the current window is still counted."""
    import time
    db.execute("""CREATE TABLE public.notes (id serial PRIMARY KEY, body text, at timestamptz DEFAULT clock_timestamp());
                  ALTER TABLE public.notes OWNER TO app_maintainer;
                  GRANT ALL ON public.notes, public.notes_id_seq TO app_writer""")
    enable_rate_limit(connect("app_maintainer"), "public.notes", per_user_per_minute=20, per_tenant_per_minute=None,
                      window_seconds=3)
    maintainer = connect("app_maintainer")
    writer = connect("app_writer")
    _ctx(writer, actor_id="u1")
    stop = time.monotonic() + 8
    while time.monotonic() < stop:
        with suppress(psycopg.Error):
            writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
        maintainer.execute("SELECT audit.purge_rate_counters()")
    # In any 3-second window (two consecutive windows' weighted sum), the sliding limit admits at
    # most about 20 + 20: never more than twice the limit in one window.
    per_window = db.execute("SELECT floor(extract(epoch FROM at) / 3), count(*) FROM public.notes GROUP BY 1"
                            ).fetchall()
    assert max(n for _, n in per_window) <= 20


def test_the_bypass_refusal_is_not_folded_for_other_roles(db, connect, limited):
    """_rate_exempt is inlined SQL calling a STABLE function that raises: a maintainer with the setting
    on is exempt; a writer with it off is limited, not refused for the maintainer's setting."""
    maintainer = connect("app_maintainer")
    _ctx(maintainer, rate_limit_bypass="on", actor_id="u1")
    for _ in range(45):
        maintainer.execute("INSERT INTO public.notes (body) VALUES ('m')")
    writer = connect("app_writer", autocommit=False)
    _ctx(writer, actor_id="u1")
    admitted = 0
    for _ in range(45):
        try:
            writer.execute("INSERT INTO public.notes (body) VALUES ('w')")
            writer.commit()
            admitted += 1
        except psycopg.Error as e:
            writer.rollback()
            assert e.sqlstate == "PA009"
    assert admitted == 40
    # set_config to 'on' inside a function the writer calls cannot exempt it either.
    writer.autocommit = True
    with pytest.raises(psycopg.Error) as raised:
        writer.execute("SELECT set_config('pgaudit_py.rate_limit_bypass', 'on', true), 1;"
                       " INSERT INTO public.notes (body) VALUES ('w')")
    assert raised.value.sqlstate in ("PA009", "PA010")
    assert _count(db, "SELECT count(*) FROM public.notes WHERE body = 'w'") == 40


# --- 7. TRUNCATE through a partition and by CASCADE, with a long session context --------------------

@pytest.mark.parametrize("setting,bound", [("tenant_id", 256), ("actor_id", 256), ("correlation_id", 256),
                                           ("actor_type", 64)])
@pytest.mark.parametrize("sql", ["TRUNCATE public.p_eu", "TRUNCATE public.p", "TRUNCATE public.parent CASCADE",
                                 "TRUNCATE ONLY public.parent, public.child"])
def test_truncate_of_a_partition_or_by_cascade_refuses_a_long_context(db, connect, attacker, setting, bound, sql):
    attacker.execute("""CREATE TABLE public.p (region text, id int, org text, PRIMARY KEY (region, id)) PARTITION BY LIST (region);
                        CREATE TABLE public.p_eu PARTITION OF public.p FOR VALUES IN ('eu');
                        CREATE TABLE public.parent (id int PRIMARY KEY);
                        CREATE TABLE public.child (id int PRIMARY KEY, pid int REFERENCES public.parent);
                        INSERT INTO public.p VALUES ('eu', 1, 'o'); INSERT INTO public.parent VALUES (1);
                        INSERT INTO public.child VALUES (1, 1)""")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.p", tenant_column="org")
    enable_tracking(maintainer, "public.parent")
    enable_tracking(maintainer, "public.child")
    before = _pending(db)
    _ctx(attacker, **{setting: _astral(bound + 1, 9)})
    if setting == "tenant_id" and sql in ("TRUNCATE public.p_eu", "TRUNCATE public.p"):
        # public.p is tracked with a tenant column: its TRUNCATE is no tenant's (trial 69) and uses no
        # session tenant, so a long one is not refused (docs/capture.md): nothing unbounded is written.
        attacker.execute(sql)
        assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'public.p.truncate'") >= 1
        assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'public.p.truncate'"
                          " AND tenant_id IS NOT NULL") == 0
        assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE length(tenant_id) > 256") == 0
        _seals_cleanly(db)
        return
    with pytest.raises(psycopg.errors.CheckViolation):
        attacker.execute(sql)
    assert _pending(db) == before
    assert _count(db, "SELECT (SELECT count(*) FROM public.p) + (SELECT count(*) FROM public.child)") == 2
    _seals_cleanly(db)


def test_many_concurrent_writers_in_short_transactions_are_counted_exactly(db, connect):
    """Eight sessions, each write in a transaction of two statements (so that a shard's lock is held a
    little longer and others meet a concurrently updated row): admitted writes == counted <= limit."""
    db.execute("""CREATE TABLE public.notes (id serial PRIMARY KEY, body text);
                  ALTER TABLE public.notes OWNER TO app_maintainer;
                  GRANT ALL ON public.notes, public.notes_id_seq TO app_writer""")
    enable_rate_limit(connect("app_maintainer"), "public.notes", per_user_per_minute=100, per_tenant_per_minute=None,
                      window_seconds=600)
    conns = [connect("app_writer", autocommit=False) for _ in range(8)]
    for c in conns:
        _ctx(c, actor_id="u1")
        c.commit()
    admitted = [0] * len(conns)

    def hammer(i):
        for _ in range(40):
            try:
                conns[i].execute("INSERT INTO public.notes (body) VALUES ('x')")
                conns[i].execute("SELECT pg_sleep(0.001)")
                conns[i].commit()
                admitted[i] += 1
            except psycopg.Error:
                conns[i].rollback()

    rows, counted = _hammered(db, hammer, len(conns))
    assert rows == sum(admitted)
    assert rows <= 100
    assert counted == rows


def test_record_returns_the_row_the_events_view_holds(db, connect):
    """record() in PL/pgSQL returns the events row of what it wrote, column for column, with NULL and
    named arguments."""
    writer = connect("app_writer")
    _ctx(writer, tenant_id="t9", correlation_id="c9")
    got = writer.execute("SELECT to_jsonb(r) FROM audit.record(kind => 'app.r', payload => NULL, outcome => NULL,"
                         " actor_id => NULL, target_id => 'x') AS r").fetchone()[0]
    stored = db.execute("SELECT to_jsonb(e) FROM audit.events e WHERE e.id = %s", (got["id"],)).fetchone()[0]
    differing = {k: (got[k], stored.get(k)) for k in got if got[k] != stored.get(k)}
    # Only what the writer cannot see yet (seq, sealed_at, changed, intake_id) may differ.
    assert set(differing) <= {"seq", "sealed_at", "changed", "intake_id", "block_no"}
    assert got["tenant_id"] == "t9" and got["correlation_id"] == "c9" and got["outcome"] == "success"
    assert got["payload"] == {} and got["origin"] == "record"
