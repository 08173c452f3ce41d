"""Shipped catalogues of event kinds with their payload schemas (pgaudit_py/catalogues/<name>.json),
registered with `pgaudit types load NAME`. A catalogue is a data file: adding one is adding a file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from pgaudit_py.errors import InvalidArgument
from pgaudit_py.events import EventType, register_event_type
from pgaudit_py.session import tuples

CATALOGUES = Path(__file__).parent / "catalogues"


@dataclass(frozen=True)
class Loaded:
    kind: str
    changed: bool  # False: it was registered so already


def catalogue_names() -> list[str]:
    return sorted(p.stem for p in CATALOGUES.glob("*.json"))


def read_catalogue(name: str) -> dict[str, Any]:
    if name not in catalogue_names():
        raise InvalidArgument(f"no catalogue named {name!r}; shipped: {', '.join(catalogue_names())}")
    document: dict[str, Any] = json.loads((CATALOGUES / f"{name}.json").read_text())
    return document


def load_catalogue(conn: psycopg.Connection, name: str, *, replace: bool = False,
                   audit_schema: str = "audit") -> list[Loaded]:
    """Register every kind of the catalogue, in one transaction: all of them or, when one collides
    with a kind registered otherwise (and replace is not asked for), none."""
    kinds = read_catalogue(name)["kinds"]
    # A kind already registered keeps its strictness: loading never loosens a kind someone made
    # strict, nor tightens one. One made strict with another schema than the catalogue's is not
    # replaced, even when asked: whether the catalogue's schema is looser cannot be told.
    # (IS NOT DISTINCT FROM would look `=` up in the caller's search_path; `name` is never NULL.)
    query = sql.SQL("SELECT schema OPERATOR(pg_catalog.=) %s, strict,"
                    " coalesce(catalogue OPERATOR(pg_catalog.=) %s::pg_catalog.text, false)"
                    " FROM {}.event_types WHERE kind OPERATOR(pg_catalog.=) %s").format(sql.Identifier(audit_schema))
    loaded = []
    with conn.transaction():
        for kind, entry in kinds.items():
            had = tuples(conn).execute(query, (Jsonb(entry["schema"]), name, kind)).fetchone()
            if had and had[1] and not had[0]:
                raise InvalidArgument(f"kind {kind} was made strict with another schema than catalogue {name}'s:"
                                      " loading it would loosen what the log refuses, so nothing was loaded",
                                      hint="Register the kind again by hand with the schema wanted, strict or not,"
                                           " then load the catalogue.")
            strict = bool(had and had[1])
            registered: EventType = register_event_type(conn, kind, entry["schema"], strict=strict, replace=replace,
                                                        catalogue=name, audit_schema=audit_schema)
            assert registered.catalogue == name
            loaded.append(Loaded(kind, not (had and had[0] and had[2])))
    return loaded
