"""A thirty-fourth attacker's trial, on the mends of the last hour: a row moved between tenants is
two events (addcdb6); only a primary key names rows and DETACH PARTITION ... CONCURRENTLY is refused
by its words (380d7c5); the access log and error answers keep the client's text out (d15bcf1); the
CLI takes a DSN's password out of what it prints (f79bac5); the standalone verifier names a wrong
key instead of crashing (d86fb07).

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
Tables are table_owner's (the `attacker` fixture) and tracked by app_maintainer unless said otherwise.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from schema_changes import both_verifiers_ok, events_naming, gone_events, verifier_and_key

from pgaudit_py import audit_context, enable_tracking, seal

ROOT = Path(__file__).resolve().parent.parent


def _api_views(db, start_api, make_token, tenants: tuple[str, ...]) -> dict[str, str]:
    """What each tenant's reader token gets from /v1/audit (and the stream's first page), as text."""
    seal(db)
    api = start_api("app_reader", poll_interval=0.2, heartbeat=1)
    seen: dict[str, str] = {}
    for tenant in tenants:
        with api.client(make_token("reader", tenant_id=tenant)) as client:
            response = client.get("/v1/audit", params={"limit": "500"})
            assert response.status_code == 200, response.text
            text = response.text
            from api_server import sse_messages
            wanted = len(json.loads(text)["events"])
            got, deadline = 0, time.monotonic() + 15
            with client.stream("GET", "/v1/audit/stream", params={"since_seq": "0"}) as r:
                for m in sse_messages(r):
                    if m.event == "audit":
                        text += "\n" + m.data
                        got += 1
                    if got >= wanted or time.monotonic() > deadline:
                        break
            seen[tenant] = text
    return seen


# --- 1. addcdb6: a row moved between tenants, by every route a statement may take ------------------------

ROUTES = {
    # The table is partitioned by tenant: the move is a cross-partition UPDATE, its key [id, tenant] changes.
    "partitioned_by_tenant": (
        ["CREATE TABLE public.cases (id int, tenant text, note text, PRIMARY KEY (id, tenant)) PARTITION BY LIST (tenant)",
         "CREATE TABLE public.cases_t1 PARTITION OF public.cases FOR VALUES IN ('t1')",
         "CREATE TABLE public.cases_t2 PARTITION OF public.cases FOR VALUES IN ('t2')",
         "INSERT INTO public.cases VALUES (1, 't2', 't2-private-diagnosis'), (2, 't2', 't2-stays')"],
        "UPDATE public.cases SET tenant = 't1', note = 't1-own-note' WHERE id = 1",
        '[1, "t1"]', '[1, "t2"]'),
    "on_conflict_do_update": (
        ["CREATE TABLE public.cases (id int PRIMARY KEY, tenant text, note text)",
         "INSERT INTO public.cases VALUES (1, 't2', 't2-private-diagnosis'), (2, 't2', 't2-stays')"],
        "INSERT INTO public.cases VALUES (1, 't1', 't1-own-note'), (3, 't1', 't1-new')"
        " ON CONFLICT (id) DO UPDATE SET tenant = excluded.tenant, note = excluded.note",
        "1", None),
    "merge": (
        ["CREATE TABLE public.cases (id int PRIMARY KEY, tenant text, note text)",
         "INSERT INTO public.cases VALUES (1, 't2', 't2-private-diagnosis'), (2, 't2', 't2-stays')"],
        "MERGE INTO public.cases c USING (VALUES (1, 't1', 't1-own-note'), (2, 't2', 't2-stays'), (4, 't1', 'x')) AS s(id, tenant, note)"
        " ON c.id = s.id WHEN MATCHED THEN UPDATE SET tenant = s.tenant, note = s.note"
        " WHEN NOT MATCHED THEN INSERT VALUES (s.id, s.tenant, s.note)",
        "1", None),
    # A key shift in one statement (row 2 leaves key 2 first, row 1 takes it while moving to t1): the
    # row that took key 2 in another tenant must be what key 2 is now.
    "key_shift_and_move": (
        ["CREATE TABLE public.cases (id int PRIMARY KEY, tenant text, note text)",
         "INSERT INTO public.cases VALUES (2, 't2', 't2-stays')",
         "INSERT INTO public.cases VALUES (1, 't2', 't2-private-diagnosis')"],
        "UPDATE public.cases SET id = id + 1, tenant = CASE WHEN id = 1 THEN 't1' ELSE tenant END,"
        " note = CASE WHEN id = 1 THEN 't1-own-note' ELSE note END",
        "2", "1"),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_a_row_moved_between_tenants_by_any_statement_keeps_each_tenant_to_its_own_version(
        db, connect, attacker, start_api, make_token, route):
    """Attack: the mend splits an UPDATE's event when a row's tenant column changes. The same move
    made by a cross-partition UPDATE of a table partitioned BY its tenant (the key [id, tenant]
    changes too), by INSERT ... ON CONFLICT DO UPDATE, by MERGE, and inside a key shift of one
    statement (row 2 leaves key 2, row 1 takes key 2 while moving from t2 to t1). A break: a tenant's
    token reads the other tenant's version of the row (list or stream), two events share an id,
    row_as_of of the row's new key is not its new version (or its old key still shows the old one),
    or the two verifiers do not both accept the chain."""
    setup, move, new_key, old_key = ROUTES[route]
    for command in setup[:-2] if route == "key_shift_and_move" else setup[:-1]:
        attacker.execute(command)
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant")
    for command in setup[-2:] if route == "key_shift_and_move" else setup[-1:]:
        attacker.execute(command)
    with audit_context(attacker, tenant_id="t3"):
        attacker.execute(move)
    seen = _api_views(db, start_api, make_token, ("t1", "t2"))
    assert "t2-private-diagnosis" not in seen["t1"], f"{route}: t1's token reads t2's version of the row"
    assert "t1-own-note" not in seen["t2"], f"{route}: t2's token reads t1's version of the row"
    ids = [r[0] for r in db.execute("SELECT id FROM audit.events WHERE kind LIKE 'public.cases.%'")]
    assert len(ids) == len(set(ids)), f"{route}: two events share an id"
    later = "now() + interval '1 minute'"
    now_new = db.execute(f"SELECT audit.row_as_of('public.cases', %s, {later}) ->> 'note'", (new_key,)).fetchone()[0]
    assert now_new == "t1-own-note", f"{route}: row_as_of({new_key}) is {now_new!r}, not the row's new version"
    if old_key is not None and old_key != new_key:
        now_old = db.execute(f"SELECT audit.row_as_of('public.cases', %s, {later}) ->> 'note'", (old_key,)).fetchone()[0]
        assert now_old is None, f"{route}: row_as_of({old_key}) still shows {now_old!r} after the row left that key"
    both_verifiers_ok(db)


def test_a_row_with_no_tenant_claimed_by_another_tenants_session_shows_it_no_earlier_version(
        db, connect, attacker, start_api, make_token):
    """Attack (the NULL side of the split): a row is written with its tenant column NULL by tenant
    t1's session, so docs/capture.md files it under t1 (the pgaudit_py.tenant_id setting), holding t1's
    private note. Later tenant t2's session claims it: UPDATE ... SET tenant = 't2'. The split compares
    coalesce(old column, session tenant) with coalesce(new column, session tenant): 't2' and 't2', so
    the UPDATE is one event under t2 carrying row_before, the version filed under t1. A break: t2's
    token reads t1's private note, which only ever was filed under t1."""
    attacker.execute("CREATE TABLE public.cases (id int PRIMARY KEY, tenant text, note text)")
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant")
    with audit_context(attacker, tenant_id="t1"):
        attacker.execute("INSERT INTO public.cases VALUES (1, NULL, 't1-private-diagnosis')")
    with audit_context(attacker, tenant_id="t2"):
        attacker.execute("UPDATE public.cases SET tenant = 't2', note = 't2-own-note' WHERE id = 1")
    filed = db.execute("SELECT tenant_id, kind FROM audit.events WHERE kind LIKE 'public.cases.%' ORDER BY intake_id"
                       ).fetchall()
    seen = _api_views(db, start_api, make_token, ("t1", "t2"))
    assert "t2-own-note" not in seen["t1"], "t1's token reads t2's version"
    assert "t1-private-diagnosis" not in seen["t2"], (
        f"t2's token reads the version of the row filed under t1 (events: {filed}): a row with no tenant"
        " written by t1's session, claimed by t2's session, hands t2 its earlier version in row_before")


def test_a_huge_redacted_and_excluded_row_moved_between_tenants_leaks_nothing_across(
        db, connect, attacker, start_api, make_token):
    """Attack: a row over 1 MiB (its large values omitted from the images, the omission noted in
    the payload), with a redacted and an excluded column, moved from t2 to t1 while every column
    changes. The split payloads are built by _gen_noted from each image alone and `changed` is
    dropped; a break: either tenant's token reads the other's note, blob marker, or a `changed`
    entry, a value of the excluded column appears anywhere, the redacted secret appears anywhere,
    or the verifiers disagree."""
    attacker.execute("CREATE TABLE public.cases (id int PRIMARY KEY, tenant text, note text, secret text,"
                     " internal text, blob text)")
    enable_tracking(connect("app_maintainer"), "public.cases", tenant_column="tenant", redact_columns=["secret"],
                    exclude_columns=["internal"])
    # Random text (does not compress below 1 MiB), a marker at its start.
    attacker.execute("INSERT INTO public.cases SELECT 1, 't2', 't2-private-note', 'T2SECRET', 'T2INTERNAL',"
                     " 'T2BLOBMARK' || string_agg(md5(i::text), '') FROM generate_series(1, 50000) i")
    attacker.execute("UPDATE public.cases SET tenant = 't1', note = 't1-own-note', secret = 'T1SECRET',"
                     " internal = 'T1INTERNAL', blob = 'T1BLOBMARK' || md5(blob) || blob WHERE id = 1")
    seen = _api_views(db, start_api, make_token, ("t1", "t2"))
    for mark in ("t2-private-note", "T2BLOBMARK"):
        assert mark not in seen["t1"], f"t1's token reads t2's {mark}"
    for mark in ("t1-own-note", "T1BLOBMARK"):
        assert mark not in seen["t2"], f"t2's token reads t1's {mark}"
    for tenant in ("t1", "t2"):
        for mark in ("T1SECRET", "T2SECRET", "T1INTERNAL", "T2INTERNAL"):
            assert mark not in seen[tenant], f"{tenant}'s token reads {mark}"
        events = json.loads(seen[tenant].split("\n", 1)[0])["events"]
        moved = [e for e in events if e["kind"] == "public.cases.update"]
        assert moved and all(not e.get("changed") for e in moved), f"{tenant}: `changed` in a split event: {moved}"
    stored = db.execute("SELECT count(*) FROM audit.events WHERE payload::text || coalesce(row_before::text, '')"
                        " || coalesce(row_after::text, '') || coalesce(changed::text, '') ~ 'SECRET|INTERNAL'"
                        ).fetchone()[0]
    assert stored == 0, "a redacted or excluded value was stored"
    both_verifiers_ok(db)


# --- 2. 380d7c5: DETACH ... CONCURRENTLY by its words; commands that commit midway ----------------------

DETACH_SPELLINGS = {
    "lower case": "alter table public.book detach partition public.book_1 concurrently",
    "comments between the words": "ALTER TABLE public.book DETACH/**/PARTITION public.book_1/* x */CONCURRENTLY",
    "tabs and newlines": "ALTER\tTABLE public.book\nDETACH\n\tPARTITION public.book_1\r\nCONCURRENTLY",
    "a quoted name beside the keyword": 'ALTER TABLE public.book DETACH PARTITION public."book_1"CONCURRENTLY',
    "a comment with a nested comment": "ALTER TABLE public.book /* a /* b */ c */ DETACH PARTITION public.book_1 CONCURRENTLY",
    "ONLY": "ALTER TABLE ONLY public.book DETACH PARTITION public.book_1 CONCURRENTLY",
    "a partition of a partition": "ALTER TABLE public.book_2 DETACH PARTITION public.book_2a CONCURRENTLY",
    "extended protocol, prepared": "PREPARED:ALTER TABLE public.book DETACH PARTITION public.book_1 CONCURRENTLY",
}


@pytest.mark.parametrize("spelling", list(DETACH_SPELLINGS))
def test_detach_concurrently_of_a_tracked_tables_partition_is_refused_however_spelt(db, connect, attacker, spelling):
    """Attack: audit_detach_concurrently reads current_query() for the words DETACH and
    CONCURRENTLY. table_owner tries spellings the regular expression might miss (comments glued to
    the keyword, a quoted name glued to it, tabs/CR/LF, nested comments, ONLY, a partition of a
    partition, the extended protocol with a named prepared statement), while another of its sessions
    holds the table so that a detach that ran would wait and be cancelled by its statement_timeout
    (leaving the partition detach pending). A break: a partition's rows leave the tracked table (the
    parent shows fewer rows) with nothing refused or recorded."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100)")
    attacker.execute("CREATE TABLE public.book_2 PARTITION OF public.book FOR VALUES FROM (100) TO (200)"
                     " PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_2a PARTITION OF public.book_2 FOR VALUES FROM (100) TO (150)")
    attacker.execute("CREATE TABLE public.book_2b PARTITION OF public.book_2 FOR VALUES FROM (150) TO (200)")
    attacker.execute("INSERT INTO public.book VALUES (1, 1), (2, 2), (120, 3), (160, 4)")
    enable_tracking(connect("app_maintainer"), "public.book")
    n = len(gone_events(db))
    holder = connect("table_owner", autocommit=False)
    holder.execute("SELECT 1 FROM public.book LIMIT 0")
    detacher = connect("table_owner")
    detacher.execute("SET statement_timeout = '2s'")
    command = DETACH_SPELLINGS[spelling]
    outcome = "ran"
    try:
        if command.startswith("PREPARED:"):
            detacher.execute(command.removeprefix("PREPARED:"), prepare=True)
        else:
            detacher.execute(command)
    except psycopg.Error as exc:
        outcome = exc.sqlstate or "?"
    holder.rollback()
    if outcome == "PA008":
        return
    seen = db.execute("SELECT count(*) FROM public.book").fetchone()[0]
    if seen == 4:
        return
    recorded = [e for t in ("public.book", "public.book_1", "public.book_2", "public.book_2a")
                for e in events_naming(db, t, n)]
    assert recorded, (f"{spelling}: {command!r} ended {outcome}; tracked public.book shows {seen} of its 4 rows,"
                      " nothing refused or recorded")


def test_an_interrupted_reindex_concurrently_of_the_primary_key_leaves_the_key_enforced(db, connect, attacker):
    """Attack (a command that commits midway and fires no event trigger when cancelled): REINDEX
    INDEX CONCURRENTLY of a tracked table's primary key builds a new index, swaps it in, and then waits
    for every lock holder before marking the old one dead and dropping it. table_owner holds the table
    in another session so that the reindex is cancelled (its own statement_timeout) in a wait, and
    then tries to write a second row under an existing key. A break: the key is no longer enforced
    (two rows named by one target_id), or the table's writes are no longer captured, with nothing
    recorded or refused."""
    attacker.execute("CREATE TABLE public.acct (name text PRIMARY KEY, balance int)")
    attacker.execute("INSERT INTO public.acct VALUES ('alice', 10), ('bob', 20)")
    enable_tracking(connect("app_maintainer"), "public.acct")
    outcomes = []
    for holder_mode in ("reader", "writer"):
        holder = connect("table_owner", autocommit=False)
        if holder_mode == "reader":
            holder.execute("SELECT 1 FROM public.acct LIMIT 0")  # blocks only the waits before dead/drop
        else:
            holder.execute("UPDATE public.acct SET balance = balance WHERE name = 'bob'")  # blocks the build
        reindexer = connect("table_owner")
        reindexer.execute("SET statement_timeout = '3s'")
        try:
            reindexer.execute("REINDEX INDEX CONCURRENTLY public.acct_pkey")
            outcomes.append("done")
        except psycopg.Error as exc:
            outcomes.append(exc.sqlstate)
        holder.rollback()
    indexes = db.execute("SELECT c.relname, i.indisvalid, i.indisready, i.indisprimary FROM pg_index i"
                         " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'public.acct'::regclass"
                         " ORDER BY 1").fetchall()
    try:
        attacker.execute("INSERT INTO public.acct VALUES ('alice', 99)")
        duplicated = True
    except psycopg.Error:
        duplicated = False
    assert not duplicated, f"after REINDEX CONCURRENTLY ended {outcomes}, a second 'alice' was accepted: {indexes}"
    attacker.execute("INSERT INTO public.acct VALUES ('carol', 1)")
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.acct.insert' AND target_id = 'carol'"
                      ).fetchone()[0] == 1, f"a write after the interrupted reindex was not captured: {indexes}"


# --- 3. d15bcf1: client text in answers -------------------------------------------------------------------

@pytest.mark.parametrize("where", ["bare query string", "query parameter name", "stream query string"])
def test_a_token_pasted_into_the_query_string_is_not_said_back(start_api, make_token, caplog, where):
    """Attack (as trial 32's path, by the query string): a client pastes its token into the URL as a
    bare query string (`curl -H "Authorization: Bearer $TOKEN" "$API/v1/audit?$TOKEN"`, a connector
    configured both ways) or as a parameter's name. errors.py says "a
    client's text, a token pasted into it say, stays out of answers" (a 404 no longer says the path
    back); answers are kept by proxies, browsers' devtools, SIEM connectors' error logs. A break: the
    400 answer (or the access log) holds the whole token."""
    import logging

    token = make_token("reader", name="pasted")
    caplog.set_level(logging.INFO, logger="pgaudit_py.server.access")
    api = start_api()
    path = {"bare query string": f"/v1/audit?{token}", "query parameter name": f"/v1/audit?{token}=1",
            "stream query string": f"/v1/audit/stream?{token}"}[where]
    with api.client() as client:
        # The connector sends it in the header as well (configured both ways): the request authenticates.
        answer = client.get(path, headers={"Authorization": f"Bearer {token}"})
    secret = token.rsplit("_", 1)[1]
    lines = [r.getMessage() for r in caplog.records if r.name == "pgaudit_py.server.access"]
    assert not [line for line in lines if secret in line], "the token is in the access log"
    assert secret not in answer.text, f"{where}: the {answer.status_code} answer says the token back: {answer.text[:200]}"


# --- 4. f79bac5: the password of a DSN, by the commands that do not go through Settings.connect --------

PASSWORD = "Tr0ub4dor-s3cret"


@pytest.mark.parametrize("how", ["--dsn", "PGAUDIT_DSN"])
@pytest.mark.parametrize("dsn", [
    f"postgresql://postgres:{PASSWORD}%@127.0.0.1:5432/app",      # a '%' in the password, unencoded
    f"postgresql://postgres:{PASSWORD}@[::1/app",                  # a typo in an IPv6 host
    f"postgresql://postgres:{PASSWORD}@127.0.0.1:5432/app?x=1",    # an unknown parameter
])
def test_pgaudit_demo_with_a_malformed_dsn_does_not_print_its_password(dsn, how):
    """Attack (as trial 32, by another command): `pgaudit demo --dsn` (docs: install into a scratch
    schema of a superuser's database) takes the DSN straight to psycopg.connect in demo.main, not
    through Settings.connect, whose mend keeps libpq's parse errors (which quote the offending part
    of the URI, password included) out of the output. A break: the password is printed."""
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    args = [sys.executable, "-m", "pgaudit_py.cli", "demo"]
    if how == "--dsn":
        args += ["--dsn", dsn]
    else:
        env["PGAUDIT_DSN"] = dsn
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert PASSWORD not in out, f"exit {done.returncode}, the password is printed: {out.strip()[:300]}"


# --- 5. d86fb07: the standalone verifier given hostile inputs ----------------------------------------------

def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("where", ["checkpoint", "manifest", "manifest, through pgaudit archive verify --offline",
                                   "checkpoint, through pgaudit verify --checkpoint"])
def test_the_standalone_verifier_names_a_deeply_nested_document_rather_than_crashing(tmp_path, where):
    """Attack (on the auditor's kit): a checkpoint (--checkpoint) or a manifest in the archive
    directory is valid JSON whose one value nests 600 arrays deep. strict_json reads it (the C
    parser goes deeper than Python's recursion limit) and turns only its own RecursionError into a
    named problem; canonical() then recurses over the document (to check the canonical form, or the
    signature) with two frames a level. docs/auditors.md: the verifier exits 0 only when everything
    holds "and names each problem otherwise". The same document through the CLI: `pgaudit archive
    verify --offline`, and `pgaudit verify --checkpoint` (read_checkpoint reads it, check_signatures
    recurses in canonical.dumps, before any connection). A break: a Python traceback (RecursionError)
    instead of a named problem and exit 1."""
    verifier, key = verifier_and_key(tmp_path)
    archive = tmp_path / "archive"
    archive.mkdir()
    args = [sys.executable, "-I", str(verifier), str(archive), "--public-key", str(key)]
    if where.startswith("checkpoint"):
        checkpoint = tmp_path / "checkpoint.json"
        checkpoint.write_text('{"checkpoint": {"block_no": 1, "block_hash": "00", "x": ' + _deep(600) + '},'
                              ' "signatures": {"ed25519": {"signature": "AAAA"}}}')
        args += ["--checkpoint", str(checkpoint)]
    else:
        (archive / "blocks-000000000001-000000000001.manifest.json").write_text(
            '{"manifest": {"x": ' + _deep(600) + '}, "signatures": {"ed25519": {"signature": "AAAA"}}}\n')
    if "pgaudit verify" in where:
        args = [sys.executable, "-m", "pgaudit_py.cli", "verify", "--checkpoint", str(checkpoint), "--public-key",
                str(key), "--dsn", "host=127.0.0.1 port=1 user=nobody"]
    if "--offline" in where:
        args = [sys.executable, "-m", "pgaudit_py.cli", "archive", "verify", "--offline", "--target",
                f"file://{archive}", "--public-key", str(key)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert "Traceback" not in done.stderr, f"{where}: {done.stderr.strip().splitlines()[-1]}"
    if "pgaudit verify" in where:  # the CLI's bad input: exit 2, the reason on stderr (docs/cli.md)
        assert done.returncode == 2 and "is not a pgaudit checkpoint file" in done.stderr, done
        return
    assert done.returncode == 1, (done.returncode, done.stdout[-300:])
    assert "PROBLEM" in done.stdout


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink to a fifo", "huge"])
def test_the_standalone_verifier_neither_hangs_nor_crashes_on_an_odd_key_or_checkpoint(tmp_path, kind):
    """Attack: the key file or the checkpoint given is a FIFO (a read would wait for ever), a
    directory, a symbolic link to a FIFO, or a file of 200 MiB (sparse). A break: the verifier hangs
    (killed after 60 s), prints a traceback, or exits 0."""
    verifier, key = verifier_and_key(tmp_path)
    archive = tmp_path / "archive"
    archive.mkdir()
    odd = tmp_path / "odd"
    if kind == "fifo":
        os.mkfifo(odd)
    elif kind == "directory":
        odd.mkdir()
    elif kind == "symlink to a fifo":
        os.mkfifo(tmp_path / "fifo")
        odd.symlink_to(tmp_path / "fifo")
    else:
        with open(odd, "wb") as f:
            f.truncate(200 << 20)
    for args in (["--public-key", str(odd)], ["--public-key", str(key), "--checkpoint", str(odd)]):
        try:
            done = subprocess.run([sys.executable, "-I", str(verifier), str(archive), *args], capture_output=True,
                                  text=True, timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{kind} as {args[-2]}: the verifier hangs")
        assert "Traceback" not in done.stderr, f"{kind} as {args[-2]}: {done.stderr.strip().splitlines()[-1]}"
        assert done.returncode == 1, (kind, args[-2], done.returncode, done.stdout[-300:])


@pytest.mark.parametrize("command", [["status"], ["seal"], ["tokens", "list"], ["demo"]])
def test_a_password_with_an_unencoded_at_sign_is_not_printed_in_part(command):
    """Attack (f79bac5's mend takes out the password as libpq parsed it): the operator's password
    holds an '@' (`Tr0ub4dor@s3cret`), written into a URI unencoded, the commonest DSN mistake there
    is. libpq ends the user info at the first '@': the password is read as `Tr0ub4dor` (taken out of
    the message) and the host as `s3cret@127.0.0.1`, which the resolver's error then names. A break:
    the rest of the password (`s3cret`) is printed."""
    dsn = "postgresql://app_reader:Tr0ub4dor@s3cret@127.0.0.1:5432/app"
    done = subprocess.run([sys.executable, "-m", "pgaudit_py.cli", *command, "--dsn", dsn], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "s3cret" not in out and "Tr0ub4dor" not in out, (
        f"exit {done.returncode}, part of the password is printed: {out.strip()[:300]}")


@pytest.mark.parametrize("how", ["one query string (a host migrator)", "psql -1"])
def test_the_install_script_applies_while_a_tracked_table_has_partitions(db, connect, attacker, how):
    """Refusing what it should not (380d7c5): audit_detach_concurrently refuses any ALTER TABLE whose
    current_query() holds the words DETACH and CONCURRENTLY while a tracked table has partitions.
    docs/installer.md: `pgaudit-install --sql` is applied by psql or "a host migrator (Alembic, Django
    migrations, Flyway) ... in one transaction"; a migrator commonly sends the script as ONE query
    string, so current_query() in every event trigger is the whole script, whose text holds both words
    (sql/65_schema_changes.sql's own comments) and ALTER TABLE statements (sql/10_guards.sql). A break:
    with one partitioned table tracked, the upgrade (here a re-apply of the current release, which
    the installer also runs on every install) is refused, PA008, and cannot be applied that way."""
    from pgaudit_py.install_script import install_script

    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100)")
    enable_tracking(connect("app_maintainer"), "public.book")
    script = install_script(db, "audit")
    assert "ALTER TABLE" in script
    if how.startswith("psql"):
        i = db.info
        done = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-h", i.host, "-p", str(i.port),
                               "-U", i.user, "-d", i.dbname, "-f", "-"], input=script, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr[-600:]
        return
    try:
        db.execute(script)
    except psycopg.Error as exc:
        pytest.fail(f"the install script, applied as one query string with a tracked partitioned table, is refused:"
                    f" {exc.sqlstate} {str(exc).splitlines()[0]}")


@pytest.mark.parametrize("index", ["invalid unique index", "dead-after-cancel unique index"])
def test_a_partition_attached_with_an_invalid_unique_index_cannot_carry_duplicate_keys_into_a_tracked_table(
        db, connect, attacker, index):
    """Attack (ATTACH PARTITION reuses a partition's matching index for the parent's primary key):
    table_owner prepares a table with two rows under one id and a unique index on id that enforces
    nothing: a CREATE UNIQUE INDEX CONCURRENTLY that failed on the duplicates (left invalid), or one
    whose build was cancelled. It then attaches the table as a partition of its tracked partitioned
    table. A break: the attach succeeds and the tracked table holds two rows under one primary key
    (every event of either named by the same target_id), with writes accepted."""
    attacker.execute("CREATE TABLE public.book (id int PRIMARY KEY, v int) PARTITION BY RANGE (id)")
    attacker.execute("CREATE TABLE public.book_1 PARTITION OF public.book FOR VALUES FROM (0) TO (100)")
    enable_tracking(connect("app_maintainer"), "public.book")
    attacker.execute("CREATE TABLE public.loose (id int NOT NULL, v int)")
    if index == "invalid unique index":
        attacker.execute("INSERT INTO public.loose VALUES (150, 1), (150, 2)")
        with contextlib.suppress(psycopg.Error):  # fails on the duplicates, leaving the index invalid
            attacker.execute("CREATE UNIQUE INDEX CONCURRENTLY loose_id ON public.loose (id)")
    else:
        attacker.execute("INSERT INTO public.loose VALUES (150, 1)")
        holder = connect("table_owner", autocommit=False)
        holder.execute("INSERT INTO public.loose VALUES (151, 9)")  # the build waits for this writer
        builder = connect("table_owner")
        builder.execute("SET statement_timeout = '2s'")
        with contextlib.suppress(psycopg.Error):  # cancelled in its wait
            builder.execute("CREATE UNIQUE INDEX CONCURRENTLY loose_id ON public.loose (id)")
        holder.rollback()
        attacker.execute("INSERT INTO public.loose VALUES (150, 2)")
    state = db.execute("SELECT indisvalid, indisready FROM pg_index WHERE indexrelid = to_regclass('public.loose_id')"
                       ).fetchone()
    try:
        attacker.execute("ALTER TABLE public.book ATTACH PARTITION public.loose FOR VALUES FROM (100) TO (200)")
    except psycopg.Error:
        return  # refused (by PostgreSQL or the product): safe
    dup = db.execute("SELECT count(*) FROM public.book WHERE id = 150").fetchone()[0]
    try:
        attacker.execute("UPDATE public.book SET v = v + 10 WHERE id = 150")
        written = True
    except psycopg.Error:
        written = False
    names = db.execute("SELECT count(*) FROM audit.events WHERE kind = 'public.book.update' AND target_id = '150'"
                       ).fetchone()[0]
    assert dup <= 1, (f"public.loose (unique index {state}) attached to tracked public.book holding {dup} rows under"
                      f" primary key 150; an UPDATE of them was {'accepted' if written else 'refused'},"
                      f" {names} events named 150")
