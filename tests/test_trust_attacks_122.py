"""A hundred-and-twenty-second attacker's trial: claims without tests. Each checkable sentence of
docs/retention.md, docs/sealing.md, docs/tamper-evidence.md and docs/roles.md that no test would
catch breaking (or whose test asserts too little), tried as the role or input it is about.

  R. retention: the age's exact limits, at least one block a call, keys released through record(),
     the audit.pruned event's record of what went.
  S. sealing: the idle channel every locking function notifies, LISTEN by any role, seal --follow's
     failing first connection, wild numbers in record(), max_events' bounds, one block per round
     seen by a concurrent reader only at commit.
  O. roles: the count of the reader's helpers, the function roles' members, the owner role's
     refusals on the chain and the quarantine, capture triggers on a hostile name.

Each test asserts the claim, so it FAILS when the claim breaks (or the doc sentence is wrong).
Every object made is named t122_* and dropped.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import threading
import time
from contextlib import suppress
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from trial_helpers import both_verifiers, table_owner_kit, tamper
from trial_helpers import sqlstate_of as sqlstate

from pgaudit_py import audit_context, enable_tracking, prune_events, record, seal, status
from pgaudit_py.chain import verify_chain

ROOT = Path(__file__).parent.parent

OLD_EVENTS = """
    INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
    SELECT 'user', 'x', 't122.old', 'success', pg_current_xact_id(),
           now() - interval '100 days' + make_interval(secs => n), jsonb_build_object('n', n)
      FROM generate_series(1, %s) n"""


# ---------------------------------------------------------------- R: retention

AGES_ACCEPTED = ["36600 days", "100 years", "1200 mons", "100 years 75 days", "1 mon 1 day", "00:00:00.001"]
AGES_REFUSED = ["36600 days 00:00:01", "100 years 75 days 00:00:01", "101 years", "1220 mons", "1 mon -1 day",
                "300000 years", "1 day -00:00:01", "-1 mon 31 days"]


@pytest.mark.parametrize("age", AGES_ACCEPTED + AGES_REFUSED)
def test_r1_an_age_is_accepted_up_to_36600_days_and_refused_past_it_everywhere(db, connect, age):
    """retention.md: `older_than` is "positive with no part negative and reaching at most 36600 days
    back, as the CLI's 100 years (a year counted as 365.25 days, a month as 30: `101 years` and
    `1220 mons` are refused)", refused with PA005 "as they are for the archive's hot_retention and
    older_than". Both sides of the limit, for prune_events (maintainer), preview_prune (reader),
    set_archive_settings and next_archive_batch: an age the doc allows must not be refused."""
    db.execute(OLD_EVENTS, [3])
    seal(db)
    want = None if age in AGES_ACCEPTED else "PA005"
    maint, reader = connect("app_maintainer"), connect("app_reader")
    got = {
        "prune_events": sqlstate(maint, "SELECT * FROM audit.prune_events(%s::interval, 1)", [age]),
        "preview_prune": sqlstate(reader, "SELECT * FROM audit.preview_prune(%s::interval, 100000)", [age]),
        "set_archive_settings": sqlstate(maint, "SELECT audit.set_archive_settings(%s::interval, 5, NULL)", [age]),
        "next_archive_batch": sqlstate(maint, "SELECT audit.next_archive_batch(%s::interval)", [age]),
    }
    assert got == dict.fromkeys(got, want), age
    if want:  # nothing went
        assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't122.old'").fetchone() == (3,)


def test_r2_a_call_takes_at_least_one_block_and_no_more_blocks_than_batch_size_allows(db, connect):
    """retention.md: prune removes "at most `batch_size` (1 to 100,000) events per call but at least
    one block" and only whole blocks. A block of five goes whole at batch_size 1; blocks of two at
    batch_size 3 go one a call (two would be four events); what remains verifies."""
    db.execute(OLD_EVENTS, [5])
    assert seal(db, 5).block_no == 1
    db.execute(OLD_EVENTS, [6])
    for n in (2, 3, 4):
        assert seal(db, 2).block_no == n
    maint = connect("app_maintainer")
    first = prune_events(maint, timedelta(days=30), batch_size=1)
    assert (first.deleted, first.first_seq, first.last_seq, first.more) == (5, 1, 5, True)
    second = prune_events(maint, timedelta(days=30), batch_size=3)
    assert (second.deleted, second.first_seq, second.last_seq, second.more) == (2, 6, 7, True)
    assert db.execute("SELECT min(seq) FROM audit.event_log WHERE kind = 't122.old'").fetchone() == (8,)
    seal(db)
    assert both_verifiers(db) == (True, True)


def test_r3_the_idempotency_key_of_a_pruned_event_is_released_to_record(db, connect):
    """retention.md: "Idempotency keys of pruned events are released." Through record() itself: while
    the event is kept, the key with other content is refused (PA004); once it is pruned, the same key
    makes a new event (not the pruned one's id, and not a refusal)."""
    writer = connect("app_writer")
    first = writer.execute("SELECT (audit.record(kind => 't122.k', payload => '{\"v\": 1}',"
                           " idempotency_key => 't122-κλειδί\u202e')).id").fetchone()[0]
    seal(db)
    assert sqlstate(writer, "SELECT audit.record(kind => 't122.k', payload => '{\"v\": 2}',"
                            " idempotency_key => 't122-κλειδί\u202e')") == "PA004"
    time.sleep(0.05)
    assert prune_events(connect("app_maintainer"), timedelta(milliseconds=10)).deleted >= 1
    again = writer.execute("SELECT (audit.record(kind => 't122.k', payload => '{\"v\": 2}',"
                           " idempotency_key => 't122-κλειδί\u202e')).id").fetchone()[0]
    assert again != first
    assert db.execute("SELECT payload FROM audit.events WHERE kind = 't122.k'").fetchall() == [({"v": 2},)]


def test_r4_the_pruned_event_says_what_went_and_who_asked_and_is_sealed(db, connect):
    """retention.md: "Each call that removes something records one `audit.pruned` event (payload:
    `older_than`, `cutoff`, `deleted`, `first_seq`, `last_seq`, `first_block`, `last_block`,
    `last_block_hash`; actor: whoever asked), which is sealed into the chain"; `audit.prune_points`
    records the last block; `verify` reports `retained_from_block`. The hash must be the removed
    block's, the cutoff the call's; an actor with odd Unicode is kept as given."""
    db.execute(OLD_EVENTS, [4])
    seal(db, 2)
    seal(db, 2)
    maint = connect("app_maintainer")
    actor = "t122-Ådmin\u202egnp.exe\u0301"
    with audit_context(maint, actor_type="user", actor_id=actor):
        result = maint.execute("SELECT cutoff, deleted FROM audit.prune_events('30 days', 2)").fetchone()
    assert result[1] == 2
    rows = db.execute("SELECT actor_id, payload FROM audit.events WHERE kind = 'audit.pruned'").fetchall()
    assert len(rows) == 1
    got_actor, payload = rows[0]
    assert got_actor == actor
    assert set(payload) == {"older_than", "cutoff", "deleted", "first_seq", "last_seq", "first_block", "last_block",
                            "last_block_hash"}
    block_hash = db.execute("SELECT encode(block_hash, 'hex') FROM audit.blocks WHERE block_no = 1").fetchone()[0]
    assert payload["last_block_hash"].lower().removeprefix("\\x") == block_hash
    assert (payload["deleted"], payload["first_seq"], payload["last_seq"], payload["first_block"],
            payload["last_block"]) == (2, 1, 2, 1, 1)
    assert db.execute("SELECT %s::timestamptz = %s", [payload["cutoff"], result[0]]).fetchone() == (True,)
    assert db.execute("SELECT block_no FROM audit.prune_points").fetchall() == [(1,)]
    seal(db)
    assert db.execute("SELECT b.block_no IS NOT NULL FROM audit.event_log l JOIN audit.blocks b"
                      " ON l.seq BETWEEN b.first_seq AND b.last_seq WHERE l.kind = 'audit.pruned'").fetchall() == [
        (True,)]
    assert db.execute("SELECT ok, retained_from_block, retained_from_seq FROM audit.verify()").fetchone() == (
        True, 2, 3)


# ---------------------------------------------------------------- S: sealing

def drain(conn: psycopg.Connection, wait: float = 0.5) -> list[tuple[str, str]]:
    return [(n.channel, n.payload) for n in conn.notifies(timeout=wait)]


def test_s1_every_round_and_each_locking_function_notifies_the_idle_channel(db, connect):
    """sealing.md: "Every round also notifies `pgaudit_py_idle` ..., and so do the functions that
    lock what the background work needs (`prune_events`, `set_archive_settings`,
    `next_archive_batch`, the archive's batch and claim functions)". A stranger (app_attacker:
    "Any role that can connect may LISTEN") hears one per call, even a call that does nothing, and
    on `audit` only the sealing round's last seq."""
    listener = connect("app_attacker")
    listener.execute("LISTEN pgaudit_py_idle; LISTEN audit")
    record(connect("app_writer"), "t122.s1")
    maint = connect("app_maintainer")
    calls = {
        "seal (a round that seals)": "SELECT * FROM audit.seal()",
        "seal (an empty round)": "SELECT * FROM audit.seal()",
        "prune_events (nothing to prune)": "SELECT * FROM audit.prune_events('30 days')",
        "set_archive_settings": "SELECT audit.set_archive_settings('90 days', 1000, NULL)",
        "next_archive_batch": "SELECT audit.next_archive_batch()",
        "claim_daily_archive_run": "SELECT audit.claim_daily_archive_run()",
        "claim_archiver": "SELECT audit.claim_archiver()",
        "release_archiver": "SELECT audit.release_archiver()",
    }
    heard = {}
    for name, call in calls.items():
        maint.execute(call)
        heard[name] = drain(listener)
    assert sorted(heard["seal (a round that seals)"]) == [("audit", "1"), ("pgaudit_py_idle", "")]
    silent = {name: got for name, got in heard.items() if ("pgaudit_py_idle", "") not in got}
    assert silent == {}, f"no notification on pgaudit_py_idle from {sorted(silent)}"
    assert [name for name, got in heard.items() if any(c == "audit" for c, _ in got)] == ["seal (a round that seals)"]


@pytest.mark.parametrize("how", ["nothing listens on the port", "no such role"])
def test_s2_seal_follow_whose_first_connection_fails_ends_at_once_with_exit_1(db, how):
    """sealing.md: "`pgaudit seal --follow` and `pgaudit worker` ... a first connection that fails
    ends them at once (exit 1), since that is a configuration error" (tests exist for the worker
    only). Here for `seal --follow`: exit 1, and no reconnecting."""
    i = db.info
    dsn = (f"host={i.host} port=1 dbname={i.dbname} user=app_maintainer" if how.startswith("nothing")
           else f"host={i.host} port={i.port} dbname={i.dbname} user=t122_nobody")
    try:
        done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "seal", "--follow", "--dsn", dsn],
                              capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("seal --follow kept trying a first connection that failed")
    assert done.returncode == 1, done.stderr[-500:]
    assert "reconnect" not in done.stderr and "Traceback" not in done.stderr


WILD = {
    "1e131071": '{"n": 1e131071}',
    "minus 1e400": '{"n": -1e400}',
    "1e-401": '{"n": 1e-401}',
    "deep in arrays": '[[[{"a": [1, 2, {"b": 1E+400}]}]]]',
    "key with odd unicode": '{"\u202e\u0301x": 1e400}',
    "101 numbers, one with 401 decimals": "[" + ", ".join(["1"] * 100 + ["0." + "0" * 400 + "1"]) + "]",
}


@pytest.mark.parametrize("name", list(WILD))
def test_s3_record_refuses_wild_numbers_in_payloads(db, connect, name):
    """sealing.md: "the sealer stores such 'wild' numbers in row images as markers ... and `record()`
    refuses them in payloads (`PA002`)". Variants of 1e131071 (sign, tiny, nested, the long-decimals
    kind) are refused and nothing reaches the intake; a large but tame number is accepted (so the
    test can tell)."""
    writer = connect("app_writer")
    assert sqlstate(writer, "SELECT audit.record(kind => 't122.wild', payload => %s::jsonb)", [WILD[name]]) == "PA002"
    assert db.execute("SELECT count(*) FROM audit.event_intake WHERE kind = 't122.wild'").fetchone() == (0,)
    assert sqlstate(writer, "SELECT audit.record(kind => 't122.tame', payload => '{\"n\": 1e300}')") is None


def test_s4_max_events_bounds_are_inclusive(db, connect):
    """sealing.md: "`seal` moves up to `max_events` (1 to 1,000,000) committed pending events": 1
    moves exactly one, 1,000,000 is accepted (the refusals of 0 and 1,000,001 have a test)."""
    writer = connect("app_writer")
    for n in range(3):
        record(writer, "t122.s4", payload={"n": n})
    maint = connect("app_maintainer")
    assert maint.execute("SELECT sealed FROM audit.seal(1)").fetchone() == (1,)
    assert maint.execute("SELECT sealed FROM audit.seal(1000000)").fetchone() == (2,)


def test_s5_a_rounds_events_and_its_block_appear_together_to_a_concurrent_reader(db, connect):
    """tamper-evidence.md: "every sealed event belongs to exactly one block, written in the same
    transaction"; sealing.md: "in one transaction, in intake order". While a round is uncommitted a
    reader in another session sees neither its events in the log nor its block; after it, both,
    with the block's first/last seq and count matching its events, in intake order."""
    writer = connect("app_writer")
    for n in range(4):
        record(writer, "t122.s5", payload={"n": n})
    sealer = connect("app_maintainer", autocommit=False)
    reader = connect("app_reader")
    got = sealer.execute("SELECT sealed, block_no FROM audit.seal()").fetchone()
    assert got == (4, 1)
    assert reader.execute("SELECT (SELECT count(*) FROM audit.event_log), (SELECT count(*) FROM audit.blocks),"
                          " (SELECT count(*) FROM audit.events WHERE pending)").fetchone() == (0, 0, 4)
    sealer.commit()
    assert reader.execute("SELECT block_no, first_seq, last_seq, event_count FROM audit.blocks").fetchall() == [
        (1, 1, 4, 4)]
    assert [r[0] for r in reader.execute("SELECT payload->>'n' FROM audit.event_log ORDER BY seq")] == [
        "0", "1", "2", "3"]


# ---------------------------------------------------------------- O: roles

def test_o1_the_reader_may_run_as_many_helpers_as_roles_md_says(db):
    """roles.md: "Internal helpers ... are executable by the owner only, except those that functions
    running as their caller need: N for the reader's queries ...; for the maintainer's
    enable/disable functions [18 named] and eight SECURITY DEFINER helpers ... A test lists exactly
    these." The number is a claim: the reader's helpers counted from the catalog must be the doc's N, the
    maintainer's extra ones the 18 named plus eight definers."""
    rows = db.execute(r"""
        SELECT r.role, p.proname::text, p.prosecdef
          FROM pg_proc p, (VALUES ('audit_reader'), ('audit_maintainer')) AS r(role)
         WHERE p.pronamespace IN ('audit'::regnamespace, 'audit_capture'::regnamespace) AND p.proname LIKE '\_%'
           AND p.proname !~ '^_capture_[0-9]+$' AND has_function_privilege(r.role, p.oid, 'EXECUTE')""").fetchall()
    reader = {r[1] for r in rows if r[0] == "audit_reader"}
    maintainer_extra = {r[1] for r in rows if r[0] == "audit_maintainer"} - reader
    named = {"_attach_capture", "_refuse_merge", "_capture_function", "_capture_tables", "_inheritors", "_check_kind",
             "_check_trackable", "_prove_owner", "_reserved_kind", "_tree_problem", "_json_casts", "_column_types",
             "_json_columns", "_column_parts", "_columns_with_dropped_attributes", "_columns_unfit_for_tenant",
             "_temporary_dependency", "_temporary_beneath"}
    definers = {r[1] for r in rows if r[0] == "audit_maintainer" and r[2]}
    assert (len(maintainer_extra - named), len(definers), maintainer_extra - named == definers) == (8, 8, True)
    said = int(re.search(r"(\d+) for the reader's queries", (ROOT / "docs" / "roles.md").read_text()).group(1))
    assert len(reader) == said, f"roles.md says {said} helpers for the reader; the catalog grants {len(reader)}: {sorted(reader)}"


FUNCTION_ROLES = ["audit_capture", "audit_sealer", "audit_pruner", "audit_sandbox"]


def test_o2_group_roles_cannot_log_in_and_the_function_roles_are_nobodys(db):
    """roles.md: "The installer creates NOLOGIN group roles"; `audit_capture`, `audit_sealer`,
    `audit_pruner`, `audit_sandbox` are "nobody's" (but `audit_owner`, the capture role's one
    member). Then an attack: a login role made a member of the pruner must be named by `status`
    ("`status` reports any member")."""
    roles = ["audit_owner", "audit_writer", "audit_reader", "audit_maintainer", "audit_secrets", *FUNCTION_ROLES]
    assert db.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) AND rolcanlogin", [roles]).fetchall() == []
    members = db.execute("""SELECT g.rolname, m.rolname FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid
                              JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = ANY(%s) ORDER BY 1, 2""",
                         [FUNCTION_ROLES]).fetchall()
    assert members == [("audit_capture", "audit_owner")]
    db.execute("CREATE ROLE t122_mole LOGIN")
    try:
        db.execute("GRANT audit_pruner TO t122_mole")
        assert any("t122_mole" in p for p in status(db).problems), status(db).problems
    finally:
        db.execute("DROP ROLE t122_mole")


OWNER_ATTEMPTS = [
    (table, attempt)
    for table in ("blocks", "quarantine", "seal_state", "event_intake", "event_log")
    for attempt in ("UPDATE audit.{t} SET {c} = {c}", "DELETE FROM audit.{t}", "TRUNCATE audit.{t}",
                    "INSERT INTO audit.{t} SELECT * FROM audit.{t}")
    if not (table == "event_intake" and attempt.startswith("INSERT"))  # appending is how events arrive
]


@pytest.mark.parametrize("table, attempt", OWNER_ATTEMPTS, ids=[f"{t}: {a.split()[0]}" for t, a in OWNER_ATTEMPTS])
def test_o3_the_owner_role_cannot_rewrite_the_chain_or_the_quarantine(db, connect, table, attempt):
    """roles.md: `audit_owner` may not "UPDATE, DELETE or TRUNCATE the intake, log, chain or
    quarantine, or INSERT into the last three (revoked, and the guards check `current_user`)";
    sealing.md: the quarantine is "never changed". Existing tests try the intake and the log as the
    owner; here the chain (blocks, the sealer's head) and the quarantine too, with rows present."""
    record(connect("app_writer"), "t122.o3")
    seal(db)
    record(connect("app_writer"), "t122.o3")
    column = db.execute("""SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0
                           AND NOT attisdropped AND attgenerated = '' ORDER BY attnum LIMIT 1""",
                        [f"audit.{table}"]).fetchone()[0]
    snapshot = f"SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM audit.{table} t"
    before = db.execute(snapshot).fetchone()
    db.execute("SET ROLE audit_owner")
    try:
        got = sqlstate(db, attempt.format(t=table, c=column))
    finally:
        db.execute("RESET ROLE")
    assert got in ("42501", "PA006"), f"the owner role's {attempt.split()[0]} on audit.{table}: {got}"
    assert db.execute(snapshot).fetchone() == before


def test_o4_no_role_drops_or_disables_a_capture_trigger_on_its_own_hostile_named_table(db, connect):
    """roles.md, any role may not "drop, disable or replace a capture trigger, even on a table it
    owns (event trigger, `PA008`)". The table's owner, on a table whose name has a quote, a space,
    a right-to-left override and combining marks, tries each; every write still makes an event."""
    with table_owner_kit(db, connect, "t122") as kit:
        name = 't122 "Ä\u202e\u0301x'
        qname = 'public."' + name.replace('"', '""') + '"'
        kit.owner.execute(f"CREATE TABLE {qname} (id int PRIMARY KEY, v int); GRANT ALL ON {qname} TO app_writer")
        enable_tracking(kit.maint, qname, kind_prefix="t122.hostile")
        triggers = [r[0] for r in db.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass"
                                             " AND NOT tgisinternal", [qname])]
        assert triggers
        attempts = [f"ALTER TABLE {qname} DISABLE TRIGGER ALL", f"ALTER TABLE {qname} DISABLE TRIGGER USER",
                    f"ALTER TABLE {qname} ENABLE REPLICA TRIGGER \"{triggers[0]}\""]
        for tg in triggers:
            attempts += [f'DROP TRIGGER "{tg}" ON {qname}', f'ALTER TABLE {qname} DISABLE TRIGGER "{tg}"',
                         f'ALTER TRIGGER "{tg}" ON {qname} RENAME TO t122_gone']
        got = {a: sqlstate(kit.owner, a) for a in attempts}
        assert {a: s for a, s in got.items() if s != "PA008"} == {}
        events = "SELECT count(*) FROM audit.events WHERE starts_with(kind, 't122.hostile.')"
        before = db.execute(events).fetchone()[0]
        kit.writer.execute(f"INSERT INTO {qname} VALUES (1, 1); UPDATE {qname} SET v = 2; DELETE FROM {qname}")
        assert db.execute(events).fetchone()[0] - before == 3
        with suppress(psycopg.Error):
            kit.maint.execute("SELECT audit.disable_tracking(%s::regclass)", [qname])


@pytest.mark.parametrize("call", ["SELECT audit._drop_log_partitions()", "SELECT audit._add_log_partitions(1, 2000000)"])
@pytest.mark.parametrize("role", ["the other function role", "app_maintainer", "app_reader", "app_attacker"])
def test_o5_only_the_pruner_drops_and_only_the_sealer_adds_log_partitions(db, connect, call, role):
    """retention.md: partitions are dropped "by an owner function that no role but the pruner may
    call"; sealing.md: the next partition is made "through an owner function that no role but the
    sealer may call" (both: and the owner role, which owns it and the log). Tried as the other
    function role (the sealer dropping, the pruner adding), the maintainer, the reader and a
    stranger: each is refused, and the log's partitions are as they were."""
    db.execute(OLD_EVENTS, [3])
    seal(db)
    prune_events(connect("app_maintainer"), timedelta(days=30))
    parts = "SELECT array_agg(inhrelid::regclass::text ORDER BY inhrelid) FROM pg_inherits WHERE inhparent = 'audit.event_log'::regclass"
    before = db.execute(parts).fetchone()
    if role == "the other function role":
        db.execute("SET ROLE " + ("audit_sealer" if "_drop_" in call else "audit_pruner"))
        try:
            got = sqlstate(db, call)
        finally:
            db.execute("RESET ROLE")
    else:
        got = sqlstate(connect(role), call)
    after = db.execute(parts).fetchone()
    assert (got, after) == ("42501", before), f"{role}: {call} gave {got}; partitions {before} -> {after}"


@pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
def test_s6_seal_in_sql_at_a_snapshot_isolation_is_pa005_and_seals_nothing(db, connect, level):
    """sealing.md: `seal` "must run at READ COMMITTED (... anything else is `PA005`)". The existing
    tests go through the Python seal(), which may check before the database does; here the SQL
    function itself, in a maintainer's transaction at each other level, and `seal_backlog` in a
    session whose default is that level."""
    record(connect("app_writer"), "t122.s6")
    maint = connect("app_maintainer", autocommit=False)
    maint.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
    assert sqlstate(maint, "SELECT * FROM audit.seal()") == "PA005"
    maint.rollback()
    backlog = connect("app_maintainer")
    backlog.execute("SELECT set_config('default_transaction_isolation', %s, false)", [level.lower()])
    got = sqlstate(backlog, "CALL audit.seal_backlog(10)")
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (0,), f"seal_backlog at {level}: {got}"
    assert got == "PA005"


def test_t1_checkpoint_keys_never_reach_the_database(db, pg_cluster, tmp_path):
    """tamper-evidence.md: "Keys are read from files given on the command line and never sent to the
    database" (and keygen writes them "files mode 0600"). With every statement of the checkpointing
    role logged, its parameters too, `pgaudit checkpoint` and `pgaudit verify` run; the server's log
    must hold none of the private key's or the HMAC key's material, while it shows their queries."""
    from cryptography.hazmat.primitives import serialization

    name = db.info.dbname
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={name} user=app_reader"
    db.execute("SELECT audit.record(kind => 't122.t1')")
    seal(db)
    keys = tmp_path / "keys"
    run = [sys.executable, "-m", "pgaudit_py.cli"]
    done = subprocess.run([*run, "keygen", "--dir", str(keys)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    private, hmac = keys / "checkpoint-ed25519.pem", keys / "checkpoint-hmac.key"
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in (private, hmac)} == {
        private.name: "0o600", hmac.name: "0o600"}
    pem = private.read_bytes()
    raw = serialization.load_pem_private_key(pem, None).private_bytes_raw()  # type: ignore[union-attr]
    hmac_bytes = hmac.read_bytes()
    secrets = {"pem body": "".join(line for line in pem.decode().splitlines() if "-----" not in line),
               "ed25519 raw hex": raw.hex(), "hmac base64": base64.b64encode(hmac_bytes).decode(),
               "hmac hex": hmac_bytes.hex()}
    assert all(len(s) >= 32 for s in secrets.values())
    log_size = pg_cluster.log.stat().st_size
    db.execute(f"ALTER ROLE app_reader IN DATABASE {name} SET log_statement = 'all'")
    try:
        out = tmp_path / "t122-checkpoint.json"
        done = subprocess.run([*run, "checkpoint", "--signing-key", str(private), "--hmac-key-file", str(hmac),
                               "--out", str(out), "--dsn", dsn], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        done = subprocess.run([*run, "verify", "--checkpoint", str(out), "--public-key",
                               str(keys / "checkpoint-ed25519.pub.pem"), "--hmac-key-file", str(hmac), "--dsn", dsn],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    finally:
        db.execute(f"ALTER ROLE app_reader IN DATABASE {name} RESET log_statement")
    with pg_cluster.log.open("rb") as f:
        f.seek(log_size)
        logged = f.read().decode(errors="replace")
    assert "blocks" in logged  # the control: the role's statements were logged
    found = {k: v[:12] for k, v in secrets.items() if v in logged or v.lower() in logged.lower()}
    assert found == {}, f"key material in the server log: {found}"


def test_s7_a_sealer_killed_mid_round_leaves_no_seq_no_block_and_no_notification(db, connect):
    """sealing.md: `seal` moves events "in one transaction" and sends a NOTIFY "when it commits ...
    none for a round rolled back". Crash variant: the sealing backend is terminated while its round
    is uncommitted. Nothing is sealed, no block, no seq taken, no notification; the next round seals
    every event from seq 1 and both verifiers accept."""
    listener = connect("app_attacker")
    listener.execute("LISTEN audit")
    writer = connect("app_writer")
    for n in range(5):
        record(writer, "t122.s7", payload={"n": n})
    sealer = connect("app_maintainer", autocommit=False)
    assert sealer.execute("SELECT sealed FROM audit.seal()").fetchone() == (5,)
    pid = sealer.info.backend_pid
    assert db.execute("SELECT pg_terminate_backend(%s)", [pid]).fetchone() == (True,)
    for _ in range(100):
        if not db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid = %s",
                          [pid]).fetchone()[0]:
            break
        time.sleep(0.05)
    assert db.execute("SELECT (SELECT count(*) FROM audit.event_log), (SELECT count(*) FROM audit.blocks),"
                      " (SELECT last_seq FROM audit.seal_state), (SELECT count(*) FROM audit.event_intake)"
                      ).fetchone() == (0, 0, 0, 5)
    assert drain(listener) == []
    assert seal(connect("app_maintainer")).__dict__ == {"sealed": 5, "first_seq": 1, "last_seq": 5, "block_no": 1}
    assert drain(listener) == [("audit", "5")]
    assert both_verifiers(db) == (True, True)


def test_r5_a_prune_killed_mid_call_removes_nothing_and_records_nothing(db, connect):
    """retention.md: "each call is one short transaction"; a prune point and an `audit.pruned` event
    come with each removal. Crash variant: the maintainer's backend is terminated inside an
    uncommitted prune; no event is gone, no prune point or audit.pruned event is left, and a later
    prune does the whole work."""
    db.execute(OLD_EVENTS, [4])
    seal(db)
    pruner = connect("app_maintainer", autocommit=False)
    assert pruner.execute("SELECT deleted FROM audit.prune_events('30 days')").fetchone() == (4,)
    pid = pruner.info.backend_pid
    db.execute("SELECT pg_terminate_backend(%s)", [pid])
    for _ in range(100):
        if not db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid = %s",
                          [pid]).fetchone()[0]:
            break
        time.sleep(0.05)
    assert db.execute("SELECT (SELECT count(*) FROM audit.event_log), (SELECT count(*) FROM audit.prune_points),"
                      " (SELECT count(*) FROM audit.events WHERE kind = 'audit.pruned')").fetchone() == (4, 0, 0)
    assert prune_events(connect("app_maintainer"), timedelta(days=30)).deleted == 4
    seal(db)
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("also", ["nothing else", "the last block too"])
def test_t2_a_deleted_seal_state_is_named_by_the_python_verifier(db, connect, also):
    """tamper-evidence.md: "`audit.seal_state` must name the last block's number, last seq and hash;
    ... the Python verifier says `audit.seal_state has no row` when it was deleted". As a
    superuser with the guards off: the row deleted (and a variant that also cuts the last block).
    Both verifiers refuse, the Python one in those words."""
    writer = connect("app_writer")
    for n in range(3):
        record(writer, "t122.t2", payload={"n": n})
        seal(db)
    tamper(db, "DELETE FROM audit.seal_state" + (
        "; DELETE FROM audit.event_log WHERE seq = 3; DELETE FROM audit.blocks WHERE block_no = 3"
        if also != "nothing else" else ""))
    python = verify_chain(db)
    sql_ok = db.execute("SELECT ok FROM audit.verify()").fetchone()[0]
    assert (python.ok, sql_ok) == (False, False), python.problem
    assert (python.problem or "").startswith("audit.seal_state has no row"), python.problem


def test_r6_two_maintainers_pruning_at_once_remove_each_block_once(db, connect):
    """retention.md: "each call is one short transaction"; each removal records one `audit.pruned`
    event and a prune point. Concurrent variant: two maintainers' sessions prune the same old blocks
    in loops at the same time. Every old event goes once: the audit.pruned events' ranges are
    disjoint and cover seq 1..12, the prune points are the six blocks, and the chain verifies."""
    db.execute(OLD_EVENTS, [12])
    for _ in range(6):
        seal(db, 2)
    errors: list[str] = []

    def prune_loop() -> None:
        conn = connect("app_maintainer")
        try:
            while prune_events(conn, timedelta(days=30), batch_size=2).deleted:
                pass
        except Exception as e:  # noqa: BLE001
            errors.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=prune_loop) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    ranges = sorted((p["first_seq"], p["last_seq"]) for (p,) in db.execute(
        "SELECT payload FROM audit.events WHERE kind = 'audit.pruned'"))
    assert ranges == [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]
    assert [r[0] for r in db.execute("SELECT block_no FROM audit.prune_points ORDER BY 1")] == [1, 2, 3, 4, 5, 6]
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't122.old'").fetchone() == (0,)
    seal(db)
    assert both_verifiers(db) == (True, True)


def test_r7_a_prune_never_crosses_a_partitions_end_and_drops_a_whole_old_partition(near_end, connect):
    """retention.md: "no block crosses a partition's end. A batch stays inside one partition. When
    every remaining event of the oldest partition is old enough (and the sealer has moved past its
    end), the next call takes that whole partition, whatever `batch_size` says, and drops it".
    Ten old events sealed across the first partition's end: the first call (batch_size 100,000)
    takes only the five in the first partition and drops its table; the next takes the rest."""
    db = near_end
    db.execute(OLD_EVENTS, [10])
    seal(db)
    blocks = db.execute("SELECT first_seq, last_seq FROM audit.blocks ORDER BY block_no").fetchall()
    assert blocks == [(999_995, 999_999), (1_000_000, 1_000_004)]
    maint = connect("app_maintainer")
    first = prune_events(maint, timedelta(days=30), batch_size=100_000)
    assert (first.deleted, first.first_seq, first.last_seq) == (5, 999_995, 999_999)
    assert db.execute("SELECT to_regclass('audit.event_log_000000')").fetchone() == (None,)
    second = prune_events(maint, timedelta(days=30), batch_size=100_000)
    assert (second.deleted, second.first_seq, second.last_seq) == (5, 1_000_000, 1_000_004)
    seal(db)
    assert both_verifiers(db) == (True, True)
