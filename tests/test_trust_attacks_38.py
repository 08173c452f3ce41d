"""A thirty-eighth attacker's trial, on the mends since trial 37: MERGE into a tracked partitioned
table refused by a rule of tracking's (9559a50, acfb8c9); the UPDATE capture of a table with a tenant
column rewritten (d690c19); the failure brake's reservations (8fad83a); the DSN password withheld
(ccf906a); the checkpoint readers and the verifiers' output.

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
Tables are table_owner's (the `attacker` fixture) and tracked by app_maintainer unless said otherwise.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from api_server import LiveServer
from conftest import messages_locale_available
from schema_changes import both_verifiers_ok, checkpoint_readers, gone_events, verifier_and_key

from pgaudit_py import canonical, enable_tracking, seal
from pgaudit_py.server import ServerConfig

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
LATER = "now() + interval '1 minute'"


def _captured(db, prefix: str) -> list[tuple]:
    """Every captured event under a prefix, in the order applied: kind, tenant, target, payload, before, after, changed, id."""
    return db.execute("SELECT kind, tenant_id, target_id, payload, row_before, row_after, changed, id FROM audit.events"
                      " WHERE target_type = %s AND origin = 'capture' ORDER BY seq NULLS LAST, intake_id",
                      (prefix,)).fetchall()


def _rules(db, table: str) -> list[tuple]:
    """Each partitioned table of the tree under `table` (itself included) and how many rules it has."""
    return db.execute(
        "WITH RECURSIVE tree(relid) AS (SELECT %s::regclass::oid UNION SELECT i.inhrelid FROM tree JOIN pg_inherits i"
        " ON i.inhparent = tree.relid)"
        " SELECT c.oid::regclass::text, (SELECT count(*) FROM pg_rewrite w WHERE w.ev_class = c.oid)"
        " FROM tree JOIN pg_class c ON c.oid = tree.relid WHERE c.relkind = 'p' ORDER BY 1", (table,)).fetchall()


def _problems(db) -> list[str]:
    return [r[0] for r in db.execute("SELECT * FROM audit._integrity_problems()")]


def _merge_refused(conn, table: str, setter: str = "note = note || '!'") -> str:
    """'refused' when PostgreSQL refuses MERGE into the table, else what happened."""
    try:
        conn.execute(f"MERGE INTO {table} c USING (SELECT 1 AS one) s ON true WHEN MATCHED THEN UPDATE SET {setter}")
    except psycopg.errors.FeatureNotSupported:
        return "refused"
    except psycopg.Error as exc:
        return f"other error {exc.sqlstate}: {str(exc).splitlines()[0]}"
    return "ran"


def _cases_tree(attacker) -> None:
    attacker.execute("CREATE TABLE public.cases (id int, tenant text, note text, PRIMARY KEY (id, tenant))"
                     " PARTITION BY LIST (tenant)")
    attacker.execute("CREATE TABLE public.cases_t1 PARTITION OF public.cases FOR VALUES IN ('t1')")
    attacker.execute("CREATE TABLE public.cases_t2 PARTITION OF public.cases FOR VALUES IN ('t2')"
                     " PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.cases_t2_low PARTITION OF public.cases_t2 FOR VALUES FROM (0) TO (100)")
    attacker.execute("CREATE TABLE public.cases_t2_high PARTITION OF public.cases_t2 FOR VALUES FROM (100) TO (200)")
    attacker.execute("CREATE TABLE public.decoy (id int)")


def _a_move_is_captured(db, attacker) -> str | None:
    """A row moved between partitions by a plain UPDATE: None when captured, else what is wrong."""
    before = len(_captured(db, "public.cases"))
    attacker.execute("INSERT INTO public.cases VALUES (7, 't2', 'probe')")
    attacker.execute("UPDATE public.cases SET tenant = 't1', note = 'probe-moved' WHERE id = 7")
    now = db.execute("SELECT tenant, note FROM public.cases WHERE id = 7").fetchall()
    events = _captured(db, "public.cases")[before:]
    if now == [("t1", "probe-moved")] and len(events) < 2:
        return f"row 7 moved to t1 with only {len(events)} events"
    return None


# --- 1. The rule that keeps MERGE off, tampered with by the table's owner ---------------------------

TAMPERS = {
    # Renamed: the name tracking looks for is gone; then the renamed rule dropped.
    "rename_then_drop": ["ALTER RULE audit_no_merge ON public.cases RENAME TO harmless",
                         "DROP RULE harmless ON public.cases"],
    # Replaced by a rule of the same name that does something on every DELETE.
    "replace_with_instead_nothing": ["CREATE OR REPLACE RULE audit_no_merge AS ON DELETE TO public.cases DO INSTEAD NOTHING"],
    # Replaced by an UPDATE rule redirecting the update to a leaf partition (captured there?).
    "replace_with_redirect_to_leaf": [
        "CREATE OR REPLACE RULE audit_no_merge AS ON UPDATE TO public.cases DO INSTEAD"
        " UPDATE public.cases_t1 SET note = NEW.note || '-redirected' WHERE id = OLD.id"],
    # Replaced by a rule that runs the owner's code whenever anyone inserts.
    "replace_with_code": ["CREATE OR REPLACE RULE audit_no_merge AS ON INSERT TO public.cases DO ALSO"
                          " SELECT public.spy('rule')"],
    # A rule depending on another table, dropped with it (DROP ... CASCADE drops the rule).
    "cascade_from_a_table": [
        "CREATE OR REPLACE RULE audit_no_merge AS ON DELETE TO public.cases WHERE false DO ALSO DELETE FROM public.decoy",
        "DROP TABLE public.decoy CASCADE"],
    "cascade_from_a_function": [
        "CREATE FUNCTION public.never() RETURNS boolean LANGUAGE sql AS 'SELECT false'",
        "CREATE OR REPLACE RULE audit_no_merge AS ON DELETE TO public.cases WHERE public.never() DO ALSO NOTHING",
        "DROP FUNCTION public.never() CASCADE"],
    "cascade_from_a_schema": [
        "CREATE SCHEMA junk", "CREATE TABLE junk.t (id int)",
        "CREATE OR REPLACE RULE audit_no_merge AS ON DELETE TO public.cases WHERE false DO ALSO DELETE FROM junk.t",
        "DROP SCHEMA junk CASCADE"],
    # The same on the sub-partitioned partition.
    "cascade_on_the_sub_partitioned": [
        "CREATE OR REPLACE RULE audit_no_merge AS ON DELETE TO public.cases_t2 WHERE false DO ALSO DELETE FROM public.decoy",
        "DROP TABLE public.decoy CASCADE"],
    # Both at once, in one transaction: a second rule made, the first dropped, the second dropped.
    "two_rules_in_one_transaction": [
        "BEGIN", "CREATE RULE other AS ON DELETE TO public.cases WHERE false DO ALSO NOTHING",
        "DROP RULE audit_no_merge ON public.cases", "DROP RULE other ON public.cases", "COMMIT"],
}


@pytest.mark.parametrize("how", list(TAMPERS))
def test_the_merge_rule_tampered_with_by_the_owner_still_refuses_merge(db, connect, attacker, how):
    """Attack: the owner of a tracked partitioned table reshapes the do-nothing rule that makes
    PostgreSQL refuse MERGE (audit_no_merge): renames it and drops it under its new name, replaces it
    (CREATE OR REPLACE RULE) with one that acts (DO INSTEAD NOTHING, a redirect of UPDATE to a leaf,
    a call of the owner's code), or has it dropped by DROP ... CASCADE of a table, function or schema
    its new condition or action depends on (the sql_drop trigger must see a rule go that no DROP RULE
    named), or juggles two rules in one transaction. A break: a partitioned table of the tracked tree
    ends with no rule (so MERGE moves rows uncaptured), MERGE into it runs, a plain move between
    partitions is not captured, status says nothing of a missing rule, or the owner's code ran as
    another role than the writer's (or could forge an event)."""
    _cases_tree(attacker)
    enable_tracking(connect("app_maintainer"), "public.cases")
    attacker.execute("INSERT INTO public.cases VALUES (1, 't1', 'a'), (2, 't2', 'b'), (150, 't2', 'c')")
    owner = connect("table_owner")
    outcome = []
    for command in TAMPERS[how]:
        try:
            owner.execute(command)
            outcome.append(f"ran {command[:40]!r}")
        except psycopg.Error as exc:
            outcome.append(f"{exc.sqlstate} at {command[:40]!r}")
            if owner.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                owner.execute("ROLLBACK")
            if command != "COMMIT":
                break
    rules = _rules(db, "public.cases")
    merges = {t: _merge_refused(connect("table_owner"), t) for t in ("public.cases", "public.cases_t2")}
    writer = connect("table_owner")
    before = len(_captured(db, "public.cases"))
    rows_before = db.execute("SELECT * FROM public.cases ORDER BY 1, 2").fetchall()
    writer.execute("UPDATE public.cases SET note = note || '-u' WHERE id = 1")
    writer.execute("DELETE FROM public.cases WHERE id = 2")
    rows_after = db.execute("SELECT * FROM public.cases ORDER BY 1, 2").fetchall()
    new_events = _captured(db, "public.cases")[before:]
    changed_rows = len(set(rows_before) ^ set(rows_after))
    assert all(n > 0 for _, n in rules), f"{how} ({outcome}): partitioned tables without a rule: {rules}; problems {_problems(db)}"
    assert set(merges.values()) == {"refused"}, f"{how} ({outcome}): MERGE {merges}"
    assert not changed_rows or new_events, f"{how}: rows changed {rows_before} -> {rows_after} with no event"
    assert _a_move_is_captured(db, writer) is None, how
    spies = db.execute("SELECT who, forged FROM public.who_ran").fetchall()
    assert all(who == "table_owner" and not forged for who, forged in spies), f"{how}: the rule's code ran as {spies}"


LATE_PARTITIONED = {
    # A partitioned table with partitions (and rows) of its own, attached after tracking began.
    "attach_partitioned_with_partitions": [
        "CREATE TABLE public.cases_t3 (id int NOT NULL, tenant text NOT NULL, note text) PARTITION BY RANGE (id)",
        "CREATE TABLE public.cases_t3_low PARTITION OF public.cases_t3 FOR VALUES FROM (0) TO (100)",
        "CREATE TABLE public.cases_t3_high PARTITION OF public.cases_t3 FOR VALUES FROM (100) TO (200)",
        "INSERT INTO public.cases_t3 VALUES (3, 't3', 'pre-attach')",
        "ALTER TABLE public.cases ATTACH PARTITION public.cases_t3 FOR VALUES IN ('t3')"],
    # Created as a partitioned partition of the tracked table.
    "create_partition_of_partition_by": [
        "CREATE TABLE public.cases_t3 PARTITION OF public.cases FOR VALUES IN ('t3') PARTITION BY RANGE (id)",
        "CREATE TABLE public.cases_t3_low PARTITION OF public.cases_t3 FOR VALUES FROM (0) TO (100)",
        "CREATE TABLE public.cases_t3_high PARTITION OF public.cases_t3 FOR VALUES FROM (100) TO (200)"],
    # A third level, under an existing partitioned partition.
    "third_level_under_existing": [
        "CREATE TABLE public.cases_t3 PARTITION OF public.cases_t2 FOR VALUES FROM (200) TO (300) PARTITION BY RANGE (id)",
        "CREATE TABLE public.cases_t3_low PARTITION OF public.cases_t3 FOR VALUES FROM (200) TO (250)",
        "CREATE TABLE public.cases_t3_high PARTITION OF public.cases_t3 FOR VALUES FROM (250) TO (300)"],
    # A partitioned table the owner gave a rule named audit_no_merge beforehand, with an action.
    "attach_with_its_own_audit_no_merge": [
        "CREATE TABLE public.cases_t3 (id int NOT NULL, tenant text NOT NULL, note text) PARTITION BY RANGE (id)",
        "CREATE TABLE public.cases_t3_low PARTITION OF public.cases_t3 FOR VALUES FROM (0) TO (100)",
        "CREATE TABLE public.cases_t3_high PARTITION OF public.cases_t3 FOR VALUES FROM (100) TO (200)",
        "CREATE RULE audit_no_merge AS ON INSERT TO public.cases_t3 DO ALSO SELECT public.spy('pre-made rule')",
        "ALTER TABLE public.cases ATTACH PARTITION public.cases_t3 FOR VALUES IN ('t3')"],
    # Attached inside a transaction that first drops the rule of the table before it joins.
    "attach_in_a_transaction": [
        "BEGIN",
        "CREATE TABLE public.cases_t3 (id int NOT NULL, tenant text NOT NULL, note text) PARTITION BY RANGE (id)",
        "CREATE TABLE public.cases_t3_low PARTITION OF public.cases_t3 FOR VALUES FROM (0) TO (100)",
        "CREATE TABLE public.cases_t3_high PARTITION OF public.cases_t3 FOR VALUES FROM (100) TO (200)",
        "ALTER TABLE public.cases ATTACH PARTITION public.cases_t3 FOR VALUES IN ('t3')",
        "COMMIT"],
}


@pytest.mark.parametrize("how", list(LATE_PARTITIONED))
def test_a_partitioned_table_that_joins_later_refuses_merge(db, connect, attacker, how):
    """Attack: tracking gave each partitioned table of the tree its rule when it began; partitioned
    tables that join afterwards -- ATTACH PARTITION of a partitioned table with partitions and rows of
    its own, CREATE TABLE ... PARTITION OF ... PARTITION BY, a third level under an existing
    sub-partitioned partition, a table that already has a rule named audit_no_merge (tracking skips
    making one of that name), an attach inside a transaction -- are given one by the event trigger, as
    the role that ran the command, or refused. Then MERGE moves a row between the new table's
    partitions. A break: the MERGE runs (its move reaches no transition table: no event), a
    partitioned table of the tree has no rule, or status is silent."""
    _cases_tree(attacker)
    enable_tracking(connect("app_maintainer"), "public.cases")
    owner = connect("app_maintainer")  # a maintainer owning the tables (member of table_owner) may add partitions
    outcome = "ran"
    for command in LATE_PARTITIONED[how]:
        try:
            owner.execute(command)
        except psycopg.Error as exc:
            outcome = f"{exc.sqlstate} at {command[:50]!r}: {str(exc).splitlines()[0]}"
            if owner.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                owner.execute("ROLLBACK")
            break
    joined = db.execute("SELECT count(*) FROM pg_inherits WHERE inhrelid = to_regclass('public.cases_t3')").fetchone()[0]
    if not joined:
        assert outcome.startswith("PA008"), outcome
        return  # refused: nothing joined
    rules = _rules(db, "public.cases")
    n = len(_captured(db, "public.cases"))
    low = 5
    if how == "third_level_under_existing":
        owner.execute("INSERT INTO public.cases VALUES (210, 't2', 'x')")
        moved = _merge_refused(owner, "public.cases_t3", "id = c.id + 50")
    else:
        owner.execute("INSERT INTO public.cases VALUES (%s, 't3', 'low')", (low,))
        moved = _merge_refused(owner, "public.cases_t3", "id = c.id + 100")
    via_root = _merge_refused(owner, "public.cases", "note = c.note")
    events = _captured(db, "public.cases")[n:]
    assert moved == "refused" and via_root == "refused", (
        f"{how} ({outcome}): MERGE into the new partitioned table: {moved}, into the root: {via_root};"
        f" rules {rules}; events of it {[(e[0], e[2]) for e in events]}")
    assert all(c > 0 for _, c in rules), f"{how}: {rules}; problems {_problems(db)}"
    assert not _problems(db), _problems(db)


MERGE_ROUTES = {
    "with_clause": "WITH s AS (SELECT 1 AS id, 't1' AS tenant) MERGE INTO public.cases c USING s ON c.id = s.id"
                   " WHEN MATCHED THEN UPDATE SET tenant = 't2'",
    "plpgsql_execute": "DO $$ BEGIN EXECUTE 'MERGE INTO public.cases c USING (VALUES (1)) s(id) ON c.id = s.id"
                       " WHEN MATCHED THEN UPDATE SET tenant = ''t2'''; END $$",
    "sql_function": "CREATE FUNCTION public.m() RETURNS void LANGUAGE sql AS $f$ MERGE INTO public.cases c USING"
                    " (VALUES (1)) s(id) ON c.id = s.id WHEN MATCHED THEN UPDATE SET tenant = 't2' $f$; SELECT public.m()",
    "prepared": "PREPARE p AS MERGE INTO public.cases c USING (VALUES (1)) s(id) ON c.id = s.id"
                " WHEN MATCHED THEN UPDATE SET tenant = 't2'; EXECUTE p",
    "only_keyword": "MERGE INTO ONLY public.cases c USING (VALUES (1)) s(id) ON c.id = s.id"
                    " WHEN MATCHED THEN UPDATE SET tenant = 't2'",
    "through_a_view": "CREATE VIEW public.cases_v AS SELECT * FROM public.cases; MERGE INTO public.cases_v c USING"
                      " (VALUES (1)) s(id) ON c.id = s.id WHEN MATCHED THEN UPDATE SET tenant = 't2'",
    "insert_on_conflict_move": "INSERT INTO public.cases VALUES (1, 't1', 'x') ON CONFLICT (id, tenant)"
                               " DO UPDATE SET tenant = 't2'",
}


@pytest.mark.parametrize("route", list(MERGE_ROUTES))
def test_a_move_between_partitions_by_other_merge_routes_is_refused_or_captured(db, connect, attacker, route):
    """Attack: MERGE that moves row 1 from partition t1 to t2 of the tracked table, by routes other
    than a plain MERGE statement: under a WITH clause, through EXECUTE in a DO block, in a SQL
    function, prepared, with ONLY, through a view, and the sibling INSERT ... ON CONFLICT DO UPDATE
    that moves the row. A break: the row ends in the other partition with fewer than the two events
    of a move (or none)."""
    _cases_tree(attacker)
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant")
    attacker.execute("INSERT INTO public.cases VALUES (1, 't1', 't1-note')")
    n = len(_captured(db, "public.cases"))
    outcome = "ran"
    try:
        connect("table_owner").execute(MERGE_ROUTES[route])
    except psycopg.Error as exc:
        outcome = f"{exc.sqlstate}"
    now = db.execute("SELECT tenant FROM public.cases WHERE id = 1").fetchall()
    events = _captured(db, "public.cases")[n:]
    assert now == [("t1",)] or len(events) >= 2, f"{route} ({outcome}): row 1 is now {now}; events {[(e[0], e[1]) for e in events]}"


def test_merge_into_a_leaf_partition_is_captured_whole(db, connect, attacker):
    """Attack: the rule is on partitioned tables only; a leaf partition (cases_t1, cases_t2_low)
    takes MERGE. MERGE into a leaf inserting, updating and deleting rows (WHEN MATCHED AND ...
    THEN DELETE, WHEN NOT MATCHED THEN INSERT), as a writer with a context. A break: a row the MERGE
    inserted, changed or deleted has no event, or an event under another name than the tracked
    table's."""
    _cases_tree(attacker)
    enable_tracking(connect("app_maintainer"), "public.cases")
    attacker.execute("INSERT INTO public.cases VALUES (1, 't1', 'keep'), (2, 't1', 'drop'), (10, 't2', 'low')")
    n = len(_captured(db, "public.cases"))
    for leaf, rows in (("public.cases_t1", "(1, 't1', 'kept'), (2, 't1', 'x'), (3, 't1', 'new')"),
                       ("public.cases_t2_low", "(10, 't2', 'low-changed'), (11, 't2', 'low-new')")):
        attacker.execute(f"MERGE INTO {leaf} c USING (VALUES {rows}) s(id, tenant, note) ON c.id = s.id"
                         " WHEN MATCHED AND c.note = 'drop' THEN DELETE"
                         " WHEN MATCHED THEN UPDATE SET note = s.note"
                         " WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.tenant, s.note)")
    kinds = sorted((e[0], e[2]) for e in _captured(db, "public.cases")[n:])
    assert kinds == sorted([("public.cases.update", '[1, "t1"]'), ("public.cases.delete", '[2, "t1"]'),
                            ("public.cases.insert", '[3, "t1"]'), ("public.cases.update", '[10, "t2"]'),
                            ("public.cases.insert", '[11, "t2"]')]), kinds


def test_a_detached_partitioned_partition_and_disable_tracking_leave_no_rule_behind_and_reattach_refuses(db, connect,
                                                                                                          attacker):
    """Attack: DETACH PARTITION (plain, recorded) of the sub-partitioned cases_t2, then ATTACH it again
    after the owner dropped its rule while it was out (no longer covered, so nothing refuses); then
    disable_tracking and enable_tracking again. A break: the re-attached table has no rule (MERGE runs
    on it and moves rows with no event), or the detach is not recorded, or the rule survives
    disable_tracking of the tree (MERGE refused on untracked tables: not a break, but said) ."""
    _cases_tree(attacker)
    enable_tracking(connect("app_maintainer"), "public.cases")
    owner = connect("app_maintainer")
    n = len(gone_events(db))
    owner.execute("ALTER TABLE public.cases DETACH PARTITION public.cases_t2")
    removed = [e for e in gone_events(db)[n:] if e[0] == "audit.tracked_partition_removed"]
    assert removed, "the detach of cases_t2 is not recorded"
    dropped = "ran"
    try:
        owner.execute("DROP RULE audit_no_merge ON public.cases_t2")
    except psycopg.Error as exc:
        dropped = exc.sqlstate
    owner.execute("INSERT INTO public.cases_t2 VALUES (5, 't2', 'outside')")
    owner.execute("ALTER TABLE public.cases ATTACH PARTITION public.cases_t2 FOR VALUES IN ('t2')")
    k = len(_captured(db, "public.cases"))
    merge = _merge_refused(owner, "public.cases_t2", "id = c.id + 100")
    assert merge == "refused", (f"re-attached cases_t2 (its rule dropped outside: {dropped}) takes MERGE: {merge};"
                                f" events {_captured(db, 'public.cases')[k:]}")
    assert not _problems(db), _problems(db)
    from pgaudit_py import disable_tracking
    disable_tracking(connect("app_maintainer"), "public.cases")
    left = [r for r in _rules(db, "public.cases") if r[1]]
    enable_tracking(connect("app_maintainer"), "public.cases")
    again = _rules(db, "public.cases")
    assert all(c == 1 for _, c in again), f"after disable and enable: {again}"
    assert not left, f"disable_tracking left rules behind: {left}"


# --- 2. UPDATE capture of a table with a tenant column (d690c19) ---------------------------------------

BIG = 1_100_000  # characters: past the 1 MiB a row image is bounded to
MARKERS = ("t1-", "t2-", "t3-", "none-")

TENANT_CASES = {
    # The tenant column excluded and another column redacted; one row moves, one stays with a change.
    "excluded_tenant_redacted_extra": (
        "CREATE TABLE public.acc (id int PRIMARY KEY, tenant text, note text, extra text)",
        {"exclude_columns": ["tenant"], "redact_columns": ["extra"]},
        "INSERT INTO public.acc VALUES (1, 't1', 't1-note-1', 't1-extra-1'), (2, 't1', 't1-note-2', 't1-extra-2')",
        ["UPDATE public.acc SET tenant = CASE id WHEN 1 THEN 't2' ELSE tenant END,"
         " note = CASE id WHEN 1 THEN 't2-note-1' ELSE note END, extra = tenant || '-extra-changed-' || id"
         " WHERE id IN (1, 2)"]),
    # A value over 1 MiB in the moving row, before and after (a bounded placeholder in each image).
    "huge_values_move": (
        "CREATE TABLE public.acc (id int PRIMARY KEY, tenant text, note text, big text)",
        {},
        f"INSERT INTO public.acc VALUES (1, 't1', 't1-note', 't1-' || repeat('a', {BIG})),"
        f" (2, 't1', 't1-stays', 't1-' || repeat('b', {BIG}))",
        [f"UPDATE public.acc SET tenant = CASE id WHEN 1 THEN 't2' ELSE tenant END,"
         f" note = CASE id WHEN 1 THEN 't2-note' ELSE 't1-stays-changed' END,"
         f" big = CASE id WHEN 1 THEN 't2-' || repeat('c', {BIG + 5000}) ELSE 't1-' || repeat('d', {BIG + 7}) END"]),
    # Out of every tenant (NULL) into one and back.
    "null_to_tenant_and_back": (
        "CREATE TABLE public.acc (id int PRIMARY KEY, tenant text, note text)",
        {"redact_columns": []},
        "INSERT INTO public.acc VALUES (1, NULL, 'none-note')",
        ["UPDATE public.acc SET tenant = 't1', note = 't1-note' WHERE id = 1",
         "UPDATE public.acc SET tenant = NULL, note = 'none-note-again' WHERE id = 1",
         "UPDATE public.acc SET tenant = 't2', note = 't2-note' WHERE id = 1"]),
    # The tenant column is the whole key.
    "tenant_is_the_key": (
        "CREATE TABLE public.acc (tenant text PRIMARY KEY, note text)",
        {},
        "INSERT INTO public.acc VALUES ('t1', 't1-note'), ('t3', 't3-note')",
        ["UPDATE public.acc SET tenant = 't2', note = 't2-note' WHERE tenant = 't1'"]),
    # Composite key holding the tenant, the other key column excluded.
    "composite_key_other_key_column_excluded": (
        "CREATE TABLE public.acc (id int, tenant text, note text, PRIMARY KEY (id, tenant))",
        {"exclude_columns": ["id"]},
        "INSERT INTO public.acc VALUES (1, 't1', 't1-note'), (2, 't2', 't2-note')",
        ["UPDATE public.acc SET tenant = 't3', note = 't3-note' WHERE id = 1"]),
    # Two rows swap tenants in one statement, their notes following.
    "swap_tenants": (
        "CREATE TABLE public.acc (id int PRIMARY KEY, tenant text, note text)",
        {},
        "INSERT INTO public.acc VALUES (1, 't1', 't1-one'), (2, 't2', 't2-two')",
        ["UPDATE public.acc SET tenant = CASE tenant WHEN 't1' THEN 't2' ELSE 't1' END,"
         " note = CASE tenant WHEN 't1' THEN 't2-one' ELSE 't1-two' END"]),
    # Keys and tenants changed together: row 2 takes row 1's old key and tenant in the same statement.
    "swap_keys_and_tenants": (
        "CREATE TABLE public.acc (id int PRIMARY KEY, tenant text, note text)",
        {},
        "INSERT INTO public.acc VALUES (1, 't1', 't1-one'), (2, 't2', 't2-two')",
        ["UPDATE public.acc SET id = CASE id WHEN 1 THEN 3 ELSE 1 END, tenant = CASE tenant WHEN 't1' THEN 't2' ELSE 't1' END,"
         " note = CASE tenant WHEN 't1' THEN 't2-one' ELSE 't1-two' END"]),
    # Moving and staying rows mixed, a no-op among them, a redacted column changing on a stayer.
    "mixed_rows": (
        "CREATE TABLE public.acc (id int PRIMARY KEY, tenant text, note text, secret text)",
        {"redact_columns": ["secret"]},
        "INSERT INTO public.acc VALUES (1, 't1', 't1-a', 't1-s'), (2, 't1', 't1-b', 't1-s'), (3, 't2', 't2-c', 't2-s'),"
        " (4, 't2', 't2-d', 't2-s'), (5, NULL, 'none-e', 'none-s')",
        ["UPDATE public.acc SET tenant = CASE id WHEN 1 THEN 't2' WHEN 3 THEN 't3' WHEN 5 THEN 't1' ELSE tenant END,"
         " note = CASE id WHEN 1 THEN 't2-a' WHEN 3 THEN 't3-c' WHEN 5 THEN 't1-e' ELSE note END,"
         " secret = CASE id WHEN 2 THEN 't1-s2' WHEN 1 THEN 't2-s' WHEN 3 THEN 't3-s' WHEN 5 THEN 't1-s' ELSE secret END"]),
    # skip_noop_updates off: every row updated to itself, one moved.
    "noop_kept_and_a_move": (
        "CREATE TABLE public.acc (id int PRIMARY KEY, tenant text, note text)",
        {"skip_noop_updates": False},
        "INSERT INTO public.acc VALUES (1, 't1', 't1-a'), (2, 't2', 't2-b')",
        ["UPDATE public.acc SET note = note", "UPDATE public.acc SET tenant = 't3', note = 't3-a' WHERE id = 1"]),
    # Every column but the key excluded (the tenant too): a move changes nothing the images show.
    "all_but_key_excluded": (
        "CREATE TABLE public.acc (id int PRIMARY KEY, tenant text, note text)",
        {"exclude_columns": ["tenant", "note"]},
        "INSERT INTO public.acc VALUES (1, 't1', 't1-a')",
        ["UPDATE public.acc SET tenant = 't2', note = 't2-a' WHERE id = 1"]),
}


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (_strings(k) + _strings(v))]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@pytest.mark.parametrize("case", list(TENANT_CASES))
def test_each_tenant_sees_only_its_own_versions_of_a_moved_row(db, connect, attacker, case):
    """Attack on the rewritten tenant split (d690c19: key, tenant and images each one expression on
    s.side): UPDATEs that move rows between tenants with the tenant column excluded and another
    redacted, values over 1 MiB on both sides (bounded placeholders), NULL tenant and back, the tenant
    as the whole key, a composite key with its other column excluded, two rows swapping tenants (and
    keys) in one statement, moving and staying rows mixed (a redacted change on a stayer, a no-op),
    skip_noop_updates off, every column but the key excluded. Values carry their tenant's mark
    (t1-..., none-... for no tenant). A break: an event filed under one tenant whose images, payload
    or `changed` carry another tenant's value; a moved-out event with row_after or `changed`, a
    moved-in one with row_before; a move that is not two events; a moved-out row_before that is not
    the version last recorded for that key (a placeholder made from the other side's value); two
    events with one id; the chain no longer verifying (SQL and Python)."""
    table, options, insert, updates = TENANT_CASES[case]
    attacker.execute(table)
    enable_tracking(connect("app_maintainer"), "public.acc", tenant_column="tenant", **options)
    attacker.execute(insert)
    key_col = "tenant" if case == "tenant_is_the_key" else "id"
    before = {r[0]: r[1] for r in db.execute(f"SELECT {key_col}::text, tenant FROM public.acc")}
    n = len(_captured(db, "public.acc"))
    with contextlib.ExitStack():
        writer = connect("table_owner")
        writer.execute("SELECT set_config('pgaudit_py.tenant_id', 't9', false)")
        for update in updates:
            writer.execute(update)
    events = _captured(db, "public.acc")
    problems = []
    for kind, tenant, target, payload, row_before, row_after, changed, _id in events:
        mark = f"{tenant}-" if tenant else "none-"
        for part, value in (("payload", payload), ("row_before", row_before), ("row_after", row_after),
                            ("changed", changed)):
            foreign = [s[:40] for s in _strings(value) if s.startswith(MARKERS) and not s.startswith(mark)]
            if foreign:
                problems.append(f"{kind} under {tenant!r} (target {target}): its {part} holds {foreign}")
        moved = (payload or {}).get("tenant")
        if moved == "moved out" and (row_after is not None or changed is not None):
            problems.append(f"moved-out event under {tenant} has row_after/changed: {row_after} {changed}")
        if moved == "moved in" and (row_before is not None or changed is not None):
            problems.append(f"moved-in event under {tenant} has row_before/changed: {row_before} {changed}")
    ids = [e[7] for e in events]
    if len(set(ids)) != len(ids):
        problems.append(f"events share ids: {sorted(ids)}")
    # Each UPDATE's row_before is the version last recorded under its key.
    last: dict[str, object] = {}
    for kind, tenant, target, payload, row_before, row_after, _changed, _id in events:
        if kind.endswith(".update") and row_before is not None and "moved_from" not in (payload or {}) \
                and target in last and last[target] != row_before:
            problems.append(f"{kind} of {target} under {tenant}: row_before {str(row_before)[:200]} is not the last"
                            f" version recorded {str(last[target])[:200]}")
        if row_after is not None:
            last[target] = row_after
    # Every move is two events, one under each tenant.
    after = {r[0]: r[1] for r in db.execute(f"SELECT {key_col}::text, tenant FROM public.acc")}
    new = events[n:]
    outs = [(e[1], e[2]) for e in new if (e[3] or {}).get("tenant") == "moved out"]
    ins = [(e[1], e[2]) for e in new if (e[3] or {}).get("tenant") == "moved in"]
    if case not in ("null_to_tenant_and_back", "noop_kept_and_a_move", "tenant_is_the_key", "swap_keys_and_tenants") \
            and case != "composite_key_other_key_column_excluded":
        expected_moves = sum(1 for k in before if k in after and before[k] != after[k])
        if len(outs) != expected_moves or len(ins) != expected_moves:
            problems.append(f"{expected_moves} rows moved tenant; moved out {outs}, moved in {ins}")
    elif not outs or len(outs) != len(ins):
        problems.append(f"moves: out {outs}, in {ins}")
    assert not problems, f"{case}:\n" + "\n".join(problems)
    seal(db)
    both_verifiers_ok(db)


# --- 3. A partition that becomes detach pending while tracking begins ---------------------------------

def _waiting(db, application_name: str) -> bool:
    return bool(db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'",
                           (application_name,)).fetchone()[0])


def test_a_concurrent_detach_racing_enable_tracking_leaves_no_pending_partition_in_a_tracked_table(db, connect, attacker):
    """Attack: the refusal of DETACH ... CONCURRENTLY looks at the tracked tables when the command
    starts, and enable_tracking refuses a pending partition. The owner starts DETACH PARTITION
    book_2 CONCURRENTLY on the untracked table and holds it in its first transaction (another session
    of its own holds a lock on book_2); the maintainer calls enable_tracking(public.book), which passes
    its first checks and waits for its lock on the table behind the detach; the first session lets
    go: the detach marks book_2 pending and commits, tracking takes its lock and goes on, and the
    detach's second transaction is then cancelled in its wait (statement_timeout, a reader holding
    the table). A row is then written into the pending partition. A break: public.book ends tracked
    with book_2 detach pending (its rows out of the table for every query, though capture records
    them as public.book's: row_as_of reads a row the table does not hold), with nothing refused and
    nothing in status."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100)")
    attacker.execute("CREATE TABLE public.book_2 PARTITION OF public.book FOR VALUES FROM (100) TO (200)")
    attacker.execute("INSERT INTO public.book VALUES (1, 1), (150, 2)")
    reader = connect("table_owner", autocommit=False)
    reader.execute("SELECT count(*) FROM public.book")  # holds the parent until the end
    holder = connect("table_owner", autocommit=False)
    holder.execute("LOCK TABLE public.book_2 IN SHARE MODE")
    detacher = connect("table_owner", application_name="t38-detacher")
    detacher.execute("SET statement_timeout = '8s'")
    tracker = connect("app_maintainer", application_name="t38-tracker")
    results: dict[str, str] = {}

    def detach() -> None:
        try:
            detacher.execute("ALTER TABLE public.book DETACH PARTITION public.book_2 CONCURRENTLY")
            results["detach"] = "finished"
        except psycopg.Error as exc:
            results["detach"] = f"{exc.sqlstate} {str(exc).splitlines()[0]}"

    def track() -> None:
        try:
            enable_tracking(tracker, "public.book")
            results["track"] = "tracked"
        except Exception as exc:  # noqa: BLE001 - the wrapper's error for PA008 included
            results["track"] = f"{type(exc).__name__} {str(exc).splitlines()[0]}"

    threads = [threading.Thread(target=detach), threading.Thread(target=track)]
    threads[0].start()
    deadline = time.monotonic() + 5
    while not _waiting(db, "t38-detacher") and time.monotonic() < deadline:
        time.sleep(0.05)
    threads[1].start()
    deadline = time.monotonic() + 5
    while not _waiting(db, "t38-tracker") and time.monotonic() < deadline and threads[1].is_alive():
        time.sleep(0.05)
    holder.commit()
    for t in threads:
        t.join(30)
    reader.rollback()
    pending = db.execute("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'public.book_2'::regclass").fetchall()
    tracked = db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.book'::regclass").fetchone()[0]
    if tracked and pending == [(True,)]:
        attacker.execute("INSERT INTO public.book_2 VALUES (170, 7)")
        phantom = db.execute(f"SELECT audit.row_as_of('public.book', '170', {LATER})").fetchone()[0]
        in_table = db.execute("SELECT count(*) FROM public.book WHERE id = 170").fetchone()[0]
        pytest.fail(f"{results}: public.book is tracked with book_2 detach pending; row 170 written into it reads"
                    f" {phantom} in public.book's history while the table holds {in_table} such rows;"
                    f" status problems: {_problems(db)}")


def test_a_partitioned_table_with_a_pending_partition_cannot_join_a_tracked_table(db, connect, attacker):
    """Attack: the refusals look at the tracked tree; an untracked partitioned table (shelf) gets a
    partition left detach pending (DETACH ... CONCURRENTLY of shelf_a cancelled in its wait: shelf is
    not tracked, so nothing refuses it), and shelf is then attached to the tracked public.book by a
    maintainer owning both; rows are written into the pending partition. A break: the attach succeeds
    and shelf_a stays pending inside the tracked tree, its rows recorded as public.book's while the
    table does not hold them."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100)")
    attacker.execute("CREATE TABLE public.shelf (id int NOT NULL, v int) PARTITION BY RANGE (id)")
    attacker.execute("ALTER TABLE public.shelf ADD PRIMARY KEY (id)")
    attacker.execute("CREATE TABLE public.shelf_a PARTITION OF public.shelf FOR VALUES FROM (100) TO (150)")
    attacker.execute("CREATE TABLE public.shelf_b PARTITION OF public.shelf FOR VALUES FROM (150) TO (200)")
    attacker.execute("INSERT INTO public.shelf VALUES (120, 1), (160, 2)")
    reader = connect("table_owner", autocommit=False)
    reader.execute("SELECT count(*) FROM public.shelf")
    detacher = connect("table_owner")
    detacher.execute("SET statement_timeout = '1s'")
    with pytest.raises(psycopg.Error):
        detacher.execute("ALTER TABLE public.shelf DETACH PARTITION public.shelf_a CONCURRENTLY")
    reader.rollback()
    pending = db.execute("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'public.shelf_a'::regclass").fetchall()
    if pending != [(True,)]:
        pytest.skip(f"the detach did not stay pending: {pending}")
    enable_tracking(connect("app_maintainer"), "public.book")  # after: while it is tracked, no detach is concurrent
    outcome = "attached"
    try:
        connect("app_maintainer").execute("ALTER TABLE public.book ATTACH PARTITION public.shelf FOR VALUES FROM (100) TO (200)")
    except psycopg.Error as exc:
        outcome = f"{exc.sqlstate} {str(exc).splitlines()[0]}"
    if outcome == "attached":
        attacker.execute("INSERT INTO public.shelf_a VALUES (130, 3)")
        phantom = db.execute(f"SELECT audit.row_as_of('public.book', '130', {LATER})").fetchone()[0]
        in_table = db.execute("SELECT count(*) FROM public.book WHERE id = 130").fetchone()[0]
        assert not phantom or in_table, (f"shelf attached with shelf_a detach pending: row 130 reads {phantom} in"
                                         f" public.book's history; the table holds {in_table}; problems {_problems(db)}")
        assert _problems(db), "status says nothing of a pending partition in a tracked tree"


# --- 4. The failure brake's reservations (8fad83a) ---------------------------------------------------

def _unknown() -> str:
    return f"pga_{os.urandom(6).hex()}_{os.urandom(32).hex()}"


def _status(url: str, token: str, forwarded: str | None = None, timeout: float = 20) -> int:
    host, port = url.removeprefix("http://").split(":")
    request = (f"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
               + (f"X-Forwarded-For: {forwarded}\r\n" if forwarded else "") + "Connection: close\r\n\r\n")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(request.encode())
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := s.recv(65536):
                answer += chunk
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else 0


def test_lookups_cancelled_or_failed_mid_flight_release_their_reservation(db, connect, start_api, make_token):
    """Attack on check()/done(): a lookup reserves its address's place when it starts. The lookups
    of an address hang (the token table locked), and then end every way but a plain answer: the
    clients disconnect mid-lookup, and the server's database connections are terminated under the
    waiting lookups (a database failure). A reservation that outlives its request locks the
    address out for good. After the lock goes and the window (shortened to 2 s) passes, a client at
    the same address presents a valid token it never used there. A break: 429 for it (the address is
    locked out with no failure in the window), reservations left counted, or the brake no longer
    braking afterwards (a 4th unknown token looked up)."""
    valid = make_token("reader", name="dashboard")
    api = start_api(failures_allowed=3, pool_size=3)
    brake = api.app.state.api.auth.brake
    brake.window = 2.0
    locker = connect(autocommit=False)
    locker.execute("LOCK TABLE audit.api_tokens IN ACCESS EXCLUSIVE MODE")
    host, port = api.url.removeprefix("http://").split(":")
    sockets = []
    for _ in range(3):
        s = socket.create_connection((host, int(port)), timeout=10)
        s.sendall(f"GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {_unknown()}\r\n\r\n".encode())
        sockets.append(s)
    deadline = time.monotonic() + 10
    while sum(brake._in_flight.values()) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    in_flight_while_locked = dict(brake._in_flight)
    braked_meanwhile = _status(api.url, _unknown(), timeout=10)
    for s in sockets[:2]:
        s.close()  # two clients give up mid-lookup
    time.sleep(0.5)
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'pgaudit serve'"
               " AND pid <> pg_backend_pid()")
    time.sleep(0.5)
    locker.rollback()
    sockets[2].close()
    time.sleep(brake.window + 1.5)
    left = dict(brake._in_flight)
    code = _status(api.url, valid)
    for _ in range(3):
        _status(api.url, _unknown())
    after = _status(api.url, _unknown())
    assert in_flight_while_locked and braked_meanwhile == 429, (in_flight_while_locked, braked_meanwhile)
    assert not left and code == 200, (f"after the hung lookups ended (disconnects, terminated connections) and the"
                                      f" window passed: reservations left {left}; a valid token got {code}")
    assert after == 429, f"the brake no longer brakes: a 4th unknown token got {after}"


@pytest.fixture
def proxied(postgresql):
    info = postgresql.info
    # The API behind a trusted proxy at 127.0.0.1 (pgaudit serve --trusted-proxy 127.0.0.1).
    server = LiveServer(ServerConfig(dsn=f"host={info.host} port={info.port} dbname={info.dbname} user=app_maintainer",
                                     failures_allowed=3), trusted_proxies=["127.0.0.1"])
    yield server
    server.stop()


FORMS = {
    # The proxy appends the peer; what the client wrote before it is the client's text.
    "spoofed entries before the proxy's": (["198.51.100.1, 203.0.113.7", "10.9.9.9, 203.0.113.7",
                                            "192.0.2.50, 203.0.113.7"], "203.0.113.7"),
    "IPv4 and IPv4-mapped IPv6": (["203.0.113.8", "::ffff:203.0.113.8", "::ffff:cb00:7108"], "203.0.113.8"),
    "one IPv6 /64": (["2001:db8:1:2::1", "2001:db8:1:2::ffff", "2001:db8:1:2:abcd:ef01:2345:6789"],
                     "2001:db8:1:2:9::9"),
    "IPv6 with zone ids": (["fe80::1%eth0", "fe80::1%1", "fe80::2%lo"], "fe80::3"),
    "upper-case and zero-padded IPv6": (["2001:DB8:1:2::1", "2001:0db8:0001:0002:0000:0000:0000:0001",
                                         "2001:db8:1:2:0:0:0:1"], "2001:db8:1:2::7"),
}


@pytest.mark.parametrize("form", list(FORMS))
def test_one_client_by_other_spellings_is_braked_as_one_and_its_neighbours_are_not(proxied, make_token, form):
    """Attack: behind a trusted proxy (X-Forwarded-For believed from it), a guesser presents unknown
    tokens under spellings of one client: spoofed entries before the address the proxy appended, an
    IPv4 address and its IPv4-mapped IPv6 forms, addresses of one IPv6 /64, link-local addresses with
    zone ids, upper-case and zero-padded IPv6. A break: its next unknown token (under another
    spelling) is looked up (401) rather than braked (429); or a client at the address the guesser
    spoofed (192.0.2.50), or at another address, presenting a valid token gets 429."""
    spellings, next_one = FORMS[form]
    valid = make_token("reader", name="neighbour")
    codes = [_status(proxied.url, _unknown(), forwarded=f) for f in spellings]
    braked = _status(proxied.url, _unknown(), forwarded=next_one)
    victim = _status(proxied.url, valid, forwarded="192.0.2.50")
    other = _status(proxied.url, valid, forwarded="198.51.100.77")
    assert codes == [401, 401, 401] and braked == 429, f"{form}: guesses {codes}, then {next_one}: {braked}"
    assert victim == 200 and other == 200, f"{form}: a valid token at the spoofed address: {victim}, elsewhere: {other}"


def test_a_token_that_worked_is_never_braked_and_a_new_one_is_once_the_window_passes(start_api, make_token):
    """Attack: a dashboard shares an address with a guesser (a NAT). A break: the dashboard's token,
    which authenticated before from there, gets 429 while the address is braked; or a token that
    never authenticated there is still 429'd after the window has passed with no new failure."""
    api = start_api(failures_allowed=3)
    api.app.state.api.auth.brake.window = 2.0
    dashboard, fresh = make_token("reader", name="dash"), make_token("reader", name="fresh")
    assert _status(api.url, dashboard) == 200
    guesses = [_status(api.url, _unknown()) for _ in range(4)]
    during = _status(api.url, dashboard), _status(api.url, fresh)
    time.sleep(2.5)
    later = _status(api.url, fresh)
    assert guesses[-1] == 429 and during == (200, 429), (guesses, during)
    assert later == 200, f"a valid token 2.5 s after the last failure (window 2 s): {later}"


# --- 5. A DSN's password through every command (ccf906a) ---------------------------------------------

PIECES = ("Zq8w", "Vx3k")
SERVICE_FILE = "[svc]\nhost=127.0.0.1\nport=1\nuser=u\npassword=Zq8w@Vx3k\n[broken]\nhost=127.0.0.1\npassword Zq8wVx3k\n"
DSN_FORMS = {
    "PASSWORD= in capitals": "host=127.0.0.1 port=1 user=u PASSWORD=Zq8w@Vx3k",
    "password = with spaces, quoted with a space": "host=127.0.0.1 port=1 user=u password = 'Zq8w Vx3k'",
    "an escaped quote in a quoted password": "host=127.0.0.1 port=1 user=u password='Zq8w\\' Vx3k'",
    "an unterminated quote": "host=127.0.0.1 port=1 user=u password='Zq8w Vx3k",
    "a URI's ?password=": "postgresql://u@127.0.0.1:1/app?password=Zq8w%40Vx3k",
    "a URI's ?password= and a second host from its text": "postgresql://u@127.0.0.1:1/app?password=Zq8w&host=Vx3k.invalid",
    "percent-encoded userinfo": "postgresql://u:Zq8w%2CVx3k%40x@127.0.0.1:1/app",
    "a # in the userinfo": "postgresql://u:Zq8w#Vx3k@127.0.0.1:1/app",
    "a misspelt password keyword": "host=127.0.0.1 port=1 user=u passwrd=Zq8wVx3k",
    "a misspelt URI query parameter": "postgresql://u@127.0.0.1:1/app?passwd=Zq8wVx3k",
    "sslpassword": "host=127.0.0.1 port=1 user=u sslmode=require sslpassword=Zq8wVx3k",
    "a service file's password": "SERVICE:service=svc",
    "a service file line without =": "SERVICE:service=broken",
    "the scheme in capitals": "POSTGRESQL://u:Zq8w@Vx3k@127.0.0.1:1/app",
    "a password and an option the server refuses": "REAL:password=Zq8wVx3k options='-c statement_timeout=Zq8wVx3k'",
}
DSN_COMMANDS = [["status"], ["worker"], ["events"], ["archive", "verify", "--target", "file:///nonexistent"],
                ["serve", "--port", "0"], ["verify"], ["pgaudit-install"]]


@pytest.mark.parametrize("form", list(DSN_FORMS))
def test_no_command_prints_a_piece_of_a_password_however_the_dsn_gives_it(postgresql, tmp_path, form):
    """Attack: the withholding decides whether a connection string holds a password from
    conninfo_to_dict's password or a URI's user:password@. Passwords given otherwise: PASSWORD= in
    capitals, spaces around '=', a quoted value with a space or an escaped quote, an unterminated
    quote, a URI's ?password= (with a host= after it from the same text), percent-encoded userinfo,
    a '#' in the userinfo, a misspelt keyword or query parameter (libpq names what it cannot read),
    sslpassword, a service file (PGSERVICEFILE) holding the password or a line libpq cannot parse,
    a URI scheme in capitals (not a URI for libpq: key=value text it quotes), and a password beside an
    option the running server refuses (its message quotes the value). Each command that connects:
    status, worker, events, archive verify, serve, verify, pgaudit-install. A break: a piece of the password in its
    output, or a traceback."""
    dsn = DSN_FORMS[form]
    env = dict(ENV)
    if dsn.startswith("SERVICE:"):
        (tmp_path / "pg_service.conf").write_text(SERVICE_FILE)
        env["PGSERVICEFILE"] = str(tmp_path / "pg_service.conf")
        dsn = dsn.removeprefix("SERVICE:")
    if dsn.startswith("REAL:"):
        i = postgresql.info
        dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={i.user} " + dsn.removeprefix("REAL:")
    found = []
    for command in DSN_COMMANDS:
        if command == ["pgaudit-install"]:
            args = [sys.executable, "-c", "import sys; from pgaudit_py.cli import install_main;"
                    " sys.argv[0] = 'pgaudit-install'; install_main()", "--dsn", dsn]
        else:
            args = [sys.executable, "-m", "pgaudit_py.cli", *command, "--dsn", dsn]
        done = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
        out = done.stdout + done.stderr
        if "Traceback" in out or any(p in out for p in PIECES):
            found.append(f"{command[0]} (exit {done.returncode}): {out.strip()[-300:]!r}")
    assert not found, f"{form}:\n" + "\n".join(found)


def test_the_python_api_keeps_the_password_out_of_its_error_and_its_traceback():
    """Attack: an application calls pgaudit_py.dsn.connect (what every command uses) with a DSN whose
    password libpq repeats (an unencoded '@' makes part of it a host), and logs the failure the usual
    ways: str(), repr(), logging.exception, traceback.format_exception (which follows __context__
    unless suppressed). A break: a piece of the password in any of them."""
    import logging
    import traceback

    from pgaudit_py.dsn import connect as connect_dsn
    from pgaudit_py.errors import CannotConnect

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(logging.Formatter().format(record))

    log = logging.getLogger("t38-app")
    handler = Keep()
    log.addHandler(handler)
    try:
        with pytest.raises(CannotConnect) as failed:
            dsn = "postgresql://u:" + "@".join(PIECES) + "@127.0.0.1:1/app"  # no source line spells it
            connect_dsn(dsn, connect_timeout=3)
        try:
            raise failed.value
        except CannotConnect:
            log.exception("could not connect")
    finally:
        log.removeHandler(handler)
    texts = [str(failed.value), repr(failed.value), "".join(traceback.format_exception(failed.value)), *records]
    leaks = [t[-300:] for t in texts if any(p in t for p in PIECES)]
    assert not leaks, leaks


# --- 6. Checkpoint files the three verifiers must read alike ---------------------------------------------

def _archive(db, tmp_path: Path):
    from test_trust_attacks_37 import _archive_and_checkpoint

    return _archive_and_checkpoint(db, tmp_path)


def _sign(body: dict, private) -> dict:
    from cryptography.hazmat.primitives import serialization

    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"ed25519": {"public_key": base64.b64encode(raw).decode(),
                        "signature": base64.b64encode(private.sign(canonical.dumps(body).encode())).decode()}}


def _checkpoint_bytes(case: str, body: dict, private) -> bytes:
    n = body["block_no"]
    good = json.dumps(_sign(body, private))
    inner = canonical.dumps(body)
    rest = inner[1:]  # the body's members after its opening brace

    def doc(body_text: str, sig_text: str = good) -> bytes:
        return ('{"checkpoint": ' + body_text + ', "signatures": ' + sig_text + "}\n").encode("utf-8", "surrogatepass")

    def signed(b: dict) -> bytes:
        return doc(canonical.dumps(b), json.dumps(_sign(b, private)))

    if case == "NaN in a member":
        return doc('{"x": NaN, ' + rest)
    if case == "Infinity as block_no":
        return doc(inner.replace(f'"block_no": {n}', '"block_no": Infinity'))
    if case == "-Infinity in the signatures":
        return doc(inner, '{"ed25519": {"public_key": "", "signature": ""}, "x": -Infinity}')
    if case == "block_no of 5000 digits":
        return doc(inner.replace(f'"block_no": {n}', '"block_no": ' + "7" * 5000))
    if case == "block_no of 4300 digits, signed":
        return signed({**body, "block_no": int("7" * 4300)})
    if case == "block_no true, signed":
        return signed({**body, "block_no": True})
    if case == "block_no -1, signed":
        return signed({**body, "block_no": -1})
    if case == "block_no 0, signed":
        return signed({**body, "block_no": 0})
    if case == "block_no written 5.0":
        return doc(inner.replace(f'"block_no": {n}', f'"block_no": {n}.0'))
    if case == "block_no written with an exponent":
        return doc(inner.replace(f'"block_no": {n}', f'"block_no": {n}e0'))
    if case == "block_no 1E400":
        return doc(inner.replace(f'"block_no": {n}', '"block_no": 1E400'))
    if case == "block_no with a leading zero":
        return doc(inner.replace(f'"block_no": {n}', f'"block_no": 0{n}'))
    if case == "a member nested 100000 deep":
        return doc('{"x": ' + "[" * 100000 + "]" * 100000 + ", " + rest)
    if case == "the signatures nested 100000 deep":
        return doc(inner, '{"x": ' + "{\"a\": " * 50000 + "1" + "}" * 50000 + "}")
    if case == "a duplicate signature inside ed25519":
        sig = _sign(body, private)["ed25519"]
        return doc(inner, '{"ed25519": {"public_key": "' + sig["public_key"] + '", "signature": "AAAA", "signature": "'
                   + sig["signature"] + '"}}')
    if case == "a duplicate key in a nested member of the body":
        return doc('{"x": {"a": 1, "a": 2}, ' + rest)
    if case == "a lone surrogate escaped in block_hash":
        return doc(inner.replace('"block_hash": "', '"block_hash": "\\ud800'))
    if case == "a lone surrogate escaped in a key of the body":
        return doc('{"\\udfff": 1, ' + rest)
    if case == "a lone surrogate escaped in the hmac signature":
        sig = _sign(body, private)["ed25519"]
        return doc(inner, '{"ed25519": ' + json.dumps(sig) + ', "hmac-sha256": "\\ud800"}')
    if case == "a lone surrogate escaped in the public key":
        sig = _sign(body, private)["ed25519"]
        return doc(inner, '{"ed25519": {"public_key": "\\ud800", "signature": "' + sig["signature"] + '"}}')
    if case == "an astral character escaped as a pair, signed":
        return signed({**body, "x": "\U0001f600"})
    if case == "a UTF-8 encoded surrogate":
        return doc('{"x": "\udcff", ' + rest).replace("\udcff".encode("utf-8", "surrogatepass"), b"\xed\xa0\x80")
    if case == "an overlong UTF-8 slash":
        return doc('{"x": "a", ' + rest).replace(b'"a"', b'"\xc0\xaf"')
    if case == "exactly 1 MiB":
        raw = signed(body)
        return raw[:-1] + b" " * ((1 << 20) - len(raw)) + b"\n"
    if case == "1 MiB and a byte":
        raw = signed(body)
        return raw[:-1] + b" " * ((1 << 20) - len(raw) + 1) + b"\n"
    if case == "a top-level array":
        return b"[" + signed(body).strip() + b"]\n"
    raise AssertionError(case)


CHECKPOINT_CASES = [
    "NaN in a member", "Infinity as block_no", "-Infinity in the signatures", "block_no of 5000 digits",
    "block_no of 4300 digits, signed", "block_no true, signed", "block_no -1, signed", "block_no 0, signed",
    "block_no written 5.0", "block_no written with an exponent", "block_no 1E400", "block_no with a leading zero",
    "a member nested 100000 deep", "the signatures nested 100000 deep", "a duplicate signature inside ed25519",
    "a duplicate key in a nested member of the body", "a lone surrogate escaped in block_hash",
    "a lone surrogate escaped in a key of the body", "a lone surrogate escaped in the hmac signature",
    "a lone surrogate escaped in the public key", "an astral character escaped as a pair, signed",
    "a UTF-8 encoded surrogate", "an overlong UTF-8 slash", "exactly 1 MiB", "1 MiB and a byte", "a top-level array",
]


@pytest.mark.parametrize("case", CHECKPOINT_CASES)
def test_the_three_verifiers_read_a_hostile_checkpoint_alike_and_never_crash(db, tmp_path, case):
    """Attack: one real archive and a checkpoint of its last block, its file rewritten: NaN and
    Infinity (Python's json takes them), block_no of 5000 digits (past int conversion's limit) and of
    4300 (within it, signed), true (a bool is an int in Python), -1, 0, 5.0, 5e0, 1E400, a leading
    zero, a member and the signatures nested 100000 deep (RecursionError), duplicate keys nested in
    the signatures and the body, lone surrogates escaped in the block hash, a key, the HMAC and the
    public key, an astral character, a UTF-8 encoded surrogate, an overlong encoding, exactly 1 MiB
    and one byte over, a top-level array. Bodies the case does not change are signed with the
    installation's key. Read by the standalone verifier, `pgaudit archive verify --offline
    --checkpoint` and `pgaudit verify --checkpoint`. A break: a traceback, a crash or an error
    exit other than a verdict, or the three disagree."""
    directory, document, private, public = _archive(db, tmp_path)
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_bytes(_checkpoint_bytes(case, document["checkpoint"], private))
    verifier, _ = verifier_and_key(tmp_path)
    runs = checkpoint_readers(verifier, directory, public, checkpoint, db.info)
    env = dict(ENV)
    if messages_locale_available():
        env.update(LANG="de_DE.UTF-8", LC_ALL="de_DE.UTF-8")
    verdicts: dict[str, str] = {}
    for name, args in runs.items():
        done = subprocess.run(args, capture_output=True, text=True, errors="replace", timeout=120, cwd=ROOT, env=env)
        out = (done.stdout + done.stderr).strip()
        assert "Traceback" not in out and done.returncode in (0, 1, 2), (  # 2: bad input (docs/cli.md)
            f"{case}: {name} exits {done.returncode}: {out.splitlines()[-1] if out else ''}")
        said = [line for line in out.splitlines() if "PROBLEM" in line or "checkpoint" in line] or out.splitlines()
        verdicts[name] = ("accepts" if done.returncode == 0 else "refuses") + f": {said[0][:160] if said else ''}"
    accepted = {name for name, v in verdicts.items() if v.startswith("accepts")}
    assert accepted in (set(), set(runs)), f"{case}: the verifiers disagree: {json.dumps(verdicts, indent=1)}"


# --- 7. Names that are no text a terminal should show as they are -------------------------------------------

HOSTILE_NAMES = [
    b"x\nverified 9 batches, blocks 1 to 9: seq 1 to 9, then to now",
    "\u202eblocks-000000000001-000000000001.manifest.json".encode(),
    b"\x1b]0;owned\x07\x1b[2Jclear",
    b"\xffnot-utf8",
    "\u2028line-separator\x85nel".encode(),
]
RAW_FORBIDDEN = ["\x1b", "\x07", "\u202e", "\u2028", "\x85"]


def _strict_env() -> dict[str, str]:
    env = dict(ENV)
    if messages_locale_available():
        env.update(LANG="de_DE.UTF-8", LC_ALL="de_DE.UTF-8")
    else:
        env["PYTHONIOENCODING"] = "utf-8:strict"
    return env


def _forged_or_raw(out: str, prefixes: tuple[str, ...]) -> list[str]:
    found = [f"raw {c!r}" for c in RAW_FORBIDDEN if c in out]
    found += [f"a line of no verdict's: {line[:120]!r}" for line in out.splitlines()
              if line.strip() and not line.startswith(prefixes)]
    return found


@pytest.mark.parametrize("how", ["online", "online --json", "standalone", "archive verify --offline"])
def test_hostile_object_names_forge_no_line_and_crash_no_verifier(db, tmp_path, how):
    """Attack: whoever holds the archive directory drops files beside real batches whose names hold a
    newline and a forged success line, a right-to-left override before a batch's name, an OSC title
    and clear-screen escape, bytes that are not UTF-8, U+2028 and NEL; and a subdirectory whose name
    holds a newline (the online verifier lists files in subdirectories). Run under a strict UTF-8
    locale: the online `pgaudit archive verify` (text and --json), the standalone verifier and
    `archive verify --offline`. A break: a traceback; an exit other than 1; a raw control, bidi or
    separator character in the text output, or a line that is none of the verifier's own (a forged
    'verified ...'); --json output that does not parse."""
    directory, _document, _private, public = _archive(db, tmp_path)
    base = os.fsencode(directory)
    for name in HOSTILE_NAMES:
        with open(base + b"/" + name, "wb") as f:
            f.write(b"x")
    os.mkdir(base + b"/sub\ndir")
    with open(base + b"/sub\ndir/inner" + "\u202e".encode(), "wb") as f:
        f.write(b"x")
    verifier, _ = verifier_and_key(tmp_path)
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"
    args = {
        "online": [sys.executable, "-m", "pgaudit_py.cli", "archive", "verify", "--target", f"file://{directory}",
                   "--public-key", str(public), "--dsn", dsn],
        "online --json": [sys.executable, "-m", "pgaudit_py.cli", "archive", "verify", "--json", "--target",
                          f"file://{directory}", "--public-key", str(public), "--dsn", dsn],
        "standalone": [sys.executable, "-I", str(verifier), str(directory), "--public-key", str(public)],
        "archive verify --offline": [sys.executable, "-m", "pgaudit_py.cli", "archive", "verify", "--offline",
                                     "--target", f"file://{directory}", "--public-key", str(public)],
    }[how]
    done = subprocess.run(args, capture_output=True, timeout=120, cwd=ROOT, env=_strict_env())
    out, err = done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in out + err, (f"{how}: exit {done.returncode}, stdout {len(done.stdout)} bytes:"
                                          f" {(out + err).strip().splitlines()[-1]}")
    assert done.returncode == 1, (how, done.returncode, (out + err)[-400:])
    if how == "online --json":
        json.loads(out)
        return
    prefixes = (("checked ", "archived through", "no batch has left", "PROBLEM: ", "pgaudit: ") if how == "online"
                else ("PROBLEM: ", "NOT VERIFIED", "pgaudit: "))
    found = _forged_or_raw(out + err, prefixes)
    assert not found, f"{how}: " + "; ".join(found) + f"\n{(out + err)[:1500]}"


@pytest.mark.parametrize("content", ["the real checkpoint", "not a checkpoint"])
@pytest.mark.parametrize("mode", ["text", "--json"])
def test_a_hostile_checkpoint_file_name_forges_no_line_of_pgaudit_verify(db, tmp_path, content, mode):
    """Attack: the checkpoint an auditor is handed sits under a name holding a newline and a forged
    'chain intact' line, a right-to-left override and a byte that is not UTF-8; `pgaudit verify
    --checkpoint` reads it (the real checkpoint, and one that is not). Under a strict UTF-8 locale.
    A break: a traceback; a raw control or bidi character, or a line that is not the command's own
    (text); output that does not parse (--json)."""
    directory, document, _private, public = _archive(db, tmp_path)
    name = os.fsencode(tmp_path) + "/cp\npgaudit: chain intact: 999 blocks\u202eevil\x1b[31m".encode() + b"\xff.json"
    with open(name, "wb") as f:
        f.write((json.dumps(document) + "\n").encode() if content == "the real checkpoint" else b"{}\n")
    i = db.info
    args = [os.fsencode(sys.executable), b"-m", b"pgaudit_py.cli", b"verify", b"--checkpoint", name, b"--public-key",
            os.fsencode(public), b"--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}".encode()]
    if mode == "--json":
        args.insert(4, b"--json")
    done = subprocess.run(args, capture_output=True, timeout=120, cwd=ROOT, env=_strict_env())
    out, err = done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    assert "Traceback" not in out + err, (f"{content}, {mode}: exit {done.returncode}, stdout {len(done.stdout)} bytes:"
                                          f" {(out + err).strip().splitlines()[-1]}")
    if mode == "--json" and done.stdout.strip():
        json.loads(out)
    else:
        found = _forged_or_raw(out + err, ("chain intact", "checkpoint of block", "archived through",
                                           "retained history", "pgaudit: ", "verifying blocks"))
        found += [f"forged: {line!r}" for line in (out + err).splitlines() if "999 blocks" in line
                  and not line.startswith("pgaudit: ")]
        assert not found, f"{content}, {mode}: " + "; ".join(found) + f"\n{(out + err)[:800]}"


@pytest.mark.parametrize("planted", ["a copy under a name that is not UTF-8", "a newline and an override in the name"])
def test_the_servers_verify_answers_whatever_the_checkpoint_files_are_named(db, tmp_path, start_api, make_token,
                                                                              planted):
    """Attack: /v1/audit/verify reports the newest checkpoint of --checkpoint-dir, naming its file.
    Whoever can put a file there puts a checkpoint naming a later block (its signature then fails,
    which the verdict should say) under a name holding a byte that is not UTF-8 (Python holds it as
    a lone surrogate), or a newline and a right-to-left override. A break: the endpoint answers 5xx (or logs a traceback) instead of its verdict, or its JSON says
    a raw control character."""
    from pgaudit_py.checkpoint import load_keys

    _directory, document, _private, public = _archive(db, tmp_path)
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    raw = (json.dumps(document) + "\n").encode()
    (checkpoints / "real.json").write_bytes(raw)
    name = b"\xffcopy.json" if "UTF-8" in planted else "copy\nok: true \u202e.json".encode()
    newer = {**document, "checkpoint": {**document["checkpoint"], "block_no": document["checkpoint"]["block_no"] + 1}}
    with open(os.fsencode(checkpoints) + b"/" + name, "wb") as f:
        f.write((json.dumps(newer) + "\n").encode())  # the newest by its block: the one reported
    token = make_token("reader", name="auditor")
    api = start_api(checkpoint_dir=checkpoints, checkpoint_keys=load_keys(public_key=public))
    with httpx.Client(base_url=api.url, timeout=60) as client:
        answer = client.get("/v1/audit/verify", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200, f"{planted}: /v1/audit/verify answers {answer.status_code}: {answer.text[:300]}"
    reported = answer.json().get("last_checkpoint") or {}
    assert reported.get("ok") is False, f"{planted}: the planted checkpoint is reported {reported}"
    assert "\n" not in json.dumps(reported, ensure_ascii=False).replace("\\n", ""), answer.text


@pytest.mark.parametrize("statement", ["MERGE", "UPDATE"])
def test_a_tracked_partitioned_table_put_under_a_new_parent_takes_no_uncaptured_move(db, connect, attacker, statement):
    """Attack: the rule sits on the tracked table and its partitioned partitions; a statement on a
    table ABOVE the tracked one fires none of its statement triggers (only the target's), so a MERGE
    or UPDATE through a new, untracked parent would change the tracked table's rows with no event.
    The owner makes a partitioned table `mega` of the same columns and attaches public.cases to it
    (a maintainer owning both), then moves a row between cases' partitions through mega. A break:
    the attach is taken and the row changes with no event."""
    _cases_tree(attacker)
    enable_tracking(connect("app_maintainer"), "public.cases")
    attacker.execute("INSERT INTO public.cases VALUES (1, 't1', 'a')")
    maintainer = connect("app_maintainer")
    maintainer.execute("CREATE TABLE public.mega (id int NOT NULL, tenant text NOT NULL, note text) PARTITION BY LIST (note)")
    outcome = "attached"
    try:
        maintainer.execute("ALTER TABLE public.mega ATTACH PARTITION public.cases FOR VALUES IN ('a', 'b')")
    except psycopg.Error as exc:
        outcome = exc.sqlstate
    n = len(_captured(db, "public.cases"))
    try:
        if statement == "MERGE":
            maintainer.execute("MERGE INTO public.mega m USING (VALUES (1)) s(id) ON m.id = s.id"
                               " WHEN MATCHED THEN UPDATE SET tenant = 't2', note = 'b'")
        else:
            maintainer.execute("UPDATE public.mega SET tenant = 't2', note = 'b' WHERE id = 1")
    except psycopg.Error as exc:
        outcome += f", {statement} {exc.sqlstate}"
    now = db.execute("SELECT tenant, note FROM public.cases WHERE id = 1").fetchall()
    events = _captured(db, "public.cases")[n:]
    assert now == [("t1", "a")] or events, f"{statement} through mega ({outcome}): row 1 is now {now} with no event"
