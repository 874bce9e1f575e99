"""Shared fixtures: a small synthetic data set in SVHN's .mat format, and config composition."""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from svhn_sweep.core.data import SyntheticSource
from svhn_sweep.sweep.config import CONFIG_DIR, register_configs

if TYPE_CHECKING:
    from tests.slurm import Cluster

TRAIN_SIZE, TEST_SIZE = 600, 200

# Python source to run first in a subprocess: Hydra, OmegaConf, Optuna and the Hydra plugins become unimportable,
# as on a machine that has only torch (the core, the benchmarks).
WITHOUT_HYDRA = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('hydra', 'omegaconf', 'optuna', 'hydra_plugins'):
            raise ImportError('not installed here: ' + name)
sys.meta_path.insert(0, Block())
"""
REPO = Path(__file__).resolve().parent.parent
# Where the test run's SLURM cluster keeps its state: set by the controlling pytest process, inherited by its
# pytest-xdist workers, so that they share one cluster, started by the first to need it and stopped at the end.
SLURM_STATE = "SVHN_SWEEP_TEST_SLURM"


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):
        os.environ[SLURM_STATE] = os.path.join(tempfile.gettempdir(), f"svhn-sweep-slurm-{uuid.uuid4().hex[:12]}")


def pytest_unconfigure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput") and SLURM_STATE in os.environ:
        from tests.slurm import stop_shared

        stop_shared(Path(os.environ.pop(SLURM_STATE)))


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated data set, shared by the whole session (generation is the slow part)."""
    root = tmp_path_factory.mktemp("data")
    SyntheticSource(str(root), train_size=TRAIN_SIZE, test_size=TEST_SIZE).load("train")
    return root


@pytest.fixture(scope="session")
def small_data(synthetic_root: Path) -> list[str]:
    """Overrides that point a run at the small synthetic set."""
    return [
        "data=synthetic",
        f"data.root={synthetic_root}",
        f"data.train_size={TRAIN_SIZE}",
        f"data.test_size={TEST_SIZE}",
    ]


@dataclass(frozen=True)
class Sweep:
    """A finished sweep's folder and what its command printed."""

    dir: Path
    stdout: str


@pytest.fixture(scope="session")
def sweep(small_data: list[str], tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    """One finished 4-trial sweep on the small synthetic set, with its final retrain (one epoch longer than the
    trials') and figures: shared by every module that reviews or uses a finished sweep (report, predict, notebook,
    dashboard).
    """
    cwd = tmp_path_factory.mktemp("review")
    args = ["--multirun", *small_data, "hydra.sweeper.n_trials=4", "trainer.epochs=2", "final.epochs=3"]
    args.append("final.batch_size=64")  # the final step's own batch (the trials keep trainer.batch_size)
    args.append("sweep.pruner=none")  # every trial trains its 2 epochs
    result = run_cli(args, cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    (sweep_dir,) = (cwd / "outputs" / "sweeps").iterdir()
    return Sweep(sweep_dir, result.stdout)


@pytest.fixture
def compose_cfg() -> Iterator[Callable[..., DictConfig]]:
    """Compose ``conf/train.yaml`` with overrides, as Hydra would for a run."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR):
        yield lambda *overrides: compose(config_name="train", overrides=list(overrides))


def free_port() -> int:
    """A loopback port nothing listens on (for a server to start on, or a client to find closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def apt_install(*packages: str) -> None:
    """Install Debian packages, one test process at a time (apt's own lock fails a second one at once);
    RuntimeError with the reason when they cannot be.
    """
    if os.geteuid() != 0:
        raise RuntimeError(f"{', '.join(packages)}: not installed, and installing needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with open(os.path.join(tempfile.gettempdir(), "svhn-sweep-apt.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
            result = subprocess.run(command, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if result.returncode != 0:
                raise RuntimeError(f"'{' '.join(command)}' failed: {result.stderr.strip()[-300:]}")


def cli_env(pythonpath: tuple[Path, ...] = (), **env_vars: str) -> dict[str, str]:
    """The environment of a user's shell, with this checkout importable ahead of what is already there."""
    paths = [REPO, *pythonpath, *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, paths)), **env_vars}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def start_cli(args: list[str], cwd: Path, **popen: Any) -> subprocess.Popen[str]:
    """``python -m svhn_sweep ARGS`` started in the background, for tests that stop it midway.

    It gets SIGINT's default action, as a command typed at a terminal does, even where the suite itself runs
    with SIGINT ignored (a shell's background job, some CI runners), which the command would inherit.
    """
    return subprocess.Popen(
        [sys.executable, "-m", "svhn_sweep", *args],
        cwd=cwd,
        env=cli_env(),
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **popen,
    )


def run_cli(
    args: list[str], cwd: Path, timeout: float = 240, pythonpath: tuple[Path, ...] = (), **env_vars: str
) -> subprocess.CompletedProcess[str]:
    """``python -m svhn_sweep ARGS`` in a subprocess, as a user would type it."""
    return subprocess.run(
        [sys.executable, "-m", "svhn_sweep", *args],
        cwd=cwd,
        env=cli_env(pythonpath, **env_vars),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture
def run_main(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[[list[str]], subprocess.CompletedProcess[str]]:
    """The command's entry point in this process, in ``tmp_path``: for runs that must stop before training,
    where a subprocess would only add the interpreter's start-up.
    """
    from hydra.core.global_hydra import GlobalHydra

    from svhn_sweep.__main__ import main

    def run(args: list[str]) -> subprocess.CompletedProcess[str]:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "argv", ["svhn_sweep", *args])
        GlobalHydra.instance().clear()
        try:
            main()
            code = 0
        except SystemExit as stopped:
            code = stopped.code if isinstance(stopped.code, int) else 1
            if isinstance(stopped.code, str):
                print(stopped.code, file=sys.stderr)  # what the interpreter prints for sys.exit("message")
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return run


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    from tests.postgres import postgres_server

    try:
        server = postgres_server()
        url = server.__enter__()
    except (RuntimeError, subprocess.CalledProcessError) as error:
        pytest.fail(
            f"No PostgreSQL server could be installed or started here ({error}); the multi-worker test "
            "needs one: install Debian's postgresql package, or run as root so the test can."
        )
    yield url
    server.__exit__(None, None, None)


def run_folder(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> Path:
    """A trial's run folder, as the study records it (relative to an SQLite study's folder)."""
    from svhn_sweep.sweep.study import StudyRef

    return StudyRef.of(study).run_dir(trial.user_attrs["run_dir"])


@pytest.fixture(scope="session")
def slurm_cluster() -> Cluster:
    """The test run's one-node SLURM cluster (partition ``debug``, accounting on), shared by every worker."""
    from tests.slurm import shared_cluster

    try:
        return shared_cluster(Path(os.environ[SLURM_STATE]))
    except RuntimeError as error:
        pytest.fail(
            f"No SLURM cluster could be installed or started here ({error}); the SLURM tests need one: run as "
            "root on Debian, so that the tests can install slurm-wlm, munge, slurmdbd and mariadb-server."
        )


@pytest.fixture
def slurm(slurm_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Cluster:
    """The cluster, with SLURM_CONF pointing at it for this test and the commands it starts."""
    for name, value in slurm_cluster.env.items():
        monkeypatch.setenv(name, value)
    return slurm_cluster


@pytest.fixture
def slurm_without_accounting(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    """A one-node cluster of this test's own that keeps no accounting (no slurmdbd), so that ``sacct`` fails as on
    such clusters; SLURM_CONF points at it for this test. Started here (seconds: no database) and stopped after.
    """
    from tests.slurm import start, stop

    try:
        cluster = start(Path(tempfile.gettempdir()) / f"svhn-sweep-slurm-noacct-{uuid.uuid4().hex[:12]}", False)
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        pytest.fail(f"No SLURM cluster could be installed or started here ({error}); run as root on Debian.")
    for name, value in cluster.env.items():
        monkeypatch.setenv(name, value)
    yield cluster
    stop(cluster)
