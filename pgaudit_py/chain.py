"""The hash chain, verified from Python, independently of the SQL implementation.

Reads blocks and events with plain SELECTs, rebuilds every canonical line with
pgaudit_py.canonical, and recomputes the chain: each block's events hash, header hash and link.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import AdaptContext, Buffer
from psycopg.adapt import Loader
from psycopg.pq import PipelineStatus
from psycopg.rows import dict_row
from psycopg.types.datetime import TimestamptzLoader

from pgaudit_py import canonical
from pgaudit_py.errors import InvalidArgument
from pgaudit_py.session import psycopgs_loader, server_cursor, tuples
from pgaudit_py.transactions import require_no_transaction

# Every name qualified, in this module's queries as in the package's others: the reader's search_path
# must not find a table owner's look-alike type, function or operator first (docs/security.md).
_EVENT_COLUMNS = ("seq, id, tenant_id, actor_type, actor_id, db_role, client_addr::pg_catalog.text AS client_addr,"
                  " application_name, kind, target_type, target_id, outcome, correlation_id, idempotency_key,"
                  " txid::pg_catalog.text AS txid, occurred_at, payload::pg_catalog.text AS payload, schema_valid,"
                  " row_before::pg_catalog.text AS row_before, row_after::pg_catalog.text AS row_after,"
                  " changed::pg_catalog.text AS changed, block_no, origin")


@dataclass(frozen=True)
class Block:
    block_no: int
    first_seq: int
    last_seq: int
    event_count: int
    events_hash: bytes
    prev_hash: bytes
    block_hash: bytes
    canonical_version: int = canonical.VERSION  # of its events' lines

    def header_matches(self) -> bool:
        """Whether block_hash is the hash of this block's header (docs/canonical-form.md)."""
        return canonical.block_hash(self.block_no, self.first_seq, self.last_seq, self.event_count,
                                    self.events_hash, self.prev_hash) == self.block_hash


def read_blocks(conn: psycopg.Connection, schema: str, first: int = 1, last: int | None = None) -> list[Block]:
    """The block rows first..last (all by default), in order."""
    rows = tuples(conn).execute(sql.SQL(
        "SELECT block_no, first_seq, last_seq, event_count, events_hash, prev_hash, block_hash, canonical_version"
        " FROM {}.blocks WHERE block_no OPERATOR(pg_catalog.>=) %s"
        " AND (%s::pg_catalog.int8 IS NULL OR block_no OPERATOR(pg_catalog.<=) %s) ORDER BY block_no"
    ).format(sql.Identifier(schema)), (first, last, last)).fetchall()
    return [Block(r[0], r[1], r[2], r[3], bytes(r[4]), bytes(r[5]), bytes(r[6]), r[7]) for r in rows]


@dataclass(frozen=True)
class Verification:
    ok: bool
    problem: str | None
    bad_block: int | None
    blocks_checked: int
    events_checked: int
    pending: int
    retained_from_block: int
    retained_from_seq: int | None
    head: Block | None
    archived_through_block: int | None = None  # the boundary between archived and hot history
    archived_through_seq: int | None = None
    bad_seq: int | None = None  # the first changed event of bad_block, when its line hashes say which


class _TimeOrText(Loader):
    """A datetime, or PostgreSQL's text where datetime cannot hold the time (a year past 9999 or before
    1, infinity): a hand-made change, which must get a verdict, not raise DataError."""

    def __init__(self, oid: int, context: AdaptContext | None = None):
        super().__init__(oid, context)
        # psycopg's own loader for the type (its C one where installed), as without this class: as the
        # package found it, not one the application registered on psycopg.adapters since (trial 102, c1).
        loader = psycopgs_loader(oid) or TimestamptzLoader
        self._time = loader(oid, context)

    def load(self, data: Buffer) -> datetime | str:
        try:
            time: datetime = self._time.load(data)
            return time
        except psycopg.DataError:
            return bytes(data).decode()


def _events(conn: psycopg.Connection, schema: str, after_seq: int) -> Iterator[dict[str, Any]]:
    query = sql.SQL("SELECT {cols} FROM {s}.event_log WHERE seq OPERATOR(pg_catalog.>) %s ORDER BY seq").format(
        cols=sql.SQL(_EVENT_COLUMNS), s=sql.Identifier(schema))
    with server_cursor(conn, "pgaudit_verify_events", dict_row) as cur:
        cur.adapters.register_loader("timestamptz", _TimeOrText)
        # A sealed event prints as at most 16 MiB: 32 at a time bounds what one fetch holds to 512 MiB
        # (256 let events near the bound, in numbers, cost gigabytes), at a few hundred more round
        # trips per 100,000 events.
        cur.itersize = 32
        cur.execute(query, (after_seq,))
        yield from cur


def _first_changed_seq(conn: psycopg.Connection, schema: str, block: Block, lines: list[str]) -> int | None:
    """The first event of a block whose line no longer hashes as sealed, from the block's line
    hashes (read only now: they take 32 bytes an event); None when the block has none, or they do
    not hash to its events_hash (then they prove nothing)."""
    row = tuples(conn).execute(
        sql.SQL("SELECT line_hashes FROM {}.blocks WHERE block_no OPERATOR(pg_catalog.=) %s").format(
            sql.Identifier(schema)), (block.block_no,)).fetchone()
    sealed = bytes(row[0]) if row and row[0] is not None else None
    if sealed is None or hashlib.sha256(sealed).digest() != block.events_hash:
        return None
    for i, line in enumerate(lines):  # complete and in seq order: checked before
        if hashlib.sha256(line.encode()).digest() != sealed[32 * i:32 * i + 32]:
            return block.first_seq + i
    return None


def verify_chain(conn: psycopg.Connection, *, audit_schema: str = "audit",
                 on_block: Callable[[Block], None] | None = None) -> Verification:
    """Recompute the whole chain; the first block that does not match is named, with why."""
    s = sql.Identifier(audit_schema)
    require_no_transaction(conn, "verify_chain reads one snapshot in a transaction of its own")
    if conn.info.pipeline_status != PipelineStatus.OFF:
        raise InvalidArgument("verify_chain reads the log through a server-side cursor, which pipeline mode does"
                              " not allow: call it outside conn.pipeline()")
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # one consistent snapshot
        # The values as the canonical form reads them, whatever the reader's role or database sets:
        # psycopg reads timestamps in ISO only (and a time datetime cannot hold as UTC text), and an
        # event's text need not fit another encoding.
        # (One a statement: a connection may prepare every statement it sends, prepare_threshold=0.)
        conn.execute("SET LOCAL DateStyle = ISO")
        conn.execute("SET LOCAL TimeZone = 'UTC'")
        conn.execute("SET LOCAL client_encoding = 'UTF8'")
        state = tuples(conn).execute(sql.SQL("SELECT chain_start_seq, last_block_no, last_seq, last_block_hash"
                                             " FROM {}.seal_state").format(s)).fetchone()
        if state is None:  # removed by hand: where the chain starts and ends is not known (trial 89, v9)
            return Verification(False, "audit.seal_state has no row: where the chain starts and ends is unknown", 1,
                                0, 0, 0, 1, None, None, None, None)
        chain_start, head_no, head_seq, head_hash = state
        point = tuples(conn).execute(sql.SQL("SELECT block_no, block_hash, last_seq FROM {}.prune_points"
                                             " ORDER BY block_no DESC LIMIT 1").format(s)).fetchone()
        pruned_through = int(point[0]) if point else 0
        pending_row = tuples(conn).execute(sql.SQL("SELECT pending FROM {}.seal_status()").format(s)).fetchone()
        blocks = read_blocks(conn, audit_schema)
        first_row = tuples(conn).execute(sql.SQL("SELECT pg_catalog.min(seq) FROM {}.event_log").format(s)).fetchone()
        archived = tuples(conn).execute(sql.SQL("SELECT pg_catalog.max(last_block), pg_catalog.max(last_seq)"
                                                " FROM {}.archive_batches WHERE state OPERATOR(pg_catalog.=) 'deleted'"
                                                ).format(s)).fetchone()
        result = Verification(True, None, None, 0, 0, int(pending_row[0]) if pending_row else 0,
                              pruned_through + 1, first_row[0] if first_row else None, None,
                              *(archived or (None, None)))
        events = _events(conn, audit_schema, chain_start)
        pending_event: dict[str, Any] | None = next(events, None)

        def fail(block_no: int, problem: str) -> Verification:
            return replace(result, ok=False, problem=problem, bad_block=block_no)

        expected_no, expected_prev, expected_first = 1, canonical.GENESIS, chain_start + 1
        for block in blocks:
            if block.block_no != expected_no:
                return fail(expected_no, f"block {expected_no} is missing")
            if block.prev_hash != expected_prev:
                return fail(block.block_no, f"broken link: block {block.block_no} does not name the hash of "
                                            f"block {block.block_no - 1}")
            if block.first_seq != expected_first:
                return fail(block.block_no, f"block {block.block_no} starts at seq {block.first_seq}, not where "
                                            f"block {block.block_no - 1} ended")
            if not block.header_matches():
                return fail(block.block_no, f"block {block.block_no}: the block row was changed")
            if block.canonical_version not in canonical.FIELDS_BY_VERSION:  # no sealer wrote it
                return fail(block.block_no, f"block {block.block_no}: the block row was changed (its canonical"
                                            " form version is none the sealer writes)")
            if block.block_no > pruned_through:
                lines = []
                elsewhere = 0
                while pending_event is not None and pending_event["seq"] <= block.last_seq:
                    if pending_event["seq"] < block.first_seq:
                        return fail(block.block_no, f"event seq {pending_event['seq']} is outside every block")
                    elsewhere += pending_event["block_no"] != block.block_no
                    lines.append(canonical.event_line(pending_event, block.canonical_version))
                    pending_event = next(events, None)
                result = replace(result, events_checked=result.events_checked + len(lines))
                if len(lines) < block.event_count:
                    return fail(block.block_no, f"block {block.block_no}: {block.event_count - len(lines)} of its "
                                                f"{block.event_count} events are missing")
                if canonical.events_hash(lines) != block.events_hash:
                    changed = _first_changed_seq(conn, audit_schema, block, lines)
                    if changed is None:
                        return fail(block.block_no, f"block {block.block_no}: an event was changed")
                    return replace(fail(block.block_no, f"block {block.block_no}: event seq {changed} was changed"),
                                   bad_seq=changed)
                if elsewhere:
                    return fail(block.block_no,
                                f"block {block.block_no}: {elsewhere} of its events claim another block")
            result = replace(result, blocks_checked=result.blocks_checked + 1, head=block)
            if on_block:
                on_block(block)
            expected_no, expected_prev, expected_first = block.block_no + 1, block.block_hash, block.last_seq + 1
        if head_no >= expected_no:
            return fail(expected_no, f"block {expected_no} is missing (the sealer's head is block {head_no})")
        # The sealer's head is where the last block ends (as audit.verify checks it).
        if (head_no, head_seq, bytes(head_hash)) != (expected_no - 1, expected_first - 1, expected_prev):
            return fail(expected_no, f"the sealer's head (block {head_no}, seq {head_seq}) is not where the last block"
                                     f" ends (block {expected_no - 1}, seq {expected_first - 1}, and its hash): blocks"
                                     " may have been cut from the end")
        if pending_event is not None:
            return fail(expected_no, f"event seq {pending_event['seq']} is outside every block "
                                     f"(after block {expected_no - 1})")
        if point is not None:
            problem = _unrecorded_prune(conn, audit_schema, point, {b.block_no: b for b in blocks})
            if problem:
                return fail(pruned_through, problem)
    return result


def _unrecorded_prune(conn: psycopg.Connection, schema: str, point: tuple[int, bytes, int],
                      blocks: dict[int, Block]) -> str | None:
    """Why the latest prune point, under which no event is checked, is not one that prune_events or
    delete_archived made (None when it is): each records it in an event of its own, sealed after
    it, pending, or set aside by the sealer (which records that too)."""
    block_no, block_hash, last_seq = int(point[0]), bytes(point[1]), int(point[2])
    block = blocks.get(block_no)
    if block is None or block.block_hash != block_hash or block.last_seq != last_seq:
        return f"block {block_no}: its prune point does not match the block"
    # The payload's values as text, read in SQL: a forged payload is never parsed here.
    fields = sql.SQL("kind, payload OPERATOR(pg_catalog.->>) 'last_block', payload OPERATOR(pg_catalog.->>)"
                     " 'last_block_hash', payload OPERATOR(pg_catalog.->>) 'last_seq'")
    recorded = sql.SQL("kind OPERATOR(pg_catalog.=) ANY(%(kinds)s) AND NOT coalesce(origin, '')"
                       " OPERATOR(pg_catalog.=) ANY(ARRAY['record', 'capture'])")
    records = tuples(conn).execute(sql.SQL(
        "SELECT {fields} FROM {s}.events WHERE {recorded} AND (pending OR seq OPERATOR(pg_catalog.>) %(last_seq)s)"
        " UNION ALL SELECT {fields} FROM {s}.quarantine q WHERE {recorded} AND EXISTS (SELECT FROM {s}.events a"
        # set aside by seal(), which says so in an event of its own, naming it
        " WHERE a.kind OPERATOR(pg_catalog.=) 'audit.event_quarantined' AND a.origin OPERATOR(pg_catalog.=) 'system'"
        " AND a.target_id OPERATOR(pg_catalog.=) q.id::pg_catalog.text"
        " AND a.payload OPERATOR(pg_catalog.->>) 'kind' OPERATOR(pg_catalog.=) q.kind"
        " AND a.payload OPERATOR(pg_catalog.->>) 'intake_id'"
        " OPERATOR(pg_catalog.=) q.intake_id::pg_catalog.text)").format(
            fields=fields, recorded=recorded, s=sql.Identifier(schema)),
        {"kinds": ["audit.pruned", "audit.archive_deleted"], "last_seq": last_seq}).fetchall()
    for kind, named_block, named_hash, named_seq in records:
        if kind == "audit.pruned" and (named_block, named_hash) == (str(block_no), block_hash.hex()):
            return None
        if kind == "audit.archive_deleted" and named_seq == str(last_seq):
            return None
    return f"blocks through {block_no}: their events were removed, and no prune or archive deletion recorded it"
