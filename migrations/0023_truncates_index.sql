-- The TRUNCATEs of tracked tables, by their table's target type: row_as_of and row_state_as_of ask
-- for a table's last one, and found it on the target type's index, reading every event of the table
-- (tests/test_trust_attacks_77.py, k7). Few events, so a small index; any other event costs it one
-- check of its kind. Its queries repeat the predicate, so that the planner may use it.
CREATE INDEX event_log_truncates ON event_log (target_type, seq) WHERE kind LIKE '%.truncate';
