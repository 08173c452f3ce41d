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
