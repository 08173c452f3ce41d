"""A seventy-seventh attacker's trial: the two newest mends (7398916, 499311e).

Classes (test names carry the letter):
  K. a row's key as the reader gives it to row_history, row_as_of and row_state_as_of
     (sql/70_history.sql _key_as_captured / _key_text): spellings that PostgreSQL's own equality takes or
     refuses, for keys of bpchar, char(1) codes, char(n), bit, bit(n), varbit, int[] with another lower bound,
     interval, jsonb numbers, ranges, a case-insensitive collation, timestamptz under the reader's
     DateStyle, TimeZone and at a DST change, bytea in escape form, float8 NaN, numeric NaN,
     money under a German lc_monetary, inet, uuid, float4 under the reader's extra_float_digits, composite
     keys; the numeric spelling search (forged by any writer's record(), a row deleted or moved and a
     new row of the same value under another scale, a key column changed from text to numeric after
     its events, renamed, its cost over a long history, huge keys); a row moved to another key read in the
     reader's zone; types, domains and CHECKs of the owner's making never run as the reader.
  I. transactions.read_committed as seal(), enable_tracking(baseline=True), aio.seal and
     aio.enable_tracking use it: autocommit or not, idle, inside the caller's transaction block,
     in pipeline mode, in a failed transaction, under default_transaction_read_only,
     default_transaction_deferrable and serializable defaults, a psycopg isolation_level the caller set,
     a session pgaudit_py refuses to read; nothing committed behind the caller's back; seal_continuously,
     the CLI's seal and track and the worker under a role's hostile defaults.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works (or when an
honest call is refused). Roles made here: t77_owner, t77_mallory (through table_owner_kit) and t77_m
(a maintainer login with settings stored for this database, through trial_helpers.login); all
dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest
from psycopg.pq import TransactionStatus
from trial_helpers import login, n_events, seal_all, sqlstate_of, table_owner_kit

from pgaudit_py import (
    InvalidTarget,
    PgAuditError,
    UnsupportedSession,
    aio,
    disable_tracking,
    enable_tracking,
    record,
    seal,
    tracked_tables,
)
from pgaudit_py.sealing import seal_continuously

# ============================================ fixtures ============================================


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t77") as k:
        yield k


def reader_with(kit, settings: dict[str, str]) -> psycopg.Connection:
    r = kit.conn("app_reader")
    for name, value in settings.items():
        r.execute("SELECT set_config(%s, %s, false)", [name, value])
    return r


def keyed_table(kit, coltype: str, casttype: str, rows: list[tuple[str, int]], *, table: str = "t77_k",
                baseline: bool = True, **options) -> None:
    kit.owner.execute(f"CREATE TABLE public.{table} (id {coltype} PRIMARY KEY, v int);"
                      f" GRANT ALL ON public.{table} TO app_writer; GRANT SELECT ON public.{table} TO app_reader")
    for key, v in rows:
        kit.owner.execute(f"INSERT INTO public.{table} VALUES (%s::{casttype}, %s)", [key, v])
    enable_tracking(kit.maint, f"public.{table}", baseline=baseline, **options)


def intake_and_log(db) -> tuple[int, int]:
    return db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.event_log)").fetchone()


# ================================ class K: a key as the reader spells it ================================

# name: (column type, cast type, rows (key, v), key asked (None: as the reader's session prints row v=1), settings)
SPELLINGS = {
    # the type's name without its modifier is a cast that cuts (format_type gives `character`, `bit`)
    "bpchar_unbounded_abc_is_not_a": ("bpchar", "bpchar", [("a", 1), ("abc", 2)], "abc", {}),
    "char1_code_abc_is_not_a": ("char(1)", "bpchar", [("a", 1), ("b", 2)], "abc", {}),
    "char3_abc": ("char(3)", "bpchar", [("abc", 1), ("a", 2)], "abc", {}),
    "char3_ab_as_written": ("char(3)", "bpchar", [("ab", 1)], "ab", {}),
    "bit_unbounded_101_is_not_1": ('"bit"', '"bit"', [("1", 1), ("101", 2)], "101", {}),
    "bit3_101": ("bit(3)", '"bit"', [("101", 1)], "101", {}),
    "varbit_101": ("varbit", "varbit", [("1", 1), ("101", 2)], "101", {}),
    # two values PostgreSQL tells apart, one text of the capture
    "int_array_other_lower_bound": ("int[]", "int[]", [("[0:1]={1,2}", 1)], "{1,2}", {}),
    # one value PostgreSQL's equality takes in another spelling
    "interval_1_day_as_24_hours": ("interval", "interval", [("1 day", 1)], "24 hours", {}),
    "interval_as_iso_8601_session_prints": ("interval", "interval", [("1 day 02:03:04", 1)], None, {"IntervalStyle": "iso_8601"}),
    "jsonb_number_of_another_scale": ("jsonb", "jsonb", [('{"a": 1.0}', 1)], '{"a": 1}', {}),
    "numrange_of_another_scale": ("numrange", "numrange", [("[1.0,2.0)", 1)], "[1,2)", {}),
    "int4range_closed": ("int4range", "int4range", [("[1,3)", 1)], "[1,2]", {}),
    "tstzrange_as_session_prints": ("tstzrange", "tstzrange", [("[2026-01-02 03:04:05+00,2026-01-03 03:04:05+00)", 1)], None,
                                    {"TimeZone": "Europe/Berlin"}),
    "text_case_insensitive_collation": ("text COLLATE public.t77_ci", "text", [("Alice", 1)], "ALICE", {}),
    "timestamptz_sql_dmy_kolkata": ("timestamptz", "timestamptz", [("2026-02-01 03:04:05.25+00", 1)], None,
                                    {"DateStyle": "SQL, DMY", "TimeZone": "Asia/Kolkata"}),
    "timestamptz_dst_fall_back_second_0230": ("timestamptz", "timestamptz", [("2026-10-25 01:30:00+00", 1), ("2026-10-25 00:30:00+00", 2)],
                                              None, {"TimeZone": "Europe/Berlin"}),
    "timestamp_sql_dmy": ("timestamp", "timestamp", [("2026-02-01 00:00:00", 1), ("2026-01-02 00:00:00", 2)], None,
                          {"DateStyle": "SQL, DMY"}),
    "bytea_escape_as_session_prints": ("bytea", "bytea", [("\\x00ff27", 1)], None, {"bytea_output": "escape"}),
    "float8_nan_lower": ("float8", "float8", [("NaN", 1)], "nan", {}),
    "float4_as_session_prints_with_fewer_digits": ("float4", "float4", [("0.1", 1), ("0.3", 2)], None, {"extra_float_digits": "0"}),
    "numeric_nan_lower": ("numeric", "numeric", [("NaN", 1), ("0", 2)], "nan", {}),
    "inet_host_with_mask": ("inet", "inet", [("10.0.0.1", 1), ("10.0.0.1/8", 2)], "10.0.0.1/32", {}),
    "money_as_a_german_session_prints": ("money", "money", [("12.34", 1), ("1234", 2)], None, {"lc_monetary": "de_DE.UTF-8"}),
    "uuid_in_braces": ("uuid", "uuid", [("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", 1)], "{a0eebc999c0b4ef8bb6d6bb9bd380a11}", {}),
}


@pytest.mark.parametrize("case", list(SPELLINGS))
def test_k1_a_key_names_the_row_postgresqls_equality_finds_and_no_other(kit, case):
    """Attack on the reader's answers: a tracked table (with a baseline) whose one-column key is of the type
    named; the reader asks row_state_as_of now, with a key spelled as named (or as its own session prints
    the row v=1). Safe: if PostgreSQL finds a row by that key (WHERE id = key, in the reader's session),
    the answer is not 'absent' and, if 'existed', is that row's image; if PostgreSQL finds none, the
    answer is not 'existed' (another row's image)."""
    coltype, casttype, rows, asked, settings = SPELLINGS[case]
    if "t77_ci" in coltype:
        kit.owner.execute("CREATE COLLATION public.t77_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    try:
        keyed_table(kit, coltype, casttype, rows)
    except InvalidTarget as e:  # an array key: refused, so no key can name another row
        assert "array" in str(e) and not is_tracked(kit, "t77_k"), e
        return
    at = kit.tick()
    r = reader_with(kit, settings)
    key = asked if asked is not None else r.execute("SELECT id::text FROM public.t77_k WHERE v = 1").fetchone()[0]
    found = [v for (v,) in r.execute(f"SELECT v FROM public.t77_k WHERE id = %s::{casttype}", [key])]
    state = kit.state("public.t77_k", key, at, conn=r)
    targets = [t for (t,) in kit.db.execute("SELECT target_id FROM audit.events WHERE kind = 'public.t77_k.baseline' ORDER BY 1")]
    if found:
        assert state[0] != "absent", f"{key!r} finds row v={found[0]} in PostgreSQL; read {state} (target_ids {targets})"
        if state[0] == "existed":
            assert state[1]["v"] == found[0], f"{key!r} is row v={found[0]}; the reader was shown {state[1]} (target_ids {targets})"
    else:
        assert state[0] != "existed", f"{key!r} finds no row in PostgreSQL; the reader was shown {state} (target_ids {targets})"


COMPOSITE = {
    "timestamptz_as_session_prints": ("timestamptz", "2026-01-02 03:04:05+00", {"TimeZone": "Europe/Berlin"}),
    "numeric_1_for_1_0": ("numeric", "1.0", {}),
    "uuid_upper_case": ("uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", {}),
}


@pytest.mark.parametrize("case", list(COMPOSITE))
def test_k2_a_composite_keys_column_in_another_spelling_of_its_value(kit, case):
    """Honest use: a two-column key (typ, region), one row, baseline; the reader gives the JSON array with
    the first value as its session prints it (or as 1 for 1.0, or in upper case). Safe: not 'absent' for
    the row PostgreSQL finds by that key."""
    typ, stored, settings = COMPOSITE[case]
    kit.owner.execute(f"""CREATE TABLE public.t77_c (id {typ}, region text, v int, PRIMARY KEY (id, region));
                          GRANT SELECT ON public.t77_c TO app_reader""")
    kit.owner.execute(f"INSERT INTO public.t77_c VALUES (%s::{typ}, 'EU', 1)", [stored])
    enable_tracking(kit.maint, "public.t77_c", baseline=True)
    at = kit.tick()
    r = reader_with(kit, settings)
    first = r.execute("SELECT id::text FROM public.t77_c").fetchone()[0]
    first = {"numeric": "1", "uuid": first.upper()}.get(typ, first)
    found = r.execute(f"SELECT count(*) FROM public.t77_c WHERE (id, region) = (%s::{typ}, 'EU')", [first]).fetchone()[0]
    assert found == 1
    key = f'[{first if typ == "numeric" else chr(34) + first + chr(34)}, "EU"]'
    target = kit.db.execute("SELECT target_id FROM audit.events WHERE kind = 'public.t77_c.baseline'").fetchone()[0]
    assert kit.state("public.t77_c", key, at, conn=r)[0] != "absent", f"{key} for target_id {target}"


@pytest.mark.xfail(strict=True, reason="a known limit (docs/capture.md, audit.row_history): a numeric key's events name the row by the spelling it was written with; another spelling of the same value (1 for 1.0), or a value of no row, reads 'unknown', never 'existed' or 'absent' (the spelling search that did, trial 76's mend, let a writer's record() hide a row); strict, so that a change that closes it says so")
@pytest.mark.parametrize("prefix", [None, "t77shop.price"])
def test_k3_a_writers_recorded_event_never_renames_a_numeric_row(kit, prefix):
    """Attack: any writer may record() an event of its own kind whose target_type is a tracked numeric
    table's prefix and whose target_id is another spelling of a row's key (1.000 for 1.0). The numeric
    search takes the newest event's spelling, of any kind and origin. Safe: the reader asking for the row
    by its own spelling (and by 1) still reads it as it is."""
    keyed_table(kit, "numeric", "numeric", [("1.0", 1), ("2", 2)], table="t77_n", kind_prefix=prefix)
    target_type = prefix or "public.t77_n"
    assert kit.state("public.t77_n", "1.0", kit.tick()) == ("existed", {"id": 1.0, "v": 1})  # before the attack
    record(kit.writer, "t77.note", target_type=target_type, target_id="1.000", payload={"x": 1})
    record(kit.writer, "t77.note", target_type=target_type, target_id="2.0", payload={"x": 1})
    at = kit.tick()
    got = {k: kit.state("public.t77_n", k, at) for k in ("1.0", "1", "2")}
    assert got == {"1.0": ("existed", {"id": 1.0, "v": 1}), "1": ("existed", {"id": 1.0, "v": 1}),
                   "2": ("existed", {"id": 2, "v": 2})}, got
    assert kit.history("public.t77_n", "1.0") == [f"{target_type}.baseline"]


@pytest.mark.parametrize("how", ["deleted_then_inserted_as_1_00", "moved_away_then_inserted_as_1"])
def test_k4_a_numeric_row_of_the_past_under_another_scale_than_the_newest(kit, how):
    """Attack (false 'absent'): a numeric key's row 1.0 lives, then is deleted (or moved to 6), and a new row
    of the same value is inserted as 1.00 (or 1). The reader asks for 1.0, in the very spelling its events
    use, at a moment when it existed. Safe: 'existed' with its image; its history holds its insert."""
    keyed_table(kit, "numeric", "numeric", [], table="t77_n")
    kit.writer.execute("INSERT INTO public.t77_n VALUES (1.0, 1)")
    at = kit.tick()
    if how.startswith("deleted"):
        kit.writer.execute("DELETE FROM public.t77_n WHERE id = 1")
        kit.writer.execute("INSERT INTO public.t77_n VALUES (1.00, 2)")
    else:
        kit.writer.execute("UPDATE public.t77_n SET id = 6 WHERE id = 1")
        kit.writer.execute("INSERT INTO public.t77_n VALUES (1, 2)")
    assert seal_all(kit.maint) is None
    assert kit.state("public.t77_n", "1.0", at) == ("existed", {"id": 1.0, "v": 1})
    assert kit.as_of("public.t77_n", "1.0", at) == {"id": 1.0, "v": 1}
    assert "public.t77_n.insert" in kit.history("public.t77_n", "1.0")[:1], kit.history("public.t77_n", "1.0")


def test_k5_a_key_changed_from_text_to_numeric_keeps_each_rows_own_history(kit):
    """Attack: a tracked table keyed by text holds rows '1' (v=1) and '1.0' (v=2), two rows then; '1.0' is
    deleted. The owner changes the key to numeric as the refusal's hint says (disable_tracking, ALTER,
    enable_tracking again). The reader asks row '1''s history. Safe: it is row '1''s (its baseline, v=1),
    never the deleted '1.0''s baseline and delete."""
    keyed_table(kit, "text", "text", [("1", 1), ("1.0", 2)], table="t77_tn")
    kit.writer.execute("DELETE FROM public.t77_tn WHERE id = '1.0'")
    assert sqlstate_of(kit.owner, "ALTER TABLE public.t77_tn ALTER COLUMN id TYPE numeric USING id::numeric") is not None
    disable_tracking(kit.maint, "public.t77_tn")
    kit.owner.execute("ALTER TABLE public.t77_tn ALTER COLUMN id TYPE numeric USING id::numeric")
    enable_tracking(kit.maint, "public.t77_tn")
    got = kit.reader.execute("SELECT kind, target_id, row_after ->> 'v' FROM audit.row_history('public.t77_tn', '1')").fetchall()
    assert got == [("public.t77_tn.baseline", "1", "1")], got


def test_k6_a_renamed_numeric_key_column_still_names_its_row(kit):
    """Honest use: the key column of a numeric-keyed table is renamed after its baseline. Safe: row 1.0,
    asked as 1 and as 1.0, reads 'existed' (or a refusal naming why), never 'absent'."""
    keyed_table(kit, "numeric", "numeric", [("1.0", 1)], table="t77_n")
    kit.owner.execute("ALTER TABLE public.t77_n RENAME COLUMN id TO ident")
    at = kit.tick()
    for key in ("1", "1.0"):
        assert kit.state("public.t77_n", key, at)[0] != "absent", key


def test_k7_the_numeric_spelling_search_does_not_read_the_tables_whole_history(kit):
    """Attack (cost): a numeric-keyed table of 3,001 rows; row 1 changes first, then every other row.
    A reader asks row_as_of and row_state_as_of of row 1 with sequential scans off. Safe (as trial 70's
    h10 for an integer key): the log's tuples read stay far below the events there are."""
    kit.owner.execute("""CREATE TABLE public.t77_big (id numeric PRIMARY KEY, v int);
                         GRANT ALL ON public.t77_big TO app_writer;
                         INSERT INTO public.t77_big SELECT g, 0 FROM generate_series(1, 3001) g""")
    enable_tracking(kit.maint, "public.t77_big")
    kit.writer.execute("UPDATE public.t77_big SET v = 1 WHERE id = 1")
    kit.writer.execute("UPDATE public.t77_big SET v = 2 WHERE id > 1")
    assert seal_all(kit.maint) is None
    kit.db.execute("ANALYZE audit.event_log")
    at = kit.tick()
    total = kit.db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    costs = {}
    for name, q in (("as_of", "SELECT audit.row_as_of('public.t77_big', '1', %s)"),
                    ("state", "SELECT state FROM audit.row_state_as_of('public.t77_big', '1', %s)")):
        with kit.reader.transaction():
            kit.reader.execute("SET LOCAL enable_seqscan = off")
            answer = kit.reader.execute(q, [at]).fetchone()[0]
            costs[name] = (answer, *kit.reader.execute(
                "SELECT coalesce(sum(seq_scan), 0), coalesce(sum(coalesce(idx_tup_fetch, 0) + coalesce(seq_tup_read, 0)), 0)"
                " FROM pg_stat_xact_all_tables WHERE schemaname = 'audit' AND relname LIKE 'event_log%%'").fetchone())
    assert total > 3000
    assert costs["as_of"][0]["v"] == 1 and costs["state"][0] == "existed", costs
    assert all(read < 500 for _, _, read in costs.values()), f"tuples of the log read for one row (of {total}): {costs}"


@pytest.mark.xfail(strict=True, reason="a known limit (docs/capture.md, audit.row_history): a numeric key's events name the row by the spelling it was written with; another spelling of the same value (1 for 1.0), or a value of no row, reads 'unknown', never 'existed' or 'absent' (the spelling search that did, trial 76's mend, let a writer's record() hide a row); strict, so that a change that closes it says so")
def test_k8_huge_and_odd_keys_answer_quickly_and_name_no_row(kit):
    """Attack: keys of 100,000 digits, 5 MB of text, a 200,000-element array, NUL-like escapes, and a numeric
    too large for numeric, given for tables keyed by numeric, text and int[]. Safe: each answers 'absent'
    (the tables have baselines and no such row) or is refused, and all of them within 20 s."""
    keyed_table(kit, "numeric", "numeric", [("1", 1)], table="t77_n")
    keyed_table(kit, "text", "text", [("a", 1)], table="t77_t")
    at = kit.tick()
    asks = [("public.t77_n", "9" * 100000), ("public.t77_n", "1e131071"), ("public.t77_n", "1e999999"),
            ("public.t77_n", "1" + "0" * 131072 + ".5"), ("public.t77_t", "x" * 5_000_000),
            ("public.t77_t", "a\\u0000"), ("public.t77_t", "a\\x00"),
            ("public.t77_t", "{" + ",".join(["1"] * 200000) + "}")]
    started = time.monotonic()
    got = {(t, k[:12], len(k)): kit.state(t, k, at)[0] for t, k in asks}
    took = time.monotonic() - started
    assert all(s in ("absent", "refused") for s in got.values()), got
    assert took < 20, f"{took:.1f} s"


SPY = """
CREATE TABLE public.t77_spy_ran (who text, what text);
GRANT ALL ON public.t77_spy_ran TO PUBLIC;
CREATE FUNCTION public.t77_spy(what text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO public.t77_spy_ran VALUES (current_user, what);
    RAISE NOTICE 't77spy %|%', what, current_user;
    RETURN true;
END $$;
CREATE FUNCTION public.t77_diff(a int, b int) RETURNS float8 IMMUTABLE LANGUAGE plpgsql AS $$
BEGIN
    PERFORM public.t77_spy('subtype_diff');
    RETURN b - a;
END $$;
CREATE DOMAIN public.t77_dtext AS text CHECK (public.t77_spy('dtext'));
CREATE DOMAIN public.t77_dint AS int CHECK (public.t77_spy('dint'));
CREATE DOMAIN public.t77_dd AS public.t77_dint CHECK (public.t77_spy('dd'));
CREATE DOMAIN public.t77_dchar AS char(3) CHECK (public.t77_spy('dchar'));
CREATE TYPE public.t77_mood AS ENUM ('ok', 'sad');
CREATE DOMAIN public.t77_dmood AS public.t77_mood CHECK (public.t77_spy('dmood'));
CREATE TYPE public.t77_pair AS (a public.t77_dint, b text);
CREATE TYPE public.t77_rng AS RANGE (subtype = int, subtype_diff = public.t77_diff);
CREATE SCHEMA t77s;
CREATE DOMAIN t77s.int4 AS pg_catalog.int4 CHECK (public.t77_spy('t77s.int4'));
CREATE DOMAIN t77s.numeric AS pg_catalog.numeric CHECK (public.t77_spy('t77s.numeric'));
"""

OWNERS_TYPES = {  # table: (key type, a row's key, keys asked)
    "t77_o1": ("public.t77_dtext", "x", ["x", "y"]),
    "t77_o2": ("public.t77_dint", "7", ["7", " 007", "8"]),
    "t77_o3": ("public.t77_dd", "7", ["7", "8"]),
    "t77_o5": ("public.t77_dmood", "ok", ["ok", "sad"]),
    "t77_o6": ("public.t77_pair", "(1,x)", ["(1,x)", "(2,y)"]),
    "t77_o7": ("public.t77_rng", "[1,5)", ["[1,5)", "[1,4]", "[2,9)"]),
    "t77_o8": ("t77s.int4", "7", ["7", "8"]),
    "t77_o9": ("t77s.numeric", "1.0", ["1", "1.0", "2"]),
    "t77_o10": ("public.t77_dchar", "abc", ["abc", "ab"]),
}


def test_k9_types_domains_and_checks_of_the_owners_making_never_run_as_the_reader(kit):
    """Attack: the owner keys tracked tables by its domains with CHECKs (over text, int, a domain, int[], an
    enum, char(3)), a composite type with a checked field, a range with a PL/pgSQL subtype_diff, domains
    named like pg_catalog's types in its own schema. The reader asks
    row_history, row_as_of and row_state_as_of with many keys, under a search_path naming the owner's
    schema first. Safe: the spy never ran as the reader (nor as any audit role) during those reads."""
    kit.owner.execute(SPY)
    kit.owner.execute("GRANT USAGE ON SCHEMA t77s TO PUBLIC")
    for table, (typ, row, _) in OWNERS_TYPES.items():
        kit.owner.execute(f"CREATE TABLE public.{table} (id {typ} PRIMARY KEY, v int); GRANT SELECT ON public.{table} TO app_reader")
        kit.owner.execute(f"INSERT INTO public.{table} VALUES (%s, 1)", [row])
        enable_tracking(kit.maint, f"public.{table}", baseline=True)
    kit.owner.execute("TRUNCATE public.t77_spy_ran")
    notices: list[str] = []
    r = reader_with(kit, {"search_path": "t77s, public, pg_catalog"})
    r.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    at = kit.tick()
    answers = {}
    for table, (_, _, keys) in OWNERS_TYPES.items():
        for key in keys:
            answers[(table, key)] = (kit.state(f"public.{table}", key, at, conn=r)[0],
                                     r.execute("SELECT count(*) FROM audit.row_history(%s::regclass, %s)", [f"public.{table}", key]).fetchone()[0],
                                     r.execute("SELECT audit.row_as_of(%s::regclass, %s, %s) IS NOT NULL", [f"public.{table}", key, at]).fetchone()[0])
    ran = kit.db.execute("SELECT who, what FROM public.t77_spy_ran").fetchall()
    assert ran == [] and not [n for n in notices if n.startswith("t77spy")], (ran, notices)
    assert answers[("t77_o2", "7")][0] == "existed" and answers[("t77_o9", "1.0")][0] == "existed", answers


def test_k10_a_timestamptz_row_moved_to_another_key_reads_right_in_the_readers_zone(kit):
    """Honest use: a timestamptz-keyed row moves to another key (UPDATE of the key), then a new row takes its
    old key. A reader in Europe/Berlin, DateStyle 'SQL, DMY', asks each key as its session prints it,
    before the move, between, and after. Safe: old key existed (v=1), then absent, then the new row (v=2);
    new key absent, then the moved row."""
    keyed_table(kit, "timestamptz", "timestamptz", [("2026-03-29 00:30:00+00", 1)])
    t0 = kit.tick()
    kit.writer.execute("UPDATE public.t77_k SET id = '2026-03-29 01:30:00+00' WHERE v = 1")
    t1 = kit.tick()
    kit.writer.execute("INSERT INTO public.t77_k VALUES ('2026-03-29 00:30:00+00', 2)")
    t2 = kit.tick()
    r = reader_with(kit, {"TimeZone": "Europe/Berlin", "DateStyle": "SQL, DMY"})
    old, new = (r.execute("SELECT %s::timestamptz::text", [k]).fetchone()[0]
                for k in ("2026-03-29 00:30:00+00", "2026-03-29 01:30:00+00"))
    got = {(k, i): (lambda s: (s[0], s[1] and s[1]["v"]))(kit.state("public.t77_k", key, at, conn=r))
           for k, key in (("old", old), ("new", new)) for i, at in enumerate((t0, t1, t2))}
    assert got == {("old", 0): ("existed", 1), ("old", 1): ("absent", None), ("old", 2): ("existed", 2),
                   ("new", 0): ("absent", None), ("new", 1): ("existed", 1), ("new", 2): ("existed", 1)}, (old, new, got)


def test_k11_a_one_letter_code_key_asked_with_a_longer_code_shows_another_rows_past(kit):
    """Attack (another row's history): a table keyed by char(1) codes ('a', 'b'), baseline, row 'a' updated;
    the reader asks row_history, row_as_of and row_state_as_of of key 'abc', which PostgreSQL finds no row
    for (the key is cast to `character`, char(1), and cut to 'a'). Safe: no history, no image, not 'existed'."""
    keyed_table(kit, "char(1)", "bpchar", [("a", 1), ("b", 2)])
    kit.writer.execute("UPDATE public.t77_k SET v = 10 WHERE id = 'a'")
    at = kit.tick()
    assert kit.db.execute("SELECT count(*) FROM public.t77_k WHERE id = 'abc'").fetchone() == (0,)
    got = (kit.history("public.t77_k", "abc"), kit.as_of("public.t77_k", "abc", at), kit.state("public.t77_k", "abc", at)[0])
    assert got[0] == [] and got[1] is None and got[2] != "existed", got


# ============================ class I: read_committed under seal() and a baseline ============================


def async_conn(db, role: str, autocommit: bool):
    i = db.info
    return psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname, user=role, autocommit=autocommit)


def pending(kit, n: int = 2) -> None:
    for _ in range(n):
        record(kit.writer, "t77.e", payload={"x": 1})


def sealed_t77(db) -> int:
    return db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't77.e'").fetchone()[0]


def base_table(kit, name: str = "t77_b", rows: int = 3) -> None:
    kit.owner.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY, v int);"
                      f" INSERT INTO public.{name} SELECT g, 0 FROM generate_series(1, {rows}) g")


def is_tracked(kit, name: str = "t77_b") -> bool:
    return any(t.table_name == f"public.{name}" for t in tracked_tables(kit.db))


def capture_triggers(kit, name: str = "t77_b") -> int:
    return kit.db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                          [f"public.{name}"]).fetchone()[0]


@pytest.mark.parametrize("call", ["seal", "baseline", "aio.seal", "aio.baseline"])
def test_i1_a_session_pgaudit_refuses_to_read_is_left_as_it_was_found(kit, call):
    """Honest misuse: a maintainer's connection that is not autocommit, idle, with DateStyle 'SQL, DMY' (which
    pgaudit_py refuses, UnsupportedSession, before anything is read). Safe: refused, nothing sealed or
    tracked, and the connection left as it was found: no transaction begun behind the caller's back
    (idle, not 'idle in transaction' holding a snapshot-less xact open)."""
    pending(kit)
    base_table(kit)
    before = intake_and_log(kit.db)
    if call.startswith("aio."):
        async def main():
            async with await async_conn(kit.db, "app_maintainer", False) as c:
                await c.execute("SET DateStyle = 'SQL, DMY'")
                await c.commit()
                try:
                    if call == "aio.seal":
                        await aio.seal(c)
                    else:
                        await aio.enable_tracking(c, "public.t77_b", baseline=True)
                    return "accepted", c.info.transaction_status
                except UnsupportedSession:
                    return "refused", c.info.transaction_status
        outcome, status = asyncio.run(main())
    else:
        c = kit.conn("app_maintainer", autocommit=False)
        c.execute("SET DateStyle = 'SQL, DMY'")
        c.commit()
        try:
            seal(c) if call == "seal" else enable_tracking(c, "public.t77_b", baseline=True)
            outcome = "accepted"
        except UnsupportedSession:
            outcome = "refused"
        status = c.info.transaction_status
    assert outcome == "refused"
    assert intake_and_log(kit.db) == before and not is_tracked(kit)
    assert status == TransactionStatus.IDLE, f"left {status.name} after the refusal"


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_i2_a_serializable_isolation_the_caller_set_is_not_silently_downgraded(kit, flavour):
    """Honest use: a caller sets its psycopg connection's isolation_level to SERIALIZABLE (not autocommit)
    and calls seal(). Safe: either refused (PA005, as inside a transaction the caller opened at another
    level), or the transaction the call leaves the caller to commit is still at the level the caller
    asked for: its own statements after seal() never silently run at READ COMMITTED."""
    pending(kit)
    if flavour == "async":
        async def main():
            async with await async_conn(kit.db, "app_maintainer", False) as c:
                await c.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
                try:
                    await aio.seal(c)
                except PgAuditError as e:
                    return f"refused {e.sqlstate}", None
                level = (await (await c.execute("SHOW transaction_isolation")).fetchone())[0]
                await c.rollback()
                return "accepted", level
        outcome, level = asyncio.run(main())
    else:
        c = kit.conn("app_maintainer", autocommit=False)
        c.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        try:
            seal(c)
            outcome, level = "accepted", c.execute("SHOW transaction_isolation").fetchone()[0]
        except PgAuditError as e:
            outcome, level = f"refused {e.sqlstate}", None
        c.rollback()
    assert outcome == "refused PA005" or level == "serializable", (outcome, level)


@pytest.mark.parametrize("call", ["seal", "baseline"])
def test_i3_inside_the_callers_block_at_another_default_it_is_refused_and_nothing_is_half_written(kit, call):
    """Honest use: an autocommit maintainer connection whose session default is serializable calls seal() or
    a baseline inside its own conn.transaction() block. Safe: refused (PA005), the block rolled back,
    nothing sealed, the table not tracked and no trigger left on it, the connection idle after."""
    pending(kit)
    base_table(kit)
    before = intake_and_log(kit.db)
    c = kit.conn("app_maintainer")
    c.execute("SELECT set_config('default_transaction_isolation', 'serializable', false)")
    with pytest.raises(PgAuditError) as caught, c.transaction():
        seal(c) if call == "seal" else enable_tracking(c, "public.t77_b", baseline=True)
    assert caught.value.sqlstate == "PA005", caught.value
    assert c.info.transaction_status == TransactionStatus.IDLE
    assert intake_and_log(kit.db) == before and not is_tracked(kit) and capture_triggers(kit) == 0


def test_i4_a_failed_transaction_stays_the_callers_with_nothing_sealed(kit):
    """Honest misuse: a non-autocommit connection whose transaction failed calls seal(). Safe: an error, the
    transaction still failed (not ended behind the caller's back), nothing sealed; after the caller's
    rollback seal() works."""
    pending(kit)
    c = kit.conn("app_maintainer", autocommit=False)
    with pytest.raises(psycopg.Error):
        c.execute("SELECT 1/0")
    with pytest.raises((psycopg.Error, PgAuditError)):
        seal(c)
    assert c.info.transaction_status == TransactionStatus.INERROR
    assert sealed_t77(kit.db) == 0
    c.rollback()
    assert seal(c).sealed >= 2
    c.commit()
    assert sealed_t77(kit.db) == 2


@pytest.mark.parametrize("autocommit", [True, False])
def test_i5_pipeline_mode_seals_and_baselines_once_committed_as_the_mode_says(kit, autocommit):
    """Honest use: seal() and enable_tracking(baseline=True) inside conn.pipeline(), on a connection whose
    default is serializable. Safe: both work; autocommit: committed at once; otherwise only once the
    caller commits, and the caller's rollback leaves nothing."""
    pending(kit)
    base_table(kit)
    c = kit.conn("app_maintainer", autocommit=autocommit)
    c.execute("SELECT set_config('default_transaction_isolation', 'serializable', false)")
    if not autocommit:
        c.commit()
    with c.pipeline():
        sealed = seal(c).sealed
        enable_tracking(c, "public.t77_b", baseline=True)
    assert sealed >= 2
    if not autocommit:
        assert sealed_t77(kit.db) == 0 and not is_tracked(kit)
        c.rollback()
        assert sealed_t77(kit.db) == 0 and not is_tracked(kit) and capture_triggers(kit) == 0
        with c.pipeline():
            seal(c)
            enable_tracking(c, "public.t77_b", baseline=True)
        c.commit()
    assert sealed_t77(kit.db) == 2 and is_tracked(kit) and n_events(kit.db, "public.t77_b.baseline") == 3
    assert c.info.transaction_status == TransactionStatus.IDLE


@pytest.mark.parametrize("call", ["seal", "aio.baseline"])
def test_i6_default_read_only_is_refused_cleanly(kit, call):
    """Honest misuse: an autocommit maintainer session with default_transaction_read_only on. Safe: refused
    with an error, nothing sealed, the table not tracked and no trigger left, the connection idle."""
    pending(kit)
    base_table(kit)
    before = intake_and_log(kit.db)
    if call.startswith("aio."):
        async def main():
            async with await async_conn(kit.db, "app_maintainer", True) as c:
                await c.execute("SET default_transaction_read_only = on")
                try:
                    if call == "aio.seal":
                        await aio.seal(c)
                    else:
                        await aio.enable_tracking(c, "public.t77_b", baseline=True)
                    return "accepted", c.info.transaction_status
                except (PgAuditError, psycopg.Error):
                    return "refused", c.info.transaction_status
        outcome, status = asyncio.run(main())
    else:
        c = kit.conn("app_maintainer")
        c.execute("SET default_transaction_read_only = on")
        try:
            seal(c) if call == "seal" else enable_tracking(c, "public.t77_b", baseline=True)
            outcome = "accepted"
        except (PgAuditError, psycopg.Error):
            outcome = "refused"
        status = c.info.transaction_status
    assert outcome == "refused" and status == TransactionStatus.IDLE
    assert intake_and_log(kit.db) == before and not is_tracked(kit) and capture_triggers(kit) == 0


@pytest.mark.parametrize("autocommit", [True, False])
def test_i7_serializable_deferrable_defaults_seal_and_baseline(kit, autocommit):
    """Honest use: defaults of serializable and deferrable (read-write). Safe: seal() and a baseline work."""
    pending(kit)
    base_table(kit)
    c = kit.conn("app_maintainer", autocommit=autocommit)
    c.execute("SELECT set_config('default_transaction_isolation', 'serializable', false),"
              " set_config('default_transaction_deferrable', 'on', false)")
    if not autocommit:
        c.commit()
    assert seal(c).sealed >= 2
    enable_tracking(c, "public.t77_b", baseline=True)
    if not autocommit:
        c.commit()
    assert sealed_t77(kit.db) == 2 and n_events(kit.db, "public.t77_b.baseline") == 3


def test_i8_nothing_is_committed_behind_the_callers_back(kit):
    """Attack on the caller: a non-autocommit connection holds the caller's uncommitted work (a row in its
    own table), then seal() and a baseline run; the caller rolls back. Safe: its row, the seal and the
    tracking are all gone: the call committed nothing of the caller's, nor its own."""
    pending(kit)
    base_table(kit)
    kit.owner.execute("CREATE TABLE public.t77_mine (x int); GRANT ALL ON public.t77_mine TO app_maintainer")
    c = kit.conn("app_maintainer", autocommit=False)
    c.execute("SELECT set_config('default_transaction_isolation', 'repeatable read', false)")
    c.commit()
    c.execute("INSERT INTO public.t77_mine VALUES (1)")
    with pytest.raises(PgAuditError):  # the caller's transaction, at its own level: refused
        seal(c)
    c.rollback()
    c.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
    c.execute("INSERT INTO public.t77_mine VALUES (2)")
    assert seal(c).sealed >= 2
    enable_tracking(c, "public.t77_b", baseline=True)
    c.rollback()
    assert kit.db.execute("SELECT count(*) FROM public.t77_mine").fetchone() == (0,)
    assert sealed_t77(kit.db) == 0 and not is_tracked(kit) and capture_triggers(kit) == 0


def test_i9_seal_continuously_on_the_callers_connection_whatever_its_default(kit):
    """Honest use: sealing.seal_continuously (documented in docs/python.md) on the maintainer's own autocommit
    connection, whose default isolation is serializable (as seal() now copes with). Safe: it seals (one
    round, then stopped), rather than refusing every round."""
    pending(kit)
    c = kit.conn("app_maintainer")
    c.execute("SELECT set_config('default_transaction_isolation', 'serializable', false)")
    stop = threading.Event()
    error = None
    try:
        seal_continuously(c, stop, interval=0.01, between_rounds=stop.set)
    except PgAuditError as e:
        error = f"{type(e).__name__}: {e}"
    assert error is None and sealed_t77(kit.db) == 2, error


def test_i10_the_cli_and_the_worker_seal_and_track_whatever_the_roles_defaults(kit, connect):
    """Honest use: `pgaudit seal`, `pgaudit track --baseline` and `pgaudit worker` as a maintainer login whose
    role carries serializable, deferrable, read-only defaults and DateStyle 'SQL, DMY' for this database.
    Safe: each works (the worker seals two more events, then is stopped)."""
    pending(kit)
    base_table(kit)
    settings = {"default_transaction_isolation": "serializable", "default_transaction_deferrable": "on",
                "default_transaction_read_only": "on", "DateStyle": "'SQL, DMY'"}
    info = kit.db.info
    with login(kit.db, connect, "t77_m", "audit_maintainer", settings):
        kit.db.execute("GRANT t77_owner TO t77_m")
        try:
            dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=t77_m"
            outs = [subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args, "--dsn", dsn], capture_output=True,
                                   text=True, timeout=120, env=dict(os.environ)) for args in
                    (["seal"], ["track", "public.t77_b", "--baseline"])]
        finally:
            kit.db.execute("REVOKE t77_owner FROM t77_m")
        pending(kit)
        worker = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "worker", "--dsn", dsn, "--interval", "0.05"],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ))
        try:
            deadline = time.monotonic() + 30
            while sealed_t77(kit.db) < 4 and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.1)
        finally:
            worker.terminate()
            worker_out = worker.communicate(timeout=30)[0]
    assert [o.returncode for o in outs] == [0, 0], [o.stdout + o.stderr for o in outs]
    assert sealed_t77(kit.db) == 4 and n_events(kit.db, "public.t77_b.baseline") == 3, worker_out[-600:]


def test_i11_asyncio_in_pipeline_and_inside_the_callers_block(kit):
    """Honest use from asyncio: aio.seal and aio.enable_tracking(baseline=True) inside conn.pipeline() on an
    autocommit connection whose default is serializable work; inside the caller's own async transaction
    block they are refused (PA005) with nothing written and the connection idle after."""
    pending(kit)
    base_table(kit)
    base_table(kit, "t77_b2")

    async def main():
        async with await async_conn(kit.db, "app_maintainer", True) as c:
            await c.execute("SELECT set_config('default_transaction_isolation', 'serializable', false)")
            refused = None
            try:
                async with c.transaction():
                    await aio.enable_tracking(c, "public.t77_b2", baseline=True)
            except PgAuditError as e:
                refused = e.sqlstate
            idle = c.info.transaction_status == TransactionStatus.IDLE
            async with c.pipeline():
                sealed = (await aio.seal(c)).sealed
                await aio.enable_tracking(c, "public.t77_b", baseline=True)
            return refused, idle, sealed

    refused, idle, sealed = asyncio.run(main())
    assert (refused, idle) == ("PA005", True)
    assert not is_tracked(kit, "t77_b2") and capture_triggers(kit, "t77_b2") == 0
    assert sealed >= 2 and sealed_t77(kit.db) == 2 and n_events(kit.db, "public.t77_b.baseline") == 3
