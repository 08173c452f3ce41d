"""`pgaudit archive query "SQL"`: ask an archive directory questions with DuckDB (extra
`pip install 'pgaudit_py[query]'`), straight from the signed `.jsonl.gz` batches, no database. The
view `events` has one row per archived event: its fields as columns, payloads and row images as
JSON, and `line`, the whole canonical line. Verify the archive first (`pgaudit archive verify
--offline`): a query reads whatever the files hold."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from pgaudit_py.canonical import EVENT_FIELDS, JSON_FIELDS
from pgaudit_py.errors import InvalidArgument
from pgaudit_py.verify_archive import DATA

TYPED_FIELDS = {"seq": "BIGINT", "occurred_at": "TIMESTAMPTZ", "schema_valid": "BOOLEAN"}  # the rest: text or JSON


def data_objects(directory: Path) -> list[Path]:
    """The data objects that a manifest beside them names: a file someone added is not read."""
    return sorted(p for p in directory.glob("blocks-*.jsonl.gz")
                  if DATA.fullmatch(p.name) and (directory / p.name.replace(".jsonl.gz", ".manifest.json")).is_file())


def events_view(files: list[Path]) -> str:
    # Named one by one (no glob: a bracket in a directory's name is no pattern), each a string, never code.
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in files)
    columns = ", ".join([*(f"CAST(json->>'{name}' AS {TYPED_FIELDS[name]}) AS {name}" if name in TYPED_FIELDS
                           else f"json->'{name}' AS {name}" if name in JSON_FIELDS
                           else f"json->>'{name}' AS {name}" for name in EVENT_FIELDS),
                         "json AS line"])
    return (f"CREATE VIEW events AS SELECT {columns} FROM read_json_objects([{listed}], "
            "format = 'newline_delimited', compression = 'gzip')")


def query(directory: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns and rows of `sql` over the archive in `directory`."""
    try:
        import duckdb
    except ImportError:
        raise InvalidArgument("pgaudit archive query needs DuckDB: pip install 'pgaudit_py[query]'") from None
    files = data_objects(directory)
    if not files:
        raise InvalidArgument(f"no archive batches (blocks-*.jsonl.gz beside their manifests) in {directory}")
    # DuckDB reads a file name as a pattern ([rc] matches r or c): it is given links of plain names.
    with tempfile.TemporaryDirectory() as plain, duckdb.connect(":memory:") as db:
        links = []
        for n, f in enumerate(files):
            link = Path(plain) / f"{n}.jsonl.gz"
            link.symlink_to(f.resolve())
            links.append(link)
        db.execute("SET TimeZone = 'UTC'")
        db.execute(events_view(links))
        try:
            result = db.execute(sql)
        except duckdb.Error as exc:
            raise InvalidArgument(f"the query failed: {str(exc).splitlines()[0]}") from None
        columns = [d[0] for d in result.description or []]
        return columns, result.fetchall()
