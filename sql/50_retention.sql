-- Retention: a preview anyone who reads may run, and a paginated prune only the maintainer may.

-- An age that reaches into the past, whatever the month: positive, and no part of it negative
-- ('-1 mon 30 days 1 hour' compares as positive, counting a month as 30 days, yet now() less it
-- is a day ahead in a month of 31).
CREATE OR REPLACE FUNCTION @schema@._is_age(i interval)
RETURNS boolean
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT i IS NOT NULL AND i > interval '0'
       AND extract(year FROM i) * 12 + extract(month FROM i) >= 0 AND extract(day FROM i) >= 0
       AND extract(hour FROM i) >= 0 AND extract(minute FROM i) >= 0 AND extract(second FROM i) >= 0
       -- 36600 days, as the CLI's 100 years: now() less a longer one may be no time at all. Counted as
       -- epoch counts an interval (a year as 365.25 days): compared as intervals are, a month as 30 days,
       -- '101 years' was no more (trial 99, a1).
       AND extract(epoch FROM i) <= 3162240000  -- 36600 * 86400 seconds
$$;
COMMENT ON FUNCTION @schema@._is_age(interval) IS
    'Whether an interval is an age: positive, no part of it negative, at most 36600 days (100 years).';

CREATE OR REPLACE FUNCTION @schema@._check_prune_args(older_than interval, batch_size integer)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NOT @schema@._is_age(older_than) THEN
        RAISE EXCEPTION 'older_than must be a positive interval, got %', coalesce(older_than::text, 'NULL')
            USING ERRCODE = 'PA005', HINT = 'No part of it may be negative, and it is at most 36600 days (100 years).';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 100000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 100000, got %', coalesce(batch_size::text, 'NULL')
            USING ERRCODE = 'PA005';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._check_prune_args(interval, integer) IS 'Raises PA005 for bad prune arguments.';

-- Pruning removes whole blocks, so that what remains still verifies: the oldest blocks that
-- still hold events, in order, as long as every event of a block is older than the cutoff, and
-- no unfinished archive batch has planned it: those blocks are the archive's until it deletes them.
CREATE OR REPLACE FUNCTION @schema@._prunable_blocks(cutoff timestamptz)
RETURNS SETOF @schema@.blocks
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b @schema@.blocks;
BEGIN
    FOR b IN SELECT * FROM @schema@.blocks x
              WHERE x.block_no > coalesce((SELECT max(p.block_no) FROM @schema@.prune_points p), 0)
              ORDER BY x.block_no LOOP
        EXIT WHEN b.newest_occurred_at >= cutoff
               OR (b.newest_occurred_at IS NULL  -- sealed before blocks said (migrations/0018)
                   AND EXISTS (SELECT 1 FROM @schema@.events e
                                WHERE NOT e.pending AND e.seq BETWEEN b.first_seq AND b.last_seq
                                  AND e.occurred_at >= cutoff))
               OR EXISTS (SELECT 1 FROM @schema@.archive_batches a
                           WHERE a.state <> 'deleted' AND b.block_no BETWEEN a.first_block AND a.last_block);
        RETURN NEXT b;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._prunable_blocks(timestamptz) IS
    'Blocks prune would remove for this cutoff, oldest first: whole blocks only, none that an unfinished '
    'archive batch planned.';

-- Those blocks in batches, oldest first, numbered from 1; prune_events and next_archive_batch take
-- batch 1, preview_prune counts them all. A batch never crosses a partition's end (nor does a
-- block: seal()). With whole_partitions (prune), a partition whose remaining events are all
-- prunable is one batch, whatever its size: it is dropped, not deleted row by row. Otherwise a
-- batch is as many whole blocks as fit in max_events, and at least one.
DROP FUNCTION IF EXISTS @schema@._next_blocks(timestamptz, integer);
CREATE OR REPLACE FUNCTION @schema@._block_batches(cutoff timestamptz, max_events integer, whole_partitions boolean)
RETURNS TABLE (batch integer, block_no bigint, first_seq bigint, last_seq bigint, event_count bigint,
               block_hash bytea)
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- (Never the blocks' line hashes: 32 bytes an event.)
    through bigint := (SELECT max(x.last_seq) FROM @schema@._prunable_blocks(cutoff) x);
    b record;
    part_end bigint;
    whole boolean;
    n bigint := 0;
BEGIN
    batch := 0;
    FOR b IN SELECT x.block_no, x.first_seq, x.last_seq, x.event_count, x.block_hash
               FROM @schema@._prunable_blocks(cutoff) x ORDER BY x.block_no LOOP
        IF part_end IS NULL OR b.first_seq > part_end THEN
            SELECT p.last_seq INTO part_end FROM @schema@._log_partitions() p
             WHERE b.first_seq BETWEEN p.first_seq AND p.last_seq;
            part_end := coalesce(part_end, b.last_seq);
            whole := whole_partitions AND through >= part_end;
            batch := batch + 1;
            n := 0;
        ELSIF NOT whole AND n + b.event_count > max_events THEN
            batch := batch + 1;
            n := 0;
        END IF;
        n := n + b.event_count;
        block_no := b.block_no;
        first_seq := b.first_seq;
        last_seq := b.last_seq;
        event_count := b.event_count;
        block_hash := b.block_hash;
        RETURN NEXT;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._block_batches(timestamptz, integer, boolean) IS
    'Prunable blocks in batches: whole blocks within one partition, at most max_events events unless one '
    'block alone is larger, or (whole_partitions) a whole partition.';

CREATE OR REPLACE FUNCTION @schema@.preview_prune(older_than interval, batch_size integer DEFAULT 1000)
RETURNS @schema@.prune_preview
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    result @schema@.prune_preview;
BEGIN
    PERFORM @schema@._check_prune_args(older_than, batch_size);
    result.cutoff := now() - older_than;
    SELECT coalesce(sum(b.event_count), 0), min(b.first_seq), max(b.last_seq), coalesce(max(b.batch), 0)
      INTO result.events, result.first_seq, result.last_seq, result.batches
      FROM @schema@._block_batches(result.cutoff, batch_size, true) b;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.preview_prune(interval, integer) IS
    'What prune_events(older_than, batch_size) would remove: cutoff, how many sealed events, '
    'their seq range and the number of calls (batches). Removes nothing.';

-- How sealed events leave the log, for prune_events and delete_archived alike: the events of
-- whole blocks, from first_seq through last_block, their idempotency keys, and a prune point. The
-- blocks keep their rows, so the chain still links and verify knows where history resumes. The
-- guard triggers let this through only as @schema@_pruner, inside prune_events or delete_archived.
DROP FUNCTION IF EXISTS @schema@._remove_blocks(bigint, @schema@.blocks, timestamptz);
CREATE OR REPLACE FUNCTION @schema@._remove_blocks(first_seq bigint, last_block @schema@.blocks, cutoff timestamptz,
                                                   whole_partition boolean DEFAULT false)
RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM @schema@.idempotency_keys k USING @schema@.event_log l
     WHERE l.seq BETWEEN first_seq AND last_block.last_seq AND l.idempotency_key IS NOT NULL AND k.event_id = l.id;
    INSERT INTO @schema@.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)
    VALUES (last_block.block_no, last_block.block_hash, last_block.last_seq, cutoff, @schema@._db_role())
    ON CONFLICT (block_no) DO NOTHING;
    -- Whole partitions go with DROP; the rest of the range row by row. A batch that is a whole
    -- partition larger than batch_size must go by DROP: otherwise this fails (prune_events then
    -- takes a batch of batch_size instead).
    IF @schema@._drop_log_partitions() = 0 AND whole_partition THEN
        RAISE EXCEPTION 'the log''s partition ending at seq % cannot be dropped now', last_block.last_seq
            USING ERRCODE = 'lock_not_available';
    END IF;
    DELETE FROM @schema@.event_log l WHERE l.seq BETWEEN first_seq AND last_block.last_seq;
    RETURN last_block.last_seq - first_seq + 1;  -- seqs are gap-free: every one in the range was an event
END
$$;
COMMENT ON FUNCTION @schema@._remove_blocks(bigint, @schema@.blocks, timestamptz, boolean) IS
    'Deletes the events of whole blocks and records the prune point (inside prune_events or delete_archived only).';

SET ROLE @schema@_pruner;

CREATE OR REPLACE FUNCTION @schema@.prune_events(older_than interval, batch_size integer DEFAULT 1000)
RETURNS @schema@.prune_result
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    cutoff timestamptz;
    result @schema@.prune_result;
    last_block @schema@.blocks;
    first_block bigint;
    last_no bigint;
    whole boolean;
BEGIN
    PERFORM @schema@._refuse_two_phase();  -- its locks would outlive a prepared transaction
    PERFORM @schema@._check_prune_args(older_than, batch_size);
    -- One of prune and archive planning at a time: a batch planned while a prune is uncommitted
    -- would name blocks whose events that prune deletes (next_archive_batch takes the same lock).
    LOCK TABLE @schema@.archive_batches IN SHARE ROW EXCLUSIVE MODE;
    cutoff := now() - older_than;
    result.cutoff := cutoff;
    -- A whole partition first; when it cannot be dropped now (_drop_log_partitions), batch_size of
    -- its events, row by row.
    FOREACH whole IN ARRAY ARRAY[true, false] LOOP
        SELECT coalesce(sum(b.event_count), 0), min(b.first_seq), max(b.last_seq), min(b.block_no), max(b.block_no)
          INTO result.deleted, result.first_seq, result.last_seq, first_block, last_no
          FROM @schema@._block_batches(cutoff, batch_size, whole) b WHERE b.batch = 1;
        SELECT * INTO last_block FROM @schema@.blocks x WHERE x.block_no = last_no;
        IF last_block.block_no IS NULL THEN
            result.more := false;
            RETURN result;
        END IF;
        BEGIN
            PERFORM @schema@._remove_blocks(result.first_seq, last_block, cutoff, whole AND result.deleted > batch_size);
            EXIT;
        EXCEPTION WHEN lock_not_available THEN
            CONTINUE;
        END;
    END LOOP;
    result.more := EXISTS (SELECT 1 FROM @schema@._prunable_blocks(cutoff));
    PERFORM @schema@._record(
        'audit.pruned', NULL, NULL, NULL, 'event_log', NULL,
        jsonb_build_object('older_than', older_than::text, 'cutoff', cutoff,
                           'deleted', result.deleted, 'first_seq', result.first_seq,
                           'last_seq', result.last_seq, 'first_block', first_block,
                           'last_block', last_block.block_no,
                           'last_block_hash', encode(last_block.block_hash, 'hex')),
        'success', NULL, NULL);
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.prune_events(interval, integer) IS
    'Deletes the oldest whole blocks of sealed events older than older_than (at most batch_size '
    'events, at least one block), records the prune point and an audit.pruned event saying what '
    'went and who asked, and says whether more remain. Call again until more is false.';
REVOKE ALL ON FUNCTION @schema@.prune_events(interval, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@.prune_events(interval, integer) TO @schema@_maintainer;

SET ROLE @schema@_owner;
