"""`pgaudit prune`: deleting old sealed events, batch by batch."""

from __future__ import annotations

import sys

import click

from pgaudit_py.cli.common import (
    Number,
    Settings,
    connection_options,
    fail,
    json_option,
    parse_age,
    run_guarded,
    say,
)
from pgaudit_py.output import counted, emit_json
from pgaudit_py.retention import preview_prune, prune_all


@click.command("prune")
@click.option("--older-than", required=True, help="Age like 90d, 12h, 2w.")
@click.option("--batch-size", type=Number(1, 100000), default=1000, show_default=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option
@connection_options
def prune_command(settings: Settings, older_than: str, batch_size: int, yes: bool, as_json: bool) -> None:
    """Delete sealed events older than a cutoff, batch by batch (maintainer role)."""
    age = parse_age(older_than, "--older-than")

    def run() -> None:
        with settings.connect("pgaudit prune") as conn:
            preview = preview_prune(conn, age, batch_size, audit_schema=settings.schema)
            if not as_json:
                say(f"{counted(preview.events, 'sealed event')} older than {preview.cutoff:%Y-%m-%d %H:%M:%S %Z}"
                           + (f" (seq {preview.first_seq}..{preview.last_seq}),"
                              f" {counted(preview.batches, 'batch', 'batches')}"
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
            say(f"deleted {counted(deleted, 'event')}")
    run_guarded(run)
