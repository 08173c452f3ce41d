"""A real PostgreSQL for every test: one throwaway cluster per session, pgaudit_py installed
once into a template database, and a fresh clone of it per test (pytest-postgresql)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors import NoopExecutor
from pytest_postgresql.janitor import DatabaseJanitor

from pgaudit_py.installer import install
from pgaudit_py.pytest_plugin import AuditTrail
from pgaudit_py.tempdb import TemporaryCluster

# Login roles the tests act as; each holds one of the installer's group roles.
LOGIN_ROLES = {
    "app_writer": "audit_writer",
    "app_reader": "audit_reader",
    "app_maintainer": "audit_maintainer",
    "app_secrets": "audit_secrets",
    "app_attacker": None,
}


def _install_template(host: str, port: int, user: str, dbname: str, **_: object) -> None:
    with psycopg.connect(host=host, port=port, user=user, dbname=dbname, autocommit=True) as conn:
        install(conn)
        for login, group in LOGIN_ROLES.items():
            conn.execute(f"CREATE ROLE {login} LOGIN")
            if group:
                conn.execute(f"GRANT {group} TO {login}")


# The cluster speaks German when the machine has the locale (.ci/run makes it): nothing may depend
# on PostgreSQL's English messages, which lc_messages translates.
MESSAGES_LOCALE = "de_DE.UTF-8"


def messages_locale_available() -> bool:
    listed = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout.split()
    return MESSAGES_LOCALE.lower().replace("-", "") in (name.lower().replace("-", "") for name in listed)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[TemporaryCluster]:
    settings = {"lc_messages": MESSAGES_LOCALE} if messages_locale_available() else {}
    with TemporaryCluster.start(settings=settings) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pgaudit_cluster(pg_cluster: TemporaryCluster) -> TemporaryCluster:
    """The pytest plugin's fixtures (pgaudit_db, audit_trail) run on the suite's cluster."""
    return pg_cluster


@pytest.fixture(scope="session")
def pg_server(pg_cluster: TemporaryCluster) -> Iterator[NoopExecutor]:
    executor = NoopExecutor(host=pg_cluster.host, port=pg_cluster.port, user=pg_cluster.user,
                            options="", dbname="pgaudit_test")
    with DatabaseJanitor(user=executor.user, host=executor.host, port=executor.port,
                         dbname=executor.template_dbname, as_template=True) as janitor:
        janitor.load(_install_template)
        yield executor


postgresql = factories.postgresql("pg_server")
pytest_plugins = ["pytester"]


@pytest.fixture
def db(postgresql: psycopg.Connection) -> psycopg.Connection:
    """The test database as superuser, in autocommit mode."""
    postgresql.autocommit = True
    return postgresql


# Where user code's reports of who ran it are kept when a subtransaction that ran it is rolled back
# (the capture functions roll back the sandbox's, sql/60_capture.sql): public.who_ran's trigger
# also says each row in a NOTICE, which outlives the rollback, and this writes it again, through a
# connection of its own (set by the attacker fixture while it lasts).
_who_ran_writer: list[psycopg.Connection] = []


def _keep_who_ran(notice: psycopg.errors.Diagnostic) -> None:
    message = notice.message_primary or ""
    if _who_ran_writer and message.startswith("who_ran "):
        _who_ran_writer[0].execute("INSERT INTO public.who_ran SELECT * FROM json_populate_record(NULL::public.who_ran, %s)",
                                   (message.removeprefix("who_ran "),))


@pytest.fixture
def connect(postgresql: psycopg.Connection) -> Iterator[Callable[..., psycopg.Connection]]:
    """Open more connections to the test database, as any role; all closed after the test."""
    opened: list[psycopg.Connection] = []
    info = postgresql.info

    def open_connection(role: str | None = None, autocommit: bool = True, **kwargs: object) -> psycopg.Connection:
        conn = psycopg.connect(host=info.host, port=info.port, dbname=info.dbname,
                               user=role or info.user, autocommit=autocommit, **kwargs)  # type: ignore[arg-type]
        conn.add_notice_handler(_keep_who_ran)
        opened.append(conn)
        return conn

    yield open_connection
    for conn in opened:
        conn.close()


@pytest.fixture
def fresh_database(db):
    """Make empty databases beside the test's: fresh_database(name) -> a superuser's connection; dropped after."""
    made: list[str] = []
    info = db.info

    def make(name: str) -> psycopg.Connection:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name}")
        made.append(name)
        return psycopg.connect(host=info.host, port=info.port, user=info.user, dbname=name, autocommit=True)

    yield make
    for name in made:
        db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def trail(db: psycopg.Connection) -> AuditTrail:
    """Assertions on the test database's log (the pytest plugin's, on the suite's own database)."""
    return AuditTrail(db)


# The last seq of a fresh install's first partition of the log (migrations/0018_log_partitions.sql).
FIRST_PARTITION_END = 999_999


@pytest.fixture
def near_end(db: psycopg.Connection) -> psycopg.Connection:
    """The sealer's count (and where the chain starts) five seqs before the log's first partition
    ends: partitions are tested without sealing a million events."""
    with db.transaction():
        db.execute("SET LOCAL ROLE audit_sealer")  # seal_state's guard lets the sealer alone move it
        db.execute("UPDATE audit.seal_state SET last_seq = %s, chain_start_seq = %s",
                   [FIRST_PARTITION_END - 5, FIRST_PARTITION_END - 5])
    return db


@pytest.fixture
def counts(db: psycopg.Connection) -> Callable[[], tuple[int, int]]:
    """(pending, sealed) event counts, read as superuser."""

    def read() -> tuple[int, int]:
        row = db.execute("SELECT (SELECT count(*) FROM audit.event_intake),"
                         " (SELECT count(*) FROM audit.event_log)").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    return read


@pytest.fixture
def attacker(db, connect):
    """table_owner: owns tables, nothing else; app_maintainer is a member, so it may track them."""
    db.execute("CREATE ROLE table_owner LOGIN")
    db.execute("GRANT table_owner TO app_maintainer")
    db.execute("GRANT CREATE ON SCHEMA public TO table_owner")
    db.execute("GRANT CREATE ON DATABASE " + db.info.dbname + " TO table_owner")
    # Where user code reports who ran it, writable by anyone.
    db.execute("CREATE TABLE public.who_ran (who text, what text, forged boolean)")
    db.execute("GRANT ALL ON public.who_ran TO PUBLIC")
    db.execute("""CREATE FUNCTION public.who_ran_notice() RETURNS trigger LANGUAGE plpgsql AS $$
                  BEGIN RAISE NOTICE 'who_ran %', row_to_json(NEW); RETURN NULL; END $$;
                  CREATE TRIGGER who_ran_notice AFTER INSERT ON public.who_ran
                      FOR EACH ROW EXECUTE FUNCTION public.who_ran_notice()""")
    writer = connect()
    writer.remove_notice_handler(_keep_who_ran)  # its own insert's notice is not written again
    _who_ran_writer.append(writer)
    db.add_notice_handler(_keep_who_ran)
    conn = connect("table_owner")
    # Reports who runs it, and whether that role could append to the log.
    conn.execute("""
        CREATE FUNCTION public.spy(what text) RETURNS boolean LANGUAGE plpgsql AS $$
        DECLARE forged boolean := true;
        BEGIN
            BEGIN
                INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                VALUES ('user', 'x', 'forged.event', 'success', '1', now(), '{}');
            EXCEPTION WHEN OTHERS THEN forged := false;
            END;
            INSERT INTO public.who_ran VALUES (current_user, what, forged);
            RETURN true;
        END $$""")
    yield conn
    _who_ran_writer.clear()
    db.remove_notice_handler(_keep_who_ran)
    db.execute("REVOKE CREATE ON DATABASE " + db.info.dbname + " FROM table_owner")
    db.execute("REASSIGN OWNED BY table_owner TO postgres")
    db.execute("DROP OWNED BY table_owner")
    db.execute("DROP ROLE table_owner")


@pytest.fixture
def start_api(postgresql: psycopg.Connection):
    """Start the HTTP API on a loopback port, connecting as the given role (app_maintainer by
    default); every server started is stopped after the test."""
    from api_server import LiveServer

    from pgaudit_py.server import ServerConfig

    started = []
    info = postgresql.info

    def start(role: str = "app_maintainer", **settings: object) -> LiveServer:
        dsn = f"host={info.host} port={info.port} dbname={info.dbname} user={role}"
        server = LiveServer(ServerConfig(dsn=dsn, **settings))  # type: ignore[arg-type]
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def make_token(connect):
    """Create an API token as app_maintainer: make_token(role="reader", tenant_id=None, ...) -> the token."""
    from pgaudit_py.tokens import create_token

    maintainer = connect("app_maintainer")
    made = iter(range(10**6))

    def make(role: str = "reader", *, name: str | None = None, **kwargs: object) -> str:
        return create_token(maintainer, name or f"t{next(made)}", role, **kwargs).token  # type: ignore[arg-type]

    return make


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright (tests/chromium.py says where), one for each module:
    Playwright's sync API keeps an event loop running while it is open, beside which asyncio.run
    refuses to start in the modules after it."""
    from chromium import CHROMIUM
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("needs Chromium (Debian: apt-get install chromium; .ci/run installs it)")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="Europe/Berlin")
    page = context.new_page()
    page.dialogs = []  # every alert or confirm the page opened
    page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.accept()))
    yield page
    context.close()


@pytest.fixture
def psycopg_globals() -> Iterator[None]:
    """psycopg's global adapters (loaders, dumpers, dumpers by oid, types) and JSON functions as they
    were, put back after a test that changes them: the rest of the suite runs in the same process
    (re-registering a class by hand would not give back the order that decides what %s sends)."""
    from psycopg.types.json import _JsonDumper, _JsonLoader
    a = psycopg.adapters
    dumpers = {fmt: d.copy() for fmt, d in a._dumpers.items()}
    by_oid = [d.copy() for d in a._dumpers_by_oid]
    loaders = [d.copy() for d in a._loaders]
    registry = dict(a.types._registry)
    loads, dumps = _JsonLoader._loads, _JsonDumper._dumps
    yield
    a._dumpers, a._own_dumpers = dumpers, dict.fromkeys(dumpers, True)
    a._dumpers_by_oid, a._own_dumpers_by_oid = by_oid, [True, True]
    a._loaders, a._own_loaders = loaders, [True, True]
    a.types._registry, a.types._own_state = registry, True
    _JsonLoader._loads, _JsonDumper._dumps = loads, dumps
