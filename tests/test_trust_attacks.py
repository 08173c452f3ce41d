"""A third attacker's trial of the five classes, against the partitioned log, the rotating intake,
baselines, time-ordered ids and the quarantine. Each test asserts the SAFE outcome: it passes when
the product holds and fails when the attack breaks it.

Roles: table_owner (the `attacker` fixture: owns tables, no audit role; app_maintainer is a member,
so it may track them), app_writer, app_reader, app_maintainer, and roles made here."""

from __future__ import annotations

import hashlib
import json
import os
from contextlib import contextmanager

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.rows import dict_row

from pgaudit_py import (
    IdempotencyConflict,
    InvalidTarget,
    PgAuditError,
    audit_context,
    canonical,
    enable_tracking,
    list_events,
    record,
    row_history,
    seal,
    seal_status,
    secrets,
    status,
)
from pgaudit_py.chain import verify_chain
from pgaudit_py.cli import cli
from pgaudit_py.errors import UnsupportedSession

PRIVILEGED = {"audit_owner", "audit_capture", "audit_sealer", "audit_pruner", "postgres"}


def ran(db) -> set[tuple[str, str, bool]]:
    return set(db.execute("SELECT who, what, forged FROM public.who_ran").fetchall())


def privileged_runs(db) -> list[tuple]:
    return db.execute("SELECT who, what, forged FROM public.who_ran WHERE forged OR who = ANY(%s)",
                      (list(PRIVILEGED),)).fetchall()


def forged_events(db) -> list[tuple]:
    return db.execute("SELECT kind, origin, db_role FROM audit.events WHERE payload ? 'forged'"
                      " OR kind = 'forged.event'").fetchall()


@contextmanager
def casts_unwatched(db):
    """As on an install without the event triggers (a non-superuser install)."""
    db.execute("ALTER EVENT TRIGGER audit_ddl_end DISABLE")
    try:
        yield
    finally:
        db.execute("ALTER EVENT TRIGGER audit_ddl_end ENABLE")


def both_verify(db) -> None:
    assert db.execute("SELECT ok, problem FROM audit.verify()").fetchone() == (True, None)
    python = verify_chain(db)
    assert (python.ok, python.problem) == (True, None)


# The attacker's kit: a schema everyone may use, a note of who ran what, a forgery as whoever runs
# it, and operators the privileged code uses (bigint +, bigint &, jsonb ->>, int <=) that, once the
# search_path names this schema first, are found before pg_catalog's.
KIT = """
CREATE SCHEMA evil;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION evil.note(what text, forged boolean) RETURNS void LANGUAGE sql
    AS $$ INSERT INTO public.who_ran VALUES (current_user, what, forged) $$;
CREATE FUNCTION evil.forge() RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload, origin)
    VALUES ('user', 'postgres', 'audit.tracking_disabled', 'success', '1', pg_catalog.now(),
            '{"forged": true}', 'system');
    RETURN true;
EXCEPTION WHEN OTHERS THEN RETURN false;
END $$;
CREATE FUNCTION evil.plus(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.note('operator +', evil.forge()); RETURN $1 OPERATOR(pg_catalog.+) $2; END $$;
CREATE OPERATOR evil.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.plus);
CREATE FUNCTION evil.band(bigint, bigint) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.note('operator &', evil.forge()); RETURN $1 OPERATOR(pg_catalog.&) $2; END $$;
CREATE OPERATOR evil.& (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.band);
CREATE FUNCTION evil.arrow(jsonb, text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.note('operator ->>', evil.forge()); RETURN $1 OPERATOR(pg_catalog.->>) $2; END $$;
CREATE OPERATOR evil.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = evil.arrow);
CREATE FUNCTION evil.le(integer, integer) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.note('operator <=', evil.forge()); RETURN $1 OPERATOR(pg_catalog.<=) $2; END $$;
CREATE OPERATOR evil.<= (LEFTARG = integer, RIGHTARG = integer, FUNCTION = evil.le);
-- Runs wherever the planner folds it, as whoever plans: leaves the session's search_path to the kit
-- (a plain SET outlives every enclosing function's SET clause).
CREATE FUNCTION evil.hijack(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    PERFORM evil.note('hijack', false);
    PERFORM pg_catalog.set_config('search_path', 'evil, pg_catalog', false);
    RETURN x;
END $$;
"""


@pytest.fixture
def kit(db, attacker):
    attacker.execute(KIT)
    attacker.execute("SET search_path = public")  # CREATE INDEX below runs the hijack as the attacker too
    return attacker


# ================================ class 1: the owner's code as a privileged role ================================

@pytest.mark.parametrize("where", ["index predicate", "statistics expression"])
def test_c1_baseline_folded_code_cannot_hand_its_search_path_to_the_capture_role(db, connect, kit, where):
    """The sandbox runs the planner's folding of the owner's immutable functions during a baseline.
    A plain set_config('search_path', ..., false) there outlives the sandbox's SET clause and
    _take_baseline's: its next operator is then the attacker's, run as audit_capture."""
    kit.execute("CREATE TABLE public.w (id int PRIMARY KEY, a int)")
    kit.execute({"index predicate": "CREATE INDEX ON public.w (a) WHERE evil.hijack(1) > 0",
                 "statistics expression": "CREATE STATISTICS public.w_s ON (a * evil.hijack(1)), id FROM public.w"}[where])
    kit.execute("INSERT INTO public.w SELECT g, g FROM generate_series(1, 20) g; ANALYZE public.w")
    kit.execute("SET search_path = public")
    db.execute("DELETE FROM public.who_ran")
    maintainer = connect("app_maintainer")  # fresh: nothing of the table cached
    before = maintainer.execute("SHOW search_path").fetchone()
    enable_tracking(maintainer, "public.w", baseline=True)
    assert privileged_runs(db) == [], ran(db)
    assert forged_events(db) == []
    assert maintainer.execute("SHOW search_path").fetchone() == before  # the maintainer's session untouched


def test_c1_unwatched_cast_cannot_hand_its_search_path_to_the_capture_role(db, connect, kit):
    """Without the event triggers a cast to json runs in the sandbox, "what keeps the cast's code
    from running with a privileged role's rights": its plain SET of search_path outlives the sandbox,
    and the capture function's next statement uses the attacker's operators as audit_capture."""
    kit.execute("CREATE TYPE public.mood AS ENUM ('ok'); CREATE TABLE public.moody (id int PRIMARY KEY, m public.mood)")
    kit.execute("GRANT ALL ON public.moody TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.moody")
    with casts_unwatched(db):
        kit.execute("""
            CREATE FUNCTION evil.mood_json(public.mood) RETURNS json LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM evil.note('cast', false);
                PERFORM pg_catalog.set_config('search_path', 'evil, pg_catalog', false);
                RETURN pg_catalog.to_json($1::text);
            END $$;
            CREATE CAST (public.mood AS json) WITH FUNCTION evil.mood_json(public.mood);""")
    db.execute("DELETE FROM public.who_ran")
    connect("app_writer").execute("INSERT INTO public.moody VALUES (1, 'ok')")
    assert privileged_runs(db) == [], ran(db)
    assert forged_events(db) == []


def test_c1_owner_ddl_after_tracking_runs_its_code_as_itself_only(db, connect, attacker):
    """Defaults (volatile: the ALTER rewrites rows), checks, generated columns, index and statistics
    expressions added after tracking: the event triggers regenerate capture as the owner role, and
    none of the owner's code may run then, nor in capture."""
    attacker.execute("""
        CREATE FUNCTION public.ispy(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql
            AS $$ BEGIN PERFORM public.spy('immutable'); RETURN x; END $$;
        CREATE TABLE public.grow (id int PRIMARY KEY, v int);
        GRANT ALL ON public.grow TO app_writer;
        INSERT INTO public.grow VALUES (1, 1), (2, 2);""")
    enable_tracking(connect("app_maintainer"), "public.grow")
    for ddl in ("ALTER TABLE public.grow ADD COLUMN d boolean DEFAULT public.spy('volatile default')",
                "ALTER TABLE public.grow ADD CONSTRAINT c CHECK (public.ispy(v) IS NOT NULL)",
                "ALTER TABLE public.grow ADD COLUMN g int GENERATED ALWAYS AS (public.ispy(id)) STORED",
                "CREATE INDEX ON public.grow ((public.ispy(v)))",
                "CREATE INDEX ON public.grow (v) WHERE public.ispy(1) > 0",
                "CREATE STATISTICS public.grow_s ON (v + public.ispy(1)), id FROM public.grow",
                "ALTER TABLE public.grow RENAME COLUMN v TO w",
                "ALTER TABLE public.grow ALTER COLUMN d SET DEFAULT public.spy('new default')"):
        try:
            attacker.execute(ddl)
        except psycopg.Error as refused:
            assert refused.sqlstate == "PA008", (ddl, refused)
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.grow (id, w) VALUES (3, 3)")
    writer.execute("UPDATE public.grow SET w = w + 1")
    writer.execute("DELETE FROM public.grow WHERE id = 1")
    seal(db)
    assert {who for who, _, _ in ran(db)} <= {"table_owner", "app_writer"}, ran(db)
    assert not any(forged for _, _, forged in ran(db))
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.grow.%'").fetchone() == (1 + 3 + 1,)


@pytest.mark.parametrize("cast", [
    "WITH INOUT",
    "WITH FUNCTION pg_catalog.to_json(anyelement)",
    "WITH FUNCTION pg_catalog.json_build_array(VARIADIC \"any\")",
])
def test_c1_a_cast_borrowing_a_superusers_function_or_inout_decides_nothing(db, connect, attacker, cast):
    """The trust test asks whose function a cast calls: an INOUT cast (no function) or a superuser's
    polymorphic function. Either is refused, or the write fails, or the value is recorded as it is."""
    attacker.execute("CREATE TYPE public.st AS ENUM ('pending', 'approved');"
                     " CREATE TABLE public.claims (id int PRIMARY KEY, st public.st)")
    enable_tracking(connect("app_maintainer"), "public.claims")
    try:
        attacker.execute(f"CREATE CAST (public.st AS json) {cast}")
    except psycopg.Error:
        return  # refused: safe
    try:
        attacker.execute("INSERT INTO public.claims VALUES (1, 'approved')")
    except psycopg.Error:
        assert db.execute("SELECT count(*) FROM public.claims").fetchone() == (0,)
        return  # the write failed with its capture: safe
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.claims.insert'").fetchone() == (
        {"id": 1, "st": "approved"},)


def refuses_cast(attacker, statement: str) -> None:
    """The cast to json would decide what a covered table's rows are recorded as: refused (PA008)."""
    with pytest.raises(psycopg.Error) as refused:
        attacker.execute(statement)
    assert refused.value.sqlstate == "PA008"


def test_c1_a_cast_on_a_multirange_of_the_owners_range_is_refused(db, connect, attacker):
    attacker.execute("""
        CREATE TYPE public.span AS RANGE (subtype = int4, multirange_type_name = public.spans);
        CREATE TABLE public.booked (id int PRIMARY KEY, s public.spans);
        CREATE FUNCTION public.spans_json(public.spans) RETURNS json LANGUAGE sql AS $$ SELECT '"none"'::json $$;""")
    enable_tracking(connect("app_maintainer"), "public.booked")
    refuses_cast(attacker, "CREATE CAST (public.spans AS json) WITH FUNCTION public.spans_json(public.spans)")
    attacker.execute("INSERT INTO public.booked VALUES (1, '{[1,3)}')")
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.booked.insert'").fetchone() == (
        {"id": 1, "s": "{[1,3)}"},)


def test_c1_a_cast_deep_in_nested_types_created_after_tracking_is_refused(db, connect, attacker):
    """enum inside a domain over an array inside a composite inside an array of the column."""
    attacker.execute("""
        CREATE TYPE public.lvl AS ENUM ('lo', 'hi');
        CREATE DOMAIN public.lvls AS public.lvl[];
        CREATE TYPE public.inner_t AS (l public.lvls);
        CREATE TYPE public.outer_t AS (i public.inner_t[]);
        CREATE TABLE public.nested (id int PRIMARY KEY, o public.outer_t);
        CREATE FUNCTION public.lvl_json(public.lvl) RETURNS json LANGUAGE sql AS $$ SELECT '"lo"'::json $$;""")
    enable_tracking(connect("app_maintainer"), "public.nested")
    refuses_cast(attacker, "CREATE CAST (public.lvl AS json) WITH FUNCTION public.lvl_json(public.lvl)")


def test_c1_a_writers_hostile_operators_never_reach_the_capture_function(db, connect, kit):
    """The generated body uses ->>, ||, -, <=, &, + unqualified: the pinned search_path must keep the
    writer's look-alikes (first in its search_path) out."""
    kit.execute("CREATE TABLE public.ops (id int PRIMARY KEY, v text); GRANT ALL ON public.ops TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.ops", redact_columns=["v"])
    writer = connect("app_writer", options="-c search_path=evil,pg_catalog")
    writer.execute("INSERT INTO public.ops VALUES (1, 'a'); UPDATE public.ops SET v = 'b'; DELETE FROM public.ops")
    assert privileged_runs(db) == []
    assert forged_events(db) == []
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.ops.%'").fetchone() == (3,)


def test_c1_sandbox_code_creates_no_temporary_objects(db, connect, attacker):
    """Code the baseline's planner folds runs as the sandbox, which holds TEMP through PUBLIC: a temp
    table or view there would shadow names for the privileged code of the same session."""
    attacker.execute("""
        CREATE FUNCTION public.temp_maker(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
        BEGIN
            BEGIN
                EXECUTE 'CREATE TEMP TABLE tracked_tables (relid oid)';
                PERFORM public.spy('temp table made');
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
            RETURN x;
        END $$;
        CREATE TABLE public.t (id int PRIMARY KEY, a int);
        CREATE INDEX ON public.t (a) WHERE public.temp_maker(1) > 0;
        INSERT INTO public.t VALUES (1, 1);""")
    db.execute("DELETE FROM public.who_ran")
    enable_tracking(connect("app_maintainer"), "public.t", baseline=True)
    assert [r for r in ran(db) if r[1] == "temp table made"] == []


# ================================ class 2: capture switched off, rows missed ================================

@pytest.fixture
def measures(db, connect, attacker):
    attacker.execute("""
        CREATE TABLE public.measures (id int, at date, v int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE public.measures_2026 PARTITION OF public.measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');""")
    enable_tracking(connect("app_maintainer"), "public.measures")
    return attacker


def captured(db, prefix: str) -> list[tuple]:
    return db.execute("SELECT kind, target_id FROM audit.events WHERE kind LIKE %s || '.%%' ORDER BY intake_id",
                      (prefix,)).fetchall()


def test_c2_a_partition_made_inside_create_schema_is_refused_or_captured(db, connect, measures):
    """CREATE SCHEMA ... CREATE TABLE ... PARTITION OF: its tag is CREATE SCHEMA, which neither
    event trigger listens to. The owner (no maintainer role) is refused a partition otherwise."""
    try:
        measures.execute("CREATE SCHEMA sneaky CREATE TABLE sneaky.m_2030 PARTITION OF public.measures"
                         " FOR VALUES FROM ('2030-01-01') TO ('2031-01-01')")
    except psycopg.Error as refused:
        assert refused.sqlstate == "PA008"
        return
    measures.execute("INSERT INTO sneaky.m_2030 VALUES (7, '2030-05-05', 7)")  # shows in public.measures
    assert db.execute("SELECT count(*) FROM public.measures").fetchone() == (1,)
    assert captured(db, "public.measures") == [("public.measures.insert", '[7, "2030-05-05"]')]


def test_c2_an_inheritance_child_made_inside_create_schema_is_refused(db, connect, attacker):
    attacker.execute("CREATE TABLE public.orders (id int PRIMARY KEY, total int)")
    enable_tracking(connect("app_maintainer"), "public.orders")
    try:
        attacker.execute("CREATE SCHEMA sneaky2 CREATE TABLE sneaky2.kid (note text) INHERITS (public.orders)")
    except psycopg.Error as refused:
        assert refused.sqlstate == "PA008"
        return
    attacker.execute("INSERT INTO sneaky2.kid VALUES (500, 5, 'hidden')")
    rows = db.execute("SELECT id FROM public.orders").fetchall()
    assert rows == [] or captured(db, "public.orders") != [], "a row of public.orders with no event"


def test_c2_detach_partition_concurrently_is_refused_and_a_plain_detach_followed(db, connect, measures):
    # Cancelled in its wait, a concurrent detach leaves the partition's rows out with no event trigger
    # fired (trial 33): refused, whatever the case and spacing of its words.
    for spelling in ("ALTER TABLE public.measures DETACH PARTITION public.measures_2026 CONCURRENTLY",
                     "alter table public.measures detach partition public.measures_2026\n  concurrently"):
        with pytest.raises(psycopg.Error) as refused:
            measures.execute(spelling)
        assert refused.value.sqlstate == "PA008"
    measures.execute("ALTER TABLE public.measures DETACH PARTITION public.measures_2026")
    measures.execute("INSERT INTO public.measures_2026 VALUES (1, '2026-02-02', 1)")
    assert captured(db, "public.measures") == []  # not the tracked table's any more
    assert db.execute("SELECT target_id FROM audit.events WHERE kind = 'audit.tracked_partition_removed'"
                      ).fetchall() == [("public.measures_2026",)]
    assert status(db).problems == []


def test_c2_foreign_key_actions_from_an_untracked_parent_are_captured(db, connect, attacker):
    attacker.execute("""
        CREATE TABLE public.par (id int PRIMARY KEY);
        CREATE TABLE public.child (id int PRIMARY KEY, p int REFERENCES public.par ON DELETE CASCADE ON UPDATE CASCADE,
                                   q int REFERENCES public.par ON DELETE SET NULL, v int);
        INSERT INTO public.par VALUES (1), (2), (3);
        INSERT INTO public.child VALUES (10, 1, 2, 0), (11, 1, 3, 0), (12, 2, 3, 0), (13, 3, 1, 0);""")
    enable_tracking(connect("app_maintainer"), "public.child")
    attacker.execute("DELETE FROM public.par WHERE id = 1")       # cascades: 10, 11 deleted; 13.q nulled
    attacker.execute("UPDATE public.par SET id = 20 WHERE id = 2")  # cascades: 12.p = 20
    attacker.execute("TRUNCATE public.par CASCADE")               # truncates the child too
    assert captured(db, "public.child") == [
        ("public.child.delete", "10"), ("public.child.delete", "11"), ("public.child.update", "13"),
        ("public.child.update", "12"), ("public.child.truncate", None)]


def test_c2_merge_writable_ctes_and_upserts_are_captured_and_paired(db, connect, attacker):
    attacker.execute("CREATE TABLE public.acc (id int PRIMARY KEY, bal int); INSERT INTO public.acc VALUES (1,10),(2,20),(3,30)")
    enable_tracking(connect("app_maintainer"), "public.acc")
    attacker.execute("MERGE INTO public.acc a USING (VALUES (1, 0), (2, 99), (4, 40)) s(id, b) ON a.id = s.id"
                     " WHEN MATCHED AND s.b = 0 THEN DELETE WHEN MATCHED THEN UPDATE SET bal = s.b"
                     " WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.b)")
    attacker.execute("WITH u1 AS (UPDATE public.acc SET bal = 1000 WHERE id = 3 RETURNING 1),"
                     " u2 AS (UPDATE public.acc SET bal = 2000 WHERE id = 2 RETURNING 1) SELECT * FROM u1, u2")
    attacker.execute("WITH d AS (DELETE FROM public.acc WHERE id = 4 RETURNING *) INSERT INTO public.acc SELECT id + 100, bal FROM d")
    attacker.execute("INSERT INTO public.acc VALUES (2, 5), (7, 7) ON CONFLICT (id) DO UPDATE SET bal = public.acc.bal + excluded.bal")
    seal(db)
    last: dict[str, dict | None] = {}
    for kind, key, after in db.execute("SELECT kind, target_id, row_after FROM audit.events"
                                       " WHERE kind LIKE 'public.acc.%' ORDER BY seq"):
        last[key] = None if kind.endswith(".delete") else after
    table = {str(i): {"id": i, "bal": b} for i, b in db.execute("SELECT id, bal FROM public.acc")}
    assert set(last) == {"1", "2", "3", "4", "104", "7"}
    assert {key: table.get(key) for key in last} == last


def test_c2_a_move_whose_delete_a_trigger_suppressed_loses_nothing(db, connect, attacker):
    attacker.execute("""
        CREATE TABLE pt (id int, region text, amount int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
        CREATE TABLE pt_eu PARTITION OF pt FOR VALUES IN ('eu');
        CREATE TABLE pt_us PARTITION OF pt FOR VALUES IN ('us');""")
    enable_tracking(connect("app_maintainer"), "public.pt")
    attacker.execute("""
        INSERT INTO pt VALUES (3, 'eu', 10), (4, 'eu', 40), (5, 'eu', 50);
        CREATE FUNCTION keep3() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF OLD.id = 3 THEN RETURN NULL; END IF; RETURN OLD; END $$;
        CREATE TRIGGER keep BEFORE DELETE ON pt_eu FOR EACH ROW EXECUTE FUNCTION keep3();""")
    attacker.execute("UPDATE pt SET region = 'us', amount = amount + 1 WHERE id IN (3, 4, 5)")
    table = {(r[0], r[1]): r[2] for r in db.execute("SELECT id, region, amount FROM pt")}
    after = {tuple(e[0]): e[1] for e in db.execute(
        "SELECT jsonb_build_array(row_after->'id', row_after->>'region'), row_after->'amount' FROM audit.events"
        " WHERE kind = 'public.pt.update'")}
    assert {(k[0], k[1]): v for k, v in after.items()} == {k: v for k, v in table.items() if k[1] == "us"}


@pytest.mark.parametrize("role", ["table_owner", "app_writer", "app_maintainer"])
def test_c2_no_role_may_set_replica_mode(db, connect, attacker, role):
    attacker.execute("CREATE TABLE public.r (id int PRIMARY KEY); GRANT ALL ON public.r TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.r")
    conn = connect(role)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SET session_replication_role = replica")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"ALTER ROLE {role} SET session_replication_role = replica")
    conn.execute("INSERT INTO public.r VALUES (1)")
    assert captured(db, "public.r") == [("public.r.insert", "1")]


@pytest.mark.parametrize("ddl", [
    "ALTER TABLE public.o ALTER COLUMN price TYPE numeric(10,1)",        # rounds every value
    "ALTER TABLE public.o ALTER COLUMN at TYPE timestamp(0)",            # rounds every value
    "ALTER TABLE public.o ALTER COLUMN note TYPE varchar(2) USING left(note, 2)",
    "ALTER TABLE public.o DISABLE TRIGGER audit_capture_update, ADD COLUMN z int DEFAULT 1",
    "ALTER TABLE public.o ADD COLUMN z int DEFAULT 1, DISABLE TRIGGER audit_capture_update,"
    " ENABLE TRIGGER audit_capture_update",  # off and on in one command: harmless, may pass
])
def test_c2_alter_table_that_changes_values_or_triggers_in_one_command(db, connect, attacker, ddl):
    attacker.execute("CREATE TABLE public.o (id int PRIMARY KEY, price numeric(10,2), at timestamp, note text);"
                     " INSERT INTO public.o VALUES (1, 12.34, '2024-01-01 10:00:00.6', 'abcdef')")
    enable_tracking(connect("app_maintainer"), "public.o")
    before = db.execute("SELECT price::text, at::text, note FROM public.o").fetchone()
    try:
        attacker.execute(ddl)
    except psycopg.Error as refused:
        assert refused.sqlstate == "PA008", refused
    assert db.execute("SELECT price::text, at::text, note FROM public.o").fetchone() == before
    attacker.execute("UPDATE public.o SET note = 'x'")
    assert captured(db, "public.o")[-1] == ("public.o.update", "1")
    assert status(db).problems == []


def test_c2_disabling_inside_a_function_that_swallows_the_refusal(db, connect, attacker):
    attacker.execute("CREATE TABLE public.q (id int PRIMARY KEY, v int); INSERT INTO public.q VALUES (1, 1)")
    enable_tracking(connect("app_maintainer"), "public.q")
    attacker.execute("""
        CREATE FUNCTION public.sneak() RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            BEGIN
                ALTER TABLE public.q DISABLE TRIGGER audit_capture_update;
                UPDATE public.q SET v = 666;
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
            UPDATE public.q SET v = v + 1;
        END $$""")
    attacker.execute("SELECT public.sneak()")
    assert db.execute("SELECT v FROM public.q").fetchone() == (2,)
    assert captured(db, "public.q") == [("public.q.update", "1")]


def test_c2_a_tracked_table_cannot_become_a_view(db, connect, attacker):
    attacker.execute("CREATE TABLE public.vv (id int PRIMARY KEY)")
    enable_tracking(connect("app_maintainer"), "public.vv")
    with pytest.raises(psycopg.Error):
        attacker.execute("CREATE RULE \"_RETURN\" AS ON SELECT TO public.vv DO INSTEAD SELECT 1 AS id")
    attacker.execute("INSERT INTO public.vv VALUES (1)")
    assert captured(db, "public.vv") == [("public.vv.insert", "1")]


def test_c2_a_composite_attribute_dropped_under_a_tracked_column_is_recorded(db, connect, attacker):
    attacker.execute("CREATE TYPE public.addr AS (street text, city text);"
                     " CREATE TABLE public.people (id int PRIMARY KEY, a public.addr);"
                     " INSERT INTO public.people VALUES (1, ROW('Main', 'Paris'))")
    enable_tracking(connect("app_maintainer"), "public.people")
    attacker.execute("ALTER TYPE public.addr DROP ATTRIBUTE city CASCADE")
    kinds = [k for (k,) in db.execute("SELECT kind FROM audit.events WHERE kind LIKE 'audit.tracked_%'")]
    assert "audit.tracked_type_altered" in kinds or "audit.tracked_table_ddl" in kinds


# ================================ class 3: forged or rewritten history ================================

@pytest.fixture
def second_writer(db, connect):
    db.execute("CREATE ROLE app_writer2 LOGIN; GRANT audit_writer TO app_writer2")
    yield connect("app_writer2")
    db.execute("DROP OWNED BY app_writer2; DROP ROLE app_writer2")


def test_c3_another_database_roles_idempotent_retry_is_not_the_first_roles_event(db, connect, second_writer):
    """A retry is the same request from the same caller: another database role that sends the same
    key and content must not be handed the first role's event (its client address, application,
    time: a writer may not read events), nor have its own request vanish."""
    first_conn = connect("app_writer", options="-c application_name=payments-service")
    with audit_context(first_conn, actor_id="alice", client_addr="203.0.113.7"):
        first = record(first_conn, "order.paid", target_id="o-1", payload={"n": 1}, idempotency_key="k1")
    with audit_context(second_writer, actor_id="alice"):
        try:
            other = record(second_writer, "order.paid", target_id="o-1", payload={"n": 1}, idempotency_key="k1")
        except IdempotencyConflict:
            return
    assert other is not None and first is not None
    assert other.id != first.id and other.db_role == "app_writer2"


@pytest.mark.parametrize("kind", ["Audit.tracking_disabled", "AUDIT.pruned", "Secret.read", "Public.Orders.delete"])
def test_c3_case_variants_of_reserved_kinds_stay_records(db, connect, attacker, kind):
    attacker.execute("CREATE TABLE public.orders (id int PRIMARY KEY)")
    enable_tracking(connect("app_maintainer"), "public.orders")
    attacker.execute("INSERT INTO public.orders VALUES (1)")
    try:
        record(connect("app_writer"), kind, target_type="public.orders", target_id="1")
    except (psycopg.Error, PgAuditError):
        return  # refused: safe
    assert db.execute("SELECT origin FROM audit.events WHERE kind = %s", (kind,)).fetchone() == ("record",)
    assert [e.kind for e in row_history(db, "public.orders", "1")] == ["public.orders.insert"]


def test_c3_a_writer_chooses_neither_time_role_nor_origin_by_settings(db, connect, attacker):
    attacker.execute("CREATE TABLE public.s (id int PRIMARY KEY); GRANT ALL ON public.s TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.s")
    writer = connect("app_writer")
    writer.execute("SET pgaudit_py.db_role = 'postgres'; SET pgaudit_py.origin = 'system';"
                   " SET pgaudit_py.occurred_at = '2000-01-01'; SET pgaudit_py.txid = '1'; SET TimeZone = 'Pacific/Kiritimati'")
    writer.execute("INSERT INTO public.s VALUES (1)")
    event = record(writer, "app.did")
    assert event is not None
    rows = db.execute("SELECT db_role, origin, occurred_at > now() - interval '1 hour', txid::text <> '1'"
                      " FROM audit.events WHERE kind IN ('public.s.insert', 'app.did') ORDER BY kind").fetchall()
    assert rows == [("app_writer", "record", True, True), ("app_writer", "capture", True, True)]


def test_c3_the_owners_trigger_cannot_change_the_database_role_of_another_writers_change(db, connect, attacker):
    attacker.execute("""
        CREATE TABLE public.led (id int PRIMARY KEY, v int); GRANT ALL ON public.led TO app_writer;
        CREATE FUNCTION public.masq() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN
            BEGIN PERFORM set_config('role', 'table_owner', true); EXCEPTION WHEN OTHERS THEN NULL; END;
            RETURN NEW;
        END $$;
        CREATE TRIGGER masq BEFORE INSERT ON public.led FOR EACH ROW EXECUTE FUNCTION public.masq();""")
    enable_tracking(connect("app_maintainer"), "public.led")
    connect("app_writer").execute("INSERT INTO public.led VALUES (1, 1)")
    assert db.execute("SELECT db_role FROM audit.events WHERE kind = 'public.led.insert'").fetchone() == ("app_writer",)


def test_c3_no_maintainer_forges_captured_events_through_the_capture_roles_helpers(db, connect, attacker):
    """_cover_partition and _take_baseline are the maintainer's to call: without a proof that it owns
    the table (trial 104), or without the lock, they write nothing."""
    attacker.execute("CREATE TABLE public.mine (id int PRIMARY KEY); INSERT INTO public.mine VALUES (1)")
    maintainer = connect("app_maintainer")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        maintainer.execute("SELECT audit._cover_partition('public.mine'::regclass, md5(1::text)::uuid)")
    with pytest.raises(psycopg.Error):
        maintainer.execute("SELECT audit_capture._take_baseline('public.mine'::regclass, md5(1::text)::uuid)")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.mine.%'").fetchone() == (0,)


# ================================ class 4: settings and locales ================================

@pytest.mark.parametrize("options", ["-c DateStyle=SQL,DMY", "-c DateStyle=German", "-c DateStyle=Postgres,MDY",
                                     "-c client_encoding=LATIN1", "-c IntervalStyle=iso_8601"])
def test_c4_the_python_verifier_agrees_with_sql_verify_under_the_readers_settings(db, connect, options):
    """A reader's role or database may carry another DateStyle or client encoding (PGDATESTYLE and
    PGCLIENTENCODING set them too): SQL verify() reads no text, the Python verifier must not either."""
    record(connect("app_writer"), "order.paid", actor_id="zoë 😀", payload={"who": "zoë 😀"})
    seal(db)
    reader = connect("app_reader", options=options)
    assert reader.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)
    result = verify_chain(reader)
    assert (result.ok, result.problem) == (True, None)


@pytest.mark.parametrize("setting", ["DateStyle=German", "IntervalStyle=iso_8601", "extra_float_digits=-15",
                                     "bytea_output=escape", "TimeZone=Asia/Kathmandu", "quote_all_identifiers=on",
                                     "standard_conforming_strings=off", "escape_string_warning=off",
                                     "array_nulls=off", "lc_monetary=de_DE.UTF-8"])
def test_c4_the_privileged_functions_work_under_any_session_setting(db, connect, attacker, setting):
    """The cluster speaks German; and every setting a session (or its role, or its database) may
    change, in the maintainer's and the writer's sessions: tracking, capture, sealing, verifying."""
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, f float8, i interval, b bytea, ts timestamptz, n text);"
                     " GRANT ALL ON public.t TO app_writer")
    options = f"-c {setting}"
    maintainer = connect("app_maintainer", options=options)
    maintainer.execute("SELECT 1 FROM audit.enable_tracking('public.t', redact_columns => '{n}')")  # SQL alone
    writer = connect("app_writer", options=options)
    writer.execute("INSERT INTO public.t VALUES (1, 1349.01, '1 day', E'\\\\x00', '2024-01-01 00:00+00', E'a\\\\b')")
    writer.execute("UPDATE public.t SET f = 1349.02")
    try:
        sealed = maintainer.execute("SELECT sealed FROM audit.seal()").fetchone()[0]
    except psycopg.Error as failed:
        pytest.fail(f"seal() under {setting}: {failed.sqlstate} {failed}")
    assert sealed >= 3
    assert maintainer.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)
    assert db.execute("SELECT count(*) FROM audit._log_partitions() WHERE first_seq IS NOT NULL").fetchone() == (1,)
    assert db.execute("SELECT row_after ->> 'f' FROM audit.events WHERE kind = 'public.t.update'").fetchone() == ("1349.02",)
    assert maintainer.execute("SELECT audit.disable_tracking('public.t')").fetchone() == (True,)
    assert status(db).problems == []


# ================================ class 5: hostile values, both verifiers ================================

@pytest.mark.parametrize("number", ["('1.' || repeat('0', 16383))::numeric", "'0e-16383'::numeric",
                                    "('-7.' || repeat('0', 16383))::numeric::text::jsonb"])
def test_c5_numbers_of_huge_scale_in_a_row_leave_its_later_changes_sealable(db, connect, attacker, number):
    """1e131071 is "wild" and tamed by the sealer; 1.000...0 (16,383 zeros) or 0e-16383 also takes 10
    bytes and prints as 16,385 characters: 1,100 of them in a jsonb column make a row image of 15 kB
    that prints as 18 MB. Among more than 100 numbers, each is tamed as a wild one is (before, the
    sealer's second attempt stored the column by its size and hash). Another role's later,
    unrelated change must still seal."""
    attacker.execute("CREATE TABLE public.orders (id int PRIMARY KEY, status text, meta jsonb);"
                     " GRANT ALL ON public.orders TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.orders")
    connect("app_writer").execute(f"INSERT INTO public.orders SELECT 42, 'new', jsonb_agg({number})"
                                  " FROM generate_series(1, 1100)")
    attacker.execute("UPDATE public.orders SET status = 'refunded' WHERE id = 42")  # by someone else
    seal(db)
    assert seal_status(db).quarantined == 0
    assert [e.kind for e in row_history(connect("app_reader"), "public.orders", "42")] == [
        "public.orders.insert", "public.orders.update"]
    # Each number is stored as a wild one; the rest of the row is kept, and the payload says so.
    before, after, status_after, changed, payload = db.execute(
        "SELECT row_before -> 'meta', row_after -> 'meta', row_after ->> 'status', changed, payload"
        " FROM audit.event_log WHERE kind = 'public.orders.update'").fetchone()
    assert before == after == [{"$omitted": {"wild_number": True}}] * 1100
    assert (status_after, changed) == ("refunded", {"status": {"old": "new", "new": "refunded"}})
    assert payload == {"omitted": {"row_before": ["meta"], "row_after": ["meta"]}}
    both_verify(db)


def deepest_jsonb(conn, table: str) -> int:
    """Insert the deepest nested array jsonb_build_array can make (the stack decides): returns its depth."""
    for depth in range(16000, 4000, -1000):
        try:
            conn.execute(f"""DO $$ DECLARE v jsonb := '1'; BEGIN
                                FOR i IN 1..{depth} LOOP v := jsonb_build_array(v); END LOOP;
                                INSERT INTO {table} VALUES (1, 'new', v); END $$""")
            return depth
        except psycopg.errors.StatementTooComplex:
            continue
    raise AssertionError("no depth fitted")


def test_c5_the_deepest_nesting_a_writer_can_store_wedges_neither_readers_nor_later_changes(db, connect, attacker):
    attacker.execute("CREATE TABLE public.deep (id int PRIMARY KEY, status text, j jsonb);"
                     " GRANT ALL ON public.deep TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.deep")
    depth = deepest_jsonb(connect("app_writer"), "public.deep")
    attacker.execute("UPDATE public.deep SET status = 'checked'")  # by someone else
    reader = connect("app_reader")
    # While they are pending, a page with them failed: the events view walked pending row images for
    # wild numbers, and this one is too deep to walk. The view now shows them as the sealer will
    # store them (its second attempt, _omit_unprintable), and the sealed ones read the same.
    pending = [(e.kind, e.row_before, e.row_after, e.changed, e.payload) for e in list_events(reader)
               if e.kind.startswith("public.deep.")]
    assert [p[0] for p in pending] == ["public.deep.update", "public.deep.insert"]
    printed = ("[" * depth + "1" + "]" * depth).encode()
    assert pending[0][2]["j"] == {"$omitted": {"bytes": len(printed), "sha256": hashlib.sha256(printed).hexdigest()}}
    seal(db)
    assert [(e.kind, e.row_before, e.row_after, e.changed, e.payload) for e in list_events(reader)
            if e.kind.startswith("public.deep.")] == pending
    assert db.execute("SELECT kind FROM audit.quarantine WHERE kind = 'public.deep.update'").fetchall() == []
    assert [e.kind for e in row_history(reader, "public.deep", "1")][-1] == "public.deep.update"
    both_verify(db)


@pytest.fixture
def odd_role(db):
    name = 'odd "\\\n\t\x01 é 😀 \u2028 \u0085 role'
    quoted = '"' + name.replace('"', '""') + '"'
    db.execute(f"CREATE ROLE {quoted} LOGIN; GRANT audit_writer TO {quoted}")
    yield name
    db.execute(f"DROP OWNED BY {quoted}; DROP ROLE {quoted}")


def test_c5_a_role_name_of_every_escape_verifies_in_both(db, connect, odd_role):
    conn = connect(odd_role)
    with audit_context(conn, actor_id="a\x7f\u2028\"\\\x1f", tenant_id="t\té", correlation_id="c\r\n"):
        record(conn, "odd.role", target_type="x\b\f", target_id="\U0001F600" * 100, payload={"\x1f": "\u2029"})
    seal(db)
    assert db.execute("SELECT db_role FROM audit.events WHERE kind = 'odd.role'").fetchone() == (odd_role,)
    both_verify(db)


# A network (10.0.0.0/8, fe80::1/64) is refused as a client's address since trial 72: the host forms
# with their prefix written out take their place.
@pytest.mark.parametrize("addr", ["::ffff:1.2.3.4", "10.0.0.1/32", "fe80::1/128", "2001:db8::"])
def test_c5_client_addresses_of_every_form_verify_in_both(db, connect, addr):
    conn = connect("app_writer")
    with audit_context(conn, client_addr=addr):
        record(conn, "addr.form")
    seal(db)
    both_verify(db)


def test_c5_captured_column_names_that_sort_oddly_verify_in_both(db, connect, attacker):
    """jsonb orders keys by length in bytes, then bytes: names of equal length in characters but not
    in bytes, a name that is a prefix of another, an empty-looking one."""
    attacker.execute('CREATE TABLE public.k (id int PRIMARY KEY, "é" int, "ee" int, "e" int, "z" int, "\u00a0" int,'
                     ' "😀" int, "ab" int, "a" int, " " int, "A" int)')
    enable_tracking(connect("app_maintainer"), "public.k")
    attacker.execute("INSERT INTO public.k VALUES (1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)")
    attacker.execute('UPDATE public.k SET "é" = 11, "😀" = 12, " " = 13')
    seal(db)
    both_verify(db)
    with db.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("""SELECT seq, id, tenant_id, actor_type, actor_id, db_role, client_addr::text AS client_addr,
                                     application_name, kind, target_type, target_id, outcome, correlation_id,
                                     idempotency_key, txid::text AS txid, occurred_at, payload::text AS payload,
                                     schema_valid, row_before::text AS row_before, row_after::text AS row_after,
                                     changed::text AS changed, origin, audit._canonical_event(l, 2::smallint) AS line
                                FROM audit.event_log l""").fetchall()
    for row in rows:
        assert canonical.event_line(row, 2) == row["line"]


def test_c5_a_record_payload_of_huge_scale_numbers_is_bounded_and_verifies(db, connect):
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 'scale.one', payload => jsonb_build_object('n', ('1.' || repeat('0', 16383))::numeric))")
    with pytest.raises(psycopg.Error) as refused:
        writer.execute("SELECT audit.record(kind => 'scale.many', payload => jsonb_build_object('n',"
                       " (SELECT jsonb_agg(('1.' || repeat('0', 16383))::numeric) FROM generate_series(1, 8))))")
    assert refused.value.sqlstate == "PA002"
    seal(db)
    both_verify(db)


# ============ a fifth trial: types under ranges, identifiers' quoting, the omission markers ============

def captured_rows(db, prefix: str) -> list[tuple]:
    return db.execute("SELECT kind, target_id, changed FROM audit.events WHERE kind LIKE %s || '.%%'"
                      " ORDER BY seq NULLS LAST, intake_id", (prefix,)).fetchall()


@pytest.mark.parametrize("column", ["public.grades", "public.grades_many", "public.grades[]"])
def test_c2_renaming_an_enum_value_under_a_range_column_is_recorded(db, connect, attacker, column):
    """A range over an enum prints the enum's labels: renaming one changes what every row reads as,
    with no row event, as for a plain enum column."""
    attacker.execute(f"""
        CREATE TYPE public.grade AS ENUM ('low', 'mid', 'high');
        CREATE TYPE public.grades AS RANGE (subtype = public.grade, multirange_type_name = public.grades_many);
        CREATE TABLE public.band (id int PRIMARY KEY, g {column});""")
    enable_tracking(connect("app_maintainer"), "public.band")
    attacker.execute("ALTER TYPE public.grade RENAME VALUE 'low' TO 'high_risk'")
    altered = db.execute("SELECT target_id, payload -> 'tables' FROM audit.events"
                         " WHERE kind = 'audit.tracked_type_altered'").fetchall()
    assert altered == [("public.grade", ["public.band"])]


@pytest.mark.parametrize("column", ["regclass", "regtype", "regproc", "regclass[]"])
def test_c5_a_row_image_does_not_depend_on_the_writers_quote_all_identifiers(db, connect, attacker, column):
    """reg* types print names quoted as quote_all_identifiers says: a key of such a type would be
    split between two target_ids, and row_history by one would miss the other's events. Since the
    twenty-sixth and twenty-seventh trials, a column of a reg* type is refused (a rename of the
    object changes what it reads as, with no row event); an array key was refused before (its image
    keeps no bounds)."""
    attacker.execute(f"CREATE TABLE public.refs (r {column} PRIMARY KEY, n int)")
    with pytest.raises(InvalidTarget, match="array column" if column.endswith("[]") else f"type {column}, "):
        enable_tracking(connect("app_maintainer"), "public.refs")


def test_c5_many_columns_each_under_the_omission_bound_leave_later_changes_sealable(db, connect, attacker):
    """Eighteen columns that each print to just under 1 MiB (60 numbers of 16,385 digits, 600 bytes
    stored) make a 17 MiB line: the sealer's second attempt bounds the whole image, not each value,
    so the event and a later change of the row by someone else are sealed, not quarantined."""
    columns = [f"c{i}" for i in range(18)]
    attacker.execute(f"CREATE TABLE public.wide (id int PRIMARY KEY, status text, {', '.join(c + ' jsonb' for c in columns)});"
                     " GRANT ALL ON public.wide TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.wide")
    value = "(SELECT jsonb_agg(('1.' || repeat('0', 16383))::numeric) FROM generate_series(1, 60))"
    connect("app_writer").execute(f"INSERT INTO public.wide VALUES (42, 'new', {', '.join(value for _ in columns)})")
    attacker.execute("UPDATE public.wide SET status = 'refunded' WHERE id = 42")
    seal(db)
    assert seal_status(db).quarantined == 0
    assert [e.kind for e in row_history(connect("app_reader"), "public.wide", "42")] == [
        "public.wide.insert", "public.wide.update"]
    assert db.execute("SELECT changed FROM audit.event_log WHERE kind = 'public.wide.update'").fetchone() == (
        {"status": {"old": "new", "new": "refunded"}},)
    both_verify(db)


def pending_and_sealed(db, prefix: str) -> tuple[list[tuple], list[tuple]]:
    """The events of a table as the events view shows them pending, then as sealed."""
    query = ("SELECT kind, payload, changed FROM audit.events WHERE kind LIKE %s || '.%%'"
             " ORDER BY seq NULLS LAST, intake_id")
    pending = db.execute(query, (prefix,)).fetchall()
    seal(db)
    return pending, db.execute(query, (prefix,)).fetchall()


def test_c3_a_value_replaced_by_a_copy_of_its_own_marker_is_a_change_and_the_marker_is_named(db, connect, attacker):
    """A value the capture stored as {"$omitted": {"bytes": N, "sha256": H}} (anyone can compute
    both), replaced by exactly that object, stores alike: the change is still in `changed`, and the
    payload names which images hold a marker the capture made, so a written one reads as written."""
    attacker.execute("CREATE TABLE public.contracts (id int PRIMARY KEY, doc jsonb, note text);"
                     " GRANT ALL ON public.contracts TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.contracts")
    body = hashlib.sha256(b"seed").hexdigest() * 40000  # 2.5 MB of text: over the 1 MiB bound
    connect("app_writer").execute("INSERT INTO public.contracts VALUES (1, to_jsonb(%s::text), 'signed')", (body,))
    printed = json.dumps(body).encode()
    marker = {"$omitted": {"bytes": len(printed), "sha256": hashlib.sha256(printed).hexdigest()}}
    attacker.execute("UPDATE public.contracts SET doc = %s::jsonb WHERE id = 1", (json.dumps(marker),))
    attacker.execute("UPDATE public.contracts SET note = 'void' WHERE id = 1")
    pending, sealed = pending_and_sealed(db, "public.contracts")
    assert pending == sealed
    assert sealed == [
        ("public.contracts.insert", {"omitted": {"row_after": ["doc"]}}, None),
        ("public.contracts.update", {"omitted": {"row_before": ["doc"]}}, {"doc": {"old": marker, "new": marker}}),
        ("public.contracts.update", {}, {"note": {"old": "signed", "new": "void"}})]
    both_verify(db)


def test_c3_wild_numbers_that_store_alike_are_changes_and_named(db, connect, attacker):
    """Every wild number is stored as {"$omitted": {"wild_number": true}}: a change from one to
    another, or to a written copy of the marker, is still a change, and the payload names the
    images whose value the sealer tamed."""
    attacker.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, balance jsonb); GRANT ALL ON public.ledger TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.ledger")
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.ledger VALUES (1, '1e500')")
    writer.execute("UPDATE public.ledger SET balance = '-1e500' WHERE id = 1")
    writer.execute("""UPDATE public.ledger SET balance = '{"$omitted": {"wild_number": true}}' WHERE id = 1""")
    writer.execute("""UPDATE public.ledger SET balance = '{"$omitted": {"wild_number": true}}' WHERE id = 1""")
    marker = {"$omitted": {"wild_number": True}}
    pending, sealed = pending_and_sealed(db, "public.ledger")
    assert pending == sealed
    assert sealed == [
        ("public.ledger.insert", {"omitted": {"row_after": ["balance"]}}, None),
        ("public.ledger.update", {"omitted": {"row_before": ["balance"], "row_after": ["balance"]}},
         {"balance": {"old": marker, "new": marker}}),
        ("public.ledger.update", {"omitted": {"row_before": ["balance"]}}, {"balance": {"old": marker, "new": marker}})]
    # (The last UPDATE wrote the same written marker again: a no-op, skipped.)
    both_verify(db)


# ============ a sixth trial: what a short row prints to, and the reader's session ============

def peak_memory_mib(conn: psycopg.Connection) -> int:
    """The most memory the connection's server process has held (VmHWM: its peak resident set)."""
    with open(f"/proc/{conn.info.backend_pid}/status") as status_file:
        for line in status_file:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM")


def test_c5_numbers_of_many_decimals_cost_the_sealer_bounded_memory(db, connect, attacker):
    """3,000 numbers 1.000...0 (16,383 zeros) in one jsonb value take under 1 kB on disk and print as
    49 MB (60,000 of them, 17 kB, took a sealer past 24 GB and the cluster down): among more than 100
    numbers, one with more than 400 decimals is tamed before anything prints, as a wild one is."""
    attacker.execute("CREATE TABLE public.orders (id int PRIMARY KEY, status text, meta jsonb);"
                     " GRANT ALL ON public.orders TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.orders")
    connect("app_writer").execute("INSERT INTO public.orders SELECT 42, 'new',"
                                  " jsonb_agg(('1.' || repeat('0', 16383))::numeric) FROM generate_series(1, 3000)")
    sealer = connect()
    seal(sealer)
    assert seal_status(db).quarantined == 0
    assert peak_memory_mib(sealer) < 512
    row, payload = db.execute("SELECT row_after, payload FROM audit.event_log WHERE kind = 'public.orders.insert'").fetchone()
    assert row["meta"] == [{"$omitted": {"wild_number": True}}] * 3000 and payload == {"omitted": {"row_after": ["meta"]}}
    both_verify(db)


def test_c5_a_few_numbers_of_many_decimals_are_stored_as_written(db, connect, attacker):
    """Up to 100 numbers in an image (here 99 and the key) print to at most 1.7 MB, whatever their
    decimals: they are kept, and the event seals as it is."""
    attacker.execute("CREATE TABLE public.orders (id int PRIMARY KEY, meta jsonb); GRANT ALL ON public.orders TO app_writer")
    enable_tracking(connect("app_maintainer"), "public.orders")
    connect("app_writer").execute("INSERT INTO public.orders SELECT 1, jsonb_agg(('1.' || repeat('0', 500))::numeric)"
                                  " FROM generate_series(1, 99)")
    seal(db)
    assert db.execute("SELECT length(row_after ->> 'meta'), payload FROM audit.event_log"
                      " WHERE kind = 'public.orders.insert'").fetchone() == (99 * 502 + 98 * 2 + 2, {})
    both_verify(db)


@pytest.mark.parametrize("options", ["-c DateStyle=German", "-c DateStyle=SQL,DMY", "-c IntervalStyle=iso_8601",
                                     "-c client_encoding=LATIN1", "-c client_encoding=SQL_ASCII"])
def test_c4_a_readers_session_that_would_read_wrong_is_refused_not_misread(db, connect, options):
    """psycopg reads timestamps in DateStyle ISO only, intervals in IntervalStyle postgres only, and
    json as UTF-8 whatever the client encoding: under LATIN1 a payload's "Ã©" read as "é", under
    SQL_ASCII a kind as bytes. The package refuses such a session with a clear error before it reads
    anything; the connections the CLI opens set what they need for themselves."""
    record(connect("app_writer"), "order.paid", payload={"name": "Ã©"})
    seal(db)
    reader = connect("app_reader", options=options)
    for read in (list_events, seal_status):
        with pytest.raises(UnsupportedSession, match="DateStyle ISO, IntervalStyle postgres and client_encoding UTF8"):
            read(reader)
    i = db.info
    listed = CliRunner().invoke(cli, ["events", "--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader",
                                      "--json"], env={"PGOPTIONS": options}, catch_exceptions=False)
    assert listed.exit_code == 0, listed.output
    assert [(e["kind"], e["payload"]) for e in json.loads(listed.output)] == [("order.paid", {"name": "Ã©"})]


def test_c4_status_reads_the_servers_logging_settings_in_their_base_units(db, connect):
    """current_setting('log_min_duration_statement') prints '250ms': status() read it as an integer
    and failed on any installation with a client-supplied master key and a slow-query log."""
    app = connect("app_secrets")
    with secrets.use_master_key(app, None, new_key=os.urandom(32).hex()):
        secrets.add_master_key(app)
    db.execute("SET log_min_duration_statement = 250; SET log_parameter_max_length = -1")
    assert status(db).warnings == [
        "log_min_duration_statement >= 0 with log_parameter_max_length <> 0 logs the client-supplied master key "
        "(set log_parameter_max_length = 0, or use a server key file)"]


@pytest.mark.parametrize("options", ["-c DateStyle=German", "-c client_encoding=LATIN1"])
def test_c4_the_http_apis_own_connections_read_as_they_must(db, connect, start_api, make_token, monkeypatch, options):
    """The API's pooled connections set DateStyle, IntervalStyle and client_encoding for themselves,
    whatever the role, the database or the environment (PGOPTIONS here) would give them."""
    record(connect("app_writer"), "order.paid", payload={"name": "Ã©"})
    seal(db)
    token = make_token("reader")
    monkeypatch.setenv("PGOPTIONS", options)
    with start_api().client(token) as client:
        response = client.get("/v1/audit", params={"kind_prefix": "order."})
    assert response.status_code == 200, response.text
    assert [(e["kind"], e["payload"]) for e in response.json()["events"]] == [("order.paid", {"name": "Ã©"})]
