"""Attacks on the offline archive verifier (verify_archive.py) and `archive query`, by someone who
holds the archive but not the private key. Each test asserts the behaviour the claim promises; a
failing test is a finding."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_archive import aws, s3_endpoint  # noqa: F401
from test_archive_offline import batches, both, build_archive, intact, upload, verifier_file  # noqa: F401

from pgaudit_py import canonical
from pgaudit_py.checkpoint import load_keys, make_checkpoint
from pgaudit_py.cli import cli

_CACHE: dict[str, Path] = {}
LIMIT = 1 << 30  # address space for the standalone verifier: a runaway read fails fast, not the box


@pytest.fixture
def base(request, tmp_path, tmp_path_factory) -> tuple[Path, Path]:
    """A real signed archive (built once per module), copied for this test."""
    if "dir" not in _CACHE:
        root = tmp_path_factory.mktemp("base")
        db = request.getfixturevalue("db")
        _CACHE["public"] = build_archive(db, root / "keys", f"file://{root / 'archive'}")
        _CACHE["dir"] = root / "archive"
    directory = tmp_path / "archive"
    shutil.copytree(_CACHE["dir"], directory, symlinks=True)
    return directory, _CACHE["public"]


def standalone(verifier: Path, directory: Path, public: Path, *extra: str,
               timeout: int = 60) -> subprocess.CompletedProcess:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    try:
        return subprocess.run([sys.executable, "-I", str(verifier), str(directory), "--public-key", str(public),
                               *extra], capture_output=True, text=True, timeout=timeout, preexec_fn=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the verifier ran over {timeout}s")


def assert_named_problem(done: subprocess.CompletedProcess) -> None:
    """What the claim promises for a bad archive: exit 1, each problem named, no traceback."""
    assert "Traceback" not in done.stderr, done.stderr[-1500:]
    assert done.returncode == 1 and "PROBLEM:" in done.stdout, (done.returncode, done.stdout, done.stderr[-800:])


def manifest(directory: Path, batch: str) -> dict:
    return json.loads((directory / f"{batch}.manifest.json").read_text())


def write_manifest(directory: Path, batch: str, document: dict) -> None:
    (directory / f"{batch}.manifest.json").write_text(canonical.dumps(document) + "\n")


def rehash_data(directory: Path, batch: str, body: dict, gz: bytes, data_bytes: int, data_sha: str) -> None:
    """An unsigned manifest body made to agree with a data object of the attacker's choosing."""
    (directory / f"{batch}.jsonl.gz").write_bytes(gz)
    body.update(gz_bytes=len(gz), gz_sha256=hashlib.sha256(gz).hexdigest(), data_bytes=data_bytes,
                data_sha256=data_sha)


# --- Unsigned (forged) manifests: the verifier goes on with values no signature covers -------------

def _forge(case: str, d: Path) -> None:
    first, second = batches(d)[:2]
    doc, doc2 = manifest(d, first), manifest(d, second)
    body = doc["manifest"]
    if case == "blocks holds a number":
        body["blocks"] = [1]
    elif case == "block_no is a list":
        body["blocks"][0]["block_no"] = [1]
    elif case == "first_block is text":
        doc2["manifest"]["first_block"] = "3"
    elif case == "last_block missing":
        del body["last_block"]
    elif case == "last_seq is text":
        body["last_seq"] = "9"
    elif case == "first_seq missing":
        del body["first_seq"]
    elif case == "a block's last_seq is text":
        body["blocks"][0]["last_seq"] = "x"
    elif case == "block_no text and a broken link":
        body["blocks"][0]["block_no"] = "1"
        body["blocks"][0]["prev_hash"] = "11" * 32
    elif case == "seq range of 10**13":
        body["last_seq"] = 10 ** 13
    write_manifest(d, first, doc)
    write_manifest(d, second, doc2)


FORGED = ["blocks holds a number", "block_no is a list", "first_block is text", "last_block missing",
          "last_seq is text", "first_seq missing", "a block's last_seq is text", "block_no text and a broken link",
          "seq range of 10**13"]


@pytest.mark.parametrize("case", FORGED)
def test_a_forged_manifest_is_named_not_a_traceback(base, verifier_file, case):  # noqa: F811
    directory, public = base
    _forge(case, directory)
    assert_named_problem(standalone(verifier_file, directory, public))


def test_a_gzip_bomb_under_a_forged_manifest_is_named_not_out_of_memory(base, verifier_file):  # noqa: F811
    directory, public = base
    first = batches(directory)[0]
    doc = manifest(directory, first)
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip: 2 GiB of zeros in about 2 MB
    chunk = bytes(1 << 24)
    gz = b"".join(z.compress(chunk) for _ in range(128)) + z.flush()
    rehash_data(directory, first, doc["manifest"], gz, 100, "00" * 32)  # declares 100 bytes
    write_manifest(directory, first, doc)
    assert_named_problem(standalone(verifier_file, directory, public))


def test_a_manifest_nested_past_the_parser_is_named_not_a_traceback(base, verifier_file):  # noqa: F811
    directory, public = base
    (directory / "blocks-000000000000-000000000000.manifest.json").write_text(
        '{"manifest": ' + "[" * 100000 + "]" * 100000 + "}")
    assert_named_problem(standalone(verifier_file, directory, public))


# --- Files that are not what their name says: read whole before any size check -------------------

def test_a_huge_sparse_data_object_is_named_changed_not_read_whole(base, verifier_file):  # noqa: F811
    directory, public = base
    path = directory / f"{batches(directory)[0]}.jsonl.gz"
    with path.open("r+b") as f:
        f.truncate(2 << 30)  # the genuine, signed manifest names a few KiB
    done = standalone(verifier_file, directory, public)
    assert_named_problem(done)
    assert "not the size its manifest says" in done.stdout


def test_a_huge_sparse_manifest_is_named_not_read_whole(base, verifier_file):  # noqa: F811
    directory, public = base
    with (directory / f"{batches(directory)[-1]}.manifest.json").open("r+b") as f:
        f.truncate(2 << 30)
    assert_named_problem(standalone(verifier_file, directory, public))


def test_a_manifest_that_is_a_fifo_does_not_hang_the_verifier(base, verifier_file):  # noqa: F811
    directory, public = base
    os.mkfifo(directory / "blocks-999999999999-999999999999.manifest.json")
    assert_named_problem(standalone(verifier_file, directory, public, timeout=20))


def test_a_manifest_linked_to_dev_zero_is_named(base, verifier_file):  # noqa: F811
    directory, public = base
    (directory / "blocks-999999999999-999999999999.manifest.json").symlink_to("/dev/zero")
    assert_named_problem(standalone(verifier_file, directory, public))


def test_a_missing_directory_is_named_not_a_traceback(tmp_path, verifier_file):  # noqa: F811
    public = tmp_path / "k.pem"
    from pgaudit_py.checkpoint import generate_keys
    generate_keys(tmp_path / "keys")
    public = tmp_path / "keys" / "checkpoint-ed25519.pub.pem"
    done = standalone(verifier_file, tmp_path / "no-such-archive", public)
    assert "Traceback" not in done.stderr and done.returncode != 0, done.stderr[-800:]


# --- Checkpoints the auditor is handed ----------------------------------------------------------

@pytest.mark.parametrize("text", ['{"checkpoint": {"block_no": Infinity, "block_hash": "x"}, "signatures": {}}',
                                  '{"checkpoint": ' + "[" * 100000 + "]" * 100000 + "}"])
def test_a_hostile_checkpoint_is_named_not_a_traceback(base, verifier_file, tmp_path, text):  # noqa: F811
    directory, public = base
    cp = tmp_path / "cp.json"
    cp.write_text(text)
    done = standalone(verifier_file, directory, public, "--checkpoint", str(cp))
    assert_named_problem(done)


# --- What holds: a signed archive cannot be bent without the key ---------------------------------

def test_held_dropped_head_later_start_and_renamed_batch_are_found(base, verifier_file, tmp_path):  # noqa: F811
    directory, public = base
    names = batches(directory)
    one = tmp_path / "head"
    shutil.copytree(directory, one)
    for suffix in (".manifest.json", ".jsonl.gz"):
        (one / f"{names[0]}{suffix}").unlink()
    assert_named_problem(standalone(verifier_file, one, public))
    two = tmp_path / "renamed"
    shutil.copytree(directory, two)
    for suffix in (".manifest.json", ".jsonl.gz"):
        (two / f"{names[1]}{suffix}").rename(two / f"blocks-000000000077-000000000078{suffix}")
    assert_named_problem(standalone(verifier_file, two, public))


def test_held_gzip_trailing_garbage_and_extra_members_change_the_signed_hash(base, verifier_file):  # noqa: F811
    directory, public = base
    path = directory / f"{batches(directory)[0]}.jsonl.gz"
    path.write_bytes(path.read_bytes() + gzip.compress(b'{"seq": 999}\n') + b"junk")
    assert_named_problem(standalone(verifier_file, directory, public))


def test_held_a_checkpoint_beyond_the_archive_is_named(db, intact, verifier_file, tmp_path):  # noqa: F811
    directory, public = intact
    keys = load_keys(signing_key=public.parent / "checkpoint-ed25519.pem")
    db.execute("SELECT audit.record(kind => 'later') FROM generate_series(1, 3)")
    from pgaudit_py import seal
    seal(db)
    cp = tmp_path / "cp.json"
    cp.write_text(json.dumps(make_checkpoint(db, keys)))
    done = standalone(verifier_file, directory, public, "--checkpoint", str(cp))
    assert_named_problem(done)
    assert "is not in the archive" in done.stdout


# --- The last manifest's bytes are bound by nothing offline --------------------------------------

def first_wins(pairs):
    out = {}
    for k, v in pairs:
        out.setdefault(k, v)
    return out


def test_the_last_manifest_with_a_duplicate_body_key_is_not_verified(db, intact, verifier_file):  # noqa: F811
    directory, public = intact
    last = batches(directory)[-1]
    path = directory / f"{last}.manifest.json"
    raw = path.read_text()
    body = json.loads(raw)["manifest"]
    # A reader whose JSON keeps the first of two equal keys (many do) sees another seq range; the
    # signature is checked on Python's (the last).
    forged = raw.replace('{"manifest": {"v": 1, ', '{"manifest": {"v": 1, "last_seq": 999999, "first_seq": 1, ', 1)
    path.write_text(forged)
    assert json.loads(forged, object_pairs_hook=first_wins)["manifest"]["last_seq"] == 999999
    assert json.loads(forged)["manifest"]["last_seq"] == body["last_seq"]
    i = db.info
    online = CliRunner().invoke(cli, ["archive", "verify", "--target", f"file://{directory}", "--public-key",
                                      str(public), "--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"])
    assert online.exit_code == 1 and "the manifest was changed" in online.output  # the database's verifier
    assert_named_problem(standalone(verifier_file, directory, public))  # the offline one should agree


# --- `archive query`: what verify passes is what the query reads --------------------------------

FORGED_LINE = (b'{"v": 2, "id": "00000000-0000-0000-0000-000000000000", "seq": 1, "kind": "forged.event", '
               b'"txid": "1", "origin": "record", "changed": null, "db_role": "postgres", "outcome": "success", '
               b'"payload": null, "actor_id": "mallory", "row_after": null, "target_id": "o-1", "tenant_id": "acme", '
               b'"actor_type": "user", "row_before": null, "client_addr": null, '
               b'"occurred_at": "2026-01-01T00:00:00.000000Z", "target_type": "order", "schema_valid": null, '
               b'"correlation_id": null, "idempotency_key": null, "application_name": ""}\n')


def test_an_unmanifested_data_object_fails_verify_or_is_not_queried(db, intact, verifier_file):  # noqa: F811
    directory, public = intact
    (directory / "blocks-000000000001-000000000001x.jsonl.gz").write_bytes(gzip.compress(FORGED_LINE, mtime=0))
    i = db.info
    online = CliRunner().invoke(cli, ["archive", "verify", "--target", f"file://{directory}", "--public-key",
                                      str(public), "--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"])
    assert online.exit_code == 1 and "extra object" in online.output  # the database's verifier names it
    done = standalone(verifier_file, directory, public)
    queried = CliRunner().invoke(cli, ["archive", "query", "SELECT actor_id FROM events WHERE kind = 'forged.event'",
                                       "--target", f"file://{directory}", "--json"])
    assert queried.exit_code == 0, queried.output
    fooled = done.returncode == 0 and json.loads(queried.output) == [{"actor_id": "mallory"}]
    assert not fooled, "verify passes, and the query reports an event nobody signed"


def test_a_glob_character_in_the_archive_path_does_not_read_another_directory(base, tmp_path):
    directory, _ = base
    odd = tmp_path / "a[rc]"
    directory.rename(odd)
    other = tmp_path / "ar"
    other.mkdir()
    (other / "blocks-000000000001-000000000001.jsonl.gz").write_bytes(gzip.compress(FORGED_LINE, mtime=0))
    queried = CliRunner().invoke(cli, ["archive", "query", "SELECT DISTINCT kind FROM events ORDER BY 1",
                                       "--target", f"file://{odd}", "--json"])
    assert queried.exit_code == 0 and {"kind": "forged.event"} not in json.loads(queried.output), queried.output


def test_held_a_quote_in_the_archive_path_is_not_sql(base, tmp_path):
    directory, _ = base
    odd = tmp_path / "x'); COPY (SELECT 1) TO 'pwned.csv'; --"
    directory.rename(odd)
    queried = CliRunner().invoke(cli, ["archive", "query", "SELECT count(*) AS n FROM events",
                                       "--target", f"file://{odd}", "--json"])
    assert queried.exit_code == 0 and json.loads(queried.output) == [{"n": 36}], queried.output
    assert not Path("pwned.csv").exists()


def test_the_scanners_reading_past_recursion_agrees_with_json_on_every_text(monkeypatch):
    """A value nested past json's C scanner is read by verify_archive's own tokenizer: its verdict must be
    json's (NaN refused), or whether a line is a JSON object would hang on the caller's stack depth, and the
    two verifiers could disagree (trial 120, v2). Texts generated from JSON's pieces, right and wrong."""
    import random

    from pgaudit_py import verify_archive

    class Recursing:
        def raw_decode(self, text, i):
            raise RecursionError

    def json_says(text):
        try:
            json.loads(text, parse_constant=verify_archive.refused, parse_float=len, parse_int=len)
            return True
        except ValueError:
            return False

    def tokenizer_says(text):
        start = len(text) - len(text.lstrip(" \t\n\r"))
        try:
            return not text[verify_archive.value_end(text, start):].strip(" \t\n\r")
        except ValueError:
            return False

    pieces = ['"a"', '"\\u00e9"', '"\\ud800"', '"\\x"', '"\\u12"', '"\x01"', '"\x7f"', '"é"', "1", "-0", "01",
              "1.", ".5", "1.5e+3", "1e", "-", "true", "tru", "null", "NaN", "Infinity", "-Infinity", "[", "]", "{",
              "}", ",", ":", " ", "\t", "\u00a0", '"k"', '"\\""', '"\\/"', "1E5", "+1", "0x1"]
    rng = random.Random(120)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(1, 9))) for _ in range(30_000)]
    texts += ["[" * 3000 + "]" * 3000, "[" * 3000 + "}" * 3000, '{"a":' * 2000 + "1" + "}" * 2000, "[" * 50 + "@" + "]" * 50]
    expected = [json_says(t) for t in texts[:-4]] + [True, False, True, False]  # the last four past json's recursion
    monkeypatch.setattr(verify_archive, "SCAN", Recursing())
    differ = [t for t, want in zip(texts, expected, strict=True) if tokenizer_says(t) != want]
    assert differ == [], differ[:10]
    assert sum(expected) > 1000  # the generated texts hold both verdicts


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_a_data_object_that_is_no_regular_file_fails_the_query_at_once(base, kind):
    directory, _ = base
    last = sorted(directory.glob("blocks-*.jsonl.gz"))[-1]
    last.unlink()
    {"fifo": os.mkfifo, "dev-zero": lambda p: p.symlink_to("/dev/zero"), "directory": Path.mkdir}[kind](last)
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "archive", "query", "SELECT count(*) AS n FROM events",
                           "--target", f"file://{directory}"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().endswith(f"{last.name} is not a regular file"), done.stderr


@pytest.mark.parametrize("content, said", [
    (b"not gzip at all", "is not gzip"),
    (gzip.compress(b'{"v": 2, "seq": 1}\n{"v": 2, "payload": [1,\n', mtime=0), ", line 2, is not a JSON object"),
    (gzip.compress(b'{"v": 2, "payload": [1]} and more\n', mtime=0), ", line 1, is not a JSON object"),
    (gzip.compress(b'{"v": 2, "kind": "\xff"}\n', mtime=0), ", line 1, is not a JSON object"),
    (gzip.compress(b'{"v": 2, "payload": {"s": "\\ud83d\\ude00"}}\n{"v": 2, "kind": "\\\\ud800 \\ud800"}\n', mtime=0),
     ", line 2, holds a lone surrogate"),
], ids=["not-gzip", "cut-short", "text-after", "not-utf8", "lone-surrogate"])
def test_a_data_object_of_no_json_lines_fails_the_query_in_one_line(base, content, said):
    directory, _ = base
    sorted(directory.glob("blocks-*.jsonl.gz"))[-1].write_bytes(content)
    queried = CliRunner().invoke(cli, ["archive", "query", "SELECT count(*) AS n FROM events", "--target",
                                       f"file://{directory}"])
    assert queried.exit_code == 2 and "the query failed: blocks-" in queried.stderr, queried.output
    assert said in queried.stderr and len(queried.stderr.splitlines()) == 1, queried.stderr


def test_the_scratch_rows_are_removed_when_the_command_ends(base, tmp_path):
    """docs/auditors.md: the rows the view reads are written under TMPDIR and removed when the command ends,
    whether the query succeeds or fails; the first query sees them while it runs."""
    directory, _ = base
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    def query(sql: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "archive", "query", sql, "--target",
                               f"file://{directory}", "--json"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "TMPDIR": str(scratch)})

    seen = query(f"SELECT count(*) AS n FROM glob('{scratch}/*/*.jsonl')")
    assert seen.returncode == 0 and json.loads(seen.stdout)[0]["n"] == len(list(directory.glob("*.jsonl.gz"))) > 0
    assert list(scratch.iterdir()) == []
    assert query("SELECT nope FROM events").returncode == 2 and list(scratch.iterdir()) == []
    sorted(directory.glob("blocks-*.jsonl.gz"))[-1].write_bytes(gzip.compress(b'{"v": 2}\n[1]\n', mtime=0))
    assert query("SELECT count(*) FROM events").returncode == 2 and list(scratch.iterdir()) == []


# --- Hostile payloads in a valid archive: no false alarm -----------------------------------------

def holder_batch(directory: Path, signing_key: Path, lines: list[bytes]) -> None:
    """One batch, one block, as the key's holder writes it (archive.build_manifest and the key)."""
    from datetime import datetime, timezone

    from pgaudit_py.archive import ArchiveBatch, build_manifest
    from pgaudit_py.archive import Digest as D
    from pgaudit_py.chain import Block

    directory.mkdir()
    data = b"".join(line + b"\n" for line in lines)
    events = hashlib.sha256(b"".join(hashlib.sha256(line).digest() for line in lines)).digest()
    n = len(lines)
    own = canonical.block_hash(1, 1, n, n, events, bytes(32))
    block = Block(1, 1, n, n, events, bytes(32), own, 1)
    batch_id = "blocks-000000000001-000000000001"
    gz = gzip.compress(data, mtime=0)
    batch = ArchiveBatch(batch_id, 1, 1, 1, n, n, "planned", None, None, None, None, None, None, None,
                         datetime.now(timezone.utc), None, None, None)
    (directory / f"{batch_id}.jsonl.gz").write_bytes(gz)
    (directory / f"{batch_id}.manifest.json").write_bytes(
        build_manifest(batch, [block], D.of(data), D.of(gz), None, load_keys(signing_key=signing_key), "audit"))


def v1_line(seq: int, payload: str) -> bytes:
    return (f'{{"v": 1, "id": "00000000-0000-0000-0000-{seq:012d}", "seq": {seq}, "kind": "k", "txid": "1", '
            f'"changed": null, "db_role": "postgres", "outcome": "success", "payload": {payload}, "actor_id": null, '
            '"row_after": null, "target_id": null, "tenant_id": null, "actor_type": null, "row_before": null, '
            f'"client_addr": null, "occurred_at": "2026-01-01T00:00:0{seq}.000000Z", "target_type": null, '
            '"schema_valid": null, "correlation_id": null, "idempotency_key": null, "application_name": ""}'
            ).encode()


def test_a_sealed_line_with_an_integer_over_4300_digits_is_no_false_alarm(tmp_path, verifier_file):  # noqa: F811
    """0.1.0 sealed payloads before wild numbers were refused (f437181): such v1 lines can be archived
    today, and the database's verifier (a regex for seq) passes them."""
    from pgaudit_py.checkpoint import generate_keys

    generate_keys(tmp_path / "keys")
    holder_batch(tmp_path / "archive", tmp_path / "keys" / "checkpoint-ed25519.pem",
                 [v1_line(1, '{"n": 1' + "0" * 5000 + "}"), v1_line(2, "{}")])
    done = standalone(verifier_file, tmp_path / "archive", tmp_path / "keys" / "checkpoint-ed25519.pub.pem")
    assert done.returncode == 0 and done.stdout.startswith("verified "), done.stdout + done.stderr[-800:]


def test_held_a_holder_signed_batch_verifies(tmp_path, verifier_file):  # noqa: F811
    """Both verifiers accept it and print its period, read from the edge lines' occurred_at."""
    from pgaudit_py.checkpoint import generate_keys

    generate_keys(tmp_path / "keys")
    holder_batch(tmp_path / "archive", tmp_path / "keys" / "checkpoint-ed25519.pem",
                 [v1_line(1, '{"n": 1' + "0" * 400 + "}"), v1_line(2, "{}")])
    public = tmp_path / "keys" / "checkpoint-ed25519.pub.pem"
    done = standalone(verifier_file, tmp_path / "archive", public)
    builtin = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", f"file://{tmp_path / 'archive'}",
                                       "--public-key", str(public)])
    period = "seq 1 to 2, 2026-01-01T00:00:01.000000Z to 2026-01-01T00:00:02.000000Z"
    for code, out in ((done.returncode, done.stdout), (builtin.exit_code, builtin.output)):
        assert code == 0 and out.startswith("verified ") and period in out, out


@pytest.mark.parametrize("edge", [0, 1])
def test_a_holder_signed_line_that_is_no_json_object_is_a_problem_not_a_crash(tmp_path, verifier_file, edge):  # noqa: F811
    """The period printed is read from the first and last lines' occurred_at, by a scanner that needs a
    JSON object: a line that starts as a canonical one and is not (signed by the key's holder) is named."""
    from pgaudit_py.checkpoint import generate_keys

    generate_keys(tmp_path / "keys")
    lines = [v1_line(1, "{}"), v1_line(2, "{}")]
    lines[edge] = lines[edge].replace(b'"payload": {}', b'"payload": {')
    holder_batch(tmp_path / "archive", tmp_path / "keys" / "checkpoint-ed25519.pem", lines)
    public = tmp_path / "keys" / "checkpoint-ed25519.pub.pem"
    done = standalone(verifier_file, tmp_path / "archive", public)
    builtin = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", f"file://{tmp_path / 'archive'}",
                                       "--public-key", str(public)])
    for code, out in ((done.returncode, done.stdout + done.stderr), (builtin.exit_code, builtin.output)):
        assert code == 1 and "a line of the data object is not a JSON object" in out and "Traceback" not in out, out


def test_the_printed_period_is_escaped_as_every_name_is(tmp_path, verifier_file):  # noqa: F811
    """The period is read from the edge lines' occurred_at as written: a holder-signed one that is JSON but no
    time (white space inside an array, an escape sequence in a string) prints escaped, not to the terminal."""
    from pgaudit_py.checkpoint import generate_keys

    generate_keys(tmp_path / "keys")
    lines = [v1_line(1, "{}").replace(b'"2026-01-01T00:00:01.000000Z"', b'[1,\r"x"]'),
             v1_line(2, "{}").replace(b'"2026-01-01T00:00:02.000000Z"', b'"\\u001b]0;x\\u0007"')]
    holder_batch(tmp_path / "archive", tmp_path / "keys" / "checkpoint-ed25519.pem", lines)
    public = tmp_path / "keys" / "checkpoint-ed25519.pub.pem"
    done = standalone(verifier_file, tmp_path / "archive", public)
    builtin = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", f"file://{tmp_path / 'archive'}",
                                       "--public-key", str(public)])
    for code, out in ((done.returncode, done.stdout), (builtin.exit_code, builtin.output)):
        assert code == 0 and "seq 1 to 2, [1,\\r" in out and "\r" not in out and "\x1b" not in out, out


def test_each_json_column_is_its_text_even_when_a_plain_scalar(tmp_path):
    """The scanner passes plainly named scalar members in one step, but never a JSON column's (its names are
    the verifier's own, which imports nothing): a holder-signed scalar in each shows as written, not null."""
    from pgaudit_py.checkpoint import generate_keys

    generate_keys(tmp_path / "keys")
    written = dict(zip(canonical.JSON_FIELDS, ["1.500", "-0", "1e400", '"x"'], strict=True))
    line = v1_line(1, written["payload"])
    for name in canonical.JSON_FIELDS[1:]:
        line = line.replace(f'"{name}": null'.encode(), f'"{name}": {written[name]}'.encode())
    holder_batch(tmp_path / "archive", tmp_path / "keys" / "checkpoint-ed25519.pem", [line])
    names = ", ".join(f"CAST({n} AS VARCHAR) AS {n}" for n in canonical.JSON_FIELDS)
    done = CliRunner().invoke(cli, ["archive", "query", f"SELECT {names}, occurred_at FROM events",
                                    "--target", f"file://{tmp_path / 'archive'}", "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output) == [{**written, "occurred_at": "2026-01-01T00:00:01+00:00"}]


@pytest.mark.parametrize("n", [8, 192])
def test_a_valid_batch_larger_than_memory_is_verified_in_bounded_memory(tmp_path, verifier_file, n):  # noqa: F811
    """Lines are at most 16 MiB, but a batch of them is not: 10,000 events with ~3 MiB row images
    (a row image is bounded at 1 MiB, and an UPDATE holds two and "changed") is ~30 GB. Here: 1.5 GiB
    of 8 MiB lines, held in the 1 GiB the verifier gets; the database's verifier streams."""
    from datetime import datetime, timezone

    from pgaudit_py.archive import ArchiveBatch, build_manifest
    from pgaudit_py.archive import Digest as D
    from pgaudit_py.chain import Block
    from pgaudit_py.checkpoint import generate_keys

    generate_keys(tmp_path / "keys")
    directory = tmp_path / "archive"
    directory.mkdir()
    batch_id = "blocks-000000000001-000000000001"
    data_sha, events, size = hashlib.sha256(), hashlib.sha256(), 0
    with gzip.GzipFile(directory / f"{batch_id}.jsonl.gz", "wb", compresslevel=1, mtime=0) as out:
        for seq in range(1, n + 1):
            line = v1_line(seq, '{"s": "' + "a" * (8 << 20) + '"}')
            events.update(hashlib.sha256(line).digest())
            for part in (line, b"\n"):
                out.write(part)
                data_sha.update(part)
                size += len(part)
    gz = (directory / f"{batch_id}.jsonl.gz").read_bytes()
    own = canonical.block_hash(1, 1, n, n, events.digest(), bytes(32))
    block = Block(1, 1, n, n, events.digest(), bytes(32), own, 1)
    batch = ArchiveBatch(batch_id, 1, 1, 1, n, n, "planned", None, None, None, None, None, None, None,
                         datetime.now(timezone.utc), None, None, None)
    (directory / f"{batch_id}.manifest.json").write_bytes(build_manifest(
        batch, [block], D(size, data_sha.digest()), D.of(gz), None,
        load_keys(signing_key=tmp_path / "keys" / "checkpoint-ed25519.pem"), "audit"))
    done = standalone(verifier_file, directory, tmp_path / "keys" / "checkpoint-ed25519.pub.pem", timeout=300)
    assert done.returncode == 0 and done.stdout.startswith("verified "), done.stdout + done.stderr[-500:]


@pytest.mark.parametrize("key", ["prod/", "prod/" + "b" * 300])
def test_an_odd_extra_object_on_s3_is_named_not_a_traceback(base, aws, key):  # noqa: F811
    from pgaudit_py.archive_targets import S3Target, open_target

    directory, public = base
    url = upload(directory)
    target = open_target(url)
    assert isinstance(target, S3Target)
    target.client.put_object(Bucket=target.bucket, Key=key, Body=b"x")
    done = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", url, "--public-key", str(public)])
    assert done.exception is None or isinstance(done.exception, SystemExit), repr(done.exception)
