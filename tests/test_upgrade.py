"""An installation of the previous release (0.1.0, commit c7a2a6e) upgrades in place: its data and
chain stay valid, and the objects it generated are replaced by the safe ones (capture functions
owned by the capture role in its own schema, the privileged functions by their roles)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path
from types import ModuleType

import pytest

from pgaudit_py import row_history, seal, status
from pgaudit_py.chain import verify_chain
from pgaudit_py.installer import install

RELEASE = "c7a2a6e"  # 0.1.0
CHECKOUT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def previous_installer(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The previous release's installer, with its own sql/ and migrations/, from this repository's history."""
    archived = subprocess.run(["git", "-C", str(CHECKOUT), "archive", RELEASE, "sql", "migrations",
                               "pgaudit_py/installer.py"], capture_output=True)
    if archived.returncode != 0:
        pytest.skip(f"the previous release is not in this checkout's history: {archived.stderr.decode().strip()}")
    root = tmp_path_factory.mktemp("release")
    with tarfile.open(fileobj=BytesIO(archived.stdout)) as tar:
        tar.extractall(root, filter="data")
    # Its installer finds sql/ and migrations/ beside its package directory.
    spec = importlib.util.spec_from_file_location("previous_installer", root / "pgaudit_py" / "installer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_an_installation_of_the_previous_release_upgrades_in_place(db, connect, previous_installer):
    db.execute("SET lc_messages = 'C'")  # its guards read English message text
    previous_installer.install(db, "upgr")
    db.execute("""CREATE TYPE public.mood AS ENUM ('ok', 'bad');
                  CREATE TABLE public.feel (id int PRIMARY KEY, m public.mood, note text);
                  CREATE TABLE public.who_ran (who text);
                  GRANT ALL ON public.who_ran TO PUBLIC;
                  CREATE FUNCTION public.mood_json(public.mood) RETURNS json LANGUAGE plpgsql AS $$
                      BEGIN INSERT INTO public.who_ran VALUES (current_user); RETURN to_json($1::text); END $$;
                  CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood);""")
    db.execute("SELECT upgr.enable_tracking('public.feel')")  # the previous release's own call
    db.execute("INSERT INTO public.feel VALUES (1, 'ok', 'a'), (2, 'bad', 'b')")
    db.execute("""SELECT upgr.record(kind => 'order.paid', payload => '{"n": 1}')""")
    seal(db, audit_schema="upgr")  # version 1 blocks
    db.execute("UPDATE public.feel SET note = 'c' WHERE id = 1")  # pending across the upgrade
    assert db.execute("SELECT DISTINCT who FROM public.who_ran").fetchall() == [("upgr_owner",)]  # the flaw
    db.execute("TRUNCATE public.who_ran")

    db.execute("RESET lc_messages")
    report = install(db, "upgr")
    assert report.migrations == ["0007_origin_quarantine", "0008_archive_claim", "0009_intake_ids",
                                 "0010_rate_counter_windows", "0011_tracking_baseline",
                                 "0012_block_line_hashes"]
    assert status(db, "upgr").problems == []
    # The kind prefix a table was tracked under is held for it (a look-alike cannot take it over).
    assert db.execute("SELECT kind_prefix, relid = 'public.feel'::regclass::oid FROM upgr.kind_prefixes").fetchall() \
        == [("public.feel", True)]
    functions = dict(db.execute("""SELECT p.pronamespace::regnamespace::text || '.' || p.proname, p.proowner::regrole::text
                                     FROM pg_proc p
                                    WHERE p.pronamespace::regnamespace::text IN ('upgr', 'upgr_capture')
                                      AND (p.proname IN ('seal', 'prune_events', 'delete_archived', '_capture_truncate',
                                                         '_generate_capture') OR p.proname ~ '^_capture_[0-9]+$')""").fetchall())
    capture_function = db.execute("SELECT upgr._capture_function('public.feel'::regclass)").fetchone()[0]
    assert functions == {"upgr.seal": "upgr_sealer", "upgr.prune_events": "upgr_pruner",
                         "upgr.delete_archived": "upgr_pruner", "upgr_capture._capture_truncate": "upgr_capture",
                         "upgr._generate_capture": "upgr_owner", capture_function: "upgr_capture"}

    db.execute("UPDATE public.feel SET m = 'ok' WHERE id = 2")
    assert db.execute("SELECT DISTINCT who FROM public.who_ran").fetchall() == [("upgr_sandbox",)]
    assert seal(db, audit_schema="upgr").sealed == 2  # the update pending across the upgrade, and the one after
    assert db.execute("SELECT canonical_version, count(*) FROM upgr.blocks GROUP BY 1 ORDER BY 1").fetchall() == [
        (1, 1), (2, 1)]
    assert db.execute("SELECT ok FROM upgr.verify()").fetchone() == (True,)
    assert verify_chain(db, audit_schema="upgr").ok
    assert [e.row_after["note"] for e in row_history(db, "public.feel", "1", audit_schema="upgr")] == ["a", "c"]
    assert install(db, "upgr").changed is False
