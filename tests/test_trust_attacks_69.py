"""A sixty-ninth attacker's trial: a re-run of the first trial's five classes, in new variants,
against HEAD.

Classes (test names carry the letter):
  A. code with a package role's rights: the table's owner (t69_owner, no audit role) and a plain
     login with CREATE on public (t69_mallory) plant code (domain CHECKs on composites, ranges and
     keys that a baseline and the history functions read, index expressions, partial-index
     predicates and expression statistics, look-alike functions and operators in public put first
     on every role's search_path, temporary tables shadowing every relation of the package's
     schemas in the DDL runner's, writer's and reader's sessions, defaults and generated columns
     added by DDL the event triggers follow, rules, views, policies, a partition's own row
     security under a baseline, hostile kind prefixes and names, a nondeterministic collation);
     public.t69_who_ran (and a NOTICE, which outlives the sandbox's rollback) must never name a
     role but the attacker's, the writer's and the sandbox, and no such code may append to the
     intake;
  B. capture switched off while the table stays tracked: trigger DDL on a partition and on the
     parent ONLY, SET SCHEMA and a table of the same name made in its place, TRUNCATE of an
     untracked table CASCADE into a tracked one, COPY FREEZE after a TRUNCATE, MERGE's rule
     renamed, disabled or dropped, upserts and writable CTEs, a deferred trigger rewriting the row
     at commit, an option's column swapped or dropped, unusual statement forms (COPY of UPDATE
     RETURNING, EXPLAIN ANALYZE, prepared, per-row SQL functions), a hostile schema rename and a
     DROP SCHEMA CASCADE by another role;
  C. forged history: idempotency keys across spellings of a tenant, prune announcements recorded
     in reserved-looking kinds, captured-looking kinds and moves recorded against a row, a
     TRUNCATE of a tenant_column table and the package's own events under a tenant the session
     claims, tables whose names make reserved prefixes or another table's prefix, a table of
     another role made under a dropped tracked table's name;
  D. session settings and a German server: refusals known by SQLSTATE under odd settings, row
     images, keys, tenants and sealed lines independent of the writer's, the sealer's and the
     reader's settings (DateStyle, IntervalStyle, TimeZone, extra_float_digits, bytea_output,
     standard_conforming_strings, quote_all_identifiers, client_encoding LATIN1, SQL_ASCII, ...);
  E. hostile payloads and row images through both verifiers (SQL audit.verify() and Python
     verify_chain, and `pgaudit verify`), then a real tamper caught by both (also one that
     rewrites a block's unhashed line_hashes and its events_hash).

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Roles made here: t69_owner (owns tables, no audit role; app_maintainer is made a member so it may
track them) and t69_mallory (a login with CREATE on public); both dropped afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from contextlib import suppress
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from trial_helpers import (
    TableOwnerKit,
    acct,
    both_verifiers,
    n_events,
    problems_of,
    seal_all,
    sqlstate_of,
    table_owner_kit,
)

from pgaudit_py import (
    disable_tracking,
    enable_tracking,
    list_events,
    record,
    row_as_of,
    row_history,
    row_state_as_of,
    seal,
    status,
)
from pgaudit_py.chain import verify_chain
from pgaudit_py.errors import PgAuditError

# Whose rights the planted code may run with: its authors', a writer of the table (PostgreSQL runs a
# table's code as the role whose statement fired it) and the sandbox (which holds nothing, by design).
MAY_RUN = {"t69_owner", "t69_mallory", "app_writer", "audit_sandbox"}


# ============================================ fixture ============================================


class Kit(TableOwnerKit):
    """Also keeps the spy's notices, from every session it makes."""

    def __init__(self, db, connect, prefix):
        super().__init__(db, connect, prefix)
        self.notices: list[dict] = []

    def _keep(self, notice: psycopg.errors.Diagnostic) -> None:
        message = notice.message_primary or ""
        if message.startswith("t69who "):
            with suppress(ValueError):
                self.notices.append(json.loads(message.removeprefix("t69who ")))

    def watch(self, conn: psycopg.Connection) -> psycopg.Connection:
        conn.add_notice_handler(self._keep)
        return conn

    def conn(self, role: str | None = None, **kwargs) -> psycopg.Connection:
        return self.watch(super().conn(role, **kwargs))

    def runs(self) -> list[tuple]:
        rows = [tuple(r) for r in self.db.execute("SELECT who, sess, what, forged FROM public.t69_who_ran")]
        rows += [(n["who"], n["sess"], n["what"], n["forged"]) for n in self.notices]
        return rows

    def privileged_runs(self) -> list[tuple]:
        return sorted({r for r in self.runs() if r[3] or r[0] not in MAY_RUN})

    def forged_in_log(self) -> int:
        return self.db.execute("SELECT count(*) FROM audit.events WHERE kind = 't69.forged'").fetchone()[0]


@pytest.fixture
def kit(db, connect):
    with table_owner_kit(db, connect, "t69", Kit) as k:
        db.execute("CREATE TABLE public.t69_who_ran (who text, sess text, what text, forged boolean)")
        db.execute("GRANT ALL ON public.t69_who_ran TO PUBLIC")
        k.watch(db)
        k.mallory.execute("""
            CREATE FUNCTION public.t69_spy(what text) RETURNS boolean LANGUAGE plpgsql AS $$
            DECLARE forged boolean := true;
            BEGIN
                BEGIN
                    INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                    VALUES ('user', 'x', 't69.forged', 'success', '1', now(), '{}');
                EXCEPTION WHEN OTHERS THEN forged := false;
                END;
                RAISE NOTICE 't69who %', json_build_object('who', current_user, 'sess', session_user,
                                                           'what', what, 'forged', forged);
                BEGIN
                    INSERT INTO public.t69_who_ran VALUES (current_user, session_user, what, forged);
                EXCEPTION WHEN OTHERS THEN NULL;
                END;
                RETURN true;
            END $$;
            CREATE FUNCTION public.t69_ispy(what text, x int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
            BEGIN PERFORM public.t69_spy(what); RETURN x; END $$;
            CREATE FUNCTION public.t69_tspy(what text, x text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
            BEGIN PERFORM public.t69_spy(what); RETURN x; END $$;
            GRANT EXECUTE ON FUNCTION public.t69_spy(text), public.t69_ispy(text, int), public.t69_tspy(text, text) TO PUBLIC""")
        yield k


def tamper(db, where: str, setting: str = "payload = payload || '{\"t69\": 1}'") -> None:
    db.execute("SET session_replication_role = replica")
    try:
        db.execute(f"UPDATE audit.event_log SET {setting} WHERE {where}")
    finally:
        db.execute("RESET session_replication_role")


def cli_verify(db, env_extra: dict | None = None) -> tuple[int, str]:
    info = db.info
    env = dict(os.environ, **(env_extra or {}))
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", "verify", "--dsn",
                           f"host={info.host} port={info.port} dbname={info.dbname} user=app_reader"],
                          capture_output=True, text=True, timeout=300, env=env)
    return done.returncode, (done.stdout + done.stderr)[-400:]


# ===================================== class A: whose rights =====================================


def test_a1_domain_checks_inside_composites_and_ranges_run_for_no_package_role(kit):
    """Attack: the owner's table has a composite column whose attribute is a domain with a CHECK
    that calls the spy, and a range over another such domain (subtype_diff the spy too). Anything
    that turns text or JSON back into the row type (json_populate_record in a baseline, the
    history functions, the sandbox's conversion) runs the CHECK as whoever does it. The maintainer
    tracks with a baseline, the writer writes, the sealer seals, the reader asks for history.
    Safe: no privileged role ran the CHECK, and nothing forged an event."""
    kit.owner.execute("""
        CREATE DOMAIN public.t69_dom AS int CHECK (public.t69_spy('domain check') AND VALUE IS NOT NULL);
        CREATE TYPE public.t69_pair AS (a public.t69_dom, b text);
        CREATE FUNCTION public.t69_diff(a int, b int) RETURNS float8 LANGUAGE plpgsql IMMUTABLE AS $$
            BEGIN PERFORM public.t69_spy('subtype_diff'); RETURN b - a; END $$;
        CREATE TYPE public.t69_rng AS RANGE (subtype = int, subtype_diff = public.t69_diff);""")
    acct(kit, columns=", p public.t69_pair, r public.t69_rng", baseline=False)
    kit.owner.execute("UPDATE public.t69_acct SET p = ROW(1, 'x'), r = public.t69_rng(1, 5)")
    enable_tracking(kit.maint, "public.t69_acct", baseline=True)
    kit.writer.execute("UPDATE public.t69_acct SET p = ROW(7, 'y'), r = public.t69_rng(2, 9) WHERE id = 1")
    kit.writer.execute("INSERT INTO public.t69_acct VALUES (3, 1, 'n', ROW(3, 'z'), public.t69_rng(0, 1))")
    seal(kit.maint)
    history = row_history(kit.reader, "public.t69_acct", "1")
    now = datetime.now(timezone.utc) + timedelta(seconds=5)
    as_of = row_as_of(kit.reader, "public.t69_acct", "1", now)
    state = row_state_as_of(kit.reader, "public.t69_acct", "3", now)
    list(list_events(kit.reader, kind_prefix="public.t69_acct."))
    st = status(kit.maint)
    assert history and as_of is not None and state is not None and st is not None
    assert kit.privileged_runs() == [] and kit.forged_in_log() == 0, kit.privileged_runs()


def test_a2_index_expressions_predicates_and_statistics_run_for_no_package_role(kit):
    """Attack: expression index, partial-index predicate, expression statistics and a CHECK
    constraint, all through an IMMUTABLE function that calls the spy (and tries to forge an event),
    on a table the maintainer then tracks with a baseline, re-tracks with other options, limits,
    and un-tracks, while the writer writes and the maintainer seals and asks status. Safe: the
    code ran as the owner and the writer only."""
    kit.owner.execute("""
        CREATE TABLE public.t69_idx (id int PRIMARY KEY, v int, note text);
        CREATE INDEX t69_idx_e ON public.t69_idx (public.t69_ispy('index expr', v));
        CREATE INDEX t69_idx_p ON public.t69_idx (id) WHERE public.t69_ispy('index pred', v) > -1;
        CREATE STATISTICS t69_idx_s ON (public.t69_ispy('stats', v)), note FROM public.t69_idx;
        ALTER TABLE public.t69_idx ADD CONSTRAINT t69_idx_c CHECK (public.t69_tspy('check', note) IS DISTINCT FROM 'zz');
        GRANT ALL ON public.t69_idx TO app_writer;
        INSERT INTO public.t69_idx SELECT g, g, 'n' FROM generate_series(1, 300) g;
        ANALYZE public.t69_idx""")
    kit.db.execute("DELETE FROM public.t69_who_ran")
    kit.notices.clear()
    enable_tracking(kit.maint, "public.t69_idx", baseline=True)
    kit.writer.execute("UPDATE public.t69_idx SET v = v + 1 WHERE id < 5")
    enable_tracking(kit.maint, "public.t69_idx", redact_columns=["note"], baseline=True)
    with suppress(psycopg.Error):
        kit.maint.execute("SELECT audit.enable_rate_limit('public.t69_idx', 1000, interval '1 minute')")
    kit.writer.execute("DELETE FROM public.t69_idx WHERE id = 7")
    seal_all(kit.maint)
    status(kit.maint)
    row_history(kit.reader, "public.t69_idx", "2")
    disable_tracking(kit.maint, "public.t69_idx")
    assert kit.privileged_runs() == [] and kit.forged_in_log() == 0, kit.privileged_runs()


LOOKALIKES = """
    CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.t69_spy('now'); RETURN pg_catalog.now(); END $$;
    CREATE FUNCTION public.to_jsonb(anyelement) RETURNS jsonb LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.t69_spy('to_jsonb'); RETURN pg_catalog.to_jsonb($1); END $$;
    CREATE FUNCTION public.sha256(bytea) RETURNS bytea LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.t69_spy('sha256'); RETURN pg_catalog.sha256($1); END $$;
    CREATE FUNCTION public.convert_to(text, name) RETURNS bytea LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.t69_spy('convert_to'); RETURN pg_catalog.convert_to($1, $2); END $$;
    CREATE FUNCTION public.encode(bytea, text) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.t69_spy('encode'); RETURN pg_catalog.encode($1, $2); END $$;
    CREATE FUNCTION public.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.t69_spy('current_setting'); RETURN pg_catalog.current_setting($1, $2); END $$;
    CREATE FUNCTION public.jsonb_typeof(jsonb) RETURNS text LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.t69_spy('jsonb_typeof'); RETURN pg_catalog.jsonb_typeof($1); END $$;
    CREATE FUNCTION public.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.t69_spy('gen_random_uuid'); RETURN pg_catalog.gen_random_uuid(); END $$;
    CREATE FUNCTION public.digest(text, text) RETURNS bytea LANGUAGE plpgsql AS $$
        BEGIN PERFORM public.t69_spy('digest'); RETURN pg_catalog.sha256(pg_catalog.convert_to($1, 'UTF8')); END $$;
    CREATE FUNCTION public.t69_eq(text, text) RETURNS boolean LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN PERFORM public.t69_spy('operator ='); RETURN $1 OPERATOR(pg_catalog.=) $2; END $$;
    CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.t69_eq);
    CREATE FUNCTION public.t69_cat(text, text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN PERFORM public.t69_spy('operator ||'); RETURN $1 OPERATOR(pg_catalog.||) $2; END $$;
    CREATE OPERATOR public.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = public.t69_cat);
    CREATE FUNCTION public.t69_arrow(jsonb, text) RETURNS text LANGUAGE plpgsql IMMUTABLE AS $$
        BEGIN PERFORM public.t69_spy('operator ->>'); RETURN $1 OPERATOR(pg_catalog.->>) $2; END $$;
    CREATE OPERATOR public.->> (LEFTARG = jsonb, RIGHTARG = text, FUNCTION = public.t69_arrow)"""


def test_a3_lookalikes_in_public_first_on_every_roles_search_path_run_for_no_package_role(kit):
    """Attack: t69_mallory (CREATE on public, no audit role) plants look-alikes of what the package
    calls (now, to_jsonb, sha256, convert_to, encode, current_setting, jsonb_typeof,
    gen_random_uuid, pgcrypto's digest, operators = || ->> on text and jsonb), and every role's
    session puts public before pg_catalog (a stored role default would do the same). Then the
    writer records and writes, the maintainer tracks (with a baseline), seals and asks status, the
    reader lists, verifies (both verifiers) and asks for history. Safe: no package role ran them."""
    acct(kit)
    kit.mallory.execute(LOOKALIKES)
    for conn in (kit.writer, kit.reader, kit.maint, kit.owner):
        conn.execute("SET search_path = public, pg_catalog, pg_temp")
    kit.db.execute("DELETE FROM public.t69_who_ran")
    kit.notices.clear()
    record(kit.writer, "t69.lookalike", tenant_id="acme", payload={"a": 1}, idempotency_key="k1")
    record(kit.writer, "t69.lookalike", tenant_id="acme", payload={"a": 1}, idempotency_key="k1")
    kit.writer.execute("UPDATE public.t69_acct SET v = 5 WHERE id = 1")
    kit.writer.execute("TRUNCATE public.t69_acct")
    enable_tracking(kit.maint, "public.t69_acct", kind_prefix="t69.acct", baseline=True)
    seal_all(kit.maint)
    status(kit.maint)
    list(list_events(kit.reader, tenant_id="acme"))
    kit.reader.execute("SELECT * FROM audit.verify()").fetchone()
    verify_chain(kit.reader)
    row_history(kit.reader, "public.t69_acct", "1")
    assert kit.privileged_runs() == [] and kit.forged_in_log() == 0, kit.privileged_runs()
    assert n_events(kit.db, "t69.lookalike") == 1
    assert both_verifiers(kit.db) == (True, True)


def test_a4_temporary_tables_named_like_the_packages_catch_nothing(kit):
    """Attack: the writer and the maintainer each make, in their own session, temporary tables
    named like the package's (event_intake, event_log, tracked_tables, seal_state, kind_prefixes,
    owner_proofs, quarantine) with an INSERT trigger that calls the spy, then write, record, track
    and seal. A definer function that named one unqualified with pg_temp on its path would write
    into it (as the package role, unaudited). Safe: the temporary tables stay empty, the spy never
    ran, and every event is in the log."""
    acct(kit)
    names = ["event_intake", "event_log", "tracked_tables", "seal_state", "kind_prefixes", "owner_proofs",
             "quarantine", "events", "blocks", "idempotency_keys"]
    for conn in (kit.writer, kit.maint):
        for n in names:
            cols = kit.db.execute(
                "SELECT string_agg(format('%%I %%s', attname, format_type(atttypid, atttypmod)), ', ' ORDER BY attnum)"
                " FROM pg_attribute WHERE attrelid = to_regclass(%s) AND attnum > 0 AND NOT attisdropped",
                [f"audit.{n}"]).fetchone()[0] or "x int"
            conn.execute(f"CREATE TEMP TABLE {n} ({cols})")
            conn.execute(f"""CREATE FUNCTION pg_temp.t69_tmp_{n}() RETURNS trigger LANGUAGE plpgsql AS $$
                             BEGIN PERFORM public.t69_spy('temp {n}'); RETURN NULL; END $$""")
            conn.execute(f"CREATE TRIGGER t69_t AFTER INSERT ON pg_temp.{n} FOR EACH ROW EXECUTE FUNCTION pg_temp.t69_tmp_{n}()")
        conn.execute("SET search_path = pg_temp, public, pg_catalog")
    record(kit.writer, "t69.temp", payload={"x": 1})
    kit.writer.execute("UPDATE public.t69_acct SET v = 9 WHERE id = 2")
    enable_tracking(kit.maint, "public.t69_acct", redact_columns=["note"])
    seal_all(kit.maint)
    kit.writer.execute("INSERT INTO public.t69_acct VALUES (5, 5, 'x')")
    seal_all(kit.maint)
    temp_rows = sum(c.execute(f"SELECT count(*) FROM pg_temp.{n}").fetchone()[0]
                    for c in (kit.writer, kit.maint) for n in names)
    assert temp_rows == 0 and kit.runs() == []
    assert n_events(kit.db, "t69.temp") == 1 and n_events(kit.db, "public.t69_acct.update") == 1
    assert n_events(kit.db, "public.t69_acct.insert") == 1


HOSTILE_PREFIXES = [
    "t69.x'); SELECT public.t69_spy('prefix'); --",
    "t69.ünïcødé",
    "t69.$$.x",
    "t69.a\u2028b",
    "t69.e\u0301",
    "t69.%s%I",
]


@pytest.mark.parametrize("prefix", HOSTILE_PREFIXES, ids=range(len(HOSTILE_PREFIXES)))
def test_a5_hostile_kind_prefixes_are_refused_or_data(kit, prefix):
    """Attack: enable_tracking with a kind prefix holding a quote and a statement, non-ASCII letters,
    a dollar quote, U+2028, a combining accent, format() directives. Safe: refused (with its
    SQLSTATE, whatever the server's language), or the events carry the prefix as given and no
    code ran."""
    kit.owner.execute("""CREATE TABLE public.t69_pfx (id int PRIMARY KEY, v int);
                         GRANT ALL ON public.t69_pfx TO app_writer""")
    try:
        enable_tracking(kit.maint, "public.t69_pfx", kind_prefix=prefix)
    except (psycopg.Error, PgAuditError) as e:
        assert getattr(e, "sqlstate", None) in ("PA001", "PA005", "22023"), (e, str(e))
        kit.writer.execute("INSERT INTO public.t69_pfx VALUES (1, 1)")
        assert kit.runs() == []
        return
    kit.writer.execute("INSERT INTO public.t69_pfx VALUES (1, 1)")
    seal_all(kit.maint)
    kinds = [r[0] for r in kit.db.execute("SELECT kind FROM audit.events WHERE target_type = %s", [prefix])]
    assert kinds == [prefix + ".insert"] and kit.runs() == []


HOSTILE_NAMES = ['t69 a"b', "t69_x$$y", "t69\u2028z", "t69_%s_%I", "t69_e\u0301", "t69_" + "é" * 29]


def test_a6_hostile_table_and_column_names_through_every_rename_run_nothing(kit):
    """Attack: a table and columns whose names hold a double quote, a dollar quote, U+2028, format()
    directives, a combining accent and 30 two-byte letters (cut at 63 bytes mid-letter?), renamed
    one to the next while tracked; between renames the writer writes. Safe: every write has its
    event under the first prefix, columns named as they are now, and no code ran."""
    first, *rest = HOSTILE_NAMES
    q = lambda n: '"' + n.replace('"', '""') + '"'  # noqa: E731
    kit.owner.execute(f"CREATE TABLE public.{q(first)} (id int PRIMARY KEY, {q('c' + first)} text)")
    kit.owner.execute(f"GRANT ALL ON public.{q(first)} TO app_writer")
    enable_tracking(kit.maint, f"public.{q(first)}", kind_prefix="t69.names")
    prefix = kit.db.execute("SELECT kind_prefix FROM audit.tracked_tables").fetchone()[0]
    current, col = first, "c" + first
    for n, name in enumerate(rest):
        kit.writer.execute(f"INSERT INTO public.{q(current)} VALUES ({n}, 'v')")
        kit.owner.execute(f"ALTER TABLE public.{q(current)} RENAME TO {q(name)}")
        kit.owner.execute(f"ALTER TABLE public.{q(name)} RENAME COLUMN {q(col)} TO {q('c' + name)}")
        current, col = name, "c" + name
    kit.writer.execute(f"UPDATE public.{q(current)} SET {q(col)} = 'w'")
    seal_all(kit.maint)
    inserts = n_events(kit.db, prefix + ".insert")
    updates = n_events(kit.db, prefix + ".update")
    real_col = kit.db.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum = 2",
                              [f"public.{q(current)}"]).fetchone()[0]  # noqa
    keys = kit.db.execute("SELECT row_after FROM audit.events WHERE kind = %s ORDER BY seq DESC LIMIT 1",
                          [prefix + ".update"]).fetchone()[0]
    assert (inserts, updates) == (len(rest), len(rest)) and kit.runs() == []
    assert real_col in keys, (real_col, keys)


def test_a7_defaults_and_generated_columns_added_by_ddl_the_event_triggers_follow(kit):
    """Attack: on its tracked table the owner adds a column whose volatile DEFAULT calls the spy
    (a rewrite), one whose stored generated expression does, and a domain column whose CHECK does;
    the event triggers regenerate the capture function as the owner role meanwhile. Safe: the code
    ran as the owner or the writer only (or the DDL was refused), and the writer's next write is
    captured."""
    acct(kit)
    kit.owner.execute("CREATE DOMAIN public.t69_d2 AS text CHECK (public.t69_spy('added domain check'))")
    for ddl in ("ALTER TABLE public.t69_acct ADD COLUMN d1 text DEFAULT (public.t69_spy('volatile default'))::text",
                "ALTER TABLE public.t69_acct ADD COLUMN g1 int GENERATED ALWAYS AS (public.t69_ispy('generated', v)) STORED",
                "ALTER TABLE public.t69_acct ADD COLUMN d2 public.t69_d2 DEFAULT 'x'",
                "ALTER TABLE public.t69_acct ALTER COLUMN note SET DEFAULT (public.t69_spy('set default'))::text"):
        with suppress(psycopg.Error):
            kit.owner.execute(ddl)
    kit.writer.execute("INSERT INTO public.t69_acct (id, v) VALUES (9, 9)")
    seal_all(kit.maint)
    assert kit.privileged_runs() == [] and kit.forged_in_log() == 0, kit.privileged_runs()
    assert n_events(kit.db, "public.t69_acct.insert") == 1


def test_a8_views_rules_and_instead_of_triggers_over_a_tracked_table_run_as_the_writer(kit):
    """Attack: the owner puts an ALSO rule on its tracked table that calls the spy, a view over it
    with an INSTEAD OF trigger, and a row-level security policy whose USING calls the spy; the
    writer writes through all three; the maintainer tracks again with a baseline (refused for RLS)
    and seals. Safe: the code ran as the writer or the owner, never as a package role; every
    change that reached the table is captured."""
    acct(kit)
    kit.owner.execute("""
        CREATE TABLE public.t69_side (x int); GRANT ALL ON public.t69_side TO app_writer;
        CREATE RULE t69_r AS ON UPDATE TO public.t69_acct DO ALSO INSERT INTO public.t69_side SELECT 1 WHERE public.t69_spy('rule');
        CREATE VIEW public.t69_v AS SELECT * FROM public.t69_acct;
        CREATE FUNCTION public.t69_vi() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM public.t69_spy('instead of'); INSERT INTO public.t69_acct (id, v) VALUES (NEW.id, NEW.v); RETURN NEW; END $$;
        CREATE TRIGGER t69_vi INSTEAD OF INSERT ON public.t69_v FOR EACH ROW EXECUTE FUNCTION public.t69_vi();
        GRANT ALL ON public.t69_v TO app_writer;
        ALTER TABLE public.t69_acct ENABLE ROW LEVEL SECURITY;
        CREATE POLICY t69_p ON public.t69_acct USING (public.t69_spy('policy')) WITH CHECK (public.t69_spy('policy check'))""")
    kit.writer.execute("UPDATE public.t69_acct SET v = 3 WHERE id = 1")
    kit.writer.execute("INSERT INTO public.t69_v (id, v) VALUES (4, 4)")
    with suppress(psycopg.Error, PgAuditError):
        enable_tracking(kit.maint, "public.t69_acct", baseline=True)
    seal_all(kit.maint)
    row_history(kit.reader, "public.t69_acct", "4")
    assert kit.privileged_runs() == [] and kit.forged_in_log() == 0, kit.privileged_runs()
    assert n_events(kit.db, "public.t69_acct.update") == 1 and n_events(kit.db, "public.t69_acct.insert") == 1


# ================================ class B: capture switched off =================================


def parted(kit) -> None:
    kit.owner.execute("""
        CREATE TABLE public.t69_part (id int, region text, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
        CREATE TABLE public.t69_part_eu PARTITION OF public.t69_part FOR VALUES IN ('eu');
        CREATE TABLE public.t69_part_us PARTITION OF public.t69_part FOR VALUES IN ('us');
        GRANT ALL ON public.t69_part, public.t69_part_eu, public.t69_part_us TO app_writer;
        INSERT INTO public.t69_part VALUES (1, 'eu', 0), (2, 'us', 0)""")
    enable_tracking(kit.maint, "public.t69_part")


TRIGGER_DDL = [
    "ALTER TABLE public.t69_part_eu DISABLE TRIGGER ALL",
    "ALTER TABLE public.t69_part_eu DISABLE TRIGGER USER",
    "ALTER TABLE ONLY public.t69_part DISABLE TRIGGER ALL",
    "ALTER TABLE public.t69_part_eu ENABLE REPLICA TRIGGER ALL",
    "ALTER TABLE public.t69_part_eu ENABLE ALWAYS TRIGGER ALL",
    "DO $$ BEGIN EXECUTE 'ALTER TABLE public.t69_part_eu DISABLE TRIGGER ALL'; EXCEPTION WHEN OTHERS THEN NULL; END $$",
    "ALTER TABLE public.t69_part DETACH PARTITION public.t69_part_eu; "
    "ALTER TABLE public.t69_part_eu DISABLE TRIGGER ALL; "
    "ALTER TABLE public.t69_part ATTACH PARTITION public.t69_part_eu FOR VALUES IN ('eu')",
]


@pytest.mark.parametrize("ddl", TRIGGER_DDL, ids=range(len(TRIGGER_DDL)))
def test_b1_trigger_ddl_on_a_partition_or_the_parent_only_leaves_no_write_unaudited(kit, ddl):
    """Attack: the owner (no audit role) disables, in each spelling, the capture triggers of one
    partition of its tracked table, or of the parent ONLY, or detaches, disables and re-attaches
    in one transaction; then the writer updates a row of that partition. Safe: the DDL is refused,
    or the update has its event, or (the partition left the table) the write is not the table's."""
    parted(kit)
    try:
        with kit.owner.transaction():
            kit.owner.execute(ddl)
    except psycopg.Error:
        pass
    kit.writer.execute("UPDATE public.t69_part SET v = 77 WHERE id = 1")
    seal_all(kit.maint)
    inside = kit.db.execute("SELECT count(*) FROM public.t69_part WHERE v = 77").fetchone()[0]
    events = n_events(kit.db, "public.t69_part.update")
    assert inside == 0 or events == 1 or problems_of(kit.db), (ddl, inside, events)


def test_b2_set_schema_then_a_table_of_the_same_name_keeps_every_write_of_the_tracked_one(kit):
    """Attack: the owner moves its tracked table to a schema of its own (SET SCHEMA), makes an
    untracked table of the same name in public, and the writer goes on writing both. Safe: every
    write of the moved table (the tracked one) has its event; status and tracked_tables still name
    it; the impostor's writes are not filed as the tracked table's."""
    acct(kit)
    kit.owner.execute("""CREATE SCHEMA t69_s; GRANT USAGE ON SCHEMA t69_s TO app_writer, app_reader;
                         ALTER TABLE public.t69_acct SET SCHEMA t69_s;
                         CREATE TABLE public.t69_acct (id int PRIMARY KEY, v int, note text);
                         GRANT ALL ON public.t69_acct TO app_writer""")
    kit.writer.execute("UPDATE t69_s.t69_acct SET v = 41 WHERE id = 1")
    kit.writer.execute("INSERT INTO public.t69_acct VALUES (1, 99, 'impostor')")
    kit.writer.execute("DELETE FROM t69_s.t69_acct WHERE id = 2")
    seal_all(kit.maint)
    rows = kit.db.execute("SELECT kind, coalesce(row_after->>'v', row_before->>'v') FROM audit.events"
                          " WHERE kind LIKE 'public.t69_acct.%' ORDER BY seq").fetchall()
    assert ("public.t69_acct.update", "41") in rows and ("public.t69_acct.delete", "0") in rows, rows
    assert ("public.t69_acct.insert", "99") not in rows, rows
    tracked = kit.db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 't69_s.t69_acct'::regclass").fetchone()[0]
    assert tracked == 1
    history = [e.kind for e in row_history(kit.reader, "t69_s.t69_acct", "1")]
    assert "public.t69_acct.update" in history and all(e != "public.t69_acct.insert" for e in history), history
    try:
        impostor = [e.kind for e in row_history(kit.reader, "public.t69_acct", "1")]
    except (psycopg.Error, PgAuditError):
        impostor = []
    assert impostor == [], f"the untracked impostor's key 1 answered with the tracked table's history: {impostor}"


def test_b3_truncate_cascade_from_an_untracked_table_records_the_tracked_ones(kit):
    """Attack: the tracked table references an untracked one (its owner's), and the owner (or a
    writer with TRUNCATE on both) runs TRUNCATE ... CASCADE on the untracked table, then ONLY
    with CASCADE and RESTART IDENTITY on another pair: the tracked rows go with it. Safe: each
    tracked table emptied has its truncate event."""
    kit.owner.execute("""
        CREATE TABLE public.t69_ref (id int PRIMARY KEY);
        INSERT INTO public.t69_ref VALUES (1), (2);
        CREATE TABLE public.t69_child (id int PRIMARY KEY, ref int REFERENCES public.t69_ref, v int);
        INSERT INTO public.t69_child VALUES (1, 1, 0), (2, 2, 0);
        CREATE TABLE public.t69_ref2 (id int PRIMARY KEY);
        INSERT INTO public.t69_ref2 VALUES (1);
        CREATE TABLE public.t69_child2 (id serial PRIMARY KEY, ref int REFERENCES public.t69_ref2);
        INSERT INTO public.t69_child2 (ref) VALUES (1);
        GRANT ALL ON public.t69_ref, public.t69_ref2, public.t69_child, public.t69_child2 TO app_writer""")
    enable_tracking(kit.maint, "public.t69_child")
    enable_tracking(kit.maint, "public.t69_child2")
    kit.owner.execute("TRUNCATE public.t69_ref CASCADE")
    kit.owner.execute("TRUNCATE ONLY public.t69_ref2 RESTART IDENTITY CASCADE")
    seal_all(kit.maint)
    left = kit.db.execute("SELECT (SELECT count(*) FROM public.t69_child) + (SELECT count(*) FROM public.t69_child2)").fetchone()[0]
    assert left == 0
    assert n_events(kit.db, "public.t69_child.truncate") == 1 and n_events(kit.db, "public.t69_child2.truncate") == 1


def test_b4_copy_freeze_after_truncate_in_one_transaction_is_captured(kit):
    """Attack: the owner truncates its tracked table and loads it with COPY ... (FREEZE) in the
    same transaction (PostgreSQL writes the rows frozen, bypassing the usual path where it can),
    then a writer COPYs more in binary format. Safe: one insert event per row, and the truncate."""
    acct(kit)
    with kit.owner.transaction():
        kit.owner.execute("TRUNCATE public.t69_acct")
        with kit.owner.cursor().copy("COPY public.t69_acct (id, v, note) FROM STDIN WITH (FREEZE)") as cp:
            for i in range(10, 15):
                cp.write_row((i, i, "frozen"))
    with kit.writer.cursor().copy("COPY public.t69_acct (id, v) FROM STDIN WITH (FORMAT binary)") as cp:
        cp.set_types(["int4", "int4"])
        cp.write_row((20, 20))
    seal_all(kit.maint)
    assert n_events(kit.db, "public.t69_acct.truncate") == 1
    assert n_events(kit.db, "public.t69_acct.insert") == 6


MERGE_RULE_DDL = [
    "ALTER TABLE public.t69_part DISABLE RULE audit_no_merge",
    "ALTER RULE audit_no_merge ON public.t69_part RENAME TO t69_gone",
    "DROP RULE audit_no_merge ON public.t69_part",
    "CREATE OR REPLACE RULE audit_no_merge AS ON DELETE TO public.t69_part WHERE false DO INSTEAD NOTHING",
]


@pytest.mark.parametrize("ddl", MERGE_RULE_DDL, ids=range(len(MERGE_RULE_DDL)))
def test_b5_merge_moving_a_row_between_partitions_is_refused_or_captured(kit, ddl):
    """Attack: the owner tampers with the rule that keeps MERGE off the partitioned table (disable,
    rename, drop, replace), then the writer's MERGE moves a row to another partition (PostgreSQL
    15.18 passes such a move to no transition table). Safe: the MERGE is refused, or the move has
    its event(s)."""
    parted(kit)
    with suppress(psycopg.Error):
        kit.owner.execute(ddl)
    moved = False
    try:
        kit.writer.execute("""MERGE INTO public.t69_part t USING (VALUES (1, 'eu')) s(id, region)
                              ON t.id = s.id AND t.region = s.region
                              WHEN MATCHED THEN UPDATE SET region = 'us', v = 55""")
        moved = True
    except psycopg.Error:
        pass
    seal_all(kit.maint)
    now_us = kit.db.execute("SELECT count(*) FROM public.t69_part WHERE id = 1 AND region = 'us'").fetchone()[0]
    events = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind LIKE 'public.t69_part.%%'"
                            " AND (row_after->>'region' = 'us' AND row_after->>'id' = '1')").fetchone()[0]
    assert not moved or now_us == 0 or events >= 1, (ddl, moved, now_us, events)


def test_b6_upserts_and_writable_ctes_that_move_rows_between_partitions_are_captured(kit):
    """Attack: the writer changes a partitioned tracked table with INSERT ... ON CONFLICT DO UPDATE
    (an update and an insert in one statement; PostgreSQL refuses a move there), a writable CTE that deletes and re-inserts one key
    and updates another in one statement, and an UPDATE ... FROM that moves rows. Safe: every
    row changed has its event, with its final values."""
    parted(kit)
    kit.writer.execute("INSERT INTO public.t69_part VALUES (1, 'eu', 5), (3, 'us', 1) ON CONFLICT (id, region)"
                       " DO UPDATE SET v = excluded.v + 1")
    kit.writer.execute("""WITH d AS (DELETE FROM public.t69_part WHERE id = 2 RETURNING *),
                               u AS (UPDATE public.t69_part SET v = 8 WHERE id = 1 RETURNING *)
                          INSERT INTO public.t69_part SELECT id, 'eu', 9 FROM d""")
    kit.writer.execute("UPDATE public.t69_part p SET region = 'us', v = 10 FROM (VALUES (2)) x(i) WHERE p.id = x.i")
    seal_all(kit.maint)
    final = dict(kit.db.execute("SELECT id, region || ':' || v FROM public.t69_part").fetchall())
    last = {}
    for after, before in kit.db.execute("SELECT row_after, row_before FROM audit.events"
                                        " WHERE kind LIKE 'public.t69_part.%%' ORDER BY seq"):
        if before is not None and after is None:
            last.pop(int(before["id"]), None)
        if after is not None:
            last[int(after["id"])] = f"{after['region']}:{after['v']}"
    assert last == final, (last, final)


def test_b7_replica_identity_owner_change_and_rename_leave_capture_on(kit):
    """Attack: the owner sets REPLICA IDENTITY NOTHING, hands the table to t69_mallory, which
    renames it and its key column and then the capture triggers (ALTER TRIGGER ... RENAME); the
    writer writes after each step. Safe: every write captured (or the step refused)."""
    acct(kit)
    steps = ["ALTER TABLE public.t69_acct REPLICA IDENTITY NOTHING",
             "ALTER TABLE public.t69_acct OWNER TO t69_mallory"]
    mallory_steps = ["ALTER TABLE public.t69_acct RENAME TO t69_acct2",
                     "ALTER TABLE public.t69_acct2 RENAME COLUMN id TO ident"]
    writes = 0
    for s in steps:
        with suppress(psycopg.Error):
            kit.owner.execute(s)
        kit.writer.execute(f"UPDATE public.t69_acct SET v = {100 + writes} WHERE id = 1")
        writes += 1
    kit.db.execute("GRANT ALL ON public.t69_acct TO app_writer")
    for s in mallory_steps:
        with suppress(psycopg.Error):
            kit.mallory.execute(s)
    table = kit.db.execute("SELECT relid::regclass::text FROM audit.tracked_tables").fetchone()[0]
    key = kit.db.execute("SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum = 1", [table]).fetchone()[0]
    for (tg,) in kit.db.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [table]).fetchall():
        with suppress(psycopg.Error):
            kit.mallory.execute(f'ALTER TRIGGER "{tg}" ON {table} RENAME TO "t69_{tg}"')
    kit.writer.execute(f"UPDATE {table} SET v = 500 WHERE {key} = 1")
    writes += 1
    seal_all(kit.maint)
    assert n_events(kit.db, "public.t69_acct.update") == writes


# ==================================== class C: forged history ====================================


TENANT_SPELLINGS = ["ACME", "acme ", " acme", "acme\u200b", "a\u0063me\u0301", "ａｃｍｅ", None, ""]


def test_c1_an_idempotency_key_of_one_tenant_returns_nothing_of_it_to_another_spelling(kit):
    """Attack: the writer records a secret-bearing event under tenant acme with key K; then, as
    other tenants spelled like acme (upper case, spaces, a zero-width space, an accent, full-width
    letters, no tenant, the empty tenant), records with the same key. Safe: each gets an event of
    its own tenant and payload (or a refusal), never acme's event or payload."""
    first = record(kit.writer, "t69.key", tenant_id="acme", payload={"secret": "acme-only"}, idempotency_key="K-69")
    for tenant in TENANT_SPELLINGS:
        try:
            got = record(kit.writer, "t69.key", tenant_id=tenant, payload={"mine": repr(tenant)}, idempotency_key="K-69")
        except (psycopg.Error, PgAuditError):
            continue
        assert got.id != first.id and (got.payload or {}).get("secret") is None, (tenant, got)
        assert got.tenant_id == tenant or (tenant == "" and got.tenant_id in ("", None)), (tenant, got.tenant_id)
    stored = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 't69.key' AND payload ? 'secret'").fetchone()[0]
    assert stored == 1


RESERVED_SPELLINGS = ["audit.pruned", "Audit.pruned", "audit/pruned", "audit-.pruned", "audit..pruned",
                      "audit_.pruned", "AUDIT.archive_deleted", "secret.read", "Secret.read", "tenant.secret.x",
                      "tenant.data_key.rotated", "Tenant.Data_key.rotated"]


def test_c2_a_recorded_prune_announcement_in_any_spelling_does_not_excuse_removed_events(kit):
    """Attack: blocks 1 and 2 are sealed; the writer records, in every spelling record() takes,
    an audit.pruned look-alike naming block 1's hash (and an archive_deleted one naming its last
    seq). Then a real tamper: a superuser removes block 1's events behind the guards and writes a
    prune point for it, as prune would. Safe: both verifiers report the removal (no recorded event,
    whatever its kind, vouches for a prune)."""
    for i in range(3):
        record(kit.writer, "t69.before", payload={"i": i})
    seal(kit.maint)
    record(kit.writer, "t69.more")
    seal(kit.maint)
    block_hash, last_seq = kit.db.execute("SELECT block_hash, last_seq FROM audit.blocks WHERE block_no = 1").fetchone()
    accepted = []
    for kind in RESERVED_SPELLINGS:
        try:
            e = record(kit.writer, kind, payload={"last_block": 1, "last_block_hash": block_hash.hex(), "last_seq": last_seq,
                                                  "blocks": [1, 1]})
            accepted.append((kind, e.kind))
        except (psycopg.Error, PgAuditError):
            pass
    seal_all(kit.maint)
    assert all(origin == "record" for (origin,) in kit.db.execute(
        "SELECT origin FROM audit.events WHERE payload ? 'last_block_hash'").fetchall())
    kit.db.execute("SET session_replication_role = replica")
    try:
        kit.db.execute("DELETE FROM audit.event_log WHERE seq <= %s", [last_seq])
        kit.db.execute("INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
                       " VALUES (1, %s, %s, now(), 'audit_pruner')", [block_hash, last_seq])
    finally:
        kit.db.execute("RESET session_replication_role")
    assert both_verifiers(kit.db) == (False, False), accepted


def test_c3_captured_looking_kinds_recorded_after_tracking_stops_do_not_enter_a_rows_history(kit):
    """Attack: the table is tracked, changed, un-tracked; the writer then records events of the
    table's captured kinds with the row's key and a forged image (record() may refuse the kinds: a
    prefix stays with its table), then tracking starts again. Safe: row_history and row_as_of of
    the row give only captured changes: the forged image never answers."""
    acct(kit)
    kit.writer.execute("UPDATE public.t69_acct SET v = 1 WHERE id = 1")
    disable_tracking(kit.maint, "public.t69_acct")
    for kind in ("public.t69_acct.update", "public.t69_acct.insert", "public.t69_acct.baseline", "Public.t69_acct.update"):
        with suppress(psycopg.Error, PgAuditError):
            record(kit.writer, kind, target_type="public.t69_acct", target_id="1",
                   payload={"row_after": {"id": 1, "v": 666}, "changed": {"v": [1, 666]}})
    enable_tracking(kit.maint, "public.t69_acct")
    seal_all(kit.maint)
    history = row_history(kit.reader, "public.t69_acct", "1")
    as_of = row_as_of(kit.reader, "public.t69_acct", "1", datetime.now(timezone.utc) + timedelta(seconds=5))
    assert all(e.origin == "capture" for e in history if hasattr(e, "origin")), history
    assert "666" not in json.dumps(as_of) and all("666" not in json.dumps(e.payload) for e in history), (as_of, history)


def test_c4_a_captured_event_carries_the_rows_tenant_never_the_sessions(kit):
    """Attack: a table tracked with tenant_column; the writer's session claims tenant globex and
    writes acme's row, a row of no tenant, moves a row from acme to initech, and truncates the
    table (which names no row). Safe: no captured event of this table is filed under globex."""
    kit.owner.execute("""CREATE TABLE public.t69_ten (id int PRIMARY KEY, tenant text, v int);
                         GRANT ALL ON public.t69_ten TO app_writer;
                         INSERT INTO public.t69_ten VALUES (1, 'acme', 0), (2, NULL, 0)""")
    enable_tracking(kit.maint, "public.t69_ten", tenant_column="tenant", baseline=True)
    with kit.writer.transaction():
        kit.writer.execute("SELECT set_config('pgaudit_py.tenant_id', 'globex', true)")
        kit.writer.execute("UPDATE public.t69_ten SET v = 1 WHERE id = 1")
        kit.writer.execute("UPDATE public.t69_ten SET v = 2 WHERE id = 2")
        kit.writer.execute("INSERT INTO public.t69_ten VALUES (3, NULL, 3)")
        kit.writer.execute("UPDATE public.t69_ten SET tenant = 'initech' WHERE id = 1")
        kit.writer.execute("TRUNCATE public.t69_ten")
    seal_all(kit.maint)
    filed = kit.db.execute("SELECT kind FROM audit.events WHERE tenant_id = 'globex'").fetchall()
    assert filed == [], filed


def test_c5_another_writer_cannot_withdraw_or_rewrite_a_pending_event(kit):
    """Attack: a second writer login (t69_owner, made a writer for the test) and the maintainer
    try, before sealing, to change or remove app_writer's pending event: DML on the intake and its
    partitions, the view, a retry with the same key and other content, prune and purge functions.
    Safe: the event is sealed as recorded."""
    ev = record(kit.writer, "t69.pending", tenant_id="acme", payload={"amount": 10}, idempotency_key="p-1")
    kit.db.execute("GRANT audit_writer TO t69_owner")
    try:
        part = kit.db.execute("SELECT tableoid::regclass::text FROM audit.event_intake WHERE id = %s", [ev.id]).fetchone()[0]
        for conn in (kit.owner, kit.maint):
            for stmt in (f"UPDATE {part} SET payload = '{{\"amount\": 0}}' WHERE kind = 't69.pending'",
                         f"DELETE FROM {part} WHERE kind = 't69.pending'",
                         "UPDATE audit.event_intake SET kind = 't69.gone' WHERE kind = 't69.pending'",
                         "DELETE FROM audit.events WHERE kind = 't69.pending'",
                         "SELECT audit.purge_rate_counters()",
                         "SELECT audit.prune_events(now() + interval '1 day')"):
                assert sqlstate_of(conn, stmt) is not None or "prune" in stmt or "purge" in stmt, (conn.info.user, stmt)
            with suppress(psycopg.Error, PgAuditError):
                record(conn, "t69.pending", tenant_id="acme", payload={"amount": 0}, idempotency_key="p-1")
    finally:
        kit.db.execute("REVOKE audit_writer FROM t69_owner")
    seal_all(kit.maint)
    rows = kit.db.execute("SELECT payload, db_role FROM audit.events WHERE kind = 't69.pending'").fetchall()
    assert (ev.payload, "app_writer") in [(r[0], r[1]) for r in rows] or rows == [({"amount": 10}, "app_writer")], rows
    assert all(r[0] != {"amount": 0} or r[1] == "t69_owner" for r in rows), rows


# ============================== class D: locale and session settings =============================


ODD = ("-c DateStyle=SQL,DMY -c IntervalStyle=sql_standard -c TimeZone=Pacific/Chatham -c extra_float_digits=-15"
       " -c bytea_output=escape -c standard_conforming_strings=off -c intervalstyle=sql_standard")
ODD2 = ("-c DateStyle=German,YMD -c IntervalStyle=iso_8601 -c TimeZone=XYZ+13:45 -c extra_float_digits=3"
        " -c bytea_output=escape -c standard_conforming_strings=off -c quote_all_identifiers=on")

VALUES = (1349.01, "1349.010", b"\\x00'\x01\xff", datetime(2026, 12, 5, 0, 0, 0, 123456, tzinfo=timezone.utc),
          timedelta(days=-1, hours=25, microseconds=7), "a\\b'c\u2028")


@pytest.mark.parametrize("path", ["inline", "sandbox"])
def test_d1_row_images_and_sealed_lines_do_not_depend_on_any_sessions_settings(kit, path):
    """Attack: one writer with default settings and one with odd ones (DateStyle SQL/DMY or German,
    IntervalStyle sql_standard or iso_8601, TimeZone Pacific/Chatham or a made-up zone,
    extra_float_digits -15, bytea_output escape, standard_conforming_strings off,
    quote_all_identifiers on) write the same values into a tracked table (all built-in types, or
    with an enum column: the sandbox's path); the maintainer seals under odd settings; the reader
    verifies under others. Safe: the images are alike, both verifiers say ok."""
    extra = ", mood public.t69_mood" if path == "sandbox" else ""
    kit.owner.execute("CREATE TYPE public.t69_mood AS ENUM ('ok', 'sad')")
    kit.owner.execute(f"""CREATE TABLE public.t69_vals (id int PRIMARY KEY, f float8, n numeric, b bytea,
                          t timestamptz, i interval, s text{extra}); GRANT ALL ON public.t69_vals TO app_writer""")
    enable_tracking(kit.maint, "public.t69_vals")
    cols = "id, f, n, b, t, i, s" + (", mood" if extra else "")
    marks = ", ".join(["%s"] * (7 + bool(extra)))
    odd_writer = kit.conn("app_writer", options=ODD)
    for wid, conn in ((1, kit.writer), (2, odd_writer), (3, kit.conn("app_writer", options=ODD2))):
        conn.execute(f"INSERT INTO public.t69_vals ({cols}) VALUES ({marks})", (wid, *VALUES, *(["ok"] if extra else [])))
        conn.execute("UPDATE public.t69_vals SET f = f + 0.01 WHERE id = %s", [wid])
    sealed = kit.conn("app_maintainer", options=ODD2).execute("SELECT sealed FROM audit.seal()").fetchone()[0]
    assert sealed >= 6, sealed
    images = [r[0] for r in kit.db.execute("SELECT row_after - 'id' FROM audit.events WHERE kind LIKE 'public.t69_vals.%%'"
                                           " ORDER BY row_after->>'id', seq")]
    assert len(images) == 6 and images[0] == images[2] == images[4] and images[1] == images[3] == images[5], images
    odd_reader = kit.conn("app_reader", options=ODD)
    assert odd_reader.execute("SELECT ok FROM audit.verify()").fetchone()[0] is True
    assert verify_chain(odd_reader).ok and both_verifiers(kit.db) == (True, True)


def test_d2_refusals_are_known_by_their_sqlstate_under_german_messages_and_odd_settings(kit):
    """Attack: under the cluster's German messages and the odd settings, each role tries what it
    may not (a reserved kind, DML on the intake and log, a trigger disabled on its tracked table,
    tracking a table it does not own, a partition, a view), in a function that swallows errors by
    message text too. Safe: each is refused with the package's or PostgreSQL's SQLSTATE, and no
    event or change slipped through."""
    acct(kit)
    kit.mallory.execute("CREATE TABLE public.t69_m (id int PRIMARY KEY); CREATE VIEW public.t69_mv AS SELECT 1 AS id")
    writer = kit.conn("app_writer", options=ODD)
    maint = kit.conn("app_maintainer", options=ODD2)
    owner = kit.conn("t69_owner", options=ODD)
    got = {
        "reserved kind": sqlstate_of(writer, "SELECT audit.record(kind => 'audit.pruned')"),
        "intake insert": sqlstate_of(writer, "INSERT INTO audit.event_intake (kind) VALUES ('x')"),
        "log delete": sqlstate_of(maint, "DELETE FROM audit.event_log"),
        "disable trigger": sqlstate_of(owner, "ALTER TABLE public.t69_acct DISABLE TRIGGER ALL"),
        "not owned": sqlstate_of(maint, "SELECT audit.enable_tracking('public.t69_m')"),
        "a view": sqlstate_of(maint, "SELECT audit.enable_tracking('public.t69_mv')"),
        "drop capture fn": sqlstate_of(owner, "DROP TRIGGER audit_capture_insert ON public.t69_acct"),
    }
    assert got["reserved kind"] == "PA001" and got["disable trigger"] == "PA008", got
    assert got["intake insert"] == "42501" and got["log delete"] is not None and got["not owned"] == "42501", got
    assert got["a view"] == "PA008" and got["drop capture fn"] is not None, got
    owner.execute("UPDATE public.t69_acct SET v = 3 WHERE id = 1")
    seal_all(kit.maint)
    assert n_events(kit.db, "public.t69_acct.update") == 1 and n_events(kit.db, "audit.pruned") == 0


@pytest.mark.parametrize("encoding", ["LATIN1", "SQL_ASCII", "WIN1252", "EUC_JP"])
def test_d3_a_writers_client_encoding_stores_what_it_meant_or_is_refused(kit, encoding):
    """Attack: the writer's session uses another client_encoding and records, and writes a tracked
    row, with text that encoding can or cannot hold (é; €; 日本). Safe: each value is stored as the
    characters meant, or the call is refused; nothing misread ("Ã©") is stored, and both verifiers
    say ok."""
    acct(kit)
    writer = kit.conn("app_writer")
    writer.execute(f"SET client_encoding = '{encoding}'")
    stored_ok = True
    for text in ("é", "€", "日本"):
        try:
            record(writer, "t69.enc", payload={"t": text}, actor_id=text)
            writer.execute("UPDATE public.t69_acct SET note = %s WHERE id = 1", [text])
        except (psycopg.Error, PgAuditError, UnicodeError, LookupError):
            with suppress(Exception):
                writer.execute("ROLLBACK")
            continue
    seal_all(kit.maint)
    payloads = [r[0] for r in kit.db.execute("SELECT payload->>'t' FROM audit.events WHERE kind = 't69.enc'")]
    actors = [r[0] for r in kit.db.execute("SELECT actor_id FROM audit.events WHERE kind = 't69.enc'")]
    notes = [r[0] for r in kit.db.execute("SELECT row_after->>'note' FROM audit.events WHERE kind = 'public.t69_acct.update'")]
    stored_ok = all(v in ("é", "€", "日本") for v in payloads + actors + notes)
    assert stored_ok, (payloads, actors, notes)
    assert both_verifiers(kit.db) == (True, True)


def test_d4_enable_tracking_under_standard_conforming_strings_off_with_backslash_names(kit):
    """Attack: columns named with backslashes, quotes and a trailing backslash; the maintainer
    tracks with them excluded and redacted under standard_conforming_strings = off and
    escape_string_warning on; the writer writes with the same settings. Safe: the excluded column
    never reaches the log, the redacted one is [redacted], and no code ran."""
    kit.owner.execute(r'''CREATE TABLE public.t69_bs (id int PRIMARY KEY, "ex\" text, "re\'d\\" text, "pl\n" text);
                          GRANT ALL ON public.t69_bs TO app_writer''')
    maint = kit.conn("app_maintainer", options="-c standard_conforming_strings=off -c escape_string_warning=on")
    enable_tracking(maint, "public.t69_bs", exclude_columns=["ex\\"], redact_columns=["re\\'d\\\\"])
    writer = kit.conn("app_writer", options="-c standard_conforming_strings=off")
    writer.execute(r'''INSERT INTO public.t69_bs VALUES (1, 'SECRET-EX', 'SECRET-RE', 'plain')''')
    seal_all(kit.maint)
    image = kit.db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.t69_bs.insert'").fetchone()[0]
    assert "SECRET" not in json.dumps(image) and image.get("re\\'d\\\\") == "[redacted]", image
    assert kit.runs() == []


def test_d5_pgaudit_verify_under_a_readers_odd_environment_says_ok_then_catches_a_tamper(kit):
    """Attack: `pgaudit verify` run by the reader with PGOPTIONS holding odd output settings and
    PGCLIENTENCODING=LATIN1, over events whose text LATIN1 cannot hold; then a real tamper. Safe:
    exit 0 first (no false alarm, no crash), non-zero after."""
    record(kit.writer, "t69.cli", tenant_id="テナント", actor_id="€", payload={"x": "日本", "f": 0.1})
    seal(kit.maint)
    env = {"PGOPTIONS": ODD.replace("-c standard_conforming_strings=off", ""), "PGCLIENTENCODING": "LATIN1"}
    before = cli_verify(kit.db, env)
    tamper(kit.db, "kind = 't69.cli'")
    after = cli_verify(kit.db, env)
    assert before[0] == 0, before
    assert after[0] != 0, after


# ============================== class E: verifiers and hostile values ============================


def deep(n: int, obj: bool = False) -> str:
    return ('{"a": ' * n + "1" + "}" * n) if obj else ("[" * n + "1" + "]" * n)


RAW_PAYLOADS = {
    "deep array 5000": '{"v": ' + deep(5000) + "}",
    "deep object 5000": deep(5000, obj=True),
    "many numbers": '{"v": [' + ", ".join(str(i / 7) for i in range(3000)) + "]}",
    "edge numbers": '{"neg0": -0, "neg0f": -0.0, "tiny": 1e-300, "scale": 1.50, "exp": 1e3, "big": 1e300}',
    "separators": '{"ls": "a\u2028b", "ps": "c\u2029d", "nonchar": "\ufffe\uffff", "comb": "e\u0301\u0301"}',
    "utf16 order": '{"\uff61": 1, "\U0001F600": 2, "\ue000": 3, "z": 4, "\u00e9": 5, "e\u0301": 6}',
    "duplicate keys": '{"k": 1, "k": 2, "K": 3, "k ": 4}',
    "escapes": '{"q": "\\"\\\\\\/\\b\\f\\n\\r\\t\\u0001\\u001f\\u007f", "emoji": "\\ud83d\\ude00"}',
}
REFUSED_RAW = {
    "nul": '{"n": "\\u0000"}',
    "lone high": '{"s": "\\ud800"}',
    "lone low": '{"s": "\\udc00x"}',
    "huge": '{"n": 1e400}',
    "tiny": '{"n": 1e-400}',
}


def test_e1_hostile_record_payloads_verify_in_both_and_a_tamper_is_caught_by_both(kit):
    """Attack: the writer records payloads nested 5,000 deep, thousands of numbers, -0, 1.50 and
    1e3, U+2028/U+2029, noncharacters, combining marks, keys that sort apart in UTF-8 and UTF-16,
    duplicate keys, every escape, with emoji tenant and actor; and \\u0000, lone surrogates, 1e400,
    1e-400 (refused or stored consistently). Sealed, then SQL verify, Python verify_chain and
    `pgaudit verify`. Safe: all ok; no event quarantined; then a tamper that jsonb calls equal
    (1.50 -> 1.5) is caught by both."""
    for name, raw in {**RAW_PAYLOADS, **REFUSED_RAW}.items():
        try:
            kit.writer.execute("SELECT audit.record(kind => 't69.hostile', tenant_id => %s, actor_id => %s,"
                               " target_id => %s, payload => %s::jsonb)", ["\U0001F3F4\u200d☠️", "👩‍💻" + name, name, raw])
        except psycopg.Error:
            assert name in REFUSED_RAW, name
    failure = seal_all(kit.maint)
    assert failure is None, failure
    assert kit.db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0] == 0
    stored = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 't69.hostile'").fetchone()[0]
    assert stored >= len(RAW_PAYLOADS)
    assert both_verifiers(kit.db) == (True, True)
    assert cli_verify(kit.db)[0] == 0
    tamper(kit.db, "target_id = 'edge numbers'", "payload = jsonb_set(payload, '{scale}', '1.5')")
    assert kit.db.execute("SELECT payload->'scale' = '1.50'::jsonb FROM audit.events WHERE target_id = 'edge numbers'").fetchone()[0]
    assert both_verifiers(kit.db) == (False, False)
    assert cli_verify(kit.db)[0] != 0


def hostile_rows(kit) -> list[str]:
    big = os.urandom(1_600_000).hex()  # 3.2 MB of text that does not compress
    rows = {
        "json 1e400": ("j", '{"n": 1e400}'),
        "json 1e-400": ("j", '[1e-400, -0, -0.0]'),
        "json dup": ("j", '{"k": 1, "k": 2}'),
        "json nul": ("j", '{"n": "\\u0000"}'),
        "json lone": ("j", '{"s": "\\ud800"}'),
        "json deep": ("j", deep(6000)),
        "jsonb deep": ("jb", deep(6000, obj=True)),
        "jsonb many": ("jb", "[" + ", ".join(str(i) + ".5" for i in range(150_000)) + "]"),
        "text 1e400": ("t", "1e400"),
        "text big": ("t", big),
        "text seps": ("t", "\u2028\u2029\ufffe\U0001F600e\u0301"),
        "float -0": ("f", "-0"),
        "float nan": ("f", "NaN"),
        "float inf": ("f", "-Infinity"),
        "num wild": ("n", "1e130000"),
        "num decimals": ("n", "1." + "0" * 16000 + "1"),
    }
    kept = []
    for i, (name, (col, value)) in enumerate(rows.items()):
        try:
            with kit.writer.transaction():
                kit.writer.execute(f"INSERT INTO public.t69_hv (id, name, {col}) VALUES (%s, %s, %s)", [i, name, value])
                kit.writer.execute("UPDATE public.t69_hv SET name = name || '!' WHERE id = %s", [i])
            kept.append(name)
        except psycopg.Error:
            pass
    return kept


@pytest.mark.parametrize("path", ["inline", "sandbox"])
def test_e2_hostile_row_images_seal_and_verify_in_both_and_a_tamper_is_caught(kit, path):
    """Attack: a writer stores into a tracked table (inline, or through the sandbox with an enum
    column) json holding 1e400, 1e-400, -0, duplicate keys, \\u0000, a lone surrogate, 6,000-deep
    nesting; jsonb 6,000 deep and with 150,000 numbers; 3.2 MB of text; text '1e400', separators and
    noncharacters; float -0, NaN, -Infinity; a numeric of 130,000 digits and one of 16,000
    decimals; each inserted and updated. Safe: each write refused or captured; seal() moves all,
    nothing quarantined; both verifiers ok; a tamper of one image caught by both."""
    extra = ", mood public.t69_m2 DEFAULT 'a'" if path == "sandbox" else ""
    kit.owner.execute("CREATE TYPE public.t69_m2 AS ENUM ('a', 'b')")
    kit.owner.execute(f"""CREATE TABLE public.t69_hv (id int PRIMARY KEY, name text, j json, jb jsonb, t text,
                          f float8, n numeric{extra}); GRANT ALL ON public.t69_hv TO app_writer""")
    enable_tracking(kit.maint, "public.t69_hv")
    kept = hostile_rows(kit)
    assert len(kept) >= 12, kept
    failure = seal_all(kit.maint)
    assert failure is None, failure
    quarantined = kit.db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0]
    events = kit.db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 'public.t69_hv.%%'").fetchone()[0]
    assert quarantined == 0 and events == 2 * len(kept), (quarantined, events, kept)
    assert both_verifiers(kit.db) == (True, True)
    tamper(kit.db, "kind = 'public.t69_hv.update' AND row_after->>'name' = 'text seps!'",
           "row_after = jsonb_set(row_after, '{t}', to_jsonb(normalize(row_after->>'t', NFC)))")
    assert both_verifiers(kit.db) == (False, False)


def test_e3_a_tamper_that_only_reorders_or_respaces_a_json_columns_text_is_caught(kit):
    """Attack: a sealed record's payload is rewritten by a superuser behind the guards to a value
    jsonb calls equal but that prints differently (-0.0 -> -0, 1e3 written as 1000.0) and, in
    another event, the tenant's NFD spelling for its NFC one. Safe: both verifiers catch each."""
    kit.writer.execute("SELECT audit.record(kind => 't69.eq', tenant_id => 'caf\u00e9', payload => '{\"a\": 1000, \"b\": 0.0}'::jsonb)")
    seal(kit.maint)
    assert both_verifiers(kit.db) == (True, True)
    tamper(kit.db, "kind = 't69.eq'", "payload = '{\"a\": 1000.0, \"b\": 0}'::jsonb")
    first = both_verifiers(kit.db)
    tamper(kit.db, "kind = 't69.eq'", "payload = '{\"a\": 1000, \"b\": 0.0}'::jsonb")
    restored = both_verifiers(kit.db)
    tamper(kit.db, "kind = 't69.eq'", "tenant_id = normalize(tenant_id, NFD)")
    second = both_verifiers(kit.db)
    assert (first, restored, second) == ((False, False), (True, True), (False, False))


def test_e4_many_small_hostile_events_across_partition_end_and_blocks_verify(near_end, kit):
    """Attack: near the end of the log's first partition, writers record events whose tenants and
    actors are emoji, ZWJ sequences and right-to-left marks, sealed in rounds of 3 so blocks split
    at the partition end. Safe: both verifiers ok, and a tamper in the second partition is caught
    by both."""
    for i in range(12):
        record(kit.writer, f"t69.p{i % 3}", tenant_id=["👨‍👩‍👧", "\u202eevil", "ｔｅｎ"][i % 3],
               actor_id="\u0645\u0631\u062d\u0628\u0627" + str(i), payload={"\u2028": i, "\U0001F600": [i, -0.0]})
        if i % 3 == 2:
            seal(kit.maint, 3)
    seal_all(kit.maint)
    assert both_verifiers(kit.db) == (True, True)
    tamper(kit.db, "seq = (SELECT max(seq) FROM audit.event_log)", "actor_id = actor_id || '\u200b'")
    assert both_verifiers(kit.db) == (False, False)


# ======================================== more variants =========================================


def test_a9_a_key_domain_with_a_check_runs_for_no_package_role_when_history_is_asked(kit):
    """Attack: the table's key is a domain over int (and a second table's a domain over text)
    whose CHECK calls the spy; anything that casts the reader's key text to the key's type runs
    it, as the reader or as the history functions' owner. The maintainer tracks with a baseline,
    the writer writes, the reader asks row_history, row_as_of and row_state_as_of for good and bad
    keys. Safe: no package role, nor the reader, ran the CHECK."""
    kit.owner.execute("""
        CREATE DOMAIN public.t69_kd AS int CHECK (public.t69_spy('key domain int'));
        CREATE DOMAIN public.t69_kt AS text CHECK (public.t69_spy('key domain text'));
        CREATE TABLE public.t69_kk (id public.t69_kd PRIMARY KEY, v int);
        CREATE TABLE public.t69_kt2 (id public.t69_kt, r int, v int, PRIMARY KEY (id, r));
        GRANT ALL ON public.t69_kk, public.t69_kt2 TO app_writer;
        INSERT INTO public.t69_kk VALUES (1, 0); INSERT INTO public.t69_kt2 VALUES ('a', 1, 0)""")
    enable_tracking(kit.maint, "public.t69_kk", baseline=True)
    enable_tracking(kit.maint, "public.t69_kt2", baseline=True)
    kit.writer.execute("UPDATE public.t69_kk SET v = 1; UPDATE public.t69_kt2 SET v = 1")
    seal_all(kit.maint)
    at = datetime.now(timezone.utc) + timedelta(seconds=5)
    for table, keys in (("public.t69_kk", ["1", "2", "x", " 1"]), ("public.t69_kt2", ['["a", 1]', '["b", 2]', "a"])):
        for key in keys:
            for call in (row_history, lambda c, t, k: row_as_of(c, t, k, at), lambda c, t, k: row_state_as_of(c, t, k, at)):
                with suppress(psycopg.Error, PgAuditError):
                    call(kit.reader, table, key)
    bad = [r for r in kit.privileged_runs()] + [r for r in kit.runs() if r[0] == "app_reader"]
    assert bad == [] and kit.forged_in_log() == 0, bad


def test_c6_the_packages_own_events_carry_no_tenant_the_maintainers_session_claims(kit):
    """Attack: the maintainer's session claims tenant globex while it tracks a table (no
    tenant_column) with a baseline, re-tracks it, detaches and drops a partition of another, and
    un-tracks. Safe: no event of origin system, and no baseline row, is filed under globex (the
    rows are every tenant's; a system event is about the whole installation)."""
    acct(kit)
    parted(kit)
    with kit.maint.transaction():
        kit.maint.execute("SELECT set_config('pgaudit_py.tenant_id', 'globex', true)")
        enable_tracking(kit.maint, "public.t69_acct", baseline=True, redact_columns=["note"])
        kit.maint.execute("ALTER TABLE public.t69_part DETACH PARTITION public.t69_part_us")
        disable_tracking(kit.maint, "public.t69_acct")
    filed = kit.db.execute("SELECT kind, origin FROM audit.events WHERE tenant_id = 'globex'"
                           " AND (origin = 'system' OR kind LIKE '%%.baseline')").fetchall()
    assert filed == [], filed


def test_b8_owner_triggers_that_rewrite_the_row_at_commit_or_per_partition_leave_the_log_true(kit):
    """Attack: the owner puts a DEFERRABLE INITIALLY DEFERRED constraint trigger on its partitioned
    tracked table that rewrites the row again at commit, after the writer's statement was captured,
    and a BEFORE UPDATE trigger on one partition only that rewrites NEW. Safe: the last captured
    image of each row is what the table holds after commit."""
    parted(kit)
    kit.owner.execute("""
        CREATE FUNCTION public.t69_late() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.v <> 4242 THEN UPDATE public.t69_part SET v = 4242 WHERE id = NEW.id AND region = NEW.region; END IF;
            RETURN NULL;
        END $$;
        CREATE CONSTRAINT TRIGGER t69_late AFTER UPDATE ON public.t69_part_eu DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION public.t69_late();
        CREATE FUNCTION public.t69_before() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN NEW.v := NEW.v * 10; RETURN NEW; END $$;
        CREATE TRIGGER t69_before BEFORE UPDATE ON public.t69_part_us FOR EACH ROW EXECUTE FUNCTION public.t69_before()""")
    with kit.writer.transaction():
        kit.writer.execute("UPDATE public.t69_part SET v = 1")
    seal_all(kit.maint)
    final = dict(kit.db.execute("SELECT id, v FROM public.t69_part").fetchall())
    last = {}
    for (after,) in kit.db.execute("SELECT row_after FROM audit.events WHERE kind LIKE 'public.t69_part.%%'"
                                   " AND row_after IS NOT NULL ORDER BY seq"):
        last[int(after["id"])] = int(after["v"])
    assert last == final, (last, final)


def test_b9_a_tracked_table_dropped_and_made_again_under_its_name_is_recorded(kit):
    """Attack: the owner drops its tracked table and makes another of the same name and columns;
    the writer writes the new one. Safe: the drop is recorded (audit.tracked_table_dropped), the
    new table is not listed as tracked unless its writes are captured, and the old table's prefix
    is not silently given to the new one's untracked writes."""
    acct(kit)
    kit.writer.execute("UPDATE public.t69_acct SET v = 1 WHERE id = 1")
    kit.owner.execute("""DROP TABLE public.t69_acct;
                         CREATE TABLE public.t69_acct (id int PRIMARY KEY, v int, note text);
                         GRANT ALL ON public.t69_acct TO app_writer;
                         INSERT INTO public.t69_acct VALUES (1, 99, 'new')""")
    kit.writer.execute("UPDATE public.t69_acct SET v = 100 WHERE id = 1")
    seal_all(kit.maint)
    dropped = n_events(kit.db, "audit.tracked_table_dropped")
    listed = kit.db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.t69_acct'::regclass").fetchone()[0]
    captured_new = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.t69_acct.update'"
                                  " AND row_after->>'v' = '100'").fetchone()[0]
    assert dropped == 1 and (listed == 0 or captured_new == 1), (dropped, listed, captured_new)


def test_d6_quote_all_identifiers_in_the_maintainers_and_owners_sessions_changes_no_name(kit):
    """Attack: the maintainer tracks, and the owner renames the table and a column, with
    quote_all_identifiers on and an odd DateStyle. Safe: the kind prefix, the recorded names and
    the image's keys are spelled without quotes."""
    kit.owner.execute("""CREATE TABLE public.t69_q (id int PRIMARY KEY, v int); GRANT ALL ON public.t69_q TO app_writer""")
    maint = kit.conn("app_maintainer", options="-c quote_all_identifiers=on -c DateStyle=Postgres,DMY")
    maint.execute("SELECT audit.enable_tracking('public.t69_q')")
    owner = kit.conn("t69_owner", options="-c quote_all_identifiers=on")
    owner.execute("ALTER TABLE public.t69_q RENAME COLUMN v TO w; ALTER TABLE public.t69_q RENAME TO t69_q2")
    kit.writer.execute("INSERT INTO public.t69_q2 VALUES (1, 2)")
    seal_all(kit.maint)
    prefix = kit.db.execute("SELECT kind_prefix FROM audit.tracked_tables").fetchone()[0]
    image = kit.db.execute("SELECT row_after FROM audit.events WHERE kind = 'public.t69_q.insert'").fetchone()
    texts = json.dumps([r[0] for r in kit.db.execute("SELECT payload FROM audit.events WHERE origin = 'system'")])
    assert prefix == "public.t69_q" and image is not None and image[0] == {"id": 1, "w": 2}, (prefix, image)
    assert '\\"public\\"' not in texts and '\\"t69_q2\\"' not in texts, texts[:500]


def shadow_package_relations(kit, conn) -> list[str]:
    """In conn's session: a temporary table named like each relation of the package's schemas (same
    columns; its row type shadows the package's type of that name for any code that looks in
    pg_temp), each with statement triggers that call the spy."""
    rels = kit.db.execute(
        "SELECT c.relname, string_agg(format('%I %s', a.attname, CASE WHEN t.typnamespace IN ('audit'::regnamespace,"
        " 'audit_capture'::regnamespace) THEN 'text' ELSE format_type(a.atttypid, a.atttypmod) END), ', ' ORDER BY a.attnum)"
        " FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " JOIN pg_type t ON t.oid = a.atttypid"
        " WHERE c.relnamespace IN ('audit'::regnamespace, 'audit_capture'::regnamespace) AND c.relkind IN ('r', 'p', 'v', 'm')"
        " GROUP BY c.relname").fetchall()
    conn.execute("""CREATE FUNCTION pg_temp.t69_shadow() RETURNS trigger LANGUAGE plpgsql AS $$
                    BEGIN PERFORM public.t69_spy('temp ' || TG_TABLE_NAME || ' ' || TG_OP); RETURN NULL; END $$""")
    made = []
    for name, cols in rels:
        try:
            conn.execute(f'CREATE TEMP TABLE "{name}" ({cols})')
        except psycopg.Error:
            continue
        conn.execute(f'CREATE TRIGGER t69_s AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON pg_temp."{name}"'
                     " FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.t69_shadow()")
        made.append(name)
    conn.execute("SET search_path = pg_temp, public, pg_catalog")
    return made


def test_a10_temporary_shadows_of_every_package_relation_in_ddl_and_history_sessions(kit):
    """Attack: the table's owner, the writer and the reader each shadow every relation of the
    package's schemas with a temporary table of its name (and so its row type) carrying triggers
    that call the spy; then the owner runs DDL on its tracked table (the event triggers and the
    owner role's helpers run in its session: add, rename, drop a column, rename the table, an
    enum value renamed), the writer writes, the reader asks history. Safe: no temporary shadow was
    touched (no spy run at all), and every change has its event."""
    kit.owner.execute("CREATE TYPE public.t69_e AS ENUM ('x', 'y')")
    acct(kit, columns=", e public.t69_e")
    made = shadow_package_relations(kit, kit.owner)
    shadow_package_relations(kit, kit.writer)
    shadow_package_relations(kit, kit.reader)
    assert "tracked_tables" in made and "event_intake" in made
    for ddl in ("ALTER TABLE public.t69_acct ADD COLUMN extra int DEFAULT 5",
                "ALTER TABLE public.t69_acct RENAME COLUMN note TO memo",
                "ALTER TABLE public.t69_acct DROP COLUMN extra",
                "ALTER TYPE public.t69_e RENAME VALUE 'x' TO 'z'",
                "ALTER TABLE public.t69_acct RENAME TO t69_acct_r",
                "CREATE INDEX t69_i ON public.t69_acct_r (v)"):
        kit.owner.execute(ddl)
    kit.writer.execute("UPDATE public.t69_acct_r SET v = 6, e = 'y' WHERE id = 1")
    kit.writer.execute("DELETE FROM public.t69_acct_r WHERE id = 2")
    seal_all(kit.maint)
    row_history(kit.reader, "public.t69_acct_r", "1")
    row_state_as_of(kit.reader, "public.t69_acct_r", "2", datetime.now(timezone.utc))
    list(list_events(kit.reader))
    assert kit.runs() == [], kit.runs()
    ddl_events = kit.db.execute("SELECT count(*) FROM audit.events WHERE kind IN ('audit.tracked_table_ddl',"
                                " 'audit.tracked_type_altered', 'audit.tracked_table_altered')").fetchone()[0]
    assert ddl_events >= 3 and n_events(kit.db, "public.t69_acct.update") == 1 and n_events(kit.db, "public.t69_acct.delete") == 1


def test_c7_a_table_owners_ddl_in_a_session_claiming_a_tenant_files_no_system_event_there(kit):
    """Attack: the table's owner (no audit role) claims tenant globex in its session and alters its
    tracked table (add, rename, drop a column; an enum value renamed; a partition detached), which
    the package records as its own (origin system) events. Safe: none is filed under globex."""
    kit.owner.execute("CREATE TYPE public.t69_e AS ENUM ('x', 'y')")
    acct(kit, columns=", e public.t69_e")
    parted(kit)
    with kit.owner.transaction():
        kit.owner.execute("SELECT set_config('pgaudit_py.tenant_id', 'globex', true)")
        for ddl in ("ALTER TABLE public.t69_acct ADD COLUMN extra int DEFAULT 5",
                    "ALTER TABLE public.t69_acct RENAME COLUMN note TO memo",
                    "ALTER TABLE public.t69_acct DROP COLUMN extra",
                    "ALTER TYPE public.t69_e RENAME VALUE 'x' TO 'z'",
                    "ALTER TABLE public.t69_part DETACH PARTITION public.t69_part_us",
                    "DROP TABLE public.t69_part_us"):
            with suppress(psycopg.Error), kit.owner.transaction():
                kit.owner.execute(ddl)
    system = kit.db.execute("SELECT count(*) FROM audit.events WHERE origin = 'system' AND kind <> 'audit.tracking_enabled'").fetchone()[0]
    filed = kit.db.execute("SELECT kind FROM audit.events WHERE origin = 'system' AND tenant_id = 'globex'").fetchall()
    assert system >= 3 and filed == [], (system, filed)


SWAPS = {
    "three renames": ["ALTER TABLE public.t69_sw RENAME COLUMN {a} TO t69_tmp",
                      "ALTER TABLE public.t69_sw RENAME COLUMN {b} TO {a}",
                      "ALTER TABLE public.t69_sw RENAME COLUMN t69_tmp TO {b}"],
    "drop and add": ["ALTER TABLE public.t69_sw DROP COLUMN {a}",
                     "ALTER TABLE public.t69_sw RENAME COLUMN {b} TO {a}",
                     "ALTER TABLE public.t69_sw ADD COLUMN {b} text"],
}


@pytest.mark.parametrize("how", list(SWAPS))
@pytest.mark.parametrize("option", ["exclude", "redact", "tenant"])
def test_b10_swapping_or_dropping_an_option_column_keeps_the_options_meaning_or_is_recorded(kit, option, how):
    """Attack: the table's owner, in one transaction, swaps the names of the column an option names
    (excluded or redacted: the secret; the tenant column) and a plain column, or drops the option's
    column and gives a plain column its name; then the writer writes each column by its position's
    original meaning. Safe: the options follow the column, not the name (the original secret
    column's value never reaches the log in clear; events are filed under the original tenant
    column's value); a dropped option column is refused or leaves a recorded change of options."""
    kit.owner.execute("""CREATE TABLE public.t69_sw (id int PRIMARY KEY, secret text, tenant text, note text);
                         GRANT ALL ON public.t69_sw TO app_writer""")
    opts = {"exclude": {"exclude_columns": ["secret"]}, "redact": {"redact_columns": ["secret"]},
            "tenant": {"tenant_column": "tenant"}}[option]
    enable_tracking(kit.maint, "public.t69_sw", **opts)
    a = "tenant" if option == "tenant" else "secret"
    seen = kit.db.execute("SELECT count(*) FROM audit.events WHERE origin = 'system'").fetchone()[0]
    refused = False
    try:
        with kit.owner.transaction():
            for stmt in SWAPS[how]:
                kit.owner.execute(stmt.format(a=a, b="note"))
    except psycopg.Error:
        refused = True
    recorded = kit.db.execute("SELECT count(*) FROM audit.events WHERE origin = 'system'").fetchone()[0] - seen
    names = {r[0]: r[1] for r in kit.db.execute("SELECT attnum, attname FROM pg_attribute WHERE attrelid = 'public.t69_sw'::regclass"
                                                " AND attnum > 0 AND NOT attisdropped")}
    if how == "drop and add" and not refused:
        assert recorded >= 1, "an option's column dropped with no recorded change"
        return
    original = {n: names.get(n) for n in (2, 3, 4)}  # the columns by position: secret, tenant, note
    values = {original[2]: "HUNTER2-69", original[3]: "acme", original[4]: "globex-69"}
    cols = [c for c in values if c]
    kit.writer.execute(f"INSERT INTO public.t69_sw (id, {', '.join(cols)}) VALUES (1, {', '.join(['%s'] * len(cols))})",
                       [values[c] for c in cols])
    kit.writer.execute("UPDATE public.t69_sw SET id = 2")
    seal_all(kit.maint)
    logged = json.dumps([list(r) for r in kit.db.execute(
        "SELECT row_before, row_after, changed, payload FROM audit.events WHERE kind LIKE 'public.t69_sw.%%'")])
    tenants = {r[0] for r in kit.db.execute("SELECT tenant_id FROM audit.events WHERE kind LIKE 'public.t69_sw.%%'")}
    if option == "tenant":
        assert tenants == {"acme"}, (refused, names, tenants)
    else:
        assert "HUNTER2-69" not in logged, (refused, names, logged[:600])


def test_a11_a_partitions_own_row_security_neither_runs_as_a_package_role_nor_hides_rows_from_a_baseline(kit):
    """Attack: the parent has no row-level security, but one partition enables it with a policy
    (USING calls the spy and shows only v < 100); FORCE too, so its owner is bound. The maintainer
    tracks the parent with a baseline. Safe: refused, or the baseline holds every row of every
    partition; the policy never ran as a package role."""
    parted(kit)
    disable_tracking(kit.maint, "public.t69_part")
    kit.owner.execute("""INSERT INTO public.t69_part VALUES (3, 'us', 500), (4, 'eu', 7);
                         ALTER TABLE public.t69_part_us ENABLE ROW LEVEL SECURITY;
                         ALTER TABLE public.t69_part_us FORCE ROW LEVEL SECURITY;
                         CREATE POLICY t69_hide ON public.t69_part_us USING (public.t69_spy('partition policy') AND v < 100)""")
    try:
        enable_tracking(kit.maint, "public.t69_part", baseline=True)
    except (psycopg.Error, PgAuditError):
        assert kit.privileged_runs() == [], kit.privileged_runs()
        return
    rows = kit.db.execute("SELECT count(*) FROM public.t69_part").fetchone()[0]
    baseline = n_events(kit.db, "public.t69_part.baseline")
    assert baseline == rows, (baseline, rows)
    assert kit.privileged_runs() == [] and kit.forged_in_log() == 0, kit.privileged_runs()


DML_ROUTES = {
    "copy of update returning": "COPY (UPDATE public.t69_acct SET v = v + 1 RETURNING id) TO STDOUT",
    "explain analyze update": "EXPLAIN (ANALYZE) UPDATE public.t69_acct SET v = v + 1",
    "explain analyze merge": "EXPLAIN (ANALYZE) MERGE INTO public.t69_acct t USING (VALUES (1)) s(i) ON t.id = s.i"
                             " WHEN MATCHED THEN UPDATE SET v = t.v + 1",
    "prepared": "PREPARE t69_p AS UPDATE public.t69_acct SET v = v + 1; EXECUTE t69_p; EXECUTE t69_p",
    "sql function per row": "CREATE FUNCTION pg_temp.t69_bump(i int) RETURNS int LANGUAGE sql AS"
                            " 'UPDATE public.t69_acct SET v = v + 1 WHERE id = i RETURNING v';"
                            " SELECT pg_temp.t69_bump(id) FROM generate_series(1, 2) id",
    "do block loop": "DO $$ BEGIN FOR i IN 1..3 LOOP UPDATE public.t69_acct SET v = v + 1 WHERE id = 1; END LOOP; END $$",
    "cte in cte": "WITH a AS (UPDATE public.t69_acct SET v = v + 1 WHERE id = 1 RETURNING id),"
                  " b AS (UPDATE public.t69_acct SET v = v + 1 WHERE id = 2 RETURNING id) SELECT * FROM a, b",
}


@pytest.mark.parametrize("route", list(DML_ROUTES))
def test_b11_changes_made_through_unusual_statement_forms_are_captured(kit, route):
    """Attack: the writer changes the tracked table through statement forms that run the executor
    in unusual ways (COPY of an UPDATE ... RETURNING, EXPLAIN ANALYZE of UPDATE and MERGE, a
    prepared statement, a SQL function called per row, a DO loop, two writable CTEs). Safe: the
    sum of captured increments equals the table's change."""
    acct(kit)
    writer = kit.writer
    try:
        if route.startswith("copy"):
            with writer.cursor().copy(DML_ROUTES[route]) as cp:
                for _ in cp:
                    pass
        else:
            writer.execute(DML_ROUTES[route])
    except psycopg.Error as e:
        assert e.sqlstate is not None
    seal_all(kit.maint)
    total = kit.db.execute("SELECT sum(v) FROM public.t69_acct").fetchone()[0]
    captured = kit.db.execute("SELECT coalesce(sum((row_after->>'v')::int - (row_before->>'v')::int), 0)"
                              " FROM audit.events WHERE kind = 'public.t69_acct.update'").fetchone()[0]
    assert captured == total, (route, captured, total)


TRUNCATES = {
    "a partition": "TRUNCATE public.t69_tp_eu",
    "the parent": "TRUNCATE public.t69_tp",
    "by cascade": "TRUNCATE public.t69_tref CASCADE",
}


@pytest.mark.parametrize("how", list(TRUNCATES))
def test_c8_a_truncate_of_a_tenant_column_table_is_not_filed_under_the_sessions_claimed_tenant(kit, how):
    """Attack (c4's TRUNCATE by other routes): a partitioned table tracked with tenant_column holds
    acme's rows only; the writer's session claims tenant globex and truncates a partition, the
    parent, or an untracked table it references with CASCADE. Safe: the truncate event is not
    filed under globex (the claim of a session, which the rows do not make; a globex token would
    read that acme's rows were emptied, and acme's would not)."""
    kit.owner.execute("""
        CREATE TABLE public.t69_tref (id int PRIMARY KEY); INSERT INTO public.t69_tref VALUES (1);
        CREATE TABLE public.t69_tp (id int, region text, tenant text, r int REFERENCES public.t69_tref,
                                    PRIMARY KEY (id, region)) PARTITION BY LIST (region);
        CREATE TABLE public.t69_tp_eu PARTITION OF public.t69_tp FOR VALUES IN ('eu');
        GRANT ALL ON public.t69_tref, public.t69_tp, public.t69_tp_eu TO app_writer;
        INSERT INTO public.t69_tp VALUES (1, 'eu', 'acme', 1)""")
    enable_tracking(kit.maint, "public.t69_tp", tenant_column="tenant")
    with kit.writer.transaction():
        kit.writer.execute("SELECT set_config('pgaudit_py.tenant_id', 'globex', true)")
        kit.writer.execute(TRUNCATES[how])
    seal_all(kit.maint)
    rows = kit.db.execute("SELECT kind, tenant_id FROM audit.events WHERE kind LIKE 'public.t69_tp.%%'").fetchall()
    assert rows and all(t != "globex" for _, t in rows), rows


def test_e5_numbers_just_below_wild_that_print_40_times_their_size_seal_and_verify(kit):
    """Attack: a jsonb column holding 70,000 numbers of 399 digits (about 12 bytes each stored,
    under the capture's 1 MiB bound, 28 MB printed; none is "wild"), inserted and updated, and a
    text column beside it. Safe: seal() moves both events (bounded at the second attempt), nothing
    quarantined, both verifiers ok, and a tamper of the text column is caught by both."""
    kit.owner.execute("""CREATE TABLE public.t69_big (id int PRIMARY KEY, doc jsonb, t text);
                         GRANT ALL ON public.t69_big TO app_writer""")
    enable_tracking(kit.maint, "public.t69_big")
    kit.writer.execute("INSERT INTO public.t69_big SELECT 1, jsonb_agg(('9' || repeat('0', 397) || g::text)::numeric), 'a'"
                       " FROM generate_series(10, 70009) g")
    kit.writer.execute("UPDATE public.t69_big SET t = 'b'")
    failure = seal_all(kit.maint)
    assert failure is None, failure
    moved = kit.db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 'public.t69_big.%%'").fetchone()[0]
    quarantined = kit.db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0]
    assert (moved, quarantined) == (2, 0)
    assert both_verifiers(kit.db) == (True, True)
    tamper(kit.db, "kind = 'public.t69_big.update'", "row_after = jsonb_set(row_after, '{t}', '\"c\"')")
    assert both_verifiers(kit.db) == (False, False)


def test_c9_an_untracked_table_named_like_another_tables_kind_prefix_has_no_borrowed_history(kit):
    """Attack: the maintainer tracks public.t69_c under kind prefix public.t69_z (no such table
    then); t69_mallory later makes an untracked public.t69_z with the same keys. The reader asks
    the history of public.t69_z's rows. Safe: refused or empty, never t69_c's changes presented
    as t69_z's."""
    kit.owner.execute("""CREATE TABLE public.t69_c (id int PRIMARY KEY, v int); GRANT ALL ON public.t69_c TO app_writer;
                         INSERT INTO public.t69_c VALUES (1, 0)""")
    enable_tracking(kit.maint, "public.t69_c", kind_prefix="public.t69_z")
    kit.writer.execute("UPDATE public.t69_c SET v = 5 WHERE id = 1")
    seal_all(kit.maint)
    kit.mallory.execute("CREATE TABLE public.t69_z (id int PRIMARY KEY, v int); INSERT INTO public.t69_z VALUES (1, 1)")
    answers = {}
    at = datetime.now(timezone.utc) + timedelta(seconds=5)
    for name, call in (("history", lambda: [e.kind for e in row_history(kit.reader, "public.t69_z", "1")]),
                       ("as_of", lambda: row_as_of(kit.reader, "public.t69_z", "1", at)),
                       ("state", lambda: row_state_as_of(kit.reader, "public.t69_z", "1", at).state)):
        try:
            answers[name] = call()
        except (psycopg.Error, PgAuditError) as e:
            answers[name] = f"refused {getattr(e, 'sqlstate', '')}"
    assert answers["history"] in ([],) or str(answers["history"]).startswith("refused"), answers
    assert answers["as_of"] is None or str(answers["as_of"]).startswith("refused"), answers
    assert answers["state"] in ("unknown",) or str(answers["state"]).startswith("refused"), answers


def test_d7_a_composite_key_of_time_float_and_interval_names_one_row_under_any_writers_settings(kit):
    """Attack: a table keyed by (timestamptz, float8, interval, bytea); one writer inserts under
    default settings, others update the same row under odd TimeZone, DateStyle, IntervalStyle,
    extra_float_digits and bytea_output. Safe: every event of the row carries one target_id, and
    row_history by that key returns all of them."""
    kit.owner.execute("""CREATE TABLE public.t69_ck (t timestamptz, f float8, i interval, b bytea, v int, PRIMARY KEY (t, f, i, b));
                         GRANT ALL ON public.t69_ck TO app_writer""")
    enable_tracking(kit.maint, "public.t69_ck")
    key = (datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc), 0.1 + 0.2, timedelta(days=400, microseconds=1), b"\x00\\'")
    kit.writer.execute("INSERT INTO public.t69_ck VALUES (%s, %s, %s, %s, 0)", key)
    for n, opts in enumerate((ODD, ODD2, "-c TimeZone=America/St_Johns -c IntervalStyle=postgres_verbose -c DateStyle=Postgres,MDY")):
        kit.conn("app_writer", options=opts).execute(
            "UPDATE public.t69_ck SET v = %s WHERE t = %s AND f = %s AND i = %s AND b = %s", (n + 1, *key))
    seal_all(kit.maint)
    ids = [r[0] for r in kit.db.execute("SELECT target_id FROM audit.events WHERE kind LIKE 'public.t69_ck.%%' ORDER BY seq")]
    assert len(ids) == 4 and len(set(ids)) == 1, ids
    assert len(row_history(kit.reader, "public.t69_ck", ids[0])) == 4


ODD_TEXT = "".join(chr(c) for c in range(1, 32)) + "\x7f\x80\x9f\ufeff\u2028\u2029\\\"/\ud7ff\ue000\U0010ffff"


def test_e6_every_escape_and_control_character_in_the_events_text_fields_verifies_in_both(kit):
    """Attack: the writer records with tenant, actor type and id, target type and id, correlation
    id and idempotency key each holding every control character, DEL, C1 controls, a BOM,
    U+2028/U+2029, a backslash, a quote, a slash, the last BMP character before the surrogates, a
    private-use character and U+10FFFF; and a captured row with the same text in its key. Safe:
    stored, sealed, both verifiers ok (no false alarm), and a tamper of one character is caught."""
    acct(kit)
    kit.writer.execute("INSERT INTO public.t69_acct (id, v, note) VALUES (7, 7, %s)", [ODD_TEXT])
    record(kit.writer, "t69.odd", tenant_id=ODD_TEXT[:200], actor_type=ODD_TEXT[:60], actor_id=ODD_TEXT,
           target_type=ODD_TEXT[:100], target_id=ODD_TEXT, correlation_id=ODD_TEXT, idempotency_key=ODD_TEXT,
           payload={ODD_TEXT: ODD_TEXT})
    assert seal_all(kit.maint) is None
    assert both_verifiers(kit.db) == (True, True) and cli_verify(kit.db)[0] == 0
    tamper(kit.db, "kind = 't69.odd'", "actor_id = replace(actor_id, chr(8232), chr(8233))")
    assert both_verifiers(kit.db) == (False, False)


@pytest.mark.parametrize("depth", [3000, 6000, 20000])
def test_e7_a_deep_value_that_changes_deep_inside_seals_verifies_and_a_tamper_is_caught(kit, depth):
    """Attack: a tracked jsonb column holds a value nested `depth` deep whose innermost value the
    writer changes from a wild number (1e130000) to -0 and then to a 16,000-decimal number, so
    that the UPDATEs' `changed` holds two deep values. Safe: each write refused or captured, seal()
    moves every captured event (nothing quarantined, no failure), both verifiers ok; a tamper of
    one event is caught by both."""
    kit.owner.execute("""CREATE TABLE public.t69_deep (id int PRIMARY KEY, doc jsonb, note text);
                         GRANT ALL ON public.t69_deep TO app_writer""")
    enable_tracking(kit.maint, "public.t69_deep")
    kept = 0
    for n, inner in enumerate(("1e130000", "-0", "1." + "0" * 16000 + "1")):
        value = '{"a": ' * depth + inner + "}" * depth
        try:
            if n == 0:
                kit.writer.execute("INSERT INTO public.t69_deep VALUES (1, %s::jsonb, 'x')", [value])
            else:
                kit.writer.execute("UPDATE public.t69_deep SET doc = %s::jsonb, note = %s WHERE id = 1", [value, str(n)])
            kept += 1
        except psycopg.Error:
            pass
    failure = seal_all(kit.maint)
    assert failure is None, failure
    moved = kit.db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 'public.t69_deep.%%'").fetchone()[0]
    quarantined = kit.db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0]
    rows = kit.db.execute("SELECT count(*) FROM public.t69_deep").fetchone()[0]
    assert quarantined == 0 and moved == (kept if rows else 0), (moved, kept, quarantined)
    assert both_verifiers(kit.db) == (True, True)
    if moved:
        tamper(kit.db, "seq = (SELECT max(seq) FROM audit.event_log WHERE kind LIKE 'public.t69_deep.%%')",
               "db_role = 'app_reader'")
        assert both_verifiers(kit.db) == (False, False)


RESERVED_HOMES = [("tenant", "secret"), ("tenant", "data_key"), ("secret", "t69_x")]


@pytest.mark.parametrize("schema,table", RESERVED_HOMES)
def test_c10_a_table_whose_name_makes_a_reserved_kind_prefix_cannot_be_tracked_under_it(kit, schema, table):
    """Attack: the table's owner (CREATE on the database) makes schema `tenant` with a table
    `secret` (or `data_key`), or schema `secret`, so that the default kind prefix falls in the
    namespace of the package's own secrets events (tenant.secret.*, tenant.data_key.*, secret.*);
    the maintainer tracks it and the writer writes. Safe: tracking refused, or no captured event
    has a kind under a reserved prefix."""
    kit.owner.execute(f"""CREATE SCHEMA {schema}; GRANT USAGE ON SCHEMA {schema} TO app_writer;
                          CREATE TABLE {schema}.{table} (id int PRIMARY KEY, v int);
                          GRANT ALL ON {schema}.{table} TO app_writer""")
    try:
        enable_tracking(kit.maint, f"{schema}.{table}")
    except (psycopg.Error, PgAuditError):
        return
    kit.writer.execute(f"INSERT INTO {schema}.{table} VALUES (1, 1)")
    seal_all(kit.maint)
    kinds = [r[0] for r in kit.db.execute(
        "SELECT kind FROM audit.events WHERE kind LIKE 'tenant.secret.%%' OR kind LIKE 'tenant.data_key.%%'"
        " OR kind LIKE 'secret.%%' OR kind LIKE 'audit.%%' AND origin <> 'system'")]
    assert kinds == [], kinds


def test_b12_the_owners_schema_renamed_to_a_hostile_name_then_dropped_with_cascade(kit):
    """Attack: the tracked table lives in the owner's own schema; the owner renames the schema to
    a name with a quote, a dollar quote and U+2028, the writer writes, then t69_mallory is made
    the schema's owner and drops it with CASCADE (the table goes with it, with its rows). Safe:
    the write is captured under the first prefix, and the drop is recorded
    (audit.tracked_table_dropped), or refused."""
    kit.owner.execute("""CREATE SCHEMA t69_own; GRANT USAGE ON SCHEMA t69_own TO app_writer;
                         CREATE TABLE t69_own.acct (id int PRIMARY KEY, v int); GRANT ALL ON t69_own.acct TO app_writer;
                         INSERT INTO t69_own.acct VALUES (1, 0)""")
    enable_tracking(kit.maint, "t69_own.acct")
    hostile = 't69 "o$$\u2028'
    quoted = '"' + hostile.replace('"', '""') + '"'
    kit.owner.execute(f"ALTER SCHEMA t69_own RENAME TO {quoted}")
    kit.writer.execute(f"UPDATE {quoted}.acct SET v = 1")
    kit.db.execute(f"ALTER SCHEMA {quoted} OWNER TO t69_mallory")
    dropped = True
    try:
        kit.mallory.execute(f"DROP SCHEMA {quoted} CASCADE")
    except psycopg.Error:
        dropped = False
    seal_all(kit.maint)
    assert n_events(kit.db, "t69_own.acct.update") == 1
    assert not dropped or n_events(kit.db, "audit.tracked_table_dropped") == 1
    assert kit.runs() == []


def test_c11_a_recorded_event_naming_a_tracked_rows_key_and_a_move_changes_no_rows_history(kit):
    """Attack: the writer records events whose target is a tracked table's row (target_type the
    table's prefix, target_id its key) and whose payload says the row moved from another key
    (moved_from, statement), of kinds outside the prefix ('t69.update', 'public.t69_acctx.update').
    Safe: row_history, row_as_of and row_state_as_of of both keys are what the captured changes
    alone say."""
    acct(kit, baseline=True)
    kit.writer.execute("UPDATE public.t69_acct SET v = 5 WHERE id = 1")
    seal_all(kit.maint)
    at = datetime.now(timezone.utc) + timedelta(seconds=30)
    before = ([e.id for e in row_history(kit.reader, "public.t69_acct", "1")], row_as_of(kit.reader, "public.t69_acct", "1", at),
              row_state_as_of(kit.reader, "public.t69_acct", "2", at).state)
    for kind in ("t69.update", "public.t69_acctx.update", "t69.delete"):
        with suppress(psycopg.Error, PgAuditError):
            record(kit.writer, kind, target_type="public.t69_acct", target_id="2",
                   payload={"moved_from": "1", "statement": "00000000-0000-0000-0000-000000000000",
                            "row_after": {"id": 2, "v": 666}, "row_before": {"id": 1, "v": 5}})
    seal_all(kit.maint)
    after = ([e.id for e in row_history(kit.reader, "public.t69_acct", "1")], row_as_of(kit.reader, "public.t69_acct", "1", at),
             row_state_as_of(kit.reader, "public.t69_acct", "2", at).state)
    assert after == before, (before, after)


@pytest.mark.parametrize("ctype,value", [("timestamptz", datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)),
                                         ("float8", 0.1 + 0.2), ("interval", timedelta(days=-3, seconds=7)),
                                         ("bytea", b"\x00\xfe'\\"), ("numeric", "1.50")])
def test_d8_a_tenant_column_of_a_type_whose_text_follows_settings_names_one_tenant(kit, ctype, value):
    """Attack: a table tracked with a tenant column whose type prints by the session's settings
    (timestamptz, float8, interval, bytea, numeric); writers under default and odd settings write
    rows of one tenant value, and a baseline is taken by an odd maintainer's session. Safe: every
    event of those rows carries one tenant_id text."""
    kit.owner.execute(f"""CREATE TABLE public.t69_tc (id int PRIMARY KEY, ten {ctype}, v int);
                          GRANT ALL ON public.t69_tc TO app_writer""")
    kit.owner.execute("INSERT INTO public.t69_tc VALUES (0, %s, 0)", [value])
    odd_maint = kit.conn("app_maintainer", options=ODD2)
    odd_maint.execute("SELECT audit.enable_tracking('public.t69_tc', tenant_column => 'ten', baseline => true)")
    for n, opts in enumerate((None, ODD, ODD2)):
        conn = kit.conn("app_writer", options=opts) if opts else kit.writer
        conn.execute("INSERT INTO public.t69_tc VALUES (%s, %s, 0)", [n + 1, value])
        conn.execute("UPDATE public.t69_tc SET v = v + 1 WHERE id = %s", [n + 1])
    seal_all(kit.maint)
    tenants = {r[0] for r in kit.db.execute("SELECT tenant_id FROM audit.events WHERE kind LIKE 'public.t69_tc.%%'")}
    assert len(tenants) == 1 and None not in tenants, tenants


def test_d9_a_partition_truncates_record_does_not_depend_on_the_writers_quote_all_identifiers(kit):
    """Attack: two writers truncate a partition of a tracked table, one with default settings, one
    with quote_all_identifiers on (and an odd search_path): the TRUNCATE capture prints the
    partition's name as regclass text in the session's settings. Safe: both records name the
    partition in one spelling (as the DDL records do: quote_all_identifiers off)."""
    parted(kit)
    kit.writer.execute("TRUNCATE public.t69_part_eu")
    odd = kit.conn("app_writer", options="-c quote_all_identifiers=on -c search_path=public,pg_catalog")
    odd.execute("TRUNCATE public.t69_part_eu")
    seal_all(kit.maint)
    names = [r[0] for r in kit.db.execute("SELECT payload->>'partition' FROM audit.events"
                                          " WHERE kind = 'public.t69_part.truncate' ORDER BY seq")]
    assert len(names) == 2 and names[0] == names[1] == "public.t69_part_eu", names


def test_c12_another_roles_table_made_under_a_dropped_tracked_tables_name_borrows_no_history(kit):
    """Attack: the owner's tracked public.t69_acct is dropped (recorded); t69_mallory, another role
    with CREATE on public, makes an untracked public.t69_acct of its own and writes row 1 as it
    likes, with no event. The reader asks the row's state now. Safe: refused, or 'unknown' / the
    state of mallory's table; never the dropped table's last image presented as this table's row
    as it stands (existed, v = 5, while the table holds v = 999)."""
    acct(kit)
    kit.writer.execute("UPDATE public.t69_acct SET v = 5 WHERE id = 1")
    seal_all(kit.maint)
    kit.owner.execute("DROP TABLE public.t69_acct")
    kit.mallory.execute("CREATE TABLE public.t69_acct (id int PRIMARY KEY, v int, note text);"
                        " INSERT INTO public.t69_acct VALUES (1, 999, 'mallory')")
    seal_all(kit.maint)
    try:
        state = row_state_as_of(kit.reader, "public.t69_acct", "1", datetime.now(timezone.utc) + timedelta(seconds=5))
        answer = (state.state, state.image)
    except (psycopg.Error, PgAuditError) as e:
        answer = ("refused", getattr(e, "sqlstate", None))
    assert not (answer[0] == "existed" and isinstance(answer[1], dict) and answer[1].get("v") == 5), (
        f"mallory's untracked table answered with the dropped tracked table's row: {answer}")


def test_a12_a_nondeterministic_collation_on_the_key_keeps_each_rows_history_its_own(kit):
    """Attack: the owner keys its table by text under a case-insensitive ICU collation (so 'Key'
    and 'KEY' are one key to PostgreSQL, two to the log), inserts 'Key', changes it to 'KEY', and
    changes the value; a writer upserts 'key'. Safe: no code ran; each captured change is in the
    log; the move from 'Key' to 'KEY' is a key change (moved_from), the final key's state is its
    last image and the old key's is absent."""
    kit.owner.execute("""CREATE COLLATION public.t69_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
                         CREATE TABLE public.t69_col (k text COLLATE public.t69_ci PRIMARY KEY, v int);
                         GRANT ALL ON public.t69_col TO app_writer""")
    enable_tracking(kit.maint, "public.t69_col")
    kit.writer.execute("INSERT INTO public.t69_col VALUES ('Key', 1)")
    kit.writer.execute("UPDATE public.t69_col SET k = 'KEY' WHERE k = 'key'")
    kit.writer.execute("INSERT INTO public.t69_col VALUES ('key', 2) ON CONFLICT (k) DO UPDATE SET v = excluded.v")
    seal_all(kit.maint)
    now_key = kit.db.execute("SELECT k FROM public.t69_col").fetchone()[0]
    captured = n_events(kit.db, "public.t69_col.insert") + n_events(kit.db, "public.t69_col.update")
    history = row_history(kit.reader, "public.t69_col", now_key)
    old = row_history(kit.reader, "public.t69_col", "Key")
    assert captured == 3 and len(history) == 2 and len(old) == 2, (now_key, captured, [(e.kind, e.target_id) for e in history])
    at = datetime.now(timezone.utc) + timedelta(seconds=5)
    state = row_state_as_of(kit.reader, "public.t69_col", now_key, at)
    assert state.state == "existed" and state.image["v"] == 2, state
    # 'Key' and 'KEY' are one value under the collation: since trial 77's mend, where the log alone
    # would say absent, such a key reads unknown (docs/capture.md), the row living on as 'KEY'.
    assert row_state_as_of(kit.reader, "public.t69_col", "Key", at).state == "unknown"
    assert kit.runs() == []


def test_e8_every_bounded_field_at_its_bound_in_four_byte_characters_seals_beside_others(kit):
    """Attack: the writer records events whose tenant (256), actor type (64) and id (256), target
    type (128) and id (512), correlation id (256), idempotency key (256) and payload moved_from
    (512) are all at their bounds in four-byte characters (the log's composite indexes hold up to
    2,704 bytes an entry), between two ordinary events. Safe: refused at record(), or sealed with
    the others (no failure, nothing quarantined), and both verifiers ok."""
    c = "\U0001F600"
    record(kit.writer, "t69.before")
    with suppress(psycopg.Error, PgAuditError):
        record(kit.writer, "t69.max", tenant_id=c * 256, actor_type=c * 64, actor_id=c * 256, target_type=c * 128,
               target_id=c * 512, correlation_id=c * 256, idempotency_key=c * 256, payload={"moved_from": c * 512})
    record(kit.writer, "t69.after")
    failure = seal_all(kit.maint)
    quarantined = kit.db.execute("SELECT count(*) FROM audit.quarantine").fetchone()[0]
    assert failure is None and quarantined == 0, (failure, quarantined)
    assert n_events(kit.db, "t69.after") == 1
    assert both_verifiers(kit.db) == (True, True)


def test_c13_a_truncate_after_a_rename_names_the_table_emptied_not_the_one_now_under_its_old_name(kit):
    """Attack: the owner renames its tracked table, makes an untracked table under the old name
    (full of rows), then truncates the renamed tracked one. Safe: the truncate event names the
    table that was emptied as it is now called (or its oid), not the impostor that still holds its
    rows under the old name."""
    acct(kit)
    kit.owner.execute("""ALTER TABLE public.t69_acct RENAME TO t69_acct_old;
                         CREATE TABLE public.t69_acct (id int PRIMARY KEY, v int, note text);
                         INSERT INTO public.t69_acct VALUES (1, 1, 'impostor')""")
    kit.owner.execute("TRUNCATE public.t69_acct_old")
    seal_all(kit.maint)
    named = [r[0] for r in kit.db.execute("SELECT payload->>'table' FROM audit.events WHERE kind = 'public.t69_acct.truncate'")]
    assert len(named) == 1 and named[0] != "public.t69_acct", named


@pytest.mark.parametrize("reach", ["line_hashes", "line_hashes and events_hash"])
def test_e9_a_tamper_that_also_rewrites_the_blocks_unhashed_line_hashes_is_caught_by_both(kit, reach):
    """A real tamper by a superuser behind the guards: a sealed event's payload changed, and the
    block's line_hashes (not hashed into the chain) rewritten to the changed line's hash, and
    (second variant) the block's events_hash too, leaving block_hash and the chain as they were.
    Safe: both verifiers report the block."""
    for i in range(4):
        record(kit.writer, "t69.lh", payload={"i": i, "amount": 100})
    record(kit.writer, "t69.lh.next")
    seal(kit.maint, 4)
    seal(kit.maint)
    assert both_verifiers(kit.db) == (True, True)
    kit.db.execute("SET session_replication_role = replica")
    try:
        kit.db.execute("UPDATE audit.event_log SET payload = '{\"i\": 2, \"amount\": 1}' WHERE kind = 't69.lh' AND payload->>'i' = '2'")
        kit.db.execute("""UPDATE audit.blocks b SET line_hashes = (
                              SELECT string_agg(sha256(convert_to(audit._canonical_event(e, b.canonical_version), 'UTF8')), ''::bytea ORDER BY e.seq)
                                FROM audit.event_log e WHERE e.seq BETWEEN b.first_seq AND b.last_seq)
                           WHERE b.block_no = 1""")
        if reach != "line_hashes":
            kit.db.execute("UPDATE audit.blocks SET events_hash = sha256(line_hashes) WHERE block_no = 1")
    finally:
        kit.db.execute("RESET session_replication_role")
    assert both_verifiers(kit.db) == (False, False)
