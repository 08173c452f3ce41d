"""Event ids: time-ordered (UUID version 7), distinct whatever the statement that makes them, and
made under no setting or name of the caller's (sql/20_events.sql, _capture_body in sql/60_capture.sql).
Several of these were an attacker's review of the change; they stay as its regression tests."""

from __future__ import annotations

import threading
import time

from pgaudit_py import enable_tracking, record, seal
from pgaudit_py.chain import verify_chain


def seal_all(db):
    while seal(db, 100_000).sealed:
        pass


def assert_all_sealed_distinct_and_verified(db, at_least=1):
    """Nothing pending or quarantined; every id distinct, of version 7 with the RFC variant; both verifiers agree."""
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone() == (0,)
    assert db.execute("SELECT count(*) FROM audit.quarantine").fetchone() == (0,), \
        db.execute("SELECT kind, state, message FROM audit.quarantine").fetchall()
    n, distinct, v7 = db.execute("SELECT count(*), count(DISTINCT id), count(*) FILTER (WHERE substr(id::text, 15, 1) = '7'"
                                 " AND substr(id::text, 20, 1) IN ('8','9','a','b')) FROM audit.event_log").fetchone()
    assert n == distinct == v7 and n >= at_least, (n, distinct, v7)
    assert db.execute("SELECT ok FROM audit.verify()").fetchone() == (True,)
    assert verify_chain(db).ok


def test_event_ids_are_time_ordered_so_the_id_index_grows_at_its_end(db, connect):
    """Recorded and captured events alike get a UUID of version 7 when written, its first 48 bits
    the millisecond it was written in: sealed in rounds, the ids ascend with seq, to the millisecond."""
    writer = connect("app_writer")
    db.execute("CREATE TABLE public.stock (id int PRIMARY KEY, qty int)")
    enable_tracking(db, "public.stock")
    for round_no in range(3):
        record(writer, "order.paid", payload={"round": round_no})
        db.execute("INSERT INTO public.stock SELECT n, n FROM generate_series(%s::int, %s::int) n",
                   [round_no * 10, round_no * 10 + 9])
        db.execute("UPDATE public.stock SET qty = qty + 1 WHERE id >= %s AND id %% 2 = 0", [round_no * 10])
        db.execute("DELETE FROM public.stock WHERE id = %s", [round_no * 10 + 1])
        time.sleep(0.002)
        seal(db)
    rows = db.execute("""SELECT l.id, l.kind, floor(extract(epoch FROM l.occurred_at) * 1000)::bigint,
                                ('x' || left(replace(l.id::text, '-', ''), 12))::bit(48)::bigint
                           FROM audit.event_log l ORDER BY l.seq""").fetchall()
    assert {kind.rsplit(".", 1)[-1] for _, kind, _, _ in rows} >= {"paid", "insert", "update", "delete", "tracking_enabled"}
    assert len(rows) == len({row[0] for row in rows}) == 1 + 3 * (1 + 10 + 5 + 1)
    for event_id, kind, occurred_ms, id_ms in rows:
        assert (event_id.version, event_id.variant) == (7, "specified in RFC 4122"), (kind, event_id)
        # An id is made a moment before (record) or after (a captured row) the event's time.
        assert abs(id_ms - occurred_ms) <= 1000, (kind, event_id)
    id_ms = [row[3] for row in rows]
    assert id_ms == sorted(id_ms)


def test_making_event_ids_leaves_the_sessions_random_sequence_alone(db, connect):
    """setseed() makes a session's random() repeatable: writing events in between changes nothing."""
    writer = connect("app_writer")
    db.execute("CREATE TABLE public.dice (id int PRIMARY KEY, roll float8)")
    db.execute("GRANT SELECT, INSERT ON public.dice TO app_writer")
    enable_tracking(db, "public.dice")
    writer.execute("SELECT setseed(0.42)")
    alone = [writer.execute("SELECT random()").fetchone()[0] for _ in range(3)]  # type: ignore[index]
    writer.execute("SELECT setseed(0.42)")
    rolls = []
    for n in range(3):
        record(writer, "dice.rolled")
        writer.execute("INSERT INTO public.dice VALUES (%s, random())", [n])
        rolls.append(writer.execute("SELECT roll FROM public.dice WHERE id = %s", [n]).fetchone()[0])  # type: ignore[index]
    assert rolls == alone
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind IN ('dice.rolled', 'public.dice.insert')").fetchone() == (6,)


def test_ids_stay_distinct_whatever_the_shape_of_the_captured_statement(db):
    """Multi-row, ON CONFLICT (insert+update in one statement), MERGE, writable CTEs, partitioned
    (multi-level) with cross-partition moves, noop-skipping, redaction/exclusion, the sandbox path
    (enum column), FK cascades, thousands of statements in one millisecond."""
    db.execute("""
        CREATE TYPE public.mood AS ENUM ('ok', 'sad');
        CREATE TABLE public.plain (id int PRIMARY KEY, v int, secret text, junk text);
        CREATE TABLE public.part (id int, region int, v int, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
        CREATE TABLE public.part_1 PARTITION OF public.part FOR VALUES IN (1) PARTITION BY RANGE (id);
        CREATE TABLE public.part_1a PARTITION OF public.part_1 FOR VALUES FROM (0) TO (1000);
        CREATE TABLE public.part_1b PARTITION OF public.part_1 FOR VALUES FROM (1000) TO (100000);
        CREATE TABLE public.part_2 PARTITION OF public.part FOR VALUES IN (2);
        CREATE TABLE public.moody (id int PRIMARY KEY, m public.mood, v int);
        CREATE TABLE public.parent (id int PRIMARY KEY);
        CREATE TABLE public.child (id int PRIMARY KEY, parent_id int REFERENCES public.parent ON DELETE CASCADE
                                   ON UPDATE CASCADE, v int);
    """)
    enable_tracking(db, "public.plain", redact_columns=["secret"], exclude_columns=["junk"])
    enable_tracking(db, "public.part")
    enable_tracking(db, "public.moody", skip_noop_updates=False)
    enable_tracking(db, "public.child")
    db.execute("""
        INSERT INTO public.plain SELECT n, n, 's' || n, 'j' FROM generate_series(1, 3000) n;
        INSERT INTO public.plain SELECT n, n * 2, 's', 'x' FROM generate_series(2990, 4000) n
            ON CONFLICT (id) DO UPDATE SET v = excluded.v, secret = excluded.secret;
        UPDATE public.plain SET v = v WHERE id <= 500;                       -- noop: skipped
        UPDATE public.plain SET junk = 'changed' WHERE id <= 500;            -- excluded column only: skipped
        UPDATE public.plain SET v = CASE WHEN id % 2 = 0 THEN v ELSE v + 1 END WHERE id <= 1000;  -- half skipped
        MERGE INTO public.plain p USING (SELECT n FROM generate_series(3990, 4100) n) s ON p.id = s.n
            WHEN MATCHED AND s.n % 3 = 0 THEN DELETE
            WHEN MATCHED THEN UPDATE SET v = -1
            WHEN NOT MATCHED THEN INSERT VALUES (s.n, 0, 'm', 'm');
        WITH a AS (INSERT INTO public.plain VALUES (5001, 1, 'a', 'a') RETURNING id),
             b AS (INSERT INTO public.plain VALUES (5002, 1, 'b', 'b') RETURNING id)
        INSERT INTO public.plain SELECT n, 1, 'c', 'c' FROM generate_series(5003, 5010) n;
        INSERT INTO public.part SELECT n, 1 + n % 2, n FROM generate_series(1, 3000) n;
        UPDATE public.part SET region = 3 - region WHERE id % 5 = 0;         -- cross-partition moves
        UPDATE public.part_1 SET v = v + 1 WHERE id < 2000;                  -- via a sub-partitioned partition
        UPDATE public.part SET id = id + 10000 WHERE region = 1 AND id < 900; -- moves between sub-partitions
        DELETE FROM public.part_2 WHERE id % 7 = 0;
        INSERT INTO public.moody SELECT n, 'ok', n FROM generate_series(1, 1000) n;
        UPDATE public.moody SET v = v;                                        -- noop, recorded (skip off)
        INSERT INTO public.parent SELECT n FROM generate_series(1, 200) n;
        INSERT INTO public.child SELECT n, 1 + n % 200, n FROM generate_series(1, 1000) n;
        UPDATE public.parent SET id = id + 1000 WHERE id <= 50;              -- cascaded updates, per row
        DELETE FROM public.parent WHERE id > 150;                            -- cascaded deletes, per row
        DO $$ BEGIN
            FOR n IN 1..2000 LOOP
                INSERT INTO public.plain VALUES (10000 + n, n, 's', 'j');
                PERFORM audit.record(kind => 'loop.event');
            END LOOP;
        END $$;
        TRUNCATE public.moody;
    """)
    # Many ids in the same millisecond, from different statements.
    same_ms = db.execute("""SELECT max(c) FROM (SELECT count(DISTINCT left(replace(id::text, '-', ''), 20)) c
                              FROM audit.event_intake GROUP BY left(id::text, 13)) x""").fetchone()[0]
    assert same_ms > 1
    seal_all(db)
    assert_all_sealed_distinct_and_verified(db, at_least=10000)


def test_ids_stay_distinct_with_concurrent_single_row_writers(db, connect):
    """Two sessions hammering single-row statements at the same time."""
    db.execute("CREATE TABLE public.hot (id bigserial PRIMARY KEY, v int)")
    db.execute("GRANT INSERT, SELECT, UPDATE ON public.hot TO app_writer")
    db.execute("GRANT USAGE ON SEQUENCE public.hot_id_seq TO app_writer")
    enable_tracking(db, "public.hot")
    conns = [connect("app_writer") for _ in range(2)]

    def hammer(conn):
        conn.execute("""DO $$ BEGIN FOR n IN 1..3000 LOOP
                            INSERT INTO public.hot (v) VALUES (n);
                            PERFORM audit.record(kind => 'hot.event');
                        END LOOP; END $$""")

    threads = [threading.Thread(target=hammer, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seal_all(db)
    assert_all_sealed_distinct_and_verified(db, at_least=12000)


def test_a_writers_hostile_search_path_and_settings_neither_run_nor_bend_the_ids(db, connect):
    """A writer who owns schema evil, puts it before pg_catalog and shadows every operator,
    function and type name the new id code uses unqualified (or qualified-looking), then writes
    through record() and a tracked table and runs list_events. Nothing of evil may run, and the ids
    must be right."""
    db.execute("CREATE TABLE public.who_ran (who text, what text)")
    db.execute("GRANT ALL ON public.who_ran TO PUBLIC")
    db.execute("CREATE SCHEMA evil AUTHORIZATION app_writer")
    db.execute("CREATE TABLE public.stock (id int PRIMARY KEY, qty int, price float8, at timestamptz)")
    db.execute("GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON public.stock TO app_writer")
    enable_tracking(db, "public.stock")
    w = connect("app_writer")
    w.execute("""
        CREATE FUNCTION evil.spy(what text) RETURNS boolean LANGUAGE sql VOLATILE AS
            $$ INSERT INTO public.who_ran VALUES (current_user, what) RETURNING true $$;
        CREATE FUNCTION evil.bcat(a bytea, b bytea) RETURNS bytea LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('bytea||') THEN '\\x00000000000000000000000000000000'::bytea END $$;
        CREATE OPERATOR evil.|| (LEFTARG = bytea, RIGHTARG = bytea, FUNCTION = evil.bcat);
        CREATE FUNCTION evil.tcat(a text, b text) RETURNS text LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('text||') THEN '00000000000000000000000000000000' END $$;
        CREATE OPERATOR evil.|| (LEFTARG = text, RIGHTARG = text, FUNCTION = evil.tcat);
        CREATE FUNCTION evil.fmul(a float8, b int) RETURNS float8 LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('float*int') THEN 0::float8 END $$;
        CREATE OPERATOR evil.* (LEFTARG = float8, RIGHTARG = int, FUNCTION = evil.fmul);
        CREATE FUNCTION evil.fmul2(a float8, b float8) RETURNS float8 LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('float*float') THEN 0::float8 END $$;
        CREATE OPERATOR evil.* (LEFTARG = float8, RIGHTARG = float8, FUNCTION = evil.fmul2);
        CREATE FUNCTION evil.iplus(a bigint, b bigint) RETURNS bigint LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('int8+') THEN 0::bigint END $$;
        CREATE OPERATOR evil.+ (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.iplus);
        CREATE FUNCTION evil.iand(a bigint, b bigint) RETURNS bigint LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('int8&') THEN 0::bigint END $$;
        CREATE OPERATOR evil.& (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = evil.iand);
        CREATE FUNCTION evil.lpad(text, int, text) RETURNS text LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('lpad') THEN '000000000000' END $$;
        CREATE FUNCTION evil.to_hex(bigint) RETURNS text LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('to_hex') THEN '0' END $$;
        CREATE FUNCTION evil.replace(text, text, text) RETURNS text LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('replace') THEN '00000000000000000000000000000000' END $$;
        CREATE FUNCTION evil.gen_random_uuid() RETURNS uuid LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('gen_random_uuid') THEN '00000000-0000-4000-8000-000000000000'::uuid END $$;
        CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE sql AS
            $$ SELECT CASE WHEN evil.spy('clock_timestamp') THEN 'epoch'::timestamptz END $$;
        CREATE DOMAIN evil.uuid AS pg_catalog.uuid CHECK (evil.spy('domain uuid'));
        CREATE DOMAIN evil.text AS pg_catalog.text CHECK (evil.spy('domain text'));
        CREATE DOMAIN evil.int8 AS pg_catalog.int8 CHECK (evil.spy('domain int8'));
        CREATE DOMAIN evil."bit" AS pg_catalog."bit" CHECK (evil.spy('domain bit'));
    """)
    # sanity: the shadows work for this session's own unqualified code
    w.execute("SET search_path = evil, pg_catalog")
    w.execute("SELECT '\\x01'::bytea || '\\x02'::bytea")
    assert db.execute("SELECT count(*) FROM public.who_ran").fetchone()[0] >= 1
    db.execute("TRUNCATE public.who_ran")
    for setting in ("SET search_path = evil, pg_catalog, public", "SET TimeZone = 'Pacific/Chatham'",
                    "SET DateStyle = 'SQL, DMY'", "SET extra_float_digits = -15", "SET IntervalStyle = sql_standard",
                    "SET bytea_output = escape"):
        w.execute(setting)
    for _ in range(3):
        w.execute("SELECT audit.record(kind => 'evil.test', payload => '{\"a\": 1.5}')")
        w.execute("SELECT audit.record(kind => 'evil.test', idempotency_key => 'k1')")
        w.execute("INSERT INTO public.stock SELECT n, n, n / 3.0, now() FROM generate_series(1, 50) n"
                  " ON CONFLICT (id) DO UPDATE SET qty = excluded.qty + 1")
        w.execute("UPDATE public.stock SET price = price OPERATOR(pg_catalog.*) 2 WHERE id % 2 = 0")
        w.execute("DELETE FROM public.stock WHERE id % 10 = 0")
    w.execute("TRUNCATE public.stock")
    assert db.execute("SELECT count(*) FROM audit.event_intake").fetchone()[0] > 100
    ran = db.execute("SELECT who, what FROM public.who_ran").fetchall()
    assert ran == [], ran
    # Sealing by the maintainer with the same hostile path.
    m = connect("app_maintainer")
    m.execute("SET search_path = evil, pg_catalog")
    seal(m)
    ran = db.execute("SELECT who, what FROM public.who_ran").fetchall()
    assert ran == [], ran
    seal_all(db)
    assert_all_sealed_distinct_and_verified(db, at_least=150)
    # Ids are close to the clock.
    far = db.execute("""SELECT count(*) FROM audit.event_log
                         WHERE abs(('x' || left(replace(id::text, '-', ''), 12))::bit(48)::bigint
                                   - floor(extract(epoch FROM occurred_at) * 1000)) > 5000""").fetchone()
    assert far == (0,)
