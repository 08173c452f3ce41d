"""Benchmark: 8 clients writing for one tenant, with limits set too high to refuse, against no limits.

Run: python bench/rate_limit.py [--seconds 10] [--rounds 3]

All sides run the same pgbench script (settings, one INSERT, commit) as an ordinary login role
(the maintainer and superusers are never limited); only what runs at each statement differs.
Besides the limit itself, two floors put its figure in context: a SECURITY DEFINER statement
trigger with a pinned search_path that does nothing, and one that only adds one to a counter row
(16 rows, one per backend's shard): what any exact, per-write counter kept in a table costs,
before it has looked up a limit or a key. The last floor looks up its table's limit and adds one
to two counter rows, as a write counted per user and per tenant needs at least: no key, no
window, no check of room or of who is exempt. Medians of --rounds, rotating which side goes first; a
throwaway cluster with default durability.
"""

from __future__ import annotations

import argparse

import psycopg
from common import bench_database, medians, pgbench

SCRIPT = """BEGIN;
SELECT set_config('pgaudit_py.tenant_id', 't1', true), set_config('pgaudit_py.actor_id', 'user' || :client_id, true);
INSERT INTO writes (v) VALUES (1);
COMMIT;
"""

# The floors: for comparison only, in the throwaway database, never part of the product.
FLOORS = """
CREATE TABLE bench_counters (shard integer PRIMARY KEY, n bigint NOT NULL) WITH (fillfactor = 50);
INSERT INTO bench_counters SELECT s, 0 FROM generate_series(0, 15) s;
CREATE UNLOGGED TABLE bench_unlogged_counters (shard integer PRIMARY KEY, n bigint NOT NULL) WITH (fillfactor = 50);
INSERT INTO bench_unlogged_counters SELECT s, 0 FROM generate_series(0, 15) s;
CREATE FUNCTION bench_empty_trigger() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$ BEGIN RETURN NULL; END $$;
CREATE FUNCTION bench_counter_trigger() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE public.bench_counters SET n = n + 1 WHERE shard = pg_backend_pid() % 16;
    RETURN NULL;
END $$;
CREATE TABLE bench_limits (relid oid PRIMARY KEY, per_user integer, per_tenant integer);
CREATE FUNCTION bench_two_counters_trigger() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l record;
BEGIN
    SELECT * INTO l FROM public.bench_limits WHERE relid = TG_RELID;
    UPDATE public.bench_counters SET n = n + 1 WHERE shard = pg_backend_pid() % 8;
    UPDATE public.bench_counters SET n = n + 1 WHERE shard = 8 + pg_backend_pid() % 8;
    RETURN NULL;
END $$;
CREATE FUNCTION bench_unlogged_counter_trigger() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE public.bench_unlogged_counters SET n = n + 1 WHERE shard = pg_backend_pid() % 16;
    RETURN NULL;
END $$;
"""

SIDES = {
    "none": "no limits",
    "limits": "limits (never reached)",
    "empty": "floor: an empty trigger",
    "counter": "floor: a trigger adding one to a counter row",
    "unlogged_counter": "floor: the same, counter row unlogged",
    "two_counters": "floor: the limit looked up, two counter rows",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    with bench_database() as cluster:
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
            conn.execute("CREATE ROLE bench_writer LOGIN")
            conn.execute("CREATE TABLE writes (id bigserial PRIMARY KEY, v int)")
            conn.execute("GRANT INSERT ON writes TO bench_writer; GRANT USAGE ON writes_id_seq TO bench_writer")
            conn.execute(FLOORS)
            conn.execute("INSERT INTO bench_limits VALUES ('writes'::regclass, 10000000, 10000000)")

            def tps(side: str) -> float:
                conn.execute("SELECT audit.disable_rate_limit('writes')")
                conn.execute("DROP TRIGGER IF EXISTS bench_floor ON writes")
                if side == "limits":
                    conn.execute("SELECT audit.enable_rate_limit('writes', per_user_per_minute => 10000000,"
                                 " per_tenant_per_minute => 10000000)")
                elif side != "none":
                    conn.execute(f"CREATE TRIGGER bench_floor BEFORE INSERT ON writes FOR EACH STATEMENT"
                                 f" EXECUTE FUNCTION bench_{side}_trigger()")
                return pgbench(cluster, "bench", SCRIPT, clients=8, seconds=args.seconds, user="bench_writer")

            rates = medians(args.rounds, list(SIDES), tps)
        # A refusal would have aborted a pgbench client, and pgbench() would have raised.
        print("8 clients, one tenant, one INSERT per transaction:")
        for side, label in SIDES.items():
            print(f"  {label:47s} {rates[side]:7.0f} tps  {rates[side] / rates['none']:.2f}")
        print("bar: limits at least 0.8 of no limits")


if __name__ == "__main__":
    main()
