"""How `pgaudit serve` runs the application with uvicorn (the test suite runs it the same way)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import uvicorn


def uvicorn_config(app: Any, *, host: str, port: int, trusted_proxies: Sequence[str] = ()) -> uvicorn.Config:
    # No access log of uvicorn's (it prints query strings: the server writes its own). The client's
    # address counts failed authentications: X-Forwarded-For is believed from the proxies named and
    # from nobody else (uvicorn's default believes any process on 127.0.0.1).
    return uvicorn.Config(app, host=host, port=port, access_log=False, log_level="info", timeout_graceful_shutdown=5,
                          proxy_headers=bool(trusted_proxies), forwarded_allow_ips=list(trusted_proxies) or None)


class Server(uvicorn.Server):
    """Run by `pgaudit serve`, which takes Ctrl-C and SIGTERM (pgaudit_py.stop_signals) and calls
    `stop` for each: it exits 0, as `pgaudit worker` does (uvicorn would die of the signal once it
    has shut down), ending open streams first; a second stop does not wait for open requests."""

    loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: Any = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().serve(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the command takes them

    def stop(self) -> None:
        """Called from the thread that takes the signals; uvicorn looks at these flags every 0.1 s."""
        self.force_exit = self.should_exit
        self.should_exit = True
        # Open streams would hold the shutdown until its timeout: end them now.
        api = getattr(getattr(self.config.app, "state", None), "api", None)
        if api is not None and self.loop is not None:
            with contextlib.suppress(RuntimeError):  # a stop after the loop has closed: nothing is left open
                self.loop.call_soon_threadsafe(api.notifier.close_streams)

    async def shutdown(self, sockets: Any = None) -> None:
        await super().shutdown(sockets)
        # A second stop has uvicorn skip the application's shutdown, which asyncio then cancels
        # midway, with a traceback: it closes the pool and the listener all the same (bounded by
        # the pool's own close timeout).
        shut_down = getattr(self.lifespan, "shutdown_event", None)
        if self.force_exit and shut_down is not None and not shut_down.is_set():
            await self.lifespan.shutdown()
