-- Write rate limits: the limits, and the sharded counters that enforce them.

CREATE TABLE rate_limits (
    scope text NOT NULL CHECK (scope IN ('table', 'operation')),
    target text NOT NULL,  -- a table's oid, or an operation's name
    per_user integer CHECK (per_user > 0),
    per_tenant integer CHECK (per_tenant > 0),
    per_key integer CHECK (per_key > 0),
    window_seconds integer NOT NULL DEFAULT 60 CHECK (window_seconds BETWEEN 1 AND 86400),
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text NOT NULL,
    PRIMARY KEY (scope, target)
);
COMMENT ON TABLE rate_limits IS 'Write limits per table (per user and per tenant) and per named operation.';

-- One row per (key, shard): a sliding-window counter (this window's count and the previous
-- window's). A writer takes a shard whose advisory lock is free, so writers do not queue behind
-- each other's open transactions; each shard admits its share of the limit, so together they
-- admit no more.
CREATE TABLE rate_counters (
    key text NOT NULL,
    shard integer NOT NULL,
    window_no bigint NOT NULL,  -- epoch / window length, rounded down
    count integer NOT NULL,
    prev_count integer NOT NULL,
    PRIMARY KEY (key, shard)
) WITH (fillfactor = 50);  -- room for HOT updates: a counter row is rewritten by every write
COMMENT ON TABLE rate_counters IS 'Sliding-window counters, sharded per key.';
