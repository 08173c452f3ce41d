"""The `pgaudit` and `pgaudit-install` commands: a thin shell over the library.

Connection: --dsn, else PGAUDIT_DSN, else libpq's own PG* variables. Tables for people, --json
for scripts. Exit 0 on success, 1 on failure, 2 on bad input, each with a one-line reason.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import psycopg
from psycopg import sql

from pgaudit_py import demo as demo_module
from pgaudit_py.archive import archive_if_due
from pgaudit_py.archive_targets import ARCHIVE_URL_ENV, open_target
from pgaudit_py.chain import Block, verify_chain
from pgaudit_py.checkpoint import (
    check_against_chain,
    check_signatures,
    generate_keys,
    load_keys,
    make_checkpoint,
    read_checkpoint,
)
from pgaudit_py.cli_archive import archive_group
from pgaudit_py.cli_common import (
    Command,
    Group,
    Settings,
    _with_options,
    connection_options,
    fail,
    json_option,
    key_options,
    parse_duration,
    parse_time,
    run_guarded,
)
from pgaudit_py.cli_secrets import secrets_group
from pgaudit_py.errors import CannotConnect, KeyFileError, PgAuditError
from pgaudit_py.events import Event, count_events, list_events, monthly_event_counts, record
from pgaudit_py.installer import install, status
from pgaudit_py.output import emit_json, print_table, printable
from pgaudit_py.rate_limits import disable_rate_limit, enable_rate_limit, rate_limits, set_operation_limit
from pgaudit_py.retention import preview_prune, prune_all
from pgaudit_py.sealing import (
    WORKER_APPLICATION_NAME,
    SealResult,
    schedule_sealing,
    seal,
    seal_continuously,
    seal_status,
)
from pgaudit_py.tracking import disable_tracking, enable_tracking, row_as_of, row_history, tracked_tables


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """pgaudit_py: an append-only, tamper-evident audit log inside PostgreSQL."""


def _install(settings: Settings, dry_run: bool, show_status: bool, schedule_seal: bool, server_keys: bool,
             as_json: bool) -> None:
    with settings.connect("pgaudit install") as conn:
        if show_status:
            result = status(conn, settings.schema)
            if as_json:
                emit_json({**dataclasses.asdict(result), "intact": result.intact})
            else:
                click.echo(f"schema:             {result.schema}")
                click.echo(f"installed version:  {result.installed_version or '(not installed)'}")
                click.echo(f"applied migrations: {', '.join(result.applied_migrations) or '(none)'}")
                click.echo(f"pending migrations: {', '.join(result.pending_migrations) or '(none)'}")
                for problem in result.problems:
                    click.echo(f"PROBLEM: {printable(problem)}")
                for warning in result.warnings:
                    click.echo(f"WARNING: {printable(warning)}")
            if not result.intact:
                fail(f"installation in schema {settings.schema!r} is not intact")
            return
        report = install(conn, settings.schema, dry_run=dry_run, server_keys=server_keys)
        if schedule_seal and not dry_run:
            job = schedule_sealing(conn, audit_schema=settings.schema)
            click.echo(f"pg_cron job {job} seals every minute", err=True)
        if as_json:
            emit_json(report)
        elif dry_run:
            click.echo(f"would apply migrations: {', '.join(report.migrations) or '(none)'}")
            click.echo(f"would re-apply: {', '.join(report.sql_files)}")
        elif not report.changed:
            click.echo(f"pgaudit_py {report.version} in schema {report.schema}: already up to date, nothing changed")
        else:
            click.echo(f"pgaudit_py {report.version} installed in schema {report.schema}")
            click.echo(f"  migrations applied: {', '.join(report.migrations) or '(none)'}")
            click.echo(f"  roles created:      {', '.join(report.created_roles) or '(none)'}")


_install_options = [
    click.option("--dry-run", is_flag=True, help="Show what would run; change nothing."),
    click.option("--status", "show_status", is_flag=True,
                 help="Show version, pending migrations and integrity problems; exit 1 unless intact."),
    click.option("--schedule-seal", is_flag=True,
                 help="Also have pg_cron seal every minute (pg_cron must be installed in this database)."),
    click.option("--server-keys", is_flag=True,
                 help="Let the owner role read server key files (secrets in server-key mode; superuser only)."),
    json_option,
]


@cli.command("install")
@_with_options(_install_options)
@connection_options
def install_command(settings: Settings, dry_run: bool, show_status: bool, schedule_seal: bool, server_keys: bool,
                    as_json: bool) -> None:
    """Install or upgrade pgaudit_py (safe to run again)."""
    run_guarded(lambda: _install(settings, dry_run, show_status, schedule_seal, server_keys, as_json))


@click.command("pgaudit-install", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@_with_options(_install_options)
@connection_options
def install_standalone(settings: Settings, dry_run: bool, show_status: bool, schedule_seal: bool,
                       server_keys: bool, as_json: bool) -> None:
    """Install or upgrade pgaudit_py into a database (safe to run again, and concurrently)."""
    run_guarded(lambda: _install(settings, dry_run, show_status, schedule_seal, server_keys, as_json))


@cli.command("status")
@click.option("--lag-warning", default=60.0, show_default=True, help="Warn when the oldest pending event is older (s).")
@json_option
@connection_options
def status_command(settings: Settings, lag_warning: float, as_json: bool) -> None:
    """Installation integrity and sealing lag."""
    def run() -> None:
        with settings.connect() as conn:
            installed = status(conn, settings.schema)
            sealing = seal_status(conn, audit_schema=settings.schema) if installed.installed_version else None
            workers = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
                                   " AND datname = current_database()", (WORKER_APPLICATION_NAME,)).fetchone()
        warnings = list(installed.problems) + list(installed.warnings)
        if sealing and sealing.pending and sealing.lag.total_seconds() > lag_warning:
            warnings.append(f"sealing is behind: the oldest pending event waited {sealing.lag.total_seconds():.0f} s"
                            f" ({sealing.pending} pending); is `pgaudit worker` running?")
        if as_json:
            emit_json({"install": {**dataclasses.asdict(installed), "intact": installed.intact},
                       "sealing": {**dataclasses.asdict(sealing), "lag_seconds": sealing.lag.total_seconds()}
                       if sealing else None,
                       "workers": workers[0] if workers else 0, "warnings": warnings})
        else:
            click.echo(f"schema {installed.schema}: version {installed.installed_version or '(not installed)'}, "
                       f"pending migrations: {', '.join(installed.pending_migrations) or 'none'}")
            if sealing:
                click.echo(f"sealed up to seq {sealing.last_seq}; {sealing.pending} pending, "
                           f"oldest waited {sealing.lag.total_seconds():.1f} s; "
                           f"{workers[0] if workers else 0} worker(s) connected")
            for w in warnings:
                click.echo(f"WARNING: {printable(w)}")
        if warnings:
            fail(warnings[0] if len(warnings) == 1 else f"{len(warnings)} problems, first: {warnings[0]}")
    run_guarded(run)


def _seal_forever(settings: Settings, interval: float, max_events: int, application_name: str,
                  daily: Callable[[psycopg.Connection], None] | None = None) -> None:
    stop = threading.Event()
    next_check = 0.0

    def report(result: SealResult) -> None:
        click.echo(f"sealed {result.sealed} events (seq {result.first_seq}..{result.last_seq})")

    def between_rounds() -> None:
        nonlocal next_check
        if daily is None or time.monotonic() < next_check:
            return
        next_check = time.monotonic() + 60  # the daily duty is claimed in the database; look each minute
        try:
            daily(conn)
        except (PgAuditError, psycopg.Error) as exc:
            click.echo(f"archiving failed (sealing goes on): {str(exc).strip().splitlines()[0]}", err=True)

    # A lost session (server restart, failover, terminated backend) is reconnected with backoff,
    # so that sealing outlives it; a first connection that fails is a configuration error.
    retry_in = 0.0
    try:
        while True:
            try:
                with settings.connect(application_name) as conn:
                    if retry_in:
                        click.echo("reconnected", err=True)
                    else:
                        click.echo(f"sealing every {interval} s in schema {settings.schema}; Ctrl-C stops", err=True)
                    retry_in = 1.0
                    seal_continuously(conn, stop, interval=interval, max_events=max_events,
                                      audit_schema=settings.schema, on_round=report, between_rounds=between_rounds)
                    return
            except (psycopg.OperationalError, CannotConnect) as exc:
                if not retry_in:
                    raise
                reason = exc.message if isinstance(exc, CannotConnect) else (
                    f"connection lost ({str(exc).strip().splitlines()[0]})")
                click.echo(f"{reason}; reconnecting in {retry_in:.0f} s", err=True)
                time.sleep(retry_in)
                retry_in = min(retry_in * 2, 30.0)
    except KeyboardInterrupt:
        stop.set()
        click.echo("stopped", err=True)


@cli.command("seal")
@click.option("--max-events", type=click.IntRange(1, 1000000), default=10000, show_default=True,
              help="Events per sealing round.")
@click.option("--follow", is_flag=True, help="Keep sealing until stopped.")
@click.option("--interval", default=0.5, show_default=True, help="Pause between rounds when idle (s).")
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
            click.echo(f"sealed {result.sealed} events"
                       + (f" (seq {result.first_seq}..{result.last_seq})" if result.sealed else ""))
    run_guarded(run)


@cli.command("worker")
@click.option("--interval", default=0.5, show_default=True, help="Pause between rounds when idle (s).")
@click.option("--archive-target", envvar=ARCHIVE_URL_ENV, show_envvar=True,
              help="Also archive once a day, at the hour set with `archive settings --run-hour`, to this target.")
@_with_options(key_options)
@connection_options
def worker_command(settings: Settings, interval: float, archive_target: str | None, signing_key: Path | None,
                   public_key: Path | None, hmac_key_file: Path | None) -> None:
    """Run the background work until stopped: sealing, and the daily archive run if a target is given."""
    def run() -> None:
        daily = None
        if archive_target:
            keys = load_keys(signing_key=signing_key, hmac_key=hmac_key_file)
            target = open_target(archive_target)

            def daily(conn: psycopg.Connection) -> None:
                done = archive_if_due(conn, target, keys, audit_schema=settings.schema)
                if done is not None:
                    click.echo(f"archived {len(done.batches)} batches, {done.events} events, to {target.url}"
                               + (" (skipped: another archiver is running)" if done.skipped else ""))
        _seal_forever(settings, interval, 10000, WORKER_APPLICATION_NAME, daily)
    run_guarded(run)


@cli.command("record")
@click.argument("kind")
@click.option("--tenant", "tenant_id")
@click.option("--actor-type")
@click.option("--actor-id")
@click.option("--target-type")
@click.option("--target-id")
@click.option("--payload", default="{}", help="A JSON object.")
@click.option("--outcome", default="success", type=click.Choice(["success", "failure"]))
@click.option("--correlation-id")
@click.option("--idempotency-key")
@json_option
@connection_options
def record_command(settings: Settings, /, kind: str, payload: str, as_json: bool, **fields: Any) -> None:
    """Record one application event."""
    try:
        body = json.loads(payload)
    except json.JSONDecodeError as exc:
        fail(f"--payload is not JSON: {exc.msg}", 2)

    def run() -> None:
        with settings.connect() as conn, conn.transaction():
            event = record(conn, kind, payload=body, audit_schema=settings.schema, **fields)
            assert event is not None
            # An idempotent retry returns the event an earlier transaction wrote.
            written_now = conn.execute("SELECT pg_current_xact_id()::text = %s", (event.txid,)).fetchone()
        if as_json:
            emit_json(event)
        elif written_now and written_now[0]:
            click.echo(f"recorded {event.kind} as event {event.id} (pending until sealed)")
        else:
            key = printable(event.idempotency_key or "")
            click.echo(f"already recorded as event {event.id} with idempotency key {key}"
                       f" ({'seq ' + str(event.seq) if event.seq else 'pending'}): nothing written")
    run_guarded(run)


def what_it_says(event: Event) -> object:
    """A recorded event's payload; for a captured write, what changed (an UPDATE), or the row
    written (INSERT) or removed (DELETE)."""
    if event.origin != "capture":
        return event.payload
    return event.changed or event.row_after or event.row_before or event.payload


@cli.command("events")
@click.option("--tenant", "tenant_id")
@click.option("--kind-prefix")
@click.option("--target-type")
@click.option("--target-id")
@click.option("--correlation-id")
@click.option("--outcome", type=click.Choice(["success", "failure"]))
@click.option("--actor-type")
@click.option("--actor-id")
@click.option("--since", help="ISO 8601 time (UTC if no zone), or how long ago: 1h, 7d, ...")
@click.option("--until", help="ISO 8601 time (UTC if no zone), or how long ago: 1h, 7d, ...")
@click.option("--since-seq", type=int, help="Ascending, sealed events after this seq.")
@click.option("--before-seq", type=int, help="Newest first, sealed events before this seq.")
@click.option("--before-intake-id", type=int,
              help="Newest first, pending events written before this one (its intake_id), then sealed ones.")
@click.option("--page-size", type=click.IntRange(1, 500), default=50, show_default=True)
@json_option
@connection_options
def events_command(settings: Settings, /, since: str | None, until: str | None, as_json: bool, **filters: Any) -> None:
    """List events, newest first (pending ones lead)."""
    def run() -> None:
        with settings.connect() as conn:
            events = list_events(conn, since=parse_time(since), until=parse_time(until),
                                 audit_schema=settings.schema, **filters)
        if as_json:
            emit_json(events)
            return
        print_table(["seq", "occurred_at", "tenant", "actor", "kind", "target", "outcome", "payload / change"],
                    [[f"pending {e.intake_id}" if e.pending else e.seq, e.occurred_at, e.tenant_id,
                      f"{e.actor_type}:{e.actor_id}", e.kind,
                      f"{e.target_type}:{e.target_id}" if e.target_type else e.target_id,
                      e.outcome, what_it_says(e)] for e in events])
    run_guarded(run)


@cli.command("count")
@click.option("--tenant", "tenant_id")
@click.option("--since")
@click.option("--until")
@click.option("--prefix", "prefixes", multiple=True, help="Count per kind prefix (repeatable).")
@click.option("--months", type=click.IntRange(1, 120),
              help="Tally per calendar month (UTC) for this many months instead.")
@json_option
@connection_options
def count_command(settings: Settings, tenant_id: str | None, since: str | None, until: str | None,
                  prefixes: tuple[str, ...], months: int | None, as_json: bool) -> None:
    """Count events, in total and per kind prefix, or per month."""
    def run() -> None:
        with settings.connect() as conn:
            if months is not None:
                tally = monthly_event_counts(conn, tenant_id=tenant_id, month_count=months,
                                             by_kind_prefix=list(prefixes), audit_schema=settings.schema)
                if as_json:
                    emit_json(tally)
                else:
                    print_table(["month", "count", *prefixes],
                                [[m.month.strftime("%Y-%m"), m.count, *(m.by_kind_prefix[p] for p in prefixes)]
                                 for m in tally])
                return
            counted = count_events(conn, tenant_id=tenant_id, since=parse_time(since), until=parse_time(until),
                                   by_kind_prefix=list(prefixes), audit_schema=settings.schema)
        if as_json:
            emit_json(counted)
        else:
            print_table(["prefix", "count"],
                        [["(all)", counted.count], *([p, counted.by_kind_prefix[p]] for p in prefixes)])
    run_guarded(run)


@cli.command("prune")
@click.option("--older-than", required=True, help="Age like 90d, 12h, 2w.")
@click.option("--batch-size", type=click.IntRange(1, 100000), default=1000, show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@connection_options
def prune_command(settings: Settings, older_than: str, batch_size: int, yes: bool, as_json: bool) -> None:
    """Delete sealed events older than a cutoff, batch by batch (maintainer role)."""
    age = parse_duration(older_than)

    def run() -> None:
        with settings.connect("pgaudit prune") as conn:
            preview = preview_prune(conn, age, batch_size, audit_schema=settings.schema)
            if not as_json:
                click.echo(f"{preview.events} sealed events older than {preview.cutoff:%Y-%m-%d %H:%M:%S %Z}"
                           + (f" (seq {preview.first_seq}..{preview.last_seq}), {preview.batches} batches"
                              if preview.events else ""))
            if preview.events == 0:
                if as_json:
                    emit_json({"preview": preview, "deleted": 0})
                return
            if not yes and not click.confirm("Delete them?", default=False):
                fail("nothing deleted", 1)
            with click.progressbar(length=preview.events, label="pruning", file=sys.stderr) as bar:
                deleted = prune_all(conn, age, batch_size, audit_schema=settings.schema,
                                    on_batch=lambda r: bar.update(r.deleted))
        if as_json:
            emit_json({"preview": preview, "deleted": deleted})
        else:
            click.echo(f"deleted {deleted} events")
    run_guarded(run)


@cli.command("track")
@click.argument("table")
@click.option("--exclude", "exclude_columns", multiple=True, help="Column never stored (repeatable).")
@click.option("--redact", "redact_columns", multiple=True, help="Column stored as a marker (repeatable).")
@click.option("--tenant-column", help="Take the tenant from this column of the row.")
@click.option("--kind-prefix", help="Kinds become PREFIX.insert, ... (default schema.table).")
@click.option("--keep-noop-updates", is_flag=True, help="Also record UPDATEs that change nothing.")
@json_option
@connection_options
def track_command(settings: Settings, table: str, exclude_columns: tuple[str, ...], redact_columns: tuple[str, ...],
                  tenant_column: str | None, kind_prefix: str | None, keep_noop_updates: bool, as_json: bool) -> None:
    """Capture every write on TABLE (maintainer role, owning the table)."""
    def run() -> None:
        with settings.connect() as conn:
            entry = enable_tracking(conn, table, exclude_columns=list(exclude_columns),
                                    redact_columns=list(redact_columns), tenant_column=tenant_column,
                                    skip_noop_updates=not keep_noop_updates, kind_prefix=kind_prefix,
                                    audit_schema=settings.schema)
        if as_json:
            emit_json(entry)
        else:
            click.echo(f"tracking {entry.table_name}: kinds {entry.kind_prefix}.insert|update|delete|truncate, "
                       f"key {', '.join(entry.key_columns or []) or '(none)'}")
    run_guarded(run)


@cli.command("untrack")
@click.argument("table")
@connection_options
def untrack_command(settings: Settings, table: str) -> None:
    """Stop capturing TABLE."""
    def run() -> None:
        with settings.connect() as conn:
            was = disable_tracking(conn, table, audit_schema=settings.schema)
        click.echo(f"stopped tracking {table}" if was else f"{table} was not tracked")
    run_guarded(run)


@cli.command("tracked")
@json_option
@connection_options
def tracked_command(settings: Settings, as_json: bool) -> None:
    """List tracked tables and their options."""
    def run() -> None:
        with settings.connect() as conn:
            entries = tracked_tables(conn, audit_schema=settings.schema)
        if as_json:
            emit_json(entries)
            return
        print_table(["table", "kind_prefix", "key", "exclude", "redact", "tenant_column", "skip_noop", "since"],
                    [[t.table_name, t.kind_prefix, ",".join(t.key_columns or []), ",".join(t.exclude_columns),
                      ",".join(t.redact_columns), t.tenant_column, t.skip_noop_updates, t.enabled_at]
                     for t in entries])
    run_guarded(run)


@cli.command("history")
@click.argument("table")
@click.argument("key")
@click.option("--at", help="Show the row as it was at this time instead (ISO 8601, or how long ago: 1h, 7d).")
@json_option
@connection_options
def history_command(settings: Settings, table: str, key: str, at: str | None, as_json: bool) -> None:
    """Every captured version of one row, oldest first (KEY: a JSON array for composite keys)."""
    def run() -> None:
        when = parse_time(at)
        with settings.connect() as conn:
            if when is not None:
                image = row_as_of(conn, table, key, when, audit_schema=settings.schema)
                if as_json:
                    emit_json(image)
                elif image is None:
                    click.echo(f"no captured version of {table} {key} at {when.isoformat()}")
                else:
                    print_table(["column", "value"], [[column, value] for column, value in image.items()])
                return
            events = row_history(conn, table, key, audit_schema=settings.schema)
        if as_json:
            emit_json(events)
            return
        print_table(["seq", "occurred_at", "kind", "actor", "changed / row"],
                    [["pending" if e.pending else e.seq, e.occurred_at, e.kind, f"{e.actor_type}:{e.actor_id}",
                      e.changed if e.changed is not None else (e.row_after or e.row_before)] for e in events])
    run_guarded(run)


@cli.command("keygen")
@click.option("--dir", "directory", type=click.Path(path_type=Path), required=True,
              help="Where to write checkpoint-ed25519.pem, checkpoint-ed25519.pub.pem and checkpoint-hmac.key.")
def keygen_command(directory: Path) -> None:
    """Make checkpoint keys (never put them in the database)."""
    def run() -> None:
        for path in generate_keys(directory):
            click.echo(f"wrote {path}")
    run_guarded(run)


@cli.command("checkpoint")
@_with_options(key_options)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Checkpoint file to write.")
@json_option
@connection_options
def checkpoint_command(settings: Settings, signing_key: Path | None, public_key: Path | None,
                       hmac_key_file: Path | None, out: Path, as_json: bool) -> None:
    """Sign the latest block (Ed25519 and/or HMAC-SHA-256) into a checkpoint file."""
    def run() -> None:
        keys = load_keys(signing_key=signing_key, hmac_key=hmac_key_file)
        with settings.connect() as conn:
            document = make_checkpoint(conn, keys, audit_schema=settings.schema)
        try:  # a checkpoint is evidence: never replace one
            with out.open("x") as written:
                written.write(json.dumps(document, indent=2) + "\n")
        except FileExistsError:
            raise KeyFileError(f"{out} exists already; not overwriting a checkpoint") from None
        if as_json:
            emit_json(document)
        else:
            body = document["checkpoint"]
            click.echo(f"checkpoint of block {body['block_no']} (seq {body['last_seq']}, hash {body['block_hash']})"
                       f" signed with {', '.join(document['signatures'])}: {out}")
    run_guarded(run)


@cli.command("verify")
@click.option("--checkpoint", "checkpoint_file", type=click.Path(path_type=Path),
              help="Also prove the chain up to this signed checkpoint is unchanged.")
@_with_options(key_options)
@json_option
@connection_options
def verify_command(settings: Settings, checkpoint_file: Path | None, signing_key: Path | None,
                   public_key: Path | None, hmac_key_file: Path | None, as_json: bool) -> None:
    """Recompute the hash chain from Python; exit 1 naming the first block that does not match."""
    def run() -> None:
        document = read_checkpoint(checkpoint_file) if checkpoint_file else None
        keys = load_keys(public_key=public_key, hmac_key=hmac_key_file)
        signed_by = check_signatures(document, keys) if document else []
        hashes: dict[int, bytes] = {}
        with settings.connect() as conn:
            total = conn.execute(sql.SQL("SELECT count(*) FROM {}.blocks").format(sql.Identifier(settings.schema))
                                 ).fetchone()
            with click.progressbar(length=int(total[0]) if total else 0, label="verifying blocks",
                                   file=sys.stderr) as bar:
                def seen(block: Block) -> None:
                    hashes[block.block_no] = block.block_hash
                    bar.update(1)
                result = verify_chain(conn, audit_schema=settings.schema, on_block=seen)
        against = check_against_chain(document, result, hashes) if document and result.ok else None
        if as_json:
            emit_json({**dataclasses.asdict(result), "head": dataclasses.asdict(result.head) if result.head else None,
                       "checkpoint": {"file": str(checkpoint_file), "signatures": signed_by, "problem": against}
                       if document else None})
        elif result.ok:
            click.echo(f"chain intact: {result.blocks_checked} blocks, {result.events_checked} events verified; "
                       f"{result.pending} pending (not yet sealed)")
            if result.archived_through_block is not None:
                click.echo(f"archived through block {result.archived_through_block} (seq "
                           f"{result.archived_through_seq}); hot history starts at block {result.retained_from_block}"
                           f" (seq {result.retained_from_seq}); `pgaudit archive verify` checks the archive")
            elif result.retained_from_block > 1:
                click.echo(f"retained history starts at block {result.retained_from_block}"
                           f" (seq {result.retained_from_seq}); earlier blocks were pruned")
            if document and against is None:
                click.echo(f"checkpoint of block {document['checkpoint']['block_no']} holds "
                           f"(signature: {', '.join(signed_by)})")
        if not result.ok:
            fail(f"verification failed at block {result.bad_block}: {result.problem}")
        if against:
            fail(f"checkpoint failed: {against}")
    run_guarded(run)


@cli.group("limits", invoke_without_command=True)
@json_option
@connection_options
@click.pass_context
def limits_group(ctx: click.Context, settings: Settings, as_json: bool) -> None:
    """Show write rate limits; `limits set|unset|set-operation` change them at run time."""
    if ctx.invoked_subcommand is not None:
        return

    def run() -> None:
        with settings.connect() as conn:
            entries = rate_limits(conn, audit_schema=settings.schema)
        if as_json:
            emit_json(entries)
            return
        print_table(["scope", "target", "per_user", "per_tenant", "per_key", "window_s", "changed_at", "by"],
                    [[r.scope, r.target, r.per_user, r.per_tenant, r.per_key, r.window_seconds, r.changed_at,
                      r.changed_by] for r in entries])
    run_guarded(run)


@limits_group.command("set")
@click.argument("table")
@click.option("--per-user", type=click.IntRange(0, 10000000), default=60, show_default=True,
              help="Writes per user per window (0: none).")
@click.option("--per-tenant", type=click.IntRange(0, 10000000), default=600, show_default=True,
              help="Writes per tenant per window (0: none).")
@click.option("--window", "window_seconds", type=click.IntRange(1, 86400), default=60, show_default=True,
              help="Window in seconds.")
@connection_options
def limits_set_command(settings: Settings, table: str, per_user: int, per_tenant: int, window_seconds: int) -> None:
    """Limit writes on TABLE (one write is one statement)."""
    def run() -> None:
        with settings.connect() as conn:
            entry = enable_rate_limit(conn, table, per_user_per_minute=per_user or None,
                                      per_tenant_per_minute=per_tenant or None, window_seconds=window_seconds,
                                      audit_schema=settings.schema)
        click.echo(f"{table}: {entry.per_user or 'no'} writes per user, {entry.per_tenant or 'no'} per tenant,"
                   f" per {entry.window_seconds} s")
    run_guarded(run)


@limits_group.command("unset")
@click.argument("table")
@connection_options
def limits_unset_command(settings: Settings, table: str) -> None:
    """Remove TABLE's limits."""
    def run() -> None:
        with settings.connect() as conn:
            had = disable_rate_limit(conn, table, audit_schema=settings.schema)
        click.echo(f"removed the limits of {table}" if had else f"{table} had no limits")
    run_guarded(run)


@limits_group.command("set-operation")
@click.argument("operation")
@click.option("--per-minute", type=click.IntRange(1, 10000000), required=True, help="Calls per key per window.")
@click.option("--window", "window_seconds", type=click.IntRange(1, 86400), default=60, show_default=True,
              help="Window in seconds.")
@connection_options
def limits_operation_command(settings: Settings, operation: str, per_minute: int, window_seconds: int) -> None:
    """Override the limit of a named operation that application code checks with rate_limit()."""
    def run() -> None:
        with settings.connect() as conn:
            entry = set_operation_limit(conn, operation, per_minute, window_seconds=window_seconds,
                                        audit_schema=settings.schema)
        click.echo(f"{operation}: {entry.per_key} calls per key per {entry.window_seconds} s")
    run_guarded(run)


@cli.command("demo")
@connection_options
def demo_command(settings: Settings) -> None:
    """Install into a throwaway PostgreSQL (or a scratch schema of --dsn), record, seal and show events."""
    run_guarded(lambda: demo_module.main(settings.dsn or None))


cli.add_command(secrets_group)
cli.add_command(archive_group)


def main() -> None:
    cli()


def install_main() -> None:
    install_standalone()


if __name__ == "__main__":
    main()
