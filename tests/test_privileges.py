"""Every privilege claim, tried by the role it is about."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest

from pgaudit_py import AppendOnlyViolation, InvalidPayload, audit_context, list_events, prune_events, record, seal

WRITES = [
    "INSERT INTO audit.{t} (actor_type, db_role, kind, outcome, txid, occurred_at, payload{extra})"
    " VALUES ('user', 'x', 'forged.event', 'success', '1', now(), '{{}}'{extra_values})",
    "UPDATE audit.{t} SET payload = '{{\"forged\": true}}'",
    "DELETE FROM audit.{t}",
    "TRUNCATE audit.{t}",
]


def statement(template: str, table: str) -> str:
    extra = (", seq, id, sealed_at", ", 999, gen_random_uuid(), now()") if table == "event_log" else ("", "")
    return template.format(t=table, extra=extra[0], extra_values=extra[1])


@pytest.fixture
def one_of_each(db, connect):
    record(connect("app_writer"), "sealed.event")
    seal(db)
    record(connect("app_writer"), "pending.event")


@pytest.mark.parametrize("role", ["app_writer", "app_reader", "app_maintainer", "app_attacker"])
@pytest.mark.parametrize("table", ["event_intake", "event_log"])
@pytest.mark.parametrize("template", WRITES)
def test_no_role_may_write_the_log_directly(connect, counts, one_of_each, role, table, template):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        connect(role).execute(statement(template, table))
    assert counts() == (1, 1)


@pytest.mark.parametrize("as_owner", [True, False], ids=["owner", "superuser"])
@pytest.mark.parametrize("table, template", [
    (table, template) for table in ("event_intake", "event_log") for template in WRITES
    if not (table == "event_intake" and template.startswith("INSERT"))  # appending is how events arrive
])
def test_owner_and_superuser_are_refused_outside_the_privileged_functions(db, counts, one_of_each,
                                                                          as_owner, table, template):
    if as_owner:
        db.execute("SET ROLE audit_owner")
    if as_owner:
        expected: type[Exception] = psycopg.errors.InsufficientPrivilege  # revoked from the owner too
    else:
        expected = AppendOnlyViolation  # the guard, which a superuser meets too
    with pytest.raises(psycopg.Error) as caught:
        db.execute(statement(template, table))
    if expected is AppendOnlyViolation:
        assert caught.value.sqlstate == "PA006", caught.value
        assert f"audit.{table} is append-only" in str(caught.value)
    else:
        assert isinstance(caught.value, expected)
    db.execute("RESET ROLE")
    assert counts() == (1, 1)


@pytest.mark.parametrize("role", ["app_reader", "app_attacker", "app_maintainer"])
def test_reader_maintainer_and_strangers_cannot_record(connect, counts, role):
    """docs/security.md: the maintainer appends only the system events of what it does."""
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        record(connect(role), "forged.event")
    assert counts() == (0, 0)


@pytest.mark.parametrize("role", ["app_writer", "app_reader", "app_attacker"])
def test_only_the_maintainer_prunes_and_seals(db, connect, counts, one_of_each, role):
    conn = connect(role)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        prune_events(conn, timedelta(milliseconds=1))  # the sealed event is older than that
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        seal(conn)  # and the pending one is there to seal
    assert counts() == (1, 1)
    assert db.execute("SELECT (SELECT count(*) FROM audit.blocks), (SELECT count(*) FROM audit.prune_points)"
                      ).fetchone() == (1, 0)


@pytest.mark.parametrize("role", ["app_writer", "app_attacker"])
def test_writers_and_strangers_cannot_read(connect, one_of_each, role):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        list_events(connect(role))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        connect(role).execute("SELECT * FROM audit.events")
    assert len(list_events(connect("app_reader"))) == 2


@pytest.mark.parametrize("role", ["app_writer", "app_reader", "app_maintainer", "app_attacker"])
def test_no_role_writes_any_audit_table(db, connect, role):
    """Beyond the log: the catalogue, the chain, the limits, the keys, the archive records."""
    tables = dict(db.execute("""
        SELECT c.oid::regclass::text, (SELECT quote_ident(a.attname) FROM pg_attribute a
                                         WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                                           AND a.attidentity = '' AND a.attgenerated = ''
                                         ORDER BY a.attnum LIMIT 1)
          FROM pg_class c WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind IN ('r', 'p')""").fetchall())
    assert {"audit.blocks", "audit.tracked_tables", "audit.rate_limits", "audit.master_keys",
            "audit.archive_batches", "audit.seal_state"} <= set(tables)
    rows = "SELECT " + ", ".join(f"(SELECT count(*) FROM {table})" for table in tables)
    before = db.execute(rows).fetchone()
    assert sum(before) > 0  # seal_state, archive_settings and the like have a row each: a DELETE would show
    conn = connect(role)
    for table, column in tables.items():
        for attempt in (f"INSERT INTO {table} DEFAULT VALUES", f"DELETE FROM {table}", f"TRUNCATE {table}",
                        f"UPDATE {table} SET {column} = {column} WHERE false"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(attempt)
    assert db.execute(rows).fetchone() == before


def test_every_security_definer_function_is_pinned_and_closed_to_public(db):
    # Including the capture function generated for each tracked table.
    db.execute("CREATE TABLE public.tracked (id int PRIMARY KEY); SELECT audit.enable_tracking('public.tracked')")
    rows = db.execute("""
        SELECT p.proname, p.proconfig, has_function_privilege('app_attacker', p.oid, 'EXECUTE')
          FROM pg_proc p WHERE p.pronamespace IN ('audit'::regnamespace, 'audit_capture'::regnamespace)
           AND p.prosecdef""").fetchall()
    assert {r[0] for r in rows} >= {"record", "seal", "prune_events", "register_event_type", "seal_status"}
    assert any(r[0].startswith("_capture_") and r[0] != "_capture_truncate" for r in rows)
    for name, config, public_can_execute in rows:
        assert config[0] == "search_path=pg_catalog, pg_temp", name
        # The sealer's (see seal()), the output settings of captured rows (sql/60_capture.sql), and the
        # rate limit's plans (sql/75_rate_limits.sql).
        assert set(config[1:]) <= {"jit=off", "extra_float_digits=1", "IntervalStyle=postgres", "bytea_output=hex",
                                   "lc_monetary=C", "TimeZone=UTC", "DateStyle=ISO", "quote_all_identifiers=off",
                                   "lock_timeout=50ms", "lock_timeout=10ms", "enable_seqscan=off"}, name
        assert not public_can_execute, name
    assert db.execute("SELECT * FROM audit._integrity_problems()").fetchall() == []


def test_internal_helpers_are_the_owners_but_for_the_few_callers_need(db, connect):
    """Helpers (names starting with _) run for the owner alone, except those that functions running
    as their caller need: the reader's queries, the maintainer's enable/disable functions, and the
    function roles' privileged functions. The SECURITY DEFINER ones among the maintainer's check
    table ownership themselves (tests/test_tracking.py) or are trigger functions, which cannot be
    called; the function roles may call any helper that runs with its caller's rights (it adds none),
    and the capture role the sandbox."""
    rows = db.execute(r"""
        SELECT r.role, p.proname::text, p.prosecdef
          FROM pg_proc p, (VALUES ('audit_writer'), ('audit_reader'), ('audit_maintainer'), ('audit_secrets'),
                                  ('app_attacker'), ('audit_capture'), ('audit_sealer'), ('audit_pruner'),
                                  ('audit_sandbox'), ('audit_owner')) AS r(role)
         WHERE p.pronamespace IN ('audit'::regnamespace, 'audit_capture'::regnamespace) AND p.proname LIKE '\_%'
           AND p.proname !~ '^_capture_[0-9]+$'
           AND has_function_privilege(r.role, p.oid, 'EXECUTE')""").fetchall()
    reader = {"_changed", "_changed_as_captured", "_note_omitted", "_replaced_keys", "_check_prefixes", "_check_prune_args", "_is_age", "_history_target", "_key_as_captured", "_key_value", "_key_spellings_vary", "_base_type", "_last_change", "_key_columns",
              "_prunable_blocks", "_tracking_of", "_lineage", "_wild_numbers", "_wild_numbers_walked", "_wild_numbers_caught", "_long_numbers", "_tame_numbers", "_tame_numbers_caught",
              "_omit_unprintable", "_omitted", "_longest_first", "_block_batches", "_line_too_long", "_canonical_event",
              "_log_partitions", "_log_partition_size"}
    maintainer_definers = {"_capture_truncate", "_cover_partition", "_drop_rate_limit", "_put_rate_limit",
                           "_rate_limit_trigger", "_register_tracking", "_unregister_tracking", "_take_baseline"}
    assert {r[1] for r in rows if r[0] == "audit_reader"} == reader
    assert {r[1] for r in rows if r[0] == "audit_maintainer"} == reader | maintainer_definers | {
        "_attach_capture", "_refuse_merge", "_capture_function", "_capture_tables", "_inheritors", "_check_kind", "_check_trackable", "_prove_owner",
        "_reserved_kind", "_tree_problem", "_json_casts", "_column_types", "_json_columns", "_column_parts", "_columns_with_dropped_attributes", "_columns_unfit_for_tenant", "_temporary_dependency", "_temporary_beneath"}
    assert {r[1] for r in rows if r[0] == "audit_maintainer" and r[2]} == maintainer_definers
    assert [r for r in rows if r[0] in ("audit_writer", "audit_secrets", "app_attacker")] == []
    assert sorted(r[1] for r in rows if r[0] == "audit_sandbox") == ["_baseline_images", "_row_images", "_row_json"]  # its own, nothing else
    invokers = {r[1] for r in rows if r[0] == "audit_owner" and not r[2]}
    for role in ("audit_capture", "audit_sealer", "audit_pruner"):
        assert {r[1] for r in rows if r[0] == role and not r[2]} == invokers, role
    # The owner's DDL on the log's partitions: making them (the sealer), dropping pruned ones (the pruner);
    # and the sealer's check, before it sets an event aside, that its path is as installed (the install record).
    assert {r[1] for r in rows if r[0] == "audit_sealer" and r[2]} == {"_add_log_partitions", "_sealing_path_problem"}
    assert {r[1] for r in rows if r[0] == "audit_pruner" and r[2]} == {"_drop_log_partitions"}
    assert {r[1] for r in rows if r[0] == "audit_capture" and r[2]} == {
        "_row_images", "_row_json", "_baseline_images", "_baseline_taken", "_claim_baseline", "_capture_truncate",
        "_take_baseline"}  # the last two its own
    with pytest.raises(psycopg.errors.FeatureNotSupported):  # trigger functions can only be called as triggers
        connect("app_maintainer").execute("SELECT audit._rate_limit_trigger()")


@pytest.fixture
def hostile_public(db, connect):
    """An unprivileged role plants look-alikes of what the functions call in schema public."""
    db.execute("GRANT CREATE ON SCHEMA public TO app_attacker")
    attacker = connect("app_attacker")
    attacker.execute("""
        CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
        CREATE FUNCTION public.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01'::timestamptz $$;
        CREATE FUNCTION public.jsonb_build_object(text, text, text, timestamptz, text, bigint, text, bigint,
                                                  text, bigint, text, bigint, text, bigint, text, text)
            RETURNS jsonb LANGUAGE sql AS $$ SELECT '{"hijacked": true}'::jsonb $$;
        CREATE FUNCTION public.sha256(bytea) RETURNS bytea LANGUAGE sql AS $$ SELECT '\\x00'::bytea $$;
        CREATE FUNCTION public.jsonb_typeof(jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'object' $$;
        CREATE FUNCTION public.current_setting(text, boolean) RETURNS text LANGUAGE sql AS $$ SELECT 'evil' $$;
        GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO PUBLIC;
    """)
    return "public, pg_catalog"


def test_hostile_search_path_changes_nothing(db, connect, hostile_public):
    # An old event, sealed first (prune takes whole blocks, oldest first).
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                  VALUES ('user', 'x', 'old.event', 'success', '1', now() - interval '400 days', '{}')""")
    seal(db)
    writer = connect("app_writer", options=f"-c search_path={hostile_public.replace(' ', '')}")
    assert writer.execute("SELECT now()").fetchone()[0].year == 2000  # the trap is armed
    with audit_context(writer, actor_id="alice", tenant_id="t1"):
        event = record(writer, "order.paid", payload={"n": 1})
    with pytest.raises(InvalidPayload, match="payload must be a JSON object, got array"):
        record(writer, "order.paid", payload=[1])  # type: ignore[arg-type]
    assert event is not None
    assert event.occurred_at.year >= 2026
    assert (event.actor_id, event.tenant_id, event.payload) == ("alice", "t1", {"n": 1})

    # A prune under the same hostile path: the audit.pruned record is genuine.
    maintainer = connect("app_maintainer", options=f"-c search_path={hostile_public.replace(' ', '')}")
    seal(maintainer)
    result = prune_events(maintainer, timedelta(days=365))
    assert result.deleted == 1 and result.cutoff > datetime(2025, 1, 1, tzinfo=timezone.utc)
    pruned = db.execute("SELECT payload, db_role FROM audit.events WHERE kind = 'audit.pruned'").fetchone()
    assert pruned is not None and pruned[0]["deleted"] == 1 and "hijacked" not in pruned[0]
    assert pruned[1] == "app_maintainer"

    reader = connect("app_reader", options=f"-c search_path={hostile_public.replace(' ', '')}")
    assert [e.kind for e in list_events(reader)] == ["audit.pruned", "order.paid"]
    seal(maintainer)
    assert reader.execute("SELECT ok, problem FROM audit.verify()").fetchone() == (True, None)


def readme_roles_table() -> dict[str, str]:
    """The "may" cell of each row of the roles table (docs/roles.md, linked from the README), by role name."""
    roles = (Path(__file__).parent.parent / "docs" / "roles.md").read_text()
    rows = re.findall(r"^\| `audit_(\w+)` \| (.*?) \| .* \|$", roles, flags=re.M)
    return dict(rows)


def names_in(cell: str) -> set[str]:
    return set(re.findall(r"`(?:audit\.)?([a-z_]+)`", cell))


@pytest.mark.parametrize("role", ["writer", "reader", "maintainer", "secrets"])
def test_the_readme_roles_table_names_exactly_what_each_role_may_execute_and_read(db, role):
    """Each role's row names every public function (no leading `_`) it may execute and every table
    or view it may read, and nothing it may not: a grant added or lost without docs/roles.md shows."""
    table = readme_roles_table()
    claimed = names_in(table[role]) | (names_in(table["reader"]) if role == "maintainer" else set())
    functions = {name for (name,) in db.execute(
        """SELECT DISTINCT p.proname FROM pg_proc p
            WHERE p.pronamespace = 'audit'::regnamespace AND p.proname !~ '^_'
              AND has_function_privilege(%s, p.oid, 'EXECUTE')""", (f"audit_{role}",))}
    relations = {name for (name,) in db.execute(
        """SELECT c.relname FROM pg_class c
            WHERE c.relnamespace = 'audit'::regnamespace AND c.relkind IN ('r', 'v', 'p')
              AND has_table_privilege(%s, c.oid, 'SELECT')""", (f"audit_{role}",))}
    all_functions = {name for (name,) in db.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'audit'::regnamespace")}
    all_relations = {name for (name,) in db.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'audit'::regnamespace AND relkind IN ('r', 'v', 'p')")}
    assert functions == claimed & all_functions
    assert relations == claimed & all_relations
