"""Trial 118: the lifecycle of the CLI's processes, how they stop and how they end.

docs/cli.md: the commands that run until stopped (`worker`, `seal --follow`, `events --follow`,
`serve`) take the first Ctrl-C or SIGTERM as the stop and ignore the later ones, "however many come
and whenever, to the moment the process is gone"; they end with status 0 ("stopped" for the worker),
no traceback, nothing lost. run_guarded (pgaudit_py/cli/common.py): "never a traceback".

Each test FAILS when its attack works."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from stop_signals import signal_until_exit
from trial_helpers import both_verifiers, seal_all

CLI = [sys.executable, "-m", "pgaudit_py.cli"]


def dsn_as(db: psycopg.Connection, role: str, **extra: str) -> str:
    i = db.info
    more = "".join(f" {k}={v}" for k, v in extra.items())
    return f"host={i.host} port={i.port} dbname={i.dbname} user={role}{more}"


def wait_for(check, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            rest = proc.communicate(timeout=30) if proc.stdout is not None and not proc.stdout.closed else None
            raise AssertionError(f"{what}: the process ended first ({proc.returncode}): {rest}")
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


def intact(db: psycopg.Connection, kind: str, n: int) -> None:
    """Nothing lost: another round seals every event once, and both verifiers accept."""
    assert seal_all(db) is None
    assert db.execute("SELECT count(*), count(DISTINCT target_id) FROM audit.event_log WHERE kind = %s",
                      (kind,)).fetchone() == (n, n)
    assert both_verifiers(db) == (True, True)


_recorded: dict[str, int] = {}


def backlog(connect, kind: str, n: int) -> None:
    """n more events of `kind`, each with a target_id of its own (1, 2, ... across calls)."""
    first = _recorded.get(kind, 0) + 1
    _recorded[kind] = first + n - 1
    connect("app_writer").execute("SELECT audit.record(kind => %s, target_id => g::text)"
                                  " FROM generate_series(%s::int, %s::int) g", (kind, first, first + n - 1))


@pytest.fixture(autouse=True)
def _fresh_numbering():
    _recorded.clear()


@pytest.fixture
def reaped():
    """Every process a test starts is gone after it, whatever happened."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        with contextlib.suppress(Exception):
            p.communicate(timeout=30)


def start(reaped, args: list[str], **kwargs) -> subprocess.Popen:
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    p = subprocess.Popen(CLI + args, text=True, **kwargs)
    reaped.append(p)
    return p


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def long_running(db: psycopg.Connection, name: str) -> list[str]:
    return {
        "worker": ["worker", "--dsn", dsn_as(db, "app_maintainer"), "--interval", "0.05"],
        "seal-follow": ["seal", "--follow", "--dsn", dsn_as(db, "app_maintainer"), "--interval", "0.05"],
        "events-follow": ["events", "--follow", "--json", "--dsn", dsn_as(db, "app_reader")],
        "serve": ["serve", "--dsn", dsn_as(db, "app_reader"), "--port", str(_free_port())],
    }[name]


STOPPERS = [signal.SIGINT, signal.SIGTERM]
LONG_RUNNING = ["worker", "seal-follow", "events-follow", "serve"]


# ---------------------------------------------------------------- class 1: signals at every moment

@pytest.mark.xfail(strict=True, reason="a known limit (docs/cli.md, the commands that run until stopped): a signal"
                   " that comes while Python is still loading the command is Python's; strict, so that a change"
                   " that closes it says so")
@pytest.mark.parametrize("sig", STOPPERS, ids=["INT", "TERM"])
@pytest.mark.parametrize("name", LONG_RUNNING)
def test_s1_stop_storm_from_the_first_moment(db, reaped, name, sig):
    """Attack: Ctrl-C / SIGTERM repeated from the moment the command is started (a service manager
    stopping a unit that has just been started, an impatient operator), i.e. while Python still
    imports, before any handler of the package's exists. Safe: docs/cli.md's "however many come and
    whenever": status 0, no traceback."""
    p = start(reaped, long_running(db, name))
    out, err = signal_until_exit(p, sig)
    assert "Traceback" not in err, err[-2000:]
    assert p.returncode == 0, (p.returncode, err[-2000:])


@pytest.mark.parametrize("sig", STOPPERS, ids=["INT", "TERM"])
@pytest.mark.parametrize("name", LONG_RUNNING)
def test_s2_stop_while_connecting_to_a_silent_server(db, reaped, name, sig):
    """Attack: the database host accepts TCP but never answers (a hung server, a black-holing
    proxy); the operator stops the command while it is connecting (connect_timeout=12). Safe: the
    stop is taken as the stop: status 0, no traceback, no "cannot connect" error made of it."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent.settimeout(60)
        args = long_running(db, name)
        i = args.index("--dsn")
        args[i + 1] = f"host=127.0.0.1 port={silent.getsockname()[1]} dbname=x user=app_reader connect_timeout=12"
        p = start(reaped, args)
        held, _ = silent.accept()  # the command is connecting now; nothing is ever said back
        with held:
            out, err = signal_until_exit(p, sig, timeout=40)
    assert "Traceback" not in err, err[-2000:]
    assert (p.returncode, err.strip().splitlines()[-1:] if name in ("worker", "seal-follow") else []) == \
        (0, ["stopped"] if name in ("worker", "seal-follow") else []), (p.returncode, err[-2000:])


def test_s3_worker_storm_during_reconnect_backoff(db, connect, reaped, tmp_path):
    """Attack: the worker's session is terminated, and while it waits to reconnect (1 s doubling),
    Ctrl-C then SIGTERM again and again. Safe: status 0, "stopped", no traceback, nothing lost."""
    backlog(connect, "t118.backoff", 500)
    errfile = (tmp_path / "err").open("w+")
    p = start(reaped, long_running(db, "worker"), stderr=errfile)
    wait_for(lambda: db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't118.backoff'").fetchone()[0]
             == 500, p, "the worker sealed the backlog")
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgaudit worker'")
    wait_for(lambda: "reconnecting" in Path(errfile.name).read_text(), p, "the worker said it reconnects")
    p.send_signal(signal.SIGINT)
    signal_until_exit(p, signal.SIGTERM)
    err = Path(errfile.name).read_text()
    assert "Traceback" not in err, err[-2000:]
    assert (p.returncode, err.strip().splitlines()[-1:]) == (0, ["stopped"]), err[-2000:]
    backlog(connect, "t118.backoff2", 10)
    intact(db, "t118.backoff", 500)


@pytest.mark.parametrize("name", ["worker", "seal-follow"])
def test_s4_sigint_then_sigterm_storm_mid_round(db, connect, reaped, name):
    """Attack: one Ctrl-C mid-round on a large backlog, then SIGTERM repeated (the service manager
    joining in) until the process is gone. Safe: status 0, "stopped", no traceback; the cut round
    is rolled back, another round seals every event once, both verifiers accept."""
    backlog(connect, "t118.mixed", 20000)
    p = start(reaped, long_running(db, name))
    wait_for(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgaudit worker'"
                                " AND state = 'active'").fetchone() == (1,), p, "the worker sealing")
    p.send_signal(signal.SIGINT)
    out, err = signal_until_exit(p, signal.SIGTERM)
    assert "Traceback" not in err, err[-2000:]
    assert (p.returncode, err.strip().splitlines()[-1:]) == (0, ["stopped"]), err[-2000:]
    intact(db, "t118.mixed", 20000)


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1], ids=["HUP", "QUIT", "USR1"])
def test_s5_other_signals_mid_round_lose_nothing(db, connect, reaped, sig):
    """Attack: a signal the docs do not name (SIGHUP from a closed terminal, SIGQUIT from Ctrl-\\,
    SIGUSR1) mid-round. The docs promise nothing about how the process ends (it dies of the signal's
    default action); safe: what it was sealing is rolled back whole, nothing lost or sealed twice."""
    backlog(connect, "t118.other", 20000)
    p = start(reaped, long_running(db, "worker"))
    wait_for(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgaudit worker'"
                                " AND state = 'active'").fetchone() == (1,), p, "the worker sealing")
    p.send_signal(sig)
    p.communicate(timeout=30)
    assert p.returncode == -sig  # observed: the default action (recorded for the report)
    intact(db, "t118.other", 20000)


def test_s6_serve_storm_with_a_slow_request_in_flight(db, connect, reaped, tmp_path):
    """Attack: `serve` asked to stop again and again while a request waits on a lock held
    elsewhere (a slow query). Safe: status 0, no traceback (docs/cli.md, docs/http.md)."""
    port = _free_port()
    out = (tmp_path / "out").open("w+")
    p = start(reaped, ["serve", "--dsn", dsn_as(db, "app_reader"), "--port", str(port)],
              stdout=out, stderr=subprocess.STDOUT)
    import httpx
    wait_for(lambda: _healthy(httpx, port), p, "serve answering")
    locker = connect(autocommit=False)
    try:
        locker.execute("LOCK TABLE audit.event_log IN ACCESS EXCLUSIVE MODE")
        import threading
        threading.Thread(target=lambda: _quietly(httpx.get, f"http://127.0.0.1:{port}/healthz", timeout=60),
                         daemon=True).start()
        threading.Thread(target=lambda: _quietly(httpx.get, f"http://127.0.0.1:{port}/v1/audit", timeout=60),
                         daemon=True).start()
        time.sleep(0.5)
        signal_until_exit(p, signal.SIGTERM)
    finally:
        locker.rollback()
    text = Path(out.name).read_text()
    assert "Traceback" not in text and "CancelledError" not in text, text[-3000:]
    assert p.returncode == 0, (p.returncode, text[-3000:])


@pytest.mark.parametrize("sig", STOPPERS, ids=["INT", "TERM"])
def test_s7_storm_during_the_daily_archive_duty(db, reaped, tmp_path, sig):
    """Attack: the worker is stopped again and again while its daily archive run (file:// target)
    is writing batches. Safe: status 0, "stopped", no traceback; nothing lost: a later archive run
    completes, the archive verifies, both chain verifiers accept."""
    from pgaudit_py import archive as archiving
    from pgaudit_py import seal
    from pgaudit_py.archive_targets import open_target
    from pgaudit_py.checkpoint import Keys

    hmac_key = tmp_path / "hmac.key"
    hmac_key.write_bytes(os.urandom(32))
    hour = db.execute("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')::int").fetchone()[0]
    db.execute("SELECT audit.set_archive_settings('1 millisecond', 5, %s)", (hour,))
    for b in range(120):
        db.execute("SELECT audit.record(kind => 't118.arch', target_id => %s || '.' || g)"
                   " FROM generate_series(1, 5) g", (str(b),))
        seal(db)
    url = f"file://{tmp_path}/archive"
    p = start(reaped, ["worker", "--interval", "0.05", "--dsn", dsn_as(db, "app_maintainer"),
                       "--archive-target", url, "--hmac-key-file", str(hmac_key)])
    wait_for(lambda: db.execute("SELECT count(*) FROM audit.archive_batches").fetchone()[0] >= 2, p,
             "the archive run under way")
    out, err = signal_until_exit(p, sig)
    assert "Traceback" not in err, err[-2000:]
    assert (p.returncode, err.strip().splitlines()[-1:]) == (0, ["stopped"]), (p.returncode, err[-2000:])
    target = open_target(url)
    keys = Keys(hmac_key=hmac_key.read_bytes())
    archiving.archive(db, target, keys)
    assert archiving.verify_archive(db, target, keys).ok
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("name", ["events-follow", "seal-follow", "worker", "serve"])
def test_s9_ctrl_c_then_sigterm_storm_while_idle(db, reaped, name):
    """Attack: an idle follower or sealer gets one Ctrl-C and then SIGTERM again and again, every
    0.5 ms (the operator and the service manager both stopping it), three times over. Safe: each
    ends with status 0 and no traceback, and stops while the signals go on (docs/cli.md: "however
    many come and whenever")."""
    seen = []
    for _ in range(3):
        p = start(reaped, long_running(db, name))
        wait_for(lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename IN ('app_reader', 'app_maintainer')"
                                    " AND backend_type = 'client backend'").fetchone(), p, "connected")
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        out, err = signal_until_exit(p, signal.SIGTERM, every=0.0005)
        seen.append((p.returncode, err))
        wait_for(lambda: not db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename IN ('app_reader',"
                                        " 'app_maintainer')").fetchone(), p if p.poll() is None else _Done(), "gone")
    assert all(code == 0 and "Traceback" not in err for code, err in seen), seen


class _Done:
    def poll(self) -> None:
        return None


def test_s10_ctrl_c_at_the_prune_prompt(db, connect, reaped):
    """Attack: Ctrl-C while `prune` waits at its question. Safe: no traceback; nothing pruned."""
    _sealed_backlog(db, connect, "t118.prompt", 20)
    before = db.execute("SELECT count(*) FROM audit.event_log").fetchone()
    time.sleep(1.5)  # the events are older than --older-than 1s: prune has something to ask about
    p = start(reaped, ["prune", "--older-than", "1s", "--dsn", dsn_as(db, "app_maintainer")], stdin=subprocess.PIPE)
    wait_for(lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename = 'app_maintainer'").fetchone()
             is not None, p, "prune connected")
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=30)
    assert "Traceback" not in err + out, (p.returncode, out[-800:], err[-1500:])
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == before


def _healthy(httpx, port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _quietly(f, *args, **kwargs) -> None:
    with contextlib.suppress(Exception):
        f(*args, **kwargs)


# ---------------------------------------------------------------- class 2: output closed

def _sealed_backlog(db, connect, kind: str, n: int) -> None:
    backlog(connect, kind, n)
    assert seal_all(db) is None


@pytest.mark.parametrize("args", [["events", "--page-size", "5000"], ["events", "--json", "--page-size", "5000"],
                                  ["events", "--page-size", "5000", "--kind", "t118.pipe"]],
                         ids=["table", "json", "filtered"])
def test_o1_stdout_closed_after_one_line(db, connect, reaped, args):
    """Attack: `pgaudit events ... | head -1`: the reader of stdout goes away after one line while
    a long output is still being written. Safe: no traceback (run_guarded's "never a traceback"),
    a quiet end."""
    _sealed_backlog(db, connect, "t118.pipe", 3000)
    p = start(reaped, args + ["--dsn", dsn_as(db, "app_reader")])
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read()
    p.wait(timeout=60)
    assert "Traceback" not in err and "Exception ignored" not in err, (p.returncode, err[-2000:])


def test_o2_follower_stdout_closed(db, connect, reaped):
    """Attack: `pgaudit events --follow | head -1`: the follower's stdout closes, then more events
    are sealed. Safe: it ends (or goes on) without a traceback."""
    p = start(reaped, long_running(db, "events-follow"))
    wait_for(lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename = 'app_reader'").fetchone(),
             p, "the follower connected")
    time.sleep(0.5)
    _sealed_backlog(db, connect, "t118.fpipe", 1)
    p.stdout.readline()
    p.stdout.close()
    for _ in range(20):
        _sealed_backlog(db, connect, "t118.fpipe", 200)
        if p.poll() is not None:
            break
        time.sleep(0.1)
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    err = p.stderr.read()
    p.wait(timeout=30)
    assert "Traceback" not in err and "Exception ignored" not in err, (p.returncode, err[-2000:])


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
def test_o3_sealer_output_closed(db, connect, reaped, stream):
    """Attack: `pgaudit seal --follow | head -1` (its round reports go to stdout), or the worker's
    stderr (its "sealing every", "reconnecting" lines) closed. Safe: no traceback, and whatever it
    did is whole: another round seals every event once, both verifiers accept."""
    args = long_running(db, "seal-follow" if stream == "stdout" else "worker")
    backlog(connect, "t118.closed", 100)
    p = start(reaped, args)
    pipe = getattr(p, stream)
    pipe.readline()
    pipe.close()
    for i in range(10):
        backlog(connect, "t118.closed", 100)
        if stream == "stderr" and i == 3:
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                       " WHERE application_name = 'pgaudit worker'")
        time.sleep(0.3)
        if p.poll() is not None:
            break
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
    other = p.stderr if stream == "stdout" else p.stdout
    text = other.read()
    p.wait(timeout=30)
    assert "Traceback" not in text and "Exception ignored" not in text, (p.returncode, text[-2000:])
    intact(db, "t118.closed", _recorded["t118.closed"])


def test_o6_worker_with_stderr_gone_survives_a_lost_session(db, connect, reaped):
    """Attack: the worker's stderr is a pipe whose reader has gone (a log shipper that died, a
    closed terminal), then its database session is lost (failover, pg_terminate_backend). Safe:
    docs/cli.md, worker "until Ctrl-C or SIGTERM", and worker.py's "surviving lost sessions": it
    reconnects and goes on sealing; a report it cannot write does not end the sealing."""
    p = start(reaped, long_running(db, "worker"))
    p.stderr.readline()  # "sealing every ..."
    p.stderr.close()
    backlog(connect, "t118.deaf", 10)
    wait_for(lambda: db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't118.deaf'").fetchone()[0] == 10,
             p, "the worker sealing")
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgaudit worker'")
    backlog(connect, "t118.deaf", 10)
    deadline = time.monotonic() + 60
    while db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't118.deaf'").fetchone()[0] < 20:
        assert p.poll() is None, f"the worker ended (status {p.returncode}) instead of reconnecting"
        assert time.monotonic() < deadline, "the worker never sealed again"
        time.sleep(0.1)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=30)


def test_o4_a_full_stdout_pipe_holds_no_lock(db, connect, reaped):
    """Attack: `pgaudit seal --follow --max-events 1` with stdout a pipe nobody reads: the pipe fills
    and the sealer blocks in a write. Safe: it blocks outside any transaction, so another sealer
    (pgaudit seal, the pytest's) is not held up, and nothing is lost."""
    backlog(connect, "t118.full", 6000)
    p = start(reaped, ["seal", "--follow", "--max-events", "1", "--interval", "0.05",
                       "--dsn", dsn_as(db, "app_maintainer")], stderr=subprocess.DEVNULL)
    # Wait until the sealer stops moving (the pipe is full) or has sealed everything.
    last, still = -1, 0
    deadline = time.monotonic() + 120
    while still < 10 and time.monotonic() < deadline:
        n = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't118.full'").fetchone()[0]
        still = still + 1 if n == last else 0
        last = n
        time.sleep(0.2)
    state = db.execute("SELECT state FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgaudit worker'").fetchall()
    assert ("idle in transaction",) not in state, state
    db.execute("SET lock_timeout = '20s'")
    try:
        intact(db, "t118.full", 6000)
    finally:
        db.execute("RESET lock_timeout")
        p.kill()


@pytest.mark.parametrize("args", [["count"], ["verify"], ["tracked"], ["status"], ["events", "--json"]],
                         ids=lambda a: "-".join(a))
def test_o5_stdout_gone_before_anything_is_written(db, connect, reaped, args):
    """Attack: `pgaudit count | true`: the reader of stdout is gone before the command writes.
    Safe: no traceback and no "Exception ignored" on stderr (run_guarded's "never a traceback")."""
    _sealed_backlog(db, connect, "t118.gone_reader", 3)
    p = start(reaped, args + ["--dsn", dsn_as(db, "app_reader")])
    p.stdout.close()
    err = p.stderr.read()
    p.wait(timeout=60)
    assert "Traceback" not in err and "Exception ignored" not in err, (p.returncode, err[-2000:])


# ---------------------------------------------------------------- class 3: the database goes away

ONE_SHOT = {
    "seal": ("app_maintainer", ["seal"]),
    "seal-json": ("app_maintainer", ["seal", "--json"]),
    "events": ("app_reader", ["events"]),
    "count": ("app_reader", ["count"]),
    "verify": ("app_reader", ["verify"]),
    "prune": ("app_maintainer", ["prune", "--older-than", "1d", "--yes"]),
}


@pytest.mark.parametrize("name", list(ONE_SHOT))
def test_d1_session_terminated_mid_command(db, connect, reaped, name):
    """Attack: the command's session is terminated (pg_terminate_backend: a failover, an admin)
    while it waits on a lock mid-command. Safe: one line on stderr, a non-zero status, no traceback;
    nothing half-done: another round seals every event once, both verifiers accept."""
    role, args = ONE_SHOT[name]
    backlog(connect, "t118.gone", 300)
    if name != "seal":
        assert seal_all(db) is None
        backlog(connect, "t118.gone2", 5)
    locker = connect(autocommit=False)
    locker.execute("LOCK TABLE audit.seal_state IN ACCESS EXCLUSIVE MODE" if name.startswith("seal")
                   else "LOCK TABLE audit.event_log IN ACCESS EXCLUSIVE MODE")
    try:
        p = start(reaped, args + ["--dsn", dsn_as(db, role)])
        wait_for(lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename = %s AND wait_event_type = 'Lock'",
                                    (role,)).fetchone(), p, "the command waiting on the lock")
        db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND usename = %s", (role,))
    finally:
        locker.rollback()
    out, err = p.communicate(timeout=60)
    assert "Traceback" not in err, err[-2000:]
    said = [line for line in err.splitlines() if line.startswith("pgaudit:")]
    assert p.returncode not in (0, None) and len(said) == 1 and err.strip().endswith(said[0]), \
        (p.returncode, out[-500:], err)
    assert seal_all(db) is None
    assert db.execute("SELECT count(*), count(DISTINCT target_id) FROM audit.event_log WHERE kind = 't118.gone'"
                      ).fetchone() == (300, 300)
    assert both_verifiers(db) == (True, True)


def test_d2_follower_session_terminated_then_stopped(db, connect, reaped, tmp_path):
    """Attack: `events --follow` loses its session and is stopped while it waits to reconnect.
    Safe: status 0, no traceback (docs/cli.md: a lost connection is reopened; until Ctrl-C or
    SIGTERM, exit 0)."""
    errfile = (tmp_path / "err").open("w+")
    p = start(reaped, long_running(db, "events-follow"), stderr=errfile)
    # Connected and past its first read: a session lost while the first connection is still being
    # set up is a first connection that failed (docs/cli.md: a configuration error, exit 1).
    wait_for(lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename = 'app_reader' AND state = 'idle'"
                                " AND query LIKE '%%seal_status%%'").fetchone(), p, "the follower connected")
    db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND usename = 'app_reader'")
    wait_for(lambda: "reconnecting" in Path(errfile.name).read_text(), p, "the follower said it reconnects")
    signal_until_exit(p, signal.SIGINT)
    err = Path(errfile.name).read_text()
    assert "Traceback" not in err and p.returncode == 0, (p.returncode, err)


