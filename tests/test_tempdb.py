"""The throwaway cluster's single-user run (bench/instructions.py runs its workloads so, under
valgrind): the server is stopped for it and answers again after it, with what it wrote."""

from __future__ import annotations

import psycopg

from pgaudit_py.tempdb import TemporaryCluster


def test_a_single_user_run_writes_and_the_server_answers_again():
    with TemporaryCluster.start() as cluster:
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            conn.execute("CREATE TABLE notes (n int)")
        done = cluster.single_user("postgres", "INSERT INTO notes VALUES (1)\nINSERT INTO notes VALUES (2)\n"
                                               "SELECT sum(n) AS total FROM notes\n")
        assert done.returncode == 0 and "ERROR" not in done.stderr
        assert 'total = "3"' in done.stdout
        with psycopg.connect(cluster.dsn(), autocommit=True) as conn:
            assert conn.execute("SELECT array_agg(n ORDER BY n) FROM notes").fetchone() == ([1, 2],)
