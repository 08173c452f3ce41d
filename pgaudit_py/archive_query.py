"""`pgaudit archive query "SQL"`: ask an archive directory questions with DuckDB (extra
`pip install 'pgaudit_py[query]'`), straight from the signed `.jsonl.gz` batches, no database. The
view `events` has one row per archived event: its fields as columns, payloads and row images as
JSON, and `line`, the whole canonical line. Verify the archive first (`pgaudit archive verify
--offline`): a query reads whatever the files hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pgaudit_py.errors import InvalidArgument

TEXT_FIELDS = ("id", "tenant_id", "actor_type", "actor_id", "db_role", "client_addr", "application_name", "kind",
               "target_type", "target_id", "outcome", "correlation_id", "idempotency_key", "txid", "origin")
JSON_FIELDS = ("payload", "row_before", "row_after", "changed")


def events_view(directory: Path) -> str:
    files = str(directory / "blocks-*.jsonl.gz").replace("'", "''")  # a path, never code
    columns = ", ".join(["CAST(json->>'seq' AS BIGINT) AS seq",
                         *(f"json->>'{name}' AS {name}" for name in TEXT_FIELDS),
                         "CAST(json->>'occurred_at' AS TIMESTAMPTZ) AS occurred_at",
                         *(f"json->'{name}' AS {name}" for name in JSON_FIELDS),
                         "json AS line"])
    return (f"CREATE VIEW events AS SELECT {columns} FROM read_json_objects('{files}', "
            "format = 'newline_delimited', compression = 'gzip')")


def query(directory: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns and rows of `sql` over the archive in `directory`."""
    try:
        import duckdb
    except ImportError:
        raise InvalidArgument("pgaudit archive query needs DuckDB: pip install 'pgaudit_py[query]'") from None
    if not any(directory.glob("blocks-*.jsonl.gz")):
        raise InvalidArgument(f"no archive batches (blocks-*.jsonl.gz) in {directory}")
    with duckdb.connect(":memory:") as db:
        db.execute("SET TimeZone = 'UTC'")
        db.execute(events_view(directory))
        try:
            result = db.execute(sql)
        except duckdb.Error as exc:
            raise InvalidArgument(f"the query failed: {str(exc).splitlines()[0]}") from None
        columns = [d[0] for d in result.description or []]
        return columns, result.fetchall()
