"""Per-epoch checkpoints in ``fit``: a run stopped after epoch k and resumed ends bit for bit where the same run
never stopped does (dropout, BatchNorm, StepLR, SGD with momentum and Adam), and a saved state that is not this
run's is never continued (issue 18).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from svhn_sweep.core.checkpoint import Checkpoints
from svhn_sweep.core.data import Normalizer
from svhn_sweep.core.models import MLP
from svhn_sweep.core.train import EpochStats, fit
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
