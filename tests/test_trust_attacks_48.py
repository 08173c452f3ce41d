"""A forty-eighth attacker's trial, against the mends of trial 47 (852d156): the wrappers' check of
every typed argument before sending it (`_values_of_their_types`), the command line's refusals
with the value replaced by 'the value given' (`_not_repeating`), tokens read as shown (NFKC, format
characters dropped) before a revocation or a name is sent, `pgaudit status` reading stored
settings as PostgreSQL does, and the offline verifier naming what it cannot read. New variants:
a key handed to a wrapper whose SQL is not built by `function_call` (rate_limit), to
text arguments that a function checks and then quotes (an outcome, a column to exclude, a batch
id, an archive target's URL, a catalogue), through the async wrappers too, and a numeric secret as
interval text that the check's reading lets through; on the
command line, a key given as `--opt=KEY`, as an extra argument, as a subcommand, and to options
whose refusal is not click's (a batch id, a target URL in an option or its environment variable,
a key file); tokens pasted without their prefix and part or all of their id, or with an invisible
character that NFKC keeps (a combining grapheme joiner), and a token's secret part given as a name; logging settings stored in hexadecimal
('0x40', '0x1', which PostgreSQL's strtol and strtod read) and a reader whose own connection sets
log_parameter_max_length = 0 (PGOPTIONS); and the offline verifier run without the power to read
past file modes, on an archive with an unreadable manifest, data object or directory.

Each test asserts the SAFE outcome: it passes when the product holds and fails when the attack works.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta, tzinfo
from pathlib import Path

import psycopg
import pytest
from test_trust_attacks_44 import ROOT, archive_due, blocks_of, keys_in, run_offline_bounded
from test_trust_attacks_46 import (
    ServerLog,
    decimal_bytes,
    error_text,
    key_forms,
    new_key,
    pgaudit_cli,
    resign,
    setup_master,
)

from pgaudit_py import aio, secrets
from pgaudit_py import archive as archiving
from pgaudit_py.archive_targets import open_target
from pgaudit_py.catalogues import load_catalogue
from pgaudit_py.events import list_events, record
from pgaudit_py.rate_limits import rate_limit
from pgaudit_py.retention import prune_events
from pgaudit_py.tokens import create_token, list_tokens, revoke_token
from pgaudit_py.tracking import enable_tracking


@pytest.fixture
def server_log(pg_cluster) -> ServerLog:
    return ServerLog(pg_cluster)


@pytest.fixture
def tracked_candidate(db):
    """A table app_maintainer owns, to name correctly while a key goes to another argument."""
    db.execute("CREATE TABLE public.t48_orders (id int PRIMARY KEY, note text)")
    db.execute("ALTER TABLE public.t48_orders OWNER TO app_maintainer")
    return "public.t48_orders"


def said_by(call: Callable[[], object]) -> str:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - any refusal; what matters is what it says
        return error_text(exc)
    return ""


def leaked(forms: list[str], said: str, logged: str) -> dict[str, list[str]]:
    return {"error": [f[:8] for f in forms if f in said], "server log": [f[:8] for f in forms if f in logged]}


# ====================== 1. a key handed to an argument of the wrong kind ======================

PY_MIXUPS: dict[str, tuple[str, Callable[[psycopg.Connection, str, str], object]]] = {
    # outcome is text that record() checks, then quotes: "invalid outcome: '<key>'"
    "record(outcome=key)": ("app_writer", lambda c, k, t: record(c, "order.paid", outcome=k)),
    # the same through the async wrappers (list_events quotes it too)
    "aio.list_events(outcome=key)": (
        "app_reader",
        lambda c, k, t: asyncio.run(_aio_list_events(c.info.dsn, k)),
    ),
    # rate_limit's SQL is its own (per_minute => %s::integer), not function_call's: no type check
    "rate_limit(per_minute=key)": ("app_writer", lambda c, k, t: rate_limit(c, "login", "alice", k)),  # type: ignore[arg-type]
    # a column's name: "column <key> of public.t48_orders does not exist"
    "enable_tracking(exclude_columns=[key])": ("app_maintainer", lambda c, k, t: enable_tracking(c, t, exclude_columns=[k])),
    # Python's own refusals, f-strings holding what they were given
    "restore_batch(batch_id=key)": (
        "app_maintainer",
        lambda c, k, t: archiving.restore_batch(c, open_target(f"file://{tempfile.gettempdir()}"), k),
    ),
    "open_target(url=key)": ("app_maintainer", lambda c, k, t: open_target(k)),
    "load_catalogue(name=key)": ("app_maintainer", lambda c, k, t: load_catalogue(c, k)),
}


async def _aio_list_events(dsn: str, key: str) -> object:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await aio.list_events(conn, outcome=key)


# Known, and left (docs/security.md, "A value given in the wrong place"): a name that names nothing
# (a column, an archive batch, a catalogue) is named by the error that refuses it, as PostgreSQL
# names a table or a column; that is how a user finds the mistake. An archive target's URL no longer
# is (tests/test_trust_attacks_114.py, s3): it may hold a credential.
NAMES_NAMED = ("enable_tracking(exclude_columns=[key])", "restore_batch(batch_id=key)", "load_catalogue(name=key)")


@pytest.mark.parametrize("mixup", [
    pytest.param(m, marks=pytest.mark.xfail(strict=True, reason="known: a name given is named")) if m in NAMES_NAMED
    else m for m in PY_MIXUPS])
def test_a_key_handed_to_an_argument_of_another_kind_is_in_no_error_nor_log(
    db, connect, server_log, tracked_candidate, mixup
):
    """Attack (trial 46/47's mix-up, past 852d156's type check): the held master key passed where a
    wrapper takes an outcome, a rate limit, a column's name, an archive batch id, an
    archive target's URL or a catalogue's name. docs/security.md: 'A key, a secret or a token given
    where another argument goes is not written back, to the client or to the server's log'. The
    check covers only arguments of function_call's typed kinds; these are text the SQL function or
    the Python wrapper checks and then quotes, or raw SQL of its own. Safe: refused or not, the key
    (or a half of it) is in neither the error nor the log."""
    setup_master(connect("app_secrets"), key := new_key())
    role, call = PY_MIXUPS[mixup]
    said = said_by(lambda: call(connect(role), key, tracked_candidate))
    assert leaked(key_forms(key), said, server_log.text()) == {"error": [], "server log": []}, said[:300]


# A secret value that is all digits (a card number, a PIN of a vault, an account number): interval
# text by the check's reading ('[0-9]+' with no unit is seconds), and out of interval's range.
NUMERIC_SECRET = "4929123456789012345"

INTERVAL_TEXT = {
    "prune_events(older_than=digits)": lambda c, s: prune_events(c, s),
}


@pytest.mark.parametrize("given", list(INTERVAL_TEXT))
def test_a_numeric_secret_read_as_interval_text_is_not_repeated_by_the_interval_input(
    db, connect, server_log, given
):
    """Attack: a secret value of digits (put_secret takes any text) handed to older_than, which takes
    interval text. `_interval_text` reads '[0-9]+' (and 'ago') as interval words, so the value is
    sent; PostgreSQL's interval input refuses it as out of range and repeats it ('interval field
    value out of range: "..."'). Safe: the digits are in neither the error nor the log."""
    said = said_by(lambda: INTERVAL_TEXT[given](connect("app_maintainer"), NUMERIC_SECRET))
    assert said, "the value was not refused"
    assert leaked([NUMERIC_SECRET], said, server_log.text()) == {"error": [], "server log": []}, said[:300]


class Slot(str, enum.Enum):
    KEY = new_key()


class KeyZone(tzinfo):
    """A time zone whose name is a key (a tzinfo built from configuration, say)."""

    name = new_key()

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=2)

    def tzname(self, dt: datetime | None) -> str:
        return self.name

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)


COVERED = {
    # a str Enum holding a key, where an interval goes: text, but not interval text
    "prune_events(older_than=str Enum of a key)": (Slot.KEY.value, lambda c: prune_events(c, Slot.KEY)),
    # a time whose zone is named by a key, with until before since: 'since (%) is after until (%)'
    "list_events(since > until, tz named by a key)": (
        KeyZone.name,
        lambda c: list_events(c, since=datetime(2030, 1, 1, tzinfo=KeyZone()), until=datetime(2020, 1, 1, tzinfo=KeyZone())),
    ),
}


@pytest.mark.parametrize("given", list(COVERED))
def test_values_the_check_covers_are_refused_without_their_text(db, connect, server_log, given):
    """Attack: kinds the type check was not written for (a str Enum holding a key, a datetime
    whose tzinfo's name is a key). Safe: refused, or answered, and the key in neither error nor log."""
    secret, call = COVERED[given]
    said = said_by(lambda: call(connect("app_maintainer")))
    assert leaked(key_forms(secret), said, server_log.text()) == {"error": [], "server log": []}, said[:300]


# ====================== 2. the command line ======================


def cli_cases(tmp: Path) -> dict[str, tuple[Callable[[str], list[str]], Callable[[str], dict[str, str]]]]:
    none: Callable[[str], dict[str, str]] = lambda k: {}  # noqa: E731
    return {
        # `--opt=value`: the argv item is '--batch-size=KEY', not KEY, so no replacement matches
        "secrets rotate-master --batch-size=KEY": (lambda k: ["secrets", "rotate-master", f"--batch-size={k}"], none),
        # the value given as an argument, not on standard input: 'Got unexpected extra argument (...)'
        "secrets put --tenant t1 slot VALUE": (lambda k: ["secrets", "put", "--tenant", "t1", "api_key", k], none),
        # 'No such command ...': not a BadParameter, so never rewritten
        "secrets KEY": (lambda k: ["secrets", k], none),
        # the product's own refusals, f-strings printed whole by run_guarded
        "archive restore --batch KEY": (
            lambda k: ["archive", "restore", "--batch", k, "--target", f"file://{tmp}"],
            none,
        ),
        "archive run with PGAUDIT_ARCHIVE_URL=KEY": (lambda k: ["archive", "run"], lambda k: {"PGAUDIT_ARCHIVE_URL": k}),
        "checkpoint --signing-key KEY": (lambda k: ["checkpoint", "--out", str(tmp / "c.json"), "--signing-key", k], none),
        # held: the key given to an option twice, and a missing value swallowing the next option
        "HELD: --batch-size 5 --batch-size KEY": (
            lambda k: ["secrets", "rotate-master", "--batch-size", "5", "--batch-size", k],
            none,
        ),
    }


CLI_NAMES = list(cli_cases(Path("/")))


@pytest.mark.parametrize("case", CLI_NAMES)
def test_a_key_given_in_another_place_on_the_command_line_is_not_printed_back(db, tmp_path, case):
    """Attack (output that lands in terminals, CI logs and cron mail): the master key (or a secret
    value) given where the command line reads something else, in forms 852d156's `_not_repeating`
    does not rewrite (a value joined to its option by '=', an extra argument, a subcommand) or
    refusals that are not click's at all (a batch id, an archive URL from the environment, a
    key file). docs/security.md: the command line prints a refused option's message
    with the value replaced by 'the value given'. Safe: refused (exit not 0) and the key (or half of
    it) in neither stdout nor stderr."""
    key = new_key()
    argv, env = cli_cases(tmp_path)[case]
    done = pgaudit_cli(db, *argv(key), role="app_maintainer", env=env(key))
    said = done.stdout + done.stderr
    assert done.returncode != 0, said[-400:]
    assert [f[:8] for f in key_forms(key) if f in said] == [], said[-400:]


# ====================== 3. tokens pasted short of their prefix and id, or with kept invisibles ======================

TOKEN_PASTES: dict[str, Callable[[str], str]] = {
    # a selection that began after the prefix and the id: the secret part alone (with the id, which
    # list_tokens shows anyone who may revoke, it is the token)
    "the secret part alone": lambda t: t.rsplit("_", 1)[1],
    # a selection that began inside the id
    "half the id cut off": lambda t: t[10:],
    # an invisible character NFKC keeps and that is not Cf, in the prefix and inside the id
    "a combining grapheme joiner (Mn)": lambda t: "pga\u034f_" + t[4:8] + "\u034f" + t[8:],
    # held: a backslash-newline inside (the prefix is still found)
    "HELD: split by a line continuation": lambda t: t[:30] + "\\\n" + t[30:],
}


@pytest.mark.parametrize("paste", list(TOKEN_PASTES))
def test_a_token_pasted_without_its_prefix_and_id_never_reaches_the_server(db, connect, server_log, paste):
    """Attack (an operator's paste): revoke_token given the token cut short of its prefix and its
    id, or with an invisible character in the prefix and the id that `_as_read` keeps (it drops
    only Cf). docs/http.md: a pasted token's secret part is never sent; text holding a token's
    prefix or body is refused before anything is sent. With log_statement = 'all', safe: the secret
    part is in no server log line and no error."""
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_statement = 'all'")
    maintainer = connect("app_maintainer")
    token = create_token(maintainer, "leaked", "reader").token
    secret_part = token.rsplit("_", 1)[1]
    said = said_by(lambda: revoke_token(maintainer, TOKEN_PASTES[paste](token)))
    logged = server_log.text()
    assert "create_api_token" in logged  # statements are logged
    assert {"error": secret_part in said.lower(), "server log": secret_part in logged.lower()} == {
        "error": False,
        "server log": False,
    }


def test_a_tokens_secret_part_is_refused_as_another_tokens_name(db, connect):
    """Attack: a token's secret part (64 hex digits, the part after its id) given as a new token's
    name; with the first token's id, which list_tokens shows, it is the whole token. The check
    (client and SQL) looks for 'pga_' or id_secret. Safe: refused; no token is named by it."""
    maintainer = connect("app_maintainer")
    token = create_token(maintainer, "leaked", "reader").token
    secret_part = token.rsplit("_", 1)[1]
    said_by(lambda: create_token(maintainer, secret_part, "reader"))
    names = [t.name for t in list_tokens(maintainer)]
    stored = db.execute("SELECT count(*) FROM audit.api_tokens WHERE name = %s", (secret_part,)).fetchone()
    assert (secret_part in names, stored) == (False, (0,))


# ====================== 4. logging settings in spellings status does not read ======================

STORED_SETTINGS = {
    # log_statement = 'all' logs each bound parameter up to log_parameter_max_length bytes: 0x40 is
    # 64 (PostgreSQL's parse_int reads with strtol, base 0), the length of a key; _amount reads 0
    "log_parameter_max_length = '0x40' (ALTER DATABASE)": (
        "DATABASE",
        ["log_statement = 'all'", "log_parameter_max_length = '0x40'"],
    ),
    # every statement of every transaction, with parameters: 0x1 is 1.0 to strtod, 0 to _amount
    "log_transaction_sample_rate = '0x1' (ALTER DATABASE)": ("DATABASE", ["log_transaction_sample_rate = '0x1'"]),
    # the same for the key-holding role only, in this database
    "log_statement_sample_rate = '0x1' with log_min_duration_sample = 0 (ALTER ROLE ... IN DATABASE)": (
        "ROLE",
        ["log_min_duration_sample = 0", "log_statement_sample_rate = '0x1'"],
    ),
    # held: debug_print_plan in mixed case, a prefix of true
    "HELD: debug_print_plan = 'Tr' (ALTER ROLE ... IN DATABASE)": (
        "ROLE",
        ["debug_print_plan = 'Tr'", "debug_pretty_print = off"],
    ),
}


@pytest.mark.parametrize("stored", list(STORED_SETTINGS))
def test_a_logging_setting_stored_in_another_spelling_is_warned_of(db, connect, server_log, stored):
    """Attack (a DBA's paste, or a superuser who wants the key): a setting that logs the bound key,
    stored in a spelling PostgreSQL reads (hexadecimal numbers, which its integer and real inputs
    take) and exposure_warnings' `_amount` reads as 0. Safe: the held key is not in the log, or
    status names a risk."""
    level, settings = STORED_SETTINGS[stored]
    target = f"DATABASE {db.info.dbname}" if level == "DATABASE" else f"ROLE app_secrets IN DATABASE {db.info.dbname}"
    for setting in settings:
        db.execute(f"ALTER {target} SET {setting}")
    try:
        key = new_key()
        setup_master(connect("app_secrets"), key)
        logged = server_log.text()
        warnings = secrets.exposure_warnings(db)
    finally:
        if level == "ROLE":
            db.execute(f"ALTER ROLE app_secrets IN DATABASE {db.info.dbname} RESET ALL")
    numbers = " " + " ".join(re.findall(r"-?\d+", logged)) + " "
    in_log = key in logged or f" {decimal_bytes(key)} " in numbers
    assert {"key in the server log": in_log, "warned": bool(warnings)} != {
        "key in the server log": True,
        "warned": False,
    }, warnings


def test_a_readers_own_connection_options_do_not_hide_what_the_key_holders_sessions_log(db, connect, server_log):
    """Attack (the reader's environment, not the server's): log_statement = 'all' for the database
    (so every key-holding session logs its bound parameters), read by `pgaudit status` over a
    connection whose PGOPTIONS sets log_parameter_max_length = 0 for itself, as a careful DBA's
    might. exposure_warnings lays the stored settings over the reader's own session, so it reads
    the key-holder's sessions as not logging parameters. Safe: the key is not logged, or warned of."""
    db.execute(f"ALTER DATABASE {db.info.dbname} SET log_statement = 'all'")
    key = new_key()
    setup_master(connect("app_secrets"), key)
    logged = server_log.text()
    done = pgaudit_cli(db, "status", role=db.info.user, env={"PGOPTIONS": "-c log_parameter_max_length=0"})
    direct = secrets.exposure_warnings(connect(options="-c log_parameter_max_length=0"))
    assert {"key in the server log": key in logged, "warned": bool(direct) and "log_statement" in done.stdout} != {
        "key in the server log": True,
        "warned": False,
    }, (direct, done.stdout[-600:], done.stderr[-300:])


# ====================== 5. the offline verifier, and what it cannot read ======================


def one_batch(db, connect, tmp_path: Path):
    blocks_of(db, connect, rounds=1, per=3)
    signing, public = keys_in(tmp_path)
    directory = tmp_path / "archive"
    db.execute("SELECT audit.set_archive_settings(interval '1 second', 100, 3)")
    run = archive_due(connect("app_maintainer"), directory, signing)
    assert len(run.batches) == 1
    return directory, signing, public, run.batches[0]


def run_without_dac_override(directory: Path, public: Path) -> subprocess.CompletedProcess[str]:
    """The offline verifier as an auditor runs it: a user whom file modes bind (here root without
    CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH)."""
    return subprocess.run(
        ["setpriv", "--bounding-set=-dac_override,-dac_read_search", sys.executable,
         str(ROOT / "pgaudit_py" / "verify_archive.py"), str(directory), "--public-key", str(public)],
        capture_output=True,
        text=True,
        timeout=60,
    )


UNREADABLE = {
    "the manifest": lambda d, b: d / b.manifest_object,
    "the data object": lambda d, b: d / b.data_object,
    "the directory": lambda d, b: d,
}


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to drop the DAC capabilities")
@pytest.mark.parametrize("which", list(UNREADABLE))
def test_an_archive_file_the_auditor_may_not_read_is_named_as_a_problem(db, connect, tmp_path, which):
    """Attack (an archive synced with a file mode left 000, or another user's file): the offline
    verifier run by a user bound by file modes. A manifest or data object it may not read, or a
    directory it may not list, raises PermissionError outside the verifier's handlers. Safe: a
    PROBLEM named, exit 1, no traceback (and never 'verified')."""
    directory, _signing, public, batch = one_batch(db, connect, tmp_path)
    assert run_without_dac_override(directory, public).returncode == 0  # the honest archive verifies so
    path = UNREADABLE[which](directory, batch)
    mode = path.stat().st_mode
    path.chmod(0)
    try:
        done = run_without_dac_override(directory, public)
    finally:
        path.chmod(mode)
    assert (done.returncode, "PROBLEM" in done.stdout, "Traceback" in done.stderr) == (1, True, False), (
        done.stdout[-600:],
        done.stderr[-600:],
    )


def test_deep_nesting_huge_integers_and_a_name_not_utf8_are_each_named(db, connect, tmp_path):
    """Attack (resource exhaustion without the signing key, and with it): a second manifest nested a
    hundred thousand levels deep (RecursionError in json), then one whose first batch's signed
    manifest holds integers of 4000 digits, and a file named with a byte that is not UTF-8. Safe:
    under a 512 MiB address space, each a PROBLEM, exit 1, no traceback."""
    directory, signing, public, batch = one_batch(db, connect, tmp_path)
    verdicts = {}
    first = batch.manifest_object
    deep = directory / re.sub(r"\d+-\d+(?=\.manifest\.json$)", "900000000000-900000000001", first)
    deep.write_bytes(b'{"manifest": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    done = run_offline_bounded(directory, public, 512 << 20)
    verdicts["deep"] = (done.returncode, "PROBLEM" in done.stdout, "Traceback" in done.stderr)
    deep.unlink()
    odd = os.path.join(os.fsencode(directory), b"blocks-\xff.manifest.json")
    with open(odd, "wb") as f:
        f.write(b"{}")
    done = run_offline_bounded(directory, public, 512 << 20)
    verdicts["not utf-8"] = (done.returncode, "PROBLEM" in done.stdout, "Traceback" in done.stderr)
    os.unlink(odd)
    huge = 10**3999 + 7
    body = json.loads((directory / first).read_bytes())["manifest"]
    resign(directory, batch, signing, first_seq=huge, last_seq=huge + body["event_count"] - 1)
    done = run_offline_bounded(directory, public, 512 << 20)
    verdicts["huge"] = (done.returncode, "PROBLEM" in done.stdout, "Traceback" in done.stderr)
    assert verdicts == {k: (1, True, False) for k in ("deep", "not utf-8", "huge")}, (done.stdout[-400:], done.stderr[-400:])
