"""Capture: every write on a tracked table becomes an event in the writing transaction."""

from __future__ import annotations

import psycopg
import pytest
from schema_changes import both_verifiers_ok

from pgaudit_py import audit_context, enable_tracking, seal


@pytest.fixture
def maintainer(connect):
    return connect("app_maintainer")


@pytest.fixture
def orders(db, maintainer):
    """public.orders, owned by the maintainer (who must own what it tracks); writable by a role
    that has no privilege at all on the audit schema."""
    db.execute("""CREATE TABLE public.orders (id int PRIMARY KEY, customer text, total numeric, card text,
                                              secret text, tenant text)""")
    db.execute("ALTER TABLE public.orders OWNER TO app_maintainer")
    db.execute("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON public.orders TO app_attacker")
    return "public.orders"


def captured(db, where: str = "kind LIKE 'public.orders.%'"):
    return db.execute(f"""SELECT kind, target_type, target_id, tenant_id, actor_type, actor_id, db_role,
                                 row_before, row_after, changed
                            FROM audit.events WHERE {where} ORDER BY seq NULLS LAST, occurred_at""").fetchall()


def test_insert_update_delete_by_a_role_without_audit_privileges(db, connect, maintainer, orders):
    enable_tracking(maintainer, orders)
    app = connect("app_attacker")
    with audit_context(app, actor_type="user", actor_id="alice", tenant_id="t1", correlation_id="req-1"):
        app.execute("INSERT INTO orders (id, customer, total) VALUES (1, 'ann', 10), (2, 'bob', 20)")
        app.execute("UPDATE orders SET total = total + 1 WHERE id = 1")
        app.execute("DELETE FROM orders WHERE id = 2")
    row1 = {"id": 1, "customer": "ann", "total": 10, "card": None, "secret": None, "tenant": None}
    row2 = {"id": 2, "customer": "bob", "total": 20, "card": None, "secret": None, "tenant": None}
    who = ("t1", "user", "alice", "app_attacker")
    assert captured(db) == [
        ("public.orders.insert", "public.orders", "1", *who, None, row1, None),
        ("public.orders.insert", "public.orders", "2", *who, None, row2, None),
        ("public.orders.update", "public.orders", "1", *who, row1, {**row1, "total": 11},
         {"total": {"old": 10, "new": 11}}),
        ("public.orders.delete", "public.orders", "2", *who, row2, None, None),
    ]
    seal(db)
    assert db.execute("SELECT changed FROM audit.event_log WHERE kind = 'public.orders.update'").fetchone() == (
        {"total": {"old": 10, "new": 11}},)
    assert db.execute("SELECT count(DISTINCT correlation_id), min(correlation_id) FROM audit.event_log"
                      " WHERE kind LIKE 'public.orders.%'").fetchone() == (1, "req-1")


def test_without_context_the_database_role_is_the_actor(db, connect, maintainer, orders):
    enable_tracking(maintainer, orders)
    connect("app_attacker").execute("INSERT INTO orders (id) VALUES (1)")
    assert captured(db)[0][3:7] == (None, "db_role", "app_attacker", "app_attacker")


def test_excluded_columns_are_never_stored_and_redacted_ones_show_only_that_they_changed(db, maintainer, orders):
    enable_tracking(maintainer, orders, exclude_columns=["secret"], redact_columns=["card"])
    db.execute("INSERT INTO orders VALUES (1, 'ann', 10, '4111-1111', 'pw-one', NULL)")
    db.execute("UPDATE orders SET card = '5500-0000', secret = 'pw-two' WHERE id = 1")
    db.execute("UPDATE orders SET secret = 'pw-three' WHERE id = 1")  # only an excluded column: no-op
    db.execute("UPDATE orders SET total = 12 WHERE id = 1")
    seal(db)
    events = captured(db)
    assert [e[0] for e in events] == ["public.orders.insert", "public.orders.update", "public.orders.update"]
    assert events[0][8] == {"id": 1, "customer": "ann", "total": 10, "card": "[redacted]", "tenant": None}
    assert events[1][9] == {"card": {"old": "[redacted]", "new": "[redacted]"}}
    assert events[2][9] == {"total": {"old": 10, "new": 12}}
    stored = db.execute("SELECT string_agg(concat_ws(' ', row_before, row_after, changed, payload), ' ')"
                        " FROM audit.events WHERE kind LIKE 'public.orders.%'").fetchone()[0]
    for value in ("pw-one", "pw-two", "pw-three", "4111", "5500", '"secret"'):
        assert value not in stored


@pytest.mark.parametrize("column_types", ["built-in", "user-defined"])
def test_delete_and_truncate_events_store_no_excluded_or_redacted_value(db, connect, maintainer, orders,
                                                                         column_types):
    """DELETE images are built apart from INSERT and UPDATE ones, and TRUNCATE events by another
    function: each must drop excluded columns and mask redacted ones too. A column of a user type
    sends the rows through the sandbox, the other way images are made."""
    if column_types == "user-defined":
        db.execute("CREATE TYPE public.mood AS ENUM ('calm', 'angry');"
                   " ALTER TABLE public.orders ADD COLUMN mood public.mood")
    enable_tracking(maintainer, orders, exclude_columns=["secret"], redact_columns=["card"])
    app = connect("app_attacker")
    app.execute("INSERT INTO orders (id, customer, card, secret) VALUES"
                " (1, 'ann', '4111-1111', 'pw-one'), (2, 'bob', '5500-0000', 'pw-two')")
    app.execute("DELETE FROM orders WHERE id = 1")
    app.execute("INSERT INTO orders (id, customer, card, secret) VALUES (3, 'cy', '3400-0000', 'pw-three')")
    app.execute("TRUNCATE orders")
    mood = {"mood": None} if column_types == "user-defined" else {}
    deleted = {"id": 1, "customer": "ann", "total": None, "card": "[redacted]", "tenant": None, **mood}
    events = "SELECT kind, target_id, row_before, row_after, changed, payload FROM {} WHERE kind = %s"

    def check(table: str) -> None:
        assert db.execute(events.format(table), ("public.orders.delete",)).fetchall() == [
            ("public.orders.delete", "1", deleted, None, None, {})]
        assert db.execute(events.format(table), ("public.orders.truncate",)).fetchall() == [
            ("public.orders.truncate", None, None, None, None, {"table": "public.orders"})]
        stored = db.execute(f"SELECT string_agg(to_jsonb(e)::text, ' ') FROM {table} e"
                            " WHERE kind LIKE 'public.orders.%'").fetchone()[0]
        assert stored.count('"kind": "public.orders.') == 5  # three inserts, the delete, the truncate
        # Whole card numbers: the row's uuid and timestamps are in the text too, and may hold "3400".
        for value in ("pw-one", "pw-two", "pw-three", "4111-1111", "5500-0000", "3400-0000", '"secret"'):
            assert value not in stored

    check("audit.event_intake")  # as the capture wrote it
    seal(db)
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)
    check("audit.event_log")  # and as sealed


def test_noop_updates_are_skipped_unless_asked_for(db, maintainer, orders):
    enable_tracking(maintainer, orders)
    db.execute("INSERT INTO orders (id, total) VALUES (1, 10), (2, 20)")
    db.execute("UPDATE orders SET total = total")
    db.execute("UPDATE orders SET total = 30 WHERE id = 2")
    assert [e[:3] for e in captured(db, "kind = 'public.orders.update'")] == [
        ("public.orders.update", "public.orders", "2")]
    enable_tracking(maintainer, orders, skip_noop_updates=False)
    db.execute("UPDATE orders SET total = total WHERE id = 1")
    seal(db)
    assert captured(db, "kind = 'public.orders.update' AND target_id = '1'")[0][9] == {}


def test_tenant_column_and_kind_prefix(db, connect, maintainer, orders):
    enable_tracking(maintainer, orders, tenant_column="tenant", kind_prefix="shop.order")
    app = connect("app_attacker")
    with audit_context(app, tenant_id="from-context"):
        app.execute("INSERT INTO orders (id, tenant) VALUES (1, 'acme'), (2, NULL)")
    # A row whose tenant column is null is no tenant's, whatever the session says (trial 34).
    assert [(e[0], e[1], e[3]) for e in captured(db, "kind LIKE 'shop.order.%'")] == [
        ("shop.order.insert", "shop.order", "acme"), ("shop.order.insert", "shop.order", None)]


@pytest.mark.parametrize("inline", [True, False], ids=["built-in columns", "through the sandbox"])
def test_a_row_moved_to_another_tenant_is_one_event_for_each_with_its_own_image(db, connect, maintainer, orders, inline):
    """An UPDATE that changes a row's tenant files the row's old version under the old tenant and its
    new one under the new tenant, in that order, each event with one image: no tenant's reader sees
    the other's version. Rows of the same statement that stay are one event each, as always."""
    if not inline:  # an enum column: the images are made in the sandbox (_row_images), not inline
        db.execute("CREATE TYPE public.mood AS ENUM ('ok', 'bad')")
        db.execute("ALTER TABLE public.orders ADD COLUMN mood public.mood")
    enable_tracking(maintainer, orders, tenant_column="tenant")
    app = connect("app_attacker")
    app.execute("INSERT INTO orders (id, tenant, secret) VALUES (1, 't2', 'kept by t2'), (2, 't2', 'stays'),"
                " (3, NULL, 'no tenant')")
    with audit_context(app, tenant_id="t3"):
        app.execute("UPDATE orders SET tenant = CASE WHEN id = 1 THEN 't1' WHEN id = 3 THEN 't3' ELSE tenant END,"
                    " secret = CASE WHEN id = 1 THEN 'now t1''s' ELSE secret END, total = 5")
        app.execute("UPDATE orders SET id = 10, tenant = 't2' WHERE id = 1")  # back, under another key
    seal(db)
    events = db.execute("""SELECT tenant_id, target_id, row_before ->> 'secret', row_after ->> 'secret', payload,
                                  changed IS NOT NULL
                             FROM audit.events WHERE kind = 'public.orders.update' ORDER BY seq""").fetchall()
    assert events == [
        ("t2", "1", "kept by t2", None, {"tenant": "moved out"}, False),
        ("t1", "1", None, "now t1's", {"tenant": "moved in"}, False),
        ("t2", "2", "stays", "stays", {}, True),
        (None, "3", "no tenant", None, {"tenant": "moved out"}, False),  # a null column is no tenant's:
        ("t3", "3", None, "no tenant", {"tenant": "moved in"}, False),  # given one, it moved
        ("t1", "1", "now t1's", None, {"tenant": "moved out"}, False),
        ("t2", "10", None, "now t1's", {"tenant": "moved in"}, False),
    ]
    ids = [r[0] for r in db.execute("SELECT id FROM audit.events WHERE kind = 'public.orders.update'")]
    assert len(set(ids)) == 7
    # The row as of now is its new version under its new key; under its old key, gone.
    assert db.execute("SELECT audit.row_as_of('public.orders', '1', now() + interval '1 minute')").fetchone() == (None,)
    assert db.execute("SELECT audit.row_as_of('public.orders', '10', now() + interval '1 minute') ->> 'tenant'"
                      ).fetchone() == ("t2",)
    both_verifiers_ok(db)


def test_composite_missing_and_replica_identity_keys(db, maintainer):
    db.execute("""CREATE TABLE public.prices (sku int, region text, amount int, PRIMARY KEY (sku, region));
                  CREATE TABLE public.notes (body text);
                  CREATE TABLE public.codes (code text NOT NULL, label text);
                  CREATE UNIQUE INDEX codes_code ON public.codes (code);
                  ALTER TABLE public.codes REPLICA IDENTITY USING INDEX codes_code;
                  ALTER TABLE public.prices OWNER TO app_maintainer;
                  ALTER TABLE public.notes OWNER TO app_maintainer;
                  ALTER TABLE public.codes OWNER TO app_maintainer;""")
    assert enable_tracking(maintainer, "prices").key_columns == ["sku", "region"]
    assert enable_tracking(maintainer, "notes").key_columns is None
    # A replica identity index is no key (docs/capture.md): only a primary key names rows.
    assert enable_tracking(maintainer, "codes").key_columns is None
    db.execute("INSERT INTO prices VALUES (7, 'EU', 100); INSERT INTO notes VALUES ('hello');"
               " INSERT INTO codes VALUES ('X1', 'first')")
    rows = db.execute("SELECT kind, target_id FROM audit.events WHERE kind LIKE '%.insert' ORDER BY kind").fetchall()
    assert rows == [("public.codes.insert", None), ("public.notes.insert", None), ("public.prices.insert", '[7, "EU"]')]
    db.execute("ALTER TABLE public.codes ADD PRIMARY KEY USING INDEX codes_code")  # made its key: recorded
    assert db.execute("SELECT key_columns FROM audit.tracked_tables WHERE relid = 'public.codes'::regclass"
                      ).fetchone() == (["code"],)
    db.execute("INSERT INTO codes VALUES ('X2', 'second')")
    assert db.execute("SELECT target_id FROM audit.events WHERE kind = 'public.codes.insert' ORDER BY intake_id"
                      ).fetchall() == [(None,), ("X2",)]


def test_merge_and_on_conflict(db, maintainer, orders):
    enable_tracking(maintainer, orders)
    db.execute("INSERT INTO orders (id, total) VALUES (1, 10), (2, 20)")
    db.execute("""MERGE INTO orders o USING (VALUES (1, 0), (2, 25), (3, 30)) AS s(id, total) ON o.id = s.id
                  WHEN MATCHED AND s.total = 0 THEN DELETE
                  WHEN MATCHED THEN UPDATE SET total = s.total
                  WHEN NOT MATCHED THEN INSERT (id, total) VALUES (s.id, s.total)""")
    db.execute("INSERT INTO orders (id, total) VALUES (3, 31), (4, 40)"
               " ON CONFLICT (id) DO UPDATE SET total = excluded.total")
    kinds = [(e[0].rsplit(".", 1)[1], e[2]) for e in captured(db)]
    assert sorted(kinds[2:5]) == [("delete", "1"), ("insert", "3"), ("update", "2")]
    assert sorted(kinds[5:]) == [("insert", "4"), ("update", "3")]
    assert len(kinds) == 7


def test_cascades_and_writes_made_by_other_tables_triggers(db, maintainer, orders):
    db.execute("""CREATE TABLE public.lines (order_id int REFERENCES public.orders ON DELETE CASCADE ON UPDATE CASCADE,
                                             n int, PRIMARY KEY (order_id, n));
                  ALTER TABLE public.lines OWNER TO app_maintainer;
                  CREATE TABLE public.inbox (id int);
                  CREATE FUNCTION public.inbox_to_orders() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN INSERT INTO public.orders (id, customer) VALUES (NEW.id, 'from inbox'); RETURN NULL; END $$;
                  CREATE TRIGGER inbox_to_orders AFTER INSERT ON public.inbox FOR EACH ROW
                      EXECUTE FUNCTION public.inbox_to_orders();""")
    enable_tracking(maintainer, orders)
    enable_tracking(maintainer, "public.lines")
    db.execute("INSERT INTO orders (id) VALUES (1), (2); INSERT INTO lines VALUES (1, 1), (1, 2), (2, 1)")
    db.execute("UPDATE orders SET id = 10 WHERE id = 1")
    db.execute("DELETE FROM orders WHERE id = 2")
    db.execute("INSERT INTO inbox VALUES (5)")
    lines = [(e[0], e[2]) for e in captured(db, "kind LIKE 'public.lines.%'")]
    assert sorted(lines[3:]) == [("public.lines.delete", "[2, 1]"), ("public.lines.update", "[10, 1]"),
                                 ("public.lines.update", "[10, 2]")]
    assert captured(db, "kind = 'public.orders.insert' AND target_id = '5'")[0][8]["customer"] == "from inbox"


def test_truncate_records_who(db, connect, maintainer, orders):
    enable_tracking(maintainer, orders)
    db.execute("INSERT INTO orders (id) SELECT generate_series(1, 7)")
    app = connect("app_attacker")
    with audit_context(app, actor_id="ops-bot"):
        app.execute("TRUNCATE orders")
    row = db.execute("SELECT actor_id, db_role, payload, target_type FROM audit.events"
                     " WHERE kind = 'public.orders.truncate'").fetchone()
    # No row count: counting would plan a query on the table as the capture role (tests/test_capture_security.py).
    assert row == ("ops-bot", "app_attacker", {"table": "public.orders"}, "public.orders")


def test_the_client_address_comes_from_the_context_else_the_connection(db, connect, maintainer, orders):
    enable_tracking(maintainer, orders)
    app = connect("app_attacker")
    app.execute("INSERT INTO orders (id) VALUES (1)")
    with audit_context(app, client_addr="203.0.113.7"):
        app.execute("INSERT INTO orders (id) VALUES (2)")
    with pytest.raises(psycopg.Error, match="not an IP address") as caught, \
            audit_context(app, client_addr="nonsense"):
        app.execute("INSERT INTO orders (id) VALUES (3)")
    assert caught.value.sqlstate == "PA007" and "nonsense" not in str(caught.value)  # not repeated, as in logs
    assert db.execute("SELECT target_id, host(client_addr) FROM audit.events"
                      " WHERE kind = 'public.orders.insert' ORDER BY target_id").fetchall() == [
        ("1", "127.0.0.1"), ("2", "203.0.113.7")]
    assert db.execute("SELECT count(*) FROM orders").fetchone() == (2,)


def test_rollback_and_savepoints_leave_no_event(db, connect, maintainer, orders):
    enable_tracking(maintainer, orders)
    app = connect("app_attacker", autocommit=False)
    app.execute("INSERT INTO orders (id) VALUES (1)")
    app.rollback()
    app.execute("INSERT INTO orders (id) VALUES (2)")
    with pytest.raises(psycopg.errors.UniqueViolation), app.transaction():
        app.execute("INSERT INTO orders (id) VALUES (3)")
        app.execute("UPDATE orders SET total = 1 WHERE id = 2")
        app.execute("INSERT INTO orders (id) VALUES (2)")
    app.execute("UPDATE orders SET total = 5 WHERE id = 2")
    app.commit()
    assert [(e[0], e[2]) for e in captured(db)] == [("public.orders.insert", "2"), ("public.orders.update", "2")]
    assert captured(db)[1][9] == {"total": {"old": None, "new": 5}}


def test_partitioned_table_is_captured_through_its_root(db, maintainer):
    db.execute("""CREATE TABLE public.measures (id int, at date, v int, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
                  CREATE TABLE public.measures_2026 PARTITION OF public.measures FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
                  ALTER TABLE public.measures OWNER TO app_maintainer;
                  ALTER TABLE public.measures_2026 OWNER TO app_maintainer;""")
    enable_tracking(maintainer, "public.measures")
    db.execute("INSERT INTO measures VALUES (1, '2026-05-01', 3)")
    db.execute("UPDATE measures SET v = 4")
    assert [(e[0], e[2]) for e in captured(db, "kind LIKE 'public.measures.%'")] == [
        ("public.measures.insert", '[1, "2026-05-01"]'), ("public.measures.update", '[1, "2026-05-01"]')]
