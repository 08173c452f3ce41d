"""GET /v1/audit/verify recomputes the whole chain, which takes seconds at millions of events: one
run at a time, on a connection of its own (never one of the pool's, which requests need). A verdict
is reused, and says so (`reused`, `verified_at`): for MIN_INTERVAL seconds whatever happens (so
that no reader can keep the database recomputing), and for up to REUSE seconds while nothing was
sealed, pruned or archived; the pending count is read afresh."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone
from typing import Any

from psycopg import sql

from pgaudit_py.dsn import WithheldAsyncConnection
from pgaudit_py.session import tuples

MIN_INTERVAL = 10.0
REUSE = 60.0
NAMES = ("ok", "problem", "bad_block", "blocks_checked", "events_checked", "pending", "oldest_hot_seq",
         "highest_archived_seq")


class ChainVerifier:
    def __init__(self, dsn: str, audit_schema: str):
        self.dsn = dsn
        self.schema = sql.Identifier(audit_schema)
        self._lock = asyncio.Lock()
        self._last: tuple[tuple[Any, ...], float, dict[str, Any]] | None = None

    async def verdict(self) -> dict[str, Any]:
        async with self._lock, await WithheldAsyncConnection.connect(
                self.dsn, autocommit=True, application_name="pgaudit serve (verify)") as conn:
            state = await (await tuples(conn).execute(sql.SQL(
                "SELECT s.last_seq, (SELECT pg_catalog.max(block_no) FROM {s}.prune_points),"
                " (SELECT pg_catalog.max(last_seq) FROM {s}.archive_batches WHERE deleted_at IS NOT NULL),"
                " (SELECT pending FROM {s}.seal_status()) FROM {s}.seal_state s").format(s=self.schema))).fetchone()
            assert state is not None
            if self._last is not None:
                seen, at, verdict = self._last
                age = time.monotonic() - at
                if age < MIN_INTERVAL or (seen == tuple(state[:3]) and age < REUSE):
                    return {**verdict, "pending": state[3], "reused": True}
            row = await (await tuples(conn).execute(sql.SQL(
                "SELECT ok, problem, bad_block, blocks_checked, events_checked, pending, retained_from_seq,"
                " archived_through_seq FROM {}.verify()").format(self.schema))).fetchone()
            assert row is not None
            verdict = {**dict(zip(NAMES, row, strict=True)), "verified_at": datetime.now(timezone.utc)}
            self._last = (tuple(state[:3]), time.monotonic(), verdict)
            return {**verdict, "reused": False}
