"""A hundred-and-thirteenth attacker's trial.

  R. retention and prune: every role without the maintainer's right calling prune or its helpers, or writing a
     prune point; ages PostgreSQL reads as negative or endless (`ago`, ISO 8601, `infinity`) under odd
     IntervalStyle/DateStyle/TimeZone; sessions far ahead of UTC pruning recent events; prune at block edges
     (an empty log, one event, every block, a prune then more sealing) with both verifiers agreeing; pending
     old events; a checkpoint signed before a prune still holding.
  S. secrets: every non-secrets role reading, listing, or selecting the stored values and keys; a second
     session reading without the key; reads through a cursor, a WITH HOLD cursor, a boolean oracle, EXPLAIN
     ANALYZE, each committed, leaving their event; hostile tenants (look-alikes, `%s`, 256+ chars) never
     reading another tenant's value; a value or key never repeated in the secrets functions' errors.
  L. rate limits: COPY, writable CTE, a partition written directly, a second connection of the same user,
     odd TimeZone per statement, a writer writing the counters by hand or setting the bypass, a writer claiming
     the maintainer's name as its actor; another tenant or user not refused; array-quoting collisions in the
     counted key; a refusal under a German lc_messages still PA009.
  K. checkpoints and the chain: a checkpoint's body changed, one signed with another key, HMAC of another key;
     a block rewritten and re-hashed by a superuser (both verifiers pass, the checkpoint must not); an event
     sealed twice; two events of a block swapped; a microsecond moved; the owner role's direct writes; both
     verifiers on untampered logs read under hostile session settings.

Each test asserts the secure outcome, so it FAILS when the attack works. Objects are prefixed t113_.
"""

from __future__ import annotations

import json
import secrets as pyrandom
from contextlib import suppress
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from trial_helpers import both_verifiers, drop_made_under, owner_tries, seal_all, sqlstate_of, tamper, verified

from pgaudit_py import prune_events, record, seal
from pgaudit_py import secrets as sec
from pgaudit_py.chain import verify_chain
from pgaudit_py.checkpoint import generate_keys, load_keys, make_checkpoint
from pgaudit_py.cli import cli
from pgaudit_py.rate_limits import enable_rate_limit


@pytest.fixture
def clean(db):
    yield db
    with suppress(psycopg.Error):
        db.execute("ROLLBACK")
    with suppress(psycopg.Error):
        db.execute("RESET ROLE")
    drop_made_under(db, "t113_")


def dsn(db, user: str | None = None) -> str:
    i = db.info
    return f"host={i.host} port={i.port} dbname={i.dbname} user={user or i.user}"


def old_events(db, n: int, days: int = 100, kind: str = "t113.old") -> None:
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                  SELECT 'user', 'x', %s, 'success', pg_current_xact_id(),
                         now() - make_interval(days => %s) + make_interval(secs => g), '{}'
                    FROM generate_series(1, %s) g""", [kind, days, n])


def log_count(db) -> int:
    return db.execute("SELECT count(*) FROM audit.event_log").fetchone()[0]


def cli_verify(db, *extra: str):
    return CliRunner().invoke(cli, ["verify", "--dsn", dsn(db), *extra], catch_exceptions=False)


def keys_in(tmp_path: Path, name: str = "k"):
    d = tmp_path / name
    generate_keys(d)
    return d


def write_checkpoint(db, d: Path, out: Path, mutate=None) -> Path:
    keys = load_keys(signing_key=d / "checkpoint-ed25519.pem", hmac_key=d / "checkpoint-hmac.key")
    doc = make_checkpoint(db, keys)
    if mutate:
        mutate(doc)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return out


# ================================ R: retention and prune ================================

@pytest.mark.parametrize("role", ["app_writer", "app_reader", "app_secrets", "app_attacker"])
def test_r1_prune_and_its_helpers_refused_to_every_role_but_the_maintainer(clean, connect, role):
    """roles.md: the writer may not "prune"; the reader may not "prune, seal, archive"; only the maintainer has
    prune_events. Each role calls prune_events, the owner's helpers and writes prune_points/event_log."""
    db = clean
    old_events(db, 4)
    assert seal_all(db) is None
    before = log_count(db)
    conn = connect(role)
    tries = {
        "prune": "SELECT * FROM audit.prune_events('1 day', 10)",
        "remove": "SELECT audit._remove_blocks(1, b, now()) FROM audit.blocks b WHERE block_no = 1",
        "drop_parts": "SELECT audit._drop_log_partitions()",
        "point": "INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
                 " SELECT block_no, block_hash, last_seq, now(), 'x' FROM audit.blocks WHERE block_no = 1",
        "delete": "DELETE FROM audit.event_log",
    }
    got = {k: sqlstate_of(conn, q) for k, q in tries.items()}
    assert all(v is not None for v in got.values()), got
    assert log_count(db) == before
    assert both_verifiers(db) == (True, True)


def test_r2_maintainer_cannot_forge_a_prune_point_or_delete_rows_itself(clean, connect):
    """roles.md: the maintainer may not "rewrite events"; retention.md: only prune_events removes sealed events."""
    db = clean
    old_events(db, 3)
    assert seal_all(db) is None
    m = connect("app_maintainer")
    got = [sqlstate_of(m, q) for q in (
        "DELETE FROM audit.event_log WHERE seq = 1",
        "INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
        " SELECT block_no, block_hash, last_seq, now(), 'x' FROM audit.blocks ORDER BY block_no LIMIT 1",
        "SELECT audit._remove_blocks(1, b, now()) FROM audit.blocks b ORDER BY block_no LIMIT 1",
        "TRUNCATE audit.event_log")]
    assert None not in got, got
    assert log_count(db) == 3


@pytest.mark.parametrize("age", ["1 day ago", "@ 1 day ago", "P-1D", "PT-1H", "-P1D", "infinity", "-infinity",
                                 "1 year -13 mons", "1 day -24:00:01", "0.5 mons -16 days"])
def test_r3_ages_postgres_reads_as_negative_or_endless_are_refused(clean, connect, age):
    """retention.md: "`older_than` is an age, positive with no part negative and reaching at most 36600 days back
    ... refused, `PA005`". An hour-old sealed event must survive whatever the spelling."""
    db = clean
    record(connect("app_writer"), "t113.recent")
    assert seal_all(db) is None
    m = connect("app_maintainer")
    m.execute("SET IntervalStyle = 'iso_8601'")
    st = None
    try:
        m.execute("SELECT * FROM audit.prune_events(%s::interval, 10)", [age])
    except psycopg.Error as e:
        st = e.sqlstate
    # an unparsable spelling (22007) or PA005; never a prune
    assert st in ("PA005", "22007", "22008", "22P02"), st
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't113.recent'").fetchone()[0] == 1


@pytest.mark.parametrize("settings", [
    {"TimeZone": "'Pacific/Kiritimati'", "DateStyle": "'SQL, DMY'", "IntervalStyle": "'sql_standard'"},
    {"TimeZone": "'Etc/GMT+12'", "DateStyle": "'German'", "IntervalStyle": "'postgres_verbose'"},
    {"TimeZone": "'America/St_Johns'", "DateStyle": "'ISO, YMD'", "IntervalStyle": "'iso_8601'"},
])
def test_r4_session_time_settings_never_make_recent_events_prunable(clean, connect, settings):
    """retention.md: a block goes only when "each of whose events has an `occurred_at` older than
    `now() - older_than`". Events 2 hours old, written under one zone; prune '3 hours' under another."""
    db = clean
    old_events(db, 3, days=0)  # now() + g seconds: the future-ish, recent
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                  VALUES ('user','x','t113.two_hours','success', pg_current_xact_id(), now() - interval '2 hours', '{}')""")
    assert seal_all(db) is None
    m = connect("app_maintainer")
    for k, v in settings.items():
        m.execute(f"SET {k} = {v}")
    # through SQL: the Python wrapper refuses such a session, an SQL client does not
    deleted = m.execute("SELECT deleted FROM audit.prune_events('3 hours', 100)").fetchone()[0]
    assert deleted == 0
    assert log_count(db) == 4
    assert both_verifiers(db) == (True, True)


def test_r5_prune_on_an_empty_log_and_on_a_single_event(clean, connect):
    """retention.md: "Each call that removes something records one `audit.pruned` event"; tamper-evidence.md:
    verify says ok with where retained history starts. An empty log, then one old event pruned alone."""
    db = clean
    m = connect("app_maintainer")
    r = prune_events(m, "1 day")
    assert (r.deleted, r.more) == (0, False)
    assert both_verifiers(db) == (True, True)
    old_events(db, 1)
    assert seal_all(db) is None
    r = prune_events(m, "1 day")
    assert r.deleted == 1
    assert db.execute("SELECT count(*) FROM audit.events WHERE kind = 'audit.pruned'").fetchone()[0] == 1
    assert both_verifiers(db) == (True, True)
    assert seal_all(db) is None  # the audit.pruned event
    assert both_verifiers(db) == (True, True)
    v = verify_chain(db)
    sql_v = db.execute("SELECT retained_from_block, retained_from_seq FROM audit.verify()").fetchone()
    assert (v.retained_from_block, v.retained_from_seq) == tuple(sql_v)


def test_r6_prune_exactly_at_block_edges_then_more_sealing_keeps_both_verifiers_agreeing(clean, connect):
    """retention.md: "Prune removes whole blocks, so that what remains still verifies"; batch_size 1 must still
    take one whole block (at least one block), never part of one."""
    db = clean
    old_events(db, 7)
    for n in (3, 3, 1):
        seal(db, n)
    m = connect("app_maintainer")
    sizes = []
    while True:
        r = prune_events(m, "1 day", batch_size=1)
        if r.deleted:
            sizes.append((r.first_seq, r.last_seq))
            assert both_verifiers(db) == (True, True), sizes
        if not r.more:
            break
    assert sizes == [(1, 3), (4, 6), (7, 7)]
    record(connect("app_writer"), "t113.after")
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True)
    assert db.execute("SELECT ok FROM audit.verify(1, 2)").fetchone()[0] in (True,)


def test_r7_pending_old_events_and_a_block_with_one_recent_event_are_kept(clean, connect):
    """retention.md: "Pending events are never pruned", "an event stays until its whole block is old enough"."""
    db = clean
    old_events(db, 2)
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                  VALUES ('user','x','t113.fresh','success', pg_current_xact_id(), now(), '{}')""")
    assert seal_all(db) is None  # one block of 3, the newest recent
    old_events(db, 1, days=400, kind="t113.pending")
    r = prune_events(connect("app_maintainer"), "1 day")
    assert r.deleted == 0
    assert db.execute("SELECT count(*) FROM audit.event_intake WHERE kind = 't113.pending'").fetchone()[0] == 1
    assert log_count(db) == 3


def test_r8_checkpoint_signed_before_a_prune_still_holds_and_both_verifiers_agree(clean, connect, tmp_path):
    """tamper-evidence.md: "after a prune of blocks 1 to 4, the checkpoint still holds, and says so"."""
    db = clean
    old_events(db, 4)
    seal(db, 2)
    seal(db, 2)
    record(connect("app_writer"), "t113.new")
    assert seal_all(db) is None
    d = keys_in(tmp_path)
    cp = write_checkpoint(db, d, tmp_path / "cp.json")
    r = prune_events(connect("app_maintainer"), "1 day", batch_size=2)
    assert r.deleted == 2
    assert both_verifiers(db) == (True, True)
    out = cli_verify(db, "--checkpoint", str(cp), "--public-key", str(d / "checkpoint-ed25519.pub.pem"))
    assert out.exit_code == 0, out.output
    assert "checkpoint of block 3 holds" in out.output and "blocks 1..1" in out.output, out.output


# ================================ S: secrets ================================

@pytest.fixture
def vault(connect):
    app = connect("app_secrets")
    key = pyrandom.token_hex(32)
    with sec.use_master_key(app, None, new_key=key):
        sec.add_master_key(app)
    sec._set(app, "master_key", key)
    sec.declare_secret(app, "t113.slot", "a slot")
    sec.put_secret(app, "acme", "t113.slot", "sk_live_ACME_t113")
    sec.put_secret(app, "globex", "t113.slot", "sk_live_GLOBEX_t113")
    app.key = key
    return app


def reads(db, tenant=None) -> int:
    q = "SELECT count(*) FROM audit.events WHERE kind = 'tenant.secret.read'"
    if tenant is None:
        return db.execute(q).fetchone()[0]
    return db.execute(q + " AND tenant_id = %s", [tenant]).fetchone()[0]


@pytest.mark.parametrize("role", ["app_writer", "app_reader", "app_maintainer", "app_attacker"])
def test_s1_no_other_role_reads_lists_or_selects_secrets(clean, connect, vault, role):
    """roles.md: "The reader, writer and maintainer may call none of these functions"; the secrets role may not
    "SELECT `secret_values` or the wrapped keys directly"."""
    conn = connect(role)
    got = {q: sqlstate_of(conn, q) for q in (
        "SELECT audit.read_secret('acme', 't113.slot')",
        "SELECT * FROM audit.list_secrets()",
        "SELECT * FROM audit.secret_values",
        "SELECT * FROM audit.wrapped_data_keys",
        "SELECT audit._data_key('acme', 1)",
        "SELECT audit._session_keys()")}
    assert all(v is not None for v in got.values()), got
    got2 = {q: sqlstate_of(vault, q) for q in ("SELECT * FROM audit.secret_values",
                                               "SELECT * FROM audit.wrapped_data_keys",
                                               "SELECT audit._data_key('acme', 1)",
                                               "SELECT audit._master_key(1)")}
    assert all(v is not None for v in got2.values()), got2


def test_s2_a_second_secrets_session_without_the_key_reads_nothing(clean, connect, vault):
    """secrets.md: the session "holds it in a temporary table of the owner role's, which no code the session runs
    can read"; another session of the same role has no key and gets no value."""
    other = connect("app_secrets")
    value = None
    with suppress(psycopg.Error):
        value = other.execute("SELECT audit.read_secret('acme', 't113.slot')").fetchone()[0]
    assert value != "sk_live_ACME_t113"


def test_s3_reads_through_cursors_and_oracles_are_each_recorded(clean, connect, vault):
    """secrets.md: "**Every read is an event.** `read_secret` records `tenant.secret.read` ... in the reading
    transaction". Read through a cursor, a WITH HOLD cursor, a WHERE oracle that returns no value, EXPLAIN
    ANALYZE: each committed, each must leave an event."""
    db = clean
    base = reads(db, "acme")
    with vault.transaction():
        vault.execute("DECLARE t113_c CURSOR FOR SELECT audit.read_secret('acme', 't113.slot')")
        assert vault.execute("FETCH 1 FROM t113_c").fetchone()[0] == "sk_live_ACME_t113"
    assert reads(db, "acme") == base + 1
    vault.execute("DECLARE t113_h CURSOR WITH HOLD FOR SELECT audit.read_secret('acme', 't113.slot')")
    assert vault.execute("FETCH 1 FROM t113_h").fetchone()[0] == "sk_live_ACME_t113"
    vault.execute("CLOSE t113_h")
    assert reads(db, "acme") == base + 2
    hit = vault.execute("SELECT count(*) FROM (SELECT audit.read_secret('acme', 't113.slot') v) x"
                        " WHERE v LIKE 'sk_live_A%'").fetchone()[0]
    assert hit == 1
    assert reads(db, "acme") == base + 3
    vault.execute("EXPLAIN (ANALYZE, VERBOSE) SELECT audit.read_secret('acme', 't113.slot')").fetchall()
    assert reads(db, "acme") == base + 4


def test_s4_hostile_look_alike_tenants_never_read_another_tenants_value(clean, connect, vault):
    """secrets.md: "a changed ciphertext, or one copied to another tenant or slot, raises `PA012`, never garbage";
    each tenant has its own data key. Look-alike tenant names must find nothing of acme's."""
    for t in ("acme ", " acme", "ACME", "acme\u200b", "a\u0063me\u0301", "acme%s", "acme\\", "acme;--", "acme'"):
        got = vault.execute("SELECT audit.read_secret(%s, 't113.slot')", [t]).fetchone()[0]
        assert got is None, (t, got)
    # a tenant named with format directives gets its own value back, and only it
    sec.put_secret(vault, "%s%I%L", "t113.slot", "v_fmt")
    assert sec.read_secret(vault, "%s%I%L", "t113.slot") == "v_fmt"
    assert sec.read_secret(vault, "acme", "t113.slot") == "sk_live_ACME_t113"


def test_s5_ciphertext_swapped_between_tenants_is_pa012_and_error_names_no_value(clean, connect, vault):
    """secrets.md: a value copied to another tenant "fails the tag check" (PA012); "No error of the secrets
    functions repeats a slot, a `which`, a value or a key it was given"."""
    db = clean
    tamper(db, """UPDATE audit.secret_values g SET ciphertext = a.ciphertext, key_version = a.key_version
                  FROM audit.secret_values a WHERE g.tenant_id = 'globex' AND a.tenant_id = 'acme'
                  AND g.key = a.key""")
    with pytest.raises(psycopg.Error) as e:
        vault.execute("SELECT audit.read_secret('globex', 't113.slot')").fetchone()
    assert e.value.sqlstate == "PA012"
    text = str(e.value) + str(e.value.diag.message_detail) + str(e.value.diag.message_hint) + str(e.value.diag.context)
    assert "sk_live" not in text and vault.key not in text and "t113.slot" not in text, text


def test_s6_errors_of_put_secret_never_repeat_the_value_or_key(clean, connect, vault):
    """secrets.md: "No error of the secrets functions repeats a slot, a `which`, a value or a key it was given"."""
    big = "sk_live_HUGE_" + "x" * 70000
    texts = []
    for q, p in (("SELECT audit.put_secret('acme', 't113.slot', %s)", [big]),
                 ("SELECT audit.put_secret('acme', %s, 'v')", ["sk_live_INSLOT_t113"]),
                 ("SELECT audit.put_secret(%s, 't113.slot', 'v')", ["sk_live_" + "T" * 300]),
                 ("SELECT audit.read_secret('acme', %s)", [vault.key]),
                 ("SELECT audit.hold_master_key(%s, %s)", [vault.key, vault.key]),
                 ("SELECT audit.declare_secret(%s, NULL)", ["sk_live_DECL_" + "d" * 300])):
        try:
            vault.execute(q, p)
        except psycopg.Error as e:
            d = e.diag
            texts.append(" ".join(str(x) for x in (e, d.message_detail, d.message_hint, d.context, d.internal_query)))
    joined = "\n".join(texts)
    assert "sk_live" not in joined and vault.key not in joined, joined[:2000]


# ================================ L: rate limits ================================

@pytest.fixture
def limited(clean, attacker, connect):
    attacker.execute("""CREATE TABLE public.t113_lim (id serial PRIMARY KEY, v int, tenant text)
                            PARTITION BY RANGE (id);
                        CREATE TABLE public.t113_lim_p1 PARTITION OF public.t113_lim FOR VALUES FROM (1) TO (1000000);
                        CREATE TABLE public.t113_other (id int);
                        GRANT ALL ON public.t113_lim, public.t113_lim_p1, public.t113_other TO app_writer;
                        GRANT ALL ON SEQUENCE public.t113_lim_id_seq TO app_writer""")
    enable_rate_limit(connect("app_maintainer"), "public.t113_lim", per_user_per_minute=2, per_tenant_per_minute=4,
                      window_seconds=3600)
    return clean


def refused(conn, q, params=None) -> str | None:
    return sqlstate_of(conn, q, params)


def test_l1_copy_counts_and_the_third_copy_is_refused(limited, connect):
    """rate-limits.md: "One write is one statement (INSERT, UPDATE or DELETE) on a limited table or any of its
    partitions". COPY FROM is a write statement: three COPYs must not all pass a limit of 2."""
    w = connect("app_writer")
    outs = []
    for _ in range(3):
        try:
            with w.cursor().copy("COPY public.t113_lim (v) FROM STDIN") as cp:
                cp.write_row([1])
            outs.append(None)
        except psycopg.Error as e:
            outs.append(e.sqlstate)
    assert outs[-1] == "PA009", outs


def test_l2_writable_cte_and_direct_partition_writes_count(limited, connect):
    """rate-limits.md: a write "on a limited table or any of its partitions (each carries the trigger ...)".
    One insert via a writable CTE from another table, one straight into the partition, then a third."""
    w = connect("app_writer")
    a = refused(w, "WITH x AS (INSERT INTO public.t113_lim (v) VALUES (1) RETURNING id) INSERT INTO public.t113_other SELECT id FROM x")
    b = refused(w, "INSERT INTO public.t113_lim_p1 (v) VALUES (2)")
    c = refused(w, "UPDATE public.t113_lim_p1 SET v = 3")
    assert (a, b) == (None, None)
    assert c == "PA009"


def test_l3_a_second_connection_and_time_zone_hops_share_the_count(limited, connect):
    """rate-limits.md: "Time is the server's clock (`clock_timestamp()`)"; the user counted is the one the log
    records. Two connections of the writer, each hopping TimeZone, must not get more than 2."""
    w1, w2 = connect("app_writer"), connect("app_writer")
    w1.execute("SET TimeZone = 'Pacific/Kiritimati'")
    w2.execute("SET TimeZone = 'Etc/GMT+12'")
    got = [refused(w1, "INSERT INTO public.t113_lim (v) VALUES (1)"),
           refused(w2, "INSERT INTO public.t113_lim (v) VALUES (2)")]
    w2.execute("SET TimeZone = 'UTC'")
    got.append(refused(w2, "INSERT INTO public.t113_lim (v) VALUES (3)"))
    assert got == [None, None, "PA009"], got


def test_l4_writer_cannot_write_counters_or_bypass(limited, connect, db):
    """rate-limits.md: the bypass setting "anyone else who sets it is refused (`PA010`)"; roles.md: the writer may
    not "touch the tables, bypass rate limits"."""
    w = connect("app_writer")
    got = {q: refused(w, q) for q in (
        "DELETE FROM audit.rate_counters",
        "UPDATE audit.rate_counters SET count = 0",
        "TRUNCATE audit.rate_counters",
        "SELECT audit.purge_rate_counters(10000)",
        "SELECT audit._rate_take('x', 1000000, 60)")}
    assert all(v is not None for v in got.values()), got
    w.execute("SET pgaudit_py.rate_limit_bypass = 'on'")
    assert refused(w, "INSERT INTO public.t113_lim (v) VALUES (1)") == "PA010"
    w.execute("RESET pgaudit_py.rate_limit_bypass")
    w.execute("SET pgaudit_py.rate_limit_bypass = 'yes'")
    assert refused(w, "INSERT INTO public.t113_lim (v) VALUES (1)") in ("PA010", "PA005"), "yes bypassed"


def test_l5_claiming_the_maintainers_name_as_actor_is_still_limited(limited, connect):
    """rate-limits.md: "Members of the maintainer role" are not limited; "another role naming it spends none of
    that role's allowance". A writer naming app_maintainer (type db_role) gains no exemption."""
    w = connect("app_writer")
    w.execute("SET pgaudit_py.actor_type = 'db_role'; SET pgaudit_py.actor_id = 'app_maintainer'")
    got = [refused(w, "INSERT INTO public.t113_lim (v) VALUES (%s)", [i]) for i in range(3)]
    assert got[-1] == "PA009", got


def test_l6_another_user_and_another_tenant_are_not_refused(limited, connect):
    """rate-limits.md: per user "within its tenant", per tenant on its own: alice's spent allowance must not
    refuse bob, nor another tenant's users."""
    w = connect("app_writer")
    w.execute("SET pgaudit_py.tenant_id = 'acme'; SET pgaudit_py.actor_id = 'alice'")
    a = [refused(w, "INSERT INTO public.t113_lim (v) VALUES (1)") for _ in range(3)]
    assert a == [None, None, "PA009"], a
    w.execute("SET pgaudit_py.actor_id = 'bob'")
    b = refused(w, "INSERT INTO public.t113_lim (v) VALUES (1)")
    w.execute("SET pgaudit_py.tenant_id = 'globex'; SET pgaudit_py.actor_id = 'alice'")
    c = refused(w, "INSERT INTO public.t113_lim (v) VALUES (1)")
    assert (b, c) == (None, None)


@pytest.mark.parametrize("first, second", [
    (("NULL", "x"), (None, "x")),
    (("a,b", "c"), ("a", "b,c")),
    (("{a}", "b"), ("a", "b")),
    (('a"', "b"), ("a", '"b')),
])
def test_l7_quoting_look_alikes_never_share_a_users_counter(limited, connect, first, second):
    """rate-limits.md: "Each counts on its own, whatever characters its parts hold"."""
    w = connect("app_writer")

    def as_(t, a):
        w.execute("SELECT set_config('pgaudit_py.tenant_id', %s, false), set_config('pgaudit_py.actor_id', %s, false)",
                  [t or "", a])
        if t is None:
            w.execute("RESET pgaudit_py.tenant_id")
    as_(*first)
    got = [refused(w, "INSERT INTO public.t113_lim (v) VALUES (1)") for _ in range(3)]
    assert got == [None, None, "PA009"], got
    as_(*second)
    assert refused(w, "INSERT INTO public.t113_lim (v) VALUES (1)") is None


def test_l8_refusal_under_german_messages_is_still_pa009(limited, connect, db):
    """rate-limits.md: "Refusal. SQLSTATE `PA009`"; conftest: nothing may depend on English messages. A login whose
    lc_messages is German (set for it by a superuser) hits the limit."""
    db.execute("CREATE ROLE t113_de LOGIN IN ROLE app_writer")
    db.execute(f"ALTER ROLE t113_de IN DATABASE {db.info.dbname} SET lc_messages = 'de_DE.UTF-8'")
    try:
        w = connect("t113_de")
        got = [refused(w, "INSERT INTO public.t113_lim (v) VALUES (1)") for _ in range(3)]
    finally:
        db.execute(f"ALTER ROLE t113_de IN DATABASE {db.info.dbname} RESET ALL")
    assert got == [None, None, "PA009"], got


# ================================ K: checkpoints and the chain ================================

@pytest.fixture
def chained(clean, connect):
    w = connect("app_writer")
    for i in range(3):
        for j in range(3):
            record(w, "t113.k", target_id=f"{i}-{j}", payload={"i": i, "j": j, "s": "ünï\u2028\\\"'"})
        seal(clean)
    return clean


def test_k1_forged_checkpoints_are_refused(chained, tmp_path):
    """tamper-evidence.md: a checkpoint "signs the head block's number, hash ..."; "an auditor needs only the
    public key". A body changed after signing, one signed with another key, and an HMAC of another key."""
    db = chained
    real = keys_in(tmp_path, "real")
    other = keys_in(tmp_path, "other")

    def changed(doc):
        doc["checkpoint"]["block_no"] = 2
        doc["checkpoint"]["block_hash"] = db.execute("SELECT encode(block_hash,'hex') FROM audit.blocks WHERE"
                                                      " block_no = 2").fetchone()[0]
    a = write_checkpoint(db, real, tmp_path / "a.json", changed)
    b = write_checkpoint(db, other, tmp_path / "b.json")
    pub = str(real / "checkpoint-ed25519.pub.pem")
    ra = cli_verify(db, "--checkpoint", str(a), "--public-key", pub)
    rb = cli_verify(db, "--checkpoint", str(b), "--public-key", pub)
    rc = cli_verify(db, "--checkpoint", str(b), "--hmac-key-file", str(real / "checkpoint-hmac.key"))
    assert (ra.exit_code, rb.exit_code, rc.exit_code) == (1, 1, 1), (ra.output, rb.output, rc.output)


def test_k2_a_rehashed_rewrite_passes_verify_but_not_the_checkpoint(chained, tmp_path):
    """tamper-evidence.md: "An attacker who rewrites an event and recomputes every later hash passes `verify`; a
    checkpoint catches that". A superuser rewrites block 2's payloads and re-hashes blocks 2 and 3."""
    db = chained
    d = keys_in(tmp_path)
    cp = write_checkpoint(db, d, tmp_path / "cp.json")
    tamper(db, """
        UPDATE audit.event_log SET payload = jsonb_set(payload, '{i}', '99') WHERE seq BETWEEN 4 AND 6;
        UPDATE audit.blocks b SET line_hashes = x.h, events_hash = sha256(x.h)
          FROM (SELECT string_agg(audit._event_hash(l, 2::smallint), ''::bytea ORDER BY l.seq) h
                  FROM audit.event_log l WHERE l.seq BETWEEN 4 AND 6) x WHERE b.block_no = 2;
        UPDATE audit.blocks b SET block_hash = audit._block_hash(b.block_no, b.first_seq, b.last_seq, b.event_count,
                                                                 b.events_hash, b.prev_hash) WHERE b.block_no = 2;
        UPDATE audit.blocks b SET prev_hash = (SELECT block_hash FROM audit.blocks WHERE block_no = 2) WHERE block_no = 3;
        UPDATE audit.blocks b SET block_hash = audit._block_hash(b.block_no, b.first_seq, b.last_seq, b.event_count,
                                                                 b.events_hash, b.prev_hash) WHERE b.block_no = 3;
        UPDATE audit.seal_state SET last_block_hash = (SELECT block_hash FROM audit.blocks WHERE block_no = 3);""")
    out = cli_verify(db, "--checkpoint", str(cp), "--public-key", str(d / "checkpoint-ed25519.pub.pem"))
    assert out.exit_code == 1 and "checkpoint failed" in out.output, out.output


def test_k3_a_removed_tail_fails_the_checkpoint(chained, tmp_path):
    """tamper-evidence.md: a checkpoint catches "a removed tail"."""
    db = chained
    d = keys_in(tmp_path)
    cp = write_checkpoint(db, d, tmp_path / "cp.json")
    tamper(db, """DELETE FROM audit.event_log WHERE seq > 6; DELETE FROM audit.blocks WHERE block_no = 3;
                  UPDATE audit.seal_state SET last_seq = 6, last_block_no = 2,
                         last_block_hash = (SELECT block_hash FROM audit.blocks WHERE block_no = 2)""")
    out = cli_verify(db, "--checkpoint", str(cp), "--public-key", str(d / "checkpoint-ed25519.pub.pem"))
    assert out.exit_code == 1, out.output


@pytest.mark.parametrize("statement", [
    # two events of block 2 swapped (their contents, seqs kept)
    """UPDATE audit.event_log l SET payload = o.payload, target_id = o.target_id
         FROM audit.event_log o WHERE (l.seq, o.seq) IN ((4, 5), (5, 4))""",
    # an occurred_at moved by a microsecond
    "UPDATE audit.event_log SET occurred_at = occurred_at + interval '1 microsecond' WHERE seq = 8",
    # an event sealed twice: a copy appended after the last block
    """INSERT INTO audit.event_log SELECT * FROM audit.event_log WHERE seq = 9""",
    # an event of block 1 deleted and block 1's count lowered
    "DELETE FROM audit.event_log WHERE seq = 2",
    # a prune point written by hand over block 1, its events gone
    """DELETE FROM audit.event_log WHERE seq <= 3;
       INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)
       SELECT block_no, block_hash, last_seq, now(), 'app_maintainer' FROM audit.blocks WHERE block_no = 1""",
])
def test_k4_both_verifiers_catch_each_tamper(chained, statement):
    """tamper-evidence.md: verify reports "event seq S was changed" (two events swapped), "k of its n events are
    missing", "event seq S is outside every block", "their events were removed, and no prune ... recorded it";
    both verifiers must catch every tamper."""
    db = chained
    if "seq = 9" in statement and "INSERT" in statement:
        # a duplicate needs its own seq (and id): the next one
        statement = """INSERT INTO audit.event_log SELECT (e).* FROM (SELECT l AS e FROM audit.event_log l WHERE seq = 9) x"""
        cols = [r[0] for r in db.execute("SELECT attname FROM pg_attribute WHERE attrelid = 'audit.event_log'::regclass"
                                         " AND attnum > 0 AND NOT attisdropped ORDER BY attnum")]
        sel = ", ".join("10" if c == "seq" else ("gen_random_uuid()" if c == "id" else c) for c in cols)
        statement = f"INSERT INTO audit.event_log ({', '.join(cols)}) SELECT {sel} FROM audit.event_log WHERE seq = 9"
    try:
        tamper(db, statement)
    except psycopg.Error as e:
        pytest.fail(f"tamper could not be made: {e}")
    assert both_verifiers(db) == (False, False)


def test_k5_owner_role_cannot_rewrite_or_rechain(chained):
    """roles.md: audit_owner may not "UPDATE, DELETE or TRUNCATE the intake, log, chain or quarantine, or INSERT
    into the last three"."""
    db = chained
    got = [owner_tries(db, q) for q in (
        "DELETE FROM audit.event_log WHERE seq = 2",
        "UPDATE audit.event_log SET payload = '{}' WHERE seq = 2",
        "UPDATE audit.blocks SET block_hash = block_hash WHERE block_no = 1",
        "DELETE FROM audit.blocks WHERE block_no = 3",
        "UPDATE audit.seal_state SET last_seq = last_seq",
        "INSERT INTO audit.prune_points (block_no, block_hash, last_seq, cutoff, pruned_by)"
        " SELECT block_no, block_hash, last_seq, now(), 'x' FROM audit.blocks WHERE block_no = 1",
        "TRUNCATE audit.event_log")]
    assert None not in got, got
    assert both_verifiers(db) == (True, True)


def test_k6_untampered_log_verifies_under_hostile_session_settings(chained, connect):
    """tamper-evidence.md: both verifiers "agree on deep, huge and odd values"; an untampered log must verify ok in
    both, whatever the reading session's TimeZone, DateStyle, IntervalStyle, extra_float_digits say."""
    r = connect("app_reader")
    r.execute("SET TimeZone = 'America/St_Johns'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard';"
              " SET extra_float_digits = -15; SET bytea_output = 'escape'; SET lc_monetary = 'C'")
    sql_ok = r.execute("SELECT ok, problem FROM audit.verify()").fetchone()
    py = verify_chain(r)
    assert (sql_ok[0], py.ok) == (True, True), (sql_ok, py.problem)


# ================================ more: races, rotation, operation limits, odd sealing sessions ==============

def test_r9_prune_racing_an_uncommitted_seal_leaves_a_verifying_log(clean, connect):
    """retention.md: "Pending events are never pruned", whole blocks only; a prune while another session's seal
    is uncommitted must leave both verifiers ok once it commits."""
    db = clean
    old_events(db, 3)
    seal(db)
    old_events(db, 3, days=50)
    sealer = connect()
    sealer.execute("BEGIN")
    sealer.execute("SELECT audit.seal(10000)")
    m = connect("app_maintainer")
    m.execute("SET lock_timeout = '3s'")
    err = None
    try:
        m.execute("SELECT * FROM audit.prune_events('1 day', 1000)")
    except psycopg.Error as e:
        err = e.sqlstate
    sealer.execute("COMMIT")
    assert seal_all(db) is None
    assert both_verifiers(db) == (True, True), err
    # the blocks sealed later are still prunable, and prune then leaves a verifying log
    m.execute("RESET lock_timeout")
    m.execute("SELECT * FROM audit.prune_events('1 day', 1000)")
    assert both_verifiers(db) == (True, True)


def test_r10_prune_stops_before_a_planned_archive_batch(clean, connect):
    """retention.md: "Prune stops before the first block of an archive batch that is planned or recorded but not
    yet finished"."""
    db = clean
    old_events(db, 4)
    seal(db, 2)
    seal(db, 2)
    m = connect("app_maintainer")
    batch = m.execute("SELECT first_block, last_block FROM audit.next_archive_batch('1 day')").fetchone()
    assert batch[0] == 1, batch
    r = m.execute("SELECT deleted FROM audit.prune_events('1 day', 100)").fetchone()[0]
    assert r == 0
    assert log_count(db) == 4
    assert both_verifiers(db) == (True, True)


def test_s7_interrupted_tenant_rotation_keeps_every_value_and_no_cross_tenant_reads(clean, connect, vault):
    """secrets.md: "both versions are readable meanwhile and writes use the new one ... Resumable"."""
    for k in ("t113.a", "t113.b"):
        sec.declare_secret(vault, k, "x")
        sec.put_secret(vault, "acme", k, f"val_{k}")
    vault.execute("SELECT * FROM audit.rotate_tenant_key('acme', 1)")
    vault.execute("SELECT * FROM audit.rotate_tenant_key('acme', 1)")
    got = {k: sec.read_secret(vault, "acme", k) for k in ("t113.slot", "t113.a", "t113.b")}
    assert got == {"t113.slot": "sk_live_ACME_t113", "t113.a": "val_t113.a", "t113.b": "val_t113.b"}
    assert sec.read_secret(vault, "globex", "t113.slot") == "sk_live_GLOBEX_t113"
    sec.put_secret(vault, "acme", "t113.a", "val_new")
    for _ in range(10):
        vault.execute("SELECT * FROM audit.rotate_tenant_key('acme', 1)")
    assert sec.read_secret(vault, "acme", "t113.a") == "val_new"
    assert sec.read_secret(vault, "acme", "t113.b") == "val_t113.b"


def test_l9_an_operation_limit_set_by_the_maintainer_overrides_what_the_writer_passes(clean, connect):
    """rate-limits.md: "An operation limit set this way overrides what the application passes"."""
    connect("app_maintainer").execute("SELECT audit.set_operation_limit('t113.op', 2, 3600)")
    w = connect("app_writer")
    got = [sqlstate_of(w, "SELECT audit.rate_limit('t113.op', 'k', 10000000, %s)", [win])
           for win in (60, 1, 86400, 60)]
    assert got[-1] == "PA009" or "PA009" in got[2:], got


def test_k7_events_recorded_and_sealed_in_odd_sessions_verify_in_both(clean, connect):
    """tamper-evidence.md: both verifiers agree on every untampered log. Events recorded, and sealed, by sessions
    with odd TimeZone, DateStyle, IntervalStyle, extra_float_digits; verified from a plain session."""
    db = clean
    w = connect("app_writer")
    w.execute("SET TimeZone = 'Asia/Kathmandu'; SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'sql_standard';"
              " SET extra_float_digits = -15")
    w.execute("SELECT audit.record(kind => 't113.odd', payload => %s::jsonb)",
              ['{"f": 0.1, "big": 12345678901234567890123, "e": 1e-7, "t": "2026-03-29T02:30:00+01:00"}'])
    s = connect("app_maintainer")
    s.execute("SET TimeZone = 'Pacific/Chatham'; SET DateStyle = 'German'; SET IntervalStyle = 'iso_8601';"
              " SET extra_float_digits = 3")
    s.execute("SELECT audit.seal(10000)")
    assert both_verifiers(db) == (True, True)


def test_r11_prune_never_skips_a_recent_block_to_take_an_older_one_after_it(clean, connect):
    """retention.md: prune removes "the oldest blocks that still hold events, in order": a recent block between two
    old ones stops it, leaving no gap in the retained history."""
    db = clean
    old_events(db, 2)
    seal(db)
    record(connect("app_writer"), "t113.recent")
    seal(db)
    old_events(db, 2, days=300)
    seal(db)
    m = connect("app_maintainer")
    while m.execute("SELECT more FROM audit.prune_events('1 day', 1)").fetchone()[0]:
        pass
    seqs = [r[0] for r in db.execute("SELECT seq FROM audit.event_log WHERE kind LIKE 't113.%' ORDER BY seq")]
    assert seqs == [3, 4, 5], seqs
    assert both_verifiers(db) == (True, True)


def test_s8_read_event_names_the_secrets_tenant_in_read_only_and_copy_reads(clean, connect, vault):
    """secrets.md: `read_secret` records `tenant.secret.read` (tenant, slot as `target_id` ...) "if the event cannot
    be written, the read fails". A session claiming tenant globex reads acme's: the event says acme. COPY TO STDOUT
    reads are recorded; a read-only transaction gets no value."""
    db = clean
    vault.execute("SET pgaudit_py.tenant_id = 'globex'")
    base_acme = reads(db, "acme")
    assert sec.read_secret(vault, "acme", "t113.slot") == "sk_live_ACME_t113"
    assert reads(db, "acme") == base_acme + 1
    vault.execute("RESET pgaudit_py.tenant_id")
    with vault.cursor().copy("COPY (SELECT audit.read_secret('acme', 't113.slot')) TO STDOUT") as cp:
        data = b"".join(bytes(b) for b in cp)
    assert b"sk_live_ACME" in data
    assert reads(db, "acme") == base_acme + 2
    value = None
    vault.execute("BEGIN READ ONLY")
    try:
        value = vault.execute("SELECT audit.read_secret('acme', 't113.slot')").fetchone()[0]
        vault.execute("COMMIT")
    except psycopg.Error:
        vault.execute("ROLLBACK")
    assert value is None or reads(db, "acme") == base_acme + 3, value


def test_l10_writes_through_an_owners_view_and_in_one_transaction_count(limited, connect, attacker):
    """rate-limits.md: "One write is one statement ... on a limited table". An auto-updatable view the owner made,
    and three statements inside one transaction."""
    attacker.execute("CREATE VIEW public.t113_lim_v AS SELECT id, v FROM public.t113_lim;"
                     " GRANT ALL ON public.t113_lim_v TO app_writer")
    w = connect("app_writer")
    got = [refused(w, "INSERT INTO public.t113_lim_v (v) VALUES (1)") for _ in range(3)]
    assert got[-1] == "PA009", got
    w2 = connect("app_writer")
    w2.execute("SET pgaudit_py.actor_id = 't113_txn'")
    w2.execute("BEGIN")
    got2 = []
    for _ in range(3):
        got2.append(refused(w2, "INSERT INTO public.t113_lim (v) VALUES (1)"))
        if got2[-1]:
            break
    with suppress(psycopg.Error):
        w2.execute("ROLLBACK")
    assert got2[-1] == "PA009", got2


@pytest.mark.parametrize("statement", [
    "UPDATE audit.seal_state SET last_block_hash = sha256('x')",
    "UPDATE audit.blocks SET block_no = 1000 WHERE block_no = 2; UPDATE audit.blocks SET block_no = 2 WHERE block_no = 3; UPDATE audit.blocks SET block_no = 3 WHERE block_no = 1000",
    "UPDATE audit.blocks SET prev_hash = sha256('x') WHERE block_no = 2",
    "UPDATE audit.event_log SET origin = 'capture' WHERE seq = 5",
    "UPDATE audit.blocks SET canonical_version = 1 WHERE block_no = 2",
])
def test_k8_both_verifiers_catch_head_and_block_row_tampers(chained, statement):
    """tamper-evidence.md: "the sealer's head ... is not where the last block ends", "the block row was changed",
    "broken link", origin in version 2 lines: both verifiers must catch each."""
    db = chained
    try:
        tamper(db, statement)
    except psycopg.Error as e:
        pytest.fail(f"tamper could not be made: {e}")
    assert both_verifiers(db) == (False, False)


ODD = ["\x7f", "\u2028\u2029", "\ufeff", "\uffff", "\U0001f600", "\x01\x1f", "\\u0000", "</script>", "a\tb\r\nc",
       "\u00e9" + "e\u0301", "\"'\\", " ", "\u200b", "NaN", "-0", "1e400", "{}", "[1]"]


def test_k9_odd_text_in_every_field_verifies_in_both(clean, connect):
    """tamper-evidence.md: both verifiers agree "on deep, huge and odd values"; an untampered log must say ok in
    both. Odd characters in tenant, actor, target, correlation and payload keys and values."""
    db = clean
    w = connect("app_writer")
    for i, s in enumerate(ODD):
        w.execute("SELECT audit.record(kind => 't113.odd', tenant_id => %s, actor_id => %s, target_type => %s,"
                  " target_id => %s, correlation_id => %s, payload => %s::jsonb)",
                  [s, s, s, s, s, json.dumps({s: s, "n": i, "deep": [[{"x": s}]]})])
    w.execute("SELECT audit.record(kind => 't113.num', payload => %s::jsonb)",
              ['{"a": 1e300, "b": -0, "c": 0.000000000000000000001, "d": 123456789012345678901234567890.5}'])
    assert seal_all(db) is None
    got = both_verifiers(db)
    assert got == (True, True), (got, verify_chain(db).problem)


def test_k10_concurrent_sealers_writers_and_pruners_leave_each_event_sealed_once(clean, connect):
    """tamper-evidence.md: "every sealed event belongs to exactly one block"; retention.md: whole blocks, and
    what remains verifies. Two sealers, a writer and a pruner race; then both verifiers must say ok and every
    recorded event appear once."""
    import threading
    db = clean
    old_events(db, 40)
    errors: list[str] = []
    stop = threading.Event()

    def sealer():
        c = connect("app_maintainer")
        while not stop.is_set():
            try:
                c.execute("SELECT audit.seal(7)")
            except psycopg.Error as e:
                if e.sqlstate not in ("55P03", "40001", "40P01"):
                    errors.append(f"seal {e.sqlstate} {e}")

    def pruner():
        c = connect("app_maintainer")
        while not stop.is_set():
            try:
                c.execute("SELECT audit.prune_events('1 day', 5)")
            except psycopg.Error as e:
                if e.sqlstate not in ("55P03", "40001", "40P01"):
                    errors.append(f"prune {e.sqlstate} {e}")

    threads = [threading.Thread(target=f) for f in (sealer, sealer, pruner)]
    for t in threads:
        t.start()
    w = connect("app_writer")
    try:
        for i in range(120):
            record(w, "t113.race", target_id=str(i))
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert seal_all(db) is None
    assert errors == [], errors[:3]
    dup = db.execute("SELECT count(*) - count(DISTINCT id) FROM audit.event_log").fetchone()[0]
    n = db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't113.race'").fetchone()[0]
    assert (dup, n) == (0, 120)
    assert both_verifiers(db) == (True, True), verify_chain(db).problem


@pytest.mark.parametrize("statement", [
    "UPDATE audit.event_log SET block_no = 1 WHERE seq = 5",
    "UPDATE audit.blocks SET canonical_version = 3 WHERE block_no = 2",
    "UPDATE audit.event_log SET seq = 100 WHERE seq = 9",
])
def test_k11_both_verifiers_catch_block_membership_and_version_tampers(chained, statement):
    """tamper-evidence.md: "every sealed event belongs to exactly one block"; the block records "the canonical form
    version its events were hashed in". Both verifiers must catch each change."""
    db = chained
    try:
        tamper(db, statement)
    except psycopg.Error as e:
        pytest.fail(f"tamper could not be made: {e}")
    assert both_verifiers(db) == (False, False)


def test_k12_line_hashes_changed_alone_change_no_verdict_in_either(chained):
    """tamper-evidence.md: line hashes "only locate, so changed alone they change no verdict"."""
    db = chained
    tamper(db, "UPDATE audit.blocks SET line_hashes = sha256('x') || sha256('y') || sha256('z') WHERE block_no = 2")
    assert both_verifiers(db) == (True, True)


@pytest.mark.parametrize("at", ["infinity", "-infinity", "0001-01-01 00:00:00+00", "0044-03-15 12:00:00+00 BC",
                                "10000-01-01 00:00:00+00", "294276-12-31 23:59:59.999999+00",
                                "1999-12-31 23:59:59.9999995+00", "4713-11-24 00:00:00+00 BC"])
def test_k13_extreme_occurred_at_values_verify_alike_in_both(clean, at):
    """tamper-evidence.md: both verifiers agree on every untampered log; canonical form: "to_char writes no era, nor
    an infinity: neither may hash as another time". Events with extreme times, sealed as the sealer seals."""
    db = clean
    db.execute("""INSERT INTO audit.event_intake (actor_type, db_role, kind, outcome, txid, occurred_at, payload)
                  VALUES ('user','x','t113.time','success', pg_current_xact_id(), %s::timestamptz, '{}')""", [at])
    assert seal_all(db) is None
    got = both_verifiers(db)
    assert got == (True, True), (got, verified_problem(db))


def verified_problem(db):
    return db.execute("SELECT problem FROM audit.verify()").fetchone()[0], verify_chain(db).problem


def test_r12_checkpoint_whose_own_block_was_pruned_still_holds(clean, connect, tmp_path):
    """tamper-evidence.md: after a prune "the checkpoint still holds, and says so" (block rows stay)."""
    db = clean
    old_events(db, 4)
    seal(db, 2)
    seal(db, 2)
    d = keys_in(tmp_path)
    cp = write_checkpoint(db, d, tmp_path / "cp.json")  # of block 2
    record(connect("app_writer"), "t113.new")
    assert seal_all(db) is None
    m = connect("app_maintainer")
    while m.execute("SELECT more FROM audit.prune_events('1 day', 2)").fetchone()[0]:
        pass
    assert db.execute("SELECT count(*) FROM audit.event_log WHERE kind = 't113.old'").fetchone()[0] == 0
    out = cli_verify(db, "--checkpoint", str(cp), "--public-key", str(d / "checkpoint-ed25519.pub.pem"))
    assert out.exit_code == 0 and "checkpoint of block 2 holds" in out.output, out.output


@pytest.mark.parametrize("level", ["REPEATABLE READ", "SERIALIZABLE"])
def test_l11_a_snapshot_older_than_the_counters_admits_no_extra_write(limited, connect, level):
    """rate-limits.md: "under its lock a shard's count is exact, so the shards together admit no more than the
    limit". A writer whose snapshot predates the counter row another session of the same user creates and fills."""
    w1, w2 = connect("app_writer"), connect("app_writer")
    for w in (w1, w2):
        w.execute("SET pgaudit_py.actor_id = 't113_rr'")
    w1.execute(f"BEGIN ISOLATION LEVEL {level}")
    w1.execute("SELECT count(*) FROM public.t113_other")  # the snapshot
    got2 = [refused(w2, "INSERT INTO public.t113_lim (v) VALUES (1)") for _ in range(2)]
    assert got2 == [None, None]
    got1 = refused(w1, "INSERT INTO public.t113_lim (v) VALUES (1)")
    committed = None
    if got1 is None:
        try:
            w1.execute("COMMIT")
            committed = True
        except psycopg.Error as e:
            committed = e.sqlstate
    else:
        w1.execute("ROLLBACK")
    n = limited.execute("SELECT count(*) FROM public.t113_lim").fetchone()[0]
    assert n == 2, (got1, committed)


OWNER_OPEN = """ALTER TABLE audit.event_log_000000 DISABLE TRIGGER USER;
    ALTER TABLE audit.event_log DISABLE TRIGGER USER;
    ALTER TABLE audit.blocks DISABLE TRIGGER USER;
    ALTER TABLE audit.seal_state DISABLE TRIGGER USER;
    GRANT ALL ON audit.event_log, audit.event_log_000000, audit.blocks, audit.seal_state TO audit_owner;"""


@pytest.mark.parametrize("statement", [
    "ALTER TABLE audit.event_log DETACH PARTITION audit.event_log_000000",
    OWNER_OPEN + "DELETE FROM audit.event_log_000000 WHERE seq = 2",
    OWNER_OPEN + "UPDATE audit.event_log_000000 SET payload = '{\"i\": 7}' WHERE seq = 5",
    OWNER_OPEN + "UPDATE audit.event_log_000000 SET occurred_at = occurred_at - interval '1 year' WHERE seq = 9",
    OWNER_OPEN + "DELETE FROM audit.blocks WHERE block_no = 3",
])
def test_k14_the_owner_roles_ddl_opened_rewrites_are_caught_by_both_verifiers(chained, statement):
    """security.md: "Against that level the guards stop plain DML, not DDL: what catches a change of sealed history
    is the hash chain"; "change or delete a sealed event undetected | no: `verify` names the block". The owner role
    disables the guards, re-grants itself DML and changes sealed history without re-hashing."""
    db = chained
    err = owner_tries(db, statement)
    print('K14', err)
    sql_ok = py_ok = None
    with suppress(psycopg.Error):
        sql_ok = verified(db)[0]
    with suppress(Exception):
        py_ok = verify_chain(db).ok
    assert err is not None or (sql_ok is not True and py_ok is not True), (err, sql_ok, py_ok)


def test_k15_owner_deletes_the_last_event_and_rechains_the_checkpoint_catches_it(chained, tmp_path):
    """tamper-evidence.md: "An attacker who rewrites an event and recomputes every later hash passes `verify`; a
    checkpoint catches that, and a removed tail". As the owner role (DDL, then DML re-granted): seq 9 deleted, block 3
    re-hashed to end at seq 8, the sealer's head moved."""
    db = chained
    d = keys_in(tmp_path)
    cp = write_checkpoint(db, d, tmp_path / "cp.json")
    err = owner_tries(db, OWNER_OPEN + """
        DELETE FROM audit.event_log_000000 WHERE seq = 9;
        UPDATE audit.blocks b SET last_seq = 8, event_count = 2, line_hashes = x.h, events_hash = sha256(x.h)
          FROM (SELECT string_agg(audit._event_hash(l, 2::smallint), ''::bytea ORDER BY l.seq) h
                  FROM audit.event_log l WHERE l.seq BETWEEN 7 AND 8) x WHERE b.block_no = 3;
        UPDATE audit.blocks b SET block_hash = audit._block_hash(b.block_no, b.first_seq, b.last_seq, b.event_count,
                                                                 b.events_hash, b.prev_hash) WHERE b.block_no = 3;
        UPDATE audit.seal_state SET last_seq = 8,
               last_block_hash = (SELECT block_hash FROM audit.blocks WHERE block_no = 3);""")
    print('K15', err, both_verifiers(db) if err is None else None)
    if err is not None:
        return  # refused: nothing to catch
    out = cli_verify(db, "--checkpoint", str(cp), "--public-key", str(d / "checkpoint-ed25519.pub.pem"))
    assert out.exit_code == 1 and "checkpoint failed" in out.output, (both_verifiers(db), out.output)


def test_k16_status_names_the_guards_the_owner_role_switched_off_and_its_grants(chained):
    """security.md: "`status` names a partition whose guard is missing or disabled, or on which a role was granted
    one". The owner role disables every guard of the log, a partition, the chain and seal_state, and grants itself
    DML; status must name the partition, and the log's, the chain's and seal_state's switched-off guards."""
    from pgaudit_py import status
    db = chained
    assert owner_tries(db, OWNER_OPEN) is None
    st = status(db)
    text = "\n".join(st.problems + st.warnings)
    print("STATUS", text)
    assert "event_log_000000" in text, text
    for table in ("blocks", "seal_state"):
        assert table in text, (table, text)


def test_r13_prune_waiting_on_an_uncommitted_archive_plan_leaves_the_planned_blocks(clean, connect):
    """retention.md: "Prune stops before the first block of an archive batch that is planned or recorded but not yet
    finished". The plan is uncommitted when the prune starts; the prune waits, then must still spare it."""
    import threading
    db = clean
    old_events(db, 4)
    seal(db, 2)
    seal(db, 2)
    a = connect("app_maintainer")
    a.execute("BEGIN")
    planned = a.execute("SELECT first_block, last_block FROM audit.next_archive_batch('1 day')").fetchone()
    out: dict = {}

    def prune():
        b = connect("app_maintainer")
        b.execute("SET lock_timeout = '10s'")
        try:
            out["deleted"] = b.execute("SELECT deleted FROM audit.prune_events('1 day', 100)").fetchone()[0]
        except psycopg.Error as e:
            out["error"] = e.sqlstate
    t = threading.Thread(target=prune)
    t.start()
    import time
    time.sleep(0.7)
    a.execute("COMMIT")
    t.join(20)
    assert planned[0] == 1, planned
    assert out.get("deleted", 0) == 0, out
    assert log_count(db) == 4
    assert both_verifiers(db) == (True, True)


def test_s9_a_value_passed_as_tenant_holding_no_key_is_not_repeated_in_errors(clean, connect, vault):
    """secrets.md: "No error of the secrets functions repeats a slot, a `which`, a value or a key it was given (only a
    tenant that holds a data key and a key file's absolute path are named)"."""
    leaked = "sk_live_PASSED_AS_TENANT_t113"
    texts = []
    for q in ("SELECT * FROM audit.rotate_tenant_key(%s, 10)", "SELECT audit.read_secret(%s, 'no.such.slot')",
              "SELECT audit.delete_secret(%s, 'no.such.slot')", "SELECT audit.put_secret(%s, 'no.such.slot', 'v')"):
        try:
            vault.execute(q, [leaked])
        except psycopg.Error as e:
            d = e.diag
            texts.append(" ".join(str(x) for x in (e, d.message_detail, d.message_hint, d.context)))
    joined = "\n".join(texts)
    assert leaked not in joined, joined


def test_l12_another_tenants_writes_pass_while_one_tenant_holds_its_shards_open(limited, connect):
    """rate-limits.md: the tenant "counts on its own"; a writer never waits for another writer's transaction. acme
    holds an open transaction with a write; globex's user writes at once."""
    a, g = connect("app_writer"), connect("app_writer")
    a.execute("SET pgaudit_py.tenant_id = 'acme'; SET pgaudit_py.actor_id = 'alice'")
    g.execute("SET pgaudit_py.tenant_id = 'globex'; SET pgaudit_py.actor_id = 'alice'; SET lock_timeout = '2s'")
    a.execute("BEGIN")
    a.execute("INSERT INTO public.t113_lim (v) VALUES (1)")
    try:
        got = refused(g, "INSERT INTO public.t113_lim (v) VALUES (2)")
    finally:
        a.execute("ROLLBACK")
    assert got is None, got


@pytest.mark.parametrize("addr", ["::ffff:1.2.3.4", "::1.2.3.4", "10.0.0.1/8", "2001:0db8:0000::0001", "fe80::1%eth0",
                                  "0.0.0.0", "255.255.255.255/32"])
def test_k17_odd_client_addresses_and_application_names_verify_alike(clean, connect, addr):
    """tamper-evidence.md: both verifiers agree on every untampered log; the session names the client address
    (`pgaudit_py.client_addr`) and its application_name."""
    db = clean
    w = connect("app_writer", application_name="t113 \u00e9\u2028\"\\ app")
    err = None
    try:
        w.execute("SELECT set_config('pgaudit_py.client_addr', %s, false)", [addr])
        record(w, "t113.addr")
    except Exception as e:  # noqa: BLE001  (an address refused is no disagreement)
        err = e
    if err is None:
        assert seal_all(db) is None
        assert both_verifiers(db) == (True, True), verified_problem(db)
