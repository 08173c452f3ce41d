"""Benchmark: instructions a single-row write costs, tracked or limited, against the same write untracked.

Run: python bench/instructions.py [--statements 200]

Wall-clock ratios of single-row writes move by 0.1 between runs on this shared 2-core machine
(docs/benchmarks.md), more than most changes to the write path. Instructions do not: each workload
runs in a single-user backend under callgrind (valgrind), counting only inside PortalRun (the
statements' execution, not their parsing), once with 20 statements and once with 20 more, and the
difference is divided by the number added. Each statement is its own transaction, as a
pgbench client's is, so what PL/pgSQL sets up again in every transaction is counted.

The floors, for comparison only: a statement trigger that inserts its rows' jsonb into a
one-column table (the least a trigger-based capture writes), and a limit trigger that only adds
one to a counter row (bench/rate_limit.py's floor).
"""

from __future__ import annotations

import argparse
import re
import shutil

import psycopg
from rate_limit import FLOORS

from pgaudit_py import install
from pgaudit_py.tempdb import TemporaryCluster

SETUP = """
CREATE ROLE bench_writer LOGIN;
CREATE TABLE u (id int PRIMARY KEY, a int, b text);
CREATE TABLE t (id int PRIMARY KEY, a int, b text);
CREATE TABLE f (id int PRIMARY KEY, a int, b text);
CREATE SEQUENCE ids;
INSERT INTO u SELECT g, g, 'x' FROM generate_series(1, 1000) g;
INSERT INTO t SELECT g, g, 'x' FROM generate_series(1, 1000) g;
SELECT audit.enable_tracking('t');
CREATE TABLE sink (j jsonb);
CREATE FUNCTION floor_capture() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO public.sink SELECT pg_catalog.to_jsonb(x.*) FROM new_rows AS x;
    RETURN NULL;
END $$;
CREATE TRIGGER floor_capture AFTER INSERT ON f REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION floor_capture();
CREATE TABLE w_none (id bigserial PRIMARY KEY, v int);
CREATE TABLE w_limited (id bigserial PRIMARY KEY, v int);
CREATE TABLE w_counter (id bigserial PRIMARY KEY, v int);
GRANT INSERT ON w_none, w_limited, w_counter TO bench_writer;
GRANT USAGE ON w_none_id_seq, w_limited_id_seq, w_counter_id_seq TO bench_writer;
SELECT audit.enable_rate_limit('w_limited', per_user_per_minute => 10000000, per_tenant_per_minute => 10000000);
CREATE TRIGGER bench_floor BEFORE INSERT ON w_counter FOR EACH STATEMENT EXECUTE FUNCTION bench_counter_trigger();
"""

WRITE = "INSERT INTO {table} (id, a, b) VALUES (nextval('ids') + 1000000, 1, 'x')"
UPDATE = "UPDATE {table} SET a = a + 1 WHERE id = {n} % 1000 + 1"
# As bench/rate_limit.py's clients: the context, one INSERT, commit.
LIMITED = ("BEGIN\nSELECT set_config('pgaudit_py.tenant_id', 't1', true),"
           " set_config('pgaudit_py.actor_id', 'user' || {n} % 8, true)\nINSERT INTO {table} (v) VALUES (1)\nCOMMIT")

WORKLOADS = [  # label, statement template, tables (the first is the baseline)
    ("single-row INSERT", WRITE, ["u", "t", "f"]),
    ("single-row UPDATE by key", UPDATE, ["u", "t"]),
    ("INSERT under a rate limit (a transaction)", LIMITED, ["w_none", "w_limited", "w_counter"]),
]
LABELS = {"u": "untracked", "t": "tracked", "f": "floor: trigger writing the rows' jsonb",
          "w_none": "no limit", "w_limited": "limited (never reached)", "w_counter": "floor: one counter row"}


def instructions(cluster: TemporaryCluster, template: str, table: str, statements: int) -> int:
    """Instructions executed inside PortalRun for `statements` statements (after as many warm-up ones)."""
    lines = [template.format(table=table, n=n) for n in range(statements)]
    script = "SET SESSION AUTHORIZATION bench_writer\n" if template is LIMITED else ""
    script += "\n".join(lines) + "\n"
    wrapper = ["valgrind", "--tool=callgrind", "--collect-atstart=no", "--toggle-collect=PortalRun",
               f"--callgrind-out-file={cluster.directory}/callgrind.out"]
    done = cluster.single_user("bench", script, wrapper)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or not found or "ERROR" in done.stderr:
        raise RuntimeError(f"the single-user run failed: {done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=200)
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        raise SystemExit("bench/instructions.py needs valgrind (apt-get install valgrind)")

    with TemporaryCluster.start() as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE bench")
        with psycopg.connect(cluster.dsn("bench"), autocommit=True) as conn:
            install(conn)
            conn.execute(FLOORS)
            conn.execute(SETUP)
        print(f"{'instructions per statement (callgrind)':<72}{'':>12}{'ratio':>8}")
        for label, template, tables in WORKLOADS:
            per = {}
            for table in tables:
                warm = instructions(cluster, template, table, 20)
                more = instructions(cluster, template, table, 20 + args.statements)
                per[table] = (more - warm) / args.statements
            for table in tables:
                print(f"{label + ', ' + LABELS[table]:<72}{per[table]:>12,.0f}{per[table] / per[tables[0]]:>7.2f}x")


if __name__ == "__main__":
    main()
