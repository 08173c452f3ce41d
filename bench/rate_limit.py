"""Benchmark: 8 clients writing for one tenant, with limits set too high to refuse, against no limits.

Run: python bench/rate_limit.py [--seconds 10] [--rounds 3]

Both sides run the same pgbench script (settings, one INSERT, commit) as an ordinary login role
(the maintainer and superusers are never limited); only the limit differs. Median of --rounds,
alternating which side goes first; a throwaway cluster with default durability.
"""

from __future__ import annotations

import argparse

import psycopg
from common import alternate, bench_database, pgbench

SCRIPT = """BEGIN;
SELECT set_config('pgaudit_py.tenant_id', 't1', true), set_config('pgaudit_py.actor_id', 'user' || :client_id, true);
INSERT INTO writes (v) VALUES (1);
COMMIT;
"""


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

            def tps(limited: bool) -> float:
                if limited:
                    conn.execute("SELECT audit.enable_rate_limit('writes', per_user_per_minute => 10000000,"
                                 " per_tenant_per_minute => 10000000)")
                else:
                    conn.execute("SELECT audit.disable_rate_limit('writes')")
                return pgbench(cluster, "bench", SCRIPT, clients=8, seconds=args.seconds, user="bench_writer")

            unlimited, limited = alternate(args.rounds, tps)
        # A refusal would have aborted a pgbench client, and pgbench() would have raised.
        print(f"8 clients, one tenant: {unlimited:.0f} tps without limits, {limited:.0f} tps with limits"
              f" (never reached): {limited / unlimited:.2f} (bar: at least 0.8)")


if __name__ == "__main__":
    main()
