"""Capture cannot be switched off while a table is listed as tracked, nor history forged, nor the
database taken hostage: tried by the table's owner (no audit role) and by the maintainer."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from contextlib import contextmanager

import psycopg
import pytest
from conftest import messages_locale_available

from pgaudit_py import (
    InvalidArgument,
    InvalidKind,
    InvalidTarget,
    audit_context,
    disable_tracking,
    enable_tracking,
    install,
    record,
    row_as_of,
    row_history,
    seal,
    seal_status,
    status,
)


@pytest.fixture
def orders(db, connect, attacker):
    attacker.execute("CREATE TABLE public.orders (id int PRIMARY KEY, total int)")
    attacker.execute("CREATE FUNCTION public.nothing() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$")
    enable_tracking(connect("app_maintainer"), "public.orders")
    return attacker


def captured_kinds(db, prefix: str = "public.orders") -> list[str]:
    return [r[0] for r in db.execute("SELECT kind FROM audit.events WHERE kind LIKE %s || '.%%'"
                                     " ORDER BY occurred_at, kind", (prefix,))]


def tracking(db) -> tuple[list[str], list[str], int]:
    """The tracked tables, the tables that carry capture triggers, and how many audit.tracking_enabled
    events there are: what a refused enable_tracking must leave as it was."""
    return ([r[0] for r in db.execute("SELECT table_name FROM audit.tracked_tables ORDER BY 1")],
            [r[0] for r in db.execute(r"SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger"
                                      r" WHERE tgname LIKE 'audit\_capture\_%' ORDER BY 1")],
            db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracking_enabled'").fetchone()[0])


def still_captured(db, conn, table: str = "public.orders", prefix: str = "public.orders") -> None:
    before = len(captured_kinds(db, prefix))
    conn.execute(f"INSERT INTO {table} (id) VALUES (1000 + {before})")
    assert len(captured_kinds(db, prefix)) == before + 1
    assert status(db).problems == []


SWITCH_OFF = [
    "DROP TRIGGER audit_capture_update ON public.orders",
    "ALTER TABLE public.orders DISABLE TRIGGER audit_capture_insert",
    "ALTER TABLE public.orders DISABLE TRIGGER ALL",
    "ALTER TABLE public.orders DISABLE TRIGGER USER",
    "ALTER TABLE public.orders ENABLE REPLICA TRIGGER audit_capture_insert",
    "ALTER TRIGGER audit_capture_delete ON public.orders RENAME TO something_else",
    "CREATE OR REPLACE TRIGGER audit_capture_insert AFTER INSERT ON public.orders"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION public.nothing()",
    "CREATE OR REPLACE TRIGGER audit_capture_insert AFTER INSERT ON public.orders"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT WHEN (false)"
    " EXECUTE FUNCTION audit._capture_function_placeholder()",
    "CREATE OR REPLACE TRIGGER audit_capture_update AFTER UPDATE OF total ON public.orders"  # no transition
    " FOR EACH STATEMENT EXECUTE FUNCTION audit._capture_function_placeholder()",         # tables with columns
    "CREATE OR REPLACE TRIGGER audit_capture_truncate BEFORE TRUNCATE ON public.orders"
    " FOR EACH STATEMENT EXECUTE FUNCTION public.nothing()",
]


def own_capture_function(db) -> str:
    return db.execute("SELECT audit._capture_function('public.orders'::regclass)").fetchone()[0]


@pytest.mark.parametrize("ddl", SWITCH_OFF)
@pytest.mark.parametrize("who", ["table_owner", "app_maintainer"])
def test_capture_cannot_be_switched_off(db, connect, orders, ddl, who):
    conn = connect(who)
    statement = ddl.replace("audit._capture_function_placeholder", own_capture_function(db))
    with pytest.raises(psycopg.Error) as caught:
        conn.execute(statement)
    # The table's owner cannot even name a capture function (no privilege on the audit schema).
    expected = {"PA008", "42501"} if who == "table_owner" and "placeholder" in ddl else {"PA008"}
    assert caught.value.sqlstate in expected, (statement, caught.value)
    still_captured(db, conn)


def test_extra_triggers_then_the_real_ones_dropped(db, connect, orders):
    """Triggers are checked by name and definition, not counted."""
    for op in ("insert", "update", "delete", "truncate"):
        orders.execute(f"CREATE TRIGGER extra_{op} AFTER {op.upper()} ON public.orders"
                       " FOR EACH STATEMENT EXECUTE FUNCTION public.nothing()")
    for op in ("insert", "update", "delete", "truncate"):
        with pytest.raises(psycopg.Error) as caught:
            orders.execute(f"DROP TRIGGER audit_capture_{op} ON public.orders")
        assert caught.value.sqlstate == "PA008"
    still_captured(db, orders)


@pytest.mark.parametrize("ddl, problem", [
    ("DROP TRIGGER audit_capture_update ON public.orders", "trigger audit_capture_update is missing"),
    ("ALTER TABLE public.orders DISABLE TRIGGER audit_capture_insert", "trigger audit_capture_insert is disabled"),
    ("ALTER TABLE public.orders ENABLE REPLICA TRIGGER audit_capture_insert",
     "trigger audit_capture_insert is enabled for replicas only"),
    ("CREATE OR REPLACE TRIGGER audit_capture_truncate BEFORE TRUNCATE ON public.orders"
     " FOR EACH STATEMENT EXECUTE FUNCTION public.nothing()",
     "trigger audit_capture_truncate is not the one tracking creates"),
    ("ALTER TRIGGER audit_capture_delete ON public.orders RENAME TO x", "trigger audit_capture_delete is missing"),
])
def test_status_names_what_a_superuser_did_with_the_event_triggers_off(db, orders, ddl, problem):
    db.execute("ALTER EVENT TRIGGER audit_ddl_end DISABLE")
    db.execute("ALTER EVENT TRIGGER audit_sql_drop DISABLE")
    try:
        db.execute(ddl)
        assert f"tracked table public.orders: {problem}" in status(db).problems
    finally:
        db.execute("ALTER EVENT TRIGGER audit_ddl_end ENABLE")
        db.execute("ALTER EVENT TRIGGER audit_sql_drop ENABLE")


def test_status_names_a_changed_capture_function(db, orders):
    fn = own_capture_function(db)
    db.execute(f"ALTER FUNCTION {fn}() OWNER TO audit_owner")
    assert any(p.startswith("tracked table public.orders: its capture function is not the one tracking generates")
               for p in status(db).problems)
    db.execute(f"ALTER FUNCTION {fn}() OWNER TO audit_capture")
    db.execute(f"CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER"
               " SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NULL; END $$")
    assert any(p.startswith("tracked table public.orders: its capture function is not the one")
               for p in status(db).problems)


@pytest.mark.parametrize("repair", ["enable_tracking", "install"])
def test_a_grant_on_a_capture_function_is_named_and_taken_back(db, connect, orders, repair):
    """The owner role, acting as the capture role, may grant on a generated capture function, and the
    grantee pass it on: status names it, and generating the function again takes back every grant
    but the maintainer's (tests/test_trust_attacks_67.py)."""
    fn = own_capture_function(db)
    db.execute(f"""SET ROLE audit_owner; SET ROLE audit_capture;
                   GRANT EXECUTE ON FUNCTION {fn}() TO audit_writer;
                   GRANT EXECUTE ON FUNCTION {fn}() TO audit_maintainer WITH GRANT OPTION;
                   SET ROLE audit_maintainer; GRANT EXECUTE ON FUNCTION {fn}() TO audit_reader""")
    db.execute("RESET ROLE")
    assert [p for p in status(db).problems if p.startswith("tracked table public.orders")] == [
        "tracked table public.orders: its capture function is not the one tracking generates (run enable_tracking "
        "again)"]
    if repair == "install":
        install(db)
    else:
        enable_tracking(connect("app_maintainer"), "public.orders")
    grants = db.execute("SELECT a.grantee::regrole::text, a.privilege_type, a.is_grantable"
                        "  FROM pg_proc p, aclexplode(p.proacl) a WHERE p.oid = %s::regprocedure"
                        "   AND a.grantee <> p.proowner", [f"{fn}()"]).fetchall()
    assert grants == [("audit_maintainer", "EXECUTE", False)]
    assert status(db).problems == []


# ---- partitions ----

@pytest.fixture
def measures(db, connect, attacker):
    attacker.execute("""
        CREATE TABLE public.measures (id int, at date, v int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
        CREATE TABLE public.measures_2025 PARTITION OF public.measures FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')
            PARTITION BY RANGE (id);
        CREATE TABLE public.measures_2025_low PARTITION OF public.measures_2025 FOR VALUES FROM (0) TO (100);
        CREATE TABLE public.measures_2026 PARTITION OF public.measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        GRANT ALL ON ALL TABLES IN SCHEMA public TO app_writer;""")
    enable_tracking(connect("app_maintainer"), "public.measures")
    return attacker


def test_writes_to_partitions_are_captured_at_every_level(db, connect, measures):
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.measures VALUES (1, '2026-05-01', 1)")  # through the root
    writer.execute("INSERT INTO public.measures_2026 VALUES (2, '2026-05-02', 2)")  # a partition
    writer.execute("INSERT INTO public.measures_2025_low VALUES (3, '2025-05-03', 3)")  # a sub-partition
    writer.execute("UPDATE public.measures_2026 SET v = v + 10")
    writer.execute("DELETE FROM public.measures_2025 WHERE id = 3")
    assert db.execute("""SELECT kind, target_id FROM audit.events WHERE kind LIKE 'public.measures.%'
                          ORDER BY occurred_at, target_id""").fetchall() == [
        ("public.measures.insert", '[1, "2026-05-01"]'), ("public.measures.insert", '[2, "2026-05-02"]'),
        ("public.measures.insert", '[3, "2025-05-03"]'), ("public.measures.update", '[1, "2026-05-01"]'),
        ("public.measures.update", '[2, "2026-05-02"]'), ("public.measures.delete", '[3, "2025-05-03"]')]
    assert [e.kind for e in row_history(db, "public.measures_2026", '[2, "2026-05-02"]')] == [
        "public.measures.insert", "public.measures.update"]
    assert status(db).problems == []


def test_partitions_created_or_attached_later_are_captured(db, connect, measures):
    maintainer = connect("app_maintainer")  # a member of the tables' owner role
    maintainer.execute("CREATE TABLE public.measures_2027 PARTITION OF public.measures"
                       " FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')")
    maintainer.execute("CREATE TABLE public.measures_2028 (id int, at date, v int, PRIMARY KEY (id, at))")
    maintainer.execute("ALTER TABLE public.measures ATTACH PARTITION public.measures_2028"
                       " FOR VALUES FROM ('2028-01-01') TO ('2029-01-01')")
    db.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO app_writer")
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.measures_2027 VALUES (7, '2027-01-07', 7)")
    writer.execute("INSERT INTO public.measures_2028 VALUES (8, '2028-01-08', 8)")
    assert captured_kinds(db, "public.measures") == ["public.measures.insert"] * 2
    added = db.execute("SELECT target_id FROM audit.events WHERE kind = 'audit.tracked_partition_added'"
                       " ORDER BY occurred_at").fetchall()
    assert added == [("public.measures_2027",), ("public.measures_2028",)]
    assert status(db).problems == []


def test_a_partition_only_a_maintainer_may_add(db, connect, measures):
    """Its capture triggers must be attached; the table's owner without the maintainer role cannot."""
    with pytest.raises(psycopg.Error) as caught:
        measures.execute("CREATE TABLE public.measures_2030 PARTITION OF public.measures"
                         " FOR VALUES FROM ('2030-01-01') TO ('2031-01-01')")
    assert caught.value.sqlstate == "PA008"
    assert db.execute("SELECT to_regclass('public.measures_2030')").fetchone() == (None,)
    measures.execute("CREATE TABLE public.loose (id int NOT NULL, at date NOT NULL, v int)")
    with pytest.raises(psycopg.Error) as caught:
        measures.execute("ALTER TABLE public.measures ATTACH PARTITION public.loose"
                         " FOR VALUES FROM ('2031-01-01') TO ('2032-01-01')")
    assert caught.value.sqlstate == "PA008"
    assert db.execute("SELECT count(*) FROM pg_inherits WHERE inhrelid = 'public.loose'::regclass").fetchone() == (0,)
    assert "public.loose" not in tracking(db)[1]


def test_a_partition_that_leaves_stops_being_captured_and_says_so(db, connect, measures):
    measures.execute("ALTER TABLE public.measures DETACH PARTITION public.measures_2026")
    measures.execute("INSERT INTO public.measures_2026 VALUES (9, '2026-09-09', 9)")  # no longer the tracked table's
    assert captured_kinds(db, "public.measures") == []
    measures.execute("DROP TABLE public.measures_2025_low")
    removed = db.execute("SELECT target_id, payload ->> 'dropped' FROM audit.events"
                         " WHERE kind = 'audit.tracked_partition_removed' ORDER BY occurred_at").fetchall()
    assert [r[1] for r in removed] == ["false", "true"] and removed[0][0] == "public.measures_2026"
    # Its other triggers went with its capture function; the TRUNCATE trigger (one function for all
    # tables, which the audit owner cannot drop from another's table) stays and does nothing there.
    assert [r[0] for r in db.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.measures_2026'::regclass"
                                     " AND tgname LIKE 'audit%'")] == ["audit_capture_truncate"]
    measures.execute("TRUNCATE public.measures_2026")
    assert captured_kinds(db, "public.measures") == []
    assert status(db).problems == []


def test_detach_concurrently_is_refused_only_while_a_tracked_table_has_partitions(db, connect, attacker):
    """An interrupted DETACH ... CONCURRENTLY fires no event trigger (docs/capture.md): refused while a
    tracked table has partitions, any partitioned table's, and allowed again once none has."""
    attacker.execute("""CREATE TABLE public.logs (id int, v int) PARTITION BY RANGE (id);
                        CREATE TABLE public.logs_1 PARTITION OF public.logs FOR VALUES FROM (0) TO (10);
                        CREATE TABLE public.logs_2 PARTITION OF public.logs FOR VALUES FROM (10) TO (20);
                        CREATE TABLE public.book (id int PRIMARY KEY) PARTITION BY RANGE (id);
                        CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (10);
                        CREATE TABLE public.plain (id int PRIMARY KEY)""")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.plain")  # tracked, no partitions
    attacker.execute("ALTER TABLE public.logs DETACH PARTITION public.logs_1 CONCURRENTLY")
    enable_tracking(maintainer, "public.book")
    with pytest.raises(psycopg.Error) as refused:
        attacker.execute("ALTER TABLE public.logs DETACH PARTITION public.logs_2 CONCURRENTLY")
    assert refused.value.sqlstate == "PA008"
    attacker.execute("ALTER TABLE public.logs /* not concurrently */ ADD COLUMN w int")  # other ALTERs run
    # A statement after another that wrote is no concurrent detach, whatever its text (a migration
    # sent as one string): it runs.
    attacker.execute("CREATE TABLE public.other (a int); ALTER TABLE public.logs ADD COLUMN z int"
                     " /* then DETACH PARTITION public.logs_2 CONCURRENTLY, some day */")
    assert db.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.logs'::regclass").fetchone() == (1,)
    disable_tracking(maintainer, "public.book")
    attacker.execute("ALTER TABLE public.logs DETACH PARTITION public.logs_2 CONCURRENTLY")
    assert db.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.logs'::regclass").fetchone() == (0,)


def test_a_partition_cannot_be_untracked_alone(db, connect, measures):
    for ddl in ("DROP TRIGGER audit_capture_insert ON public.measures_2026",
                "ALTER TABLE public.measures_2025_low DISABLE TRIGGER ALL"):
        with pytest.raises(psycopg.Error) as caught:
            measures.execute(ddl)
        assert caught.value.sqlstate == "PA008"
    with pytest.raises(psycopg.Error):
        connect("app_maintainer").execute("SELECT audit.disable_tracking('public.measures_2026')")
    connect("app_writer").execute("INSERT INTO public.measures_2026 VALUES (1, '2026-01-01', 1)")
    assert captured_kinds(db, "public.measures") == ["public.measures.insert"]


def test_truncating_a_partition_names_it(db, connect, measures):
    measures.execute("INSERT INTO public.measures VALUES (1, '2026-05-01', 1), (2, '2025-05-01', 2)")
    measures.execute("TRUNCATE public.measures_2026")
    measures.execute("TRUNCATE public.measures")
    payloads = [r[0] for r in db.execute("SELECT payload FROM audit.events WHERE kind = 'public.measures.truncate'"
                                         " ORDER BY occurred_at, payload::text")]
    assert payloads[0] == {"table": "public.measures", "partition": "public.measures_2026"}
    assert {"table": "public.measures"} in payloads  # the root's own event, then one per table in it
    assert {"table": "public.measures", "partition": "public.measures_2025_low"} in payloads
    assert {"table": "public.measures", "partition": "public.measures_2026"} in payloads


# ---- no hostage ----

def test_a_broken_table_blocks_changes_to_itself_only(db, connect, orders):
    """A superuser broke a tracked table's capture while the event triggers were off: changes to that
    table are refused until it is repaired, the rest of the database goes on."""
    db.execute("ALTER EVENT TRIGGER audit_sql_drop DISABLE")
    db.execute("DROP TRIGGER audit_capture_delete ON public.orders")
    db.execute("ALTER EVENT TRIGGER audit_sql_drop ENABLE")
    writer = connect("app_writer")
    for ddl in ("CREATE TEMP TABLE scratch (id int)", "ALTER TABLE scratch ADD COLUMN x int", "DROP TABLE scratch",
                "CREATE TABLE public.other (id int)", "ALTER TABLE public.other ADD COLUMN y int",
                "DROP TABLE public.other"):
        (writer if "TEMP" in ddl or "scratch" in ddl else orders).execute(ddl)
    with pytest.raises(psycopg.Error) as caught:
        orders.execute("ALTER TABLE public.orders ADD COLUMN z int")
    assert caught.value.sqlstate == "PA008"
    enable_tracking(connect("app_maintainer"), "public.orders")  # repairs it
    still_captured(db, orders)


def test_a_failed_forgery_leaves_ddl_working(db, connect, orders):
    with pytest.raises(psycopg.Error):
        orders.execute("DROP TRIGGER audit_capture_update ON public.orders")
    connect("app_writer").execute("CREATE TEMP TABLE t (id int); DROP TABLE t")
    orders.execute("CREATE TABLE public.x (id int); ALTER TABLE public.x ADD COLUMN y int; DROP TABLE public.x")


# ---- forged history ----

def test_record_cannot_write_captured_or_system_kinds(db, connect, orders):
    writer = connect("app_writer")
    orders.execute("INSERT INTO public.orders VALUES (1, 10)")
    for kind in ("public.orders.delete", "public.orders.truncate", "public.orders.insert", "public.orders.x",
                 "audit.tracking_disabled", "audit.pruned", "tenant.secret.read", "secret.slot_declared"):
        with pytest.raises(InvalidKind):
            record(writer, kind, target_type="public.orders", target_id="1")
    assert row_as_of(db, "public.orders", "1", db.execute("SELECT now()").fetchone()[0]) == {"id": 1, "total": 10}
    assert db.execute("SELECT count(*) FROM audit.events WHERE origin = 'record'").fetchone() == (0,)


def test_history_reads_captured_events_only(db, connect, attacker):
    """Events a writer recorded under a table's prefix before it was tracked are not its history."""
    writer = connect("app_writer")
    record(writer, "public.notes.delete", target_type="public.notes", target_id="1")
    attacker.execute("CREATE TABLE public.notes (id int PRIMARY KEY, body text)")
    enable_tracking(connect("app_maintainer"), "public.notes")
    attacker.execute("INSERT INTO public.notes VALUES (1, 'kept')")
    now = db.execute("SELECT now() + interval '1 hour'").fetchone()[0]
    assert row_as_of(db, "public.notes", "1", now) == {"id": 1, "body": "kept"}
    assert [(e.kind, e.origin) for e in row_history(db, "public.notes", "1")] == [("public.notes.insert", "capture")]


def test_a_capture_function_attached_to_a_look_alike_writes_nothing(db, connect, orders):
    fn = own_capture_function(db)
    maintainer = connect("app_maintainer")
    maintainer.execute("CREATE TABLE public.look_alike (id int PRIMARY KEY, total int)")
    maintainer.execute(f"CREATE TRIGGER audit_capture_delete AFTER DELETE ON public.look_alike"
                       f" REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {fn}()")
    maintainer.execute("INSERT INTO public.look_alike VALUES (1, 10)")
    with pytest.raises(psycopg.Error) as caught:
        maintainer.execute("DELETE FROM public.look_alike")
    assert caught.value.sqlstate == "PA008"
    assert captured_kinds(db) == []


def test_a_second_trigger_with_the_capture_function_cannot_double_history(db, connect, orders):
    fn = own_capture_function(db)
    maintainer = connect("app_maintainer")
    maintainer.execute(f"CREATE TRIGGER again AFTER INSERT ON public.orders REFERENCING NEW TABLE AS new_rows"
                       f" FOR EACH STATEMENT EXECUTE FUNCTION {fn}()")
    with pytest.raises(psycopg.Error) as caught:
        orders.execute("INSERT INTO public.orders VALUES (1, 1)")
    assert caught.value.sqlstate == "PA008"
    assert captured_kinds(db) == []


@pytest.mark.parametrize("prefix, error", [
    ("public.orders", InvalidArgument), ("public.orders.sub", InvalidArgument), ("public", InvalidArgument),
    ("audit", InvalidKind), ("audit.mine", InvalidKind), ("tenant.secret", InvalidKind),
])
def test_a_kind_prefix_belongs_to_one_table(db, connect, orders, prefix, error):
    orders.execute("CREATE TABLE public.mine (id int PRIMARY KEY)")
    with pytest.raises(error):
        enable_tracking(connect("app_maintainer"), "public.mine", kind_prefix=prefix)
    assert [t[0] for t in db.execute("SELECT table_name FROM audit.tracked_tables")] == ["public.orders"]


def test_definer_helpers_refuse_what_enable_tracking_would(db, connect, orders):
    maintainer = connect("app_maintainer")
    maintainer.execute("CREATE TABLE public.mine (id int PRIMARY KEY)")
    with pytest.raises(psycopg.Error) as caught:  # another table's prefix, through the helper itself
        maintainer.execute("SELECT audit._register_tracking(ROW('public.mine'::regclass, 'x', 'public.orders', NULL,"
                           " '{}', '{}', NULL, '{}', '{}', NULL, true, now(), 'x', NULL, NULL)::audit.tracked_tables, md5(1::text)::uuid)")
    assert caught.value.sqlstate == "PA005"
    # Not a partition of a tracked table: nothing to cover, nothing recorded (and its owner proves first).
    assert maintainer.execute("SELECT audit._cover_partition('public.mine'::regclass,"
                              " audit._prove_owner('public.mine'::regclass))").fetchone() == (None,)
    assert "audit.tracked_partition_added" not in captured_kinds(db, "audit")
    maintainer.execute("CREATE TEMP TABLE scratch (id int PRIMARY KEY)")
    with pytest.raises(InvalidTarget, match="it is a temporary table"):
        enable_tracking(maintainer, "pg_temp.scratch")
    assert tracking(db) == (["public.orders"], ["orders"], 1)


# ---- from an attacker's review ----

def test_a_maintainers_function_cannot_untrack_anothers_tables_in_their_session(db, connect, orders):
    """The helpers cannot tell who called them from the session's role: a maintainer's SECURITY
    DEFINER trigger, fired by the tables' owner, must not pass for the owner."""
    maintainer = connect("app_maintainer")
    maintainer.execute("""
        CREATE TABLE public.inbox (msg text); GRANT INSERT ON public.inbox TO PUBLIC;
        CREATE FUNCTION public.inbox_trigger() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
            SET search_path = pg_catalog AS $$
            BEGIN PERFORM audit._unregister_tracking(relid, 'audit.tracking_disabled', md5(1::text)::uuid) FROM audit.tracked_tables;
                  RETURN NULL; END $$;
        CREATE TRIGGER t AFTER INSERT ON public.inbox FOR EACH STATEMENT EXECUTE FUNCTION public.inbox_trigger();""")
    db.execute("REVOKE table_owner FROM app_maintainer")  # the maintainer owns none of the tables now
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        orders.execute("INSERT INTO public.inbox VALUES ('hi')")
    still_captured(db, orders)


def test_a_decoy_trigger_does_not_pass_for_capture(db, connect, measures):
    """A table given a trigger named like the capture's, then attached: it is covered all the same."""
    maintainer = connect("app_maintainer")
    maintainer.execute("""
        CREATE FUNCTION public.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
        CREATE TABLE public.measures_2029 (id int NOT NULL, at date NOT NULL, v int);
        CREATE TRIGGER audit_capture_truncate BEFORE TRUNCATE ON public.measures_2029
            FOR EACH STATEMENT EXECUTE FUNCTION public.noop();
        CREATE TRIGGER audit_capture_insert AFTER INSERT ON public.measures_2029
            FOR EACH STATEMENT EXECUTE FUNCTION public.noop();
        ALTER TABLE public.measures ATTACH PARTITION public.measures_2029 FOR VALUES FROM ('2029-01-01') TO ('2030-01-01');
        INSERT INTO public.measures_2029 VALUES (1, '2029-01-01', 1);""")
    assert captured_kinds(db, "public.measures") == ["public.measures.insert"]
    assert status(db).problems == []


@pytest.mark.parametrize("ddl", [
    "CREATE TABLE public.wrapper (id int, total int) PARTITION BY RANGE (id);"
    " ALTER TABLE public.wrapper ATTACH PARTITION public.orders FOR VALUES FROM (MINVALUE) TO (MAXVALUE)",
    "CREATE TABLE public.grandparent (id int, total int); ALTER TABLE public.orders INHERIT public.grandparent",
])
def test_a_tracked_table_cannot_come_under_an_untracked_one(db, connect, orders, ddl):
    """Statements on the parent would change its rows without firing its statement triggers."""
    with pytest.raises(psycopg.Error) as caught:
        orders.execute(ddl)
    assert caught.value.sqlstate == "PA008"
    still_captured(db, orders)


@pytest.mark.parametrize("ddl", [
    "CREATE TABLE public.orders_archive (note text) INHERITS (public.orders)",
    "CREATE TABLE public.orders_more (id int PRIMARY KEY, total int); ALTER TABLE public.orders_more INHERIT public.orders",
])
def test_plain_inheritance_from_a_tracked_table_is_refused(db, connect, orders, ddl):
    """A child's keys need not be unique across the tree, and a child may have a second parent whose
    statements reach its rows without firing its triggers: only partitions are captured."""
    maintainer = connect("app_maintainer")  # a member of the tables' owner role
    with pytest.raises(psycopg.Error, match="only a partition may") as caught:
        maintainer.execute(ddl)
    assert caught.value.sqlstate == "PA008"
    assert db.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.orders'::regclass").fetchone() == (0,)
    still_captured(db, orders)


def test_a_table_with_inheritance_children_cannot_be_tracked(db, connect, orders):
    orders.execute("CREATE TABLE public.base (id int PRIMARY KEY, total int);"
                   " CREATE TABLE public.base_child () INHERITS (public.base)")
    with pytest.raises(InvalidTarget, match="public.base_child inherits from it without being a partition"):
        enable_tracking(connect("app_maintainer"), "public.base")
    assert db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.base'::regclass").fetchone() == (0,)


def test_foreign_tables_cannot_join_a_tracked_table(db, connect, orders):
    """A foreign table has no transition tables: as a partition or a child of a tracked table its
    writes would go uncaptured."""
    db.execute("CREATE FOREIGN DATA WRAPPER nowhere; CREATE SERVER elsewhere FOREIGN DATA WRAPPER nowhere;"
               " GRANT USAGE ON FOREIGN SERVER elsewhere TO table_owner")
    orders.execute("CREATE TABLE public.m (id int, at date) PARTITION BY RANGE (at);"  # no key: foreign partitions allowed
                   " CREATE TABLE public.m_2026 PARTITION OF public.m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
    enable_tracking(connect("app_maintainer"), "public.m")
    for ddl in ("CREATE FOREIGN TABLE public.m_2027 PARTITION OF public.m FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')"
                " SERVER elsewhere",
                "CREATE FOREIGN TABLE public.m_far (id int, at date) SERVER elsewhere;"
                " ALTER TABLE public.m ATTACH PARTITION public.m_far FOR VALUES FROM ('2030-01-01') TO ('2031-01-01')",
                "CREATE FOREIGN TABLE public.orders_far () INHERITS (public.orders) SERVER elsewhere"):
        with pytest.raises(psycopg.Error) as caught:
            orders.execute(ddl)
        assert caught.value.sqlstate == "PA008", ddl
    assert db.execute("SELECT count(*) FROM pg_class WHERE relkind = 'f'").fetchone() == (0,)
    db.execute("CREATE FOREIGN TABLE public.n_far (id int, at date) SERVER elsewhere;"
               " CREATE TABLE public.n (id int, at date) PARTITION BY RANGE (at);"
               " ALTER TABLE public.n ATTACH PARTITION public.n_far FOR VALUES FROM ('2030-01-01') TO ('2031-01-01');"
               " ALTER TABLE public.n OWNER TO table_owner")
    with pytest.raises(InvalidTarget, match="public.n_far is not a table"):
        enable_tracking(connect("app_maintainer"), "public.n")
    assert tracking(db) == (["public.m", "public.orders"], ["m", "m_2026", "orders"], 2)
    assert status(db).problems == []


def test_a_child_cannot_be_tracked_on_its_own(db, connect, orders):
    orders.execute("CREATE TABLE public.solo (id int PRIMARY KEY)")
    db.execute("CREATE TABLE public.base (id int); ALTER TABLE public.solo INHERIT public.base")
    with pytest.raises(InvalidTarget, match="it inherits from another table"):
        enable_tracking(connect("app_maintainer"), "public.solo")
    assert tracking(db) == (["public.orders"], ["orders"], 1)


def test_a_prefix_cannot_be_another_tables_name(db, connect, orders):
    db.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, amount int)")  # not tracked
    orders.execute("CREATE TABLE public.mine (id int PRIMARY KEY, amount int)")
    with pytest.raises(InvalidArgument, match="^the kind prefix given is the name of table public.ledger$"):
        enable_tracking(connect("app_maintainer"), "public.mine", kind_prefix="public.ledger")
    assert tracking(db) == (["public.orders"], ["orders"], 1)


def test_no_false_report_of_a_dropped_table(db, connect, orders):
    with pytest.raises(psycopg.Error) as caught:
        connect("app_maintainer").execute(
            "SELECT audit._unregister_tracking('public.orders'::regclass, 'audit.tracked_table_dropped', md5(1::text)::uuid)")
    assert caught.value.sqlstate == "PA005"
    still_captured(db, orders)


# ---- from a second attacker's review ----

@pytest.mark.parametrize("setting", [
    "extra_float_digits = -15", "IntervalStyle = sql_standard", "bytea_output = escape", "lc_monetary = 'de_DE.UTF-8'",
])
def test_a_writers_output_settings_do_not_change_what_is_captured(db, connect, attacker, setting):
    """With extra_float_digits = -15 a float8 of 1349.01 printed as 1e+03: two different prices made
    one image, the UPDATE was skipped as a no-op, and the history said the old price. Each setting
    that changes how a column type prints is pinned, in the capture function and in the sandbox."""
    if "de_DE" in setting and not messages_locale_available():
        pytest.skip("the de_DE.UTF-8 locale is not installed")
    attacker.execute("""
        CREATE TYPE public.tag AS ENUM ('a');
        CREATE TABLE public.prices (id int PRIMARY KEY, price float8, tilt real, wait interval, blob bytea,
                                    cost money, at point);
        CREATE TABLE public.sandboxed (id int PRIMARY KEY, price float8, wait interval, blob bytea, cost money,
                                       t public.tag);""")
    enable_tracking(connect("app_maintainer"), "public.prices")
    enable_tracking(connect("app_maintainer"), "public.sandboxed")
    writer = connect("table_owner")
    writer.execute(f"SET {setting}")
    writer.execute("INSERT INTO public.prices VALUES (1, 1234.5678, 0.1, '1 day 2 hours', '\\x00ff', 12.34, '(1.25,2.5)')")
    writer.execute("UPDATE public.prices SET price = 1299.99")
    writer.execute("UPDATE public.prices SET price = 1349.01")
    writer.execute("INSERT INTO public.sandboxed VALUES (1, 1349.01, '1 day 2 hours', '\\x00ff', 12.34, 'a')")
    images = [r[0] for r in db.execute("SELECT row_after FROM audit.events WHERE kind LIKE 'public.%%'"
                                       " ORDER BY intake_id")]
    assert images == [
        {"id": 1, "price": 1234.5678, "tilt": 0.1, "wait": "1 day 02:00:00", "blob": "\\x00ff", "cost": "$12.34",
         "at": "(1.25,2.5)"},
        {"id": 1, "price": 1299.99, "tilt": 0.1, "wait": "1 day 02:00:00", "blob": "\\x00ff", "cost": "$12.34",
         "at": "(1.25,2.5)"},
        {"id": 1, "price": 1349.01, "tilt": 0.1, "wait": "1 day 02:00:00", "blob": "\\x00ff", "cost": "$12.34",
         "at": "(1.25,2.5)"},
        {"id": 1, "price": 1349.01, "wait": "1 day 02:00:00", "blob": "\\x00ff", "cost": "$12.34", "t": "a"},
    ]
    assert status(db).problems == []


@pytest.mark.parametrize("context, column", [
    ({"actor_id": "a" * 257}, "actor_id"), ({"tenant_id": "t" * 257}, "tenant_id"),
    ({"correlation_id": "c" * 257}, "correlation_id"), ({"actor_type": "k" * 65}, "actor_type"),
])
def test_a_capture_the_log_could_not_index_fails_the_write(db, connect, orders, context, column):
    """A 3 kB actor id made the event unsealable: quarantined, out of the chain and of the row's
    history, while the write itself stood. The intake refuses what the log's indexes cannot hold, in
    the writer's own statement, so the write fails with it: nothing is written unaudited."""
    writer = connect("table_owner")
    with pytest.raises(psycopg.errors.CheckViolation, match=f"{column}_at_most"), audit_context(writer, **context):
        writer.execute("INSERT INTO public.orders VALUES (1, 10)")
    assert db.execute("SELECT count(*) FROM public.orders").fetchone() == (0,)
    assert captured_kinds(db) == []


def test_a_key_too_long_for_the_log_fails_the_write(db, connect, attacker):
    attacker.execute("CREATE TABLE public.pages (url text PRIMARY KEY, body text)")
    enable_tracking(connect("app_maintainer"), "public.pages")
    attacker.execute("INSERT INTO public.pages VALUES (%s, 'fits')", ("u" * 512,))
    with pytest.raises(psycopg.errors.CheckViolation, match="target_id_at_most_512_characters"):
        attacker.execute("INSERT INTO public.pages VALUES (%s, 'too long')", ("u" * 513,))
    with pytest.raises(psycopg.errors.CheckViolation):
        attacker.execute("UPDATE public.pages SET url = url || 'x'")
    assert db.execute("SELECT count(*), max(length(url)) FROM public.pages").fetchone() == (1, 512)
    assert seal(db).sealed == 2 and seal_status(db).quarantined == 0


def test_a_tenant_column_or_a_composite_key_too_long_for_the_log_fails_the_write(db, connect, attacker):
    """The writers check the log's bounds (no CHECK constraint on the intake since migration 0019):
    a tenant taken from a column, and a composite key's JSON text, row by row."""
    attacker.execute("CREATE TABLE public.docs (region text, path text, n int, PRIMARY KEY (path, n))")
    enable_tracking(connect("app_maintainer"), "public.docs", tenant_column="region")
    attacker.execute("INSERT INTO public.docs VALUES (%s, 'a', 1), ('eu', %s, 2)", ("r" * 256, "p" * 490))
    with pytest.raises(psycopg.errors.CheckViolation, match="tenant_id_at_most_256_characters") as raised:
        attacker.execute("INSERT INTO public.docs VALUES ('eu', 'b', 1), (%s, 'c', 1)", ("r" * 257,))
    assert raised.value.diag.constraint_name == "tenant_id_at_most_256_characters"
    with pytest.raises(psycopg.errors.CheckViolation, match="target_id_at_most_512_characters"):
        attacker.execute("UPDATE public.docs SET path = path || repeat('q', 20) WHERE n = 2")
    assert db.execute("SELECT count(*) FROM public.docs").fetchone() == (2,)
    assert db.execute("SELECT max(char_length(tenant_id)), max(char_length(target_id)) FROM audit.events"
                      " WHERE kind = 'public.docs.insert'").fetchone() == (256, 497)
    assert seal(db).sealed == 3 and seal_status(db).quarantined == 0


def test_a_truncate_or_a_baseline_with_a_context_too_long_for_the_log_is_refused(db, connect, orders):
    writer = connect("table_owner")
    writer.execute("INSERT INTO public.orders VALUES (1, 10)")
    with pytest.raises(psycopg.errors.CheckViolation, match="actor_id_at_most_256"), audit_context(writer, actor_id="a" * 257):
        writer.execute("TRUNCATE public.orders")
    maintainer = connect("app_maintainer")
    disable_tracking(maintainer, "public.orders")
    with pytest.raises(InvalidArgument, match="correlation_id is longer than 256"), \
            audit_context(maintainer, correlation_id="c" * 257):
        enable_tracking(maintainer, "public.orders", baseline=True)
    assert db.execute("SELECT count(*) FROM public.orders").fetchone() == (1,)
    assert db.execute("SELECT count(*) FROM audit.tracked_tables").fetchone() == (0,)
    assert captured_kinds(db) == ["public.orders.insert"]


@pytest.mark.parametrize("columns", [
    {"redact_columns": ["id"]}, {"redact_columns": ["region"], "tenant_column": "region"},
])
def test_the_key_and_the_tenant_column_cannot_be_redacted(db, connect, attacker, columns):
    """Every event carries them in target_id and tenant_id (and an UPDATE of the key in moved_from):
    a redacted key would leak there."""
    attacker.execute("CREATE TABLE public.cards (id text PRIMARY KEY, region text, pan text)")
    with pytest.raises(InvalidArgument, match="cannot redact"):
        enable_tracking(connect("app_maintainer"), "public.cards", **columns)
    assert db.execute("SELECT count(*) FROM audit.tracked_tables").fetchone() == (0,)


# ---- from a third attacker's review ----

def test_time_zone_and_date_style_change_nothing_captured(db, connect, attacker):
    """A built-in range prints its bounds with their output functions: under a made-up time zone
    and DateStyle SQL two slots five hours apart printed alike, the UPDATE was skipped as a no-op.
    And a timestamptz key printed in the writer's time zone, so history by key missed it."""
    attacker.execute("""
        CREATE TABLE public.booking (id int PRIMARY KEY, slot tstzrange, rest pg_catalog.pg_stat_user_functions);
        CREATE TABLE public.reading (ts timestamptz PRIMARY KEY, value int);
        INSERT INTO public.booking (id, slot) VALUES (1, tstzrange('2024-10-26 19:30+00', '2024-10-26 20:30+00'));
        INSERT INTO public.reading VALUES ('2024-01-01 00:00+00', 10)""")
    enable_tracking(connect("app_maintainer"), "public.booking")
    enable_tracking(connect("app_maintainer"), "public.reading")
    writer = connect("table_owner")
    writer.execute("SET TimeZone = 'XXX0XXX-5,J100/0,J300/0'; SET DateStyle = 'SQL, MDY'; SET extra_float_digits = -15")
    writer.execute("UPDATE public.booking SET slot = tstzrange('2024-10-27 00:30+00', '2024-10-27 01:30+00')")
    writer.execute("UPDATE public.booking SET rest = ROW(1, 'public', 'f', 1, 1999.99, 1999.99)")
    writer.execute("SET TimeZone = 'Asia/Kathmandu'")
    writer.execute("UPDATE public.reading SET value = 99999")
    changes = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.booking.update' ORDER BY intake_id").fetchall()
    assert [r[0]["slot"] for r in changes] == ['["2024-10-27 00:30:00+00","2024-10-27 01:30:00+00")'] * 2
    assert changes[1][0]["rest"]["total_time"] == 1999.99
    assert row_as_of(db, "public.reading", "2024-01-01T00:00:00+00:00", db.execute("SELECT now()").fetchone()[0]) == {
        "ts": "2024-01-01T00:00:00+00:00", "value": 99999}
    assert status(db).problems == []


def test_a_column_type_change_that_rewrites_rows_is_refused(db, connect, orders, measures):
    """ALTER COLUMN ... TYPE ... USING rewrites every row, firing no trigger: values changed with no
    event. Refused on a covered table (a partition too); after disable_tracking (recorded) it runs."""
    attacker = orders
    attacker.execute("INSERT INTO public.orders VALUES (1, 100)")
    for ddl in ("ALTER TABLE public.orders ALTER COLUMN total TYPE numeric USING CASE WHEN id = 1 THEN 1000000 ELSE total END",
                "ALTER TABLE public.orders ALTER COLUMN total TYPE bigint",
                "ALTER TABLE public.measures ALTER COLUMN v TYPE bigint"):  # its partitions are rewritten
        with pytest.raises(psycopg.Error, match="rewrites the rows without capturing them") as caught:
            attacker.execute(ddl)
        assert caught.value.sqlstate == "PA008"
    assert db.execute("SELECT total FROM public.orders").fetchone() == (100,)
    disable_tracking(connect("app_maintainer"), "public.orders")
    attacker.execute("ALTER TABLE public.orders ALTER COLUMN total TYPE bigint")
    assert "audit.tracking_disabled" in captured_kinds(db, "audit")


def test_an_enum_value_renamed_under_a_tracked_table_is_recorded(db, connect, attacker):
    """Renaming an enum's value changes what every such row reads as, with no row event: the change
    is recorded with its command and the labels after it."""
    attacker.execute("CREATE TYPE public.st AS ENUM ('pending', 'rejected');"
                     " CREATE TABLE public.claims (id int PRIMARY KEY, st public.st); INSERT INTO public.claims VALUES (1, 'rejected')")
    enable_tracking(connect("app_maintainer"), "public.claims")
    attacker.execute("ALTER TYPE public.st RENAME VALUE 'rejected' TO 'approved'")
    event = db.execute("SELECT target_type, target_id, payload FROM audit.events WHERE kind = 'audit.tracked_type_altered'"
                       ).fetchone()
    assert event == ("type", "public.st", {"tables": ["public.claims"], "now": {"labels": ["pending", "approved"]},
                                    "command": "ALTER TYPE public.st RENAME VALUE 'rejected' TO 'approved'"})


@pytest.mark.parametrize("drop", ["ALTER TYPE public.ref DROP ATTRIBUTE a", "ALTER TABLE public.rowt DROP COLUMN a",
                                  "ALTER TABLE public.refs_parent DROP COLUMN a"])
def test_an_attribute_dropped_from_a_key_or_tenant_type_is_refused(db, connect, attacker, drop):
    """Trial 81 (j10): rows keyed ('A', 'x') and ('B', 'x') both read {"c": "x"} once a was dropped,
    so their events named two rows as one (and a tenant column's, two tenants). Refused (PA008), by
    the type's ALTER TYPE, its table's ALTER TABLE or its parent's; a type only other columns are made
    of still loses attributes as it may."""
    attacker.execute("""
        CREATE TYPE public.ref AS (a text, c text);
        CREATE TABLE public.refs_parent (a text, c text);
        CREATE TABLE public.refs () INHERITS (public.refs_parent);
        CREATE TABLE public.rowt (a text, c text);
        CREATE TYPE public.note AS (a text, c text);
        CREATE TABLE public.keyed (k public.ref, w public.rowt, n public.note, PRIMARY KEY (k, w));
        CREATE TABLE public.tenanted (id int PRIMARY KEY, t public.refs)""")
    enable_tracking(connect("app_maintainer"), "public.keyed")
    enable_tracking(connect("app_maintainer"), "public.tenanted", tenant_column="t")
    with pytest.raises(psycopg.Error, match="cannot drop an attribute of public.(ref|rowt|refs): the tenant column or key"
                                            r" public\.(keyed\.k|keyed\.w|tenanted\.t)") as refused:
        attacker.execute(drop)
    assert refused.value.sqlstate == "PA008"
    assert db.execute("SELECT count(*) FROM pg_attribute WHERE attrelid IN ('public.ref'::regclass, 'public.rowt'::regclass,"
                      " 'public.refs'::regclass) AND attname = 'a'").fetchone() == (3,)
    attacker.execute("ALTER TYPE public.note DROP ATTRIBUTE a")
    assert status(db).problems == []


def test_a_key_type_that_lost_an_attribute_is_refused_under_a_range_and_by_enable_tracking(db, connect, attacker):
    """Trial 82 (n1, n18): the same drop under a range of the key was not refused; nor was tracking
    enabled again after the drop, while tracking was off, had already made two rows' keys print alike.
    Both are refused now: the drop (PA008), and tracking a key made of a type with a dropped attribute
    (PA005)."""
    attacker.execute("""
        CREATE TYPE public.rc AS (a text, c text);
        CREATE TYPE public.rr AS RANGE (subtype = public.rc);
        CREATE TABLE public.ranged (k public.rr PRIMARY KEY, v int);
        CREATE TYPE public.kc AS (a text, c text);
        CREATE TABLE public.merged (k public.kc PRIMARY KEY, v int);
        INSERT INTO public.merged VALUES (ROW('A', 'x'), 1), (ROW('B', 'x'), 2)""")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.ranged")
    with pytest.raises(psycopg.Error, match="cannot drop an attribute of public.rc") as refused:
        attacker.execute("ALTER TYPE public.rc DROP ATTRIBUTE a")
    assert refused.value.sqlstate == "PA008"
    enable_tracking(maintainer, "public.merged")
    disable_tracking(maintainer, "public.merged")
    attacker.execute("ALTER TYPE public.kc DROP ATTRIBUTE a")
    with pytest.raises(InvalidArgument, match="made of a type with a dropped attribute"):
        enable_tracking(maintainer, "public.merged")
    assert db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.merged'::regclass").fetchone() == (0,)
    # Nor may such a column become the key of a tracked table (trial 83, d6, d13), even of one that
    # had none (a key changed is refused on its own: test_what_tracking_names_by_column_stays).
    attacker.execute("CREATE TABLE public.rekeyed (id int, k public.kc)")
    enable_tracking(maintainer, "public.rekeyed")
    with pytest.raises(psycopg.Error, match=r"its tenant column or key \(k\) is made of a type with a dropped attribute") as moved:
        attacker.execute("ALTER TABLE public.rekeyed ADD PRIMARY KEY (k)")
    assert moved.value.sqlstate == "PA008"


@contextmanager
def event_triggers_off(db):
    """What a superuser can do: a schema change the event triggers do not see (a table tracked before
    a refusal existed looks the same)."""
    db.execute("ALTER EVENT TRIGGER audit_sql_drop DISABLE; ALTER EVENT TRIGGER audit_ddl_end DISABLE")
    try:
        yield
    finally:
        db.execute("ALTER EVENT TRIGGER audit_sql_drop ENABLE; ALTER EVENT TRIGGER audit_ddl_end ENABLE")


def test_a_key_type_that_lost_an_attribute_while_the_event_triggers_were_off_is_named_by_status(db, connect, attacker):
    """What a table tracked before these refusals looks like (the drop made with the event triggers
    off, as a superuser could): status names it, and its next schema change is refused (PA008)."""
    attacker.execute("CREATE TYPE public.oc AS (a text, c text); CREATE TABLE public.old_keyed (k public.oc PRIMARY KEY, v int)")
    enable_tracking(connect("app_maintainer"), "public.old_keyed")
    with event_triggers_off(db):
        attacker.execute("ALTER TYPE public.oc DROP ATTRIBUTE a")
    assert [p for p in status(db).problems if "dropped attribute" in p] == [
        "tracked table public.old_keyed: its tenant column or key (k) is made of a type with a dropped attribute, so rows"
        " that differed only in it print alike (give the column a type made anew without it)"]
    with pytest.raises(psycopg.Error, match="is made of a type with a dropped attribute") as refused:
        attacker.execute("ALTER TABLE public.old_keyed ADD COLUMN w int")
    assert refused.value.sqlstate == "PA008"


def tracked_row(db, table: str) -> tuple:
    return db.execute("SELECT key_columns, tenant_column, redact_columns, exclude_columns FROM audit.tracked_tables"
                      " WHERE relid = %s::regclass", [table]).fetchone()


@pytest.mark.parametrize("change", [
    "DROP COLUMN tc",                                             # k30: rows filed under the tenant a session claims
    "DROP CONSTRAINT held_pkey, ADD PRIMARY KEY (code)",          # k27: old events would name other rows
    "DROP CONSTRAINT held_pkey, ADD PRIMARY KEY (id, code)",
    "DROP CONSTRAINT held_pkey",
    "DROP COLUMN id CASCADE",
])
def test_what_tracking_names_by_column_stays(db, connect, attacker, change):
    """Trial 84 (k27, k30): the table's owner dropped the tenant column (the next UPDATE was filed under
    the tenant the writer's session claimed), or changed the key (a row's history then held another
    row's events). Each is refused (PA008) and the tracking is as it was."""
    attacker.execute("""CREATE TABLE public.held (id int, code int NOT NULL UNIQUE, tc text, card text, memo text,
                                                   CONSTRAINT held_pkey PRIMARY KEY (id))""")
    enable_tracking(connect("app_maintainer"), "public.held", tenant_column="tc", redact_columns=["card"],
                    exclude_columns=["memo"])
    before = tracked_row(db, "public.held")
    with pytest.raises(psycopg.Error) as refused:
        attacker.execute(f"ALTER TABLE public.held {change}")
    assert refused.value.sqlstate == "PA008"
    assert tracked_row(db, "public.held") == before == (["id"], "tc", ["card"], ["memo"])
    assert db.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.held'::regclass AND attnum > 0"
                      " AND NOT attisdropped").fetchone() == (5,)


def test_what_tracking_names_by_column_changes_by_the_documented_routes(db, connect, attacker):
    """The routes docs/capture.md gives around those refusals: a key column renamed is followed; a key
    changed between disable_tracking and enable_tracking; a table without a key given one."""
    maintainer = connect("app_maintainer")
    attacker.execute("""CREATE TABLE public.held (id int PRIMARY KEY, code int NOT NULL UNIQUE, card text);
                        CREATE TABLE public.keyless (id int NOT NULL)""")
    enable_tracking(maintainer, "public.held", redact_columns=["card"])
    enable_tracking(maintainer, "public.keyless")
    attacker.execute("ALTER TABLE public.held RENAME COLUMN id TO ident")
    assert tracked_row(db, "public.held")[0] == ["ident"]
    disable_tracking(maintainer, "public.held")
    attacker.execute("ALTER TABLE public.held DROP CONSTRAINT held_pkey, ADD PRIMARY KEY (code)")
    enable_tracking(maintainer, "public.held")
    assert tracked_row(db, "public.held")[0] == ["code"]
    attacker.execute("ALTER TABLE public.keyless ADD PRIMARY KEY (id)")
    assert tracked_row(db, "public.keyless")[0] == ["id"]


def test_an_excluded_key_or_tenant_column_renamed_away_and_back_is_followed(db, connect, attacker):
    """An excluded key or tenant column may be renamed, and back under its own former name: it is the
    column that was excluded all along, not a hidden one made key or tenant (which stays refused)."""
    attacker.execute("""CREATE TABLE public.held (id int PRIMARY KEY, tc text, memo text);
                        CREATE TABLE public.keyless (id int NOT NULL, memo text)""")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.held", tenant_column="tc", exclude_columns=["id", "tc"])
    enable_tracking(maintainer, "public.keyless", exclude_columns=["memo"])
    for there, back in (("id", "ident"), ("tc", "tenant")):
        attacker.execute(f"ALTER TABLE public.held RENAME COLUMN {there} TO {back}")
        attacker.execute(f"ALTER TABLE public.held RENAME COLUMN {back} TO {there}")
    assert tracked_row(db, "public.held") == (["id"], "tc", [], ["id", "tc"])
    with pytest.raises(psycopg.Error, match="cannot make memo the key") as refused:
        attacker.execute("ALTER TABLE public.keyless ALTER COLUMN memo SET NOT NULL, ADD PRIMARY KEY (memo)")
    assert refused.value.sqlstate == "PA008"
    assert tracked_row(db, "public.keyless")[0] is None


@pytest.mark.parametrize("change", [
    "ALTER TABLE public.named ALTER COLUMN id TYPE oid",                       # -1 reads 4294967295
    "SET TimeZone = 'UTC'; ALTER TABLE public.named ALTER COLUMN at TYPE timestamptz",  # a time gains +00:00
    "ALTER TYPE public.tier RENAME VALUE 'gold' TO 'silver'",                  # one tenant filed as another
    "ALTER TYPE public.pair ADD ATTRIBUTE c int CASCADE",                      # (1,x) reads (1,x,)
])
def test_what_a_key_or_tenant_column_is_made_of_stays(db, connect, attacker, change):
    """Trial 86 (k19), trial 82 (n16): a retype PostgreSQL does without rewriting the rows, an enum's
    value renamed, a composite's attribute added or retyped: the key's or the tenant's stored values
    read otherwise from then on, with no row event. Refused (PA008) by what tracking took the columns
    to be made of (tracked_tables.name_types)."""
    attacker.execute("""CREATE TYPE public.tier AS ENUM ('gold', 'basic');
                        CREATE TYPE public.pair AS (a int, b text);
                        CREATE TABLE public.named (id int, at timestamp, p public.pair, tc public.tier, v int,
                                                   PRIMARY KEY (id, at, p));
                        GRANT ALL ON public.named TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.named", tenant_column="tc")
    connect("app_writer").execute("INSERT INTO public.named VALUES (-1, '2026-01-01', ROW(1, 'x'), 'gold', 0)")
    before = db.execute("SELECT name_types FROM audit.tracked_tables").fetchone()[0]
    with pytest.raises(psycopg.Error, match="cannot change what the key or tenant column") as refused:
        attacker.execute(change)
    assert refused.value.sqlstate == "PA008"
    assert db.execute("SELECT name_types FROM audit.tracked_tables").fetchone()[0] == before
    assert db.execute("SELECT id::text, at::text, p::text, tc::text FROM public.named").fetchone() == (
        "-1", "2026-01-01 00:00:00", "(1,x)", "gold")


def test_what_a_key_is_made_of_changed_with_the_event_triggers_off_is_named_by_status(db, connect, attacker):
    """A superuser's retype with the event triggers off leaves what tracking took behind: status names
    the table, the table's next schema change is refused, and tracking it anew takes it again."""
    attacker.execute("CREATE TABLE public.named (id int PRIMARY KEY, v int)")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.named")
    with event_triggers_off(db):
        attacker.execute("ALTER TABLE public.named ALTER COLUMN id TYPE oid")
    assert [p for p in status(db).problems if "what its key" in p] == [
        "tracked table public.named: what its key or tenant column is made of changed since tracking took it (column id"
        " is now made of other types): its stored values may read otherwise than its events name them (disable and"
        " enable its tracking)"]
    with pytest.raises(psycopg.Error, match="cannot change what the key") as refused:
        attacker.execute("ALTER TABLE public.named ADD COLUMN w int")
    assert refused.value.sqlstate == "PA008"
    # Its own changes only: another table's drops go through.
    attacker.execute("""CREATE TABLE public.other (id int PRIMARY KEY, v int); CREATE INDEX other_v ON public.other (v);
                        DROP INDEX public.other_v; ALTER TABLE public.other DROP COLUMN v""")
    enable_tracking(maintainer, "public.other")
    attacker.execute("ALTER TABLE public.other ADD COLUMN w int; ALTER TABLE public.other DROP COLUMN w")
    with pytest.raises(InvalidArgument, match="cannot track public.named again"):
        enable_tracking(maintainer, "public.named")
    disable_tracking(maintainer, "public.named")
    enable_tracking(maintainer, "public.named")
    attacker.execute("ALTER TABLE public.named ADD COLUMN w int")
    assert [p for p in status(db).problems if "what its key" in p] == []


def test_what_a_key_or_tenant_column_is_made_of_may_grow(db, connect, attacker):
    """What changes no stored value's text goes through, and is taken as the new state: a varchar key
    widened, a value added to the tenant's enum, a constraint on a key's domain, a non-key column
    retyped without a rewrite; a key given to a keyless table is taken from then on."""
    attacker.execute("""CREATE TYPE public.tier AS ENUM ('gold', 'basic');
                        CREATE DOMAIN public.code AS varchar(10);
                        CREATE TABLE public.named (id public.code, name varchar(10), tc public.tier, n int,
                                                   PRIMARY KEY (id, name));
                        CREATE TABLE public.keyless (id int NOT NULL, at timestamp)""")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.named", tenant_column="tc")
    enable_tracking(maintainer, "public.keyless")
    attacker.execute("""ALTER TABLE public.named ALTER COLUMN name TYPE varchar(20);
                        ALTER TYPE public.tier ADD VALUE 'silver';
                        ALTER DOMAIN public.code ADD CONSTRAINT short CHECK (length(VALUE) < 9);
                        ALTER TABLE public.named ALTER COLUMN n TYPE oid;
                        ALTER TABLE public.named RENAME COLUMN id TO ident;
                        ALTER TABLE public.keyless ADD PRIMARY KEY (id)""")
    labels = db.execute("SELECT name_types -> 'labels' FROM audit.tracked_tables WHERE relid = 'public.named'::regclass"
                        ).fetchone()[0]
    assert sorted(labels.values()) == ["basic", "gold", "silver"]
    keyless = db.execute("SELECT name_types -> 'columns' FROM audit.tracked_tables WHERE relid = 'public.keyless'::regclass"
                         ).fetchone()[0]
    assert keyless == {"1": [str(db.execute("SELECT 'int4'::regtype::oid").fetchone()[0])]}
    with pytest.raises(psycopg.Error, match="cannot change what the key") as refused:
        attacker.execute("ALTER TABLE public.keyless ALTER COLUMN id TYPE oid")
    assert refused.value.sqlstate == "PA008"


def test_a_name_the_key_or_tenant_column_had_goes_to_no_other_column(db, connect, attacker):
    """Trial 87 (k11, k12): the owner renamed the tenant column (or the key) away and gave its name to
    another column: the application's tenant went into a column tracking does not read, and its rows
    were filed under the one renamed away. Refused (PA008); the column itself may take its name back;
    enable_tracking called again goes on with the tracking and keeps the former names (o3)."""
    attacker.execute("CREATE TABLE public.held (id int PRIMARY KEY, tc text, v int)")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.held", tenant_column="tc")
    attacker.execute("ALTER TABLE public.held RENAME COLUMN tc TO tc_old; ALTER TABLE public.held RENAME COLUMN id TO ident")
    enable_tracking(maintainer, "public.held", tenant_column="tc_old")
    for column in ("tc", "id"):
        with pytest.raises(psycopg.Error, match=f"cannot give {column} of tracked table public.held") as refused:
            attacker.execute(f"ALTER TABLE public.held ADD COLUMN {column} text")
        assert refused.value.sqlstate == "PA008"
    with pytest.raises(psycopg.Error, match="cannot give tc of") as refused:
        attacker.execute("ALTER TABLE public.held RENAME COLUMN v TO tc")
    attacker.execute("ALTER TABLE public.held RENAME COLUMN tc_old TO tc; ALTER TABLE public.held RENAME COLUMN ident TO id")
    assert tracked_row(db, "public.held")[:2] == (["id"], "tc")


@pytest.mark.parametrize("away", ["DROP COLUMN {c}", "RENAME COLUMN {c} TO {c}_old"])
def test_a_column_added_under_a_redacted_or_excluded_columns_former_name_is_hidden_too(db, connect, attacker, away):
    """Trial 84 (o12): the table's owner dropped a redacted (or excluded) column, or renamed it away,
    and added one under its name: what the application wrote there was recorded in clear. The new
    column is redacted (excluded) too, recorded (audit.tracked_table_altered), until the maintainer
    tracks the table anew with other options."""
    attacker.execute("""CREATE TABLE public.cards (id int PRIMARY KEY, card text, memo text);
                        GRANT ALL ON public.cards TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.cards", redact_columns=["card"], exclude_columns=["memo"])
    for column in ("card", "memo"):
        attacker.execute(f"ALTER TABLE public.cards {away.format(c=column)}")
        attacker.execute(f"ALTER TABLE public.cards ADD COLUMN {column} text")
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.cards (id, card, memo) VALUES (1, '5500-0000', 'private')")
    image = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.cards.insert'").fetchone()[0]
    assert image["card"] == "[redacted]" and "memo" not in image
    assert "5500-0000" not in json.dumps(image) and "private" not in json.dumps(image)
    redacted, excluded = tracked_row(db, "public.cards")[2:]
    assert (sorted(redacted), sorted(excluded)) == (["card"] + (["card_old"] if "RENAME" in away else []),
                                                    ["memo"] + (["memo_old"] if "RENAME" in away else []))
    # The maintainer's choice stands: tracked anew without them, the names are free. Enabled again
    # without disabling first, a hidden column stays hidden (trial 86, o9): refused.
    with pytest.raises(InvalidArgument, match="cannot stop hiding"):
        enable_tracking(connect("app_maintainer"), "public.cards")
    disable_tracking(connect("app_maintainer"), "public.cards")
    enable_tracking(connect("app_maintainer"), "public.cards")
    attacker.execute("ALTER TABLE public.cards DROP COLUMN card; ALTER TABLE public.cards ADD COLUMN card text")
    assert tracked_row(db, "public.cards")[2:] == ([], [])


@pytest.mark.parametrize("column", ["tc jsonb", "tc public.jb", "tc int[]", "tc public.ia", "tc public.wrapped"])
def test_a_tenant_column_that_prints_two_tenants_alike_is_refused(db, connect, attacker, column):
    """Trial 84 (k1, k2): a jsonb tenant column named "1" and 1 (and a string and the array or object it
    spells, JSON null and NULL) as one tenant; an array one '{1,2}' and '[0:1]={1,2}'. Refused (PA005)."""
    attacker.execute(f"""CREATE DOMAIN public.jb AS jsonb; CREATE DOMAIN public.ia AS int[];
                         CREATE TYPE public.wrapped AS (a int[]);
                         CREATE TABLE public.tenants (id int PRIMARY KEY, {column})""")
    with pytest.raises(InvalidArgument, match="is jsonb or made of an array"):
        enable_tracking(connect("app_maintainer"), "public.tenants", tenant_column="tc")
    assert db.execute("SELECT count(*) FROM audit.tracked_tables").fetchone() == (0,)


def test_a_tenant_column_made_of_an_array_after_tracking_is_refused_or_named_by_status(db, connect, attacker):
    """An array attribute added to the tenant column's composite type is refused (PA008); one added
    while the event triggers were off (as a superuser could) is named by status."""
    attacker.execute("""CREATE TYPE public.tt AS (a int); CREATE TYPE public.ot AS (a int);
                        CREATE TABLE public.tenants (id int PRIMARY KEY, tc public.tt);
                        CREATE TABLE public.old_tenants (id int PRIMARY KEY, tc public.ot)""")
    enable_tracking(connect("app_maintainer"), "public.tenants", tenant_column="tc")
    enable_tracking(connect("app_maintainer"), "public.old_tenants", tenant_column="tc")
    with pytest.raises(psycopg.Error, match="is jsonb or made of an array") as refused:
        attacker.execute("ALTER TYPE public.tt ADD ATTRIBUTE b int[] CASCADE")
    assert refused.value.sqlstate == "PA008"
    assert db.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.tt'::regclass AND attname = 'b'"
                      ).fetchone() == (0,)
    with event_triggers_off(db):
        attacker.execute("ALTER TYPE public.ot ADD ATTRIBUTE b int[] CASCADE")
    assert [p for p in status(db).problems if "made of an array" in p] == [
        "tracked table public.old_tenants: its tenant column or key (tc) is jsonb or made of an array, so two tenants"
        " may print alike (give it a scalar type)"]


def test_a_cast_to_json_on_a_tracked_type_is_refused(db, connect, attacker):
    """to_jsonb prints a user's type through its cast to json: a cast returning '"pending"' made an
    INSERT of 'approved' read as pending, and an UPDATE to it a skipped no-op. Refused when the
    table is tracked, when the cast comes later, and when a column of such a type is added."""
    attacker.execute("""
        CREATE TYPE public.st AS ENUM ('pending', 'approved');
        CREATE FUNCTION public.liar(public.st) RETURNS json LANGUAGE sql AS $$ SELECT '"pending"'::json $$;
        CREATE TYPE public.other AS ENUM ('x');
        CREATE TABLE public.claims (id int PRIMARY KEY, st public.st);
        CREATE TABLE public.plain (id int PRIMARY KEY)""")
    enable_tracking(connect("app_maintainer"), "public.claims")
    enable_tracking(connect("app_maintainer"), "public.plain")
    with pytest.raises(psycopg.Error, match="has a cast to json") as caught:
        attacker.execute("CREATE CAST (public.st AS json) WITH FUNCTION public.liar(public.st)")
    assert caught.value.sqlstate == "PA008"
    attacker.execute("CREATE FUNCTION public.liar2(public.other) RETURNS json LANGUAGE sql AS $$ SELECT '1'::json $$;"
                     " CREATE CAST (public.other AS json) WITH FUNCTION public.liar2(public.other)")
    with pytest.raises(psycopg.Error, match="has a cast to json"):
        attacker.execute("ALTER TABLE public.plain ADD COLUMN o public.other")
    attacker.execute("CREATE TABLE public.fresh (id int PRIMARY KEY, o public.other)")
    with pytest.raises(InvalidTarget, match="has a cast to json"):
        enable_tracking(connect("app_maintainer"), "public.fresh")
    attacker.execute("INSERT INTO public.claims VALUES (1, 'approved')")
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.claims.insert'").fetchone() == (
        {"id": 1, "st": "approved"},)
    assert status(db).problems == []


def test_enable_tracking_waits_for_a_concurrent_column_change(db, connect, attacker):
    """enable_tracking chose inline conversion from a catalogue a concurrent ALTER TABLE was about to
    change: the column of a user's type it added was then converted inline. Now the table is locked
    first, and the capture function is generated from what the ALTER committed."""
    attacker.execute("CREATE TYPE public.e AS ENUM ('a'); CREATE TABLE public.race (id int PRIMARY KEY, v int)")
    altering = connect("table_owner", autocommit=False)
    altering.execute("ALTER TABLE public.race ADD COLUMN e public.e DEFAULT 'a'")
    done: list[object] = []
    tracking = threading.Thread(target=lambda: done.append(enable_tracking(connect("app_maintainer"), "public.race")))
    tracking.start()
    time.sleep(0.5)
    assert not done  # waiting for the ALTER's lock
    altering.commit()
    tracking.join(10)
    body = db.execute("SELECT prosrc FROM pg_proc WHERE oid = to_regprocedure(audit._capture_function('public.race'::regclass)"
                      " || '()')").fetchone()[0]
    assert "_row_images" in body
    assert status(db).problems == []


def test_a_kind_prefix_stays_with_the_table_that_used_it(db, connect, attacker):
    """A maintainer tracked its own table under the prefix of a table that did not exist yet, then
    stopped: the real table's history began with its rows. A prefix belongs to its first table, but
    for the same table dropped and created again under its name."""
    maintainer = connect("app_maintainer")
    attacker.execute("CREATE TABLE public.fake (id int PRIMARY KEY, payee text)")
    enable_tracking(maintainer, "public.fake", kind_prefix="public.payments")
    attacker.execute("INSERT INTO public.fake VALUES (1, 'offshore')")
    disable_tracking(maintainer, "public.fake")
    attacker.execute("CREATE TABLE public.payments (id int PRIMARY KEY, payee text)")
    with pytest.raises(InvalidArgument, match="^the kind prefix given holds the events of table public.fake$"):
        enable_tracking(maintainer, "public.payments")
    with pytest.raises(InvalidTarget, match="public.fake"):
        row_history(db, "public.payments", "1")
    enable_tracking(maintainer, "public.payments", kind_prefix="app.payments")
    # The same table, dropped and created again under its name, takes its prefix back.
    attacker.execute("CREATE TABLE public.ledger (id int PRIMARY KEY)")
    enable_tracking(maintainer, "public.ledger")
    attacker.execute("INSERT INTO public.ledger VALUES (1); DROP TABLE public.ledger; CREATE TABLE public.ledger (id int PRIMARY KEY)")
    enable_tracking(maintainer, "public.ledger")
    assert [e.kind for e in row_history(db, "public.ledger", "1")] == ["public.ledger.insert"]


def test_a_table_detached_by_another_role_still_takes_partitions(db, connect, attacker, measures):
    """A sub-partitioned table detached from a tracked one by a role that did not own it keeps a
    TRUNCATE trigger: taking it for tracked, the event trigger refused every new partition of it."""
    attacker.execute("ALTER TABLE public.measures DETACH PARTITION public.measures_2025")
    attacker.execute("CREATE TABLE public.measures_2025_high PARTITION OF public.measures_2025 FOR VALUES FROM (100) TO (200)")
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.measures_2025_high'::regclass").fetchone() == (0,)


def test_an_update_whose_moved_row_a_trigger_swallowed_is_refused(db, connect, attacker):
    """A BEFORE INSERT trigger on the target partition returning NULL deletes a moved row and inserts
    nothing: old and new rows no longer pair by position, so the row would vanish with no event,
    and the rows after it would be paired with the wrong old versions."""
    for statement in ("CREATE TABLE pt (id int, region text, amount int, PRIMARY KEY (id, region)) PARTITION BY LIST (region)",
                      "CREATE TABLE pt_eu PARTITION OF pt FOR VALUES IN ('eu')",
                      "CREATE TABLE pt_us PARTITION OF pt FOR VALUES IN ('us')"):
        attacker.execute(statement)
    connect("app_maintainer").execute("SELECT audit.enable_tracking('public.pt')")
    attacker.execute("INSERT INTO pt VALUES (3, 'eu', 10), (4, 'eu', 40)")
    attacker.execute("CREATE FUNCTION swallow() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$")
    attacker.execute("CREATE TRIGGER a BEFORE INSERT ON pt_us FOR EACH ROW EXECUTE FUNCTION swallow()")
    for statement in ("UPDATE pt SET region = 'us' WHERE id = 3",
                      "UPDATE pt SET region = CASE WHEN id = 3 THEN 'us' ELSE region END,"
                      " amount = CASE WHEN id = 4 THEN 41 ELSE amount END WHERE id IN (3, 4)"):
        with pytest.raises(psycopg.Error) as refused:
            attacker.execute(statement)
        assert refused.value.sqlstate == "PA008" and "could not tell which row became which" in str(refused.value)
    assert attacker.execute("SELECT id, region, amount FROM pt ORDER BY id").fetchall() == [(3, "eu", 10), (4, "eu", 40)]
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.pt.%'").fetchone() == (2,)  # the inserts
    attacker.execute("UPDATE pt SET amount = 11 WHERE id = 3")  # an update that pairs is captured as ever
    assert db.execute("SELECT changed FROM audit.events WHERE kind = 'public.pt.update'").fetchone() == (
        {"amount": {"old": 10, "new": 11}},)


def test_an_unlogged_table_cannot_be_tracked_nor_a_tracked_one_made_unlogged(db, connect, attacker):
    """An unlogged table loses its rows in a crash, with no event."""
    attacker.execute("CREATE UNLOGGED TABLE scratch (id int PRIMARY KEY)")
    with pytest.raises(psycopg.Error, match="unlogged or temporary"):
        connect("app_maintainer").execute("SELECT audit.enable_tracking('public.scratch')")
    attacker.execute("CREATE TABLE kept (id int PRIMARY KEY)")
    connect("app_maintainer").execute("SELECT audit.enable_tracking('public.kept')")
    with pytest.raises(psycopg.Error) as refused:
        attacker.execute("ALTER TABLE kept SET UNLOGGED")
    assert refused.value.sqlstate == "PA008"
    assert db.execute("SELECT relpersistence FROM pg_class WHERE oid = 'public.kept'::regclass").fetchone() == ("p",)


def test_column_ddl_that_changes_what_rows_read_as_is_recorded(db, connect, attacker):
    """Three renames swap two columns, a column dropped and added again, a retype without a
    rewrite (int to oid): no row changes, but what they read as does. Each command is recorded."""
    attacker.execute("CREATE TABLE ledger (id int PRIMARY KEY, amount int, fee int)")
    connect("app_maintainer").execute("SELECT audit.enable_tracking('public.ledger')")
    attacker.execute("INSERT INTO ledger VALUES (1, -100, 5)")
    commands = ["ALTER TABLE ledger RENAME COLUMN amount TO tmp", "ALTER TABLE ledger RENAME COLUMN fee TO amount",
                "ALTER TABLE ledger RENAME COLUMN tmp TO fee", "ALTER TABLE ledger ALTER COLUMN fee TYPE oid"]
    for command in commands:
        attacker.execute(command)
    recorded = db.execute("SELECT target_id, payload ->> 'command', db_role FROM audit.events"
                          " WHERE kind = 'audit.tracked_table_ddl' ORDER BY intake_id").fetchall()
    assert recorded == [("public.ledger", c, "table_owner") for c in commands]


@pytest.mark.parametrize("partitioned", [False, True])
def test_a_drop_that_takes_a_generated_column_with_it_is_recorded_once(db, connect, attacker, partitioned):
    """ALTER TABLE ... DROP COLUMN ... CASCADE also drops the generated column over it: both event
    triggers saw the command (one its ALTER, the other the cascade) and each recorded it. One
    command, one record, naming what is left."""
    attacker.execute("CREATE TABLE ledger2 (id int PRIMARY KEY, amount int, fee int,"
                     " doubled int GENERATED ALWAYS AS (amount * 2) STORED)"
                     + (" PARTITION BY RANGE (id)" if partitioned else ""))
    if partitioned:
        attacker.execute("CREATE TABLE ledger2_low PARTITION OF ledger2 FOR VALUES FROM (0) TO (100)")
    connect("app_maintainer").execute("SELECT audit.enable_tracking('public.ledger2')")
    attacker.execute("ALTER TABLE ledger2 DROP COLUMN amount CASCADE")
    recorded = db.execute("SELECT target_id, payload -> 'columns' FROM audit.events"
                          " WHERE kind = 'audit.tracked_table_ddl' ORDER BY intake_id").fetchall()
    # A partition's generated column is its own, and recorded on its own (it may go where its
    # parent's stays: tests/test_trust_attacks_28.py).
    assert [(target, [c[1] for c in cols]) for target, cols in recorded] == (
        [("public.ledger2_low", ["id", "fee"])] if partitioned else []) + [("public.ledger2", ["id", "fee"])]


def test_a_cast_reaching_a_tracked_table_through_another_tables_row_type_is_refused(db, connect, attacker):
    """The tracked table has a column of another table's row type: a column added to that table,
    of a type with an untrusted cast to json, would decide what is recorded."""
    for statement in ("CREATE TYPE mood2 AS ENUM ('x', 'y')",
                      "CREATE FUNCTION mood2_json(mood2) RETURNS json LANGUAGE sql AS $$SELECT '\"forged\"'::json$$",
                      "CREATE CAST (mood2 AS json) WITH FUNCTION mood2_json(mood2)",
                      "CREATE TABLE inner3 (street text)", "CREATE TABLE ct3 (id int PRIMARY KEY, a inner3)"):
        attacker.execute(statement)
    connect("app_maintainer").execute("SELECT audit.enable_tracking('public.ct3')")
    with pytest.raises(psycopg.Error) as refused:
        attacker.execute("ALTER TABLE inner3 ADD COLUMN m2 mood2")
    assert refused.value.sqlstate == "PA008" and "cast to json" in str(refused.value)
    assert db.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.inner3'::regclass"
                      " AND attname = 'm2'").fetchone() == (0,)


def test_a_statements_images_past_256_mb_are_captured_by_the_sandbox(db, connect, attacker):
    """A table with a column of a type that is not built in is imaged by the sandbox, which made one
    jsonb of a statement's rows: 260 rows of 1.1 MB failed the write at PostgreSQL's 256 MB for a
    jsonb. One image a row now, as for tables of built-in types: the write goes through, each value
    over 1 MiB stored as its size and SHA-256."""
    attacker.execute("CREATE TYPE public.shade AS ENUM ('pale', 'dark')")
    attacker.execute("CREATE TABLE public.scans (id int PRIMARY KEY, s public.shade, doc text)")
    enable_tracking(connect("app_maintainer"), "public.scans")
    doc = "SELECT repeat(md5(g::text), 34375)"  # 1,100,000 characters, a few kB once compressed
    attacker.execute(f"INSERT INTO public.scans SELECT g, 'pale', ({doc}) FROM generate_series(1, 260) g")
    attacker.execute("UPDATE public.scans SET s = 'dark'")
    attacker.execute("DELETE FROM public.scans")
    printed = json.dumps(hashlib.md5(b"7").hexdigest() * 34375).encode()
    marker = {"$omitted": {"bytes": len(printed), "sha256": hashlib.sha256(printed).hexdigest()}}
    rows = db.execute("SELECT kind, count(*), count(*) FILTER (WHERE target_id = '7' AND coalesce(row_after, row_before)"
                      " = jsonb_build_object('id', 7, 's', coalesce(row_after, row_before) -> 's', 'doc', %s::jsonb)"
                      " AND (kind <> 'public.scans.update' OR changed = '{\"s\": {\"old\": \"pale\", \"new\": \"dark\"}}'))"
                      " FROM audit.events WHERE kind LIKE 'public.scans.%%' GROUP BY kind ORDER BY kind",
                      (json.dumps(marker),)).fetchall()
    assert rows == [("public.scans.delete", 260, 1), ("public.scans.insert", 260, 1), ("public.scans.update", 260, 1)]


def test_nothing_permanent_may_come_to_rest_on_something_temporary_for_any_role(db, connect):
    """A role with nothing tracked (app_attacker, CREATE on public): a permanent function calling its
    session's function is refused, whatever the command's tag (a function, a domain's default, a
    table typed by a temporary type); the same made temporary, and a trigger on a session's function
    (which goes alone), are not."""
    db.execute("GRANT CREATE ON SCHEMA public TO app_attacker")
    conn = connect("app_attacker")
    conn.execute("CREATE FUNCTION pg_temp.h(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1'")
    conn.execute("CREATE TYPE pg_temp.ct AS (x int)")
    conn.execute("CREATE DOMAIN public.dd AS int")
    conn.execute("CREATE TABLE public.plain (x int)")
    for command in ("CREATE FUNCTION public.f(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT pg_temp.h($1); END",
                    "ALTER DOMAIN public.dd SET DEFAULT pg_temp.h(1)",
                    "ALTER TABLE public.plain OF pg_temp.ct"):
        with pytest.raises(psycopg.Error) as refused:
            conn.execute(command)
        assert refused.value.sqlstate == "PA008" and "which is temporary" in refused.value.diag.message_primary, command
    conn.execute("CREATE FUNCTION pg_temp.f(int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT pg_temp.h($1); END")
    conn.execute("CREATE FUNCTION pg_temp.trg() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'")
    conn.execute("CREATE TRIGGER t BEFORE INSERT ON public.plain FOR EACH ROW EXECUTE FUNCTION pg_temp.trg()")
    assert db.execute("SELECT to_regprocedure('public.f(int)'), pg_get_expr(typdefaultbin, 0)"
                      " FROM pg_type WHERE typname = 'dd'").fetchone() == (None, None)
