-- Reading the log: list, count, monthly tallies. Readers see pending and sealed events alike.

CREATE OR REPLACE FUNCTION @schema@._check_prefixes(prefixes text[])
RETURNS void
LANGUAGE plpgsql
IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p text;
BEGIN
    IF cardinality(prefixes) > 100 THEN
        RAISE EXCEPTION 'at most 100 kind prefixes, got %', cardinality(prefixes) USING ERRCODE = 'PA005';
    END IF;
    FOREACH p IN ARRAY coalesce(prefixes, '{}') LOOP
        IF p IS NULL OR p !~ '^[A-Za-z0-9_./-]{1,128}$' THEN
            -- Never the prefix itself: messages end up in logs.
            RAISE EXCEPTION 'invalid kind prefix'
                USING ERRCODE = 'PA001',
                      HINT = 'A prefix is 1 to 128 letters, digits, _ . / -';
        END IF;
    END LOOP;
END
$$;
COMMENT ON FUNCTION @schema@._check_prefixes(text[]) IS 'Raises PA001 for a malformed kind prefix.';

DROP FUNCTION IF EXISTS @schema@.list_events(text, text, text, text, text, text, text, text, timestamptz,
                                              timestamptz, bigint, bigint, integer);
CREATE OR REPLACE FUNCTION @schema@.list_events(
    tenant_id text DEFAULT NULL,
    kind_prefix text DEFAULT NULL,
    target_type text DEFAULT NULL,
    target_id text DEFAULT NULL,
    correlation_id text DEFAULT NULL,
    outcome text DEFAULT NULL,
    actor_type text DEFAULT NULL,
    actor_id text DEFAULT NULL,
    since timestamptz DEFAULT NULL,
    until timestamptz DEFAULT NULL,
    since_seq bigint DEFAULT NULL,
    before_seq bigint DEFAULT NULL,
    page_size integer DEFAULT 50,
    before_intake_id bigint DEFAULT NULL
)
RETURNS SETOF @schema@.events
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    filters text := '';
    pending_filters text;
    taken bigint := 0;
BEGIN
    IF page_size IS NULL OR page_size < 1 OR page_size > 500 THEN
        RAISE EXCEPTION 'page_size must be between 1 and 500, got %', coalesce(page_size::text, 'NULL')
            USING ERRCODE = 'PA005';
    END IF;
    IF outcome IS NOT NULL AND outcome NOT IN ('success', 'failure') THEN
        RAISE EXCEPTION 'invalid outcome' USING ERRCODE = 'PA005', HINT = 'outcome is ''success'' or ''failure''.';
    END IF;
    IF since > until THEN
        RAISE EXCEPTION 'since (%) is after until (%)', since, until USING ERRCODE = 'PA005';
    END IF;
    PERFORM @schema@._check_prefixes(CASE WHEN kind_prefix IS NULL THEN '{}'::text[]
                                          ELSE ARRAY[kind_prefix] END);

    -- Only the filters in use reach the planner, so each query gets its index.
    IF tenant_id IS NOT NULL THEN filters := filters || ' AND e.tenant_id = $1'; END IF;
    IF kind_prefix IS NOT NULL THEN
        -- Kinds use only characters below '~' (C collation): an exact, indexable prefix range.
        filters := filters || ' AND e.kind >= $2 AND e.kind < $2 || ''~''';
    END IF;
    IF target_type IS NOT NULL THEN filters := filters || ' AND e.target_type = $3'; END IF;
    IF target_id IS NOT NULL THEN filters := filters || ' AND e.target_id = $4'; END IF;
    IF correlation_id IS NOT NULL THEN filters := filters || ' AND e.correlation_id = $5'; END IF;
    IF outcome IS NOT NULL THEN filters := filters || ' AND e.outcome = $6'; END IF;
    IF actor_type IS NOT NULL THEN filters := filters || ' AND e.actor_type = $7'; END IF;
    IF actor_id IS NOT NULL THEN filters := filters || ' AND e.actor_id = $8'; END IF;
    IF since IS NOT NULL THEN filters := filters || ' AND e.occurred_at >= $9'; END IF;
    IF until IS NOT NULL THEN filters := filters || ' AND e.occurred_at < $10'; END IF;
    IF before_seq IS NOT NULL THEN filters := filters || ' AND e.seq < $12'; END IF;

    IF since_seq IS NOT NULL THEN
        -- Forward over sealed events: seq only grows, so nothing committed late is skipped.
        RETURN QUERY EXECUTE
            'SELECT e.* FROM @schema@.events e WHERE NOT e.pending AND e.seq > $11' || filters
            || ' ORDER BY e.seq LIMIT $13'
            USING tenant_id, kind_prefix, target_type, target_id, correlation_id, outcome,
                  actor_type, actor_id, since, until, since_seq, before_seq, page_size;
        RETURN;
    END IF;
    IF before_seq IS NULL THEN
        -- Newest first: pending events lead, in the order they were written (intake_id), and
        -- before_intake_id pages back through them; sealed ones follow. The intake has no index:
        -- the page's first intake_id is found reading no row image (a query that uses no image
        -- computes none), then only the page's events are shown as the sealer will store them,
        -- not every pending one before the sort.
        pending_filters := CASE WHEN before_intake_id IS NOT NULL THEN ' AND e.intake_id < $15' ELSE '' END || filters;
        RETURN QUERY EXECUTE
            'SELECT e.* FROM @schema@.events e WHERE e.pending' || pending_filters
            || ' AND e.intake_id >= (SELECT pg_catalog.min(p.intake_id) FROM (SELECT e.intake_id FROM @schema@.events e'
            || ' WHERE e.pending' || pending_filters || ' ORDER BY e.intake_id DESC LIMIT $13) AS p)'
            || ' ORDER BY e.intake_id DESC LIMIT $13'
            USING tenant_id, kind_prefix, target_type, target_id, correlation_id, outcome,
                  actor_type, actor_id, since, until, since_seq, before_seq, page_size, taken, before_intake_id;
        GET DIAGNOSTICS taken = ROW_COUNT;
    END IF;
    RETURN QUERY EXECUTE
        'SELECT e.* FROM @schema@.events e WHERE NOT e.pending' || filters
        || ' ORDER BY e.seq DESC LIMIT $13 - $14'
        USING tenant_id, kind_prefix, target_type, target_id, correlation_id, outcome,
              actor_type, actor_id, since, until, since_seq, before_seq, page_size, taken;
END
$$;
COMMENT ON FUNCTION @schema@.list_events(text, text, text, text, text, text, text, text, timestamptz, timestamptz, bigint, bigint, integer, bigint) IS
    'Events matching every given filter. Default: newest first, pending events (by intake_id) '
    'leading, then sealed ones; before_intake_id pages backwards over pending events, then sealed '
    'ones; before_seq pages backwards over sealed events; since_seq pages forwards (ascending) '
    'over sealed events only. page_size 1..500 (default 50).';

CREATE OR REPLACE FUNCTION @schema@.count_events(
    tenant_id text DEFAULT NULL,
    since timestamptz DEFAULT NULL,
    until timestamptz DEFAULT NULL,
    by_kind_prefix text[] DEFAULT '{}'
)
RETURNS @schema@.event_count
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    result @schema@.event_count;
BEGIN
    PERFORM @schema@._check_prefixes(by_kind_prefix);
    WITH ev AS MATERIALIZED (
        SELECT e.kind FROM @schema@.events e
         WHERE (tenant_id IS NULL OR e.tenant_id = tenant_id)
           AND (since IS NULL OR e.occurred_at >= since)
           AND (until IS NULL OR e.occurred_at < until)
    ), split AS (
        SELECT p.prefix, count(ev.kind) AS n
          FROM unnest(coalesce(by_kind_prefix, '{}')) AS p(prefix)
          LEFT JOIN ev ON ev.kind >= p.prefix AND ev.kind < p.prefix || '~'
         GROUP BY p.prefix
    )
    SELECT (SELECT count(*) FROM ev),
           coalesce((SELECT jsonb_object_agg(split.prefix, split.n) FROM split), '{}')
      INTO result;
    RETURN result;
END
$$;
COMMENT ON FUNCTION @schema@.count_events(text, timestamptz, timestamptz, text[]) IS
    'How many events (pending and sealed) match, in total and per kind prefix '
    '({"prefix": count}); since inclusive, until exclusive.';

CREATE OR REPLACE FUNCTION @schema@.monthly_event_counts(
    tenant_id text DEFAULT NULL,
    month_count integer DEFAULT 12,
    by_kind_prefix text[] DEFAULT '{}'
)
RETURNS SETOF @schema@.monthly_event_count
LANGUAGE plpgsql
STABLE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_variable
DECLARE
    first_month timestamp;
BEGIN
    IF month_count IS NULL OR month_count < 1 OR month_count > 120 THEN
        RAISE EXCEPTION 'month_count must be between 1 and 120, got %', coalesce(month_count::text, 'NULL')
            USING ERRCODE = 'PA005';
    END IF;
    PERFORM @schema@._check_prefixes(by_kind_prefix);
    first_month := date_trunc('month', now() AT TIME ZONE 'UTC') - make_interval(months => month_count - 1);
    RETURN QUERY
    WITH ev AS MATERIALIZED (
        SELECT date_trunc('month', e.occurred_at AT TIME ZONE 'UTC') AS month, e.kind
          FROM @schema@.events e
         WHERE (tenant_id IS NULL OR e.tenant_id = tenant_id)
           AND e.occurred_at >= first_month AT TIME ZONE 'UTC'
    ), totals AS (
        SELECT ev.month, count(*) AS n FROM ev GROUP BY ev.month
    ), split AS (
        SELECT ev.month, p.prefix, count(*) AS n
          FROM ev JOIN unnest(coalesce(by_kind_prefix, '{}')) AS p(prefix)
            ON ev.kind >= p.prefix AND ev.kind < p.prefix || '~'
         GROUP BY ev.month, p.prefix
    )
    SELECT m.month::date,
           coalesce(t.n, 0),
           coalesce((SELECT jsonb_object_agg(p.prefix, coalesce(s.n, 0))
                       FROM unnest(coalesce(by_kind_prefix, '{}')) AS p(prefix)
                       LEFT JOIN split s ON s.month = m.month AND s.prefix = p.prefix), '{}')
      FROM generate_series(first_month, date_trunc('month', now() AT TIME ZONE 'UTC'), interval '1 month') AS m(month)
      LEFT JOIN totals t ON t.month = m.month
     ORDER BY m.month;
END
$$;
COMMENT ON FUNCTION @schema@.monthly_event_counts(text, integer, text[]) IS
    'Events per calendar month (UTC), oldest first, for the last month_count months including the '
    'current one; zero months included; with a per-prefix split.';
