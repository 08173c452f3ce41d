"""Installs and upgrades pgaudit_py in a database, and checks that an installation is intact.

Migrations (tables, columns, indexes) run through yoyo with search_path set to the target
schema; then every file in sql/ (functions, views, triggers, grants) is re-applied in one
transaction with the schema name filled in. Everything is created as the schema's owner role.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.pq import PipelineStatus
from psycopg.types.json import Jsonb
from yoyo import read_migrations
from yoyo.backends.core.postgresql import PostgresqlPsycopgBackend
from yoyo.connections import parse_uri
from yoyo.migrations import MigrationList

from pgaudit_py.deep_json import tolerant_dumps
from pgaudit_py.errors import InstallError, InvalidArgument
from pgaudit_py.secrets import exposure_warnings
from pgaudit_py.session import tuples
from pgaudit_py.transactions import synced

SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,39}")  # fullmatch: $ would let a final newline pass
ROLE_SUFFIXES = ("owner", "writer", "reader", "maintainer", "secrets", "capture", "sealer", "pruner", "sandbox")
# NOLOGIN roles that own the functions the guards and the sandbox rely on: nobody may act as them
# (status checks), so the installer holds them only while it creates those functions. The owner role
# (also NOLOGIN) is the one member of the capture role: it hands generated capture functions over.
FUNCTION_ROLES = ("capture", "sealer", "pruner", "sandbox")
# The functions the files make as the function roles, by identity ("capture." in the capture role's
# schema). One held by another role (releases before 0.2 made seal() and the pruner's as the owner
# role; the owner role, the schema's owner, may drop one and make it anew as itself) is dropped
# before the files run, which make it anew: handed over, its body would run as the sealer, the
# pruner or the sandbox until the file replaced it (tests/test_trust_attacks_68.py: an index
# rebuilt on the way). The capture role's are handed over: it may do nothing the owner role may
# not. By identity, not by name: an overload the owner role makes with one of these names stays
# its own (tests/test_trust_attacks_67.py). tests/test_hand_over.py checks the list against what
# an install makes.
FUNCTION_ROLES_MAKE = {"seal(integer)": "sealer", "prune_events(interval, integer)": "pruner",
                       "delete_archived(text)": "pruner", "_row_images(anyarray)": "sandbox",
                       "_row_json(anyarray)": "sandbox", "_baseline_images(oid, tid, tid)": "sandbox",
                       "capture._capture_truncate()": "capture",
                       "capture._take_baseline(oid, uuid)": "capture"}
# One installer at a time per database, whatever the schema: roles are shared. An advisory lock, as
# the schema may not exist yet; any role that may connect can take its key too, so an installer waits
# for it at most _INSTALL_LOCK_WAIT seconds, then names who holds it.
_INSTALL_LOCK = 0x70_67_61_75  # "pgau"
_INSTALL_LOCK_WAIT = 60.0


def _resource_dir(name: str) -> Path:
    """sql/ and migrations/ ship inside the wheel; in a source checkout they sit beside it."""
    here = Path(__file__).resolve().parent
    for candidate in (here / name, here.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"pgaudit_py cannot find its {name}/ directory")


def sql_dir() -> Path:
    """The shipped SQL files (functions, views, grants; re-applied on every install, in name order),
    as templates: @schema@ and @pgcrypto@ stand for the schema and pgcrypto's schema."""
    return _resource_dir("sql")


def migrations_dir() -> Path:
    """The shipped migrations (tables and indexes, yoyo-migrations files, applied once, in name
    order, with the search_path set to the audit schema)."""
    return _resource_dir("migrations")


def package_version() -> str:
    try:
        return metadata.version("pgaudit-py")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def check_schema_name(schema: str) -> str:
    if not SCHEMA_NAME.fullmatch(schema):
        raise InvalidArgument(f"invalid schema name {schema!r}: use lower-case letters, digits "
                              "and _, starting with a letter or _, at most 40 characters")
    return schema


def role_names(schema: str) -> dict[str, str]:
    return {suffix: f"{schema}_{suffix}" for suffix in ROLE_SUFFIXES}


def rendered_sql_files(schema: str, subdirectory: str = "", pgcrypto_schema: str = "public",
                       server_keys: bool = False) -> list[tuple[str, str]]:
    """(file name, SQL text with the schema and pgcrypto's schema filled in), in the order they
    are applied.

    sql/*.sql run as the owner role (switching to a function role where they say so);
    sql/superuser/*.sql (event triggers, key-file grants) as the installing superuser, and only
    when it is one.
    """
    crypto = sql.Identifier(pgcrypto_schema).as_string(None)
    return [(path.name, path.read_text().replace("@schema@", schema).replace("@pgcrypto@", crypto)
             .replace("@server_keys@", "true" if server_keys else "false"))
            for path in sorted((sql_dir() / subdirectory).glob("*.sql"))]


def migration_ids() -> list[str]:
    return sorted(p.stem for p in migrations_dir().glob("*.sql"))


@dataclass(frozen=True)
class InstallReport:
    schema: str
    version: str
    migrations: list[str]
    sql_files: list[str]
    created_roles: list[str]
    dry_run: bool
    changed: bool
    # The installing role became a member of an owner role that was already there: it may act as the
    # owner in every database of the cluster that uses this schema name.
    joined_owner: bool = False


@dataclass(frozen=True)
class InstallStatus:
    schema: str
    installed_version: str | None
    applied_migrations: list[str]
    pending_migrations: list[str]
    problems: list[str]
    warnings: list[str] = field(default_factory=list)  # not broken, but worth knowing

    @property
    def intact(self) -> bool:
        return self.installed_version is not None and not self.problems and not self.pending_migrations


class _GivenConnectionBackend(PostgresqlPsycopgBackend):  # type: ignore[misc]
    """yoyo's psycopg backend, on the installer's own connection instead of a new one."""

    def __init__(self, conn: psycopg.Connection, schema: str):
        self._given = conn
        self.schema = schema
        # yoyo reads the database name from its URI; the connection itself is the given one.
        super().__init__(parse_uri(f"postgresql+psycopg:///{conn.info.dbname}"), "_yoyo_migration")

    def connect(self, dburi: object) -> psycopg.Connection:
        return self._given

    @contextmanager
    def copy(self) -> Iterator[_GivenConnectionBackend]:
        # yoyo runs each migration on a copy it then closes: keep to the one connection, in
        # its role and search_path.
        yield self

    # yoyo finds out by trying and failing, which leaves ERROR lines in the server's log on every
    # install: a DBA reading it would think something went wrong. Ask instead.
    def _check_transactional_ddl(self) -> bool:
        return True  # PostgreSQL's DDL is transactional

    def create_lock_table(self) -> None:
        exists = tuples(self._given).execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                                             (f"{sql.Identifier(self.schema).as_string(self._given)}.yoyo_lock",)).fetchone()
        if not (exists and exists[0]):
            super().create_lock_table()


@contextmanager
def _autocommit(conn: psycopg.Connection) -> Iterator[None]:
    synced(conn)
    if conn.autocommit:  # left as it is (pipeline mode refuses even setting it again)
        yield
        return
    conn.autocommit = True
    try:
        yield
    finally:
        conn.autocommit = False


@contextmanager
def _installing(conn: psycopg.Connection) -> Iterator[None]:
    """Autocommit, and the role and search_path the install sets for itself undone after it."""
    with _autocommit(conn):
        try:
            yield
        finally:
            conn.execute("RESET ROLE")
            conn.execute("RESET search_path")


# A superuser's session that runs as a lesser role, or goes back to one at RESET ROLE (which the
# install does): the install would be that role's, with no event triggers, and that role made a member
# of the package's owner. A database's owner may store the role every session there starts as (ALTER
# DATABASE ... SET role); only a value given when connecting outranks it. Asked before and after a
# RESET ROLE that is then undone.
# The role that logged in is pg_stat_activity's: SET SESSION AUTHORIZATION changes session_user too.
BORROWED_ROLE = ("SELECT current_user::pg_catalog.text WHERE NOT (SELECT rolsuper FROM pg_catalog.pg_roles"
                 " WHERE rolname OPERATOR(pg_catalog.=) current_user) AND (SELECT rolsuper FROM pg_catalog.pg_roles"
                 " WHERE oid OPERATOR(pg_catalog.=) coalesce((SELECT usesysid FROM pg_catalog.pg_stat_activity"
                 " WHERE pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()),"
                 " (SELECT oid FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) session_user)))")


def refuse_borrowed_role(conn: psycopg.Connection) -> None:
    borrowed = tuples(conn).execute(BORROWED_ROLE).fetchone()
    with conn.transaction(force_rollback=True):  # and the RESET ROLE with it
        conn.execute("RESET ROLE")
        borrowed = borrowed or tuples(conn).execute(BORROWED_ROLE).fetchone()
    if borrowed:
        raise InstallError(f"this session logged in as a superuser but runs as role {borrowed[0]}, which is not"
                           " one, or goes back to it at RESET ROLE: the install would be that role's, without a"
                           " superuser install's guards",
                           hint="Remove the setting (ALTER DATABASE ... RESET role, ALTER ROLE ... RESET role), or"
                                " connect with PGOPTIONS='-c role=<the superuser>'; RESET SESSION AUTHORIZATION;"
                                " or connect as that role to install as it")


@contextmanager
def _install_lock(conn: psycopg.Connection) -> Iterator[None]:
    try:
        with conn.transaction():  # a session lock outlives the transaction; its lock_timeout does not
            tuples(conn).execute("SELECT pg_catalog.set_config('lock_timeout', %s, true)",
                                 (f"{max(1, round(_INSTALL_LOCK_WAIT * 1000))}ms",))
            tuples(conn).execute("SELECT pg_catalog.pg_advisory_lock(%s)", (_INSTALL_LOCK,))
    except psycopg.errors.LockNotAvailable:
        holders = tuples(conn).execute("""
            SELECT l.pid, a.usename
              FROM pg_catalog.pg_locks l LEFT JOIN pg_catalog.pg_stat_activity a
                ON a.pid OPERATOR(pg_catalog.=) l.pid
             WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted AND l.objsubid OPERATOR(pg_catalog.=) 1
               AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                          WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
               AND ((l.classid::bigint OPERATOR(pg_catalog.<<) 32) OPERATOR(pg_catalog.|) l.objid::bigint)
                           OPERATOR(pg_catalog.=) %s
             ORDER BY l.pid""", (_INSTALL_LOCK,)).fetchall()
        held_by = ", ".join(f"pid {pid} (role {role})" for pid, role in holders) or "a session that has let go since"
        raise InstallError(f"waited {_INSTALL_LOCK_WAIT:g} s for the install lock of this database, held by {held_by}",
                           hint="Wait for an installer to finish; a session that is not one, end it "
                                "(SELECT pg_terminate_backend(pid)) and run the installer again.") from None
    try:
        yield
    finally:
        tuples(conn).execute("SELECT pg_catalog.pg_advisory_unlock(%s)", (_INSTALL_LOCK,))


def _schema_exists(conn: psycopg.Connection, schema: str) -> bool:
    return tuples(conn).execute("SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname OPERATOR(pg_catalog.=) %s",
                                (schema,)).fetchone() is not None


def _is_ours(conn: psycopg.Connection, schema: str) -> bool:
    """Owned by the schema's owner role, which only the installer makes owner: a schema another role
    made, even holding tables of the package's names, is not an installation to upgrade or ask."""
    row = tuples(conn).execute(
        "SELECT n.nspowner OPERATOR(pg_catalog.=) r.oid FROM pg_catalog.pg_namespace n, pg_catalog.pg_roles r"
        " WHERE n.nspname OPERATOR(pg_catalog.=) %s AND r.rolname OPERATOR(pg_catalog.=) %s",
        (schema, role_names(schema)["owner"])).fetchone()
    return bool(row and row[0])


# Every catalog of objects that live in a schema: any of them, made by another role before the
# install, would be found by the package's own names (a type, an operator, a collation) or sit
# beside its objects. A table's row type and an array type come with their table or type.
_SCHEMA_OBJECTS = [
    ("pg_class", "relname", "relnamespace", ""), ("pg_proc", "proname", "pronamespace", ""),
    ("pg_type", "typname", "typnamespace", " AND o.typrelid OPERATOR(pg_catalog.=) 0 AND NOT EXISTS"
     " (SELECT FROM pg_catalog.pg_type e WHERE e.typarray OPERATOR(pg_catalog.=) o.oid)"),
    ("pg_operator", "oprname", "oprnamespace", ""), ("pg_collation", "collname", "collnamespace", ""),
    ("pg_conversion", "conname", "connamespace", ""), ("pg_opclass", "opcname", "opcnamespace", ""),
    ("pg_opfamily", "opfname", "opfnamespace", ""), ("pg_statistic_ext", "stxname", "stxnamespace", ""),
    ("pg_ts_config", "cfgname", "cfgnamespace", ""), ("pg_ts_dict", "dictname", "dictnamespace", ""),
    ("pg_ts_parser", "prsname", "prsnamespace", ""), ("pg_ts_template", "tmplname", "tmplnamespace", ""),
    ("pg_extension", "extname", "extnamespace", "")]


def _foreign_objects(conn: psycopg.Connection, schema: str) -> list[str]:
    """Up to five objects of any kind in a schema that is not the package's."""
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT o.{name}::pg_catalog.text FROM pg_catalog.{catalog} o JOIN pg_catalog.pg_namespace n"
                " ON n.oid OPERATOR(pg_catalog.=) o.{space} WHERE n.nspname OPERATOR(pg_catalog.=) %(s)s{more}").format(
            name=sql.Identifier(name), catalog=sql.Identifier(catalog), space=sql.Identifier(space),
            more=sql.SQL(more))  # constant SQL of this module
        for catalog, name, space, more in _SCHEMA_OBJECTS)
    rows = tuples(conn).execute(sql.SQL("{} ORDER BY 1 LIMIT 5").format(query), {"s": schema}).fetchall()
    return [f"{schema}.{name}" for (name,) in rows]


def _refuse_foreign_schema(conn: psycopg.Connection, schema: str) -> None:
    """A schema of the package's names that another role made is never taken over: the role that
    made it could still create in it, with a statement open while the install runs, say, or have
    granted others that right."""
    capture = tuples(conn).execute("SELECT nspowner::pg_catalog.regrole::pg_catalog.text FROM pg_catalog.pg_namespace"
                                   " WHERE nspname OPERATOR(pg_catalog.=) %s",
                                   (capture_schema(schema),)).fetchone()
    if capture and capture[0] != role_names(schema)["capture"]:
        raise InstallError(f"schema {capture_schema(schema)!r} exists and pgaudit_py did not create it; install "
                           "into another schema with --schema NAME")
    if not _schema_exists(conn, schema) or _is_ours(conn, schema):
        return
    foreign = _foreign_objects(conn, schema)
    held = f"already holds objects that pgaudit_py did not create ({', '.join(foreign)})" if foreign else \
        "exists and pgaudit_py did not create it"
    raise InstallError(f"schema {schema!r} {held}; install into another schema with --schema NAME",
                       hint="pgaudit-install --schema my_audit ... (roles are then named my_audit_owner, ...)")


def _refuse_what_it_may_not_do(conn: psycopg.Connection, schema: str, server_keys: bool) -> None:
    """What only a superuser may do; what needs CREATE on the database (the package's schemas, and
    pgcrypto's when the database has none: a database's owner has it, a role with CREATEROLE alone
    not); pgcrypto on the server, when the database has none."""
    row = tuples(conn).execute(
        "SELECT r.rolsuper, pg_catalog.has_database_privilege(pg_catalog.current_database(), 'CREATE'),"
        " r.rolname::pg_catalog.text, pg_catalog.current_database(),"
        " EXISTS (SELECT FROM pg_catalog.pg_available_extensions WHERE name OPERATOR(pg_catalog.=) 'pgcrypto')"
        " FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) current_user").fetchone()
    assert row is not None
    superuser, may_create, me, database, pgcrypto_available = row
    if server_keys and not superuser:
        raise InstallError("server keys need a superuser install: only a superuser can let the owner role read "
                           "server files; nothing was created")
    needed = [name for name in (schema, capture_schema(schema)) if not _schema_exists(conn, name)]
    if not _has_pgcrypto(conn):
        if not pgcrypto_available:
            raise InstallError("the server has no pgcrypto extension to create; nothing was created",
                               hint="Install PostgreSQL's contrib package (postgresql-contrib), then run the "
                                    "installer again")
        needed += [crypto_schema(schema)] if not _schema_exists(conn, crypto_schema(schema)) else []
    if needed and not may_create:
        raise InstallError(f"role {me} may not create schemas in database {database} (it would make"
                           f" {', '.join(needed)}); nothing was created",
                           hint="Run the installer as a superuser, or as the database's owner with CREATEROLE")


def _create_schema(conn: psycopg.Connection, schema: str, owner: str) -> None:
    """The schema, made now by its owner role unless it is already the package's: never one that
    another role made meanwhile (CREATE SCHEMA waits for a concurrent one, then fails)."""
    exists = tuples(conn).execute("SELECT nspowner::pg_catalog.regrole::pg_catalog.text FROM pg_catalog.pg_namespace"
                                  " WHERE nspname OPERATOR(pg_catalog.=) %s", (schema,)).fetchone()
    if exists and exists[0] == owner:
        return
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
                sql.Identifier(schema), sql.Identifier(owner)))
    except (psycopg.errors.DuplicateSchema, psycopg.errors.UniqueViolation):
        raise InstallError(f"schema {schema!r} exists and pgaudit_py did not create it; install into "
                           "another schema with --schema NAME") from None


def _applied_migrations(conn: psycopg.Connection, schema: str) -> list[str]:
    exists = tuples(conn).execute("SELECT pg_catalog.to_regclass(%s) IS NOT NULL",
                                  (f"{schema}._yoyo_migration",)).fetchone()
    if not exists or not exists[0]:
        return []
    query = sql.SQL("SELECT migration_id FROM {}._yoyo_migration ORDER BY 1").format(sql.Identifier(schema))
    return [r[0] for r in tuples(conn).execute(query).fetchall()]


def _ensure_roles(conn: psycopg.Connection, schema: str) -> tuple[list[str], bool]:
    """NOLOGIN group roles; other databases of the cluster may have created them already. The roles
    created, and whether the installing role joined an owner role it did not create."""
    created = []
    roles = role_names(schema)
    for name in roles.values():
        if tuples(conn).execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) %s",
                                (name,)).fetchone():
            continue
        try:
            with conn.transaction():
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
            created.append(name)
        except psycopg.errors.DuplicateObject:
            pass  # created meanwhile by an installer in another database
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(roles["reader"]),
                                                   sql.Identifier(roles["maintainer"])))
    conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(roles["capture"]), sql.Identifier(roles["owner"])))
    joined = not _is_member(conn, roles["owner"])
    if joined:
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(roles["owner"])))
    return created, joined and roles["owner"] not in created


def _refuse_default_privileges(conn: psycopg.Connection, schema: str) -> None:
    """A role of the package with default privileges (ALTER DEFAULT PRIVILEGES FOR ROLE ..., set by
    whoever made the roles beforehand) would grant what it makes to their grantees: refused until
    they are removed, since only their maker knows whether they were meant."""
    rows = tuples(conn).execute(
        "SELECT DISTINCT d.defaclrole::pg_catalog.regrole::pg_catalog.text"
        " FROM pg_catalog.pg_default_acl d, pg_catalog.aclexplode(d.defaclacl) a"
        " WHERE d.defaclrole::pg_catalog.regrole::pg_catalog.text OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.text[])"
        " AND a.grantee OPERATOR(pg_catalog.<>) d.defaclrole ORDER BY 1",
        (list(role_names(schema).values()),)).fetchall()
    if rows:
        roles = ", ".join(r[0] for r in rows)
        raise InstallError(f"role {roles} has default privileges (ALTER DEFAULT PRIVILEGES), which would grant "
                           "what it makes to others",
                           hint="Remove them (pg_default_acl lists them): ALTER DEFAULT PRIVILEGES FOR ROLE ... "
                                "REVOKE ... FROM ...; then run the installer again.")


def _trusted_pgcrypto_schema(conn: psycopg.Connection) -> str:
    """Where pgcrypto is, once its owner is known to be as trusted as the installer: the extension's
    owner may drop it and put look-alikes in its place, which the owner role would then run. (Its
    functions are bound by oid, so renaming their schema changes nothing: sql/78_secrets.sql.)"""
    row = tuples(conn).execute(
        "SELECT n.nspname, r.rolname, r.rolsuper,"
        " (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user)"
        " FROM pg_catalog.pg_extension e"
        " JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) e.extnamespace"
        " JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) e.extowner"
        " WHERE e.extname OPERATOR(pg_catalog.=) 'pgcrypto'").fetchone()
    assert row is not None  # CREATE EXTENSION IF NOT EXISTS pgcrypto just ran
    schema, owner, owner_is_superuser, installer_is_superuser = row
    if installer_is_superuser and not owner_is_superuser:
        raise InstallError(f"pgcrypto was created by {owner}, who is not a superuser and could replace it with "
                           "functions the audit owner role would run",
                           hint="DROP EXTENSION pgcrypto (as its owner), then run the installer as a superuser: "
                                "it creates pgcrypto itself")
    return str(schema)


def _is_member(conn: psycopg.Connection, role: str) -> bool:
    row = tuples(conn).execute("SELECT pg_catalog.pg_has_role(current_user, %s, 'MEMBER')", (role,)).fetchone()
    return bool(row and row[0])


def crypto_schema(schema: str) -> str:
    """Where the installer puts pgcrypto when the database has none."""
    return f"{schema}_crypto"


def _has_pgcrypto(conn: psycopg.Connection) -> bool:
    return tuples(conn).execute("SELECT FROM pg_catalog.pg_extension"
                                " WHERE extname OPERATOR(pg_catalog.=) 'pgcrypto'").fetchone() is not None


def _create_pgcrypto(conn: psycopg.Connection, schema: str) -> None:
    """pgcrypto in a schema of its own, the installer's: where CREATE EXTENSION would put it, the
    first schema of the search_path (PostgreSQL 15's public is the database owner's), its owner could
    drop it, with the package's secrets functions (tests/test_trust_attacks_51.py)."""
    home = crypto_schema(schema)
    me = tuples(conn).execute("SELECT current_user::pg_catalog.text").fetchone()
    _create_schema(conn, home, str(me[0]) if me else "")
    conn.execute(sql.SQL("CREATE EXTENSION pgcrypto SCHEMA {}").format(sql.Identifier(home)))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO PUBLIC").format(sql.Identifier(home)))  # as public's was


def capture_schema(schema: str) -> str:
    """Where the capture role keeps its functions (the only schema it may create in)."""
    return f"{schema}_capture"


@contextmanager
def _acting_for_function_roles(conn: psycopg.Connection, schema: str) -> Iterator[None]:
    """Let the installer create functions as the function roles: it becomes a member of them (a
    superuser already may) and they may create in the schema, until the files have run (90_grants
    takes that back). The capture role's schema is its own."""
    roles = role_names(schema)
    joined = [roles[r] for r in FUNCTION_ROLES if not _is_member(conn, roles[r])]
    for role in joined:
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))
    conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA {} TO {}").format(
        sql.Identifier(schema), sql.SQL(", ").join(sql.Identifier(roles[r]) for r in FUNCTION_ROLES)))
    _create_schema(conn, capture_schema(schema), roles["capture"])
    yield
    for role in joined:
        conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(sql.Identifier(role)))


def _grant_temporary(conn: psycopg.Connection, owner: str) -> None:
    """Client-key mode holds a session's master keys in a temporary table of the owner role's
    (hold_master_key), where hardening may have revoked TEMPORARY from PUBLIC. Only a superuser or
    the database's owner may grant it; another installer leaves it to PUBLIC's."""
    database = tuples(conn).execute("SELECT pg_catalog.current_database()").fetchone()
    assert database is not None
    try:
        with conn.transaction():
            conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(
                sql.Identifier(database[0]), sql.Identifier(owner)))
    except psycopg.errors.InsufficientPrivilege:
        pass


def hand_over_statements(conn: psycopg.Connection, schema: str) -> list[str]:
    """Drops each function of FUNCTION_ROLES_MAKE held by another role than the sealer, the pruner or
    the sandbox it belongs to, and gives the capture role's to it; gives the intake's id sequence,
    which the owner role makes (migrations/0021_intake_ids_of_their_own.sql), to the sealer role,
    which nobody may act as: whoever moves it moves the order history is sealed in. A function in the
    package's schema held by the capture role, which makes none there, is the owner role's, its one
    member's, again (made anew as the capture role, the owner's function would run with the capture
    role's rights alone). The capture functions of releases before 0.2, the owner role's in the
    package's schema, move to the capture role and its schema, keeping their oids: triggers call them."""
    roles = role_names(schema)
    made = {f"{capture_schema(schema)}.{f.removeprefix('capture.')}" if f.startswith("capture.") else f"{schema}.{f}":
            roles[role] for f, role in FUNCTION_ROLES_MAKE.items()}
    rows = tuples(conn).execute(
        "SELECT pg_catalog.format('%%I.%%I(%%s)', n.nspname, p.proname, pg_catalog.oidvectortypes(p.proargtypes)),"
        " n.nspname, r.rolname"
        " FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace"
        " JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) p.proowner"
        " WHERE n.nspname OPERATOR(pg_catalog.=) ANY (%s) AND r.rolname OPERATOR(pg_catalog.=) ANY (%s)",
        ([schema, capture_schema(schema)], list(roles.values()))).fetchall()
    statements: list[str] = []
    for qualified, space, owner in rows:
        legacy_capture = (owner == roles["owner"]
                          and re.fullmatch(rf"{re.escape(schema)}\._capture_(\d+|truncate)\(\)", qualified) is not None)
        if legacy_capture:
            maker = roles["capture"]
        elif qualified in made:
            maker = made[qualified]
            if maker not in (owner, roles["capture"]):
                statements.append(sql.SQL("DROP ROUTINE {}").format(sql.SQL(qualified)).as_string(conn))
                continue
        elif owner == roles["capture"] and space == schema:
            maker = roles["owner"]
        else:
            maker = owner
        if maker != owner:
            statements.append(sql.SQL("ALTER ROUTINE {} OWNER TO {}").format(
                sql.SQL(qualified), sql.Identifier(maker)).as_string(conn))
        if legacy_capture:
            statements.append(sql.SQL("ALTER ROUTINE {} SET SCHEMA {}").format(
                sql.SQL(qualified), sql.Identifier(capture_schema(schema))).as_string(conn))
    statements.append(sql.SQL("ALTER SEQUENCE {}.event_intake_intake_id_seq OWNER TO {}").format(
        sql.Identifier(schema), sql.Identifier(roles["sealer"])).as_string(conn))
    return statements


def take_back_grants_statement(conn: psycopg.Connection, schema: str) -> str:
    """Takes back every grant on what the function roles own in the package's schemas (their
    functions, the sealer's sequence), which the files then grant again as the release does: the
    owner role may drop one (it owns the schema) and make it anew with grants of its own, which the
    hand-over would keep (tests/test_trust_attacks_65.py, _66.py). CASCADE: also what a grantee
    passed on by a grant option. The generated _capture_<oid> functions are left to their generator,
    which takes back their grants itself (_generate_capture, which 95_capture_functions.sql runs for
    each). A sequence made anew UNLOGGED, which a crash would start over, is made logged. Run after
    the hand-over."""
    roles = role_names(schema)
    return sql.SQL("""DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT DISTINCT 'ROUTINE' AS kind, p.oid::pg_catalog.regprocedure::pg_catalog.text AS object,
                    CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                         ELSE a.grantee::pg_catalog.regrole::pg_catalog.text END AS grantee  -- quoted as needed
               FROM pg_catalog.pg_proc p, pg_catalog.aclexplode(p.proacl) a
              WHERE p.pronamespace OPERATOR(pg_catalog.=) ANY (ARRAY[pg_catalog.to_regnamespace({schema}),
                                                                     pg_catalog.to_regnamespace({capture_schema})])
                AND p.proowner OPERATOR(pg_catalog.=) ANY ({function_roles}::pg_catalog.regrole[])
                AND NOT (p.pronamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace({capture_schema})
                         AND p.proname OPERATOR(pg_catalog.~) '^_capture_[0-9]+$')
                AND a.grantee OPERATOR(pg_catalog.<>) p.proowner
             UNION
             SELECT 'SEQUENCE', c.oid::pg_catalog.regclass::pg_catalog.text,
                    CASE WHEN a.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                         ELSE a.grantee::pg_catalog.regrole::pg_catalog.text END
               FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
              WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace({schema})
                AND c.relkind OPERATOR(pg_catalog.=) 'S'
                AND c.relowner OPERATOR(pg_catalog.=) ANY ({function_roles}::pg_catalog.regrole[])
                AND a.grantee OPERATOR(pg_catalog.<>) c.relowner LOOP
        EXECUTE pg_catalog.format('REVOKE ALL ON %s %s FROM %s CASCADE', r.kind, r.object, r.grantee);
    END LOOP;
    FOR r IN SELECT c.oid::pg_catalog.regclass AS object FROM pg_catalog.pg_class c
              WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.to_regnamespace({schema})
                AND c.relkind OPERATOR(pg_catalog.=) 'S' AND c.relpersistence OPERATOR(pg_catalog.=) 'u'
                AND c.relowner OPERATOR(pg_catalog.=) ANY ({function_roles}::pg_catalog.regrole[]) LOOP
        EXECUTE pg_catalog.format('ALTER SEQUENCE %s SET LOGGED', r.object);
    END LOOP;
END
$$""").format(schema=sql.Literal(schema), capture_schema=sql.Literal(capture_schema(schema)),
              function_roles=sql.Literal([roles[r] for r in FUNCTION_ROLES])).as_string(conn)


def _apply_migrations(conn: psycopg.Connection, schema: str) -> None:
    """The pending migrations, each committed on its own (yoyo), as the role the session is in:
    those whose ids yoyo's table lacks, not yoyo's own choice by hash (a hash rewritten in that
    table, the owner role's, would have it apply a migration again)."""
    backend = _GivenConnectionBackend(conn, schema)
    backend.init_database()
    # yoyo's lock is a committed row, which an install killed while holding it leaves behind for
    # good. The install lock (_install_lock, a session lock that ends with its backend) already
    # keeps every other installer out: a yoyo lock found here is such a leftover.
    backend.break_lock()
    with backend.lock():
        applied = set(_applied_migrations(conn, schema))
        migrations = read_migrations(str(migrations_dir()))
        backend.apply_migrations(MigrationList([m for m in migrations if m.id not in applied], migrations.post_apply))


def records_installs(conn: psycopg.Connection, schema: str) -> bool:
    """Whether an installed release keeps install records and snapshots (what _to_record merges)."""
    has = tuples(conn).execute(
        "SELECT pg_catalog.to_regprocedure(%s) IS NOT NULL AND pg_catalog.to_regclass(%s) IS NOT NULL",
        (f"{schema}._security_snapshot()", f"{schema}._install")).fetchone()
    return bool(has and has[0])


def _last_recorded(conn: psycopg.Connection, schema: str) -> tuple[Any, Any]:
    """What the last install recorded, and what is there now (before this install changes anything),
    as the installed release's snapshot reads them; (None, None) on a first install."""
    if not records_installs(conn, schema):
        return None, None
    last = tuples(conn).execute(sql.SQL("SELECT snapshot FROM {}._install ORDER BY installed_at DESC LIMIT 1").format(
        sql.Identifier(schema))).fetchone()
    now = tuples(conn).execute(sql.SQL("SELECT {}._security_snapshot()").format(sql.Identifier(schema))).fetchone()
    return (last[0] if last else None), (now[0] if now else None)


def install(conn: psycopg.Connection, schema: str = "audit", *, dry_run: bool = False,
            server_keys: bool = False) -> InstallReport:
    """Install or upgrade pgaudit_py into `schema`; safe to run again and concurrently.

    Needs a role that may create roles and schemas (a superuser, or a database owner with
    CREATEROLE). `dry_run` reports what would run and changes nothing. `server_keys` (superuser
    only) lets the owner role read server key files before the first one is registered.
    """
    check_schema_name(schema)
    if conn.info.pipeline_status != PipelineStatus.OFF:
        raise InstallError("the install runs scripts of many statements, which pipeline mode cannot send:"
                           " call it outside conn.pipeline()")
    roles = role_names(schema)
    files = [name for name, _ in rendered_sql_files(schema)] + [
        f"superuser/{name}" for name, _ in rendered_sql_files(schema, "superuser")]
    with _installing(conn), _install_lock(conn):
        refuse_borrowed_role(conn)
        _refuse_foreign_schema(conn, schema)
        applied = set(_applied_migrations(conn, schema))
        pending = [m for m in migration_ids() if m not in applied]
        if dry_run:
            return InstallReport(schema, package_version(), pending, files, [], True, True)

        # Refusals first: roles are the cluster's, and an install refused after making them (or
        # after joining the owner role) would leave them behind (tests/test_trust_attacks_114.py, l6).
        _refuse_default_privileges(conn, schema)
        _refuse_what_it_may_not_do(conn, schema, server_keys)
        if _has_pgcrypto(conn):
            _trusted_pgcrypto_schema(conn)
        created, joined = _ensure_roles(conn, schema)
        if not _has_pgcrypto(conn):
            _create_pgcrypto(conn, schema)
        pgcrypto_schema = _trusted_pgcrypto_schema(conn)
        # The owner role looks pgcrypto's functions up, to bind them by oid (sql/78_secrets.sql).
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
            sql.Identifier(pgcrypto_schema), sql.Identifier(roles["owner"])))
        _create_schema(conn, schema, roles["owner"])
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(roles["owner"])))
        recorded = before = None
        if pending:  # what the migrations change is the release's: read what was there before them
            recorded, before = _last_recorded(conn, schema)
            _apply_migrations(conn, schema)

        snapshot = sql.SQL("SELECT {}._security_snapshot()").format(sql.Identifier(schema))
        with conn.transaction():
            # What is found and what is left are read in one snapshot: a change another session
            # commits meanwhile is not taken for the install's.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if not pending:
                recorded, before = _last_recorded(conn, schema)
            conn.execute("RESET ROLE")
            superuser = tuples(conn).execute("SELECT rolsuper FROM pg_catalog.pg_roles"
                                             " WHERE rolname OPERATOR(pg_catalog.=) current_user").fetchone()
            # The installer's own statements name nothing outside pg_catalog unqualified: an overload
            # in the audit schema (yoyo's search_path) must never be picked as the installer.
            conn.execute("SET search_path = pg_catalog, pg_temp")
            with _acting_for_function_roles(conn, schema):
                # Scripts of many statements, never prepared (a connection may prepare every one it sends).
                for statement in hand_over_statements(conn, schema):
                    conn.execute(statement, prepare=False)
                conn.execute(take_back_grants_statement(conn, schema), prepare=False)
                conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(roles["owner"])))
                for _name, text in rendered_sql_files(schema, pgcrypto_schema=pgcrypto_schema):
                    conn.execute(text, prepare=False)
                conn.execute("RESET ROLE")
            if superuser and superuser[0]:
                for _name, text in rendered_sql_files(schema, "superuser", pgcrypto_schema, server_keys):
                    conn.execute(text, prepare=False)
            _grant_temporary(conn, roles["owner"])
            found = tuples(conn).execute(snapshot).fetchone()
            after = found[0] if found else None
            if recorded is not None and before is not None:  # not a first install
                merged = tuples(conn).execute(
                    sql.SQL("SELECT {}._to_record(%s, %s, %s)").format(sql.Identifier(schema)),
                    [Jsonb(value, tolerant_dumps) for value in (recorded, before, after)]).fetchone()
                after = merged[0] if merged else after
            # A row only when something differs from the last install: a re-run leaves no trace.
            tuples(conn).execute(sql.SQL("""
                INSERT INTO {s}._install (version, snapshot)
                SELECT %(v)s, %(snap)s
                 WHERE NOT EXISTS (SELECT 1 FROM (SELECT * FROM {s}._install ORDER BY installed_at DESC LIMIT 1) last
                                    WHERE last.version = %(v)s AND last.snapshot = %(snap)s)
                """).format(s=sql.Identifier(schema)),
                {"v": package_version(), "snap": Jsonb(after, tolerant_dumps)})
    changed = bool(pending or created or joined or before != (found[0] if found else None))
    return InstallReport(schema, package_version(), pending, files, created, False, changed, joined)


def status(conn: psycopg.Connection, schema: str = "audit") -> InstallStatus:
    """Installed version, pending migrations, and everything missing or loosened."""
    check_schema_name(schema)
    synced(conn)
    try:  # in a transaction of its own, or a savepoint of the caller's: it reads only, and a failure is its own
        with conn.transaction():
            if not _schema_exists(conn, schema) or not _is_ours(conn, schema):
                return InstallStatus(schema, None, [], migration_ids(),
                                     [f"pgaudit_py is not installed in schema {schema!r}"])
            # a definer function, so that the reader may check the installation
            row = tuples(conn).execute(sql.SQL("SELECT version, migrations, problems, warnings, client_master_keys"
                                               " FROM {}.install_status()").format(sql.Identifier(schema))).fetchone()
            assert row is not None
            version, applied, problems, warnings, client_keys = row
            warnings += exposure_warnings(conn, client_keys)
    except psycopg.errors.UndefinedFunction as missing:
        return InstallStatus(schema, None, [], migration_ids(),
                             [f"a function of the installation is missing: {missing.diag.message_primary}"])
    pending = [m for m in migration_ids() if m not in set(applied)]
    return InstallStatus(schema, version, applied, pending, problems, warnings)
