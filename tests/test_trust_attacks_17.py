"""Trial 17: against this session's changes (the per-user key's lengths and kinds of actor, the window in
rate_limit()'s key, restore_archive_batch's refusal of events without a seq of their own, and
enable_seqscan = off moved from _rate_take to its callers). Does not repeat tests/test_trust_attacks_16.py.

Each test asserts the SAFE outcome: it fails when the attack works."""

from __future__ import annotations

import json

import psycopg
import pytest
from test_trust_attacks_14 import limited_notes
from test_trust_attacks_16 import _count, _ctx, _restore, two_batches  # noqa: F401  (a fixture)

from pgaudit_py import enable_tracking


def _insert(conn) -> str | None:
    """One write on public.notes: None when admitted, else the SQLSTATE."""
    try:
        conn.execute("INSERT INTO public.notes (body) VALUES ('x')")
        return None
    except psycopg.Error as e:
        return e.sqlstate


# --- 1. The per-user key ------------------------------------------------------------------------------

PRINCIPALS = [
    {},                                                     # the database role
    {"actor_id": "db_role:app_writer"},                     # an id spelling the role's key part
    {"actor_type": "db_role", "actor_id": "x"},
    {"actor_id": "x"},
    {"actor_type": "user", "actor_id": "X"},
    {"actor_type": "4:user", "actor_id": "x"},
    {"actor_type": "u", "actor_id": "ser:x"},
    {"actor_type": "6:user", "actor_id": "x"},
    {"tenant_id": ":", "actor_id": "x"},
    {"tenant_id": "1", "actor_id": "x"},
    {"tenant_id": "1:", "actor_id": "x"},
    {"tenant_id": "0", "actor_id": "x"},
    {"tenant_id": "\u00e9", "actor_id": "x"},               # NFC
    {"tenant_id": "e\u0301", "actor_id": "x"},              # NFD
    {"tenant_id": "x", "actor_id": "x"},
    {"tenant_id": "x"},
    {"tenant_id": "db_role:app_writer"},
    {"tenant_id": "1:x:4", "actor_id": "x"},
    {"actor_type": "\U0001f600", "actor_id": "x"},          # 1 character, 4 bytes
    {"actor_type": "\u00e9\u00e9", "actor_id": "x"},        # 2 characters, 4 bytes
    {"actor_type": "abcd", "actor_id": "x"},                # 4 characters, 4 bytes
    {"actor_id": " x"},
    {"actor_id": "x "},
]


def each_writes_once(db, connect, principals: list[dict[str, str]]) -> list[str]:
    """Each principal (the settings its session names) writes once on public.notes, limited to 3 per
    user: the counter keys made."""
    limited_notes(db, connect, 3)
    for p in principals:
        w = connect("app_writer")
        _ctx(w, **p)
        assert _insert(w) is None, p
    return db.execute("SELECT array_agg(key ORDER BY key) FROM audit.rate_counters").fetchone()[0]


def test_no_two_principals_of_the_log_share_a_per_user_counter(db, connect):
    """Every principal above writes once: each one counter row (one per key, as the limit is 3)."""
    keys = each_writes_once(db, connect, PRINCIPALS)
    assert len(keys) == len(PRINCIPALS), keys
    assert _count(db, "SELECT sum(count + prev_count) FROM audit.rate_counters") == len(PRINCIPALS)


def _three_then_one(db, connect, first: dict[str, str], second: dict[str, str]) -> tuple[str | None, list]:
    """Three writes on public.notes (tracked, 3 per user) in a session naming `first`, then one naming
    `second`: that write's SQLSTATE (None when admitted), and the distinct users the log recorded."""
    limited_notes(db, connect, 3)
    enable_tracking(connect("app_maintainer"), "public.notes")
    one = connect("app_writer")
    _ctx(one, **first)
    for _ in range(3):
        assert _insert(one) is None
    other = connect("app_writer")
    _ctx(other, **second)
    got = _insert(other)
    return got, db.execute("SELECT DISTINCT tenant_id, actor_type, actor_id, db_role FROM audit.event_intake"
                           " WHERE kind LIKE 'public.notes.%'").fetchall()


@pytest.mark.parametrize("first, second", [
    ({}, {"actor_type": "db_role", "actor_id": "app_writer"}),  # the log records both as (db_role, app_writer)
    ({"actor_id": "x"}, {"actor_type": "user", "actor_id": "x"}),
    ({"actor_id": "x"}, {"actor_type": "", "actor_id": "x"}),
    ({"tenant_id": "", "actor_id": "x"}, {"actor_id": "x"}),
])
def test_writes_the_log_records_as_one_user_share_one_counter(db, connect, first, second):
    """Two sessions whose writes the log records with one (tenant, actor_type, actor_id, db_role) are one
    user: the second must not get a fresh allowance (a writer splitting its own writes while staying,
    on the record, the same user)."""
    got, recorded = _three_then_one(db, connect, first, second)
    assert len(recorded) == 1, recorded  # one user, on the record
    assert got == "PA009", (got, recorded, db.execute("SELECT array_agg(key) FROM audit.rate_counters").fetchone()[0])


@pytest.mark.parametrize("first, second", [
    ({"actor_type": "service"}, {}),                             # a type named, no id: recorded (service, NULL)
    ({"actor_type": "service"}, {"actor_type": "batch"}),
])
def test_writes_the_log_records_as_two_users_do_not_share_a_counter(db, connect, first, second):
    got, recorded = _three_then_one(db, connect, first, second)
    keys = db.execute("SELECT array_agg(key) FROM audit.rate_counters").fetchone()[0]
    assert got is None, (got, recorded, keys)  # PA009 here: (service, NULL) counted as the database role
    assert len(recorded) == 2, recorded


@pytest.mark.xfail(strict=True, reason="a known limit (docs/rate-limits.md, What counts; docs/security.md, What the "
                   "session claims): the limit counts the user said when the statement starts, the capture records "
                   "the one said when it ends; strict, so that a change that closes it says so")
def test_the_user_counted_is_the_user_recorded_even_when_the_statement_names_another(db, connect):
    """The limit trigger (BEFORE STATEMENT) reads the actor before the statement runs; capture (AFTER
    STATEMENT) after. A statement that names its actor with set_config(..., true) while it runs is
    counted against whoever the session named before, and recorded as the one it names: alice writes
    6 times in a window that admits 3, her counter untouched, the decoys' never on the record."""
    limited_notes(db, connect, 3)
    enable_tracking(connect("app_maintainer"), "public.notes")
    writer = connect("app_writer")
    admitted = 0
    for i in range(6):
        _ctx(writer, actor_id=f"decoy{i}")
        try:
            writer.execute("INSERT INTO public.notes (body)"
                           " SELECT 'by alice' FROM (SELECT set_config('pgaudit_py.actor_id', 'alice', true)) s")
            admitted += 1
        except psycopg.Error as e:
            assert e.sqlstate == "PA009"
    recorded = db.execute("SELECT actor_id, count(*) FROM audit.event_intake WHERE kind LIKE 'public.notes.%'"
                          " GROUP BY 1").fetchall()
    keys = db.execute("SELECT array_agg(key) FROM audit.rate_counters").fetchone()[0]
    assert admitted <= 3, (admitted, recorded, keys)


def test_a_user_the_log_accepts_is_not_refused_by_the_limit_for_its_keys_length(db, connect):
    """tenant_id up to 256 characters, actor_id up to 256, actor_type 64: the log takes them
    (record() below). In 4-byte characters, the per-user key was over its bound of 1,024 bytes: every
    write of every user of such a tenant on a limited table was refused (PA005), while the log took them."""
    limited_notes(db, connect, 3)
    tenant = "\U0001f600" * 256
    w = connect("app_writer")
    _ctx(w, tenant_id=tenant, actor_id="bob")
    w.execute("SELECT audit.record('app.ok')")  # the log takes this user
    got = _insert(w)
    assert got in (None, "PA009"), got


def test_a_key_over_1024_bytes_never_admits_uncounted(db, connect):
    """Whatever the key's length: never admitted past the limit, never admitted without a counter."""
    limited_notes(db, connect, 3)
    w = connect("app_writer")
    _ctx(w, tenant_id="\U0001f600" * 200, actor_id="\U0001f600" * 200, actor_type="\U0001f600" * 64)
    got = [_insert(w) for _ in range(5)]
    rows = _count(db, "SELECT count(*) FROM public.notes")
    assert rows <= 3, got
    assert _count(db, "SELECT coalesce(sum(count + prev_count), 0) FROM audit.rate_counters") == rows, got


def test_a_long_key_from_one_user_does_not_make_another_users_writes_fail(db, connect):
    limited_notes(db, connect, 3)
    mallory = connect("app_writer")
    _ctx(mallory, tenant_id="org", actor_id="\U0001f600" * 256)
    assert _insert(mallory) in (None, "PA005", "PA009")
    alice = connect("app_writer")
    _ctx(alice, tenant_id="org", actor_id="alice")
    for _ in range(3):
        assert _insert(alice) is None


def test_session_and_local_settings_count_the_user_the_write_is_recorded_as(db, connect):
    """The session names alice, a transaction names bob with SET LOCAL: bob's writes count as bob's."""
    limited_notes(db, connect, 3)
    enable_tracking(connect("app_maintainer"), "public.notes")
    w = connect("app_writer", autocommit=False)
    _ctx(w, actor_id="alice")
    w.commit()
    for _ in range(3):
        w.execute("SET LOCAL pgaudit_py.actor_id = 'bob'")
        w.execute("INSERT INTO public.notes (body) VALUES ('b')")
        w.commit()
    assert _insert(w) is None  # alice's first
    w.commit()
    w.execute("SET LOCAL pgaudit_py.actor_id = 'bob'")
    assert _insert(w) == "PA009"
    w.rollback()
    assert db.execute("SELECT array_agg(actor_id ORDER BY actor_id) FROM audit.event_intake"
                      " WHERE kind LIKE 'public.notes.%'").fetchone()[0] == ["alice", "bob", "bob", "bob"]


# --- 2. rate_limit()'s key --------------------------------------------------------------------------

def test_rate_limit_keys_of_different_operations_windows_and_keys_never_meet(db, connect):
    calls = [("op.a", 60, "k"), ("op.a", 6, "0:k"), ("op.a", 60, "0:k"), ("op.a", 600, "k"), ("op.a:60", 60, "k"),
             ("op.a", 60, "60:k"), ("op.a.60", 60, "k"), ("op.a", 60, "k "), ("op.a", 60, ""), ("op.a", 60, "\u00e9"),
             ("op.a", 60, "e\u0301"), ("op", 60, "a:60:k")]
    w = connect("app_writer")
    made = 0
    for op, window, key in calls:
        try:
            w.execute("SELECT audit.rate_limit(%s, %s, 1, %s)", (op, key, window))
            made += 1
        except psycopg.Error as e:
            assert e.sqlstate == "PA001", (op, e.sqlstate)  # an operation name with ':' is refused
    assert _count(db, "SELECT count(DISTINCT key) FROM audit.rate_counters") == made


def test_rate_limit_with_a_key_of_256_four_byte_characters_counts_it_and_refuses_a_longer_one(db, connect):
    """rate_limit()'s key is at most 256 characters: one of 256 four-byte characters is counted exactly
    (the counter's key has room for it), one of 257 refused (PA005) and never counted."""
    w = connect("app_writer")
    w.execute("SELECT audit.rate_limit('op.a', %s, 1, 60)", ("\U0001f600" * 256,))
    with pytest.raises(psycopg.Error) as full:
        w.execute("SELECT audit.rate_limit('op.a', %s, 1, 60)", ("\U0001f600" * 256,))
    assert full.value.sqlstate == "PA009"
    with pytest.raises(psycopg.Error) as refused:
        w.execute("SELECT audit.rate_limit('op.a', %s, 1, 60)", ("\U0001f600" * 257,))
    assert refused.value.sqlstate == "PA005"
    assert _count(db, "SELECT sum(count + prev_count) FROM audit.rate_counters") == 1


# --- 3. enable_seqscan = off on the callers ------------------------------------------------------------

def test_enable_seqscan_off_never_reaches_the_writers_session_statement_or_triggers(db, connect):
    limited_notes(db, connect, 3)
    db.execute("""CREATE TABLE public.seen (what text, seqscan text);
                  GRANT ALL ON public.seen TO PUBLIC;
                  CREATE FUNCTION public.see() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN INSERT INTO public.seen VALUES (TG_WHEN || ' ' || TG_LEVEL, current_setting('enable_seqscan'));
                        RETURN NULL; END $$;
                  CREATE TRIGGER a_see BEFORE INSERT ON public.notes FOR EACH STATEMENT EXECUTE FUNCTION public.see();
                  CREATE TRIGGER z_see BEFORE INSERT ON public.notes FOR EACH STATEMENT EXECUTE FUNCTION public.see();
                  CREATE TRIGGER r_see AFTER INSERT ON public.notes FOR EACH ROW EXECUTE FUNCTION public.see()""")
    w = connect("app_writer", autocommit=False)
    _ctx(w, actor_id="u1")
    w.commit()
    outcomes = []
    for _ in range(5):  # 3 admitted, then PA009
        w.execute("SET enable_seqscan = on")
        outcomes.append(_insert(w))
        if outcomes[-1] is None:
            assert w.execute("SHOW enable_seqscan").fetchone()[0] == "on"
            w.commit()
        else:
            w.rollback()
        assert w.execute("SHOW enable_seqscan").fetchone()[0] == "on"
        w.rollback()
    assert outcomes == [None, None, None, "PA009", "PA009"]
    # Caught in the writer's own savepoint, rate_limit()'s refusal and admission both.
    w.execute("SET enable_seqscan = on")
    w.execute("SELECT audit.rate_limit('op.a', 'k', 1, 60)")
    assert w.execute("SHOW enable_seqscan").fetchone()[0] == "on"
    w.execute("SAVEPOINT s")
    with pytest.raises(psycopg.Error) as refused:
        w.execute("SELECT audit.rate_limit('op.a', 'k', 1, 60)")
    assert refused.value.sqlstate == "PA009"
    w.execute("ROLLBACK TO SAVEPOINT s")
    assert w.execute("SHOW enable_seqscan").fetchone()[0] == "on"
    w.execute("SAVEPOINT t")
    assert _insert(w) == "PA009"
    w.execute("ROLLBACK TO SAVEPOINT t")
    assert w.execute("SHOW enable_seqscan").fetchone()[0] == "on"
    w.commit()
    # SET LOCAL kept through an admitted write, and the session's value after.
    w.execute("SET enable_seqscan = off")
    w.commit()
    w.execute("SET LOCAL enable_seqscan = on")
    w.execute("SELECT audit.rate_limit('op.b', 'k', 5, 60)")
    assert w.execute("SHOW enable_seqscan").fetchone()[0] == "on"
    w.commit()
    assert w.execute("SHOW enable_seqscan").fetchone()[0] == "off"
    w.commit()
    seen = db.execute("SELECT DISTINCT what, seqscan FROM public.seen ORDER BY 1").fetchall()
    assert all(s == "on" for _, s in seen), seen


@pytest.mark.parametrize("role", ["app_writer", "app_reader", "app_maintainer", "app_secrets", "app_attacker"])
def test_no_login_role_can_call_rate_take_or_the_trigger_directly(db, connect, role):
    conn = connect(role)
    with pytest.raises(psycopg.Error) as refused:
        conn.execute("SELECT audit._rate_take('table:1:user:::db_role:app_writer', 1000000, 86400)")
    assert refused.value.sqlstate == "42501", str(refused.value)
    conn2 = connect(role)
    with pytest.raises(psycopg.Error) as refused:
        conn2.execute("SELECT audit._rate_limit_trigger()")
    assert refused.value.sqlstate in ("42501", "0A000"), str(refused.value)
    assert _count(db, "SELECT count(*) FROM audit.rate_counters") == 0


def test_no_role_but_the_owner_can_write_counters(db):
    """Who may call _rate_take (the function roles, by the blanket grant of non-definer helpers) must
    not be able to touch rate_counters: a call would run with its own rights."""
    got = db.execute("""SELECT array_agg(r.rolname || ':' || p.priv ORDER BY 1) FROM pg_roles r,
                               unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE']) p(priv)
                         WHERE has_table_privilege(r.oid, 'audit.rate_counters', p.priv)
                           AND NOT r.rolsuper AND r.rolname <> 'audit_owner'
                           AND r.rolname NOT IN ('pg_read_all_data', 'pg_write_all_data')""").fetchone()[0]
    assert got is None, got
    callers = db.execute("""SELECT array_agg(r.rolname ORDER BY 1) FROM pg_roles r
                             WHERE has_function_privilege(r.oid, 'audit._rate_take(text, integer, integer)', 'EXECUTE')
                               AND NOT r.rolsuper""").fetchone()[0]
    print("may execute _rate_take:", callers)
    assert not [c for c in callers or [] if c.startswith("app_") or c in ("audit_writer", "audit_reader",
                                                                          "audit_maintainer", "audit_secrets",
                                                                          "table_owner")], callers


def test_rate_take_carries_no_settings_and_its_callers_both(db):
    conf = dict(db.execute("SELECT p.oid::regprocedure::text, p.proconfig FROM pg_proc p"
                           " WHERE p.pronamespace = 'audit'::regnamespace"
                           " AND p.proname IN ('_rate_take', '_rate_limit_trigger', 'rate_limit')").fetchall())
    assert conf["audit._rate_take(text,integer,integer)"] is None, conf
    for f in ("audit._rate_limit_trigger()", "audit.rate_limit(text,text,integer,integer)"):
        assert "enable_seqscan=off" in conf[f] and "search_path=pg_catalog, pg_temp" in conf[f], conf


# --- 4. restore_archive_batch's refusal ---------------------------------------------------------------

def _with(line: str, **changes) -> str:
    event = json.loads(line)
    for k, v in changes.items():
        if v is _DROP:
            event.pop(k, None)
        else:
            event[k] = v
    return json.dumps(event)


_DROP = object()


def not_refused_as_forged(maintainer, batch: str, attempts: dict[str, list]) -> dict[str, str]:
    """Each attempt restored as `batch`, each in a transaction of its own: those not refused with the
    restore's own PA005, and what they got."""
    bad = {}
    for name, given in attempts.items():
        try:
            with maintainer.transaction():
                _restore(maintainer, batch, given)
            bad[name] = "restored"
        except psycopg.Error as e:
            if e.sqlstate != "PA005":
                bad[name] = f"{e.sqlstate}: {str(e).splitlines()[0]}"
    return bad


def test_every_hostile_batch_is_refused_with_pa005_and_nothing_written(db, connect, two_batches):  # noqa: F811
    ids, lines = two_batches
    first, second = ids
    ok = lines[second]
    seqs = [json.loads(x)["seq"] for x in ok]
    maintainer = connect("app_maintainer")
    assert _restore(maintainer, first, lines[first]) == 10  # one batch restored: it must outlive every refusal
    last = ok[:-1]
    raw_seq = lambda line, text: line.replace(f'"seq": {json.loads(line)["seq"]}', f'"seq": {text}')  # noqa: E731
    attempts = {
        "a NULL element": last + [None],
        "a JSON null": last + ["null"],
        "an array": last + ["[1, 2]"],
        "a string": last + ['"x"'],
        "a number": last + [str(seqs[-1])],
        "true": last + ["true"],
        "an empty object": last + ["{}"],
        "seq as a string": last + [_with(ok[-1], seq=str(seqs[-1]))],
        "seq as a zero-padded string, another's": last + [_with(ok[0], seq="00" + str(seqs[0]))],
        "seq as ' 7'": last + [_with(ok[-1], seq=" " + str(seqs[-1]))],
        "seq as '7\\n'": last + [_with(ok[-1], seq=str(seqs[-1]) + "\n")],
        "seq as 7.0": last + [raw_seq(ok[-1], f"{seqs[-1]}.0")],
        "seq as 1e3-style, another's": last + [raw_seq(ok[0], f"{seqs[0] / 10}e1")],
        "seq negative": last + [_with(ok[-1], seq=-seqs[-1])],
        "seq beyond bigint": last + [raw_seq(ok[-1], "99999999999999999999")],
        "seq 18 nines": last + [raw_seq(ok[-1], "999999999999999999")],
        "seq as a nested object": last + [_with(ok[-1], seq={"seq": seqs[-1]})],
        "seq as an array": last + [_with(ok[-1], seq=[seqs[-1]])],
        "seq repeated as a number and a string": last + [_with(ok[0], seq=str(seqs[0]))],
        "seq as fullwidth digits": last + [_with(ok[-1], seq="\uff11")],
        "an extra key": last + [_with(ok[-1], extra=1)],
        "occurred_at not a time": last + [_with(ok[-1], occurred_at="not a time")],
        "occurred_at dropped": last + [_with(ok[-1], occurred_at=_DROP)],
        "occurred_at as a number": last + [_with(ok[-1], occurred_at=1)],
        "occurred_at year 300000": last + [_with(ok[-1], occurred_at="300000-01-01T00:00:00Z")],
        "kind dropped": last + [_with(ok[-1], kind=_DROP)],
        "kind null": last + [_with(ok[-1], kind=None)],
        "tenant_id as an object": last + [_with(ok[-1], tenant_id={"a": 1})],
        "one event too many": ok + [ok[0]],
        "one event too few": last,
        "no events": [],
    }
    bad = not_refused_as_forged(maintainer, second, attempts)
    with pytest.raises(psycopg.Error) as refused:
        maintainer.execute("SELECT audit.restore_archive_batch(%s, NULL)", (second,))
    assert refused.value.sqlstate == "PA005"
    assert _count(db, "SELECT count(*) FROM audit.restored_events") == 10
    assert _count(db, "SELECT count(*) FROM audit.restored_events WHERE batch_id = %s", (first,)) == 10
    assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'audit.archive_restored'") == 1
    print("NOT PA005:", json.dumps(bad, ensure_ascii=False, indent=1))
    assert bad == {}, bad
    assert _restore(maintainer, second, ok) == 10
    assert db.execute("SELECT min(block_no), max(block_no), count(*) FROM audit.restored_events"
                      " WHERE batch_id = %s", (second,)).fetchone() == (3, 4, 10)


def test_a_genuine_batch_given_in_another_order_or_as_a_2d_array_restores_the_same(db, connect,
                                                                                    two_batches):  # noqa: F811
    """Not an attack: the lines are the batch's, the hash is by seq, not by position."""
    ids, lines = two_batches
    maintainer = connect("app_maintainer")
    maintainer.execute("SET DateStyle = 'German, DMY'; SET TimeZone = 'Pacific/Chatham'; SET extra_float_digits = -15;"
                       " SET enable_indexscan = off; SET plan_cache_mode = force_generic_plan")
    assert _restore(maintainer, ids[1], list(reversed(lines[ids[1]]))) == 10
    got = db.execute("SELECT array_agg(event::text ORDER BY seq) FROM audit.restored_events").fetchone()[0]
    two_d = maintainer.execute("SELECT audit.restore_archive_batch(%s, ARRAY[%s::jsonb[], %s::jsonb[]])",
                               (ids[1], lines[ids[1]][:5], lines[ids[1]][5:])).fetchone()[0]
    assert two_d == 10
    assert db.execute("SELECT array_agg(event::text ORDER BY seq) FROM audit.restored_events").fetchone()[0] == got
