"""Functions that end transactions themselves refuse a connection with one already open:
inside it their commits would be savepoints, held (with their locks) until the caller ends it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgaudit_py import InvalidArgument, record, secrets
from pgaudit_py.archive import archive
from pgaudit_py.archive_targets import open_target
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import Keys
from pgaudit_py.retention import prune_all
from pgaudit_py.sealing import seal_continuously


def stopped() -> threading.Event:
    stop = threading.Event()
    stop.set()  # without the check it would return at once, not run forever
    return stop


CALLS: dict[str, Callable[[psycopg.Connection], Any]] = {
    "seal_continuously": lambda conn: seal_continuously(conn, stopped()),
    "prune_all": lambda conn: prune_all(conn, "1 day"),
    "rotate_master_key": lambda conn: secrets.rotate_master_key(conn),
    "rotate_tenant_key": lambda conn: secrets.rotate_tenant_key(conn, "t1"),
    "verify_chain": verify_chain,
}


@pytest.mark.parametrize("name", CALLS)
def test_an_open_transaction_is_refused_and_left_as_it_was(db, connect, name):
    conn = connect(autocommit=False)
    record(conn, "before.call")  # the caller's work, in an implicit transaction
    with pytest.raises(InvalidArgument, match=f"^{name} .*: call it with no transaction open$"):
        CALLS[name](conn)
    conn.commit()  # the caller's transaction was not touched: its work commits
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'before.call'").fetchone() == (1,)
    with conn.transaction(), pytest.raises(InvalidArgument):
        CALLS[name](conn)  # in a block too


def test_archive_wants_an_autocommit_connection_with_no_block_open(db, connect, tmp_path):
    target, keys = open_target(tmp_path.as_uri()), Keys(hmac_key=b"k" * 32)
    with pytest.raises(InvalidArgument, match="give it an autocommit connection"):
        archive(connect(autocommit=False), target, keys)
    conn = connect()
    with conn.transaction(), pytest.raises(InvalidArgument, match="call it with no transaction open"):
        archive(conn, target, keys)
    assert archive(conn, target, keys).batches == []  # nothing is due; the run itself is allowed
