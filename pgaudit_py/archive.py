"""Cold archival: whole sealed blocks leave the log for object storage as signed batches.

For each batch: the events as gzip JSONL in the canonical form (so the chain re-verifies from
the file alone), then a manifest (ranges, sizes, hashes, the block headers, the previous
manifest's hash, signatures with the checkpoint keys). Both objects are read back and checked,
the batch is recorded in the database, and only then are its events deleted from the log.

Crash safety: the database plans a batch (fixes its block range) before anything is uploaded,
and object keys derive from that range; every step is idempotent, so a re-run after a crash at
any point completes the same batch. Identical content under a key is reused; different content
is a hard error (ArchiveConflict).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from pgaudit_py import canonical
from pgaudit_py.archive_targets import Target
from pgaudit_py.calls import function_call, table_read
from pgaudit_py.chain import Block, read_blocks
from pgaudit_py.checkpoint import Keys, sign, signature_problems
from pgaudit_py.errors import ArchiveConflict, ArchiveIntegrityError, InvalidArgument, StorageError, translated
from pgaudit_py.transactions import require_no_transaction

log = logging.getLogger("pgaudit_py.archive")
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ArchiveBatch:
    batch_id: str
    first_block: int
    last_block: int
    first_seq: int
    last_seq: int
    event_count: int
    state: str
    target: str | None
    data_bytes: int | None
    gz_bytes: int | None
    data_sha256: bytes | None
    gz_sha256: bytes | None
    manifest_sha256: bytes | None
    prev_manifest_sha256: bytes | None
    planned_at: datetime
    archived_at: datetime | None
    archived_by: str | None
    deleted_at: datetime | None

    @property
    def data_object(self) -> str:
        return object_keys(self.batch_id)[0]

    @property
    def manifest_object(self) -> str:
        return object_keys(self.batch_id)[1]


@dataclass
class ArchiveRun:
    batches: list[ArchiveBatch] = field(default_factory=list)
    events: int = 0
    skipped: bool = False  # another archiver holds the claim


@dataclass
class ArchiveVerification:
    problems: list[str] = field(default_factory=list)
    batches_checked: int = 0
    events_checked: int = 0
    archived_through_block: int | None = None
    archived_through_seq: int | None = None
    hot_from_block: int | None = None
    hot_from_seq: int | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def object_keys(batch_id: str) -> tuple[str, str]:
    return f"{batch_id}.jsonl.gz", f"{batch_id}.manifest.json"


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def _batch(conn: psycopg.Connection, schema: str, batch_id: str) -> ArchiveBatch | None:
    rows = table_read(schema, "archive_batches", ArchiveBatch, where="batch_id = %s", params=(batch_id,)).all(conn)
    return rows[0] if rows else None


def list_batches(conn: psycopg.Connection, *, audit_schema: str = "audit") -> list[ArchiveBatch]:
    return table_read(audit_schema, "archive_batches", ArchiveBatch, order_by="first_block").all(conn)


def _batch_lines(conn: psycopg.Connection, schema: str, batch: ArchiveBatch) -> tuple[list[str], list[Block]]:
    """The batch's canonical lines (as the chain hashed them), checked here against its blocks
    before anything leaves."""
    blocks = read_blocks(conn, schema, batch.first_block, batch.last_block)
    if len(blocks) != batch.last_block - batch.first_block + 1:
        raise ArchiveIntegrityError(f"batch {batch.batch_id}: blocks are missing from the chain; run pgaudit verify")
    rows = conn.execute(sql.SQL("SELECT seq, line FROM {}.archive_lines(%s, %s)").format(sql.Identifier(schema)),
                        (batch.first_seq, batch.last_seq)).fetchall()
    by_seq: dict[int, str] = {int(seq): str(line) for seq, line in rows}
    for block in blocks:
        mine = [by_seq[s] for s in range(block.first_seq, block.last_seq + 1) if s in by_seq]
        if len(mine) != block.event_count or canonical.events_hash(mine) != block.events_hash:
            raise ArchiveIntegrityError(f"block {block.block_no} does not verify; not archiving it "
                                        "(run pgaudit verify)")
    return [line for _, line in rows], blocks


def build_manifest(batch: ArchiveBatch, blocks: list[Block], data: bytes, gz: bytes, prev_manifest: bytes | None,
                   keys: Keys, schema: str) -> bytes:
    """The manifest's bytes: deterministic, so that a re-run writes the same object."""
    data_object, _ = object_keys(batch.batch_id)
    body = {
        "v": MANIFEST_VERSION, "canonical_version": canonical.VERSION, "schema": schema,
        "batch_id": batch.batch_id, "first_block": batch.first_block, "last_block": batch.last_block,
        "first_seq": batch.first_seq, "last_seq": batch.last_seq, "event_count": batch.event_count,
        "data_object": data_object, "data_bytes": len(data), "data_sha256": _sha256(data).hex(),
        "gz_bytes": len(gz), "gz_sha256": _sha256(gz).hex(),
        "first_block_prev_hash": blocks[0].prev_hash.hex(), "last_block_hash": blocks[-1].block_hash.hex(),
        "blocks": [{"block_no": b.block_no, "first_seq": b.first_seq, "last_seq": b.last_seq,
                    "event_count": b.event_count, "events_hash": b.events_hash.hex(),
                    "prev_hash": b.prev_hash.hex(), "block_hash": b.block_hash.hex()} for b in blocks],
        "prev_manifest_sha256": prev_manifest.hex() if prev_manifest else None,
    }
    return (canonical.dumps({"manifest": body, "signatures": sign(body, keys)}) + "\n").encode()


def _store(target: Target, key: str, data: bytes, same: Callable[[bytes], bool]) -> bytes:
    """Store `data` under `key` unless an equivalent object is there; returns what is stored."""
    existing = target.get(key)
    if existing is not None:
        if not same(existing):
            raise ArchiveConflict(f"{target.url}: {key} exists with different content; archiving stopped "
                                  "(nothing was overwritten; find out who wrote it)")
        return existing
    try:
        target.put(key, data)
    except StorageError:
        # The store may have kept the object although the request failed: identical content is fine.
        existing = target.get(key)
        if existing is None or not same(existing):
            raise
        log.warning("storing %s reported an error, but the object is stored intact", key)
    return data


def _gunzip(data: bytes) -> bytes | None:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError):
        return None


def _previous_manifest(conn: psycopg.Connection, schema: str, batch: ArchiveBatch) -> bytes | None:
    row = conn.execute(sql.SQL("SELECT manifest_sha256 FROM {}.archive_batches WHERE state <> 'planned'"
                               " AND last_block < %s ORDER BY last_block DESC LIMIT 1").format(sql.Identifier(schema)),
                       (batch.first_block,)).fetchone()
    return bytes(row[0]) if row else None


def _confirm(target: Target, key: str, size: int, digest: bytes) -> None:
    stored = target.get(key)
    if stored is None:
        raise StorageError(f"{target.url}: {key} is not there after upload")
    if len(stored) != size or _sha256(stored) != digest:
        raise StorageError(f"{target.url}: {key} does not hold what was uploaded ({len(stored)} bytes)")


def _upload(conn: psycopg.Connection, target: Target, keys: Keys, schema: str, batch: ArchiveBatch,
            hook: Callable[[str], None]) -> ArchiveBatch:
    lines, blocks = _batch_lines(conn, schema, batch)
    data = "".join(line + "\n" for line in lines).encode()
    data_key, manifest_key = batch.data_object, batch.manifest_object
    gz = _store(target, data_key, gzip.compress(data, compresslevel=6, mtime=0),
                lambda existing: _gunzip(existing) == data)
    hook("data_stored")
    prev = _previous_manifest(conn, schema, batch)
    manifest = build_manifest(batch, blocks, data, gz, prev, keys, schema)
    _store(target, manifest_key, manifest, lambda existing: existing == manifest)
    hook("manifest_stored")
    _confirm(target, data_key, len(gz), _sha256(gz))
    _confirm(target, manifest_key, len(manifest), _sha256(manifest))
    recorded = function_call(schema, "record_archive_batch", ArchiveBatch, {
        "batch_id": "text", "target": "text", "data_bytes": "bigint", "gz_bytes": "bigint", "data_sha256": "bytea",
        "gz_sha256": "bytea", "manifest_sha256": "bytea", "prev_manifest_sha256": "bytea"},
        (batch.batch_id, target.url, len(data), len(gz), _sha256(data), _sha256(gz), _sha256(manifest), prev)).one(conn)
    return recorded


def archive(conn: psycopg.Connection, target: Target, keys: Keys, *, older_than: timedelta | None = None,
            max_batches: int | None = None, audit_schema: str = "audit",
            on_batch: Callable[[ArchiveBatch], None] | None = None,
            hook: Callable[[str], None] = lambda step: None) -> ArchiveRun:
    """Archive due batches (maintainer role, autocommit connection); returns what went.

    `hook(step)` runs at each step boundary ("planned", "data_stored", "manifest_stored",
    "recorded", "deleted_uncommitted"); the tests raise from it to simulate a crash there.
    """
    if keys.signing_key is None and keys.hmac_key is None:
        raise InvalidArgument("archive manifests are signed: give an Ed25519 signing key or an HMAC key")
    if max_batches is not None and max_batches < 1:
        raise InvalidArgument("max_batches must be at least 1")
    if not conn.autocommit:
        raise InvalidArgument("archive() commits step by step: give it an autocommit connection")
    require_no_transaction(conn, "archive() commits step by step")  # nor one inside conn.transaction()
    run = ArchiveRun()
    # One archiver per database at a time: a second one skips. The claim is a row that only the audit
    # schema's functions write (sql/55_archive.sql), not an advisory lock, whose key any role that may
    # connect could hold, and so stop archiving.
    schema = sql.Identifier(audit_schema)
    claimed = conn.execute(sql.SQL("SELECT {}.claim_archiver()").format(schema)).fetchone()
    if not claimed or not claimed[0]:
        run.skipped = True
        return run
    try:
        while max_batches is None or len(run.batches) < max_batches:
            batch = function_call(audit_schema, "next_archive_batch", ArchiveBatch, {"older_than": "interval"},
                                  (older_than,)).one(conn)
            if batch.batch_id is None:  # nothing due: the function returned NULL
                break
            hook("planned")
            if batch.state == "planned":
                batch = _upload(conn, target, keys, audit_schema, batch, hook)
            else:  # recorded before a crash: its objects must still be there as recorded
                gz = target.get(batch.data_object)
                if gz is None or _sha256(gz) != batch.gz_sha256:
                    raise StorageError(f"batch {batch.batch_id}: {batch.data_object} is missing or changed in "
                                       f"{target.url}; not deleting its events")
                manifest = target.get(batch.manifest_object)
                if manifest is None or _sha256(manifest) != batch.manifest_sha256:
                    raise StorageError(f"batch {batch.batch_id}: {batch.manifest_object} is missing or changed "
                                       f"in {target.url}; not deleting its events")
            hook("recorded")
            with translated(), conn.transaction():
                conn.execute(sql.SQL("SELECT {}.delete_archived(%s)").format(sql.Identifier(audit_schema)),
                             (batch.batch_id,))
                hook("deleted_uncommitted")
            done = _batch(conn, audit_schema, batch.batch_id)
            assert done is not None
            run.batches.append(done)
            run.events += done.event_count
            log.info("archived %s: %s events, blocks %s..%s, to %s", done.batch_id, done.event_count,
                     done.first_block, done.last_block, target.url)
            if on_batch:
                on_batch(done)
    finally:
        conn.execute(sql.SQL("SELECT {}.release_archiver()").format(schema))
    return run


def archive_if_due(conn: psycopg.Connection, target: Target, keys: Keys, *, audit_schema: str = "audit",
                   on_batch: Callable[[ArchiveBatch], None] | None = None) -> ArchiveRun | None:
    """Archive if the configured UTC hour has come and no worker has archived today (the day is
    claimed first, so a failed run waits for tomorrow or for `pgaudit archive run`); else None."""
    row = conn.execute(sql.SQL("SELECT {}.claim_daily_archive_run()").format(sql.Identifier(audit_schema))).fetchone()
    if not row or not row[0]:
        return None
    return archive(conn, target, keys, audit_schema=audit_schema, on_batch=on_batch)


def _lines(data: bytes) -> list[str]:
    """The lines of a data object, each ended by a newline. Split on newline only: a canonical line
    escapes every control character below U+0020, while U+2028 or U+0085 in a value stay as they
    are (str.splitlines would split there)."""
    return data.decode().split("\n")[:-1]


# Every canonical line begins the same way (docs/canonical-form.md), so its seq is read without
# parsing the rest, which may be nested deeper than any JSON parser's stack.
_LINE_START = re.compile(r'\{"v": [12], "id": (?:null|"[0-9a-f-]{36}"), "seq": (\d+),')


def _line_seq(line: str) -> int | None:
    match = _LINE_START.match(line)
    return int(match.group(1)) if match else None


def _read_manifest(raw: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(raw)
        document["manifest"]["batch_id"]  # noqa: B018
        return dict(document)
    except (ValueError, KeyError, TypeError, RecursionError):
        return None


def _check_batch(batch: ArchiveBatch, target: Target, keys: Keys, prev: ArchiveBatch | None,
                 db_blocks: dict[int, Block], result: ArchiveVerification) -> None:
    name = f"batch {batch.batch_id}"
    problems = result.problems
    raw = target.get(batch.manifest_object)
    if raw is None:
        problems.append(f"{name}: manifest {batch.manifest_object} is missing from {target.url}")
        return
    if _sha256(raw) != batch.manifest_sha256:
        problems.append(f"{name}: the manifest was changed (its hash is not the one recorded)")
    document = _read_manifest(raw)
    if document is None:
        problems.append(f"{name}: the manifest is not a pgaudit manifest")
        return
    problems += signature_problems(document["manifest"], document.get("signatures") or {}, keys,
                                   f"{name}: the manifest")
    body = document["manifest"]
    expected_prev = prev.manifest_sha256.hex() if prev and prev.manifest_sha256 else None
    if body.get("prev_manifest_sha256") != expected_prev:
        problems.append(f"{name}: the manifest does not name the previous manifest's hash (broken manifest chain)")
    gz = target.get(batch.data_object)
    if gz is None:
        problems.append(f"{name}: data object {batch.data_object} is missing from {target.url}")
        return
    if _sha256(gz) != batch.gz_sha256 or body.get("gz_sha256") != _sha256(gz).hex():
        problems.append(f"{name}: the data object was changed (its SHA-256 does not match)")
        return
    data = _gunzip(gz)
    if data is None or _sha256(data) != batch.data_sha256:
        problems.append(f"{name}: the data object does not decompress to what was archived")
        return
    lines = _lines(data)
    result.events_checked += len(lines)
    by_seq: dict[int, str] = {}
    for line in lines:
        seq = _line_seq(line)
        if seq is None:
            problems.append(f"{name}: the data object holds a line that is not a canonical event line")
            return
        by_seq[seq] = line
    expected_prev_hash = db_blocks[batch.first_block - 1].block_hash if batch.first_block - 1 in db_blocks \
        else canonical.GENESIS if batch.first_block == 1 else None
    for entry in body["blocks"]:
        block = Block(entry["block_no"], entry["first_seq"], entry["last_seq"], entry["event_count"],
                      bytes.fromhex(entry["events_hash"]), bytes.fromhex(entry["prev_hash"]),
                      bytes.fromhex(entry["block_hash"]))
        mine = [by_seq[s] for s in range(block.first_seq, block.last_seq + 1) if s in by_seq]
        if canonical.events_hash(mine) != block.events_hash or len(mine) != block.event_count:
            problems.append(f"{name}: block {block.block_no}'s events do not match its hash")
        elif not block.header_matches():
            problems.append(f"{name}: block {block.block_no}'s header does not match its hash")
        elif expected_prev_hash is not None and block.prev_hash != expected_prev_hash:
            problems.append(f"{name}: block {block.block_no} does not link to block {block.block_no - 1}")
        elif block.block_no in db_blocks and db_blocks[block.block_no].block_hash != block.block_hash:
            problems.append(f"{name}: block {block.block_no} differs from the database's block row")
        expected_prev_hash = block.block_hash
    if len(lines) != batch.event_count:
        problems.append(f"{name}: {len(lines)} events in the data object, {batch.event_count} recorded")


def verify_archive(conn: psycopg.Connection, target: Target, keys: Keys, *, batch_id: str | None = None,
                   audit_schema: str = "audit") -> ArchiveVerification:
    """Download and check the archived batches (or one): hashes, signatures, the manifest chain,
    block links, and the link from the last archived block to the first hot one. Names every
    missing or extra object and every gap."""
    if keys.public_key is None and keys.hmac_key is None:
        raise InvalidArgument("give the Ed25519 public key or the HMAC key to check manifests' signatures")
    result = ArchiveVerification()
    batches = [b for b in list_batches(conn, audit_schema=audit_schema) if b.state != "planned"]
    if batch_id is not None and batch_id not in {b.batch_id for b in batches}:
        raise InvalidArgument(f"no recorded archive batch {batch_id}")
    db_blocks = {b.block_no: b for b in read_blocks(conn, audit_schema)}
    expected_objects: set[str] = set()
    prev: ArchiveBatch | None = None
    for batch in batches:
        expected_objects.update(object_keys(batch.batch_id))
        if prev is not None and batch.first_block != prev.last_block + 1:
            result.problems.append(f"gap: blocks {prev.last_block + 1}..{batch.first_block - 1} are in no "
                                   f"archive batch (between {prev.batch_id} and {batch.batch_id})")
        if batch_id is None or batch.batch_id == batch_id:
            _check_batch(batch, target, keys, prev, db_blocks, result)
            result.batches_checked += 1
        prev = batch
    if batch_id is None:
        for key in target.list_keys():
            if key not in expected_objects:
                result.problems.append(f"extra object {key} in {target.url}: no recorded batch names it")
    deleted = [b for b in batches if b.state == "deleted"]
    if deleted:
        last = deleted[-1]
        result.archived_through_block, result.archived_through_seq = last.last_block, last.last_seq
        hot = db_blocks.get(last.last_block + 1)
        if hot is not None:
            result.hot_from_block, result.hot_from_seq = hot.block_no, hot.first_seq
            if hot.prev_hash != db_blocks[last.last_block].block_hash:
                result.problems.append(f"the first hot block {hot.block_no} does not link to the last archived "
                                       f"block {last.last_block}")
    return result


def restore_batch(conn: psycopg.Connection, target: Target, batch_id: str, *, audit_schema: str = "audit") -> int:
    """Load an archived batch, checked against its recorded hashes, into restored_events."""
    batch = _batch(conn, audit_schema, batch_id)
    if batch is None or batch.state == "planned":
        raise InvalidArgument(f"no recorded archive batch {batch_id}")
    gz = target.get(batch.data_object)
    if gz is None:
        raise StorageError(f"{target.url}: {batch.data_object} is missing")
    data = _gunzip(gz)
    if _sha256(gz) != batch.gz_sha256 or data is None or _sha256(data) != batch.data_sha256:
        raise StorageError(f"batch {batch_id}: the data object in {target.url} was changed; not restoring it")
    lines = _lines(data)
    with translated():
        row = conn.execute(sql.SQL("SELECT {}.restore_archive_batch(%s, %s::jsonb[])").format(
            sql.Identifier(audit_schema)), (batch_id, lines)).fetchone()
    assert row is not None
    return int(row[0])
