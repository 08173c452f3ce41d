"""A seventy-first attacker's trial: new variants against the mends for trial 70 (sql/70_history.sql
`_last_change` by four index-friendly branches and row_state_as_of's end of tracking; sql/62_tracking.sql
enable_tracking again keeping a table's kind prefix, a move recording audit.tracking_disabled under the
old prefix with moved_to, quote_all_identifiers pinned off; sql/65_schema_changes.sql `_on_sql_drop`
finding a dropped capture trigger's table by its names in the catalogue).

Classes (test names carry the letter):
  P. kind prefixes moved, back and forth, in one transaction, then dropped, pending and sealed, by a
     maintainer who does not own the table, after a rename, forged 'moved_to';
  E. end events: odd prefixes, another's name, many end events (cost), pending and sealed;
  D. drops: capture triggers of tables with odd, long, look-alike names, schemas the owner role may
     not use, DROP SCHEMA CASCADE, a table dropped and made again in one transaction;
  F. false alarms: the ordinary life of tracked tables with moves gives right answers and verifies.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Roles made here: t71_owner (owns tables; app_maintainer is made a member) and t71_mallory; both
dropped afterwards.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from trial_helpers import (
    acct,
    both_verifiers,
    n_events,
    problems_of,
    seal_all,
    sqlstate_of,
    table_owner_kit,
)

from pgaudit_py import disable_tracking, enable_tracking

# ============================================ fixture ============================================


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t71") as k:
        yield k



def move(kit, table: str, prefix: str | None, conn=None):
    """enable_tracking again (with another kind prefix, or none given); the sqlstate when refused."""
    conn = conn or kit.maint
    if prefix is None:
        return sqlstate_of(conn, "SELECT audit.enable_tracking(%s::regclass)", [table])
    return sqlstate_of(conn, "SELECT audit.enable_tracking(%s::regclass, kind_prefix => %s)", [table, prefix])


def prefix_of(kit, table: str):
    row = kit.db.execute("SELECT kind_prefix FROM audit.tracked_tables WHERE relid = to_regclass(%s)", [table]).fetchone()
    return row and row[0]


def ends_under(db, prefix: str) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE origin = 'system' AND target_type = 'table'"
                      " AND kind IN ('audit.tracking_disabled', 'audit.tracked_table_dropped')"
                      " AND payload ->> 'kind_prefix' = %s", [prefix]).fetchone()[0]


# ====================================== class P: kind prefixes ======================================


@pytest.mark.parametrize("sealed", [False, True])
def test_p1_a_moved_tables_unchanged_row_is_never_absent_after_a_baseline_under_the_old_prefix(kit, sealed):
    """Attack: the table is tracked with a baseline under P1 (its default), then the maintainer moves
    it to P2 without a new baseline; row 1 never changes again. The move keeps baseline_at, which
    was taken under P1, whose events P2's reads no longer see. Safe: row 1 (there all along) reads
    existed or unknown after the move, never 'absent'; so does it at a moment between baseline and move."""
    acct(kit, baseline=True)
    between = kit.tick()
    assert move(kit, "public.t71_acct", "t71p.moved") is None
    if sealed:
        seal_all(kit.maint)
    at = kit.tick()
    states = {label: kit.state("public.t71_acct", "1", moment) for label, moment in (("before the move", between),
                                                                                     ("after the move", at))}
    assert all(s[0] in ("existed", "unknown") for s in states.values()), f"row 1 is in the table all along: {states}"
    assert all(s[1]["v"] == 0 for s in states.values() if s[0] == "existed"), states


def test_p10_a_row_inserted_after_the_baseline_then_a_move_is_not_absent(kit):
    """Attack: baseline under P1, row 5 inserted (captured under P1), then moved to P2 without a
    baseline, pending then sealed. Safe: row 5 (there) never reads 'absent' after the move."""
    acct(kit, baseline=True)
    kit.writer.execute("INSERT INTO public.t71_acct VALUES (5, 5)")
    assert move(kit, "public.t71_acct", "t71p.later") is None
    at = kit.tick()
    pending = kit.state("public.t71_acct", "5", at)
    seal_all(kit.maint)
    assert pending == kit.state("public.t71_acct", "5", at)
    assert pending[0] != "absent", f"row 5 is in the table, yet reads {pending}"


def test_p11_a_move_with_its_own_baseline_answers_right(kit):
    """Ordinary flow as a check: baseline under P1, moved to P2 with baseline=True. Safe: rows read
    existed with their images, a key never there reads absent."""
    acct(kit, baseline=True)
    kit.writer.execute("UPDATE public.t71_acct SET v = 2 WHERE id = 1")
    enable_tracking(kit.maint, "public.t71_acct", kind_prefix="t71p.rebased", baseline=True)
    at = kit.tick()
    one = kit.state("public.t71_acct", "1", at)
    assert one[0] == "existed" and one[1]["v"] == 2, one
    assert kit.state("public.t71_acct", "2", at)[0] == "existed"
    assert kit.state("public.t71_acct", "99", at) == ("absent", None)


def test_p2_away_and_back_after_a_baseline_answers_neither_the_old_image_nor_absent(kit):
    """Attack: baseline under P1, moved to P2, row 1 updated and row 7 inserted under P2, moved back
    to P1 (no baseline since). Safe: after the move back, row 1 is not P1's old image and not
    'absent'; row 7 (inserted under P2, still there) is not 'absent'."""
    acct(kit, baseline=True)
    assert move(kit, "public.t71_acct", "t71p.two") is None
    kit.writer.execute("UPDATE public.t71_acct SET v = 5 WHERE id = 1; INSERT INTO public.t71_acct VALUES (7, 7)")
    assert move(kit, "public.t71_acct", "public.t71_acct") is None
    seal_all(kit.maint)
    at = kit.tick()
    one, seven = kit.state("public.t71_acct", "1", at), kit.state("public.t71_acct", "7", at)
    assert one[0] != "absent" and not (one[0] == "existed" and one[1]["v"] == 0), one
    assert seven[0] != "absent", f"row 7 is in the table (inserted under P2), yet reads {seven}"
    assert kit.as_of("public.t71_acct", "1", at) in (None,) or kit.as_of("public.t71_acct", "1", at)["v"] == 5


def test_p3_a_prefix_left_behind_by_a_move_stays_with_its_table(kit):
    """Attack: table A moves P1 -> P2; t71_owner's other table B asks for P1 (A's old default
    prefix, and a custom one A had before). Safe: refused (PA005), and B's history of a key
    says nothing of A's rows."""
    acct(kit, kind_prefix="t71p.first")
    kit.writer.execute("UPDATE public.t71_acct SET v = 4 WHERE id = 1")
    assert move(kit, "public.t71_acct", "t71p.second") is None
    acct(kit, "t71_other", rows="(1, 9)")
    refused = move(kit, "public.t71_other", "t71p.first")
    at = kit.tick()
    state = kit.state("public.t71_other", "1", at)
    assert refused == "PA005", refused
    assert not (state[0] == "existed" and state[1].get("v") == 4), state
    assert prefix_of(kit, "public.t71_other") == "public.t71_other"


def test_p4_moves_inside_one_transaction_end_each_prefix_and_revive_nothing(kit):
    """Attack: in one transaction the maintainer (a member of the table's owner) moves P1 -> P2,
    updates row 1 (captured under P2), moves back to P1 and commits. Safe: both ends are
    recorded, and row 1 after reads neither P1's old image nor 'absent'."""
    acct(kit, baseline=False)
    kit.writer.execute("UPDATE public.t71_acct SET v = 1 WHERE id = 1")
    tx = kit.conn("app_maintainer", autocommit=False)
    with tx.transaction():
        enable_tracking(tx, "public.t71_acct", kind_prefix="t71p.inner")
        tx.execute("UPDATE public.t71_acct SET v = 2 WHERE id = 1")
        enable_tracking(tx, "public.t71_acct", kind_prefix="public.t71_acct")
    tx.commit()
    seal_all(kit.maint)
    at = kit.tick()
    state = kit.state("public.t71_acct", "1", at)
    assert ends_under(kit.db, "public.t71_acct") == 1 and ends_under(kit.db, "t71p.inner") == 1
    assert not (state[0] == "existed" and state[1]["v"] == 1), f"P1's old image came back: {state}"
    assert state[0] != "absent", state


def test_p5_a_move_then_drop_then_the_name_made_again_borrows_no_image(kit):
    """Attack: moved P1 -> P2, row changed, the owner drops the table and makes another under the
    name, tracked again (default prefix = P1). Safe: the drop works and is recorded under P2; the
    new table's row 1 (never changed) reads unknown, not either old image nor absent."""
    acct(kit)
    kit.writer.execute("UPDATE public.t71_acct SET v = 3 WHERE id = 1")
    assert move(kit, "public.t71_acct", "t71p.gone") is None
    kit.writer.execute("UPDATE public.t71_acct SET v = 4 WHERE id = 1")
    failure = sqlstate_of(kit.owner, "DROP TABLE public.t71_acct")
    acct(kit, rows="(1, 100)")
    at = kit.tick()
    assert failure is None and ends_under(kit.db, "t71p.gone") == 1
    assert kit.state("public.t71_acct", "1", at) == ("unknown", None)
    seal_all(kit.maint)
    assert kit.state("public.t71_acct", "1", at) == ("unknown", None)


def test_p6_pending_and_sealed_moves_answer_alike(kit):
    """Attack: rows change around two moves; answers are read with everything pending, then again
    after sealing. Safe: identical answers at every moment."""
    acct(kit)
    kit.writer.execute("UPDATE public.t71_acct SET v = 1")
    m0 = kit.tick()
    move(kit, "public.t71_acct", "t71p.a")
    kit.writer.execute("DELETE FROM public.t71_acct WHERE id = 2; INSERT INTO public.t71_acct VALUES (3, 3)")
    m1 = kit.tick()
    move(kit, "public.t71_acct", "t71p.b")
    m2 = kit.tick()
    moments = (m0, m1, m2)

    def answers():
        return [kit.state("public.t71_acct", k, m) for k in ("1", "2", "3") for m in moments]

    pending = answers()
    seal_all(kit.maint)
    assert answers() == pending
    assert all(a[0] != "absent" for a in pending[:3]), pending[:3]  # row 1 is there all along


def test_p7_a_maintainer_who_does_not_own_the_table_cannot_move_it(kit):
    """Attack: t71_mallory's table is tracked (set up by a superuser); app_maintainer, no member of
    t71_mallory, moves it to another prefix or back to its name. Safe: refused, no end event, the
    prefix unchanged, row reads existed."""
    kit.mallory.execute("""CREATE TABLE public.t71_mal (id int PRIMARY KEY, v int);
                           INSERT INTO public.t71_mal VALUES (1, 1)""")
    enable_tracking(kit.db, "public.t71_mal", kind_prefix="t71p.mal")
    kit.mallory.execute("UPDATE public.t71_mal SET v = 2")
    refused = [move(kit, "public.t71_mal", p) for p in ("t71p.stolen", "public.t71_mal")]
    refused.append(sqlstate_of(kit.mallory, "SELECT audit.enable_tracking('public.t71_mal', kind_prefix => 't71p.m2')"))
    refused.append(sqlstate_of(kit.maint, "SELECT audit._register_tracking(t, md5(1::text)::uuid) FROM audit.tracked_tables t"
                                          " WHERE t.relid = 'public.t71_mal'::regclass"))
    at = kit.tick()
    assert all(r is not None for r in refused), refused
    assert prefix_of(kit, "public.t71_mal") == "t71p.mal" and ends_under(kit.db, "t71p.mal") == 0
    assert kit.state("public.t71_mal", "1", at)[0] == "existed"


def test_p8_rename_then_re_enable_keeps_the_prefix_and_a_move_to_the_new_name_is_no_absent(kit):
    """Attack: the tracked table is renamed; re-enabled without kind_prefix (keeps P1), then with
    kind_prefix = its own new name. A table made under the old name is tracked by default prefix.
    Safe: the first keeps P1 and the row's image; after the move row 1 is not 'absent'; the new
    table under the old name is refused P1 and its history is refused (PA008) or unknown."""
    acct(kit, baseline=True)
    kit.writer.execute("UPDATE public.t71_acct SET v = 8 WHERE id = 1")
    kit.owner.execute("ALTER TABLE public.t71_acct RENAME TO t71_renamed")
    assert move(kit, "public.t71_renamed", None) is None
    at1 = kit.tick()
    assert prefix_of(kit, "public.t71_renamed") == "public.t71_acct"
    assert kit.state("public.t71_renamed", "1", at1)[1]["v"] == 8
    assert move(kit, "public.t71_renamed", "public.t71_renamed") is None
    at2 = kit.tick()
    two = kit.state("public.t71_renamed", "2", at2)
    kit.owner.execute("CREATE TABLE public.t71_acct (id int PRIMARY KEY, v int); INSERT INTO public.t71_acct VALUES (1, 1)")
    refused = move(kit, "public.t71_acct", None)
    assert two[0] != "absent", f"row 2 (baseline, never changed) reads {two}"
    assert refused == "PA005", refused
    assert kit.state("public.t71_acct", "1", at2)[0] in ("refused", "unknown")


def test_p9_no_role_below_the_owner_forges_a_moved_to_end(kit):
    """Attack: the writer records look-alike end kinds with a moved_to payload; mallory calls the
    internal registration; the owner (no maintainer) re-enables with another prefix. Safe: no end
    event under the table's prefix, the row reads existed with its image."""
    acct(kit, kind_prefix="t71p.victim")
    kit.writer.execute("UPDATE public.t71_acct SET v = 6 WHERE id = 1")
    for kind in ("audit.tracking_disabled", "audit.tracked_table_dropped", "Audit.tracking_disabled"):
        sqlstate_of(kit.writer, "SELECT audit.record(%s, NULL, NULL, NULL, 'table', 'public.t71_acct',"
                                " '{\"kind_prefix\": \"t71p.victim\", \"moved_to\": \"x\"}'::jsonb)", [kind])
    for conn in (kit.mallory, kit.owner, kit.writer):
        sqlstate_of(conn, "SELECT audit.enable_tracking('public.t71_acct', kind_prefix => 't71p.away')")
        sqlstate_of(conn, "SELECT audit._register_tracking(t, md5(1::text)::uuid) FROM audit.tracked_tables t")
        sqlstate_of(conn, "SELECT audit._unregister_tracking('public.t71_acct'::regclass, 'audit.tracking_disabled', md5(1::text)::uuid)")
    seal_all(kit.maint)
    at = kit.tick()
    assert ends_under(kit.db, "t71p.victim") == 0
    state = kit.state("public.t71_acct", "1", at)
    assert state[0] == "existed" and state[1]["v"] == 6, state


# ======================================= class E: end events =======================================


@pytest.mark.parametrize("odd", ["t71p.Victim", "t71p.victim ", "t71p.víctim", "\"t71p\".victim", "t71p..victim",
                                 "t71p.victi\u0301m", "t71p.victim.x"])
def test_e1_an_odd_prefix_ending_does_not_end_another_tables_tracking(kit, odd):
    """Attack: the victim is tracked under t71p.victim; the maintainer tracks its own other table
    under a look-alike prefix (case, space, accent, quotes, dots, combining mark, nested), then
    disables it and drops it. Safe: whatever is accepted, the victim's row still reads existed."""
    acct(kit, kind_prefix="t71p.victim")
    kit.writer.execute("UPDATE public.t71_acct SET v = 6 WHERE id = 1")
    acct(kit, "t71_odd", rows="(1, 1)")
    move(kit, "public.t71_odd", odd)
    sqlstate_of(kit.maint, "SELECT audit.disable_tracking('public.t71_odd')")
    move(kit, "public.t71_odd", odd)
    kit.owner.execute("DROP TABLE public.t71_odd")
    at = kit.tick()
    state = kit.state("public.t71_acct", "1", at)
    assert state[0] == "existed" and state[1]["v"] == 6, state
    seal_all(kit.maint)
    assert kit.state("public.t71_acct", "1", at) == state


def test_e2_a_table_named_as_anothers_prefix_ends_nothing_of_it(kit):
    """Attack: the owner makes schema t71v and table acct (the victim's prefix t71v.acct as a name),
    tracks it under a prefix of its own, then drops it; also an untracked table so named. Safe:
    tracking it by default is refused, and the victim's row reads existed after."""
    acct(kit, kind_prefix="t71v.acct")
    kit.writer.execute("UPDATE public.t71_acct SET v = 2 WHERE id = 1")
    kit.owner.execute("CREATE SCHEMA t71v; CREATE TABLE t71v.acct (id int PRIMARY KEY, v int)")
    default = move(kit, "t71v.acct", None)
    move(kit, "t71v.acct", "t71v.own")
    kit.owner.execute("DROP TABLE t71v.acct; CREATE TABLE t71v.acct (id int PRIMARY KEY); DROP SCHEMA t71v CASCADE")
    at = kit.tick()
    assert default is not None
    assert ends_under(kit.db, "t71v.acct") == 0
    state = kit.state("public.t71_acct", "1", at)
    assert state[0] == "existed" and state[1]["v"] == 2, state


def test_e3_many_end_events_of_other_tables_do_not_make_one_rows_read_cost_grow(kit):
    """Attack (cost): 150 other tables are tracked and disabled (150 end events), the target table
    moved twice; a reader asks row_as_of / row_state_as_of of one row with sequential scans off.
    Safe: no sequential scan of the log, and the tuples read stay well below the end events
    (the end of this prefix found by an index, not by reading every table's ends)."""
    acct(kit)
    kit.writer.execute("UPDATE public.t71_acct SET v = 1 WHERE id = 1")
    for i in range(150):
        kit.owner.execute(f"CREATE TABLE public.t71_o{i} (id int PRIMARY KEY)")
        enable_tracking(kit.maint, f"public.t71_o{i}")
        disable_tracking(kit.maint, f"public.t71_o{i}")
    seal_all(kit.maint)
    kit.db.execute("ANALYZE audit.event_log")
    at = kit.tick()
    costs = {}
    for name, sql in (("as_of", "SELECT audit.row_as_of('public.t71_acct', '1', %s)"),
                      ("state", "SELECT state FROM audit.row_state_as_of('public.t71_acct', '1', %s)")):
        with kit.reader.transaction():
            kit.reader.execute("SET LOCAL enable_seqscan = off")
            answer = kit.reader.execute(sql, [at]).fetchone()[0]
            costs[name] = (answer, *kit.reader.execute(
                "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)), 0)"
                " FROM pg_stat_xact_all_tables WHERE schemaname = 'audit' AND relname LIKE 'event_log%%'").fetchone())
    assert costs["as_of"][0]["v"] == 1 and costs["state"][0] == "existed", costs
    assert all(seq == 0 for _, seq, _ in costs.values()), costs
    assert all(read < 75 for _, _, read in costs.values()), f"log tuples read for one row with 150 other ends: {costs}"


def test_e5_a_renamed_table_disabled_ends_its_kept_prefix_and_re_tracking_under_the_new_name_is_clean(kit):
    """Attack: the tracked table is renamed, re-enabled (prefix kept), disabled; then tracked again
    under its new name with a baseline. Safe: the end is recorded under the kept prefix; between
    the end and the baseline row 1 reads unknown; after, its baseline image."""
    acct(kit)
    kit.writer.execute("UPDATE public.t71_acct SET v = 3 WHERE id = 1")
    kit.owner.execute("ALTER TABLE public.t71_acct RENAME TO t71_new")
    enable_tracking(kit.maint, "public.t71_new")
    disable_tracking(kit.maint, "public.t71_new")
    kit.owner.execute("UPDATE public.t71_new SET v = 4 WHERE id = 1")
    gap = kit.tick()
    enable_tracking(kit.maint, "public.t71_new", baseline=True)
    at = kit.tick()
    assert ends_under(kit.db, "public.t71_acct") == 1
    assert prefix_of(kit, "public.t71_new") == "public.t71_new"
    assert kit.state("public.t71_new", "1", gap) == ("unknown", None)
    state = kit.state("public.t71_new", "1", at)
    assert state[0] == "existed" and state[1]["v"] == 4, state


def test_e6_reading_one_row_with_thousands_of_events_pending_reads_no_whole_intake(kit):
    """Attack (cost): the sealer lags: 3,000 other rows' changes and 40 other tables' ends are
    pending in the intake, with the row's own change; a reader asks of one row with sequential
    scans off. Safe: the sealed log is read by its indexes only (far below its size), and the
    unindexed intake (docs/how-it-works.md: no btree index, by design) at most once per branch of
    `_last_change` (four passes), never once per pending event."""
    kit.owner.execute("""CREATE TABLE public.t71_big (id int PRIMARY KEY, v int);
                         GRANT ALL ON public.t71_big TO app_writer;
                         INSERT INTO public.t71_big SELECT g, 0 FROM generate_series(1, 3001) g""")
    enable_tracking(kit.maint, "public.t71_big")
    seal_all(kit.maint)
    kit.writer.execute("UPDATE public.t71_big SET v = 1 WHERE id = 1")
    kit.writer.execute("UPDATE public.t71_big SET v = 2 WHERE id > 1")
    for i in range(40):
        kit.owner.execute(f"CREATE TABLE public.t71_q{i} (id int PRIMARY KEY)")
        enable_tracking(kit.maint, f"public.t71_q{i}")
        disable_tracking(kit.maint, f"public.t71_q{i}")
    at = kit.tick()
    pending = kit.db.execute("SELECT count(*) FROM audit.events WHERE pending").fetchone()[0]
    kit.db.execute("ANALYZE")
    costs = {}
    for name, sql in (("as_of", "SELECT audit.row_as_of('public.t71_big', '1', %s)"),
                      ("state", "SELECT state FROM audit.row_state_as_of('public.t71_big', '1', %s)")):
        with kit.reader.transaction():
            kit.reader.execute("SET LOCAL enable_seqscan = off")
            answer = kit.reader.execute(sql, [at]).fetchone()[0]
            costs[name] = (answer, *kit.reader.execute(
                "SELECT coalesce(sum(coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0))"
                "                FILTER (WHERE relname LIKE 'event_log%%'), 0),"
                " coalesce(sum(coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0))"
                "          FILTER (WHERE relname LIKE 'event_intake%%'), 0)"
                " FROM pg_stat_xact_all_tables WHERE schemaname = 'audit'").fetchone())
    assert pending > 3000
    assert costs["as_of"][0]["v"] == 1 and costs["state"][0] == "existed", costs
    logged = kit.db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    assert all(log < 500 for _, log, _ in costs.values()), f"log tuples read for one row (of {logged}): {costs}"
    assert all(intake <= 4 * pending + 50 for _, _, intake in costs.values()), f"intake reads ({pending} pending): {costs}"


def test_e4_an_end_pending_in_the_intake_and_sealed_answer_alike_and_prune_leaves_no_image(kit):
    """Attack: row changed, tracking disabled and enabled (end pending), read; sealed, read;
    a prune of everything up to after the end. Safe: unknown pending and sealed; after the
    prune, no image of the pruned past (unknown, or refused)."""
    acct(kit)
    kit.writer.execute("UPDATE public.t71_acct SET v = 9 WHERE id = 1")
    disable_tracking(kit.maint, "public.t71_acct")
    enable_tracking(kit.maint, "public.t71_acct")
    at = kit.tick()
    pending = kit.state("public.t71_acct", "1", at)
    seal_all(kit.maint)
    sealed = kit.state("public.t71_acct", "1", at)
    assert pending == sealed == ("unknown", None), (pending, sealed)
    time.sleep(0.05)
    failure = sqlstate_of(kit.maint, "SELECT audit.prune_events(interval '0 seconds', 100000)")
    after = kit.state("public.t71_acct", "1", at)
    assert after[0] in ("unknown", "refused"), (failure, after)


# ========================================= class D: drops =========================================

ODD = ['t71 "q".x', "t71.dot", "T71_Upper", "t71_ünï", "t71_" + "l" * 70]


def odd_table(kit, schema: str, table: str, *, usage_to_owner_role: bool = True) -> str:
    kit.owner.execute(psycopg.sql.SQL("CREATE SCHEMA {s}; CREATE TABLE {s}.{t} (id int PRIMARY KEY, v int);"
                                      " GRANT USAGE ON SCHEMA {s} TO app_writer, audit_sandbox;"
                                      " GRANT ALL ON {s}.{t} TO app_writer; INSERT INTO {s}.{t} VALUES (1, 1)").format(
        s=psycopg.sql.Identifier(schema), t=psycopg.sql.Identifier(table)))
    if usage_to_owner_role:
        kit.owner.execute(psycopg.sql.SQL("GRANT USAGE ON SCHEMA {s} TO audit_owner").format(s=psycopg.sql.Identifier(schema)))
    name = kit.db.execute("SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                          " WHERE n.nspname = %s AND c.relname = left(%s, 63)", [schema, table]).fetchone()[0]
    return name


def drop_trigger(conn, name: str, trigger: str = "audit_capture_update") -> str | None:
    return sqlstate_of(conn, f"DROP TRIGGER {trigger} ON {name}")


def capture_triggers(db, name: str) -> int:
    return db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname LIKE 'audit_capture_%%'",
                      [name]).fetchone()[0]


@pytest.mark.parametrize("usage", [True, False])
@pytest.mark.parametrize("odd", ODD)
def test_d1_a_capture_trigger_of_an_oddly_named_table_cannot_be_dropped_while_tracked(kit, odd, usage):
    """Attack: the owner's tracked table lives in a schema and under a name with quotes, dots,
    uppercase, non-ASCII or past 63 bytes (truncated), the schema open or not to audit_owner; the
    owner drops a capture trigger. Safe: refused (PA008), all four triggers stay, and an update
    after is captured."""
    name = odd_table(kit, odd, odd, usage_to_owner_role=usage)
    enable_tracking(kit.maint, name, kind_prefix=f"t71d.x{ODD.index(odd)}")
    refused = drop_trigger(kit.owner, name)
    kit.writer.execute(f"UPDATE {name} SET v = 2")
    n = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE '%%.update' AND row_after ->> 'v' = '2'").fetchone()[0]
    assert refused == "PA008", refused
    assert capture_triggers(kit.db, name) == 4 and n == 1


def test_d2_look_alike_and_truncation_colliding_names_find_the_right_table(kit):
    """Attack: schema "t71_a.b" with table "c" tracked, schema "t71_a" with untracked table "b.c";
    two 70-byte names that truncate alike (only one can exist); the owner drops a trigger named
    audit_capture_update it made on the untracked look-alike, then the tracked one's. Safe: the
    untracked one's goes (nothing to refuse), the tracked one's is refused (PA008)."""
    tracked = odd_table(kit, "t71_a.b", "c")
    other = odd_table(kit, "t71_a", "b.c")
    enable_tracking(kit.maint, tracked, kind_prefix="t71d.ab")
    kit.owner.execute(f"CREATE FUNCTION public.t71_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;"
                      f" CREATE TRIGGER audit_capture_update AFTER UPDATE ON {other} FOR EACH STATEMENT"
                      f" EXECUTE FUNCTION public.t71_noop()")
    free = drop_trigger(kit.owner, other)
    refused = drop_trigger(kit.owner, tracked)
    assert free is None, free
    assert refused == "PA008" and capture_triggers(kit.db, tracked) == 4, refused


def test_d3_a_rule_or_trigger_dropped_with_drop_schema_cascade_ends_tracking_cleanly(kit):
    """Attack: a tracked partitioned table (with its MERGE rule) in an odd schema, its schema
    dropped with CASCADE by the owner. Safe: the drop works, the end is recorded under its
    prefix, and a table made again there reads unknown."""
    kit.owner.execute("""CREATE SCHEMA "t71 C.s"; GRANT USAGE ON SCHEMA "t71 C.s" TO app_writer;
                         CREATE TABLE "t71 C.s"."P t" (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
                         CREATE TABLE "t71 C.s"."P t 1" PARTITION OF "t71 C.s"."P t" FOR VALUES FROM (0) TO (100);
                         INSERT INTO "t71 C.s"."P t" VALUES (1, 1)""")
    enable_tracking(kit.maint, '"t71 C.s"."P t"', kind_prefix="t71d.cs")
    rule = sqlstate_of(kit.owner, 'DROP RULE audit_no_merge ON "t71 C.s"."P t"')
    part = drop_trigger(kit.owner, '"t71 C.s"."P t 1"')
    kit.owner.execute("UPDATE \"t71 C.s\".\"P t\" SET v = 2")
    failure = sqlstate_of(kit.owner, 'DROP SCHEMA "t71 C.s" CASCADE')
    kit.owner.execute("""CREATE SCHEMA "t71 C.s"; GRANT USAGE ON SCHEMA "t71 C.s" TO app_reader;
                         CREATE TABLE "t71 C.s"."P t" (id int PRIMARY KEY, v int);
                         INSERT INTO "t71 C.s"."P t" VALUES (1, 1)""")
    at = kit.tick()
    assert rule == "PA008" and part == "PA008", (rule, part)
    assert failure is None and ends_under(kit.db, "t71d.cs") == 1, failure
    assert kit.state('"t71 C.s"."P t"', "1", at) in (("unknown", None), ("refused", "PA008"))


def test_d4_a_table_dropped_and_made_again_in_one_transaction_keeps_the_guard(kit):
    """Attack: in one transaction the owner drops the tracked table, makes another under its name,
    has it tracked (maintainer in the same session: a member of the owner), then drops its capture
    trigger. Safe: the old end is recorded, the trigger drop is refused, the new table is tracked."""
    acct(kit)
    tx = kit.conn("app_maintainer", autocommit=False)
    with tx.transaction():
        tx.execute("""DROP TABLE public.t71_acct;
                      CREATE TABLE public.t71_acct (id int PRIMARY KEY, v int, note text);
                      ALTER TABLE public.t71_acct OWNER TO t71_owner;
                      GRANT ALL ON public.t71_acct TO app_writer;
                      INSERT INTO public.t71_acct VALUES (1, 50)""")
        enable_tracking(tx, "public.t71_acct")
    tx.commit()
    refused = drop_trigger(kit.owner, "public.t71_acct")
    assert refused == "PA008", refused
    assert n_events(kit.db, "audit.tracked_table_dropped") == 1
    assert capture_triggers(kit.db, "public.t71_acct") == 4


def test_d6_a_partitions_capture_trigger_in_a_closed_odd_schema_cannot_be_dropped(kit):
    """Attack: a tracked parent in public, its partition in another schema with an odd name, closed
    to audit_owner; the owner drops the partition's capture trigger, then its truncate trigger.
    Safe: both refused (PA008); a write into the partition is captured."""
    kit.owner.execute("""CREATE SCHEMA "t71 Part.s"; GRANT USAGE ON SCHEMA "t71 Part.s" TO app_writer;
                         CREATE TABLE public.t71_par (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
                         GRANT ALL ON public.t71_par TO app_writer;
                         CREATE TABLE "t71 Part.s"."Pá""rt" PARTITION OF public.t71_par FOR VALUES FROM (0) TO (100);
                         INSERT INTO public.t71_par VALUES (1, 1)""")
    enable_tracking(kit.maint, "public.t71_par")
    part = '"t71 Part.s"."Pá""rt"'
    refused = [drop_trigger(kit.owner, part), drop_trigger(kit.owner, part, "audit_capture_truncate"),
               drop_trigger(kit.owner, "public.t71_par", "audit_capture_delete")]
    kit.writer.execute("UPDATE public.t71_par SET v = 2")
    n = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t71_par.update'").fetchone()[0]
    assert refused == ["PA008", "PA008", "PA008"], refused
    assert n == 1


def test_d7_a_rename_and_a_trigger_drop_in_one_transaction_is_refused(kit):
    """Attack: in one transaction the owner renames the tracked table (and its schema), then drops a
    capture trigger under the new names. Safe: refused (PA008), all four triggers stay."""
    kit.owner.execute("CREATE SCHEMA t71_rs; GRANT USAGE ON SCHEMA t71_rs TO app_writer;"
                      " CREATE TABLE t71_rs.acct (id int PRIMARY KEY, v int); INSERT INTO t71_rs.acct VALUES (1, 1)")
    enable_tracking(kit.maint, "t71_rs.acct")
    tx = kit.conn("t71_owner", autocommit=False)
    refused = None
    try:
        with tx.transaction():
            tx.execute('ALTER TABLE t71_rs.acct RENAME TO "Acct.X"; ALTER SCHEMA t71_rs RENAME TO "t71 RS"')
            tx.execute('DROP TRIGGER audit_capture_insert ON "t71 RS"."Acct.X"')
    except psycopg.Error as e:
        refused = e.sqlstate
    assert refused == "PA008", refused
    assert capture_triggers(kit.db, "t71_rs.acct") == 4


def test_d5_an_ordinary_owner_drops_untracked_tables_with_look_alike_triggers_and_odd_names(kit):
    """Ordinary flow: the owner's untracked tables with odd names (and one with its own trigger
    named audit_capture_x) in a schema closed to audit_owner are dropped, their triggers first.
    Safe: nothing is refused."""
    name = odd_table(kit, 't71 "z"', "t71.Ü", usage_to_owner_role=False)
    kit.owner.execute(f"CREATE FUNCTION public.t71_noop2() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NULL; END$$;"
                      f" CREATE TRIGGER audit_capture_x AFTER UPDATE ON {name} FOR EACH STATEMENT"
                      f" EXECUTE FUNCTION public.t71_noop2()")
    failures = [drop_trigger(kit.owner, name, "audit_capture_x"), sqlstate_of(kit.owner, f"DROP TABLE {name}"),
                sqlstate_of(kit.owner, 'DROP SCHEMA "t71 ""z""" CASCADE')]
    assert failures == [None, None, None], failures


# ====================================== class F: false alarms ======================================


def test_f1_the_whole_ordinary_life_with_moves_answers_right_and_verifies(kit):
    """Ordinary flow: track with a baseline, write, rename, re-enable with new options (prefix
    kept), move to a new prefix with a new baseline, disable, drop, re-create, re-track with a
    baseline, seal, verify. Safe: every step works, answers are right, both verifiers pass."""
    acct(kit, baseline=True)
    kit.writer.execute("UPDATE public.t71_acct SET v = 1 WHERE id = 1")
    t1 = kit.tick()
    kit.owner.execute("ALTER TABLE public.t71_acct RENAME TO t71_life")
    enable_tracking(kit.maint, "public.t71_life", redact_columns=["note"])
    assert prefix_of(kit, "public.t71_life") == "public.t71_acct"
    assert kit.state("public.t71_life", "1", t1)[1]["v"] == 1
    enable_tracking(kit.maint, "public.t71_life", kind_prefix="t71f.life", baseline=True)
    kit.writer.execute("UPDATE public.t71_life SET v = 2 WHERE id = 1; DELETE FROM public.t71_life WHERE id = 2")
    t2 = kit.tick()
    assert kit.state("public.t71_life", "1", t2)[1]["v"] == 2
    assert kit.state("public.t71_life", "2", t2) == ("absent", None)
    assert kit.state("public.t71_life", "9", t2) == ("absent", None)
    disable_tracking(kit.maint, "public.t71_life")
    kit.owner.execute("DROP TABLE public.t71_life")
    acct(kit, "t71_life", rows="(1, 10)", baseline=True)
    seal_all(kit.maint)
    t3 = kit.tick()
    assert kit.state("public.t71_life", "1", t3)[1]["v"] == 10
    assert kit.state("public.t71_life", "2", t3) == ("absent", None)
    assert both_verifiers(kit.db) == (True, True)
    assert not [p for p in problems_of(kit.db) if "t71" in p], problems_of(kit.db)


def test_f2_moves_back_and_forth_never_fail_for_the_owner_and_verify(kit):
    """Ordinary flow: moves P1 -> P2 -> P1 -> P3, each with a write, then disable and DROP.
    Safe: all work, each move's end is recorded under the prefix left, verifiers pass."""
    acct(kit)
    for p in ("t71f.two", "public.t71_acct", "t71f.three"):
        assert move(kit, "public.t71_acct", p) is None, p
        kit.writer.execute("UPDATE public.t71_acct SET v = v + 1")
    assert disable_tracking(kit.maint, "public.t71_acct") is not None
    assert sqlstate_of(kit.owner, "DROP TABLE public.t71_acct") is None
    assert sqlstate_of(kit.maint, "SELECT 1") is None
    assert seal_all(kit.maint) is None
    # public.t71_acct left twice (to t71f.two, to t71f.three), t71f.two once, t71f.three by the disable
    assert [ends_under(kit.db, p) for p in ("public.t71_acct", "t71f.two", "t71f.three")] == [2, 1, 1]
    assert both_verifiers(kit.db) == (True, True)


def test_f3_re_enabling_with_the_same_prefix_records_no_end_and_keeps_answers(kit):
    """Ordinary flow: re-enable three times (no prefix, the same prefix given, new options).
    Safe: no end event, row 1's image and row 2's absence (after delete) stay."""
    acct(kit, kind_prefix="t71f.same")
    kit.writer.execute("UPDATE public.t71_acct SET v = 4 WHERE id = 1; DELETE FROM public.t71_acct WHERE id = 2")
    enable_tracking(kit.maint, "public.t71_acct")
    enable_tracking(kit.maint, "public.t71_acct", kind_prefix="t71f.same")
    enable_tracking(kit.maint, "public.t71_acct", skip_noop_updates=False)
    at = kit.tick()
    assert ends_under(kit.db, "t71f.same") == 0
    assert kit.state("public.t71_acct", "1", at)[1]["v"] == 4
    assert kit.state("public.t71_acct", "2", at) == ("absent", None)
