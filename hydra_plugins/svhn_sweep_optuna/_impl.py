"""hydra-optuna-sweeper, extended: a persistent study that resumes, pruned trials, workers that share a study.

Imported when the sweeper is built (:mod:`.sweeper`), never by Hydra's plugin scan, which skips ``_`` modules.

What the official sweeper does stays as it is (search-space parsing, samplers, ``optimization_results.yaml``);
this subclass replaces only its loop:

- the study lives in an RDB storage (SQLite by default) under a name derived from the experiment, so the same
  command continues it until ``n_trials`` trials exist in total, across restarts and across workers;
- every job is told its trial through ``sweep.study`` / ``sweep.storage`` / ``sweep.trial``; the job reports
  val accuracy per epoch and raises ``optuna.TrialPruned`` when the pruner says so; the sweeper records PRUNED;
- trials beat a heartbeat while they run, so a trial left RUNNING by a killed process is marked FAIL;
- ``enqueue`` lists trials evaluated first (checked against the space before any trial), and a
  ``custom_search_space`` hook may return config values composed from its own parameters (conditional spaces);
- before the study exists, one trial's config per enqueued entry and per categorical choice is composed as the
  launcher will compose it and checked, so nothing in the search space is first found wrong by a trial;
- each trial's sampler is seeded from the seed and the trial's place (``svhn_sweep.sweep.sampling``): resumed,
  extended and shared studies repeat nothing; grid sweeps enumerate the space and cap ``n_trials``;
- a diverged trial is FAIL with its reason and does not count against ``max_failure_rate``; a crashed one
  does (this command's crashes), with its traceback in ``error.txt`` in its run folder; Ctrl-C, SIGTERM, SIGHUP,
  a stale heartbeat or a job SLURM lost mark the trials FAIL "interrupted: <why>", which do not count toward
  ``n_trials`` and are retried first (``svhn_sweep.sweep.retries``) from their checkpoints (``sweep.resume_from``);
- the study names its objective (``val_accuracy``) and a password in a PostgreSQL URL is never written;
- ``n_jobs`` trials are in flight: with a launcher that runs jobs apart from this process (joblib, submitit), in
  asynchronous slots, each asking for its next trial as soon as its last one is told (``svhn_sweep.sweep.slots``
  says how and why); with ``hydra.sweeper.batch=true`` or another launcher (the basic one), in batches that wait
  for their slowest trial;
- ``n_jobs`` null means ``trials_per_device`` per visible CUDA device; each job gets its slot (``sweep.slot``, its
  place in the batch), and with several CUDA devices trains on ``cuda:(slot % devices)``;
- ``timeout`` stops asking for new trials once spent (counted from this command's set-up; every command runs at
  least one batch): running trials finish, the final step follows, and the same command continues the study.

It is svhn_sweep's sweeper, not a general one. What it knows of this project is in five named places:
:meth:`PersistentOptunaSweeperImpl.setup` (``trainer.device``: whether CUDA devices count for ``n_jobs``),
:meth:`~PersistentOptunaSweeperImpl._preflight` (``svhn_sweep.sweep.preflight``: config values, storage, folders, data,
before the first trial), :meth:`~PersistentOptunaSweeperImpl._study_ref` (study naming from the ``model`` and ``data``
choices), :meth:`~PersistentOptunaSweeperImpl._job_overrides` (the ``sweep.study`` / ``sweep.storage`` /
``sweep.trial`` / ``sweep.slot`` keys of the task config, and ``trainer.num_threads`` to split the cores between
parallel trials) and :meth:`~PersistentOptunaSweeperImpl._tell` (the task's :class:`StoppedEarly` return value).

Private APIs used, each because no public one does the job:
- ``hydra_plugins.hydra_optuna_sweeper._impl``: ``OptunaSweeperImpl`` (subclassed to keep the official search-space
  parsing, sampler set-up and ``optimization_results.yaml``) with its ``_process_searchspace_config``,
  ``_parse_sweeper_params_config``, ``_get_directions`` and ``custom_search_space_extender`` (``_configure_trials``
  is replaced, to take hooks that compose values), and ``create_params_from_overrides``
  (called per entry, so that an entry Optuna cannot sample is named);
- ``hydra.core.override_parser.overrides_parser.OverridesParser``: to tell the fixed overrides from sweep ones,
  as the official sweeper does;
- ``optuna.trial.Trial._suggest`` and ``BaseDistribution._contains``: to sample a parsed distribution object as it
  is (the official sweeper does the same) and to test an enqueued value against it before any trial;
- ``OptunaSweeperImpl._to_grid_sampler_choices``: the grid as upstream enumerates a distribution's values;
- ``optuna.storages.RDBStorage.record_heartbeat`` and ``optuna.storages.fail_stale_trials`` (public, experimental):
  Optuna beats heartbeats only inside ``Study.optimize``, and this loop is ask-and-tell.
"""

from __future__ import annotations

import logging
import os
import time
import traceback
import warnings
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import torch
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.errors import HydraException, InstantiationException
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import DictConfig, OmegaConf, read_write
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState
from sqlalchemy.engine import URL, make_url

from svhn_sweep.constants import (
    COMPOSED_ATTR,
    CONFIG_OVERRIDES_ATTR,
    DEFAULT_STORAGE,
    ENQUEUED_ATTR,
    ERROR_FILE,
    FAIL_REASON_ATTR,
    MULTIRUN_FILE,
    OVERRIDES_ATTR,
    RESULTS_FILE,
    RUN_DIR_ATTR,
)
from svhn_sweep.core.errors import ConfigError
from svhn_sweep.sweep.config import check_target, validate
from svhn_sweep.sweep.errors import ReportedError, reported
from svhn_sweep.sweep.interrupts import signal_of
from svhn_sweep.sweep.liveness import HEARTBEAT_FILE, TrialHeartbeat, Watch, sacct_error, submitted_job
from svhn_sweep.sweep.preflight import preflight
from svhn_sweep.sweep.progress import SweepProgress
from svhn_sweep.sweep.pruning import StoppedEarly
from svhn_sweep.sweep.resources import TIMEOUT_KEY, parse_timeout, trials_in_flight
from svhn_sweep.sweep.retries import (
    DIVERGED,
    ERROR,
    INTERRUPTED,
    counted,
    evaluated,
    retried_attempt,
    retry,
    why_ended,
)
from svhn_sweep.sweep.sampling import build_sampler, check_sampler_available, grid_size
from svhn_sweep.sweep.slots import LostJobError, Slots, on_slurm, runs_jobs_apart
from svhn_sweep.sweep.study import (
    StudyRef,
    absolute_storage_url,
    derived_study_name,
    masked,
    study_lock,
)

log = logging.getLogger(__name__)

GRID_SAMPLER = "optuna.samplers.GridSampler"


class SweepFailedError(ReportedError):
    """The sweep stopped because too many trials crashed, or none finished."""


def search_space(entries: list[str]) -> tuple[dict[str, BaseDistribution], dict[str, Any], list[str]]:
    """Parse the search space one entry at a time, so an entry Optuna cannot sample is named in the error."""
    distributions: dict[str, BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    fixed_overrides: list[str] = []
    for entry in entries:
        try:
            parsed = create_params_from_overrides([entry])
        except Exception as error:
            raise ReportedError(f"Search space entry '{entry}' cannot be sampled: {error}") from None
        distributions.update(parsed[0])
        fixed.update(parsed[1])
        fixed_overrides += parsed[2]
    for name in fixed:
        distributions.pop(name, None)
    return distributions, fixed, fixed_overrides


def _choice_form(distribution: BaseDistribution | None, value: Any) -> Any:
    """A list for a categorical of lists, as the search space writes its choices: ``[100]`` -> ``"[100]"``."""
    if isinstance(distribution, CategoricalDistribution) and isinstance(value, list | tuple):
        return _override_value(value)
    return value


def _override_value(value: Any) -> Any:
    """A value as Hydra's override grammar reads it back: lists without spaces (``[256,128]``)."""
    if isinstance(value, list | tuple):
        return "[" + ",".join(str(_override_value(v)) for v in value) + "]"
    return value


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines about throw-away in-memory studies (the checks before the sweep) are noise."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def _contains(distribution: BaseDistribution | None, value: Any) -> bool:
    """Whether ``value`` lies in ``distribution`` (False for None: a parameter the space lacks)."""
    if distribution is None:
        return False
    try:
        return bool(distribution._contains(distribution.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False


class PersistentOptunaSweeperImpl(OptunaSweeperImpl):
    """``hydra/sweeper=svhn_optuna``'s implementation (built by :mod:`.sweeper`): see the module docstring."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int | None,
        max_failure_rate: float,
        custom_search_space: str | None,
        params: Any,
        heartbeat_interval: int,
        grace_period: int,
        wait_for_workers: bool,
        trials_per_device: int,
        timeout: Any,
        enqueue: Any = (),
        batch: bool = False,
    ) -> None:
        if custom_search_space is not None:  # loaded below under Hydra's whitelist, whose refusal is a traceback
            with reported():
                check_target("hydra.sweeper.custom_search_space", custom_search_space, "a hook this project ships")
        try:
            super().__init__(
                sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate, custom_search_space, params
            )
        except InstantiationException as error:  # the only thing it loads is the hook: a typo, a module not found
            raise ReportedError(
                f"hydra.sweeper.custom_search_space={custom_search_space} cannot be loaded ({error.__cause__ or error})"
                ": give an importable function as package.module.function, e.g. svhn_sweep.sweep.space.mlp_layers."
            ) from None
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.wait_for_workers = wait_for_workers
        self.enqueue: list[dict[str, Any]] = OmegaConf.to_container(OmegaConf.create(list(enqueue)))
        self.trials_per_device = trials_per_device
        self.timeout = timeout
        self.batch = batch
        self._started = time.monotonic()
        self._asked = 0  # trials this command asked for: it runs at least one batch, whatever the budget
        self._crashed: list[int] = []  # trials of this command whose code raised: what max_failure_rate counts

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Hydra's set-up, then the time budget and the trials in flight: a bad value stops here.

        ``hydra.sweep.dir`` is resolved once, first: its default's ``${now:...}`` is otherwise resolved apart by the
        launcher's instantiation (submitit's ``submitit_folder: ${hydra.sweep.dir}/.submitit/%j``) and by this
        sweeper, and a second apart (or with ``%f``, always) they name two folders.
        """
        with read_write(config.hydra.sweep):
            config.hydra.sweep.dir = str(config.hydra.sweep.dir)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        devices = torch.cuda.device_count() if config.trainer.device != "cpu" else 0
        with reported():
            if self.n_trials < 1:
                raise ConfigError(
                    f"Invalid config value hydra.sweeper.n_trials={self.n_trials!r}: must be >= 1 (the number of "
                    "trials the study evaluates in all, across commands and workers)."
                )
            self.timeout = parse_timeout(self.timeout)
            self.n_jobs = trials_in_flight(self.n_jobs, self.trials_per_device, devices)
            check_sampler_available(str(self.sampler.get("_target_", "")))

    # -- set-up ------------------------------------------------------------------------------------------
    def _study_ref(self, params_conf: list[str]) -> StudyRef:
        cwd = Path(self.config.hydra.runtime.cwd)
        storage = self._without_password(absolute_storage_url(str(self.storage or DEFAULT_STORAGE), cwd))
        if self.study_name:
            return StudyRef(storage, str(self.study_name))
        # The search space and the fixed overrides define the objective and name the study; how it is searched
        # (the pruner), what follows it (the final step) and how it is watched or kept (logger, trainer.quiet,
        # trainer.keep_checkpoints) do not.
        experiment = [
            o.input_line
            for o in OverridesParser.create().parse_overrides(params_conf)
            if o.get_key_element().split("/")[0].split(".")[0] not in ("sweep", "final", "logger")
            and o.get_key_element() not in ("trainer.quiet", "trainer.keep_checkpoints")
        ]
        experiment.append(f"direction={self._get_directions()}")
        if self.custom_search_space_extender is not None:  # the hook is part of the space
            experiment.append(f"custom_search_space={self.config.hydra.sweeper.custom_search_space}")
        choices = self.config.hydra.runtime.choices
        name = derived_study_name(
            self.config.hydra.job.config_name, choices.get("model", "model"), choices.get("data", "data"), experiment
        )
        return StudyRef(storage, name)

    def _without_password(self, storage: str) -> str:
        """The storage URL as printed and written everywhere: without its password, which goes to PostgreSQL's
        client library through ``PGPASSWORD`` in this process's environment (the jobs' too: local ones inherit it).
        """
        url = make_url(storage)
        if url.password is None:
            return storage
        if url.get_backend_name() != "postgresql":
            raise ReportedError(
                f"hydra.sweeper.storage={masked(storage)} has a password in its URL, which would be written into "
                "the sweep folder; give it to the database client another way and drop it from the URL."
            )
        os.environ["PGPASSWORD"] = str(url.password)
        bare = URL.create(url.drivername, url.username, None, url.host, url.port, url.database, url.query)
        storage = bare.render_as_string(hide_password=False)
        hydra = self.config.hydra  # what Hydra saves, and recomposes each job's config from
        with read_write(hydra.sweeper), read_write(hydra.overrides):
            hydra.sweeper.storage = storage
            hydra.overrides.hydra = [
                *(o for o in hydra.overrides.hydra if not o.lstrip("+~").startswith("hydra.sweeper.storage=")),
                f"hydra.sweeper.storage={storage}",
            ]
        self.storage = storage
        return storage

    def _job_overrides(self, ref: StudyRef) -> list[str]:
        """What every job of this sweep is told: its study (``sweep.*``; the loop adds its trial and its place in
        the batch, which picks its device), and a share of the machine's cores when trials run in parallel, unless
        the user chose ``trainer.num_threads``.
        """
        link = [f"sweep.study={ref.study_name}", f"sweep.storage='{ref.storage}'"]
        if self.n_jobs <= 1 or self.config.trainer.get("num_threads"):
            return link
        return [*link, f"trainer.num_threads={max(1, (os.cpu_count() or 1) // self.n_jobs)}"]

    def _preflight(self, ref: StudyRef, sweep_dir: Path) -> None:
        """The project's checks before the first trial, reported as messages: config values, folders, data."""
        with reported():
            preflight(self.config, ref, sweep_dir)

    def _build_sampler(self, grid: dict[str, list[Any]] | None = None) -> optuna.samplers.BaseSampler:
        """The sampler, built after the config's checks and seeded per trial (:mod:`svhn_sweep.sweep.sampling`)
        from ``hydra.sweeper.sampler.seed``, or else the run's ``seed`` (named by the checks when wrong).

        TPE's ``constant_liar`` left null is on exactly when trials run side by side (``n_jobs`` > 1); a grid
        sweep's GridSampler gets the grid the search space enumerates.
        """
        liar = {}
        if "constant_liar" in self.sampler and self.sampler.constant_liar is None:
            liar["constant_liar"] = self.n_jobs > 1
            log.info("TPE with constant_liar=%s (%d trial(s) in flight)", liar["constant_liar"], self.n_jobs)
        seed = self.sampler.get("seed")
        seed = self.config.get("seed") if seed is None else seed

        def make(**kwargs: Any) -> optuna.samplers.BaseSampler:
            return instantiate(
                self.sampler,
                **liar,
                **kwargs,
                _partial_=False,
                _execution_whitelist_=("optuna.samplers.*", "hydra_plugins.hydra_optuna_sweeper.*"),
            )

        try:
            return build_sampler(make, seed, grid)
        except Exception as error:
            raise ReportedError(f"hydra.sweeper.sampler cannot be built: {error}") from None

    def _grid(self, distributions: dict[str, BaseDistribution]) -> dict[str, list[Any]] | None:
        """For ``hydra/sweeper/sampler=grid``: every parameter's values, as the official sweeper enumerates them;
        ``n_trials`` capped at the grid's size, so the sweep ends when the grid is done. None for other samplers.
        """
        if self.sampler.get("_target_") != GRID_SAMPLER:
            return None
        if self.custom_search_space_extender is not None:
            raise ReportedError(
                "hydra/sweeper/sampler=grid enumerates the parameters of hydra.sweeper.params, and a "
                "custom_search_space hook adds parameters it cannot know: use another sampler, or set "
                "hydra.sweeper.custom_search_space=null and list the values in hydra.sweeper.params."
            )
        grid = {}
        for name, distribution in distributions.items():
            try:
                grid[name] = self._to_grid_sampler_choices(distribution)
            except ValueError:
                raise ReportedError(
                    f"hydra/sweeper/sampler=grid needs a finite set of values for every search parameter, and "
                    f"{name} is continuous ({distribution}): give it choice(...) or range(...), or fix its value; "
                    "nothing has run."
                ) from None
        size = grid_size(grid)
        if self.n_trials > size:
            log.info("The grid has %d points: n_trials %d capped to %d.", size, self.n_trials, size)
            self.n_trials = size
        if self.enqueue:
            log.info("The grid evaluates each of its points once; hydra.sweeper.enqueue is not used.")
            self.enqueue = []
        return grid

    # -- the loop ----------------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        """Ask, launch and tell batches of trials until the study has ``n_trials``, then write the results file."""
        # Heartbeats and stale-trial handling are "experimental" in Optuna and meant for Study.optimize; they
        # are what resume relies on here, with ask-and-tell.
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
        self._process_searchspace_config()
        params_conf = self._parse_sweeper_params_config() + list(arguments)
        distributions, fixed_params, fixed_overrides = search_space(params_conf)
        grid = self._grid(distributions)
        enqueued = self._checked_enqueue(distributions, fixed_params)
        with reported():  # the command's own config first (values, trusted targets): its message is the clearer
            validate(self.config)
        self._check_trial_configs(params_conf, distributions, fixed_params, fixed_overrides, enqueued)
        ref = self._study_ref(params_conf)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        self._preflight(ref, sweep_dir)
        sampler = self._build_sampler(grid)
        # Its presence tells the final step that *this* sweep finished; one left by an earlier run must not.
        (sweep_dir / RESULTS_FILE).unlink(missing_ok=True)
        with study_lock(ref.storage, ref.study_name):
            storage = ref.open_storage(self.heartbeat_interval, self.grace_period)
            study = optuna.create_study(
                study_name=ref.study_name,
                storage=storage,
                sampler=sampler,
                directions=self._get_directions(),
                load_if_exists=True,
            )
            self._enqueue(study, enqueued)
        # What Optuna's clients (the dashboard) call the objectives.
        study.set_metric_names(list(self.config.sweep.objectives))
        ref.save(sweep_dir)
        OmegaConf.save(self.config, sweep_dir / MULTIRUN_FILE)  # as Hydra's own sweeper does; svhn-sweep-final reads it
        optuna.storages.fail_stale_trials(study)
        done = [t for t in study.get_trials(deepcopy=False) if evaluated(t)]
        log.info(
            "Study %s in %s: %d of %d trials already finished", ref.study_name, ref.storage, len(done), self.n_trials
        )
        link = self._job_overrides(ref)
        progress = SweepProgress(self.n_trials, self.n_jobs)

        in_batches = not self._in_slots()
        watch = self._judge_by_heartbeats(in_batches)
        if watch:
            link.append(f"sweep.heartbeat={self.heartbeat_interval}")
        if not in_batches:
            configure = partial(
                self._configure_trials,
                search_space_distributions=distributions,
                fixed_params=fixed_params,
                fixed_overrides=fixed_overrides,
            )
            self._run_slots(study, ref, storage, sweep_dir, link, progress, configure, watch)
        between_batches = TrialHeartbeat(storage, study, (), self.heartbeat_interval)  # none in flight when asking
        while in_batches and (batch := self._ask(study, ref, between_batches)):
            overrides = [
                [*trial_overrides, *link, f"sweep.trial={trial.number}", f"sweep.slot={slot}", *resume]
                for slot, (trial, trial_overrides, resume) in enumerate(
                    zip(
                        batch,
                        self._configure_trials(batch, distributions, fixed_params, fixed_overrides),
                        self._resume_overrides(study, ref, batch),
                        strict=True,
                    )
                )
            ]
            with self._told_on_interrupt(study, batch):
                self._refuse_existing_run_dirs(sweep_dir, batch)
                for job, trial in enumerate(batch, start=batch[0].number):  # where Hydra will put it (by job number)
                    trial.set_user_attr(RUN_DIR_ATTR, ref.run_dir_attr(sweep_dir.resolve() / str(job)))
                with TrialHeartbeat(storage, study, batch, self.heartbeat_interval).running():
                    returns = self.launcher.launch(overrides, initial_job_idx=batch[0].number)
            for trial, ret in zip(batch, returns, strict=True):
                self._tell(study, ref, trial, ret)
                log.info(progress.line(study, trial.number))
            self._check_failure_budget()
        if grid is not None and sum(evaluated(t) for t in study.get_trials(deepcopy=False)) >= self.n_trials:
            log.info("The grid is done: all %d of its points evaluated.", self.n_trials)

        if self.wait_for_workers:
            self._wait_for_other_workers(study)
        self._finish(study, sweep_dir)

    def _in_slots(self) -> bool:
        """Whether trials run in asynchronous slots (:mod:`svhn_sweep.sweep.slots`): unless ``hydra.sweeper.batch``
        asks for batches, wherever the launcher runs jobs apart from this process (joblib, submitit).
        """
        if self.batch:
            return False
        if runs_jobs_apart(self.launcher):
            return True
        if self.n_jobs > 1:
            log.info(
                "%s runs its jobs in this process, one after the other: trials go to it in batches of %d.",
                type(self.launcher).__name__,
                self.n_jobs,
            )
        return False

    def _judge_by_heartbeats(self, in_batches: bool) -> bool:
        """Whether SLURM jobs must be judged by their heartbeat files: on SLURM where ``sacct`` does not work,
        said once (:mod:`svhn_sweep.sweep.liveness`).
        """
        if not on_slurm(self.launcher) or (why := sacct_error()) is None:
            return False
        if in_batches:
            log.warning(
                "sacct is not available (%s): submitit cannot see a SLURM job end without a result, and "
                "hydra.sweeper.batch=true waits for its whole batch. Without batch=true the sweeper judges jobs by "
                "their heartbeats.",
                why,
            )
            return False
        log.warning(
            "sacct is not available (%s): SLURM jobs are judged by their trials' heartbeats instead; a job silent "
            "for hydra.sweeper.grace_period (%d s) is cancelled and its trial retried. A requeued job that waits "
            "longer than that in the queue counts as lost too: raise grace_period where requeues wait long.",
            why,
            self.grace_period,
        )
        return True

    def _watch(self, watch: bool, run_dir: Path, trial: optuna.Trial) -> Watch | None:
        """The watch on a trial's SLURM job where sacct cannot say it ended: its heartbeat file, and its job id in
        the submissions submitit saves (``hydra.launcher.submitit_folder``: ``<sweep dir>/.submitit/%j``).
        """
        if not watch:
            return None
        folder = Path(str(self.launcher.params["submitit_folder"]))
        submitit_dir = folder.parent if "%" in folder.name else folder  # the folder of the per-job folders
        find_job = partial(submitted_job, submitit_dir, trial.number)
        return Watch(run_dir / HEARTBEAT_FILE, self.grace_period, find_job)

    def _run_slots(
        self,
        study: optuna.Study,
        ref: StudyRef,
        storage: optuna.storages.RDBStorage,
        sweep_dir: Path,
        link: list[str],
        progress: SweepProgress,
        configure: Callable[[list[optuna.Trial]], Sequence[Sequence[str]]],
        watch: bool,
    ) -> None:
        """``n_jobs`` slots, each asking for its next trial as soon as its last one is told (Optuna's
        ``optimize(n_jobs)`` loop). Past the failure budget, no new trial starts; those in flight finish first.
        With ``watch`` (SLURM without sacct), each job's :class:`Watch` says when it is lost.
        """
        slots: Slots[optuna.Trial] = Slots(self.launcher, self.n_jobs)
        in_flight = slots.running.values()  # live: what the heartbeat beats for and an interrupt marks
        heartbeat = TrialHeartbeat(storage, study, in_flight, self.heartbeat_interval)
        asking, too_many_failures = True, None
        with self._told_on_interrupt(study, in_flight), slots, heartbeat.running():
            while True:
                if asking and (free := slots.free()):
                    trials = self._ask(study, ref, heartbeat, len(free))
                    asking = bool(trials)  # none: n_trials are there or the time budget is spent
                    with self._told_on_interrupt(study, trials):
                        self._refuse_existing_run_dirs(sweep_dir, trials)
                        resumes = self._resume_overrides(study, ref, trials)
                        jobs = list(zip(free[: len(trials)], trials, configure(trials), resumes, strict=True))
                    for slot, trial, trial_overrides, resume in jobs:
                        job = [*trial_overrides, *link, f"sweep.trial={trial.number}", f"sweep.slot={slot}", *resume]
                        run_dir = sweep_dir.resolve() / str(trial.number)
                        trial.set_user_attr(RUN_DIR_ATTR, ref.run_dir_attr(run_dir))
                        slots.start(slot, trial, job, job_idx=trial.number, watch=self._watch(watch, run_dir, trial))
                if not slots.running:
                    break
                try:
                    _, trial, ret = slots.wait()
                except LostJobError as lost:  # the scheduler ended it: that trial is retried, the sweep goes on
                    self._mark_interrupted(study, [lost.item], f"lost job ({lost.state})")
                    log.warning("Trial %d %s: marked FAIL, to be tried again first.", lost.item.number, lost)
                    asking = too_many_failures is None  # its retry no longer counts as asked: ask again
                    continue
                self._tell(study, ref, trial, ret)
                log.info(progress.line(study, trial.number))
                try:
                    self._check_failure_budget()
                except SweepFailedError as error:
                    too_many_failures, asking = error, False
        if too_many_failures is not None:
            self._check_failure_budget()  # the message names the crashes of the trials in flight too
            raise too_many_failures

    def _checked_enqueue(
        self, distributions: dict[str, BaseDistribution], fixed_params: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """``hydra.sweeper.enqueue``, values in the search space's form; one message on an entry the space cannot
        take (a parameter it does not have, a value outside it), before any trial. A parameter the command line
        fixed is left out of the entries (the fixed value holds for every trial). The hook's parameters are known
        only by running it: each entry is tried on a trial of a throw-away in-memory study.
        """
        entries = []
        for index, raw in enumerate(self.enqueue):
            entry = {
                name: _choice_form(distributions.get(name), value)
                for name, value in raw.items()
                if name not in fixed_params
            }
            if not entry:
                continue
            try:
                with _quiet_optuna():
                    probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
                # values outside a categorical would stop the probe: they are named below instead
                probe.enqueue_trial(
                    {k: v for k, v in entry.items() if k not in distributions or _contains(distributions[k], v)}
                )
                trial = probe.ask()
                with warnings.catch_warnings(), _quiet_optuna():  # Optuna's "out of range": said better below
                    warnings.simplefilter("ignore")
                    self._trial_values(trial, distributions, {})
            except ValueError as error:  # e.g. a choice of the hook's that is not among its choices
                raise ReportedError(f"hydra.sweeper.enqueue[{index}] {raw} cannot be evaluated: {error}") from None
            space = {**trial.distributions, **distributions}
            unknown = sorted(set(entry) - set(space))
            outside = [
                f"{k}={v!r} (space: {space[k]})" for k, v in entry.items() if k in space and not _contains(space[k], v)
            ]
            if unknown or outside:
                problem = (
                    f"parameter(s) {unknown} the search space does not have (it has {sorted(space)})"
                    if unknown
                    else "value(s) outside the search space: " + "; ".join(outside)
                )
                raise ReportedError(
                    f"hydra.sweeper.enqueue[{index}] {raw} names {problem}. Fix the entry or the search space, or "
                    "enqueue nothing (hydra.sweeper.enqueue=[]); nothing has run."
                )
            entries.append(entry)
        return entries

    def _enqueue(self, study: optuna.Study, entries: list[dict[str, Any]]) -> None:
        """Enqueue the entries the study does not have yet (a resume enqueues nothing twice), while it has room."""
        for entry in entries:
            trials = study.get_trials(deepcopy=False)
            if sum(counted(t) or t.state == TrialState.WAITING for t in trials) >= self.n_trials:
                return
            study.enqueue_trial(entry, user_attrs={ENQUEUED_ATTR: True}, skip_if_exists=True)

    def _configure_trials(
        self,
        trials: list[optuna.Trial],
        search_space_distributions: dict[str, BaseDistribution],
        fixed_params: dict[str, Any],
        fixed_overrides: list[str],
    ) -> Sequence[Sequence[str]]:
        """Each trial's overrides: its searched values, then the fixed ones. Both are recorded: the searched ones
        for the tables (``overrides``), all of them for the final step, which composes exactly this config again
        (``config_overrides``).
        """
        overrides = []
        for trial in trials:
            searched, config = self._trial_overrides(trial, search_space_distributions, fixed_params, fixed_overrides)
            trial.set_user_attr(OVERRIDES_ATTR, searched)
            trial.set_user_attr(CONFIG_OVERRIDES_ATTR, config)
            overrides.append(config)
        return overrides

    def _trial_overrides(
        self,
        trial: optuna.Trial,
        distributions: dict[str, BaseDistribution],
        fixed_params: dict[str, Any],
        fixed_overrides: list[str],
    ) -> tuple[list[str], list[str]]:
        """A trial's searched values as overrides, and every override that composes its config."""
        values = self._trial_values(trial, distributions, fixed_params)
        searched = [f"{name}={_override_value(value)}" for name, value in values.items() if name not in fixed_params]
        return searched, [*searched, *(f"{n}={v}" for n, v in fixed_params.items()), *fixed_overrides]

    def _check_trial_configs(
        self,
        params_conf: list[str],
        distributions: dict[str, BaseDistribution],
        fixed_params: dict[str, Any],
        fixed_overrides: list[str],
        enqueued: list[dict[str, Any]],
    ) -> None:
        """Compose trials' configs before the study exists and run the config checks on them, so that nothing in
        the search space is first found wrong by a trial: one trial drawn at random, every enqueued one, and one per
        choice of every categorical parameter (a choice may select another config group option, with other keys).
        """
        probes: list[dict[str, Any]] = [{}, *enqueued]
        probes += [
            {name: choice}
            for name, distribution in distributions.items()
            if isinstance(distribution, CategoricalDistribution)
            for choice in distribution.choices
        ]
        with _quiet_optuna():
            study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        for probe in probes:
            if probe:
                study.enqueue_trial(probe)
            trial = study.ask()
            _, overrides = self._trial_overrides(trial, distributions, fixed_params, fixed_overrides)
            self._compose_checked(overrides, params_conf)

    def _compose_checked(self, overrides: list[str], params_conf: list[str]) -> None:
        """A job's config composed from ``overrides`` as the launcher will compose it, then checked: one message
        naming the search space entry (as written in ``params_conf``) that breaks it, with Hydra's own words.
        """
        try:
            config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        except Exception as error:
            culprit = self._first_breaking(overrides)
            key = OverridesParser.create().parse_override(culprit).get_key_element() if culprit else None
            entry = next(  # the last entry of a key is the one that holds (the command line's, over the YAML's)
                (
                    e
                    for e in reversed(params_conf)
                    if OverridesParser.create().parse_override(e).get_key_element() == key
                ),
                culprit,
            )
            words = "\n".join(dict.fromkeys(str(e).strip() for e in (error, error.__cause__) if e))
            raise ReportedError(
                f"Search space entry '{entry}' does not compose into a trial's config:\n{words}\n"
                "Fix it in hydra.sweeper.params, the search YAML file or the command line; nothing has run."
            ) from None
        try:
            validate(config)
        except ConfigError as error:
            raise ReportedError(f"{error} (in a trial's config: {' '.join(overrides)}); nothing has run.") from None

    def _first_breaking(self, overrides: list[str]) -> str | None:
        """The first override that a config composed from the overrides before it cannot take."""
        for end in range(1, len(overrides) + 1):
            try:
                self.hydra_context.config_loader.load_sweep_config(self.config, overrides[:end])
            except Exception:
                return overrides[end - 1]
        return None

    def _trial_values(
        self, trial: optuna.Trial, distributions: dict[str, BaseDistribution], fixed_params: dict[str, Any]
    ) -> dict[str, Any]:
        """Sample a trial: the space's parameters, then ``custom_search_space``'s. The hook either follows the
        official contract (returns None: every parameter it suggests is a config key) or ours (returns a dict of
        config keys composed from its own parameters, e.g. layer widths into ``model.hidden_sizes``; recorded as
        the trial's ``composed`` user attr).
        """
        for name, distribution in distributions.items():
            trial._suggest(name, distribution)
        searched = dict(trial.params)
        composed = None
        if self.custom_search_space_extender is not None:
            composed = self.custom_search_space_extender(self.config, trial)
        if composed is None:
            return {**trial.params, **fixed_params}
        trial.set_user_attr(COMPOSED_ATTR, composed)
        return {**searched, **composed, **fixed_params}

    def _ask(
        self, study: optuna.Study, ref: StudyRef, heartbeat: TrialHeartbeat, count: int | None = None
    ) -> list[optuna.Trial]:
        """Up to ``count`` (default n_jobs) new trials, never more than n_trials in the study (counting and asking
        under a lock); none once the time budget is spent. Stale trials are failed first, never the ``heartbeat``'s
        in flight; each new trial beats at once, as in Optuna's optimize: one that never beat is never stale, so a
        command killed before its first beat would leave it RUNNING, waited for by every later command.
        """
        if self._asked and self.timeout is not None and (spent := time.monotonic() - self._started) >= self.timeout:
            log.info(
                "Time budget %s=%gs spent (%.1f s): no new trials; the same command continues the study.",
                TIMEOUT_KEY,
                self.timeout,
                spent,
            )
            return []
        with study_lock(ref.storage, ref.study_name):
            heartbeat.fail_stale_trials()
            # trials WAITING (enqueued, retries of interrupted ones) are what the next ask() returns, not trials
            # on top of n_trials; interrupted trials do not count, their retries do once asked
            remaining = self.n_trials - sum(counted(t) for t in study.get_trials(deepcopy=False))
            batch = []
            for _ in range(min(count or self.n_jobs, remaining)):
                batch.append(study.ask())
                heartbeat.beat(batch[-1:])
        self._asked += len(batch)
        return batch

    def _resume_overrides(self, study: optuna.Study, ref: StudyRef, batch: Sequence[optuna.Trial]) -> list[list[str]]:
        """For a trial that retries an interrupted one, ``sweep.resume_from``: the run folder of the attempt it
        retries, where that attempt's checkpoint is.
        """
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        resume = []
        for trial in batch:
            number = retried_attempt(trials[trial.number])
            attempt = None if number is None else trials[number]  # trial 0 too: ``or`` would take it for none
            recorded = attempt.user_attrs.get(RUN_DIR_ATTR) if attempt else None
            resume.append([f"sweep.resume_from='{ref.run_dir(recorded)}'"] if recorded else [])
        return resume

    def _refuse_existing_run_dirs(self, sweep_dir: Path, batch: Sequence[optuna.Trial]) -> None:
        """A trial's folder is named by its number; one already there belongs to another study: never overwrite."""
        taken = [str(sweep_dir / str(t.number)) for t in batch if (sweep_dir / str(t.number)).exists()]
        if taken:
            raise SweepFailedError(
                f"Run folder(s) {taken} already exist from another sweep; set a new "
                "hydra.sweep.dir (the default one is unique per second)."
            )

    def _tell(self, study: optuna.Study, ref: StudyRef, trial: optuna.Trial, ret: JobReturn) -> None:
        """Record a job's end in its trial, unless the trial was ended meanwhile: another worker's stale check took
        it for dead (its heartbeat held up past grace_period) and a retry of it is waiting.
        """
        if trial.number not in {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}:
            log.warning(
                "Trial %d was ended by another worker of the study while its job ran (%s): what the job returned is "
                "dropped, and the trial's retry continues from the job's checkpoint. If this recurs, give every "
                "worker the same, longer hydra.sweeper.grace_period (this one's: %d s).",
                trial.number,
                why_ended(study.get_trials(deepcopy=False)[trial.number]),
                self.grace_period,
            )
            return
        run_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir).resolve() if ret.hydra_cfg else None
        if run_dir is not None:
            trial.set_user_attr(RUN_DIR_ATTR, ref.run_dir_attr(run_dir))
        try:
            value = ret.return_value
        except Exception as error:
            trial.set_user_attr(FAIL_REASON_ATTR, f"{ERROR}: {type(error).__name__}: {error}")
            study.tell(trial, state=TrialState.FAIL)
            self._crashed.append(trial.number)
            if run_dir is not None:
                (run_dir / ERROR_FILE).write_text("".join(traceback.format_exception(error)))
            log.error(
                "Trial %d failed: %s: %s (traceback in %s/error.txt)",
                trial.number,
                type(error).__name__,
                error,
                run_dir,
            )
            return
        if isinstance(value, StoppedEarly) and value.state == "pruned":
            study.tell(trial, state=TrialState.PRUNED)
        elif isinstance(value, StoppedEarly):
            trial.set_user_attr(FAIL_REASON_ATTR, f"{DIVERGED}: {value.reason}")
            study.tell(trial, state=TrialState.FAIL)
        else:  # a tuple: sweep.objectives with the parameter count
            values = [float(v) for v in value] if isinstance(value, tuple) else [float(value)]
            try:
                study.tell(trial, values)
            except RuntimeError as error:  # GridSampler stops the study when its grid is done: n_trials does here
                if "Study.stop" not in str(error):
                    raise

    def _check_failure_budget(self) -> None:
        """Only this command's crashes count: divergence is the config's verdict, a killed or interrupted run is not
        the trial's, and crashes of earlier commands were before the fix that the same command now runs with.
        """
        crashed = self._crashed
        if len(crashed) > self.max_failure_rate * self.n_trials:
            raise SweepFailedError(
                f"{len(crashed)} trials failed in this command ({', '.join(map(str, crashed))}), more than "
                f"hydra.sweeper.max_failure_rate={self.max_failure_rate} of {self.n_trials} trials allows. "
                "See error.txt in their run folders; finished trials are kept, and once the cause is fixed the "
                "same command resumes."
            )

    def _wait_for_other_workers(self, study: optuna.Study) -> None:
        """Trials other workers still run belong to this sweep's result: wait (stale ones turn FAIL)."""
        while running := study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            log.info("Waiting for %d trial(s) of other workers: %s", len(running), [t.number for t in running])
            time.sleep(max(1, min(10, self.heartbeat_interval)))
            optuna.storages.fail_stale_trials(study)

    def _finish(self, study: optuna.Study, sweep_dir: Path) -> None:
        trials = study.get_trials(deepcopy=False)
        if not any(t.state == TrialState.COMPLETE for t in trials):
            reasons = {t.number: t.user_attrs.get(FAIL_REASON_ATTR, t.state.name) for t in trials}
            raise SweepFailedError(
                f"No trial of study {study.study_name} completed, so there is no best config to retrain: {reasons}"
            )
        if len(study.directions) > 1:  # as the official sweeper writes a multi-objective result: the front
            front = [{"params": t.params, "values": t.values} for t in study.best_trials]
            log.info("Pareto front: %d trials (%s)", len(front), [t.number for t in study.best_trials])
            OmegaConf.save(OmegaConf.create({"name": "optuna", "solutions": front}), sweep_dir / RESULTS_FILE)
            return
        best = study.best_trial
        log.info("Best trial %d: value %s, params %s", best.number, best.value, best.params)
        OmegaConf.save(
            OmegaConf.create({"name": "optuna", "best_params": best.params, "best_value": best.value}),
            sweep_dir / RESULTS_FILE,
        )

    # -- bookkeeping around a running batch -------------------------------------------------------------
    @contextmanager
    def _told_on_interrupt(self, study: optuna.Study, trials: Collection[optuna.Trial]) -> Iterator[None]:
        """Ctrl-C, SIGTERM, SIGHUP (or any error of the launcher) while a batch runs: its trials are FAIL
        "interrupted: <why>" and retried first by the next command (they do not count toward ``n_trials``); a
        config that Hydra cannot compose is the trial's own error ("error: ..."), which the checks before the
        sweep should have caught. ``trials`` may be live (the slots' trials): those in flight when it happens.
        """
        try:
            yield
        except BaseException as interrupt:
            composing = isinstance(interrupt, HydraException) and not isinstance(interrupt, ReportedError)
            cause = signal_of(interrupt).name if isinstance(interrupt, KeyboardInterrupt) else type(interrupt).__name__
            trials = list(trials)
            if composing:
                for trial in trials:
                    trial.set_user_attr(FAIL_REASON_ATTR, f"{ERROR}: {cause}: {interrupt}")
                    study.tell(trial, state=TrialState.FAIL)
                raise ReportedError(f"A trial's config cannot be composed: {interrupt}") from None
            self._mark_interrupted(study, trials, cause)
            log.warning(
                "Stopped (%s): trial(s) %s marked FAIL, to be tried again first; finished trials are kept. "
                "Run the same command to resume.",
                cause,
                [t.number for t in trials],
            )
            raise

    def _mark_interrupted(self, study: optuna.Study, trials: Sequence[optuna.Trial], cause: str) -> None:
        """Trials stopped from outside: FAIL "interrupted: <cause>", each with a WAITING retry that is asked first."""
        for trial in trials:
            trial.set_user_attr(FAIL_REASON_ATTR, f"{INTERRUPTED}: {cause}")
            study.tell(trial, state=TrialState.FAIL)
            retry(study, study.get_trials(deepcopy=False)[trial.number])
