"""`pgaudit serve`: the HTTP API (and its extra: `pip install 'pgaudit_py[server]'`)."""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path

import click
from psycopg import sql

from pgaudit_py.archive_targets import ARCHIVE_URL_ENV, open_target
from pgaudit_py.checkpoint import load_keys
from pgaudit_py.cli.common import (
    Number,
    Settings,
    _with_options,
    connection_options,
    fail,
    key_options,
    run_guarded,
    without_given,
)
from pgaudit_py.installer import role_names
from pgaudit_py.output import printable
from pgaudit_py.session import tuples
from pgaudit_py.stop_signals import interrupter, taking_stop_signals


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; loopback unless told otherwise.")
@click.option("--port", type=Number(0, 65535), default=8080, show_default=True)
@click.option("--pool-size", type=Number(1, 100), default=10, show_default=True,
              help="Database connections for requests (each stream holds one only while it reads).")
@click.option("--archive-target", envvar=ARCHIVE_URL_ENV, show_envvar=True,
              help="Where POST /v1/audit/archive/run archives (file:///dir or s3://bucket/prefix).")
@click.option("--trusted-proxy", "trusted_proxies", multiple=True, metavar="ADDRESS",
              help="A reverse proxy whose X-Forwarded-For names the client (repeatable); none by default.")
@click.option("--checkpoint-dir", type=click.Path(path_type=Path, exists=True, file_okay=False),
              help="Signed checkpoints (*.json); /v1/audit/verify reports the newest.")
@_with_options(key_options)
@connection_options
def serve_command(settings: Settings, host: str, port: int, pool_size: int, archive_target: str | None,
                  trusted_proxies: tuple[str, ...], checkpoint_dir: Path | None, signing_key: Path | None,
                  public_key: Path | None, hmac_key_file: Path | None) -> None:
    """Serve the log over HTTP: /v1/audit, its stream, counts, verification, archives (see /openapi.json)."""
    try:
        from pgaudit_py.server import ServerConfig, create_app
        from pgaudit_py.server.running import Server, uvicorn_config
    except ImportError:
        fail("pgaudit serve needs its extra: pip install 'pgaudit_py[server]'")

    def run() -> None:
        running: list[Server] = []  # once it runs, a stop is the server's; before, it interrupts the start
        interrupt = interrupter(threading.Event())
        with taking_stop_signals(lambda: running[0].stop() if running else interrupt()), \
                contextlib.suppress(KeyboardInterrupt):
            start(running)

    def start(running: list[Server]) -> None:
        signing = load_keys(signing_key=signing_key, hmac_key=hmac_key_file) if signing_key or hmac_key_file else None
        checking = load_keys(public_key=public_key, hmac_key=hmac_key_file) if public_key or hmac_key_file else None
        if archive_target:
            open_target(archive_target)  # a target that is none is refused now, not at the first archive run
        # A wrong DSN, or a role below the reader (docs/cli.md), fails now: not in every request's log
        # line, nor in a stream listener retrying for ever. The listener's own first read, then the
        # role itself: a grant of part of the reader's rights passes the read, not every request.
        with settings.connect("pgaudit serve") as conn:
            conn.execute(sql.SQL("SELECT last_seq FROM {}.seal_state").format(sql.Identifier(settings.schema)))
            reader = role_names(settings.schema)["reader"]
            row = tuples(conn).execute("SELECT pg_catalog.pg_has_role(%s, 'USAGE'), current_user::pg_catalog.text",
                                       (reader,)).fetchone()
            if not (row and row[0]):
                fail(f"role {row[1] if row else '?'} does not have the rights of {reader}, which pgaudit serve needs"
                     " (docs/cli.md names the least role each command needs)")
        config = ServerConfig(dsn=settings.dsn, audit_schema=settings.schema, pool_size=pool_size,
                              archive_target=archive_target, archive_keys=signing, checkpoint_dir=checkpoint_dir,
                              checkpoint_keys=checking)
        # Its log lines, the pool's too (which repeat the server's messages), go to stderr as the
        # command line's own: without a long piece of what was given.
        handler = logging.StreamHandler()
        handler.setFormatter(_WithoutGiven("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.basicConfig(level=logging.INFO, handlers=[handler])
        # uvicorn's access log would print query strings: the server writes its own (no query, no token).
        server = Server(uvicorn_config(create_app(config=config), host=host, port=port,
                                       trusted_proxies=trusted_proxies))
        running.append(server)
        server.run()
    run_guarded(run)


class _WithoutGiven(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return printable(without_given(super().format(record)))
