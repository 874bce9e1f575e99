"""Where a model goes wrong on a split: predictions against truth, the confusion matrix, the misclassified samples.

The final retrain stores its test predictions in ``final/test_predictions.npz`` (dataset order), so the
analysis and the figures never retrain; the images come back from the data source of ``final/config.yaml``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from torch import nn

from svhn_sweep.config import build
from svhn_sweep.data import DataError, Normalizer, Split
from svhn_sweep.train import predict

N_CLASSES = 10
PREDICTIONS_FILE = "test_predictions.npz"


def evaluate_model(model: nn.Module, data: Split, normalize: Normalizer, batch_size: int = 4096,
                   amp: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true class of every sample of ``data``, in dataset order (the seed's ``evaluate_model``),
    as numpy arrays so the analysis below and a notebook can use them directly.
    """
    return predict(model, data, normalize, batch_size, amp).cpu().numpy(), data.labels.cpu().numpy()


def confusion_matrix(predictions: np.ndarray, truth: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """The seed's confusion matrix: entry [i, j] counts the samples PREDICTED as class i whose TRUTH is class j
    (rows predicted, columns truth; the transpose of scikit-learn's convention).
    """
    return np.bincount(predictions * n_classes + truth, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def top_confusions(matrix: np.ndarray, k: int) -> list[tuple[int, int]]:
    """The ``k`` most frequent mistakes as (predicted, truth) pairs, most frequent first; none that never happen."""
    counts = pd.DataFrame(matrix).stack()
    mistakes = counts[counts.index.get_level_values(0) != counts.index.get_level_values(1)]
    return [(int(predicted), int(truth)) for (predicted, truth), n in mistakes.nlargest(k).items() if n > 0]


def error_indices(predictions: np.ndarray, truth: np.ndarray, predicted: int, true: int) -> np.ndarray:
    """Positions, in dataset order, of the samples predicted as ``predicted`` whose truth is ``true``."""
    return np.flatnonzero((predictions == predicted) & (truth == true))


def load_test_predictions(final_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(predictions, truth) of the final model on the test file, as the final retrain stored them."""
    with np.load(final_dir / PREDICTIONS_FILE) as stored:
        return stored["predictions"], stored["labels"]


def load_test_images(final_dir: Path, truth: np.ndarray) -> np.ndarray:
    """The test images (uint8, N x 3 x 32 x 32, as stored) the final model was scored on, from the data source
    of ``final/config.yaml``; refused when their labels are not the stored ones (the data set changed since).
    """
    test = build(OmegaConf.load(final_dir / "config.yaml").data).load("test")
    if not np.array_equal(test.labels.numpy(), truth):
        raise DataError(f"The test file of {final_dir / 'config.yaml'} no longer matches the labels in "
                        f"{final_dir / PREDICTIONS_FILE}: it was regenerated or replaced after the final retrain.")
    return test.images.numpy()
