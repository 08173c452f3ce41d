"""`pgaudit serve`: the HTTP API (and its extra: `pip install 'pgaudit_py[server]'`)."""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import click

from pgaudit_py.archive_targets import ARCHIVE_URL_ENV
from pgaudit_py.checkpoint import load_keys
from pgaudit_py.cli.common import Settings, _with_options, connection_options, fail, key_options, run_guarded


def _server_class() -> type:
    import uvicorn

    class Server(uvicorn.Server):
        """Stops on SIGTERM or Ctrl-C and exits 0, as `pgaudit worker` does (uvicorn would die of the
        signal once it has shut down)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            def stop(signum: int, frame: object) -> None:
                self.force_exit = self.should_exit  # a second signal: stop waiting for open streams
                self.should_exit = True

            previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)

    return Server


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; loopback unless told otherwise.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--pool-size", type=click.IntRange(1, 100), default=10, show_default=True,
              help="Database connections for requests (each stream holds one only while it reads).")
@click.option("--archive-target", envvar=ARCHIVE_URL_ENV, show_envvar=True,
              help="Where POST /v1/audit/archive/run archives (file:///dir or s3://bucket/prefix).")
@click.option("--checkpoint-dir", type=click.Path(path_type=Path, file_okay=False),
              help="Signed checkpoints (*.json); /v1/audit/verify reports the newest.")
@_with_options(key_options)
@connection_options
def serve_command(settings: Settings, host: str, port: int, pool_size: int, archive_target: str | None,
                  checkpoint_dir: Path | None, signing_key: Path | None, public_key: Path | None,
                  hmac_key_file: Path | None) -> None:
    """Serve the log over HTTP: /v1/audit, its stream, counts, verification, archives (see /openapi.json)."""
    try:
        import uvicorn

        from pgaudit_py.server import ServerConfig, create_app
        _Server = _server_class()
    except ImportError:
        fail("the server needs its extra: pip install 'pgaudit_py[server]'")

    def run() -> None:
        signing = load_keys(signing_key=signing_key, hmac_key=hmac_key_file) if signing_key or hmac_key_file else None
        checking = load_keys(public_key=public_key, hmac_key=hmac_key_file) if public_key or hmac_key_file else None
        config = ServerConfig(dsn=settings.dsn, audit_schema=settings.schema, pool_size=pool_size,
                              archive_target=archive_target, archive_keys=signing, checkpoint_dir=checkpoint_dir,
                              checkpoint_keys=checking)
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        # uvicorn's access log would print query strings: the server writes its own (no query, no token).
        server = _Server(uvicorn.Config(create_app(config=config), host=host, port=port, access_log=False,
                                        log_level="info", timeout_graceful_shutdown=5))
        server.run()
    run_guarded(run)
