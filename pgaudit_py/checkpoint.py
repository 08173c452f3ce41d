"""Signed checkpoints of the chain head: Ed25519 (an auditor needs only the public key) and/or
HMAC-SHA-256 (a shared secret). Keys never enter the database; a checkpoint is a JSON file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from psycopg import sql

from pgaudit_py import canonical, verify_archive
from pgaudit_py.chain import Verification
from pgaudit_py.errors import CheckpointError, KeyFileError
from pgaudit_py.key_files import read_key_file
from pgaudit_py.session import tuples

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Keys:
    signing_key: Ed25519PrivateKey | None = None
    public_key: Ed25519PublicKey | None = None
    hmac_key: bytes | None = None


def generate_keys(directory: Path) -> list[Path]:
    """A new Ed25519 key pair and HMAC key, private files readable by their owner only."""
    directory.mkdir(parents=True, exist_ok=True)
    private = Ed25519PrivateKey.generate()
    files = {
        "checkpoint-ed25519.pem": (private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()), 0o600),
        "checkpoint-ed25519.pub.pem": (private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644),
        "checkpoint-hmac.key": (os.urandom(32), 0o600),
    }
    # All three or none: a new private key beside an old public key would sign what nothing verifies.
    for name in files:
        if os.path.lexists(directory / name):
            raise KeyFileError(f"{directory / name} exists already; not overwriting a key")
    written: list[Path] = []
    try:
        for name, (content, mode) in files.items():
            path = directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
            written.append(path)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return written


def load_keys(signing_key: Path | None = None, public_key: Path | None = None,
              hmac_key: Path | None = None) -> Keys:
    def read(path: Path) -> bytes:
        try:
            return read_key_file(path)
        except OSError as exc:
            raise KeyFileError(f"cannot read key file {path}: {exc.strerror}") from None

    try:
        private = serialization.load_pem_private_key(read(signing_key), None) if signing_key else None
    except TypeError:  # what cryptography raises for a key under a passphrase
        raise KeyFileError(f"key file {signing_key} is encrypted: give a signing key without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"key file {signing_key} is not a PEM Ed25519 private key") from None
    try:
        public = serialization.load_pem_public_key(read(public_key)) if public_key else None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(f"key file {public_key} is not a PEM Ed25519 public key") from None
    if private is not None and not isinstance(private, Ed25519PrivateKey):
        raise KeyFileError(f"{signing_key} is not an Ed25519 private key")
    if public is not None and not isinstance(public, Ed25519PublicKey):
        raise KeyFileError(f"{public_key} is not an Ed25519 public key")
    secret = read(hmac_key) if hmac_key else None
    if secret is not None and len(secret) < 16:
        raise KeyFileError(f"{hmac_key} holds {len(secret)} bytes; an HMAC key needs at least 16")
    return Keys(private, public, secret)


def make_checkpoint(conn: psycopg.Connection, keys: Keys, *, audit_schema: str = "audit") -> dict[str, Any]:
    """Sign the latest block (number, hash, last seq, events sealed, time) and the prune point."""
    if keys.signing_key is None and keys.hmac_key is None:
        raise KeyFileError("a checkpoint needs an Ed25519 signing key or an HMAC key")
    s = sql.Identifier(audit_schema)
    head = tuples(conn).execute(sql.SQL("SELECT b.block_no, b.block_hash, b.last_seq,"
                                        " b.last_seq OPERATOR(pg_catalog.-) st.chain_start_seq"
                                        " FROM {s}.blocks b, {s}.seal_state st ORDER BY b.block_no DESC LIMIT 1"
                                        ).format(s=s)).fetchone()
    if head is None:
        raise CheckpointError("nothing is sealed yet: there is no block to sign")
    pruned = tuples(conn).execute(
        sql.SQL("SELECT block_no, block_hash FROM {}.prune_points ORDER BY block_no DESC LIMIT 1").format(s)).fetchone()
    body = {"v": CHECKPOINT_VERSION, "schema": audit_schema, "database": conn.info.dbname,
            "block_no": head[0], "block_hash": bytes(head[1]).hex(), "last_seq": head[2], "event_count": head[3],
            "pruned_through": {"block_no": pruned[0], "block_hash": bytes(pruned[1]).hex()} if pruned else None,
            "created_at": canonical.timestamp(datetime.now(timezone.utc))}
    return {"checkpoint": body, "signatures": sign(body, keys)}


def sign(body: dict[str, Any], keys: Keys) -> dict[str, Any]:
    """Signatures of canonical.dumps(body) with each key given (checkpoints, archive manifests)."""
    message = canonical.dumps(body).encode()
    signatures: dict[str, Any] = {}
    if keys.signing_key is not None:
        raw = keys.signing_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        signatures["ed25519"] = {"public_key": base64.b64encode(raw).decode(),
                                 "signature": base64.b64encode(keys.signing_key.sign(message)).decode()}
    if keys.hmac_key is not None:
        signatures["hmac-sha256"] = hmac.new(keys.hmac_key, message, hashlib.sha256).hexdigest()
    return signatures


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint file's document, read by the standalone verifier's own reader
    (verify_archive.checkpoint_file: UTF-8 without a byte order mark, no duplicate key, each field
    of its type), so that `pgaudit verify --checkpoint`, the server and the offline verifiers
    accept and refuse the same files; KeyFileError saying what is wrong otherwise."""
    try:
        return verify_archive.checkpoint_file(path)
    except OSError as exc:
        raise KeyFileError(f"cannot read checkpoint file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise KeyFileError(f"{path} is not a pgaudit checkpoint file ({exc})") from None


def signature_problems(body: dict[str, Any], signatures: dict[str, Any], keys: Keys, subject: str) -> list[str]:
    """What does not verify, for each key given, among the signatures of canonical.dumps(body)
    (a checkpoint's or an archive manifest's); `subject` names the document in the messages."""
    message = canonical.dumps(body).encode()
    problems = []
    if keys.public_key is not None:
        if "ed25519" not in signatures:
            problems.append(f"{subject} has no Ed25519 signature")
        else:
            try:
                # validate=True, as the standalone verifier decodes: no junk skipped over.
                keys.public_key.verify(base64.b64decode(signatures["ed25519"]["signature"], validate=True), message)
            except (InvalidSignature, ValueError, KeyError, TypeError):
                problems.append(f"{subject}'s Ed25519 signature does not verify with this public key")
    if keys.hmac_key is not None:
        expected = hmac.new(keys.hmac_key, message, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(signatures.get("hmac-sha256", ""))):
            problems.append(f"{subject}'s HMAC-SHA-256 does not verify with this key")
    return problems


def check_signatures(document: dict[str, Any], keys: Keys) -> list[str]:
    """Which signatures verify with the keys given; raises if any given key fails or none applies."""
    if keys.public_key is None and keys.hmac_key is None:
        raise KeyFileError("give --public-key or --hmac-key-file to check the checkpoint's signature")
    problems = signature_problems(document["checkpoint"], document.get("signatures", {}), keys, "the checkpoint")
    if problems:
        raise CheckpointError(problems[0])
    return [name for name, key in (("ed25519", keys.public_key), ("hmac-sha256", keys.hmac_key)) if key is not None]


def check_against_chain(document: dict[str, Any], verification: Verification,
                        block_hashes: dict[int, bytes]) -> str | None:
    """None when the verified chain still holds the signed block with the signed hash."""
    body = document["checkpoint"]
    number, signed = body["block_no"], body["block_hash"]
    if number not in block_hashes:
        end = verification.head.block_no if verification.head else 0
        return f"block {number} named by the checkpoint is missing (the chain ends at block {end})"
    if block_hashes[number].hex() != signed:
        return f"block {number} does not match the checkpoint: the chain was rewritten up to it"
    return None


def pruned_since(document: dict[str, Any], verification: Verification) -> tuple[int, int] | None:
    """The blocks the checkpoint covers whose events were pruned or archived after it was signed
    (first, last), which it no longer vouches for: the audit.pruned and audit.archive_deleted events
    say who removed them. None when every block it covers that it found retained still is."""
    body = document["checkpoint"]
    signed = body.get("pruned_through")
    first = (signed["block_no"] if signed else 0) + 1
    last = min(verification.retained_from_block - 1, body["block_no"])
    return (first, last) if last >= first else None
