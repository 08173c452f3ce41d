"""Every command of the command line, run as the least role docs/cli.md names for it: an auditor or a
monitoring check never needs a superuser."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from pgaudit_py import record, seal
from pgaudit_py.cli import cli


@pytest.fixture
def as_role(db):
    i = db.info

    def run(role: str | None, *args: str, input: str | None = None, env: dict[str, str] | None = None):
        dsn = ["--dsn", f"host={i.host} port={i.port} dbname={i.dbname} user={role}"] if role else []
        result = CliRunner().invoke(cli, [*args, *dsn], input=input, env=env, catch_exceptions=False)
        assert "Traceback" not in result.output + result.stderr
        assert result.exit_code == 0, (role, args, result.output, result.stderr)
        return result

    return run


@pytest.fixture
def orders(db):
    db.execute("""CREATE TABLE public.orders (id int PRIMARY KEY, status text);
                  ALTER TABLE public.orders OWNER TO app_maintainer;
                  GRANT SELECT, INSERT, UPDATE, DELETE ON public.orders TO app_writer""")


def readme_roles() -> dict[str, str]:
    """The command table of docs/cli.md (linked from the README): the least role of each command, by its
    first words."""
    commands = (Path(__file__).parent.parent / "docs" / "cli.md").read_text()
    rows = re.findall(r"^\| `([a-z][a-z -]*?)(?: [\[A-Z-].*?)?` \| (\w+) \|", commands, flags=re.M)
    return {command.strip(): role for command, role in rows}


def test_the_readme_names_the_least_role_of_every_command():
    def names(group, prefix=""):
        for name, command in group.commands.items():
            if hasattr(command, "commands"):
                if command.invoke_without_command:
                    yield prefix + name
                yield from names(command, prefix + name + " ")
            else:
                yield prefix + name

    assert set(readme_roles()) == set(names(cli))


def test_each_reading_command_works_for_the_reader(db, connect, as_role, orders, tmp_path):
    roles = readme_roles()
    reader = [c for c, r in roles.items() if r == "reader"]
    assert sorted(reader) == sorted(["status", "events", "count", "tracked", "history", "verify", "checkpoint",
                                     "limits", "archive list", "archive verify", "archive settings",
                                     "serve", "types list"])  # serve: run as the reader in test_api.py
    as_role("app_maintainer", "track", "public.orders")
    writer = connect("app_writer")
    writer.execute("INSERT INTO orders VALUES (1, 'new')")
    record(writer, "order.paid", tenant_id="t1", target_type="order", target_id="1")
    seal(connect("app_maintainer"))
    as_role(None, "keygen", "--dir", str(tmp_path / "keys"))
    keys = tmp_path / "keys"

    status = as_role("app_reader", "status", "--json")
    assert json.loads(status.output)["install"]["intact"] is True
    assert json.loads(status.output)["sealing"]["last_seq"] == 3
    events = json.loads(as_role("app_reader", "events", "--json").output)
    assert [e["kind"] for e in events] == ["order.paid", "public.orders.insert", "audit.tracking_enabled"]
    assert as_role("app_reader", "count").output.splitlines()[-1].split() == ["(all)", "3"]
    assert "public.orders" in as_role("app_reader", "tracked").output
    assert json.loads(as_role("app_reader", "history", "public.orders", "1", "--json").output)[0]["row_after"] \
        == {"id": 1, "status": "new"}
    assert "intact" in as_role("app_reader", "verify").output
    out = tmp_path / "head.json"
    as_role("app_reader", "checkpoint", "--signing-key", str(keys / "checkpoint-ed25519.pem"), "--out", str(out))
    assert json.loads(out.read_text())["checkpoint"]["last_seq"] == 3
    checked = as_role("app_reader", "verify", "--checkpoint", str(out),
                      "--public-key", str(keys / "checkpoint-ed25519.pub.pem"))
    assert "checkpoint" in checked.output
    as_role("app_reader", "limits")
    as_role("app_reader", "archive", "settings")
    as_role("app_reader", "archive", "list")
    as_role("app_reader", "types", "list")


def test_each_maintenance_command_works_for_the_maintainer(db, connect, as_role, orders, tmp_path):
    roles = readme_roles()
    assert sorted(c for c, r in roles.items() if r == "maintainer") == sorted(
        ["seal", "worker", "prune", "track", "untrack", "limits set", "limits unset", "limits set-operation",
         "archive run", "archive restore", "tokens create", "tokens list", "tokens revoke", "types load"])
    as_role(None, "keygen", "--dir", str(tmp_path / "keys"))
    keys = tmp_path / "keys"
    target = f"file://{tmp_path}/archive"
    as_role("app_maintainer", "track", "public.orders")
    assert db.execute("SELECT count(*) FROM audit.tracked_tables").fetchone() == (1,)
    as_role("app_maintainer", "limits", "set", "public.orders", "--per-user", "100")
    as_role("app_maintainer", "limits", "set-operation", "api.export", "--per-minute", "5")
    assert db.execute("SELECT count(*) FROM audit.rate_limits").fetchone() == (2,)
    as_role("app_maintainer", "limits", "unset", "public.orders")
    assert db.execute("SELECT count(*) FROM audit.rate_limits").fetchone() == (1,)
    connect("app_writer").execute("INSERT INTO orders VALUES (1, 'new')")
    assert "sealed" in as_role("app_maintainer", "seal").output
    as_role("app_maintainer", "archive", "settings", "--max-batch-events", "1")
    time.sleep(1.1)
    ran = as_role("app_maintainer", "archive", "run", "--target", target, "--older-than", "1s",
                  "--signing-key", str(keys / "checkpoint-ed25519.pem"))
    assert "archived" in ran.output
    archived = db.execute("SELECT batch_id FROM audit.archive_batches WHERE state = 'deleted' ORDER BY 1").fetchall()
    assert archived
    checked = as_role("app_reader", "archive", "verify", "--target", target,
                      "--public-key", str(keys / "checkpoint-ed25519.pub.pem"))
    assert "checked" in checked.output
    as_role("app_maintainer", "archive", "restore", "--target", target, "--batch", archived[0][0])
    assert db.execute("SELECT count(*) > 0 FROM audit.restored_events").fetchone() == (True,)
    as_role("app_maintainer", "prune", "--older-than", "1d", "--yes")
    as_role("app_maintainer", "untrack", "public.orders")
    assert db.execute("SELECT count(*) FROM audit.tracked_tables").fetchone() == (0,)
    token = as_role("app_maintainer", "tokens", "create", "--name", "ci").stdout.strip()
    assert "ci" in as_role("app_maintainer", "tokens", "list").output and token[-64:] not in as_role(
        "app_maintainer", "tokens", "list").output
    as_role("app_maintainer", "tokens", "revoke", "ci")
    as_role("app_maintainer", "types", "load", "auth")
    assert db.execute("SELECT count(*) FROM audit.event_types WHERE catalogue = 'auth'").fetchone() == (14,)
    assert db.execute("SELECT revoked_by FROM audit.api_tokens").fetchone() == ("app_maintainer",)


def test_record_works_for_the_writer(db, as_role):
    assert readme_roles()["record"] == "writer"
    as_role("app_writer", "record", "order.paid", "--tenant", "t1")
    assert db.execute("SELECT kind, db_role FROM audit.events").fetchall() == [("order.paid", "app_writer")]


def test_each_secrets_command_works_for_the_secrets_role(db, as_role, tmp_path):
    roles = readme_roles()
    secret_commands = sorted(c for c in roles if c.startswith("secrets "))
    assert {roles[c] for c in secret_commands if c != "secrets keygen"} == {"secrets"}
    key, new_key = tmp_path / "master.key", tmp_path / "new.key"
    as_role(None, "secrets", "keygen", str(key))
    as_role(None, "secrets", "keygen", str(new_key))
    env = {"PGAUDIT_MASTER_KEY": key.read_text().strip()}
    as_role("app_secrets", "secrets", "init", env=env)
    as_role("app_secrets", "secrets", "declare", "stripe.api_key", "Stripe key", env=env)
    as_role("app_secrets", "secrets", "put", "--tenant", "t1", "stripe.api_key", input="sk_1", env=env)
    assert as_role("app_secrets", "secrets", "get", "--tenant", "t1", "stripe.api_key", env=env).output == "sk_1"
    assert "stripe.api_key" in as_role("app_secrets", "secrets", "list", env=env).output
    as_role("app_secrets", "secrets", "rotate-tenant", "--tenant", "t1", env=env)
    as_role("app_secrets", "secrets", "rotate-master", "--new-master-key-file", str(new_key), env=env)
    env = {"PGAUDIT_MASTER_KEY": new_key.read_text().strip()}
    assert as_role("app_secrets", "secrets", "get", "--tenant", "t1", "stripe.api_key", env=env).output == "sk_1"
    as_role("app_secrets", "secrets", "delete", "--tenant", "t1", "stripe.api_key", env=env)
    assert db.execute("SELECT count(*) FROM audit.secret_values").fetchone() == (0,)
