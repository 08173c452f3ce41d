-- Where each event comes from, events the sealer set aside, and one kind prefix per tracked table.

-- record: audit.record(); capture: a capture trigger; system: pgaudit_py's own events (tracking,
-- prunes, archives, secrets). record() cannot write anything but 'record', so a captured or system
-- event cannot be forged through it. Events written before this column existed have NULL.
ALTER TABLE event_intake ADD COLUMN origin text;
ALTER TABLE event_log ADD COLUMN origin text CHECK (origin IN ('record', 'capture', 'system'));
COMMENT ON COLUMN event_log.origin IS
    'record (audit.record), capture (a capture trigger) or system (pgaudit_py''s own); NULL before 0.2.';

-- An event the sealer could not seal (a value too large to hash, a row that breaks a constraint)
-- waits here instead of holding back every event after it. Never updated; readable by the reader.
CREATE TABLE quarantine (LIKE event_intake);
ALTER TABLE quarantine
    ADD COLUMN quarantined_at timestamptz NOT NULL DEFAULT now(),
    ADD COLUMN sqlstate text NOT NULL,
    ADD COLUMN error text NOT NULL;
COMMENT ON TABLE quarantine IS
    'Events seal() could not seal, with the error; each is also announced by an audit.event_quarantined event.';

ALTER TYPE seal_status ADD ATTRIBUTE quarantined bigint;

-- A kind prefix names one tracked table: two tables sharing one would mix their histories.
DO $$
DECLARE
    shared text;
BEGIN
    SELECT string_agg(DISTINCT kind_prefix, ', ') INTO shared
      FROM (SELECT kind_prefix FROM tracked_tables GROUP BY kind_prefix HAVING count(*) > 1) d;
    IF shared IS NOT NULL THEN
        RAISE EXCEPTION 'tracked tables share the kind prefixes %', shared
            USING HINT = 'Give each its own with enable_tracking(..., kind_prefix => ...) before upgrading.';
    END IF;
END
$$;
CREATE UNIQUE INDEX tracked_tables_kind_prefix ON tracked_tables (kind_prefix);

-- An UPDATE that changes a row's key records the key it left (row_history follows the row).
CREATE INDEX event_log_moved_from ON event_log (target_type, (payload ->> 'moved_from'), seq)
    WHERE payload ? 'moved_from';

-- A caller's proof, made with its own rights, that it owns a table whose tracking or limits it
-- changes (sql/62_tracking.sql, _check_owner): a BEFORE trigger stamps each row with the inserting
-- role and transaction; the SECURITY DEFINER helpers consume it in the same transaction.
CREATE TABLE owner_proofs (
    relid oid NOT NULL,
    role text NOT NULL,
    xid xid8 NOT NULL
);
COMMENT ON TABLE owner_proofs IS
    'Proofs of table ownership made by callers of enable_tracking and the like, consumed in the same transaction.';

-- What the log's indexes can hold: a value longer than these would stop the sealer (an index entry
-- is at most about 2.7 kB), so the intake refuses it in the writer's statement, whoever writes it
-- (record() checks the same with its own messages; a capture trigger's write fails with the
-- constraint's name). NOT VALID: pending events of an earlier release are left as they are.
ALTER TABLE event_intake
    ADD CONSTRAINT tenant_id_at_most_256_characters CHECK (char_length(tenant_id) <= 256) NOT VALID,
    ADD CONSTRAINT actor_type_at_most_64_characters CHECK (char_length(actor_type) <= 64) NOT VALID,
    ADD CONSTRAINT actor_id_at_most_256_characters CHECK (char_length(actor_id) <= 256) NOT VALID,
    ADD CONSTRAINT kind_at_most_128_characters CHECK (char_length(kind) <= 128) NOT VALID,
    ADD CONSTRAINT target_type_at_most_128_characters CHECK (char_length(target_type) <= 128) NOT VALID,
    ADD CONSTRAINT target_id_at_most_512_characters CHECK (char_length(target_id) <= 512) NOT VALID,
    ADD CONSTRAINT correlation_id_at_most_256_characters CHECK (char_length(correlation_id) <= 256) NOT VALID,
    ADD CONSTRAINT idempotency_key_at_most_256_characters CHECK (char_length(idempotency_key) <= 256) NOT VALID;

-- Sealing follows intake_id, and a row's history follows sealing: a second write to a row takes its
-- intake_id after the first one committed (it waits for the row lock), but only if no session holds
-- a cache of ids, where a later writer may hold lower ones than an earlier.
ALTER TABLE event_intake ALTER COLUMN intake_id SET CACHE 1;

-- Every kind prefix a table was ever tracked under: its events stay under it, so no other table may
-- take it (but the same table dropped and created again under its name).
CREATE TABLE kind_prefixes (
    kind_prefix text PRIMARY KEY,
    relid oid NOT NULL,
    table_name text NOT NULL,
    first_tracked_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE kind_prefixes IS 'Kind prefixes tables were tracked under, and the table each belongs to.';
INSERT INTO kind_prefixes (kind_prefix, relid, table_name) SELECT kind_prefix, relid, table_name FROM tracked_tables;
