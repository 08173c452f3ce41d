"""A hundred-and-twenty-sixth attacker's trial: claims without tests. Each checkable sentence of
docs/installer.md, docs/sql.md and docs/canonical-form.md that no test would catch breaking (or
whose test asserts too little), tried at its exact bounds, as the role or input it is about.

  S. sql.md: lengths in characters at their bounds (multi-byte text), the 64 KiB payload to the
     byte, the wild numbers' bounds, page_size and month_count, kind prefixes as plain prefixes,
     since inclusive / until exclusive, idempotency across roles, UUID version 7 ids.
  C. canonical-form.md: canonical.py and the standalone verifier print JSON as jsonb does, odd
     Unicode and numbers included; both verifiers agree on events of odd text; the checkpoint
     file's rules at their bounds (1 MiB, 32 levels, strict base64).
  I. installer.md: the schema name's 40 characters, and the install lock naming who holds it.

Each test asserts the claim, so it FAILS when the claim breaks (or the doc sentence is wrong).
Every database object made is named t126_* and dropped.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from decimal import Decimal

import psycopg
import pytest
from trial_helpers import sqlstate_of as sqlstate

from pgaudit_py import canonical, seal, verify_archive
from pgaudit_py.chain import verify_chain

TIMEOUT = 120


def cli(*args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """pgaudit as an operator runs it: a process of its own, with the inherited environment."""
    return subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def dsn(db: psycopg.Connection, user: str | None = None) -> str:
    i = db.info
    return f"host={i.host} port={i.port} dbname={i.dbname} user={user or i.user}"


def pending(db: psycopg.Connection, kind: str) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = %s", [kind]).fetchone()[0]


# ---------------------------------------------------------------- S: sql.md

LIMITS = [("tenant_id", 256), ("actor_type", 64), ("actor_id", 256), ("target_type", 128), ("target_id", 512),
          ("correlation_id", 256), ("idempotency_key", 256)]


@pytest.mark.parametrize("char", ["é", "€", "\U0001f600"])
def test_s1_lengths_are_characters_at_their_exact_bounds(db, connect, char):
    """sql.md: "Lengths: tenant, actor id, correlation id and idempotency key 256, actor type 64,
    target type 128, target id 512, and a payload's `moved_from` 512" and "`kind`: ... at most 128
    characters"; PA005 "any other bad argument (... lengths ...)", and "raised before anything is
    written". Multi-byte text of exactly the limit is taken, one character more is refused PA005
    with nothing written, as app_writer."""
    writer = connect("app_writer")
    for n, (field, limit) in enumerate(LIMITS):
        kind = f"t126.len{n}"
        ok = sqlstate(writer, f"SELECT audit.record(kind => %s, {field} => %s)", [kind, char * limit])
        assert ok is None, (field, limit, ok)
        refused = sqlstate(writer, f"SELECT audit.record(kind => %s, {field} => %s)", [kind + "x", char * (limit + 1)])
        assert refused == "PA005", (field, limit + 1, refused)
        assert pending(db, kind) == 1 and pending(db, kind + "x") == 0
    ok = sqlstate(writer, "SELECT audit.record(kind => 't126.moved', payload => %s)",
                  [json.dumps({"moved_from": char * 512})])
    assert ok is None
    assert sqlstate(writer, "SELECT audit.record(kind => 't126.moved2', payload => %s)",
                    [json.dumps({"moved_from": char * 513})]) == "PA005"
    assert pending(db, "t126.moved2") == 0
    assert sqlstate(writer, "SELECT audit.record(kind => %s)", ["t" + "a" * 127]) is None
    assert sqlstate(writer, "SELECT audit.record(kind => %s)", ["t" + "a" * 128]) == "PA001"


def _payload_of_bytes(db: psycopg.Connection, size: int) -> str:
    """A payload whose jsonb text is exactly `size` bytes, with multi-byte characters in it."""
    filler = "é" * 100
    base = db.execute("SELECT octet_length(%s::jsonb::text)", [json.dumps({"p": filler}, ensure_ascii=False)]).fetchone()[0]
    text = json.dumps({"p": filler + "x" * (size - base)}, ensure_ascii=False)
    assert db.execute("SELECT octet_length(%s::jsonb::text)", [text]).fetchone()[0] == size
    return text


def test_s2_a_payload_of_64_kib_serialized_is_taken_and_one_byte_more_refused(db, connect):
    """sql.md: "`payload`: a JSON object of at most 64 KiB (serialized)" and PA002 "payload not a JSON
    object, larger than 64 KiB"; "raised before anything is written". 65,536 bytes of jsonb text
    (multi-byte characters counted in bytes) is taken; 65,537 is PA002 and writes nothing."""
    writer = connect("app_writer")
    assert sqlstate(writer, "SELECT audit.record(kind => 't126.big', payload => %s)", [_payload_of_bytes(db, 65536)]) is None
    assert sqlstate(writer, "SELECT audit.record(kind => 't126.big2', payload => %s)",
                    [_payload_of_bytes(db, 65537)]) == "PA002"
    assert (pending(db, "t126.big"), pending(db, "t126.big2")) == (1, 0)


@pytest.mark.parametrize(("payload", "refused"), [
    ('{"n": 1e-400}', False),                       # "non-zero below 1e-400": 1e-400 itself is not below
    ('{"n": -1e-400}', False),
    ('{"n": 9.9e-401}', True),
    ('{"n": -9.9e-401}', True),
    ('{"n": 0e-500}', False),                       # zero, however many decimals (one number)
    ('{"n": 9.99e399}', False),
    ('{"n": 1e400}', True),
    ('{"n": -1e400}', True),
    ('{"a": [' + ", ".join(["0"] * 99) + ", 1." + "0" * 400 + "1]}", False),   # 100 numbers
    ('{"a": [' + ", ".join(["0"] * 100) + ", 1." + "0" * 400 + "1]}", True),   # 101 numbers, 401 decimals
    ('{"a": [' + ", ".join(["0"] * 100) + ", 1." + "0" * 399 + "1]}", False),  # 101 numbers, 400 decimals
    ('{"a": [' + ", ".join(["0"] * 100) + ", 0." + "0" * 401 + "]}", True),    # a zero of 401 decimals
])
def test_s3_wild_numbers_at_their_exact_bounds(db, connect, payload, refused):
    """sql.md, PA002: "holding a number of magnitude 1e400 or more (or non-zero below 1e-400), or,
    among more than 100 numbers, one with more than 400 decimals". Each bound from both sides, as
    app_writer; a refusal writes nothing."""
    writer = connect("app_writer")
    got = sqlstate(writer, "SELECT audit.record(kind => 't126.wild', payload => %s)", [payload])
    assert got == ("PA002" if refused else None), (payload[:60], got)
    assert pending(db, "t126.wild") == (0 if refused else 1)


def test_s4_page_size_and_month_count_bounds_and_the_months_returned(db, connect):
    """sql.md: "`page_size` 1 to 500; anything else is `PA005`" and "Months are calendar months in
    UTC, oldest first, the current month last, months without events included with zero;
    `month_count` 1 to 120." As app_reader, in a session whose time zone is far from UTC."""
    reader = connect("app_reader")
    reader.execute("SET TimeZone = 'Pacific/Kiritimati'")  # UTC+14: its month starts a day before UTC's
    for size, state in ((0, "PA005"), (501, "PA005"), (None, "PA005"), (-1, "PA005"), (1, None), (500, None)):
        assert sqlstate(reader, "SELECT count(*) FROM audit.list_events(page_size => %s)", [size]) == state, size
    for months, state in ((0, "PA005"), (121, "PA005"), (None, "PA005"), (1, None), (120, None)):
        assert sqlstate(reader, "SELECT count(*) FROM audit.monthly_event_counts(month_count => %s::integer)",
                        [months]) == state, months
    rows = reader.execute("SELECT month, count FROM audit.monthly_event_counts(month_count => 120)").fetchall()
    current = db.execute("SELECT date_trunc('month', now() AT TIME ZONE 'UTC')::date").fetchone()[0]
    assert len(rows) == 120
    assert [m for m, _ in rows] == sorted(m for m, _ in rows) and rows[-1][0] == current
    assert len({m for m, _ in rows}) == 120 and all(m.day == 1 for m, _ in rows)


def test_s5_kind_prefix_is_a_plain_string_prefix_not_a_pattern(db, connect):
    """sql.md: "`kind_prefix` is a plain string prefix (`order.` matches `order.paid`; `order` also
    matches `orders.exported`)". `_` (a kind character and LIKE's wildcard) matches only itself,
    and count_events' by_kind_prefix counts the same way; a `%` is no kind prefix (PA001)."""
    writer = connect("app_writer")
    for kind in ("t126a.paid", "t126ab.paid", "t126_b.paid", "t126aXb.paid", "t126.order", "t126.orders.exported"):
        writer.execute("SELECT audit.record(kind => %s)", [kind])
    reader = connect("app_reader")

    def listed(prefix: str) -> list[str]:
        return sorted(r[0] for r in reader.execute("SELECT kind FROM audit.list_events(kind_prefix => %s, page_size => 500)",
                                                   [prefix]))

    assert listed("t126_") == ["t126_b.paid"]
    assert listed("t126a_b") == []
    assert listed("t126.order") == ["t126.order", "t126.orders.exported"]
    counted = reader.execute("SELECT by_kind_prefix FROM audit.count_events(by_kind_prefix => %s)",
                             [["t126_", "t126a_b", "t126.order"]]).fetchone()[0]
    assert counted == {"t126_": 1, "t126a_b": 0, "t126.order": 2}, counted
    assert sqlstate(reader, "SELECT * FROM audit.list_events(kind_prefix => 't126%')") == "PA001"


def test_s6_since_is_inclusive_and_until_exclusive(db, connect):
    """sql.md: "Every given filter must match (`since` inclusive, `until` exclusive, on
    `occurred_at`)" and count_events' own comment "since inclusive, until exclusive". An event's
    own occurred_at as `since` finds it, as `until` does not; pending and sealed."""
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 't126.when')")
    reader = connect("app_reader")
    for stage in ("pending", "sealed"):
        at = db.execute("SELECT occurred_at FROM audit.events WHERE kind = 't126.when'").fetchone()[0]
        got = [reader.execute("SELECT count(*) FROM audit.list_events(kind_prefix => 't126.when', since => %s)",
                              [at]).fetchone()[0],
               reader.execute("SELECT count(*) FROM audit.list_events(kind_prefix => 't126.when', until => %s)",
                              [at]).fetchone()[0],
               reader.execute("SELECT by_kind_prefix->>'t126.when' FROM audit.count_events(since => %s, until => %s,"
                              " by_kind_prefix => '{t126.when}')", [at, at]).fetchone()[0],
               reader.execute("SELECT by_kind_prefix->>'t126.when' FROM audit.count_events(since => %s,"
                              " by_kind_prefix => '{t126.when}')", [at]).fetchone()[0]]
        assert got == [1, 0, "0", "1"], (stage, got)
        seal(db)


def test_s7_an_idempotency_key_from_another_role_is_refused_and_writes_nothing(db, connect):
    """sql.md: "A retry with the same key and the same content ..., from the same database role,
    returns the original event ... and writes nothing. The same key with different content, or from
    another database role, raises `PA004`". The other role is another login of the same group
    (both members of audit_writer); the same content."""
    db.execute("CREATE ROLE t126_writer2 LOGIN IN ROLE audit_writer")
    try:
        first = connect("app_writer")
        row = first.execute("SELECT id FROM audit.record(kind => 't126.idem', tenant_id => 't', idempotency_key => 'k1')").fetchone()
        again = first.execute("SELECT id FROM audit.record(kind => 't126.idem', tenant_id => 't', idempotency_key => 'k1')").fetchone()
        assert again == row
        other = connect("t126_writer2")
        assert sqlstate(other, "SELECT audit.record(kind => 't126.idem', tenant_id => 't', idempotency_key => 'k1')") == "PA004"
        assert sqlstate(first, "SELECT audit.record(kind => 't126.idem', tenant_id => 't', idempotency_key => 'k1',"
                               " payload => '{\"x\": 1}')") == "PA004"
        assert pending(db, "t126.idem") == 1
    finally:
        db.execute("DROP ROLE t126_writer2")


def test_s8_ids_are_uuid_version_7_of_the_time_made_and_a_statements_rows_count_up(db, connect):
    """sql.md: "a UUID of version 7 (RFC 9562), whose first 48 bits are the Unix time in
    milliseconds it was made ... the rows of one captured statement share one such id, counted up by
    row in its last 48 bits". The time lies between the server's clock read before and after."""
    from pgaudit_py import enable_tracking

    writer = connect("app_writer")
    ms = "SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
    before = db.execute(ms).fetchone()[0]
    made = writer.execute("SELECT id FROM audit.record(kind => 't126.v7')").fetchone()[0]
    after = db.execute(ms).fetchone()[0]
    assert made.version == 7 and made.variant == uuid.RFC_4122
    assert before <= made.int >> 80 <= after + 1, (before, made.int >> 80, after)
    db.execute("CREATE TABLE public.t126_rows (id int PRIMARY KEY, v text)")
    try:
        enable_tracking(db, "public.t126_rows")
        db.execute("INSERT INTO public.t126_rows SELECT g, 'x' FROM generate_series(1, 5) g")
        ids = sorted(r[0].int for r in db.execute("SELECT id FROM audit.events WHERE target_type = 'public.t126_rows'"))
        assert len(ids) == 5
        assert len({i >> 48 for i in ids}) == 1, [hex(i) for i in ids]
        low = {i & ((1 << 48) - 1) for i in ids}
        assert any(low == {(b + k) % (1 << 48) for k in range(5)} for b in low), sorted(low)
        assert all(uuid.UUID(int=i).version == 7 for i in ids)
    finally:
        db.execute("SELECT audit.disable_tracking('public.t126_rows')")
        db.execute("DROP TABLE public.t126_rows")


# ---------------------------------------------------------------- C: canonical-form.md

ODD_TEXTS = ["", "/", "\u2028\u2029", "\x7f", "\x1f\x01\x00"[:2], "é", "\U0001f600", "a\"b\\c", "\b\f\n\r\t",
             "\ufeff", "\u00ad", "\uffff"]
ODD_NUMBERS = ["-0.0", "-0", "-0e5", "1e3", "1E-7", "0e-10", "1.50", "1E+2", "-1.000", "123456789012345678901234567890"]


def test_c1_canonical_py_prints_json_as_postgresql_prints_jsonb(db):
    """canonical-form.md: "Every canonical text is JSON printed the way PostgreSQL prints a `jsonb`
    value": keys "ordered by the length of the key in UTF-8 bytes, then bytewise", strings escaped
    only as listed ("Nothing else is escaped (not `/`, not U+2028, not non-ASCII)"), numbers as
    numeric text ("`1e3` becomes `1000`, `1e-7` becomes `0.0000001`, `-0.0` becomes `0.0`"), and
    "`pgaudit_py/canonical.py` is such a program". Both Python printers (canonical.dumps, and the
    standalone verify_archive.canonical for what holds no decimal) against jsonb::text."""
    keys = {t: i for i, t in enumerate(["é", "ab", "b", "\U0001f600", "abcd", "\u00e9\u00e9", "z", "aé"] + ODD_TEXTS)}
    documents = [keys, {"s": ODD_TEXTS}, {"n": [json.loads(n, parse_float=Decimal) for n in ODD_NUMBERS]}]
    for number in ODD_NUMBERS:
        documents.append({"n": json.loads(number, parse_float=Decimal)})
    wrong = []
    for document in documents:
        text = json.dumps(document, ensure_ascii=False, default=str)
        for number in ODD_NUMBERS:  # as written, not as Python's str() of a Decimal
            text = text.replace(f'"{json.loads(number, parse_float=Decimal)}"', number)
        pg = db.execute("SELECT %s::jsonb::text", [text]).fetchone()[0]
        mine = canonical.dumps(json.loads(text, parse_float=Decimal))
        if mine != pg:
            wrong.append(("canonical.dumps", text[:80], mine[:80], pg[:80]))
        if "n" not in document:
            standalone = verify_archive.canonical(json.loads(text))
            if standalone != pg:
                wrong.append(("verify_archive.canonical", text[:80], standalone[:80], pg[:80]))
    assert wrong == [], wrong


def test_c2_both_verifiers_build_the_sealers_lines_for_odd_text(db, connect):
    """canonical-form.md: the event line's text members are "the column's text", `client_addr`
    "PostgreSQL's `inet::text`", `occurred_at` "UTC, `YYYY-MM-DDTHH:MM:SS.ffffffZ`, always six
    fraction digits", and "`pgaudit verify` uses it [canonical.py], not the SQL". Events of control
    characters, U+2028, astral and combining text, an IPv6 client address, a writer in a time
    zone of +05:45: both verifiers recompute the sealer's hashes."""
    writer = connect("app_writer", options="-c TimeZone=Asia/Kathmandu -c application_name=t126\u00e9\u2028")
    odd = ["\x01\x1f", "\u2028\u2029", "\U0001f600e\u0301", "a\\\"/b", "\x7f\ufeff"]
    for n, text in enumerate(odd):
        writer.execute("SELECT audit.record(kind => 't126.odd', tenant_id => %s, actor_id => %s, target_id => %s,"
                       " correlation_id => %s, payload => %s)",
                       [text, text, text, text, json.dumps({text: text, "k" + text: [text, -0.0, 1e-7, 10 ** 30]})])
        if n == 0:
            writer.execute("SET pgaudit_py.client_addr = '2001:db8::1'")
    seal(db)
    sql_ok, problem = db.execute("SELECT ok, problem FROM audit.verify()").fetchone()
    py = verify_chain(db)
    assert (sql_ok, problem, py.ok) == (True, None, True), (problem, py)
    lines = db.execute("SELECT audit._canonical_event(e, 2::smallint) FROM audit.event_log e"
                       " WHERE kind = 't126.odd' ORDER BY seq").fetchall()
    assert len(lines) == len(odd)
    for (line,) in lines:
        at = json.loads(line)["occurred_at"]
        assert at.endswith("Z") and len(at.split(".")[1]) == 7, at


def _checkpoint(**changes) -> dict:
    body = {"v": 1, "schema": "audit", "database": "t126", "block_no": 1, "block_hash": "00" * 32, "last_seq": 1,
            "event_count": 1, "pruned_through": None, "created_at": "2026-12-07T00:00:00Z"}
    document = {"checkpoint": body, "signatures": {"ed25519": {"public_key": base64.b64encode(b"k" * 32).decode(),
                                                               "signature": base64.b64encode(b"s" * 64).decode()}}}
    for key, value in changes.items():
        document[key] = value
    return document


def test_c3_the_checkpoint_files_rules_at_their_bounds(tmp_path):
    """canonical-form.md: "a regular file of at most 1 MiB, UTF-8 without a byte order mark ..., no
    duplicate key, no NaN or Infinity, nested at most 32 levels; `block_no` an integer (not a string,
    not a boolean) ... its `ed25519` (if present) an object of string `public_key` and `signature`
    (strict base64) ... Any other file is named as no checkpoint". Each rule from both sides."""
    path = tmp_path / "c.json"

    def accepted(raw: bytes) -> bool:
        path.write_bytes(raw)
        try:
            verify_archive.checkpoint_file(path)
            return True
        except ValueError:
            return False

    good = json.dumps(_checkpoint()).encode()
    assert accepted(good)
    # 1 MiB exactly, by white space after the document; one byte more is no checkpoint.
    assert accepted(good + b" " * ((1 << 20) - len(good)))
    assert not accepted(good + b" " * ((1 << 20) - len(good) + 1))
    # 32 levels: the document is 1, "x" is 31 nested lists (levels 2 to 32); one more list is 33.
    assert accepted(json.dumps(_checkpoint(x=json.loads("[" * 31 + "]" * 31))).encode())
    assert not accepted(json.dumps(_checkpoint(x=json.loads("[" * 32 + "]" * 32))).encode())
    assert not accepted(b"\xef\xbb\xbf" + good)
    assert not accepted(good.decode().encode("utf-16"))
    assert not accepted(good[:-1] + b', "signatures": {}}')
    assert not accepted(good[:-1] + b', "x": NaN}')
    body = _checkpoint()["checkpoint"]
    assert not accepted(json.dumps(_checkpoint(checkpoint=body | {"block_no": True})).encode())
    assert not accepted(json.dumps(_checkpoint(checkpoint=body | {"block_no": "1"})).encode())
    assert not accepted(json.dumps(_checkpoint(checkpoint=body | {"pruned_through": {"block_no": False,
                                                                                   "block_hash": "00"}})).encode())


@pytest.mark.parametrize("signature", ["not base64!", "c2ln\nc2ln", " c2lnc2ln", "c2lnc2l", "c2ln-_c2"])
def test_c4_a_signature_that_is_not_strict_base64_is_no_checkpoint(db, tmp_path, signature):
    """canonical-form.md: "its `ed25519` (if present) an object of string `public_key` and
    `signature` (strict base64) ... Any other file is named as no checkpoint: `pgaudit verify`
    exits 2". The reader all three share (verify_archive.checkpoint_file) refuses it, and `pgaudit
    verify --checkpoint` exits 2 naming the file as no checkpoint (not 1, "does not verify", which
    reads as a changed checkpoint or a wrong key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    public = Ed25519PrivateKey.generate().public_key()
    pem = tmp_path / "t126.pub.pem"
    pem.write_bytes(public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    raw = base64.b64encode(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode()
    path = tmp_path / "t126.checkpoint.json"
    path.write_text(json.dumps(_checkpoint(signatures={"ed25519": {"public_key": raw, "signature": signature}})))
    try:
        verify_archive.checkpoint_file(path)
        reader_refuses = False
    except ValueError:
        reader_refuses = True
    db.execute("SELECT audit.record(kind => 't126.cp')")
    seal(db)
    done = cli("verify", "--checkpoint", str(path), "--public-key", str(pem), "--dsn", dsn(db))
    assert (reader_refuses, done.returncode) == (True, 2), (done.stdout[-300:], done.stderr[-300:])


# ---------------------------------------------------------------- I: installer.md

@pytest.mark.parametrize(("name", "taken"), [
    ("t126_" + "a" * 35, True),       # 40 characters
    ("t126_" + "a" * 36, False),      # 41
    ("t126_\u00e4", False),           # a lower-case letter, but not a-z
    ("t126_\u0131", False),           # dotless i, lower-case
    ("t126_\uff41", False),           # full-width a
    ("t126_\u0661", False),           # an Arabic-Indic digit
    ("T126_x", False),
    ("1t126", False),
    ("t126_x\n", False),
])
def test_i1_the_schema_name_at_its_bounds(db, name, taken):
    """installer.md: "The name is 1 to 40 lower-case letters, digits and `_`, not starting with a
    digit; any other, a final newline included, is refused before anything is made or printed,
    `--dry-run` and `--sql` too". 40 characters are taken by --dry-run; 41, non-ASCII letters and
    digits that Python calls lower-case or digits are refused with nothing printed or made."""
    for mode in ("--dry-run", "--sql"):
        done = cli("install", mode, "--schema", name, "--dsn", dsn(db))
        if taken:
            assert done.returncode == 0, (mode, done.stderr[-500:])
            assert done.stdout.strip()
        else:
            assert done.returncode != 0 and done.stdout == "", (mode, done.returncode, done.stdout[:200])
    made = db.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 't126%%'").fetchone()[0]
    roles = db.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 't126%%'").fetchone()[0]
    assert (made, roles) == (0, 0)


def test_i2_a_held_install_lock_names_the_pid_and_role_holding_it(db, connect, monkeypatch):
    """installer.md: "the second installer waits for the first, at most 60 s: past that it fails
    naming the pid and role holding the lock, since any role that can connect can take an advisory
    lock". The documented 60 s is the code's; the wait is shortened to 1 s here (a constant, not
    the database): a role with no rights but CONNECT holds the key, shared, in a transaction."""
    from pgaudit_py import installer
    from pgaudit_py.errors import InstallError

    assert installer._INSTALL_LOCK_WAIT == 60.0
    monkeypatch.setattr(installer, "_INSTALL_LOCK_WAIT", 1.0)
    holder = connect("app_attacker", autocommit=False)
    holder.execute("SELECT pg_advisory_xact_lock_shared(%s)", [installer._INSTALL_LOCK])
    pid = holder.info.backend_pid
    with pytest.raises(InstallError) as caught:
        installer.install(db)
    assert f"pid {pid} (role app_attacker)" in str(caught.value), str(caught.value)
    holder.rollback()
    installer.install(db)  # and runs once it is let go


@pytest.mark.parametrize(("keyword", "value", "payload"), [
    ("minLength", "1.0", '{"s": "abc"}'),
    ("maxLength", "5.00", '{"s": "abc"}'),
    ("minItems", "0.0", '{"s": [1]}'),
    ("maxItems", "3.0", '{"s": [1]}'),
    ("minLength", "2147483647", '{"s": "abc"}'),
    ("maxItems", "2147483647", '{"s": [1]}'),
    ("minLength", "1e0", '{"s": "abc"}'),
    ("exclusiveMinimum", "true", '{"s": 1}'),
    ("minimum", '"5"', '{"s": 1}'),
    ("pattern", '"[[:alpha:]]+\\\\1"', '{"s": "abc"}'),
])
def test_s9_no_record_of_a_kind_fails_on_its_own_schema(db, connect, keyword, value, payload):
    """sql.md: a keyword whose value has the wrong type or shape is refused at registration
    ("`PA005` naming it: `$.properties.s.minLength must be a whole number from 0 to 2147483647`"),
    "so that no `record()` of the kind can fail on its own schema"; a strict type refuses a
    mismatch with `PA003`, any other writes the event. A whole number written with decimals
    (`1.0`, which JSON and jsonb keep as written) is either refused at registration (PA005) or
    judged by record(): record() never fails with another error."""
    maintainer = connect("app_maintainer")
    writer = connect("app_writer")
    schema = '{"type": "object", "properties": {"s": {"' + keyword + '": ' + value + '}}}'
    for strict in (False, True):
        kind = f"t126.schema.{strict}"
        registered = sqlstate(maintainer, "SELECT audit.register_event_type(kind => %s, schema => %s::jsonb,"
                                          " strict => %s)", [kind, schema, strict])
        assert registered in (None, "PA005"), registered
        if registered is None:
            got = sqlstate(writer, "SELECT audit.record(kind => %s, payload => %s)", [kind, payload])
            assert got in (None, "PA003"), (schema, strict, got)


def test_i3_what_a_superusers_install_grants_and_where_pgcrypto_lives(db):
    """installer.md: "A superuser's install makes `audit_sealer` a member of `pg_read_all_stats`" and
    "`pgcrypto`, when missing, goes in a schema of its own that the installer makes (`audit_crypto`,
    the installer's, with `USAGE` for everyone as `public` had)": no role but a superuser may create
    in it or drop it, and the sealer's membership is there (the template is a superuser's install
    into a database without pgcrypto)."""
    assert db.execute("SELECT pg_has_role('audit_sealer', 'pg_read_all_stats', 'MEMBER')").fetchone()[0]
    where, owner_super = db.execute("""SELECT n.nspname, r.rolsuper FROM pg_extension e
                                         JOIN pg_namespace n ON n.oid = e.extnamespace
                                         JOIN pg_roles r ON r.oid = n.nspowner
                                        WHERE e.extname = 'pgcrypto'""").fetchone()
    assert (where, owner_super) == ("audit_crypto", True)
    assert db.execute("SELECT has_schema_privilege('public', 'audit_crypto', 'USAGE')").fetchone()[0]
    creators = db.execute("""SELECT rolname FROM pg_roles WHERE NOT rolsuper
                               AND (has_schema_privilege(oid, 'audit_crypto', 'CREATE')
                                    OR pg_has_role(oid, (SELECT nspowner FROM pg_namespace
                                                          WHERE nspname = 'audit_crypto'), 'MEMBER'))""").fetchall()
    assert creators == [], creators
