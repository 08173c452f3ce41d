"""Trial 119: the stop-signal class again, against the taking thread (pgaudit_py/stop_signals.py:
SIGINT and SIGTERM blocked and sigwaited by a thread of their own; the first calls
_thread.interrupt_main and sets a stop flag).

docs/cli.md, "The commands that run until stopped": for `worker`, `seal --follow`, `events --follow`
and `serve`, the first Ctrl-C or SIGTERM is the stop "whatever the command is doing (connecting,
sealing, waiting to reconnect, archiving)", later ones are taken and dropped "to the moment the
process is gone"; status 0 ("stopped" for worker and seal --follow), no traceback, nothing lost. For
`serve`, a second stop does not wait for open requests (docs/http.md). The reports of worker and
seal --follow whose reader has gone: the sealing goes on.

Each test FAILS when its attack works. Objects made here are prefixed t119_."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psycopg
import pytest
from trial_helpers import both_verifiers, seal_all

CLI = [sys.executable, "-m", "pgaudit_py.cli"]
ROOT = Path(__file__).resolve().parent.parent
LIVENESS = int(os.environ.get("T119_LIVENESS", 45))  # seconds: a generous bound for "it stops at all", never asserted as a duration


def dsn_as(db: psycopg.Connection, role: str, host: str | None = None, port: int | None = None, **extra: str) -> str:
    i = db.info
    more = "".join(f" {k}={v}" for k, v in extra.items())
    return f"host={host or i.host} port={port or i.port} dbname={i.dbname} user={role}{more}"


def wait_for(check, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"{what}: the process ended first ({proc.returncode})"
                                 f" {getattr(proc, 't119_log', Path('/dev/null')).read_text()[-1500:]}")
        assert time.monotonic() < deadline, f"never: {what}"
        time.sleep(0.02)


_recorded: dict[str, int] = {}
_writers: dict[int, psycopg.Connection] = {}


@pytest.fixture(autouse=True)
def _fresh_numbering():
    _recorded.clear()
    _writers.clear()
    yield
    _writers.clear()


def backlog(connect, kind: str, n: int) -> None:
    first = _recorded.get(kind, 0) + 1
    _recorded[kind] = first + n - 1
    if id(connect) not in _writers:
        _writers[id(connect)] = connect("app_writer")
    _writers[id(connect)].execute("SELECT audit.record(kind => %s, target_id => g::text)"
                                  " FROM generate_series(%s::int, %s::int) g", (kind, first, first + n - 1))


def intact(db: psycopg.Connection, kind: str) -> None:
    """Nothing lost: another round seals every event once, and both verifiers accept."""
    n = _recorded[kind]
    assert seal_all(db) is None
    assert db.execute("SELECT count(*), count(DISTINCT target_id) FROM audit.event_log WHERE kind = %s",
                      (kind,)).fetchone() == (n, n)
    assert both_verifiers(db) == (True, True)


@pytest.fixture
def reaped():
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        with contextlib.suppress(Exception):
            p.communicate(timeout=30)


def start(reaped, args: list[str], tmp_path: Path, **kwargs) -> tuple[subprocess.Popen, Path]:
    """The command, its stdout and stderr together in a file (read as it goes)."""
    log = tmp_path / f"out{len(reaped)}"
    f = log.open("w")
    p = subprocess.Popen(CLI + args, stdout=kwargs.pop("stdout", f), stderr=subprocess.STDOUT, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONFAULTHANDLER": "1"}, **kwargs)
    f.close()
    p.t119_log = log
    reaped.append(p)
    return p, log


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def command(db, name: str, host: str | None = None, port: int | None = None) -> list[str]:
    return {
        "worker": ["worker", "--dsn", dsn_as(db, "app_maintainer", host, port), "--interval", "0.05"],
        "seal-follow": ["seal", "--follow", "--dsn", dsn_as(db, "app_maintainer", host, port), "--interval", "0.05"],
        "events-follow": ["events", "--follow", "--json", "--dsn", dsn_as(db, "app_reader", host, port)],
        "serve": ["serve", "--dsn", dsn_as(db, "app_reader", host, port), "--port", str(_free_port())],
    }[name]


def started_line(name: str) -> str:
    return {"worker": "sealing every", "seal-follow": "sealing every", "serve": "Uvicorn running"}.get(name, "")


def connected(db, name: str) -> bool:
    role = "app_reader" if name in ("events-follow", "serve") else "app_maintainer"
    return db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND usename = %s", (role,)).fetchone()[0] > 0


def until_gone(p: subprocess.Popen, sigs, every: float, send=None) -> bool:
    """Send the signals in turn every `every` s until p is gone or LIVENESS passes; True if gone."""
    send = send or p.send_signal
    deadline = time.monotonic() + LIVENESS
    i = 0
    while p.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            send(sigs[i % len(sigs)])
        i += 1
        time.sleep(every)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=5)
    return p.poll() is not None


def verdict(name: str, p: subprocess.Popen, log: Path) -> tuple:
    text = log.read_text(errors="replace")
    lines = text.strip().splitlines()
    return (p.returncode, "Traceback" in text, lines[-1:] if name in ("worker", "seal-follow") else [])


def expected(name: str) -> tuple:
    return (0, False, ["stopped"] if name in ("worker", "seal-follow") else [])


# ---------------------------------------------------------------- a database that stops answering

class FreezableProxy:
    """A TCP relay to the test's server that can go silent (a network partition, a hung host): once
    frozen it accepts connections and bytes but passes nothing on, cancel requests included."""

    def __init__(self, host: str, port: int):
        self.upstream = (host, port)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.frozen = threading.Event()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.frozen.is_set():
                continue  # held, never answered
            try:
                up = socket.create_connection(self.upstream)
            except OSError:
                client.close()
                continue
            self.sockets.append(up)
            threading.Thread(target=self._pump, args=(client, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, client), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                while self.frozen.is_set() and not self.closed.is_set():
                    time.sleep(0.05)
                if self.closed.is_set():
                    return
                dst.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        self.closed.set()
        self.frozen.clear()
        with contextlib.suppress(OSError):
            self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.close()


@pytest.fixture
def proxy(db):
    made = FreezableProxy(db.info.host if db.info.host.startswith("/") is False else "127.0.0.1", db.info.port)
    yield made
    made.close()


@pytest.mark.parametrize("name", ["worker", "seal-follow", "events-follow", "serve"])
def test_f1_stop_while_the_database_has_gone_silent(db, connect, reaped, tmp_path, proxy, name):
    """Attack: the database stops answering mid-command (a partition, a hung host: bytes and cancel
    requests go nowhere, no reset comes), then the operator stops the command, SIGTERM once a second.
    Safe: docs/cli.md, the first is the stop "whatever the command is doing": it is gone within a
    generous bound, status 0, "stopped", no traceback; once the database is back nothing is lost."""
    backlog(connect, "t119.frozen", 50)
    p, log = start(reaped, command(db, name, "127.0.0.1", proxy.port), tmp_path)
    wait_for(lambda: started_line(name) in log.read_text() and connected(db, name), p, "started")
    time.sleep(0.5)
    if name == "serve":
        import httpx
        port = int(command_port(p))
        threading.Thread(target=_quietly, args=(httpx.get, f"http://127.0.0.1:{port}/healthz"),
                         kwargs={"timeout": 120}, daemon=True).start()
    proxy.frozen.set()
    time.sleep(1.0)  # the next round's query (or the follower's wait) goes into the void
    gone = until_gone(p, [signal.SIGTERM], 1.0)
    proxy.close()
    assert gone, f"still running {LIVENESS} s after the first SIGTERM: {log.read_text()[-1500:]}"
    assert verdict(name, p, log) == expected(name), log.read_text()[-3000:]
    backlog(connect, "t119.frozen", 5)
    intact(db, "t119.frozen")


def test_f2_serve_one_stop_while_a_request_waits_on_a_silent_database(db, reaped, tmp_path, proxy):
    """Attack: `serve`'s database goes silent while /healthz is in flight; the operator sends one
    SIGTERM and waits. Safe (docs/http.md): "Ctrl-C or SIGTERM ... stops within a second or two,
    exit 0", no traceback."""
    import httpx
    p, log = start(reaped, command(db, "serve", "127.0.0.1", proxy.port), tmp_path)
    wait_for(lambda: "Uvicorn running" in log.read_text() and connected(db, "serve"), p, "started")
    port = int(command_port(p))
    proxy.frozen.set()
    threading.Thread(target=_quietly, args=(httpx.get, f"http://127.0.0.1:{port}/healthz"),
                     kwargs={"timeout": 120}, daemon=True).start()
    time.sleep(1.0)
    p.send_signal(signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=LIVENESS)
    gone = p.poll() is not None
    proxy.close()
    text = log.read_text()
    assert gone, f"still serving {LIVENESS} s after its stop: {text[-1500:]}"
    assert (p.returncode, "Traceback" in text) == (0, False), text[-3000:]


def command_port(p: subprocess.Popen) -> str:
    args = p.args
    return args[args.index("--port") + 1]


def _quietly(f, *args, **kwargs) -> None:
    with contextlib.suppress(Exception):
        f(*args, **kwargs)


# ---------------------------------------------------------------- started with SIGINT ignored

def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize("name", ["worker", "seal-follow", "events-follow", "serve"])
def test_i1_sigint_ignored_at_start_sigterm_still_stops(db, connect, reaped, tmp_path, name):
    """Attack: started as a non-interactive shell's `cmd &` starts it, SIGINT ignored (SIG_IGN
    inherited), then stopped by SIGTERM mid-work. Safe: SIGTERM is still a clean stop: status 0,
    "stopped", no traceback, nothing lost."""
    backlog(connect, "t119.ign", 3000)
    p, log = start(reaped, command(db, name), tmp_path, preexec_fn=_ignore_sigint)
    wait_for(lambda: started_line(name) in log.read_text() and connected(db, name), p, "started")
    backlog(connect, "t119.ign", 3000)
    assert until_gone(p, [signal.SIGTERM], 0.01), "it did not stop"
    assert verdict(name, p, log) == expected(name), log.read_text()[-3000:]
    intact(db, "t119.ign")


@pytest.mark.parametrize("name", ["worker", "seal-follow", "events-follow", "serve"])
def test_i2_sigint_ignored_at_start_stays_ignored(db, reaped, tmp_path, name):
    """Attack: a script runs `pgaudit worker &` (a non-interactive shell starts background jobs with
    SIGINT ignored, so that a Ctrl-C at the script's terminal reaches the foreground job only), then
    the operator presses Ctrl-C to stop something else: the SIGINT reaches the background sealer.
    Safe (POSIX convention, which CPython keeps: it installs no KeyboardInterrupt handler when SIGINT
    comes ignored): the inherited SIG_IGN stays, the command goes on. (docs/cli.md says the commands
    "take Ctrl-C"; it says nothing of a Ctrl-C the parent chose to ignore.)"""
    p, log = start(reaped, command(db, name), tmp_path, preexec_fn=_ignore_sigint)
    wait_for(lambda: started_line(name) in log.read_text() and connected(db, name), p, "started")
    p.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=3)
    still = p.poll() is None
    if still:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=30)
    assert still, f"a SIGINT its parent had ignored stopped it: {p.returncode} {log.read_text()[-800:]}"


# ---------------------------------------------------------------- the whole group, a long round

@pytest.mark.parametrize("name", ["worker", "seal-follow", "events-follow", "serve"])
def test_g1_group_storm_alternating_on_a_50k_backlog(db, connect, reaped, tmp_path, name):
    """Attack: the command in a session of its own (start_new_session), a 50,000-event backlog with
    the default --max-events (long rounds), and the whole process group sent SIGINT and SIGTERM in
    turn every 3 ms (a terminal's Ctrl-C and a service manager's stop together). Safe: it is gone
    within a generous bound, status 0, "stopped", no traceback, nothing lost."""
    backlog(connect, "t119.group", 50000)
    args = [a for a in command(db, name) if a not in ("--interval", "0.05")]
    p, log = start(reaped, args, tmp_path, start_new_session=True)
    if name in ("worker", "seal-follow"):
        wait_for(lambda: db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgaudit worker'"
                                    " AND state = 'active'").fetchone()[0] == 1, p, "sealing", timeout=60)
    else:
        wait_for(lambda: started_line(name) in log.read_text() and connected(db, name), p, "started")
        backlog(connect, "t119.group", 10)
        _sealer = threading.Thread(target=seal_all, args=(connect(),), daemon=True)
        _sealer.start()
        time.sleep(0.3)
    gone = until_gone(p, [signal.SIGINT, signal.SIGTERM], 0.003, send=lambda s: os.killpg(p.pid, s))
    assert gone, f"still running {LIVENESS} s into the storm: {log.read_text()[-1500:]}"
    assert verdict(name, p, log) == expected(name), log.read_text()[-3000:]
    intact(db, "t119.group")


# ---------------------------------------------------------------- a round held by a lock

@pytest.mark.parametrize("table", ["audit.seal_state", "audit.event_intake"])
@pytest.mark.parametrize("name", ["worker", "seal-follow"])
def test_l1_one_stop_while_the_round_waits_on_a_lock(db, connect, reaped, tmp_path, name, table):
    """Attack: another session holds a lock the seal round needs (seal_state, the intake), the round
    waits on it; one SIGTERM. Safe: the cancel frees the round's wait: the command is gone while the
    lock is still held, status 0, "stopped", no traceback; its session is gone too; nothing lost once
    the lock is released."""
    backlog(connect, "t119.lock", 200)
    p, log = start(reaped, command(db, name), tmp_path)
    wait_for(lambda: started_line(name) in log.read_text(), p, "started")
    locker = connect(autocommit=False)
    try:
        locker.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        backlog_thread = threading.Thread(target=_quietly, args=(backlog, connect, "t119.lock_late", 1), daemon=True)
        if table == "audit.seal_state":
            backlog(connect, "t119.lock", 10)
        else:
            backlog_thread.start()  # the writer waits too: the event is written after the lock goes
        wait_for(lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgaudit worker'"
                                    " AND wait_event_type = 'Lock'").fetchone(), p, "the round waiting on the lock")
        p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + LIVENESS
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        gone_while_locked = p.poll() is not None
        session_left = db.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pgaudit worker'"
                                  ).fetchone()[0]
    finally:
        locker.rollback()
    assert gone_while_locked, f"held by the lock after its stop: {log.read_text()[-1500:]}"
    assert verdict(name, p, log) == expected(name), log.read_text()[-3000:]
    assert session_left == 0
    intact(db, "t119.lock")


@pytest.mark.parametrize("stops", [1, 2])
def test_l2_serve_stopped_with_a_request_waiting_on_a_lock(db, connect, reaped, tmp_path, stops):
    """Attack: `serve` has /v1/audit waiting on a lock held elsewhere (held for good); stopped once,
    or twice. Safe (docs/http.md): it stops (a second stop without waiting for open requests),
    status 0, no traceback, within a generous bound, while the lock is still held."""
    import httpx
    p, log = start(reaped, command(db, "serve"), tmp_path)
    port = int(command_port(p))
    wait_for(lambda: "Uvicorn running" in log.read_text(), p, "serve up")
    token = _token(connect)
    locker = connect(autocommit=False)
    try:
        locker.execute("LOCK TABLE audit.event_log IN ACCESS EXCLUSIVE MODE")
        threading.Thread(target=_quietly, args=(httpx.get, f"http://127.0.0.1:{port}/v1/audit"),
                         kwargs={"timeout": 120, "headers": {"Authorization": f"Bearer {token}"}}, daemon=True).start()
        wait_for(lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename = 'app_reader'"
                                    " AND wait_event_type = 'Lock'").fetchone(), p, "the request waiting on the lock")
        for _ in range(stops):
            p.send_signal(signal.SIGTERM)
            time.sleep(0.2)
        deadline = time.monotonic() + LIVENESS
        while p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        gone = p.poll() is not None
    finally:
        locker.rollback()
    text = log.read_text()
    assert gone, f"still serving {LIVENESS} s after its stop(s): {text[-1500:]}"
    # psycopg's one warning line may name the cancellation it was given ("query cancellation
    # interrupted (CancelledError): closing connection"): no traceback, no application's failure.
    assert (p.returncode, "Traceback" in text, "Exception in ASGI application" in text) == (0, False, False), \
        text[-3000:]


def _token(connect) -> str:
    from pgaudit_py.tokens import create_token
    return create_token(connect("app_maintainer"), "t119_reader", "reader").token


# ---------------------------------------------------------------- signals at many offsets

@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.mark.parametrize("target", ["file", "s3", "none"])
def test_o1_one_signal_at_many_offsets_in_the_archive_duty(db, connect, reaped, tmp_path, target, request,
                                                          monkeypatch):
    """Attack: the worker started with a daily archive duty due now (file:// target, every sealed
    block to archive) or none, and one SIGINT or SIGTERM (in turn) at 0 to 2 s after its start line,
    in 0.1 s steps: the interrupt lands in the archive run, its writes, the rate-limit purge, a
    report's echo, the pause. Safe: each run ends with status 0, "stopped", no traceback; afterwards
    a full archive run completes and verifies, another round seals every event once, both verifiers
    accept."""
    from pgaudit_py import archive as archiving
    from pgaudit_py.archive_targets import open_target
    from pgaudit_py.checkpoint import Keys

    hmac_key = tmp_path / "hmac.key"
    hmac_key.write_bytes(os.urandom(32))
    hour = db.execute("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')::int").fetchone()[0]
    db.execute("SELECT audit.set_archive_settings('1 millisecond', 5, %s)", (hour,))
    url = f"file://{tmp_path}/archive"
    if target == "s3":
        endpoint = request.getfixturevalue("s3_endpoint")
        for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                     "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": "/nonexistent",
                     "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
            monkeypatch.setenv(k, v)
        bucket = f"t119-{os.urandom(6).hex()}"
        url = f"s3://{bucket}/audit"
        open_target(url).client.create_bucket(Bucket=bucket)
    extra = ["--archive-target", url, "--hmac-key-file", str(hmac_key)] if target != "none" else []
    seen = []
    for step in range(0, 21, 2 if target == "s3" else 1):
        for _ in range(15):
            backlog(connect, "t119.offsets", 4)
            assert seal_all(db) is None
        backlog(connect, "t119.offsets", 300)  # pending: the worker's rounds have work
        db.execute("UPDATE audit.archive_settings SET last_run_on = NULL")  # due again
        p, log = start(reaped, command(db, "worker") + extra, tmp_path)
        wait_for(lambda log=log: "sealing every" in log.read_text(), p, "started")
        time.sleep(step * 0.1)
        p.send_signal(signal.SIGINT if len(seen) % 2 else signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=LIVENESS)
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
        text = log.read_text(errors="replace")
        seen.append((step / 10, p.returncode, "Traceback" in text, text.strip().splitlines()[-1:]))
    bad = [s for s in seen if s[1:] != (0, False, ["stopped"])]
    assert not bad, bad
    if target == "none":
        intact(db, "t119.offsets")
        return
    target_ = open_target(url)
    keys = Keys(hmac_key=hmac_key.read_bytes())
    archiving.archive(db, target_, keys)
    assert archiving.verify_archive(db, target_, keys).ok
    assert seal_all(db) is None  # the archive took the sealed events out of the log: its verify counts them
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)
    assert both_verifiers(db) == (True, True)


# ---------------------------------------------------------------- the library's signal state

HOST_PROGRAM = textwrap.dedent("""
    import os, signal, sys, threading, time
    def state():
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1)}
        blocked = [l for l in open(f"/proc/self/task/{threading.main_thread().native_id}/status")
                   if l.startswith("SigBlk")]
        return handlers, blocked, sorted(t.name for t in threading.enumerate())
    before = state()
    import pgaudit_py, pgaudit_py.cli, pgaudit_py.worker, pgaudit_py.stop_signals, pgaudit_py.cli.sealing
    import pgaudit_py.cli.serve, pgaudit_py.cli.events
    after_import = state()
    from contextlib import contextmanager
    import psycopg
    from pgaudit_py.worker import run_worker
    stop = threading.Event()
    during = []
    def watch():
        time.sleep(1.5)
        during.append(state())
        stop.set()
    threading.Thread(target=watch).start()
    @contextmanager
    def connect():
        with psycopg.connect(sys.argv[1], autocommit=True) as c:
            yield c
    run_worker(connect, stop, interval=0.05)
    after = state()
    print(repr(before == after_import), repr(before == after), repr([d[:2] == before[:2] for d in during]))
    print(before, after_import, during, after, file=sys.stderr)
    sys.stdout.flush()
    # And the host's own Ctrl-C is still its own: KeyboardInterrupt in the main thread.
    try:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)
        print("no KeyboardInterrupt")
    except KeyboardInterrupt:
        print("KeyboardInterrupt")
""")


def test_a1_library_use_leaves_signals_alone(db, tmp_path):
    """Attack: a host program (a service, an HTTP server) imports pgaudit_py and its CLI modules and
    runs pgaudit_py.worker.run_worker. Safe: no signal handler, no blocked signal, no extra thread
    is left by importing or by running the worker; the host's Ctrl-C is still its own."""
    script = tmp_path / "host.py"
    script.write_text(HOST_PROGRAM)
    done = subprocess.run([sys.executable, str(script), dsn_as(db, "app_maintainer")], capture_output=True,
                          text=True, timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.stdout.split() == ["True", "True", "[True]", "KeyboardInterrupt"], (done.stdout, done.stderr[-3000:])


# ---------------------------------------------------------------- a stop as the command fails by itself

@pytest.mark.parametrize("name", ["worker", "events-follow"])
def test_r1_stop_as_the_first_connection_times_out(db, reaped, tmp_path, name):
    """Attack: the database host is silent (accepts TCP, never answers) and the command's
    connect_timeout=1 runs out; stops (SIGTERM, then SIGINT and SIGTERM in turn every 2 ms) start at
    offsets around that moment, so that the stop and the command's own failure meet. Safe: either
    the failure ("pgaudit: ..." status 1) or the stop (status 0, "stopped" for the worker), never a
    traceback, never an "interrupted" (130) nor death by a signal."""
    seen = []
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        held = []
        for i in range(16):
            args = command(db, name)
            k = args.index("--dsn")
            args[k + 1] = (f"host=127.0.0.1 port={silent.getsockname()[1]} dbname=x user=app_reader"
                           " connect_timeout=1")
            p, log = start(reaped, args, tmp_path)
            silent.settimeout(30)
            conn, _ = silent.accept()
            held.append(conn)
            time.sleep(0.85 + i * 0.02)
            until_gone(p, [signal.SIGTERM, signal.SIGINT], 0.002)
            text = log.read_text(errors="replace")
            seen.append((round(0.85 + i * 0.02, 2), p.returncode, "Traceback" in text, text.strip().splitlines()[-1:]))
        for c in held:
            c.close()
    bad = [s for s in seen if s[2] or s[1] not in (0, 1)]
    assert not bad, seen


# ---------------------------------------------------------------- the blocked mask and child processes

CRED_HELPER = """#!/bin/sh
grep -E '^(SigBlk|SigIgn):' /proc/$$/status > "{out}.tmp"
echo "pid: $$" >> "{out}.tmp"
mv "{out}.tmp" "{out}"
exec sleep 600
"""


def _masked(status: str, field: str) -> set[int]:
    bits = int(next(line.split()[1] for line in status.splitlines() if line.startswith(field)), 16)
    return {s for s in (signal.SIGINT, signal.SIGTERM) if bits & (1 << (s - 1))}


@pytest.mark.parametrize("name", ["worker", "serve"])
def test_t1_a_process_the_command_starts_can_still_be_stopped(db, reaped, tmp_path, monkeypatch, request, name):
    """Attack: the worker archives to S3 with its credentials from an AWS `credential_process` (the
    usual way to hand a service short-lived keys: aws-vault, an SSO helper), which hangs (a prompt, a
    slow identity service); `serve` the same with its --archive-target. Where the helper is started
    while the taking thread blocks SIGINT and SIGTERM, it inherits the mask (fork and exec keep it).
    Then the command is stopped (SIGTERM) while it waits for the helper: the target is opened, the
    command has been loaded long since. Safe: docs/cli.md, the first is the stop "whatever the
    command is doing": status 0 ("stopped" for the worker), and the helper it started is a program like any
    other: it does not block SIGINT or SIGTERM, so the service manager's SIGTERM (KillMode=
    control-group) or the terminal's Ctrl-C ends it too rather than leaving it running."""
    endpoint = request.getfixturevalue("s3_endpoint")
    out = tmp_path / "helper-status"
    helper = tmp_path / "cred.sh"
    helper.write_text(CRED_HELPER.format(out=out))
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\ncredential_process = /bin/sh {helper}\n")
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)
    for k, v in {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": "us-east-1", "AWS_CONFIG_FILE": str(config),
                 "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(k, v)
    hmac_key = tmp_path / "hmac.key"
    hmac_key.write_bytes(os.urandom(32))
    hour = db.execute("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')::int").fetchone()[0]
    db.execute("SELECT audit.set_archive_settings('1 millisecond', 5, %s)", (hour,))
    db.execute("SELECT audit.record(kind => 't119.cred', target_id => g::text) FROM generate_series(1, 10) g")
    assert seal_all(db) is None
    helper_pid = None
    try:
        p, log = start(reaped, command(db, name) + ["--archive-target", "s3://t119-cred/audit",
                                                    "--hmac-key-file", str(hmac_key)], tmp_path)
        wait_for(out.exists, p, "the credential helper started")
        status = out.read_text()
        helper_pid = int(status.split("pid:")[1].split()[0])
        p.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=LIVENESS)
        worker_gone = p.poll() is not None
        helper_alive = Path(f"/proc/{helper_pid}").exists()
    finally:
        if helper_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(helper_pid, signal.SIGKILL)
    assert (worker_gone, verdict(name, p, log) if worker_gone else None, _masked(status, "SigBlk"), _masked(status, "SigIgn")) == \
        (True, expected(name), set(), set()), (log.read_text()[-1500:], status, f"helper left running: {helper_alive}")


@pytest.mark.parametrize("name", ["worker", "seal-follow"])
def test_p1_stopped_after_both_readers_have_gone(db, connect, reaped, name):
    """Attack: `pgaudit seal --follow 2>&1 | head -1` (or the worker's log reader dying): stdout and
    stderr both lead nowhere; the command goes on sealing, then a SIGTERM and a Ctrl-C. Safe:
    docs/cli.md, the sealing goes on without the reports, and the stop still ends it with status 0
    (its "stopped" goes nowhere), nothing lost."""
    p = subprocess.Popen(CLI + command(db, name), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    reaped.append(p)
    p.stdout.readline()
    p.stdout.close()
    for _ in range(5):
        backlog(connect, "t119.deaf", 200)
        time.sleep(0.3)
    wait_for(lambda: db.execute("SELECT count(*) FROM audit.event_intake").fetchone()[0] == 0, p,
             "sealing without its readers")
    p.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        p.send_signal(signal.SIGINT)
    with contextlib.suppress(subprocess.TimeoutExpired):
        p.wait(timeout=LIVENESS)
    assert p.returncode == 0, p.returncode
    intact(db, "t119.deaf")


@pytest.mark.parametrize("phase", ["probe", "uvicorn"])
def test_s1_serve_stopped_at_many_moments_of_its_start(db, reaped, tmp_path, phase):
    """Attack: `serve` stopped once (SIGTERM, SIGINT in turn) at many small offsets after its startup
    probe's session appears ("probe": the probes, the pool opening, uvicorn's import and start) or
    after uvicorn's "Started server process" line ("uvicorn": its lifespan, binding the port). Safe:
    each ends with status 0, no traceback, and leaves no session behind."""
    seen = []
    for i in range(12):
        p, log = start(reaped, command(db, "serve"), tmp_path)
        if phase == "probe":
            wait_for(lambda: db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename = 'app_reader'").fetchone(),
                     p, "the probe connected", timeout=60)
        else:
            wait_for(lambda log=log: "Started server process" in log.read_text(), p, "uvicorn starting")
        time.sleep(i * 0.04)
        p.send_signal(signal.SIGTERM if i % 2 else signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=LIVENESS)
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)
        text = log.read_text(errors="replace")
        seen.append((i * 0.04, p.returncode, "Traceback" in text or "CancelledError" in text))
        deadline = time.monotonic() + 30
        while db.execute("SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND usename = 'app_reader'").fetchone():
            assert time.monotonic() < deadline, f"a session left behind: {seen[-1]}"
            time.sleep(0.05)
    assert all(code == 0 and not tb for _, code, tb in seen), seen


def test_t2_worker_stopped_while_its_s3_endpoint_is_silent(db, reaped, tmp_path, monkeypatch):
    """Attack: the worker's daily archive run talks to an S3 endpoint that accepts the connection and
    never answers (a hung object store, a black-holing proxy); the operator stops the worker, SIGTERM
    once a second. The main thread sits in a socket read, a C call that a flag set by
    interrupt_main does not end, and the blocked signals no longer interrupt it. Safe: docs/cli.md,
    the first is the stop "whatever the command is doing (... archiving)": gone within a generous
    bound, status 0, "stopped", no traceback."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    held: list[socket.socket] = []

    def hold() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(silent.accept()[0])
    threading.Thread(target=hold, daemon=True).start()
    for k, v in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{silent.getsockname()[1]}", "AWS_ACCESS_KEY_ID": "testing",
                 "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                 "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(k, v)
    hmac_key = tmp_path / "hmac.key"
    hmac_key.write_bytes(os.urandom(32))
    hour = db.execute("SELECT extract(hour FROM now() AT TIME ZONE 'UTC')::int").fetchone()[0]
    db.execute("SELECT audit.set_archive_settings('1 millisecond', 5, %s)", (hour,))
    db.execute("SELECT audit.record(kind => 't119.silent_s3', target_id => g::text) FROM generate_series(1, 10) g")
    assert seal_all(db) is None
    try:
        p, log = start(reaped, command(db, "worker") + ["--archive-target", "s3://t119-silent/audit",
                                                        "--hmac-key-file", str(hmac_key)], tmp_path)
        wait_for(lambda: held, p, "the archive run talking to the endpoint")
        time.sleep(0.5)
        gone = until_gone(p, [signal.SIGTERM], 1.0)
    finally:
        silent.close()
        for s in held:
            s.close()
    assert (gone, verdict("worker", p, log) if gone else None) == (True, expected("worker")), log.read_text()[-2000:]
