-- When a tracked table's rows were last imaged as <prefix>.baseline events (enable_tracking with
-- baseline): from then on, a row with no event by a moment is known not to have existed at it.
ALTER TABLE tracked_tables ADD COLUMN baseline_at timestamptz;
COMMENT ON COLUMN tracked_tables.baseline_at IS
    'When the table''s rows were last imaged as <prefix>.baseline events (NULL: never, while tracked).';
