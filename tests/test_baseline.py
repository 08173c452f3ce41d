"""enable_tracking with a baseline: the rows a table holds when tracking starts, imaged as
<prefix>.baseline events read by the capture role itself, so that row_as_of and row_state_as_of
know a row from before tracking, and know a key that was not there."""

from __future__ import annotations

import asyncio
import hashlib
import json

import psycopg
import pytest

from pgaudit_py import (
    InvalidArgument,
    InvalidKind,
    InvalidTarget,
    aio,
    audit_context,
    enable_tracking,
    prune_events,
    row_history,
    row_state_as_of,
    seal,
)
from pgaudit_py.errors import translated


def now(db):
    return db.execute("SELECT clock_timestamp()").fetchone()[0]


def baseline_events(db, prefix: str) -> list[tuple]:
    return db.execute("SELECT target_id, row_after, actor_id, origin FROM audit.events WHERE kind = %s"
                      " ORDER BY target_id::int", (prefix + ".baseline",)).fetchall()


def test_a_baseline_images_every_row_and_row_state_knows_what_was_not_there(db, connect, attacker):
    attacker.execute("CREATE TABLE public.stock (id int PRIMARY KEY, qty int, secret text, note text)")
    attacker.execute("INSERT INTO public.stock VALUES (1, 5, 's1', 'a'), (2, 7, 's2', 'b')")
    maintainer = connect("app_maintainer")
    entry = enable_tracking(maintainer, "public.stock", redact_columns=["secret"], exclude_columns=["note"],
                            baseline=True)
    tracked = now(db)
    assert entry.baseline_at is not None and entry.baseline_at <= tracked
    assert baseline_events(db, "public.stock") == [
        ("1", {"id": 1, "qty": 5, "secret": "[redacted]"}, "app_maintainer", "capture"),
        ("2", {"id": 2, "qty": 7, "secret": "[redacted]"}, "app_maintainer", "capture")]
    assert db.execute("SELECT payload FROM audit.events WHERE kind = 'audit.tracking_baseline'").fetchall() == [
        ({"rows": 2, "kind": "public.stock.baseline"},)]
    attacker.execute("UPDATE public.stock SET qty = 6 WHERE id = 1")
    attacker.execute("INSERT INTO public.stock VALUES (3, 1, 's3', 'c')")
    after = now(db)
    seal(db)
    reader = connect("app_reader")

    def state(key: str, at) -> tuple[str, dict | None]:
        found = row_state_as_of(reader, "public.stock", key, at)
        return found.state, found.image

    assert state("1", tracked) == ("existed", {"id": 1, "qty": 5, "secret": "[redacted]"})
    assert state("1", after) == ("existed", {"id": 1, "qty": 6, "secret": "[redacted]"})
    assert state("2", after) == ("existed", {"id": 2, "qty": 7, "secret": "[redacted]"})  # unchanged since
    assert state("3", tracked) == ("absent", None)
    assert state("4", after) == ("absent", None)  # not in the baseline, never inserted: it was not there
    assert [e.kind for e in row_history(reader, "public.stock", "1")] == ["public.stock.baseline", "public.stock.update"]
    # The sandbox could read the table for the call only; the capture role never could.
    assert db.execute("SELECT has_table_privilege('audit_sandbox', 'public.stock', 'SELECT'),"
                      " has_table_privilege('audit_capture', 'public.stock', 'SELECT')").fetchone() == (False, False)
    # Nobody writes these kinds by hand.
    with pytest.raises(InvalidKind, match="belongs to the captured changes of tracked table"), translated():
        connect("app_writer").execute("SELECT audit.record('public.stock.baseline', target_type => 'public.stock',"
                                      " target_id => '4')")


def test_a_baseline_covers_every_partition_and_every_page(db, connect, attacker):
    attacker.execute("CREATE TABLE public.m (id int PRIMARY KEY, pad text) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.m_low PARTITION OF public.m FOR VALUES FROM (0) TO (5000)")
    attacker.execute("CREATE TABLE public.m_high PARTITION OF public.m FOR VALUES FROM (5000) TO (20000)")
    # ~600 pages: the baseline reads 128 at a time
    attacker.execute("INSERT INTO public.m SELECT g, repeat('x', 300) FROM generate_series(1, 15000) g")
    enable_tracking(connect("app_maintainer"), "public.m", baseline=True)
    assert db.execute("SELECT count(*), count(DISTINCT target_id), min(target_id::int), max(target_id::int)"
                      " FROM audit.event_intake WHERE kind = 'public.m.baseline'").fetchone() == (15000, 15000, 1, 15000)
    seal(db, max_events=100_000)
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)


def test_the_owner_takes_another_baseline_through_enable_tracking(db, connect, attacker):
    """A table already tracked gets a baseline when its owner asks (docs/capture.md): which is why
    its proof and a direct call of _take_baseline give it nothing more (trial 99, b3)."""
    attacker.execute("CREATE TABLE public.again (id int PRIMARY KEY, v int); INSERT INTO public.again VALUES (1, 1)")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.again")
    assert baseline_events(db, "public.again") == []
    with audit_context(maintainer, actor_id="ops"):
        enable_tracking(maintainer, "public.again", baseline=True)
    assert [(key, actor) for key, _, actor, _ in baseline_events(db, "public.again")] == [("1", "ops")]


def test_without_a_baseline_nothing_is_imaged(db, connect, attacker):
    attacker.execute("CREATE TABLE public.plain (id int PRIMARY KEY)")
    attacker.execute("INSERT INTO public.plain VALUES (1)")
    entry = enable_tracking(connect("app_maintainer"), "public.plain")
    assert entry.baseline_at is None and baseline_events(db, "public.plain") == []
    assert row_state_as_of(connect("app_reader"), "public.plain", "2", now(db)).state == "unknown"


def test_row_level_security_is_refused_and_nothing_is_half_done(db, connect, attacker):
    """Policies would decide which rows the baseline shows."""
    attacker.execute("CREATE TABLE public.private (id int PRIMARY KEY, owner text)")
    attacker.execute("INSERT INTO public.private VALUES (1, 'x')")
    attacker.execute("ALTER TABLE public.private ENABLE ROW LEVEL SECURITY")
    attacker.execute("CREATE POLICY mine ON public.private USING (owner = current_user)")
    with pytest.raises(InvalidTarget, match="row-level security"):
        enable_tracking(connect("app_maintainer"), "public.private", baseline=True)
    assert db.execute("SELECT count(*) FROM audit.tracked_tables").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM audit.event_intake WHERE kind LIKE 'public.private.%'").fetchone() == (0,)
    assert db.execute("SELECT has_table_privilege('audit_sandbox', 'public.private', 'SELECT')").fetchone() == (False,)


def test_a_schema_the_capture_role_may_not_use_is_named_with_the_grant_that_allows_it(db, connect, attacker):
    db.execute("CREATE SCHEMA closed AUTHORIZATION table_owner")
    attacker.execute("CREATE TABLE closed.t (id int PRIMARY KEY)")
    with pytest.raises(InvalidTarget, match="may not use its schema") as raised:
        enable_tracking(connect("app_maintainer"), "closed.t", baseline=True)
    assert "GRANT USAGE ON SCHEMA closed TO audit_sandbox" in str(raised.value.hint)
    attacker.execute("GRANT USAGE ON SCHEMA closed TO audit_sandbox")
    attacker.execute("INSERT INTO closed.t VALUES (1)")
    assert enable_tracking(connect("app_maintainer"), "closed.t", baseline=True).baseline_at is not None
    assert len(baseline_events(db, "closed.t")) == 1


def test_no_maintainer_writes_a_baseline_of_its_own_making(db, connect, attacker):
    """The rows come from the table, read by the capture role under enable_tracking's lock; the
    moment a baseline was taken is set by the capture role only."""
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY, balance int)")
    attacker.execute("INSERT INTO public.acct VALUES (1, 100)")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.acct")
    # Outside enable_tracking, without its lock: refused (a baseline read while writers write could
    # come after their changes in the log and hide them).
    attacker.execute("GRANT SELECT ON public.acct TO audit_sandbox")
    with pytest.raises(InvalidArgument, match="while writers are locked out"), translated():
        maintainer.execute("SELECT audit_capture._take_baseline('public.acct'::regclass, md5(1::text)::uuid)")
    for forged in ("SELECT audit._baseline_taken('public.acct'::regclass, 0, now())",
                   "UPDATE audit.tracked_tables SET baseline_at = now()",
                   "INSERT INTO audit.event_intake (kind, target_type, target_id, outcome, origin, row_after)"
                   " VALUES ('public.acct.baseline', 'public.acct', '1', 'success', 'capture', '{}')"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            maintainer.execute(forged)
    assert db.execute("SELECT baseline_at FROM audit.tracked_tables").fetchone() == (None,)
    assert baseline_events(db, "public.acct") == []
    # Under the lock, by a maintainer that may write the table but does not own it: refused, whatever
    # actor it names (trial 98, f5); by its owner, outside enable_tracking, too: no proof was made.
    db.execute("CREATE ROLE other_maintainer LOGIN IN ROLE audit_maintainer")
    try:
        attacker.execute("GRANT SELECT, UPDATE ON public.acct TO PUBLIC")
        for who in (connect("other_maintainer"), maintainer):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner of table public.acct"):
                who.execute("BEGIN; SELECT set_config('pgaudit_py.actor_id', 'the-owner-team', true);"
                            " LOCK public.acct IN SHARE MODE;"
                            " SELECT audit_capture._take_baseline('public.acct'::regclass, md5(1::text)::uuid)")
            who.execute("ROLLBACK")
        # The owner's proof, then SET ROLE to the one that owns nothing: the proof is not its own
        # (trial 100, b2), and the events would have named it as db_role.
        db.execute("GRANT other_maintainer TO app_maintainer")
        try:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner of table public.acct"):
                maintainer.execute("BEGIN; SELECT audit._prove_owner('public.acct'::regclass, md5(1::text)::uuid);"
                                   " SET LOCAL ROLE other_maintainer; LOCK public.acct IN SHARE MODE;"
                                   " SELECT audit_capture._take_baseline('public.acct'::regclass, md5(1::text)::uuid)")
        finally:
            maintainer.execute("ROLLBACK")
    finally:
        db.execute("DROP ROLE other_maintainer")
    assert db.execute("SELECT baseline_at FROM audit.tracked_tables").fetchone() == (None,)
    assert baseline_events(db, "public.acct") == []
    # A table it does not track: refused.
    attacker.execute("CREATE TABLE public.other (id int PRIMARY KEY)")
    with pytest.raises(InvalidTarget, match="is not tracked"), translated():
        maintainer.execute("BEGIN; LOCK public.other IN SHARE MODE;"
                           " SELECT audit_capture._take_baseline('public.other'::regclass, md5(1::text)::uuid)")


def test_reading_the_table_runs_none_of_its_owners_code_with_a_right_to_write_the_log(db, connect, attacker):
    """Index expressions and predicates, defaults, checks and generated columns of the owner's
    functions: none runs as the capture role (public.spy reports who runs it)."""
    attacker.execute("CREATE FUNCTION public.spied(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql"
                     " AS $$ BEGIN PERFORM public.spy('baseline'); RETURN x; END $$")
    attacker.execute("CREATE TABLE public.watched (id int PRIMARY KEY, a int DEFAULT public.spied(1)"
                     " CHECK (public.spied(a) IS NOT NULL), g int GENERATED ALWAYS AS (public.spied(id)) STORED)")
    attacker.execute("CREATE INDEX ON public.watched (public.spied(a))")
    attacker.execute("CREATE INDEX ON public.watched (a) WHERE public.spied(a) > 0")
    attacker.execute("INSERT INTO public.watched (id) SELECT generate_series(1, 50)")
    db.execute("DELETE FROM public.who_ran")
    enable_tracking(connect("app_maintainer"), "public.watched", baseline=True)
    assert db.execute("SELECT who, forged FROM public.who_ran WHERE forged OR who <> 'audit_sandbox'").fetchall() == []
    assert len(baseline_events(db, "public.watched")) == 50


@pytest.mark.parametrize("where", ["index expression", "index predicate", "check constraint", "statistics"])
def test_code_the_planner_folds_runs_in_the_sandbox(db, connect, attacker, where):
    """An immutable function of constant arguments is run by the planner of any query on the table
    (found by an attacker's review): it must find no role that may write the log."""
    attacker.execute("CREATE FUNCTION public.folded(x int) RETURNS int IMMUTABLE LANGUAGE plpgsql"
                     " AS $$ BEGIN PERFORM public.spy('folded'); RETURN x; END $$")
    attacker.execute("CREATE TABLE public.w (id int PRIMARY KEY, a int)")
    attacker.execute("INSERT INTO public.w SELECT g, g FROM generate_series(1, 20) g")
    attacker.execute({"index expression": "CREATE INDEX ON public.w ((a + public.folded(1)))",
                      "index predicate": "CREATE INDEX ON public.w (a) WHERE public.folded(1) > 0",
                      "check constraint": "ALTER TABLE public.w ADD CONSTRAINT c CHECK (a > public.folded(-1))",
                      "statistics": "CREATE STATISTICS s ON (a + public.folded(1)), id FROM public.w"}[where])
    attacker.execute("ANALYZE public.w")
    db.execute("DELETE FROM public.who_ran")
    maintainer = connect("app_maintainer")  # a fresh session: nothing of the table cached yet
    maintainer.execute("SET constraint_exclusion = on")
    enable_tracking(maintainer, "public.w", baseline=True)
    assert db.execute("SELECT who, forged FROM public.who_ran WHERE forged OR who <> 'audit_sandbox'").fetchall() == []
    assert len(baseline_events(db, "public.w")) == 20


def test_a_baseline_is_taken_at_read_committed_only(db, connect, attacker):
    """At REPEATABLE READ the transaction's snapshot may predate the lock: the baseline would show
    rows as they were before changes captured ahead of it (found by an attacker's review)."""
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY, balance int)")
    attacker.execute("INSERT INTO public.acct VALUES (1, 100), (2, 5)")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.acct")
    late = connect("app_maintainer", autocommit=False)
    late.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
    late.execute("SELECT 1")  # the transaction's snapshot
    attacker.execute("UPDATE public.acct SET balance = 0 WHERE id = 1")  # captured
    with pytest.raises(InvalidArgument, match="a baseline is taken at READ COMMITTED, not repeatable read"), \
            translated():
        late.execute("SELECT audit.enable_tracking('public.acct', baseline => true)")
    late.rollback()
    assert baseline_events(db, "public.acct") == []


def test_a_partition_attached_with_rows_ends_what_the_baseline_can_say(db, connect, attacker):
    """Rows of an attached table arrive with no event: after that, a key with no event is no longer
    known to be absent. A new, empty partition changes nothing."""
    attacker.execute("CREATE TABLE public.p (id int PRIMARY KEY) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.p1 PARTITION OF public.p FOR VALUES FROM (0) TO (100)")
    attacker.execute("INSERT INTO public.p VALUES (1)")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.p", baseline=True)
    # Partitions come from a maintainer who owns them (their capture triggers are attached as it).
    maintainer.execute("CREATE TABLE public.p2 PARTITION OF public.p FOR VALUES FROM (100) TO (200)")
    reader = connect("app_reader")
    assert row_state_as_of(reader, "public.p", "150", now(db)).state == "absent"
    maintainer.execute("CREATE TABLE public.p3 (id int PRIMARY KEY)")
    maintainer.execute("INSERT INTO public.p3 VALUES (250)")
    maintainer.execute("ALTER TABLE public.p ATTACH PARTITION public.p3 FOR VALUES FROM (200) TO (300)")
    assert db.execute("SELECT baseline_at FROM audit.tracked_tables").fetchone() == (None,)
    assert row_state_as_of(reader, "public.p", "250", now(db)).state == "unknown"  # it is there, with no event
    assert row_state_as_of(reader, "public.p", "1", now(db)).state == "existed"


def test_a_baseline_needs_every_partition_locked(db, connect, attacker):
    """LOCK ONLY the parent leaves the partitions writable while the baseline reads them."""
    attacker.execute("CREATE TABLE public.p (id int PRIMARY KEY) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.p1 PARTITION OF public.p FOR VALUES FROM (0) TO (100)")
    maintainer = connect("app_maintainer")
    enable_tracking(maintainer, "public.p")
    attacker.execute("GRANT SELECT ON public.p, public.p1 TO audit_sandbox")
    with pytest.raises(InvalidArgument, match="while writers are locked out"), translated():
        maintainer.execute("BEGIN; LOCK ONLY public.p IN SHARE MODE;"
                           " SELECT audit_capture._take_baseline('public.p'::regclass, md5(1::text)::uuid)")


def test_after_a_prune_past_the_baseline_a_key_without_events_is_unknown_again(db, connect, attacker):
    """The baseline image of a row that never changed may be pruned: its absence then says nothing."""
    attacker.execute("CREATE TABLE public.stock (id int PRIMARY KEY)")
    attacker.execute("INSERT INTO public.stock VALUES (1)")
    enable_tracking(connect("app_maintainer"), "public.stock", baseline=True)
    seal(db)
    reader = connect("app_reader")
    assert row_state_as_of(reader, "public.stock", "1", now(db)).state == "existed"
    assert row_state_as_of(reader, "public.stock", "2", now(db)).state == "absent"
    assert prune_events(connect("app_maintainer"), "1 microsecond").deleted > 0
    assert row_state_as_of(reader, "public.stock", "1", now(db)).state == "unknown"
    assert row_state_as_of(reader, "public.stock", "2", now(db)).state == "unknown"


def test_a_baseline_of_rows_past_256_mb_images_each_row(db, connect, attacker):
    """The sandbox read 128 pages of rows into one jsonb: 260 rows of 1.1 MB (a few kB each once
    compressed, all in one page range) failed the baseline at PostgreSQL's 256 MB for a jsonb, and
    gigabytes of them would all have been held in memory at once. It returns one image a row now."""
    attacker.execute("CREATE TABLE public.scans (id int PRIMARY KEY, doc text)")
    attacker.execute("INSERT INTO public.scans SELECT g, repeat(md5(g::text), 34375) FROM generate_series(1, 260) g")
    enable_tracking(connect("app_maintainer"), "public.scans", baseline=True)
    printed = json.dumps(hashlib.md5(b"7").hexdigest() * 34375).encode()
    marker = {"$omitted": {"bytes": len(printed), "sha256": hashlib.sha256(printed).hexdigest()}}
    events = baseline_events(db, "public.scans")
    assert len(events) == 260 and {e[0] for e in events} == {str(i) for i in range(1, 261)}
    assert events[6][:2] == ("7", {"id": 7, "doc": marker})
    assert db.execute("SELECT payload FROM audit.events WHERE kind = 'audit.tracking_baseline'").fetchone() == (
        {"rows": 260, "kind": "public.scans.baseline"},)


@pytest.mark.parametrize("level", ["repeatable read", "serializable"])
def test_a_baseline_from_python_begins_its_transaction_at_read_committed_whatever_the_default(db, connect, attacker,
                                                                                             level):
    """A maintainer whose role's default isolation is another (trial 76): the Python call that begins
    the transaction begins it at READ COMMITTED, and the baseline images every row."""
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY, balance int)")
    attacker.execute("INSERT INTO public.acct VALUES (1, 100), (2, 5)")
    maintainer = connect("app_maintainer")
    maintainer.execute("SELECT set_config('default_transaction_isolation', %s, false)", [level])
    enable_tracking(maintainer, "public.acct", baseline=True)
    assert len(baseline_events(db, "public.acct")) == 2


def test_a_baseline_and_a_seal_from_asyncio_begin_at_read_committed_whatever_the_default(db, attacker):
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY, balance int)")
    attacker.execute("INSERT INTO public.acct VALUES (1, 100), (2, 5)")
    i = db.info

    async def main() -> int:
        async with await psycopg.AsyncConnection.connect(host=i.host, port=i.port, dbname=i.dbname,
                                                         user="app_maintainer", autocommit=True) as conn:
            await conn.execute("SELECT set_config('default_transaction_isolation', 'serializable', false)")
            await aio.enable_tracking(conn, "public.acct", baseline=True)
            return (await aio.seal(conn)).sealed

    assert asyncio.run(main()) > 0
    assert len(baseline_events(db, "public.acct")) == 2
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)  # every event sealed
