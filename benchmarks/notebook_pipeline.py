"""Row 1: one epoch of the original course notebook's pipeline, as the notebook writes it.

It is the baseline that every epoch row's speed-up is against: torchvision's SVHN ``__getitem__`` (a PIL image
per sample, then ToTensor + Normalize), DataLoader + SubsetRandomSampler, batch 64, the 1×100 MLP, SGD, and the
notebook's ``train_model`` for one epoch (the training pass, then ``compute_accuracy`` on val). It runs on the
CPU, as the notebook does.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmarks.table import median_seconds
from svhn_sweep.constants import IMAGE_SHAPE, NUM_CLASSES, SVHN_MEAN, SVHN_STD
from svhn_sweep.core.data import Split

NOTEBOOK_BATCH, NOTEBOOK_LR, NOTEBOOK_WEIGHT_DECAY = 64, 1e-2, 1e-1  # the notebook's DataLoader and SGD
VAL_FRACTION = 0.2  # the notebook's share of the train file held out for validation


def notebook_dataset(images: np.ndarray, labels: np.ndarray) -> Dataset:
    """The notebook's dataset: torchvision's own SVHN class with the arrays handed in, its ``__getitem__`` unchanged.

    The real constructor would check the real SVHN files' md5, which the synthetic files do not have.
    """
    from torchvision import transforms
    from torchvision.datasets import SVHN

    class NotebookSVHN(SVHN):
        def __init__(self) -> None:
            normalize = transforms.Normalize(mean=SVHN_MEAN, std=SVHN_STD)
            super(SVHN, self).__init__(root="", transform=transforms.Compose([transforms.ToTensor(), normalize]))
            self.data, self.labels = images, labels

    return NotebookSVHN()


class Flattener(nn.Module):
    """The notebook's flattening layer: (N, C, H, W) to (N, C·H·W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The batch as rows."""
        batch_size, *_ = x.shape
        return x.view(batch_size, -1)


def notebook_train_model(
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    loss: nn.Module,
    optimizer: torch.optim.Optimizer,
    num_epochs: int,
) -> tuple[list[float], list[float], list[float]]:
    """The notebook's ``train_model``, line for line (its per-epoch print left out)."""
    loss_history = []
    train_history = []
    val_history = []
    for _epoch in range(num_epochs):
        model.train()  # Enter train mode

        loss_accum = 0
        correct_samples = 0
        total_samples = 0
        for i_step, (x, y) in enumerate(train_loader):  # noqa: B007 (the notebook reads i_step after the loop)
            prediction = model(x)
            loss_value = loss(prediction, y)
            optimizer.zero_grad()
            loss_value.backward()
            optimizer.step()

            _, indices = torch.max(prediction, 1)
            correct_samples += torch.sum(indices == y)
            total_samples += y.shape[0]

            loss_accum += loss_value

        ave_loss = loss_accum / (i_step + 1)
        train_accuracy = float(correct_samples) / total_samples
        val_accuracy = notebook_compute_accuracy(model, val_loader)

        loss_history.append(float(ave_loss))
        train_history.append(train_accuracy)
        val_history.append(val_accuracy)
    return loss_history, train_history, val_history


def notebook_compute_accuracy(model: nn.Module, loader: DataLoader) -> float:
    """The notebook's ``compute_accuracy`` (the exercise's obvious solution)."""
    model.eval()  # Evaluation mode

    correct_samples = 0
    total_samples = 0
    for _i_step, (x, y) in enumerate(loader):
        prediction = model(x)
        indices = torch.argmax(prediction, 1)
        correct_samples += torch.sum(indices == y)
        total_samples += y.shape[0]

    return float(correct_samples) / total_samples


def notebook_loaders(full: Split) -> tuple[DataLoader, DataLoader]:
    """The notebook's train and val loaders over the train file ``full``: a shuffled split, random samplers."""
    from torch.utils.data.sampler import SubsetRandomSampler

    data_train = notebook_dataset(full.images.numpy(), full.labels.numpy())
    data_size = data_train.data.shape[0]
    split = int(np.floor(VAL_FRACTION * data_size))
    indices = list(range(data_size))
    np.random.seed(0)
    np.random.shuffle(indices)
    train_indices, val_indices = indices[split:], indices[:split]
    train_loader = DataLoader(data_train, batch_size=NOTEBOOK_BATCH, sampler=SubsetRandomSampler(train_indices))
    val_loader = DataLoader(data_train, batch_size=NOTEBOOK_BATCH, sampler=SubsetRandomSampler(val_indices))
    return train_loader, val_loader


def notebook_epoch(full: Split, repeats: int) -> tuple[float, str]:
    """Median seconds of one epoch of the notebook's pipeline over the train file ``full``, and the row's note."""
    train_loader, val_loader = notebook_loaders(full)
    nn_model = nn.Sequential(
        Flattener(), nn.Linear(math.prod(IMAGE_SHAPE), 100), nn.ReLU(inplace=True), nn.Linear(100, NUM_CLASSES)
    )
    nn_model.type(torch.FloatTensor)
    loss = nn.CrossEntropyLoss().type(torch.FloatTensor)
    optimizer = torch.optim.SGD(nn_model.parameters(), lr=NOTEBOOK_LR, weight_decay=NOTEBOOK_WEIGHT_DECAY)
    with warnings.catch_warnings():  # float(ave_loss) of a tensor that requires grad: the notebook's, harmless
        warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad=True")
        seconds = median_seconds(
            lambda: notebook_train_model(nn_model, train_loader, val_loader, loss, optimizer, 1), repeats
        )
    rows = f"{len(train_loader.sampler)} train + {len(val_loader.sampler)} val rows"
    return seconds, f"CPU, as the notebook runs; {rows}"
