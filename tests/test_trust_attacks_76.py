"""A seventy-sixth attacker's trial: new variants, against the current code, of the first trial's classes.

Classes (test names carry the letter):
  O. the table owner's code (index expressions, partial index predicates, CHECKs, generated columns,
     row and statement triggers, policies, domain CHECKs, rules, a range type's subtype_diff
     under a GiST exclusion constraint, and functions of constant arguments in a partial index, a CHECK
     and expression statistics, which the planner folds while planning any query on the table) on a
     tracked table, while every package operation runs over it (tracking with a baseline, rate limits, writes of every form, the owner's
     DDL, sealing, verifying, the reader's history, status and the superuser's re-install): the spy,
     which says current_user in a NOTICE (NOTICEs outlive the sandbox's rollback), must never run as an
     audit role other than the sandbox, nor as the maintainer, the reader or the superuser. Also a
     search_path stored on the database that puts look-alikes of pg_catalog's functions and operators
     first, for every role's honest calls.
  C. capture bypasses: one statement touching the table through several writable CTEs; foreign-key
     cascades (ON DELETE CASCADE, ON UPDATE CASCADE, SET NULL); TRUNCATE cascading from an untracked
     parent; a capture trigger made to depend on an extension that is then dropped; the tracked table
     attached as a partition of an untracked parent; savepoints and PL/pgSQL exception blocks; MERGE into
     a leaf partition; an owner's row trigger that cancels the UPDATE arm of ON CONFLICT; cross-partition moves an owner's trigger reshapes or
     suppresses; prepared transactions.
  F. forged history: every role's direct writes (INSERT, UPDATE, DELETE, COPY, TRUNCATE) on the audit
     schema's tables; idempotency keys across tenants and database roles, and after the first event is
     pruned; an owner's proof for another maintainer's table; the database role behind a claimed actor.
  L. settings stored on the writer's, reader's and maintainer's roles and on the database (DateStyle,
     IntervalStyle, TimeZone, extra_float_digits, bytea_output, lc_monetary, lc_numeric,
     default_transaction_isolation, default_transaction_read_only, standard_conforming_strings with
     backslash_quote, statement_timeout, JIT at every cost, force_generic_plan): images equal the default
     session's, honest calls work, nothing is half-written; error classes the same under lc_messages C
     and German; a row's key given as the reader's session prints it (timestamptz), or as another spelling
     PostgreSQL's equality takes (numeric 1 for 1.0, jsonb without spaces, a UUID in upper case), never
     reads 'absent'.
  V. verifier and capture of hostile values: json a json column accepts but jsonb refuses (\\u0000, lone
     surrogates, 1e200000), alone, excluded or redacted, or written before tracking began;
     hostile values in jsonb, numeric, text columns and payloads (non-characters, RTL and combining
     marks, -0, 1e400, 1E-400, 300-digit integers, deep nesting, 2 MiB strings); tables and columns with odd names (the capture body's own
     aliases); keys differing only by Unicode normalization; after sealing both verifiers agree the log is
     intact, and both catch tampering that keeps a value jsonb-equal (1.0 -> 1.00, 2.50 -> 2.5, one more
     trailing zero after 1E-399, NFC -> NFD, a microsecond of time, '' for NULL, a 50-digit integer's last digit); client addresses in odd spellings verified from a reader session
     with hostile settings and look-alikes on its search_path.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when an
honest call is refused). Roles made here: t76_owner, t76_mallory (through table_owner_kit), and t76_w,
t76_m, t76_r (writer, maintainer and reader logins with settings stored for this database); all dropped
afterwards.
"""

from __future__ import annotations

import json
from contextlib import suppress
from decimal import Decimal

import psycopg
import pytest
from trial_helpers import (
    both_verifiers,
    login,
    n_events,
    reinstall,
    seal_all,
    sqlstate_of,
    table_owner_kit,
)

from pgaudit_py import (
    PgAuditError,
    disable_tracking,
    enable_rate_limit,
    enable_tracking,
    list_events,
    prune_events,
    record,
    row_as_of,
    row_history,
    seal,
    status,
)
from pgaudit_py.chain import verify_chain

# ============================================ fixtures ============================================


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t76") as k:
        yield k


def events_of(db, kind_prefix: str) -> list[tuple]:
    return db.execute("SELECT kind, target_id, row_before, row_after FROM audit.events WHERE starts_with(kind, %s)"
                      " ORDER BY seq NULLS LAST, intake_id", [kind_prefix]).fetchall()


def kinds_by_key(db, kind_prefix: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for kind, target, _, _ in events_of(db, kind_prefix):
        out.setdefault(target, []).append(kind.rsplit(".", 1)[1])
    return out


def tamper(db, statement: str) -> None:
    """A superuser changes the log behind the guards (replica mode skips the guard triggers); the
    catalogue is left as it was."""
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute(statement)


# ============================== class O: the owner's code, as whom ==============================

SPY = """
CREATE FUNCTION public.t76_spy(what text, v anyelement) RETURNS boolean IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 't76spy %|%', what, current_user;
    RETURN true;
END $$;
CREATE FUNCTION public.t76_spy_trg() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 't76spy %|%', TG_ARGV[0], current_user;
    RETURN CASE WHEN TG_LEVEL = 'ROW' AND TG_OP = 'DELETE' THEN OLD WHEN TG_LEVEL = 'ROW' THEN NEW END;
END $$;
"""

OBJECTS = {
    "index_expression": "CREATE INDEX t76_ix ON public.t76_t ((public.t76_spy('index', v)))",
    "partial_index": "CREATE INDEX t76_px ON public.t76_t (v) WHERE public.t76_spy('partial', v)",
    # Constant arguments: the planner folds these while planning any query on the table.
    "folded": "CREATE INDEX t76_fx ON public.t76_t (v) WHERE public.t76_spy('folded_index', 1);"
              " ALTER TABLE public.t76_t ADD CONSTRAINT t76_fck CHECK (public.t76_spy('folded_check', 2) OR v IS NULL);"
              " CREATE STATISTICS public.t76_fst ON (v + 1), (public.t76_spy('folded_stats', 3)) FROM public.t76_t",
    "check": "ALTER TABLE public.t76_t ADD CONSTRAINT t76_ck CHECK (public.t76_spy('check', v))",
    "generated": "ALTER TABLE public.t76_t ADD COLUMN g boolean GENERATED ALWAYS AS (public.t76_spy('generated', v)) STORED",
    "row_trigger": "CREATE TRIGGER t76_rt BEFORE INSERT OR UPDATE OR DELETE ON public.t76_t FOR EACH ROW"
                   " EXECUTE FUNCTION public.t76_spy_trg('row_trigger');"
                   " CREATE TRIGGER t76_st AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.t76_t"
                   " FOR EACH STATEMENT EXECUTE FUNCTION public.t76_spy_trg('statement_trigger')",
    "policy": "ALTER TABLE public.t76_t ENABLE ROW LEVEL SECURITY; ALTER TABLE public.t76_t FORCE ROW LEVEL SECURITY;"
              " CREATE POLICY t76_pol ON public.t76_t USING (public.t76_spy('policy', v))"
              " WITH CHECK (public.t76_spy('policy_check', v))",
    "domain": "CREATE DOMAIN public.t76_dom AS int CHECK (public.t76_spy('domain', VALUE));"
              " ALTER TABLE public.t76_t ADD COLUMN d public.t76_dom DEFAULT 1",
    "rule": "CREATE RULE t76_rule AS ON DELETE TO public.t76_t DO ALSO SELECT public.t76_spy('rule', OLD.v)",
    "range_gist": """
        CREATE FUNCTION public.t76_diff(a int4, b int4) RETURNS float8 IMMUTABLE LANGUAGE plpgsql AS $$
        BEGIN RAISE NOTICE 't76spy %|%', 'subtype_diff', current_user; RETURN b - a; END $$;
        CREATE TYPE public.t76_rng AS RANGE (subtype = int4, subtype_diff = public.t76_diff);
        ALTER TABLE public.t76_t ADD COLUMN r public.t76_rng DEFAULT public.t76_rng(1, 2);
        CREATE EXTENSION IF NOT EXISTS btree_gist;
        INSERT INTO public.t76_t (id, v, r) SELECT g, g, public.t76_rng(g * 10, g * 10 + 5) FROM generate_series(100, 3000) g;
        ALTER TABLE public.t76_t ADD CONSTRAINT t76_ex EXCLUDE USING gist (id WITH =, r WITH &&)""",
}

# Roles the owner's code may run as: its own, the writer's (its writes fire the table's code, as in any
# PostgreSQL table) and the sandbox's (which holds nothing, by design).
MAY_RUN_AS = {"t76_owner", "app_writer", "audit_sandbox"}


def spy_sink(conns) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []

    def keep(n: psycopg.errors.Diagnostic) -> None:
        m = n.message_primary or ""
        if m.startswith("t76spy "):
            what, who = m.removeprefix("t76spy ").split("|", 1)
            seen.append((what, who))

    for c in conns:
        c.add_notice_handler(keep)
    return seen


@pytest.mark.parametrize("obj", sorted(OBJECTS))
def test_o1_the_owners_code_on_a_tracked_table_never_runs_as_a_privileged_role(kit, obj):
    """Attack: the table's owner hangs code on its table (the object named), then every package
    operation is run over it: tracking with a baseline (without one under RLS, which refuses it), a rate
    limit, the writer's INSERT / UPDATE / ON CONFLICT / DELETE / COPY / TRUNCATE, the owner's ADD COLUMN
    and RENAME COLUMN, sealing, verify, the reader's list, history and as-of, status and a re-install by
    the superuser, disable and enable again. Safe: the spy never reports current_user as an audit role
    (but the sandbox), the maintainer, the reader or the superuser."""
    db = kit.db
    seen = spy_sink([db, kit.owner, kit.writer, kit.reader, kit.maint, kit.mallory])
    kit.owner.execute(SPY)
    kit.owner.execute("CREATE TABLE public.t76_t (id int PRIMARY KEY, v int, note text);"
                      " GRANT ALL ON public.t76_t TO app_writer;"
                      " INSERT INTO public.t76_t (id, v) VALUES (1, 1), (2, 2)")
    kit.owner.execute(OBJECTS[obj])
    enable_tracking(kit.maint, "public.t76_t", baseline=(obj != "policy"))
    enable_rate_limit(kit.maint, "public.t76_t", per_user_per_minute=1000, per_tenant_per_minute=1000)
    w = kit.writer
    w.execute("INSERT INTO public.t76_t (id, v) VALUES (3, 3)")
    w.execute("UPDATE public.t76_t SET v = v + 10 WHERE id = 1")
    w.execute("INSERT INTO public.t76_t (id, v) VALUES (2, 22) ON CONFLICT (id) DO UPDATE SET v = excluded.v")
    w.execute("DELETE FROM public.t76_t WHERE id = 3")
    if obj == "policy":  # PostgreSQL refuses COPY FROM under row-level security
        w.execute("INSERT INTO public.t76_t (id, v) VALUES (4, 4)")
    else:
        with w.cursor().copy("COPY public.t76_t (id, v) FROM STDIN") as cp:
            cp.write_row((4, 4))
    kit.owner.execute("ALTER TABLE public.t76_t ADD COLUMN extra int; ALTER TABLE public.t76_t RENAME COLUMN extra TO extra2")
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.maint) == (True, True)
    at = kit.tick()
    list_events(kit.reader, kind_prefix="public.t76_t")
    row_history(kit.reader, "public.t76_t", "1")
    row_as_of(kit.reader, "public.t76_t", "1", at)
    status(db)
    assert reinstall(db) is None
    w.execute("TRUNCATE public.t76_t")
    disable_tracking(kit.maint, "public.t76_t")
    enable_tracking(kit.maint, "public.t76_t", baseline=(obj != "policy"))
    w.execute("INSERT INTO public.t76_t (id, v) VALUES (5, 5)")
    assert seal_all(kit.maint) is None
    ran_as = {who for _, who in seen}
    assert ran_as, "the spy never ran at all: the attack was not set up"
    assert ran_as <= MAY_RUN_AS, f"the owner's {obj} ran as {sorted(ran_as - MAY_RUN_AS)}: {sorted(set(seen))}"
    assert n_events(db, "forged.event") == 0
    assert both_verifiers(db) == (True, True)


LOOKALIKES = """
CREATE SCHEMA t76_evil AUTHORIZATION t76_mallory;
SET ROLE t76_mallory;
CREATE FUNCTION t76_evil.starts_with(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 't76spy %|%', 'starts_with', current_user; RETURN pg_catalog.starts_with(a, b); END $$;
CREATE FUNCTION t76_evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 't76spy %|%', 'now', current_user; RETURN pg_catalog.now(); END $$;
CREATE FUNCTION t76_evil.jsonb_build_object(a text, b text) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 't76spy %|%', 'jsonb_build_object', current_user; RETURN pg_catalog.jsonb_build_object(a, b); END $$;
CREATE FUNCTION t76_evil.texteq(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 't76spy %|%', 'texteq', current_user; RETURN a OPERATOR(pg_catalog.=) b; END $$;
CREATE OPERATOR t76_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = t76_evil.texteq);
CREATE FUNCTION t76_evil.cat(a text, b text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 't76spy %|%', 'concat_op', current_user; RETURN pg_catalog.textcat(a, b); END $$;
CREATE OPERATOR t76_evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = t76_evil.cat);
CREATE FUNCTION t76_evil.count(anyelement) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 't76spy %|%', 'count', current_user; RETURN 0; END $$;
CREATE FUNCTION t76_evil.lower(a text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 't76spy %|%', 'lower', current_user; RETURN pg_catalog.lower(a); END $$;
CREATE FUNCTION t76_evil.format(a text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN RAISE NOTICE 't76spy %|%', 'format', current_user; RETURN a; END $$;
GRANT USAGE ON SCHEMA t76_evil TO PUBLIC;
RESET ROLE;
"""


def test_o2_a_search_path_stored_on_the_database_puts_look_alikes_first_for_every_role(kit, connect):
    """Attack: mallory makes look-alikes of pg_catalog's starts_with, now, jsonb_build_object, lower,
    format, count and the text operators = and || in a schema of hers, and the database's stored
    search_path puts it before pg_catalog (every new session's). Then every role's honest calls, made in
    new sessions: tracking, writes, record, seal, verify (both), list, history, status, rate limits. Safe:
    every call works and no look-alike ever runs, for anyone."""
    db = kit.db
    db.execute(LOOKALIKES)
    db.execute(f"ALTER DATABASE {db.info.dbname} SET search_path = t76_evil, public, pg_catalog")
    try:
        owner, writer, reader, maint = (connect(r) for r in ("t76_owner", "app_writer", "app_reader", "app_maintainer"))
        seen = spy_sink([owner, writer, reader, maint, db])
        assert writer.execute("SHOW search_path").fetchone()[0].startswith("t76_evil")
        owner.execute("CREATE TABLE public.t76_sp (id int PRIMARY KEY, v int, note text); GRANT ALL ON public.t76_sp TO app_writer;"
                      " INSERT INTO public.t76_sp VALUES (1, 1, 'a')")
        seen.clear()  # the owner's own statements may call what its path names
        enable_tracking(maint, "public.t76_sp", baseline=True)
        enable_rate_limit(maint, "public.t76_sp")
        writer.execute("INSERT INTO public.t76_sp VALUES (2, 2, 'b'); UPDATE public.t76_sp SET note = 'c' WHERE id = 1")
        record(writer, "t76.path", payload={"a": "b"}, idempotency_key="k1")
        record(writer, "t76.path", payload={"a": "b"}, idempotency_key="k1")
        assert seal_all(maint) is None
        assert both_verifiers(reader) == (True, True)
        assert len(list_events(reader, kind_prefix="public.t76_sp")) == 3
        assert [e.kind for e in row_history(reader, "public.t76_sp", "1")] == ["public.t76_sp.baseline", "public.t76_sp.update"]
        status(maint)
        disable_tracking(maint, "public.t76_sp")
        assert seen == [], f"look-alikes ran: {sorted(set(seen))}"
    finally:
        db.execute(f"ALTER DATABASE {db.info.dbname} RESET search_path")


# ================================== class C: capture bypasses ===================================


def test_c1_one_statement_touching_the_table_through_several_writable_ctes(kit):
    """Attack: one statement inserts row 5, updates row 1, deletes row 2 and inserts row 6 through four
    writable CTEs on the tracked table (PostgreSQL fires the statement triggers per modifying node,
    and the transition tables may be shared). Safe: exactly one event per row and change: 5 insert,
    1 update, 2 delete, 6 insert, each image right."""
    kit.owner.execute("CREATE TABLE public.t76_c1 (id int PRIMARY KEY, v int); GRANT ALL ON public.t76_c1 TO app_writer;"
                      " INSERT INTO public.t76_c1 VALUES (1, 1), (2, 2)")
    enable_tracking(kit.maint, "public.t76_c1")
    kit.writer.execute("""WITH a AS (INSERT INTO public.t76_c1 VALUES (5, 5) RETURNING id),
                               b AS (UPDATE public.t76_c1 SET v = 10 WHERE id = 1 RETURNING id),
                               c AS (DELETE FROM public.t76_c1 WHERE id = 2 RETURNING id)
                          INSERT INTO public.t76_c1 SELECT 6, (SELECT count(*) FROM a) + (SELECT count(*) FROM b)
                                                              + (SELECT count(*) FROM c)""")
    got = kinds_by_key(kit.db, "public.t76_c1.")
    assert got == {"5": ["insert"], "1": ["update"], "2": ["delete"], "6": ["insert"]}, got
    after = {t: ra for k, t, rb, ra in events_of(kit.db, "public.t76_c1.")}
    assert after["1"] == {"id": 1, "v": 10} and after["6"] == {"id": 6, "v": 3} and after["2"] is None
    assert seal_all(kit.maint) is None and both_verifiers(kit.db) == (True, True)


def test_c2_foreign_key_cascades_from_an_untracked_parent_are_captured(kit):
    """Attack: the tracked child references an untracked parent with ON UPDATE CASCADE (the key), ON
    DELETE CASCADE and ON DELETE SET NULL (another column); the writer changes only the parent. Safe:
    every child row the cascades changed has its event with the right images."""
    kit.owner.execute("""
        CREATE TABLE public.t76_par (id int PRIMARY KEY);
        CREATE TABLE public.t76_par2 (id int PRIMARY KEY);
        CREATE TABLE public.t76_kid (id int PRIMARY KEY REFERENCES public.t76_par ON UPDATE CASCADE ON DELETE CASCADE,
                                     ref int REFERENCES public.t76_par2 ON DELETE SET NULL);
        GRANT ALL ON public.t76_par, public.t76_par2, public.t76_kid TO app_writer;
        INSERT INTO public.t76_par VALUES (1), (2), (3); INSERT INTO public.t76_par2 VALUES (7);
        INSERT INTO public.t76_kid VALUES (1, 7), (2, NULL), (3, 7)""")
    enable_tracking(kit.maint, "public.t76_kid")
    kit.writer.execute("UPDATE public.t76_par SET id = 10 WHERE id = 1")
    kit.writer.execute("DELETE FROM public.t76_par WHERE id = 2")
    kit.writer.execute("DELETE FROM public.t76_par2 WHERE id = 7")
    rows = [(k.rsplit(".", 1)[1], rb, ra) for k, t, rb, ra in events_of(kit.db, "public.t76_kid.")]
    assert ("update", {"id": 1, "ref": 7}, {"id": 10, "ref": 7}) in rows, rows
    assert ("delete", {"id": 2, "ref": None}, None) in rows, rows
    assert ("update", {"id": 10, "ref": 7}, {"id": 10, "ref": None}) in rows, rows
    assert ("update", {"id": 3, "ref": 7}, {"id": 3, "ref": None}) in rows, rows
    assert len(rows) == 4, rows


def test_c3_truncate_cascading_from_an_untracked_parent_is_recorded(kit):
    """Attack: the writer truncates an untracked parent WITH CASCADE; the tracked
    child is emptied by the cascade. Safe: the child's truncate is recorded (the rows' end shows)."""
    kit.owner.execute("""
        CREATE TABLE public.t76_tp (id int PRIMARY KEY);
        CREATE TABLE public.t76_tk (id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, p int REFERENCES public.t76_tp);
        GRANT ALL ON public.t76_tp, public.t76_tk TO app_writer;
        INSERT INTO public.t76_tp VALUES (1); INSERT INTO public.t76_tk (p) VALUES (1), (1)""")
    enable_tracking(kit.maint, "public.t76_tk")
    kit.writer.execute("TRUNCATE public.t76_tp CASCADE")
    assert kit.db.execute("SELECT count(*) FROM public.t76_tk").fetchone()[0] == 0
    assert n_events(kit.db, "public.t76_tk.truncate") == 1


def test_c4_a_capture_trigger_made_to_depend_on_an_extension_then_dropped(kit):
    """Attack: the table's owner creates a trusted extension (it may create in the database), marks the
    capture trigger as depending on it (ALTER TRIGGER ... DEPENDS ON EXTENSION needs only the table),
    then drops the extension, which drops the trigger with it. Safe: refused at either step, or the
    capture still runs for every kind of write (an INSERT is captured afterwards)."""
    kit.owner.execute("CREATE TABLE public.t76_dx (id int PRIMARY KEY, v int); GRANT ALL ON public.t76_dx TO app_writer")
    enable_tracking(kit.maint, "public.t76_dx")
    kit.owner.execute("CREATE EXTENSION IF NOT EXISTS fuzzystrmatch SCHEMA public")
    steps = []
    for trg in ("audit_capture_insert", "audit_capture_update", "audit_capture_delete", "audit_capture_truncate"):
        steps.append(sqlstate_of(kit.owner, f"ALTER TRIGGER {trg} ON public.t76_dx DEPENDS ON EXTENSION fuzzystrmatch"))
    steps.append(sqlstate_of(kit.owner, "DROP EXTENSION fuzzystrmatch"))
    kit.writer.execute("INSERT INTO public.t76_dx VALUES (1, 1); UPDATE public.t76_dx SET v = 2; DELETE FROM public.t76_dx")
    got = kinds_by_key(kit.db, "public.t76_dx.")
    assert got == {"1": ["insert", "update", "delete"]}, (steps, got)
    assert kit.db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.t76_dx'::regclass"
                          " AND tgname LIKE 'audit_capture_%'").fetchone()[0] == 4
    # And a superuser's DROP EXTENSION later (an upgrade's, say) must not take the capture with it either.
    sqlstate_of(kit.db, "DROP EXTENSION fuzzystrmatch")
    kit.writer.execute("INSERT INTO public.t76_dx VALUES (2, 2)")
    assert n_events(kit.db, "public.t76_dx.insert") == 2, f"the capture went with the extension ({steps})"


def test_c5_the_tracked_table_attached_as_a_partition_of_an_untracked_parent(kit):
    """Attack: the owner makes an untracked partitioned table and attaches the tracked table to it as a
    partition, then the writer writes through the parent (the partition's statement triggers do not
    fire for a statement on the parent; only the parent's). Safe: the ATTACH is refused, or every write
    through the parent is captured."""
    kit.owner.execute("CREATE TABLE public.t76_leaf (id int PRIMARY KEY, v int); GRANT ALL ON public.t76_leaf TO app_writer;"
                      " INSERT INTO public.t76_leaf VALUES (1, 1)")
    enable_tracking(kit.maint, "public.t76_leaf")
    kit.owner.execute("CREATE TABLE public.t76_top (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);"
                      " GRANT ALL ON public.t76_top TO app_writer")
    attached = sqlstate_of(kit.owner, "ALTER TABLE public.t76_top ATTACH PARTITION public.t76_leaf FOR VALUES FROM (0) TO (100)")
    if attached is not None:
        return  # refused: safe
    kit.writer.execute("INSERT INTO public.t76_top VALUES (2, 2); UPDATE public.t76_top SET v = 9 WHERE id = 1;"
                       " DELETE FROM public.t76_top WHERE id = 2")
    got = kinds_by_key(kit.db, "public.t76_leaf.")
    assert got == {"2": ["insert", "delete"], "1": ["update"]}, f"attached (no refusal), then: {got}"


def test_c6_savepoints_and_exception_blocks_keep_exactly_the_surviving_writes(kit):
    """Attack: in one transaction the writer inserts row 5, rolls back to a savepoint over an update
    of row 1, writes row 6 in a PL/pgSQL block whose exception handler undoes it, and updates row 2 in
    a block that commits. Safe: events for 5 (insert) and 2 (update) only, and none for 1 or 6."""
    kit.owner.execute("CREATE TABLE public.t76_sv (id int PRIMARY KEY, v int); GRANT ALL ON public.t76_sv TO app_writer;"
                      " INSERT INTO public.t76_sv VALUES (1, 1), (2, 2)")
    enable_tracking(kit.maint, "public.t76_sv")
    w = kit.writer
    with w.transaction():
        w.execute("INSERT INTO public.t76_sv VALUES (5, 5)")
        w.execute("SAVEPOINT a")
        w.execute("UPDATE public.t76_sv SET v = 100 WHERE id = 1")
        w.execute("ROLLBACK TO SAVEPOINT a")
        w.execute("""DO $$ BEGIN
                        BEGIN INSERT INTO public.t76_sv VALUES (6, 6); RAISE EXCEPTION 'undo'; EXCEPTION WHEN OTHERS THEN NULL; END;
                        BEGIN UPDATE public.t76_sv SET v = 20 WHERE id = 2; EXCEPTION WHEN OTHERS THEN NULL; END;
                      END $$""")
    assert kinds_by_key(kit.db, "public.t76_sv.") == {"5": ["insert"], "2": ["update"]}


def test_c7_merge_into_a_leaf_partition_with_all_three_actions_is_captured(kit):
    """Attack: MERGE (refused on the tracked partitioned parent) is sent to a leaf partition instead,
    with WHEN MATCHED UPDATE, WHEN MATCHED DELETE and WHEN NOT MATCHED INSERT at once. Safe: each row
    changed has its event under the parent's prefix."""
    kit.owner.execute("""
        CREATE TABLE public.t76_mp (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
        CREATE TABLE public.t76_mp_a PARTITION OF public.t76_mp FOR VALUES FROM (0) TO (100);
        CREATE TABLE public.t76_mp_b PARTITION OF public.t76_mp FOR VALUES FROM (100) TO (200);
        GRANT ALL ON public.t76_mp, public.t76_mp_a, public.t76_mp_b TO app_writer;
        INSERT INTO public.t76_mp VALUES (1, 1), (2, 2), (101, 1)""")
    enable_tracking(kit.maint, "public.t76_mp")
    assert sqlstate_of(kit.writer, "MERGE INTO public.t76_mp m USING (VALUES (1)) s(id) ON m.id = s.id"
                                   " WHEN MATCHED THEN UPDATE SET v = 0") is not None
    kit.writer.execute("""MERGE INTO public.t76_mp_a m USING (VALUES (1, 10), (2, -1), (3, 30)) s(id, v) ON m.id = s.id
                          WHEN MATCHED AND s.v < 0 THEN DELETE
                          WHEN MATCHED THEN UPDATE SET v = s.v
                          WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.v)""")
    assert kinds_by_key(kit.db, "public.t76_mp.") == {"1": ["update"], "2": ["delete"], "3": ["insert"]}


def test_c8_on_conflict_whose_update_arm_an_owners_trigger_cancels(kit):
    """Attack: the owner's BEFORE UPDATE row trigger returns NULL for even keys (the row stays), so an
    INSERT ... ON CONFLICT DO UPDATE over rows 1..4 updates 1 and 3 only, and inserts 9. Safe: the log
    says exactly that: updates of 1 and 3 with their images, an insert of 9, nothing of 2 or 4."""
    kit.owner.execute("""
        CREATE TABLE public.t76_oc (id int PRIMARY KEY, v int); GRANT ALL ON public.t76_oc TO app_writer;
        INSERT INTO public.t76_oc SELECT g, 0 FROM generate_series(1, 4) g;
        CREATE FUNCTION public.t76_skip() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF OLD.id % 2 = 0 THEN RETURN NULL; END IF; RETURN NEW; END $$;
        CREATE TRIGGER t76_skip BEFORE UPDATE ON public.t76_oc FOR EACH ROW EXECUTE FUNCTION public.t76_skip()""")
    enable_tracking(kit.maint, "public.t76_oc")
    kit.writer.execute("INSERT INTO public.t76_oc SELECT g, 7 FROM generate_series(1, 4) g UNION ALL SELECT 9, 9"
                       " ON CONFLICT (id) DO UPDATE SET v = excluded.v")
    assert kit.db.execute("SELECT array_agg(v ORDER BY id) FROM public.t76_oc").fetchone()[0] == [7, 0, 7, 0, 9]
    got = kinds_by_key(kit.db, "public.t76_oc.")
    assert got == {"1": ["update"], "3": ["update"], "9": ["insert"]}, got
    images = {t: ra for k, t, rb, ra in events_of(kit.db, "public.t76_oc.")}
    assert images["1"] == {"id": 1, "v": 7} and images["3"] == {"id": 3, "v": 7}


def test_c11_a_prepared_transactions_writes_are_captured_exactly_once(kit, connect):
    """Attack: the writer prepares a transaction that writes the tracked table (when the cluster allows
    prepared transactions), seals run while it is prepared, then another session commits it. Safe:
    the events appear once, after the commit, and seal and verify; with prepared transactions off, the
    refused PREPARE leaves nothing behind."""
    kit.owner.execute("CREATE TABLE public.t76_px (id int PRIMARY KEY); GRANT ALL ON public.t76_px TO app_writer")
    enable_tracking(kit.maint, "public.t76_px")
    w = connect("app_writer", autocommit=False)
    w.execute("INSERT INTO public.t76_px VALUES (1)")
    try:
        w.execute("PREPARE TRANSACTION 't76_gid'")
        prepared = True
    except psycopg.Error:
        prepared = False
        w.rollback()
    try:
        assert seal_all(kit.maint) is None
        assert n_events(kit.db, "public.t76_px.insert") == 0
        if prepared:
            kit.db.execute("COMMIT PREPARED 't76_gid'")
            assert seal_all(kit.maint) is None
            assert n_events(kit.db, "public.t76_px.insert") == 1
            assert kit.db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 'public.t76_px.insert'").fetchone()[0] == 1
        assert both_verifiers(kit.db) == (True, True)
    finally:
        with suppress(psycopg.Error):
            kit.db.execute("ROLLBACK PREPARED 't76_gid'")


# =================================== class F: forged history ====================================

AUDIT_TABLES = ["event_intake", "event_log", "blocks", "seal_state", "idempotency_keys", "kind_prefixes",
                "tracked_tables", "rate_limits", "rate_counters", "prune_points", "api_tokens", "event_types",
                "quarantine", "archive_batches", "restored_events", "intake_drains", "owner_proofs",
                "secret_slots", "secret_values", "data_keys", "wrapped_data_keys", "master_keys", "_install",
                "archive_settings", "archive_claim"]


def _first_column(db, table: str) -> str:
    return db.execute("SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                      " AND NOT attisdropped ORDER BY attnum LIMIT 1", [f"audit.{table}"]).fetchone()[0]


@pytest.mark.parametrize("role", ["writer", "maint", "owner"])
def test_f1_no_role_writes_the_audit_schemas_tables_directly(kit, role):
    """Attack: each role (writer, reader, maintainer, a table owner, a plain login) tries, on every table
    of the audit schema: UPDATE ... WHERE false and DELETE ... WHERE false (privileges and BEFORE
    statement guards are checked even when no row matches), an INSERT of DEFAULT VALUES, an empty COPY
    FROM, and TRUNCATE. Safe: every one is refused by privileges or a guard (42501 or PA006), never
    reaching a constraint (which would mean the write itself was allowed) nor succeeding; and the
    catalogue gives the role no INSERT, UPDATE, DELETE or TRUNCATE there (the maintainer's INSERT on
    owner_proofs aside, through which it proves it owns a table)."""
    conn = getattr(kit, role)
    record(kit.writer, "t76.some", payload={"a": 1})
    assert seal_all(kit.maint) is None
    record(kit.writer, "t76.pending")
    before = kit.db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.event_log)").fetchone()
    allowed = []
    for table in AUDIT_TABLES:
        if kit.db.execute("SELECT to_regclass(%s)", [f"audit.{table}"]).fetchone()[0] is None:
            continue
        col = _first_column(kit.db, table)
        attempts = {
            "update": f"UPDATE audit.{table} SET {col} = {col} WHERE false",
            "delete": f"DELETE FROM audit.{table} WHERE false",
            "insert": f"INSERT INTO audit.{table} DEFAULT VALUES",
            "truncate": f"TRUNCATE audit.{table}",
        }
        for op, statement in attempts.items():
            state = sqlstate_of(conn, statement)
            if state not in ("42501", "PA006"):
                allowed.append((table, op, state))
        try:
            with conn.cursor().copy(f"COPY audit.{table} FROM STDIN"):
                pass
            allowed.append((table, "copy", None))
        except psycopg.Error as e:
            if e.sqlstate not in ("42501", "PA006"):
                allowed.append((table, "copy", e.sqlstate))
        oid = kit.db.execute("SELECT %s::regclass::oid", [f"audit.{table}"]).fetchone()[0]
        held = conn.execute("SELECT array_remove(ARRAY[CASE WHEN has_table_privilege(%(t)s, 'INSERT') THEN 'INSERT' END,"
                            " CASE WHEN has_table_privilege(%(t)s, 'UPDATE') THEN 'UPDATE' END,"
                            " CASE WHEN has_table_privilege(%(t)s, 'DELETE') THEN 'DELETE' END,"
                            " CASE WHEN has_table_privilege(%(t)s, 'TRUNCATE') THEN 'TRUNCATE' END], NULL)",
                            {"t": oid}).fetchone()[0]
        if held and not (role == "maint" and table == "owner_proofs" and held == ["INSERT"]):
            allowed.append((table, "holds", held))
    # The maintainer proves ownership of its own tables in owner_proofs: that insert is its right.
    allowed = [a for a in allowed if not (role == "maint" and a[0] == "owner_proofs" and a[1] in ("insert", "copy")
                                          and a[2] in (None, "42501", "23502", "42704", "P0001"))]
    after = kit.db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.event_log)").fetchone()
    assert allowed == [], f"{role} got past privileges and guards: {allowed}"
    assert after == before
    assert both_verifiers(kit.db) == (True, True)


def test_f2_idempotency_keys_are_the_tenants_and_the_roles(kit):
    """Attack: tenant A records with key K; then tenant B, with the same key and content, through the
    parameter and through the session's setting; a maintainer login (another database role) with A's
    tenant, key and content; and tenant '' against tenant NULL. Safe: A's retry (same role, same
    tenant, same content) returns A's event; nobody else is ever handed A's event."""
    w = kit.writer
    first = record(w, "t76.idem", tenant_id="A", payload={"x": 1}, idempotency_key="K")
    again = record(w, "t76.idem", tenant_id="A", payload={"x": 1}, idempotency_key="K")
    assert again.id == first.id, "an honest retry must return the first event"
    b = record(w, "t76.idem", tenant_id="B", payload={"x": 1}, idempotency_key="K")
    assert b.id != first.id and b.tenant_id == "B"
    with w.transaction():
        w.execute("SELECT set_config('pgaudit_py.tenant_id', 'C', true)")
        c = record(w, "t76.idem", payload={"x": 1}, idempotency_key="K")
    assert c.id not in (first.id, b.id) and c.tenant_id == "C"
    try:
        m = record(kit.maint, "t76.idem", tenant_id="A", payload={"x": 1}, idempotency_key="K")
        assert m is None or m.id != first.id, "another database role was handed tenant A's event"
    except (PgAuditError, psycopg.Error):
        pass
    n = record(w, "t76.idem", payload={"x": 1}, idempotency_key="K2")
    e = record(w, "t76.idem", tenant_id="", payload={"x": 1}, idempotency_key="K2")
    assert e.id != n.id, "tenant '' was handed the event of no tenant"
    assert seal_all(kit.maint) is None and both_verifiers(kit.db) == (True, True)


def test_f3_a_retry_after_the_first_event_was_pruned_is_never_an_empty_event(kit):
    """Attack: a writer records with key K, the event is sealed and pruned; the writer retries with the
    same key and content. Safe: the retry is refused with a clear error, or returns an event that is in
    the log (a new one, or the first); never a row of NULLs passed off as the first event."""
    first = record(kit.writer, "t76.pruned", payload={"x": 1}, idempotency_key="PK")
    record(kit.writer, "t76.filler")
    assert seal_all(kit.maint) is None
    kit.db.execute("SELECT pg_sleep(0.05)")
    while prune_events(kit.maint, "1 millisecond").more:
        pass
    assert kit.db.execute("SELECT count(*) FROM audit.event_log WHERE id = %s", [first.id]).fetchone()[0] == 0, \
        "the prune did not remove the first event: the attack was not set up"
    try:
        got = record(kit.writer, "t76.pruned", payload={"x": 1}, idempotency_key="PK")
    except PgAuditError:
        return  # refused, with a reason: safe
    assert got is not None and got.id is not None and got.kind == "t76.pruned", f"the retry returned {got}"
    in_log = kit.db.execute("SELECT count(*) FROM audit.events WHERE id = %s", [got.id]).fetchone()[0]
    assert in_log == 1 or got.id == first.id


def test_f4_a_proof_made_for_ones_own_table_cannot_be_turned_to_anothers(kit):
    """Attack: the maintainer (member of t76_owner) proves it owns its own table A in owner_proofs, then
    tries to point the proof at mallory's table B (UPDATE, DELETE and re-INSERT with another role
    named), calls the SECURITY DEFINER helpers directly for B, and enable_tracking / disable_tracking /
    enable_rate_limit on B. Safe: B is never tracked or limited, and no tracking event names B."""
    kit.owner.execute("CREATE TABLE public.t76_mine (id int PRIMARY KEY)")
    kit.mallory.execute("CREATE TABLE public.t76_hers (id int PRIMARY KEY)")
    m = kit.maint
    tried = {}
    with suppress(psycopg.Error), m.transaction():
        m.execute("INSERT INTO audit.owner_proofs (relid) VALUES ('public.t76_mine'::regclass)")
        tried["update"] = sqlstate_of(m, "UPDATE audit.owner_proofs SET relid = 'public.t76_hers'::regclass")
        raise psycopg.Error("roll back")
    for name, call in {
        "register": "SELECT audit._register_tracking(jsonb_populate_record(NULL::audit.tracked_tables,"
                    " jsonb_build_object('relid', 'public.t76_hers'::regclass::oid, 'kind_prefix', 'x.hers')), md5(1::text)::uuid)",
        "proof_role": "INSERT INTO audit.owner_proofs (relid, role) VALUES ('public.t76_hers'::regclass, 't76_mallory')",
        "enable": "SELECT audit.enable_tracking('public.t76_hers'::regclass)",
        "limit": "SELECT audit.enable_rate_limit('public.t76_hers'::regclass)",
        "cover": "SELECT audit._cover_partition('public.t76_hers'::regclass, md5(1::text)::uuid)",
        "baseline": "SELECT audit_capture._take_baseline('public.t76_hers'::regclass, md5(1::text)::uuid)",
    }.items():
        tried[name] = sqlstate_of(m, call)
    tracked = kit.db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.t76_hers'::regclass").fetchone()[0]
    limited = kit.db.execute("SELECT count(*) FROM audit.rate_limits WHERE target = 'public.t76_hers'::regclass::oid::text").fetchone()[0]
    named = kit.db.execute("SELECT count(*) FROM audit.events WHERE target_id LIKE '%t76_hers%'").fetchone()[0]
    assert (tracked, limited, named) == (0, 0, 0), tried
    assert all(tried[k] is not None for k in ("update", "register", "proof_role", "enable", "limit", "baseline")), tried
    assert tried["register"] == "42501", tried  # EXECUTE, or the missing proof


def test_f5_a_claimed_actor_never_changes_the_database_role_recorded(kit):
    """Attack: the writer claims to be the superuser and the maintainer: actor_type 'db_role' with their
    names, through record()'s parameters and through the session's settings, for records and captured
    writes. Safe: each event's db_role is app_writer; the claims stay claims."""
    kit.owner.execute("CREATE TABLE public.t76_who (id int PRIMARY KEY); GRANT ALL ON public.t76_who TO app_writer")
    enable_tracking(kit.maint, "public.t76_who")
    w = kit.writer
    record(w, "t76.claim", actor_type="db_role", actor_id=kit.db.info.user)
    with w.transaction():
        w.execute("SELECT set_config('pgaudit_py.actor_type', 'db_role', true), set_config('pgaudit_py.actor_id', 'app_maintainer', true)")
        record(w, "t76.claim")
        w.execute("INSERT INTO public.t76_who VALUES (1)")
    roles = kit.db.execute("SELECT DISTINCT db_role FROM audit.events WHERE kind IN ('t76.claim', 'public.t76_who.insert')").fetchall()
    assert roles == [("app_writer",)], roles


# ============================ class L: locale and settings ============================

HOSTILE_SETTINGS = {
    "numbers": {"extra_float_digits": "-15", "lc_monetary": "'de_DE.UTF-8'", "lc_numeric": "'de_DE.UTF-8'",
                "bytea_output": "escape"},
    "all": {"DateStyle": "'German, YMD'", "IntervalStyle": "postgres_verbose", "TimeZone": "'<+0330>-03:30'",
            "extra_float_digits": "-15", "bytea_output": "escape", "lc_monetary": "'de_DE.UTF-8'",
            "search_path": "'public, pg_catalog'", "standard_conforming_strings": "off", "quote_all_identifiers": "on",
            "lc_time": "'de_DE.UTF-8'", "timezone_abbreviations": "'India'"},
}

TYPED_ROW = ("INSERT INTO public.t76_ty VALUES (%s, 1349.01::float8, 0.1::float4, 1.10::numeric, '1 year 2 mons 3 days 04:05:06.5'::interval,"
             " decode('00ff27', 'hex'), '2026-01-02T03:04:05.678901+00'::timestamptz, '2026-01-02T03:04:05'::timestamp,"
             " '2026-01-02'::date, '03:04:05'::time, 12.34::numeric::money,"
             " tstzrange('2026-01-01T00:00:00+00', '2026-01-02T00:00:00+00'), '{\"a\": [1, 2.50]}'::jsonb, ARRAY['a', 'b c'],"
             " point(1.5, -0.25), true)")


@pytest.mark.parametrize("which", sorted(HOSTILE_SETTINGS))
def test_l1_a_writers_stored_settings_never_change_an_image(kit, connect, which):
    """Attack: a writer login whose role carries, in this database, settings that change how values print
    (the set named). It writes a row identical to one the plain writer wrote, then changes 1349.01 to
    1349.02 (which extra_float_digits = -15 prints alike) and 1.10 to 1.1. Safe: the two inserts' images
    are equal but for the key, and both updates are captured."""
    kit.owner.execute("""CREATE TABLE public.t76_ty (id int PRIMARY KEY, f8 float8, f4 float4, n numeric, iv interval, b bytea,
                         tz timestamptz, ts timestamp, d date, t time, m money, r tstzrange, j jsonb, a text[], p point,
                         bo boolean);
                         GRANT ALL ON public.t76_ty TO app_writer""")
    enable_tracking(kit.maint, "public.t76_ty")
    kit.writer.execute(TYPED_ROW, [1])
    with login(kit.db, connect, "t76_w", "app_writer", HOSTILE_SETTINGS[which]) as w:
        w.execute(TYPED_ROW, [2])
        w.execute("UPDATE public.t76_ty SET f8 = 1349.02::float8 WHERE id = 2")
        w.execute("UPDATE public.t76_ty SET n = 1.1 WHERE id = 2")
    images = {t: ra for k, t, rb, ra in events_of(kit.db, "public.t76_ty.insert")}
    one, two = dict(images["1"]), dict(images["2"])
    one.pop("id"), two.pop("id")
    assert one == two, {k: (one[k], two.get(k)) for k in one if one[k] != two.get(k)}
    assert n_events(kit.db, "public.t76_ty.update") == 2
    assert seal_all(kit.maint) is None and both_verifiers(kit.db) == (True, True)


@pytest.mark.parametrize("isolation", ["'repeatable read'", "serializable"])
def test_l2_a_maintainer_whose_role_defaults_to_another_isolation_can_still_track_with_a_baseline(kit, connect, isolation):
    """Honest use: a maintainer login whose role's default_transaction_isolation (stored for this database)
    is not READ COMMITTED tracks its table with a baseline, seals and verifies through the Python package.
    Safe: each call works (the package takes care of the isolation a baseline needs), and the baseline
    images every row."""
    kit.owner.execute("CREATE TABLE public.t76_iso (id int PRIMARY KEY); INSERT INTO public.t76_iso SELECT generate_series(1, 5)")
    with login(kit.db, connect, "t76_m", "audit_maintainer", {"default_transaction_isolation": isolation}) as m:
        kit.db.execute("GRANT t76_owner TO t76_m")
        refused = {}
        try:
            for name, call in (("enable_tracking(baseline=True)", lambda: enable_tracking(m, "public.t76_iso", baseline=True)),
                               ("enable_tracking", lambda: enable_tracking(m, "public.t76_iso")),
                               ("record+seal", lambda: (record(kit.writer, "t76.iso"), seal(m))),
                               ("verify", lambda: both_verifiers(m))):
                try:
                    call()
                except Exception as e:  # noqa: BLE001
                    refused[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"
        finally:
            kit.db.execute("REVOKE t76_owner FROM t76_m")
    assert refused == {}, refused
    assert n_events(kit.db, "public.t76_iso.baseline") == 5


def test_l3_read_only_sessions_read_and_are_refused_writes_cleanly(kit, connect):
    """Honest use: a reader and a maintainer whose roles default to read-only transactions. Safe: status,
    both verifiers, list_events and row_history work; a seal is refused (or does nothing), with nothing
    moved or half-written."""
    kit.owner.execute("CREATE TABLE public.t76_ro (id int PRIMARY KEY); GRANT ALL ON public.t76_ro TO app_writer")
    enable_tracking(kit.maint, "public.t76_ro")
    kit.writer.execute("INSERT INTO public.t76_ro VALUES (1)")
    assert seal_all(kit.maint) is None
    kit.writer.execute("INSERT INTO public.t76_ro VALUES (2)")
    counts = "SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.event_log), (SELECT count(*) FROM audit.blocks)"
    before = kit.db.execute(counts).fetchone()
    with login(kit.db, connect, "t76_m", "audit_maintainer", {"default_transaction_read_only": "on"}) as m:
        status(m)
        assert both_verifiers(m) == (True, True)
        assert [e.kind for e in row_history(m, "public.t76_ro", "1")] == ["public.t76_ro.insert"]
        assert len(list_events(m, kind_prefix="public.t76_ro")) == 2
        seal_all(m)
    assert kit.db.execute(counts).fetchone() == before
    assert seal_all(kit.maint) is None and both_verifiers(kit.db) == (True, True)


ODD_NAMES = ["t76_b\\'ack", "t76_'; DROP TABLE x; --", 't76_"q"', "t76_%s%L$1", "t76_$$x$$"]


def test_l4_backslashes_and_quotes_in_names_under_non_standard_strings(kit, connect):
    """Attack: the maintainer's and the writer's roles carry standard_conforming_strings = off and
    backslash_quote = on (stored for this database); the table's and its columns' names hold
    backslashes, quotes, dollar quotes and format() specifiers. Safe: tracking, capture, seal and
    verify work, and each image's keys are the columns' names exactly."""
    settings = {"standard_conforming_strings": "off", "backslash_quote": "on", "escape_string_warning": "off"}
    table = "t76_b\\'a\\\\ck"
    cols = ["id", "c\\'1", "c\\\\2", "c'';3", "c$$4", "c%I5"]
    quoted = ", ".join(psycopg.sql.Identifier(c).as_string(kit.db) + (" int PRIMARY KEY" if c == "id" else " text") for c in cols)
    qt = psycopg.sql.Identifier("public", table).as_string(kit.db)
    kit.owner.execute(f"CREATE TABLE {qt} ({quoted}); GRANT ALL ON {qt} TO app_writer")
    with login(kit.db, connect, "t76_m", "audit_maintainer", settings) as m, \
         login(kit.db, connect, "t76_w", "app_writer", settings) as w:
        kit.db.execute("GRANT t76_owner TO t76_m")
        try:
            enable_tracking(m, qt, redact_columns=[cols[2]], exclude_columns=[cols[3]], kind_prefix="t76.odd")
        finally:
            kit.db.execute("REVOKE t76_owner FROM t76_m")
        w.execute(f"INSERT INTO {qt} VALUES (1, %s, %s, %s, %s, %s)", ["a\\'b", "c", "d", "$$e$$", "%s"])
        w.execute(f"UPDATE {qt} SET {psycopg.sql.Identifier(cols[1]).as_string(kit.db)} = 'z\\\\'")
    rows = kit.db.execute("SELECT kind, row_after FROM audit.events WHERE starts_with(kind, 't76.odd.') ORDER BY intake_id").fetchall()
    assert [k.rsplit(".", 1)[1] for k, _ in rows] == ["insert", "update"], rows
    assert set(rows[0][1]) == {"id", cols[1], cols[2], cols[4], cols[5]}, rows[0][1]
    assert rows[0][1][cols[1]] == "a\\'b" and rows[0][1][cols[2]] != "c" and rows[0][1][cols[4]] == "$$e$$"
    assert seal_all(kit.maint) is None and both_verifiers(kit.db) == (True, True)


def test_l5_error_classes_are_the_same_in_english_and_german(kit):
    """Honest use: the same wrong calls under lc_messages C and de_DE.UTF-8 (the superuser's session).
    Safe: each raises the same exception class with the same SQLSTATE in both."""
    kit.owner.execute("CREATE VIEW public.t76_view AS SELECT 1 AS x")
    kit.db.execute("SELECT audit.register_event_type('t76.strict', '{\"type\": \"object\", \"required\": [\"a\"]}', true)")
    record(kit.db, "t76.idem", payload={"a": 1}, idempotency_key="E")
    calls = {
        "kind": lambda c: record(c, "9bad kind"),
        "outcome": lambda c: record(c, "t76.x", outcome="maybe"),
        "wild": lambda c: record(c, "t76.x", payload={"n": Decimal("1e400")}),
        "strict": lambda c: record(c, "t76.strict", payload={"b": 1}),
        "idem": lambda c: record(c, "t76.idem", payload={"a": 2}, idempotency_key="E"),
        "reserved": lambda c: record(c, "audit.pruned"),
        "view": lambda c: enable_tracking(c, "public.t76_view"),
        "missing": lambda c: enable_tracking(c, "public.t76_nothing_here"),
    }
    seen = {}
    for locale in ("C", "de_DE.UTF-8"):
        kit.db.execute(f"SET lc_messages = '{locale}'")
        for name, call in calls.items():
            try:
                call(kit.db)
                seen.setdefault(name, []).append(("no error", None))
            except Exception as e:  # noqa: BLE001
                seen.setdefault(name, []).append((type(e).__name__, getattr(e, "sqlstate", None)))
    kit.db.execute("RESET lc_messages")

    different = {k: v for k, v in seen.items() if v[0] != v[1] or v[0][0] == "no error"}
    assert different == {}, different


def test_l6_a_statement_timeout_on_the_writers_role_never_splits_a_write_from_its_events(kit, connect):
    """Attack: the writer's role carries a short statement_timeout, so that a bulk write may be cancelled
    at any point, in the capture too. Safe: after each try, the table's rows and the captured inserts
    agree: all of a statement's rows with their events, or none of either."""
    kit.owner.execute("CREATE TABLE public.t76_to (id int PRIMARY KEY, pad text); GRANT ALL ON public.t76_to TO app_writer")
    enable_tracking(kit.maint, "public.t76_to")
    start = 0
    with login(kit.db, connect, "t76_w", "app_writer", {"statement_timeout": "'60ms'"}) as w:
        for n in (2000, 8000, 20000, 40000):
            with suppress(psycopg.Error):
                w.execute("INSERT INTO public.t76_to SELECT g, repeat('x', 50) FROM generate_series(%s, %s) g", [start, start + n - 1])
            start += n
    rows = kit.db.execute("SELECT count(*) FROM public.t76_to").fetchone()[0]
    assert rows == n_events(kit.db, "public.t76_to.insert")
    assert seal_all(kit.maint) is None and both_verifiers(kit.db) == (True, True)


# ======================================= class V: verifier =======================================


def test_v1_a_json_column_holding_escapes_jsonb_refuses_is_written_and_captured(kit):
    """Honest use: a json column (not jsonb) takes text jsonb cannot hold: an escaped NUL, a lone
    surrogate, an unpaired low surrogate, numbers past numeric's range (1e200000, 1e-20000); PostgreSQL
    stores each as written. The writer inserts and
    updates such rows in a tracked table. Safe: what PostgreSQL accepts for the table is written and
    captured (a capture that cannot turn the row into jsonb must not make the table refuse its own
    values), and the log verifies."""
    kit.owner.execute("CREATE TABLE public.t76_js (id int PRIMARY KEY, j json); GRANT ALL ON public.t76_js TO app_writer")
    enable_tracking(kit.maint, "public.t76_js")
    values = ['{"a": "\\u0000"}', '{"a": "x\\ud800y"}', '["\\udc00"]', '{"\\u0000": 1}', '{"n": 1e200000}', '[1e-20000]']
    accepted = [v for v in values if sqlstate_of(kit.db, "SELECT %s::json", [v]) is None]
    assert accepted, "PostgreSQL refused every value: the attack was not set up"
    refused = {}
    for i, v in enumerate(accepted):
        state = sqlstate_of(kit.writer, "INSERT INTO public.t76_js VALUES (%s, %s::json)", [i, v])
        if state:
            refused[v] = state
    assert refused == {}, f"the tracked table refused values PostgreSQL's json accepts: {refused}"
    assert n_events(kit.db, "public.t76_js.insert") == len(accepted)
    assert seal_all(kit.maint) is None and both_verifiers(kit.db) == (True, True)


TAMPERS = {
    "scale": ("UPDATE audit.event_log SET row_after = jsonb_set(row_after, '{n}', '1.00') WHERE kind = 'public.t76_vv.insert'",
              "1.0 -> 1.00 in a captured image (equal as jsonb)"),
    "trailing_zero": ("UPDATE audit.event_log SET payload = jsonb_set(payload, '{half}', '2.5') WHERE kind = 't76.vv'",
                      "2.50 -> 2.5 in a payload (equal as jsonb)"),
    "nfd": ("UPDATE audit.event_log SET target_id = normalize(target_id, NFD) WHERE kind = 'public.t76_vv.insert'",
            "the key's NFC text -> NFD"),
    "microsecond": ("UPDATE audit.event_log SET occurred_at = occurred_at + interval '1 microsecond' WHERE kind = 't76.vv'",
                    "a microsecond of time"),
    "empty_tenant": ("UPDATE audit.event_log SET tenant_id = '' WHERE kind = 't76.vv'", "'' for a NULL tenant"),
    "big_int": ("UPDATE audit.event_log SET payload = jsonb_set(payload, '{big}', to_jsonb(12345678901234567890123456789012345678901234567890::numeric + 1))"
                " WHERE kind = 't76.vv'", "the last digit of a 50-digit integer"),
    "tiny": ("UPDATE audit.event_log SET payload = jsonb_set(payload, '{tiny}', to_jsonb((payload ->> 'tiny')::numeric * 1.0))"
             " WHERE kind = 't76.vv'", "one more trailing zero after 1E-399 (equal as jsonb)"),
}


def _hostile_log(kit) -> None:
    kit.owner.execute("CREATE TABLE public.t76_vv (k text PRIMARY KEY, n numeric, j jsonb); GRANT ALL ON public.t76_vv TO app_writer")
    enable_tracking(kit.maint, "public.t76_vv")
    kit.writer.execute("INSERT INTO public.t76_vv VALUES (%s, 1.0, %s::jsonb)",
                       ["caf\u00e9\u200f\u202e\ufdd0\U0010fffe", '{"m": -0, "e": 1E-400, "w": 1e400, "d": ' + "9" * 300 + "}"])
    kit.writer.execute("SELECT audit.record('t76.vv', payload => %s::jsonb)",
                       ['{"z": -0, "half": 2.50, "big": 12345678901234567890123456789012345678901234567890, "tiny": 0.1E-398,'
                        ' "s": "e\u0301\u202e\ufeff", "deep": ' + "[" * 500 + "]" * 500 + "}"])


def test_v2_hostile_values_seal_and_verify_in_both(kit):
    """Honest use: a captured row whose key holds NFC text, RTL marks and non-characters, a numeric 1.0,
    a jsonb of -0, 1E-400, 1e400 and a 300-digit integer; a record() payload of -0, a 50-digit integer,
    0.1E-398, combining marks and 500-deep nesting. Safe: sealed, both verifiers say intact."""
    _hostile_log(kit)
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.db) == (True, True)
    assert verify_chain(kit.reader).ok


@pytest.mark.parametrize("how", sorted(TAMPERS))
def test_v3_tampering_that_keeps_a_value_equal_as_jsonb_is_caught_by_both(kit, how):
    """Attack: after sealing the hostile log of v2, a superuser changes one sealed event behind the
    guards in a way that jsonb equality (or a careless parser) does not see: the case named. Safe: both
    verifiers report the log as changed."""
    _hostile_log(kit)
    assert seal_all(kit.maint) is None
    statement, what = TAMPERS[how]
    before = kit.db.execute("SELECT md5(string_agg(t::text, '|' ORDER BY seq)) FROM audit.event_log t").fetchone()[0]
    tamper(kit.db, statement)
    after = kit.db.execute("SELECT md5(string_agg(t::text, '|' ORDER BY seq)) FROM audit.event_log t").fetchone()[0]
    assert before != after, f"the tamper ({what}) changed nothing: the attack was not set up"
    assert both_verifiers(kit.db) == (False, False), f"{what}: (audit.verify, Python) = {both_verifiers(kit.db)}"


def test_v4_columns_named_like_the_capture_bodys_own_aliases(kit):
    """Attack: a tracked table whose columns are named as the generated capture body's aliases and
    variables (x, q, j, p, o, n, i, r, s, k, alike, side, v_new, v_old, v_role, new_rows, old_rows,
    tg_op), with an enum column (the sandbox's path), a tenant column named side, an excluded
    column named alike and a redacted one named q. Safe: images hold exactly the right values, an update
    of only the excluded column is no event, a change of the tenant is recorded under both tenants."""
    names = ["x", "j", "p", "o", "n", "i", "r", "s", "k", "v_new", "v_old", "v_role", "new_rows", "old_rows", "tg_op"]
    kit.owner.execute("CREATE TYPE public.t76_mood AS ENUM ('calm', 'cross')")
    cols = ", ".join(f"{c} int" for c in names)
    kit.owner.execute(f"CREATE TABLE public.t76_al (id int PRIMARY KEY, side text, alike int, q text, mood public.t76_mood, {cols});"
                      " GRANT ALL ON public.t76_al TO app_writer")
    enable_tracking(kit.maint, "public.t76_al", tenant_column="side", exclude_columns=["alike"], redact_columns=["q"])
    vals = ", ".join(str(i + 10) for i in range(len(names)))
    kit.writer.execute(f"INSERT INTO public.t76_al VALUES (1, 'T1', 5, 'secret', 'calm', {vals})")
    kit.writer.execute("UPDATE public.t76_al SET alike = 6")
    kit.writer.execute("UPDATE public.t76_al SET o = 99, side = 'T2'")
    ev = kit.db.execute("SELECT kind, tenant_id, row_before, row_after FROM audit.events WHERE starts_with(kind, 'public.t76_al.')"
                        " ORDER BY intake_id").fetchall()
    ins = [e for e in ev if e[0].endswith(".insert")]
    assert len(ins) == 1 and ins[0][1] == "T1"
    image = ins[0][3]
    assert "alike" not in image and image["q"] != "secret" and image["mood"] == "calm"
    assert all(image[c] == i + 10 for i, c in enumerate(names)), image
    # The excluded column's change is no event; the tenant's change is told to each tenant (the old
    # image to T1, the new to T2).
    upd = [(e[1], (e[2] or {}).get("o"), (e[3] or {}).get("o")) for e in ev if e[0].endswith(".update")]
    assert upd == [("T1", 13, None), ("T2", None, 99)], ev
    assert seal_all(kit.maint) is None and both_verifiers(kit.db) == (True, True)


def test_v5_keys_differing_only_by_normalization_have_separate_histories(kit):
    """Attack: two rows whose text keys are the same word in NFC and NFD ('café'), and a third with a
    right-to-left override; each is changed a different number of times. Safe: row_history of each key
    holds exactly its own events, pending and sealed."""
    kit.owner.execute("CREATE TABLE public.t76_nf (k text PRIMARY KEY, v int); GRANT ALL ON public.t76_nf TO app_writer")
    enable_tracking(kit.maint, "public.t76_nf")
    nfc, nfd, rtl = "caf\u00e9", "cafe\u0301", "\u202efac"
    w = kit.writer
    for key in (nfc, nfd, rtl):
        w.execute("INSERT INTO public.t76_nf VALUES (%s, 0)", [key])
    w.execute("UPDATE public.t76_nf SET v = 1 WHERE k = %s", [nfd])
    w.execute("UPDATE public.t76_nf SET v = 2 WHERE k = %s", [nfd])
    w.execute("DELETE FROM public.t76_nf WHERE k = %s", [rtl])
    want = {nfc: ["insert"], nfd: ["insert", "update", "update"], rtl: ["insert", "delete"]}
    for sealed in (False, True):
        if sealed:
            assert seal_all(kit.maint) is None
        got = {key: [e.kind.rsplit(".", 1)[1] for e in row_history(kit.reader, "public.t76_nf", key)] for key in want}
        assert got == want, (sealed, got)
    assert both_verifiers(kit.db) == (True, True)


def test_v6_a_numeric_keys_scale_change_is_recorded(kit):
    """Attack: a numeric primary key's value is changed from 1.0 to 1.00 (equal by =, so no constraint
    sees a change, but stored and printed otherwise), and a float8 column from 0 to -0. Safe: both
    updates are events (the stored value changed), and the row's history can be read under its new key."""
    kit.owner.execute("CREATE TABLE public.t76_nk (id numeric PRIMARY KEY, f float8); GRANT ALL ON public.t76_nk TO app_writer;"
                      " INSERT INTO public.t76_nk VALUES (1.0, 0)")
    enable_tracking(kit.maint, "public.t76_nk")
    kit.writer.execute("UPDATE public.t76_nk SET id = 1.00")
    kit.writer.execute("UPDATE public.t76_nk SET f = '-0'")
    assert kit.db.execute("SELECT id::text, f::text FROM public.t76_nk").fetchone() == ("1.00", "-0")
    kinds = [r[0] for r in kit.db.execute("SELECT kind FROM audit.events WHERE starts_with(kind, 'public.t76_nk.') ORDER BY intake_id")]
    assert len(kinds) == 2, kinds
    hist = [e.kind.rsplit(".", 1)[1] for e in row_history(kit.reader, "public.t76_nk", "1.00")]
    assert hist and hist[-1] == "update", hist
    assert seal_all(kit.maint) is None and both_verifiers(kit.db) == (True, True)


def test_v7_large_and_deep_captured_values_verify_and_tampering_with_them_is_caught(kit):
    """Honest use, then attack: a captured jsonb 3,000 deep, a 2 MiB text (past the 1 MiB image bound:
    stored as its size and SHA-256) and a json column with duplicate keys; sealed, both verifiers agree;
    then the stored marker's size is changed by one. Safe: intact before, caught by both after."""
    kit.owner.execute("CREATE TABLE public.t76_big (id int PRIMARY KEY, d jsonb, t text, j json); GRANT ALL ON public.t76_big TO app_writer")
    enable_tracking(kit.maint, "public.t76_big")
    kit.writer.execute("INSERT INTO public.t76_big VALUES (1, %s::jsonb, repeat('\u00e9', 1048576), '{\"a\":1,\"a\":2}')",
                       ["[" * 3000 + "]" * 3000])
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.db) == (True, True)
    marker = kit.db.execute("SELECT row_after -> 't' FROM audit.event_log WHERE kind = 'public.t76_big.insert'").fetchone()[0]
    assert isinstance(marker, dict) and "$omitted" in marker, marker
    tamper(kit.db, "UPDATE audit.event_log SET row_after = jsonb_set(row_after, '{t,$omitted,bytes}',"
                   " to_jsonb((row_after #>> '{t,$omitted,bytes}')::bigint + 1)) WHERE kind = 'public.t76_big.insert'")
    assert both_verifiers(kit.db) == (False, False)


def test_v1b_rows_holding_such_json_before_tracking_stay_changeable(kit):
    """Honest use: rows whose json column holds an escaped NUL or a lone surrogate (accepted by
    PostgreSQL) were written before the table was tracked. Then the maintainer tracks it (with a
    baseline, and without), and the writer updates another column of those rows and deletes one.
    Safe: tracking starts, and the rows can still be changed and deleted, each change captured."""
    kit.owner.execute("CREATE TABLE public.t76_js2 (id int PRIMARY KEY, v int, j json); GRANT ALL ON public.t76_js2 TO app_writer;"
                      " INSERT INTO public.t76_js2 VALUES (1, 0, '{\"a\": \"\\u0000\"}'), (2, 0, '[\"\\ud800\"]'), (3, 0, '{}')")
    outcomes = {"baseline": sqlstate_of(kit.maint, "SELECT audit.enable_tracking('public.t76_js2'::regclass, baseline => true)")}
    if outcomes["baseline"]:
        outcomes["plain"] = sqlstate_of(kit.maint, "SELECT audit.enable_tracking('public.t76_js2'::regclass)")
    outcomes["update"] = sqlstate_of(kit.writer, "UPDATE public.t76_js2 SET v = 1 WHERE id = 1")
    outcomes["delete"] = sqlstate_of(kit.writer, "DELETE FROM public.t76_js2 WHERE id = 2")
    outcomes["other_row"] = sqlstate_of(kit.writer, "UPDATE public.t76_js2 SET v = 1 WHERE id = 3")
    assert {k: v for k, v in outcomes.items() if v} == {}, outcomes
    assert kinds_by_key(kit.db, "public.t76_js2.") .get("1", [])[-1:] == ["update"]


def test_c1b_two_updates_and_two_deletes_of_the_table_in_one_statement(kit):
    """Attack: one statement holds two UPDATE CTEs (rows 1 and 2, row 2 through a join that matches it
    twice) and two DELETE CTEs (rows 3 and 4) of the tracked table, and an INSERT of row 9 (PostgreSQL
    shares one set of transition tables among the same table's modifying nodes of a statement). Safe:
    exactly one event per changed row, with its own before and after images."""
    kit.owner.execute("CREATE TABLE public.t76_c1b (id int PRIMARY KEY, v int); GRANT ALL ON public.t76_c1b TO app_writer;"
                      " INSERT INTO public.t76_c1b SELECT g, 0 FROM generate_series(1, 5) g")
    enable_tracking(kit.maint, "public.t76_c1b")
    kit.writer.execute("""WITH u1 AS (UPDATE public.t76_c1b SET v = 10 WHERE id = 1 RETURNING 1),
                               u2 AS (UPDATE public.t76_c1b t SET v = 20 FROM (VALUES (2), (2)) s(id) WHERE t.id = s.id RETURNING 1),
                               d1 AS (DELETE FROM public.t76_c1b WHERE id = 3 RETURNING 1),
                               d2 AS (DELETE FROM public.t76_c1b t USING (VALUES (4), (4)) s(id) WHERE t.id = s.id RETURNING 1)
                          INSERT INTO public.t76_c1b SELECT 9, (SELECT count(*) FROM u1) + (SELECT count(*) FROM u2)
                                                               + (SELECT count(*) FROM d1) + (SELECT count(*) FROM d2)""")
    d = lambda v: json.dumps(v, sort_keys=True)  # noqa: E731
    rows = sorted((t, k.rsplit(".", 1)[1], d(rb), d(ra)) for k, t, rb, ra in events_of(kit.db, "public.t76_c1b."))
    want = sorted([("1", "update", d({"id": 1, "v": 0}), d({"id": 1, "v": 10})),
                   ("2", "update", d({"id": 2, "v": 0}), d({"id": 2, "v": 20})),
                   ("3", "delete", d({"id": 3, "v": 0}), "null"),
                   ("4", "delete", d({"id": 4, "v": 0}), "null"),
                   ("9", "insert", "null", d({"id": 9, "v": 4}))])
    assert rows == want, rows


def test_c12_cross_partition_moves_reshaped_or_suppressed_by_the_owners_triggers_pair_right(kit):
    """Attack: one UPDATE moves rows 1..6 to another partition; the destination's BEFORE INSERT row
    trigger (the owner's) rewrites v for odd ids and suppresses id 4's insert (PostgreSQL then deletes
    the row and inserts nothing). The capture pairs old and new rows by position. Safe: the statement
    is refused, or every event's before and after images are of one row (same id), with the stored
    values; and row 4's end is not told as another row's change."""
    kit.owner.execute("""
        CREATE TABLE public.t76_pm (id int, part int, v int, PRIMARY KEY (id, part)) PARTITION BY LIST (part);
        CREATE TABLE public.t76_pm_1 PARTITION OF public.t76_pm FOR VALUES IN (1);
        CREATE TABLE public.t76_pm_2 PARTITION OF public.t76_pm FOR VALUES IN (2);
        GRANT ALL ON public.t76_pm, public.t76_pm_1, public.t76_pm_2 TO app_writer;
        INSERT INTO public.t76_pm SELECT g, 1, g FROM generate_series(1, 6) g;
        CREATE FUNCTION public.t76_reshape() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.id = 4 THEN RETURN NULL; END IF;
            IF NEW.id % 2 = 1 THEN NEW.v := NEW.v * 100; END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER t76_reshape BEFORE INSERT ON public.t76_pm_2 FOR EACH ROW EXECUTE FUNCTION public.t76_reshape()""")
    enable_tracking(kit.maint, "public.t76_pm")
    refused = sqlstate_of(kit.writer, "UPDATE public.t76_pm SET part = 2, v = v + 1")
    stored = dict(kit.db.execute("SELECT id, v FROM public.t76_pm").fetchall())
    events = [(k.rsplit(".", 1)[1], rb, ra) for k, t, rb, ra in events_of(kit.db, "public.t76_pm.")]
    if refused:
        assert events == [] and len(stored) == 6, (refused, events, stored)
        return
    for _kind, rb, ra in events:
        if rb and ra:
            assert rb["id"] == ra["id"], f"a before image paired with another row's after: {events}"
            assert stored.get(ra["id"]) == ra["v"], (ra, stored)
    assert 4 not in stored
    assert not any(ra and ra["id"] == 4 for _, _, ra in events), events


def test_v8_the_verifiers_agree_under_a_readers_hostile_session_and_odd_client_addresses(kit, connect):
    """Attack: events whose client address the application names in odd forms (IPv4-mapped IPv6, a long
    IPv6 form, loopback ::1), with an application_name of combining marks and RTL; then both verifiers
    run in a reader session whose role stores TimeZone +05:45, IntervalStyle iso_8601, extra_float_digits
    -15, bytea_output escape, lc_monetary and lc_numeric de_DE, search_path with mallory's look-alikes
    first. Safe: both say intact; after one client address is changed to another spelling of itself
    that PostgreSQL stores otherwise, both catch it."""
    kit.db.execute(LOOKALIKES)
    w = kit.writer
    for addr in ("::ffff:1.2.3.4", "2001:0db8:0000:0000:0000:0000:0000:0001", "::1", "10.0.0.1"):
        with w.transaction():
            w.execute("SELECT set_config('pgaudit_py.client_addr', %s, true), set_config('application_name', %s, true)",
                      [addr, "a\u0301\u202e\u200f"])
            record(w, "t76.addr", payload={"a": addr})
    assert seal_all(kit.maint) is None
    settings = {"TimeZone": "'Asia/Kathmandu'", "IntervalStyle": "iso_8601", "extra_float_digits": "-15",
                "bytea_output": "escape", "lc_monetary": "'de_DE.UTF-8'", "lc_numeric": "'de_DE.UTF-8'",
                "search_path": "'t76_evil, public, pg_catalog'"}
    with login(kit.db, connect, "t76_r", "audit_reader", settings) as r:
        seen = spy_sink([r])
        assert both_verifiers(r) == (True, True)
        assert seen == []
        tamper(kit.db, "UPDATE audit.event_log SET client_addr = '::ffff:1.2.3.4/128'::inet WHERE client_addr = '::ffff:1.2.3.4'::inet"
                       " AND kind = 't76.addr'")
        tamper(kit.db, "UPDATE audit.event_log SET client_addr = '1.2.3.4' WHERE client_addr = '::ffff:1.2.3.4'::inet AND kind = 't76.addr'")
        assert both_verifiers(r) == (False, False)


@pytest.mark.parametrize("option", ["exclude_columns", "redact_columns"])
def test_v1d_a_json_column_excluded_or_redacted_from_the_images_does_not_stop_the_tables_writes(kit, option):
    """Honest use: the maintainer keeps the json column out of the log (excluded: not stored; or
    redacted: stored as a marker). The writer then stores json PostgreSQL accepts but jsonb does not
    (an escaped NUL) in that column, and updates and deletes rows. Safe: each write works and is
    captured: a value the log never stores cannot make the table refuse it."""
    kit.owner.execute("CREATE TABLE public.t76_jx (id int PRIMARY KEY, v int, j json); GRANT ALL ON public.t76_jx TO app_writer")
    enable_tracking(kit.maint, "public.t76_jx", **{option: ["j"]})
    value = '{"a": "\\u0000"}'
    outcomes = {"insert": sqlstate_of(kit.writer, "INSERT INTO public.t76_jx VALUES (1, 0, %s::json)", [value]),
                "update": sqlstate_of(kit.writer, "UPDATE public.t76_jx SET v = 1 WHERE id = 1"),
                "delete": sqlstate_of(kit.writer, "DELETE FROM public.t76_jx WHERE id = 1")}
    assert {k: v for k, v in outcomes.items() if v} == {}, outcomes
    assert kinds_by_key(kit.db, "public.t76_jx.") == {"1": ["insert", "update", "delete"]}


def test_l7_a_sealer_whose_role_cancels_its_statements_early_never_splits_or_repeats_a_round(kit, connect):
    """Attack: a maintainer login whose role stores a 25 ms statement_timeout (and JIT forced on at
    every cost, plan_cache_mode force_generic_plan) seals 20,000 captured events in rounds of 100 to
    4,000, some of them cancelled part way. Safe: after a plain seal finishes the rest, every event is in the
    log once, seqs have no gap, nothing is quarantined, and both verifiers say intact."""
    kit.owner.execute("CREATE TABLE public.t76_sl (id int PRIMARY KEY, pad text); GRANT ALL ON public.t76_sl TO app_writer")
    enable_tracking(kit.maint, "public.t76_sl")
    kit.writer.execute("INSERT INTO public.t76_sl SELECT g, repeat('y', 40) FROM generate_series(1, 20000) g")
    settings = {"statement_timeout": "'25ms'", "jit": "on", "jit_above_cost": "0", "jit_inline_above_cost": "0",
                "jit_optimize_above_cost": "0", "plan_cache_mode": "force_generic_plan"}
    cancelled = done = 0
    with login(kit.db, connect, "t76_m", "audit_maintainer", settings) as m:
        for i in range(40):
            try:
                done += bool(seal(m, (100, 400, 1600, 4000)[i % 4]).sealed)
            except Exception:  # noqa: BLE001
                cancelled += 1
    assert cancelled and done, f"the timeout cancelled {cancelled} rounds and let {done} through: not set up"
    assert seal_all(kit.maint) is None
    row = kit.db.execute("SELECT count(*), count(DISTINCT id), max(seq) - min(seq) + 1 FROM audit.event_log"
                         " WHERE kind = 'public.t76_sl.insert'").fetchone()
    assert row[0] == row[1] == 20000, (cancelled, row)
    gaps = kit.db.execute("SELECT count(*) FROM (SELECT seq - lag(seq) OVER (ORDER BY seq) AS d FROM audit.event_log) x"
                          " WHERE d <> 1").fetchone()[0]
    assert gaps == 0 and kit.db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0] == 0
    assert both_verifiers(kit.db) == (True, True)


KEY_SPELLINGS = {
    # (key column type, the stored key, the key as an honest reader gives it, the reader's settings)
    "timestamptz_as_the_readers_session_prints_it": ("timestamptz", "2026-01-02 03:04:05+00", None,
                                                     {"TimeZone": "'Europe/Berlin'"}),
    "timestamptz_as_a_default_session_prints_it": ("timestamptz", "2026-01-02 03:04:05+00", None, {}),
    "numeric_1_0_asked_as_1": ("numeric", "1.0", "1", {}),
    "jsonb_asked_without_spaces": ("jsonb", '{"a": 1, "b": [1, 2]}', '{"a":1,"b":[1,2]}', {}),
    "uuid_asked_in_upper_case": ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11", {}),
}


@pytest.mark.parametrize("case", sorted(KEY_SPELLINGS))
def test_l8_a_key_given_in_another_spelling_of_its_value_never_reads_absent(kit, connect, case):
    """Attack on the reader's answers: a tracked table (with a baseline) whose one-column key is of the type
    named holds one row that never changes. A reader asks row_state_as_of for it now, giving the key as
    PostgreSQL's equality takes it (its own session's text of the value, or another spelling of the same
    value). Safe: the answer is 'existed' (or 'unknown', or a refusal naming the key's form), never
    'absent' for a row that is there, which PostgreSQL finds by that very key."""
    typ, stored, asked, settings = KEY_SPELLINGS[case]
    kit.owner.execute(f"CREATE TABLE public.t76_k (id {typ} PRIMARY KEY, v int)")
    kit.owner.execute(f"INSERT INTO public.t76_k VALUES (%s::{typ}, 1)", [stored])
    enable_tracking(kit.maint, "public.t76_k", baseline=True)
    at = kit.tick()
    with login(kit.db, connect, "t76_r", "audit_reader", settings) as r:
        kit.db.execute("GRANT SELECT ON public.t76_k TO t76_r")
        key = asked if asked is not None else r.execute("SELECT id::text FROM public.t76_k").fetchone()[0]
        found = r.execute(f"SELECT count(*) FROM public.t76_k WHERE id = %s::{typ}", [key]).fetchone()[0]
        assert found == 1, "PostgreSQL does not find the row by this key: the attack was not set up"
        state = kit.state("public.t76_k", key, at, conn=r)
    target = kit.db.execute("SELECT target_id FROM audit.events WHERE kind = 'public.t76_k.baseline'").fetchone()[0]
    assert state[0] != "absent", f"row {stored!r} (target_id {target!r}) asked as {key!r}: {state}"
