"""Trial 18: against this session's changes (restore_archive_batch's seq check, its width_bucket lookup of
blocks, its BEGIN/EXCEPTION around the insert and its grouped hash check; the per-user key as the array
text of tenant, actor type and id, bounded to 2,400 bytes). Does not repeat tests/test_trust_attacks_16.py
or _17.py.

Each test asserts the SAFE outcome: it fails when the attack works."""

from __future__ import annotations

import gzip
import json
import threading

import psycopg
import pytest
from test_archive import DUE
from test_trust_attacks_14 import limited_notes
from test_trust_attacks_16 import _count, _ctx, _restore, two_batches  # noqa: F401  (a fixture)
from test_trust_attacks_17 import _insert, each_writes_once, not_refused_as_forged

from pgaudit_py import archive as archiving
from pgaudit_py import enable_tracking, record, seal
from pgaudit_py.archive_targets import open_target, read_object
from pgaudit_py.checkpoint import Keys

# --- 1. restore_archive_batch ---------------------------------------------------------------------------


def _rows(db, batch: str) -> list:
    return db.execute("SELECT seq, block_no, tenant_id, kind, occurred_at, event::text FROM audit.restored_events"
                      " WHERE batch_id = %s ORDER BY seq", (batch,)).fetchall()


def _raw(line: str, key: str, text: str) -> str:
    """The line with `"key": <value>` given as raw JSON text (spellings json.dumps would normalise)."""
    event = json.loads(line)
    old = json.dumps(event[key], ensure_ascii=False)
    assert f'"{key}": {old}' in line, line
    return line.replace(f'"{key}": {old}', f'"{key}": {text}', 1)


def test_spellings_of_the_batchs_own_lines_restore_exactly_its_events(db, connect, two_batches):  # noqa: F811
    """Whitespace, key order, 1e1-style seqs, \\u escapes, a key repeated with the real value last: jsonb
    reads each as the very event, so the restore may take them, but what it stores must be byte for
    byte the genuine restore's (never a value the line did not end with)."""
    ids, lines = two_batches
    second = ids[1]
    ok = lines[second]
    maintainer = connect("app_maintainer")
    assert _restore(maintainer, second, ok) == 10
    genuine = _rows(db, second)
    seqs = [json.loads(x)["seq"] for x in ok]
    variants = {
        "pretty-printed": [json.dumps(json.loads(x), indent=3) for x in ok],
        "keys reversed": [json.dumps(dict(reversed(list(json.loads(x).items())))) for x in ok],
        "\\u escapes everywhere": [json.dumps(json.loads(x), ensure_ascii=True).replace('"kind"', '"\\u006bind"')
                                   for x in ok],
        "seq as 1e1-style": [_raw(x, "seq", f"{s / 10}e1") if s % 10 == 0 else _raw(x, "seq", f"{s}e0")
                             for x, s in zip(ok, seqs, strict=True)],
        "seq as 0.1e1-style": [_raw(x, "seq", f"{s / 10}E+1") for x, s in zip(ok, seqs, strict=True)],
        "a forged kind, then the real one": [x.replace('{', '{"kind": "forged.kind", ', 1) for x in ok],
    }
    refused = {}
    for name, given in variants.items():
        try:
            assert _restore(maintainer, second, given) == 10
        except psycopg.Error as e:
            refused[name] = f"{e.sqlstate}: {str(e).splitlines()[0]}"
            continue
        assert _rows(db, second) == genuine, name
    print("refused:", refused)
    assert all(v.startswith("PA005") for v in refused.values()), refused


def test_lines_the_batch_does_not_hold_are_refused_with_pa005(db, connect, two_batches):  # noqa: F811
    """Reordered within and between blocks, moved to another block, duplicated with an extra key, the
    real kind first and a forged one last, seq 10.0-style: PA005, and nothing of it written."""
    ids, lines = two_batches
    first, second = ids
    ok = lines[second]
    ev = [json.loads(x) for x in ok]
    seqs = [e["seq"] for e in ev]
    maintainer = connect("app_maintainer")
    assert _restore(maintainer, first, lines[first]) == 10

    def swapped(i: int, j: int) -> list[str]:
        out = list(ok)
        a, b = dict(ev[i]), dict(ev[j])
        a["seq"], b["seq"] = seqs[j], seqs[i]
        out[i], out[j] = json.dumps(a), json.dumps(b)
        return out

    moved = [json.dumps({**e, "block_no": 3 if e.get("block_no") == 4 else e.get("block_no")}) for e in ev]
    attempts = {
        "two events swapped within a block": swapped(0, 1),
        "two events swapped between blocks": swapped(0, 9),
        "the blocks' halves swapped": [json.dumps({**ev[(i + 5) % 10], "seq": seqs[i]}) for i in range(10)],
        "an event duplicated with an extra key for its neighbour": ok[:1] + [json.dumps({**ev[0], "seq": seqs[1], "x": 1})]
        + ok[2:],
        "the real kind first, a forged one last": ok[:-1] + [ok[-1].rstrip("}") + ', "kind": "forged.kind"}'],
        "a forged payload key by a \\u escape": ok[:-1] + [ok[-1].replace('"payload": {', '"payload": {"\\u0070rize": 9, ', 1)],
        "seq as 10.0-style": ok[:-1] + [_raw(ok[-1], "seq", f"{seqs[-1]}.0")],
        "seq as 1.00e1-style": ok[:-1] + [_raw(ok[-1], "seq", f"{seqs[-1] / 10:.3f}e1")],
        "a block field moved": moved if moved != ok else ok[:-1] + [json.dumps({**ev[-1], "block_no": 3})],
        "occurred_at another spelling of the instant": ok[:-1] + [json.dumps({**ev[-1], "occurred_at": ev[-1]["occurred_at"]
                                                                              .replace("T", " ")})],
        "occurred_at infinity": ok[:-1] + [json.dumps({**ev[-1], "occurred_at": "infinity"})],
        "a time zone that is none": ok[:-1] + [json.dumps({**ev[-1], "occurred_at": "2024-01-01 00:00 Foo/Bar"})],
        "seq 1e130000": ok[:-1] + [_raw(ok[-1], "seq", "1e130000")],
        "seq just above a whole one": ok[:-1] + [_raw(ok[-1], "seq", f"{seqs[-1]}.000000000000000000000000001")],
        "a huge incompressible tenant": ok[:-1] + [json.dumps({**ev[-1], "tenant_id": __import__("os").urandom(60000).hex()})],
    }
    bad = not_refused_as_forged(maintainer, second, attempts)
    assert bad == {}, bad
    assert _count(db, "SELECT count(*) FROM audit.restored_events WHERE batch_id = %s", (second,)) == 0
    assert _count(db, "SELECT count(*) FROM audit.restored_events") == 10
    assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'audit.archive_restored'") == 1


def test_the_maintainers_session_settings_change_nothing_a_restore_writes(db, connect, two_batches):  # noqa: F811
    """DateStyle, TimeZone, extra_float_digits, IntervalStyle, planner switches, and a search_path whose
    first schema (the maintainer's own) shadows every function and operator the restore uses."""
    ids, lines = two_batches
    second = ids[1]
    plain = connect("app_maintainer")
    assert _restore(plain, second, lines[second]) == 10
    reference = db.execute("SELECT seq, block_no, tenant_id, kind, occurred_at, event::text FROM audit.restored_events"
                           " WHERE batch_id = %s ORDER BY seq", (second,)).fetchall()
    # occurred_at as the line says it, read in UTC
    for row in reference:
        db.execute("SET TimeZone = 'UTC'")
        said = db.execute("SELECT (%s::jsonb ->> 'occurred_at')::timestamptz", (row[5],))
        assert said.fetchone()[0] == row[4]
    db.execute("CREATE SCHEMA shadow AUTHORIZATION app_maintainer")
    hostile = connect("app_maintainer")
    hostile.execute("""
        CREATE FUNCTION shadow.width_bucket(anycompatible, anycompatiblearray) RETURNS integer LANGUAGE sql AS 'SELECT 1';
        CREATE FUNCTION shadow.sha256(bytea) RETURNS bytea LANGUAGE sql AS 'SELECT ''\\x00''::bytea';
        CREATE FUNCTION shadow.convert_to(text, name) RETURNS bytea LANGUAGE sql AS 'SELECT ''\\x00''::bytea';
        CREATE FUNCTION shadow.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS 'SELECT ''number''';
        CREATE FUNCTION shadow.cardinality(anyarray) RETURNS integer LANGUAGE sql AS 'SELECT 10';
        CREATE FUNCTION shadow.ne(bytea, bytea) RETURNS boolean LANGUAGE sql AS 'SELECT false';
        CREATE OPERATOR shadow.<> (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = shadow.ne);
        CREATE FUNCTION shadow.eq(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
        CREATE OPERATOR shadow.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = shadow.eq);
        CREATE FUNCTION shadow.mod(numeric, numeric) RETURNS numeric LANGUAGE sql AS 'SELECT 0::numeric';
        CREATE OPERATOR shadow.% (LEFTARG = numeric, RIGHTARG = numeric, FUNCTION = shadow.mod)""")
    hostile.execute("SET search_path = shadow, pg_catalog, pg_temp; SET DateStyle = 'SQL, DMY';"
                    " SET TimeZone = 'Asia/Kathmandu'; SET extra_float_digits = -15; SET IntervalStyle = 'sql_standard';"
                    " SET enable_seqscan = off; SET enable_indexscan = off; SET enable_bitmapscan = off;"
                    " SET enable_hashagg = off; SET enable_sort = off; SET enable_hashjoin = off;"
                    " SET enable_mergejoin = off; SET enable_nestloop = off; SET jit = off;"
                    " SET plan_cache_mode = force_custom_plan")
    assert _restore(hostile, second, list(reversed(lines[second]))) == 10
    again = db.execute("SELECT seq, block_no, tenant_id, kind, occurred_at, event::text FROM audit.restored_events"
                       " WHERE batch_id = %s ORDER BY seq", (second,)).fetchall()
    assert again == reference
    # and a forged batch is still refused under the shadows
    forged = lines[second][:-1] + [lines[second][-1].replace('"kind": "', '"kind": "x', 1)]
    with pytest.raises(psycopg.Error) as refused:
        _restore(hostile, second, forged)
    assert refused.value.sqlstate == "PA005"


def _uneven_batches(db, connect, tmp_path, sizes, max_events):
    """Blocks of the given sizes (events with awkward payloads), archived in batches of at most
    max_events: the batches' ids and lines."""
    odd = {"n": 1.50, "big": 1e20, "tiny": 1e-7, "neg0": -0.0, "s": "\u00e9\U0001f600\"\\/\n\t\u2028",
           "nested": {"b": [1, 2.0, None, True], "a": {}}, "": "empty key"}
    for b, n in enumerate(sizes):
        for i in range(n):
            record(db, "order.created", tenant_id=None if i % 2 else "t\u00e9", payload={**odd, "block": b, "i": i})
        seal(db)
    db.execute("SELECT audit.set_archive_settings('90 days', %s, NULL)", (max_events,))
    private = __import__("cryptography.hazmat.primitives.asymmetric.ed25519", fromlist=["x"]).Ed25519PrivateKey.generate()
    keys = Keys(signing_key=private, public_key=private.public_key(), hmac_key=b"k" * 32)
    target = open_target(f"file://{tmp_path}/archive")
    run = archiving.archive(connect("app_maintainer"), target, keys, older_than=DUE, max_batches=10)
    out = {}
    for b in run.batches:
        data = read_object(target, archiving.object_keys(b.batch_id)[0])
        out[b.batch_id] = gzip.decompress(data).decode().split("\n")[:-1]
    return out


def test_genuine_batches_of_uneven_blocks_and_of_one_block_restore_again_and_after_a_drop(db, connect, tmp_path):
    batches = _uneven_batches(db, connect, tmp_path, [1, 7, 2, 3, 4], 13)
    shape = db.execute("SELECT batch_id, last_block - first_block + 1, event_count FROM audit.archive_batches"
                       " ORDER BY first_block").fetchall()
    print(shape)
    assert any(n == 1 for _, n, _ in shape) and any(n > 2 for _, n, _ in shape), shape
    maintainer = connect("app_maintainer")
    for batch, lines in batches.items():
        assert _restore(maintainer, batch, lines) == len(lines), batch
        first = _rows(db, batch)
        # each event in its block, by the chain's blocks
        assert _count(db, "SELECT count(*) FROM audit.restored_events r JOIN audit.blocks x ON x.block_no = r.block_no"
                          " WHERE r.batch_id = %s AND r.seq BETWEEN x.first_seq AND x.last_seq", (batch,)) == len(lines)
        assert _restore(maintainer, batch, list(reversed(lines))) == len(lines)
        assert _rows(db, batch) == first
        assert maintainer.execute("SELECT audit.drop_restored_batch(%s)", (batch,)).fetchone()[0] == len(lines)
        assert _restore(maintainer, batch, lines) == len(lines)
        assert _rows(db, batch) == first
    assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind = 'audit.archive_restored'") == 3 * len(batches)


def restore_committed(conn: psycopg.Connection, batch: str, lines: list[str]) -> int:
    """restore_archive_batch in `conn`'s transaction, committed; rolled back when it raises."""
    try:
        n = _restore(conn, batch, lines)
        conn.commit()
        return n
    except psycopg.Error:
        conn.rollback()
        raise


def test_two_maintainers_restoring_one_batch_at_once_both_succeed(db, connect, two_batches):  # noqa: F811
    """Not an attack: the second restore of a genuine batch, waiting on the first's uncommitted rows,
    must not be refused as if its lines were not the batch's (nor fail with the primary key's error)."""
    ids, lines = two_batches
    second = ids[1]
    a = connect("app_maintainer", autocommit=False)
    b = connect("app_maintainer", autocommit=False)
    assert _restore(a, second, lines[second]) == 10
    got = {}

    def run():
        try:
            got["b"] = restore_committed(b, second, lines[second])
        except psycopg.Error as e:
            got["b"] = f"{e.sqlstate}: {str(e).splitlines()[0]}"

    t = threading.Thread(target=run)
    t.start()
    t.join(1.5)
    a.commit()
    t.join(30)
    assert got.get("b") == 10, got
    assert _count(db, "SELECT count(*) FROM audit.restored_events WHERE batch_id = %s", (second,)) == 10


# --- 2. The per-user key ------------------------------------------------------------------------------

ARRAY_PRINCIPALS = [
    {"actor_type": "user"},                       # (user, NULL)
    {"actor_type": "user", "actor_id": "NULL"},
    {"actor_type": "user", "actor_id": "null"},
    {"actor_type": "NULL"},
    {"actor_type": "NULL", "actor_id": "NULL"},
    {"tenant_id": "NULL", "actor_id": "x"},
    {"actor_id": "x"},                            # tenant NULL
    {"actor_id": "{x}"},
    {"actor_id": '"x"'},
    {"actor_id": "x,user"},
    {"actor_type": "x,user", "actor_id": "x"},
    {"tenant_id": "NULL,user", "actor_id": "x"},
    {"actor_id": "\\x"},
    {"actor_id": "\\\\x"},
    {"actor_id": "x\t"},
    {"actor_id": "x\u00a0"},
    {"actor_id": "x\u3000"},
    {"actor_id": "\"\""},
    {"actor_id": "{}"},
    {"actor_id": "{\"\"}"},
    {"tenant_id": "{", "actor_id": "x}"},
    {"tenant_id": "{x", "actor_id": "}"},
    {"tenant_id": "a\"", "actor_id": "b"},
    {"tenant_id": "a", "actor_id": "\"b"},
    {"actor_type": "db_role"},                    # (db_role, NULL)
    {},                                           # (db_role, app_writer)
]


def test_array_quoting_never_makes_two_principals_one_counter(db, connect):
    keys = each_writes_once(db, connect, ARRAY_PRINCIPALS)
    assert len(keys) == len(ARRAY_PRINCIPALS), keys


def _tenant_column_notes(db, connect, per_user: int, per_tenant: int | None = None):
    """public.notes with a tenant column `org`, tracked with it as the tenant, limited per user."""
    limited_notes(db, connect, per_user)
    db.execute("ALTER TABLE public.notes ADD COLUMN org text")
    if per_tenant is not None:
        connect("app_maintainer").execute("SELECT audit.enable_rate_limit('public.notes', %s, %s, 600)",
                                          (per_user, per_tenant))
    enable_tracking(connect("app_maintainer"), "public.notes", tenant_column="org")


def _insert_org(conn, org: str) -> str | None:
    try:
        conn.execute("INSERT INTO public.notes (body, org) VALUES ('x', %s)", (org,))
        return None
    except psycopg.Error as e:
        return e.sqlstate


@pytest.mark.xfail(strict=True, reason="a known limit (docs/rate-limits.md, What counts): on a table tracked with a tenant column the "
                   "log records each row's tenant, the limits count the session's; strict, so that a change that "
                   "closes it says so")
def test_on_a_table_with_a_tenant_column_the_user_counted_is_the_user_recorded(db, connect):
    """The log records a tracked row's tenant from its tenant column; the limit reads the session's
    pgaudit_py.tenant_id. One user on the record (tenant acme, user bob) writing through sessions that
    name other tenants (or none) gets a fresh allowance each time: 4 x 3 writes, 3 admitted."""
    _tenant_column_notes(db, connect, 3)
    admitted = 0
    for session_tenant in (None, "a", "b", "c"):
        w = connect("app_writer")
        _ctx(w, actor_id="bob", **({"tenant_id": session_tenant} if session_tenant else {}))
        for _ in range(3):
            admitted += _insert_org(w, "acme") is None
    recorded = db.execute("SELECT DISTINCT tenant_id, actor_type, actor_id, db_role FROM audit.event_intake"
                          " WHERE kind LIKE 'public.notes.%'").fetchall()
    keys = db.execute("SELECT array_agg(key) FROM audit.rate_counters").fetchone()[0]
    assert recorded == [("acme", "user", "bob", "app_writer")], recorded
    assert admitted <= 3, (admitted, keys)


@pytest.mark.xfail(strict=True, reason="a known limit (docs/rate-limits.md, What counts): on a table tracked with a tenant column the "
                   "log records each row's tenant, the limits count the session's; strict, so that a change that "
                   "closes it says so")
def test_a_session_tenant_the_log_never_records_does_not_get_its_writes_refused_for_the_keys_size(db, connect):
    """On a table with a tenant column the session's tenant is neither recorded nor bounded: the log
    takes the write, the limit refuses it (PA005) for a key over 2,400 bytes."""
    _tenant_column_notes(db, connect, 3)
    w = connect("app_writer")
    _ctx(w, tenant_id="\U0001f600" * 600, actor_id="bob")
    got = _insert_org(w, "acme")
    connect("app_maintainer").execute("SELECT audit.disable_rate_limit('public.notes')")
    assert _insert_org(w, "acme") is None  # the log takes the very write, unlimited
    assert db.execute("SELECT tenant_id, actor_id FROM audit.event_intake WHERE kind = 'public.notes.insert'"
                      ).fetchall() == [("acme", "bob")]
    assert got in (None, "PA009"), got


def test_another_database_role_claiming_type_db_role_does_not_spend_that_roles_own_allowance(db, connect):
    """app_writer's own writes (no actor named) are counted as (db_role, app_writer). The log tells a
    session of app_attacker that names actor_type db_role and actor_id app_writer apart from it (its
    db_role column, the one thing the database vouches for); the limit must too, else any role that
    may write the table exhausts the application's own allowance."""
    limited_notes(db, connect, 3)
    db.execute("GRANT INSERT ON public.notes TO app_attacker; GRANT USAGE ON SEQUENCE public.notes_id_seq TO app_attacker")
    enable_tracking(connect("app_maintainer"), "public.notes")
    mallory = connect("app_attacker")
    _ctx(mallory, actor_type="db_role", actor_id="app_writer")
    for _ in range(3):
        assert _insert(mallory) is None
    app = connect("app_writer")
    got = _insert(app)
    recorded = db.execute("SELECT DISTINCT actor_type, actor_id, db_role FROM audit.event_intake"
                          " WHERE kind LIKE 'public.notes.%' ORDER BY 3").fetchall()
    assert got is None, (got, recorded)
