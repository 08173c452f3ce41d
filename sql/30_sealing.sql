-- Sealing: the one sequencer that moves committed intake rows into the log and assigns seq.

-- The hash of an event's canonical line, refused (54000, so that seal() quarantines the event) when
-- the line is over 16 MiB: what verifiers and archives must hold in memory is bounded. A row image
-- is bounded to 1 MiB as stored, but a jsonb number such as 1e131071 takes 8 bytes and prints as
-- 131072 digits. Internal (no SET clause, paid per event): runs under seal()'s pinned search_path.
CREATE OR REPLACE FUNCTION @schema@._sealable_hash(line text)
RETURNS bytea
LANGUAGE plpgsql
IMMUTABLE
AS $$
BEGIN
    IF octet_length(line) > 16777216 THEN
        RAISE EXCEPTION 'the event is % bytes in canonical form; a sealed event is at most 16 MiB', octet_length(line)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    RETURN sha256(convert_to(line, 'UTF8'));
END
$$;
COMMENT ON FUNCTION @schema@._sealable_hash(text) IS
    'SHA-256 of a canonical line to seal; 54000 when it is over 16 MiB.';

-- The intake's partition of an intake_id: the partition key of migrations/0014_intake_rotation.sql,
-- word for word. Inlined where it is called (no SET clause, the same type), so that a condition on
-- it reads only that partition.
CREATE OR REPLACE FUNCTION @schema@._intake_slot(intake_id bigint)
RETURNS bigint
LANGUAGE sql
IMMUTABLE
AS $$ SELECT (intake_id / 16384) % 4 $$;
COMMENT ON FUNCTION @schema@._intake_slot(bigint) IS
    'Which partition of event_intake (event_intake_0 to _3) holds the event with this intake_id.';

DROP FUNCTION IF EXISTS @schema@._move_to_log(tid[], bigint, bigint);
DROP FUNCTION IF EXISTS @schema@._move_to_log(integer, tid[], bigint, bigint);  -- before it could omit unprintable values
DROP FUNCTION IF EXISTS @schema@._quarantine(tid, text, text);

-- Moves the intake rows at these row addresses of partition `slot` into the log, in intake order,
-- numbered from first_seq, into block block_no, hashed in canonical form version 2; returns how
-- many, the last seq, and their line hashes concatenated in seq order. Row addresses stay put:
-- intake rows are never updated, and only the one sealer deletes them. With omit, the row images
-- go through _omit_unprintable (seal()'s second attempt at one event). Runs as seal()'s role.
CREATE OR REPLACE FUNCTION @schema@._move_to_log(slot integer, rows tid[], first_seq bigint, block_no bigint,
                                                 omit boolean DEFAULT false,
                                                 OUT moved bigint, OUT last_seq bigint, OUT hashes bytea,
                                                 OUT newest timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    WITH moved AS (
        DELETE FROM @schema@.event_intake i WHERE @schema@._intake_slot(i.intake_id) = slot AND i.ctid = ANY (rows)
        RETURNING i.*
    ), checked AS (  -- row images: wild numbers would make every print of the event huge (14_wild_numbers.sql)
        SELECT m.*, NOT omit AND coalesce(@schema@._wild_numbers(m.row_before), false) AS wild_before,
               NOT omit AND coalesce(@schema@._wild_numbers(m.row_after), false) AS wild_after
          FROM moved m
        OFFSET 0  -- each image walked once, not once for each use of it below
    ), tamed AS (
        SELECT c.intake_id, c.id, c.tenant_id, c.actor_type, c.actor_id, c.db_role, c.client_addr,
               c.application_name, c.kind, c.target_type, c.target_id, c.outcome, c.correlation_id,
               c.idempotency_key, c.txid, c.occurred_at, c.payload, c.schema_valid, c.changed, c.origin,
               c.row_before AS captured_before, c.row_after AS captured_after,
               CASE WHEN omit THEN @schema@._omit_unprintable(c.row_before)
                    WHEN c.wild_before THEN @schema@._tame_numbers(c.row_before)
                    ELSE c.row_before END AS row_before,
               CASE WHEN omit THEN @schema@._omit_unprintable(c.row_after)
                    WHEN c.wild_after THEN @schema@._tame_numbers(c.row_after)
                    ELSE c.row_after END AS row_after,
               omit OR c.wild_before OR c.wild_after AS altered
          FROM checked c
    ), sealed AS (
        INSERT INTO @schema@.event_log AS l (
            seq, id, tenant_id, actor_type, actor_id, db_role, client_addr, application_name,
            kind, target_type, target_id, outcome, correlation_id, idempotency_key, txid,
            occurred_at, sealed_at, payload, schema_valid, row_before, row_after, changed, block_no, origin)
        SELECT first_seq - 1 + row_number() OVER (ORDER BY m.intake_id),
               coalesce(m.id, @schema@._new_event_id()), m.tenant_id, m.actor_type, m.actor_id,
               m.db_role, m.client_addr, m.application_name, m.kind, m.target_type, m.target_id,
               m.outcome, m.correlation_id, m.idempotency_key, m.txid, m.occurred_at, clock_timestamp(),
               -- What the sealer replaced is named in the payload, and compared as captured
               -- (_note_omitted, _changed_as_captured).
               CASE WHEN m.altered
                    THEN @schema@._note_omitted(@schema@._note_omitted(m.payload,
                             'row_before', @schema@._replaced_keys(m.captured_before, m.row_before)),
                             'row_after', @schema@._replaced_keys(m.captured_after, m.row_after))
                    ELSE m.payload END,
               m.schema_valid, m.row_before, m.row_after,
               CASE WHEN m.row_before IS NULL OR m.row_after IS NULL THEN NULL
                    -- _changed, written out: a SQL function with a FROM is run, not inlined, and
                    -- each run starts an executor (an eighth of sealing an update event).
                    WHEN m.changed IS NULL AND NOT m.altered THEN
                         (SELECT coalesce(pg_catalog.jsonb_object_agg(a.key, pg_catalog.jsonb_build_object(
                                              'old', m.row_before -> a.key, 'new', a.value)), '{}')
                            FROM pg_catalog.jsonb_each(m.row_after) AS a
                           WHERE m.row_before -> a.key IS DISTINCT FROM a.value)
                    ELSE @schema@._changed_as_captured(m.changed, m.captured_before, m.captured_after,
                                                       m.row_before, m.row_after) END,
               block_no, m.origin
          FROM tamed m
        RETURNING l.seq, l.occurred_at, @schema@._sealable_hash(@schema@._canonical_event(l, 2::smallint)) AS hash
    )
    SELECT count(*), max(s.seq), string_agg(s.hash, ''::bytea ORDER BY s.seq), max(s.occurred_at)
      INTO moved, last_seq, hashes, newest
      FROM sealed s;
END
$$;
COMMENT ON FUNCTION @schema@._move_to_log(integer, tid[], bigint, bigint, boolean) IS
    'Moves intake rows into the log with consecutive seqs (inside seal() only: the guards allow its role alone).';

-- Whether an error is the log's own refusal of an event (one of its CHECKs, one of its NOT NULL
-- columns), not a partition's: a CHECK of a partition's own, or a row no partition takes, says nothing
-- of the event, and must fail the round rather than set chosen events aside.
CREATE OR REPLACE FUNCTION @schema@._refused_by_the_log(state text, constraint_name text, column_name text)
RETURNS boolean
LANGUAGE sql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE state
           WHEN '23514' THEN EXISTS (SELECT 1 FROM pg_constraint k
                                      WHERE k.conrelid = '@schema@.event_log'::regclass AND k.contype = 'c'
                                        AND k.conname = constraint_name)
           WHEN '23502' THEN EXISTS (SELECT 1 FROM pg_attribute a
                                      WHERE a.attrelid = '@schema@.event_log'::regclass AND a.attname = column_name
                                        AND a.attnotnull)
           ELSE true END
$$;
COMMENT ON FUNCTION @schema@._refused_by_the_log(text, text, text) IS
    'Whether a CHECK or NOT NULL violation met in sealing is the log''s own (else not the event''s fault).';

-- An event that cannot be sealed leaves the intake for the quarantine, with the error, and says so
-- in an event of its own (sealed in the next round), which must always be writable itself: only
-- values of bounded size go into it.
CREATE OR REPLACE FUNCTION @schema@._quarantine(slot integer, row_address tid, state text, message text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    bad @schema@.event_intake;
BEGIN
    DELETE FROM @schema@.event_intake i WHERE @schema@._intake_slot(i.intake_id) = slot AND i.ctid = row_address
    RETURNING i.* INTO bad;
    INSERT INTO @schema@.quarantine SELECT (bad).*, clock_timestamp(), state, message;
    PERFORM @schema@._record('audit.event_quarantined', NULL, NULL, NULL, 'event', coalesce(bad.id::text, bad.intake_id::text),
                             jsonb_build_object('intake_id', bad.intake_id, 'kind', left(bad.kind, 128),
                                                'tenant_id', left(bad.tenant_id, 256), 'occurred_at', bad.occurred_at,
                                                'sqlstate', state, 'error', left(message, 1000)),
                             'failure', NULL, NULL);
END
$$;
COMMENT ON FUNCTION @schema@._quarantine(integer, tid, text, text) IS
    'Moves one intake row to the quarantine and records audit.event_quarantined (inside seal() only).';

-- The intake's rotation: writers move on to the next partition every 16,384 ids, and a partition
-- they have left is emptied with TRUNCATE once drained, instead of being left full of deleted rows
-- for readers and the sealer to scan until a vacuum. TRUNCATE is not MVCC-safe: a snapshot older
-- than the round that deleted a partition's rows, reading it after the TRUNCATE, would see those
-- events neither pending nor sealed (pg_dump takes its snapshot, then locks). So a partition is
-- emptied only when the transaction that last deleted from it (intake_drains) is an earlier one,
-- committed, and older than every snapshot in the cluster: every session's xmin, every
-- replication slot's (a hot standby's, with hot_standby_feedback). Seeing every session's xmin
-- takes pg_read_all_stats, which a superuser's install grants the sealer role; without it,
-- nothing is truncated and autovacuum alone cleans the intake, as before the rotation. Only
-- with the partition locked against everyone (NOWAIT: anyone inside means a later round) is it
-- checked for pending events, which then are all committed and visible. The partitions are found
-- by their bounds, not their names. Runs as seal()'s role, at the end of a round.
CREATE OR REPLACE FUNCTION @schema@._empty_drained_intake()
RETURNS integer
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    writers_on bigint := @schema@._intake_slot(pg_sequence_last_value('@schema@.event_intake_intake_id_seq'));
    d record;
    emptied integer := 0;
BEGIN
    IF NOT pg_has_role('pg_read_all_stats', 'USAGE') THEN
        RETURN 0;
    END IF;
    -- pg_stat_activity is read once per transaction and kept: a caller's transaction that read it
    -- before another round committed would miss the snapshots taken since (test_trust_attacks_49.py).
    PERFORM pg_stat_clear_snapshot();
    FOR d IN SELECT x.slot, x.drained_by, i.inhrelid::regclass AS part
               FROM @schema@.intake_drains x
               JOIN pg_inherits i ON i.inhparent = '@schema@.event_intake'::regclass
               JOIN pg_class c ON c.oid = i.inhrelid
                              AND pg_get_expr(c.relpartbound, c.oid) = format('FOR VALUES IN (''%s'')', x.slot)
              WHERE x.slot IS DISTINCT FROM writers_on AND x.drained_by <> pg_current_xact_id()
                AND pg_relation_size(i.inhrelid) > 0 LOOP
        -- (Autovacuum's snapshots read no intake row that this could take away: like PostgreSQL's
        -- own horizon, they are left out.)
        CONTINUE WHEN EXISTS (SELECT 1 FROM pg_stat_activity a
                               WHERE a.pid <> pg_backend_pid() AND a.backend_type <> 'autovacuum worker'
                                 AND age(a.backend_xmin) >= age(xid(d.drained_by)))
                   OR EXISTS (SELECT 1 FROM pg_replication_slots r WHERE age(r.xmin) >= age(xid(d.drained_by)))
                   OR EXISTS (SELECT 1 FROM @schema@.event_intake i WHERE @schema@._intake_slot(i.intake_id) = d.slot);
        BEGIN
            EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE NOWAIT', d.part);
        EXCEPTION WHEN lock_not_available THEN
            CONTINUE;
        END;
        IF NOT EXISTS (SELECT 1 FROM @schema@.event_intake i WHERE @schema@._intake_slot(i.intake_id) = d.slot) THEN
            EXECUTE format('TRUNCATE %s', d.part);
            emptied := emptied + 1;
        END IF;
    END LOOP;
    RETURN emptied;
END
$$;
COMMENT ON FUNCTION @schema@._empty_drained_intake() IS
    'TRUNCATEs each partition of event_intake that writers have left, that the sealer drained in an earlier '
    'round older than every snapshot (inside seal() only).';

-- PREPARE TRANSACTION refuses a transaction that has sent a notification. The functions that lock
-- what the background work needs (seal_state; the archive's settings, batches and claim; the log's
-- blocks in a prune) send one on a channel no follower listens on, so that no prepared transaction
-- holds those locks until someone resolves it, stopping every later round (tests/test_trust_attacks_49.py,
-- _50.py). Not while the cluster's notification queue is half full (seal(), below).
CREATE OR REPLACE FUNCTION @schema@._refuse_two_phase()
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF pg_notification_queue_usage() < 0.5 THEN
        PERFORM pg_notify('pgaudit_py_idle', '');
    END IF;
END
$$;
COMMENT ON FUNCTION @schema@._refuse_two_phase() IS
    'Makes the calling transaction one that PREPARE TRANSACTION refuses (a notification).';

-- The intake's ids are the order events are sealed in: their sequence is the sealer role's, which
-- nobody may act as, so that no role moves it (migrations/0021_intake_ids_of_their_own.sql). The
-- installer hands it over and takes back every grant on it before the files run
-- (installer.hand_over_statements); the roles that write the intake may take the next id, and
-- status (the owner role's) reads where it stands.
SET ROLE @schema@_sealer;
GRANT USAGE, SELECT ON SEQUENCE @schema@.event_intake_intake_id_seq TO @schema@_owner;
GRANT USAGE ON SEQUENCE @schema@.event_intake_intake_id_seq TO @schema@_capture, @schema@_pruner;

CREATE OR REPLACE FUNCTION @schema@.seal(max_events integer DEFAULT 10000)
RETURNS @schema@.seal_result
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off  -- the statement that moves events looks costly enough to compile, at every round: slower by half
AS $$
DECLARE
    v_first bigint;
    v_block bigint;
    v_prev bytea;
    v_run record;
    v_slots integer[] := '{}';
    v_row tid;
    v_one record;
    v_hashes bytea := ''::bytea;
    v_hash bytea;
    v_state text;
    v_again text;
    v_message text;
    v_constraint text;
    v_column text;
    v_path text;          -- what in seal()'s path is not as installed (_sealing_path_problem), read once per partition
    v_path_of bigint;     -- ... for this partition
    v_size bigint := @schema@._log_partition_size();
    v_limit bigint;
    v_moved bigint;
    v_newest timestamptz;
    result @schema@.seal_result;
BEGIN
    IF max_events IS NULL OR max_events < 1 OR max_events > 1000000 THEN
        RAISE EXCEPTION 'max_events must be between 1 and 1000000, got %', coalesce(max_events::text, 'NULL')
            USING ERRCODE = 'PA005';
    END IF;
    -- Each statement below must see everything the previous sealer committed: only a fresh
    -- snapshot per statement (READ COMMITTED) guarantees it.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'seal() must run at READ COMMITTED, not %', current_setting('transaction_isolation')
            USING ERRCODE = 'PA005';
    END IF;
    PERFORM @schema@._refuse_two_phase();  -- its lock on seal_state would outlive a prepared transaction
    -- One sealer at a time: the row lock is held until this transaction ends.
    SELECT s.last_seq + 1, s.last_block_no + 1, s.last_block_hash INTO v_first, v_block, v_prev
      FROM @schema@.seal_state s FOR UPDATE;

    -- A block never crosses a partition's end (prune drops a partition of whole blocks): a round
    -- that reaches one goes on with a second block in the next partition.
    result.sealed := 0;
    LOOP
        v_limit := least(max_events - result.sealed, v_size - v_first % v_size);
        PERFORM @schema@._add_log_partitions(v_first, v_first + v_size / 2);
        -- Only the sealer writes at its next seq and past it: an event found there was put there around
        -- it, and the round's events would collide with it.
        IF EXISTS (SELECT 1 FROM @schema@.event_log l WHERE l.seq >= v_first) THEN
            RAISE EXCEPTION 'the log already holds events at or past seq %, which the sealer did not write: nothing '
                            'is sealed until they are gone (pgaudit status names the partition)', v_first
                USING ERRCODE = 'PA017';
        END IF;
        v_moved := 0;
        v_hashes := ''::bytea;
        v_newest := NULL;
        -- The batch: one scan of the intake, in intake order, cut into runs of consecutive events in
        -- the same partition (one run, or two where writers moved on to the next partition).
        FOR v_run IN
            SELECT r.slot, array_agg(r.ctid ORDER BY r.intake_id) AS rows, max(r.intake_id) AS highest
              FROM (SELECT b.slot, b.ctid, b.intake_id,
                           row_number() OVER (ORDER BY b.intake_id)
                           - row_number() OVER (PARTITION BY b.slot ORDER BY b.intake_id) AS run
                      FROM (SELECT @schema@._intake_slot(i.intake_id)::integer AS slot, i.ctid, i.intake_id
                              FROM @schema@.event_intake i ORDER BY i.intake_id LIMIT v_limit) b) r
             GROUP BY r.slot, r.run
             ORDER BY min(r.intake_id)
        LOOP
            -- The intake's ids are the order events are sealed in, and nothing but a superuser moves
            -- their sequence (the sealer's) back: an event above where the sequence stands was written
            -- before it was moved, and sealed now it would follow events written after it.
            -- Read once the batch is read, the sequence stands past every id the batch holds.
            IF v_run.highest > (SELECT q.last_value FROM @schema@.event_intake_intake_id_seq q) THEN
                RAISE EXCEPTION 'the intake''s id sequence was moved back below pending event %: nothing is sealed, '
                                'lest later writes be sealed before earlier ones (pgaudit status names it)', v_run.highest
                    USING ERRCODE = 'PA017';
            END IF;
            v_slots := v_slots || v_run.slot;
            BEGIN
                SELECT * INTO v_one FROM @schema@._move_to_log(v_run.slot, v_run.rows, v_first + v_moved, v_block);
                v_moved := v_moved + v_one.moved;
                v_hashes := v_hashes || coalesce(v_one.hashes, ''::bytea);
                v_newest := greatest(v_newest, v_one.newest);
            EXCEPTION WHEN data_exception OR not_null_violation OR check_violation OR program_limit_exceeded OR internal_error THEN
                -- One event the log cannot take (a value too large to hash, say) must not hold back every
                -- event after it: seal them one by one, and set aside each that fails for the same reasons
                -- (internal_error: a value whose text passes 1 GB cannot even be allocated). Any other error
                -- (a lock, a cancel, the disk, memory) fails the round, to be tried again; so does a unique
                -- violation (a seq already taken) or a partition's refusal, which no event of its own causes.
                FOREACH v_row IN ARRAY v_run.rows LOOP
                    BEGIN
                        SELECT * INTO v_one
                          FROM @schema@._move_to_log(v_run.slot, ARRAY[v_row], v_first + v_moved, v_block);
                    EXCEPTION WHEN data_exception OR not_null_violation OR check_violation OR program_limit_exceeded OR internal_error THEN
                        GET STACKED DIAGNOSTICS v_state = RETURNED_SQLSTATE, v_message = MESSAGE_TEXT,
                                                v_constraint = CONSTRAINT_NAME, v_column = COLUMN_NAME;
                        IF NOT @schema@._refused_by_the_log(v_state, v_constraint, v_column) THEN
                            RAISE;
                        END IF;
                        -- Once more with the row images' unprintable values omitted (_omit_unprintable):
                        -- else every later change of the same row, which carries them too, would follow
                        -- it into the quarantine.
                        BEGIN
                            SELECT * INTO v_one
                              FROM @schema@._move_to_log(v_run.slot, ARRAY[v_row], v_first + v_moved, v_block, true);
                        EXCEPTION WHEN data_exception OR not_null_violation OR check_violation OR program_limit_exceeded OR internal_error THEN
                            GET STACKED DIAGNOSTICS v_again = RETURNED_SQLSTATE, v_constraint = CONSTRAINT_NAME,
                                                    v_column = COLUMN_NAME;
                            IF NOT @schema@._refused_by_the_log(v_again, v_constraint, v_column) THEN
                                RAISE;
                            END IF;
                            -- Set aside only while the sealer's path is as installed: else the failure may be
                            -- code put there for a round to send this event to the quarantine.
                            IF v_path_of IS DISTINCT FROM (v_first + v_moved) / v_size THEN
                                v_path := @schema@._sealing_path_problem(v_first + v_moved);
                                v_path_of := (v_first + v_moved) / v_size;
                            END IF;
                            IF v_path IS NOT NULL THEN
                                RAISE EXCEPTION 'an event failed to seal (%), and % (pgaudit status names it): it is '
                                                'not set aside, and nothing is sealed until that is mended', v_state, v_path
                                    USING ERRCODE = 'PA017';
                            END IF;
                            PERFORM @schema@._quarantine(v_run.slot, v_row, v_state, v_message);
                            CONTINUE;
                        END;
                    END;
                    v_moved := v_moved + v_one.moved;
                    v_hashes := v_hashes || coalesce(v_one.hashes, ''::bytea);
                    v_newest := greatest(v_newest, v_one.newest);
                END LOOP;
            END;
        END LOOP;
        EXIT WHEN v_moved = 0;
        -- The events become one block, hashed in seq order (docs/canonical-form.md).
        v_hash := @schema@._block_hash(v_block, v_first, v_first + v_moved - 1, v_moved::integer, sha256(v_hashes), v_prev);
        INSERT INTO @schema@.blocks (block_no, first_seq, last_seq, event_count, events_hash, prev_hash,
                                     block_hash, canonical_version, sealed_at, line_hashes, newest_occurred_at)
        VALUES (v_block, v_first, v_first + v_moved - 1, v_moved, sha256(v_hashes), v_prev, v_hash, 2,
                clock_timestamp(), v_hashes, v_newest);
        UPDATE @schema@.seal_state
           SET last_seq = v_first + v_moved - 1, last_sealed_at = clock_timestamp(),
               last_block_no = v_block, last_block_hash = v_hash;
        result.first_seq := coalesce(result.first_seq, v_first);
        result.last_seq := v_first + v_moved - 1;
        result.block_no := v_block;
        result.sealed := result.sealed + v_moved;
        EXIT WHEN v_moved < v_limit OR result.sealed >= max_events;
        v_first := v_first + v_moved;
        v_block := v_block + 1;
        v_prev := v_hash;
    END LOOP;

    IF result.sealed > 0 THEN
        -- One notification per round, delivered when it commits: followers wake and read from
        -- their last seq (pgaudit_py.follow). The channel is the schema's name. Not when the
        -- cluster's notification queue is half full: a full one fails every NOTIFY's commit, and
        -- any session can fill it (one that listens and stays in a transaction pins it); followers
        -- also poll.
        IF pg_notification_queue_usage() < 0.5 THEN
            PERFORM pg_notify('@schema@', result.last_seq::text);
        END IF;
    END IF;
    -- What this round deleted from, for the rotation (_empty_drained_intake).
    INSERT INTO @schema@.intake_drains AS x (slot, drained_by)
    SELECT DISTINCT s.slot, pg_current_xact_id() FROM unnest(v_slots) AS s(slot)
    ON CONFLICT (slot) DO UPDATE SET drained_by = excluded.drained_by;
    PERFORM @schema@._empty_drained_intake();
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.seal(integer) IS
    'Moves up to max_events committed pending events into event_log in one transaction, '
    'assigning seq in order; one sealer at a time; an event that cannot be sealed goes to the '
    'quarantine. Returns how many, and the seq range.';
REVOKE ALL ON FUNCTION @schema@.seal(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @schema@.seal(integer) TO @schema@_maintainer;

SET ROLE @schema@_owner;

CREATE OR REPLACE FUNCTION @schema@.seal_status()
RETURNS @schema@.seal_status
LANGUAGE sql
SECURITY DEFINER
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (SELECT count(*) FROM @schema@.event_intake),
           (SELECT min(occurred_at) FROM @schema@.event_intake),
           s.last_seq, s.last_sealed_at,
           (SELECT count(*) FROM @schema@.quarantine)
      FROM @schema@.seal_state s
$$;
COMMENT ON FUNCTION @schema@.seal_status() IS
    'Pending (committed, unsealed) events, the oldest one''s time, the last seq, when sealing last moved '
    'events, and how many events the sealer set aside in the quarantine.';

-- For schedulers that run one command at a time (pg_cron): seal until nothing is pending,
-- committing after every round so that no lock is held for the whole backlog. No SET clause: a
-- procedure with one cannot COMMIT. It is SECURITY INVOKER and calls only the pinned seal().
CREATE OR REPLACE PROCEDURE @schema@.seal_backlog(max_events integer DEFAULT 10000)
LANGUAGE plpgsql
AS $$
BEGIN
    LOOP
        EXIT WHEN (@schema@.seal(max_events)).sealed OPERATOR(pg_catalog.<) max_events;
        COMMIT;
    END LOOP;
END
$$;
COMMENT ON PROCEDURE @schema@.seal_backlog(integer) IS
    'CALL it to seal every committed pending event, max_events per transaction (what pg_cron runs).';
