"""The API's contract as an OpenAPI 3.1 document, served at /openapi.json; the test suite runs
schemathesis against it, so a response that drifts from it fails a test."""

from __future__ import annotations

from typing import Any

from pgaudit_py.calls import MAX_SEQ
from pgaudit_py.server.params import MAX_LIMIT, MAX_TEXT


def _nullable(type_: str, **extra: Any) -> dict[str, Any]:
    return {"type": [type_, "null"], **extra}


KIND_PREFIX = {"type": "string", "pattern": "^[A-Za-z0-9_./-]{1,128}$"}


def _text(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema or {"type": "string", "minLength": 1, "maxLength": MAX_TEXT, "pattern": "^[^\\x00]*$"}}


def _time(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", "format": "date-time"}}


def _integer(name: str, low: int, high: int, description: str, default: int | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer", "minimum": low, "maximum": high}
    if default is not None:
        schema["default"] = default
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


TENANT = _text("tenant_id", "Only this tenant's events (a tenant token's own tenant is always applied).")
FILTERS = [
    TENANT,
    _text("kind_prefix", "Kinds starting with this (letters, digits, _ . / -).", KIND_PREFIX),
    _text("target_type", "Exactly this target type."),
    _text("target_id", "Exactly this target id."),
    _text("correlation_id", "Exactly this correlation id."),
    {"name": "outcome", "in": "query", "required": False, "schema": {"type": "string", "enum": ["success", "failure"]}},
    _text("actor_type", "Exactly this actor type."),
    _text("actor_id", "Exactly this actor id."),
    _time("since", "Occurred at or after (ISO 8601; UTC if no zone)."),
    _time("until", "Occurred before (ISO 8601; UTC if no zone); not before since (400)."),
]
PREFIXES = {"name": "by_kind_prefix", "in": "query", "required": False, "style": "form", "explode": True,
            "description": "Also count per kind prefix (repeat the parameter, at most 100).",
            "schema": {"type": "array", "maxItems": 100, "items": KIND_PREFIX}}

EVENT = {
    "type": "object",
    "required": ["seq", "pending", "kind", "outcome", "occurred_at", "payload", "actor_type", "db_role", "txid"],
    "properties": {
        "seq": _nullable("integer", description="Position in the log; null while pending."),
        "pending": {"type": "boolean", "description": "Written, not yet sealed into the chain."},
        "id": _nullable("string"), "tenant_id": _nullable("string"), "actor_type": {"type": "string"},
        "actor_id": _nullable("string"), "db_role": {"type": "string"}, "client_addr": _nullable("string"),
        "application_name": _nullable("string"), "kind": {"type": "string"}, "target_type": _nullable("string"),
        "target_id": _nullable("string"), "outcome": {"type": "string", "enum": ["success", "failure"]},
        "correlation_id": _nullable("string"), "idempotency_key": _nullable("string"), "txid": {"type": "string"},
        "occurred_at": {"type": "string", "format": "date-time"},
        "sealed_at": _nullable("string", format="date-time"),
        "payload": {"type": "object"}, "schema_valid": _nullable("boolean"),
        "row_before": _nullable("object"), "row_after": _nullable("object"), "changed": _nullable("object"),
        "block_no": _nullable("integer"), "origin": _nullable("string"), "intake_id": _nullable("integer"),
    },
}
ERROR = {"type": "object", "required": ["error"], "additionalProperties": False, "properties": {"error": {
    "type": "object", "required": ["code", "message"], "additionalProperties": False,
    "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}}
COUNTS = {"type": "object", "additionalProperties": {"type": "integer"}}
BATCH = {"type": "object", "required": ["batch_id", "first_seq", "last_seq", "event_count"], "properties": {
    "batch_id": {"type": "string"}, "state": {"type": "string", "enum": ["planned", "recorded", "deleted"]},
    "first_block": {"type": "integer"}, "last_block": {"type": "integer"}, "first_seq": {"type": "integer"},
    "last_seq": {"type": "integer"}, "event_count": {"type": "integer"}, "target": _nullable("string"),
    "data_bytes": _nullable("integer"), "gz_bytes": _nullable("integer"), "manifest_sha256": _nullable("string"),
    "planned_at": {"type": "string", "format": "date-time"}, "archived_at": _nullable("string", format="date-time"),
    "archived_by": _nullable("string"), "deleted_at": _nullable("string", format="date-time")}}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    said = {400: "A parameter is wrong: the message says which.", 401: "No token, or unknown, expired or revoked.",
            403: "The token may not do this (role or tenant).", 409: "An archive pass is running already.",
            429: "Too many failed authentications from this address (see Retry-After).",
            503: "The database, or what this needs, is unavailable."}
    return {str(s): _json({"$ref": "#/components/schemas/Error"}, said[s]) for s in statuses}


def _get(summary: str, parameters: list[dict[str, Any]], ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    return {"get": {"summary": summary, "parameters": parameters, "security": [{"bearer": []}],
                    "responses": {"200": ok, **_errors(400, 401, 429, 503, *errors)}}}


def openapi_document() -> dict[str, Any]:
    from pgaudit_py.installer import package_version

    ref = {"$ref": "#/components/schemas/Event"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "pgaudit_py", "version": package_version(),
                 "description": "The audit log over HTTP. Every endpoint but /healthz and /openapi.json needs "
                                "`Authorization: Bearer <token>` (`pgaudit tokens create`)."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Event": EVENT, "Error": ERROR, "Batch": BATCH},
        },
        "paths": {
            "/healthz": {"get": {"summary": "Whether the server reaches its database (no token).", "security": [],
                                 "responses": {
                                     "200": _json({"type": "object", "required": ["status"], "properties": {
                                         "status": {"const": "ok"}, "database": {"type": "boolean"}}}, "Healthy."),
                                     "503": _json({"type": "object"}, "The database is unreachable.")}}},
            "/v1/audit": _get(
                "Events, newest first: pending ones lead, then sealed ones; follow `next` for older ones.",
                [_integer("limit", 1, MAX_LIMIT, "Events per page.", 50), *FILTERS,
                 _integer("before_seq", 1, MAX_SEQ, "Sealed events below this seq (keyset paging)."),
                 _integer("before_intake_id", 1, MAX_SEQ, "Pending events below this intake id, then sealed ones.")],
                _json({"type": "object", "required": ["events", "next"], "properties": {
                    "events": {"type": "array", "items": ref},
                    "next": _nullable("string", description="The next page's path and query; null at the end.")}},
                    "A page of events."), 403),
            "/v1/audit/count": _get(
                "How many events match, in total and per kind prefix.",
                [TENANT, FILTERS[8], FILTERS[9], PREFIXES],
                _json({"type": "object", "required": ["count", "by_kind_prefix"], "properties": {
                    "count": {"type": "integer"}, "by_kind_prefix": COUNTS}}, "The count."), 403),
            "/v1/audit/monthly": _get(
                "Events per calendar month (UTC), oldest first, zero months included.",
                [TENANT, _integer("months", 1, 120, "How many months, the current one included.", 12), PREFIXES],
                _json({"type": "object", "required": ["months"], "properties": {"months": {"type": "array", "items": {
                    "type": "object", "required": ["month", "count", "by_kind_prefix"], "properties": {
                        "month": {"type": "string", "format": "date"}, "count": {"type": "integer"},
                        "by_kind_prefix": COUNTS}}}}}, "The months."), 403),
            "/v1/audit/stream": _get(
                "Sealed events as Server-Sent Events (id: seq, event: audit, data: the event), then new ones as "
                "they are sealed; `: heartbeat` comments keep an idle stream open. A `Last-Event-ID` header "
                "resumes right after that seq.",
                [*FILTERS, _integer("since_seq", 0, MAX_SEQ, "Start after this seq (default: from now)."),
                 {"name": "Last-Event-ID", "in": "header", "required": False,
                  "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"}}],
                {"description": "The stream.", "content": {"text/event-stream": {"schema": {"type": "string"}}}}, 403),
            "/v1/audit/verify": _get(
                "Recompute the hash chain; the tier boundary (oldest hot seq, highest archived seq) and the newest "
                "signed checkpoint in the server's checkpoint directory.", [],
                _json({"type": "object", "required": ["ok", "oldest_hot_seq", "highest_archived_seq",
                                                      "last_checkpoint"], "properties": {
                    "ok": {"type": "boolean"}, "problem": _nullable("string"), "bad_block": _nullable("integer"),
                    "blocks_checked": {"type": "integer"}, "events_checked": {"type": "integer"},
                    "pending": {"type": "integer"}, "oldest_hot_seq": _nullable("integer"),
                    "highest_archived_seq": _nullable("integer"),
                    "verified_at": {"type": "string", "format": "date-time"}, "reused": {"type": "boolean"},
                    "last_checkpoint": _nullable("object")}}, "The verdict."), 403),
            "/v1/audit/status": _get(
                "Sealing lag and backlog.", [],
                _json({"type": "object", "required": ["pending", "last_seq", "lag_seconds"], "properties": {
                    "pending": {"type": "integer"}, "oldest_pending_at": _nullable("string", format="date-time"),
                    "last_seq": {"type": "integer"}, "last_sealed_at": _nullable("string", format="date-time"),
                    "quarantined": {"type": "integer"}, "lag_seconds": {"type": "number"},
                    "now": {"type": "string", "format": "date-time"}}}, "The sealer's state."), 403),
            "/v1/audit/archives": _get(
                "Archive batches, oldest first.", [],
                _json({"type": "object", "required": ["batches"], "properties": {
                    "batches": {"type": "array", "items": {"$ref": "#/components/schemas/Batch"}}}}, "The batches."),
                403),
            "/v1/whoami": _get(
                "The token's public id, name, role and tenant.", [],
                _json({"type": "object", "required": ["token_id", "name", "role", "tenant_id"], "properties": {
                    "token_id": {"type": "string"}, "name": {"type": "string"},
                    "role": {"type": "string", "enum": ["reader", "maintainer"]},
                    "tenant_id": _nullable("string")}}, "Who the token is.")),
            "/v1/audit/tracked": _get(
                "Tracked tables and their options.", [],
                _json({"type": "object", "required": ["tables"], "properties": {"tables": {"type": "array", "items": {
                    "type": "object", "required": ["table_name", "kind_prefix"], "properties": {
                        "table_name": {"type": "string"}, "kind_prefix": {"type": "string"},
                        "key_columns": _nullable("array"), "exclude_columns": {"type": "array"},
                        "redact_columns": {"type": "array"}, "tenant_column": _nullable("string"),
                        "skip_noop_updates": {"type": "boolean"},
                        "enabled_at": {"type": "string", "format": "date-time"}, "enabled_by": {"type": "string"},
                        "baseline_at": _nullable("string", format="date-time")}}}}},
                    "The tables."), 403),
            "/v1/audit/limits": _get(
                "Write rate limits (tables and operations).", [],
                _json({"type": "object", "required": ["limits"], "properties": {"limits": {"type": "array", "items": {
                    "type": "object", "required": ["scope", "target", "window_seconds"], "properties": {
                        "scope": {"type": "string"}, "target": {"type": "string"}, "per_user": _nullable("integer"),
                        "per_tenant": _nullable("integer"), "per_key": _nullable("integer"),
                        "window_seconds": {"type": "integer"}, "changed_at": {"type": "string", "format": "date-time"},
                        "changed_by": {"type": "string"}}}}}}, "The limits."), 403),
            "/v1/audit/archive/run": {"post": {
                "summary": "Run one archive pass with the server's target and keys (maintainer tokens only).",
                "security": [{"bearer": []}],
                "responses": {"200": _json({"type": "object", "required": ["skipped", "events", "batches"],
                                            "properties": {"skipped": {"type": "boolean"},
                                                           "events": {"type": "integer"},
                                                           "batches": {"type": "array", "items": {"type": "object"}}}},
                                           "What was archived (skipped: another archiver was running)."),
                              **_errors(400, 401, 403, 409, 429, 503)}}},
        },
    }
