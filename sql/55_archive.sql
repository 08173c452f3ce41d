-- Cold archival, the database's side: which blocks go next, what was archived where, and the one
-- way archived events leave the log. Uploading, manifests and signatures are Python's
-- (pgaudit_py/archive.py).

CREATE OR REPLACE FUNCTION @schema@.set_archive_settings(hot_retention interval, max_batch_events integer,
                                                         run_hour_utc integer)
RETURNS @schema@.archive_settings
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    result @schema@.archive_settings;
BEGIN
    PERFORM @schema@._refuse_two_phase();  -- its locks would outlive a prepared transaction
    IF NOT @schema@._is_age(hot_retention) THEN
        RAISE EXCEPTION 'hot_retention must be a positive interval'
            USING ERRCODE = 'PA005', HINT = 'No part of it may be negative, and it is at most 36600 days (100 years).';
    ELSIF max_batch_events IS NULL OR max_batch_events NOT BETWEEN 1 AND 1000000 THEN
        RAISE EXCEPTION 'max_batch_events must be between 1 and 1000000' USING ERRCODE = 'PA005';
    ELSIF run_hour_utc NOT BETWEEN 0 AND 23 THEN
        RAISE EXCEPTION 'run_hour_utc must be between 0 and 23, or NULL for never' USING ERRCODE = 'PA005';
    END IF;
    UPDATE @schema@.archive_settings s
       SET hot_retention = set_archive_settings.hot_retention, max_batch_events = set_archive_settings.max_batch_events,
           run_hour_utc = set_archive_settings.run_hour_utc
    RETURNING * INTO result;
    PERFORM @schema@._record('audit.archive_settings_changed', NULL, NULL, NULL, 'archive', NULL,
                             jsonb_build_object('hot_retention', result.hot_retention::text,
                                                'max_batch_events', result.max_batch_events,
                                                'run_hour_utc', result.run_hour_utc), 'success', NULL, NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.set_archive_settings(interval, integer, integer) IS
    'Sets the archival defaults every runner uses: hot retention, events per batch, the worker''s UTC hour.';

-- The batch to work on: an unfinished one first (a crash left it planned or recorded), else a
-- new one of whole blocks older than the cutoff, planned here so that its range never changes.
CREATE OR REPLACE FUNCTION @schema@.next_archive_batch(older_than interval DEFAULT NULL)
RETURNS @schema@.archive_batches
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    settings @schema@.archive_settings;
    result @schema@.archive_batches;
    first_no bigint;
    last_no bigint;
    first_seq bigint;
    last_seq bigint;
BEGIN
    PERFORM @schema@._refuse_two_phase();  -- its locks would outlive a prepared transaction
    SELECT * INTO settings FROM @schema@.archive_settings FOR UPDATE;  -- one planner at a time
    LOCK TABLE @schema@.archive_batches IN SHARE ROW EXCLUSIVE MODE;  -- and no prune meanwhile
    SELECT * INTO result FROM @schema@.archive_batches x WHERE x.state <> 'deleted' ORDER BY x.first_block LIMIT 1;
    IF FOUND THEN
        RETURN result;
    END IF;
    IF older_than IS NOT NULL AND NOT @schema@._is_age(older_than) THEN
        RAISE EXCEPTION 'older_than must be a positive interval'
            USING ERRCODE = 'PA005', HINT = 'No part of it may be negative, and it is at most 36600 days (100 years).';
    ELSIF older_than IS NULL AND NOT @schema@._is_age(settings.hot_retention) THEN
        -- Stored before set_archive_settings asked for an age (or by hand): checked where it is used.
        RAISE EXCEPTION 'the hot_retention stored in archive_settings is not an age: nothing is planned'
            USING ERRCODE = 'PA005', HINT = 'Set it again with set_archive_settings (pgaudit archive settings '
                                            '--hot-retention).';
    END IF;
    SELECT min(b.block_no), max(b.block_no), min(b.first_seq), max(b.last_seq)
      INTO first_no, last_no, first_seq, last_seq
      FROM @schema@._block_batches(now() - coalesce(older_than, settings.hot_retention), settings.max_batch_events, false) b
     WHERE b.batch = 1;
    IF first_no IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO @schema@.archive_batches (batch_id, first_block, last_block, first_seq, last_seq)
    VALUES (format('blocks-%s-%s', lpad(first_no::text, 12, '0'), lpad(last_no::text, 12, '0')),
            first_no, last_no, first_seq, last_seq)
    RETURNING * INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.next_archive_batch(interval) IS
    'The archive batch to work on: an unfinished one, else a newly planned one of whole sealed blocks '
    'older than older_than (default: the hot retention); NULL when nothing is due.';

-- The canonical lines the chain hashed, for the archive's data object.
CREATE OR REPLACE FUNCTION @schema@.archive_lines(first_seq bigint, last_seq bigint)
RETURNS TABLE (seq bigint, line text)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT l.seq, @schema@._canonical_event(l, b.canonical_version)
      FROM @schema@.event_log l JOIN @schema@.blocks b ON b.block_no = l.block_no
     WHERE l.seq BETWEEN $1 AND $2 ORDER BY l.seq
$$;
COMMENT ON FUNCTION @schema@.archive_lines(bigint, bigint) IS
    'Canonical lines (docs/canonical-form.md) of the sealed events in a seq range, in seq order.';

CREATE OR REPLACE FUNCTION @schema@.record_archive_batch(
    batch_id text, target text, data_bytes bigint, gz_bytes bigint, data_sha256 bytea, gz_sha256 bytea,
    manifest_sha256 bytea, prev_manifest_sha256 bytea)
RETURNS @schema@.archive_batches
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    b @schema@.archive_batches;
BEGIN
    PERFORM @schema@._refuse_two_phase();  -- its locks would outlive a prepared transaction
    SELECT * INTO b FROM @schema@.archive_batches x WHERE x.batch_id = batch_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no archive batch %', batch_id USING ERRCODE = 'PA005';
    ELSIF b.state <> 'planned' THEN
        IF b.manifest_sha256 = manifest_sha256 THEN
            RETURN b;  -- recorded already (a re-run)
        END IF;
        RAISE EXCEPTION 'archive batch % is recorded with another manifest', batch_id USING ERRCODE = 'PA005';
    ELSIF manifest_sha256 IS NULL OR data_sha256 IS NULL OR gz_sha256 IS NULL THEN
        RAISE EXCEPTION 'a recorded batch needs its hashes' USING ERRCODE = 'PA005';
    END IF;
    UPDATE @schema@.archive_batches x
       SET target = target, data_bytes = data_bytes, gz_bytes = gz_bytes, data_sha256 = data_sha256, gz_sha256 = gz_sha256,
           manifest_sha256 = manifest_sha256, prev_manifest_sha256 = prev_manifest_sha256,
           archived_at = now(), archived_by = @schema@._db_role()
     WHERE x.batch_id = batch_id
    RETURNING * INTO b;
    PERFORM @schema@._record('audit.archived', NULL, NULL, NULL, 'archive_batch', batch_id,
                             jsonb_build_object('target', target, 'first_block', b.first_block,
                                                'last_block', b.last_block, 'first_seq', b.first_seq,
                                                'last_seq', b.last_seq, 'events', b.event_count,
                                                'manifest_sha256', encode(manifest_sha256, 'hex')),
                             'success', NULL, NULL);
    RETURN b;
END
$$;
COMMENT ON FUNCTION @schema@.record_archive_batch(text, text, bigint, bigint, bytea, bytea, bytea, bytea) IS
    'Records that a planned batch''s data and manifest are stored and confirmed (records audit.archived).';

-- The only way archived events leave the log: the events of one recorded batch, nothing else.
SET ROLE @schema@_pruner;
CREATE OR REPLACE FUNCTION @schema@.delete_archived(batch_id text)
RETURNS bigint
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    b @schema@.archive_batches;
    last_b @schema@.blocks;
    deleted bigint;
BEGIN
    PERFORM @schema@._refuse_two_phase();  -- its locks would outlive a prepared transaction
    SELECT * INTO b FROM @schema@.archive_batches x WHERE x.batch_id = batch_id FOR UPDATE;
    IF NOT FOUND OR b.state = 'planned' THEN
        RAISE EXCEPTION 'refusing to delete events that no recorded archive batch covers (batch %: %)',
                        coalesce(batch_id, 'NULL'), coalesce(b.state, 'unknown')
            USING ERRCODE = 'PA014', HINT = 'Only the events of a recorded batch can be deleted.';
    ELSIF b.state = 'deleted' THEN
        RETURN 0;
    END IF;
    SELECT * INTO last_b FROM @schema@.blocks x WHERE x.block_no = b.last_block;
    IF last_b.last_seq IS DISTINCT FROM b.last_seq
       OR EXISTS (SELECT 1 FROM @schema@.blocks x WHERE x.block_no = b.first_block AND x.first_seq <> b.first_seq) THEN
        RAISE EXCEPTION 'archive batch % does not match the blocks it names', batch_id USING ERRCODE = 'PA014';
    END IF;
    deleted := @schema@._remove_blocks(b.first_seq, last_b, b.planned_at);
    UPDATE @schema@.archive_batches x SET deleted_at = now() WHERE x.batch_id = batch_id;
    PERFORM @schema@._record('audit.archive_deleted', NULL, NULL, NULL, 'archive_batch', batch_id,
                             jsonb_build_object('deleted', deleted, 'first_seq', b.first_seq, 'last_seq', b.last_seq,
                                                'manifest_sha256', encode(b.manifest_sha256, 'hex')),
                             'success', NULL, NULL);
    RETURN deleted;
END
$$;
COMMENT ON FUNCTION @schema@.delete_archived(text) IS
    'Deletes the events of one recorded archive batch from the log (refuses any other, PA014), '
    'records the prune point and audit.archive_deleted.';
REVOKE ALL ON FUNCTION @schema@.delete_archived(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@.delete_archived(text) TO @schema@_maintainer;
SET ROLE @schema@_owner;

CREATE OR REPLACE FUNCTION @schema@.restore_archive_batch(batch_id text, events jsonb[])
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    b @schema@.archive_batches;
    n integer;
    block_nos bigint[];
    first_seqs bigint[];
BEGIN
    PERFORM @schema@._refuse_two_phase();  -- its locks would outlive a prepared transaction
    -- The batch's row locked before its restored events (drop_restored_batch, the same: one lock
    -- order; a drop and a reload in one transaction beside a restore deadlocked): a second restore
    -- of the batch waits for the first to end, then replaces its rows. A lock, not a write of the
    -- row, which would hold up the archiver's planning and pruning (they lock the table) for as long
    -- as a maintainer keeps a restore's transaction open.
    SELECT * INTO b FROM @schema@.archive_batches x WHERE x.batch_id = batch_id FOR UPDATE;
    IF NOT FOUND OR b.state = 'planned' THEN
        RAISE EXCEPTION 'no recorded archive batch %', coalesce(batch_id, 'NULL') USING ERRCODE = 'PA005';
    ELSIF cardinality(events) IS DISTINCT FROM b.event_count THEN
        RAISE EXCEPTION 'archive batch % holds % events, not %', batch_id, b.event_count, cardinality(events)
            USING ERRCODE = 'PA005';
    END IF;
    -- Whatever is given, the refusal is the restore's own (PA005), never a cast or a constraint of
    -- restored_events met on the way. First, each event a seq of its own: a whole number within the
    -- batch's (an event outside the batch would find no block below). Only numbers are counted, and
    -- any other seq is refused by the first test.
    IF (SELECT bool_or(CASE WHEN jsonb_typeof(e -> 'seq') = 'number'
                            THEN (e -> 'seq')::numeric NOT BETWEEN b.first_seq AND b.last_seq OR (e -> 'seq')::numeric % 1 <> 0
                            ELSE true END)
               OR count(DISTINCT CASE WHEN jsonb_typeof(e -> 'seq') = 'number' THEN (e -> 'seq')::numeric END)
                  < cardinality(events)
          FROM unnest(events) AS e) THEN
        RAISE EXCEPTION 'the events given are not those of archive batch %: each must have a seq of its own from % to %',
                        batch_id, b.first_seq, b.last_seq USING ERRCODE = 'PA005';
    END IF;
    DELETE FROM @schema@.restored_events r WHERE r.batch_id = batch_id;
    -- Each event's block found among the batch's own, read once, by a binary search of their first
    -- seqs: blocks has no index on its seqs, and a scan of every block ever sealed for each event took
    -- seconds a batch; a scan of the batch's for each, as many events times as many blocks (a batch
    -- of small blocks, where the worker sealed a few events a round).
    SELECT array_agg(x.block_no ORDER BY x.block_no), array_agg(x.first_seq ORDER BY x.block_no)
      INTO block_nos, first_seqs
      FROM @schema@.blocks x WHERE x.block_no BETWEEN b.first_block AND b.last_block;
    BEGIN
        INSERT INTO @schema@.restored_events (batch_id, seq, block_no, tenant_id, kind, occurred_at, event)
        SELECT batch_id, (e -> 'seq')::bigint, block_nos[width_bucket((e -> 'seq')::bigint, first_seqs)],
               e ->> 'tenant_id', e ->> 'kind', (e ->> 'occurred_at')::timestamptz, e
          FROM unnest(events) AS e;
    EXCEPTION WHEN unique_violation THEN
        -- The seqs given are distinct, and every row of the batch this snapshot sees is deleted above:
        -- a concurrent restore's rows, committed after this transaction's snapshot was taken
        -- (REPEATABLE READ or above). Retryable, not forged.
        RAISE EXCEPTION 'archive batch % was restored by another transaction meanwhile; try again', batch_id
            USING ERRCODE = 'serialization_failure';
    WHEN data_exception OR integrity_constraint_violation THEN
        -- A kind missing, a time that is none: lines the sealer never wrote (its own hash no longer
        -- matters).
        RAISE EXCEPTION 'the events given are not those of archive batch %: %', batch_id, SQLERRM USING ERRCODE = 'PA005';
    END;
    GET DIAGNOSTICS n = ROW_COUNT;
    -- What readers will take for archived history must be it: each block's lines hash to the
    -- events_hash the chain holds (a line is the jsonb text of its event: docs/canonical-form.md).
    -- (The batch's events read once, grouped by block.)
    IF EXISTS (SELECT 1 FROM @schema@.blocks x
                 LEFT JOIN (SELECT r.block_no,
                                   sha256(string_agg(sha256(convert_to(r.event::text, 'UTF8')), ''::bytea ORDER BY r.seq)) AS hash
                              FROM @schema@.restored_events r WHERE r.batch_id = batch_id GROUP BY r.block_no) g
                        ON g.block_no = x.block_no
                WHERE x.block_no BETWEEN b.first_block AND b.last_block AND x.events_hash IS DISTINCT FROM g.hash) THEN
        RAISE EXCEPTION 'the events given are not those of archive batch %: they do not hash to its blocks', batch_id
            USING ERRCODE = 'PA005';
    END IF;
    PERFORM @schema@._record('audit.archive_restored', NULL, NULL, NULL, 'archive_batch', batch_id,
                             jsonb_build_object('events', n), 'success', NULL, NULL);
    RETURN n;
END
$$;
COMMENT ON FUNCTION @schema@.restore_archive_batch(text, jsonb[]) IS
    'Loads the canonical lines of an archived batch into restored_events, beside the live log, once they hash to '
    'the chain''s blocks (PA005 otherwise).';

CREATE OR REPLACE FUNCTION @schema@.drop_restored_batch(batch_id text)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n integer;
BEGIN
    PERFORM @schema@._refuse_two_phase();  -- its locks would outlive a prepared transaction
    -- The batch's row locked first, as restore_archive_batch does: one lock order, and a drop beside
    -- a reload waits for it, then (at READ COMMITTED) drops what it loaded.
    PERFORM FROM @schema@.archive_batches x WHERE x.batch_id = drop_restored_batch.batch_id FOR UPDATE;
    DELETE FROM @schema@.restored_events r WHERE r.batch_id = drop_restored_batch.batch_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    IF n > 0 THEN  -- as loading it was (audit.archive_restored)
        PERFORM @schema@._record('audit.archive_restore_dropped', NULL, NULL, NULL, 'archive_batch',
                                 drop_restored_batch.batch_id, jsonb_build_object('events', n), 'success', NULL, NULL);
    END IF;
    RETURN n;
END
$$;
COMMENT ON FUNCTION @schema@.drop_restored_batch(text) IS
    'Removes a restored batch from restored_events (recorded as audit.archive_restore_dropped).';

-- The worker archives at most once a UTC day, whichever worker gets here first.
CREATE OR REPLACE FUNCTION @schema@.claim_daily_archive_run()
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM @schema@._refuse_two_phase();  -- its locks would outlive a prepared transaction
    UPDATE @schema@.archive_settings
       SET last_run_on = (now() AT TIME ZONE 'UTC')::date
     WHERE run_hour_utc IS NOT NULL
       AND extract(hour FROM now() AT TIME ZONE 'UTC') >= run_hour_utc
       AND last_run_on IS DISTINCT FROM (now() AT TIME ZONE 'UTC')::date;
    RETURN FOUND;
END
$$;
COMMENT ON FUNCTION @schema@.claim_daily_archive_run() IS
    'True once per UTC day, at or after the configured hour: the caller archives.';

-- One archiver at a time (archive_claim, migrations/0008_archive_claim.sql). The claim is a row that
-- only the owner role writes, so no other role can hold it (any role that may connect can hold an
-- advisory lock's key). It is free again once the backend that made it is gone: that backend holds
-- its beacon, a session lock on a key chosen at claim time, until it releases the claim or ends. The
-- backend's pid alone would not do (a new backend may get the same pid), and its backend_start is
-- hidden from these functions (pg_stat_activity shows it only to roles with the backend's rights).
CREATE OR REPLACE FUNCTION @schema@._archiver_alive(claim @schema@.archive_claim)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    -- pg_stat_activity is read once per transaction and kept; a caller's earlier read would be stale.
    SELECT pg_stat_clear_snapshot();
    -- Anyone may lock a key, so the beacon counts only in the hands of the backend (pid and role)
    -- that the claim names.
    SELECT EXISTS (
        SELECT 1 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.pid = claim.pid AND a.usename = claim.claimed_by
           AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
           AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
           AND ((l.classid::bigint << 32) | l.objid::bigint) = claim.beacon)
$$;
COMMENT ON FUNCTION @schema@._archiver_alive(@schema@.archive_claim) IS
    'True while the backend that made an archive claim lives (it holds the claim''s beacon).';

CREATE OR REPLACE FUNCTION @schema@.claim_archiver()
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claim @schema@.archive_claim;
    drawn bigint;
BEGIN
    PERFORM @schema@._refuse_two_phase();  -- its locks would outlive a prepared transaction
    -- Never waits: a row locked by another claim or release means another archiver.
    SELECT * INTO claim FROM @schema@.archive_claim c FOR UPDATE SKIP LOCKED;
    IF NOT FOUND OR (claim.pid IS NOT NULL AND @schema@._archiver_alive(claim)) THEN
        RETURN false;
    END IF;
    -- A key nobody holds: someone may hold the one drawn (whoever saw an earlier beacon, say).
    LOOP
        drawn := (random() * 9e18)::bigint;
        EXIT WHEN pg_try_advisory_lock(drawn);
    END LOOP;
    UPDATE @schema@.archive_claim c
       SET pid = pg_backend_pid(), claimed_by = session_user, beacon = drawn, claimed_at = now();
    RETURN true;
END
$$;
COMMENT ON FUNCTION @schema@.claim_archiver() IS
    'Claims the archive run for this backend: true unless another live backend holds the claim (a claim '
    'whose backend is gone is taken over). Caller: the maintainer, from an autocommit connection.';

CREATE OR REPLACE FUNCTION @schema@.release_archiver()
RETURNS boolean
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claim @schema@.archive_claim;
BEGIN
    PERFORM @schema@._refuse_two_phase();  -- its locks would outlive a prepared transaction
    SELECT * INTO claim FROM @schema@.archive_claim c FOR UPDATE;
    IF claim.pid IS DISTINCT FROM pg_backend_pid() THEN
        RETURN false;
    END IF;
    IF @schema@._archiver_alive(claim) THEN  -- else an earlier backend with this pid made the claim
        PERFORM pg_advisory_unlock(claim.beacon);
    END IF;
    UPDATE @schema@.archive_claim c SET pid = NULL, claimed_by = NULL, beacon = NULL, claimed_at = NULL;
    RETURN true;
END
$$;
COMMENT ON FUNCTION @schema@.release_archiver() IS
    'Releases this backend''s archive claim; false if it held none.';
