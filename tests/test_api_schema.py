"""A property-based run against the API's own OpenAPI document (schemathesis): whatever the
parameters, no 500, and every response, error or not, matches the document. (Driven from a plain
test: schemathesis's pytest fixture loader does not run under pytest 9.2.) The stream, which
never ends, is tested in test_api_stream.py."""

from __future__ import annotations

import itertools
from datetime import datetime, timezone

import pytest
import schemathesis
from hypothesis import HealthCheck, assume, given, settings

from pgaudit_py import seal
from pgaudit_py.checkpoint import generate_keys, load_keys


@pytest.fixture
def token_and_schema(db, start_api, make_token, tmp_path):
    token = make_token("maintainer")
    db.execute("SELECT audit.record(kind => k, tenant_id => 't' || (i % 3), target_type => 'order',"
               " target_id => i::text, actor_id => 'a' || (i % 5), correlation_id => 'c' || (i % 7),"
               " outcome => CASE WHEN i % 4 = 0 THEN 'failure' ELSE 'success' END,"
               " payload => jsonb_build_object('i', i, 'odd', E'\\u2028<b>\\u0001'))"
               " FROM generate_series(1, 60) i, unnest(ARRAY['order.paid', 'user.login']) k")
    seal(db)
    db.execute("SELECT audit.record(kind => 'order.refunded', target_id => i::text) FROM generate_series(1, 5) i")
    generate_keys(tmp_path / "keys")
    api = start_api(failures_allowed=10**6, archive_target=f"file://{tmp_path}/archive",
                    archive_keys=load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem"))
    return token, schemathesis.openapi.from_url(api.url + "/openapi.json")


def _instant(value: object) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _fuzz(operation: schemathesis.APIOperation, mode: schemathesis.GenerationMode, token: str) -> None:
    positive = mode is schemathesis.GenerationMode.POSITIVE
    statuses: set[int] = set()

    @given(case=operation.as_strategy(mode))
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        # What the document cannot say (each a 400, tested in test_api.py): since is not after
        # until; before_seq and before_intake_id do not come together.
        query = case.query or {}
        if positive and "since" in query and "until" in query:
            assume(_instant(query["since"]) <= _instant(query["until"]))
        if positive:
            assume(not ("before_seq" in query and "before_intake_id" in query))
        # A generated bearer header carries the real token; a negative case's missing or malformed
        # one stays as generated, and must get its 401.
        if str((case.headers or {}).get("Authorization", "")).startswith("Bearer "):
            case.headers["Authorization"] = f"Bearer {token}"
        statuses.add(case.call_and_validate().status_code)

    check()
    if positive:  # the real token went out: the valid requests were served
        assert 200 in statuses, (operation.label, statuses)


def test_no_server_error_and_every_response_matches_the_document(token_and_schema):
    token, schema = token_and_schema
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 12
    for operation, mode in itertools.product(operations, schemathesis.GenerationMode):
        if operation.path == "/v1/audit/stream":
            continue
        if mode is schemathesis.GenerationMode.NEGATIVE and not len(operation.query):
            continue  # nothing to get wrong
        _fuzz(operation, mode, token)
