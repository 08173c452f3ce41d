"""`pgaudit-install --sql`: the complete, ordered SQL that `install()` would run on this database now
(an install, or an upgrade from the version installed), as one script for psql or a host migrator
to apply, and for a DBA to read first. The database is only read.

It runs what install() runs, in its order: the roles, pgcrypto, the schema, yoyo's bookkeeping
tables and each pending migration with its row there (so that the installer later sees it applied),
the function roles' set-up, the SQL files as the owner role, the superuser files when the role that
asks is a superuser, and the install record. Applied by that same role (psql -v ON_ERROR_STOP=1 -1
-f), it leaves the catalog the installer leaves (tests/test_install_script.py compares them).
"""

from __future__ import annotations

import psycopg
from psycopg import sql
from yoyo.migrations import get_migration_hash, read_sql_migration

from pgaudit_py.installer import (
    _INSTALL_LOCK,
    BORROWED_ROLE,
    FUNCTION_ROLES,
    _applied_migrations,
    _has_pgcrypto,
    _is_member,
    _refuse_foreign_schema,
    _trusted_pgcrypto_schema,
    capture_schema,
    check_schema_name,
    crypto_schema,
    hand_over_statements,
    migration_ids,
    migrations_dir,
    package_version,
    records_installs,
    refuse_borrowed_role,
    rendered_sql_files,
    role_names,
    take_back_grants_statement,
)
from pgaudit_py.session import tuples

# yoyo-migrations' own tables, as its internal schema version 2 makes them (yoyo/internalmigrations).
YOYO_TABLES = """\
CREATE TABLE IF NOT EXISTS yoyo_lock (locked INT DEFAULT 1, ctime TIMESTAMP, pid INT NOT NULL, PRIMARY KEY (locked));
CREATE TABLE IF NOT EXISTS _yoyo_migration (migration_hash VARCHAR(64), migration_id VARCHAR(255),
    applied_at_utc TIMESTAMP, PRIMARY KEY (migration_hash));
CREATE TABLE IF NOT EXISTS _yoyo_log (id VARCHAR(36), migration_hash VARCHAR(64), migration_id VARCHAR(255),
    operation VARCHAR(10), username VARCHAR(255), hostname VARCHAR(255), comment VARCHAR(255),
    created_at_utc TIMESTAMP, PRIMARY KEY (id));
CREATE TABLE IF NOT EXISTS _yoyo_version (version INT NOT NULL PRIMARY KEY, installed_at_utc TIMESTAMP);
INSERT INTO _yoyo_version SELECT 2, timezone('UTC', now()) WHERE NOT EXISTS (SELECT FROM _yoyo_version);
"""


def _literal(conn: psycopg.Connection, value: object) -> str:
    return sql.Literal(value).as_string(conn)


def _ident(conn: psycopg.Connection, name: str) -> str:
    return sql.Identifier(name).as_string(conn)


def _guards(conn: psycopg.Connection, schema: str, applied: list[str], crypto: str) -> list[str]:
    """Checked again when the script runs, which may be long after it was written: the database is
    still in the state it was written for, and pgcrypto is where, and whose, it was."""
    expected = "ARRAY[" + ", ".join(_literal(conn, m) for m in sorted(applied)) + "]::pg_catalog.text[]"
    table = _literal(conn, f"{schema}._yoyo_migration")
    return [
        # The applier's session too may have been given a lesser role to run as (installer.BORROWED_ROLE).
        "DO $$ DECLARE was pg_catalog.text := current_user; borrowed boolean; BEGIN"
        f" borrowed := EXISTS ({BORROWED_ROLE}); RESET ROLE; borrowed := borrowed OR EXISTS ({BORROWED_ROLE});"
        " EXECUTE pg_catalog.format('SET ROLE %I', was); IF borrowed THEN RAISE EXCEPTION 'this session"
        " logged in as a superuser runs as a role that is not one, or goes back to it at RESET ROLE: remove the"
        " setting (ALTER DATABASE ... RESET role) or connect with the role option set to the superuser';"
        " END IF; END $$;",
        # Every name qualified, as in all the package's SQL: the script starts in its applier's search_path.
        "DO $$ DECLARE applied pg_catalog.text[] := '{}'; BEGIN"
        f" IF pg_catalog.to_regclass({table}) IS NOT NULL THEN"
        " EXECUTE 'SELECT coalesce(pg_catalog.array_agg(migration_id::pg_catalog.text ORDER BY migration_id),"
        f" ''{{}}'') FROM ' OPERATOR(pg_catalog.||) {table} INTO applied; END IF;"
        f" IF NOT coalesce(applied OPERATOR(pg_catalog.=) {expected}, false) THEN"
        " RAISE EXCEPTION 'this script was written for a database with other migrations applied;"
        " regenerate it (pgaudit-install --sql)'; END IF; END $$;",
        "DO $$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n"
        " ON n.oid OPERATOR(pg_catalog.=) e.extnamespace"
        " JOIN pg_catalog.pg_roles r ON r.oid OPERATOR(pg_catalog.=) e.extowner"
        " WHERE e.extname OPERATOR(pg_catalog.=) 'pgcrypto'"
        f" AND (n.nspname OPERATOR(pg_catalog.<>) {_literal(conn, crypto)} OR (NOT r.rolsuper AND (SELECT rolsuper"
        " FROM pg_catalog.pg_roles WHERE rolname OPERATOR(pg_catalog.=) current_user))))"
        " THEN RAISE EXCEPTION 'pgcrypto is not where, or whose, it was when this script was written;"
        " regenerate it (pgaudit-install --sql)'; END IF; END $$;",
        # A schema made after the script was written (a squatter's, holding what it likes) is not
        # taken over: each of the package's schemas is whose it was, or still missing.
        "DO $$ BEGIN IF " + " OR ".join(_schema_changed(conn, name, owner)
                                        for name, owner in _schema_owners(conn, schema))
        + " THEN RAISE EXCEPTION 'a schema of the package is not whose, or missing, as it was when this script"
        " was written; regenerate it (pgaudit-install --sql)'; END IF; END $$;",
    ]


def _schema_owners(conn: psycopg.Connection, schema: str) -> list[tuple[str, str | None]]:
    """The package's schemas and their owners now (None: not there yet)."""
    names = [schema, capture_schema(schema)]
    rows = tuples(conn).execute("SELECT nspname::pg_catalog.text, nspowner::pg_catalog.regrole::pg_catalog.text"
                                " FROM pg_catalog.pg_namespace"
                                " WHERE nspname OPERATOR(pg_catalog.=) ANY (%s::pg_catalog.text[])",
                                (names,)).fetchall()
    owners = {str(name): str(owner) for name, owner in rows}
    return [(name, owners.get(name)) for name in names]


def _schema_changed(conn: psycopg.Connection, name: str, owner: str | None) -> str:
    found = f"SELECT FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) {_literal(conn, name)}"
    if owner is None:
        return f"EXISTS ({found})"
    return (f"NOT EXISTS ({found} AND n.nspowner::pg_catalog.regrole::pg_catalog.text"
            f" OPERATOR(pg_catalog.=) {_literal(conn, owner)})")


def install_script(conn: psycopg.Connection, schema: str = "audit") -> str:
    check_schema_name(schema)
    roles = role_names(schema)
    s, owner = _ident(conn, schema), _ident(conn, roles["owner"])
    refuse_borrowed_role(conn)
    _refuse_foreign_schema(conn, schema)
    applied = set(_applied_migrations(conn, schema))
    pending = [m for m in migration_ids() if m not in applied]
    superuser = tuples(conn).execute("SELECT rolsuper FROM pg_catalog.pg_roles"
                                     " WHERE rolname OPERATOR(pg_catalog.=) current_user").fetchone()
    is_superuser = bool(superuser and superuser[0])
    found = _trusted_pgcrypto_schema(conn) if _has_pgcrypto(conn) else None  # checked as install() checks it
    crypto = found or crypto_schema(schema)
    out = [f"-- pgaudit_py {package_version()}: {'upgrade' if applied else 'install'} of schema {schema}"
           f" (pending migrations: {', '.join(pending) or 'none'}), for role {conn.info.user}",
           "-- Apply as that role, in one transaction: psql -v ON_ERROR_STOP=1 -1 -f this.sql", ""]
    add = out.append
    # A fresh install's DROP ... IF EXISTS would each print a NOTICE that it skipped: noise to whoever applies it.
    add("SET LOCAL client_min_messages = warning;")
    add(f"SELECT pg_catalog.pg_advisory_xact_lock({_INSTALL_LOCK});  -- one installer at a time")
    out.extend(_guards(conn, schema, sorted(applied), crypto))
    # What the last install recorded and what is there now, before the script changes anything: what
    # it found changed since and left so stays recorded as it was (_to_record), as install() does.
    recording = records_installs(conn, schema)
    if recording:
        add(f"CREATE TEMPORARY TABLE pgaudit_install_found ON COMMIT DROP AS SELECT (SELECT snapshot FROM {s}._install"
            f" ORDER BY installed_at DESC LIMIT 1) AS recorded, {s}._security_snapshot() AS found;")
    for name in roles.values():
        add("DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles"
            f" WHERE rolname OPERATOR(pg_catalog.=) {_literal(conn, name)}) THEN"
            f" CREATE ROLE {_ident(conn, name)} NOLOGIN; END IF; END $$;")
    add(f"GRANT {_ident(conn, roles['reader'])} TO {_ident(conn, roles['maintainer'])};")
    add(f"GRANT {_ident(conn, roles['capture'])} TO {owner};")
    add(f"DO $$ BEGIN IF NOT pg_catalog.pg_has_role(current_user, {_literal(conn, roles['owner'])}, 'MEMBER') THEN"
        f" GRANT {owner} TO CURRENT_USER; END IF; END $$;")
    if found is None:  # as install() makes it (_create_pgcrypto)
        add(f"CREATE SCHEMA {_ident(conn, crypto)};")
        add(f"CREATE EXTENSION pgcrypto SCHEMA {_ident(conn, crypto)};")
        add(f"GRANT USAGE ON SCHEMA {_ident(conn, crypto)} TO PUBLIC;")
    add(f"GRANT USAGE ON SCHEMA {_ident(conn, crypto)} TO {owner};")
    add(f"CREATE SCHEMA IF NOT EXISTS {s} AUTHORIZATION {owner};")
    add(f"ALTER SCHEMA {s} OWNER TO {owner};")
    add(f"SET ROLE {owner};")
    add(f"SET search_path TO {s};")
    add(YOYO_TABLES)
    for migration in pending:
        _, _, statements = read_sql_migration(str(migrations_dir() / f"{migration}.sql"))
        add(f"-- migration {migration}")
        out.extend(statement.rstrip().rstrip(";") + ";" for statement in statements)
        digest = get_migration_hash(migration)
        add(f"INSERT INTO _yoyo_migration VALUES ({_literal(conn, digest)}, {_literal(conn, migration)},"
            " timezone('UTC', now()));")
        add(f"INSERT INTO _yoyo_log VALUES (pg_catalog.gen_random_uuid()::text, {_literal(conn, digest)},"
            f" {_literal(conn, migration)}, 'apply', current_user, 'psql', NULL, timezone('UTC', now()));")
    add("RESET ROLE;")
    add("SET search_path = pg_catalog, pg_temp;")
    # The function roles the installing role is not a member of (a superuser is of all; a role the
    # script creates, of none): it joins them for the files, and leaves them after.
    existing = {r[0] for r in tuples(conn).execute("SELECT rolname FROM pg_catalog.pg_roles"
                                                   " WHERE rolname OPERATOR(pg_catalog.=) ANY(%s)",
                                                   (list(roles.values()),)).fetchall()}
    joined = [roles[r] for r in FUNCTION_ROLES
              if not is_superuser and (roles[r] not in existing or not _is_member(conn, roles[r]))]
    for role in joined:
        add(f"GRANT {_ident(conn, role)} TO CURRENT_USER;")
    add(f"GRANT USAGE, CREATE ON SCHEMA {s} TO "
        + ", ".join(_ident(conn, roles[r]) for r in FUNCTION_ROLES) + ";")
    add(f"CREATE SCHEMA IF NOT EXISTS {_ident(conn, capture_schema(schema))} AUTHORIZATION"
        f" {_ident(conn, roles['capture'])};")
    out.extend(statement + ";" for statement in hand_over_statements(conn, schema))
    out.append(take_back_grants_statement(conn, schema) + ";")
    add(f"SET ROLE {owner};")
    for name, text in rendered_sql_files(schema, pgcrypto_schema=crypto):
        add(f"-- sql/{name}")
        add(text.rstrip())
    add("RESET ROLE;")
    for role in joined:
        add(f"REVOKE {_ident(conn, role)} FROM CURRENT_USER;")
    if is_superuser:
        for name, text in rendered_sql_files(schema, "superuser", crypto):
            add(f"-- sql/superuser/{name}")
            add(text.rstrip())
    left = f"{s}._security_snapshot()"
    if recording:
        left = (f"(SELECT CASE WHEN f.recorded IS NULL THEN {left} ELSE {s}._to_record(f.recorded, f.found, {left}) END"
                " FROM pgaudit_install_found f)")
    add(f"INSERT INTO {s}._install (version, snapshot)"
        f" SELECT {_literal(conn, package_version())}, m.snapshot FROM (SELECT {left} AS snapshot) m"
        f" WHERE NOT EXISTS (SELECT FROM (SELECT * FROM {s}._install ORDER BY installed_at DESC LIMIT 1) last"
        f" WHERE last.version = {_literal(conn, package_version())} AND last.snapshot = m.snapshot);")
    add("RESET search_path;")
    return "\n".join(out) + "\n"
