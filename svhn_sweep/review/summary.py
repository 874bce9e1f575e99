"""A sweep's report as text: the best trials, the parameter importances and the final test accuracy."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from svhn_sweep.constants import FINAL_DIR
from svhn_sweep.review.results import (
    IMPORTANCE_EVALUATOR,
    final_folder,
    importance_table,
    pareto_table,
    run_metrics,
)
from svhn_sweep.sweep.lease import RESULT_ATTR


def summary(
    study: optuna.Study, trials: pd.DataFrame, sweep_dir: Path, top: int = 10, final_dir: str | Path | None = None
) -> str:
    """The report as text: the ``top`` of the study's ``trials`` (its :func:`trials_table`) by val accuracy, the
    parameter importances, and the final result (the study's, or ``final_dir``: see :func:`final_folder`).
    """
    states = ", ".join(f"{n} {state}" for state, n in trials["state"].value_counts().items())
    lines = [
        f"Trials of study {study.study_name} (best first; all of its trials, across resumes and workers): "
        f"{len(trials)} trials{': ' + states if states else ''}"
    ]
    if len(trials):
        lines.append(printable(trials).head(top).to_string(index=False, float_format="{:.4g}".format))
    front = pareto_table(trials, study)
    if len(front):
        lines += [
            "",
            "Pareto front (no other trial has both a higher val accuracy and fewer parameters), smallest first:",
            printable(front).to_string(index=False, float_format="{:.4g}".format),
        ]
    importance = importance_table(study)
    lines += [
        "",
        f"Parameter importances ({IMPORTANCE_EVALUATOR} over the complete trials):",
        importance.attrs["note"] if importance.empty else importance.to_string(index=False, float_format="%.3f"),
    ]
    folder = final_folder(sweep_dir, final_dir, study)
    # The folder's metrics; where it is not on this machine, what the study recorded of it.
    final = run_metrics(folder) if folder is not None else None
    if final is None and final_dir is not None:
        lines += ["", f"No final retrain in {folder}."]
    else:
        lines += ["", final_line(final or study.user_attrs.get(RESULT_ATTR), trials, sweep_dir, folder)]
    return "\n".join(lines)


def printable(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials table for people: without the long run-folder paths, blank where a trial has no value, and
    ``yes`` only on enqueued trials (the reference the search is measured against).
    """
    table = trials.drop(columns=["run_dir"]).assign(enqueued=trials["enqueued"].map({True: "yes", False: None}))
    return table.astype(object).where(table.notna(), "")


def final_line(final: Mapping[str, Any] | None, trials: pd.DataFrame, sweep_dir: Path, folder: Path | None) -> str:
    """One sentence on the final step: which trial, trained on what, its test accuracy, and its ``folder`` when
    that is not ``sweep_dir/final`` (a redone final step, ``final-2``; another worker's or command's).
    """
    if final is None:
        return (
            f"No final retrain in {sweep_dir} (yet): it runs when the sweep finishes, in the folder of the "
            "worker that finishes it."
        )
    row = trials.set_index("trial").reindex([final.get("trial")]).iloc[0]
    origin = (
        f"trial {final['trial']}, val accuracy {row['val_accuracy']:.4f} after {row['epochs']:.0f} epochs"
        if pd.notna(row["val_accuracy"]) and pd.notna(row["epochs"])
        else f"trial {final['trial']}"
    )
    chosen = "Best config" if final.get("select", "best") == "best" else f"Config chosen by {final['select']}"
    elsewhere = folder is not None and folder.resolve() != (Path(sweep_dir) / FINAL_DIR).resolve()
    return (
        f"{chosen} ({origin}) retrained for {final['epochs']} epochs on {final['trained_on']} "
        f"({final['train_size']} images) and scored "
        f"once on the test file ({final['test_size']} images): test accuracy {final['test_accuracy']:.4f}"
        + (f", in {folder.resolve()}" if elsewhere else "")
    )
