"""A PostgreSQL server of its own, in a temporary directory on a free loopback port: the
``postgres_server`` fixture (tests/conftest.py) and the benchmarks (bench/rate_slots.py) start
one with :func:`throwaway_server`. It needs Debian's server binaries (``./scripts/setup.sh
--test`` installs postgresql)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing, or the server would not start (the message says)."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def server_binaries() -> Path:
    """The newest ``/usr/lib/postgresql/<version>/bin`` with ``initdb`` and ``pg_ctl``."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for directory in reversed(candidates):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: "
        "run ./scripts/setup.sh --test (it apt-installs postgresql)"
    )


@contextmanager
def throwaway_server() -> Iterator[str]:
    """Start a server; yields the URL of its ``postgres`` database; stops and deletes it.

    As root the server runs as the ``postgres`` system user (it refuses to run as root).
    """
    bindir = server_binaries()
    base = Path(tempfile.mkdtemp(prefix="taskdeck-pg-"))
    as_root = os.geteuid() == 0

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", "postgres", "--", *args] if as_root else list(args)
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    if as_root:
        shutil.chown(base, "postgres", "postgres")
    data, log = base / "data", base / "server.log"
    port = free_port()
    initdb = run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                 "-E", "UTF8", "--no-sync")  # fmt: skip
    if initdb.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise PostgresUnavailable(f"initdb failed: {initdb.stderr.strip()}")
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    started = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-o", options,
                  "start")  # fmt: skip
    if started.returncode != 0:
        detail = log.read_text() if log.exists() else started.stderr
        shutil.rmtree(base, ignore_errors=True)
        raise PostgresUnavailable(f"PostgreSQL did not start: {detail.strip()[-2000:]}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)
