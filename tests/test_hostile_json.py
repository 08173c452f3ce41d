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
    "huge number": '{"n": 1e5000}',
    "long integer": '{"n": ' + "9" * 5000 + "}",
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
