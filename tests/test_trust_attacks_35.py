"""A thirty-fifth attacker's trial, on the newest mends: a NULL tenant is no tenant's and a tenant
move is decided by the column alone (aec94ca, addcdb6); the concurrent-detach refusal looks only at a
statement with no transaction id yet (2e93c06); a 400 says no value back (be7dcb0); the DSN helper
(cebfd7f); the depth limit of manifests and checkpoints (0c4b18c).

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from schema_changes import verifier_and_key

from pgaudit_py import audit_context, enable_tracking, seal

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


# --- 2. 2e93c06: a concurrent detach whose transaction already has an id -----------------------------------

@pytest.mark.parametrize("how", ["pipeline after a write", "pipeline after pg_current_xact_id",
                                 "one query string after a write"])
def test_detach_concurrently_with_a_transaction_id_already_assigned_does_not_run(db, connect, attacker, how):
    """Attack: the refusal now fires only when pg_current_xact_id_if_assigned() IS NULL. table_owner
    sends, in one extended-protocol pipeline (one Sync), a statement that writes (so its implicit
    transaction has an id) and then ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY of its tracked
    table's partition; and the same as one simple query string. A break: the partition is detached
    (its rows leave the tracked table) -- the refusal was skipped because an id was assigned."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100)")
    attacker.execute("CREATE TABLE public.book_2 PARTITION OF public.book FOR VALUES FROM (100) TO (200)")
    attacker.execute("INSERT INTO public.book VALUES (1, 1), (2, 2), (150, 3)")
    enable_tracking(connect("app_maintainer"), "public.book")
    detacher = connect("table_owner")
    first = ("SELECT pg_current_xact_id()" if "xact_id" in how
             else "INSERT INTO public.who_ran VALUES ('x', 'xid', false)")
    detach = "ALTER TABLE public.book DETACH PARTITION public.book_1 CONCURRENTLY"
    outcome = "ran"
    try:
        if how.startswith("pipeline"):
            with detacher.pipeline():
                detacher.execute(first)
                detacher.execute(detach)
        else:
            detacher.execute(f"{first}; {detach}", prepare=False)
    except psycopg.Error as exc:
        outcome = f"{exc.sqlstate} {str(exc).splitlines()[0]}"
    attached = db.execute("SELECT count(*) FROM pg_inherits WHERE inhrelid = 'public.book_1'::regclass").fetchone()[0]
    rows = db.execute("SELECT count(*) FROM public.book").fetchone()[0]
    recorded = db.execute("SELECT kind FROM audit.events WHERE kind LIKE 'audit.%' AND (target_id LIKE '%book%'"
                          " OR payload::text LIKE '%book_1%') ORDER BY intake_id").fetchall()
    assert attached == 1 and rows == 3, (
        f"{how}: DETACH ... CONCURRENTLY ran ({outcome}); tracked public.book shows {rows} of 3 rows;"
        f" recorded: {recorded}")


# --- 1. aec94ca + addcdb6: tenant columns of other types, NULL moves ---------------------------------------

TENANT_TYPES = {
    # type, the old value, the new value (the same tenant in the column's own equality, or not). A jsonb
    # tenant column is refused since trial 84 (k1: "1" and 1 named one tenant; test_capture_integrity).
    "numeric 1.0 -> 1.00": ("numeric", "1.0", "1.00"),
    "timestamptz": ("timestamptz", "'2026-01-01 00:00:00+00'", "'2026-01-01 01:00:00+01'"),
    "int NULL -> 7": ("int", "NULL", "7"),
    "enum": ("public.tn", "'t2'", "'t1'"),
}


@pytest.mark.parametrize("case", list(TENANT_TYPES))
def test_a_tenant_column_of_another_type_keeps_baseline_capture_and_split_consistent(
        db, connect, attacker, start_api, make_token, case):
    """Attack: the tenant column is not text (numeric, timestamptz, int, an enum; jsonb until trial 84). The tenant
    is `image ->> column`, the split `(o ->> c) IS DISTINCT FROM (n ->> c)`. A row baselined at
    enable_tracking, then updated so that the column's text form changes (jsonb 1 -> 1.0, numeric
    trailing zeros, a timestamptz the same instant, NULL -> 7, an enum label t2 -> t1), each UPDATE
    also changing a private note. A break: an event whose tenant_id is the new tenant carries the old
    image (row_before) or an event under the old tenant carries the new note, or the tenant's token
    reads the other's note, or row_history of the row names a tenant the column never held."""
    typ, old, new = TENANT_TYPES[case]
    if typ == "public.tn":
        attacker.execute("CREATE TYPE public.tn AS ENUM ('t1', 't2')")
    attacker.execute(f"CREATE TABLE public.cases (id int PRIMARY KEY, tenant {typ}, note text)")
    attacker.execute(f"INSERT INTO public.cases VALUES (1, {old}, 'OLD-PRIVATE')")
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant")
    with audit_context(attacker, tenant_id="t9"):
        attacker.execute("SET TimeZone = 'Asia/Tokyo'")
        attacker.execute(f"UPDATE public.cases SET tenant = {new}, note = 'NEW-PRIVATE' WHERE id = 1")
    events = db.execute("SELECT kind, tenant_id, row_before::text, row_after::text, changed::text FROM audit.events"
                        " WHERE kind LIKE 'public.cases.%' ORDER BY intake_id").fetchall()
    base = [e for e in events if e[0].endswith(".baseline")]
    upd = [e for e in events if e[0].endswith(".update")]
    assert upd, events
    # No baseline by default: the old tenant is the one of the event carrying row_before.
    old_tenant = base[0][1] if base else next((e[1] for e in upd if e[2]), upd[0][1])
    for _kind, tenant, before, after, changed in upd:
        blob = (before or "") + (after or "") + (changed or "")
        if tenant == old_tenant and len(upd) > 1:  # a move: the old tenant's event holds the old image alone
            assert "NEW-PRIVATE" not in blob or tenant is None, f"{case}: old tenant {tenant!r} gets the new note: {events}"
        elif tenant != old_tenant:  # (a row that stays with its tenant: one event, both versions, its own)
            assert "OLD-PRIVATE" not in blob or old_tenant is None, (
                f"{case}: tenant {tenant!r} gets the version baselined under {old_tenant!r}: {events}")
    tenants = {e[1] for e in events if e[1] is not None}
    seal(db)
    api = start_api("app_reader")
    for tenant in tenants:
        with api.client(make_token("reader", tenant_id=tenant)) as client:
            answer = client.get("/v1/audit", params={"limit": "500"})
            assert answer.status_code == 200, answer.text
            notes = {"OLD-PRIVATE", "NEW-PRIVATE"} & set(
                n for e in answer.json()["events"] for img in (e.get("row_before"), e.get("row_after")) if img
                for n in [img.get("note")])
            assert len(notes) <= 1 or tenant == old_tenant == tenant, (
                f"{case}: tenant {tenant!r}'s token reads both versions {notes}: {events}")


def test_row_history_after_a_null_tenant_round_trip_keeps_tenants_apart(db, connect, attacker, start_api, make_token):
    """Attack: a row of t1 is moved to NULL (no tenant) and then claimed by t2, then back to t1;
    every step writes a private note. A break: any event filed under t2 carries a t1-era note, or
    under t1 a t2-era note, or a NULL-tenant version is filed under a tenant, or the tenants' tokens
    read each other's versions."""
    attacker.execute("CREATE TABLE public.cases (id int PRIMARY KEY, tenant text, note text)")
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant")
    steps = [("t1", "T1-A"), (None, "NONE-B"), ("t2", "T2-C"), (None, "NONE-D"), ("t1", "T1-E")]
    with audit_context(attacker, tenant_id="t1"):
        attacker.execute("INSERT INTO public.cases VALUES (1, 't1', 'T1-A')")
    for (tenant, note) in steps[1:]:
        with audit_context(attacker, tenant_id="t2"):
            attacker.execute("UPDATE public.cases SET tenant = %s, note = %s WHERE id = 1", (tenant, note))
    events = db.execute("SELECT tenant_id, coalesce(row_before::text, '') || coalesce(row_after::text, '')"
                        " || coalesce(changed::text, '') || payload::text FROM audit.events"
                        " WHERE kind LIKE 'public.cases.%' ORDER BY intake_id").fetchall()
    for tenant, blob in events:
        prefix = {"t1": "T1-", "t2": "T2-", None: "NONE-"}[tenant]
        foreign = [n for _, n in steps if n in blob and not n.startswith(prefix)]
        assert not foreign, f"an event under {tenant!r} carries {foreign}: {events}"
    seal(db)
    api = start_api("app_reader")
    for tenant, own in (("t1", "T1-"), ("t2", "T2-")):
        with api.client(make_token("reader", tenant_id=tenant)) as client:
            text = client.get("/v1/audit", params={"limit": "500"}).text
        leaked = [n for _, n in steps if n in text and not n.startswith(own)]
        assert not leaked, f"{tenant}'s token reads {leaked}"
    history = db.execute("SELECT audit.row_as_of('public.cases', '1', now() + interval '1 minute') ->> 'note'"
                         ).fetchone()[0]
    assert history == "T1-E", history


# --- 3. be7dcb0: client text in answers --------------------------------------------------------------------

@pytest.mark.parametrize("path", [
    "/v1/audit?limit={t}", "/v1/audit?since={t}", "/v1/audit?kind_prefix={t}!", "/v1/audit/monthly?months={t}",
    "/v1/audit/count?by_kind_prefix={t}!", "/v1/audit?{u}=1", "/v1/audit?tenant_id={t}&tenant_id={t}",
    "/v1/audit/{t}", "/v1/audit?outcome={t}", "/v1/audit?before_seq={t}", "/v1/audit/stream?since_seq={t}",
    "/v1/audit?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z&x={t}", "/v1/audit?target_id={t}%00",
])
def test_a_token_as_a_parameter_value_or_path_is_not_said_back(start_api, make_token, path):
    """Attack: a client puts its token (or its upper-cased form, as some proxies normalise) where a
    value, a path segment or a name goes, on every endpoint; the answer (400, 404, 403...) is kept by
    proxies and SIEM error logs. A break: the token's secret (or its first 40 characters) is in the
    answer."""
    token = make_token("reader", name="pasted")
    api = start_api()
    with api.client() as client:
        answer = client.get(path.format(t=token, u=token.upper()[:40]), headers={"Authorization": f"Bearer {token}"})
    secret = token.rsplit("_", 1)[1]
    for piece in (secret[:16], secret[-16:], token.upper()[4:20]):
        assert piece.lower() not in answer.text.lower(), (
            f"{path}: the {answer.status_code} answer says the token back: {answer.text[:300]}")


# --- 4. cebfd7f: a DSN's password in the CLI's output -------------------------------------------------------

PW = "Zq8wVx3kLm"


@pytest.mark.parametrize("dsn", [
    f"host=127.0.0.1 port=1 user=u password='{PW} b\\'c' dbname=x",
    f"host=127.0.0.1 port=1 user=u password={PW} sslmode=bogus{PW}",
    f"postgresql://u:{PW}/9x@127.0.0.1:1/app",
    f"postgresql://u:{PW}#frag@127.0.0.1:1/app",
    f"postgresql://u:{PW}?x@127.0.0.1:1/app",
    f"postgresql://u@127.0.0.1:1/app?password={PW}&sslmode=bogus",
    f"postgresql://u:{PW}@127.0.0.1:1/app?options=-c%20x%3D{PW}&connect_timeout=x{PW}",
    f"postgresql://u:{PW[:5]}%4{PW[5:]}@127.0.0.1:1/app",
    f"postgresql://u:{PW}@[fe80::1%25{PW}]:1/app",
    f"host=/nonexistent/{PW} user=u password={PW}",
    f"postgresql://u:{PW}@h1:1,{PW}:2/app",
])
@pytest.mark.parametrize("command", [["status"], ["demo"], ["serve", "--port", "0"]])
def test_no_cli_command_prints_any_part_of_a_dsn_password(dsn, command):
    """Attack: DSNs whose password libpq may repeat (or place elsewhere): quoted with a space and an
    escaped quote, a password also in a bad value, unencoded '/', '#', '?', '%' in a URI password, a
    password given as a URI parameter next to a bad one, in options, in a zone id of an IPv6 host, in
    a socket directory, in a second host of a list. A break: the password (or 5+ characters of it)
    is printed by `pgaudit status`, `demo` or `serve`."""
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *command, "--dsn", dsn], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env=ENV)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    for piece in (PW, PW[:6], PW[-6:]):
        assert piece not in out, f"exit {done.returncode}, the password is printed: {out.strip()[-400:]}"


# --- 5. 0c4b18c: hostile documents, wide not deep ------------------------------------------------------------

HOSTILE = {
    "a float": '1.5',
    "a huge exponent": '1e400',
    "a 5000-digit integer": '1' * 5000,
    "a lone surrogate string": '"\\ud800"',
    "a lone surrogate key": '{"\\udfff": 1}',
    "wide": '[' + ', '.join(['{"a": [1]}'] * 200000) + ']',
    "duplicate keys": '{"a": 1, "a": 2}',
    "NaN": 'NaN',
}


@pytest.mark.parametrize("where", ["checkpoint", "manifest", "manifest, through pgaudit archive verify --offline",
                                   "checkpoint, through pgaudit verify --checkpoint"])
@pytest.mark.parametrize("value", list(HOSTILE))
def test_the_verifiers_name_a_hostile_document_rather_than_crashing(tmp_path, where, value):
    """Attack: a checkpoint or manifest that is shallow but hostile: a float (canonical.dumps raises
    TypeError on floats, read_checkpoint parses without parse_float=Decimal), 1e400, an integer past
    Python's 4300-digit limit, lone surrogates in a string or a key (.encode() raises), 200 000 items
    wide, duplicate keys, NaN. Through the standalone verifier, `pgaudit archive verify --offline`
    and `pgaudit verify --checkpoint`. A break: a Python traceback instead of a named problem."""
    verifier, key = verifier_and_key(tmp_path)
    archive = tmp_path / "archive"
    archive.mkdir()
    hostile = HOSTILE[value]
    args = [sys.executable, "-I", str(verifier), str(archive), "--public-key", str(key)]
    checkpoint = tmp_path / "checkpoint.json"
    if where.startswith("checkpoint"):
        checkpoint.write_text('{"checkpoint": {"block_no": 1, "block_hash": "00", "x": ' + hostile + '},'
                              ' "signatures": {"ed25519": {"signature": "AAAA"}}}')
        args += ["--checkpoint", str(checkpoint)]
    else:
        (archive / "blocks-000000000001-000000000001.manifest.json").write_text(
            '{"manifest": {"x": ' + hostile + '}, "signatures": {"ed25519": {"signature": "AAAA"}}}\n')
    if "pgaudit verify" in where:
        args = [sys.executable, "-m", "pgaudit_py.cli", "verify", "--checkpoint", str(checkpoint), "--public-key",
                str(key), "--dsn", "host=127.0.0.1 port=1 user=nobody"]
    if "--offline" in where:
        args = [sys.executable, "-m", "pgaudit_py.cli", "archive", "verify", "--offline", "--target",
                f"file://{archive}", "--public-key", str(key)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV)
    assert "Traceback" not in done.stderr, f"{where}, {value}: {done.stderr.strip().splitlines()[-1]}"
    assert done.returncode != 0, (where, value, done.stdout[-300:])
