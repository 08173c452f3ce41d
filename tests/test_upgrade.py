"""Installations of earlier schemas upgrade in place. The previous release (0.1.0, commit c7a2a6e):
its data and chain stay valid, and the objects it generated are replaced by the safe ones (capture
functions owned by the capture role in its own schema, the privileged functions by their roles).
The schema before the log's indexes changed (commit 55cb30e, migrations through 0012): its events,
sealed and pending, read and verify the same after the upgrade."""

from __future__ import annotations

import re
from types import ModuleType

import psycopg
import pytest
from earlier_releases import installer_at

from pgaudit_py import list_events, row_history, seal, status
from pgaudit_py.chain import verify_chain
from pgaudit_py.installer import install

RELEASE = "c7a2a6e"  # 0.1.0
BEFORE_INDEXES = "55cb30e"  # migrations through 0012_block_line_hashes


@pytest.fixture(scope="module")
def previous_installer(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return installer_at(RELEASE, tmp_path_factory)


def test_an_installation_of_the_previous_release_upgrades_in_place(db, connect, previous_installer):
    db.execute("SET lc_messages = 'C'")  # its guards read English message text
    previous_installer.install(db, "upgr")
    db.execute("""CREATE TYPE public.mood AS ENUM ('ok', 'bad');
                  CREATE TABLE public.feel (id int PRIMARY KEY, m public.mood, note text);
                  CREATE FUNCTION public.mood_json(public.mood) RETURNS json LANGUAGE plpgsql AS $$
                      BEGIN RAISE NOTICE 'who_ran %', current_user; RETURN to_json($1::text); END $$;
                  CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood);""")
    # Who ran the cast, said in a notice: the capture functions roll back what the sandbox wrote.
    who_ran: set[str] = set()
    db.add_notice_handler(lambda n: (n.message_primary or "").startswith("who_ran ")
                          and who_ran.add((n.message_primary or "").removeprefix("who_ran ")))
    db.execute("SELECT upgr.enable_tracking('public.feel')")  # the previous release's own call
    db.execute("INSERT INTO public.feel VALUES (1, 'ok', 'a'), (2, 'bad', 'b')")
    db.execute("""SELECT upgr.record(kind => 'order.paid', payload => '{"n": 1}')""")
    seal(db, audit_schema="upgr")  # version 1 blocks
    db.execute("UPDATE public.feel SET note = 'c' WHERE id = 1")  # pending across the upgrade
    assert who_ran == {"upgr_owner"}  # the flaw
    who_ran.clear()

    db.execute("RESET lc_messages")
    report = install(db, "upgr")
    assert report.migrations == ["0007_origin_quarantine", "0008_archive_claim", "0009_intake_ids",
                                 "0010_rate_counter_windows", "0011_tracking_baseline",
                                 "0012_block_line_hashes", "0013_single_filter_indexes",
                                 "0014_intake_rotation", "0015_api_tokens",
                                 "0016_event_type_catalogues", "0017_rare_value_indexes", "0018_log_partitions",
                                 "0019_intake_checks_in_writers", "0020_archive_and_quarantine_indexes",
                                 "0021_intake_ids_of_their_own", "0022_tracking_ends_index", "0023_truncates_index",
                                 "0024_tracking_name_types", "0025_owner_proof_role_ids",
                                 "0026_owner_proof_statements", "0027_owner_proof_tokens"]
    # What the key is made of is taken for the table tracked before (a retype is refused by it).
    assert db.execute("SELECT name_types -> 'columns' FROM upgr.tracked_tables").fetchone()[0] == {
        "1": [str(db.execute("SELECT 'int4'::regtype::oid").fetchone()[0])]}
    # A superuser's cast function in PL/pgSQL is no longer trusted (it may call anyone's functions):
    # the table is still captured, the cast run in the sandbox, and status says so.
    assert status(db, "upgr").problems == [
        "tracked table public.feel: type public.mood has a cast to json whose function public.mood_json(public.mood)"
        " is not a superuser's in C, or takes any type: it would decide what is recorded, or fail every write"]
    # The kind prefix a table was tracked under is held for it (a look-alike cannot take it over).
    assert db.execute("SELECT kind_prefix, relid = 'public.feel'::regclass::oid FROM upgr.kind_prefixes").fetchall() \
        == [("public.feel", True)]
    functions = dict(db.execute("""SELECT p.pronamespace::regnamespace::text || '.' || p.proname, p.proowner::regrole::text
                                     FROM pg_proc p
                                    WHERE p.pronamespace::regnamespace::text IN ('upgr', 'upgr_capture')
                                      AND (p.proname IN ('seal', 'prune_events', 'delete_archived', '_capture_truncate',
                                                         '_generate_capture') OR p.proname ~ '^_capture_[0-9]+$')""").fetchall())
    capture_function = db.execute("SELECT upgr._capture_function('public.feel'::regclass)").fetchone()[0]
    assert functions == {"upgr.seal": "upgr_sealer", "upgr.prune_events": "upgr_pruner",
                         "upgr.delete_archived": "upgr_pruner", "upgr_capture._capture_truncate": "upgr_capture",
                         "upgr._generate_capture": "upgr_owner", capture_function: "upgr_capture"}

    db.execute("UPDATE public.feel SET m = 'ok' WHERE id = 2")
    assert who_ran == {"upgr_sandbox"}
    assert seal(db, audit_schema="upgr").sealed == 2  # the update pending across the upgrade, and the one after
    assert db.execute("SELECT canonical_version, count(*) FROM upgr.blocks GROUP BY 1 ORDER BY 1").fetchall() == [
        (1, 1), (2, 1)]
    assert db.execute("SELECT ok FROM upgr.verify()").fetchone() == (True,)
    assert verify_chain(db, audit_schema="upgr").ok
    assert [e.row_after["note"] for e in row_history(db, "public.feel", "1", audit_schema="upgr")] == ["a", "c"]
    assert install(db, "upgr").changed is False


@pytest.fixture(scope="module")
def installer_before_indexes(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return installer_at(BEFORE_INDEXES, tmp_path_factory)


FILTERS = [{}, {"tenant_id": "t1"}, {"kind_prefix": "order."}, {"kind_prefix": "public.stock."},
           {"target_type": "order"}, {"target_id": "o-2"}, {"correlation_id": "c-1"}, {"outcome": "failure"},
           {"actor_type": "service"}, {"actor_id": "u-3"}]


def trail(db, **filters):
    return [(e.seq, e.id, e.kind) for e in list_events(db, audit_schema="upgi", page_size=500, **filters)]


def test_a_log_with_events_upgrades_to_the_single_filter_indexes(db, installer_before_indexes):
    """The log's indexes are rebuilt in place: every event, sealed or pending, is found by each
    filter as before, the chain verifies, and each single filter is served by an index."""
    installer_before_indexes.install(db, "upgi")
    db.execute("CREATE TABLE public.stock (id int PRIMARY KEY, qty int)")
    db.execute("SELECT upgi.enable_tracking('public.stock')")
    db.execute("""SELECT upgi.record(kind => k, tenant_id => 't' || (n % 3), actor_type => a, actor_id => 'u-' || (n % 5),
                                     target_type => 'order', target_id => 'o-' || (n % 4), correlation_id => 'c-' || (n % 2),
                                     outcome => CASE WHEN n % 7 = 0 THEN 'failure' ELSE 'success' END,
                                     payload => jsonb_build_object('n', n))
                    FROM generate_series(1, 60) n,
                         LATERAL (SELECT CASE WHEN n % 2 = 0 THEN 'order.paid' ELSE 'user.login' END AS k,
                                         CASE WHEN n % 3 = 0 THEN 'service' ELSE 'user' END AS a) x""")
    db.execute("INSERT INTO public.stock SELECT n, n FROM generate_series(1, 5) n")
    db.execute("UPDATE public.stock SET qty = qty + 1 WHERE id <= 2")
    assert seal(db, audit_schema="upgi").sealed == 68  # with audit.tracking_enabled
    db.execute("DELETE FROM public.stock WHERE id = 5")  # pending across the upgrade
    db.execute("SELECT upgi.record(kind => 'order.paid', tenant_id => 't1', target_type => 'order', target_id => 'o-2')")
    before = {str(f): trail(db, **f) for f in FILTERS}
    assert all(before.values())

    report = install(db, "upgi")
    assert report.migrations == ["0013_single_filter_indexes", "0014_intake_rotation", "0015_api_tokens",
                                 "0016_event_type_catalogues", "0017_rare_value_indexes", "0018_log_partitions",
                                 "0019_intake_checks_in_writers", "0020_archive_and_quarantine_indexes",
                                 "0021_intake_ids_of_their_own", "0022_tracking_ends_index", "0023_truncates_index",
                                 "0024_tracking_name_types", "0025_owner_proof_role_ids",
                                 "0026_owner_proof_statements", "0027_owner_proof_tokens"]
    assert status(db, "upgi").problems == []
    assert {str(f): trail(db, **f) for f in FILTERS} == before
    # The log is partitioned now: its events are the first partition's, which the next million seqs fit.
    assert db.execute("SELECT relkind FROM pg_class WHERE oid = 'upgi.event_log'::regclass").fetchone() == ("p",)
    assert db.execute("SELECT part::text, first_seq, last_seq FROM upgi._log_partitions()").fetchall() == [
        ("upgi.event_log_000000", 0, 999_999)]
    assert db.execute("SELECT count(*) FROM upgi.event_log_000000").fetchone() == (68,)
    assert seal(db, audit_schema="upgi").sealed == 2
    assert db.execute("SELECT ok, events_checked FROM upgi.verify()").fetchone() == (True, 70)
    # Blocks sealed before say nothing of their events' times; prune reads those (preview: both blocks, one batch each).
    assert db.execute("SELECT block_no, newest_occurred_at IS NOT NULL FROM upgi.blocks ORDER BY 1").fetchall() == [
        (1, False), (2, True)]
    assert db.execute("SELECT events, batches FROM upgi.preview_prune('1 microsecond', 1)").fetchone() == (70, 2)
    assert verify_chain(db, audit_schema="upgi").ok
    assert [e.kind for e in row_history(db, "public.stock", "5", audit_schema="upgi")] == [
        "public.stock.insert", "public.stock.delete"]

    # Statistics of every row (ANALYZE samples all of a small table), so the plans are the same in every
    # run: without them, whether autovacuum had analyzed the log decided. No value is most events':
    # for one (target_type 'order', 61 of 70) the key's index read backwards, filtering, is cheaper.
    db.execute("ANALYZE upgi.event_log")
    db.execute("SET enable_seqscan = off")  # a tiny table: only whether an index can serve the filter
    for column, value in [("tenant_id", "t1"), ("kind", "order.paid"), ("target_type", "public.stock"), ("target_id", "o-2"),
                          ("actor_id", "u-3")]:
        plan = "\n".join(r[0] for r in db.execute(
            f"EXPLAIN SELECT seq FROM upgi.event_log WHERE {column} = %s ORDER BY seq DESC LIMIT 50", [value]))
        # An index scan, or a bitmap one (the planner's choice as the statistics come and go).
        used = re.findall(r"(?: using|Bitmap Index Scan on) (event_log\w+)", plan)
        assert used, plan
        leading = db.execute("""SELECT a.attname FROM pg_index i JOIN pg_attribute a
                                    ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                                 WHERE i.indexrelid = %s::regclass""", [f"upgi.{used[0]}"]).fetchone()
        assert leading == (column,), plan  # the index starts with the filter's column: it seeks, not scans

    # Ids made before the upgrade keep their version 4; events written after it get time-ordered ids.
    assert {e.id.version for e in list_events(db, audit_schema="upgi", page_size=500)} == {4}
    db.execute("SELECT upgi.record(kind => 'order.shipped')")
    db.execute("INSERT INTO public.stock VALUES (6, 6)")
    assert seal(db, audit_schema="upgi").sealed == 2
    assert [(e.kind, e.id.version) for e in list_events(db, audit_schema="upgi", page_size=2)] == [
        ("public.stock.insert", 7), ("order.shipped", 7)]


BEFORE_NAMED_COLUMNS = "d0a89c2"  # the last schema that tracked reg* and aclitem columns


@pytest.fixture(scope="module")
def installer_before_named_columns(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    return installer_at(BEFORE_NAMED_COLUMNS, tmp_path_factory)


def test_a_table_tracked_with_a_column_that_prints_names_is_named_by_status_after_the_upgrade(
        db, connect, installer_before_named_columns):
    """A table tracked before reg* and aclitem columns were refused keeps its capture and its
    history through the upgrade; status names it, a later change of it is refused, and the way out
    the docs give (disable, store the name as text, enable again) leaves status clean."""
    installer_before_named_columns.install(db, "upgn")
    db.execute("CREATE TABLE public.grants_kept (id int PRIMARY KEY, rel regclass, acl aclitem[], note text)")
    db.execute("SELECT upgn.enable_tracking('public.grants_kept')")
    db.execute("INSERT INTO public.grants_kept VALUES (1, 'pg_class', '{postgres=r/postgres}', 'a')")
    assert seal(db, audit_schema="upgn").sealed == 2  # with audit.tracking_enabled

    install(db, "upgn")
    problems = status(db, "upgn").problems
    assert len(problems) == 1 and problems[0].startswith("tracked table public.grants_kept: its columns are of type ")
    assert "prints an object's name" in problems[0]
    db.execute("UPDATE public.grants_kept SET note = 'b' WHERE id = 1")  # still captured
    with pytest.raises(psycopg.Error) as refused:
        db.execute("ALTER TABLE public.grants_kept ADD COLUMN extra int")
    assert refused.value.sqlstate == "PA008"

    db.execute("SELECT upgn.disable_tracking('public.grants_kept')")
    db.execute("ALTER TABLE public.grants_kept ALTER COLUMN rel TYPE text, ALTER COLUMN acl TYPE text[]")
    db.execute("SELECT upgn.enable_tracking('public.grants_kept')")
    assert status(db, "upgn").problems == []
    db.execute("UPDATE public.grants_kept SET note = 'c' WHERE id = 1")
    seal(db, audit_schema="upgn")
    assert [(e.kind.rsplit(".", 1)[1], e.row_after and e.row_after["note"])
            for e in row_history(db, "public.grants_kept", "1", audit_schema="upgn")] == [
        ("insert", "a"), ("update", "b"), ("update", "c")]
    assert db.execute("SELECT ok FROM upgn.verify()").fetchone() == (True,)


def test_a_table_keyed_by_its_replica_identity_loses_that_key_at_the_upgrade_recorded(
        db, installer_before_named_columns):
    """Before trial 33 a replica identity index keyed a table without a primary key; now only a
    primary key does (docs/capture.md). The upgrade brings the tracked entry up to date and says so."""
    installer_before_named_columns.install(db, "upgk")
    db.execute("CREATE TABLE public.codes_kept (code text NOT NULL, label text);"
               " CREATE UNIQUE INDEX codes_kept_code ON public.codes_kept (code);"
               " ALTER TABLE public.codes_kept REPLICA IDENTITY USING INDEX codes_kept_code")
    db.execute("SELECT upgk.enable_tracking('public.codes_kept')")
    db.execute("INSERT INTO public.codes_kept VALUES ('X1', 'a')")
    assert db.execute("SELECT key_columns FROM upgk.tracked_tables").fetchone() == (["code"],)

    install(db, "upgk")
    assert db.execute("SELECT key_columns FROM upgk.tracked_tables").fetchone() == (None,)
    altered = db.execute("""SELECT payload -> 'before' -> 'key_columns', payload -> 'after' -> 'key_columns'
                              FROM upgk.events WHERE kind = 'audit.tracked_table_altered'""").fetchall()
    assert altered == [(["code"], None)]
    db.execute("INSERT INTO public.codes_kept VALUES ('X2', 'b')")
    seal(db, audit_schema="upgk")
    assert db.execute("SELECT target_id FROM upgk.events WHERE kind = 'public.codes_kept.insert' ORDER BY seq"
                      ).fetchall() == [("X1",), (None,)]
    assert status(db, "upgk").problems == []
    assert install(db, "upgk").changed is False
    assert db.execute("SELECT count(*) FROM upgk.events WHERE kind = 'audit.tracked_table_altered'").fetchone() == (1,)
    assert db.execute("SELECT ok FROM upgk.verify()").fetchone() == (True,)


def test_a_tracked_partitioned_table_gets_the_rule_that_refuses_merge_at_the_upgrade(db, installer_before_named_columns):
    """Before trial 36 a tracked partitioned table took MERGE, whose moved rows PostgreSQL 15.18 passes
    to no transition table; the upgrade gives it the rule that makes PostgreSQL refuse MERGE."""
    installer_before_named_columns.install(db, "upgm")
    db.execute("CREATE TABLE public.stock_m (id int, region text, qty int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);"
               " CREATE TABLE public.stock_m_eu PARTITION OF public.stock_m FOR VALUES IN ('eu');"
               " CREATE TABLE public.stock_m_us PARTITION OF public.stock_m FOR VALUES IN ('us')")
    db.execute("SELECT upgm.enable_tracking('public.stock_m')")
    db.execute("INSERT INTO public.stock_m VALUES (1, 'eu', 10)")
    rules = "SELECT count(*) FROM pg_rewrite WHERE ev_class = 'public.stock_m'::regclass"
    assert db.execute(rules).fetchone() == (0,)

    install(db, "upgm")
    assert db.execute(rules).fetchone() == (1,)
    with pytest.raises(psycopg.errors.FeatureNotSupported):
        db.execute("MERGE INTO public.stock_m s USING (VALUES (1)) v(id) ON s.id = v.id"
                   " WHEN MATCHED THEN UPDATE SET region = 'us'")
    db.execute("UPDATE public.stock_m SET region = 'us' WHERE id = 1")  # a plain UPDATE moves it, captured
    seal(db, audit_schema="upgm")
    assert db.execute("SELECT target_id, payload ->> 'moved_from' FROM upgm.events"
                      " WHERE kind = 'public.stock_m.update'").fetchall() == [('[1, "us"]', '[1, "eu"]')]
    assert status(db, "upgm").problems == []
    assert db.execute("SELECT ok FROM upgm.verify()").fetchone() == (True,)
