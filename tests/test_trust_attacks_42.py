"""A forty-second attacker's trial, on the capture and the trust claims of docs/roles.md and
docs/security.md, in variants the earlier trials left: one statement that writes a tracked table
through several writable CTEs (a key deleted and inserted again, a key moved and its old value
squatted, an insert, an update and a delete at once), read back by row_as_of in the order the log
holds them; every built-in column type printed by a writer whose output settings are all hostile
(DateStyle, TimeZone, IntervalStyle, extra_float_digits, bytea_output, lc_monetary, lc_numeric,
lc_time, xmlbinary), inline and in the sandbox; work undone by a savepoint or an exception block
after the capture ran; a TRUNCATE that reaches a tracked table by CASCADE; views with INSTEAD OF
triggers and rules that write a tracked table; a function's SET clause naming a role, lending its
db_role or its exemption from the rate limits; look-alike functions of the names record() calls
unqualified, planted on a writer's search_path by a role with CREATE on it; a limited role at the
rate limits' settings and counters; ordinary roles at the internal helpers, prune and seal; the
idempotency key of one tenant used by another and by another role; hostile text in every text
field of an event, and hostile numbers, through both verifiers.

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
Tables are table_owner's (the `attacker` fixture: owns tables, holds no audit role; CREATE on public
and on the database) and tracked by app_maintainer unless said otherwise.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from schema_changes import both_verifiers_ok

from pgaudit_py import enable_rate_limit, enable_tracking, seal
from pgaudit_py.chain import verify_chain

LATER = "now() + interval '1 minute'"


def _captured(db, prefix: str) -> list[tuple]:
    """Captured events under a prefix in the order the log holds them: kind, target, payload, before, after."""
    return db.execute(
        "SELECT kind, target_id, payload, row_before, row_after FROM audit.events"
        " WHERE target_type = %s AND origin = 'capture' ORDER BY seq NULLS LAST, intake_id",
        (prefix,),
    ).fetchall()


def _row_as_of(db, table: str, key: str):
    return db.execute(f"SELECT audit.row_as_of(%s, %s, {LATER})", (table, key)).fetchone()[0]


def _table_rows(db, table: str) -> dict[str, dict]:
    return {str(r[0]["id"]): r[0] for r in db.execute(f"SELECT to_jsonb(t) FROM {table} t").fetchall()}


def _who_ran(db) -> list[tuple]:
    return db.execute("SELECT who, what, forged FROM public.who_ran ORDER BY 2").fetchall()


def _grant_writer(db, table: str) -> None:
    db.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON {table} TO app_writer")


# --- 1. One statement, several writable CTEs on one tracked table ------------------------------------

CTE_STATEMENTS = {
    # Key 1 deleted and inserted again by the same statement: the row exists at the end.
    "delete_and_reinsert": "WITH d AS (DELETE FROM public.acct WHERE id = 1 RETURNING id)"
    " INSERT INTO public.acct SELECT id, 'reborn' FROM d",
    # Key 1 moves to 3, and a new row takes key 1 in the same statement.
    "move_and_squat": "WITH u AS (UPDATE public.acct SET id = 3 WHERE id = 1 RETURNING id)"
    " INSERT INTO public.acct SELECT 1, 'squatter' FROM u",
    # Key 2 reinserted first, then deleted by the outer statement (the outer DELETE cannot see it).
    "insert_update_delete": "WITH i AS (INSERT INTO public.acct VALUES (5, 'new') RETURNING id),"
    " u AS (UPDATE public.acct SET note = 'changed' WHERE id = 2 RETURNING id)"
    " DELETE FROM public.acct WHERE id = 1 AND EXISTS (SELECT FROM i) AND EXISTS (SELECT FROM u)",
}


@pytest.mark.parametrize("statement", list(CTE_STATEMENTS))
def test_one_statement_of_writable_ctes_leaves_every_keys_history_as_the_table_is(db, connect, attacker, statement):
    """Attack: one statement with writable CTEs fires the table's AFTER statement triggers of each
    event (INSERT, UPDATE, DELETE) once, at its end, in an order PostgreSQL chooses, not the order the
    rows changed in. When one key is deleted and inserted again (or moved away and squatted), the
    history of that key is right only if the log holds the two events in the order they were applied.
    A break: row_as_of(key, later) does not read as the table holds the row (the key reads as deleted
    or moved while a row holds it), or an event is missing. Checked pending and again sealed, and both
    verifiers."""
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY, note text)")
    enable_tracking(connect("app_maintainer"), "public.acct")
    _grant_writer(db, "public.acct")
    attacker.execute("INSERT INTO public.acct VALUES (1, 'first'), (2, 'second')")
    writer = connect("app_writer")
    writer.execute(CTE_STATEMENTS[statement])
    rows = _table_rows(db, "public.acct")
    for sealed in (False, True):
        if sealed:
            seal(db, 1000)
        wrong = {}
        for key in ("1", "2", "3", "5"):
            as_of = _row_as_of(db, "public.acct", key)
            if as_of != rows.get(key):
                wrong[key] = (as_of, rows.get(key))
        assert not wrong, (
            f"{statement} ({'sealed' if sealed else 'pending'}): row_as_of disagrees with the table for {wrong}"
            f" (as_of, table); events in log order: {[(e[0], e[1], e[2]) for e in _captured(db, 'public.acct')]}"
        )
    both_verifiers_ok(db)


# --- 2. Every built-in type under a writer's hostile output settings ----------------------------------

# (column type, a value as text in ISO/C form, read under the superuser's default settings)
BUILTIN_VALUES = [
    ("float4", "1349.01"),
    ("float8", "1349.0123456789"),
    ("numeric", "1349.010"),
    ("money", "1349.01"),
    ("interval", "1 year 2 mons 3 days 04:05:06.789"),
    ("bytea", "\\xdeadbeef00"),
    ("timestamptz", "2024-02-01 12:34:56.789+00"),
    ("timestamp", "2024-02-01 12:34:56.789"),
    ("date", "2024-02-01"),
    ("time", "12:34:56.789"),
    ("timetz", "12:34:56.789+05:45"),
    ("point", "(1349.01,2.5)"),
    ("box", "(1349.01,2.5),(0.1,0.2)"),
    ("circle", "<(1349.01,2.5),3.3>"),
    ("lseg", "[(1349.01,2.5),(0.1,0.2)]"),
    ("line", "{1349.01,2.5,0.1}"),
    ("path", "[(1349.01,2.5),(0.1,0.2)]"),
    ("polygon", "((1349.01,2.5),(0.1,0.2),(3,4))"),
    ("int4range", "[1,10)"),
    ("numrange", "[1.5,10.25)"),
    ("tstzrange", "[2024-02-01 12:00+00,2024-03-01 00:00+00)"),
    ("daterange", "[2024-02-01,2024-03-01)"),
    ("tsrange", "[2024-02-01 12:00,2024-03-01 00:00)"),
    ("tstzmultirange", "{[2024-02-01 12:00+00,2024-03-01 00:00+00)}"),
    ("xml", '<a b="1">x</a>'),
    ("tsvector", "'a':1 'b':2"),
    ("tsquery", "a & b"),
    ("jsonpath", '$.a ? (@.datetime() > "2024-02-01".datetime())'),
    ("bit(4)", "1010"),
    ("varbit", "101"),
    ("inet", "10.0.0.1/8"),
    ("cidr", "10.0.0.0/8"),
    ("macaddr", "08:00:2b:01:02:03"),
    ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
    ("pg_lsn", "16/B374D848"),
    ("oid", "12345"),
    ("bool", "true"),
    ("float8[]", "{1349.01,2.5}"),
    ("interval[]", '{"1 day 02:00:00"}'),
    ("timestamptz[]", '{"2024-02-01 12:00+00"}'),
    ("money[]", "{1349.01}"),
    ("bytea[]", '{"\\\\xdeadbeef"}'),
    ("json", '{"a": 1349.01}'),
    ("char(3)", "ab"),
]

HOSTILE_OUTPUT = [
    "SET DateStyle = 'SQL, DMY'",
    "SET TimeZone = 'Pacific/Chatham'",
    "SET IntervalStyle = 'sql_standard'",
    "SET extra_float_digits = -15",
    "SET bytea_output = 'escape'",
    "SET lc_monetary = 'de_DE.utf8'",
    "SET lc_numeric = 'de_DE.utf8'",
    "SET lc_time = 'de_DE.utf8'",
    "SET xmlbinary = 'hex'",
    "SET quote_all_identifiers = on",
    "SET intervalstyle = 'iso_8601'",
]


@pytest.mark.parametrize("route", ["inline", "sandbox"])
def test_every_builtin_type_prints_alike_under_a_writers_hostile_output_settings(db, connect, attacker, route):
    """Attack on "No writer's setting changes what is recorded": the capture pins only the settings
    its table's column types need (_capture_settings, a fixed list of types). A table with a column of
    every built-in type a writer may use; row 1 written under the defaults, then a writer, with every
    output setting it may change set against the pin list (DateStyle, TimeZone, IntervalStyle,
    extra_float_digits, bytea_output, lc_monetary, lc_numeric, lc_time, xmlbinary,
    quote_all_identifiers), copies row 1 to row 2 inside the database (the stored values are the
    same bytes) and UPDATEs row 1's note only. route 'sandbox' adds an enum column, so that the rows
    are converted by audit._row_images. A break: a column whose value prints differently in the two
    images (a type the pin list misses), or an UPDATE of the note whose `changed` names another column."""
    columns = [(f"c{i}", typ) for i, (typ, _) in enumerate(BUILTIN_VALUES)]
    extra = ""
    if route == "sandbox":
        attacker.execute("CREATE TYPE public.mood AS ENUM ('ok', 'sad')")
        extra = ", mood public.mood DEFAULT 'ok'"
    attacker.execute(
        "CREATE TABLE public.wide (id int PRIMARY KEY, note text, "
        + ", ".join(f"{c} {t}" for c, t in columns)
        + extra
        + ")"
    )
    enable_tracking(connect("app_maintainer"), "public.wide")
    is_inline = db.execute("SELECT audit._builtin_column_types('public.wide'::regclass)").fetchone()[0]
    assert is_inline == (route == "inline")
    _grant_writer(db, "public.wide")
    attacker.execute(
        "INSERT INTO public.wide (id, note, "
        + ", ".join(c for c, _ in columns)
        + ") VALUES (1, 'n', "
        + ", ".join(f"%s::{t}" for _, t in columns)
        + ")",
        [v for _, v in BUILTIN_VALUES],
    )
    writer = connect("app_writer")
    for setting in HOSTILE_OUTPUT:
        writer.execute(setting)
    # The hostile session really prints differently (the attack reaches the output functions).
    printed = writer.execute("SELECT c1::text, c4::text, c5::text, c3::text FROM public.wide").fetchone()
    assert printed[0] != "1349.0123456789" and "\\x" not in printed[2], printed
    writer.execute(
        "INSERT INTO public.wide SELECT 2, note, "
        + ", ".join(c for c, _ in columns)
        + (", mood" if route == "sandbox" else "")
        + " FROM public.wide WHERE id = 1"
    )
    writer.execute("UPDATE public.wide SET note = 'm' WHERE id = 1")
    events = _captured(db, "public.wide")
    first = next(e[4] for e in events if e[0].endswith(".insert") and e[1] == "1")
    copy = next(e[4] for e in events if e[0].endswith(".insert") and e[1] == "2")
    update = next(e for e in events if e[0].endswith(".update"))
    differ = {c: (first[c], copy[c]) for c, _ in columns if first[c] != copy[c]}
    before_differ = {c: (first[c], update[3][c]) for c, _ in columns if first[c] != update[3][c]}
    seal(db, 1000)
    changed = db.execute(
        "SELECT changed FROM audit.events WHERE target_type = 'public.wide' AND kind LIKE '%.update'"
    ).fetchone()[0]
    assert not differ and not before_differ and set(changed) == {"note"}, (
        f"{route}: under the writer's settings these columns printed otherwise: {differ} (copy) / {before_differ}"
        f" (update's row_before); changed = {changed}"
    )
    both_verifiers_ok(db)


# --- 3. Work undone after the capture ran -------------------------------------------------------------


def test_a_write_undone_after_its_capture_leaves_no_event_and_the_rest_stay(db, connect, attacker):
    """Attack: the capture writes the intake in the writer's transaction; work undone afterwards must
    take its event with it, and work kept must keep its own. Three ways of undoing after the capture
    trigger already ran: ROLLBACK TO SAVEPOINT; an exception block of a PL/pgSQL function that catches
    the error of the table owner's own AFTER statement trigger named to fire after the capture's
    ('zzz', alphabetical order); and a subtransaction that succeeds, then the outer one goes on.
    A break: an event of a change the table never kept (a phantom the history then reads), or a kept
    change without its event."""
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY, note text)")
    enable_tracking(connect("app_maintainer"), "public.acct")
    attacker.execute("""CREATE FUNCTION public.zzz_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF EXISTS (SELECT FROM new_rows WHERE note = 'refused') THEN
                RAISE EXCEPTION 'owner refuses' USING ERRCODE = 'P0001';
            END IF;
            RETURN NULL;
        END $$""")
    attacker.execute(
        "CREATE TRIGGER zzz_refuse AFTER UPDATE ON public.acct REFERENCING NEW TABLE AS new_rows"
        " FOR EACH STATEMENT EXECUTE FUNCTION public.zzz_refuse()"
    )
    names = [
        r[0]
        for r in db.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.acct'::regclass AND NOT tgisinternal ORDER BY tgname"
        ).fetchall()
    ]
    assert names[-1] == "zzz_refuse" and len(names) > 1, names  # it fires after the capture's
    attacker.execute("""CREATE FUNCTION public.try_update(v text) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE public.acct SET note = v WHERE id = 1;
            RETURN 'done';
        EXCEPTION WHEN SQLSTATE 'P0001' THEN
            RETURN 'undone';
        END $$""")
    attacker.execute("INSERT INTO public.acct VALUES (1, 'start')")
    with attacker.transaction():
        attacker.execute("SAVEPOINT a")
        attacker.execute("UPDATE public.acct SET note = 'rolled back' WHERE id = 1")
        attacker.execute("ROLLBACK TO SAVEPOINT a")
        assert attacker.execute("SELECT public.try_update('refused')").fetchone()[0] == "undone"
        attacker.execute("SAVEPOINT b")
        attacker.execute("UPDATE public.acct SET note = 'kept' WHERE id = 1")
        attacker.execute("RELEASE SAVEPOINT b")
    seal(db, 1000)
    events = [(e[0], e[4]["note"] if e[4] else None) for e in _captured(db, "public.acct")]
    assert events == [("public.acct.insert", "start"), ("public.acct.update", "kept")], events
    assert _row_as_of(db, "public.acct", "1") == {"id": 1, "note": "kept"}
    both_verifiers_ok(db)


# --- 4. TRUNCATE reaching a tracked table by CASCADE --------------------------------------------------


def test_a_truncate_of_an_untracked_parent_cascading_to_a_tracked_child_is_recorded(db, connect, attacker):
    """Attack: TRUNCATE ... CASCADE of an UNTRACKED table empties every table whose foreign key refers
    to it, a tracked one included, with the one command naming only the untracked table. The tracked
    child's rows go; a TRUNCATE fires the child's statement triggers only if PostgreSQL counts the
    cascaded table among the truncated ones. A break: the child's rows are gone with no truncate event
    of the child: row_as_of still reads its rows as existing."""
    attacker.execute("CREATE TABLE public.parent (id int PRIMARY KEY)")
    attacker.execute("CREATE TABLE public.child (id int PRIMARY KEY, parent int REFERENCES public.parent)")
    enable_tracking(connect("app_maintainer"), "public.child")
    attacker.execute("INSERT INTO public.parent VALUES (1); INSERT INTO public.child VALUES (10, 1)")
    attacker.execute("TRUNCATE public.parent CASCADE")
    assert db.execute("SELECT count(*) FROM public.child").fetchone()[0] == 0  # the attack reached the child
    kinds = [e[0] for e in _captured(db, "public.child")]
    as_of = _row_as_of(db, "public.child", "10")
    assert "public.child.truncate" in kinds and as_of is None, (
        f"TRUNCATE parent CASCADE emptied the tracked child; its events: {kinds}; row_as_of(10) = {as_of}"
    )


# --- 5. Views with INSTEAD OF triggers and rules ------------------------------------------------------


def test_writes_through_a_view_trigger_and_a_rule_are_captured_with_the_writers_role(db, connect, attacker):
    """Attack: the table owner offers the writer two views over its tracked table: one with an INSTEAD
    OF trigger that writes the table as SECURITY DEFINER (as table_owner), one with a DO INSTEAD rule
    (a rule's action runs with the view owner's rights). Both change the tracked table without the
    writer naming it. A break: a change with no event, or an event whose db_role is not the writer's
    (the role the database vouches for must be the session's, not the view owner's)."""
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY, note text)")
    enable_tracking(connect("app_maintainer"), "public.acct")
    attacker.execute("CREATE VIEW public.by_trigger AS SELECT id, note FROM public.acct")
    attacker.execute("""CREATE FUNCTION public.by_trigger_write() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
        SET search_path = pg_catalog AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN INSERT INTO public.acct VALUES (NEW.id, NEW.note);
            ELSIF TG_OP = 'UPDATE' THEN UPDATE public.acct SET note = NEW.note WHERE id = OLD.id;
            ELSE DELETE FROM public.acct WHERE id = OLD.id; END IF;
            RETURN NEW;
        END $$""")
    attacker.execute(
        "CREATE TRIGGER w INSTEAD OF INSERT OR UPDATE OR DELETE ON public.by_trigger"
        " FOR EACH ROW EXECUTE FUNCTION public.by_trigger_write()"
    )
    attacker.execute("CREATE VIEW public.by_rule AS SELECT id, note FROM public.acct")
    attacker.execute(
        "CREATE RULE r_ins AS ON INSERT TO public.by_rule DO INSTEAD INSERT INTO public.acct VALUES (NEW.id, NEW.note)"
    )
    attacker.execute(
        "CREATE RULE r_upd AS ON UPDATE TO public.by_rule DO INSTEAD UPDATE public.acct SET note = NEW.note"
        " WHERE id = OLD.id"
    )
    attacker.execute(
        "CREATE RULE r_del AS ON DELETE TO public.by_rule DO INSTEAD DELETE FROM public.acct WHERE id = OLD.id"
    )
    attacker.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON public.by_trigger, public.by_rule TO app_writer")
    writer = connect("app_writer")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        writer.execute("INSERT INTO public.acct VALUES (99, 'direct')")  # the writer has no right on the table
    for view, key in (("by_trigger", 1), ("by_rule", 2)):
        writer.execute(f"INSERT INTO public.{view} VALUES (%s, 'a')", (key,))
        writer.execute(f"UPDATE public.{view} SET note = 'b' WHERE id = %s", (key,))
        writer.execute(f"DELETE FROM public.{view} WHERE id = %s", (key,))
    got = db.execute(
        "SELECT kind, target_id, db_role FROM audit.events WHERE target_type = 'public.acct'"
        " AND origin = 'capture' ORDER BY intake_id"
    ).fetchall()
    want = [(f"public.acct.{op}", str(k), "app_writer") for k in (1, 2) for op in ("insert", "update", "delete")]
    assert got == want, got


# --- 6. A function's SET clause naming a role ---------------------------------------------------------


def test_a_set_role_clause_cannot_lend_a_role_to_db_role_or_the_rate_limit(db, connect, attacker):
    """Attack: _db_role() and the rate limit's exemption (_rate_exempt: a member of the maintainer
    role) read current_setting('role'), which a function's SET clause changes for its duration
    (`SET role = ...` on CREATE FUNCTION; inside, current_user is unchanged for a SECURITY INVOKER
    function). table_owner writes functions that SET role to app_maintainer (exempt from limits) and
    SET role = table_owner, and grants them to app_writer; the writer writes a limited table (1 a
    minute per user) and calls record() through them. A break: more writes admitted than the limit,
    or an event whose db_role is one the writer is not (PostgreSQL must refuse the SET, or the
    product must not believe it)."""
    attacker.execute("CREATE TABLE public.lim (id int PRIMARY KEY)")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.lim")
    enable_rate_limit(maintainer, "public.lim", per_user_per_minute=1, per_tenant_per_minute=None, window_seconds=600)
    _grant_writer(db, "public.lim")
    made = {}
    for role in ("app_maintainer", "table_owner"):
        try:
            attacker.execute(f"""CREATE FUNCTION public.as_{role}(k int) RETURNS void LANGUAGE sql
                SET role = '{role}' AS $$ INSERT INTO public.lim VALUES (k);
                SELECT audit.record('app.lent', payload => '{{}}') $$""")
            attacker.execute(f"GRANT EXECUTE ON FUNCTION public.as_{role}(int) TO app_writer")
            made[role] = True
        except psycopg.Error as exc:
            made[role] = exc.sqlstate
    writer = connect("app_writer")
    admitted = 0
    for i, role in enumerate(["app_maintainer", "table_owner", "app_maintainer", "table_owner"]):
        if made[role] is not True:
            continue
        try:
            writer.execute(f"SELECT public.as_{role}(%s)", (i,))
            admitted += 1
        except psycopg.Error:
            pass
    writer.execute("INSERT INTO public.lim VALUES (100)")  # the writer's own first write: within its limit
    with pytest.raises(psycopg.Error) as limited:
        writer.execute("INSERT INTO public.lim VALUES (101)")
    assert limited.value.sqlstate == "PA009"
    roles = {
        r[0]
        for r in db.execute(
            "SELECT db_role FROM audit.events WHERE target_type = 'public.lim' OR kind = 'app.lent'"
        ).fetchall()
    }
    rows = db.execute("SELECT count(*) FROM public.lim").fetchone()[0]
    assert admitted == 0 and roles <= {"app_writer"} and rows == 1, (
        f"functions made: {made}; admitted through them: {admitted}; rows {rows}; db_role recorded: {roles}"
    )


# --- 7. Look-alikes of what record() calls unqualified ------------------------------------------------

LOOKALIKES = [
    ("starts_with(a text, b text)", "boolean", "false"),
    ("jsonb_typeof(a jsonb)", "text", "'object'"),
    ("char_length(a text)", "integer", "0"),
    ("sha256(a bytea)", "bytea", "'\\x00'::bytea"),
    ("convert_to(a text, b name)", "bytea", "'\\x00'::bytea"),
    ("format(a text, b text)", "text", "''"),
    ("quote_literal(a text)", "text", "''"),
    ("pg_current_xact_id()", "xid8", "'1'::xid8"),
    ("clock_timestamp()", "timestamptz", "'2000-01-01'::timestamptz"),
    ("jsonb_build_array(a text, b text, c text, d text, e text, f text, g jsonb, h text, i text)", "jsonb", "'[]'"),
    ("current_setting(a text, b boolean)", "text", "'forged'"),
    ("inet_client_addr()", "inet", "'6.6.6.6'"),
    ("nullif(a text, b text)", "text", "'forged'"),
]


def test_lookalikes_on_the_writers_search_path_are_not_called_by_record_or_capture(db, connect, attacker):
    """Attack: _record() and the helpers record() and the capture inline (_context, _db_role,
    _client_addr, _new_event_id, _reserved_kind) have no SET clause of their own and name several
    functions unqualified (starts_with, jsonb_typeof, char_length, sha256, convert_to, format,
    jsonb_build_array, pg_current_xact_id, clock_timestamp), trusting the search_path of the SECURITY
    DEFINER function that calls them. table_owner, with CREATE on public, plants look-alikes of each
    there that record current_user; the writer puts public FIRST on its search_path (and pg_catalog
    after it), then calls record() with an idempotency key and writes a tracked table. A break: any
    look-alike ran (who_ran names it), or the event says other than the truth (forged actor, client
    address, a kind under the tracked prefix accepted)."""
    for signature, returns, value in LOOKALIKES:
        name = signature.split("(")[0]
        attacker.execute(f"""CREATE FUNCTION public.{signature} RETURNS {returns} LANGUAGE plpgsql AS $$
            BEGIN PERFORM public.spy('{name}'); RETURN {value}; END $$""")
        attacker.execute(f"GRANT EXECUTE ON FUNCTION public.{signature} TO PUBLIC")
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY, note text)")
    enable_tracking(connect("app_maintainer"), "public.acct")
    _grant_writer(db, "public.acct")
    writer = connect("app_writer")
    writer.execute("SET search_path = public, pg_catalog")
    # The look-alikes are what the writer's own unqualified calls reach (the attack is armed).
    assert writer.execute("SELECT starts_with('ab', 'a')").fetchone()[0] is False
    assert {r[1] for r in _who_ran(db)} == {"starts_with"}
    db.execute("DELETE FROM public.who_ran")
    writer.execute(
        "SELECT audit.record('app.paid', actor_id => 'alice', payload => '{\"n\": 1}', idempotency_key => 'k1')"
    )
    writer.execute(
        "SELECT audit.record('app.paid', actor_id => 'alice', payload => '{\"n\": 1}', idempotency_key => 'k1')"
    )
    with pytest.raises(psycopg.Error) as refused:
        writer.execute("SELECT audit.record('public.acct.insert', payload => '{}')")
    writer.execute("INSERT INTO public.acct VALUES (1, 'a')")
    writer.execute("UPDATE public.acct SET note = 'b'")
    ran = _who_ran(db)
    recorded = db.execute(
        "SELECT kind, actor_id, client_addr IS NOT DISTINCT FROM '6.6.6.6'::inet FROM audit.events"
        " WHERE kind = 'app.paid' OR target_type = 'public.acct' ORDER BY intake_id"
    ).fetchall()
    assert (
        not ran
        and refused.value.sqlstate == "PA001"
        and recorded
        == [
            ("app.paid", "alice", False),
            ("public.acct.insert", "app_writer", False),
            ("public.acct.update", "app_writer", False),
        ]
    ), f"look-alikes ran: {ran}; events: {recorded}; tracked-prefix kind: {refused.value.sqlstate}"


# --- 8. A limited role at the limits' settings and counters -------------------------------------------


def test_a_limited_role_cannot_loosen_or_reset_its_limit(db, connect, attacker):
    """Attack: the writer (limited) and the table's owner (no audit role) try every route at the
    limit of a table they write: the settings table and the counters directly, the internal
    _put_rate_limit, _drop_rate_limit and _rate_take (to spend another key), set_operation_limit,
    disable_rate_limit, purge_rate_counters, disabling or dropping the limit trigger, the bypass
    setting in each spelling, and a DELETE of its own counter rows. A break: any of them succeeds in
    changing the limit or the counters, or the third write in the window is admitted."""
    attacker.execute("CREATE TABLE public.lim (id int PRIMARY KEY)")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.lim")
    enable_rate_limit(maintainer, "public.lim", per_user_per_minute=2, per_tenant_per_minute=None, window_seconds=600)
    _grant_writer(db, "public.lim")
    limits = db.execute("SELECT * FROM audit.rate_limits ORDER BY 1, 2").fetchall()
    trigger = db.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.lim'::regclass AND tgfoid ="
        " 'audit._rate_limit_trigger'::regproc"
    ).fetchone()[0]
    writer = connect("app_writer")
    for conn in (writer, attacker):
        conn.execute("INSERT INTO public.lim VALUES (%s)", (1 if conn is writer else 11,))
    counters = db.execute("SELECT count(*) FROM audit.rate_counters").fetchone()[0]
    assert counters > 0
    tries = [
        "UPDATE audit.rate_limits SET per_user = 1000000",
        "DELETE FROM audit.rate_limits",
        "DELETE FROM audit.rate_counters",
        "TRUNCATE audit.rate_counters",
        "SELECT audit._put_rate_limit(NULL::audit.rate_limits, md5(1::text)::uuid)",
        "SELECT audit._drop_rate_limit('table', 'public.lim'::regclass::oid::text, md5(1::text)::uuid)",
        "SELECT audit._rate_take('x', 1000000, 60)",
        "SELECT audit.set_operation_limit('op', 1000000)",
        "SELECT audit.disable_rate_limit('public.lim')",
        "SELECT audit.enable_rate_limit('public.lim', 1000000, NULL)",
        "SELECT audit.purge_rate_counters()",
        f"ALTER TABLE public.lim DISABLE TRIGGER {trigger}",
        f"ALTER TABLE public.lim ENABLE REPLICA TRIGGER {trigger}",
        f"DROP TRIGGER {trigger} ON public.lim",
        f"ALTER TRIGGER {trigger} ON public.lim RENAME TO gone",
        "ALTER TABLE public.lim DISABLE TRIGGER USER",
    ]
    succeeded = []
    for conn, who in ((writer, "app_writer"), (attacker, "table_owner")):
        for command in tries:
            try:
                conn.execute(command)
                succeeded.append((who, command))
            except psycopg.Error:
                pass
    bypassed = []
    for spelling in ("on", "ON", "true", "1", "yes", " off", "OFF"):
        try:
            with writer.transaction():
                writer.execute("SELECT set_config('pgaudit_py.rate_limit_bypass', %s, true)", (spelling,))
                writer.execute("INSERT INTO public.lim VALUES (%s)", (1000 + len(bypassed) + len(spelling),))
                bypassed.append(spelling)
        except psycopg.Error:
            pass
    writer.execute("INSERT INTO public.lim VALUES (2)")  # the second in the window
    with pytest.raises(psycopg.Error) as third:
        writer.execute("INSERT INTO public.lim VALUES (3)")
    assert not succeeded and not bypassed and third.value.sqlstate == "PA009", (succeeded, bypassed)
    assert db.execute("SELECT * FROM audit.rate_limits ORDER BY 1, 2").fetchall() == limits


# --- 9. Ordinary roles at the internal helpers, seal and prune ----------------------------------------

INTERNAL_CALLS = [
    "SELECT audit._record('audit.pruned', NULL, 'user', 'x', NULL, NULL, '{}', 'success', NULL, NULL, 'system')",
    "SELECT audit._record('app.forged', NULL, 'user', 'x', NULL, NULL, '{}', 'success', NULL, NULL, 'capture')",
    "SELECT audit.seal()",
    "SELECT audit.prune_events(interval '0 seconds')",
    "SELECT audit.delete_archived(1)",
    "SELECT audit._remove_blocks(1, b, now()) FROM audit.blocks b",
    "SELECT audit._empty_drained_intake()",
    "SELECT audit._quarantine(0, '(0,1)'::tid, 'XX000', 'forged')",
    "SELECT audit._drop_log_partitions()",
    "INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload, origin)"
    " VALUES ('user', 'x', 'public.acct.delete', 'success', '1', now(), '{}', 'capture')",
    "INSERT INTO audit.owner_proofs DEFAULT VALUES",
]


@pytest.mark.parametrize("role", ["app_writer", "app_reader", "table_owner", "app_attacker"])
def test_ordinary_roles_cannot_reach_the_internal_writers_seal_or_prune(db, connect, attacker, role):
    """Attack: each role below the maintainer tries the functions that write the log as the package
    (_record with origin 'system', or an origin it does not accept), seal, prune, delete_archived, the
    sealer's and the pruner's helpers, and INSERT into the intake and the owner proofs. With a sealed
    block and a pending event, so that every call has something to act on. A break: any of them
    succeeds, or the log, the intake, the blocks or the prune points change."""
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY)")
    enable_tracking(connect("app_maintainer"), "public.acct")
    attacker.execute("INSERT INTO public.acct VALUES (1)")
    seal(db, 1000)
    attacker.execute("INSERT INTO public.acct VALUES (2)")
    state = (
        "SELECT (SELECT count(*) FROM audit.event_log), (SELECT count(*) FROM audit.event_intake),"
        " (SELECT count(*) FROM audit.blocks), (SELECT count(*) FROM audit.prune_points)"
    )
    before = db.execute(state).fetchone()
    conn = attacker if role == "table_owner" else connect(role)
    succeeded = []
    for call in INTERNAL_CALLS:
        try:
            conn.execute(call)
            succeeded.append(call)
        except psycopg.Error:
            pass
    assert not succeeded and db.execute(state).fetchone() == before, succeeded


# --- 10. Idempotency keys across tenants and roles ----------------------------------------------------


def test_an_idempotency_key_is_no_door_to_another_tenants_or_roles_event(db, connect, attacker):
    """Attack: record() returns the first event for a retried key, looked up by tenant and key. A
    writer of tenant t2 (named by the session's setting, by the parameter, and by none at all) sends
    the exact request tenant t1 sent with the same key, hoping for t1's event back (its id, time and
    address) instead of its own; a second writer role sends t1's request under t1 (another role is
    not handed the first event: PA004). A break: a call returns t1's event id, or writes nothing."""
    db.execute("CREATE ROLE app_writer2 LOGIN IN ROLE audit_writer")
    try:
        writer = connect("app_writer")
        call = (
            "SELECT id FROM audit.record('app.paid', tenant_id => %s, actor_id => 'alice', payload => '{\"n\": 1}',"
            " idempotency_key => 'same')"
        )
        first = writer.execute(call, ("t1",)).fetchone()[0]
        assert writer.execute(call, ("t1",)).fetchone()[0] == first  # a retry: the same event (the door exists)
        got = {}
        got["t2 by parameter"] = writer.execute(call, ("t2",)).fetchone()[0]
        with writer.transaction():
            writer.execute("SELECT set_config('pgaudit_py.tenant_id', 't3', true)")
            got["t3 by setting"] = writer.execute(call, (None,)).fetchone()[0]
        got["no tenant"] = writer.execute(call, (None,)).fetchone()[0]
        other = connect("app_writer2")
        with pytest.raises(psycopg.Error) as refused:
            other.execute(call, ("t1",))
        tenants = db.execute(
            "SELECT tenant_id, id FROM audit.events WHERE kind = 'app.paid' ORDER BY tenant_id NULLS LAST"
        ).fetchall()
        assert (
            first not in got.values()
            and len(set(got.values())) == 3
            and refused.value.sqlstate == "PA004"
            and [t for t, _ in tenants] == ["t1", "t2", "t3", None]
        ), (got, tenants)
    finally:
        db.execute("DROP ROLE app_writer2")


# --- 11. Hostile text and numbers through both verifiers ----------------------------------------------

HOSTILE_TEXT = (
    "\x01\x07\x08\x09\x0a\x0b\x0c\x0d\x1b\x1f\x7f \u0080\u009f\u00a0\u00ad\u200b\u200d\u200e\u202e"
    "\u2028\u2029\ufeff\ufffe\uffff\U0001f600\U0010ffff \" \\ / \\u0000 '"
)

HOSTILE_PAYLOADS = [
    '{"n": -0, "m": -0.0, "e": 1E+2, "f": 1e-399, "g": 0.000000, "h": 123456789012345678901234567890e-30}',
    '{"a": 1, "a": 2, "a": {"a": [1, 1, "a"]}}',
    '{"": "", "\\u0001": "\\u001f", "\\u007f": "\\u2028", "\\ud83d\\ude00": "\\uffff"}',
    '{"deep": ' + "[" * 2000 + "]" * 2000 + "}",
    json.dumps({"k" * 200: "v" * 60000}),
    json.dumps({"\u00e9": 1, "e\u0301": 2, "\uff45": 3, "\U0001d41e": 4}),
]


def test_hostile_text_in_every_field_and_hostile_numbers_pass_both_verifiers_alike(db, connect, attacker):
    """Attack: the Python verifier rebuilds every canonical line: the JSON values as stored, but each
    TEXT field (actor_type, actor_id, tenant, target type and id, correlation id, idempotency key,
    application_name, a captured key) escaped by its own _string, where PostgreSQL's line uses
    to_json. Every control character, C1 controls, bidi and zero-width marks, U+2028/9, BOM,
    noncharacters, astral characters and a literal backslash-u put into every field record() takes
    and into a captured key, plus payloads of -0, 1e-399, duplicate keys, deep arrays, near the 64 kB
    bound and keys that jsonb orders by bytes; all sealed. A break: either verifier fails, or they
    disagree."""
    writer = connect("app_writer", application_name="app" + HOSTILE_TEXT[:20])
    text = HOSTILE_TEXT
    for i, payload in enumerate(HOSTILE_PAYLOADS):
        writer.execute(
            "SELECT audit.record('app.hostile', tenant_id => %s, actor_type => %s, actor_id => %s,"
            " target_type => %s, target_id => %s, payload => %s::jsonb, correlation_id => %s,"
            " idempotency_key => %s)",
            (text, text[:60], text + str(i), text, text + str(i), payload, text, text[:200] + str(i)),
        )
    attacker.execute("CREATE TABLE public.acct (id text PRIMARY KEY, note text)")
    enable_tracking(connect("app_maintainer"), "public.acct")
    attacker.execute("INSERT INTO public.acct VALUES (%s, %s)", (text, text))
    attacker.execute("UPDATE public.acct SET note = %s", (text[::-1],))
    result = seal(db, 1000)
    assert result.sealed >= len(HOSTILE_PAYLOADS) + 2
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0] == 0
    sql_ok = db.execute("SELECT ok, problem FROM audit.verify()").fetchone()
    py = verify_chain(db)
    assert sql_ok[0] and py.ok, (sql_ok, py.problem)
    assert db.execute("SELECT count(*) FROM audit.events WHERE starts_with(actor_id, %s)", (text,)).fetchone()[
        0
    ] == len(HOSTILE_PAYLOADS)


# --- 12. Capture switched off by the table's owner, by routes of the DDL the event triggers watch -------

SWITCH_OFFS = {
    "always_mode_replica": ["ALTER TABLE public.acct ENABLE REPLICA TRIGGER {t}"],
    "rename_then_recreate": [
        "ALTER TABLE public.acct RENAME TO acct_old",
        "CREATE TABLE public.acct (id int PRIMARY KEY)",
        "ALTER TABLE public.acct_old RENAME TO acct_gone",
        "ALTER TABLE public.acct RENAME TO acct2",
    ],
    "set_schema_and_drop_schema": [
        "CREATE SCHEMA s42",
        "ALTER TABLE public.acct SET SCHEMA s42",
        "DROP SCHEMA s42 CASCADE",
    ],
    "drop_owned": ["DROP OWNED BY CURRENT_USER"],
}


@pytest.mark.parametrize("route", list(SWITCH_OFFS))
def test_the_table_owner_cannot_make_writes_vanish_without_a_record(db, connect, attacker, route):
    """Attack: table_owner's tracked table holds a row; the owner takes the table out of capture by DDL
    (a capture trigger put in replica mode, a rename and a look-alike in its place, SET SCHEMA into a
    schema then DROP SCHEMA ... CASCADE, DROP OWNED BY CURRENT_USER), then deletes the row, where the
    table still exists. A break: the command runs, and the row (or the table with it) is gone with no
    event naming the table: row_as_of still reads the row."""
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY)")
    enable_tracking(connect("app_maintainer"), "public.acct")
    attacker.execute("INSERT INTO public.acct VALUES (1)")
    trig = db.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'public.acct'::regclass AND NOT tgisinternal"
        " ORDER BY tgname LIMIT 1"
    ).fetchone()[0]
    relid = db.execute("SELECT 'public.acct'::regclass::oid").fetchone()[0]
    mark = db.execute("SELECT coalesce(max(intake_id), 0), coalesce(max(seq), 0) FROM audit.events").fetchone()
    ran = []
    for command in SWITCH_OFFS[route]:
        try:
            attacker.execute(command.format(t=trig))
            ran.append(command)
        except psycopg.Error:
            break
    exists = db.execute("SELECT count(*) FROM pg_class WHERE oid = %s", (relid,)).fetchone()[0] == 1
    if exists:
        name = db.execute("SELECT %s::oid::regclass::text", (relid,)).fetchone()[0]
        attacker.execute(f"DELETE FROM {name}")
    after = db.execute(
        "SELECT kind, target_type, target_id, payload FROM audit.events WHERE intake_id > %s"
        " OR seq > %s ORDER BY intake_id",
        (mark[0], mark[1]),
    ).fetchall()
    deleted = ("public.acct.delete", "public.acct", "1") in [e[:3] for e in after]
    dropped = not exists and any(
        e[0] == "audit.tracked_table_dropped" and e[3].get("kind_prefix") == "public.acct" for e in after
    )
    assert deleted or dropped, f"{route}: ran {ran}; the row (or the table) went with these events only: {after}"
