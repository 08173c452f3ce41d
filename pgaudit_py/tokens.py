"""Tokens of the HTTP API: made here, shown once, kept in the database as their SHA-256 only."""

from __future__ import annotations

import hashlib
import os
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

import psycopg

from pgaudit_py.calls import function_call
from pgaudit_py.errors import InvalidArgument

PREFIX = "pga_"
# A token as pasted: whitespace around it, a "Bearer " before it, its hex in either case.
PASTED_TOKEN = re.compile(r"\s*(?:bearer\s+)?pga_([0-9a-f]{12})_[0-9a-f]{64}\s*", re.IGNORECASE)
ROLES = ("reader", "maintainer")


@dataclass(frozen=True)
class ApiToken:
    token_id: str
    name: str
    role: str
    tenant_id: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None


@dataclass(frozen=True)
class NewToken:
    token: str  # shown once; the database has only its hash
    info: ApiToken


@dataclass(frozen=True)
class Bearer:
    """Who a request's token says it is."""
    token_id: str
    name: str
    role: str
    tenant_id: str | None


def token_sha256(token: str) -> bytes:
    # A token is 32 random bytes: a plain hash is as good as a slow one against guessing.
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def create_token(conn: psycopg.Connection, name: str, role: str, *, tenant_id: str | None = None,
                 expires_at: datetime | None = None, audit_schema: str = "audit") -> NewToken:
    _not_a_token(name, "a token's name")
    token_id = os.urandom(6).hex()  # os.urandom: the secrets module's source (and no name to shadow)
    token = f"{PREFIX}{token_id}_{os.urandom(32).hex()}"
    info = function_call(audit_schema, "create_api_token", ApiToken, {
        "token_id": "text", "name": "text", "role": "text", "token_sha256": "bytea", "tenant_id": "text",
        "expires_at": "timestamptz"}, (token_id, name, role, token_sha256(token), tenant_id, expires_at)).one(conn)
    return NewToken(token, info)


def list_tokens(conn: psycopg.Connection, *, audit_schema: str = "audit") -> list[ApiToken]:
    return function_call(audit_schema, "list_api_tokens", ApiToken, {}, ()).all(conn)


# A token's body, whatever came before it (a prefix cut off, or spelled otherwise).
TOKEN_BODY = re.compile(r"[0-9a-f]{12}_[0-9a-f]{64}", re.IGNORECASE)


def _as_read(text: str) -> str:
    """The text as a reader sees it: compatibility forms folded (full-width letters) and invisible
    format characters (zero-width spaces, soft hyphens) dropped."""
    return "".join(c for c in unicodedata.normalize("NFKC", text) if unicodedata.category(c) != "Cf")


# What a token's name may be (as sql/58_api_tokens.sql checks), and its id. A name holds no run of
# 32 hex digits, separators aside, which a token's secret part, or half of it, would be.
TOKEN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")
TOKEN_ID = re.compile(r"[0-9a-f]{12}")
SECRET_RUN = re.compile(r"[0-9a-f]{32}", re.IGNORECASE)
NAME_SEPARATORS = re.compile(r"[-._@]")  # a secret part split by them is one still


def holds_a_token(text: str) -> bool:
    """Whether text holds a token's prefix, its body or a run of its secret part's hex digits
    (separators aside), read as a person reads it: what no name, and no value said back, may hold."""
    seen = _as_read(text)
    return PREFIX in seen.lower() or bool(TOKEN_BODY.search(seen) or SECRET_RUN.search(NAME_SEPARATORS.sub("", seen)))


def _not_a_token(text: str, what: str) -> None:
    """Refused here, before anything is sent: text that is not a name or an id as written (an
    invisible or combining character, a full-width letter), or that holds a token (holds_a_token)."""
    if isinstance(text, str) and holds_a_token(text):
        raise InvalidArgument(f"{what} holds what a token holds, and no name does: nothing was sent")
    if not isinstance(text, str) or not TOKEN_NAME.fullmatch(text):
        raise InvalidArgument(f"invalid token name: {what} is not 1 to 128 letters, digits, _ . @ -, starting "
                              "with a letter or digit, nor a token's id (nothing was sent)")


def revoke_token(conn: psycopg.Connection, token: str, *, audit_schema: str = "audit") -> ApiToken:
    """Revoke the token with this id or name; a whole token pasted is revoked by its id, and its
    secret part never leaves this process."""
    pasted = PASTED_TOKEN.fullmatch(_as_read(token))
    if pasted is None:
        _not_a_token(token, "the token to revoke")
    return function_call(audit_schema, "revoke_api_token", ApiToken, {"token": "text"},
                         (pasted[1].lower() if pasted else token,)).one(conn)
