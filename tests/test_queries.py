"""list_events, count_events and monthly_event_counts against what the log holds."""

from __future__ import annotations

import random
import re
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from pgaudit_py import (
    InvalidArgument,
    InvalidKind,
    audit_context,
    calls,
    count_events,
    list_events,
    monthly_event_counts,
    record,
    seal,
)


@pytest.fixture
def sample(db, connect):
    """Nine events over two tenants and two actors: six sealed, three pending."""
    writer = connect("app_writer")
    with audit_context(writer, actor_type="user", actor_id="alice", tenant_id="t1", correlation_id="c1"):
        record(writer, "order.created", target_type="order", target_id="o-1")
        record(writer, "order.paid", target_type="order", target_id="o-1")
        record(writer, "order.refunded", target_type="order", target_id="o-1", outcome="failure")
    with audit_context(writer, actor_type="user", actor_id="bob", tenant_id="t2"):
        record(writer, "order.created", target_type="order", target_id="o-2")
        record(writer, "user.login", target_type="user", target_id="bob")
        record(writer, "orders.exported")
    seal(db)
    with audit_context(writer, actor_type="user", actor_id="alice", tenant_id="t1"):
        record(writer, "user.login", target_type="user", target_id="alice")
        record(writer, "order.created", target_type="order", target_id="o-3")
    with audit_context(writer, actor_type="service", actor_id="cron", tenant_id="t2"):
        record(writer, "order.paid", target_type="order", target_id="o-2")
    return connect("app_reader")


def kinds(events):
    return [(e.seq, e.kind) for e in events]


def test_newest_first_with_pending_leading(sample):
    events = list_events(sample)
    assert kinds(events) == [(None, "order.paid"), (None, "order.created"), (None, "user.login"),
                             (6, "orders.exported"), (5, "user.login"), (4, "order.created"),
                             (3, "order.refunded"), (2, "order.paid"), (1, "order.created")]
    assert [e.pending for e in events] == [True] * 3 + [False] * 6


@pytest.mark.parametrize("filters, expected", [
    ({"tenant_id": "t1"}, [(None, "order.created"), (None, "user.login"), (3, "order.refunded"),
                           (2, "order.paid"), (1, "order.created")]),
    ({"kind_prefix": "order."}, [(None, "order.paid"), (None, "order.created"), (4, "order.created"),
                                 (3, "order.refunded"), (2, "order.paid"), (1, "order.created")]),
    ({"kind_prefix": "order"}, [(None, "order.paid"), (None, "order.created"), (6, "orders.exported"),
                                (4, "order.created"), (3, "order.refunded"), (2, "order.paid"),
                                (1, "order.created")]),
    ({"target_type": "order", "target_id": "o-2"}, [(None, "order.paid"), (4, "order.created")]),
    ({"correlation_id": "c1"}, [(3, "order.refunded"), (2, "order.paid"), (1, "order.created")]),
    ({"outcome": "failure"}, [(3, "order.refunded")]),
    ({"actor_type": "service"}, [(None, "order.paid")]),
    ({"actor_id": "bob", "tenant_id": "t2"}, [(6, "orders.exported"), (5, "user.login"), (4, "order.created")]),
    ({"tenant_id": "t2", "kind_prefix": "user."}, [(5, "user.login")]),
])
def test_filters(sample, filters, expected):
    assert kinds(list_events(sample, **filters)) == expected


def test_time_window(db, sample):
    cut = db.execute("SELECT occurred_at FROM audit.event_log WHERE seq = 4").fetchone()[0]
    assert kinds(list_events(sample, until=cut)) == [(3, "order.refunded"), (2, "order.paid"),
                                                     (1, "order.created")]
    assert [e.seq for e in list_events(sample, since=cut)] == [None, None, None, 6, 5, 4]


def test_backward_keyset_pages(sample):
    first = list_events(sample, page_size=4)
    assert kinds(first) == [(None, "order.paid"), (None, "order.created"), (None, "user.login"),
                            (6, "orders.exported")]
    second = list_events(sample, before_seq=6, page_size=4)
    assert [e.seq for e in second] == [5, 4, 3, 2]
    assert [e.seq for e in list_events(sample, before_seq=2, page_size=4)] == [1]


def test_forward_paging_covers_sealed_events_only(sample):
    assert [e.seq for e in list_events(sample, since_seq=0, page_size=4)] == [1, 2, 3, 4]
    assert [e.seq for e in list_events(sample, since_seq=4, page_size=4)] == [5, 6]
    assert list_events(sample, since_seq=6) == []
    assert [e.seq for e in list_events(sample, since_seq=1, before_seq=4)] == [2, 3]


@pytest.mark.parametrize("arguments, error, message", [
    ({"page_size": 501}, InvalidArgument, "page_size must be between 1 and 500, got 501"),
    ({"page_size": 0}, InvalidArgument, "page_size must be between 1 and 500, got 0"),
    ({"outcome": "meh"}, InvalidArgument, "invalid outcome"),
    ({"kind_prefix": "order%"}, InvalidKind, "^invalid kind prefix$"),  # never the prefix
    ({"since": datetime(2030, 1, 1, tzinfo=timezone.utc), "until": datetime(2020, 1, 1, tzinfo=timezone.utc)},
     InvalidArgument, "since .* is after until"),
])
def test_bad_list_arguments(sample, arguments, error, message):
    with pytest.raises(error, match=message):
        list_events(sample, **arguments)


def test_each_single_filter_seeks_its_own_index(db):
    """On a log where each filter's value is rare, the sealed part of list_events with that filter
    alone seeks an index of its own, rather than reading the log newest first until a page is full."""
    db.execute("""SELECT audit.record(kind => CASE WHEN rare THEN 'refund.approved' ELSE 'order.paid' END,
                                      tenant_id => CASE WHEN rare THEN 'rare' ELSE 't' || (n % 5) END,
                                      actor_id => CASE WHEN rare THEN 'rare' ELSE 'u' || (n % 50) END,
                                      target_type => CASE WHEN rare THEN 'refund' ELSE 'order' END,
                                      target_id => CASE WHEN rare THEN 'r-1' ELSE 'o-' || (n % 500) END,
                                      correlation_id => CASE WHEN rare THEN 'rare' END,
                                      outcome => CASE WHEN rare THEN 'failure' ELSE 'success' END)
                    FROM generate_series(1, 20000) n, LATERAL (SELECT n % 1000 = 0 AS rare) r""")
    seal(db, 100_000)
    db.execute("ANALYZE audit.event_log")
    for filters, index in {"e.tenant_id = 'rare'": "event_log_tenant_seq",
                           "e.kind >= 'refund.' AND e.kind < 'refund.~'": "event_log_kind_seq",
                           "e.target_type = 'refund'": "event_log_target_type_seq",
                           "e.target_id = 'r-1'": "event_log_target_seq",
                           "e.actor_id = 'rare'": "event_log_actor_seq",
                           "e.correlation_id = 'rare'": "event_log_correlation",
                           "e.outcome = 'failure'": "event_log_failure_seq"}.items():
        plan = "\n".join(r[0] for r in db.execute(
            f"EXPLAIN SELECT * FROM audit.events e WHERE NOT e.pending AND {filters} ORDER BY e.seq DESC LIMIT 50"))
        used = re.findall(r"(?:Scan(?: Backward)? using|Bitmap Index Scan on) (\S+) ", plan)
        # The plan names the partitions' indexes: each is a part of one of the log's.
        parents = {db.execute("SELECT i.inhparent::regclass::text FROM pg_inherits i"
                              " WHERE i.inhrelid = ('audit.' || %s)::regclass", [name]).fetchone()[0] for name in used}
        assert parents == {f"audit.{index}"}, plan
    assert [e.kind for e in list_events(db, outcome="failure", page_size=500)] == ["refund.approved"] * 20


def test_count_events_total_and_by_prefix(sample):
    counted = count_events(sample, by_kind_prefix=["order.", "user.", "none."])
    assert (counted.count, counted.by_kind_prefix) == (9, {"order.": 6, "user.": 2, "none.": 0})
    t2 = count_events(sample, tenant_id="t2", by_kind_prefix=["order"])
    assert (t2.count, t2.by_kind_prefix) == (4, {"order": 3})
    assert count_events(sample, since=datetime.now(timezone.utc) + timedelta(hours=1)).count == 0


def test_count_refuses_bad_prefix(sample):
    with pytest.raises(InvalidKind, match="invalid kind prefix"):
        count_events(sample, by_kind_prefix=["ok", "not ok"])


def test_monthly_counts_include_empty_months(db, sample):
    # Two events written in earlier months (as the superuser, straight into the intake).
    db.execute("""
        INSERT INTO audit.event_intake (tenant_id, actor_type, db_role, kind, outcome, txid, occurred_at, payload)
        SELECT 't1', 'user', 'x', k, 'success', pg_current_xact_id(),
               date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(months => m) + interval '1 day', '{}'
          FROM (VALUES ('order.old', 2), ('user.old', 2), ('order.ancient', 20)) AS v(k, m)""")
    seal(db)
    months = monthly_event_counts(sample, tenant_id="t1", month_count=4, by_kind_prefix=["order.", "user."])
    this_month = datetime.now(timezone.utc).date().replace(day=1)
    assert [m.month for m in months][-1] == this_month
    assert [(m.count, m.by_kind_prefix) for m in months] == [
        (0, {"order.": 0, "user.": 0}),
        (2, {"order.": 1, "user.": 1}),
        (0, {"order.": 0, "user.": 0}),
        (5, {"order.": 4, "user.": 1}),
    ]


def test_a_filtered_page_of_pending_events_is_the_newest_that_match(db, connect):
    """A pending page is found in two steps (its oldest intake_id first, reading no row image): with
    a filter and a cursor, each page holds exactly the next events that match, newest first."""
    writer = connect("app_writer")
    for n in range(30):
        record(writer, "even.kind" if n % 2 == 0 else "odd.kind", tenant_id="t1" if n % 3 == 0 else "t2",
               target_type="n", target_id=str(n))
    reader = connect("app_reader")
    expected = [str(n) for n in reversed(range(30)) if n % 2 == 0 and n % 3 != 0]
    got, cursor = [], None
    while True:
        page = [e for e in list_events(reader, kind_prefix="even.", tenant_id="t2", page_size=4,
                                       before_intake_id=cursor) if e.pending]
        if not page:
            break
        assert len(page) <= 4
        got += [e.target_id for e in page]
        cursor = page[-1].intake_id
    assert got == expected


@pytest.mark.parametrize("month_count", [0, 121])
def test_monthly_refuses_bad_month_count(sample, month_count):
    with pytest.raises(InvalidArgument, match="month_count must be between 1 and 120"):
        monthly_event_counts(sample, month_count=month_count)


def test_every_pending_event_is_reachable_by_paging_and_captured_ones_have_their_id(db, connect):
    """More pending events than a page holds: before_intake_id pages back through all of them, then
    into the sealed log; a captured pending event has its id, and keeps it when sealed."""
    db.execute("""CREATE TABLE public.items (id int PRIMARY KEY);
                  GRANT INSERT ON public.items TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.items')")
    record(connect("app_writer"), "sealed.first")
    seal(db)
    connect("app_writer").execute("INSERT INTO items SELECT generate_series(1, 1200)")
    reader = connect("app_reader")
    seen, cursor = [], None
    while True:
        page = list_events(reader, page_size=500, before_intake_id=cursor)
        pending = [e for e in page if e.pending]
        seen += pending
        if len(pending) < len(page) or not page:
            sealed = [e for e in page if not e.pending]
            break
        cursor = pending[-1].intake_id
    assert len(seen) == 1200 and len({e.intake_id for e in seen}) == 1200
    assert [e.intake_id for e in seen] == sorted((e.intake_id for e in seen), reverse=True)
    assert all(e.id is not None for e in seen)
    assert [e.kind for e in sealed] == ["sealed.first", "audit.tracking_enabled"]  # the last page goes on, sealed
    ids = {e.id for e in seen}
    while seal(db).sealed:
        pass
    assert {r[0] for r in db.execute("SELECT id FROM audit.event_log WHERE kind = 'public.items.insert'")} == ids


@pytest.mark.parametrize("value", ["50", 50.0, True, b"50"])
def test_an_integer_argument_given_anything_else_is_refused_before_it_is_sent(connect, value):
    """PostgreSQL's integer input would repeat the text in its error and the server log (a key
    passed as a batch size, tests/test_trust_attacks_46.py): every wrapper refuses it first."""
    reader = connect("app_reader")
    with pytest.raises(InvalidArgument, match="^page_size must be an integer from -2147483648 to 2147483647$"):
        list_events(reader, page_size=value)  # type: ignore[arg-type]
    assert reader.info.transaction_status == psycopg.pq.TransactionStatus.IDLE  # nothing was sent


def test_interval_text_the_wrappers_send_is_text_postgresql_takes(db):
    """Interval text goes to PostgreSQL only in forms its input accepts without an error, which
    would repeat the text (tests/test_trust_attacks_48.py): a seeded sample of what the check lets
    through all converts, and forms it does not know are refused before anything is sent."""
    units = [u for spellings in calls._UNITS.values() for u in spellings.split("|")] + ["MS", "Days", "ago"]
    rng = random.Random(48)

    def quantity() -> str:
        number = rng.choice(["0", "1", "999999", str(rng.randint(0, 999999))])
        return rng.choice(["", "+", "-"]) + number + rng.choice(["", ".5", ".999999"]) + rng.choice(["", " "])

    samples = [rng.choice(["", " "]) + " ".join(quantity() + rng.choice(units) for _ in range(rng.randint(1, 5)))
               + rng.choice(["", " ago", " "]) for _ in range(3000)]
    samples += ["P" + "".join(f"{rng.choice(['0', '1', '999999'])}{u}" for u in "YMWD" if rng.random() < .5)
                + rng.choice(["", "T1H", "T999999.5S", "T1M2S"]) for _ in range(500)]
    taken = [text for text in samples if calls._interval_text(text)]
    assert len(taken) > 1000
    refused = []
    for text in taken:
        try:
            db.execute("SELECT %s::pg_catalog.interval", (text,))
        except psycopg.Error:
            refused.append(text)
    assert refused == []
    for text in ["90 days", "1 day 2 hours", "90d", "3 days ago", "P90D", "PT12H", "1.5 hours"]:
        assert calls._interval_text(text)
    for text in ["1234567", "9999999 days", "1 day 1 day", "1.5 seconds 2 ms", "1 decade", "1 day 02:00:00",
                 "@ 1 day", "p1d", "ago"]:
        assert not calls._interval_text(text)
