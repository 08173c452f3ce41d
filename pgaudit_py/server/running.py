"""How `pgaudit serve` runs the application with uvicorn (the test suite runs it the same way)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator, Sequence
from typing import Any

import uvicorn

from pgaudit_py.stop_signals import STOP_SIGNALS, ignore_further_stops


def uvicorn_config(app: Any, *, host: str, port: int, trusted_proxies: Sequence[str] = ()) -> uvicorn.Config:
    # No access log of uvicorn's (it prints query strings: the server writes its own). The client's
    # address counts failed authentications: X-Forwarded-For is believed from the proxies named and
    # from nobody else (uvicorn's default believes any process on 127.0.0.1).
    return uvicorn.Config(app, host=host, port=port, access_log=False, log_level="info", timeout_graceful_shutdown=5,
                          proxy_headers=bool(trusted_proxies), forwarded_allow_ips=list(trusted_proxies) or None)


class Server(uvicorn.Server):
    """Stops on SIGTERM or Ctrl-C and exits 0, as `pgaudit worker` does (uvicorn would die of the
    signal once it has shut down), ending open streams first; a second signal stops without waiting
    for open requests, and later ones change nothing."""

    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def shutdown(self, sockets: Any = None) -> None:
        await super().shutdown(sockets)
        # A second signal has uvicorn skip the application's shutdown, which asyncio then cancels
        # midway, with a traceback: it closes the pool and the listener all the same (bounded by
        # the pool's own close timeout).
        shut_down = getattr(self.lifespan, "shutdown_event", None)
        if self.force_exit and shut_down is not None and not shut_down.is_set():
            await self.lifespan.shutdown()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def stop(signum: int, frame: object) -> None:
            self.force_exit = self.should_exit
            self.should_exit = True
            # Open streams would hold the shutdown until its timeout: end them now.
            api = getattr(getattr(self.config.app, "state", None), "api", None)
            if api is not None and self.loop is not None:
                self.loop.call_soon_threadsafe(api.notifier.close_streams)

        previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            if self.should_exit:  # the process is stopping: a later signal must not kill it as it exits
                ignore_further_stops()
            else:
                for s, handler in previous.items():
                    signal.signal(s, handler)
