"""A hundred-and-twenty-fourth attacker's trial: claims without tests. Each checkable sentence of
docs/cli.md, docs/how-it-works.md and docs/archive.md that no test would catch breaking (or whose
test asserts too little), tried as the role or input it is about.

  H. how-it-works: intake ids one at a time, the intake's four partitions of 16,384 ids and no
     btree index, no role's UPDATE/DELETE/TRUNCATE on the intake or the log, the guards against a
     superuser, who an event names.
  A. archive: the manifest's fields and numbers, the object names, gzip's mtime 0, a target that
     is no directory refused before any batch is planned, restored_events' privileges, archive
     settings shown to a reader and changed only by the maintainer.
  C. cli: durations' 100 years, commands that take no --dsn, limits' defaults, checkpoint and
     keygen never overwriting, --json output, a reused idempotency key, serve refusing a role
     without the reader's rights, PGAUDIT_SCHEMA not UTF-8.

Each test asserts the claim, so it FAILS when the claim breaks (or the doc sentence is wrong).
Every database object made is named t124_* and dropped.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from trial_helpers import sqlstate_of as sqlstate

from pgaudit_py import canonical, record, seal

TIMEOUT = 120


def cli(*args: str, env: dict | None = None, input: str | None = None,  # noqa: A002
        timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """pgaudit as an operator runs it: a process of its own, with the inherited environment."""
    return subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args], capture_output=True, text=True,
                          input=input, timeout=timeout, env=env)


def dsn(db: psycopg.Connection, user: str | None = None) -> str:
    i = db.info
    return f"host={i.host} port={i.port} dbname={i.dbname} user={user or i.user}"


# ---------------------------------------------------------------- H: how it works

def test_h1_intake_ids_are_taken_one_at_a_time_across_sessions(db, connect):
    """how-it-works.md: "Intake ids are taken one at a time (no per-session cache), so a write that
    waited for another's row lock always comes after it." Three records from two sessions, in
    turn, take three consecutive ids in that order; the sequence's cache is 1."""
    a, b = connect("app_writer"), connect("app_writer")
    ids = []
    for conn in (a, b, a, b):
        ids.append(conn.execute("SELECT (audit.record(kind => 't124.order')).id").fetchone()[0])
    intake = [r[0] for r in db.execute("SELECT intake_id FROM audit.events WHERE kind = 't124.order' ORDER BY id")]
    order = dict(zip([str(i) for i in ids], range(4), strict=True))
    rows = db.execute("SELECT id::text, intake_id FROM audit.events WHERE kind = 't124.order'").fetchall()
    by_turn = [iid for _, iid in sorted(rows, key=lambda r: order[r[0]])]
    assert by_turn == list(range(by_turn[0], by_turn[0] + 4)), by_turn
    assert len(intake) == 4
    default = db.execute("""SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d JOIN pg_attribute a
                               ON a.attrelid = d.adrelid AND a.attnum = d.adnum
                            WHERE d.adrelid = 'audit.event_intake'::regclass AND a.attname = 'intake_id'""").fetchone()
    assert default is not None and "nextval" in default[0], default
    sequence = default[0].split("'")[1]
    caches = db.execute("SELECT cache_size FROM pg_sequences WHERE format('%%I.%%I', schemaname, sequencename) = %s"
                        " OR sequencename = %s", [sequence, sequence.split(".")[-1]]).fetchall()
    assert caches and all(c == 1 for (c,) in caches), caches


def test_h2_the_intake_is_four_partitions_of_16384_ids_and_has_no_btree_index(db, connect):
    """how-it-works.md: "It is partitioned by `intake_id` into four tables (`event_intake_0` to `_3`,
    16,384 ids each, round and round)" and `audit.event_intake` "has no btree index". Checked in
    the catalog and by where events land: id n goes to partition (n / 16384) % 4."""
    parts = db.execute("""SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i
                            JOIN pg_class c ON c.oid = i.inhrelid
                           WHERE i.inhparent = 'audit.event_intake'::regclass ORDER BY 1""").fetchall()
    assert parts == [(f"event_intake_{n}", f"FOR VALUES IN ('{n}')") for n in range(4)]
    key = db.execute("SELECT pg_get_partkeydef('audit.event_intake'::regclass)").fetchone()[0]
    assert key.replace(" ", "").replace("(", "").replace(")", "").replace("::bigint", "") == "LISTintake_id/16384%4", key
    indexes = db.execute("""SELECT i.indexrelid::regclass::text, am.amname FROM pg_index i
                              JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
                             WHERE i.indrelid IN (SELECT 'audit.event_intake'::regclass UNION ALL
                                                  SELECT inhrelid FROM pg_inherits
                                                   WHERE inhparent = 'audit.event_intake'::regclass)
                               AND am.amname = 'btree'""").fetchall()
    assert indexes == []
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 't124.where')")
    iid, part = db.execute("SELECT intake_id, tableoid::regclass::text FROM audit.event_intake"
                           " WHERE kind = 't124.where'").fetchone()
    assert part == f"audit.event_intake_{(iid // 16384) % 4}"


def _intake_and_log(db: psycopg.Connection) -> list[str]:
    return [r[0] for r in db.execute(
        """SELECT c.oid::regclass::text FROM pg_class c
            WHERE c.oid IN ('audit.event_intake'::regclass, 'audit.event_log'::regclass)
               OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent IN
                            ('audit.event_intake'::regclass, 'audit.event_log'::regclass))""")]


def test_h3_no_role_may_update_delete_or_truncate_the_intake_or_the_log(db, near_end):
    """how-it-works.md: "No role has UPDATE, DELETE or TRUNCATE on the intake or the log, the owner
    role included, but the two function roles below: the sealer's DELETE on the intake and TRUNCATE of
    its partitions (above), and the pruner's DELETE from the log." Every role in the cluster
    that is not a superuser (the predefined pg_* ones aside: pg_write_all_data is PostgreSQL's, and
    has no member), and PUBLIC, on every table of both, a second log partition included."""
    record(db, "t124.fill")
    for _ in range(3):
        db.execute("SELECT audit.record(kind => 't124.fill')")
    seal(db)  # reaches the end of the first partition: a second one exists
    tables = _intake_and_log(db)
    assert len([t for t in tables if t.startswith("audit.event_log")]) >= 3, tables
    roles = [r[0] for r in db.execute("SELECT rolname FROM pg_roles WHERE NOT rolsuper AND rolname !~ '^pg_'")]
    assert "audit_owner" in roles and "audit_sealer" in roles
    found = []
    for table in tables:
        for role in roles:
            for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
                if db.execute("SELECT has_table_privilege(%s, %s, %s)", [role, table, privilege]).fetchone()[0]:
                    if (role, privilege) == ("audit_sealer", "DELETE") and table.startswith("audit.event_intake") \
                            or (role, privilege) == ("audit_sealer", "TRUNCATE") and table.startswith("audit.event_intake_") \
                            or (role, privilege) == ("audit_pruner", "DELETE") and table.startswith("audit.event_log"):
                        continue
                    found.append((role, table, privilege))
        public = db.execute("""SELECT array_agg(a.privilege_type) FROM pg_class c, aclexplode(c.relacl) a
                                WHERE c.oid = %s::regclass AND a.grantee = 0
                                  AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE')""", [table]).fetchone()[0]
        if public:
            found.append(("PUBLIC", table, public))
    assert found == [], found


@pytest.mark.parametrize("statement", [
    "UPDATE audit.event_log SET kind = 't124.x'",
    "DELETE FROM audit.event_log",
    "TRUNCATE audit.event_log",
    "UPDATE audit.event_intake SET kind = 't124.x'",
    "DELETE FROM audit.event_intake_0",
    "TRUNCATE audit.event_intake",
    "INSERT INTO audit.event_log SELECT * FROM audit.event_log LIMIT 1",
])
def test_h4_the_guards_refuse_a_superuser_whatever_its_settings_say(db, statement):
    """how-it-works.md: "Statement-level guard triggers refuse UPDATE, DELETE, TRUNCATE (and INSERT
    into the log) for everyone, superusers included, unless `current_user` is the NOLOGIN role ...
    Nothing reads a setting or message text, which a session can forge and `lc_messages`
    translates." A superuser with the package's settings forged and messages in another language."""
    db.execute("SELECT audit.record(kind => 't124.kept')")
    seal(db)
    db.execute("SELECT audit.record(kind => 't124.pending')")
    before = db.execute("SELECT kind, seq, intake_id FROM audit.events ORDER BY kind").fetchall()
    db.execute("BEGIN")
    try:
        for name in ("pgaudit_py.sealing", "pgaudit_py.pruning", "pgaudit_py.role", "audit.sealer"):
            db.execute("SELECT set_config(%s, 'on', true)", [name])
        db.execute("SET LOCAL lc_messages = 'C'")
        state = sqlstate(db, statement)
    finally:
        db.execute("ROLLBACK")
    assert state is not None, statement
    assert db.execute("SELECT kind, seq, intake_id FROM audit.events ORDER BY kind").fetchall() == before


def test_h5_db_role_is_the_role_acted_as_and_a_claimed_db_role_is_kept_beside_it(db, connect):
    """how-it-works.md: "With no actor at all, the actor is the database role (`actor_type =
    'db_role'`); with no client address, the database connection's own (`inet_client_addr()`...).
    `db_role` is always the role the session acts as (after `SET ROLE`, else the login role)"; a
    session may claim `actor_type = 'db_role'` with another role's name, "with the role the session
    acts as in `db_role` beside it"."""
    db.execute("CREATE ROLE t124_clerk NOLOGIN IN ROLE audit_writer")
    try:
        db.execute("GRANT t124_clerk TO app_attacker")
        conn = connect("app_attacker")
        addr = conn.execute("SELECT inet_client_addr()::text").fetchone()[0]
        conn.execute("SET ROLE t124_clerk")
        conn.execute("SELECT audit.record(kind => 't124.plain')")
        conn.execute("BEGIN")
        conn.execute("SELECT set_config('pgaudit_py.actor_type', 'db_role', true),"
                     " set_config('pgaudit_py.actor_id', 'postgres', true)")
        conn.execute("SELECT audit.record(kind => 't124.claim')")
        conn.execute("COMMIT")
        conn.execute("RESET ROLE")
        rows = db.execute("SELECT kind, actor_type, actor_id, db_role, client_addr::text FROM audit.events"
                          " WHERE kind LIKE 't124.%' ORDER BY kind").fetchall()
        assert rows == [("t124.claim", "db_role", "postgres", "t124_clerk", addr),
                        ("t124.plain", "db_role", "t124_clerk", "t124_clerk", addr)]
    finally:
        db.execute("REVOKE t124_clerk FROM app_attacker")
        db.execute("DROP ROLE t124_clerk")


# ---------------------------------------------------------------- A: archive

def _keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    done = cli("keygen", "--dir", str(keys))
    assert done.returncode == 0, done.stderr
    return keys


def _blocks(db: psycopg.Connection, n: int, per: int = 3) -> None:
    for b in range(n):
        for i in range(per):
            record(db, "t124.archived", tenant_id="t1", payload={"b": b, "i": i, "price": 1.10, "big": 10**30})
        seal(db)


def test_a1_the_manifest_and_objects_are_as_the_layout_says(db, tmp_path):
    """archive.md: objects `blocks-<first>-<last>.jsonl.gz` and `.manifest.json`, "zero-padded to 12
    digits"; gzip "with mtime 0"; the manifest is "written with the canonical JSON writer ... then
    `\\n`", `{"manifest": BODY, "signatures": {...}}`, BODY's fields exactly the listed ones with `v`
    (1) and `canonical_version` (2); `data_sha256` of the uncompressed, `gz_sha256` of the stored;
    `prev_manifest_sha256` null for the first and the previous manifest's SHA-256 after."""
    _blocks(db, 2)
    db.execute("SELECT audit.set_archive_settings('90 days', 3, NULL)")
    keys = _keys(tmp_path)
    db.execute("SELECT pg_sleep(1.1)")
    target = tmp_path / "archive"
    done = cli("archive", "run", "--target", f"file://{target}", "--older-than", "1s",
               "--signing-key", str(keys / "checkpoint-ed25519.pem"),
               "--hmac-key-file", str(keys / "checkpoint-hmac.key"), "--dsn", dsn(db, "app_maintainer"))
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in target.iterdir())
    assert names == ["blocks-000000000001-000000000001.jsonl.gz", "blocks-000000000001-000000000001.manifest.json",
                     "blocks-000000000002-000000000002.jsonl.gz", "blocks-000000000002-000000000002.manifest.json"]
    fields = {"v", "canonical_version", "schema", "batch_id", "first_block", "last_block", "first_seq", "last_seq",
              "event_count", "data_object", "data_bytes", "data_sha256", "gz_bytes", "gz_sha256",
              "first_block_prev_hash", "last_block_hash", "blocks", "prev_manifest_sha256"}
    prev = None
    for n in (1, 2):
        stem = f"blocks-{n:012d}-{n:012d}"
        raw = (target / f"{stem}.manifest.json").read_bytes()
        document = json.loads(raw)
        assert raw == (canonical.dumps(document) + "\n").encode()
        assert set(document) == {"manifest", "signatures"}
        assert set(document["signatures"]) == {"ed25519", "hmac-sha256"}
        body = document["manifest"]
        assert set(body) == fields
        assert (body["v"], body["canonical_version"], body["batch_id"], body["data_object"]) == (
            1, 2, stem, f"{stem}.jsonl.gz")
        assert body["prev_manifest_sha256"] == prev
        gz = (target / f"{stem}.jsonl.gz").read_bytes()
        assert gz[4:8] == b"\0\0\0\0"  # gzip's MTIME field
        assert (body["gz_bytes"], body["gz_sha256"]) == (len(gz), hashlib.sha256(gz).hexdigest())
        data = gzip.decompress(gz)
        assert (body["data_bytes"], body["data_sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
        assert set(body["blocks"][0]) == {"block_no", "first_seq", "last_seq", "event_count", "events_hash",
                                          "prev_hash", "block_hash"}
        recorded = db.execute("SELECT encode(manifest_sha256, 'hex') FROM audit.archive_batches WHERE batch_id = %s",
                              [stem]).fetchone()[0]
        assert recorded == hashlib.sha256(raw).hexdigest()
        prev = recorded


@pytest.mark.parametrize("shape", ["dangling_symlink", "symlink_loop", "under_a_file", "a_fifo", "symlink_to_file"])
def test_a2_a_target_that_is_no_directory_is_refused_before_any_batch_is_planned(db, tmp_path, shape):
    """archive.md: "`file:///dir` (...; a path that is, or lies under, something other than a
    directory is refused before any batch is planned)". Shapes of "something other than a
    directory": a dangling symlink, a symlink loop, a regular file above, a FIFO, a symlink to a
    file. The run must fail and audit.archive_batches stay empty (a planned batch holds back prune)."""
    _blocks(db, 1)
    keys = _keys(tmp_path)
    place = tmp_path / "place"
    place.mkdir()
    if shape == "dangling_symlink":
        (place / "archive").symlink_to(tmp_path / "nowhere")
        url_path = place / "archive"
    elif shape == "symlink_loop":
        (place / "loop").symlink_to(place / "loop")
        url_path = place / "loop" / "archive"
    elif shape == "under_a_file":
        (place / "file").write_text("x")
        url_path = place / "file" / "archive"
    elif shape == "a_fifo":
        os.mkfifo(place / "fifo")
        url_path = place / "fifo"
    else:
        (place / "file").write_text("x")
        (place / "archive").symlink_to(place / "file")
        url_path = place / "archive"
    db.execute("SELECT pg_sleep(1.1)")  # the block is due: a target taken would plan its batch
    done = cli("archive", "run", "--target", f"file://{url_path}", "--older-than", "1s",
               "--signing-key", str(keys / "checkpoint-ed25519.pem"), "--dsn", dsn(db, "app_maintainer"),
               timeout=60)
    assert done.returncode != 0, done.stdout
    assert "Traceback" not in done.stderr
    assert db.execute("SELECT count(*) FROM audit.archive_batches").fetchone() == (0,), done.stderr


def test_a3_restored_events_are_read_by_the_reader_and_written_by_no_role(db, connect, tmp_path):
    """archive.md: `audit.restored_events` is "readable by the reader role and writable only
    through `restore_archive_batch` / `drop_restored_batch` (and by the owner role ...)" and "a
    maintainer cannot pass made-up events off as archived history". After a real restore, the
    maintainer, the writer, the reader and a stranger each try to add, change and remove restored rows
    directly; every try must be refused and the rows stay as restored. The reader reads them."""
    from pgaudit_py import archive as archiving
    from pgaudit_py.archive_targets import open_target
    from pgaudit_py.checkpoint import load_keys

    _blocks(db, 1)
    keys = _keys(tmp_path)
    target = open_target(f"file://{tmp_path}/archive")
    from datetime import timedelta
    maint = connect("app_maintainer")
    run = archiving.archive(maint, target, load_keys(hmac_key=keys / "checkpoint-hmac.key"),
                            older_than=timedelta(milliseconds=1))
    batch = run.batches[0].batch_id
    assert archiving.restore_batch(maint, target, batch) == 3
    rows = "SELECT batch_id, seq, event::text FROM audit.restored_events ORDER BY seq"
    before = db.execute(rows).fetchall()
    attempts = {
        "insert": f"INSERT INTO audit.restored_events SELECT batch_id, seq + 1000, block_no, tenant_id, kind,"
                  f" occurred_at, event FROM audit.restored_events WHERE batch_id = '{batch}'",
        "update": "UPDATE audit.restored_events SET event = jsonb_set(event, '{payload,price}', '0'),"
                  " tenant_id = 't124-other'",
        "delete": "DELETE FROM audit.restored_events",
    }
    got = {}
    for role in ("app_maintainer", "app_writer", "app_reader", "app_attacker"):
        conn = maint if role == "app_maintainer" else connect(role)
        for name, statement in attempts.items():
            got[(role, name)] = sqlstate(conn, statement)
    allowed = [k for k, v in got.items() if v is None]
    assert (allowed, db.execute(rows).fetchall() == before) == ([], True)
    assert len(connect("app_reader").execute(rows).fetchall()) == 3


def test_a4_archive_settings_are_shown_to_a_reader_and_changed_only_by_a_maintainer(db):
    """cli.md: `archive settings [--hot-retention 90d] [--max-batch-events N] [--run-hour H | --never]`,
    least role reader: "show the archival defaults; changing them takes the maintainer"."""
    before = db.execute("SELECT * FROM audit.archive_settings").fetchall()
    shown = cli("archive", "settings", "--dsn", dsn(db, "app_reader"))
    assert shown.returncode == 0 and "hot retention" in shown.stdout, shown.stderr
    for args in (["--hot-retention", "7d"], ["--max-batch-events", "7"], ["--run-hour", "7"], ["--never"]):
        refused = cli("archive", "settings", *args, "--dsn", dsn(db, "app_reader"))
        assert refused.returncode == 1, (args, refused.stdout, refused.stderr)
        assert db.execute("SELECT * FROM audit.archive_settings").fetchall() == before
    changed = cli("archive", "settings", "--max-batch-events", "7", "--dsn", dsn(db, "app_maintainer"))
    assert changed.returncode == 0, changed.stderr
    assert db.execute("SELECT max_batch_events FROM audit.archive_settings").fetchone() == (7,)


# ---------------------------------------------------------------- C: command line

@pytest.mark.parametrize("days", ["36600d", "36601d", "5229w", "878401h"])
def test_c1_an_age_is_at_most_100_years(db, days):
    """cli.md: "A duration that is an age or an expiry (`prune --older-than`, `archive run
    --older-than`, `archive settings --hot-retention`, `tokens create --expires`) must be longer than
    0 and at most 100 years of 366 days (36,600 days, the database's own bound". 36600d is taken; more
    (36601d, 5229 weeks, 878401 hours) must be refused (exit 2) and change nothing."""
    before = db.execute("SELECT * FROM audit.archive_settings").fetchall()
    done = cli("archive", "settings", "--hot-retention", days, "--dsn", dsn(db, "app_maintainer"))
    if days == "36600d":
        assert done.returncode == 0, done.stderr
        return
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert db.execute("SELECT * FROM audit.archive_settings").fetchall() == before


@pytest.mark.parametrize("value", ["0d", "", " ", "0w", "1\u0661d", "\uff11d"])
@pytest.mark.parametrize("option", [("prune", "--older-than"), ("archive", "run", "--older-than"),
                                    ("archive", "settings", "--hot-retention"),
                                    ("tokens", "create", "--name", "t124tok", "--expires")])
def test_c2_a_zero_empty_or_foreign_digit_age_is_refused_and_changes_nothing(db, tmp_path, option, value):
    """cli.md: "`0d` or an empty value is refused (exit 2), never taken for the option left out";
    "a duration is written in the digits 0-9 (`1\\u0661d` ... is refused)". Each of the four age
    options; nothing pruned, planned, changed or created, and the value never printed back."""
    record(db, "t124.old")
    seal(db)
    state = ("SELECT (SELECT count(*) FROM audit.event_log), (SELECT count(*) FROM audit.archive_batches),"
             " (SELECT row(s.*)::text FROM audit.archive_settings s), (SELECT count(*) FROM audit.api_tokens)")
    before = db.execute(state).fetchone()
    extra = ["--yes"] if option[0] == "prune" else []
    if option[:2] == ("archive", "run"):
        extra = ["--target", f"file://{tmp_path}/archive", "--hmac-key-file", str(_keys(tmp_path) / "checkpoint-hmac.key")]
    done = cli(*option, value, *extra, "--dsn", dsn(db, "app_maintainer"))
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert db.execute(state).fetchone() == before
    if value.strip():
        assert value not in done.stderr


@pytest.mark.parametrize("command", [("keygen", "--dir", "KEYS"), ("secrets", "keygen", "KEYS/master.key"),
                                     ("archive", "verifier"), ("archive", "query", "SELECT 1")])
@pytest.mark.parametrize("option", ["--dsn", "--schema"])
def test_c3_commands_that_connect_to_nothing_take_neither_dsn_nor_schema(tmp_path, command, option):
    """cli.md: "`keygen`, `secrets keygen`, `archive verifier` and `archive query` connect to no
    database and take neither." Given one, the command is refused (exit 2) and writes nothing."""
    args = [a.replace("KEYS", str(tmp_path / "k")) for a in command]
    done = cli(*args, option, "host=t124-nowhere")
    assert done.returncode == 2, (done.stdout[:200], done.stderr)
    assert not (tmp_path / "k").exists()
    assert "t124-nowhere" not in done.stderr


def test_c4_limits_set_defaults_to_60_per_user_600_per_tenant_in_60_s(db):
    """cli.md: `limits set TABLE` "limit writes to a table (per window, default 60 s): 60 per user
    and 600 per tenant unless given; 0: no limit of that kind"."""
    db.execute("CREATE TABLE public.t124_limited (id int PRIMARY KEY)")
    db.execute("ALTER TABLE public.t124_limited OWNER TO app_maintainer")  # limits are set by the table's owner
    try:
        done = cli("limits", "set", "public.t124_limited", "--dsn", dsn(db, "app_maintainer"))
        assert done.returncode == 0, done.stderr
        row = db.execute("SELECT per_user, per_tenant, window_seconds FROM audit.rate_limits"
                         " WHERE target = 'public.t124_limited'::regclass::oid::text").fetchall()
        assert row == [(60, 600, 60)]
        done = cli("limits", "set", "public.t124_limited", "--per-user", "0", "--dsn", dsn(db, "app_maintainer"))
        assert done.returncode == 0, done.stderr
        row = db.execute("SELECT per_user, per_tenant FROM audit.rate_limits"
                         " WHERE target = 'public.t124_limited'::regclass::oid::text").fetchall()
        assert row == [(None, 600)]
    finally:
        cli("limits", "unset", "public.t124_limited", "--dsn", dsn(db, "app_maintainer"))
        db.execute("DROP TABLE public.t124_limited")


@pytest.mark.parametrize("existing", ["file", "dangling_symlink"])
def test_c5_checkpoint_never_overwrites(db, tmp_path, existing):
    """cli.md: `checkpoint ... --out FILE`: "sign the chain head into a checkpoint file (never
    overwrites one: exit 2)". An existing file keeps its bytes; a dangling symlink is not followed
    to make a file elsewhere."""
    record(db, "t124.cp")
    seal(db)
    keys = _keys(tmp_path)
    out = tmp_path / "cp.json"
    elsewhere = tmp_path / "elsewhere.json"
    if existing == "file":
        out.write_text("evidence\n")
    else:
        out.symlink_to(elsewhere)
    done = cli("checkpoint", "--signing-key", str(keys / "checkpoint-ed25519.pem"), "--out", str(out),
               "--dsn", dsn(db, "app_reader"))
    assert done.returncode == 2, (done.stdout, done.stderr)
    if existing == "file":
        assert out.read_text() == "evidence\n"
    assert not elsewhere.exists()


@pytest.mark.parametrize("held", ["checkpoint-ed25519.pem", "checkpoint-ed25519.pub.pem", "checkpoint-hmac.key"])
def test_c6_keygen_writes_all_three_or_none(tmp_path, held):
    """cli.md: `keygen --dir DIR`: "new checkpoint keys (Ed25519 pair, HMAC key): all three or none,
    refused when DIR holds any of them". DIR holding one as a dangling symlink counts too."""
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / held).symlink_to(tmp_path / "gone")
    done = cli("keygen", "--dir", str(keys))
    assert done.returncode != 0
    assert sorted(p.name for p in keys.iterdir()) == [held]
    assert not (tmp_path / "gone").exists()


def test_c7_json_prints_record_seal_track_and_status_as_json(db):
    """cli.md: "`--json` also prints the result of `record`, `track`, `seal`, `checkpoint`, `tokens
    create`, `status` and `pgaudit-install` as JSON." Each output parses as one JSON document."""
    db.execute("CREATE TABLE public.t124_tracked (id int PRIMARY KEY)")
    try:
        runs = {
            "record": cli("record", "t124.json", "--json", "--dsn", dsn(db, "app_writer")),
            "seal": cli("seal", "--json", "--dsn", dsn(db, "app_maintainer")),
            "track": cli("track", "public.t124_tracked", "--json", "--dsn", dsn(db)),
            "tokens": cli("tokens", "create", "--name", "t124-json", "--json", "--dsn", dsn(db, "app_maintainer")),
            "status": cli("status", "--json", "--dsn", dsn(db, "app_reader")),
        }
        for name, done in runs.items():
            assert done.returncode in (0, 1), (name, done.stderr)
            json.loads(done.stdout)
    finally:
        db.execute("SELECT audit.disable_tracking('public.t124_tracked'::regclass)")
        db.execute("DROP TABLE public.t124_tracked")
        db.execute("DELETE FROM audit.api_tokens WHERE name = 't124-json'")


def test_c8_a_reused_idempotency_key_for_the_same_event_says_so_and_writes_nothing(db):
    """cli.md: "`record` with an idempotency key that was used before for the same event says so and
    writes nothing." Also with a key in odd Unicode; the pending and the sealed case."""
    key = "t124-k\u0301\u202e\u3164"
    args = ("record", "t124.idem", "--payload", '{"a": 1}', "--idempotency-key", key, "--dsn", dsn(db, "app_writer"))
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    for _ in ("pending", "sealed"):
        again = cli(*args)
        assert again.returncode == 0, again.stderr
        assert "already recorded" in again.stdout + again.stderr
        assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't124.idem'").fetchone() == (1,)
        seal(db)


@pytest.mark.parametrize("role", ["app_writer", "app_attacker", "app_secrets"])
def test_c9_serve_refuses_a_role_without_the_readers_rights_at_start(db, role):
    """cli.md: `serve`: "a role without the reader's rights is refused at start (exit 1), not
    retried". The process must end by itself, with 1."""
    done = cli("serve", "--port", "0", "--dsn", dsn(db, role), timeout=60)
    assert done.returncode == 1, (done.stdout[-300:], done.stderr[-300:])


def test_c10_serve_refuses_a_checkpoint_dir_that_does_not_exist(db, tmp_path):
    """cli.md: `serve`: "a `--checkpoint-dir` that does not exist, or an archive target that is none,
    is refused (exit 2)"."""
    keys = _keys(tmp_path)
    done = cli("serve", "--port", "0", "--checkpoint-dir", str(tmp_path / "none"), "--public-key",
               str(keys / "checkpoint-ed25519.pub.pem"), "--dsn", dsn(db, "app_reader"), timeout=60)
    assert done.returncode == 2, (done.stdout[-300:], done.stderr[-300:])
    done = cli("serve", "--port", "0", "--archive-target", "ftp://t124/x", "--signing-key",
               str(keys / "checkpoint-ed25519.pem"), "--dsn", dsn(db, "app_maintainer"), timeout=60)
    assert done.returncode == 2, (done.stdout[-300:], done.stderr[-300:])


@pytest.mark.parametrize(("variable", "command"), [
    ("PGAUDIT_SCHEMA", ["archive", "list"]), ("PGAUDIT_DSN", ["archive", "list"]),
    ("PGAUDIT_ARCHIVE_URL", ["archive", "run", "--older-than", "1s", "--hmac-key-file", "KEY"]),
    ("PGAUDIT_ARCHIVE_URL", ["archive", "query", "SELECT 1"]),
    ("PGAUDIT_ARCHIVE_URL", ["archive", "verify", "--offline", "--public-key", "PUB"])])
def test_c11_a_variable_that_is_not_utf8_is_refused_naming_it(db, tmp_path, variable, command):
    """cli.md: "Text on the command line or in `PGAUDIT_DSN`, `PGAUDIT_SCHEMA` or `PGAUDIT_ARCHIVE_URL`
    must be UTF-8: a byte that is not is refused before the command runs (exit 2, naming the option,
    not repeating the value)". Through commands that read each (a database's or none); nothing is
    planned."""
    record(db, "t124.utf8")
    seal(db)
    db.execute("SELECT pg_sleep(1.1)")
    keys = _keys(tmp_path)
    args = [a.replace("KEY", str(keys / "checkpoint-hmac.key")).replace("PUB", str(keys / "checkpoint-ed25519.pub.pem"))
            for a in command]
    env = {k: v for k, v in os.environb.items() if not k.startswith(b"PG")}
    env[b"PGAUDIT_DSN"] = dsn(db, "app_maintainer").encode()
    place = str(tmp_path / "arch").encode()
    env[variable.encode()] = {"PGAUDIT_SCHEMA": b"t124sekr\xffet", "PGAUDIT_DSN": dsn(db).encode() + b" t124sekr\xff",
                              "PGAUDIT_ARCHIVE_URL": b"file://" + place + b"/t124sekr\xffet"}[variable]
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *args], capture_output=True,
                          timeout=TIMEOUT, env=env)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert variable.encode() in done.stderr and b"t124sekr" not in done.stderr
    assert db.execute("SELECT count(*) FROM audit.archive_batches").fetchone() == (0,)
    assert not (tmp_path / "arch").exists()


def test_h6_writers_do_not_wait_on_an_open_sealing_round(db, connect):
    """how-it-works.md: "Writers never wait on the chain head: hashing happens in the sealer, after
    commit." A sealing round left open (its transaction holds the chain head and the rows it
    drained) must not hold up a writer: a plain record, a retry of a sealed event's idempotency key
    and a captured write each finish under a lock_timeout that would fire were they waiting."""
    writer = connect("app_writer")
    writer.execute("SELECT audit.record(kind => 't124.first', idempotency_key => 't124-key')")
    seal(db)
    writer.execute("SELECT audit.record(kind => 't124.pending')")
    sealer = connect()
    sealer.execute("BEGIN")
    try:
        assert sealer.execute("SELECT (audit.seal(100)).sealed").fetchone()[0] == 1
        writer.execute("SET lock_timeout = '3s'")
        got = {
            "record": sqlstate(writer, "SELECT audit.record(kind => 't124.during')"),
            "retry": sqlstate(writer, "SELECT audit.record(kind => 't124.first', idempotency_key => 't124-key')"),
            "with a tenant": sqlstate(writer, "SELECT audit.record(kind => 't124.during', tenant_id => 't\u0301')"),
        }
    finally:
        sealer.execute("COMMIT")
    assert got == dict.fromkeys(got), got
    seal(db)
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't124.during' AND NOT pending").fetchone() == (2,)


def test_a5_archive_verify_offline_needs_no_database(db, tmp_path):
    """cli.md: `archive verify ... with --offline [--checkpoint FILE], no database at all: the whole
    archive with the public key alone, by the standalone verifier`. With a --dsn and a PGAUDIT_DSN
    that name no reachable server (a password in one), it verifies, and says nothing of either."""
    _blocks(db, 2)
    db.execute("SELECT audit.set_archive_settings('90 days', 3, NULL)")
    keys = _keys(tmp_path)
    db.execute("SELECT pg_sleep(1.1)")
    target = f"file://{tmp_path}/archive"
    done = cli("archive", "run", "--target", target, "--older-than", "1s", "--signing-key",
               str(keys / "checkpoint-ed25519.pem"), "--dsn", dsn(db, "app_maintainer"))
    assert done.returncode == 0, done.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGAUDIT_DSN"] = "host=/t124/nowhere password=t124-Sekr3t-env"
    for extra in ([], ["--dsn", "postgresql://u:t124-Sekr3t-arg@/db?host=/t124/nowhere"]):
        checked = cli("archive", "verify", "--offline", "--target", target, "--public-key",
                      str(keys / "checkpoint-ed25519.pub.pem"), *extra, env=env)
        assert checked.returncode == 0, (checked.stdout, checked.stderr)
        assert "verified 2 batches" in checked.stdout
        assert "Sekr3t" not in checked.stdout + checked.stderr


def test_c12_types_load_again_changes_nothing(db):
    """cli.md: `types load NAME [--replace]`: "register every kind of a shipped catalogue (`auth`)
    with its payload schema; again: nothing changes". The registered kinds, every column of them,
    are the same after a second load (and a third, by another maintainer login)."""
    db.execute("CREATE ROLE t124_maint2 LOGIN IN ROLE audit_maintainer")
    try:
        first = cli("types", "load", "auth", "--dsn", dsn(db, "app_maintainer"))
        assert first.returncode == 0, first.stderr
        rows = "SELECT row(t.*)::text FROM audit.event_types t ORDER BY 1"
        before = db.execute(rows).fetchall()
        assert len(before) >= 10
        for login in ("app_maintainer", "t124_maint2"):
            again = cli("types", "load", "auth", "--dsn", dsn(db, login))
            assert again.returncode == 0, again.stderr
            assert db.execute(rows).fetchall() == before, login
    finally:
        db.execute("DROP ROLE t124_maint2")


def _terminal_columns(text: str) -> int:
    """What a terminal draws (wcwidth's rule): nothing for a nonspacing or enclosing mark (Mn, Me),
    two for a wide or fullwidth character, one otherwise."""
    import unicodedata
    return sum(0 if unicodedata.category(c) in ("Mn", "Me") else 2 if unicodedata.east_asian_width(c) in "WF" else 1
               for c in text)


@pytest.mark.parametrize("name", ["t124-\u0e17\u0e35\u0e48\u0e14\u0e34\u0e19",  # Thai: marks of combining class 0
                                  "t124-\u0939\u093f\u0902\u0926\u0940",  # Hindi: an anusvara, class 0
                                  "t124-a\u20dd",  # an enclosing circle
                                  "t124-\u6f22\u5b57"])  # wide
def test_c13_columns_are_padded_to_the_terminal_columns_a_cell_takes(db, make_token, name):
    """cli.md: "Columns are padded to the terminal columns a cell takes (two for a wide character,
    none for a combining mark)." In `tokens list`, the column after a tenant in Thai, Hindi (whose
    marks NFC leaves alone: the text is in NFC, so they are printed as they are) or with an
    enclosing mark must start where the header's does, as a terminal draws them. (A token's name
    is ASCII: the names are its tenant's, the column after it `state`.)"""
    make_token("reader", name="t124a", tenant_id=name)
    make_token("reader", name="t124b", tenant_id="t124-plain-and-longer-than-the-others")
    done = cli("tokens", "list", "--dsn", dsn(db, "app_maintainer"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    header = lines[0]
    role_at = _terminal_columns(header[:header.index("state")])
    starts = {}
    for line in lines[2:]:
        for token_name in (name, "t124-plain-and-longer-than-the-others"):
            if token_name in line:
                after = line.index(token_name) + len(token_name)
                rest = line[after:]
                cell = after + len(rest) - len(rest.lstrip(" "))
                starts[token_name] = _terminal_columns(line[:cell])
    assert starts == {name: role_at, "t124-plain-and-longer-than-the-others": role_at}, done.stdout


@pytest.mark.parametrize("what", ["fifo_as_data", "fifo_as_manifest", "directory_as_data"])
def test_a6_something_else_under_a_batch_key_stops_archiving_and_says_so(db, tmp_path, what):
    """archive.md: "different content under a batch's key is a hard error that stops archiving and
    says so." What someone with access to the directory may leave under the first batch's key
    before the run: a FIFO (which no writer ever opens) or a directory. The run must end by itself
    with 1, saying so, and delete no event. (A symlink to /dev/zero is the same attack; it is not
    run here, as it would fill the disk if the claim broke.)"""
    _blocks(db, 1)
    keys = _keys(tmp_path)
    target = tmp_path / "archive"
    target.mkdir()
    stem = "blocks-000000000001-000000000001"
    if what == "fifo_as_data":
        os.mkfifo(target / f"{stem}.jsonl.gz")
    elif what == "fifo_as_manifest":
        os.mkfifo(target / f"{stem}.manifest.json")
    else:
        (target / f"{stem}.jsonl.gz").mkdir()
    db.execute("SELECT pg_sleep(1.1)")
    try:
        done = cli("archive", "run", "--target", f"file://{target}", "--older-than", "1s", "--signing-key",
                   str(keys / "checkpoint-ed25519.pem"), "--dsn", dsn(db, "app_maintainer"), timeout=30)
    except subprocess.TimeoutExpired:  # subprocess.run killed it
        pytest.fail(f"archive run was still waiting on the {what} after 30 s")
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert stem in done.stderr and "Traceback" not in done.stderr
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't124.archived'").fetchone() == (3,)


@pytest.mark.parametrize("command", ["verify", "restore"])
def test_a7_archive_verify_and_restore_name_a_fifo_in_place_of_an_object(db, tmp_path, command):
    """archive.md: `archive verify` "downloads every recorded batch ... It names each missing object
    ... and exits 1 on any problem"; "`archive restore` checks a batch's data object against the
    recorded hashes". After a good run, someone with access to the directory puts a FIFO in place
    of the data object: each must end by itself with 1 and name the batch; nothing is restored."""
    _blocks(db, 1)
    keys = _keys(tmp_path)
    target = tmp_path / "archive"
    db.execute("SELECT pg_sleep(1.1)")
    done = cli("archive", "run", "--target", f"file://{target}", "--older-than", "1s", "--signing-key",
               str(keys / "checkpoint-ed25519.pem"), "--dsn", dsn(db, "app_maintainer"))
    assert done.returncode == 0, done.stderr
    data = target / "blocks-000000000001-000000000001.jsonl.gz"
    data.unlink()
    os.mkfifo(data)
    try:
        if command == "verify":
            checked = cli("archive", "verify", "--target", f"file://{target}", "--public-key",
                          str(keys / "checkpoint-ed25519.pub.pem"), "--dsn", dsn(db, "app_reader"), timeout=30)
        else:
            checked = cli("archive", "restore", "--target", f"file://{target}", "--batch",
                          "blocks-000000000001-000000000001", "--dsn", dsn(db, "app_maintainer"), timeout=30)
    except subprocess.TimeoutExpired:  # subprocess.run killed it
        pytest.fail(f"archive {command} was still waiting on the FIFO after 30 s")
    assert checked.returncode == 1, (checked.stdout, checked.stderr)
    if command == "verify":  # restore's line names the batch given on its command line: c14
        assert "blocks-000000000001-000000000001" in checked.stderr
    assert db.execute("SELECT count(*) FROM audit.restored_events").fetchone() == (0,)


@pytest.mark.parametrize("command", [("archive", "restore", "--target", "TARGET", "--batch"),
                                     ("archive", "verify", "--target", "TARGET", "--public-key", "PUB", "--batch")])
def test_c14_an_error_line_names_the_batch_given(db, tmp_path, command):
    """cli.md: any line on stderr replaces "each long piece of a value given (32 characters or more:
    a key, a token), and names shorter ones (a table, a tenant, a batch)". A batch id
    (`blocks-<first>-<last>`, 12 digits each: archive.md) given to `archive restore` or `archive
    verify --batch` that names no batch: the refusal must name it, as a batch is one of the values
    named."""
    keys = _keys(tmp_path)
    batch = "blocks-000000000007-000000000009"
    args = [a.replace("TARGET", f"file://{tmp_path}/archive").replace("PUB", str(keys / "checkpoint-ed25519.pub.pem"))
            for a in command]
    done = cli(*args, batch, "--dsn", dsn(db, "app_maintainer"))
    assert done.returncode in (1, 2), (done.stdout, done.stderr)
    assert batch in done.stderr, done.stderr


def test_a8_a_worker_whose_archive_run_cannot_finish_keeps_sealing(db, tmp_path):
    """archive.md: `pgaudit worker --archive-target URL ...` "also archives once a UTC day at the hour
    set ...; a failed run is logged and the worker keeps sealing". cli.md: the first Ctrl-C stops
    it "whatever the command is doing (..., archiving)", exit 0. Someone with access to the archive
    directory leaves a FIFO under the first batch's key: events written after the worker started
    must still be sealed, and a SIGINT must still end it with 0."""
    import signal
    import time

    keys = _keys(tmp_path)
    target = tmp_path / "archive"
    target.mkdir()
    os.mkfifo(target / "blocks-000000000001-000000000001.jsonl.gz")
    _blocks(db, 1)
    hour = db.execute("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')::int").fetchone()[0]
    db.execute("SELECT audit.set_archive_settings('1 millisecond', 3, %s)", [hour])
    worker = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "worker", "--interval", "0.1",
                               "--archive-target", f"file://{target}", "--hmac-key-file",
                               str(keys / "checkpoint-hmac.key"), "--dsn", dsn(db, "app_maintainer")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20  # until the run has begun (its batch is planned)
        while time.monotonic() < deadline and db.execute(
                "SELECT count(*) FROM audit.archive_batches").fetchone() == (0,):
            time.sleep(0.1)
        record(db, "t124.after")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and db.execute(
                "SELECT count(*) FROM audit.event_log WHERE kind = 't124.after'").fetchone() == (0,):
            time.sleep(0.1)
        sealed = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't124.after'").fetchone()[0]
        worker.send_signal(signal.SIGINT)
        try:
            out, err = worker.communicate(timeout=20)
            code = worker.returncode
        except subprocess.TimeoutExpired:
            code, err = "still running 20 s after SIGINT", ""
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert (sealed, code) == (1, 0), err[-500:]


def test_h7_pending_events_show_pending_no_seq_and_their_intake_id(db, connect):
    """how-it-works.md: "The view `audit.events` shows both; pending events have `pending = true`,
    `seq` NULL and an `intake_id`, the order in which they will be sealed." As the reader; sealing
    then follows that order."""
    writer = connect("app_writer")
    for n in range(3):
        writer.execute("SELECT audit.record(kind => 't124.p', payload => jsonb_build_object('n', %s::int))", [n])
    reader = connect("app_reader")
    rows = reader.execute("SELECT pending, seq, intake_id, (payload->>'n')::int FROM audit.events"
                          " WHERE kind = 't124.p' ORDER BY intake_id").fetchall()
    assert [(p, s, n) for p, s, _, n in rows] == [(True, None, 0), (True, None, 1), (True, None, 2)]
    assert all(iid is not None for _, _, iid, _ in rows)
    seal(db)
    sealed = reader.execute("SELECT pending, (payload->>'n')::int FROM audit.events WHERE kind = 't124.p'"
                            " ORDER BY seq").fetchall()
    assert sealed == [(False, 0), (False, 1), (False, 2)]


def test_a9_a_batch_is_at_least_one_block_even_past_max_batch_events(db, connect):
    """archive.md: a batch is whole sealed blocks "up to `max_batch_events` events (at least one
    block)". A block of five with max_batch_events 2 is planned whole, alone; a block is never split."""
    for _ in range(5):
        record(db, "t124.big")
    seal(db)
    record(db, "t124.next")
    seal(db)
    db.execute("SELECT audit.set_archive_settings('90 days', 2, NULL)")
    maint = connect("app_maintainer")
    planned = maint.execute("SELECT batch_id, first_block, last_block, first_seq, last_seq, event_count"
                            " FROM audit.next_archive_batch('1 millisecond')").fetchone()
    assert planned == ("blocks-000000000001-000000000001", 1, 1, 1, 5, 5)
