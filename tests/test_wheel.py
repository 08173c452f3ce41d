"""The package as a user gets it: a wheel built from this repository, installed into a fresh virtual
environment (its dependencies from the package index), runs `pgaudit demo` away from the source
tree, with the core dependencies alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def test_a_wheel_installs_in_a_fresh_environment_and_runs_the_demo(tmp_path):
    if not (CHECKOUT / "pyproject.toml").exists():
        raise AssertionError("the tests run from a checkout of the repository")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path / "dist"),
                    str(CHECKOUT)], check=True, capture_output=True, timeout=600)
    (wheel,) = (tmp_path / "dist").glob("pgaudit_py-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True, timeout=120)
    bin_dir = tmp_path / "venv" / "bin"
    subprocess.run([str(bin_dir / "pip"), "install", "--quiet", str(wheel)], check=True, capture_output=True,
                   timeout=900)
    installed = subprocess.run([str(bin_dir / "python"), "-c", "import importlib.util as u; print("
                                "[m for m in ('boto3', 'starlette', 'uvicorn') if u.find_spec(m)])"],
                               capture_output=True, text=True, check=True, cwd=tmp_path)
    assert installed.stdout.strip() == "[]"  # extras stay out of the core install
    demo = subprocess.run([str(bin_dir / "pgaudit"), "demo"], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr
    assert "sealed 5 events" in demo.stdout and "invoice.sent" in demo.stdout
    assert str(CHECKOUT) not in demo.stderr
