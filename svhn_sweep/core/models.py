"""The classifiers a sweep can tune; both take normalised (N, 3, 32, 32) float images."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

from torch import nn

from svhn_sweep.constants import IMAGE_SHAPE, NUM_CLASSES


class BatchNormPlacement(str, Enum):
    """Where an MLP puts BatchNorm1d relative to the activation of each hidden layer."""

    none = "none"
    before = "before"
    after = "after"


class MLP(nn.Sequential):
    """The notebook's fully connected net: flatten, then Linear -> (BN) -> ReLU -> (BN) -> (Dropout) per layer."""

    def __init__(self, hidden_sizes: Sequence[int], batchnorm: str = "none", dropout: float = 0.0) -> None:
        placement = BatchNormPlacement(batchnorm)
        layers: list[nn.Module] = [nn.Flatten()]
        width = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            if placement is BatchNormPlacement.before:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU(inplace=True))
            if placement is BatchNormPlacement.after:
                layers.append(nn.BatchNorm1d(size))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, NUM_CLASSES))
        super().__init__(*layers)


class CNN(nn.Sequential):
    """A small conv net for users who want more than an MLP can give: conv-BN-ReLU-pool blocks."""

    def __init__(self, channels: Sequence[int] = (32, 64, 128), dropout: float = 0.0) -> None:
        layers: list[nn.Module] = []
        in_channels = IMAGE_SHAPE[0]
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = out_channels
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(in_channels, NUM_CLASSES))
        super().__init__(*layers)
