"""The installer: idempotent, concurrent, upgrades, refuses foreign schemas; status names damage."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

import pgaudit_py.installer as installer
from pgaudit_py import InstallError, install, list_events, record, seal, status
from pgaudit_py.cli.install import install_standalone
from pgaudit_py.errors import MasterKeyUnavailable, translated


def catalog_state(conn: psycopg.Connection, schema: str = "audit") -> list[tuple[object, ...]]:
    """Everything the installer defines, as the catalog holds it, plus the data it holds."""
    rows = conn.execute("""
        SELECT 'function', p.oid::regprocedure::text, pg_get_functiondef(p.oid), p.proacl::text
          FROM pg_proc p WHERE p.pronamespace = %(s)s::regnamespace
        UNION ALL
        SELECT 'relation', c.relname, c.relkind::text || coalesce(pg_get_viewdef(c.oid), ''), c.relacl::text
          FROM pg_class c WHERE c.relnamespace = %(s)s::regnamespace
        UNION ALL
        SELECT 'trigger', t.tgrelid::regclass::text || '.' || t.tgname, pg_get_triggerdef(t.oid), t.tgenabled::text
          FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relnamespace = %(s)s::regnamespace
        UNION ALL
        SELECT 'role', r.rolname, r.rolcanlogin::text, (SELECT string_agg(m.roleid::regrole::text, ',')
                                                         FROM pg_auth_members m WHERE m.member = r.oid)
          FROM pg_roles r WHERE r.rolname LIKE %(s)s || '\\_%%'
        ORDER BY 1, 2""", {"s": schema}).fetchall()
    data = conn.execute(f"""SELECT (SELECT count(*) FROM {schema}._install), (SELECT count(*) FROM {schema}._yoyo_migration),
                                   (SELECT count(*) FROM {schema}.events), (SELECT last_seq FROM {schema}.seal_state)""").fetchone()
    return [*rows, ("data", data)]


def test_second_install_changes_nothing(db, connect):
    record(connect("app_writer"), "before.reinstall")
    seal(db)
    before = catalog_state(db)
    report = install(db)
    assert (report.changed, report.migrations, report.created_roles) == (False, [], [])
    assert catalog_state(db) == before
    assert status(db).intact


def test_a_superusers_install_leaves_the_owner_role_no_member_and_names_one_added(db):
    """docs/security.md: a member of the owner role is as trusted as a superuser, so a superuser's
    install leaves it none, and status names one that installed nothing here."""
    members = "SELECT count(*) FROM pg_auth_members WHERE roleid = 'audit_owner'::regrole"
    install(db, schema="owned_by_none")
    assert db.execute(members.replace("audit_owner", "owned_by_none_owner")).fetchone() == (0,)
    assert db.execute(members).fetchone() == (0,)
    db.execute("GRANT audit_owner TO app_writer")  # roles are the cluster's: taken back whatever happens
    try:
        assert [p for p in status(db).problems if "member of audit_owner" in p] == [
            "role app_writer is a member of audit_owner and installed nothing here: it may act as the owner"]
    finally:
        db.execute("REVOKE audit_owner FROM app_writer")


def test_dry_run_changes_nothing(db):
    report = install(db, schema="dry", dry_run=True)
    assert report.dry_run and report.migrations == installer.migration_ids() and "0001_event_log" in report.migrations
    assert report.sql_files[0] == "10_guards.sql" and report.sql_files[-1] == "superuser/78_key_files.sql"
    assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'dry'").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'dry\\_%'").fetchone() == (0,)


def test_refuses_a_schema_another_tool_created(db, connect):
    db.execute("CREATE DATABASE other_tool")
    other = psycopg.connect(host=db.info.host, port=db.info.port, user=db.info.user,
                            dbname="other_tool", autocommit=True)
    try:
        other.execute("CREATE SCHEMA audit; CREATE TABLE audit.logged_actions (id int)")
        with pytest.raises(InstallError, match=r"schema 'audit' already holds objects that pgaudit_py did not "
                                               r"create \(audit.logged_actions\); install into another schema "
                                               r"with --schema NAME"):
            install(other)
        assert other.execute("SELECT relname FROM pg_class WHERE relnamespace = 'audit'::regnamespace"
                             " AND relkind = 'r'").fetchall() == [("logged_actions",)]
        report = install(other, schema="pgaudit")
        assert report.created_roles == [f"pgaudit_{r}" for r in installer.ROLE_SUFFIXES]
        assert status(other, schema="pgaudit").intact
    finally:
        other.close()


def test_installs_into_another_schema_with_its_own_roles(db, connect):
    install(db, schema="compliance")
    assert status(db, schema="compliance").intact
    db.execute("CREATE ROLE compliance_app LOGIN IN ROLE compliance_writer")
    writer = connect("compliance_app")
    record(writer, "a.b", audit_schema="compliance")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        record(writer, "a.b")  # the audit schema's writer role is another role
    assert seal(db, audit_schema="compliance").sealed == 1
    assert [e.kind for e in list_events(db, audit_schema="compliance")] == ["a.b"]
    assert list_events(db) == []


def test_pgcrypto_is_created(db):
    assert db.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'").fetchone() == (1,)


def test_two_installers_at_once_one_waits(db, connect):
    conns = [connect() for _ in range(2)]
    barrier = threading.Barrier(2)
    reports: list[object] = []
    errors: list[BaseException] = []

    def run(conn: psycopg.Connection) -> None:
        barrier.wait()
        try:
            reports.append(install(conn, schema="racing"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sorted(r.migrations for r in reports) == [[], installer.migration_ids()]  # type: ignore[attr-defined]
    assert db.execute("SELECT count(*) FROM racing._yoyo_migration").fetchone() == (len(installer.migration_ids()),)
    assert db.execute("SELECT count(*) FROM racing._install").fetchone() == (1,)
    assert status(db, schema="racing").intact


def test_a_stranger_holding_the_install_lock_fails_the_install_within_the_bound(db, connect, monkeypatch):
    """The install lock is an advisory lock, and any role that may connect can take its key: the
    installer waits a bounded time, then names who holds it, instead of waiting forever."""
    monkeypatch.setattr(installer, "_INSTALL_LOCK_WAIT", 0.5)
    stranger = connect("app_attacker")  # CONNECT, nothing else
    stranger.execute("SELECT pg_advisory_lock(%s)", (installer._INSTALL_LOCK,))
    conn = connect()
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            install(conn, schema="blocked")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the installer still waits for the stranger's lock"
    assert time.monotonic() - started < 10
    [error] = outcome
    assert isinstance(error, InstallError)
    assert error.message == ("waited 0.5 s for the install lock of this database, held by "
                             f"pid {stranger.info.backend_pid} (role app_attacker)")
    assert db.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'blocked'").fetchone() == (0,)
    assert db.execute("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objid = %s",
                      (installer._INSTALL_LOCK,)).fetchall() == [(stranger.info.backend_pid,)]
    assert conn.execute("SHOW lock_timeout").fetchone() == ("0",)  # the installer's timeout did not stay
    stranger.execute("SELECT pg_advisory_unlock(%s)", (installer._INSTALL_LOCK,))
    assert install(conn, schema="blocked").migrations == installer.migration_ids()
    assert db.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'").fetchone() == (0,)


def test_upgrade_applies_only_what_is_missing(db, connect, tmp_path, monkeypatch):
    record(connect("app_writer"), "kept.event")
    seal(db)
    record(connect("app_writer"), "kept.pending")
    newer = tmp_path / "migrations"
    shutil.copytree(installer._resource_dir("migrations"), newer)
    (newer / "0002_probe.sql").write_text("CREATE TABLE upgrade_probe (id int);\n")
    real = installer._resource_dir
    monkeypatch.setattr(installer, "_resource_dir",
                        lambda name: newer if name == "migrations" else real(name))
    assert status(db).pending_migrations == ["0002_probe"]
    report = install(db)
    assert report.migrations == ["0002_probe"]
    assert db.execute("SELECT to_regclass('audit.upgrade_probe') IS NOT NULL").fetchone() == (True,)
    assert [(e.seq, e.kind) for e in list_events(db)] == [(None, "kept.pending"), (1, "kept.event")]
    assert status(db).intact


def test_status_names_what_was_loosened_and_reinstall_repairs_it(db):
    db.execute("GRANT EXECUTE ON FUNCTION audit.seal(integer) TO PUBLIC")
    db.execute("ALTER FUNCTION audit.prune_events(interval, integer) RESET search_path")
    db.execute("GRANT DELETE ON audit.event_log TO audit_writer")
    db.execute("ALTER TABLE audit.event_log DISABLE TRIGGER guard_delete")
    db.execute("DROP TRIGGER guard_truncate ON audit.event_intake")
    db.execute("DROP FUNCTION audit.count_events(text, timestamptz, timestamptz, text[])")
    problems = status(db).problems
    for expected in [
        "SECURITY DEFINER function audit.seal(max_events integer) is executable by PUBLIC",
        "SECURITY DEFINER function audit.prune_events(older_than interval, batch_size integer) does not pin search_path",
        "audit_writer has DELETE on audit.event_log",
        "guard trigger guard_delete on audit.event_log is disabled",
        "guard trigger guard_truncate on audit.event_intake is missing",
        "function audit.count_events(tenant_id text, since timestamp with time zone, until timestamp with time zone, "
        "by_kind_prefix text[]) is missing",
    ]:
        assert expected in problems, problems
    assert any(p.startswith("function audit.seal(max_events integer) changed") for p in problems)
    assert not status(db).intact

    assert install(db).changed
    assert status(db).problems == []


def test_a_reinstall_records_what_it_did_not_undo_as_the_last_install_had_it(db, connect):
    """What the installer does not undo (a policy, a rule, a column grant, a trigger of someone
    else's on a package table) stays named after it runs again, instead of becoming the installed
    state; once taken away, status is intact, and a later install records nothing new."""
    db.execute("CREATE ROLE reinstall_friend")
    try:
        db.execute("CREATE POLICY friend_sees_all ON audit.event_log USING (true)")
        db.execute("GRANT SELECT (tenant_id, ciphertext) ON audit.secret_values TO reinstall_friend")
        db.execute("CREATE RULE drop_captured AS ON INSERT TO audit.event_intake WHERE new.origin = 'capture'"
                   " DO INSTEAD NOTHING")
        db.execute("CREATE TRIGGER spy AFTER INSERT ON audit.blocks FOR EACH ROW"
                   " EXECUTE FUNCTION audit._guard_append_only()")
        named = {p.split(" changed")[0] for p in status(db).problems}
        assert named == {f"audit.{t}"
                         for t in ("event_log", "secret_values", "event_intake", "blocks")}
        rows = db.execute("SELECT count(*) FROM audit._install").fetchone()[0]
        install(db)
        # The column grant, a right held outside the package's roles, is taken back; the rest stays named.
        assert {p.split(" changed")[0] for p in status(db).problems} == named - {"audit.secret_values"}
        assert db.execute("SELECT has_column_privilege('reinstall_friend', 'audit.secret_values', 'ciphertext',"
                          " 'SELECT')").fetchone() == (False,)
        assert db.execute("SELECT count(*) FROM audit._install").fetchone()[0] == rows  # recorded as it was
        db.execute("DROP POLICY friend_sees_all ON audit.event_log")
        db.execute("DROP RULE drop_captured ON audit.event_intake")
        db.execute("DROP TRIGGER spy ON audit.blocks")
        assert status(db).problems == []
        assert not install(db).changed and status(db).problems == []
        assert db.execute("SELECT count(*) FROM audit._install").fetchone()[0] == rows
    finally:
        db.execute("DROP ROLE reinstall_friend")


def test_status_names_a_changed_sequence_of_the_package(db):
    """The intake's ids are not cached per session (history is in the order changes were applied):
    a cache, an increment or a cycle set on its sequence since the install is named."""
    sequence = name = "event_intake_intake_id_seq"
    sequence = f"audit.{name}"
    assert status(db).problems == []
    for change, undo in (("CACHE 50", "CACHE 1"), ("INCREMENT BY 2", "INCREMENT BY 1"), ("CYCLE", "NO CYCLE")):
        db.execute(f"ALTER SEQUENCE {sequence} {change}")
        assert [p.split(" changed")[0] for p in status(db).problems] == [f"audit.{name}"], change
        db.execute(f"ALTER SEQUENCE {sequence} {undo}")
        assert status(db).problems == []


def test_reinstall_remakes_an_event_trigger_that_watches_an_older_list_of_commands(db):
    """An installation from before CREATE SCHEMA was watched has triggers without it: the install
    makes each again from its list."""
    db.execute("DROP EVENT TRIGGER audit_capture_partitions; DROP EVENT TRIGGER audit_ddl_end;"
               " CREATE EVENT TRIGGER audit_capture_partitions ON ddl_command_end WHEN TAG IN ('ALTER TABLE', 'CREATE TABLE')"
               " EXECUTE FUNCTION audit._cover_partitions();"
               " CREATE EVENT TRIGGER audit_ddl_end ON ddl_command_end WHEN TAG IN ('ALTER TABLE')"
               " EXECUTE FUNCTION audit._on_ddl_end()")
    assert ("event trigger audit_ddl_end watches the commands of an earlier release: changes of tracked tables"
            " through the others are not recorded (run the installer as a superuser)") in status(db).problems
    install(db)
    watched = dict(db.execute("SELECT evtname::text, evttags FROM pg_event_trigger"
                              " WHERE evtname IN ('audit_capture_partitions', 'audit_ddl_end')").fetchall())
    assert watched["audit_capture_partitions"] == ["ALTER TABLE", "CREATE SCHEMA", "CREATE TABLE"]
    assert watched["audit_ddl_end"] == db.execute("SELECT audit._ddl_end_tags()").fetchone()[0]
    assert {"CREATE SCHEMA", "ALTER VIEW", "CREATE VIEW"} <= set(watched["audit_ddl_end"])
    assert status(db).problems == []


def test_status_leaves_the_callers_role_and_search_path_as_they_were(db, connect):
    """A reader's status check runs in the reader's own session: it must not undo a SET ROLE or a
    search_path the application made there."""
    reader = connect("app_reader")
    reader.execute("SET ROLE audit_reader")
    reader.execute("SET search_path = pg_temp, public")
    assert status(reader).installed_version is not None
    assert reader.execute("SELECT current_user::text, current_setting('search_path')").fetchone() == (
        "audit_reader", "pg_temp, public")


def test_status_of_a_database_without_pgaudit(db):
    result = status(db, schema="nothing_here")
    assert (result.installed_version, result.intact) == (None, False)
    assert result.problems == ["pgaudit_py is not installed in schema 'nothing_here'"]
    assert result.pending_migrations == installer.migration_ids()


def test_installed_package_carries_its_sql():
    """A non-editable install (as CI does it) must ship sql/ and migrations/ inside the package."""
    package = Path(installer.__file__).resolve().parent
    if (package.parent / "pyproject.toml").exists():
        pytest.skip("running from a source checkout, not an installed wheel")
    checkout = Path(__file__).resolve().parent.parent
    for name in ("sql", "migrations"):
        assert installer._resource_dir(name) == package / name
        assert sorted(p.name for p in (package / name).glob("*.sql")) == sorted(
            p.name for p in (checkout / name).glob("*.sql"))


def test_a_database_owner_with_createrole_installs_without_superuser(db):
    db.execute("CREATE ROLE dbadmin LOGIN CREATEROLE")
    db.execute("CREATE DATABASE owned OWNER dbadmin")
    conn = psycopg.connect(host=db.info.host, port=db.info.port, user="dbadmin", dbname="owned", autocommit=True)
    try:
        report = install(conn, schema="nonsu")
        assert report.created_roles == [f"nonsu_{r}" for r in installer.ROLE_SUFFIXES]
        assert install(conn, schema="nonsu").changed is False
        # Only the event triggers (and reading server key files) need a superuser; status names the triggers.
        problems = status(conn, schema="nonsu").problems
        assert [p.split(":")[0] for p in problems] == ["event trigger nonsu_ddl_end is missing",
                                                      "event trigger nonsu_sql_drop is missing",
                                                      "event trigger nonsu_capture_partitions is missing",
                                                      "event trigger nonsu_function_roles is missing",
                                                      "event trigger nonsu_table_rewrite is missing",
                                                      "event trigger nonsu_temporary is missing",
                                                      "event trigger nonsu_detach_concurrently is missing"]
        # The function roles' functions were made as those roles, which keep no member (but the owner
        # role, which hands the capture role the functions it generates).
        assert conn.execute("SELECT array_agg(m.member::regrole::text) FROM pg_auth_members m JOIN pg_roles r"
                            " ON r.oid = m.roleid WHERE r.rolname ~ '^nonsu_(capture|sealer|pruner|sandbox)$'"
                            ).fetchone() == (["nonsu_owner"],)
        # Server-key mode needs the superuser's grants: even a superuser cannot register a key file here.
        with psycopg.connect(host=db.info.host, port=db.info.port, user=db.info.user, dbname="owned",
                             autocommit=True) as su, \
                pytest.raises(MasterKeyUnavailable, match="the server may not read key files"), translated():
            su.execute("SELECT nonsu.add_master_key('/etc/hostname')")
        record(conn, "a.b", audit_schema="nonsu")
        conn.execute("GRANT nonsu_maintainer TO dbadmin")  # sealing is the maintainer's
        assert seal(conn, audit_schema="nonsu").sealed == 1
        assert conn.execute("SELECT ok FROM nonsu.verify()").fetchone() == (True,)
    finally:
        conn.close()


@pytest.mark.parametrize("owns_database, server_keys, said", [
    (True, True, "server keys need a superuser install"),
    (False, False, "may not create schemas in database"),
])
def test_an_install_refused_for_its_rights_makes_no_role_and_joins_none(db, owns_database, server_keys, said):
    """Roles are the cluster's: a refusal after making them would leave them behind, and the installing
    role a member of the owner role (tests/test_trust_attacks_114.py, l6)."""
    db.execute("CREATE ROLE refused_admin LOGIN CREATEROLE")
    db.execute(f"CREATE DATABASE refused_db OWNER {'refused_admin' if owns_database else db.info.user}")
    conn = psycopg.connect(host=db.info.host, port=db.info.port, user="refused_admin", dbname="refused_db",
                           autocommit=True)
    try:
        with pytest.raises(InstallError, match=said):
            install(conn, schema="refused", server_keys=server_keys)
        assert db.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'refused\\_%' AND rolname <> 'refused_admin'"
                          ).fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM pg_auth_members WHERE member = 'refused_admin'::regrole").fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'refused%'").fetchone() == (0,)
    finally:
        conn.close()
        db.execute("DROP DATABASE refused_db")
        db.execute("DROP ROLE refused_admin")


def test_an_install_into_another_database_under_the_same_schema_name_is_named_by_status_here(db):
    """README (Requirements): roles are the cluster's, named after the schema, so a database owner
    installing the same schema name into another database becomes a member of this database's owner
    role, and status here names it; under a schema name of its own it does not. The installer says so
    as it joins, and what it could not make without a superuser (the event triggers), on stderr."""
    for user in ("sameschema", "ownschema"):
        db.execute(f"CREATE ROLE {user} LOGIN CREATEROLE")
        db.execute(f"CREATE DATABASE {user}_db OWNER {user}")
    try:
        said = {}
        for user, schema in (("sameschema", "audit"), ("ownschema", "ownschema")):
            dsn = f"host={db.info.host} port={db.info.port} user={user} dbname={user}_db"
            result = CliRunner().invoke(install_standalone, ["--dsn", dsn, "--schema", schema])
            assert result.exit_code == 0 and f"installed in schema {schema}" in result.stdout, result.output
            said[user] = result.stderr.splitlines()
        joined = "WARNING: the roles of schema 'audit' already existed (an earlier install, here or in another database"
        assert [line for line in said["sameschema"] if line.startswith(joined)] == [
            joined + " of this cluster): this role is now a member of audit_owner, which may act as the owner in every"
                     " database that uses this schema name (give this one its own with --schema)"]
        assert not [line for line in said["ownschema"] if "already existed" in line]
        for user, schema in (("sameschema", "audit"), ("ownschema", "ownschema")):
            missing = [line.split(":")[1].strip() for line in said[user] if line.startswith("PROBLEM: event trigger")]
            assert missing == [f"event trigger {schema}_{name} is missing" for name in (
                "ddl_end", "sql_drop", "capture_partitions", "function_roles", "table_rewrite", "temporary",
                "detach_concurrently")], said[user]
        # Again, with --json: a member already, it joins nothing, and stderr still names what is missing.
        again = CliRunner().invoke(install_standalone, ["--dsn", f"host={db.info.host} port={db.info.port}"
                                                        " user=sameschema dbname=sameschema_db", "--json"])
        assert again.exit_code == 0 and '"joined_owner": false' in again.stdout, again.output
        assert not [line for line in again.stderr.splitlines() if "already existed" in line]
        assert len([line for line in again.stderr.splitlines() if line.startswith("PROBLEM: event trigger")]) == 7
        assert "PROBLEM: event trigger ownschema_detach_concurrently is missing: DETACH PARTITION ... CONCURRENTLY" \
               " under a tracked table is not refused (run the installer as a superuser)" in said["ownschema"]
        members = db.execute("SELECT array_agg(m.member::regrole::text ORDER BY 1) FROM pg_auth_members m"
                             " WHERE m.roleid = 'audit_owner'::regrole").fetchone()[0]
        assert members == ["sameschema"]
        assert [p for p in status(db).problems if "member of audit_owner" in p] == [
            "role sameschema is a member of audit_owner and installed nothing here: it may act as the owner"]
    finally:
        for user in ("sameschema", "ownschema"):
            db.execute(f"DROP DATABASE {user}_db WITH (FORCE)")
        db.execute("DROP ROLE sameschema")
        for suffix in installer.ROLE_SUFFIXES:
            db.execute(f"DROP ROLE IF EXISTS ownschema_{suffix}")
        db.execute("DROP ROLE ownschema")
    assert status(db).intact


@pytest.fixture
def owned_database(db):
    """A database owned by `dbo`, who is no superuser: pgcrypto is a trusted extension, so it may
    create it, in a schema of its own."""
    db.execute("CREATE ROLE dbo LOGIN")
    db.execute("CREATE DATABASE dbo_db OWNER dbo")

    def connect_as(user: str | None = None) -> psycopg.Connection:
        return psycopg.connect(host=db.info.host, port=db.info.port, user=user or db.info.user, dbname="dbo_db",
                               autocommit=True)
    yield connect_as
    db.execute("DROP DATABASE dbo_db WITH (FORCE)")
    db.execute("DROP ROLE dbo")


def test_pgcrypto_created_by_a_role_that_is_no_superuser_is_refused(owned_database):
    """Its owner could drop it and put functions of its own in its place, which the owner role would
    run (reading the master key as it passed)."""
    with owned_database("dbo") as dbo:
        dbo.execute("CREATE SCHEMA crypto; CREATE EXTENSION pgcrypto SCHEMA crypto")
    with owned_database() as su:
        with pytest.raises(InstallError, match="pgcrypto was created by dbo, who is not a superuser"):
            install(su)
        assert su.execute("SELECT to_regnamespace('audit')").fetchone() == (None,)


def test_pgcrypto_is_bound_by_oid_not_by_its_schemas_name(owned_database):
    """pgcrypto created by a superuser in a schema the database's owner owns: renaming that schema and
    putting a look-alike under its old name changes nothing the secrets functions call."""
    with owned_database() as su:
        su.execute("CREATE SCHEMA crypto AUTHORIZATION dbo; CREATE EXTENSION pgcrypto SCHEMA crypto;"
                   " GRANT USAGE ON SCHEMA crypto TO PUBLIC")
        install(su)
        with owned_database("dbo") as dbo:
            dbo.execute("""
                ALTER SCHEMA crypto RENAME TO moved;
                CREATE SCHEMA crypto;
                CREATE TABLE public.loot (who text, key bytea);
                GRANT ALL ON public.loot TO PUBLIC;
                CREATE FUNCTION crypto.hmac(bytea, bytea, text) RETURNS bytea LANGUAGE plpgsql AS $$
                    BEGIN INSERT INTO public.loot VALUES (current_user, $2); RETURN moved.hmac($1, $2, $3); END $$;
                CREATE FUNCTION crypto.gen_random_bytes(integer) RETURNS bytea LANGUAGE plpgsql AS $$
                    BEGIN INSERT INTO public.loot VALUES (current_user, NULL); RETURN moved.gen_random_bytes($1); END $$;
                GRANT USAGE ON SCHEMA crypto TO PUBLIC""")
            key = "11" * 32
            su.execute("GRANT audit_secrets TO dbo")
            dbo.execute("SELECT audit.hold_master_key(%s, 'new_master_key')", (key,))
            dbo.execute("SELECT audit.add_master_key()")
            dbo.execute("SELECT audit.hold_master_key(%s)", (key,))
            dbo.execute("SELECT audit.declare_secret('s', 'a slot'); SELECT audit.put_secret('t1', 's', 'v')")
            assert dbo.execute("SELECT audit.read_secret('t1', 's')").fetchone() == ("v",)
            assert su.execute("SELECT count(*) FROM public.loot").fetchone() == (0,)
            su.execute("REVOKE audit_secrets FROM dbo")


def test_an_install_that_succeeds_leaves_no_error_in_the_server_log(db, pg_cluster):
    """yoyo used to find out what the database can do by failing statements: every install, even
    one that changed nothing, left ERROR lines a DBA would take for a failure."""
    log = pg_cluster.log
    start = log.stat().st_size
    install(db, "quiet_log")  # a first install, migrations and all
    install(db, "quiet_log")  # and one that changes nothing
    install(db)
    time.sleep(0.2)  # the logging collector is not involved (pg_ctl -l), but give the write a moment
    with log.open("rb") as written:
        written.seek(start)
        added = written.read().decode(errors="replace")
    assert "quiet_log" in "".join(r[0] for r in db.execute("SELECT nspname FROM pg_namespace").fetchall())
    errors = [line for line in added.splitlines() if re.search(r"\b(ERROR|FEHLER|FATAL|PANIC):", line)]
    assert errors == []


@pytest.mark.parametrize(("missing", "command", "says"), [
    ("boto3", ["archive", "run", "--target", "s3://bucket/prefix", "--hmac-key-file", "{key}"],
     "pip install 'pgaudit_py[s3]'"),
    ("starlette", ["serve"], "pip install 'pgaudit_py[server]'"),
    ("uvicorn", ["serve"], "pip install 'pgaudit_py[server]'"),
])
def test_a_missing_extra_is_one_line_naming_the_pip_install(db, tmp_path, missing, command, says):
    (tmp_path / "hmac.key").write_bytes(b"k" * 32)
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=app_maintainer"
    # As if the extra were not installed: importing it fails.
    script = (f"import sys; sys.modules[{missing!r}] = None; from pgaudit_py.cli import main; "
              f"sys.argv = ['pgaudit', *{[c.format(key=tmp_path / 'hmac.key') for c in command]!r}, '--dsn', {dsn!r}]; "
              "main()")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode in (1, 2) and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0 and says in done.stderr


def test_the_core_install_needs_no_extra():
    import tomllib

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    assert sorted(d.split(">")[0].split("[")[0] for d in project["dependencies"]) == [
        "click", "cryptography", "psycopg", "yoyo-migrations"]
    assert set(project["optional-dependencies"]) >= {"s3", "server", "test"}


def test_sql_dir_and_migrations_dir_name_the_shipped_files():
    import pgaudit_py

    assert [p.name for p in sorted(pgaudit_py.sql_dir().glob("*.sql"))][:3] == ["10_guards.sql", "12_log_partitions.sql", "14_wild_numbers.sql"]
    assert (pgaudit_py.sql_dir() / "superuser" / "70_event_triggers.sql").is_file()
    assert sorted(p.stem for p in pgaudit_py.migrations_dir().glob("*.sql")) == installer.migration_ids()
    assert "@schema@" in (pgaudit_py.sql_dir() / "20_events.sql").read_text()


def test_archive_query_without_its_extra_names_the_pip_install(tmp_path):
    script = ("import sys; sys.modules['duckdb'] = None; from pgaudit_py.cli import main; "
              f"sys.argv = ['pgaudit', 'archive', 'query', 'SELECT 1', '--target', 'file://{tmp_path}']; main()")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0 and "pip install 'pgaudit_py[query]'" in done.stderr
