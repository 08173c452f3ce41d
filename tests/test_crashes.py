"""Crashes at each step of sealing with a quarantine, capturing a huge value, covering a new partition
and archiving (a real `pgaudit archive run` process, with a prune between its runs): kill -9 of the
process or of its backend, or an immediate stop of the server, then recovery. Nothing is lost,
nothing duplicated, and the work completes when run again.

Each runs in a cluster of its own (with synchronous_commit on, so that what committed survives an
immediate stop), paused at the step by a lock another session holds, or by an S3 request a proxy
holds, until the crash."""

from __future__ import annotations

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import psycopg
import pytest
from conftest import _install_template
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pgaudit_py import archive as archiving
from pgaudit_py import enable_tracking, prune_events, record, seal
from pgaudit_py.archive_targets import S3Target, open_target, read_object
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import Keys
from pgaudit_py.tempdb import TemporaryCluster

HOW = ["backend", "server"]  # kill -9 of the backend, or an immediate stop of the server


@pytest.fixture(scope="module")
def cluster() -> Iterator[TemporaryCluster]:
    with TemporaryCluster.start(settings={"synchronous_commit": "on"}) as started:
        with psycopg.connect(started.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE crash_template")
        _install_template(started.host, started.port, started.user, "crash_template")
        yield started


@pytest.fixture
def dbname(cluster: TemporaryCluster) -> Iterator[str]:
    name = f"crash_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name} TEMPLATE crash_template")
    yield name
    with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def connect(cluster: TemporaryCluster, dbname: str, role: str | None = None, **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(cluster.dsn(dbname, role), autocommit=True, **kwargs)  # type: ignore[arg-type]


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.05)


def waiting_on_a_lock(cluster: TemporaryCluster, dbname: str, pid: int) -> bool:
    with connect(cluster, dbname) as probe:
        row = probe.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return row is not None and row[0] == "Lock"


def server_up(cluster: TemporaryCluster, dbname: str) -> bool:
    try:
        with connect(cluster, dbname, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def crash(cluster: TemporaryCluster, dbname: str, how: str, pid: int) -> None:
    if how == "backend":
        os.kill(pid, signal.SIGKILL)  # the postmaster then ends every session and recovers
        time.sleep(0.5)
    else:
        cluster.crash()
    wait_until(lambda: server_up(cluster, dbname), "the server accepts connections again")


@contextmanager
def lock_held(cluster: TemporaryCluster, dbname: str, statement: str) -> Iterator[psycopg.Connection]:
    holder = connect(cluster, dbname)
    holder.execute("BEGIN")
    holder.execute(statement)
    try:
        yield holder
    finally:
        with suppress(psycopg.Error):
            holder.close()


def run_blocked(work: Callable[[psycopg.Connection], object], conn: psycopg.Connection) -> threading.Thread:
    def target() -> None:
        with suppress(psycopg.Error):  # the crash ends it
            work(conn)
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


# ---- sealing with an event to quarantine ----

@pytest.mark.parametrize("how", HOW)
def test_seal_crashing_while_it_quarantines(cluster, dbname, how):
    db = connect(cluster, dbname)
    record(db, "good.one")
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload, origin)
                  VALUES ('user', 'x', 'bad kind!', 'success', '1', now(), '{}', 'record')""")
    record(db, "good.two")
    sealer = connect(cluster, dbname, "app_maintainer")
    with lock_held(cluster, dbname, "LOCK TABLE audit.quarantine IN SHARE ROW EXCLUSIVE MODE"):
        thread = run_blocked(seal, sealer)
        wait_until(lambda: waiting_on_a_lock(cluster, dbname, sealer.info.backend_pid), "seal() waits to quarantine")
        crash(cluster, dbname, how, sealer.info.backend_pid)
    thread.join(10)
    db = connect(cluster, dbname)
    assert db.execute("SELECT (SELECT count(*) FROM audit.event_intake), (SELECT count(*) FROM audit.event_log),"
                      " (SELECT count(*) FROM audit.quarantine), (SELECT last_seq FROM audit.seal_state)"
                      ).fetchone() == (3, 0, 0, 0)
    assert seal(db).sealed == 2 and seal(db).sealed == 1  # then its audit.event_quarantined
    assert [r[0] for r in db.execute("SELECT kind FROM audit.event_log ORDER BY seq")] == [
        "good.one", "good.two", "audit.event_quarantined"]
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (1,)
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,) and verify_chain(db).ok


# ---- capturing a value past the bound ----

@pytest.mark.parametrize("how", HOW)
def test_a_huge_captured_update_crashing_leaves_neither_row_nor_event(cluster, dbname, how):
    db = connect(cluster, dbname)
    db.execute("CREATE TABLE public.docs (id int PRIMARY KEY, body text)")
    enable_tracking(db, "public.docs")
    db.execute("INSERT INTO public.docs VALUES (1, 'tiny')")
    writer = connect(cluster, dbname)
    big = "UPDATE public.docs SET body = repeat('0123456789abcdef', 4 * 65536)"
    with lock_held(cluster, dbname, "LOCK TABLE audit.event_intake IN SHARE ROW EXCLUSIVE MODE"):
        thread = run_blocked(lambda c: c.execute(big), writer)
        wait_until(lambda: waiting_on_a_lock(cluster, dbname, writer.info.backend_pid), "the capture waits")
        crash(cluster, dbname, how, writer.info.backend_pid)
    thread.join(10)
    db = connect(cluster, dbname)
    assert db.execute("SELECT body FROM public.docs").fetchone() == ("tiny",)
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.docs.update'").fetchone() == (0,)
    db.execute(big)
    seal(db)
    after = db.execute("SELECT row_after -> 'body' FROM audit.events WHERE kind = 'public.docs.update'").fetchone()[0]
    assert after["$omitted"]["bytes"] == 4 * 65536 * 16 + 2
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)


# ---- covering a partition created meanwhile ----

@pytest.mark.parametrize("how", HOW)
def test_a_partition_created_during_a_crash_is_not_left_uncovered(cluster, dbname, how):
    db = connect(cluster, dbname)
    db.execute("""CREATE TABLE public.m (id int, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
                  CREATE TABLE public.m_2026 PARTITION OF public.m FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')""")
    enable_tracking(db, "public.m")
    creator = connect(cluster, dbname)
    ddl = "CREATE TABLE public.m_2027 PARTITION OF public.m FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')"
    with lock_held(cluster, dbname, "LOCK TABLE audit.tracked_tables IN ACCESS EXCLUSIVE MODE"):
        thread = run_blocked(lambda c: c.execute(ddl), creator)
        wait_until(lambda: waiting_on_a_lock(cluster, dbname, creator.info.backend_pid), "the cover waits")
        crash(cluster, dbname, how, creator.info.backend_pid)
    thread.join(10)
    db = connect(cluster, dbname)
    assert db.execute("SELECT to_regclass('public.m_2027')").fetchone() == (None,)
    db.execute(ddl)
    db.execute("INSERT INTO public.m_2027 VALUES (1, '2027-06-01')")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.m.insert'").fetchone() == (1,)


# ---- archiving, a real process killed at each step, a prune between runs ----

class HoldingProxy:
    """Stands between `pgaudit archive run` and the S3 server, and holds a request until released."""

    def __init__(self, upstream: str):
        self.upstream = urlparse(upstream)
        self.hold_path: str | None = None
        self.reached = threading.Event()
        self.release = threading.Event()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if self.command == "PUT" and proxy.hold_path and proxy.hold_path in self.path:
                    proxy.reached.set()
                    proxy.release.wait(60)
                upstream = http.client.HTTPConnection(proxy.upstream.hostname, proxy.upstream.port, timeout=30)
                upstream.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = forward

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hold(self, path_part: str | None) -> None:
        self.hold_path = path_part
        self.reached.clear()
        self.release.clear()

    def let_go(self) -> None:
        self.hold_path = None
        self.release.set()


@pytest.fixture
def archive_setup(cluster, dbname, aws, tmp_path):
    """A bucket behind the proxy, signing keys in files, and eight old events in two blocks."""
    proxy = HoldingProxy(aws)
    bucket = f"audit-{uuid.uuid4().hex[:12]}"
    made = open_target(f"s3://{bucket}/a")
    assert isinstance(made, S3Target)
    made.client.create_bucket(Bucket=bucket)
    private = Ed25519PrivateKey.generate()
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    db = connect(cluster, dbname)
    db.execute("SELECT audit.set_archive_settings('90 days', 4, NULL)")
    for block in range(2):
        for i in range(4):
            record(db, "order.paid", payload={"block": block, "i": i})
        seal(db)
    yield proxy, made, Keys(signing_key=private, public_key=private.public_key()), key_file
    proxy.server.shutdown()


def archive_process(cluster, dbname, proxy, target, key_file) -> subprocess.Popen[str]:
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
    return subprocess.Popen(
        [sys.executable, "-m", "pgaudit_py.cli", "archive", "run", "--dsn", cluster.dsn(dbname, "app_maintainer"),
         "--target", target.url, "--older-than", "1s", "--signing-key", str(key_file)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def backend_of(cluster, dbname, process: subprocess.Popen[str]) -> int:
    def found() -> bool:
        assert process.poll() is None, process.communicate()
        with connect(cluster, dbname) as probe:
            return probe.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgaudit archive'"
                                 " AND datname = current_database()").fetchone() is not None
    wait_until(found, "the archiver is connected")
    with connect(cluster, dbname) as probe:
        row = probe.execute("SELECT pid FROM pg_stat_activity WHERE application_name = 'pgaudit archive'"
                            " AND datname = current_database()").fetchone()
    assert row is not None
    return int(row[0])


# (step, what holds the process there)
ARCHIVE_STEPS = [
    ("planned, nothing stored", "data"),
    ("data stored, no manifest", "manifest"),
    ("both stored, not recorded", "record"),
    ("recorded, events deleted but not committed", "delete"),
]
ARCHIVE_CRASHES = [(step, hold, kill) for step, hold in ARCHIVE_STEPS for kill in ("process", "backend", "server")
                   if kill == "process" or hold in ("record", "delete")]  # the backend waits only on a lock


@pytest.mark.parametrize("step, hold, kill", ARCHIVE_CRASHES)
def test_archive_run_killed_at_each_step(cluster, dbname, archive_setup, step, hold, kill):
    proxy, target, keys, key_file = archive_setup
    time.sleep(1.1)  # --older-than 1s
    db = connect(cluster, dbname)
    before = {seq: str(i) for seq, i in db.execute("SELECT seq, id FROM audit.event_log")}
    locks = {"record": "LOCK TABLE audit.archive_batches IN SHARE MODE",
             "delete": "LOCK TABLE audit.prune_points IN SHARE MODE"}
    with ExitStack() as held:
        if hold == "delete":
            held.enter_context(lock_held(cluster, dbname, locks["delete"]))
        proxy.hold(".manifest.json" if hold in ("manifest", "record") else ".jsonl.gz" if hold == "data" else None)
        process = archive_process(cluster, dbname, proxy, target, key_file)
        held.callback(lambda: process.poll() is None and process.kill())
        held.callback(proxy.let_go)
        if hold in ("data", "manifest", "record"):
            assert proxy.reached.wait(30), process.communicate(timeout=5)
        if hold == "record":
            held.enter_context(lock_held(cluster, dbname, locks["record"]))
            proxy.let_go()
        if hold in ("record", "delete"):
            pid = backend_of(cluster, dbname, process)
            wait_until(lambda: waiting_on_a_lock(cluster, dbname, pid), f"the archiver waits ({step})")
        if kill == "process":
            process.send_signal(signal.SIGKILL)
        else:
            crash(cluster, dbname, kill, backend_of(cluster, dbname, process))
        process.wait(30)
    assert process.returncode != 0

    # Between the runs a prune comes: it leaves the unfinished batch's blocks to the archive.
    db = connect(cluster, dbname)
    assert prune_events(connect(cluster, dbname, "app_maintainer"), older_than=timedelta(seconds=1)).deleted == 0
    assert hot_or_archived(db, target) == before

    again = archive_process(cluster, dbname, proxy, target, key_file)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0, err
    assert db.execute("SELECT count(*) FROM audit.event_log").fetchone() == (0,)
    assert hot_or_archived(db, target, once=True) == before  # each event exactly once, archived
    checked = archiving.verify_archive(db, target, keys)
    assert checked.ok and checked.events_checked == len(before), checked.problems
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)


def hot_or_archived(db: psycopg.Connection, target, *, once: bool = False) -> dict[int, str]:
    """seq -> id of every event, hot or archived (after a crash an event may be both: stored, not yet
    deleted); with once, an event in two places fails."""
    found = {seq: str(i) for seq, i in db.execute("SELECT seq, id FROM audit.event_log")}
    for key in target.list_keys():
        if key.endswith(".jsonl.gz"):
            for line in gzip.decompress(read_object(target, key)).decode().split("\n")[:-1]:
                event = json.loads(line)
                assert not (once and event["seq"] in found), f"seq {event['seq']} twice"
                assert found.setdefault(event["seq"], event["id"]) == event["id"]
    return found


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}.items():
        monkeypatch.setenv(name, value)
    yield endpoint
    server.stop()



@pytest.mark.parametrize("gone", [".jsonl.gz", ".manifest.json"])
def test_recovery_deletes_nothing_when_an_object_of_the_recorded_batch_is_gone(cluster, dbname, archive_setup, gone):
    """Killed after recording a batch, before deleting its events; then someone removes one of its
    objects from the storage. The next run refuses, and the events stay."""
    proxy, target, keys, key_file = archive_setup
    time.sleep(1.1)
    db = connect(cluster, dbname)
    before = {seq: str(i) for seq, i in db.execute("SELECT seq, id FROM audit.event_log")}
    with ExitStack() as held:
        held.enter_context(lock_held(cluster, dbname, "LOCK TABLE audit.prune_points IN SHARE MODE"))
        process = archive_process(cluster, dbname, proxy, target, key_file)
        held.callback(lambda: process.poll() is None and process.kill())
        pid = backend_of(cluster, dbname, process)
        wait_until(lambda: waiting_on_a_lock(cluster, dbname, pid), "the archiver waits to delete")
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    recorded = db.execute("SELECT batch_id FROM audit.archive_batches WHERE state = 'recorded'").fetchone()
    assert recorded is not None
    target.client.delete_object(Bucket=target.bucket, Key=target._key(recorded[0] + gone))
    again = archive_process(cluster, dbname, proxy, target, key_file)
    out, err = again.communicate(timeout=60)
    assert again.returncode == 1 and f"{recorded[0]}{gone} is missing or changed" in err, err
    assert {seq: str(i) for seq, i in db.execute("SELECT seq, id FROM audit.event_log")} == before
    assert db.execute("SELECT state FROM audit.archive_batches WHERE batch_id = %s", recorded).fetchone() == ("recorded",)
