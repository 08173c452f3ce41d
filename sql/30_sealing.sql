-- Sealing: the one sequencer that moves committed intake rows into the log and assigns seq.

CREATE OR REPLACE FUNCTION @schema@.seal(max_events integer DEFAULT 10000)
RETURNS @schema@.seal_result
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET jit = off  -- the statement below looks costly enough to compile, at every round: slower by half
AS $$
DECLARE
    v_last bigint;
    v_block bigint;
    v_prev bytea;
    v_events_hash bytea;
    v_hash bytea;
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
    -- One sealer at a time: the row lock is held until this transaction ends.
    SELECT s.last_seq, s.last_block_no + 1, s.last_block_hash INTO v_last, v_block, v_prev
      FROM @schema@.seal_state s FOR UPDATE;

    -- The batch is found by one scan of the intake and deleted by its row addresses, which stay
    -- put: intake rows are never updated, and only the one sealer deletes them.
    WITH moved AS (
        DELETE FROM @schema@.event_intake i
         WHERE i.ctid = ANY (ARRAY(SELECT b.ctid FROM @schema@.event_intake b ORDER BY b.intake_id LIMIT max_events))
        RETURNING i.*
    ), sealed AS (
        INSERT INTO @schema@.event_log AS l (
            seq, id, tenant_id, actor_type, actor_id, db_role, client_addr, application_name,
            kind, target_type, target_id, outcome, correlation_id, idempotency_key, txid,
            occurred_at, sealed_at, payload, schema_valid, row_before, row_after, changed, block_no)
        SELECT v_last + row_number() OVER (ORDER BY m.intake_id),
               coalesce(m.id, gen_random_uuid()), m.tenant_id, m.actor_type, m.actor_id,
               m.db_role, m.client_addr, m.application_name, m.kind, m.target_type, m.target_id,
               m.outcome, m.correlation_id, m.idempotency_key, m.txid, m.occurred_at,
               clock_timestamp(), m.payload, m.schema_valid, m.row_before, m.row_after,
               CASE WHEN m.row_before IS NOT NULL AND m.row_after IS NOT NULL
                    THEN coalesce(m.changed, '{}') || @schema@._changed(m.row_before, m.row_after) END,
               v_block
          FROM moved m
        RETURNING l.seq, @schema@._event_hash(l) AS hash
    )
    -- The round's events become one block, hashed in seq order (docs/canonical-form.md).
    SELECT count(*), min(s.seq), max(s.seq),
           sha256(string_agg(s.hash, ''::bytea ORDER BY s.seq))
      INTO result.sealed, result.first_seq, result.last_seq, v_events_hash
      FROM sealed s;

    IF result.sealed > 0 THEN
        v_hash := @schema@._block_hash(v_block, result.first_seq, result.last_seq, result.sealed::integer,
                                       v_events_hash, v_prev);
        INSERT INTO @schema@.blocks (block_no, first_seq, last_seq, event_count, events_hash, prev_hash,
                                     block_hash, canonical_version, sealed_at)
        VALUES (v_block, result.first_seq, result.last_seq, result.sealed, v_events_hash, v_prev, v_hash, 1,
                clock_timestamp());
        UPDATE @schema@.seal_state
           SET last_seq = result.last_seq, last_sealed_at = clock_timestamp(),
               last_block_no = v_block, last_block_hash = v_hash;
        result.block_no := v_block;
    END IF;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.seal(integer) IS
    'Moves up to max_events committed pending events into event_log in one transaction, '
    'assigning seq in order; one sealer at a time. Returns how many, and the seq range.';

CREATE OR REPLACE FUNCTION @schema@.seal_status()
RETURNS @schema@.seal_status
LANGUAGE sql
SECURITY DEFINER
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (SELECT count(*) FROM @schema@.event_intake),
           (SELECT min(occurred_at) FROM @schema@.event_intake),
           s.last_seq, s.last_sealed_at
      FROM @schema@.seal_state s
$$;
COMMENT ON FUNCTION @schema@.seal_status() IS
    'Pending (committed, unsealed) events, the oldest one''s time, the last seq and when sealing last moved events.';

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
