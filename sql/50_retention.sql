-- Retention: a preview anyone who reads may run, and a paginated prune only the maintainer may.

CREATE OR REPLACE FUNCTION @schema@._check_prune_args(older_than interval, batch_size integer)
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF older_than IS NULL OR older_than <= interval '0' THEN
        RAISE EXCEPTION 'older_than must be a positive interval, got %', coalesce(older_than::text, 'NULL')
            USING ERRCODE = 'PA005';
    END IF;
    IF batch_size IS NULL OR batch_size < 1 OR batch_size > 100000 THEN
        RAISE EXCEPTION 'batch_size must be between 1 and 100000, got %', coalesce(batch_size::text, 'NULL')
            USING ERRCODE = 'PA005';
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._check_prune_args(interval, integer) IS 'Raises PA005 for bad prune arguments.';

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
    SELECT now() - older_than, count(*), min(e.seq), max(e.seq), ceil(count(*)::numeric / batch_size)
      INTO result
      FROM @schema@.events e
     WHERE NOT e.pending AND e.occurred_at < now() - older_than;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.preview_prune(interval, integer) IS
    'What prune_events(older_than, batch_size) would remove: cutoff, how many sealed events, '
    'their seq range and the number of batches. Removes nothing.';

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
BEGIN
    PERFORM @schema@._check_prune_args(older_than, batch_size);
    cutoff := now() - older_than;
    WITH victims AS (
        SELECT l.seq FROM @schema@.event_log l
         WHERE l.occurred_at < cutoff ORDER BY l.seq LIMIT batch_size
    ), gone AS (
        DELETE FROM @schema@.event_log l USING victims v WHERE l.seq = v.seq
        RETURNING l.seq, l.id
    ), keys AS (
        DELETE FROM @schema@.idempotency_keys k USING gone WHERE k.event_id = gone.id
    )
    SELECT cutoff, count(*), min(gone.seq), max(gone.seq), false INTO result FROM gone;
    result.more := EXISTS (SELECT 1 FROM @schema@.event_log l WHERE l.occurred_at < cutoff);
    IF result.deleted > 0 THEN
        PERFORM @schema@._record(
            'audit.pruned', NULL, NULL, NULL, 'event_log', NULL,
            jsonb_build_object('older_than', older_than::text, 'cutoff', cutoff,
                               'deleted', result.deleted, 'first_seq', result.first_seq,
                               'last_seq', result.last_seq),
            'success', NULL, NULL);
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.prune_events(interval, integer) IS
    'Deletes one batch (the oldest, at most batch_size) of sealed events older than older_than, '
    'records an audit.pruned event saying what went and who asked, and says whether more remain. '
    'Call again until more is false; each call is its own short transaction.';
