from pgaudit_py import audit_context, record


def refund(conn, order_id, by):  # the application's code: an UPDATE of a tracked table and an event
    with audit_context(conn, actor_id=by, tenant_id="acme"):
        conn.execute("UPDATE orders SET status = 'refunded' WHERE id = %s", (order_id,))
        record(conn, "order.refunded", target_type="order", target_id=str(order_id), payload={"amount": 40})


def test_refunding_an_order_is_audited(pgaudit_db, audit_trail):
    pgaudit_db.execute("CREATE TABLE orders (id int PRIMARY KEY, status text)")
    pgaudit_db.execute("INSERT INTO orders VALUES (1, 'paid')")
    pgaudit_db.execute("SELECT audit.enable_tracking('orders')")

    refund(pgaudit_db, order_id=1, by="alice")

    audit_trail.assert_recorded("order.refunded", target="order:1", actor="alice", payload={"amount": 40})
    audit_trail.assert_recorded("public.orders.update", changed={"status": "refunded"}, actor="alice")
    assert audit_trail.seal().sealed == 3  # sealing on demand, as the worker would
