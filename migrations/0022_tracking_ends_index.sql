-- The ends of tables' tracking (audit.tracking_disabled, audit.tracked_table_dropped), by the kind
-- prefix they end: row_as_of and row_state_as_of ask for the last one of a table's prefix, and found
-- it by walking every table's ends (tests/test_trust_attacks_71.py). Few events, so a small index;
-- any other event costs it one check of its kind.
CREATE INDEX event_log_tracking_ends ON event_log ((payload ->> 'kind_prefix'), seq)
    WHERE kind IN ('audit.tracking_disabled', 'audit.tracked_table_dropped');
