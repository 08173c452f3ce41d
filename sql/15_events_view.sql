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

CREATE OR REPLACE VIEW @schema@.events AS
SELECT l.seq, false AS pending, l.id, l.tenant_id, l.actor_type, l.actor_id, l.db_role,
       l.client_addr, l.application_name, l.kind, l.target_type, l.target_id, l.outcome,
       l.correlation_id, l.idempotency_key, l.txid, l.occurred_at, l.sealed_at, l.payload,
       l.schema_valid, l.row_before, l.row_after, l.changed, l.block_no, l.origin, NULL::bigint AS intake_id
  FROM @schema@.event_log l
UNION ALL
SELECT NULL::bigint, true, i.id, i.tenant_id, i.actor_type, i.actor_id, i.db_role,
       i.client_addr, i.application_name, i.kind, i.target_type, i.target_id, i.outcome,
       i.correlation_id, i.idempotency_key, i.txid, i.occurred_at, NULL::timestamptz, i.payload,
       i.schema_valid, t.row_before, t.row_after,
       CASE WHEN t.row_before IS NOT NULL AND t.row_after IS NOT NULL
            THEN coalesce(i.changed, '{}') || @schema@._changed(t.row_before, t.row_after) END,
       NULL::bigint, i.origin, i.intake_id
  FROM @schema@.event_intake i,
       -- as the sealer will store them: wild numbers tamed (14_wild_numbers.sql)
       LATERAL (SELECT CASE WHEN @schema@._wild_numbers(i.row_before) THEN @schema@._tame_numbers(i.row_before)
                            ELSE i.row_before END AS row_before,
                       CASE WHEN @schema@._wild_numbers(i.row_after) THEN @schema@._tame_numbers(i.row_after)
                            ELSE i.row_after END AS row_after) t;
COMMENT ON VIEW @schema@.events IS
    'Every event: sealed ones (pending = false, with seq) and pending ones not yet sealed (seq NULL); '
    'origin says whether record(), a capture trigger or pgaudit_py itself wrote it; intake_id orders pending '
    'events as they will be sealed.';
