"""`pgaudit limits ...`: write rate limits."""

from __future__ import annotations

import click

from pgaudit_py.cli.common import (
    Number,
    Settings,
    connection_options,
    json_option,
    run_guarded,
    say,
)
from pgaudit_py.output import emit_json, print_table
from pgaudit_py.rate_limits import disable_rate_limit, enable_rate_limit, rate_limits, set_operation_limit


@click.group("limits", invoke_without_command=True)
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
@click.option("--per-user", type=Number(0, 10000000), default=60, show_default=True,
              help="Writes per user per window (0: none).")
@click.option("--per-tenant", type=Number(0, 10000000), default=600, show_default=True,
              help="Writes per tenant per window (0: none).")
@click.option("--window", "window_seconds", type=Number(1, 86400), default=60, show_default=True,
              help="Window in seconds.")
@connection_options
def limits_set_command(settings: Settings, table: str, per_user: int, per_tenant: int, window_seconds: int) -> None:
    """Limit writes on TABLE (one write is one statement)."""
    def run() -> None:
        with settings.connect() as conn:
            entry = enable_rate_limit(conn, table, per_user_per_minute=per_user or None,
                                      per_tenant_per_minute=per_tenant or None, window_seconds=window_seconds,
                                      audit_schema=settings.schema)
        say(f"{table}: {entry.per_user or 'no'} writes per user, {entry.per_tenant or 'no'} per tenant,"
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
        say(f"removed the limits of {table}" if had else f"{table} had no limits")
    run_guarded(run)


@limits_group.command("set-operation")
@click.argument("operation")
@click.option("--per-minute", type=Number(1, 10000000), required=True, help="Calls per key per window.")
@click.option("--window", "window_seconds", type=Number(1, 86400), default=60, show_default=True,
              help="Window in seconds.")
@connection_options
def limits_operation_command(settings: Settings, operation: str, per_minute: int, window_seconds: int) -> None:
    """Override the limit of a named operation that application code checks with rate_limit()."""
    def run() -> None:
        with settings.connect() as conn:
            entry = set_operation_limit(conn, operation, per_minute, window_seconds=window_seconds,
                                        audit_schema=settings.schema)
        say(f"{operation}: {entry.per_key} calls per key per {entry.window_seconds} s")
    run_guarded(run)
