"""The pytest plugin, as a user's suite meets it: installed means enabled (the pytest11 entry
point), a database with pgaudit_py per test cloned from a template, and assert_recorded with a
failure that lists what was recorded instead."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest

from pgaudit_py import record, seal

README_EXAMPLE = Path(__file__).parent.parent / "docs" / "examples" / "test_refunds.py"  # the README shows it
USERS_SUITE = '''
from pgaudit_py import audit_context, record


def refund(conn, order_id, amount, by):
    with conn.transaction(), audit_context(conn, actor_id=by, tenant_id="acme"):
        conn.execute("UPDATE orders SET status = 'refunded' WHERE id = %s", (order_id,))
        record(conn, "order.refunded", target_type="order", target_id=str(order_id), payload={"amount": amount})


def setup_orders(conn):
    conn.execute("CREATE TABLE orders (id int PRIMARY KEY, status text, total int)")
    conn.execute("INSERT INTO orders VALUES (1, 'paid', 40)")
    conn.execute("SELECT audit.enable_tracking('orders')")


def test_refunding_an_order_is_audited(pgaudit_db, audit_trail):
    setup_orders(pgaudit_db)
    refund(pgaudit_db, 1, 40, by="alice")
    audit_trail.assert_recorded("order.refunded", target="order:1", actor="alice", tenant="acme",
                                payload={"amount": 40})
    audit_trail.assert_recorded("public.orders.update", changed={"status": "refunded"}, actor="user:alice")
    assert audit_trail.seal().sealed == 3  # tracking enabled, the update, the refund


def test_each_test_has_a_database_of_its_own(pgaudit_db, audit_trail):
    assert audit_trail.events() == []


def test_a_missing_event_says_what_was_recorded(pgaudit_db, audit_trail):
    setup_orders(pgaudit_db)
    refund(pgaudit_db, 1, 40, by="bob")
    audit_trail.assert_recorded("order.refunded", actor="alice")
'''


def test_the_plugin_is_registered_for_pytest():
    assert [e.value for e in entry_points(group="pytest11") if e.name == "pgaudit"] == ["pgaudit_py.pytest_plugin"]


def test_a_users_suite_tests_its_auditing_with_the_plugin(pytester):
    pytester.makepyfile(test_refunds=USERS_SUITE, test_readme_example=README_EXAMPLE.read_text())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q", timeout=300)
    result.assert_outcomes(passed=3, failed=1)  # the README's example among those passing
    out = result.stdout.str()
    assert "no audit event with kind='order.refunded', actor='alice'; recorded, newest first:" in out
    assert "order.refunded target=order:1 actor=user:bob tenant=acme outcome=success {'amount': 40}" in out
    assert "public.orders.update target=public.orders:1 actor=user:bob" in out


def test_assert_recorded_on_the_suites_own_database(db, trail):
    record(db, "user.login", actor_type="user", actor_id="ada", target_type="user", target_id="ada",
           outcome="failure", payload={"method": "password", "mfa": False})
    seal(db)
    event = trail.assert_recorded("user.login", actor="user:ada", target="ada", outcome="failure",
                                  payload={"method": "password"})
    assert event.seq == 1
    with pytest.raises(AssertionError, match=r"no audit event with kind='user.login', outcome='success'"):
        trail.assert_recorded("user.login", outcome="success")
    with pytest.raises(AssertionError, match=r"payload=\{'mfa': True\}"):
        trail.assert_recorded(payload={"mfa": True})
