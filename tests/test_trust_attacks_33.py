"""A thirty-third attacker's trial, on 346bd6c: _on_ddl_end (the audit_ddl_end event trigger) no
longer watches CREATE FUNCTION. Before, a function created or replaced made it check again every
covered table whose generated column or type (a range's subtype_diff, a domain's default) depends
on it; now the one guard for functions is audit_temporary (_refuse_temporary_beneath, walking
_temporary_beneath DOWN from the function a command created or altered).

The routes tried: a function beneath a covered column replaced so that its DEFAULT ARGUMENTS, or its
SQL-standard body, rest on a temporary object (three places a covered column reaches a function:
a generated column, a domain's default, a range's subtype_diff); a generated column's function handed
to another role (OWNER TO, SET SCHEMA into that role's schema, RENAME) and dropped with CASCADE by
its new owner; functions under a covered table's domain CHECK, default, generated column, CHECK
constraint, index expression, index predicate, statistics and trigger replaced AFTER tracking to run
the attacker's spy, then the writes, a re-tracking with a baseline, schema changes and a seal (who
runs them?); a long query string dropping a generated column's function hostile at its 2,000th
character, through both verifiers; a volatile function under a generated column and a rewrite that
is allowed (ADD COLUMN with a volatile default). And one new variant of the forging class: the KEY
of a tracked table without a primary key is its replica identity index, and an index is left alone by
audit_temporary ("each goes alone; no column goes with it"): an index whose column has a temporary
collation goes with DISCARD TEMP, and with it the uniqueness of the key every event names.

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
Every attack runs as table_owner (the `attacker` fixture: owns its tables, holds no audit role;
CREATE on the database and public; TEMP, as every role has) unless it says otherwise; app_maintainer
(a member of table_owner) tracks the tables. The temporary schema is dropped with DISCARD TEMP in a
second session of table_owner's (no event trigger fires for it, as at a session's end).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time

import psycopg
import pytest
from schema_changes import (
    both_verifiers_ok,
    columns,
    events_naming,
    gone_events,
    ran_or_refused,
    tracked_or_refused,
)

from pgaudit_py import InvalidTarget, disable_tracking, enable_tracking, seal


def _exists(db, name: str) -> bool:
    return db.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0]


def _discard_and_check(db, session, table: str, since: int) -> None:
    """DISCARD TEMP in session. Safe: the table keeps every column, or what it lost is recorded."""
    before = columns(db, table)
    session.execute("DISCARD TEMP")
    if not _exists(db, table):
        assert events_naming(db, table, since), f"{table} (tracked) went with DISCARD TEMP, nothing recorded or refused"
        return
    left = columns(db, table)
    if left != before:
        assert events_naming(db, table, since), (
            f"{table} lost columns with DISCARD TEMP ({before} -> {left}), every value with them, nothing recorded"
            " or refused")


def _key_of(db, table: str):
    return db.execute("SELECT key_columns FROM audit.tracked_tables WHERE relid = %s::regclass", (table,)).fetchone()


# --- 1. The key: a replica identity index over a temporary collation ----------------------------------


@pytest.mark.parametrize("route", ["tracked_with_it", "set_after_tracking"])
def test_a_replica_identity_key_index_on_a_temporary_collation_cannot_vanish_unrecorded(db, connect, attacker, route):
    """A tracked table without a primary key is keyed by its replica identity index (docs/capture.md:
    "the primary key else the replica identity index"): every event's target_id is that key, and
    row_history trusts it to name one row. PostgreSQL lets that index's column carry a collation
    other than the column's: CREATE UNIQUE INDEX ... (name COLLATE pg_temp.kc), and ALTER TABLE ...
    REPLICA IDENTITY USING INDEX checks neither collation nor opclass. audit_temporary leaves indexes
    alone ("each goes alone; no column goes with it"), and walks the table, never its indexes. At
    DISCARD TEMP (or the session's end) the collation goes with CASCADE and the key index with it:
    no event trigger fires, tracked_tables still names `name` the key, and two rows may now share
    it. A break: the key index gone with nothing recorded or refused (and then two rows' events under
    one target_id, one history for both)."""
    attacker.execute("CREATE TABLE public.acct (name text NOT NULL, balance int)")
    attacker.execute("INSERT INTO public.acct VALUES ('alice', 10), ('bob', 20)")
    session = connect("table_owner")
    if not ran_or_refused(session, ['CREATE COLLATION pg_temp.kc FROM "C"',
                                    "CREATE UNIQUE INDEX acct_key ON public.acct (name COLLATE pg_temp.kc)"]):
        return
    if route == "tracked_with_it":
        if not ran_or_refused(session, ["ALTER TABLE public.acct REPLICA IDENTITY USING INDEX acct_key"]):
            return
        if not tracked_or_refused(connect, "public.acct"):
            return
    else:
        assert tracked_or_refused(connect, "public.acct")
        if not ran_or_refused(session, ["ALTER TABLE public.acct REPLICA IDENTITY USING INDEX acct_key"]):
            return
    key = _key_of(db, "public.acct")[0]
    if key is None:  # the replica identity index names no row (the primary key alone does): nothing to lose
        return
    assert key == ["name"], key
    attacker.execute("UPDATE public.acct SET balance = 11 WHERE name = 'alice'")  # alice's history begins
    n = len(gone_events(db))
    session.execute("DISCARD TEMP")
    if _exists(db, "public.acct_key"):
        return
    recorded = events_naming(db, "public.acct", n)
    # What the loss allows: a second 'alice', captured under the same target_id as the first.
    try:
        attacker.execute("INSERT INTO public.acct VALUES ('alice', 99)")
        duplicated = True
    except psycopg.Error:
        duplicated = False
    history = db.execute("SELECT count(*), count(DISTINCT kind) FROM audit.row_history('public.acct', 'alice')").fetchone()
    assert recorded, (
        f"the key index of public.acct (tracked, key {key}) went with DISCARD TEMP with nothing recorded or refused;"
        f" tracked_tables still names {_key_of(db, 'public.acct')[0]} the key, a second row 'alice' was"
        f" {'accepted' if duplicated else 'refused'}, and row_history('alice') now holds {history[0]} events"
        f" ({history[1]} kinds) of two different rows as one row's history")


# --- 2. A function beneath a covered column replaced to rest on something temporary -------------------

WHERE_SETUP = {
    # A generated column's function.
    "generated": ["CREATE FUNCTION public.f(x int, y int DEFAULT 0) RETURNS int LANGUAGE sql IMMUTABLE"
                  " BEGIN ATOMIC SELECT x + y; END",
                  "CREATE TABLE public.book (id int PRIMARY KEY, v int,"
                  " g int GENERATED ALWAYS AS (public.f(v)) STORED)",
                  "INSERT INTO public.book (id, v) VALUES (1, 5), (2, 6)"],
    # A domain's default: the domain (pg_type) depends on the function; dropping it drops the domain.
    "domain_default": ["CREATE FUNCTION public.f(x int DEFAULT 0, y int DEFAULT 0) RETURNS int LANGUAGE sql"
                       " IMMUTABLE BEGIN ATOMIC SELECT x + y; END",
                       "CREATE DOMAIN public.dd AS int DEFAULT public.f()",
                       "CREATE TABLE public.book (id int PRIMARY KEY, v int, g public.dd)",
                       "INSERT INTO public.book (id, v, g) VALUES (1, 5, 5), (2, 6, 6)"],
    # A range's subtype_diff: the range depends on it.
    "subtype_diff": ["CREATE FUNCTION public.f(x float8, y float8) RETURNS float8 LANGUAGE sql IMMUTABLE"
                     " BEGIN ATOMIC SELECT x - y; END",
                     "CREATE TYPE public.fr AS RANGE (subtype = float8, subtype_diff = public.f)",
                     "CREATE TABLE public.book (id int PRIMARY KEY, v int, g public.fr)",
                     "INSERT INTO public.book (id, v, g) VALUES (1, 5, '[1,2)'), (2, 6, '[3,4)')"],
}
SIGNATURE = {"generated": "x int, y int", "domain_default": "x int DEFAULT 0, y int", "subtype_diff": "x float8, y float8"}
KEPT_DEFAULT = {"generated": " DEFAULT 0", "domain_default": " DEFAULT 0", "subtype_diff": ""}  # none may be removed
RETURNS = {"generated": "int", "domain_default": "int", "subtype_diff": "float8"}
BODY = {"generated": "SELECT x + y", "domain_default": "SELECT x + y", "subtype_diff": "SELECT x - y"}
HOW = {
    # The last parameter's default made a temporary function's call (PostgreSQL records the
    # function's dependency on what its defaults use).
    "default_calls_a_temporary_function": (["CREATE FUNCTION pg_temp.tf() RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT 1'"],
                                           " DEFAULT pg_temp.tf()", None),
    # ... or names a temporary sequence (a regclass constant is a dependency too).
    "default_names_a_temporary_sequence": (["CREATE SEQUENCE pg_temp.ts"],
                                           " DEFAULT pg_catalog.nextval('pg_temp.ts'::regclass)", None),
    # The SQL-standard body reads a temporary table.
    "body_reads_a_temporary_table": (["CREATE TABLE pg_temp.tt (k int)"], None,
                                     "(SELECT count(*) FROM pg_temp.tt) * 0"),
}


@pytest.mark.parametrize("how", list(HOW))
@pytest.mark.parametrize("where", list(WHERE_SETUP))
def test_a_function_beneath_a_covered_column_replaced_to_rest_on_a_temporary_object_is_refused_or_recorded(
        db, connect, attacker, where, how):
    """The removed branch of _on_ddl_end checked the covered tables that depend, through a generated
    column or a type, on a function a CREATE FUNCTION replaced. Now audit_temporary alone must see
    it, by walking down from the replaced function. The replacement keeps the signature (so it is
    a replacement) and brings in a temporary object through a parameter's DEFAULT (a temporary
    function's call, a temporary sequence named by a regclass constant) or through its SQL-standard
    body (a temporary table read). DISCARD TEMP would then drop the function with CASCADE, and with
    it the generated column, the domain (and its column) or the range (and its column), every value
    with them. A break: the replacement accepted and the column gone unrecorded."""
    for command in WHERE_SETUP[where]:
        attacker.execute(command)
    assert tracked_or_refused(connect, "public.book")
    session = connect("table_owner")
    setup, default, body_extra = HOW[how]
    if not ran_or_refused(session, setup):
        return
    args = SIGNATURE[where] + (KEPT_DEFAULT[where] if default is None else default)
    body = BODY[where] + (f" + {body_extra}" if body_extra else "")
    n = len(gone_events(db))
    if not ran_or_refused(session, [f"CREATE OR REPLACE FUNCTION public.f({args}) RETURNS {RETURNS[where]}"
                                    f" LANGUAGE sql IMMUTABLE BEGIN ATOMIC {body}; END"],
                          pg_refusals=("42P13", "0A000", "42P17")):
        return
    _discard_and_check(db, session, "public.book", since=n)


# --- 3. A generated column's function handed to another role, then dropped by it ----------------------


@pytest.mark.parametrize("hand_over", ["owner_to", "set_schema", "rename_then_owner"])
def test_a_generated_columns_function_handed_over_and_dropped_with_cascade_by_its_new_owner_is_recorded(
        db, connect, attacker, hand_over):
    """ALTER FUNCTION (OWNER TO, SET SCHEMA, RENAME) is watched by no tag list but audit_temporary's.
    table_owner hands the function its tracked table's generated column calls to app_attacker (a
    role with no right on the table): OWNER TO, or moved into app_attacker's own schema (whose owner
    may drop anything in it), or renamed first. app_attacker then DROP ... CASCADE (the function, or
    its schema): PostgreSQL drops the generated column of another role's table with every value. A
    break: the column gone with nothing recorded."""
    db.execute("CREATE SCHEMA lib AUTHORIZATION app_attacker")
    db.execute("GRANT USAGE, CREATE ON SCHEMA lib TO table_owner")
    db.execute("GRANT CREATE ON SCHEMA public TO app_attacker")  # a new owner needs CREATE on the schema
    try:
        attacker.execute("CREATE FUNCTION public.gf(x int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT x * 2; END")
        attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int,"
                         " g int GENERATED ALWAYS AS (public.gf(v)) STORED)")
        attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5), (2, 6)")
        assert tracked_or_refused(connect, "public.book")
        db.execute("GRANT app_attacker TO table_owner")  # OWNER TO needs membership in the new owner
        fn = "public.gf(int)"
        if hand_over == "set_schema":
            if not ran_or_refused(attacker, ["ALTER FUNCTION public.gf(int) SET SCHEMA lib"]):
                return
            fn = "lib.gf(int)"
            drop = "DROP SCHEMA lib CASCADE"
        else:
            if hand_over == "rename_then_owner":
                if not ran_or_refused(attacker, ["ALTER FUNCTION public.gf(int) RENAME TO innocent"]):
                    return
                fn = "public.innocent(int)"
            if not ran_or_refused(attacker, [f"ALTER FUNCTION {fn} OWNER TO app_attacker"]):
                return
            drop = f"DROP FUNCTION {fn} CASCADE"
        db.execute("REVOKE app_attacker FROM table_owner")
        n = len(gone_events(db))
        other = connect("app_attacker")
        if not ran_or_refused(other, [drop]):
            return
        if "g" not in columns(db, "public.book"):
            assert events_naming(db, "public.book", n), (
                f"app_attacker's {drop} took public.book.g (tracked) with every value, nothing recorded")
    finally:
        db.execute("REVOKE app_attacker FROM table_owner")
        db.execute("DROP SCHEMA IF EXISTS lib CASCADE")
        db.execute("REVOKE CREATE ON SCHEMA public FROM app_attacker")


# --- 4. Functions replaced after tracking: whose rights do they run with? -----------------------------

PRIVILEGED = {"postgres", "audit_owner", "audit_capture", "audit_sealer", "audit_pruner", "app_maintainer",
              "app_reader", "app_secrets"}


def test_functions_under_a_covered_table_replaced_after_tracking_never_run_with_an_audit_roles_rights(
        db, connect, attacker):
    """Before tracking, every function under public.book is harmless: a domain's CHECK, a column's
    default, a generated column, a CHECK constraint, an index expression, a partial index's
    predicate, an extended statistics expression, a row trigger. After tracking (nothing watches
    CREATE FUNCTION now), table_owner replaces the one function they all call so that it reports who
    runs it (public.spy: current_user, and whether it could append to the intake). Then: app_writer
    writes (its own statement: may run as app_writer), app_maintainer seals, re-tracks with a
    baseline (the planner runs index predicates and expressions: in the sandbox), table_owner adds a
    column and renames one (the event triggers regenerate the capture). A break: the spy ran as an
    audit role, as app_maintainer, as the superuser that only verifies, or could append to the log."""
    attacker.execute("CREATE FUNCTION public.hook(what text, v int) RETURNS boolean LANGUAGE plpgsql IMMUTABLE"
                     " AS $$ BEGIN RETURN true; END $$")
    attacker.execute("CREATE FUNCTION public.hooked(what text, v int) RETURNS int LANGUAGE plpgsql IMMUTABLE"
                     " AS $$ BEGIN PERFORM public.hook(what, v); RETURN v; END $$")
    attacker.execute("CREATE DOMAIN public.dv AS int CHECK (public.hook('domain check', VALUE))")
    attacker.execute("CREATE FUNCTION public.trg() RETURNS trigger LANGUAGE plpgsql AS"
                     " $$ BEGIN PERFORM public.hook('trigger', NEW.v); RETURN NEW; END $$")
    attacker.execute("""CREATE TABLE public.book (id int PRIMARY KEY, v int CHECK (public.hook('check', v)),
                          d public.dv, w int DEFAULT public.hooked('default', 1),
                          g int GENERATED ALWAYS AS (public.hooked('generated', v)) STORED)""")
    attacker.execute("CREATE INDEX book_x ON public.book (public.hooked('index expression', v))")
    attacker.execute("CREATE INDEX book_p ON public.book (id) WHERE public.hook('index predicate', v)")
    attacker.execute("CREATE STATISTICS book_s ON (public.hooked('statistics', v)), id FROM public.book")
    attacker.execute("CREATE TRIGGER book_t BEFORE INSERT OR UPDATE ON public.book FOR EACH ROW EXECUTE FUNCTION public.trg()")
    attacker.execute("INSERT INTO public.book (id, v, d) VALUES (1, 5, 5), (2, 6, 6)")
    attacker.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON public.book TO app_writer")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.book")
    if not ran_or_refused(attacker, ["CREATE OR REPLACE FUNCTION public.hook(what text, v int) RETURNS boolean"
                                     " LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN RETURN public.spy(what); END $$"]):
        return
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.book (id, v, d) VALUES (3, 7, 7)")
    writer.execute("UPDATE public.book SET v = v + 1, d = d + 1")
    writer.execute("DELETE FROM public.book WHERE id = 3")
    seal(maintainer)
    disable_tracking(maintainer, "public.book")
    enable_tracking(maintainer, "public.book", baseline=True)
    ran_or_refused(attacker, ["ALTER TABLE public.book ADD COLUMN extra int", "ALTER TABLE public.book RENAME COLUMN extra TO more"])
    writer.execute("UPDATE public.book SET v = v + 1")
    seal(maintainer)
    both_verifiers_ok(db)
    ran = db.execute("SELECT who, what, forged FROM public.who_ran").fetchall()
    assert ran, "the spy never ran: the attack did not take"
    bad = sorted({(who, what, forged) for who, what, forged in ran if who in PRIVILEGED or forged})
    assert not bad, f"table_owner's replaced function ran with another role's rights: {bad}"


# --- 5. A rewrite that is allowed, under a generated column whose function was replaced ---------------


def test_an_allowed_rewrite_does_not_recompute_a_generated_column_through_a_replaced_function_unrecorded(
        db, connect, attacker):
    """g GENERATED ALWAYS AS (public.gf(v)) STORED on a tracked table; gf replaced (nothing watches
    CREATE FUNCTION now) to return something else. ADD COLUMN with a volatile default rewrites the
    table and is allowed on a covered table (recorded as audit.tracked_table_ddl, with the columns).
    Were the rewrite to evaluate g again, every stored row's g would change, with a record that says
    only that a column was added. A break: g's stored values changed with no row event."""
    attacker.execute("CREATE FUNCTION public.gf(x int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT x * 2; END")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int,"
                     " g int GENERATED ALWAYS AS (public.gf(v)) STORED)")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5), (2, 6)")
    assert tracked_or_refused(connect, "public.book")
    before = db.execute("SELECT id, g FROM public.book ORDER BY id").fetchall()
    attacker.execute("CREATE OR REPLACE FUNCTION public.gf(x int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT -1; END")
    n = db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.book.%'").fetchone()[0]
    if not ran_or_refused(attacker, ["ALTER TABLE public.book ADD COLUMN stamp float8 DEFAULT random()",
                                     "ALTER TABLE public.book ADD COLUMN g2 int GENERATED ALWAYS AS (v + 1) STORED"]):
        return
    after = db.execute("SELECT id, g FROM public.book ORDER BY id").fetchall()
    rows = db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.book.%'").fetchone()[0] - n
    assert after == before or rows > 0, f"an allowed rewrite changed g ({before} -> {after}) with no row event"


# --- 6. Both verifiers, on the record a function's DROP ... CASCADE makes -----------------------------


def test_a_long_hostile_query_string_dropping_a_generated_columns_function_seals_and_verifies_in_both(
        db, connect, attacker):
    """DROP FUNCTION public.gf CASCADE takes g from a tracked table: recorded as
    audit.tracked_table_ddl with the query string cut at 2,000 characters, its length and SHA-256.
    The attacker writes the query string: a comment over 2,000 characters whose 2,000th character
    falls inside a sequence of a combining mark, U+2028, U+FEFF, U+FFFF, a 4-byte emoji, DEL and a
    right-to-left override, and control characters ahead of it. Sealed, the SQL verify() and the Python
    verifier must both agree the chain is whole, and the record's length and hash must be those of
    the text sent. A break: either verifier raises an alarm, or the record misstates the command."""
    attacker.execute("CREATE FUNCTION public.gf(x int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT x * 2; END")
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int,"
                     " g int GENERATED ALWAYS AS (public.gf(v)) STORED)")
    attacker.execute("INSERT INTO public.book (id, v) VALUES (1, 5), (2, 6)")
    assert tracked_or_refused(connect, "public.book")
    odd = "e\u0301\u2028\ufeff\uffff\U0001f600\x7f\u202e\"\\\t\x01"
    head = "/* " + "\x1f\b\f\r\n" + "x" * (2000 - 3 - 5 - 4)
    query = head + odd * 3 + " */ DROP FUNCTION public.gf(int) CASCADE"
    assert len(query) > 2000
    n = len(gone_events(db))
    attacker.execute(query)
    assert "g" not in columns(db, "public.book")
    new = events_naming(db, "public.book", n)
    assert new, "g went with nothing recorded"
    payload = new[-1][2]
    assert payload.get("command") == query[:2000], "the record's command is not the query string's first 2,000 characters"
    assert payload.get("command_chars") == len(query)
    assert payload.get("command_sha256") == hashlib.sha256(query.encode()).hexdigest()
    seal(connect("app_maintainer"))
    both_verifiers_ok(db)


# --- 7. Switching capture off through a function the triggers or the capture reach --------------------


def test_a_function_replaced_under_a_partition_key_routes_no_row_past_the_capture(db, connect, attacker):
    """A tracked table partitioned by LIST (public.pk(v)); its partitions carry capture triggers.
    After tracking, pk is replaced (nothing watches CREATE FUNCTION) so that new rows route to another
    partition, and existing rows now break their own partition's bound: an UPDATE moves them (a
    DELETE from one partition, an INSERT into the other). Writes through the parent and through a
    partition directly, then an UPDATE that moves every row. A break: a row change with no event
    (counted against the rows the writes touched), or a move recorded as anything but one UPDATE."""
    attacker.execute("CREATE FUNCTION public.pk(x int) RETURNS int LANGUAGE sql IMMUTABLE BEGIN ATOMIC SELECT x % 2; END")
    attacker.execute("CREATE TABLE public.book (id int, v int) PARTITION BY LIST (public.pk(v))")
    attacker.execute("CREATE TABLE public.book_0 PARTITION OF public.book FOR VALUES IN (0)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES IN (1)")
    attacker.execute("INSERT INTO public.book VALUES (1, 2), (2, 3)")
    assert tracked_or_refused(connect, "public.book")
    if not ran_or_refused(attacker, ["CREATE OR REPLACE FUNCTION public.pk(x int) RETURNS int LANGUAGE sql IMMUTABLE"
                                     " BEGIN ATOMIC SELECT 1 - x % 2; END"]):
        return
    attacker.execute("INSERT INTO public.book VALUES (3, 4)")        # goes to book_1 now
    attacker.execute("UPDATE public.book SET id = id + 10")          # every row breaks its bound: moved
    with contextlib.suppress(psycopg.Error):  # direct: a partition bound error, or captured
        attacker.execute("UPDATE public.book_0 SET id = id + 100")
    kinds = [r[0] for r in db.execute("SELECT kind FROM audit.events WHERE kind LIKE 'public.book.%'"
                                      " ORDER BY occurred_at, intake_id")]
    assert kinds.count("public.book.insert") == 1, kinds
    updates = kinds.count("public.book.update")
    # 3 rows updated by the first UPDATE, and whatever the direct one changed.
    direct = db.execute("SELECT count(*) FROM public.book WHERE id > 100").fetchone()[0]
    assert updates == 3 + direct, f"{updates} update events for {3 + direct} rows changed: {kinds}"
    assert "public.book.delete" not in kinds, f"a move was recorded as a delete (and an insert): {kinds}"
    both_verifiers_ok(db)


def test_a_trigger_function_replaced_to_write_through_a_security_definer_function_is_still_captured(
        db, connect, attacker):
    """After tracking, table_owner replaces the function of its own AFTER ROW trigger on an untracked
    table so that it writes into the tracked table through a SECURITY DEFINER function of
    table_owner's, with SET session_replication_role in its SET clause and ALTER FUNCTION ... SET
    search_path to a schema holding a table named like the intake. A write by app_writer to the
    untracked table then changes the tracked one inside two nested functions. A break: the nested
    change is not captured, or the function could set session_replication_role (capture switched off)."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int)")
    attacker.execute("CREATE TABLE public.inbox (id int, v int)")
    attacker.execute("GRANT INSERT ON public.inbox TO app_writer")
    assert tracked_or_refused(connect, "public.book")
    attacker.execute("CREATE SCHEMA fake")
    attacker.execute("CREATE TABLE fake.event_intake (x text)")
    attacker.execute("CREATE FUNCTION public.put(i int, x int) RETURNS void LANGUAGE sql SECURITY DEFINER"
                     " AS $$ INSERT INTO public.book VALUES (i, x) $$")
    ran_or_refused(attacker, [
        "ALTER FUNCTION public.put(int, int) SET session_replication_role = replica"], pg_refusals=("42501",))
    attacker.execute("ALTER FUNCTION public.put(int, int) SET search_path = fake, pg_catalog")
    attacker.execute("CREATE FUNCTION public.relay() RETURNS trigger LANGUAGE plpgsql AS"
                     " $$ BEGIN RETURN NULL; END $$")
    attacker.execute("CREATE TRIGGER relay AFTER INSERT ON public.inbox FOR EACH ROW EXECUTE FUNCTION public.relay()")
    attacker.execute("CREATE OR REPLACE FUNCTION public.relay() RETURNS trigger LANGUAGE plpgsql AS"
                     " $$ BEGIN PERFORM public.put(NEW.id, NEW.v); RETURN NULL; END $$")
    writer = connect("app_writer")
    try:
        writer.execute("INSERT INTO public.inbox VALUES (1, 10), (2, 20)")
    except psycopg.Error:
        return  # nothing written
    rows = db.execute("SELECT count(*) FROM public.book").fetchone()[0]
    events = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.book.insert'").fetchone()[0]
    assert events == rows, f"{rows} rows written into public.book through nested functions, {events} captured"


# --- 8. Concurrent DDL interrupted between its transactions: no event trigger ever fires ---------------



def _wait_for(predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _run_in_thread(conn, command: str) -> dict:
    outcome: dict = {}

    def run() -> None:
        try:
            conn.execute(command)
            outcome["done"] = True
        except psycopg.Error as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    outcome["thread"] = thread
    return outcome


def test_a_replica_identity_key_index_left_dead_by_an_interrupted_drop_index_concurrently_is_recorded_or_refused(
        db, connect, attacker):
    """DROP INDEX CONCURRENTLY runs in three transactions: it marks the index invalid, waits for the
    table's lockers, marks it dead (no longer maintained: no uniqueness checked), waits again, and only
    then drops it, when sql_drop fires. table_owner holds a lock in one session while the drop waits,
    takes another in a second session, lets the first go, and cancels its own DROP at the second wait
    (pg_cancel_backend of its own backend needs no privilege). The tracked table's key index (its
    replica identity: no primary key) is left dead for good; no event trigger fired; tracked_tables
    still names the key. A break: a second row under the key accepted and captured under the same
    target_id, with nothing recorded or refused."""
    attacker.execute("CREATE TABLE public.acct (name text NOT NULL, balance int)")
    attacker.execute("CREATE UNIQUE INDEX acct_key ON public.acct (name)")
    attacker.execute("ALTER TABLE public.acct REPLICA IDENTITY USING INDEX acct_key")
    attacker.execute("INSERT INTO public.acct VALUES ('alice', 10), ('bob', 20)")
    assert tracked_or_refused(connect, "public.acct")
    if _key_of(db, "public.acct")[0] is None:  # the replica identity index names no row: nothing to lose
        return
    assert _key_of(db, "public.acct")[0] == ["name"]
    attacker.execute("UPDATE public.acct SET balance = 11 WHERE name = 'alice'")
    n = len(gone_events(db))
    dropper = connect("table_owner")
    pid = dropper.info.backend_pid
    first = connect("table_owner", autocommit=False)
    second = connect("table_owner", autocommit=False)
    first.execute("SELECT 1 FROM public.acct LIMIT 0")
    outcome = _run_in_thread(dropper, "DROP INDEX CONCURRENTLY public.acct_key")
    flags = "SELECT indisvalid, indisready FROM pg_index WHERE indexrelid = to_regclass('public.acct_key')"
    if not _wait_for(lambda: (db.execute(flags).fetchone() or (True, True))[0] is False or "error" in outcome):
        first.rollback()
        outcome["thread"].join(20)
        pytest.fail("DROP INDEX CONCURRENTLY never reached its first wait")
    if "error" in outcome:  # refused outright: safe
        first.rollback()
        assert outcome["error"].sqlstate == "PA008", outcome["error"]
        return
    second.execute("SELECT 1 FROM public.acct LIMIT 0")
    first.rollback()
    dead = _wait_for(lambda: (db.execute(flags).fetchone() or (False, False))[1] is False or "done" in outcome
                     or "error" in outcome)
    second.execute("SELECT pg_catalog.pg_cancel_backend(%s)", (pid,))
    second.rollback()
    outcome["thread"].join(20)
    assert dead
    if "done" in outcome or not _exists(db, "public.acct_key"):
        return  # dropped whole: sql_drop saw it (the control route, tested elsewhere)
    state = db.execute(flags).fetchone()
    recorded = events_naming(db, "public.acct", n)
    try:
        attacker.execute("INSERT INTO public.acct VALUES ('alice', 99)")
        duplicated = True
    except psycopg.Error:
        duplicated = False
    history = db.execute("SELECT count(*) FROM audit.row_history('public.acct', 'alice')").fetchone()[0]
    assert recorded or not duplicated, (
        f"the key index of public.acct was left (valid, ready) = {state} by a cancelled DROP INDEX CONCURRENTLY,"
        f" nothing recorded or refused; tracked_tables still names {_key_of(db, 'public.acct')[0]} the key; a second"
        f" 'alice' was accepted and row_history('alice') holds {history} events of two rows")


def test_a_partition_left_detach_pending_by_an_interrupted_detach_concurrently_is_recorded(db, connect, attacker):
    """ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY commits the partition as "detach pending"
    (queries of the parent no longer see its rows), waits for every transaction that may still
    see it, then finishes, when the event triggers fire (audit.tracked_partition_removed). Cancelled
    in the wait (table_owner's own statement_timeout), the partition stays detach pending until
    someone runs DETACH ... FINALIZE: its rows are out of the tracked table, as a detach takes them
    (docs/capture.md: recorded), with nothing recorded. A break: the parent no longer shows rows it
    showed, and no event says so."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100)")
    attacker.execute("CREATE TABLE public.book_2 PARTITION OF public.book FOR VALUES FROM (100) TO (200)")
    attacker.execute("INSERT INTO public.book VALUES (1, 1), (2, 2), (150, 3)")
    assert tracked_or_refused(connect, "public.book")
    n = len(gone_events(db))
    holder = connect("table_owner", autocommit=False)
    holder.execute("SELECT 1 FROM public.book LIMIT 0")
    detacher = connect("table_owner")
    detacher.execute("SET statement_timeout = '2s'")
    try:
        detacher.execute("ALTER TABLE public.book DETACH PARTITION public.book_1 CONCURRENTLY")
        finished = True
    except psycopg.Error as exc:
        finished = False
        if exc.sqlstate == "PA008":
            holder.rollback()
            return
    holder.rollback()
    seen = db.execute("SELECT count(*) FROM public.book").fetchone()[0]
    pending = db.execute("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass('public.book_1')"
                         ).fetchone()
    if seen == 3:
        return
    assert events_naming(db, "public.book", n) or events_naming(db, "public.book_1", n), (
        f"DETACH CONCURRENTLY ({'finished' if finished else 'cancelled'}; pending = {pending}) took book_1's rows out"
        f" of tracked public.book (3 rows -> {seen}) with nothing recorded")


def _leave_index_dead(db, connect, table: str, index: str) -> bool:
    """DROP INDEX CONCURRENTLY of index, cancelled (by table_owner, of its own backend) at its second
    wait: the index is left in place, dead (not valid, not ready: no longer maintained). True when so."""
    dropper = connect("table_owner")
    pid = dropper.info.backend_pid
    first = connect("table_owner", autocommit=False)
    second = connect("table_owner", autocommit=False)
    first.execute(f"SELECT 1 FROM {table} LIMIT 0")
    outcome = _run_in_thread(dropper, f"DROP INDEX CONCURRENTLY {index}")
    flags = f"SELECT indisvalid, indisready FROM pg_index WHERE indexrelid = to_regclass('{index}')"
    _wait_for(lambda: (db.execute(flags).fetchone() or (False, False))[0] is False or "error" in outcome)
    if "error" in outcome:
        first.rollback()
        return False
    second.execute(f"SELECT 1 FROM {table} LIMIT 0")
    first.rollback()
    _wait_for(lambda: (db.execute(flags).fetchone() or (False, False))[1] is False or "done" in outcome)
    second.execute("SELECT pg_catalog.pg_cancel_backend(%s)", (pid,))
    second.rollback()
    outcome["thread"].join(20)
    return db.execute(flags).fetchone() == (False, False)


@pytest.mark.parametrize("state", ["dead", "invalid"])
def test_a_table_whose_key_index_enforces_nothing_cannot_be_tracked_with_that_key(db, connect, attacker, state):
    """The same key at tracking time. _key_columns takes the replica identity index from pg_index
    (indisreplident) without asking whether it is valid, ready or live, and _tree_problem asks only
    whether a primary key is deferrable. Dead: the key index left by a cancelled DROP INDEX
    CONCURRENTLY, then a second 'alice' inserted. Invalid: CREATE UNIQUE INDEX CONCURRENTLY over two
    'alice' rows fails and leaves an invalid index, then REPLICA IDENTITY USING INDEX (PostgreSQL may
    refuse that: safe). enable_tracking with a baseline: a break is the table tracked under a key two of
    its rows share (two baseline events, two rows, one target_id)."""
    attacker.execute("CREATE TABLE public.acct (name text NOT NULL, balance int)")
    if state == "dead":
        attacker.execute("CREATE UNIQUE INDEX acct_key ON public.acct (name)")
        attacker.execute("ALTER TABLE public.acct REPLICA IDENTITY USING INDEX acct_key")
        attacker.execute("INSERT INTO public.acct VALUES ('alice', 10), ('bob', 20)")
        if not _leave_index_dead(db, connect, "public.acct", "public.acct_key"):
            return
        attacker.execute("INSERT INTO public.acct VALUES ('alice', 99)")
    else:
        attacker.execute("INSERT INTO public.acct VALUES ('alice', 10), ('alice', 99), ('bob', 20)")
        with contextlib.suppress(psycopg.Error):  # fails on the two 'alice' rows, leaving the index invalid
            attacker.execute("CREATE UNIQUE INDEX CONCURRENTLY acct_key ON public.acct (name)")
        if not _exists(db, "public.acct_key"):
            return
        if not ran_or_refused(attacker, ["ALTER TABLE public.acct REPLICA IDENTITY USING INDEX acct_key"],
                              pg_refusals=("55000", "42809", "0A000")):
            return
    maintainer = connect("app_maintainer")
    try:
        enable_tracking(maintainer, "public.acct", baseline=True)
    except (psycopg.Error, InvalidTarget):  # refused: safe
        return
    key = _key_of(db, "public.acct")[0]
    alices = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.acct.baseline' AND target_id = 'alice'"
                        ).fetchone()[0]
    assert key is None or alices < 2, (
        f"public.acct tracked with key {key} though its key index enforces nothing ({state}): {alices} baseline"
        " events of two different rows under target_id 'alice'")


def test_a_replica_identity_key_whose_opclass_tells_apart_values_that_image_alike_cannot_be_tracked(
        db, connect, attacker):
    """A replica identity index may use any opclass (PostgreSQL checks neither opclass nor collation
    for REPLICA IDENTITY USING INDEX, where ADD PRIMARY KEY USING INDEX insists on the defaults).
    record_image_ops (built in) compares composites byte for byte: (0) and (-0) of a float8 attribute
    are two keys to it, while to_jsonb prints both {"x": 0} (jsonb holds no negative zero). The key is
    unique by its index, so _tree_problem sees nothing wrong. A break: the table tracked with that key,
    and two rows' events under one target_id."""
    attacker.execute("CREATE TYPE public.pt AS (x float8)")
    attacker.execute("CREATE TABLE public.acct (k public.pt NOT NULL, balance int)")
    attacker.execute("CREATE UNIQUE INDEX acct_key ON public.acct (k record_image_ops)")
    attacker.execute("ALTER TABLE public.acct REPLICA IDENTITY USING INDEX acct_key")
    attacker.execute("INSERT INTO public.acct VALUES (ROW(0)::public.pt, 10), (ROW('-0')::public.pt, 20)")
    if not tracked_or_refused(connect, "public.acct"):
        return
    attacker.execute("UPDATE public.acct SET balance = balance + 1")
    ids = [r[0] for r in db.execute("SELECT target_id FROM audit.events WHERE kind = 'public.acct.update'"
                                    " ORDER BY intake_id")]
    assert ids == [None, None] or len(set(ids)) == len(ids), (
        f"public.acct tracked with key {_key_of(db, 'public.acct')[0]} under record_image_ops: two rows' UPDATEs"
        f" both named {ids}: one history for two rows")
