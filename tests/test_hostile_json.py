"""Hostile JSON is data: every payload PostgreSQL's jsonb accepts seals, verifies in SQL and in Python
alike, archives, verifies from the archive and restores; what jsonb refuses is refused with nothing
written. (A payload 1,500 levels deep, or {"n": 1e5000}, used to make the Python verifiers raise for
as long as the event was kept; U+2028 in a value broke the archive's lines.)"""

from __future__ import annotations

import os
from datetime import timedelta

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.rows import dict_row

from pgaudit_py import archive as archiving
from pgaudit_py import canonical, seal
from pgaudit_py.archive_targets import open_target
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import Keys

NAMED = {
    "deep": '{"d": ' + "[" * 1500 + "1" + "]" * 1500 + "}",
    "deep objects": '{"d": ' + '{"a": ' * 1200 + "null" + "}" * 1200 + "}",
    "big but tame numbers": '{"n": 1e399, "m": -1e399, "f": 1.7976931348623157e308, "t": 1e-399}',
    "long integer": '{"n": ' + "9" * 400 + "}",
    "tiny number": '{"n": -1.5e-300, "z": -0.0, "s": 1.500}',
    "line separators": '{"s": "a\u2028b\u2029c\u0085d\\u2028e"}',
    "every escape": '{"s": "\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0001 \\u001f \\u007f \\u00e9 \\ud83d\\ude00"}',
    "odd keys": '{"": 1, "\\n": 2, "é": 3, "\u2028": 4}',
    "wide": "{" + ", ".join(f'"k{i}": {i}' for i in range(3000)) + "}",
}
REFUSED = {
    "lone high surrogate": '{"s": "\\ud800"}',
    "lone low surrogate": '{"s": "\\udc00 x"}',
    "nul": '{"s": "\\u0000"}',
    "out of range": '{"n": 1e200000}',
}


def record_raw(conn: psycopg.Connection, text: str) -> None:
    conn.execute("SELECT audit.record(kind => 'hostile.payload', payload => %s::jsonb)", (text,))


canonical_columns = ", ".join(
    f"l.{name}::text AS {name}" if name in ("client_addr", "txid", *canonical.JSON_FIELDS) else f"l.{name}"
    for name in canonical.EVENT_FIELDS)


def both_verify(db: psycopg.Connection) -> None:
    assert db.execute("SELECT ok, problem FROM audit.verify()").fetchone() == (True, None)
    python = verify_chain(db)
    assert (python.ok, python.problem) == (True, None)
    with db.cursor(row_factory=dict_row) as cur:
        # Every JSON value as text: psycopg would parse it into Python objects, as deep as it is.
        rows = cur.execute(f"""SELECT {canonical_columns}, audit._canonical_event(l, b.canonical_version) AS line,
                                      b.canonical_version
                                 FROM audit.event_log l JOIN audit.blocks b USING (block_no)""").fetchall()
    for row in rows:
        assert canonical.event_line(row, row["canonical_version"]) == row["line"]


@pytest.mark.parametrize("name", NAMED)
def test_what_jsonb_accepts_verifies_everywhere(db, connect, tmp_path, name):
    record_raw(connect("app_writer"), NAMED[name])
    seal(db)
    both_verify(db)
    private = Ed25519PrivateKey.generate()
    keys = Keys(signing_key=private, public_key=private.public_key(), hmac_key=os.urandom(32))
    target = open_target(f"file://{tmp_path}/archive")
    run = archiving.archive(db, target, keys, older_than=timedelta(milliseconds=1))
    assert run.events == 1
    checked = archiving.verify_archive(db, target, keys)
    assert (checked.problems, checked.events_checked) == ([], 1)
    assert archiving.restore_batch(db, target, run.batches[0].batch_id) == 1
    restored = db.execute("SELECT event -> 'payload' = (%s::jsonb) FROM audit.restored_events", (NAMED[name],))
    assert restored.fetchone() == (True,)


@pytest.mark.parametrize("name", REFUSED)
def test_what_jsonb_refuses_writes_nothing(db, connect, counts, name):
    with pytest.raises(psycopg.DataError):
        record_raw(connect("app_writer"), REFUSED[name])
    assert counts() == (0, 0)


# Generated: JSON text written out by hand, so that escapes, number forms and nesting are as given.
_strings = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=20).map(
    lambda s: '"' + "".join({'"': '\\"', "\\": "\\\\"}.get(c, c) if c >= " " else f"\\u{ord(c):04x}"
                            for c in s) + '"')
_escapes = st.sampled_from(['"\\u2028"', '"\\u0085"', '"\u0085\u2028\u2029"', '"\\ud83d\\ude00"', '"\\ud800"',
                            '"\\udfff"', '"\\u0000"', '"\\/"', '"\\b\\f\\n\\r\\t"', '"\\u00E9"'])
_numbers = st.one_of(st.integers(min_value=-(10 ** 60), max_value=10 ** 60).map(str),
                     st.sampled_from(["1e5000", "-1e-5000", "1E+3", "1.500", "-0", "-0.0", "0e10", "1e131071",
                                      "12345678901234567890.123456789012345678901234567890", "1e200000"]))
_scalars = st.one_of(_strings, _escapes, _numbers, st.sampled_from(["true", "false", "null"]))
_json = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
    st.lists(st.tuples(st.one_of(_strings, _escapes), inner), max_size=4).map(
        lambda pairs: "{" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}")), max_leaves=12)
_payloads = st.tuples(_json, st.integers(min_value=0, max_value=1200)).map(
    lambda p: '{"v": ' + "[" * p[1] + p[0] + "]" * p[1] + "}")


@pytest.fixture
def writer(connect):
    return connect("app_writer")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=_payloads)
def test_generated_hostile_payloads_and_both_verifiers_agree(db, writer, payload):
    before = db.execute("SELECT count(*) FROM audit.events").fetchone()[0]
    try:
        record_raw(writer, payload)
    except psycopg.Error as refused:
        # jsonb refused it (a lone surrogate, \u0000, a number out of range: class 22), or record()
        # did (more than 64 KiB: PA002)
        assert refused.sqlstate is not None and (refused.sqlstate.startswith("22") or refused.sqlstate == "PA002")
        assert db.execute("SELECT count(*) FROM audit.events").fetchone()[0] == before
        return
    seal(db)
    both_verify(db)


WILD = {
    "huge number": '{"n": 1e5000}',
    "huge negative": '{"n": -1e131071}',
    "tiny number": '{"n": 1e-5000}',
    "deep in an array": '{"a": [1, [2, {"b": 1e400}]]}',
    "401 digits": '{"n": 1' + "0" * 400 + "}",
}


@pytest.mark.parametrize("name", WILD)
def test_a_payload_with_a_wild_number_is_refused_before_it_is_printed(db, connect, counts, name):
    """A number of magnitude 1e400 or more (or non-zero below 1e-400) takes bytes to store and
    prints as up to 131,072 digits: record() refuses it before printing anything."""
    with pytest.raises(psycopg.Error) as refused:
        record_raw(connect("app_writer"), WILD[name])
    assert refused.value.sqlstate == "PA002" and "1e400" in str(refused.value)
    assert counts() == (0, 0)


def test_an_update_of_a_row_of_wild_numbers_compares_them_without_printing(db, connect):
    """A table of numeric and float columns has its no-op UPDATEs told apart by the rows' binary form
    (docs/capture.md), which prints no number: 8,200 numbers 1e131071 (printed, 1 GB) are 8 bytes
    each there, and another role's UPDATE of the row goes through, and is captured."""
    db.execute("""CREATE TABLE public.ledger (id int PRIMARY KEY, status text, f float8, amounts numeric[]);
                  GRANT ALL ON public.ledger TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.ledger')")
    writer = connect("app_writer")
    writer.execute("INSERT INTO ledger SELECT 42, 'new', 0, array_agg('1e131071'::numeric) FROM generate_series(1, 8200)")
    writer.execute("UPDATE ledger SET status = 'refunded' WHERE id = 42")
    writer.execute("UPDATE ledger SET f = '-0' WHERE id = 42")  # jsonb prints -0 as 0: told apart here
    assert [k for (k,) in db.execute("SELECT kind FROM audit.events WHERE kind LIKE 'public.ledger.%'"
                                     " ORDER BY intake_id")] == [
        "public.ledger.insert", "public.ledger.update", "public.ledger.update"]
    assert seal(db).sealed == 4
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    both_verify(db)


def test_wild_numbers_in_captured_rows_are_omitted_and_nothing_wedges(db, connect):
    """2 kB of 1e131071 in a jsonb column printed as 1 GB: the sealer wedged, and another role's
    later update of the same row went to the quarantine with it. The sealer stores those numbers as
    markers: the rest of the row, and every later change, seal and verify."""
    db.execute("""CREATE TABLE public.orders (id int PRIMARY KEY, status text, meta jsonb, n numeric);
                  GRANT ALL ON public.orders TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.orders')")
    writer = connect("app_writer")
    writer.execute("INSERT INTO orders VALUES (42, 'new', (SELECT jsonb_agg('1e131071'::numeric)"
                   " FROM generate_series(1, 8200)) || '[7]'::jsonb, '-1e-16383')")
    writer.execute("UPDATE orders SET status = 'refunded' WHERE id = 42")
    marker = {"$omitted": {"wild_number": True}}
    pending = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.orders.insert'").fetchone()[0]
    assert pending["meta"][:2] == [marker, marker] and pending["meta"][-1] == 7 and pending["n"] == marker
    assert seal(db).sealed == 3
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    sealed = db.execute("SELECT kind, row_after -> 'meta' -> 8200, row_after -> 'n', changed"
                        " FROM audit.event_log WHERE kind LIKE 'public.orders.%' ORDER BY seq").fetchall()
    assert sealed == [("public.orders.insert", 7, marker, None),
                      ("public.orders.update", 7, marker, {"status": {"old": "new", "new": "refunded"}})]
    history = db.execute("SELECT count(*) FROM audit.row_history('public.orders', '42')").fetchone()
    assert history == (2,)
    both_verify(db)


@pytest.mark.parametrize("depth", [600, 2500])
def test_a_wild_number_deeper_than_taming_reaches_reads_pending_as_it_is_sealed(db, connect, depth):
    """Trial 81 (t8, t9): a wild number in a value nested 2,500 levels (a JSON path walks it; taming,
    a PL/pgSQL call a level, does not) failed every read of the events view that held its pending event.
    The sealer stores such an event as its second attempt does (each value too deep to tame as the marker
    of its text, the others tamed), and the view now shows it so, pending, before it is sealed; at 600
    levels the number alone is tamed."""
    db.execute("CREATE TABLE public.deep (id int PRIMARY KEY, d jsonb, w jsonb); GRANT ALL ON public.deep TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.deep')")
    seal(db)
    connect("app_writer").execute("INSERT INTO public.deep VALUES (1, %s, '1e400')", ["[" * depth + "1e400" + "]" * depth])
    query = "SELECT row_after, payload FROM audit.events WHERE kind = 'public.deep.insert'"
    pending = connect("app_reader").execute(query).fetchone()
    assert seal(db).sealed == 1
    assert db.execute(query).fetchone() == pending
    image = pending[0]
    marker = {"$omitted": {"wild_number": True}}
    assert image["w"] == marker and image["id"] == 1
    if depth == 600:
        inner = image["d"]
        for _ in range(depth - 1):
            inner = inner[0]
        assert inner == [marker]
    else:
        assert set(image["d"]["$omitted"]) == {"bytes", "sha256"}
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    both_verify(db)


def test_json_that_jsonb_refuses_in_a_tracked_tables_json_column_is_captured_as_a_marker(db, connect):
    """A json column takes what jsonb cannot hold (trial 76: each write of such a value to a tracked table
    failed, and so did every later change of its row, excluded or redacted column or not). Its image
    holds the value's marker, named in the payload; other values, json ones included, as to_jsonb
    makes them; the events seal and verify."""
    db.execute("""CREATE TABLE public.docs (id int PRIMARY KEY, status text, body json, tags json[], other json,
                                            hidden json, masked json);
                  GRANT ALL ON public.docs TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.docs', exclude_columns => '{hidden}', redact_columns => '{masked}')")
    writer = connect("app_writer")
    for i, (name, text) in enumerate(REFUSED.items()):
        writer.execute("INSERT INTO docs VALUES (%s, 'new', %s, ARRAY[%s::json], '{\"a\": [1, 2.50]}', %s, %s)",
                       [i, text, text, text, text])
        assert name  # each refused form in turn
    writer.execute("UPDATE docs SET status = 'done'")
    writer.execute("UPDATE docs SET other = '{\"a\": 3}' WHERE id = 0")
    writer.execute("DELETE FROM docs WHERE id = 1")
    rows = db.execute("SELECT kind, row_before, row_after, payload FROM audit.events"
                      " WHERE kind LIKE 'public.docs.%' ORDER BY intake_id").fetchall()
    assert [r[0] for r in rows] == ["public.docs.insert"] * 4 + ["public.docs.update"] * 5 + ["public.docs.delete"]
    for i, (name, text) in enumerate(REFUSED.items()):
        image = rows[i][2]
        marker = db.execute("SELECT audit._omitted(%s)", [text]).fetchone()[0]
        assert image["body"] == marker and image["tags"] == db.execute("SELECT audit._omitted(to_json(ARRAY[%s::json])::text)",
                                                                         [text]).fetchone()[0], name
        assert image["other"] == {"a": [1, 2.50]} and image["masked"] == "[redacted]" and "hidden" not in image
        assert rows[i][3] == {"omitted": {"row_after": ["body", "tags"]}}
    update = rows[4]
    assert update[3] == {"omitted": {"row_before": ["body", "tags"], "row_after": ["body", "tags"]}}
    assert rows[8][3] == {"omitted": {"row_before": ["body", "tags"], "row_after": ["body", "tags"]}}  # another column
    assert rows[9][1]["status"] == "done" and rows[9][3] == {"omitted": {"row_before": ["body", "tags"]}}
    honest = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.docs.insert' ORDER BY intake_id").fetchall()
    assert all(set(r[0]) == {"id", "status", "body", "tags", "other", "masked"} for r in honest)
    while seal(db).sealed:
        pass
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    both_verify(db)


def test_a_tracked_tables_json_values_jsonb_takes_are_imaged_as_to_jsonb_images_them(db, connect):
    db.execute("""CREATE TABLE public.notes (id int PRIMARY KEY, body json, n numeric);
                  GRANT ALL ON public.notes TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.notes')")
    values = ['{"b": 1, "a": [1.50, -0, 1e300]}', '"\\u00e9 \\ud83d\\ude00"', '{"eE": "1e99999"}', "null", None]
    writer = connect("app_writer")
    for i, v in enumerate(values):
        writer.execute("INSERT INTO notes VALUES (%s, %s, 1.50)", [i, v])
    got = db.execute("SELECT e.row_after, e.payload, to_jsonb(n.*) FROM audit.events e"
                     " JOIN public.notes n ON n.id = (e.row_after ->> 'id')::int"
                     " WHERE e.kind = 'public.notes.insert' ORDER BY n.id").fetchall()
    assert [(image, payload) for image, payload, _ in got] == [(whole, {}) for _, _, whole in got]


def test_a_baseline_of_rows_holding_json_that_jsonb_refuses_images_them_with_markers(db, connect):
    """Rows written before tracking began: the baseline reads them column by column (trial 76: it failed
    with 22P05), and later changes of them are captured."""
    db.execute("""CREATE TABLE public.old_docs (id int PRIMARY KEY, status text, body json, tags json[], hidden json);
                  GRANT ALL ON public.old_docs TO app_writer""")
    for i, text in enumerate(REFUSED.values()):
        db.execute("INSERT INTO old_docs VALUES (%s, 'old', %s, ARRAY[%s::json], %s)", [i, text, text, text])
    db.execute("INSERT INTO old_docs VALUES (9, 'plain', '{\"a\": \"\\u00e9\"}', NULL, NULL)")
    db.execute("SELECT audit.enable_tracking('public.old_docs', exclude_columns => '{hidden}', baseline => true)")
    base = db.execute("SELECT row_after, payload FROM audit.events WHERE kind = 'public.old_docs.baseline'"
                      " ORDER BY (row_after ->> 'id')::int").fetchall()
    assert len(base) == 5
    for (image, payload), text in zip(base[:4], REFUSED.values(), strict=True):
        assert image["body"] == db.execute("SELECT audit._omitted(%s)", [text]).fetchone()[0]
        assert set(image) == {"id", "status", "body", "tags"} and payload == {"omitted": {"row_after": ["body", "tags"]}}
    assert base[4] == ({"id": 9, "status": "plain", "body": {"a": "\u00e9"}, "tags": None}, {})
    writer = connect("app_writer")
    writer.execute("UPDATE old_docs SET status = 'new'")
    writer.execute("DELETE FROM old_docs WHERE id = 0")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind IN ('public.old_docs.update', 'public.old_docs.delete')"
                      ).fetchone() == (6,)
    while seal(db).sealed:
        pass
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    both_verify(db)


def test_json_images_hold_for_odd_column_names_wide_scales_and_deep_nesting(db, connect):
    """Trial 78: the image subqueries were renamed by a text replace that reached a column named
    'k) AS q' (its value lost, or every write refused); a number whose scale passes numeric's with a
    four-digit exponent passed the quick check; json nested deeper than the stack was refused. And a
    \\u00e9 escape (json.dumps' default) is imaged as to_jsonb images it, and named nowhere."""
    db.execute("""CREATE TABLE public.odd (id int PRIMARY KEY, "k) AS q" text, "k) AS s" text, body json);
                  GRANT ALL ON public.odd TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.odd')")
    wide = "[1." + "0" * 6499 + "1e-9999]"
    deep = "[" * 12000 + "]" * 12000
    writer = connect("app_writer")
    for i, body in enumerate(['"\\u0000"', wide, deep, '"caf\\u00e9"']):
        writer.execute('INSERT INTO odd VALUES (%s, %s, %s, %s)', [i, f"q{i}", f"s{i}", body])
    rows = db.execute("SELECT row_after, payload FROM audit.events WHERE kind = 'public.odd.insert'"
                      " ORDER BY (row_after ->> 'id')::int").fetchall()
    for i, (image, payload) in enumerate(rows[:3]):
        assert (image["k) AS q"], image["k) AS s"]) == (f"q{i}", f"s{i}")
        assert set(image["body"]) == {"$omitted"} and payload == {"omitted": {"row_after": ["body"]}}, i
    assert rows[3] == ({"id": 3, "k) AS q": "q3", "k) AS s": "s3", "body": "caf\u00e9"}, {})
    writer.execute("DELETE FROM odd")
    deleted = db.execute("SELECT target_id, row_before ->> 'k) AS q' FROM audit.events WHERE kind = 'public.odd.delete'"
                         " ORDER BY target_id").fetchall()
    assert deleted == [(str(i), f"q{i}") for i in range(4)]
    while seal(db).sealed:
        pass
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    both_verify(db)


def test_a_json_tenant_column_is_refused(db):
    """Its value may be one no row image holds, whose marker would name no tenant (trial 78)."""
    db.execute("CREATE TABLE public.shared (id int PRIMARY KEY, tenant json, v int)")
    with pytest.raises(psycopg.Error, match="the tenant column tenant of public.shared is json"):
        db.execute("SELECT audit.enable_tracking('public.shared', tenant_column => 'tenant')")


def test_a_composite_tenant_column_holding_json_is_refused(db):
    db.execute("CREATE TYPE public.owner_ref AS (tenant json, n int);"
               " CREATE TABLE public.shared2 (id int PRIMARY KEY, tenant public.owner_ref, v int)")
    with pytest.raises(psycopg.Error, match="the tenant column tenant of public.shared2 is json"):
        db.execute("SELECT audit.enable_tracking('public.shared2', tenant_column => 'tenant')")


def test_a_key_holding_json_is_refused_and_so_is_a_json_attribute_added_to_a_tracked_tables_key_or_tenant(db):
    """Trial 80 (r8): a json attribute added after tracking to the composite type of a tenant column or
    key filed events under a marker's text. A key holding json is refused as a tenant column is (PA005),
    and so is the schema change that makes either hold json (PA008); nothing is tracked otherwise."""
    db.execute("""CREATE TYPE public.ref_j AS (a text, j json);
                  CREATE TABLE public.keyed_j (k public.ref_j PRIMARY KEY, v int);
                  CREATE TYPE public.ref AS (a text);
                  CREATE TABLE public.keyed (k public.ref PRIMARY KEY, v int);
                  CREATE TABLE public.shared3 (id int PRIMARY KEY, tenant public.ref, v int)""")
    with pytest.raises(psycopg.Error, match="the key of public.keyed_j holds json") as refused:
        db.execute("SELECT audit.enable_tracking('public.keyed_j')")
    assert refused.value.sqlstate == "PA005"
    db.execute("SELECT audit.enable_tracking('public.keyed')")
    db.execute("SELECT audit.enable_tracking('public.shared3', tenant_column => 'tenant')")
    with pytest.raises(psycopg.Error, match=r"its tenant column or key \((k|tenant)\) holds json") as altered:
        db.execute("ALTER TYPE public.ref ADD ATTRIBUTE j json")
    assert altered.value.sqlstate == "PA008"
    assert db.execute("SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.ref'::regclass AND attname = 'j'"
                      ).fetchone() == (0,)
    db.execute("INSERT INTO public.shared3 VALUES (1, ROW('acme'), 1)")
    assert db.execute("SELECT tenant_id FROM audit.events WHERE kind = 'public.shared3.insert'").fetchall() == [('{"a": "acme"}',)]


def test_json_that_jsonb_refuses_where_capture_is_not_inline_is_captured_as_a_marker(db, connect):
    """Trial 79 (q1 to q6): a table with a column of a user's type is imaged by the sandbox, whole rows,
    and a json value jsonb cannot hold, in a json column or inside an array or a composite, failed the
    write and every later change of its row. Its statement's rows are now imaged from their JSON text,
    each refused value replaced by the marker of its JSON text and named in the payload; the honest
    rows of the same statement as to_jsonb images them; odd column names (commas, colons, quotes) split
    right; COPY too; the events seal and verify."""
    db.execute("""CREATE TYPE public.mood AS ENUM ('ok', 'sad');
                  CREATE TYPE public.holder AS (j json, n int);
                  CREATE TABLE public.moody (id int PRIMARY KEY, m public.mood, "a,b:c" text, "k) AS q" json,
                                             "say ""hi"" there" json[], h public.holder, f float8, n numeric,
                                             ts timestamptz, iv interval, by bytea, hidden json, masked json);
                  GRANT ALL ON public.moody TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.moody', exclude_columns => '{hidden}', redact_columns => '{masked}')")
    writer = connect("app_writer")
    honest = ("(0, 'ok', '\"x\",{y}:', '{\"a\": [1.50, -0]}', ARRAY['[1]'::json], ROW('{\"b\": 2}', 3), 'NaN', 1.50,"
              " '2026-12-05 12:00:00.5+01', '1 day -02:00', '\\x00ff', '{}', '1')")
    refused = ", ".join(f"({i + 1}, 'sad', 'r{i}', %s, ARRAY[%s::json], ROW(%s::json, {i}), -0.0, 1e-300, NULL, NULL, NULL, %s, %s)"
                        for i in range(len(REFUSED)))
    texts = [t for t in REFUSED.values() for _ in range(5)]
    writer.execute(f"INSERT INTO public.moody VALUES {honest}, {refused}", texts)
    with writer.cursor().copy("COPY public.moody (id, m, \"k) AS q\") FROM STDIN") as copy:
        copy.write_row((9, "ok", '"\\u0000 copied"'))

    def expected(where: str, refused_row: bool) -> dict:
        image = db.execute(f"""SELECT to_jsonb(t.*) - 'hidden' || '{{"masked": "[redacted]"}}' FROM public.moody t
                                WHERE {where}""") if not refused_row else db.execute(
            f"""SELECT jsonb_build_object('id', t.id, 'm', t.m, 'a,b:c', t."a,b:c", 'f', t.f, 'n', t.n, 'ts', t.ts,
                                          'iv', t.iv, 'by', t.by, 'masked', '[redacted]',
                                          'k) AS q', audit._omitted(t."k) AS q"::text),
                                          'say "hi" there', audit._omitted(to_json(t."say ""hi"" there")::text),
                                          'h', audit._omitted(to_json(t.h)::text))
                  FROM public.moody t WHERE {where}""")
        return image.fetchone()[0]

    written = {i: expected(f"id = {i}", i > 0) for i in range(5)}
    writer.execute("UPDATE public.moody SET m = 'ok' WHERE id <> 9")
    writer.execute("DELETE FROM public.moody WHERE id = 1")
    events = db.execute("SELECT kind, target_id, row_before, row_after, payload FROM audit.events"
                        " WHERE kind LIKE 'public.moody.%' ORDER BY intake_id").fetchall()
    inserts = {e[1]: e for e in events if e[0] == "public.moody.insert"}
    assert sorted(inserts) == ["0", "1", "2", "3", "4", "9"]
    named = {"omitted": {"row_after": ["h", "k) AS q", 'say "hi" there']}}
    assert inserts["0"][3:] == (written[0], {})
    for i in range(1, 5):
        assert inserts[str(i)][3:] == (written[i], named), i
    assert inserts["9"][3]["k) AS q"] == db.execute("SELECT audit._omitted(%s)", ['"\\u0000 copied"']).fetchone()[0]
    assert inserts["9"][4] == {"omitted": {"row_after": ["k) AS q"]}}
    updates = {e[1]: e for e in events if e[0] == "public.moody.update"}
    assert sorted(updates) == ["1", "2", "3", "4"] and expected("id = 2", True)["m"] == "ok"
    assert updates["2"][2:] == (written[2], expected("id = 2", True),
                                {"omitted": {"row_before": named["omitted"]["row_after"], "row_after": named["omitted"]["row_after"]}})
    deleted = [e for e in events if e[0] == "public.moody.delete"]
    assert [(e[1], e[2]["a,b:c"], e[4]) for e in deleted] == [("1", "r0", {"omitted": {"row_before": named["omitted"]["row_after"]}})]
    while seal(db).sealed:
        pass
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    both_verify(db)


def test_a_look_alike_of_a_marker_replaced_by_the_value_it_stands_for_is_an_update(db, connect):
    """Trial 81 (m8): where capture is not inline and a column is excluded, the images alone decide
    whether an UPDATE is a no-op; a writer's look-alike of the marker of '"\\u0000"', then the value
    itself, made equal images, and the change left no event. A value replaced on one side only is a
    change now; an UPDATE of the excluded column alone, or of the same refused value again, is still
    none."""
    db.execute("""CREATE TYPE public.mood2 AS ENUM ('ok');
                  CREATE TABLE public.look (id int PRIMARY KEY, m public.mood2, j json, x text);
                  GRANT ALL ON public.look TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.look', exclude_columns => '{x}')")
    writer = connect("app_writer")
    nul = REFUSED["nul"]
    look_alike = db.execute("SELECT audit._omitted(%s)::text", [nul]).fetchone()[0]
    writer.execute("INSERT INTO public.look VALUES (1, 'ok', %s, 'a')", [look_alike])
    writer.execute("UPDATE public.look SET j = %s", [nul])
    writer.execute("UPDATE public.look SET x = 'b'")
    writer.execute("UPDATE public.look SET j = %s, x = 'c'", [nul])
    events = db.execute("SELECT kind, payload -> 'omitted' FROM audit.events WHERE kind LIKE 'public.look.%%'"
                        " ORDER BY intake_id").fetchall()
    assert events == [("public.look.insert", None), ("public.look.update", {"row_after": ["j"]})]


def test_a_redacted_look_alike_replaced_by_the_value_it_stands_for_is_an_update_that_names_no_value(db, connect):
    """Trial 82 (u5, u9): the same with the json column redacted, both ways. Each change is recorded,
    with the redacted column in `changed`, and the payload names no replaced value of it (a redacted
    column's values are never told, not even whether jsonb could hold them)."""
    db.execute("""CREATE TYPE public.mood3 AS ENUM ('ok');
                  CREATE TABLE public.hidden (id int PRIMARY KEY, m public.mood3, r json, x text);
                  GRANT ALL ON public.hidden TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.hidden', exclude_columns => '{x}', redact_columns => '{r}')")
    writer = connect("app_writer")
    nul = REFUSED["nul"]
    look_alike = db.execute("SELECT audit._omitted(%s)::text", [nul]).fetchone()[0]
    writer.execute("INSERT INTO public.hidden VALUES (1, 'ok', %s, 'a')", [look_alike])
    writer.execute("UPDATE public.hidden SET r = %s", [nul])
    writer.execute("UPDATE public.hidden SET r = %s", [look_alike])
    writer.execute("UPDATE public.hidden SET x = 'b'")
    events = db.execute("SELECT kind, payload, changed FROM audit.events WHERE kind LIKE 'public.hidden.%%'"
                        " ORDER BY intake_id").fetchall()
    redacted = {"r": {"old": "[redacted]", "new": "[redacted]"}}
    assert [(k, p.get("omitted"), c) for k, p, c in events] == [
        ("public.hidden.insert", None, None), ("public.hidden.update", None, redacted),
        ("public.hidden.update", None, redacted)]


def test_a_baseline_of_user_types_holding_refused_json_images_them_as_their_capture_does(db, connect):
    """A baseline read a composite holding json whole, and one holding a value jsonb cannot hold failed it.
    Such values are replaced by the markers of their JSON text, as the capture replaces them: the
    baseline's image of a row and the image its later DELETE captures are the same."""
    db.execute("""CREATE TYPE public.mood2 AS ENUM ('ok');
                  CREATE TYPE public.holder2 AS (j json, n int);
                  CREATE TABLE public.old_moody (id int PRIMARY KEY, m public.mood2, tags json[], h public.holder2,
                                                 hs public.holder2[], body json);
                  GRANT ALL ON public.old_moody TO app_writer""")
    for i, text in enumerate(REFUSED.values()):
        db.execute("INSERT INTO public.old_moody VALUES (%s, 'ok', ARRAY[%s::json], ROW(%s::json, 1),"
                   " ARRAY[ROW(%s::json, 2)::public.holder2], %s)", [i, text, text, text, text])
    db.execute("""INSERT INTO public.old_moody VALUES (9, 'ok', ARRAY['[1.50]'::json], ROW('{"a": -0}', 1), NULL, '2')""")
    db.execute("SELECT audit.enable_tracking('public.old_moody', baseline => true)")
    base = db.execute("SELECT target_id, row_after, payload FROM audit.events WHERE kind = 'public.old_moody.baseline'"
                      " ORDER BY target_id").fetchall()
    markers = db.execute("""SELECT id::text, jsonb_build_object('id', id, 'm', m, 'tags', audit._omitted(to_json(tags)::text),
                                   'h', audit._omitted(to_json(h)::text), 'hs', audit._omitted(to_json(hs)::text),
                                   'body', audit._omitted(to_json(body)::text))
                              FROM public.old_moody WHERE id < 9 ORDER BY id""").fetchall()
    named = {"omitted": {"row_after": ["body", "h", "hs", "tags"]}}
    assert base[:-1] == [(key, image, named) for key, image in markers]
    assert base[-1] == ("9", db.execute("SELECT to_jsonb(t.*) FROM public.old_moody t WHERE id = 9").fetchone()[0], {})
    connect("app_writer").execute("DELETE FROM public.old_moody")
    deleted = db.execute("SELECT target_id, row_before FROM audit.events WHERE kind = 'public.old_moody.delete'"
                         " ORDER BY target_id").fetchall()
    assert deleted == [(key, image) for key, image, _ in base]
    while seal(db).sealed:
        pass
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    both_verify(db)
