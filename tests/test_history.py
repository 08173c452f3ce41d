"""row_history and row_as_of, and a property: the log alone rebuilds the table."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgaudit_py import (
    HistoryIncomplete,
    InvalidArgument,
    InvalidTarget,
    disable_tracking,
    enable_tracking,
    list_events,
    row_as_of,
    row_history,
    row_state_as_of,
    seal,
)
from pgaudit_py.errors import translated


@pytest.fixture
def maintainer(connect):
    return connect("app_maintainer")


def now(db):
    return db.execute("SELECT clock_timestamp()").fetchone()[0]


def test_history_and_as_of_follow_one_row(db, connect, maintainer):
    db.execute("CREATE TABLE public.items (id int PRIMARY KEY, name text, qty int);"
               " ALTER TABLE public.items OWNER TO app_maintainer")
    enable_tracking(maintainer, "public.items")
    before_insert = now(db)
    db.execute("INSERT INTO items VALUES (1, 'pen', 1), (2, 'ink', 5)")
    after_insert = now(db)
    db.execute("UPDATE items SET qty = 2 WHERE id = 1")
    seal(db)
    after_update = now(db)
    db.execute("UPDATE items SET name = 'quill' WHERE id = 1")  # stays pending
    after_rename = now(db)
    db.execute("DELETE FROM items WHERE id = 1")
    after_delete = now(db)

    reader = connect("app_reader")
    history = row_history(reader, "public.items", "1")
    assert [(e.kind, e.pending) for e in history] == [
        ("public.items.insert", False), ("public.items.update", False),
        ("public.items.update", True), ("public.items.delete", True)]
    assert history[1].changed == {"qty": {"old": 1, "new": 2}}
    assert history[2].changed == {"name": {"old": "pen", "new": "quill"}}
    assert row_as_of(reader, "public.items", "1", before_insert) is None
    assert row_as_of(reader, "public.items", "1", after_insert) == {"id": 1, "name": "pen", "qty": 1}
    assert row_as_of(reader, "public.items", "1", after_update) == {"id": 1, "name": "pen", "qty": 2}
    assert row_as_of(reader, "public.items", "1", after_rename) == {"id": 1, "name": "quill", "qty": 2}
    assert row_as_of(reader, "public.items", "1", after_delete) is None
    assert row_as_of(reader, "public.items", "2", after_delete) == {"id": 2, "name": "ink", "qty": 5}
    db.execute("TRUNCATE items")
    assert row_as_of(reader, "public.items", "2", now(db)) is None
    assert row_as_of(reader, "public.items", "2", after_delete) == {"id": 2, "name": "ink", "qty": 5}


def test_composite_keys_are_json_arrays(db, maintainer):
    db.execute("CREATE TABLE public.prices (sku int, region text, amount int, PRIMARY KEY (sku, region));"
               " ALTER TABLE public.prices OWNER TO app_maintainer")
    enable_tracking(maintainer, "public.prices")
    db.execute("INSERT INTO prices VALUES (7, 'EU', 100)")
    db.execute("UPDATE prices SET amount = 90")
    assert [e.kind for e in row_history(db, "public.prices", '[7,"EU"]')] == [
        "public.prices.insert", "public.prices.update"]
    assert row_as_of(db, "public.prices", '[7, "EU"]', now(db)) == {"sku": 7, "region": "EU", "amount": 90}
    with pytest.raises(InvalidArgument, match=r"has a composite key: give it as a JSON array") as refused:
        row_history(db, "public.prices", "7,EU-secret")
    assert "secret" not in str(refused.value)  # the key given is never repeated: messages end up in logs


ONE_COLUMN_KEYS = [
    # (the key's type, the key as written, the same value as a reader may spell it)
    ("timestamptz", "2026-01-02 03:04:05+00", "2026-01-02 04:04:05+01"),
    ("timestamptz", "2026-01-02 03:04:05+00", "2026-01-02T03:04:05Z"),
    ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"),
    ("jsonb", '{"a": 1, "b": [1, 2]}', '{"b":[1,2],"a":1}'),
    ("int", "7", " 007"),
    ("date", "2026-01-02", "Jan 2 2026"),
    ("char(3)", "abc", "abc"),
    ("bit(3)", "101", "101"),
    ("int4range", "[1,3)", "[1,2]"),
]


@pytest.mark.parametrize(("typ", "written", "asked"), ONE_COLUMN_KEYS)
def test_a_one_column_key_in_another_spelling_of_its_value_names_the_row(db, connect, attacker, typ, written, asked):
    """The key is read as a value of the column's type and named as the capture names it (trial 76: these
    read 'absent' with a baseline that had imaged the row; trial 77: char and bit were cut to one character)."""
    attacker.execute(f"CREATE TABLE public.keyed (id {typ} PRIMARY KEY, v int)")
    attacker.execute(f"INSERT INTO public.keyed VALUES (%s::{typ}, 1)", [written])
    enable_tracking(connect("app_maintainer"), "public.keyed", baseline=True)
    attacker.execute(f"UPDATE public.keyed SET v = 2 WHERE id = %s::{typ}", [written])
    at = now(db)
    reader = connect("app_reader")
    reader.execute("SET TimeZone = 'America/New_York'")
    state = row_state_as_of(reader, "public.keyed", asked, at)
    assert (state.state, state.image["v"]) == ("existed", 2)
    assert [e.kind for e in row_history(reader, "public.keyed", asked)] == ["public.keyed.baseline", "public.keyed.update"]


VARIED_KEYS = [
    # (the key's type, the key as written, another spelling of the same value, a value of no row)
    ("numeric", "1.0", "1", "2"),
    ("numeric(10,2)", "1.50", "1.5", "1.51"),
    ("interval", "1 day", "24 hours", "2 days"),
    ("char(3)", "ab", "ab", "abc"),
    ("float8", "0", "-0", "1"),
]


@pytest.mark.parametrize(("typ", "written", "other", "none"), VARIED_KEYS)
def test_a_key_whose_equal_values_print_apart_never_reads_absent(db, connect, attacker, typ, written, other, none):
    """Equal values that print apart (1.0 and 1, '1 day' and '24 hours'): the row's events name the spelling
    it was written with, so no event under another says nothing (trial 77): 'unknown', never 'absent'."""
    attacker.execute(f"CREATE TABLE public.keyed (id {typ} PRIMARY KEY, v int)")
    attacker.execute(f"INSERT INTO public.keyed VALUES (%s::{typ}, 1)", [written])
    enable_tracking(connect("app_maintainer"), "public.keyed", baseline=True)
    at = now(db)
    reader = connect("app_reader")
    as_written = db.execute("SELECT target_id FROM audit.events WHERE kind = 'public.keyed.baseline'").fetchone()[0]
    assert row_state_as_of(reader, "public.keyed", as_written, at).state == "existed"
    assert row_state_as_of(reader, "public.keyed", other, at).state in ("existed", "unknown")
    assert row_state_as_of(reader, "public.keyed", none, at).state == "unknown"


def test_a_composite_keys_jsonb_value_is_the_json_value_given_and_char_keys_are_never_cut(db, connect, attacker):
    """Trial 79: a string holding JSON text, given for a jsonb column of a composite key, was read as that
    JSON and named another row; a "char" key was cut to its one character."""
    attacker.execute("""CREATE TABLE public.docs (n int, k jsonb, v int, PRIMARY KEY (n, k));
                        INSERT INTO public.docs VALUES (1, '{"a": 1}', 1), (1, '"{\\"a\\": 1}"', 2);
                        CREATE TABLE public.flags (id "char" PRIMARY KEY, v int); INSERT INTO public.flags VALUES ('a', 1)""")
    enable_tracking(connect("app_maintainer"), "public.docs", baseline=True)
    enable_tracking(connect("app_maintainer"), "public.flags", baseline=True)
    reader = connect("app_reader")
    at = now(db)
    for (v,) in db.execute("SELECT v FROM public.docs ORDER BY v").fetchall():
        target = db.execute("SELECT target_id FROM audit.events WHERE kind = 'public.docs.baseline'"
                            " AND (row_after ->> 'v')::int = %s", [v]).fetchone()[0]
        assert row_state_as_of(reader, "public.docs", target, at).image["v"] == v
    assert row_state_as_of(reader, "public.docs", '[1, {"a":1}]', at).image["v"] == 1
    assert row_state_as_of(reader, "public.flags", "ab", at).state == "absent"
    assert row_state_as_of(reader, "public.flags", "a", at).state == "existed"


def test_a_composite_keys_values_are_read_as_values_of_their_columns(db, connect, attacker):
    attacker.execute("CREATE TABLE public.shifts (at timestamptz, who uuid, v int, PRIMARY KEY (at, who))")
    attacker.execute("INSERT INTO public.shifts VALUES ('2026-01-02 03:04:05+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 1)")
    enable_tracking(connect("app_maintainer"), "public.shifts", baseline=True)
    reader = connect("app_reader")
    key = '["2026-01-02 04:04:05+01", "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"]'
    assert row_state_as_of(reader, "public.shifts", key, now(db)).state == "existed"
    assert row_state_as_of(reader, "public.shifts", '["2026-01-02 04:04:05+02", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]',
                           now(db)).state == "absent"


def test_a_key_is_never_cut_or_rounded_to_another_rows_and_no_types_code_runs(db, connect, attacker):
    """A key is read as a value of its column's type by the type's own name, with no type modifier: a cast to
    char(1), bit(1), varchar(3) or numeric(4,1) would cut or round it into another row's key (trial 77). A
    type or domain of anyone's making is taken as given, never read by its code."""
    attacker.execute("""CREATE TABLE public.short (id varchar(3) PRIMARY KEY);
                        CREATE TABLE public.code (id char(1) PRIMARY KEY);
                        CREATE TABLE public.flag (id bit(1) PRIMARY KEY);
                        CREATE TABLE public.key_spy_ran (who text);
                        GRANT INSERT ON public.key_spy_ran TO PUBLIC;
                        CREATE FUNCTION public.key_spy(v text) RETURNS boolean LANGUAGE sql AS
                            $$ INSERT INTO public.key_spy_ran VALUES (current_user) RETURNING true $$;
                        CREATE DOMAIN public.watched AS text CHECK (public.key_spy(VALUE));
                        CREATE TABLE public.dom (id public.watched PRIMARY KEY)""")
    for table, row in (("short", "abc"), ("code", "a"), ("flag", "1"), ("dom", "x")):
        attacker.execute(f"INSERT INTO public.{table} VALUES (%s)", [row])
        enable_tracking(connect("app_maintainer"), f"public.{table}", baseline=True)
    attacker.execute("TRUNCATE public.key_spy_ran")
    reader = connect("app_reader")
    at = now(db)
    assert row_state_as_of(reader, "public.short", "abcdef", at).state == "absent"
    assert row_state_as_of(reader, "public.short", "abc", at).state == "existed"
    assert row_state_as_of(reader, "public.code", "abc", at).state == "unknown"  # char: 'a' and 'a  ' are one value
    assert row_state_as_of(reader, "public.code", "a", at).state == "existed"
    assert row_state_as_of(reader, "public.flag", "101", at).state == "unknown"
    assert [e.kind for e in row_history(reader, "public.flag", "101")] == []
    assert row_state_as_of(reader, "public.dom", "x", at).state == "existed"
    assert db.execute("SELECT count(*) FROM public.key_spy_ran").fetchone() == (0,)


operation = st.one_of(
    st.tuples(st.just("insert"), st.lists(st.integers(0, 30), min_size=1, max_size=5), st.integers(-5, 5)),
    st.tuples(st.just("update"), st.integers(0, 30), st.integers(0, 30), st.integers(-5, 5)),
    st.tuples(st.just("rekey"), st.integers(0, 30)),
    st.tuples(st.just("delete"), st.integers(0, 30), st.integers(0, 30)),
    st.tuples(st.just("noop"), st.integers(0, 30)),
)
counter = itertools.count()


def apply(conn, table: str, op: tuple) -> None:
    kind = op[0]
    if kind == "insert":
        for key in dict.fromkeys(op[1]):
            conn.execute(f"INSERT INTO {table} VALUES (%s, %s, %s) ON CONFLICT (id) DO UPDATE SET a = excluded.a",
                         (key, op[2], f"v{key}"))
    elif kind == "update":
        conn.execute(f"UPDATE {table} SET a = a + %s, b = b || 'x' WHERE id BETWEEN %s AND %s",
                     (op[3], min(op[1:3]), max(op[1:3])))
    elif kind == "rekey":  # the primary key itself changes, to one never used
        conn.execute(f"UPDATE {table} SET id = (SELECT coalesce(max(id), 0) + 1000 FROM {table}) WHERE id = %s",
                     (op[1],))
    elif kind == "delete":
        conn.execute(f"DELETE FROM {table} WHERE id BETWEEN %s AND %s", (min(op[1:]), max(op[1:])))
    else:
        conn.execute(f"UPDATE {table} SET a = a WHERE id = %s", (op[1],))


@pytest.fixture
def roles(connect):
    """One connection per role, shared by all the examples hypothesis runs in one test."""
    return connect("app_maintainer"), connect("app_writer", autocommit=False), connect("app_reader")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(operation, min_size=1, max_size=25))
def test_the_log_alone_rebuilds_the_table(db, roles, ops):
    maintainer, writer, reader = roles
    table = f"public.replay_{next(counter)}"
    db.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, a int, b text); ALTER TABLE {table} OWNER TO app_maintainer")
    enable_tracking(maintainer, table)
    db.execute(f"GRANT ALL ON {table} TO app_writer")
    for op in ops:
        apply(writer, table, op)
        writer.commit()
    seal(db, 1_000_000)

    rebuilt: dict[str, dict] = {}
    after = 0
    while page := list_events(reader, kind_prefix=table + ".", since_seq=after, page_size=500):
        for e in page:
            if e.kind.endswith(".insert"):
                rebuilt[e.target_id] = e.row_after
            elif e.kind.endswith(".update"):
                del rebuilt[str(e.row_before["id"])]
                rebuilt[e.target_id] = e.row_after
            elif e.kind.endswith(".delete"):
                del rebuilt[e.target_id]
        after = page[-1].seq
    actual = {str(r[0]["id"]): r[0] for r in db.execute(f"SELECT to_jsonb(t) FROM {table} t")}
    assert rebuilt == actual


def test_history_is_in_the_order_changes_were_applied(db, connect, maintainer):
    """A statement that began first but waited for another's row lock applied last: row_as_of follows
    the order of the log, not of the statements' start times."""
    db.execute("CREATE TABLE public.doc (id int PRIMARY KEY, v text); ALTER TABLE public.doc OWNER TO app_maintainer;"
               " INSERT INTO public.doc VALUES (1, 'first'); GRANT ALL ON public.doc TO app_writer")
    enable_tracking(maintainer, "public.doc")
    quick = connect("app_writer", autocommit=False)
    slow = connect("app_writer")
    quick.execute("UPDATE public.doc SET v = 'good' WHERE id = 1")  # holds the row
    waiting = threading.Thread(target=lambda: slow.execute("UPDATE public.doc SET v = 'evil' WHERE id = 1"))
    waiting.start()  # began before 'good' commits, applies after it
    time.sleep(0.3)
    quick.commit()
    waiting.join()
    assert db.execute("SELECT v FROM public.doc").fetchone() == ("evil",)
    for sealed in (False, True):
        assert row_as_of(db, "public.doc", "1", now(db))["v"] == "evil", sealed
        assert [e.row_after["v"] for e in row_history(db, "public.doc", "1")] == ["good", "evil"]
        seal(db)


def test_a_row_that_changed_key_leaves_its_old_key(db, connect, maintainer):
    db.execute("CREATE TABLE public.acc (id int PRIMARY KEY, v text); ALTER TABLE public.acc OWNER TO app_maintainer")
    enable_tracking(maintainer, "public.acc")
    db.execute("INSERT INTO public.acc VALUES (1, 'a')")
    db.execute("UPDATE public.acc SET id = 2 WHERE id = 1")
    for sealed in (False, True):
        assert row_as_of(db, "public.acc", "1", now(db)) is None, sealed
        assert row_as_of(db, "public.acc", "2", now(db)) == {"id": 2, "v": "a"}
        assert [e.kind for e in row_history(db, "public.acc", "1")] == ["public.acc.insert", "public.acc.update"]
        assert [{k: v for k, v in e.payload.items() if k != "statement"} for e in row_history(db, "public.acc", "2")] == [
            {"moved_from": "1"}]
        seal(db)


# ---- from a second attacker's review ----

def test_changes_within_one_statement_keep_their_order(db, maintainer):
    """Three UPDATEs in one DO block share a statement time: pending, they used to come back in any
    order (row_as_of said 'first'); they follow the intake, as they will be sealed."""
    db.execute("CREATE TABLE public.acct (id int PRIMARY KEY, owner text); ALTER TABLE public.acct OWNER TO app_maintainer;"
               " INSERT INTO public.acct VALUES (1, 'zero')")
    enable_tracking(maintainer, "public.acct")
    db.execute("""DO $$ BEGIN
                      UPDATE public.acct SET owner = 'first'; UPDATE public.acct SET owner = 'second';
                      UPDATE public.acct SET owner = 'third';
                  END $$""")
    for sealed in (False, True):
        assert row_as_of(db, "public.acct", "1", now(db)) == {"id": 1, "owner": "third"}, sealed
        assert [e.row_after["owner"] for e in row_history(db, "public.acct", "1")] == ["first", "second", "third"]
        seal(db)


def test_a_session_holding_earlier_ids_does_not_reorder_history(db, connect, maintainer):
    """Intake ids were handed out 100 at a time per session: a session that took its ids first but
    wrote the row last was sealed first, and the history ended on the older image."""
    db.execute("CREATE TABLE public.doc (id int PRIMARY KEY, v text); ALTER TABLE public.doc OWNER TO app_maintainer;"
               " GRANT ALL ON public.doc TO app_writer")
    enable_tracking(maintainer, "public.doc")
    early, late = connect("app_writer"), connect("app_writer")
    early.execute("INSERT INTO public.doc VALUES (0, 'takes ids first')")
    late.execute("INSERT INTO public.doc VALUES (1, 'inserted')")
    early.execute("UPDATE public.doc SET v = 'updated' WHERE id = 1")
    for sealed in (False, True):
        assert row_as_of(db, "public.doc", "1", now(db)) == {"id": 1, "v": "updated"}, sealed
        assert [e.row_after["v"] for e in row_history(db, "public.doc", "1")] == ["inserted", "updated"]
        seal(db)


def test_keys_shifted_in_one_statement(db, maintainer):
    """One UPDATE can move a row onto a key another row of the same statement leaves: each such key
    is left and taken at once, and row_as_of used to say the row at it was gone."""
    db.execute("CREATE TABLE public.seats (id int PRIMARY KEY, who text);"
               " ALTER TABLE public.seats OWNER TO app_maintainer;"
               " INSERT INTO public.seats VALUES (3, 'cy'), (2, 'bob'), (1, 'ann')")  # the scan goes 3, 2, 1
    enable_tracking(maintainer, "public.seats")
    db.execute("UPDATE public.seats SET id = id + 1")  # 3->4, 2->3, 1->2: each key is free when taken
    for sealed in (False, True):
        at = now(db)
        assert {k: row_as_of(db, "public.seats", k, at) for k in ("1", "2", "3", "4")} == {
            "1": None, "2": {"id": 2, "who": "ann"}, "3": {"id": 3, "who": "bob"}, "4": {"id": 4, "who": "cy"}}, sealed
        seal(db)
    assert sorted(db.execute("SELECT id, who FROM public.seats").fetchall()) == [(2, "ann"), (3, "bob"), (4, "cy")]


def test_a_deferrable_key_cannot_be_tracked(db, maintainer):
    """With a deferred key two rows can share it until commit (insert a duplicate, delete it: the
    original stays, while its history says deleted). Refused, and so is making a tracked key
    deferrable."""
    db.execute("CREATE TABLE public.seats (id int PRIMARY KEY DEFERRABLE, who text);"
               " CREATE TABLE public.rows (id int, who text, CONSTRAINT rows_pkey PRIMARY KEY (id));"
               " ALTER TABLE public.seats OWNER TO app_maintainer; ALTER TABLE public.rows OWNER TO app_maintainer;"
               " GRANT CREATE ON SCHEMA public TO app_maintainer")
    with pytest.raises(InvalidTarget, match="its primary key is deferrable"):
        enable_tracking(maintainer, "public.seats")
    enable_tracking(maintainer, "public.rows")
    with pytest.raises(InvalidTarget, match="its primary key is deferrable"), translated():
        maintainer.execute("ALTER TABLE public.rows DROP CONSTRAINT rows_pkey,"
                           " ADD CONSTRAINT rows_pkey PRIMARY KEY (id) DEFERRABLE")
    assert db.execute("SELECT condeferrable FROM pg_constraint WHERE conname = 'rows_pkey'").fetchone() == (False,)
    assert db.execute("SELECT table_name FROM audit.tracked_tables").fetchall() == [("public.rows",)]


def quarantine_an_update(db, table: str, key: int) -> None:
    """A captured UPDATE of the row the log refuses (an outcome no event may have), which seal() sets
    aside in the quarantine: only a superuser can write one into the intake, or an earlier release
    have left it there."""
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, target_type, target_id, outcome, txid,
                                                  occurred_at, payload, row_before, row_after, origin)
                  VALUES ('user', 'x', %(table)s || '.update', %(table)s, %(key)s::text, 'unknown', '1', now(), '{}',
                          jsonb_build_object('id', %(key)s), jsonb_build_object('id', %(key)s), 'capture')""",
               {"table": table, "key": key})
    seal(db)


def test_history_with_a_change_in_the_quarantine_is_refused(db, connect, attacker):
    """A captured change the sealer set aside is not in the log: history refuses to answer (PA015)
    rather than answer without it."""
    attacker.execute("CREATE TABLE public.docs (id int PRIMARY KEY, t0 text)")
    enable_tracking(connect("app_maintainer"), "public.docs")
    attacker.execute("INSERT INTO public.docs VALUES (1, 'one'), (2, 'two')")
    quarantine_an_update(db, "public.docs", 1)
    assert db.execute("SELECT target_id, sqlstate FROM audit.quarantine").fetchall() == [("1", "23514")]
    reader = connect("app_reader")
    for ask in (lambda: row_as_of(reader, "public.docs", "1", now(db)), lambda: row_history(reader, "public.docs", "1")):
        with pytest.raises(HistoryIncomplete, match="^the history of the row asked of public.docs is incomplete:"
                                                    " a captured change of it is in the quarantine$"):
            ask()  # the key asked is never repeated: messages end up in logs
    assert row_as_of(reader, "public.docs", "2", now(db)) == {"id": 2, "t0": "two"}


def test_a_new_table_under_a_tracked_tables_old_name_has_no_past(db, connect, maintainer):
    """A tracked table renamed keeps its kind prefix; a new table under the old name is not it."""
    db.execute("CREATE TABLE public.orders (id int PRIMARY KEY, v text); ALTER TABLE public.orders OWNER TO app_maintainer")
    enable_tracking(maintainer, "public.orders")
    db.execute("INSERT INTO public.orders VALUES (1, 'old')")
    db.execute("ALTER TABLE public.orders RENAME TO orders_2024; CREATE TABLE public.orders (id int PRIMARY KEY, v text)")
    with pytest.raises(InvalidTarget, match="public.orders_2024"):
        row_as_of(db, "public.orders", "1", now(db))
    assert row_as_of(db, "public.orders_2024", "1", now(db)) == {"id": 1, "v": "old"}


def test_row_state_tells_no_record_apart_from_did_not_exist(db, connect, attacker):
    """row_as_of's NULL reads the same for a row that did not exist and for one there is no record
    of (before tracking began, or a row from before tracking that had not changed yet)."""
    attacker.execute("CREATE TABLE public.stock (id int PRIMARY KEY, qty int)")
    attacker.execute("INSERT INTO public.stock VALUES (1, 5), (2, 7)")  # before tracking
    before_tracking = now(db)
    enable_tracking(connect("app_maintainer"), "public.stock")
    tracked = now(db)
    attacker.execute("UPDATE public.stock SET qty = 6 WHERE id = 1")  # a row from before tracking changes
    attacker.execute("INSERT INTO public.stock VALUES (3, 1)")
    attacker.execute("DELETE FROM public.stock WHERE id = 3")
    after = now(db)
    reader = connect("app_reader")

    def state(key: str, at) -> tuple[str, dict | None]:
        found = row_state_as_of(reader, "public.stock", key, at)
        assert row_as_of(reader, "public.stock", key, at) == found.image  # the same image, when there is one
        return found.state, found.image

    assert state("1", before_tracking) == ("unknown", None)  # before tracking began
    assert state("1", tracked) == ("unknown", None)  # it existed, but no image of it was taken yet
    assert state("1", after) == ("existed", {"id": 1, "qty": 6})
    assert state("2", after) == ("unknown", None)  # from before tracking, never changed since
    assert state("3", tracked) == ("absent", None)  # inserted later
    assert state("3", after) == ("absent", None)  # deleted
    assert state("4", after) == ("unknown", None)  # never seen: it may never have existed, or be unchanged


def test_after_tracking_ends_the_last_image_is_no_longer_the_rows_state(db, connect, maintainer):
    """Once tracking is disabled, or the table dropped, the rows may change with no event: what was
    recorded says nothing of them afterwards ('unknown', no image), until a change of the row is
    captured again; a table made again under a dropped one's name has the old one's past, up to the
    drop (tests/test_trust_attacks_69.py)."""
    db.execute("CREATE TABLE public.accts (id int PRIMARY KEY, v int); ALTER TABLE public.accts OWNER TO app_maintainer")
    enable_tracking(maintainer, "public.accts")
    db.execute("INSERT INTO public.accts VALUES (1, 5), (2, 6)")
    tracked = now(db)
    disable_tracking(maintainer, "public.accts")
    db.execute("UPDATE public.accts SET v = 99 WHERE id = 1")  # not captured
    disabled = now(db)
    reader = connect("app_reader")
    assert row_state_as_of(reader, "public.accts", "1", tracked).image == {"id": 1, "v": 5}
    assert (row_state_as_of(reader, "public.accts", "1", disabled).state,
            row_as_of(reader, "public.accts", "1", disabled)) == ("unknown", None)

    enable_tracking(maintainer, "public.accts")
    db.execute("UPDATE public.accts SET v = 7 WHERE id = 2")
    updated = now(db)
    db.execute("DROP TABLE public.accts")
    dropped = now(db)
    db.execute("CREATE TABLE public.accts (id int PRIMARY KEY, v int); INSERT INTO public.accts VALUES (2, 1000)")
    seal(db)
    assert row_state_as_of(reader, "public.accts", "2", tracked).image == {"id": 2, "v": 6}  # the name's past
    assert row_state_as_of(reader, "public.accts", "2", updated).image == {"id": 2, "v": 7}
    assert (row_state_as_of(reader, "public.accts", "2", dropped).state,
            row_as_of(reader, "public.accts", "2", dropped)) == ("unknown", None)
    db.execute("ALTER TABLE public.accts OWNER TO app_maintainer")
    enable_tracking(maintainer, "public.accts")
    db.execute("UPDATE public.accts SET v = 1001 WHERE id = 2")
    assert row_state_as_of(reader, "public.accts", "2", now(db)).image == {"id": 2, "v": 1001}
