-- The intake's ids are the order events are sealed in. As an identity their sequence had to be the
-- intake's owner's, and a member of the owner role could move it back (ALTER SEQUENCE ... RESTART)
-- so that a later write took a lower id and was sealed first (tests/test_trust_attacks_63.py). Now a
-- sequence of its own, which sql/30_sealing.sql hands to the sealer role (nobody may act as it):
-- the roles that write the intake may take the next id, none may move it.
-- The table's lock first, so that no writer holds an id not yet in it (a no-op ALTER TABLE, which
-- the owner role may run where LOCK TABLE needs the write rights it revoked from itself).
ALTER TABLE event_intake ALTER COLUMN intake_id SET NOT NULL;
DO $$
DECLARE
    next_id bigint;
BEGIN
    SELECT CASE WHEN s.is_called THEN s.last_value + 1 ELSE s.last_value END INTO next_id
      FROM event_intake_intake_id_seq s;
    ALTER TABLE event_intake ALTER COLUMN intake_id DROP IDENTITY;
    EXECUTE format('CREATE SEQUENCE event_intake_intake_id_seq AS bigint START %s CACHE 1 NO CYCLE', next_id);
END
$$;
ALTER TABLE event_intake ALTER COLUMN intake_id SET DEFAULT nextval('event_intake_intake_id_seq');
