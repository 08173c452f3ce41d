"""`pgaudit-install --sql`: the script an install or an upgrade would run, applied with psql,
leaves the catalog the installer leaves (pg_dump of both, compared), and the installer then finds
nothing to do."""

from __future__ import annotations

import re
import subprocess
import sys

import psycopg
import pytest
from test_upgrade import installer_at

from pgaudit_py import InstallError, install
from pgaudit_py.install_script import install_script
from pgaudit_py.tempdb import find_binary

BEFORE_THIS_RELEASE = "38f90f6"  # migrations through 0014: the upgrade adds 0015 to 0020


def psql_apply(conn: psycopg.Connection, script: str) -> str:
    """What psql printed to stderr applying the script (it must succeed)."""
    info = conn.info
    done = subprocess.run([find_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", info.host,
                           "-p", str(info.port), "-U", info.user, "-d", info.dbname, "-f", "-"],
                          input=script, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stderr


def catalog(conn: psycopg.Connection, schema: str) -> str:
    """The schemas' objects, owners and grants as pg_dump prints them (without its comments)."""
    info = conn.info
    dumped = subprocess.run([find_binary("pg_dump"), "--schema-only", "-n", schema, "-n", f"{schema}_capture",
                             "-h", info.host, "-p", str(info.port), "-U", info.user, info.dbname],
                            capture_output=True, text=True, check=True, timeout=300).stdout
    return "\n".join(line for line in dumped.splitlines()
                     if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict")))


def yoyo_ids(conn: psycopg.Connection, schema: str) -> list[str]:
    return [r[0] for r in conn.execute(f"SELECT migration_id FROM {schema}._yoyo_migration ORDER BY 1").fetchall()]


def test_a_fresh_install_by_script_leaves_the_installers_catalog(fresh_database):
    by_installer, by_script = fresh_database("by_installer"), fresh_database("by_script")
    install(by_installer, "scr")
    script = install_script(by_script, "scr")
    assert "CREATE TABLE event_log" in script and "-- sql/90_grants.sql" in script
    # Reading it changed nothing.
    assert by_script.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'scr%'").fetchone() == (0,)
    assert psql_apply(by_script, script) == ""  # not a NOTICE for every DROP ... IF EXISTS that skipped
    assert catalog(by_script, "scr") == catalog(by_installer, "scr")
    assert yoyo_ids(by_script, "scr") == yoyo_ids(by_installer, "scr")
    again = install(by_script, "scr")
    assert again.migrations == [] and again.changed is False  # the installer finds nothing to do
    assert install_script(by_script, "scr").count("-- migration ") == 0


def test_a_database_owner_with_createrole_installs_by_script_as_by_the_installer(db):
    """Without a superuser: the script joins the function roles for the files and leaves them after."""
    info = db.info
    db.execute("CREATE ROLE scriptadmin LOGIN CREATEROLE")
    for name in ("owned_installer", "owned_script"):
        db.execute(f"CREATE DATABASE {name} OWNER scriptadmin")
    try:
        conns = [psycopg.connect(host=info.host, port=info.port, user="scriptadmin", dbname=name, autocommit=True)
                 for name in ("owned_installer", "owned_script")]
        install(conns[0], "nsu")
        script = install_script(conns[1], "nsu")
        assert "-- sql/superuser/" not in script
        psql_apply(conns[1], script)
        assert catalog(conns[1], "nsu") == catalog(conns[0], "nsu")
        assert install(conns[1], "nsu").changed is False
        members = db.execute("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
                             " WHERE m.member = 'scriptadmin'::regrole AND r.rolname LIKE 'nsu_%'"
                             " AND r.rolname NOT IN ('nsu_owner')").fetchone()
        assert members == (0,)  # it left the function roles again
        for conn in conns:
            conn.close()
    finally:
        for name in ("owned_installer", "owned_script"):
            db.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_an_upgrade_by_script_leaves_the_installers_catalog(fresh_database, tmp_path_factory):
    previous = installer_at(BEFORE_THIS_RELEASE, tmp_path_factory)
    by_installer, by_script = fresh_database("up_installer"), fresh_database("up_script")
    for conn in (by_installer, by_script):
        previous.install(conn, "scu")
        conn.execute("SELECT scu.record(kind => 'order.paid') FROM generate_series(1, 3)")
    install(by_installer, "scu")
    script = install_script(by_script, "scu")
    assert re.findall(r"^-- migration (\S+)", script, flags=re.M) == ["0015_api_tokens", "0016_event_type_catalogues",
                                                                       "0017_rare_value_indexes", "0018_log_partitions",
                                                                       "0019_intake_checks_in_writers",
                                                                       "0020_archive_and_quarantine_indexes",
                                                                       "0021_intake_ids_of_their_own",
                                                                       "0022_tracking_ends_index", "0023_truncates_index",
                                                                       "0024_tracking_name_types", "0025_owner_proof_role_ids",
                                                                       "0026_owner_proof_statements", "0027_owner_proof_tokens"]
    psql_apply(by_script, script)
    assert catalog(by_script, "scu") == catalog(by_installer, "scu")
    assert install(by_script, "scu").changed is False
    assert by_script.execute("SELECT count(*) FROM scu.events").fetchone() == (3,)


def test_pgaudit_install_sql_prints_the_script_and_changes_nothing(fresh_database):
    conn = fresh_database("cli_sql")
    info = conn.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user={info.user}"
    done = subprocess.run([sys.executable, "-c", "from pgaudit_py.cli import install_main; install_main()",
                           "--sql", "--schema", "cli", "--dsn", dsn], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("-- pgaudit_py ") and "CREATE SCHEMA IF NOT EXISTS \"cli\" AUTHORIZATION \"cli_owner\"" in done.stdout
    assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'cli'").fetchone() == (0,)
    # What --sql cannot do is refused, not left out of the script without a word.
    refused = subprocess.run([sys.executable, "-c", "from pgaudit_py.cli import install_main; install_main()",
                              "--sql", "--server-keys", "--schema", "cli", "--dsn", dsn], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2 and "--server-keys" in refused.stderr and refused.stdout == ""


def test_a_superusers_session_made_to_run_as_a_lesser_role_installs_nothing(db, fresh_database):
    """A database's owner (CREATEROLE, not a superuser) stores the role every session there starts as;
    a superuser who connects runs as it, and goes back to it at RESET ROLE, which the install does.
    Installing so would be the owner's install (no event triggers, the owner made a member of the
    package's owner role): the installer, --dry-run, --sql and the script itself refuse it (trial 93,
    i10). A role named when connecting outranks the setting: that install is the superuser's."""
    superuser = db.info.user
    fresh_database("borrowed").close()
    db.execute("DROP ROLE IF EXISTS borrowed_dbo")
    db.execute("CREATE ROLE borrowed_dbo LOGIN CREATEROLE")
    info = db.info
    connect = lambda **options: psycopg.connect(host=info.host, port=info.port, user=superuser,  # noqa: E731
                                                dbname="borrowed", autocommit=True, **options)
    try:
        db.execute("ALTER DATABASE borrowed OWNER TO borrowed_dbo")
        with psycopg.connect(host=info.host, port=info.port, user="borrowed_dbo", dbname="borrowed",
                             autocommit=True) as owner:
            owner.execute("ALTER DATABASE borrowed SET role = 'borrowed_dbo'")
        with connect(options=f"-c role={superuser}") as clean:
            script = install_script(clean, "bor")  # written by a session that runs as the superuser
        with connect() as borrowed:
            assert borrowed.execute("SELECT current_user::text").fetchone() == ("borrowed_dbo",)
            for attempt in (lambda: install(borrowed, "bor"), lambda: install(borrowed, "bor", dry_run=True),
                            lambda: install_script(borrowed, "bor")):
                with pytest.raises(InstallError, match="runs as role borrowed_dbo, which is not one"):
                    attempt()
            borrowed.execute(f'SET ROLE "{superuser}"')  # a superuser again, until the install's RESET ROLE
            with pytest.raises(InstallError, match="goes back to it at RESET ROLE"):
                install(borrowed, "bor")
        applied = subprocess.run([find_binary("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", info.host,
                                  "-p", str(info.port), "-U", superuser, "-d", "borrowed", "-f", "-"],
                                 input=script, capture_output=True, text=True, timeout=300)
        assert applied.returncode != 0 and "runs as a role that is not one" in applied.stderr
        assert db.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'bor\\_%'").fetchone() == (0,)
        with connect(options=f"-c role={superuser}") as clean:
            install(clean, "bor")
            assert clean.execute("SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'bor\\_%'").fetchone()[0] > 0
        assert db.execute("SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid"
                          " WHERE r.rolname = 'bor_owner'").fetchone() == (0,)
    finally:
        db.execute("DROP DATABASE IF EXISTS borrowed WITH (FORCE)")
        db.execute("DROP ROLE IF EXISTS borrowed_dbo")
