"""A ninety-seventh attacker's trial: new variants against the last session's mends (ages checked
whole, borrowed roles refused at install, registrations recorded, the Python verifier's loader,
status' workers, AuditTrail's paging, a baseline forgotten when a table gains a key).

Classes (test names carry the letter):
  A. ages and intervals: prune, its preview and the archive's settings and planner given hostile
     spellings ('@ 1 day ago', ISO 8601 with a negative part, sql_standard's leading sign, a
     fraction of a month against days) under every IntervalStyle; the Python wrappers' timedeltas;
     the CLI's durations (a zero one too); a hot retention stored before the mend, or too long for any
     time to be taken from.
  B. borrowed roles: a role stored for the superuser in every database, a pooled session's SET ROLE
     or SET SESSION AUTHORIZATION left behind when the script is applied on it, the role given at
     connect time.
  E. event-type registrations: a catalogue load with replace racing a strict registration by hand,
     forged registration events, the 'replaced' value across a chain of changes, no event (nor
     flood) for a registration that changes nothing, direct writes by the maintainer.
  V. both verifiers: an event moved to the same day BC (to_char drops the era), times datetime cannot
     hold, a microsecond, a number's scale, honest hostile payloads, a caller's row_factory, a
     reader's stored settings.
  S. AuditTrail paging while a worker seals and writers of other tenants record between pages;
     status' worker count under hostile application names; status under a caller's row_factory.
  H. baselines and history: a key swapped for another column, or extended to a composite, in one
     ALTER TABLE after a baseline; a key dropped and re-added; a key column renamed; an inheritance
     child's twin row. row_state_as_of must never call 'absent' a row that was there.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects and roles made here are prefixed t97_.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from contextlib import suppress
from datetime import timedelta

import psycopg
import pytest
from trial_helpers import (
    both_verifiers,
    drop_made_under,
    dsn_of,
    seal_all,
    sqlstate_of,
    table_owner_kit,
    tamper,
    try_write,
)

from pgaudit_py import enable_tracking, install, status
from pgaudit_py.catalogues import load_catalogue, read_catalogue
from pgaudit_py.chain import verify_chain
from pgaudit_py.install_script import install_script
from pgaudit_py.pytest_plugin import AuditTrail


def cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ))


def sealed_events(db, connect, n: int, kind: str = "t97.r") -> None:
    w = connect("app_writer")
    w.execute("SELECT audit.record(kind => %s, payload => jsonb_build_object('i', g))"
              " FROM generate_series(1, %s) g", [kind, n])
    assert seal_all(db) is None


def n_of(db, kind: str) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = %s", [kind]).fetchone()[0]


# ================================================= A: ages and intervals

STYLES = ["postgres", "postgres_verbose", "sql_standard", "iso_8601"]
HOSTILE_AGES = ["@ 1 day ago", "@ 1 mon -31 days", "@ 1 mon 1 day ago", "P-1M30D", "P1M-31D", "PT-1S", "P1MT-1H",
                "-1 2:00:00", "1 -0:00:01", "+1 -1:00:00", "0.5 mon -16 days", "1 year -366 days",
                "1 mon -1 day", "-1 mon 31 days 1 hour", "1 day -24 hours -1 microsecond", "-0 seconds",
                "00:00:00", "-1 year 13 mons", "1.5 years -18 mons 1 second -1 second", "-1 -1:00:00 ago"]
# The days a month's length or a year's leap moves an age across.
ANCHORS = ["2026-01-31", "2026-02-28", "2026-03-01", "2026-03-31", "2024-02-29", "2027-12-31 23:59:59.999999"]


def _age_everywhere(conn, text: str) -> bool | None:
    """Whether the interval, read under the session's IntervalStyle, reaches into the past from every
    anchor day (None when the text is no interval there)."""
    try:
        return conn.execute("SELECT bool_and((d::timestamptz - %s::interval) < d::timestamptz)"
                            " FROM unnest(%s::text[]) d", [text, ANCHORS]).fetchone()[0]
    except psycopg.Error:
        return None


@pytest.mark.parametrize("style", STYLES)
def test_a1_every_spelling_of_a_not_age_is_refused_by_prune_preview_and_the_archive_in_every_style(db, connect, style):
    sealed_events(db, connect, 3)
    connect("app_writer").execute("SELECT audit.record(kind => 't97.pending')")
    maint = connect("app_maintainer")
    maint.execute(f"SET IntervalStyle = {style}")
    before = db.execute("SELECT hot_retention FROM audit.archive_settings").fetchone()[0]
    wrong = {}
    time.sleep(0.02)
    for text in HOSTILE_AGES:
        age = _age_everywhere(maint, text)
        if age is None:
            continue  # no interval in this style: nothing to call
        outcomes = {
            "preview": sqlstate_of(maint, "SELECT audit.preview_prune(%s::interval, 10)", [text]),
            "prune": sqlstate_of(maint, "SELECT audit.prune_events(%s::interval, 10)", [text]),
            "settings": sqlstate_of(maint, "SELECT audit.set_archive_settings(%s::interval, 100, NULL)", [text]),
            "plan": sqlstate_of(maint, "SELECT audit.next_archive_batch(%s::interval)", [text]),
        }
        accepted = sorted(name for name, st in outcomes.items() if st is None)
        if accepted and not age:
            wrong[text] = accepted  # taken as an age though it is none from some day
    assert wrong == {}, f"IntervalStyle {style}: not ages, accepted: {wrong}"
    assert n_of(db, "t97.r") == 3 and n_of(db, "t97.pending") == 1
    assert db.execute("SELECT count(*) FROM audit.archive_batches").fetchone()[0] == 0
    # the settings keep a value that is an age from every day
    kept = db.execute("SELECT hot_retention::text FROM audit.archive_settings").fetchone()[0]
    assert _age_everywhere(db, kept) is True, (before, kept)


def test_a2_the_pruned_events_cutoff_is_in_the_past_and_its_older_than_reads_back_in_any_style(db, connect):
    sealed_events(db, connect, 3)
    maint = connect("app_maintainer")
    maint.execute("SET IntervalStyle = sql_standard")
    time.sleep(0.05)
    ran_at = db.execute("SELECT now()").fetchone()[0]
    res = maint.execute("SELECT deleted FROM audit.prune_events('0 0:00:00.01'::interval, 1000)").fetchone()
    assert res[0] == 3
    older, cutoff = db.execute("SELECT payload->>'older_than', (payload->>'cutoff')::timestamptz FROM audit.events"
                               " WHERE kind = 'audit.pruned'").fetchone()
    assert cutoff <= ran_at + timedelta(seconds=5) and cutoff < db.execute("SELECT now()").fetchone()[0]
    # what the log says the age was reads back as the age that was given, whatever style reads it
    for style in STYLES:
        db.execute(f"SET IntervalStyle = {style}")
        try:
            back = db.execute("SELECT %s::interval = interval '10 milliseconds'", [older]).fetchone()[0]
        except psycopg.Error as e:
            back = f"unreadable: {e.sqlstate}"
        assert back is True, (style, older, back)
    db.execute("RESET IntervalStyle")
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("value", [timedelta(0), timedelta(days=-1), timedelta(days=1, microseconds=-86400000001),
                                   timedelta(days=-30, hours=1), timedelta(days=999_999_999),
                                   "1 day ago", "1 mon -1 day", "-P1D", "P-1D", "P1M-31D", "1 mon -30 days 1 hour"])
def test_a3_the_python_wrappers_prune_nothing_for_a_not_age(db, connect, value):
    from pgaudit_py.retention import preview_prune, prune_events

    sealed_events(db, connect, 2)
    maint = connect("app_maintainer")
    time.sleep(0.02)
    outcomes = []
    for fn in (preview_prune, prune_events):
        try:
            fn(maint, value, 10)
            outcomes.append("accepted")
        except Exception as e:  # noqa: BLE001
            outcomes.append(type(e).__name__)
    assert "accepted" not in outcomes, (value, outcomes)
    assert n_of(db, "t97.r") == 2
    assert db.execute("SELECT count(*) FROM audit.prune_points").fetchone()[0] == 0


def test_a4_cli_prune_and_archive_settings_refuse_a_not_duration_and_change_nothing(db, connect):
    sealed_events(db, connect, 2)
    before = db.execute("SELECT hot_retention FROM audit.archive_settings").fetchone()[0]
    dsn = dsn_of(db, user="app_maintainer")
    wrong = {}
    for value in ["0d", "-1d", "1d ago", "1 d -1 h", "P1D", "99999999999999999999d", "36601d", "1\u0661d", "1d;",
                  "0s", "1dd", "00w"]:
        done = [cli("prune", "--older-than", value, "--yes", "--dsn", dsn).returncode,
                cli("archive", "settings", "--hot-retention", value, "--dsn", dsn).returncode]
        if done != [2, 2]:
            wrong[value] = done
    assert wrong == {}, f"[prune, archive settings] exit codes for a not-duration: {wrong}"
    assert n_of(db, "t97.r") == 2
    assert db.execute("SELECT hot_retention FROM audit.archive_settings").fetchone()[0] == before


def test_a5_a_hot_retention_stored_before_the_mend_that_is_no_age_plans_no_batch_of_fresh_events(db, connect):
    """docs/retention.md: the archive's hot_retention is an age, positive with no part negative. A value
    an earlier release's set_archive_settings took (it compared '-1 mon 30 days 1 hour' as positive, as
    the table's CHECK still does) stays in archive_settings across the upgrade: the planner must not
    take it as the age of what is due."""
    sealed_events(db, connect, 3)
    bad = next((v for v in ("-1 mon 30 days 1 hour", "-2 mon 60 days 1 hour", "-1 mon 29 days 1 hour")
                if db.execute("SELECT %s::interval > interval '0' AND now() - %s::interval > now()", [v, v]).fetchone()[0]),
               None)
    assert bad is not None, "no mixed-sign value reaches past now this month"
    db.execute("UPDATE audit.archive_settings SET hot_retention = %s::interval", [bad])  # as the old setter did
    maint = connect("app_maintainer")
    st = status(db)
    problems = [p for p in st.problems + st.warnings if "retention" in p]
    try:
        planned = maint.execute("SELECT batch_id, first_seq, last_seq FROM audit.next_archive_batch()").fetchone()
    except psycopg.Error as e:
        planned = ("refused", e.sqlstate)
    fresh = planned is not None and planned[0] is not None and planned[0] != "refused"
    assert not fresh or problems, (f"hot_retention {bad!r} (now() less it is in the future) planned the batch "
                                   f"{planned} of events sealed a moment ago, and status says nothing")


def test_a6_a_hot_retention_no_time_can_be_taken_from_is_refused_not_stored_to_fail_every_archive_run(db, connect):
    """The CLI refuses a duration past 100 years ('a larger one overflowed'); the SQL setter stores any
    age, and then every planning of a batch (the worker's daily run, pgaudit archive run) fails."""
    sealed_events(db, connect, 2)
    maint = connect("app_maintainer")
    broken = {}
    for huge in ["300000 years", "2147483647 mons", "2147483647 days", "9223372036 seconds"]:
        stored = sqlstate_of(maint, "SELECT audit.set_archive_settings(%s::interval, 100, 3)", [huge])
        planned = sqlstate_of(maint, "SELECT * FROM audit.next_archive_batch()")
        if stored is None and planned is not None:
            broken[huge] = planned
        maint.execute("SELECT audit.set_archive_settings('90 days', 10000, NULL)")
    assert broken == {}, f"stored, then every next_archive_batch() fails: {broken}"


# ================================================= B: borrowed roles

@pytest.fixture
def lesser(db):
    """t97_dbo: a login with CREATEROLE, no superuser; every t97 role and schema dropped after."""
    db.execute("CREATE ROLE t97_dbo LOGIN CREATEROLE")
    db.execute(f"GRANT CREATE ON DATABASE {db.info.dbname} TO t97_dbo")
    yield "t97_dbo"
    with suppress(psycopg.Error):
        db.execute(f"ALTER ROLE {db.info.user} RESET role")
    with suppress(psycopg.Error):
        db.execute(f"ALTER ROLE {db.info.user} IN DATABASE {db.info.dbname} RESET ALL")
    with suppress(psycopg.Error):
        db.execute(f"REVOKE CREATE ON DATABASE {db.info.dbname} FROM t97_dbo")
    drop_made_under(db, "t97")


def _made(db, schema: str) -> tuple[bool, list[str], bool]:
    ns = db.execute("SELECT to_regnamespace(%s) IS NOT NULL", [schema]).fetchone()[0]
    roles = [r[0] for r in db.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", [schema + "_"])]
    member = db.execute("SELECT coalesce(bool_or(pg_has_role('t97_dbo', oid, 'MEMBER')), false) FROM pg_roles"
                        " WHERE starts_with(rolname, %s)", [schema + "_"]).fetchone()[0]
    return ns, roles, member


def _try_install(conn, schema: str) -> str:
    try:
        install(conn, schema)
        return "installed"
    except Exception as e:  # noqa: BLE001
        with suppress(Exception):
            conn.rollback()
        return type(e).__name__


def test_b1_a_role_stored_for_the_superuser_in_every_database_is_refused_before_anything_is_made(db, lesser):
    su = db.info.user
    db.execute(f"ALTER ROLE {su} SET role = 't97_dbo'")  # every database, not IN DATABASE
    try:
        with psycopg.connect(dsn_of(db), autocommit=True) as conn:
            who = conn.execute("SELECT current_user::text").fetchone()[0]
            outcome = _try_install(conn, "t97b1")
    finally:
        db.execute(f"ALTER ROLE {su} RESET role")
    assert who == "t97_dbo"
    assert outcome != "installed"
    assert _made(db, "t97b1") == (False, [], False)


@pytest.mark.parametrize("how", ["SET ROLE t97_dbo", "SET SESSION AUTHORIZATION t97_dbo",
                                 "SELECT set_config('role', 't97_dbo', false)"])
def test_b2_a_pooled_superuser_session_left_as_a_lesser_role_refuses_the_script_applied_on_it(db, lesser, how):
    """A connection pool hands on a superuser's session that an earlier client left as another role;
    the honest script (written before) is applied on it as one transaction."""
    script = install_script(db, "t97b2")
    with psycopg.connect(dsn_of(db), autocommit=True) as pooled:
        pooled.execute(how)
        try:
            pooled.execute("BEGIN")
            pooled.execute(script)
            pooled.execute("COMMIT")
            outcome = "applied"
        except psycopg.Error as e:
            pooled.execute("ROLLBACK")
            outcome = e.sqlstate
    assert outcome != "applied"
    assert _made(db, "t97b2") == (False, [], False)


def test_b3_a_role_given_at_connect_time_as_the_lesser_role_is_refused_by_install_and_cli(db, lesser):
    with psycopg.connect(dsn_of(db), autocommit=True, options="-c role=t97_dbo") as conn:
        outcome = _try_install(conn, "t97b3")
    env_dsn = dsn_of(db) + " options='-c role=t97_dbo'"
    done = [cli("install", "--dsn", env_dsn, "--schema", "t97b3", *extra) for extra in (["--sql"], ["--dry-run"], [])]
    assert outcome != "installed"
    assert [d.returncode != 0 for d in done] == [True, True, True], [d.returncode for d in done]
    assert "CREATE" not in done[0].stdout
    assert _made(db, "t97b3") == (False, [], False)


# ================================================= E: event-type registrations

STRICT = {"type": "object", "required": ["user_id", "t97"], "additionalProperties": False,
          "properties": {"user_id": {"type": "string"}, "t97": {"type": "integer"}}}


def _registered(db, kind: str):
    return db.execute("SELECT schema, strict, catalogue FROM audit.event_types WHERE kind = %s", [kind]).fetchone()


def test_e1_a_catalogue_loaded_with_replace_after_a_strict_registration_is_refused(db, connect):
    maint = connect("app_maintainer")
    maint.execute("SELECT audit.register_event_type('auth.login', %s::jsonb, true)", [json.dumps(STRICT)])
    try:
        load_catalogue(connect("app_maintainer"), "auth", replace=True)
        loaded = True
    except Exception:  # noqa: BLE001
        loaded = False
    assert not loaded
    assert _registered(db, "auth.login") == (STRICT, True, None)


def test_e2_a_catalogue_load_with_replace_racing_a_strict_registration_by_hand_never_loosens_it(db, connect):
    """docs/sql.md: 'One made strict with another schema than the catalogue's is not replaced even with
    replace'. The maintainer registers auth.login strict while the load is under way: the load read the
    kind before that registration committed, and its own registration waits for it."""
    hand = connect("app_maintainer", autocommit=False)
    hand.execute("SELECT audit.register_event_type('auth.login', %s::jsonb, true)", [json.dumps(STRICT)])
    loader = connect("app_maintainer")
    outcome: list[str] = []

    def load() -> None:
        try:
            load_catalogue(loader, "auth", replace=True)
            outcome.append("loaded")
        except Exception as e:  # noqa: BLE001
            outcome.append(type(e).__name__)

    t = threading.Thread(target=load)
    t.start()
    deadline = time.monotonic() + 20
    waiting = False
    while time.monotonic() < deadline and not waiting:
        waiting = db.execute("SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                             " AND pid = %s", [loader.info.backend_pid]).fetchone()[0]
        time.sleep(0.05)
    hand.commit()
    t.join(30)
    assert waiting, "the loader never waited on the registration by hand"
    assert outcome, "the load did not finish"
    schema, strict, catalogue = _registered(db, "auth.login")
    assert (schema, strict) == (STRICT, True), \
        f"the load ({outcome[0]}) replaced a kind made strict by hand: now strict={strict}, catalogue={catalogue}"


def test_e3_a_writer_or_capture_cannot_forge_a_registration_event(db, connect):
    w = connect("app_writer")
    refused = [sqlstate_of(w, "SELECT audit.record(kind => %s, target_type => 'event_type', target_id => 'x',"
                              " payload => '{\"strict\": false}')", [k])
               for k in ("audit.event_type_registered", "audit.event_type_registered ",
                         "audit.event_type_registered.x", "audit\u200b.event_type_registered")]
    assert None not in refused, refused
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind ILIKE '%%event_type_registered%%'"
                      " AND coalesce(origin, '') <> 'system'").fetchone()[0] == 0


def test_e4_each_change_is_recorded_once_with_exactly_what_it_replaced_and_no_change_records_nothing(db, connect):
    maint = connect("app_maintainer")
    steps = [({"type": "object"}, False, None), ({"type": "object", "required": ["a"]}, True, None),
             ({"type": "object", "required": ["a"]}, False, None), ({"type": "object", "required": ["a"]}, True, None),
             ({"type": "object", "required": ["a"], "properties": {"a": {"maximum": 1e2}}}, True, None)]
    for schema, strict, _ in steps:
        maint.execute("SELECT audit.register_event_type('t97.k', %s::jsonb, %s)", [json.dumps(schema), strict])
    # the same again, spelled otherwise (key order, 1e2 as 100, 100.0): no change, no event, 50 times
    for _ in range(25):
        maint.execute("SELECT audit.register_event_type('t97.k', %s::jsonb, true)",
                      ['{"properties": {"a": {"maximum": 100}}, "required": ["a"], "type": "object"}'])
        maint.execute("SELECT audit.register_event_type('t97.k', %s::jsonb, true)",
                      ['{"type": "object", "required": ["a"], "properties": {"a": {"maximum": 100.0}}}'])
    rows = db.execute("SELECT payload FROM audit.events WHERE kind = 'audit.event_type_registered'"
                      " AND target_id = 't97.k' ORDER BY seq NULLS LAST, intake_id").fetchall()
    got = [r[0] for r in rows]
    assert len(got) == len(steps), [g.get("strict") for g in got]
    for i, (schema, strict, _) in enumerate(steps):
        assert (got[i]["kind"], got[i]["strict"]) == ("t97.k", strict)
        assert db.execute("SELECT %s::jsonb = %s::jsonb", [json.dumps(got[i]["schema"]), json.dumps(schema)]
                          ).fetchone()[0], (i, got[i])
        want = None if i == 0 else {"schema": steps[i - 1][0], "strict": steps[i - 1][1], "catalogue": None}
        if want is not None:
            assert (got[i]["replaced"]["strict"], got[i]["replaced"]["catalogue"]) == (want["strict"], None), (i, got[i])
            assert db.execute("SELECT %s::jsonb = %s::jsonb", [json.dumps(got[i]["replaced"]["schema"]),
                                                               json.dumps(want["schema"])]).fetchone()[0], (i, got[i])
        else:
            assert got[i]["replaced"] is None


def test_e5_the_maintainer_cannot_change_a_registration_but_through_the_function(db, connect):
    maint = connect("app_maintainer")
    maint.execute("SELECT audit.register_event_type('t97.m', %s::jsonb, true)", [json.dumps(STRICT)])
    tries = [sqlstate_of(maint, s) for s in (
        "UPDATE audit.event_types SET strict = false WHERE kind = 't97.m'",
        "DELETE FROM audit.event_types WHERE kind = 't97.m'",
        "TRUNCATE audit.event_types",
        "INSERT INTO audit.event_types (kind, schema, strict, registered_by) VALUES ('t97.n', '{}', false, 'x')",
        "SET ROLE audit_owner",
        "SELECT audit._record('audit.event_type_registered', NULL, NULL, NULL, 'event_type', 't97.m', '{}',"
        " 'success', NULL, NULL)",
    )]
    assert None not in tries, tries
    assert _registered(db, "t97.m") == (STRICT, True, None)
    assert db.execute("SELECT count(*) FROM audit.event_types WHERE kind = 't97.n'").fetchone()[0] == 0


def test_e6_a_catalogue_load_records_each_kind_it_changed_and_one_load_again_records_nothing(db, connect):
    maint = connect("app_maintainer")
    maint.execute("SELECT audit.register_event_type('auth.logout', '{\"type\": \"object\"}', false)")
    load_catalogue(maint, "auth", replace=True)
    kinds = list(read_catalogue("auth")["kinds"])
    first = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.event_type_registered'").fetchone()[0]
    load_catalogue(maint, "auth", replace=True)
    load_catalogue(maint, "auth")
    again = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.event_type_registered'").fetchone()[0]
    assert first == len(kinds) + 1 and again == first, (first, again, len(kinds))
    replaced = db.execute("SELECT payload->'replaced' FROM audit.events WHERE kind = 'audit.event_type_registered'"
                          " AND target_id = 'auth.logout' ORDER BY seq NULLS LAST, intake_id").fetchall()
    assert replaced[-1][0] == {"schema": {"type": "object"}, "strict": False, "catalogue": None}


# ================================================= V: both verifiers

def _one_sealed(db, connect, kind: str = "t97.v", payload: str = '{"a": 1.50}') -> None:
    connect("app_writer").execute("SELECT audit.record(kind => %s, payload => %s::jsonb)", [kind, payload])
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_v1_an_event_moved_to_the_same_day_bc_is_caught_by_both_verifiers(db, connect):
    """docs/tamper-evidence.md: verify names 'block N: event seq S was changed'. Moving an event's
    occurred_at 4,052 years back, to the same date and time BC, changes nothing to_char writes."""
    _one_sealed(db, connect)
    was = db.execute("SELECT occurred_at FROM audit.event_log WHERE kind = 't97.v'").fetchone()[0]
    tamper(db, "UPDATE audit.event_log SET occurred_at = ((to_char(occurred_at AT TIME ZONE 'UTC',"
               " 'YYYY-MM-DD HH24:MI:SS.US') || ' BC')::timestamp AT TIME ZONE 'UTC') WHERE kind = 't97.v'")
    now_text = db.execute("SELECT occurred_at::text FROM audit.event_log WHERE kind = 't97.v'").fetchone()[0]
    assert now_text.endswith("BC"), now_text  # the log now says the event happened before the common era
    assert both_verifiers(db) == (False, False), (f"occurred_at moved from {was} to {now_text}: "
                                                 f"verify={both_verifiers(db)}")


@pytest.mark.parametrize("edit", [
    "occurred_at = '10000-01-01 00:00:00+00'",
    "occurred_at = '0999-12-31 23:59:59.999999+00'",
    "occurred_at = occurred_at + interval '1 microsecond'",
    "occurred_at = 'infinity'",
    "occurred_at = '-infinity'",
    "occurred_at = '4713-11-24 00:00:00+00 BC'",
    "occurred_at = occurred_at + interval '1000 years'",
    "payload = '{\"a\": 1.5}'",
    "payload = '{\"a\": 1.500}'",
    "client_addr = '127.0.0.2'",
    "txid = (txid::text::numeric + 1)::text::xid8",
])
def test_v2_each_verifier_catches_a_change_to_an_extreme_or_a_near_twin(db, connect, edit):
    _one_sealed(db, connect)
    try:
        tamper(db, f"UPDATE audit.event_log SET {edit} WHERE kind = 't97.v'")
    except psycopg.Error:
        return  # the column refuses the value itself
    assert both_verifiers(db) == (False, False), edit


HONEST_PAYLOADS = {
    "separators": json.dumps({"s": "\u2028\u2029\u0085\u200b\ufeff", "k\u2028": "\U0001F600"}),
    "nfd_nfc": json.dumps({"caf\u00e9": 1, "cafe\u0301": 2}),
    "controls": json.dumps({"c": "".join(chr(i) for i in range(1, 32)) + "\x7f\"\\/"}),
    "numbers": '{"a": 1e-300, "b": -0.0, "c": 123456789012345678901234567890.000000000000000001, "d": 1E+300}',
    "deep": '{"d": ' + "[" * 200 + "]" * 200 + "}",
    "wide": json.dumps({f"k{i}": "x" * (i % 7) for i in range(3000)}),
    "keys_by_bytes": json.dumps({"\u00ff": 1, "zz": 2, "\u0100": 3, "\U00010000": 4, "": 5}),
}


def test_v3_honest_hostile_payloads_pass_both_verifiers(db, connect):
    w = connect("app_writer")
    for name, payload in HONEST_PAYLOADS.items():
        w.execute("SELECT audit.record(kind => %s, payload => %s::jsonb, tenant_id => %s, actor_id => %s)",
                  [f"t97.h.{name}", payload, "t\u2028\U0001F600", "a\"\\\n"])
    assert seal_all(db) is None
    for tz in ("UTC", "Pacific/Chatham", "America/St_Johns"):
        db.execute(f"SET TimeZone = '{tz}'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = sql_standard")
        assert both_verifiers(db) == (True, True), tz
    db.execute("RESET TimeZone; RESET DateStyle; RESET IntervalStyle")
    # and a change to any one of them is caught by both
    tamper(db, "UPDATE audit.event_log SET payload = payload || '{}' WHERE kind = 't97.h.deep'")
    assert both_verifiers(db) == (True, True)  # the same value again changes nothing
    tamper(db, "UPDATE audit.event_log SET tenant_id = 't\u2029\U0001F600' WHERE kind = 't97.h.nfd_nfc'")
    assert both_verifiers(db) == (False, False)


def test_v4_the_python_verifier_gives_a_verdict_whatever_the_callers_row_factory(db, connect):
    """A caller's connection made with another row_factory (dict_row, as many applications set for the
    whole connection): the SQL verifier answers, the Python one must answer the same, not raise."""
    from psycopg.rows import dict_row, namedtuple_row, scalar_row

    _one_sealed(db, connect)
    verdicts = {}
    for rf in (dict_row, namedtuple_row, scalar_row):
        with psycopg.connect(dsn_of(db, user="app_reader"), autocommit=True, row_factory=rf) as conn:
            try:
                verdicts[rf.__name__] = verify_chain(conn).ok
            except Exception as e:  # noqa: BLE001
                verdicts[rf.__name__] = f"raised {type(e).__name__}: {str(e)[:80]}"
    assert verdicts == {"dict_row": True, "namedtuple_row": True, "scalar_row": True}, verdicts


def test_v5_a_readers_stored_settings_change_neither_verdict_honest_or_tampered(db, connect):
    name = db.info.dbname
    connect("app_writer").execute("SELECT audit.record(kind => 't97.enc', tenant_id => %s, payload => %s::jsonb)",
                                  ["t\u00e9\U0001F600", json.dumps({"f": 0.1, "g": 1e-7, "s": "\u20ac\u2028"})])
    assert seal_all(db) is None
    stored = {"client_encoding": "'LATIN1'", "DateStyle": "'German, DMY'", "TimeZone": "'Pacific/Kiritimati'",
              "IntervalStyle": "'iso_8601'", "extra_float_digits": "'-15'", "search_path": "'pg_temp, public'",
              "default_transaction_isolation": "'serializable'", "lc_monetary": "'C'"}
    for k, v in stored.items():
        db.execute(f"ALTER ROLE app_reader IN DATABASE {name} SET {k} = {v}")
    try:
        def verdicts() -> tuple:
            with psycopg.connect(dsn_of(db, user="app_reader"), autocommit=True) as r:
                sql_ok = r.execute("SELECT ok FROM audit.verify()").fetchone()[0]
                try:
                    py_ok = verify_chain(r).ok
                except Exception as e:  # noqa: BLE001
                    py_ok = f"raised {type(e).__name__}"
            return sql_ok, py_ok

        honest = verdicts()
        tamper(db, "UPDATE audit.event_log SET tenant_id = 't\u00e9\U0001F601' WHERE kind = 't97.enc'")
        tampered = verdicts()
    finally:
        db.execute(f"ALTER ROLE app_reader IN DATABASE {name} RESET ALL")
    assert (honest, tampered) == ((True, True), (False, False)), (honest, tampered)


# ================================================= S: paging and status

def test_s1_events_paged_while_a_worker_seals_and_other_tenants_record_keeps_each_event_once(db, connect, monkeypatch):
    import pgaudit_py.pytest_plugin as plugin

    w = connect("app_writer")
    w.execute("SELECT audit.record(kind => 't97.s', tenant_id => 't97_a', actor_id => 'x' || g)"
              " FROM generate_series(1, 700) g")
    w.execute("SELECT audit.record(kind => 't97.s', tenant_id => 't97_b') FROM generate_series(1, 300) g")
    assert seal_all(db) is None
    w.execute("SELECT audit.record(kind => 't97.s', tenant_id => 't97_a', actor_id => 'y' || g)"
              " FROM generate_series(1, 600) g")
    maint = connect("app_maintainer")
    real, calls = plugin.list_events, []

    def paging(*args, **kwargs):
        page = real(*args, **kwargs)
        calls.append(1)
        if len(calls) <= 3:  # between pages: other tenants record, and the worker seals all
            w.execute("SELECT audit.record(kind => 't97.s', tenant_id => 't97_b') FROM generate_series(1, 200) g")
            assert seal_all(maint) is None
        return page

    monkeypatch.setattr(plugin, "list_events", paging)
    trail = AuditTrail(db)
    got = trail.events(tenant_id="t97_a", kind_prefix="t97.s")
    ids = [e.id for e in got]
    assert len(ids) == len(set(ids)) == 1300, (len(ids), len(set(ids)))
    assert {e.tenant_id for e in got} == {"t97_a"}
    calls.clear()
    start = db.execute("SELECT min(seq) - 1 FROM audit.event_log WHERE kind = 't97.s'").fetchone()[0]
    forwards = trail.events(tenant_id="t97_a", since_seq=start)
    seqs = [e.seq for e in forwards]
    assert seqs == sorted(set(seqs)) and len(seqs) == 1300, (len(seqs), len(set(seqs)))


def _workers(db) -> int:
    done = cli("status", "--dsn", dsn_of(db, user="app_reader"), "--json")
    return json.loads(done.stdout)["workers"]


def test_s2_worker_look_alike_names_and_roles_are_not_counted(db, connect):
    db.execute("CREATE ROLE t97_plain LOGIN")
    try:
        fakes = [connect("t97_plain", application_name="pgaudit worker"),
                 connect("app_maintainer", application_name="pgaudit worker\u00a0"),
                 connect("app_maintainer", application_name="pgaudit  worker"),
                 connect("app_maintainer", application_name="PGAUDIT WORKER"),
                 connect("app_writer", application_name="pgaudit worker")]
        # a plain login that sets the name later, and one that takes a writer's SET ROLE
        late = connect("t97_plain")
        late.execute("SET application_name = 'pgaudit worker'")
        assert fakes and _workers(db) == 0
        honest = connect("app_maintainer", application_name="pgaudit worker")
        assert _workers(db) == 1
        honest.close()
        late.close()
        for f in fakes:
            f.close()
    finally:
        db.execute("DROP ROLE IF EXISTS t97_plain")


def test_s3_status_answers_whatever_the_callers_row_factory(db, connect):
    from psycopg.rows import dict_row, namedtuple_row

    honest = status(db)
    got = {}
    for rf in (dict_row, namedtuple_row):
        with psycopg.connect(dsn_of(db), autocommit=True, row_factory=rf) as conn:
            try:
                st = status(conn)
                got[rf.__name__] = (st.installed_version, st.problems)
            except Exception as e:  # noqa: BLE001
                got[rf.__name__] = f"raised {type(e).__name__}: {str(e)[:80]}"
    want = (honest.installed_version, honest.problems)
    assert got == {"dict_row": want, "namedtuple_row": want}, got


# ================================================= H: baselines and history after key changes

def _keyed(kit, name: str, cols: str, rows: str) -> None:
    kit.owner.execute(f"CREATE TABLE public.{name} ({cols}); GRANT ALL ON public.{name} TO app_writer;"
                      f" INSERT INTO public.{name} VALUES {rows}")
    enable_tracking(kit.maint, f"public.{name}", baseline=True)


def _states(kit, table: str, keys: list[str], at) -> dict[str, str]:
    return {k: kit.state(f"public.{table}", k, at)[0] for k in keys}


def test_h1_a_key_swapped_for_another_column_in_one_statement_never_makes_a_row_absent(db, connect):
    """docs/capture.md (trial 96, b6): a baseline says a row was absent only where its images name rows
    by the table's key. Here the key moves from id to code in one ALTER TABLE: the baseline named rows
    by id."""
    with table_owner_kit(db, connect, "t97") as kit:
        _keyed(kit, "t97_sw", "id int PRIMARY KEY, code text NOT NULL UNIQUE, v int",
               "(1, 'alpha', 0), (2, 'beta', 0)")
        before = kit.tick()
        refused = try_write(kit.owner, "ALTER TABLE public.t97_sw DROP CONSTRAINT t97_sw_pkey, ADD PRIMARY KEY (code)")
        keys = db.execute("SELECT key_columns FROM audit.tracked_tables WHERE relid = 'public.t97_sw'::regclass"
                          ).fetchone()[0]
        after = kit.tick()
        names = ["alpha", "beta"] if keys == ["code"] else ["1", "2"]
        states = {"before": _states(kit, "t97_sw", names, before),
                  "after": _states(kit, "t97_sw", names, after)}
        # the rows were there all along, by whichever key the tracking now has
        assert keys in (["code"], ["id"]) and (refused is None) == (keys == ["code"]), (keys, refused)
        assert all(s != "absent" for when in states.values() for s in when.values()), states
        # and no row of that code is said to have existed under the old key's value
        if keys == ["code"]:
            ghost = kit.state("public.t97_sw", "1", after)
            assert ghost[0] != "existed" or ghost[1].get("code") == "1", ghost


def test_h2_a_key_extended_to_a_composite_in_one_statement_never_makes_a_row_absent(db, connect):
    with table_owner_kit(db, connect, "t97") as kit:
        _keyed(kit, "t97_cx", "id int PRIMARY KEY, region text NOT NULL, v int", "(1, 'EU', 0), (2, 'US', 0)")
        refused = try_write(kit.owner, "ALTER TABLE public.t97_cx DROP CONSTRAINT t97_cx_pkey,"
                                       " ADD PRIMARY KEY (id, region)")
        after = kit.tick()
        names = ["1", "2"] if refused else ['[1, "EU"]', '[2, "US"]']
        states = _states(kit, "t97_cx", names, after)
        as_of = kit.as_of("public.t97_cx", names[0], after)
        assert all(s != "absent" for s in states.values()), (states, as_of)


def test_h3_a_key_dropped_and_added_again_or_renamed_never_makes_a_row_absent(db, connect):
    with table_owner_kit(db, connect, "t97") as kit:
        _keyed(kit, "t97_dr", "id int PRIMARY KEY, code text NOT NULL, v int", "(1, 'a', 0), (2, 'b', 0)")
        dropped = try_write(kit.owner, "ALTER TABLE public.t97_dr DROP CONSTRAINT t97_dr_pkey")
        added = try_write(kit.owner, "ALTER TABLE public.t97_dr ADD PRIMARY KEY (code)")
        keyed_by_code = dropped is None and added is None
        names = ["a", "b"] if keyed_by_code else ["1", "2"]
        mid = kit.tick()
        kit.owner.execute("ALTER TABLE public.t97_dr RENAME COLUMN code TO label")
        after = kit.tick()
        s = {"mid": _states(kit, "t97_dr", names, mid), "after": _states(kit, "t97_dr", names, after)}
        assert all(v != "absent" for when in s.values() for v in when.values()), (dropped, added, s)
        kit.writer.execute("UPDATE public.t97_dr SET v = 1 WHERE label = 'a'")
        later = kit.tick()
        assert kit.state("public.t97_dr", names[0], later)[0] == "existed"


def test_h4_a_key_renamed_keeps_the_baseline_truthful(db, connect):
    with table_owner_kit(db, connect, "t97") as kit:
        _keyed(kit, "t97_rn", "id int PRIMARY KEY, v int", "(1, 0), (2, 0)")
        kit.owner.execute("ALTER TABLE public.t97_rn RENAME COLUMN id TO ident")
        after = kit.tick()
        assert _states(kit, "t97_rn", ["1", "2"], after) == {"1": "existed", "2": "existed"}
        assert kit.state("public.t97_rn", "3", after)[0] in ("absent", "unknown")


def test_h5_a_row_of_an_inheritance_child_is_not_called_absent_for_its_parents_twin_deleted(db, connect):
    """A tracked table's inheritance child holds rows under the parent's key columns, which no key makes
    unique across the two: the parent's row 5 deleted says nothing of the child's row 5."""
    with table_owner_kit(db, connect, "t97") as kit:
        _keyed(kit, "t97_par", "id int PRIMARY KEY, v int", "(5, 0), (6, 0)")
        made = try_write(kit.owner, "CREATE TABLE public.t97_kid (note text) INHERITS (public.t97_par);"
                                    " GRANT ALL ON public.t97_kid TO app_writer")
        if made is not None:
            return  # an inheritance child of a tracked table is refused: nothing to confuse
        kit.writer.execute("INSERT INTO public.t97_kid (id, v) VALUES (5, 1)")
        kit.writer.execute("DELETE FROM ONLY public.t97_par WHERE id = 5")
        after = kit.tick()
        there = db.execute("SELECT count(*) FROM public.t97_kid WHERE id = 5").fetchone()[0]
        assert there == 1
        kid = kit.state("public.t97_kid", "5", after)
        assert kid[0] == "existed" or kid[0] == "unknown" or kid[0] == "refused", kid
        whole = kit.state("public.t97_par", "5", after)
        # the parent's own reading (ONLY-less: its children's rows are its rows too) must not say absent
        assert whole[0] != "absent", whole
