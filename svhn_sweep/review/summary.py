"""A sweep's report as text: the best trials, the parameter importances and the final test accuracy."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from svhn_sweep.constants import FINAL_DIR
from svhn_sweep.review.results import final_metrics, importance_table
from svhn_sweep.sweep.lease import RESULT_ATTR


def summary(study: optuna.Study, trials: pd.DataFrame, sweep_dir: Path, top: int = 10) -> str:
    """The report as text: the ``top`` of the study's ``trials`` (its :func:`trials_table`) by val accuracy, the
    parameter importances, and the final result of the sweep folder.
    """
    states = ", ".join(f"{n} {state}" for state, n in trials["state"].value_counts().items())
    lines = [
        f"Trials of study {study.study_name} (best first; all of its trials, across resumes and workers): "
        f"{len(trials)} trials{': ' + states if states else ''}"
    ]
    if len(trials):
        lines.append(printable(trials).head(top).to_string(index=False, float_format="{:.4g}".format))
    importance = importance_table(study)
    lines += [
        "",
        "Parameter importances (PED-ANOVA over the complete trials):",
        importance.attrs["note"] if importance.empty else importance.to_string(index=False, float_format="%.3f"),
    ]
    final = final_metrics(sweep_dir)
    lines += ["", final_line(study.user_attrs.get(RESULT_ATTR) if final is None else final, trials, sweep_dir)]
    return "\n".join(lines)


def printable(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials table for people: without the long run-folder paths, and blank where a trial has no value."""
    table = trials.drop(columns=["run_dir"])
    return table.astype(object).where(table.notna(), "")


def final_line(final: Mapping[str, Any] | None, trials: pd.DataFrame, sweep_dir: Path) -> str:
    """One sentence on the final step: which trial, trained on what, its test accuracy, and where it is when that
    is not ``sweep_dir`` (the study's record of another worker's, or an earlier command's, final step).
    """
    if final is None:
        return (
            f"No final retrain in {sweep_dir} (yet): it runs when the sweep finishes, in the folder of the "
            "worker that finishes it."
        )
    val = trials.set_index("trial")["val_accuracy"].get(final.get("trial")) if len(trials) else None
    origin = f"trial {final['trial']}, val accuracy {val:.4f}" if val is not None else f"trial {final['trial']}"
    elsewhere = final.get("final_dir")
    return (
        f"Best config ({origin}) retrained on {final['trained_on']} ({final['train_size']} images) and scored "
        f"once on the test file ({final['test_size']} images): test accuracy {final['test_accuracy']:.4f}"
        + (f", in {elsewhere}" if elsewhere and Path(elsewhere) != (sweep_dir / FINAL_DIR).resolve() else "")
    )
