"""The live stream: one LISTEN connection per server wakes every open stream when the sealer
announces a round; each stream then reads what was sealed since its last seq through the pool.
The same exactly-once argument as pgaudit_py.follow: seq is handed out at commit, in order and
without gaps, so "after seq N, up to the committed high-water mark" is always complete."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from pgaudit_py.server.encoding import event_json, list_events_call, one_line

log = logging.getLogger("pgaudit_py.server")

PAGE = 500


class Notifier:
    """Holds the LISTEN connection (reconnecting with backoff) and wakes waiters on each round."""

    def __init__(self, dsn: str, audit_schema: str):
        self.dsn = dsn
        self.audit_schema = audit_schema
        self._round = asyncio.Event()

    def next_round(self) -> asyncio.Event:
        """Set at the next notification after this call: take it before reading, wait on it after."""
        return self._round

    def _wake(self) -> None:
        self._round.set()
        self._round = asyncio.Event()

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                        self.dsn, autocommit=True, application_name="pgaudit serve (listen)") as conn:
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.audit_schema)))
                    delay = 0.5
                    self._wake()  # rounds may have passed while no one listened
                    async for _ in conn.notifies():
                        self._wake()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database went away: streams poll meanwhile
                log.warning("stream listener lost its connection (%s); retrying in %.1f s", type(exc).__name__, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)


def sse_event(event: Any) -> str:
    return f"id: {event.seq}\nevent: audit\ndata: {one_line(event_json(event))}\n\n"


async def high_water(pool: AsyncConnectionPool, audit_schema: str) -> int:
    """The last seq sealed and committed."""
    async with pool.connection() as conn:
        row = await (await conn.execute(sql.SQL("SELECT last_seq FROM {}.seal_state").format(
            sql.Identifier(audit_schema)))).fetchone()
    assert row is not None
    return int(row[0])


async def sealed_events(pool: AsyncConnectionPool, notifier: Notifier, audit_schema: str, after: int | None,
                        filters: dict[str, Any], *, heartbeat: float, poll_interval: float) -> AsyncIterator[str]:
    """SSE text: sealed events after `after` (default: from now) matching the filters, then more
    as they are sealed; a comment line every `heartbeat` seconds of silence."""
    if after is None:
        after = await high_water(pool, audit_schema)
    yield f"retry: 2000\n: following from seq {after}\n\n"
    clock = asyncio.get_running_loop().time
    last_sent = clock()
    while True:
        woken = notifier.next_round()
        high = await high_water(pool, audit_schema)
        while after < high:
            call = list_events_call(audit_schema, since_seq=after, before_seq=high + 1, page_size=PAGE, **filters)
            async with pool.connection() as conn:
                page = await call.all_async(conn)
            for event in page:
                assert event.seq is not None  # sealed
                after = event.seq
                yield sse_event(event)
                last_sent = clock()
            if len(page) < PAGE:
                after = high
        # Until the sealer's next round, or the poll interval (the listener may be reconnecting).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(woken.wait(), timeout=max(0.0, min(poll_interval, last_sent + heartbeat - clock())))
        if clock() - last_sent >= heartbeat:
            yield ": heartbeat\n\n"
            last_sent = clock()
