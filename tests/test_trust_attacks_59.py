"""A fifty-ninth attacker's trial, against a523650 (555ec48, c4004c5): status names what a package role
added to the package schemas, objects of kinds the package makes none of, a table inheriting from a
package table, a log partition unlogged or shaped otherwise than the log, and the log's contents
against what the sealer sealed: events past the last block, events at pruned seqs, seqs in no
partition (sql/80_integrity.sql `_integrity_problems`; sql/12_log_partitions.sql `_log_partitions`).

Classes:
  1. evasion: history forged or hidden with status intact (the bookkeeping the new rules trust,
     partitions `_log_partitions()` does not list or does not look inside, the sealer's next seq);
  2. false alarms: ordinary use (sealing across partitions, pruning, archiving, the quarantine, an
     upgrade, a seal rolled back or committed round by round, status while sealing) makes status
     non-intact;
  3. hostile objects: many forged rows, odd names, many partitions: status must answer and name them.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works. A member
of the owner role is emulated with SET ROLE audit_owner; a schema of the attacker's own (t59_side) is
emulated by a superuser's schema in which audit_owner may create. Roles made here are prefixed t59_
and dropped by the test that makes them.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from pgaudit_py import SealConflict, enable_tracking, install, prune_events, record, seal, seal_status, status
from pgaudit_py import installer as installer_module
from pgaudit_py.chain import verify_chain

FIRST_END = 999_999


# ============================================ helpers ============================================


def as_owner(db: psycopg.Connection, statements: str) -> None:
    """What a member of audit_owner may do (its rights, none of the superuser's)."""
    db.execute(f"SET ROLE audit_owner; {statements}; RESET ROLE")


def problems_of(db: psycopg.Connection, schema: str = "audit") -> list[str]:
    return status(db, schema).problems


def verified(db: psycopg.Connection) -> tuple[bool, str | None]:
    return tuple(db.execute("SELECT ok, problem FROM audit.verify()").fetchone())  # type: ignore[return-value]


def named(problems: list[str], *words: str) -> bool:
    return any(all(w in p for w in words) for p in problems)


def side_schema(db: psycopg.Connection) -> None:
    """The attacker's own schema (its login role's), where it may make objects and hand them to the owner role."""
    db.execute("CREATE SCHEMA t59_side; GRANT USAGE, CREATE ON SCHEMA t59_side TO audit_owner;"
               " GRANT USAGE ON SCHEMA t59_side TO PUBLIC")


def forged_rows(table: str, seqs: str, kind: str = "t59.forged") -> str:
    """An INSERT of forged events at the seqs of a generate_series expression."""
    return (f"INSERT INTO {table} (seq, id, actor_type, db_role, kind, outcome, txid, occurred_at, sealed_at, payload)"
            f" SELECT s, gen_random_uuid(), 'user', 'ceo', '{kind}', 'success', '1', now() - interval '1 year',"
            f" now() - interval '1 year', '{{\"forged\": true}}' FROM {seqs} s")


def swap_partition(db: psycopg.Connection, part: str, lo: int, hi: int, fill: str = "") -> None:
    """The owner role detaches a partition, drops it, and attaches a copy (its rows and `fill`) of the
    same name, bounds and guards in its place."""
    short = part.split(".")[1]
    as_owner(db, f"""
        CREATE TABLE audit.t59_copy (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        INSERT INTO audit.t59_copy SELECT * FROM {part};
        {fill.replace('{table}', 'audit.t59_copy')};
        ALTER TABLE audit.event_log DETACH PARTITION {part};
        DROP TABLE {part};
        ALTER TABLE audit.t59_copy RENAME TO {short};
        SELECT audit._guard_log_partition('{part}');
        ALTER TABLE audit.event_log ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi})""")


# ================================== class 1: evasion ==================================


def test_e1_a_sub_partitioned_log_partition_whose_leaf_rewrites_what_the_sealer_writes_is_named(near_end):
    """Attack: before the sealer makes the next partition, the owner role attaches its own, itself
    partitioned, guarded like any (_guard_log_partition), its one leaf in the attacker's schema with no
    guard and a row trigger that rewrites every event the sealer writes there (the hash is taken of
    what was written, so the chain agrees). `_log_partitions()` lists the partitioned partition only:
    nothing looks at the leaf (its guards, triggers, grants). Safe: status names it."""
    db = near_end
    side_schema(db)
    as_owner(db, """
        CREATE FUNCTION t59_side.rewrite() RETURNS trigger LANGUAGE plpgsql AS $f$
            BEGIN NEW.payload := '{"amount": 1}'; RETURN NEW; END $f$;
        CREATE TABLE audit.event_log_000001 (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
            PARTITION BY RANGE (seq);
        CREATE TABLE t59_side.leaf (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        CREATE TRIGGER rewrite BEFORE INSERT ON t59_side.leaf FOR EACH ROW EXECUTE FUNCTION t59_side.rewrite();
        ALTER TABLE audit.event_log_000001 ATTACH PARTITION t59_side.leaf FOR VALUES FROM (1000000) TO (2000000);
        SELECT audit._guard_log_partition('audit.event_log_000001');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.event_log_000001 FOR VALUES FROM (1000000) TO (2000000)""")
    for i in range(10):
        record(db, "t59.payment", payload={"amount": 1000 + i})
    seal(db)
    rewritten = db.execute("SELECT count(*) FROM audit.event_log WHERE tableoid = 't59_side.leaf'::regclass"
                           " AND payload = '{\"amount\": 1}'").fetchone()[0]
    assert rewritten == 5  # the attack took: sealed events rewritten on their way in
    problems = problems_of(db)
    assert problems, f"a leaf of the log rewrote {rewritten} sealed events; status intact, verify {verified(db)}"


def test_e1b_a_sub_partitioned_log_partition_with_an_unguarded_leaf_is_named(near_end):
    """Attack: as e1, without the trigger: the leaf, where sealed events land, has no guard, and the
    owner role (its owner) may delete or change events there directly. Safe: status names it."""
    db = near_end
    side_schema(db)
    as_owner(db, """
        CREATE TABLE audit.event_log_000001 (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
            PARTITION BY RANGE (seq);
        CREATE TABLE t59_side.leaf (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        ALTER TABLE audit.event_log_000001 ATTACH PARTITION t59_side.leaf FOR VALUES FROM (1000000) TO (2000000);
        SELECT audit._guard_log_partition('audit.event_log_000001');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.event_log_000001 FOR VALUES FROM (1000000) TO (2000000)""")
    for i in range(10):
        record(db, f"t59.e{i}")
    seal(db)
    problems = problems_of(db)
    assert problems, "sealed events live in a leaf of the log with no guard; status intact"


def test_e1d_a_sub_partitioned_log_partition_wholly_in_another_schema_is_named(near_end):
    """Attack: as e1, but the partitioned partition itself is in the attacker's schema too (a direct
    partition of the log, listed by `_log_partitions()`, guarded like any): the rule on tables
    inheriting from a package table looks only at parents in the package schema, and nothing looks
    at the leaf, whose trigger rewrites every event the sealer writes there. Safe: status names it."""
    db = near_end
    side_schema(db)
    as_owner(db, """
        CREATE FUNCTION t59_side.rewrite() RETURNS trigger LANGUAGE plpgsql AS $f$
            BEGIN NEW.payload := '{"amount": 1}'; RETURN NEW; END $f$;
        CREATE TABLE t59_side.mid (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
            PARTITION BY RANGE (seq);
        CREATE TABLE t59_side.leaf (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        CREATE TRIGGER rewrite BEFORE INSERT ON t59_side.leaf FOR EACH ROW EXECUTE FUNCTION t59_side.rewrite();
        ALTER TABLE t59_side.mid ATTACH PARTITION t59_side.leaf FOR VALUES FROM (1000000) TO (2000000);
        SELECT audit._guard_log_partition('t59_side.mid');
        ALTER TABLE audit.event_log ATTACH PARTITION t59_side.mid FOR VALUES FROM (1000000) TO (2000000)""")
    for i in range(10):
        record(db, "t59.payment", payload={"amount": 1000 + i})
    seal(db)
    rewritten = db.execute("SELECT count(*) FROM audit.event_log WHERE tableoid = 't59_side.leaf'::regclass"
                           " AND payload = '{\"amount\": 1}'").fetchone()[0]
    assert rewritten == 5  # the attack took: sealed events rewritten on their way in
    problems = problems_of(db)
    assert problems, f"a leaf of the log rewrote {rewritten} sealed events; status intact, verify {verified(db)}"


def test_e1c_a_sub_partition_in_the_package_schema_is_named(near_end):
    """The same leaf made in the package schema: it is a relation added (control)."""
    db = near_end
    as_owner(db, """
        CREATE TABLE audit.event_log_000001 (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)
            PARTITION BY RANGE (seq);
        CREATE TABLE audit.t59_leaf (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        ALTER TABLE audit.event_log_000001 ATTACH PARTITION audit.t59_leaf FOR VALUES FROM (1000000) TO (2000000);
        SELECT audit._guard_log_partition('audit.event_log_000001');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.event_log_000001 FOR VALUES FROM (1000000) TO (2000000)""")
    assert named(problems_of(db), "t59_leaf")


@pytest.mark.parametrize("bounds", ["FOR VALUES FROM (1000000) TO (MAXVALUE)", "DEFAULT"])
def test_e2_a_partition_of_bounds_status_cannot_read_made_by_the_owner_role_is_named(near_end, bounds):
    """Attack: the owner role attaches a partition `_log_partitions()` cannot parse (a MAXVALUE or a
    DEFAULT bound), with no guard. Made by the owner role, it is none of another role's (trial 54's
    test named a superuser's); a partition of the log, it is out of the snapshot; unlisted, none of
    the partition checks (guards, grants, triggers, shape) look at it. Safe: status names it."""
    db = near_end
    as_owner(db, f"""
        CREATE TABLE audit.t59_odd (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        ALTER TABLE audit.event_log ATTACH PARTITION audit.t59_odd {bounds}""")
    problems = problems_of(db)
    assert named(problems, "t59_odd"), problems


def test_e2b_sealed_events_in_a_maxvalue_partition_are_guarded_or_named(near_end):
    """Continuing e2 with MAXVALUE: the sealer routes the next partition's events into the attacker's
    unguarded partition (if it can seal at all); the owner role then deletes one. Safe: status (or
    verify) names it, and sealing does not silently route events where no guard is."""
    db = near_end
    as_owner(db, """
        CREATE TABLE audit.t59_odd (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        ALTER TABLE audit.event_log ATTACH PARTITION audit.t59_odd FOR VALUES FROM (1000000) TO (MAXVALUE)""")
    for i in range(10):
        record(db, f"t59.e{i}")
    with suppress(psycopg.Error):
        seal(db)
    landed = db.execute("SELECT count(*) FROM audit.t59_odd").fetchone()[0]
    as_owner(db, "DELETE FROM audit.t59_odd WHERE seq = (SELECT max(seq) FROM audit.t59_odd)")
    problems = problems_of(db)
    assert named(problems, "t59_odd"), (landed, problems, verified(db))


@pytest.mark.parametrize("bounds", ["FOR VALUES FROM (1000000) TO (MAXVALUE)", "DEFAULT"])
def test_e2c_a_guarded_partition_of_bounds_status_cannot_read_is_named(near_end, bounds):
    """Attack: as e2, the partition given every guard (_guard_log_partition). `_log_partitions()`
    lists it with no bounds (regexp_match gives NULL): its guards pass; the seq checks skip it. With
    MAXVALUE the sealer can no longer make the next partition (it overlaps). Safe: status names it."""
    db = near_end
    as_owner(db, f"""
        CREATE TABLE audit.t59_odd (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        SELECT audit._guard_log_partition('audit.t59_odd');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.t59_odd {bounds}""")
    for i in range(10):
        record(db, f"t59.e{i}")
    try:
        sealing = f"sealed {seal(db).sealed}"
    except psycopg.Error as e:
        sealing = f"seal failed: {type(e).__name__}"
    problems = problems_of(db)
    assert named(problems, "t59_odd"), (sealing, problems)


def test_e3_history_forged_below_a_chain_start_the_owner_role_moved_is_named(db):
    """Attack: on a log with nothing sealed yet, the owner role raises seal_state's chain_start_seq and
    last_seq (seal_state has no guard: the owner role owns it) and swaps the empty first partition for
    one holding three forged events at seqs 1-3. They read as events sealed before the chain began
    (an upgraded log's): no block covers them, so neither status's new rules (past the chain start,
    no prune point) nor verify look at them. The sealer goes on at seq 4. Safe: status names it.

    Mended: seal_state is guarded like the blocks (only seal() moves it), and the owner role's rights to
    change it are taken: the move is refused. Around the guard (disabled, a right granted back), status
    names both while they last; put back before anything is sealed, nothing does (docs/installer.md)."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_owner(db, "UPDATE audit.seal_state SET chain_start_seq = 3, last_seq = 3")
    assert db.execute("SELECT chain_start_seq, last_seq FROM audit.seal_state").fetchone() == (0, 0)
    as_owner(db, "GRANT UPDATE ON audit.seal_state TO audit_owner")
    with pytest.raises(psycopg.Error) as refused:
        as_owner(db, "UPDATE audit.seal_state SET chain_start_seq = 3, last_seq = 3")
    assert refused.value.sqlstate == "PA006"  # the guard
    as_owner(db, "ALTER TABLE audit.seal_state DISABLE TRIGGER guard_update;"
                 " UPDATE audit.seal_state SET chain_start_seq = 3, last_seq = 3")
    swap_partition(db, "audit.event_log_000000", 0, 1000000,
                   fill=forged_rows("{table}", "generate_series(1, 3)"))
    problems = problems_of(db)
    assert named(problems, "guard_update", "seal_state", "disabled"), problems
    assert named(problems, "audit_owner has UPDATE on audit.seal_state"), problems


def test_e4_events_put_back_at_pruned_seqs_hidden_by_a_raised_chain_start_are_named(near_end, connect):
    """Attack: after prune dropped the first partition, the owner role attaches one for its seqs with
    forged events at pruned seqs (status names those: 'events at seqs pruned'), then raises
    chain_start_seq past them: the rule looks only above the chain's start. Safe: status names it
    (verify, which reads chain_start_seq for block 1, may too: noted in the message)."""
    db = near_end
    for i in range(5):
        record(db, f"t59.old{i}")
    seal(db)
    record(db, "t59.new")
    seal(db)
    maintainer = connect("app_maintainer")
    prune_events(maintainer, timedelta(milliseconds=1), 5)
    assert db.execute("SELECT count(*) FROM audit._log_partitions() WHERE first_seq = 0").fetchone() == (0,)
    assert problems_of(db) == []
    as_owner(db, f"""
        CREATE TABLE audit.event_log_000000 (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        {forged_rows('audit.event_log_000000', f'generate_series({FIRST_END - 4}, {FIRST_END})')};
        SELECT audit._guard_log_partition('audit.event_log_000000');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.event_log_000000 FOR VALUES FROM (0) TO (1000000)""")
    assert named(problems_of(db), "event_log_000000", "pruned")  # the mend's rule
    with pytest.raises(psycopg.errors.InsufficientPrivilege):  # mended: seal_state is guarded
        as_owner(db, f"UPDATE audit.seal_state SET chain_start_seq = {FIRST_END}")
    # Around the guard, and everything put back after: block 1 still says where the chain starts.
    as_owner(db, f"""ALTER TABLE audit.seal_state DISABLE TRIGGER guard_update;
        GRANT UPDATE ON audit.seal_state TO audit_owner;
        UPDATE audit.seal_state SET chain_start_seq = {FIRST_END};
        REVOKE UPDATE ON audit.seal_state FROM audit_owner;
        ALTER TABLE audit.seal_state ENABLE TRIGGER guard_update""")
    problems = problems_of(db)
    assert named(problems, "event_log_000000", "pruned"), problems
    assert named(problems, "seal_state says the chain starts after seq 999999"), problems


def test_e5_a_forged_event_at_the_next_seq_does_not_send_real_events_to_the_quarantine(near_end):
    """Attack: the owner role swaps the empty next partition for one holding a forged event at the very
    seq the sealer assigns next. Every real event then collides with it (a unique violation), which the
    sealer takes for an event the log cannot take: each goes to the quarantine. Safe: the sealer seals
    the real events (or fails the round), it quarantines none of them; and status names the squatter."""
    db = near_end
    for i in range(5):
        record(db, f"t59.old{i}")
    seal(db)  # seqs to 999999; the next partition is made ahead
    assert db.execute("SELECT count(*) FROM audit._log_partitions()").fetchone() == (2,)
    swap_partition(db, "audit.event_log_000001", 1000000, 2000000,
                   fill=forged_rows("{table}", "generate_series(1000000, 1000000)"))
    for i in range(3):
        record(db, f"t59.real{i}")
    with pytest.raises(SealConflict):  # mended: the sealer refuses, rather than quarantines
        seal(db)
    quarantined = db.execute("SELECT kind FROM audit.quarantine ORDER BY 1").fetchall()
    problems = problems_of(db)
    assert named(problems, "event_log_000001"), problems
    assert quarantined == [], f"real events quarantined because a forged event took their seq: {quarantined}"


def test_e5b_real_events_diverted_to_the_quarantine_by_a_squatter_leave_a_trace_in_status(near_end):
    """Continuing e5: once the sealer has set the real events aside, the owner role puts the next
    partition back as it was (empty, guarded). The real events are out of the chain, in the quarantine
    the sealer keeps for events the log cannot take, and nothing but a quarantine count says so.
    Safe: status names what happened (or the events were sealed after all)."""
    db = near_end
    for i in range(5):
        record(db, f"t59.old{i}")
    seal(db)
    swap_partition(db, "audit.event_log_000001", 1000000, 2000000,
                   fill=forged_rows("{table}", "generate_series(1000000, 1000000)"))
    for i in range(3):
        record(db, f"t59.real{i}")
    with pytest.raises(SealConflict):  # mended: the sealer refuses, rather than quarantines
        seal(db)
    swap_partition(db, "audit.event_log_000001", 1000000, 2000000,
                   fill="DELETE FROM {table} WHERE kind = 't59.forged'")
    with suppress(psycopg.Error):
        while seal(db).sealed:
            pass
    sealed = db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 't59.real%'").fetchone()[0]
    problems = problems_of(db)
    assert sealed == 3 or problems, (f"{3 - sealed} real events kept out of the chain (quarantined: "
                                     f"{seal_status(db).quarantined}); status intact, verify {verified(db)}")


def test_e6_a_sealed_event_changed_behind_disabled_guards_is_caught(near_end):
    """Control: the owner role disables a partition's guard, grants itself UPDATE, changes a sealed
    event and puts everything back: the catalogue is as it was, so status cannot see it; verify must."""
    db = near_end
    for i in range(3):
        record(db, f"t59.e{i}")
    seal(db)
    as_owner(db, """
        ALTER TABLE audit.event_log_000000 DISABLE TRIGGER guard_update;
        GRANT UPDATE ON audit.event_log_000000 TO audit_owner;
        UPDATE audit.event_log_000000 SET payload = '{"forged": true}' WHERE seq = (SELECT min(seq) FROM audit.event_log_000000);
        REVOKE UPDATE ON audit.event_log_000000 FROM audit_owner;
        ALTER TABLE audit.event_log_000000 ENABLE TRIGGER guard_update""")
    ok, problem = verified(db)
    assert problems_of(db) or not ok, "a sealed event changed; status and verify intact"


@pytest.mark.parametrize("parent", ["audit.blocks", "audit.quarantine", "audit.prune_points", "audit.event_intake"])
def test_e7_a_table_elsewhere_inheriting_through_a_chain_from_a_package_table_is_named(db, parent):
    """Attack: in the attacker's schema, a table inheriting from one that inherits from a package table
    (the first through the owner role); rows of both are read with the package table. Safe: named."""
    side_schema(db)
    if parent == "audit.event_intake":
        # A partitioned table cannot be inherited from: its partitions are tried instead (a partition cannot either).
        with pytest.raises(psycopg.Error):
            as_owner(db, "CREATE TABLE t59_side.mid () INHERITS (audit.event_intake_0)")
        return
    as_owner(db, f"CREATE TABLE t59_side.mid () INHERITS ({parent}); CREATE TABLE t59_side.leaf () INHERITS (t59_side.mid)")
    assert named(problems_of(db), "t59_side.mid", parent)


def test_e8_an_intake_partition_swapped_for_a_partitioned_one_with_an_unguarded_leaf_is_named(db):
    """Attack: the owner role swaps event_intake_0 (empty) for a partitioned table of its name, guarded
    like it, whose leaf in the attacker's schema has no guard: pending events that land there can be
    deleted before they are sealed. Safe: status names it."""
    side_schema(db)
    bound = db.execute("SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE oid = 'audit.event_intake_0'::regclass"
                       ).fetchone()[0]
    key = db.execute("SELECT pg_get_partkeydef('audit.event_intake'::regclass)").fetchone()[0]
    try:
        as_owner(db, f"""
            ALTER TABLE audit.event_intake DETACH PARTITION audit.event_intake_0;
            DROP TABLE audit.event_intake_0;
            CREATE TABLE audit.event_intake_0 (LIKE audit.event_intake INCLUDING ALL) PARTITION BY {key};
            CREATE TABLE t59_side.pending (LIKE audit.event_intake INCLUDING ALL);
            ALTER TABLE audit.event_intake_0 ATTACH PARTITION t59_side.pending {bound};
            CREATE TRIGGER guard_update BEFORE UPDATE ON audit.event_intake_0
                FOR EACH STATEMENT EXECUTE FUNCTION audit._guard_append_only();
            CREATE TRIGGER guard_delete BEFORE DELETE ON audit.event_intake_0
                FOR EACH STATEMENT EXECUTE FUNCTION audit._guard_append_only();
            CREATE TRIGGER guard_truncate BEFORE TRUNCATE ON audit.event_intake_0
                FOR EACH STATEMENT EXECUTE FUNCTION audit._guard_append_only('audit_sealer');
            ALTER TABLE audit.event_intake ATTACH PARTITION audit.event_intake_0 {bound}""")
    except psycopg.Error as e:
        pytest.skip(f"the swap was refused: {e}")
    problems = problems_of(db)
    assert problems, "an intake partition with an unguarded leaf; status intact"


# ================================== class 2: false alarms ==================================


def test_f1_sealing_across_a_partition_end_in_small_rounds_leaves_status_intact(near_end):
    db = near_end
    for i in range(14):
        record(db, f"t59.e{i}")
    seen = []
    while (result := seal(db, 3)).sealed:
        seen.append((result.first_seq, result.last_seq, problems_of(db)))
    assert [s[2] for s in seen if s[2]] == [], seen
    assert db.execute("SELECT count(*) FROM audit._log_partitions()").fetchone()[0] >= 2


def test_f2_pruning_part_of_a_partition_then_the_rest_leaves_status_intact(near_end, connect):
    db = near_end
    for _ in range(3):
        for i in range(3):
            record(db, f"t59.e{i}")
        seal(db, 3)
    record(db, "t59.late")
    seal(db)
    maintainer = connect("app_maintainer")
    steps = []
    while True:
        result = prune_events(maintainer, timedelta(milliseconds=1), 2)
        steps.append((result.deleted, problems_of(db)))
        if not result.more or result.deleted == 0:
            break
    assert [p for _, p in steps if p] == [], steps
    for i in range(3):
        record(db, f"t59.after{i}")
    seal(db)
    assert problems_of(db) == []
    assert verified(db)[0]


def test_f3_archive_delete_archived_and_restore_leave_status_intact(db, connect, tmp_path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pgaudit_py import archive as archiving
    from pgaudit_py.archive_targets import open_target
    from pgaudit_py.checkpoint import Keys

    for b in range(6):
        for i in range(5):
            record(db, "t59.order", payload={"b": b, "i": i})
        seal(db)
    db.execute("SELECT audit.set_archive_settings('90 days', 10, NULL)")
    maintainer = connect("app_maintainer")
    private = Ed25519PrivateKey.generate()
    keys = Keys(signing_key=private, public_key=private.public_key(), hmac_key=b"k" * 32)
    target = open_target(f"file://{tmp_path}/archive")
    run = archiving.archive(maintainer, target, keys, older_than=timedelta(milliseconds=1), max_batches=2)
    assert run.events == 20
    assert problems_of(db) == []
    archiving.restore_batch(maintainer, target, run.batches[0].batch_id)
    assert problems_of(db) == []
    seal(db)
    prune_events(maintainer, timedelta(milliseconds=1), 1000)
    assert problems_of(db) == []


def test_f3b_archiving_across_a_partition_end_drops_the_partition_and_leaves_status_intact(near_end, connect,
                                                                                          tmp_path: Path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pgaudit_py import archive as archiving
    from pgaudit_py.archive_targets import open_target
    from pgaudit_py.checkpoint import Keys

    db = near_end
    for _ in range(4):
        for i in range(4):
            record(db, f"t59.e{i}")
        seal(db, 4)
    db.execute("SELECT audit.set_archive_settings('90 days', 5, NULL)")
    maintainer = connect("app_maintainer")
    private = Ed25519PrivateKey.generate()
    keys = Keys(signing_key=private, public_key=private.public_key(), hmac_key=b"k" * 32)
    target = open_target(f"file://{tmp_path}/archive")
    archiving.archive(maintainer, target, keys, older_than=timedelta(milliseconds=1), max_batches=10)
    assert problems_of(db) == []
    assert verified(db)[0]


def test_f4_the_quarantine_at_a_partition_end_leaves_status_intact(near_end, connect):
    db = near_end
    writer = connect("app_writer")
    for n in range(4):
        record(writer, f"t59.before{n}")
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload, origin)
                  VALUES ('user', 'x', 'bad kind!', 'success', '1', now(), '{}', 'record')""")
    for n in range(4):
        record(writer, f"t59.after{n}")
    while seal(db, 100).sealed:
        pass
    assert seal_status(db).quarantined == 1
    assert problems_of(db) == []
    prune_events(connect("app_maintainer"), timedelta(milliseconds=1), 1000)
    assert problems_of(db) == []


def test_f5_a_seal_rolled_back_after_making_a_partition_and_seal_backlog_leave_status_intact(near_end):
    db = near_end
    for i in range(10):
        record(db, f"t59.e{i}")
    with suppress(RuntimeError), db.transaction():
        seal(db)
        assert db.execute("SELECT count(*) FROM audit._log_partitions()").fetchone()[0] == 2
        raise RuntimeError("the round fails after its work")
    assert db.execute("SELECT count(*) FROM audit._log_partitions()").fetchone()[0] == 1
    assert problems_of(db) == []
    db.execute("CALL audit.seal_backlog(3)")
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)
    assert problems_of(db) == []


def test_f6_status_while_another_session_seals_across_a_partition_end_and_prunes(near_end, connect):
    """Status in one session while another seals round after round across the partition's end, and
    prunes after each round (dropping the first partition at some point): every answer is intact."""
    db = near_end
    sealer = connect()
    pruner = connect("app_maintainer")
    for i in range(60):
        record(sealer, f"t59.c{i}")
    answers: list[list[str]] = []
    errors: list[BaseException] = []
    done = threading.Event()

    def work() -> None:
        try:
            for _ in range(25):  # each prune records an event of its own: a bounded number of rounds
                seal(sealer, 4)
                prune_events(pruner, timedelta(milliseconds=1), 3)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
        finally:
            done.set()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    watcher = connect()
    while not done.is_set():
        answers.append(problems_of(watcher))
    thread.join(60)
    answers.append(problems_of(watcher))
    assert errors == []
    assert db.execute("SELECT count(*) FROM audit._log_partitions() WHERE first_seq = 0").fetchone() == (0,)
    wrong = [a for a in answers if a]
    assert wrong == [], (len(wrong), len(answers), wrong[:3])


def test_f6b_status_while_sealing_crosses_one_partition_end(near_end, connect):
    db = near_end
    sealer = connect()
    for i in range(400):
        record(sealer, f"t59.c{i}")
    answers: list[list[str]] = []
    done = threading.Event()

    def work() -> None:
        try:
            while seal(sealer, 7).sealed:
                pass
        finally:
            done.set()

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    watcher = connect()
    while not done.is_set():
        answers.append(problems_of(watcher))
    thread.join(60)
    answers.append(problems_of(watcher))
    assert [a for a in answers if a] == []
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)


def test_f7_an_upgrade_of_the_previous_release_with_events_then_pruning_leaves_status_intact(db, connect,
                                                                                            tmp_path_factory):
    from test_upgrade import RELEASE, installer_at

    previous = installer_at(RELEASE, tmp_path_factory)
    schema = "t59_up"
    try:
        db.execute("SET lc_messages = 'C'")
        previous.install(db, schema)
        for i in range(4):
            db.execute(f"SELECT {schema}.record(kind => 't59.old', payload => '{{\"n\": {i}}}')")
        seal(db, audit_schema=schema)
        db.execute(f"SELECT {schema}.record(kind => 't59.pending')")
        db.execute("RESET lc_messages")
        install(db, schema)
        assert problems_of(db, schema) == []
        seal(db, audit_schema=schema)
        assert problems_of(db, schema) == []
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


def test_f8_an_upgraded_log_with_events_before_the_chain_prunes_and_stays_intact(db, connect):
    """Events sealed before the chain began (seq <= chain_start_seq, as an upgrade from a release
    before the chain leaves them) stay in the log across pruning: no false alarm."""
    for i in range(4):
        record(db, f"t59.prechain{i}")
    seal(db)
    # What migration 0003 leaves: the events so far are before the chain, which starts after them.
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("DELETE FROM audit.blocks")
        db.execute("UPDATE audit.event_log SET block_no = NULL")
        db.execute("UPDATE audit.seal_state SET chain_start_seq = last_seq, last_block_no = 0,"
                   " last_block_hash = decode(repeat('00', 32), 'hex')")
    assert problems_of(db) == []
    for i in range(4):
        record(db, f"t59.chained{i}")
    seal(db)
    prune_events(connect("app_maintainer"), timedelta(milliseconds=1), 1000)
    assert problems_of(db) == []
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 't59.prechain%'").fetchone() == (4,)


# ================================== class 3: hostile objects ==================================


def test_h1_many_forged_rows_past_the_chain_are_named_in_one_line(db):
    record(db, "t59.sealed")
    seal(db)
    as_owner(db, f"""
        CREATE TABLE audit.t59_bulk (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        {forged_rows('audit.t59_bulk', 'generate_series(5000000, 5199999)')};
        SELECT audit._guard_log_partition('audit.t59_bulk');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.t59_bulk FOR VALUES FROM (5000000) TO (6000000)""")
    problems = problems_of(db)
    assert [p for p in problems if "t59_bulk" in p and "seal() names" not in p] == [  # (its name: trial 60's rule)
        "partition audit.t59_bulk of audit.event_log holds events past the last sealed seq (1): the sealer did not seal them"
    ], problems


@pytest.mark.parametrize("name", ['t59 "evil"; name%s', "t59\nline", "T59_UPPER", "t59_" + "x" * 59])
def test_h2_a_forged_partition_of_an_odd_name_is_named_as_it_reads(db, name):
    record(db, "t59.sealed")
    seal(db)
    quoted = db.execute("SELECT quote_ident(%s)", [name]).fetchone()[0]
    as_owner(db, f"""
        CREATE TABLE audit.{quoted} (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        {forged_rows(f'audit.{quoted}', 'generate_series(7000000, 7000002)')};
        SELECT audit._guard_log_partition('audit.{quoted.replace("'", "''")}');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.{quoted} FOR VALUES FROM (7000000) TO (8000000)""")
    problems = problems_of(db)
    regclass = db.execute("SELECT %s::regclass::text", [f"audit.{quoted}"]).fetchone()[0]
    assert named(problems, f"partition {regclass} of audit.event_log holds events past"), problems


def test_h3_two_hundred_forged_partitions_are_each_named(db):
    record(db, "t59.sealed")
    seal(db)
    db.execute("""
        SET ROLE audit_owner;
        DO $$
        DECLARE k int;
        BEGIN
            FOR k IN 10..209 LOOP
                EXECUTE format('CREATE TABLE audit.t59_p%s (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', k);
                EXECUTE format('INSERT INTO audit.t59_p%s (seq, id, actor_type, db_role, kind, outcome, txid,'
                               ' occurred_at, sealed_at, payload) VALUES (%s, gen_random_uuid(), ''user'', ''x'','
                               ' ''t59.forged'', ''success'', ''1'', now(), now(), ''{}'')', k, k::bigint * 1000000 + 1);
                PERFORM audit._guard_log_partition(format('audit.t59_p%s', k)::regclass);
                EXECUTE format('ALTER TABLE audit.event_log ATTACH PARTITION audit.t59_p%s FOR VALUES FROM (%s) TO (%s)',
                               k, k::bigint * 1000000, (k + 1)::bigint * 1000000);
            END LOOP;
        END $$;
        RESET ROLE""")
    problems = problems_of(db)
    assert len([p for p in problems if "holds events past the last sealed seq" in p]) == 200, problems[:5]


def test_h4_a_partition_at_the_top_of_bigint_with_a_forged_event_is_named(db):
    record(db, "t59.sealed")
    seal(db)
    top = 9223372036854775807
    as_owner(db, f"""
        CREATE TABLE audit.t59_top (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
        {forged_rows('audit.t59_top', f'generate_series({top - 1}::bigint, {top - 1}::bigint)')};
        SELECT audit._guard_log_partition('audit.t59_top');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.t59_top FOR VALUES FROM ({top - 10}) TO ({top})""")
    problems = problems_of(db)
    assert named(problems, "t59_top", "past the last sealed seq"), problems


def test_h5_tracking_still_works_and_status_answers_with_a_forged_sub_partitioned_partition(near_end):
    """An odd partition (itself partitioned, far ahead) does not make status fail or tracking DDL fail."""
    db = near_end
    as_owner(db, """
        CREATE TABLE audit.t59_nest (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY RANGE (seq);
        CREATE TABLE audit.t59_nest_leaf PARTITION OF audit.t59_nest FOR VALUES FROM (9000000) TO (9500000);
        SELECT audit._guard_log_partition('audit.t59_nest');
        ALTER TABLE audit.event_log ATTACH PARTITION audit.t59_nest FOR VALUES FROM (9000000) TO (10000000)""")
    db.execute("CREATE TABLE public.t59_tracked (id int PRIMARY KEY)")
    enable_tracking(db, "public.t59_tracked")
    db.execute("INSERT INTO public.t59_tracked VALUES (1)")
    seal(db)
    assert problems_of(db)  # at least the leaf, a relation added
