"""What the sealer and prune trust about the log: seal_state (where the chain starts and ends),
which only seal() moves and which must agree with the blocks; the partitions, each a table of the
package schema holding a million seqs from a multiple of a million; and the sealer's next seq, where
nobody else writes (mends for trial 59)."""

from __future__ import annotations

import psycopg
import pytest

from pgaudit_py import SealConflict, install, record, seal, seal_status, status

FIRST_END = 999_999


def as_owner(db: psycopg.Connection, statements: str) -> None:
    """What a member of the owner role could do: it owns the tables."""
    db.execute(f"SET ROLE audit_owner; {statements}; RESET ROLE")


def state(db: psycopg.Connection) -> tuple:
    return db.execute("SELECT last_seq, chain_start_seq, last_block_no FROM audit.seal_state").fetchone()


@pytest.mark.parametrize("role", ["audit_owner", "audit_maintainer", "audit_writer", None])
@pytest.mark.parametrize("statement", [
    "UPDATE audit.seal_state SET chain_start_seq = 7",
    "DELETE FROM audit.seal_state",
    "INSERT INTO audit.seal_state (singleton) VALUES (false)",
    "TRUNCATE audit.seal_state",
])
def test_only_seal_moves_seal_state(db, role, statement):
    """Every role is refused, the owner role and a superuser (None) too: by a missing right or the guard."""
    record(db, "t.e")
    seal(db)
    before = state(db)
    with pytest.raises(psycopg.Error) as refused:
        db.execute(f"SET ROLE {role}; {statement}" if role else statement)
    db.execute("RESET ROLE")
    assert refused.value.sqlstate in ("42501", "PA006")  # insufficient privilege, or the guard
    assert state(db) == before == (1, 0, 1)


@pytest.mark.parametrize("role", ["audit_owner", None])
@pytest.mark.parametrize("table", ["seal_state", "blocks", "event_log", "event_intake", "prune_points", "quarantine"])
def test_a_column_rewrite_of_the_logs_tables_is_refused(db, role, table):
    """ALTER COLUMN ... TYPE ... USING rewrites every row and fires no guard: the event trigger refuses it
    on the log's tables, to the owner role and a superuser (None) alike. (The views reading the table
    are dropped first, in the same transaction: PostgreSQL refuses to change a column a view reads.)"""
    record(db, "t.e")
    seal(db)
    record(db, "t.pending")
    column, kind = db.execute("SELECT quote_ident(a.attname), format_type(a.atttypid, a.atttypmod) FROM pg_attribute a"
                              " WHERE a.attrelid = %s::regclass AND (a.attname = 'payload' OR a.attnum = 1)"
                              " ORDER BY a.attname = 'payload' DESC LIMIT 1", [f"audit.{table}"]).fetchone()
    views = [v for (v,) in db.execute("SELECT DISTINCT r.ev_class::regclass::text FROM pg_depend d"
                                      " JOIN pg_rewrite r ON r.oid = d.objid"
                                      " WHERE d.classid = 'pg_rewrite'::regclass AND d.refobjid = %s::regclass"
                                      "   AND r.ev_class <> d.refobjid", [f"audit.{table}"])]
    before = db.execute(f"SELECT md5(string_agg(t::text, '' ORDER BY t::text)) FROM audit.{table} t").fetchone()
    statement = "".join(f"DROP VIEW IF EXISTS {v} CASCADE; " for v in views) + (
        f"ALTER TABLE audit.{table} ALTER COLUMN {column} TYPE {kind} USING coalesce({column}, {column})")
    with pytest.raises(psycopg.Error) as refused:
        db.execute(f"SET ROLE {role}; {statement}" if role else statement)
    db.execute("RESET ROLE")
    assert refused.value.sqlstate == "PA006", refused.value
    assert db.execute(f"SELECT md5(string_agg(t::text, '' ORDER BY t::text)) FROM audit.{table} t").fetchone() == before


def test_a_disabled_seal_state_guard_and_a_right_to_change_it_are_named(db):
    as_owner(db, "ALTER TABLE audit.seal_state DISABLE TRIGGER guard_update;"
                 " GRANT UPDATE ON audit.seal_state TO audit_owner")
    problems = status(db).problems
    assert {"guard trigger guard_update on audit.seal_state is disabled",
            "audit_owner has UPDATE on audit.seal_state"} <= set(problems), problems
    install(db)  # the re-run repairs both
    assert status(db).problems == []


def test_seal_state_that_says_other_than_the_blocks_is_named(db):
    for i in range(3):
        record(db, f"t.e{i}")
    seal(db)
    record(db, "t.e3")
    seal(db)
    assert status(db).problems == []
    with db.transaction():  # around the guard, as a superuser can
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("UPDATE audit.seal_state SET chain_start_seq = 2")
    assert status(db).problems == ["audit.seal_state says the chain starts after seq 2; block 1 starts after seq 0"]
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("UPDATE audit.seal_state SET chain_start_seq = 0, last_seq = 9")
    assert status(db).problems == ["audit.seal_state says the chain ends at block 2, seq 9; the last block is 2, "
                                   "ending at seq 4"]
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("UPDATE audit.seal_state SET last_seq = 4, last_block_hash = sha256('x')")
    assert status(db).problems == ["audit.seal_state says the chain ends at block 2, seq 4; the last block is 2, "
                                   "ending at seq 4, of another hash"]


def attach(db: psycopg.Connection, table: str, bounds: str, partitioned: str = "") -> None:
    """The owner role attaches a table of its own to the log, guarded like seal()'s."""
    as_owner(db, f"""
        CREATE TABLE {table} (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS) {partitioned};
        SELECT audit._guard_log_partition('{table}');
        ALTER TABLE audit.event_log ATTACH PARTITION {table} {bounds}""")


@pytest.mark.parametrize("bounds, shown", [
    ("FOR VALUES FROM (1000000) TO (MAXVALUE)", "FOR VALUES FROM ('1000000') TO (MAXVALUE)"),
    ("DEFAULT", "DEFAULT"),
    ("FOR VALUES FROM (1000000) TO (1500000)", "FOR VALUES FROM ('1000000') TO ('1500000')"),
    ("FOR VALUES FROM (1500000) TO (2500000)", "FOR VALUES FROM ('1500000') TO ('2500000')"),
])
def test_a_partition_of_other_bounds_than_seals_is_named(db, bounds, shown):
    attach(db, "audit.odd", bounds)
    assert f"partition audit.odd of audit.event_log is bounded {shown}, not from a multiple of a million to one" \
        in status(db).problems


def test_a_partition_wearing_another_name_than_seals_is_named(db):
    """seal() names the partition for seqs from k million event_log_<k>, and cannot make one whose name
    another partition wears; a partition of several millions (an upgraded log's first) is what it makes."""
    attach(db, "audit.event_log_000001", "FOR VALUES FROM (5000000) TO (6000000)")
    attach(db, "audit.event_log_000002", "FOR VALUES FROM (2000000) TO (4000000)")
    assert status(db).problems == [
        "partition audit.event_log_000001 of audit.event_log holds seqs from 5000000: seal() names that one "
        "event_log_000005, and fails to make a partition of this one's name"]


def test_a_foreign_key_to_the_log_is_named(db):
    as_owner(db, "CREATE TABLE audit.pin (seq bigint); ALTER TABLE audit.pin ADD CONSTRAINT pin_seq"
                 " FOREIGN KEY (seq) REFERENCES audit.event_log (seq) NOT VALID")
    assert "foreign key pin_seq on audit.pin references audit.event_log" in status(db).problems


def test_a_partition_outside_the_schema_and_a_partitioned_one_are_named_with_their_partitions(db):
    db.execute("CREATE SCHEMA side; GRANT USAGE, CREATE ON SCHEMA side TO audit_owner")
    try:
        attach(db, "side.mid", "FOR VALUES FROM (1000000) TO (2000000)", "PARTITION BY RANGE (seq)")
        as_owner(db, "CREATE TABLE side.leaf (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);"
                     " ALTER TABLE side.mid ATTACH PARTITION side.leaf FOR VALUES FROM (1000000) TO (2000000)")
        attach(db, "side.plain", "FOR VALUES FROM (2000000) TO (3000000)")
        problems = status(db).problems
        assert {"partition side.mid of audit.event_log is partitioned: its partitions are out of every check",
                "table side.leaf is a partition of side.mid, itself a partition of audit.event_log: out of every check",
                "partition side.plain of audit.event_log is outside schema audit"} <= set(problems), problems
    finally:
        db.execute("DROP SCHEMA side CASCADE")
    assert status(db).problems == []


def test_seal_refuses_to_write_where_an_event_already_is_and_quarantines_nothing(near_end):
    db = near_end
    for i in range(5):
        record(db, f"t.old{i}")
    seal(db)  # seqs to 999999; the next partition is made ahead
    record(db, "t.real")
    # An event at the sealer's next seq, put there around the guards (as a superuser can).
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("INSERT INTO audit.event_log (seq, id, actor_type, db_role, kind, outcome, txid, occurred_at,"
                   " sealed_at, payload) SELECT 1000000, gen_random_uuid(), 'user', 'x', 't.forged', 'success', '1',"
                   " now(), now(), '{}'")
    with pytest.raises(SealConflict, match="at or past seq 1000000"):
        seal(db)
    assert (seal_status(db).pending, seal_status(db).quarantined, seal_status(db).last_seq) == (1, 0, FIRST_END)
    assert "partition audit.event_log_000001 of audit.event_log holds events past the last sealed seq (999999): " \
           "the sealer did not seal them" in status(db).problems
    with db.transaction():
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute("DELETE FROM audit.event_log WHERE kind = 't.forged'")
    assert seal(db).first_seq == 1_000_000
    assert db.execute("SELECT kind FROM audit.event_log WHERE seq = 1000000").fetchone() == ("t.real",)
    assert status(db).problems == []
