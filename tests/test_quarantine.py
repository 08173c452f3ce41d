"""No single event stops the sealer: what the log cannot take is set aside with its error, visibly,
and the events around it are sealed; a captured row never grows past what the log can hash."""

from __future__ import annotations

import hashlib
import json
import os

import psycopg
import pytest

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
    """A tenant too long for the log's index would have made the event unsealable: the intake refuses
    it in the writer's statement (so the write fails, unaudited nothing), and the sealer goes on."""
    attacker.execute("CREATE TABLE public.acct (id int PRIMARY KEY)")
    enable_tracking(connect("app_maintainer"), "public.acct")
    writer = connect("app_writer")
    db.execute("GRANT ALL ON public.acct TO app_writer")
    with pytest.raises(psycopg.errors.CheckViolation, match="tenant_id_at_most_256_characters"), \
            audit_context(writer, tenant_id=os.urandom(5_000).hex()):  # incompressible
        writer.execute("INSERT INTO public.acct VALUES (1)")
    record(writer, "next.one")
    assert seal(db).sealed == 2  # audit.tracking_enabled, next.one
    assert seal_status(db).quarantined == 0
    assert db.execute("SELECT count(*) FROM public.acct").fetchone() == (0,)


def test_the_quarantine_event_stays_small(db):
    """What the sealer says about an event it set aside is bounded, whatever the event holds: here a
    pending event of an earlier release, from before the writers bounded its values."""
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload,
                                                  origin, tenant_id)
                  VALUES ('user', 'x', repeat('k', 5000), 'success', '1', now(), '{}', 'record', repeat('t', 5000))""")
    assert seal(db).sealed == 0
    assert seal(db).sealed == 1
    payload = db.execute("SELECT payload FROM audit.event_log WHERE kind = 'audit.event_quarantined'").fetchone()[0]
    assert (len(payload["tenant_id"]), len(payload["kind"]), payload["sqlstate"]) == (256, 128, "23514")


def test_an_event_whose_text_is_too_large_is_sealed_with_its_longest_values_omitted(db, connect, attacker):
    """A control character takes one byte in a row image and six in its JSON text (\\u0001): an
    UPDATE of 900 kB of them, in 20 columns of 45 kB, carries the old and new values twice (images
    and "changed"), about 21 MB of text, past the 16 MiB a sealed event may be, though no one value
    prints to over 1 MiB. The sealer's second attempt stores the values that print longest by their
    size and SHA-256, as the capture stores its largest, until each image prints to at most 1 MiB:
    the event is sealed, and every later change of the row with it. (Wild numbers, which printed
    past the 1 GB PostgreSQL can allocate, are stored as markers at the first attempt:
    tests/test_hostile_json.py.)"""
    columns = ", ".join(f"t{i} text" for i in range(20))
    attacker.execute(f"CREATE TABLE public.docs (id int PRIMARY KEY, {columns})")
    enable_tracking(connect("app_maintainer"), "public.docs")
    db.execute("GRANT ALL ON public.docs TO app_writer")
    writer = connect("app_writer")
    values = ", ".join(["repeat(chr(1), 45000)"] * 20)
    writer.execute(f"INSERT INTO public.docs VALUES (1, {values})")  # 5.4 MB of text: seals as it is
    assignments = ", ".join(f"t{i} = repeat(chr(2), 45000)" for i in range(20))
    writer.execute(f"UPDATE public.docs SET {assignments} WHERE id = 1")
    writer.execute("UPDATE public.docs SET t0 = 'short' WHERE id = 1")
    assert seal(db).sealed == 4  # audit.tracking_enabled, the insert and both updates
    assert seal_status(db).quarantined == 0
    inserted, updated, shortened = db.execute(
        "SELECT row_after, changed, octet_length(row_after::text) FROM audit.event_log"
        " WHERE kind LIKE 'public.docs.%' ORDER BY seq").fetchall()
    assert inserted[2] > 5_000_000 and not any("$omitted" in str(v) for v in inserted[0].values())
    printed = json.dumps("\x02" * 45000).encode()
    marker = {"$omitted": {"bytes": len(printed), "sha256": hashlib.sha256(printed).hexdigest()}}
    omitted = sorted(k for k, v in updated[0].items() if v == marker)
    kept = sorted(k for k, v in updated[0].items() if v == "\x02" * 45000)
    # Longest first, ties by name, until the rest print to at most 1 MiB: 3 of 270,002 bytes kept.
    assert (len(omitted), kept) == (17, ["t7", "t8", "t9"]) and updated[2] <= 1048576 + 17 * 200
    assert set(updated[1]) == {f"t{i}" for i in range(20)}  # every value changed, the omitted ones too
    assert set(shortened[1]) == {"t0"} and shortened[0]["t0"] == "short"
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,) and verify_chain(db).ok


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


def test_no_registered_schema_can_refuse_pgaudit_pys_own_events(db, connect):
    """A maintainer cannot register a type for a reserved kind; and a schema that a reserved kind
    has anyway (an earlier release let one be registered) marks its events, never refuses them:
    audit.event_quarantined must always be writable, or no round would end."""
    maintainer = connect("app_maintainer")
    with pytest.raises(psycopg.Error) as caught:
        maintainer.execute("SELECT audit.register_event_type('audit.event_quarantined',"
                           " '{\"type\": \"object\", \"required\": [\"never\"]}', true)")
    assert caught.value.sqlstate == "PA001"
    db.execute("""INSERT INTO audit.event_types (kind, schema, strict, registered_by)
                  VALUES ('audit.event_quarantined', '{"type": "object", "required": ["never"]}', true, 'x')""")
    unsealable(db)
    record(db, "after.it")
    assert seal(maintainer).sealed == 1
    assert seal(maintainer).sealed == 1
    assert db.execute("SELECT schema_valid FROM audit.event_log WHERE kind = 'audit.event_quarantined'").fetchone() \
        == (False,)
