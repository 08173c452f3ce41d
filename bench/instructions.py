"""Benchmark: instructions a single-row write costs, tracked or limited, against the same write untracked.

Run: python bench/instructions.py [--statements 200] [--rows 10000]

Wall-clock ratios of single-row writes move by 0.1 between runs on this shared 2-core machine
(docs/benchmarks.md), more than most changes to the write path. Instructions do not: each workload
runs in a single-user backend under callgrind (valgrind), counting only inside PortalRun (the
statements' execution, not their parsing), once with 20 statements and once with 20 more, and the
difference is divided by the number added. Each statement is its own transaction, as a
pgbench client's is, so what PL/pgSQL sets up again in every transaction is counted.

The floors, for comparison only: a statement trigger that inserts its rows' jsonb into a
one-column table (the least a trigger-based capture writes), and a limit trigger that only adds
one to a counter row, and one that looks up its limit and adds one to two (bench/rate_limit.py's
floors).
"""

from __future__ import annotations

import argparse
import re
import shutil

import psycopg
from rate_limit import FLOORS
from record import PLAIN, RECORD

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
-- A table tracked with a tenant column, and the same shape untracked (ut) and tracked without one (tn).
CREATE TABLE ut (id int PRIMARY KEY, tenant text, a int, b text);
CREATE TABLE tn (LIKE ut INCLUDING ALL);
CREATE TABLE tt (LIKE ut INCLUDING ALL);
INSERT INTO ut SELECT g, 't' || g % 5, g, 'x' FROM generate_series(1, 1000) g;
INSERT INTO tn SELECT * FROM ut;
INSERT INTO tt SELECT * FROM ut;
SELECT audit.enable_tracking('tn');
SELECT audit.enable_tracking('tt', tenant_column => 'tenant');
CREATE TABLE bench_plain (LIKE audit.event_intake INCLUDING DEFAULTS INCLUDING IDENTITY);
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
CREATE TABLE w_two (id bigserial PRIMARY KEY, v int);
GRANT INSERT ON w_none, w_limited, w_counter, w_two TO bench_writer;
GRANT USAGE ON w_none_id_seq, w_limited_id_seq, w_counter_id_seq, w_two_id_seq TO bench_writer;
SELECT audit.enable_rate_limit('w_limited', per_user_per_minute => 10000000, per_tenant_per_minute => 10000000);
CREATE TRIGGER bench_floor BEFORE INSERT ON w_counter FOR EACH STATEMENT EXECUTE FUNCTION bench_counter_trigger();
INSERT INTO bench_limits VALUES ('w_two'::regclass, 10000000, 10000000);
CREATE TRIGGER bench_floor BEFORE INSERT ON w_two FOR EACH STATEMENT EXECUTE FUNCTION bench_two_counters_trigger();
"""

WRITE = "INSERT INTO {table} (id, a, b) VALUES (nextval('ids') + 1000000, 1, 'x')"
UPDATE = "UPDATE {table} SET a = a + 1 WHERE id = {n} % 1000 + 1"
# As bench/rate_limit.py's clients: the context, one INSERT, commit; as its writer role.
LIMITED = ("BEGIN\nSELECT set_config('pgaudit_py.tenant_id', 't1', true),"
           " set_config('pgaudit_py.actor_id', 'user' || {n} % 8, true)\nINSERT INTO {table} (v) VALUES (1)\nCOMMIT")


def on(table: str, template: str) -> str:
    return template.replace("{table}", table)


WORKLOADS = [  # label, then each side's name and statement (the first side is the baseline)
    ("single-row INSERT", [("untracked", on("u", WRITE)), ("tracked", on("t", WRITE)),
                           ("floor: trigger writing the rows' jsonb", on("f", WRITE))]),
    ("single-row UPDATE by key", [("untracked", on("u", UPDATE)), ("tracked", on("t", UPDATE))]),
    ("single-row UPDATE by key, a table with a tenant column", [
        ("untracked", on("ut", UPDATE)), ("tracked without a tenant column", on("tn", UPDATE)),
        ("tracked with it", on("tt", UPDATE))]),
    ("INSERT under a rate limit (a transaction)", [("no limit", on("w_none", LIMITED)),
                                                   ("limited (never reached)", on("w_limited", LIMITED)),
                                                   ("floor: one counter row", on("w_counter", LIMITED)),
                                                   ("floor: lookup, two counters", on("w_two", LIMITED))]),
    # bench/record.py's statements: the same row into a table like the intake, without an index.
    ("one event", [("plain INSERT", PLAIN.replace(":n", "{n}")), ("record()", RECORD.replace(":n", "{n}"))]),
]


# Bulk statements, each measured untracked and tracked, then the sealing of the tracked one's
# events: the deterministic form of bench/capture.py's "including sealing" rows.
BULK = [  # label, then the untracked table and the tracked ones
    ("INSERT", "INSERT INTO {table} (id, a, b) SELECT g, g, 'x' FROM generate_series(2000001, 2000000 + {rows}) g",
     ["u", "t"]),
    ("UPDATE", "UPDATE {table} SET a = a + 1 WHERE id > 2000000", ["u", "t"]),
    ("DELETE", "DELETE FROM {table} WHERE id > 2000000", ["u", "t"]),
    # The same on a table with a tenant column: tracked without it (tn), then with it (tt), where an
    # UPDATE that changes the column writes two events per row (docs/capture.md).
    ("INSERT, a table with a tenant column", "INSERT INTO {table} (id, tenant, a, b)"
     " SELECT g, 't' || g % 5, g, 'x' FROM generate_series(2000001, 2000000 + {rows}) g", ["ut", "tn", "tt"]),
    ("UPDATE of another column", "UPDATE {table} SET a = a + 1 WHERE id > 2000000", ["ut", "tn", "tt"]),
    ("UPDATE moving each row to another tenant", "UPDATE {table} SET tenant = tenant || 'x' WHERE id > 2000000",
     ["ut", "tn", "tt"]),
    ("DELETE, a table with a tenant column", "DELETE FROM {table} WHERE id > 2000000", ["ut", "tn", "tt"]),
]


def instructions(cluster: TemporaryCluster, template: str, statements: int) -> int:
    """Instructions executed inside PortalRun for `statements` statements."""
    lines = [template.format(n=n).rstrip(";") for n in range(statements)]
    script = "SET SESSION AUTHORIZATION bench_writer\n" if "set_config" in template else ""
    script += "\n".join(lines) + "\n"
    return counted(cluster, script)


def counted(cluster: TemporaryCluster, script: str) -> int:
    """Instructions executed inside PortalRun by a script, in a single-user backend."""
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
    parser.add_argument("--rows", type=int, default=10_000, help="Rows of each bulk statement.")
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
        for label, sides in WORKLOADS:
            per = {}
            for side, template in sides:
                warm = instructions(cluster, template, 20)
                more = instructions(cluster, template, 20 + args.statements)
                per[side] = (more - warm) / args.statements
            baseline = per[sides[0][0]]
            for side, _ in sides:
                print(f"{label + ', ' + side:<72}{per[side]:>12,.0f}{per[side] / baseline:>7.2f}x")
        print(f"\n{'instructions per row, bulk statements of ' + format(args.rows, ',') + ' rows':<72}"
              f"{'':>12}{'ratio':>8}")
        for label, template, (untracked, *tracked_tables) in BULK:
            plain = counted(cluster, template.format(table=untracked, rows=args.rows) + "\n") / args.rows
            print(f"{label + ', untracked':<72}{plain:>12,.0f}{1:>7.2f}x")
            for table in tracked_tables:
                tracked = counted(cluster, template.format(table=table, rows=args.rows) + "\n") / args.rows
                sealing = counted(cluster, "SELECT audit.seal(1000000)\n") / args.rows
                side = "tracked" if len(tracked_tables) == 1 else f"tracked ({table})"
                for name, value in ((side, tracked), (f"{side}: sealing its events", sealing),
                                    (f"{side}, including sealing", tracked + sealing)):
                    print(f"{label + ', ' + name:<72}{value:>12,.0f}{value / plain:>7.2f}x")

if __name__ == "__main__":
    main()
