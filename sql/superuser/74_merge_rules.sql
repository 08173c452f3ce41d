-- A partitioned table tracked by an earlier release has no rule keeping MERGE off (_refuse_merge):
-- made here, where the installer is a superuser (the owner role owns none of the tables); without
-- one, status names such a table.
DO $$
DECLARE
    rel oid;
BEGIN
    FOR rel IN SELECT c FROM @schema@._covered_tables() c LOOP
        PERFORM @schema@._refuse_merge(rel);
    END LOOP;
END
$$;
