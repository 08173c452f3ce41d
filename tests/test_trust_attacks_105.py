"""A hundred-and-fifth attacker's trial: variants nobody tried against the mends of trials 103 and 104
(`_cover_partition` consumes an owner proof; proofs carry their role's oid; the package's own JSON
loaders bound to json.loads, the wrappers' JSON maps cached per loader and JSON function).

Classes (test names carry the letter):
  P. partitions: a maintainer proving for one partition (or the tree, or a table of its own) and
     covering another it does not own; partitions of one tracked tree owned by different roles, then
     a partition added by the tree's maintainer (the legit one covered, another owner's uncovered one
     not silently left uncaptured); ATTACH of a table with rows; multi-level trees with a level given
     to a plain login; DETACH and re-ATTACH.
  R. role names and membership: owners whose names need quotes (mixed case, spaces, unicode, 63
     bytes) through every maintainer function; tables owned by a group, membership revoked (directly
     or one level up) between proof and use, ownership moved to another group the prover belongs to,
     a proof made by one member of the owning group consumed for a baseline taken by another.
  J. the caller's JSON loader: JSON functions changed between calls globally and per connection and
     back, a loader class whose `_loads` changes after the first call, a loader class that overrides
     load() itself, unhashable JSON functions, JSON functions that compare equal but read differently,
     more than 64 loaders (cache eviction), threads with different loaders at once, the aio API; and
     the package's own reads (install, status, seal, both verifiers) under such global JSON functions.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects and roles made here are prefixed t105_; roles are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import json
import threading
from contextlib import suppress
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg.types.json import JsonbLoader, JsonLoader, set_json_loads
from trial_helpers import (
    both_verifiers,
    drop_made_under,
    reinstall,
    seal_all,
    table_owner_kit,
)

from pgaudit_py import (
    aio,
    disable_rate_limit,
    disable_tracking,
    enable_rate_limit,
    enable_tracking,
    list_events,
    record,
    row_as_of,
    status,
)

DENIED = "42501"


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t105") as k:
        yield k
    for t in ("t105_pt", "t105_px", "t105_sub"):
        db.execute(f"DROP TABLE IF EXISTS public.{t} CASCADE")
    drop_made_under(db, "t105_")


def sqlstate(conn, statements: list[str], params=None) -> str | None:
    """BEGIN; each statement; COMMIT when all ran, else ROLLBACK; the first failure's SQLSTATE."""
    conn.execute("BEGIN")
    st = None
    try:
        for s in statements:
            try:
                conn.execute(s, params if "%s" in s else None)
            except psycopg.Error as e:
                st = e.sqlstate or "?"
                break
    finally:
        conn.execute("COMMIT" if st is None else "ROLLBACK")
    return st


def capture_triggers(db, table: str) -> int:
    return db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND NOT tgisinternal"
                      " AND tgname LIKE 'audit_capture_%%'", [table]).fetchone()[0]


def added_for(db, part: str) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_added'"
                      " AND target_id = %s", [part]).fetchone()[0]


def events_of(db, prefix: str, key: int) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE starts_with(kind, %s) AND target_id = %s",
                      [prefix, str(key)]).fetchone()[0]


@pytest.fixture
def triggers_off(db):
    """Turn the enabled event triggers off (as on a non-superuser install) while the body runs."""
    names = [r[0] for r in db.execute("SELECT evtname FROM pg_event_trigger WHERE evtenabled <> 'D'")]

    class Off:
        def __enter__(self):
            for t in names:
                db.execute(f'ALTER EVENT TRIGGER "{t}" DISABLE')

        def __exit__(self, *exc):
            for t in names:
                db.execute(f'ALTER EVENT TRIGGER "{t}" ENABLE')
    return Off()


def tree(kit, baseline: bool = True) -> None:
    kit.owner.execute("""CREATE TABLE public.t105_pt (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);
                         CREATE TABLE public.t105_pt1 PARTITION OF public.t105_pt FOR VALUES FROM (0) TO (100);
                         INSERT INTO public.t105_pt VALUES (1, 1);
                         GRANT ALL ON public.t105_pt TO app_writer""")
    enable_tracking(kit.maint, "public.t105_pt", baseline=baseline)


# ================================ P: partitions ================================

def test_p1_a_proof_for_one_table_covers_no_other(kit, db, triggers_off):
    """Attack: a partition of t105_owner's tracked tree arrives owned by t105_mallory (event triggers
    off, then OWNER TO by the superuser); the maintainer (a member of t105_owner) proves it owns the
    sibling partition, the tree, and a table of its own, then in the same transaction calls
    `_cover_partition` on mallory's partition. Safe: 42501 each time; no tracked_partition_added;
    the baseline stays. roles.md: "Covering a new partition is such a helper too: the role adding it
    proves that it owns it"."""
    tree(kit)
    with triggers_off:
        kit.owner.execute("CREATE TABLE public.t105_pt2 PARTITION OF public.t105_pt FOR VALUES FROM (100) TO (200);"
                          " INSERT INTO public.t105_pt2 VALUES (150, 1)")
        db.execute("ALTER TABLE public.t105_pt2 OWNER TO t105_mallory")
    kit.maint.execute("CREATE TABLE public.t105_mine (id int)")
    base0 = db.execute("SELECT baseline_at FROM audit.tracked_tables WHERE relid = 'public.t105_pt'::regclass").fetchone()
    cover = "SELECT audit._cover_partition('public.t105_pt2'::regclass, md5(1::text)::uuid)"
    results = {src: sqlstate(kit.maint, [f"SELECT audit._prove_owner('{src}'::regclass, md5(1::text)::uuid)", cover])
               for src in ("public.t105_pt1", "public.t105_pt", "public.t105_mine")}
    results["own proof"] = sqlstate(kit.maint, ["SELECT audit._prove_owner('public.t105_pt2'::regclass, md5(1::text)::uuid)", cover])
    base1 = db.execute("SELECT baseline_at FROM audit.tracked_tables WHERE relid = 'public.t105_pt'::regclass").fetchone()
    assert added_for(db, "public.t105_pt2") == 0, f"covered with another table's proof: {results}"
    assert base1 == base0
    assert all(v == DENIED for v in results.values()), results


def test_p2_a_tree_with_partitions_of_other_owners_still_takes_a_maintainers_partition(kit, db):
    """Attack (the legit path around it): t105_pt1 of a tracked tree is given to t105_mallory by the
    superuser (it keeps its triggers); the maintainer then adds t105_pt3 (owned by itself). Safe: pt3
    is covered at once (four triggers, tracked_partition_added), a write to it and to pt1 are both
    captured. capture.md: "A partition created or attached later is covered at once, as the role that
    ran the DDL, which must hold the maintainer role and own it"."""
    tree(kit)
    db.execute("ALTER TABLE public.t105_pt1 OWNER TO t105_mallory")
    err = None
    try:
        kit.maint.execute("CREATE TABLE public.t105_pt3 PARTITION OF public.t105_pt FOR VALUES FROM (300) TO (400)")
    except psycopg.Error as e:
        err = f"{e.sqlstate}: {str(e).splitlines()[0]}"
    assert err is None, f"a maintainer owning the tree could not add a partition: {err}"
    kit.writer.execute("INSERT INTO public.t105_pt VALUES (350, 1), (2, 2)")
    assert capture_triggers(db, "public.t105_pt3") == 4
    assert added_for(db, "public.t105_pt3") == 1
    assert (events_of(db, "public.t105_pt.", 350), events_of(db, "public.t105_pt.", 2)) == (1, 1)
    assert both_verifiers(db) == (True, True)


def test_p3_another_owners_uncovered_partition_is_not_silently_left(kit, db, triggers_off):
    """Attack: an uncovered partition (made while the event triggers were off) belongs to t105_mallory;
    the tree's maintainer then adds a partition of its own, which runs the partition event trigger over
    every uncovered partition of the tree. Safe: either the DDL is refused (PA008), or mallory's
    partition is covered, or status names it: never the DDL passing with that partition still
    uncaptured and nothing said. capture.md: "Every partition, at every level, carries capture triggers
    of its own"."""
    tree(kit)
    with triggers_off:
        kit.owner.execute("CREATE TABLE public.t105_pt2 PARTITION OF public.t105_pt FOR VALUES FROM (100) TO (200)")
        db.execute("ALTER TABLE public.t105_pt2 OWNER TO t105_mallory")
    err = None
    try:
        kit.maint.execute("CREATE TABLE public.t105_pt3 PARTITION OF public.t105_pt FOR VALUES FROM (300) TO (400)")
    except psycopg.Error as e:
        err = e.sqlstate
    covered = capture_triggers(db, "public.t105_pt2") == 4
    named = any("t105_pt2" in p for p in status(db).problems)
    assert err is not None or covered or named, "the DDL passed, t105_pt2 stays uncaptured, status says nothing"
    if err is not None:
        assert err == "PA008", err


def test_p4_attach_with_rows_multi_level_and_detach_reattach(kit, db):
    """Attack (legit paths): the maintainer attaches a table of its own holding rows (the baseline must
    go); adds a sub-partitioned level and a leaf under it; detaches a partition and attaches it back.
    Safe: each covered (four triggers), named in tracked_partition_added/removed, writes to each
    captured; both verifiers agree. capture.md: "a partition detached or dropped is recorded too"."""
    tree(kit)
    m = kit.maint
    m.execute("CREATE TABLE public.t105_pa (id int PRIMARY KEY, v int); INSERT INTO public.t105_pa VALUES (500, 1);"
              " ALTER TABLE public.t105_pt ATTACH PARTITION public.t105_pa FOR VALUES FROM (500) TO (600)")
    base = db.execute("SELECT baseline_at FROM audit.tracked_tables WHERE relid = 'public.t105_pt'::regclass").fetchone()[0]
    m.execute("CREATE TABLE public.t105_sub PARTITION OF public.t105_pt FOR VALUES FROM (1000) TO (2000)"
              " PARTITION BY RANGE (id);"
              " CREATE TABLE public.t105_leaf PARTITION OF public.t105_sub FOR VALUES FROM (1000) TO (1500)")
    m.execute("ALTER TABLE public.t105_pt DETACH PARTITION public.t105_pt1")
    removed = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.tracked_partition_removed'"
                         " AND target_id = 'public.t105_pt1'").fetchone()[0]
    m.execute("ALTER TABLE public.t105_pt ATTACH PARTITION public.t105_pt1 FOR VALUES FROM (0) TO (100)")
    kit.writer.execute("INSERT INTO public.t105_pt VALUES (3, 1), (510, 1), (1200, 1)")
    got = {t: (capture_triggers(db, f"public.{t}"), added_for(db, f"public.{t}"))
           for t in ("t105_pa", "t105_sub", "t105_leaf", "t105_pt1")}
    assert base is None, "a partition brought rows and the baseline stayed"
    assert removed == 1
    assert all(n == 4 and a >= 1 for n, a in got.values()), got
    assert [events_of(db, "public.t105_pt.", k) for k in (3, 510, 1200)] == [1, 1, 1]
    assert both_verifiers(db) == (True, True)


def test_p5_a_plain_login_owning_a_middle_level_adds_no_uncaptured_leaf(kit, db):
    """Attack: the superuser gives a sub-partitioned level of the tracked tree to t105_mallory (no
    maintainer); mallory creates a leaf under it, and attaches a table of hers with rows. Safe: both
    refused (PA008), no leaf of the tree without capture triggers. capture.md: "which must hold the
    maintainer role and own it (...anyone else is refused with `PA008`)"."""
    tree(kit)
    kit.maint.execute("CREATE TABLE public.t105_sub PARTITION OF public.t105_pt FOR VALUES FROM (1000) TO (2000)"
                      " PARTITION BY RANGE (id)")
    db.execute("ALTER TABLE public.t105_sub OWNER TO t105_mallory")
    a = sqlstate(kit.mallory, ["CREATE TABLE public.t105_leaf PARTITION OF public.t105_sub FOR VALUES FROM (1000) TO (1500)"])
    b = sqlstate(kit.mallory, ["CREATE TABLE public.t105_mx (id int PRIMARY KEY, v int)",
                               "INSERT INTO public.t105_mx VALUES (1600, 1)",
                               "ALTER TABLE public.t105_sub ATTACH PARTITION public.t105_mx FOR VALUES FROM (1500) TO (2000)"])
    leaves = db.execute("""SELECT c.relname FROM pg_partition_tree('public.t105_pt') p JOIN pg_class c ON c.oid = p.relid
                           WHERE NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = p.relid
                                             AND g.tgname = 'audit_capture_insert')""").fetchall()
    assert (a, b) == ("PA008", "PA008"), (a, b)
    assert leaves == []


def test_p6_the_installers_catch_up_covers_another_owners_uncovered_partition(kit, db, triggers_off):
    """Attack: an uncovered partition of a tracked tree (event triggers off) is given to t105_mallory;
    the superuser runs the installer again, whose catch-up proves as itself. Safe: the partition is
    covered (four triggers, tracked_partition_added naming it), a write to it is captured, and status
    then names no problem about it. capture.md: "Every partition, at every level, carries capture
    triggers of its own"."""
    tree(kit)
    with triggers_off:
        kit.owner.execute("CREATE TABLE public.t105_pt2 PARTITION OF public.t105_pt FOR VALUES FROM (100) TO (200)")
        db.execute("ALTER TABLE public.t105_pt2 OWNER TO t105_mallory")
    err = reinstall(db)
    kit.writer.execute("INSERT INTO public.t105_pt VALUES (150, 1)")
    assert err is None, err
    assert (capture_triggers(db, "public.t105_pt2"), added_for(db, "public.t105_pt2")) == (4, 1)
    assert events_of(db, "public.t105_pt.", 150) == 1
    assert not any("t105_pt2" in p for p in status(db).problems)


def test_p7_the_owner_role_without_the_maintainer_role_adds_no_partition(kit, db):
    """Attack: the maintainer, under SET ROLE t105_owner (owning the tree, no maintainer), creates and
    attaches partitions of the tracked tree. Safe: both refused (PA008); no partition of the tree
    without capture triggers. capture.md: "which must hold the maintainer role and own it (...anyone
    else is refused with `PA008`)"."""
    tree(kit)
    a = sqlstate(kit.maint, ["SET LOCAL ROLE t105_owner",
                             "CREATE TABLE public.t105_pt4 PARTITION OF public.t105_pt FOR VALUES FROM (400) TO (500)"])
    b = sqlstate(kit.maint, ["SET LOCAL ROLE t105_owner", "CREATE TABLE public.t105_pt5 (id int PRIMARY KEY, v int)",
                             "ALTER TABLE public.t105_pt ATTACH PARTITION public.t105_pt5 FOR VALUES FROM (500) TO (600)"])
    bare = db.execute("""SELECT c.relname FROM pg_partition_tree('public.t105_pt') p JOIN pg_class c ON c.oid = p.relid
                         WHERE NOT EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = p.relid
                                           AND g.tgname = 'audit_capture_insert')""").fetchall()
    assert (a, b, bare) == ("PA008", "PA008", [])


@pytest.mark.parametrize("owner", ["t105_owner", "t105_mallory"])
def test_p8_rows_written_to_an_uncovered_partition_clear_the_baseline_at_catch_up(kit, db, triggers_off, owner):
    """Attack: the tracked tree has a baseline; a partition arrives while the event triggers are off
    (owned by the tree's owner, or given to mallory) and takes a row no trigger sees; the superuser
    runs the installer, whose catch-up covers it. Safe: the catch-up records
    audit.tracked_partition_added for it and clears baseline_at (the key 150 has no event: it must
    read `unknown`, not `absent`). capture.md: "A table attached later as a partition brings its rows
    with no event: when it has any pages, `baseline_at` is cleared"; "it is recorded
    (`audit.tracked_partition_added`)"."""
    tree(kit)
    with triggers_off:
        kit.owner.execute("CREATE TABLE public.t105_pt2 PARTITION OF public.t105_pt FOR VALUES FROM (100) TO (200);"
                          " INSERT INTO public.t105_pt2 VALUES (150, 1)")
        if owner != "t105_owner":
            db.execute(f"ALTER TABLE public.t105_pt2 OWNER TO {owner}")
    err = reinstall(db)
    base = db.execute("SELECT baseline_at FROM audit.tracked_tables WHERE relid = 'public.t105_pt'::regclass").fetchone()[0]
    state = db.execute("SELECT state FROM audit.row_state_as_of('public.t105_pt'::regclass, '150', clock_timestamp())"
                       ).fetchone()[0]
    assert err is None, err
    assert capture_triggers(db, "public.t105_pt2") == 4
    assert (added_for(db, "public.t105_pt2"), base, state) == (1, None, "unknown"), \
        f"covered silently: added {added_for(db, 'public.t105_pt2')}, baseline_at {base}, key 150 reads {state}"


def test_p9_covered_on_record_but_no_trigger_attached_is_named(kit, db, triggers_off):
    """Attack: the maintainer makes a partition of the tracked tree while the event triggers are off
    (it owns it), proves and calls `_cover_partition` itself, and never `_attach_capture`: the audit
    trail now says the partition is covered, yet no trigger captures it. A write goes to it. Safe:
    status names the partition (its writes are not captured), so the lie does not stand unseen.
    capture.md: "Every partition, at every level, carries capture triggers of its own"; "it is
    recorded (`audit.tracked_partition_added`)"."""
    tree(kit, baseline=False)
    with triggers_off:
        kit.maint.execute("CREATE TABLE public.t105_pt2 PARTITION OF public.t105_pt FOR VALUES FROM (100) TO (200)")
    st = sqlstate(kit.maint, ["SELECT audit._prove_owner('public.t105_pt2'::regclass, md5(1::text)::uuid)",
                              "SELECT audit._cover_partition('public.t105_pt2'::regclass, md5(1::text)::uuid)"])
    kit.writer.execute("INSERT INTO public.t105_pt VALUES (150, 1)")
    n_trig, n_added = capture_triggers(db, "public.t105_pt2"), added_for(db, "public.t105_pt2")
    named = [p for p in status(db).problems if "t105_pt2" in p]
    assert n_trig == 4 or named or n_added == 0, \
        f"recorded as covered ({st}, {n_added} event), {n_trig} triggers, its write uncaptured, status silent"


# ================================ R: role names and membership ================================

ODD_NAMES = ["t105_Mixed Case", "t105 with space", "t105_ünïcødé", "t105_" + "ä" * 29]  # the last: 63 bytes


@pytest.fixture
def group(db, connect):
    """t105_grp (no login, no maintainer) owns tables; t105_m and t105_n are maintainers in it;
    app_maintainer may SET ROLE to both."""
    db.execute("CREATE ROLE t105_grp; CREATE ROLE t105_m IN ROLE audit_maintainer, t105_grp;"
               " CREATE ROLE t105_n IN ROLE audit_maintainer, t105_grp; CREATE ROLE t105_grp2;"
               " GRANT t105_m, t105_n TO app_maintainer; GRANT CREATE ON SCHEMA public TO t105_grp, t105_m")
    db.execute("CREATE TABLE public.t105_g (id int PRIMARY KEY, v int); INSERT INTO public.t105_g VALUES (1, 1);"
               " GRANT SELECT ON public.t105_g TO audit_sandbox; ALTER TABLE public.t105_g OWNER TO t105_grp")
    yield db
    with suppress(psycopg.Error):
        db.execute("RESET ROLE")
    db.execute("DROP TABLE IF EXISTS public.t105_g CASCADE")
    for i in range(len(ODD_NAMES)):
        db.execute(f"DROP TABLE IF EXISTS public.t105_q{i} CASCADE")
    drop_made_under(db, "t105")


def _baselines(db, table: str) -> list:
    return db.execute("SELECT db_role FROM audit.events WHERE kind = %s", [f"public.{table}.baseline"]).fetchall()


@pytest.mark.parametrize("name", ODD_NAMES)
def test_r1_owners_with_names_needing_quotes_use_every_maintainer_function(group, connect, name):
    """Attack (legit path): a maintainer whose name needs quotes (mixed case, a space, unicode, 63
    bytes) owns a table; as that role: enable_tracking with a baseline, enable_rate_limit,
    disable_rate_limit, disable_tracking. Safe: each works, the baseline's events name the role.
    roles.md: "enable_tracking / disable_tracking / enable_rate_limit / disable_rate_limit on tables it
    owns"."""
    db = group
    ident = psycopg.sql.Identifier(name).as_string(db)
    table = f"t105_q{ODD_NAMES.index(name)}"
    db.execute(f"CREATE ROLE {ident} IN ROLE audit_maintainer; GRANT {ident} TO app_maintainer")
    db.execute(f"CREATE TABLE public.{table} (id int PRIMARY KEY, v int); INSERT INTO public.{table} VALUES (1, 1);"
               f" ALTER TABLE public.{table} OWNER TO {ident}")
    real = db.execute("SELECT rolname FROM pg_roles WHERE rolname LIKE %s", [name[:10] + "%"]).fetchone()[0]
    m = connect("app_maintainer")
    m.execute(f"SET ROLE {ident}")
    done, err = [], None
    try:
        enable_tracking(m, f"public.{table}", baseline=True)
        done.append("enable_tracking")
        enable_rate_limit(m, f"public.{table}", per_user_per_minute=5, per_tenant_per_minute=50)
        done.append("enable_rate_limit")
        disable_rate_limit(m, f"public.{table}")
        done.append("disable_rate_limit")
        disable_tracking(m, f"public.{table}")
        done.append("disable_tracking")
    except Exception as e:  # noqa: BLE001
        err = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        with suppress(psycopg.Error):
            m.execute("ROLLBACK")
    finally:
        with suppress(psycopg.Error):
            m.execute("RESET ROLE")
    who = db.execute("SELECT DISTINCT db_role FROM audit.events WHERE kind = %s", [f"public.{table}.baseline"]).fetchall()
    assert err is None, f"stopped after {done}: {err}"
    assert who == [(real,)], who


@pytest.mark.parametrize("between", ["REVOKE t105_grp FROM t105_m", "chain"])
def test_r2_membership_revoked_between_proof_and_baseline(group, connect, between):
    """Attack: t105_m owns t105_g through the group t105_grp (directly, or through t105_mid); it proves,
    then the superuser revokes the membership that made it an owner, and t105_m locks and takes the
    baseline with the proof it made before. Safe: 42501, no baseline. roles.md: "the helper consumes
    the row, and only while that role still owns the table"."""
    db = group
    enable_tracking(db, "public.t105_g")
    if between == "chain":
        db.execute("REVOKE t105_grp FROM t105_m; CREATE ROLE t105_mid IN ROLE t105_grp; GRANT t105_mid TO t105_m")
        between = "REVOKE t105_grp FROM t105_mid"
    m = connect("app_maintainer")
    m.execute("BEGIN")
    st = None
    try:
        m.execute("SET LOCAL ROLE t105_m")
        m.execute("SELECT audit._prove_owner('public.t105_g'::regclass, md5(1::text)::uuid)")
        db.execute(between)
        try:
            m.execute("LOCK public.t105_g IN SHARE MODE")
            m.execute("SELECT audit_capture._take_baseline('public.t105_g'::regclass, md5(1::text)::uuid)")
        except psycopg.Error as e:
            st = e.sqlstate
    finally:
        m.execute("COMMIT" if st is None else "ROLLBACK")
    assert (st, _baselines(db, "t105_g")) == (DENIED, [])


def test_r3_ownership_moved_to_another_group_of_the_prover_between_statements(group, connect):
    """Attack (legit path): t105_m, in t105_grp and t105_grp2, owns t105_g through t105_grp; between its
    proof and its baseline the superuser gives the table to t105_grp2. Then, after it is out of
    t105_grp, disable_tracking and enable_rate_limit as t105_m. Safe: the baseline is refused, nothing
    taken (since trial 106 a proof serves only the statement that made it); the later calls work.
    roles.md: "only while that role still owns the table under the same name"."""
    db = group
    db.execute("GRANT t105_grp2 TO t105_m")
    enable_tracking(db, "public.t105_g")
    m = connect("app_maintainer")
    st, why = None, None
    m.execute("BEGIN")
    try:
        m.execute("SET LOCAL ROLE t105_m")
        m.execute("SELECT audit._prove_owner('public.t105_g'::regclass, md5(1::text)::uuid)")
        db.execute("ALTER TABLE public.t105_g OWNER TO t105_grp2")
        try:
            m.execute("LOCK public.t105_g IN SHARE MODE")
            m.execute("SELECT audit_capture._take_baseline('public.t105_g'::regclass, md5(1::text)::uuid)")
        except psycopg.Error as e:
            st, why = e.sqlstate, f"{str(e).splitlines()[0]} / {e.diag.message_detail} / {e.diag.context}"
    finally:
        m.execute("COMMIT" if st is None else "ROLLBACK")
    db.execute("REVOKE t105_grp FROM t105_m")
    m.execute("SET ROLE t105_m")
    later = None
    try:
        enable_rate_limit(m, "public.t105_g", per_user_per_minute=5, per_tenant_per_minute=50)
        disable_tracking(m, "public.t105_g")
    except Exception as e:  # noqa: BLE001
        later = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        with suppress(psycopg.Error):
            m.execute("ROLLBACK")
    finally:
        m.execute("RESET ROLE")
    assert (st, _baselines(db, "t105_g")) == ("42501", []), why
    assert later is None, later


def test_r4_one_group_members_proof_is_not_another_members_baseline(group, connect):
    """Attack: t105_m and t105_n both own t105_g through t105_grp; under SET LOCAL ROLE t105_m the
    session proves, then sets role t105_n and takes the baseline. Safe: 42501 (the proof is t105_m's,
    the baseline's events would name t105_n), or the events name the prover. capture.md: "The proof
    must be the acting role's, the one the baseline's events name as db_role"."""
    db = group
    enable_tracking(db, "public.t105_g")
    m = connect("app_maintainer")
    st = sqlstate(m, ["LOCK public.t105_g IN SHARE MODE", "SET LOCAL ROLE t105_m",
                      "SELECT audit._prove_owner('public.t105_g'::regclass, md5(1::text)::uuid)", "SET LOCAL ROLE t105_n",
                      "SELECT audit_capture._take_baseline('public.t105_g'::regclass, md5(1::text)::uuid)"])
    assert (st, _baselines(db, "t105_g")) == (DENIED, [])


def test_r5_the_group_itself_and_a_revoked_member_change_nothing(group, connect):
    """Attack: t105_m tracks t105_g and limits it; the superuser takes t105_m out of t105_grp; t105_m
    then calls disable_rate_limit, disable_tracking and enable_tracking(baseline=True). Safe: each 42501,
    tracking and the limit as they were. roles.md: the maintainer may not "act on a table it does not
    own"."""
    db = group
    m = connect("app_maintainer")
    m.execute("SET ROLE t105_m")
    enable_tracking(m, "public.t105_g")
    enable_rate_limit(m, "public.t105_g", per_user_per_minute=5, per_tenant_per_minute=50)
    db.execute("REVOKE t105_grp FROM t105_m")
    got = {}
    for name, fn in {"disable_rate_limit": lambda: disable_rate_limit(m, "public.t105_g"),
                     "disable_tracking": lambda: disable_tracking(m, "public.t105_g"),
                     "enable_tracking": lambda: enable_tracking(m, "public.t105_g", baseline=True)}.items():
        try:
            fn()
            got[name] = None
        except Exception as e:  # noqa: BLE001
            with suppress(psycopg.Error):
                m.execute("ROLLBACK")
            cause = e if isinstance(e, psycopg.Error) else (e.__cause__ or e.__context__)
            got[name] = getattr(cause, "sqlstate", None) or type(e).__name__
    m.execute("RESET ROLE")
    assert got == dict.fromkeys(got, DENIED), got
    tracked = db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.t105_g'::regclass").fetchone()[0]
    assert tracked == 1 and _baselines(db, "t105_g") == []


# ================================ J: the caller's JSON loader ================================

@pytest.fixture
def jtab(db):
    db.execute("CREATE TABLE public.t105_j (id int PRIMARY KEY, v int)")
    enable_tracking(db, "public.t105_j")
    db.execute("INSERT INTO public.t105_j VALUES (1, 7)")
    at = db.execute("SELECT clock_timestamp()").fetchone()[0]
    record(db, "t105.j", payload={"n": 1})
    yield at
    db.execute("DROP TABLE IF EXISTS public.t105_j CASCADE")
    drop_made_under(db, "t105_")


def tagger(tag: str):
    return lambda s: {"_tag": tag, **json.loads(s)} if json.loads(s).__class__ is dict else (tag, json.loads(s))


def tag_of(value) -> str | None:
    if isinstance(value, dict):
        return value.get("_tag")
    if isinstance(value, tuple):
        return value[0]
    return None


def reads(conn, at) -> tuple:
    """What row_as_of and list_events' payload say (their tags)."""
    row = row_as_of(conn, "public.t105_j", "1", at)
    ev = [e for e in list_events(conn, kind_prefix="t105.j")]
    return tag_of(row), tag_of(ev[0].payload) if ev else "no event"


def test_j1_json_functions_changed_back_and_forth(db, connect, jtab, psycopg_globals):
    """Attack: globally A, then B, then A again; on the connection C; then the connection's loaders put
    back to psycopg's (the global A again). Safe: each answer follows the current choice.
    python.md: "JSON values the package returns to you are read by your connection's JSON loader"."""
    c = connect()
    seen = []
    for step in ("A", "B", "A"):
        set_json_loads(tagger(step))
        seen.append((step, reads(c, jtab)))
    set_json_loads(tagger("C"), c)
    seen.append(("C", reads(c, jtab)))
    c.adapters.register_loader("json", JsonLoader)
    c.adapters.register_loader("jsonb", JsonbLoader)
    seen.append(("A", reads(c, jtab)))
    assert all(got == (want, want) for want, got in seen), seen


def test_j2_a_loader_class_whose_loads_changes_after_the_first_call(db, connect, jtab):
    """Attack: the caller's own JsonbLoader subclass (registered on the connection) reads with A; after a
    first call its class attribute `_loads` is set to B. Safe: the second answer is B's.
    python.md: "returned as it made them"."""
    class Mine(JsonbLoader):
        _loads = tagger("A")
    c = connect()
    c.adapters.register_loader("jsonb", Mine)
    first = reads(c, jtab)
    Mine._loads = tagger("B")
    second = reads(c, jtab)
    assert (first, second) == (("A", "A"), ("B", "B"))


def test_j3_a_loader_class_that_overrides_load_itself(db, connect, jtab):
    """Attack: the caller's JsonbLoader subclass overrides load() (wrapping the parsed value in a tuple)
    and keeps psycopg's JSON function; registered on the connection. Safe: row_as_of and list_events
    return what that loader makes. python.md: "row_as_of gives you its image as the loader read it"."""
    class Wrapping(JsonbLoader):
        def load(self, data):
            return ("W", super().load(data))
    c = connect()
    c.adapters.register_loader("jsonb", Wrapping)
    assert reads(c, jtab) == ("W", "W")


def test_j4_unhashable_and_equal_but_different_json_functions(db, connect, jtab, psycopg_globals):
    """Attack: globally an unhashable callable (__hash__ = None) reading A, then another reading B; then
    two callables of a frozen dataclass that compare equal (their tag is not compared) reading C, then
    D. Safe: each answer follows the function in force. python.md: "read by your connection's JSON
    loader"."""
    class Unhashable:
        __hash__ = None

        def __init__(self, tag):
            self.f = tagger(tag)

        def __call__(self, s):
            return self.f(s)

    @dataclass(frozen=True)
    class Reader:
        name: str
        tag: str = field(compare=False)

        def __call__(self, s):
            return tagger(self.tag)(s)

    c = connect()
    seen = []
    for want, fn in (("A", Unhashable("A")), ("B", Unhashable("B")), ("C", Reader("r", "C")), ("D", Reader("r", "D"))):
        set_json_loads(fn)
        seen.append((want, reads(c, jtab)))
    assert all(got == (want, want) for want, got in seen), seen


def test_j5_more_than_64_loaders_then_the_first_again(db, connect, jtab):
    """Attack: 70 connections, each with its own JSON function (set_json_loads on the connection),
    called in turn, then the first ones again after eviction. Safe: every answer is its connection's.
    python.md: "read by your connection's JSON loader"."""
    conns = []
    wrong = []
    for i in range(70):
        c = connect()
        set_json_loads(tagger(f"L{i}"), c)
        conns.append(c)
    for rnd in range(2):
        for i, c in enumerate(conns if rnd == 0 else conns[:5] + conns[-5:]):
            i = i if rnd == 0 else (list(range(5)) + list(range(65, 70)))[i]
            got = reads(c, jtab)
            if got != (f"L{i}", f"L{i}"):
                wrong.append((rnd, i, got))
    assert wrong == []


def test_j6_threads_with_different_loaders_at_once(db, connect, jtab):
    """Attack: eight threads, each with its connection and its own JSON function, 15 calls each at the
    same time. Safe: each answer is its own connection's. python.md: "read by your connection's JSON
    loader"."""
    conns = []
    for i in range(8):
        c = connect()
        set_json_loads(tagger(f"T{i}"), c)
        conns.append(c)
    wrong: list = []
    barrier = threading.Barrier(8)

    def run(i):
        barrier.wait()
        for _ in range(15):
            got = reads(conns[i], jtab)
            if got != (f"T{i}", f"T{i}"):
                wrong.append((i, got))
    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert wrong == []


def test_j7_aio_follows_the_loader_in_force(db, jtab, psycopg_globals):
    """Attack: the aio API on an AsyncConnection: its own JSON function, then the connection's loaders
    put back while the global function changes A to B; and a loader class overriding load(). Safe: each
    answer the loader in force. python.md: "JSON values the package returns to you are read by your
    connection's JSON loader"."""
    info = db.info

    async def go():
        seen = []
        async with await psycopg.AsyncConnection.connect(host=info.host, port=info.port, dbname=info.dbname,
                                                         user=info.user, autocommit=True) as a:
            async def both():
                row = await aio.row_as_of(a, "public.t105_j", "1", jtab)
                ev = await aio.list_events(a, kind_prefix="t105.j")
                return tag_of(row), tag_of(ev[0].payload)
            set_json_loads(tagger("X"), a)
            seen.append(("X", await both()))
            a.adapters.register_loader("json", JsonLoader)
            a.adapters.register_loader("jsonb", JsonbLoader)
            for g in ("A", "B", "A"):
                set_json_loads(tagger(g))
                seen.append((g, await both()))

            class Wrapping(JsonbLoader):
                def load(self, data):
                    return ("W", json.loads(bytes(data)))
            a.adapters.register_loader("jsonb", Wrapping)
            seen.append(("W", await both()))
        return seen
    seen = asyncio.run(go())
    assert all(got == (want, want) for want, got in seen), seen


def test_r6_owner_renamed_to_a_quoted_name_between_proof_and_use(group, connect):
    """Attack: t105_m proves; the superuser renames it "t105_M m" and a non-owner maintainer
    (t105_x) to t105_m; the session sets role t105_m again (the non-owner) and takes the baseline.
    Control: a role renamed to "t105_Q q" before anything takes its baseline through enable_tracking.
    Safe: the first 42501; the control taken, its events naming "t105_Q q". roles.md: "only while that
    role still owns the table under the same name"."""
    db = group
    db.execute("CREATE ROLE t105_x IN ROLE audit_maintainer; GRANT t105_x TO app_maintainer")
    enable_tracking(db, "public.t105_g")
    m = connect("app_maintainer")
    m.execute("BEGIN")
    st = None
    try:
        m.execute("LOCK public.t105_g IN SHARE MODE")
        m.execute("SET LOCAL ROLE t105_m")
        m.execute("SELECT audit._prove_owner('public.t105_g'::regclass, md5(1::text)::uuid)")
        db.execute('ALTER ROLE t105_m RENAME TO "t105_M m"; ALTER ROLE t105_x RENAME TO t105_m')
        try:
            m.execute("SELECT count(*) FROM pg_catalog.pg_database")
            m.execute("SET LOCAL ROLE t105_m")
            m.execute("SELECT audit_capture._take_baseline('public.t105_g'::regclass, md5(1::text)::uuid)")
        except psycopg.Error as e:
            st = e.sqlstate
    finally:
        m.execute("COMMIT" if st is None else "ROLLBACK")
    db.execute('ALTER ROLE t105_m RENAME TO t105_x; ALTER ROLE "t105_M m" RENAME TO "t105_Q q"')
    assert (st, _baselines(db, "t105_g")) == (DENIED, [])
    m.execute('SET ROLE "t105_Q q"')
    try:
        disable_tracking(m, "public.t105_g")
        enable_tracking(m, "public.t105_g", baseline=True)
    finally:
        m.execute("RESET ROLE")
    assert _baselines(db, "t105_g") == [("t105_Q q",)]


def test_j9_the_documented_decimal_loader_holds_while_the_global_function_changes(db, connect, jtab, psycopg_globals):
    """Attack (legit path): the connection reads numbers as Decimal (the documented set_json_loads
    with parse_float=Decimal); globally the JSON function changes to floats-for-integers and back.
    Safe: row_as_of and the payload read through the connection's Decimal function each time.
    python.md: "have the connection read them as `Decimal`"."""
    import functools
    from decimal import Decimal
    record(db, "t105.jd", payload={"amount": Decimal("12345678901234567.89")})
    db.execute("UPDATE public.t105_j SET v = v WHERE id = 1")
    c = connect()
    set_json_loads(functools.partial(json.loads, parse_float=Decimal), c)
    seen = []
    for g in (functools.partial(json.loads, parse_int=float), json.loads, functools.partial(json.loads, parse_int=float)):
        set_json_loads(g)
        row = row_as_of(c, "public.t105_j", "1", jtab)
        ev = list_events(c, kind_prefix="t105.jd")[0]
        seen.append((type(row["v"]).__name__, type(ev.payload["amount"]).__name__))
    assert seen == [("int", "Decimal")] * 3, seen


@pytest.mark.parametrize("how", ["unhashable_floats", "equal_dataclass", "tuple_wrapper"])
def test_j8_package_reads_under_strange_global_json_functions(db, connect, jtab, psycopg_globals, how):
    """Attack: a global JSON function the package must not read its own JSON with: an unhashable one
    reading integers as floats; a frozen dataclass one (equal to any other of its name) reading objects
    as tuples of pairs; a tuple wrapper; then install again, record, seal, status, both verifiers.
    Safe: install works; status raises no problem it did not before; seal works; both verifiers True.
    python.md: "JSON the package reads for itself (an installation's snapshot) it reads with
    json.loads, whatever set_json_loads you set, on the connection or globally"."""
    before = set(status(db).problems)

    class Floats:
        __hash__ = None

        def __call__(self, s):
            return json.loads(s, parse_int=float)

    @dataclass(frozen=True)
    class Pairs:
        name: str = "p"

        def __call__(self, s):
            return json.loads(s, object_pairs_hook=tuple)
    fn = {"unhashable_floats": Floats(), "equal_dataclass": Pairs(), "tuple_wrapper": lambda s: ("w", json.loads(s))}[how]
    set_json_loads(fn)
    err = reinstall(db)
    record(db, "t105.j8", payload={"i": 12345678901234567890, "f": 1.5})
    sealed = seal_all(db)
    after = set(status(db).problems)
    assert (err, sealed) == (None, None)
    assert after - before == set(), after - before
    assert both_verifiers(db) == (True, True)
