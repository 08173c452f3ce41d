"""record(): what it writes, whom it names, what it refuses, and idempotent retries."""

from __future__ import annotations

import threading

import psycopg
import pytest

from pgaudit_py import (
    IdempotencyConflict,
    InvalidArgument,
    InvalidContext,
    InvalidKind,
    InvalidPayload,
    audit_context,
    record,
    seal,
)


def test_record_writes_one_pending_event_with_database_role_as_actor(db, connect, counts):
    writer = connect("app_writer", application_name="shop")
    event = record(writer, "order.refunded", target_type="order", target_id="o-1",
                   payload={"amount": 12.5, "note": "ünïcode"}, outcome="failure")
    assert event is not None and event.pending and event.seq is None
    row = db.execute("SELECT kind, actor_type, actor_id, db_role, application_name, target_type,"
                     " target_id, payload, outcome, client_addr::text, id, intake_id FROM audit.event_intake").fetchall()
    assert row == [("order.refunded", "db_role", "app_writer", "app_writer", "shop", "order", "o-1",
                    {"amount": 12.5, "note": "ünïcode"}, "failure", "127.0.0.1/32", event.id, event.intake_id)]
    assert event.intake_id is not None
    assert counts() == (1, 0)


def test_context_names_actor_tenant_correlation_and_client(db, connect):
    writer = connect("app_writer")
    with audit_context(writer, actor_type="user", actor_id="u-7", tenant_id="t1",
                       correlation_id="req-9", client_addr="203.0.113.5"):
        record(writer, "user.login")
    # Settings end with the transaction: the next event names the database role again.
    record(writer, "user.logout")
    rows = db.execute("SELECT kind, tenant_id, actor_type, actor_id, correlation_id, client_addr::text"
                      " FROM audit.event_intake ORDER BY intake_id").fetchall()
    assert rows == [("user.login", "t1", "user", "u-7", "req-9", "203.0.113.5/32"),
                    ("user.logout", None, "db_role", "app_writer", None, "127.0.0.1/32")]


def test_arguments_win_over_context(db, connect):
    writer = connect("app_writer")
    with audit_context(writer, actor_id="u-1", tenant_id="t1"):
        record(writer, "x.y", tenant_id="t2", actor_type="service", actor_id="billing")
    assert db.execute("SELECT tenant_id, actor_type, actor_id FROM audit.event_intake").fetchall() == [
        ("t2", "service", "billing")]


def test_set_role_is_the_recorded_database_role(db, connect):
    db.execute("CREATE ROLE app_clerk NOLOGIN IN ROLE audit_writer")
    db.execute("GRANT app_clerk TO app_writer")
    writer = connect("app_writer")
    writer.execute("SET ROLE app_clerk")
    event = record(writer, "x.y")
    assert event is not None and (event.db_role, event.actor_id) == ("app_clerk", "app_clerk")


@pytest.mark.parametrize("kind", ["", "1abc", "order refunded", "order;drop", "é.x", "a" * 129, None])
def test_bad_kind_is_refused_and_nothing_written(connect, counts, kind):
    writer = connect("app_writer")
    with pytest.raises(InvalidKind, match="invalid event kind"):
        record(writer, kind)  # type: ignore[arg-type]
    assert counts() == (0, 0)


def test_kind_accepts_the_documented_alphabet(connect):
    writer = connect("app_writer")
    event = record(writer, "Order_2/refund-partial.v1")
    assert event is not None and event.kind == "Order_2/refund-partial.v1"


@pytest.mark.parametrize("payload, message", [
    ([1, 2], "payload must be a JSON object, got array"),
    ("text", "payload must be a JSON object, got string"),
    ({"blob": "x" * 70000}, "more than the limit of 65536"),
])
def test_bad_payload_is_refused(connect, counts, payload, message):
    writer = connect("app_writer")
    with pytest.raises(InvalidPayload, match=message):
        record(writer, "x.y", payload=payload)  # type: ignore[arg-type]
    assert counts() == (0, 0)


@pytest.mark.parametrize("arguments, message", [
    ({"outcome": "maybe"}, "invalid outcome"),
    ({"target_id": "x" * 513}, "target_id is longer than 512"),
    ({"tenant_id": "t" * 257}, "tenant_id is longer than 256"),
    ({"idempotency_key": "k" * 257}, "idempotency_key is longer than 256"),
])
def test_bad_arguments_are_refused(connect, counts, arguments, message):
    writer = connect("app_writer")
    with pytest.raises(InvalidArgument, match=message):
        record(writer, "x.y", **arguments)
    assert counts() == (0, 0)


def test_bad_client_address_in_context_is_refused(connect, counts):
    writer = connect("app_writer")
    with pytest.raises(InvalidContext, match="not an IP address") as caught, \
            audit_context(writer, client_addr="nonsense"):
        record(writer, "x.y")
    assert "nonsense" not in str(caught.value)  # a message is not the place for the value: it ends up in logs
    assert counts() == (0, 0)


def test_aborted_transaction_leaves_no_event(connect, counts):
    writer = connect("app_writer")
    with pytest.raises(RuntimeError), writer.transaction():
        record(writer, "x.y")
        raise RuntimeError("application failed")
    assert counts() == (0, 0)


def test_idempotent_retry_returns_the_first_event_before_and_after_sealing(db, connect, counts):
    writer = connect("app_writer")
    first = record(writer, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="k1")
    again = record(writer, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="k1")
    assert first is not None and again is not None
    assert again.id == first.id and again.pending
    seal(db)
    sealed = record(writer, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="k1")
    assert sealed is not None and sealed.id == first.id and sealed.seq == 1 and not sealed.pending
    # The same key in another tenant is another event.
    other = record(writer, "order.paid", tenant_id="t2", payload={"n": 1}, idempotency_key="k1")
    assert other is not None and other.id != first.id
    assert counts() == (1, 1)


def test_idempotent_retry_returns_the_first_event_when_the_sealer_set_it_aside(db, connect):
    """The first event, quarantined by the sealer, is still the first: a retry gets it back (not
    NULL, not a second event), and another role still gets PA004."""
    writer = connect("app_writer")
    first = record(writer, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="k1")
    assert first is not None
    db.execute("SET session_replication_role = replica")  # as seal() does with an event the log refuses
    db.execute("""INSERT INTO audit.quarantine SELECT i.*, now(), '54000', 'set aside' FROM audit.event_intake i
                   WHERE i.idempotency_key = 'k1'; DELETE FROM audit.event_intake WHERE idempotency_key = 'k1'""")
    db.execute("RESET session_replication_role")
    again = record(writer, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="k1")
    assert again is not None and again.id == first.id and again.pending and again.seq is None
    db.execute("CREATE ROLE app_idem_retrier NOLOGIN IN ROLE audit_writer")
    db.execute("GRANT app_idem_retrier TO app_writer")
    clerk = connect("app_writer")
    clerk.execute("SET ROLE app_idem_retrier")
    with pytest.raises(IdempotencyConflict):
        record(clerk, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="k1")
    assert db.execute("SELECT count(*) FROM audit.events WHERE idempotency_key = 'k1'").fetchone() == (0,)


@pytest.mark.parametrize("tenant", ["t1", None])
def test_an_idempotent_retry_finds_its_key_by_the_index_not_by_reading_every_key(db, connect, tenant):
    """A retry looked its key up with tenant_id IS NOT DISTINCT FROM, which no index serves: every
    retry read the whole of idempotency_keys, which keeps a row for every event with a key until it
    is pruned. By the unique index on (tenant_id, idempotency_key), with or without a tenant."""
    db.execute("""INSERT INTO audit.idempotency_keys (tenant_id, idempotency_key, event_id, request_hash)
                  SELECT t, 'other' || n, gen_random_uuid(), '\\x00' FROM generate_series(1, 5000) n,
                         (VALUES ('t1'), (NULL)) AS v(t);
                  ANALYZE audit.idempotency_keys""")
    writer = connect("app_writer", autocommit=False)
    first = record(writer, "order.paid", tenant_id=tenant, payload={"n": 1}, idempotency_key="k1")
    writer.commit()
    again = record(writer, "order.paid", tenant_id=tenant, payload={"n": 1}, idempotency_key="k1")
    scans = writer.execute("SELECT seq_scan, idx_scan FROM pg_stat_xact_user_tables"
                           " WHERE relid = 'audit.idempotency_keys'::regclass").fetchone()
    writer.commit()
    assert first is not None and again is not None and again.id == first.id
    assert scans is not None and scans[0] == 0 and scans[1] >= 1, scans
    assert db.execute("SELECT count(*) FROM audit.event_intake WHERE idempotency_key = 'k1'").fetchone() == (1,)


def test_idempotency_key_with_different_content_is_refused(connect, counts):
    writer = connect("app_writer")
    record(writer, "order.paid", payload={"n": 1}, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict, match="already used for a different event"):
        record(writer, "order.paid", payload={"n": 2}, idempotency_key="k1")
    with pytest.raises(IdempotencyConflict):
        record(writer, "order.refunded", payload={"n": 1}, idempotency_key="k1")
    assert counts() == (1, 0)


FIRST = {"tenant_id": "t1", "actor_type": "user", "actor_id": "alice", "target_type": "order", "target_id": "o-1",
         "payload": {"n": 1}, "outcome": "success", "correlation_id": "req-1"}


@pytest.mark.parametrize("changed", [
    {"actor_type": "service"}, {"actor_id": "bob"}, {"target_type": "invoice"}, {"target_id": "o-2"},
    {"outcome": "failure"}, {"correlation_id": "req-2"}, {"correlation_id": None}, {"target_id": None},
], ids=lambda changed: "-".join(f"{k}={v}" for k, v in changed.items()))
def test_idempotency_key_with_another_actor_target_outcome_or_correlation_is_refused(db, connect, counts, changed):
    """The key stands for the whole request: a retry that names someone or something else is not the
    same request, and must neither return the first event nor write a second."""
    writer = connect("app_writer")
    first = record(writer, "order.paid", idempotency_key="k1", **FIRST)  # type: ignore[arg-type]
    assert first is not None
    with pytest.raises(IdempotencyConflict, match="already used for a different event") as caught:
        record(writer, "order.paid", idempotency_key="k1", **{**FIRST, **changed})  # type: ignore[arg-type]
    # The first event is not named: a writer may not read it, and its id tells when it was made.
    assert caught.value.detail == ("The first event with this key differs in kind, actor, target, payload, outcome,"
                                   " correlation id or database role.")
    assert counts() == (1, 0)
    assert db.execute("SELECT id, actor_type, actor_id, target_type, target_id, outcome, correlation_id"
                      " FROM audit.event_intake").fetchall() == [
        (first.id, "user", "alice", "order", "o-1", "success", "req-1")]
    assert db.execute("SELECT count(*) FROM audit.idempotency_keys").fetchone() == (1,)


def test_idempotency_compares_the_actor_and_correlation_the_context_supplies(db, connect, counts):
    """Actor and correlation id often come from audit_context rather than arguments: a retry under
    another user's context is another request."""
    writer = connect("app_writer")
    with audit_context(writer, actor_id="alice", correlation_id="req-1"):
        first = record(writer, "order.paid", idempotency_key="k1")
    with audit_context(writer, actor_id="alice", correlation_id="req-1"):
        again = record(writer, "order.paid", idempotency_key="k1")
    assert first is not None and again is not None and again.id == first.id
    for context in ({"actor_id": "mallory", "correlation_id": "req-1"}, {"actor_id": "alice", "correlation_id": "req-9"}):
        with pytest.raises(IdempotencyConflict), audit_context(writer, **context):
            record(writer, "order.paid", idempotency_key="k1")
    assert counts() == (1, 0)


def wait_until_blocked(db: psycopg.Connection, conn: psycopg.Connection) -> None:
    """Wait until `conn`'s backend is waiting on a lock (deterministic, no sleeps)."""
    pid = conn.info.backend_pid
    for _ in range(500):
        row = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        threading.Event().wait(0.01)
    raise AssertionError("the second connection never waited on the first")


def test_racing_retries_of_a_new_key_write_one_event(db, connect):
    first_conn = connect("app_writer", autocommit=False)
    second_conn = connect("app_writer")
    first = record(first_conn, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="same")
    results: list[object] = []
    racer = threading.Thread(target=lambda: results.append(
        record(second_conn, "order.paid", tenant_id="t1", payload={"n": 1}, idempotency_key="same")))
    racer.start()
    wait_until_blocked(db, second_conn)  # the second holds off until the first commits
    first_conn.commit()
    racer.join(10)
    assert first is not None and [getattr(r, "id", None) for r in results] == [first.id]
    assert db.execute("SELECT count(*) FROM audit.events WHERE idempotency_key = 'same'").fetchone() == (1,)


def test_racing_retries_of_a_sealed_key_write_nothing(db, connect, counts):
    original = record(connect("app_writer"), "order.paid", payload={"n": 1}, idempotency_key="same")
    seal(db)
    barrier = threading.Barrier(4)
    results: list[object] = []

    def retry(conn: psycopg.Connection) -> None:
        barrier.wait()
        results.append(record(conn, "order.paid", payload={"n": 1}, idempotency_key="same"))

    racers = [threading.Thread(target=retry, args=(connect("app_writer"),)) for _ in range(4)]
    for t in racers:
        t.start()
    for t in racers:
        t.join(10)
    assert original is not None
    assert [(getattr(r, "id", None), getattr(r, "seq", None)) for r in results] == [(original.id, 1)] * 4
    assert counts() == (0, 1)


def test_best_effort_logs_storage_failure_and_keeps_the_transaction(db, connect, caplog):
    db.execute("REVOKE EXECUTE ON FUNCTION audit.record(text, text, text, text, text, text, jsonb, text, text, text)"
               " FROM audit_writer")
    writer = connect("app_writer", autocommit=False)
    writer.execute("CREATE TEMP TABLE app_work (n int)")
    assert record(writer, "x.y", payload={"secret": "hunter2"}, best_effort=True) is None
    writer.execute("INSERT INTO app_work VALUES (1)")  # the caller's transaction is still usable
    writer.commit()
    assert "x.y not recorded: InsufficientPrivilege" in caplog.text
    assert "hunter2" not in caplog.text


def test_best_effort_still_raises_on_bad_input(connect, counts):
    with pytest.raises(InvalidKind):
        record(connect("app_writer"), "bad kind", best_effort=True)
    assert counts() == (0, 0)
