"""The package's own SQL under a hostile search_path: a table owner (the `attacker` fixture) plants
look-alikes of the types, functions and operators that SQL uses in `public`, and every entry point
that sends SQL runs, as the role that would use it, with `search_path = public, pg_catalog`. None
of the look-alikes may run as anyone but the table owner: each says who ran it in a WARNING
(public.say), which the connections the tests open keep in public.who_ran (tests/conftest.py) and
the server writes to its log for those the CLI and the HTTP API open, and these tests read both.

The look-alikes do what pg_catalog's do, besides saying so: a test fails on who ran them, never
on a wrong answer."""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
from api_server import LiveServer
from click.testing import CliRunner

from pgaudit_py import (
    aio,
    audit_context,
    count_events,
    disable_rate_limit,
    disable_tracking,
    enable_rate_limit,
    enable_tracking,
    list_events,
    monthly_event_counts,
    preview_prune,
    prune_events,
    rate_limit,
    rate_limited,
    rate_limits,
    record,
    record_refusal,
    register_event_type,
    row_as_of,
    row_history,
    row_state_as_of,
    seal,
    seal_status,
    set_operation_limit,
    status,
    tracked_tables,
)
from pgaudit_py import archive as archiving
from pgaudit_py import secrets as secret_store
from pgaudit_py.archive_targets import open_target
from pgaudit_py.catalogues import load_catalogue
from pgaudit_py.chain import read_blocks, verify_chain
from pgaudit_py.checkpoint import generate_keys, load_keys, make_checkpoint
from pgaudit_py.cli import cli
from pgaudit_py.context import SET_CONTEXT
from pgaudit_py.errors import RateLimited
from pgaudit_py.follow import follow
from pgaudit_py.install_script import _guards, install_script
from pgaudit_py.installer import install
from pgaudit_py.pytest_plugin import AuditTrail
from pgaudit_py.rate_limits import purge_rate_counters
from pgaudit_py.retention import prune_all
from pgaudit_py.sealing import seal_continuously
from pgaudit_py.server import ServerConfig
from pgaudit_py.tokens import create_token, list_tokens, revoke_token

HOSTILE = "-c search_path=public,pg_catalog"


# The attacker's own trial: two domains whose CHECK says who cast to them.
LOOKALIKE_TYPES = """
CREATE FUNCTION public.say(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE NOTICE 'who_ran %', pg_catalog.json_build_object('who', current_user, 'what', what, 'forged', false);
    RETURN true;
END $$;
CREATE DOMAIN public.text AS pg_catalog.text CHECK (public.say('cast to text'));
CREATE DOMAIN public.regclass AS pg_catalog.regclass CHECK (public.say('cast to regclass'));
"""


@pytest.mark.parametrize("who", ["app_reader", "app_maintainer"])
def test_c4_the_package_runs_no_table_owners_code_under_a_search_path_naming_pg_catalog_last(db, connect, attacker,
                                                                                              who):
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY)")
    record_conn = connect("app_writer")
    record_conn.execute("SELECT audit.record(kind => 'x.y')")
    seal(db)
    attacker.execute(LOOKALIKE_TYPES)
    db.execute("DELETE FROM public.who_ran")
    conn = connect(who, options=HOSTILE)
    if who == "app_reader":
        result = verify_chain(conn)
        assert result.ok
    else:
        enable_tracking(conn, "public.t")
    assert db.execute("SELECT who, what FROM public.who_ran WHERE who <> 'table_owner'").fetchall() == []


# The whole kit. Types: a domain over each type the package's SQL names, whose CHECK says who cast
# to it. Functions and aggregates: the same signature as pg_catalog's, saying so, then doing what
# pg_catalog's does. Operators: the same, for the operand types the package's SQL compares,
# subtracts, shifts and concatenates (parameters arrive as int2, int4, int8, text or unknown).
SAY = """
CREATE FUNCTION public.say(what pg_catalog.text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    RAISE WARNING 'who_ran %', pg_catalog.json_build_object('who', current_user, 'what', what, 'forged', false);
    RETURN true;
END $$;
"""

TYPES = ["text", "varchar", "name", '"char"', "regclass", "regprocedure", "regnamespace", "regrole", "oid", "int2",
         "int4", "int8", "numeric", "float8", "bool", "jsonb", "json", "timestamptz", "timestamp", "date", "uuid",
         "bytea", "inet", "xid8"]

# name(arguments) returns type, and the body's expression of the arguments a, b, c.
FUNCTIONS = [
    ("now()", "timestamptz", "pg_catalog.now()"),
    ("current_database()", "name", "pg_catalog.current_database()"),
    ("pg_current_xact_id()", "xid8", "pg_catalog.pg_current_xact_id()"),
    ("set_config(a text, b text, c boolean)", "text", "pg_catalog.set_config(a, b, c)"),
    ("current_setting(a text)", "text", "pg_catalog.current_setting(a)"),
    ("current_setting(a text, b boolean)", "text", "pg_catalog.current_setting(a, b)"),
    ("to_regclass(a text)", "regclass", "pg_catalog.to_regclass(a)"),
    ("to_regprocedure(a text)", "regprocedure", "pg_catalog.to_regprocedure(a)"),
    ("to_regnamespace(a text)", "regnamespace", "pg_catalog.to_regnamespace(a)"),
    ("to_regrole(a text)", "regrole", "pg_catalog.to_regrole(a)"),
    ("pg_has_role(a name, b text, c text)", "boolean", "pg_catalog.pg_has_role(a, b, c)"),
    ("encode(a bytea, b text)", "text", "pg_catalog.encode(a, b)"),
    ("decode(a text, b text)", "bytea", "pg_catalog.decode(a, b)"),
    ("sha256(a bytea)", "bytea", "pg_catalog.sha256(a)"),
    ("lower(a text)", "text", "pg_catalog.lower(a)"),
    ("upper(a text)", "text", "pg_catalog.upper(a)"),
    ("length(a text)", "integer", "pg_catalog.length(a)"),
    ("jsonb_build_object(a text, b text)", "jsonb", "pg_catalog.jsonb_build_object(a, b)"),
    ("to_jsonb(a text)", "jsonb", "pg_catalog.to_jsonb(a)"),
    ("oidvectortypes(a oidvector)", "text", "pg_catalog.oidvectortypes(a)"),
    ("format(a text)", "text", "pg_catalog.format(a)"),
    ("pg_advisory_lock(a bigint)", "void", "pg_catalog.pg_advisory_lock(a)"),
    ("pg_advisory_unlock(a bigint)", "boolean", "pg_catalog.pg_advisory_unlock(a)"),
    ("pg_advisory_xact_lock(a bigint)", "void", "pg_catalog.pg_advisory_xact_lock(a)"),
]

# name(argument type), state type, transition function: a look-alike aggregate says once, when it ends.
AGGREGATES = [
    ("max", "int8", "pg_catalog.int8larger"), ("min", "int8", "pg_catalog.int8smaller"),
    ("max", "int4", "pg_catalog.int4larger"), ("min", "int4", "pg_catalog.int4smaller"),
    ("max", "timestamptz", "pg_catalog.timestamptz_larger"), ("min", "timestamptz", "pg_catalog.timestamptz_smaller"),
    ("max", "text", "pg_catalog.text_larger"), ("min", "text", "pg_catalog.text_smaller"),
    ("sum", "int8", "pg_catalog.int8pl"), ("sum", "int4", "pg_catalog.int4pl"),
]

COMPARISONS = ["=", "<>", "<", ">", "<=", ">="]
COMPARED = [("int8", "int8"), ("int8", "int4"), ("int8", "int2"), ("int4", "int4"), ("int4", "int2"),
            ("int4", "int8"), ("int2", "int2"), ("text", "text"), ("name", "name"), ("name", "text"),
            ("oid", "oid"), ("jsonb", "jsonb"), ("timestamptz", "timestamptz"), ("bytea", "bytea"),
            ('"char"', '"char"'), ("bool", "bool"), ("text[]", "text[]"), ("uuid", "uuid")]
# operator, left, right, result
OTHER_OPERATORS = [("||", "text", "text", "text"), ("||", "text", "anynonarray", "text"),
                   ("||", "anynonarray", "text", "text"), ("->", "jsonb", "text", "jsonb"),
                   ("->>", "jsonb", "text", "text"), ("->", "json", "text", "json"), ("->>", "json", "text", "text"),
                   ("-", "int8", "int8", "int8"), ("-", "int4", "int4", "int4"), ("+", "int8", "int8", "int8"),
                   ("<<", "int8", "int4", "int8"), ("|", "int8", "int8", "int8"), ("?", "jsonb", "text", "boolean"),
                   ("@>", "jsonb", "jsonb", "boolean"), ("~~", "text", "text", "boolean")]


def _q(type_: str) -> str:
    """pg_catalog's type, however the look-alikes' own declarations are resolved."""
    return type_ if type_ in ("anynonarray", "void", "boolean", "integer", "bigint") \
        else "pg_catalog." + type_.replace("[]", "") + ("[]" if type_.endswith("[]") else "")


def _qualified_arguments(arguments: str) -> str:
    parts = [a.strip().split(" ", 1) for a in arguments.split(",") if a.strip()]
    return ", ".join(f"{name} {_q(type_)}" for name, type_ in parts)


def lookalikes() -> str:
    """The look-alikes' SQL; every name in it qualified, so that it means the same in any session."""
    out = [SAY]
    for type_ in TYPES:
        out.append(f"CREATE DOMAIN public.{type_} AS pg_catalog.{type_} CHECK (public.say('cast to {type_}'));")
    for signature, returns, body in FUNCTIONS:
        name, arguments = signature.split("(", 1)
        arguments = arguments.rstrip(")")
        result = "PERFORM" if returns == "void" else "RETURN"
        out.append(f"CREATE FUNCTION public.{name}({_qualified_arguments(arguments)}) RETURNS {_q(returns)}"
                   f" LANGUAGE plpgsql AS $$ BEGIN PERFORM public.say('function {name}()'); {result} {body};"
                   " END $$;")
    out.append("""
        CREATE FUNCTION public.count_step(n bigint) RETURNS bigint LANGUAGE sql
            AS $$ SELECT n OPERATOR(pg_catalog.+) 1 $$;
        CREATE FUNCTION public.count_said(n bigint) RETURNS bigint LANGUAGE plpgsql
            AS $$ BEGIN PERFORM public.say('aggregate count(*)'); RETURN n; END $$;
        CREATE AGGREGATE public.count(*) (SFUNC = public.count_step, STYPE = bigint, FINALFUNC = public.count_said,
                                          INITCOND = '0');
        CREATE FUNCTION public.array_agg_said(a pg_catalog.text[]) RETURNS pg_catalog.text[] LANGUAGE plpgsql
            AS $$ BEGIN PERFORM public.say('aggregate array_agg(text)'); RETURN a; END $$;
        CREATE AGGREGATE public.array_agg(pg_catalog.text) (SFUNC = pg_catalog.array_append,
            STYPE = pg_catalog.text[], FINALFUNC = public.array_agg_said);
        CREATE FUNCTION public.string_agg_step(s pg_catalog.text, a pg_catalog.text, d pg_catalog.text)
            RETURNS pg_catalog.text LANGUAGE sql
            AS $$ SELECT CASE WHEN s IS NULL THEN a ELSE s OPERATOR(pg_catalog.||) d OPERATOR(pg_catalog.||) a END $$;
        CREATE FUNCTION public.string_agg_said(s pg_catalog.text) RETURNS pg_catalog.text LANGUAGE plpgsql
            AS $$ BEGIN PERFORM public.say('aggregate string_agg(text, text)'); RETURN s; END $$;
        CREATE AGGREGATE public.string_agg(pg_catalog.text, pg_catalog.text) (SFUNC = public.string_agg_step,
            STYPE = pg_catalog.text, FINALFUNC = public.string_agg_said);
        CREATE FUNCTION public.jsonb_agg_said(a pg_catalog.jsonb) RETURNS pg_catalog.jsonb LANGUAGE plpgsql
            AS $$ BEGIN PERFORM public.say('aggregate jsonb_agg(jsonb)'); RETURN a; END $$;
    """)
    for n, (name, type_, step) in enumerate(AGGREGATES):
        out.append(f"CREATE FUNCTION public.aggregate_said_{n}(a {_q(type_)}) RETURNS {_q(type_)} LANGUAGE plpgsql"
                   f" AS $$ BEGIN PERFORM public.say('aggregate {name}({type_})'); RETURN a; END $$;"
                   f" CREATE AGGREGATE public.{name}({_q(type_)}) (SFUNC = {step}, STYPE = {_q(type_)},"
                   f" FINALFUNC = public.aggregate_said_{n});")
    operators = [(op, left, right, "boolean") for op in COMPARISONS for left, right in COMPARED] + OTHER_OPERATORS
    for n, (op, left, right, returns) in enumerate(operators):
        returned = _q(returns) if returns != "anynonarray" else "pg_catalog.text"
        out.append(f"CREATE FUNCTION public.operator_said_{n}(a {_q(left)}, b {_q(right)}) RETURNS {returned}"
                   f" LANGUAGE plpgsql AS $$ BEGIN PERFORM public.say('operator {op} ({left}, {right})');"
                   f" RETURN a OPERATOR(pg_catalog.{op}) b; END $$;"
                   f" CREATE OPERATOR public.{op} (LEFTARG = {_q(left)}, RIGHTARG = {_q(right)},"
                   f" FUNCTION = public.operator_said_{n});")
    return "\n".join(out)


class Kit:
    def __init__(self, db: psycopg.Connection, connect: Callable[..., psycopg.Connection], log: Path):
        self.db, self._connect, self.log = db, connect, log
        self.log_start = log.stat().st_size

    def connect(self, role: str, **kwargs: object) -> psycopg.Connection:
        """A connection as `role`, with the hostile search_path."""
        return self._connect(role, options=HOSTILE, **kwargs)

    def others_ran(self) -> list[tuple[str, str]]:
        """Who, other than the table owner, ran which look-alike: as the tests' own connections
        kept it, and as the server logged it (the CLI's and the server's connections)."""
        kept = self.db.execute("SELECT who, what FROM public.who_ran").fetchall()
        with self.log.open("rb") as f:
            f.seek(self.log_start)
            logged = [json.loads(m.group(1)) for m in re.finditer(rb"who_ran (\{[^\n]*\})", f.read())]
        ran = {*kept, *((said["who"], said["what"]) for said in logged)}
        return sorted((who, what) for who, what in ran if who != "table_owner")


@pytest.fixture
def planted(db, connect, attacker, pg_cluster) -> Kit:
    """An installation with something of everything in it (events sealed and pending, a tracked table
    with history, a rate limit, a token, an event type), then the look-alikes."""
    attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, note text)")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.t")
    attacker.execute("INSERT INTO public.t VALUES (1, 'one'), (2, 'two'); UPDATE public.t SET note = 'uno' WHERE id = 1")
    writer = connect("app_writer")
    for tenant in ("t1", None):
        record(writer, "order.paid", tenant_id=tenant, target_type="order", target_id="o-1", payload={"n": 1})
    seal(db)
    record(writer, "order.refunded", tenant_id="t1", payload={"n": 2})  # pending
    enable_rate_limit(maintainer, "public.t")
    create_token(maintainer, "planted", "reader")
    register_event_type(maintainer, "order.shipped", {"type": "object"})
    # The look-alikes, as table_owner: what it could do, with CREATE on public, in any database.
    attacker.execute(lookalikes())
    db.execute("DELETE FROM public.who_ran")
    return Kit(db, connect, pg_cluster.log)


def test_the_lookalikes_have_teeth(db, planted):
    """Unqualified SQL under the hostile search_path runs them: the kit would catch what it looks for."""
    reader = planted.connect("app_reader")
    reader.execute("SELECT 'x'::text, 'audit.events'::regclass, now(), encode('\\x01'::bytea, 'hex'),"
                   " (SELECT max(seq) FROM audit.event_log), (SELECT count(*) FROM audit.blocks),"
                   " 1::bigint = 2::bigint, 'a' || 'b', 'a'::text > 'b'")
    said = {what for _, what in planted.others_ran()}
    assert {"cast to text", "cast to regclass", "function now()", "function encode()", "aggregate max(int8)",
            "aggregate count(*)", "operator = (int8, int8)", "operator || (text, text)",
            "operator > (text, text)"} <= said
    assert {who for who, _ in planted.others_ran()} == {"app_reader"}
    # And from a connection the tests did not open (as the CLI's and the server's), through the server log.
    i = db.info
    with psycopg.connect(host=i.host, port=i.port, dbname=i.dbname, user="app_writer", options=HOSTILE) as own:
        own.execute("SELECT lower('X')")
    assert ("app_writer", "function lower()") in planted.others_ran()


def test_a_reader_runs_none_of_them(db, planted, tmp_path):
    reader = planted.connect("app_reader")
    now = datetime.now(timezone.utc)
    assert len(list_events(reader, kind_prefix="order", tenant_id="t1", since=now - timedelta(days=1),
                           until=now + timedelta(days=1), target_type="order")) == 1
    assert len(list_events(reader, before_intake_id=10**12, page_size=5)) >= 1
    assert count_events(reader, by_kind_prefix=["order."]).count >= 3
    assert monthly_event_counts(reader, by_kind_prefix=["order."], month_count=2)
    assert seal_status(reader).pending >= 1
    assert [t.table_name for t in tracked_tables(reader)] == ["public.t"]
    history = row_history(reader, "public.t", "1")
    assert len(history) == 2
    assert row_as_of(reader, "public.t", "1", now + timedelta(days=1)) == {"id": 1, "note": "uno"}
    assert row_state_as_of(reader, "public.t", "2", now - timedelta(days=1)).state in ("absent", "unknown")
    assert verify_chain(reader).ok
    assert read_blocks(reader, "audit", 1, 1)
    assert status(reader).problems == []
    assert [r.target for r in rate_limits(reader)] == ["t"]
    assert secret_store.exposure_warnings(reader) == []
    assert archiving.list_batches(reader) == []
    generate_keys(tmp_path / "keys")
    keys = load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem",
                     hmac_key=tmp_path / "keys" / "checkpoint-hmac.key")
    assert make_checkpoint(reader, keys)["checkpoint"]["block_no"] == 1
    trail = AuditTrail(reader)
    assert trail.assert_recorded("order.paid", target="order:o-1", tenant="t1", payload={"n": 1})
    stop = threading.Event()
    followed = follow(planted.connect("app_reader"), since_seq=0, stop=stop, poll_interval=0.1)
    assert next(followed).seq == 1
    stop.set()
    followed.close()
    assert planted.others_ran() == []


def test_a_writer_runs_none_of_them(db, planted):
    writer = planted.connect("app_writer")
    assert record(writer, "order.paid", tenant_id="t1", actor_type="user", actor_id="u1", target_type="order",
                  target_id="o-2", payload={"n": 3}, correlation_id="c", idempotency_key="k") is not None
    assert record(writer, "order.paid", best_effort=True) is not None
    with audit_context(writer, actor_type="user", actor_id="u1", tenant_id="t1", correlation_id="c1",
                       client_addr="10.0.0.1"), audit_context(writer, actor_id="u2"):  # the inner one reads the outer's
        record(writer, "order.paid")
    writer.execute(SET_CONTEXT, ["user", "u3", "t1", "c2", ""])  # what the Django and SQLAlchemy hooks send
    rate_limit(writer, "login", "alice", per_minute=1)

    @rate_limited("login", key=lambda conn, user: user, per_minute=1)
    def login(conn: psycopg.Connection, user: str) -> str:
        return user

    with pytest.raises(RateLimited) as refused:
        login(writer, "alice")
    assert refused.value.recorded
    with pytest.raises(RateLimited) as again:
        rate_limit(writer, "login", "alice", per_minute=1)
    record_refusal(writer, again.value, target="login:alice")
    assert planted.others_ran() == []


def test_a_maintainer_runs_none_of_them(db, planted, attacker, tmp_path):
    maintainer = planted.connect("app_maintainer")
    attacker.execute("CREATE TABLE public.u (id int PRIMARY KEY); INSERT INTO public.u VALUES (1)")
    assert enable_tracking(maintainer, "public.u", baseline=True, exclude_columns=[], redact_columns=[],
                           kind_prefix="u").table_name == "public.u"
    assert disable_tracking(maintainer, "public.u")
    assert enable_rate_limit(maintainer, "public.u", per_user_per_minute=5).per_user == 5
    assert disable_rate_limit(maintainer, "public.u")
    assert set_operation_limit(maintainer, "login", 5).per_key == 5
    assert purge_rate_counters(maintainer) >= 0
    assert register_event_type(maintainer, "order.cancelled", {"type": "object"}, strict=True).strict
    assert load_catalogue(maintainer, "auth")
    assert load_catalogue(maintainer, "auth")  # again: each kind compared with what is registered
    made = create_token(maintainer, "ops", "maintainer", expires_at=datetime.now(timezone.utc) + timedelta(days=1))
    assert {t.name for t in list_tokens(maintainer)} >= {"ops", "planted"}
    assert revoke_token(maintainer, made.info.token_id).revoked_at is not None
    assert seal(maintainer).sealed >= 1
    stop = threading.Event()
    stop.set()
    seal_continuously(maintainer, stop)
    assert preview_prune(maintainer, "1 day").events == 0
    assert prune_events(maintainer, timedelta(days=1)).deleted == 0
    assert prune_all(maintainer, "1 day") == 0
    generate_keys(tmp_path / "keys")
    keys = load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem",
                     public_key=tmp_path / "keys" / "checkpoint-ed25519.pub.pem")
    target = open_target(f"file://{tmp_path}/archive")
    run = archiving.archive(maintainer, target, keys, older_than=timedelta(milliseconds=1))
    assert run.batches and run.events >= 3
    assert archiving.verify_archive(maintainer, target, keys).ok
    assert archiving.restore_batch(maintainer, target, run.batches[0].batch_id) == run.events
    archiving.archive_if_due(maintainer, target, keys)
    assert verify_chain(maintainer).ok
    assert planted.others_ran() == []


def test_secrets_run_none_of_them(db, planted):
    app = planted.connect("app_secrets")
    key = "ab" * 32
    with secret_store.use_master_key(app, None, new_key=key):
        secret_store.add_master_key(app)
    with secret_store.use_master_key(app, key):
        secret_store.declare_secret(app, "stripe.api_key", "Stripe secret key")
        assert secret_store.put_secret(app, "t1", "stripe.api_key", "sk_1") == 1
        assert secret_store.read_secret(app, "t1", "stripe.api_key") == "sk_1"
        assert [s.key for s in secret_store.list_secrets(app, "t1")] == ["stripe.api_key"]
        assert secret_store.rotate_tenant_key(app, "t1").done
        assert secret_store.delete_secret(app, "t1", "stripe.api_key")
        assert secret_store.exposure_warnings(app) == []
    assert planted.others_ran() == []


def test_the_async_functions_run_none_of_them(db, planted):
    info = db.info

    async def main() -> None:
        async def hostile(role: str) -> psycopg.AsyncConnection:
            return await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                         user=role, autocommit=True, options=HOSTILE)

        writer, reader, maintainer, app = [await hostile(r) for r in
                                           ("app_writer", "app_reader", "app_maintainer", "app_secrets")]
        async with writer, reader, maintainer, app:
            async with aio.audit_context(writer, actor_id="u1", tenant_id="t1"), \
                    aio.audit_context(writer, actor_id="u2"):
                assert await aio.record(writer, "order.paid", payload={"n": 1}) is not None
            assert await aio.record(writer, "order.paid", best_effort=True) is not None
            assert await aio.list_events(reader, kind_prefix="order", since=datetime(2000, 1, 1, tzinfo=timezone.utc))
            assert (await aio.count_events(reader, by_kind_prefix=["order."])).count >= 3
            assert await aio.monthly_event_counts(reader, by_kind_prefix=["order."])
            assert (await aio.seal_status(reader)).pending >= 1
            assert await aio.row_history(reader, "public.t", "1")
            now = datetime.now(timezone.utc)
            assert await aio.row_as_of(reader, "public.t", "1", now) == {"id": 1, "note": "uno"}
            assert (await aio.row_state_as_of(reader, "public.t", "1", now)).state == "existed"
            assert await aio.tracked_tables(reader)
            assert (await aio.seal(maintainer)).sealed >= 1
            assert (await aio.preview_prune(maintainer, "1 day")).events == 0
            assert (await aio.prune_events(maintainer, "1 day")).deleted == 0
            assert await aio.disable_tracking(maintainer, "public.t")
            assert (await aio.enable_tracking(maintainer, "public.t", tenant_column=None)).table_name == "public.t"
            key = "cd" * 32
            async with aio.use_master_key(app, key):
                await aio.declare_secret(app, "k", "a key")
                assert await aio.put_secret(app, "t1", "k", "v") >= 1
                assert await aio.read_secret(app, "t1", "k") == "v"
                assert await aio.list_secrets(app)
                assert await aio.delete_secret(app, "t1", "k")

    # A master key must be registered for the async secrets: as the sync test does it.
    app = planted.connect("app_secrets")
    with secret_store.use_master_key(app, None, new_key="cd" * 32):
        secret_store.add_master_key(app)
    asyncio.run(main())
    assert planted.others_ran() == []


def test_the_installer_runs_none_of_them(db, planted):
    """The installer (a superuser's session, whose search_path is whatever its user set) reads the
    catalog before it sets its own; the install script's guards run in its applier's search_path."""
    superuser = planted.connect(db.info.user)
    assert not install(superuser).changed
    assert status(superuser).problems == []
    assert "pending migrations: none" in install_script(superuser)
    for guard in _guards(superuser, "audit", sorted(status(superuser).applied_migrations),
                         db.execute("SELECT extnamespace::regnamespace::text FROM pg_extension"
                                    " WHERE extname = 'pgcrypto'").fetchone()[0]):
        superuser.execute(guard)
    assert planted.others_ran() == []


def test_the_command_line_runs_none_of_them(db, planted, tmp_path):
    i = db.info

    def run(role: str, *args: str) -> None:
        dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={role}"
        # libpq's PGOPTIONS: the search_path a user's environment may give every connection.
        result = CliRunner().invoke(cli, [*args, "--dsn", dsn], env={"PGOPTIONS": HOSTILE}, catch_exceptions=False)
        assert result.exit_code == 0, result.output + result.stderr

    generate_keys(tmp_path / "keys")
    run("app_reader", "verify", "--public-key", str(tmp_path / "keys" / "checkpoint-ed25519.pub.pem"))
    run("app_reader", "events", "--kind-prefix", "order", "--tenant", "t1")
    run("app_reader", "count", "--prefix", "order.", "--months", "2")
    run("app_reader", "history", "public.t", "1")
    run("app_reader", "tracked")
    run("app_reader", "status")
    run("app_reader", "archive", "list")
    run("app_reader", "types", "list")
    run("app_writer", "record", "order.paid", "--payload", '{"n": 4}')
    run("app_maintainer", "seal")
    run("app_maintainer", "prune", "--older-than", "90d", "--yes")
    run("app_maintainer", "limits", "set", "public.t", "--per-user", "7")
    run("app_maintainer", "archive", "settings")
    run("app_maintainer", "tokens", "list")
    run("app_maintainer", "types", "load", "auth")
    assert planted.others_ran() == []


def test_the_http_api_runs_none_of_them(db, planted, make_token, tmp_path):
    """The server's own queries, on connections whose DSN names the hostile search_path."""
    i = db.info
    generate_keys(tmp_path / "keys")
    keys = load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem",
                     public_key=tmp_path / "keys" / "checkpoint-ed25519.pub.pem")
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (checkpoints / "c.json").write_text(json.dumps(make_checkpoint(db, keys)))
    token = make_token("maintainer")
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_maintainer options='{HOSTILE}'"
    server = LiveServer(ServerConfig(dsn=dsn, archive_target=f"file://{tmp_path}/archive", archive_keys=keys,
                                     checkpoint_dir=checkpoints, checkpoint_keys=keys))
    try:
        with server.client(token) as client:
            for path in ("/v1/audit", "/v1/audit/count", "/v1/audit/monthly", "/v1/audit/verify", "/v1/audit/status",
                         "/v1/audit/archives", "/v1/audit/tracked", "/v1/audit/limits", "/v1/whoami", "/healthz"):
                answer = client.get(path)
                assert answer.status_code == 200, (path, answer.text)
            assert client.get("/v1/audit/verify").json()["last_checkpoint"]["ok"]
            assert client.post("/v1/audit/archive/run").status_code == 200
            with client.stream("GET", "/v1/audit/stream", params={"since_seq": 0}) as stream:
                assert stream.status_code == 200
                assert any(line.startswith("data:") for line in stream.iter_lines())
    finally:
        server.stop()
    assert planted.others_ran() == []
