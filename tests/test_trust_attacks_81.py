"""An eighty-first attacker's trial: against ec57192 (a tracked table's tenant column or key holding
json: refused by enable_tracking (PA005) and by the event triggers after a schema change (PA008),
named by status where tracked before, and its capture refusing a marker there (_json_named); the
fallback imaging of rows jsonb cannot hold, _json_row_image by one SQL statement).

Classes (test names carry the letter):
  J. json brought into a tracked table's tenant column or key after tracking, by every route a
     composite can be changed by: nested composites, arrays, domains, a table's, a child's, a
     partition's, a view's, a foreign table's and a typed table's row type, primary keys replaced,
     columns retyped and renamed.
  M. markers forged by the writer: look-alikes in grandfathered json tenants and keys, in ordinary
     json and jsonb columns, in jsonb and text keys and tenants.
  T. the tokenizer and the fallback on hostile json text.
  O. the owner against the capture: triggers, settings, functions, messages in German.
  V. seal, both verifiers, nothing quarantined.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when
an honest use is refused or imaged wrong). Roles made here: t81_owner, t81_mallory
(table_owner_kit); all dropped afterwards.
"""

from __future__ import annotations

import json

import pytest
from trial_helpers import (
    both_verifiers,
    events_under,
    json_marker,
    named_in_status,
    problems_of,
    quarantine_empty,
    reinstall,
    seal_all,
    table_owner_kit,
    track_new_table,
    try_write,
)

from pgaudit_py import enable_tracking


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t81") as k:
        yield k


NUL = '"\\u0000"'
SUR = '"\\ud800"'
BIG = "1e200000"


def mood(kit):
    kit.owner.execute("CREATE TYPE public.t81_mood AS ENUM ('ok', 'sad')")


def names_marked(db, prefix: str) -> list:
    return [(e["tenant_id"], e["target_id"]) for e in events_under(db, prefix)
            if "$omitted" in (e["tenant_id"] or "") or "$omitted" in (e["target_id"] or "")]


def same(db, a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return db.execute("SELECT %s::jsonb = %s::jsonb", [a, b]).fetchone()[0]


def fdw(kit):
    """A foreign server the DBA lets the table owner use (a wrapper with no handler: no data)."""
    kit.db.execute("CREATE FOREIGN DATA WRAPPER t81_fdw; CREATE SERVER t81_srv FOREIGN DATA WRAPPER t81_fdw;"
                   "GRANT USAGE ON FOREIGN SERVER t81_srv TO t81_owner")


# ============================================ class J ============================================

# route: (setup, type of the key or tenant column, the change that brings json in, a value with \u0000)
ROUTES = {
    "direct": ("CREATE TYPE public.t81_c AS (a text)", "public.t81_c",
               "ALTER TYPE public.t81_c ADD ATTRIBUTE j json", "ROW('A', %s::json)::public.t81_c"),
    "nested": ("CREATE TYPE public.t81_i AS (a text); CREATE TYPE public.t81_o AS (a text, i public.t81_i)", "public.t81_o",
               "ALTER TYPE public.t81_i ADD ATTRIBUTE j json", "ROW('A', ROW('B', %s::json)::public.t81_i)::public.t81_o"),
    "array": ("CREATE TYPE public.t81_c AS (a text)", "public.t81_c[]",
              "ALTER TYPE public.t81_c ADD ATTRIBUTE j json", "ARRAY[ROW('A', %s::json)::public.t81_c]"),
    "domain": ("CREATE TYPE public.t81_c AS (a text); CREATE DOMAIN public.t81_d AS public.t81_c", "public.t81_d",
               "ALTER TYPE public.t81_c ADD ATTRIBUTE j json", "ROW('A', %s::json)::public.t81_c::public.t81_d"),
    "domain_array": ("CREATE TYPE public.t81_c AS (a text); CREATE DOMAIN public.t81_da AS public.t81_c[]", "public.t81_da",
                     "ALTER TYPE public.t81_c ADD ATTRIBUTE j json", "ARRAY[ROW('A', %s::json)::public.t81_c]::public.t81_da"),
    "array_in_composite": ("CREATE TYPE public.t81_i AS (a text); CREATE TYPE public.t81_o AS (a text, i public.t81_i[])",
                           "public.t81_o", "ALTER TYPE public.t81_i ADD ATTRIBUTE j json",
                           "ROW('A', ARRAY[ROW('B', %s::json)::public.t81_i])::public.t81_o"),
    "attr_domain_json": ("CREATE TYPE public.t81_c AS (a text); CREATE DOMAIN public.t81_dj AS json", "public.t81_c",
                         "ALTER TYPE public.t81_c ADD ATTRIBUTE j public.t81_dj",
                         "ROW('A', %s::json::public.t81_dj)::public.t81_c"),
    "attr_json_array": ("CREATE TYPE public.t81_c AS (a text)", "public.t81_c",
                        "ALTER TYPE public.t81_c ADD ATTRIBUTE j json[]", "ROW('A', ARRAY[%s::json])::public.t81_c"),
    "attr_composite_of_json": ("CREATE TYPE public.t81_c AS (a text); CREATE TYPE public.t81_hj AS (j json)", "public.t81_c",
                               "ALTER TYPE public.t81_c ADD ATTRIBUTE h public.t81_hj",
                               "ROW('A', ROW(%s::json)::public.t81_hj)::public.t81_c"),
    "table_rowtype": ("CREATE TABLE public.t81_rt (a text)", "public.t81_rt",
                      "ALTER TABLE public.t81_rt ADD COLUMN j json", "ROW('A', %s::json)::public.t81_rt"),
    "child_rowtype": ("CREATE TABLE public.t81_par (a text); CREATE TABLE public.t81_kid () INHERITS (public.t81_par)",
                      "public.t81_kid", "ALTER TABLE public.t81_par ADD COLUMN j json", "ROW('A', %s::json)::public.t81_kid"),
    "partition_rowtype": ("CREATE TABLE public.t81_pp (a text) PARTITION BY LIST (a);"
                          " CREATE TABLE public.t81_pk PARTITION OF public.t81_pp DEFAULT", "public.t81_pk",
                          "ALTER TABLE public.t81_pp ADD COLUMN j json", "ROW('A', %s::json)::public.t81_pk"),
    "view_rowtype": ("CREATE VIEW public.t81_v AS SELECT 'x'::text AS a", "public.t81_v",
                     "CREATE OR REPLACE VIEW public.t81_v AS SELECT 'x'::text AS a, NULL::json AS j",
                     "ROW('A', %s::json)::public.t81_v"),
    "view_in_composite": ("CREATE VIEW public.t81_v AS SELECT 'x'::text AS a; CREATE TYPE public.t81_o AS (a text, v public.t81_v)",
                          "public.t81_o", "CREATE OR REPLACE VIEW public.t81_v AS SELECT 'x'::text AS a, NULL::json AS j",
                          "ROW('A', ROW('B', %s::json)::public.t81_v)::public.t81_o"),
    "typed_table": ("CREATE TYPE public.t81_c AS (a text); CREATE TABLE public.t81_tt OF public.t81_c", "public.t81_tt",
                    "ALTER TYPE public.t81_c ADD ATTRIBUTE j json CASCADE", "ROW('A', %s::json)::public.t81_tt"),
    "do_block": ("CREATE TYPE public.t81_c AS (a text)", "public.t81_c",
                 "DO $$ BEGIN EXECUTE 'ALTER TYPE public.t81_c ADD ATTRIBUTE j json'; END $$",
                 "ROW('A', %s::json)::public.t81_c"),
    "foreign_direct": ("CREATE FOREIGN TABLE public.t81_ft (a text) SERVER t81_srv", "public.t81_ft",
                       "ALTER FOREIGN TABLE public.t81_ft ADD COLUMN j json", "ROW('A', %s::json)::public.t81_ft"),
    "foreign_child": ("CREATE TABLE public.t81_par (a text); CREATE FOREIGN TABLE public.t81_ft () INHERITS (public.t81_par)"
                      " SERVER t81_srv", "public.t81_ft",
                      "ALTER TABLE public.t81_par ADD COLUMN j json", "ROW('A', %s::json)::public.t81_ft"),
    "foreign_grandchild": ("CREATE TABLE public.t81_par (a text); CREATE TABLE public.t81_kid () INHERITS (public.t81_par);"
                           " CREATE FOREIGN TABLE public.t81_ft () INHERITS (public.t81_kid) SERVER t81_srv", "public.t81_ft",
                           "ALTER TABLE public.t81_par ADD COLUMN j json", "ROW('A', %s::json)::public.t81_ft"),
    "foreign_child_retype": ("CREATE TABLE public.t81_par (a text); CREATE FOREIGN TABLE public.t81_ft () INHERITS (public.t81_par)"
                             " SERVER t81_srv", "public.t81_ft",
                             "ALTER TABLE public.t81_par ALTER COLUMN a TYPE json USING to_json(a)", "ROW(%s::json)::public.t81_ft"),
    "foreign_partition": ("CREATE TABLE public.t81_pp (a text) PARTITION BY LIST (a);"
                          " CREATE FOREIGN TABLE public.t81_fp PARTITION OF public.t81_pp DEFAULT SERVER t81_srv",
                          "public.t81_fp", "ALTER TABLE public.t81_pp ADD COLUMN j json", "ROW('A', %s::json)::public.t81_fp"),
    "foreign_child_in_composite": ("CREATE TABLE public.t81_par (a text); CREATE FOREIGN TABLE public.t81_ft ()"
                                   " INHERITS (public.t81_par) SERVER t81_srv; CREATE TYPE public.t81_o AS (a text, f public.t81_ft)",
                                   "public.t81_o", "ALTER TABLE public.t81_par ADD COLUMN j json",
                                   "ROW('A', ROW('B', %s::json)::public.t81_ft)::public.t81_o"),
}


def _route_table(kit, route: str, via: str) -> tuple[str, str]:
    setup, typ, alter, value = ROUTES[route]
    mood(kit)
    if "t81_srv" in setup:
        fdw(kit)
    kit.owner.execute(setup)
    if via == "key":
        track_new_table(kit, "t81_jt", f"id int, m public.t81_mood, k {typ}, PRIMARY KEY (k)")
    else:
        track_new_table(kit, "t81_jt", f"id int PRIMARY KEY, m public.t81_mood, k {typ}", tenant_column="k")
    return alter, value


# A key with an array is refused (PA008), and a tenant column with one since trial 84 (k2: PA005).
ARRAY_ROUTES = ("array", "domain_array", "array_in_composite")


@pytest.mark.parametrize(("route", "via"), [(r, v) for r in ROUTES for v in ("key", "tenant") if r not in ARRAY_ROUTES])
def test_j1_json_brought_into_a_tenant_or_key_after_tracking(kit, route, via):
    """The tenant column (or the primary key) of a tracked table is of a type holding no json; a
    schema change by this route makes it hold json; a writer stores \\u0000 there (a marker in the
    image). Safe: the change is refused; or else status names the table, and the write is refused
    (no event filed under a marker's text)."""
    alter, value = _route_table(kit, route, via)
    refused = try_write(kit.owner, alter)
    if refused is not None:
        return
    err = try_write(kit.writer, f"INSERT INTO public.t81_jt (id, m, k) VALUES (1, 'ok', {value})", [NUL])
    marked = names_marked(kit.db, "public.t81_jt.")
    assert (named_in_status(kit, "t81_jt"), err is not None, marked) == (True, True, []), (err, marked)


KEY_TYPES = {
    "composite": ("CREATE TYPE public.t81_hj AS (a text, j json)", "public.t81_hj"),
    "array_of_composite": ("CREATE TYPE public.t81_hj AS (a text, j json)", "public.t81_hj[]"),
    "domain_over_array": ("CREATE TYPE public.t81_hj AS (a text, j json); CREATE DOMAIN public.t81_dh AS public.t81_hj[]",
                          "public.t81_dh"),
    "nested": ("CREATE TYPE public.t81_hj AS (a text, j json); CREATE TYPE public.t81_o AS (a text, h public.t81_hj)",
               "public.t81_o"),
    "view_rowtype": ("CREATE VIEW public.t81_v AS SELECT 'x'::text AS a, NULL::json AS j", "public.t81_v"),
    "table_rowtype": ("CREATE TABLE public.t81_rt (a text, j json)", "public.t81_rt"),
}


@pytest.mark.parametrize("via", ["key", "tenant"])
@pytest.mark.parametrize("kind", list(KEY_TYPES))
def test_j2_enable_tracking_refuses_a_key_or_tenant_holding_json(kit, kind, via):
    """A primary key (or tenant column) of a type holding json at any depth. Safe: PA005."""
    setup, typ = KEY_TYPES[kind]
    kit.owner.execute(setup)
    if via == "key":
        cols = f"id int, k {typ}, PRIMARY KEY (k)"
        opts = {}
    else:
        cols = f"id int PRIMARY KEY, k {typ}"
        opts = {"tenant_column": "k"}
    kit.owner.execute(f"CREATE TABLE public.t81_e ({cols})")
    err = try_write(kit.maint, "SELECT audit.enable_tracking('public.t81_e'::regclass, tenant_column => %s)",
                    [opts.get("tenant_column")])
    assert (err or "")[:5] in (("PA005", "PA008") if "array" in kind and via == "key" else ("PA005",)), err


PK_CHANGES = {
    "swap_in_one": ["ALTER TABLE public.t81_pk DROP CONSTRAINT t81_pk_pkey, ADD PRIMARY KEY (c)"],
    "drop_then_add": ["ALTER TABLE public.t81_pk DROP CONSTRAINT t81_pk_pkey", "ALTER TABLE public.t81_pk ADD PRIMARY KEY (c)"],
    "using_index": ["CREATE UNIQUE INDEX t81_pk_c ON public.t81_pk (c)",
                    "ALTER TABLE public.t81_pk DROP CONSTRAINT t81_pk_pkey,"
                    " ADD CONSTRAINT t81_pk_c PRIMARY KEY USING INDEX t81_pk_c"],
    "composite_key_grows": ["ALTER TABLE public.t81_pk DROP CONSTRAINT t81_pk_pkey, ADD PRIMARY KEY (id, c)"],
    "key_retyped": ["ALTER TABLE public.t81_pk ALTER COLUMN id TYPE public.t81_hj USING ROW(id::text, NULL)::public.t81_hj"],
}


@pytest.mark.parametrize("change", list(PK_CHANGES))
def test_j3_a_primary_key_replaced_by_one_holding_json(kit, change):
    """A tracked table keyed by id, with a column c of a composite holding json; its primary key is
    replaced by one on c (or retyped to it). Safe: refused; or status names it and a write whose key
    holds \\u0000 is refused."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t81_hj AS (a text, j json)")
    track_new_table(kit, "t81_pk", "id int PRIMARY KEY, m public.t81_mood, c public.t81_hj")
    refused = None
    for stmt in PK_CHANGES[change]:
        refused = refused or try_write(kit.owner, stmt)
    if refused is not None:
        return
    cols = "(m, c, id)" if change != "key_retyped" else "(m, c, id)"
    idv = "2" if change != "key_retyped" else "ROW('B', %s::json)::public.t81_hj"
    params = [NUL, NUL] if change == "key_retyped" else [NUL]
    err = try_write(kit.writer, f"INSERT INTO public.t81_pk {cols} VALUES ('ok', ROW('A', %s::json)::public.t81_hj, {idv})",
                    params)
    marked = names_marked(kit.db, "public.t81_pk.")
    assert (named_in_status(kit, "t81_pk"), err is not None, marked) == (True, True, []), (refused, err, marked)


@pytest.mark.parametrize("frm", ["text", "t81_c"])
def test_j4_a_tenant_column_retyped_to_json(kit, frm):
    """The tenant column retyped to json (from text, or a composite to one holding json; from jsonb
    until trial 84 refused a jsonb tenant column). Safe: refused; or status names it and a marker
    tenant is refused."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t81_c AS (a text); CREATE TYPE public.t81_cj AS (a text, j json)")
    typ = {"text": "text", "jsonb": "jsonb", "t81_c": "public.t81_c"}[frm]
    to = {"text": "json USING to_json(tc)", "jsonb": "json USING tc::json",
          "t81_c": "public.t81_cj USING ROW((tc).a, NULL)::public.t81_cj"}[frm]
    track_new_table(kit, "t81_rt", f"id int PRIMARY KEY, m public.t81_mood, tc {typ}", tenant_column="tc")
    refused = try_write(kit.owner, f"ALTER TABLE public.t81_rt ALTER COLUMN tc TYPE {to}")
    if refused is not None:
        return
    val = "%s::json" if frm != "t81_c" else "ROW('A', %s::json)::public.t81_cj"
    err = try_write(kit.writer, f"INSERT INTO public.t81_rt VALUES (1, 'ok', {val})", [NUL])
    marked = names_marked(kit.db, "public.t81_rt.")
    assert (named_in_status(kit, "t81_rt"), err is not None, marked) == (True, True, []), (err, marked)


def test_j5_a_json_column_renamed_to_the_tenant_columns_name(kit):
    """A text tenant column tc and a json column tj; tc renamed away and tj renamed tc. Safe: the
    tenant stays the text column (by number): a row's tenant is its text, never a marker."""
    mood(kit)
    track_new_table(kit, "t81_sw", "id int PRIMARY KEY, m public.t81_mood, tc text, tj json", tenant_column="tc")
    refused = try_write(kit.owner, "ALTER TABLE public.t81_sw RENAME COLUMN tc TO tx; ALTER TABLE public.t81_sw RENAME COLUMN tj TO tc")
    if refused is None:
        err = try_write(kit.writer, "INSERT INTO public.t81_sw (id, m, tx, tc) VALUES (1, 'ok', 'acme', %s)", [NUL])
    else:
        err = try_write(kit.writer, "INSERT INTO public.t81_sw (id, m, tc, tj) VALUES (1, 'ok', 'acme', %s)", [NUL])
    assert err is None
    assert [e["tenant_id"] for e in events_under(kit.db, "public.t81_sw.insert")] == ["acme"]


def test_j6_a_partition_attached_whose_rows_carry_json_in_the_key_composite(kit):
    """A tracked partitioned table keyed by a composite of a table's row type; a new partition made
    and attached, then the row type's table given a json column. Safe: refused; or named and a
    marker key refused in the partition too."""
    mood(kit)
    kit.owner.execute("CREATE TABLE public.t81_rt (a text)")
    kit.owner.execute("CREATE TABLE public.t81_pt (id int, m public.t81_mood, k public.t81_rt, PRIMARY KEY (k, id))"
                      " PARTITION BY RANGE (id); CREATE TABLE public.t81_p1 PARTITION OF public.t81_pt FOR VALUES FROM (0) TO (10);"
                      " GRANT ALL ON public.t81_pt TO app_writer")
    enable_tracking(kit.maint, "public.t81_pt")
    kit.owner.execute("CREATE TABLE public.t81_p2 (LIKE public.t81_pt); GRANT ALL ON public.t81_p2 TO app_writer")
    a = try_write(kit.owner, "ALTER TABLE public.t81_pt ATTACH PARTITION public.t81_p2 FOR VALUES FROM (10) TO (20)")
    refused = try_write(kit.owner, "ALTER TABLE public.t81_rt ADD COLUMN j json")
    if refused is not None:
        return
    err = try_write(kit.writer, "INSERT INTO public.t81_pt VALUES (11, 'ok', ROW('A', %s::json)::public.t81_rt)", [NUL])
    marked = names_marked(kit.db, "public.t81_pt.")
    assert (named_in_status(kit, "t81_pt"), err is not None, marked) == (True, True, []), (a, err, marked)


@pytest.mark.parametrize("change", ["RENAME COLUMN a TO b", "DROP COLUMN a"])
@pytest.mark.parametrize("child", ["table", "foreign"])
def test_j7_a_key_composite_renamed_through_its_parent_is_recorded(kit, child, change):
    """The key is of a child table's row type (a plain or a foreign inheritance child); the parent's
    column is renamed, which renames the child's (every stored key now reads differently). Safe: an
    audit.tracked_type_altered event names the tracked table, as for any type it is made of."""
    mood(kit)
    fdw(kit)
    make = ("CREATE TABLE public.t81_kid () INHERITS (public.t81_par)" if child == "table"
            else "CREATE FOREIGN TABLE public.t81_kid () INHERITS (public.t81_par) SERVER t81_srv")
    kit.owner.execute(f"CREATE TABLE public.t81_par (a text, c text); {make}")
    track_new_table(kit, "t81_rk", "id int, m public.t81_mood, k public.t81_kid, PRIMARY KEY (k)")
    kit.writer.execute("INSERT INTO public.t81_rk VALUES (1, 'ok', ROW('A', 'x')::public.t81_kid),"
                       " (2, 'ok', ROW('B', 'x')::public.t81_kid)")
    refused = try_write(kit.owner, f"ALTER TABLE public.t81_par {change}")
    if refused is not None:
        return
    kit.writer.execute("UPDATE public.t81_rk SET m = 'sad'")
    recorded = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_type_altered'"
                              " AND payload::text LIKE '%%t81_rk%%'").fetchone()[0]
    targets = [e["target_id"] for e in events_under(kit.db, "public.t81_rk.")]
    assert recorded >= 1, targets


def test_j9_replica_identity_on_a_json_holding_index_does_not_name_rows(kit):
    """A tracked table without a primary key (target NULL); REPLICA IDENTITY set to a unique index on
    a composite holding json, and \u0000 written there. Safe: the key does not follow it (no
    target_id is a marker), and the write is captured."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t81_hj AS (a text, j json)")
    track_new_table(kit, "t81_ri", "id int NOT NULL, m public.t81_mood, c public.t81_hj NOT NULL")
    kit.owner.execute("CREATE UNIQUE INDEX t81_ri_c ON public.t81_ri (c)")
    refused = try_write(kit.owner, "ALTER TABLE public.t81_ri REPLICA IDENTITY USING INDEX t81_ri_c")
    err = try_write(kit.writer, "INSERT INTO public.t81_ri VALUES (1, 'ok', ROW('A', %s::json)::public.t81_hj)", [NUL])
    assert (err, names_marked(kit.db, "public.t81_ri."), len(events_under(kit.db, "public.t81_ri.insert"))) == (None, [], 1), refused


@pytest.mark.parametrize("route", ["type", "table_rowtype", "child_rowtype"])
def test_j10_an_attribute_dropped_from_a_key_composite_merges_two_rows_names(kit, route):
    """The primary key is a composite (a text, c text); two rows ('A', 'x') and ('B', 'x'); then the
    attribute a is dropped from the composite (ALTER TYPE, ALTER TABLE of the row type's table, or of
    a child's parent). Every stored key now reads {"c": "x"}. Safe: the drop is refused; or the two
    rows' later events still carry distinct target_ids (never two rows under one name, the reason
    array keys are refused)."""
    mood(kit)
    setup, typ, drop = {
        "type": ("CREATE TYPE public.t81_k AS (a text, c text)", "public.t81_k", "ALTER TYPE public.t81_k DROP ATTRIBUTE a"),
        "table_rowtype": ("CREATE TABLE public.t81_k (a text, c text)", "public.t81_k", "ALTER TABLE public.t81_k DROP COLUMN a"),
        "child_rowtype": ("CREATE TABLE public.t81_kp (a text, c text); CREATE TABLE public.t81_k () INHERITS (public.t81_kp)",
                          "public.t81_k", "ALTER TABLE public.t81_kp DROP COLUMN a"),
    }[route]
    kit.owner.execute(setup)
    track_new_table(kit, "t81_mg", f"id int, m public.t81_mood, k {typ}, PRIMARY KEY (k)")
    kit.writer.execute(f"INSERT INTO public.t81_mg VALUES (1, 'ok', ROW('A', 'x')::{typ}), (2, 'ok', ROW('B', 'x')::{typ})")
    refused = try_write(kit.owner, drop)
    if refused is not None:
        return
    kit.writer.execute("UPDATE public.t81_mg SET m = 'sad'")
    after = [e["target_id"] for e in events_under(kit.db, "public.t81_mg.update")]
    assert len(set(after)) == 2, after


# ============================================ class M ============================================

def _grandfather(kit, ddl: str) -> None:
    """What a table tracked before the refusals looks like: the change made while the schema-change
    trigger is off (as a superuser could), then the installer again (an upgrade), which regenerates
    every capture function."""
    kit.db.execute("ALTER EVENT TRIGGER audit_ddl_end DISABLE; ALTER EVENT TRIGGER audit_table_rewrite DISABLE")
    try:
        kit.owner.execute(ddl)
    finally:
        kit.db.execute("ALTER EVENT TRIGGER audit_ddl_end ENABLE; ALTER EVENT TRIGGER audit_table_rewrite ENABLE")
    assert reinstall(kit.db) is None


LOOKALIKE = json.dumps(json_marker("nothing"))


@pytest.mark.parametrize("inline", [True, False])
def test_m1_a_grandfathered_json_tenant_refuses_markers_and_lookalikes(kit, inline):
    """A json tenant column from before the refusal (inline table, and one with an enum). Safe: status
    names it; an honest tenant "acme" is filed as acme; a writer's look-alike and a real marker
    (\\u0000) are refused (check_violation), nothing filed under them."""
    extra = "" if inline else ", m public.t81_mood DEFAULT 'ok'"
    if not inline:
        mood(kit)
    track_new_table(kit, "t81_gf", f"id int PRIMARY KEY, tc text{extra}", tenant_column="tc")
    _grandfather(kit, "ALTER TABLE public.t81_gf ALTER COLUMN tc TYPE json USING to_json(tc)")
    assert named_in_status(kit, "t81_gf")
    honest = try_write(kit.writer, "INSERT INTO public.t81_gf (id, tc) VALUES (1, '\"acme\"')")
    look = try_write(kit.writer, "INSERT INTO public.t81_gf (id, tc) VALUES (2, %s)", [LOOKALIKE])
    real = try_write(kit.writer, "INSERT INTO public.t81_gf (id, tc) VALUES (3, %s)", [NUL])
    got = [e["tenant_id"] for e in events_under(kit.db, "public.t81_gf.insert")]
    assert (honest, (look or "")[:5], (real or "")[:5], got) == (None, "23514", "23514", ["acme"])


def test_m2_a_grandfathered_key_composite_holding_json(kit):
    """A primary key of a composite given a json attribute before the refusal. Safe: status names it;
    a key whose json attribute holds a look-alike is filed under its own text (the writer's value,
    not a marker of the whole key); a key holding \\u0000 (the whole key a marker) is refused."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t81_c AS (a text)")
    track_new_table(kit, "t81_gk", "id int, m public.t81_mood, k public.t81_c, PRIMARY KEY (k)")
    _grandfather(kit, "ALTER TYPE public.t81_c ADD ATTRIBUTE j json")
    assert named_in_status(kit, "t81_gk")
    look = try_write(kit.writer, "INSERT INTO public.t81_gk VALUES (1, 'ok', ROW('A', %s::json)::public.t81_c)", [LOOKALIKE])
    real = try_write(kit.writer, "INSERT INTO public.t81_gk VALUES (2, 'ok', ROW('B', %s::json)::public.t81_c)", [NUL])
    outer = try_write(kit.writer, "INSERT INTO public.t81_gk VALUES (3, 'ok', ROW('C', '1')::public.t81_c)")
    got = [e["target_id"] for e in events_under(kit.db, "public.t81_gk.insert")]
    want_look = kit.db.execute("SELECT to_jsonb(ROW('A', %s::json)::public.t81_c)::text", [LOOKALIKE]).fetchone()[0]
    assert (look, (real or "")[:5], outer) == (None, "23514", None)
    assert sorted(got) == sorted([want_look, '{"a": "C", "j": 1}'])


def test_m3_lookalike_in_an_ordinary_jsonb_column_of_a_fallback_statement(kit):
    """A non-inline table; one statement: row 1's jsonb column holds a writer's look-alike marker, row
    2's json column holds \\u0000. Safe: row 1 imaged exactly (the look-alike as written), not named
    in payload.omitted; row 2's j replaced and named; row_as_of gives row 1's look-alike back."""
    mood(kit)
    track_new_table(kit, "t81_la", "id int PRIMARY KEY, m public.t81_mood, b jsonb, j json")
    err = try_write(kit.writer, "INSERT INTO public.t81_la VALUES (1, 'ok', %s, '1'), (2, 'ok', '2', %s)", [LOOKALIKE, NUL])
    assert err is None
    at = kit.tick()
    got = {e["target_id"]: e for e in events_under(kit.db, "public.t81_la.insert")}
    r1 = json.loads(got["1"]["row_after"])
    r2 = json.loads(got["2"]["row_after"])
    assert (r1["b"], got["1"]["payload"].get("omitted")) == (json.loads(LOOKALIKE), None)
    assert (r2["j"], got["2"]["payload"].get("omitted")) == (json_marker(NUL), {"row_after": ["j"]})
    asof = kit.as_of("public.t81_la", "1", at)
    assert (asof or {}).get("b") == json.loads(LOOKALIKE), asof


def test_m4_lookalike_in_an_inline_json_column(kit):
    """An inline table (built-in types) with a json column: a look-alike, then a real \\u0000, then an
    UPDATE between them. Safe: the look-alike not named; the real one named; changed shows both."""
    track_new_table(kit, "t81_li", "id int PRIMARY KEY, j json")
    kit.writer.execute("INSERT INTO public.t81_li VALUES (1, %s)", [json.dumps(json_marker(NUL))])
    kit.writer.execute("UPDATE public.t81_li SET j = %s", [NUL])
    e = events_under(kit.db, "public.t81_li.")
    assert [x["kind"] for x in e] == ["public.t81_li.insert", "public.t81_li.update"]
    assert e[0]["payload"].get("omitted") is None
    assert e[1]["payload"].get("omitted") == {"row_after": ["j"]}, e[1]["payload"]
    # The writer's look-alike and the capture's marker of the same text are equal images: only the
    # payload tells them apart (docs/capture.md), and an UPDATE between them must not be skipped.
    assert json.loads(e[1]["row_before"])["j"] == json.loads(e[1]["row_after"])["j"] == json_marker(NUL)


@pytest.mark.parametrize("via", ["key", "tenant"])
def test_m5_a_jsonb_or_text_key_and_tenant_holding_a_lookalike(kit, via):
    """A jsonb key (or tenant) and a text tenant holding a look-alike: honest values. Safe: written,
    named by their own text, row_history finds them."""
    mood(kit)
    if via == "key":
        track_new_table(kit, "t81_jk", "k jsonb PRIMARY KEY, m public.t81_mood, t text")
        err = try_write(kit.writer, "INSERT INTO public.t81_jk VALUES (%s, 'ok', 'x')", [LOOKALIKE])
        want = kit.db.execute("SELECT %s::jsonb::text", [LOOKALIKE]).fetchone()[0]
        assert err is None
        assert [e["target_id"] for e in events_under(kit.db, "public.t81_jk.insert")] == [want]
        assert kit.history("public.t81_jk", want) == ["public.t81_jk.insert"]
    else:
        track_new_table(kit, "t81_jk", "id int PRIMARY KEY, m public.t81_mood, k text", tenant_column="k")
        err = try_write(kit.writer, "INSERT INTO public.t81_jk VALUES (1, 'ok', %s)", [LOOKALIKE])
        assert err is None
        assert [e["tenant_id"] for e in events_under(kit.db, "public.t81_jk.insert")] == [LOOKALIKE]


def test_m6_a_composite_tenant_with_an_attribute_named_omitted(kit):
    """A tenant column of a composite with an attribute named "$omitted" (no json): its image reads as
    a marker but is an honest value. Safe: written, filed under its to_jsonb text."""
    mood(kit)
    kit.owner.execute('CREATE TYPE public.t81_om AS ("$omitted" text)')
    track_new_table(kit, "t81_omt", "id int PRIMARY KEY, m public.t81_mood, tc public.t81_om", tenant_column="tc")
    err = try_write(kit.writer, "INSERT INTO public.t81_omt VALUES (1, 'ok', ROW('acme')::public.t81_om)")
    assert err is None
    assert [e["tenant_id"] for e in events_under(kit.db, "public.t81_omt.insert")] == ['{"$omitted": "acme"}']


def test_m7_row_history_keeps_two_rows_whose_json_attribute_differs_only_as_refused(kit):
    """A grandfathered json-holding composite key: two rows whose keys differ only in a json
    attribute jsonb refuses (\\u0000 vs \\ud800). Safe: both refused, never both filed under one
    marker-derived name."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t81_c AS (a text)")
    track_new_table(kit, "t81_g2", "id int, m public.t81_mood, k public.t81_c, PRIMARY KEY (k)")
    _grandfather(kit, "ALTER TYPE public.t81_c ADD ATTRIBUTE j json")
    e1 = try_write(kit.writer, "INSERT INTO public.t81_g2 VALUES (1, 'ok', ROW('A', %s::json)::public.t81_c)", [NUL])
    e2 = try_write(kit.writer, "INSERT INTO public.t81_g2 VALUES (2, 'ok', ROW('B', %s::json)::public.t81_c)", [SUR])
    assert ((e1 or "")[:5], (e2 or "")[:5], events_under(kit.db, "public.t81_g2.")) == ("23514", "23514", [])


def test_m8_a_lookalike_replaced_by_the_value_it_imitates_is_an_update(kit):
    """A non-inline table with an excluded column and skip_noop_updates: the writer stores in j the
    exact look-alike of the marker of \u0000, then updates j to \u0000 itself. The images are
    equal (the marker equals the look-alike), the stored values are not. Safe: the second UPDATE is
    an event (its payload names j as replaced) - else the log's last image of the row is the
    writer's object while the table holds another value, with no event."""
    mood(kit)
    track_new_table(kit, "t81_nu", "id int PRIMARY KEY, m public.t81_mood, j json, x text", exclude_columns=["x"])
    kit.writer.execute("INSERT INTO public.t81_nu VALUES (1, 'ok', %s, 'a')", [json.dumps(json_marker(NUL))])
    kit.writer.execute("UPDATE public.t81_nu SET j = %s", [NUL])
    kinds = [e["kind"].rsplit(".", 1)[1] for e in events_under(kit.db, "public.t81_nu.")]
    assert kinds == ["insert", "update"]


# ============================================ class T ============================================

def exact_row(kit, table: str, i: int) -> bool:
    e = [x for x in events_under(kit.db, f"public.{table}.insert") if x["target_id"] == str(i)]
    if len(e) != 1:
        return False
    want = kit.owner.execute(f"SELECT to_jsonb(t.*)::text FROM public.{table} t WHERE id = %s", [i]).fetchone()[0]
    return same(kit.db, e[0]["row_after"], want) and not (e[0]["payload"] or {}).get("omitted")


def omitted_of(kit, table: str, i: int):
    e = [x for x in events_under(kit.db, f"public.{table}.insert") if x["target_id"] == str(i)]
    return json.loads(e[0]["row_after"]), (e[0]["payload"] or {}).get("omitted")


HONEST_LOOKING_REFUSED = [
    '"\\\\u0000"',              # an escaped backslash, then u0000: honest
    '"\\\\\\\\u0000"',          # two escaped backslashes
    '{"\\\\ud800": "\\\\u0000"}',
    '1e0399',                   # four exponent digits, under the wild bound: honest
    '1E-0399',
    '-0.0e0999',
    '"\\u00e9\\ud83d\\ude00 \\u0001"',
    '{"a": 1, "a": {"a": [1, "a", {"a": null}]}}',
    '[' * 400 + '"\\\\u0000"' + ']' * 400,
]


def test_t1_honest_json_that_looks_refused_beside_a_refused_row(kit):
    """Honest json whose text matches the quick check's pattern (escaped backslashes before u0000,
    exponents of four digits, numeric's edges, duplicate keys, deep nesting), in the refused row and
    in an honest row of the same statement. Safe: honest row exact; the refused row's honest values
    exact and only the refused column named."""
    mood(kit)
    n = len(HONEST_LOOKING_REFUSED)
    cols = ", ".join(f"h{i} json" for i in range(n))
    track_new_table(kit, "t81_hl", f"id int PRIMARY KEY, m public.t81_mood, r json, {cols}")
    ph = ", ".join(["%s"] * n)
    err = try_write(kit.writer, f"INSERT INTO public.t81_hl VALUES (1, 'ok', '1', {ph}), (2, 'sad', %s, {ph})",
                    HONEST_LOOKING_REFUSED + [NUL] + HONEST_LOOKING_REFUSED)
    assert err is None
    assert exact_row(kit, "t81_hl", 1)
    img, om = omitted_of(kit, "t81_hl", 2)
    want = json.loads(kit.owner.execute("SELECT (to_jsonb(t.*) - 'r')::text FROM public.t81_hl t WHERE id = 1").fetchone()[0])
    want.update({"id": 2, "m": "sad", "r": json_marker(NUL)})
    assert (img == want, om) == (True, {"row_after": ["r"]})


REFUSED_ODD = [
    '{"a\\u0000b": 1}',                         # in a key
    '{"k": "\\udc00\\ud800"}',                   # reversed pair
    '[1e-200000]',                              # tiny exponent
    '[' * 1500 + '"\\u0000"' + ']' * 1500,      # deep, refused at the bottom
    '  {"x": "' + '\\\\\\"' * 3000 + '\\u0000"}  ',  # long escapes then NUL
    '{"id": 99, "m": "sad", "": [], "r": "\\u0000"}',  # mimics the row's own members
    '"' + 'é' * 5000 + '\\ud800"',
]


@pytest.mark.parametrize("idx", range(len(REFUSED_ODD)))
def test_t2_refused_json_of_odd_shapes_is_a_marker_of_its_text(kit, idx):
    """A refused json value of an odd shape (NUL in a key, reversed surrogates, tiny exponent, deep,
    long escapes, members mimicking the row's own, long multibyte text), with an honest row beside.
    Safe: the write succeeds; the refused value is the marker of to_json's text, named; the other
    values and the honest row exact."""
    mood(kit)
    track_new_table(kit, "t81_ro", "id int PRIMARY KEY, m public.t81_mood, r json, t text")
    v = REFUSED_ODD[idx]
    err = try_write(kit.writer, "INSERT INTO public.t81_ro VALUES (1, 'ok', %s, 'a\",\"r\":1'), (2, 'sad', '[1]', '\\\\')", [v])
    assert err is None
    txt = kit.owner.execute("SELECT to_json(r)::text FROM public.t81_ro WHERE id = 1").fetchone()[0]
    img, om = omitted_of(kit, "t81_ro", 1)
    assert (img, om) == ({"id": 1, "m": "ok", "r": json_marker(txt), "t": 'a","r":1'}, {"row_after": ["r"]})
    assert exact_row(kit, "t81_ro", 2)


ODD_COLS = ['\\u0000', '","r":', '"', '\\', 'a"b\\"c', '{}', '[:]', ' ', '$omitted', 'omitted']


def test_t3_column_names_that_mimic_escapes_and_markers(kit):
    """Columns named \\u0000 (six characters), "$omitted", "omitted", with quotes and backslashes,
    every other one json holding a refused value in one row. Safe: exact names, markers only where
    refused, named by their true names."""
    mood(kit)
    def qi(n):
        return '"' + n.replace('"', '""') + '"'
    cols = ", ".join(f"{qi(n)} {'json' if i % 2 == 0 else 'text'}" for i, n in enumerate(ODD_COLS))
    track_new_table(kit, "t81_oc", f"id int PRIMARY KEY, m public.t81_mood, {cols}")
    names = ", ".join(qi(n) for n in ODD_COLS)
    vals1 = [NUL if i % 2 == 0 else n for i, n in enumerate(ODD_COLS)]
    vals2 = [json.dumps({n: n}) if i % 2 == 0 else n for i, n in enumerate(ODD_COLS)]
    ph = ", ".join(["%s"] * len(ODD_COLS))
    err = try_write(kit.writer, f"INSERT INTO public.t81_oc (id, m, {names}) VALUES (1, 'ok', {ph}), (2, 'ok', {ph})",
                    vals1 + vals2)
    assert err is None
    assert exact_row(kit, "t81_oc", 2)
    img, om = omitted_of(kit, "t81_oc", 1)
    jcols = sorted(n for i, n in enumerate(ODD_COLS) if i % 2 == 0)
    assert sorted(om["row_after"]) == jcols
    assert all(img[n] == json_marker(NUL) for n in jcols)
    assert all(img[n] == n for i, n in enumerate(ODD_COLS) if i % 2 == 1)


def test_t4_json_inside_arrays_of_composites_and_domains(kit):
    """Refused json inside an array of composites, a domain over an array of composites, a
    composite inside a composite, beside honest ones. Safe: each refused column a marker of its
    to_json text, named; honest columns and the honest row exact."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t81_c AS (s text, j json); CREATE DOMAIN public.t81_dc AS public.t81_c[];"
                      "CREATE TYPE public.t81_o AS (c public.t81_c, cs public.t81_c[])")
    track_new_table(kit, "t81_ac", "id int PRIMARY KEY, m public.t81_mood, a public.t81_c[], d public.t81_dc, o public.t81_o, h public.t81_c[]")
    c = "ROW(E'\\\\\"', %s::json)::public.t81_c"
    sql = (f"INSERT INTO public.t81_ac VALUES (1, 'ok', ARRAY[{c}, NULL], ARRAY[{c}]::public.t81_dc, ROW({c}, ARRAY[{c}]), "
           f"ARRAY[{c}]), (2, 'ok', ARRAY[{c}], ARRAY[{c}]::public.t81_dc, ROW({c}, ARRAY[{c}]), ARRAY[{c}])")
    err = try_write(kit.writer, sql, [NUL, SUR, BIG, '1', '"h"'] + ['{"a": [1]}'] * 5)
    assert err is None
    assert exact_row(kit, "t81_ac", 2)
    img, om = omitted_of(kit, "t81_ac", 1)
    texts = kit.owner.execute("SELECT to_json(a)::text, to_json(d)::text, to_json(o)::text FROM public.t81_ac WHERE id = 1").fetchone()
    assert (img["a"], img["d"], img["o"], sorted(om["row_after"])) == (json_marker(texts[0]), json_marker(texts[1]), json_marker(texts[2]),
                                                                       ["a", "d", "o"])
    assert img["h"] == [{"s": '\\"', "j": "h"}]


def test_t5_a_large_honest_value_and_a_large_refused_one(kit):
    """A refused row with 2 MB of honest json (escaped quotes and backslashes) and a 1 MB refused
    value. Safe: the write succeeds in bounded time; the refused value's marker has its to_json
    text's hash; the large honest value is imaged (or bounded as large values are, and named)."""
    mood(kit)
    track_new_table(kit, "t81_lg", "id int PRIMARY KEY, m public.t81_mood, big json, r json")
    big = json.dumps(["\\\"" * 50 + str(i) for i in range(15000)])
    bad = '["' + "x" * 1_000_000 + '", "\\u0000"]'
    err = try_write(kit.writer, "INSERT INTO public.t81_lg VALUES (1, 'ok', %s, %s)", [big, bad])
    assert err is None
    img, om = omitted_of(kit, "t81_lg", 1)
    assert img["r"] == json_marker(bad)
    assert "r" in om["row_after"]
    assert img["big"] == json.loads(big) or ("$omitted" in img["big"] and "big" in om["row_after"])


def test_t6_duplicate_keys_and_whitespace_in_a_refused_value_and_an_update(kit):
    """A refused json value with duplicate keys and odd whitespace, updated to the same text with
    different whitespace (a change as stored) and then to an honest value. Safe: each UPDATE an
    event; markers of each text; the last image exact."""
    mood(kit)
    track_new_table(kit, "t81_du", "id int PRIMARY KEY, m public.t81_mood, r json", skip_noop_updates=True)
    v1 = '{"a": "\\u0000", "a": 1}'
    v2 = '{ "a" : "\\u0000" ,"a":1 }'
    kit.writer.execute("INSERT INTO public.t81_du VALUES (1, 'ok', %s)", [v1])
    kit.writer.execute("UPDATE public.t81_du SET r = %s", [v2])
    kit.writer.execute("UPDATE public.t81_du SET r = '{\"a\": 2}'")
    e = events_under(kit.db, "public.t81_du.")
    assert [x["kind"].rsplit(".", 1)[1] for x in e] == ["insert", "update", "update"]
    assert json.loads(e[1]["row_before"])["r"] == json_marker(v1)
    assert json.loads(e[1]["row_after"])["r"] == json_marker(v2)
    assert json.loads(e[2]["row_after"]) == {"id": 1, "m": "ok", "r": {"a": 2}}


def test_t7_refused_value_in_a_baseline_and_delete_agree(kit):
    """A table with a refused value tracked with a baseline, then the row deleted. Safe: the
    baseline's image equals the DELETE's row_before."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t81_c AS (j json); CREATE TABLE public.t81_bd (id int PRIMARY KEY,"
                      " m public.t81_mood, c public.t81_c, r json); GRANT ALL ON public.t81_bd TO app_writer")
    kit.owner.execute("INSERT INTO public.t81_bd VALUES (1, 'ok', ROW(%s::json), %s), (2, 'ok', NULL, '{\"a\":1}')", [SUR, NUL])
    enable_tracking(kit.maint, "public.t81_bd", baseline=True)
    kit.writer.execute("DELETE FROM public.t81_bd")
    base = {e["target_id"]: e["row_after"] for e in events_under(kit.db, "public.t81_bd.") if e["row_after"] and not e["row_before"]}
    dels = {e["target_id"]: e["row_before"] for e in events_under(kit.db, "public.t81_bd.delete")}
    assert set(dels) == {"1", "2"}
    assert all(same(kit.db, base.get(k), dels[k]) for k in dels), (base, dels)


@pytest.mark.parametrize("depth", [600, 1200, 2500])
@pytest.mark.parametrize("where", ["same_value", "other_column"])
def test_t8_an_honest_deep_value_beside_a_wild_number_reads_and_seals(kit, depth, where):
    """An honest row of an inline table: a jsonb value nested `depth` levels (far under the ~10,000
    levels docs/capture.md names as what a JSON path walks), with a wild number (1e400) inside it or
    in another column. Safe: the write succeeds; the pending event reads through audit.events and
    row_history (the events view must not fail on one event: 14_wild_numbers.sql); it seals; both
    verifiers ok."""
    track_new_table(kit, "t81_wn", "id int PRIMARY KEY, d jsonb, w jsonb")
    inner = "1e400" if where == "same_value" else "1"
    deep = "[" * depth + inner + "]" * depth
    err = try_write(kit.writer, "INSERT INTO public.t81_wn VALUES (1, %s, %s)", [deep, "1e400" if where == "other_column" else "2"])
    assert err is None
    read = try_write(kit.reader, "SELECT row_after::text FROM audit.events WHERE kind = 'public.t81_wn.insert'")
    hist = kit.history("public.t81_wn", "1")
    sealed = seal_all(kit.db)
    assert (read, hist, sealed) == (None, ["public.t81_wn.insert"], None)
    assert both_verifiers(kit.db) == (True, True)
    assert quarantine_empty(kit.db)


def test_t9_one_deep_event_with_a_wild_number_and_the_readers_page_of_all_events(kit):
    """Another table's ordinary event, then one honest row nested 1,500 levels with 1e400 inside;
    the reader lists every pending event (list_events, no filter), then an other table's history.
    Safe: the page lists both; one event never fails the page (14_wild_numbers.sql)."""
    from pgaudit_py.events import list_events
    track_new_table(kit, "t81_p1", "id int PRIMARY KEY, v int")
    track_new_table(kit, "t81_p2", "id int PRIMARY KEY, d jsonb")
    kit.writer.execute("INSERT INTO public.t81_p1 VALUES (1, 1)")
    kit.writer.execute("INSERT INTO public.t81_p2 VALUES (1, %s)", ["[" * 1500 + "1e400" + "]" * 1500])
    try:
        page = [e.kind for e in list_events(kit.reader)]
    except Exception as e:  # noqa: BLE001
        page = [f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"]
    assert "public.t81_p1.insert" in page and "public.t81_p2.insert" in page, page


def test_j8_json_added_under_a_range_of_a_tenant_column_is_printed_as_text(kit):
    """A tenant column of a range type over a composite; a json attribute added to the composite and
    \u0000 written in a bound. Safe: a range prints as a string, so no marker can be the tenant: the
    change may stand, the write succeeds and is filed under the range's text."""
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t81_c AS (a text); CREATE TYPE public.t81_r AS RANGE (subtype = public.t81_c)")
    track_new_table(kit, "t81_rg", "id int PRIMARY KEY, m public.t81_mood, tc public.t81_r", tenant_column="tc")
    refused = try_write(kit.owner, "ALTER TYPE public.t81_c ADD ATTRIBUTE j json")
    if refused is not None:
        return
    err = try_write(kit.writer, "INSERT INTO public.t81_rg VALUES (1, 'ok', public.t81_r(ROW('A', %s::json)::public.t81_c, NULL))",
                    [NUL])
    want = kit.owner.execute("SELECT tc::text FROM public.t81_rg").fetchone()
    got = [e["tenant_id"] for e in events_under(kit.db, "public.t81_rg.insert")]
    assert (err, got) == (None, [want[0] if want else None])


@pytest.mark.parametrize("depth", [1200, 3000])
def test_t10_an_update_of_an_honest_deep_value_reads_and_seals(kit, depth):
    """An honest jsonb value nested `depth` levels (no wild number), updated to another as deep: the
    view computes `changed` for the pending event. Safe: audit.events and row_history read it; it
    seals; both verifiers ok."""
    track_new_table(kit, "t81_du2", "id int PRIMARY KEY, d jsonb")
    kit.writer.execute("INSERT INTO public.t81_du2 VALUES (1, %s)", ["[" * depth + "1" + "]" * depth])
    kit.writer.execute("UPDATE public.t81_du2 SET d = %s", ["[" * depth + "2" + "]" * depth])
    read = try_write(kit.reader, "SELECT changed::text, row_after::text FROM audit.events WHERE kind LIKE 'public.t81_du2.%%'")
    hist = kit.history("public.t81_du2", "1")
    assert (read, hist, seal_all(kit.db)) == (None, ["public.t81_du2.insert", "public.t81_du2.update"], None)
    assert both_verifiers(kit.db) == (True, True)


CTRL_COLS = ["a\x01b", "\x1f", "t\tab", "n\nl", "\x7f", "\\u0001", "\u2028", "\ufeff"]


def test_t11_column_names_with_control_characters_in_a_refused_row(kit):
    """Columns named with control characters (escaped by to_json as \\u00XX), DEL, U+2028, a BOM, and
    the six characters \\u0001; json ones hold refused values in row 1. Safe: every name exact, the
    refused ones named, the honest row exact."""
    mood(kit)
    def qi(n):
        return '"' + n.replace('"', '""') + '"'
    cols = ", ".join(f"{qi(n)} {'json' if i % 2 == 0 else 'text'}" for i, n in enumerate(CTRL_COLS))
    track_new_table(kit, "t81_cc", f"id int PRIMARY KEY, m public.t81_mood, {cols}")
    names = ", ".join(qi(n) for n in CTRL_COLS)
    vals1 = [SUR if i % 2 == 0 else n for i, n in enumerate(CTRL_COLS)]
    vals2 = [json.dumps({n: 1}) if i % 2 == 0 else n for i, n in enumerate(CTRL_COLS)]
    ph = ", ".join(["%s"] * len(CTRL_COLS))
    err = try_write(kit.writer, f"INSERT INTO public.t81_cc (id, m, {names}) VALUES (1, 'ok', {ph}), (2, 'ok', {ph})", vals1 + vals2)
    assert err is None
    assert exact_row(kit, "t81_cc", 2)
    img, om = omitted_of(kit, "t81_cc", 1)
    jcols = sorted(n for i, n in enumerate(CTRL_COLS) if i % 2 == 0)
    assert (sorted(om["row_after"]), sorted(img)) == (jcols, sorted(["id", "m", *CTRL_COLS]))
    assert all(img[n] == json_marker(SUR) for n in jcols)


# ============================================ class O ============================================

def test_o1_owner_cannot_switch_the_capture_off(kit):
    """The owner of a tracked table with a json-holding composite: DISABLE TRIGGER, rename the capture
    trigger, DROP it, replica session. Safe: each refused, the capture still fires."""
    mood(kit)
    track_new_table(kit, "t81_off", "id int PRIMARY KEY, m public.t81_mood, j json")
    outs = [try_write(kit.owner, s) for s in (
        "ALTER TABLE public.t81_off DISABLE TRIGGER audit_capture_insert",
        "ALTER TABLE public.t81_off DISABLE TRIGGER ALL",
        "ALTER TRIGGER audit_capture_insert ON public.t81_off RENAME TO t81_x",
        "DROP TRIGGER audit_capture_insert ON public.t81_off",
        "SET session_replication_role = replica",
        "ALTER TABLE public.t81_off ENABLE REPLICA TRIGGER audit_capture_insert")]
    assert all(o is not None for o in outs), outs
    kit.owner.execute("INSERT INTO public.t81_off VALUES (1, 'ok', %s)", [NUL])
    assert len(events_under(kit.db, "public.t81_off.insert")) == 1


def test_o2_owner_operators_in_public_do_not_reach_the_json_named_check(kit):
    """The owner defines public operators ?(jsonb,text) and #>>(jsonb,text[]) and a public
    jsonb_typeof(jsonb) that would make a marker pass, and sets search_path to public first.
    Safe: a marker tenant in a grandfathered table is still refused; no audit role ran the owner's
    code."""
    kit.owner.execute("""CREATE TABLE public.t81_ran (who text);
        GRANT ALL ON public.t81_ran TO PUBLIC;
        CREATE FUNCTION public.t81_no(jsonb, text) RETURNS boolean LANGUAGE plpgsql AS
          $$ BEGIN INSERT INTO public.t81_ran VALUES (current_user); RETURN false; END $$;
        CREATE OPERATOR public.? (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.t81_no);
        CREATE FUNCTION public.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql AS
          $$ BEGIN INSERT INTO public.t81_ran VALUES (current_user); RETURN 'string'; END $$""")
    track_new_table(kit, "t81_op", "id int PRIMARY KEY, tc text", tenant_column="tc")
    _grandfather(kit, "ALTER TABLE public.t81_op ALTER COLUMN tc TYPE json USING to_json(tc)")
    kit.writer.execute("SET search_path = public, pg_catalog")
    err = try_write(kit.writer, "INSERT INTO public.t81_op VALUES (1, %s)", [NUL])
    look = try_write(kit.writer, "INSERT INTO public.t81_op VALUES (2, %s)", [LOOKALIKE])
    ran = [r[0] for r in kit.db.execute("SELECT who FROM public.t81_ran")]
    assert ((err or "")[:5], (look or "")[:5], [w for w in ran if w.startswith("audit")]) == ("23514", "23514", [])


def test_o3_owner_code_in_a_domain_check_on_the_key_runs_as_no_audit_role(kit):
    """A composite key whose attribute is a domain whose CHECK calls the owner's function recording
    current_user; rows written, updated, deleted, sealed. Safe: no audit role ran it."""
    kit.owner.execute("""CREATE TABLE public.t81_ran (who text); GRANT ALL ON public.t81_ran TO PUBLIC;
        CREATE FUNCTION public.t81_spy(text) RETURNS boolean LANGUAGE plpgsql AS
          $$ BEGIN INSERT INTO public.t81_ran VALUES (current_user); RETURN true; END $$;
        GRANT EXECUTE ON FUNCTION public.t81_spy(text) TO PUBLIC;
        CREATE DOMAIN public.t81_dom AS text CHECK (public.t81_spy(VALUE));
        CREATE TYPE public.t81_k AS (a public.t81_dom)""")
    track_new_table(kit, "t81_dk", "k public.t81_k PRIMARY KEY, j json")
    kit.writer.execute("INSERT INTO public.t81_dk VALUES (ROW('a'), %s), (ROW('b'), '1')", [NUL])
    kit.writer.execute("UPDATE public.t81_dk SET j = '2'")
    kit.writer.execute("DELETE FROM public.t81_dk")
    assert seal_all(kit.db) is None
    ran = {r[0] for r in kit.db.execute("SELECT who FROM public.t81_ran")}
    assert not any(w.startswith("audit") or w == "postgres" for w in ran), ran


def test_o4_guards_answer_the_same_in_german(kit):
    """The cluster's messages in German: the json refusals keep their SQLSTATEs (PA005, PA008,
    check_violation), and the fallback still images a refused row."""
    lang = kit.db.execute("SHOW lc_messages").fetchone()[0]
    mood(kit)
    kit.owner.execute("CREATE TYPE public.t81_c AS (a text); CREATE TYPE public.t81_cj AS (a text, j json)")
    kit.owner.execute("CREATE TABLE public.t81_de (id int, k public.t81_cj, PRIMARY KEY (k))")
    refused = try_write(kit.maint, "SELECT audit.enable_tracking('public.t81_de')")
    track_new_table(kit, "t81_de2", "id int PRIMARY KEY, m public.t81_mood, tc public.t81_c, j json", tenant_column="tc")
    alter = try_write(kit.owner, "ALTER TYPE public.t81_c ADD ATTRIBUTE j json")
    err = try_write(kit.writer, "INSERT INTO public.t81_de2 VALUES (1, 'ok', ROW('A'), %s)", [NUL])
    assert (lang.lower().startswith("de"), (refused or "")[:5], (alter or "")[:5], err) == (True, "PA005", "PA008", None)


def test_o5_owner_cannot_replace_the_json_check_or_forge_events(kit):
    """The owner tries to replace audit._json_named, write the intake, and call the capture function
    directly. Safe: all refused."""
    outs = [try_write(kit.owner, s) for s in (
        "CREATE OR REPLACE FUNCTION audit._json_named(value jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT $1'",
        "INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)"
        " VALUES ('user', 'x', 'forged.event', 'success', '1', now(), '{}')",
        "ALTER FUNCTION audit._json_named(jsonb) OWNER TO t81_owner",
        "SELECT audit._refresh_tracking(0, true)")]
    assert all(o is not None for o in outs), outs


def test_o6_an_owner_trigger_rewriting_the_tenant_after_capture_is_seen(kit):
    """The owner adds an AFTER ROW trigger that rewrites the tenant of the inserted row to json-ish
    text through a second UPDATE. Safe: that UPDATE is captured too (another event), tenant text."""
    mood(kit)
    kit.owner.execute("CREATE FUNCTION public.t81_tr() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
                      " IF NEW.tc = 'acme' THEN UPDATE public.t81_ot SET tc = '{\"$omitted\": 1}' WHERE id = NEW.id; END IF;"
                      " RETURN NULL; END $$")
    track_new_table(kit, "t81_ot", "id int PRIMARY KEY, m public.t81_mood, tc text", tenant_column="tc")
    made = try_write(kit.owner, "CREATE TRIGGER t81_tr AFTER INSERT ON public.t81_ot FOR EACH ROW EXECUTE FUNCTION public.t81_tr()")
    kit.writer.execute("INSERT INTO public.t81_ot VALUES (1, 'ok', 'acme')")
    kinds = [(e["kind"].rsplit(".", 1)[1], e["tenant_id"]) for e in events_under(kit.db, "public.t81_ot.")]
    if made is None:
        assert sorted(kinds) == [("insert", "acme"), ("update", "acme"), ("update", '{"$omitted": 1}')], kinds
    else:
        assert kinds == [("insert", "acme")]


def test_o7_a_forced_policy_on_a_tracked_table_during_baseline_and_seal(kit, attacker):
    """The owner forces row-level security on a table with a policy calling spy() (which reports
    who runs it and whether that role could write the intake); the maintainer tracks it with a
    baseline, rows are written, sealed, history read. Safe: no audit role ran spy; nothing forged."""
    attacker.execute("GRANT EXECUTE ON FUNCTION public.spy(text) TO PUBLIC")
    attacker.execute("""CREATE TYPE public.t81_mood AS ENUM ('ok', 'sad');
        CREATE TABLE public.t81_rls (id int PRIMARY KEY, m public.t81_mood, j json);
        INSERT INTO public.t81_rls VALUES (1, 'ok', '"\\u0000"');
        ALTER TABLE public.t81_rls ENABLE ROW LEVEL SECURITY; ALTER TABLE public.t81_rls FORCE ROW LEVEL SECURITY;
        CREATE POLICY t81_p ON public.t81_rls USING (public.spy('policy')) WITH CHECK (public.spy('check'));
        GRANT ALL ON public.t81_rls TO app_writer""")
    kit.db.execute("GRANT table_owner TO app_maintainer")
    err = try_write(kit.maint, "SELECT audit.enable_tracking('public.t81_rls', baseline => true)")
    kit.writer.execute("INSERT INTO public.t81_rls VALUES (2, 'ok', %s)", [SUR])
    kit.writer.execute("UPDATE public.t81_rls SET m = 'sad'")
    seal_all(kit.db)
    kit.history("public.t81_rls", "1")
    ran = kit.db.execute("SELECT DISTINCT who, forged FROM public.who_ran").fetchall()
    assert [r for r in ran if r[0].startswith("audit") or r[0] == "postgres" or r[1]] == [], (err, ran)
    assert kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 'forged.event'").fetchone()[0] == 0


@pytest.mark.parametrize("how", ["create_partition_of", "attach", "inherit"])
def test_o8_a_foreign_table_put_under_a_tracked_table(kit, how):
    """The owner (with USAGE on a server) puts a foreign table under a tracked partitioned table (or
    makes one inherit from a tracked plain table). Safe: refused; or status names it."""
    fdw(kit)
    mood(kit)
    if how == "inherit":
        track_new_table(kit, "t81_fo", "id int PRIMARY KEY, m public.t81_mood")
        stmt = "CREATE FOREIGN TABLE public.t81_fc () INHERITS (public.t81_fo) SERVER t81_srv"
    else:
        kit.owner.execute("CREATE TABLE public.t81_fo (id int, m public.t81_mood, PRIMARY KEY (id)) PARTITION BY RANGE (id);"
                          "CREATE TABLE public.t81_fo1 PARTITION OF public.t81_fo FOR VALUES FROM (0) TO (10);"
                          "GRANT ALL ON public.t81_fo TO app_writer")
        enable_tracking(kit.maint, "public.t81_fo")
        stmt = ("CREATE FOREIGN TABLE public.t81_fc PARTITION OF public.t81_fo FOR VALUES FROM (10) TO (20) SERVER t81_srv"
                if how == "create_partition_of" else
                "CREATE FOREIGN TABLE public.t81_fc (id int NOT NULL, m public.t81_mood) SERVER t81_srv;"
                " ALTER TABLE public.t81_fo ATTACH PARTITION public.t81_fc FOR VALUES FROM (10) TO (20)")
    refused = try_write(kit.owner, stmt)
    assert refused is not None or named_in_status(kit, "t81_f"), problems_of(kit.db)


def test_o9_the_python_api_maps_the_json_refusals_by_sqlstate_in_german(kit):
    """enable_tracking (Python) on a table whose key holds json, with the server's messages in
    German. Safe: the project's exception for PA005 (InvalidArgument), not a generic error."""
    from pgaudit_py.errors import InvalidArgument
    kit.owner.execute("CREATE TYPE public.t81_hj AS (a text, j json); CREATE TABLE public.t81_pe (k public.t81_hj PRIMARY KEY)")
    with pytest.raises(Exception) as e:  # noqa: PT011
        enable_tracking(kit.maint, "public.t81_pe")
    assert isinstance(e.value, InvalidArgument), type(e.value)


@pytest.mark.parametrize("child", ["table", "foreign"])
def test_o10_a_column_of_a_type_with_the_owners_cast_to_json_added_through_a_parent(kit, child):
    """A tracked table's column c is of a child's row type (plain or foreign inheritance child). The
    owner makes an enum with a cast to json by their own SQL function (printing "forged"), then adds
    a column of it to the child's parent. docs/capture.md: adding such a column to a row type a
    covered table is made of is refused (PA008). Safe: refused; or the image shows the stored
    label, never what the owner's cast prints."""
    fdw(kit)
    mood(kit)
    make = ("CREATE TABLE public.t81_kid () INHERITS (public.t81_par)" if child == "table"
            else "CREATE FOREIGN TABLE public.t81_kid () INHERITS (public.t81_par) SERVER t81_srv")
    kit.owner.execute(f"""CREATE TABLE public.t81_par (a text); {make};
        CREATE TYPE public.t81_e AS ENUM ('real', 'other');
        CREATE FUNCTION public.t81_ej(public.t81_e) RETURNS json LANGUAGE sql IMMUTABLE AS $$ SELECT '"forged"'::json $$;
        CREATE CAST (public.t81_e AS json) WITH FUNCTION public.t81_ej(public.t81_e)""")
    track_new_table(kit, "t81_cst", "id int PRIMARY KEY, m public.t81_mood, c public.t81_kid")
    refused = try_write(kit.owner, "ALTER TABLE public.t81_par ADD COLUMN e public.t81_e")
    if refused is not None:
        return
    kit.writer.execute("INSERT INTO public.t81_cst VALUES (1, 'ok', ROW('A', 'real')::public.t81_kid)")
    img = json.loads(events_under(kit.db, "public.t81_cst.insert")[0]["row_after"])
    assert img["c"] == {"a": "A", "e": "real"}, img


# ============================================ class V ============================================

def test_v1_seal_and_verify_after_markers_lookalikes_and_grandfathered_refusals(kit):
    """Markers, look-alikes, odd names, a grandfathered tenant with refusals, a deep refused value:
    sealed. Safe: both verifiers ok and agree, nothing quarantined."""
    mood(kit)
    track_new_table(kit, "t81_v", "id int PRIMARY KEY, m public.t81_mood, j json, b jsonb, \"a\"\"b\\\" text")
    kit.writer.execute("INSERT INTO public.t81_v VALUES (1, 'ok', %s, %s, '\u2028\"'), (2, 'sad', %s, '{\"\": 1}', NULL)",
                       [NUL, LOOKALIKE, "[" * 1500 + SUR + "]" * 1500])
    kit.writer.execute("UPDATE public.t81_v SET j = %s WHERE id = 1", [BIG])
    kit.writer.execute("DELETE FROM public.t81_v WHERE id = 2")
    track_new_table(kit, "t81_vg", "id int PRIMARY KEY, tc text", tenant_column="tc")
    _grandfather(kit, "ALTER TABLE public.t81_vg ALTER COLUMN tc TYPE json USING to_json(tc)")
    try_write(kit.writer, "INSERT INTO public.t81_vg VALUES (1, %s)", [NUL])
    kit.writer.execute("INSERT INTO public.t81_vg VALUES (2, '\"t\\u00e9\"')")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    assert quarantine_empty(kit.db)


@pytest.mark.parametrize("route", ["direct", "foreign_child", "view_rowtype"])
def test_v2_seal_and_verify_after_a_json_route(kit, route):
    """After j1's route (whatever it did), writes and seal. Safe: both verifiers ok, nothing
    quarantined."""
    alter, value = _route_table(kit, route, "key")
    try_write(kit.owner, alter)
    try_write(kit.writer, f"INSERT INTO public.t81_jt (id, m, k) VALUES (1, 'ok', {value})", [NUL])
    try_write(kit.writer, "UPDATE public.t81_jt SET m = 'sad'")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    assert quarantine_empty(kit.db)


def test_v3_canonical_text_of_odd_keys_and_numbers_agrees_in_both_verifiers(kit):
    """Columns and jsonb keys of 1 to 4 UTF-8 bytes (jsonb orders keys by length, then bytes),
    numbers of many digits, negative zero, exponents, U+2028, U+FFFF, a tamed wild number, and a
    refused json value's marker: sealed. Safe: both verifiers ok and agree, nothing quarantined."""
    mood(kit)
    track_new_table(kit, "t81_cn", 'id int PRIMARY KEY, m public.t81_mood, "z" jsonb, "é" jsonb, "😀" json, "aa" text')
    b = {"z": 1, "é": 2, "😀": 3, "aa": 4, "\u2028": "\u2028\uffff", "": -0.0}
    kit.writer.execute("INSERT INTO public.t81_cn VALUES (1, 'ok', %s, %s, %s, %s), (2, 'sad', %s, '1e400', %s, '')",
                       [json.dumps(b), "[3.14159265358979323846264338327950288, -0, 1.0e2, 100000000000000000000000, 0.1e-5]",
                        NUL, "\u2028", '{"b": 1e-7, "a": [1E+2]}', '"\\ud800"'])
    kit.writer.execute("UPDATE public.t81_cn SET m = 'sad'")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    assert quarantine_empty(kit.db)


def test_v4_deep_values_with_wild_numbers_seal_and_verify(kit):
    """t8's honest deep rows with wild numbers (and one in a marker-holding fallback row), sealed
    without reading them first. Safe: both verifiers ok and agree, nothing quarantined."""
    mood(kit)
    track_new_table(kit, "t81_dv", "id int PRIMARY KEY, m public.t81_mood, d jsonb, j json")
    kit.writer.execute("INSERT INTO public.t81_dv VALUES (1, 'ok', %s, '1'), (2, 'ok', %s, %s)",
                       ["[" * 1500 + "1e400" + "]" * 1500, "[" * 800 + "-1e-401" + "]" * 800, NUL])
    kit.writer.execute("UPDATE public.t81_dv SET m = 'sad'")
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    assert quarantine_empty(kit.db)
    read = try_write(kit.reader, "SELECT row_after::text FROM audit.events WHERE kind LIKE 'public.t81_dv.%%'")
    assert read is None


@pytest.mark.parametrize("payload", [
    {"n": "wild"}, {"deep": "deep"}, {"odd": "odd"}])
def test_v5_application_events_with_hostile_payloads_verify_alike(kit, payload):
    """audit.record by the writer with payloads holding wild numbers, numbers of many digits, deep
    nesting, U+2028, U+FFFF, keys of 1 to 4 bytes, and a marker look-alike. Safe: sealed, both
    verifiers ok and agree, nothing quarantined."""
    text = {"n": '{"w": 1e399, "t": -1e-399, "p": 3.141592653589793238462643383279502884197, "z": -0.0, "e": 1E+300}',
            "deep": '{"d": ' + "[" * 700 + '{"x": 1e399}' + "]" * 700 + "}",
            "odd": json.dumps({"\u2028": "\u2028\uffff\U0010ffff", "é": 1, "😀": 2, "z": 3, "$omitted": {"bytes": 1}})}[
        next(iter(payload))]
    err = try_write(kit.writer, "SELECT audit.record(kind => 't81.app', payload => %s::jsonb)", [text])
    assert err is None
    assert seal_all(kit.db) is None
    assert both_verifiers(kit.db) == (True, True)
    assert quarantine_empty(kit.db)
