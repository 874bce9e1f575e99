"""Per-epoch checkpoints in ``fit``: a run stopped after epoch k and resumed ends bit for bit where the same run
never stopped does (dropout, BatchNorm, StepLR, SGD with momentum and Adam), and a saved state that is not this
run's is never continued (issue 18).
"""

from __future__ import annotations

import json
import logging
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from svhn_sweep.constants import CHECKPOINT_FILE, METRICS_FILE, MODEL_FILE
from svhn_sweep.core.checkpoint import Checkpoints
from svhn_sweep.core.data import Normalizer
from svhn_sweep.core.models import MLP
from svhn_sweep.core.train import EpochStats, fit
from svhn_sweep.sweep.checkpoints import fingerprint
from svhn_sweep.sweep.lease import LEASE_ATTR, UNFINISHED_ATTR, FinalStepLease
from svhn_sweep.sweep.study import StudyRef
from svhn_sweep.sweep.trial import train_and_validate
from tests.conftest import cli_env, run_cli, start_cli
from tests.test_interrupts import wait_for
from tests.test_train import toy_split

EPOCHS = 4
OPTIMIZERS: dict[str, Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]] = {
    "sgd_momentum": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4),
    "adam": lambda params: torch.optim.Adam(params, lr=3e-3),
}


class Stop(KeyboardInterrupt):
    """What a Ctrl-C or SIGTERM is inside the process: it passes through every ``except Exception``."""


def run(
    optimizer_name: str,
    checkpoints: Checkpoints | None = None,
    stop_after: int | None = None,
    init_seed: int = 0,
    on_resume: Callable[[list[EpochStats]], None] | None = None,
) -> tuple[list[EpochStats], torch.nn.Module, torch.optim.Optimizer]:
    """Train the test's net for EPOCHS, or stop it as a signal would once ``stop_after`` epochs are saved."""
    torch.manual_seed(init_seed)
    model = MLP([16, 8], batchnorm="after", dropout=0.3)
    optimizer = OPTIMIZERS[optimizer_name](list(model.parameters()))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    seen: list[EpochStats] = []

    def on_epoch(stats: EpochStats) -> None:
        if stop_after is not None and stats.epoch == stop_after + 1:
            raise Stop  # after the epoch's training, before its checkpoint: the one of stop_after is the last
        seen.append(stats)

    history = fit(
        model,
        optimizer,
        scheduler,
        toy_split(160),
        toy_split(40, seed=1),
        Normalizer([0.4] * 3, [0.2] * 3),
        epochs=EPOCHS,
        batch_size=32,
        seed=11,
        on_epoch=on_epoch,
        checkpoints=checkpoints,
        on_resume=on_resume,
    )
    return history, model, optimizer


def numbers(history: list[EpochStats]) -> list[dict[str, float | int | None]]:
    """Everything an epoch's stats say except its wall time."""
    return [{k: v for k, v in asdict(stats).items() if k != "seconds"} for stats in history]


def same_tensors(a: object, b: object) -> bool:
    """Nested state dicts equal bit for bit (tensors by ``torch.equal``, the rest by ``==``)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return isinstance(b, list | tuple) and len(a) == len(b) and all(map(same_tensors, a, b))
    return a == b


# Stopped within StepLR's 2-epoch period, and at its end.
@pytest.mark.parametrize(("optimizer_name", "stop_after"), [("sgd_momentum", 1), ("adam", 2)])
def test_a_run_stopped_after_epoch_k_and_resumed_ends_bit_for_bit_as_never_stopped(
    tmp_path: Path, optimizer_name: str, stop_after: int
) -> None:
    whole, whole_model, whole_optimizer = run(optimizer_name)
    assert numbers(run(optimizer_name, Checkpoints(tmp_path / "other.pt", "fp"))[0]) == numbers(whole)

    path = tmp_path / "checkpoint.pt"
    with pytest.raises(Stop):
        run(optimizer_name, Checkpoints(path, "fp", (path,)), stop_after=stop_after)
    assert torch.load(path, weights_only=True)["epoch"] == stop_after
    # Whatever happened in the process meanwhile (another initialisation, every generator drawn from) is undone.
    torch.manual_seed(123), random.seed(123), np.random.seed(123)
    restored: list[list[EpochStats]] = []
    resumed, model, optimizer = run(
        optimizer_name, Checkpoints(path, "fp", (path,)), init_seed=99, on_resume=restored.append
    )

    assert numbers(resumed) == numbers(whole)  # loss, train and val accuracy, learning rate: every epoch
    assert [numbers(r) for r in restored] == [numbers(whole[:stop_after])]
    assert same_tensors(model.state_dict(), whole_model.state_dict())  # weights and BatchNorm's running stats
    assert same_tensors(optimizer.state_dict(), whole_optimizer.state_dict())  # momentum / Adam's moments
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "other.pt"]  # no temporary file left


def test_a_checkpoint_of_the_last_epoch_resumes_to_the_same_result_without_training(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    whole, whole_model, _ = run("adam", Checkpoints(path, "fp"))
    trained: list[EpochStats] = []
    history = fit_again(path, trained)
    assert numbers(history) == numbers(whole) and trained == []


def fit_again(path: Path, trained: list[EpochStats], fingerprint: str = "fp", epochs: int = EPOCHS) -> list:
    """The test's run once more from ``path``, collecting the epochs it really trains into ``trained``."""
    torch.manual_seed(0)
    model = MLP([16, 8], batchnorm="after", dropout=0.3)
    optimizer = OPTIMIZERS["adam"](list(model.parameters()))
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    return fit(
        model,
        optimizer,
        scheduler,
        toy_split(160),
        toy_split(40, seed=1),
        Normalizer([0.4] * 3, [0.2] * 3),
        epochs=epochs,
        batch_size=32,
        seed=11,
        on_epoch=trained.append,
        checkpoints=Checkpoints(path, fingerprint, (path,)),
    )


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        ("fingerprint", "it was written by a run of another config"),
        ("epochs", f"it has {EPOCHS} epochs done, more than the 3 of this run"),
        ("truncated", "it cannot be read"),
        ("format", "it was written by another version of svhn_sweep"),
    ],
)
def test_a_checkpoint_that_is_not_this_runs_is_never_continued(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str, why: str
) -> None:
    path = tmp_path / "checkpoint.pt"
    run("adam", Checkpoints(path, "fp"))
    if damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    if damage == "format":
        state = torch.load(path, weights_only=True)
        torch.save({**state, "format": 0}, path)
    trained: list[EpochStats] = []
    with caplog.at_level(logging.WARNING):
        fit_again(
            path,
            trained,
            fingerprint="other" if damage == "fingerprint" else "fp",
            epochs=3 if damage == "epochs" else EPOCHS,
        )
    assert [s.epoch for s in trained] == list(range(1, 3 + 1 if damage == "epochs" else EPOCHS + 1))  # from epoch 1
    assert f"Not resuming from {path}: {why}" in caplog.text


# -- the sweep's side: which checkpoint a job continues, what its trial is told ------------------------------------


def trial_overrides(storage: str, number: int, epochs: int, *extra: str) -> list[str]:
    """A trial of the study ``s`` as the sweeper launches it (no pruner: every epoch is trained)."""
    link = ["sweep.study=s", f"sweep.storage='{storage}'", f"sweep.trial={number}", "sweep.pruner=none"]
    return [*link, f"trainer.epochs={epochs}", "model.dropout=0.2", "trainer.device=cpu", *extra]


def test_a_retried_trial_continues_the_interrupted_ones_checkpoint_and_reports_its_epochs_first(
    compose_cfg, small_data: list[str], tmp_path: Path, recwarn: pytest.WarningsRecorder
) -> None:
    """Trial 0 stopped after 2 of 3 epochs (its checkpoint left, as a kill leaves it); trial 1 retries it from its
    folder; trial 2 is requeued in its own folder after 2 epochs; trial 3 runs once. All end alike, bit for bit.
    """
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    for _ in range(4):
        study.ask()
    folder = {n: tmp_path / str(n) for n in range(4)}
    for path in folder.values():
        path.mkdir()  # as Hydra makes each job's folder

    def trial(number: int, epochs: int, *extra: str) -> float:
        cfg = compose_cfg(*small_data, *trial_overrides(storage, number, epochs, *extra))
        return train_and_validate(cfg, folder[number])

    trial(0, 2, "trainer.keep_checkpoints=true")  # a shorter run's checkpoint: trainer.epochs is not its config's
    retried = trial(1, 3, f"sweep.resume_from={folder[0]}")
    trial(2, 2, "trainer.keep_checkpoints=true")
    requeued = trial(2, 3)  # the same trial in the same folder: steps 1 and 2 are reported already
    once = trial(3, 3)

    trials = optuna.load_study(study_name="s", storage=storage).trials
    assert retried == requeued == once
    assert trials[1].intermediate_values == trials[2].intermediate_values == trials[3].intermediate_values
    assert sorted(trials[3].intermediate_values) == [1, 2, 3]
    metrics = {n: json.loads((folder[n] / METRICS_FILE).read_text()) for n in (1, 2, 3)}
    assert [metrics[n]["resumed_epochs"] for n in (1, 2, 3)] == [2, 2, 0]
    assert numbers_of(metrics[1]) == numbers_of(metrics[2]) == numbers_of(metrics[3])
    assert [n for n in range(4) if (folder[n] / CHECKPOINT_FILE).exists()] == [0]  # the finished runs' are gone
    assert not [w for w in recwarn if "already reported" in str(w.message)]


def numbers_of(metrics: dict) -> list[dict]:
    """A metrics.json's epochs without their wall time."""
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in metrics["history"]]


def test_a_checkpoint_of_another_config_is_not_continued_and_the_log_says_so(
    compose_cfg, small_data: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = [*small_data, "trainer.epochs=1", "trainer.device=cpu", "trainer.keep_checkpoints=true"]
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    train_and_validate(compose_cfg(*base, "optimizer.lr=0.05"), tmp_path / "a")
    with caplog.at_level(logging.INFO):
        train_and_validate(
            compose_cfg(*base, "optimizer.lr=0.02", f"sweep.resume_from={tmp_path / 'a'}"), tmp_path / "b"
        )
    assert (
        f"Not resuming from {tmp_path / 'a' / CHECKPOINT_FILE}: it was written by a run of another config"
        in caplog.text
    )
    assert json.loads((tmp_path / "b" / METRICS_FILE).read_text())["resumed_epochs"] == 0


def test_the_fingerprint_leaves_out_what_changes_no_number_of_the_run(compose_cfg) -> None:
    same = fingerprint(compose_cfg("trainer.epochs=4"))
    for override in ("trainer.epochs=9", "sweep.trial=3", "sweep.slot=1", "trainer.quiet=true", "data.root=/x"):
        assert fingerprint(compose_cfg(override)) == same, override
    for override in ("optimizer.lr=0.5", "seed=1", "model.hidden_sizes=[64]", "trainer.batch_size=64"):
        assert fingerprint(compose_cfg(override)) != same, override
    # cosine's length is trainer.epochs: a longer run's learning rates differ from the first epoch on
    assert fingerprint(compose_cfg("scheduler=cosine", "trainer.epochs=4")) != fingerprint(
        compose_cfg("scheduler=cosine", "trainer.epochs=9")
    )


# -- the real command, killed and resumed --------------------------------------------------------------------------


# Epochs long enough (some 50 ms on an idle core) for a signal to land between two checkpoints, in a run that
# resumes twice and still has epochs left.
LONG_EPOCHS = ["trainer.batch_size=16", "model.hidden_sizes=[256]", "model.dropout=0.2"]
EPOCHS_RUN = 20


def saved_epoch(path: Path) -> int:
    """The epoch a checkpoint on disk holds (0 while there is none)."""
    return torch.load(path, weights_only=True)["epoch"] if path.exists() else 0


def stopped_by_sigterm(args: list[str], cwd: Path, checkpoint: str) -> tuple[Path, int]:
    """Start the command, SIGTERM it once a checkpoint matching the ``checkpoint`` pattern is written: that
    checkpoint and the epochs it holds (at least one, fewer than the run's).
    """
    sweep = start_cli(args, cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for(lambda: next(iter(cwd.glob(checkpoint)), None) is not None, sweep, f"a checkpoint {checkpoint}")
    sweep.send_signal(signal.SIGTERM)
    _, stderr = sweep.communicate(timeout=120)
    assert sweep.returncode == 143, stderr[-3000:]
    written = next(cwd.glob(checkpoint))
    stopped_at = saved_epoch(written)
    assert 0 < stopped_at < EPOCHS_RUN
    return written, stopped_at


@pytest.mark.slow
def test_a_single_run_killed_then_stopped_by_sigterm_resumes_each_time_to_the_uninterrupted_result(
    small_data: list[str], tmp_path: Path
) -> None:
    """A single run resumes where its own folder has a checkpoint: ``hydra.run.dir`` fixed, the same command again."""
    args = [*small_data, *LONG_EPOCHS, f"trainer.epochs={EPOCHS_RUN}", "trainer.keep_checkpoints=true"]
    reference = run_cli([*args, "hydra.run.dir=reference"], cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr[-3000:]

    command = [*args, "hydra.run.dir=resumed"]
    checkpoint = tmp_path / "resumed" / CHECKPOINT_FILE
    stopped = []
    for signum in (signal.SIGKILL, signal.SIGTERM):
        before = saved_epoch(checkpoint)
        process = start_cli(command, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(lambda: saved_epoch(checkpoint) > before, process, "a new checkpoint")  # noqa: B023
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == (-9 if signum == signal.SIGKILL else 143), stderr[-3000:]
        stopped.append(saved_epoch(checkpoint))
    assert 0 < stopped[0] < stopped[1] < EPOCHS_RUN, stopped
    resumed = run_cli(command, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    log = (tmp_path / "resumed" / "svhn_sweep.log").read_text()
    assert f"Resuming from {checkpoint}: {stopped[0]} of {EPOCHS_RUN} epochs done" in log
    assert f"Resuming from {checkpoint}: {stopped[1]} of {EPOCHS_RUN} epochs done" in log
    metrics = {run: json.loads((tmp_path / run / METRICS_FILE).read_text()) for run in ("reference", "resumed")}
    assert metrics["resumed"]["resumed_epochs"] == stopped[1]
    assert numbers_of(metrics["resumed"]) == numbers_of(metrics["reference"])  # every epoch, bit for bit
    models = [
        torch.load(tmp_path / run / CHECKPOINT_FILE, weights_only=True)["model"] for run in ("reference", "resumed")
    ]
    assert same_tensors(*models)


@pytest.mark.slow
def test_a_final_step_stopped_by_sigterm_is_continued_by_the_same_command_to_the_uninterrupted_result(
    small_data: list[str], tmp_path: Path
) -> None:
    """The same command writes a new sweep folder; its final step continues the stopped one's checkpoint (the lease
    names its folder). ``svhn-sweep-final`` then retrains the same config uninterrupted, into ``final-2``.
    """
    args = ["--multirun", *small_data, *LONG_EPOCHS, "hydra.sweeper.n_trials=1", "trainer.epochs=1"]
    args += [f"final.epochs={EPOCHS_RUN}", "sweep.pruner=none", "hydra.sweeper.study_name=final-resume"]
    checkpoint, stopped_at = stopped_by_sigterm(args, tmp_path, f"outputs/sweeps/*/final/{CHECKPOINT_FILE}")

    time.sleep(1.1)  # the default sweep folder is named by the second
    again = run_cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"Resuming from {checkpoint}: {stopped_at} of {EPOCHS_RUN} epochs done" in again.stdout
    (final,) = [path.parent for path in tmp_path.glob(f"outputs/sweeps/*/final/{METRICS_FILE}")]
    assert final.parent != checkpoint.parent.parent and not (final / CHECKPOINT_FILE).exists()

    redo = subprocess.run(
        [sys.executable, "-m", "svhn_sweep.final", str(final.parent)],
        cwd=tmp_path,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert redo.returncode == 0, redo.stderr[-3000:]
    assert "Resuming" not in redo.stdout + redo.stderr
    resumed, uninterrupted = (
        json.loads((folder / METRICS_FILE).read_text()) for folder in (final, final.parent / "final-2")
    )
    assert numbers_of(resumed) == numbers_of(uninterrupted) and len(resumed["history"]) == EPOCHS_RUN
    assert resumed["test_accuracy"] == uninterrupted["test_accuracy"]
    models = [torch.load(folder / MODEL_FILE, weights_only=True) for folder in (final, final.parent / "final-2")]
    assert same_tensors(*models)


def test_keep_checkpoints_takes_a_boolean_and_says_so(run_main) -> None:
    result = run_main(["trainer.keep_checkpoints=maybe"])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "trainer.keep_checkpoints=maybe" in result.stderr and "'maybe' is not a valid bool" in result.stderr


def test_the_final_steps_lease_names_the_folder_of_one_stopped_before_its_result(tmp_path: Path) -> None:
    """Given back without a result (a signal), or left by a holder that died: the next holder knows the folder."""
    ref = StudyRef(f"sqlite:///{tmp_path / 'optuna.db'}", "s")
    study = optuna.create_study(storage=ref.storage, study_name="s")

    def lease(folder: str) -> FinalStepLease:
        return FinalStepLease(ref, study, folder, heartbeat_interval=60, grace_period=1)

    stopped = lease("/sweeps/1/final")
    assert stopped.acquire() and stopped.unfinished is None
    stopped.release()  # no result recorded
    assert study.user_attrs[UNFINISHED_ATTR] == "/sweeps/1/final"
    died = lease("/sweeps/2/final")
    assert died.acquire() and died.unfinished == "/sweeps/1/final"
    died._stop.set()  # killed: it beats no more and gives nothing back
    time.sleep(1.5)
    taking_over = lease("/sweeps/3/final")
    assert taking_over.acquire() and taking_over.unfinished == "/sweeps/2/final"
    taking_over.record({"test_accuracy": 0.5})
    taking_over.release()
    assert study.user_attrs[UNFINISHED_ATTR] is None and study.user_attrs[LEASE_ATTR] is None


@pytest.mark.slow
def test_a_trial_stopped_by_sigterm_is_retried_by_the_same_command_from_its_checkpoint_to_the_uninterrupted_value(
    small_data: list[str], tmp_path: Path
) -> None:
    """The sweeper retries the interrupted trial with ``sweep.resume_from`` (its folder): the retry continues its
    checkpoint and ends with the value and the learning curve the same trial has in a sweep never interrupted.
    """
    args = ["--multirun", *small_data, *LONG_EPOCHS, "hydra.sweeper.n_trials=1", f"trainer.epochs={EPOCHS_RUN}"]
    args += ["sweep.pruner=none", "final.enabled=false"]
    interrupted = [*args, "hydra.sweeper.study_name=stopped"]
    checkpoint, stopped_at = stopped_by_sigterm(interrupted, tmp_path, f"outputs/sweeps/*/0/{CHECKPOINT_FILE}")

    time.sleep(1.1)  # the default sweep folder is named by the second
    again = run_cli(interrupted, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    (retry_log,) = tmp_path.glob("outputs/sweeps/*/1/svhn_sweep.log")
    assert f"Resuming from {checkpoint}: {stopped_at} of {EPOCHS_RUN} epochs done" in retry_log.read_text()
    never = run_cli([*args, "hydra.sweeper.study_name=never", "hydra.sweep.dir=never"], cwd=tmp_path)
    assert never.returncode == 0, never.stderr[-3000:]

    storage = f"sqlite:///{tmp_path / 'outputs' / 'optuna.db'}"
    stopped, retry = optuna.load_study(study_name="stopped", storage=storage).trials
    (reference,) = optuna.load_study(study_name="never", storage=storage).trials
    assert retry.params == reference.params == stopped.params
    assert retry.value == reference.value and retry.intermediate_values == reference.intermediate_values
    assert sorted(retry.intermediate_values) == list(range(1, EPOCHS_RUN + 1))
