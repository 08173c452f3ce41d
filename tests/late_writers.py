"""Writers that commit late and out of order while a sealer runs: what the exactly-once tests of
following (Python, the CLI, the HTTP stream) follow."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import psycopg

from pgaudit_py import record, seal


class LateWriters:
    def __init__(self, connect: Callable[..., psycopg.Connection], writers: int = 4, events: int = 40,
                 pause: float = 0.03):
        self.written: list[str] = []  # the events' ids, as each commits
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._connect, self._events, self._pause = connect, events, pause
        self._writers = [threading.Thread(target=self._write, args=(n,)) for n in range(writers)]
        self._sealer = threading.Thread(target=self._seal)
        for t in [*self._writers, self._sealer]:
            t.start()

    def _write(self, n: int) -> None:
        conn = self._connect()
        rnd = random.Random(n)
        for i in range(self._events):
            with conn.transaction():
                event = record(conn, "order.paid", payload={"writer": n, "i": i})
                assert event is not None
                time.sleep(rnd.random() * self._pause)  # some commit after later writers: a later seq, not a skip
            with self._lock:
                self.written.append(str(event.id))

    def _seal(self) -> None:
        conn = self._connect()
        while not self._stop.is_set():
            seal(conn, 7)
            time.sleep(0.01)

    def finish(self) -> None:
        """Wait for the writers, then stop the sealer."""
        for t in self._writers:
            t.join()
        self._stop.set()
        self._sealer.join()
