-- Every tracked table is brought up to date on every install, once the grants are in place: its
-- entry (a new release may name its key differently: recorded as audit.tracked_table_altered) and
-- its capture functions, which a new release may change (the event triggers do both on every change
-- of a tracked table meanwhile).
SELECT @schema@._refresh_tracking(t.relid, true) FROM @schema@.tracked_tables t;

-- A partitioned table tracked by an earlier release has no rule keeping MERGE off (_refuse_merge):
-- made here where the installer may (a superuser, or the table's owner); elsewhere status names it.
DO $$
DECLARE
    rel oid;
BEGIN
    FOR rel IN SELECT c FROM @schema@._covered_tables() c LOOP
        BEGIN
            PERFORM @schema@._refuse_merge(rel);
        EXCEPTION WHEN insufficient_privilege THEN
            NULL;
        END;
    END LOOP;
END
$$;
