"""A thirty-sixth attacker's trial, on the mends since c3bc532 and new variants of their classes: a row
moved between tenants is two events and a NULL tenant is no tenant's (addcdb6, aec94ca); only a primary
key names rows (380d7c5); DETACH PARTITION ... CONCURRENTLY is refused by its words when it opens its
transaction (380d7c5, 2e93c06); and the capture classes in general (routes around capture, forged
history).

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
Tables are table_owner's (the `attacker` fixture) and tracked by app_maintainer unless said otherwise.
"""

from __future__ import annotations

import psycopg
import pytest
from schema_changes import both_verifiers_ok, gone_events

from pgaudit_py import InvalidTarget, audit_context, enable_tracking, seal

LATER = "now() + interval '1 minute'"


def _row_as_of(db, table: str, key: str):
    return db.execute(f"SELECT audit.row_as_of(%s, %s, {LATER})", (table, key)).fetchone()[0]


def _captured(db, prefix: str) -> list[tuple]:
    """Every captured event under a prefix, in the order applied: kind, tenant, target, payload, before, after."""
    return db.execute("SELECT kind, tenant_id, target_id, payload, row_before, row_after FROM audit.events"
                      " WHERE target_type = %s AND origin = 'capture' ORDER BY seq NULLS LAST, intake_id",
                      (prefix,)).fetchall()


def _images_out_of_their_tenant(db, prefix: str, column: str = "tenant") -> list[tuple]:
    """Events whose images hold a tenant column other than the tenant the event is filed under: a
    tenant's reader would see another tenant's version of a row (the invariant of addcdb6/aec94ca)."""
    return db.execute(
        "SELECT kind, tenant_id, target_id, row_before ->> %(c)s, row_after ->> %(c)s, payload FROM audit.events"
        " WHERE target_type = %(p)s AND origin = 'capture'"
        "   AND ((row_before IS NOT NULL AND (row_before ->> %(c)s) IS DISTINCT FROM tenant_id)"
        "     OR (row_after IS NOT NULL AND (row_after ->> %(c)s) IS DISTINCT FROM tenant_id))",
        {"c": column, "p": prefix}).fetchall()


# --- 1. MERGE that moves a row to another partition ---------------------------------------------------

MERGE_TABLES = {
    # Partitioned by its tenant column: the MERGE moves a row from t2 to t1.
    "partitioned_by_tenant": (
        ["CREATE TABLE public.cases (id int, tenant text, note text, PRIMARY KEY (id, tenant)) PARTITION BY LIST (tenant)",
         "CREATE TABLE public.cases_t1 PARTITION OF public.cases FOR VALUES IN ('t1')",
         "CREATE TABLE public.cases_t2 PARTITION OF public.cases FOR VALUES IN ('t2')"],
        "tenant", "t2", "t1"),
    # No tenant at all: a table of orders partitioned by status; MERGE closes an order.
    "partitioned_by_status": (
        ["CREATE TABLE public.cases (id int, status text, note text, PRIMARY KEY (id, status)) PARTITION BY LIST (status)",
         "CREATE TABLE public.cases_open PARTITION OF public.cases FOR VALUES IN ('open')",
         "CREATE TABLE public.cases_closed PARTITION OF public.cases FOR VALUES IN ('closed')"],
        None, "open", "closed"),
    # Two levels: the row moves from one sub-partition to another under the other branch.
    "sub_partitioned": (
        ["CREATE TABLE public.cases (id int, tenant text, note text, PRIMARY KEY (id, tenant)) PARTITION BY LIST (tenant)",
         "CREATE TABLE public.cases_t1 PARTITION OF public.cases FOR VALUES IN ('t1') PARTITION BY RANGE (id)",
         "CREATE TABLE public.cases_t1_low PARTITION OF public.cases_t1 FOR VALUES FROM (0) TO (100)",
         "CREATE TABLE public.cases_t2 PARTITION OF public.cases FOR VALUES IN ('t2') PARTITION BY RANGE (id)",
         "CREATE TABLE public.cases_t2_low PARTITION OF public.cases_t2 FOR VALUES FROM (0) TO (100)"],
        "tenant", "t2", "t1"),
}


@pytest.mark.parametrize("table", list(MERGE_TABLES))
def test_a_merge_that_moves_a_row_to_another_partition_is_captured(db, connect, attacker, table):
    """Attack: docs/capture.md promises every UPDATE is captured "however (plain statements, MERGE,
    ...)". A tracked table is partitioned by a column (its tenant, or a status); a writer moves a row
    to another partition with MERGE ... WHEN MATCHED THEN UPDATE SET <partition key> = ... (a plain
    UPDATE of the same kind is captured, and trial 34 tried MERGE on an unpartitioned table only). On
    PostgreSQL 15 the parent's AFTER UPDATE statement trigger then sees EMPTY transition tables, so
    the capture function writes nothing, and its unpaired-rows check (which looks for a row without
    its partner) sees no rows at all. A break: no event of the move: the row's old key still
    reads as existing (row_as_of) with its old note, its new key has no history, and (with a tenant
    column) the old tenant's trail never shows the row leaving; a row of the same MERGE that stays in
    its partition is captured, so nothing is refused either."""
    setup, column, old, new = MERGE_TABLES[table]
    for command in setup:
        attacker.execute(command)
    col = "tenant" if column else "status"
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column=column)
    attacker.execute(f"INSERT INTO public.cases (id, {col}, note) VALUES (1, %s, 'before-move'), (2, %s, 'stays')",
                     (old, old))
    # The mend: PostgreSQL refuses MERGE on a tracked partitioned table (a rule of tracking's makes it
    # so), and on a partitioned partition of one; refused, nothing changed.
    with audit_context(attacker, actor_id="merger"), pytest.raises(psycopg.errors.FeatureNotSupported):
        # Row 1 moves to the other partition; row 2 stays in its own and changes its note.
        attacker.execute(f"MERGE INTO public.cases c USING (VALUES (1, %s, 'after-move'), (2, %s, 'stays-changed'))"
                         f" AS s(id, v, note) ON c.id = s.id WHEN MATCHED THEN UPDATE SET {col} = s.v, note = s.note",
                         (new, old))
    assert db.execute("SELECT id, note FROM public.cases ORDER BY id").fetchall() == [(1, "before-move"), (2, "stays")]
    if table == "sub_partitioned":
        with pytest.raises(psycopg.errors.FeatureNotSupported):
            attacker.execute("MERGE INTO public.cases_t2 c USING (VALUES (1)) AS s(id) ON c.id = s.id"
                             " WHEN MATCHED THEN UPDATE SET id = 150")
    # Nor can the owner drop the rule, disabled or not.
    rule = db.execute("SELECT rulename FROM pg_rewrite WHERE ev_class = 'public.cases'::regclass").fetchone()[0]
    attacker.execute(f"ALTER TABLE public.cases DISABLE RULE {rule}")
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        attacker.execute("MERGE INTO public.cases c USING (VALUES (1)) AS s(id) ON c.id = s.id"
                         " WHEN MATCHED THEN UPDATE SET note = 'x'")
    with pytest.raises(psycopg.Error) as refused:
        attacker.execute(f"DROP RULE {rule} ON public.cases")
    assert refused.value.sqlstate == "PA008", refused.value


# --- 2. and 3. A tenant column or a key column among the excluded columns -----------------------------

def test_a_tenant_move_of_a_table_whose_tenant_column_is_excluded_is_recorded(db, connect, attacker):
    """Attack: enable_tracking refuses to REDACT the tenant column ("every event carries it in
    tenant_id") but takes it in exclude_columns. The tenant still comes from the row (the capture
    reads the raw image), but skip_noop_updates compares the images without the excluded columns:
    an UPDATE that changes only the tenant column is a "no-op". A writer moves a row from t1 to t2
    with UPDATE ... SET tenant = 't2'. A break: no event at all, where addcdb6 promises two (moved
    out under t1, moved in under t2): t1's trail still shows its row as its own, t2's never
    shows it arriving; row_as_of shows the row as t1 left it."""
    attacker.execute("CREATE TABLE public.cases (id int PRIMARY KEY, tenant text, note text)")
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant", exclude_columns=["tenant"])
    attacker.execute("INSERT INTO public.cases VALUES (1, 't1', 'a note')")
    n = len(_captured(db, "public.cases"))
    attacker.execute("UPDATE public.cases SET tenant = 't2' WHERE id = 1")
    moved = [(e[0], e[1], e[3]) for e in _captured(db, "public.cases")[n:]]
    assert ("public.cases.update", "t1", {"tenant": "moved out"}) in moved \
        and ("public.cases.update", "t2", {"tenant": "moved in"}) in moved, (
        f"row 1 moved from tenant t1 to t2 (tenant column excluded); the log got {moved}: t1's trail still ends"
        f" with the row as its own, t2's never shows it coming")


@pytest.mark.parametrize("key", ["one_column", "composite"])
def test_a_key_change_of_a_table_whose_key_column_is_excluded_is_recorded(db, connect, attacker, key):
    """Attack: the key columns cannot be redacted, but can be excluded, and skip_noop_updates then
    compares images without them: UPDATE ... SET id = 2 WHERE id = 1 (nothing else changes) writes
    nothing. The event that should name the new key with moved_from the old one (docs/capture.md) is
    not written. A break: no event; row_as_of(old key, now) still returns the row although no row
    holds that key, and the row under its new key has no history (unknown) -- later events of it
    are the history of a key that was never inserted or moved into."""
    if key == "one_column":
        attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY, owner text, balance int)")
        old_key, new_key, excluded = "1", "2", ["id"]
    else:
        attacker.execute("CREATE TABLE public.acct (id int, owner text, balance int, PRIMARY KEY (id, owner))")
        old_key, new_key, excluded = '[1, "alice"]', '[1, "mallory"]', ["owner"]
    enable_tracking(connect("app_maintainer"), "public.acct", exclude_columns=excluded)
    attacker.execute("INSERT INTO public.acct VALUES (1, 'alice', 100)")
    change = "id = 2" if key == "one_column" else "owner = 'mallory'"
    attacker.execute(f"UPDATE public.acct SET {change}")
    old_now = _row_as_of(db, "public.acct", old_key)
    state_new = db.execute(f"SELECT state FROM audit.row_state_as_of('public.acct', %s, {LATER})", (new_key,)).fetchone()[0]
    assert old_now is None and state_new == "existed", (
        f"the key changed {old_key} -> {new_key} (key column excluded) with events"
        f" {[(e[0], e[2], e[3]) for e in _captured(db, 'public.acct')]}: row_as_of({old_key}) still reads {old_now},"
        f" row_state_as_of({new_key}) is {state_new!r}")


# --- 4. A primary key with INCLUDE columns ----------------------------------------------------------

@pytest.mark.parametrize("made", ["create_table", "alter_table_add", "using_index"])
def test_a_primary_key_with_included_columns_names_rows_by_its_key_columns_only(db, connect, attacker, made):
    """Attack on 380d7c5 ("only a PRIMARY KEY names rows"): _key_columns reads pg_index.indkey, which
    holds a covering index's INCLUDE columns after its key columns (indnkeyatts says how many are
    the key). PRIMARY KEY (id) INCLUDE (note), made with the table, by ALTER TABLE, or by ADD
    PRIMARY KEY USING INDEX of a covering unique index. A break: the tracked key is [id, note], so row
    1 is named '[1, "a"]' and, when its note changes, '[1, "b"]' with moved_from (a key change that
    never happened), row_history('1') -- the documented form for a one-column key -- is empty, and a
    long note fails writes for target_id's 512 characters."""
    if made == "create_table":
        attacker.execute("CREATE TABLE public.k (id int, note text, PRIMARY KEY (id) INCLUDE (note))")
    else:
        attacker.execute("CREATE TABLE public.k (id int NOT NULL, note text)")
    if made == "alter_table_add":
        attacker.execute("ALTER TABLE public.k ADD PRIMARY KEY (id) INCLUDE (note)")
    elif made == "using_index":
        attacker.execute("CREATE UNIQUE INDEX k_cover ON public.k (id) INCLUDE (note)")
        attacker.execute("ALTER TABLE public.k ADD CONSTRAINT k_pkey PRIMARY KEY USING INDEX k_cover")
    enable_tracking(connect("app_maintainer"), "public.k")
    key = db.execute("SELECT key_columns FROM audit.tracked_tables WHERE relid = 'public.k'::regclass").fetchone()[0]
    attacker.execute("INSERT INTO public.k VALUES (1, 'a')")
    attacker.execute("UPDATE public.k SET note = 'b' WHERE id = 1")
    named = [(e[0], e[2], e[3].get("moved_from")) for e in _captured(db, "public.k")]
    history = db.execute("SELECT count(*) FROM audit.row_history('public.k', '1')").fetchone()[0]
    long_note = "ok"
    try:
        attacker.execute("UPDATE public.k SET note = repeat('x', 600) WHERE id = 1")
    except psycopg.Error as exc:
        long_note = f"refused: {exc.diag.constraint_name or exc.sqlstate}"
    assert key == ["id"] and history == 2, (
        f"{made}: PRIMARY KEY (id) INCLUDE (note) is tracked with key {key}; the events name row 1 as {named};"
        f" row_history('1') holds {history} events; a 600-character note: {long_note}")


# --- 5. A row moved between tenants by other routes, under a session claiming a third tenant -------

MOVES = {
    # Several source rows match the same target row: PostgreSQL updates it once, with one of them.
    "update_from_several_sources": (
        [], "UPDATE public.cases c SET tenant = s.t, note = s.t || '-note'"
            " FROM (VALUES (1, 't1'), (1, 't3'), (2, 't2')) AS s(id, t) WHERE c.id = s.id"),
    # A foreign key with ON UPDATE CASCADE rewrites the tenant column of the referencing rows.
    "fk_on_update_cascade": (
        ["CREATE TABLE public.tenants (name text PRIMARY KEY)",
         "INSERT INTO public.tenants VALUES ('t1'), ('t2')",
         "ALTER TABLE public.cases ADD FOREIGN KEY (tenant) REFERENCES public.tenants (name) ON UPDATE CASCADE"],
        "UPDATE public.tenants SET name = 't9' WHERE name = 't2'"),
    # One statement deletes the row under t2 and inserts its key again under t1.
    "writable_cte_delete_then_insert": (
        [], "WITH d AS (DELETE FROM public.cases WHERE id = 1 RETURNING id)"
            " INSERT INTO public.cases SELECT id, 't1', 't1-note' FROM d"),
    # Into no tenant, then to another tenant.
    "into_null_and_back": (
        [], "UPDATE public.cases SET tenant = NULL, note = 'no-tenant-note' WHERE id = 1;"
            " UPDATE public.cases SET tenant = 't1', note = 't1-note' WHERE id = 1"),
    # A BEFORE UPDATE trigger of the owner's sets the tenant (the writer did not name it).
    "before_trigger_sets_tenant": (
        ["CREATE FUNCTION public.retenant() RETURNS trigger LANGUAGE plpgsql AS"
         " $$ BEGIN NEW.tenant := 't1'; NEW.note := 't1-note'; RETURN NEW; END $$",
         "CREATE TRIGGER retenant BEFORE UPDATE ON public.cases FOR EACH ROW WHEN (OLD.id = 1)"
         " EXECUTE FUNCTION public.retenant()"],
        "UPDATE public.cases SET note = note || '!'"),
    # The row's key changes with its tenant, and another row takes its old key in the same statement.
    "key_and_tenant_and_reuse": (
        [], "UPDATE public.cases SET id = CASE id WHEN 1 THEN 3 WHEN 2 THEN 1 END,"
            " tenant = CASE id WHEN 1 THEN 't1' ELSE tenant END,"
            " note = CASE id WHEN 1 THEN 't1-note' ELSE note END WHERE id IN (1, 2)"),
}


@pytest.mark.parametrize("route", list(MOVES))
def test_a_row_moved_between_tenants_by_other_routes_shows_no_tenant_anothers_version(db, connect, attacker, route):
    """Attack on addcdb6/aec94ca by routes trial 34 did not take: UPDATE ... FROM with several source
    rows for one target row, an ON UPDATE CASCADE foreign key rewriting the tenant column, a
    writable CTE deleting the row under t2 and inserting its key under t1, a move into NULL and then
    to t1, an owner's BEFORE UPDATE trigger that sets the tenant, and a key change with a tenant move
    whose old key another row takes in the same statement -- each in a session claiming tenant t3
    (pgaudit_py.tenant_id), which must decide nothing. A break: an event filed under a tenant (or under
    none) carries an image whose tenant column is another (so that tenant's token reads the other's
    version); an event filed under the claimed t3; the row's current key not reading as its current
    version; or the verifiers failing."""
    setup, move = MOVES[route]
    attacker.execute("CREATE TABLE public.cases (id int PRIMARY KEY, tenant text, note text)")
    for command in setup:
        attacker.execute(command)
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant")
    attacker.execute("INSERT INTO public.cases VALUES (1, 't2', 't2-private-note')")
    attacker.execute("INSERT INTO public.cases VALUES (2, 't2', 't2-other-note')")
    with audit_context(attacker, tenant_id="t3"):
        for statement in move.split(";"):
            attacker.execute(statement)
    mixed = _images_out_of_their_tenant(db, "public.cases")
    claimed = [e for e in _captured(db, "public.cases") if e[1] == "t3"]
    rows = db.execute("SELECT id, tenant, note FROM public.cases ORDER BY id").fetchall()
    wrong = [(r[0], (_row_as_of(db, "public.cases", str(r[0])) or {}).get("note"), r[2]) for r in rows
             if (_row_as_of(db, "public.cases", str(r[0])) or {}).get("note") != r[2]]
    assert not mixed and not claimed and not wrong, (
        f"{route}: events whose images are another tenant's: {mixed}; filed under the claimed t3: {claimed};"
        f" keys whose row_as_of is not the row (key, as_of note, table note): {wrong}")
    seal(db)
    both_verifiers_ok(db)


# --- 6. Tenant and key columns whose text a session setting could change -----------------------------

SETTING_TYPES = {
    # type, a value, the writer's setting, two values the setting would print alike (or None)
    "timestamptz": ("timestamptz", "2026-05-01 12:00:00+00", "SET TimeZone = 'Asia/Kathmandu'", None,
                    "SET DateStyle = 'SQL, DMY'"),
    "float8": ("float8", "0.30000000000000004", "SET extra_float_digits = -15", ("0.1", "0.10000000000000002"),
               "SET extra_float_digits = 3"),
    "interval": ("interval", "1 day 02:00:00", "SET IntervalStyle = 'sql_standard'", None,
                 "SET IntervalStyle = 'iso_8601'"),
    "bytea": ("bytea", "\\x7431", "SET bytea_output = 'escape'", None, "SET bytea_output = 'hex'"),
    "money": ("money", "12.34", "SET lc_monetary = 'de_DE.UTF-8'", None, "RESET lc_monetary"),
}


@pytest.mark.parametrize("as_what", ["tenant", "key"])
@pytest.mark.parametrize("typ", list(SETTING_TYPES))
def test_a_writers_output_settings_do_not_change_a_rows_tenant_or_key(db, connect, attacker, typ, as_what):
    """Attack: a tenant column (or the primary key) of a type whose text depends on session settings
    (timestamptz/TimeZone and DateStyle, float8/extra_float_digits, interval/IntervalStyle,
    bytea/bytea_output, money/lc_monetary). The row is inserted under default settings; a writer
    then updates another column of it under each hostile setting, and (where one exists) inserts a
    second row whose value the hostile setting prints like the first's. A break: the row's events
    carry more than one tenant_id or target_id, an update of another column is split as a tenant
    move or named as a key move, or two different values are filed under one tenant or one key."""
    sqltype, value, hostile, alike, other = SETTING_TYPES[typ]
    if typ == "money" and db.execute("SELECT count(*) FROM pg_collation WHERE collname = 'de_DE.utf8'").fetchone()[0] == 0:
        hostile = "SET lc_monetary = 'C.UTF-8'"
    if as_what == "tenant":
        attacker.execute(f"CREATE TABLE public.cases (id int PRIMARY KEY, tenant {sqltype}, note text)")
        enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant")
    else:
        attacker.execute(f"CREATE TABLE public.cases (tenant {sqltype} PRIMARY KEY, id int UNIQUE, note text)")
        enable_tracking(connect("app_maintainer"), "public.cases")
    writer = connect("table_owner")
    writer.execute(f"INSERT INTO public.cases (id, tenant, note) VALUES (1, %s::{sqltype}, 'v0')", (value,))
    for i, setting in enumerate((hostile, other), start=1):
        writer.execute(setting)
        writer.execute("UPDATE public.cases SET note = %s WHERE id = 1", (f"v{i}",))
    events = [e for e in _captured(db, "public.cases") if (e[4] or e[5] or {}).get("id") == 1]
    field = 1 if as_what == "tenant" else 2
    names = {e[field] for e in events}
    moves = [e[3] for e in events if e[3]]
    problems = []
    if len(names) != 1 or moves or len(events) != 3:
        problems.append(f"row 1's {as_what} read as {names} over {len(events)} events, payloads {moves}")
    if alike is not None:
        writer.execute(hostile)
        writer.execute(f"INSERT INTO public.cases (id, tenant, note) VALUES (2, %s::{sqltype}, 'a'), (3, %s::{sqltype}, 'b')",
                       alike)
        pair = db.execute("SELECT tenant_id, target_id FROM audit.events WHERE target_type = 'public.cases'"
                          " AND kind = 'public.cases.insert' AND (row_after ->> 'id')::int IN (2, 3)").fetchall()
        if len({p[field - 1] for p in pair}) != 2:
            problems.append(f"two different values filed under one {as_what}: {pair}")
    assert not problems, f"{typ} as {as_what}: " + "; ".join(problems)


# --- 7. Tenant columns of odd types ------------------------------------------------------------------

ODD_TENANTS = {
    # Case-insensitive: 'T1' = 't1' for the column, two tenants for the audit log.
    "case_insensitive_domain": (
        ["CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
         "CREATE DOMAIN public.tenant_name AS text COLLATE public.ci",
         "CREATE TABLE public.cases (id int PRIMARY KEY, tenant public.tenant_name, note text)"],
        "'T1'", ["UPDATE public.cases SET tenant = 't1', note = 'lower-note' WHERE id = 1"]),
    # (An array or jsonb tenant column is refused since trial 84, k1 and k2: '{t2}' and '[0:0]={t2}',
    # or "1" and 1, named one tenant. test_capture_integrity tries both.)
    "generated": (
        ["CREATE TABLE public.cases (id int PRIMARY KEY, raw text, tenant text GENERATED ALWAYS AS (lower(raw)) STORED,"
         " note text)"],
        None, ["UPDATE public.cases SET raw = 'T2', note = 't2-note' WHERE id = 1"]),
}


@pytest.mark.parametrize("kind", list(ODD_TENANTS))
def test_a_tenant_column_of_an_odd_type_keeps_each_tenant_to_its_own_versions(db, connect, attacker, kind):
    """Attack: the split compares the tenant column's image text. Tenant columns of odd types: a
    domain over text with a case-insensitive (nondeterministic) collation, where 'T1' = 't1' for
    PostgreSQL but the log files them apart; a text[] column (its bounds are lost in the image:
    {t2} and [0:0]={t2}); a generated column (lower(raw)); a jsonb column going to JSON null and back.
    A break: any event whose images' tenant is not the tenant it is filed under (a tenant reads
    another's version), or the row's current key not reading as its current version."""
    setup, first, moves = ODD_TENANTS[kind]
    if kind == "case_insensitive_domain" and not db.execute(
            "SELECT count(*) FROM pg_collation WHERE collprovider = 'i'").fetchone()[0]:
        pytest.skip("PostgreSQL built without ICU")
    for command in setup:
        attacker.execute(command)
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant")
    if kind == "generated":
        attacker.execute("INSERT INTO public.cases (id, raw, note) VALUES (1, 'T1', 't1-private-note')")
    else:
        attacker.execute(f"INSERT INTO public.cases (id, tenant, note) VALUES (1, {first}, 't1-private-note')")
    with audit_context(attacker, tenant_id="t3"):
        for move in moves:
            attacker.execute(move)
    # An image's tenant as the log files it: the column's value as the capture reads it (->>).
    mixed = db.execute(
        "SELECT kind, tenant_id, row_before -> 'tenant', row_after -> 'tenant', row_before ->> 'note', row_after ->> 'note'"
        " FROM audit.events WHERE target_type = 'public.cases'"
        "   AND ((row_before IS NOT NULL AND (row_before ->> 'tenant') IS DISTINCT FROM tenant_id)"
        "     OR (row_after IS NOT NULL AND (row_after ->> 'tenant') IS DISTINCT FROM tenant_id))").fetchall()
    now = (_row_as_of(db, "public.cases", "1") or {}).get("note")
    table_note = db.execute("SELECT note FROM public.cases WHERE id = 1").fetchone()[0]
    assert not mixed and now == table_note, (
        f"{kind}: events carrying another tenant's image: {mixed}; row_as_of(1) note {now!r}, table {table_note!r}")


# --- 8. The primary key made deferrable or replaced around writes ------------------------------------

KEY_CHANGES = {
    "drop_and_add_deferred_using_index": [
        "CREATE UNIQUE INDEX k_u ON public.k (id)",
        "ALTER TABLE public.k DROP CONSTRAINT k_pkey, ADD CONSTRAINT k_pkey PRIMARY KEY USING INDEX k_u"
        " DEFERRABLE INITIALLY DEFERRED"],
    "drop_write_duplicates_add_deferred": [
        "BEGIN", "ALTER TABLE public.k DROP CONSTRAINT k_pkey",
        "ALTER TABLE public.k ADD CONSTRAINT k_pkey PRIMARY KEY (id) DEFERRABLE INITIALLY DEFERRED",
        "INSERT INTO public.k VALUES (1, 'second row one')", "UPDATE public.k SET v = 'changed' WHERE v = 'a'",
        "DELETE FROM public.k WHERE v = 'second row one'", "COMMIT"],
    "alter_constraint_deferrable": ["ALTER TABLE public.k ALTER CONSTRAINT k_pkey DEFERRABLE INITIALLY DEFERRED"],
    "partition_with_deferred_key": [
        "CREATE TABLE public.kp (id int, v text) PARTITION BY RANGE (id)",
        "ALTER TABLE public.kp ADD PRIMARY KEY (id) DEFERRABLE INITIALLY DEFERRED"],
}


@pytest.mark.parametrize("how", list(KEY_CHANGES))
def test_a_tracked_key_never_becomes_deferrable(db, connect, attacker, how):
    """Attack on "a deferrable primary key cannot be tracked": make it deferrable AFTER tracking, by
    dropping the key and adding it back DEFERRABLE INITIALLY DEFERRED in one ALTER TABLE (USING INDEX
    of a unique index made beforehand), or in one transaction with writes between (two rows named
    1 while the key is deferred), by ALTER CONSTRAINT, or on a partitioned table tracked before it
    had any key. A break: the tracked table ends with a deferrable key, or two rows' events under one
    target_id within one history."""
    table = "public.kp" if how.startswith("partition") else "public.k"
    if table == "public.k":
        attacker.execute("CREATE TABLE public.k (id int PRIMARY KEY, v text)")
        enable_tracking(connect("app_maintainer"), table)
        attacker.execute("INSERT INTO public.k VALUES (1, 'a'), (2, 'b')")
    session = connect("table_owner")
    outcome = "ran"
    for i, command in enumerate(KEY_CHANGES[how]):
        if table == "public.kp" and i == 1:
            enable_tracking(connect("app_maintainer"), table)
        try:
            session.execute(command)
        except psycopg.Error as exc:
            outcome = f"{exc.sqlstate} at {command!r}"
            if session.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                session.execute("ROLLBACK")
            break
    deferrable = db.execute("SELECT count(*) FROM pg_index WHERE indrelid = %s::regclass AND indisprimary"
                            " AND NOT indimmediate", (table,)).fetchone()[0]
    tracked = db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = %s::regclass", (table,)).fetchone()[0]
    assert not (deferrable and tracked), f"{how}: {table} is tracked with a deferrable primary key ({outcome})"


# --- 9. DETACH PARTITION ... CONCURRENTLY by other routes ---------------------------------------------

def _book(attacker, connect) -> None:
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100)"
                     " PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1a PARTITION OF public.book_1 FOR VALUES FROM (0) TO (50)")
    attacker.execute("CREATE TABLE public.book_1b PARTITION OF public.book_1 FOR VALUES FROM (50) TO (100)")
    attacker.execute("CREATE TABLE public.book_2 PARTITION OF public.book FOR VALUES FROM (100) TO (200)")
    attacker.execute("INSERT INTO public.book VALUES (1, 1), (60, 2), (150, 3)")


DETACHES = {
    # A pipeline whose first statement assigns no transaction id.
    "pipeline_after_a_read": ("pipeline", ["SELECT 1", "ALTER TABLE public.book DETACH PARTITION public.book_2 CONCURRENTLY"]),
    # The partition of a partition (the tracked table's grandchild).
    "grandchild": ("plain", ["ALTER TABLE public.book_1 DETACH PARTITION public.book_1a CONCURRENTLY"]),
    # Odd spelling: mixed case, a newline and comments around the keywords.
    "spelled_oddly": ("plain", ["/* nothing */ alter\ttable public.book_1\n DeTaCh/**/partition public.book_1b"
                                "--x\n cOnCuRrEnTlY"]),
    # Through the extended protocol, prepared.
    "prepared": ("prepared", ["ALTER TABLE public.book DETACH PARTITION public.book_2 CONCURRENTLY"]),
}


@pytest.mark.parametrize("route", list(DETACHES))
def test_detach_concurrently_by_other_routes_is_refused_or_recorded(db, connect, attacker, route):
    """Attack on the words-and-xid refusal (380d7c5, 2e93c06): a pipeline whose first statement is a read
    (no transaction id assigned); a DETACH of the tracked table's grandchild (book_1 is itself a
    partition); mixed case, tabs, newlines and comments between the keywords; the extended protocol.
    A break: a partition leaves the tracked tree (or is left detach pending) with no
    audit.tracked_partition_removed naming it."""
    _book(attacker, connect)
    enable_tracking(connect("app_maintainer"), "public.book")
    n = len(gone_events(db))
    mode, commands = DETACHES[route]
    session = connect("table_owner")
    outcome = "ran"
    try:
        if mode == "pipeline":
            with session.pipeline():
                for command in commands:
                    session.execute(command)
        else:
            for command in commands:
                session.execute(command, prepare=(mode == "prepared"))
    except psycopg.Error as exc:
        outcome = f"{exc.sqlstate} {str(exc).splitlines()[0]}"
    left = db.execute("SELECT c.relname, i.inhdetachpending FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid"
                      " WHERE c.relname LIKE 'book\\_%' AND c.relkind IN ('r', 'p')"
                      "   AND (i.inhrelid IS NULL OR i.inhdetachpending)").fetchall()
    recorded = [e for e in gone_events(db)[n:] if e[0] == "audit.tracked_partition_removed"]
    assert not left or len(recorded) >= len(left), f"{route}: {left} left the tree ({outcome}), recorded: {recorded}"


def test_a_table_with_a_partition_left_detach_pending_is_not_tracked_with_rows_it_does_not_hold(db, connect, attacker):
    """Attack: before the table is tracked (no tracked table has partitions, so nothing refuses it), the
    owner starts DETACH PARTITION ... CONCURRENTLY of book_2 and lets it be cancelled in its wait
    (statement_timeout while another session reads the table): book_2 is left detach pending, its
    row (150) out of public.book for every new query. The maintainer then tracks public.book with a
    baseline. A break: the baseline records row 150 as public.book's (row_as_of reads it) though the
    table does not hold it -- the state the concurrent-detach refusal exists to keep from a tracked
    table -- or a row written into the pending partition afterwards is recorded as a row of
    public.book that the table never shows. Safe: tracking refused while a detach is pending, or
    the history holds only what the table holds."""
    _book(attacker, connect)
    reader = connect("table_owner", autocommit=False)
    reader.execute("SELECT count(*) FROM public.book")
    detacher = connect("table_owner")
    detacher.execute("SET statement_timeout = '1s'")
    with pytest.raises(psycopg.errors.QueryCanceled):
        detacher.execute("ALTER TABLE public.book DETACH PARTITION public.book_2 CONCURRENTLY")
    reader.rollback()
    pending = db.execute("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'public.book_2'::regclass").fetchone()
    assert pending == (True,), pending
    held = sorted(r[0] for r in db.execute("SELECT id FROM public.book"))
    try:
        enable_tracking(connect("app_maintainer"), "public.book", baseline=True)
    except InvalidTarget as exc:  # the wrapper's error for PA008
        assert "detach" in str(exc), exc
        return
    baseline = sorted(int(e[2]) for e in _captured(db, "public.book") if e[0] == "public.book.baseline")
    attacker.execute("INSERT INTO public.book_2 VALUES (170, 7)")
    phantom = _row_as_of(db, "public.book", "170")
    in_table = db.execute("SELECT count(*) FROM public.book WHERE id = 170").fetchone()[0]
    assert baseline == held and not (phantom and not in_table), (
        f"public.book holds rows {held}; its baseline records {baseline}; row 170, written into the pending"
        f" partition, reads {phantom} in public.book's history while the table shows {in_table} such rows")


# --- 10. Capture kept through a change of schema, owner, trigger names and modes ---------------------

SWITCHES = {
    "set_schema": (["CREATE SCHEMA other", "GRANT USAGE ON SCHEMA other TO PUBLIC", "ALTER TABLE public.t SET SCHEMA other"],
                   "other.t"),
    "owner_to_a_non_maintainer": (["ALTER TABLE public.t OWNER TO app_writer"], "public.t"),
    "rename_capture_trigger": (["ALTER TRIGGER audit_capture_update ON public.t RENAME TO audit_capture_updatex"],
                               "public.t"),
    "enable_always": (["ALTER TABLE public.t ENABLE ALWAYS TRIGGER audit_capture_update"], "public.t"),
    "enable_replica": (["ALTER TABLE public.t ENABLE REPLICA TRIGGER audit_capture_update"], "public.t"),
}


@pytest.mark.parametrize("how", list(SWITCHES))
def test_a_tracked_table_moved_rehomed_or_retriggered_is_still_captured(db, connect, attacker, how):
    """Attack: switch capture off without touching the triggers' definitions: move the table to
    another schema, hand it to a role that is no maintainer, rename a capture trigger, set it to fire
    ALWAYS or only on replicas. Then a writer updates a row.
    A break: the table's rows change (SELECT) with no captured event of the change."""
    if how == "owner_to_a_non_maintainer":
        db.execute("GRANT app_writer TO table_owner")
        db.execute("GRANT CREATE ON SCHEMA public TO app_writer")
    try:
        attacker.execute("CREATE TABLE public.t (id int PRIMARY KEY, v text)")
        attacker.execute("INSERT INTO public.t VALUES (1, 'a')")
        enable_tracking(connect("app_maintainer"), "public.t")
        commands, table = SWITCHES[how]
        owner = connect("table_owner")
        refused = False
        for command in commands:
            try:
                owner.execute(command)
            except psycopg.Error as exc:
                assert exc.sqlstate in ("PA008", "42501"), exc
                refused = True
                break
        if refused:
            table = "public.t"
        db.execute(f"GRANT ALL ON {table} TO app_writer")
        n = len(_captured(db, "public.t"))
        connect("app_writer").execute(f"UPDATE {table} SET v = 'b' WHERE id = 1")
        now = db.execute(f"SELECT v FROM {table} WHERE id = 1").fetchone()[0]
        written = _captured(db, "public.t")[n:]
        assert now == "a" or written, f"{how}: {table} row 1 is now {now!r} with no captured event"
    finally:
        if how == "owner_to_a_non_maintainer":
            db.execute("REVOKE app_writer FROM table_owner")
