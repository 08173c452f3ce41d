"""The auditor's check: an archive verified with the public key alone, no database, by the built-in
command (`pgaudit archive verify --offline`) and by the standalone verifier it prints (`pgaudit
archive verifier`), run as a file of its own; both must give the same verdict on every tampered case,
and no false alarm on an intact archive (a local directory, and moto's S3)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from test_archive import aws, s3_endpoint  # noqa: F401  (fixtures)

from pgaudit_py import canonical, seal
from pgaudit_py.archive import archive
from pgaudit_py.archive_targets import S3Target, open_target
from pgaudit_py.checkpoint import generate_keys, load_keys, make_checkpoint
from pgaudit_py.cli import cli


def build_archive(conn: psycopg.Connection, keys_dir: Path, url: str, rounds: int = 6) -> Path:
    """Rounds of events sealed into blocks, archived in batches of at most two blocks."""
    if not keys_dir.exists():
        generate_keys(keys_dir)
    for r in range(rounds):
        conn.execute("SELECT audit.record(kind => 'order.paid', target_id => %s || '-' || i,"
                     " payload => jsonb_build_object('i', i, 'note', E'\\u2028 <b>'))"
                     " FROM generate_series(1, 5) i", (f"r{r}",))
        # Hostile payloads are data: nesting deeper than Python's parser goes, a number past a
        # double's range, keys named like the line's own fields.
        conn.execute("SELECT audit.record(kind => 'hostile.payload', payload => %s::jsonb)",
                     ('{"seq": 999999, "occurred_at": "1999-01-01", "n": 1e350, "d": ' + "[" * 5000
                      + "]" * 5000 + "}",))
        seal(conn)
    conn.execute("SELECT audit.set_archive_settings(interval '1 second', 10, 3)")
    time.sleep(0.05)
    keys = load_keys(signing_key=keys_dir / "checkpoint-ed25519.pem")
    done = archive(conn, open_target(url), keys, older_than=timedelta(milliseconds=1))
    assert len(done.batches) >= 3
    return keys_dir / "checkpoint-ed25519.pub.pem"


@pytest.fixture
def verifier_file(tmp_path_factory) -> Path:
    printed = CliRunner().invoke(cli, ["archive", "verifier"])
    assert printed.exit_code == 0
    path = tmp_path_factory.mktemp("auditor") / "verify_archive.py"
    path.write_text(printed.output)
    return path


def both(verifier: Path, url: str, public: Path, checkpoint: Path | None = None) -> tuple[int, int, str, str]:
    extra = ["--checkpoint", str(checkpoint)] if checkpoint else []
    builtin = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", url, "--public-key", str(public),
                                       *extra])
    directory = url.removeprefix("file://")
    standalone = subprocess.run([sys.executable, "-I", str(verifier), directory, "--public-key", str(public), *extra],
                                capture_output=True, text=True, timeout=120, cwd=verifier.parent)
    return builtin.exit_code, standalone.returncode, builtin.output, standalone.stdout


@pytest.fixture
def intact(db, tmp_path):
    directory = tmp_path / "archive"
    public = build_archive(db, tmp_path / "keys", f"file://{directory}")
    return directory, public


def rewrite_data(directory: Path, batch: str, change) -> None:
    path = directory / f"{batch}.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).split(b"\n")[:-1]
    path.write_bytes(gzip.compress(b"".join(line + b"\n" for line in change(lines)), mtime=0))


def batches(directory: Path) -> list[str]:
    return sorted(p.name.removesuffix(".manifest.json") for p in directory.glob("*.manifest.json"))


def test_an_intact_archive_verifies_by_both_with_no_false_alarm(db, intact, verifier_file, aws):  # noqa: F811
    directory, public = intact
    i = db.info
    online = CliRunner().invoke(cli, ["archive", "verify", "--target", f"file://{directory}", "--public-key",
                                      str(public), "--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"])
    assert online.exit_code == 0, online.output  # the database's verifier agrees, hostile payloads and all
    builtin, standalone, out, stdout = both(verifier_file, f"file://{directory}", public)
    assert (builtin, standalone) == (0, 0), out + stdout
    assert out == stdout and stdout.startswith("verified ") and "seq 1 to 36" in stdout
    on_s3 = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", upload(directory),
                                     "--public-key", str(public)])
    assert on_s3.exit_code == 0 and on_s3.output == out


def test_a_replayed_batch_is_found(intact, verifier_file):
    directory, public = intact
    first, second = batches(directory)[:2]
    for suffix in (".manifest.json", ".jsonl.gz"):  # the first batch's objects again, under the second's names
        (directory / f"{second}{suffix}").write_bytes((directory / f"{first}{suffix}").read_bytes())
    builtin, standalone, out, stdout = both(verifier_file, f"file://{directory}", public)
    assert builtin == standalone == 1 and out == stdout and "PROBLEM:" in stdout


@pytest.mark.parametrize("key", ["missing", "not-pem"])
def test_a_missing_or_unreadable_public_key_is_one_line_not_a_traceback(intact, tmp_path, key):
    directory, _ = intact
    bad = tmp_path / "key.pem"
    if key == "not-pem":
        bad.write_text("not a key")
    done = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", f"file://{directory}",
                                    "--public-key", str(bad)])
    assert done.exit_code != 0 and isinstance(done.exception, SystemExit), repr(done.exception)
    assert "key file" in done.output + done.stderr and "Traceback" not in done.output + done.stderr


def test_the_standalone_verifier_needs_nothing_of_pgaudit_py(verifier_file):
    source = verifier_file.read_text()
    imports = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imports <= {"__future__", "argparse", "base64", "gzip", "hashlib", "json", "os", "re", "stat", "sys", "zlib",
                       "pathlib", "typing", "cryptography"}
    assert len(source.splitlines()) < 450


def tamper_cases():
    def edit_line(d: Path) -> None:
        rewrite_data(d, batches(d)[0], lambda ls: [ls[0].replace(b'"order.paid"', b'"order.free"'), *ls[1:]])

    def drop_line(d: Path) -> None:
        rewrite_data(d, batches(d)[1], lambda ls: ls[:2] + ls[3:])

    def swap_lines(d: Path) -> None:
        rewrite_data(d, batches(d)[0], lambda ls: [ls[1], ls[0], *ls[2:]])

    def drop_batch(d: Path) -> None:
        middle = batches(d)[1]
        for suffix in (".manifest.json", ".jsonl.gz"):
            (d / f"{middle}{suffix}").unlink()

    def truncate_last_batch(d: Path) -> None:
        path = d / f"{batches(d)[-1]}.jsonl.gz"
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])

    def reorder_batches(d: Path) -> None:
        first, second = batches(d)[:2]
        for suffix in (".manifest.json", ".jsonl.gz"):
            a, b = d / f"{first}{suffix}", d / f"{second}{suffix}"
            a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
            a.write_bytes(b_bytes)
            b.write_bytes(a_bytes)

    return {"edit a line": edit_line, "drop a line": drop_line, "swap two lines": swap_lines,
            "drop a batch": drop_batch, "truncate the last batch": truncate_last_batch,
            "reorder two batches": reorder_batches}


def upload(directory: Path) -> str:
    """The directory's objects into a new bucket of moto's S3 server; the target's URL."""
    bucket = f"audit-{uuid.uuid4().hex[:12]}"
    target = open_target(f"s3://{bucket}/prod")
    assert isinstance(target, S3Target)
    target.client.create_bucket(Bucket=bucket)
    for path in directory.iterdir():
        target.client.put_object(Bucket=bucket, Key=target._key(path.name), Body=path.read_bytes())
    return f"s3://{bucket}/prod"


@pytest.mark.parametrize("case", list(tamper_cases()))
def test_each_tampering_is_found_by_both_on_a_directory_and_on_s3(intact, verifier_file, tmp_path, case,
                                                                  aws):  # noqa: F811
    directory, public = intact
    tampered = tmp_path / "tampered"
    shutil.copytree(directory, tampered)
    tamper_cases()[case](tampered)
    builtin, standalone, out, stdout = both(verifier_file, f"file://{tampered}", public)
    assert builtin == standalone == 1, (case, out, stdout)
    assert out == stdout and "PROBLEM:" in stdout and "NOT VERIFIED" in stdout
    on_s3 = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", upload(tampered),
                                     "--public-key", str(public)])
    assert on_s3.exit_code == 1 and on_s3.output == out  # the same verdict from the bucket


def test_a_manifest_re_signed_under_another_key_is_found(intact, verifier_file, tmp_path):
    directory, public = intact
    generate_keys(tmp_path / "other")
    other = load_keys(signing_key=tmp_path / "other" / "checkpoint-ed25519.pem")
    name = f"{batches(directory)[1]}.manifest.json"
    document = json.loads((directory / name).read_text())
    from pgaudit_py.checkpoint import sign

    document["signatures"] = sign(document["manifest"], other)
    (directory / name).write_text(canonical.dumps(document) + "\n")
    builtin, standalone, out, stdout = both(verifier_file, f"file://{directory}", public)
    assert builtin == standalone == 1 and "not signed by this public key" in stdout and out == stdout


def test_batches_spliced_from_another_installation_are_found(db, intact, verifier_file, tmp_path):
    directory, public = intact
    info = db.info
    db.execute("CREATE DATABASE other_installation TEMPLATE pgaudit_test_tmpl")
    try:
        with psycopg.connect(host=info.host, port=info.port, user=info.user, dbname="other_installation",
                             autocommit=True) as other:
            build_archive(other, tmp_path / "keys", f"file://{tmp_path / 'other'}")  # the same keys, even
        second = batches(directory)[1]
        for suffix in (".manifest.json", ".jsonl.gz"):
            shutil.copy(tmp_path / "other" / f"{second}{suffix}", directory / f"{second}{suffix}")
        builtin, standalone, out, stdout = both(verifier_file, f"file://{directory}", public)
        assert builtin == standalone == 1 and out == stdout, stdout
        assert "does not name the batch before it" in stdout or "does not link" in stdout
    finally:
        db.execute("DROP DATABASE IF EXISTS other_installation WITH (FORCE)")


def test_a_checkpoint_shows_its_block_is_archived_and_finds_a_removed_tail(db, intact, verifier_file, tmp_path):
    directory, public = intact
    keys = load_keys(signing_key=public.parent / "checkpoint-ed25519.pem")
    checkpoint = tmp_path / "checkpoint.json"
    checkpoint.write_text(json.dumps(make_checkpoint(db, keys)))
    last_archived = json.loads((directory / f"{batches(directory)[-1]}.manifest.json").read_text())
    body = json.loads(checkpoint.read_text())["checkpoint"]
    if body["block_no"] != last_archived["manifest"]["last_block"]:
        pytest.skip("the last block was not archived")  # every block is archived by build_archive
    assert both(verifier_file, f"file://{directory}", public, checkpoint)[:2] == (0, 0)
    last = batches(directory)[-1]
    for suffix in (".manifest.json", ".jsonl.gz"):
        (directory / f"{last}{suffix}").unlink()
    builtin, standalone, out, stdout = both(verifier_file, f"file://{directory}", public, checkpoint)
    assert builtin == standalone == 1 and "is not in the archive" in stdout and out == stdout
    # A checkpoint another installation signed: not this key's.
    generate_keys(tmp_path / "theirs")
    forged = make_checkpoint(db, load_keys(signing_key=tmp_path / "theirs" / "checkpoint-ed25519.pem"))
    checkpoint.write_text(json.dumps(forged))
    assert "the checkpoint is not signed by this public key" in both(verifier_file, f"file://{directory}", public,
                                                                     checkpoint)[3]


def test_an_archive_on_s3_verifies_offline_and_a_changed_object_is_found(db, aws, tmp_path):  # noqa: F811
    bucket = f"audit-{uuid.uuid4().hex[:12]}"
    url = f"s3://{bucket}/prod"
    target = open_target(url)
    assert isinstance(target, S3Target)
    target.client.create_bucket(Bucket=bucket)
    public = build_archive(db, tmp_path / "keys", url)
    ok = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", url, "--public-key", str(public)])
    assert ok.exit_code == 0 and ok.output.startswith("verified "), ok.output
    name = sorted(k for k in target.list_keys() if k.endswith(".jsonl.gz"))[0]
    target.client.put_object(Bucket=bucket, Key=target._key(name), Body=gzip.compress(b'{"seq": 1}\n', mtime=0))
    bad = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", url, "--public-key", str(public)])
    assert bad.exit_code == 1 and "not the size its manifest says" in bad.output


def test_the_documented_queries_run_on_a_real_archive(intact):
    import re

    directory, _ = intact
    queries = re.findall(r"<!-- archive query -->\n```sql\n(.*?)```", (Path(__file__).parent.parent / "docs" /
                                                                        "auditors.md").read_text(), re.S)
    assert len(queries) == 3
    for sql in queries:
        done = CliRunner().invoke(cli, ["archive", "query", sql, "--target", f"file://{directory}", "--json"])
        assert done.exit_code == 0, (sql, done.output)
        json.loads(done.output)
    by_kind = CliRunner().invoke(cli, ["archive", "query", queries[1], "--target", f"file://{directory}", "--json"])
    assert json.loads(by_kind.output) == [{"kind": "order.paid", "events": 30, "failures": 0},
                                          {"kind": "hostile.payload", "events": 6, "failures": 0}]
    payloads = CliRunner().invoke(cli, ["archive", "query", "SELECT payload->>'note' AS note, target_id FROM events"
                                        " ORDER BY seq LIMIT 1", "--target", f"file://{directory}", "--json"])
    assert json.loads(payloads.output) == [{"note": "\u2028 <b>", "target_id": "r0-1"}]
    # A JSON column is its text in the line, numbers as written (DuckDB would read them as doubles: 1e350 as
    # infinity), however deep, keys named like the line's fields inside it never counting.
    hostile = CliRunner().invoke(cli, ["archive", "query", "SELECT payload, line FROM events WHERE kind ="
                                       " 'hostile.payload' LIMIT 1", "--target", f"file://{directory}", "--json"])
    [row] = json.loads(hostile.output)
    assert f', "payload": {row["payload"]}, ' in row["line"] and row["payload"].count("[") == 5000
    assert '"n": 1' + "0" * 350 + ", " in row["payload"]
    # Every field of the canonical line is a column, schema_valid included (typed, like seq and occurred_at).
    columns = CliRunner().invoke(cli, ["archive", "query", "SELECT * FROM events LIMIT 1", "--target",
                                       f"file://{directory}", "--json"])
    assert list(json.loads(columns.output)[0]) == [*canonical.EVENT_FIELDS, "line"]
    # The documented recipe for an auditor's own columnar copy.
    copy = directory.parent / "events.parquet"
    made = CliRunner().invoke(cli, ["archive", "query", f"COPY (SELECT * FROM events) TO '{copy}' (FORMAT parquet)",
                                    "--target", f"file://{directory}"])
    assert made.exit_code == 0 and copy.stat().st_size > 0, made.output
    bad = CliRunner().invoke(cli, ["archive", "query", "SELECT nope FROM events", "--target", f"file://{directory}"])
    assert bad.exit_code == 2 and "the query failed" in bad.stderr
