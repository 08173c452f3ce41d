-- Write rate limits (docs/rate-limits.md): a sliding-window counter per key, sharded so
-- that concurrent writers do not queue behind each other's open transactions.

-- Admit one write for `key` (at most `per_window` per sliding window of `window_seconds`), or
-- return how many milliseconds to wait. Runs in the writer's transaction: a rolled-back write
-- gives its slot back. Internal: runs under the pinned search_path of its callers, and under their
-- enable_seqscan = off, which its statements are planned with: autovacuum soon analyzes
-- rate_counters, and holding a few keys it is a page or two, which the planner then prefers reading
-- whole to its primary key; every limited write read every counter row, a third more instructions
-- (docs/benchmarks.md). The callers set it, not this function: a SET clause here costs a limited
-- write 14,000 instructions (3%), one on a caller that already pins search_path next to nothing.
-- test_every_caller_of_rate_take_plans_it_with_sequential_scans_off keeps every caller so.
CREATE OR REPLACE FUNCTION @schema@._rate_take(key text, per_window integer, window_seconds integer)
RETURNS bigint
LANGUAGE plpgsql
AS $$
#variable_conflict use_variable
DECLARE
    -- One shard per 10 of the limit: a shard's sliding estimate is only as fine as its share, and a
    -- share of 1 would refuse until its whole previous window has slid out.
    shards integer := least(16, greatest(1, per_window / 10));
    t double precision := date_part('epoch', clock_timestamp()) / window_seconds;  -- in windows
    this_window bigint := floor(t);
    start integer := pg_backend_pid() % shards;
    c record;  -- the shard's counter row: its address and counts
    cur integer;
    prev integer;
    cap integer;
    -- No initial values below: each would be an expression that PL/pgSQL sets up again in every
    -- transaction, and these are first needed when a shard is full or busy, the rare case.
    wait double precision;  -- in windows; NULL: no full shard yet
    busy boolean;  -- NULL: no busy shard yet
    created boolean;
    saved_lock_timeout text;
    shard integer;
BEGIN
    -- A key is an index entry, kept until its windows pass: bounded, but with room for the longest
    -- tenant, actor type and id the log records (256, 64 and 256 characters of up to 4 bytes, quoted:
    -- 2,336 bytes with the rest of the key), lest a user the log accepts be refused every write.
    IF octet_length(key) > 2400 THEN
        RAISE EXCEPTION 'rate limit key is % bytes, more than 2400', octet_length(key) USING ERRCODE = 'PA005';
    END IF;
    -- A shard is owned, until commit, by the transaction holding its counter row's lock, and only
    -- the owner writes the row: under the lock the count is exact. Only roles that may update
    -- rate_counters can lock its rows (an advisory lock's key, by contrast, anyone may take and
    -- hold). A writer does not queue: it tries the shards, starting from one chosen by its backend,
    -- passes over rows that other open transactions hold (SKIP LOCKED), and takes the first with
    -- room. Each admits its share of the limit, so together they admit no more.
    FOR k IN 0..shards - 1 LOOP
        shard := (start + k) % shards;
        cap := per_window / shards + CASE WHEN shard < per_window % shards THEN 1 ELSE 0 END;
        SELECT r.ctid, r.window_no, r.count, r.prev_count INTO c
          FROM @schema@.rate_counters r WHERE r.key = key AND r.shard = shard FOR UPDATE SKIP LOCKED;
        IF NOT FOUND THEN
            IF EXISTS (SELECT 1 FROM @schema@.rate_counters r WHERE r.key = key AND r.shard = shard) THEN
                busy := true;  -- another open transaction owns it
                CONTINUE;
            END IF;
            -- A new shard: its row, once inserted, is locked like any other. The one wait a writer may
            -- meet is here, when another open transaction is creating the same row: a millisecond at
            -- most, then the shard counts as owned by that transaction.
            saved_lock_timeout := current_setting('lock_timeout');
            BEGIN
                PERFORM set_config('lock_timeout', '1ms', true);
                INSERT INTO @schema@.rate_counters (key, shard, window_no, count, prev_count, window_seconds)
                VALUES (key, shard, this_window, 1, 0, window_seconds)
                ON CONFLICT DO NOTHING;
                created := FOUND;
                PERFORM set_config('lock_timeout', saved_lock_timeout, true);
            EXCEPTION WHEN lock_not_available THEN  -- the setting is rolled back with the block
                busy := true;
                CONTINUE;
            END;
            IF created THEN
                RETURN NULL;
            END IF;
            SELECT r.ctid, r.window_no, r.count, r.prev_count INTO c
              FROM @schema@.rate_counters r WHERE r.key = key AND r.shard = shard FOR UPDATE SKIP LOCKED;
            IF NOT FOUND THEN
                busy := true;  -- created meanwhile, and owned, by another open transaction
                CONTINUE;
            END IF;
        END IF;
        -- The clock was read before the row's lock was had: a writer that held it meanwhile may have
        -- rolled it into a later window. Counted in that window from its start (the previous one
        -- weighs whole), never wound back, which would drop that writer's count.
        IF c.window_no > this_window THEN
            this_window := c.window_no;
            t := this_window;
        END IF;
        -- Roll the window and count, if there is room.
        cur := CASE WHEN c.window_no = this_window THEN c.count ELSE 0 END;
        prev := CASE WHEN c.window_no = this_window THEN c.prev_count WHEN c.window_no = this_window - 1 THEN c.count
                     ELSE 0 END;
        IF prev * (1 - (t - this_window)) + cur + 1 <= cap THEN  -- t - this_window: how far into it, 0..1
            -- By its address: the row is locked, so that version is the one to update.
            UPDATE @schema@.rate_counters r SET window_no = this_window, count = cur + 1, prev_count = prev,
                                                 window_seconds = _rate_take.window_seconds
             WHERE r.ctid = c.ctid;
            RETURN NULL;
        END IF;
        -- Full: how long until it would admit one more, if nobody else wrote meanwhile.
        wait := least(coalesce(wait, 'infinity'), CASE WHEN cur + 1 <= cap AND prev > 0
                                 THEN 1 - (t - this_window) - (cap - 1 - cur)::double precision / prev
                                 ELSE 1 - (t - this_window) + greatest(0, 1 - (cap - 1)::double precision / greatest(cur, 1)) END);
    END LOOP;
    -- Full, or the shards with room are held by open transactions (which may yet roll back):
    -- refuse rather than queue; in the latter case try again soon.
    RETURN greatest(1, ceil(CASE WHEN coalesce(busy, false) THEN least(wait * window_seconds * 1000, 100)
                                 ELSE wait * window_seconds * 1000 END))::bigint;
END
$$;
COMMENT ON FUNCTION @schema@._rate_take(text, integer, integer) IS
    'Takes one slot of a sharded sliding-window limit; NULL when admitted, else the retry-after in ms.';

-- Who is limited: everyone but members of the maintainer role. The bypass setting is for the
-- maintainer's batch jobs; anyone else who sets it is refused, so that a misconfiguration shows.
-- SQL, so that the limit trigger inlines it (a PL/pgSQL call is set up again in each transaction);
-- the refusal is the rare case.
CREATE OR REPLACE FUNCTION @schema@._rate_bypass_refused()
RETURNS boolean
LANGUAGE plpgsql
STABLE  -- raises only; STABLE so that _rate_exempt, which calls it, is inlined
AS $$
BEGIN
    RAISE EXCEPTION 'only the maintainer role may bypass rate limits (pgaudit_py.rate_limit_bypass)'
        USING ERRCODE = 'PA010';
END
$$;
COMMENT ON FUNCTION @schema@._rate_bypass_refused() IS 'Raises PA010: the bypass setting set by a role that may not use it.';

CREATE OR REPLACE FUNCTION @schema@._rate_exempt()
RETURNS boolean
LANGUAGE sql
STABLE
AS $$
    SELECT CASE WHEN pg_catalog.pg_has_role(@schema@._db_role(), '@schema@_maintainer', 'MEMBER') THEN true
                WHEN coalesce(@schema@._context('rate_limit_bypass'), 'off') NOT IN ('off', 'false')
                     THEN @schema@._rate_bypass_refused()
                ELSE false END
$$;
COMMENT ON FUNCTION @schema@._rate_exempt() IS 'True for the maintainer role; refuses the bypass setting to others.';

CREATE OR REPLACE FUNCTION @schema@._rate_refuse(what text, per_window integer, window_seconds integer, wait_ms bigint)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION 'rate limit exceeded for %: % writes per % s', what, per_window, window_seconds
        USING ERRCODE = 'PA009', DETAIL = format('retry_after_ms=%s', wait_ms),
              HINT = 'Retry after the given delay (HTTP: 429 with Retry-After).';
END
$$;
COMMENT ON FUNCTION @schema@._rate_refuse(text, integer, integer, bigint) IS 'Raises PA009 with the retry-after.';

-- The table whose limits apply to a table: its own, or its nearest limited ancestor's (a statement
-- naming a partition fires the partition's triggers only, so each carries the trigger too).
CREATE OR REPLACE FUNCTION @schema@._rate_limit_of(target oid)
RETURNS @schema@.rate_limits
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.* FROM @schema@._lineage(target) up
      JOIN @schema@.rate_limits r ON r.scope = 'table' AND r.target = up.relid::text
     ORDER BY up.depth LIMIT 1
$$;
COMMENT ON FUNCTION @schema@._rate_limit_of(oid) IS 'The limits that apply to a table: its own, or its nearest ancestor''s.';

-- One write is one statement: a bulk statement is one request from the application's point of
-- view, and a row count would make every bulk load fail. Sequential scans off: see _rate_take.
CREATE OR REPLACE FUNCTION @schema@._rate_limit_trigger()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
DECLARE
    l @schema@.rate_limits;
    actor text := @schema@._context('actor_id');
    actor_type text := @schema@._context('actor_type');
    tenant text := @schema@._context('tenant_id');
    wait_ms bigint;
BEGIN
    -- The table's own limit, else (a partition) its limited ancestor's: the common case pays no walk.
    SELECT * INTO l FROM @schema@.rate_limits r WHERE r.scope = 'table' AND r.target = TG_RELID::text;
    IF NOT FOUND THEN
        l := @schema@._rate_limit_of(TG_RELID);
    END IF;
    IF l.target IS NULL OR @schema@._rate_exempt() THEN
        RETURN NULL;
    END IF;
    IF l.per_user IS NOT NULL THEN
        -- Who is counted: the user the log records (_record, the capture), within the tenant: the actor
        -- type and id the session names, the type 'user' unless named, and with neither, the database
        -- role as type 'db_role' (an end user whose chosen id is the application's role name is not
        -- the application's own jobs). The type 'db_role' comes with the role the database vouches
        -- for, which the log records beside it: another role claiming it spends no allowance of the
        -- role it names. As an array's text, which quotes what would make two users one ('org' with
        -- 'acme:alice', 'org:acme' with 'alice'); a format() of the parts with their lengths cost a
        -- limited write 15,000 instructions more (each node of a PL/pgSQL expression is set up again
        -- in every transaction).
        wait_ms := @schema@._rate_take(format('table:%s:user:%s', l.target, ARRAY[tenant,
                                                  coalesce(actor_type, CASE WHEN actor IS NULL THEN 'db_role' ELSE 'user' END),
                                                  coalesce(actor, CASE WHEN actor_type IS NULL THEN @schema@._db_role() END),
                                                  CASE WHEN coalesce(actor_type, CASE WHEN actor IS NULL THEN 'db_role' END) = 'db_role'
                                                       THEN @schema@._db_role() END]::text),
                                       l.per_user, l.window_seconds);
        IF wait_ms IS NOT NULL THEN
            PERFORM @schema@._rate_refuse(format('user %s on %s',
                                                 CASE WHEN actor IS NOT NULL THEN actor
                                                      WHEN actor_type IS NULL THEN @schema@._db_role()
                                                      ELSE format('of type %s with no id', actor_type) END,
                                                 l.target::oid::regclass),
                                          l.per_user, l.window_seconds, wait_ms);
        END IF;
    END IF;
    IF l.per_tenant IS NOT NULL AND tenant IS NOT NULL THEN
        wait_ms := @schema@._rate_take(format('table:%s:tenant:%s', l.target, tenant), l.per_tenant, l.window_seconds);
        IF wait_ms IS NOT NULL THEN
            PERFORM @schema@._rate_refuse(format('tenant %s on %s', tenant, l.target::oid::regclass), l.per_tenant,
                                          l.window_seconds, wait_ms);
        END IF;
    END IF;
    RETURN NULL;
END
$$;
COMMENT ON FUNCTION @schema@._rate_limit_trigger() IS 'BEFORE statement trigger: one write per statement.';

CREATE OR REPLACE FUNCTION @schema@._check_limit(name text, value integer)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NOT NULL AND (value < 1 OR value > 10000000) THEN
        RAISE EXCEPTION '% must be between 1 and 10000000, got %', name, value USING ERRCODE = 'PA005';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._check_limit(text, integer) IS 'Raises PA005 for a limit out of range.';

DROP FUNCTION IF EXISTS @schema@._put_rate_limit(@schema@.rate_limits);  -- before migration 0027, without the proof's token
CREATE OR REPLACE FUNCTION @schema@._put_rate_limit(entry @schema@.rate_limits, proof uuid DEFAULT NULL)
RETURNS @schema@.rate_limits
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result @schema@.rate_limits;
    who text := @schema@._db_role();
BEGIN
    IF entry.scope = 'table' THEN
        who := @schema@._check_owner(entry.target::oid, proof);
    END IF;
    PERFORM @schema@._check_limit('per_user_per_minute', entry.per_user);
    PERFORM @schema@._check_limit('per_tenant_per_minute', entry.per_tenant);
    PERFORM @schema@._check_limit('per_minute', entry.per_key);
    IF entry.scope = 'operation' AND entry.per_key IS NULL THEN
        RAISE EXCEPTION 'per_minute must be given' USING ERRCODE = 'PA005';
    END IF;
    IF entry.window_seconds IS NULL OR entry.window_seconds NOT BETWEEN 1 AND 86400 THEN
        RAISE EXCEPTION 'window_seconds must be between 1 and 86400, got %', coalesce(entry.window_seconds::text, 'NULL')
            USING ERRCODE = 'PA005';
    END IF;
    INSERT INTO @schema@.rate_limits AS r (scope, target, per_user, per_tenant, per_key, window_seconds, changed_by)
    VALUES (entry.scope, entry.target, entry.per_user, entry.per_tenant, entry.per_key, entry.window_seconds, who)
    ON CONFLICT (scope, target) DO UPDATE
        SET per_user = excluded.per_user, per_tenant = excluded.per_tenant, per_key = excluded.per_key,
            window_seconds = excluded.window_seconds, changed_at = now(), changed_by = excluded.changed_by
    RETURNING * INTO result;
    PERFORM @schema@._record('audit.rate_limit_set', NULL, NULL, NULL, result.scope, result.target,
                             to_jsonb(result) - 'changed_at', 'success', NULL, NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@._put_rate_limit(@schema@.rate_limits, uuid) IS 'Validates and stores a limit; records audit.rate_limit_set.';

CREATE OR REPLACE FUNCTION @schema@.enable_rate_limit(
    target regclass,
    per_user_per_minute integer DEFAULT 60,
    per_tenant_per_minute integer DEFAULT 600,
    window_seconds integer DEFAULT 60
)
RETURNS @schema@.rate_limits
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    entry @schema@.rate_limits;
    part oid;
BEGIN
    IF (SELECT relkind FROM pg_class WHERE oid = target) NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'cannot limit %: only tables can be limited', target USING ERRCODE = 'PA008';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = target) THEN
        RAISE EXCEPTION 'cannot limit %: it is under %, and a statement naming that table fires its triggers only',
                        target, (SELECT string_agg(i.inhparent::regclass::text, ', ') FROM pg_inherits i WHERE i.inhrelid = target)
            USING ERRCODE = 'PA008', HINT = 'Limit the table at the top of the tree: its partitions are limited with it.';
    END IF;
    entry.scope := 'table';
    entry.target := target::oid::text;
    entry.per_user := per_user_per_minute;
    entry.per_tenant := per_tenant_per_minute;
    entry.window_seconds := window_seconds;
    entry := @schema@._put_rate_limit(entry, @schema@._prove_owner(target));
    -- The table and its partitions, the deepest first: each trigger made is checked with what is below it.
    FOR part IN SELECT c FROM @schema@._capture_tables(target) c
                 ORDER BY (SELECT max(l.depth) FROM @schema@._lineage(c) l) DESC LOOP
        EXECUTE format('CREATE OR REPLACE TRIGGER @schema@_rate_limit BEFORE INSERT OR UPDATE OR DELETE ON %s'
                       ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._rate_limit_trigger()', part::regclass);
    END LOOP;
    RETURN entry;
END
$$;
COMMENT ON FUNCTION @schema@.enable_rate_limit(regclass, integer, integer, integer) IS
    'Limits writes (statements) on a table per user and per tenant (per window_seconds, default a minute); '
    'calling again changes the limits. Caller: the maintainer, owning the table.';

-- What keeps a rate-limited table, or a table under one, from being limited: its trigger missing,
-- disabled, enabled for replicas only, or not the one enable_rate_limit creates (a look-alike of the
-- same name); or a parent that is not limited, whose statements reach its rows firing the parent's
-- triggers only. Every table at or below `target` that a limit covers; NULL when nothing is wrong.
CREATE OR REPLACE FUNCTION @schema@._rate_limit_problem(target oid)
RETURNS text
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    -- Each table below `target` that a limit covers, walked once.
    WITH covered AS (
        SELECT c FROM @schema@._capture_tables(target) c
         WHERE (@schema@._rate_limit_of(c)).target IS NOT NULL
    )
    SELECT string_agg(p.problem, ', ' ORDER BY p.problem)
      FROM (SELECT format('%s: trigger @schema@_rate_limit is %s', v.c::regclass,
                          CASE WHEN g.oid IS NULL THEN 'missing'
                               WHEN g.tgenabled NOT IN ('O', 'A') THEN
                                    CASE g.tgenabled WHEN 'D' THEN 'disabled' ELSE 'enabled for replicas only' END
                               ELSE 'not the one enable_rate_limit creates' END) AS problem
              FROM covered v
              JOIN pg_class r ON r.oid = v.c AND r.relkind IN ('r', 'p')
              LEFT JOIN pg_trigger g ON g.tgrelid = v.c AND g.tgname = '@schema@_rate_limit'
             WHERE g.oid IS NULL OR g.tgenabled NOT IN ('O', 'A')
                OR g.tgfoid <> '@schema@._rate_limit_trigger()'::regprocedure
                OR g.tgtype <> 30  -- BEFORE INSERT OR UPDATE OR DELETE, FOR EACH STATEMENT
                OR g.tgqual IS NOT NULL OR g.tgattr <> ''::int2vector OR g.tgnargs <> 0
            UNION ALL
            SELECT format('%s is under %s, which is not limited: statements naming it are not counted',
                          v.c::regclass, i.inhparent::regclass)
              FROM covered v
              JOIN pg_inherits i ON i.inhrelid = v.c
             WHERE (@schema@._rate_limit_of(i.inhparent)).target IS NULL) p
$$;
COMMENT ON FUNCTION @schema@._rate_limit_problem(oid) IS
    'What keeps a limited table (or a table under one) at or below this one from being limited; NULL when nothing.';

CREATE OR REPLACE FUNCTION @schema@.disable_rate_limit(target regclass)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    part oid;
    had boolean;
BEGIN
    had := @schema@._drop_rate_limit('table', target::oid::text, @schema@._prove_owner(target));  -- first: the triggers of a limit are kept
    FOR part IN SELECT @schema@._capture_tables(target) LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS @schema@_rate_limit ON %s', part::regclass);
    END LOOP;
    RETURN had;
END
$$;
COMMENT ON FUNCTION @schema@.disable_rate_limit(regclass) IS 'Removes a table''s limits; false if it had none.';

DROP FUNCTION IF EXISTS @schema@._drop_rate_limit(text, text);  -- before migration 0027, without the proof's token
CREATE OR REPLACE FUNCTION @schema@._drop_rate_limit(scope text, target text, proof uuid DEFAULT NULL)
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
BEGIN
    IF scope = 'table' THEN
        PERFORM @schema@._check_owner(target::oid, proof);
    END IF;
    DELETE FROM @schema@.rate_limits r WHERE r.scope = scope AND r.target = target;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM @schema@._record('audit.rate_limit_removed', NULL, NULL, NULL, scope, target, '{}', 'success', NULL, NULL);
    RETURN true;
END
$$;
COMMENT ON FUNCTION @schema@._drop_rate_limit(text, text, uuid) IS 'Removes a limit; records audit.rate_limit_removed.';

CREATE OR REPLACE FUNCTION @schema@.set_operation_limit(operation text, per_minute integer, window_seconds integer DEFAULT 60)
RETURNS @schema@.rate_limits
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    entry @schema@.rate_limits;
BEGIN
    PERFORM @schema@._check_kind(operation, 'operation name');
    entry.scope := 'operation';
    entry.target := operation;
    entry.per_key := per_minute;
    entry.window_seconds := window_seconds;
    RETURN @schema@._put_rate_limit(entry);
END
$$;
COMMENT ON FUNCTION @schema@.set_operation_limit(text, integer, integer) IS
    'Overrides, at run time, the limit the application passes to rate_limit() for an operation.';

-- Called by application code for a named operation (a login endpoint per client address, say).
-- Sequential scans off: see _rate_take.
CREATE OR REPLACE FUNCTION @schema@.rate_limit(operation text, key text, per_minute integer DEFAULT 60,
                                              window_seconds integer DEFAULT 60)
RETURNS void
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
AS $$
#variable_conflict use_variable
DECLARE
    l @schema@.rate_limits;
    limit_ integer := per_minute;
    window_ integer := window_seconds;
    wait_ms bigint;
BEGIN
    PERFORM @schema@._check_kind(operation, 'operation name');
    IF key IS NULL OR char_length(key) > 256 THEN
        RAISE EXCEPTION 'key must be given, at most 256 characters' USING ERRCODE = 'PA005';
    END IF;
    SELECT * INTO l FROM @schema@.rate_limits r WHERE r.scope = 'operation' AND r.target = operation;
    IF FOUND THEN
        limit_ := l.per_key;
        window_ := l.window_seconds;
    END IF;
    PERFORM @schema@._check_limit('per_minute', limit_);
    IF limit_ IS NULL OR window_ IS NULL OR window_ NOT BETWEEN 1 AND 86400 THEN
        RAISE EXCEPTION 'per_minute and window_seconds (1 to 86400) must be given' USING ERRCODE = 'PA005';
    END IF;
    IF @schema@._rate_exempt() THEN
        RETURN;
    END IF;
    -- The window in the key: one operation limited per minute and per hour by two calls counts twice,
    -- where one counter row would restart its window at each call of the other length.
    wait_ms := @schema@._rate_take(format('operation:%s:%s:%s', operation, window_, key), limit_, window_);
    IF wait_ms IS NOT NULL THEN
        PERFORM @schema@._rate_refuse(format('%s by %s', operation, key), limit_, window_, wait_ms);
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@.rate_limit(text, text, integer, integer) IS
    'Counts one call of a named operation for a key; raises PA009 (DETAIL retry_after_ms=N) past the limit.';

-- Counter rows whose windows have passed count for nothing (a row two windows old reads as zero):
-- deleted, a batch at a time, skipping rows a writer holds. The worker runs it every minute.
CREATE OR REPLACE FUNCTION @schema@.purge_rate_counters(batch_size integer DEFAULT 10000)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    DELETE FROM @schema@.rate_counters r
     WHERE r.ctid = ANY (ARRAY(
         SELECT c.ctid FROM @schema@.rate_counters c
          WHERE c.window_seconds IS NOT NULL
            AND c.window_no < floor(date_part('epoch', clock_timestamp()) / c.window_seconds) - 1
          LIMIT greatest(1, least(batch_size, 100000))
            FOR UPDATE SKIP LOCKED));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @schema@.purge_rate_counters(integer) IS
    'Deletes up to batch_size rate-limit counter rows whose windows have passed; returns how many.';
