"""A hundred-and-twenty-first attacker's trial: new variants against the mends of 5d4295d/8a05793 (archive
query's JSON columns cut by verify_archive.top_level; value_end's tokenizer past json's recursion).

  F. value_end's tokenizer gives json.loads' verdict (NaN refused), forced or at real depth, whatever the
     caller's stack depth; top_level cuts the same values.
  D. both verifiers agree on first lines nested near/past the recursion limit with bad or good bottoms.
  Q. archive query: deep bad lines fail naming file and line; deep good lines shown as archived.
  M. MEMBER edge cases: names as prefixes/suffixes, escaped names, odd white space, duplicates first.
  S. surrogates: escaped backslashes before u, lone halves, pairs.
  P. growth at n and 8n on hostile lines (ratio bound only).

Each test asserts the claimed outcome, so it FAILS when the attack works. No database objects.
"""

from __future__ import annotations

import json
import random
import sys
import time

import pytest
from test_archive_offline import verifier_file  # noqa: F401
from test_archive_offline_attacks import v1_line
from test_trust_attacks_120 import BATCH, held, query, verify_both

from pgaudit_py import archive_query, verify_archive


def json_says(text: str) -> bool:
    try:
        json.loads(text, parse_constant=verify_archive.refused, parse_float=len, parse_int=len)
        return True
    except ValueError:
        return False
    except RecursionError:
        return None  # type: ignore[return-value]


def tokenizer_says(text: str) -> bool:
    start = len(text) - len(text.lstrip(" \t\n\r"))
    try:
        return not text[verify_archive.value_end(text, start):].strip(" \t\n\r")
    except ValueError:
        return False


class Recursing:
    def raw_decode(self, text, i):
        raise RecursionError


# JSON pieces, right and wrong: bottoms placed at the end of deep nests.
BOTTOMS = {
    "ok_num": "1", "ok_str": '"a\\u00e9\\"\\\\\\/\\b\\f\\n\\r\\t"', "ok_obj": '{"k": [1, -0.5e+3, true, null]}',
    "ok_empty": "", "ok_pair": '"\\ud83d\\ude00"', "ok_lone": '"\\udc00"', "ok_del": '"\x7f\u2028\u0085"',
    "leading_zero": "01", "dot_end": "1.", "bare_minus": "-", "exp_end": "1e", "plus": "+1", "nan": "NaN",
    "inf": "Infinity", "minus_inf": "-Infinity", "trailing_comma": "1,", "double_comma": "1,,2",
    "missing_colon_obj": '{"a" 1}', "bad_escape": '"\\x"', "short_u": '"\\u12"', "upper_U": '"\\U0041"',
    "ctl_char": '"\x01"', "tab_in_str": '"\t"', "nbsp_ws": "\u00a01", "u2028_ws": "\u20281", "bom_ws": "\ufeff1",
    "vt_ws": "\x0b1", "ff_ws": "\x0c1", "single_quote": "'a'", "hex": "0x1", "dot_lead": ".5", "true_prefix": "tru",
    "truex": "truex", "two_values": "1 2", "colon_in_array": '"a": 1', "obj_trailing_comma": '{"a": 1,}',
    "obj_num_key": "{1: 2}", "unclosed_str": '"abc', "nul_raw": "\x00", "nested_nan": '{"a": [NaN]}',
    "neg_leading_zero": "-01", "exp_no_digits_sign": "1e+", "big_int": "1" + "0" * 5000,
    "escaped_slash_u": '"\\\\u12"',
}


def nest(depth: int, bottom: str, kind: str, start: int = 0) -> str:
    opens, closes = [], []
    for n in range(start, depth):
        obj = kind == "{" or (kind == "mix" and n % 3 == 1)
        opens.append('{"k": ' if obj else "[")
        closes.append("}" if obj else "]")
    return "".join(opens) + bottom + "".join(reversed(closes))


def test_f1_forced_tokenizer_agrees_with_json_on_structured_mutants(monkeypatch):
    """Random JSON values (nested [ and {, all scalar forms) mutated at one point with a hostile piece: the
    tokenizer (SCAN forced to raise RecursionError) must give json.loads' verdict on each."""
    rng = random.Random(121)
    scalars = ['"a"', '"\\u00e9"', '"\\ud800"', '"\\\\ud800"', "0", "-0", "1.5e+3", "1E-0", "-0.0e00", "true", "false",
               "null", '""', '"\x7f"', '"\u2028"', "12345678901234567890123"]
    pieces = list(BOTTOMS.values()) + [" ", "\t", "\n", "\r", "]", "}", "[", "{", ",", ":", '"', "\\", "e", "."]

    def value(d: int) -> str:
        r = rng.random()
        if d > 4 or r < 0.4:
            return rng.choice(scalars)
        ws = rng.choice(["", " ", "\t\n\r "])
        if r < 0.7:
            return "[" + ws + ("," + ws).join(value(d + 1) for _ in range(rng.randint(0, 3))) + ws + "]"
        return "{" + ws + ("," + ws).join(f'{rng.choice(scalars[:4])}{ws}:{ws}{value(d + 1)}'
                                         for _ in range(rng.randint(0, 3))) + ws + "}"

    texts = []
    for _ in range(8000):
        t = value(0)
        cut = rng.randint(0, len(t))
        op = rng.random()
        piece = rng.choice(pieces)
        t = t[:cut] + piece + t[cut + (1 if op < 0.3 else 0):] if op < 0.8 else t
        texts.append(t)
    expected = [json_says(t) for t in texts]
    monkeypatch.setattr(verify_archive, "SCAN", Recursing())
    differ = [(t, want) for t, want in zip(texts, expected, strict=True) if tokenizer_says(t) != want]
    assert differ == [], differ[:10]
    assert 500 < sum(expected) < len(expected) - 500


@pytest.mark.parametrize("kind", ["[", "{", "mix"])
def test_f2_real_deep_nesting_verdict_is_the_shallow_one(kind):
    """No monkeypatch: a bottom nested 1, 900, 1000, 3000 and 20000 levels inside a payload gets the verdict
    json.loads gives its innermost 3 levels; a valid one is cut whole as the payload."""
    wrong = []
    for name, bottom in BOTTOMS.items():
        for depth in (1, 900, 1000, 3000, 20000):
            want = json_says(nest(depth, bottom, kind, start=max(0, depth - 3)))  # the innermost three levels
            payload = nest(depth, bottom, kind)
            text = '{"v": 1, "payload": ' + payload + ', "z": 2}'
            try:
                got = verify_archive.top_level(text).get("payload") == payload
            except ValueError:
                got = False
            except RecursionError:
                got = "RecursionError"
            if got != want:
                wrong.append((name, depth, want, got))
    assert wrong == [], wrong[:12]


def _at_depth(n: int, fn):
    if n <= 0:
        return fn()
    return _at_depth(n - 1, fn)


def test_f3_verdict_does_not_hang_on_the_callers_stack_depth():
    """top_level called from every stack depth where it can be entered at all: the same values, or the same
    ValueError, as from a shallow stack (never a RecursionError once top_level has been entered)."""
    limit = sys.getrecursionlimit()
    texts = {name: '{"a": "x", "payload": ' + nest(40, b, "mix") + ', "occurred_at": "t"}'
             for name, b in BOTTOMS.items() if name in ("ok_obj", "ok_num", "nan", "leading_zero", "ctl_char",
                                                        "trailing_comma", "nbsp_ws", "ok_lone", "bad_escape")}

    def verdict(text):
        try:
            return verify_archive.top_level(text)
        except ValueError:
            return "ValueError"

    shallow = {name: verdict(t) for name, t in texts.items()}
    differ, escaped = [], []
    for depth in range(0, limit, 3):
        for name, t in texts.items():
            entered = []

            def probe(t=t, entered=entered):
                entered.append(True)
                return verdict(t)
            try:
                got = _at_depth(depth, probe)
            except RecursionError:
                if entered:
                    escaped.append((depth, name))
                continue
            if got != shallow[name]:
                differ.append((depth, name, str(got)[:60], str(shallow[name])[:60]))
    assert differ == [], differ[:10]
    # A RecursionError from inside top_level (after it was entered) would reach archive query's caller raw.
    assert len({d for d, _ in escaped}) <= 2, sorted(set(escaped))[:10]


DEEP_FIRST = {
    "valid_obj_950": (nest(950, '{"a": 1.50}', "mix"), 0),
    "valid_5000": (nest(5000, "1.000", "mix"), 0),
    "nan_960": (nest(960, "NaN", "["), 1),
    "leading_zero_975": (nest(975, "01", "mix"), 1),
    "trailing_comma_990": (nest(990, "1,", "["), 1),
    "nbsp_997": (nest(997, "\u00a01", "{"), 1),
    "u2028_1000": (nest(1000, "\u20281", "["), 1),
    "ctl_char_985": (nest(985, '"\x01"', "mix"), 1),
    "bad_escape_5000": (nest(5000, '"\\x"', "mix"), 1),
    "missing_colon_993": (nest(993, '{"a" 1}', "["), 1),
    "double_comma_40000": (nest(40000, "1,,2", "["), 1),
}


@pytest.mark.parametrize("case", list(DEEP_FIRST))
def test_d1_both_verifiers_agree_on_a_deep_first_line(tmp_path, verifier_file, case):  # noqa: F811
    payload, want = DEEP_FIRST[case]
    directory, public = held(tmp_path, [v1_line(1, payload), v1_line(2, "{}")])
    done, builtin = verify_both(verifier_file, directory, public)
    assert "Traceback" not in done.stderr + builtin.output, (done.stderr[-800:], builtin.output[-800:])
    assert (done.returncode, builtin.exit_code) == (want, want), (done.stdout[-300:], builtin.output[-300:])
    if want:
        assert "not a JSON object" in done.stdout and "not a JSON object" in builtin.output
    else:
        assert done.stdout.split(":", 1)[1] == builtin.output.split(":", 1)[1]


@pytest.mark.parametrize("case", list(DEEP_FIRST))
def test_q1_archive_query_on_a_deep_line(tmp_path, case):
    """The deep line second: shown as archived when JSON, else the query fails naming the file and line 2."""
    payload, bad = DEEP_FIRST[case]
    lines = [v1_line(1, "{}"), v1_line(2, payload)]
    directory, _ = held(tmp_path, lines)
    q = query(directory, "SELECT seq, payload, line FROM events ORDER BY seq", "--json")
    if bad:
        assert q.exit_code == 2, (q.exit_code, q.output[-300:])
        err = q.stderr
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and BATCH in err and "line 2" in err, err
    else:
        assert q.exit_code == 0, (q.output[-300:], repr(q.exception))
        rows = json.loads(q.stdout)
        assert rows[1]["payload"] == payload and rows[1]["line"] == lines[1].decode()


MEMBERS = [
    # (text inserted before "payload", expected payload per first-wins over decoded names)
    '"payloads": {"no": 1}, "xpayload": {"no": 2}, "payload_": 3, ',
    '"\\u0070ayload": {"esc": 1.10}, ',
    '"payl\\u006fad" \t\r\n:\t\r\n [1.0] \r\n, ',
    '"pay\\/load": {"slash": 1}, ',
    '"p\u00e4yload": 1, "payl\u043ead": 2, "ｐａｙｌｏａｄ": 3, ',
    '"payload\\u0000": {"nul": 1}, ',
    '"row_after": {"ra": 1.50}, "row_after": {"ra2": 2}, ',
    '"x": "\\"payload\\": [9]", "y": "payload", ',
    '"a": 1e5, "b": -0.0E-0, "c": true, "d": null, "e": "\\\\", "f": "}", ',
    '"": {"empty": 0.10}, "occurred_at": "2026-01-01T00:00:01.000000Z", ',
    '"changed": {"c": 1}, "changed": null, ',
]


@pytest.mark.parametrize("n", range(len(MEMBERS)))
def test_m1_member_edge_cases_cut_as_json_reads_them(n):
    """top_level's values for the five names are the first member of each (by its decoded name), exactly as
    json.loads with first-wins reads them, for names that are prefixes, suffixes, escaped, non-ASCII, empty."""
    text = '{"v": 1,\t"seq":\r1, ' + MEMBERS[n] + '"payload":\n{"p": 12345678901234567.89}, "kind": "k"}'

    def first(pairs):
        out = {}
        for k, v in pairs:
            out.setdefault(k, v)
        return out
    want = json.loads(text, object_pairs_hook=first, parse_float=str, parse_int=str)
    got = verify_archive.top_level(text)
    problems = []
    for name in ("payload", "row_before", "row_after", "changed", "occurred_at"):
        if name in want:
            if name not in got or json.loads(got[name], object_pairs_hook=first, parse_float=str, parse_int=str) \
                    != want[name]:
                problems.append((name, got.get(name), want[name]))
        elif name in got:
            problems.append((name, got[name], None))
    assert problems == [], problems


def test_m2_duplicate_names_in_query_match_duckdb_first(tmp_path):
    """Duplicates of payload, changed, row_after (first escaped) and of kind/occurred_at: the JSON columns are
    the first, as DuckDB's line->'name' gives them, and the scalar columns are DuckDB's."""
    base = v1_line(1, '{"first": 1.10}')
    dup = base[:-1] + (b', "payload": {"second": 2}, "ch\\u0061nged": {"late": 1}, "kind": "second",'
                       b' "occurred_at": "2027-01-01T00:00:00Z", "row_after": [1.0]}')
    esc = v1_line(2, '{"x": 1}').replace(b'"changed": null', b'"ch\\u0061nged": {"esc": 3.30}, "changed": {"p": 4}')
    directory, _ = held(tmp_path, [dup, esc])
    q = query(directory, "SELECT seq, payload, changed, row_after, CAST(line->'payload' AS VARCHAR) AS dp,"
                         " CAST(line->'changed' AS VARCHAR) AS dc, CAST(line->'row_after' AS VARCHAR) AS dr, kind"
                         " FROM events ORDER BY seq", "--json")
    assert q.exit_code == 0, q.output[-400:]
    rows = json.loads(q.stdout)
    bad = []
    for r in rows:
        for col, duck in (("payload", "dp"), ("changed", "dc"), ("row_after", "dr")):
            a = None if r[col] in (None, "null") else json.loads(r[col])
            b = None if r[duck] in (None, "null") else json.loads(r[duck])
            if a != b:
                bad.append((r["seq"], col, r[col], r[duck]))
    assert bad == [], bad
    assert rows[0]["payload"] == '{"first": 1.10}' and rows[0]["kind"] == "k", rows[0]
    assert rows[1]["changed"] == '{"esc": 3.30}', rows[1]


SURROGATES = {
    "escaped_backslash_then_u": ('"\\\\ud800"', None),
    "two_escaped_backslashes_then_u": ('"\\\\\\\\udc00"', None),
    "escaped_backslash_then_real": ('"\\\\\\ud800"', "lone"),
    "high_alone": ('"\\ud800"', "lone"),
    "low_alone": ('"\\udc00"', "lone"),
    "high_high": ('"\\ud800\\ud800"', "lone"),
    "reversed": ('"\\udc00\\ud800"', "lone"),
    "high_then_ascii_escape": ('"\\ud800\\u0041"', "lone"),
    "high_at_end_of_pair": ('"\\ud83d\\ude00\\ud83d"', "lone"),
    "valid_pair": ('"\\ud83d\\ude00"', None),
    "valid_pair_upper": ('"\\uD83D\\uDE00"', None),
    "valid_pair_in_key": ('{"\\ud83d\\ude00": 1}', None),
    "lone_in_key": ('{"\\udfff": 1}', "lone"),
    "lone_deep": (nest(3000, '"\\udbff"', "mix"), "lone"),
    "pair_deep": (nest(3000, '"\\udbff\\udfff"', "mix"), None),
    "escaped_backslash_deep": (nest(3000, '"\\\\udbff"', "mix"), None),
}


@pytest.mark.parametrize("case", list(SURROGATES))
def test_s1_surrogate_escapes_shown_or_named(tmp_path, case):
    payload, lone = SURROGATES[case]
    lines = [v1_line(1, "{}"), v1_line(2, "{}"), v1_line(3, payload)]
    directory, _ = held(tmp_path, lines)
    q = query(directory, "SELECT seq, payload, line FROM events ORDER BY seq", "--json")
    if lone:
        err = q.stderr
        assert q.exit_code == 2, (q.exit_code, q.output[-300:])
        assert len(err.strip().splitlines()) == 1 and BATCH in err and "line 3" in err and "surrogate" in err, err
    else:
        assert q.exit_code == 0, (q.output[-300:], repr(q.exception))
        rows = json.loads(q.stdout)
        assert rows[2]["payload"] == payload and rows[2]["line"] == lines[2].decode()


def test_s2_lone_surrogate_in_a_scalar_column_is_named(tmp_path):
    """In kind (a scalar column DuckDB reads with ->>), and in a skipped top-level member."""
    for n, (old, new) in enumerate([(b'"kind": "k"', b'"kind": "\\ud800x"'),
                                    (b'"txid": "1"', b'"txid": "\\udc00"')]):
        directory, _ = held(tmp_path / str(n), [v1_line(1, "{}"), v1_line(2, "{}").replace(old, new)])
        q = query(directory, "SELECT seq, kind FROM events")
        assert q.exit_code == 2 and "line 2" in q.stderr and BATCH in q.stderr, (n, q.exit_code, q.output[-300:])


HOSTILE = {
    "deep_past_recursion": lambda n: '{"payload": ' + nest(n, "1", "mix") + "}",
    "members_each_past_recursion": lambda n: "{" + ", ".join(f'"k{i}": ' + nest(1100, "1", "[")
                                                            for i in range(max(1, n // 2200))) + "}",
    "escaped_names": lambda n: "{" + ", ".join(f'"\\u0078{i}": {i}' for i in range(n // 12)) + ', "payload": 1}',
    "skippable_run": lambda n: "{" + ", ".join(f'"k{i}": "\\"v"' for i in range(n // 12)) + ', "payload": 1}',
    "u_escapes": lambda n: '{"payload": [' + ", ".join('"\\u0041\\ud83d\\ude00"' for _ in range(n // 24)) + "]}",
    "backslash_runs": lambda n: '{"payload": "' + "\\\\" * (n // 2) + '\\u0041"}',
    "flat_then_deep": lambda n: '{"payload": [' + "1," * (n // 2) + nest(1200, "1", "[") + "]}",
}


def _cost(text: str) -> float:
    best = float("inf")
    for _ in range(2):
        start = time.process_time()
        verify_archive.top_level(text)
        archive_query.lone_surrogate(text)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("case", list(HOSTILE))
def test_p1_cost_grows_linearly_on_hostile_lines(case):
    """Cost at n and 8n characters: linear gives 8, quadratic 64; the bound 24 leaves room for noise."""
    make = HOSTILE[case]
    n = 150_000
    small, large = make(n), make(8 * n)
    a, b = _cost(small), _cost(large)
    ratio = (b / len(large)) / (max(a, 1e-4) / len(small)) * 8
    assert ratio < 24, (case, a, b, len(small), len(large), ratio)


def test_f4_forced_tokenizer_agrees_with_json_exhaustively_on_short_texts(monkeypatch):
    """Every text of up to four characters over JSON's punctuation, digits, escapes and odd white space,
    bare and inside [ ] and {"k": }: the forced tokenizer's verdict is json.loads'."""
    from itertools import product
    alphabet = '[]{}",:1-0.e\\ \u00a0'
    texts = ["".join(p) for n in range(1, 5) for p in product(alphabet, repeat=n)]
    texts = [w for t in texts for w in (t, "[" + t + "]", '{"k": ' + t + "}")]
    expected = [json_says(t) for t in texts]
    monkeypatch.setattr(verify_archive, "SCAN", Recursing())
    differ = [(t, want) for t, want in zip(texts, expected, strict=True) if tokenizer_says(t) != want]
    assert differ == [], differ[:10]


ODD_WS = ["\u00a0", "\u2028", "\u3000", "\x0b", "\x0c", "\ufeff", "\x85"]


@pytest.mark.parametrize("ws", ODD_WS, ids=[f"U+{ord(w):04X}" for w in ODD_WS])
def test_q2_odd_white_space_between_or_after_top_level_members_is_named(tmp_path, ws):
    """No JSON white space: a line holding one between top-level members, or after its closing brace, fails
    the query naming its file and line."""
    wsb = ws.encode()
    lines = [v1_line(1, "{}"), v1_line(2, "{}").replace(b', "kind"', b"," + wsb + b'"kind"'),
             v1_line(3, "{}") + wsb]
    for number in (2, 3):
        directory, _ = held(tmp_path / str(number), [lines[0], lines[number - 1]])
        q = query(directory, "SELECT seq, payload FROM events")
        assert q.exit_code == 2 and BATCH in q.stderr and "line 2" in q.stderr and "Traceback" not in q.stderr, \
            (number, q.exit_code, q.output[-300:])


@pytest.mark.parametrize("where", ["first", "last"])
@pytest.mark.parametrize("ws", ["\u00a0", "\u2028", "\x0c"], ids=["nbsp", "u2028", "ff"])
def test_d2_edge_line_with_odd_white_space_after_its_brace_named_by_both(tmp_path, verifier_file, ws, where):  # noqa: F811
    bad = v1_line(1 if where == "first" else 3, nest(995, "1", "mix")) + ws.encode()
    lines = [bad, v1_line(2, "{}"), v1_line(3, "{}")] if where == "first" else [v1_line(1, "{}"), v1_line(2, "{}"), bad]
    directory, public = held(tmp_path, lines)
    done, builtin = verify_both(verifier_file, directory, public)
    assert "Traceback" not in done.stderr + builtin.output
    assert (done.returncode, builtin.exit_code) == (1, 1), (done.stdout[-300:], builtin.output[-300:])
    assert "not a JSON object" in done.stdout and "not a JSON object" in builtin.output


EXOTIC = {
    "exp_overflow": '{"a": 1e99999999999999999999999}', "negexp_overflow": '{"a": 1e-99999999999999999999999}',
    "frac_100k": '{"a": 0.' + "1" * 100000 + "}", "int_200k": '{"a": -' + "9" * 200000 + "}",
    "scalar_num": "1e400", "scalar_nul_str": '"\\u0000"', "neg_zero_exp": "-0E-0", "zeros_exp": "1e" + "0" * 1000 + "1",
    "raw_c1_and_planes": '{"s": "\u009b\u0085\u00ad\U0010ffff\ue000\uffff"}', "dup_inside": '{"a": 1, "a": 2}',
    "nul_key": '{"\\u0000": [0.10, 1E+2]}', "ws_inside": '{\r"a"\t:\r\r[\t1.0\r]\t}',
}


def test_q3_exotic_but_valid_payloads_are_shown_as_archived(tmp_path):
    lines = [v1_line(n, p) for n, p in enumerate(EXOTIC.values(), 1)]
    directory, _ = held(tmp_path, lines)
    q = query(directory, "SELECT seq, payload, line FROM events ORDER BY seq", "--json")
    assert q.exit_code == 0, (q.output[-300:], repr(q.exception))
    rows = json.loads(q.stdout)
    wrong = [(name, r["payload"][:60]) for name, r, line in zip(EXOTIC, rows, lines, strict=True)
             if r["payload"] != EXOTIC[name] or r["line"] != line.decode()]
    assert wrong == [], wrong


def test_d3_builtin_verifier_from_deep_caller_stacks_gives_the_standalone_verdict(tmp_path, verifier_file):  # noqa: F811
    """archive verify --offline run (CliRunner, in-process) from caller stacks 0 to ~900 frames deep, on first
    lines nested 60 levels with a bad or good bottom: each exit code is the standalone's (0 or 1), never a
    pass of a bad line; a run that dies of the caller's exhausted stack (exit 1 with a traceback kept in
    exception) is not counted as a verdict."""
    from click.testing import CliRunner
    from test_archive_offline_attacks import holder_batch

    from pgaudit_py.checkpoint import generate_keys
    from pgaudit_py.cli import cli
    generate_keys(tmp_path / "keys")
    public = tmp_path / "keys" / "checkpoint-ed25519.pub.pem"
    wrong, counted, deepest = [], 0, 0
    for name in ("ok_obj", "nan", "leading_zero", "trailing_comma", "nbsp_ws", "ctl_char"):
        directory = tmp_path / name
        holder_batch(directory, tmp_path / "keys" / "checkpoint-ed25519.pem",
                     [v1_line(1, nest(60, BOTTOMS[name], "mix")), v1_line(2, "{}")])
        from test_archive_offline_attacks import standalone
        want = standalone(verifier_file, directory, public).returncode
        for depth in range(0, 950, 25):
            def run(directory=directory):
                return CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", f"file://{directory}",
                                                "--public-key", str(public)])
            try:
                got = _at_depth(depth, run)
            except RecursionError:
                continue
            if isinstance(got.exception, RecursionError) or (got.exception and not isinstance(got.exception,
                                                                                                SystemExit)):
                continue
            counted += 1
            deepest = max(deepest, depth)
            if got.exit_code != want:
                wrong.append((name, depth, want, got.exit_code, got.output[-160:]))
    assert wrong == [], wrong[:6]
    assert counted > 60 and deepest > 800, (counted, deepest)


@pytest.mark.parametrize("shape", ["deep_mix", "deep_lone_free_escapes"])
def test_p2_whole_query_cost_grows_linearly_on_a_deep_line(tmp_path, shape):
    """archive query end to end (Python's cut and DuckDB's reading of line, kind and payload) on one line
    nested n and 8n levels: CPU time per character (less an empty line's) at 8n at most three times that at n."""
    def make(n):
        bottom = '"\\u0041\\ud83d\\ude00"' if shape == "deep_lone_free_escapes" else "1.50"
        return nest(n, bottom, "mix")
    costs = []
    for n in (0, 60_000, 480_000):
        payload = make(n)
        directory, _ = held(tmp_path / str(n), [v1_line(1, payload), v1_line(2, "{}")])
        start = time.process_time()
        _, rows = archive_query.query(directory, "SELECT seq, kind, length(CAST(payload AS VARCHAR)),"
                                                 " length(CAST(line AS VARCHAR)) FROM events ORDER BY seq")
        costs.append((time.process_time() - start, len(payload)))
        assert rows[0][:3] == (1, "k", len(payload)), rows[0][:3]
    (base, _), (a, na), (b, nb) = costs
    per_small, per_large = max(a - base, 1e-3) / na, (b - base) / nb
    assert per_large < 3 * per_small, costs


def test_d4_an_escaped_occurred_at_first_is_read_alike_by_verifiers_and_query(tmp_path, verifier_file):  # noqa: F811
    """"occurred\\u005fat" before the plain name: both verifiers print the first's time, and the query's
    occurred_at (DuckDB's ->>) is that same first one."""
    first = v1_line(1, "{}").replace(b'"occurred_at": "2026-01-01T00:00:01.000000Z"',
                                     b'"occurred\\u005fat" :\t"2025-06-01T00:00:00.000000Z", '
                                     b'"occurred_at": "2026-01-01T00:00:01.000000Z"')
    assert first != v1_line(1, "{}")
    directory, public = held(tmp_path, [first, v1_line(2, "{}")])
    done, builtin = verify_both(verifier_file, directory, public)
    assert done.returncode == builtin.exit_code == 0, (done.stdout, builtin.output)
    assert done.stdout.split(":", 1)[1] == builtin.output.split(":", 1)[1], (done.stdout, builtin.output)
    q = query(directory, "SELECT seq, occurred_at FROM events ORDER BY seq", "--json")
    assert q.exit_code == 0, q.output[-300:]
    shown_at = str(json.loads(q.stdout)[0]["occurred_at"])
    assert ("2025-06-01" in done.stdout) == ("2025-06-01" in shown_at), (done.stdout, shown_at)
