"""A throwaway local PostgreSQL cluster, for `pgaudit demo`, the tests and the benchmarks.

PostgreSQL refuses to run as root, so as root the cluster is owned by, and run as, the
`postgres` system user (through runuser); as anyone else it runs as that user.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

# Fine for throwaway data, never for anything that claims durability.
FAST_SETTINGS = {"fsync": "off", "full_page_writes": "off", "synchronous_commit": "off"}


def find_binary(name: str) -> str:
    """A PostgreSQL server binary from PATH, else from Debian's /usr/lib/postgresql/*/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if not candidates:
        raise FileNotFoundError(f"{name} not found on PATH or in /usr/lib/postgresql/*/bin; "
                                "install PostgreSQL server binaries")
    return candidates[-1]


def default_parent() -> str:
    """tmpfs when there is room (clones are 10x faster there); PGAUDIT_TMPDIR overrides."""
    chosen = os.environ.get("PGAUDIT_TMPDIR")
    if chosen:
        return chosen
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 512 * 2**20:
        return str(shm)
    return tempfile.gettempdir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class TemporaryCluster:
    directory: Path
    port: int
    host: str = "127.0.0.1"
    user: str = "postgres"
    _as_postgres: bool = field(default=False, repr=False)
    _options: str = field(default="", repr=False)

    @classmethod
    def start(cls, *, parent: str | None = None, fast: bool = True,
              settings: dict[str, str] | None = None) -> TemporaryCluster:
        directory = Path(tempfile.mkdtemp(prefix="pgaudit-", dir=parent or default_parent()))
        as_postgres = os.geteuid() == 0
        if as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(directory, pw.pw_uid, pw.pw_gid)
        cluster = cls(directory=directory, port=_free_port(), _as_postgres=as_postgres)
        try:
            cluster._run(find_binary("initdb"), "-D", str(cluster.data), "-U", cluster.user,
                         "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
            options = {"port": str(cluster.port), "listen_addresses": cluster.host,
                       "unix_socket_directories": str(directory), **(FAST_SETTINGS if fast else {}),
                       **(settings or {})}
            cluster._options = " ".join(f"-c {k}={v}" for k, v in options.items())
            cluster._start_server()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def dsn(self, dbname: str = "postgres", user: str | None = None) -> str:
        return f"host={self.host} port={self.port} dbname={dbname} user={user or self.user}"

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else list(argv)
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.directory)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed: {done.stderr.strip() or done.stdout.strip()}")

    def _start_server(self) -> None:
        self._run(find_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", self._options,
                  "-w", "-t", "60", "start")

    def single_user(self, dbname: str, script: str, wrapper: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
        """Run `script` (a statement a line) in a single-user backend, under `wrapper` (valgrind, for
        bench/instructions.py), with the server stopped meanwhile."""
        self._run(find_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        try:
            argv = [*wrapper, find_binary("postgres"), "--single", "-D", str(self.data), dbname]
            command = ["runuser", "-u", "postgres", "--", *argv] if self._as_postgres else argv
            return subprocess.run(command, input=script, capture_output=True, text=True, cwd=self.directory)
        finally:
            self._start_server()

    def crash(self) -> None:
        """Stop the server as a power cut would (immediate: no checkpoint), and start it again."""
        self._run(find_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        self._start_server()

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(find_binary("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> TemporaryCluster:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
