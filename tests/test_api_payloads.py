"""Hostile payloads over HTTP: what the API and the stream write is the JSON PostgreSQL holds,
character for character (numbers past a double's range, odd Unicode, markup, deep nesting), and
always valid JSON."""

from __future__ import annotations

import json

import pytest
from api_server import sse_messages

from pgaudit_py import seal

HOSTILE = [
    '{"n": 1e350}', '{"n": -1e-350, "m": 123456789012345678901234567890.5}', '{"s": "\\u2028\\u2029\\r\\n\\t"}',
    '{"html": "<img src=x onerror=alert(1)>", "quote": "\\"}\\u0001"}', '{"emoji": "🐘\\ud83d\\ude00", "rtl": "\\u202e"}',
    '{"deep": ' + "[" * 200 + "]" * 200 + "}", '{"": {"": ""}, "dup": 1}',
]


@pytest.fixture
def stored(db):
    for i, payload in enumerate(HOSTILE):
        db.execute("SELECT audit.record(kind => 'hostile.payload', target_id => %s, payload => %s::jsonb)",
                   (str(i), payload))
    seal(db)
    return dict(db.execute("SELECT target_id, payload::text FROM audit.events WHERE kind = 'hostile.payload'"
                           ).fetchall())


def _payload_text(body: str, target_id: str) -> str:
    """The payload's JSON text inside a response body, exactly as the server wrote it."""
    start = body.index('"payload":', body.index(f'"target_id":"{target_id}"')) + len('"payload":')
    decoder = json.JSONDecoder(parse_constant=lambda c: c)  # a value is read to find its end, not kept
    _, end = decoder.raw_decode(body, start)
    return body[start:end]


def test_the_listing_carries_each_payload_as_stored(start_api, make_token, stored):
    api = start_api()
    with api.client(make_token()) as client:
        body = client.get("/v1/audit", params={"kind_prefix": "hostile."}).text
    json.loads(body)  # valid JSON as a whole
    for target_id, text in stored.items():
        assert _payload_text(body, target_id) == text


def test_the_stream_carries_each_payload_as_stored(start_api, make_token, stored):
    api = start_api()
    with api.client(make_token()) as client, client.stream("GET", "/v1/audit/stream",
                                                           params={"since_seq": "0", "kind_prefix": "hostile."}) as r:
        datas = []
        for message in sse_messages(r):
            if message.data:
                datas.append(message.data)
            if len(datas) == len(HOSTILE):
                break
    for data in datas:
        event = json.loads(data)
        # The same text, but for the line separators a client's line splitting would break at.
        assert _payload_text(data, event["target_id"]) == stored[event["target_id"]].replace(
            "\u2028", "\\u2028").replace("\u2029", "\\u2029")
    assert json.loads(datas[2])["payload"] == {"s": "\u2028\u2029\r\n\t"}
