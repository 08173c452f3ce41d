"""`pgaudit tokens ...`: the HTTP API's bearer tokens (maintainer role)."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from pgaudit_py.cli.common import Settings, connection_options, json_option, parse_age, run_guarded, say
from pgaudit_py.output import emit_json, print_table
from pgaudit_py.tokens import ROLES, create_token, list_tokens, revoke_token


@click.group("tokens")
def tokens_group() -> None:
    """Tokens of the HTTP API (`pgaudit serve`): the database keeps only their SHA-256."""


@tokens_group.command("create")
@click.option("--name", required=True, help="A name to find it by (letters, digits, _ . @ -).")
@click.option("--role", type=click.Choice(ROLES), default="reader", show_default=True,
              help="reader reads; maintainer may also run the archiver.")
@click.option("--tenant", "tenant_id", help="Read this tenant's events only (reader tokens).")
@click.option("--expires", help="Lifetime, such as 90d or 12h; default: until revoked.")
@json_option
@connection_options
def create_command(settings: Settings, name: str, role: str, tenant_id: str | None, expires: str | None,
                   as_json: bool) -> None:
    """Create a token and print it, once: it cannot be shown again."""
    expires_at = datetime.now(timezone.utc) + parse_age(expires, "--expires") if expires is not None else None

    def run() -> None:
        with settings.connect() as conn:
            new = create_token(conn, name, role, tenant_id=tenant_id, expires_at=expires_at,
                               audit_schema=settings.schema)
        if as_json:
            emit_json({"token": new.token, **new.info.__dict__})
            return
        click.echo(new.token)
        scope = f", tenant {new.info.tenant_id}" if new.info.tenant_id else ""
        until = f", expires {new.info.expires_at.isoformat()}" if new.info.expires_at else ""
        say(f"created {new.info.role} token {new.info.name} (id {new.info.token_id}{scope}{until}); "
                   "this is the only time it is shown", err=True)
    run_guarded(run)


@tokens_group.command("list")
@json_option
@connection_options
def list_command(settings: Settings, as_json: bool) -> None:
    """Every token (revoked and expired too), never the token itself."""
    def run() -> None:
        with settings.connect() as conn:
            tokens = list_tokens(conn, audit_schema=settings.schema)
        if as_json:
            emit_json(tokens)
            return
        now = datetime.now(timezone.utc)
        print_table(["id", "name", "role", "tenant", "state", "created_at", "by", "expires_at"],
                    [[t.token_id, t.name, t.role, t.tenant_id,
                      "revoked" if t.revoked_at else "expired" if t.expires_at and t.expires_at <= now else "live",
                      t.created_at, t.created_by, t.expires_at] for t in tokens])
    run_guarded(run)


@tokens_group.command("revoke")
@click.argument("token")
@connection_options
def revoke_command(settings: Settings, token: str) -> None:
    """Revoke the token with this id or name; the server refuses it from the next request."""
    def run() -> None:
        with settings.connect() as conn:
            gone = revoke_token(conn, token, audit_schema=settings.schema)
        say(f"revoked token {gone.name} (id {gone.token_id})")
    run_guarded(run)
