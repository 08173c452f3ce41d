-- Tamper evidence: the canonical form of a sealed event and of a block (docs/canonical-form.md),
-- and verify(), which recomputes the chain and names the first block that no longer matches.

-- Canonical form: PostgreSQL's jsonb text of these fields, keys ordered as jsonb orders them (by
-- length, then bytes). Version 2 adds "origin"; a block's canonical_version says which version its
-- events are hashed in (blocks sealed before 0.2 are version 1). Written out by concatenation rather
-- than built as a jsonb and printed: the same bytes (tests hold it to jsonb_build_object) at a third
-- of the cost, which the sealer pays for every event. Values are escaped by to_json, as jsonb escapes
-- them, except those whose text is made of digits, hex, '-', ':', '.', '/', 'T' and 'Z' only (uuid,
-- xid8, inet, the timestamp). STABLE, not IMMUTABLE, so that it is inlined (to_char and to_json are
-- stable). Internal (no SET clause, executable by the owner and the sealer only): it runs under the
-- pinned search_path of seal() and verify().
DROP FUNCTION IF EXISTS @schema@._event_hash(@schema@.event_log);
DROP FUNCTION IF EXISTS @schema@._canonical_event(@schema@.event_log);
CREATE OR REPLACE FUNCTION @schema@._canonical_event(e @schema@.event_log, version smallint)
RETURNS text
LANGUAGE sql
STABLE
AS $$
    -- The images, payload and changed columns apart in one concat: a chain of || would copy the
    -- whole line so far at each step, where this holds it about twice, however long they print.
    SELECT pg_catalog.concat(
        '{"v": ' || version || ', "id": ' || coalesce('"' || e.id || '"', 'null')
            || ', "seq": ' || coalesce(e.seq::text, 'null')
            || ', "kind": ' || coalesce(pg_catalog.to_json(e.kind)::text, 'null')
            || ', "txid": ' || coalesce('"' || e.txid || '"', 'null')
            || CASE WHEN version >= 2 THEN ', "origin": ' || coalesce(pg_catalog.to_json(e.origin)::text, 'null') ELSE '' END
            || ', "changed": ',
        coalesce(e.changed::text, 'null'),
        ', "db_role": ' || coalesce(pg_catalog.to_json(e.db_role)::text, 'null')
            || ', "outcome": ' || coalesce(pg_catalog.to_json(e.outcome)::text, 'null')
            || ', "payload": ',
        coalesce(e.payload::text, 'null'),
        ', "actor_id": ' || coalesce(pg_catalog.to_json(e.actor_id)::text, 'null')
            || ', "row_after": ',
        coalesce(e.row_after::text, 'null'),
        ', "target_id": ' || coalesce(pg_catalog.to_json(e.target_id)::text, 'null')
            || ', "tenant_id": ' || coalesce(pg_catalog.to_json(e.tenant_id)::text, 'null')
            || ', "actor_type": ' || coalesce(pg_catalog.to_json(e.actor_type)::text, 'null')
            || ', "row_before": ',
        coalesce(e.row_before::text, 'null'),
        ', "client_addr": ' || coalesce('"' || e.client_addr::text || '"', 'null')
            || ', "occurred_at": '
            || coalesce('"' || pg_catalog.to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
                            -- to_char writes no era, nor an infinity: neither may hash as another time
                            || CASE WHEN e.occurred_at < '0001-01-01 00:00:00+00'::timestamptz THEN ' BC' ELSE '' END
                            || '"',
                        '"' || e.occurred_at::text || '"', 'null')
            || ', "target_type": ' || coalesce(pg_catalog.to_json(e.target_type)::text, 'null')
            || ', "schema_valid": ' || coalesce(e.schema_valid::text, 'null')
            || ', "correlation_id": ' || coalesce(pg_catalog.to_json(e.correlation_id)::text, 'null')
            || ', "idempotency_key": ' || coalesce(pg_catalog.to_json(e.idempotency_key)::text, 'null')
            || ', "application_name": ' || coalesce(pg_catalog.to_json(e.application_name)::text, 'null')
            || '}')
$$;
COMMENT ON FUNCTION @schema@._canonical_event(@schema@.event_log, smallint) IS
    'Canonical line of a sealed event in a canonical form version (1 or 2), hashed with SHA-256 into its block.';

-- What a block hashes, in seq order: each event's line hash. SQL, so that seal() and verify()
-- inline it.
CREATE OR REPLACE FUNCTION @schema@._event_hash(e @schema@.event_log, version smallint)
RETURNS bytea
LANGUAGE sql
STABLE
AS $$ SELECT pg_catalog.sha256(pg_catalog.convert_to(@schema@._canonical_event(e, version), 'UTF8')) $$;
COMMENT ON FUNCTION @schema@._event_hash(@schema@.event_log, smallint) IS 'SHA-256 of an event''s canonical line.';

CREATE OR REPLACE FUNCTION @schema@._block_hash(block_no bigint, first_seq bigint, last_seq bigint,
                                                event_count integer, events_hash bytea, prev_hash bytea)
RETURNS bytea
LANGUAGE sql
IMMUTABLE
AS $$
    SELECT pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.jsonb_build_object(
        'v', 1, 'block_no', block_no, 'first_seq', first_seq, 'last_seq', last_seq,
        'event_count', event_count, 'events_hash', pg_catalog.encode(events_hash, 'hex'),
        'prev_hash', pg_catalog.encode(prev_hash, 'hex'))::text, 'UTF8'))
$$;
COMMENT ON FUNCTION @schema@._block_hash(bigint, bigint, bigint, integer, bytea, bytea) IS
    'SHA-256 of the canonical block header (v1).';

CREATE OR REPLACE FUNCTION @schema@.verify(from_block bigint DEFAULT NULL, to_block bigint DEFAULT NULL)
RETURNS @schema@.verify_result
LANGUAGE plpgsql
SECURITY DEFINER
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r @schema@.verify_result;
    b @schema@.blocks;
    state @schema@.seal_state;
    pruned_through bigint;
    point @schema@.prune_points;
    expected_no bigint;
    expected_prev bytea;
    expected_first bigint;
    accounted_through bigint;  -- events up to here belong to a checked or a pruned block's range
    n bigint;
    outside bigint;
    hash bytea;
BEGIN
    SELECT * INTO state FROM @schema@.seal_state;
    SELECT * INTO point FROM @schema@.prune_points p ORDER BY p.block_no DESC LIMIT 1;
    pruned_through := coalesce(point.block_no, 0);
    r.ok := true;
    r.blocks_checked := 0;
    r.events_checked := 0;
    r.pending := (SELECT count(*) FROM @schema@.event_intake);
    r.retained_from_block := pruned_through + 1;
    r.retained_from_seq := (SELECT min(l.seq) FROM @schema@.event_log l);
    SELECT max(a.last_block), max(a.last_seq) INTO r.archived_through_block, r.archived_through_seq
      FROM @schema@.archive_batches a WHERE a.state = 'deleted';
    expected_no := greatest(coalesce(from_block, 1), 1);
    IF expected_no = 1 THEN
        expected_prev := decode(repeat('00', 32), 'hex');
        expected_first := state.chain_start_seq + 1;
    ELSE
        SELECT p.block_hash, p.last_seq + 1 INTO expected_prev, expected_first
          FROM @schema@.blocks p WHERE p.block_no = expected_no - 1;
    END IF;
    accounted_through := expected_first - 1;

    FOR b IN SELECT * FROM @schema@.blocks x
              WHERE x.block_no >= expected_no AND (to_block IS NULL OR x.block_no <= to_block)
              ORDER BY x.block_no LOOP
        IF b.block_no <> expected_no THEN
            r.problem := format('block %s is missing', expected_no);
            r.bad_block := expected_no;
        ELSIF b.prev_hash IS DISTINCT FROM expected_prev THEN
            r.problem := format('broken link: block %s does not name the hash of block %s', b.block_no, b.block_no - 1);
            r.bad_block := b.block_no;
        ELSIF b.first_seq IS DISTINCT FROM expected_first THEN
            r.problem := format('block %s starts at seq %s, not where block %s ended', b.block_no, b.first_seq, b.block_no - 1);
            r.bad_block := b.block_no;
        ELSIF @schema@._block_hash(b.block_no, b.first_seq, b.last_seq, b.event_count, b.events_hash, b.prev_hash)
              <> b.block_hash THEN
            r.problem := format('block %s: the block row was changed', b.block_no);
            r.bad_block := b.block_no;
        ELSIF b.block_no > pruned_through
              AND (SELECT min(l.seq) FROM @schema@.event_log l
                    WHERE l.seq > accounted_through AND l.seq < b.first_seq) IS NOT NULL THEN
            -- pruned blocks keep their rows but lose their events: one that reappears was put there by hand
            r.problem := format('event seq %s is outside every block',
                                (SELECT min(l.seq) FROM @schema@.event_log l
                                  WHERE l.seq > accounted_through AND l.seq < b.first_seq));
            r.bad_block := b.block_no;
        ELSIF b.block_no > pruned_through THEN
            SELECT count(*), sha256(string_agg(@schema@._event_hash(l, b.canonical_version), ''::bytea ORDER BY l.seq)),
                   count(*) FILTER (WHERE l.block_no IS DISTINCT FROM b.block_no)
              INTO n, hash, outside
              FROM @schema@.event_log l WHERE l.seq BETWEEN b.first_seq AND b.last_seq;
            r.events_checked := r.events_checked + n;
            IF n < b.event_count THEN
                r.problem := format('block %s: %s of its %s events are missing', b.block_no, b.event_count - n, b.event_count);
                r.bad_block := b.block_no;
            ELSIF hash IS DISTINCT FROM b.events_hash THEN
                -- Its line hashes, when they still hash to events_hash, say which event it was.
                SELECT format('block %s: event seq %s was changed', b.block_no, l.seq) INTO r.problem
                  FROM @schema@.event_log l
                 WHERE b.line_hashes IS NOT NULL AND pg_catalog.sha256(b.line_hashes) = b.events_hash
                   AND l.seq BETWEEN b.first_seq AND b.last_seq
                   AND @schema@._event_hash(l, b.canonical_version)
                       IS DISTINCT FROM pg_catalog.substr(b.line_hashes, (l.seq - b.first_seq)::integer * 32 + 1, 32)
                 ORDER BY l.seq LIMIT 1;
                r.problem := coalesce(r.problem, format('block %s: an event was changed', b.block_no));
                r.bad_block := b.block_no;
            ELSIF outside > 0 THEN
                r.problem := format('block %s: %s of its events claim another block', b.block_no, outside);
                r.bad_block := b.block_no;
            END IF;
        END IF;
        EXIT WHEN r.problem IS NOT NULL;
        IF b.block_no > pruned_through THEN
            accounted_through := b.last_seq;
        END IF;
        r.blocks_checked := r.blocks_checked + 1;
        expected_no := b.block_no + 1;
        expected_prev := b.block_hash;
        expected_first := b.last_seq + 1;
    END LOOP;

    IF r.problem IS NULL AND to_block IS NULL THEN
        IF state.last_block_no >= expected_no THEN
            r.problem := format('block %s is missing (the sealer''s head is block %s)', expected_no, state.last_block_no);
            r.bad_block := expected_no;
        -- The sealer's head is where the last block ends: a tail cut with the head's block number
        -- lowered, but not its seq and hash, shows here (trial 88, v9; one that sets all three takes
        -- a checkpoint to find: docs/tamper-evidence.md).
        ELSIF expected_prev IS NOT NULL  -- from a block past the last: no end walked to
              AND (state.last_block_no, state.last_seq, state.last_block_hash)
                  IS DISTINCT FROM (expected_no - 1, expected_first - 1, expected_prev) THEN
            r.problem := format('the sealer''s head (block %s, seq %s) is not where the last block ends (block %s, seq %s, '
                                'and its hash): blocks may have been cut from the end', state.last_block_no, state.last_seq,
                                expected_no - 1, expected_first - 1);
            r.bad_block := expected_no;
        ELSE
            SELECT min(l.seq) INTO outside FROM @schema@.event_log l
             WHERE l.seq > coalesce(accounted_through, expected_first - 1);
            IF outside IS NOT NULL THEN
                r.problem := format('event seq %s is outside every block (after block %s)', outside, expected_no - 1);
                r.bad_block := expected_no;
            END IF;
        END IF;
    END IF;
    -- The events of blocks up to the latest prune point are not checked. So that point must be one
    -- prune_events or delete_archived made: each records it in an event of its own (sealed after
    -- it, pending, or set aside by the sealer, which records that too). Without one, the events were
    -- removed by hand.
    -- A point numbered below 1 names no block: one no function made, whatever range is verified.
    IF r.problem IS NULL AND (pruned_through >= coalesce(from_block, 1) OR point.block_no < 1) THEN
        SELECT x.* INTO b FROM @schema@.blocks x WHERE x.block_no = point.block_no;
        IF b.block_hash IS DISTINCT FROM point.block_hash OR b.last_seq IS DISTINCT FROM point.last_seq THEN
            r.problem := format('block %s: its prune point does not match the block', point.block_no);
            r.bad_block := point.block_no;
        ELSIF NOT EXISTS (
                SELECT 1
                  FROM (SELECT l.kind, l.payload, l.origin FROM @schema@.event_log l
                         WHERE l.kind IN ('audit.pruned', 'audit.archive_deleted') AND l.seq > point.last_seq
                        UNION ALL
                        SELECT i.kind, i.payload, i.origin FROM @schema@.event_intake i
                         WHERE i.kind IN ('audit.pruned', 'audit.archive_deleted')
                        UNION ALL
                        SELECT q.kind, q.payload, q.origin FROM @schema@.quarantine q
                         WHERE q.kind IN ('audit.pruned', 'audit.archive_deleted')
                           -- set aside by seal(), which says so in an event of its own, naming it
                           AND EXISTS (SELECT 1 FROM @schema@.event_log l
                                        WHERE l.kind = 'audit.event_quarantined' AND l.target_id = q.id::text
                                          AND l.origin = 'system' AND l.payload ->> 'kind' = q.kind
                                          AND l.payload ->> 'intake_id' = q.intake_id::text
                                       UNION ALL
                                       SELECT 1 FROM @schema@.event_intake i
                                        WHERE i.kind = 'audit.event_quarantined' AND i.target_id = q.id::text
                                          AND i.origin = 'system' AND i.payload ->> 'kind' = q.kind
                                          AND i.payload ->> 'intake_id' = q.intake_id::text)) e
                 WHERE e.origin IS DISTINCT FROM 'record' AND e.origin IS DISTINCT FROM 'capture'
                   AND CASE e.kind
                       WHEN 'audit.pruned' THEN e.payload ->> 'last_block' = point.block_no::text
                                                AND e.payload ->> 'last_block_hash' = encode(point.block_hash, 'hex')
                       ELSE e.payload ->> 'last_seq' = point.last_seq::text END) THEN
            r.problem := format('blocks through %s: their events were removed, and no prune or archive deletion '
                                'recorded it', point.block_no);
            r.bad_block := point.block_no;
        END IF;
    END IF;
    r.ok := r.problem IS NULL;
    RETURN r;
END
$$;
COMMENT ON FUNCTION @schema@.verify(bigint, bigint) IS
    'Recomputes the hash chain (all blocks, or from_block..to_block) and names the first block that '
    'does not match and why; also reports pending events, where retained history starts and how far '
    'history was archived.';
