"""Trial 16: new variants against this session's changes (_rate_take's SET enable_seqscan = off and
its uninitialised wait/busy, record()'s idempotent retry split into tenant IS NULL / tenant =, the
restore's lookup of blocks among its batch's, migration 0020's partial and quarantine indexes), and
classic attacks in new forms. Does not repeat tests/test_trust_attacks_14.py or _15.py.

Each test asserts the SAFE outcome: it fails when the attack works."""

from __future__ import annotations

import gzip
import json
from contextlib import suppress

import psycopg
import pytest
from test_archive import DUE, make_blocks
from test_history import quarantine_an_update
from test_trust_attacks_14 import limited_notes

from pgaudit_py import archive as archiving
from pgaudit_py import enable_rate_limit, enable_tracking, seal
from pgaudit_py.archive_targets import open_target, read_object
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import Keys


def _count(db, sql: str, args=None) -> int:
    return int(db.execute(sql, args).fetchone()[0])


def _ctx(conn, **settings: str) -> None:
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", ("pgaudit_py." + name, value))


def _both_verifiers_ok(db) -> None:
    sql_ok = db.execute("SELECT ok, problem FROM audit.verify()").fetchone()
    assert sql_ok[0], sql_ok
    db.autocommit = True
    py = verify_chain(db)
    assert py.ok, py.problem


# --- 1. record(): the idempotent retry's two lookups ---------------------------------------------

REC = "SELECT id, tenant_id, payload FROM audit.record('app.paid', tenant_id => %s, payload => %s::jsonb, idempotency_key => 'k')"


def test_idempotency_keys_of_a_null_an_empty_and_another_tenant_never_cross(db, connect):
    """(NULL, k), ('', k), ('t', k), ('T', k), ('t ', k): five keys, five events; each retry hands back
    its own tenant's event, never another's, and a different request under one is PA004 for it alone."""
    writer = connect("app_writer")
    tenants = [None, "", "t", "T", "t ", "\u00e9", "e\u0301"]
    first = {}
    for i, t in enumerate(tenants):
        first[t] = writer.execute(REC, (t, json.dumps({"n": i}))).fetchone()
        assert first[t][1] == t
    assert len({row[0] for row in first.values()}) == len(tenants)
    for i, t in enumerate(tenants):
        again = writer.execute(REC, (t, json.dumps({"n": i}))).fetchone()
        assert again == first[t], (t, again, first[t])
        with pytest.raises(psycopg.Error) as refused:
            writer.execute(REC, (t, json.dumps({"n": i + 100})))
        assert refused.value.sqlstate == "PA004"
    assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'app.paid'") == len(tenants)
    assert _count(db, "SELECT count(*) FROM audit.idempotency_keys") == len(tenants)


def test_a_retry_through_the_sessions_tenant_hands_back_only_that_tenants_event(db, connect):
    """The session's tenant '' is no tenant (_context's NULLIF): a retry under it finds the NULL key's
    event, never the explicit ''-tenant one; a retry under the session's 't' finds the explicit 't'."""
    writer = connect("app_writer")
    explicit_empty = writer.execute(REC, ("", '{"a": 1}')).fetchone()
    explicit_t = writer.execute(REC, ("t", '{"a": 1}')).fetchone()
    _ctx(writer, tenant_id="")
    via_empty = writer.execute(REC, (None, '{"a": 1}')).fetchone()
    assert via_empty[1] is None and via_empty[0] != explicit_empty[0]
    assert writer.execute(REC, (None, '{"a": 1}')).fetchone() == via_empty
    _ctx(writer, tenant_id="t")
    assert writer.execute(REC, (None, '{"a": 1}')).fetchone() == explicit_t
    assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'app.paid'") == 3


def test_a_retry_under_a_writers_hostile_planner_settings_and_operators_finds_its_key(db, connect):
    """The split lookup must find the key whatever plan the writer's settings force, and the writer's
    own operator = on text (first on its search_path) must not change what record() compares."""
    db.execute("CREATE SCHEMA evil; GRANT ALL ON SCHEMA evil TO PUBLIC")
    writer = connect("app_writer")
    writer.execute("""CREATE FUNCTION evil.eq(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
                      CREATE OPERATOR evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.eq);
                      CREATE FUNCTION evil.ne(bytea, bytea) RETURNS boolean LANGUAGE sql AS 'SELECT false';
                      CREATE OPERATOR evil.<> (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = evil.ne)""")
    for t in (None, "t1"):
        writer.execute(REC, (t, '{"x": 1}'))
    writer.execute("SET search_path = evil, pg_catalog")
    for setting in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan", "enable_seqscan"):
        writer.execute(f"SET {setting} = off")
    writer.execute("SET plan_cache_mode = force_generic_plan")
    for t in (None, "t1", "t2"):
        got = writer.execute(REC, (t, '{"x": 1}')).fetchone()
        assert got[1] == t
        with pytest.raises(psycopg.Error) as refused:
            writer.execute(REC, (t, '{"x": 2}'))
        assert refused.value.sqlstate == "PA004"
    assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'app.paid'") == 3


def test_a_retry_after_the_first_event_was_archived_is_not_a_silent_no_op_for_another_role(db, connect, tmp_path):
    """The first event archived and deleted from the log: its key, if kept, points at nothing. Another
    role's retry with the same request must not get an empty row and write nothing (a request that
    is on no record), and a retry must never hand back a NULL id as if recorded."""
    writer = connect("app_writer")
    writer.execute("SELECT audit.record('app.paid', tenant_id => 'a', idempotency_key => 'gone')")
    seal(db)
    make_blocks(db, 1)
    db.execute("SELECT audit.set_archive_settings('90 days', 1000, NULL)")
    private = __import__("cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["x"]).Ed25519PrivateKey.generate()
    keys = Keys(signing_key=private, public_key=private.public_key(), hmac_key=b"k" * 32)
    archiving.archive(connect("app_maintainer"), open_target(f"file://{tmp_path}/a"), keys, older_than=DUE,
                      max_batches=5)
    assert _count(db, "SELECT count(*) FROM audit.event_log WHERE kind = 'app.paid'") == 0
    kept = _count(db, "SELECT count(*) FROM audit.idempotency_keys WHERE idempotency_key = 'gone'")
    other = connect("app_maintainer")
    for conn in (writer, other):
        before = _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'app.paid'")
        try:
            row = conn.execute("SELECT id FROM audit.record('app.paid', tenant_id => 'a', idempotency_key => 'gone')"
                               ).fetchone()
        except psycopg.Error as e:
            print("refused:", e.sqlstate, kept)
            continue
        after = _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'app.paid'")
        assert row[0] is not None, f"record() returned an empty row and wrote {after - before} events (key kept: {kept})"


# --- 2. _rate_take: SET enable_seqscan = off, no initial values -----------------------------------

@pytest.fixture
def limited10(db, connect):
    return limited_notes(db, connect, 10)  # one shard of 10


def _retry_ms(e: psycopg.Error) -> int:
    detail = e.diag.message_detail or ""
    assert detail.startswith("retry_after_ms="), detail
    return int(detail.removeprefix("retry_after_ms="))


def test_a_limited_write_leaves_the_writers_settings_as_they_were(db, connect, limited10):
    """_rate_take's SET clause (and its set_config of lock_timeout) must not outlive it, in either
    direction: the writer's enable_seqscan, lock_timeout and search_path are kept."""
    writer = connect("app_writer", autocommit=False)
    _ctx(writer, actor_id="u1")
    for seqscan, lock in (("on", "7s"), ("off", "0")):
        writer.execute(f"SET enable_seqscan = {seqscan}")
        writer.execute(f"SET lock_timeout = '{lock}'")
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
        got = writer.execute("SELECT current_setting('enable_seqscan'), current_setting('lock_timeout'),"
                             " current_setting('search_path')").fetchone()
        assert got == (seqscan, lock if lock != "0" else "0", '"$user", public'), got
        writer.commit()


def test_a_writer_that_switches_off_every_scan_is_still_counted_exactly(db, connect, limited10):
    writer = connect("app_writer")
    _ctx(writer, actor_id="u1")
    for setting in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan", "enable_tidscan"):
        writer.execute(f"SET {setting} = off")
    writer.execute("SET plan_cache_mode = force_generic_plan; SET random_page_cost = 1e9; SET cpu_tuple_cost = 0")
    admitted = 0
    for _ in range(15):
        try:
            writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
            admitted += 1
        except psycopg.Error as e:
            assert e.sqlstate == "PA009"
    assert admitted == 10
    assert _count(db, "SELECT coalesce(sum(count + prev_count), 0) FROM audit.rate_counters WHERE key LIKE 'table:%'") == 10


@pytest.mark.parametrize("first_ever", [True, False])
def test_a_busy_only_shard_refuses_with_a_short_retry_and_admits_nothing(db, connect, limited10, first_ever):
    """busy and wait now start NULL: with the one shard held by another open transaction (created by it,
    or existing and locked), a writer is refused (PA009, 1..100 ms), never admitted uncounted."""
    holder = connect("app_writer", autocommit=False)
    other = connect("app_writer")
    for c in (holder, other):
        _ctx(c, actor_id="u1")
    holder.commit()
    if not first_ever:
        other.execute("INSERT INTO public.notes (body) VALUES ('seed')")
    holder.execute("INSERT INTO public.notes (body) VALUES ('held')")
    with pytest.raises(psycopg.Error) as refused:
        other.execute("INSERT INTO public.notes (body) VALUES ('other')")
    assert refused.value.sqlstate == "PA009"
    assert 1 <= _retry_ms(refused.value) <= 100
    holder.commit()
    other.execute("INSERT INTO public.notes (body) VALUES ('other')")
    rows = _count(db, "SELECT count(*) FROM public.notes")
    assert _count(db, "SELECT coalesce(sum(count + prev_count), 0) FROM audit.rate_counters WHERE key LIKE 'table:%'") == rows


def test_a_full_and_a_busy_shard_refuse_with_a_retry_the_window_bounds(db, connect):
    """per_user 20: two shards of 10. One full, one held: refused, retry at most 100 ms (busy); both full:
    a positive retry within the window."""
    db.execute("""CREATE TABLE public.notes (id serial PRIMARY KEY, body text);
                  ALTER TABLE public.notes OWNER TO app_maintainer;
                  GRANT ALL ON public.notes, public.notes_id_seq TO app_writer""")
    enable_rate_limit(connect("app_maintainer"), "public.notes", per_user_per_minute=20, per_tenant_per_minute=None,
                      window_seconds=600)
    writer = connect("app_writer")
    _ctx(writer, actor_id="u1")
    for _ in range(20):
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
    with pytest.raises(psycopg.Error) as full:
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
    assert full.value.sqlstate == "PA009"
    # Both shards full (10 each, no previous window): a slot frees once a tenth of the next window has
    # slid by, (1 - e) + 0.1 windows away, e how far into this one: up to 1.1 windows just after a
    # window starts (the trial's first bound, one window, failed then, once in a few runs).
    assert 1 <= _retry_ms(full.value) <= 660_001
    assert _count(db, "SELECT count(*) FROM public.notes") == 20


def test_per_user_counters_of_two_users_are_never_one_counter(db, connect):
    """The per-user key was format('table:%s:user:%s:%s', table, tenant, actor): tenant 'org' with actor
    'acme:alice' and tenant 'org:acme' with actor 'alice' are two users; one must not use up the other's
    limit (or, the other way, each must not get a second allowance by choosing the split)."""
    limited_notes(db, connect, 3)
    mallory = connect("app_writer")
    _ctx(mallory, tenant_id="org", actor_id="acme:alice")
    for _ in range(3):
        mallory.execute("INSERT INTO public.notes (body) VALUES ('m')")
    alice = connect("app_writer")
    _ctx(alice, tenant_id="org:acme", actor_id="alice")
    alice.execute("INSERT INTO public.notes (body) VALUES ('a')")  # PA009 here: the attack works
    keys = db.execute("SELECT array_agg(DISTINCT key) FROM audit.rate_counters").fetchone()[0]
    assert len(keys) == 2, keys



@pytest.mark.parametrize("first, second", [
    ({}, {"actor_id": "app_writer"}),  # the application's role, and an end user who chose its name
    ({"actor_type": "service", "actor_id": "x"}, {"actor_id": "x"}),  # two kinds of actor, one id
    ({"actor_type": "a:b", "actor_id": "c"}, {"actor_type": "a", "actor_id": "b:c"}),
])
def test_per_user_counters_of_actors_of_two_kinds_are_never_one_counter(db, connect, first, second):
    """The user counted was the actor id the session names, else the database role: an end user whose
    chosen id is the application's role name shared the counter of the application's own writes
    (made with no actor named), and so did actors of two types with one id."""
    limited_notes(db, connect, 3)
    one = connect("app_writer")
    _ctx(one, tenant_id="org", **first)
    for _ in range(3):
        one.execute("INSERT INTO public.notes (body) VALUES ('1')")
    other = connect("app_writer")
    _ctx(other, tenant_id="org", **second)
    other.execute("INSERT INTO public.notes (body) VALUES ('2')")  # PA009 here: one counter for both
    assert _count(db, "SELECT count(DISTINCT key) FROM audit.rate_counters") == 2
    assert _count(db, "SELECT sum(count + prev_count) FROM audit.rate_counters") == 4

# --- 3. The restore's lookup of blocks by the batch's range ---------------------------------------

@pytest.fixture
def two_batches(db, connect, tmp_path):
    make_blocks(db, 4)
    db.execute("SELECT audit.set_archive_settings('90 days', 10, NULL)")
    private = __import__("cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["x"]).Ed25519PrivateKey.generate()
    keys = Keys(signing_key=private, public_key=private.public_key(), hmac_key=b"k" * 32)
    target = open_target(f"file://{tmp_path}/archive")
    run = archiving.archive(connect("app_maintainer"), target, keys, older_than=DUE, max_batches=2)
    ids = [b.batch_id for b in run.batches]
    assert ids == ["blocks-000000000001-000000000002", "blocks-000000000003-000000000004"]
    lines = {}
    for b in ids:
        data = read_object(target, archiving.object_keys(b)[0])
        lines[b] = gzip.decompress(data).decode().split("\n")[:-1]
    return ids, lines


def _restore(conn, batch: str, lines: list[str]):
    return conn.execute("SELECT audit.restore_archive_batch(%s, %s::jsonb[])", (batch, lines)).fetchone()[0]


def test_restore_refuses_another_batchs_events_and_events_without_their_seq(db, connect, two_batches):
    ids, lines = two_batches
    maintainer = connect("app_maintainer")
    first, second = ids
    attempts = {
        "the other batch's lines": (first, lines[second]),
        "one line without its seq": (second, lines[second][:-1] + [json.dumps(
            {k: v for k, v in json.loads(lines[second][-1]).items() if k != "seq"})]),
        "one line with a null seq": (second, lines[second][:-1] + [json.dumps(
            {**json.loads(lines[second][-1]), "seq": None})]),
        "a forged line with no seq for a real one": (second, lines[second][:-1] + ['{"kind": "forged", "tenant_id": "t1"}']),
        "a line repeated for another": (second, lines[second][:-1] + [lines[second][0]]),
    }
    for name, (batch, given) in attempts.items():
        with pytest.raises(psycopg.Error) as refused:
            _restore(maintainer, batch, given)
        # The restore's own refusal, not a constraint of restored_events met on the way (23502, 23505).
        assert refused.value.sqlstate == "PA005", (name, str(refused.value).splitlines()[0])
    assert _count(db, "SELECT count(*) FROM audit.restored_events") == 0
    assert _restore(maintainer, second, lines[second]) == 10
    assert db.execute("SELECT min(block_no), max(block_no), count(*) FILTER (WHERE block_no IS NULL)"
                      " FROM audit.restored_events").fetchone() == (3, 4, 0)


def test_restore_names_another_batchs_events_as_not_the_batchs(db, connect, two_batches):
    """Another batch's lines given for this batch, either way, or one of them among this batch's, are
    refused with the restore's own error (PA005, "the events given are not those of archive batch").
    Once blocks were looked for among the batch's own only, such an event found none, and its NULL
    block_no met restored_events' NOT NULL first (23502, naming a column of an internal table)."""
    ids, lines = two_batches
    maintainer = connect("app_maintainer")
    for batch, given in ((ids[0], lines[ids[1]]), (ids[1], lines[ids[0]]),
                         (ids[1], lines[ids[1]][:-1] + [lines[ids[0]][0]])):
        with pytest.raises(psycopg.Error) as refused:
            _restore(maintainer, batch, given)
        assert refused.value.sqlstate == "PA005", str(refused.value).splitlines()[0]
    assert _count(db, "SELECT count(*) FROM audit.restored_events") == 0


# --- 4. Migration 0020's indexes --------------------------------------------------------------------

def test_history_is_refused_for_a_quarantined_change_whatever_plan_the_reader_forces(db, connect, attacker):
    """row_history and row_as_of now find the quarantine's events by an index on target_type: a reader's
    settings that make the planner use it, or not, must give the same PA015."""
    attacker.execute("CREATE TABLE public.docs (id int PRIMARY KEY, t0 text)")
    enable_tracking(connect("app_maintainer"), "public.docs")
    attacker.execute("INSERT INTO public.docs VALUES (1, 'one'), (2, 'two')")
    quarantine_an_update(db, "public.docs", 1)
    reader = connect("app_reader")
    for settings in ("SET enable_seqscan = off", "SET enable_indexscan = off; SET enable_bitmapscan = off",
                     "SET plan_cache_mode = force_generic_plan"):
        reader.execute(settings)
        for call in ("SELECT count(*) FROM audit.row_history('public.docs', '1')",
                     "SELECT audit.row_as_of('public.docs', '1', now())"):
            with pytest.raises(psycopg.Error) as refused:
                reader.execute(call)
            assert refused.value.sqlstate == "PA015"
        assert reader.execute("SELECT audit.row_as_of('public.docs', '2', now())").fetchone()[0] == {"id": 2, "t0": "two"}


# --- 5. Classic attacks, new forms ------------------------------------------------------------------

def test_a_writers_plpgsql_extra_errors_cannot_make_a_write_escape_capture_or_the_limit(db, connect, attacker):
    """plpgsql.extra_errors is a user setting: it turns too_many_rows and strict_multi_assignment into
    errors inside every PL/pgSQL function the session runs, SECURITY DEFINER ones included. Whatever it
    breaks must refuse the write (fail closed), never let it through uncaptured or uncounted."""
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, v int)")
    db.execute("GRANT ALL ON public.k TO app_writer")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.k")
    db.execute("ALTER TABLE public.k OWNER TO app_maintainer")
    enable_rate_limit(maintainer, "public.k", per_user_per_minute=3, per_tenant_per_minute=None, window_seconds=600)
    writer = connect("app_writer")
    _ctx(writer, actor_id="u1")
    writer.execute("SET plpgsql.extra_errors = 'all'")
    writer.execute("SET plpgsql.extra_warnings = 'all'")
    writer.execute("SET plpgsql.variable_conflict = 'use_column'")
    admitted = 0
    for i in range(6):
        try:
            writer.execute("INSERT INTO public.k VALUES (%s, 1)", (i,))
            admitted += 1
        except psycopg.Error as e:
            print("refused:", e.sqlstate, str(e)[:100])
    rows = _count(db, "SELECT count(*) FROM public.k")
    assert rows == admitted <= 3
    assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'public.k.insert'") == rows
    assert _count(db, "SELECT coalesce(sum(count + prev_count), 0) FROM audit.rate_counters") == rows


def test_the_sealer_under_a_hostile_planner_and_plpgsql_session_seals_or_refuses_without_loss(db, connect):
    """The maintainer's own session settings (a misconfigured pool, say) must not make seal() lose,
    reorder or quarantine events."""
    writer = connect("app_writer")
    for i in range(30):
        writer.execute("SELECT audit.record('app.e', tenant_id => %s, payload => %s::jsonb)", (f"t{i % 3}", json.dumps({"i": i})))
    maintainer = connect("app_maintainer")
    maintainer.execute("SET plpgsql.extra_errors = 'all'; SET plpgsql.variable_conflict = 'use_column';"
                       " SET enable_indexscan = off; SET enable_seqscan = off; SET plan_cache_mode = force_generic_plan;"
                       " SET extra_float_digits = -15; SET DateStyle = 'German, DMY'; SET TimeZone = 'Pacific/Chatham';"
                       " SET IntervalStyle = 'sql_standard'; SET bytea_output = 'escape'")
    with suppress(psycopg.Error):
        maintainer.execute("SELECT audit.seal(7)")
        maintainer.execute("SELECT audit.seal()")
    seal(db)
    assert _count(db, "SELECT count(*) FROM audit.quarantine") == 0
    assert db.execute("SELECT array_agg((payload->>'i')::int ORDER BY seq) FROM audit.event_log WHERE kind = 'app.e'"
                      ).fetchone()[0] == list(range(30))
    _both_verifiers_ok(db)


ODD = ["\u2028\u2029", "\ufeff", "\ufffe\uffff", "\U0010ffff", "\u202e", "\x7f\x80\x9f", "\u00ad",
       "a\u0301", "\U0001f468\u200d\U0001f469", "\\u0000", "\\\\u0000", "\"\\", "\x01\x1f", "\ud7ff\ue000"]


def test_odd_unicode_in_every_writer_chosen_field_seals_and_both_verifiers_agree(db, connect, attacker):
    writer = connect("app_writer")
    for i, s in enumerate(ODD):
        _ctx(writer, actor_id=s, correlation_id=s, actor_type=s[:60], tenant_id=s)
        writer.execute("SELECT set_config('application_name', %s, false)", (s,))
        writer.execute("SELECT audit.record('app.odd', target_type => %s, target_id => %s, idempotency_key => %s,"
                       " payload => jsonb_build_object(%s::text, %s::text, 'n', %s::jsonb))",
                       (s, s, s + str(i), s, s, "[-0, 0.0, 1e-399, -1e399, 1.0e+2]"))
    attacker.execute("CREATE TABLE public.u (id text PRIMARY KEY, j jsonb, t text)")
    enable_tracking(connect("app_maintainer"), "public.u")
    for i, s in enumerate(ODD):
        attacker.execute("INSERT INTO public.u VALUES (%s, jsonb_build_object(%s::text, %s::text), %s)", (s + str(i), s, s, s))
    attacker.execute("UPDATE public.u SET t = t || t")
    pending = _count(db, "SELECT count(*) FROM audit.event_intake")
    assert seal(db).sealed == pending
    assert _count(db, "SELECT count(*) FROM audit.quarantine") == 0
    _both_verifiers_ok(db)


def test_an_owners_index_expression_or_policy_on_a_tracked_table_never_runs_as_an_audit_role(db, connect, attacker):
    """The table owner's code in an index expression, a partial index's predicate and a row security
    policy runs whenever the table is written or read: never as the audit owner, the capture, sealer,
    sandbox or maintainer role (spy() reports who ran it and whether it could forge)."""
    attacker.execute("""
        CREATE FUNCTION public.idx(v int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN PERFORM public.spy('index'); RETURN v; END $$;
        CREATE FUNCTION public.pol() RETURNS boolean LANGUAGE plpgsql STABLE AS $$
        BEGIN RETURN public.spy('policy'); END $$;
        CREATE TABLE public.k (id int PRIMARY KEY, v int);
        CREATE INDEX k_idx ON public.k (public.idx(v)) WHERE public.idx(id) > -1;
        ALTER TABLE public.k ENABLE ROW LEVEL SECURITY; ALTER TABLE public.k FORCE ROW LEVEL SECURITY;
        CREATE POLICY p ON public.k USING (public.pol()) WITH CHECK (public.pol());
        GRANT ALL ON public.k TO PUBLIC""")
    maintainer = connect("app_maintainer")
    with suppress(Exception):
        enable_tracking(maintainer, "public.k", baseline=True)
    enable_tracking(maintainer, "public.k")
    for conn in (attacker, connect("app_writer")):
        with suppress(psycopg.Error):
            conn.execute("INSERT INTO public.k VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET v = excluded.v + 1")
        with suppress(psycopg.Error):
            conn.execute("UPDATE public.k SET v = v + 1")
    with suppress(psycopg.Error):
        maintainer.execute("SELECT audit.disable_tracking('public.k'); SELECT audit.enable_tracking('public.k', baseline => true)")
    seal(db)
    with suppress(psycopg.Error):
        connect("app_reader").execute("SELECT * FROM audit.row_history('public.k', '1')")
    ran = db.execute("SELECT DISTINCT who, what, forged FROM public.who_ran ORDER BY 1, 2").fetchall()
    print(ran)
    assert not [r for r in ran if r[2]], ran
    assert not [r for r in ran if r[0].startswith("audit") or r[0] in ("postgres", "app_maintainer")], ran
