"""JSON as deep as jsonb holds it, with its numbers as written, through the library and the CLI:
record() writes it, every read gives it back, the CLI prints it (pgaudit_py/deep_json.py). Python's
json stops at about 1,000 levels; jsonb holds about 10,000."""

from __future__ import annotations

import functools
import json
import sys
from decimal import Decimal

import psycopg
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from psycopg.types.json import _JsonLoader, set_json_loads

from pgaudit_py import deep_json, list_events, record, seal
from pgaudit_py.cli import cli
from pgaudit_py.errors import InvalidInput

DEPTH = 3000
AMOUNT = "12345678901234567.89"


def nested(depth: int, inner: object) -> object:
    value = inner
    for _ in range(depth):
        value = [value]
    return value


def nesting(value: object) -> tuple[int, object]:
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    return depth, value


def stored_payload(db) -> str:
    return db.execute("SELECT payload::text FROM audit.events WHERE kind = 'deep.thing'").fetchone()[0]


def expected_text(depth: int, inner: str) -> str:
    return '{"d": ' + "[" * depth + inner + "]" * depth + "}"


@pytest.fixture
def global_json_loads():
    """psycopg's global JSON function, put back after a test that sets it."""
    saved = _JsonLoader._loads
    yield
    _JsonLoader._loads = saved


@pytest.mark.parametrize("when", ["pending", "sealed"])
@pytest.mark.parametrize("scope", ["connection", "global"])
def test_record_writes_and_list_events_reads_a_payload_deeper_than_python_json(db, connect, when, scope,
                                                                               global_json_loads):
    writer = connect("app_writer")
    record(writer, "deep.thing", payload={"d": nested(DEPTH, Decimal(AMOUNT))})
    assert stored_payload(db) == expected_text(DEPTH, AMOUNT)
    if when == "sealed":
        seal(db)
    reader = connect("app_reader")
    assert nesting(list_events(reader)[0].payload["d"]) == (DEPTH, float(AMOUNT))  # psycopg's default: floats
    # Set after a first call: the package's loaders, made once for each JSON function, follow the change.
    set_json_loads(functools.partial(json.loads, parse_float=Decimal), reader if scope == "connection" else None)
    assert nesting(list_events(reader)[0].payload["d"]) == (DEPTH, Decimal(AMOUNT))  # the caller's choice holds


def test_the_cli_records_and_prints_a_deep_payload_with_its_numbers_as_written(db):
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_writer"
    made = CliRunner().invoke(cli, ["record", "deep.thing", "--payload", expected_text(DEPTH, AMOUNT), "--dsn", dsn])
    assert made.exit_code == 0, made.output
    assert stored_payload(db) == expected_text(DEPTH, AMOUNT)
    shown = CliRunner().invoke(cli, ["events", "--json", "--dsn", dsn.replace("app_writer", "app_reader")])
    assert shown.exit_code == 0, shown.output[-300:]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(DEPTH * 3)  # the test's own reading of what was printed
    try:
        printed = json.loads(shown.output, parse_float=Decimal)
    finally:
        sys.setrecursionlimit(limit)
    assert nesting(printed[0]["payload"]["d"]) == (DEPTH, Decimal(AMOUNT))


@pytest.mark.parametrize("best_effort", [False, True])
def test_too_deep_for_jsonb_is_refused_with_nothing_written(db, connect, counts, best_effort):
    """PostgreSQL's refusal (54001) is bad input, under best_effort too (trial 89, r2): never swallowed."""
    with pytest.raises(InvalidInput, match="StatementTooComplex, SQLSTATE 54001") as refused:
        record(connect("app_writer"), "deep.thing", payload={"d": nested(100_000, 1)}, best_effort=best_effort)
    assert isinstance(refused.value.__cause__, psycopg.errors.StatementTooComplex)
    assert counts() == (0, 0)


# The loop against json itself, on values shallow enough for json.
_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.one_of(st.text(), st.integers(), st.booleans(), st.none()), inner,
                                            max_size=4)),
    max_leaves=20)
_layouts = st.sampled_from([{}, {"indent": 2}, {"indent": 0, "ensure_ascii": False},
                            {"separators": (",", ":"), "ensure_ascii": False}])


@settings(max_examples=300, deadline=None)
@given(_values, _layouts)
def test_the_loop_writes_what_json_writes(value, layout):
    assert deep_json.dumps(value, **layout) == json.dumps(value, **layout)


@settings(max_examples=300, deadline=None)
@given(_values, st.sampled_from([None, 1]))
def test_the_loop_reads_what_json_reads(value, indent):
    text = json.dumps(value, indent=indent)
    assert deep_json.loads(text) == json.loads(text)
    assert deep_json.loads(text.encode()) == json.loads(text)


def not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@pytest.mark.parametrize("text", ['{"a" 1}', "[1,]", "[1 2]", '{"a": 1,}', "[", '"x', "01", "[1]x", "{1: 2}", "NaN",
                                  "[-]", "1.", ".5", "", "[1]]", '{"a": 1}}', '"\x01"', "tru"])
def test_the_loop_refuses_what_is_not_json(text):
    with pytest.raises(ValueError):
        json.loads(text, parse_constant=not_json)
    with pytest.raises(ValueError):
        deep_json.loads(text)
