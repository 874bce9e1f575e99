"""A real one-node SLURM cluster for the tests: Debian's slurm-wlm and munge, with slurmdbd on MariaDB so that
``sacct`` works as on real clusters (submitit polls it to see a job end without a result). Installed if missing;
every daemon on loopback ports, with its configuration, state and logs in one folder, stopped after.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import apt_install, free_port

PACKAGES = ("slurm-wlm", "munge", "slurmdbd", "mariadb-server")
PARTITION = "debug"
CLUSTER_NAME = "svhn"
DB_USER, DB_PASSWORD, DB_NAME = "slurm", "pw-slurm-" + "test", "slurm_acct_db"
# Seconds between the SIGTERM of a cancelled job and its SIGKILL (30 by default): the tests' scancel waits less.
KILL_WAIT_S = 1
REQUEUE_DELAY_S = 5
# The daemons, in the order they start; each writes this pid file in the cluster's folder.
PID_FILES = ("munge/munged.pid", "db/mariadb.pid", "slurmdbd.pid", "slurmctld.pid", "slurmd.pid")


@dataclass(frozen=True)
class Cluster:
    """A running cluster: its folder, and the environment its commands (and the sweep's submitit) need."""

    folder: Path

    @property
    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.folder / "slurm.conf")}

    def run(self, *command: str, check: bool = True) -> str:
        """A SLURM command (sbatch, squeue, sacct, scancel, scontrol) against this cluster; its stdout."""
        result = subprocess.run(
            command, env={**os.environ, **self.env}, capture_output=True, text=True, check=False, timeout=60
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"'{' '.join(command)}' failed ({result.returncode}): {result.stderr.strip()}")
        return result.stdout


def _missing() -> list[str]:
    found = subprocess.run(["dpkg-query", "-W", "-f=${Package} ${Status}\n", *PACKAGES], capture_output=True, text=True)
    installed = {line.split()[0] for line in found.stdout.splitlines() if line.endswith(" installed")}
    return [p for p in PACKAGES if p not in installed]


def _wait(what: str, ready: Callable[[], bool], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            raise RuntimeError(f"{what} did not start within {timeout:.0f} s; {log}:\n{tail}")
        time.sleep(0.2)


def _run(*command: str, env: dict[str, str] | None = None) -> None:
    """Run a set-up command; RuntimeError with what it printed when it fails."""
    result = subprocess.run(command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(
            f"'{' '.join(command)}' failed ({result.returncode}): {(result.stderr or result.stdout)[-1000:]}"
        )


def _succeeds(*command: str, env: dict[str, str] | None = None) -> bool:
    return subprocess.run(command, capture_output=True, env=env, timeout=30).returncode == 0


def _flags(options: dict[str, object]) -> list[str]:
    return [f"--{name}={value}" for name, value in options.items()]


def _start_munge(folder: Path) -> Path:
    """The munge daemon as Debian's munge user, with its own key and socket; returns the socket."""
    home = folder / "munge"
    home.mkdir(mode=0o755)  # clients reach the socket through it
    key = home / "munge.key"
    key.write_bytes(secrets.token_bytes(1024))
    key.chmod(0o400)
    for path in (home, key):
        shutil.chown(path, "munge", "munge")
    sock = home / "munge.socket"
    options = {"socket": sock, "key-file": key, "pid-file": home / "munged.pid", "log-file": home / "munged.log"}
    _run("runuser", "-u", "munge", "--", "/usr/sbin/munged", f"--seed-file={home / 'seed'}", *_flags(options))
    probe = f"munge -S {sock} -n | unmunge -S {sock}"
    _wait("munged", lambda: _succeeds("sh", "-c", probe), home / "munged.log")
    return sock


def _start_mariadb(folder: Path) -> int:
    """A MariaDB server on a loopback port with slurmdbd's user and database; returns the port."""
    data = folder / "db"
    data.mkdir()
    shutil.chown(data, "mysql", "mysql")
    datadir = f"--datadir={data / 'data'}"
    _run("mysql_install_db", "--no-defaults", datadir, "--user=mysql", "--auth-root-authentication-method=socket")
    port, sock = free_port(), data / "mysqld.sock"
    log = data / "mariadb.log"
    options = {"port": port, "socket": sock, "pid-file": data / "mariadb.pid", "log-error": log}
    subprocess.Popen(
        ["/usr/sbin/mariadbd", "--no-defaults", datadir, "--user=mysql", *_flags(options)]
        + ["--bind-address=127.0.0.1", "--skip-name-resolve", "--innodb-buffer-pool-size=64M"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = ["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root"]
    _wait("MariaDB", lambda: _succeeds(*client, "-e", "SELECT 1"), log)
    sql = (
        f"CREATE DATABASE {DB_NAME}; CREATE USER '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASSWORD}'; "
        f"GRANT ALL ON {DB_NAME}.* TO '{DB_USER}'@'127.0.0.1';"
    )
    _run(*client, "-e", sql)
    return port


def _memory_mb() -> int:
    with open("/proc/meminfo") as meminfo:
        total_kb = int(next(line for line in meminfo if line.startswith("MemTotal:")).split()[1])
    return max(total_kb // 1024 - 1024, total_kb // 2048)  # what jobs may ask for: all but some for the system


def _write_configs(folder: Path, munge_socket: Path, db_port: int | None) -> None:
    """slurm.conf, and slurmdbd.conf for accounting in the MariaDB on ``db_port`` (None: no accounting)."""
    host = socket.gethostname().split(".")[0]
    auth = f"AuthType=auth/munge\nAuthInfo=socket={munge_socket}"
    accounting = ""
    if db_port is not None:
        dbd_port = free_port()
        dbd = folder / "slurmdbd.conf"  # found next to slurm.conf; must be private to SlurmUser
        dbd.write_text(
            f"{auth}\nDbdHost={host}\nDbdAddr=127.0.0.1\nDbdPort={dbd_port}\nSlurmUser=root\n"
            f"LogFile={folder / 'slurmdbd.log'}\nPidFile={folder / 'slurmdbd.pid'}\n"
            f"StorageType=accounting_storage/mysql\nStorageHost=127.0.0.1\nStoragePort={db_port}\n"
            f"StorageUser={DB_USER}\nStoragePass={DB_PASSWORD}\nStorageLoc={DB_NAME}\n"
        )
        dbd.chmod(0o600)
        accounting = (
            f"AccountingStorageType=accounting_storage/slurmdbd\nAccountingStorageHost=127.0.0.1\n"
            f"AccountingStoragePort={dbd_port}\nAccountingStoragePass={munge_socket}\n"
            "JobAcctGatherType=jobacct_gather/linux\n"
        )
    (folder / "slurm.conf").write_text(
        f"ClusterName={CLUSTER_NAME}\nSlurmctldHost={host}(127.0.0.1)\n"
        f"SlurmctldPort={free_port()}\nSlurmdPort={free_port()}\n"
        # A requeued job may start again cred_expire seconds later (120 by default): the preemption test waits less.
        f"{auth},cred_expire={REQUEUE_DELAY_S}\nCredType=cred/munge\n"
        "SlurmUser=root\nSlurmdUser=root\nMpiDefault=none\nMailProg=/bin/true\nReturnToService=2\n"
        # No cgroups in a container or VM: track job processes by /proc, bind no tasks.
        "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSlurmdParameters=config_overrides\n"
        "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
        f"KillWait={KILL_WAIT_S}\nSchedulerParameters=sched_interval=5\n"
        f"StateSaveLocation={folder / 'ctld'}\nSlurmdSpoolDir={folder / 'd'}\n"
        f"SlurmctldPidFile={folder / 'slurmctld.pid'}\nSlurmdPidFile={folder / 'slurmd.pid'}\n"
        f"SlurmctldLogFile={folder / 'slurmctld.log'}\nSlurmdLogFile={folder / 'slurmd.log'}\n"
        f"{accounting}JobCompType=jobcomp/none\n"
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={_memory_mb()} State=UNKNOWN\n"
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP\n"
    )


def start(folder: Path, accounting: bool = True) -> Cluster:
    """Install what is missing and start every daemon with its state in ``folder`` (empty, made here); the
    cluster has one idle node in partition ``debug`` when this returns. RuntimeError with the reason otherwise.
    Without ``accounting``, no slurmdbd (nor MariaDB): ``sacct`` fails there, as on clusters that keep none.
    """
    if os.geteuid() != 0:
        raise RuntimeError("a SLURM cluster needs root: its daemons start jobs as their users")
    if missing := _missing():
        apt_install("--no-install-recommends", *missing)
    folder.mkdir(mode=0o755)  # munged (the munge user) reaches its folder through it
    cluster = Cluster(folder)
    try:
        munge_socket = _start_munge(folder)
        _write_configs(folder, munge_socket, _start_mariadb(folder) if accounting else None)
        env = {**os.environ, **cluster.env}
        for daemon in ("slurmdbd", "slurmctld", "slurmd")[0 if accounting else 1 :]:
            if daemon == "slurmctld" and accounting:  # the database must know the cluster before its controller
                _wait(
                    "slurmdbd", lambda: _succeeds("sacctmgr", "-n", "list", "cluster", env=env), folder / "slurmdbd.log"
                )
                cluster.run("sacctmgr", "-i", "add", "cluster", CLUSTER_NAME)
            _run(f"/usr/sbin/{daemon}", env=env)
        idle = lambda: cluster.run("sinfo", "-h", "-o", "%t", check=False).strip() == "idle"  # noqa: E731
        _wait("slurmd", idle, folder / "slurmd.log")
    except BaseException:
        stop(cluster)
        raise
    return cluster


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].startswith("Z")


def stop(cluster: Cluster) -> None:
    """Cancel every job, stop the daemons (in reverse order, each waited for) and delete the folder."""
    folder = cluster.folder
    if (folder / "slurmctld.pid").exists():
        cluster.run("scancel", "--full", f"--partition={PARTITION}", check=False)
        deadline = time.monotonic() + KILL_WAIT_S + 30
        while cluster.run("squeue", "-h", check=False).strip() and time.monotonic() < deadline:
            time.sleep(0.5)
    for name in reversed(PID_FILES):
        pid_file = folder / name
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text().split()[0])
        deadline = time.monotonic() + 30
        try:
            os.kill(pid, signal.SIGTERM)
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(folder, ignore_errors=True)


def shared_cluster(folder: Path) -> Cluster:
    """The cluster in ``folder``, started there by the first of the test processes to ask (pytest-xdist's workers
    share one; the others wait on a lock meanwhile, and get the first one's error if it failed); the end of the
    test run stops it (``stop_shared``).
    """
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        state = Path(f"{folder}.json")
        if state.exists():
            if error := json.loads(state.read_text()).get("error"):
                raise RuntimeError(error)
            return Cluster(folder)
        began = time.monotonic()
        try:
            cluster = start(folder)
        except (RuntimeError, subprocess.SubprocessError, OSError) as error:
            state.write_text(json.dumps({"error": str(error)}))
            raise RuntimeError(str(error)) from error
        state.write_text(json.dumps({"start_s": round(time.monotonic() - began, 1)}))
        return cluster


def stop_shared(folder: Path) -> None:
    """Stop the shared cluster if one started, and remove its files."""
    if folder.exists():
        stop(Cluster(folder))
    for leftover in (f"{folder}.lock", f"{folder}.json"):
        Path(leftover).unlink(missing_ok=True)
