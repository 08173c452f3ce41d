"""audit_context behaves as a Python context manager should: an inner block overrides only what it
names, the outer values are back when it ends, and nothing outlives the block."""

from __future__ import annotations

import psycopg
import pytest

from pgaudit_py import audit_context, record


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
