"""A sixty-first attacker's trial, against d2c8f05 and a64e710 (the mends for trial 60): seal()
quarantines an event only for the log's own refusal (_refused_by_the_log: a check_violation of one of
event_log's CHECKs by name, a not_null_violation of one of its NOT NULL columns by name, or any
data_exception, program_limit_exceeded, internal_error); status names partitions not named as seal()
names them and foreign keys to the log's tables; the table_rewrite event trigger refuses ALTER COLUMN
... TYPE rewrites of the log's tables to every role.

Classes:
  1. censoring by quarantine: a member of the owner role (SET ROLE audit_owner) makes seal() set
     chosen real events aside, then takes away what did it (status intact after);
  2. rewrites without ALTER COLUMN TYPE: the owner role changes stored values of the log's tables by
     other DDL (columns added with a default or a generated expression, dropped, renamed);
  3. denial of sealing with status intact (names seal() needs taken by other kinds of object);
  4. false alarms: ordinary use leaves status intact.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works. No role
is made here (everything is done as audit_owner, or as the superuser for the setting).
"""

from __future__ import annotations

import os
from contextlib import suppress
from datetime import timedelta

import psycopg
import pytest
from trial_helpers import as_owner, problems_of, verified

from pgaudit_py import SealConflict, install, prune_events, record, seal, seal_status
from pgaudit_py.chain import verify_chain

FIRST_END = 999_999


# ============================================ helpers ============================================


def named(problems: list[str], *words: str) -> bool:
    return any(all(w in p for w in words) for p in problems)


def log_check_name(db: psycopg.Connection) -> str:
    return db.execute("SELECT conname FROM pg_constraint WHERE conrelid = 'audit.event_log'::regclass"
                      " AND contype = 'c' ORDER BY conname LIMIT 1").fetchone()[0]


def forged_rows(table: str, seqs: str, kind: str = "t61.forged") -> str:
    return (f"INSERT INTO {table} (seq, id, actor_type, db_role, kind, outcome, txid, occurred_at, sealed_at, payload)"
            f" SELECT s, gen_random_uuid(), 'user', 'ceo', '{kind}', 'success', '1', now() - interval '1 year',"
            f" now() - interval '1 year', '{{\"forged\": true}}' FROM {seqs} s")


def swap_partition(db: psycopg.Connection, part: str, lo: int, hi: int, fill: str = "") -> None:
    """The owner role puts a copy of a partition (its rows and `fill`) in its place, same name, bounds, guards."""
    short = part.split(".")[1]
    as_owner(db, f"""
        CREATE TABLE audit.t61_copy (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS
            INCLUDING STORAGE INCLUDING COMPRESSION);
        INSERT INTO audit.t61_copy SELECT * FROM {part};
        {fill.replace('{table}', 'audit.t61_copy')};
        ALTER TABLE audit.event_log DETACH PARTITION {part};
        DROP TABLE {part};
        ALTER TABLE audit.t61_copy RENAME TO {short};
        SELECT audit._guard_log_partition('{part}');
        ALTER TABLE audit.event_log ATTACH PARTITION {part} FOR VALUES FROM ({lo}) TO ({hi})""")


def trigger_raising(target: str, raise_clause: str) -> tuple[str, str]:
    """A row trigger (the owner role's) raising `raise_clause` for the chosen event alone."""
    return (f"CREATE FUNCTION audit.t61_censor() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN"
            f" IF NEW.kind = 't61.wire' THEN RAISE EXCEPTION 'no' USING {raise_clause}; END IF; RETURN NEW; END $f$;"
            f" CREATE TRIGGER t61_censor BEFORE INSERT ON {target} FOR EACH ROW EXECUTE FUNCTION audit.t61_censor()",
            f"DROP TRIGGER t61_censor ON {target}; DROP FUNCTION audit.t61_censor()")


def replaced_function(db: psycopg.Connection, signature: str, body_from: str, body_to: str) -> tuple[str, str]:
    """CREATE OR REPLACE of one of the package's functions with a chosen change, and its original to put back."""
    original = db.execute("SELECT pg_get_functiondef(%s::regprocedure)", [signature]).fetchone()[0]
    assert body_from in original, original
    return original.replace(body_from, body_to, 1), original


CENSORS = {
    # A partition's own CHECK that fails with a data_exception (22012) rather than a check_violation.
    "partition_check_division_by_zero": lambda db: (
        "ALTER TABLE audit.event_log_000001 ADD CONSTRAINT t61_c CHECK ((CASE WHEN kind = 't61.wire' THEN 1 / (length(kind) - length(kind))"
        " ELSE 1 END) = 1)",
        "ALTER TABLE audit.event_log_000001 DROP CONSTRAINT t61_c"),
    # ... or a cast that fails (22P02).
    "partition_check_bad_cast": lambda db: (
        "ALTER TABLE audit.event_log_000001 ADD CONSTRAINT t61_c CHECK ((CASE WHEN kind = 't61.wire' THEN kind::int"
        " ELSE 1 END) = 1)",
        "ALTER TABLE audit.event_log_000001 DROP CONSTRAINT t61_c"),
    # An expression index of the partition's own, raising 22012 for the chosen row.
    "partition_index_division_by_zero": lambda db: (
        "CREATE INDEX t61_i ON audit.event_log_000001 ((CASE WHEN kind = 't61.wire' THEN 1 / (length(kind) - length(kind)) ELSE 1 END))",
        "DROP INDEX audit.t61_i"),
    # The same index on the log itself (a partitioned index, made on every partition).
    "log_index_division_by_zero": lambda db: (
        "CREATE INDEX t61_i ON audit.event_log ((CASE WHEN kind = 't61.wire' THEN 1 / (length(kind) - length(kind)) ELSE 1 END))",
        "DROP INDEX audit.t61_i"),
    # A CHECK added to the log itself: by name, one of "the log's own".
    "log_check_of_the_owners": lambda db: (
        "ALTER TABLE audit.event_log ADD CONSTRAINT t61_c CHECK (kind <> 't61.wire') NOT VALID",
        "ALTER TABLE audit.event_log DROP CONSTRAINT t61_c"),
    # A NOT NULL set on the log's column for a while (every other event carries a tenant).
    "log_not_null_of_the_owners": lambda db: (
        "ALTER TABLE audit.event_log ALTER COLUMN tenant_id SET NOT NULL",
        "ALTER TABLE audit.event_log ALTER COLUMN tenant_id DROP NOT NULL"),
    # A NOT NULL of the partition's own (control: not one of the log's columns' NOT NULLs).
    "partition_not_null": lambda db: (
        "ALTER TABLE audit.event_log_000001 ALTER COLUMN tenant_id SET NOT NULL",
        "ALTER TABLE audit.event_log_000001 ALTER COLUMN tenant_id DROP NOT NULL"),
    # A stored generated column on the log, failing for the chosen row (its add is a rewrite for a
    # default value, not a column's: the rewrite refusal lets it through).
    "log_generated_column": lambda db: (
        "ALTER TABLE audit.event_log ADD COLUMN t61 int GENERATED ALWAYS AS"
        " (CASE WHEN kind = 't61.wire' THEN 1 / (length(kind) - length(kind)) ELSE 0 END) STORED",
        "ALTER TABLE audit.event_log DROP COLUMN t61"),
    # Row triggers on the partition that receives the events (or on the log, cloned to it).
    "partition_trigger_data_exception": lambda db: trigger_raising("audit.event_log_000001", "ERRCODE = '22023'"),
    "partition_trigger_program_limit": lambda db: trigger_raising("audit.event_log_000001", "ERRCODE = '54000'"),
    "partition_trigger_internal_error": lambda db: trigger_raising("audit.event_log_000001", "ERRCODE = 'XX000'"),
    "partition_trigger_forged_check_name": lambda db: trigger_raising(
        "audit.event_log_000001", f"ERRCODE = 'check_violation', CONSTRAINT = '{log_check_name(db)}'"),
    "partition_trigger_forged_not_null_column": lambda db: trigger_raising(
        "audit.event_log_000001", "ERRCODE = 'not_null_violation', COLUMN = 'kind'"),
    "log_trigger_data_exception": lambda db: trigger_raising("audit.event_log", "ERRCODE = '22000'"),
    # One of the package's functions the insert calls, replaced for a round and put back.
    "sealable_hash_replaced": lambda db: replaced_function(
        db, "audit._sealable_hash(text)", "IF octet_length(line) > 16777216 THEN",
        "IF octet_length(line) > 16777216 OR line LIKE '%t61.wire%' THEN"),
}


@pytest.mark.parametrize("how", list(CENSORS))
def test_c1_the_owner_role_cannot_send_a_chosen_real_event_to_the_quarantine(near_end, how):
    """Attack: with the next partition made ahead, the owner role puts in place something that fails
    the insert of the chosen event (kind t61.wire) alone with an error the quarantine takes (a
    data_exception, 54000, XX000, or a check_violation / not_null_violation naming one of the log's
    own constraints or columns), seals, and takes it away. Safe: the round fails (the events wait),
    and once the censor is gone every real event is sealed; none is in the quarantine."""
    db = near_end
    record(db, "t61.before", tenant_id="acme")
    seal(db)  # 999996; _000001 made ahead
    put, take = CENSORS[how](db)
    as_owner(db, put)
    during = problems_of(db)
    for i in range(4):
        record(db, "t61.noise", tenant_id="acme", payload={"n": i})
    record(db, "t61.wire", payload={"to": "offshore", "amount": 10_000_000})
    for i in range(4):
        record(db, "t61.noise", tenant_id="acme", payload={"n": 10 + i})
    failure = None
    try:
        seal(db)
    except psycopg.Error as e:
        failure = f"{e.sqlstate}: {e.diag.message_primary}"
    except SealConflict as e:  # the mend: an event failed while the sealer's path was not as installed
        failure = f"PA017: {e}"
    as_owner(db, take)
    while seal(db).sealed:
        pass
    quarantined = [r[0] for r in db.execute("SELECT kind FROM audit.quarantine WHERE kind LIKE 't61.%'")]
    after = problems_of(db)
    assert quarantined == [], (f"real events sent to the quarantine: {quarantined} (round failed: {failure}); "
                               f"status while it lasted named {len(during)} problems, afterwards {after}")
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't61.wire'").fetchone() == (1,)


# ==================================== class 2: rewrites ====================================


def test_r1_seal_state_moved_before_block_one_by_a_column_added_with_a_default_is_refused_or_named(db):
    """Attack (trial 60's e5 without ALTER COLUMN TYPE): the owner role adds a column of seal_state
    NOT NULL DEFAULT 3 (a fast default: no rewrite, no row trigger), drops its default, drops
    chain_start_seq and gives the new column its name: the chain starts after seq 3, and every
    property the snapshot keeps of the column (type, collation, NOT NULL, default) is as it was. Then it
    swaps the empty first partition for one holding three forged events at seqs 1-3: sealed before the
    chain began. Safe: refused, or status names it."""
    try:
        as_owner(db, "ALTER TABLE audit.seal_state ADD COLUMN t61 bigint NOT NULL DEFAULT 3;"
                     " ALTER TABLE audit.seal_state ALTER COLUMN t61 DROP DEFAULT;"
                     " ALTER TABLE audit.seal_state DROP COLUMN chain_start_seq;"
                     " ALTER TABLE audit.seal_state RENAME COLUMN t61 TO chain_start_seq")
        as_owner(db, "ALTER TABLE audit.seal_state ADD COLUMN t61 bigint NOT NULL DEFAULT 3;"
                     " ALTER TABLE audit.seal_state ALTER COLUMN t61 DROP DEFAULT;"
                     " ALTER TABLE audit.seal_state DROP COLUMN last_seq;"
                     " ALTER TABLE audit.seal_state RENAME COLUMN t61 TO last_seq;"
                     " ALTER TABLE audit.seal_state ALTER COLUMN last_seq SET DEFAULT 0;"
                     " ALTER TABLE audit.seal_state ADD CONSTRAINT seal_state_last_seq_check CHECK (last_seq >= 0)")
    except psycopg.Error:
        return  # refused: held
    moved = db.execute("SELECT chain_start_seq, last_seq FROM audit.seal_state").fetchone()
    assert moved == (3, 3)
    intact_after_move = problems_of(db)
    swap_partition(db, "audit.event_log_000000", 0, 1000000, fill=forged_rows("{table}", "generate_series(1, 3)"))
    for i in range(3):
        record(db, f"t61.real{i}")
    seal(db)
    problems = problems_of(db)
    assert problems, (f"seal_state moved to {moved} by columns added and renamed (status then: {intact_after_move}); "
                      f"three forged events before the chain; status intact, verify {verified(db)}, "
                      f"python verifier ok={verify_chain(db).ok}")


def _copy_column(table: str, column: str, kind: str, expression: str, extra: str = "") -> str:
    """A column's values replaced by an expression of the row without ALTER COLUMN TYPE: a stored
    generated column computes it (a rewrite for a default value), DROP EXPRESSION makes it a plain
    column, the old one is dropped and the new one takes its name."""
    return (f"ALTER TABLE {table} ADD COLUMN t61 {kind} GENERATED ALWAYS AS ({expression}) STORED;"
            f" ALTER TABLE {table} ALTER COLUMN t61 DROP EXPRESSION;"
            f" ALTER TABLE {table} DROP COLUMN {column};"
            f" ALTER TABLE {table} RENAME COLUMN t61 TO {column};"
            f" ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL{extra}")


def test_r2_a_pending_event_rewritten_by_a_generated_column_is_refused_or_named(db):
    """Attack: a pending event (a wire of 10,000,000) is in the intake; the owner role replaces the
    intake's payload column by a copy computed from it (ADD COLUMN ... GENERATED ALWAYS AS (...)
    STORED, DROP EXPRESSION, DROP COLUMN, RENAME): the wire now says 1. No guard fires (no row is
    updated), no ALTER COLUMN TYPE is run. The sealer then seals the forged payload into the chain.
    Safe: refused, or status names it, or the sealed event says what was recorded."""
    record(db, "t61.wire", payload={"to": "offshore", "amount": 10_000_000})
    record(db, "t61.noise", payload={"n": 1})
    checks = db.execute("SELECT string_agg(format(' ; ALTER TABLE audit.event_intake ADD CONSTRAINT %I %s', conname,"
                        " pg_get_constraintdef(oid)), '') FROM pg_constraint WHERE conrelid = 'audit.event_intake'::regclass"
                        " AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%payload%'").fetchone()[0] or ""
    # The view reading the intake's payload is replaced for a while by one reading NULL there (CREATE OR
    # REPLACE VIEW: the same columns, so the functions returning its row type stay), then put back as it
    # was: the snapshot keys a view by its name and definition, and its grants are untouched.
    definition = db.execute("SELECT pg_get_viewdef('audit.events'::regclass)").fetchone()[0].rstrip().rstrip(";")
    assert "i.payload" in definition
    drop = f"CREATE OR REPLACE VIEW audit.events AS {definition.replace('i.payload', 'NULL::jsonb')}"
    remake = f"CREATE OR REPLACE VIEW audit.events AS {definition}"
    try:
        as_owner(db, drop + "; " + _copy_column("audit.event_intake", "payload", "jsonb",
                                  "CASE WHEN kind = 't61.wire' THEN payload || '{\"amount\": 1}' ELSE payload END",
                                  checks) + "; " + remake)
    except psycopg.Error:
        return  # refused: held
    with suppress(psycopg.Error):
        seal(db)
    sealed = db.execute("SELECT payload ->> 'amount' FROM audit.event_log WHERE kind = 't61.wire'").fetchone()
    problems = problems_of(db)
    assert sealed in (None, ("10000000",)) or problems, (
        f"the pending wire sealed as {sealed} after the intake's payload column was replaced; status intact, "
        f"verify {verified(db)}")


def test_r3_a_quarantined_event_rewritten_by_a_generated_column_is_refused_or_named(db):
    """Attack: an event the log refused is in the quarantine (kept for review, not hashed); the owner
    role replaces the quarantine's payload column by a copy computed from it, blanking what was set
    aside. Safe: refused, or status names it."""
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload, origin)
                  VALUES ('user', 'x', 'bad kind!', 'success', '1', now(), '{"secret": "evidence"}', 'record')""")
    seal(db)
    assert db.execute("SELECT payload FROM audit.quarantine").fetchone() == ({"secret": "evidence"},)
    checks = db.execute("SELECT string_agg(format(' ; ALTER TABLE audit.quarantine ADD CONSTRAINT %I %s', conname,"
                        " pg_get_constraintdef(oid)), '') FROM pg_constraint WHERE conrelid = 'audit.quarantine'::regclass"
                        " AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%payload%'").fetchone()[0] or ""
    try:
        as_owner(db, _copy_column("audit.quarantine", "payload", "jsonb", "'{}'::jsonb || (payload - 'secret')", checks))
    except psycopg.Error as e:
        assert e.sqlstate, e
        return  # refused: held
    payload = db.execute("SELECT payload FROM audit.quarantine").fetchone()
    problems = problems_of(db)
    assert payload == ({"secret": "evidence"},) or problems, f"quarantined event now {payload}; status intact"


def test_r4_a_block_rewritten_by_a_generated_column_is_caught(db):
    """The same copy of a column on the blocks (control: the hash chain names it)."""
    for i in range(3):
        record(db, "t61.payment", payload={"amount": 100 + i})
    seal(db)
    try:
        as_owner(db, _copy_column("audit.blocks", "events_hash", "bytea", "sha256('forged'::bytea)"))
    except psycopg.Error:
        return
    ok, _ = verified(db)
    assert not ok or problems_of(db)
    assert not verify_chain(db).ok


@pytest.mark.parametrize("pair", [("last_seq", "last_block_no"), ("chain_start_seq", "last_block_no"),
                                  ("chain_start_seq", "last_seq")])
def test_r5_seal_state_columns_swapped_by_renames_are_named(near_end, pair):
    """Attack: two bigint columns of seal_state swap names by three renames (no rewrite, no row
    trigger, the snapshot keys columns by name and type). Safe: named (the sealer and status then
    read each other's value)."""
    db = near_end
    for i in range(3):
        record(db, f"t61.e{i}")
    seal(db)
    a, b = pair
    as_owner(db, f"ALTER TABLE audit.seal_state RENAME COLUMN {a} TO t61;"
                 f" ALTER TABLE audit.seal_state RENAME COLUMN {b} TO {a};"
                 f" ALTER TABLE audit.seal_state RENAME COLUMN t61 TO {b}")
    before = db.execute("SELECT last_seq, chain_start_seq, last_block_no FROM audit.seal_state").fetchone()
    problems = problems_of(db)
    assert problems, f"seal_state's columns {pair} swapped ({before}); status intact"


# ============================== class 3: denial of sealing ==============================


@pytest.mark.parametrize("obj", [
    "CREATE DOMAIN audit.event_log_000001 AS int",
    "CREATE TYPE audit.event_log_000001 AS ENUM ('x')",
    "CREATE TYPE audit.event_log_000001 AS (x int)",
    "CREATE TYPE audit.event_log_000001 AS RANGE (subtype = int)",
    "CREATE SEQUENCE audit.event_log_000001",
    "CREATE VIEW audit.event_log_000001 AS SELECT 1 AS x",
    "CREATE INDEX event_log_000001 ON audit.blocks (sealed_at)",
    "CREATE TYPE audit.t61_m AS RANGE (subtype = int, multirange_type_name = audit.event_log_000001)",
])
def test_d1_a_name_seal_needs_taken_by_another_kind_of_object_is_named(near_end, obj):
    """Attack: the next partition's name (event_log_000001) taken in schema audit by an object that is
    no partition of the log (a type of any kind shares the namespace of relations' row types, an
    index or a sequence that of relations). seal() fails at the partition's end with 42P07/42710
    round after round. Safe: sealing goes on, or status names why it cannot."""
    db = near_end
    as_owner(db, obj)
    for i in range(8):
        record(db, f"t61.e{i}")
    try:
        sealed = seal(db).sealed
        failure = None
    except psycopg.Error as e:
        sealed, failure = 0, f"{e.sqlstate}: {e.diag.message_primary}"
    if failure is None:
        with suppress(psycopg.Error):
            while seal(db).sealed:
                pass
    pending = seal_status(db).pending
    problems = problems_of(db)
    assert (sealed > 0 and pending == 0) or problems, (f"seal() fails ({failure}) with {pending} events pending; "
                                                       f"status intact")


# ================================== class 4: false alarms ==================================


def test_f1_quarantine_of_real_bad_events_across_a_partition_end_prune_and_reinstall_stay_intact(near_end, connect):
    """Events the log really refuses (a kind, a tenant too large to index: 54000, an outcome: 23514)
    around the partition's end go to the quarantine in rounds that succeed; prune and a re-install
    after. Safe: status intact, verify ok."""
    db = near_end
    writer = connect("app_writer")

    def bad(kind: str, tenant: str | None = None, outcome: str = "success") -> None:
        db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload,
                                                      origin, tenant_id)
                      VALUES ('user', 'x', %s, %s, '1', now(), '{}', 'record', %s)""", (kind, outcome, tenant))

    for n in range(3):
        record(writer, f"t61.a{n}")
    bad("bad kind!")
    for n in range(3):
        record(writer, f"t61.b{n}")
    bad("t61.tenant", os.urandom(4000).hex())
    bad("t61.outcome", None, "maybe")
    for n in range(3):
        record(writer, f"t61.c{n}")
    while seal(db, 3).sealed:
        pass
    quarantined = sorted(r[0] for r in db.execute("SELECT kind FROM audit.quarantine"))
    assert quarantined == ["bad kind!", "t61.outcome", "t61.tenant"], quarantined
    assert problems_of(db) == []
    prune_events(connect("app_maintainer"), timedelta(milliseconds=1), 4)
    install(db)
    assert problems_of(db) == []
    assert verified(db)[0] and verify_chain(db).ok


def test_f2_a_censor_put_and_taken_away_between_rounds_leaves_the_chain_intact(near_end):
    """Control for c1: the same events sealed in small rounds across the partition's end, with nothing
    put in the way, leave status intact and every event sealed."""
    db = near_end
    record(db, "t61.before")
    seal(db)
    for i in range(5):
        record(db, f"t61.e{i}")
    while seal(db, 2).sealed:
        pass
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 't61.%'").fetchone() == (6,)
    assert problems_of(db) == []


def test_r6_a_prune_point_moved_by_columns_added_with_a_default_does_not_hide_sealed_events(near_end, connect):
    """Attack: after an ordinary prune of block 1, the owner role moves the prune point onto the last
    block (its number, hash and last seq) without an UPDATE: each column is replaced by one added with a
    constant default (no rewrite, no row trigger) that takes the old one's name, the primary key made
    again under its name. Blocks 2 and 3 now read as pruned: verify skips their events; the owner role
    detaches and drops the partitions that hold them. Safe: status or verify names it."""
    db = near_end
    for i in range(3):
        record(db, f"t61.old{i}")
    seal(db)  # block 1: 999996..999998
    prune_events(connect("app_maintainer"), timedelta(milliseconds=1), 1000)
    for i in range(3):
        record(db, "t61.secret", payload={"n": i})
    seal(db)  # 999999 in block 2, 1000000..1000001 in block 3
    last = db.execute("SELECT block_no, encode(block_hash, 'hex'), last_seq FROM audit.blocks"
                      " ORDER BY block_no DESC LIMIT 1").fetchone()
    assert last[0] == 3, last
    pk = db.execute("SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'prune_points_pkey'").fetchone()[0]
    statements = []
    for column, kind, value in [("block_no", "bigint", str(last[0])), ("block_hash", "bytea", f"'\\x{last[1]}'::bytea"),
                                ("last_seq", "bigint", str(last[2]))]:
        statements.append(f"ALTER TABLE audit.prune_points ADD COLUMN t61 {kind} NOT NULL DEFAULT {value};"
                          f" ALTER TABLE audit.prune_points ALTER COLUMN t61 DROP DEFAULT;"
                          f" ALTER TABLE audit.prune_points DROP COLUMN {column};"
                          f" ALTER TABLE audit.prune_points RENAME COLUMN t61 TO {column}")
    statements.append(f"ALTER TABLE audit.prune_points ADD CONSTRAINT prune_points_pkey {pk}")
    try:
        as_owner(db, "; ".join(statements))
    except psycopg.Error:
        return  # refused: held
    parts = [r[0] for r in db.execute("SELECT part::text FROM audit._log_partitions()")]
    as_owner(db, "; ".join(f"ALTER TABLE audit.event_log DETACH PARTITION {p}; DROP TABLE {p}" for p in parts))
    secrets = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't61.secret'").fetchone()[0]
    problems = problems_of(db)
    ok, problem = verified(db)
    assert problems or not ok, (f"three sealed events gone ({secrets} left) behind a prune point moved by DDL; "
                                f"status intact, verify ok")


def test_f3_an_upgrade_from_before_the_mends_with_a_quarantined_event_and_a_pending_one_stays_intact(
        db, tmp_path_factory):
    """From 5903bcb (before _refused_by_the_log): an event the log refuses quarantined across the first
    partition's end, another pending, then upgraded, sealed again (the pending bad one quarantined by the
    new seal()) and installed once more. Safe: status intact, verify ok."""
    from test_upgrade import installer_at

    from pgaudit_py import installer as installer_module

    previous = installer_at("5903bcb", tmp_path_factory)
    schema = "t61_up"

    def bad(kind: str) -> None:
        db.execute(f"""INSERT INTO {schema}.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload,
                                                          origin) VALUES ('user', 'x', %s, 'success', '1', now(), '{{}}',
                                                          'record')""", (kind,))

    try:
        previous.install(db, schema)
        db.execute(f"SET ROLE {schema}_sealer; UPDATE {schema}.seal_state SET last_seq = 999997,"
                   f" chain_start_seq = 999997; RESET ROLE")
        for i in range(3):
            record(db, f"t61.old{i}", audit_schema=schema)
        bad("bad kind!")
        seal(db, audit_schema=schema)
        bad("also bad!")
        record(db, "t61.pending", audit_schema=schema)
        install(db, schema)
        assert problems_of(db, schema) == []
        while seal(db, audit_schema=schema).sealed:
            pass
        install(db, schema)
        quarantined = sorted(r[0] for r in db.execute(f"SELECT kind FROM {schema}.quarantine"))
        assert quarantined == ["also bad!", "bad kind!"], quarantined
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
