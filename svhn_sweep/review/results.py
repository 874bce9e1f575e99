"""A sweep as pandas tables, built from its Optuna study and the trials' ``metrics.json``.

Everything here reads what is there: a sweep that is still running, was interrupted or failed gives the trials
it has (a trial without ``metrics.json`` keeps empty cells), so the tables work at any point of a sweep's life.

    from svhn_sweep.review.results import load_sweep
    trials = load_sweep("outputs/sweeps/2026-11-27_22-42-39")      # or storage=..., study_name=...
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from svhn_sweep.constants import FINAL_DIR, METRICS_FILE
from svhn_sweep.sweep.study import StudyRef

TRIAL_COLUMNS = ["trial", "state", "val_accuracy"]  # then one column per searched parameter, then:
RUN_COLUMNS = ["epochs", "duration_s", "fail_reason", "run_dir"]
HISTORY_COLUMNS = ["trial", "state", "epoch", "loss", "train_acc", "val_acc", "lr", "seconds"]
IMPORTANCE_COLUMNS = ["parameter", "importance"]


def readable_param_names(names: list[str]) -> dict[str, str]:
    """``optimizer.lr`` -> ``lr``, ``model.hidden_sizes`` -> ``hidden_sizes``; the full name where short ones clash."""
    short = {name: name.rsplit(".", 1)[-1] for name in names}
    clashes = {s for s in short.values() if list(short.values()).count(s) > 1}
    return {name: (name if s in clashes else s) for name, s in short.items()}


def open_study(
    sweep_dir: str | Path | None = None, *, storage: str | None = None, study_name: str | None = None
) -> optuna.Study:
    """The study behind a sweep folder (its ``study.yaml``), or named directly by storage URL and study name."""
    if (sweep_dir is None) == (storage is None or study_name is None):
        raise ValueError("Give either a sweep folder or both storage and study_name.")
    ref = StudyRef.from_sweep_dir(Path(sweep_dir)) if sweep_dir is not None else StudyRef(storage, study_name)
    return ref.load()


def load_sweep(
    sweep_dir: str | Path | None = None, *, storage: str | None = None, study_name: str | None = None
) -> pd.DataFrame:
    """The trials table of a study, opened as :func:`open_study` does."""
    return trials_table(open_study(sweep_dir, storage=storage, study_name=study_name))


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial, best val accuracy first: number, state, val accuracy, each searched parameter (readable
    names), epochs run, duration, why it failed, run folder. All of the study's trials, across resumes and workers.
    """
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "duration", "user_attrs"))
    if frame.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS + RUN_COLUMNS)
    params = [c.removeprefix("params_") for c in frame.columns if c.startswith("params_")]
    names = readable_param_names(params)
    # A study whose objective is named (study.set_metric_names, as the sweeper does) has "value_<name>" instead.
    value = f"value_{study.metric_names[0]}" if study.metric_names else "value"
    table = pd.DataFrame({"trial": frame["number"], "state": frame["state"], "val_accuracy": frame[value]})
    for param in params:
        table[names[param]] = frame[f"params_{param}"]
    # A user attribute no trial has set yet is no column of trials_dataframe(): then it is missing (NaN) everywhere.
    missing = pd.Series(float("nan"), index=frame.index)
    run_dirs = frame.get("user_attrs_run_dir", missing)
    table["epochs"] = [(run_metrics(run_dir) or {}).get("epochs") for run_dir in run_dirs]
    table["duration_s"] = frame["duration"].dt.total_seconds().round(2) if "duration" in frame else missing
    table["fail_reason"] = frame.get("user_attrs_fail_reason", missing)
    table["run_dir"] = run_dirs
    return table.sort_values("val_accuracy", ascending=False, na_position="last").reset_index(drop=True)


def importance_table(study: optuna.Study) -> pd.DataFrame:
    """Which searched parameters mattered for val accuracy, most important first (Optuna's default evaluator,
    PED-ANOVA, over the complete trials). It needs two complete trials: with fewer the table is empty and
    ``table.attrs["note"]`` says why, so a young or failed sweep still gets a report.
    """
    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if complete < 2:
        table = pd.DataFrame(columns=IMPORTANCE_COLUMNS)
        table.attrs["note"] = f"Parameter importance needs at least 2 complete trials; the study has {complete}."
        return table
    importances = optuna.importance.get_param_importances(study)
    names = readable_param_names(list(importances))
    table = pd.DataFrame({"parameter": [names[p] for p in importances], "importance": list(importances.values())})
    # Optuna orders ties by a set's iteration order, which changes from process to process: break them by name.
    return table.sort_values(["importance", "parameter"], ascending=[False, True], ignore_index=True)


def history_table(study: optuna.Study) -> pd.DataFrame:
    """Per-epoch records of every trial that wrote ``metrics.json``, long format (one row per trial and epoch)
    for plotting learning curves; trials without a run folder or ``metrics.json`` have no rows.
    """
    frames = [
        pd.DataFrame(metrics["history"]).assign(trial=trial.number, state=trial.state.name)
        for trial in study.get_trials(deepcopy=False)
        if (metrics := run_metrics(trial.user_attrs.get("run_dir"))) and metrics["history"]
    ]
    if not frames:
        return pd.DataFrame(columns=HISTORY_COLUMNS)
    return pd.concat(frames, ignore_index=True)[HISTORY_COLUMNS]


def final_metrics(sweep_dir: str | Path) -> pd.Series | None:
    """The final retrain of a sweep folder (test accuracy, what it was trained on, which trial), kept apart from
    the trials because it is scored on the test file; None while the sweep has no final retrain.
    """
    metrics = run_metrics(Path(sweep_dir) / FINAL_DIR)
    if metrics is None:
        return None
    return pd.Series({key: value for key, value in metrics.items() if key != "history"}, name="final")


def run_metrics(run_dir: str | Path | None) -> dict[str, Any] | None:
    """A run folder's ``metrics.json``; None when the run has not written it (yet, or ever)."""
    if not isinstance(run_dir, str | Path):
        return None
    try:
        return json.loads((Path(run_dir) / METRICS_FILE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):  # not written, or caught while being written
        return None
