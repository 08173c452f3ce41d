"""The SSE stream: every sealed event exactly once, in seq order, under concurrent writers and late
commits, across reconnects that resume from Last-Event-ID; heartbeats on an idle stream; the
stream outlives its listener's connection."""

from __future__ import annotations

import json
import time

import pytest
from api_server import sse_messages
from late_writers import LateWriters

from pgaudit_py import record, seal


@pytest.fixture
def reader_token(db, make_token):
    token = make_token("reader")
    seal(db)  # its creation event, so that a stream from now starts after it
    return token


def test_every_event_exactly_once_under_late_commits_and_reconnects(db, connect, start_api, reader_token):
    """Writers commit late and out of order while the sealer runs; the client drops the stream
    every few events and reconnects with Last-Event-ID, as an EventSource does."""
    start = db.execute("SELECT last_seq FROM audit.seal_state").fetchone()[0]
    api = start_api(poll_interval=0.5)
    writers = LateWriters(connect, events=40)
    seen: list[tuple[int, str]] = []
    last: int | None = None
    deadline = time.monotonic() + 60
    with api.client(reader_token) as client:
        while len(seen) < 160 and time.monotonic() < deadline:
            headers = {"Last-Event-ID": str(last)} if last is not None else {}
            with client.stream("GET", "/v1/audit/stream", params={"since_seq": str(start)},
                               headers=headers) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                for message in sse_messages(response):
                    if message.data is None:
                        continue
                    event = json.loads(message.data)
                    assert message.event == "audit" and message.id == str(event["seq"])
                    seen.append((event["seq"], event["id"]))
                    last = event["seq"]
                    if len(seen) % 13 == 0 or len(seen) == 160:
                        break  # a dropped connection: the next one says Last-Event-ID
    writers.finish()
    assert [s for s, _ in seen] == list(range(start + 1, start + 161))
    assert sorted(i for _, i in seen) == sorted(writers.written)


def test_an_idle_stream_sends_heartbeats_and_then_the_next_event(db, start_api, reader_token):
    api = start_api(heartbeat=0.5, poll_interval=0.2)
    with api.client(reader_token) as client, client.stream("GET", "/v1/audit/stream") as response:
        messages = sse_messages(response)
        comments = (m.comment for m in messages if m.comment)
        assert next(comments) == "following"
        assert next(comments) == "heartbeat"
        assert next(comments) == "heartbeat"
        record(db, "order.paid", actor_id="ada")
        seal(db)
        event = next(m for m in messages if m.data)
    assert json.loads(event.data)["actor_id"] == "ada"


def test_a_sealed_round_reaches_the_stream_through_the_notification(db, start_api, reader_token):
    api = start_api(poll_interval=30, heartbeat=60)  # only the NOTIFY can wake it in time
    with api.client(reader_token) as client, client.stream("GET", "/v1/audit/stream",
                                                           params={"kind_prefix": "user."}) as response:
        messages = sse_messages(response)
        next(messages)  # the stream is open
        time.sleep(0.3)
        record(db, "order.paid")
        record(db, "user.login")
        started = time.monotonic()
        seal(db)
        event = json.loads(next(m for m in messages if m.data).data)
        assert time.monotonic() - started < 5
    assert event["kind"] == "user.login"


def test_the_stream_goes_on_when_the_listener_connection_is_killed(db, start_api, reader_token):
    api = start_api(poll_interval=0.5, heartbeat=60)
    with api.client(reader_token) as client, client.stream("GET", "/v1/audit/stream") as response:
        messages = sse_messages(response)
        next(messages)
        killed = db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = 'pgaudit serve (listen)'").fetchall()
        assert killed == [(True,)]
        record(db, "order.paid", actor_id="after-kill")
        seal(db)
        event = json.loads(next(m for m in messages if m.data).data)
    assert event["actor_id"] == "after-kill"
    deadline = time.monotonic() + 10
    while not db.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'pgaudit serve (listen)'"
                         ).fetchone():
        assert time.monotonic() < deadline, "the listener did not reconnect"
        time.sleep(0.1)
