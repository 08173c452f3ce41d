-- The intake's rotation empties a drained partition only when no snapshot in the cluster is older
-- than the round that drained it, which takes seeing every session's xmin (pg_stat_activity):
-- pg_read_all_stats, granted to the sealer role alone, which nobody logs in as or belongs to and
-- which runs only seal()'s code (sql/30_sealing.sql, _empty_drained_intake). Without it (an
-- install by a non-superuser), nothing is truncated and autovacuum cleans the intake.
DO $$
BEGIN
    IF NOT pg_has_role('@schema@_sealer', 'pg_read_all_stats', 'MEMBER') THEN
        GRANT pg_read_all_stats TO @schema@_sealer;
    END IF;
END
$$;
