"""An eighty-fourth attacker's trial: against fc05a3b (_refuse_unnamable_names in the event trigger,
_refuse_dropped_name_attribute, _inheritors, _column_parts, status naming grandfathered tables,
enable_tracking's PA005 refusals, redaction and the no-op rule on not-inline tables).

Classes (test names carry the letter):
  K. two rows or two tenants named as one, or one row named two ways, by routes trials 80-83 did not
     take: collations, ALTER TYPE/DOMAIN, generated and identity keys, expression indexes, replica
     identity, inheritance, partitions of other column orders, typed tables, float/numeric keys,
     arrays with other lower bounds, composites with NULL attributes, jsonb tenants.
  O. the table owner and other non-audit roles: their code as an audit role, capture switched off,
     history forged or erased.
  G. guards under German messages: SQLSTATEs kept.
  V. hostile payloads and values through capture and record(): both verifiers agree, the chain good.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when
an honest use is refused). Roles: t84_owner, t84_mallory (table_owner_kit), dropped afterwards.
"""

from __future__ import annotations

import json

import psycopg
import pytest
from trial_helpers import (
    both_verifiers,
    events_under,
    is_tracked,
    kinds_under,
    named_in_status,
    problems_of,
    quarantine_empty,
    seal_all,
    table_owner_kit,
    track_new_table,
    try_enable,
    try_write,
)

from pgaudit_py import enable_tracking

PRIVILEGED_PREFIXES = ("audit",)


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t84") as k:
        k.ran = []

        def hear(d):
            msg = d.message_primary or ""
            if msg.startswith("t84ran "):
                k.ran.append(msg.removeprefix("t84ran "))

        for c in (k.db, k.owner, k.mallory, k.writer, k.reader, k.maint):
            c.add_notice_handler(hear)
        k.hear = hear
        yield k


def mood(kit):
    kit.owner.execute("CREATE TYPE public.t84_mood AS ENUM ('ok', 'sad')")


def spy_kit(kit):
    """public.t84_ran (who), and public.t84_spy(text): says current_user (a warning outlives a
    rolled-back subtransaction) and writes it down; executable by anyone."""
    kit.owner.execute("""CREATE TABLE public.t84_ran (who text, what text); GRANT ALL ON public.t84_ran TO PUBLIC;
        CREATE FUNCTION public.t84_spy(what text) RETURNS boolean LANGUAGE plpgsql AS $$
        BEGIN
            RAISE WARNING 't84ran %', current_user;
            BEGIN INSERT INTO public.t84_ran VALUES (current_user, what); EXCEPTION WHEN OTHERS THEN NULL; END;
            IF starts_with(current_user::text, 'audit') THEN  -- the writer may record; an audit role running this may not
                BEGIN PERFORM audit.record('t84.forged_by_' || current_user); EXCEPTION WHEN OTHERS THEN NULL; END;
            END IF;
            BEGIN
                INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                VALUES ('user', 'x', 't84.forged_intake', 'success', '1', now(), '{}');
            EXCEPTION WHEN OTHERS THEN NULL;
            END;
            RETURN true;
        END $$;
        GRANT EXECUTE ON FUNCTION public.t84_spy(text) TO PUBLIC""")


def privileged_runs(kit) -> set[str]:
    """Who ran the owner's code with some right: an audit role but the sandbox (which holds none and
    runs users' casts by design, rolled back at once), or a superuser."""
    who = set(kit.ran) | {r[0] for r in kit.db.execute("SELECT who FROM public.t84_ran")}
    return {w for w in who if (w.startswith(PRIVILEGED_PREFIXES) and w != "audit_sandbox")
            or w in ("postgres", kit.db.info.user)}


def forged(kit) -> list[str]:
    return [r[0] for r in kit.db.execute("SELECT kind FROM audit.events WHERE kind LIKE 't84.forged%'")]


# ============================================ class K ============================================

JSONB_PAIRS = {
    "string_vs_number": ('"1"', "1"),
    "string_vs_boolean": ('"true"', "true"),
    "string_vs_array": ('"[1, 2]"', "[1, 2]"),
    "string_vs_object": ('"{\\"a\\": 1}"', '{"a": 1}'),
    "json_null_vs_sql_null": ("null", None),
}


@pytest.mark.parametrize(("pair", "typ"), [(p, "jsonb") for p in JSONB_PAIRS] + [("string_vs_number", "domain_over_jsonb")])
def test_k1_a_jsonb_tenant_column_names_two_tenant_values_as_one(kit, pair, typ):
    """A tenant column of type jsonb (json is refused, jsonb is not). Two rows whose tenant values
    differ (a JSON string and the number its text spells, or a JSON null and no value). Safe:
    enable refused, or the two rows' events carry distinct tenants."""
    a, b = JSONB_PAIRS[pair]
    if typ != "jsonb":
        kit.owner.execute("CREATE DOMAIN public.t84_dj AS jsonb")
        typ = "public.t84_dj"
    kit.owner.execute(f"CREATE TABLE public.t84_jt (id int PRIMARY KEY, tc {typ}, v int); GRANT ALL ON public.t84_jt TO app_writer")
    err = try_enable(kit, "t84_jt", tenant_column="tc")
    if err is not None:
        assert err[:5] == "PA005", err
        return
    kit.writer.execute("INSERT INTO public.t84_jt VALUES (1, %s::jsonb, 0), (2, %s::jsonb, 0)", [a, b])
    got = {e["target_id"]: e["tenant_id"] for e in events_under(kit.db, "public.t84_jt.insert")}
    assert got["1"] != got["2"], got


ARRAY_TENANTS = {
    "int_array": ("", "int[]", "'{1,2}'::int[]", "'[0:1]={1,2}'::int[]"),
    "domain_over_array": ("CREATE DOMAIN public.t84_da AS int[]", "public.t84_da", "'{1,2}'", "'[0:1]={1,2}'"),
    "composite_with_array": ("CREATE TYPE public.t84_ca AS (a int[])", "public.t84_ca",
                             "ROW('{1,2}'::int[])::public.t84_ca", "ROW('[0:1]={1,2}'::int[])::public.t84_ca"),
    "text_array": ("", "text[]", "'{x,y}'::text[]", "'[5:6]={x,y}'::text[]"),
}


@pytest.mark.parametrize("route", list(ARRAY_TENANTS))
def test_k2_array_tenants_of_other_lower_bounds_are_two_tenants(kit, route):
    """The key may not hold an array (a row image keeps no bounds); a tenant column may. Tenants
    '{1,2}' and '[0:1]={1,2}' are two values (array_eq tells them apart). Safe: refused (PA005), or
    the two rows' events carry distinct tenant_ids."""
    setup, typ, a, b = ARRAY_TENANTS[route]
    if setup:
        kit.owner.execute(setup)
    kit.owner.execute(f"CREATE TABLE public.t84_at (id int PRIMARY KEY, tc {typ}, v int); GRANT ALL ON public.t84_at TO app_writer")
    err = try_enable(kit, "t84_at", tenant_column="tc")
    if err is not None:
        assert err[:5] in ("PA005", "PA008"), err
        return
    distinct = kit.db.execute(f"SELECT {a} IS DISTINCT FROM {b}").fetchone()[0]
    assert distinct
    kit.writer.execute(f"INSERT INTO public.t84_at VALUES (1, {a}, 0), (2, {b}, 0)")
    got = {e["target_id"]: e["tenant_id"] for e in events_under(kit.db, "public.t84_at.insert")}
    assert got["1"] != got["2"], got


def test_k3_a_row_moved_between_array_tenants_of_other_bounds_is_a_move(kit):
    """A row whose array tenant goes from '{1,2}' to '[0:1]={1,2}': another tenant value. Safe:
    refused at enable, or recorded as a move to another tenant (two events, distinct tenants)."""
    kit.owner.execute("CREATE TABLE public.t84_am (id int PRIMARY KEY, tc int[], v int); GRANT ALL ON public.t84_am TO app_writer")
    err = try_enable(kit, "t84_am", tenant_column="tc")
    if err is not None:
        return
    kit.writer.execute("INSERT INTO public.t84_am VALUES (1, '{1,2}', 0)")
    kit.writer.execute("UPDATE public.t84_am SET tc = '[0:1]={1,2}'")
    ups = events_under(kit.db, "public.t84_am.update")
    assert len({u["tenant_id"] for u in ups}) == 2, ups


KEY_TO_ARRAY = {
    "plain_array": ("", "int[]", "'{1,2}'", "'[0:1]={1,2}'"),
    "domain_over_array": ("CREATE DOMAIN public.t84_da AS int[]", "public.t84_da", "'{1,2}'", "'[0:1]={1,2}'"),
    "composite_with_array": ("CREATE TYPE public.t84_ca AS (a int[])", "public.t84_ca", "ROW('{1,2}'::int[])",
                             "ROW('[0:1]={1,2}'::int[])"),
}


@pytest.mark.parametrize("how", ["add_primary_key", "using_index"])
@pytest.mark.parametrize("route", list(KEY_TO_ARRAY))
def test_k4_the_key_moved_after_tracking_to_an_array_column(kit, route, how):
    """Tracked with key id; a column k holds arrays of other lower bounds, alike in images; the owner
    makes k the primary key (ADD PRIMARY KEY, or USING INDEX of a unique index). enable_tracking
    refuses an array key. Safe: refused; or the two rows keep distinct names."""
    setup, typ, a, b = KEY_TO_ARRAY[route]
    if setup:
        kit.owner.execute(setup)
    track_new_table(kit, "t84_ka", f"id int CONSTRAINT t84_ka_pk PRIMARY KEY, k {typ} NOT NULL, v int")
    kit.writer.execute(f"INSERT INTO public.t84_ka VALUES (1, {a}, 0), (2, {b}, 0)")
    if how == "using_index":
        kit.owner.execute("CREATE UNIQUE INDEX t84_ka_k ON public.t84_ka (k)")
        refused = try_write(kit.owner, "ALTER TABLE public.t84_ka DROP CONSTRAINT t84_ka_pk,"
                                       " ADD CONSTRAINT t84_ka_pk2 PRIMARY KEY USING INDEX t84_ka_k")
    else:
        refused = try_write(kit.owner, "ALTER TABLE public.t84_ka DROP CONSTRAINT t84_ka_pk, ADD PRIMARY KEY (k)")
    if refused is not None:
        assert refused[:5] == "PA008", refused
        return
    kit.writer.execute("UPDATE public.t84_ka SET v = 1")
    names = [e["target_id"] for e in events_under(kit.db, "public.t84_ka.update")]
    assert len(set(names)) == 2 or named_in_status(kit, "t84_ka"), names


def test_k5_an_array_attribute_added_to_the_keys_composite_type(kit):
    """The key is a composite (a text); the owner adds an int[] attribute to the type after tracking.
    Rows (x, '{1,2}') and (x, '[0:1]={1,2}') would then print alike. Safe: refused; or distinct names."""
    kit.owner.execute("CREATE TYPE public.t84_kc AS (a text)")
    track_new_table(kit, "t84_kk", "k public.t84_kc PRIMARY KEY, v int")
    refused = try_write(kit.owner, "ALTER TYPE public.t84_kc ADD ATTRIBUTE b int[]")
    if refused is not None:
        return
    kit.writer.execute("INSERT INTO public.t84_kk VALUES (ROW('x', '{1,2}'), 0), (ROW('x', '[0:1]={1,2}'), 0)")
    names = [e["target_id"] for e in events_under(kit.db, "public.t84_kk.insert")]
    assert len(set(names)) == 2 or named_in_status(kit, "t84_kk"), names


@pytest.mark.parametrize("kind", ["multirange"])
def test_k6_a_range_of_arrays_as_the_key_keeps_the_bounds(kit, kind):
    """A range over int[] as the key: its text prints each bound's array with its lower bounds.
    Safe: enable refuses, or two rows of other array bounds carry distinct target_ids."""
    kit.owner.execute("CREATE TYPE public.t84_ar AS RANGE (subtype = int[], multirange_type_name = public.t84_amr)")
    typ = "public.t84_ar" if kind == "range" else "public.t84_amr"
    kit.owner.execute(f"CREATE TABLE public.t84_rk (k {typ} PRIMARY KEY, v int); GRANT ALL ON public.t84_rk TO app_writer")
    if try_enable(kit, "t84_rk") is not None:
        return
    a = "public.t84_ar('{1,2}', '{3}')"
    b = "public.t84_ar('[0:1]={1,2}', '{3}')"
    if kind == "multirange":
        a, b = f"public.t84_amr({a})", f"public.t84_amr({b})"
    kit.writer.execute(f"INSERT INTO public.t84_rk VALUES ({a}, 0), ({b}, 0)")
    names = [e["target_id"] for e in events_under(kit.db, "public.t84_rk.insert")]
    assert len(set(names)) == 2, names


def icu(kit) -> None:
    kit.owner.execute("CREATE COLLATION public.t84_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")


def test_k7_a_key_under_a_nondeterministic_collation_changing_case_is_a_move(kit):
    """Key text COLLATE case-insensitive: 'A' updated to 'a' (equal to the collation, two spellings).
    Safe: recorded as an update naming the row 'a', moved from 'A'."""
    icu(kit)
    track_new_table(kit, "t84_ci", "k text COLLATE public.t84_ci PRIMARY KEY, v int")
    kit.writer.execute("INSERT INTO public.t84_ci VALUES ('A', 0)")
    kit.writer.execute("UPDATE public.t84_ci SET k = 'a'")
    ups = events_under(kit.db, "public.t84_ci.update")
    assert [(u["target_id"], (u["payload"] or {}).get("moved_from")) for u in ups] == [("a", "A")], ups


def test_k8_a_tenant_under_a_nondeterministic_collation_changing_case_is_a_move(kit):
    """Tenant column COLLATE case-insensitive: 'ACME' to 'acme', two tenant names. Safe: two events,
    the old under 'ACME' without row_after, the new under 'acme' without row_before."""
    icu(kit)
    track_new_table(kit, "t84_ct", "id int PRIMARY KEY, tc text COLLATE public.t84_ci, v int", tenant_column="tc")
    kit.writer.execute("INSERT INTO public.t84_ct VALUES (1, 'ACME', 0)")
    kit.writer.execute("UPDATE public.t84_ct SET tc = 'acme'")
    ups = events_under(kit.db, "public.t84_ct.update")
    assert sorted((u["tenant_id"], u["row_before"] is None, u["row_after"] is None) for u in ups) == \
        [("ACME", False, True), ("acme", True, False)], ups


@pytest.mark.parametrize("to", ["nondeterministic"])
def test_k9_a_key_columns_collation_changed_after_tracking(kit, to):
    """ALTER COLUMN k TYPE text COLLATE ... (no rewrite; the key index is rebuilt) on a tracked
    table with keys 'A' and 'a'. Safe: refused (the index cannot hold both under case-insensitive),
    or two rows keep distinct names and capture goes on."""
    icu(kit)
    track_new_table(kit, "t84_cc", "k text PRIMARY KEY, v int")
    kit.writer.execute("INSERT INTO public.t84_cc VALUES ('A', 0), ('a', 0)")
    coll = "public.t84_ci" if to == "nondeterministic" else '"C"'
    refused = try_write(kit.owner, f"ALTER TABLE public.t84_cc ALTER COLUMN k TYPE text COLLATE {coll}")
    if refused is not None:
        assert is_tracked(kit, "t84_cc")
        return
    kit.writer.execute("UPDATE public.t84_cc SET v = 1")
    names = sorted(e["target_id"] for e in events_under(kit.db, "public.t84_cc.update"))
    assert names == ["A", "a"], names


def test_k10_alter_type_alter_attribute_type_of_a_keys_composite(kit):
    """ALTER TYPE ... ALTER ATTRIBUTE ... TYPE of the composite a tracked key is made of: PostgreSQL
    refuses while a column uses it. Safe: refused, the attribute's type unchanged."""
    kit.owner.execute("CREATE TYPE public.t84_kc AS (a int, b text)")
    track_new_table(kit, "t84_at2", "k public.t84_kc PRIMARY KEY, v int")
    refused = try_write(kit.owner, "ALTER TYPE public.t84_kc ALTER ATTRIBUTE a TYPE text")
    typ = kit.db.execute("SELECT format_type(a.atttypid, NULL) FROM pg_attribute a JOIN pg_type t ON t.typrelid = a.attrelid"
                         " WHERE t.oid = 'public.t84_kc'::regtype AND a.attname = 'a'").fetchone()[0]
    assert refused is not None and typ == "integer", (refused, typ)


@pytest.mark.parametrize("change", ["to_bigint", "to_text"])
def test_k11_a_typed_tables_key_attribute_retyped_by_cascade(kit, change):
    """A typed table (OF type) tracked, its key attribute retyped by ALTER TYPE ... ALTER ATTRIBUTE
    ... TYPE ... CASCADE (a rewrite of the rows, no row trigger). Safe: refused (PA008) and still
    tracked; or the rows keep their names and the change is recorded."""
    kit.owner.execute("CREATE TYPE public.t84_tc AS (id int, v int)")
    kit.owner.execute("CREATE TABLE public.t84_ty OF public.t84_tc (PRIMARY KEY (id)); GRANT ALL ON public.t84_ty TO app_writer")
    enable_tracking(kit.maint, "public.t84_ty")
    kit.writer.execute("INSERT INTO public.t84_ty VALUES (1, 0), (2, 0)")
    typ = {"to_bigint": "bigint", "to_numeric": "numeric(10,2)", "to_text": "text"}[change]
    refused = try_write(kit.owner, f"ALTER TYPE public.t84_tc ALTER ATTRIBUTE id TYPE {typ} CASCADE")
    assert is_tracked(kit, "t84_ty")
    if refused is not None:
        return
    kit.writer.execute("UPDATE public.t84_ty SET v = 1")
    names = sorted(e["target_id"] for e in events_under(kit.db, "public.t84_ty.update"))
    assert names == ["1", "2"], names
    sysk = [e for e in kit.db.execute("SELECT kind FROM audit.events WHERE kind LIKE 'audit.tracked_%'").fetchall()]
    assert sysk, "retyped with no record"


def test_k12_a_typed_tables_key_attribute_renamed_by_cascade_is_followed(kit):
    """ALTER TYPE ... RENAME ATTRIBUTE id TO k CASCADE renames a typed table's key column. Safe: the
    catalogue follows (key k), later events name rows by the same value."""
    kit.owner.execute("CREATE TYPE public.t84_tc AS (id int, v int)")
    kit.owner.execute("CREATE TABLE public.t84_ty OF public.t84_tc (PRIMARY KEY (id)); GRANT ALL ON public.t84_ty TO app_writer")
    enable_tracking(kit.maint, "public.t84_ty")
    kit.writer.execute("INSERT INTO public.t84_ty VALUES (1, 0)")
    assert try_write(kit.owner, "ALTER TYPE public.t84_tc RENAME ATTRIBUTE id TO k CASCADE") is None
    kit.writer.execute("UPDATE public.t84_ty SET v = 1")
    keys = kit.db.execute("SELECT key_columns FROM audit.tracked_tables WHERE relid = 'public.t84_ty'::regclass").fetchone()[0]
    ups = events_under(kit.db, "public.t84_ty.update")
    assert keys == ["k"] and [u["target_id"] for u in ups] == ["1"], (keys, ups)


@pytest.mark.parametrize("stmt", [
    "ALTER DOMAIN public.t84_dk ADD CONSTRAINT t84_len CHECK (length(VALUE) < 100)",
    "ALTER DOMAIN public.t84_dk SET DEFAULT 'zz'",
    "ALTER DOMAIN public.t84_dk ADD CONSTRAINT t84_nv CHECK (VALUE <> 'q') NOT VALID",
])
def test_k13_alter_domain_of_a_key_keeps_names_and_capture(kit, stmt):
    """ALTER DOMAIN on the domain a tracked key is made of (constraints, default, rename): none
    changes a stored value. Safe: allowed or refused, and afterwards writes are captured with the
    key's value as name."""
    kit.owner.execute("CREATE DOMAIN public.t84_dk AS text")
    track_new_table(kit, "t84_dom", "k public.t84_dk PRIMARY KEY, v int")
    kit.writer.execute("INSERT INTO public.t84_dom VALUES ('a', 0)")
    try_write(kit.owner, stmt)
    kit.writer.execute("UPDATE public.t84_dom SET v = 1")
    kit.writer.execute("INSERT INTO public.t84_dom VALUES ('b', 0)")
    assert [(e["kind"].rsplit(".", 1)[1], e["target_id"]) for e in events_under(kit.db, "public.t84_dom.")] == \
        [("insert", "a"), ("update", "a"), ("insert", "b")]


def test_k14_a_generated_key_moves_with_its_base_column(kit):
    """The key is a stored generated column (a * 2). Updating a moves the row's key. Safe: one update
    naming the row by its new key, moved from the old."""
    track_new_table(kit, "t84_gk", "a int, k int GENERATED ALWAYS AS (a * 2) STORED PRIMARY KEY, v int")
    kit.writer.execute("INSERT INTO public.t84_gk (a, v) VALUES (1, 0)")
    kit.writer.execute("UPDATE public.t84_gk SET a = 5")
    ups = events_under(kit.db, "public.t84_gk.update")
    assert [(u["target_id"], (u["payload"] or {}).get("moved_from")) for u in ups] == [("10", "2")], ups


def test_k15_a_generated_keys_expression_dropped_keeps_names(kit):
    """ALTER COLUMN k DROP EXPRESSION (the key becomes a plain column, values kept). Safe: allowed or
    refused; rows keep their names; a later insert with an explicit key is captured."""
    track_new_table(kit, "t84_gk", "a int, k int GENERATED ALWAYS AS (a * 2) STORED PRIMARY KEY, v int")
    kit.writer.execute("INSERT INTO public.t84_gk (a, v) VALUES (1, 0)")
    if try_write(kit.owner, "ALTER TABLE public.t84_gk ALTER COLUMN k DROP EXPRESSION") is not None:
        return
    kit.writer.execute("UPDATE public.t84_gk SET v = 1")
    kit.writer.execute("INSERT INTO public.t84_gk VALUES (7, 3, 0)")
    assert [(e["kind"].rsplit(".", 1)[1], e["target_id"]) for e in events_under(kit.db, "public.t84_gk.")] == \
        [("insert", "2"), ("update", "2"), ("insert", "3")]


def test_k16_an_identity_key_restarted_cannot_name_two_rows_as_one(kit):
    """An identity key restarted at 1 after rows 1 and 2 exist: the next insert collides (refused by
    the key). Safe: no two insert events name the same key."""
    track_new_table(kit, "t84_id", "id int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, v int")
    kit.writer.execute("INSERT INTO public.t84_id (v) VALUES (0), (0)")
    kit.owner.execute("ALTER TABLE public.t84_id ALTER COLUMN id RESTART WITH 1")
    try_write(kit.writer, "INSERT INTO public.t84_id (v) VALUES (9)")
    kit.owner.execute("ALTER TABLE public.t84_id ALTER COLUMN id SET GENERATED ALWAYS")
    try_write(kit.writer, "INSERT INTO public.t84_id (v) VALUES (9)")
    names = [e["target_id"] for e in events_under(kit.db, "public.t84_id.insert")]
    assert len(names) == len(set(names)), names


def test_k17_an_expression_index_cannot_become_the_key(kit):
    """A unique index over lower(k) made the primary key (USING INDEX): PostgreSQL refuses an
    expression index. Safe: refused, key_columns still [id]."""
    track_new_table(kit, "t84_ex", "id int CONSTRAINT t84_ex_pk PRIMARY KEY, k text NOT NULL")
    kit.owner.execute("CREATE UNIQUE INDEX t84_ex_k ON public.t84_ex (lower(k))")
    refused = try_write(kit.owner, "ALTER TABLE public.t84_ex DROP CONSTRAINT t84_ex_pk,"
                                   " ADD CONSTRAINT t84_ex_pk2 PRIMARY KEY USING INDEX t84_ex_k")
    keys = kit.db.execute("SELECT key_columns FROM audit.tracked_tables WHERE relid = 'public.t84_ex'::regclass").fetchone()[0]
    assert refused is not None and keys == ["id"], (refused, keys)


@pytest.mark.parametrize("ident", ["index_on_other_column", "index_other_collation"])
def test_k18_replica_identity_never_names_rows(kit, ident):
    """Replica identity changed after tracking (FULL, an index over another column, one on another
    collation, NOTHING). Safe: the rows are still named by the primary key; a table without one by
    nothing."""
    icu(kit)
    track_new_table(kit, "t84_ri", "id int PRIMARY KEY, k text NOT NULL, v int")
    track_new_table(kit, "t84_rn", "k text NOT NULL, v int")
    kit.writer.execute("INSERT INTO public.t84_ri VALUES (1, 'A', 0), (2, 'a', 0); INSERT INTO public.t84_rn VALUES ('A', 0), ('a', 0)")
    for t in ("t84_ri", "t84_rn"):
        if ident == "full":
            stmt = f"ALTER TABLE public.{t} REPLICA IDENTITY FULL"
        elif ident == "nothing":
            stmt = f"ALTER TABLE public.{t} REPLICA IDENTITY NOTHING"
        else:
            coll = " COLLATE public.t84_ci" if ident == "index_other_collation" else ""
            if ident == "index_other_collation":
                kit.writer.execute(f"DELETE FROM public.{t} WHERE k = 'a' COLLATE \"C\"")
            kit.owner.execute(f"CREATE UNIQUE INDEX {t}_k ON public.{t} (k{coll})")
            stmt = f"ALTER TABLE public.{t} REPLICA IDENTITY USING INDEX {t}_k"
        try_write(kit.owner, stmt)
        kit.writer.execute(f"UPDATE public.{t} SET v = v + 1")
    ri = {e["target_id"] for e in events_under(kit.db, "public.t84_ri.update")}
    rn = {e["target_id"] for e in events_under(kit.db, "public.t84_rn.update")}
    assert ri <= {"1", "2"} and ri and rn == {None}, (ri, rn)


@pytest.mark.parametrize("stmt", [
    "ALTER TABLE public.t84_other INHERIT public.t84_inh",
    "ALTER TABLE public.t84_inh INHERIT public.t84_other",
    "ALTER TABLE public.t84_inh_p NO INHERIT public.t84_inh_pp",
])
def test_k19_inheritance_cannot_be_taken_on_or_off_a_tracked_table(kit, stmt):
    """INHERIT into or from a tracked table, a new child of it, NO INHERIT of a tracked table's
    partition. Safe: refused; the tracked tables still have no plain inheritance."""
    track_new_table(kit, "t84_inh", "id int PRIMARY KEY, v int")
    kit.owner.execute("CREATE TABLE public.t84_other (id int NOT NULL, v int)")
    kit.owner.execute("CREATE TABLE public.t84_inh_pp (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);"
                      " CREATE TABLE public.t84_inh_p PARTITION OF public.t84_inh_pp FOR VALUES FROM (0) TO (100);"
                      " GRANT ALL ON public.t84_inh_pp TO app_writer")
    enable_tracking(kit.maint, "public.t84_inh_pp")
    refused = try_write(kit.owner, stmt)
    plain = kit.db.execute("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                           " WHERE i.inhparent IN ('public.t84_inh'::regclass, 'public.t84_other'::regclass)"
                           "    OR i.inhrelid = 'public.t84_inh'::regclass").fetchone()[0]
    assert refused is not None and plain == 0, refused
    kit.writer.execute("INSERT INTO public.t84_inh_pp VALUES (5, 0)")
    assert [e["target_id"] for e in events_under(kit.db, "public.t84_inh_pp.insert")] == ["5"]


PART_SHAPES = {
    "reordered": "CREATE TABLE public.t84_pc (note text, v int, id int NOT NULL)",
    "dropped_middle": "CREATE TABLE public.t84_pc (id int NOT NULL, junk text, v int, note text);"
                      " ALTER TABLE public.t84_pc DROP COLUMN junk",
    "dropped_first_reordered": "CREATE TABLE public.t84_pc (junk int, junk2 int, v int, note text, id int NOT NULL);"
                               " ALTER TABLE public.t84_pc DROP COLUMN junk, DROP COLUMN junk2",
}


@pytest.mark.parametrize("shape", list(PART_SHAPES))
def test_k20_a_partition_of_another_column_order_is_imaged_and_named_alike(kit, shape):
    """A tracked partitioned table (id, v, note); a partition attached with its columns in another
    order or with dropped columns. Writes through the parent and straight into the partition.
    Safe: each event names the row by id, images carry the right values by name, changed lists v."""
    kit.owner.execute("CREATE TABLE public.t84_pp (id int, v int, note text, PRIMARY KEY (id)) PARTITION BY RANGE (id);"
                      " CREATE TABLE public.t84_p1 PARTITION OF public.t84_pp FOR VALUES FROM (0) TO (100);"
                      " GRANT ALL ON public.t84_pp, public.t84_p1 TO app_writer")
    enable_tracking(kit.maint, "public.t84_pp")
    kit.owner.execute(PART_SHAPES[shape] + "; GRANT ALL ON public.t84_pc TO app_writer")
    err = try_write(kit.maint, "ALTER TABLE public.t84_pp ATTACH PARTITION public.t84_pc FOR VALUES FROM (100) TO (200)")
    assert err is None, err
    kit.writer.execute("INSERT INTO public.t84_pp VALUES (1, 10, 'a'), (101, 11, 'b')")
    kit.writer.execute("INSERT INTO public.t84_pc (id, v, note) VALUES (102, 12, 'c')")
    kit.writer.execute("UPDATE public.t84_pp SET v = v + 1 WHERE id IN (1, 101)")
    kit.writer.execute("UPDATE public.t84_pc SET v = v + 1 WHERE id = 102")
    ins = {e["target_id"]: json.loads(e["row_after"]) for e in events_under(kit.db, "public.t84_pp.insert")}
    assert ins == {"1": {"id": 1, "v": 10, "note": "a"}, "101": {"id": 101, "v": 11, "note": "b"},
                   "102": {"id": 102, "v": 12, "note": "c"}}, ins
    ups = sorted((e["target_id"], json.dumps(e["changed"], sort_keys=True)) for e in events_under(kit.db, "public.t84_pp.update"))
    assert [u[0] for u in ups] == ["1", "101", "102"], ups
    assert all(json.loads(c) .keys() == {"v"} for _, c in ups), ups


def test_k21_a_row_moved_between_partitions_of_other_column_orders(kit):
    """An UPDATE of id moves a row from a partition (id, v, note) to one (note, v, id) with a dropped
    column. Safe: one update, named by the new id, moved from the old, images by name."""
    kit.owner.execute("CREATE TABLE public.t84_pp (id int, v int, note text, PRIMARY KEY (id)) PARTITION BY RANGE (id);"
                      " CREATE TABLE public.t84_p1 PARTITION OF public.t84_pp FOR VALUES FROM (0) TO (100);"
                      " GRANT ALL ON public.t84_pp TO app_writer")
    enable_tracking(kit.maint, "public.t84_pp")
    kit.owner.execute(PART_SHAPES["dropped_first_reordered"])
    assert try_write(kit.maint, "ALTER TABLE public.t84_pp ATTACH PARTITION public.t84_pc FOR VALUES FROM (100) TO (200)") is None
    kit.writer.execute("INSERT INTO public.t84_pp VALUES (1, 10, 'a')")
    kit.writer.execute("UPDATE public.t84_pp SET id = 150")
    ups = events_under(kit.db, "public.t84_pp.update")
    assert [(u["target_id"], (u["payload"] or {}).get("moved_from"), json.loads(u["row_after"])) for u in ups] == \
        [("150", "1", {"id": 150, "v": 10, "note": "a"})], ups


def test_k22_detach_and_reattach_of_a_reordered_partition(kit):
    """DETACH (recorded) and ATTACH again of a partition with other column order; writes after.
    Safe: both removal and addition recorded; later events named by id with the right values."""
    kit.owner.execute("CREATE TABLE public.t84_pp (id int, v int, note text, PRIMARY KEY (id)) PARTITION BY RANGE (id);"
                      " GRANT ALL ON public.t84_pp TO app_writer")
    enable_tracking(kit.maint, "public.t84_pp")
    kit.owner.execute(PART_SHAPES["reordered"] + "; GRANT ALL ON public.t84_pc TO app_writer")
    assert try_write(kit.maint, "ALTER TABLE public.t84_pp ATTACH PARTITION public.t84_pc FOR VALUES FROM (100) TO (200)") is None
    kit.writer.execute("INSERT INTO public.t84_pp VALUES (101, 1, 'x')")
    assert try_write(kit.maint, "ALTER TABLE public.t84_pp DETACH PARTITION public.t84_pc") is None
    kit.writer.execute("UPDATE public.t84_pc SET v = 99")  # not the tracked table's any more
    assert try_write(kit.maint, "ALTER TABLE public.t84_pp ATTACH PARTITION public.t84_pc FOR VALUES FROM (100) TO (200)") is None
    kit.writer.execute("UPDATE public.t84_pp SET v = 100")
    sysk = [r[0] for r in kit.db.execute("SELECT kind FROM audit.events WHERE kind IN"
                                         " ('audit.tracked_partition_added', 'audit.tracked_partition_removed') ORDER BY intake_id")]
    ups = events_under(kit.db, "public.t84_pp.update")
    assert sysk == ["audit.tracked_partition_added", "audit.tracked_partition_removed", "audit.tracked_partition_added"], sysk
    assert [(u["target_id"], u["changed"]) for u in ups] == [("101", {"v": {"old": 99, "new": 100}})], ups


def test_k23_a_schema_of_a_keys_enum_renamed_keeps_names(kit):
    """The key (e, id) has an enum e in schema t84_s; the schema is renamed. Safe: later events name
    the row as before (["ok", 1])."""
    kit.owner.execute("CREATE SCHEMA t84_s; CREATE TYPE t84_s.e AS ENUM ('ok', 'sad'); GRANT USAGE ON SCHEMA t84_s TO PUBLIC")
    track_new_table(kit, "t84_se", "e t84_s.e, id int, v int, PRIMARY KEY (e, id)")
    kit.writer.execute("INSERT INTO public.t84_se VALUES ('ok', 1, 0)")
    try_write(kit.owner, "ALTER SCHEMA t84_s RENAME TO t84_s2")
    kit.writer.execute("UPDATE public.t84_se SET v = 1")
    names = [e["target_id"] for e in events_under(kit.db, "public.t84_se.")]
    assert len(set(names)) == 1 and len(names) == 2, names


FLOATS = [
    ("float8", "'-0'", "'0'"),
    ("numeric", "1.0", "1.00"),
    ("numeric", "'NaN'", "'NaN'"),
    ("float8", "'NaN'", "'NaN'::float8 * 1"),
    ("numeric", "1E+2", "100"),
]


@pytest.mark.parametrize(("typ", "old", "new"), FLOATS)
def test_k24_a_key_rewritten_to_an_equal_value_of_another_spelling(kit, typ, old, new):
    """A numeric or float key rewritten to an equal value: -0 and 0, 1.0 and 1.00, NaN and NaN.
    docs: such rows are compared as stored. Safe: recorded when the stored value differs (named by
    the new spelling, moved from the old), and never a second row; nothing when it is the same."""
    track_new_table(kit, "t84_fk", f"k {typ} PRIMARY KEY, v int")
    kit.writer.execute(f"INSERT INTO public.t84_fk VALUES ({old}, 0)")
    stored_same = kit.db.execute(f"SELECT (({old})::{typ})::text = (({new})::{typ})::text").fetchone()[0]
    kit.writer.execute(f"UPDATE public.t84_fk SET k = {new}")
    dup = try_write(kit.writer, f"INSERT INTO public.t84_fk VALUES ({old}, 1)")
    ups = events_under(kit.db, "public.t84_fk.update")
    ins = events_under(kit.db, "public.t84_fk.insert")
    assert dup is not None and len(ins) == 1, (dup, ins)
    if stored_same:
        assert ups == [], ups
    else:
        # recorded; named as before, or by the new spelling with the old one as moved_from
        assert len(ups) == 1, ups
        was = ins[0]["target_id"]
        moved = (ups[0]["payload"] or {}).get("moved_from")
        assert ups[0]["target_id"] == was and moved is None or moved == was, (was, ups)


COMPOSITE_NULLS = [
    ("ROW(NULL, NULL)", "ROW('', '')"),
    ("ROW('a,b', 'x')", "ROW('a', 'b,x')"),
    ("ROW('\"', 'x')", "ROW('\\', 'x')"),
]


@pytest.mark.parametrize(("a", "b"), COMPOSITE_NULLS)
@pytest.mark.parametrize("via", ["key", "tenant"])
def test_k25_composites_with_null_attributes_are_named_apart(kit, a, b, via):
    """Composite values with a NULL attribute against an empty string, the string 'NULL', commas and
    quotes. Safe: the two rows (or tenants) carry distinct names."""
    kit.owner.execute("CREATE TYPE public.t84_nc AS (p text, q text)")
    if via == "key":
        cols, opts = "k public.t84_nc PRIMARY KEY, id int, v int", {}
    elif via == "composite_key":
        cols, opts = "k public.t84_nc, id int, v int, PRIMARY KEY (id, k)", {}
    else:
        cols, opts = "k public.t84_nc, id int PRIMARY KEY, v int", {"tenant_column": "k"}
    track_new_table(kit, "t84_cn", cols, **opts)
    kit.writer.execute(f"INSERT INTO public.t84_cn (k, id, v) VALUES ({a}, 1, 0), ({b}, {1 if via == 'composite_key' else 2}, 0)")
    es = events_under(kit.db, "public.t84_cn.insert")
    field = "tenant_id" if via == "tenant" else "target_id"
    assert len({e[field] for e in es}) == 2, [e[field] for e in es]


def test_k26_a_citext_like_domain_key_keeps_one_row_one_history(kit):
    """A domain over text COLLATE case-insensitive as the key: 'Bob' then an insert of 'BOB'
    (refused by the key) and an update to 'bob'. Safe: one insert, one update moved from 'Bob'."""
    icu(kit)
    kit.owner.execute("CREATE DOMAIN public.t84_cit AS text COLLATE public.t84_ci")
    track_new_table(kit, "t84_cd", "k public.t84_cit PRIMARY KEY, v int")
    kit.writer.execute("INSERT INTO public.t84_cd VALUES ('Bob', 0)")
    assert try_write(kit.writer, "INSERT INTO public.t84_cd VALUES ('BOB', 0)") is not None
    kit.writer.execute("INSERT INTO public.t84_cd VALUES ('BOB', 1) ON CONFLICT (k) DO UPDATE SET v = 5")
    kit.writer.execute("UPDATE public.t84_cd SET k = 'bob'")
    out = [(e["kind"].rsplit(".", 1)[1], e["target_id"], (e["payload"] or {}).get("moved_from")) for e in events_under(kit.db, "public.t84_cd.")]
    assert out == [("insert", "Bob", None), ("update", "Bob", None), ("update", "bob", "Bob")], out


def _images_of_history(kit, table: str, key: str) -> list[tuple]:
    rows = kit.reader.execute("SELECT kind, coalesce(row_after, row_before)::text FROM audit.row_history(%s::regclass, %s)",
                              [table, key]).fetchall()
    return [(k, json.loads(i)) for k, i in rows]


@pytest.mark.parametrize("route", ["key_order_flipped", "key_moved_to_other_column", "key_widened", "key_dropped"])
def test_k27_a_key_changed_after_tracking_never_files_two_rows_under_one_name(kit, route):
    """The owner changes which columns (or in what order) make the key after tracking: a composite
    key (a, b) redefined as (b, a), or the key moved from id to a unique column code whose values
    are other rows' ids. A row then takes a name another row had. Safe: refused; or no row's
    history mixes two rows (every image in the history of a name is of one row)."""
    if route == "key_order_flipped":
        track_new_table(kit, "t84_kf", "a int, b int, v int, CONSTRAINT t84_kf_pk PRIMARY KEY (a, b)")
        kit.writer.execute("INSERT INTO public.t84_kf VALUES (1, 2, 0), (2, 1, 0)")
        refused = try_write(kit.owner, "ALTER TABLE public.t84_kf DROP CONSTRAINT t84_kf_pk,"
                                       " ADD CONSTRAINT t84_kf_pk2 PRIMARY KEY (b, a)")
        name, ident = "[2, 1]", ("a", "b")
    elif route in ("key_widened", "key_dropped"):
        track_new_table(kit, "t84_kf", "id int CONSTRAINT t84_kf_pk PRIMARY KEY, code int NOT NULL, v int")
        kit.writer.execute("INSERT INTO public.t84_kf VALUES (1, 2, 0)")
        refused = try_write(kit.owner, "ALTER TABLE public.t84_kf DROP CONSTRAINT t84_kf_pk"
                                       + (", ADD CONSTRAINT t84_kf_pk2 PRIMARY KEY (id, code)" if route == "key_widened" else ""))
        if refused is not None:
            return
        kit.writer.execute("DELETE FROM public.t84_kf")
        state = kit.state("public.t84_kf", "1", kit.now())
        assert state[0] != "existed", state  # the row is gone; its old name must not say it exists
        return
    else:
        track_new_table(kit, "t84_kf", "id int CONSTRAINT t84_kf_pk PRIMARY KEY, code int NOT NULL UNIQUE, v int")
        kit.writer.execute("INSERT INTO public.t84_kf VALUES (1, 2, 0), (2, 1, 0)")
        refused = try_write(kit.owner, "ALTER TABLE public.t84_kf DROP CONSTRAINT t84_kf_pk,"
                                       " ADD CONSTRAINT t84_kf_pk2 PRIMARY KEY (code)")
        name, ident = "2", ("id",)
    if refused is not None:
        return
    kit.writer.execute("UPDATE public.t84_kf SET v = 1")
    hist = _images_of_history(kit, "public.t84_kf", name)
    rows = {tuple(img[c] for c in ident) for _, img in hist}
    assert len(rows) <= 1, hist


def test_k28_a_jsonb_tenant_changed_from_string_to_number_is_a_move(kit):
    """A jsonb tenant column from "1" (a string) to 1 (a number): another tenant value. Safe:
    refused at enable, or two events under distinct tenants."""
    kit.owner.execute("CREATE TABLE public.t84_jm (id int PRIMARY KEY, tc jsonb, v int); GRANT ALL ON public.t84_jm TO app_writer")
    if try_enable(kit, "t84_jm", tenant_column="tc") is not None:
        return
    kit.writer.execute("INSERT INTO public.t84_jm VALUES (1, '\"1\"', 0)")
    kit.writer.execute("UPDATE public.t84_jm SET tc = '1'")
    ups = events_under(kit.db, "public.t84_jm.update")
    assert len({u["tenant_id"] for u in ups}) == 2, ups


@pytest.mark.parametrize("typ", ["jsonb", "domain_over_jsonb", "composite_holding_jsonb"])
def test_k29_a_jsonb_key_names_a_string_and_a_number_apart(kit, typ):
    """A key of jsonb (or a domain over it, or a composite holding it): "1" and 1 are two rows.
    docs: a jsonb key is named by its JSON text. Safe: distinct target_ids."""
    if typ == "domain_over_jsonb":
        kit.owner.execute("CREATE DOMAIN public.t84_dj AS jsonb")
        t, a, b = "public.t84_dj", "'\"1\"'", "'1'"
    elif typ == "composite_holding_jsonb":
        kit.owner.execute("CREATE TYPE public.t84_cj AS (j jsonb)")
        t, a, b = "public.t84_cj", "ROW('\"1\"'::jsonb)", "ROW('1'::jsonb)"
    else:
        t, a, b = "jsonb", "'\"1\"'", "'1'"
    track_new_table(kit, "t84_jk", f"k {t} PRIMARY KEY, v int")
    kit.writer.execute(f"INSERT INTO public.t84_jk VALUES ({a}, 0), ({b}, 0)")
    names = [e["target_id"] for e in events_under(kit.db, "public.t84_jk.insert")]
    assert len(set(names)) == 2, names


@pytest.mark.parametrize("how", ["drop_column", "drop_type_cascade", "drop_domain_cascade", "typed_table_attribute"])
def test_k30_a_dropped_tenant_column_never_files_rows_under_a_claimed_tenant(kit, how):
    """Tracked with tenant column tc (rows of tenant acme); the owner drops tc (or its type or domain
    with CASCADE). docs: a tenant table's events are never filed under the session's claimed tenant.
    Safe: refused; or later events of acme's rows are not filed under the tenant the writer claims."""
    if how == "drop_column":
        typ = "text"
    elif how == "drop_type_cascade":
        kit.owner.execute("CREATE TYPE public.t84_ten AS ENUM ('acme', 'other')")
        typ = "public.t84_ten"
    elif how == "drop_domain_cascade":
        kit.owner.execute("CREATE DOMAIN public.t84_tend AS text")
        typ = "public.t84_tend"
    if how == "typed_table_attribute":
        kit.owner.execute("CREATE TYPE public.t84_tt AS (id int, tc text, v int);"
                          " CREATE TABLE public.t84_dt OF public.t84_tt (PRIMARY KEY (id)); GRANT ALL ON public.t84_dt TO app_writer")
        enable_tracking(kit.maint, "public.t84_dt", tenant_column="tc")
    else:
        track_new_table(kit, "t84_dt", f"id int PRIMARY KEY, tc {typ}, v int", tenant_column="tc")
    kit.writer.execute("INSERT INTO public.t84_dt VALUES (1, 'acme', 0)")
    stmt = {"drop_column": "ALTER TABLE public.t84_dt DROP COLUMN tc",
            "drop_type_cascade": "DROP TYPE public.t84_ten CASCADE",
            "drop_domain_cascade": "DROP DOMAIN public.t84_tend CASCADE",
            "typed_table_attribute": "ALTER TYPE public.t84_tt DROP ATTRIBUTE tc CASCADE"}[how]
    refused = try_write(kit.owner, stmt)
    if refused is not None:
        return
    kit.writer.execute("SET pgaudit_py.tenant_id = 'other'")
    kit.writer.execute("UPDATE public.t84_dt SET v = 1")
    ups = events_under(kit.db, "public.t84_dt.update")
    assert all(u["tenant_id"] != "other" for u in ups), (ups, named_in_status(kit, "t84_dt"))


# ============================================ class O ============================================

SWITCH_OFF = {
    "disable_one": "ALTER TABLE public.t84_acct DISABLE TRIGGER audit_capture_insert",
    "disable_all": "ALTER TABLE public.t84_acct DISABLE TRIGGER ALL",
    "drop": "DROP TRIGGER audit_capture_insert ON public.t84_acct",
    "replace": "CREATE OR REPLACE TRIGGER audit_capture_insert AFTER INSERT ON public.t84_acct"
               " FOR EACH STATEMENT EXECUTE FUNCTION public.t84_noop()",
    "replica_role": "SET session_replication_role = replica",
    "to_view": "CREATE RULE \"_RETURN\" AS ON SELECT TO public.t84_acct DO INSTEAD SELECT 1 AS id, 1 AS v, ''::text AS note",
    "instead_rule": "CREATE RULE t84_r AS ON INSERT TO public.t84_acct DO INSTEAD INSERT INTO public.t84_shadow VALUES (NEW.*)",
    "access_method": "ALTER TABLE public.t84_acct SET ACCESS METHOD heap",
    "set_schema": "CREATE SCHEMA t84_sch; GRANT USAGE ON SCHEMA t84_sch TO PUBLIC; ALTER TABLE public.t84_acct SET SCHEMA t84_sch",
}


@pytest.mark.parametrize("how", list(SWITCH_OFF))
def test_o1_the_owner_cannot_switch_capture_off(kit, how):
    """The table's owner (no audit role) tries to switch capture off. Safe: whatever it did, a row
    the writer then inserts into the table (under whatever name it has now) is captured, and the
    table is still tracked."""
    kit.owner.execute("CREATE FUNCTION public.t84_noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;"
                      " CREATE TABLE public.t84_shadow (id int, v int, note text); GRANT ALL ON public.t84_shadow TO PUBLIC")
    track_new_table(kit, "t84_acct", "id int PRIMARY KEY, v int, note text")
    try_write(kit.owner, stmt := SWITCH_OFF[how])
    name = {"set_schema": "t84_sch.t84_acct", "rename_table": "public.t84_acct2"}.get(how, "public.t84_acct")
    if how == "set_schema" and kit.db.execute("SELECT to_regclass('t84_sch.t84_acct')").fetchone()[0] is None:
        name = "public.t84_acct"
    if how == "rename_table" and kit.db.execute("SELECT to_regclass('public.t84_acct2')").fetchone()[0] is None:
        name = "public.t84_acct"
    w = kit.owner if how == "replica_role" else kit.writer
    wrote = try_write(w, f"INSERT INTO {name} VALUES (7, 0, 'x')")
    present = kit.db.execute(f"SELECT count(*) FROM {name} WHERE id = 7").fetchone()[0] if wrote is None else 0
    assert is_tracked(kit, name), stmt
    got = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE '%.insert' AND target_id = '7'").fetchone()[0]
    assert got == present, (stmt, wrote, present, got)


FORBIDDEN = {
    "intake_insert": "INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)"
                     " VALUES ('user', 'x', 'public.t84_acct.delete', 'success', '1', now(), '{}')",
    "intake_delete": "DELETE FROM audit.event_intake",
    "log_update": "UPDATE audit.event_log SET payload = '{}'",
    "truncate_intake": "TRUNCATE audit.event_intake",
    "event_trigger": "CREATE EVENT TRIGGER t84_et ON ddl_command_start EXECUTE FUNCTION pg_catalog.pg_event_trigger_dropped_objects()",
    "default_privileges": "ALTER DEFAULT PRIVILEGES FOR ROLE audit_owner GRANT ALL ON TABLES TO PUBLIC",
    "set_role_capture": "SET ROLE audit_capture",
    "base_type": "CREATE TYPE public.t84_bt (input = int4in, output = int4out, internallength = 4, passedbyvalue)",
    "capture_fn": "CREATE OR REPLACE FUNCTION audit_capture._capture_1() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$",
}


@pytest.mark.parametrize("what", list(FORBIDDEN))
def test_o2_no_direct_forgery_or_escalation(kit, what):
    """Writing the intake, log or catalogue directly, an event trigger, default privileges for an
    audit role, SET ROLE to one, a base type, a capture function of its own. Safe: refused, and the
    intake holds no event the statement made."""
    track_new_table(kit, "t84_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("INSERT INTO public.t84_acct VALUES (1, 0, 'x')")
    for role in ("owner", "mallory", "writer"):
        before = kit.db.execute("SELECT count(*), coalesce(sum(hashtext(kind)), 0) FROM audit.events").fetchone()
        conn = getattr(kit, role)
        refused = try_write(conn, FORBIDDEN[what])
        after = kit.db.execute("SELECT count(*), coalesce(sum(hashtext(kind)), 0) FROM audit.events").fetchone()
        with_role = conn.execute("SELECT current_user").fetchone()[0]
        try_write(conn, "RESET ROLE")
        assert refused is not None, (what, role)
        assert after == before and not with_role.startswith("audit"), (role, before, after, with_role)


RECORD_FORGERIES = [
    "public.t84_acct.insert",
    "public.t84_acct.truncate",
    "audit.tracking_disabled",
]


@pytest.mark.parametrize("kind", RECORD_FORGERIES)
def test_o3_record_cannot_forge_a_captured_or_system_event(kit, kind):
    """record() with kinds under the tracked prefix, or the package's own, with origin-like payloads.
    Safe: refused (PA001); row_history of the row unchanged."""
    track_new_table(kit, "t84_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("INSERT INTO public.t84_acct VALUES (1, 0, 'x')")
    err = try_write(kit.writer, "SELECT audit.record(kind => %s, target_type => 'public.t84_acct', target_id => '1',"
                                " payload => '{\"origin\": \"capture\", \"table\": \"public.t84_acct\"}')", [kind])
    hist = [r[0] for r in kit.reader.execute("SELECT kind FROM audit.row_history('public.t84_acct'::regclass, '1')")]
    assert (err or "")[:5] == "PA001" and hist == ["public.t84_acct.insert"], (err, hist)


def test_o4_after_disable_recorded_lookalikes_never_enter_history(kit):
    """Once tracking is disabled, record() may take the old prefix's kinds (origin record). Safe:
    row_history and row_state_as_of still read only captured events: the look-alike 'delete' does
    not make the row absent."""
    track_new_table(kit, "t84_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("INSERT INTO public.t84_acct VALUES (1, 0, 'x')")
    kit.maint.execute("SELECT audit.disable_tracking('public.t84_acct')")
    try_write(kit.writer, "SELECT audit.record(kind => 'public.t84_acct.delete', target_type => 'public.t84_acct', target_id => '1')")
    hist = [r[0] for r in kit.reader.execute("SELECT kind FROM audit.row_history('public.t84_acct'::regclass, '1')")]
    state = kit.reader.execute("SELECT state FROM audit.row_state_as_of('public.t84_acct'::regclass, '1', clock_timestamp())").fetchone()[0]
    assert hist == ["public.t84_acct.insert"] and state != "absent", (hist, state)


def test_o5_a_table_renamed_away_and_a_new_one_under_its_name(kit):
    """The owner renames the tracked table and creates a new one under its name, then asks of row 1.
    Safe: history under the name refused (PA008) or empty, never the old table's rows as the new
    one's; the renamed table still tracked."""
    track_new_table(kit, "t84_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("INSERT INTO public.t84_acct VALUES (1, 0, 'x')")
    kit.owner.execute("ALTER TABLE public.t84_acct RENAME TO t84_old;"
                      " CREATE TABLE public.t84_acct (id int PRIMARY KEY, v int, note text)")
    st = kit.state("public.t84_acct", "1", kit.now())
    assert st[0] in ("refused", "unknown"), st
    assert is_tracked(kit, "public.t84_old")


@pytest.mark.parametrize("where", ["operator_public", "function_public", "cast_to_text",
                                   "cast_to_jsonb", "policy", "domain_check", "trigger_before_capture",
                                   "index_expression", "subtype_diff"])
def test_o6_the_owners_code_never_runs_as_an_audit_role(kit, where):
    """The owner's code reachable from capture, the no-op rule, baseline, history and sealing: an
    operator or function in public over its enum, a cast from its enum to text or jsonb, a policy,
    a domain CHECK, an AFTER trigger that sorts before the capture's, an index expression, a range's
    subtype_diff, a column default. Safe: no audit role (nor a superuser) ever ran it; events hold
    the stored values."""
    mood(kit)
    spy_kit(kit)
    o = kit.owner
    cols = "id int PRIMARY KEY, m public.t84_mood, v int, j json"
    if where == "operator_public":
        o.execute("""CREATE FUNCTION public.t84_eq(public.t84_mood, public.t84_mood) RETURNS boolean LANGUAGE sql
                       AS 'SELECT public.t84_spy(''op'') AND $1::text = $2::text';
                     CREATE OPERATOR public.= (leftarg = public.t84_mood, rightarg = public.t84_mood, function = public.t84_eq);
                     CREATE OPERATOR public.<> (leftarg = public.t84_mood, rightarg = public.t84_mood, function = public.t84_eq)""")
    elif where == "function_public":
        o.execute("""CREATE FUNCTION public.jsonb_build_object(VARIADIC text[]) RETURNS jsonb LANGUAGE plpgsql
                       AS $$ BEGIN PERFORM public.t84_spy('fn'); RETURN '{}'; END $$;
                     CREATE FUNCTION public.to_jsonb(public.t84_mood) RETURNS jsonb LANGUAGE plpgsql
                       AS $$ BEGIN PERFORM public.t84_spy('fn'); RETURN '"forged"'; END $$;
                     CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql
                       AS $$ BEGIN PERFORM public.t84_spy('fn'); RETURN '2000-01-01'; END $$""")
        for c in (kit.writer, kit.maint, kit.reader):
            c.execute("SET search_path = public, pg_catalog")
    elif where == "cast_to_text":
        o.execute("""CREATE FUNCTION public.t84_mt(public.t84_mood) RETURNS text LANGUAGE plpgsql IMMUTABLE
                       AS $$ BEGIN PERFORM public.t84_spy('cast'); RETURN 'forged'; END $$;
                     CREATE CAST (public.t84_mood AS text) WITH FUNCTION public.t84_mt(public.t84_mood)""")
    elif where == "cast_to_jsonb":
        o.execute("""CREATE FUNCTION public.t84_mj(public.t84_mood) RETURNS jsonb LANGUAGE plpgsql IMMUTABLE
                       AS $$ BEGIN PERFORM public.t84_spy('cast'); RETURN '"forged"'; END $$;
                     CREATE CAST (public.t84_mood AS jsonb) WITH FUNCTION public.t84_mj(public.t84_mood)""")
    elif where == "domain_check":
        o.execute("CREATE DOMAIN public.t84_dv AS int CHECK (public.t84_spy('domain'))")
        cols = "id int PRIMARY KEY, m public.t84_mood, v public.t84_dv, j json"
    elif where == "subtype_diff":
        o.execute("""CREATE FUNCTION public.t84_diff(int, int) RETURNS float8 LANGUAGE plpgsql IMMUTABLE
                       AS $$ BEGIN PERFORM public.t84_spy('diff'); RETURN $1 - $2; END $$;
                     CREATE TYPE public.t84_r AS RANGE (subtype = int4, subtype_diff = public.t84_diff)""")
        cols = "id int PRIMARY KEY, m public.t84_mood, v int, j json, r public.t84_r"
    elif where == "default":
        o.execute("""CREATE FUNCTION public.t84_def() RETURNS int LANGUAGE plpgsql
                       AS $$ BEGIN PERFORM public.t84_spy('default'); RETURN 0; END $$""")
        cols = "id int PRIMARY KEY, m public.t84_mood, v int DEFAULT public.t84_def(), j json"
    o.execute(f"CREATE TABLE public.t84_sp ({cols}); GRANT ALL ON public.t84_sp TO app_writer;"
              " INSERT INTO public.t84_sp (id, m, v, j) VALUES (1, 'ok', 1, '{\"a\":1}')")
    if where == "policy":
        o.execute("ALTER TABLE public.t84_sp ENABLE ROW LEVEL SECURITY; ALTER TABLE public.t84_sp FORCE ROW LEVEL SECURITY;"
                  " CREATE POLICY t84_p ON public.t84_sp USING (public.t84_spy('policy')) WITH CHECK (public.t84_spy('policy'))")
    elif where == "trigger_before_capture":
        o.execute("""CREATE FUNCTION public.t84_tr() RETURNS trigger LANGUAGE plpgsql
                       AS $$ BEGIN PERFORM public.t84_spy('trigger'); RETURN NULL; END $$;
                     CREATE TRIGGER a_t84 AFTER INSERT OR UPDATE OR DELETE ON public.t84_sp
                       FOR EACH STATEMENT EXECUTE FUNCTION public.t84_tr()""")
    elif where == "index_expression":
        o.execute("""CREATE FUNCTION public.t84_ix(int) RETURNS int LANGUAGE plpgsql IMMUTABLE
                       AS $$ BEGIN PERFORM public.t84_spy('index'); RETURN $1; END $$;
                     CREATE INDEX t84_ixe ON public.t84_sp (public.t84_ix(v)) WHERE public.t84_ix(1) = 1""")
    o.execute("DELETE FROM public.t84_ran")
    kit.ran.clear()
    enable_tracking(kit.maint, "public.t84_sp", baseline=where != "policy")
    kit.writer.execute("INSERT INTO public.t84_sp (id, m, v, j) VALUES (2, 'ok', 2, '\"\\u0000\"')")
    kit.writer.execute("UPDATE public.t84_sp SET m = 'sad' WHERE id = 2")
    kit.writer.execute("UPDATE public.t84_sp SET m = m, v = v")
    kit.writer.execute("DELETE FROM public.t84_sp WHERE id = 1")
    kit.reader.execute("SELECT * FROM audit.row_history('public.t84_sp'::regclass, '2')").fetchall()
    kit.reader.execute("SELECT audit.row_as_of('public.t84_sp'::regclass, '2', clock_timestamp())").fetchall()
    kit.reader.execute("SELECT * FROM audit.events WHERE starts_with(kind, 'public.t84_sp.')").fetchall()
    assert seal_all(kit.db) is None
    kit.db.execute("SELECT * FROM audit.verify()").fetchall()
    problems_of(kit.db)
    assert privileged_runs(kit) == set(), (where, privileged_runs(kit))
    assert forged(kit) == [], forged(kit)
    es = events_under(kit.db, "public.t84_sp.")
    assert "forged" not in json.dumps([e["row_after"] for e in es]), es
    assert both_verifiers(kit.db) == (True, True)


@pytest.mark.parametrize("how", ["drop_and_add", "rename_and_add"])
@pytest.mark.parametrize("option", ["redact", "exclude"])
def test_o12_the_owner_cannot_strip_a_redaction_or_exclusion(kit, option, how):
    """The maintainer tracks with card redacted (or excluded); the owner (no audit role) drops card
    and adds it again, or renames it away and adds a new card. The application goes on writing card
    numbers into card. Safe: refused; or no later event holds the value in clear."""
    opts = {"redact_columns": ["card"]} if option == "redact" else {"exclude_columns": ["card"]}
    track_new_table(kit, "t84_rc", "id int PRIMARY KEY, card text, v int", **opts)
    kit.writer.execute("INSERT INTO public.t84_rc VALUES (1, '4111-1111', 0)")
    stmt = ("ALTER TABLE public.t84_rc DROP COLUMN card, ADD COLUMN card text" if how == "drop_and_add"
            else "ALTER TABLE public.t84_rc RENAME COLUMN card TO card_old; ALTER TABLE public.t84_rc ADD COLUMN card text")
    refused = try_write(kit.owner, stmt)
    if refused is not None:
        return
    kit.writer.execute("INSERT INTO public.t84_rc (id, card, v) VALUES (2, '5500-0000', 0)")
    kit.writer.execute("UPDATE public.t84_rc SET card = '5500-0000', v = 1")
    text = " ".join(str(r[0]) for r in kit.db.execute(
        "SELECT concat(row_before::text, row_after::text, changed::text) FROM audit.events WHERE starts_with(kind, 'public.t84_rc.')"))
    assert "5500-0000" not in text, text[:400]


def to_regtype_none(kit, name: str) -> bool:
    return kit.db.execute("SELECT to_regtype(%s) IS NULL", [name]).fetchone()[0]


def test_o11_a_new_table_under_a_renamed_tracked_tables_name_gets_no_share_of_its_prefix(kit):
    """Tracked public.t84_acct renamed to t84_old (keeps its prefix); a new public.t84_acct tracked.
    Safe: refused, or its events go under another prefix than the old table's."""
    track_new_table(kit, "t84_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("INSERT INTO public.t84_acct VALUES (1, 0, 'x')")
    kit.owner.execute("ALTER TABLE public.t84_acct RENAME TO t84_old;"
                      " CREATE TABLE public.t84_acct (id int PRIMARY KEY, v int, note text); GRANT ALL ON public.t84_acct TO app_writer")
    if try_enable(kit, "t84_acct") is not None:
        return
    prefixes = dict(kit.db.execute("SELECT relid::regclass::text, kind_prefix FROM audit.tracked_tables").fetchall())
    assert prefixes["t84_old"] != prefixes["t84_acct"], prefixes


def test_o7_range_canonical_in_a_procedural_language_is_impossible(kit):
    """A range type's canonical function written by the owner (SQL or PL/pgSQL over the shell type):
    PostgreSQL refuses. Safe: refused, no such range."""
    e0 = try_write(kit.owner, "CREATE TYPE public.t84_cr")
    if e0 is not None:  # a shell type is a base type: only a superuser makes one
        assert to_regtype_none(kit, "public.t84_cr"), e0
        return
    e1 = try_write(kit.owner, "CREATE FUNCTION public.t84_can(public.t84_cr) RETURNS public.t84_cr LANGUAGE sql AS 'SELECT $1'")
    e2 = try_write(kit.owner, "CREATE FUNCTION public.t84_can(public.t84_cr) RETURNS public.t84_cr LANGUAGE plpgsql"
                              " AS $$ BEGIN RETURN $1; END $$")
    made = kit.db.execute("SELECT count(*) FROM pg_range WHERE rngtypid = to_regtype('public.t84_cr')").fetchone()[0]
    assert e1 is not None and e2 is not None and made == 0, (e1, e2)


def test_o8_a_cast_to_json_on_a_tracked_tables_enum_is_refused(kit):
    """CREATE CAST (enum AS json) by the enum's owner after tracking. Safe: PA008, no cast."""
    mood(kit)
    track_new_table(kit, "t84_cj", "id int PRIMARY KEY, m public.t84_mood")
    err = try_write(kit.owner, """CREATE FUNCTION public.t84_cjf(public.t84_mood) RETURNS json LANGUAGE sql IMMUTABLE
                                    AS $$ SELECT '"forged"'::json $$;
                                  CREATE CAST (public.t84_mood AS json) WITH FUNCTION public.t84_cjf(public.t84_mood)""")
    n = kit.db.execute("SELECT count(*) FROM pg_cast WHERE castsource = 'public.t84_mood'::regtype").fetchone()[0]
    assert (err or "")[:5] == "PA008" and n == 0, err


def test_o9_detach_concurrently_refused_and_plain_detach_recorded(kit):
    """The owner (a maintainer) detaches a partition CONCURRENTLY, then plainly. Safe: the first
    refused (PA008), the second recorded (audit.tracked_partition_removed)."""
    kit.owner.execute("CREATE TABLE public.t84_pp (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);"
                      " CREATE TABLE public.t84_p1 PARTITION OF public.t84_pp FOR VALUES FROM (0) TO (100);"
                      " GRANT ALL ON public.t84_pp TO app_writer")
    enable_tracking(kit.maint, "public.t84_pp")
    e1 = try_write(kit.maint, "ALTER TABLE public.t84_pp DETACH PARTITION public.t84_p1 CONCURRENTLY")
    e2 = try_write(kit.maint, "ALTER TABLE public.t84_pp DETACH PARTITION public.t84_p1")
    n = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_removed'").fetchone()[0]
    assert (e1 or "")[:5] == "PA008" and e2 is None and n == 1, (e1, e2, n)


def test_o10_truncate_lookalikes_are_each_recorded(kit):
    """TRUNCATE, TRUNCATE ONLY, a DELETE of every row, TRUNCATE ... CASCADE through a foreign key
    from the owner's untracked table. Safe: each leaves its events (truncate, or delete per row)."""
    track_new_table(kit, "t84_acct", "id int PRIMARY KEY, v int, note text")
    kit.owner.execute("CREATE TABLE public.t84_ref (id int REFERENCES public.t84_acct (id))")
    kit.writer.execute("INSERT INTO public.t84_acct VALUES (1, 0, 'x'), (2, 0, 'y')")
    kit.owner.execute("TRUNCATE public.t84_acct CASCADE")
    kit.writer.execute("INSERT INTO public.t84_acct VALUES (3, 0, 'x')")
    kit.owner.execute("TRUNCATE ONLY public.t84_acct CASCADE")
    kit.writer.execute("INSERT INTO public.t84_acct VALUES (4, 0, 'x')")
    kit.owner.execute("DELETE FROM public.t84_acct")
    kit.owner.execute("TRUNCATE public.t84_ref, public.t84_acct")
    assert kinds_under(kit.db, "public.t84_acct.") == ["insert", "insert", "truncate", "insert", "truncate", "insert",
                                                 "delete", "truncate"]


# ============================================ class G ============================================

GERMAN = {
    "drop_trigger": ("owner", "DROP TRIGGER audit_capture_update ON public.t84_acct", "PA008"),
    "record_reserved": ("writer", "SELECT audit.record('audit.forged')", "PA001"),
    "intake": ("writer", "INSERT INTO audit.event_intake (kind) VALUES ('x')", "42501"),
    "enable_redact_key": ("maint", "SELECT audit.enable_tracking('public.t84_g2', redact_columns => '{id}')", "PA005"),
    "enable_array_key": ("maint", "SELECT audit.enable_tracking('public.t84_g3')", "PA008"),
    "detach_concurrently": ("maint", "ALTER TABLE public.t84_gp DETACH PARTITION public.t84_gp1 CONCURRENTLY", "PA008"),
    "bad_composite_key": ("reader", "SELECT audit.row_as_of('public.t84_gck'::regclass, '[1, 2', now())", "PA005"),
    "drop_attr_in_key": ("owner", "ALTER TYPE public.t84_gc DROP ATTRIBUTE b", "PA008"),
    "idempotency": ("writer", "SELECT audit.record('t84.x', idempotency_key => 'k1', payload => '{\"a\": 2}')", "PA004"),
}


@pytest.mark.parametrize("case", list(GERMAN))
def test_g1_refusals_keep_their_sqlstate_in_german(kit, case):
    """Every session speaks German (lc_messages de_DE.UTF-8 for the roles in this database).
    Safe: each refusal carries its SQLSTATE (checked by code, never by text), and nothing it
    refused happened."""
    dbname = kit.db.info.dbname
    roles = ["t84_owner", "app_writer", "app_maintainer", "app_reader"]
    for r in roles:
        kit.db.execute(f"ALTER ROLE {r} IN DATABASE {dbname} SET lc_messages = 'de_DE.UTF-8'")
    try:
        conns = {"owner": kit.conn("t84_owner"), "writer": kit.conn("app_writer"), "maint": kit.conn("app_maintainer"),
                 "reader": kit.conn("app_reader")}
        assert conns["writer"].execute("SHOW lc_messages").fetchone()[0].startswith("de")
        o = conns["owner"]
        o.execute("CREATE TABLE public.t84_acct (id int PRIMARY KEY, v int, note text); GRANT ALL ON public.t84_acct TO app_writer;"
                  " CREATE TABLE public.t84_g2 (id int PRIMARY KEY, j json);"
                  " CREATE TABLE public.t84_g3 (k int[] PRIMARY KEY);"
                  " CREATE TABLE public.t84_gk (k text PRIMARY KEY); GRANT ALL ON public.t84_gk TO app_writer;"
                  " CREATE TYPE public.t84_gc AS (a text, b text);"
                  " CREATE TABLE public.t84_gt (k public.t84_gc PRIMARY KEY);"
                  " CREATE TABLE public.t84_gck (a int, b int, PRIMARY KEY (a, b));"
                  " CREATE TABLE public.t84_gp (id int PRIMARY KEY) PARTITION BY RANGE (id);"
                  " CREATE TABLE public.t84_gp1 PARTITION OF public.t84_gp FOR VALUES FROM (0) TO (10)")
        for t in ("t84_acct", "t84_gk", "t84_gt", "t84_gp", "t84_gck"):
            enable_tracking(conns["maint"], f"public.{t}")
        conns["writer"].execute("SELECT audit.record('t84.x', idempotency_key => 'k1', payload => '{\"a\": 1}')")
        who, stmt, code = GERMAN[case]
        if case == "long_target":
            conns["writer"].execute("SET pgaudit_py.tenant_id = %s" % ("'" + "t" * 300 + "'"))
            code = "23514"
        before = kit.db.execute("SELECT count(*) FROM audit.events").fetchone()[0]
        got = None
        try:
            conns[who].execute(stmt)
        except psycopg.Error as e:
            got = e.sqlstate
            msg = str(e)
        after = kit.db.execute("SELECT count(*) FROM audit.events").fetchone()[0]
        assert got == code, (case, got, locals().get("msg"))
        assert after == before, (before, after)
        assert is_tracked(kit, "t84_acct") and is_tracked(kit, "t84_gp")
    finally:
        for r in roles:
            kit.db.execute(f"ALTER ROLE {r} IN DATABASE {dbname} RESET lc_messages")


def test_g2_python_errors_map_by_sqlstate_in_german(kit):
    """The Python wrappers under German messages: enable_tracking of a redacted key and record() of
    a reserved kind raise the package's classes (by SQLSTATE), not a bare error."""
    from pgaudit_py import record
    from pgaudit_py.errors import InvalidArgument, InvalidKind

    dbname = kit.db.info.dbname
    for r in ("app_writer", "app_maintainer"):
        kit.db.execute(f"ALTER ROLE {r} IN DATABASE {dbname} SET lc_messages = 'de_DE.UTF-8'")
    try:
        w, m = kit.conn("app_writer"), kit.conn("app_maintainer")
        kit.owner.execute("CREATE TABLE public.t84_g2 (id int PRIMARY KEY, j json)")
        with pytest.raises(InvalidKind):
            record(w, "audit.forged")
        with pytest.raises((InvalidArgument, psycopg.Error)) as ei:
            enable_tracking(m, "public.t84_g2", redact_columns=["id"])
        err = ei.value
        st = getattr(err, "sqlstate", None) or getattr(getattr(err, "__cause__", None), "sqlstate", None)
        assert st == "PA005", (type(err), st)
    finally:
        for r in ("app_writer", "app_maintainer"):
            kit.db.execute(f"ALTER ROLE {r} IN DATABASE {dbname} RESET lc_messages")


def test_g3_sealing_and_verifying_in_german(kit):
    """The sealer and both verifiers in a German superuser session, after captured and recorded
    events with a quarantine-worthy neighbour absent. Safe: sealed, both verifiers say good."""
    kit.db.execute("SET lc_messages = 'de_DE.UTF-8'")
    track_new_table(kit, "t84_acct", "id int PRIMARY KEY, v int, note text")
    kit.writer.execute("INSERT INTO public.t84_acct VALUES (1, 0, 'ä ö ü ß')")
    kit.writer.execute("SELECT audit.record('t84.german', payload => '{\"straße\": \"groß\"}')")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    assert quarantine_empty(kit.db)


# ============================================ class V ============================================

def _nest(depth: int, inner: str = "1") -> str:
    return '{"a":' * depth + inner + "}" * depth


RECORD_PAYLOADS = {
    "deep_object_2000": _nest(2000),
    "deep_array_3000": "[" * 3000 + "1" + "]" * 3000,
    "odd_unicode": json.dumps({"s": "\u202e\ufeff\u200b\u2028\u2029\U0010ffff\uffff\u0301e\U0001f600", "\u202ek": 1}),
    "escaped_surrogate_text": json.dumps({"s": "\\ud800"}),
    "wild_big": '{"n": 1e400}',
    "many_wild": json.dumps({"ns": ["WILD"] * 150}).replace('"WILD"', "1e400"),
    "duplicate_keys": '{"a": 1, "a": 2, "b": {"c": 1, "c": [1, 2]}}',
    "long_decimals": '{"n": 1.' + "0" * 1000 + "1}",
}


@pytest.mark.parametrize("name", list(RECORD_PAYLOADS))
def test_v1_hostile_record_payloads_seal_and_verify(kit, name):
    """record() with a hostile payload, then an ordinary event. Safe: the record is taken or refused
    with a SQLSTATE, sealing succeeds, the quarantine stays empty, and both verifiers say good."""
    payload = RECORD_PAYLOADS[name]
    err = try_write(kit.writer, "SELECT audit.record('t84.v', payload => %s::jsonb, target_id => %s)",
                    [payload, "\u202e\u0301x"])
    if err is not None:
        assert err[:2] not in ("XX",), err
    kit.writer.execute("SELECT audit.record('t84.after')")
    assert seal_all(kit.db) is None
    assert quarantine_empty(kit.db)
    assert both_verifiers(kit.db) == (True, True)
    kit.writer.execute("SELECT audit.record('t84.after2')")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)


CAPTURED_VALUES = {
    "json_nul": ("j", '"\\u0000"'),
    "json_lone_surrogate": ("j", '"\\ud800"'),
    "json_wild": ("j", "1e200000"),
    "json_dup_keys": ("j", '{"a": 1, "a": 2}'),
    "jsonb_deep": ("jb", _nest(1500)),
    "json_deep": ("j", "[" * 5000 + "]" * 5000),
    "text_huge": ("t", "y" * (2 * 1024 * 1024)),
}


@pytest.mark.parametrize("inline", [True, False])
@pytest.mark.parametrize("name", list(CAPTURED_VALUES))
def test_v2_hostile_captured_values_seal_and_verify(kit, name, inline):
    """A tracked table (inline or not) written with a hostile value in one column, then updated and
    deleted. Safe: captured (or refused with a SQLSTATE that is no internal error), sealed, the
    quarantine empty, both verifiers good, the events view readable as the reader."""
    m = ""
    if not inline:
        mood(kit)
        m = ", m public.t84_mood"
    track_new_table(kit, "t84_hv", f"id int PRIMARY KEY{m}, j json, jb jsonb, t text, f float8, n numeric, b bytea, v int")
    col, val = CAPTURED_VALUES[name]
    err = try_write(kit.writer, f"INSERT INTO public.t84_hv (id, {col}, v) VALUES (1, %s, 0)", [val])
    if err is not None:
        assert not err.startswith("XX"), err
    else:
        kit.writer.execute("UPDATE public.t84_hv SET v = 1")
        kit.writer.execute(f"UPDATE public.t84_hv SET {col} = NULL")
        kit.writer.execute(f"UPDATE public.t84_hv SET {col} = %s", [val])
        kit.writer.execute("DELETE FROM public.t84_hv")
        ks = kinds_under(kit.db, "public.t84_hv.")
        assert ks == ["insert", "update", "update", "update", "delete"], ks
    kit.reader.execute("SELECT row_before::text, row_after::text, changed::text FROM audit.events"
                       " WHERE starts_with(kind, 'public.t84_hv.')").fetchall()
    assert seal_all(kit.db) is None
    assert quarantine_empty(kit.db)
    assert both_verifiers(kit.db) == (True, True)


ODD_TEXT = ["\u0085line", "a\u2028b\u2029c", "\x1c\x1d\x1e", "\r\n", "\x7f", "\ufeff", "\U0010ffff", "e\u0301",
            "\\u0000", "\u202e", "'; --", '"}{']


def test_v5_odd_text_in_every_field_of_record(kit):
    """record() with odd text (NEL, line and paragraph separators, file separators, CR LF, DEL,
    BOM, the last code point, combining marks, a backslash-u text, RTL override) in every text
    field. Safe: taken, sealed, both verifiers good."""
    for text in ODD_TEXT:
        kit.writer.execute("SELECT audit.record(kind => 't84.odd', tenant_id => %s, actor_type => %s, actor_id => %s,"
                           " target_type => %s, target_id => %s, payload => %s::jsonb, correlation_id => %s,"
                           " idempotency_key => %s)", [text, "user" + text, text, text, text, json.dumps({text: text}), text, text])
    assert seal_all(kit.db) is None
    assert quarantine_empty(kit.db)
    assert both_verifiers(kit.db) == (True, True)


@pytest.mark.parametrize("num", ["0e-500", "1." + "0" * 500 + "1", "-1e-401", "1E+400"])
def test_v6_many_wild_numbers_in_an_image_show_alike_pending_and_sealed(kit, num):
    """A jsonb column holding 120 numbers of a wild form (zero with 500 decimals, 1 with 501, below
    1e-400, 1E+400), tamed by the sealer and by the events view. Safe: the reader sees the same
    images before and after sealing; sealed, both verifiers good."""
    track_new_table(kit, "t84_wn", "id int PRIMARY KEY, jb jsonb, v int")
    kit.writer.execute("INSERT INTO public.t84_wn VALUES (1, %s::jsonb, 0)", ["[" + ", ".join([num] * 120) + "]"])
    kit.writer.execute("UPDATE public.t84_wn SET v = 1")
    q = ("SELECT kind, row_before::text, row_after::text, changed::text, payload::text FROM audit.events"
         " WHERE starts_with(kind, 'public.t84_wn.') ORDER BY id")
    before = kit.reader.execute(q).fetchall()
    assert seal_all(kit.db) is None
    after = kit.reader.execute(q).fetchall()
    assert before == after
    assert quarantine_empty(kit.db)
    assert both_verifiers(kit.db) == (True, True)


def test_v3_a_hostile_value_never_makes_verification_fail_later(kit):
    """Hostile values of every kind in one table across many statements and seals, with records in
    between; then ordinary events. Safe: each seal succeeds and both verifiers say good each time."""
    track_new_table(kit, "t84_mix", "id int PRIMARY KEY, j json, jb jsonb, t text")
    for i, (name, (col, val)) in enumerate(CAPTURED_VALUES.items()):
        if col not in ("j", "jb", "t") or name in ("text_huge",):
            continue
        try_write(kit.writer, f"INSERT INTO public.t84_mix (id, {col}) VALUES (%s, %s)", [i, val])
        try_write(kit.writer, "SELECT audit.record('t84.mix', payload => %s::jsonb)", [RECORD_PAYLOADS["duplicate_keys"]])
        if i % 4 == 0:
            assert seal_all(kit.db) is None
    kit.writer.execute("UPDATE public.t84_mix SET t = coalesce(t, '') || 'z'")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    assert quarantine_empty(kit.db)


@pytest.mark.parametrize("key", ["\u202e1", "e\u0301"])
def test_v4_odd_unicode_keys_name_rows_apart_and_verify(kit, key):
    """A text key of odd Unicode (RTL override, combining vs precomposed, BOM, a backslash-u text, a
    line separator) beside the plain look-alike. Safe: distinct names as written; history finds the
    row by its own spelling; sealed and verified."""
    track_new_table(kit, "t84_uk", "k text PRIMARY KEY, v int")
    plain = key.replace("\u202e", "").replace("\u0301", "").replace("\ufeff", "").replace("\u2028", "")
    kit.writer.execute("INSERT INTO public.t84_uk VALUES (%s, 0), (%s, 0)", [key, plain + "_"])
    names = sorted(e["target_id"] for e in events_under(kit.db, "public.t84_uk.insert"))
    assert names == sorted([key, plain + "_"]), names
    hist = [r[0] for r in kit.reader.execute("SELECT kind FROM audit.row_history('public.t84_uk'::regclass, %s)", [key])]
    assert hist == ["public.t84_uk.insert"], hist
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
