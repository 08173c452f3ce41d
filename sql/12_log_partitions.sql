-- The log's partitions (migrations/0018_log_partitions.sql): a million seqs each, made by seal()
-- ahead of need and dropped by prune once every event in one is pruned. Both are DDL on the log,
-- which only its owner may run: two owner functions, one callable by the sealer role alone, the
-- other by the pruner role alone, and neither takes anything but numbers.

CREATE OR REPLACE FUNCTION @schema@._log_partition_size()
RETURNS bigint
LANGUAGE sql
IMMUTABLE
AS $$ SELECT 1000000::bigint $$;
COMMENT ON FUNCTION @schema@._log_partition_size() IS
    'Seqs per partition of event_log: a sealing round, a block and an archive batch never cross a multiple of it.';

-- From the catalog, not from names: the bounds PostgreSQL routes by.
CREATE OR REPLACE FUNCTION @schema@._log_partitions()
RETURNS TABLE (part regclass, first_seq bigint, last_seq bigint)
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i.inhrelid::regclass, b[1]::bigint, b[2]::bigint - 1
      FROM pg_inherits i
      JOIN pg_class c ON c.oid = i.inhrelid,
           regexp_match(pg_get_expr(c.relpartbound, c.oid),  -- no backslash: standard_conforming_strings may be off
                        '^FOR VALUES FROM [(]''?(-?[0-9]+)''?[)] TO [(]''?(-?[0-9]+)''?[)]$') b
     WHERE i.inhparent = '@schema@.event_log'::regclass
     ORDER BY 2
$$;
COMMENT ON FUNCTION @schema@._log_partitions() IS 'The partitions of event_log and the seqs each holds, oldest first.';

-- A partition is written and read through event_log alone; a statement on it directly meets
-- these guards (statement triggers are not cloned from the parent), and its owner's rights to
-- change it are revoked, as on the log.
CREATE OR REPLACE FUNCTION @schema@._guard_log_partition(part regclass)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    EXECUTE format('CREATE OR REPLACE TRIGGER guard_insert BEFORE INSERT ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only()', part);
    EXECUTE format('CREATE OR REPLACE TRIGGER guard_update BEFORE UPDATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only()', part);
    EXECUTE format('CREATE OR REPLACE TRIGGER guard_delete BEFORE DELETE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only()', part);
    EXECUTE format('CREATE OR REPLACE TRIGGER guard_truncate BEFORE TRUNCATE ON %s'
                   ' FOR EACH STATEMENT EXECUTE FUNCTION @schema@._guard_append_only()', part);
    EXECUTE format('ALTER TABLE %s ENABLE TRIGGER guard_insert, ENABLE TRIGGER guard_update,'
                   ' ENABLE TRIGGER guard_delete, ENABLE TRIGGER guard_truncate', part);
    EXECUTE format('REVOKE ALL ON %s FROM PUBLIC, @schema@_writer, @schema@_reader, @schema@_maintainer,'
                   ' @schema@_secrets, @schema@_capture, @schema@_sealer, @schema@_pruner, @schema@_sandbox', part);
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON %s FROM @schema@_owner', part);
END
$$;
COMMENT ON FUNCTION @schema@._guard_log_partition(regclass) IS
    'Gives a partition of event_log its guard triggers and takes every right to change it from every role.';

-- A partition is made as a table of its own, guarded, then attached: ATTACH PARTITION takes a lock
-- on the log that neither readers nor the sealer's and pruner's writes conflict with (CREATE TABLE
-- ... PARTITION OF would lock the log against every reader, and queue them behind any session that
-- holds it). Ahead of need (from halfway through the partition before), the lock must come within
-- 10 ms, else a later round tries again; a round that needs the partition now waits for it.
CREATE OR REPLACE FUNCTION @schema@._add_log_partitions(needed_seq bigint, wanted_seq bigint)
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '10ms'
AS $$
DECLARE
    size bigint := @schema@._log_partition_size();
    k bigint;
    made integer := 0;
    part text;
BEGIN
    FOR k IN (needed_seq / size) .. (wanted_seq / size) LOOP
        CONTINUE WHEN EXISTS (SELECT 1 FROM @schema@._log_partitions() p WHERE k * size BETWEEN p.first_seq AND p.last_seq);
        part := 'event_log_' || lpad(k::text, greatest(6, length(k::text)), '0');
        IF k * size <= needed_seq THEN
            PERFORM set_config('lock_timeout', '0', true);
        END IF;
        BEGIN
            EXECUTE format('CREATE TABLE @schema@.%I (LIKE @schema@.event_log INCLUDING DEFAULTS INCLUDING CONSTRAINTS'
                           ' INCLUDING STORAGE INCLUDING COMPRESSION)', part);
            PERFORM @schema@._guard_log_partition(format('@schema@.%I', part)::regclass);
            EXECUTE format('ALTER TABLE @schema@.event_log ATTACH PARTITION @schema@.%I FOR VALUES FROM (%s) TO (%s)',
                           part, k * size, (k + 1) * size);
        EXCEPTION WHEN lock_not_available THEN
            RETURN made;
        END;
        made := made + 1;
    END LOOP;
    RETURN made;
END
$$;
COMMENT ON FUNCTION @schema@._add_log_partitions(bigint, bigint) IS
    'Makes the partitions of event_log for needed_seq (waiting for the lock) and up to wanted_seq (only '
    'when the log is free): seal() only.';
REVOKE ALL ON FUNCTION @schema@._add_log_partitions(bigint, bigint) FROM PUBLIC;

-- Only partitions whose every seq is at or below the last prune point: their events are pruned
-- (the prune point says so) whatever called this; and none that holds an event sealed before the
-- chain began (seq <= chain_start_seq, an upgraded log's), which no block covers and prune leaves.
-- DROP TABLE locks the log against readers: it waits 50 ms at most, so that readers queue no
-- longer, and gives up then, as when an object of another role depends on the partition (any role
-- can name a table by its oid): the caller deletes the rows instead.
CREATE OR REPLACE FUNCTION @schema@._drop_log_partitions()
RETURNS integer
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET lock_timeout = '50ms'
AS $$
DECLARE
    pruned_through bigint := (SELECT max(p.last_seq) FROM @schema@.prune_points p);
    chain_start bigint := (SELECT s.chain_start_seq FROM @schema@.seal_state s);
    -- Listed before any is dropped: a query still reading the log would hold its partitions open.
    doomed regclass[] := ARRAY(SELECT p.part FROM @schema@._log_partitions() p
                                WHERE p.last_seq <= pruned_through
                                  AND NOT EXISTS (SELECT 1 FROM @schema@.event_log l
                                                   WHERE l.seq BETWEEN p.first_seq AND least(p.last_seq, chain_start)));
    part regclass;
    dropped integer := 0;
BEGIN
    FOREACH part IN ARRAY doomed LOOP
        BEGIN
            EXECUTE format('DROP TABLE %s', part);
        EXCEPTION WHEN lock_not_available OR dependent_objects_still_exist THEN
            RETURN dropped;
        END;
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$$;
COMMENT ON FUNCTION @schema@._drop_log_partitions() IS
    'Drops the partitions of event_log whose every seq is pruned (prune_points): prune_events and delete_archived only.';
REVOKE ALL ON FUNCTION @schema@._drop_log_partitions() FROM PUBLIC;

-- Re-running the installer repairs a partition's guard someone disabled or dropped.
SELECT @schema@._guard_log_partition(p.part) FROM @schema@._log_partitions() p;
