"""`pgaudit record`, `pgaudit events` and `pgaudit count`: writing and reading events."""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import timezone
from typing import Any

import click
import psycopg

from pgaudit_py import deep_json
from pgaudit_py.calls import MAX_SEQ
from pgaudit_py.cli.common import (
    Number,
    Settings,
    connection_options,
    exact_json,
    fail,
    json_option,
    parse_time,
    run_guarded,
    say,
    what_it_says,
)
from pgaudit_py.errors import CannotConnect
from pgaudit_py.events import Event, count_events, list_events, monthly_event_counts, record
from pgaudit_py.follow import follow
from pgaudit_py.output import AsJson, Rendered, dumps, emit_json, pair, part, print_table, printable
from pgaudit_py.sealing import seal_status
from pgaudit_py.session import tuples
from pgaudit_py.stop_signals import interrupted_by_stop_signals


@click.command("record")
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
    try:  # numbers as written, at any depth
        body = deep_json.loads(payload, exact_json, unique_keys=True)  # jsonb would keep one value of a key twice
    except json.JSONDecodeError as exc:
        fail(f"--payload is not JSON: {exc.msg}", 2)
    except ValueError as exc:  # an integer longer than Python reads (4,300 digits)
        fail(f"--payload cannot be read: {exc}", 2)

    def run() -> None:
        with settings.connect() as conn, conn.transaction():
            event = record(conn, kind, payload=body, audit_schema=settings.schema, **fields)
            assert event is not None
            # An idempotent retry returns the event an earlier transaction wrote.
            written_now = tuples(conn).execute("SELECT pg_catalog.pg_current_xact_id()::pg_catalog.text"
                                               " OPERATOR(pg_catalog.=) %s", (event.txid,)).fetchone()
        if as_json:
            emit_json(event)
        elif written_now and written_now[0]:
            say(f"recorded {event.kind} as event {event.id} (pending until sealed)")
        else:
            key = printable(event.idempotency_key or "")
            say(f"already recorded as event {event.id} with idempotency key {key}"
                       f" ({'seq ' + str(event.seq) if event.seq else 'pending'}): nothing written")
    run_guarded(run)


@click.command("events")
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
@click.option("--since-seq", type=Number(0, MAX_SEQ), help="Ascending, sealed events after this seq.")
@click.option("--before-seq", type=Number(0, MAX_SEQ), help="Newest first, sealed events before this seq.")
@click.option("--before-intake-id", type=Number(0, MAX_SEQ),
              help="Newest first, pending events written before this one (its intake_id), then sealed ones.")
@click.option("--page-size", type=Number(1, 500), default=50, show_default=True)
@click.option("--follow", is_flag=True,
              help="Print sealed events as they are sealed, in seq order, until Ctrl-C or SIGTERM "
                   "(after --since-seq, else from now).")
@json_option
@connection_options
def events_command(settings: Settings, /, since: str | None, until: str | None, as_json: bool, follow: bool,
                   **filters: Any) -> None:
    """List events, newest first (pending ones lead); or follow them as they are sealed."""
    if follow:
        for name in ("before_seq", "before_intake_id"):
            if filters.pop(name) is not None:
                fail(f"--follow reads forwards: --{name.replace('_', '-')} does not apply", 2)
        filters.pop("page_size")
        run_guarded(lambda: follow_events(settings, as_json, since=parse_time(since), until=parse_time(until),
                                          **filters))
        return

    def run() -> None:
        with settings.connect() as conn:
            events = list_events(conn, since=parse_time(since), until=parse_time(until),
                                 audit_schema=settings.schema, **filters)
        if as_json:
            emit_json(events)
            return
        print_table(["seq", "occurred_at", "tenant", "actor", "kind", "target", "outcome", "payload / change"],
                    [[Rendered(f"pending {e.intake_id}") if e.pending else e.seq, e.occurred_at, e.tenant_id,
                      pair(e.actor_type, e.actor_id), e.kind, pair(e.target_type, e.target_id),
                      e.outcome, AsJson(what_it_says(e))] for e in events])
    run_guarded(run)


def follow_events(settings: Settings, as_json: bool, since_seq: int | None, **filters: Any) -> None:
    """One line per event as it is sealed (a JSON object with --json). A lost connection is
    reopened, 1 s doubling to 30 s, and resumes after the last event printed; a stop asked for by
    Ctrl-C or SIGTERM ends it quietly, with status 0, whatever it was doing (connecting included)."""
    stopping = threading.Event()
    with interrupted_by_stop_signals(stopping), contextlib.suppress(KeyboardInterrupt):
        _follow(settings, as_json, since_seq, stopping, filters)


def _follow(settings: Settings, as_json: bool, since_seq: int | None, stopping: threading.Event,
            filters: dict[str, Any]) -> None:
    retry_in = 0.0
    while not stopping.is_set():
        try:
            with settings.connect() as conn:
                retry_in = 1.0
                if since_seq is None:  # "from now" is fixed once: a reconnect resumes from there
                    since_seq = seal_status(conn, audit_schema=settings.schema).last_seq
                for e in follow(conn, since_seq, audit_schema=settings.schema, stop=stopping, **filters):
                    click.echo(follow_line(e, as_json))
                    since_seq = e.seq
        except (psycopg.OperationalError, CannotConnect) as exc:
            if not retry_in:
                raise  # the first connection: a configuration error
            if stopping.is_set():
                break
            say(f"connection lost ({str(exc).strip().splitlines()[0]}); reconnecting in"
                f" {retry_in:.0f} s", err=True)
            stopping.wait(retry_in)
            retry_in = min(retry_in * 2, 30.0)


def follow_line(e: Event, as_json: bool) -> str:
    if as_json:  # ASCII: no line or paragraph separator in a value can split the line
        return dumps(e, ensure_ascii=True, separators=(",", ":"))
    says = what_it_says(e)
    return printable(" ".join(str(v) for v in (
        e.seq, e.occurred_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S"), part(e.tenant_id),
        pair(e.actor_type, e.actor_id), e.kind, pair(e.target_type, e.target_id), e.outcome,
        dumps(says, ensure_ascii=False, separators=(",", ":")) if isinstance(says, (dict, list)) else says)))


@click.command("count")
@click.option("--tenant", "tenant_id")
@click.option("--since")
@click.option("--until")
@click.option("--prefix", "prefixes", multiple=True, help="Count per kind prefix (repeatable).")
@click.option("--months", type=Number(1, 120),
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
