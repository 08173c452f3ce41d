"""Cold archival: whole sealed blocks leave the log for object storage as signed batches.

For each batch: the events as gzip JSONL in the canonical form (so the chain re-verifies from
the file alone), then a manifest (ranges, sizes, hashes, the block headers, the previous
manifest's hash, signatures with the checkpoint keys). Both objects are read back and checked,
the batch is recorded in the database, and only then are its events deleted from the log.
A batch streams through a temporary file on its way out and back (the lines one at a time from
the database, gzip, hashes, upload, read-back), so its size is bounded by disk, not memory.

Crash safety: the database plans a batch (fixes its block range) before anything is uploaded,
and object keys derive from that range; every step is idempotent, so a re-run after a crash at
any point completes the same batch. Identical content under a key is reused; different content
is a hard error (ArchiveConflict).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import re
import tempfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, Protocol, cast

import psycopg
from psycopg import sql

from pgaudit_py import canonical
from pgaudit_py.archive_targets import Target, read_object
from pgaudit_py.calls import function_call, table_read
from pgaudit_py.chain import Block, read_blocks
from pgaudit_py.checkpoint import Keys, sign, signature_problems
from pgaudit_py.errors import (
    ArchiveConflict,
    ArchiveIntegrityError,
    InvalidArgument,
    ObjectTooLarge,
    StorageError,
    translated,
)
from pgaudit_py.output import printable
from pgaudit_py.session import tuples
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


@dataclass(frozen=True)
class Digest:
    size: int
    sha256: bytes

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls(len(data), hashlib.sha256(data).digest())


_CHUNK = 1 << 20


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _digest(stream: _Readable, limit: int | None = None) -> Digest:
    """The size and SHA-256 of what `stream` holds from its current position on, read in chunks;
    past `limit` bytes it stops, with a digest that matches nothing (a gzip bomb costs no more)."""
    sha, size = hashlib.sha256(), 0
    while chunk := stream.read(_CHUNK):
        sha.update(chunk)
        size += len(chunk)
        if limit is not None and size > limit:
            return Digest(size, b"")
    return Digest(size, sha.digest())


def _file_digest(f: IO[bytes]) -> Digest:
    f.seek(0)
    return _digest(f)


def _gunzipped_digest(f: IO[bytes], limit: int) -> Digest | None:
    """The digest of what the gzip file `f` decompresses to, read no further than `limit` bytes;
    None if it does not decompress."""
    f.seek(0)
    try:
        with gzip.GzipFile(fileobj=f, mode="rb") as unzipped:
            return _digest(unzipped, limit)
    except (OSError, EOFError, zlib.error):
        return None


def _stored_digest(target: Target, key: str, largest: int) -> Digest | None:
    """The stored object's digest (None: missing); one over `largest` bytes is not downloaded, and
    its digest matches nothing."""
    size = target.size(key)
    if size is None or size > largest:
        return None if size is None else Digest(size, b"")
    with tempfile.TemporaryFile() as f:
        return _file_digest(f) if target.download(key, f) else None


def _manifest_bound(batch: ArchiveBatch) -> int:
    """The most a manifest can take: about 420 bytes a block, and signatures."""
    return (64 << 10) + 1024 * (batch.last_block - batch.first_block + 1)


def _gz_bound(data: Digest) -> int:
    """The most a gzip of `data` can take: deflate adds at most 5 bytes per 16 KiB stored block."""
    return data.size + data.size // 1000 + (64 << 10)


class _BlockMatcher:
    """Takes a batch's lines in seq order and checks each block's share against the block's
    events_hash, as the chain computed it, keeping neither the lines nor their digests."""

    def __init__(self, blocks: Iterable[Block]):
        self._blocks = iter(blocks)
        self._block = next(self._blocks, None)
        self._events_hash, self._count = hashlib.sha256(), 0  # events_hash hashes the lines' digests in turn
        self._last_seq: int | None = None
        self.mismatched: list[Block] = []  # blocks whose lines do not hash to them
        self.stray: int | None = None  # the first seq repeated, out of order or in no block

    def add(self, seq: int, line: bytes) -> None:
        while self._block is not None and seq > self._block.last_seq:
            self._close_block()
        in_order = self._last_seq is None or seq > self._last_seq
        self._last_seq = seq if in_order else self._last_seq
        if self._block is None or seq < self._block.first_seq or not in_order:
            self.stray = seq if self.stray is None else self.stray
            return
        self._events_hash.update(hashlib.sha256(line).digest())
        self._count += 1

    def finish(self) -> None:
        while self._block is not None:
            self._close_block()

    def _close_block(self) -> None:
        assert self._block is not None
        if self._count != self._block.event_count or self._events_hash.digest() != self._block.events_hash:
            self.mismatched.append(self._block)
        self._events_hash, self._count = hashlib.sha256(), 0
        self._block = next(self._blocks, None)


def _batch(conn: psycopg.Connection, schema: str, batch_id: str) -> ArchiveBatch | None:
    rows = table_read(schema, "archive_batches", ArchiveBatch, where="batch_id OPERATOR(pg_catalog.=) %s",
                      params=(batch_id,)).all(conn)
    return rows[0] if rows else None


def list_batches(conn: psycopg.Connection, *, audit_schema: str = "audit") -> list[ArchiveBatch]:
    return table_read(audit_schema, "archive_batches", ArchiveBatch, order_by="first_block").all(conn)


def _write_batch(conn: psycopg.Connection, schema: str, batch: ArchiveBatch,
                 into: IO[bytes]) -> tuple[Digest, list[Block]]:
    """Streams the batch's canonical lines (as the chain hashed them) gzipped into `into`, one row
    at a time from the database, checking them against their blocks before anything leaves;
    returns the digest of the uncompressed data and the blocks."""
    blocks = read_blocks(conn, schema, batch.first_block, batch.last_block)
    if len(blocks) != batch.last_block - batch.first_block + 1:
        raise ArchiveIntegrityError(f"batch {batch.batch_id}: blocks are missing from the chain; run pgaudit verify")
    matcher = _BlockMatcher(blocks)
    data, size = hashlib.sha256(), 0
    query = sql.SQL("SELECT seq, line FROM {}.archive_lines(%s, %s)").format(sql.Identifier(schema))
    with gzip.GzipFile(filename="", mode="wb", fileobj=into, compresslevel=6, mtime=0) as zipped, \
            tuples(conn) as cur:
        for seq, line in cur.stream(query, (batch.first_seq, batch.last_seq)):
            raw = line.encode()
            matcher.add(seq, raw)
            for part in (raw, b"\n"):
                zipped.write(part)
                data.update(part)
            size += len(raw) + 1
    matcher.finish()
    if matcher.mismatched or matcher.stray is not None:
        block = matcher.mismatched[0].block_no if matcher.mismatched else f"holding seq {matcher.stray}"
        raise ArchiveIntegrityError(f"block {block} does not verify; not archiving it (run pgaudit verify)")
    return Digest(size, data.digest()), blocks


def build_manifest(batch: ArchiveBatch, blocks: list[Block], data: Digest, gz: Digest, prev_manifest: bytes | None,
                   keys: Keys, schema: str) -> bytes:
    """The manifest's bytes: deterministic, so that a re-run writes the same object."""
    data_object, _ = object_keys(batch.batch_id)
    body = {
        "v": MANIFEST_VERSION, "canonical_version": canonical.VERSION, "schema": schema,
        "batch_id": batch.batch_id, "first_block": batch.first_block, "last_block": batch.last_block,
        "first_seq": batch.first_seq, "last_seq": batch.last_seq, "event_count": batch.event_count,
        "data_object": data_object, "data_bytes": data.size, "data_sha256": data.sha256.hex(),
        "gz_bytes": gz.size, "gz_sha256": gz.sha256.hex(),
        "first_block_prev_hash": blocks[0].prev_hash.hex(), "last_block_hash": blocks[-1].block_hash.hex(),
        "blocks": [{"block_no": b.block_no, "first_seq": b.first_seq, "last_seq": b.last_seq,
                    "event_count": b.event_count, "events_hash": b.events_hash.hex(),
                    "prev_hash": b.prev_hash.hex(), "block_hash": b.block_hash.hex()} for b in blocks],
        "prev_manifest_sha256": prev_manifest.hex() if prev_manifest else None,
    }
    return (canonical.dumps({"manifest": body, "signatures": sign(body, keys)}) + "\n").encode()


def _store(target: Target, key: str, source: IO[bytes], same: Callable[[IO[bytes]], bool],
           largest_same: int) -> Digest:
    """Store `source` under `key` unless an equivalent object is there (one over `largest_same`
    bytes cannot be, and is not read); returns the digest of what is stored."""
    conflict = ArchiveConflict(f"{target.url}: {key} exists with different content; archiving stopped "
                               "(nothing was overwritten; find out who wrote it)")
    with tempfile.TemporaryFile() as existing:
        size = target.size(key)
        if size is not None and size > largest_same:
            raise conflict
        if target.download(key, existing):
            if not same(existing):
                raise conflict
            return _file_digest(existing)
        try:
            source.seek(0)
            target.upload(key, source)
        except StorageError:
            # The store may have kept the object although the request failed: identical content is fine.
            existing.seek(0)
            existing.truncate()
            if not target.download(key, existing) or not same(existing):
                raise
            log.warning("storing %s reported an error, but the object is stored intact", printable(key))
            return _file_digest(existing)
    return _file_digest(source)


def _same_bytes(data: bytes) -> Callable[[IO[bytes]], bool]:
    def same(f: IO[bytes]) -> bool:
        f.seek(0)
        return f.read(len(data) + 1) == data
    return same


def _previous_manifest(conn: psycopg.Connection, schema: str, batch: ArchiveBatch) -> bytes | None:
    row = tuples(conn).execute(
        sql.SQL("SELECT manifest_sha256 FROM {}.archive_batches"
                " WHERE state OPERATOR(pg_catalog.<>) 'planned' AND last_block OPERATOR(pg_catalog.<) %s"
                " ORDER BY last_block DESC LIMIT 1").format(sql.Identifier(schema)),
        (batch.first_block,)).fetchone()
    return bytes(row[0]) if row else None


def _confirm(target: Target, key: str, expected: Digest) -> None:
    stored = _stored_digest(target, key, expected.size)
    if stored is None:
        raise StorageError(f"{target.url}: {key} is not there after upload")
    if stored != expected:
        raise StorageError(f"{target.url}: {key} does not hold what was uploaded ({stored.size} bytes)")


def _upload(conn: psycopg.Connection, target: Target, keys: Keys, schema: str, batch: ArchiveBatch,
            hook: Callable[[str], None]) -> ArchiveBatch:
    data_key, manifest_key = batch.data_object, batch.manifest_object
    with tempfile.TemporaryFile() as gz_file:
        data, blocks = _write_batch(conn, schema, batch, gz_file)
        gz = _store(target, data_key, gz_file, lambda existing: _gunzipped_digest(existing, data.size) == data,
                    _gz_bound(data))
    hook("data_stored")
    prev = _previous_manifest(conn, schema, batch)
    manifest = build_manifest(batch, blocks, data, gz, prev, keys, schema)
    _store(target, manifest_key, io.BytesIO(manifest), _same_bytes(manifest), len(manifest))
    hook("manifest_stored")
    _confirm(target, data_key, gz)
    _confirm(target, manifest_key, Digest.of(manifest))
    recorded = function_call(schema, "record_archive_batch", ArchiveBatch, {
        "batch_id": "text", "target": "text", "data_bytes": "int8", "gz_bytes": "int8", "data_sha256": "bytea",
        "gz_sha256": "bytea", "manifest_sha256": "bytea", "prev_manifest_sha256": "bytea"},
        (batch.batch_id, target.url, data.size, gz.size, data.sha256, gz.sha256, hashlib.sha256(manifest).digest(),
         prev)).one(conn)
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
    claimed = tuples(conn).execute(sql.SQL("SELECT {}.claim_archiver()").format(schema)).fetchone()
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
                for key, largest, recorded_sha256 in (
                        (batch.data_object, batch.gz_bytes or 0, batch.gz_sha256),
                        (batch.manifest_object, _manifest_bound(batch), batch.manifest_sha256)):
                    stored = _stored_digest(target, key, largest)
                    if stored is None or stored.sha256 != recorded_sha256:
                        raise StorageError(f"batch {batch.batch_id}: {key} is missing or changed in {target.url}; "
                                           "not deleting its events")
            hook("recorded")
            with translated(), conn.transaction():
                tuples(conn).execute(sql.SQL("SELECT {}.delete_archived(%s)").format(sql.Identifier(audit_schema)),
                                     (batch.batch_id,))
                hook("deleted_uncommitted")
            done = _batch(conn, audit_schema, batch.batch_id)
            assert done is not None
            run.batches.append(done)
            run.events += done.event_count
            log.info("archived %s: %s events, blocks %s..%s, to %s", done.batch_id, done.event_count,
                     done.first_block, done.last_block, printable(target.url))
            if on_batch:
                on_batch(done)
    finally:
        conn.execute(sql.SQL("SELECT {}.release_archiver()").format(schema))
    return run


def archive_if_due(conn: psycopg.Connection, target: Target, keys: Keys, *, audit_schema: str = "audit",
                   on_batch: Callable[[ArchiveBatch], None] | None = None) -> ArchiveRun | None:
    """Archive if the configured UTC hour has come and no worker has archived today (the day is
    claimed first, so a failed run waits for tomorrow or for `pgaudit archive run`); else None."""
    row = tuples(conn).execute(
        sql.SQL("SELECT {}.claim_daily_archive_run()").format(sql.Identifier(audit_schema))).fetchone()
    if not row or not row[0]:
        return None
    return archive(conn, target, keys, audit_schema=audit_schema, on_batch=on_batch)


@dataclass
class _DataObject:
    """What one pass over a downloaded data object found."""
    data: Digest | None  # None: it does not decompress
    lines: int = 0
    not_a_line: bool = False  # a line that is not a canonical event line


_LONGEST_LINE = 16 << 20  # a sealed event's canonical line (sql/30_sealing.sql), newline aside


def _read_data(gz_file: IO[bytes], matcher: _BlockMatcher, limit: int) -> _DataObject:
    """Decompresses the data object line by line into `matcher`, hashing what it decompresses to,
    no further than `limit` bytes. Lines end at a newline only: a canonical line escapes every
    control character below U+0020, while U+2028 or U+0085 in a value stay as they are
    (str.splitlines would split there). A line longer than any event's is read in pieces."""
    gz_file.seek(0)
    sha, size, result = hashlib.sha256(), 0, _DataObject(None)
    in_long_line = False
    try:
        with gzip.GzipFile(fileobj=gz_file, mode="rb") as unzipped:
            while line := unzipped.readline(_LONGEST_LINE + 1):  # binary lines: split at b"\n" only
                sha.update(line)
                size += len(line)
                if size > limit:
                    return result
                if not in_long_line:
                    result.lines += 1
                    seq = _line_seq(line)
                    if seq is None or not line.endswith(b"\n"):
                        result.not_a_line = True
                    else:
                        matcher.add(seq, line[:-1])
                in_long_line = not line.endswith(b"\n")
    except (OSError, EOFError, zlib.error):
        return result
    matcher.finish()
    result.data = Digest(size, sha.digest())
    return result


# Every canonical line begins the same way (docs/canonical-form.md), so its seq is read without
# parsing the rest, which may be nested deeper than any JSON parser's stack.
_LINE_START = re.compile(rb'\{"v": [12], "id": (?:null|"[0-9a-f-]{36}"), "seq": (\d+),')


def _line_seq(line: bytes) -> int | None:
    match = _LINE_START.match(line)
    return int(match.group(1)) if match else None


_HASH = re.compile(r"[0-9a-f]{64}")


def _manifest_blocks(body: dict[str, Any]) -> list[Block] | None:
    """The block headers a manifest lists, or None if they are not what build_manifest writes."""
    entries = body.get("blocks")
    if not isinstance(entries, list) or not entries:
        return None
    blocks = []
    for entry in entries:
        if not isinstance(entry, dict):
            return None
        numbers = [entry.get(k) for k in ("block_no", "first_seq", "last_seq", "event_count")]
        hashes = [entry.get(k) for k in ("events_hash", "prev_hash", "block_hash")]
        if not all(type(n) is int for n in numbers) or not all(isinstance(h, str) and _HASH.fullmatch(h)
                                                               for h in hashes):
            return None
        block_no, first_seq, last_seq, count = cast(list[int], numbers)
        events, prev, own = (bytes.fromhex(h) for h in cast(list[str], hashes))
        blocks.append(Block(block_no, first_seq, last_seq, count, events, prev, own))
    return blocks


def _read_manifest(raw: bytes) -> tuple[dict[str, Any], list[Block]] | None:
    """A manifest document and its blocks, or None if it is not a pgaudit manifest."""
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if canonical.too_deep(document):
        return None
    try:  # what its signatures are checked over must be writable in the canonical form
        canonical.dumps(document.get("manifest")).encode()
    except (TypeError, ValueError, UnicodeError, AttributeError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("manifest"), dict) \
            or not isinstance(document.get("signatures", {}), dict):
        return None
    blocks = _manifest_blocks(document["manifest"])
    return (document, blocks) if blocks is not None else None


def _check_batch(batch: ArchiveBatch, target: Target, keys: Keys, prev: ArchiveBatch | None,
                 db_blocks: dict[int, Block], result: ArchiveVerification) -> None:
    name = f"batch {batch.batch_id}"
    problems = result.problems
    try:
        raw = read_object(target, batch.manifest_object, _manifest_bound(batch))
    except ObjectTooLarge:
        problems.append(f"{name}: the manifest was changed (it is larger than a manifest of its blocks can be)")
        return
    if raw is None:
        problems.append(f"{name}: manifest {batch.manifest_object} is missing from {target.url}")
        return
    if hashlib.sha256(raw).digest() != batch.manifest_sha256:
        problems.append(f"{name}: the manifest was changed (its hash is not the one recorded)")
    read = _read_manifest(raw)
    if read is None:
        problems.append(f"{name}: the manifest is not a pgaudit manifest")
        return
    document, blocks = read
    problems += signature_problems(document["manifest"], document.get("signatures") or {}, keys,
                                   f"{name}: the manifest")
    body = document["manifest"]
    expected_prev = prev.manifest_sha256.hex() if prev and prev.manifest_sha256 else None
    if body.get("prev_manifest_sha256") != expected_prev:
        problems.append(f"{name}: the manifest does not name the previous manifest's hash (broken manifest chain)")
    matcher = _BlockMatcher(blocks)
    with tempfile.TemporaryFile() as gz_file:
        size = target.size(batch.data_object)
        if size is None:
            problems.append(f"{name}: data object {batch.data_object} is missing from {target.url}")
            return
        if size == batch.gz_bytes and target.download(batch.data_object, gz_file):
            gz = _file_digest(gz_file)
        else:  # not read: its size alone says it was changed
            gz = Digest(size, b"")
        if gz.sha256 != batch.gz_sha256 or body.get("gz_sha256") != gz.sha256.hex():
            problems.append(f"{name}: the data object was changed (its SHA-256 does not match)")
            return
        found = _read_data(gz_file, matcher, batch.data_bytes or 0)
    if found.data is None or found.data.sha256 != batch.data_sha256:
        problems.append(f"{name}: the data object does not decompress to what was archived")
        return
    result.events_checked += found.lines
    if found.not_a_line:
        problems.append(f"{name}: the data object holds a line that is not a canonical event line")
        return
    if matcher.stray is not None:
        problems.append(f"{name}: the data object holds seq {matcher.stray} repeated, out of order or outside "
                        "its blocks")
        return
    mismatched = {b.block_no for b in matcher.mismatched}
    expected_prev_hash = db_blocks[batch.first_block - 1].block_hash if batch.first_block - 1 in db_blocks \
        else canonical.GENESIS if batch.first_block == 1 else None
    for block in blocks:
        if block.block_no in mismatched:
            problems.append(f"{name}: block {block.block_no}'s events do not match its hash")
        elif not block.header_matches():
            problems.append(f"{name}: block {block.block_no}'s header does not match its hash")
        elif expected_prev_hash is not None and block.prev_hash != expected_prev_hash:
            problems.append(f"{name}: block {block.block_no} does not link to block {block.block_no - 1}")
        elif block.block_no in db_blocks and db_blocks[block.block_no].block_hash != block.block_hash:
            problems.append(f"{name}: block {block.block_no} differs from the database's block row")
        expected_prev_hash = block.block_hash
    if found.lines != batch.event_count:
        problems.append(f"{name}: {found.lines} events in the data object, {batch.event_count} recorded")


def _batches_named_by_events(conn: psycopg.Connection, schema: str) -> set[str]:
    """The batches the log's own events (sealed, pending or set aside) say were archived: a
    batch's record erased with its objects leaves no gap among the recorded ones, but these stay."""
    named = sql.SQL("SELECT target_id FROM {} WHERE kind OPERATOR(pg_catalog.=) ANY(%(kinds)s)"
                    " AND target_type OPERATOR(pg_catalog.=) 'archive_batch' AND target_id IS NOT NULL"
                    " AND NOT coalesce(origin, '') OPERATOR(pg_catalog.=) ANY(ARRAY['record', 'capture'])")
    rows = tuples(conn).execute(sql.SQL("{} UNION {}").format(
        named.format(sql.Identifier(schema, "events")), named.format(sql.Identifier(schema, "quarantine"))),
        {"kinds": ["audit.archived", "audit.archive_deleted"]}).fetchall()
    return {row[0] for row in rows}


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
        for named in _batches_named_by_events(conn, audit_schema) - {b.batch_id for b in batches}:
            result.problems.append(f"batch {named} is named by an audit.archived or audit.archive_deleted event "
                                   "but not recorded: its events may be in no archive")
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
    data = Digest(batch.data_bytes or 0, batch.data_sha256 or b"")
    with tempfile.TemporaryFile() as gz_file:
        size = target.size(batch.data_object)
        if size is None:
            raise StorageError(f"{target.url}: {batch.data_object} is missing")
        if (size != batch.gz_bytes or not target.download(batch.data_object, gz_file)
                or _file_digest(gz_file).sha256 != batch.gz_sha256 or _gunzipped_digest(gz_file, data.size) != data):
            raise StorageError(f"batch {batch_id}: the data object in {target.url} was changed; not restoring it")
        # The events go to the database in one call, which checks them against the chain: a restore
        # holds its batch in memory (docs/archive.md).
        gz_file.seek(0)
        with gzip.GzipFile(fileobj=gz_file, mode="rb") as unzipped:
            lines = [line[:-1].decode() for line in unzipped]
    with translated():
        row = tuples(conn).execute(sql.SQL("SELECT {}.restore_archive_batch(%s, %s::pg_catalog.jsonb[])").format(
            sql.Identifier(audit_schema)), (batch_id, lines)).fetchone()
    assert row is not None
    return int(row[0])
