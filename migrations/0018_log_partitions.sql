-- The log, partitioned by seq range, a million seqs a partition: the partition the sealer fills
-- keeps its indexes small enough to stay in memory however long the log grows (a round's random
-- index pages, written in full after every checkpoint, made sealing into a ten-million-event log
-- half as fast as into an empty one: bench/scale.py), and prune drops a partition whose events all
-- go instead of deleting its rows one by one. seal() makes the partitions ahead of need, and no
-- block crosses a partition's end (sql/12_log_partitions.sql).
--
-- The existing table becomes the first partition, from seq 0 up to the first million boundary at
-- least 100,000 seqs past its last seq. (A seal() of before this release, running between this
-- migration's commit and the sql/ files', fails: it calls _canonical_event of the old row type,
-- dropped below. Its round is tried again.) A fresh install's first partition is [0, 1,000,000).
--
-- What changes: `id` is no longer a global unique key (a partitioned table's unique keys must
-- contain its partition key). Ids are made only by the audit schema's own functions, time-ordered
-- with 74 random bits (_new_event_id); each partition indexes them for lookups.

-- Functions of the log's row type are bound to the old table's type: sql/25_chain.sql makes them
-- again for the new one.
DROP FUNCTION IF EXISTS _event_hash(event_log, smallint);
DROP FUNCTION IF EXISTS _canonical_event(event_log, smallint);

ALTER TABLE event_log RENAME TO event_log_000000;
-- A partition must carry the log's checks to be attached: none can hold an event below seq 1, which
-- no block would cover.
ALTER TABLE event_log_000000 ADD CONSTRAINT event_log_seq_positive CHECK (seq > 0);
DO $$
DECLARE
    i record;
BEGIN
    FOR i IN SELECT c.relname FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
              WHERE x.indrelid = 'event_log_000000'::regclass LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', i.relname, replace(i.relname, 'event_log_', 'event_log_000000_'));
    END LOOP;
END
$$;

CREATE TABLE event_log (LIKE event_log_000000 INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING COMMENTS
                        INCLUDING STORAGE INCLUDING COMPRESSION)
    PARTITION BY RANGE (seq);
COMMENT ON TABLE event_log IS
    'Sealed events, append-only; written only by seal(), removed only by prune. Partitioned by seq, a million a partition.';
ALTER TABLE event_log ADD PRIMARY KEY (seq);
CREATE INDEX event_log_id ON event_log (id);
-- Prune deletes the idempotency keys of the events it removes: found here, not by reading a partition whole.
CREATE INDEX event_log_keyed ON event_log (seq) WHERE idempotency_key IS NOT NULL;
-- Every other index of the old table, as it was defined, under its old name.
DO $$
DECLARE
    i record;
BEGIN
    FOR i IN SELECT c.relname, pg_get_indexdef(x.indexrelid) AS def FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
              WHERE x.indrelid = 'event_log_000000'::regclass AND NOT x.indisunique LOOP
        EXECUTE format('CREATE INDEX %I ON event_log %s', replace(i.relname, 'event_log_000000_', 'event_log_'),
                       substring(i.def FROM ' USING .*$'));
    END LOOP;
END
$$;
ALTER TABLE event_log_000000 DROP CONSTRAINT event_log_000000_id_key;

-- The old table's grants go to the new one, and leave the partition: it is read and written
-- through event_log alone (a routed row's partition checks no privilege).
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN SELECT a.grantee::regrole::text AS grantee, a.privilege_type
               FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid = 'event_log_000000'::regclass AND a.grantee <> 0 AND a.grantee <> c.relowner LOOP
        EXECUTE format('GRANT %s ON event_log TO %s', g.privilege_type, g.grantee);
        EXECUTE format('REVOKE %s ON event_log_000000 FROM %s', g.privilege_type, g.grantee);
    END LOOP;
END
$$;
REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON event_log FROM CURRENT_USER;
-- And its guards, until sql/10_guards.sql gives both their own.
DO $$
DECLARE
    t record;
BEGIN
    FOR t IN SELECT pg_get_triggerdef(g.oid) AS def FROM pg_trigger g
              WHERE g.tgrelid = 'event_log_000000'::regclass AND g.tgname LIKE 'guard\_%' LOOP
        EXECUTE regexp_replace(t.def, ' ON \S+ FOR EACH STATEMENT ', ' ON event_log FOR EACH STATEMENT ');
    END LOOP;
END
$$;

DO $$
DECLARE
    upper_bound bigint := (((SELECT last_seq FROM seal_state) + 100000) / 1000000 + 1) * 1000000;
BEGIN
    EXECUTE format('ALTER TABLE event_log ATTACH PARTITION event_log_000000 FOR VALUES FROM (0) TO (%s)', upper_bound);
END
$$;

-- The events view read the old table (views bind to a table, not its name).
DO $$
BEGIN
    IF to_regclass('events') IS NOT NULL THEN
        EXECUTE 'CREATE OR REPLACE VIEW events AS '
                || replace(pg_get_viewdef('events'::regclass), 'event_log_000000', 'event_log');
    END IF;
END
$$;

-- The newest event of each block, kept by seal(): prune and archive planning see whether a whole
-- block is older than their cutoff without reading its events. Blocks sealed before have none,
-- and are read as before.
ALTER TABLE blocks ADD COLUMN newest_occurred_at timestamptz;
COMMENT ON COLUMN blocks.newest_occurred_at IS
    'The latest occurred_at of the block''s events (not hashed: a hint for prune and archive planning).';
