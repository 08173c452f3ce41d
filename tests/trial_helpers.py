"""What the attacker's trials (tests/test_trust_attacks_*.py) share: acting as the owner role,
sealing and re-installing as an operator would, and reading what status and both verifiers say."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from contextlib import contextmanager, suppress

import psycopg

from pgaudit_py import enable_tracking, install, seal, status
from pgaudit_py.chain import verify_chain
from pgaudit_py.install_script import install_script
from pgaudit_py.tempdb import find_binary


def as_owner(db: psycopg.Connection, statements: str) -> None:
    """What a member of audit_owner may do (its rights, none of the superuser's)."""
    try:
        db.execute(f"SET ROLE audit_owner; {statements}")
    finally:
        db.execute("RESET ROLE")


def owner_tries(db: psycopg.Connection, statements: str) -> str | None:
    """As the owner role; the error's first line when refused, else None."""
    try:
        as_owner(db, statements)
        return None
    except psycopg.Error as e:
        with suppress(Exception):
            db.execute("RESET ROLE")
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"


def owner_publishes(db: psycopg.Connection, statements: str) -> bool:
    """The owner role, while it may create in the database (the database's owner, a member of the owner
    role, installed the package), runs statements; the right to create is taken back after.
    False when refused."""
    db.execute(f"GRANT CREATE ON DATABASE {db.info.dbname} TO audit_owner")
    try:
        as_owner(db, statements)
        return True
    except psycopg.Error:
        db.execute("RESET ROLE")
        return False
    finally:
        db.execute(f"REVOKE CREATE ON DATABASE {db.info.dbname} FROM audit_owner")


def problems_of(db: psycopg.Connection, schema: str = "audit") -> list[str]:
    return status(db, schema).problems


def verified(db: psycopg.Connection, schema: str = "audit") -> tuple[bool, str | None]:
    return tuple(db.execute(f"SELECT ok, problem FROM {schema}.verify()").fetchone())  # type: ignore[return-value]


def both_verifiers(db: psycopg.Connection, schema: str = "audit") -> tuple[bool, bool]:
    return verified(db, schema)[0], verify_chain(db, audit_schema=schema).ok


def seal_all(db: psycopg.Connection, schema: str = "audit") -> str | None:
    """Seal until nothing moves; the first failure's text, if any."""
    try:
        while seal(db, audit_schema=schema).sealed:
            pass
    except Exception as e:  # noqa: BLE001
        with suppress(Exception):
            db.execute("ROLLBACK")
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    return None


def big_hex(n_bytes: int) -> str:
    """Random hex: neither pglz nor lz4 finds repeats to compress."""
    return os.urandom(n_bytes).hex()


def quarantined_kinds(db: psycopg.Connection, like: str) -> list[str]:
    return [r[0] for r in db.execute("SELECT kind FROM audit.quarantine WHERE kind LIKE %s ORDER BY intake_id", [like])]


def captured(db: psycopg.Connection, kind: str) -> int:
    """Events of this kind, sealed or pending (audit.events shows both)."""
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = %s", [kind]).fetchone()[0]


def tracked_acct(attacker: psycopg.Connection, connect, prefix: str, *, baseline: bool = False) -> None:
    """public.<prefix>_acct (id, v, note), two rows, owned by the attacker (a table owner), tracked."""
    attacker.execute(f"""CREATE TABLE public.{prefix}_acct (id int PRIMARY KEY, v int, note text);
                         GRANT ALL ON public.{prefix}_acct TO app_writer;
                         INSERT INTO public.{prefix}_acct (id, v) VALUES (1, 0), (2, 0)""")
    enable_tracking(connect("app_maintainer"), f"public.{prefix}_acct", baseline=baseline)


def replica_mode_named(db: psycopg.Connection) -> list[str]:
    """What status says of session_replication_role or replica mode."""
    st = status(db)
    return [p for p in st.problems + st.warnings if "session_replication_role" in p or "replica" in p]


def drop_publications(db: psycopg.Connection, prefix: str) -> None:
    for (name,) in db.execute("SELECT pubname FROM pg_publication WHERE pubname LIKE %s", [f"{prefix}%"]).fetchall():
        db.execute(f'DROP PUBLICATION IF EXISTS "{name.replace(chr(34), chr(34) * 2)}"')


def reinstall(db: psycopg.Connection, schema: str = "audit") -> str | None:
    """What status asks for: the installer again; its error's first line if it fails."""
    try:
        install(db, schema)
        return None
    except Exception as e:  # noqa: BLE001
        with suppress(Exception):
            db.execute("ROLLBACK")
        with suppress(Exception):
            db.execute("RESET ROLE")
        return f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"


def script_reinstall(db: psycopg.Connection) -> str | None:
    """The psql script path: install_script's output applied with psql; its stderr tail if it fails."""
    try:
        script = install_script(db, "audit")
    except Exception as e:  # noqa: BLE001
        return f"install_script: {type(e).__name__}: {str(e).splitlines()[0][:200]}"
    info = db.info
    done = subprocess.run([find_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", info.host,
                           "-p", str(info.port), "-U", info.user, "-d", info.dbname, "-f", "-"],
                          input=script, capture_output=True, text=True, timeout=300)
    return None if done.returncode == 0 else done.stderr[-400:]


class TableOwnerKit:
    """A trial's sessions, one per role: a table owner's (`<prefix>_owner`, whose tables the maintainer
    may track), a plain login's with CREATE on public (`<prefix>_mallory`), the writer's, the reader's
    and the maintainer's; and the history functions as the reader calls them."""

    def __init__(self, db: psycopg.Connection, connect, prefix: str):
        self.db = db
        self._connect = connect
        self.prefix = prefix

    def conn(self, role: str | None = None, **kwargs) -> psycopg.Connection:
        return self._connect(role, **kwargs)

    def now(self):
        return self.db.execute("SELECT clock_timestamp()").fetchone()[0]

    def tick(self):
        """A moment strictly between what happened before and what happens after."""
        time.sleep(0.01)
        at = self.now()
        time.sleep(0.01)
        return at

    def state(self, table: str, key: str, at, conn=None):
        conn = conn or self.reader
        try:
            row = conn.execute("SELECT state, image FROM audit.row_state_as_of(%s::regclass, %s, %s)",
                               [table, key, at]).fetchone()
            return row[0], row[1]
        except psycopg.Error as e:
            return "refused", e.sqlstate

    def as_of(self, table: str, key: str, at):
        try:
            return self.reader.execute("SELECT audit.row_as_of(%s::regclass, %s, %s)", [table, key, at]).fetchone()[0]
        except psycopg.Error as e:
            return ("refused", e.sqlstate)

    def history(self, table: str, key: str):
        try:
            return [r[0] for r in self.reader.execute(
                "SELECT kind FROM audit.row_history(%s::regclass, %s)", [table, key])]
        except psycopg.Error as e:
            return ("refused", e.sqlstate)


@contextmanager
def table_owner_kit(db: psycopg.Connection, connect, prefix: str, kit_class=TableOwnerKit):
    """Makes `<prefix>_owner` (CREATE on public and on the database; app_maintainer a member of it) and
    `<prefix>_mallory` (CREATE on public), yields the kit with a session of each role, and drops both
    roles and all they own afterwards: a test leaves no role or membership in the cluster."""
    name = db.info.dbname
    owner, mallory = f"{prefix}_owner", f"{prefix}_mallory"
    db.execute(f"CREATE ROLE {owner} LOGIN")
    db.execute(f"CREATE ROLE {mallory} LOGIN")
    try:
        db.execute(f"GRANT {owner} TO app_maintainer")
        db.execute(f"GRANT CREATE ON SCHEMA public TO {owner}, {mallory}")
        db.execute(f"GRANT CREATE ON DATABASE {name} TO {owner}")
        kit = kit_class(db, connect, prefix)
        kit.owner = kit.conn(owner)
        kit.mallory = kit.conn(mallory)
        kit.writer = kit.conn("app_writer")
        kit.reader = kit.conn("app_reader")
        kit.maint = kit.conn("app_maintainer")
        yield kit
    finally:
        with suppress(Exception):
            db.execute("RESET ROLE")
        db.execute(f"REVOKE CREATE ON DATABASE {name} FROM {owner}")
        for role in (owner, mallory):
            with suppress(psycopg.Error):
                db.execute(f"REASSIGN OWNED BY {role} TO {db.info.user}")
            with suppress(psycopg.Error):
                db.execute(f"DROP OWNED BY {role}")
        for role in (owner, mallory):
            with suppress(psycopg.Error):
                db.execute(f"REVOKE {role} FROM app_maintainer")
            db.execute(f"DROP ROLE IF EXISTS {role}")


def acct(kit: TableOwnerKit, table: str | None = None, *, columns: str = "", rows: str = "(1, 0), (2, 0)",
         baseline: bool = False, **options) -> None:
    """The owner's table `<prefix>_acct (id int PRIMARY KEY, v int, note text)` with two rows (or `rows`),
    written by the writer, tracked by the maintainer."""
    table = table or f"{kit.prefix}_acct"
    kit.owner.execute(f"""CREATE TABLE public.{table} (id int PRIMARY KEY, v int, note text{columns});
                          GRANT ALL ON public.{table} TO app_writer;
                          INSERT INTO public.{table} (id, v) VALUES {rows}""")
    enable_tracking(kit.maint, f"public.{table}", baseline=baseline, **options)


def n_events(db: psycopg.Connection, kind: str) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = %s", [kind]).fetchone()[0]


def sqlstate_of(conn: psycopg.Connection, statement: str, params=None) -> str | None:
    try:
        conn.execute(statement, params)
        return None
    except psycopg.Error as e:
        return e.sqlstate


def system_texts(db: psycopg.Connection) -> list[str]:
    return [f"{r[0]} {r[1]} {r[2]}" for r in db.execute(
        "SELECT kind, target_id, payload::text FROM audit.events WHERE origin = 'system' ORDER BY seq NULLS LAST, intake_id")]


def forget_django_pools() -> None:
    """Close every connection pool Django keeps. It keeps them by alias, in a dict of the backend's class,
    across wrappers and settings: a pool an earlier test made for its own database, since dropped,
    would serve the next test that asks for a pool, and close_pool() on a wrapper whose settings ask
    for none leaves it there."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    for pool in list(DatabaseWrapper._connection_pools.values()):
        with suppress(Exception):
            pool.close()
    DatabaseWrapper._connection_pools.clear()


def dj_who(request) -> dict[str, str | None]:
    """The trials' Django context function: the actor and tenant a request's headers name."""
    return {"actor_id": request.headers.get("x-user"), "tenant_id": request.headers.get("x-tenant")}


def dj_record(kind: str, target: str | None = None) -> None:
    """audit.record through Django's own connection, as a view or a job would."""
    from django.db import connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT audit.record(kind => %s, target_id => %s)", [kind, target])


@contextmanager
def django_test_client(db: psycopg.Connection, urlconf: str, extra: dict | None = None, **client_options):
    """A Django test client for this test's database, with the middleware, the module `urlconf`'s
    `urlpatterns` and `dj_who` in force. Django is configured once a process (perhaps first by another
    test module): this points it at the database, and closes what the test opened on the way out."""
    import django
    from django.conf import settings
    from django.db import connections
    from django.test import Client
    from django.test.utils import override_settings

    info = db.info
    conf = {"ENGINE": "django.db.backends.postgresql", "NAME": info.dbname, "USER": "app_writer",
            "HOST": info.host, "PORT": str(info.port), "CONN_MAX_AGE": None, **(extra or {})}
    middleware = ["pgaudit_py.integrations.django.AuditContextMiddleware"]
    if not settings.configured:
        settings.configure(DEBUG=False, ALLOWED_HOSTS=["*"], ROOT_URLCONF=urlconf, INSTALLED_APPS=[], USE_TZ=True,
                           MIDDLEWARE=middleware, PGAUDIT_CONTEXT="trial_helpers.dj_who", DATABASES={"default": conf})
        django.setup()
    else:
        connections.close_all()
        forget_django_pools()
        settings.DATABASES["default"].clear()
        settings.DATABASES["default"].update(conf)
        connections.settings = connections.configure_settings(settings.DATABASES)
        with suppress(AttributeError, KeyError):
            del connections["default"]
    try:
        with override_settings(ROOT_URLCONF=urlconf, PGAUDIT_CONTEXT="trial_helpers.dj_who", MIDDLEWARE=middleware):
            yield Client(**client_options)
    finally:
        connections.close_all()
        forget_django_pools()


@contextmanager
def login(db, connect, name: str, group: str, settings: dict[str, str]):
    """A login role `name` in `group`, with settings stored for it in this database only; dropped after."""
    db.execute(f"CREATE ROLE {name} LOGIN")
    try:
        db.execute(f"GRANT {group} TO {name}")
        for k, v in settings.items():
            db.execute(f"ALTER ROLE {name} IN DATABASE {db.info.dbname} SET {k} = {v}")
        yield connect(name)
    finally:
        with suppress(psycopg.Error):
            db.execute(f"REASSIGN OWNED BY {name} TO {db.info.user}")
        with suppress(psycopg.Error):
            db.execute(f"DROP OWNED BY {name}")
        with suppress(psycopg.Error):
            db.execute(f"ALTER ROLE {name} IN DATABASE {db.info.dbname} RESET ALL")
        db.execute(f"DROP ROLE IF EXISTS {name}")


# What the trials since the eighty-first share (tests/test_trust_attacks_81.py to 83).

def json_marker(text: str) -> dict:
    """The marker the capture stores for a json value of this text that jsonb cannot hold."""
    b = text.encode()
    return {"$omitted": {"bytes": len(b), "sha256": hashlib.sha256(b).hexdigest()}}


def track_new_table(kit: TableOwnerKit, name: str, cols: str, **opts) -> None:
    """public.<name> made by the kit's owner, writable by app_writer, tracked with these options."""
    kit.owner.execute(f"CREATE TABLE public.{name} ({cols}); GRANT ALL ON public.{name} TO app_writer")
    enable_tracking(kit.maint, f"public.{name}", **opts)


def try_write(conn: psycopg.Connection, sql: str, params=None) -> str | None:
    """None, or the refusal's SQLSTATE and first line."""
    try:
        conn.execute(sql, params)
        return None
    except psycopg.Error as e:
        return f"{e.sqlstate}: {str(e).splitlines()[0][:160]}"


def named_in_status(kit: TableOwnerKit, table: str) -> bool:
    return any(table in p for p in problems_of(kit.db))


def quarantine_empty(db: psycopg.Connection) -> bool:
    return db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0] == 0


def try_enable(kit: TableOwnerKit, table: str, **opts) -> str | None:
    """None, or the refusal of enable_tracking of public.<table> by the kit's maintainer: SQLSTATE and first line."""
    try:
        enable_tracking(kit.maint, f"public.{table}", **opts)
        return None
    except psycopg.Error as e:
        return f"{e.sqlstate}: {str(e).splitlines()[0][:160]}"
    except Exception as e:  # noqa: BLE001  (the package's own errors carry the database's cause)
        cause = getattr(e, "__cause__", None) or getattr(e, "__context__", None)
        st = getattr(cause, "sqlstate", None) or getattr(e, "sqlstate", None)
        return f"{st}: {str(e).splitlines()[0][:160]}"


EVENT_FIELDS = ["iid", "kind", "target_id", "tenant_id", "actor_id", "row_before", "row_after", "payload", "changed",
                "origin"]


def events_under(db: psycopg.Connection, prefix: str) -> list[dict]:
    """The events whose kind starts with prefix, in their order, the row images as stored text."""
    cur = db.execute("SELECT intake_id, kind, target_id, tenant_id, actor_id, row_before::text, row_after::text, payload,"
                     " changed, origin FROM audit.events WHERE starts_with(kind, %s) ORDER BY seq NULLS LAST, intake_id",
                     [prefix])
    return [dict(zip(EVENT_FIELDS, r, strict=True)) for r in cur]


def kinds_under(db: psycopg.Connection, prefix: str) -> list[str]:
    """The last part of the kinds of the events under prefix (insert, update, ...), in their order."""
    return [r[0].rsplit(".", 1)[1] for r in db.execute(
        "SELECT kind FROM audit.events WHERE starts_with(kind, %s) ORDER BY seq NULLS LAST, intake_id", [prefix])]


def is_tracked(kit: TableOwnerKit, table: str) -> bool:
    return kit.db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = to_regclass(%s)",
                          [table if "." in table else f"public.{table}"]).fetchone()[0] == 1


def tamper(db: psycopg.Connection, statement: str) -> None:
    """As a superuser with every ordinary trigger off (replica mode), in one transaction."""
    db.execute("BEGIN")
    try:
        db.execute("SET LOCAL session_replication_role = replica")
        db.execute(statement)
        db.execute("COMMIT")
    except Exception:
        db.execute("ROLLBACK")
        raise


def dsn_of(db, dbname: str | None = None, user: str | None = None) -> str:
    """A libpq DSN for another database or role of the test's cluster."""
    i = db.info
    return f"host={i.host} port={i.port} dbname={dbname or i.dbname} user={user or i.user}"


def drop_made_under(db, prefix: str) -> None:
    """Drop the schemas and roles a test made under a prefix (an install of its own schema, say)."""
    for (name,) in db.execute("SELECT nspname FROM pg_namespace WHERE starts_with(nspname, %s)", (prefix,)).fetchall():
        db.execute(f'DROP SCHEMA "{name}" CASCADE')
    roles = [r[0] for r in db.execute("SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s)", (prefix,))]
    for name in roles:
        with suppress(psycopg.Error):
            db.execute(f'REASSIGN OWNED BY "{name}" TO {db.info.user}')
        with suppress(psycopg.Error):
            db.execute(f'DROP OWNED BY "{name}"')
    for name in roles:
        with suppress(psycopg.Error):
            db.execute(f'DROP ROLE "{name}"')
