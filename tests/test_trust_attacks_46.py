"""A forty-sixth attacker's trial, against the mends of trials 44 and 45: secrets functions that no
longer repeat a slot, a `which`, a value or a key (aef89e5), revoke_token's pasted whole token
(aef89e5), the master rotation that waited on a finished one (aef89e5), the quarantined prune event
that justifies a prune point only with seal()'s announcement (6742b2a), the offline verifier's
readline capped by the signed manifest (e484f2c), and the idempotent retry of a quarantined first
event (a18d0b4). New variants: a master key handed to the Python wrappers' other arguments (a
batch size, a key file, a tenant); a key or value given to every text argument of every secrets
function, with NOTICEs, CONTEXT lines and the server log read; server settings the docs and
`pgaudit status` do not name (debug_print_plan, auto_explain) writing a held key to the log; a
pasted token in other forms (a newline, spaces, upper case, a `Bearer ` prefix) through the library
and the CLI, and a whole token given as a new token's name; three master rotators, a rotation
racing add_master_key and writers that create a tenant's first data key on either side of the last
step; a genuine audit.event_quarantined borrowed by a rewritten quarantine row, and forged
announcements of another kind or origin; signed manifests whose data_bytes is negative, zero, off by
one, or huge over one long line under an address-space limit; and the retry of a tenantless
quarantined first event, compared field by field with what the writer first got.

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from test_trust_attacks_44 import (
    archive_due,
    blocks_of,
    delete_through,
    forged_point,
    keys_in,
    pruned_payload,
    quarantine_key,
    run_offline_bounded,
    tamper,
    verdicts,
)

from pgaudit_py import canonical, record, seal, secrets
from pgaudit_py import verify_archive as offline
from pgaudit_py.checkpoint import load_keys, sign
from pgaudit_py.errors import IdempotencyConflict
from pgaudit_py.tokens import create_token, revoke_token

# -- helpers ---------------------------------------------------------------------------------------


class ServerLog:
    """What the cluster's server log gained since the test began."""

    def __init__(self, cluster):
        self.path = Path(cluster.log)
        self.start = self.path.stat().st_size

    def text(self) -> str:
        with self.path.open("rb") as f:
            f.seek(self.start)
            return f.read().decode("utf-8", "replace")


@pytest.fixture
def server_log(pg_cluster) -> ServerLog:
    return ServerLog(pg_cluster)


def new_key() -> str:
    return os.urandom(32).hex()


def key_forms(key: str) -> list[str]:
    return [key, key.upper(), key[:32], key[32:]]


def hold(conn: psycopg.Connection, key: str, which: str = "master_key") -> None:
    conn.execute("SELECT audit.hold_master_key(%s::text, %s::text)", (key, which))


def setup_master(conn: psycopg.Connection, key: str) -> None:
    hold(conn, key, "new_master_key")
    conn.execute("SELECT audit.add_master_key()")
    hold(conn, "", "new_master_key")
    hold(conn, key)


def fill(conn: psycopg.Connection, tenants: list[str], slots: list[str]) -> dict[tuple[str, str], str]:
    values = {}
    for slot in slots:
        conn.execute("SELECT audit.declare_secret(%s, %s)", (slot, f"slot {slot}"))
    for tenant in tenants:
        for slot in slots:
            values[(tenant, slot)] = value = f"v-{tenant}-{slot}-{os.urandom(4).hex()}"
            conn.execute("SELECT audit.put_secret(%s, %s, %s)", (tenant, slot, value))
    return values


def read_all(conn: psycopg.Connection, values: dict[tuple[str, str], str]) -> None:
    got = {k: conn.execute("SELECT audit.read_secret(%s, %s)", k).fetchone()[0] for k in values}
    assert got == values


def events(db: psycopg.Connection, kind: str) -> list[tuple]:
    return db.execute(
        "SELECT tenant_id, target_id, payload, outcome FROM audit.events WHERE kind = %s ORDER BY occurred_at",
        (kind,),
    ).fetchall()


def wait_until_waiting(db: psycopg.Connection, pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = db.execute("SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
        if row and row[0] == "Lock":
            return
        time.sleep(0.02)
    raise AssertionError("the session never waited for a lock")


def in_thread(conn: psycopg.Connection, query: str, params: tuple = ()) -> Callable[[], object]:
    out: list[object] = []

    def run() -> None:
        try:
            out.append(conn.execute(query, params).fetchall())
        except psycopg.Error as exc:
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()

    def result() -> object:
        thread.join(30)
        assert out, "the call did not finish"
        return out[0]

    return result


def error_text(exc: BaseException) -> str:
    """Everything an exception carries that a caller could print or log: str, repr, args, the
    server's fields, and its causes."""
    parts = [str(exc), repr(exc), repr(exc.args)]
    diag = getattr(exc, "diag", None)
    if diag is not None:
        parts += [
            diag.message_primary or "",
            diag.message_detail or "",
            diag.message_hint or "",
            diag.context or "",
            diag.internal_query or "",
        ]
    for attr in ("message", "detail", "hint"):
        parts.append(str(getattr(exc, attr, "") or ""))
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None and linked is not exc:
            parts.append(error_text(linked))
    return "\n".join(parts)


def pgaudit_cli(db, *args: str, role: str, stdin: str = "", env: dict[str, str] | None = None):
    info = db.info
    dsn = f"host={info.host} port={info.port} dbname={info.dbname} user={role}"
    return subprocess.run(
        [sys.executable, "-m", "pgaudit_py.cli", *args, "--dsn", dsn],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
        env={**os.environ, **(env or {})},
    )


# ====================== 1. credentials handed to the wrong argument ======================

WRAPPER_MIXUPS: dict[str, Callable[[psycopg.Connection, str], object]] = {
    # "rotate to this key": the key where the batch size goes
    "rotate_master_key(conn, key)": lambda app, key: secrets.rotate_master_key(app, key),  # type: ignore[arg-type]
    "rotate_tenant_key(conn, 't1', key)": lambda app, key: secrets.rotate_tenant_key(app, "t1", key),  # type: ignore[arg-type]
    # "add this key": the key where a server key file's path goes
    "add_master_key(conn, key)": lambda app, key: secrets.add_master_key(app, key),
}


@pytest.mark.parametrize("mixup", list(WRAPPER_MIXUPS))
def test_a_master_key_handed_to_another_argument_of_the_python_wrappers_is_in_no_error_nor_log(
    db, connect, server_log, mixup
):
    """Attack (the mix-up trial 45 found, through the library's other arguments): the held master
    key passed where rotate_master_key / rotate_tenant_key take a batch size, or where
    add_master_key takes a key file. docs/secrets.md: no error of the secrets functions repeats a
    key it was given. Safe: the key (or half of it) is in neither the exception (str, repr, args,
    causes, the server's fields) nor the server log."""
    app = connect("app_secrets")
    key = new_key()
    setup_master(app, key)
    fill(app, ["t1"], ["s"])
    said = ""
    try:
        WRAPPER_MIXUPS[mixup](app, key)
    except Exception as exc:  # noqa: BLE001 - any refusal; what matters is what it says
        said = error_text(exc)
    assert said, "the mix-up was not refused"
    logged = server_log.text()
    assert {
        "error": [f for f in key_forms(key) if f in said],
        "server log": [f for f in key_forms(key) if f in logged],
    } == {"error": [], "server log": []}


def test_no_secrets_function_error_notice_or_context_repeats_what_its_text_arguments_were_given(
    db, connect, server_log
):
    """Attack: a master key and a tenant's value each given to every text argument of every secrets
    function that refuses it (slots, descriptions, tenants past 256 characters, values past 64
    KiB, a malformed key, key files, token ids), with every NOTICE collected and the refusals'
    CONTEXT lines and internal queries read; the server log at its defaults (log_min_error_statement
    = error logs each failing statement). Safe: neither is repeated anywhere."""
    app = connect("app_secrets")
    key = new_key()
    setup_master(app, key)
    fill(app, ["t1"], ["s"])
    value = "sk_live_" + os.urandom(16).hex()
    notices: list[str] = []
    app.add_notice_handler(lambda d: notices.append(f"{d.message_primary} {d.message_detail} {d.context}"))
    maintainer = connect("app_maintainer")
    maintainer.add_notice_handler(lambda d: notices.append(f"{d.message_primary} {d.message_detail} {d.context}"))
    calls = []
    for secret in (key, value):
        calls += [
            (app, "SELECT audit.hold_master_key(key => %s::text || 'z', which => 'master_key')", (secret,)),
            (app, "SELECT audit.hold_master_key(key => %s::text, which => %s::text)", ("master_key", secret)),
            (app, "SELECT audit.add_master_key(key_file => %s::text)", (secret,)),
            (app, "SELECT audit.declare_secret(key => %s::text, description => '')", (secret,)),
            (app, "SELECT audit.declare_secret(key => '9' || %s::text, description => 'd')", (secret,)),
            (app, "SELECT audit.put_secret(tenant_id => 't1', key => %s::text, value => 's')", (secret,)),
            (app, "SELECT audit.put_secret(tenant_id => repeat(%s::text, 7), key => 's', value => 'v')", (secret,)),
            (app, "SELECT audit.put_secret(tenant_id => 't1', key => 's', value => repeat(%s::text, 2000))", (secret,)),
            (app, "SELECT audit.read_secret(tenant_id => 't1', key => %s::text)", (secret,)),
            (app, "SELECT audit.read_secret(tenant_id => repeat(%s::text, 7), key => 's')", (secret,)),
            (app, "SELECT audit.delete_secret(tenant_id => 't1', key => %s::text)", (secret,)),
            (app, "SELECT * FROM audit.rotate_tenant_key(tenant_id => %s::text, batch_size => 10)", (secret,)),
            (maintainer, "SELECT * FROM audit.revoke_api_token(token => %s::text)", (secret,)),
        ]
    accepted, leaked = [], []
    for conn, query, params in calls:
        try:
            conn.execute(query, params)
            accepted.append(query)
        except psycopg.Error as exc:
            said = error_text(exc)
            leaked += [(query, f[:8]) for f in key_forms(key) + [value] if f in said]
    assert accepted == [], "every call was to be refused"
    logged = server_log.text()
    seen = "\n".join(notices)
    assert {
        "errors": leaked,
        "notices": [f[:8] for f in key_forms(key) + [value] if f in seen],
        "server log": [f[:8] for f in key_forms(key) + [value] if f in logged],
    } == {"errors": [], "notices": [], "server log": []}


def decimal_bytes(text: str) -> str:
    return " ".join(str(b) for b in text.encode())


LOG_ROUTES = {
    # Each plan tree at LOG: a bound parameter of an unnamed statement is folded into a Const,
    # printed as its bytes in decimal.
    # (Unwrapped: debug_pretty_print, on by default, breaks the byte list across lines, numbers too.)
    "debug_print_plan": ["debug_print_plan = on", "debug_pretty_print = off"],
    # The plan of every statement, VERBOSE: its output list shows the folded arguments as literals.
    "auto_explain": [
        "session_preload_libraries = 'auto_explain'",
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_verbose = on",
    ],
}


@pytest.mark.parametrize("route", list(LOG_ROUTES))
def test_a_setting_that_logs_a_held_key_is_one_status_warns_of(db, connect, server_log, route):
    """Attack (by a DBA's diagnostics, or a superuser who wants the key): a database setting that
    writes each statement's plan to the server log, with bound parameters folded in as constants:
    debug_print_plan (any role may set it for itself), or auto_explain with log_verbose. docs/
    secrets.md lists the settings that log a bound key and says `pgaudit status` warns of each one in
    force. Safe: the held key does not reach the log, or exposure_warnings names the setting."""
    for setting in LOG_ROUTES[route]:
        db.execute(f"ALTER DATABASE {db.info.dbname} SET {setting}")
    app = connect("app_secrets")
    key = new_key()
    setup_master(app, key)
    logged = server_log.text()
    assert "planTree" in logged or "Query Text" in logged, "the setting logged no plan"  # the route is on
    numbers = " " + " ".join(re.findall(r"-?\d+", logged)) + " "
    leaked = key in logged or f" {decimal_bytes(key)} " in numbers
    warnings = secrets.exposure_warnings(db)
    named = [w for w in warnings if route.split("_")[0] in w or route in w]
    assert {"key in the server log": leaked, "warned": bool(named)} != {"key in the server log": True, "warned": False}


# ====================== 2. tokens: pasted forms, and a token as a name ======================

PASTES: dict[str, Callable[[str], str]] = {
    "exact": lambda t: t,
    "trailing newline": lambda t: t + "\n",
    "surrounding spaces": lambda t: f"  {t} ",
    "upper-case hex": lambda t: "pga_" + t[4:].upper(),
    "Bearer prefix": lambda t: "Bearer " + t,
}


PASTE_CASES = [(paste, "library") for paste in PASTES] + [("trailing newline", "cli")]


@pytest.mark.parametrize(("paste", "route"), PASTE_CASES)
def test_a_token_pasted_to_revoke_in_another_form_never_reaches_the_server(db, connect, server_log, paste, route):
    """Attack (an operator's paste, as it comes from a terminal, a header or a shouting chat):
    revoke_token / `pgaudit tokens revoke` given the whole token with a trailing newline, spaces,
    upper-case hex, or the `Bearer ` of the header it was copied from. docs/http.md: a whole token
    pasted is revoked by its id and its secret part is never sent. With log_statement = 'all' on
    (every bound parameter logged), safe: the secret part (in either case) is in no server log line
    and no output of the command."""
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_statement = 'all'")
    maintainer = connect("app_maintainer")
    token = create_token(maintainer, "leaked", "reader").token
    secret_part = token.rsplit("_", 1)[1]
    pasted = PASTES[paste](token)
    said = ""
    if route == "library":
        try:
            revoke_token(connect("app_maintainer"), pasted)
        except Exception as exc:  # noqa: BLE001
            said = error_text(exc)
    else:
        done = pgaudit_cli(db, "tokens", "revoke", pasted, role="app_maintainer")
        said = done.stdout + done.stderr
    logged = server_log.text()
    assert "revoke_api_token" in logged  # statements are logged (or the call never left the client)
    assert {
        "output": secret_part in said.lower(),
        "server log": secret_part in logged.lower(),
    } == {"output": False, "server log": False}


@pytest.mark.parametrize("given", ["the token", "the token and a newline"])
def test_a_whole_token_given_as_another_tokens_name_is_refused_without_repeating_it(db, connect, server_log, given):
    """Attack (the same paste, into create): `pgaudit tokens create --name` given a live token (to
    name its replacement after it, or by a slip of the clipboard). sql/58_api_tokens.sql: the token
    never reaches the database, its logs or its events; names that look like ids are refused. Safe:
    refused, and the secret part is in no error, table, event or server log line."""
    maintainer = connect("app_maintainer")
    token = create_token(maintainer, "live", "reader").token
    secret_part = token.rsplit("_", 1)[1]
    name = token if given == "the token" else token + "\n"
    said = ""
    try:
        create_token(maintainer, name, "reader")
    except Exception as exc:  # noqa: BLE001
        said = error_text(exc)
    stored = (
        db.execute("SELECT count(*) FROM audit.api_tokens WHERE name LIKE %s", (f"%{secret_part}%",)).fetchone()[0]
        + db.execute("SELECT count(*) FROM audit.events WHERE payload::text LIKE %s", (f"%{secret_part}%",)).fetchone()[
            0
        ]
    )
    assert {
        "refused": bool(said),
        "in the error": secret_part in said,
        "in tables or events": stored,
        "in the server log": secret_part in server_log.text(),
    } == {"refused": True, "in the error": False, "in tables or events": 0, "in the server log": False}


# ====================== 3. rotations racing ======================


def rotation_ready(db, connect, rotators: int) -> tuple[str, str, dict, list[psycopg.Connection]]:
    """Three tenants' secrets under `old`, `new` added; `rotators` sessions holding both keys (the
    first not in autocommit, its holding committed)."""
    old, new = new_key(), new_key()
    app = connect("app_secrets")
    setup_master(app, old)
    values = fill(app, ["t0", "t1", "t2"], ["s"])
    hold(app, new, "new_master_key")
    assert app.execute("SELECT state FROM audit.add_master_key()").fetchone() == ("next",)
    sessions = [connect("app_secrets", autocommit=False)] + [connect("app_secrets") for _ in range(rotators - 1)]
    for conn in sessions:
        hold(conn, old)
        hold(conn, new, "new_master_key")
    sessions[0].commit()
    return old, new, values, sessions


def test_three_master_rotators_racing_to_the_end_record_one_rotation(db, connect):
    """Attack (by circumstance, widened from trial 45's two): rotator A finishes uncommitted; B and C
    both wait on it; A commits. Safe: B and C return done, one secret.master_key_rotated, the old
    version retired once (A's time), every value readable with the new key alone."""
    old, new, values, (a, b, c) = rotation_ready(db, connect, 3)
    assert a.execute("SELECT done FROM audit.rotate_master_key(100)").fetchone() == (True,)
    waiting = []
    for conn in (b, c):
        waiting.append(in_thread(conn, "SELECT done, from_version, to_version FROM audit.rotate_master_key(100)"))
        wait_until_waiting(db, conn.info.backend_pid)
    a.commit()
    retired_by_a = db.execute("SELECT retired_at FROM audit.master_keys WHERE version = 1").fetchone()
    answers = [w() for w in waiting]
    assert {
        "answers": [x if isinstance(x, Exception) else x[0][0] for x in answers],
        "rotated events": len(events(db, "secret.master_key_rotated")),
        "states": db.execute("SELECT version, state FROM audit.master_keys ORDER BY 1").fetchall(),
        "retired_at": db.execute("SELECT retired_at FROM audit.master_keys WHERE version = 1").fetchone(),
    } == {
        "answers": [True, True],
        "rotated events": 1,
        "states": [(1, "retired"), (2, "active")],
        "retired_at": retired_by_a,
    }
    new_only = connect("app_secrets")
    hold(new_only, new)
    read_all(new_only, values)


def test_a_key_added_while_a_rotation_commits_its_last_step_starts_a_clean_next_rotation(db, connect):
    """Attack (by circumstance): rotator A retires version 1 uncommitted while B registers a third
    key (add_master_key, waiting on A's lock). Safe: B's key becomes version 3 'next' once A
    commits (never a second active, never a rotation from a retired version), one rotation and one
    added event for it; rotating on to version 3 leaves every value readable with that key alone."""
    old, new, values, (a,) = rotation_ready(db, connect, 1)
    third = new_key()
    b = connect("app_secrets")
    hold(b, third, "new_master_key")
    assert a.execute("SELECT done FROM audit.rotate_master_key(100)").fetchone() == (True,)
    adding = in_thread(b, "SELECT version, state FROM audit.add_master_key()")
    wait_until_waiting(db, b.info.backend_pid)
    a.commit()
    assert adding() == [(3, "next")]
    assert db.execute("SELECT version, state FROM audit.master_keys ORDER BY 1").fetchall() == [
        (1, "retired"),
        (2, "active"),
        (3, "next"),
    ]
    assert len(events(db, "secret.master_key_rotated")) == 1
    onward = connect("app_secrets")
    hold(onward, new)
    hold(onward, third, "new_master_key")
    assert secrets.rotate_master_key(onward).done
    only_third = connect("app_secrets")
    hold(only_third, third)
    read_all(only_third, values)
    assert len(events(db, "secret.master_key_rotated")) == 2


@pytest.mark.parametrize("first", ["the writer", "the rotation"])
def test_a_writer_holding_only_the_old_key_creating_a_first_data_key_at_the_last_step(db, connect, first):
    """Attack (by circumstance): a writer that holds only the old master key creates a new tenant's
    first data key while the rotation takes its last step, each side first in turn. Safe: either the
    write fails, or the new tenant's value ends readable with the new key alone once the rotation is
    done; no data key is left without a wrapping under the active version."""
    old, new, values, (a,) = rotation_ready(db, connect, 1)
    writer = connect("app_secrets", autocommit=False)
    hold(writer, old)
    writer.commit()
    wrote: object = None
    if first == "the writer":
        writer.execute("SELECT audit.put_secret('tnew', 's', 'fresh')")
        rotating = in_thread(a, "SELECT done FROM audit.rotate_master_key(100)")
        wait_until_waiting(db, a.info.backend_pid)
        writer.commit()
        rotating()
        a.commit()
        wrote = True
    else:
        assert a.execute("SELECT done FROM audit.rotate_master_key(100)").fetchone() == (True,)
        writing = in_thread(writer, "SELECT audit.put_secret('tnew', 's', 'fresh')")
        wait_until_waiting(db, writer.info.backend_pid)
        a.commit()
        wrote = writing()
        if isinstance(wrote, Exception):
            writer.rollback()
        else:
            writer.commit()
    finisher = connect("app_secrets")
    hold(finisher, old)
    hold(finisher, new, "new_master_key")
    with contextlib.suppress(psycopg.Error):
        secrets.rotate_master_key(finisher)
    orphans = db.execute(
        "SELECT d.tenant_id, d.version FROM audit.data_keys d WHERE NOT EXISTS (SELECT 1 FROM audit.wrapped_data_keys w"
        " JOIN audit.master_keys m ON m.version = w.master_version AND m.state = 'active'"
        " WHERE (w.tenant_id, w.version) = (d.tenant_id, d.version))"
    ).fetchall()
    assert orphans == []
    new_only = connect("app_secrets")
    hold(new_only, new)
    if not isinstance(wrote, Exception):
        values[("tnew", "s")] = "fresh"
    read_all(new_only, values)


# ====================== 4. prune points: borrowed and forged announcements ======================


def chain_reads_as_a_prune(db: psycopg.Connection) -> bool:
    """A sealed event of pgaudit_py's own origin says a prune happened: audit.pruned itself, or the
    announcement that one was set aside."""
    row = db.execute(
        "SELECT count(*) FROM audit.event_log WHERE origin = 'system' AND (kind = 'audit.pruned'"
        " OR (kind = 'audit.event_quarantined' AND payload ->> 'kind' = 'audit.pruned'))"
    ).fetchone()
    return bool(row and row[0])


def test_a_genuine_announcement_borrowed_by_a_rewritten_quarantine_row_does_not_pass_a_removal_off(db, connect):
    """Attack (a superuser, writing nothing into the chain): an ordinary event ('big.refused') was set
    aside by seal() honestly, so the chain holds seal()'s audit.event_quarantined naming its id (and
    its kind). Later the superuser deletes blocks 1..2's events, writes their prune point, and
    rewrites that old quarantine row into an audit.pruned of origin system naming block 2. The mend
    asks only that an announcement name the row's id. Safe: the verifiers flag the removal, or
    something sealed says a prune happened (docs/canonical-form.md: the removal then reads as a
    prune in the chain)."""
    blocks_of(db, connect)
    # The log, as installed, refuses it: seal() sets an event aside only while its path is as installed.
    as_installed = ("UPDATE audit._install SET snapshot = audit._security_snapshot()"
                    " WHERE installed_at = (SELECT max(installed_at) FROM audit._install)")
    db.execute("ALTER TABLE audit.event_log ADD CONSTRAINT no_big CHECK (kind <> 'big.refused')")
    db.execute(as_installed)
    record(connect("app_writer"), "big.refused", target_id="x")
    seal(db)
    db.execute("ALTER TABLE audit.event_log DROP CONSTRAINT no_big")
    db.execute(as_installed)
    seal(db)  # the announcement, sealed
    assert db.execute("SELECT count(*) FROM audit.quarantine WHERE kind = 'big.refused'").fetchone() == (1,)
    assert verdicts(db) == ((True, None), (True, None))  # honest so far: no false alarm
    tamper(
        db,
        f"{delete_through(2)}; {forged_point(2)};"
        " UPDATE audit.quarantine SET kind = 'audit.pruned', origin = 'system', target_type = 'event_log',"
        f" payload = {pruned_payload(2)} WHERE kind = 'big.refused'",
    )
    seal(db)
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE seq <= 6").fetchone() == (0,)  # removed
    (sql_ok, sql_problem), (py_ok, py_problem) = verdicts(db)
    assert {
        "sql verify passes": sql_ok,
        "python verify passes": py_ok,
        "chain reads as a prune": chain_reads_as_a_prune(db),
    } != {"sql verify passes": True, "python verify passes": True, "chain reads as a prune": False}, (
        sql_problem,
        py_problem,
    )


@pytest.mark.parametrize(
    ("origin", "announced_kind"),
    [("system", "order.paid"), ("record", "audit.pruned"), ("system", "audit.pruned")],
)
def test_a_forged_announcement_passes_a_removal_only_as_a_prune_in_the_chain(db, connect, origin, announced_kind):
    """Attack (a superuser forging both): blocks 1..2's events deleted, their prune point written, a
    quarantine row holding an audit.pruned naming block 2, and an audit.event_quarantined naming
    that row, of origin system announcing another kind ('order.paid'), or of origin record, or
    (the documented limit) of origin system announcing audit.pruned; all sealed. Safe: both
    verifiers flag the removal, or the chain reads as a prune."""
    blocks_of(db, connect)
    qid = db.execute("SELECT gen_random_uuid()::text").fetchone()[0]
    tamper(
        db,
        f"{delete_through(2)}; {forged_point(2)};"
        " INSERT INTO audit.quarantine (id, actor_type, actor_id, db_role, kind, target_type, outcome, txid,"
        "   occurred_at, payload, origin, intake_id, quarantined_at, sqlstate, error)"
        f" SELECT '{qid}', 'db_role', 'app_maintainer', 'app_maintainer', 'audit.pruned', 'event_log',"
        f"   'success', '1', now(), {pruned_payload(2)}, 'system', 1, now(), '54000', 'set aside';"
        " INSERT INTO audit.event_intake (actor_type, actor_id, db_role, kind, target_type, target_id, outcome, txid,"
        "   occurred_at, payload, origin)"
        f" SELECT 'db_role', 'audit_sealer', 'audit_sealer', 'audit.event_quarantined', 'event', '{qid}', 'failure',"
        f"   pg_current_xact_id(), now(), jsonb_build_object('kind', '{announced_kind}', 'intake_id', 1,"
        f"   'sqlstate', '54000', 'error', 'set aside'), '{origin}'",
    )
    seal(db)
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE seq <= 6").fetchone() == (0,)
    (sql_ok, sql_problem), (py_ok, py_problem) = verdicts(db)
    reads = chain_reads_as_a_prune(db)
    assert (not sql_ok and not py_ok) or reads, (origin, announced_kind, sql_problem, py_problem, reads)


# ====================== 5. the offline verifier and data_bytes ======================


def one_batch_archive(db, connect, tmp_path: Path):
    blocks_of(db, connect, rounds=1, per=3)
    signing, public = keys_in(tmp_path)
    directory = tmp_path / "archive"
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 100, 3)")
    run = archive_due(connect("app_maintainer"), directory, signing)
    assert len(run.batches) == 1
    return directory, signing, public, run.batches[0]


def resign(directory: Path, batch, signing: Path, **fields: object) -> None:
    """Rewrite the batch's manifest with `fields` (and the data object's gz size and hash as it now
    is), signed again with the real key."""
    manifest_path = directory / batch.manifest_object
    body = json.loads(manifest_path.read_bytes())["manifest"]
    raw = (directory / batch.data_object).read_bytes()
    body.update(gz_bytes=len(raw), gz_sha256=hashlib.sha256(raw).hexdigest(), **fields)
    signed = sign(body, load_keys(signing_key=signing))
    manifest_path.write_text(canonical.dumps({"manifest": body, "signatures": signed}) + "\n")


def offline_verdict(directory: Path, public: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = offline.main([str(directory), "--public-key", str(public)])
    return code, out.getvalue()


def test_signed_manifests_whose_data_bytes_is_negative_zero_or_off_by_one_are_each_named(db, connect, tmp_path):
    """Attack: a properly signed manifest whose data_bytes is -1, 0, one short, one over, or the
    exact size (the last line then ends exactly at the cap). Safe: the exact one verifies; each
    other is refused with a PROBLEM (no traceback, no pass)."""
    directory, signing, public, batch = one_batch_archive(db, connect, tmp_path)
    body = json.loads((directory / batch.manifest_object).read_bytes())["manifest"]
    size = body["data_bytes"]
    with gzip.open(directory / batch.data_object, "rb") as f:
        assert len(f.read()) == size
    verdict = {}
    for claimed in (-1, 0, size - 1, size + 1, size):
        resign(directory, batch, signing, data_bytes=claimed)
        try:
            code, said = offline_verdict(directory, public)
            verdict[claimed] = (code, "PROBLEM" in said)
        except Exception as exc:  # noqa: BLE001 - a traceback is the finding
            verdict[claimed] = ("raised", type(exc).__name__)
    assert verdict == {-1: (1, True), 0: (1, True), size - 1: (1, True), size + 1: (1, True), size: (0, False)}


def test_a_signed_manifest_claiming_a_huge_size_over_one_long_line_is_named_within_bounded_memory(
    db, connect, tmp_path
):
    """Attack (trial 44's bomb, past e484f2c's cap): the signed manifest now claims data_bytes of 4
    GiB, so the cap is MAX_LINE (1 GiB); the data object inflates to one line of 1 GiB and a MiB,
    no newline. Safe: under a 768 MiB address space the verifier names a problem (PROBLEM, exit 1)
    rather than being killed or dying in a traceback."""
    directory, signing, public, batch = one_batch_archive(db, connect, tmp_path)
    chunk = b"x" * (1 << 20)
    with gzip.open(directory / batch.data_object, "wb", compresslevel=1) as out:
        for _ in range(1025):
            out.write(chunk)
    resign(directory, batch, signing, data_bytes=4 << 30)
    started = time.monotonic()
    done = run_offline_bounded(directory, public, 768 << 20)
    assert time.monotonic() - started < 120
    assert (done.returncode, "PROBLEM" in done.stdout) == (1, True), (done.stdout[-800:], done.stderr[-800:])


# ====================== 6. the idempotent retry of a quarantined first event ======================


def test_a_tenantless_quarantined_first_event_is_returned_as_it_was_and_to_its_role_only(db, connect):
    """Attack: a first event without a tenant (the key's NULL-tenant branch), set aside by the
    sealer; its retry from the same role must return exactly what the writer first got (no field
    more, none of the quarantine's own: its error, sqlstate, time), another role PA004 without the
    first event's id, address or application, and nothing is written either time."""
    writer = connect("app_writer", application_name="first-app")
    first = record(writer, "order.paid", payload={"n": 1}, idempotency_key="kn")
    assert first is not None and first.tenant_id is None
    quarantine_key(db, "kn")
    again = record(
        connect("app_writer", application_name="retry-app"), "order.paid", payload={"n": 1}, idempotency_key="kn"
    )
    assert again == first
    db.execute("CREATE ROLE app_retrier_46 NOLOGIN IN ROLE audit_writer; GRANT app_retrier_46 TO app_writer")
    clerk = connect("app_writer")
    clerk.execute("SET ROLE app_retrier_46")
    with pytest.raises(IdempotencyConflict) as refused:
        record(clerk, "order.paid", payload={"n": 1}, idempotency_key="kn")
    said = error_text(refused.value)
    assert [s for s in (str(first.id), "first-app") if s in said] == []
    assert db.execute("SELECT count(*) FROM audit.events WHERE idempotency_key = 'kn'").fetchone() == (0,)
