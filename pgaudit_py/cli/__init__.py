"""The `pgaudit` and `pgaudit-install` commands: a thin shell over the library, one module per
group of commands.

Connection: --dsn, else PGAUDIT_DSN, else libpq's own PG* variables. Tables for people, --json
for scripts. Exit 0 on success, 1 on failure, 2 on bad input, each with a one-line reason.
"""

from __future__ import annotations

import click

from pgaudit_py.cli import (
    archive,
    chain,
    events,
    install,
    limits,
    retention,
    sealing,
    secrets,
    serve,
    tokens,
    tracking,
    types,
)
from pgaudit_py.cli.common import Group
from pgaudit_py.cli.install import install_standalone

__all__ = ["cli", "install_main", "install_standalone", "main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pgaudit-py", prog_name="pgaudit", message="%(prog)s %(version)s")
def cli() -> None:
    """pgaudit_py: an append-only, tamper-evident audit log inside PostgreSQL."""


for command in (install.install_command, install.status_command, install.demo_command,
                sealing.seal_command, sealing.worker_command,
                events.record_command, events.events_command, events.count_command,
                retention.prune_command,
                tracking.track_command, tracking.untrack_command, tracking.tracked_command, tracking.history_command,
                chain.keygen_command, chain.checkpoint_command, chain.verify_command,
                limits.limits_group, secrets.secrets_group, archive.archive_group, tokens.tokens_group,
                types.types_group, serve.serve_command):
    cli.add_command(command)


def main() -> None:
    cli()


def install_main() -> None:
    install_standalone()
