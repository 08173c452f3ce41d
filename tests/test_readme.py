"""The README's first session and Python example, run as written, as the roles they name, against a
real database: the front door cannot drift from the code.

A block is run when an HTML comment names it right above its fence: `<!-- tested: sql as ROLE -->`
(ROLE a login role the session creates, or `superuser`) or `<!-- tested: python -->`. In an SQL
block, the comment lines right after a statement are its output, psql-like: the column names, then
one line per row, cells separated by `|`, compared as PostgreSQL prints them; a statement whose own
comment says `ERROR: permission denied` must be refused for want of privilege. In a Python block, a
`print(...)` with a comment after it must print that comment's text. Python blocks connect with
`psycopg.connect("dbname=app user=ROLE")`: the test keeps the user and points host, port and
database at the test's.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
PYTHON_DOC = ROOT / "docs" / "python.md"

BLOCK = re.compile(r"^<!-- tested: (?:sql as (?P<role>\w+)|python|same as (?P<source>\S+)) -->\n"
                   r"```(?P<lang>\w+)\n(?P<code>.*?)^```$", re.M | re.S)
# Expected refusals, by the words of the statement's comment, and their SQLSTATE.
ERRORS = {"permission denied": "42501"}


@dataclass
class Block:
    lang: str
    role: str | None
    code: str
    source: str | None = None  # a file the block must be a copy of (run by a test of its own)


def marked_blocks(path: Path) -> list[Block]:
    return [Block(m["lang"], m["role"], m["code"], m["source"]) for m in BLOCK.finditer(path.read_text())]


@dataclass
class Statement:
    sql: str
    note: str = ""  # the comment on the statement's last line
    output: list[str] = field(default_factory=list)  # the comment lines right after it


def split_comment(line: str, quoted: bool) -> tuple[str, str | None, bool]:
    """(code, comment or None, still inside a quote) of one line."""
    for i, char in enumerate(line):
        if char == "'":
            quoted = not quoted
        elif not quoted and line.startswith("--", i):
            return line[:i], line[i + 2:].strip(), quoted
    return line, None, quoted


def statements(code: str) -> list[Statement]:
    done: list[Statement] = []
    current: list[str] = []
    quoted = False
    reading_output = False
    for line in code.splitlines():
        text, comment, quoted_after = split_comment(line, quoted)
        if not text.strip() and not current:
            if comment is not None and reading_output:
                done[-1].output.append(comment)
            else:
                reading_output = False  # a blank line, or a comment before a statement
            quoted = quoted_after
            continue
        reading_output = False
        start = 0
        for i, char in enumerate(text):
            if char == "'":
                quoted = not quoted
            elif char == ";" and not quoted:
                current.append(text[start:i])
                done.append(Statement(" ".join(part.strip() for part in current if part.strip())))
                current, start = [], i + 1
                reading_output = True
        if text[start:].strip():
            current.append(text[start:])
            reading_output = False
        if comment is not None and reading_output:
            done[-1].note = comment
    assert not current, f"a statement without its semicolon: {current}"
    return done


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.split("|")]


def run_sql(conn: psycopg.Connection, code: str) -> int:
    """Runs each statement, checking its shown output or refusal; returns how many were checked."""
    checked = 0
    for statement in statements(code):
        refusal = re.match(r"ERROR: (.*)", statement.note)
        if refusal:
            sqlstate = next(state for words, state in ERRORS.items() if refusal[1].startswith(words))
            with pytest.raises(psycopg.Error) as refused:
                conn.execute(statement.sql)
            assert refused.value.sqlstate == sqlstate, (statement.sql, refused.value)
            checked += 1
            continue
        cur = conn.execute(statement.sql)
        if not statement.output:
            continue
        assert cur.description is not None and cur.pgresult is not None
        result = cur.pgresult
        shown = [[d.name for d in cur.description]] + [
            [(result.get_value(row, col) or b"").decode() for col in range(result.nfields)]
            for row in range(result.ntuples)]
        assert shown == [cells(line) for line in statement.output], statement.sql
        checked += 1
    return checked


def run_python(code: str) -> list[str]:
    """Runs the block; returns the lines it prints and checks them against its print comments."""
    printed = io.StringIO()
    with redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    expected = [m[1].strip() for m in re.finditer(r"^\s*print\(.*\)\s*# (.*)$", code, flags=re.M)]
    lines = printed.getvalue().splitlines()
    assert lines == expected
    return lines


@pytest.fixture
def first_session(db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
                  ) -> Iterator[Callable[[str], psycopg.Connection]]:
    """The README's superuser block run in the test database (it creates the login roles the rest
    uses); a connection as any of them; the roles dropped again afterwards (they are the cluster's)."""
    setup = [b for b in marked_blocks(README) if b.role == "superuser"]
    assert len(setup) == 1
    roles = re.findall(r"CREATE ROLE (\w+)", setup[0].code)
    opened: list[psycopg.Connection] = []
    info = db.info
    connect = psycopg.connect

    def as_role(role: str) -> psycopg.Connection:
        assert role in roles, f"the README runs a block as {role}, which its first session does not create"
        conn = connect(host=info.host, port=info.port, dbname=info.dbname, user=role, autocommit=True)
        opened.append(conn)
        return conn

    def connect_here(conninfo: str = "", **kwargs: object) -> psycopg.Connection:
        """psycopg.connect as the README calls it, with its user, in the test's database."""
        here = make_conninfo(conninfo, host=info.host, port=info.port, dbname=info.dbname)
        conn = connect(here, **kwargs)  # type: ignore[arg-type]
        opened.append(conn)
        return conn

    try:
        run_sql(db, setup[0].code)
        monkeypatch.setattr(psycopg, "connect", connect_here)
        yield as_role
    finally:
        monkeypatch.undo()
        for conn in opened:
            conn.close()
        for role in roles:  # what they own or were granted here first (the tracked table)
            db.execute(f"DROP OWNED BY {role}")
            db.execute(f"DROP ROLE IF EXISTS {role}")


def events(db: psycopg.Connection) -> list[tuple[object, ...]]:
    return db.execute("""SELECT kind, origin, tenant_id, actor_type, actor_id, db_role, target_type, target_id,
                                payload, correlation_id, seq
                           FROM audit.events ORDER BY coalesce(seq, 0), intake_id""").fetchall()


def test_every_sql_and_python_block_of_the_readme_is_run_here():
    text = README.read_text()
    fences = re.findall(r"^```(sql|python)$", text, flags=re.M)
    blocks = marked_blocks(README)
    assert [b.lang for b in blocks] == fences, "an SQL or Python block of the README without its tested marker"
    for copy in (b for b in blocks if b.source):  # each such file is run by a test of its own
        assert copy.code == (ROOT / copy.source).read_text(), f"the README's copy of {copy.source} differs"
    blocks = [b for b in blocks if not b.source]
    assert [b.role for b in blocks] == ["superuser", "app", "ops", "auditor", "migrator", "app", "auditor", None]
    # The roles each block runs as hold what the README says: the application the writer, and so on.
    grants = sorted(re.findall(r"GRANT audit_(\w+) TO (\w+);", blocks[0].code))
    assert grants == [("maintainer", "migrator"), ("maintainer", "ops"), ("reader", "auditor"), ("writer", "app")]


def test_the_first_session_runs_as_written(db, first_session):
    blocks = [b for b in marked_blocks(README) if b.lang == "sql" and b.role != "superuser"]
    checked = 0
    for block in blocks:
        assert block.role is not None
        checked += run_sql(first_session(block.role), block.code)
    assert checked == 6  # every statement that shows its output or its refusal was compared
    *pending, sealed = events(db)
    assert sealed == ("order.refunded", "record", "acme", "user", "alice", "app", "order", "o-1", {"amount": 12.5}, None, 1)
    # The tracked table's two writes, captured as the application's, after its tracking's own event.
    assert [e[:2] + e[5:6] for e in pending] == [
        ("audit.tracking_enabled", "system", "migrator"), ("public.orders.insert", "capture", "app"),
        ("public.orders.update", "capture", "app")]
    assert db.execute("SELECT block_no, first_seq, last_seq FROM audit.blocks").fetchall() == [(1, 1, 1)]
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)


def test_the_python_example_runs_as_written(db, first_session):
    [block] = [b for b in marked_blocks(README) if b.lang == "python" and not b.source]
    assert run_python(block.code) == ["order.refunded alice req-42 True"]
    assert events(db) == [("order.refunded", "record", "acme", "user", "alice", "app", "order", "o-1",
                           {"amount": 12.5}, "req-42", None)]


def test_the_python_example_after_the_first_session_prints_what_the_readme_says(db, first_session):
    """The README's words before the example: after the first session, its sealed event follows."""
    for block in (b for b in marked_blocks(README) if b.lang == "sql" and b.role != "superuser"):
        assert block.role is not None
        run_sql(first_session(block.role), block.code)
    [block] = [b for b in marked_blocks(README) if b.lang == "python" and not b.source]
    printed = io.StringIO()
    with redirect_stdout(printed):
        exec(compile(block.code, "README.md", "exec"), {"__name__": "readme"})
    later = re.search(r"that session's\s+sealed event follows it \(`(.*?)`\)", README.read_text())
    assert later is not None
    assert printed.getvalue().splitlines() == ["order.refunded alice req-42 True", later[1]]


def test_the_python_reference_example_runs_as_written(db, first_session):
    """docs/python.md's first example, with the same roles."""
    [block] = marked_blocks(PYTHON_DOC)
    assert block.lang == "python"
    run_python(block.code)
    # The context's values, client address included, for the event inside it only; the one after it
    # names the database role.
    assert db.execute("SELECT kind, actor_type, actor_id, tenant_id, correlation_id, client_addr = '203.0.113.7',"
                      " db_role FROM audit.events ORDER BY intake_id").fetchall() == [
        ("order.refunded", "user", "alice", "acme", "req-42", True, "app"),
        ("email.sent", "db_role", "app", None, None, False, "app")]


def test_every_name_the_package_exports_is_in_the_docs():
    """A newcomer who finds a class in `pgaudit_py` finds what it is for in docs/ or the README."""
    import pgaudit_py
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    undocumented = [name for name in pgaudit_py.__all__ if not re.search(rf"\b{re.escape(name)}\b", text)]
    assert undocumented == []
