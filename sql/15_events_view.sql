-- The one view over the log: sealed and pending events alike.

-- The changed columns of an UPDATE, {"column": {"old": ..., "new": ...}}; computed by the sealer
-- (and by the events view for pending events), never in the writer's transaction.
CREATE OR REPLACE FUNCTION @schema@._changed(before jsonb, after jsonb)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_object_agg(a.key, jsonb_build_object('old', before -> a.key, 'new', a.value)), '{}')
      FROM jsonb_each(after) AS a
     WHERE before -> a.key IS DISTINCT FROM a.value
$$;
COMMENT ON FUNCTION @schema@._changed(jsonb, jsonb) IS
    'Columns whose values differ between two row images, with old and new values.';

-- The changed columns when the stored images are not the captured ones: values the sealer replaced
-- by markers (wild numbers tamed, the second attempt's omissions), or the capture did (its null
-- entries in `passed`: columns it found changed before it replaced them). Compared as captured,
-- shown as stored: two wild numbers, or a value and a written copy of its own marker, store alike
-- but are a change. The capture's other entries (redacted columns) are kept.
CREATE OR REPLACE FUNCTION @schema@._changed_as_captured(passed jsonb, captured_before jsonb, captured_after jsonb,
                                                         before jsonb, after jsonb)
RETURNS jsonb
LANGUAGE sql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT jsonb_object_agg(p.key, CASE WHEN p.value = 'null' THEN jsonb_build_object('old', before -> p.key,
                                                                                                       'new', after -> p.key)
                                                         ELSE p.value END)
                       FROM jsonb_each(passed) AS p), '{}')
           || coalesce((SELECT jsonb_object_agg(a.key, jsonb_build_object('old', before -> a.key, 'new', after -> a.key))
                          FROM jsonb_each(captured_after) AS a
                         WHERE captured_before -> a.key IS DISTINCT FROM a.value), '{}')
$$;
COMMENT ON FUNCTION @schema@._changed_as_captured(jsonb, jsonb, jsonb, jsonb, jsonb) IS
    'Columns that differ between two captured row images, with their stored old and new values, and the '
    'capture''s own entries.';

-- Whether a pending event's canonical line, as the sealer's first attempt would store it (these
-- images, `altered` when it replaced values in them), passes the 16 MiB that _sealable_hash refuses:
-- such an event is stored by the second attempt, through _omit_unprintable, and the events view
-- shows it so. Its seq is counted as the next to seal: a line within a few bytes of the bound may be
-- judged by a seq of fewer digits than it will have. The intake row comes as its columns, not as one
-- value: a whole-row reference would make the view copy every pending row, counted or not. It reads
-- seal_state as its caller: whoever reads pending events needs SELECT on it (the reader has it; the
-- pruner reads only sealed ones, whose half of the view calls nothing).
CREATE OR REPLACE FUNCTION @schema@._line_too_long(
    id uuid, kind text, txid xid8, origin text, db_role text, outcome text, actor_id text, target_id text,
    tenant_id text, actor_type text, client_addr inet, occurred_at timestamptz, target_type text,
    schema_valid boolean, correlation_id text, idempotency_key text, application_name text, payload jsonb,
    changed jsonb, captured_before jsonb, captured_after jsonb, before jsonb, after jsonb, altered boolean)
RETURNS boolean
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    e @schema@.event_log;
BEGIN
    e.seq := (SELECT s.last_seq + 1 FROM @schema@.seal_state s);
    e.id := coalesce(id, '00000000-0000-7000-8000-000000000000');  -- the length of any
    e.kind := kind;
    e.txid := txid;
    e.origin := origin;
    e.db_role := db_role;
    e.outcome := outcome;
    e.actor_id := actor_id;
    e.target_id := target_id;
    e.tenant_id := tenant_id;
    e.actor_type := actor_type;
    e.client_addr := client_addr;
    e.occurred_at := occurred_at;
    e.target_type := target_type;
    e.schema_valid := schema_valid;
    e.correlation_id := correlation_id;
    e.idempotency_key := idempotency_key;
    e.application_name := application_name;
    e.row_before := before;
    e.row_after := after;
    e.payload := CASE WHEN altered
                      THEN @schema@._note_omitted(@schema@._note_omitted(payload,
                               'row_before', @schema@._replaced_keys(captured_before, before)),
                               'row_after', @schema@._replaced_keys(captured_after, after))
                      ELSE payload END;
    e.changed := CASE WHEN before IS NULL OR after IS NULL THEN NULL
                      WHEN changed IS NULL AND NOT altered THEN @schema@._changed(before, after)
                      ELSE @schema@._changed_as_captured(changed, captured_before, captured_after, before, after) END;
    RETURN octet_length(@schema@._canonical_event(e, 2::smallint)) > 16777216;
END
$$;
COMMENT ON FUNCTION @schema@._line_too_long(uuid, text, xid8, text, text, text, text, text, text, text, inet, timestamptz,
                                             text, boolean, text, text, text, jsonb, jsonb, jsonb, jsonb, jsonb, jsonb,
                                             boolean) IS
    'Whether a pending event''s canonical line, as seal() would first store it, is over 16 MiB.';

CREATE OR REPLACE VIEW @schema@.events AS
SELECT l.seq, false AS pending, l.id, l.tenant_id, l.actor_type, l.actor_id, l.db_role,
       l.client_addr, l.application_name, l.kind, l.target_type, l.target_id, l.outcome,
       l.correlation_id, l.idempotency_key, l.txid, l.occurred_at, l.sealed_at, l.payload,
       l.schema_valid, l.row_before, l.row_after, l.changed, l.block_no, l.origin, NULL::bigint AS intake_id
  FROM @schema@.event_log l
UNION ALL
SELECT NULL::bigint, true, i.id, i.tenant_id, i.actor_type, i.actor_id, i.db_role,
       i.client_addr, i.application_name, i.kind, i.target_type, i.target_id, i.outcome,
       i.correlation_id, i.idempotency_key, i.txid, i.occurred_at, NULL::timestamptz,
       CASE WHEN t.altered
            THEN @schema@._note_omitted(@schema@._note_omitted(i.payload,
                     'row_before', @schema@._replaced_keys(i.row_before, t.row_before)),
                     'row_after', @schema@._replaced_keys(i.row_after, t.row_after))
            ELSE i.payload END,
       i.schema_valid, t.row_before, t.row_after,
       CASE WHEN t.row_before IS NULL OR t.row_after IS NULL THEN NULL
            WHEN i.changed IS NULL AND NOT t.altered THEN @schema@._changed(t.row_before, t.row_after)
            ELSE @schema@._changed_as_captured(i.changed, i.row_before, i.row_after, t.row_before, t.row_after) END,
       NULL::bigint, i.origin, i.intake_id
  FROM @schema@.event_intake i,
       -- as the sealer will store them (30_sealing.sql): wild numbers tamed (14_wild_numbers.sql), and
       -- when an image is nested too deep to walk or to tame, or the line would pass 16 MiB, both
       -- through _omit_unprintable (its second attempt)
       LATERAL (SELECT CASE WHEN v.omit THEN @schema@._omit_unprintable(i.row_before) ELSE v.first_before END AS row_before,
                       CASE WHEN v.omit THEN @schema@._omit_unprintable(i.row_after) ELSE v.first_after END AS row_after,
                       v.omit OR v.altered AS altered
                  FROM (SELECT u.first_before, u.first_after, u.altered,
                               CASE WHEN u.deep THEN true
                                    ELSE @schema@._line_too_long(
                                             i.id, i.kind, i.txid, i.origin, i.db_role, i.outcome, i.actor_id, i.target_id,
                                             i.tenant_id, i.actor_type, i.client_addr, i.occurred_at, i.target_type,
                                             i.schema_valid, i.correlation_id, i.idempotency_key, i.application_name,
                                             i.payload, i.changed, i.row_before, i.row_after,
                                             u.first_before, u.first_after, u.altered) END AS omit
                          FROM (SELECT w.deep, w.before OR w.after AS altered,
                                       CASE WHEN w.before THEN w.tamed_before ELSE i.row_before END AS first_before,
                                       CASE WHEN w.after THEN w.tamed_after ELSE i.row_after END AS first_after
                                  FROM (SELECT x.before, x.after, x.tamed_before, x.tamed_after,
                                               x.walked_deep OR (x.before AND x.tamed_before IS NULL) OR (x.after AND x.tamed_after IS NULL) AS deep
                                          FROM (SELECT y.before, y.after, y.walked_deep,
                                                       CASE WHEN y.before THEN @schema@._tame_numbers_caught(i.row_before) END AS tamed_before,
                                                       CASE WHEN y.after THEN @schema@._tame_numbers_caught(i.row_after) END AS tamed_after
                                                  FROM (SELECT coalesce(z.before, false) AS before, coalesce(z.after, false) AS after,
                                                               (z.before IS NULL AND i.row_before IS NOT NULL)
                                                               OR (z.after IS NULL AND i.row_after IS NOT NULL) AS walked_deep
                                                          FROM (SELECT @schema@._wild_numbers_walked(i.row_before) AS before,
                                                                       @schema@._wild_numbers_walked(i.row_after) AS after
                                                                OFFSET 0) z) y
                                                OFFSET 0) x) w
                                OFFSET 0) u
                        OFFSET 0) v
                OFFSET 0) t;
COMMENT ON VIEW @schema@.events IS
    'Every event: sealed ones (pending = false, with seq) and pending ones not yet sealed (seq NULL); '
    'origin says whether record(), a capture trigger or pgaudit_py itself wrote it; intake_id orders pending '
    'events as they will be sealed.';
