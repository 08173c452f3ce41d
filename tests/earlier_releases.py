"""Installers of earlier commits of this repository, each with its own sql/ and migrations/: the
upgrade tests install one, then upgrade."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path
from types import ModuleType

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent


def installer_at(commit: str, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """The installer of `commit`, with its own sql/ and migrations/, from this repository's history."""
    archived = subprocess.run(["git", "-C", str(CHECKOUT), "archive", commit, "sql", "migrations",
                               "pgaudit_py/installer.py"], capture_output=True)
    if archived.returncode != 0:
        pytest.skip(f"commit {commit} is not in this checkout's history: {archived.stderr.decode().strip()}")
    root = tmp_path_factory.mktemp(commit)
    with tarfile.open(fileobj=BytesIO(archived.stdout)) as tar:
        tar.extractall(root, filter="data")
    # Its installer finds sql/ and migrations/ beside its package directory.
    spec = importlib.util.spec_from_file_location(f"installer_{commit}", root / "pgaudit_py" / "installer.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module
