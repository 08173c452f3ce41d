"""audit_context behaves as a Python context manager should: an inner block overrides only what it
names, the outer values are back when it ends, and nothing outlives the block."""

from __future__ import annotations

import contextvars
import threading

import psycopg
import pytest

from pgaudit_py import InvalidContext, UnsupportedSession, audit_context, record


def recorded(db) -> list[tuple[str | None, str | None, str | None]]:
    """kind, actor_id and tenant_id of every recorded event, in the order written."""
    return db.execute("SELECT kind, actor_id, tenant_id FROM audit.events WHERE origin = 'record'"
                      " ORDER BY intake_id").fetchall()


@pytest.fixture
def notes(db):
    db.execute("""CREATE TABLE public.notes (id serial PRIMARY KEY, body text);
                  GRANT ALL ON public.notes, public.notes_id_seq TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.notes')")


def writes(db) -> list[tuple[str | None, str | None]]:
    """actor_id and tenant_id of every captured insert, in the order written."""
    return db.execute("SELECT actor_id, tenant_id FROM audit.events WHERE kind = 'public.notes.insert'"
                      " ORDER BY intake_id").fetchall()


@pytest.mark.parametrize("autocommit", [True, False])
def test_a_nested_block_overrides_only_what_it_names_and_the_outer_values_come_back(db, connect, autocommit):
    writer = connect("app_writer", autocommit=autocommit)
    with audit_context(writer, actor_id="alice", tenant_id="acme"):
        record(writer, "outer.before")
        with audit_context(writer, actor_id="bob"):
            record(writer, "inner")
            with audit_context(writer, tenant_id=""):
                record(writer, "innermost")
        record(writer, "outer.after")
    record(writer, "outside")
    writer.commit()
    assert recorded(db) == [("outer.before", "alice", "acme"), ("inner", "bob", "acme"),
                            ("innermost", "bob", None), ("outer.after", "alice", "acme"),
                            ("outside", "app_writer", None)]  # no actor named: the database role


def test_a_write_after_the_block_in_the_callers_transaction_is_not_the_blocks(db, connect, notes):
    writer = connect("app_writer")
    with writer.transaction():
        with audit_context(writer, actor_id="alice", tenant_id="acme"):
            writer.execute("INSERT INTO notes (body) VALUES ('by alice')")
        writer.execute("INSERT INTO notes (body) VALUES ('after the block')")
    assert writes(db) == [("alice", "acme"), ("app_writer", None)]  # no actor named: the database role


def test_an_implicit_transaction_that_outlives_the_block(db, connect, notes):
    """autocommit off: the first statement opened a transaction the block only nests in."""
    writer = connect("app_writer", autocommit=False)
    writer.execute("INSERT INTO notes (body) VALUES ('before')")
    with audit_context(writer, actor_id="alice"):
        writer.execute("INSERT INTO notes (body) VALUES ('by alice')")
    writer.execute("INSERT INTO notes (body) VALUES ('after')")
    writer.commit()
    assert writes(db) == [("app_writer", None), ("alice", None), ("app_writer", None)]


def test_a_failed_inner_block_leaves_the_outer_values(db, connect):
    """Its savepoint is rolled back, with its settings and its event."""
    writer = connect("app_writer")
    with audit_context(writer, actor_id="alice"):
        with pytest.raises(psycopg.errors.DivisionByZero), audit_context(writer, actor_id="mallory"):
            record(writer, "rolled.back")
            writer.execute("SELECT 1 / 0")
        record(writer, "outer")
    assert recorded(db) == [("outer", "alice", None)]


def test_the_outermost_block_starts_clean_whatever_the_session_holds(db, connect):
    """A pooled connection may carry a session-level setting from elsewhere: it does not leak in."""
    writer = connect("app_writer")
    writer.execute("SELECT set_config('pgaudit_py.tenant_id', 'leftover', false)")
    with audit_context(writer, actor_id="alice"):
        record(writer, "clean")
    assert recorded(db) == [("clean", "alice", None)]


def test_another_threads_write_inside_a_block_is_refused_and_the_blocks_own_threads_are_not(db, connect):
    """A block is its connection's transaction: a thread that did not start inside it would write as
    its actor, so record() there is refused (UnsupportedSession) while the block is open, and allowed
    once it has ended; a thread the block's code starts with its context is the block's own."""
    writer = connect("app_writer")
    outcome: dict[str, str] = {}

    def write(kind: str) -> None:
        try:
            record(writer, kind)
            outcome[kind] = "written"
        except UnsupportedSession:
            outcome[kind] = "refused"

    with audit_context(writer, actor_id="alice", tenant_id="acme"):
        stranger = threading.Thread(target=write, args=("stranger",))
        stranger.start()
        stranger.join(10)
        own = threading.Thread(target=contextvars.copy_context().run, args=(write, "own"))
        own.start()
        own.join(10)
    after = threading.Thread(target=write, args=("after",))
    after.start()
    after.join(10)
    assert outcome == {"stranger": "refused", "own": "written", "after": "written"}
    assert recorded(db) == [("own", "alice", "acme"), ("after", "app_writer", None)]


@pytest.mark.parametrize("addr", ["10.0.0.0/8", "0.0.0.0/0", "2001:db8::/32", "10.0.0.1/24", "0.0.0.0", "::",
                                  "255.255.255.255", "224.0.0.1", "ff02::1", "::ffff:0.0.0.0"])
def test_a_network_is_refused_as_the_clients_address(db, connect, notes, addr):
    """client_addr names one host: a network (or an address with a prefix shorter than the host's),
    and an address no client sends from (unspecified, broadcast, multicast), are refused by record()
    and by the capture alike, and an address with its full prefix is the host."""
    writer = connect("app_writer")
    with pytest.raises(InvalidContext, match="not an IP address"), \
            audit_context(writer, actor_id="alice", client_addr=addr):
        record(writer, "net")
    with pytest.raises(psycopg.Error, match="not an IP address"), \
            audit_context(writer, actor_id="alice", client_addr=addr):
        writer.execute("INSERT INTO public.notes (body) VALUES ('x')")
    with audit_context(writer, actor_id="alice", client_addr="10.0.0.1/32"):
        record(writer, "host")
    assert db.execute("SELECT kind, host(client_addr), masklen(client_addr) FROM audit.events"
                      " WHERE origin IN ('record', 'capture')").fetchall() == [("host", "10.0.0.1", 32)]
