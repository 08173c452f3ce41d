-- A counter row names its window's length, so that rows whose windows have passed can be
-- deleted (purge_rate_counters, run by the worker): every new key added a row for good, and a
-- writer making up keys grew the table by gigabytes an hour. Rows from before this release have
-- none and are left alone.
ALTER TABLE rate_counters ADD COLUMN window_seconds integer;
