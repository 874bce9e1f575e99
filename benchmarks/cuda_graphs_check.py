"""The GPU row "CUDA graphs change no number": ``fit`` trains to the same parameters with and without graphs.

Not a timing but the check behind the graph rows' speed-ups: the largest parameter difference, fp32, after two
epochs, for two set-ups. SGD with momentum and a BatchNorm MLP under a step schedule (the learning rate changes
between the epochs, so the second epoch's graph is a new capture), and AdamW. With graphs, AdamW runs capturable
(its step count on the device), so the graph is compared with eager capturable AdamW; how far the capturable
arithmetic itself lands from the default one is in the note.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from svhn_sweep.constants import SVHN_MEAN, SVHN_STD
from svhn_sweep.core.data import Normalizer, Split
from svhn_sweep.core.models import MLP
from svhn_sweep.core.train import fit, make_capturable


@dataclass(frozen=True)
class Setup:
    """What one comparison trains: its model, optimizer and scheduler, each made afresh for every run."""

    model: Callable[[], nn.Module]
    optimizer: Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer]
    scheduler: Callable[[torch.optim.Optimizer], LRScheduler | None] = lambda optimizer: None


SETUPS = {
    "SGD+momentum, BatchNorm, StepLR": Setup(
        lambda: MLP([256, 128], batchnorm="after"),
        lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4),
        lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5),
    ),
    "AdamW": Setup(lambda: MLP([100]), lambda params: torch.optim.AdamW(params, lr=1e-3)),
}


def train_two_epochs(
    setup: Setup, train: Split, val: Split, batch_size: int, *, capturable: bool, graphs: bool
) -> tuple[list[tuple[float, float | None]], list[torch.Tensor]]:
    """Two fp32 epochs of ``fit`` from seed 0: each epoch's (loss, val accuracy), and the final parameters."""
    device = train.labels.device
    torch.manual_seed(0)
    model = setup.model().to(device)
    optimizer = setup.optimizer(model.parameters())
    if capturable:
        make_capturable(optimizer)
    normalize = Normalizer(SVHN_MEAN, SVHN_STD, device)
    scheduler = setup.scheduler(optimizer)
    history = fit(
        model, optimizer, scheduler, train, val, normalize, 2, batch_size, seed=0, amp=False, cuda_graphs=graphs
    )
    return [(h.loss, h.val_acc) for h in history], [p.detach().clone() for p in model.parameters()]


def max_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Largest absolute difference between two lists of parameters."""
    return max((x - y).abs().max().item() for x, y in zip(a, b, strict=True))


def graph_difference(train: Split, val: Split, batch_size: int) -> tuple[float, str]:
    """Largest parameter difference between ``fit`` with and without CUDA graphs over every set-up, and a note."""
    worst, notes = 0.0, []
    for name, setup in SETUPS.items():
        eager, eager_params = train_two_epochs(setup, train, val, batch_size, capturable=True, graphs=False)
        graphed, graphed_params = train_two_epochs(setup, train, val, batch_size, capturable=True, graphs=True)
        difference = max_difference(eager_params, graphed_params)
        worst = max(worst, difference)
        note = (
            f"{name}: max |Δparam| {difference:.2g}, loss and val accuracy "
            f"{'identical' if eager == graphed else 'differ'}"
        )
        if name == "AdamW":
            _, default_params = train_two_epochs(setup, train, val, batch_size, capturable=False, graphs=False)
            arithmetic = max_difference(eager_params, default_params)
            note += f" (eager capturable vs default AdamW: max |Δparam| {arithmetic:.2g})"
        notes.append(note)
    return worst, "; ".join(notes)
