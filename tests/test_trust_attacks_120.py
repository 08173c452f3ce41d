"""A hundred-and-twentieth attacker's trial: archive query's JSON columns cut from each line by
verify_archive.top_level (8422673), and the verifiers' reading of edge lines with that scanner.

  Q. archive query (docs/auditors.md "Reading the archive"): each JSON column is its text cut from the
     line, every number as archived; `line` is the whole line; a line that is not a JSON object fails
     the query in one line naming its file and line (exit 2), never a traceback.
  V. both verifiers agree on every holder-signed batch, no traceback, no false alarm; a first/last line
     that is no JSON object is a problem.
  E. error paths of archive query: one line, exit 2, never a hang.

Each test asserts the claimed outcome, so it FAILS when the attack works. Objects are prefixed t120_.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time
from contextlib import suppress
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from test_archive_offline import verifier_file  # noqa: F401
from test_archive_offline_attacks import holder_batch, standalone, v1_line
from trial_helpers import seal_all

from pgaudit_py.cli import cli

BATCH = "blocks-000000000001-000000000001"


@pytest.fixture
def clean(db):
    yield db
    with suppress(psycopg.Error):
        db.execute("ROLLBACK")
    with suppress(psycopg.Error):
        db.execute("RESET ROLE")
    with suppress(psycopg.Error):
        db.execute("DROP TABLE IF EXISTS public.t120_n CASCADE")


def held(tmp_path: Path, lines: list[bytes]) -> tuple[Path, Path]:
    from pgaudit_py.checkpoint import generate_keys
    generate_keys(tmp_path / "keys")
    holder_batch(tmp_path / "archive", tmp_path / "keys" / "checkpoint-ed25519.pem", lines)
    return tmp_path / "archive", tmp_path / "keys" / "checkpoint-ed25519.pub.pem"


def query(directory: Path, sql: str, *extra: str):
    return CliRunner().invoke(cli, ["archive", "query", sql, "--target", f"file://{directory}", *extra])


def query_proc(directory: Path, sql: str, *extra: str, timeout: int = 60, env=None, preexec=None):
    try:
        return subprocess.run([sys.executable, "-c", "from pgaudit_py.cli import main; main()", "archive", "query", sql,
                               "--target", f"file://{directory}", *extra], capture_output=True, text=True,
                              timeout=timeout, env=env, preexec_fn=preexec)
    except subprocess.TimeoutExpired:
        pytest.fail(f"archive query ran over {timeout}s")


def verify_both(verifier: Path, directory: Path, public: Path):
    done = standalone(verifier, directory, public)
    builtin = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", f"file://{directory}",
                                       "--public-key", str(public)])
    return done, builtin


def assert_named_failure(q, number: int = 1) -> None:
    """exit 2, one line on stderr naming the data object and the line, no traceback."""
    err = q.stderr
    assert q.exit_code == 2 if hasattr(q, "exit_code") else q.returncode == 2, (getattr(q, "exit_code", None),
                                                                                  q.stdout[-300:], err[-500:])
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err[-800:]
    assert BATCH in err and f"line {number}" in err, err[-500:]


# --- Q: lines that are not JSON objects must fail the query, naming file and line ----------------

NOT_JSON = {
    "invalid_escape_in_skipped_string": (b'"kind": "k"', b'"kind": "a\\qb"'),
    "raw_control_char_in_skipped_string": (b'"kind": "k"', b'"kind": "a\x01b"'),
    "number_1.2.3_in_skipped_run": (b'"seq": 1,', b'"seq": 1, "x": 1.2.3,'),
    "bare_minus_in_skipped_run": (b'"seq": 1,', b'"seq": 1, "x": -,'),
    "deep_mismatched_brackets_payload": (b'"payload": {}', b'"payload": ' + b"[" * 5000 + b"}" * 5000),
    "deep_garbage_payload": (b'"payload": {}', b'"payload": ' + b"[" * 5000 + b"@!" + b"]" * 5000),
    "nan_payload": (b'"payload": {}', b'"payload": NaN'),
}


@pytest.mark.parametrize("case", list(NOT_JSON))
@pytest.mark.parametrize("sql", ["SELECT count(*) FROM events", "SELECT line FROM events"])
def test_q1_a_line_that_is_no_json_object_fails_the_query_naming_file_and_line(tmp_path, case, sql):
    old, new = NOT_JSON[case]
    line = v1_line(1, "{}").replace(old, new, 1)
    assert line != v1_line(1, "{}")
    directory, _ = held(tmp_path, [line, v1_line(2, "{}")])
    assert_named_failure(query(directory, sql))


@pytest.mark.parametrize("case", list(NOT_JSON))
def test_v1_a_first_line_that_is_no_json_object_is_named_by_both_verifiers(tmp_path, verifier_file, case):  # noqa: F811
    old, new = NOT_JSON[case]
    directory, public = held(tmp_path, [v1_line(1, "{}").replace(old, new, 1), v1_line(2, "{}")])
    done, builtin = verify_both(verifier_file, directory, public)
    assert "Traceback" not in done.stderr + builtin.output, (done.stderr[-800:], builtin.output[-800:])
    assert done.returncode == builtin.exit_code, (done.returncode, builtin.exit_code, done.stdout, builtin.output)
    assert done.returncode == 1 and "not a JSON object" in done.stdout, (done.stdout, done.stderr[-500:])


# --- Q: honest but hostile content: each JSON column is its text cut from the line -----------------

DEEP = "[" * 20000 + "1" + "]" * 20000
HOSTILE_PAYLOADS = {
    "numbers": '{"a": 12345678901234567.89, "b": 1e-400, "c": 1e400, "d": -0, "e": 1.500, "f": 1' + "0" * 5000 + "}",
    "top_level_names_inside": '{"payload": 1, "occurred_at": "x", "changed": {"row_after": [1]}, "seq": 9, "kind": "z"}',
    "quotes_brackets_escapes": '{"s": "\\"payload\\": 1, ]}[{ \\\\ \\" \\u0041 \\u2028 \\/", "t": "}"}',
    "raw_u2028_u0085_nel": '{"s": "a\u2028b\u2029c\u0085d"}',
    "deep_past_recursion": DEEP,
    "deep_object_past_recursion": '{"a":' * 3000 + "1" + "}" * 3000,
    "many_members": "{" + ", ".join(f'"k{i}": {i}.10' for i in range(100000)) + "}",
    "odd_whitespace": '{ \t"a" \t:\t 1.0 \r, "b"\r:\r[ 1 , 2 ]\t}',
    "long_string": '{"s": "' + "\\\"" * 200000 + '"}',
}


@pytest.mark.parametrize("case", list(HOSTILE_PAYLOADS))
def test_q2_a_held_payload_is_shown_as_archived_and_verifies(tmp_path, verifier_file, case):  # noqa: F811
    payload = HOSTILE_PAYLOADS[case]
    lines = [v1_line(1, payload), v1_line(2, payload)]
    directory, public = held(tmp_path, lines)
    done, builtin = verify_both(verifier_file, directory, public)
    assert "Traceback" not in done.stderr + builtin.output, (done.stderr[-800:], builtin.output[-800:])
    assert done.returncode == builtin.exit_code == 0, (done.returncode, builtin.exit_code, done.stdout[-500:],
                                                        builtin.output[-500:])
    q = query(directory, "SELECT seq, payload, line, kind FROM events ORDER BY seq", "--json")
    assert q.exit_code == 0, (q.output[-500:], repr(q.exception))
    rows = json.loads(q.stdout)
    assert [r["seq"] for r in rows] == [1, 2]
    for r, line in zip(rows, lines, strict=True):
        assert r["payload"] == payload, (r["payload"][:200], payload[:200])
        assert r["line"] == line.decode(), (r["line"][:200], line[:200])
        assert r["kind"] == "k"
    only = query(directory, "SELECT payload FROM events WHERE seq = 2", "--json")
    assert only.exit_code == 0 and json.loads(only.stdout)[0]["payload"] == payload, only.output[-300:]


def test_q3_duplicate_and_escaped_top_level_names_read_as_duckdb_reads_the_line(tmp_path, verifier_file):  # noqa: F811
    """Which payload is shown for a line with two? The first, as DuckDB's line->'payload' (scalars: line->>)."""
    base = v1_line(1, '{"first": 1.10}')
    dup = base[:-1] + b', "payload": {"second": 2.20}, "occurred_at": "2027-01-01T00:00:00Z"}'
    esc = v1_line(2, '{"x": 1}').replace(b'"payload": {"x": 1}', b'"p\\u0061yload": {"esc": 3.30}, "payload": {"plain": 4}')
    lines = [dup, esc]
    directory, public = held(tmp_path, lines)
    done, builtin = verify_both(verifier_file, directory, public)
    assert done.returncode == builtin.exit_code == 0, (done.stdout, builtin.output)
    assert done.stdout.split(":", 1)[1] == builtin.output.split(":", 1)[1], (done.stdout, builtin.output)
    q = query(directory, "SELECT seq, payload, CAST(line->'payload' AS VARCHAR) AS duck, occurred_at,"
                         " line->>'occurred_at' AS duck_at FROM events ORDER BY seq", "--json")
    assert q.exit_code == 0, q.output[-400:]
    rows = json.loads(q.stdout)
    assert json.loads(rows[0]["payload"]) == json.loads(rows[0]["duck"]) == {"first": Decimal("1.10")} or \
        rows[0]["payload"] == '{"first": 1.10}', rows
    assert json.loads(rows[1]["payload"]) == json.loads(rows[1]["duck"]), rows
    assert "2026-01-01" in str(rows[0]["occurred_at"]) and rows[0]["duck_at"].startswith("2026-01-01"), rows
    assert "2026-01-01T00:00:01" in done.stdout, done.stdout


@pytest.mark.parametrize("ending", ["crlf", "blank_lines", "no_final_newline", "trailing_spaces"])
def test_q4_line_endings_and_blank_lines(tmp_path, verifier_file, ending):  # noqa: F811
    """Holder-signed lines with odd endings: the query shows each line whole; the blank lines are not
    events; both verifiers agree."""
    from pgaudit_py.checkpoint import generate_keys
    generate_keys(tmp_path / "keys")
    lines = [v1_line(1, '{"a": 1.0}'), v1_line(2, '{"b": 2.0}')]
    if ending == "crlf":
        lines = [ln + b"\r" for ln in lines]
    elif ending == "trailing_spaces":
        lines = [ln + b" \t " for ln in lines]
    holder_batch(tmp_path / "archive", tmp_path / "keys" / "checkpoint-ed25519.pem", lines)
    directory = tmp_path / "archive"
    if ending in ("blank_lines", "no_final_newline"):
        gz = directory / f"{BATCH}.jsonl.gz"
        data = gzip.decompress(gz.read_bytes())
        data = data.replace(b"\n", b"\n\n") if ending == "blank_lines" else data[:-1]
        gz.write_bytes(gzip.compress(data))  # no longer what was signed: the verifiers must say so
    done, builtin = verify_both(verifier_file, directory, tmp_path / "keys" / "checkpoint-ed25519.pub.pem")
    assert "Traceback" not in done.stderr + builtin.output
    assert done.returncode == builtin.exit_code, (done.stdout, builtin.output)
    q = query(directory, "SELECT seq, payload, line FROM events ORDER BY seq", "--json")
    assert q.exit_code == 0, q.output[-300:]
    rows = json.loads(q.stdout)
    assert [r["seq"] for r in rows] == [1, 2] and [r["payload"] for r in rows] == ['{"a": 1.0}', '{"b": 2.0}'], rows
    if ending == "trailing_spaces":  # "line (the whole canonical line)" as archived (a CR before LF: JSON Lines' end)
        assert [r["line"] for r in rows] == [ln.decode() for ln in lines], [r["line"][-20:] for r in rows]


# --- Real database: what PostgreSQL stored is what archive query shows ----------------------------

def _tokens(text: str) -> list[str]:
    return re.findall(r'(?<![\w."])-?[0-9][0-9.eE+-]*', re.sub(r'"(?:[^"\\]|\\.)*"', '""', text))


def test_q5_real_archive_payloads_and_row_images_as_stored(clean, connect, tmp_path, verifier_file):  # noqa: F811
    from pgaudit_py.archive import archive
    from pgaudit_py.archive_targets import open_target
    from pgaudit_py.checkpoint import generate_keys, load_keys
    db = clean
    db.execute("CREATE TABLE public.t120_n (id int PRIMARY KEY, n numeric, j jsonb, js json);"
               " GRANT ALL ON public.t120_n TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t120_n')")
    writer = connect("app_writer")
    big = "9" * 4400
    writer.execute("INSERT INTO public.t120_n VALUES (1, %s::numeric, %s::jsonb, %s::json)",
                   ["1e-400", '{"x": 12345678901234567.89, "y": 1.500, "z": -0, "w": 1e400, "payload": 1}',
                    '{"q": 1.500, "r": 1e-400, "payload": "]}"}'])
    writer.execute("UPDATE public.t120_n SET n = %s::numeric, j = j || '{\"v\": 0.10000000000000000555}'", [big])
    payloads = [
        '{"a": 12345678901234567.89, "b": 1e-399, "c": 9.999e399, "d": -0, "e": 1.500, "f": ' + "9" * 399 + '.5}',
        '{"payload": 1, "occurred_at": "x", "row_after": [1], "changed": {}, "seq": 2, "kind": "y"}',
        '{"s": "\\"payload\\": 1, ]}[{ \\\\ \\" \\t \\u2028 \u2028 \\u0085"}',
        '{"d": ' + "[" * 5000 + "1.000" + "]" * 5000 + "}",
    ]
    for p in payloads:
        writer.execute("SELECT audit.record(kind => 't120.q5', payload => %s::jsonb)", [p])
    assert seal_all(db) is None
    stored = db.execute("SELECT seq, payload::text, row_before::text, row_after::text, changed::text FROM audit.events"
                        " WHERE kind = 't120.q5' OR kind LIKE 'public.t120_n%' ORDER BY seq").fetchall()
    assert len(stored) == 6
    keys_dir = tmp_path / "keys"
    generate_keys(keys_dir)
    directory = tmp_path / "arch"
    time.sleep(0.05)
    assert archive(connect("app_maintainer"), open_target(f"file://{directory}"),
                   load_keys(signing_key=keys_dir / "checkpoint-ed25519.pem"), older_than=timedelta(milliseconds=1)).batches
    done, builtin = verify_both(verifier_file, directory, keys_dir / "checkpoint-ed25519.pub.pem")
    assert done.returncode == builtin.exit_code == 0, (done.stdout[-400:], done.stderr[-400:], builtin.output[-400:])
    q = query(directory, "SELECT seq, payload, row_before, row_after, changed, line FROM events"
                         " WHERE kind = 't120.q5' OR kind LIKE 'public.t120_n%' ORDER BY seq", "--json")
    assert q.exit_code == 0, (q.output[-400:], repr(q.exception))
    rows = json.loads(q.stdout)
    assert [r["seq"] for r in rows] == [s[0] for s in stored]
    problems = []
    for (seq, *want), r in zip(stored, rows, strict=True):
        try:
            line = json.loads(r["line"], parse_float=Decimal, parse_int=Decimal)
        except RecursionError:  # the deep payload: its numbers are compared, not its reading
            line = None
        for name, pg in zip(("payload", "row_before", "row_after", "changed"), want, strict=True):
            got = r[name]
            if pg is None:
                if got not in (None, "null"):
                    problems.append(f"{seq} {name}: stored NULL, shown {got[:80]}")
                continue
            if got is None:
                problems.append(f"{seq} {name}: stored {pg[:80]}, shown NULL")
                continue
            if _tokens(got) != _tokens(pg):
                problems.append(f"{seq} {name}: numbers stored {_tokens(pg)[:8]} shown {_tokens(got)[:8]}")
            if line is not None and json.loads(got, parse_float=Decimal, parse_int=Decimal) != line[name]:
                problems.append(f"{seq} {name}: shown {got[:80]} is not the line's {str(line[name])[:80]}")
    assert not problems, problems
    for sql in ("SELECT * FROM events", "SELECT payload FROM events", "SELECT seq, kind FROM events",
                "SELECT line FROM events"):
        for extra in ([], ["--json"]):
            out = query(directory, sql, *extra)
            assert out.exit_code == 0 and "Traceback" not in out.output, (sql, extra, out.output[-300:])


# --- E: error paths: one line, exit 2, no traceback, never a hang ---------------------------------

def _one_line_exit_2(p) -> None:
    assert p.returncode == 2, (p.returncode, p.stdout[-300:], p.stderr[-800:])
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr[-800:]


def _archive_with(tmp_path: Path, make) -> Path:
    directory, _ = held(tmp_path, [v1_line(1, "{}"), v1_line(2, "{}")])
    gz = directory / f"{BATCH}.jsonl.gz"
    make(gz)
    return directory


ERRORS = {
    "not_gzip": lambda gz: gz.write_bytes(b"plain text\n"),
    "truncated_gzip": lambda gz: gz.write_bytes(gz.read_bytes()[:-12]),
    "gzip_then_garbage": lambda gz: gz.write_bytes(gz.read_bytes() + b"garbage!"),
    "a_directory": lambda gz: (gz.unlink(), gz.mkdir()),
    "symlink_dev_zero": lambda gz: (gz.unlink(), gz.symlink_to("/dev/zero")),
    "symlink_dev_urandom": lambda gz: (gz.unlink(), gz.symlink_to("/dev/urandom")),
    "fifo": lambda gz: (gz.unlink(), os.mkfifo(gz)),
    "non_utf8_byte": lambda gz: gz.write_bytes(gzip.compress(b'{"v": 1, "kind": "\xff"}\n')),
    "bom": lambda gz: gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + v1_line(1, "{}") + b"\n")),
    "gzip_of_zeros": lambda gz: gz.write_bytes(gzip.compress(b"\0" * (1 << 20))),
    "symlink_loop": lambda gz: (gz.unlink(), gz.symlink_to(gz.name)),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_e1_a_bad_data_object_fails_the_query_in_one_line(tmp_path, case):
    directory = _archive_with(tmp_path, ERRORS[case])
    p = query_proc(directory, "SELECT count(*) FROM events", timeout=30)
    _one_line_exit_2(p)
    assert BATCH in p.stderr, p.stderr


def test_e2_scratch_full_is_one_line(tmp_path):
    """The scratch file cannot grow (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG, as on a full disk)."""
    import resource
    directory, _ = held(tmp_path, [v1_line(1, '{"s": "' + "a" * 200000 + '"}'), v1_line(2, "{}")])

    def small() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (50000, 50000))
    p = query_proc(directory, "SELECT count(*) FROM events", preexec=small)
    _one_line_exit_2(p)


def test_e3_scratch_directory_missing_or_unwritable_is_one_line(tmp_path):
    directory, _ = held(tmp_path, [v1_line(1, "{}"), v1_line(2, "{}")])
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    env = {**os.environ, "TMPDIR": str(tmp_path / "missing"), "TEMP": str(ro), "TMP": str(ro)}
    p = query_proc(directory, "SELECT count(*) FROM events", env=env)
    assert "Traceback" not in p.stderr, p.stderr[-800:]
    assert p.returncode in (0, 2), (p.returncode, p.stderr[-500:])


def test_v2_both_verifiers_agree_on_a_first_line_nested_near_the_recursion_limit(tmp_path, verifier_file):  # noqa: F811
    """A first line whose payload is "[" * d + "}" * d (no JSON object) for d near Python's recursion limit:
    json's C scanner names it where the stack allows, the bracket count (used past it) passes it. The two
    verifiers run at different stack depths: they must still agree (and name it)."""
    from pgaudit_py.checkpoint import generate_keys
    generate_keys(tmp_path / "keys")
    public = tmp_path / "keys" / "checkpoint-ed25519.pub.pem"
    seen = []
    for d in range(700, 1001, 5):
        directory = tmp_path / f"a{d}"
        holder_batch(directory, tmp_path / "keys" / "checkpoint-ed25519.pem",
                     [v1_line(1, "[" * d + "}" * d), v1_line(2, "{}")])
        done, builtin = verify_both(verifier_file, directory, public)
        seen.append((d, done.returncode, builtin.exit_code))
        assert "Traceback" not in done.stderr + builtin.output
        assert done.returncode == builtin.exit_code, (f"depth {d}: standalone {done.returncode} {done.stdout.strip()!r},"
                                                      f" archive verify --offline {builtin.exit_code}"
                                                      f" {builtin.output.strip()!r}")
    assert all(s == b == 1 for _, s, b in seen), [x for x in seen if x[1:] != (1, 1)][:3]


def test_q6_a_16_mib_line_of_escapes_is_queried_whole(tmp_path):
    """A line near the 16 MiB a line may hold, its payload all escaped quotes (each four characters once
    the row is written): the query shows the payload and the line as archived."""
    payload = '{"s": "' + '\\"' * (8 << 20) + '"}'
    lines = [v1_line(1, payload), v1_line(2, "{}")]
    directory, _ = held(tmp_path, lines)
    q = query(directory, "SELECT seq, length(CAST(payload AS VARCHAR)) AS n, length(line) AS l FROM events"
                         " ORDER BY seq", "--json")
    assert q.exit_code == 0, (q.output[-400:], repr(q.exception))
    rows = json.loads(q.stdout)
    assert [(r["seq"], r["n"], r["l"]) for r in rows] == [(1, len(payload), len(lines[0])), (2, 2, len(lines[1]))], rows


def test_q7_a_lone_surrogate_escape_is_shown_or_named_by_file_and_line(tmp_path, verifier_file):  # noqa: F811
    """"\\udc00" is JSON by RFC 8259's grammar (Python reads it; both verifiers pass it). The query either
    shows it or, refusing it, names the file and line as the claim says."""
    lines = [v1_line(1, '{"s": "\\udc00"}'), v1_line(2, "{}")]
    directory, public = held(tmp_path, lines)
    done, builtin = verify_both(verifier_file, directory, public)
    assert done.returncode == builtin.exit_code, (done.stdout, builtin.output)
    q = query(directory, "SELECT payload FROM events")
    assert q.exit_code == 0 or (q.exit_code == 2 and BATCH in q.stderr and "line 1" in q.stderr), (q.exit_code,
                                                                                                  q.output[-400:])


def test_e4_both_verifiers_end_on_a_data_object_that_is_a_fifo(tmp_path, verifier_file):  # noqa: F811
    directory, public = held(tmp_path, [v1_line(1, "{}"), v1_line(2, "{}")])
    gz = directory / f"{BATCH}.jsonl.gz"
    gz.unlink()
    os.mkfifo(gz)
    done = standalone(verifier_file, directory, public, timeout=30)
    try:
        builtin = subprocess.run([sys.executable, "-c", "from pgaudit_py.cli import main; main()", "archive", "verify",
                                  "--offline", "--target", f"file://{directory}", "--public-key", str(public)],
                                 capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("archive verify --offline ran over 30s on a FIFO")
    assert done.returncode == builtin.returncode == 1, (done.stdout, builtin.stdout, builtin.stderr[-500:])
    assert "Traceback" not in done.stderr + builtin.stderr


def test_q8_a_line_with_100000_top_level_members_before_its_payload(tmp_path, verifier_file):  # noqa: F811
    extra = ", ".join(f'"x{i}": {i}.50' for i in range(100000)).encode()
    lines = [v1_line(1, '{"a": 1.50}').replace(b'"seq": 1,', b'"seq": 1, ' + extra + b","), v1_line(2, "{}")]
    directory, public = held(tmp_path, lines)
    done, builtin = verify_both(verifier_file, directory, public)
    assert done.returncode == builtin.exit_code == 0, (done.stdout[-300:], builtin.output[-300:])
    q = query(directory, "SELECT seq, payload, line->>'x99999' AS last FROM events ORDER BY seq", "--json")
    assert q.exit_code == 0, q.output[-300:]
    rows = json.loads(q.stdout)
    assert rows[0]["payload"] == '{"a": 1.50}' and float(rows[0]["last"]) == 99999.5, rows[0]  # DuckDB's ->> : a double (documented)
