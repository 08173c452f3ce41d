"""Trial 14: the intake's bounds moved from CHECK constraints into the writers (migration 0019),
the UPDATE payload's restructure, and the rate limit's ctid update / inlined exemption.

Each test asserts the SAFE outcome: it fails when the attack works."""

from __future__ import annotations

import random
import string
from contextlib import suppress

import psycopg
import pytest

from pgaudit_py import disable_tracking, enable_rate_limit, enable_tracking, seal


def _rand(n: int) -> str:
    rng = random.Random(n)
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _pending(db) -> int:
    return int(db.execute("SELECT count(*) FROM audit.event_intake").fetchone()[0])


def _intake_too_long(db) -> int:
    """Events in the intake holding a value longer than the log's bounds."""
    return int(db.execute(
        "SELECT count(*) FROM audit.event_intake WHERE char_length(tenant_id) > 256 OR char_length(actor_type) > 64"
        " OR char_length(actor_id) > 256 OR char_length(kind) > 128 OR char_length(target_type) > 128"
        " OR char_length(target_id) > 512 OR char_length(correlation_id) > 256"
        " OR char_length(idempotency_key) > 256").fetchone()[0])


def _seals_cleanly(db) -> None:
    """Everything pending seals, nothing is quarantined."""
    assert _intake_too_long(db) == 0
    pending = _pending(db)
    result = seal(db)
    quarantined = db.execute("SELECT coalesce(array_agg(kind || ': ' || sqlstate || ' ' || left(error, 90)), '{}') FROM audit.quarantine"
                             ).fetchone()[0]
    assert quarantined == []
    assert result.sealed == pending
    assert _pending(db) == 0


def _ctx(conn, **settings: str) -> None:
    for name, value in settings.items():
        conn.execute("SELECT set_config(%s, %s, false)", ("pgaudit_py." + name, value))


def _count(db, sql: str) -> int:
    return int(db.execute(sql).fetchone()[0])


# --- 1. Long keys of types the writers must check -------------------------------------------------

@pytest.mark.parametrize("ddl,value", [
    ("CREATE TABLE public.k (id numeric PRIMARY KEY, v int)", "9" * 600),
    ("CREATE DOMAIN public.vc AS varchar(2000); CREATE TABLE public.k (id public.vc PRIMARY KEY, v int)", "v" * 600),
    ("CREATE TABLE public.k (id float8 PRIMARY KEY, v int)", None),  # prints short anyway: must be captured
    ("CREATE TABLE public.k (id interval PRIMARY KEY, v int)", None),
    ("CREATE TABLE public.k (id bytea PRIMARY KEY, v int)", "\\x" + "ab" * 300),
    ("CREATE TABLE public.k (id jsonb PRIMARY KEY, v int)", '"' + "j" * 600 + '"'),
    ("CREATE TABLE public.k (id char(600) PRIMARY KEY, v int)", "c"),  # blank-padded to 600
    ("CREATE TABLE public.k (id inet PRIMARY KEY, v int)", None),
    ("CREATE TABLE public.k (id name PRIMARY KEY, v int)", None),
])
def test_a_key_of_a_long_printing_type_cannot_reach_the_intake(db, connect, attacker, ddl, value):
    attacker.execute(ddl)
    enable_tracking(connect("app_maintainer"), "public.k")
    if value is None:
        sample = {"float8": "-1.2345678901234567e-300", "interval": "-178000000 years -11 mons -2000000000 days -2000000000 hours -59.999999 seconds", "inet": "2001:db8::1/128", "name": "n" * 63}
        t = db.execute("SELECT atttypid::regtype::text FROM pg_attribute WHERE attrelid = 'public.k'::regclass"
                       " AND attname = 'id'").fetchone()[0]
        value = sample["float8" if "double" in t else t]
        attacker.execute("INSERT INTO public.k VALUES (%s, 1)", (value,))
        attacker.execute("UPDATE public.k SET v = 2")
        attacker.execute("DELETE FROM public.k")
        _seals_cleanly(db)
        return
    for sql in ["INSERT INTO public.k VALUES (%s, 1)",
                "MERGE INTO public.k t USING (SELECT %s AS id) s ON false WHEN NOT MATCHED THEN INSERT VALUES (s.id, 1)"]:
        with pytest.raises(psycopg.errors.CheckViolation):
            attacker.execute(sql.replace("%s", "%s::" + ("numeric" if "numeric" in ddl else "text")
                                         + "::" + db.execute("SELECT atttypid::regtype::text FROM pg_attribute WHERE"
                                                             " attrelid = 'public.k'::regclass AND attname = 'id'"
                                                             ).fetchone()[0]), (value,))
    with pytest.raises(psycopg.errors.CheckViolation), attacker.cursor().copy("COPY public.k FROM STDIN") as copy:
        copy.write_row((value, 1))
    assert _count(db, "SELECT count(*) FROM public.k") == 0
    _seals_cleanly(db)


def test_a_short_key_updated_to_a_long_one_by_merge_is_refused(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (id text PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.k")
    attacker.execute("INSERT INTO public.k VALUES ('a', 1)")
    with pytest.raises(psycopg.errors.CheckViolation):
        attacker.execute("MERGE INTO public.k t USING (SELECT 'a' AS id) s ON t.id = s.id"
                         " WHEN MATCHED THEN UPDATE SET id = repeat('m', 600)")
    assert db.execute("SELECT id FROM public.k").fetchall() == [("a",)]
    _seals_cleanly(db)


def test_a_long_key_written_through_a_partition_or_moved_across_partitions_is_refused(db, connect, attacker):
    attacker.execute("CREATE TABLE public.p (region text, path text, PRIMARY KEY (region, path)) PARTITION BY LIST (region);"
                     "CREATE TABLE public.p_eu PARTITION OF public.p FOR VALUES IN ('eu');"
                     "CREATE TABLE public.p_us PARTITION OF public.p FOR VALUES IN ('us')")
    enable_tracking(connect("app_maintainer"), "public.p", tenant_column="region")
    with pytest.raises(psycopg.errors.CheckViolation):
        attacker.execute("INSERT INTO public.p_eu VALUES ('eu', %s)", ("x" * 600,))
    attacker.execute("INSERT INTO public.p_eu VALUES ('eu', 'ok')")
    with pytest.raises(psycopg.errors.CheckViolation):
        attacker.execute("UPDATE public.p SET region = 'us', path = repeat('y', 600)")
    assert db.execute("SELECT region, path FROM public.p").fetchall() == [("eu", "ok")]
    _seals_cleanly(db)


def test_ten_timestamptz_key_columns_at_their_longest_still_fit(db, connect, attacker):
    """_prints_short skips the check for ten time columns: their JSON must fit the 512 bound."""
    cols = ", ".join(f"c{i} timestamptz" for i in range(10))
    attacker.execute(f"CREATE TABLE public.tz ({cols}, PRIMARY KEY ({', '.join(f'c{i}' for i in range(10))}))")
    enable_tracking(connect("app_maintainer"), "public.tz")
    attacker.execute("SET TimeZone = 'America/Sao_Paulo'; SET DateStyle = 'SQL, DMY'")
    attacker.execute("INSERT INTO public.tz VALUES (" + ", ".join(["'4714-11-24 00:00:00.123456+00 BC'"] * 10) + ")")
    attacker.execute("INSERT INTO public.tz VALUES (" + ", ".join(["'294276-12-31 23:59:59.999999+00'"] * 10) + ")")
    attacker.execute("INSERT INTO public.tz VALUES (" + ", ".join(["'1890-01-01 00:00:00.123456+00'"] * 10) + ")")
    _seals_cleanly(db)


# --- 2. The key changed under a generated function -----------------------------------------------

def _rekey(connect, attacker, change: list[str]) -> None:
    """The key changed as trial 84 (k27) leaves the way to: the owner's change alone is refused
    (PA008) at its first step that changes the key; between disable_tracking and enable_tracking, the
    rest goes through."""
    refused = None
    for step, sql in enumerate(change):
        try:
            attacker.execute(sql)
        except psycopg.Error as e:
            assert e.sqlstate == "PA008", e
            refused = step
            break
    assert refused is not None, "the key of a tracked table changed"
    maintainer = connect("app_maintainer")
    disable_tracking(maintainer, "public.k")
    for sql in change[refused:]:
        attacker.execute(sql)
    enable_tracking(maintainer, "public.k")


@pytest.mark.parametrize("change", [
    ["ALTER TABLE public.k DROP CONSTRAINT k_pkey, ADD PRIMARY KEY (name)"],
    ["ALTER TABLE public.k DROP CONSTRAINT k_pkey", "ALTER TABLE public.k ADD PRIMARY KEY (name)"],
    ["CREATE UNIQUE INDEX k_name ON public.k (name)", "ALTER TABLE public.k DROP CONSTRAINT k_pkey",
     "ALTER TABLE public.k ADD PRIMARY KEY USING INDEX k_name"],
    ["CREATE UNIQUE INDEX k_name ON public.k (name)", "ALTER TABLE public.k DROP CONSTRAINT k_pkey",
     "ALTER TABLE public.k REPLICA IDENTITY USING INDEX k_name"],
])
def test_a_key_made_long_printing_after_tracking_is_checked(db, connect, attacker, change):
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, name text NOT NULL, v int)")
    enable_tracking(connect("app_maintainer"), "public.k")
    attacker.execute("INSERT INTO public.k VALUES (1, 'n', 1)")
    _rekey(connect, attacker, change)
    if _key_columns(db) is None:  # a replica identity index names no row: no key to bound
        attacker.execute("INSERT INTO public.k VALUES (2, %s, 2)", ("q" * 600,))
        assert _count(db, "SELECT count(*) FROM audit.events WHERE kind = 'public.k.insert' AND target_id IS NULL") == 1
        _seals_cleanly(db)
        return
    with pytest.raises(psycopg.errors.CheckViolation):
        attacker.execute("INSERT INTO public.k VALUES (2, %s, 2)", ("q" * 600,))
    with pytest.raises(psycopg.errors.CheckViolation):
        attacker.execute("UPDATE public.k SET name = %s", ("r" * 600,))
    assert db.execute("SELECT id, name FROM public.k").fetchall() == [(1, "n")]
    _seals_cleanly(db)


def test_a_key_column_retyped_to_a_long_printing_type_is_refused_or_checked(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.k")
    try:
        attacker.execute("ALTER TABLE public.k ALTER COLUMN id TYPE numeric")
    except psycopg.Error:
        return  # refused: safe
    with pytest.raises(psycopg.errors.CheckViolation):
        attacker.execute("INSERT INTO public.k VALUES (%s, 2)", ("9" * 600,))
    _seals_cleanly(db)


def _key_columns(db):
    return db.execute("SELECT key_columns FROM audit.tracked_tables WHERE relid = 'public.k'::regclass").fetchone()[0]


def test_a_replica_identity_switched_to_a_text_column_is_checked(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (a int NOT NULL, b text NOT NULL, v int);"
                     "CREATE UNIQUE INDEX k_a ON public.k (a); CREATE UNIQUE INDEX k_b ON public.k (b);"
                     "ALTER TABLE public.k REPLICA IDENTITY USING INDEX k_a")
    enable_tracking(connect("app_maintainer"), "public.k")
    attacker.execute("ALTER TABLE public.k REPLICA IDENTITY USING INDEX k_b")
    # A replica identity index names no row (only a primary key does): no key, nothing to bound.
    assert _key_columns(db) is None
    attacker.execute("INSERT INTO public.k VALUES (1, %s, 1)", ("b" * 600,))
    assert _count(db, "SELECT count(*) FROM audit.events WHERE kind = 'public.k.insert' AND target_id IS NULL") == 1
    _seals_cleanly(db)


# --- 3. The session's context ---------------------------------------------------------------------

@pytest.mark.parametrize("setting,bound", [("tenant_id", 256), ("actor_type", 64), ("actor_id", 256),
                                           ("correlation_id", 256)])
@pytest.mark.parametrize("op", ["insert", "update", "delete", "merge", "copy", "truncate"])
def test_a_long_context_is_refused_by_every_captured_operation(db, connect, attacker, setting, bound, op):
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.k")
    attacker.execute("INSERT INTO public.k VALUES (1, 1)")
    before = _pending(db)
    _ctx(attacker, **{setting: "é" * (bound + 1)})
    sql = {"insert": "INSERT INTO public.k VALUES (2, 2)", "update": "UPDATE public.k SET v = 5",
           "delete": "DELETE FROM public.k", "truncate": "TRUNCATE public.k",
           "merge": "MERGE INTO public.k t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = 7"}
    with pytest.raises(psycopg.errors.CheckViolation):
        if op == "copy":
            with attacker.cursor().copy("COPY public.k FROM STDIN") as copy:
                copy.write_row((3, 3))
        else:
            attacker.execute(sql[op])
    assert db.execute("SELECT id, v FROM public.k").fetchall() == [(1, 1)]
    assert _pending(db) == before
    _seals_cleanly(db)


def test_a_null_tenant_column_never_takes_a_long_session_tenant(db, connect, attacker):
    # Since trial 34 a row whose tenant column is null is no tenant's: the session's tenant (here
    # too long for the log) is neither recorded nor checked; before, it was taken and refused.
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, org int, v int)")
    enable_tracking(connect("app_maintainer"), "public.k", tenant_column="org")
    attacker.execute("INSERT INTO public.k VALUES (1, NULL, 1)")
    _ctx(attacker, tenant_id="t" * 300)
    for sql in ["INSERT INTO public.k VALUES (2, NULL, 2)", "UPDATE public.k SET v = 3", "DELETE FROM public.k"]:
        attacker.execute(sql)
    assert db.execute("SELECT count(*) FROM public.k").fetchone() == (0,)
    assert db.execute("SELECT count(*), count(tenant_id) FROM audit.event_intake WHERE kind LIKE 'public.k.%'"
                      ).fetchone() == (6, 0)
    _seals_cleanly(db)


def test_a_long_tenant_column_value_fails_a_baseline_and_a_long_context_too(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, org text, v int)")
    attacker.execute("INSERT INTO public.k VALUES (1, %s, 1)", ("o" * 300,))
    maintainer = connect("app_maintainer")
    with pytest.raises(psycopg.Error):
        enable_tracking(maintainer, "public.k", tenant_column="org", baseline=True)
    assert _count(db, "SELECT count(*) FROM audit.tracked_tables") == 0
    attacker.execute("UPDATE public.k SET org = 'ok'")
    # A long actor type: the baseline's own check (the python wrapper may check first; the SQL too).
    _ctx(maintainer, actor_type="a" * 65)
    with pytest.raises(psycopg.Error):
        maintainer.execute("SELECT audit.enable_tracking('public.k'::regclass, baseline => true)")
    _ctx(maintainer, actor_type="")
    _ctx(maintainer, tenant_id="t" * 300)  # a baseline files no tenant: this is never written
    enable_tracking(maintainer, "public.k", baseline=True)
    _seals_cleanly(db)


# --- 4. record() ----------------------------------------------------------------------------------

@pytest.mark.parametrize("arg,bound", [("tenant_id", 256), ("actor_type", 64), ("actor_id", 256), ("target_type", 128),
                                       ("target_id", 512), ("correlation_id", 256), ("idempotency_key", 256)])
def test_record_refuses_every_long_value(db, connect, arg, bound):
    writer = connect("app_writer")
    with pytest.raises(psycopg.Error) as raised:
        writer.execute(f"SELECT audit.record('app.thing', {arg} => %s)", ("€" * (bound + 1),))
    assert raised.value.sqlstate in ("PA005", "23514")
    with pytest.raises(psycopg.Error):
        writer.execute("SELECT audit.record(%s)", ("a" + "b" * 128,))
    assert _pending(db) == 0


def test_record_with_a_long_moved_from_in_its_payload_does_not_stop_the_sealer(db, connect):
    """event_log_moved_from indexes payload ->> 'moved_from' (no bound on it)."""
    writer = connect("app_writer")
    with suppress(psycopg.Error):  # refused in the writer's statement: safe
        writer.execute("SELECT audit.record('app.thing', target_type => 'doc', payload => %s::jsonb)",
                       ('{"moved_from": "' + _rand(6000) + '"}',))
    _seals_cleanly(db)


def _controls(n: int, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(chr(rng.randint(1, 31)) for _ in range(n))


def test_an_update_of_a_key_that_predates_tracking_does_not_stop_the_sealer(db, connect, attacker):
    """The new key fits; moved_from (the old key, indexed by event_log_moved_from) is unchecked. A
    composite key's JSON text escapes a control character to six characters: 2.4 kB in the table's
    own key index, about 14 kB in the log's moved_from index."""
    attacker.execute("CREATE TABLE public.k (a text, b text, v int, PRIMARY KEY (a, b))")
    attacker.execute("INSERT INTO public.k VALUES (%s, %s, 1)", (_controls(1200, 1), _controls(1200, 2)))
    enable_tracking(connect("app_maintainer"), "public.k")
    with suppress(psycopg.Error):  # refused in the writer's statement: safe
        attacker.execute("UPDATE public.k SET a = 'x', b = 'y'")
    _seals_cleanly(db)


# --- 5. The UPDATE payload (moved_from, omitted notes) ---------------------------------------------

def test_an_updates_payload_names_moves_and_omissions_as_before(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, big text)")
    enable_tracking(connect("app_maintainer"), "public.k")
    attacker.execute("INSERT INTO public.k VALUES (1, 'x')")
    big = _rand(1_200_000)
    attacker.execute("UPDATE public.k SET id = 2, big = %s", (big,))          # small -> big, moved
    attacker.execute("UPDATE public.k SET big = %s", (big + "y",))             # big -> big, not moved
    attacker.execute("UPDATE public.k SET id = 3, big = 'z'")                 # big -> small, moved
    attacker.execute("UPDATE public.k SET id = 4")                            # small -> small, moved
    attacker.execute("UPDATE public.k SET big = 'w'")                         # small -> small, not moved
    rows = db.execute("SELECT payload, target_id FROM audit.event_intake WHERE kind = 'public.k.update'"
                      " ORDER BY intake_id").fetchall()
    assert len(rows) == 5
    (p1, t1), (p2, t2), (p3, t3), (p4, t4), (p5, t5) = rows
    assert (t1, t2, t3, t4, t5) == ("2", "2", "3", "4", "4")
    assert p1["moved_from"] == "1" and p1["omitted"] == {"row_after": ["big"]} and "statement" in p1
    assert "moved_from" not in p2 and p2["omitted"] == {"row_before": ["big"], "row_after": ["big"]}
    assert p3["moved_from"] == "2" and p3["omitted"] == {"row_before": ["big"]}
    assert set(p4) == {"moved_from", "statement"} and p4["moved_from"] == "3"
    assert p5 == {}
    _seals_cleanly(db)


def test_a_keyless_tables_large_update_notes_omissions_only(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (id int, big text)")
    enable_tracking(connect("app_maintainer"), "public.k")
    attacker.execute("INSERT INTO public.k VALUES (1, 'x')")
    attacker.execute("UPDATE public.k SET id = 2, big = %s", (_rand(1_100_000),))
    payload = db.execute("SELECT payload FROM audit.event_intake WHERE kind = 'public.k.update'").fetchone()[0]
    assert payload == {"omitted": {"row_after": ["big"]}}
    _seals_cleanly(db)


def test_a_multi_row_key_change_names_each_move(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, v text)")
    enable_tracking(connect("app_maintainer"), "public.k", exclude_columns=["v"])
    attacker.execute("INSERT INTO public.k VALUES (1, 'a'), (2, 'b')")
    attacker.execute("UPDATE public.k SET id = id + 10")
    rows = db.execute("SELECT target_id, payload FROM audit.event_intake WHERE kind = 'public.k.update'"
                      " ORDER BY target_id").fetchall()
    assert [(t, p["moved_from"]) for t, p in rows] == [("11", "1"), ("12", "2")]
    assert rows[0][1]["statement"] == rows[1][1]["statement"]
    _seals_cleanly(db)


# --- 6. The client address ------------------------------------------------------------------------

def test_the_client_address_named_is_parsed_and_checked_by_the_capture(db, connect, attacker):
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.k")
    _ctx(attacker, client_addr="not an address")
    with pytest.raises(psycopg.Error) as raised:
        attacker.execute("INSERT INTO public.k VALUES (1, 1)")
    assert raised.value.sqlstate == "PA007"
    assert _count(db, "SELECT count(*) FROM public.k") == 0
    _ctx(attacker, client_addr="203.0.113.9")
    attacker.execute("INSERT INTO public.k VALUES (2, 1)")
    _ctx(attacker, client_addr="")
    attacker.execute("INSERT INTO public.k VALUES (3, 1)")
    got = db.execute("SELECT target_id, host(client_addr) FROM audit.event_intake WHERE kind = 'public.k.insert'"
                     " ORDER BY target_id").fetchall()
    own = attacker.execute("SELECT host(inet_client_addr())").fetchone()[0]
    assert got == [("2", "203.0.113.9"), ("3", own)]
    _seals_cleanly(db)


# --- 7. Rate limits -------------------------------------------------------------------------------

def limited_notes(db, connect, per_user: int) -> str:
    """public.notes, the maintainer's, writable by app_writer, limited per user (a 600 s window)."""
    db.execute("""CREATE TABLE public.notes (id serial PRIMARY KEY, body text);
                  ALTER TABLE public.notes OWNER TO app_maintainer;
                  GRANT ALL ON public.notes, public.notes_id_seq TO app_writer""")
    enable_rate_limit(connect("app_maintainer"), "public.notes", per_user_per_minute=per_user,
                      per_tenant_per_minute=None, window_seconds=600)
    return "public.notes"


@pytest.fixture
def limited(db, connect):
    return limited_notes(db, connect, 3)


@pytest.mark.parametrize("value", ["on", "true", "1", "OFF", "yes"])
def test_a_writer_cannot_bypass_the_limit_with_the_setting(db, connect, limited, value):
    writer = connect("app_writer")
    _ctx(writer, rate_limit_bypass=value, actor_id="u1")
    with pytest.raises(psycopg.Error) as raised:
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
    assert raised.value.sqlstate == "PA010"
    with pytest.raises(psycopg.Error) as raised:
        writer.execute("SELECT audit.rate_limit('op.x', 'k', 5)")
    assert raised.value.sqlstate == "PA010"
    assert _count(db, "SELECT count(*) FROM public.notes") == 0


def test_a_writer_is_counted_exactly_within_one_transaction_and_across_savepoints(db, connect, limited):
    writer = connect("app_writer", autocommit=False)
    _ctx(writer, actor_id="u1", rate_limit_bypass="off")
    for _ in range(2):
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
    writer.execute("SAVEPOINT s")
    writer.execute("INSERT INTO public.notes (body) VALUES ('x')")  # third: admitted, then rolled back
    writer.execute("ROLLBACK TO SAVEPOINT s")
    writer.execute("INSERT INTO public.notes (body) VALUES ('x')")  # third again
    with pytest.raises(psycopg.Error) as raised:
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
    assert raised.value.sqlstate == "PA009"
    writer.rollback()
    writer.autocommit = True
    for _ in range(3):
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
    with pytest.raises(psycopg.Error) as raised:
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
    assert raised.value.sqlstate == "PA009"
    assert _count(db, "SELECT count(*) FROM public.notes") == 3
    assert _count(db, "SELECT coalesce(sum(count + prev_count), 0) FROM audit.rate_counters WHERE key LIKE 'table:%'") == 3


def test_a_writer_cannot_become_exempt_by_role_or_by_naming_another_actor(db, connect, limited):
    writer = connect("app_writer")
    with pytest.raises(psycopg.Error):
        writer.execute("SET ROLE audit_maintainer")
    with pytest.raises(psycopg.Error):
        writer.execute("SELECT set_config('role', 'audit_maintainer', false)")
    _ctx(writer, actor_id="app_maintainer", actor_type="db_role")
    for _ in range(3):
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
    with pytest.raises(psycopg.Error) as raised:
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
    assert raised.value.sqlstate == "PA009"
    # The maintainer is exempt, with or without the setting.
    maintainer = connect("app_maintainer")
    _ctx(maintainer, actor_id="u1", rate_limit_bypass="on")
    for _ in range(5):
        maintainer.execute("INSERT INTO public.notes (body) VALUES ('m')")
    assert _count(db, "SELECT count(*) FROM public.notes") == 8



# --- 8. More: a key redefined under tracked rows; the bounds exactly; record's context -------------

@pytest.mark.parametrize("change", [
    ["ALTER TABLE public.k DROP CONSTRAINT k_pkey, ADD PRIMARY KEY (id, name)"],
    ["CREATE UNIQUE INDEX k_idname ON public.k (id, name)", "ALTER TABLE public.k DROP CONSTRAINT k_pkey",
     "ALTER TABLE public.k REPLICA IDENTITY USING INDEX k_idname"],
])
def test_a_key_redefined_over_tracked_rows_does_not_stop_the_sealer(db, connect, attacker, change):
    """Rows written while tracked (key: id), then the key redefined to (id, name) (by the table's owner
    alone until trial 84; now between disable_tracking and enable_tracking): an UPDATE to a short name is admitted, and its moved_from is the JSON text of the
    old (id, name), never checked (a control character prints as six characters)."""
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, name text NOT NULL, v int)")
    enable_tracking(connect("app_maintainer"), "public.k")
    attacker.execute("INSERT INTO public.k VALUES (1, %s, 1)", (_controls(2500, 3),))
    _rekey(connect, attacker, change)
    with suppress(psycopg.Error):  # refused in the writer's statement: safe
        attacker.execute("UPDATE public.k SET name = 'x'")
    _seals_cleanly(db)


def test_every_value_exactly_at_its_bound_is_written_and_seals(db, connect, attacker):
    """Not wrongly refused at the bound, in four-byte characters, and the log's indexes hold them."""
    attacker.execute("CREATE TABLE public.k (id text PRIMARY KEY, org text, v int)")
    enable_tracking(connect("app_maintainer"), "public.k", tenant_column="org")
    _ctx(attacker, actor_type="\U0001F600" * 64, actor_id="\U0001F600" * 256, correlation_id="\U0001F600" * 256,
         tenant_id="\U0001F600" * 256)
    rng = random.Random(5)
    key = "".join(chr(0x10000 + rng.randint(0, 50000)) for _ in range(512))
    attacker.execute("INSERT INTO public.k VALUES (%s, %s, 1)", (key, "\U0001F601" * 256))
    attacker.execute("INSERT INTO public.k VALUES ('b', NULL, 1)")
    attacker.execute("UPDATE public.k SET id = %s WHERE id = 'b'", (key[::-1],))
    attacker.execute("TRUNCATE public.k")
    writer = connect("app_writer")
    _ctx(writer, tenant_id="\U0001F600" * 256, correlation_id="\U0001F600" * 256)
    writer.execute("SELECT audit.record('app.thing', actor_type => %s, actor_id => %s, target_type => %s,"
                   " target_id => %s, idempotency_key => %s)",
                   ("\U0001F602" * 64, "\U0001F602" * 256, "\U0001F603" * 128, key, "\U0001F604" * 256))
    assert _count(db, "SELECT count(*) FROM audit.event_intake WHERE kind IN ('public.k.insert', 'public.k.update',"
                      " 'public.k.truncate', 'app.thing')") == 5
    _seals_cleanly(db)


@pytest.mark.parametrize("setting,bound", [("tenant_id", 256), ("actor_type", 64), ("actor_id", 256),
                                           ("correlation_id", 256)])
def test_record_refuses_a_long_value_taken_from_the_sessions_context(db, connect, setting, bound):
    writer = connect("app_writer")
    _ctx(writer, **{setting: "x" * (bound + 1)})
    with pytest.raises(psycopg.Error) as raised:
        writer.execute("SELECT audit.record('app.thing')")
    assert raised.value.sqlstate in ("PA005", "23514")
    assert _pending(db) == 0


# --- 9. An installation upgraded across migration 0019 --------------------------------------------

@pytest.fixture(scope="module")
def installer_before_0019(tmp_path_factory):
    from test_upgrade import installer_at
    return installer_at("25ea7fa", tmp_path_factory)


def test_capture_functions_generated_before_0019_check_after_the_upgrade(db, connect, installer_before_0019):
    from pgaudit_py.installer import install
    installer_before_0019.install(db, "upg14")
    db.execute("""CREATE TABLE public.u (id text PRIMARY KEY, org text, v int);
                  CREATE TABLE public.pp (r text, id text, PRIMARY KEY (r, id)) PARTITION BY LIST (r);
                  CREATE TABLE public.pp_a PARTITION OF public.pp FOR VALUES IN ('a');
                  CREATE TYPE public.mood AS ENUM ('ok', 'bad');
                  CREATE TABLE public.sb (id text PRIMARY KEY, m public.mood)""")
    db.execute("SELECT upg14.enable_tracking('public.u', tenant_column => 'org')")
    db.execute("SELECT upg14.enable_tracking('public.pp')")
    db.execute("SELECT upg14.enable_tracking('public.sb')")
    db.execute("INSERT INTO public.u VALUES ('1', 'o', 1)")
    install(db, "upg14")
    assert not db.execute("SELECT count(*) FROM pg_constraint WHERE conrelid = 'upg14.event_intake'::regclass"
                          " AND conname LIKE '%at_most%'").fetchone()[0]
    for sql, args in [("INSERT INTO public.u VALUES (%s, 'o', 1)", ("k" * 600,)),
                      ("INSERT INTO public.u VALUES ('2', %s, 1)", ("o" * 300,)),
                      ("UPDATE public.u SET org = %s", ("o" * 300,)),
                      ("INSERT INTO public.pp_a VALUES ('a', %s)", ("k" * 600,)),
                      ("INSERT INTO public.pp VALUES ('a', %s)", ("k" * 600,)),
                      ("INSERT INTO public.sb VALUES (%s, 'ok')", ("k" * 600,))]:
        with pytest.raises(psycopg.errors.CheckViolation):
            db.execute(sql, args)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("SELECT set_config('pgaudit_py.actor_id', repeat('a', 300), false);"
                   " INSERT INTO public.u VALUES ('3', 'o', 1)")
    db.execute("RESET pgaudit_py.actor_id")
    assert db.execute("SELECT count(*) FROM upg14.event_intake WHERE char_length(target_id) > 512"
                      " OR char_length(tenant_id) > 256 OR char_length(actor_id) > 256").fetchone()[0] == 0


# --- 10. An install without the event triggers (a non-superuser install) ---------------------------

EVENT_TRIGGERS = ["audit_ddl_end", "audit_sql_drop", "audit_table_rewrite"]


@pytest.mark.parametrize("column,sql,args", [
    ("id", "INSERT INTO public.k VALUES (%s, 1, 1)", ("k" * 600,)),
    ("org", "INSERT INTO public.k VALUES ('2', %s, 1)", (_rand(10000),)),
])
def test_without_event_triggers_a_key_or_tenant_retyped_to_text_is_still_checked(db, connect, attacker, column, sql, args):
    """No event trigger regenerates the capture function when a short-printing key or tenant column
    becomes text: before migration 0019 the intake's CHECK refused the long value regardless."""
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, org int, v int)")
    enable_tracking(connect("app_maintainer"), "public.k", tenant_column="org")
    for name in EVENT_TRIGGERS:
        db.execute(f"ALTER EVENT TRIGGER {name} DISABLE")
    try:
        attacker.execute(f"ALTER TABLE public.k ALTER COLUMN {column} TYPE text")
        with suppress(psycopg.errors.CheckViolation):  # refused in the writer's statement: safe
            attacker.execute(sql, args)
        long_values = _intake_too_long(db)
        seal(db)
        quarantined = db.execute("SELECT coalesce(array_agg(kind || ': ' || sqlstate || ' ' || left(error, 90)), '{}')"
                                 " FROM audit.quarantine").fetchone()[0]
        assert (long_values, quarantined) == (0, [])
    finally:
        for name in EVENT_TRIGGERS:
            db.execute(f"ALTER EVENT TRIGGER {name} ENABLE")


# --- 11. A statement that writes no row writes no event: is a long context a reason to refuse it? ---

@pytest.mark.parametrize("sql", ["UPDATE public.k SET v = 2 WHERE false", "DELETE FROM public.k WHERE false",
                                 "INSERT INTO public.k SELECT 1, 1 WHERE false"])
def test_a_statement_that_captures_no_row_is_not_refused_for_its_context(db, connect, attacker, sql):
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.k")
    attacker.execute("INSERT INTO public.k VALUES (1, 1)")
    _ctx(attacker, tenant_id="t" * 300)
    attacker.execute(sql)  # nothing written, nothing to audit: refused only since migration 0019
    assert db.execute("SELECT id, v FROM public.k").fetchall() == [(1, 1)]


def test_rows_that_carry_their_own_tenant_are_not_refused_for_the_sessions_tenant(db, connect, attacker):
    """Every row names its tenant in the tenant column: the session's tenant_id is never written."""
    attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, org text NOT NULL, v int)")
    enable_tracking(connect("app_maintainer"), "public.k", tenant_column="org")
    _ctx(attacker, tenant_id="t" * 300)
    attacker.execute("INSERT INTO public.k VALUES (1, 'acme', 1)")
    attacker.execute("UPDATE public.k SET v = v")  # a no-op (skip_noop_updates): no event either
    assert db.execute("SELECT id, org FROM public.k").fetchall() == [(1, "acme")]
    _seals_cleanly(db)
