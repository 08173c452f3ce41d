"""The throwaway cluster's single-user run (bench/instructions.py runs its workloads so, under
valgrind): the server is stopped for it and answers again after it, with what it wrote."""

from __future__ import annotations

import psycopg
import pytest

from pgaudit_py.tempdb import TemporaryCluster, find_binary


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


def test_server_binaries_are_found_off_path_under_debians_directory(monkeypatch):
    """README: with no server binaries on PATH, Debian's /usr/lib/postgresql/<version>/bin is used,
    the newest version; with neither, the error says what to install."""
    monkeypatch.setenv("PATH", "/nonexistent")
    found = find_binary("initdb")
    assert found.startswith("/usr/lib/postgresql/") and found.endswith("/bin/initdb")
    with pytest.raises(FileNotFoundError, match="install PostgreSQL server binaries"):
        find_binary("no_such_postgres_binary")
