"""Shipped catalogues of event kinds: `pgaudit types load auth` registers every kind with its payload
schema, loading twice changes nothing, and a kind that collides with a catalogue's is replaced only
when that is asked for."""

from __future__ import annotations

import json
import threading

import psycopg
import pytest
from click.testing import CliRunner
from test_record import wait_until_blocked
from trial_helpers import dsn_of

from pgaudit_py import record, register_event_type
from pgaudit_py.catalogues import CATALOGUES, catalogue_names, load_catalogue, read_catalogue
from pgaudit_py.cli import cli
from pgaudit_py.errors import InvalidInput

AUTH_KINDS = {"auth.login", "auth.logout", "auth.signup", "auth.password_changed", "auth.session_revoked",
              "auth.sessions_revoked_all", "auth.token_created", "auth.token_revoked", "auth.tokens_revoked_all",
              "auth.role_granted", "auth.role_revoked", "auth.invite_created", "auth.invite_deleted",
              "auth.settings_updated"}


def registered(db) -> dict[str, tuple]:
    return {r[0]: r[1:] for r in db.execute(
        "SELECT kind, schema, strict, catalogue, registered_at FROM audit.event_types").fetchall()}


def test_the_auth_catalogue_registers_every_kind_with_a_documented_schema(db, connect):
    assert "auth" in catalogue_names() and (CATALOGUES / "auth.json").exists()
    kinds = read_catalogue("auth")["kinds"]
    assert set(kinds) == AUTH_KINDS
    assert all(entry["description"] and entry["schema"]["type"] == "object" for entry in kinds.values())
    loaded = load_catalogue(connect("app_maintainer"), "auth")
    assert {k.kind for k in loaded} == AUTH_KINDS and all(k.changed for k in loaded)
    rows = registered(db)
    assert {k: (r[0], r[2]) for k, r in rows.items()} == {k: (kinds[k]["schema"], "auth") for k in AUTH_KINDS}
    # The schemas are the database's own checks: a conforming payload is valid, another is marked.
    writer = connect("app_writer")
    good = record(writer, "auth.login", actor_id="ada", payload={"method": "password", "mfa": True})
    bad = record(writer, "auth.login", actor_id="ada", payload={"method": "carrier pigeon"})
    assert (good.schema_valid, bad.schema_valid) == (True, False)


def test_loading_twice_changes_nothing(db, connect):
    maintainer = connect("app_maintainer")
    load_catalogue(maintainer, "auth")
    before = registered(db)
    again = load_catalogue(maintainer, "auth")
    assert not any(k.changed for k in again) and registered(db) == before  # registered_at included


def test_a_kind_registered_by_hand_is_not_replaced_by_a_catalogue_unless_asked(db, connect):
    maintainer = connect("app_maintainer")
    mine = {"type": "object", "properties": {"who": {"type": "string"}}}
    register_event_type(maintainer, "auth.login", mine)
    with pytest.raises(InvalidInput, match="registered already, by hand"):
        load_catalogue(maintainer, "auth")
    assert set(registered(db)) == {"auth.login"}  # all or none: nothing of the catalogue was loaded
    load_catalogue(maintainer, "auth", replace=True)
    assert registered(db)["auth.login"][2] == "auth" and len(registered(db)) == len(AUTH_KINDS)


def test_a_kind_made_strict_with_another_schema_is_not_replaced_even_when_asked(db, connect):
    """Loading never loosens a kind someone made strict: whether the catalogue's schema is looser
    than the one in force cannot be told, so the load is refused, --replace or not, with nothing
    loaded; the same strict kind with the catalogue's own schema is taken over, strict (trial 96, e7)."""
    maintainer = connect("app_maintainer")
    tighter = {"type": "object", "required": ["method", "mfa"]}
    register_event_type(maintainer, "auth.login", tighter, strict=True)
    for replace in (False, True):
        with pytest.raises(InvalidInput):
            load_catalogue(maintainer, "auth", replace=replace)
    assert {k: (r[0], r[1], r[2]) for k, r in registered(db).items()} == {"auth.login": (tighter, True, None)}
    assert CliRunner().invoke(cli, ["types", "load", "auth", "--replace", "--dsn", dsn_of(db)]).exit_code == 2
    register_event_type(maintainer, "auth.login", read_catalogue("auth")["kinds"]["auth.login"]["schema"], strict=True)
    load_catalogue(maintainer, "auth", replace=True)
    assert registered(db)["auth.login"][1:3] == (True, "auth") and len(registered(db)) == len(AUTH_KINDS)


def test_registering_a_catalogues_kind_by_hand_is_refused_unless_asked(db, connect):
    maintainer = connect("app_maintainer")
    load_catalogue(maintainer, "auth")
    with pytest.raises(InvalidInput, match="registered already, by catalogue auth"):
        register_event_type(maintainer, "auth.logout", {"type": "object"})
    replaced = register_event_type(maintainer, "auth.logout", {"type": "object"}, replace=True)
    assert replaced.catalogue is None and replaced.schema == {"type": "object"}
    # A kind of no catalogue is registered and replaced by hand as before.
    register_event_type(maintainer, "order.paid", {"type": "object"})
    assert register_event_type(maintainer, "order.paid", {"type": "object", "required": ["amount"]}).catalogue is None


def test_only_a_maintainer_loads_and_a_bad_name_is_refused(connect):
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        load_catalogue(connect("app_reader"), "auth")
    with pytest.raises(InvalidInput, match="no catalogue named 'nope'; shipped: auth"):
        load_catalogue(connect("app_maintainer"), "nope")
    with pytest.raises(InvalidInput, match="invalid catalogue name"):
        register_event_type(connect("app_maintainer"), "x.y", {"type": "object"}, catalogue="Bad Name")


def test_pgaudit_types_load_and_list(db):
    i = db.info

    def run(role: str, *args: str):
        dsn = f"host={i.host} port={i.port} dbname={i.dbname} user={role}"
        return CliRunner().invoke(cli, [*args, "--dsn", dsn], catch_exceptions=False)

    first = run("app_maintainer", "types", "load", "auth")
    assert first.exit_code == 0 and "14 kinds, 14 registered or changed" in first.output
    assert "14 kinds, 0 registered or changed" in run("app_maintainer", "types", "load", "auth").output
    listed = json.loads(run("app_reader", "types", "list", "--json").output)
    assert {k["kind"] for k in listed["kinds"]} == AUTH_KINDS
    # Each shipped kind with its description, as the file has it (docs/sql.md, Catalogues).
    shipped = json.loads((CATALOGUES / "auth.json").read_text())
    assert listed["catalogues"]["auth"] == {"description": shipped["description"],
                                            "kinds": {k: e["description"] for k, e in shipped["kinds"].items()}}
    assert sorted(listed["catalogues"]["auth"]["kinds"]) == sorted(AUTH_KINDS)
    assert all(d.strip() for d in listed["catalogues"]["auth"]["kinds"].values())
    missing = run("app_maintainer", "types", "load", "nope")
    assert missing.exit_code == 2 and "no catalogue named" in missing.stderr


def test_a_load_that_waits_for_a_strict_registration_by_hand_keeps_it_strict(db, connect):
    """The load reads nothing registered, then waits on the kind's lock while a registration by hand
    makes it strict; the rules are decided under the lock, so it is refused, not loosened, even with
    replace (trial 97, e2)."""
    hand = connect("app_maintainer", autocommit=False)
    tighter = {"type": "object", "required": ["method", "mfa"]}
    register_event_type(hand, "auth.login", tighter, strict=True)
    loader = connect("app_maintainer")
    outcome: list[object] = []
    loading = threading.Thread(target=lambda: outcome.append(_load_or_error(loader)))
    loading.start()
    wait_until_blocked(db, loader)
    hand.commit()
    loading.join(30)
    assert isinstance(outcome[0], InvalidInput) and "made strict with another schema" in str(outcome[0])
    assert {k: (r[0], r[1], r[2]) for k, r in registered(db).items()} == {"auth.login": (tighter, True, None)}
    # the same registration by hand, naming the catalogue: refused as a registration, not as a load
    with pytest.raises(InvalidInput, match="would loosen what the log refuses, so it was not registered"):
        register_event_type(hand, "auth.login", {"type": "object"}, catalogue="auth")
    hand.rollback()
    assert {k: (r[0], r[1], r[2]) for k, r in registered(db).items()} == {"auth.login": (tighter, True, None)}
    # the catalogue's own schema, made strict by hand meanwhile: taken over, and strict it stays
    register_event_type(hand, "auth.login", read_catalogue("auth")["kinds"]["auth.login"]["schema"], strict=True)
    loading = threading.Thread(target=lambda: outcome.append(_load_or_error(loader)))
    loading.start()
    wait_until_blocked(db, loader)
    hand.commit()
    loading.join(30)
    assert not isinstance(outcome[1], Exception), outcome[1]
    assert registered(db)["auth.login"][1:3] == (True, "auth") and len(registered(db)) == len(AUTH_KINDS)
    # what each load changed is read after its registrations, under their locks (trial 99, e2, e4)
    assert all(loaded.changed for loaded in outcome[1])
    assert [loaded.kind for loaded in load_catalogue(loader, "auth") if loaded.changed] == []


def _load_or_error(conn: psycopg.Connection) -> object:
    try:
        return load_catalogue(conn, "auth", replace=True)
    except Exception as exc:  # noqa: BLE001
        return exc
