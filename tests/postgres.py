"""A real PostgreSQL server for the tests: Debian's package, installed if missing, on a free loopback port."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import apt_install, free_port

# A role that must log in with its password (scram-sha-256), unlike the trusted superuser, and owns its database.
PASSWORD_USER, PASSWORD = "svhn_pw", "pw-Zq7x-never-written"


def with_password(url: str) -> str:
    """The URL of the password-protected role's database on the same server, password included."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    return f"postgresql://{PASSWORD_USER}:{PASSWORD}@127.0.0.1:{port}/{PASSWORD_USER}"


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """Yield a SQLAlchemy URL of a fresh cluster with an empty ``optuna`` database; stop and delete it after.

    Raises RuntimeError with the reason when no server can be had.
    """
    if _bindir() is None:
        apt_install("postgresql")
    bindir = _bindir()
    assert bindir is not None
    datadir = Path(tempfile.mkdtemp(prefix="svhn-sweep-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as Debian's postgres user
        shutil.chown(datadir, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    port = free_port()

    def run(*command: str) -> None:
        subprocess.run([*as_owner, *command], check=True, capture_output=True, text=True)

    run(str(bindir / "initdb"), "-D", str(datadir / "data"), "-A", "trust", "-U", "postgres")
    hba = datadir / "data" / "pg_hba.conf"  # first match wins: the password role is checked, the rest trusted
    hba.write_text(f"host all {PASSWORD_USER} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
    run(
        str(bindir / "pg_ctl"),
        "-D",
        str(datadir / "data"),
        "-l",
        str(datadir / "log"),
        "-w",
        "-o",
        f"-p {port} -k {datadir} -c listen_addresses=127.0.0.1 -c max_connections=200",
        "start",
    )
    try:
        psql = [str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c"]
        run(*psql, "CREATE DATABASE optuna")
        run(*psql, f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}'")
        run(*psql, f"CREATE DATABASE {PASSWORD_USER} OWNER {PASSWORD_USER}")
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(datadir / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(datadir, ignore_errors=True)
