"""A hundred-and-fifteenth attacker's trial: hostile text, numbers and sizes are data.

  U. odd Unicode in every field a writer controls (record()'s fields, payload keys and values, captured
     text/json/jsonb/text[]/composite columns, odd table and column names): both verifiers and the offline
     kit agree, and each catches one changed byte (NFC -> NFD, U+FFFE -> U+FFFF).
  N. numbers: exponent bounds, -0, long digit strings, numeric NaN/Infinity, float8 -0 and subnormals,
     money and interval under odd writer sessions.
  D. sizes and depths at the bounds the docs name (64 KiB payload, 16 MiB sealed line, jsonb depth).

Each test asserts the secure outcome, so it FAILS when the attack works. Objects are prefixed t115_.
"""

from __future__ import annotations

import gzip
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
from conftest import messages_locale_available
from psycopg.rows import dict_row
from trial_helpers import both_verifiers, drop_made_under, seal_all, tamper, verified

from pgaudit_py import canonical, list_events, record
from pgaudit_py.archive import archive
from pgaudit_py.archive_targets import open_target
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import generate_keys, load_keys
from pgaudit_py.cli import cli

ODD = ("\ufffe\uffff\U0010ffff \u2028\u2029 \ufeff e\u0301 \u00e9 \u202eevil\u202c \u200f\u05d0 "
       "\U0001f600 \u0085 \u00a0 \\ \" \t\n ")


@pytest.fixture
def clean(db):
    yield db
    with suppress(psycopg.Error):
        db.execute("ROLLBACK")
    with suppress(psycopg.Error):
        db.execute("RESET ROLE")
    drop_made_under(db, "t115_")
    for (name,) in db.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                              " WHERE n.nspname = 'public' AND starts_with(c.relname, 't115_') AND c.relkind = 'r'"
                              ).fetchall():
        with suppress(psycopg.Error):
            db.execute(f'DROP TABLE public."{name.replace(chr(34), chr(34) * 2)}" CASCADE')
    for (name,) in db.execute("SELECT typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
                              " WHERE n.nspname = 'public' AND starts_with(typname, 't115_') AND typtype = 'c'"
                              " AND typrelid NOT IN (SELECT oid FROM pg_class WHERE relkind = 'r')").fetchall():
        with suppress(psycopg.Error):
            db.execute(f'DROP TYPE public."{name}" CASCADE')


@pytest.fixture
def verifier_file(tmp_path_factory) -> Path:
    printed = CliRunner().invoke(cli, ["archive", "verifier"])
    assert printed.exit_code == 0
    path = tmp_path_factory.mktemp("auditor115") / "verify_archive.py"
    path.write_text(printed.output)
    return path


def offline(verifier: Path, directory: Path, public: Path) -> tuple[int, int, str]:
    builtin = CliRunner().invoke(cli, ["archive", "verify", "--offline", "--target", f"file://{directory}",
                                       "--public-key", str(public)])
    standalone = subprocess.run([sys.executable, "-I", str(verifier), str(directory), "--public-key", str(public)],
                                capture_output=True, text=True, timeout=300, cwd=verifier.parent)
    return builtin.exit_code, standalone.returncode, (builtin.output + " | " + standalone.stdout + standalone.stderr)[-1500:]


def both_ok(db) -> None:
    sql_verdict = verified(db)
    py = verify_chain(db)
    assert sql_verdict == (True, None) and (py.ok, py.problem) == (True, None), (sql_verdict, py.problem)


def sealed_both_ok(db) -> None:
    """Seal everything; nothing quarantined; both verifiers ok; Python's line rebuild equals SQL's for every event."""
    assert seal_all(db) is None
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    both_ok(db)
    cols = ", ".join(f"l.{n}::text AS {n}" if n in ("client_addr", "txid", *canonical.JSON_FIELDS) else f"l.{n}"
                     for n in canonical.EVENT_FIELDS)
    with db.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(f"SELECT {cols}, audit._canonical_event(l, b.canonical_version) AS line, b.canonical_version"
                           " FROM audit.event_log l JOIN audit.blocks b USING (block_no)").fetchall()
    for row in rows:
        assert canonical.event_line(row, row["canonical_version"]) == row["line"], row["seq"]


def tamper_p(db, statement: str, params) -> None:
    db.execute("BEGIN")
    try:
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute(statement, params)
        db.execute("COMMIT")
    except Exception:
        db.execute("ROLLBACK")
        raise


def archive_all(db, tmp_path: Path, verifier: Path, name: str = "archive") -> tuple[Path, Path]:
    keys_dir = tmp_path / f"keys-{name}"
    generate_keys(keys_dir)
    keys = load_keys(signing_key=keys_dir / "checkpoint-ed25519.pem")
    directory = tmp_path / name
    time.sleep(0.05)
    done = archive(db, open_target(f"file://{directory}"), keys, older_than=timedelta(milliseconds=1))
    assert done.batches
    public = keys_dir / "checkpoint-ed25519.pub.pem"
    b, s, out = offline(verifier, directory, public)
    assert (b, s) == (0, 0), out
    both_ok(db)  # across the archive boundary
    return directory, public


def three_way(db, tmp_path: Path, verifier: Path, seq: int, column: str, expr: str, old: bytes, new: bytes,
              cast: str = "jsonb", after_archive=None) -> None:
    """Change one event in the database: both verifiers must catch it; put it back: both ok again; archive:
    the offline kit ok; change one byte in the archive: the offline kit (built-in and standalone) catches it."""
    orig = db.execute(f"SELECT {column}::text FROM audit.event_log WHERE seq = %s", [seq]).fetchone()[0]
    tamper_p(db, f"UPDATE audit.event_log SET {column} = {expr} WHERE seq = %s", [seq])
    now = db.execute(f"SELECT {column}::text FROM audit.event_log WHERE seq = %s", [seq]).fetchone()[0]
    assert now != orig, "the tamper changed nothing"
    sql_v, py_v = verified(db), verify_chain(db)
    assert (sql_v[0], py_v.ok) == (False, False), (sql_v, py_v.problem)
    # both name the same block and the same event (tamper-evidence.md: "block N: event seq S was changed")
    bad = db.execute("SELECT bad_block FROM audit.verify()").fetchone()[0]
    assert (sql_v[1], bad) == (py_v.problem, py_v.bad_block), (sql_v[1], py_v.problem)
    assert f"event seq {seq} was changed" in sql_v[1] and py_v.bad_seq == seq, (sql_v[1], py_v.bad_seq)
    tamper_p(db, f"UPDATE audit.event_log SET {column} = %s::{cast} WHERE seq = %s", [orig, seq])
    both_ok(db)
    directory, public = archive_all(db, tmp_path, verifier)
    if after_archive:
        after_archive(directory)
    restore_all(db, directory)
    assert tamper_archive(directory, old, new), "byte not found in the archive"
    b, s, out = offline(verifier, directory, public)
    assert (b, s) == (1, 1), out


def archive_query(directory: Path, sql: str):
    done = CliRunner().invoke(cli, ["archive", "query", sql, "--target", f"file://{directory}", "--json"])
    return done.exit_code, done.output[-600:] + repr(done.exception)


def restore_all(db, directory: Path) -> None:
    """archive.md: `archive restore` loads a batch's events into audit.restored_events, each line as it hashed."""
    from pgaudit_py.archive import restore_batch
    target = open_target(f"file://{directory}")
    for manifest in sorted(directory.glob("*.manifest.json")):
        batch = manifest.name.removesuffix(".manifest.json")
        lines = gzip.decompress((directory / f"{batch}.jsonl.gz").read_bytes()).split(b"\n")[:-1]
        assert restore_batch(db, target, batch) == len(lines), batch
        got = db.execute("SELECT count(*) FROM audit.restored_events WHERE batch_id = %s", [batch]).fetchone()[0]
        assert got == len(lines)


def tamper_archive(directory: Path, old: bytes, new: bytes) -> bool:
    """Replace the first occurrence of old by new (same length: one byte changed) in a data object."""
    assert len(old) == len(new)
    for path in sorted(directory.glob("*.jsonl.gz")):
        data = gzip.decompress(path.read_bytes())
        if old in data:
            path.write_bytes(gzip.compress(data.replace(old, new, 1), mtime=0))
            return True
    return False


def de_session(db):
    if messages_locale_available():
        db.execute("SET lc_messages = 'de_DE.UTF-8'")


# ====================================== U: odd Unicode ======================================

NFC, NFD = "caf\u00e9", "cafe\u0301"


def test_u1_odd_unicode_in_every_record_field_seals_verifies_archives_and_one_byte_is_caught(
        clean, connect, tmp_path, verifier_file):
    db = clean
    de_session(db)
    writer = connect("app_writer")
    long_key = "k\u00e9" * 9000  # 27,001 bytes
    payload = ('{"' + NFC + '": 1, "' + NFD + '": 2, "a": 1, "B": 2, "\u00e4": 3, "Z": 4, "\u00df": 5, "ss": 6, "'
               + ODD.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t").replace("\n", "\\n")
               + '": "v", "s": "\\ud83d\\ude00 \\u2028 \\u0085 \\ufeff \\uffff", "' + long_key + '": "'
               + "\ufffe" * 100 + '", "dup": 1, "dup": 2}')
    for i in range(3):
        writer.execute("SELECT audit.record(kind => 't115.u1', tenant_id => %s, actor_type => 'user', actor_id => %s,"
                       " target_type => %s, target_id => %s, payload => %s::jsonb, outcome => 'failure',"
                       " correlation_id => %s, idempotency_key => %s)",
                       [ODD + str(i), ODD[:40], "t\u202e" + str(i), ODD * 3, payload, NFD + str(i), NFC + ODD[:20] + str(i)])
    # the Python record() path, same text
    record(writer, "t115.u1py", target_id=ODD, tenant_id=NFD, payload={NFC: NFD, NFD: NFC, ODD: ODD, "n": -0.0})
    stored = db.execute("SELECT payload FROM audit.events WHERE kind = 't115.u1' LIMIT 1").fetchone()[0]
    assert stored[NFC] == 1 and stored[NFD] == 2 and stored["dup"] == 2 and len(stored) == 12
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't115.u1' AND target_id = %s", [ODD * 3]
                      ).fetchone() == (3,)
    sealed_both_ok(db)
    # listing under German messages
    assert len(connect("app_reader").execute("SELECT * FROM audit.list_events(kind_prefix => 't115.')").fetchall()) == 4
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't115.u1py'").fetchone()[0]
    # U+FFFE -> U+FFFF in the target: one byte of the line
    three_way(db, tmp_path, verifier_file, seq, "target_id", "replace(target_id, chr(65534), chr(65535))",
              "\ufffe".encode(), "\uffff".encode(), cast="text")


def test_u2_normalization_lookalike_swap_is_caught_by_all_three(clean, connect, tmp_path, verifier_file):
    db = clean
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 't115.u2', target_id => %s, payload => %s::jsonb)",
                   [NFC, '{"k": "' + NFC + '"}'])
    sealed_both_ok(db)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't115.u2'").fetchone()[0]
    # swap the NFC target for its NFD look-alike (same text to a normalizing reader); in the archive, the
    # one-byte change C3 A9 -> C3 A8 (e-acute -> e-grave)
    three_way(db, tmp_path, verifier_file, seq, "target_id", f"'{NFD}'", NFC.encode(), "caf\u00e8".encode(),
              cast="text")
    # and in a payload value: NFC -> NFD
    writer.execute("SELECT audit.record(kind => 't115.u2', target_id => 'second', payload => %s::jsonb)",
                   ['{"k": "' + NFC + '"}'])
    sealed_both_ok(db)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't115.u2'").fetchone()[0]
    tamper_p(db, "UPDATE audit.event_log SET payload = jsonb_build_object('k', %s::text) WHERE seq = %s", [NFD, seq])
    assert both_verifiers(db) == (False, False)


def test_u3_captured_odd_columns_and_table_names_seal_verify_archive_and_catch_a_byte(
        clean, connect, tmp_path, verifier_file):
    db = clean
    de_session(db)
    table = 't115_t\u00e2ble \u202e"q\u2028'
    qt = '"' + table.replace('"', '""') + '"'
    col = 'c\u00f6l "x" \u2029\ufeff'
    qc = '"' + col.replace('"', '""') + '"'
    db.execute("CREATE TYPE public.t115_pair AS (a text, b jsonb)")
    xml_ok = True
    try:
        db.execute("SELECT '<a>\u00e9</a>'::xml")
    except psycopg.Error:
        xml_ok = False
    xml_col = ", x xml" if xml_ok else ""
    db.execute(f"CREATE TABLE public.{qt} (id int PRIMARY KEY, {qc} text, j json, jb jsonb, arr text[],"
               f" p public.t115_pair{xml_col}); GRANT ALL ON public.{qt} TO app_writer")
    db.execute("SELECT audit.enable_tracking(%s, kind_prefix => 't115.odd')", [f"public.{qt}"])
    writer = connect("app_writer")
    rows = [
        (1, ODD, '{"' + NFC + '": 1, "' + NFD + '": 2, "dup": 1, "dup": 2}', '{"' + NFC + '": 1, "' + NFD + '": 2}'),
        (2, "\U0010ffff" * 50, '"\\ud800 lone"', '{"\\u2028": "\\uffff"}'),
        (3, NFD, '{"nul": "\\u0000"}', '"\ufffe"'),
        (4, "x" * 5000 + "\u2029", '{"a": "\\ud83d\\ude00", "a": 1}', '[1, "' + ODD.replace("\\", "\\\\").replace('"', '\\"')
         .replace("\t", "\\t").replace("\n", "\\n") + '"]'),
    ]
    for i, text, j, jb in rows:
        x = ", %s" if xml_ok else ""
        params = [i, text, j, jb, [ODD, NFC, NFD, None, '"{},'], ODD, '{"' + NFD + '": "\\u2028"}']
        if xml_ok:
            params.append(f"<r a='{NFD}'>\u2028\u202e\U0010fffd&amp;</r>" if i != 2 else "<r/>")
        writer.execute(f"INSERT INTO public.{qt} VALUES (%s, %s, %s::json, %s::jsonb, %s::text[], ROW(%s, %s::jsonb){x})",
                       params)
    writer.execute(f"UPDATE public.{qt} SET {qc} = {qc} || %s WHERE id IN (1, 2)", ["\u202e"])
    writer.execute(f"DELETE FROM public.{qt} WHERE id = 3")
    kinds = [k for (k,) in db.execute("SELECT kind FROM audit.events WHERE origin = 'capture' ORDER BY intake_id")]
    assert len(kinds) == 7, kinds
    img = db.execute("SELECT row_after FROM audit.events WHERE origin = 'capture' AND row_after ->> 'id' = '1'"
                     " ORDER BY intake_id LIMIT 1").fetchone()[0]
    assert img[col] == ODD and img["jb"] == {NFC: 1, NFD: 2} and img["arr"][:3] == [ODD, NFC, NFD]
    assert img["j"] == {NFC: 1, NFD: 2, "dup": 2} or "$omitted" in img["j"], img["j"]
    sealed_both_ok(db)
    seq = db.execute("SELECT min(seq) FROM audit.event_log WHERE origin = 'capture'").fetchone()[0]
    three_way(db, tmp_path, verifier_file, seq, "row_after", "replace(row_after::text, chr(65534), chr(65535))::jsonb",
              "\ufffe".encode(), "\uffff".encode(),
              after_archive=lambda d: _query_ok(d, "SELECT seq, kind, target_id, row_after FROM events ORDER BY seq"))


def test_u4_keys_collating_differently_under_de_de_are_hashed_bytewise(clean, connect):
    """A session collation (a column COLLATE "de_DE") must not change what the verifiers compute."""
    db = clean
    coll = db.execute("SELECT collname FROM pg_collation WHERE collname IN ('de_DE.utf8', 'de_DE') LIMIT 1").fetchone()
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 't115.u4', payload => %s::jsonb, target_id => %s)",
                   ['{"\u00e4": 1, "a": 2, "b": 3, "Z": 4, "\u00df": 5, "ss": 6, "\u00c4": 7}', "\u00e4b"])
    if coll:
        db.execute(f'CREATE TABLE public.t115_coll (id int PRIMARY KEY, s text COLLATE "{coll[0]}");'
                   " GRANT ALL ON public.t115_coll TO app_writer")
        db.execute("SELECT audit.enable_tracking('public.t115_coll')")
        writer.execute("INSERT INTO public.t115_coll VALUES (1, '\u00e4'), (2, 'Z'), (3, 'a')")
    assert seal_all(db) is None
    both_ok(db)
    reader = psycopg.connect(host=db.info.host, port=db.info.port, dbname=db.info.dbname, user=db.info.user,
                             autocommit=True)
    try:
        reader.execute("SET lc_messages = 'de_DE.UTF-8'" if messages_locale_available() else "SELECT 1")
        reader.execute("SET TimeZone = 'Pacific/Chatham'; SET DateStyle = 'German, DMY'; SET IntervalStyle = 'sql_standard';"
                       " SET extra_float_digits = -15; SET lc_monetary = 'C'; SET standard_conforming_strings = on")
        assert both_verifiers(reader) == (True, True)
    finally:
        reader.close()


# ======================================== N: numbers ========================================

@pytest.mark.parametrize("text,accepted", [
    ('{"n": 1e399}', True),
    ('{"n": -1e-399}', True),
    ('{"n": 1e-400}', True),        # "non-zero below 1e-400" is refused: 1e-400 itself is not below
    ('{"n": 9.999e399}', True),
    ('{"n": 1e400}', False),
    ('{"n": -1e-401}', False),
    ('{"n": 1' + "0" * 9999 + "}", False),   # 10,000 digits
    ('{"a": 1E+2, "b": 100, "c": 100.0, "d": -0, "e": -0.0, "f": 0e10, "g": 1.500}', True),
])
def test_n1_record_number_bounds_and_forms(clean, connect, counts, text, accepted):
    db = clean
    writer = connect("app_writer")
    try:
        writer.execute("SELECT audit.record(kind => 't115.n1', payload => %s::jsonb)", [text])
        got = None
    except psycopg.Error as e:
        got = e.sqlstate
    assert (got is None) == accepted, (got, text[:60])
    if not accepted:
        assert got == "PA002" and counts() == (0, 0)
        return
    assert seal_all(db) is None
    both_ok(db)


def test_n2_number_forms_seal_archive_and_a_changed_digit_is_caught(clean, connect, tmp_path, verifier_file):
    db = clean
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 't115.n2', payload => %s::jsonb)",
                   ['{"a": 1E+2, "b": 100, "c": 100.0, "d": -0, "e": -0.0, "big": 1e399, "tiny": -1e-399, "w": '
                    + "7" * 399 + "}"])
    stored = db.execute("SELECT payload::text FROM audit.events WHERE kind = 't115.n2'").fetchone()[0]
    assert '"a": 100' in stored and '"c": 100.0' in stored
    sealed_both_ok(db)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't115.n2'").fetchone()[0]
    # 100 -> 100.0 ("the scale kept"): a changed number form must be caught
    three_way(db, tmp_path, verifier_file, seq, "payload", "jsonb_set(payload, '{b}', '100.0')",
              b'"w": 777', b'"w": 778')


def test_n3_numeric_float_money_interval_columns_under_odd_writer_sessions(clean, connect, tmp_path, verifier_file):
    db = clean
    de_session(db)
    db.execute("""CREATE TABLE public.t115_num (id int PRIMARY KEY, n numeric, f float8, r real, m money, iv interval,
                                               ts timestamptz, d date, na numeric[]);
                  GRANT ALL ON public.t115_num TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.t115_num')")
    values = "(%s, 'NaN', '-0', '1.4e-45', 1234.56, '1 year -2 days 03:04:05.5', '2026-12-05 12:00:00.5+05:45'," \
             " '2026-02-03', ARRAY['Infinity', '-Infinity', 'NaN', '-0.0', '1e-300']::numeric[])"
    plain = connect("app_writer")
    plain.execute(f"INSERT INTO public.t115_num VALUES {values}", [1])
    odd = connect("app_writer")
    lc = "de_DE.UTF-8" if messages_locale_available() else "C"
    odd.execute(f"SET lc_monetary = '{lc}'; SET IntervalStyle = 'iso_8601'; SET DateStyle = 'German, DMY';"
                " SET TimeZone = 'Asia/Kathmandu'; SET extra_float_digits = -15")
    odd.execute(f"INSERT INTO public.t115_num VALUES {values}", [2])
    odd.execute("INSERT INTO public.t115_num VALUES (3, 'Infinity', '4.9e-324', '-0', '-0.01', 'P-1Y-2M',"
                " 'infinity', '-infinity', NULL)")
    odd.execute("SET IntervalStyle = 'sql_standard'; SET TimeZone = 'Pacific/Chatham'")
    odd.execute("UPDATE public.t115_num SET f = '2.2250738585072014e-308', n = '-Infinity' WHERE id = 3")
    imgs = {r[0]: r[1] for r in db.execute(
        "SELECT (row_after ->> 'id')::int, row_after - 'id' FROM audit.events WHERE kind = 'public.t115_num.insert'")}
    assert imgs[1] == imgs[2], (imgs[1], imgs[2])  # the writer's session settings change no image
    pinned = connect()
    pinned.execute("SET extra_float_digits = 1; SET IntervalStyle = postgres; SET lc_monetary = 'C'; SET TimeZone = 'UTC';"
                   " SET DateStyle = 'ISO'")
    truth = pinned.execute("SELECT to_jsonb(t) - 'id' FROM public.t115_num t WHERE id = 1").fetchone()[0]
    assert imgs[1] == truth, (imgs[1], truth)
    upd = db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.t115_num.update'").fetchone()[0]
    held = pinned.execute("SELECT to_jsonb(t) FROM public.t115_num t WHERE id = 3").fetchone()[0]
    assert upd == held, (upd, held)  # what the table holds, as the pinned settings print it
    assert upd["f"] == 2.2250738585072014e-308 and upd["iv"] == "-1 years -2 mons", upd
    sealed_both_ok(db)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t115_num.insert' AND row_after ->> 'id' = '1'"
                     ).fetchone()[0]
    three_way(db, tmp_path, verifier_file, seq, "row_after", "jsonb_set(row_after, '{m}', '\"$1,234.57\"')",
              b'"$1,234.56"', b'"$1,234.57"')


# ===================================== D: size and depth =====================================

def test_d1_payload_at_64_kib_one_byte_under_at_and_over(clean, connect, counts):
    db = clean
    de_session(db)
    writer = connect("app_writer")
    for n, ok in ((65536 - 9 - 1, True), (65536 - 9, True), (65536 - 9 + 1, False)):
        text = '{"k": "' + "x" * n + '"}'
        assert len(text.encode()) == n + 9
        try:
            writer.execute("SELECT audit.record(kind => 't115.d1', payload => %s::jsonb)", [text])
            got = None
        except psycopg.Error as e:
            got = e.sqlstate
        assert (got is None) == ok and (ok or got == "PA002"), (n, got)
    # multi-byte: 3-byte characters right at the bound (65536 bytes in UTF-8)
    text = '{"k": "' + "\uffff" * ((65536 - 9) // 3) + "x" * ((65536 - 9) % 3) + '"}'
    assert len(text.encode()) == 65536
    writer.execute("SELECT audit.record(kind => 't115.d1', payload => %s::jsonb)", [text])
    with pytest.raises(psycopg.Error) as over:
        writer.execute("SELECT audit.record(kind => 't115.d1', payload => %s::jsonb)", [text[:-2] + 'x"}'])
    assert over.value.sqlstate == "PA002"
    assert counts()[0] == 3
    assert seal_all(db) is None
    both_ok(db)


def _line_overhead(db, intake_id: int, seq: int) -> int:
    cols = ", ".join(f"i.{n}::text AS {n}" if n in ("client_addr", "txid", *canonical.JSON_FIELDS) else f"i.{n}"
                     for n in canonical.EVENT_FIELDS if n != "seq")
    with db.cursor(row_factory=dict_row) as cur:
        row = cur.execute(f"SELECT {cols} FROM audit.event_intake i WHERE intake_id = %s", [intake_id]).fetchone()
    row["seq"] = seq
    return len(canonical.event_line(row, 2).encode())


@pytest.mark.parametrize("delta", [0, 1])
def test_d2_sealed_line_at_16_mib_and_one_byte_over(clean, connect, tmp_path, verifier_file, delta):
    """The sealer seals a line of exactly 16 MiB and quarantines one of 16 MiB + 1; either way both verifiers,
    the offline kit and a listing agree."""
    db = clean
    de_session(db)
    connect("app_writer").execute("SELECT audit.record(kind => 't115.d2.before')")
    assert seal_all(db) is None
    last = db.execute("SELECT last_seq FROM audit.seal_state").fetchone()[0]
    iid = db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                        VALUES ('user', 'x', 't115.d2', 'success', pg_current_xact_id(), now(), '{"k": ""}')
                        RETURNING intake_id""").fetchone()[0]
    overhead = _line_overhead(db, iid, last + 1)
    n = 16777216 - overhead + delta
    tamper(db, f"UPDATE audit.event_intake SET payload = jsonb_build_object('k', repeat('x', {n})) WHERE intake_id = {iid}")
    assert _line_overhead(db, iid, last + 1) == 16777216 + delta
    connect("app_writer").execute("SELECT audit.record(kind => 't115.d2.after')")
    assert seal_all(db) is None
    held = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't115.d2'").fetchone()[0]
    quarantined = db.execute("SELECT count(*) FROM audit.quarantine WHERE kind = 't115.d2'").fetchone()[0]
    assert (held, quarantined) == ((1, 0) if delta == 0 else (0, 1))
    if delta == 0:
        line_len = db.execute("SELECT octet_length(audit._canonical_event(l, b.canonical_version)) FROM audit.event_log l"
                              " JOIN audit.blocks b USING (block_no) WHERE kind = 't115.d2'").fetchone()[0]
        assert line_len == 16777216
    both_ok(db)
    reader = connect("app_reader")
    assert len(reader.execute("SELECT seq FROM audit.list_events(kind_prefix => 't115.d2')").fetchall()) >= 2
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader"
    for extra in (["--json"], []):
        listed = CliRunner().invoke(cli, ["events", "--dsn", dsn, "--kind-prefix", "t115.d2", *extra])
        assert listed.exit_code == 0, (listed.output[-300:], repr(listed.exception))
        assert delta == 1 or len(listed.output) > 16_000_000
    def queried(directory: Path) -> None:
        # auditors.md: the batches "DuckDB reads as they are"; `pgaudit archive query` over them
        code, out = archive_query(directory, "SELECT count(*) AS n, max(length(line)) AS longest FROM events")
        assert code == 0, out

    if delta == 0:
        seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't115.d2'").fetchone()[0]
        three_way(db, tmp_path, verifier_file, seq, "payload",
                  "jsonb_build_object('k', overlay(payload ->> 'k' placing 'y' from 8000000 for 1))",
                  b'{"k": "xxxx', b'{"k": "yxxx', after_archive=queried)
    else:
        queried(archive_all(db, tmp_path, verifier_file)[0])


def test_d3_deep_and_wide_payloads_many_in_one_transaction_list_and_archive(clean, connect, tmp_path, verifier_file):
    db = clean
    de_session(db)
    wide = ", ".join(f'"k{i}\u2028": [{i}, "\ufffe"]' for i in range(1500))
    deep = "[" * 9000 + "{" + wide + "}" + "]" * 9000
    text = '{"d": ' + deep + "}"
    assert len(text.encode()) < 65536
    writer = connect("app_writer", autocommit=False)
    for i in range(60):
        writer.execute("SELECT audit.record(kind => 't115.d3', target_id => %s, payload => %s::jsonb)", [str(i), text])
    writer.commit()
    # deeper than jsonb holds is refused with nothing written
    too_deep = '{"d": ' + "[" * 200000 + "]" * 200000 + "}"
    w2 = connect("app_writer")
    with pytest.raises(psycopg.Error) as refused:
        w2.execute("SELECT audit.record(kind => 't115.d3.too', payload => %s::jsonb)", [too_deep])
    assert refused.value.sqlstate and refused.value.sqlstate[:2] in ("54", "22") or refused.value.sqlstate == "PA002"
    reader = connect("app_reader")
    pending = reader.execute("SELECT count(*) FROM audit.list_events(kind_prefix => 't115.d3', page_size => 100)").fetchone()
    assert pending == (60,)
    sealed_both_ok(db)
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't115.d3.too'").fetchone() == (0,)
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader"
    listed = CliRunner().invoke(cli, ["events", "--dsn", dsn, "--kind-prefix", "t115.d3", "--page-size", "100", "--json"])
    assert listed.exit_code == 0 and "Traceback" not in listed.output, listed.output[-800:]
    table = CliRunner().invoke(cli, ["events", "--dsn", dsn, "--kind-prefix", "t115.d3"])
    assert table.exit_code == 0, (table.output[-800:], repr(table.exception))
    verify_cli = CliRunner().invoke(cli, ["verify", "--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"])
    assert verify_cli.exit_code == 0, verify_cli.output[-800:]
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't115.d3' AND target_id = '37'").fetchone()[0]
    three_way(db, tmp_path, verifier_file, seq, "payload",
              "replace(payload::text, '\"k1499' || chr(8232) || '\"', '\"k1498' || chr(8232) || '\"')::jsonb",
              b'"k1499\xe2\x80\xa8"', b'"k1498\xe2\x80\xa8"',
              after_archive=lambda d: _query_ok(d, "SELECT count(*) AS n, max(json_array_length(payload -> 'd')) FROM events"))


def test_d4_captured_deep_and_wide_jsonb_rows_in_one_statement(clean, connect, tmp_path, verifier_file):
    db = clean
    de_session(db)
    db.execute("CREATE TABLE public.t115_deep (id int PRIMARY KEY, d jsonb, j json, w jsonb);"
               " GRANT ALL ON public.t115_deep TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t115_deep')")
    writer = connect("app_writer")
    deep = "[" * 9500 + '"\ufffe"' + "]" * 9500
    wide = "{" + ", ".join(f'"k{i}": "{"v" * 300}"' for i in range(4000)) + "}"  # ~1.3 MB: over the 1 MiB image
    writer.execute("INSERT INTO public.t115_deep SELECT g, %s::jsonb, %s::json, %s::jsonb FROM generate_series(1, 8) g",
                   [deep, deep, wide])
    writer.execute("UPDATE public.t115_deep SET w = w || '{\"x\": 1}' WHERE id <= 4")
    reader = connect("app_reader")
    assert len(reader.execute("SELECT seq, row_after::text FROM audit.list_events(kind_prefix => 'public.t115_deep')"
                              ).fetchall()) == 12
    assert len(list_events(reader, kind_prefix="public.t115_deep")) == 12  # the package's reader: deep values read
    sealed_both_ok(db)
    assert len(list_events(reader, kind_prefix="public.t115_deep")) == 12
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 'public.t115_deep.%'").fetchone() == (12,)
    seq = db.execute("SELECT max(seq) FROM audit.event_log WHERE kind = 'public.t115_deep.insert'").fetchone()[0]
    three_way(db, tmp_path, verifier_file, seq, "row_after", "jsonb_set(row_after, '{id}', '99')",
              b'"id": 8', b'"id": 9',
              after_archive=lambda d: _query_ok(d, "SELECT seq, kind, row_after ->> 'id' AS id FROM events ORDER BY seq"))


# ===================================== more: encodings, decimals, index bounds =====================================

def test_u5_verifiers_in_a_latin1_or_sql_ascii_client_encoding_agree(clean, connect, monkeypatch):
    db = clean
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 't115.u5', target_id => %s, tenant_id => %s, payload => %s::jsonb)",
                   [ODD, "\U0001f600" * 10, '{"' + NFD + '": "' + "\U0010ffff\ufffe\u2028" + '"}'])
    assert seal_all(db) is None
    both_ok(db)
    for enc in ("LATIN1", "SQL_ASCII", "WIN1252", "EUC_JP"):
        conn = connect(client_encoding=enc)
        sql_v = conn.execute("SELECT ok FROM audit.verify()").fetchone()[0]
        try:
            py = verify_chain(conn)
            py_v = (py.ok, py.problem)
        except Exception as e:  # noqa: BLE001
            py_v = ("raised", f"{type(e).__name__}: {e}"[:200])
        assert (sql_v, py_v) == (True, (True, None)), enc
        i = db.info
        monkeypatch.setenv("PGCLIENTENCODING", enc)
        out = CliRunner().invoke(cli, ["verify", "--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"])
        monkeypatch.delenv("PGCLIENTENCODING")
        assert out.exit_code == 0, (enc, out.output[-500:], repr(out.exception))


@pytest.mark.parametrize("count,decimals,accepted", [
    (100, 401, True),    # "among more than 100 numbers": 100 is not more than 100
    (101, 400, True),    # "more than 400 decimals": 400 is not more
    (101, 401, False),
])
def test_n4_many_numbers_with_many_decimals_at_the_bound(clean, connect, counts, count, decimals, accepted):
    db = clean
    de_session(db)
    long = "1." + "0" * (decimals - 1) + "1"
    nums = ["1"] * (count - 1) + [long]
    text = '{"a": [' + ", ".join(f"[{n}]" for n in nums) + "]}"
    try:
        connect("app_writer").execute("SELECT audit.record(kind => 't115.n4', payload => %s::jsonb)", [text])
        got = None
    except psycopg.Error as e:
        got = e.sqlstate
    assert (got is None) == accepted and (accepted or got == "PA002"), got
    if accepted:
        assert seal_all(db) is None
        both_ok(db)
    else:
        assert counts() == (0, 0)


def _wide_chars(n: int, seed: int) -> str:
    import random
    rnd = random.Random(seed)
    return "".join(chr(rnd.randrange(0x10000, 0x10FFFE)) for _ in range(n))


def test_d5_every_field_at_its_character_bound_in_four_byte_characters_seals(clean, connect, tmp_path, verifier_file):
    """Lengths are in characters; in 4-byte characters the log's indexes must still hold them, so that nothing
    the writer's statement took is unsealable ("What the log's indexes cannot hold is refused in the writer's
    statement")."""
    db = clean
    de_session(db)
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => %s, tenant_id => %s, actor_type => %s, actor_id => %s,"
                   " target_type => %s, target_id => %s, correlation_id => %s, idempotency_key => %s,"
                   " payload => jsonb_build_object('moved_from', %s::text, 'x', %s::text))",
                   ["t115.d5." + "a" * 119, _wide_chars(256, 1), _wide_chars(64, 2), _wide_chars(256, 3),
                    _wide_chars(128, 4), _wide_chars(512, 5), _wide_chars(256, 6), _wide_chars(256, 7),
                    _wide_chars(512, 8), _wide_chars(3000, 9)])
    for field, n in (("tenant_id", 257), ("target_id", 513), ("actor_id", 257), ("target_type", 129)):
        with pytest.raises(psycopg.Error):
            writer.execute(f"SELECT audit.record(kind => 't115.d5', {field} => %s)", [_wide_chars(n, 10)])
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (1,)
    sealed_both_ok(db)
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE starts_with(kind, 't115.d5')").fetchone() == (1,)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE starts_with(kind, 't115.d5')").fetchone()[0]
    three_way(db, tmp_path, verifier_file, seq, "idempotency_key", "overlay(idempotency_key placing 'z' from 100 for 1)",
              b'"t115.d5.aaa', b'"t115.d5.aab', cast="text")


def test_d6_captured_key_and_tenant_at_their_bound_in_four_byte_characters(clean, connect):
    db = clean
    db.execute("CREATE TABLE public.t115_keys (k text PRIMARY KEY, t text, v int); GRANT ALL ON public.t115_keys TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t115_keys', tenant_column => 't')")
    writer = connect("app_writer")
    k1, k2, t = _wide_chars(512, 11), _wide_chars(512, 12), _wide_chars(256, 13)
    writer.execute("INSERT INTO public.t115_keys VALUES (%s, %s, 1)", [k1, t])
    writer.execute("UPDATE public.t115_keys SET k = %s WHERE k = %s", [k2, k1])  # moved_from: 512 4-byte chars
    writer.execute("DELETE FROM public.t115_keys")
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone()[0] >= 3
    sealed_both_ok(db)
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 'public.t115_keys.%'").fetchone() == (3,)


@pytest.mark.parametrize("payload", [
    {None: 1, "null": 2},
    {1.0: 1, "1.0": 2},
    {False: 1, "false": 2},
    {1: 1, "1": 2},
    {"a": {2: "x", "2": "y"}},
    {"n": Decimal("NaN")},
    {"n": Decimal("sNaN")},
    {"n": Decimal("-Infinity")},
    {"n": [float("inf")]},
    {"s": "\ud800"},
    {"\udc00": 1},
    {"n": Decimal("1E+400")},
    {"n": Decimal("-1E-401")},
], ids=lambda p: ascii(p)[:40])
def test_u6_python_record_refuses_what_json_writes_alike_or_cannot_hold_with_nothing_written(clean, connect, counts,
                                                                                             payload):
    from pgaudit_py.errors import InvalidInput
    with pytest.raises(InvalidInput):
        record(connect("app_writer"), "t115.u6", payload=payload)
    with pytest.raises(InvalidInput):
        record(connect("app_writer"), "t115.u6", payload=payload, best_effort=True)
    assert counts() == (0, 0)


def _nest(depth: int, leaf):
    v = leaf
    for _ in range(depth):
        v = [v]
    return v


def _nest_obj(depth: int, leaf):
    v = leaf
    for _ in range(depth):
        v = {"\u2028": v}
    return v


def test_d7_python_record_of_payloads_as_deep_as_jsonb_holds(clean, connect, counts):
    db = clean
    de_session(db)
    writer = connect("app_writer")
    record(writer, "t115.d7", payload={"d": _nest(9000, Decimal("1.50")), "o": _nest_obj(3000, "\ufffe")})
    from pgaudit_py.errors import InvalidInput
    with pytest.raises(InvalidInput):
        record(writer, "t115.d7", payload={"d": _nest(300000, 1)})
    assert counts() == (1, 0)
    got = db.execute("SELECT payload::text FROM audit.events WHERE kind = 't115.d7'").fetchone()[0]
    assert got.count("[") == 9000 and "1.50" in got
    sealed_both_ok(db)
    rows = list_events(connect("app_reader"), kind_prefix="t115.d7")
    assert len(rows) == 1


@pytest.mark.parametrize("depth", [9999, 10001, 12000, 20000, 60000])
def test_d8_captured_jsonb_and_json_at_and_past_the_walk_depth_seal_or_are_refused(clean, connect, depth, tmp_path,
                                                                                   verifier_file):
    """capture.md: images nested too deep to walk (about 10,000 levels) are sealed at a second attempt; deeper
    than jsonb holds is refused in the write. Either way nothing is quarantined and both verifiers agree."""
    db = clean
    de_session(db)
    db.execute("CREATE TABLE public.t115_dd (id int PRIMARY KEY, d jsonb, j json); GRANT ALL ON public.t115_dd TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t115_dd')")
    writer = connect("app_writer")
    deep = "[" * depth + "1e-300" + "]" * depth
    written = True
    try:
        writer.execute("INSERT INTO public.t115_dd VALUES (1, %s::jsonb, %s::json)", [deep, deep])
    except psycopg.Error as e:
        written = False
        assert e.sqlstate[:2] in ("54", "22"), e.sqlstate
        assert db.execute("SELECT count(*) FROM public.t115_dd").fetchone() == (0,)
    if written:
        writer.execute("UPDATE public.t115_dd SET d = jsonb_build_array(d) WHERE id = 1")
    held = db.execute("SELECT count(*) FROM public.t115_dd").fetchone()[0]
    events = db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.t115_dd.%'").fetchone()[0]
    assert events == (2 if written else 0) and held == (1 if written else 0)
    reader = connect("app_reader")
    assert len(reader.execute("SELECT seq FROM audit.list_events(kind_prefix => 'public.t115_dd')").fetchall()) == events
    sealed_both_ok(db)
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 'public.t115_dd.%'").fetchone() == (events,)
    depth_held = db.execute("SELECT max(length(row_after::text)) FROM audit.event_log WHERE kind LIKE 'public.t115_dd.%'"
                            ).fetchone()[0]
    assert depth_held is None or depth_held > 0
    if events:
        directory, _ = archive_all(db, tmp_path, verifier_file)
        _query_ok(directory, "SELECT seq, kind, length(line) FROM events")


def _query_ok(directory: Path, sql: str) -> None:
    code, out = archive_query(directory, sql)
    assert code == 0, out


def test_u7_odd_role_name_application_name_and_context_settings(clean, connect, tmp_path, verifier_file):
    """db_role, application_name and the context (set_config of pgaudit_py.*) are the writer's text too."""
    db = clean
    de_session(db)
    role = "t115_r\u00f4le \u202e\u2028\"q\ufffe" + "\U0001f600" * 8  # 63 bytes at most: truncation on a char edge
    quoted = '"' + role.replace('"', '""') + '"'
    db.execute(f"CREATE ROLE {quoted} LOGIN")
    db.execute(f"GRANT audit_writer TO {quoted}")
    stored_role = db.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, 't115_r')").fetchone()[0]
    db.execute("CREATE TABLE public.t115_ctx (id int PRIMARY KEY, s text); GRANT ALL ON public.t115_ctx TO PUBLIC")
    db.execute("SELECT audit.enable_tracking('public.t115_ctx')")
    conn = connect(stored_role, application_name="app \u2028\u00e9\U0001f600\ufffe" + "x" * 80)
    conn.execute("SELECT set_config('pgaudit_py.actor_id', %s, false), set_config('pgaudit_py.tenant_id', %s, false),"
                 " set_config('pgaudit_py.correlation_id', %s, false), set_config('pgaudit_py.actor_type', %s, false),"
                 " set_config('pgaudit_py.client_addr', '::ffff:10.0.0.1', false)",
                 [ODD[:60], NFD + "\ufffe", "\u202e" * 40, "\u00e9\u2028"])
    conn.execute("SELECT audit.record(kind => 't115.u7', payload => '{}')")
    conn.execute("INSERT INTO public.t115_ctx VALUES (1, %s)", [ODD])
    rows = db.execute("SELECT db_role, application_name, actor_id, tenant_id FROM audit.events"
                      " WHERE kind IN ('t115.u7', 'public.t115_ctx.insert') ORDER BY intake_id").fetchall()
    assert len(rows) == 2 and all(r[0] == stored_role for r in rows), rows
    assert all(r[3] == NFD + "\ufffe" for r in rows)
    sealed_both_ok(db)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't115.u7'").fetchone()[0]
    three_way(db, tmp_path, verifier_file, seq, "db_role", "replace(db_role, chr(65534), chr(65535))",
              "\ufffe".encode(), "\uffff".encode(), cast="text",
              after_archive=lambda d: _query_ok(d, "SELECT db_role, application_name, client_addr FROM events"))
    db.execute("DROP TABLE public.t115_ctx")
    db.execute(f"DROP OWNED BY {quoted}")
    db.execute(f"DROP ROLE {quoted}")


def test_u8_idempotency_retry_differing_only_by_normalization_is_not_the_same_content(clean, connect):
    db = clean
    writer = connect("app_writer")
    first = writer.execute("SELECT id FROM audit.record(kind => 't115.u8', idempotency_key => %s, target_id => %s,"
                           " payload => %s::jsonb)", [NFC, NFC, '{"a": "' + NFC + '"}']).fetchone()[0]
    # the same key, content that differs by normalization only: PA004, never the first event back
    for target, payload in ((NFD, '{"a": "' + NFC + '"}'), (NFC, '{"a": "' + NFD + '"}'), (NFC, '{"' + NFD + '": "x"}')):
        try:
            again = writer.execute("SELECT id FROM audit.record(kind => 't115.u8', idempotency_key => %s, target_id => %s,"
                                   " payload => %s::jsonb)", [NFC, target, payload]).fetchone()[0]
            got = ("returned", again == first)
        except psycopg.Error as e:
            got = ("refused", e.sqlstate)
        assert got == ("refused", "PA004"), (target, payload, got)
    # a key that differs by normalization only is another key
    other = writer.execute("SELECT id FROM audit.record(kind => 't115.u8', idempotency_key => %s, target_id => %s,"
                           " payload => %s::jsonb)", [NFD, NFC, '{"a": "' + NFC + '"}']).fetchone()[0]
    assert other != first
    assert seal_all(db) is None
    both_ok(db)
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't115.u8'").fetchone() == (2,)


def test_d9_captured_image_at_1_mib_and_one_byte_over(clean, connect, tmp_path, verifier_file):
    """capture.md: an image over 1 MiB keeps every column, its largest values replaced by markers; one at 1 MiB
    is kept whole. Both seal, verify, archive."""
    db = clean
    de_session(db)
    db.execute("CREATE TABLE public.t115_mib (id int PRIMARY KEY, s text, t text); GRANT ALL ON public.t115_mib TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t115_mib')")
    import os
    body = os.urandom(600_000).hex()

    def size(n: int) -> int:
        return db.execute("SELECT pg_column_size(to_jsonb(r)) FROM (SELECT 1 AS id, %s::text AS s, 'x'::text AS t) r",
                          [body[:n]]).fetchone()[0]

    n = 1048576 - (size(1000) - 1000)
    while size(n) > 1048576:
        n -= 1
    while size(n + 1) <= 1048576:
        n += 1
    assert size(n) == 1048576 and size(n + 1) > 1048576, (size(n), size(n + 1))  # jsonb pads: +4
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.t115_mib VALUES (1, %s, 'x'), (2, %s, 'x')", [body[:n], body[:n + 1]])
    imgs = {r[0]: (r[1], r[2]) for r in db.execute(
        "SELECT (row_after ->> 'id')::int, row_after -> 's' = to_jsonb(%s::text), payload FROM audit.events"
        " WHERE kind = 'public.t115_mib.insert'", [body[:n]])}
    assert imgs[1] == (True, {}), imgs[1]
    marker = db.execute("SELECT row_after -> 's' FROM audit.events WHERE kind = 'public.t115_mib.insert'"
                        " AND row_after ->> 'id' = '2'").fetchone()[0]
    assert set(marker) == {"$omitted"} and imgs[2][1] == {"omitted": {"row_after": ["s"]}}, (marker, imgs[2])
    sealed_both_ok(db)
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t115_mib.insert' AND row_after ->> 'id' = '1'"
                     ).fetchone()[0]
    three_way(db, tmp_path, verifier_file, seq, "row_after", "jsonb_set(row_after, '{t}', '\"y\"')",
              b'"t": "x"', b'"t": "y"')


def test_u9_hstore_column_with_odd_keys(clean, connect, tmp_path, verifier_file):
    db = clean
    de_session(db)
    db.execute("CREATE EXTENSION IF NOT EXISTS hstore")
    try:
        db.execute("CREATE TABLE public.t115_hs (id int PRIMARY KEY, h hstore); GRANT ALL ON public.t115_hs TO app_writer")
        db.execute("SELECT audit.enable_tracking('public.t115_hs')")
        writer = connect("app_writer")
        h = {NFC: NFD, NFD: NFC, "\ufffe": "\u2028", ODD.strip(): None, "\"=>\\": "x"}
        writer.execute("INSERT INTO public.t115_hs VALUES (1, %s::text::hstore)",
                       [", ".join('"' + k.replace("\\", "\\\\").replace('"', '\\"') + '"=>'
                                  + ("NULL" if v is None else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
                                  for k, v in h.items())])
        writer.execute("UPDATE public.t115_hs SET h = h || hstore(%s, %s)", [NFD + "\u202e", "\U0010ffff"])
        image = db.execute("SELECT (row_after -> 'h')::text FROM audit.events WHERE kind = 'public.t115_hs.update'"
                           ).fetchone()[0]
        held = db.execute("SELECT to_jsonb(h)::text FROM public.t115_hs").fetchone()[0]
        assert image == held
        sealed_both_ok(db)
        seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t115_hs.update'").fetchone()[0]
        three_way(db, tmp_path, verifier_file, seq, "row_after",
                  "replace(row_after::text, chr(8238), chr(8237))::jsonb",
                  "\u202e".encode(), "\u202d".encode())
    finally:
        db.execute("DROP TABLE IF EXISTS public.t115_hs")
        db.execute("DROP EXTENSION IF EXISTS hstore")


TERMINAL_TRAPS = ["\u2028", "\u2029", "\u202e", "\u200f", "\ufeff", "\u0085", "\u00a0", "\u3164", "\u200b", "\u034f",
                  "\ufe0f", "\U000e0041", "\u2800", "\x1b", "\r", "\x7f"]


def test_u10_cli_events_table_escapes_every_trap_and_tells_nfc_from_nfd(clean, connect):
    """cli.md: "In text output ... every value is printed through one escaping: a control or format character,
    a separator other than the space, a character a terminal draws as nothing or as blank ... as an escape ...
    in a text that is not in NFC, its combining marks ... too". No raw trap reaches the terminal."""
    import unicodedata
    db = clean
    writer = connect("app_writer")
    targets = [NFC, NFD, "\\u2028", *(f"t{c}x" for c in TERMINAL_TRAPS)]
    for t in targets:
        writer.execute("SELECT audit.record(kind => 't115.u10', target_type => 'doc', target_id => %s, actor_id => %s,"
                       " payload => jsonb_build_object(%s::text, %s::text))", [t, t, t, t])
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader"
    for sealed in (False, True):
        out = CliRunner().invoke(cli, ["events", "--dsn", dsn, "--kind-prefix", "t115.u10", "--page-size", "100"])
        assert out.exit_code == 0, (out.output[-500:], repr(out.exception))
        text = out.output
        raw = sorted({f"U+{ord(c):04X}" for c in text if c != "\n" and (
            unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Mn", "Mc", "Me") or
            (unicodedata.category(c) == "Zs" and c != " ") or c in TERMINAL_TRAPS)})
        assert raw == [], raw
        assert "caf\u00e9" in text and "cafe\\u0301" in text, "NFC and NFD must print apart"
        assert "\\\\u2028" in text  # a literal backslash-u text is not the escape of U+2028
        if not sealed:
            assert seal_all(db) is None
            both_ok(db)


def test_u11_archive_query_text_output_escapes_every_trap(clean, connect, tmp_path, verifier_file):
    import unicodedata
    db = clean
    writer = connect("app_writer")
    for t in [NFC, NFD, *(f"t{c}x" for c in TERMINAL_TRAPS)]:
        writer.execute("SELECT audit.record(kind => 't115.u11', target_id => %s, payload => jsonb_build_object(%s::text, %s::text))",
                       [t, t, t])
    sealed_both_ok(db)
    directory, _ = archive_all(db, tmp_path, verifier_file)
    done = CliRunner().invoke(cli, ["archive", "query", "SELECT target_id, payload, line FROM events ORDER BY seq",
                                    "--target", f"file://{directory}"])
    assert done.exit_code == 0, (done.output[-500:], repr(done.exception))
    text = done.output
    raw = sorted({f"U+{ord(c):04X}" for c in text if c != "\n" and (
        unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp", "Mn", "Mc", "Me") or
        (unicodedata.category(c) == "Zs" and c != " ") or c in TERMINAL_TRAPS)})
    assert raw == [], raw
    assert "caf\u00e9" in text and "cafe\\u0301" in text


@pytest.mark.parametrize("kind", ["t115.caf\u00e9", "t115.cafe\u0301", "\uff54115.full", "t115.x\u2028", "t115.\u0130",
                                  "t115.\ufffe", "t115." + "a" * 123, "t115." + "a" * 124, "t115.\u0661", "t115.x\u200b"])
def test_u12_odd_kinds_python_and_sql_agree_and_what_is_taken_verifies(clean, connect, counts, kind):
    from pgaudit_py.errors import InvalidInput
    db = clean
    writer = connect("app_writer")
    try:
        writer.execute("SELECT audit.record(kind => %s)", [kind])
        sql_took = True
    except psycopg.Error as e:
        sql_took = False
        assert e.sqlstate == "PA001", e.sqlstate
    try:
        record(writer, kind)
        py_took = True
    except InvalidInput:
        py_took = False
    assert sql_took == py_took, (sql_took, py_took)
    assert counts() == ((2, 0) if sql_took else (0, 0))
    if sql_took:
        assert seal_all(db) is None
        both_ok(db)


class _E(int):
    pass


@pytest.mark.parametrize("payload", [
    {1e16: 1, "1e+16": 2},
    {float("inf"): 1, "Infinity": 2},
    {-0.0: 1, "-0.0": 2},
    {_E(7): 1, "7": 2},
    {None: 1, "null": 2, "x": {True: 1, "true": 2}},
], ids=lambda p: ascii(list(p))[:40])
def test_u13_python_record_keys_json_writes_alike_are_refused(clean, connect, counts, payload):
    from pgaudit_py.errors import InvalidInput
    with pytest.raises(InvalidInput):
        record(connect("app_writer"), "t115.u13", payload=payload)
    assert counts() == (0, 0)


ODD_SESSION = ("SET TimeZone = 'Asia/Kathmandu'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'iso_8601';"
               " SET extra_float_digits = -15; SET lc_monetary = '{lc}'; SET lc_numeric = '{lc}'; SET lc_time = '{lc}';"
               " SET bytea_output = 'escape'; SET xmloption = 'document'; SET standard_conforming_strings = off;"
               " SET quote_all_identifiers = on")


def test_n5_sealer_and_verifier_sessions_with_odd_locale_settings_agree(clean, connect, tmp_path, verifier_file):
    db = clean
    lc = "de_DE.UTF-8" if messages_locale_available() else "C"
    db.execute("CREATE TABLE public.t115_lc (id int PRIMARY KEY, f float8, n numeric, m money, iv interval, b bytea,"
               " ts timestamptz); GRANT ALL ON public.t115_lc TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t115_lc')")
    writer = connect("app_writer")
    writer.execute(ODD_SESSION.format(lc=lc))
    writer.execute("INSERT INTO public.t115_lc VALUES (1, 0.1, 1234.5, 1234.5::numeric::money, '1 day 2 hours', %s,"
                   " '2026-03-29 02:30+01')", [b"\x00\xff"])
    writer.execute("SELECT audit.record(kind => 't115.n5', payload => '{\"f\": 0.1, \"n\": 1234.50, \"z\": -0}')")
    sealer = connect("app_maintainer")
    sealer.execute(ODD_SESSION.format(lc=lc))
    if messages_locale_available():
        db.execute("SET lc_messages = 'de_DE.UTF-8'")
    while sealer.execute("SELECT (audit.seal()).sealed").fetchone()[0]:  # SQL's sealer, in the odd session
        pass
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)
    assert verified(sealer) == (True, None)  # SQL's verifier in the odd session
    # Python's in a session with the odd locale but the DateStyle/IntervalStyle it requires (python.md)
    sealer.execute("SET DateStyle = 'ISO, DMY'; SET IntervalStyle = 'postgres'")
    py = verify_chain(sealer)
    assert (py.ok, py.problem) == (True, None)
    sealed_both_ok(db)
    img = db.execute("SELECT row_after FROM audit.event_log WHERE kind = 'public.t115_lc.insert'").fetchone()[0]
    pinned = connect()
    pinned.execute("SET extra_float_digits = 1; SET IntervalStyle = postgres; SET lc_monetary = 'C'; SET TimeZone = 'UTC';"
                   " SET DateStyle = 'ISO'; SET bytea_output = hex")
    truth = pinned.execute("SELECT to_jsonb(t) FROM public.t115_lc t").fetchone()[0]
    assert img == truth, (img, truth)
    assert img["iv"] == "1 day 02:00:00" and img["b"] == "\\x00ff" and img["f"] == 0.1, img
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 't115.n5'").fetchone()[0]
    three_way(db, tmp_path, verifier_file, seq, "payload", "jsonb_set(payload, '{n}', '1234.5')",
              b'"n": 1234.50', b'"n": 1234.51')


def test_n6_cli_events_json_prints_every_number_as_stored(clean, connect):
    """cli.md: "--json on the listing commands prints JSON for scripts, each number in a payload or row image as
    stored (no float's rounding, no Infinity)". Stored numbers never have an exponent (canonical-form.md:
    "numeric text: digits, an optional - and ., never an exponent")."""
    db = clean
    text = ('{"big": 1e399, "tiny": -1e-399, "p": 0.1000000000000000055511151231257827, "w": ' + "9" * 399
            + ', "s": 1.500, "z": -0.0, "e": 1E+2, "rate": 0.0000001, "r2": 1.20E-8}')
    connect("app_writer").execute("SELECT audit.record(kind => 't115.n6', payload => %s::jsonb)", [text])
    stored = db.execute("SELECT payload::text FROM audit.events WHERE kind = 't115.n6'").fetchone()[0]
    i = db.info
    dsn = f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader"
    for sealed in (False, True):
        out = CliRunner().invoke(cli, ["events", "--dsn", dsn, "--kind-prefix", "t115.n6", "--json"])
        assert out.exit_code == 0, (out.output[-400:], repr(out.exception))
        assert "Infinity" not in out.output
        missing = []
        for name, num in (("big", "1" + "0" * 399), ("tiny", "-0." + "0" * 398 + "1"),
                          ("p", "0.1000000000000000055511151231257827"), ("w", "9" * 399), ("s", "1.500"), ("e", "100"),
                          ("rate", "0.0000001"), ("r2", "0.0000000120")):
            assert f'"{name}": {num}' in stored, name
            if f'"{name}": {num}' not in out.output:
                printed = out.output.split(f'"{name}": ', 1)[1].split("\n", 1)[0][:40]
                missing.append(f"{name}: stored {num[:24]}{'...' if len(num) > 24 else ''}, printed {printed}")
        assert missing == [], missing
        if not sealed:
            assert seal_all(db) is None
            both_ok(db)


def test_d10_http_listing_of_deep_wide_odd_events_carries_each_payload_as_stored(clean, start_api, make_token):
    db = clean
    wide = ", ".join(f'"k{i}\u2028": [{i}, "\ufffe", 0.0000001]' for i in range(800))
    payloads = ['{"d": ' + "[" * 9000 + "{" + wide + "}" + "]" * 9000 + "}",
                '{"' + NFC + '": 1, "' + NFD + '": 2, "o": "' + "\U0010ffff\u202e\u2028\ufeff" + '", "t": -1e-399}']
    for i, p in enumerate(payloads * 3):
        db.execute("SELECT audit.record(kind => 't115.d10', target_id => %s, payload => %s::jsonb)", [str(i), p])
    stored = [r[0] for r in db.execute("SELECT payload::text FROM audit.events WHERE kind = 't115.d10' ORDER BY intake_id")]
    api = start_api()
    for sealed in (False, True):
        with api.client(make_token()) as client:
            resp = client.get("/v1/audit", params={"kind_prefix": "t115.d10", "limit": 100})
        assert resp.status_code == 200, resp.text[:300]
        body = resp.text
        assert all(text in body for text in stored), [text[:30] for text in stored if text not in body]
        if not sealed:
            assert seal_all(db) is None
            both_ok(db)


@pytest.mark.parametrize("n", [1_040_000, 4_000_000])
def test_d11_captured_update_of_text_that_prints_six_times_its_size_is_sealed_not_quarantined(
        clean, connect, tmp_path, verifier_file, n):
    """A control character is stored in one byte and printed as \\u00XX (six). An UPDATE between two such 1 MiB
    values: row_before, row_after and changed (old and new) print to about 25 MB. security.md: a line over 16 MiB
    is something "only a payload or an event written outside the capture can still reach"; the sealer's second
    attempt bounds what images print to."""
    db = clean
    de_session(db)
    db.execute("CREATE TABLE public.t115_ctl (id int PRIMARY KEY, s text); GRANT ALL ON public.t115_ctl TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t115_ctl')")
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.t115_ctl VALUES (1, repeat(chr(1), %s))", [n])
    writer.execute("UPDATE public.t115_ctl SET s = repeat(chr(2), %s) WHERE id = 1", [n])
    sizes = db.execute("SELECT kind, pg_column_size(row_before), pg_column_size(row_after), pg_column_size(changed)"
                       " FROM audit.events WHERE kind LIKE 'public.t115_ctl.%' ORDER BY intake_id").fetchall()
    assert len(sizes) == 2
    listed = connect("app_reader").execute("SELECT seq, octet_length(row_after::text), octet_length(changed::text)"
                                           " FROM audit.list_events(kind_prefix => 'public.t115_ctl')").fetchall()
    assert len(listed) == 2
    assert seal_all(db) is None
    quarantined = db.execute("SELECT kind, left(error, 200) FROM audit.quarantine").fetchall()
    assert quarantined == [], quarantined
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 'public.t115_ctl.%'").fetchone() == (2,)
    both_ok(db)
    archive_all(db, tmp_path, verifier_file)


def test_n7_captured_wild_and_tame_numbers_in_json_jsonb_numeric_and_float_columns(clean, connect, tmp_path, verifier_file):
    db = clean
    de_session(db)
    db.execute("""CREATE TABLE public.t115_wild (id int PRIMARY KEY, j json, jb jsonb, n numeric, f float8, na numeric[]);
                  GRANT ALL ON public.t115_wild TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.t115_wild')")
    writer = connect("app_writer")
    rows = [
        (1, '[1e400, -1e-400, 1E+2, 100, 100.0, -0, 1e399]', '[1E+2, 100, 100.0, -0, -0.0, 1e399, -1e-399]',
         "1" + "0" * 9999, "-0", ["NaN", "Infinity", "1" + "0" * 399]),
        (2, '{"a": 1e400, "a": 1}', '{"x": 1e400}', "NaN", "4.9e-324", ["-Infinity"]),
        (3, '1' + '0' * 10000, '1' + '0' * 398, "-Infinity", "2.2250738585072014e-308", None),
    ]
    for r in rows:
        writer.execute("INSERT INTO public.t115_wild VALUES (%s, %s::json, %s::jsonb, %s::numeric, %s::float8, %s::numeric[])",
                       list(r))
    writer.execute("UPDATE public.t115_wild SET n = n + 1, f = -f")
    img = {r[0]: r[1] for r in db.execute("SELECT (row_after ->> 'id')::int, row_after FROM audit.events"
                                           " WHERE kind = 'public.t115_wild.insert'")}
    assert img[1]["jb"][:5] == [100, 100, Decimal("100.0"), 0, Decimal("0.0")] or img[1]["jb"][:3] == [100, 100, 100.0], img[1]["jb"]
    sealed_both_ok(db)
    marker = {"$omitted": {"wild_number": True}}
    sealed = {r[0]: r[1] for r in db.execute("SELECT (row_after ->> 'id')::int, row_after FROM audit.event_log"
                                              " WHERE kind = 'public.t115_wild.insert'")}
    assert sealed[1]["n"] == marker and sealed[3]["n"] == "-Infinity" and sealed[2]["n"] == "NaN", sealed
    seq = db.execute("SELECT seq FROM audit.event_log WHERE kind = 'public.t115_wild.insert' AND row_after ->> 'id' = '1'"
                     ).fetchone()[0]
    three_way(db, tmp_path, verifier_file, seq, "row_after", "jsonb_set(row_after, '{jb,2}', '100.00')",
              b'100.0, 0, 0.0', b'100.1, 0, 0.0')


def test_u14_columns_differing_only_by_normalization_are_redacted_and_excluded_by_their_own_names(clean, connect):
    db = clean
    q = lambda n: '"' + n + '"'  # noqa: E731
    db.execute(f"CREATE TABLE public.t115_nf (id int PRIMARY KEY, {q(NFC)} text, {q(NFD)} text, {q(NFC + '2')} text,"
               f" {q(NFD + '2')} text); GRANT ALL ON public.t115_nf TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t115_nf', redact_columns => %s, exclude_columns => %s)",
               [[NFD], [NFC + "2"]])
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.t115_nf VALUES (1, 'nfc-plain', 'nfd-secret', 'nfc2-hidden', 'nfd2-plain')")
    writer.execute(f"UPDATE public.t115_nf SET {q(NFD)} = 'nfd-secret-2', {q(NFC)} = 'nfc-plain-2'")
    rows = db.execute("SELECT row_before, row_after, changed FROM audit.events WHERE kind LIKE 'public.t115_nf.%'"
                      " ORDER BY intake_id").fetchall()
    ins, upd = rows
    assert ins[1] == {"id": 1, NFC: "nfc-plain", NFD: "[redacted]", NFD + "2": "nfd2-plain"}, ins[1]
    text = str(rows)
    assert "secret" not in text and "hidden" not in text, text
    assert seal_all(db) is None
    both_ok(db)


LOOKALIKE_TENANTS = [NFC, NFD, "a", "A", "ss", "\u00df", "x ", "x", "x\u200b", "\u0130", "i\u0307", "\ufeffx"]


def test_u15_lookalike_tenants_never_see_each_others_events(clean, connect, start_api, make_token):
    db = clean
    writer = connect("app_writer")
    for t in LOOKALIKE_TENANTS:
        writer.execute("SELECT audit.record(kind => 't115.u15', tenant_id => %s, target_id => %s)", [t, t])
    assert seal_all(db) is None
    both_ok(db)
    reader = connect("app_reader")
    api = start_api()
    for t in LOOKALIKE_TENANTS:
        got = [r[0] for r in reader.execute("SELECT target_id FROM audit.list_events(tenant_id => %s, kind_prefix => 't115.u15')",
                                            [t])]
        assert got == [t], (ascii(t), [ascii(g) for g in got])
        with api.client(make_token(tenant_id=t)) as client:
            resp = client.get("/v1/audit", params={"kind_prefix": "t115.u15"})
        assert resp.status_code == 200, resp.text[:200]
        seen = [e["target_id"] for e in resp.json()["events"]] if "events" in resp.json() else resp.json()
        assert seen == [t], (ascii(t), ascii(seen)[:300])


def test_n8_cli_events_json_prints_row_image_numbers_as_stored(clean, connect):
    """The same claim for a captured row image: a float8 column holding 1e-7 and a numeric holding 0.00000010."""
    db = clean
    db.execute("CREATE TABLE public.t115_small (id int PRIMARY KEY, f float8, n numeric);"
               " GRANT ALL ON public.t115_small TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t115_small')")
    connect("app_writer").execute("INSERT INTO public.t115_small VALUES (1, 1e-7, 0.00000010)")
    stored = db.execute("SELECT row_after::text FROM audit.events WHERE kind = 'public.t115_small.insert'").fetchone()[0]
    assert '"f": 0.0000001' in stored and '"n": 0.00000010' in stored, stored
    i = db.info
    out = CliRunner().invoke(cli, ["events", "--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user=app_reader",
                                   "--kind-prefix", "public.t115_small", "--json"])
    assert out.exit_code == 0
    printed = [ln.strip().rstrip(",") for ln in out.output.splitlines() if ln.strip().startswith(('"f":', '"n":'))]
    assert printed == ['"f": 0.0000001', '"n": 0.00000010'], printed


def test_d12_python_history_reads_of_deep_wide_and_odd_rows(clean, connect):
    """python.md: the package's functions read values nested deeper than Python's JSON parser goes."""
    from datetime import datetime, timezone

    from pgaudit_py import row_as_of, row_history
    db = clean
    de_session(db)
    db.execute("CREATE TABLE public.t115_hist (k text PRIMARY KEY, d jsonb, n numeric); GRANT ALL ON public.t115_hist TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t115_hist')")
    writer = connect("app_writer")
    deep = "[" * 9000 + '{"\u2028": 0.0000001}' + "]" * 9000
    for key in (NFC, NFD, ODD):
        writer.execute("INSERT INTO public.t115_hist VALUES (%s, %s::jsonb, 1e-300)", [key, deep])
        writer.execute("UPDATE public.t115_hist SET d = jsonb_build_array(d), n = 0.0000001 WHERE k = %s", [key])
    reader = connect("app_reader")
    for sealed in (False, True):
        for key in (NFC, NFD, ODD):
            hist = row_history(reader, "public.t115_hist", key)
            assert [e.kind for e in hist] == ["public.t115_hist.insert", "public.t115_hist.update"], ascii(key)
            assert all(e.target_id == key for e in hist)
            now = row_as_of(reader, "public.t115_hist", key, datetime.now(timezone.utc))
            assert now is not None and now["k"] == key and now["n"] == Decimal("0.0000001") or now["n"] == 1e-7, now["n"]
        if not sealed:
            assert seal_all(db) is None
            both_ok(db)


@pytest.mark.parametrize("chars", [500_000, 1_040_000])
def test_d13_pending_listing_shows_a_too_long_update_as_the_sealer_will_store_it(clean, connect, chars):
    """security.md: "when such an event's line is too long ... the sealer tries it once more with each row image
    bounded by what it prints to ... While such an event is pending, the `events` view (and so `list_events`)
    shows it as the sealer will store it". A text of `chars` control characters (stored in one byte each, under
    1 MiB, printed as \\u0001: six), updated: row_before, row_after and changed (old and new) print to about
    24 x `chars` bytes: 12 MB at 500,000 (kept whole), 25 MB at 1,040,000 (over 16 MiB: bounded by the sealer)."""
    db = clean
    de_session(db)
    db.execute("CREATE TABLE public.t115_doc (id int PRIMARY KEY, body text); GRANT ALL ON public.t115_doc TO app_writer")
    db.execute("SELECT audit.enable_tracking('public.t115_doc')")
    writer = connect("app_writer")
    writer.execute("INSERT INTO public.t115_doc VALUES (1, repeat(chr(1), %s))", [chars])
    writer.execute("UPDATE public.t115_doc SET body = repeat(chr(2), %s) WHERE id = 1", [chars])
    shape = ("SELECT id, md5(coalesce(row_before::text, '')), md5(coalesce(row_after::text, '')),"
             " md5(coalesce(changed::text, '')), payload::text, octet_length(row_after::text) + octet_length(coalesce("
             "row_before::text, '')) + octet_length(coalesce(changed::text, ''))")
    reader = connect("app_reader")
    pending = reader.execute(f"{shape} FROM audit.list_events(kind_prefix => 'public.t115_doc') ORDER BY intake_id").fetchall()
    assert seal_all(db) is None
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,)
    sealed = reader.execute(f"{shape} FROM audit.list_events(kind_prefix => 'public.t115_doc') ORDER BY seq").fetchall()
    both_ok(db)
    assert [r[:5] for r in pending] == [r[:5] for r in sealed], (
        [(r[4], r[5]) for r in pending], [(r[4], r[5]) for r in sealed])
