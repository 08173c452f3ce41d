"""Status names what the package's own roles added to its schemas since the last install: an
overload the package's calls could pick, a table, a kind of object the package makes none of, a
function of a capture function's name that is none; and a partition of the log made unlogged."""

from __future__ import annotations

import pytest

from pgaudit_py import enable_tracking, install, record, seal, status


def as_owner(db, statement: str) -> None:
    """What a member of the owner role could do: the objects are the owner role's."""
    db.execute(f"SET ROLE audit_owner; {statement}; RESET ROLE")


def test_a_function_the_owner_role_adds_is_named_until_it_is_dropped(db):
    # An overload of a package function, one in the capture schema, and one of a capture function's
    # name in the main schema (only the capture schema's are generated).
    as_owner(db, "CREATE FUNCTION audit.count_events(kind integer) RETURNS bigint LANGUAGE sql AS 'SELECT 0::bigint'")
    as_owner(db, "CREATE FUNCTION audit_capture.helper() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    as_owner(db, "CREATE FUNCTION audit._capture_5() RETURNS int LANGUAGE sql AS 'SELECT 1'")
    added = {"function audit.count_events(kind integer) was added since the last install",
             "function audit_capture.helper() was added since the last install",
             "function audit._capture_5() was added since the last install"}
    assert set(status(db).problems) == added
    install(db)  # a re-run leaves them, and goes on naming them (one of a capture function's name moved where those go)
    assert set(status(db).problems) == added - {"function audit._capture_5() was added since the last install"} | {
        "function audit_capture._capture_5() is no tracked table's capture function"}
    db.execute("DROP FUNCTION audit.count_events(integer); DROP FUNCTION audit_capture.helper();"
               " DROP FUNCTION audit_capture._capture_5()")
    assert status(db).problems == []
    assert not install(db).changed


@pytest.mark.parametrize("statement, name", [
    ("CREATE TABLE audit.shadow (id int)", "shadow"),
    ("CREATE VIEW audit.shadow AS SELECT 1 AS one", "shadow"),
    ("CREATE SEQUENCE audit.shadow", "shadow"),
    ("CREATE TYPE audit.shadow AS (a int)", "shadow"),
])
def test_a_relation_the_owner_role_adds_is_named(db, statement, name):
    as_owner(db, statement)
    expected = [f"table, view, sequence or type audit.{name} was added since the last install"]
    assert status(db).problems == expected
    install(db)
    assert status(db).problems == expected


def test_a_changed_composite_type_of_the_package_is_named(db):
    as_owner(db, "ALTER TYPE audit.seal_result ADD ATTRIBUTE extra int")
    assert [p.split(" changed")[0] for p in status(db).problems] == ["audit.seal_result"]


@pytest.mark.parametrize("statement, line", [
    ("CREATE DOMAIN audit.positive AS int CHECK (VALUE > 0)", "type audit.positive"),
    ("CREATE TYPE audit.mood AS ENUM ('calm')", "type audit.mood"),
    ("CREATE TYPE audit.span AS RANGE (subtype = int8)", "type audit.span"),
    ("CREATE MATERIALIZED VIEW audit.copy AS SELECT 1 AS one", "materialized view audit.copy"),
    ("CREATE FUNCTION audit.eq(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';"
     " CREATE OPERATOR audit.= (LEFTARG = text, RIGHTARG = text, FUNCTION = audit.eq)", "operator audit.=(text,text)"),
    ("CREATE COLLATION audit.loose (provider = icu, locale = 'und', deterministic = false)", "collation loose"),
    ("CREATE STATISTICS audit.stats ON seq, tenant_id FROM audit.event_log", "statistics object stats"),
    ("CREATE TEXT SEARCH CONFIGURATION audit.words (COPY = pg_catalog.simple)", "text search configuration words"),
])
def test_an_object_of_a_kind_the_package_makes_none_of_is_named_whoever_made_it(db, statement, line):
    as_owner(db, statement)
    assert f"{line} is none of the package's: it makes no such object" in status(db).problems
    install(db)
    assert f"{line} is none of the package's: it makes no such object" in status(db).problems


def test_the_package_makes_no_object_status_calls_none_of_its_own(db):
    """Every kind the check calls foreign is absent from a fresh install (with events sealed into a
    partition of the log, and a tracked table)."""
    record(db, "fresh.event")
    seal(db)
    assert db.execute("SELECT count(*) FROM audit._schema_objects() WHERE none_made").fetchone() == (0,)
    assert status(db).problems == []


def test_a_function_of_a_capture_functions_name_that_is_none_is_named(db):
    db.execute("CREATE TABLE public.tracked (id int PRIMARY KEY); CREATE TABLE public.plain (id int)")
    enable_tracking(db, "public.tracked")
    tracked, plain = (db.execute("SELECT %s::regclass::oid", (t,)).fetchone()[0] for t in ("public.tracked", "public.plain"))
    assert status(db).problems == []
    hostile = [f"_capture_{plain}()", f"_capture_{tracked}(integer)", "_capture_99999999999()",
               f"_capture_0{tracked}()", "_capture_4294967296()"]
    for signature in hostile:
        db.execute(f"SET ROLE audit_capture; CREATE FUNCTION audit_capture.{signature}"
                   " RETURNS int LANGUAGE sql AS 'SELECT 1'; RESET ROLE")
    named = {p for p in status(db).problems if "capture function" in p}
    assert named == {f"function audit_capture.{s}"
                     " is no tracked table's capture function" for s in hostile}, status(db).problems
    # Dropping tables tracking covered still cleans up after them, past names it cannot read as an oid.
    db.execute("DROP TABLE public.tracked")
    left = {r[0] for r in db.execute("SELECT p.oid::regprocedure::text FROM pg_proc p"
                                     " WHERE p.pronamespace = 'audit_capture'::regnamespace"
                                     " AND p.proname ~ '^_capture_[0-9]+$'")}
    assert f"audit_capture._capture_{tracked}()" not in left
    assert f"audit_capture._capture_0{tracked}()" in left  # not its name: left, and named
    assert status(db).problems and all("capture function" in p for p in status(db).problems)


def test_a_partition_of_the_log_made_unlogged_is_named(db):
    record(db, "into.a.partition")
    seal(db)
    part = db.execute("SELECT part::text FROM audit._log_partitions() LIMIT 1").fetchone()[0]
    assert status(db).problems == []
    db.execute(f"ALTER TABLE {part} SET UNLOGGED")
    assert status(db).problems == [f"partition {part} of audit.event_log is unlogged: a crash empties it"]
    db.execute(f"ALTER TABLE {part} SET LOGGED")
    assert status(db).problems == []


def test_an_aggregate_is_named_and_status_and_the_installer_still_answer(db):
    """pg_get_functiondef refuses aggregates: the snapshot reads their parts instead."""
    as_owner(db, "CREATE AGGREGATE audit_capture.total(int) (SFUNC = pg_catalog.int4pl, STYPE = int)")
    line = "aggregate audit_capture.total(integer) is none of the package's: it makes no such object"
    assert line in status(db).problems
    install(db)
    assert line in status(db).problems


@pytest.mark.parametrize("statement, line", [
    ("ALTER TABLE {part} ADD CONSTRAINT no_more CHECK (seq < 0) NOT VALID", "constraint no_more on {part} is not one of the log's"),
    ("CREATE INDEX one_kind ON {part} (kind)", "index audit.one_kind on {part} is not one of the log's"),
    ("ALTER TABLE {part} ALTER COLUMN correlation_id SET NOT NULL", "column correlation_id of {part} is NOT NULL, not the log's"),
])
def test_a_partition_of_the_log_shaped_otherwise_than_the_log_is_named(db, statement, line):
    """What would refuse the sealer's next events in a partition (its own constraint, unique index or
    NOT NULL) is named."""
    record(db, "into.a.partition", correlation_id="c1")
    seal(db)
    part = db.execute("SELECT part::text FROM audit._log_partitions() LIMIT 1").fetchone()[0]
    as_owner(db, statement.format(part=part))
    assert status(db).problems == [line.format(part=part)]


def test_the_log_holds_what_the_sealer_sealed_and_all_of_it(db):
    record(db, "sealed.one")
    seal(db)
    part, last = db.execute("SELECT part::text, (SELECT last_seq FROM audit.seal_state) FROM audit._log_partitions()"
                            " ORDER BY first_seq LIMIT 1").fetchone()
    # A default partition the owner role attaches, with an event of its own far past the chain.
    as_owner(db, "CREATE TABLE audit.extra (LIKE audit.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS);"
                 " INSERT INTO audit.extra SELECT * FROM audit.event_log LIMIT 1;"
                 " UPDATE audit.extra SET seq = 5000000000000, kind = 'forged';"
                 " ALTER TABLE audit.event_log ATTACH PARTITION audit.extra DEFAULT")
    assert ("partition audit.extra of audit.event_log holds events past the last sealed seq"
            f" ({last}): the sealer did not seal them") in status(db).problems
    as_owner(db, "ALTER TABLE audit.event_log DETACH PARTITION audit.extra; DROP TABLE audit.extra")
    assert status(db).problems == []
    # The sealed partition detached: its seqs are in none.
    as_owner(db, f"ALTER TABLE audit.event_log DETACH PARTITION {part}")
    problems = status(db).problems
    assert f"seqs 1 to {last} of audit.event_log are in no partition of it: one was detached or dropped" in problems
    assert f"table, view, sequence or type {part} was added since the last install" in problems


def test_a_table_inheriting_from_a_package_table_is_named(db):
    """Its rows are read with the parent's, past the parent's guards."""
    as_owner(db, "CREATE TABLE audit.more_points () INHERITS (audit.prune_points)")
    problems = status(db).problems
    assert "table audit.more_points inherits from audit.prune_points: reads of it see its rows" in problems
    assert "table, view, sequence or type audit.more_points was added since the last install" in problems
