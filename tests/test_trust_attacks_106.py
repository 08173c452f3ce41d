"""A hundred-and-sixth attacker's trial: variants nobody tried against the mends of trial 105
(owner proofs carry their role's oid; `_cover_partition` consumes a proof; "covered" means the
capture function and its four triggers; the partition event trigger and the installer's catch-up
prove first).

Classes (test names carry the letter):
  S. proofs: made under SET ROLE / SET SESSION AUTHORIZATION by the owner and consumed by the SECURITY
     DEFINER helpers while another role acts; a proof left in the owner's transaction consumed by
     another maintainer's SECURITY DEFINER function; two proofs of one table by two roles (who is
     named); proofs left behind by the public functions; savepoints, earlier transactions, forged
     rows, a role dropped and made again under its name.
  P. partitions: capture triggers renamed or disabled by the partition's owner, then the catch-up;
     a partitioned table with rows attached under a tree with a baseline; ATTACH / PARTITION OF with
     a table of another role; `_cover_partition` on what is no partition.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects and roles made here are prefixed t106_; roles are dropped afterwards.
"""

from __future__ import annotations

from contextlib import suppress

import psycopg
import pytest
from trial_helpers import drop_made_under, problems_of, reinstall

DENIED = "42501"


@pytest.fixture
def rk(db, connect):
    """t106_mo, t106_mo2: maintainers (NOLOGIN), both in group t106_g; t106_x: a maintainer login owning
    nothing; app_maintainer a member of t106_mo, t106_mo2 and t106_x."""
    db.execute("CREATE ROLE t106_g; CREATE ROLE t106_mo IN ROLE audit_maintainer, t106_g;"
               " CREATE ROLE t106_mo2 IN ROLE audit_maintainer, t106_g;"
               " CREATE ROLE t106_x LOGIN IN ROLE audit_maintainer;"
               " GRANT t106_mo, t106_mo2, t106_x TO app_maintainer;"
               " GRANT CREATE ON SCHEMA public TO t106_mo, t106_mo2, t106_x, t106_g")
    yield db
    with suppress(psycopg.Error):
        db.execute("ROLLBACK")
    with suppress(psycopg.Error):
        db.execute("RESET ROLE")
    for (t,) in db.execute("SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace"
                           " AND c.relname LIKE 't106%%' AND c.relkind IN ('r', 'p')").fetchall():
        db.execute(f'DROP TABLE IF EXISTS public."{t}" CASCADE')
    drop_made_under(db, "t106_")


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


def run(conn, statements: list[str]) -> str | None:
    """BEGIN; each statement; COMMIT when all ran, else ROLLBACK; the first failure's SQLSTATE."""
    conn.execute("BEGIN")
    st = None
    try:
        for s in statements:
            try:
                conn.execute(s)
            except psycopg.Error as e:
                st = e.sqlstate or "?"
                break
    finally:
        conn.execute("COMMIT" if st is None else "ROLLBACK")
    return st


def table(db, name: str, owner: str, rows: str = "(1, 0), (2, 0)") -> None:
    db.execute(f"CREATE TABLE public.{name} (id int PRIMARY KEY, v int); GRANT ALL ON public.{name} TO app_writer;"
               f" INSERT INTO public.{name} VALUES {rows}; ALTER TABLE public.{name} OWNER TO {owner}")


def track(db, name: str, role: str, baseline: bool = False) -> None:
    assert run(db, [f"SET LOCAL ROLE {role}",
                    f"SELECT audit.enable_tracking('public.{name}'::regclass, baseline => {str(baseline).lower()})"]) is None


def tree(db, owner: str = "t106_mo", baseline: bool = True) -> None:
    """public.t106_pt (partitioned, range on id) with t106_pt1 [0, 100), owned by `owner`, tracked by it."""
    db.execute("CREATE TABLE public.t106_pt (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);"
               " CREATE TABLE public.t106_pt1 PARTITION OF public.t106_pt FOR VALUES FROM (0) TO (100);"
               " INSERT INTO public.t106_pt VALUES (1, 1); GRANT ALL ON public.t106_pt, public.t106_pt1 TO app_writer;"
               f" ALTER TABLE public.t106_pt OWNER TO {owner}; ALTER TABLE public.t106_pt1 OWNER TO {owner}")
    track(db, "t106_pt", owner, baseline)


def tracked(db, name: str) -> bool:
    return db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = to_regclass(%s)",
                      [f"public.{name}"]).fetchone()[0] == 1


def n_kind(db, kind: str, target: str | None = None, db_role: str | None = None) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = %s AND (%s::text IS NULL OR target_id = %s)"
                      " AND (%s::text IS NULL OR db_role = %s)", [kind, target, target, db_role, db_role]).fetchone()[0]


def capture_triggers(db, name: str) -> int:
    return db.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND NOT tgisinternal"
                      " AND tgenabled <> 'D' AND tgname LIKE 'audit_capture_%%'", [f"public.{name}"]).fetchone()[0]


def events_for_key(db, prefix: str, kind: str, key: int) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = %s AND target_id = %s",
                      [f"{prefix}.{kind}", str(key)]).fetchone()[0]


PROVE_A = "SELECT audit._prove_owner('public.t106_a'::regclass, md5(1::text)::uuid)"
UNREG_A = "SELECT audit._unregister_tracking('public.t106_a'::regclass, 'audit.tracking_disabled', md5(1::text)::uuid)"


# ---------------------------------------------------------------------------------------------- S

@pytest.mark.parametrize("how", ["set_role", "session_authorization"])
def test_s1_owners_proof_then_a_non_owner_disables_tracking(rk, connect, how):
    """Attack: one session proves as t106_mo (owner of public.t106_a) under SET LOCAL ROLE, or under SET
    SESSION AUTHORIZATION (a superuser's session), then switches to t106_x (a maintainer owning nothing)
    and calls audit._unregister_tracking itself: the helper consumes the owner's proof while t106_x acts,
    and audit.tracking_disabled names t106_x as its db_role.
    Docs (capture.md): "The proof must be the acting role's, the one the baseline's events name as
    `db_role`: one made before a `SET ROLE` to a role that owns nothing is refused the same way"; and
    roles.md: "the caller first proves, with its own rights, that it owns the table"."""
    db = rk
    table(db, "t106_a", "t106_mo")
    track(db, "t106_a", "t106_mo")
    if how == "set_role":
        st = run(connect("app_maintainer"), ["SET LOCAL ROLE t106_mo", PROVE_A, "SET LOCAL ROLE t106_x", UNREG_A])
    else:
        su = connect()
        st = run(su, ["SET SESSION AUTHORIZATION t106_mo", PROVE_A, "SET SESSION AUTHORIZATION t106_x", UNREG_A])
        su.execute("RESET SESSION AUTHORIZATION")
    assert st == DENIED, f"t106_x disabled t106_mo's tracking on t106_mo's proof ({st})"
    assert tracked(db, "t106_a")
    assert n_kind(db, "audit.tracking_disabled", db_role="t106_x") == 0


def test_s2_owners_proof_then_a_non_owner_registers_tracking(rk, connect):
    """Attack: under SET LOCAL ROLE t106_mo the session proves public.t106_b, then as t106_x (owns nothing)
    calls audit._register_tracking directly with a kind prefix of its choosing: the catalogue row and
    audit.tracking_enabled are written while t106_x acts (no trigger attached, but tracked on record).
    Docs (capture.md): enable_tracking refuses "a caller that does not own the table and every partition
    (42501)"; roles.md: the helper consumes the row "only while that role still owns the table"."""
    db = rk
    table(db, "t106_b", "t106_mo")
    st = run(connect("app_maintainer"), [
        "SET LOCAL ROLE t106_mo", "SELECT audit._prove_owner('public.t106_b'::regclass, md5(1::text)::uuid)", "SET LOCAL ROLE t106_x",
        "SELECT audit._register_tracking(jsonb_populate_record(NULL::audit.tracked_tables, jsonb_build_object("
        "'relid', 'public.t106_b'::regclass::oid, 'kind_prefix', 't106.by_x')), md5(1::text)::uuid)"])
    assert st == DENIED, f"t106_x registered tracking of t106_mo's table on t106_mo's proof ({st})"
    assert not tracked(db, "t106_b")


def test_s3_owners_proof_then_a_non_owner_puts_a_rate_limit(rk, connect):
    """Attack: under SET LOCAL ROLE t106_mo the session proves public.t106_a, then as t106_x (owns nothing)
    calls audit._put_rate_limit for that table: the limit is recorded with changed_by t106_mo although
    t106_x set it.
    Docs (rate-limits.md title): "`audit.enable_rate_limit` (maintainer, owning the table)"; roles.md: "the
    caller first proves, with its own rights, that it owns the table"."""
    db = rk
    table(db, "t106_a", "t106_mo")
    st = run(connect("app_maintainer"), [
        "SET LOCAL ROLE t106_mo", PROVE_A, "SET LOCAL ROLE t106_x",
        "SELECT audit._put_rate_limit(jsonb_populate_record(NULL::audit.rate_limits, jsonb_build_object("
        "'scope', 'table', 'target', 'public.t106_a'::regclass::oid::text, 'per_user', 1, 'per_tenant', 1,"
        " 'window_seconds', 60)), md5(1::text)::uuid)"])
    assert st == DENIED, f"t106_x put a limit on t106_mo's table on t106_mo's proof ({st})"
    assert db.execute("SELECT count(*) FROM audit.rate_limits WHERE scope = 'table' AND target ="
                      " 'public.t106_a'::regclass::oid::text").fetchone()[0] == 0


def test_s4_owners_proof_then_a_non_owner_covers_its_partition(rk, connect, triggers_off):
    """Attack: t106_mo's tracked tree gets a partition while the event triggers are off (uncovered); the
    session proves it as t106_mo, then as t106_x (owns nothing) calls audit._cover_partition: the
    partition is recorded as covered (audit.tracked_partition_added) naming t106_x.
    Docs (roles.md): "Covering a new partition is such a helper too: the role adding it proves that it
    owns it"; 62_tracking.sql: "a maintainer that owns neither may not record that it is covered"."""
    db = rk
    tree(db, baseline=False)
    with triggers_off:
        db.execute("CREATE TABLE public.t106_pt2 PARTITION OF public.t106_pt FOR VALUES FROM (100) TO (200);"
                   " ALTER TABLE public.t106_pt2 OWNER TO t106_mo")
    st = run(connect("app_maintainer"), [
        "SET LOCAL ROLE t106_mo", "SELECT audit._prove_owner('public.t106_pt2'::regclass, md5(1::text)::uuid)", "SET LOCAL ROLE t106_x",
        "SELECT audit._cover_partition('public.t106_pt2'::regclass, md5(1::text)::uuid)"])
    assert st == DENIED, f"t106_x recorded t106_mo's partition as covered on t106_mo's proof ({st})"
    assert n_kind(db, "audit.tracked_partition_added", "public.t106_pt2") == 0


def test_s5_a_proof_left_in_the_owners_transaction_serves_another_maintainers_definer_function(rk, connect):
    """Attack: t106_x (a maintainer owning nothing) owns a SECURITY DEFINER function that calls
    audit._unregister_tracking for t106_mo's table; t106_mo proves (audit._prove_owner, which it may call)
    and, in the same transaction, runs t106_x's function: the helper takes t106_mo's proof while t106_x
    is the current user.
    Docs (roles.md): "the session's role could be anybody's victim (a maintainer's own SECURITY DEFINER
    trigger, fired in another maintainer's session, would pass for that one)"."""
    db = rk
    table(db, "t106_a", "t106_mo")
    track(db, "t106_a", "t106_mo")
    connect("t106_x").execute(f"""CREATE FUNCTION public.t106_xfn() RETURNS void LANGUAGE sql SECURITY DEFINER
                                  AS $$ {UNREG_A} $$; GRANT EXECUTE ON FUNCTION public.t106_xfn() TO PUBLIC""")
    st = run(connect("app_maintainer"), ["SET LOCAL ROLE t106_mo", PROVE_A, "SELECT public.t106_xfn()"])
    assert st == DENIED, f"t106_x's SECURITY DEFINER function used t106_mo's proof ({st})"
    assert tracked(db, "t106_a")


@pytest.mark.parametrize("call", ["tracking", "limit"])
def test_s6_two_proofs_of_one_table_the_actor_named_is_the_one_acting(rk, connect, call):
    """Attack: public.t106_c belongs to group t106_g; the session proves it as t106_mo (a member), then, as
    t106_mo2 (another member) calls enable_tracking / enable_rate_limit, which proves again: the helper's
    DELETE ... RETURNING INTO keeps the first proof, so the catalogue names t106_mo (enabled_by /
    changed_by) while the events name t106_mo2.
    Docs (capture.md): "The proof must be the acting role's, the one the baseline's events name as
    `db_role`"."""
    db = rk
    table(db, "t106_c", "t106_g")
    fn = ("SELECT audit.enable_tracking('public.t106_c'::regclass)" if call == "tracking"
          else "SELECT audit.enable_rate_limit('public.t106_c'::regclass, 5)")
    st = run(connect("app_maintainer"), ["SET LOCAL ROLE t106_mo", "SELECT audit._prove_owner('public.t106_c'::regclass, md5(1::text)::uuid)",
                                         "SET LOCAL ROLE t106_mo2", fn])
    if st is not None:
        return  # refused outright: the first proof was not taken for the second role
    if call == "tracking":
        who = db.execute("SELECT enabled_by FROM audit.tracked_tables WHERE relid = 'public.t106_c'::regclass").fetchone()[0]
        ev = db.execute("SELECT db_role FROM audit.events WHERE kind = 'audit.tracking_enabled' AND target_id = 'public.t106_c'"
                        " ORDER BY intake_id DESC LIMIT 1").fetchone()[0]
    else:
        who = db.execute("SELECT changed_by FROM audit.rate_limits WHERE target = 'public.t106_c'::regclass::oid::text").fetchone()[0]
        ev = "t106_mo2"
    assert who == "t106_mo2" == ev, f"the catalogue names {who}, the event {ev}; t106_mo2 acted"


CALLS = {
    "enable_tracking": "SELECT audit.enable_tracking('public.t106_pt'::regclass)",
    "enable_tracking_baseline": "SELECT audit.enable_tracking('public.t106_pt'::regclass, baseline => true)",
    "enable_rate_limit": "SELECT audit.enable_rate_limit('public.t106_pt'::regclass, 5)",
    "disable_rate_limit": "SELECT audit.disable_rate_limit('public.t106_pt'::regclass)",
    "disable_tracking": "SELECT audit.disable_tracking('public.t106_pt'::regclass)",
    "disable_tracking_untracked": "SELECT audit.disable_tracking('public.t106_a'::regclass)",
}


@pytest.mark.parametrize("call", list(CALLS))
def test_s7_no_public_function_leaves_a_proof_in_the_transaction(rk, connect, call):
    """Attack: t106_mo calls each public function on its partitioned tree (two levels of capture tables)
    inside a transaction; whatever proof it leaves behind is there for any SECURITY DEFINER function
    run later in the same transaction (another maintainer's) to consume.
    Docs (migrations/0025): "Proofs live only within the transaction that makes them"; roles.md: "the
    helper consumes the row"."""
    db = rk
    tree(db, baseline=False)
    assert run(db, ["SET LOCAL ROLE t106_mo", "SELECT audit.enable_rate_limit('public.t106_pt'::regclass, 50)"]) is None
    table(db, "t106_a", "t106_mo")
    su = connect()
    su.execute("BEGIN")
    try:
        su.execute("SET LOCAL ROLE t106_mo")
        su.execute(CALLS[call])
        su.execute("RESET ROLE")
        left = su.execute("SELECT count(*) FROM audit.owner_proofs WHERE xid = pg_current_xact_id()").fetchone()[0]
    finally:
        su.execute("ROLLBACK")
    assert left == 0, f"{call} left {left} proof(s) in the caller's transaction"


def test_s8_a_proof_rolled_back_to_a_savepoint_or_made_earlier_serves_nothing(rk, connect):
    """Attack: t106_mo proves inside a savepoint and rolls back to it, then calls the helper; and t106_mo
    proves in one transaction (committed) and calls the helper in the next; and in another session.
    Docs (roles.md): "stamps it with `current_user` (its name and oid) and the transaction"."""
    db = rk
    table(db, "t106_a", "t106_mo")
    track(db, "t106_a", "t106_mo")
    m = connect("app_maintainer")
    assert run(m, ["SET LOCAL ROLE t106_mo", "SAVEPOINT s", PROVE_A, "ROLLBACK TO SAVEPOINT s", UNREG_A]) == DENIED
    assert run(m, ["SET LOCAL ROLE t106_mo", PROVE_A]) is None
    assert run(m, ["SET LOCAL ROLE t106_mo", UNREG_A]) == DENIED
    other = connect("app_maintainer", autocommit=False)
    other.execute("SET LOCAL ROLE t106_mo")
    other.execute(PROVE_A)
    try:
        assert run(m, ["SET LOCAL ROLE t106_mo", UNREG_A]) == DENIED
    finally:
        other.rollback()
    assert tracked(db, "t106_a")


def test_s9_forged_rows_in_owner_proofs(rk, connect):
    """Attack: t106_x (a maintainer, INSERT on owner_proofs) inserts a row naming t106_mo, its oid and the
    transaction for t106_mo's table; COPYs one in; proves its own table and UPDATEs the row's relid to
    t106_mo's; DELETEs rows; then calls the helper for t106_mo's table.
    Docs (roles.md): "INSERT is all the maintainer may do there", and the trigger "refuses a role that
    does not own the table"."""
    db = rk
    table(db, "t106_a", "t106_mo")
    track(db, "t106_a", "t106_mo")
    x = connect("t106_x")
    x.execute("CREATE TABLE public.t106_xt (id int)")
    forge = ("INSERT INTO audit.owner_proofs (relid, role, role_id, xid) SELECT 'public.t106_a'::regclass, 't106_mo',"
             " (SELECT oid FROM pg_roles WHERE rolname = 't106_mo'), pg_current_xact_id()")
    assert run(x, [forge, UNREG_A]) == DENIED
    x.execute("BEGIN")
    try:
        with x.cursor() as cur, cur.copy("COPY audit.owner_proofs (relid, role, xid) FROM STDIN") as cp:
            cp.write_row([db.execute("SELECT 'public.t106_a'::regclass::oid").fetchone()[0], "t106_mo", "1"])
        copied = None
    except psycopg.Error as e:
        copied = e.sqlstate
    finally:
        x.execute("ROLLBACK")
    assert copied == DENIED
    assert run(x, ["SELECT audit._prove_owner('public.t106_xt'::regclass, md5(1::text)::uuid)",
                   "UPDATE audit.owner_proofs SET relid = 'public.t106_a'::regclass", UNREG_A]) == DENIED
    assert run(x, ["DELETE FROM audit.owner_proofs"]) == DENIED
    assert run(x, ["SELECT audit._prove_owner('public.t106_xt'::regclass, md5(1::text)::uuid)", UNREG_A]) == DENIED
    assert tracked(db, "t106_a")


def test_s10_prover_dropped_and_made_again_under_its_name(rk, connect):
    """Attack: t106_tmp (a maintainer in group t106_g, which owns public.t106_c) proves under SET LOCAL
    ROLE; meanwhile a superuser drops t106_tmp and makes a new t106_tmp, also in t106_g; the proof (old
    oid, same name) is then used to disable tracking.
    Docs (roles.md): the helper consumes the row "only while that role still owns the table under the
    same name"; migration 0025: "the proof is used only by the role that made it"."""
    db = rk
    db.execute("CREATE ROLE t106_tmp IN ROLE audit_maintainer, t106_g; GRANT t106_tmp TO app_maintainer")
    table(db, "t106_c", "t106_g")
    track(db, "t106_c", "t106_mo")
    m = connect("app_maintainer", autocommit=False)
    m.execute("SET LOCAL ROLE t106_tmp")
    m.execute("SELECT audit._prove_owner('public.t106_c'::regclass, md5(1::text)::uuid)")
    m.execute("RESET ROLE")
    db.execute("DROP ROLE t106_tmp; CREATE ROLE t106_tmp IN ROLE audit_maintainer, t106_g; GRANT t106_tmp TO app_maintainer")
    try:
        m.execute("SET LOCAL ROLE t106_tmp")
        m.execute("SELECT audit._unregister_tracking('public.t106_c'::regclass, 'audit.tracking_disabled', md5(1::text)::uuid)")
        st = None
    except psycopg.Error as e:
        st = e.sqlstate
    m.rollback()
    assert st == DENIED
    assert tracked(db, "t106_c")


# ---------------------------------------------------------------------------------------------- P

def test_p1_a_capture_trigger_renamed_by_the_owner_then_the_catch_up_captures_once(rk, connect, triggers_off):
    """Attack: with the event triggers off, t106_mo renames its partition's audit_capture_insert to
    t106_ren (still calling the partition's capture function); the installer's catch-up then finds
    the partition uncovered and attaches the four triggers again: one INSERT becomes two events.
    Docs (capture.md): "appends one event per row in the writing transaction"."""
    db = rk
    tree(db, baseline=False)
    with triggers_off:
        assert run(db, ["SET LOCAL ROLE t106_mo",
                        "ALTER TRIGGER audit_capture_insert ON public.t106_pt1 RENAME TO t106_ren"]) is None
    assert reinstall(db) is None
    connect("app_writer").execute("INSERT INTO public.t106_pt VALUES (7, 7)")
    n = events_for_key(db, "public.t106_pt", "insert", 7)
    assert n == 1, f"one INSERT, {n} events"


def test_p2_a_capture_trigger_disabled_by_the_owner_is_enabled_again_or_named(rk, connect, triggers_off):
    """Attack: with the event triggers off, t106_mo disables its partition's audit_capture_update; the
    installer runs again (catch-up); an UPDATE on the partition must be captured, or status must name
    the partition.
    Docs (capture.md): "Every partition, at every level, carries capture triggers of its own"."""
    db = rk
    tree(db, baseline=False)
    with triggers_off:
        assert run(db, ["SET LOCAL ROLE t106_mo",
                        "ALTER TABLE public.t106_pt1 DISABLE TRIGGER audit_capture_update"]) is None
    assert reinstall(db) is None
    connect("app_writer").execute("UPDATE public.t106_pt SET v = 9 WHERE id = 1")
    n = events_for_key(db, "public.t106_pt", "update", 1)
    assert n == 1 or any("t106_pt1" in p for p in problems_of(db)), "an UPDATE unseen, and status silent"


def test_p3_renaming_a_capture_trigger_with_the_event_triggers_on(rk, connect):
    """Attack: t106_mo (owner of the partition) renames, disables or replaces a capture trigger of its
    tracked partition while the event triggers are on.
    Docs (capture.md): "Every partition, at every level, carries capture triggers of its own"."""
    db = rk
    tree(db, baseline=False)
    for stmt in ["ALTER TRIGGER audit_capture_insert ON public.t106_pt1 RENAME TO t106_ren",
                 "ALTER TABLE public.t106_pt1 DISABLE TRIGGER audit_capture_delete",
                 "DROP TRIGGER audit_capture_update ON public.t106_pt1"]:
        st = run(db, ["SET LOCAL ROLE t106_mo", stmt])
        assert st is not None or any("t106_pt1" in p for p in problems_of(db)), f"{stmt}: accepted, status silent"
    connect("app_writer").execute("INSERT INTO public.t106_pt VALUES (8, 8); UPDATE public.t106_pt SET v = 2 WHERE id = 8;"
                                  " DELETE FROM public.t106_pt WHERE id = 8")
    assert [events_for_key(db, "public.t106_pt", k, 8) for k in ("insert", "update", "delete")] == [1, 1, 1]


def test_p4_a_partitioned_table_with_rows_attached_under_a_baseline(rk, connect):
    """Attack: t106_mo attaches a partitioned table t106_sub whose leaf t106_subl already holds rows to its
    tracked tree (with a baseline): the rows arrive with no event; the baseline must be cleared, both
    levels covered (four triggers each) and recorded naming t106_mo.
    Docs (capture.md): "A partition created or attached later is covered at once, as the role that ran
    the DDL ... it is recorded (`audit.tracked_partition_added`)"."""
    db = rk
    tree(db, baseline=True)
    assert db.execute("SELECT baseline_at IS NOT NULL FROM audit.tracked_tables"
                      " WHERE relid = 'public.t106_pt'::regclass").fetchone()[0]
    db.execute("CREATE TABLE public.t106_sub (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);"
               " CREATE TABLE public.t106_subl PARTITION OF public.t106_sub FOR VALUES FROM (100) TO (200);"
               " INSERT INTO public.t106_sub VALUES (150, 1);"
               " ALTER TABLE public.t106_sub OWNER TO t106_mo; ALTER TABLE public.t106_subl OWNER TO t106_mo")
    assert run(connect("app_maintainer"), [
        "SET LOCAL ROLE t106_mo",
        "ALTER TABLE public.t106_pt ATTACH PARTITION public.t106_sub FOR VALUES FROM (100) TO (200)"]) is None
    assert db.execute("SELECT baseline_at FROM audit.tracked_tables WHERE relid = 'public.t106_pt'::regclass").fetchone()[0] is None
    assert capture_triggers(db, "t106_sub") == 4 and capture_triggers(db, "t106_subl") == 4
    for p in ("public.t106_sub", "public.t106_subl"):
        assert n_kind(db, "audit.tracked_partition_added", p) == 1
        assert n_kind(db, "audit.tracked_partition_added", p, "t106_mo") == 1, f"{p}: wrong actor named"


def test_p5_attach_or_partition_of_with_another_roles_table(rk, connect):
    """Attack: t106_x (a maintainer) tries CREATE TABLE ... PARTITION OF t106_mo's tracked tree and ATTACH
    of its own table to it; t106_mo tries to ATTACH t106_x's table. None may add an uncaptured partition.
    Docs (capture.md): "which must hold the maintainer role and own it ... anyone else is refused"."""
    db = rk
    tree(db, baseline=False)
    x = connect("t106_x")
    x.execute("CREATE TABLE public.t106_xp (id int PRIMARY KEY, v int)")
    assert run(x, ["CREATE TABLE public.t106_xq PARTITION OF public.t106_pt FOR VALUES FROM (300) TO (400)"]) is not None
    assert run(x, ["ALTER TABLE public.t106_pt ATTACH PARTITION public.t106_xp FOR VALUES FROM (200) TO (300)"]) is not None
    assert run(connect("app_maintainer"), [
        "SET LOCAL ROLE t106_mo",
        "ALTER TABLE public.t106_pt ATTACH PARTITION public.t106_xp FOR VALUES FROM (200) TO (300)"]) is not None
    n = db.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'public.t106_pt'::regclass").fetchone()[0]
    assert n == 1


def test_p6_another_maintainer_owning_a_partition_drops_its_capture(rk, connect):
    """Attack: the superuser gives t106_mo's tree's partition to t106_x (a maintainer); t106_x drops or
    disables its capture triggers, or disables tracking of the partition (disable_tracking of a
    partition); writes to the partition must still be captured, or status name it.
    Docs (capture.md): "Every partition, at every level, carries capture triggers of its own"."""
    db = rk
    tree(db, baseline=False)
    db.execute("ALTER TABLE public.t106_pt1 OWNER TO t106_x")
    x = connect("t106_x")
    for stmt in ["DROP TRIGGER audit_capture_insert ON public.t106_pt1",
                 "ALTER TABLE public.t106_pt1 DISABLE TRIGGER audit_capture_insert",
                 "SELECT audit.disable_tracking('public.t106_pt1'::regclass)"]:
        run(x, [stmt])
    connect("app_writer").execute("INSERT INTO public.t106_pt VALUES (9, 9)")
    n = events_for_key(db, "public.t106_pt", "insert", 9)
    assert n == 1 or any("t106_pt1" in p for p in problems_of(db)), "an INSERT unseen, and status silent"


def test_p7_cover_partition_on_what_is_no_partition_consumes_its_proof(rk, connect):
    """Attack: t106_mo proves public.t106_a (a plain, untracked table) and the tracked tree itself, calls
    audit._cover_partition for each (NULL: tracking does not cover it as a partition), and then a
    non-owner (SET ROLE t106_x) tries to use what is left; and no event is recorded.
    Docs (roles.md): "the helper consumes the row"."""
    db = rk
    tree(db, baseline=False)
    table(db, "t106_a", "t106_mo")
    st = run(connect("app_maintainer"), [
        "SET LOCAL ROLE t106_mo", PROVE_A, "SELECT audit._prove_owner('public.t106_pt'::regclass, md5(1::text)::uuid)",
        "SELECT audit._cover_partition('public.t106_a'::regclass, md5(1::text)::uuid)",
        "SELECT audit._cover_partition('public.t106_pt'::regclass, md5(1::text)::uuid)",
        "SET LOCAL ROLE t106_x",
        "SELECT audit._unregister_tracking('public.t106_pt'::regclass, 'audit.tracking_disabled', md5(1::text)::uuid)"])
    assert st == DENIED
    assert tracked(db, "t106_pt")
    assert n_kind(db, "audit.tracked_partition_added", "public.t106_a") == 0
    assert n_kind(db, "audit.tracked_partition_added", "public.t106_pt") == 0


def test_p8_cover_partition_of_a_covered_partition_records_nothing(rk, connect):
    """Attack: t106_mo proves and calls audit._cover_partition again and again for a partition already
    covered (four triggers): each call must not record another audit.tracked_partition_added nor clear
    the tree's baseline.
    Docs (capture.md): a partition "created or attached later ... is recorded (`audit.tracked_partition_added`)"."""
    db = rk
    tree(db, baseline=True)
    before = n_kind(db, "audit.tracked_partition_added", "public.t106_pt1")
    for _ in range(3):
        # one message: a proof serves the statement that made it
        assert run(connect("app_maintainer"), [
            "SET LOCAL ROLE t106_mo", "SELECT audit._prove_owner('public.t106_pt1'::regclass, md5(1::text)::uuid);"
            " SELECT audit._cover_partition('public.t106_pt1'::regclass, md5(1::text)::uuid)"]) is None
    assert n_kind(db, "audit.tracked_partition_added", "public.t106_pt1") == before
    assert db.execute("SELECT baseline_at IS NOT NULL FROM audit.tracked_tables"
                      " WHERE relid = 'public.t106_pt'::regclass").fetchone()[0]


def test_p9_a_partition_made_as_a_group_member_names_the_member(rk, connect):
    """Attack: t106_g owns the tracked tree; t106_mo2 (a member and maintainer) creates a partition under
    SET ROLE; the event trigger proves as t106_mo2; the recorded event and the catalogue must name the
    acting role, and the partition gets its four triggers.
    Docs (capture.md): "covered at once, as the role that ran the DDL"."""
    db = rk
    db.execute("CREATE TABLE public.t106_pt (id int PRIMARY KEY, v int) PARTITION BY RANGE (id);"
               " GRANT ALL ON public.t106_pt TO app_writer; ALTER TABLE public.t106_pt OWNER TO t106_g")
    track(db, "t106_pt", "t106_mo")
    assert run(connect("app_maintainer"), [
        "SET LOCAL ROLE t106_mo2",
        "CREATE TABLE public.t106_pt3 PARTITION OF public.t106_pt FOR VALUES FROM (0) TO (10)"]) is None
    assert capture_triggers(db, "t106_pt3") == 4
    assert n_kind(db, "audit.tracked_partition_added", "public.t106_pt3", "t106_mo2") == 1
    connect("app_writer").execute("INSERT INTO public.t106_pt VALUES (3, 3)")
    assert events_for_key(db, "public.t106_pt", "insert", 3) == 1


def test_p10_detached_and_reattached_by_a_non_maintainer_owner(rk, connect):
    """Attack: a plain login t106_pl (no audit role) is given t106_mo's tree and its partition... here:
    the superuser gives the partition to t106_pl; t106_pl may not detach (needs the parent), so the
    superuser detaches it, t106_pl writes rows into it, and the superuser attaches it back: the rows
    arrive unseen; the tree's baseline must be cleared and the partition covered again.
    Docs (capture.md): "One added while the event triggers were off ... is covered and recorded" and
    the baseline "no longer shows every row"."""
    db = rk
    tree(db, baseline=True)
    db.execute("CREATE ROLE t106_pl LOGIN; ALTER TABLE public.t106_pt1 OWNER TO t106_pl")
    db.execute("ALTER TABLE public.t106_pt DETACH PARTITION public.t106_pt1")
    connect("t106_pl").execute("INSERT INTO public.t106_pt1 VALUES (50, 50)")
    st = run(db, ["ALTER TABLE public.t106_pt ATTACH PARTITION public.t106_pt1 FOR VALUES FROM (0) TO (100)"])
    if st is None:
        assert capture_triggers(db, "t106_pt1") == 4
        assert db.execute("SELECT baseline_at FROM audit.tracked_tables"
                          " WHERE relid = 'public.t106_pt'::regclass").fetchone()[0] is None
        connect("app_writer").execute("INSERT INTO public.t106_pt VALUES (51, 51)")
        assert events_for_key(db, "public.t106_pt", "insert", 51) == 1
