"""plpgsql_check over every PL/pgSQL function the installer creates, and the capture functions it
generates (inline and sandboxed, for a table and its partition): no errors."""

from __future__ import annotations

import pytest

from pgaudit_py import enable_tracking


@pytest.fixture
def plpgsql_check(db):
    if db.execute("SELECT count(*) FROM pg_available_extensions WHERE name = 'plpgsql_check'").fetchone() == (0,):
        pytest.skip("plpgsql_check is not installed (Debian: postgresql-15-plpgsql-check; .ci/run installs it)")
    db.execute("CREATE EXTENSION plpgsql_check")
    return db


def test_every_function_checks_clean(plpgsql_check):
    db = plpgsql_check
    db.execute("""CREATE TYPE public.mood AS ENUM ('ok');
                  CREATE TABLE public.plain (id int PRIMARY KEY, a text, secret text, card text, tenant text);
                  CREATE TABLE public.moody (id int, at date, m public.mood, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
                  CREATE TABLE public.moody_1 PARTITION OF public.moody FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')""")
    enable_tracking(db, "public.plain", exclude_columns=["secret"], redact_columns=["card"], tenant_column="tenant")
    enable_tracking(db, "public.moody")
    db.execute("SELECT audit.enable_rate_limit('public.plain')")
    errors = db.execute("""
        SELECT p.oid::regprocedure::text, r.message, r.lineno
          FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang AND l.lanname = 'plpgsql',
               LATERAL plpgsql_check_function_tb(
                   p.oid,
                   CASE WHEN p.prorettype <> 'trigger'::regtype THEN 0
                        WHEN p.proname = '_guard_append_only' THEN 'audit.event_intake'::regclass
                        WHEN p.proname = '_stamp_owner_proof' THEN 'audit.owner_proofs'::regclass
                        WHEN p.proname ~ '^_capture_[0-9]+$' THEN substring(p.proname FROM '[0-9]+$')::oid
                        ELSE 'public.plain'::regclass END,
                   oldtable => CASE WHEN p.proname ~ '^_capture_[0-9]+$' THEN 'old_rows' END,
                   newtable => CASE WHEN p.proname ~ '^_capture_[0-9]+$' THEN 'new_rows' END) r
         WHERE p.pronamespace IN ('audit'::regnamespace, 'audit_capture'::regnamespace) AND r.level = 'error'
    """).fetchall()
    assert errors == []
    checked = db.execute("""SELECT count(*) FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
                             WHERE l.lanname = 'plpgsql' AND p.proname ~ '^_capture_[0-9]+$'""").fetchone()
    assert checked == (3,)  # plain, moody, moody_1
