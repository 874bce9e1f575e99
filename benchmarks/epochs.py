"""The fit rows: seconds per epoch of ``svhn_sweep.core.train.fit``, the package's training path.

Each row trains a fresh model, with the notebook's SGD, for 1 + ``repeats`` epochs (training pass and val) and
shows the median of the epochs after the first: the first pays once for what a trial also pays once (allocations,
cuDNN's choice of kernels, ``torch.compile``), except in the compile row, which shows that first epoch. An epoch
is one long run that ``fit`` already times (``EpochStats.seconds``), so these rows read ``fit``'s own clock;
``torch.utils.benchmark`` would have to re-run whole trainings to warm up and repeat.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmarks.notebook_pipeline import NOTEBOOK_LR, NOTEBOOK_WEIGHT_DECAY
from svhn_sweep.constants import SVHN_MEAN, SVHN_STD
from svhn_sweep.core.data import Normalizer, Split
from svhn_sweep.core.models import MLP
from svhn_sweep.core.train import fit, use_amp, use_cuda_graphs


def notebook_mlp() -> MLP:
    """The notebook's model, a 1×100 MLP, as svhn_sweep builds it."""
    return MLP([100])


def precision(amp: bool) -> str:
    """How a row names its arithmetic."""
    return "bf16 autocast" if amp else "fp32"


@dataclass(frozen=True)
class Epochs:
    """Epochs of ``fit`` on one train/val split already on the device, ``repeats`` of them timed after the first."""

    train: Split
    val: Split
    repeats: int

    @property
    def device(self) -> torch.device:
        """Where the split, and so the training, is."""
        return self.train.labels.device

    @property
    def amp(self) -> bool:
        """What ``trainer.amp=auto`` does on this device: bf16 autocast where it has bf16 matrix units."""
        return use_amp("auto", self.device)

    def seconds(
        self,
        make_model: Callable[[], nn.Module],
        batch_size: int,
        *,
        amp: bool,
        cuda_graphs: bool,
        compile_model: bool = False,
    ) -> list[float]:
        """Seconds of each of the 1 + ``repeats`` epochs, the first (warm-up, compile) first."""
        torch.manual_seed(0)
        model = make_model().to(self.device)
        optimizer = torch.optim.SGD(model.parameters(), lr=NOTEBOOK_LR, weight_decay=NOTEBOOK_WEIGHT_DECAY)
        normalize = Normalizer(SVHN_MEAN, SVHN_STD, self.device)
        history = fit(
            model,
            optimizer,
            None,
            self.train,
            self.val,
            normalize,
            1 + self.repeats,
            batch_size,
            seed=0,
            amp=amp,
            compile_model=compile_model,
            cuda_graphs=cuda_graphs,
        )
        return [stats.seconds for stats in history]

    def later(
        self,
        make_model: Callable[[], nn.Module],
        batch_size: int,
        *,
        amp: bool | None = None,
        cuda_graphs: bool | None = None,
    ) -> tuple[float, str]:
        """Median seconds of the epochs after the first, and the row's note: device, precision, CUDA graphs.

        ``amp`` and ``cuda_graphs`` default to what the trainer's ``auto`` settings do on this device.
        """
        amp = self.amp if amp is None else amp
        cuda_graphs = use_cuda_graphs("auto", self.device) if cuda_graphs is None else cuda_graphs
        seconds = self.seconds(make_model, batch_size, amp=amp, cuda_graphs=cuda_graphs)
        note = f"{self.device.type}, {precision(amp)}"
        if self.device.type == "cuda":
            note += f", CUDA graphs {'on' if cuda_graphs else 'off'}"
        return statistics.median(seconds[1:]), note

    def first_compiled(self, make_model: Callable[[], nn.Module], batch_size: int) -> tuple[float, str]:
        """Seconds of the first epoch under ``torch.compile``, compile included; the later ones in the note."""
        seconds = self.seconds(make_model, batch_size, amp=self.amp, cuda_graphs=False, compile_model=True)
        return seconds[0], f"later epochs {statistics.median(seconds[1:]):.3f} s"
