"""`pgaudit secrets ...`: per-tenant secrets from the command line.

Master keys never come from a command-line argument (other users can read those in ps): in
client-key mode from --master-key-file or PGAUDIT_MASTER_KEY; in server-key mode the server
reads its key file and the client holds nothing. Values come from standard input and go to
standard output, never through arguments either.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
import psycopg

from pgaudit_py import secrets
from pgaudit_py.cli.common import Number, Settings, connection_options, fail, json_option, run_guarded, say
from pgaudit_py.output import emit_json, print_table

master_key_option = click.option(
    "--master-key-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help=f"Client-key mode: file holding the master key (else ${secrets.MASTER_KEY_ENV}; "
         "with neither, the server's key file is used).")
tenant_option = click.option("--tenant", "tenant_id", required=True, help="Tenant the secret belongs to.")
batch_option = click.option("--batch-size", type=Number(1, 10000), default=100, show_default=True,
                            help="Keys or values per committed batch.")


def _client_key(master_key_file: Path | None) -> str | None:
    """The client-mode key, or None for server-key mode (no file and no environment variable)."""
    if master_key_file is None and secrets.MASTER_KEY_ENV not in os.environ:
        return None
    return secrets.load_master_key(master_key_file)


@click.group("secrets")
def secrets_group() -> None:
    """Per-tenant secrets under envelope encryption; every read is an audit event."""


@secrets_group.command("keygen")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def keygen_command(file: Path) -> None:
    """Write a new random master key to FILE (mode 0600; never overwrites)."""
    try:
        secrets.generate_master_key(file)
    except FileExistsError:
        fail(f"{file} exists; refusing to overwrite a key", 2)
    say(f"wrote a new master key to {file}")


@secrets_group.command("init")
@click.option("--server-key-file", help="Server-key mode: absolute path of a key file the database server reads.")
@master_key_option
@connection_options
def init_command(settings: Settings, server_key_file: str | None, master_key_file: Path | None) -> None:
    """Register the first master key (server key file, or the client's key)."""
    def run() -> None:
        key = None if server_key_file else secrets.load_master_key(master_key_file)
        with settings.connect() as conn, \
                secrets.use_master_key(conn, None, new_key=key, audit_schema=settings.schema), conn.transaction():
            added = secrets.add_master_key(conn, server_key_file, audit_schema=settings.schema)
            if added.state == "next":  # undone: another key is active, and this one would begin a rotation
                raise psycopg.Rollback()
        if added.state == "next":
            fail("a master key is active already; to change it, use pgaudit secrets rotate-master")
        mode = "server key file" if added.key_file else "client-supplied key"
        say(f"master key version {added.version} ({mode}) is {added.state}")
    run_guarded(run)


@secrets_group.command("declare")
@click.argument("key")
@click.argument("description")
@connection_options
def declare_command(settings: Settings, key: str, description: str) -> None:
    """Declare the secret slot KEY; only declared slots can be written."""
    def run() -> None:
        with settings.connect() as conn:
            secrets.declare_secret(conn, key, description, audit_schema=settings.schema)
        say(f"declared {key}")
    run_guarded(run)


@secrets_group.command("put")
@tenant_option
@click.argument("key")
@master_key_option
@connection_options
def put_command(settings: Settings, tenant_id: str, key: str, master_key_file: Path | None) -> None:
    """Store the value read from standard input as the tenant's secret KEY."""
    def run() -> None:
        try:
            value = sys.stdin.buffer.read().decode("utf-8")
        except UnicodeDecodeError:
            fail("the value on standard input is not UTF-8", 2)
        if not value:
            fail("no value on standard input", 2)
        with settings.connect() as conn, \
                secrets.use_master_key(conn, _client_key(master_key_file), audit_schema=settings.schema):
            version = secrets.put_secret(conn, tenant_id, key, value, audit_schema=settings.schema)
        say(f"stored {key} for tenant {tenant_id} (data key version {version})", err=True)
    run_guarded(run)


@secrets_group.command("get")
@tenant_option
@click.argument("key")
@master_key_option
@connection_options
def get_command(settings: Settings, tenant_id: str, key: str, master_key_file: Path | None) -> None:
    """Print the tenant's secret KEY to standard output (the read is recorded)."""
    def run() -> None:
        with settings.connect() as conn, \
                secrets.use_master_key(conn, _client_key(master_key_file), audit_schema=settings.schema):
            value = secrets.read_secret(conn, tenant_id, key, audit_schema=settings.schema)
        if value is None:
            fail(f"tenant {tenant_id} has no secret {key}")
        sys.stdout.write(value)
        sys.stdout.flush()
    run_guarded(run)


@secrets_group.command("delete")
@tenant_option
@click.argument("key")
@connection_options
def delete_command(settings: Settings, tenant_id: str, key: str) -> None:
    """Delete the tenant's secret KEY."""
    def run() -> None:
        with settings.connect() as conn:
            deleted = secrets.delete_secret(conn, tenant_id, key, audit_schema=settings.schema)
        if not deleted:
            fail(f"tenant {tenant_id} has no secret {key}")
        say(f"deleted {key} of tenant {tenant_id}")
    run_guarded(run)


@secrets_group.command("list")
@click.option("--tenant", "tenant_id", help="Only this tenant.")
@json_option
@connection_options
def list_command(settings: Settings, tenant_id: str | None, as_json: bool) -> None:
    """Which secrets are stored (never their values)."""
    def run() -> None:
        with settings.connect() as conn:
            stored = secrets.list_secrets(conn, tenant_id, audit_schema=settings.schema)
        if as_json:
            emit_json(stored)
            return
        print_table(["tenant", "key", "description", "key_version", "written_at", "by"],
                    [[s.tenant_id, s.key, s.description, s.key_version, s.written_at, s.written_by] for s in stored])
    run_guarded(run)


@secrets_group.command("rotate-master")
@click.option("--new-master-key-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help=f"Client-key mode: file holding the new key (else ${secrets.NEW_MASTER_KEY_ENV}).")
@click.option("--new-server-key-file", help="Server-key mode: absolute path of the new key file on the server.")
@master_key_option
@batch_option
@connection_options
def rotate_master_command(settings: Settings, new_master_key_file: Path | None, new_server_key_file: str | None,
                          master_key_file: Path | None, batch_size: int) -> None:
    """Re-wrap every tenant's data key under a new master key, in batches; run again to resume."""
    def run() -> None:
        new_key = None
        if new_master_key_file or secrets.NEW_MASTER_KEY_ENV in os.environ:
            new_key = secrets.load_master_key(new_master_key_file, env=secrets.NEW_MASTER_KEY_ENV)
        with settings.connect("pgaudit secrets") as conn, \
                secrets.use_master_key(conn, _client_key(master_key_file), new_key=new_key,
                                       audit_schema=settings.schema):
            if new_key or new_server_key_file:
                added = secrets.add_master_key(conn, new_server_key_file, audit_schema=settings.schema)
                if added.state == "active":  # a script rotating away from a leaked key must not hear "done"
                    fail("the new master key is the one already active: nothing to rotate to")
                say(f"rotating to master key version {added.version}", err=True)

            def progress(step: secrets.MasterRotation) -> None:
                if step.from_version != step.to_version:
                    say(f"  re-wrapped {step.rewrapped} data keys, {step.remaining} to go", err=True)

            final = secrets.rotate_master_key(conn, batch_size, audit_schema=settings.schema, on_batch=progress)
        if final.from_version == final.to_version:
            click.echo("no master-key rotation in progress (give the new key to start one)")
        else:
            say(f"master key version {final.to_version} is active; version {final.from_version} is retired")
    run_guarded(run)


@secrets_group.command("rotate-tenant")
@tenant_option
@master_key_option
@batch_option
@connection_options
def rotate_tenant_command(settings: Settings, tenant_id: str, master_key_file: Path | None, batch_size: int) -> None:
    """Re-encrypt the tenant's values under a new data key, in batches; run again to resume."""
    def run() -> None:
        def progress(step: secrets.TenantKeyRotation) -> None:
            say(f"  re-encrypted {step.reencrypted} values, {step.remaining} to go", err=True)

        with settings.connect("pgaudit secrets") as conn, \
                secrets.use_master_key(conn, _client_key(master_key_file), audit_schema=settings.schema):
            final = secrets.rotate_tenant_key(conn, tenant_id, batch_size, audit_schema=settings.schema,
                                              on_batch=progress)
        say(f"tenant {tenant_id}: data key version {final.to_version} in use; "
                   f"version {final.from_version} deleted")
    run_guarded(run)
