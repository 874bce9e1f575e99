"""The persistent Optuna study behind a sweep, shared by the sweeper, its trials and the review tools.

A sweep folder holds ``study.yaml`` (storage URL and study name), so anything that has the folder can open
the study; trials find it through the ``sweep.*`` keys the sweeper sets on each job.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
import yaml
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError, OperationalError

from svhn_sweep.constants import STUDY_FILE
from svhn_sweep.core.errors import UserError
from svhn_sweep.sweep.retries import retry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StudyRef:
    """Where a study lives (RDB URL) and its name: what ``study.yaml`` records and every client needs."""

    storage: str
    study_name: str

    def open_storage(
        self, heartbeat_interval: int | None = None, grace_period: int | None = None
    ) -> optuna.storages.RDBStorage:
        """An RDB storage (SQLite or PostgreSQL); SQLite waits for locks instead of failing under workers."""
        engine_kwargs = {"connect_args": {"timeout": 60}} if self.storage.startswith("sqlite") else {}
        with usable_storage(self.storage):
            return optuna.storages.RDBStorage(
                self.storage,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                # a trial whose heartbeat went stale was stopped from outside: its parameters are tried again
                heartbeat_stale_trial_callback=retry if heartbeat_interval else None,
            )

    @classmethod
    def of(cls, study: optuna.Study) -> StudyRef:
        """The storage and name of an opened study. Optuna has no public way to ask a study for its storage URL:
        this reads the RDB storage behind the study's (cached) storage.
        """
        storage = getattr(study._storage, "_backend", study._storage)
        return cls(str(getattr(storage, "url", "")), study.study_name)

    def run_dir_attr(self, run_dir: Path) -> str:
        """How a trial's run folder is recorded in the study: relative to the folder of an SQLite study's file,
        which every command and sweep folder of the study shares and which moves with them (a copied
        ``outputs/``); absolute for a database server.
        """
        anchor = sqlite_folder(self.storage)
        return os.path.relpath(run_dir, anchor) if anchor else str(Path(run_dir).resolve())

    def run_dir(self, recorded: str) -> Path:
        """A trial's run folder from what :meth:`run_dir_attr` recorded (older studies recorded absolute paths)."""
        anchor = sqlite_folder(self.storage)
        return Path(anchor, recorded) if anchor and not os.path.isabs(recorded) else Path(recorded)

    def load(self, **kwargs: object) -> optuna.Study:
        """The study, opened with :meth:`open_storage`; ``kwargs`` go to ``optuna.load_study`` (sampler, pruner)."""
        return optuna.load_study(study_name=self.study_name, storage=self.open_storage(), **kwargs)

    def save(self, sweep_dir: Path) -> None:
        """Write ``study.yaml`` into the sweep folder."""
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / STUDY_FILE).write_text(yaml.safe_dump(asdict(self), sort_keys=False))

    @classmethod
    def from_sweep_dir(cls, sweep_dir: Path) -> StudyRef:
        """The study a sweep folder's ``study.yaml`` names."""
        path = Path(sweep_dir) / STUDY_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} not found: {sweep_dir} is not a sweep folder of svhn_sweep.")
        return cls(**yaml.safe_load(path.read_text()))


class StorageError(UserError):
    """A storage that cannot be used: not a database, a server that refuses us, a schema of another Optuna."""


def masked(url: str) -> str:
    """The URL as it may be printed: its password, if any, as ``***``."""
    return make_url(url).render_as_string(hide_password=True)


@contextlib.contextmanager
def usable_storage(url: str) -> Iterator[None]:
    """What SQLAlchemy and Optuna raise on a storage they cannot use, as one message naming it and what to do."""
    try:
        yield
    except OperationalError as error:  # a server that refuses the connection or the login; an unreadable file
        reason = str(error.orig).strip().splitlines()[0]
        raise StorageError(
            f"Cannot use the Optuna storage {masked(url)}: {reason}. Check that the server runs and lets this user "
            "in (a password goes in PGPASSWORD or ~/.pgpass), or set hydra.sweeper.storage to another URL."
        ) from None
    except DatabaseError as error:  # e.g. "file is not a database"
        raise StorageError(
            f"The Optuna storage {masked(url)} is not a database Optuna can use ({error.orig}). Move the file "
            "away, or set hydra.sweeper.storage to another URL."
        ) from None
    except RuntimeError as error:
        if "table schema" not in str(error):
            raise
        raise StorageError(
            f"The Optuna storage {masked(url)} was set up by another version of Optuna: "
            + str(error).replace("$STORAGE_URL", masked(url))
        ) from None


def absolute_storage_url(url: str, cwd: Path) -> str:
    """SQLite paths relative to where the command ran, made absolute so every worker finds the same file."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or os.path.isabs(parsed.database):
        return url
    return f"sqlite:///{(cwd / parsed.database).resolve()}"


def sqlite_folder(url: str) -> Path | None:
    """The folder of an SQLite database file (None for other storages): it must exist before the sweep."""
    parsed = make_url(url)
    return Path(parsed.database).parent if parsed.get_backend_name() == "sqlite" and parsed.database else None


def derived_study_name(config_name: str, model: str, data: str, experiment: list[str]) -> str:
    """A stable name per experiment: the same command resumes its study, a different one starts afresh."""
    digest = hashlib.sha1("\n".join(sorted(experiment)).encode()).hexdigest()[:8]
    return f"{config_name}-{model}-{data}-{digest}"


@contextlib.contextmanager
def study_lock(storage: str, study_name: str) -> Iterator[None]:
    """Serialise "count the trials, then ask" across workers so a study never gets more than n_trials.

    PostgreSQL: a session advisory lock; SQLite: a lock file beside the database (same machine only).
    """
    url = make_url(storage)
    key = int(hashlib.sha1(study_name.encode()).hexdigest()[:15], 16)
    if url.get_backend_name() == "postgresql":
        from sqlalchemy import create_engine

        engine = create_engine(storage)
        try:
            with usable_storage(storage):
                connection = engine.connect()
            with connection:
                connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        finally:
            engine.dispose()
    elif url.get_backend_name() == "sqlite" and url.database:
        from filelock import FileLock

        with FileLock(f"{url.database}.{key:x}.lock"):
            yield
    else:
        yield
