"""A ninety-sixth attacker's trial: strict event types against JSON edge cases and who may change
them, prune at its edges, the history of rows with odd keys and a baseline taken while a writer
waits, and idempotency keys across rollbacks, tenants, roles and look-alike spellings.

Classes (test names carry the letter):
  E. event types and catalogues: numbers spelled otherwise (1e2, -0, 1e399, 100.0), NFC/NFD keys
     in `required`, a type's change by the maintainer (is it recorded?), who may register one,
     a catalogue name that walks out of the shipped directory, a catalogue loaded with replace over
     a kind made strict by hand, deep schemas and payloads.
  R. retention and prune: roles other than the maintainer, batch sizes out of range, a prune of
     one batch against its preview, the chain and both verifiers after, prune points forged.
  B. baselines and history: composite keys whose parts hold commas, text keys that differ by a
     trailing space or by Unicode normalisation, numeric twins, a baseline taken while a writer's
     insert waits, a keyless table's baseline and a key given later, keys moved, retyped, renamed.
  I. record() idempotency: a key released by a rollback, the same key in two tenants and with no
     tenant, the same key from another writer role, keys differing by case, space or normalisation,
     two sessions racing with different payloads.

Each test asserts what a careful audit system must hold, so it FAILS when the attack works.
Objects and roles made here are prefixed t96_.
"""

from __future__ import annotations

import json
import os
import threading
import time
import unicodedata
from contextlib import suppress

from click.testing import CliRunner
from trial_helpers import both_verifiers, login, seal_all, sqlstate_of, table_owner_kit, try_write

from pgaudit_py import InvalidArgument, enable_tracking
from pgaudit_py.catalogues import CATALOGUES, load_catalogue
from pgaudit_py.cli import cli


def register(db, kind: str, schema: dict, strict: bool = True) -> None:
    db.execute("SET ROLE audit_maintainer")
    try:
        db.execute("SELECT audit.register_event_type(%s, %s::jsonb, %s)", [kind, json.dumps(schema), strict])
    finally:
        db.execute("RESET ROLE")


def rec(conn, kind: str, payload: str, **kw) -> str | None:
    """audit.record with a payload given as JSON text; the refusal's SQLSTATE, else None."""
    args = ", ".join(f"{k} => %s" for k in kw)
    return sqlstate_of(conn, f"SELECT audit.record(kind => %s, payload => %s::jsonb{', ' if kw else ''}{args})",
                       [kind, payload, *kw.values()])


def count(db, kind: str) -> int:
    return db.execute("SELECT count(*) FROM audit.events WHERE kind = %s", [kind]).fetchone()[0]


# ---------------------------------------------------------------- E: event types and catalogues

def test_e1_numbers_spelled_otherwise_do_not_slip_past_a_strict_type(db, connect):
    register(db, "t96.pay", {"type": "object", "required": ["n"], "additionalProperties": False,
                             "properties": {"n": {"type": "integer", "exclusiveMinimum": 0, "maximum": 100}}})
    w = connect("app_writer")
    refused = {p: rec(w, "t96.pay", p) for p in
               ['{"n": -0}', '{"n": -0.0}', '{"n": 1e399}', '{"n": 100.5}', '{"n": 1.00000000000000000001}',
                '{"n": 1e2, "n": 101}', '{"n": 0E+5}', '{"n": "50"}', '{"n": 50, "m": 1}']}
    accepted = {p: rec(w, "t96.pay", p) for p in ['{"n": 1e2}', '{"n": 100.0}', '{"n": 101, "n": 7}', '{"n": 1}']}
    assert {p: s for p, s in refused.items() if s != "PA003"} == {}
    assert {p: s for p, s in accepted.items() if s is not None} == {}
    assert count(db, "t96.pay") == 4
    # every stored payload of the kind passes the schema as stored
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 't96.pay' AND NOT schema_valid").fetchone()[0] == 0


def test_e2_required_keys_are_matched_exactly_not_by_a_normalisation_twin(db, connect):
    nfc = unicodedata.normalize("NFC", "café")
    nfd = unicodedata.normalize("NFD", "café")
    register(db, "t96.nfc", {"type": "object", "required": [nfc],
                             "properties": {nfc: {"type": "string", "maxLength": 3}}})
    w = connect("app_writer")
    # the NFD twin is another key: the required NFC one is missing
    assert rec(w, "t96.nfc", json.dumps({nfd: "x"})) == "PA003"
    # the NFC key's value over its bound, hidden behind an NFD twin that carries a short value
    assert rec(w, "t96.nfc", json.dumps({nfc: "toolong", nfd: "x"})) == "PA003"
    assert count(db, "t96.nfc") == 0


def test_e3_loosening_a_strict_type_is_recorded_in_the_log(db, connect):
    maint = connect("app_maintainer")
    maint.execute("SELECT audit.register_event_type('t96.lock', '{\"type\": \"object\", \"required\": [\"who\"]}', true)")
    before = db.execute("SELECT count(*) FROM audit.events WHERE origin = 'system'").fetchone()[0]
    # the maintainer makes it lax, lets a payload through, then makes it strict again
    maint.execute("SELECT audit.register_event_type('t96.lock', '{\"type\": \"object\"}', false)")
    assert rec(connect("app_writer"), "t96.lock", "{}") is None
    maint.execute("SELECT audit.register_event_type('t96.lock', '{\"type\": \"object\", \"required\": [\"who\"]}', true)")
    changes = db.execute("SELECT kind, payload::text FROM audit.events WHERE origin = 'system' AND payload::text LIKE '%t96.lock%'"
                         ).fetchall()
    after = db.execute("SELECT count(*) FROM audit.events WHERE origin = 'system'").fetchone()[0]
    assert after > before and changes, "two changes of a strict type's schema left no event in the log"


def test_e4_nobody_but_the_maintainer_defines_or_changes_a_type(db, connect):
    register(db, "t96.own", {"type": "object", "required": ["a"]})
    with table_owner_kit(db, connect, "t96") as kit:
        tries = {}
        for name, conn in [("writer", kit.writer), ("reader", kit.reader), ("owner", kit.owner),
                           ("mallory", kit.mallory)]:
            tries[name] = [
                sqlstate_of(conn, "SELECT audit.register_event_type('t96.own', '{}', false, true)"),
                sqlstate_of(conn, "SELECT audit.register_event_type('t96.new', '{}', true)"),
                sqlstate_of(conn, "UPDATE audit.event_types SET strict = false WHERE kind = 't96.own'"),
                sqlstate_of(conn, "DELETE FROM audit.event_types WHERE kind = 't96.own'"),
            ]
        assert {n: t for n, t in tries.items() if None in t} == {}
    row = db.execute("SELECT schema, strict FROM audit.event_types WHERE kind = 't96.own'").fetchone()
    assert row == ({"type": "object", "required": ["a"]}, True)
    assert db.execute("SELECT count(*) FROM audit.event_types WHERE kind = 't96.new'").fetchone()[0] == 0


def test_e5_a_catalogue_name_cannot_walk_out_of_the_shipped_directory(db, tmp_path):
    evil = tmp_path / "t96_evil.json"
    evil.write_text(json.dumps({"kinds": {"t96.evil": {"description": "x", "schema": {"type": "object"}}}}))
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user=app_maintainer"
    runner = CliRunner()
    codes = []
    rel = os.path.relpath(str(evil.with_suffix("")), str(CATALOGUES))
    for name in [rel, str(evil.with_suffix("")), "auth/../auth", "AUTH", "auth\x00"]:
        res = runner.invoke(cli, ["types", "load", name, "--dsn", dsn])
        codes.append((name, res.exit_code))
    assert db.execute("SELECT count(*) FROM audit.event_types WHERE kind LIKE 't96.%'").fetchone()[0] == 0
    assert db.execute("SELECT count(*) FROM audit.event_types").fetchone()[0] == 0
    assert all(code != 0 for _, code in codes), codes


# ---------------------------------------------------------------- R: retention and prune

def _sealed_events(db, connect, n: int, kind: str = "t96.r") -> None:
    w = connect("app_writer")
    for i in range(n):
        w.execute("SELECT audit.record(kind => %s, payload => %s::jsonb)", [kind, json.dumps({"i": i})])
    assert seal_all(db) is None


def test_r1_only_the_maintainer_prunes_and_bad_sizes_remove_nothing(db, connect):
    _sealed_events(db, connect, 5)
    with table_owner_kit(db, connect, "t96") as kit:
        refused = {}
        for name, conn in [("writer", kit.writer), ("reader", kit.reader), ("owner", kit.owner),
                           ("mallory", kit.mallory)]:
            refused[name] = sqlstate_of(conn, "SELECT audit.prune_events('1 millisecond'::interval, 1000)")
        assert {n: s for n, s in refused.items() if s is None} == {}
        for bs in [0, -1, 100001, 2**31 - 1, None]:
            assert sqlstate_of(kit.maint, "SELECT audit.prune_events('1 millisecond'::interval, %s)", [bs]) is not None, bs
        for ot in [None]:
            assert sqlstate_of(kit.maint, "SELECT audit.prune_events(%s::interval, 10)", [ot]) is not None
        # forged prune points or blocks, by every role but the superuser
        for conn in (kit.maint, kit.writer, kit.reader, kit.owner):
            assert sqlstate_of(conn, "INSERT INTO audit.prune_points SELECT * FROM audit.prune_points LIMIT 1") is not None
            assert sqlstate_of(conn, "UPDATE audit.blocks SET block_hash = block_hash") is not None
            assert sqlstate_of(conn, "DELETE FROM audit.event_log") is not None
    assert count(db, "t96.r") == 5
    assert db.execute("SELECT count(*) FROM audit.prune_points").fetchone()[0] == 0
    assert both_verifiers(db) == (True, True)


def test_r2_ages_that_are_not_positive_or_reach_past_now_prune_nothing_pending(db, connect):
    _sealed_events(db, connect, 3)
    connect("app_writer").execute("SELECT audit.record(kind => 't96.pending')")
    maint = connect("app_maintainer")
    for bad in ["-100 years", "0 seconds", "1 day -24 hours", "1 mon -31 days"]:
        assert sqlstate_of(maint, "SELECT audit.prune_events(%s::interval, 1000)", [bad]) is not None, bad
    assert count(db, "t96.r") == 3
    # positive as intervals compare (a month as 30 days), yet now() minus it lies in the future
    time.sleep(0.05)
    st = sqlstate_of(maint, "SELECT audit.prune_events('-1 mon 30 days 1 hour'::interval, 1000)")
    cutoffs = db.execute("SELECT (payload->>'cutoff')::timestamptz > now() FROM audit.events"
                         " WHERE kind = 'audit.pruned'").fetchall()
    assert count(db, "t96.pending") == 1
    assert st is not None or cutoffs == [(False,)], ("a prune ran with a cutoff after the moment it ran", cutoffs)
    assert both_verifiers(db) == (True, True)


def test_r3_a_prune_removes_what_its_preview_said_and_the_chain_still_verifies(db, connect):
    w = connect("app_writer")
    for _ in range(4):
        for i in range(3):
            w.execute("SELECT audit.record(kind => 't96.blk', payload => %s::jsonb)", [json.dumps({"i": i})])
        assert seal_all(db) is None
    maint = connect("app_maintainer")
    time.sleep(0.05)
    events, first_seq, last_seq = maint.execute(
        "SELECT events, first_seq, last_seq FROM audit.preview_prune('1 millisecond'::interval, 1)").fetchone()
    before = db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    res = maint.execute("SELECT deleted, first_seq, last_seq FROM audit.prune_events('1 millisecond'::interval, 1)").fetchone()
    after = db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    assert res[0] == before - after, "prune's count is not what left the log"
    assert res[0] >= 1
    assert res[1] == first_seq
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE seq BETWEEN %s AND %s", [res[1], res[2]]).fetchone()[0] == 0
    pruned = db.execute("SELECT db_role, payload FROM audit.events WHERE kind = 'audit.pruned'").fetchall()
    assert len(pruned) == 1 and pruned[0][1]["deleted"] == res[0] and pruned[0][0] == "app_maintainer"
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


# ---------------------------------------------------------------- B: baselines and history

def test_b1_composite_keys_whose_parts_hold_commas_keep_their_own_history(db, connect):
    with table_owner_kit(db, connect, "t96") as kit:
        kit.owner.execute("""CREATE TABLE public.t96_ck (a text, b text, v int, PRIMARY KEY (a, b));
                             GRANT ALL ON public.t96_ck TO app_writer""")
        enable_tracking(kit.maint, "public.t96_ck")
        kit.writer.execute("""INSERT INTO public.t96_ck VALUES ('x,y', 'z', 1), ('x', 'y,z', 2), ('x", "y', 'z', 3)""")
        kit.writer.execute("UPDATE public.t96_ck SET v = v + 10")
        kit.writer.execute("DELETE FROM public.t96_ck WHERE a = 'x'")
        at = kit.tick()
        h1 = kit.history("public.t96_ck", '["x,y", "z"]')
        h2 = kit.history("public.t96_ck", '["x", "y,z"]')
        h3 = kit.history("public.t96_ck", json.dumps(['x", "y', "z"]))
        assert [k.rsplit(".", 1)[1] for k in h1] == ["insert", "update"]
        assert [k.rsplit(".", 1)[1] for k in h2] == ["insert", "update", "delete"]
        assert [k.rsplit(".", 1)[1] for k in h3] == ["insert", "update"]
        assert kit.as_of("public.t96_ck", '["x,y","z"]', at)["v"] == 11
        assert kit.as_of("public.t96_ck", json.dumps(['x", "y', "z"]), at)["v"] == 13
        assert kit.as_of("public.t96_ck", '["x","y,z"]', at) is None
        # malformed or over-long keys answer nothing of another row
        for bad in ['["x,y", "z", 1]', '["x,y"]', '"x,y","z"', 'x,y,z', '[["x,y"], "z"]', '{"a": "x,y", "b": "z"}']:
            got = kit.as_of("public.t96_ck", bad, at)
            assert got is None or got[0] == "refused", (bad, got)


def test_b2_text_keys_differing_by_a_space_or_by_normalisation_keep_their_own_history(db, connect):
    nfc = unicodedata.normalize("NFC", "Zoë")
    nfd = unicodedata.normalize("NFD", "Zoë")
    keys = ["k", "k ", " k", "K", nfc, nfd]
    with table_owner_kit(db, connect, "t96") as kit:
        kit.owner.execute("""CREATE TABLE public.t96_tk (id text PRIMARY KEY, v int);
                             GRANT ALL ON public.t96_tk TO app_writer""")
        enable_tracking(kit.maint, "public.t96_tk")
        for i, k in enumerate(keys):
            kit.writer.execute("INSERT INTO public.t96_tk VALUES (%s, %s)", [k, i])
        for i, k in enumerate(keys):
            for _ in range(i):
                kit.writer.execute("UPDATE public.t96_tk SET v = v + 100 WHERE id = %s", [k])
        at = kit.tick()
        wrong = {}
        for i, k in enumerate(keys):
            h = kit.history("public.t96_tk", k)
            img = kit.as_of("public.t96_tk", k, at)
            if len(h) != 1 + i or img is None or img.get("id") != k or img.get("v") != i + 100 * i:
                wrong[repr(k)] = (len(h), img)
        assert wrong == {}


def test_b3_a_baseline_taken_while_a_writers_insert_waits_holds_that_row(db, connect):
    with table_owner_kit(db, connect, "t96") as kit:
        kit.owner.execute("""CREATE TABLE public.t96_bl (id int PRIMARY KEY, v int);
                             GRANT ALL ON public.t96_bl TO app_writer;
                             INSERT INTO public.t96_bl VALUES (1, 1)""")
        w = connect("app_writer", autocommit=False)
        w.execute("INSERT INTO public.t96_bl VALUES (3, 3)")
        w.execute("UPDATE public.t96_bl SET v = 2 WHERE id = 1")
        errors: list[BaseException] = []

        def track():
            try:
                enable_tracking(kit.maint, "public.t96_bl", baseline=True)
            except BaseException as e:  # noqa: BLE001
                errors.append(e)

        t = threading.Thread(target=track)
        t.start()
        time.sleep(1.0)
        w.commit()
        t.join(60)
        assert not t.is_alive() and errors == []
        at = kit.tick()
        s3 = kit.state("public.t96_bl", "3", at)
        s1 = kit.state("public.t96_bl", "1", at)
        assert s3[0] == "existed" and s3[1]["v"] == 3, s3
        assert s1[0] == "existed" and s1[1]["v"] == 2, s1


def test_b4_history_of_a_truncated_then_refilled_key_and_of_a_renamed_table(db, connect):
    with table_owner_kit(db, connect, "t96") as kit:
        kit.owner.execute("""CREATE TABLE public.t96_tr (id int PRIMARY KEY, v int);
                             GRANT ALL ON public.t96_tr TO app_writer""")
        enable_tracking(kit.maint, "public.t96_tr")
        kit.writer.execute("INSERT INTO public.t96_tr VALUES (1, 1)")
        t1 = kit.tick()
        kit.owner.execute("TRUNCATE public.t96_tr")
        t2 = kit.tick()
        kit.owner.execute("ALTER TABLE public.t96_tr RENAME TO t96_tr2")
        kit.writer.execute("INSERT INTO public.t96_tr2 VALUES (1, 2)")
        t3 = kit.tick()
        assert kit.as_of("public.t96_tr2", "1", t1) == {"id": 1, "v": 1}
        assert kit.state("public.t96_tr2", "1", t2)[0] == "absent"
        assert kit.as_of("public.t96_tr2", "1", t3) == {"id": 1, "v": 2}
        # a new table under the old name, made by another role, knows nothing of those rows
        kit.mallory.execute("CREATE TABLE public.t96_tr (id int PRIMARY KEY, v int)")
        got = kit.as_of("public.t96_tr", "1", t1)
        assert got is None or got[0] == "refused", got


# ---------------------------------------------------------------- I: idempotency

def _rec_key(conn, key, payload="{}", kind="t96.idem", **kw):
    args = "".join(f", {k} => %s" for k in kw)
    return sqlstate_of(conn, f"SELECT audit.record(kind => %s, payload => %s::jsonb, idempotency_key => %s{args})",
                       [kind, payload, key, *kw.values()])


def test_i1_a_key_released_by_a_rollback_serves_a_new_event_once(db, connect):
    w = connect("app_writer", autocommit=False)
    assert _rec_key(w, "t96-k1", '{"a": 1}') is None
    w.rollback()
    assert _rec_key(w, "t96-k1", '{"a": 2}') is None
    w.commit()
    w2 = connect("app_writer")
    assert _rec_key(w2, "t96-k1", '{"a": 1}') == "PA004"
    assert _rec_key(w2, "t96-k1", '{"a": 2}') is None
    rows = db.execute("SELECT payload FROM audit.events WHERE idempotency_key = 't96-k1'").fetchall()
    assert rows == [({"a": 2},)]


def test_i2_the_key_is_per_tenant_and_the_null_tenant_is_one_tenant(db, connect):
    w = connect("app_writer")
    assert _rec_key(w, "t96-k2", '{"t": "a"}', tenant_id="t96_a") is None
    assert _rec_key(w, "t96-k2", '{"t": "b"}', tenant_id="t96_b") is None
    assert _rec_key(w, "t96-k2", '{"t": "none"}') is None
    # the tenant given by the session's context is the same tenant as one given as an argument
    w.execute("SELECT set_config('pgaudit_py.tenant_id', 't96_a', false)")
    assert _rec_key(w, "t96-k2", '{"t": "other"}') == "PA004"
    w.execute("SELECT set_config('pgaudit_py.tenant_id', '', false)")
    assert _rec_key(w, "t96-k2", '{"t": "none2"}') == "PA004"
    assert _rec_key(w, "t96-k2", '{"t": "a"}', tenant_id="t96_A") is None  # another tenant
    got = sorted(db.execute("SELECT coalesce(tenant_id, '-'), payload->>'t' FROM audit.events"
                            " WHERE idempotency_key = 't96-k2'").fetchall())
    assert got == [("-", "none"), ("t96_A", "a"), ("t96_a", "a"), ("t96_b", "b")]


def test_i3_the_same_key_and_content_from_another_writer_role_is_refused(db, connect):
    with login(db, connect, "t96_w2", "audit_writer", {}) as w2:
        w1 = connect("app_writer")
        assert _rec_key(w1, "t96-k3", '{"x": 1}') is None
        assert _rec_key(w2, "t96-k3", '{"x": 1}') == "PA004"
    assert count(db, "t96.idem") == 1


def test_i4_keys_differing_by_case_space_or_normalisation_are_distinct_and_never_cross(db, connect):
    nfc = unicodedata.normalize("NFC", "clé")
    nfd = unicodedata.normalize("NFD", "clé")
    keys = [nfc, nfd, nfc + " ", nfc.upper(), " " + nfc]
    w = connect("app_writer")
    for i, k in enumerate(keys):
        assert _rec_key(w, k, json.dumps({"i": i})) is None, repr(k)
    for i, k in enumerate(keys):
        assert _rec_key(w, k, json.dumps({"i": i})) is None, repr(k)  # each retry returns its own event
        assert _rec_key(w, k, json.dumps({"i": i + 100})) == "PA004", repr(k)
    got = {r[0]: r[1] for r in db.execute("SELECT idempotency_key, payload->>'i' FROM audit.events WHERE kind = 't96.idem'")}
    assert got == {k: str(i) for i, k in enumerate(keys)}


def test_i5_two_sessions_race_one_key_with_different_payloads_one_event(db, connect):
    a = connect("app_writer", autocommit=False)
    b = connect("app_writer")
    assert _rec_key(a, "t96-k5", '{"who": "a"}') is None
    out: list = []
    t = threading.Thread(target=lambda: out.append(_rec_key(b, "t96-k5", '{"who": "b"}')))
    t.start()
    time.sleep(0.5)
    assert t.is_alive(), "the second writer did not wait for the first"
    a.commit()
    t.join(30)
    assert out == ["PA004"]
    assert db.execute("SELECT payload->>'who' FROM audit.events WHERE idempotency_key = 't96-k5'").fetchall() == [("a",)]


def test_i6_a_retry_after_the_first_is_sealed_and_pruned_is_a_new_event_but_not_before(db, connect):
    w = connect("app_writer")
    assert _rec_key(w, "t96-k6", '{"n": 1}') is None
    assert seal_all(db) is None
    first = db.execute("SELECT id, seq FROM audit.events WHERE idempotency_key = 't96-k6'").fetchone()
    ret = w.execute("SELECT id, seq FROM audit.record(kind => 't96.idem', payload => '{\"n\": 1}',"
                    " idempotency_key => 't96-k6')").fetchone()
    assert tuple(ret) == tuple(first)
    assert _rec_key(w, "t96-k6", '{"n": 1.0}') in (None, "PA004")
    assert count(db, "t96.idem") == 1
    assert both_verifiers(db) == (True, True)


def test_i7_a_prune_releases_the_keys_of_the_events_it_removed_and_no_others(db, connect):
    w = connect("app_writer")
    assert _rec_key(w, "t96-old", '{"v": 1}') is None
    assert seal_all(db) is None
    time.sleep(0.4)
    assert _rec_key(w, "t96-new", '{"v": 1}') is None
    assert seal_all(db) is None
    maint = connect("app_maintainer")
    res = maint.execute("SELECT deleted FROM audit.prune_events('200 milliseconds'::interval, 100000)").fetchone()
    assert res[0] >= 1
    assert db.execute("SELECT count(*) FROM audit.events WHERE idempotency_key = 't96-old'").fetchone()[0] == 0
    # the surviving event's key still guards it, sealed
    assert _rec_key(w, "t96-new", '{"v": 2}') == "PA004"
    new = db.execute("SELECT id, seq FROM audit.events WHERE idempotency_key = 't96-new'").fetchone()
    again = w.execute("SELECT id, seq FROM audit.record(kind => 't96.idem', payload => '{\"v\": 1}',"
                      " idempotency_key => 't96-new')").fetchone()
    assert tuple(again) == tuple(new)
    assert count(db, "t96.idem") == 1
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)


def test_i8_one_key_twice_in_one_transaction_and_across_a_savepoint_is_one_event(db, connect):
    w = connect("app_writer", autocommit=False)
    assert _rec_key(w, "t96-k8", '{"v": 1}') is None
    assert _rec_key(w, "t96-k8", '{"v": 1}') is None
    w.execute("SAVEPOINT s")
    assert _rec_key(w, "t96-k8", '{"v": 2}') == "PA004"
    w.execute("ROLLBACK TO SAVEPOINT s")
    w.execute("SAVEPOINT s2")
    assert _rec_key(w, "t96-k9", '{"v": 1}') is None
    w.execute("ROLLBACK TO SAVEPOINT s2")
    assert _rec_key(w, "t96-k9", '{"v": 9}') is None
    w.commit()
    got = sorted(db.execute("SELECT idempotency_key, payload->>'v' FROM audit.events WHERE kind = 't96.idem'").fetchall())
    assert got == [("t96-k8", "1"), ("t96-k9", "9")]


def test_b5_a_numeric_key_is_found_by_its_spelling_and_never_reads_absent_under_another(db, connect):
    with table_owner_kit(db, connect, "t96") as kit:
        kit.owner.execute("""CREATE TABLE public.t96_nk (id numeric PRIMARY KEY, v int);
                             GRANT ALL ON public.t96_nk TO app_writer""")
        enable_tracking(kit.maint, "public.t96_nk")
        kit.writer.execute("INSERT INTO public.t96_nk VALUES (1.50, 1), (-0.0, 2), (12345678901234567890.000000001, 3)")
        kit.writer.execute("UPDATE public.t96_nk SET v = v * 10")
        at = kit.tick()
        assert len(kit.history("public.t96_nk", "1.50")) == 2
        assert kit.as_of("public.t96_nk", "1.50", at) == {"id": 1.50, "v": 10}
        for twin in ["1.5", "1.500", "0", "-0", "0.0", "12345678901234567890", "12345678901234567890.0000000010"]:
            state = kit.state("public.t96_nk", twin, at)
            assert state[0] != "absent", (twin, state)
            if state[0] == "existed":
                assert float(state[1]["id"]) == float(twin), (twin, state)
        # a precision that rounds would fold two keys into one: 12345678901234567890.000000001 and ...0
        kit.writer.execute("INSERT INTO public.t96_nk VALUES (12345678901234567890, 4)")
        at2 = kit.tick()
        a = kit.as_of("public.t96_nk", "12345678901234567890", at2)
        b = kit.as_of("public.t96_nk", "12345678901234567890.000000001", at2)
        assert a is not None and a["v"] == 4, a
        assert b is not None and b["v"] == 30, b


def test_e6_deep_schemas_and_payloads_are_refused_or_checked_to_the_bottom(db, connect):
    maint = connect("app_maintainer")
    deep: dict = {"type": "string", "maxLength": 1}
    for _ in range(300):
        deep = {"type": "object", "required": ["a"], "properties": {"a": deep}}
    st = sqlstate_of(maint, "SELECT audit.register_event_type('t96.deep', %s::jsonb, true)", [json.dumps(deep)])
    if st is None:
        ok: object = "x"
        bad: object = "xy"
        for _ in range(300):
            ok, bad = {"a": ok}, {"a": bad}
        w = connect("app_writer")
        assert rec(w, "t96.deep", json.dumps(ok)) is None
        assert rec(w, "t96.deep", json.dumps(bad)) == "PA003"
        assert count(db, "t96.deep") == 1
    else:
        assert db.execute("SELECT count(*) FROM audit.event_types WHERE kind = 't96.deep'").fetchone()[0] == 0
    # a schema far deeper than any stack: refused, nothing registered, the session usable
    deeper = '{"properties": {"a": ' * 20000 + '{"type": "object"}' + "}}" * 20000
    st2 = sqlstate_of(maint, "SELECT audit.register_event_type('t96.deeper', %s::jsonb, true)", [deeper])
    assert st2 is not None or db.execute("SELECT count(*) FROM audit.event_types WHERE kind = 't96.deeper'").fetchone()[0] == 1
    assert maint.execute("SELECT 1").fetchone() == (1,)


def test_b6_a_keyless_table_with_a_baseline_given_a_key_later_never_says_its_rows_were_absent(db, connect):
    with table_owner_kit(db, connect, "t96") as kit:
        kit.owner.execute("""CREATE TABLE public.t96_nokey (id int NOT NULL, v int);
                             GRANT ALL ON public.t96_nokey TO app_writer;
                             INSERT INTO public.t96_nokey VALUES (1, 1), (2, 2)""")
        enable_tracking(kit.maint, "public.t96_nokey", baseline=True)
        at0 = kit.tick()
        before = kit.state("public.t96_nokey", "1", at0)
        kit.owner.execute("ALTER TABLE public.t96_nokey ADD PRIMARY KEY (id)")
        kit.writer.execute("UPDATE public.t96_nokey SET v = 20 WHERE id = 2")
        at1 = kit.tick()
        s1_then = kit.state("public.t96_nokey", "1", at0)
        s1_now = kit.state("public.t96_nokey", "1", at1)
        s2_now = kit.state("public.t96_nokey", "2", at1)
        # row 1 existed all along and never changed: no record may say it was not there
        said = {"before the key, then": before, "after the key, then": s1_then, "after the key, now": s1_now}
        assert {k: v for k, v in said.items() if v[0] == "absent"} == {}
        assert s2_now[0] == "existed" and s2_now[1]["v"] == 20, s2_now


def test_i9_the_first_holder_rolls_back_and_the_waiting_writer_records_its_own(db, connect):
    a = connect("app_writer", autocommit=False)
    b = connect("app_writer")
    assert _rec_key(a, "t96-k10", '{"who": "a"}') is None
    out: list = []
    t = threading.Thread(target=lambda: out.append(_rec_key(b, "t96-k10", '{"who": "b"}')))
    t.start()
    time.sleep(0.5)
    a.rollback()
    t.join(30)
    assert out == [None]
    assert db.execute("SELECT payload->>'who' FROM audit.events WHERE idempotency_key = 't96-k10'").fetchall() == [("b",)]
    assert _rec_key(b, "t96-k10", '{"who": "a"}') == "PA004"


def test_r4_prunes_racing_each_other_and_an_open_seal_leave_a_chain_that_verifies(db, connect):
    w = connect("app_writer")
    for _ in range(6):
        for i in range(4):
            w.execute("SELECT audit.record(kind => 't96.race', payload => %s::jsonb)", [json.dumps({"i": i})])
        assert seal_all(db) is None
    for i in range(5):
        w.execute("SELECT audit.record(kind => 't96.race2', payload => %s::jsonb)", [json.dumps({"i": i})])
    time.sleep(0.1)
    sealer = connect(autocommit=False)
    sealer.execute("SELECT audit.seal(1000)")  # held open while both prune
    before = db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]
    results: list = []

    def prune(conn):
        try:
            results.append(conn.execute("SELECT deleted FROM audit.prune_events('50 milliseconds'::interval, 5)").fetchone()[0])
        except Exception as e:  # noqa: BLE001
            results.append(type(e).__name__)

    threads = [threading.Thread(target=prune, args=(connect("app_maintainer"),)) for _ in range(2)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    sealer.commit()
    for t in threads:
        t.join(60)
    after = db.execute("SELECT count(*) FROM audit.event_log WHERE kind LIKE 't96.race%'").fetchone()[0]
    deleted = sum(r for r in results if isinstance(r, int))
    assert len(results) == 2
    recorded = db.execute("SELECT coalesce(sum((payload->>'deleted')::int), 0) FROM audit.events"
                          " WHERE kind = 'audit.pruned'").fetchone()[0]
    assert recorded == deleted
    assert after >= 5 and before >= deleted and deleted >= 1, results
    # every seq missing from the log lies in a range some audit.pruned event names
    unrecorded = db.execute("""
        SELECT count(*) FROM generate_series(1, (SELECT max(seq) FROM audit.event_log)) g(seq)
         WHERE NOT EXISTS (SELECT 1 FROM audit.event_log l WHERE l.seq = g.seq)
           AND NOT EXISTS (SELECT 1 FROM audit.events p WHERE p.kind = 'audit.pruned'
                            AND g.seq BETWEEN (p.payload->>'first_seq')::bigint AND (p.payload->>'last_seq')::bigint)
    """).fetchone()[0]
    assert unrecorded == 0
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)
    assert count(db, "t96.race2") == 5


def test_b7_a_key_moved_to_another_column_between_two_trackings_never_reads_rows_absent(db, connect):
    with table_owner_kit(db, connect, "t96") as kit:
        kit.owner.execute("""CREATE TABLE public.t96_mv (id int PRIMARY KEY, code int NOT NULL, v int);
                             GRANT ALL ON public.t96_mv TO app_writer;
                             INSERT INTO public.t96_mv VALUES (1, 2, 0), (2, 7, 0)""")
        enable_tracking(kit.maint, "public.t96_mv", baseline=True)
        kit.maint.execute("SELECT audit.disable_tracking('public.t96_mv')")
        kit.owner.execute("""ALTER TABLE public.t96_mv DROP CONSTRAINT t96_mv_pkey;
                             ALTER TABLE public.t96_mv ADD PRIMARY KEY (code)""")
        enable_tracking(kit.maint, "public.t96_mv")
        at = kit.tick()
        # code 2 is row id=1, code 7 is row id=2: both exist; nothing recorded says otherwise
        said = {k: kit.state("public.t96_mv", k, at) for k in ("2", "7")}
        assert {k: v for k, v in said.items() if v[0] == "absent"} == {}
        for k, v in said.items():
            if v[0] == "existed":
                assert v[1]["code"] == int(k), (k, v)


def test_b8_no_baseline_of_a_table_the_maintainer_does_not_own(db, connect):
    with table_owner_kit(db, connect, "t96") as kit:
        kit.mallory.execute("""CREATE TABLE public.t96_theirs (id int PRIMARY KEY, secret text);
                               INSERT INTO public.t96_theirs VALUES (1, 's1')""")
        st = sqlstate_of(kit.maint, "SELECT audit.enable_tracking('public.t96_theirs', baseline => true)")
        st2 = sqlstate_of(kit.owner, "SELECT audit.enable_tracking('public.t96_theirs', baseline => true)")
        assert st is not None and st2 is not None
        assert db.execute("SELECT count(*) FROM audit.events WHERE payload::text LIKE '%s1%' OR kind LIKE '%t96_theirs%'"
                          ).fetchone()[0] == 0
        assert db.execute("SELECT count(*) FROM audit.tracked_tables WHERE relid = 'public.t96_theirs'::regclass"
                          ).fetchone()[0] == 0


def test_b9_after_a_baseline_a_key_retyped_with_a_rewrite_never_reads_its_rows_absent(db, connect):
    with table_owner_kit(db, connect, "t96") as kit:
        kit.owner.execute("""CREATE TABLE public.t96_rt (id text PRIMARY KEY, v int);
                             GRANT ALL ON public.t96_rt TO app_writer;
                             INSERT INTO public.t96_rt VALUES (' 7', 1), ('08', 2), ('+9', 3)""")
        enable_tracking(kit.maint, "public.t96_rt", baseline=True)
        refused = try_write(kit.owner, "ALTER TABLE public.t96_rt ALTER COLUMN id TYPE int USING id::int")
        at = kit.tick()
        if refused is None:
            said = {k: kit.state("public.t96_rt", k, at) for k in ("7", "8", "9")}
            assert {k: v for k, v in said.items() if v[0] == "absent"} == {}
            for k, v in said.items():
                if v[0] == "existed":
                    assert str(v[1]["id"]).strip().lstrip("+0") == k, (k, v)
        else:
            assert kit.state("public.t96_rt", " 7", at)[0] == "existed"


def test_b10_a_renamed_key_column_keeps_the_baselines_rows(db, connect):
    with table_owner_kit(db, connect, "t96") as kit:
        kit.owner.execute("""CREATE TABLE public.t96_rn (id int PRIMARY KEY, v int);
                             GRANT ALL ON public.t96_rn TO app_writer;
                             INSERT INTO public.t96_rn VALUES (1, 1), (2, 2)""")
        enable_tracking(kit.maint, "public.t96_rn", baseline=True)
        refused = try_write(kit.owner, "ALTER TABLE public.t96_rn RENAME COLUMN id TO ident")
        kit.writer.execute("UPDATE public.t96_rn SET v = 20 WHERE %s = 2" % ("id" if refused else "ident"))
        at = kit.tick()
        s1 = kit.state("public.t96_rn", "1", at)
        s2 = kit.state("public.t96_rn", "2", at)
        assert s1[0] in ("existed", "unknown"), s1
        assert s2[0] == "existed" and s2[1]["v"] == 20, s2


def test_e7_loading_a_catalogue_never_loosens_a_kind_someone_made_strict(db, connect):
    maint = connect("app_maintainer")
    tighter = {"type": "object", "required": ["method", "mfa"],
               "properties": {"method": {"type": "string", "enum": ["passkey"]}, "mfa": {"const": True}}}
    maint.execute("SELECT audit.register_event_type('auth.login', %s::jsonb, true)", [json.dumps(tighter)])
    with suppress(InvalidArgument):  # refused (mend of e7): nothing is loaded, the registration stands
        load_catalogue(maint, "auth", replace=True)
    strict = db.execute("SELECT strict FROM audit.event_types WHERE kind = 'auth.login'").fetchone()[0]
    w = connect("app_writer")
    st = rec(w, "auth.login", '{"method": "password"}')
    assert strict is True, "loading the catalogue with --replace made a strict kind lax"
    assert st == "PA003"
