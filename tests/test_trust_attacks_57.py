"""A fifty-seventh attacker's trial, against the mends of trials 55 and 56 (77b1be3, b198a5a): the
SQL merge of what a re-run records (`sql/80_integrity.sql` `_to_record`) and its use by
`pgaudit_py/installer.py` `install` (with no migration pending, what it finds and what it leaves
read in one REPEATABLE READ transaction, yoyo untouched) and by the install script
(`pgaudit_py/install_script.py`, which now records through `_to_record` too); the Django
middleware's query wrapper (`pgaudit_py/integrations/django.py`: outermost on every connection,
clearing a new autocommit connection's session values and, outside a request, what a transaction
was given in one, through a per-connection flag); and `SET_CONTEXT`'s `coalesce(%s::text, '')`
(`pgaudit_py/context.py`).

Variants: a grant another session (the owner level) commits while the re-run, or the install script
applied with psql -1, waits on a lock of the owner's (a COMMENT on the log: no right is needed for
it but ownership), after it read what was there "before" (a table's, a view's, a column's, a
function's grant; a table grant the re-run does not rewrite, held); a change made, kept named by a
re-run, partly undone, then fully undone, across re-runs; the owner's own ACL item on a package
table changed in place and restored, after a re-run kept it recorded (a list item removed goes to
the end of what is recorded); the install script applied twice, and generated before a change and
applied after it; Django: a savepoint rolled back after the wrapper cleared what the request gave
the transaction, a connection with AUTOCOMMIT False, Django's psycopg pool, nested atomic blocks
begun in a request and ending after it, a request served while another thread's transaction is
open; audit_context on a client-side binding connection whose str dumper makes "" NULL.

Each test asserts the SAFE outcome per the docs' promises (docs/installer.md: "A re-run records what
it leaves, except what it found other than the last install recorded and did not undo ... status
goes on naming it until someone undoes it ... With no migration pending ... a change another session
commits meanwhile is not taken for the install's ... The install script (--sql) records the same
way"; docs/integrations.md: "Outside a request the wrapper sets nothing, but it clears what a
transaction was given in one ... carries nothing to other work"; docs/python.md: outside any
transaction "nothing carries over from the session"), on what the database holds: it passes when
the product holds and fails when the attack works.

Roles: the one role made here is t57_friend, dropped after each test that makes it.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any

import psycopg
import pytest
from psycopg import ClientCursor
from test_install_script import psql_apply
from test_trust_attacks_10 import django_db  # noqa: F401 - a fixture: Django on this test's database
from test_trust_attacks_53 import dj_record, django_request, events
from test_trust_attacks_56 import LEFTOVER, EmptyIsNullDumper
from trial_helpers import forget_django_pools

from pgaudit_py import audit_context, record
from pgaudit_py.install_script import install_script
from pgaudit_py.installer import install, status

FRIEND = "t57_friend"

# ====================================== helpers and fixtures ======================================


@pytest.fixture
def friend(db) -> Iterator[str]:
    """A login the owner level wants to give a right to."""
    db.execute(f"DROP ROLE IF EXISTS {FRIEND}")
    db.execute(f"CREATE ROLE {FRIEND} LOGIN")
    try:
        yield FRIEND
    finally:
        db.execute(f"DROP OWNED BY {FRIEND}")
        db.execute(f"DROP ROLE {FRIEND}")


def problems_of(conn: psycopg.Connection, schema: str = "audit") -> list[str]:
    return status(conn, schema).problems


def as_owner(db: psycopg.Connection, statements: str) -> None:
    """What a member of audit_owner may do (SET ROLE audit_owner: the superuser's rights are gone)."""
    db.execute(f"SET ROLE audit_owner; {statements}; RESET ROLE")


def named(problems: list[str], *words: str) -> bool:
    return any(all(w in p for w in words) for p in problems)


def install_records(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM audit._install").fetchone()[0]


def committed_while_waiting(db: psycopg.Connection, connect: Callable[..., psycopg.Connection],
                            run: Callable[[], object], waiter: str, statement: str) -> list[BaseException]:
    """The owner level, in another session, takes a lock the installer needs (COMMENT ON TABLE
    audit.event_log: SHARE UPDATE EXCLUSIVE, which the guards' CREATE OR REPLACE TRIGGER waits for);
    `run` (the installer, or the script through psql) starts in a thread and reads "before"; once
    `waiter` (a pg_stat_activity condition) shows it waiting on a lock, the owner runs `statement`
    and commits, which lets it go on. Returns what `run` raised."""
    attacker = connect()
    attacker.autocommit = False
    attacker.execute("SET ROLE audit_owner")
    attacker.execute("COMMENT ON TABLE audit.event_log IS 't57 was here'")
    failed: list[BaseException] = []

    def go() -> None:
        try:
            run()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            failed.append(exc)

    thread = threading.Thread(target=go)
    thread.start()
    watcher = connect()
    try:
        waiting = None
        for _ in range(400):
            waiting = watcher.execute(f"SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND {waiter}"
                                      ).fetchone()
            if waiting or not thread.is_alive():
                break
            time.sleep(0.05)
        assert waiting, "the installer never waited on the owner's lock"
        attacker.execute(statement)
        attacker.commit()
    finally:
        with suppress(psycopg.Error):
            attacker.rollback()
        thread.join(180)
    return failed


# ============ class 1: a grant committed while the re-run waits, taken for the installer's ============
#
# install() reads "before" (_last_recorded) as the REPEATABLE READ transaction's first statement, then
# runs the SQL files; a grant the owner level commits while the installer waits on a lock of the
# owner's is not in "before". The installer's own GRANT, REVOKE and CREATE OR REPLACE then rewrite the
# catalog rows they touch from their latest committed version (PostgreSQL updates catalogs so, whatever
# the isolation), the attacker's grant in them: what the installer reads it "leaves" holds the grant,
# and _to_record records it as the installer's.

CONCURRENT_CHANGES = {
    # the whole log, every tenant's events (90_grants' REVOKE ALL ON ALL TABLES and GRANTs rewrite it)
    "SELECT on the log": (f"GRANT SELECT ON audit.event_log TO {FRIEND}",
                          f"SELECT has_table_privilege('{FRIEND}', 'audit.event_log', 'SELECT')", "event_log"),
    # the events view, as the reader role has it
    "SELECT on the events view": (f"GRANT SELECT ON audit.events TO {FRIEND}",
                                  f"SELECT has_table_privilege('{FRIEND}', 'audit.events', 'SELECT')", "events"),
    # the secrets' ciphertext column
    "a column grant on the ciphertexts": (
        f"GRANT SELECT (ciphertext) ON audit.secret_values TO {FRIEND}",
        f"SELECT has_column_privilege('{FRIEND}', 'audit.secret_values', 'ciphertext', 'SELECT')", "secret_values"),
    # a function the installer remakes (CREATE OR REPLACE keeps the latest ACL)
    "EXECUTE on a function": (
        f"GRANT EXECUTE ON FUNCTION audit.archive_lines(bigint, bigint) TO {FRIEND}",
        f"SELECT has_function_privilege('{FRIEND}', 'audit.archive_lines(bigint, bigint)', 'EXECUTE')",
        "archive_lines"),
    # a constraint changed in place (same oid): the snapshot reads pg_constraint in the transaction's
    # snapshot, but pg_get_constraintdef() looks the oid up in the catalog cache, which holds the latest
    "a foreign key made deferrable": (
        "ALTER TABLE audit.secret_values ALTER CONSTRAINT secret_values_key_fkey DEFERRABLE INITIALLY DEFERRED",
        "SELECT condeferrable FROM pg_constraint WHERE conname = 'secret_values_key_fkey'", "secret_values"),
    # held: a policy (a row of pg_policy the re-run does not rewrite)
    "a policy on the blocks (held)": (
        f"CREATE POLICY t57_all ON audit.blocks FOR SELECT TO {FRIEND} USING (true)",
        "SELECT EXISTS (SELECT FROM pg_policy WHERE polname = 't57_all')", "blocks"),
    # held: a table only the owner has rights on, whose ACL no statement of the re-run rewrites
    "SELECT on the secrets (held)": (f"GRANT SELECT ON audit.secret_values TO {FRIEND}",
                                     f"SELECT has_table_privilege('{FRIEND}', 'audit.secret_values', 'SELECT')",
                                     "secret_values"),
}


@pytest.mark.parametrize("grant", list(CONCURRENT_CHANGES))
def test_c1_a_grant_committed_while_the_rerun_waits_on_a_lock_is_not_recorded(db, connect, friend, grant):
    """Attack: the owner level holds a lock on the log (an uncommitted COMMENT); the superuser runs the
    installer again (no migration pending), which reads "before" and waits at the guards' CREATE OR
    REPLACE TRIGGER. The owner grants the friend a right and commits. docs/installer.md: "a change
    another session commits meanwhile is not taken for the install's". Safe: after the install the
    friend holds no such right, or status names it."""
    statement, held_query, word = CONCURRENT_CHANGES[grant]  # a grant, or another change
    failed = committed_while_waiting(db, connect, lambda: install(db), waiter=f"pid = {db.info.backend_pid}",
                                     statement=statement)
    assert not failed, failed
    held = db.execute(held_query).fetchone()[0]
    problems = problems_of(db)
    assert not held or named(problems, word), f"{grant} was recorded as installed; status: {problems}"


def test_c1_a_grant_committed_while_the_install_script_waits_on_a_lock_is_not_recorded(db, connect, friend):
    """Attack: as above, for the install script (docs/installer.md: "The install script (--sql) records
    the same way"), generated by the superuser and applied with psql -1 (read committed): it reads what
    it finds into a temporary table first, then waits at the guards. The owner grants the friend SELECT
    on the log and commits. Safe: the friend cannot read the log, or status names it."""
    script = install_script(db)
    dbname = db.info.dbname
    failed = committed_while_waiting(
        db, connect, lambda: psql_apply(db, script),
        waiter=f"application_name = 'psql' AND datname = '{dbname}'",
        statement=f"GRANT SELECT ON audit.event_log TO {FRIEND}")
    assert not failed, failed
    held = db.execute(f"SELECT has_table_privilege('{FRIEND}', 'audit.event_log', 'SELECT')").fetchone()[0]
    problems = problems_of(db)
    assert not held or named(problems, "event_log"), f"the script recorded the friend's grant; status: {problems}"


# ============ class 2: a change kept recorded, then undone ============
#
# docs/installer.md: what a re-run found changed and left "stays recorded as the last install had it,
# so status goes on naming it until someone undoes it". _to_record keeps a list's items the change
# took away, appended after what the install left (ORDER BY x.o, the recorded ones at 1000000 + o);
# status compares each relation's snapshot as jsonb (`<>`), in which a list's order counts.

def owner_intake_item(db: psycopg.Connection) -> str:
    return db.execute("SELECT a::text FROM unnest((SELECT relacl FROM pg_class WHERE oid = 'audit.event_intake'::regclass))"
                      " a WHERE a::text LIKE 'audit_owner=%'").fetchone()[0]


def test_c2_the_owners_own_right_taken_kept_recorded_then_given_back_leaves_status_intact(db):
    """Attack (a false alarm): the owner role takes back its own REFERENCES on the intake (its ACL item,
    first in the list, changed in place); status names it; the installer runs again (it gives the owner
    nothing on the intake, so the change stays, and stays named). Then the owner gives it back: the
    ACL is again, item for item and in order, what the install before recorded. Safe: status is
    intact (the change is undone)."""
    original = owner_intake_item(db)
    as_owner(db, "REVOKE REFERENCES ON audit.event_intake FROM audit_owner")
    assert named(problems_of(db), "event_intake")
    install(db)
    assert named(problems_of(db), "event_intake")
    as_owner(db, "GRANT REFERENCES ON audit.event_intake TO audit_owner")
    assert owner_intake_item(db) == original
    problems = problems_of(db)
    assert problems == [], f"the change is undone, and status still names it: {problems}"


def test_c2_held_the_owners_own_right_given_back_then_two_reruns_leave_status_intact(db):
    """Held check: the same, then the installer runs twice. Safe: status intact after each, and the
    second run records nothing new."""
    as_owner(db, "REVOKE REFERENCES ON audit.event_intake FROM audit_owner")
    install(db)
    as_owner(db, "GRANT REFERENCES ON audit.event_intake TO audit_owner")
    install(db)
    assert problems_of(db) == []
    rows = install_records(db)
    install(db)
    assert problems_of(db) == []
    assert install_records(db) == rows


def test_c2_held_a_change_kept_named_partly_undone_then_undone_across_reruns(db, friend):
    """Held check: the owner role grants the friend SELECT on the chain's blocks, adds a permissive
    policy there (relations -> blocks -> policies: a key of three levels, new since the last record)
    and takes back its own REFERENCES on the intake (an item removed); a re-run keeps them named. The
    owner revokes the friend's grant (partly undone): a second re-run; the policy and the intake are
    still named. Then everything is undone: status intact; a third re-run leaves it so, adding no
    record."""
    as_owner(db, f"GRANT SELECT ON audit.blocks TO {FRIEND};"
                 f" CREATE POLICY t57_all ON audit.blocks FOR SELECT TO {FRIEND} USING (true);"
                 " REVOKE REFERENCES ON audit.event_intake FROM audit_owner")
    install(db)
    problems = problems_of(db)
    assert named(problems, "audit.blocks ") and named(problems, "event_intake"), problems
    as_owner(db, f"REVOKE SELECT ON audit.blocks FROM {FRIEND}")
    install(db)
    problems = problems_of(db)
    assert named(problems, "audit.blocks ", "t57_all") and named(problems, "event_intake"), problems
    as_owner(db, "DROP POLICY t57_all ON audit.blocks; GRANT REFERENCES ON audit.event_intake TO audit_owner")
    install(db)  # the intake's ACL order comes back with a re-run (see the test above)
    assert problems_of(db) == []
    rows = install_records(db)
    install(db)
    assert problems_of(db) == [] and install_records(db) == rows


def test_c2_held_the_owner_emptying_its_own_acl_is_named_then_intact_once_given_back(db):
    """Held check (an empty list): the owner takes back every right of its own on the secrets (relacl
    becomes '{}', an empty array, not NULL); a re-run keeps it named; the owner gives them back.
    Safe: named after the re-run, intact once given back."""
    as_owner(db, "REVOKE ALL ON audit.secret_values FROM audit_owner")
    install(db)
    assert named(problems_of(db), "secret_values")
    as_owner(db, "GRANT ALL ON audit.secret_values TO audit_owner")
    problems = problems_of(db)
    assert problems == [], problems


def test_c2_held_the_install_script_applied_twice_keeps_a_change_named_then_intact_once_undone(db, friend):
    """Held check: the owner grants the friend SELECT on the log; the install script is generated and
    applied twice; then the grant is revoked and the script applied once more. Safe: named after each
    of the first two, intact after the third, which records nothing new."""
    as_owner(db, f"GRANT SELECT ON audit.event_log TO {FRIEND}")
    for run in (1, 2):
        psql_apply(db, install_script(db))
        # Since 99_foreign_grants.sql the install takes the friend's right back: gone, or named.
        held = db.execute(f"SELECT has_table_privilege('{FRIEND}', 'audit.event_log', 'SELECT')").fetchone()[0]
        assert not held or named(problems_of(db), "event_log"), f"run {run}"
    as_owner(db, f"REVOKE SELECT ON audit.event_log FROM {FRIEND}")
    assert problems_of(db) == []
    rows = install_records(db)
    psql_apply(db, install_script(db))
    assert problems_of(db) == [] and install_records(db) == rows


def test_c2_held_an_install_script_generated_before_a_change_and_applied_after_it(db, friend):
    """Held check: the superuser generates the script; the owner then grants the friend SELECT on the
    log; the script is applied. Safe: the friend cannot read the log, or status names it."""
    script = install_script(db)
    as_owner(db, f"GRANT SELECT ON audit.event_log TO {FRIEND}")
    psql_apply(db, script)
    held = db.execute(f"SELECT has_table_privilege('{FRIEND}', 'audit.event_log', 'SELECT')").fetchone()[0]
    problems = problems_of(db)
    assert not held or named(problems, "event_log"), problems


# ============ class 3: Django, outside a request, what a transaction was given in one ============
#
# docs/integrations.md: "Outside a request the wrapper sets nothing, but it clears what a transaction
# was given in one (a thread the request started may go on in it)". _wrapper clears in an atomic block
# only when the connection's flag (_pgaudit_py_set) says it set the request's values, and lowers the
# flag when it has cleared them; a clear made inside a savepoint is undone with the savepoint.

class Boom(Exception):
    pass


def _rolled_back_python() -> None:
    with suppress(Boom), __import__("django.db").db.transaction.atomic():
        dj_record("dj.nested.rolled_back")
        raise Boom


def _rolled_back_integrity() -> None:
    from django.db import IntegrityError, connection, transaction

    with suppress(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("INSERT INTO public.dj_orders VALUES (1, 'again')")  # its key is taken


@pytest.mark.parametrize("nested", [_rolled_back_python, _rolled_back_integrity], ids=["an exception", "an IntegrityError"])
def test_c3_held_a_savepoint_rolled_back_after_the_request_does_not_bring_the_requests_values_back(db, django_db, nested):  # noqa: F811
    """Attack: a view starts a thread with the request's context (as docs/integrations.md shows), which
    opens transaction.atomic and writes while the request is served; after the request has ended, it
    runs a nested atomic block that fails (an exception of its own, or an IntegrityError, as
    get_or_create meets) and writes again in the outer block. The nested block's first query cleared
    the request's values in its savepoint and lowered the flag; the savepoint's rollback brings them
    back (unless the clear came before the savepoint: Django's SAVEPOINT goes through the wrappers
    too). Safe: the last event names nobody (the database role)."""
    from django.db import connections, transaction
    from django.http import HttpResponse

    began, ended = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def work() -> None:
        try:
            with transaction.atomic():
                dj_record("dj.thread.in_request")
                began.set()
                ended.wait(10)
                nested()
                dj_record("dj.thread.after_rollback")
        finally:
            connections.close_all()

    def view(request: Any) -> HttpResponse:
        thread = threading.Thread(target=contextvars.copy_context().run, args=(work,))
        thread.start()
        threads.append(thread)
        began.wait(10)
        return HttpResponse("ok")

    assert django_request(view) == 200
    ended.set()
    threads[0].join(10)
    assert events(db, "kind, actor_type, actor_id, tenant_id", "origin = 'record'") == [
        ("dj.thread.in_request", "user", "alice", "t1"), ("dj.thread.after_rollback", "db_role", "app_writer", None)]


@pytest.fixture
def reconfigured(django_db):  # noqa: F811
    """Change the default alias's settings for one test; put back after it."""
    from django.conf import settings
    from django.db import connections

    saved = dict(settings.DATABASES["default"])

    def apply(**changes: Any) -> None:
        connections.close_all()
        settings.DATABASES["default"].update(changes)
        connections.settings = connections.configure_settings(settings.DATABASES)

    try:
        yield apply
    finally:
        connections.close_all()
        forget_django_pools()  # a pool made here would serve a later test, to this test's dropped database
        settings.DATABASES["default"].clear()
        settings.DATABASES["default"].update(saved)
        connections.settings = connections.configure_settings(settings.DATABASES)


def test_c3_a_connection_with_autocommit_false_carries_nothing_past_the_request(db, reconfigured):
    """Attack: the project sets AUTOCOMMIT False (Django's documented way to manage transactions
    itself); a view writes, and the same thread writes again after the request, before the
    transaction Django left open is committed (a persistent connection: Django closes it at the
    request's end only when its autocommit differs from the setting). The wrapper's atomic block
    inside that transaction is a savepoint, released, not committed: the request's values stay in the
    transaction, and the flag was never raised. Safe: the second event names nobody."""
    from django.db import connection
    from django.http import HttpResponse

    reconfigured(AUTOCOMMIT=False)

    def view(request: Any) -> HttpResponse:
        dj_record("dj.request")
        return HttpResponse("ok")

    assert django_request(view) == 200
    dj_record("dj.after_request")
    connection.commit()
    assert events(db, "kind, actor_type, actor_id, tenant_id", "origin = 'record'") == [
        ("dj.request", "user", "alice", "t1"), ("dj.after_request", "db_role", "app_writer", None)]


def test_c3_held_djangos_psycopg_pool_with_session_values_names_nobody_outside_a_request(db, reconfigured):
    """Held check: Django's psycopg pool (OPTIONS pool, CONN_MAX_AGE 0), its connections' sessions given
    a tenant and a correlation id (OPTIONS options); a request writes, then work outside a request
    (the pool gives back the same connection). Safe: the request's event names alice of t1, the other
    nobody, with no tenant or correlation id."""
    from django.db import connections
    from django.http import HttpResponse

    reconfigured(CONN_MAX_AGE=0, OPTIONS={"pool": {"min_size": 1, "max_size": 1}, "options": LEFTOVER})

    def view(request: Any) -> HttpResponse:
        dj_record("dj.pool.request")
        return HttpResponse("ok")

    assert django_request(view) == 200
    connections.close_all()  # what request_finished does: the connection goes back to the pool
    dj_record("dj.pool.command")
    connections.close_all()
    assert events(db, "kind, actor_type, actor_id, tenant_id, correlation_id", "origin = 'record'") == [
        ("dj.pool.request", "user", "alice", "t1", None), ("dj.pool.command", "db_role", "app_writer", None, None)]


def test_c3_held_nested_atomic_blocks_begun_in_a_request_and_ending_after_it(db, django_db):  # noqa: F811
    """Held check: a thread with the request's context opens atomic, writes, opens a nested atomic,
    writes; the request ends; it writes in the nested block, leaves it, and writes in the outer one.
    Safe: the two writes during the request name alice, the two after it nobody."""
    from django.db import connections, transaction
    from django.http import HttpResponse

    began, ended = threading.Event(), threading.Event()
    threads: list[threading.Thread] = []

    def work() -> None:
        try:
            with transaction.atomic():
                dj_record("dj.outer.in")
                with transaction.atomic():
                    dj_record("dj.nested.in")
                    began.set()
                    ended.wait(10)
                    dj_record("dj.nested.after")
                dj_record("dj.outer.after")
        finally:
            connections.close_all()

    def view(request: Any) -> HttpResponse:
        thread = threading.Thread(target=contextvars.copy_context().run, args=(work,))
        thread.start()
        threads.append(thread)
        began.wait(10)
        return HttpResponse("ok")

    assert django_request(view) == 200
    ended.set()
    threads[0].join(10)
    assert events(db, "kind, actor_id", "origin = 'record'") == [
        ("dj.outer.in", "alice"), ("dj.nested.in", "alice"), ("dj.nested.after", "app_writer"),
        ("dj.outer.after", "app_writer")]


def test_c3_held_a_request_served_while_another_threads_transaction_is_open(db, django_db):  # noqa: F811
    """Held check: a worker thread (no request's context) opens atomic on the default alias and
    writes; a request is served meanwhile in the main thread, writing; the worker writes again.
    Safe: the worker's events name nobody, the request's alice."""
    from django.db import connections, transaction
    from django.http import HttpResponse

    began, served = threading.Event(), threading.Event()

    def work() -> None:
        try:
            with transaction.atomic():
                dj_record("dj.worker.before")
                began.set()
                served.wait(10)
                dj_record("dj.worker.after")
        finally:
            connections.close_all()

    worker = threading.Thread(target=work)
    worker.start()
    began.wait(10)

    def view(request: Any) -> HttpResponse:
        dj_record("dj.request")
        return HttpResponse("ok")

    assert django_request(view) == 200
    served.set()
    worker.join(10)
    assert sorted(events(db, "kind, actor_id", "origin = 'record'")) == [
        ("dj.request", "alice"), ("dj.worker.after", "app_writer"), ("dj.worker.before", "app_writer")]


# ============ class 4: SET_CONTEXT's coalesce, through client-side binding ============

def test_c4_held_a_client_cursor_connection_dumping_empty_text_as_null_clears_the_session_values(db, connect):
    """Held check: a connection binding on the client (ClientCursor, as Django's default and pgbouncer
    setups use) whose str dumper makes "" NULL (quoted as NULL into the statement), the session
    holding a tenant and a correlation id (the DSN's options); an outermost block naming the actor
    only, and a nested one clearing the actor (""). Safe: no tenant nor correlation id recorded, and
    the nested event names the database role (its actor cleared), not a session's actor."""
    writer = connect("app_writer", options=LEFTOVER, cursor_factory=ClientCursor)
    writer.adapters.register_dumper(str, EmptyIsNullDumper)
    with audit_context(writer, actor_id="alice"):
        record(writer, "client.outer")
        with audit_context(writer, actor_id=""):
            record(writer, "client.nested")
    assert events(db, "kind, actor_type, actor_id, tenant_id, correlation_id", "origin = 'record'") == [
        ("client.outer", "user", "alice", None, None), ("client.nested", "db_role", "app_writer", None, None)]
