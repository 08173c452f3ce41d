"""What the API says about cold storage and checkpoints: one archive pass on demand (with the
server's configured target and keys, one at a time), and the newest signed checkpoint on disk."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from pgaudit_py import archive as archiving
from pgaudit_py.archive_targets import open_target
from pgaudit_py.checkpoint import Keys, read_checkpoint, signature_problems
from pgaudit_py.dsn import connect as connect_safely
from pgaudit_py.errors import InvalidInput, KeyFileError
from pgaudit_py.server.errors import ApiError
from pgaudit_py.session import pin, tuples
from pgaudit_py.tokens import Bearer


class ArchiveRunner:
    def __init__(self, dsn: str, audit_schema: str, target: str | None, keys: Keys | None):
        self.dsn, self.schema, self.target, self.keys = dsn, audit_schema, target, keys
        self._running = asyncio.Lock()

    def _run(self, bearer: Bearer) -> archiving.ArchiveRun:
        assert self.keys is not None
        where = open_target(self.target)
        with connect_safely(self.dsn, autocommit=True, application_name="pgaudit serve (archive)") as conn:
            pin(conn)
            # The archiver's own events (audit.archived, ...) name the token that asked.
            conn.execute("SELECT pg_catalog.set_config('pgaudit_py.actor_type', 'api_token', false),"
                         " pg_catalog.set_config('pgaudit_py.actor_id', %s, false)", (bearer.name,))
            return archiving.archive(conn, where, self.keys, audit_schema=self.schema)

    async def run(self, bearer: Bearer) -> archiving.ArchiveRun:
        if self.target is None or self.keys is None:
            raise ApiError(503, "this server has no archive target or signing key (pgaudit serve --archive-target, "
                                "--signing-key or --hmac-key-file)", "archive_not_configured")
        if self._running.locked():
            raise ApiError(409, "an archive pass started by this server is running", "archive_running")
        async with self._running:
            try:
                return await asyncio.to_thread(self._run, bearer)
            except psycopg.errors.InsufficientPrivilege:
                raise ApiError(503, "the server's database role may not archive (it needs the maintainer role)",
                               "archive_not_permitted") from None
            except InvalidInput as exc:  # the target (open_target), refused before anything was written
                raise ApiError(503, f"this server's archive target cannot be used: {exc.message}",
                               "archive_not_configured") from None


def _newest_checkpoint(directory: Path) -> tuple[Path, dict[str, Any]] | None:
    newest: tuple[int, Path, dict[str, Any]] | None = None
    for path in directory.glob("*.json"):
        try:
            document = read_checkpoint(path)
        except KeyFileError:
            continue  # not a checkpoint
        block_no = document["checkpoint"]["block_no"]
        if newest is None or block_no > newest[0]:
            newest = (block_no, path, document)
    return (newest[1], newest[2]) if newest else None


async def last_checkpoint(pool: AsyncConnectionPool[Any], audit_schema: str, directory: Path | None,
                          keys: Keys | None) -> dict[str, Any] | None:
    """The newest checkpoint in the directory (by block), whether its signatures verify with the
    keys given, and whether the chain still holds its block with the signed hash. The files are read
    before a pooled connection is taken, and it is held for one query."""
    if directory is None:
        return None
    found = await asyncio.to_thread(_newest_checkpoint, directory)
    if found is None:
        return None
    path, document = found
    body = document["checkpoint"]
    problems = signature_problems(body, document.get("signatures", {}), keys, "the checkpoint") if keys else []
    if keys is None:
        problems.append("the server has no key to check the checkpoint's signature")
    query = sql.SQL("SELECT pg_catalog.encode(block_hash, 'hex') FROM {}.blocks"
                      " WHERE block_no OPERATOR(pg_catalog.=) %s").format(
        sql.Identifier(audit_schema))
    async with pool.connection() as conn:
        row = await (await tuples(conn).execute(query, (body["block_no"],))).fetchone()
    if row is None:
        problems.append(f"block {body['block_no']} is not in the chain")
    elif row[0] != body.get("block_hash"):
        problems.append(f"block {body['block_no']} does not match the checkpoint: the chain was rewritten up to it")
    return {"file": path.name, "block_no": body["block_no"], "last_seq": body.get("last_seq"),
            "block_hash": body.get("block_hash"), "created_at": body.get("created_at"), "ok": not problems,
            "problems": problems}
