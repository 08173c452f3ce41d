"""A hundred-and-twenty-third attacker's trial: claims without tests. Each checkable sentence of
docs/rate-limits.md and docs/secrets.md that no test would catch breaking (or whose test asserts too
little), tried as the role or input it is about.

  L. rate limits: the bounds of limits and windows at both edges in every function, the refusal of a
     partition or a child, the shard count (one per 10 of the limit, at most 16) with the limit exact,
     the counter rows no other role may lock, the bypass set every way a writer or an owner can, the
     256 characters of rate_limit's key, the purge that is the maintainer's and skips held rows.
  S. secrets: 64 KiB of value at the byte edge, rotate_tenant_key at READ COMMITTED only, the secrets
     functions callable by the secrets role only, use_master_key blocks that do not nest, a master key
     of exactly 64 hexadecimal digits.

Each test asserts the claim, so it FAILS when the claim breaks (or the doc sentence is wrong).
Every object made is named t123_* and dropped.
"""

from __future__ import annotations

import math
import secrets as random
import threading
import time
from contextlib import suppress

import psycopg
import pytest
from click.testing import CliRunner
from trial_helpers import sqlstate_of as sqlstate

from pgaudit_py import enable_rate_limit, secrets
from pgaudit_py.cli import cli
from pgaudit_py.errors import MasterKeyUnavailable


def error_of(conn: psycopg.Connection, statement: str, params=None) -> psycopg.Error | None:
    try:
        conn.execute(statement, params)
        return None
    except psycopg.Error as e:
        return e


@pytest.fixture
def maintainer(connect):
    return connect("app_maintainer")


@pytest.fixture
def t123_notes(db):
    """public.t123_notes, the maintainer's, writable by app_writer."""
    db.execute("""CREATE TABLE public.t123_notes (id serial PRIMARY KEY, body text);
                  ALTER TABLE public.t123_notes OWNER TO app_maintainer;
                  GRANT ALL ON public.t123_notes, public.t123_notes_id_seq TO app_writer""")
    yield "public.t123_notes"
    db.execute("DROP TABLE IF EXISTS public.t123_notes")


# ---------------------------------------------------------------- L: rate limits

LIMIT_CALLS = {
    "enable_rate_limit": "SELECT audit.enable_rate_limit('public.t123_notes', %s, %s, %s)",
    "set_operation_limit": "SELECT audit.set_operation_limit('t123.op', %s, %s)",
    "rate_limit": "SELECT audit.rate_limit('t123.op2', 'k', %s, %s)",
}


@pytest.mark.parametrize("function", list(LIMIT_CALLS))
def test_l1_limits_are_1_to_10_000_000_and_windows_1_s_to_1_day_in_every_function(db, connect, maintainer,
                                                                                  t123_notes, function):
    """rate-limits.md: "Limits are 1 to 10,000,000; windows 1 s to 1 day". Both edges of both numbers,
    for each function that takes them (the existing tests try 0 and -5 only): the edges accepted,
    one past each refused (PA005) and nothing set or counted by a refused call."""
    conn = connect("app_writer") if function == "rate_limit" else maintainer

    def call(limit: int, window: int) -> str | None:
        params = [limit, limit, window] if function == "enable_rate_limit" else [limit, window]
        return sqlstate(conn, LIMIT_CALLS[function], params)

    got = {(n, w): call(n, w) for n, w in [(10_000_001, 60), (0, 60), (60, 86_401), (60, 0), (60, -1),
                                           (2_147_483_647, 60)]}
    assert got == dict.fromkeys(got, "PA005"), got
    assert db.execute("SELECT count(*) FROM audit.rate_limits").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM audit.rate_counters").fetchone() == (0,)
    accepted = {(n, w): call(n, w) for n, w in [(10_000_000, 86_400), (1, 1), (1, 86_400), (10_000_000, 1)]}
    assert accepted == dict.fromkeys(accepted), accepted


def test_l2_enable_rate_limit_refuses_a_partition_a_subpartition_and_an_inheritance_child(db, maintainer):
    """rate-limits.md: "`enable_rate_limit` refuses a table that is a partition or a child: limit the
    table at the top of the tree" (refused PA008, as the DDL that would leave the tree half-limited).
    Tried before and after the top is limited; nothing is set on the refused tables."""
    db.execute("""
        CREATE TABLE public.t123_tree (id int, k int) PARTITION BY RANGE (id);
        CREATE TABLE public.t123_tree_a PARTITION OF public.t123_tree FOR VALUES FROM (0) TO (100) PARTITION BY LIST (k);
        CREATE TABLE public."t123_tree_a ""x"" ☃" PARTITION OF public.t123_tree_a FOR VALUES IN (1);
        CREATE TABLE public.t123_base (id int);
        CREATE TABLE public.t123_kid (extra int) INHERITS (public.t123_base);
        ALTER TABLE public.t123_tree OWNER TO app_maintainer;
        ALTER TABLE public.t123_tree_a OWNER TO app_maintainer;
        ALTER TABLE public."t123_tree_a ""x"" ☃" OWNER TO app_maintainer;
        ALTER TABLE public.t123_base OWNER TO app_maintainer;
        ALTER TABLE public.t123_kid OWNER TO app_maintainer""")
    try:
        below = ["public.t123_tree_a", 'public."t123_tree_a ""x"" ☃"', "public.t123_kid"]
        for _ in range(2):
            got = {t: sqlstate(maintainer, "SELECT audit.enable_rate_limit(%s::regclass)", [t]) for t in below}
            assert got == dict.fromkeys(below, "PA008"), got
            assert db.execute("SELECT count(*) FROM audit.rate_limits WHERE scope = 'table' AND target::oid = ANY("
                              "ARRAY['public.t123_tree_a'::regclass, 'public.t123_kid'::regclass,"
                              " 'public.\"t123_tree_a \"\"x\"\" ☃\"'::regclass]::oid[])").fetchone() == (0,)
            maintainer.execute("SELECT audit.enable_rate_limit('public.t123_tree')")
        assert db.execute("SELECT count(*) FROM audit.rate_limits").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.t123_kid'::regclass").fetchone() == (0,)
    finally:
        maintainer.execute("SELECT audit.disable_rate_limit('public.t123_tree')")
        db.execute("DROP TABLE IF EXISTS public.t123_tree, public.t123_kid, public.t123_base")


@pytest.mark.parametrize("limit, shards", [(9, 1), (35, 3), (160, 16), (400, 16)])
def test_l3_a_key_has_one_shard_per_10_of_the_limit_up_to_16_and_admits_exactly_the_limit(db, connect, limit, shards):
    """rate-limits.md: "Each key's counter is split into up to 16 shards (one per 10 of the limit ...),
    each admitting its share of the limit" and "the shards together admit no more than the limit".
    One writer asks limit + 5 times within one long window: exactly `limit` admitted, spread over
    exactly `shards` counter rows whose counts add up to the limit."""
    day = 86_400
    seconds_into_day = time.time() % day
    assert seconds_into_day < day - 120, "too close to the window's end to count one window"
    writer = connect("app_writer")
    answers = [sqlstate(writer, "SELECT audit.rate_limit('t123.shards', %s, %s, %s)", [f"k{limit}", limit, day])
               for _ in range(limit + 5)]
    assert answers.count(None) == limit and answers.count("PA009") == 5, answers[-10:]
    rows = db.execute("SELECT shard, count FROM audit.rate_counters WHERE key = %s ORDER BY shard",
                      [f"operation:t123.shards:{day}:k{limit}"]).fetchall()
    assert len(rows) == shards, rows
    assert sum(c for _, c in rows) == limit
    assert {s for s, _ in rows} == set(range(shards))
    assert max(c for _, c in rows) == math.ceil(limit / shards)  # each its share


LOCKS = ["FOR UPDATE", "FOR UPDATE SKIP LOCKED", "FOR NO KEY UPDATE", "FOR SHARE", "FOR KEY SHARE NOWAIT"]


@pytest.mark.parametrize("role", ["app_writer", "app_reader", "app_maintainer", "app_secrets", "app_attacker"])
def test_l4_no_role_but_the_owners_functions_may_lock_counter_rows(db, connect, role):
    """rate-limits.md: a shard belongs to the transaction holding its row lock in `audit.rate_counters`
    ("only the owner role's functions may lock those rows, where an advisory lock could be held by any
    role that can connect"). Every role of the package tries every row-locking clause, and a locking
    function of its own; a lock taken would refuse the key's writers for as long as it is held."""
    writer = connect("app_writer")
    writer.execute("SELECT audit.rate_limit('t123.lock', 'k', 5, 60)")
    conn = connect(role, autocommit=False)
    took = {}
    for clause in LOCKS:
        try:
            n = len(conn.execute(f"SELECT key FROM audit.rate_counters {clause}").fetchall())
            took[clause] = n
        except psycopg.Error as e:
            assert e.sqlstate == "42501", (clause, e.sqlstate, str(e))
        conn.rollback()
    assert took == {}, f"{role} locked counter rows: {took}"
    # Nor through a view the role makes over it (the view checks the maker's rights).
    if role in ("app_attacker", "app_writer"):
        made = error_of(conn, "CREATE TEMPORARY VIEW t123_v AS SELECT * FROM audit.rate_counters")
        if made is None:
            locked = error_of(conn, "SELECT * FROM t123_v FOR UPDATE")
            assert locked is not None and locked.sqlstate == "42501", locked
        conn.rollback()
    assert writer.execute("SELECT audit.rate_limit('t123.lock', 'k', 5, 60)").fetchone() is not None


BYPASS_WAYS = ["SET", "SET LOCAL", "options", "ALTER ROLE", "ON", "yes", "1", "true"]


@pytest.fixture
def t123_owned(db, connect):
    """public.t123_owned, owned by t123_owner (which app_maintainer is a member of, so it may limit it),
    limited to 1 write per user; app_writer may write it too."""
    db.execute("CREATE ROLE t123_owner LOGIN; GRANT t123_owner TO app_maintainer")
    db.execute("""CREATE TABLE public.t123_owned (id serial PRIMARY KEY, body text);
                  ALTER TABLE public.t123_owned OWNER TO t123_owner;
                  GRANT ALL ON public.t123_owned, public.t123_owned_id_seq TO app_writer""")
    enable_rate_limit(connect("app_maintainer"), "public.t123_owned", per_user_per_minute=1, per_tenant_per_minute=None)
    yield "public.t123_owned"
    db.execute("DROP TABLE IF EXISTS public.t123_owned")
    with suppress(psycopg.Error):
        db.execute(f"ALTER ROLE app_writer IN DATABASE {db.info.dbname} RESET pgaudit_py.rate_limit_bypass")
    with suppress(psycopg.Error):
        db.execute(f"ALTER ROLE t123_owner IN DATABASE {db.info.dbname} RESET pgaudit_py.rate_limit_bypass")
    db.execute("DROP OWNED BY t123_owner; DROP ROLE t123_owner")


@pytest.mark.parametrize("role", ["app_writer", "t123_owner"])
@pytest.mark.parametrize("way", BYPASS_WAYS)
def test_l5_the_bypass_set_by_anyone_but_the_maintainer_is_refused_however_it_is_set(db, connect, t123_owned,
                                                                                    role, way):
    """rate-limits.md: "The setting `pgaudit_py.rate_limit_bypass = on` is for the maintainer's sessions;
    anyone else who sets it is refused (`PA010`)" and "Not the table's owner". A writer and the table's
    owner set it every way a session can (SET, SET LOCAL, connection options, a role's setting, other
    spellings of on): each limited write refused PA010, and no row written."""
    if way == "ALTER ROLE":
        db.execute(f"ALTER ROLE {role} IN DATABASE {db.info.dbname} SET pgaudit_py.rate_limit_bypass = on")
    options = "-c pgaudit_py.rate_limit_bypass=on" if way == "options" else ""
    conn = connect(role, options=options) if options else connect(role)
    if way in ("SET", "ON", "yes", "1", "true"):
        value = "on" if way == "SET" else way
        conn.execute(f"SET pgaudit_py.rate_limit_bypass = '{value}'")
    got = []
    for _ in range(3):
        if way == "SET LOCAL":
            try:
                with conn.transaction():
                    conn.execute("SET LOCAL pgaudit_py.rate_limit_bypass = on")
                    conn.execute("INSERT INTO public.t123_owned (body) VALUES ('x')")
                got.append(None)
            except psycopg.Error as e:
                got.append(e.sqlstate)
        else:
            got.append(sqlstate(conn, "INSERT INTO public.t123_owned (body) VALUES ('x')"))
    assert got == ["PA010"] * 3, got
    assert db.execute("SELECT count(*) FROM public.t123_owned").fetchone() == (0,)
    # And without the setting, the owner is limited like anyone (1 write, then PA009).
    plain = connect(role, options="-c pgaudit_py.rate_limit_bypass=off")
    if way == "ALTER ROLE":
        plain.execute("SET pgaudit_py.rate_limit_bypass = off")
    assert [sqlstate(plain, "INSERT INTO public.t123_owned (body) VALUES ('y')") for _ in range(2)] == [None, "PA009"]


@pytest.mark.parametrize("char", ["a", "é", "\U0001f600", "\u202e", "e\u0301"[1]])
def test_l6_rate_limits_key_is_counted_up_to_256_characters_and_refused_past_them(db, connect, char):
    """rate-limits.md: "`rate_limit`'s own key at most 256 characters" (and "A key is at most 2,400 bytes
    (`PA005`)"). 256 characters of one, two, four-byte and format characters are counted (a row under
    exactly that key); 257 are refused PA005 with no row; the 256-character key still counts to its limit."""
    writer = connect("app_writer")
    key = char * 256
    assert sqlstate(writer, "SELECT audit.rate_limit('t123.key', %s, 2, 60)", [key]) is None
    assert sqlstate(writer, "SELECT audit.rate_limit('t123.key', %s, 2, 60)", [key + char]) == "PA005"
    assert sqlstate(writer, "SELECT audit.rate_limit('t123.key', %s, 2, 60)", [key]) is None
    assert sqlstate(writer, "SELECT audit.rate_limit('t123.key', %s, 2, 60)", [key]) == "PA009"
    assert db.execute("SELECT key, count FROM audit.rate_counters").fetchall() == [(f"operation:t123.key:60:{key}", 2)]


@pytest.mark.parametrize("role", ["app_reader", "app_secrets", "app_attacker"])
def test_l7_only_the_maintainer_purges_and_its_purge_skips_held_and_pre_0_2_rows(db, connect, maintainer, role):
    """rate-limits.md: "`audit.purge_rate_counters(batch_size => 10000)` (maintainer ...) deletes such
    rows [two windows old], skipping any a writer holds" and "Counter rows written before 0.2 carry no
    window length and are left alone". Other roles are refused; a row two windows old that a writer's
    open transaction holds is skipped without waiting, a pre-0.2 row is kept, the rest go."""
    now_window = int(time.time() // 60)
    db.execute("""INSERT INTO audit.rate_counters (key, shard, window_no, count, prev_count, window_seconds) VALUES
                  ('operation:t123.p:60:held', 0, %(w)s, 3, 0, 60),
                  ('operation:t123.p:60:stale', 0, %(w)s, 3, 0, 60),
                  ('table:1:user:{t123}', 0, %(w)s, 3, 0, NULL)""", {"w": now_window - 5})
    assert sqlstate(connect(role), "SELECT audit.purge_rate_counters(10000)") == "42501"
    holder = connect("app_writer", autocommit=False)
    holder.execute("SELECT audit.rate_limit('t123.p', 'held', 5, 60)")  # holds the row, open
    waiting = connect("app_maintainer", options="-c lock_timeout=2s")
    assert waiting.execute("SELECT audit.purge_rate_counters(batch_size => 10000)").fetchone() == (1,)
    holder.commit()
    left = db.execute("SELECT key, count, window_seconds FROM audit.rate_counters ORDER BY key").fetchall()
    assert left == [("operation:t123.p:60:held", 1, 60), ("table:1:user:{t123}", 3, None)]


DROP_WAYS = ["DROP SCHEMA CASCADE", "DROP OWNED BY", "DROP TABLE of the parent", "DROP TABLE t1, t2"]


@pytest.mark.parametrize("way", DROP_WAYS)
def test_l8_a_limited_table_dropped_any_way_takes_its_limit_with_it_recorded(db, connect, maintainer, way):
    """rate-limits.md: "Dropping a limited table removes its limits too, recorded the same way (by the
    event trigger ...)". Dropped with its schema, by DROP OWNED BY, as the parent of a partition tree
    (the partition's entry, if any, goes too), or two at once: no entry is left under a dropped oid,
    and each removal is one audit.rate_limit_removed event naming the oid."""
    db.execute("CREATE ROLE t123_dropper LOGIN; GRANT t123_dropper TO app_maintainer")
    db.execute("""CREATE SCHEMA t123_s AUTHORIZATION t123_dropper;
                  CREATE TABLE t123_s."odd ☃ ""n"" x" (id int);
                  CREATE TABLE t123_s.parted (id int) PARTITION BY RANGE (id);
                  CREATE TABLE t123_s.parted_1 PARTITION OF t123_s.parted FOR VALUES FROM (0) TO (10);
                  ALTER TABLE t123_s."odd ☃ ""n"" x" OWNER TO t123_dropper;
                  ALTER TABLE t123_s.parted OWNER TO t123_dropper;
                  ALTER TABLE t123_s.parted_1 OWNER TO t123_dropper""")
    try:
        tables = ['t123_s."odd ☃ ""n"" x"', "t123_s.parted"]
        oids = [str(db.execute("SELECT %s::regclass::oid", [t]).fetchone()[0]) for t in tables]
        for t in tables:
            maintainer.execute("SELECT audit.enable_rate_limit(%s::regclass, 5, 50)", [t])
        assert db.execute("SELECT count(*) FROM audit.rate_limits").fetchone() == (2,)
        owner = connect("t123_dropper")
        if way == "DROP SCHEMA CASCADE":
            owner.execute("DROP SCHEMA t123_s CASCADE")
        elif way == "DROP OWNED BY":
            db.execute("DROP OWNED BY t123_dropper")
        elif way == "DROP TABLE of the parent":
            owner.execute("DROP TABLE t123_s.parted")
            oids = oids[1:]
        else:
            owner.execute('DROP TABLE t123_s."odd ☃ ""n"" x", t123_s.parted')
        left = [r[0] for r in db.execute("SELECT target FROM audit.rate_limits WHERE scope = 'table'")]
        assert not set(left) & set(oids), left
        removed = sorted(r[0] for r in db.execute("SELECT target_id FROM audit.events"
                                                  " WHERE kind = 'audit.rate_limit_removed'"))
        assert removed == sorted(oids)
    finally:
        db.execute("DROP SCHEMA IF EXISTS t123_s CASCADE")
        db.execute("DROP OWNED BY t123_dropper; DROP ROLE t123_dropper")


def test_l9_a_writer_killed_while_holding_its_slots_gives_them_back(db, connect, maintainer, t123_notes):
    """rate-limits.md: "Writes are counted in the writing transaction, so a write that rolls back gives
    its slot back" and a busy shard refuses "with a short retry-after (at most 100 ms)". A writer that
    took every slot in an open transaction is killed: while it held them another writer was refused
    with a retry of at most 100 ms; once it is gone the slots are free, exactly the limit again."""
    enable_rate_limit(maintainer, t123_notes, per_user_per_minute=3, per_tenant_per_minute=None)
    holder = connect("app_writer", autocommit=False)
    holder.execute("SELECT set_config('pgaudit_py.actor_id', 't123-u', false)")
    for _ in range(3):
        holder.execute("INSERT INTO public.t123_notes (body) VALUES ('held')")
    late = connect("app_writer", options="-c lock_timeout=2s")
    late.execute("SELECT set_config('pgaudit_py.actor_id', 't123-u', false)")
    busy = error_of(late, "INSERT INTO public.t123_notes (body) VALUES ('late')")
    assert busy is not None and busy.sqlstate == "PA009"
    wait_ms = int((busy.diag.message_detail or "").removeprefix("retry_after_ms="))
    assert 0 < wait_ms <= 100, busy.diag.message_detail
    pid = holder.info.backend_pid
    assert db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = current_database() AND pid = %s", [pid]).fetchone() == (True,)
    for _ in range(200):  # until its transaction is gone
        if not db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND pid = %s",
                          [pid]).fetchone():
            break
        time.sleep(0.02)
    got = [sqlstate(late, "INSERT INTO public.t123_notes (body) VALUES ('late')") for _ in range(4)]
    assert got == [None, None, None, "PA009"], got
    assert db.execute("SELECT count(*) FROM public.t123_notes").fetchone() == (3,)


def test_l10_the_cli_sets_an_operation_limit_in_bounds_recorded_and_overriding(db, connect):
    """rate-limits.md: "`pgaudit limits set-operation OP --per-minute N` change them, each change recorded
    (`audit.rate_limit_set` ...). An operation limit set this way overrides what the application passes."
    and "Limits are 1 to 10,000,000; windows 1 s to 1 day". Out of bounds refused with nothing set; in
    bounds set, recorded once, and a writer passing 1000 is held to 2."""
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_maintainer"
    runner = CliRunner()
    for bad in (["--per-minute", "10000001"], ["--per-minute", "0"], ["--per-minute", "5", "--window", "86401"]):
        result = runner.invoke(cli, ["limits", "set-operation", "--dsn", dsn, "t123.login", *bad])
        assert result.exit_code == 2, (bad, result.output)
    assert db.execute("SELECT count(*) FROM audit.rate_limits").fetchone() == (0,)
    top = runner.invoke(cli, ["limits", "set-operation", "--dsn", dsn, "t123.big", "--per-minute", "10000000",
                              "--window", "86400"])
    assert top.exit_code == 0, top.output
    made = runner.invoke(cli, ["limits", "set-operation", "--dsn", dsn, "t123.login", "--per-minute", "2"])
    assert made.exit_code == 0, made.output
    assert db.execute("SELECT target, per_key, window_seconds FROM audit.rate_limits ORDER BY target").fetchall() == [
        ("t123.big", 10_000_000, 86_400), ("t123.login", 2, 60)]
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.rate_limit_set'").fetchone() == (2,)
    writer = connect("app_writer")
    got = [sqlstate(writer, "SELECT audit.rate_limit('t123.login', '10.0.0.1', 1000, 3600)") for _ in range(3)]
    assert got == [None, None, "PA009"]


# ---------------------------------------------------------------- S: secrets


@pytest.fixture
def vault(connect):
    """app_secrets in client-key mode, holding a fresh master key, with the slot t123.api declared."""
    app = connect("app_secrets")
    key = random.token_hex(32)
    with secrets.use_master_key(app, None, new_key=key):
        secrets.add_master_key(app)
    secrets._set(app, "master_key", key)
    secrets.declare_secret(app, "t123.api", "a throwaway slot")
    return app, key


@pytest.mark.parametrize("value", ["x" * 65_536, "\U0001f600" * 16_384, "é" * 32_768, "€" * 21_845 + "x"])
def test_s1_a_value_of_64_kib_is_kept_whole_and_one_byte_more_is_refused(db, vault, value):
    """secrets.md: "values are at most 64 KiB of text". 65,536 bytes of UTF-8 (one, two, three or four
    bytes a character) are stored and read back unchanged; one character more is refused (PA005) and
    leaves the stored value as it was."""
    app, _ = vault
    assert len(value.encode()) == 65_536
    secrets.put_secret(app, "t123-tenant", "t123.api", value)
    assert secrets.read_secret(app, "t123-tenant", "t123.api") == value
    assert sqlstate(app, "SELECT audit.put_secret('t123-tenant', 't123.api', %s)", [value + "x"]) == "PA005"
    assert secrets.read_secret(app, "t123-tenant", "t123.api") == value
    assert db.execute("SELECT count(*) FROM audit.secret_values").fetchone() == (1,)


@pytest.mark.parametrize("how", ["BEGIN ISOLATION LEVEL REPEATABLE READ", "BEGIN ISOLATION LEVEL SERIALIZABLE",
                                 "default_transaction_isolation"])
def test_s2_rotate_tenant_key_refuses_any_isolation_but_read_committed(db, vault, how):
    """secrets.md: rotate_tenant_key "runs at READ COMMITTED (the default), and refuses another isolation
    level, under which it could not see what the other left". Refused (PA005) under REPEATABLE READ and
    SERIALIZABLE, begun explicitly or as the session's default; no new data key, no event; then at READ
    COMMITTED it rotates."""
    app, _ = vault
    secrets.put_secret(app, "t123-tenant", "t123.api", "v1")
    if how == "default_transaction_isolation":
        app.execute("SET default_transaction_isolation = 'repeatable read'")
        got = sqlstate(app, "SELECT * FROM audit.rotate_tenant_key('t123-tenant', 100)")
        app.execute("RESET default_transaction_isolation")
    else:
        app.execute(how)
        got = sqlstate(app, "SELECT * FROM audit.rotate_tenant_key('t123-tenant', 100)")
        app.execute("ROLLBACK")
    assert got == "PA005"
    assert db.execute("SELECT count(*) FROM audit.data_keys WHERE tenant_id = 't123-tenant'").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'tenant.data_key.rotated'").fetchone() == (0,)
    assert secrets.rotate_tenant_key(app, "t123-tenant").done
    assert db.execute("SELECT array_agg(version) FROM audit.data_keys WHERE tenant_id = 't123-tenant'").fetchone() == ([2],)
    assert secrets.read_secret(app, "t123-tenant", "t123.api") == "v1"


SECRET_FUNCTIONS = ["declare_secret", "put_secret", "read_secret", "delete_secret", "list_secrets",
                    "hold_master_key", "add_master_key", "rotate_master_key", "rotate_tenant_key"]


@pytest.fixture
def t123_nobody(db):
    db.execute("CREATE ROLE t123_nobody LOGIN")
    yield "t123_nobody"
    db.execute("DROP ROLE t123_nobody")


def test_s3_every_secrets_function_is_the_secrets_roles_alone(db, connect, t123_nobody):
    """secrets.md: "Only the secrets role (`audit_secrets`) may call these" (declare, put, read, delete,
    list, and the key functions the section names). From the catalog: every overload of each is
    executable by audit_secrets and by none of the package's other roles, their logins, a fresh login
    or PUBLIC; none of those roles is a member of audit_secrets; and a call by each is refused."""
    found = {r[0] for r in db.execute("SELECT proname FROM pg_proc WHERE pronamespace = 'audit'::regnamespace"
                                      " AND proname = ANY(%s)", [SECRET_FUNCTIONS])}
    assert found == set(SECRET_FUNCTIONS)
    others = ["app_writer", "app_reader", "app_maintainer", "app_attacker", t123_nobody, "audit_writer",
              "audit_reader", "audit_maintainer", "audit_sealer", "public"]
    others = [r for r in others if r == "public" or db.execute("SELECT 1 FROM pg_roles WHERE rolname = %s",
                                                                [r]).fetchone()]
    wrong = db.execute("""
        SELECT p.oid::regprocedure::text, r.who
          FROM pg_proc p, unnest(%s::text[]) r(who)
         WHERE p.pronamespace = 'audit'::regnamespace AND p.proname = ANY(%s)
           AND CASE WHEN r.who = 'public'
                    THEN EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
                                  WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE')
                    ELSE has_function_privilege(r.who, p.oid, 'EXECUTE')
                         OR pg_has_role(r.who, 'audit_secrets', 'MEMBER') END
         ORDER BY 1, 2""", [others, SECRET_FUNCTIONS]).fetchall()
    assert wrong == []
    missing = db.execute("SELECT p.oid::regprocedure::text FROM pg_proc p WHERE p.pronamespace = 'audit'::regnamespace"
                         " AND p.proname = ANY(%s) AND NOT has_function_privilege('audit_secrets', p.oid, 'EXECUTE')",
                         [SECRET_FUNCTIONS]).fetchall()
    assert missing == []
    calls = ["SELECT audit.declare_secret('t123.x', 'd')", "SELECT audit.delete_secret('t', 't123.x')",
             "SELECT audit.hold_master_key('')", "SELECT * FROM audit.rotate_master_key(1)",
             "SELECT * FROM audit.rotate_tenant_key('t', 1)", "SELECT audit.add_master_key()"]
    for role in ["app_writer", "app_reader", "app_maintainer", "app_attacker", t123_nobody]:
        conn = connect(role)
        got = {c: sqlstate(conn, c) for c in calls}
        assert got == dict.fromkeys(calls, "42501"), (role, got)


def test_s4_use_master_key_blocks_do_not_nest_the_inner_one_forgets_the_key(db, connect):
    """secrets.md: "`use_master_key` blocks do not nest: the inner one forgets the key on leaving." After
    an inner block with the same key ends, the outer block's session holds no key: a read there fails
    for want of the master key (and nothing of the key is left in the session's held keys)."""
    app = connect("app_secrets")
    key = random.token_hex(32)
    with secrets.use_master_key(app, None, new_key=key):
        secrets.add_master_key(app)
    with secrets.use_master_key(app, key):
        secrets.declare_secret(app, "t123.api", "slot")
        secrets.put_secret(app, "t123-tenant", "t123.api", "v")
        with secrets.use_master_key(app, key):
            assert secrets.read_secret(app, "t123-tenant", "t123.api") == "v"
        with pytest.raises(MasterKeyUnavailable):
            secrets.read_secret(app, "t123-tenant", "t123.api")


BAD_KEYS = {
    "63 digits": "a" * 63,
    "65 digits": "a" * 65,
    "64 non-hex": "g" * 64,
    "fullwidth digits": "\uff11" * 64,
    "arabic-indic digits": "\u0661" * 64,
    "inner space": "a" * 32 + " " + "a" * 31,
    "0x prefix": "0x" + "a" * 62,
}


@pytest.mark.parametrize("name", list(BAD_KEYS))
def test_s5_a_master_key_is_exactly_64_hex_digits_and_a_bad_one_is_never_repeated(db, connect, name):
    """secrets.md: "A master key is 32 random bytes (64 hex digits ...)" and "No error of the secrets
    functions repeats ... a key it was given". Held as either key, each malformed key is refused, its
    text is not in the error, and nothing is held; a key keygen writes is 64 hex digits (32 bytes)."""
    app = connect("app_secrets")
    bad = BAD_KEYS[name]
    for which in ("master_key", "new_master_key"):
        refused = error_of(app, "SELECT audit.hold_master_key(%s, %s)", [bad, which])
        assert refused is not None, (name, which)
        text = " ".join(str(x) for x in (refused, refused.diag.message_detail, refused.diag.message_hint))
        assert bad not in text and bad[:16] not in text, text
    # Nothing held: registering "the new key" finds none, and no master key is set up.
    assert sqlstate(app, "SELECT audit.add_master_key()") is not None
    assert db.execute("SELECT count(*) FROM audit.master_keys").fetchone() == (0,)


def test_s5b_keygen_writes_64_hex_digits(tmp_path):
    """secrets.md: "A master key is 32 random bytes (64 hex digits; `pgaudit secrets keygen FILE`)"."""
    path = tmp_path / "t123.key"
    secrets.generate_master_key(path)
    text = path.read_text()
    assert len(text.strip()) == 64 and len(bytes.fromhex(text.strip())) == 32
    assert text.rstrip("\n") == text.strip() and all(c in "0123456789abcdefABCDEF" for c in text.strip())


def _open_blob(key: bytes, bound: list[str], blob: bytes) -> bytes:
    """docs/secrets.md, "Blob", followed outside PostgreSQL: version byte, 16-byte iv, AES-256-CBC with
    PKCS#7, and the tag over bound || body, checked before anything is decrypted."""
    import hashlib
    import hmac

    from cryptography.hazmat.primitives import padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    enc_key = hmac.new(key, b"pgaudit_py enc", hashlib.sha256).digest()
    mac_key = hmac.new(key, b"pgaudit_py mac", hashlib.sha256).digest()
    body, tag = blob[:-32], blob[-32:]
    assert body[0] == 1 and (len(body) - 17) % 16 == 0 and len(body) > 17, len(blob)
    want = hmac.new(mac_key, b"\0".join(p.encode() for p in bound) + body, hashlib.sha256).digest()
    assert hmac.compare_digest(tag, want), bound
    decryptor = Cipher(algorithms.AES(enc_key), modes.CBC(body[1:17])).decryptor()
    padded = decryptor.update(body[17:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def test_s6_the_documented_format_holds_for_every_tenant_version_and_both_wrappings_mid_rotation(db, connect):
    """secrets.md: "Each tenant gets its own random data key", "Data key: 32 random bytes per tenant and
    version ..., one row per master-key version that wraps it", "until the last batch, each data key has
    both wrappings", and the bound parts of each blob (`data-key`, tenant, data-key version, master-key
    version; `value`, tenant, slot, data-key version). Odd tenants (RTL override, combining mark), an
    empty value, a rotated data key, and a master rotation stopped after its first batch: every blob opens
    as documented, each data key is 32 bytes, no two tenants or versions share one, and a data key wrapped
    twice is the same key under both."""
    app = connect("app_secrets")
    old, new = random.token_hex(32), random.token_hex(32)
    with secrets.use_master_key(app, None, new_key=old):
        secrets.add_master_key(app)
    secrets._set(app, "master_key", old)
    secrets.declare_secret(app, "t123.api", "slot")
    values = {"t123-a": "", "t123-\u202eb\u0301": "x" * 17, "t123-ü": "✓" * 5, "t123-d": "d"}
    for tenant, value in values.items():
        secrets.put_secret(app, tenant, "t123.api", value)
    assert secrets.rotate_tenant_key(app, "t123-a").done
    secrets._set(app, "new_master_key", new)
    secrets.add_master_key(app)
    assert app.execute("SELECT done FROM audit.rotate_master_key(1)").fetchone() == (False,)
    masters = {1: bytes.fromhex(old), 2: bytes.fromhex(new)}

    def data_keys() -> dict[tuple[str, int], bytes]:
        opened: dict[tuple[str, int], bytes] = {}
        for tenant, version, mv, wrapped in db.execute(
                "SELECT tenant_id, version, master_version, wrapped FROM audit.wrapped_data_keys"):
            key = _open_blob(masters[mv], ["data-key", tenant, str(version), str(mv)], wrapped)
            assert len(key) == 32
            assert opened.setdefault((tenant, version), key) == key, (tenant, version, mv)
            if mv == 2 and (tenant, version, 1) in wrappings:
                both.add((tenant, version))
        return opened

    wrappings = set(db.execute("SELECT tenant_id, version, master_version FROM audit.wrapped_data_keys").fetchall())
    both: set[tuple[str, int]] = set()
    mid = data_keys()
    assert set(mid) == {(t, 2 if t == "t123-a" else 1) for t in values}
    assert len(set(mid.values())) == len(mid)  # no two tenants share a data key
    assert both and len(both) < len(mid), both  # mid-rotation: some wrapped twice, not all yet
    assert {(t, v) for t, v, _ in wrappings} == set(mid)  # every data key wrapped at least once
    while not app.execute("SELECT done FROM audit.rotate_master_key(1)").fetchone()[0]:
        pass
    assert {mv for (mv,) in db.execute("SELECT master_version FROM audit.wrapped_data_keys")} == {2}
    wrappings = set(db.execute("SELECT tenant_id, version, master_version FROM audit.wrapped_data_keys").fetchall())
    after = data_keys()
    assert after == mid
    for tenant, slot, version, blob in db.execute("SELECT tenant_id, key, key_version, ciphertext FROM audit.secret_values"):
        assert _open_blob(after[(tenant, version)], ["value", tenant, slot, str(version)], blob).decode() == values[tenant]
    secrets._set(app, "master_key", new)
    assert {t: secrets.read_secret(app, t, "t123.api") for t in values} == values


def test_s7_the_command_lines_reads_and_lists_are_each_an_event_found_or_not(db, vault):
    """secrets.md: "`read_secret` records `tenant.secret.read` (tenant, slot as `target_id`, actor,
    data-key version, `found`; never the value) in the reading transaction" and "Listing is recorded the
    same way (`secret.listed` ...; `list_secrets` and `pgaudit secrets list`)". Through `pgaudit secrets
    get` (a value there, and one missing, which fails the command) and `pgaudit secrets list`: each
    leaves its committed event, with found true/false and the count, and no event holds the value."""
    app, key = vault
    secrets.put_secret(app, "t123-tenant", "t123.api", "t123-throwaway-value")
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_secrets"
    env = {"PGAUDIT_MASTER_KEY": key + "\n"}
    runner = CliRunner()
    got = runner.invoke(cli, ["secrets", "get", "--tenant", "t123-tenant", "t123.api", "--dsn", dsn], env=env)
    assert (got.exit_code, got.stdout) == (0, "t123-throwaway-value")
    missing = runner.invoke(cli, ["secrets", "get", "--tenant", "t123-other", "t123.api", "--dsn", dsn], env=env)
    assert missing.exit_code == 1
    listed = runner.invoke(cli, ["secrets", "list", "--tenant", "t123-tenant", "--json", "--dsn", dsn])
    assert listed.exit_code == 0 and "t123-throwaway-value" not in listed.output
    reads = db.execute("SELECT tenant_id, target_id, db_role, payload->'found' FROM audit.events"
                       " WHERE kind = 'tenant.secret.read' ORDER BY intake_id").fetchall()
    assert reads == [("t123-tenant", "t123.api", "app_secrets", True), ("t123-other", "t123.api", "app_secrets", False)]
    lists = db.execute("SELECT tenant_id, payload FROM audit.events WHERE kind = 'secret.listed'").fetchall()
    assert lists == [("t123-tenant", {"tenant_id": "t123-tenant", "count": 1})]
    everything = db.execute("SELECT string_agg(payload::text || coalesce(target_id, ''), ' ') FROM audit.events").fetchone()[0]
    assert "t123-throwaway-value" not in everything


def test_l11_the_signatures_and_defaults_the_doc_prints_are_the_catalogs(db):
    """rate-limits.md's SQL block prints each function's arguments, defaults and result (`per_user_per_minute
    integer = 60, per_tenant_per_minute integer = 600`, "60 per user, 600 per tenant"), and names
    `audit.purge_rate_counters(batch_size => 10000)`. Read from the doc itself and compared with the
    catalog: a default changed in one place only fails here."""
    import re
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "rate-limits.md").read_text()
    block = text.split("```sql", 1)[1].split("SELECT", 1)[0]
    printed = re.findall(r"audit\.(\w+)\(([^)]*)\)\s+RETURNS\s+(\S+)", " ".join(block.split()))
    assert {name for name, _, _ in printed} == {"enable_rate_limit", "disable_rate_limit", "rate_limit",
                                                "set_operation_limit"}
    for name, args, result in printed:
        rows = db.execute("SELECT pg_get_function_arguments(p.oid), pg_get_function_result(p.oid) FROM pg_proc p"
                          " WHERE p.pronamespace = 'audit'::regnamespace AND p.proname = %s", [name]).fetchall()
        want = (args.replace(" = ", " DEFAULT "), result)
        assert rows == [want], (name, rows, want)
    assert "audit.purge_rate_counters(batch_size => 10000)" in text
    assert db.execute("SELECT pg_get_function_arguments('audit.purge_rate_counters'::regproc)").fetchone() == (
        "batch_size integer DEFAULT 10000",)


def test_s8_the_docs_sql_examples_run_as_the_secrets_role_with_the_results_it_prints(db, vault):
    """secrets.md's SQL block, as printed (named arguments): put_secret returns the data-key version,
    read_secret the value and "NULL if none", list_secrets "slots, versions, who, when; no values",
    delete_secret "false if there was none"."""
    app, _ = vault
    run = app.execute
    assert run("SELECT audit.declare_secret(key => 't123.doc', description => 'Doc slot')").fetchone() is not None
    assert run("SELECT audit.put_secret(tenant_id => 't123-t1', key => 't123.doc', value => 'sk_test_1')").fetchone() == (1,)
    assert run("SELECT audit.read_secret(tenant_id => 't123-t1', key => 't123.doc')").fetchone() == ("sk_test_1",)
    assert run("SELECT audit.read_secret(tenant_id => 't123-t2', key => 't123.doc')").fetchone() == (None,)
    cur = run("SELECT * FROM audit.list_secrets(tenant_id => 't123-t1')")
    listed = cur.fetchall()
    assert len(listed) == 1 and "sk_test_1" not in repr(listed)
    columns = [c.name for c in cur.description]
    assert {"key", "key_version", "written_by", "written_at"} <= set(columns), columns
    assert run("SELECT audit.delete_secret(tenant_id => 't123-t1', key => 't123.doc')").fetchone() == (True,)
    assert run("SELECT audit.delete_secret(tenant_id => 't123-t1', key => 't123.doc')").fetchone() == (False,)


def _window_of(db: psycopg.Connection, seconds: int) -> tuple[int, float]:
    """The server's window number (as _rate_take counts it) and how far into it, 0..1."""
    t = db.execute("SELECT date_part('epoch', clock_timestamp()) / %s", [seconds]).fetchone()[0]
    return math.floor(t), t - math.floor(t)


def _wait_until_waiting(db: psycopg.Connection, pids: list[int]) -> None:
    for _ in range(500):
        waiting = db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                             " AND pid = ANY(%s) AND wait_event_type = 'Lock'", [pids]).fetchone()[0]
        if waiting == len(pids):
            return
        time.sleep(0.01)
    raise AssertionError("the sessions never waited")


def test_l12_a_writer_that_read_the_clock_before_the_window_turned_never_winds_a_shard_back(db, connect):
    """rate-limits.md: the sliding-window counter "never admits more than the limit within one fixed
    window", and "under its lock a shard's count is exact". A writer reads the clock (its window) when its
    call starts and takes the shard's lock later; meanwhile the window turns and others count in the new
    one. Here the later lock is made certain, not left to the scheduler: writer B's call waits for the
    counter table behind a (superuser's) lock request queued behind writer A's open transaction. A counts
    9 of 10 in window N+1 and commits; B, still holding window N, then finds the shard "in the future",
    reads it as empty and writes it back to window N with a count of 1. Then writer C, in window N+1,
    sees 1 in the previous window and nothing in this one. Safe: no more than 10 admitted in window N+1."""
    seconds, limit = 4, 10
    call = "SELECT audit.rate_limit('t123.race', %s, 10, 4)"
    for attempt in range(3):
        key = f"k{attempt}"
        n, into = _window_of(db, seconds)
        if into > 0.5:  # room for the setup inside window N
            time.sleep((1 - into) * seconds + 0.05)
            n, into = _window_of(db, seconds)
        a = connect("app_writer", autocommit=False)
        a.execute(call, [key])  # window N: the shard's row, held by A's open transaction
        locker = connect(autocommit=False)
        b = connect("app_writer")
        outcome: dict[str, object] = {}

        def lock(locker: psycopg.Connection = locker) -> None:
            locker.execute("LOCK TABLE audit.rate_counters IN ACCESS EXCLUSIVE MODE")
            locker.commit()

        def b_call(b: psycopg.Connection = b, key: str = key, outcome: dict = outcome) -> None:
            outcome["b"] = sqlstate(b, call, [key])

        locking = threading.Thread(target=lock)
        locking.start()
        _wait_until_waiting(db, [locker.info.backend_pid])
        b_thread = threading.Thread(target=b_call)
        b_thread.start()
        _wait_until_waiting(db, [locker.info.backend_pid, b.info.backend_pid])
        if _window_of(db, seconds)[0] != n:  # the window turned during the setup: again
            a.rollback()
            locking.join(10)
            b_thread.join(10)
            continue
        time.sleep((n + 1) * seconds - db.execute("SELECT date_part('epoch', clock_timestamp())").fetchone()[0] + 0.05)
        assert _window_of(db, seconds)[0] == n + 1
        admitted_a = 0
        for _ in range(12):  # each in a savepoint: a refusal must not roll back A's admitted calls
            try:
                with a.transaction():
                    a.execute(call, [key])
                admitted_a += 1
            except psycopg.Error as e:
                assert e.sqlstate == "PA009", e
        a.commit()
        locking.join(10)
        b_thread.join(10)
        c = connect("app_writer")
        admitted_c = sum(sqlstate(c, call, [key]) is None for _ in range(12))
        still = _window_of(db, seconds)[0] == n + 1
        row = db.execute("SELECT window_no, count, prev_count FROM audit.rate_counters WHERE key = %s",
                         [f"operation:t123.race:{seconds}:{key}"]).fetchall()
        if not still:
            continue
        assert admitted_a + admitted_c <= limit, (
            f"window N+1 admitted {admitted_a} + {admitted_c}; B (clock read in N) said {outcome.get('b')};"
            f" the shard now {row}, N = {n}")
        return
    raise AssertionError("no attempt stayed inside its windows")
