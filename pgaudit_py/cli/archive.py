"""`pgaudit archive ...`: move old sealed events to object storage, and check what is there."""

from __future__ import annotations

import hashlib
import sys
import tempfile
from pathlib import Path

import click
from psycopg import sql

from pgaudit_py import archive as archiving
from pgaudit_py import archive_query, verify_archive
from pgaudit_py.archive_targets import ARCHIVE_URL_ENV, FileTarget, Target, open_target
from pgaudit_py.checkpoint import load_keys
from pgaudit_py.cli.common import (
    Number,
    Settings,
    _with_options,
    connection_options,
    fail,
    json_option,
    key_options,
    parse_age,
    run_guarded,
    say,
)
from pgaudit_py.errors import InvalidArgument
from pgaudit_py.output import counted, emit_json, print_table
from pgaudit_py.session import tuples

target_option = click.option("--target", envvar=ARCHIVE_URL_ENV, show_envvar=True,
                             help="file:///dir or s3://bucket/prefix.")
sse_option = click.option("--sse", type=click.Choice(["AES256", "aws:kms"]),
                          help="S3 server-side encryption for the objects written.")


@click.group("archive")
def archive_group() -> None:
    """Cold archival of old sealed events to object storage, as signed batches."""


@archive_group.command("run")
@target_option
@click.option("--older-than", help="Archive events older than this (90d, 12h, ...); default: the hot retention "
                                   "kept in the database.")
@click.option("--max-batches", type=Number(min=1), help="Stop after this many batches.")
@sse_option
@_with_options(key_options)
@connection_options
def run_command(settings: Settings, target: str | None, older_than: str | None, max_batches: int | None,
                sse: str | None, signing_key: Path | None, public_key: Path | None,
                hmac_key_file: Path | None) -> None:
    """Archive due batches; a re-run after a crash completes an interrupted batch."""
    age = parse_age(older_than, "--older-than") if older_than is not None else None

    def run() -> None:
        keys = load_keys(signing_key=signing_key, hmac_key=hmac_key_file)
        where = open_target(target, sse=sse)

        def progress(batch: archiving.ArchiveBatch) -> None:
            say(f"  {batch.batch_id}: {counted(batch.event_count, 'event')}"
                       f" (seq {batch.first_seq}..{batch.last_seq})", err=True)

        with settings.connect("pgaudit archive") as conn:
            done = archiving.archive(conn, where, keys, older_than=age, max_batches=max_batches,
                                     audit_schema=settings.schema, on_batch=progress)
        if done.skipped:
            click.echo("another archiver is running in this database; skipped")
        else:
            say(f"archived {counted(len(done.batches), 'batch', 'batches')},"
                       f" {counted(done.events, 'event')}, to {where.url}")
    run_guarded(run)


@archive_group.command("list")
@json_option
@connection_options
def list_command(settings: Settings, as_json: bool) -> None:
    """Archived batches: ranges, counts, sizes, manifest hash, when and by whom."""
    def run() -> None:
        with settings.connect() as conn:
            batches = archiving.list_batches(conn, audit_schema=settings.schema)
        if as_json:
            emit_json(batches)
            return
        print_table(["batch", "state", "blocks", "seq", "events", "bytes", "gz_bytes", "manifest_sha256",
                     "archived_at", "by"],
                    [[b.batch_id, b.state, f"{b.first_block}..{b.last_block}", f"{b.first_seq}..{b.last_seq}",
                      b.event_count, b.data_bytes, b.gz_bytes,
                      b.manifest_sha256.hex()[:16] if b.manifest_sha256 else None, b.archived_at, b.archived_by]
                     for b in batches])
    run_guarded(run)


@archive_group.command("verify")
@target_option
@click.option("--batch", "batch_id", help="Check only this batch.")
@click.option("--offline", is_flag=True,
              help="No database: check the whole archive with the public key alone (the standalone verifier).")
@click.option("--checkpoint", "checkpoint_file", type=click.Path(path_type=Path, dir_okay=False),
              help="With --offline: a signed checkpoint whose block must be in the archive.")
@_with_options(key_options)
@json_option
@connection_options
def verify_command(settings: Settings, target: str | None, batch_id: str | None, offline: bool,
                   checkpoint_file: Path | None, signing_key: Path | None, public_key: Path | None,
                   hmac_key_file: Path | None, as_json: bool) -> None:
    """Download and check batches: hashes, signatures, manifest chain, links; exit 1 naming each problem."""
    if offline:
        run_guarded(lambda: _verify_offline(target, public_key, checkpoint_file))
        return

    def run() -> None:
        keys = load_keys(public_key=public_key, hmac_key=hmac_key_file)
        where = open_target(target)
        with settings.connect() as conn:
            result = archiving.verify_archive(conn, where, keys, batch_id=batch_id, audit_schema=settings.schema)
        if as_json:
            emit_json({**result.__dict__, "ok": result.ok})
        else:
            say(f"checked {counted(result.batches_checked, 'batch', 'batches')},"
                       f" {counted(result.events_checked, 'event')} in {where.url}")
            archived = f"archived through block {result.archived_through_block} (seq {result.archived_through_seq})"
            if result.archived_through_block is None:
                click.echo("no batch has left the live log yet")
            elif result.hot_from_block is None:
                say(f"{archived}; no sealed block after it")
            else:
                say(f"{archived}; hot from block {result.hot_from_block} (seq {result.hot_from_seq})")
            for problem in result.problems:
                say(f"PROBLEM: {problem}")  # an object's name may hold anything
        if not result.ok:
            fail(result.problems[0] if len(result.problems) == 1
                 else f"{len(result.problems)} problems, first: {result.problems[0]}")
    run_guarded(run)


def _verify_offline(target: str | None, public_key: Path | None, checkpoint: Path | None) -> None:
    """The standalone verifier (pgaudit_py/verify_archive.py) over the target's objects, downloaded
    to a temporary directory when they are not in one already."""
    if public_key is None:
        raise InvalidArgument("--offline checks the manifests' Ed25519 signatures: give --public-key")
    load_keys(public_key=public_key)  # a missing or unreadable key is one line, not the verifier's traceback
    where = open_target(target)
    with tempfile.TemporaryDirectory() as scratch:
        directory = _local_directory(where, Path(scratch))
        code = verify_archive.main([str(directory), "--public-key", str(public_key),
                                    *(["--checkpoint", str(checkpoint)] if checkpoint else [])])
    if code:
        sys.exit(code)


@archive_group.command("query")
@click.argument("sql")
@target_option
@json_option
def query_command(sql: str, target: str | None, as_json: bool) -> None:
    """Query an archive with DuckDB, no database: the view `events` (one row per archived event)."""
    def run() -> None:
        where = open_target(target)
        with tempfile.TemporaryDirectory() as scratch:
            directory = _local_directory(where, Path(scratch))
            columns, rows = archive_query.query(directory, sql)
        if as_json:
            emit_json([dict(zip(columns, row, strict=True)) for row in rows])
        else:
            print_table(columns, [list(row) for row in rows])
    run_guarded(run)


def _local_directory(where: Target, scratch: Path) -> Path:
    """The target's own directory, or its objects downloaded into `scratch` (on S3)."""
    return where.directory if isinstance(where, FileTarget) else _download(where, scratch)


def _download(where: Target, directory: Path) -> Path:
    """The target's batch objects into `directory`; any other object is downloaded as an empty file
    under a name the verifier reports (it is no batch's), or named here when no file can carry it."""
    for key in where.list_keys():
        if verify_archive.MANIFEST.fullmatch(key) or verify_archive.DATA.fullmatch(key):
            with (directory / key).open("wb") as f:
                where.download(key, f)
        else:
            marker = "stray-object-" + hashlib.sha256(key.encode()).hexdigest()[:16]
            (directory / marker).write_text(key)
    return directory


@archive_group.command("verifier")
def verifier_command() -> None:
    """Print the standalone verifier (Python's standard library and `cryptography` alone), to read and run."""
    click.echo((Path(verify_archive.__file__)).read_text(), nl=False)


@archive_group.command("restore")
@target_option
@click.option("--batch", "batch_id", required=True, help="The batch to restore.")
@connection_options
def restore_command(settings: Settings, target: str | None, batch_id: str) -> None:
    """Load a batch into <schema>.restored_events for querying; the live log is not touched."""
    def run() -> None:
        with settings.connect() as conn:
            n = archiving.restore_batch(conn, open_target(target), batch_id, audit_schema=settings.schema)
        say(f"restored {counted(n, 'event')} of {batch_id} into {settings.schema}.restored_events")
    run_guarded(run)


@archive_group.command("settings")
@click.option("--hot-retention", help="Keep events this long in the log (90d, ...).")
@click.option("--max-batch-events", type=Number(1, 1000000), help="Events per batch (whole blocks).")
@click.option("--run-hour", type=Number(0, 23), help="UTC hour at which `pgaudit worker` archives.")
@click.option("--never", is_flag=True, help="`pgaudit worker` does not archive.")
@connection_options
def settings_command(settings: Settings, hot_retention: str | None, max_batch_events: int | None,
                     run_hour: int | None, never: bool) -> None:
    """Show or change the archival defaults kept in the database."""
    retention = parse_age(hot_retention, "--hot-retention") if hot_retention is not None else None

    def run() -> None:
        s = sql.Identifier(settings.schema)
        with settings.connect() as conn:
            current = tuples(conn).execute(
                sql.SQL("SELECT hot_retention::pg_catalog.text, max_batch_events, run_hour_utc,"
                        " last_run_on FROM {}.archive_settings").format(s)).fetchone()
            assert current is not None
            if retention is not None or max_batch_events is not None or run_hour is not None or never:
                hour = None if never else run_hour if run_hour is not None else current[2]
                current = tuples(conn).execute(
                    sql.SQL("SELECT hot_retention::pg_catalog.text, max_batch_events, run_hour_utc,"
                            " last_run_on FROM {}.set_archive_settings(%s::interval, %s, %s)").format(s),
                    (retention if retention is not None else current[0],
                     max_batch_events if max_batch_events is not None else current[1], hour)).fetchone()
                assert current is not None
        say(f"hot retention {current[0]}, {current[1]} events per batch, worker archives "
                   + (f"at {current[2]:02d}:00 UTC (last on {current[3] or 'no day yet'})" if current[2] is not None
                      else "never"))
    run_guarded(run)
