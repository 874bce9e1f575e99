"""``hydra/sweeper=svhn_optuna``: the official sweeper's config plus what persistence and pruning need.

The one place the sweeper's defaults are stated (``conf/train.yaml`` restates none of them).
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra_plugins.hydra_optuna_sweeper.config import Direction, OptunaSweeperConf, TPESamplerConfig

from svhn_sweep.constants import DEFAULT_STORAGE

SAMPLER_NODE = "svhn_tpe"


@dataclass
class PersistentOptunaSweeperConf(OptunaSweeperConf):
    """The official sweeper's keys (sampler, params, n_trials = 20, ...) with this project's defaults."""

    # The sampler node: svhn_tpe (TPE with constant_liar chosen by the trials in flight) unless one is chosen.
    defaults: list[Any] = field(default_factory=lambda: [{"sampler": SAMPLER_NODE}])

    _target_: str = "hydra_plugins.svhn_sweep_optuna.sweeper.PersistentOptunaSweeper"
    # Trials maximise val accuracy.
    direction: Any = Direction.maximize
    # RDB URL of the study; a relative SQLite path is taken from where the command runs. See "Scaling a sweep".
    storage: Any = DEFAULT_STORAGE
    # params: the search space, {key: sweep expression} as hydra-optuna-sweeper parses it (choice, interval, range,
    # tag(log, ...)); filled by the search group (search=mlp, ...) and extended on the command line.
    # study_name: null (inherited) derives it from the config name, model, data, fixed overrides and search space,
    # so the same command resumes its study.

    # Trials in flight at once; more than 1 needs a parallel launcher (hydra/launcher=joblib, slurm, ...).
    # null: trials_per_device on each CUDA device the sweep sees (trainer.device=auto or cuda), else on the CPU.
    n_jobs: int | None = None
    # Trials per device when n_jobs is null. Trials in flight go to cuda:(i % devices) of the devices each job
    # sees, never all to cuda:0. 1 (serial on a CPU or one GPU) until a GPU measurement says more pays
    # (benchmarks/sweep_throughput.py).
    trials_per_device: int = 1
    # Crashed trials (not diverged ones) tolerated, as a fraction of n_trials, before the sweep stops.
    max_failure_rate: float = 0.25
    # Seconds between heartbeats of a running trial.
    heartbeat_interval: int = 10
    # Seconds a running trial (or the final step's lease) may stay silent before it counts as lost.
    grace_period: int = 30
    # Before the final step, wait for trials that other workers of the same study are still running.
    wait_for_workers: bool = True
    # Trials to evaluate first, before the sampler's own (Optuna's enqueue_trial): a list of {parameter: value},
    # named as in the search space (or as the custom_search_space hook suggests them), values inside it. Enqueued
    # once per study: a resume skips those already there. Marked `enqueued` in the trials table.
    enqueue: list[dict[str, Any]] = field(default_factory=list)
    # Time budget: stop asking for new trials after this long (seconds, or "90s", "15m", "2h"; null: none),
    # counted from this command's start (when Hydra sets the sweeper up). Running trials finish and the final
    # step follows; the same command continues the study with a new budget. n_trials still caps the study.
    timeout: Any = None
    # false (default): n_jobs slots, each starting its next trial as soon as its last one is told, with launchers
    # that run jobs in processes of their own (joblib, submitit_local, slurm); others, like the basic launcher,
    # take batches. true: always batches of n_jobs trials, each waiting for its slowest trial (the old loop).
    batch: bool = False


@dataclass
class TPESamplerConf(TPESamplerConfig):
    """``hydra/sweeper/sampler=svhn_tpe``, this sweeper's default: the official ``tpe`` node's keys, with
    ``constant_liar`` null by default, which the sweeper turns on when several trials are in flight (``n_jobs`` > 1).
    The official ``tpe`` node is left as it is, for every Hydra app; chosen here, its ``constant_liar`` is false.

    A trial in flight has no value yet; without the liar, TPE tends to propose one region for a whole batch.
    An explicit true or false is kept.
    """

    constant_liar: bool | None = None


ConfigStore.instance().store(
    group="hydra/sweeper", name="svhn_optuna", node=PersistentOptunaSweeperConf, provider="svhn_sweep"
)
ConfigStore.instance().store(
    group="hydra/sweeper/sampler", name=SAMPLER_NODE, node=TPESamplerConf, provider="svhn_sweep"
)
