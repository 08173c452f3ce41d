"""enable/disable_tracking: who may, what they refuse, and schema changes on tracked tables."""

from __future__ import annotations

import psycopg
import pytest

from pgaudit_py import (
    InvalidArgument,
    InvalidKind,
    InvalidTarget,
    disable_tracking,
    enable_tracking,
    status,
    tracked_tables,
)


@pytest.fixture
def maintainer(connect):
    return connect("app_maintainer")


@pytest.fixture
def orders(db):
    db.execute("""CREATE TABLE public.orders (id int PRIMARY KEY, total int, note text, secret text, tenant text);
                  ALTER TABLE public.orders OWNER TO app_maintainer;
                  GRANT ALL ON public.orders TO app_writer;""")
    return "public.orders"


def capture_triggers(db) -> list[tuple[str, str]]:
    """(table, trigger) of every capture trigger in the database."""
    return db.execute(r"SELECT tgrelid::regclass::text, tgname FROM pg_trigger WHERE tgname LIKE 'audit\_capture\_%'"
                      " ORDER BY 1, 2").fetchall()


CAPTURE = ["audit_capture_delete", "audit_capture_insert", "audit_capture_truncate", "audit_capture_update"]


def kinds(db, like: str) -> list[str]:
    return [r[0] for r in db.execute("SELECT kind FROM audit.events WHERE kind LIKE %s"
                                     " ORDER BY seq NULLS LAST, occurred_at", (like,))]


def test_enable_is_idempotent_and_changes_options_disable_too(db, maintainer, orders):
    first = enable_tracking(maintainer, orders)
    again = enable_tracking(maintainer, orders, exclude_columns=["secret"])
    assert (first.exclude_columns, again.exclude_columns) == ([], ["secret"])
    assert [t.table_name for t in tracked_tables(maintainer)] == ["public.orders"]
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass"
                      " AND tgname LIKE 'audit\\_capture\\_%'").fetchone() == (4,)
    assert disable_tracking(maintainer, orders) is True
    assert disable_tracking(maintainer, orders) is False
    assert tracked_tables(maintainer) == []
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass"
                      " AND NOT tgisinternal").fetchone() == (0,)
    db.execute("INSERT INTO orders (id) VALUES (1)")
    assert kinds(db, "public.orders.%") == []
    events = db.execute("SELECT kind, target_id, payload ->> 'exclude_columns' FROM audit.events"
                        " WHERE kind LIKE 'audit.tracking%' ORDER BY occurred_at").fetchall()
    assert events == [("audit.tracking_enabled", "public.orders", "[]"),
                      ("audit.tracking_enabled", "public.orders", '["secret"]'),
                      ("audit.tracking_disabled", "public.orders", None)]
    assert status(db).problems == []


@pytest.mark.parametrize("role", ["app_writer", "app_reader"])
def test_writers_and_readers_cannot_switch_auditing(db, connect, maintainer, orders, role):
    enable_tracking(maintainer, orders)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        disable_tracking(connect(role), orders)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        enable_tracking(connect(role), orders, exclude_columns=["total"])
    assert tracked_tables(db)[0].exclude_columns == []
    assert capture_triggers(db) == [("orders", name) for name in CAPTURE]
    assert kinds(db, "audit.%") == ["audit.tracking_enabled"]


def test_the_maintainer_must_own_the_table(db, maintainer):
    db.execute("CREATE TABLE public.foreign_owned (id int PRIMARY KEY)")
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner of table public.foreign_owned"):
        enable_tracking(maintainer, "public.foreign_owned")
    assert tracked_tables(db) == []
    assert capture_triggers(db) == []
    assert db.execute("SELECT count(*) FROM audit.events").fetchone() == (0,)


def test_the_owner_of_a_table_cannot_drop_or_disable_its_capture(db, maintainer, orders):
    enable_tracking(maintainer, orders)
    for ddl in ("DROP TRIGGER audit_capture_update ON public.orders",
                "ALTER TABLE public.orders DISABLE TRIGGER audit_capture_insert",
                "ALTER TABLE public.orders DISABLE TRIGGER ALL"):
        with pytest.raises(psycopg.Error) as caught:
            maintainer.execute(ddl)
        assert caught.value.sqlstate == "PA008", ddl
        assert "the capture of public.orders cannot be switched off or changed" in str(caught.value)
    db.execute("INSERT INTO orders (id) VALUES (1)")
    assert kinds(db, "public.orders.%") == ["public.orders.insert"]


@pytest.mark.parametrize("setup, target, error, message", [
    ("", "public.nope", psycopg.errors.UndefinedTable, r"public\.nope"),  # PostgreSQL's words, in its language
    ("CREATE VIEW public.v AS SELECT 1 AS x", "public.v", InvalidTarget, "only tables can be tracked, not views"),
    ("CREATE TABLE public.p (d date) PARTITION BY RANGE (d);"
     " CREATE TABLE public.p1 PARTITION OF public.p FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')",
     "public.p1", InvalidTarget, "cannot track public.p1: it is a partition"),
    ("", "audit.event_log", InvalidTarget, "the audit log does not audit itself"),
])
def test_bad_targets(db, maintainer, setup, target, error, message):
    if setup:
        db.execute(setup)
        db.execute(f"ALTER TABLE {target} OWNER TO app_maintainer")
    with pytest.raises(error, match=message):
        enable_tracking(maintainer, target)
    assert tracked_tables(db) == []
    assert capture_triggers(db) == []
    assert db.execute("SELECT count(*) FROM audit.events").fetchone() == (0,)


@pytest.mark.parametrize("options, error, message", [
    ({"exclude_columns": ["nope"]}, InvalidArgument, "column nope of public.orders does not exist"),
    ({"redact_columns": ["total", "ghost"]}, InvalidArgument, "column ghost of public.orders does not exist"),
    ({"tenant_column": "who"}, InvalidArgument, "column who of public.orders does not exist"),
    ({"exclude_columns": ["note"], "redact_columns": ["note"]}, InvalidArgument,
     "a column cannot be both excluded and redacted: note"),
    ({"kind_prefix": "bad prefix"}, InvalidKind, "^invalid kind prefix$"),  # never the value
])
def test_bad_options_write_nothing(db, maintainer, orders, options, error, message):
    with pytest.raises(error, match=message):
        enable_tracking(maintainer, orders, **options)
    assert tracked_tables(db) == []
    assert db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.orders'::regclass").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM audit.events").fetchone() == (0,)


def test_partition_hint_names_the_parent(db, maintainer):
    db.execute("CREATE TABLE public.p (d date) PARTITION BY RANGE (d);"
               " CREATE TABLE public.p1 PARTITION OF public.p FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
               " ALTER TABLE public.p1 OWNER TO app_maintainer")
    with pytest.raises(InvalidTarget) as caught:
        enable_tracking(maintainer, "public.p1")
    assert caught.value.hint == "Track the partitioned table public.p instead."
    assert (tracked_tables(db), capture_triggers(db)) == ([], [])
    assert db.execute("SELECT count(*) FROM audit.events").fetchone() == (0,)


def test_columns_added_dropped_and_renamed(db, maintainer, orders):
    enable_tracking(maintainer, orders, exclude_columns=["secret"], redact_columns=["note"], tenant_column="tenant")
    db.execute("ALTER TABLE orders ADD COLUMN extra int")
    db.execute("INSERT INTO orders (id, total, note, secret, tenant, extra) VALUES (1, 10, 'n', 's', 'acme', 5)")
    db.execute("ALTER TABLE orders RENAME COLUMN secret TO hidden")
    db.execute("ALTER TABLE orders RENAME COLUMN note TO remark")
    db.execute("ALTER TABLE orders RENAME COLUMN tenant TO org")
    db.execute("ALTER TABLE orders RENAME COLUMN id TO order_id")
    db.execute("ALTER TABLE orders DROP COLUMN extra")
    db.execute("INSERT INTO orders (order_id, total, remark, hidden, org) VALUES (2, 20, 'r', 'h', 'globex')")
    entry = tracked_tables(db)[0]
    assert (entry.key_columns, entry.exclude_columns, entry.redact_columns, entry.tenant_column) == (
        ["order_id"], ["hidden"], ["remark"], "org")
    rows = db.execute("SELECT target_id, tenant_id, row_after FROM audit.events WHERE kind = 'public.orders.insert'"
                      " ORDER BY occurred_at").fetchall()
    assert rows == [("1", "acme", {"id": 1, "total": 10, "note": "[redacted]", "tenant": "acme", "extra": 5}),
                    ("2", "globex", {"order_id": 2, "total": 20, "remark": "[redacted]", "org": "globex"})]
    altered = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_table_altered'").fetchone()
    assert altered == (4,)  # the four renames of columns named in the options; ADD/DROP of extra changed none


def test_renamed_and_dropped_tables(db, maintainer, orders):
    enable_tracking(maintainer, orders)
    db.execute("ALTER TABLE orders RENAME TO purchases")
    db.execute("INSERT INTO purchases (id) VALUES (1)")
    assert tracked_tables(db)[0].table_name == "public.purchases"
    assert kinds(db, "public.orders.%") == ["public.orders.insert"]  # the kind prefix stays
    db.execute("DROP TABLE purchases")
    assert tracked_tables(db) == []
    dropped = db.execute("SELECT target_id, payload FROM audit.events WHERE kind = 'audit.tracked_table_dropped'")
    assert dropped.fetchall() == [("public.purchases", {"kind_prefix": "public.orders"})]
    assert db.execute("SELECT count(*) FROM pg_proc WHERE proname ~ '^_capture_[0-9]+$'").fetchone() == (0,)
    assert status(db).problems == []


def test_status_reports_a_tracked_table_whose_capture_was_bypassed(db, maintainer, orders):
    enable_tracking(maintainer, orders)
    db.execute("ALTER EVENT TRIGGER audit_ddl_end DISABLE")  # a superuser can; status then says so
    db.execute("ALTER TABLE public.orders DISABLE TRIGGER audit_capture_delete")
    problems = status(db).problems
    assert "tracked table public.orders: trigger audit_capture_delete is disabled" in problems
    assert any(p.startswith("event trigger audit_ddl_end is disabled") for p in problems)


def test_a_maintainer_who_does_not_own_the_table_cannot_reach_the_catalogue_helpers(db, connect):
    """enable/disable run as their caller; the SECURITY DEFINER helpers they call are granted to the
    maintainer, so each must check ownership itself: called directly they refuse too."""
    db.execute("CREATE TABLE public.pay (id int PRIMARY KEY, card text)")
    enable_tracking(db, "public.pay")
    db.execute("SELECT audit.enable_rate_limit('public.pay', 1, 1)")
    stranger = connect("app_maintainer")
    for attempt in (
        "SELECT audit._register_tracking(t, md5(1::text)::uuid) FROM (SELECT relid, table_name, kind_prefix, key_columns, '{card}'::text[],"
        " redact_columns, tenant_column, exclude_attnums, redact_attnums, tenant_attnum, skip_noop_updates,"
        " enabled_at, enabled_by, baseline_at, name_types FROM audit.tracked_tables) t",
        "SELECT audit._unregister_tracking('public.pay'::regclass, 'audit.tracking_disabled', md5(1::text)::uuid)",
        "SELECT audit._drop_rate_limit('table', 'public.pay'::regclass::oid::text, md5(1::text)::uuid)",
        "SELECT audit._put_rate_limit(r, md5(1::text)::uuid) FROM (SELECT scope, target, 1000000, 1000000, per_key, window_seconds,"
        " changed_at, changed_by FROM audit.rate_limits) r",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner of table public.pay"):
            stranger.execute(attempt)
    with pytest.raises(psycopg.Error, match="invalid reason: forged.kind") as caught:
        db.execute("SELECT audit._unregister_tracking('public.pay'::regclass, 'forged.kind', md5(1::text)::uuid)")
    assert caught.value.sqlstate == "PA005"
    db.execute("INSERT INTO public.pay VALUES (1, '4111')")
    assert db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.pay.insert'").fetchone() == (
        {"id": 1, "card": "4111"},)
    assert db.execute("SELECT per_user, per_tenant FROM audit.rate_limits").fetchall() == [(1, 1)]


def test_a_table_with_huge_options_blocks_nothing(db, maintainer):
    """Its options make an audit.tracked_table_altered payload of over 64 KiB: pgaudit_py's own events
    are not held to record()'s limit, so no DROP or ALTER anywhere fails on it."""
    names = [f"c{i:03d}_{'x' * 55}" for i in range(560)]
    db.execute("CREATE SCHEMA wide AUTHORIZATION app_maintainer;"
               " CREATE TABLE wide.t (id int PRIMARY KEY, " + ", ".join(f"{n} int" for n in names)
               + "); ALTER TABLE wide.t OWNER TO app_maintainer")
    enable_tracking(maintainer, "wide.t", exclude_columns=names)
    db.execute("ALTER SCHEMA wide RENAME TO wide2")
    db.execute("CREATE TABLE public.other (id int); DROP TABLE public.other")
    assert tracked_tables(db)[0].table_name == "wide2.t"
    assert db.execute("SELECT octet_length(payload::text) > 65536 FROM audit.events"
                      " WHERE kind = 'audit.tracked_table_altered'").fetchone() == (True,)


@pytest.fixture
def two_maintainers(db, connect):
    db.execute("CREATE ROLE dba LOGIN IN ROLE audit_maintainer; CREATE ROLE maint LOGIN IN ROLE audit_maintainer;"
               " GRANT CREATE ON SCHEMA public TO dba, maint")
    yield connect("dba"), connect("maint")
    for role in ("dba", "maint"):
        db.execute(f"REASSIGN OWNED BY {role} TO postgres; DROP OWNED BY {role}; DROP ROLE {role}")


@pytest.mark.parametrize("attempt", [
    "PERFORM audit._unregister_tracking('public.ledger'::regclass, 'audit.tracking_disabled', md5(1::text)::uuid)",
    "PERFORM audit.disable_tracking('public.ledger')",
    "PERFORM audit._prove_owner('public.ledger'::regclass, md5(1::text)::uuid); "
    "PERFORM audit._unregister_tracking('public.ledger'::regclass, 'audit.tracking_disabled', md5(1::text)::uuid)",
    "INSERT INTO audit.owner_proofs VALUES ('public.ledger'::regclass, 'dba', pg_current_xact_id()); "
    "PERFORM audit._unregister_tracking('public.ledger'::regclass, 'audit.tracking_disabled', md5(1::text)::uuid)",
    "PERFORM audit.enable_tracking('public.ledger', exclude_columns => '{amount}')",
    "PERFORM audit.disable_rate_limit('public.ledger')",
])
def test_a_maintainers_definer_function_cannot_act_for_the_session(db, two_maintainers, attempt):
    """The helpers used to trust the session's role: a maintainer's SECURITY DEFINER trigger, fired
    in the session of another maintainer who owns a tracked table, switched its tracking off in that
    one's name. Who acts is what PostgreSQL says inside the caller: current_user there."""
    dba, maint = two_maintainers
    dba.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, amount int)")
    enable_tracking(dba, "public.ledger")
    dba.execute("SELECT audit.enable_rate_limit('public.ledger', 100, 100)")
    maint.execute(f"""
        CREATE TABLE public.inbox (id int);
        GRANT INSERT ON public.inbox TO PUBLIC;
        CREATE FUNCTION public.trojan() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS $$
        BEGIN {attempt}; RETURN NULL; END $$;
        CREATE TRIGGER trojan AFTER INSERT ON public.inbox FOR EACH STATEMENT EXECUTE FUNCTION public.trojan()""")
    for victim in (dba, db):  # another maintainer, and a superuser
        with pytest.raises(psycopg.Error) as caught:
            victim.execute("INSERT INTO public.inbox VALUES (1)")
        assert caught.value.sqlstate == "42501", attempt
    assert db.execute("SELECT exclude_columns, enabled_by FROM audit.tracked_tables").fetchall() == [([], "dba")]
    assert db.execute("SELECT changed_by FROM audit.rate_limits").fetchall() == [("dba",)]
    assert kinds(db, "audit.%") == ["audit.tracking_enabled", "audit.rate_limit_set"]
    assert status(db).problems == []


def test_a_proof_held_by_an_open_transaction_blocks_nobody(db, connect, two_maintainers):
    """Old proofs are cleaned up by whoever checks one next: a maintainer holding that cleanup's
    row locks in an idle transaction made every DROP of a tracked table, and every enable_tracking,
    wait for it."""
    dba, maint = two_maintainers
    maint.execute("CREATE TABLE public.mine (id int PRIMARY KEY); INSERT INTO audit.owner_proofs (relid)"
                  " VALUES ('public.mine'::regclass)")  # committed: stale from now on
    idle = connect("maint", autocommit=False)
    idle.execute("SELECT audit._drop_rate_limit('table', '4000000000', md5(1::text)::uuid)")  # cleans up, and holds the rows
    dba.execute("CREATE TABLE public.ledger (id int PRIMARY KEY)")
    dba.execute("SET statement_timeout = '3s'")
    enable_tracking(dba, "public.ledger")
    dba.execute("DROP TABLE public.ledger")
    idle.rollback()
    assert kinds(db, "audit.%") == ["audit.tracking_enabled", "audit.tracked_table_dropped"]
