"""A seventy-eighth attacker's trial: against commit 235ca47 (json values jsonb cannot hold are imaged as
the $omitted marker of their text, column by column, and named in the payload; baselines too).

Classes (test names carry the letter):
  J. images: honest json values that pass or fail the quick check (_jsonb_takes) image as to_jsonb of
     the row does (escapes, "e12345" in strings, 1e99999, values near 16,000 bytes, nested arrays,
     json[] with NULLs, 2-D json[], domains over json and json[] with CHECKs, NULL, json null), in
     captures and baselines; a number jsonb refuses that the quick check lets through (many decimals
     with a four-digit negative exponent); 60-column tables with odd names, dropped and generated
     columns; no-op detection, `changed`, excluded and redacted columns; key and tenant moves; COPY,
     ON CONFLICT, MERGE, DELETE, TRUNCATE; partitions; a column made json after tracking; settings of
     the writer's role; a jsonb key; 400 json columns; columns (key and tenant too) whose names hold
     ') AS q', the text the generator rewrites in its INSERT and DELETE subqueries.
  N. payload notes: only replaced values are named (a look-alike marker, a value {"": [...]}, excluded
     and redacted columns are not); a replaced value beside a large one; baselines' notes.
  F. after sealing both verifiers say intact; tampering with a marker or a note is caught by both.
  P. privilege: look-alike functions and operators on the writer's search_path, domain CHECKs and row
     security policies of the owner's, run during captures and baselines of json tables: never as an
     audit role other than the sandbox, nor as the maintainer or the superuser.
  C. cost and failure: many rows with a few hostile values, hostile values in every row (time against
     plain rows), huge values, deep nesting at the edge of what json takes.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when an
honest use is refused or imaged wrong). Roles made here: t78_owner, t78_mallory (table_owner_kit),
table_owner (attacker fixture), t78_w (a writer login); all dropped afterwards.
"""

from __future__ import annotations

import json
import time

import psycopg
import pytest
from trial_helpers import both_verifiers, login, n_events, seal_all, sqlstate_of, table_owner_kit

from pgaudit_py import enable_tracking
from pgaudit_py.errors import PgAuditError


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t78") as k:
        yield k


def mk(kit, name: str, cols: str, rows: str | None = None, **opts) -> None:
    kit.owner.execute(f"CREATE TABLE public.{name} ({cols}); GRANT ALL ON public.{name} TO app_writer")
    if rows:
        kit.owner.execute(rows)
    enable_tracking(kit.maint, f"public.{name}", **opts)


def evs(db, prefix: str) -> list[dict]:
    cur = db.execute("SELECT kind, target_id, tenant_id, row_before, row_after, payload, changed FROM audit.events"
                     " WHERE starts_with(kind, %s) ORDER BY seq NULLS LAST, intake_id", [prefix])
    return [dict(zip(["kind", "target_id", "tenant_id", "row_before", "row_after", "payload", "changed"], r, strict=True)) for r in cur]


def marker(db, text: str) -> dict:
    return db.execute("SELECT audit._omitted(%s)", [text]).fetchone()[0]


def tamper(db, statement: str) -> None:
    db.execute("BEGIN")
    db.execute("SET LOCAL session_replication_role = replica")
    db.execute(statement)
    db.execute("COMMIT")


NUL = '"\\u0000"'
LONE = '{"s": "\\ud800"}'
WIDE = '{"n": 1e200000}'
# 6,500 decimals and an exponent of four digits: a scale of 16,499, past numeric's 16,383; 6.5 kB, no \u.
DSCALE = "[1." + "0" * 6499 + "1e-9999]"

HONEST = [
    '"\\u00e9"', '{"s": "e12345"}', '"1e12345 inside a string"', '[1e300, -1E-300]', '[[[[1, "\\u00e9"]]]]',
    '{"k": "' + "x" * 15985 + '"}', '{"k": "' + "x" * 15992 + '"}', '{"k": "\\u00e9' + "y" * 16010 + '"}',
    "null", None, '"\\ud83d\\ude00"', '{"a": 1, "a": 2}', '{"\\u0041": [1.50, -0, 1e300]}', "[]", '{"": ["id"]}',
]


def honest_table(kit, name: str, baseline: bool) -> None:
    kit.owner.execute(f"""CREATE DOMAIN public.{name}_dj AS json CHECK (VALUE::text <> '"forbidden"');
                          CREATE DOMAIN public.{name}_dja AS json[] CHECK (cardinality(VALUE) < 100)""")
    rows = [(i, v) for i, v in enumerate(HONEST)]
    ins = (f"INSERT INTO public.{name} VALUES (%s, %s::json, ARRAY[%s::json, NULL]::json[], %s::json,"
           f" ARRAY[[%s::json, NULL], [NULL, %s::json]]::json[], 't')")
    if baseline:
        mk(kit, name, f"id int PRIMARY KEY, a json, b json[], c public.{name}_dj, d public.{name}_dja, e text")
        kit.maint.execute(f"SELECT audit.disable_tracking('public.{name}')")
        for i, v in rows:
            kit.owner.execute(ins, [i, v, v, v, v, v])
        enable_tracking(kit.maint, f"public.{name}", baseline=True)
    else:
        mk(kit, name, f"id int PRIMARY KEY, a json, b json[], c public.{name}_dj, d public.{name}_dja, e text")
        for i, v in rows:
            kit.writer.execute(ins, [i, v, v, v, v, v])


# ============================================ class J ============================================


@pytest.mark.parametrize("mode", ["capture", "baseline"])
def test_j1_honest_json_values_image_as_to_jsonb_of_the_row(kit, mode):
    """Honest use: json values jsonb takes, some tripping the quick check (\\u escapes, "e12345" in a
    string, 1e99999, 16,000 bytes and more), in json, json[] (NULL elements, 2-D), domains over json and
    json[] with CHECKs, NULL and json null. Safe: every image equals to_jsonb of the stored row, the
    payload names nothing."""
    name = f"t78_h{mode[0]}"
    honest_table(kit, name, mode == "baseline")
    kind = f"public.{name}." + ("insert" if mode == "capture" else "baseline")
    got = kit.db.execute("SELECT t.id, e.row_after = to_jsonb(t.*), e.payload::text, left(e.row_after::text, 120)"
                         " FROM audit.events e JOIN public." + name + " t ON t.id = (e.row_after ->> 'id')::int"
                         " WHERE e.kind = %s ORDER BY t.id", [kind]).fetchall()
    assert len(got) == len(HONEST)
    wrong = {HONEST[i][:40] if HONEST[i] else None: (same, payload, text) for i, same, payload, text in got
             if not same or payload != "{}"}
    assert wrong == {}


@pytest.mark.parametrize("mode", ["capture", "baseline"])
def test_j2_a_number_jsonb_refuses_that_the_quick_check_lets_through(kit, mode):
    """Attack/honest use: a json number of 6,500 decimals with exponent e-9999 (6.5 kB, no \\u, four
    exponent digits): json takes it, jsonb does not (scale past 16,383; 22003). Safe: the write (or the
    baseline) is captured, the value replaced by its marker and named, as 1e200000 is."""
    name = f"t78_d{mode[0]}"
    kit.owner.execute(f"CREATE TABLE public.{name}_plain (id int, body json)")
    assert sqlstate_of(kit.owner, f"INSERT INTO public.{name}_plain VALUES (1, %s)", [DSCALE]) is None
    assert sqlstate_of(kit.owner, "SELECT %s::jsonb", [DSCALE]) == "22003"
    if mode == "capture":
        mk(kit, name, "id int PRIMARY KEY, body json, v int")
        state = sqlstate_of(kit.writer, f"INSERT INTO public.{name} VALUES (1, %s, 0)", [DSCALE])
        kind = f"public.{name}.insert"
    else:
        mk(kit, name, "id int PRIMARY KEY, body json, v int", f"INSERT INTO public.{name} VALUES (1, '{DSCALE}', 0)")
        kit.maint.execute(f"SELECT audit.disable_tracking('public.{name}')")
        try:
            enable_tracking(kit.maint, f"public.{name}", baseline=True)
            state = None
        except psycopg.Error as e:
            state = e.sqlstate
        kind = f"public.{name}.baseline"
    assert state is None, f"refused with {state}"
    e = evs(kit.db, kind)
    assert len(e) == 1 and e[0]["row_after"]["body"] == marker(kit.db, DSCALE)
    assert e[0]["payload"] == {"omitted": {"row_after": ["body"]}}


ODD = ["x", "j", "jk", "s", "q", "p", "o", "n", "jo", "jn", "i", "k", "alike", "moved", "img_old", "img_new",
       "side", 'a"b', "with space", "%s%I", "v_new"]


def test_j3_a_wide_table_with_odd_names_dropped_and_generated_columns(kit):
    """Attack: 62 columns (two chunks), named like the generated code's aliases, with quotes, spaces and
    format directives, json ones among them (one after the 50th), a dropped column, a generated one, a
    refused value in three json columns. Safe: each image is to_jsonb of the row with exactly the
    refused values replaced by their markers, and only those named, on INSERT, UPDATE and DELETE."""
    cols = ["id int PRIMARY KEY", "gone int"]
    names = []
    for i in range(60):
        nm = ODD[i] if i < len(ODD) else f"c{i}"
        names.append(nm)
        typ = "json" if nm in ("j", "jk", 'a"b') or i in (55, 58) else ("int" if i % 2 else "text")
        cols.append(f'"{nm.replace(chr(34), chr(34) * 2)}" {typ}')
    cols.append("g text GENERATED ALWAYS AS (j::text) STORED")
    kit.owner.execute(f"CREATE TABLE public.t78_w ({', '.join(cols)}); ALTER TABLE public.t78_w DROP COLUMN gone;"
                      " GRANT ALL ON public.t78_w TO app_writer")
    enable_tracking(kit.maint, "public.t78_w")
    jcols = [n for i, n in enumerate(names) if n in ("j", "jk", 'a"b') or i in (55, 58)]
    refused = {"j": NUL, 'a"b': LONE, "c55": WIDE}
    q = lambda n: '"' + n.replace('"', '""') + '"'  # noqa: E731
    sets = ", ".join(f"{q(n)} = %s" for n in refused) + ", jk = '{\"ok\": \"\\u00e9\"}', c58 = '[1, null]'"
    kit.writer.execute("INSERT INTO public.t78_w (id) VALUES (1), (2)")
    kit.writer.execute(f"UPDATE public.t78_w SET {sets} WHERE id = 1", list(refused.values()))
    kit.writer.execute('UPDATE public.t78_w SET "with space" = \'moved\' WHERE id = 1')
    # to_jsonb of the whole row fails; the row without the refused columns, plus their markers:
    want = {**kit.db.execute("SELECT to_jsonb(r.*) FROM (SELECT id, " + ", ".join(
        q(n) for n in names if n not in refused) + ", g FROM public.t78_w WHERE id = 1) r").fetchone()[0],
        **{n: marker(kit.db, v) for n, v in refused.items()}}
    kit.writer.execute("DELETE FROM public.t78_w WHERE id = 1")
    e = [x for x in evs(kit.db, "public.t78_w.") if x["target_id"] == "1"]
    assert [x["kind"] for x in e] == ["public.t78_w.insert", "public.t78_w.update", "public.t78_w.update",
                                      "public.t78_w.delete"]
    assert e[2]["row_after"] == want and e[3]["row_before"] == want
    named = sorted(refused)
    assert e[2]["payload"] == {"omitted": {"row_before": named, "row_after": named}}
    assert e[1]["payload"] == {"omitted": {"row_after": named}}
    assert e[3]["payload"] == {"omitted": {"row_before": named}}
    assert set(e[2]["changed"]) == {"with space"}
    assert set(jcols) >= set(refused)


def test_j4_noop_updates_changed_excluded_and_redacted_json(kit):
    """Honest use with skip_noop_updates: a row holding refused values in a plain, an excluded and a
    redacted json column. Safe: SET v = v, SET body = body and a change of only the excluded column are
    no events; a change of v is one, `changed` = [v], notes name body only; a change of the redacted
    column is one, naming no column as replaced but body."""
    mk(kit, "t78_n", "id int PRIMARY KEY, body json, v int, hid json, red json",
       exclude_columns=["hid"], redact_columns=["red"])
    kit.writer.execute("INSERT INTO public.t78_n VALUES (1, %s, 0, %s, %s)", [NUL, LONE, WIDE])
    kit.writer.execute("UPDATE public.t78_n SET v = v")
    kit.writer.execute("UPDATE public.t78_n SET body = body")
    kit.writer.execute("UPDATE public.t78_n SET hid = %s", ['"\\u0000 other"'])
    assert n_events(kit.db, "public.t78_n.update") == 0
    kit.writer.execute("UPDATE public.t78_n SET v = 1")
    kit.writer.execute("UPDATE public.t78_n SET red = %s", ['"\\ud800 again"'])
    e = evs(kit.db, "public.t78_n.update")
    assert len(e) == 2
    assert set(e[0]["changed"]) == {"v"} and e[0]["payload"] == {"omitted": {"row_before": ["body"], "row_after": ["body"]}}
    assert e[1]["row_after"]["red"] == "[redacted]" and "hid" not in e[1]["row_after"]
    assert e[1]["payload"].get("omitted") == {"row_before": ["body"], "row_after": ["body"]}
    assert e[0]["row_after"]["body"] == marker(kit.db, NUL)


def test_j5_a_move_to_another_key_and_tenant(kit):
    """Honest use: a row holding a refused value moves to another key and tenant. Safe: the old tenant's
    event holds only row_before (marker) and names it under row_before only; the new tenant's only
    row_after, named under row_after only."""
    mk(kit, "t78_t", "id int PRIMARY KEY, tenant text, body json", tenant_column="tenant")
    kit.writer.execute("INSERT INTO public.t78_t VALUES (1, 'a', %s)", [NUL])
    kit.writer.execute("UPDATE public.t78_t SET tenant = 'b', id = 2")
    e = evs(kit.db, "public.t78_t.update")
    assert len(e) == 2
    out, inn = sorted(e, key=lambda x: x["tenant_id"])
    assert out["tenant_id"] == "a" and out["row_after"] is None and out["row_before"]["body"] == marker(kit.db, NUL)
    assert inn["tenant_id"] == "b" and inn["row_before"] is None and inn["row_after"]["body"] == marker(kit.db, NUL)
    assert out["payload"]["omitted"] == {"row_before": ["body"]}
    assert inn["payload"]["omitted"] == {"row_after": ["body"]}


def test_j6_copy_on_conflict_delete_truncate(kit):
    """Honest use: COPY of refused values, INSERT ... ON CONFLICT DO UPDATE to another refused value,
    DELETE, TRUNCATE. Safe: each captured, markers and notes in place, nothing refused."""
    mk(kit, "t78_c", "id int PRIMARY KEY, body json, tags json[]")
    with kit.writer.cursor() as cur, cur.copy("COPY public.t78_c FROM STDIN") as cp:
        cp.write_row((1, NUL, "{" + json.dumps(LONE) + "}"))
        cp.write_row((2, '{"ok": 1}', None))
    kit.writer.execute("INSERT INTO public.t78_c VALUES (2, %s, NULL) ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
                       [WIDE])
    kit.writer.execute("DELETE FROM public.t78_c WHERE id = 1")
    kit.writer.execute("TRUNCATE public.t78_c")
    e = evs(kit.db, "public.t78_c.")
    kinds = [x["kind"].rsplit(".", 1)[1] for x in e]
    assert kinds == ["insert", "insert", "update", "delete", "truncate"]
    assert e[0]["payload"] == {"omitted": {"row_after": ["body", "tags"]}}
    assert e[1]["payload"] == {} and e[1]["row_after"]["body"] == {"ok": 1}
    assert e[2]["payload"] == {"omitted": {"row_after": ["body"]}} and e[2]["row_after"]["body"] == marker(kit.db, WIDE)
    assert e[3]["payload"] == {"omitted": {"row_before": ["body", "tags"]}}


def test_j7_partitions_with_other_column_orders(kit):
    """Honest use: a tracked partitioned table whose partitions have other column orders and a dropped
    column; refused values written to each, and a row moved across partitions. Safe: all captured with
    markers and notes."""
    kit.owner.execute("""CREATE TABLE public.t78_p (id int, k int, body json, PRIMARY KEY (id, k)) PARTITION BY LIST (k);
                         CREATE TABLE public.t78_p1 (gone int, body json, k int NOT NULL, id int NOT NULL);
                         ALTER TABLE public.t78_p1 DROP COLUMN gone;
                         ALTER TABLE public.t78_p ATTACH PARTITION public.t78_p1 FOR VALUES IN (1);
                         CREATE TABLE public.t78_p2 PARTITION OF public.t78_p FOR VALUES IN (2);
                         GRANT ALL ON public.t78_p TO app_writer""")
    enable_tracking(kit.maint, "public.t78_p")
    kit.writer.execute("INSERT INTO public.t78_p VALUES (1, 1, %s), (2, 2, %s)", [NUL, LONE])
    kit.writer.execute("UPDATE public.t78_p SET k = 2 WHERE id = 1")
    e = evs(kit.db, "public.t78_p.")
    assert len(e) >= 3
    assert all(x["payload"].get("omitted") for x in e), e
    ins = [x for x in e if x["kind"].endswith("insert")]
    assert {json.dumps(x["row_after"]["body"]) for x in ins[:2]} == {json.dumps(marker(kit.db, NUL)),
                                                                       json.dumps(marker(kit.db, LONE))}


def test_j8_a_column_made_json_added_or_renamed_after_tracking(kit):
    """Honest use: after tracking, a text column becomes json, a json column is added, one is renamed to
    an odd name. Safe: refused values written after each change are captured and named by the new name."""
    mk(kit, "t78_s", "id int PRIMARY KEY, body text")
    kit.maint.execute("SELECT audit.disable_tracking('public.t78_s')")
    kit.owner.execute("ALTER TABLE public.t78_s ALTER COLUMN body TYPE json USING body::json")
    enable_tracking(kit.maint, "public.t78_s")
    assert sqlstate_of(kit.writer, "INSERT INTO public.t78_s VALUES (1, %s)", [NUL]) is None
    kit.owner.execute("ALTER TABLE public.t78_s ADD COLUMN extra json")
    assert sqlstate_of(kit.writer, "INSERT INTO public.t78_s VALUES (2, '1', %s)", [LONE]) is None
    kit.owner.execute('ALTER TABLE public.t78_s RENAME COLUMN extra TO "Ex""tra j"')
    assert sqlstate_of(kit.writer, "UPDATE public.t78_s SET id = 3 WHERE id = 2") is None
    e = evs(kit.db, "public.t78_s.")
    mine = [x for x in e if x["kind"].split(".")[-1] in ("insert", "update")]
    assert [x["payload"].get("omitted") for x in mine] == [
        {"row_after": ["body"]}, {"row_after": ["extra"]}, {"row_before": ['Ex"tra j'], "row_after": ['Ex"tra j']}]


def test_j9_the_writers_settings_do_not_change_a_column_by_column_image(db, connect, kit):
    """Attack: a writer login with hostile settings (DateStyle, IntervalStyle, TimeZone,
    extra_float_digits, bytea_output) writes two rows alike but for the json column: one passes the
    quick check (imaged whole), one does not (imaged column by column). Safe: the other columns'
    images are equal."""
    mk(kit, "t78_g", "id int PRIMARY KEY, ts timestamptz, f float8, iv interval, n numeric, d date, b bytea,"
         " box box, body json")
    settings = {"DateStyle": "'SQL, DMY'", "IntervalStyle": "sql_standard", "TimeZone": "'Asia/Kathmandu'",
                "extra_float_digits": "-15", "bytea_output": "escape"}
    with login(db, connect, "t78_w", "app_writer", settings) as w:
        for i, body in ((1, '{"a": 1}'), (2, '"\\u00e9"'), (3, NUL)):
            w.execute("INSERT INTO public.t78_g VALUES (%s, '2026-03-29 01:30:00.123456+00', 0.1, '1 day -2 hours',"
                      " 1.50, '2026-12-05', '\\xdeadbeef', '((0.1,0.2),(0.3,0.4))', %s)", [i, body])
    imgs = [x["row_after"] for x in evs(kit.db, "public.t78_g.insert")]
    strip = [{k: v for k, v in im.items() if k not in ("id", "body")} for im in imgs]
    assert strip[0] == strip[1] == strip[2]


def test_j10_a_jsonb_key_beside_a_refused_json_value(kit):
    """Honest use: a table keyed by jsonb with a json column holding a refused value. Safe: the event is
    named by the key, the row's history reads by it."""
    mk(kit, "t78_k", "k jsonb PRIMARY KEY, body json")
    kit.writer.execute("INSERT INTO public.t78_k VALUES ('{\"a\": [1, \"\\u00e9\"]}', %s)", [NUL])
    kit.writer.execute("UPDATE public.t78_k SET body = '2'")
    e = evs(kit.db, "public.t78_k.")
    assert [x["target_id"] for x in e] == ['{"a": [1, "é"]}'] * 2
    assert kit.reader.execute("SELECT count(*) FROM audit.row_history('public.t78_k', %s)",
                              ['{"a": [1, "é"]}']).fetchone() == (2,)


# ============================================ class N ============================================


def test_n1_a_look_alike_marker_or_an_empty_key_value_is_not_named(kit):
    """Attack: a writer stores a json value that is exactly a marker, and one {"": ["id", "v"]} (the
    shape of the capture's own list), beside a \\u value that jsonb takes (column-by-column path).
    Safe: images hold the values as written, the payload names nothing."""
    mk(kit, "t78_l", "id int PRIMARY KEY, v int, a json, b json")
    fake = json.dumps(marker(kit.db, NUL))
    kit.writer.execute("INSERT INTO public.t78_l VALUES (1, 0, %s, '\"\\u00e9\"'), (2, 0, %s, %s)",
                       [fake, '{"": ["id", "v"]}', '"\\u00e9"'])
    kit.writer.execute("UPDATE public.t78_l SET v = 1")
    e = evs(kit.db, "public.t78_l.")
    assert len(e) == 4 and all(x["payload"] in ({}, None) or "omitted" not in x["payload"] for x in e), e
    assert e[0]["row_after"]["a"] == json.loads(fake) and e[1]["row_after"]["a"] == {"": ["id", "v"]}


def test_n2_a_replaced_json_value_beside_a_large_value(kit):
    """Honest use: a row with a refused json value and a 2 MB text value (replaced as too large). Safe:
    both named once each, the image holding both markers."""
    mk(kit, "t78_big", "id int PRIMARY KEY, body json, big text")
    kit.writer.execute("INSERT INTO public.t78_big VALUES (1, %s, %s)", [NUL, "z" * 2_100_000])
    e = evs(kit.db, "public.t78_big.insert")
    names = e[0]["payload"]["omitted"]["row_after"]
    assert sorted(names) == ["big", "body"] and len(names) == 2
    assert e[0]["row_after"]["body"] == marker(kit.db, NUL) and "$omitted" in e[0]["row_after"]["big"]


@pytest.mark.parametrize("option", ["exclude_columns", "redact_columns"])
def test_n3_a_baselines_notes_leave_out_excluded_or_redacted_columns(kit, option):
    """Honest use: a baseline of rows whose refused values sit in a kept and in an excluded (or redacted)
    column, the other option unset. Safe: the kept one is named, the other not."""
    mk(kit, "t78_b", "id int PRIMARY KEY, body json, hid json",
       "INSERT INTO public.t78_b VALUES (1, '\"\\u0000\"', '\"\\u0000\"'), (2, '1', '\"\\ud800\"')")
    kit.maint.execute("SELECT audit.disable_tracking('public.t78_b')")
    enable_tracking(kit.maint, "public.t78_b", baseline=True, **{option: ["hid"]})
    e = sorted(evs(kit.db, "public.t78_b.baseline"), key=lambda x: x["target_id"])
    assert [x["payload"] for x in e] == [{"omitted": {"row_after": ["body"]}}, {}]


# ============================================ class F ============================================

FTAMPER = {
    "sha": "UPDATE audit.event_log SET row_after = jsonb_set(row_after, '{body,$omitted,sha256}', to_jsonb(repeat('0', 64)))"
           " WHERE kind = 'public.t78_f.insert'",
    "bytes": "UPDATE audit.event_log SET row_after = jsonb_set(row_after, '{body,$omitted,bytes}', '9')"
             " WHERE kind = 'public.t78_f.insert'",
    "note": "UPDATE audit.event_log SET payload = payload - 'omitted' WHERE kind = 'public.t78_f.insert'",
    "note_added": "UPDATE audit.event_log SET payload = jsonb_set(payload, '{omitted,row_after}', '[\"body\", \"v\"]')"
                  " WHERE kind = 'public.t78_f.insert'",
}


def _f_log(kit):
    mk(kit, "t78_f", "id int PRIMARY KEY, body json, v int")
    kit.writer.execute("INSERT INTO public.t78_f VALUES (1, %s, 0)", [NUL])
    kit.writer.execute("UPDATE public.t78_f SET v = 1, body = %s", [LONE])
    assert seal_all(kit.maint) is None


def test_f1_a_log_of_markers_seals_and_both_verifiers_agree(kit):
    _f_log(kit)
    assert kit.db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    assert kit.db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 'public.t78_f.%'").fetchone() == (2,)
    assert both_verifiers(kit.db) == (True, True)


@pytest.mark.parametrize("how", sorted(FTAMPER))
def test_f2_tampering_with_a_marker_or_a_note_is_caught_by_both(kit, how):
    _f_log(kit)
    tamper(kit.db, FTAMPER[how])
    assert both_verifiers(kit.db) == (False, False)


# ============================================ class P ============================================

LOOKALIKES = """
CREATE SCHEMA t78_evil;
CREATE FUNCTION t78_evil.strpos(text, text) RETURNS int LANGUAGE sql AS $$ SELECT CASE WHEN public.spy('strpos') THEN 0 END $$;
CREATE FUNCTION t78_evil.octet_length(text) RETURNS int LANGUAGE sql AS $$ SELECT CASE WHEN public.spy('octet_length') THEN 0 END $$;
CREATE FUNCTION t78_evil.to_jsonb(json) RETURNS jsonb LANGUAGE sql AS $$ SELECT CASE WHEN public.spy('to_jsonb') THEN '1'::jsonb END $$;
CREATE FUNCTION t78_evil.chr(int) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN public.spy('chr') THEN 'q' END $$;
CREATE FUNCTION t78_evil.cat(text, text) RETURNS text LANGUAGE sql AS $$ SELECT CASE WHEN public.spy('||') THEN 'q' END $$;
CREATE OPERATOR t78_evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = t78_evil.cat);
CREATE FUNCTION t78_evil.arrow(jsonb, text) RETURNS jsonb LANGUAGE sql AS $$ SELECT CASE WHEN public.spy('->') THEN '[]'::jsonb END $$;
CREATE OPERATOR t78_evil.-> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = t78_evil.arrow);
CREATE FUNCTION t78_evil.nm(text, text) RETURNS boolean LANGUAGE sql AS $$ SELECT public.spy('!~') $$;
CREATE OPERATOR t78_evil.!~ (LEFTARG = text, RIGHTARG = text, FUNCTION = t78_evil.nm);
CREATE FUNCTION t78_evil.jsonb_build_object(text, json) RETURNS jsonb LANGUAGE sql AS $$ SELECT CASE WHEN public.spy('jbo') THEN '{}'::jsonb END $$;
CREATE FUNCTION t78_evil.coalesce_(boolean, boolean) RETURNS boolean LANGUAGE sql AS $$ SELECT public.spy('coalesce') $$;
CREATE FUNCTION t78_evil.sha256(bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT CASE WHEN public.spy('sha256') THEN '\\x00'::bytea END $$;
CREATE FUNCTION t78_evil.to_jsonb(text[]) RETURNS jsonb LANGUAGE sql AS $$ SELECT CASE WHEN public.spy('to_jsonb[]') THEN '["id"]'::jsonb END $$;
CREATE FUNCTION t78_evil.array_remove(anyarray, anyelement) RETURNS anyarray LANGUAGE sql AS $$ SELECT CASE WHEN public.spy('array_remove') THEN $1 END $$;
CREATE DOMAIN public.t78_spyj AS json CHECK (public.spy('domain check'));
GRANT USAGE ON SCHEMA t78_evil TO PUBLIC;
"""

ALLOWED = {"table_owner", "app_writer", "audit_sandbox"}


def test_p1_look_alikes_and_domain_checks_never_run_as_an_audit_role(db, connect, attacker):
    """Attack: the table owner publishes look-alikes of every function and operator the new helpers use
    (strpos, octet_length, chr, ||, !~, ->, to_jsonb, jsonb_build_object, array_remove) and a domain over
    json whose CHECK spies; the writer puts them ahead of pg_catalog; writes of refused and taken values,
    updates and deletes; then a baseline. Safe: no spy runs as an audit role but the sandbox, nor as the
    maintainer or superuser, and images are right."""
    attacker.execute(LOOKALIKES)
    attacker.execute("""CREATE TABLE public.t78_pv (id int PRIMARY KEY, body json, d public.t78_spyj, tags json[]);
                        GRANT ALL ON public.t78_pv TO app_writer;
                        INSERT INTO public.t78_pv VALUES (100, '"\\u0000"', '"\\ud800"', ARRAY['"\\u00e9"'::json])""")
    maint = connect("app_maintainer")
    enable_tracking(maint, "public.t78_pv")
    w = connect("app_writer")
    w.execute("SET search_path = t78_evil, public, pg_catalog")
    w.execute("INSERT INTO public.t78_pv VALUES (1, %s, %s, ARRAY[%s::json]), (2, '\"\\u00e9\"', '1', NULL)",
              [NUL, LONE, WIDE])
    w.execute("UPDATE public.t78_pv SET id = id + 10")
    w.execute("DELETE FROM public.t78_pv WHERE id = 11")
    maint.execute("SELECT audit.disable_tracking('public.t78_pv')")
    maint.execute("SET search_path = t78_evil, public, pg_catalog")
    enable_tracking(maint, "public.t78_pv", baseline=True)
    who = {r[0] for r in db.execute("SELECT DISTINCT who FROM public.who_ran")}
    forged = db.execute("SELECT count(*) FROM public.who_ran WHERE forged").fetchone()[0]
    assert who <= ALLOWED and forged == 0, who
    e = evs(db, "public.t78_pv.")
    assert e[0]["row_after"]["body"] == marker(db, NUL) and e[1]["row_after"]["body"] == "é"
    assert len([x for x in e if x["kind"].endswith("baseline")]) == 2


def test_p2_the_writers_temporary_look_alikes_and_a_policy_in_a_json_capture(db, connect, attacker):
    """Attack: the writer makes temporary tables named like the transition tables and the generated
    aliases (new_rows, old_rows, q, s, p) and temporary look-alike functions, the owner a row security
    policy that spies; refused values are written, updated and deleted. Safe: images and notes right, no
    spy as an audit role."""
    attacker.execute(LOOKALIKES)
    attacker.execute("""CREATE TABLE public.t78_rls (id int PRIMARY KEY, body json);
                        GRANT ALL ON public.t78_rls TO app_writer;
                        ALTER TABLE public.t78_rls ENABLE ROW LEVEL SECURITY;
                        ALTER TABLE public.t78_rls FORCE ROW LEVEL SECURITY;
                        CREATE POLICY spyp ON public.t78_rls USING (public.spy('policy')) WITH CHECK (public.spy('policy'))""")
    enable_tracking(connect("app_maintainer"), "public.t78_rls")
    w = connect("app_writer")
    for t in ("new_rows", "old_rows", "q", "s", "p", "x"):
        w.execute(f"CREATE TEMP TABLE {t} (j jsonb, jk jsonb, o jsonb, n jsonb, jo jsonb, jn jsonb)")
        w.execute(f"INSERT INTO pg_temp.{t} VALUES ('{{\"\": [\"id\"]}}', '[\"id\"]', '{{}}', '{{}}', '[\"id\"]', '[\"id\"]')")
    w.execute("CREATE FUNCTION pg_temp.to_jsonb(json) RETURNS jsonb LANGUAGE sql AS $$ SELECT '1'::jsonb $$")
    w.execute("SET search_path = pg_temp, t78_evil, public, pg_catalog")
    w.execute("INSERT INTO public.t78_rls VALUES (1, %s), (2, '\"\\u00e9\"')", [NUL])
    w.execute("UPDATE public.t78_rls SET id = id + 10")
    w.execute("DELETE FROM public.t78_rls")
    who = {r[0] for r in db.execute("SELECT DISTINCT who FROM public.who_ran")}
    assert who <= ALLOWED, who
    e = evs(db, "public.t78_rls.")
    assert [x["kind"].rsplit(".", 1)[1] for x in e] == ["insert"] * 2 + ["update"] * 2 + ["delete"] * 2
    assert [x["payload"].get("omitted") for x in e] == [
        {"row_after": ["body"]}, None, {"row_before": ["body"], "row_after": ["body"]}, None, {"row_before": ["body"]}, None]
    assert e[1]["row_after"]["body"] == "é"


# ============================================ class C ============================================


def test_c1_many_rows_with_a_few_hostile_values(kit):
    """Honest use: one INSERT of 5,000 rows, three of them refused values. Safe: 5,000 events, exactly
    those three named, the rest imaged as to_jsonb."""
    mk(kit, "t78_m", "id int PRIMARY KEY, body json")
    kit.writer.execute("INSERT INTO public.t78_m SELECT g, CASE WHEN g IN (7, 2500, 4999) THEN %s::json"
                       " ELSE json_build_object('g', g) END FROM generate_series(1, 5000) g", [NUL])
    assert n_events(kit.db, "public.t78_m.insert") == 5000
    named = kit.db.execute("SELECT array_agg(target_id::int ORDER BY target_id::int) FROM audit.events"
                           " WHERE kind = 'public.t78_m.insert' AND payload ? 'omitted'").fetchone()[0]
    assert named == [7, 2500, 4999]


@pytest.mark.parametrize("hostile_value", [
    pytest.param('"\\u0000"', marks=pytest.mark.xfail(strict=True, reason=(
        "a known cost (docs/capture.md): each value jsonb cannot hold is tried in a subtransaction, twice (its image and "
        "its note); a writer's own statement of such values in every row is about twenty times slower; strict, so that "
        "a change that closes it says so"))),
    '"\\u00e9"'], ids=["nul", "taken"])
def test_c2_hostile_values_in_every_row_cost(kit, hostile_value):
    """Cost: 8,000 rows each holding a \\u escape in three json columns (\\u0000, refused; or \\u00e9,
    taken, as Python's json.dumps writes every non-ASCII character), against 8,000 plain rows. Safe:
    captured, at most four times the plain statement's time."""
    mk(kit, "t78_cp", "id int PRIMARY KEY, a json, b json, c json")
    mk(kit, "t78_ch", "id int PRIMARY KEY, a json, b json, c json")
    t0 = time.monotonic()
    kit.writer.execute("INSERT INTO public.t78_cp SELECT g, '{\"a\": 1}', '[1]', '\"x\"' FROM generate_series(1, 8000) g")
    plain = time.monotonic() - t0
    t0 = time.monotonic()
    kit.writer.execute("INSERT INTO public.t78_ch SELECT g, %s::json, %s::json, %s::json"
                       " FROM generate_series(1, 8000) g", [hostile_value] * 3)
    hostile = time.monotonic() - t0
    assert n_events(kit.db, "public.t78_ch.insert") == 8000
    assert hostile <= 4 * max(plain, 0.05), f"plain {plain:.2f}s, hostile {hostile:.2f}s"


def test_c3_huge_refused_values(kit):
    """Honest use: a 12 MB json value with \\u0000 at its end, and a json[] of 200 refused elements.
    Safe: captured, the markers' bytes the text's length."""
    mk(kit, "t78_hg", "id int PRIMARY KEY, body json, tags json[]")
    huge = '{"s": "' + "a" * 12_000_000 + '\\u0000"}'
    kit.writer.execute("INSERT INTO public.t78_hg VALUES (1, %s, (SELECT array_agg(%s::json) FROM generate_series(1, 200)))",
                       [huge, LONE])
    e = evs(kit.db, "public.t78_hg.insert")
    assert e[0]["row_after"]["body"]["$omitted"]["bytes"] == len(huge)
    assert e[0]["payload"] == {"omitted": {"row_after": ["body", "tags"]}}


def _deepest(conn, table: str, inner: str) -> int:
    lo, hi = 1000, 400_000
    while hi - lo > 50:
        mid = (lo + hi) // 2
        if sqlstate_of(conn, f"INSERT INTO {table} VALUES (0, %s)", ["[" * mid + inner + "]" * mid]) is None:
            conn.execute(f"DELETE FROM {table}")
            lo = mid
        else:
            hi = mid
    return lo


@pytest.mark.parametrize("inner", ["1", NUL], ids=["plain", "nul"])
def test_c4_deep_nesting_json_takes_is_captured(kit, inner):
    """Attack: json as deep as the writer's json input takes (found by bisection on an untracked table),
    its innermost value plain or \\u0000, written to a tracked table. Safe: the write is captured, not
    refused (a stack depth error in to_jsonb is no reason to refuse what json took)."""
    kit.owner.execute("CREATE TABLE public.t78_dplain (id int, body json); GRANT ALL ON public.t78_dplain TO app_writer")
    depth = _deepest(kit.writer, "public.t78_dplain", inner)
    mk(kit, "t78_deep", "id int PRIMARY KEY, body json")
    state = sqlstate_of(kit.writer, "INSERT INTO public.t78_deep VALUES (1, %s)", ["[" * depth + inner + "]" * depth])
    assert state is None, f"depth {depth}: {state}"
    assert n_events(kit.db, "public.t78_deep.insert") == 1


def test_c5_a_refused_write_leaves_nothing_half_written(kit):
    """Failure: a statement that fails in capture (the number of j2, if it fails) leaves no row and no
    event, and the next write is captured."""
    mk(kit, "t78_hw", "id int PRIMARY KEY, body json")
    kit.writer.execute("INSERT INTO public.t78_hw VALUES (1, %s)", [NUL])
    state = sqlstate_of(kit.writer, "INSERT INTO public.t78_hw VALUES (2, '1'), (3, %s)", [DSCALE])
    rows = kit.db.execute("SELECT count(*) FROM public.t78_hw").fetchone()[0]
    ev = n_events(kit.db, "public.t78_hw.insert")
    assert (rows, ev) == ((1, 1) if state else (3, 3))
    kit.writer.execute("INSERT INTO public.t78_hw VALUES (4, %s)", [WIDE])
    assert n_events(kit.db, "public.t78_hw.insert") == ev + 1


def test_j11_a_2d_domain_array_with_a_refused_element(kit):
    """Honest use: a domain over json[] (with a CHECK) holding a 2-D array, a NULL and one refused
    element. Safe: the column's marker is of the array's text, named; other columns imaged. (Its JSON
    text since trial 79's mends: a marker is of what to_json prints, inline, in the sandbox and in a
    baseline alike, so that the images of one row agree whichever made them.)"""
    kit.owner.execute("CREATE DOMAIN public.t78_dja2 AS json[] CHECK (cardinality(VALUE) < 10)")
    mk(kit, "t78_a2", "id int PRIMARY KEY, arr public.t78_dja2, ok json[]")
    kit.writer.execute("INSERT INTO public.t78_a2 VALUES (1, ARRAY[[%s::json, NULL], ['1'::json, '2'::json]], ARRAY['[1]'::json])", [LONE])
    text = kit.db.execute("SELECT to_json(arr)::text FROM public.t78_a2").fetchone()[0]
    e = evs(kit.db, "public.t78_a2.insert")
    assert e[0]["row_after"] == {"id": 1, "arr": marker(kit.db, text), "ok": [[1]]}
    assert e[0]["payload"] == {"omitted": {"row_after": ["arr"]}}


def test_n4_a_json_tenant_column_holding_a_refused_value(kit):
    """Attack: the tenant column is json and a writer puts a refused value in it. Safe: the write is
    refused, or the event is filed under no tenant made of the capture's marker."""
    try:
        mk(kit, "t78_tj", "id int PRIMARY KEY, ten json, v int", tenant_column="ten")
    except PgAuditError as e:  # since trial 78's mend, a json tenant column is refused (PA005): held
        assert "tenant column" in str(e)
        return
    state = sqlstate_of(kit.writer, "INSERT INTO public.t78_tj VALUES (1, %s, 0)", ['"acme\\u0000"'])
    tenants = [r[0] for r in kit.db.execute("SELECT tenant_id FROM audit.events WHERE kind = 'public.t78_tj.insert'")]
    assert state is not None or not any("$omitted" in (t or "") for t in tenants), tenants


def test_n5_a_baseline_and_a_capture_name_the_same_rows_replacements_alike(kit):
    """Honest use: the same row (refused values in columns z then a) taken by a baseline and written after
    tracking. Safe: both payloads name the columns alike."""
    mk(kit, "t78_o", "id int PRIMARY KEY, z json, a json",
       "INSERT INTO public.t78_o VALUES (1, '\"\\u0000\"', '\"\\u0000\"')")
    kit.maint.execute("SELECT audit.disable_tracking('public.t78_o')")
    enable_tracking(kit.maint, "public.t78_o", baseline=True)
    kit.writer.execute("INSERT INTO public.t78_o VALUES (2, %s, %s)", [NUL, NUL])
    base = evs(kit.db, "public.t78_o.baseline")[0]["payload"]
    cap = evs(kit.db, "public.t78_o.insert")[0]["payload"]
    assert base == cap


def test_j12_no_skip_of_noop_updates_and_a_generated_json_column(kit):
    """Honest use: skip_noop_updates off; a generated json column that becomes a refused value when a
    text column is set. Safe: the no-op UPDATE is an event, notes name the generated column on the
    right sides, its marker is of its text."""
    mk(kit, "t78_gj", "id int PRIMARY KEY, note text, gen json GENERATED ALWAYS AS (('\"' || note || '\"')::json) STORED",
       skip_noop_updates=False)
    kit.writer.execute("INSERT INTO public.t78_gj (id, note) VALUES (1, 'ok')")
    kit.writer.execute("UPDATE public.t78_gj SET note = '\\u0000'")
    kit.writer.execute("UPDATE public.t78_gj SET note = note")
    e = evs(kit.db, "public.t78_gj.")
    assert [x["kind"].rsplit(".", 1)[1] for x in e] == ["insert", "update", "update"]
    assert e[1]["payload"] == {"omitted": {"row_after": ["gen"]}}
    assert e[2]["payload"] == {"omitted": {"row_before": ["gen"], "row_after": ["gen"]}}
    assert e[2]["row_after"]["gen"] == marker(kit.db, NUL)


def test_j13_merge_and_writable_ctes_with_refused_values(kit):
    """Honest use: MERGE inserting and updating refused values, and a statement of writable CTEs doing
    all three. Safe: every row captured, notes right."""
    mk(kit, "t78_mg", "id int PRIMARY KEY, body json")
    kit.writer.execute("INSERT INTO public.t78_mg VALUES (1, '1'), (2, %s)", [NUL])
    kit.writer.execute("MERGE INTO public.t78_mg t USING (VALUES (1, %s::json), (3, %s::json)) v(id, body) ON t.id = v.id"
                       " WHEN MATCHED THEN UPDATE SET body = v.body WHEN NOT MATCHED THEN INSERT VALUES (v.id, v.body)",
                       [LONE, WIDE])
    kit.writer.execute("WITH a AS (INSERT INTO public.t78_mg VALUES (4, %s) RETURNING 1),"
                       " b AS (UPDATE public.t78_mg SET body = '2' WHERE id = 2 RETURNING 1),"
                       " c AS (DELETE FROM public.t78_mg WHERE id = 3 RETURNING 1) SELECT 1", [NUL])
    e = evs(kit.db, "public.t78_mg.")
    got = sorted((x["kind"].rsplit(".", 1)[1], x["target_id"], json.dumps(x["payload"].get("omitted"), sort_keys=True))
                 for x in e)
    assert got == sorted([
        ("insert", "1", "null"), ("insert", "2", '{"row_after": ["body"]}'),
        ("update", "1", '{"row_after": ["body"]}'), ("insert", "3", '{"row_after": ["body"]}'),
        ("insert", "4", '{"row_after": ["body"]}'), ("update", "2", '{"row_before": ["body"]}'),
        ("delete", "3", '{"row_before": ["body"]}')])


def test_n6_a_redacted_refused_json_column_changing_is_reported_as_a_redacted_change_only(kit):
    """Honest use: a redacted json column changes from one refused value to another, and from a
    refused value to a plain one. Safe: `changed` lists it with [redacted] on both sides, the payload
    never names it as replaced, the image holds '[redacted]'."""
    mk(kit, "t78_rd", "id int PRIMARY KEY, red json, v int", redact_columns=["red"])
    kit.writer.execute("INSERT INTO public.t78_rd VALUES (1, %s, 0)", [NUL])
    kit.writer.execute("UPDATE public.t78_rd SET red = %s", [LONE])
    kit.writer.execute("UPDATE public.t78_rd SET red = '1'")
    e = evs(kit.db, "public.t78_rd.update")
    assert len(e) == 2
    for x in e:
        assert x["row_before"]["red"] == x["row_after"]["red"] == "[redacted]"
        assert "omitted" not in x["payload"], x["payload"]
        assert x["changed"] == {"red": {"old": "[redacted]", "new": "[redacted]"}}, x["changed"]


def test_j14_a_baseline_and_a_capture_image_the_same_values_alike(kit):
    """Honest use: the same values (refused and taken; json, json[] with bounds [2:3], a domain over json[]
    2-D) in a row taken by a baseline and in a row written after tracking. Safe: images equal but id."""
    kit.owner.execute("CREATE DOMAIN public.t78_dd AS json[]")
    vals = [NUL, '"\\u00e9"', LONE, WIDE, '[1, {"a": "e99999"}]']
    cols = ", ".join(f"a{i} json, b{i} json[], c{i} public.t78_dd" for i in range(len(vals)))
    kit.owner.execute(f"CREATE TABLE public.t78_bc (id int PRIMARY KEY, {cols}); GRANT ALL ON public.t78_bc TO app_writer")
    ins = ("INSERT INTO public.t78_bc VALUES (%s, " + ", ".join(
        "%s::json, %s::json[], ARRAY[[%s::json], [NULL::json]]" for _ in vals) + ")")
    lit = lambda v: '[2:3]={"' + v.replace("\\", "\\\\").replace('"', '\\"') + '",NULL}'  # noqa: E731
    args = [a for v in vals for a in (v, lit(v), v)]
    kit.owner.execute(ins, [1, *args])
    enable_tracking(kit.maint, "public.t78_bc", baseline=True)
    kit.writer.execute(ins, [2, *args])
    base = evs(kit.db, "public.t78_bc.baseline")[0]
    cap = evs(kit.db, "public.t78_bc.insert")[0]
    b = {k: v for k, v in base["row_after"].items() if k != "id"}
    c = {k: v for k, v in cap["row_after"].items() if k != "id"}
    diff = {k: (b[k], c.get(k)) for k in b if b[k] != c.get(k)}
    assert diff == {} and set(b) == set(c)
    assert sorted(base["payload"]["omitted"]["row_after"]) == sorted(cap["payload"]["omitted"]["row_after"])


def test_c6_four_hundred_json_columns_all_refused(kit):
    """Honest use (wide): 400 json columns, each holding a refused value in one row, a taken \\u value in
    another. Safe: both captured; the first names all 400, the second none and equals to_jsonb."""
    cols = ", ".join(f"j{i} json" for i in range(400))
    mk(kit, "t78_400", f"id int PRIMARY KEY, {cols}")
    kit.writer.execute("INSERT INTO public.t78_400 SELECT 1, " + ", ".join([f"'{NUL}'"] * 400))
    kit.writer.execute("INSERT INTO public.t78_400 SELECT 2, " + ", ".join(["'\"\\u00e9\"'"] * 400))
    e = {x["target_id"]: x for x in evs(kit.db, "public.t78_400.insert")}
    assert sorted(e["1"]["payload"]["omitted"]["row_after"]) == sorted(f"j{i}" for i in range(400))
    assert e["2"]["payload"] == {}
    assert kit.db.execute("SELECT e.row_after = to_jsonb(t.*) FROM audit.events e JOIN public.t78_400 t ON t.id = 2"
                          " WHERE e.kind = 'public.t78_400.insert' AND e.target_id = '2'").fetchone() == (True,)


def test_n7_columns_named_like_the_markers_and_notes(kit):
    """Attack: columns named "$omitted", "omitted", "row_after" and "wild_number", refused values in the
    first two, a forged marker in the third. Safe: exactly the two named; the log seals and both
    verifiers say intact."""
    mk(kit, "t78_mk", 'id int PRIMARY KEY, "$omitted" json, omitted json, row_after json, wild_number json')
    kit.writer.execute("INSERT INTO public.t78_mk VALUES (1, %s, %s, %s, '1')",
                       [NUL, LONE, json.dumps(marker(kit.db, NUL))])
    kit.writer.execute("UPDATE public.t78_mk SET wild_number = '2'")
    e = evs(kit.db, "public.t78_mk.")
    assert e[0]["payload"] == {"omitted": {"row_after": ["$omitted", "omitted"]}}
    assert e[1]["payload"] == {"omitted": {"row_before": ["$omitted", "omitted"], "row_after": ["$omitted", "omitted"]}}
    assert e[0]["row_after"]["$omitted"] == marker(kit.db, NUL)
    assert seal_all(kit.maint) is None and both_verifiers(kit.db) == (True, True)


def test_n8_a_refused_value_beside_a_wild_number_is_named_once_each_before_and_after_sealing(kit):
    """Honest use: one json column holds a wild number jsonb takes (1e9999, replaced by the sealer), another
    a refused value, a third both in one value (refused as a whole). Safe: pending and sealed, each column
    named once; both verifiers say intact."""
    mk(kit, "t78_wn", "id int PRIMARY KEY, a json, b json, c json")
    kit.writer.execute("INSERT INTO public.t78_wn VALUES (1, '[1e9999]', %s, '[1e9999, \"\\u0000\"]')", [NUL])
    pending = evs(kit.db, "public.t78_wn.insert")[0]["payload"]["omitted"]["row_after"]
    assert seal_all(kit.maint) is None
    sealed = kit.db.execute("SELECT payload -> 'omitted' -> 'row_after', row_after FROM audit.event_log"
                            " WHERE kind = 'public.t78_wn.insert'").fetchone()
    assert sorted(pending) == ["a", "b", "c"] and len(pending) == 3
    assert sorted(sealed[0]) == ["a", "b", "c"] and len(sealed[0]) == 3
    assert sealed[1]["c"] == marker(kit.db, '[1e9999, "\\u0000"]')
    assert both_verifiers(kit.db) == (True, True)


def test_j2b_a_row_holding_that_number_from_before_tracking_stays_changeable(kit):
    """Honest use: a row holding the number of j2 (written before tracking, no baseline); the writer
    then changes another column and deletes it. Safe: both captured (trial 76's v1b, for this value)."""
    mk(kit, "t78_d2", "id int PRIMARY KEY, body json, v int", f"INSERT INTO public.t78_d2 VALUES (1, '{DSCALE}', 0)")
    assert sqlstate_of(kit.writer, "UPDATE public.t78_d2 SET v = 1") is None
    assert sqlstate_of(kit.writer, "DELETE FROM public.t78_d2") is None
    assert n_events(kit.db, "public.t78_d2.update") == 1 and n_events(kit.db, "public.t78_d2.delete") == 1


def test_j15_key_moves_and_swaps_read_as_they_do_without_a_refused_value(kit):
    """Differential: two tables alike but for one json value (refused in one, plain in the other); the
    same key moves (with a value change), a tenant move and delete in each. Safe: kinds, keys,
    tenants, `changed` keys and payloads (but the json notes) are the same."""
    outs = []
    for name, val in (("t78_ka", NUL), ("t78_kb", '"plain"')):
        mk(kit, name, "id int PRIMARY KEY, ten text, body json, v int", tenant_column="ten")
        w = kit.writer
        w.execute(f"INSERT INTO public.{name} VALUES (1, 'a', %s, 0), (2, 'a', %s, 0)", [val, val])
        w.execute(f"UPDATE public.{name} SET id = id + 10")
        w.execute(f"UPDATE public.{name} SET id = id + 10, v = 5 WHERE id = 12")
        w.execute(f"UPDATE public.{name} SET ten = 'b', v = 1 WHERE id = 11")
        w.execute(f"DELETE FROM public.{name}")
        rows = []
        for x in evs(kit.db, f"public.{name}."):
            p = dict(x["payload"] or {})
            p.pop("omitted", None)
            p.pop("statement", None)
            rows.append((x["kind"].rsplit(".", 1)[1], x["target_id"], x["tenant_id"], json.dumps(p, sort_keys=True),
                         sorted(x["changed"] or [])))
        outs.append(sorted(rows))
    assert outs[0] == outs[1]


@pytest.mark.parametrize("twin", [True, False], ids=["with_twin", "alone"])
def test_j17_a_column_named_with_the_text_the_generator_replaces(kit, twin):
    """Attack: the generator turns its INSERT and DELETE image subquery's ') AS q' into ') AS s' by
    text replacement (pg_catalog.replace over the whole generated text). The owner names a column
    'k) AS q' (and, with a twin, another 'k) AS s'); a row on the column-by-column path (a \\u escape in
    its json) is written and deleted. Safe: the write is captured and its image is to_jsonb of the row:
    'k) AS q' holds its own value, not its twin's, and is not lost."""
    twin_col = ', "k) AS s" text' if twin else ""
    mk(kit, "t78_rq", f'id int PRIMARY KEY, body json, "k) AS q" text{twin_col}')
    vals = "(1, '\"\\u00e9\"', 'own value of q'" + (", 'the twin''s value'" if twin else "") + ")"
    state = sqlstate_of(kit.writer, f"INSERT INTO public.t78_rq VALUES {vals}")
    assert state is None, f"an honest write refused: {state}"
    same = kit.db.execute("SELECT e.row_after = to_jsonb(t.*), e.row_after::text FROM audit.events e, public.t78_rq t"
                          " WHERE e.kind = 'public.t78_rq.insert'").fetchone()
    kit.writer.execute("DELETE FROM public.t78_rq")
    gone = kit.db.execute("SELECT row_before::text FROM audit.events WHERE kind = 'public.t78_rq.delete'").fetchone()
    assert same[0], same[1]
    assert gone is not None and "own value of q" in gone[0], gone


def test_j17b_that_column_name_alone_refuses_even_plain_writes(kit):
    """Attack (write denial): only the column 'k) AS q' beside a json column; plain values (no \\u,
    imaged whole). Safe: INSERT and DELETE captured, not refused."""
    mk(kit, "t78_rp", 'id int PRIMARY KEY, body json, "k) AS q" text')
    states = [sqlstate_of(kit.writer, "INSERT INTO public.t78_rp VALUES (1, '{\"a\": 1}', 'q')"),
              sqlstate_of(kit.owner, "INSERT INTO public.t78_rp VALUES (2, '{\"a\": 1}', 'q')")]
    assert states == [None, None]
    assert n_events(kit.db, "public.t78_rp.insert") == 2


def test_j17c_the_key_and_tenant_named_so_file_the_event_under_no_key_or_tenant(kit):
    """Attack: as j17, the key column is 'k) AS q' and the tenant column 'ten) AS q', with twins
    'k) AS s' and 'ten) AS s'; the writer puts a \\u escape in the json column. Safe: the INSERT and
    DELETE are filed under the row's own key (1) and tenant (acme), as a plain row's are."""
    mk(kit, "t78_rk", '"k) AS q" int PRIMARY KEY, "ten) AS q" text, body json, "k) AS s" int, "ten) AS s" text',
       tenant_column="ten) AS q")
    out = []
    for i, body in ((1, '"\\u00e9"'), (2, '"plain"')):
        state = sqlstate_of(kit.writer, "INSERT INTO public.t78_rk VALUES (%s, 'acme', %s, 999, 'other')", [i, body])
        out.append(state)
    kit.writer.execute("DELETE FROM public.t78_rk")
    got = kit.db.execute("SELECT kind, target_id, tenant_id FROM audit.events WHERE starts_with(kind, 'public.t78_rk.')"
                         " ORDER BY intake_id").fetchall()
    assert out == [None, None]
    assert sorted(map(str, got)) == sorted(map(str, [("public.t78_rk.insert", "1", "acme"), ("public.t78_rk.insert", "2", "acme"),
                                                     ("public.t78_rk.delete", "1", "acme"), ("public.t78_rk.delete", "2", "acme")])), got
