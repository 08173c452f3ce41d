"""A forty-first attacker's trial, on the mends of trial 40 (317c2b5): part()/pair() for actor and
target cells, say() and printable() for every built line. Variants: the cells and lines that do not
go through part() (print_table's other cells, the pytest plugin's event description), characters
that printable() keeps but a terminal does not show as they are (blank fillers, double-width), and
text read from a prompt rather than argv.

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
"""

from __future__ import annotations

import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import psycopg
import pytest
from conftest import messages_locale_available

from pgaudit_py.pytest_plugin import AuditTrail
from pgaudit_py.tracking import enable_tracking

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def _env(strict: bool = True) -> dict[str, str]:
    """The environment of a run; strict: de_DE.UTF-8, whose standard streams are strict."""
    env = dict(ENV)
    if strict:
        if not messages_locale_available():
            pytest.skip("no de_DE.UTF-8 locale")
        env.update({"LANG": "de_DE.UTF-8", "LC_ALL": "de_DE.UTF-8"})
    else:
        env.update({"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
    return env


def _dsn(info: psycopg.ConnectionInfo) -> str:
    return f"host={info.host} port={info.port} dbname={info.dbname} user={info.user}"


def _run(args: list, env: dict[str, str], stdin: bytes = b"", timeout: float = 60) -> tuple[int, str, str]:
    done = subprocess.run(args, input=stdin, capture_output=True, timeout=timeout, cwd=ROOT, env=env)
    return done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")


def _cli(*args: str) -> list:
    return [sys.executable, "-m", "pgaudit_py.cli", *args]


def _record(db, kind: str, **fields: str | None) -> None:
    base = dict(actor_type="app", actor_id="x", target_type=None, target_id=None, tenant_id=None)
    db.execute(
        "SELECT audit.record(kind => %(kind)s, actor_type => %(actor_type)s, actor_id => %(actor_id)s,"
        " target_type => %(target_type)s, target_id => %(target_id)s, tenant_id => %(tenant_id)s)",
        {**base, **fields, "kind": kind},
    )


# --- 1. The pytest plugin's description of an event: part() was not applied there ---------------------


def test_the_pytest_plugin_never_describes_two_events_alike(db):
    """Attack: AuditTrail.assert_recorded's failure lists what was recorded, through _describe()
    (pgaudit_py/pytest_plugin.py), which still joins a target as f"{type or ''}:{id or ''}" and an
    actor and a tenant with their Python str(): trial 40's mend (part/pair) reached the command
    line only. Pairs: target (order:1, no id) and (order, 1:); an actor left out (record() fills
    it in) and actor None:None; tenant none and tenant 'None'. A break: two events of a pair are described alike, so a failing
    test's message shows the event the test wanted when a different one was recorded."""
    pairs = [
        (dict(target_type="order:1", target_id=None), dict(target_type="order", target_id="1:")),
        (dict(actor_type=None, actor_id=None), dict(actor_type="None", actor_id="None")),
        (dict(tenant_id=None), dict(tenant_id="None")),
    ]
    for first, second in pairs:
        _record(db, "odd.describe", **first)
        _record(db, "odd.describe", **second)
    with pytest.raises(AssertionError) as caught:
        AuditTrail(db).assert_recorded("odd.nothing")
    lines = [line.strip() for line in str(caught.value).splitlines()[1:]]
    assert len(lines) == 6, lines
    lines.reverse()  # newest first
    alike = [lines[i] for i in range(0, 6, 2) if lines[i] == lines[i + 1]]
    assert not alike, f"two events described alike: {alike}"


# --- 2. print_table's cells that are not part(): None and '' -----------------------------------------


def test_history_at_never_prints_null_and_empty_text_alike(db):
    """Attack: `pgaudit history TABLE KEY --at ...` prints a row's image as a column/value table
    through print_table, whose cell() writes None as '' (pgaudit_py/output.py) and a text '' as ''
    too: a column that was NULL and one that was the empty string (or the text 'true' and the
    boolean true, a text '{"a":1}' and a jsonb object) read the same. A break: two rows that
    differ in that column print the same value cell."""
    db.execute("CREATE TABLE public.t41h (id int PRIMARY KEY, note text, flag text, doc jsonb)")
    enable_tracking(db, "public.t41h")
    db.execute("""INSERT INTO public.t41h VALUES (1, NULL, 'true', '{"a":1}'), (2, '', NULL, '"{\\"a\\":1}"')""")
    db.execute("UPDATE public.t41h SET flag = NULL WHERE id = 2")
    printed = {}
    for key in ("1", "2"):
        code, out, err = _run(_cli("history", "public.t41h", key, "--at", "0s", "--dsn", _dsn(db.info)), _env(False))
        assert code == 0, err[-300:]
        printed[key] = {line.split(None, 1)[0]: line.split(None, 1)[1:] for line in out.strip().splitlines()[2:]}
    same = [col for col in ("note", "doc") if printed["1"].get(col) == printed["2"].get(col)]
    assert not same, f"columns that differ print alike: {same} in {printed}"


def test_tracked_never_prints_two_column_lists_alike(db):
    """Attack: `pgaudit tracked` prints the excluded and redacted columns joined by ','
    (pgaudit_py/cli/tracking.py), and a column's name may hold ','. A table excluding the one
    column "a,b" prints as one excluding a and b: the operator reads that a and b are never stored
    when both are. A break: the two exclude cells are the same."""
    db.execute('CREATE TABLE public.t41one (id int PRIMARY KEY, "a,b" text, a text, b text)')
    db.execute("CREATE TABLE public.t41two (id int PRIMARY KEY, a text, b text)")
    enable_tracking(db, "public.t41one", exclude_columns=["a,b"])
    enable_tracking(db, "public.t41two", exclude_columns=["a", "b"])
    code, out, err = _run(_cli("tracked", "--dsn", _dsn(db.info)), _env(False))
    assert code == 0, err[-300:]
    lines = out.splitlines()
    start = lines[0].index("exclude")
    width = lines[1][start:].index(" ") if " " in lines[1][start:] else len(lines[1]) - start
    cells = {}
    for line in lines[2:]:
        for name in ("t41one", "t41two"):
            if name in line.split()[0]:
                cells[name] = line[start : start + width].strip()
    assert len(cells) == 2, out
    assert cells["t41one"] != cells["t41two"], f"exclude lists print alike: {cells}"


# --- 3. Characters printable() keeps that a terminal does not show as they are ----------------------

BLANKS = ["\u3164", "\u2800", "\u115f", "\uffa0"]  # Hangul filler, braille blank, choseong filler, halfwidth filler


def test_the_events_table_never_prints_a_blank_looking_character_raw(db):
    """Attack: printable() keeps every character str.isprintable() calls printable; the Hangul
    fillers (U+3164, U+115F, U+FFA0, category Lo) and the braille blank (U+2800, So) are, yet a
    terminal shows them as blank space. part() quotes a value holding a space, not one of these,
    so an actor id 'x' and 'x' + U+3164 print as the same-looking cell, and 'app:admin' + U+2800 +
    'ops' reads as two fields. A break: one of them reaches the output as itself rather than as
    an escape (or in quotes)."""
    for blank in BLANKS:
        _record(db, "odd.blank", actor_id="admin" + blank + "ops")
    code, out, err = _run(_cli("events", "--kind-prefix", "odd.", "--dsn", _dsn(db.info)), _env(False))
    assert code == 0, err[-300:]
    raw = [f"U+{ord(b):04X}" for b in BLANKS if b in out and f'"admin{b}ops"' not in out]
    assert not raw, f"printed raw and unquoted: {raw}\n{out}"


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 0 if unicodedata.combining(c) else 1 for c in text)


def test_the_events_table_keeps_its_columns_under_wide_characters(db):
    """Attack: print_table pads each cell to len() characters, not to the columns a terminal gives
    them: a fullwidth actor id (U+FF21.., two columns each) or one of combining marks (none) puts
    every later cell of its row off its header, so a kind or a target seems to sit in another
    column. A break: the kind column does not start at the same terminal column on every line."""
    _record(db, "odd.wide", actor_id="\uff21\uff21\uff21\uff21\uff21\uff21")
    _record(db, "odd.wide", actor_id="e" + "\u0301" * 6)
    _record(db, "odd.wide", actor_id="AAAAAA")
    code, out, err = _run(_cli("events", "--kind-prefix", "odd.", "--dsn", _dsn(db.info)), _env(False))
    assert code == 0, err[-300:]
    lines = out.splitlines()
    starts = {_width(lines[0][: lines[0].index("kind")])}
    starts |= {_width(line[: line.index("odd.wide")]) for line in lines[2:]}
    assert len(starts) == 1, f"the kind column starts at columns {sorted(starts)}:\n{out}"


# --- 4. Text from a prompt, not argv -------------------------------------------------------------------


def test_a_confirmation_answer_that_is_not_utf8_is_refused_in_one_line(db):
    """Attack: `pgaudit prune` asks 'Delete them?' through click.confirm, which reads standard
    input as text; Utf8Text only sees argv and the environment. An answer that is not UTF-8 under
    a strict locale (de_DE.UTF-8). A break: a traceback, or anything deleted."""
    _record(db, "odd.prune")
    AuditTrail(db).seal()
    time.sleep(1.5)  # older than the shortest cutoff prune takes
    before = db.execute("SELECT count(*) FROM audit.list_events(kind_prefix => 'odd.prune')").fetchone()[0]
    code, out, err = _run(_cli("prune", "--older-than", "1s", "--dsn", _dsn(db.info)), _env(True), stdin=b"y\xff\n")
    after = db.execute("SELECT count(*) FROM audit.list_events(kind_prefix => 'odd.prune')").fetchone()[0]
    assert "Delete them?" in out, (out, err)
    assert "Traceback" not in out + err, err[-300:]
    assert code in (1, 2) and err.startswith("pgaudit: ") and len(err.strip().splitlines()) == 1, (code, err)
    assert after == before == 1


def test_no_log_line_from_a_kind_the_database_refuses(db, caplog):
    """Attack: record(best_effort=True) logs 'audit event KIND not recorded' with the kind as given
    (pgaudit_py/events.py not_recorded); a kind holding a newline then a forged log line. A
    break: a log record whose message holds a line break."""
    from pgaudit_py.events import record

    forged = "order.paid\nWARNING root: all audit events recorded"
    with caplog.at_level("WARNING"):
        try:
            record(db, forged, best_effort=True)
        except Exception as exc:  # refused as bad input: nothing logged, which is safe
            assert "\n" not in str(exc).splitlines()[0]
    broken = [r.getMessage() for r in caplog.records if "\n" in r.getMessage() or "\r" in r.getMessage()]
    assert not broken, broken


def test_tokens_list_never_prints_an_unbound_reader_like_a_bound_one(db, make_token):
    """Attack: `pgaudit tokens list` prints a token's tenant through print_table's plain cell
    (pgaudit_py/cli/tokens.py), not part(): a reader bound to no tenant (it reads every tenant's
    events) prints '' there, and so does a reader bound to the tenant ' ' (create_api_token allows
    1 to 256 characters of any kind). A break: the two tokens' tenant cells are the same."""
    make_token(name="t41all")
    make_token(name="t41space", tenant_id=" ")
    code, out, err = _run(_cli("tokens", "list", "--dsn", _dsn(db.info)), _env(False))
    assert code == 0, err[-300:]
    lines = out.splitlines()
    start, end = lines[0].index("tenant"), lines[0].index("state")
    cells = {line.split()[1]: line[start:end] for line in lines[2:]}
    assert cells["t41all"] != cells["t41space"], f"tenant cells alike: {cells}\n{out}"
