"""The command line, run as a user would: exit codes, one-line reasons, tables and JSON."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import psycopg
import pytest
from click.testing import CliRunner
from stop_signals import signal_until_exit

from pgaudit_py import record, seal
from pgaudit_py.cli import cli, install_standalone
from pgaudit_py.installer import migration_ids


@pytest.fixture
def dsn(db):
    i = db.info
    return f"host={i.host} port={i.port} dbname={i.dbname} user={i.user}"


def run(*args: str, input: str | None = None, env: dict[str, str] | None = None, command=cli):
    result = CliRunner().invoke(command, list(args), input=input, env=env, catch_exceptions=False)
    assert "Traceback" not in result.output + result.stderr
    return result


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_version_names_the_installed_package():
    from importlib.metadata import version
    result = run("--version")
    assert result.exit_code == 0 and result.output == f"pgaudit {version('pgaudit-py')}\n"


def test_install_twice_then_status(dsn, db):
    first = run("install", "--dsn", dsn, "--schema", "cli_a")
    assert first.exit_code == 0 and "installed in schema cli_a" in first.output
    again = run("install", "--dsn", dsn, "--schema", "cli_a")
    assert again.exit_code == 0 and "already up to date, nothing changed" in again.output
    ok = run("--dsn", dsn, "--schema", "cli_a", "--status", command=install_standalone)
    assert ok.exit_code == 0 and "pending migrations: (none)" in ok.output and "PROBLEM" not in ok.output
    db.execute("GRANT EXECUTE ON FUNCTION cli_a.prune_events(interval, integer) TO PUBLIC")
    bad = run("--dsn", dsn, "--schema", "cli_a", "--status", command=install_standalone)
    assert bad.exit_code == 1
    assert "PROBLEM: SECURITY DEFINER function cli_a.prune_events(older_than interval, batch_size integer)" \
           " is executable by PUBLIC" in bad.output
    assert one_line_error(bad) == "pgaudit: installation in schema 'cli_a' is not intact"


def test_install_dry_run_and_refusal(dsn, db):
    dry = run("--dsn", dsn, "--schema", "cli_b", "--dry-run", command=install_standalone)
    assert dry.exit_code == 0 and f"would apply migrations: {', '.join(migration_ids())}" in dry.output
    assert db.execute("SELECT to_regnamespace('cli_b')").fetchone() == (None,)
    db.execute("CREATE SCHEMA cli_c; CREATE TABLE cli_c.logged_actions (id int)")
    refused = run("--dsn", dsn, "--schema", "cli_c", command=install_standalone)
    assert refused.exit_code == 1
    assert "install into another schema with --schema NAME" in one_line_error(refused)


def test_record_and_list(dsn, db):
    made = run("record", "--dsn", dsn, "order.paid", "--tenant", "t1", "--actor-id", "alice",
               "--target-type", "order", "--target-id", "o-1", "--payload", '{"n": 1}', "--json")
    assert made.exit_code == 0
    assert json.loads(made.output)["kind"] == "order.paid"
    sealed = run("seal", "--dsn", dsn, "--json")
    assert json.loads(sealed.output) == {"sealed": 1, "first_seq": 1, "last_seq": 1, "block_no": 1}
    assert run("seal", "--dsn", dsn).output == "sealed 0 events\n"
    run("record", "--dsn", dsn, "order.shipped")
    assert run("seal", "--dsn", dsn).output == "sealed 1 event (seq 2..2)\n"
    listed = run("events", "--dsn", dsn, "--tenant", "t1", "--kind-prefix", "order.", "--json")
    events = json.loads(listed.output)
    assert [(e["seq"], e["actor_id"], e["payload"]) for e in events] == [(1, "alice", {"n": 1})]
    table = run("events", "--dsn", dsn)
    assert table.output.splitlines()[0].split() == ["seq", "occurred_at", "tenant", "actor", "kind", "target",
                                                    "outcome", "payload", "/", "change"]
    assert "user:alice" in table.output and "order:o-1" in table.output


def test_count_and_monthly(dsn, connect):
    writer = connect("app_writer")
    for kind in ("order.a", "order.b", "user.c"):
        record(writer, kind)
    counted = json.loads(run("count", "--dsn", dsn, "--prefix", "order.", "--prefix", "user.", "--json").output)
    assert counted == {"count": 3, "by_kind_prefix": {"order.": 2, "user.": 1}}
    monthly = run("count", "--dsn", dsn, "--months", "2", "--prefix", "order.")
    rows = monthly.output.splitlines()
    assert rows[0].split() == ["month", "count", "order."] and rows[-1].split()[1:] == ["3", "2"]


@pytest.mark.parametrize("args, message", [
    (["record", "bad kind"], "pgaudit: invalid event kind (A kind starts with a letter, then letters,"
                             " digits, _ . / -, at most 128 characters.)"),
    (["record", "a.b", "--payload", "[1"], "pgaudit: --payload is not JSON: Expecting ',' delimiter"),
    (["record", "a.b", "--payload", "[1]"], "pgaudit: payload must be a JSON object, got array"),
    (["events", "--page-size", "501"], "pgaudit: Invalid value for '--page-size': the value given is not in the range"
                                       " 1<=x<=500. (see cli events --help)"),
    (["count", "--prefix", "a b"], "pgaudit: invalid kind prefix (A prefix is 1 to 128 letters, digits, _ . / -)"),
    (["seal", "--max-events", "0"], "pgaudit: Invalid value for '--max-events': the value given is not in the range"
                                    " 1<=x<=1000000. (see cli seal --help)"),
    (["checkpoint"], "pgaudit: Missing option '--out'. (see cli checkpoint --help)"),
    # A value given is not repeated; a word of the message itself, given as one, is left standing.
    (["events", "hunter2"], "pgaudit: Got unexpected extra argument (the value given) (see cli events --help)"),
    (["events", "extra"], "pgaudit: Got unexpected extra argument (extra) (see cli events --help)"),
    # click names a path by its kind; the sentence stays whole without the path.
    (["serve", "--checkpoint-dir", "/nonexistent/checkpoints"],
     "pgaudit: Invalid value for '--checkpoint-dir': the directory given does not exist. (see cli serve --help)"),
])
def test_bad_input_exits_2_with_one_line(dsn, counts, args, message):
    result = run(args[0], "--dsn", dsn, *args[1:])
    assert result.exit_code == 2
    assert one_line_error(result) == message
    assert counts() == (0, 0)


def test_bad_option_value_exits_2(dsn):
    result = run("prune", "--dsn", dsn, "--older-than", "5 parsecs")
    assert result.exit_code == 2 and "is not a duration like 90d" in result.stderr


@pytest.mark.parametrize("other", ["--dry-run", "--schedule-seal", "--server-keys"])
def test_install_status_with_an_option_of_a_run_is_refused(dsn, db, other):
    """--status only reads: given with an option of an install run, it is refused rather than one of
    the two being left out without a word."""
    before = db.execute("SELECT count(*) FROM audit.event_log").fetchone()
    result = run("install", "--dsn", dsn, "--status", other)
    assert result.exit_code == 2 and other in one_line_error(result)
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == before


@pytest.mark.parametrize("args, says", [
    (["prune", "--older-than", "99999999999d", "--yes"], "is longer than 100 years"),
    (["prune", "--older-than", "2000000d", "--yes"], "is longer than 100 years"),
    (["prune", "--older-than", "0s", "--yes"], "Invalid value for '--older-than': it must be longer than 0"),
    (["events", "--since", "2000000d"], "is longer than 100 years"),
    (["events", "--since", "99999999999d"], "is longer than 100 years"),
    (["count", "--until", "99999999999w"], "is longer than 100 years"),
    (["tokens", "create", "--name", "t", "--expires", "99999999999d"], "is longer than 100 years"),
    # zero is an age none of these can mean, and an empty value is no duration (it read as none given)
    (["archive", "settings", "--hot-retention", "0d"], "Invalid value for '--hot-retention': it must be longer than 0"),
    (["archive", "settings", "--hot-retention", ""], "'' is not a duration like 90d"),
    (["archive", "run", "--older-than", "00w"], "Invalid value for '--older-than': it must be longer than 0"),
    (["tokens", "create", "--name", "t", "--expires", "0s"], "Invalid value for '--expires': it must be longer than 0"),
    (["tokens", "create", "--name", "t", "--expires", ""], "'' is not a duration like 90d"),
])
def test_a_duration_out_of_reach_exits_2_with_one_line(db, dsn, counts, args, says):
    """A duration longer than any date reaches (it overflowed, with a traceback), and a prune of
    everything sealed up to now, are refused before anything runs."""
    kept = db.execute("SELECT * FROM audit.archive_settings").fetchall()
    result = run(*args, "--dsn", dsn)
    assert result.exit_code == 2, result.stderr
    assert says in one_line_error(result)
    assert counts() == (0, 0)
    assert db.execute("SELECT * FROM audit.archive_settings").fetchall() == kept
    assert db.execute("SELECT count(*) FROM audit.api_tokens").fetchone() == (0,)


def test_connection_failure_is_one_line_with_every_line_of_libpq(tmp_path):
    dsn = f"host={tmp_path} port=1 user=nobody connect_timeout=2"
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(dsn)
    said = [line.strip() for line in str(caught.value).splitlines() if line.strip()]
    assert len(said) >= 2  # the cause, then libpq's hint: the cause must not be dropped
    result = run("events", "--dsn", dsn)
    assert result.exit_code == 1
    assert one_line_error(result) == "pgaudit: cannot connect: " + " ".join(said)


def test_dsn_from_environment(db):
    i = db.info
    by_url = run("count", "--json", env={"PGAUDIT_DSN": f"postgresql://{i.user}@{i.host}:{i.port}/{i.dbname}"})
    assert json.loads(by_url.output)["count"] == 0
    by_libpq = run("count", "--json", env={"PGHOST": i.host, "PGPORT": str(i.port), "PGUSER": i.user,
                                           "PGDATABASE": i.dbname, "PGAUDIT_DSN": ""})
    assert json.loads(by_libpq.output)["count"] == 0


@pytest.fixture
def old_events(db):
    db.execute("""
        INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
        SELECT 'user', 'x', 'old.event', 'success', pg_current_xact_id(), now() - interval '100 days', '{}'
          FROM generate_series(1, 5)""")
    seal(db)


def test_prune_asks_first(dsn, db, counts, old_events):
    declined = run("prune", "--dsn", dsn, "--older-than", "30d", input="n\n")
    assert declined.exit_code == 1 and "5 sealed events older than" in declined.output
    assert counts() == (0, 5)
    done = run("prune", "--dsn", dsn, "--older-than", "30d", "--batch-size", "2", "--yes")
    assert done.exit_code == 0 and "deleted 5 events" in done.output
    assert counts() == (1, 0)  # the five were sealed as one block, which goes whole: one audit.pruned event
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.pruned'").fetchone() == (1,)
    # Every sealed event is gone and the next block is not sealed yet: no "seq None".
    verified = run("verify", "--dsn", dsn)
    assert verified.exit_code == 0 and "retained history starts at block 2, not sealed yet;" in verified.output
    seal(db)
    assert "retained history starts at block 2 (seq 6);" in run("verify", "--dsn", dsn).output


def test_status_warns_when_sealing_lags(dsn, db):
    assert run("status", "--dsn", dsn).exit_code == 0
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                  VALUES ('user', 'x', 'stuck.event', 'success', '1', now() - interval '10 minutes', '{}')""")
    lagging = run("status", "--dsn", dsn)
    assert lagging.exit_code == 1
    # 600 s, or a second more when the machine is slow between the insert and the check.
    assert re.search(r"sealing is behind: the oldest pending event waited 60[01] s \(1 pending\)", lagging.output)


def test_status_counts_as_workers_only_sessions_that_may_seal(dsn, connect):
    """Any role may name its session `pgaudit worker`: a maintainer's counts, a writer's does not
    (trial 94, w4)."""
    for role in ("app_maintainer", "app_writer", "app_attacker"):
        connect(role, application_name="pgaudit worker").execute("SELECT 1")
    shown = run("status", "--dsn", dsn, "--json")
    assert json.loads(shown.output)["workers"] == 1
    assert "1 worker(s) connected" in run("status", "--dsn", dsn).output


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_worker_seals_until_interrupted(dsn, db, connect, counts, stop):
    """As the maintainer, the least role docs/cli.md names for it; it also purges rate-limit
    counters whose windows have passed."""
    for i in range(5):
        connect("app_writer").execute("SELECT audit.rate_limit('api.call', %s, 5, 1)", (f"k{i}",))
    time.sleep(2.1)
    as_maintainer = re.sub(r"user=\S+", "user=app_maintainer", dsn)
    worker = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "worker", "--dsn", as_maintainer,
                               "--interval", "0.05"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        writer = connect("app_writer")
        for i in range(3):
            record(writer, f"w.e{i}")
        deadline = time.monotonic() + 20
        while counts() != (0, 3) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counts() == (0, 3)
        workers = db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgaudit worker'")
        assert workers.fetchone() == (1,)
        while db.execute("SELECT count(*) FROM audit.rate_counters").fetchone() != (0,) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert db.execute("SELECT count(*) FROM audit.rate_counters").fetchone() == (0,)
    finally:
        worker.send_signal(stop)  # Ctrl-C, or a service manager's SIGTERM
        out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    assert "sealed" in out and "stopped" in err and "Traceback" not in err


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_worker_stops_cleanly_however_often_it_is_told_to(dsn, db, connect, counts, stop):
    """Ctrl-C pressed again and again, or SIGTERM repeated, from mid-round until the process is gone:
    each later signal may land in the query's cancellation, in "stopped" or as Python exits. It still
    ends with status 0 and "stopped", no traceback, and another round seals every event once."""
    connect("app_writer").execute("SELECT audit.record(kind => 'w.storm', target_id => g::text)"
                                  " FROM generate_series(1, 20000) g")
    as_maintainer = re.sub(r"user=\S+", "user=app_maintainer", dsn)
    started = db.execute("SELECT clock_timestamp()").fetchone()[0]
    worker = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "worker", "--dsn", as_maintainer,
                               "--interval", "0.05"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while db.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgaudit worker'"
                     " AND state = 'active' AND backend_start > %s", [started]).fetchone() != (1,):
        assert time.monotonic() < deadline and worker.poll() is None, "the worker never sealed"
        time.sleep(0.01)
    out, err = signal_until_exit(worker, stop)
    assert (worker.returncode, err.splitlines()[-1:]) == (0, ["stopped"]), err
    assert "Traceback" not in err
    seal(db, 100000)
    assert counts() == (0, 20000)
    assert db.execute("SELECT count(DISTINCT target_id) FROM audit.event_log WHERE kind = 'w.storm'").fetchone() == (20000,)


def test_worker_reconnects_when_its_connection_is_lost(dsn, db, connect, counts):
    """A server restart or failover ends the worker's session; sealing must go on without an
    operator (a DSN that never connected still fails at once: see the next assertion)."""
    worker = subprocess.Popen([sys.executable, "-m", "pgaudit_py.cli", "worker", "--dsn", dsn, "--interval", "0.05"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    writer = connect("app_writer")

    def sealed(n: int) -> bool:
        deadline = time.monotonic() + 20
        while counts() != (0, n) and time.monotonic() < deadline:
            time.sleep(0.05)
        return counts() == (0, n)

    try:
        record(writer, "w.before")
        assert sealed(1)
        # The server refuses new sessions for a while: the worker waits 1 s, then 2 s, and so on.
        i = db.info
        admin = psycopg.connect(host=i.host, port=i.port, user=i.user, dbname="postgres", autocommit=True)
        admin.execute(f'ALTER DATABASE "{i.dbname}" ALLOW_CONNECTIONS false')
        killed = db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE application_name = 'pgaudit worker'").fetchall()
        assert killed == [(True,)]
        record(writer, "w.after")
        time.sleep(3.5)
        admin.execute(f'ALTER DATABASE "{i.dbname}" ALLOW_CONNECTIONS true')
        admin.close()
        assert sealed(2)
    finally:
        worker.send_signal(signal.SIGINT)
        out, err = worker.communicate(timeout=20)
    assert worker.returncode == 0, err
    retries = [line.split("; reconnecting in ") for line in err.splitlines() if "; reconnecting in " in line]
    assert retries[0][0].startswith("connection lost (") and retries[0][1] == "1 s"  # the server's words
    assert retries[1][0].startswith("cannot connect: ") and retries[1][1] == "2 s"
    assert "reconnected" in err and "Traceback" not in err
    unreachable = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "worker", "--dsn",
                                  dsn.replace(f"port={db.info.port}", "port=1")],
                                 capture_output=True, text=True, timeout=20)
    assert unreachable.returncode == 1 and "reconnect" not in unreachable.stderr


def test_demo_against_a_dsn_cleans_up(dsn, db):
    result = run("demo", "--dsn", dsn)
    assert result.exit_code == 0, result.stderr
    assert "invoice.sent" in result.output and '{"user.":1,"order.":3}' in result.output
    assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgaudit_demo_%'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'pgaudit_demo_%'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'pgaudit_demo_%'").fetchone() == (0,)


def test_demo_against_a_database_without_pgcrypto_takes_the_pgcrypto_it_made_away_too(dsn, db):
    """The installer makes pgcrypto in <schema>_crypto where the database has none: the demo's scratch
    install does too, and leaves neither the schema nor the extension behind (a later real install
    would otherwise use the demo's)."""
    name = f"{db.info.dbname}_fresh"
    db.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        result = run("demo", "--dsn", dsn.replace(f"dbname={db.info.dbname}", f"dbname={name}"))
        assert result.exit_code == 0, result.stderr
        with psycopg.connect(dsn.replace(f"dbname={db.info.dbname}", f"dbname={name}")) as fresh:
            assert fresh.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgaudit_demo_%'"
                                 ).fetchone() == (0,)
            assert fresh.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'").fetchone() == (0,)
    finally:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_demo_against_a_dsn_says_first_that_it_needs_a_superuser(dsn, db):
    result = run("demo", "--dsn", re.sub(r"user=\S+", "user=app_maintainer", dsn))
    assert result.exit_code == 2 and "needs a superuser" in result.stderr and "removed" not in result.stderr
    assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgaudit_demo_%'").fetchone() == (0,)


def test_demo_without_a_dsn_starts_its_own_postgres():
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "demo"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "sealed 5 events (seq 1..5)" in done.stdout and "throwaway" in done.stderr


def test_track_history_untrack(dsn, db):
    db.execute("CREATE TABLE public.items (id int PRIMARY KEY, name text, pin text)")
    made = run("track", "--dsn", dsn, "public.items", "--exclude", "pin", "--json")
    assert made.exit_code == 0, made.stderr
    assert json.loads(made.output)["exclude_columns"] == ["pin"]
    db.execute("INSERT INTO items VALUES (1, 'pen', '1234'); UPDATE items SET name = 'quill'")
    listed = run("tracked", "--dsn", dsn)
    assert listed.output.splitlines()[2].split()[:4] == ["public.items", "public.items", "id", "pin"]
    history = run("history", "--dsn", dsn, "public.items", "1")
    lines = history.output.splitlines()
    assert "public.items.insert" in lines[2] and "public.items.update" in lines[3]
    assert '{"name":{"new":"quill","old":"pen"}}' in lines[3] and "1234" not in history.output
    as_json = json.loads(run("history", "--dsn", dsn, "public.items", "1", "--json").output)
    assert [e["kind"] for e in as_json] == ["public.items.insert", "public.items.update"]
    gone = run("untrack", "--dsn", dsn, "public.items")
    assert gone.exit_code == 0 and gone.output.strip() == "stopped tracking public.items"
    assert run("untrack", "--dsn", dsn, "public.items").output.strip() == "public.items was not tracked"


# PostgreSQL's own messages come in the server's language (lc_messages): matched on the name only.
@pytest.mark.parametrize("args, message", [
    (["track", "public.nope"], r'pgaudit: \S+ .public\.nope. \D+'),
    (["track", "public.items", "--exclude", "ghost"], r"pgaudit: column ghost of public\.items does not exist"),
    (["track", "audit.event_log"], r"pgaudit: cannot track audit\.event_log: the audit log does not audit itself"),
    (["history", "public.nope", "1"], r'pgaudit: \S+ .public\.nope. \D+'),
])
def test_tracking_bad_input_exits_2(dsn, db, args, message):
    db.execute("CREATE TABLE public.items (id int PRIMARY KEY, name text)")
    result = run(args[0], "--dsn", dsn, *args[1:])
    assert result.exit_code == 2
    assert re.fullmatch(message, one_line_error(result)), one_line_error(result)


def test_no_value_can_fake_a_row_of_the_output(dsn, connect):
    """An actor id with a newline printed a second, made-up row; a carriage return or an escape
    sequence could rewrite what a terminal shows. Control characters are written as escapes."""
    writer = connect("app_writer")
    fake = "mallory\n2026-01-01 00:00:00  1  user:alice  order.deleted\r\x1b[2K"
    record(writer, "order.viewed", actor_id=fake)
    result = run("events", "--dsn", dsn)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert len(lines) == 3, result.output  # header, rule, one event
    assert "mallory\\n2026-01-01 00:00:00  1  user:alice  order.deleted\\r\\x1b[2K" in lines[2]


def test_messages_name_the_flags_show_the_detail_and_say_when_nothing_was_written(dsn, db, tmp_path):
    too_big = run("events", "--dsn", dsn, "--page-size", "1000")
    assert too_big.exit_code == 2 and "--page-size" in too_big.stderr and "page_size" not in too_big.stderr
    first = run("record", "--dsn", dsn, "order.paid", "--idempotency-key", "k1", "--json")
    first_id = json.loads(first.output)["id"]
    again = run("record", "--dsn", dsn, "order.paid", "--idempotency-key", "k1")
    assert again.exit_code == 0
    assert again.output.strip() == f"already recorded as event {first_id} with idempotency key k1 (pending): nothing written"
    conflict = run("record", "--dsn", dsn, "order.refunded", "--idempotency-key", "k1")
    assert conflict.exit_code == 2
    assert "The first event with this key differs" in one_line_error(conflict)
    assert first_id not in conflict.output + conflict.stderr
    assert db.execute("SELECT count(*) FROM audit.events").fetchone() == (1,)


def test_checkpoint_never_overwrites_and_a_missing_key_is_bad_input(dsn, db, tmp_path):
    record(db, "order.paid")
    seal(db)
    run("keygen", "--dir", str(tmp_path))
    out = tmp_path / "head.json"
    out.write_text("an earlier checkpoint\n")
    refused = run("checkpoint", "--dsn", dsn, "--signing-key", str(tmp_path / "checkpoint-ed25519.pem"),
                  "--out", str(out))
    assert refused.exit_code == 2 and "exists already; not overwriting a checkpoint" in one_line_error(refused)
    assert out.read_text() == "an earlier checkpoint\n"
    keyless = run("checkpoint", "--dsn", dsn, "--out", str(tmp_path / "other.json"))
    assert keyless.exit_code == 2 and "needs an Ed25519 signing key or an HMAC key" in one_line_error(keyless)
    assert not (tmp_path / "other.json").exists()


def test_events_show_what_a_captured_write_changed_and_history_shows_a_row_at_a_time(dsn, db, connect):
    db.execute("""CREATE TABLE public.prices (id int PRIMARY KEY, amount int);
                  GRANT SELECT, INSERT, UPDATE ON public.prices TO app_writer""")
    db.execute("SELECT audit.enable_tracking('public.prices')")
    writer = connect("app_writer")
    writer.execute("INSERT INTO prices VALUES (1, 10)")
    before_update = db.execute("SELECT clock_timestamp()").fetchone()[0]
    time.sleep(0.05)
    writer.execute("UPDATE prices SET amount = 12 WHERE id = 1")
    listed = run("events", "--dsn", dsn, "--since", "1h", "--kind-prefix", "public.prices.")
    lines = listed.output.splitlines()
    assert lines[2].split()[-3:] == ["public.prices:1", "success", '{"amount":{"new":12,"old":10}}']
    assert "public.prices.update" in lines[2]  # what changed, where the payload is {}
    assert lines[3].split()[-3:] == ["public.prices:1", "success", '{"id":1,"amount":10}']
    assert "public.prices.insert" in lines[3]  # the row written
    assert run("events", "--dsn", dsn, "--until", "1h", "--json").output.strip() == "[]"
    at = run("history", "--dsn", dsn, "public.prices", "1", "--at", before_update.isoformat(), "--json")
    assert json.loads(at.output) == {"state": "existed", "image": {"id": 1, "amount": 10}}
    now = run("history", "--dsn", dsn, "public.prices", "1", "--at", "0s")
    assert [line.split() for line in now.output.splitlines()[2:]] == [["id", "1"], ["amount", "12"]]


def test_track_with_a_baseline_and_read_a_row_from_before_tracking(dsn, db):
    db.execute("CREATE TABLE public.stock (id int PRIMARY KEY, qty int); INSERT INTO public.stock VALUES (1, 5)")
    made = run("track", "--dsn", dsn, "public.stock", "--baseline")
    assert made.exit_code == 0, made.stderr
    assert made.output.strip().endswith("rows imaged as public.stock.baseline")
    now = db.execute("SELECT clock_timestamp()::text").fetchone()[0]
    at = run("history", "--dsn", dsn, "public.stock", "1", "--at", now, "--json")
    assert at.exit_code == 0, at.stderr
    assert json.loads(at.output) == {"state": "existed", "image": {"id": 1, "qty": 5}}
    assert json.loads(run("history", "--dsn", dsn, "public.stock", "2", "--at", now, "--json").output)["state"] \
        == "absent"


def _commands(command, path=()):
    """(the words that run it, the command) for every command under `command`, groups included."""
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def _filler(param) -> list[str]:
    """A value the parameter takes, to run a command as far as its parameters' checks."""
    import click

    if isinstance(param.type, click.Choice):
        value = param.type.choices[0]
    elif isinstance(param.type, (click.IntRange, click.FloatRange)):
        value = str(param.type.min if param.type.min is not None else 1)
    else:
        value = "1"
    return [value] if isinstance(param, click.Argument) else [param.opts[0], value]


TEXT_PARAMS = [
    (root, path, param.name)
    for root in (cli, install_standalone)
    for path, command in _commands(root)
    for param in command.params
    if type(param.type).__name__ in ("StringParamType", "Utf8Text")
]


@pytest.mark.parametrize(("root", "path", "name"), TEXT_PARAMS,
                         ids=[f"{r.name} {' '.join(p)} {n}" for r, p, n in TEXT_PARAMS])
def test_every_text_option_and_argument_refuses_text_that_is_not_utf8(root, path, name):
    """Python holds a byte of argv that is not UTF-8 as a lone surrogate, which psycopg cannot send
    (its UnicodeEncodeError repeats the whole value): every text parameter of every command refuses
    it before the command runs, in one line, exit 2, without repeating it. Paths may hold any bytes."""
    import click

    command = root
    for word in path:
        command = command.commands[word]
    odd = "Zq8w\udcffVx3k"
    args = list(path)
    for param in command.params:
        if param.name == name:
            args += [odd] if isinstance(param, click.Argument) else [param.opts[0], odd]
        elif param.required:
            args += _filler(param)
    result = CliRunner().invoke(root, args, catch_exceptions=False)
    assert result.exit_code == 2, (args, result.output, result.stderr)
    line = one_line_error(result)
    assert "it is not UTF-8" in line and "Zq8w" not in line and "Vx3k" not in line, line


@pytest.mark.parametrize("variable", ["PGAUDIT_DSN", "PGAUDIT_SCHEMA", "PGAUDIT_ARCHIVE_URL"])
def test_an_environment_variable_that_is_not_utf8_is_refused_in_one_line(variable):
    """The same from the environment, for the variables the commands read."""
    command = ["worker"] if variable != "PGAUDIT_ARCHIVE_URL" else ["archive", "run", "--signing-key", "k"]
    result = CliRunner().invoke(cli, command, env={variable: "Zq8w\udcffVx3k"}, catch_exceptions=False)
    assert result.exit_code == 2, (result.output, result.stderr)
    line = one_line_error(result)
    assert "it is not UTF-8" in line and "Zq8w" not in line, line


def test_no_two_actors_or_targets_print_alike():
    """A type and an id joined by ':', a missing one as '-', a quote, a space: every pair of these
    values prints apart, as the events table, history and --follow print them (then through
    printable(), which keeps apart what it is given)."""
    import itertools

    from pgaudit_py.output import listed, pair, part, printable

    values = [None, "", "-", "a", "a:b", "b", ":", '"', '"a"', '""', "a b", "a\tb", "a\nb", "a\\nb", '"-"', "a:",
              ":b", 'a"', "\udcff", "\\udcff", "None", "a,b", ",", "a\u3164", "a\u2800b", "a\\u3164"]
    shown: dict[str, tuple] = {}
    for kind, ident in itertools.product(values, repeat=2):
        text = printable(pair(kind, ident))
        assert shown.setdefault(text, (kind, ident)) == (kind, ident), (text, shown[text], (kind, ident))
    singles = {printable(part(v)) for v in values}
    assert len(singles) == len(values)
    lists = [None, [], [""], ["a", "b"], ["a,b"], ["a", "b,"], ["a,", "b"], ['"a', 'b"'], ['"a,b"']]
    assert len({"-" if v is None else printable(listed(v)) for v in lists}) == len(lists)  # as print_table


def test_the_commands_print_every_interpolated_line_through_say():
    """A line built from values (a file name, a key's name, a table) written with click.echo
    directly can fail under a strict locale or forge a line (trial 40); say() passes it through
    printable(). Lines of constant text, the secret `secrets get` prints, JSON and the script files
    the commands print as they are stay with click.echo."""
    import re
    from pathlib import Path

    found = [f"{path.name}:{n}: {line.strip()}"
             for path in sorted((Path(__file__).parent.parent / "pgaudit_py" / "cli").glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"click\.echo\(\s*(f[\"']|[^\"')][^)]*\+)", line) and "printable(" not in line]
    assert not found, found
    twice = [f"{path.name}:{n}" for path in sorted((Path(__file__).parent.parent / "pgaudit_py" / "cli").glob("*.py"))
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if re.search(r"\b(say|fail)\(.*printable\(", line)]
    assert not twice, f"escaped twice (say() and fail() escape already): {twice}"


@pytest.mark.parametrize("args", [
    ("events", "--page-size", "1\u0661"),       # a 1 and an Arabic-Indic one: int() reads 11
    ("events", "--since-seq", "\U0001d7d7"),    # a mathematical bold nine
    ("seal", "--max-events", "1_000"),
    ("prune", "--older-than", "\u0669\u0660d"),
])
def test_numbers_and_durations_are_written_in_the_digits_0_to_9(args):
    """Trial 85 (s45): int() takes any script's digits and underscores, so '1\u0661d' stored eleven
    days. Every number and duration option takes the digits 0-9 only, as the HTTP API does; refused
    before anything connects (no --dsn here)."""
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "0-9" in result.output or "is not a duration" in result.output
