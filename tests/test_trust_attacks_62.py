"""A sixty-second attacker's trial.

Classes (test names carry the letter):
  A. code as a package role: the table's owner (and a plain login role t62_mallory) plants code
     (defaults, generated columns, domain CHECKs, index expressions, statistics, rules, policies,
     partition key expressions, look-alike types, functions and operators on a search_path) and has
     the package's functions touch the table; public.who_ran must never name an audit role;
  B. capture evaded without status naming it: referential actions, procedures, generated columns,
     look-alike triggers, attaches, and replica mode reached by a grant or a stored default;
  C. forged history: events dated to an old time (a procedure or DO block that COMMITs runs every
     later statement under the CALL's statement_timestamp(), which the capture records and prune
     trusts), and an actor of type db_role naming another role;
  D. locale and session settings a writer or reader controls;
  E. hostile payloads and row values: both verifiers agree, and both catch a real tamper;
  F. the sealer's quarantine path: the owner role (SET ROLE audit_owner) sends a chosen real event
     to the quarantine, or stops sealing for good, with status intact afterwards (column storage
     PLAIN, which neither the install snapshot nor _sealing_path_problem reads; a guard's name on a
     trigger that is no guard, which _log_partition_own accepts by name).

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import timedelta

import psycopg
import pytest
from psycopg.types.json import Jsonb
from trial_helpers import as_owner, big_hex, problems_of, quarantined_kinds, seal_all, tracked_acct, verified

from pgaudit_py import disable_tracking, enable_tracking, install, record, row_history, seal, seal_status, status
from pgaudit_py.chain import verify_chain

FIRST_END = 999_999
# Who may run the attacker's code: itself, a writer of its table (PostgreSQL runs a table's code as
# the role whose statement fired it), and the sandbox (which holds nothing, by design).
MAY_RUN = {"table_owner", "app_writer", "audit_sandbox", "t62_mallory"}


# ============================================ helpers ============================================


def both_verifiers(db: psycopg.Connection, conn: psycopg.Connection | None = None) -> tuple[bool, bool]:
    sql_ok = verified(db)[0]
    py_ok = verify_chain(conn or db).ok
    return sql_ok, py_ok


def privileged_runs(db: psycopg.Connection) -> list[tuple]:
    rows = db.execute("SELECT who, what, forged FROM public.who_ran").fetchall()
    return [r for r in rows if r[2] or r[0] not in MAY_RUN]


# ======================= class F: the sealer's quarantine path (owner role) =======================


STORAGE_CENSORS = {
    # The partition the events go to: attstorage is in neither the snapshot nor _log_partition_own.
    "partition_payload_plain": ("ALTER TABLE audit.event_log_000000 ALTER COLUMN payload SET STORAGE PLAIN",
                                "ALTER TABLE audit.event_log_000000 ALTER COLUMN payload SET STORAGE EXTENDED"),
    # The log itself (recursing to its partitions): the snapshot's columns hash no storage either.
    "log_payload_plain": ("ALTER TABLE audit.event_log ALTER COLUMN payload SET STORAGE PLAIN",
                          "ALTER TABLE audit.event_log ALTER COLUMN payload SET STORAGE EXTENDED"),
    # Every column of the partition.
    "partition_all_plain": (
        "; ".join(f"ALTER TABLE audit.event_log_000000 ALTER COLUMN {c} SET STORAGE PLAIN"
                  for c in ("payload", "row_before", "row_after", "changed")),
        "; ".join(f"ALTER TABLE audit.event_log_000000 ALTER COLUMN {c} SET STORAGE EXTENDED"
                  for c in ("payload", "row_before", "row_after", "changed"))),
}


@pytest.mark.parametrize("how", list(STORAGE_CENSORS))
def test_f1_storage_plain_on_the_log_does_not_send_a_chosen_large_event_to_the_quarantine(db, how):
    """Attack: the owner role sets the storage of the log's (or its partition's) payload column to
    PLAIN (no TOAST, no compression) while the chosen event, a wire whose payload is 30 kB, is
    pending: its row no longer fits a page (54000, which the quarantine takes as the log's own
    refusal), and the sealer's path looks as installed. It sets EXTENDED back after the round.
    Safe: the round fails (PA017) or the wire is sealed; it is not in the quarantine; or status
    names what was done."""
    record(db, "t62.before")
    seal(db)
    put, take = STORAGE_CENSORS[how]
    as_owner(db, put)
    during = problems_of(db)
    for i in range(3):
        record(db, "t62.noise", payload={"n": i})
    record(db, "t62.wire", payload={"to": "offshore", "amount": 10_000_000, "memo": big_hex(15_000)})
    for i in range(3):
        record(db, "t62.noise", payload={"n": 10 + i})
    failure = seal_all(db)
    as_owner(db, take)
    again = seal_all(db)
    after = problems_of(db)
    quarantined = quarantined_kinds(db, "t62.%")
    assert quarantined == [] or after, (
        f"the chosen wire went to the quarantine ({quarantined}) under storage PLAIN (first round: {failure}, "
        f"then {again}); status while it lasted named {during}, afterwards nothing")
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't62.wire'").fetchone() == (1,)


def test_f2_plain_storage_set_on_the_log_alone_reaches_every_partition_seal_makes(near_end):
    """Attack: ALTER TABLE ONLY audit.event_log ... SET STORAGE PLAIN changes no partition there is,
    and nothing the snapshot hashes; seal() makes each new partition LIKE the log INCLUDING STORAGE,
    so every partition from then on keeps PLAIN, and any event over a page is quarantined there, for
    as long as the attacker likes, with status intact. Safe: no real event in the quarantine, or
    status names it."""
    db = near_end
    try:
        as_owner(db, "ALTER TABLE ONLY audit.event_log ALTER COLUMN row_after SET STORAGE PLAIN;"
                     " ALTER TABLE ONLY audit.event_log ALTER COLUMN payload SET STORAGE PLAIN")
    except psycopg.Error:
        return  # refused: held
    for i in range(6):
        record(db, "t62.noise", payload={"n": i})
    seal(db)  # 999995.., the next partition made ahead, as the log now is
    record(db, "t62.wire", payload={"to": "offshore", "memo": big_hex(15_000)})
    record(db, "t62.after")
    failure = seal_all(db)
    quarantined = quarantined_kinds(db, "t62.%")
    problems = problems_of(db)
    assert quarantined == [] or problems, (
        f"a real event quarantined ({quarantined}, round: {failure}) in a partition made with PLAIN storage; "
        f"status intact")


def test_f3_a_guards_name_on_a_row_trigger_is_no_guard_to_the_quarantine_path(db):
    """Attack: the owner role replaces the partition's statement guard guard_insert by a row trigger
    of the same name (CREATE OR REPLACE TRIGGER) whose function raises 22023 for the chosen kind:
    _log_partition_own, which seal() asks, knows guards by name alone. After the round it puts the
    guards back (_guard_log_partition) and drops its function. Safe: the round fails (PA017) and the
    wire is sealed afterwards; it is not in the quarantine."""
    record(db, "t62.before")
    seal(db)
    as_owner(db, """
        CREATE FUNCTION audit.t62_censor() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN IF NEW.kind = 't62.wire' THEN RAISE EXCEPTION 'no' USING ERRCODE = '22023'; END IF; RETURN NEW; END $f$""")
    try:
        as_owner(db, "CREATE OR REPLACE TRIGGER guard_insert BEFORE INSERT ON audit.event_log_000000"
                     " FOR EACH ROW EXECUTE FUNCTION audit.t62_censor()")
    except psycopg.Error:
        try:
            as_owner(db, "DROP TRIGGER guard_insert ON audit.event_log_000000;"
                         " CREATE TRIGGER guard_insert BEFORE INSERT ON audit.event_log_000000"
                         " FOR EACH ROW EXECUTE FUNCTION audit.t62_censor()")
        except psycopg.Error:
            return  # refused both ways: held
    during = problems_of(db)
    for i in range(3):
        record(db, "t62.noise", payload={"n": i})
    record(db, "t62.wire", payload={"to": "offshore", "amount": 10_000_000})
    record(db, "t62.noise", payload={"n": 9})
    failure = seal_all(db)
    as_owner(db, "SELECT audit._guard_log_partition('audit.event_log_000000'); DROP FUNCTION audit.t62_censor()")
    again = seal_all(db)
    after = problems_of(db)
    quarantined = quarantined_kinds(db, "t62.%")
    assert quarantined == [], (f"the wire went to the quarantine (round: {failure}; then {again}); status named "
                               f"{len(during)} problems while it lasted, afterwards {after}")


def test_f4_a_guards_name_on_a_row_trigger_raising_54000_is_no_guard_to_the_quarantine_path(db):
    """Attack (f3 with another guard's name and error): guard_truncate becomes a BEFORE INSERT row
    trigger raising program_limit_exceeded for the chosen kind; put back after. Safe: not quarantined."""
    record(db, "t62.before")
    seal(db)
    as_owner(db, """
        CREATE FUNCTION audit.t62_censor() RETURNS trigger LANGUAGE plpgsql AS $f$
        BEGIN IF NEW.kind = 't62.wire' THEN RAISE EXCEPTION 'too big' USING ERRCODE = '54000'; END IF; RETURN NEW; END $f$;
        CREATE OR REPLACE TRIGGER guard_truncate BEFORE INSERT ON audit.event_log_000000
            FOR EACH ROW EXECUTE FUNCTION audit.t62_censor()""")
    record(db, "t62.noise")
    record(db, "t62.wire", payload={"to": "offshore"})
    record(db, "t62.noise")
    failure = seal_all(db)
    as_owner(db, "SELECT audit._guard_log_partition('audit.event_log_000000'); DROP FUNCTION audit.t62_censor()")
    seal_all(db)
    after = problems_of(db)
    quarantined = quarantined_kinds(db, "t62.%")
    assert quarantined == [] or after, f"the wire went to the quarantine (round: {failure}); status afterwards intact"


def _bad_event(db: psycopg.Connection, kind: str, payload_bytes: int = 0) -> None:
    """An event the log really refuses (its kind fails the log's CHECK), put in the intake directly."""
    payload = Jsonb({"memo": big_hex(payload_bytes)} if payload_bytes else {})
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload, origin)
                  VALUES ('user', 'x', %s, 'success', '1', now(), %s, 'record')""", (kind, payload))


def test_f5_plain_storage_on_the_quarantine_stops_sealing_for_good_with_status_intact(db):
    """Attack: the owner role sets the quarantine's payload column to storage PLAIN. A real bad event
    (its kind fails the log's CHECK) with a 30 kB payload reaches the intake: seal() sends it to the
    quarantine, whose INSERT fails (row too big, 54000) inside the handler: the round fails, and
    every round after it, while every real event waits. Safe: sealing goes on, or status names it."""
    as_owner(db, "ALTER TABLE audit.quarantine ALTER COLUMN payload SET STORAGE PLAIN")
    record(db, "t62.real1")
    _bad_event(db, "bad kind!", 15_000)
    record(db, "t62.real2")
    failures = [seal_all(db) for _ in range(2)]
    pending = seal_status(db).pending
    problems = problems_of(db)
    assert pending == 0 or problems, (f"sealing stopped for good ({failures[-1]}), {pending} events pending; "
                                      f"status intact")


def test_f6_plain_storage_on_the_blocks_line_hashes_fails_every_large_round_with_status_intact(db):
    """Attack: the owner role sets blocks.line_hashes (32 bytes an event) to storage PLAIN: a block of
    more than about 250 events no longer fits a page, and the round that would seal it fails (54000),
    every time, while status is intact. Safe: the events are sealed, or status names it."""
    as_owner(db, "ALTER TABLE audit.blocks ALTER COLUMN line_hashes SET STORAGE PLAIN")
    db.execute("SELECT audit.record('t62.bulk', payload => jsonb_build_object('n', g)) FROM generate_series(1, 400) g")
    failure = seal_all(db)
    pending = seal_status(db).pending
    problems = problems_of(db)
    assert pending == 0 or problems, f"{pending} events pending, every round fails ({failure}); status intact"


def test_f7_an_overload_the_owner_adds_that_makes_seal_ambiguous_is_named(db):
    """Attack: the owner role adds audit._move_to_log(integer, tid[], bigint, bigint), the exact
    signature of seal()'s four-argument call to the five-argument function with a default: every
    round fails (function is not unique). _sealing_path_problem checks the installed functions only.
    Safe: status names the added function (sealing stopped)."""
    as_owner(db, """CREATE FUNCTION audit._move_to_log(slot integer, rows tid[], first_seq bigint, block_no bigint,
                        OUT moved bigint, OUT last_seq bigint, OUT hashes bytea, OUT newest timestamptz)
                    LANGUAGE sql AS $f$ SELECT 0::bigint, 0::bigint, ''::bytea, now() $f$""")
    record(db, "t62.real")
    failure = seal_all(db)
    pending = seal_status(db).pending
    problems = problems_of(db)
    assert pending == 0 or problems, f"sealing fails ({failure}) with {pending} pending; status intact"


def test_f8_a_real_bad_event_is_still_set_aside_when_nothing_was_changed(db):
    """Control: a real bad event (bad kind, large payload) between real ones is quarantined, the
    rest sealed; status intact and both verifiers agree."""
    record(db, "t62.a")
    _bad_event(db, "bad kind!", 15_000)
    record(db, "t62.b")
    assert seal_all(db) is None
    assert [r[0] for r in db.execute("SELECT kind FROM audit.quarantine")] == ["bad kind!"]
    assert problems_of(db) == []
    assert both_verifiers(db) == (True, True)


def test_f9_a_deleted_large_row_is_not_kept_out_of_the_chain_by_plain_storage_even_after_a_reinstall(
        db, connect, attacker):
    """Attack: the owner role sets row_before of the log to storage PLAIN (recursing to its partitions)
    and the installer is run again (what an operator does when in doubt: it changes nothing here,
    and status is intact). A writer deletes a tracked row holding a 20 kB document: the delete's
    event, the only record that the row existed and who removed it, fits no page and is quarantined;
    the chain never holds it. Safe: the delete is sealed, or status names why it cannot be."""
    attacker.execute("""CREATE TABLE public.t62_docs (id int PRIMARY KEY, body text);
                        GRANT ALL ON public.t62_docs TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.t62_docs")
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.t62_docs VALUES (1, %s)", [big_hex(10_000)])
    seal(db)  # the insert: sealed as usual
    as_owner(db, "ALTER TABLE audit.event_log ALTER COLUMN row_before SET STORAGE PLAIN")
    install(db)
    writer.execute("DELETE FROM public.t62_docs WHERE id = 1")
    failure = seal_all(db)
    sealed = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 'public.t62_docs.delete'").fetchone()[0]
    problems = problems_of(db)
    assert sealed == 1 or problems, (f"the delete of a large row is out of the chain (round: {failure}; quarantined: "
                                     f"{quarantined_kinds(db, 'public.t62_docs.%')}); status intact after a re-install")


# ============================ class C: forged history (an old time) ============================


@pytest.mark.parametrize("op", ["update", "delete", "insert", "truncate"])
def test_c1_a_procedure_that_commits_cannot_date_its_later_writes_to_the_call(db, connect, attacker, op):
    """Attack: the table's owner (or any writer) runs its writes from a procedure that COMMITs and
    waits in between: every statement after a COMMIT runs in a new transaction, begun seconds (or
    days) later, yet statement_timestamp(), which the capture records as occurred_at, stays the
    CALL's. The second write claims the moment the procedure began, before the first was even
    committed, so row_as_of answers for that moment with a row state that did not exist then.
    Safe: each event's occurred_at is no earlier than its own transaction began."""
    tracked_acct(attacker, connect, "t62")
    second = {"update": "UPDATE public.t62_acct SET v = 2 WHERE id = 1",
              "delete": "DELETE FROM public.t62_acct WHERE id = 1",
              "insert": "INSERT INTO public.t62_acct (id, v) VALUES (3, 3)",
              "truncate": "TRUNCATE public.t62_acct"}[op]
    attacker.execute(f"""CREATE PROCEDURE public.t62_slow() LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE public.t62_acct SET v = 1 WHERE id = 1;
            COMMIT;
            PERFORM pg_sleep(2);
            {second};
            COMMIT;
        END $$""")
    began = db.execute("SELECT clock_timestamp()").fetchone()[0]
    attacker.execute("CALL public.t62_slow()")
    seal(db)
    kind = f"public.t62_acct.{op}"
    times = db.execute("SELECT occurred_at FROM audit.events WHERE kind = %s ORDER BY seq", [kind]).fetchall()
    assert times, f"no {kind} event"
    last = times[-1][0]
    middle = began + timedelta(seconds=1)
    key = "3" if op == "insert" else "1"
    state = db.execute("SELECT state, image FROM audit.row_state_as_of('public.t62_acct', %s, %s)", [key, middle]).fetchone()
    assert last >= began + timedelta(seconds=1.5), (
        f"the {op} made two seconds into the procedure, in a transaction of its own, claims {last - began} after "
        f"the CALL began; row_state_as_of(+1 s) answers {state}")


def test_c5_a_write_dated_to_its_procedures_start_is_not_pruned_before_its_retention(db, connect, attacker):
    """Attack: the owner updates its tracked row from a procedure that first waits 3 seconds: the
    update, made now, is dated when the CALL began, and the block that seals it says so
    (newest_occurred_at). A prune with a retention of 2 seconds then removes it at once, though it
    is younger than the retention. (With a long-running procedure, a write made today can be dated
    months back and pruned by the next nightly prune.) Safe: a change younger than the retention
    stays in the log."""
    tracked_acct(attacker, connect, "t62")
    record(db, "t62.old")
    seal(db)
    attacker.execute("""CREATE PROCEDURE public.t62_late() LANGUAGE plpgsql AS $$
        BEGIN COMMIT; PERFORM pg_sleep(3); UPDATE public.t62_acct SET v = 666 WHERE id = 1; COMMIT; END $$""")
    attacker.execute("CALL public.t62_late()")
    written = db.execute("SELECT clock_timestamp()").fetchone()[0]
    seal(db)
    from pgaudit_py import prune_events
    prune_events(connect("app_maintainer"), timedelta(seconds=2))
    left = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 'public.t62_acct.update'").fetchone()[0]
    age = db.execute("SELECT clock_timestamp() - %s", [written]).fetchone()[0]
    assert left == 1, f"a change made {age} ago was pruned under a retention of 2 seconds"


def test_c2_record_in_a_procedure_after_a_commit_is_dated_when_it_ran(db, connect, attacker):
    """Control: record() (clock_timestamp) in the same procedure is dated when it ran."""
    db.execute("GRANT audit_writer TO table_owner")
    try:
        attacker.execute("""CREATE PROCEDURE public.t62_rec() LANGUAGE plpgsql AS $$
            BEGIN COMMIT; PERFORM pg_sleep(2); PERFORM audit.record('t62.late'); COMMIT; END $$""")
        began = db.execute("SELECT clock_timestamp()").fetchone()[0]
        attacker.execute("CALL public.t62_rec()")
        at = db.execute("SELECT occurred_at FROM audit.events WHERE kind = 't62.late'").fetchone()[0]
        assert at >= began + timedelta(seconds=1.5), at - began
    finally:
        db.execute("REVOKE audit_writer FROM table_owner")


def test_c3_a_do_block_that_commits_cannot_date_its_later_writes_to_its_start(db, connect, attacker):
    """Attack (c1 without a procedure): a top-level DO block COMMITs, waits, then updates the row in a
    transaction of its own; the capture dates it when the DO began (statement_timestamp()). Safe:
    dated no earlier than its transaction began."""
    tracked_acct(attacker, connect, "t62")
    began = db.execute("SELECT clock_timestamp()").fetchone()[0]
    attacker.execute("""DO $$ BEGIN COMMIT; PERFORM pg_sleep(2); UPDATE public.t62_acct SET v = 4 WHERE id = 2; COMMIT; END $$""")
    seal(db)
    at = db.execute("SELECT occurred_at FROM audit.events WHERE kind = 'public.t62_acct.update'").fetchone()[0]
    assert at >= began + timedelta(seconds=1.5), f"the update made 2 s into the DO claims {at - began} after it began"


def test_c4_a_savepoint_rolled_back_around_set_config_leaves_the_outer_actor(db, connect, attacker):
    """A table owner's function sets the actor inside a sub-block that fails (an EXCEPTION block, a
    savepoint): the setting is rolled back with it, and the write after it names the outer actor."""
    tracked_acct(attacker, connect, "t62")
    attacker.execute("""CREATE FUNCTION public.t62_try() RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            BEGIN
                PERFORM set_config('pgaudit_py.actor_id', 'ceo', true);
                RAISE EXCEPTION 'undo';
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
            UPDATE public.t62_acct SET v = 5 WHERE id = 1;
        END $$""")
    with attacker.transaction():
        attacker.execute("SELECT set_config('pgaudit_py.actor_id', 'owner-self', true)")
        attacker.execute("SELECT public.t62_try()")
    seal(db)
    row = db.execute("SELECT actor_id FROM audit.events WHERE kind = 'public.t62_acct.update'").fetchone()
    assert row == ("owner-self",), row


@pytest.mark.xfail(strict=True, reason="by design (docs/how-it-works.md, Who): actor_type and actor_id are the application's claims, db_role the one column the database vouches for; trials 14, 18 and 19 rely on such claims being recorded; strict, so that a change that refuses them says so")
def test_c6_an_actor_of_type_db_role_is_only_ever_the_database_role_itself(db, connect, attacker):
    """Attack: actor_type 'db_role' is what the package writes when nobody is named: the database role,
    vouched for by the database, is the actor. A writer names actor_type 'db_role' and actor_id
    'postgres' (through record() and through the session's context for a captured write): the
    events read as the superuser's own acts by the package's convention. (The rate limit already
    refuses to count such a claim as that role's.) Safe: an event whose actor type is db_role names
    its own db_role as the actor."""
    tracked_acct(attacker, connect, "t62")
    writer = connect("app_writer")
    with suppress(Exception):
        record(writer, "t62.grant", actor_type="db_role", actor_id="postgres", payload={"granted": "superuser"})
    with writer.transaction():
        writer.execute("SELECT set_config('pgaudit_py.actor_type', 'db_role', true),"
                       " set_config('pgaudit_py.actor_id', 'postgres', true)")
        writer.execute("UPDATE public.t62_acct SET v = 42 WHERE id = 1")
    seal(db)
    claims = db.execute("SELECT kind, actor_id, db_role FROM audit.events WHERE actor_type = 'db_role'"
                        " AND actor_id IS DISTINCT FROM db_role AND (kind LIKE 't62.%' OR kind LIKE 'public.t62_acct.%')"
                        " ORDER BY seq").fetchall()
    assert claims == [], f"events whose db_role actor is another role than the one that wrote them: {claims}"


# ============================ class A: code as a package role ============================


def test_a1_defaults_generated_columns_domain_checks_indexes_and_statistics_never_run_as_an_audit_role(
        db, connect, attacker):
    """Attack: the owner's table carries its code everywhere PostgreSQL runs it (an IMMUTABLE spy in a
    domain CHECK, a column default, a stored generated column, an expression index, a partial index's
    predicate, an expression statistics object); app_maintainer tracks it with a baseline, the writer
    writes, it is sealed, read back, status is checked, and tracking is disabled. Safe: the code ran
    as the owner, the writer or the sandbox only, and forged nothing."""
    attacker.execute("""
        CREATE FUNCTION public.t62_imm(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN PERFORM public.spy('imm'); RETURN x; END $$;
        CREATE DOMAIN public.t62_pos AS int CHECK (public.t62_imm(VALUE) >= 0);
        CREATE TABLE public.t62_acct (id int PRIMARY KEY, v public.t62_pos DEFAULT public.t62_imm(0),
            g int GENERATED ALWAYS AS (public.t62_imm(id)) STORED, note text DEFAULT public.spy('default')::text);
        CREATE INDEX t62_i1 ON public.t62_acct (public.t62_imm(id));
        CREATE INDEX t62_i2 ON public.t62_acct (id) WHERE public.t62_imm(id) > 0;
        CREATE STATISTICS public.t62_st ON (public.t62_imm(id)), v FROM public.t62_acct;
        GRANT ALL ON public.t62_acct TO app_writer;
        INSERT INTO public.t62_acct (id, v) VALUES (1, 1), (2, 2)""")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.t62_acct", baseline=True)
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.t62_acct (id, v) VALUES (3, 3)")
    writer.execute("UPDATE public.t62_acct SET v = v + 1")
    writer.execute("DELETE FROM public.t62_acct WHERE id = 2")
    seal(maintainer)
    row_history(connect("app_reader"), "public.t62_acct", "1")
    problems_of(db)
    disable_tracking(maintainer, "public.t62_acct")
    assert privileged_runs(db) == []
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'forged%'").fetchone() == (0,)


def test_a2_a_partition_key_expression_and_a_partitions_policy_never_run_as_an_audit_role(db, connect, attacker):
    """Attack: a keyless partitioned table partitioned by an expression of the owner's (an IMMUTABLE
    spy); after tracking (with a baseline), a policy of the owner's, calling spy, on one partition;
    the writer's rows move between partitions; seal, history, status, untrack. Safe: no audit role
    ran it."""
    attacker.execute("""
        CREATE FUNCTION public.t62_imm(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN PERFORM public.spy('partition key'); RETURN x; END $$;
        CREATE TABLE public.t62_p (id int, k int, note text) PARTITION BY RANGE ((public.t62_imm(k)));
        CREATE TABLE public.t62_p1 PARTITION OF public.t62_p FOR VALUES FROM (0) TO (100);
        CREATE TABLE public.t62_p2 PARTITION OF public.t62_p FOR VALUES FROM (100) TO (200);
        GRANT ALL ON public.t62_p, public.t62_p1, public.t62_p2 TO app_writer;
        INSERT INTO public.t62_p VALUES (1, 1, 'a'), (2, 150, 'b')""")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.t62_p", baseline=True)
    attacker.execute("""ALTER TABLE public.t62_p2 ENABLE ROW LEVEL SECURITY;
                        CREATE POLICY t62_pol ON public.t62_p2 USING (public.spy('policy')) WITH CHECK (public.spy('check'))""")
    writer = connect("app_writer")
    writer.execute("UPDATE public.t62_p SET k = 120 WHERE id = 1")
    writer.execute("INSERT INTO public.t62_p VALUES (3, 5, 'c')")
    seal(maintainer)
    problems_of(db)
    disable_tracking(maintainer, "public.t62_p")
    assert privileged_runs(db) == []


def test_a3_a_rule_and_a_trigger_of_the_owners_never_run_as_an_audit_role(db, connect, attacker):
    """Attack: the tracked table has a rule (ON UPDATE DO ALSO SELECT spy()) and row and statement
    triggers calling spy, all added after tracking; writes, seal, status, untrack. Safe: no audit
    role ran them."""
    tracked_acct(attacker, connect, "t62")
    attacker.execute("""
        CREATE RULE t62_r AS ON UPDATE TO public.t62_acct DO ALSO SELECT public.spy('rule');
        CREATE FUNCTION public.t62_trg() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.spy('trigger ' || TG_LEVEL); RETURN NULL; END $$;
        CREATE TRIGGER t62_row AFTER INSERT OR UPDATE OR DELETE ON public.t62_acct FOR EACH ROW EXECUTE FUNCTION public.t62_trg();
        CREATE TRIGGER zz_t62_stmt AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON public.t62_acct
            FOR EACH STATEMENT EXECUTE FUNCTION public.t62_trg()""")
    writer = connect("app_writer")
    writer.execute("UPDATE public.t62_acct SET v = 9 WHERE id = 1")
    writer.execute("INSERT INTO public.t62_acct (id, v) VALUES (5, 5)")
    maintainer = connect("app_maintainer")
    seal(maintainer)
    problems_of(db)
    disable_tracking(maintainer, "public.t62_acct")
    assert privileged_runs(db) == []


def test_a4_look_alike_types_functions_and_operators_on_the_callers_path_never_run(db, connect):
    """Attack: a plain login role t62_mallory makes a schema holding look-alikes of what the package's
    queries name (domains named int8, int4, text, jsonb, timestamptz, bool calling spy in their
    CHECK; functions now(), lower(text), sha256(bytea), encode(bytea, text); operators =, >=, ->>, ||
    on text, bigint and jsonb) and the writer, the reader, the maintainer and a superuser (status,
    verify, seal, a re-install) put it first on their path. Safe: none of it ever runs as them."""
    db.execute("CREATE TABLE public.who_ran (who text, what text, forged boolean); GRANT ALL ON public.who_ran TO PUBLIC")
    db.execute("CREATE ROLE t62_mallory LOGIN; CREATE SCHEMA t62_evil AUTHORIZATION t62_mallory;"
               " GRANT USAGE ON SCHEMA t62_evil TO PUBLIC")
    try:
        m = connect("t62_mallory")
        m.execute("""
            CREATE FUNCTION t62_evil.say(what text) RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO public.who_ran VALUES (current_user, what, false); RETURN true; END $$;
            CREATE FUNCTION t62_evil.now() RETURNS timestamptz LANGUAGE plpgsql STABLE AS $$
            BEGIN PERFORM t62_evil.say('now'); RETURN pg_catalog.now(); END $$;
            CREATE FUNCTION t62_evil.lower(t text) RETURNS text LANGUAGE plpgsql AS $$
            BEGIN PERFORM t62_evil.say('lower'); RETURN pg_catalog.lower(t); END $$;
            CREATE FUNCTION t62_evil.sha256(b bytea) RETURNS bytea LANGUAGE plpgsql AS $$
            BEGIN PERFORM t62_evil.say('sha256'); RETURN pg_catalog.sha256(b); END $$;
            CREATE FUNCTION t62_evil.encode(b bytea, f text) RETURNS text LANGUAGE plpgsql AS $$
            BEGIN PERFORM t62_evil.say('encode'); RETURN pg_catalog.encode(b, f); END $$;
            CREATE FUNCTION t62_evil.eq_text(a text, b text) RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN PERFORM t62_evil.say('=text'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
            CREATE OPERATOR t62_evil.= (LEFTARG = text, RIGHTARG = text, FUNCTION = t62_evil.eq_text);
            CREATE FUNCTION t62_evil.eq_int8(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN PERFORM t62_evil.say('=int8'); RETURN a OPERATOR(pg_catalog.=) b; END $$;
            CREATE OPERATOR t62_evil.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = t62_evil.eq_int8);
            CREATE FUNCTION t62_evil.ge_int8(a bigint, b bigint) RETURNS boolean LANGUAGE plpgsql AS $$
            BEGIN PERFORM t62_evil.say('>=int8'); RETURN a OPERATOR(pg_catalog.>=) b; END $$;
            CREATE OPERATOR t62_evil.>= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = t62_evil.ge_int8);
            CREATE FUNCTION t62_evil.field(a jsonb, b text) RETURNS text LANGUAGE plpgsql AS $$
            BEGIN PERFORM t62_evil.say('->>'); RETURN a OPERATOR(pg_catalog.->>) b; END $$;
            CREATE OPERATOR t62_evil.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = t62_evil.field);
            CREATE FUNCTION t62_evil.cat(a text, b text) RETURNS text LANGUAGE plpgsql AS $$
            BEGIN PERFORM t62_evil.say('||'); RETURN a OPERATOR(pg_catalog.||) b; END $$;
            CREATE OPERATOR t62_evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = t62_evil.cat);
            CREATE DOMAIN t62_evil.int8 AS pg_catalog.int8 CHECK (t62_evil.say('int8'));
            CREATE DOMAIN t62_evil.text AS pg_catalog.text CHECK (t62_evil.say('text'));
            CREATE DOMAIN t62_evil.jsonb AS pg_catalog.jsonb CHECK (t62_evil.say('jsonb'));
            CREATE DOMAIN t62_evil.timestamptz AS pg_catalog.timestamptz CHECK (t62_evil.say('timestamptz'));
            CREATE DOMAIN t62_evil.bool AS pg_catalog.bool CHECK (t62_evil.say('bool'));
            CREATE DOMAIN t62_evil.int4 AS pg_catalog.int4 CHECK (t62_evil.say('int4'))""")
        writer, reader, maintainer = connect("app_writer"), connect("app_reader"), connect("app_maintainer")
        admin = connect()
        for conn in (writer, reader, maintainer, admin):
            conn.execute("SET search_path = t62_evil, pg_catalog, public")
        from pgaudit_py import count_events, list_events, preview_prune
        errors = []
        for call in (lambda: record(writer, "t62.one", payload={"a": 1}, tenant_id="acme"),
                     lambda: record(writer, "t62.two", payload={"a": 2}, idempotency_key="k1"),
                     lambda: record(writer, "t62.two", payload={"a": 2}, idempotency_key="k1"),
                     lambda: seal(maintainer), lambda: list_events(reader), lambda: count_events(reader),
                     lambda: seal_status(reader), lambda: preview_prune(maintainer, timedelta(days=1)),
                     lambda: verify_chain(reader), lambda: status(maintainer), lambda: status(admin),
                     lambda: verify_chain(admin), lambda: seal(admin), lambda: install(admin)):
            try:
                call()
            except Exception as e:  # noqa: BLE001
                errors.append(f"{type(e).__name__}: {e}")
        runs = db.execute("SELECT who, what FROM public.who_ran WHERE who <> 't62_mallory'").fetchall()
        assert runs == [], f"t62_mallory's look-alikes ran as {runs} (errors: {errors})"
        assert verify_chain(db).ok, errors
        m.close()
    finally:
        db.execute("DROP SCHEMA t62_evil CASCADE")
        db.execute("DROP OWNED BY t62_mallory; DROP ROLE t62_mallory")


def test_a5_a_partition_the_maintainer_attaches_runs_no_owner_code_in_the_package(db, connect, attacker):
    """Attack: the owner's partitioned tracked table has an expression index calling spy; the
    maintainer (a member of the owner) creates and attaches a partition that already holds rows, as
    tracking asks (only a maintainer owning it may). Each package function the event triggers run
    (cover the partition, attach triggers, generate capture, record the change) touches the table.
    Safe: none of the package's roles (audit_*) ran the owner's code."""
    attacker.execute("""
        CREATE FUNCTION public.t62_imm(x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN PERFORM public.spy('index'); RETURN x; END $$;
        CREATE TABLE public.t62_p (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
        CREATE TABLE public.t62_p1 PARTITION OF public.t62_p FOR VALUES IN (1);
        CREATE INDEX t62_pi ON public.t62_p (public.t62_imm(id));
        GRANT ALL ON public.t62_p TO app_writer""")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.t62_p")
    maintainer.execute("SET ROLE table_owner")
    maintainer.execute("CREATE TABLE public.t62_p2 (id int NOT NULL, k int NOT NULL)")
    maintainer.execute("INSERT INTO public.t62_p2 VALUES (5, 2)")
    maintainer.execute("RESET ROLE")
    db.execute("DELETE FROM public.who_ran")
    with suppress(psycopg.Error):
        maintainer.execute("ALTER TABLE public.t62_p ATTACH PARTITION public.t62_p2 FOR VALUES IN (2)")
    connect("app_writer").execute("INSERT INTO public.t62_p VALUES (6, 2)")
    seal(maintainer)
    problems_of(db)
    runs = [r for r in db.execute("SELECT who, what, forged FROM public.who_ran").fetchall()
            if r[2] or r[0].startswith("audit_") and r[0] != "audit_sandbox"]
    assert runs == [], runs


def test_a6_a_rate_limited_tracked_table_with_owner_code_in_every_place_runs_none_of_it_as_an_audit_role(
        db, connect, attacker):
    """Attack: the owner's table, rate-limited and tracked by the maintainer, has a BEFORE statement
    trigger named to fire first (a_...), a column default and a CHECK constraint calling spy; the
    writer writes past its limit, the maintainer purges counters, changes and removes the limit,
    seals; status. Safe: no audit role ran the owner's code."""
    from pgaudit_py import disable_rate_limit, enable_rate_limit
    from pgaudit_py.rate_limits import purge_rate_counters

    attacker.execute("""
        CREATE FUNCTION public.t62_trg() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.spy('stmt trigger'); RETURN NULL; END $$;
        CREATE TABLE public.t62_lim (id int PRIMARY KEY, note text DEFAULT public.spy('default')::text
                                     CHECK (public.spy('check')));
        CREATE TRIGGER a_t62 BEFORE INSERT OR UPDATE OR DELETE ON public.t62_lim
            FOR EACH STATEMENT EXECUTE FUNCTION public.t62_trg();
        GRANT ALL ON public.t62_lim TO app_writer""")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.t62_lim")
    enable_rate_limit(maintainer, "public.t62_lim", per_user_per_minute=2, per_tenant_per_minute=3)
    writer = connect("app_writer")
    for i in range(4):
        with suppress(Exception):
            writer.execute("INSERT INTO public.t62_lim (id) VALUES (%s)", [i])
    with suppress(Exception):
        purge_rate_counters(maintainer)
    enable_rate_limit(maintainer, "public.t62_lim", per_user_per_minute=5, per_tenant_per_minute=5)
    disable_rate_limit(maintainer, "public.t62_lim")
    seal(maintainer)
    problems_of(db)
    disable_tracking(maintainer, "public.t62_lim")
    assert privileged_runs(db) == []


# ============================== class B: capture evaded by the owner ==============================


def test_b1_a_timestamp_column_retyped_to_timestamptz_without_a_rewrite_is_recorded_or_refused(db, connect, attacker):
    """Attack: under TimeZone UTC, ALTER COLUMN ... TYPE timestamptz of a timestamp column rewrites
    nothing (PostgreSQL skips it), so the table_rewrite refusal never fires; every stored value now
    reads as another type (an instant, printed with an offset). Safe: refused, or recorded as a
    schema change of the tracked table."""
    attacker.execute("""CREATE TABLE public.t62_ts (id int PRIMARY KEY, at timestamp);
                        GRANT ALL ON public.t62_ts TO app_writer;
                        INSERT INTO public.t62_ts VALUES (1, '2026-01-01 12:00')""")
    enable_tracking(connect("app_maintainer"), "public.t62_ts")
    before = db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'audit.tracked_%'").fetchone()[0]
    attacker.execute("SET TimeZone = 'UTC'")
    try:
        attacker.execute("ALTER TABLE public.t62_ts ALTER COLUMN at TYPE timestamptz")
    except psycopg.Error:
        return  # refused: held
    after = db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'audit.tracked_%'").fetchone()[0]
    assert after > before, "the column's values changed type with no rewrite and nothing recorded"


def test_b2_on_delete_set_null_of_chosen_columns_from_an_untracked_parent_is_captured(db, connect, attacker):
    """Attack (PostgreSQL 15's column list): the owner's untracked parent table is referenced by the
    tracked table with ON DELETE SET NULL (parent_id) and ON UPDATE SET DEFAULT; the owner deletes and
    updates parent rows, changing tracked rows through referential actions. Safe: each changed
    tracked row has an update event."""
    attacker.execute("""
        CREATE TABLE public.t62_pa (id int PRIMARY KEY, grp int, UNIQUE (id, grp));
        INSERT INTO public.t62_pa VALUES (1, 1), (2, 2);
        CREATE TABLE public.t62_pb (code int PRIMARY KEY);
        INSERT INTO public.t62_pb VALUES (0), (10), (20);
        CREATE TABLE public.t62_child (id int PRIMARY KEY, a_id int, grp int, code int DEFAULT 0,
            FOREIGN KEY (a_id, grp) REFERENCES public.t62_pa (id, grp) ON DELETE SET NULL (a_id),
            FOREIGN KEY (code) REFERENCES public.t62_pb (code) ON UPDATE SET DEFAULT);
        INSERT INTO public.t62_child VALUES (1, 1, 1, 10), (2, 2, 2, 20)""")
    enable_tracking(connect("app_maintainer"), "public.t62_child")
    attacker.execute("DELETE FROM public.t62_pa WHERE id = 1")
    attacker.execute("UPDATE public.t62_pb SET code = 21 WHERE code = 20")
    seal(db)
    rows = dict(db.execute("SELECT id, (SELECT count(*) FROM audit.events e WHERE e.kind = 'public.t62_child.update'"
                           " AND e.target_id = c.id::text) FROM public.t62_child c").fetchall())
    assert rows == {1: 1, 2: 1}, rows


def test_b3_writes_in_a_procedure_between_commits_explain_analyze_and_copy_are_captured(db, connect, attacker):
    """Attack: the owner writes its tracked table from a procedure between COMMITs and ROLLBACKs,
    through EXPLAIN ANALYZE, a writable CTE and a MERGE (a plain table: allowed). Safe: exactly the
    committed changes are captured, each once."""
    tracked_acct(attacker, connect, "t62")
    attacker.execute("""CREATE PROCEDURE public.t62_many() LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE 'EXPLAIN ANALYZE UPDATE public.t62_acct SET v = 10 WHERE id = 1';
            COMMIT;
            UPDATE public.t62_acct SET v = 99 WHERE id = 2;
            ROLLBACK;
            WITH d AS (DELETE FROM public.t62_acct WHERE id = 2 RETURNING id)
            INSERT INTO public.t62_acct (id, v) SELECT id + 10, 12 FROM d;
            COMMIT;
            MERGE INTO public.t62_acct a USING (VALUES (1, 11), (30, 30)) s(id, v) ON a.id = s.id
                WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT (id, v) VALUES (s.id, s.v);
            COMMIT;
        END $$""")
    attacker.execute("CALL public.t62_many()")
    seal(db)
    kinds = sorted(db.execute("SELECT kind, target_id FROM audit.events WHERE kind LIKE 'public.t62_acct.%'").fetchall())
    assert kinds == sorted([("public.t62_acct.update", "1"), ("public.t62_acct.delete", "2"),
                            ("public.t62_acct.insert", "12"), ("public.t62_acct.update", "1"),
                            ("public.t62_acct.insert", "30")]), kinds


def test_b4_a_generated_column_added_in_place_of_a_tracked_column_is_recorded(db, connect, attacker):
    """Attack: without ALTER COLUMN TYPE (which the table_rewrite trigger refuses on a covered table),
    the owner replaces the values of column v: ADD COLUMN w ... GENERATED ALWAYS AS (v * 1000) STORED
    (a rewrite for a default value, let through), DROP EXPRESSION, DROP COLUMN v, RENAME w TO v.
    Every row's v changed with no row event. Safe: refused, or each step recorded as a schema change
    of the tracked table (with the command)."""
    tracked_acct(attacker, connect, "t62")
    before = db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'audit.tracked_%'").fetchone()[0]
    try:
        attacker.execute("ALTER TABLE public.t62_acct ADD COLUMN w int GENERATED ALWAYS AS (v * 1000 + 7) STORED;"
                         " ALTER TABLE public.t62_acct ALTER COLUMN w DROP EXPRESSION;"
                         " ALTER TABLE public.t62_acct DROP COLUMN v;"
                         " ALTER TABLE public.t62_acct RENAME COLUMN w TO v")
    except psycopg.Error:
        return
    recorded = db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'audit.tracked_%'").fetchone()[0] - before
    assert recorded >= 1, "v replaced by a computed copy with nothing recorded"


def test_b5_capture_triggers_renamed_away_and_look_alikes_in_one_alter_table_are_refused(db, connect, attacker):
    """Attack: in one transaction the owner renames the capture triggers away (ALTER TRIGGER ...
    RENAME) and creates look-alikes of their names that call a trigger function of its own, then
    writes. Safe: refused, or the writes captured (and status intact means capture works)."""
    tracked_acct(attacker, connect, "t62")
    try:
        with attacker.transaction():
            attacker.execute("""
                CREATE FUNCTION public.t62_nop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
                ALTER TRIGGER audit_capture_update ON public.t62_acct RENAME TO t62_old_update;
                CREATE TRIGGER audit_capture_update AFTER UPDATE ON public.t62_acct
                    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
                    EXECUTE FUNCTION public.t62_nop();
                DROP TRIGGER t62_old_update ON public.t62_acct""")
    except psycopg.Error:
        return
    connect("app_writer").execute("UPDATE public.t62_acct SET v = 5 WHERE id = 1")
    seal(db)
    n = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t62_acct.update'").fetchone()[0]
    assert n == 1 or problems_of(db), "an update went uncaptured behind a look-alike trigger; status intact"


def test_b6_an_on_update_cascade_that_moves_rows_across_partitions_of_a_tracked_table_is_captured(
        db, connect, attacker):
    """Attack: the tracked table is partitioned by region, and references the owner's untracked
    regions table ON UPDATE CASCADE; the owner renames a region, so referential actions move rows
    from one partition to another (a delete and an insert below, an update at the root), with no
    statement of its own on the tracked table. Safe: each moved row has one update event naming its
    move."""
    attacker.execute("""
        CREATE TABLE public.t62_regions (code text PRIMARY KEY);
        INSERT INTO public.t62_regions VALUES ('eu'), ('us');
        CREATE TABLE public.t62_orders (id int, region text REFERENCES public.t62_regions (code) ON UPDATE CASCADE,
                                        amount int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
        CREATE TABLE public.t62_orders_eu PARTITION OF public.t62_orders FOR VALUES IN ('eu');
        CREATE TABLE public.t62_orders_rest PARTITION OF public.t62_orders DEFAULT;
        INSERT INTO public.t62_orders VALUES (1, 'eu', 10), (2, 'eu', 20), (3, 'us', 30)""")
    enable_tracking(connect("app_maintainer"), "public.t62_orders")
    attacker.execute("UPDATE public.t62_regions SET code = 'apac' WHERE code = 'eu'")
    seal(db)
    moved = db.execute("SELECT target_id, payload ->> 'moved_from' FROM audit.events"
                       " WHERE kind = 'public.t62_orders.update' ORDER BY target_id").fetchall()
    others = db.execute("SELECT kind FROM audit.events WHERE kind LIKE 'public.t62_orders.%'"
                        " AND kind <> 'public.t62_orders.update'").fetchall()
    assert len(moved) == 2 and all(m[1] and "eu" in m[1] and "apac" in m[0] for m in moved) and others == [], (
        moved, others)


@pytest.mark.parametrize("grantee", ["table_owner", "PUBLIC"])
def test_b7_a_role_granted_set_on_session_replication_role_switching_capture_off_is_named(db, connect, attacker,
                                                                                          grantee):
    """Attack: PostgreSQL 15 lets a superuser GRANT SET ON PARAMETER session_replication_role to a role
    that is no superuser (a restore or ETL job's; or PUBLIC). With it, the table's owner (or any
    writer) sets replica mode and writes: the capture triggers, enabled in origin mode, do not fire.
    Nothing in the log says so. Safe: the write is captured, or status names the grant."""
    tracked_acct(attacker, connect, "t62")
    db.execute(f"GRANT SET ON PARAMETER session_replication_role TO {grantee}")
    try:
        who = attacker if grantee == "table_owner" else connect("app_writer")
        who.execute("SET session_replication_role = replica")
        who.execute("UPDATE public.t62_acct SET v = 1000000 WHERE id = 1")
        who.execute("RESET session_replication_role")
        seal(db)
        captured = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t62_acct.update'").fetchone()[0]
        problems = problems_of(db)
        warnings = status(db).warnings
        assert captured == 1 or problems or any("session_replication_role" in w for w in warnings), (
            f"an update made in replica mode by a role granted SET on session_replication_role went uncaptured; "
            f"status intact ({problems}, warnings {warnings})")
    finally:
        db.execute(f"REVOKE SET ON PARAMETER session_replication_role FROM {grantee}")


@pytest.mark.parametrize("where", ["database", "role", "role_in_database"])
def test_b8_replica_mode_stored_as_a_default_for_writers_sessions_is_named(db, connect, attacker, where):
    """Status "names every way capture is off that the database could not refuse": a default of
    session_replication_role = replica stored for the database, or for the writer's role (a
    superuser's ALTER DATABASE / ALTER ROLE ... SET, left behind by a restore script), puts every new
    session of the writer in replica mode, where no capture trigger fires. Safe: the writer's
    update is captured, or status names the stored setting."""
    tracked_acct(attacker, connect, "t62")
    name = db.info.dbname
    target = {"database": f"DATABASE {name}", "role": "ROLE app_writer",
              "role_in_database": f"ROLE app_writer IN DATABASE {name}"}[where]
    db.execute(f"ALTER {target} SET session_replication_role = replica")
    try:
        writer = connect("app_writer")
        mode = writer.execute("SHOW session_replication_role").fetchone()[0]
        writer.execute("UPDATE public.t62_acct SET v = 31337 WHERE id = 2")
        seal(db)
        captured = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t62_acct.update'").fetchone()[0]
        st = status(db)
        named = [p for p in st.problems + st.warnings if "replica" in p or "session_replication_role" in p]
        assert captured == 1 or named, (f"the writer's sessions start in {mode} mode; its update went uncaptured, "
                                        f"status intact ({st.problems}, warnings {st.warnings})")
    finally:
        db.execute(f"ALTER {target} RESET session_replication_role")


@pytest.mark.parametrize("how", ["leaf", "sub_partitioned", "default_partition_split"])
def test_b9_rows_that_arrive_by_attaching_are_never_read_as_known_absent(db, connect, attacker, how):
    """Attack: a partitioned table is tracked with a baseline (so a key without events is "absent").
    Rows then arrive with no event by an attach (the maintainer, a member of the owner, may): a leaf
    holding rows, a sub-partitioned table whose leaves hold them (the attached table itself has no
    pages), or a table attached beside a DEFAULT partition. Safe: row_state_as_of never says such a
    row was absent at a moment it was in the table."""
    attacker.execute("""
        CREATE TABLE public.t62_p (id int, k int, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
        CREATE TABLE public.t62_p1 PARTITION OF public.t62_p FOR VALUES IN (1);
        INSERT INTO public.t62_p VALUES (1, 1)""")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.t62_p", baseline=True)
    maintainer.execute("SET ROLE table_owner")
    if how == "leaf":
        maintainer.execute("CREATE TABLE public.t62_p2 (id int NOT NULL, k int NOT NULL); INSERT INTO public.t62_p2 VALUES (7, 2)")
        attach = "ALTER TABLE public.t62_p ATTACH PARTITION public.t62_p2 FOR VALUES IN (2)"
    elif how == "sub_partitioned":
        maintainer.execute("""CREATE TABLE public.t62_p2 (id int NOT NULL, k int NOT NULL) PARTITION BY LIST (id);
                              CREATE TABLE public.t62_p2a PARTITION OF public.t62_p2 FOR VALUES IN (7);
                              INSERT INTO public.t62_p2 VALUES (7, 2)""")
        attach = "ALTER TABLE public.t62_p ATTACH PARTITION public.t62_p2 FOR VALUES IN (2)"
    else:
        maintainer.execute("CREATE TABLE public.t62_p2 (id int NOT NULL, k int NOT NULL); INSERT INTO public.t62_p2 VALUES (7, 2)")
        attach = "ALTER TABLE public.t62_p ATTACH PARTITION public.t62_p2 DEFAULT"
    maintainer.execute("RESET ROLE")
    try:
        maintainer.execute(attach)
    except psycopg.Error:
        return  # refused: held
    seal(db)
    now = db.execute("SELECT clock_timestamp()").fetchone()[0]
    state = db.execute("SELECT state FROM audit.row_state_as_of('public.t62_p', '[7, 2]', %s)", [now]).fetchone()[0]
    assert state != "absent", f"a row in the table ({how}) is read as known absent"


# ========================== class D: locale and session settings ==========================


def test_d1_under_german_messages_guards_refuse_and_a_bad_event_is_still_quarantined(db, connect):
    """The cluster speaks German (lc_messages): the owner role's UPDATE of a sealed event and the
    superuser's DELETE of one are refused by SQLSTATE, a real bad event is still set aside, and
    both verifiers agree with no false alarm."""
    db.execute("SET lc_messages = 'de_DE.UTF-8'")
    record(db, "t62.a", payload={"x": "ä"})
    _bad_event(db, "bad kind!")
    seal(db)
    for stmt in ("SET ROLE audit_owner; UPDATE audit.event_log SET kind = 't62.x'",
                 "DELETE FROM audit.event_log", "DELETE FROM audit.event_log_000000",
                 "SET ROLE audit_owner; TRUNCATE audit.quarantine"):
        with pytest.raises(psycopg.Error):
            db.execute(stmt)
        db.execute("RESET ROLE")
    assert [r[0] for r in db.execute("SELECT kind FROM audit.quarantine")] == ["bad kind!"]
    assert both_verifiers(db) == (True, True)
    assert problems_of(db) == []


def test_d2_the_python_verifier_agrees_under_a_readers_time_zone_with_a_seconds_offset(db, connect):
    """A reader whose TimeZone has an odd offset (+14, -3:30, +5:45, or an interval with seconds where
    PostgreSQL takes one) reads every occurred_at with that offset: the Python verifier must still
    rebuild the lines exactly (no false alarm, no crash), as SQL verify does."""
    for i in range(3):
        record(db, "t62.tz", payload={"n": i})
    seal(db)
    results = {}
    for zone in ("INTERVAL '+00:12:34' HOUR TO SECOND", "INTERVAL '-09:59:59' HOUR TO SECOND", "'Pacific/Kiritimati'",
                 "'America/St_Johns'", "'Asia/Kathmandu'"):
        reader = connect("app_reader")
        try:
            reader.execute(f"SET TIME ZONE {zone}")
        except psycopg.Error:
            continue
        try:
            results[zone] = verify_chain(reader).ok
        except Exception as e:  # noqa: BLE001
            results[zone] = f"{type(e).__name__}: {e}"
    assert all(v is True for v in results.values()), results


def test_d3_a_writers_session_settings_change_neither_images_nor_keys(db, connect, attacker):
    """A writer sets DateStyle 'SQL, DMY', IntervalStyle sql_standard, TimeZone with a seconds offset,
    extra_float_digits -15, bytea_output escape, lc_monetary, standard_conforming_strings off and a
    search_path of the owner's schema first, then writes rows of a table whose key is a timestamptz
    and whose columns are domains and arrays of floats, intervals, bytea, money; the same row written
    by a plain session reads the same. Both verifiers agree."""
    attacker.execute("""
        CREATE DOMAIN public.t62_f AS float8;
        CREATE TABLE public.t62_w (at timestamptz PRIMARY KEY, f public.t62_f[], i interval[], b bytea, m money,
                                   d date, t timetz, p point);
        GRANT ALL ON public.t62_w TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.t62_w")
    values = ("2026-05-01 10:00:00.123456+00", "{1349.01,0.1,-0}", "{1 day 2 hours,-3 mons}", b"\x00\\\x01'", "12.34",
              "2026-05-01", "10:00:00+02", "(1.1,2.2)")
    plain = connect("app_writer")
    plain.execute("INSERT INTO public.t62_w VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", values)
    plain.execute("DELETE FROM public.t62_w")
    odd = connect("app_writer")
    odd.execute("SET DateStyle = 'SQL, DMY'; SET IntervalStyle = sql_standard; SET TimeZone = 'Asia/Kathmandu';"
                " SET extra_float_digits = -15; SET bytea_output = escape; SET standard_conforming_strings = off;"
                " SET search_path = public, pg_catalog")
    odd.execute("INSERT INTO public.t62_w VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", values)
    seal(db)
    images = db.execute("SELECT target_id, coalesce(row_after, row_before) FROM audit.events"
                        " WHERE kind IN ('public.t62_w.insert') ORDER BY seq").fetchall()
    assert len(images) == 2 and images[0] == images[1], images
    assert both_verifiers(db) == (True, True)


def test_d4_latin1_and_sql_ascii_writers_record_what_they_sent_and_both_verifiers_agree(db, connect, attacker):
    """Writers whose client_encoding is LATIN1 record payloads, kinds' targets and captured rows with
    non-ASCII text; a reader checks with both verifiers. Safe: the text is what was sent, no false
    alarm."""
    tracked_acct(attacker, connect, "t62")
    w = connect("app_writer")
    w.execute("SET client_encoding = 'LATIN1'")
    w.execute("SELECT audit.record('t62.enc', payload => %s, target_id => %s)", [Jsonb({"name": "Zoë Ørsted ß"}), "café"])
    w.execute("UPDATE public.t62_acct SET note = 'Größe' WHERE id = 1")
    seal(db)
    got = db.execute("SELECT payload ->> 'name', target_id FROM audit.events WHERE kind = 't62.enc'").fetchone()
    note = db.execute("SELECT row_after ->> 'note' FROM audit.events WHERE kind = 'public.t62_acct.update'").fetchone()
    assert got == ("Zoë Ørsted ß", "café") and note == ("Größe",), (got, note)
    assert both_verifiers(db, connect("app_reader")) == (True, True)


def test_d5_a_writers_parser_settings_change_no_exclusion_redaction_or_key(db, connect, attacker):
    """A writer's session parses the capture function's body when it first runs it: with
    standard_conforming_strings off, backslash_quote on, array_nulls off and transform_null_equals
    on, it writes a table whose excluded column is named NULL, whose redacted column's name holds a
    backslash, and whose key holds one. Safe: the excluded column is not in the images, the
    redacted one is redacted, the key is the key, exactly as a plain session's write of another
    row records them."""
    attacker.execute("""CREATE TABLE public.t62_n (id text PRIMARY KEY, "NULL" text, "a\\b" text, v int);
                        GRANT ALL ON public.t62_n TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.t62_n", exclude_columns=["NULL"], redact_columns=["a\\b"])
    plain = connect("app_writer")
    plain.execute('INSERT INTO public.t62_n VALUES (%s, %s, %s, 1)', ["p\\q", "secret", "pw"])
    odd = connect("app_writer")
    odd.execute("SET standard_conforming_strings = off; SET backslash_quote = on; SET array_nulls = off;"
                " SET transform_null_equals = on; SET escape_string_warning = off")
    odd.execute('INSERT INTO public.t62_n VALUES (%s, %s, %s, 1)', ["x\\y", "secret", "pw"])
    odd.execute("UPDATE public.t62_n SET v = 2, \"NULL\" = 'other', \"a\\b\" = 'pw2' WHERE id = %s", ["x\\y"])
    seal(db)
    rows = db.execute("SELECT target_id, row_after FROM audit.events WHERE kind LIKE 'public.t62_n.%' ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["p\\q", "x\\y", "x\\y"], rows
    for _, image in rows:
        assert "NULL" not in image and image["a\\b"] == "[redacted]", rows
    assert both_verifiers(db) == (True, True)


def test_d6_both_verifiers_agree_under_a_readers_hostile_output_settings(db, connect, attacker):
    """A reader whose session prints bytea as escape, dates as German, intervals as ISO 8601, floats
    with -15 digits, in a half-hour time zone, with the owner's schema first on its path, verifies
    a chain of recorded and captured events: no false alarm in either verifier."""
    tracked_acct(attacker, connect, "t62")
    writer = connect("app_writer")
    record(writer, "t62.d6", payload={"f": 1349.01, "s": "\u00e9"})
    writer.execute("UPDATE public.t62_acct SET note = 'x' WHERE id = 1")
    seal(db)
    reader = connect("app_reader")
    reader.execute("SET bytea_output = escape; SET DateStyle = 'German, DMY'; SET IntervalStyle = iso_8601;"
                   " SET extra_float_digits = -15; SET TimeZone = 'Asia/Kolkata'; SET search_path = public, pg_catalog")
    sql_ok = reader.execute("SELECT ok FROM audit.verify()").fetchone()[0]
    assert (sql_ok, verify_chain(reader).ok) == (True, True)


# ================================ class E: hostile payloads ================================


HOSTILE_PAYLOADS = [
    {'", "seq": 1, "kind": "audit.pruned': '", "db_role": "postgres'},
    {"\u202e\u200f\u2066rtl": "\u0301\u0301combining\u0338", "nonchar": "\ufffe\uffff\U0010ffff\U0001fffe"},
    {"": "", " ": " ", "\u2028": "\u2029", "\x7f": "\x1f\x01\t\n\r\b\f\\\"/"},
    {"neg0": -0.0, "tiny": 1e-300, "huge": 1e300},
    {"digits": int("9" * 399), "neg": -int("9" * 399), "dec": "0." + "0" * 390 + "1"},
    {"a": {"a": {"a": {"a": [[[[[[[[[[{"b": None}]]]]]]]]]]}}}},
]


@pytest.mark.parametrize("n", range(len(HOSTILE_PAYLOADS)))
def test_e1_hostile_payloads_verify_in_both_and_a_tamper_is_caught_by_both(db, connect, n):
    """A writer records hostile payloads (keys that look like the canonical line's separators, RTL
    and combining marks, noncharacters, control characters, -0, a 1000-digit integer, nesting);
    sealed, both verifiers pass; the superuser then changes one sealed event's payload behind the
    guards (session_replication_role): both verifiers fail."""
    payload = HOSTILE_PAYLOADS[n]
    writer = connect("app_writer")
    record(writer, "t62.hostile", payload=payload, actor_id='"}, "db_role": "x', target_id="\u202e")
    record(writer, "t62.after")
    seal(db)
    assert both_verifiers(db, connect("app_reader")) == (True, True)
    db.execute("SET session_replication_role = replica")
    db.execute("UPDATE audit.event_log SET payload = payload || '{\"t62\": 1}' WHERE kind = 't62.hostile'")
    db.execute("RESET session_replication_role")
    assert both_verifiers(db, connect("app_reader")) == (False, False)


def test_e2_hostile_json_escapes_in_record_are_refused_or_stored_and_verify(db, connect):
    """JSON text a writer sends as is (escaped NUL, lone surrogates, a surrogate pair split by an
    escape, 1e-400, 1e400, -0, duplicate keys, a key repeated with another case): each is refused by
    PostgreSQL or record() (PA002), or stored and verifies in both."""
    writer = connect("app_writer")
    texts = ['{"a": "\\u0000"}', '{"a": "\\ud800"}', '{"a": "\\udc00\\ud800"}', '{"a": "\\ud83d\\ude00"}',
             '{"a": 1e-400}', '{"a": 1e400}', '{"a": -0, "b": -0.0, "c": 0e10}', '{"a": 1, "a": 2, "A": 3}',
             '{"a": 1E+2, "b": 1.50, "c": 100e-2}']
    outcomes = []
    for t in texts:
        try:
            writer.execute("SELECT audit.record('t62.json', payload => %s::jsonb)", [t])
            outcomes.append("stored")
        except psycopg.Error as e:
            outcomes.append(e.sqlstate)
    seal(db)
    assert both_verifiers(db, connect("app_reader")) == (True, True), outcomes
    assert "stored" in outcomes


def test_e3_captured_values_of_every_hostile_kind_verify_in_both(db, connect, attacker):
    """Captured rows with json (kept as written: duplicate keys, spacing), numeric of 1000 digits and
    NaN, float8 -0, NaN and Infinity, text with every control character, a key of RTL marks, an xml
    declaration; updated and deleted; both verifiers pass, and skip_noop_updates sees changes only
    storage tells."""
    attacker.execute("""CREATE TABLE public.t62_h (k text PRIMARY KEY, j json, n numeric, f float8, t text, x xml);
                        GRANT ALL ON public.t62_h TO app_writer""")
    enable_tracking(connect("app_maintainer"), "public.t62_h")
    w = connect("app_writer")
    ctl = "".join(chr(c) for c in range(1, 32)) + "\x7f\u2028\ufeff"
    w.execute("INSERT INTO public.t62_h VALUES (%s, %s, %s, %s, %s, %s)",
              ["\u202e\u200f", '{"a":1,"a":2,  "b" : [1,2]}', "9" * 1000 + "." + "1" * 500, -0.0, ctl,
               '<?xml version="1.0"?><a>\u202e</a>'])
    w.execute("INSERT INTO public.t62_h VALUES ('nan', '{}', 'NaN', 'NaN', '', NULL), ('inf', '[]', '-1e-300', 'Infinity', '\\', NULL)")
    w.execute("UPDATE public.t62_h SET j = '{\"a\":1, \"a\":2, \"b\":[1,2]}' WHERE k = %s", ["\u202e\u200f"])
    w.execute("UPDATE public.t62_h SET f = 0.0 WHERE k = %s", ["\u202e\u200f"])
    w.execute("DELETE FROM public.t62_h WHERE k = 'nan'")
    seal(db)
    updates = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t62_h.update'").fetchone()[0]
    assert both_verifiers(db, connect("app_reader")) == (True, True)
    assert updates == 2, updates


def test_e4_a_payload_at_the_record_bound_and_deep_nesting_verify_in_both(db, connect):
    """A payload just under record()'s 64 kB bound, and one nested thousands deep (stored by jsonb
    as is), seal and verify in both; the Python verifier never parses them."""
    writer = connect("app_writer")
    record(writer, "t62.big", payload={"x": "\U0001f600" * 16_000})
    deep = "[" * 5000 + "1" + "]" * 5000
    with suppress(psycopg.Error):
        writer.execute("SELECT audit.record('t62.deep', payload => jsonb_build_object('d', %s::jsonb))", [deep])
    seal(db)
    assert both_verifiers(db, connect("app_reader")) == (True, True)


@pytest.mark.parametrize("column, value", [("occurred_at", "occurred_at + interval '1 microsecond'"),
                                           ("client_addr", "'127.0.0.2'::inet"), ("origin", "'system'"),
                                           ("db_role", "'postgres'"), ("schema_valid", "true"),
                                           ("changed", "'{}'::jsonb"), ("txid", "'1'::xid8")])
def test_e5_a_tamper_of_any_hashed_field_of_a_captured_event_is_caught_by_both(db, connect, attacker, column, value):
    """A real tamper (the superuser, behind the guards) of one hashed field of a sealed captured
    update (its time by a microsecond, its address, origin, role, validity, changes, transaction):
    both verifiers fail, naming the same block."""
    tracked_acct(attacker, connect, "t62")
    connect("app_writer").execute("UPDATE public.t62_acct SET v = 3 WHERE id = 1")
    seal(db)
    assert both_verifiers(db) == (True, True)
    db.execute("SET session_replication_role = replica")
    db.execute(f"UPDATE audit.event_log SET {column} = {value} WHERE kind = 'public.t62_acct.update'")
    db.execute("RESET session_replication_role")
    sql_bad = db.execute("SELECT bad_block FROM audit.verify()").fetchone()[0]
    py = verify_chain(connect("app_reader"))
    assert (verified(db)[0], py.ok) == (False, False) and sql_bad == py.bad_block, (sql_bad, py)
