"""Where a model goes wrong on a split: predictions against truth, the confusion matrix, the misclassified samples.

The final retrain stores its test predictions in ``final/test_predictions.npz`` (dataset order), so the
analysis and the figures never retrain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from torch import nn

from svhn_sweep.constants import NUM_CLASSES, PREDICTIONS_FILE
from svhn_sweep.core.data import Normalizer, Split
from svhn_sweep.core.train import EVAL_BATCH_SIZE, predict


def evaluate_model(
    model: nn.Module, data: Split, normalize: Normalizer, batch_size: int = EVAL_BATCH_SIZE, amp: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted and true class of every sample of ``data``, in dataset order (the notebook's ``evaluate_model``),
    as numpy arrays so the analysis below and a notebook can use them directly.
    """
    return predict(model, data, normalize, batch_size, amp).cpu().numpy(), data.labels.cpu().numpy()


def confusion_matrix(predictions: np.ndarray, truth: np.ndarray, n_classes: int = NUM_CLASSES) -> np.ndarray:
    """The notebook's confusion matrix: entry [i, j] counts the samples PREDICTED as class i whose TRUTH is class j
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
