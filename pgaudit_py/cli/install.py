"""`pgaudit install`, `pgaudit-install`, `pgaudit status` and `pgaudit demo`: the installation and its health."""

from __future__ import annotations

import dataclasses

import click
import psycopg
from psycopg import sql

from pgaudit_py import demo as demo_module
from pgaudit_py.cli.common import (
    Command,
    Seconds,
    Settings,
    _with_options,
    connection_options,
    fail,
    json_option,
    run_guarded,
    say,
)
from pgaudit_py.errors import InvalidArgument
from pgaudit_py.install_script import install_script
from pgaudit_py.installer import InstallStatus, install, status
from pgaudit_py.output import emit_json
from pgaudit_py.sealing import (
    WORKER_APPLICATION_NAME,
    schedule_sealing,
    seal_status,
)
from pgaudit_py.session import tuples


def _install(settings: Settings, dry_run: bool, show_status: bool, schedule_seal: bool, server_keys: bool,
             as_json: bool, as_sql: bool = False) -> None:
    if as_sql and (dry_run or show_status or schedule_seal or server_keys):
        raise InvalidArgument("--sql prints the install itself: it takes none of --dry-run, --status,"
                              " --schedule-seal, --server-keys")
    if show_status and (dry_run or schedule_seal or server_keys):
        raise InvalidArgument("--status only reads: it takes none of --dry-run, --schedule-seal, --server-keys")
    with settings.connect("pgaudit install") as conn:
        if as_sql:
            click.echo(install_script(conn, settings.schema), nl=False)
            return
        if show_status:
            result = status(conn, settings.schema)
            if as_json:
                emit_json({**dataclasses.asdict(result), "intact": result.intact})
            else:
                say(f"schema:             {result.schema}")
                say(f"installed version:  {result.installed_version or '(not installed)'}")
                say(f"applied migrations: {', '.join(result.applied_migrations) or '(none)'}")
                say(f"pending migrations: {', '.join(result.pending_migrations) or '(none)'}")
                _say_findings(result)
            if not result.intact:
                fail(f"installation in schema {settings.schema!r} is not intact")
            return
        report = install(conn, settings.schema, dry_run=dry_run, server_keys=server_keys)
        if schedule_seal and not dry_run:
            job = schedule_sealing(conn, audit_schema=settings.schema)
            say(f"pg_cron job {job} seals every minute", err=True)
        if as_json:
            emit_json(report)
        elif dry_run:
            say(f"would apply migrations: {', '.join(report.migrations) or '(none)'}")
            say(f"would re-apply: {', '.join(report.sql_files)}")
        elif not report.changed:
            say(f"pgaudit_py {report.version} in schema {report.schema}: already up to date, nothing changed")
        else:
            say(f"pgaudit_py {report.version} installed in schema {report.schema}")
            say(f"  migrations applied: {', '.join(report.migrations) or '(none)'}")
            say(f"  roles created:      {', '.join(report.created_roles) or '(none)'}")
        if not dry_run:  # on stderr, so after --json too
            _say_what_status_finds(conn, settings.schema, report.joined_owner)


def _say_what_status_finds(conn: psycopg.Connection, schema: str, joined_owner: bool) -> None:
    """After an install: what it could not do as the role that ran it (the event triggers need a
    superuser), as status names it, so that nobody learns it only from a later status."""
    if joined_owner:
        say(f"WARNING: the roles of schema {schema!r} already existed (an earlier install, here or in another"
            f" database of this cluster): this role is now a member of {schema}_owner, which may act as the owner"
            " in every database that uses this schema name (give this one its own with --schema)", err=True)
    try:
        found = status(conn, schema)
    except psycopg.Error:
        say("WARNING: the installation's status could not be read (pgaudit status)", err=True)
        return
    _say_findings(found, err=True)


def _say_findings(found: InstallStatus, err: bool = False) -> None:
    for problem in found.problems:
        say(f"PROBLEM: {problem}", err=err)
    for warning in found.warnings:
        say(f"WARNING: {warning}", err=err)


_install_options = [
    click.option("--dry-run", is_flag=True, help="Show what would run; change nothing."),
    click.option("--status", "show_status", is_flag=True,
                 help="Show version, pending migrations and integrity problems; exit 1 unless intact."),
    click.option("--schedule-seal", is_flag=True,
                 help="Also have pg_cron seal every minute (pg_cron must be installed in this database)."),
    click.option("--server-keys", is_flag=True,
                 help="Let the owner role read server key files (secrets in server-key mode; superuser only)."),
    click.option("--sql", "as_sql", is_flag=True,
                 help="Print the SQL an install or upgrade would run now, for psql or a migrator; change nothing."),
    json_option,
]


@click.command("install")
@_with_options(_install_options)
@connection_options
def install_command(settings: Settings, dry_run: bool, show_status: bool, schedule_seal: bool, server_keys: bool,
                    as_sql: bool, as_json: bool) -> None:
    """Install or upgrade pgaudit_py (safe to run again)."""
    run_guarded(lambda: _install(settings, dry_run, show_status, schedule_seal, server_keys, as_json, as_sql))


@click.command("pgaudit-install", cls=Command, context_settings={"help_option_names": ["-h", "--help"]})
@_with_options(_install_options)
@connection_options
def install_standalone(settings: Settings, dry_run: bool, show_status: bool, schedule_seal: bool,
                       server_keys: bool, as_sql: bool, as_json: bool) -> None:
    """Install or upgrade pgaudit_py into a database (safe to run again, and concurrently)."""
    run_guarded(lambda: _install(settings, dry_run, show_status, schedule_seal, server_keys, as_json, as_sql))


@click.command("status")
@click.option("--lag-warning", type=Seconds(), default=60.0, show_default=True,
              help="Warn when the oldest pending event is older (s).")
@json_option
@connection_options
def status_command(settings: Settings, lag_warning: float, as_json: bool) -> None:
    """Installation integrity and sealing lag."""
    def run() -> None:
        with settings.connect() as conn:
            installed = status(conn, settings.schema)
            sealing = seal_status(conn, audit_schema=settings.schema) if installed.installed_version else None
            # A session any role may name so: only one whose role may seal is a worker.
            seal_function = sql.SQL("{}.seal(pg_catalog.int4)").format(sql.Identifier(settings.schema)).as_string(conn)
            workers = tuples(conn).execute("SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity"
                                           " WHERE application_name OPERATOR(pg_catalog.=) %s"
                                           " AND datname OPERATOR(pg_catalog.=) pg_catalog.current_database()"
                                           " AND pg_catalog.has_function_privilege(usesysid, %s, 'EXECUTE')",
                                           (WORKER_APPLICATION_NAME, seal_function)).fetchone() if sealing else None
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
            say(f"schema {installed.schema}: version {installed.installed_version or '(not installed)'}, "
                       f"pending migrations: {', '.join(installed.pending_migrations) or 'none'}")
            if sealing:
                say(f"sealed up to seq {sealing.last_seq}; {sealing.pending} pending, "
                           f"oldest waited {sealing.lag.total_seconds():.1f} s; "
                           f"{workers[0] if workers else 0} worker(s) connected")
            for w in warnings:
                say(f"WARNING: {w}")
        if warnings:
            fail(warnings[0] if len(warnings) == 1 else f"{len(warnings)} problems, first: {warnings[0]}")
    run_guarded(run)


@click.command("demo")
@connection_options
def demo_command(settings: Settings) -> None:
    """Install into a throwaway PostgreSQL (or a scratch schema of --dsn), record, seal and show events."""
    run_guarded(lambda: demo_module.main(settings.dsn or None))
