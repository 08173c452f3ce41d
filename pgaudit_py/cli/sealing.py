"""`pgaudit seal` and `pgaudit worker`: moving pending events into the sealed log."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import click
import psycopg

from pgaudit_py.archive import archive_if_due
from pgaudit_py.archive_targets import ARCHIVE_URL_ENV, open_target
from pgaudit_py.checkpoint import (
    load_keys,
)
from pgaudit_py.cli.common import (
    Number,
    Seconds,
    Settings,
    _with_options,
    connection_options,
    json_option,
    key_options,
    run_guarded,
    say,
)
from pgaudit_py.errors import PgAuditError
from pgaudit_py.output import counted, emit_json
from pgaudit_py.sealing import (
    WORKER_APPLICATION_NAME,
    SealResult,
    seal,
)
from pgaudit_py.stop_signals import interrupted_by_stop_signals
from pgaudit_py.worker import Daily, run_worker


def _seal_forever(settings: Settings, interval: float, max_events: int, application_name: str,
                  make_daily: Callable[[], Daily | None] = lambda: None) -> None:
    """`make_daily` runs once the stop signals are taken: opening an archive target may wait (on
    a credential process, say) and is stopped like the rest."""
    stop = threading.Event()

    def report(result: SealResult) -> None:
        _report(f"sealed {counted(result.sealed, 'event')} (seq {result.first_seq}..{result.last_seq})")

    with interrupted_by_stop_signals(stop):  # Ctrl-C, or SIGTERM (systemd, Kubernetes): "stopped", 0
        try:
            daily = make_daily()
            run_worker(lambda: settings.connect(application_name), stop, interval=interval, max_events=max_events,
                       audit_schema=settings.schema, daily=daily, on_round=report,
                       say=lambda message: _report(message, err=True))
        except KeyboardInterrupt:
            stop.set()
        except (psycopg.Error, PgAuditError):
            if not stop.is_set():
                raise
    if stop.is_set():  # its interrupt may have ended a clean-up whose error ended the loop instead
        _report("stopped", err=True)


def _report(line: str, err: bool = False) -> None:
    try:
        say(line, err=err)
    except OSError:  # its reader gone (a closed pipe or terminal): the reports go nowhere, the sealing goes on
        os.dup2(os.open(os.devnull, os.O_WRONLY), (sys.stderr if err else sys.stdout).fileno())


@click.command("seal")
@click.option("--max-events", type=Number(1, 1000000), default=10000, show_default=True,
              help="Events per sealing round.")
@click.option("--follow", is_flag=True, help="Keep sealing until stopped.")
@click.option("--interval", type=Seconds(), default=0.5, show_default=True, help="Pause between rounds when idle (s).")
@json_option
@connection_options
def seal_command(settings: Settings, max_events: int, follow: bool, interval: float, as_json: bool) -> None:
    """Move committed pending events into the sealed log."""
    def run() -> None:
        if follow:
            _seal_forever(settings, interval, max_events, WORKER_APPLICATION_NAME)
            return
        with settings.connect() as conn:
            result = seal(conn, max_events, audit_schema=settings.schema)
        if as_json:
            emit_json(result)
        else:
            say(f"sealed {counted(result.sealed, 'event')}"
                       + (f" (seq {result.first_seq}..{result.last_seq})" if result.sealed else ""))
    run_guarded(run)


@click.command("worker")
@click.option("--interval", type=Seconds(), default=0.5, show_default=True, help="Pause between rounds when idle (s).")
@click.option("--archive-target", envvar=ARCHIVE_URL_ENV, show_envvar=True,
              help="Also archive once a day, at the hour set with `archive settings --run-hour`, to this target.")
@_with_options(key_options)
@connection_options
def worker_command(settings: Settings, interval: float, archive_target: str | None, signing_key: Path | None,
                   public_key: Path | None, hmac_key_file: Path | None) -> None:
    """Run the background work until stopped: sealing, and the daily archive run if a target is given."""
    def make_daily() -> Daily | None:
        if not archive_target:
            return None
        keys = load_keys(signing_key=signing_key, hmac_key=hmac_key_file)
        target = open_target(archive_target)

        def daily(conn: psycopg.Connection) -> None:
            done = archive_if_due(conn, target, keys, audit_schema=settings.schema)
            if done is not None:
                _report(f"archived {counted(len(done.batches), 'batch', 'batches')},"
                        f" {counted(done.events, 'event')}, to {target.url}"
                        + (" (skipped: another archiver is running)" if done.skipped else ""))
        return daily

    run_guarded(lambda: _seal_forever(settings, interval, 10000, WORKER_APPLICATION_NAME, make_daily))
