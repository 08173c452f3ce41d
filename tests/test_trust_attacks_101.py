"""A hundred-and-first attacker's trial: the first trial's classes, in variants no earlier trial tried.

Classes (test names carry the letter):
  X. the table owner's code run with an audit role's (or another caller's) rights: a key of the
     owner's composite type holding its domain, a key of a multirange of its range type (spied
     subtype_diff) beside an array of its domain, looked up in several spellings; stored generated
     columns, defaults and a jsonb domain's CHECK; a legacy INHERITS child made after tracking,
     carrying statistics, index, CHECK and forced-policy spies; an owner's security-barrier view with
     a spy written by the writer; TOAST options, STORAGE EXTERNAL and lz4; a partition key
     expression calling the spy; every maintainer call on a spied table (baseline, rate limits,
     re-tracking with new options, prune preview and prune, disable and enable again).
  S. capture switched off or lying: bulk trigger switches (ALL, USER, ENABLE REPLICA, ONLY) on a
     tracked partitioned table or its partition, DETACH and re-ATTACH; COPY (text and binary);
     ON CONFLICT update/nothing, a three-branch MERGE, a delete-and-insert writable CTE; RENAME,
     RENAME COLUMN, SET SCHEMA then writes; DROP COLUMN, a non-rewriting retype, an added generated
     column; the tracked table made to INHERIT an untracked parent, then DELETE and TRUNCATE through
     it; CLUSTER, VACUUM FULL, SET ACCESS METHOD; a publication and REPLICA IDENTITY; FK cascades
     and TRUNCATE ... CASCADE from an untracked parent; an owner's deferred constraint trigger that
     rewrites the row at COMMIT; row movement into a partition whose BEFORE trigger swallows it;
     TRUNCATE then COPY FREEZE in one transaction.
  F. forged history: record() with payload `moved_from` and target naming a tracked row; direct
     intake INSERT and internal functions; an idempotency key reused by a second writer, or replayed
     with one field changed; context settings longer than record() allows; system kinds in other
     case; a tenant column or a key of a nondeterministic collation (and char padding) moved between
     two spellings of one value.
  G. guards and verifiers under client encodings LATIN1, EUC_JP, SQL_ASCII and WIN1252 with German
     messages; the writer, the sealer (SQL seal) and the reader each under other odd settings
     (made-up zone abbreviations, DateStyle, IntervalStyle, extra_float_digits, bytea_output,
     standard_conforming_strings); the owner role's DML and column rewrite of the log under German,
     LATIN1 and standard_conforming_strings off; a sandboxed table's images under a writer's odd
     settings and lc_monetary German.
  H. hostile values captured in rows (not record payloads): json columns with \u0000, U+2028,
     BOM, escaped surrogates and normalization twins; numeric NaN/Infinity, 1e-1000, -0; a 2 MB
     incompressible lz4 value with 5,000-deep jsonb; numbers just short of "wild"; objects nested
     6,000 and 9,000 deep; updates that change only numeric scale or normalization; hair-width
     tampers of sealed events (a microsecond, txid + 1, changed grown, client_addr as mapped IPv6,
     2 made 2.0). Both verifiers must agree honest, and both must catch the tamper.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects and roles made here are prefixed t101_; the kit's roles are dropped afterwards.
"""

from __future__ import annotations

from contextlib import suppress

import psycopg
import pytest
from trial_helpers import (
    big_hex,
    both_verifiers,
    drop_made_under,
    n_events,
    problems_of,
    seal_all,
    table_owner_kit,
    tamper,
    try_write,
)

from pgaudit_py import enable_tracking, list_events, record, row_as_of, row_history, status
from pgaudit_py.chain import verify_chain

P = "t101"


@pytest.fixture
def kit(db, connect):
    try:
        with table_owner_kit(db, connect, P) as k:
            yield k
    finally:
        with suppress(Exception):
            db.execute("DROP SCHEMA IF EXISTS t101_other CASCADE")
        drop_made_under(db, "t101_")


MAY_RUN_AS = {"t101_owner", "app_writer", "audit_sandbox", "t101_mallory"}


def spy_sink(conns) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def keep(n: psycopg.errors.Diagnostic) -> None:
        m = n.message_primary or ""
        if m.startswith("t101spy "):
            what, who = m.removeprefix("t101spy ").split("|", 1)
            seen.append((what, who))

    for c in conns:
        c.add_notice_handler(keep)
    return seen


SPY = """
CREATE FUNCTION public.t101_spy(what text, v anyelement) RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 't101spy %|%', what, current_user;
    BEGIN
        INSERT INTO audit.event_intake (kind) VALUES ('t101.forged');
        RAISE NOTICE 't101spy %|%', 'WROTE_INTAKE', current_user;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    RETURN true;
END $$;
CREATE FUNCTION public.t101_spyj(what text, v jsonb) RETURNS jsonb IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 't101spy %|%', what, current_user;
    RETURN v;
END $$;
"""


def all_conns(kit):
    return [kit.db, kit.owner, kit.writer, kit.reader, kit.maint, kit.mallory]


def everyone_reads(kit, table: str, key: str) -> None:
    """What the privileged roles run over a table: seal, both verifiers, list, history, status."""
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    at = kit.tick()
    list_events(kit.reader, kind_prefix=table)
    list_events(kit.maint, kind_prefix=table)
    with suppress(Exception):
        row_history(kit.reader, table, key)
    with suppress(Exception):
        row_as_of(kit.reader, table, key, at)
    kit.state(table, key, at)
    status(kit.db)
    verify_chain(kit.db)


def kinds(db, prefix: str) -> list[str]:
    return [r[0].rsplit(".", 1)[1] for r in db.execute(
        "SELECT kind FROM audit.events WHERE starts_with(kind, %s) ORDER BY seq NULLS LAST, intake_id", [prefix])]


def captures(db) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE origin = 'capture'").fetchone()[0]


def forged(db) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = 't101.forged'").fetchone()[0]


def assert_spies_safe(kit, seen) -> None:
    ran_as = {who for _, who in seen}
    assert ("WROTE_INTAKE" not in {w for w, _ in seen}), f"the owner's code wrote the intake: {seen}"
    assert forged(kit.db) == 0
    assert ran_as <= MAY_RUN_AS, f"the owner's code ran as {sorted(ran_as - MAY_RUN_AS)}: {sorted(set(seen))}"


# ================================ X: the owner's code, as whom ================================

def test_x1_a_key_of_the_owners_composite_of_its_domain_is_looked_up_without_running_its_check(kit):
    """Attack: the key is c of the owner's composite type (a t101_dom, b int), t101_dom a domain over
    int whose CHECK calls the spy (and tries to write the intake). The reader looks the row up in
    several spellings, the maintainer takes a baseline and seals, both verifiers run. Safe: the
    spy never runs as the reader, maintainer, superuser or an audit role but the sandbox."""
    db, o = kit.db, kit.owner
    seen = spy_sink(all_conns(kit))
    o.execute(SPY)
    o.execute("""CREATE DOMAIN public.t101_dom AS int CHECK (public.t101_spy('domain', VALUE));
                 CREATE TYPE public.t101_comp AS (a public.t101_dom, b int);
                 CREATE TABLE public.t101_k (c public.t101_comp PRIMARY KEY, v int);
                 INSERT INTO public.t101_k VALUES (ROW(1, 2), 0);
                 GRANT ALL ON public.t101_k TO app_writer""")
    enable_tracking(kit.maint, "public.t101_k", baseline=True)
    kit.writer.execute("INSERT INTO public.t101_k VALUES (ROW(3, 4), 1); UPDATE public.t101_k SET v = v + 1")
    seen.clear()
    key = db.execute("SELECT target_id FROM audit.events WHERE kind = 'public.t101_k.insert'").fetchone()[0]
    for spelled in [key, '"(3,4)"', '["(3,4)"]', '[{"a": 3, "b": 4}]', '"( 3 , 4 )"']:
        kit.history("public.t101_k", spelled)
        kit.state("public.t101_k", spelled, kit.now())
    everyone_reads(kit, "public.t101_k", key)
    assert_spies_safe(kit, seen)
    assert kit.history("public.t101_k", key) == ["public.t101_k.insert", "public.t101_k.update"]


def test_x2_a_key_of_a_domain_array_and_a_multirange_of_the_owners_range(kit):
    """Attack: key (a t101_dom, m t101_rng multirange), a column of t101_dom[], the range's subtype_diff and the domain's
    CHECK both spies; a GiST index on the multirange makes subtype_diff used by the owner's writes.
    The reader and maintainer query history in several spellings. Safe: as x1."""
    db, o = kit.db, kit.owner
    seen = spy_sink(all_conns(kit))
    o.execute(SPY)
    o.execute("""CREATE DOMAIN public.t101_dom AS int CHECK (public.t101_spy('domain', VALUE));
                 CREATE FUNCTION public.t101_diff(a int4, b int4) RETURNS float8 IMMUTABLE LANGUAGE plpgsql AS $$
                 BEGIN RAISE NOTICE 't101spy %|%', 'subtype_diff', current_user; RETURN b - a; END $$;
                 CREATE TYPE public.t101_rng AS RANGE (subtype = int4, subtype_diff = public.t101_diff,
                                                       multirange_type_name = public.t101_mrng);
                 CREATE TABLE public.t101_m (a public.t101_dom, m public.t101_mrng, arr public.t101_dom[], v int,
                                             PRIMARY KEY (a, m));
                 CREATE INDEX t101_m_gist ON public.t101_m USING gist (m);
                 GRANT ALL ON public.t101_m TO app_writer""")
    enable_tracking(kit.maint, "public.t101_m", baseline=True)
    kit.writer.execute("INSERT INTO public.t101_m VALUES (1, '{[1,3), [5,9)}', '{1,2}', 1); UPDATE public.t101_m SET v = 2")
    seen.clear()
    key = db.execute("SELECT target_id FROM audit.events WHERE kind = 'public.t101_m.insert'").fetchone()[0]
    for spelled in [key, '[1, "{[1,3),[5,9)}"]', '["1", "{[1,2],[5,8]}"]', '[1.0, "{[1,3), [5,9)}"]']:
        kit.history("public.t101_m", spelled)
        kit.state("public.t101_m", spelled, kit.now())
    everyone_reads(kit, "public.t101_m", key)
    assert_spies_safe(kit, seen)
    assert kit.history("public.t101_m", key) == ["public.t101_m.insert", "public.t101_m.update"]


def test_x3_generated_columns_defaults_and_jsonb_domains_never_run_as_a_privileged_role(kit):
    """Attack: the tracked table has a stored generated column and a DEFAULT calling the owner's
    jsonb function, and a column of a domain over jsonb whose CHECK calls the spy. Baseline,
    writes, sealing, verifiers, list_events and status. Safe: as x1."""
    o = kit.owner
    seen = spy_sink(all_conns(kit))
    o.execute(SPY)
    o.execute("""CREATE DOMAIN public.t101_jdom AS jsonb CHECK (public.t101_spy('jdomain', VALUE));
                 CREATE TABLE public.t101_g (id int PRIMARY KEY, v int,
                     j public.t101_jdom DEFAULT public.t101_spyj('default', '{"d": 1}'),
                     g boolean GENERATED ALWAYS AS (public.t101_spy('generated', v)) STORED);
                 INSERT INTO public.t101_g (id, v) VALUES (1, 1);
                 GRANT ALL ON public.t101_g TO app_writer""")
    enable_tracking(kit.maint, "public.t101_g", baseline=True)
    kit.writer.execute("INSERT INTO public.t101_g (id, v) VALUES (2, 2); UPDATE public.t101_g SET v = v + 1")
    seen.clear()
    everyone_reads(kit, "public.t101_g", "1")
    assert_spies_safe(kit, seen)
    assert kinds(kit.db, "public.t101_g.") == ["baseline", "insert", "update", "update"]


def test_x4_an_inherits_child_made_after_tracking_with_stats_index_and_policy_spies(kit):
    """Attack: tracking refuses a table with legacy INHERITS children; the owner makes one after
    tracking (CREATE TABLE ... INHERITS, or ALTER TABLE ... INHERIT of an existing table) carrying
    expression statistics, an expression index, a CHECK and a forced policy calling the spy; ANALYZE.
    Writes through parent and child; seal, verifiers, list, history, status. Safe: the child is
    refused, or its rows' changes are captured, and the spy never runs privileged."""
    db, o = kit.db, kit.owner
    seen = spy_sink(all_conns(kit))
    o.execute(SPY)
    o.execute("""CREATE TABLE public.t101_par (id int PRIMARY KEY, v int);
                 INSERT INTO public.t101_par VALUES (1, 1);
                 CREATE TABLE public.t101_kid2 (id int PRIMARY KEY, v int);
                 GRANT ALL ON public.t101_par, public.t101_kid2 TO app_writer""")
    enable_tracking(kit.maint, "public.t101_par", baseline=True)
    errs = [try_write(o, "CREATE TABLE public.t101_kid (PRIMARY KEY (id)) INHERITS (public.t101_par)"),
            try_write(o, "ALTER TABLE public.t101_kid2 INHERIT public.t101_par")]
    kids = [r[0] for r in db.execute("SELECT inhrelid::regclass::text FROM pg_inherits"
                                     " WHERE inhparent = 'public.t101_par'::regclass")]
    for kid in kids:
        o.execute(f"""GRANT ALL ON {kid} TO app_writer;
                     CREATE INDEX ON {kid} ((public.t101_spy('kid_index', v)));
                     ALTER TABLE {kid} ADD CHECK (public.t101_spy('kid_check', v));
                     CREATE STATISTICS ON (public.t101_spy('kid_stats', v)), (v + 1) FROM {kid};
                     ANALYZE {kid};
                     ALTER TABLE {kid} ENABLE ROW LEVEL SECURITY; ALTER TABLE {kid} FORCE ROW LEVEL SECURITY;
                     CREATE POLICY t101_pol ON {kid} USING (public.t101_spy('kid_policy', v))""")
    w = kit.writer
    before = captures(db)
    for kid in kids:
        w.execute(f"INSERT INTO {kid} VALUES (2, 2)")  # noqa: S608
    w.execute("UPDATE public.t101_par SET v = v + 10")
    w.execute("DELETE FROM public.t101_par WHERE id = 2")
    seen.clear()
    everyone_reads(kit, "public.t101_par", "1")
    assert_spies_safe(kit, seen)
    uncaptured = (len(kids) + 1 + len(kids) + len(kids)) - (captures(db) - before)
    assert uncaptured == 0, f"children {kids} (refusals {errs}): {uncaptured} changes of their rows left no event"


def test_x5_an_owners_view_with_a_spy_written_by_the_writer_is_captured_and_spy_safe(kit):
    """Attack: the owner's updatable view over the tracked table with a spy in its WHERE (security
    barrier, CHECK OPTION), written by the writer. Safe: every write through the view captured, and
    the spy runs as nobody privileged while the maintainer seals and everyone reads."""
    db, o = kit.db, kit.owner
    seen = spy_sink(all_conns(kit))
    o.execute(SPY)
    o.execute("""CREATE TABLE public.t101_vt (id int PRIMARY KEY, v int);
                 INSERT INTO public.t101_vt VALUES (1, 1), (2, 2);
                 CREATE VIEW public.t101_vv WITH (security_barrier) AS
                   SELECT * FROM public.t101_vt WHERE public.t101_spy('view', v) WITH CASCADED CHECK OPTION;
                 GRANT ALL ON public.t101_vt, public.t101_vv TO app_writer""")
    enable_tracking(kit.maint, "public.t101_vt")
    w = kit.writer
    w.execute("UPDATE public.t101_vv SET v = 5 WHERE id = 1")
    w.execute("DELETE FROM public.t101_vv WHERE id = 2")
    w.execute("INSERT INTO public.t101_vv VALUES (3, 3)")
    assert kinds(db, "public.t101_vt.") == ["update", "delete", "insert"]
    seen.clear()
    everyone_reads(kit, "public.t101_vt", "1")
    assert_spies_safe(kit, seen)


def test_x6_toast_options_and_lz4_on_a_tracked_table_change_nothing_recorded(kit):
    """Attack: the owner sets toast_tuple_target, autovacuum options, STORAGE EXTERNAL and lz4
    compression on the tracked table's columns, then writes 300 kB values. Safe: either refused,
    or every write captured with the value whole (its length), sealed, both verifiers agree, and
    a tamper of one character in the sealed image is caught by both."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_toast (id int PRIMARY KEY, note text);
                 GRANT ALL ON public.t101_toast TO app_writer""")
    enable_tracking(kit.maint, "public.t101_toast")
    for ddl in ["ALTER TABLE public.t101_toast SET (toast_tuple_target = 128, autovacuum_enabled = false,"
                " toast.autovacuum_enabled = false)",
                "ALTER TABLE public.t101_toast ALTER COLUMN note SET STORAGE EXTERNAL",
                "ALTER TABLE public.t101_toast ALTER COLUMN note SET COMPRESSION lz4"]:
        try_write(o, ddl)
    big = big_hex(150_000)
    kit.writer.execute("INSERT INTO public.t101_toast VALUES (1, %s)", [big])
    kit.writer.execute("UPDATE public.t101_toast SET note = note || 'x'")
    lens = db.execute("SELECT length(row_after->>'note') FROM audit.events WHERE starts_with(kind, 'public.t101_toast.')"
                      " ORDER BY intake_id").fetchall()
    assert lens == [(300_000,), (300_001,)]
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t101_toast.insert'").fetchone()[0]
    tamper(db, "UPDATE audit.event_log SET row_after = jsonb_set(row_after, '{note}',"
               f" to_jsonb(overlay(row_after->>'note' placing 'Z' from 150000 for 1))) WHERE seq = {seq}")
    assert both_verifiers(db) == (False, False)


# ============================= S: capture switched off or lying =============================

@pytest.mark.parametrize("ddl", [
    "ALTER TABLE public.t101_c1 DISABLE TRIGGER ALL",
    "ALTER TABLE public.t101_c1 DISABLE TRIGGER USER",
    "ALTER TABLE public.t101_c1 ENABLE REPLICA TRIGGER ALL",
    "ALTER TABLE ONLY public.t101_cp DISABLE TRIGGER ALL",
    "ALTER TABLE public.t101_cp ENABLE REPLICA TRIGGER USER",
    "ALTER TABLE public.t101_cp DETACH PARTITION public.t101_c1;"
    " ALTER TABLE public.t101_cp ATTACH PARTITION public.t101_c1 FOR VALUES FROM (0) TO (100)",
])
def test_s1_bulk_trigger_switches_on_a_tracked_parent_or_its_partition_cannot_stop_capture(kit, ddl):
    """Attack: the tracked table is partitioned; the owner switches triggers in bulk (ALL, USER,
    ENABLE REPLICA, ONLY on the parent) on the parent or a partition, or detaches and re-attaches
    the partition. Safe: refused, or every later write on the partition or parent is captured."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_cp (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
                 CREATE TABLE public.t101_c1 PARTITION OF public.t101_cp FOR VALUES FROM (0) TO (100);
                 INSERT INTO public.t101_cp VALUES (1, 1);
                 GRANT ALL ON public.t101_cp, public.t101_c1 TO app_writer""")
    enable_tracking(kit.maint, "public.t101_cp")
    refused = try_write(o, ddl)
    before = captures(db)
    w = kit.writer
    w.execute("UPDATE public.t101_c1 SET v = 2")
    w.execute("INSERT INTO public.t101_c1 VALUES (2, 2)")
    w.execute("UPDATE public.t101_cp SET v = 3")
    w.execute("DELETE FROM public.t101_cp WHERE id = 2")
    got = captures(db) - before
    assert got == 5, f"{ddl} (refused: {refused}) let {5 - got} of 5 changes through uncaptured"
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_s2_copy_into_a_tracked_table_is_captured(kit):
    """Attack: the writer loads rows with COPY FROM STDIN (text and binary). Safe: one insert event per row."""
    db = kit.db
    kit.owner.execute("CREATE TABLE public.t101_cp2 (id int PRIMARY KEY, v int); GRANT ALL ON public.t101_cp2 TO app_writer")
    enable_tracking(kit.maint, "public.t101_cp2")
    with kit.writer.cursor() as cur:
        with cur.copy("COPY public.t101_cp2 (id, v) FROM STDIN") as cp:
            for i in range(1, 6):
                cp.write_row((i, i))
        with cur.copy("COPY public.t101_cp2 (id, v) FROM STDIN WITH (FORMAT binary)") as cp:
            cp.set_types(["int4", "int4"])
            for i in range(6, 9):
                cp.write_row((i, i))
    assert kinds(db, "public.t101_cp2.") == ["insert"] * 8
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_s3_upserts_merge_and_writable_ctes_are_captured_as_they_happened(kit):
    """Attack: ON CONFLICT DO UPDATE (one insert, one update), ON CONFLICT DO NOTHING, one MERGE with
    UPDATE, DELETE and INSERT branches, a writable CTE that deletes key 1 and inserts it again.
    Safe: each change has its event with the image the table holds (or MERGE is refused)."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_up (id int PRIMARY KEY, v int);
                 INSERT INTO public.t101_up VALUES (1, 1), (2, 2), (3, 3);
                 GRANT ALL ON public.t101_up TO app_writer""")
    enable_tracking(kit.maint, "public.t101_up")
    w = kit.writer
    w.execute("INSERT INTO public.t101_up VALUES (1, 10), (4, 4) ON CONFLICT (id) DO UPDATE SET v = EXCLUDED.v")
    assert kinds(db, "public.t101_up.") == ["update", "insert"] or sorted(kinds(db, "public.t101_up.")) == ["insert", "update"]
    w.execute("INSERT INTO public.t101_up VALUES (1, 99), (5, 5) ON CONFLICT DO NOTHING")
    assert sorted(kinds(db, "public.t101_up.")) == ["insert", "insert", "update"]
    n = len(kinds(db, "public.t101_up."))
    err = try_write(w, """MERGE INTO public.t101_up t USING (VALUES (2, 20), (3, -1), (6, 6)) s(id, v) ON t.id = s.id
                          WHEN MATCHED AND s.v < 0 THEN DELETE WHEN MATCHED THEN UPDATE SET v = s.v
                          WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)""")
    if err is None:
        assert sorted(kinds(db, "public.t101_up.")[n:]) == ["delete", "insert", "update"]
    n = len(kinds(db, "public.t101_up."))
    w.execute("WITH d AS (DELETE FROM public.t101_up WHERE id = 1 RETURNING id)"
              " INSERT INTO public.t101_up SELECT 100, 7 FROM d")
    assert sorted(kinds(db, "public.t101_up.")[n:]) == ["delete", "insert"]
    table = dict(db.execute("SELECT id, v FROM public.t101_up").fetchall())
    for k, v in table.items():
        img = db.execute("SELECT row_after FROM audit.events WHERE starts_with(kind, 'public.t101_up.') AND target_id = %s"
                         " ORDER BY intake_id DESC LIMIT 1", [str(k)]).fetchone()
        if img is not None and img[0] is not None:
            assert img[0]["v"] == v, (k, img, v)
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_s4_rename_and_set_schema_then_writes_are_captured(kit):
    """Attack: the owner renames the tracked table, renames a column, moves it to another schema
    it owns; the writer then writes. Safe: each write captured (some capture event per row), and
    status does not call the table untracked while it is."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_rn (id int PRIMARY KEY, v int);
                 INSERT INTO public.t101_rn VALUES (1, 1);
                 CREATE SCHEMA t101_other; GRANT USAGE ON SCHEMA t101_other TO app_writer;
                 GRANT ALL ON public.t101_rn TO app_writer""")
    enable_tracking(kit.maint, "public.t101_rn")
    lost = {}
    for ddl, table in [("ALTER TABLE public.t101_rn RENAME TO t101_rn2", "public.t101_rn2"),
                       ("ALTER TABLE public.t101_rn2 RENAME COLUMN v TO w", "public.t101_rn2"),
                       ("ALTER TABLE public.t101_rn2 SET SCHEMA t101_other", "t101_other.t101_rn2")]:
        if try_write(o, ddl) is not None:
            break
        col = "w" if "w" in [r[0] for r in db.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0", [table])] else "v"
        before = captures(db)
        kit.writer.execute(f"UPDATE {table} SET {col} = {col} + 1")
        if captures(db) - before != 1:
            lost[ddl] = captures(db) - before
    assert lost == {}
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_s5_drop_column_retype_and_added_generated_column_keep_capturing(kit):
    """Attack: DROP COLUMN, a type change that rewrites nothing (varchar(10) to text), then an
    added stored generated column (a rewrite) on the tracked table; writes after each. Safe: each
    write after an accepted DDL is captured, the image matching the table's row."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_dc (id int PRIMARY KEY, v int, gone text, s varchar(10));
                 INSERT INTO public.t101_dc VALUES (1, 1, 'x', 'a');
                 GRANT ALL ON public.t101_dc TO app_writer""")
    enable_tracking(kit.maint, "public.t101_dc")
    for ddl in ["ALTER TABLE public.t101_dc DROP COLUMN gone",
                "ALTER TABLE public.t101_dc ALTER COLUMN s TYPE text",
                "ALTER TABLE public.t101_dc ADD COLUMN g int GENERATED ALWAYS AS (v * 2) STORED"]:
        if try_write(o, ddl) is not None:
            continue
        before = captures(db)
        kit.writer.execute("UPDATE public.t101_dc SET v = v + 1, s = s || 'b'")
        assert captures(db) - before == 1, ddl
        row = db.execute("SELECT to_jsonb(t) FROM public.t101_dc t").fetchone()[0]
        img = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.t101_dc.update'"
                         " ORDER BY intake_id DESC LIMIT 1").fetchone()[0]
        assert img == row, (ddl, img, row)
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_s6_truncate_through_an_inheritance_parent_made_over_the_tracked_table(kit):
    """Attack: the owner makes an untracked legacy parent and has the tracked table INHERIT it
    (the reverse direction of a child), then the writer truncates the parent (emptying the
    tracked table) or deletes through it. Safe: refused, or each emptying leaves an event."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_tp (id int, v int);
                 CREATE TABLE public.t101_tt (id int PRIMARY KEY, v int);
                 INSERT INTO public.t101_tt VALUES (1, 1), (2, 2);
                 GRANT ALL ON public.t101_tp, public.t101_tt TO app_writer""")
    enable_tracking(kit.maint, "public.t101_tt")
    if try_write(o, "ALTER TABLE public.t101_tt INHERIT public.t101_tp") is not None:
        assert db.execute("SELECT count(*) FROM pg_inherits WHERE inhrelid = 'public.t101_tt'::regclass").fetchone()[0] == 0
        return
    w = kit.writer
    n = len(kinds(db, "public.t101_tt."))
    err = try_write(w, "DELETE FROM public.t101_tp WHERE id = 1")
    if err is None:
        assert kinds(db, "public.t101_tt.")[n:] == ["delete"]
    n = len(kinds(db, "public.t101_tt."))
    err = try_write(w, "TRUNCATE public.t101_tp")
    if err is None:
        assert kinds(db, "public.t101_tt.")[n:] == ["truncate"]
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_s7_cluster_and_vacuum_full_leave_no_event_and_change_no_history(kit):
    """Attack: the owner runs CLUSTER and VACUUM FULL (a rewrite with no row change), and
    ALTER TABLE SET ACCESS METHOD heap. Safe: no spurious captured event, history unchanged,
    writes after are still captured, verifiers agree."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_cl (id int PRIMARY KEY, v int);
                 INSERT INTO public.t101_cl SELECT g, g FROM generate_series(1, 50) g;
                 GRANT ALL ON public.t101_cl TO app_writer""")
    enable_tracking(kit.maint, "public.t101_cl", baseline=True)
    n = captures(db)
    for ddl in ["CLUSTER public.t101_cl USING t101_cl_pkey", "VACUUM FULL public.t101_cl",
                "ALTER TABLE public.t101_cl SET ACCESS METHOD heap"]:
        try_write(o, ddl)
    assert captures(db) == n
    kit.writer.execute("UPDATE public.t101_cl SET v = 0 WHERE id = 7")
    assert captures(db) == n + 1
    assert kit.history("public.t101_cl", "7") == ["public.t101_cl.baseline", "public.t101_cl.update"]
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_s8_an_owners_publication_and_replica_identity_change_nothing(kit):
    """Attack: the owner publishes the tracked table (CREATE PUBLICATION needs CREATE on the
    database, which it has) and sets REPLICA IDENTITY FULL and NOTHING; writes after are captured."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_pub (id int PRIMARY KEY, v int);
                 INSERT INTO public.t101_pub VALUES (1, 1);
                 GRANT ALL ON public.t101_pub TO app_writer""")
    enable_tracking(kit.maint, "public.t101_pub")
    try:
        for ddl in ["CREATE PUBLICATION t101_p FOR TABLE public.t101_pub",
                    "ALTER TABLE public.t101_pub REPLICA IDENTITY FULL"]:
            try_write(o, ddl)
        kit.writer.execute("UPDATE public.t101_pub SET v = 2")
        kit.writer.execute("INSERT INTO public.t101_pub VALUES (2, 2)")
        assert kinds(db, "public.t101_pub.") == ["update", "insert"]
    finally:
        with suppress(Exception):
            db.execute("DROP PUBLICATION IF EXISTS t101_p")


# =================================== F: forged history ===================================

def test_f1_a_recorded_moved_from_never_enters_a_tracked_rows_history(kit):
    """Attack: the writer records an event whose payload names `moved_from` a tracked row's key
    and whose target is the tracked table's row, under a kind outside the table's prefix. Safe:
    the row's history and state read only captured events."""
    db = kit.db
    kit.owner.execute("""CREATE TABLE public.t101_mv (id int PRIMARY KEY, v int);
                         INSERT INTO public.t101_mv VALUES (1, 1);
                         GRANT ALL ON public.t101_mv TO app_writer""")
    enable_tracking(kit.maint, "public.t101_mv", baseline=True)
    for kind in ["public.t101_mv_x.update", "public.t101_mvupdate", "t101.moved"]:
        try_write(kit.writer, "SELECT audit.record(kind => %s, target_type => 'public.t101_mv', target_id => '1',"
                  " payload => '{\"moved_from\": \"1\", \"row_after\": null}')", [kind])
        try_write(kit.writer, "SELECT audit.record(kind => %s, target_type => 'public.t101_mv', target_id => '2',"
                  " payload => '{\"moved_from\": \"1\"}')", [kind])
    at = kit.tick()
    assert kit.history("public.t101_mv", "1") == ["public.t101_mv.baseline"]
    assert kit.state("public.t101_mv", "1", at) == ("existed", {"id": 1, "v": 1})
    assert kit.state("public.t101_mv", "2", at)[0] in ("absent", "unknown")
    assert seal_all(kit.maint) is None
    assert kit.history("public.t101_mv", "1") == ["public.t101_mv.baseline"]
    assert both_verifiers(db) == (True, True)


def test_f2_the_writer_cannot_write_the_intake_or_call_internal_functions(kit):
    """Attack: the writer (and the table owner) INSERT into the intake, and call every function of
    the audit and audit_capture schemas they may EXECUTE but record, rate_limit and functions
    meant for them. Safe: nothing lands in the intake but through record()."""
    db = kit.db
    for conn in (kit.writer, kit.owner, kit.mallory):
        assert try_write(conn, "INSERT INTO audit.event_intake (kind, origin) VALUES ('t101.forged', 'capture')") is not None
    allowed = {"record", "rate_limit"}
    callable_ = [r for r in db.execute(
        """SELECT n.nspname, p.proname, p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname IN ('audit', 'audit_capture') AND p.prokind = 'f'
             AND has_function_privilege('app_writer', p.oid, 'EXECUTE')
             AND has_schema_privilege('app_writer', n.oid, 'USAGE')
             AND p.prorettype <> 'trigger'::regtype""").fetchall() if r[1] not in allowed]
    assert [c for c in callable_ if c[1].startswith("_") and c[0] == "audit_capture"] == [], callable_
    assert forged(db) == 0


def test_f3_an_idempotency_key_reused_by_another_writer_with_the_same_content_is_refused(kit, db, connect):
    """Attack: writer 1 records with key K; writer 2 (another login in audit_writer) records the very
    same content with K, hoping to be handed writer 1's event as its own (or to make it vanish).
    Safe: PA004 for writer 2; one event with K, db_role writer 1's."""
    db.execute("CREATE ROLE t101_w2 LOGIN IN ROLE audit_writer")
    w2 = connect("t101_w2")
    args = dict(target_id="o-1", payload={"a": 1}, idempotency_key="t101-K", actor_id="alice")
    record(kit.writer, "t101.refund", **args)
    err = None
    try:
        ev = record(w2, "t101.refund", **args)
    except Exception as e:  # noqa: BLE001
        err = e
        ev = None
    assert err is not None, f"a second writer's reuse of the key was accepted: {ev}"
    sqlstate = getattr(err, "sqlstate", None) or getattr(getattr(err, "__cause__", None), "sqlstate", None)
    assert sqlstate == "PA004", repr(err)
    rows = db.execute("SELECT db_role FROM audit.events WHERE kind = 't101.refund'").fetchall()
    assert rows == [("app_writer",)]


def test_f4_context_settings_longer_than_record_allows_are_not_cut_into_another_actor(kit):
    """Attack: the writer sets pgaudit_py.actor_id and tenant_id to 300-character strings whose first
    256 characters are another actor's name padded, then writes the tracked table. Safe: refused,
    or the stored actor is exactly what was said (never a truncation that names someone else)."""
    db = kit.db
    kit.owner.execute("""CREATE TABLE public.t101_ctx (id int PRIMARY KEY, v int);
                         INSERT INTO public.t101_ctx VALUES (1, 1);
                         GRANT ALL ON public.t101_ctx TO app_writer""")
    enable_tracking(kit.maint, "public.t101_ctx")
    long_actor = "admin" + " " * 251 + "-not-really"
    w = kit.writer
    w.execute("BEGIN")
    w.execute("SELECT set_config('pgaudit_py.actor_id', %s, true), set_config('pgaudit_py.tenant_id', %s, true)",
              [long_actor, long_actor])
    err = try_write(w, "UPDATE public.t101_ctx SET v = 2")
    w.execute("ROLLBACK" if err else "COMMIT")
    got = db.execute("SELECT actor_id, tenant_id FROM audit.events WHERE kind = 'public.t101_ctx.update'").fetchall()
    if err is None:
        assert got and got[0][0] in (long_actor, None) and got[0][1] in (long_actor, None), got
        assert not any(a is not None and a.rstrip() == "admin" for a, _ in got), got


def test_f5_record_refuses_system_kinds_in_any_case_or_spacing(kit):
    """Attack: the writer records kinds spelled like the package's own: 'AUDIT.pruned', 'Audit.tracking_enabled',
    'secret.x' via case, and a tracked table's kind in upper case. Safe: refused, or stored as
    origin 'record' and never listed in the table's row history."""
    db = kit.db
    kit.owner.execute("""CREATE TABLE public.t101_kc (id int PRIMARY KEY, v int);
                         INSERT INTO public.t101_kc VALUES (1, 1);
                         GRANT ALL ON public.t101_kc TO app_writer""")
    enable_tracking(kit.maint, "public.t101_kc", baseline=True)
    for kind in ["AUDIT.pruned", "Audit.tracking_enabled", "SECRET.read", "PUBLIC.T101_KC.delete", "public.t101_kc.DELETE"]:
        try_write(kit.writer, "SELECT audit.record(kind => %s, target_id => '1')", [kind])
    assert db.execute("SELECT count(*) FROM audit.events WHERE origin <> 'record' AND db_role = 'app_writer'"
                      " AND NOT starts_with(kind, 'public.t101_kc.')").fetchone()[0] == 0
    assert kit.history("public.t101_kc", "1") == ["public.t101_kc.baseline"]
    assert kit.state("public.t101_kc", "1", kit.tick())[0] == "existed"


# ============================== G: guards under other locales ==============================

@pytest.mark.parametrize("enc", ["LATIN1", "EUC_JP", "SQL_ASCII", "WIN1252"])
def test_g1_guards_and_verifiers_under_client_encodings(kit, connect, enc):
    """Attack: sessions under another client encoding (and German messages): the owner role's DML
    on the log, a reserved kind recorded, and both verifiers over events holding é, 日本 and an
    emoji. Safe: the same SQLSTATEs as under UTF8, and both verifiers say ok (the Python one may
    not mistake an encoding error for tamper)."""
    db = kit.db
    record(kit.writer, "t101.enc", payload={"t": "é 日本 😀 \u2028"})
    assert seal_all(kit.maint) is None
    c = connect(None)
    c.execute(f"SET client_encoding = '{enc}'; SET lc_messages = 'de_DE.UTF-8'")
    assert try_write(c, "SET ROLE audit_owner; UPDATE audit.event_log SET kind = kind") is not None
    c.execute("RESET ROLE")
    r = connect("app_reader")
    r.execute(f"SET client_encoding = '{enc}'")
    ok_sql = r.execute("SELECT ok FROM audit.verify()").fetchone()[0]
    v = verify_chain(r)
    assert (ok_sql, v.ok) == (True, True), (enc, v)
    shown = r.execute("SHOW client_encoding").fetchone()[0]
    shown = shown.decode() if isinstance(shown, bytes) else shown
    assert shown.upper().replace("_", "") == enc.replace("_", ""), "the verifier left the caller's client_encoding changed"
    w = connect("app_writer")
    w.execute(f"SET client_encoding = '{enc}'")
    st = None
    try:
        w.execute("SELECT audit.record(kind => 'audit.pruned')")
    except psycopg.Error as e:
        st = e.sqlstate
    assert st == "PA001"
    assert both_verifiers(db) == (True, True)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't101.enc'").fetchone()[0]
    tamper(db, f"UPDATE audit.event_log SET payload = '{{\"t\": \"e 日本 😀 \u2028\"}}' WHERE seq = {seq}")
    assert (r.execute("SELECT ok FROM audit.verify()").fetchone()[0], verify_chain(r).ok) == (False, False)


ODD = {
    "writer": {"DateStyle": "'SQL, DMY'", "IntervalStyle": "sql_standard", "TimeZone": "'<+0545>-05:45'",
               "extra_float_digits": "-15", "bytea_output": "escape"},
    "sealer": {"DateStyle": "'German, YMD'", "IntervalStyle": "postgres_verbose", "TimeZone": "'Pacific/Chatham'",
               "extra_float_digits": "3", "bytea_output": "hex", "standard_conforming_strings": "off"},
    "reader": {"DateStyle": "'Postgres, MDY'", "IntervalStyle": "iso_8601", "TimeZone": "'<-1130>+11:30'",
               "extra_float_digits": "0", "bytea_output": "escape"},
}


def sql_seal(conn) -> None:
    for _ in range(50):
        row = conn.execute("SELECT * FROM audit.seal()").fetchone()
        if not row or not row[0]:
            return


def py_verify(kit) -> bool:
    """The Python verifier under the reader's odd session; where it refuses the session (documented,
    UnsupportedSession), on a plain one."""
    try:
        return verify_chain(kit.reader).ok
    except Exception as e:  # noqa: BLE001
        assert type(e).__name__ == "UnsupportedSession", repr(e)
        return verify_chain(kit.conn("app_reader")).ok


def test_g2_writer_sealer_and_verifier_each_under_other_odd_settings(kit):
    """Attack: the writer, the sealer and the verifying reader each run under a different set of odd
    settings (made-up zone abbreviations, odd interval and date styles, few float digits, escaped
    bytea, standard_conforming_strings off). Safe: captured images do not depend on the writer's
    settings (same as a plain session's), both verifiers agree honest, and catch a tamper."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_odd (id int PRIMARY KEY, ts timestamptz, iv interval, f float8,
                                                 b bytea, d date, r tstzrange);
                 GRANT ALL ON public.t101_odd TO app_writer""")
    enable_tracking(kit.maint, "public.t101_odd")
    for who, conn in (("writer", kit.writer), ("sealer", kit.maint), ("reader", kit.reader)):
        for k, v in ODD[who].items():
            conn.execute(f"SET {k} = {v}")
    vals = ("'2026-03-04 05:06:07.123456+00'::timestamptz, '1 year 2 mons 3 days 04:05:06.789'::interval,"
            " 1349.0123456789::float8, decode('00ff5c27', 'hex'), '2026-03-04'::date,"
            " '[2026-03-04 00:00+00, 2026-03-05 00:00+00)'::tstzrange")
    plain = kit.conn("app_writer")
    kit.writer.execute(f"INSERT INTO public.t101_odd VALUES (1, {vals})")
    plain.execute(f"INSERT INTO public.t101_odd VALUES (2, {vals})")
    imgs = [r[0] for r in db.execute("SELECT row_after - 'id' FROM audit.events WHERE kind = 'public.t101_odd.insert'"
                                     " ORDER BY intake_id")]
    assert len(imgs) == 2 and imgs[0] == imgs[1], imgs
    kit.writer.execute("UPDATE public.t101_odd SET f = 1349.0123456790 WHERE id = 1")
    assert n_events(db, "public.t101_odd.update") == 1
    sql_seal(kit.maint)  # the SQL function under the sealer's odd settings (Python's seal refuses such a session)
    assert (kit.reader.execute("SELECT ok FROM audit.verify()").fetchone()[0], py_verify(kit)) == (True, True)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t101_odd.update'").fetchone()[0]
    tamper(db, "UPDATE audit.event_log SET row_after = jsonb_set(row_after, '{f}', '1349.0123456791')"
               f" WHERE seq = {seq}")
    assert (kit.reader.execute("SELECT ok FROM audit.verify()").fetchone()[0], py_verify(kit)) == (False, False)


def test_g3_guards_refuse_with_the_same_sqlstate_under_german_and_standard_strings_off(kit, connect):
    """Attack: the owner role, under lc_messages German, standard_conforming_strings off and
    client_encoding LATIN1, tries UPDATE, DELETE, TRUNCATE of the log and the intake and a column
    rewrite of the log. Safe: each refused, and the log unchanged."""
    db = kit.db
    record(kit.writer, "t101.g3")
    assert seal_all(kit.maint) is None
    c = connect(None)
    c.execute("SET lc_messages = 'de_DE.UTF-8'; SET standard_conforming_strings = off; SET client_encoding = 'LATIN1'")
    count = db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    for stmt in ["UPDATE audit.event_log SET kind = 'x'", "DELETE FROM audit.event_log", "TRUNCATE audit.event_log",
                 "DELETE FROM audit.event_intake", "ALTER TABLE audit.event_log ALTER COLUMN kind TYPE varchar(300)",
                 "UPDATE audit.seal_state SET last_seq = 0"]:
        assert try_write(c, f"SET ROLE audit_owner; {stmt}") is not None, stmt
        c.execute("RESET ROLE")
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0] == count
    assert both_verifiers(db) == (True, True)


# ================================ H: hostile values, both verifiers ================================

def test_h1_json_columns_with_nul_escapes_bom_line_separators_and_normalization_twins(kit):
    """Attack: a tracked table with a json (not jsonb) column and a text column holding \\u0000
    escapes, U+2028/U+2029, a BOM, escaped surrogate pairs and keys that differ only by normalization.
    Safe: captured (or set aside visibly), both verifiers agree; a tamper that swaps a key for its
    normalization twin is caught by both."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_js (id int PRIMARY KEY, j json, t text);
                 GRANT ALL ON public.t101_js TO app_writer""")
    enable_tracking(kit.maint, "public.t101_js")
    rows = [
        ('{"a": "x\\u0000y", "b": "\\ud83d\\ude00"}', "\ufeffbom"),
        ('{"k\u00e9": 1, "ke\u0301": 2}', "line\u2028sep\u2029par"),
        ('{"a": 1, "a": 2}', "e\u0301\u0308\u0327"),
        ('["\\ud800"]', "\U0001f600"),
    ]
    for i, (j, t) in enumerate(rows, 1):
        kit.writer.execute("INSERT INTO public.t101_js VALUES (%s, %s::json, %s)", [i, j, t])
    assert n_events(db, "public.t101_js.insert") + db.execute(
        "SELECT count(*) FROM audit.quarantine WHERE kind = 'public.t101_js.insert'").fetchone()[0] == 4
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t101_js.insert' AND target_id = '3'").fetchone()
    assert seq is not None
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t101_js.insert' AND row_after->>'t' LIKE 'e%'").fetchone()[0]
    tamper(db, f"UPDATE audit.event_log SET row_after = jsonb_set(row_after, '{{t}}', to_jsonb(normalize(row_after->>'t', NFC)))"
               f" WHERE seq = {seq}")
    assert both_verifiers(db) == (False, False)


def test_h2_numeric_nan_infinity_tiny_and_negative_zero_in_captured_rows(kit):
    """Attack: a tracked table of numeric, float8 and jsonb columns written with NaN, Infinity,
    -Infinity, 1e-1000, 1.0 vs 1.00, -0.0 and '1e-1000' inside jsonb. Safe: all captured, the
    updates 1.0 -> 1.00 and 0 -> -0 either both recorded or judged alike consistently, both verifiers
    agree honest; a tamper turning 1.0 into 1 in a sealed image is caught by both."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_num (id int PRIMARY KEY, n numeric, f float8, j jsonb);
                 GRANT ALL ON public.t101_num TO app_writer""")
    enable_tracking(kit.maint, "public.t101_num")
    w = kit.writer
    w.execute("""INSERT INTO public.t101_num VALUES
        (1, 'NaN', 'NaN', '{"x": 1e-1000}'), (2, 'Infinity', 'Infinity', '[1.0, 1.00, -0, -0.0]'),
        (3, '-Infinity', '-Infinity', '{"y": 1E+400}'), (4, 1e-1000, '-0', '{"z": 0.0}'),
        (5, 1.0, 1.0, '1.0')""")
    w.execute("UPDATE public.t101_num SET n = 1.00, j = '1.00' WHERE id = 5")
    assert n_events(db, "public.t101_num.insert") == 5
    img = db.execute("SELECT row_after->'n', row_after->'f' FROM audit.events WHERE kind = 'public.t101_num.insert'"
                     " AND target_id = '4'").fetchone()
    assert img[0] is not None and str(img[0]) != "0", f"1e-1000 stored as {img}"
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t101_num.insert' AND target_id = '5'").fetchone()[0]
    tamper(db, f"UPDATE audit.event_log SET row_after = jsonb_set(row_after, '{{j}}', '1') WHERE seq = {seq}")
    assert both_verifiers(db) == (False, False)


def test_h3_deep_jsonb_and_a_huge_incompressible_value_in_one_captured_row(kit):
    """Attack: a captured row holding jsonb nested 5,000 deep and a 2 MB incompressible text under
    lz4. Safe: captured whole, sealed, both verifiers agree; a tamper at the deepest level is
    caught by both."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_deep (id int PRIMARY KEY, j jsonb, t text COMPRESSION lz4);
                 GRANT ALL ON public.t101_deep TO app_writer""")
    enable_tracking(kit.maint, "public.t101_deep")
    deep = "[" * 5000 + "1" + "]" * 5000
    err = try_write(kit.writer, "INSERT INTO public.t101_deep VALUES (1, %s::jsonb, %s)", [deep, big_hex(1_000_000)])
    assert err is None, err
    assert n_events(db, "public.t101_deep.insert") + db.execute(
        "SELECT count(*) FROM audit.quarantine WHERE kind = 'public.t101_deep.insert'").fetchone()[0] == 1
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t101_deep.insert'").fetchone()
    if seq is not None:
        tamper(db, f"UPDATE audit.event_log SET row_after = replace(row_after::text, '[1]', '[2]')::jsonb"
                   f" WHERE seq = {seq[0]}")
        assert both_verifiers(db) == (False, False)


def test_h4_record_payload_with_keys_twins_and_escapes_tampered_by_one_code_point(kit):
    """Attack: record() payloads holding \\u2028, a BOM key, escaped NUL in a string ('\\\\u0000'), a
    combining sequence; then the payload's key is replaced by its NFD twin (same look). Safe: both
    verifiers ok honest, both broken after."""
    db = kit.db
    record(kit.writer, "t101.h4", payload={"\ufeffk\u00e9": "a\u2028b", "n": "\\u0000", "z": "\U0001f468\u200d\U0001f469"})
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't101.h4'").fetchone()[0]
    tamper(db, f"UPDATE audit.event_log SET payload = replace(payload::text, '\u00e9', 'e\u0301')::jsonb WHERE seq = {seq}")
    assert both_verifiers(db) == (False, False)


def test_h5_status_has_no_new_problem_after_all_of_it(kit):
    """After an owner's benign TOAST and statistics DDL on a tracked table, status names no problem
    it did not name before (no false alarm), and the chain verifies."""
    db, o = kit.db, kit.owner
    before = set(problems_of(db))
    o.execute("""CREATE TABLE public.t101_st (id int PRIMARY KEY, v int, t text);
                 GRANT ALL ON public.t101_st TO app_writer""")
    enable_tracking(kit.maint, "public.t101_st")
    try_write(o, "CREATE STATISTICS public.t101_st_s ON v, t FROM public.t101_st")
    try_write(o, "ALTER TABLE public.t101_st SET (fillfactor = 50)")
    kit.writer.execute("INSERT INTO public.t101_st VALUES (1, 1, 'x')")
    assert seal_all(kit.maint) is None
    assert set(problems_of(db)) - before == set()
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("col,old,new", [
    ("n", "1.0", "1.00"), ("j", "'{\"a\": 1.0}'", "'{\"a\": 1.00}'"), ("n", "0.0", "0"),
    ("j", "'[1.5e2]'", "'[150.0]'"), ("t", "'e\u0301'", "'\u00e9'"),
])
def test_h6_an_update_that_changes_only_numeric_scale_or_normalization_is_captured(kit, col, old, new):
    """Attack: the writer changes a value to one equal by comparison but stored (and printed)
    otherwise: numeric 1.0 -> 1.00, jsonb {"a": 1.0} -> {"a": 1.00}, 1e2 -> 100, a text from NFD to
    NFC. The table's stored value changed, so the log must say so: an update event whose image
    prints the new value; both verifiers agree."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_sc (id int PRIMARY KEY, n numeric, j jsonb, t text);
                 GRANT ALL ON public.t101_sc TO app_writer""")
    o.execute(f"INSERT INTO public.t101_sc (id, {col}) VALUES (1, {old})")
    enable_tracking(kit.maint, "public.t101_sc", baseline=True)
    kit.writer.execute(f"UPDATE public.t101_sc SET {col} = {new} WHERE id = 1")
    stored = db.execute(f"SELECT to_jsonb(t.{col})::text FROM public.t101_sc t").fetchone()[0]
    last_text = db.execute(f"SELECT (row_after->'{col}')::text FROM audit.events WHERE starts_with(kind, 'public.t101_sc.')"
                           " ORDER BY intake_id DESC LIMIT 1").fetchone()[0]
    assert kinds(db, "public.t101_sc.") == ["baseline", "update"], (kinds(db, "public.t101_sc."), stored)
    assert last_text == stored, (last_text, stored)
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("typ", ["ci", "char"])
def test_f6_a_tenant_column_whose_type_calls_two_tenants_equal_never_shows_one_the_others_row(kit, typ):
    """Attack: the tracked table's tenant_column is of the owner's case-insensitive nondeterministic
    collation (or char(8), which ignores trailing blanks). The writer moves row 1 from tenant 'acme'
    to tenant 'ACME' (or 'acme' to 'acme ' for char). Safe: no event filed under one tenant carries
    the other tenant's version of the row: every event's row images name its own tenant only."""
    db, o = kit.db, kit.owner
    if typ == "ci":
        o.execute("CREATE COLLATION public.t101_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
        coltype = "text COLLATE public.t101_ci"
        new = "ACME"
    else:
        coltype = "varchar(8)"
        new = "acme "
    o.execute(f"""CREATE TABLE public.t101_ten (id int PRIMARY KEY, tenant {coltype}, secret text);
                  INSERT INTO public.t101_ten VALUES (1, 'acme', 'acme-only');
                  GRANT ALL ON public.t101_ten TO app_writer""")
    enable_tracking(kit.maint, "public.t101_ten", tenant_column="tenant", baseline=True)
    kit.writer.execute("UPDATE public.t101_ten SET tenant = %s, secret = 'new-owner-only' WHERE id = 1", [new])
    bad = []
    for kind, tenant, before, after in db.execute(
            "SELECT kind, tenant_id, row_before, row_after FROM audit.events WHERE starts_with(kind, 'public.t101_ten.')"
            " ORDER BY intake_id"):
        for img in (before, after):
            if img is not None and img.get("tenant") != tenant:
                bad.append((kind, tenant, img))
    assert bad == [], f"an event filed under one tenant carries another tenant's version: {bad}"
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("coll", ["public.t101_ci", "pg_catalog.\"C\""])
def test_f7_a_primary_key_of_a_nondeterministic_collation_keeps_one_history_per_row(kit, coll):
    """Attack: the tracked table's key is text of a case-insensitive nondeterministic collation;
    the writer updates the key 'Bob' to 'BOB' (the same key to the table), then deletes the row.
    Safe: the row reads 'existed' under its new spelling while it is, its history ends with the
    delete, and it never reads 'existed' after the delete under either spelling (the doc lets
    'unknown' stand for 'absent' for such keys). The "C" collation is the control."""
    db, o = kit.db, kit.owner
    o.execute(f"""CREATE COLLATION public.t101_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
                 CREATE TABLE public.t101_nk (k text COLLATE {coll} PRIMARY KEY, v int);
                 INSERT INTO public.t101_nk VALUES ('Bob', 1);
                 GRANT ALL ON public.t101_nk TO app_writer""")
    enable_tracking(kit.maint, "public.t101_nk", baseline=True)
    kit.writer.execute("UPDATE public.t101_nk SET k = 'BOB', v = 2")
    mid = kit.tick()
    kit.writer.execute("DELETE FROM public.t101_nk")
    after = kit.tick()
    states = {spelled: (kit.state("public.t101_nk", spelled, mid)[0], kit.state("public.t101_nk", spelled, after)[0])
              for spelled in ("Bob", "BOB")}
    events = db.execute("SELECT kind, target_id, payload FROM audit.events WHERE starts_with(kind, 'public.t101_nk.')"
                        " ORDER BY intake_id").fetchall()
    # docs/capture.md: for a key whose spellings vary, 'unknown' stands where 'absent' would
    assert states["BOB"][0] == "existed", (states, events)
    assert states["BOB"][1] in ("absent", "unknown") and states["Bob"][1] in ("absent", "unknown"), (states, events)
    assert kit.history("public.t101_nk", "BOB")[-1] == "public.t101_nk.delete"
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def last_images(db, prefix: str) -> dict:
    """Per key, the row image of the last captured event (None after a delete)."""
    out = {}
    for kind, key, after in db.execute("SELECT kind, target_id, row_after FROM audit.events WHERE starts_with(kind, %s)"
                                       " ORDER BY seq NULLS LAST, intake_id", [prefix]):
        if kind.endswith(".truncate"):
            out = {}
        else:
            out[key] = after
    return {k: v for k, v in out.items() if v is not None}


def test_s9_truncate_cascade_and_foreign_key_actions_reach_the_log(kit):
    """Attack: a tracked child references an untracked parent (ON DELETE CASCADE, ON UPDATE
    CASCADE, and a second FK ON DELETE SET NULL); the writer deletes and rekeys parent rows and
    finally TRUNCATEs the parent CASCADE. Safe: the tracked child's last images always equal what
    it holds (every RI action captured)."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_fp (id int PRIMARY KEY);
                 INSERT INTO public.t101_fp VALUES (1), (2), (3);
                 CREATE TABLE public.t101_fc (id int PRIMARY KEY,
                     p int REFERENCES public.t101_fp ON DELETE CASCADE ON UPDATE CASCADE,
                     q int REFERENCES public.t101_fp ON DELETE SET NULL ON UPDATE SET NULL);
                 INSERT INTO public.t101_fc VALUES (10, 1, 2), (11, 2, 3), (12, 3, 1);
                 GRANT ALL ON public.t101_fp, public.t101_fc TO app_writer""")
    enable_tracking(kit.maint, "public.t101_fc", baseline=True)

    def table():
        return {str(r[0]): r[1] for r in db.execute("SELECT id, to_jsonb(t) FROM public.t101_fc t")}
    w = kit.writer
    w.execute("UPDATE public.t101_fp SET id = 20 WHERE id = 2")
    assert last_images(db, "public.t101_fc.") == table()
    w.execute("DELETE FROM public.t101_fp WHERE id = 3")
    assert last_images(db, "public.t101_fc.") == table()
    err = try_write(w, "TRUNCATE public.t101_fp CASCADE")
    if err is None:
        assert table() == {}
        assert last_images(db, "public.t101_fc.") == {}
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_s10_an_owners_deferred_constraint_trigger_that_rewrites_the_row_at_commit_is_captured(kit):
    """Attack: the owner hangs a DEFERRABLE INITIALLY DEFERRED constraint trigger on the tracked
    table that, at the writer's COMMIT, sets the row's note to 'laundered' (and a second one that
    deletes row 2). Safe: the last captured image of each row is what the table holds after commit."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_dt (id int PRIMARY KEY, v int, note text);
                 INSERT INTO public.t101_dt VALUES (1, 0, 'clean'), (2, 0, 'clean');
                 GRANT ALL ON public.t101_dt TO app_writer""")
    enable_tracking(kit.maint, "public.t101_dt", baseline=True)
    o.execute("""CREATE FUNCTION public.t101_launder() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
                 BEGIN
                     UPDATE public.t101_dt SET note = 'laundered' WHERE id = NEW.id AND note <> 'laundered';
                     DELETE FROM public.t101_dt WHERE id = 2;
                     RETURN NULL;
                 END $$;
                 CREATE CONSTRAINT TRIGGER t101_zz AFTER UPDATE ON public.t101_dt DEFERRABLE INITIALLY DEFERRED
                   FOR EACH ROW WHEN (NEW.v > 0) EXECUTE FUNCTION public.t101_launder()""")
    w = kit.writer
    w.execute("BEGIN")
    w.execute("UPDATE public.t101_dt SET v = 5 WHERE id = 1")
    w.execute("COMMIT")
    held = {str(r[0]): r[1] for r in db.execute("SELECT id, to_jsonb(t) FROM public.t101_dt t")}
    assert held == {"1": {"id": 1, "v": 5, "note": "laundered"}}
    assert last_images(db, "public.t101_dt.") == held
    at = kit.tick()
    assert kit.state("public.t101_dt", "1", at) == ("existed", held["1"])
    assert kit.state("public.t101_dt", "2", at)[0] == "absent"
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_s11_a_row_moved_into_a_partition_whose_before_trigger_drops_it_is_recorded_gone(kit):
    """Attack: the tracked table is partitioned; the owner hangs a BEFORE INSERT trigger returning
    NULL on the second partition. The writer's UPDATE moves row 1 there (row movement: delete from
    the first, insert into the second, which the trigger swallows). Safe: the log's last word on
    row 1 matches the table (gone, or there)."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_pm (id int, k int, v int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
                 CREATE TABLE public.t101_pm0 PARTITION OF public.t101_pm FOR VALUES FROM (0) TO (10);
                 CREATE TABLE public.t101_pm1 PARTITION OF public.t101_pm FOR VALUES FROM (10) TO (20);
                 INSERT INTO public.t101_pm VALUES (1, 1, 1), (2, 2, 2);
                 GRANT ALL ON public.t101_pm, public.t101_pm0, public.t101_pm1 TO app_writer""")
    enable_tracking(kit.maint, "public.t101_pm", baseline=True)
    err = try_write(o, """CREATE FUNCTION public.t101_swallow() RETURNS trigger LANGUAGE plpgsql AS $$
                            BEGIN RETURN NULL; END $$;
                          CREATE TRIGGER t101_sw BEFORE INSERT ON public.t101_pm1 FOR EACH ROW
                            EXECUTE FUNCTION public.t101_swallow()""")
    refused = try_write(kit.writer, "UPDATE public.t101_pm SET k = 15 WHERE id = 1")
    held = {r[0]: r[1] for r in db.execute(
        "SELECT jsonb_build_array(id, k)::text, to_jsonb(t) FROM public.t101_pm t")}
    logged = {k: v for k, v in last_images(db, "public.t101_pm.").items()}
    norm = {db.execute("SELECT %s::jsonb::text", [k]).fetchone()[0] if k.startswith("[") else k: v for k, v in logged.items()}
    assert norm == held, (err, refused, norm, held)
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


def test_g4_a_sandboxed_tables_images_do_not_depend_on_the_writers_settings(kit, connect):
    """Attack: a table with the owner's enum column (so its rows are converted in the sandbox) and
    columns whose text depends on settings (timestamptz, float8, money, interval, bytea, date,
    a tstzrange); one writer session under odd settings (DateStyle, IntervalStyle, a made-up zone,
    extra_float_digits, bytea_output, lc_monetary German), one plain. Safe: identical images."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TYPE public.t101_mood AS ENUM ('calm', 'angry');
                 CREATE TABLE public.t101_sb (id int PRIMARY KEY, m public.t101_mood, ts timestamptz, f float8,
                     mo money, iv interval, b bytea, d date, r tstzrange, a float8[]);
                 GRANT ALL ON public.t101_sb TO app_writer""")
    enable_tracking(kit.maint, "public.t101_sb")
    odd = connect("app_writer")
    for k, v in {"DateStyle": "'SQL, DMY'", "IntervalStyle": "sql_standard", "TimeZone": "'<+0545>-05:45'",
                 "extra_float_digits": "-15", "bytea_output": "escape", "lc_monetary": "'de_DE.UTF-8'"}.items():
        odd.execute(f"SET {k} = {v}")
    vals = ("'calm', '2026-03-04 05:06:07.123456+00'::timestamptz, 1349.0123456789::float8, 1234.56::money,"
            " '1 year 2 mons -3 days 04:05:06.789'::interval, decode('00ff5c27', 'hex'), '2026-03-04'::date,"
            " '[2026-03-04 00:00+00, 2026-03-05 00:00+00)'::tstzrange, ARRAY[0.1::float8, 1e300]")
    odd.execute(f"INSERT INTO public.t101_sb VALUES (1, {vals})")
    kit.writer.execute(f"INSERT INTO public.t101_sb VALUES (2, {vals})")
    imgs = [r[0] for r in db.execute("SELECT (row_after - 'id')::text FROM audit.events WHERE kind = 'public.t101_sb.insert'"
                                     " ORDER BY intake_id")]
    assert len(imgs) == 2 and imgs[0] == imgs[1], imgs
    odd.execute("UPDATE public.t101_sb SET f = 1349.0123456788 WHERE id = 1")
    assert n_events(db, "public.t101_sb.update") == 1
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("kind,change", [
    ("insert", "client_addr = '::ffff:127.0.0.1'"),
    ("delete", "row_before = row_before || '{\"v\": 2.0}'"),
    ("update", "occurred_at = occurred_at + interval '1 microsecond'"),
    ("update", "txid = (txid::text::numeric + 1)::text::xid8"),
    ("update", "changed = changed || '[\"note\"]'::jsonb"),
])
def test_h7_a_sealed_captured_event_changed_by_a_hair_is_caught(kit, kind, change):
    """Attack (as a superuser, triggers off): a sealed captured event's time moved by a microsecond,
    its txid by one, its changed list grown, its client address given as the IPv4-mapped IPv6 form,
    a delete's image's 2 made 2.0. (SQL NULL to JSON null is trial 95's v3, known.) Safe: both
    verifiers say broken."""
    db = kit.db
    kit.owner.execute("""CREATE TABLE public.t101_nul (id int PRIMARY KEY, v int, note text);
                         GRANT ALL ON public.t101_nul TO app_writer""")
    enable_tracking(kit.maint, "public.t101_nul")
    kit.writer.execute("INSERT INTO public.t101_nul VALUES (1, 1, 'a'); UPDATE public.t101_nul SET v = 2;"
                       " DELETE FROM public.t101_nul")
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = %s", [f"public.t101_nul.{kind}"]).fetchone()[0]
    look = ("SELECT e::text, row_after IS NULL, row_before IS NULL, changed IS NULL FROM audit.event_log e"
            f" WHERE seq = {seq}")
    was = db.execute(look).fetchone()
    tamper(db, f"UPDATE audit.event_log SET {change} WHERE seq = {seq}")
    assert db.execute(look).fetchone() != was, "the tamper changed nothing"
    assert both_verifiers(db) == (False, False)


@pytest.mark.parametrize("field,other", [
    ("actor_id", "mallory"), ("actor_type", "service"), ("correlation_id", "c-2"),
    ("target_type", "invoice"), ("target_id", "o-2"), ("outcome", "failure"), ("payload", {"a": 1.0}),
])
def test_f8_an_idempotency_key_replayed_with_one_field_changed_is_refused(kit, field, other):
    """Attack: the writer records with key K, then replays K with one field changed (another
    actor (keys are per tenant, docs/sql.md, so no tenant case), correlation id, target, outcome, or a payload equal as numbers but printed otherwise)
    hoping to be handed the first event as if it described the second call. Safe: PA004, and the
    log holds the first event only."""
    db = kit.db
    args = dict(tenant_id="t-a", actor_id="alice", actor_type="user", correlation_id="c-1", target_type="order",
                target_id="o-1", outcome="success", payload={"a": 1}, idempotency_key="t101-K8")
    record(kit.writer, "t101.f8", **args)
    err = None
    try:
        got = record(kit.writer, "t101.f8", **{**args, field: other})
    except Exception as e:  # noqa: BLE001
        err, got = e, None
    sqlstate = getattr(err, "sqlstate", None) or getattr(getattr(err, "__cause__", None), "sqlstate", None)
    assert sqlstate == "PA004", f"a replay with {field} changed was answered {got!r} / {err!r}"
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't101.f8'").fetchone()[0] == 1


def test_x7_a_partition_key_expression_of_the_owner_never_runs_privileged(kit):
    """Attack: the tracked table is partitioned by an expression calling the owner's spy (an
    IMMUTABLE function over the key); the maintainer tracks it with a baseline, the writer writes
    (routing runs the expression), the reader asks history, the sealer, verifiers and status run.
    Safe: the spy never runs as a privileged role."""
    o = kit.owner
    seen = spy_sink(all_conns(kit))
    o.execute(SPY)
    o.execute("""CREATE FUNCTION public.t101_pk(k int) RETURNS int IMMUTABLE LANGUAGE plpgsql AS $$
                 BEGIN RAISE NOTICE 't101spy %|%', 'partkey', current_user; RETURN k % 2; END $$;
                 CREATE TABLE public.t101_pe (id int, v int) PARTITION BY LIST ((public.t101_pk(id)));
                 CREATE TABLE public.t101_pe0 PARTITION OF public.t101_pe FOR VALUES IN (0);
                 CREATE TABLE public.t101_pe1 PARTITION OF public.t101_pe FOR VALUES IN (1);
                 CREATE UNIQUE INDEX t101_pe0_u ON public.t101_pe0 (id);
                 CREATE UNIQUE INDEX t101_pe1_u ON public.t101_pe1 (id);
                 INSERT INTO public.t101_pe VALUES (1, 1), (2, 2);
                 GRANT ALL ON public.t101_pe, public.t101_pe0, public.t101_pe1 TO app_writer""")
    err = None
    try:
        enable_tracking(kit.maint, "public.t101_pe", baseline=True)
    except Exception as e:  # noqa: BLE001  (no primary key on the parent: may be refused)
        err = e
    if err is not None:
        o.execute("""CREATE TABLE public.t101_pe2 (id int PRIMARY KEY, v int) PARTITION BY LIST (id);
                     CREATE TABLE public.t101_pe3 PARTITION OF public.t101_pe2 FOR VALUES IN (1, 2, 3)
                       PARTITION BY LIST ((public.t101_pk(id)));
                     CREATE TABLE public.t101_pe30 PARTITION OF public.t101_pe3 FOR VALUES IN (0);
                     CREATE TABLE public.t101_pe31 PARTITION OF public.t101_pe3 FOR VALUES IN (1);
                     INSERT INTO public.t101_pe2 VALUES (1, 1), (2, 2);
                     GRANT ALL ON ALL TABLES IN SCHEMA public TO app_writer""")
        table = "public.t101_pe2"
        enable_tracking(kit.maint, table, baseline=True)
    else:
        table = "public.t101_pe"
    seen.clear()
    kit.writer.execute(f"INSERT INTO {table} VALUES (3, 3); UPDATE {table} SET v = v + 1")  # noqa: S608
    everyone_reads(kit, table, "1")
    assert_spies_safe(kit, seen)
    assert "partkey" in {w for w, _ in seen}, "the attack was not set up: routing never ran the expression"


def test_h9_numbers_at_numerics_limits_in_a_captured_row(kit):
    """Attack: a captured row holding numeric values just short of "wild" (399 integer digits, a
    non-zero value just above 1e-400), in a numeric column and inside jsonb. Safe: captured whole (or refused),
    both verifiers agree honest, and a change of the last digit is caught by both."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_lim (id int PRIMARY KEY, n numeric, j jsonb);
                 GRANT ALL ON public.t101_lim TO app_writer""")
    enable_tracking(kit.maint, "public.t101_lim")
    big = "9" * 399  # just under "wild" (docs/capture.md: 1e400 and up, or below 1e-400, become a marker)
    tiny = "0." + "0" * 397 + "7"
    err = try_write(kit.writer, "INSERT INTO public.t101_lim VALUES (1, %s::numeric, jsonb_build_object('b', %s::numeric,"
                    " 't', %s::numeric, 'neg', -%s::numeric))", [big, big, tiny, tiny])
    assert err is None, err
    got = db.execute("SELECT length(row_after->>'n'), length(row_after->'j'->>'t') FROM audit.events"
                     " WHERE kind = 'public.t101_lim.insert'").fetchone()
    assert got == (399, len(tiny)), got
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t101_lim.insert'").fetchone()[0]
    tamper(db, "UPDATE audit.event_log SET row_after = jsonb_set(row_after, '{j,t}',"
               f" to_jsonb((row_after->'j'->>'t')::numeric + ('0.' || repeat('0', 397) || '1')::numeric)) WHERE seq = {seq}")
    assert both_verifiers(db) == (False, False)


@pytest.mark.parametrize("depth", [6000, 9000])
def test_h10_objects_nested_near_the_stack_limit_in_a_captured_row(kit, depth):
    """Attack: a captured jsonb column of objects nested {"a": {"a": ...}} thousands deep, near what
    PostgreSQL's stack allows. Safe: the write is refused, or captured (or set aside visibly), the
    sealer does not fail, and both verifiers agree."""
    db, o = kit.db, kit.owner
    o.execute("""CREATE TABLE public.t101_dp (id int PRIMARY KEY, j jsonb);
                 GRANT ALL ON public.t101_dp TO app_writer""")
    enable_tracking(kit.maint, "public.t101_dp")
    deep = '{"a": ' * depth + "1" + "}" * depth
    err = try_write(kit.writer, "INSERT INTO public.t101_dp VALUES (1, %s::jsonb)", [deep])
    held = db.execute("SELECT count(*) FROM public.t101_dp").fetchone()[0]
    logged = n_events(db, "public.t101_dp.insert") + db.execute(
        "SELECT count(*) FROM audit.quarantine WHERE kind = 'public.t101_dp.insert'").fetchone()[0]
    assert (err is None and held == 1 and logged == 1) or (err is not None and held == 0 and logged == 0), (err, held, logged)
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.reader) == (True, True)


def test_x8_the_maintainers_own_calls_on_an_owners_spied_table_never_run_its_code(kit):
    """Attack: the owner's tracked table carries spies everywhere it may (an expression index, a
    partial index whose predicate calls the spy, a CHECK, a stored generated column, expression
    statistics, then a policy, not forced). The maintainer, a member of the owner role as the
    docs want, runs what it runs on such a table: enable_tracking with a baseline,
    enable_rate_limit, enable_tracking again with new options, preview and prune, disable_rate_limit,
    disable_tracking and enable_tracking again; the writer writes between. Safe: the spy never
    runs as the maintainer, the superuser or an audit role but the sandbox."""
    from pgaudit_py import disable_tracking
    from pgaudit_py.rate_limits import disable_rate_limit, enable_rate_limit
    from pgaudit_py.retention import preview_prune, prune_events
    o, m = kit.owner, kit.maint
    seen = spy_sink(all_conns(kit))
    o.execute(SPY)
    o.execute("""CREATE TABLE public.t101_all (id int PRIMARY KEY, v int, note text,
                     g boolean GENERATED ALWAYS AS (public.t101_spy('generated', v)) STORED);
                 INSERT INTO public.t101_all (id, v) VALUES (1, 1), (2, 2);
                 CREATE INDEX t101_all_ix ON public.t101_all ((public.t101_spy('index', v)));
                 CREATE INDEX t101_all_px ON public.t101_all (id) WHERE public.t101_spy('partial', 1);
                 ALTER TABLE public.t101_all ADD CONSTRAINT t101_all_ck CHECK (public.t101_spy('check', v));
                 CREATE STATISTICS public.t101_all_st ON (public.t101_spy('stats', v)), (v * 2) FROM public.t101_all;
                 ANALYZE public.t101_all;
                 GRANT ALL ON public.t101_all TO app_writer""")
    seen.clear()
    w = kit.writer
    steps = {}

    def step(name, fn):
        try:
            fn()
            steps[name] = "ok"
        except Exception as e:  # noqa: BLE001
            steps[name] = f"refused: {type(e).__name__}"
    step("enable_baseline", lambda: enable_tracking(m, "public.t101_all", baseline=True))
    o.execute("""ALTER TABLE public.t101_all ENABLE ROW LEVEL SECURITY;
                 CREATE POLICY t101_all_pol ON public.t101_all USING (public.t101_spy('policy', v))
                   WITH CHECK (public.t101_spy('policy_check', v))""")
    w.execute("UPDATE public.t101_all SET v = v + 1")
    step("rate_limit", lambda: enable_rate_limit(m, "public.t101_all", per_user_per_minute=1000))
    w.execute("INSERT INTO public.t101_all (id, v) VALUES (3, 3)")
    step("retrack", lambda: enable_tracking(m, "public.t101_all", exclude_columns=["note"]))
    assert seal_all(m) is None
    step("preview", lambda: preview_prune(m, "0 seconds"))
    step("prune", lambda: prune_events(m, "0 seconds"))
    step("unlimit", lambda: disable_rate_limit(m, "public.t101_all"))
    step("disable", lambda: disable_tracking(m, "public.t101_all"))
    step("enable_again", lambda: enable_tracking(m, "public.t101_all"))
    w.execute("DELETE FROM public.t101_all WHERE id = 3")
    everyone_reads(kit, "public.t101_all", "1")
    assert_spies_safe(kit, seen)
    assert steps["enable_baseline"] == "ok" and steps["enable_again"] == "ok", steps
    assert {"generated", "check"} <= {w for w, _ in seen}, "the attack was not set up: the spies never ran"


@pytest.mark.parametrize("who", ["writer", "owner"])
def test_s12_truncate_then_copy_freeze_in_one_transaction_is_captured(kit, who):
    """Attack: TRUNCATE of the tracked table and COPY ... FREEZE into it in the same transaction (the
    one case PostgreSQL lets rows be written frozen, skipping the usual insert path), by the writer
    or by the table's owner. Safe: refused, or a truncate event and one insert event per row."""
    db = kit.db
    kit.owner.execute("""CREATE TABLE public.t101_fz (id int PRIMARY KEY, v int);
                         INSERT INTO public.t101_fz VALUES (1, 1);
                         GRANT ALL ON public.t101_fz TO app_writer""")
    enable_tracking(kit.maint, "public.t101_fz")
    conn = kit.writer if who == "writer" else kit.owner
    n = len(kinds(db, "public.t101_fz."))
    conn.execute("BEGIN")
    try:
        conn.execute("TRUNCATE public.t101_fz")
        with conn.cursor() as cur, cur.copy("COPY public.t101_fz FROM STDIN WITH (FREEZE)") as cp:
            for i in (5, 6, 7):
                cp.write_row((i, i))
        conn.execute("COMMIT")
        done = True
    except psycopg.Error:
        conn.execute("ROLLBACK")
        done = False
    held = db.execute("SELECT count(*) FROM public.t101_fz").fetchone()[0]
    if done:
        assert held == 3
        assert kinds(db, "public.t101_fz.")[n:] == ["truncate", "insert", "insert", "insert"]
    else:
        assert held == 1 and kinds(db, "public.t101_fz.")[n:] == []
    assert seal_all(kit.maint) is None
    assert both_verifiers(db) == (True, True)
