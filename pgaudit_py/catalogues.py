"""Shipped catalogues of event kinds with their payload schemas (pgaudit_py/catalogues/<name>.json),
registered with `pgaudit types load NAME`. A catalogue is a data file: adding one is adding a file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from pgaudit_py.errors import InvalidArgument
from pgaudit_py.events import EventType, register_event_type
from pgaudit_py.session import tuples

CATALOGUES = Path(__file__).parent / "catalogues"


@dataclass(frozen=True)
class Loaded:
    kind: str
    changed: bool  # False: it was registered so already (True too if the caller's open transaction changed it)


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
    # A kind already registered keeps its strictness, and one made strict with another schema than
    # the catalogue's is refused: register_event_type decides both, under its lock (sql/20_events.sql).
    # What it changed, it stamps with the transaction's time (registering the same again changes
    # nothing, not even registered_at): read after the call, not before, which a racing
    # registration would make wrong.
    loaded = []
    with conn.transaction():
        row = tuples(conn).execute("SELECT pg_catalog.now()").fetchone()
        assert row is not None
        for kind, entry in kinds.items():
            registered: EventType = register_event_type(conn, kind, entry["schema"], strict=None, replace=replace,
                                                        catalogue=name, audit_schema=audit_schema)
            assert registered.catalogue == name
            loaded.append(Loaded(kind, registered.registered_at == row[0]))
    return loaded
