"""A sixty-fifth attacker's trial: new variants against the mends of 6d35c25, 8a0b742 and c601391.

Classes (test names carry the letter):
  S. the intake's ids, as the owner role (SET ROLE audit_owner), which owns the intake and its
     schema but no longer the id sequence (the sealer's since migration 0021): an id reserved with
     nextval (the owner's USAGE) and written later with an explicit intake_id, or one below every
     pending event (0, -1); the sequence dropped by the schema's owner and put back as its own, then
     moved back for one write and forward again; a grant on that replacement (to audit_writer) that
     the re-install status asks for keeps and records as installed, and the same through the
     pruner's prune_events; a replacement ending three ids on, or OWNED BY the intake (the
     re-install cannot hand it over); an event written at 2^63 - 1; the intake's default dropped, or
     pointed at another sequence or expression; a partition's own default and a BEFORE INSERT
     trigger; ids burned with nextval;
  U. upgrades through migration 0021 from 4858460 (before the mend): pending events in two slots
     keep their ids and order; a sequence the owner moved back, or granted on, under the old
     release; the psql script path (install_script) with pending events;
  P. publications read live by status: publish widened after status ran, a name that needs
     quoting, the log's root with a row filter across partitions that sealing makes later;
  F. storage and persistence: an intake partition made UNLOGGED, a log partition's column stored
     PLAIN, a table the owner adds (UNLOGGED, PLAIN): named, and put back by a re-install; two
     UNLOGGED tables of the owner's referencing each other, which no SET LOGGED can take;
  Z. false alarms: fresh install and re-install (the sequence the sealer's, the default nextval),
     an upgrade from 4858460 with sealed and pending events (then seal, both verifiers, prune),
     archiving and deleting archived events, a
     row filter the intake's whole-row identity covers, the application's own filtered publication
     of its tracked table with updates and deletes.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
"""

from __future__ import annotations

import os
import time
from contextlib import suppress
from datetime import timedelta

import psycopg
import pytest
from earlier_releases import installer_at
from trial_helpers import (
    as_owner,
    both_verifiers,
    drop_publications,
    owner_publishes,
    owner_tries,
    problems_of,
    seal_all,
    tracked_acct,
)

from pgaudit_py import install, prune_events, record, seal, seal_status

SEQ = "audit.event_intake_intake_id_seq"
SLOT = 16384


# ============================================ helpers ============================================


def sealed_order(db: psycopg.Connection, like: str = "t65.%", schema: str = "audit") -> list[str]:
    return [k for (k,) in db.execute(f"SELECT kind FROM {schema}.event_log WHERE kind LIKE %s ORDER BY seq", [like])]


def intake_columns(db: psycopg.Connection, schema: str = "audit") -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped"
        " AND attname NOT IN ('intake_id', 'id', 'kind') ORDER BY attnum", [f"{schema}.event_intake"])]


def owner_writes_at(db: psycopg.Connection, intake_id: int | str, kind: str) -> str | None:
    """The owner role writes one event into the intake with an intake_id of its choosing (a copy of
    the first pending event's other columns, a new id, its own kind). The error when refused."""
    cols = ", ".join(intake_columns(db))
    return owner_tries(db, f"INSERT INTO audit.event_intake (intake_id, kind, {cols})"
                           f" SELECT {intake_id}, '{kind}', {cols} FROM audit.event_intake ORDER BY intake_id LIMIT 1")


def pending_ids(db: psycopg.Connection, schema: str) -> list[tuple[int, str]]:
    return [tuple(r) for r in db.execute(f"SELECT intake_id, kind FROM {schema}.event_intake ORDER BY intake_id")]


# ===================================== class S: the intake's ids =====================================


@pytest.mark.xfail(strict=True, reason="a known limit (docs/installer.md): the owner role writes the intake (record() runs as it) and may choose every field of a pending event, its intake id included; strict, so that a change that closes it says so")
@pytest.mark.parametrize("how", ["reserved_by_nextval", "zero", "negative"])
def test_s1_the_owner_cannot_write_an_event_with_a_chosen_intake_id_sealed_before_an_earlier_write(db, connect, how):
    """Attack: the owner role may no longer move the sequence, but it still owns the intake and keeps
    INSERT on it (its functions write there), and the id is only a DEFAULT: an INSERT may give its
    own. It reserves an id with nextval (its USAGE), lets a writer write, then writes its event with
    the reserved id; or writes one with intake_id 0 or -1 (partition 0 takes both). The sequence
    stands past every pending id, so seal() does not refuse and status names nothing, and the later
    event is sealed first. Safe: the INSERT is refused, or the events are sealed in the order written,
    or status names it."""
    writer = connect("app_writer")
    record(writer, "t65.opening")
    assert seal_all(db) is None
    reserved = None
    if how == "reserved_by_nextval":
        as_owner(db, f"SELECT nextval('{SEQ}')")
        reserved = db.execute(f"SELECT last_value FROM {SEQ}").fetchone()[0]
    record(writer, "t65.first")
    chosen = {"reserved_by_nextval": reserved, "zero": 0, "negative": -1}[how]
    refused = owner_writes_at(db, chosen, "t65.later")
    problems = problems_of(db)
    failure = seal_all(db)
    order = sealed_order(db)
    assert refused or order.index("t65.first") < order.index("t65.later") or problems, (
        f"the owner's later event (intake_id {chosen}) was sealed before an earlier write: {order};"
        f" seal: {failure}; status intact")


def test_s2_the_schemas_owner_cannot_put_a_sequence_of_its_own_in_the_sealers_place_unnamed(db, connect):
    """Attack: the owner role owns the schema, and a schema's owner may drop any object in it. It
    drops the sealer's sequence (CASCADE takes the intake's default), makes one of the same name and
    parameters, starting where the old one stood, gives the same default and grants, then moves it
    back for one writer's write and forward again past every pending id: a later write is sealed
    first, and the ids show nothing. Safe: the drop is refused, or status names the replaced
    sequence (or the default), or the order holds."""
    writer = connect("app_writer")
    record(writer, "t65.opening")
    nxt = db.execute(f"SELECT last_value + 1 FROM {SEQ}").fetchone()[0]
    refused = owner_tries(db, f"""DROP SEQUENCE {SEQ} CASCADE;
        CREATE SEQUENCE {SEQ} AS bigint START {nxt} CACHE 1 NO CYCLE;
        ALTER TABLE audit.event_intake ALTER COLUMN intake_id SET DEFAULT nextval('{SEQ}');
        GRANT USAGE ON SEQUENCE {SEQ} TO audit_capture, audit_pruner""")
    if refused:
        assert db.execute("SELECT to_regclass(%s) IS NOT NULL", [SEQ]).fetchone()[0]
        return
    record(writer, "t65.first")  # id nxt
    as_owner(db, f"ALTER SEQUENCE {SEQ} RESTART WITH {nxt - 1}")  # the opening's id: slot 0, below first
    owner_writes_at(db, "DEFAULT", "t65.later")
    as_owner(db, f"ALTER SEQUENCE {SEQ} RESTART WITH {nxt + 5}")
    record(writer, "t65.after")
    problems = problems_of(db)
    failure = seal_all(db)
    order = sealed_order(db)
    assert problems or order.index("t65.first") < order.index("t65.later"), (
        f"sealed {order} (seal: {failure}); the sequence is the owner's and status intact")



@pytest.mark.parametrize("grantee", ["audit_writer", "audit_capture"])
def test_s6_a_grant_left_on_a_replaced_sequence_survives_the_reinstall_that_status_asked_for(db, connect, grantee):
    """Attack: the owner role (the schema's owner) drops the sealer's sequence and makes its own, as
    in s2, and grants UPDATE on it to audit_writer (every writer's group), or to audit_capture (a
    role it is the one member of, which had USAGE there before). Status names the replaced
    sequence, so the operator re-runs the installer: it hands the sequence back to the sealer
    (PostgreSQL rewrites each grant's grantor to the new owner), grants its own, revokes from PUBLIC
    alone, and records the grants it leaves, audit_writer's UPDATE among them (a grantee the last
    record did not have), as installed. Status is quiet, and any writer (the application), or the
    owner role as audit_capture, may setval: back for one write and forward again past every pending id, the strict xfail of 6d35c25
    that 8a0b742 closed reopened, with no trace. Safe: the drop is refused, or after the re-install
    no role but the sealer may move the sequence, or status names it, or the order holds."""
    writer = connect("app_writer")
    as_owner(db, f"SELECT nextval('{SEQ}') FROM generate_series(1, 5)")  # ids rolled-back writes took
    record(writer, "t65.opening")
    assert seal_all(db) is None
    nxt = db.execute(f"SELECT last_value + 1 FROM {SEQ}").fetchone()[0]
    refused = owner_tries(db, f"""DROP SEQUENCE {SEQ} CASCADE;
        CREATE SEQUENCE {SEQ} AS bigint START {nxt} CACHE 1 NO CYCLE;
        ALTER TABLE audit.event_intake ALTER COLUMN intake_id SET DEFAULT nextval('{SEQ}');
        GRANT USAGE ON SEQUENCE {SEQ} TO audit_capture, audit_pruner;
        GRANT UPDATE ON SEQUENCE {SEQ} TO {grantee}""")
    if refused:
        return
    assert problems_of(db) != []  # named while it is the owner's
    install(db)  # what status asked for
    movers = [r[0] for r in db.execute(
        "SELECT a.grantee::regrole::text FROM pg_class c, aclexplode(c.relacl) a"
        " WHERE c.oid = %s::regclass AND a.privilege_type = 'UPDATE' AND a.grantee <> c.relowner", [SEQ])]
    quiet = problems_of(db)
    record(writer, "t65.first")  # id nxt
    moved = None
    mover = writer if grantee == "audit_writer" else db
    assert db.execute("SELECT pg_has_role('audit_owner', 'audit_capture', 'MEMBER')").fetchone()[0]
    as_mover = "" if grantee == "audit_writer" else "SET ROLE audit_owner; SET ROLE audit_capture; "
    try:
        mover.execute(f"{as_mover}SELECT setval('{SEQ}', {nxt - 3})")
        mover.execute("RESET ROLE")
        record(writer, "t65.later")  # id nxt - 2, one no write took
        mover.execute(f"{as_mover}SELECT setval('{SEQ}', {nxt + 5})")
    except psycopg.Error as e:
        moved = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    finally:
        mover.execute("RESET ROLE")
    problems = problems_of(db)
    failure = seal_all(db)
    order = sealed_order(db)
    assert moved or problems or order.index("t65.first") < order.index("t65.later"), (
        f"after the re-install {movers} may update the sequence, status {quiet} then {problems};"
        f" the writer moved it back and forth, sealed {order} (seal: {failure})")


def test_s8_a_grant_on_a_replaced_prune_events_survives_the_reinstall_and_lets_a_writer_prune(db, connect):
    """Attack: the same route through another object the owner role does not own: as the schema's
    owner it drops the pruner's prune_events (SECURITY DEFINER, no floor on older_than but a positive
    interval), makes a stub of its own of the same signature and grants EXECUTE on it to
    audit_writer. Status names the changed function; the operator re-runs the installer, which hands
    the function to the pruner and rewrites its body, revokes from PUBLIC alone, and records the
    writers' EXECUTE (a grantee the last record did not have) as installed. The application, a
    writer, may then prune every sealed event older than a second. Safe: the drop is refused, or
    after the re-install a writer may not prune, or status names the grant."""
    record(db, "t65.old")
    assert seal_all(db) is None
    refused = owner_tries(db, """DROP FUNCTION audit.prune_events(interval, integer);
        CREATE FUNCTION audit.prune_events(older_than interval, batch_size integer DEFAULT 1000)
            RETURNS audit.prune_result LANGUAGE sql AS $$ SELECT NULL::audit.prune_result $$;
        GRANT EXECUTE ON FUNCTION audit.prune_events(interval, integer) TO audit_writer""")
    if refused:
        return
    assert problems_of(db) != []  # named while it is the owner's
    install(db)  # what status asked for
    quiet = problems_of(db)
    time.sleep(1.2)
    record(db, "t65.new")
    assert seal_all(db) is None
    writer = connect("app_writer")
    pruned = None
    with suppress(psycopg.Error):
        pruned = writer.execute("SELECT deleted FROM audit.prune_events(interval '1 second')").fetchone()[0]
    left = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't65.old'").fetchone()[0]
    problems = problems_of(db)
    assert left == 1 or problems, (
        f"after the re-install (status {quiet}) the writer pruned {pruned} events; status {problems}")


@pytest.mark.parametrize("how", ["maxvalue", "owned_by"])
def test_s9_a_replaced_sequence_the_reinstall_cannot_or_does_not_put_right_is_named(db, connect, how):
    """Attack: the owner role replaces the sealer's sequence (as in s2) with one that ends three ids
    on (MAXVALUE: every captured write then fails), or one OWNED BY the intake's column (PostgreSQL
    then refuses to hand a linked sequence to another owner, so the re-install's ALTER SEQUENCE ...
    OWNER TO the sealer fails). The operator re-runs the installer. Safe: after it the sequence is
    the sealer's and writes go on, or status names what is left."""
    writer = connect("app_writer")
    record(writer, "t65.opening")
    nxt = db.execute(f"SELECT last_value + 1 FROM {SEQ}").fetchone()[0]
    extra = {"maxvalue": f"MAXVALUE {nxt + 2}", "owned_by": "OWNED BY audit.event_intake.intake_id"}[how]
    refused = owner_tries(db, f"""DROP SEQUENCE {SEQ} CASCADE;
        CREATE SEQUENCE {SEQ} AS bigint START {nxt} CACHE 1 NO CYCLE {extra};
        ALTER TABLE audit.event_intake ALTER COLUMN intake_id SET DEFAULT nextval('{SEQ}');
        GRANT USAGE ON SEQUENCE {SEQ} TO audit_capture, audit_pruner""")
    if refused:
        return
    error = None
    try:
        install(db)
    except Exception as e:  # noqa: BLE001
        with suppress(Exception):
            db.execute("ROLLBACK")
        error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    owner = db.execute("SELECT relowner::regrole::text FROM pg_class WHERE oid = %s::regclass", [SEQ]).fetchone()[0]
    failed = None
    try:
        for i in range(5):
            record(writer, "t65.w", payload={"i": i})
    except psycopg.Error as e:
        failed = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    problems = problems_of(db)
    assert (owner == "audit_sealer" and failed is None) or problems, (
        f"re-install: {error}; the sequence is {owner}'s; writes: {failed}; status intact")


def test_s7_an_event_the_owner_writes_past_the_sequence_is_named(db, connect):
    """Attack: the owner role writes one event with intake_id 2^63 - 1 into the intake (its INSERT):
    seal() refuses every batch holding it (PA017), for good, since no one but the sealer may delete
    it and the sequence can only reach it at its very end. Safe: refused, or status names it."""
    writer = connect("app_writer")
    record(writer, "t65.first")
    refused = owner_writes_at(db, 2 ** 63 - 1, "t65.wedge")
    record(writer, "t65.after")
    failure = seal_all(db)
    problems = problems_of(db)
    assert refused or problems, f"sealing: {failure}; status intact"


DEFAULTS = {
    "drop_default": "ALTER TABLE audit.event_intake ALTER COLUMN intake_id DROP DEFAULT",
    "another_sequence": "CREATE SEQUENCE audit.t65_ids START 1; ALTER TABLE audit.event_intake ALTER COLUMN intake_id"
                        " SET DEFAULT nextval('audit.t65_ids')",
    "expression_below": f"ALTER TABLE audit.event_intake ALTER COLUMN intake_id SET DEFAULT nextval('{SEQ}') - 1",
    "public_sequence": "ALTER TABLE audit.event_intake ALTER COLUMN intake_id SET DEFAULT nextval('public.t65_ids')",
}


@pytest.mark.parametrize("how", list(DEFAULTS))
def test_s3_the_intakes_default_changed_by_the_owner_is_named(db, connect, how):
    """Attack: the owner role owns the intake: it drops the id's default (every write fails), points
    it at a sequence of its own (in the schema, or one a superuser left in public that the owner
    may use), or at an expression of the sealer's sequence that gives a lower id. Safe: the change is
    refused, or status names it."""
    if how == "public_sequence":
        db.execute("CREATE SEQUENCE public.t65_ids; GRANT ALL ON SEQUENCE public.t65_ids TO PUBLIC")
    refused = owner_tries(db, DEFAULTS[how])
    problems = problems_of(db)
    assert refused or problems, f"{how}: the intake's default changed, status intact"


@pytest.mark.parametrize("how", ["partition_default", "partition_before_trigger", "root_before_trigger"])
def test_s4_a_partitions_own_default_or_trigger_choosing_ids_is_named_or_has_no_effect(db, connect, how):
    """Attack: the owner role gives an intake partition a default of its own, or a BEFORE INSERT row
    trigger (on a partition, or the root) that takes two off a new id (within the slot): a write
    routed there would take a lower id than the sequence gave, a later write sealed first. Safe:
    refused, or writes keep the sequence's ids in order, or status names it."""
    statement = {
        "partition_default": "ALTER TABLE audit.event_intake_0 ALTER COLUMN intake_id SET DEFAULT 1",
        "partition_before_trigger": """CREATE FUNCTION audit.t65_lower() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.intake_id := NEW.intake_id - 2; RETURN NEW; END $$;
            CREATE TRIGGER t65_lower BEFORE INSERT ON audit.event_intake_0 FOR EACH ROW
                WHEN (NEW.kind = 't65.later') EXECUTE FUNCTION audit.t65_lower()""",
        "root_before_trigger": """CREATE FUNCTION audit.t65_lower() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.intake_id := NEW.intake_id - 2; RETURN NEW; END $$;
            CREATE TRIGGER t65_lower BEFORE INSERT ON audit.event_intake FOR EACH ROW
                WHEN (NEW.kind = 't65.later') EXECUTE FUNCTION audit.t65_lower()""",
    }[how]
    writer = connect("app_writer")
    db.execute(f"SELECT nextval('{SEQ}')")  # a rolled-back write's id: a gap below the first
    record(writer, "t65.first")
    refused = owner_tries(db, statement)
    with suppress(psycopg.Error):
        record(writer, "t65.later")
    problems = problems_of(db)
    failure = seal_all(db)
    order = sealed_order(db)
    assert refused or problems or order == ["t65.first", "t65.later"], (
        f"{how}: sealed {order} (seal: {failure}); status intact")


def test_s5_the_owner_burning_ids_cannot_bring_the_sequence_near_its_end_unnamed(db, connect):
    """Attack: USAGE lets the owner role call nextval as fast as it likes; it burns 200,000 ids (a
    dozen partitions' worth, writers wrapping around the four) between two writes. Safe: the writes
    are sealed in order, nothing is quarantined, status names nothing it should not (200,000 is no
    move), and the rate (ids a second) is far from reaching 2^62 in a human time."""
    writer = connect("app_writer")
    record(writer, "t65.first")
    t0 = time.monotonic()
    as_owner(db, f"SELECT count(nextval('{SEQ}')) FROM generate_series(1, 200000)")
    rate = 200_000 / max(time.monotonic() - t0, 1e-6)
    record(writer, "t65.later")
    failure = seal_all(db)
    assert failure is None
    assert sealed_order(db) == ["t65.first", "t65.later"]
    assert problems_of(db) == []
    assert 2 ** 62 / rate > 3600 * 24 * 365 * 100, f"{rate:.0f} ids a second"
    assert both_verifiers(db) == (True, True)


# ===================================== class U: upgrades through 0021 =====================================


def _old_with_pending(db, tmp_path_factory, schema: str = "t65u"):
    """An install by 4858460 with one block sealed and events pending in two intake slots."""
    old = installer_at("4858460", tmp_path_factory)
    old.install(db, schema)
    db.execute(f"SELECT {schema}.record('t65.sealed', payload => '{{\"n\": 0}}')")
    seal(db, audit_schema=schema)
    db.execute(f"SELECT {schema}.record('t65.p1')")
    db.execute(f"SELECT {schema}.record('t65.p2')")
    seq = db.execute(f"SELECT pg_get_serial_sequence('{schema}.event_intake', 'intake_id')").fetchone()[0]
    db.execute(f"SELECT setval('{seq}', {SLOT - 1})")  # the next write falls in the next slot
    db.execute(f"SELECT {schema}.record('t65.p3')")
    return old


def test_u1_an_upgrade_with_pending_events_in_two_slots_keeps_their_ids_and_order(db, tmp_path_factory):
    """False alarm / robustness: pending events in slots 0 and 1 under 4858460, upgraded through
    0021: the same ids, the sequence the sealer's and past them, the default nextval, no
    problems; sealed in id order with a write made after the upgrade last; both verifiers pass."""
    _old_with_pending(db, tmp_path_factory)
    before = pending_ids(db, "t65u")
    install(db, "t65u")
    assert pending_ids(db, "t65u") == before
    owner, last = db.execute("SELECT c.relowner::regrole::text, s.last_value FROM pg_class c,"
                             " t65u.event_intake_intake_id_seq s WHERE c.oid = 't65u.event_intake_intake_id_seq'::regclass").fetchone()
    assert owner == "t65u_sealer" and last >= before[-1][0]
    ident = db.execute("SELECT attidentity FROM pg_attribute WHERE attrelid = 't65u.event_intake'::regclass"
                       " AND attname = 'intake_id'").fetchone()[0]
    assert ident == ""
    assert problems_of(db, "t65u") == []
    db.execute("SELECT t65u.record('t65.p4')")
    assert seal_all(db, "t65u") is None
    assert sealed_order(db, schema="t65u") == ["t65.sealed", "t65.p1", "t65.p2", "t65.p3", "t65.p4"]
    assert both_verifiers(db, "t65u") == (True, True)


def test_u2_a_sequence_the_owner_moved_back_under_the_old_release_is_named_after_the_upgrade(db, tmp_path_factory):
    """Attack: under 4858460 the owner role owned the identity's sequence and RESTARTs it below the
    pending events, then the operator upgrades: 0021 starts the sealer's sequence where the moved one
    stood. Safe: status names it after the upgrade, or the events are sealed in the order written."""
    _old_with_pending(db, tmp_path_factory)
    seq = db.execute("SELECT pg_get_serial_sequence('t65u.event_intake', 'intake_id')").fetchone()[0]
    db.execute(f"SET ROLE t65u_owner; ALTER SEQUENCE {seq} RESTART WITH 2; RESET ROLE")
    install(db, "t65u")
    db.execute("SELECT t65u.record('t65.after')")  # id 2: below p2, p3
    problems = problems_of(db, "t65u")
    failure = seal_all(db, "t65u")
    order = sealed_order(db, schema="t65u")
    assert problems or order == ["t65.sealed", "t65.p1", "t65.p2", "t65.p3", "t65.after"], (
        f"sealed {order} (seal: {failure}); status intact")


def test_u3_the_psql_script_upgrade_with_pending_events_leaves_what_the_installer_leaves(db, tmp_path_factory):
    """False alarm: the same upgrade from 4858460 applied as the script install_script prints, with
    psql: pending ids kept, the sequence the sealer's, no problems, the installer then has nothing to
    do, sealing in order."""
    from test_install_script import psql_apply

    from pgaudit_py.install_script import install_script
    _old_with_pending(db, tmp_path_factory)
    before = pending_ids(db, "t65u")
    script = install_script(db, "t65u")
    assert "0021_intake_ids_of_their_own" in script
    psql_apply(db, script)
    assert pending_ids(db, "t65u") == before
    owner = db.execute("SELECT relowner::regrole::text FROM pg_class WHERE oid = 't65u.event_intake_intake_id_seq'::regclass").fetchone()[0]
    assert owner == "t65u_sealer"
    assert problems_of(db, "t65u") == []
    assert install(db, "t65u").migrations == []
    assert seal_all(db, "t65u") is None
    assert sealed_order(db, schema="t65u") == ["t65.sealed", "t65.p1", "t65.p2", "t65.p3"]
    assert both_verifiers(db, "t65u") == (True, True)


def test_u4_a_grant_on_the_identitys_sequence_made_under_the_old_release_does_not_survive_the_upgrade(db, connect, tmp_path_factory):
    """Attack: under 4858460 the owner role owned the identity's sequence and grants UPDATE on it to
    the writers' group; the operator upgrades. Safe: after the upgrade no writer may move the
    sequence, or status names the grant."""
    _old_with_pending(db, tmp_path_factory)
    seq = db.execute("SELECT pg_get_serial_sequence('t65u.event_intake', 'intake_id')").fetchone()[0]
    db.execute(f"SET ROLE t65u_owner; GRANT UPDATE ON SEQUENCE {seq} TO t65u_writer; RESET ROLE")
    install(db, "t65u")
    moved = db.execute("SELECT has_sequence_privilege('t65u_writer', 't65u.event_intake_intake_id_seq', 'UPDATE')").fetchone()[0]
    problems = problems_of(db, "t65u")
    assert not moved or problems, "a writer may move the sealer's sequence after the upgrade; status intact"


# ===================================== class P: publications, live =====================================


def test_p1_a_publication_widened_to_deletes_after_status_ran_is_named(db):
    """Attack: the owner role publishes the intake's inserts with a column list (harmless, not
    named), then widens it to deletes (ALTER PUBLICATION ... SET (publish = ...)): sealing's DELETE
    is refused. Safe: sealing goes on, or status (read afterwards) names it."""
    if not owner_publishes(db, "CREATE PUBLICATION t65_pub FOR TABLE audit.event_intake (intake_id, kind)"
                               " WITH (publish = 'insert', publish_via_partition_root = true)"):
        return
    try:
        quiet = problems_of(db)
        as_owner(db, "ALTER PUBLICATION t65_pub SET (publish = 'insert, delete')")
        record(db, "t65.real")
        failure = seal_all(db)
        pending = seal_status(db).pending
        problems = problems_of(db)
    finally:
        drop_publications(db, "t65")
    assert quiet == []
    assert pending == 0 or problems, f"sealing stopped ({failure}); status intact"


def test_p2_a_publication_whose_name_needs_quoting_is_named_and_status_still_runs(db):
    """Attack: the filtered publication of seal_state's updates has a name with a quote, a space, a
    semicolon and a newline (status formats it). Safe: status runs and names it."""
    name = 't65 "odd";\nx'
    quoted = '"' + name.replace('"', '""') + '"'
    if not owner_publishes(db, f"CREATE PUBLICATION {quoted} FOR TABLE audit.seal_state WHERE (last_seq >= 0)"
                               " WITH (publish = 'update')"):
        return
    try:
        problems = problems_of(db)
    finally:
        drop_publications(db, "t65")
    assert any("odd" in p for p in problems), problems


def test_p3_a_row_filter_on_the_logs_root_reaches_partitions_sealing_makes_later(near_end, connect):
    """Attack: the owner role publishes the log's deletes through its root with a row filter, before
    any partition past the first exists; sealing then makes partitions, and prune's DELETE on them
    is refused. Safe: prune removes the old events, or status names it."""
    db = near_end
    if not owner_publishes(db, "CREATE PUBLICATION t65_pub FOR TABLE audit.event_log WHERE (kind <> '')"
                               " WITH (publish = 'delete', publish_via_partition_root = true)"):
        return
    try:
        for i in range(12):
            record(db, "t65.old", payload={"n": i})
        assert seal_all(db) is None
        time.sleep(1.2)
        record(db, "t65.new")
        seal_all(db)
        error = None
        try:
            prune_events(connect("app_maintainer"), timedelta(seconds=1))
        except psycopg.Error as e:
            error = str(e).splitlines()[0]
        left = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't65.old'").fetchone()[0]
        problems = problems_of(db)
    finally:
        drop_publications(db, "t65")
    assert left == 0 or problems, f"{left} old events kept ({error}); status intact"


# ===================================== class F: storage, persistence =====================================


@pytest.mark.parametrize("table", ["event_intake_2", "intake_drains", "rate_counters"])
def test_f1_a_table_made_unlogged_by_the_owner_is_named_and_logged_again_by_a_reinstall(db, table):
    """Attack: the owner role sets an intake partition (the next writers reach), the drains'
    bookkeeping or the rate counters UNLOGGED: a crash empties them (pending events lost). Safe:
    refused, or named, and a re-install makes it logged again."""
    refused = owner_tries(db, f"ALTER TABLE audit.{table} SET UNLOGGED")
    if refused:
        return
    problems = problems_of(db)
    install(db)
    persistence = db.execute("SELECT relpersistence FROM pg_class WHERE oid = %s::regclass", [f"audit.{table}"]).fetchone()[0]
    assert problems and persistence == "p", (problems, persistence)
    assert problems_of(db) == []


def test_f2_a_log_partitions_column_stored_plain_is_named_and_put_back_by_a_reinstall(db):
    """Attack: the owner role stores a sealed partition's payload PLAIN (a large event then no longer
    fits: sealing stops, or the event is quarantined). Safe: named, and a re-install stores it as the
    log's, with status empty after."""
    record(db, "t65.a")
    seal(db)
    refused = owner_tries(db, "ALTER TABLE audit.event_log_000000 ALTER COLUMN payload SET STORAGE PLAIN")
    if refused:
        return
    problems = problems_of(db)
    install(db)
    storage = db.execute("SELECT attstorage FROM pg_attribute WHERE attrelid = 'audit.event_log_000000'::regclass"
                         " AND attname = 'payload'").fetchone()[0]
    record(db, "t65.big", payload={"memo": os.urandom(12_000).hex()})
    failure = seal_all(db)
    assert problems and storage == "x" and failure is None, (problems, storage, failure)
    assert problems_of(db) == []


def test_f3_a_table_the_owner_adds_unlogged_and_plain_is_named(db):
    """Attack: the owner role adds an UNLOGGED table with a column stored PLAIN to the schema. Safe:
    status names it as added (a re-install neither fails on it nor records it as installed)."""
    refused = owner_tries(db, "CREATE UNLOGGED TABLE audit.t65_extra (k text); "
                              "ALTER TABLE audit.t65_extra ALTER COLUMN k SET STORAGE PLAIN")
    if refused:
        return
    named = [p for p in problems_of(db) if "t65_extra" in p]
    install(db)
    again = [p for p in problems_of(db) if "t65_extra" in p]
    assert named and again, (named, again)


def test_f4_unlogged_tables_the_owner_adds_referencing_each_other_cannot_make_reinstalls_fail_unnamed(db):
    """Attack: the installer now makes every table of the schema logged, the owner's own included.
    The owner role adds two UNLOGGED tables whose foreign keys reference each other: PostgreSQL
    refuses SET LOGGED on either while the other is unlogged, so every re-install (and upgrade)
    fails at sql/10_guards.sql. Safe: the re-install succeeds, or it fails and status names the
    added tables (so the operator knows what to drop)."""
    refused = owner_tries(db, """CREATE UNLOGGED TABLE audit.t65_a (id int PRIMARY KEY, b int);
        CREATE UNLOGGED TABLE audit.t65_b (id int PRIMARY KEY, a int REFERENCES audit.t65_a);
        ALTER TABLE audit.t65_a ADD FOREIGN KEY (b) REFERENCES audit.t65_b""")
    if refused:
        return
    error = None
    try:
        install(db)
    except Exception as e:  # noqa: BLE001
        with suppress(Exception):
            db.execute("ROLLBACK")
        error = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    named = [p for p in problems_of(db) if "t65_a" in p or "t65_b" in p]
    assert error is None or len(named) >= 2, f"the re-install fails ({error}); status: {named}"


# ===================================== class Z: false alarms =====================================


def test_z1_a_fresh_install_and_a_reinstall_leave_the_sequence_the_sealers_and_no_problems(db, connect):
    """False alarm: a fresh install and a re-install: the sequence the sealer's, the intake's default
    nextval of it, no identity, events sealed in order, no problems, both verifiers pass."""
    writer = connect("app_writer")
    record(writer, "t65.a")
    assert problems_of(db) == []
    install(db)
    record(writer, "t65.b")
    owner = db.execute("SELECT relowner::regrole::text FROM pg_class WHERE oid = %s::regclass", [SEQ]).fetchone()[0]
    default = db.execute("SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a"
                         " ON a.attrelid = d.adrelid AND a.attnum = d.adnum"
                         " WHERE d.adrelid = 'audit.event_intake'::regclass AND a.attname = 'intake_id'").fetchone()[0]
    assert owner == "audit_sealer" and "nextval" in default and "event_intake_intake_id_seq" in default
    assert seal_all(db) is None
    assert sealed_order(db) == ["t65.a", "t65.b"]
    assert problems_of(db) == []
    assert both_verifiers(db) == (True, True)


def test_z2_an_upgrade_from_4858460_then_seal_prune_and_both_verifiers(db, connect, tmp_path_factory):
    """False alarm: an install by 4858460 with sealed and pending events, upgraded, sealed, pruned:
    no problems, both verifiers pass."""
    _old_with_pending(db, tmp_path_factory)
    install(db, "t65u")
    assert seal_all(db, "t65u") is None
    time.sleep(1.2)
    db.execute("SELECT t65u.record('t65.new')")
    assert seal_all(db, "t65u") is None
    db.execute("GRANT t65u_maintainer TO app_maintainer")
    prune_events(connect("app_maintainer"), timedelta(seconds=1), audit_schema="t65u")
    left = db.execute("SELECT count(*) FROM t65u.event_log WHERE kind <> 't65.new' AND kind NOT LIKE 'audit.%'").fetchone()[0]
    assert left == 0
    assert problems_of(db, "t65u") == []
    assert both_verifiers(db, "t65u") == (True, True)


def test_z5_archiving_and_deleting_archived_events_leaves_no_problems(db, connect, tmp_path):
    """False alarm: three blocks sealed, two archived and deleted from the log: no problems, both
    verifiers pass, and the intake's ids go on in order after it."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pgaudit_py import archive as archiving
    from pgaudit_py.archive_targets import open_target
    from pgaudit_py.checkpoint import Keys
    for b in range(3):
        for i in range(5):
            record(db, "t65.old", payload={"b": b, "i": i})
        seal(db)
    db.execute("SELECT audit.set_archive_settings('90 days', 5, NULL)")
    private = Ed25519PrivateKey.generate()
    keys = Keys(signing_key=private, public_key=private.public_key(), hmac_key=os.urandom(32))
    run = archiving.archive(connect("app_maintainer"), open_target(f"file://{tmp_path}/archive"), keys,
                            older_than=timedelta(milliseconds=1), max_batches=2)
    assert run.events == 10
    record(db, "t65.new")
    record(db, "t65.newer")
    assert seal_all(db) is None
    assert sealed_order(db, "t65.new%") == ["t65.new", "t65.newer"]
    assert problems_of(db) == []
    assert both_verifiers(db) == (True, True)


def test_z3_a_row_filter_the_intakes_whole_row_identity_covers_is_no_false_alarm(db):
    """False alarm: a superuser's change-data capture publishes the intake (default publish: inserts,
    updates, deletes, truncates) through its root with a row filter on kind. The intake's replica
    identity is FULL, which covers any row filter: sealing's DELETE goes on. Safe: sealing works and
    status names no problem (a warning at most)."""
    db.execute("CREATE PUBLICATION t65_cdc FOR TABLE audit.event_intake WHERE (kind LIKE 'billing.%')"
               " WITH (publish_via_partition_root = true)")
    try:
        record(db, "t65.a")
        failure = seal_all(db)
        pending = seal_status(db).pending
        problems = problems_of(db)
    finally:
        drop_publications(db, "t65")
    assert failure is None and pending == 0
    assert problems == [], problems


def test_z4_the_apps_filtered_publication_of_its_tracked_tables_changes_is_no_false_alarm(db, connect, attacker):
    """False alarm: the application publishes its tracked table's inserts, updates and deletes with a
    row filter on its key and a column list holding it: captured writes, sealing and status are
    unaffected."""
    tracked_acct(attacker, connect, "t65")
    attacker.execute("CREATE PUBLICATION t65_app FOR TABLE public.t65_acct (id, v) WHERE (id > 0)")
    try:
        w = connect("app_writer")
        w.execute("INSERT INTO public.t65_acct (id, v) VALUES (7, 7)")
        w.execute("UPDATE public.t65_acct SET v = 8 WHERE id = 7")
        w.execute("DELETE FROM public.t65_acct WHERE id = 7")
        assert seal_all(db) is None
        n = db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.t65_acct.%'").fetchone()[0]
        problems = problems_of(db)
    finally:
        drop_publications(db, "t65")
    assert n >= 3 and problems == [], (n, problems)
    assert both_verifiers(db) == (True, True)
