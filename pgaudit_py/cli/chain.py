"""`pgaudit keygen`, `checkpoint` and `verify`: the hash chain and signed checkpoints."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click
from psycopg import sql

from pgaudit_py.chain import Block, verify_chain
from pgaudit_py.checkpoint import (
    check_against_chain,
    check_signatures,
    generate_keys,
    load_keys,
    make_checkpoint,
    pruned_since,
    read_checkpoint,
)
from pgaudit_py.cli.common import (
    Settings,
    _with_options,
    connection_options,
    fail,
    json_option,
    key_options,
    run_guarded,
    say,
)
from pgaudit_py.errors import KeyFileError
from pgaudit_py.output import counted, emit_json
from pgaudit_py.session import tuples


@click.command("keygen")
@click.option("--dir", "directory", type=click.Path(path_type=Path), required=True,
              help="Where to write checkpoint-ed25519.pem, checkpoint-ed25519.pub.pem and checkpoint-hmac.key.")
def keygen_command(directory: Path) -> None:
    """Make checkpoint keys (never put them in the database)."""
    def run() -> None:
        for path in generate_keys(directory):
            say(f"wrote {path}")
    run_guarded(run)


@click.command("checkpoint")
@_with_options(key_options)
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Checkpoint file to write.")
@json_option
@connection_options
def checkpoint_command(settings: Settings, signing_key: Path | None, public_key: Path | None,
                       hmac_key_file: Path | None, out: Path, as_json: bool) -> None:
    """Sign the latest block (Ed25519 and/or HMAC-SHA-256) into a checkpoint file."""
    def run() -> None:
        keys = load_keys(signing_key=signing_key, hmac_key=hmac_key_file)
        with settings.connect() as conn:
            document = make_checkpoint(conn, keys, audit_schema=settings.schema)
        try:  # a checkpoint is evidence: never replace one
            with out.open("x") as written:
                written.write(json.dumps(document, indent=2) + "\n")
        except FileExistsError:
            raise KeyFileError(f"{out} exists already; not overwriting a checkpoint") from None
        if as_json:
            emit_json(document)
        else:
            body = document["checkpoint"]
            say(f"checkpoint of block {body['block_no']} (seq {body['last_seq']}, hash {body['block_hash']})"
                       f" signed with {', '.join(document['signatures'])}: {out}")
    run_guarded(run)


@click.command("verify")
@click.option("--checkpoint", "checkpoint_file", type=click.Path(path_type=Path),
              help="Also prove the chain up to this signed checkpoint is unchanged.")
@_with_options(key_options)
@json_option
@connection_options
def verify_command(settings: Settings, checkpoint_file: Path | None, signing_key: Path | None,
                   public_key: Path | None, hmac_key_file: Path | None, as_json: bool) -> None:
    """Recompute the hash chain from Python; exit 1 naming the first block that does not match."""
    def run() -> None:
        document = read_checkpoint(checkpoint_file) if checkpoint_file else None
        keys = load_keys(public_key=public_key, hmac_key=hmac_key_file)
        signed_by = check_signatures(document, keys) if document else []
        hashes: dict[int, bytes] = {}
        with settings.connect() as conn:
            total = tuples(conn).execute(sql.SQL("SELECT pg_catalog.count(*) FROM {}.blocks").format(
                sql.Identifier(settings.schema))).fetchone()
            with click.progressbar(length=int(total[0]) if total else 0, label="verifying blocks",
                                   file=sys.stderr) as bar:
                def seen(block: Block) -> None:
                    hashes[block.block_no] = block.block_hash
                    bar.update(1)
                result = verify_chain(conn, audit_schema=settings.schema, on_block=seen)
        against = check_against_chain(document, result, hashes) if document and result.ok else None
        removed = pruned_since(document, result) if document and result.ok else None
        if as_json:
            emit_json({**dataclasses.asdict(result), "head": dataclasses.asdict(result.head) if result.head else None,
                       "checkpoint": {"file": str(checkpoint_file), "signatures": signed_by, "problem": against,
                                      "pruned_since": list(removed) if removed else None}
                       if document else None})
        elif result.ok:
            say(f"chain intact: {counted(result.blocks_checked, 'block')},"
                       f" {counted(result.events_checked, 'event')} verified; "
                       f"{result.pending} pending (not yet sealed)")
            # The first retained block is not sealed yet when every sealed event was pruned or archived.
            first = (f"block {result.retained_from_block} (seq {result.retained_from_seq})"
                     if result.retained_from_seq is not None else f"block {result.retained_from_block}, not sealed yet")
            if result.archived_through_block is not None:
                say(f"archived through block {result.archived_through_block} (seq "
                    f"{result.archived_through_seq}); hot history starts at {first}; `pgaudit archive verify` checks"
                    " the archive")
            elif result.retained_from_block > 1:
                say(f"retained history starts at {first}; earlier blocks were pruned")
            if document and against is None:
                say(f"checkpoint of block {document['checkpoint']['block_no']} holds "
                           f"(signature: {', '.join(signed_by)})")
                if removed:
                    say(f"blocks {removed[0]}..{removed[1]}, which it covers, were pruned or archived since it was"
                        " signed: their audit.pruned or audit.archive_deleted events say by whom")
        if not result.ok:
            fail(f"verification failed at block {result.bad_block}: {result.problem}")
        if against:
            fail(f"checkpoint failed: {against}")
    run_guarded(run)
