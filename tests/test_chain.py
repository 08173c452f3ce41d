"""Tamper evidence, attacked by a superuser: each rewrite is detected and its block named, by
audit.verify (SQL) and by the Python verifier alike; checkpoints catch a rewritten chain."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg.rows import dict_row

from pgaudit_py import canonical, enable_tracking, prune_events, record, seal
from pgaudit_py import chain as chain_module
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import (
    CheckpointError,
    check_against_chain,
    check_signatures,
    generate_keys,
    load_keys,
    make_checkpoint,
    read_checkpoint,
)
from pgaudit_py.cli import cli
from pgaudit_py.errors import KeyFileError


@pytest.fixture
def chain(db, connect):
    """Three blocks of three events; block 2 holds captured rows with awkward values."""
    writer = connect("app_writer")
    for i in range(3):
        record(writer, "order.paid", tenant_id="t1", payload={"n": i, "price": 1.5, "tag": "ü\u2028\t"})
    seal(db)
    db.execute("""CREATE TABLE public.odd (id int PRIMARY KEY, f float8, n numeric, ts timestamptz, b bytea,
                                           arr text[], j jsonb, note text);
                  ALTER TABLE public.odd OWNER TO app_maintainer""")
    enable_tracking(connect("app_maintainer"), "public.odd")  # one event: audit.tracking_enabled
    seal(db)
    odd = connect(options="-c TimeZone=Asia/Kolkata")
    odd.execute(r"""INSERT INTO odd VALUES (1, 0.1, 1.50, '2026-05-01 10:00+02', '\x00ff', '{a,"b c",NULL}',
                    '{"z": 1e3, "a": [1.0, -0.0, 1e-7], "ü": "\u2028 \t \u0001 😀", "": null}', e'two\nlines "q" \\')""")
    odd.execute("UPDATE odd SET f = 1e300, n = n * 3, note = NULL")
    record(writer, "order.refunded", payload={"big": 1.5e300, "tiny": 1e-30, "nested": {"k": [None, True, {"x": "é"}]}})
    seal(db)
    assert db.execute("SELECT block_no, first_seq, last_seq FROM audit.blocks ORDER BY 1").fetchall() == [
        (1, 1, 3), (2, 4, 4), (3, 5, 7)]
    return db


def verdicts(db) -> tuple[tuple, tuple]:
    sql_result = db.execute("SELECT ok, problem, bad_block FROM audit.verify()").fetchone()
    py = verify_chain(db)
    return sql_result, (py.ok, py.problem, py.bad_block)


def assert_detected(db, block: int, problem: str) -> None:
    sql_result, py_result = verdicts(db)
    assert sql_result == (False, problem, block)
    assert py_result == (False, problem, block)


def tamper(db, statement: str) -> None:
    """What a superuser can do: switch triggers off for the session and rewrite."""
    db.execute("SET session_replication_role = replica")
    db.execute(statement)
    db.execute("RESET session_replication_role")


def test_intact_chain_verifies_and_python_reproduces_every_line(chain):
    assert verdicts(chain) == ((True, None, None), (True, None, None))
    with chain.cursor(row_factory=dict_row) as cur:
        rows = cur.execute("""SELECT seq, id, tenant_id, actor_type, actor_id, db_role, client_addr::text AS client_addr,
                                     application_name, kind, target_type, target_id, outcome, correlation_id,
                                     idempotency_key, txid::text AS txid, occurred_at, payload::text AS payload,
                                     schema_valid, row_before::text AS row_before, row_after::text AS row_after,
                                     changed::text AS changed, origin, audit._canonical_event(l, 2::smallint) AS line,
                                     audit._canonical_event(l, 1::smallint) AS line_v1
                                FROM audit.event_log l ORDER BY seq""").fetchall()
    assert len(rows) == 7
    for row in rows:
        assert canonical.event_line(row) == row["line"]
        assert canonical.event_line(row, 1) == row["line_v1"]
    assert {r["origin"] for r in rows} == {"record", "system", "capture"}
    odd = [r["line"] for r in rows if r["kind"] == "public.odd.update"][0]
    # The writer's TimeZone (Asia/Kolkata) does not reach the row image: capture pins UTC.
    assert '"ts": "2026-05-01T08:00:00+00:00"' in odd and '"b": "\\\\x00ff"' in odd and '"n": 4.50' in odd


@pytest.mark.parametrize("when", ["0044-03-15 12:00:00+00", "0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999+00",
                                  "10000-01-01 00:00:00.5+00", "0044-03-15 12:00:00+00 BC", "infinity", "-infinity"])
def test_python_writes_any_time_the_log_holds_as_the_sealer_does(chain, when):
    """occurred_at at the edges of what Python's datetime holds, and past them (only a hand-made
    change puts one there): the line Python builds is the sealer's own, so both verifiers judge it
    alike, and the Python one gives a verdict rather than raising (trial 94, k12)."""
    tamper(chain, f"UPDATE audit.event_log SET occurred_at = '{when}' WHERE seq = 5")
    with chain.transaction():
        chain.execute("SET LOCAL DateStyle = ISO; SET LOCAL TimeZone = 'UTC'")  # as verify_chain reads
        python = {row["seq"]: canonical.event_line(row) for row in chain_module._events(chain, "audit", 4)}
        sealer = dict(chain.execute("SELECT seq, audit._canonical_event(l, 2::smallint) FROM audit.event_log l"
                                    " WHERE seq > 4 ORDER BY seq").fetchall())
    assert python == sealer and len(python) == 3
    assert verdicts(chain) == ((False, "block 3: event seq 5 was changed", 3),) * 2


def test_the_same_day_bc_is_a_change_both_verifiers_see(chain):
    """to_char writes no era: the line adds " BC", or an event moved to the same day BC would hash as
    before (trial 97, v1)."""
    tamper(chain, "UPDATE audit.event_log SET occurred_at ="
                  " (to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00 BC')::timestamptz"
                  " WHERE seq = 5")
    assert chain.execute("SELECT extract(year FROM occurred_at) < 0 FROM audit.event_log WHERE seq = 5").fetchone() == (
        True,)
    assert_detected(chain, 3, "block 3: event seq 5 was changed")
    assert verify_chain(chain).bad_seq == 5


@pytest.mark.parametrize("sealed_as, moved_to", [("infinity", "-infinity"), ("-infinity", "infinity")])
def test_one_infinity_moved_to_the_other_is_a_change(chain, sealed_as, moved_to):
    """to_char writes no infinity: the line writes it as PostgreSQL does, so one sealed so (set in the
    intake by hand) verifies, and moved to the other infinity it no longer does, in both verifiers."""
    record(chain, "order.paid", tenant_id="t1")
    tamper(chain, f"UPDATE audit.event_intake SET occurred_at = '{sealed_as}'")
    block = seal(chain).block_no
    seq = chain.execute("SELECT max(seq) FROM audit.event_log").fetchone()[0]
    assert verdicts(chain) == ((True, None, None),) * 2
    tamper(chain, f"UPDATE audit.event_log SET occurred_at = '{moved_to}' WHERE seq = {seq}")
    assert_detected(chain, block, f"block {block}: event seq {seq} was changed")


@pytest.mark.parametrize("version", [1, 2])
def test_the_canonical_line_is_the_jsonb_text_of_its_fields(chain, version):
    """The sealer writes the line out by concatenation; it must stay, byte for byte, what each version
    specifies: PostgreSQL's jsonb text of these fields (awkward values included, and a row of NULLs,
    as a superuser could leave)."""
    fields = canonical.FIELDS_BY_VERSION[version]
    as_json = {"client_addr": "(e).client_addr::text", "txid": "(e).txid::text",
               "occurred_at": """to_char((e).occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')"""}
    reference = f"jsonb_build_object('v', {version}, " + ", ".join(
        f"'{f}', {as_json.get(f, f'(e).{f}')}" for f in fields) + ")::text"
    lines = chain.execute(f"""
        SELECT audit._canonical_event(e, {version}::smallint), {reference}
          FROM (SELECT l FROM audit.event_log l UNION ALL SELECT NULL::audit.event_log) AS x(e)""").fetchall()
    assert len(lines) == 8
    assert [line for line, expected in lines if line != expected] == []


def test_a_changed_payload_is_named_by_its_seq(chain):
    tamper(chain, "UPDATE audit.event_log SET payload = jsonb_set(payload, '{n}', '99') WHERE seq = 2")
    assert_detected(chain, 1, "block 1: event seq 2 was changed")
    assert verify_chain(chain).bad_seq == 2


def test_a_changed_event_whose_line_hashes_were_changed_too_is_named_by_its_block(chain):
    """The line hashes only locate: once they no longer hash to the block's events_hash, they say
    nothing, and both verifiers name the block. Changed alone, they change no verdict."""
    # flip every bit of the first byte: writing a fixed byte left the hashes as they were once in 256 runs
    tamper(chain, "UPDATE audit.blocks SET line_hashes = set_byte(line_hashes, 0, get_byte(line_hashes, 0) # 255)"
                  " WHERE block_no = 1")
    assert verdicts(chain) == ((True, None, None), (True, None, None))
    tamper(chain, "UPDATE audit.event_log SET payload = jsonb_set(payload, '{n}', '99') WHERE seq = 2")
    assert_detected(chain, 1, "block 1: an event was changed")
    assert verify_chain(chain).bad_seq is None


def test_blocks_sealed_before_line_hashes_name_the_block(chain):
    tamper(chain, "UPDATE audit.blocks SET line_hashes = NULL")
    tamper(chain, "UPDATE audit.event_log SET payload = jsonb_set(payload, '{n}', '99') WHERE seq = 2")
    assert_detected(chain, 1, "block 1: an event was changed")


def test_a_deleted_event(chain):
    tamper(chain, "DELETE FROM audit.event_log WHERE seq = 6")
    assert_detected(chain, 3, "block 3: 1 of its 3 events are missing")


def test_an_inserted_event(chain):
    tamper(chain, """INSERT INTO audit.event_log (seq, id, actor_type, db_role, kind, outcome, txid, occurred_at,
                                                  sealed_at, payload)
                     VALUES (8, gen_random_uuid(), 'user', 'x', 'forged.event', 'success', '1', now(), now(), '{}')""")
    assert_detected(chain, 4, "event seq 8 is outside every block (after block 3)")


def test_two_events_swapped(chain):
    tamper(chain, """UPDATE audit.event_log l SET payload = o.payload FROM audit.event_log o
                      WHERE (l.seq, o.seq) IN ((1, 2), (2, 1))""")
    assert_detected(chain, 1, "block 1: event seq 1 was changed")


def test_an_event_moved_to_another_block(chain):
    tamper(chain, "UPDATE audit.event_log SET block_no = 1 WHERE seq IN (5, 6)")
    assert_detected(chain, 3, "block 3: 2 of its events claim another block")


def test_a_changed_block_row(chain):
    tamper(chain, "UPDATE audit.blocks SET sealed_at = sealed_at, events_hash = sha256('x') WHERE block_no = 2")
    assert_detected(chain, 2, "block 2: the block row was changed")


def test_a_deleted_block(chain):
    tamper(chain, "DELETE FROM audit.blocks WHERE block_no = 2")
    assert_detected(chain, 2, "block 2 is missing")


def test_a_block_that_does_not_name_its_predecessor(chain):
    tamper(chain, "UPDATE audit.blocks SET prev_hash = sha256('another chain') WHERE block_no = 2")
    assert_detected(chain, 2, "broken link: block 2 does not name the hash of block 1")


def test_a_block_that_does_not_start_where_the_previous_one_ended(chain):
    tamper(chain, "UPDATE audit.blocks SET first_seq = 3, event_count = 2 WHERE block_no = 2")  # claims seq 3 too
    assert_detected(chain, 2, "block 2 starts at seq 3, not where block 1 ended")


def test_a_deleted_head_block(chain):
    """Deleting the last block leaves the chain consistent up to block 2; the sealer's state still
    names block 3 as the head."""
    tamper(chain, "DELETE FROM audit.blocks WHERE block_no = 3")
    assert_detected(chain, 3, "block 3 is missing (the sealer's head is block 3)")


def put_back_event_2(db) -> None:
    tamper(db, """INSERT INTO audit.event_log (seq, id, actor_type, db_role, kind, outcome, txid, occurred_at,
                                               sealed_at, payload, block_no)
                  VALUES (2, gen_random_uuid(), 'user', 'x', 'forged.event', 'success', '1', now(), now(), '{}', 1)""")


def test_an_event_inserted_into_pruned_history(chain, connect):
    """Pruned blocks keep their rows but lose their events: an event that reappears in their range
    was put there by hand."""
    tamper(chain, "UPDATE audit.event_log SET occurred_at = occurred_at - interval '400 days' WHERE seq <= 3")
    rehash(chain)
    assert prune_events(connect("app_maintainer"), "365 days").deleted == 3
    put_back_event_2(chain)
    assert_detected(chain, 2, "event seq 2 is outside every block")


def test_an_event_inserted_into_history_pruned_to_the_head(chain, connect):
    """With every block pruned there is no retained block to trip over: the tail check must find it."""
    head = chain.execute("SELECT last_block_no FROM audit.seal_state").fetchone()[0]
    tamper(chain, "UPDATE audit.event_log SET occurred_at = occurred_at - interval '400 days'")
    rehash(chain)
    assert prune_events(connect("app_maintainer"), "365 days").deleted == 7
    put_back_event_2(chain)
    assert_detected(chain, head + 1, f"event seq 2 is outside every block (after block {head})")


def rehash(db) -> None:
    """Recompute every block from the events as they now are, as an attacker with the code would."""
    db.execute("SET session_replication_role = replica")
    prev = bytes(32)
    for no, first, last, count in db.execute("SELECT block_no, first_seq, last_seq, event_count FROM audit.blocks"
                                              " ORDER BY block_no").fetchall():
        events = db.execute("SELECT sha256(string_agg(sha256(convert_to(audit._canonical_event(l, 2::smallint), 'UTF8')), ''::bytea"
                            " ORDER BY seq)) FROM audit.event_log l WHERE seq BETWEEN %s AND %s", (first, last)).fetchone()[0]
        block = db.execute("SELECT audit._block_hash(%s, %s, %s, %s, %s, %s)", (no, first, last, count, events, prev)).fetchone()[0]
        db.execute("UPDATE audit.blocks SET events_hash = %s, prev_hash = %s, block_hash = %s,"
                   " newest_occurred_at = (SELECT max(occurred_at) FROM audit.event_log WHERE seq BETWEEN %s AND %s)"
                   " WHERE block_no = %s", (events, prev, block, first, last, no))
        prev = block
    db.execute("UPDATE audit.seal_state SET last_block_hash = %s", (prev,))
    db.execute("RESET session_replication_role")


def rewrite_whole_chain(db) -> None:
    """The attacker changes an event, then recomputes every hash after it consistently."""
    tamper(db, "UPDATE audit.event_log SET payload = '{\"n\": 99}' WHERE seq = 2")
    rehash(db)


@pytest.fixture
def keys(tmp_path):
    generate_keys(tmp_path)
    return tmp_path


def signed_checkpoint(db, keys: Path) -> dict:
    return make_checkpoint(db, load_keys(signing_key=keys / "checkpoint-ed25519.pem",
                                         hmac_key=keys / "checkpoint-hmac.key"))


def check(db, document: dict, keys: Path) -> str | None:
    assert check_signatures(document, load_keys(public_key=keys / "checkpoint-ed25519.pub.pem",
                                                hmac_key=keys / "checkpoint-hmac.key")) == ["ed25519", "hmac-sha256"]
    hashes: dict[int, bytes] = {}
    result = verify_chain(db, on_block=lambda b: hashes.__setitem__(b.block_no, b.block_hash))
    assert result.ok, result.problem
    return check_against_chain(document, result, hashes)


def test_a_rewritten_chain_is_caught_only_by_the_checkpoint(chain, keys):
    document = signed_checkpoint(chain, keys)
    assert document["checkpoint"]["block_no"] == 3 and check(chain, document, keys) is None
    rewrite_whole_chain(chain)
    assert verdicts(chain) == ((True, None, None), (True, None, None))  # self-consistent again
    assert check(chain, document, keys) == "block 3 does not match the checkpoint: the chain was rewritten up to it"


def test_a_removed_tail_is_caught_by_the_checkpoint(chain, keys):
    document = signed_checkpoint(chain, keys)
    tamper(chain, "DELETE FROM audit.event_log WHERE seq >= 5; DELETE FROM audit.blocks WHERE block_no = 3;"
                  " UPDATE audit.seal_state SET last_block_no = 2, last_seq = 4,"
                  " last_block_hash = (SELECT block_hash FROM audit.blocks WHERE block_no = 2)")
    assert verdicts(chain) == ((True, None, None), (True, None, None))
    assert check(chain, document, keys) == "block 3 named by the checkpoint is missing (the chain ends at block 2)"


def test_checkpoint_signatures_refuse_other_keys_and_edits(chain, keys, tmp_path):
    document = signed_checkpoint(chain, keys)
    other = tmp_path / "other"
    generate_keys(other)
    with pytest.raises(CheckpointError, match="Ed25519 signature does not verify with this public key"):
        check_signatures(document, load_keys(public_key=other / "checkpoint-ed25519.pub.pem"))
    with pytest.raises(CheckpointError, match="HMAC-SHA-256 does not verify with this key"):
        check_signatures(document, load_keys(hmac_key=other / "checkpoint-hmac.key"))
    document["checkpoint"]["block_no"] = 2
    with pytest.raises(CheckpointError, match="Ed25519 signature does not verify"):
        check_signatures(document, load_keys(public_key=keys / "checkpoint-ed25519.pub.pem"))


def test_no_false_alarm_after_a_prune(chain, connect):
    # Test set-up: block 1 as if sealed 400 days ago (its events aged, the chain rebuilt to match).
    tamper(chain, "UPDATE audit.event_log SET occurred_at = occurred_at - interval '400 days' WHERE seq <= 3")
    rehash(chain)
    assert prune_events(connect("app_maintainer"), "365 days").deleted == 3
    seal(chain)
    sql_result = chain.execute("SELECT ok, retained_from_block, retained_from_seq FROM audit.verify()").fetchone()
    py = verify_chain(chain)
    assert sql_result == (True, 2, 4) and (py.ok, py.retained_from_block, py.retained_from_seq) == (True, 2, 4)
    assert chain.execute("SELECT block_no FROM audit.prune_points").fetchall() == [(1,)]


def age_block_1(chain) -> None:
    """Test set-up: block 1 as if sealed 400 days ago (its events aged, the chain rebuilt to match)."""
    tamper(chain, "UPDATE audit.event_log SET occurred_at = occurred_at - interval '400 days' WHERE seq <= 3")
    rehash(chain)


def prune_block_1(chain, connect, aged: bool = False) -> None:
    """A real prune of block 1; its audit.pruned event is left pending."""
    if not aged:
        age_block_1(chain)
    assert prune_events(connect("app_maintainer"), "365 days").deleted == 3


def test_no_false_alarm_while_the_prunes_own_event_is_pending(chain, connect):
    prune_block_1(chain, connect)
    assert chain.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.pruned' AND pending").fetchone() == (1,)
    assert verdicts(chain) == ((True, None, None), (True, None, None))


UNRECORDED = "blocks through {}: their events were removed, and no prune or archive deletion recorded it"
FORGED_PRUNES = {
    # Events deleted and the prune point written by hand: no prune ran.
    "no event at all": (
        "DELETE FROM audit.event_log WHERE seq <= 3;"
        " INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
        " SELECT block_no, block_hash, last_seq, now(), 'app_maintainer' FROM audit.blocks WHERE block_no = 1",
        1, UNRECORDED.format(1)),
    # A prune's event that record() wrote (its origin): record() refuses the kind, a superuser need not.
    "an event of origin record": ("UPDATE audit.event_intake SET origin = 'record' WHERE kind = 'audit.pruned'",
                                  1, UNRECORDED.format(1)),
    # A real prune of block 1, then block 2's events deleted under a point of its own: the event names block 1.
    "a real prune's event for an earlier point": (
        "DELETE FROM audit.event_log WHERE seq = 4;"
        " INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
        " SELECT block_no, block_hash, last_seq, now(), 'app_maintainer' FROM audit.blocks WHERE block_no = 2",
        2, UNRECORDED.format(2)),
    # The real prune point, its block's hash replaced: the point no longer names the block it stands for.
    "a point that does not match its block": ("UPDATE audit.prune_points SET block_hash = sha256('x')",
                                              1, "block 1: its prune point does not match the block"),
    # Numbered below any block: the SQL verifier checked only points from block 1 on (trial 95, v1).
    "a point of block 0": ("INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
                           " SELECT 0, block_hash, last_seq, now(), 'app_maintainer' FROM audit.blocks WHERE block_no = 1",
                           0, "block 0: its prune point does not match the block"),
}


@pytest.mark.parametrize("forgery", FORGED_PRUNES)
def test_a_prune_point_that_no_prune_or_archive_deletion_recorded_is_found(chain, connect, forgery):
    """Under the latest prune point no event is checked, so both verifiers require the event that
    prune_events or delete_archived records with it (pending, sealed after it, or quarantined), of
    pgaudit_py's own origin, naming that very point."""
    statement, block, problem = FORGED_PRUNES[forgery]
    if forgery not in ("no event at all", "a point of block 0"):
        prune_block_1(chain, connect)
        assert verdicts(chain) == ((True, None, None), (True, None, None))
    tamper(chain, statement)
    assert_detected(chain, block, problem)


def test_a_checkpoint_says_which_of_its_blocks_were_pruned_since_it_was_signed(chain, connect, keys, tmp_path):
    i = chain.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"
    out = tmp_path / "cp.json"
    age_block_1(chain)
    out.write_text(json.dumps(signed_checkpoint(chain, keys)))
    verify = ["verify", "--dsn", dsn, "--checkpoint", str(out), "--public-key", str(keys / "checkpoint-ed25519.pub.pem")]
    before = CliRunner().invoke(cli, verify)
    assert before.exit_code == 0 and "pruned or archived since" not in before.output, before.output
    prune_block_1(chain, connect, aged=True)
    seal(chain)
    after = CliRunner().invoke(cli, verify)
    assert after.exit_code == 0, after.output
    assert after.output.splitlines()[-2:] == [
        "checkpoint of block 3 holds (signature: ed25519)",
        "blocks 1..1, which it covers, were pruned or archived since it was signed: their audit.pruned or"
        " audit.archive_deleted events say by whom"]
    as_json = CliRunner().invoke(cli, [*verify, "--json"])
    assert json.loads(as_json.stdout)["checkpoint"]["pruned_since"] == [1, 1]
    # A checkpoint signed after the prune covers nothing pruned since.
    out.write_text(json.dumps(signed_checkpoint(chain, keys)))
    assert json.loads(CliRunner().invoke(cli, [*verify, "--json"]).stdout)["checkpoint"]["pruned_since"] is None


def test_no_false_alarm_when_the_prunes_own_event_was_set_aside_by_the_sealer(chain, connect):
    """The prune's event, quarantined by seal() rather than sealed (the log made to refuse it), still
    says the prune happened: seal() records that it set it aside. A quarantine row alone does not
    (tests/test_trust_attacks_44.py)."""
    prune_block_1(chain, connect)
    # The log, as installed, refuses it: seal() sets an event aside only while its path is as installed.
    as_installed = ("UPDATE audit._install SET snapshot = audit._security_snapshot()"
                    " WHERE installed_at = (SELECT max(installed_at) FROM audit._install)")
    chain.execute("ALTER TABLE audit.event_log ADD CONSTRAINT no_prunes CHECK (kind <> 'audit.pruned')")
    chain.execute(as_installed)
    seal(chain)
    chain.execute("ALTER TABLE audit.event_log DROP CONSTRAINT no_prunes")
    chain.execute(as_installed)
    assert chain.execute("SELECT count(*) FROM audit.quarantine WHERE kind = 'audit.pruned'").fetchone() == (1,)
    assert verdicts(chain) == ((True, None, None), (True, None, None))
    seal(chain)  # the announcement, sealed
    assert verdicts(chain) == ((True, None, None), (True, None, None))


@pytest.mark.parametrize("pruned_through", ['"1"', "[1]", '{"block_no": 1.0, "block_hash": "00"}', '{"block_no": 1}'])
def test_a_checkpoint_whose_pruned_through_is_not_of_its_type_is_refused(tmp_path, pruned_through):
    path = tmp_path / "cp.json"
    path.write_text('{"checkpoint": {"block_no": 3, "block_hash": "00", "pruned_through": ' + pruned_through + "}}")
    with pytest.raises(KeyFileError, match=r"\(pruned_through: null or alike\)"):
        read_checkpoint(path)


def test_verify_a_range_of_blocks(chain):
    tamper(chain, "UPDATE audit.event_log SET payload = '{\"x\": 1}' WHERE seq = 6")
    assert chain.execute("SELECT ok, blocks_checked FROM audit.verify(from_block => 1, to_block => 2)").fetchone() == (True, 2)
    assert chain.execute("SELECT ok, bad_block FROM audit.verify(from_block => 2)").fetchone() == (False, 3)


def test_readers_verify_writers_cannot(chain, connect):
    assert connect("app_reader").execute("SELECT ok FROM audit.verify()").fetchone() == (True,)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        connect("app_writer").execute("SELECT audit.verify()")


def test_cli_checkpoint_and_verify(chain, keys, tmp_path):
    i = chain.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"
    out = tmp_path / "cp.json"
    runner = CliRunner()
    made = runner.invoke(cli, ["checkpoint", "--dsn", dsn, "--signing-key", str(keys / "checkpoint-ed25519.pem"),
                               "--out", str(out)])
    assert made.exit_code == 0, made.stderr
    assert json.loads(out.read_text())["checkpoint"]["block_no"] == 3
    ok = runner.invoke(cli, ["verify", "--dsn", dsn, "--checkpoint", str(out),
                             "--public-key", str(keys / "checkpoint-ed25519.pub.pem")])
    assert ok.exit_code == 0, ok.stderr
    assert "chain intact: 3 blocks, 7 events verified; 0 pending" in ok.output
    assert "checkpoint of block 3 holds (signature: ed25519)" in ok.output
    rewrite_whole_chain(chain)
    caught = runner.invoke(cli, ["verify", "--dsn", dsn, "--checkpoint", str(out),
                                 "--public-key", str(keys / "checkpoint-ed25519.pub.pem")])
    assert caught.exit_code == 1
    assert caught.stderr.strip().splitlines()[-1] == (
        "pgaudit: checkpoint failed: block 3 does not match the checkpoint: the chain was rewritten up to it")
    tamper(chain, "DELETE FROM audit.event_log WHERE seq = 5")
    broken = runner.invoke(cli, ["verify", "--dsn", dsn])
    assert broken.exit_code == 1
    assert broken.stderr.strip().splitlines()[-1] == (
        "pgaudit: verification failed at block 3: block 3: 1 of its 3 events are missing")
    no_key = runner.invoke(cli, ["verify", "--dsn", dsn, "--checkpoint", str(out)])
    assert no_key.exit_code == 2 and "give --public-key or --hmac-key-file" in no_key.stderr  # bad input


def test_keygen_writes_private_files_for_the_owner_only_and_never_overwrites(tmp_path):
    written = generate_keys(tmp_path / "keys")
    modes = {p.name: p.stat().st_mode & 0o777 for p in written}
    assert modes == {"checkpoint-ed25519.pem": 0o600, "checkpoint-ed25519.pub.pem": 0o644,
                     "checkpoint-hmac.key": 0o600}
    with pytest.raises(CheckpointError, match="exists already; not overwriting a key"):
        generate_keys(tmp_path / "keys")


def test_a_key_file_is_read_only_as_a_regular_file_of_at_most_64_kib(tmp_path):
    """pgaudit_py/key_files.py: a larger file (an HMAC key of 300 MiB was once taken whole), a FIFO
    (it blocked for ever) and a device are refused in one line that repeats none of their bytes."""
    at_limit, over = tmp_path / "at_limit.key", tmp_path / "over.key"
    at_limit.write_bytes(b"k" * 65536)
    over.write_bytes(b"k" * 65537)
    assert load_keys(hmac_key=at_limit).hmac_key == b"k" * 65536
    with pytest.raises(KeyFileError) as refused:
        load_keys(hmac_key=over)
    assert str(refused.value) == f"cannot read key file {over}: larger than 64 KiB"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (fifo, Path("/dev/zero"), tmp_path):
        with pytest.raises(KeyFileError) as refused:
            load_keys(hmac_key=path)
        assert str(refused.value).startswith(f"cannot read key file {path}: ")


def test_checkpoint_keys_never_reach_the_server(chain, keys, pg_cluster):
    """With every statement logged, making and checking a checkpoint leaves no key material in the log."""
    chain.execute("SET log_statement = 'all'")
    document = signed_checkpoint(chain, keys)
    assert check(chain, document, keys) is None
    chain.execute("SELECT 'checkpoint test done'")
    log = pg_cluster.log.read_bytes()
    assert b"checkpoint test done" in log  # the log is the one being written
    secret = (keys / "checkpoint-hmac.key").read_bytes()
    private_pem = (keys / "checkpoint-ed25519.pem").read_text().splitlines()[1].encode()
    for leak in (secret, secret.hex().encode(), base64.b64encode(secret), private_pem):
        assert leak not in log
