"""The event-type registry: strict kinds refuse bad payloads, others are written and counted."""

from __future__ import annotations

import psycopg
import pytest

from pgaudit_py import InvalidArgument, SchemaViolation, record, register_event_type, seal

REFUND = {
    "type": "object",
    "required": ["order_id", "amount"],
    "properties": {
        "order_id": {"type": "string", "pattern": "^o-[0-9]+$"},
        "amount": {"type": "number", "exclusiveMinimum": 0, "maximum": 10000},
        "currency": {"enum": ["EUR", "USD"]},
        "lines": {"type": "array", "maxItems": 2, "items": {"type": "integer", "minimum": 1}},
        "reason": {"type": "string", "minLength": 3, "maxLength": 20},
    },
    "additionalProperties": False,
}


@pytest.fixture
def maintainer(connect):
    return connect("app_maintainer")


def test_strict_type_refuses_mismatch_and_writes_nothing(db, connect, maintainer, counts):
    register_event_type(maintainer, "order.refunded", REFUND, strict=True)
    writer = connect("app_writer")
    with pytest.raises(SchemaViolation) as caught:
        record(writer, "order.refunded", payload={"order_id": "x", "amount": -1, "extra": 1})
    # Members in jsonb's own key order (shorter keys first).
    assert caught.value.detail == ("$.extra: no value is allowed; $.amount: not greater than 0; "
                                   "$.order_id: does not match \"^o-[0-9]+$\"")
    assert counts() == (1, 0)  # the registration's own event only
    ok = record(writer, "order.refunded", payload={"order_id": "o-1", "amount": 5, "currency": "EUR",
                                                   "lines": [1, 2], "reason": "damaged"})
    assert ok is not None and ok.schema_valid is True


@pytest.mark.parametrize("payload, error", [
    ({"amount": 5}, "$: order_id is required"),
    ({"order_id": "o-1", "amount": "5"}, '$.amount: expected "number", got string'),
    ({"order_id": "o-1", "amount": 5, "currency": "GBP"}, '$.currency: not one of ["EUR", "USD"]'),
    ({"order_id": "o-1", "amount": 5, "lines": [1, 2, 3]}, "$.lines: more than 2 items"),
    ({"order_id": "o-1", "amount": 5, "lines": [1, 0.5]}, '$.lines[1]: expected "integer", got number'),
    ({"order_id": "o-1", "amount": 5, "reason": "no"}, "$.reason: shorter than 3 characters"),
    ({"order_id": "o-1", "amount": 10001}, "$.amount: greater than 10000"),
])
def test_each_supported_keyword_is_enforced(connect, maintainer, counts, payload, error):
    register_event_type(maintainer, "order.refunded", REFUND, strict=True)
    with pytest.raises(SchemaViolation) as caught:
        record(connect("app_writer"), "order.refunded", payload=payload)
    assert caught.value.detail == error
    assert counts() == (1, 0)  # the registration's own event only


def test_non_strict_mismatch_is_written_and_counted(db, connect, maintainer):
    register_event_type(maintainer, "order.refunded", REFUND)
    writer = connect("app_writer")
    record(writer, "order.refunded", payload={"amount": 5})
    record(writer, "order.refunded", payload={"order_id": "o-1", "amount": 5})
    record(writer, "other.kind", payload={"anything": True})
    seal(db)
    record(writer, "order.refunded", payload={})  # pending drift counts too
    reader = connect("app_reader")
    rows = reader.execute("SELECT kind, strict, mismatches FROM audit.event_type_drift").fetchall()
    assert rows == [("order.refunded", False, 2)]
    assert db.execute("SELECT kind, schema_valid FROM audit.events ORDER BY seq NULLS LAST").fetchall() == [
        ("audit.event_type_registered", None), ("order.refunded", False), ("order.refunded", True),
        ("other.kind", None), ("order.refunded", False)]


def test_registering_again_replaces_the_schema(db, connect, maintainer):
    register_event_type(maintainer, "a.b", {"type": "object", "required": ["x"]}, strict=True)
    register_event_type(maintainer, "a.b", {"type": "object"}, strict=False)
    register_event_type(maintainer, "a.b", {"type": "object"}, strict=False)  # the same again: nothing changes
    event = record(connect("app_writer"), "a.b", payload={})
    assert event is not None and event.schema_valid is True
    assert maintainer.execute("SELECT count(*), bool_or(strict) FROM audit.event_types").fetchone() == (1, False)
    # Each registration that changed what the log refuses is recorded, with what it replaced (trial 96, e3).
    registered = db.execute("SELECT target_type, target_id, db_role, payload FROM audit.events"
                            " WHERE kind = 'audit.event_type_registered' ORDER BY intake_id").fetchall()
    first = {"kind": "a.b", "schema": {"type": "object", "required": ["x"]}, "strict": True, "catalogue": None}
    assert registered == [
        ("event_type", "a.b", "app_maintainer", {**first, "replaced": None}),
        ("event_type", "a.b", "app_maintainer", {"kind": "a.b", "schema": {"type": "object"}, "strict": False,
                                                 "catalogue": None, "replaced": {k: first[k] for k in
                                                                                 ("schema", "strict", "catalogue")}})]


@pytest.mark.parametrize("schema, message", [
    ({"type": "object", "oneOf": []}, r"\$\.oneOf is not a supported keyword"),
    ({"properties": {"a": {"$ref": "#/x"}}}, r"\$\.properties\.a\.\$ref is not a supported keyword"),
    ({"items": 5}, r"\$\.items: a schema must be an object or a boolean"),
])
def test_unsupported_schema_is_refused(maintainer, schema, message):
    with pytest.raises(InvalidArgument, match=message):
        register_event_type(maintainer, "a.b", schema)
    assert maintainer.execute("SELECT count(*) FROM audit.event_types").fetchone() == (0,)


def test_only_the_maintainer_registers_types(db, connect):
    for role in ("app_writer", "app_reader"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            register_event_type(connect(role), "a.b", {"type": "object"})
    assert db.execute("SELECT count(*) FROM audit.event_types").fetchone() == (0,)


@pytest.mark.parametrize("schema, message", [
    ({"properties": {"s": {"minLength": "x"}}}, r"\$\.properties\.s\.minLength must be a whole number"),
    ({"properties": {"s": {"pattern": "("}}}, r"\$\.properties\.s\.pattern is not a valid regular expression"),
    ({"pattern": 5}, r"\$\.pattern must be a string"),
    ({"required": "a"}, r"\$\.required must be an array of strings"),
    ({"required": ["a", 1]}, r"\$\.required must be an array of strings"),
    ({"enum": "x"}, r"\$\.enum must be an array"),
    ({"properties": {"n": {"minimum": "abc"}}}, r"\$\.properties\.n\.minimum must be a number"),
    ({"items": {"maxItems": 1.5}}, r"\$\.items\.maxItems must be a whole number"),
    ({"maxLength": -1}, r"\$\.maxLength must be a whole number"),
    ({"minItems": 1e10}, r"\$\.minItems must be a whole number from 0 to 2147483647"),
    ({"type": "text"}, r"\$\.type must be a JSON type name"),
    ({"type": []}, r"\$\.type must be a JSON type name"),
    ({"type": ["string", 1]}, r"\$\.type must be a JSON type name"),
    ({"properties": []}, r"\$\.properties must be an object of schemas"),
    ({"title": 5}, r"\$\.title must be a string"),
    ({"examples": {}}, r"\$\.examples must be an array"),
])
def test_keyword_values_of_the_wrong_type_are_refused(connect, maintainer, schema, message):
    """Each used to be accepted, after which every record() of the kind failed with a raw error."""
    with pytest.raises(InvalidArgument, match=message):
        register_event_type(maintainer, "a.b", {"type": "object", **schema})
    assert maintainer.execute("SELECT count(*) FROM audit.event_types").fetchone() == (0,)
    assert record(connect("app_writer"), "a.b", payload={"s": "x", "n": 1}) is not None


def test_every_keyword_with_a_value_of_its_type_validates(connect, maintainer, counts):
    schema = {"type": ["object"], "required": ["s"], "additionalProperties": False, "$schema": "x", "$id": "y",
              "title": "t", "description": "d", "$comment": "c", "default": {}, "examples": [{}],
              "properties": {"s": {"type": "string", "minLength": 1, "maxLength": 3, "pattern": "^[a-z]+$",
                                   "enum": ["ab", "abc"], "const": "ab"},
                             "n": {"type": "integer", "minimum": 0, "maximum": 9, "exclusiveMinimum": -1,
                                   "exclusiveMaximum": 10},
                             "a": {"type": "array", "minItems": 0, "maxItems": 2, "items": True}}}
    register_event_type(maintainer, "a.b", schema, strict=True)
    writer = connect("app_writer")
    assert record(writer, "a.b", payload={"s": "ab", "n": 3, "a": [1]}).schema_valid is True
    with pytest.raises(SchemaViolation):
        record(writer, "a.b", payload={"s": "abc", "n": 3})
    assert counts() == (2, 0)  # the registration's event and the valid one
