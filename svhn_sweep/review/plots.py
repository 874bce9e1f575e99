"""The figures of a sweep, written as PNGs into ``<sweep>/plots/``.

Built on matplotlib's object API (``Figure``, no pyplot), so they draw headless, with no global backend or
figure state, inside Hydra's callback as well as in a notebook. Each figure function returns the Figure;
:func:`write_plots` draws what a sweep folder has the data for and saves it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from omegaconf import OmegaConf

from svhn_sweep.constants import CONFIG_FILE, PLOTS_DIR, PREDICTIONS_FILE
from svhn_sweep.core.data import DataError
from svhn_sweep.core.evaluation import confusion_matrix, error_indices, load_test_predictions, top_confusions
from svhn_sweep.review.results import (
    IMPORTANCE_EVALUATOR,
    final_folder,
    history_table,
    importance_table,
    pareto_table,
    trials_table,
)
from svhn_sweep.sweep.config import build

log = logging.getLogger(__name__)


def optimization_history(trials: pd.DataFrame) -> Figure:
    """Val accuracy of each trial by trial number, with the running best of the complete ones: is the search
    still finding better configs, or has it settled?
    """
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    by_number = trials.sort_values("trial")
    for state, group in by_number.dropna(subset=["val_accuracy"]).groupby("state"):
        ax.scatter(group["trial"], group["val_accuracy"], label=f"{state.lower()} trial", alpha=0.8)
    complete = by_number[by_number["state"] == "COMPLETE"]
    ax.step(complete["trial"], complete["val_accuracy"].cummax(), where="post", color="black", label="best so far")
    ax.set(xlabel="trial", ylabel="val accuracy", title="Optimisation history (pruned: accuracy when stopped)")
    ax.legend()
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def pareto_front(trials: pd.DataFrame, front: pd.DataFrame) -> Figure:
    """Val accuracy against parameter count of the complete trials, the Pareto front joined: the smallest net
    for each accuracy.
    """
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    complete = trials[trials["state"] == "COMPLETE"]
    ax.scatter(complete["n_params"], complete["val_accuracy"], alpha=0.5, label="complete trial")
    ax.step(front["n_params"], front["val_accuracy"], where="post", color="black", marker="o", label="Pareto front")
    for row in front.itertuples():
        ax.annotate(str(row.trial), (row.n_params, row.val_accuracy), textcoords="offset points", xytext=(4, -10))
    ax.set(xscale="log", xlabel="parameters", ylabel="val accuracy", title="Accuracy against size (trial numbers)")
    ax.legend()
    return fig


def param_importances(importance: pd.DataFrame) -> Figure:
    """The importance table as bars, most important on top."""
    fig = Figure(figsize=(7, 0.4 * len(importance) + 1.5), layout="constrained")
    ax = fig.add_subplot()
    importance.set_index("parameter")["importance"].iloc[::-1].plot.barh(ax=ax)
    ax.set(
        xlabel=f"importance for val accuracy ({IMPORTANCE_EVALUATOR}, complete trials)",
        ylabel="",
        title="Parameter importances",
    )
    return fig


def learning_curves(history: pd.DataFrame, trials: Sequence[int]) -> Figure:
    """Loss and accuracy per epoch of the given trials: whether they still improve (more epochs would help) and
    how far train and val accuracy part (over-fitting).
    """
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    loss_ax, acc_ax = fig.subplots(1, 2)
    curves = history[history["trial"].isin(trials)].pivot(index="epoch", columns="trial")
    order = [trial for trial in trials if trial in curves["loss"].columns]  # best first, as in the table
    curves["loss"][order].plot(ax=loss_ax, marker="o", logy=True, title="Training loss", ylabel="loss (log)")
    curves["val_acc"][order].plot(ax=acc_ax, marker="o", ylabel="accuracy", title="Accuracy (solid val, dashed train)")
    colors = [line.get_color() for line in acc_ax.get_lines()]
    curves["train_acc"][order].plot(ax=acc_ax, style="--", color=colors, legend=False)
    for ax in (loss_ax, acc_ax):
        ax.legend([f"trial {trial}" for trial in order])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def confusion_matrix_figure(matrix: np.ndarray) -> Figure:
    """The confusion matrix with its counts in the cells: rows predicted, columns truth, as the notebook defines it."""
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues")
    for (predicted, truth), count in np.ndenumerate(matrix):
        ax.text(
            truth,
            predicted,
            str(count),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if count > matrix.max() / 2 else "black",
        )
    classes = range(len(matrix))
    ax.set(
        xticks=classes,
        yticks=classes,
        xlabel="truth",
        ylabel="predicted",
        title=f"Final model on the test file: {matrix.trace()} of {matrix.sum()} right",
    )
    fig.colorbar(image, ax=ax, label="test images")
    return fig


def error_gallery(
    images: np.ndarray, predictions: np.ndarray, truth: np.ndarray, predicted: int, true: int, max_images: int = 12
) -> Figure:
    """A strip of the test images predicted as ``predicted`` whose truth is ``true`` (first ones in dataset
    order), shown as stored (uint8 RGB, not normalised), each titled with its index in the test file.
    """
    index = error_indices(predictions, truth, predicted, true)
    shown = index[:max_images]
    fig = Figure(figsize=(1.1 * max(len(shown), 4), 1.9), layout="constrained")
    axes = fig.subplots(1, max(len(shown), 1), squeeze=False)[0]
    for ax, sample in zip(axes, shown, strict=False):
        ax.imshow(images[sample].transpose(1, 2, 0))
        ax.set_title(f"#{sample}", fontsize=7)
    for ax in axes:
        ax.set_axis_off()
    more = f", first {len(shown)} shown" if len(shown) < len(index) else ""
    fig.suptitle(f"Predicted {predicted}, really {true}: {len(index)} test images{more}")
    return fig


def load_test_images(final_dir: Path, truth: np.ndarray) -> np.ndarray:
    """The test images (uint8, N x 3 x 32 x 32, as stored) the final model was scored on, from the data source
    of ``final/config.yaml``; refused when their labels are not the stored ones (the data set changed since).
    """
    test = build(OmegaConf.load(final_dir / CONFIG_FILE).data).load("test")
    if not np.array_equal(test.labels.numpy(), truth):
        raise DataError(
            f"The test file of {final_dir / CONFIG_FILE} no longer matches the labels in "
            f"{final_dir / PREDICTIONS_FILE}: it was regenerated or replaced after the final retrain."
        )
    return test.images.numpy()


def write_plots(
    sweep_dir: Path,
    study: optuna.Study,
    pairs: Sequence[tuple[int, int]] = (),
    top: int = 5,
    confusions: int = 3,
    final_dir: str | Path | None = None,
) -> list[Path]:
    """Draw into ``<sweep>/plots/`` every figure the folder has the data for: the optimisation history, the
    importances (from 2 complete trials), the learning curves of the ``top`` trials; after the final retrain
    (the study's, or ``final_dir``: see :func:`~svhn_sweep.review.results.final_folder`), the confusion matrix
    and the error galleries of its ``confusions`` most frequent mistakes and of ``pairs`` (predicted, truth).
    Returns the files written.
    """
    trials = trials_table(study, sweep_dir)
    figures = {"optimization_history": optimization_history(trials)}
    front = pareto_table(trials, study)
    if len(front):
        figures["pareto_front"] = pareto_front(trials, front)
    importance = importance_table(study)
    if importance.empty:
        log.info("No importance plot: %s", importance.attrs["note"])
    else:
        figures["param_importances"] = param_importances(importance)
    best = trials.loc[trials["state"] == "COMPLETE", "trial"].head(top).tolist()
    history = history_table(study, sweep_dir)
    if best and history["trial"].isin(best).any():
        figures["learning_curves"] = learning_curves(history, best)

    final = final_folder(sweep_dir, final_dir, study)
    if final is not None and (final / PREDICTIONS_FILE).exists():
        predictions, truth = load_test_predictions(final)
        matrix = confusion_matrix(predictions, truth)
        figures["confusion_matrix"] = confusion_matrix_figure(matrix)
        images = load_test_images(final, truth)
        for predicted, true in dict.fromkeys([*top_confusions(matrix, confusions), *pairs]):
            figures[f"errors_pred{predicted}_truth{true}"] = error_gallery(images, predictions, truth, predicted, true)
    elif pairs or final_dir is not None:
        missing = f"No {final / PREDICTIONS_FILE}" if final else f"The study of {sweep_dir} records no final step"
        raise FileNotFoundError(
            f"{missing}: the confusion matrix and the error galleries need the final retrain's test predictions; "
            "it runs when the sweep finishes."
        )

    out = Path(sweep_dir) / PLOTS_DIR
    out.mkdir(exist_ok=True)
    paths = [out / f"{name}.png" for name in figures]
    for path, fig in zip(paths, figures.values(), strict=True):
        fig.savefig(path, dpi=100)
    return paths
