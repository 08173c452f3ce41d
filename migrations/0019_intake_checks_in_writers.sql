-- The intake's bounds on its values (migration 0007) are checked by the writers instead: record(),
-- the capture functions and a baseline refuse a value longer than the log holds with the same
-- SQLSTATE (check_violation) and the constraint's name (sql/60_capture.sql, _refuse_too_long).
-- Every statement that wrote to the intake parsed the eight constraints again, a third of a
-- single-row capture's cost; a capture function checks the key and a tenant column row by row, and
-- the session's context once, after its events are written. The sql/ files, applied after this,
-- regenerate the capture functions.
ALTER TABLE event_intake
    DROP CONSTRAINT IF EXISTS tenant_id_at_most_256_characters,
    DROP CONSTRAINT IF EXISTS actor_type_at_most_64_characters,
    DROP CONSTRAINT IF EXISTS actor_id_at_most_256_characters,
    DROP CONSTRAINT IF EXISTS kind_at_most_128_characters,
    DROP CONSTRAINT IF EXISTS target_type_at_most_128_characters,
    DROP CONSTRAINT IF EXISTS target_id_at_most_512_characters,
    DROP CONSTRAINT IF EXISTS correlation_id_at_most_256_characters,
    DROP CONSTRAINT IF EXISTS idempotency_key_at_most_256_characters;
