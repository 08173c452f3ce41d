"""The live stream: one LISTEN connection per server learns of each sealed round, reads the new
high-water mark once, and wakes every open stream with it; a stream then reads what was sealed
since its last seq through the pool, and only if there is something new. The same exactly-once
argument as pgaudit_py.follow: seq is handed out at commit, in order and without gaps, so "after
seq N, up to the committed high-water mark" is always complete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from pgaudit_py.dsn import WithheldAsyncConnection
from pgaudit_py.server.encoding import event_json, list_events_call, one_line
from pgaudit_py.session import tuples

log = logging.getLogger("pgaudit_py.server")

PAGE = 500
ROUNDS_PER_SECOND = 20  # at most: anyone who may connect can NOTIFY the channel
RECHECK_TOKEN = 5.0  # seconds: how often an idle stream asks whether its token was revoked or expired
RECHECK_BEFORE_SENDING = 0.5  # seconds: how old that answer may be when there are events to send


async def high_water(pool: AsyncConnectionPool[Any], audit_schema: str) -> int:
    """The last seq sealed and committed."""
    async with pool.connection() as conn:
        row = await (await tuples(conn).execute(sql.SQL("SELECT last_seq FROM {}.seal_state").format(
            sql.Identifier(audit_schema)))).fetchone()
    assert row is not None
    return int(row[0])


class Notifier:
    """Holds the LISTEN connection (reconnecting with backoff). On each notification, or burst of
    them, it reads the high-water mark once and publishes it to the waiting streams."""

    def __init__(self, dsn: str, audit_schema: str, pool: AsyncConnectionPool[Any]):
        self.dsn = dsn
        self.audit_schema = audit_schema
        self.pool = pool
        self.high: int | None = None  # None while nobody listens: streams then look for themselves
        self.closing = False  # the server is stopping: streams end (their clients resume later)
        self._round = asyncio.Event()

    def close_streams(self) -> None:
        self.closing = True
        self._round.set()

    def next_round(self) -> asyncio.Event:
        """Set at the next published mark: take it before reading, wait on it after."""
        return self._round

    async def _publish(self) -> None:
        self.high = await high_water(self.pool, self.audit_schema)
        self._round.set()
        self._round = asyncio.Event()

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await WithheldAsyncConnection.connect(
                        self.dsn, autocommit=True, application_name="pgaudit serve (listen)") as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.audit_schema)))
                    delay = 0.5
                    await self._publish()  # rounds may have passed while no one listened
                    while True:
                        async for _ in conn.notifies(stop_after=1):
                            pass
                        # Whatever else arrives meanwhile is covered by the one read that follows.
                        await asyncio.sleep(1 / ROUNDS_PER_SECOND)
                        async for _ in conn.notifies(timeout=0):
                            pass
                        await self._publish()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: streams poll meanwhile
                self.high = None
                log.warning("stream listener has no connection (%s); retrying in %.1f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


def sse_event(event: Any) -> str:
    return f"id: {event.seq}\nevent: audit\ndata: {one_line(event_json(event))}\n\n"


async def sealed_events(pool: AsyncConnectionPool[Any], notifier: Notifier, audit_schema: str, after: int, high: int,
                        filters: dict[str, Any], still_valid: Callable[[], Awaitable[bool]], *,
                        heartbeat: float, poll_interval: float) -> AsyncIterator[str]:
    """SSE text: sealed events after `after` (up to `high`, the high-water mark read by the caller)
    matching the filters, then more as they are sealed;
    a comment line every `heartbeat` seconds of silence. The first block's `id` is where the stream
    starts, so that a client reconnecting before any event came resumes there, not from a later
    "now". Ends, with an `error` event, once `still_valid()` says the token no longer is: asked
    before each event goes out when its answer is RECHECK_BEFORE_SENDING old (a reader that stalls
    mid-page gets nothing more once it resumes after a revocation), and every RECHECK_TOKEN seconds
    of quiet."""
    yield f"retry: 2000\nid: {after}\n: following\n\n"
    clock = asyncio.get_running_loop().time
    last_sent = clock()
    # Asked again before the first event: the caller's answer is as old as the wait for the high-water
    # mark and a pooled connection, which a lock or a busy pool may make long.
    checked = -math.inf
    revoked = 'event: error\ndata: {"code":"unauthorized","message":"the token was revoked or expired"}\n\n'
    while True:
        woken = notifier.next_round()
        while after < high:
            call = list_events_call(audit_schema, since_seq=after, before_seq=high + 1, page_size=PAGE, **filters)
            async with pool.connection() as conn:
                page = await call.all_async(conn)
            for event in page:
                assert event.seq is not None  # sealed
                if clock() - checked >= RECHECK_BEFORE_SENDING:
                    checked = clock()
                    if not await still_valid():
                        yield revoked
                        return
                after = event.seq
                yield sse_event(event)
                last_sent = clock()
            if len(page) < PAGE:
                after = high
        # Until the next published round, or the poll interval (the listener may be reconnecting).
        woke = False
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(woken.wait(), timeout=max(0.0, min(poll_interval, last_sent + heartbeat - clock())))
            woke = True
        if notifier.closing:
            yield ": the server is stopping; reconnect with Last-Event-ID\n\n"
            return
        if clock() - checked >= RECHECK_TOKEN:
            checked = clock()
            if not await still_valid():
                yield revoked
                return
        if clock() - last_sent >= heartbeat:
            yield ": heartbeat\n\n"
            last_sent = clock()
        # Woken, the listener's mark (no query per stream, however often anyone NOTIFYs); else a
        # look of its own (the sealer skips its NOTIFY when the queue is half full).
        high = notifier.high if woke and notifier.high is not None else await high_water(pool, audit_schema)
