"""No single event stops the sealer: what the log cannot take is set aside with its error, visibly,
and the events around it are sealed; a captured row never grows past what the log can hash."""

from __future__ import annotations

import hashlib
import os

from pgaudit_py import audit_context, enable_tracking, record, seal, seal_status
from pgaudit_py.chain import verify_chain


def unsealable(db, kind: str = "bad kind!") -> None:
    """What only a superuser can put in the intake, or an earlier release left: a kind the log refuses."""
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload, origin)
                  VALUES ('user', 'x', %s, 'success', '1', now(), '{}', 'record')""", (kind,))


def test_an_event_the_log_refuses_is_quarantined_and_the_rest_sealed(db, connect, counts):
    writer = connect("app_writer")
    record(writer, "before.it")
    unsealable(db)
    record(writer, "after.it")
    result = seal(db)
    assert (result.sealed, result.first_seq, result.last_seq) == (2, 1, 2)
    assert [r[0] for r in db.execute("SELECT kind FROM audit.event_log ORDER BY seq")] == ["before.it", "after.it"]
    assert db.execute("SELECT kind, sqlstate FROM audit.quarantine").fetchall() == [("bad kind!", "23514")]
    assert seal_status(db).quarantined == 1
    assert seal(db).sealed == 1  # the audit.event_quarantined event, sealed next round
    event = db.execute("SELECT outcome, origin, payload FROM audit.event_log WHERE kind = 'audit.event_quarantined'"
                       ).fetchone()
    assert event[:2] == ("failure", "system") and event[2]["kind"] == "bad kind!" and event[2]["sqlstate"] == "23514"
    assert counts() == (0, 3)
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,) and verify_chain(db).ok


def test_a_writer_cannot_wedge_the_sealer_with_a_huge_tenant(db, connect, attacker):
    """A tenant too long for the log's index goes to the quarantine; the event that says so stays small."""
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY)")
    enable_tracking(connect("app_maintainer"), "public.acct")
    writer = connect("app_writer")
    db.execute("GRANT ALL ON public.acct TO app_writer")
    with audit_context(writer, tenant_id=os.urandom(5_000).hex()):  # incompressible
        writer.execute("INSERT INTO public.acct VALUES (1)")
    record(writer, "next.one")
    assert seal(db).sealed == 2  # audit.tracking_enabled, next.one
    assert db.execute("SELECT kind, sqlstate FROM audit.quarantine").fetchall() == [("public.acct.insert", "54000")]
    assert seal(db).sealed == 1
    payload = db.execute("SELECT payload FROM audit.event_log WHERE kind = 'audit.event_quarantined'").fetchone()[0]
    assert len(payload["tenant_id"]) == 256
    record(writer, "and.more")
    assert seal(db).sealed == 1


def test_a_huge_captured_value_is_stored_by_size_and_hash(db, connect, attacker):
    """A row image keeps every column, the largest values past 1 MiB replaced by their size and
    SHA-256, so that the sealer (and list_events) can always take it: an UPDATE of a 140 MB value used
    to make every seal() fail (its "changed" passed jsonb's 256 MB). 20 MiB shows the same, faster."""
    attacker.execute("CREATE TABLE public.docs (id int PRIMARY KEY, title text, body text)")
    enable_tracking(connect("app_maintainer"), "public.docs")
    attacker.execute("INSERT INTO public.docs VALUES (1, 'small', 'tiny')")
    attacker.execute("UPDATE public.docs SET body = repeat('0123456789abcdef', 20 * 65536)")
    assert seal(db).sealed == 3
    before, after, changed = db.execute("SELECT row_before, row_after, changed FROM audit.event_log"
                                        " WHERE kind = 'public.docs.update'").fetchone()
    body = "0123456789abcdef" * 20 * 65536
    marker = {"$omitted": {"bytes": len(body) + 2, "sha256": hashlib.sha256(f'"{body}"'.encode()).hexdigest()}}
    assert before == {"id": 1, "title": "small", "body": "tiny"}
    assert after == {"id": 1, "title": "small", "body": marker}
    assert changed == {"body": {"old": "tiny", "new": marker}}
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,) and verify_chain(db).ok
