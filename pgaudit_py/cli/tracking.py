"""`pgaudit track`, `untrack`, `tracked` and `history`: capture of tables' writes."""

from __future__ import annotations

import click

from pgaudit_py.cli.common import (
    Settings,
    connection_options,
    json_option,
    parse_time,
    run_guarded,
    say,
    what_it_says,
)
from pgaudit_py.output import AsJson, Rendered, emit_json, listed, pair, print_table
from pgaudit_py.tracking import disable_tracking, enable_tracking, row_history, row_state_as_of, tracked_tables


@click.command("track")
@click.argument("table")
@click.option("--exclude", "exclude_columns", multiple=True, help="Column never stored (repeatable).")
@click.option("--redact", "redact_columns", multiple=True, help="Column stored as a marker (repeatable).")
@click.option("--tenant-column", help="Take the tenant from this column of the row.")
@click.option("--kind-prefix", help="Kinds become PREFIX.insert, ... (default schema.table).")
@click.option("--keep-noop-updates", is_flag=True, help="Also record UPDATEs that change nothing.")
@click.option("--baseline", is_flag=True, help="First record PREFIX.baseline for each row the table holds.")
@json_option
@connection_options
def track_command(settings: Settings, table: str, exclude_columns: tuple[str, ...], redact_columns: tuple[str, ...],
                  tenant_column: str | None, kind_prefix: str | None, keep_noop_updates: bool, baseline: bool,
                  as_json: bool) -> None:
    """Capture every write on TABLE (maintainer role, owning the table)."""
    def run() -> None:
        with settings.connect() as conn:
            entry = enable_tracking(conn, table, exclude_columns=list(exclude_columns),
                                    redact_columns=list(redact_columns), tenant_column=tenant_column,
                                    skip_noop_updates=not keep_noop_updates, kind_prefix=kind_prefix,
                                    baseline=baseline, audit_schema=settings.schema)
        if as_json:
            emit_json(entry)
        else:
            say(f"tracking {entry.table_name}: kinds {entry.kind_prefix}.insert|update|delete|truncate, "
                       f"key {', '.join(entry.key_columns or []) or '(none)'}"
                       + (f"; rows imaged as {entry.kind_prefix}.baseline" if baseline else ""))
    run_guarded(run)


@click.command("untrack")
@click.argument("table")
@connection_options
def untrack_command(settings: Settings, table: str) -> None:
    """Stop capturing TABLE."""
    def run() -> None:
        with settings.connect() as conn:
            was = disable_tracking(conn, table, audit_schema=settings.schema)
        say(f"stopped tracking {table}" if was else f"{table} was not tracked")
    run_guarded(run)


@click.command("tracked")
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
                    [[t.table_name, t.kind_prefix, listed(t.key_columns), listed(t.exclude_columns),
                      listed(t.redact_columns), t.tenant_column, t.skip_noop_updates, t.enabled_at]
                     for t in entries])
    run_guarded(run)


@click.command("history")
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
                found = row_state_as_of(conn, table, key, when, audit_schema=settings.schema)
                if as_json:
                    emit_json(found)
                elif found.image is not None:
                    print_table(["column", "value"], [[column, AsJson(value)] for column, value in found.image.items()])
                elif found.state == "absent":
                    say(f"{table} {key} did not exist at {when.isoformat()}")
                else:
                    say(f"no record of {table} {key} at {when.isoformat()}: before tracking began, or a row "
                               "from before tracking that had not changed by then")
                return
            events = row_history(conn, table, key, audit_schema=settings.schema)
        if as_json:
            emit_json(events)
            return
        print_table(["seq", "occurred_at", "kind", "actor", "changed / row"],
                    [[Rendered("pending") if e.pending else e.seq, e.occurred_at, e.kind,
                      pair(e.actor_type, e.actor_id), AsJson(what_it_says(e))] for e in events])
    run_guarded(run)
