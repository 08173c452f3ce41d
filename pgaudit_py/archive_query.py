"""`pgaudit archive query "SQL"`: ask an archive directory questions with DuckDB (extra
`pip install 'pgaudit_py[query]'`), straight from the signed `.jsonl.gz` batches, no database. The
view `events` has one row per archived event: its fields as columns, payloads and row images as
JSON, and `line`, the whole canonical line. Verify the archive first (`pgaudit archive verify
--offline`): a query reads whatever the files hold."""

from __future__ import annotations

import gzip
import re
import sys
import tempfile
import zlib
from json.decoder import scanstring  # type: ignore[attr-defined]
from json.encoder import encode_basestring
from pathlib import Path
from typing import Any

from pgaudit_py.canonical import EVENT_FIELDS, JSON_FIELDS
from pgaudit_py.errors import InvalidArgument
from pgaudit_py.verify_archive import DATA, MAX_LINE, TEXT, open_regular, top_level

STRING = re.compile(TEXT)
TYPED_FIELDS = {"seq": "BIGINT", "occurred_at": "TIMESTAMPTZ", "schema_valid": "BOOLEAN"}  # the rest: text or JSON


def data_objects(directory: Path) -> list[Path]:
    """The data objects that a manifest beside them names: a file someone added is not read."""
    return sorted(p for p in directory.glob("blocks-*.jsonl.gz")
                  if DATA.fullmatch(p.name) and (directory / p.name.replace(".jsonl.gz", ".manifest.json")).is_file())


def cut_json_columns(source: Path, rows: Path) -> int:
    """Each line of the data object `source` as a row of `rows`: the line, and each JSON column's
    text cut from it as written. DuckDB would parse those into doubles (`12345678901234567.89` would
    print as `12345678901234568.0`); cast from text, JSON keeps its text. Returns the longest row's
    length in characters."""
    if (f := open_regular(source, sys.maxsize)) is None:  # a FIFO would hold the command, a device feed it
        raise InvalidArgument(f"the query failed: {source.name} is not a regular file")
    longest = 0
    try:
        with f, gzip.open(f, "rb") as lines, rows.open("w", encoding="utf-8") as out:
            for number, raw in enumerate(iter(lambda: lines.readline(MAX_LINE + 1), b""), 1):
                try:
                    text = raw.decode("utf-8").rstrip("\r\n")
                    if not text.strip(" \t"):  # a blank line, as DuckDB reads one
                        continue
                    values = top_level(text)
                except ValueError as exc:
                    raise InvalidArgument(f"the query failed: {source.name}, line {number}, is not a JSON object"
                                          f" ({str(exc).splitlines()[0][:80]})") from None
                if "\\u" in text and lone_surrogate(text):
                    raise InvalidArgument(f"the query failed: {source.name}, line {number}, holds a lone surrogate"
                                          " (an escape such as \\udc00), which DuckDB does not read")
                row = "".join(['{"line":', encode_basestring(text), *(
                    f',"{name}":' + (encode_basestring(values[name]) if name in values else "null")
                    for name in JSON_FIELDS), "}\n"])
                longest = max(longest, len(row))
                out.write(row)
    except (gzip.BadGzipFile, EOFError, zlib.error):
        raise InvalidArgument(f"the query failed: {source.name} is not gzip") from None
    except OSError as exc:  # the scratch directory full, say: named, never a traceback
        raise InvalidArgument(f"the query failed: {source.name}: {exc.strerror or exc}") from None
    return longest


def lone_surrogate(text: str) -> bool:
    """Whether a string of this JSON text escapes half a surrogate pair (`\\udc00`): JSON's grammar
    allows it, DuckDB refuses it in the query, naming no line. Only strings with an escape are decoded."""
    for found in STRING.finditer(text):  # in a text read as JSON, each match is one of its strings
        if "\\u" in found.group():
            try:
                scanstring(found.group(), 1)[0].encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def create_events_view(db: Any, directory: Path, scratch: Path) -> None:
    """The view `events` in the DuckDB connection `db`, over the archive in `directory`; its rows
    are written to files in `scratch` first (plain names: DuckDB reads a file's name as a pattern)."""
    files = data_objects(directory)
    if not files:
        raise InvalidArgument(f"no archive batches (blocks-*.jsonl.gz beside their manifests) in {directory}")
    rows = [scratch / f"{n}.jsonl" for n in range(len(files))]
    longest = max(cut_json_columns(source, target) for source, target in zip(files, rows, strict=True))
    listed = ", ".join("'" + str(f).replace("'", "''") + "'" for f in rows)  # each a string, never code
    types = ", ".join(f"'{name}': 'VARCHAR'" for name in ("line", *JSON_FIELDS))
    columns = ", ".join([*(f"CAST(json->>'{name}' AS {TYPED_FIELDS[name]}) AS {name}" if name in TYPED_FIELDS
                           else f"CAST({name} AS JSON) AS {name}" if name in JSON_FIELDS
                           else f"json->>'{name}' AS {name}" for name in EVENT_FIELDS),
                         "json AS line"])
    db.execute(f"CREATE VIEW events AS SELECT {columns} FROM (SELECT CAST(line AS JSON) AS json, *"
               f" FROM read_json([{listed}], format = 'newline_delimited', columns = {{{types}}},"
               f" maximum_object_size = {max(4 * longest, 1 << 24)}))")  # bytes: at most four a character


def query(directory: Path, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The columns and rows of `sql` over the archive in `directory`."""
    try:
        import duckdb
    except ImportError:
        raise InvalidArgument("pgaudit archive query needs DuckDB: pip install 'pgaudit_py[query]'") from None
    with tempfile.TemporaryDirectory() as scratch, duckdb.connect(":memory:") as db:
        db.execute("SET TimeZone = 'UTC'")
        create_events_view(db, directory, Path(scratch))
        try:
            result = db.execute(sql)
        except duckdb.Error as exc:
            raise InvalidArgument(f"the query failed: {str(exc).splitlines()[0]}") from None
        columns = [d[0] for d in result.description or []]
        return columns, result.fetchall()
