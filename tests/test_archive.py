"""Cold archival against a local directory and a real S3 HTTP API (moto's server on loopback):
crashes at every step, a flaky upload, tampering, refusals, restore and the command line."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import re
import socket
import tempfile
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import psycopg
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pgaudit_py import archive as archiving
from pgaudit_py import canonical, enable_tracking, preview_prune, prune_events, record, seal
from pgaudit_py.archive_targets import FileTarget, S3Target, Target, open_target, read_object, write_object
from pgaudit_py.chain import Block, read_blocks
from pgaudit_py.checkpoint import Keys, sign
from pgaudit_py.cli import cli
from pgaudit_py.errors import InvalidArgument, NotArchived, StorageError

Connect = Callable[..., psycopg.Connection]
DUE = timedelta(milliseconds=1)  # everything sealed before the call is old enough


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def aws(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in {"AWS_ENDPOINT_URL": s3_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    return s3_endpoint


def remove_object(target: Target, key: str) -> None:
    """What someone with access to the storage may do; pgaudit itself never deletes an object."""
    if isinstance(target, S3Target):
        target.client.delete_object(Bucket=target.bucket, Key=target._key(key))
    else:
        assert isinstance(target, FileTarget)
        (target.directory / key).unlink()


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    if request.param == "file":
        return open_target(f"file://{tmp_path}/archive")
    request.getfixturevalue("aws")
    bucket = f"audit-{uuid.uuid4().hex[:12]}"
    made = open_target(f"s3://{bucket}/prod/audit")
    assert isinstance(made, S3Target)
    made.client.create_bucket(Bucket=bucket)
    return made


@pytest.fixture
def keys() -> Keys:
    private = Ed25519PrivateKey.generate()
    return Keys(signing_key=private, public_key=private.public_key(), hmac_key=os.urandom(32))


@pytest.fixture
def maintainer(connect: Connect) -> psycopg.Connection:
    return connect("app_maintainer")


def make_blocks(db: psycopg.Connection, blocks: int, per_block: int = 5) -> None:
    for b in range(blocks):
        for i in range(per_block):
            record(db, "order.created", tenant_id="t1", payload={"block": b, "i": i, "price": 1.5})
        seal(db)


def original(db: psycopg.Connection) -> dict[int, str]:
    return {seq: str(i) for seq, i in db.execute("SELECT seq, id FROM audit.event_log")}


def hot_and_archived(db: psycopg.Connection, target: Target) -> tuple[dict[int, str], list[int]]:
    """Every event, hot or archived (seq -> id), and the archived seqs with repeats kept."""
    everything = {seq: str(i) for seq, i in db.execute("SELECT seq, id FROM audit.event_log")}
    archived = []
    for key in target.list_keys():
        if key.endswith(".jsonl.gz"):
            data = read_object(target, key)
            assert data is not None
            for line in gzip.decompress(data).decode().splitlines():
                event = json.loads(line)
                archived.append(event["seq"])
                everything[event["seq"]] = event["id"]
    return everything, archived


def set_batch_size(db: psycopg.Connection, events: int) -> None:
    db.execute("SELECT audit.set_archive_settings('90 days', %s, NULL)", (events,))


def test_archive_moves_whole_blocks_and_everything_verifies(db: psycopg.Connection, maintainer: psycopg.Connection,
                                                            target: Target, keys: Keys) -> None:
    make_blocks(db, 6)
    before = original(db)
    set_batch_size(db, 10)
    run = archiving.archive(maintainer, target, keys, older_than=DUE, max_batches=2)
    assert [b.batch_id for b in run.batches] == ["blocks-000000000001-000000000002",
                                                 "blocks-000000000003-000000000004"]
    assert run.events == 20 and all(b.state == "deleted" for b in run.batches)
    assert sorted(target.list_keys()) == sorted(k for b in run.batches for k in archiving.object_keys(b.batch_id))
    assert db.execute("SELECT min(seq), count(*) FROM audit.event_log").fetchone() == (21, 10)
    everything, archived = hot_and_archived(db, target)
    assert everything == before and sorted(archived) == list(range(1, 21))

    checked = archiving.verify_archive(maintainer, target, Keys(public_key=keys.public_key))
    assert checked.ok, checked.problems
    assert (checked.batches_checked, checked.events_checked) == (2, 20)
    assert (checked.archived_through_block, checked.archived_through_seq, checked.hot_from_block,
            checked.hot_from_seq) == (4, 20, 5, 21)
    assert archiving.verify_archive(maintainer, target, Keys(hmac_key=keys.hmac_key)).ok
    verified = db.execute("SELECT ok, retained_from_block, retained_from_seq, archived_through_block,"
                          " archived_through_seq FROM audit.verify()").fetchone()
    assert verified == (True, 5, 21, 4, 20)
    kinds = db.execute("SELECT kind, count(*) FROM audit.events WHERE kind IN ('audit.archived', 'audit.archive_deleted')"
                       " GROUP BY 1 ORDER BY 1").fetchall()
    assert kinds == [("audit.archive_deleted", 2), ("audit.archived", 2)]

    assert archiving.restore_batch(maintainer, target, "blocks-000000000003-000000000004") == 10
    restored = db.execute("SELECT min(seq), max(seq), count(*), min(block_no), max(block_no)"
                          " FROM audit.restored_events").fetchone()
    assert restored == (11, 20, 10, 3, 4)
    assert db.execute("SELECT event -> 'payload' ->> 'price' FROM audit.restored_events LIMIT 1").fetchone() == ("1.5",)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        maintainer.execute("UPDATE audit.restored_events SET kind = 'x'")
    assert db.execute("SELECT count(*), min(kind), max(kind) FROM audit.restored_events").fetchone() == (
        10, "order.created", "order.created")
    # Loading and dropping a restored batch are both on the record.
    assert maintainer.execute("SELECT audit.drop_restored_batch('blocks-000000000003-000000000004')").fetchone() == (10,)
    assert db.execute("SELECT kind, target_id, payload, db_role FROM audit.events"
                      " WHERE kind IN ('audit.archive_restored', 'audit.archive_restore_dropped') ORDER BY intake_id"
                      ).fetchall() == [("audit.archive_restored", "blocks-000000000003-000000000004", {"events": 10},
                                        "app_maintainer"),
                                       ("audit.archive_restore_dropped", "blocks-000000000003-000000000004",
                                        {"events": 10}, "app_maintainer")]


STEPS = ["planned", "data_stored", "manifest_stored", "recorded", "deleted_uncommitted"]


class Crash(Exception):
    pass


@pytest.mark.parametrize("step", STEPS)
def test_a_crash_at_any_step_loses_nothing_and_duplicates_nothing(
        db: psycopg.Connection, connect: Connect, target: Target, keys: Keys, step: str) -> None:
    make_blocks(db, 4)
    before = original(db)
    set_batch_size(db, 10)

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    with pytest.raises(Crash):
        archiving.archive(connect("app_maintainer"), target, keys, older_than=DUE, hook=crash)
    # The events are still hot, or archived and recorded: never neither.
    everything, archived = hot_and_archived(db, target)
    assert everything == before
    run = archiving.archive(connect("app_maintainer"), target, keys, older_than=DUE)
    assert [b.batch_id for b in run.batches] == ["blocks-000000000001-000000000002",
                                                 "blocks-000000000003-000000000004"]
    everything, archived = hot_and_archived(db, target)
    assert everything == before and sorted(archived) == sorted(before)  # each archived exactly once
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (0,)
    checked = archiving.verify_archive(db, target, keys)
    assert checked.ok, checked.problems
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)


class FlakyTarget:
    """Stores the first data object, then reports a failure, as a store may after a timeout."""

    def __init__(self, inner: Target):
        self.inner = inner
        self.url = inner.url
        self.failed = False

    def upload(self, key: str, source: IO[bytes]) -> None:
        self.inner.upload(key, source)
        if not self.failed and key.endswith(".jsonl.gz"):
            self.failed = True
            raise StorageError(f"storing {key} failed: read timeout")

    def download(self, key: str, into: IO[bytes]) -> bool:
        return self.inner.download(key, into)

    def size(self, key: str) -> int | None:
        return self.inner.size(key)

    def list_keys(self) -> list[str]:
        return self.inner.list_keys()


def test_an_upload_error_that_stored_the_object_anyway(db: psycopg.Connection, maintainer: psycopg.Connection,
                                                       target: Target, keys: Keys) -> None:
    make_blocks(db, 2)
    flaky = FlakyTarget(target)
    run = archiving.archive(maintainer, flaky, keys, older_than=DUE)
    assert flaky.failed and run.events == 10
    assert archiving.verify_archive(db, target, keys).ok


def test_different_content_under_a_batch_key_stops_archiving(db: psycopg.Connection, maintainer: psycopg.Connection,
                                                             target: Target, keys: Keys) -> None:
    make_blocks(db, 1)
    write_object(target, "blocks-000000000001-000000000001.jsonl.gz", gzip.compress(b'{"someone": "else"}\n'))
    with pytest.raises(archiving.ArchiveConflict, match="exists with different content; archiving stopped"):
        archiving.archive(maintainer, target, keys, older_than=DUE)
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (5,)
    assert db.execute("SELECT state FROM audit.archive_batches").fetchall() == [("planned",)]


def _archived(db: psycopg.Connection, maintainer: psycopg.Connection, target: Target, keys: Keys) -> list[str]:
    make_blocks(db, 3)
    set_batch_size(db, 5)
    return [b.batch_id for b in archiving.archive(maintainer, target, keys, older_than=DUE).batches]


def test_tampering_with_the_archive_is_named(db: psycopg.Connection, maintainer: psycopg.Connection,
                                             target: Target, keys: Keys) -> None:
    first, second, third = _archived(db, maintainer, target, keys)
    public = Keys(public_key=keys.public_key)
    assert archiving.verify_archive(maintainer, target, public).ok

    # A data object rewritten with one event changed.
    data_key, manifest_key = archiving.object_keys(first)
    original_data = read_object(target, data_key)
    assert original_data is not None
    write_object(target, data_key, gzip.compress(gzip.decompress(original_data).replace(b'"price": 1.5', b'"price": 9.5')))
    problems = archiving.verify_archive(maintainer, target, public).problems
    assert problems == [f"batch {first}: the data object was changed (its SHA-256 does not match)"]
    assert archiving.verify_archive(maintainer, target, public, batch_id=second).ok
    write_object(target, data_key, original_data)

    # A manifest edited, and a manifest re-signed with another key.
    _, manifest_key = archiving.object_keys(second)
    original_manifest = read_object(target, manifest_key)
    assert original_manifest is not None
    document = json.loads(original_manifest)
    document["manifest"]["event_count"] = 4
    write_object(target, manifest_key, json.dumps(document).encode())
    problems = archiving.verify_archive(maintainer, target, public).problems
    assert f"batch {second}: the manifest was changed (its hash is not the one recorded)" in problems
    assert f"batch {second}: the manifest's Ed25519 signature does not verify with this public key" in problems
    batch = next(b for b in archiving.list_batches(db) if b.batch_id == second)
    blocks = read_blocks(db, "audit", batch.first_block, batch.last_block)
    gz = read_object(target, archiving.object_keys(second)[0]) or b""
    forged = archiving.build_manifest(batch, blocks, archiving.Digest.of(gzip.decompress(gz)), archiving.Digest.of(gz),
                                      batch.prev_manifest_sha256, Keys(signing_key=Ed25519PrivateKey.generate()),
                                      "audit")
    write_object(target, manifest_key, forged)
    problems = archiving.verify_archive(maintainer, target, public).problems
    assert f"batch {second}: the manifest's Ed25519 signature does not verify with this public key" in problems
    write_object(target, manifest_key, original_manifest)
    assert archiving.verify_archive(maintainer, target, public).ok

    # A batch deleted from the bucket, and an object nobody recorded.
    for key in archiving.object_keys(third):
        remove_object(target, key)
    write_object(target, "blocks-000000000099-000000000099.jsonl.gz", b"stray")
    problems = archiving.verify_archive(maintainer, target, public).problems
    assert problems == [f"batch {third}: manifest {third}.manifest.json is missing from {target.url}",
                        f"extra object blocks-000000000099-000000000099.jsonl.gz in {target.url}: "
                        "no recorded batch names it"]


def archived_lines(target: Target, batch_id: str) -> list[str]:
    data = read_object(target, archiving.object_keys(batch_id)[0])
    assert data is not None
    return gzip.decompress(data).decode().split("\n")[:-1]


def forge(db: psycopg.Connection, target: Target, batch_id: str, signer: Keys, *, lines: list[str] | None = None,
          edit: Callable[[dict[str, Any]], None] | None = None, record_data_hash: bool = True) -> None:
    """An attacker who controls the storage and the database, and holds `signer`: the batch's data
    object becomes `lines`, its manifest is edited and signed again, and the database's record is
    made to agree (all but the uncompressed data's hash, unless `record_data_hash`). Every check
    on the way to the one a test is after passes."""
    data_key, manifest_key = archiving.object_keys(batch_id)
    data = "".join(line + "\n" for line in (lines if lines is not None else archived_lines(target, batch_id))).encode()
    gz = gzip.compress(data, mtime=0)
    raw = read_object(target, manifest_key)
    assert raw is not None
    body = json.loads(raw)["manifest"]
    body.update(data_bytes=len(data), data_sha256=hashlib.sha256(data).hexdigest(), gz_bytes=len(gz),
                gz_sha256=hashlib.sha256(gz).hexdigest())
    if edit:
        edit(body)
    manifest = (canonical.dumps({"manifest": body, "signatures": sign(body, signer)}) + "\n").encode()
    write_object(target, data_key, gz)
    write_object(target, manifest_key, manifest)
    db.execute("UPDATE audit.archive_batches SET gz_sha256 = %s, gz_bytes = %s, manifest_sha256 = %s,"
               " data_sha256 = CASE WHEN %s THEN %s ELSE data_sha256 END,"
               " data_bytes = CASE WHEN %s THEN %s ELSE data_bytes END WHERE batch_id = %s",
               (hashlib.sha256(gz).digest(), len(gz), hashlib.sha256(manifest).digest(), record_data_hash,
                hashlib.sha256(data).digest(), record_data_hash, len(data), batch_id))


def rehash_block(body: dict[str, Any], lines: list[str] | None = None, prev_hash: bytes | None = None) -> None:
    """Make the manifest's (one) block header consistent again: its events hash from `lines`, its
    link `prev_hash`, and its own hash over both."""
    entry = body["blocks"][0]
    events = canonical.events_hash(lines) if lines is not None else bytes.fromhex(entry["events_hash"])
    prev = prev_hash if prev_hash is not None else bytes.fromhex(entry["prev_hash"])
    entry.update(events_hash=events.hex(), prev_hash=prev.hex(), block_hash=canonical.block_hash(
        entry["block_no"], entry["first_seq"], entry["last_seq"], entry["event_count"], events, prev).hex())


def swapped(lines: list[str]) -> list[str]:
    return [lines[1], lines[0], *lines[2:]]


def line_seq(target: Target, batch_id: str, index: int) -> int:
    return int(json.loads(archived_lines(target, batch_id)[index])["seq"])


def changed_price(lines: list[str]) -> list[str]:
    return [lines[0].replace('"price": 1.5', '"price": 9.5'), *lines[1:]]


def tamper_chain(db: psycopg.Connection, statement: str) -> None:
    db.execute("SET session_replication_role = replica")
    db.execute(statement)
    db.execute("RESET session_replication_role")


# Each: what is done to three archived one-block batches (blocks 1, 2, 3; block 4 still hot), and
# every problem `archive verify` must then name, exactly.
TAMPERING: dict[str, Callable[[psycopg.Connection, Target, Keys, list[str]], list[str]]] = {
    "manifest without blocks": lambda db, target, keys, b: (
        write_object(target, archiving.object_keys(b[0])[1], b'{"manifest": {"batch_id": "x"}}'),
        [f"batch {b[0]}: the manifest was changed (its hash is not the one recorded)",
         f"batch {b[0]}: the manifest is not a pgaudit manifest"])[1],
    "manifest with a block that is not a header": lambda db, target, keys, b: (
        forge(db, target, b[2], keys, edit=lambda body: body["blocks"][0].update(events_hash="not hex", block_no="3")),
        [f"batch {b[2]}: the manifest is not a pgaudit manifest"])[1],
    "manifest larger than any of its blocks can be": lambda db, target, keys, b: (
        write_object(target, archiving.object_keys(b[0])[1], b" " * (200 << 10)),
        [f"batch {b[0]}: the manifest was changed (it is larger than a manifest of its blocks can be)"])[1],
    "manifest replaced by other JSON": lambda db, target, keys, b: (
        write_object(target, archiving.object_keys(b[0])[1], b"[]"),
        [f"batch {b[0]}: the manifest was changed (its hash is not the one recorded)",
         f"batch {b[0]}: the manifest is not a pgaudit manifest"])[1],
    "data object deleted": lambda db, target, keys, b: (
        remove_object(target, archiving.object_keys(b[1])[0]),
        [f"batch {b[1]}: data object {b[1]}.jsonl.gz is missing from {target.url}"])[1],
    "manifest chain broken": lambda db, target, keys, b: (
        forge(db, target, b[2], keys, edit=lambda body: body.update(prev_manifest_sha256=None)),
        [f"batch {b[2]}: the manifest does not name the previous manifest's hash (broken manifest chain)"])[1],
    "manifest signed with HMAC only": lambda db, target, keys, b: (
        forge(db, target, b[2], Keys(hmac_key=keys.hmac_key)),
        [f"batch {b[2]}: the manifest has no Ed25519 signature"])[1],
    "manifest signed with another HMAC key": lambda db, target, keys, b: (
        forge(db, target, b[2], Keys(signing_key=keys.signing_key, hmac_key=os.urandom(32))),
        [f"batch {b[2]}: the manifest's HMAC-SHA-256 does not verify with this key"])[1],
    "data changed, compressed hashes forged": lambda db, target, keys, b: (
        forge(db, target, b[2], keys, lines=changed_price(archived_lines(target, b[2])), record_data_hash=False),
        [f"batch {b[2]}: the data object does not decompress to what was archived"])[1],
    "a line that is no event": lambda db, target, keys, b: (
        forge(db, target, b[2], keys, lines=[*archived_lines(target, b[2])[:-1], '{"not": "an event"}']),
        [f"batch {b[2]}: the data object holds a line that is not a canonical event line"])[1],
    "an event changed": lambda db, target, keys, b: (
        forge(db, target, b[2], keys, lines=changed_price(archived_lines(target, b[2]))),
        [f"batch {b[2]}: block 3's events do not match its hash"])[1],
    "a block header changed": lambda db, target, keys, b: (
        forge(db, target, b[2], keys, edit=lambda body: body["blocks"][0].update(prev_hash="00" * 32)),
        [f"batch {b[2]}: block 3's header does not match its hash"])[1],
    "a block relinked": lambda db, target, keys, b: (
        forge(db, target, b[2], keys, edit=lambda body: rehash_block(body, prev_hash=bytes(32))),
        [f"batch {b[2]}: block 3 does not link to block 2"])[1],
    "a block rewritten consistently": lambda db, target, keys, b: (
        forge(db, target, b[2], keys, lines=changed_price(archived_lines(target, b[2])),
              edit=lambda body: rehash_block(body, changed_price(archived_lines(target, b[2])))),
        [f"batch {b[2]}: block 3 differs from the database's block row"])[1],
    "an event duplicated": lambda db, target, keys, b: (
        forge(db, target, b[2], keys, lines=[*archived_lines(target, b[2]), archived_lines(target, b[2])[0]]),
        [f"batch {b[2]}: the data object holds seq {line_seq(target, b[2], 0)} repeated, out of order or outside its blocks"])[1],
    "two events swapped": lambda db, target, keys, b: (
        forge(db, target, b[2], keys, lines=swapped(archived_lines(target, b[2]))),
        [f"batch {b[2]}: the data object holds seq {line_seq(target, b[2], 1)} repeated, out of order or outside its blocks"])[1],
    "a batch removed from the record and the storage": lambda db, target, keys, b: (
        db.execute("DELETE FROM audit.archive_batches WHERE batch_id = %s", (b[1],)),
        [remove_object(target, key) for key in archiving.object_keys(b[1])],
        [f"gap: blocks 2..2 are in no archive batch (between {b[0]} and {b[2]})",
         f"batch {b[2]}: the manifest does not name the previous manifest's hash (broken manifest chain)",
         f"batch {b[1]} is named by an audit.archived or audit.archive_deleted event but not recorded: its events"
         " may be in no archive"])[2],
    "the first hot block relinked": lambda db, target, keys, b: (
        tamper_chain(db, "UPDATE audit.blocks SET prev_hash = sha256('elsewhere') WHERE block_no = 4"),
        ["the first hot block 4 does not link to the last archived block 3"])[1],
}


@pytest.mark.parametrize("tampering", TAMPERING)
def test_archive_verify_names_each_problem(db: psycopg.Connection, maintainer: psycopg.Connection,
                                           tmp_path: Path, keys: Keys, tampering: str) -> None:
    """Each check of `archive verify` (docs/archive.md: hashes, signatures, the manifest chain, each block's
    events, header and link, the database's block rows, gaps, the link to the first hot block), each
    reached past the checks before it, and its exact words."""
    make_blocks(db, 4)
    set_batch_size(db, 5)
    target = open_target(f"file://{tmp_path}/archive")
    batches = [b.batch_id for b in archiving.archive(maintainer, target, keys, older_than=DUE, max_batches=3).batches]
    assert batches == [f"blocks-00000000000{n}-00000000000{n}" for n in (1, 2, 3)]
    checking = Keys(public_key=keys.public_key, hmac_key=keys.hmac_key)
    assert archiving.verify_archive(maintainer, target, checking).problems == []
    expected = TAMPERING[tampering](db, target, keys, batches)
    checked = archiving.verify_archive(maintainer, target, checking)
    assert checked.problems == expected
    assert not checked.ok


def test_unarchived_events_cannot_be_deleted(db: psycopg.Connection, maintainer: psycopg.Connection,
                                             connect: Connect) -> None:
    make_blocks(db, 2)
    planned = maintainer.execute("SELECT batch_id FROM audit.next_archive_batch('1 millisecond')").fetchone()
    assert planned is not None
    for batch_id in (planned[0], "blocks-000000000001-000000000002", "nonsense", None):
        with pytest.raises(NotArchived, match="refusing to delete events that no recorded archive batch covers"):
            from pgaudit_py.errors import translated
            with translated():
                maintainer.execute("SELECT audit.delete_archived(%s)", (batch_id,))
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (10,)
    for role in ("app_reader", "app_writer", "app_attacker"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connect(role).execute("SELECT audit.delete_archived(%s)", (planned[0],))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connect(role).execute("SELECT audit.record_archive_batch(%s, 'x', 1, 1, '\\x00', '\\x00',"
                                  " '\\x00', NULL)", (planned[0],))
    assert db.execute("SELECT batch_id, state FROM audit.archive_batches").fetchall() == [(planned[0], "planned")]
    assert db.execute("SELECT (SELECT count(*) FROM audit.event_log), (SELECT count(*) FROM audit.prune_points)"
                      ).fetchone() == (10, 0)


def archive_state(db: psycopg.Connection) -> list[object]:
    """Everything an archive function could change."""
    return [db.execute(query).fetchall() for query in (
        "SELECT * FROM audit.archive_batches ORDER BY first_block", "SELECT * FROM audit.archive_settings",
        "SELECT * FROM audit.archive_claim", "SELECT batch_id, seq, event FROM audit.restored_events ORDER BY 1, 2",
        "SELECT * FROM audit.prune_points", "SELECT (SELECT count(*) FROM audit.event_intake),"
        " (SELECT count(*) FROM audit.event_log)")]


@pytest.mark.parametrize("role", ["app_reader", "app_writer"])
def test_the_reader_and_the_writer_may_call_no_archive_function(db: psycopg.Connection, connect: Connect,
                                                               maintainer: psycopg.Connection, tmp_path: Path,
                                                               keys: Keys, role: str) -> None:
    """The roles table: archiving is the maintainer's. Each function of sql/55_archive.sql is tried
    while it would have something to do (a batch planned, then one recorded, one restored, the day's
    run and the claim free), and must be refused before it changes anything."""
    make_blocks(db, 3)
    set_batch_size(db, 5)
    target = open_target(f"file://{tmp_path}/archive")
    first = archiving.archive(maintainer, target, keys, older_than=DUE, max_batches=1).batches[0].batch_id
    assert archiving.restore_batch(maintainer, target, first) == 5
    hour = db.execute("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')::int").fetchone()
    assert hour is not None
    db.execute("SELECT audit.set_archive_settings('90 days', 5, %s)", (hour[0],))  # the day's run is due
    planned = maintainer.execute("SELECT batch_id FROM audit.next_archive_batch('1 millisecond')").fetchone()
    assert planned is not None
    second = planned[0]
    record_it = ("SELECT * FROM audit.record_archive_batch(%s, 'file:///elsewhere', 1, 1, '\\x01', '\\x02',"
                 " '\\x03', NULL)", (second,))
    calls: dict[str, tuple[str, tuple[object, ...]]] = {
        "set_archive_settings": ("SELECT * FROM audit.set_archive_settings('1 day', 1, NULL)", ()),
        "next_archive_batch": ("SELECT * FROM audit.next_archive_batch('1 millisecond')", ()),
        "record_archive_batch": record_it,
        "delete_archived": ("SELECT audit.delete_archived(%s)", (second,)),
        "restore_archive_batch": ("SELECT audit.restore_archive_batch(%s, ARRAY['{}']::jsonb[])", (first,)),
        "drop_restored_batch": ("SELECT audit.drop_restored_batch(%s)", (first,)),
        "claim_daily_archive_run": ("SELECT audit.claim_daily_archive_run()", ()),
        "claim_archiver": ("SELECT audit.claim_archiver()", ()),
        "release_archiver": ("SELECT audit.release_archiver()", ()),
        "_archiver_alive": ("SELECT audit._archiver_alive(ROW(true, pg_backend_pid(), 'x', 1, now())::audit.archive_claim)",
                            ()),
        "archive_lines": ("SELECT * FROM audit.archive_lines(1, 15)", ()),
    }
    defined = set(re.findall(r"CREATE OR REPLACE FUNCTION @schema@\.(\w+)\(",
                             (Path(__file__).parents[1] / "sql" / "55_archive.sql").read_text()))
    assert set(calls) == defined  # every function of the file is tried
    if role == "app_reader":
        del calls["archive_lines"]  # the reader's, per the roles table: it reads the canonical lines
    conn = connect(role)

    def refused_everything() -> None:
        before = archive_state(db)
        for name, (query, params) in calls.items():
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match=name):
                conn.execute(query, params)
        assert archive_state(db) == before

    refused_everything()  # with a batch planned
    maintainer.execute(*record_it)
    assert db.execute("SELECT state FROM audit.archive_batches WHERE batch_id = %s", (second,)).fetchone() == (
        "recorded",)
    refused_everything()  # with a batch recorded, its events not yet deleted
    assert maintainer.execute("SELECT audit.delete_archived(%s)", (second,)).fetchone() == (5,)  # the maintainer may


CLAIM = "SELECT pid, claimed_by FROM audit.archive_claim"


def test_two_archivers_at_once_one_skips(db: psycopg.Connection, connect: Connect, target: Target,
                                         keys: Keys) -> None:
    make_blocks(db, 1)
    first = connect("app_maintainer")
    second: list[archiving.ArchiveRun] = []

    def meanwhile(step: str) -> None:
        if step == "planned" and not second:
            assert db.execute(CLAIM).fetchone() == (first.info.backend_pid, "app_maintainer")
            second.append(archiving.archive(connect("app_maintainer"), target, keys, older_than=DUE))

    run = archiving.archive(first, target, keys, older_than=DUE, hook=meanwhile)
    assert second[0].skipped and second[0].batches == []
    assert not run.skipped and run.events == 5
    assert db.execute(CLAIM).fetchone() == (None, None)  # released
    assert db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)


# The advisory-lock key that releases before 0.2 kept archivers apart by: any role that may connect
# can take it.
OLD_ARCHIVE_LOCK = 0x70_67_61_72


def test_a_stranger_holding_the_old_archive_key_does_not_stop_archiving(db: psycopg.Connection, connect: Connect,
                                                                       maintainer: psycopg.Connection,
                                                                       tmp_path: Path, keys: Keys) -> None:
    make_blocks(db, 1)
    stranger = connect("app_attacker")  # CONNECT, nothing else
    stranger.execute("SELECT pg_advisory_lock(%s)", (OLD_ARCHIVE_LOCK,))
    run = archiving.archive(maintainer, open_target(f"file://{tmp_path}/archive"), keys, older_than=DUE)
    assert not run.skipped and run.events == 5
    assert db.execute("SELECT state FROM audit.archive_batches").fetchall() == [("deleted",)]
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (0,)
    assert db.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s",
                      (OLD_ARCHIVE_LOCK,)).fetchall() == [(stranger.info.backend_pid,)]  # held all along
    # Nor can it hold the claim that replaced the lock.
    for attempt in ("SELECT audit.claim_archiver()", "SELECT * FROM audit.archive_claim FOR UPDATE"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            stranger.execute(attempt)
    assert db.execute(CLAIM).fetchone() == (None, None)


def wait_until_gone(db: psycopg.Connection, pid: int) -> None:
    for _ in range(200):
        if db.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (0,):
            return
        time.sleep(0.05)
    raise AssertionError(f"backend {pid} still there")


@pytest.mark.parametrize("end", ["close", "terminate"])
def test_a_claim_whose_backend_is_gone_is_taken_over(db: psycopg.Connection, connect: Connect,
                                                     maintainer: psycopg.Connection, tmp_path: Path, keys: Keys,
                                                     end: str) -> None:
    """An archiver that died without releasing its claim (killed, or its connection lost) leaves the
    claim behind; the next run takes it over once that backend is gone, and not before."""
    make_blocks(db, 1)
    target = open_target(f"file://{tmp_path}/archive")
    gone = connect("app_maintainer")
    assert gone.execute("SELECT audit.claim_archiver()").fetchone() == (True,)
    pid = gone.info.backend_pid
    assert archiving.archive(maintainer, target, keys, older_than=DUE).skipped  # alive: its claim holds
    if end == "close":
        gone.close()
    else:
        db.execute("SELECT pg_terminate_backend(%s)", (pid,))
    wait_until_gone(db, pid)
    assert db.execute(CLAIM).fetchone() == (pid, "app_maintainer")  # left behind
    run = archiving.archive(maintainer, target, keys, older_than=DUE)
    assert not run.skipped and run.events == 5
    assert db.execute(CLAIM).fetchone() == (None, None)


def test_a_reused_pid_is_not_the_claims_backend(db: psycopg.Connection, connect: Connect,
                                                maintainer: psycopg.Connection, tmp_path: Path, keys: Keys) -> None:
    """A new backend may get the pid of a dead claimer; only the backend that claimed holds the claim's
    beacon. Whoever else holds the beacon's key (any role may lock any key) does not count either."""
    make_blocks(db, 2)
    set_batch_size(db, 5)
    target = open_target(f"file://{tmp_path}/archive")
    same_role = connect("app_maintainer")  # as if it got the pid of a claimer that died
    db.execute("UPDATE audit.archive_claim SET pid = %s, claimed_by = 'app_maintainer', beacon = 42,"
               " claimed_at = now()", (same_role.info.backend_pid,))
    run = archiving.archive(maintainer, target, keys, older_than=DUE, max_batches=1)
    assert not run.skipped and run.events == 5
    stranger = connect("app_attacker")
    stranger.execute("SELECT pg_advisory_lock(42)")
    db.execute("UPDATE audit.archive_claim SET pid = %s, claimed_by = 'app_maintainer', beacon = 42,"
               " claimed_at = now()", (stranger.info.backend_pid,))
    run = archiving.archive(maintainer, target, keys, older_than=DUE)
    assert not run.skipped and run.events == 5
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (0,)


def test_the_worker_archives_once_a_day_at_its_hour(db: psycopg.Connection, maintainer: psycopg.Connection,
                                                    target: Target, keys: Keys) -> None:
    make_blocks(db, 1)
    assert archiving.archive_if_due(maintainer, target, keys) is None  # no hour configured
    hour = db.execute("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')::int").fetchone()
    assert hour is not None
    db.execute("SELECT audit.set_archive_settings('1 millisecond', 1000, %s)", (hour[0],))
    done = archiving.archive_if_due(maintainer, target, keys)
    assert done is not None and done.events == 5
    make_blocks(db, 1)
    assert archiving.archive_if_due(maintainer, target, keys) is None  # once a day
    assert db.execute("SELECT last_run_on = (now() AT TIME ZONE 'UTC')::date FROM audit.archive_settings"
                      ).fetchone() == (True,)


def test_path_style_addressing_comes_from_the_aws_config_file(aws: str, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # "localhost" would be reached as bucket.localhost in virtual-host style: only path style works.
    config = tmp_path / "aws-config"
    config.write_text("[default]\ns3 =\n    addressing_style = path\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.replace("127.0.0.1", "localhost"))
    made = open_target("s3://path-style/x")
    assert isinstance(made, S3Target)
    made.client.create_bucket(Bucket="path-style")
    write_object(made, "k", b"v")
    assert read_object(made, "k") == b"v" and made.list_keys() == ["k"]
    assert made.client.meta.config.s3 == {"addressing_style": "path"}


@pytest.mark.parametrize("url", ["s3://KEY:Sekr3t-in-url@bucket/p", "s3:KEY:Sekr3t-in-url@bucket/p",
                                 "s3:/KEY:Sekr3t-in-url@bucket", "ftp:u:Sekr3t-in-url@h", "s3://KEY:Sekr3t-in-url\uff20b",
                                 "s3://bucket/p?X-Amz-Security-Token=Sekr3t-in-url", "file:///tmp/x#Sekr3t-in-url",
                                 "file://u:Sekr3t-in-url@/tmp/x", "Sekr3t-in-url", "s3://KEY%3ASekr3t-in-url%40bucket/p",
                                 "s3://[KEY:Sekr3t-in-url@bucket/p"])
def test_an_archive_url_is_never_repeated_by_its_refusal(url: str) -> None:
    """A URL may hold a credential where no parse finds it; a target reads none from it, and the log
    records the target (tests/test_trust_attacks_114.py, s3)."""
    with pytest.raises(InvalidArgument) as refused:
        open_target(url)
    assert "Sekr3t" not in f"{refused.value} {refused.value.hint}"


def test_an_archive_url_with_an_at_sign_in_its_path_is_a_directory(tmp_path: Path) -> None:
    made = open_target(f"file://{tmp_path}/a@b")
    assert isinstance(made, FileTarget) and made.url == f"file://{tmp_path}/a@b"


def key_files(directory: Path) -> tuple[Path, Path]:
    """A new Ed25519 key pair written as PEM files, as the CLI reads them: (signing, public)."""
    private = Ed25519PrivateKey.generate()
    signing, public = directory / "sign.pem", directory / "pub.pem"
    signing.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    public.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
    return signing, public


def test_command_line(db: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_blocks(db, 3)
    set_batch_size(db, 5)
    signing, public = key_files(tmp_path)
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_maintainer"
    monkeypatch.setenv("PGAUDIT_ARCHIVE_URL", f"file://{tmp_path}/archive")

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, ["archive", *args, "--dsn", dsn], catch_exceptions=False)
        assert "Traceback" not in result.output + result.stderr
        return result.exit_code, result.stdout, result.stderr

    code, out, err = run("run", "--older-than", "1s", "--signing-key", str(signing))
    assert code == 0 and "archived 0 batches" in out  # nothing a second old yet
    db.execute("SELECT pg_sleep(1.1)")
    assert run("run", "--max-batches", "2")[0] == 2  # unsigned manifests are refused
    code, out, err = run("run", "--older-than", "1s", "--max-batches", "2", "--signing-key", str(signing))
    assert code == 0 and "archived 2 batches, 10 events" in out and "blocks-000000000001-000000000001" in err
    code, out, _ = run("list")
    assert code == 0 and "blocks-000000000002-000000000002" in out and "deleted" in out
    code, out, _ = run("verify", "--public-key", str(public))
    assert code == 0 and "archived through block 2 (seq 10); hot from block 3 (seq 11)" in out
    code, out, _ = run("restore", "--batch", "blocks-000000000002-000000000002")
    assert code == 0 and "restored 5 events" in out
    (tmp_path / "archive" / "blocks-000000000001-000000000001.manifest.json").unlink()
    code, out, err = run("verify", "--public-key", str(public))
    assert code == 1 and "batch blocks-000000000001-000000000001: manifest" in err
    code, out, _ = run("settings", "--hot-retention", "30d", "--run-hour", "3")
    assert code == 0 and out.startswith("hot retention 30 days, 5 events per batch, worker archives at 03:00 UTC")
    result = CliRunner().invoke(cli, ["verify", "--dsn", dsn.replace("app_maintainer", i.user)])
    assert result.exit_code == 0 and "archived through block 2 (seq 10); hot history starts at block 3" in result.output


def test_command_line_says_what_it_counted_and_that_nothing_is_hot(db: psycopg.Connection, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """One batch of one event, archived whole: "1 batch, 1 event", and no "hot from block None"."""
    record(db, "order.created", tenant_id="t1")
    seal(db)
    set_batch_size(db, 1)
    signing, public = key_files(tmp_path)
    dsn = f"host={db.info.host} port={db.info.port} dbname={db.info.dbname} user=app_maintainer"
    monkeypatch.setenv("PGAUDIT_ARCHIVE_URL", f"file://{tmp_path}/archive")

    def run(*args: str) -> str:
        result = CliRunner().invoke(cli, ["archive", *args, "--dsn", dsn], catch_exceptions=False)
        assert result.exit_code == 0, result.output + result.stderr
        return result.stdout

    assert "no batch has left the live log yet" in run("verify", "--public-key", str(public))
    db.execute("SELECT pg_sleep(1.1)")
    assert "archived 1 batch, 1 event, to" in run("run", "--older-than", "1s", "--signing-key", str(signing))
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (0,)
    out = run("verify", "--public-key", str(public))
    assert "checked 1 batch, 1 event in" in out
    assert "archived through block 1 (seq 1); no sealed block after it" in out and "None" not in out


@pytest.mark.parametrize("sse", ["AES256", "aws:kms"])
def test_server_side_encryption_is_asked_for(aws: str, sse: str) -> None:
    bucket = f"encrypted-{uuid.uuid4().hex[:8]}"
    made = open_target(f"s3://{bucket}/audit", sse=sse)
    assert isinstance(made, S3Target)
    made.client.create_bucket(Bucket=bucket)
    write_object(made, "k", b"v")
    assert made.client.head_object(Bucket=bucket, Key="audit/k")["ServerSideEncryption"] == sse


def test_the_worker_process_archives_at_its_hour(db: psycopg.Connection, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    hmac_key = tmp_path / "hmac.key"
    hmac_key.write_bytes(os.urandom(32))
    hour = db.execute("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')::int").fetchone()
    assert hour is not None
    db.execute("SELECT audit.set_archive_settings('1 millisecond', 5, %s)", (hour[0],))
    make_blocks(db, 2)
    i = db.info
    worker = subprocess.Popen(
        [sys.executable, "-m", "pgaudit_py.cli", "worker", "--interval", "0.05", "--dsn",
         f"host={i.host} port={i.port} dbname={i.dbname} user=app_maintainer",
         "--archive-target", f"file://{tmp_path}/archive", "--hmac-key-file", str(hmac_key)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # The worker seals its own archive events only after it has reported the run: once they are
        # sealed, the report is out (waiting for the batches alone could interrupt it mid-report).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and db.execute(
                "SELECT count(*) FROM audit.event_log WHERE kind = 'audit.archive_deleted'").fetchone() != (2,):
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGINT)
        out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    assert db.execute("SELECT count(*) FROM audit.archive_batches WHERE state = 'deleted'").fetchone() == (2,)
    assert "archived 2 batches, 11 events" in out and "Traceback" not in err  # the settings change too
    assert archiving.verify_archive(db, open_target(f"file://{tmp_path}/archive"),
                                    Keys(hmac_key=hmac_key.read_bytes())).ok


@pytest.mark.parametrize("step", ["planned", "data_stored", "manifest_stored", "recorded"])
def test_prune_leaves_the_blocks_of_an_unfinished_archive_batch_alone(
        db: psycopg.Connection, maintainer: psycopg.Connection, tmp_path: Path, keys: Keys, step: str) -> None:
    """A prune between a crashed archive run and the next one used to take the planned batch's
    blocks, and every later archive run then failed ("block 1 does not verify"): stuck for good."""
    target = open_target(f"file://{tmp_path}/archive")
    make_blocks(db, 4)
    set_batch_size(db, 10)

    def crash(at: str) -> None:
        if at == step:
            raise Crash(at)

    with pytest.raises(Crash):
        archiving.archive(maintainer, target, keys, older_than=DUE, hook=crash)
    assert prune_events(maintainer, DUE).deleted == 0  # blocks 1-2 are the archive's until it is done
    assert preview_prune(maintainer, DUE).events == 0
    run = archiving.archive(maintainer, target, keys, older_than=DUE)
    assert [b.batch_id for b in run.batches] == ["blocks-000000000001-000000000002",
                                                 "blocks-000000000003-000000000004"]
    assert archiving.verify_archive(db, target, keys).ok
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)


def test_restore_refuses_made_up_events_called_directly(db: psycopg.Connection, maintainer: psycopg.Connection,
                                                        target: Target, keys: Keys) -> None:
    """The maintainer may call restore_archive_batch without the tool, which checks the objects'
    recorded hashes: the function itself must hold the lines to the chain's events_hash."""
    make_blocks(db, 3)
    set_batch_size(db, 10)
    archiving.archive(maintainer, target, keys, older_than=DUE, max_batches=1)
    batch = "blocks-000000000001-000000000002"
    key = next(k for k in target.list_keys() if k.endswith(".jsonl.gz"))
    lines = gzip.decompress(read_object(target, key) or b"").decode().splitlines()
    assert len(lines) == 10
    forged = [json.loads(line) for line in lines]
    forged[3]["payload"] = {"price": 0}  # one event changed, the rest as archived
    swapped = [json.loads(line) for line in lines]
    swapped[2]["seq"], swapped[3]["seq"] = swapped[3]["seq"], swapped[2]["seq"]
    for events in (forged, swapped):
        with pytest.raises(psycopg.Error) as refused:
            maintainer.execute("SELECT audit.restore_archive_batch(%s, %s::jsonb[])",
                               (batch, [json.dumps(e) for e in events]))
        assert refused.value.sqlstate == "PA005" and "do not hash to its blocks" in str(refused.value)
    assert db.execute("SELECT count(*) FROM audit.restored_events").fetchone() == (0,)
    assert maintainer.execute("SELECT audit.restore_archive_batch(%s, %s::jsonb[])", (batch, lines)).fetchone() == (10,)
    assert db.execute("SELECT count(*) FROM audit.restored_events").fetchone() == (10,)


def test_a_prune_and_an_archive_planning_take_turns(db: psycopg.Connection, connect: Connect) -> None:
    """A batch planned while a prune is uncommitted would name blocks whose events the prune
    deletes, and a prune beside an uncommitted plan would delete the plan's blocks: each waits
    for the other, then sees what the other did."""
    make_blocks(db, 4)
    set_batch_size(db, 10)
    pruner = connect("app_maintainer", autocommit=False)
    assert pruner.execute("SELECT deleted FROM audit.prune_events('1 millisecond', 10)").fetchone() == (10,)
    impatient = connect("app_maintainer", options="-c lock_timeout=300ms")
    with pytest.raises(psycopg.errors.LockNotAvailable):
        impatient.execute("SELECT * FROM audit.next_archive_batch('1 millisecond')")

    planner = connect("app_maintainer", autocommit=False)
    planned: list[tuple[Any, ...]] = []
    waiting = threading.Thread(target=lambda: planned.append(planner.execute(
        "SELECT first_block, last_block FROM audit.next_archive_batch('1 millisecond')").fetchone()))
    waiting.start()
    time.sleep(0.3)
    assert not planned, "planning did not wait for the prune"
    pruner.commit()
    waiting.join(10)
    assert planned == [(3, 4)]  # after the pruned blocks, not over them

    with pytest.raises(psycopg.errors.LockNotAvailable):
        impatient.execute("SELECT * FROM audit.prune_events('1 millisecond', 10)")
    planner.commit()
    assert impatient.execute("SELECT deleted FROM audit.prune_events('1 millisecond', 10)").fetchone() == (0,)
    assert db.execute("SELECT min(seq), count(*) FROM audit.event_log WHERE kind = 'order.created'").fetchone() \
        == (11, 10)


def test_a_batch_streams_through_the_archiver_one_event_at_a_time(db: psycopg.Connection, attacker: psycopg.Connection,
                                                                  maintainer: psycopg.Connection, tmp_path: Path,
                                                                  keys: Keys) -> None:
    """A batch far larger than the archiver's memory archives and verifies: the lines travel one at a
    time from the database through gzip and hashes into a temporary file, and back. Python's own
    allocations are counted (a local target: moto's S3 would keep the objects in this process); the
    old archiver held the batch three times over."""
    target = open_target(f"file://{tmp_path}/archive")
    attacker.execute("CREATE TABLE public.docs (id int PRIMARY KEY, body text)")
    enable_tracking(maintainer, "public.docs")
    for i in range(40):  # 800 KiB a row image that does not compress (values past 1 MiB are hashed)
        attacker.execute("INSERT INTO public.docs VALUES (%s, %s)", (i, base64.b64encode(os.urandom(600 << 10)).decode()))
    seal(db)
    set_batch_size(db, 1000)
    tracemalloc.start()
    try:
        run = archiving.archive(maintainer, target, keys, older_than=DUE)
        archived_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        checked = archiving.verify_archive(maintainer, target, keys)
        verify_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert run.batches[0].data_bytes is not None and run.batches[0].data_bytes > 30 << 20
    assert checked.ok and checked.events_checked == run.events, checked.problems
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 'public.docs.insert'").fetchone() == (0,)
    assert archived_peak < 12 << 20, f"the archive run held {archived_peak >> 20} MiB"
    assert verify_peak < 12 << 20, f"verifying held {verify_peak >> 20} MiB"


def test_a_gzip_bomb_under_a_batch_key_costs_nothing_to_refuse(db: psycopg.Connection, maintainer: psycopg.Connection,
                                                               target: Target, keys: Keys) -> None:
    """Keys are predictable: what sits under one is sized before it is read, and decompressed no
    further than the batch's own data could be."""
    make_blocks(db, 1)
    bomb = gzip.compress(bytes(256 << 20), compresslevel=9)  # 256 MiB of zeros in about 250 KiB
    write_object(target, "blocks-000000000001-000000000001.jsonl.gz", bomb)
    with pytest.raises(archiving.ArchiveConflict, match="exists with different content"):
        archiving.archive(maintainer, target, keys, older_than=DUE)
    assert db.execute("SELECT state FROM audit.archive_batches").fetchall() == [("planned",)]
    with tempfile.TemporaryFile() as f:  # one within the size bound is read only as far as the data's size
        f.write(gzip.compress(bytes(64 << 20), compresslevel=9))
        assert archiving._gunzipped_digest(f, 1000).size <= 1000 + (1 << 20)


def test_the_block_matcher_keeps_no_line_of_a_block(db: psycopg.Connection) -> None:
    line = b'{"v": 2, "id": null, "seq": 1, "x": 1}'
    n = 200_000
    digests = hashlib.sha256(b"".join(hashlib.sha256(line).digest() for _ in range(n))).digest()
    block = Block(1, 1, n, n, digests, bytes(32), bytes(32))
    matcher = archiving._BlockMatcher([block])
    tracemalloc.start()
    try:
        for seq in range(1, n + 1):
            matcher.add(seq, line)
        matcher.finish()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert matcher.mismatched == [] and matcher.stray is None
    assert peak < 1 << 20, f"{peak} bytes for one block of {n} lines"


def test_parts_of_an_interrupted_s3_upload_are_aborted_before_the_key_is_written(aws: str) -> None:
    bucket = f"audit-{uuid.uuid4().hex[:12]}"
    made = open_target(f"s3://{bucket}/p")
    assert isinstance(made, S3Target)
    made.client.create_bucket(Bucket=bucket)
    started = made.client.create_multipart_upload(Bucket=bucket, Key="p/k.jsonl.gz")  # then a crash
    made.client.upload_part(Bucket=bucket, Key="p/k.jsonl.gz", UploadId=started["UploadId"], PartNumber=1,
                            Body=bytes(5 << 20))
    write_object(made, "k.jsonl.gz", b"whole")
    assert made.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert read_object(made, "k.jsonl.gz") == b"whole"


def test_a_local_target_reports_storage_errors_as_storage_errors(tmp_path: Path) -> None:
    target = open_target(f"file://{tmp_path}/archive")
    (tmp_path / "archive" / "k.jsonl.gz").mkdir(parents=True)  # something else where an object goes
    with pytest.raises(StorageError, match="reading k.jsonl.gz from"):
        target.download("k.jsonl.gz", io.BytesIO())
    with pytest.raises(StorageError, match="storing k.jsonl.gz in"):
        write_object(target, "k.jsonl.gz", b"x")
