#!/usr/bin/env python3
"""Verify a pgaudit_py archive offline: the batch files in one directory and a public key, no
database, no pgaudit_py. Needs Python 3.10+ and the `cryptography` package alone. Print it with
`pgaudit archive verifier > verify_archive.py`, read it, and run:

    python verify_archive.py DIR --public-key checkpoint-ed25519.pub.pem [--checkpoint FILE]

(for an S3 archive, download it first: aws s3 sync s3://bucket/prefix DIR). It checks every batch:
the manifest's Ed25519 signature, the chain of manifests from the first batch to the last, the data
object's SHA-256 (compressed and not), every block's events hash, header hash and link to the block
before (within and across batches), and that seq runs on without a gap; with a signed checkpoint,
that the checkpoint's block is in the archive with the signed hash. It prints the period it proves,
or each problem, and exits 0 only when everything holds. The formats: docs/archive.md and
docs/canonical-form.md of pgaudit_py.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

MANIFEST = re.compile(r"^blocks-(\d{12})-(\d{12})\.manifest\.json$")
GENESIS = "00" * 32  # the link of block 1
MAX_MANIFEST = 64 * 1024 * 1024
MAX_DATA = 16 * 1024 * 1024 * 1024
ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def canonical(value: Any) -> str:
    """JSON text as PostgreSQL prints jsonb (keys by length, then bytes; ", " and ": "): what the
    signatures cover."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return '"' + "".join(ESCAPES.get(c) or (f"\\u{ord(c):04x}" if c < " " else c) for c in value) + '"'
    if isinstance(value, list):
        return "[" + ", ".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return "{" + ", ".join(f"{canonical(k)}: {canonical(value[k])}" for k in keys) + "}"
    raise ValueError(f"not a value a manifest or checkpoint holds: {type(value).__name__}")


def signed_by(document: dict[str, Any], part: str, key: Ed25519PublicKey) -> bool:
    try:
        signature = base64.b64decode(document["signatures"]["ed25519"]["signature"], validate=True)
        key.verify(signature, canonical(document[part]).encode())
        return True
    except (InvalidSignature, KeyError, TypeError, ValueError):
        return False


def top_level(line: bytes, names: set[str]) -> dict[str, str]:
    """The raw text of some top-level values of a JSON object, without parsing the rest: a payload may
    nest deeper than any recursive parser goes (64 KiB of brackets), and keys inside it never count."""
    text = line.decode("utf-8")
    found: dict[str, str] = {}
    depth, i, key, expect_key = 0, 0, None, False
    while i < len(text):
        c = text[i]
        if c == '"':
            end = i + 1
            while text[end] != '"':
                end += 2 if text[end] == "\\" else 1
            if depth == 1 and expect_key:
                key, expect_key = text[i + 1:end], False
            elif depth == 1 and key in names:
                found[key] = text[i + 1:end]
            i = end + 1
            continue
        if c in "{[":
            depth += 1
            expect_key = depth == 1 and c == "{"
        elif c in "}]":
            depth -= 1
        elif c == "," and depth == 1:
            expect_key, key = True, None
        elif depth == 1 and key in names and c not in " :" and key not in found:
            end = i
            while end < len(text) and text[end] not in ",}":
                end += 1
            found[key] = text[i:end].strip()
            i = end
            continue
        i += 1
    return found


def block_hash(block: dict[str, Any]) -> str:
    header = canonical({"v": 1, "block_no": block["block_no"], "first_seq": block["first_seq"],
                        "last_seq": block["last_seq"], "event_count": block["event_count"],
                        "events_hash": block["events_hash"], "prev_hash": block["prev_hash"]})
    return hashlib.sha256(header.encode()).hexdigest()


class Verifier:
    def __init__(self, directory: Path, key: Ed25519PublicKey):
        self.directory, self.key = directory, key
        self.problems: list[str] = []
        self.blocks: dict[int, str] = {}  # block_no -> block_hash, of every block checked
        self.period: list[tuple[int, str]] = []  # (seq, occurred_at) of the first and last event
        self.batches = 0

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def run(self) -> None:
        names = sorted(p.name for p in self.directory.iterdir() if MANIFEST.match(p.name))
        if not names:
            self.problem(f"no batch manifests (blocks-*-*.manifest.json) in {self.directory}")
        prev: dict[str, Any] | None = None
        prev_sha = None
        for name in names:
            raw = (self.directory / name).read_bytes()
            if len(raw) > MAX_MANIFEST:
                self.problem(f"{name}: not a manifest (too large)")
                return
            manifest = self.check_batch(name, raw, prev, prev_sha)
            if manifest is None:
                return  # what follows cannot be checked against a batch that failed to read
            prev, prev_sha = manifest, hashlib.sha256(raw).hexdigest()
            self.batches += 1

    def check_batch(self, name: str, raw: bytes, prev: dict[str, Any] | None,
                    prev_sha: str | None) -> dict[str, Any] | None:
        try:
            document = json.loads(raw)
            body = document["manifest"]
            blocks = body["blocks"]
            batch = body["batch_id"]
        except (ValueError, KeyError, TypeError):
            self.problem(f"{name}: not a pgaudit manifest")
            return None
        if not isinstance(body, dict) or body.get("v") != 1 or not isinstance(blocks, list) or not blocks \
                or f"{batch}.manifest.json" != name:
            self.problem(f"{name}: not a manifest of version 1 for this file")
            return None
        if not signed_by(document, "manifest", self.key):
            self.problem(f"{batch}: the manifest is not signed by this public key (changed, or another installation's)")
        if prev is None:
            if body.get("prev_manifest_sha256") is not None:
                self.problem(f"{batch}: the manifest names a previous batch that is not here (a batch is missing)")
        else:
            if body.get("prev_manifest_sha256") != prev_sha:
                self.problem(f"{batch}: the manifest does not name the batch before it ({prev['batch_id']}): "
                             "a batch is missing, replaced, reordered or from another installation")
            if body.get("first_block") != prev["last_block"] + 1 or body.get("first_seq") != prev["last_seq"] + 1:
                self.problem(f"{batch}: blocks or seq do not run on from {prev['batch_id']} (a gap, or a repeat)")
            if body.get("schema") != prev.get("schema"):
                self.problem(f"{batch}: another schema's batch ({body.get('schema')!r}, not {prev.get('schema')!r})")
        self.check_data(batch, body)
        expected_link = GENESIS if body.get("first_block") == 1 else self.blocks.get(body.get("first_block", 0) - 1)
        if body.get("first_block_prev_hash") != blocks[0].get("prev_hash"):
            self.problem(f"{batch}: the manifest's first link differs from its first block's")
        for block in blocks:
            number = block.get("block_no")
            try:
                if block_hash(block) != block.get("block_hash"):
                    self.problem(f"{batch}: block {number}'s header does not match its hash")
            except (KeyError, ValueError):
                self.problem(f"{batch}: block {number} is not a block header")
                continue
            if expected_link is not None and block["prev_hash"] != expected_link:
                self.problem(f"{batch}: block {number} does not link to block {number - 1}")
            self.blocks[number] = expected_link = block["block_hash"]
        if blocks[-1].get("block_hash") != body.get("last_block_hash"):
            self.problem(f"{batch}: the manifest's last block hash differs from its last block's")
        return body

    def check_data(self, batch: str, body: dict[str, Any]) -> None:
        path = self.directory / f"{batch}.jsonl.gz"
        if not path.is_file():
            self.problem(f"{batch}: the data object {path.name} is missing")
            return
        gz = path.read_bytes()
        if len(gz) != body.get("gz_bytes") or hashlib.sha256(gz).hexdigest() != body.get("gz_sha256"):
            self.problem(f"{batch}: the data object was changed (its size or SHA-256 differs from the manifest's)")
            return
        try:
            data = gzip.decompress(gz)
        except (OSError, EOFError):
            self.problem(f"{batch}: the data object is not gzip")
            return
        if len(data) > MAX_DATA or len(data) != body.get("data_bytes") \
                or hashlib.sha256(data).hexdigest() != body.get("data_sha256"):
            self.problem(f"{batch}: the data object does not decompress to what was archived")
            return
        lines = data.split(b"\n")
        if lines[-1] != b"":
            self.problem(f"{batch}: the data object does not end with a line break")
        lines = lines[:-1]
        seqs, times = [], []
        for line in lines:
            try:
                try:
                    event = json.loads(line)
                except RecursionError:  # nested deeper than the parser goes: read the two fields alone
                    event = top_level(line, {"seq", "occurred_at"})
                seqs.append(int(event["seq"]))
                times.append(str(event.get("occurred_at", "")))
            except (ValueError, KeyError, IndexError, TypeError):
                self.problem(f"{batch}: the data object holds a line that is not an event")
                return
        if seqs != list(range(body["first_seq"], body["last_seq"] + 1)) or len(seqs) != body.get("event_count"):
            self.problem(f"{batch}: the events' seq do not run from {body['first_seq']} to {body['last_seq']} "
                         "one by one (a line dropped, repeated or moved)")
        at = 0
        for block in body["blocks"]:
            digests = hashlib.sha256()
            count = 0
            while at < len(lines) and seqs[at] <= block.get("last_seq", -1):
                digests.update(hashlib.sha256(lines[at]).digest())
                at, count = at + 1, count + 1
            if count != block.get("event_count") or digests.hexdigest() != block.get("events_hash"):
                self.problem(f"{batch}: block {block.get('block_no')}'s events do not match its hash")
        if lines:
            if not self.period:
                self.period.append((seqs[0], times[0]))
            self.period[1:] = [(seqs[-1], times[-1])]

    def check_checkpoint(self, path: Path) -> None:
        try:
            document = json.loads(path.read_text())
            number, signed_hash = int(document["checkpoint"]["block_no"]), document["checkpoint"]["block_hash"]
        except (OSError, ValueError, KeyError, TypeError):
            self.problem(f"{path.name}: not a pgaudit checkpoint")
            return
        if not signed_by(document, "checkpoint", self.key):
            self.problem(f"{path.name}: the checkpoint is not signed by this public key")
        if number not in self.blocks:
            self.problem(f"{path.name}: the checkpoint's block {number} is not in the archive "
                         f"(it holds blocks {min(self.blocks, default=0)} to {max(self.blocks, default=0)})")
        elif self.blocks[number] != signed_hash:
            self.problem(f"{path.name}: block {number} differs from the one the checkpoint signed")


def verify(directory: Path, public_key_pem: bytes, checkpoint: Path | None = None) -> Verifier:
    key = load_pem_public_key(public_key_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("the public key is not an Ed25519 key")
    verifier = Verifier(directory, key)
    verifier.run()
    if checkpoint is not None:
        verifier.check_checkpoint(checkpoint)
    return verifier


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a pgaudit_py archive offline.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--public-key", type=Path, required=True, help="Ed25519 public key (PEM).")
    parser.add_argument("--checkpoint", type=Path, help="A signed checkpoint whose block must be in the archive.")
    args = parser.parse_args(argv)
    result = verify(args.directory, args.public_key.read_bytes(), args.checkpoint)
    for problem in result.problems:
        print(f"PROBLEM: {problem}")
    if result.problems:
        print(f"NOT VERIFIED: {len(result.problems)} problem(s) in {result.batches} batch(es)")
        return 1
    (first_seq, first_at), (last_seq, last_at) = result.period[0], result.period[-1]
    print(f"verified {result.batches} batches, blocks {min(result.blocks)} to {max(result.blocks)}: "
          f"seq {first_seq} to {last_seq}, {first_at} to {last_at}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
