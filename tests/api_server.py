"""The HTTP API on a real loopback port (uvicorn in a thread), and a small SSE reader."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import httpx
import uvicorn

from pgaudit_py.server import ServerConfig, create_app
from pgaudit_py.server.running import uvicorn_config


class LiveServer:
    def __init__(self, config: ServerConfig | None = None, app: object = None, trusted_proxies: Sequence[str] = ()):
        self.app = app if app is not None else create_app(config=config)
        # As `pgaudit serve` runs it (--trusted-proxy: the addresses whose X-Forwarded-For it reads).
        config = uvicorn_config(self.app, host="127.0.0.1", port=0, trusted_proxies=trusted_proxies)
        config.log_level, config.timeout_graceful_shutdown = "warning", 1
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def client(self, token: str | None = None, **kwargs: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@dataclass
class Message:
    id: str | None
    event: str | None
    data: str | None
    comment: str | None = None


def sse_messages(response: httpx.Response) -> Iterator[Message]:
    """Messages and comments of a text/event-stream response, as they arrive."""
    fields: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if fields:
                yield Message(fields.get("id"), fields.get("event"), fields.get("data"))
            fields = {}
        elif line.startswith(":"):
            yield Message(None, None, None, comment=line[1:].strip())
        else:
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
