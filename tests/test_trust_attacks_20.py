"""A twentieth attacker's trial, away from the rate-limit keys and restore_archive_batch of trials
16-19: schema changes that make a covered table's rows read differently without a rewrite (a
retype PostgreSQL does in place, a constant default, a composite's attribute renamed under a
column, a table made typed and its type renamed with CASCADE, the row type of another table), the
follower and the sealer's notification channel (which anyone who can connect may NOTIFY), the HTTP
API's tokens (an expiry of 'infinity', a maintainer's odd session settings, lookalike names), and
hostile payload keys and numbers through both verifiers. Each test asserts the SAFE outcome: it
passes when the product holds and fails when the attack breaks it.

Roles: table_owner (the `attacker` fixture: owns tables, no audit role; app_maintainer is a member,
so it may track them), app_writer, app_reader, app_maintainer, app_attacker (a login with no role).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timezone

import psycopg
import pytest
from schema_changes import both_verifiers_ok

from pgaudit_py import PgAuditError, enable_tracking, seal
from pgaudit_py.follow import follow
from pgaudit_py.tokens import create_token, list_tokens, revoke_token, token_sha256


def _kinds(db, target_like: str) -> list[str]:
    return [r[0] for r in db.execute(
        "SELECT kind FROM audit.events WHERE target_id LIKE %s OR kind LIKE 'public.%%' ORDER BY occurred_at",
        (target_like,)).fetchall()]


def _ddl_events(db) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in db.execute(
        "SELECT kind, target_id FROM audit.events"
        " WHERE kind IN ('audit.tracked_table_ddl', 'audit.tracked_type_altered', 'audit.tracked_table_altered')"
        " ORDER BY occurred_at").fetchall()]


# --- 1. Schema changes that change what rows read as, with no rewrite -------------------------------

def test_c2_a_retype_postgres_does_in_place_is_refused_or_recorded(db, connect, attacker):
    """timestamp -> timestamptz needs no rewrite when the session's TimeZone is UTC (PostgreSQL 12+):
    the table_rewrite trigger never fires. Every row now reads as an instant with an offset. The
    ALTER must be refused or recorded as audit.tracked_table_ddl naming the new type."""
    attacker.execute("CREATE TABLE public.ts (id int PRIMARY KEY, at timestamp)")
    attacker.execute("INSERT INTO public.ts VALUES (1, '2020-01-01 12:00')")
    enable_tracking(connect("app_maintainer"), "public.ts")
    attacker.execute("SET TimeZone = 'UTC'")
    before = _ddl_events(db)
    try:
        attacker.execute("ALTER TABLE public.ts ALTER COLUMN at TYPE timestamptz")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    after = _ddl_events(db)
    assert ("audit.tracked_table_ddl", "public.ts") in after[len(before):], after
    cols = db.execute("SELECT payload->'columns' FROM audit.events WHERE kind = 'audit.tracked_table_ddl'"
                      " ORDER BY occurred_at DESC LIMIT 1").fetchone()[0]
    assert ["at", "timestamp with time zone"] in [c[1:] for c in cols], cols
    # And the capture still works on the retyped column.
    attacker.execute("UPDATE public.ts SET at = at + interval '1 hour'")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.ts.update'").fetchone()[0] == 1


def test_c2_a_column_added_with_a_constant_default_is_recorded(db, connect, attacker):
    """ADD COLUMN ... DEFAULT <constant> NOT NULL fills every existing row in the catalogue alone
    (no rewrite, no row trigger): the rows now carry a value nobody wrote. Recorded as DDL."""
    attacker.execute("CREATE TABLE public.acc (id int PRIMARY KEY, v int)")
    attacker.execute("INSERT INTO public.acc SELECT g, g FROM generate_series(1, 3) g")
    enable_tracking(connect("app_maintainer"), "public.acc")
    attacker.execute("ALTER TABLE public.acc ADD COLUMN approved boolean NOT NULL DEFAULT true")
    assert ("audit.tracked_table_ddl", "public.acc") in _ddl_events(db)
    attacker.execute("UPDATE public.acc SET v = v + 1 WHERE id = 1")
    image = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.acc.update'").fetchone()[0]
    assert image == {"id": 1, "v": 2, "approved": True}
    seal(db)
    both_verifiers_ok(db)


def test_c2_a_composite_attribute_renamed_or_dropped_under_a_tracked_column_is_recorded(db, connect, attacker):
    """The keys of a composite column's image are its attribute names: ALTER TYPE ... RENAME
    ATTRIBUTE changes every row's image with no row event. Recorded as audit.tracked_type_altered
    (or refused); DROP ATTRIBUTE of a type a column uses is refused by PostgreSQL or recorded."""
    attacker.execute("CREATE TYPE public.money2 AS (amount int, currency text)")
    attacker.execute("CREATE TABLE public.pay (id int PRIMARY KEY, m public.money2)")
    attacker.execute("INSERT INTO public.pay VALUES (1, ROW(5, 'EUR'))")
    enable_tracking(connect("app_maintainer"), "public.pay")
    n = len(_ddl_events(db))
    try:
        attacker.execute("ALTER TYPE public.money2 RENAME ATTRIBUTE currency TO cur")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
    else:
        assert ("audit.tracked_type_altered", "public.money2") in _ddl_events(db)[n:], _ddl_events(db)
    attacker.execute("UPDATE public.pay SET m.amount = 6 WHERE id = 1")
    image = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.pay.update'"
                       " ORDER BY occurred_at DESC LIMIT 1").fetchone()[0]
    assert image["m"]["amount"] == 6
    # PostgreSQL lets DROP ATTRIBUTE through although a column uses the type: every row loses the
    # attribute's values, with no row event. Refused, or recorded.
    n = len(_ddl_events(db))
    try:
        attacker.execute("ALTER TYPE public.money2 DROP ATTRIBUTE amount")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
    else:
        assert ("audit.tracked_type_altered", "public.money2") in _ddl_events(db)[n:], _ddl_events(db)
    seal(db)
    both_verifiers_ok(db)


def test_c2_a_tracked_table_made_typed_and_its_type_altered_with_cascade_is_recorded(db, connect, attacker):
    """ALTER TABLE t OF ty makes a tracked table typed (recorded as audit.tracked_table_ddl); then
    ALTER TYPE ty ... CASCADE renames, adds and drops the table's columns through the type (tag
    ALTER TYPE on the composite, not ALTER TABLE on the table). Swapping debit and credit by three
    renames makes every row read the other way round, and dropping an attribute destroys a column's
    values, with no row event: each must be recorded (or refused) like the same ALTER TABLE."""
    attacker.execute("CREATE TABLE public.ledger (id int PRIMARY KEY, debit int, credit int)")
    attacker.execute("INSERT INTO public.ledger VALUES (1, 100, 0)")
    enable_tracking(connect("app_maintainer"), "public.ledger")
    attacker.execute("CREATE TYPE public.ledger_t AS (id int, debit int, credit int)")
    try:
        attacker.execute("ALTER TABLE public.ledger OF public.ledger_t")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    assert ("audit.tracked_table_ddl", "public.ledger") in _ddl_events(db)
    steps = [("ALTER TYPE public.ledger_t RENAME ATTRIBUTE debit TO tmp CASCADE;"
              " ALTER TYPE public.ledger_t RENAME ATTRIBUTE credit TO debit CASCADE;"
              " ALTER TYPE public.ledger_t RENAME ATTRIBUTE tmp TO credit CASCADE",
              [[1, "id", "integer"], [2, "credit", "integer"], [3, "debit", "integer"]]),
             ("ALTER TYPE public.ledger_t ADD ATTRIBUTE note text CASCADE",
              [[1, "id", "integer"], [2, "credit", "integer"], [3, "debit", "integer"], [4, "note", "text"]]),
             ("ALTER TYPE public.ledger_t DROP ATTRIBUTE credit CASCADE",
              [[1, "id", "integer"], [3, "debit", "integer"], [4, "note", "text"]])]
    for command, columns in steps:
        n = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_table_ddl'").fetchone()[0]
        attacker.execute(command)
        recorded = db.execute("SELECT target_id, payload -> 'columns' FROM audit.events"
                              " WHERE kind = 'audit.tracked_table_ddl' ORDER BY occurred_at, intake_id OFFSET %s",
                              (n,)).fetchall()
        # The swap is three commands in one query string: each recorded, the last with the columns now.
        assert recorded and {r[0] for r in recorded} == {"public.ledger"}, (command, recorded)
        assert recorded[-1][1] == columns, (command, recorded)


def test_c2_renaming_a_column_of_another_table_whose_row_type_a_tracked_column_uses_is_recorded(db, connect, attacker):
    """A tracked column of type public.other (a table's row type): renaming other's column renames
    a key of every tracked row's image, with an ALTER TABLE of an untracked table."""
    attacker.execute("CREATE TABLE public.other (a int, b text)")
    attacker.execute("CREATE TABLE public.holder (id int PRIMARY KEY, o public.other)")
    attacker.execute("INSERT INTO public.holder VALUES (1, ROW(1, 'x'))")
    enable_tracking(connect("app_maintainer"), "public.holder")
    n = len(_ddl_events(db))
    try:
        attacker.execute("ALTER TABLE public.other RENAME COLUMN b TO c")
    except psycopg.Error as exc:
        assert exc.sqlstate == "PA008", exc
        return
    assert ("audit.tracked_type_altered", "public.other") in _ddl_events(db)[n:], _ddl_events(db)


def test_c2_a_domain_constraint_validated_or_dropped_under_a_tracked_column_runs_no_audit_code(db, connect, attacker):
    """ALTER DOMAIN is not among the watched tags: a CHECK added to a domain a tracked column uses
    runs the owner's function over every row (VALIDATE) in the owner's session, as the owner only,
    and the capture keeps working afterwards."""
    attacker.execute("CREATE FUNCTION public.dspy(v int) RETURNS boolean LANGUAGE sql AS"
                     " $$ SELECT public.spy('domain check') $$")
    attacker.execute("CREATE DOMAIN public.pos AS int")
    attacker.execute("CREATE TABLE public.dm (id int PRIMARY KEY, v public.pos)")
    attacker.execute("INSERT INTO public.dm VALUES (1, 1)")
    enable_tracking(connect("app_maintainer"), "public.dm")
    attacker.execute("ALTER DOMAIN public.pos ADD CONSTRAINT c CHECK (public.dspy(VALUE))")
    connect("app_maintainer").execute("SELECT audit.seal()")
    attacker.execute("UPDATE public.dm SET v = 2")
    ran = db.execute("SELECT DISTINCT who, forged FROM public.who_ran").fetchall()
    assert all(who == "table_owner" and not forged for who, forged in ran), ran
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.dm.update'").fetchone()[0] == 1
    seal(db)
    both_verifiers_ok(db)


# --- 2. The follower and the notification channel ----------------------------------------------------

def test_c3_a_spoofed_notification_neither_skips_nor_invents_followed_events(db, connect):
    """Anyone who can connect may NOTIFY the channel named after the schema, with any payload (a
    seq far ahead, text, nothing). follow() must yield exactly the sealed events, in order."""
    writer = connect("app_writer")
    stranger = connect("app_attacker")
    writer.execute("SELECT audit.record('app.one')")
    seal(db)
    start = db.execute("SELECT last_seq FROM audit.seal_state").fetchone()[0]
    follower = connect("app_reader")
    got: list[int] = []
    stop = threading.Event()

    def run() -> None:
        for event in follow(follower, since_seq=start, poll_interval=30, stop=stop):
            got.append(event.seq)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        for payload in ("999999999", "-1", "", "not a number", str(start + 1)):
            stranger.execute("SELECT pg_notify('audit', %s)", (payload,))
        time.sleep(0.5)
        assert got == []
        for i in range(3):
            writer.execute("SELECT audit.record('app.after', payload => %s::jsonb)", (json.dumps({"i": i}),))
        stranger.execute("SELECT pg_notify('audit', '999999999')")
        seal(db)
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(timeout=5)
    assert got == [start + 1, start + 2, start + 3], got


# --- 3. HTTP API tokens -------------------------------------------------------------------------------

def test_c5_a_token_that_never_expires_does_not_break_listing_or_revoking_tokens(db, connect):
    """create_api_token refused an expiry only when it was not in the future, and 'infinity' is: a
    maintainer's token so made made list_tokens (the CLI's `tokens list`) raise for every later
    caller (psycopg cannot read a time past the year 9999). Such an expiry is refused now, and a
    row an earlier release took (written here as the owner) lists as never expiring and revokes."""
    maintainer = connect("app_maintainer")
    for expiry in ("infinity", "10000-01-01 00:00:00+00", "9999-06-01 00:00:00+00"):
        with pytest.raises(psycopg.Error) as refused:
            maintainer.execute("SELECT audit.create_api_token('0123456789ab', 'forever', 'reader', %s, NULL, %s)",
                               (token_sha256("pga_0123456789ab_" + "0" * 64), expiry))
        assert refused.value.sqlstate == "PA005", expiry
        maintainer.rollback()
    assert db.execute("SELECT count(*) FROM audit.api_tokens").fetchone()[0] == 0
    db.execute("INSERT INTO audit.api_tokens (token_id, name, role, token_sha256, created_by, expires_at)"
               " VALUES ('0123456789ab', 'forever', 'reader', %s, 'app_maintainer', 'infinity')",
               (token_sha256("pga_0123456789ab_" + "0" * 64),))
    make = create_token(maintainer, "normal", "reader")
    listed = {t.name: t for t in list_tokens(maintainer)}
    assert set(listed) == {"forever", "normal"}
    assert listed["forever"].expires_at is None
    revoke_token(maintainer, "forever")
    assert db.execute("SELECT revoked_at IS NOT NULL, expires_at = 'infinity' FROM audit.api_tokens"
                      " WHERE name = 'forever'").fetchone() == (True, True)
    assert make.info.name == "normal"
    seal(db)
    both_verifiers_ok(db)


def test_c4_token_times_read_right_under_a_maintainers_odd_settings(db, connect):
    """A maintainer's session (a pool's, a role's ALTER ROLE SET) with DateStyle 'SQL, DMY', an odd
    TimeZone and IntervalStyle sql_standard: create_token's and list_tokens' expiry must be the
    instant given, or the call refused; never another instant."""
    maintainer = connect("app_maintainer", options="-c DateStyle=SQL,DMY -c TimeZone=Pacific/Chatham"
                                                   " -c IntervalStyle=sql_standard -c extra_float_digits=-15")
    expires = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=timezone.utc)
    try:
        made = create_token(maintainer, "odd", "reader", expires_at=expires)
    except Exception as exc:  # refused (UnsupportedSession): safe, provided nothing was misread
        assert "DateStyle" in str(exc), exc
        stored = db.execute("SELECT expires_at FROM audit.api_tokens WHERE name = 'odd'").fetchone()
        assert stored is None or stored[0] == expires
        return
    assert made.info.expires_at == expires, made.info
    listed = {t.name: t for t in list_tokens(maintainer)}
    assert listed["odd"].expires_at == expires
    stored = db.execute("SELECT expires_at FROM audit.api_tokens WHERE name = 'odd'").fetchone()[0]
    assert stored == expires


def test_c3_a_lookalike_name_revokes_only_its_own_token(db, connect):
    """Names are compared exactly: 'T1' beside 't1', 't1.' and a name that is another token's id
    with a suffix never revoke the other token. An id in capitals is no name but that id (trial
    125, t1: a decoy so named was revoked in the victim's place): refused as a name, and revoke
    reads it as the id."""
    maintainer = connect("app_maintainer")
    t1 = create_token(maintainer, "t1", "reader")
    for capitals in (t1.info.token_id.upper(), "ABCDEF012345"):
        with pytest.raises(PgAuditError):
            create_token(maintainer, capitals, "reader")
    create_token(maintainer, "T1", "reader")
    create_token(maintainer, t1.info.token_id + "x", "reader")
    revoke_token(maintainer, "T1")
    revoke_token(maintainer, t1.info.token_id + "x")
    live = db.execute("SELECT name FROM audit.api_tokens WHERE revoked_at IS NULL").fetchall()
    assert [r[0] for r in live] == ["t1"]
    for bad in ("t1 ", " t1", "t1\n", "t%", "t_"):
        with pytest.raises(PgAuditError):
            revoke_token(maintainer, bad)
    assert db.execute("SELECT count(*) FROM audit.api_tokens WHERE revoked_at IS NULL").fetchone()[0] == 1
    revoke_token(maintainer, t1.info.token_id.upper())
    assert db.execute("SELECT count(*) FROM audit.api_tokens WHERE revoked_at IS NULL").fetchone()[0] == 0


def test_c1_no_role_without_an_audit_role_learns_or_checks_token_hashes(db, connect, attacker):
    """authenticate_api_token is an oracle on token hashes: callable by the API's role only. A table
    owner and a bare login can neither call it nor read api_tokens, nor shadow it for the server by
    a function of their own in public (the server qualifies the schema)."""
    maintainer = connect("app_maintainer")
    made = create_token(maintainer, "x", "reader")
    digest = token_sha256(made.token)
    for role in ("table_owner", "app_attacker", "app_writer"):
        conn = connect(role)
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT * FROM audit.authenticate_api_token(%s)", (digest,))
        with pytest.raises(psycopg.Error):
            conn.execute("SELECT token_sha256 FROM audit.api_tokens")
    attacker.execute("CREATE FUNCTION public.authenticate_api_token(bytea) RETURNS TABLE"
                     " (token_id text, name text, role text, tenant_id text) LANGUAGE sql AS"
                     " $$ SELECT 'ffffffffffff', 'evil', 'maintainer', NULL::text $$")
    reader = connect("app_reader", options="-c search_path=public,audit")
    rows = reader.execute("SELECT role FROM audit.authenticate_api_token(%s)",
                          (token_sha256("pga_" + "0" * 12 + "_" + "0" * 64),)).fetchall()
    assert rows == []


# --- 4. Hostile payloads through both verifiers ---------------------------------------------------------

def test_c5_payload_keys_that_sort_apart_by_bytes_codepoints_and_utf16_verify_in_both(db, connect):
    """Keys equal in characters but not bytes, in UTF-16 order but not code point order (U+FFFF
    against U+10000), NFC against NFD, duplicates (jsonb keeps the last), an escaped NUL-looking
    text, -0, 1e-5 and 1.0E+2 as written: sealed, both verifiers agree and find nothing."""
    writer = connect("app_writer")
    payloads = [
        '{"\uffff": 1, "\U00010000": 2, "\u00e9": 3, "e\u0301": 4, "z": 5, "\u00ff": 6}',
        '{"a": 1, "a": 2, "A": 3, "\u2028": "\\u2028", "x": "\\\\u0000"}',
        '{"n": -0, "m": -0.0, "e": 1e-5, "E": 1.0E+2, "big": 123456789012345678901234567890}',
        '{"deep": ' + '[' * 200 + ']' * 200 + '}',
        '{"\\ud83d\\ude00": "\\ud83d\\ude00", "tab\\tkey": "\\b\\f\\n\\r\\t\\u001f\\u007f"}',
    ]
    for p in payloads:
        writer.execute("SELECT audit.record('app.keys', payload => %s::jsonb)", (p,))
    assert seal(db).sealed >= len(payloads)
    both_verifiers_ok(db)
    stored = db.execute("SELECT payload FROM audit.events WHERE kind = 'app.keys' ORDER BY seq").fetchall()
    assert stored[1][0]["a"] == 2


def test_c5_an_update_of_keys_that_sort_oddly_pairs_rows_and_verifies(db, connect, attacker):
    """A tracked table keyed by text whose values sort differently under the database's collation,
    C, and UTF-16: an UPDATE of several rows at once pairs each old row with its own new one."""
    attacker.execute("CREATE TABLE public.oddkeys (k text PRIMARY KEY, v int)")
    keys = ["\uffff", "\U00010000", "\u00e9", "e\u0301", "a", "B", "\u2028"]
    enable_tracking(connect("app_maintainer"), "public.oddkeys")
    for i, k in enumerate(keys):
        attacker.execute("INSERT INTO public.oddkeys VALUES (%s, %s)", (k, i))
    attacker.execute("UPDATE public.oddkeys SET v = v + 100")
    rows = db.execute("SELECT target_id, row_before->>'v', row_after->>'v', row_after->>'k' FROM audit.events"
                      " WHERE kind = 'public.oddkeys.update'").fetchall()
    assert len(rows) == len(keys)
    for _target, before, after, k in rows:
        assert int(after) == int(before) + 100
        assert keys[int(before)] == k
    seal(db)
    both_verifiers_ok(db)


# --- 5. The sealer against a writer's transaction --------------------------------------------------------

def test_c2_an_open_writer_transaction_on_a_left_partition_is_not_lost_to_the_rotation(db, connect):
    """A writer takes an intake id, stays open (idle in transaction, READ COMMITTED: no xmin shown),
    writers move on to the next intake partition, the sealer drains and tries to TRUNCATE the old
    one. The open writer's event must survive its commit and be sealed."""
    db.execute("GRANT pg_read_all_stats TO audit_sealer") if db.execute(
        "SELECT NOT pg_has_role('audit_sealer', 'pg_read_all_stats', 'USAGE')").fetchone()[0] else None
    slow = connect("app_writer", autocommit=False)
    slow.execute("SELECT audit.record('app.slow')")
    slow_id = db.execute("SELECT pg_sequence_last_value('audit.event_intake_intake_id_seq')").fetchone()[0]
    # Move the writers on to the next partition.
    db.execute("SELECT setval('audit.event_intake_intake_id_seq', (%s / 16384 + 1) * 16384 + 1)", (slow_id,))
    writer = connect("app_writer")
    writer.execute("SELECT audit.record('app.fast')")
    for _ in range(3):
        seal(db)
    slow.commit()
    for _ in range(3):
        seal(db)
    kinds = [r[0] for r in db.execute("SELECT kind FROM audit.event_log WHERE kind LIKE 'app.%' ORDER BY seq")]
    assert sorted(kinds) == ["app.fast", "app.slow"], kinds
    both_verifiers_ok(db)
