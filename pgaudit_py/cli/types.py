"""`pgaudit types ...`: event kinds with payload schemas, and the shipped catalogues of them."""

from __future__ import annotations

import click

from pgaudit_py.calls import table_read
from pgaudit_py.catalogues import catalogue_names, load_catalogue, read_catalogue
from pgaudit_py.cli.common import Settings, connection_options, json_option, run_guarded, say
from pgaudit_py.events import EventType
from pgaudit_py.output import emit_json, print_table


@click.group("types")
def types_group() -> None:
    """Registered event kinds and their payload schemas; shipped catalogues of them."""


@types_group.command("load")
@click.argument("name")
@click.option("--replace", is_flag=True, help="Replace kinds registered otherwise (by hand, or by another catalogue).")
@connection_options
def load_command(settings: Settings, name: str, replace: bool) -> None:
    """Register every kind of a shipped catalogue (all or none); loading it again changes nothing."""
    def run() -> None:
        with settings.connect() as conn:
            loaded = load_catalogue(conn, name, replace=replace, audit_schema=settings.schema)
        changed = sum(1 for k in loaded if k.changed)
        say(f"catalogue {name}: {len(loaded)} kinds, {changed} registered or changed")
    run_guarded(run)


@types_group.command("list")
@json_option
@connection_options
def list_command(settings: Settings, as_json: bool) -> None:
    """Registered kinds (with the catalogue that registered each), and the shipped catalogues (with --json, their
    kinds' descriptions)."""
    def run() -> None:
        with settings.connect() as conn:
            kinds = table_read(settings.schema, "event_types", EventType, order_by="kind").all(conn)
        if as_json:
            shipped = {n: {"description": c["description"],
                           "kinds": {k: e["description"] for k, e in sorted(c["kinds"].items())}}
                       for n, c in ((n, read_catalogue(n)) for n in catalogue_names())}
            emit_json({"kinds": kinds, "catalogues": shipped})
            return
        print_table(["kind", "strict", "catalogue", "registered_at", "by"],
                    [[k.kind, k.strict, k.catalogue, k.registered_at, k.registered_by] for k in kinds])
        say(f"shipped catalogues: {', '.join(catalogue_names())} (pgaudit types load NAME)")
    run_guarded(run)

