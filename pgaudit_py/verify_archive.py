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
import os
import re
import stat
import sys
import zlib
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any, BinaryIO

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

MANIFEST = re.compile(r"blocks-([0-9]{12})-([0-9]{12})\.manifest\.json")
DATA = re.compile(r"blocks-([0-9]{12})-([0-9]{12})\.jsonl\.gz")
# Every canonical line starts so (docs/canonical-form.md): its seq is read without parsing the rest.
LINE_START = re.compile(rb'\{"v": [12], "id": (?:null|"[0-9a-f-]{36}"), "seq": ([0-9]+),')
GENESIS = "00" * 32  # the link of block 1
MAX_DEPTH = 32  # of a manifest or checkpoint, which nest four levels
MAX_MANIFEST = 64 * 1024 * 1024
MAX_LINE = 1 << 30  # a canonical line holds a payload (64 KiB at most) or a row's images
ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def shown(name: object) -> str:
    """A name as printed, all but printable ASCII escaped: printing cannot fail, nor a name forge a line."""
    return "".join(c if " " <= c <= "~" and c != "\\" else ascii(c)[1:-1] for c in str(name))


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


BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")  # strict: padded, no space
W, TEXT = r"[ \t\n\r]*", r'"[^"\\]*(?:\\.[^"\\]*)*"'  # JSON's white space; a string (once checked by value_end)
OPEN, AFTER = re.compile(W + r"\{" + W + r"(\}" + W + r"\Z)?"), re.compile(W + r"(?:,|(\})" + W + r"\Z)")
MEMBER = re.compile(f'(?:{W}"(?!(?:payload|row_before|row_after|changed|occurred_at)")[^"\\\\]*"{W}:{W}'
                    f"(?:{TEXT}|[-+.0-9eE]+|true|false|null){W},)*{W}({TEXT}){W}:{W}")
TOKEN = re.compile(W + r'(?:("[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*")|'
                   r"(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?|true|false|null)|([\[{])|([\]}])|(,)|(:))")


def refused(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


SCAN = json.JSONDecoder(parse_float=len, parse_int=len, parse_constant=refused)  # a value's end, not its numbers


def value_end(text: str, i: int) -> int:
    """Where the JSON value at i ends; ValueError unless it is one by json's grammar (NaN refused). One nested
    past SCAN's recursion is read by TOKEN, to the same verdict however deep the caller's own stack is."""
    try:
        return SCAN.raw_decode(text, i)[1]
    except RecursionError:
        pass
    stack, state = [], "value"  # or "[" and "{" just after one (it may close), "key", ":", "," (after a value)
    while (token := TOKEN.match(text, i)) is not None:
        string, scalar, opening, closing, comma, colon = token.groups()
        i = token.end()
        if state in ("value", "[") and opening:
            stack.append(opening)
            state = opening
            continue
        if state in ("value", "[") and (string or scalar):
            pass
        elif closing and stack and stack[-1] == "[{"["]}".index(closing)] and state in (",", stack[-1]):
            stack.pop()
        elif state in ("key", "{") and string or state == ":" and colon or state == "," and comma:
            state = ":" if string else "value" if colon or stack[-1] == "[" else "key"
            continue
        else:
            break
        if not stack:  # a whole value read
            return i
        state = ","
    raise ValueError(f"not JSON at character {i}")


def top_level(text: str) -> dict[str, str]:
    """The raw text of top-level values of a JSON object (a name's first), MEMBER's five names' and perhaps others':
    numbers as written, keys inside a value never counted; ValueError unless the text is one JSON object. MEMBER
    passes a run of plainly named scalars no caller asks for in one step."""
    if (opened := OPEN.match(text)) is None or text[value_end(text, text.index("{")):].strip(" \t\n\r"):
        raise ValueError("not a JSON object")
    found, i, closed = dict[str, str](), opened.end(), opened.group(1)
    while not closed:
        if (member := MEMBER.match(text, i)) is None:
            raise ValueError("a name expected")
        i = value_end(text, member.end())
        found.setdefault(scanstring(member.group(1), 1)[0], text[member.end():i])
        if (after := AFTER.match(text, i)) is None:
            raise ValueError("',' or '}' (and nothing after it) expected")
        i, closed = after.end(), after.group(1)
    return found


def block_hash(block: dict[str, Any]) -> str:
    header = canonical({"v": 1, "block_no": block["block_no"], "first_seq": block["first_seq"],
                        "last_seq": block["last_seq"], "event_count": block["event_count"],
                        "events_hash": block["events_hash"], "prev_hash": block["prev_hash"]})
    return hashlib.sha256(header.encode()).hexdigest()


def strict_json(raw: bytes) -> Any:
    """UTF-8 JSON (json.loads takes UTF-16, others not); no BOM, duplicate key (signed: one reading), NaN."""
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) != len(items):
            raise ValueError("a duplicate key")
        return dict(items)

    if raw.startswith(b"\xef\xbb\xbf"):
        raise ValueError("a byte order mark: write UTF-8 without one")
    try:
        document = json.loads(raw.decode("utf-8"), object_pairs_hook=pairs, parse_constant=refused)
    except UnicodeDecodeError as exc:  # not its text, which names the byte: a key file given in error is a secret
        raise ValueError(f"not UTF-8 (at byte {exc.start})") from None
    except (RecursionError, OverflowError) as exc:
        raise ValueError("nested or sized past reading") from exc
    # canonical() recurses: no deeper than a manifest's four levels (canonical.too_deep; this file stands alone).
    pending = [(document, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            pending.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return document


def checkpoint_file(path: Path) -> dict[str, Any]:
    """A checkpoint file's document, by the rules of docs/canonical-form.md (pgaudit verify reads by
    these too): strict_json, each field used of its type; ValueError or OSError saying what is wrong."""
    if (raw := read_regular(path, 1 << 20)) is None:
        raise ValueError("no such file, or not a regular one of at most 1 MiB")
    document = strict_json(raw)
    body = document.get("checkpoint") if isinstance(document, dict) else None
    pruned = body.get("pruned_through") if isinstance(body, dict) else None  # null, or a block named as body's is
    if not all(isinstance(b, dict) and type(b.get("block_no")) is int and isinstance(b.get("block_hash"), str)
               for b in (body, body if pruned is None else pruned)):
        raise ValueError("no checkpoint of an integer block_no and a string block_hash (pruned_through: null or alike)")
    signatures = document.get("signatures", {})  # none at all: a checkpoint nobody signed
    ed25519 = signatures.get("ed25519", {"public_key": "", "signature": ""}) if isinstance(signatures, dict) else None
    if not isinstance(ed25519, dict) or not isinstance(ed25519.get("public_key"), str) \
            or not isinstance(ed25519.get("signature"), str) or not isinstance(signatures.get("hmac-sha256", ""), str):
        raise ValueError("signatures: not an object of ed25519 {public_key, signature} and hmac-sha256 strings")
    if not all(BASE64.fullmatch(ed25519[k]) for k in ("public_key", "signature")):
        raise ValueError("signatures: an ed25519 public_key or signature not in strict base64")
    canonical(body).encode()  # what the signatures cover: ValueError for a float, a lone surrogate
    return dict(document)


def open_regular(path: Path, limit: int) -> BinaryIO | None:
    """The file, opened, if it is a regular one no larger than limit; None otherwise (a directory, a FIFO, a
    device). Opened without waiting, then checked: a FIFO put in place after a check would hold the reader."""
    try:
        f = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    except OSError:
        return None
    info = os.fstat(f.fileno())
    if stat.S_ISREG(info.st_mode) and info.st_size <= limit:
        return f
    f.close()
    return None


def read_regular(path: Path, limit: int) -> bytes | None:
    """What open_regular's file holds, at most limit bytes."""
    if (f := open_regular(path, limit)) is None:
        return None
    with f:
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def well_formed(body: Any, name: str) -> bool:
    """A version 1 manifest for this file name, every field of its type, its blocks one run."""
    ints = ("first_block", "last_block", "first_seq", "last_seq", "event_count", "data_bytes", "gz_bytes")
    texts = ("batch_id", "schema", "data_object", "data_sha256", "gz_sha256", "first_block_prev_hash",
             "last_block_hash")
    if not isinstance(body, dict) or body.get("v") != 1 or not all(type(body.get(k)) is int for k in ints) \
            or not all(isinstance(body.get(k), str) for k in texts) or not isinstance(body.get("blocks"), list) \
            or not isinstance(body.get("prev_manifest_sha256"), (str, type(None))):
        return False
    if f"{body['batch_id']}.manifest.json" != name or body["data_object"] != f"{body['batch_id']}.jsonl.gz" \
            or body["event_count"] != body["last_seq"] - body["first_seq"] + 1 or body["event_count"] < 1:
        return False
    number, seq = body["first_block"], body["first_seq"]
    for block in body["blocks"]:
        if not isinstance(block, dict) or not all(type(block.get(k)) is int for k in
                                                  ("block_no", "first_seq", "last_seq", "event_count")) \
                or not all(isinstance(block.get(k), str) for k in ("events_hash", "prev_hash", "block_hash")) \
                or block["block_no"] != number or block["first_seq"] != seq \
                or block["event_count"] != block["last_seq"] - block["first_seq"] + 1 or block["event_count"] < 1:
            return False
        number, seq = number + 1, block["last_seq"] + 1
    return bool(number == body["last_block"] + 1 and seq == body["last_seq"] + 1)


class Verifier:
    def __init__(self, directory: Path, key: Ed25519PublicKey):
        self.directory, self.key = directory, key
        self.problems: list[str] = []
        self.problem = self.problems.append
        self.blocks: dict[int, str] = {}  # block_no -> block_hash, of every block checked
        self.period: list[tuple[int, str]] = []  # (seq, occurred_at) of the first and last event
        self.batches = 0

    def run(self) -> None:
        if not self.directory.is_dir():
            self.problem(f"{shown(self.directory)} is not a directory")
            return
        names = sorted(p.name for p in self.directory.iterdir())
        manifests = [n for n in names if MANIFEST.fullmatch(n)]
        for name in names:  # every file is a batch's, or someone put it there
            if not (MANIFEST.fullmatch(name) or DATA.fullmatch(name)):
                self.problem(f"{shown(name)}: a file that is no batch's object")
            elif DATA.fullmatch(name) and name.replace(".jsonl.gz", ".manifest.json") not in manifests:
                self.problem(f"{name}: a data object that no manifest names")
        if not manifests:
            self.problem(f"no batch manifests (blocks-*-*.manifest.json) in {shown(self.directory)}")
        prev: dict[str, Any] | None = None
        prev_sha = None
        for name in manifests:
            path = self.directory / name
            if (raw := read_regular(path, MAX_MANIFEST)) is None:
                self.problem(f"{name}: not a manifest (not a regular file, or too large)")
                return
            manifest = self.check_batch(name, raw, prev, prev_sha)
            if manifest is None:
                return  # what follows cannot be checked against a batch that failed to read
            prev, prev_sha = manifest, hashlib.sha256(raw).hexdigest()
            self.batches += 1

    def check_batch(self, name: str, raw: bytes, prev: dict[str, Any] | None,
                    prev_sha: str | None) -> dict[str, Any] | None:
        try:
            body = (document := strict_json(raw))["manifest"]
        except (ValueError, KeyError, TypeError):
            self.problem(f"{name}: not a pgaudit manifest")
            return None
        try:  # the bytes are the signed document's one writing: nothing beside it to read otherwise
            canonical_form = (canonical(document) + "\n").encode() == raw
        except (ValueError, TypeError):
            canonical_form = False
        if not canonical_form or not well_formed(body, name):
            self.problem(f"{name}: not a manifest of version 1 for this file, in canonical form (changed)")
            return None
        batch, blocks = body["batch_id"], body["blocks"]
        if not signed_by(document, "manifest", self.key):
            self.problem(f"{batch}: the manifest is not signed by this public key (changed, or another installation's)")
            return None  # nothing unsigned is used further
        if prev is None:
            if body["prev_manifest_sha256"] is not None:
                self.problem(f"{batch}: the manifest names a previous batch that is not here (a batch is missing)")
        else:
            if body["prev_manifest_sha256"] != prev_sha:
                self.problem(f"{batch}: the manifest does not name the batch before it ({prev['batch_id']}): "
                             "a batch is missing, replaced, reordered or from another installation")
            if body["first_block"] != prev["last_block"] + 1 or body["first_seq"] != prev["last_seq"] + 1:
                self.problem(f"{batch}: blocks or seq do not run on from {prev['batch_id']} (a gap, or a repeat)")
            if body["schema"] != prev["schema"]:
                self.problem(f"{batch}: another schema's batch ({body['schema']!r}, not {prev['schema']!r})")
        self.check_data(batch, body)
        expected_link = GENESIS if body["first_block"] == 1 else self.blocks.get(body["first_block"] - 1)
        if body["first_block_prev_hash"] != blocks[0]["prev_hash"]:
            self.problem(f"{batch}: the manifest's first link differs from its first block's")
        for block in blocks:
            number = block["block_no"]
            if block_hash(block) != block["block_hash"]:
                self.problem(f"{batch}: block {number}'s header does not match its hash")
            if expected_link is not None and block["prev_hash"] != expected_link:
                self.problem(f"{batch}: block {number} does not link to block {number - 1}")
            self.blocks[number] = expected_link = block["block_hash"]
        if blocks[-1]["block_hash"] != body["last_block_hash"]:
            self.problem(f"{batch}: the manifest's last block hash differs from its last block's")
        return dict(body)

    def check_data(self, batch: str, body: dict[str, Any]) -> None:
        """Streams the object: its hashes, then each line in turn (seq, and each block's hash)."""
        unlike = f"{batch}: the data object {batch}.jsonl.gz is missing, or not the size its manifest says"
        if (f := open_regular(self.directory / f"{batch}.jsonl.gz", body["gz_bytes"])) is None:
            return self.problem(unlike)
        with f:  # one file throughout: what is hashed is what is read
            return self.check_lines(batch, body, f) if os.fstat(f.fileno()).st_size == body["gz_bytes"] \
                else self.problem(unlike)

    def check_lines(self, batch: str, body: dict[str, Any], f: BinaryIO) -> None:
        digest = hashlib.sha256()
        while chunk := f.read(1 << 20):
            digest.update(chunk)
        if digest.hexdigest() != body["gz_sha256"]:
            self.problem(f"{batch}: the data object was changed (its SHA-256 differs from the manifest's)")
            return
        data, size, count, edges = hashlib.sha256(), 0, 0, [b"", b""]
        blocks = iter(body["blocks"])
        block = next(blocks)
        events, in_block = hashlib.sha256(), 0
        try:
            f.seek(0)
            with gzip.open(f, "rb") as lines:
                while line := lines.readline(max(0, min(MAX_LINE, body["data_bytes"] - size)) + 1):
                    size += len(line)
                    data.update(line)
                    if size > body["data_bytes"] or not line.endswith(b"\n"):
                        self.problem(f"{batch}: the data object does not decompress to what was archived")
                        return
                    line = line[:-1]
                    found = LINE_START.match(line)
                    if found is None or int(found.group(1)) != body["first_seq"] + count:
                        self.problem(f"{batch}: line {count + 1} is not the event of seq {body['first_seq'] + count}")
                        return
                    while block is not None and int(found.group(1)) > block["last_seq"]:
                        self.close_block(batch, block, events, in_block)
                        block, events, in_block = next(blocks, None), hashlib.sha256(), 0
                    events.update(hashlib.sha256(line).digest())
                    in_block, count = in_block + 1, count + 1
                    edges[0] = edges[0] or line
                    edges[1] = line
        except (OSError, EOFError, zlib.error):
            self.problem(f"{batch}: the data object is not gzip")
            return
        if size != body["data_bytes"] or data.hexdigest() != body["data_sha256"] or count != body["event_count"]:
            self.problem(f"{batch}: the data object does not decompress to what was archived")
            return
        while block is not None:
            self.close_block(batch, block, events, in_block)
            block, events, in_block = next(blocks, None), hashlib.sha256(), 0
        try:  # the edge events' times as their lines write them
            times = [shown(top_level(edge.decode()).get("occurred_at", "").strip('"')) for edge in edges]
        except ValueError:
            return self.problem(f"{batch}: a line of the data object is not a JSON object")
        if not self.period:
            self.period.append((body["first_seq"], times[0]))
        self.period[1:] = [(body["last_seq"], times[1])]

    def close_block(self, batch: str, block: dict[str, Any], events: Any, count: int) -> None:
        if count != block["event_count"] or events.hexdigest() != block["events_hash"]:
            self.problem(f"{batch}: block {block['block_no']}'s events do not match its hash")

    def check_checkpoint(self, path: Path) -> None:
        try:
            document = checkpoint_file(path)
        except (OSError, ValueError) as exc:
            self.problem(f"{shown(path.name)}: not a pgaudit checkpoint ({shown(exc)})")
            return
        number, signed_hash = document["checkpoint"]["block_no"], document["checkpoint"]["block_hash"]
        if not signed_by(document, "checkpoint", self.key):
            self.problem(f"{shown(path.name)}: the checkpoint is not signed by this public key")
        if number not in self.blocks:
            self.problem(f"{shown(path.name)}: the checkpoint's block {number} is not in the archive "
                         f"(it holds blocks {min(self.blocks, default=0)} to {max(self.blocks, default=0)})")
        elif self.blocks[number] != signed_hash:
            self.problem(f"{shown(path.name)}: block {number} differs from the one the checkpoint signed")


def public_key(pem: bytes) -> Ed25519PublicKey:
    """The Ed25519 public key in pem; ValueError, saying what it is instead, otherwise."""
    try:
        key = load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise ValueError("not a PEM public key (the private key, or an HMAC key file, is not one)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"a {type(key).__name__.removeprefix('_')} public key, not an Ed25519 one")
    return key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a pgaudit_py archive offline.")
    parser.add_argument("directory", type=Path)
    parser.add_argument("--public-key", type=Path, required=True, help="Ed25519 public key (PEM).")
    parser.add_argument("--checkpoint", type=Path, help="A signed checkpoint whose block must be in the archive.")
    args = parser.parse_args(argv)
    # The key file is the auditor's input too: a wrong one is a problem named, never a traceback.
    try:
        if (raw := read_regular(args.public_key, 1 << 16)) is None:
            raise ValueError("no such file, or not a regular one of at most 64 KiB")
        key = public_key(raw)
    except (OSError, ValueError) as exc:
        print(f"PROBLEM: --public-key {shown(args.public_key)}: {shown(exc)}")
        print("NOT VERIFIED: the public key cannot be read")
        return 1
    result = Verifier(args.directory, key)
    try:
        result.run()
        if args.checkpoint is not None:
            result.check_checkpoint(args.checkpoint)
    except (MemoryError, OSError) as exc:  # named, like any other problem (a file this account may not read)
        result.problem(f"cannot read: {shown(exc)}" if isinstance(exc, OSError) else "out of memory: too large here")
    for problem in result.problems:
        print(f"PROBLEM: {problem}")
    if result.problems:
        print(f"NOT VERIFIED: {len(result.problems)} problem(s) in {result.batches} batch(es)")
        return 1
    (first_seq, first_at), (last_seq, last_at) = result.period[0], result.period[-1]
    print(f"verified {result.batches} batch{'' if result.batches == 1 else 'es'}, blocks {min(result.blocks)} to "
          f"{max(result.blocks)}: seq {first_seq} to {last_seq}, {first_at} to {last_at}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
