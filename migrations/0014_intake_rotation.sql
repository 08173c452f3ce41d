-- The intake rotates through four partitions by intake_id, 16,384 ids each: writers move on to the
-- next one while the sealer drains the last, and seal() empties a drained partition with TRUNCATE
-- (PgQ's rotation) instead of leaving its deleted rows for every reader, and the sealer itself, to
-- scan until autovacuum comes by, which under steady writes it never does in time (bench/scale.py).
-- The partition is a function of intake_id, so no writer reads any state to choose it. The same
-- expression is in seal() (sql/30_sealing.sql).
ALTER TABLE event_intake RENAME TO event_intake_unrotated;
CREATE TABLE event_intake (LIKE event_intake_unrotated INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING COMMENTS)
    PARTITION BY LIST (((intake_id / 16384) % 4));
COMMENT ON TABLE event_intake IS
    'Pending events: appended by writers, moved into event_log by seal(). Never updated.';
CREATE TABLE event_intake_0 PARTITION OF event_intake FOR VALUES IN (0);
CREATE TABLE event_intake_1 PARTITION OF event_intake FOR VALUES IN (1);
CREATE TABLE event_intake_2 PARTITION OF event_intake FOR VALUES IN (2);
CREATE TABLE event_intake_3 PARTITION OF event_intake FOR VALUES IN (3);
COMMENT ON TABLE event_intake_0 IS 'Pending events with (intake_id / 16384) % 4 = 0; TRUNCATEd by seal() once drained.';
COMMENT ON TABLE event_intake_1 IS 'Pending events with (intake_id / 16384) % 4 = 1; TRUNCATEd by seal() once drained.';
COMMENT ON TABLE event_intake_2 IS 'Pending events with (intake_id / 16384) % 4 = 2; TRUNCATEd by seal() once drained.';
COMMENT ON TABLE event_intake_3 IS 'Pending events with (intake_id / 16384) % 4 = 3; TRUNCATEd by seal() once drained.';

-- Ids go on from where the old table's left off; its pending events keep theirs, and their order.
DO $$
BEGIN
    PERFORM setval(pg_get_serial_sequence('event_intake', 'intake_id'),
                   coalesce(pg_sequence_last_value(pg_get_serial_sequence('event_intake_unrotated', 'intake_id')), 0)
                   + 1, false);
END
$$;
INSERT INTO event_intake OVERRIDING SYSTEM VALUE SELECT * FROM event_intake_unrotated;
-- Writers keep writing between this migration's commit and the sql/ files' (which grant again):
-- the old table's grants, but for the sealer's, whose seal() of before this release would delete
-- by row address across partitions; without them it fails, cleanly, until sql/30_sealing.sql.
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee::regrole::text AS grantee, a.privilege_type
               FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid = 'event_intake_unrotated'::regclass AND a.grantee <> 0 AND a.grantee <> c.relowner
                AND a.grantee::regrole::text <> current_schema() || '_sealer' LOOP
        EXECUTE format('GRANT %s ON event_intake TO %s', g.privilege_type, g.grantee);
    END LOOP;
END
$$;
-- An installed events view (and the functions that return its rows) stays; only its reading of
-- the intake moves to the new table. sql/15_events_view.sql then replaces it with the same text.
DO $$
BEGIN
    IF to_regclass('events') IS NOT NULL THEN
        EXECUTE 'CREATE OR REPLACE VIEW events AS '
                || replace(pg_get_viewdef('events'::regclass), 'event_intake_unrotated', 'event_intake');
    END IF;
END
$$;
-- The old table's checks (0007), NOT VALID as they were made there: pending events of an earlier
-- release are left as they are.
DO $$
DECLARE
    k record;
BEGIN
    FOR k IN SELECT c.conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
              WHERE c.conrelid = 'event_intake_unrotated'::regclass AND c.contype = 'c' LOOP
        EXECUTE format('ALTER TABLE event_intake ADD CONSTRAINT %I %s NOT VALID', k.conname,
                       regexp_replace(k.def, ' NOT VALID$', ''));
    END LOOP;
END
$$;
DROP TABLE event_intake_unrotated;
ALTER SEQUENCE event_intake_intake_id_seq1 RENAME TO event_intake_intake_id_seq;

-- Which sealing transaction last deleted from each partition: a partition is emptied with TRUNCATE
-- only once every snapshot in the cluster is younger than that transaction (seal(),
-- sql/30_sealing.sql), so that no reader, pg_dump included, sees its events neither pending nor sealed.
CREATE TABLE intake_drains (
    slot integer PRIMARY KEY CHECK (slot BETWEEN 0 AND 3),
    drained_by xid8 NOT NULL
);
COMMENT ON TABLE intake_drains IS 'The last transaction that moved events out of each partition of event_intake.';
