"""`pgaudit demo`: install, record as two actors and tenants, seal, and show what the log says.

Without a DSN it starts a throwaway PostgreSQL; with one it works in a scratch schema (with its
own roles) and removes both afterwards.
"""

from __future__ import annotations

import secrets

import click
import psycopg
from psycopg import sql

from pgaudit_py.context import audit_context
from pgaudit_py.dsn import connect
from pgaudit_py.errors import InvalidArgument
from pgaudit_py.events import count_events, list_events, monthly_event_counts, record
from pgaudit_py.installer import crypto_schema, install, role_names
from pgaudit_py.output import counted, pair, print_table
from pgaudit_py.sealing import seal
from pgaudit_py.session import tuples
from pgaudit_py.tempdb import TemporaryCluster

PREFIXES = ["order.", "user."]


def show(conn: psycopg.Connection, schema: str) -> None:
    """Record a handful of events, seal them, and print the log, the counts and the tally."""
    with audit_context(conn, actor_type="user", actor_id="alice", tenant_id="acme", correlation_id="checkout-1"):
        record(conn, "order.created", target_type="order", target_id="o-1001", payload={"total": 42.5},
               audit_schema=schema)
        record(conn, "order.paid", target_type="order", target_id="o-1001", payload={"method": "card"},
               audit_schema=schema)
    with audit_context(conn, actor_type="user", actor_id="bob", tenant_id="globex", client_addr="203.0.113.7"):
        record(conn, "user.login", target_type="user", target_id="bob", audit_schema=schema)
        record(conn, "order.refunded", target_type="order", target_id="o-77", payload={"reason": "damaged"},
               outcome="failure", audit_schema=schema)
    with audit_context(conn, actor_type="service", actor_id="billing", tenant_id="acme"):
        record(conn, "invoice.sent", target_type="invoice", target_id="inv-9", audit_schema=schema)
    sealed = seal(conn, audit_schema=schema)
    click.echo(f"\nsealed {counted(sealed.sealed, 'event')} (seq {sealed.first_seq}..{sealed.last_seq})\n")

    click.echo(f"SELECT * FROM {schema}.list_events();")
    print_table(["seq", "tenant", "actor", "kind", "target", "outcome"],
                [[e.seq, e.tenant_id, pair(e.actor_type, e.actor_id), e.kind, pair(e.target_type, e.target_id),
                  e.outcome] for e in list_events(conn, audit_schema=schema)])
    tally = count_events(conn, by_kind_prefix=PREFIXES, audit_schema=schema)
    click.echo(f"\nSELECT * FROM {schema}.count_events(by_kind_prefix => '{{order.,user.}}');")
    print_table(["count", "by_kind_prefix"], [[tally.count, tally.by_kind_prefix]])
    click.echo(f"\nSELECT * FROM {schema}.monthly_event_counts(month_count => 3, by_kind_prefix => '{{order.}}');")
    print_table(["month", "count", "by_kind_prefix"],
                [[m.month.strftime("%Y-%m"), m.count, m.by_kind_prefix]
                 for m in monthly_event_counts(conn, month_count=3, by_kind_prefix=["order."], audit_schema=schema)])


def _drop_scratch(conn: psycopg.Connection, schema: str) -> None:
    # With the pgcrypto the install made, in a schema named after the scratch one, where the
    # database had none: a later install would otherwise use it.
    for scratch in (schema, crypto_schema(schema)):
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(scratch)))
    for role in role_names(schema).values():
        if tuples(conn).execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) %s",
                                (role,)).fetchone():
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def main(dsn: str | None) -> None:
    if dsn is None:
        click.echo("starting a throwaway PostgreSQL ...", err=True)
        with TemporaryCluster.start() as cluster, \
                psycopg.connect(cluster.dsn(), autocommit=True, application_name="pgaudit demo") as conn:
            install(conn)
            click.echo(f"installed pgaudit_py into a throwaway cluster on port {cluster.port}", err=True)
            show(conn, "audit")
        return
    schema = f"pgaudit_demo_{secrets.token_hex(3)}"
    with connect(dsn, autocommit=True, application_name="pgaudit demo") as conn:
        superuser = tuples(conn).execute("SELECT rolsuper FROM pg_catalog.pg_roles"
                                         " WHERE rolname OPERATOR(pg_catalog.=) current_user").fetchone()
        if not superuser or not superuser[0]:
            raise InvalidArgument("pgaudit demo --dsn needs a superuser: it creates, then drops, a scratch schema "
                                  "and its roles")
        try:
            install(conn, schema)
            click.echo(f"installed pgaudit_py into scratch schema {schema}", err=True)
            show(conn, schema)
        finally:
            _drop_scratch(conn, schema)
            click.echo(f"removed scratch schema {schema} and its roles", err=True)
