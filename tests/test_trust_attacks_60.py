"""A sixtieth attacker's trial, against 0ca0bb8, the mends for trial 59: status names a partition of the
log that is not what seal() makes (partitioned, outside the package schema, of other bounds than a
million seqs from a multiple of a million) and every partition of such a one; seal_state is guarded
(only the sealer updates it; the owner role's write rights revoked) and must agree with the blocks;
seal() refuses (PA017, SealConflict) when the log holds an event at or past its next seq, and a
unique violation no longer sends real events to the quarantine.

Classes:
  1. evasion: a member of the owner role (SET ROLE audit_owner) forges or hides history, diverts real
     events to the quarantine, or stops sealing or pruning, with status intact;
  2. false alarms: ordinary use (the quarantine, an upgrade, a re-install, concurrent sealers, a seal
     run twice in one transaction) makes status non-intact or fails a round;
  3. hostile objects: partitions at the ends of bigint, deep partition trees: status must answer and
     name them.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works. A schema
of the attacker's own (t60_side) is emulated by a superuser's schema in which audit_owner may create.
No role is made here (schemas are t60_*, each in the test's own database).
"""

from __future__ import annotations

import os
import threading
from contextlib import suppress
from datetime import timedelta

import psycopg
import pytest
from trial_helpers import as_owner, problems_of, verified

from pgaudit_py import install, prune_events, record, seal, seal_status
from pgaudit_py import installer as installer_module
from pgaudit_py.chain import verify_chain

FIRST_END = 999_999
TOP = 9223372036854775807


# ============================================ helpers ============================================


def named(problems: list[str], *words: str) -> bool:
    return any(all(w in p for w in words) for p in problems)


def side_schema(db: psycopg.Connection) -> None:
    """The attacker's own schema, where it may make objects owned by the owner role."""
    db.execute("CREATE SCHEMA t60_side; GRANT USAGE, CREATE ON SCHEMA t60_side TO audit_owner;"
               " GRANT USAGE ON SCHEMA t60_side TO PUBLIC")


def forged_rows(table: str, seqs: str, kind: str = "t60.forged") -> str:
    return (f"INSERT INTO {table} (seq, id, actor_type, db_role, kind, outcome, txid, occurred_at, sealed_at, payload)"
            f" SELECT s, gen_random_uuid(), 'user', 'ceo', '{kind}', 'success', '1', now() - interval '1 year',"
            f" now() - interval '1 year', '{{\"forged\": true}}' FROM {seqs} s")


def swap_partition(db: psycopg.Connection, part: str, lo: int, hi: int, fill: str = "") -> None:
    """The owner role puts a copy of a partition (its rows and `fill`) in its place, same name, bounds, guards."""
    short = part.split(".")[1]
    as_owner(db, f"""
        CREATE TABLE audit.t60_copy (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        INSERT INTO audit.t60_copy SELECT * FROM {part};
        {fill.replace('{table}', 'audit.t60_copy')};
        ALTER TABLE audit.event_log DETACH PARTITION {part};
        DROP TABLE {part};
        ALTER TABLE audit.t60_copy RENAME TO {short};
        SELECT audit._guard_log_partition('{part}');
        ALTER TABLE audit.event_log ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi})""")


def leave_detach_pending(connect, part: str) -> None:
    """The owner role starts DETACH PARTITION ... CONCURRENTLY while another session (its own, reading
    the log) is open, and lets its statement_timeout cancel the wait: the first of its two
    transactions has committed, so the partition stays "detach pending" (pg_inherits.inhdetachpending),
    left out of every query of the log at READ COMMITTED, and of its routing."""
    holder = connect(autocommit=False)
    holder.execute("SELECT count(*) FROM audit.event_log")  # holds a lock on the log until rollback
    owner = connect()
    owner.execute("SET ROLE audit_owner")
    owner.execute("SET statement_timeout = '1500ms'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        owner.execute(f"ALTER TABLE audit.event_log DETACH PARTITION {part} CONCURRENTLY")
    holder.rollback()
    pending = owner.execute("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = %s::regclass", [part]).fetchone()
    assert pending == (True,), pending  # the attack's precondition
    # DETACH ... CONCURRENTLY added a CHECK copying the partition's bounds, which status names as a
    # constraint of its own; it cannot be dropped while the detach is pending (55000).
    with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
        for (name,) in owner.execute("SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass"
                                     " AND coninhcount = 0 AND conparentid = 0 AND contype = 'c'", [part]).fetchall():
            owner.execute(f'ALTER TABLE {part} DROP CONSTRAINT "{name}"')


# ================================== class 1: evasion ==================================


def test_e1_a_partition_of_sealed_events_left_detach_pending_is_named(near_end, connect):
    """Attack: the owner role leaves the partition of sealed events detach pending (a DETACH ...
    CONCURRENTLY cancelled in its wait; the event trigger refuses it only while a tracked table has
    partitions). Every read of the log leaves those events out, yet the partition is still in
    pg_inherits, so `_log_partitions()` lists it: no gap, no event past the last block, guards in
    place; pg_partition_tree leaves it out, so the new partition rule does not see it. Safe: status
    names it (sealed history is hidden from every reader). (Held, by another rule: the detach adds a
    CHECK copying the bounds, a constraint not the log's, which cannot be dropped while pending.)"""
    db = near_end
    for i in range(6):
        record(db, f"t60.e{i}")
    seal(db)  # 999996..999999 in _000000, the rest in _000001
    leave_detach_pending(connect, "audit.event_log_000000")
    visible = db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    problems = problems_of(db)
    assert named(problems, "event_log_000000"), (
        f"sealed events hidden from the log ({visible} of 6 visible); status {problems}, verify {verified(db)}")


def test_e2_the_next_partition_left_detach_pending_does_not_send_real_events_to_the_quarantine(near_end, connect):
    """Attack: the owner role leaves the next (empty, made ahead) partition detach pending. seal()
    finds it in `_log_partitions()` and makes none; the pre-check finds no event at or past its next
    seq; the insert finds no partition for the row (SQLSTATE 23514, check_violation, which the
    quarantine still catches): every real event past the partition's end goes to the quarantine.
    The owner role then finishes the detach and drops the table; the sealer makes a new partition.
    Safe: no real event is quarantined, and status names the pending partition while it lasts (it
    does, by the CHECK the detach adds); once the detach is finished, nothing in status says why
    real events are in the quarantine."""
    db = near_end
    for i in range(2):
        record(db, f"t60.old{i}")
    seal(db)  # 999996, 999997; _000001 made ahead
    leave_detach_pending(connect, "audit.event_log_000001")
    pending_problems = problems_of(db)
    for i in range(5):
        record(db, f"t60.real{i}")
    with suppress(psycopg.Error):
        seal(db)
    quarantined = [r[0] for r in db.execute("SELECT kind FROM audit.quarantine ORDER BY intake_id")]
    as_owner(db, "ALTER TABLE audit.event_log DETACH PARTITION audit.event_log_000001 FINALIZE;"
                 " DROP TABLE audit.event_log_000001")
    while seal(db).sealed:
        pass
    after = problems_of(db)
    assert named(pending_problems, "event_log_000001"), pending_problems
    assert [k for k in quarantined if k.startswith("t60.real")] == [], (
        f"real events sent to the quarantine: {quarantined}; status afterwards {after}, verify {verified(db)}")


@pytest.mark.parametrize("how", ["rename_current", "attach_ahead", "plain_table"])
def test_e3_a_partition_wearing_the_next_partitions_name_does_not_stop_sealing_unnamed(near_end, how):
    """Attack: `_add_log_partitions` names the partition for seqs k*1M.. 'event_log_<k>' and creates it
    (CREATE TABLE, no IF NOT EXISTS, only lock_not_available caught). The owner role gives that name
    to another partition of the log, whose bounds are what seal() makes: it renames the current one
    (bounds 0..1M) to event_log_000001, or attaches an empty, guarded one of that name for 5M..6M.
    Status reads bounds, never names. The next seal() fails at the partition's end (42P07), round
    after round. Safe: sealing goes on, or status names why it cannot. (plain_table, control: a table
    of that name that is no partition is a relation added, which status names.)"""
    db = near_end
    if how == "rename_current":
        as_owner(db, "ALTER TABLE audit.event_log_000000 RENAME TO event_log_000001")
    elif how == "plain_table":
        as_owner(db, "CREATE TABLE audit.event_log_000001 (x int)")
    else:
        as_owner(db, """
            CREATE TABLE audit.event_log_000001 (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS
                INCLUDING STORAGE INCLUDING COMPRESSION);
            SELECT audit._guard_log_partition('audit.event_log_000001');
            ALTER TABLE audit.event_log ATTACH PARTITION audit.event_log_000001 FOR VALUES FROM (5000000) TO (6000000)""")
    before = problems_of(db)
    for i in range(8):
        record(db, f"t60.e{i}")
    try:
        sealed = seal(db).sealed
        failure = None
    except psycopg.Error as e:
        sealed, failure = 0, f"{e.sqlstate}: {e.diag.message_primary}"
    problems = problems_of(db)
    assert sealed > 0 or problems, (f"seal() fails ({failure}) with {seal_status(db).pending} events pending; "
                                    f"status intact (before: {before})")


def test_e4_a_partitions_own_check_diverts_chosen_real_events_to_the_quarantine_and_leaves_no_trace_in_status(
        near_end):
    """Attack: the owner role adds a CHECK of its own to the next partition (kind <> 't60.wire'), seals
    (the chosen events fail 23514, check_violation, which the quarantine catches: they are set aside,
    the others sealed), then drops the CHECK. Status named the CHECK while it lasted; after, the
    chosen events are out of the chain for good (the quarantine is not hashed) and status is intact.
    Safe: the chosen events are sealed, or status still says something."""
    db = near_end
    record(db, "t60.before")
    seal(db)  # _000001 made ahead
    as_owner(db, "ALTER TABLE audit.event_log_000001 ADD CONSTRAINT t60_censor CHECK (kind <> 't60.wire')")
    assert named(problems_of(db), "t60_censor")  # while it lasts
    for i in range(4):
        record(db, "t60.noise", payload={"n": i})
    record(db, "t60.wire", payload={"to": "offshore", "amount": 10_000_000})
    for i in range(4):
        record(db, "t60.noise", payload={"n": 10 + i})
    with pytest.raises(psycopg.errors.CheckViolation):  # mended: a partition's own CHECK fails the round
        seal(db)
    as_owner(db, "ALTER TABLE audit.event_log_000001 DROP CONSTRAINT t60_censor")
    while seal(db).sealed:
        pass
    wires = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't60.wire'").fetchone()[0]
    problems = problems_of(db)
    assert wires == 1 or problems, (f"the chosen event was sent to the quarantine ({seal_status(db).quarantined} "
                                    f"quarantined) and status is intact; verify {verified(db)}")


def test_e5_seal_state_moved_by_a_column_rewrite_before_block_one_is_refused_or_named(db):
    """Attack: no guard touched, no right granted: the owner role owns seal_state and rewrites it with
    ALTER TABLE ... ALTER COLUMN ... TYPE bigint USING 3 (a rewrite fires no row or statement
    trigger; the table_rewrite event trigger refuses it only on tracked tables). It moves the chain's
    start and last_seq to 3 and swaps the empty first partition for one holding three forged events at
    seqs 1-3: they read as sealed before the chain began. (The documented limit is the guard disabled
    and put back; here status never had anything to name.) Safe: the rewrite is refused, or status
    names it."""
    try:
        as_owner(db, "ALTER TABLE audit.seal_state ALTER COLUMN chain_start_seq TYPE bigint USING 3,"
                     " ALTER COLUMN last_seq TYPE bigint USING 3")
    except psycopg.Error:
        return  # refused: held
    assert db.execute("SELECT chain_start_seq, last_seq FROM audit.seal_state").fetchone() == (3, 3)
    swap_partition(db, "audit.event_log_000000", 0, 1000000, fill=forged_rows("{table}", "generate_series(1, 3)"))
    for i in range(3):
        record(db, f"t60.real{i}")
    seal(db)
    problems = problems_of(db)
    assert problems, (f"seal_state moved by a column rewrite, three forged events before the chain; status intact, "
                      f"verify {verified(db)}, python verifier ok={verify_chain(db).ok}")


@pytest.mark.parametrize("column, using", [
    ("last_seq", "last_seq + 7"),
    ("chain_start_seq", "chain_start_seq + 1"),
    ("last_block_hash", "sha256('x')"),
    ("last_block_no", "last_block_no + 1"),
])
def test_e5b_seal_state_moved_by_a_column_rewrite_after_block_one_is_named(db, column, using):
    """The same rewrite once blocks exist: the new rules compare seal_state with the blocks (control)."""
    for i in range(3):
        record(db, f"t60.e{i}")
    seal(db)
    kind = "bytea" if column == "last_block_hash" else "bigint"
    try:
        as_owner(db, f"ALTER TABLE audit.seal_state ALTER COLUMN {column} TYPE {kind} USING {using}")
    except psycopg.Error as refused:  # mended: a column rewrite of the log's tables is refused
        assert refused.sqlstate == "PA006"
        return
    problems = problems_of(db)
    assert named(problems, "audit.seal_state says"), problems


def test_e6_a_foreign_key_from_the_attackers_schema_to_the_log_does_not_stop_prune_unnamed(near_end, connect):
    """Attack: the owner role owns the log, so it holds REFERENCES on it: in a schema of its own it
    makes a table with a FOREIGN KEY to audit.event_log (seq) and one row pointing at the oldest
    sealed event. The referenced side's RI triggers are internal (tgisinternal: no check reads them),
    the constraint is the other table's (no check of a partition reads it); NOT VALID, so it is made
    without the UPDATE right a check of existing rows would need. Prune's DELETE meets the key's
    internal trigger (whose check of the log runs as the partition's owner, without the rights the
    mends revoked: 42501, or 23503 where it may): prune fails for good. Safe: prune removes the
    events, or status names what stops it."""
    db = near_end
    side_schema(db)
    for i in range(3):
        record(db, f"t60.old{i}")
    seal(db)
    for i in range(3):
        record(db, f"t60.new{i}")
    seal(db)
    # NOT VALID: the row is there before the key, which then checks nothing already there (a check
    # would need FOR KEY SHARE on the log, an UPDATE right the owner role no longer holds).
    as_owner(db, f"CREATE TABLE t60_side.pin (seq bigint); INSERT INTO t60_side.pin VALUES ({FIRST_END - 3});"
                 " ALTER TABLE t60_side.pin ADD CONSTRAINT pin_seq FOREIGN KEY (seq) REFERENCES audit.event_log (seq)"
                 " NOT VALID")
    maintainer = connect("app_maintainer")
    try:
        deleted = prune_events(maintainer, timedelta(milliseconds=1), 1000).deleted
        failure = None
    except psycopg.Error as e:
        deleted, failure = 0, f"{e.sqlstate}: {e.diag.message_primary}"
    problems = problems_of(db)
    assert deleted > 0 or problems, f"prune fails ({failure}); status intact"


def test_e6b_control_the_same_log_prunes_without_the_foreign_key(near_end, connect):
    db = near_end
    for i in range(3):
        record(db, f"t60.old{i}")
    seal(db)
    for i in range(3):
        record(db, f"t60.new{i}")
    seal(db)
    assert prune_events(connect("app_maintainer"), timedelta(milliseconds=1), 1000).deleted > 0
    assert problems_of(db) == []


@pytest.mark.parametrize("schema", ['"Audit"', '"audit "', '"audit.event_log"', "audit_capture"])
def test_e9_a_partition_in_a_schema_named_like_audit_is_named(db, schema):
    """Attack: an aligned, guarded partition with a forged event past the chain in a schema whose name
    reads like the package's (or the capture schema, also the package's). Safe: named."""
    record(db, "t60.sealed")
    seal(db)
    if schema != "audit_capture":
        db.execute(f"CREATE SCHEMA {schema}; GRANT USAGE, CREATE ON SCHEMA {schema} TO audit_owner")
    try:
        as_owner(db, f"""
            CREATE TABLE {schema}.event_log_000007 (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
            {forged_rows(f'{schema}.event_log_000007', 'generate_series(7000001, 7000001)')};
            SELECT audit._guard_log_partition('{schema}.event_log_000007');
            ALTER TABLE audit.event_log ATTACH PARTITION {schema}.event_log_000007 FOR VALUES FROM (7000000) TO (8000000)""")
    except psycopg.Error as e:
        assert schema == "audit_capture", e  # the capture schema: the owner role may not create there
        return
    problems = problems_of(db)
    assert named(problems, "event_log_000007", "outside schema audit"), problems


@pytest.mark.parametrize("change", [
    "CREATE RULE t60_r AS ON UPDATE TO audit.seal_state DO ALSO NOTIFY t60",
    "CREATE FUNCTION t60_side.keep() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN NEW.last_sealed_at := OLD.last_sealed_at;"
    " RETURN NEW; END $f$; CREATE TRIGGER t60_keep BEFORE UPDATE ON audit.seal_state FOR EACH ROW"
    " EXECUTE FUNCTION t60_side.keep()",
    "ALTER TABLE audit.seal_state ENABLE ROW LEVEL SECURITY;"
    " CREATE POLICY t60_p ON audit.seal_state USING (true)",
    "CREATE TABLE t60_side.shadow () INHERITS (audit.seal_state)",
    "ALTER TABLE audit.seal_state ALTER COLUMN last_seq SET DEFAULT 42",
    "ALTER TABLE audit.seal_state ADD COLUMN t60 int",
    "ALTER TABLE audit.seal_state DROP CONSTRAINT seal_state_last_seq_check",
    "CREATE VIEW t60_side.seal_state AS SELECT * FROM audit.seal_state",
])
def test_e7_seal_state_changed_by_ddl_other_than_update_is_named(db, change):
    """Paths to seal_state other than UPDATE (a rule, a row trigger that rewrites what the sealer writes,
    a policy, an inheritance child that seal() reads (no ONLY), a default, a column, a dropped CHECK):
    the snapshot of the package's relations must name each. A view of its name elsewhere: nothing of
    the package reads seal_state unqualified (control: status stays intact, seal works)."""
    side_schema(db)
    record(db, "t60.e")
    seal(db)
    as_owner(db, change)
    record(db, "t60.f")
    with suppress(psycopg.Error):
        seal(db)
    problems = problems_of(db)
    if "VIEW t60_side.seal_state" in change:
        assert db.execute("SELECT last_seq FROM audit.seal_state").fetchone() == (2,)
        return
    assert problems, f"seal_state changed by {change!r}; status intact"


def test_e8_a_block_rewritten_by_alter_column_type_with_no_guard_touched_is_caught(db):
    """Attack: the owner role rewrites block 1's events_hash through ALTER TABLE audit.blocks ALTER COLUMN
    events_hash TYPE bytea USING ... (no DML trigger fires, nothing to put back; the table_rewrite
    event trigger looks at tracked tables only). The catalogue is as it was. Safe: verify names the
    block (control: the hash chain)."""
    for i in range(3):
        record(db, "t60.payment", payload={"amount": 100 + i})
    seal(db)
    try:
        as_owner(db, "ALTER TABLE audit.blocks ALTER COLUMN events_hash TYPE bytea"
                     " USING CASE WHEN block_no = 1 THEN sha256('forged') ELSE events_hash END")
    except psycopg.Error as refused:  # mended: a column rewrite of the log's tables is refused
        assert refused.sqlstate == "PA006"
        return
    assert db.execute("SELECT events_hash = sha256('forged') FROM audit.blocks WHERE block_no = 1").fetchone() == (True,)
    ok, problem = verified(db)
    assert not ok or problems_of(db), "a block rewritten by DDL; status and verify intact"
    assert not verify_chain(db).ok


# ================================== class 2: false alarms ==================================


def test_f1_an_upgrade_of_a_release_before_partitions_with_900_thousand_seqs_leaves_status_intact(db, tmp_path_factory):
    """Migration 0018 attaches the old log as one partition FROM (0) TO ((last_seq + 100000) / 1M + 1) * 1M:
    two million seqs or more once last_seq passes 900,000. The log's count is emulated (as the suite's
    near_end fixture does) by moving seal_state before anything is sealed, as the old release allows.
    Safe: the upgraded installation is intact (its one partition is what the upgrade made)."""
    from test_upgrade import RELEASE, installer_at

    previous = installer_at(RELEASE, tmp_path_factory)
    schema = "t60_up"
    try:
        db.execute("SET lc_messages = 'C'")
        previous.install(db, schema)
        db.execute(f"UPDATE {schema}.seal_state SET last_seq = 950000, chain_start_seq = 950000")
        for i in range(4):
            db.execute(f"SELECT {schema}.record(kind => 't60.old', payload => '{{\"n\": {i}}}')")
        seal(db, audit_schema=schema)
        db.execute("RESET lc_messages")
        install(db, schema)
        bounds = db.execute(f"SELECT first_seq, last_seq FROM {schema}._log_partitions()").fetchall()
        problems = problems_of(db, schema)
        assert problems == [], (bounds, problems)
    finally:
        db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; DROP SCHEMA IF EXISTS {schema}_capture CASCADE;"
                   f" DROP SCHEMA IF EXISTS {schema}_crypto CASCADE")
        for (ev,) in db.execute(f"SELECT evtname FROM pg_event_trigger WHERE evtname LIKE '{schema}%'").fetchall():
            db.execute(f"DROP EVENT TRIGGER {ev}")
        for suffix in installer_module.ROLE_SUFFIXES:
            with suppress(psycopg.Error):
                db.execute(f"DROP OWNED BY {schema}_{suffix}; DROP ROLE {schema}_{suffix}")


def test_f1b_an_upgrade_from_the_commit_before_the_mends_leaves_status_intact(db, connect, tmp_path_factory):
    """From 253b969 (seal_state unguarded, the owner's rights on it kept): sealed across a partition's
    end and pruned, then upgraded. Safe: intact, sealing and pruning go on."""
    from test_upgrade import installer_at

    previous = installer_at("253b969", tmp_path_factory)
    schema = "t60_pre"
    try:
        previous.install(db, schema)
        db.execute(f"SET ROLE {schema}_sealer; UPDATE {schema}.seal_state SET last_seq = 999995,"
                   f" chain_start_seq = 999995; RESET ROLE")
        for i in range(8):
            db.execute(f"SELECT {schema}.record(kind => 't60.old', payload => '{{\"n\": {i}}}')")
        seal(db, audit_schema=schema)
        install(db, schema)
        assert problems_of(db, schema) == []
        for _ in range(3):
            record(db, "t60.new", audit_schema=schema)
        seal(db, audit_schema=schema)
        db.execute(f"GRANT {schema}_maintainer TO app_maintainer")
        prune_events(connect("app_maintainer"), timedelta(milliseconds=1), 1000, audit_schema=schema)
        assert problems_of(db, schema) == []
        assert verify_chain(db, audit_schema=schema).ok
    finally:
        db.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE; DROP SCHEMA IF EXISTS {schema}_capture CASCADE;"
                   f" DROP SCHEMA IF EXISTS {schema}_crypto CASCADE")
        for (ev,) in db.execute(f"SELECT evtname FROM pg_event_trigger WHERE evtname LIKE '{schema}%'").fetchall():
            db.execute(f"DROP EVENT TRIGGER {ev}")
        for suffix in installer_module.ROLE_SUFFIXES:
            with suppress(psycopg.Error):
                db.execute(f"DROP OWNED BY {schema}_{suffix}; DROP ROLE {schema}_{suffix}")


def test_f2_events_the_log_cannot_take_still_go_to_the_quarantine_across_a_partition_end(near_end, connect):
    """After the mend the quarantine catches data_exception, not_null_violation, check_violation,
    program_limit_exceeded, internal_error. Events the log really refuses (a kind it refuses, a tenant
    over its bound: 23514; pending from an earlier release) around the partition's end still go there,
    in rounds that succeed; nothing else does. Safe: status intact, verify ok, seal_state = blocks."""
    db = near_end
    writer = connect("app_writer")

    def bad(kind: str, tenant: str | None = None) -> None:
        db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload,
                                                      origin, tenant_id)
                      VALUES ('user', 'x', %s, 'success', '1', now(), '{}', 'record', %s)""", (kind, tenant))

    for n in range(3):
        record(writer, f"t60.a{n}")
    bad("bad kind!")
    for n in range(3):
        record(writer, f"t60.b{n}")
    bad("t60.tenant", os.urandom(4000).hex())  # too large for the log's index on tenant_id (54000)
    for n in range(3):
        record(writer, f"t60.c{n}")
    rounds = 0
    while seal(db, 2).sealed:  # a failed round would raise
        rounds += 1
    assert sorted(r[0] for r in db.execute("SELECT kind FROM audit.quarantine")) == ["bad kind!", "t60.tenant"]
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 't60.%'").fetchone() == (9,)
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 'audit.event_quarantined'").fetchone() == (2,)
    assert problems_of(db) == []
    assert verified(db) == (True, None) and verify_chain(db).ok


def test_f3_reinstalling_after_sealing_across_partitions_and_pruning_leaves_status_intact(near_end, connect):
    db = near_end
    for r in range(4):
        for i in range(3):
            record(db, f"t60.r{r}.{i}")
        seal(db, 2)
    prune_events(connect("app_maintainer"), timedelta(milliseconds=1), 4)
    install(db)
    assert problems_of(db) == []
    while seal(db).sealed:
        pass
    install(db)
    assert problems_of(db) == []
    assert verified(db)[0]


def test_f4_two_sealers_racing_across_a_partition_end_never_conflict(near_end, connect):
    """Two sessions seal in small rounds at once across the first partition's end: each waits for the
    other's seal_state lock; neither meets the pre-check (PA017) nor fails; status intact after."""
    db = near_end
    writer = connect("app_writer")
    for i in range(80):
        record(writer, f"t60.c{i}")
    errors: list[BaseException] = []

    def work() -> None:
        conn = connect()
        try:
            for _ in range(40):
                seal(conn, 3)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)
    assert problems_of(db) == []
    assert verified(db)[0]


def test_f5_two_seals_in_one_transaction_across_a_partition_end(near_end):
    """seal() twice in one transaction (a scheduler's batch): the second sees the first's events below
    its next seq, none at or past it. Safe: both seal, status intact."""
    db = near_end
    for i in range(10):
        record(db, f"t60.e{i}")
    with db.transaction():
        first = seal(db, 3)
        second = seal(db, 6)
    assert (first.sealed, second.sealed) == (3, 6)
    assert problems_of(db) == []


# ================================== class 3: hostile objects ==================================


def test_h1_an_aligned_partition_at_the_top_of_bigint_is_named_and_status_answers(db):
    """Attack: the owner role attaches a guarded partition FROM (9223372036854000000) (a multiple of a
    million) TO (9223372036854775807), with a forged event. The bounds rule computes first_seq + size - 1
    past bigint's end. Safe: status answers, and names the partition."""
    record(db, "t60.sealed")
    seal(db)
    lo = 9223372036854000000
    as_owner(db, f"""
        CREATE TABLE audit.t60_top (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        {forged_rows('audit.t60_top', f'generate_series({TOP - 1}::bigint, {TOP - 1}::bigint)')};
        SELECT audit._guard_log_partition('audit.t60_top');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.t60_top FOR VALUES FROM ({lo}) TO ({TOP})""")
    try:
        problems = problems_of(db)
    except psycopg.Error as e:
        pytest.fail(f"status fails: {e.sqlstate} {e.diag.message_primary}")
    assert named(problems, "t60_top"), problems


def test_h2_an_empty_partition_at_the_bottom_of_bigint_is_named_and_status_answers(db):
    """Attack: the owner role attaches an empty, guarded partition FROM (-9223372036854775808) TO
    (-9223372036854000000) (it carries the log's CHECK (seq > 0), so it can hold nothing). The gap
    rule computes first_seq - 1 below bigint's start. Safe: status answers, and names it."""
    record(db, "t60.sealed")
    seal(db)
    as_owner(db, """
        CREATE TABLE audit.t60_bottom (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        SELECT audit._guard_log_partition('audit.t60_bottom');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.t60_bottom
            FOR VALUES FROM (-9223372036854775808) TO (-9223372036854000000)""")
    try:
        problems = problems_of(db)
    except psycopg.Error as e:
        pytest.fail(f"status fails: {e.sqlstate} {e.diag.message_primary}")
    assert named(problems, "t60_bottom"), problems
    record(db, "t60.after")
    assert seal(db).sealed == 1


def test_h3_a_deep_partition_tree_of_odd_names_is_named_leaf_by_leaf(db):
    """Attack: a partition of the log partitioned three levels deep, 27 leaves of odd names (quotes,
    newlines, spaces), each with a forged event. Safe: status answers and names every leaf."""
    record(db, "t60.sealed")
    seal(db)
    db.execute("""
        SET ROLE audit_owner;
        DO $$
        DECLARE a int; b int; c int; lo bigint; mid text; sub text; leaf text;
        BEGIN
            EXECUTE 'CREATE TABLE audit."t60 top" (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)'
                    ' PARTITION BY RANGE (seq)';
            FOR a IN 0..2 LOOP
                mid := format('t60 "mid" %s', a);
                EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit."t60 top" FOR VALUES FROM (%s) TO (%s)'
                               ' PARTITION BY RANGE (seq)', mid, 5000000 + a * 300000, 5000000 + (a + 1) * 300000);
                FOR b IN 0..2 LOOP
                    sub := format(E't60\\nsub %s.%s', a, b);
                    lo := 5000000 + a * 300000 + b * 100000;
                    EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.%I FOR VALUES FROM (%s) TO (%s)'
                                   ' PARTITION BY RANGE (seq)', sub, mid, lo, lo + 100000);
                    FOR c IN 0..2 LOOP
                        leaf := format('t60 leaf''%s%s%s', a, b, c);
                        EXECUTE format('CREATE TABLE audit.%I PARTITION OF audit.%I FOR VALUES FROM (%s) TO (%s)',
                                       leaf, sub, lo + c * 30000, lo + (c + 1) * 30000);
                        EXECUTE format('INSERT INTO audit.%I (seq, id, actor_type, db_role, kind, outcome, txid,'
                                       ' occurred_at, sealed_at, payload) VALUES (%s, gen_random_uuid(), ''user'','
                                       ' ''x'', ''t60.forged'', ''success'', ''1'', now(), now(), ''{}'')',
                                       leaf, lo + c * 30000 + 1);
                    END LOOP;
                END LOOP;
            END LOOP;
            PERFORM audit._guard_log_partition('audit."t60 top"');
            ALTER TABLE audit.event_log ATTACH PARTITION audit."t60 top" FOR VALUES FROM (5000000) TO (6000000);
        END $$;
        RESET ROLE""")
    problems = problems_of(db)
    leaves = [r[0] for r in db.execute("SELECT relid::regclass::text FROM pg_partition_tree('audit.\"t60 top\"')"
                                       " WHERE isleaf")]
    assert len(leaves) == 27
    missing = [leaf for leaf in leaves if not named(problems, f"table {leaf} is a partition of")]
    assert missing == [], (missing[:3], problems[:5])
