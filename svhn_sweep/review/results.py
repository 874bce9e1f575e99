"""A sweep as pandas tables, built from its Optuna study and the trials' ``metrics.json``.

Everything here reads what is there: a sweep that is still running, was interrupted or failed gives the trials
it has (a trial without ``metrics.json`` keeps empty cells), so the tables work at any point of a sweep's life.

    from svhn_sweep.review.results import load_sweep
    trials = load_sweep("outputs/sweeps/2026-11-27_22-42-39")      # or storage=..., study_name=...
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import TrialState

from svhn_sweep.constants import COMPOSED_ATTR, ENQUEUED_ATTR, FINAL_DIR, METRICS_FILE, RUN_DIR_ATTR
from svhn_sweep.sweep.retries import retried_attempt
from svhn_sweep.sweep.study import StudyRef

TRIAL_COLUMNS = ["trial", "state", "val_accuracy"]  # then one column per searched parameter (and composed value):
RUN_COLUMNS = ["enqueued", "epochs", "duration_s", "fail_reason", "retry_of", "run_dir"]
HISTORY_COLUMNS = ["trial", "state", "epoch", "loss", "train_acc", "val_acc", "lr", "seconds"]
IMPORTANCE_COLUMNS = ["parameter", "importance"]
# Row order of every trials table: complete trials first, then pruned ones (their value is the accuracy when they
# were stopped, after fewer epochs: not comparable with a finished trial's), then failed and unfinished ones.
STATE_ORDER = ["COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING"]


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
    """One row per trial in :data:`STATE_ORDER`, best val accuracy first within a state: number, state, val
    accuracy, each searched parameter (readable names), epochs run, duration, why it failed, run folder. All of
    the study's trials, across resumes and workers.
    """
    frame = study.trials_dataframe(attrs=("number", "state", "params", "duration", "user_attrs"))
    if frame.empty:
        return pd.DataFrame(columns=TRIAL_COLUMNS + RUN_COLUMNS)
    # A user attribute no trial has set yet is no column of trials_dataframe(): then it is missing (NaN) everywhere.
    missing = pd.Series(float("nan"), index=frame.index)
    columns = {c.removeprefix("params_"): frame[c] for c in frame.columns if c.startswith("params_")}
    # Values a search space hook composed from its parameters (model.hidden_sizes from layer widths), as overrides.
    composed = frame.get(f"user_attrs_{COMPOSED_ATTR}", missing)
    for key in dict.fromkeys(k for values in composed if isinstance(values, dict) for k in values):
        columns[key] = pd.Series(
            [_override_text(v[key]) if isinstance(v, dict) and key in v else None for v in composed], index=frame.index
        )
    names = readable_param_names(list(columns))
    # The objectives from the trials themselves: val accuracy first, the parameter count in a two-objective study.
    by_number = {t.number: t.values or [] for t in study.get_trials(deepcopy=False)}
    values = [by_number.get(number, []) for number in frame["number"]]
    table = pd.DataFrame({"trial": frame["number"], "state": frame["state"]})
    table["val_accuracy"] = [v[0] if v else None for v in values]
    if len(study.directions) > 1:
        table["n_params"] = pd.array([int(v[1]) if len(v) > 1 else None for v in values], dtype="Int64")
    for key, values in columns.items():
        table[names[key]] = values
    table["enqueued"] = frame.get(f"user_attrs_{ENQUEUED_ATTR}", missing).eq(True)
    ref = StudyRef.of(study)
    run_dirs = frame.get("user_attrs_run_dir", missing).map(lambda d: str(ref.run_dir(d)) if isinstance(d, str) else d)
    table["epochs"] = [(run_metrics(run_dir) or {}).get("epochs") for run_dir in run_dirs]
    table["duration_s"] = frame["duration"].dt.total_seconds().round(2) if "duration" in frame else missing
    table["fail_reason"] = frame.get("user_attrs_fail_reason", missing)
    # The interrupted attempt a trial tried again (Optuna's retry_history), e.g. after Ctrl-C or a lost job.
    retried = {t.number: retried_attempt(t) for t in study.get_trials(deepcopy=False)}
    table["retry_of"] = pd.array([retried.get(n) for n in frame["number"]], dtype="Int64")
    table["run_dir"] = run_dirs
    return ranked(table)


def ranked(table: pd.DataFrame) -> pd.DataFrame:
    """Rows in :data:`STATE_ORDER`, best val accuracy first within a state, then by trial number."""
    rank = table["state"].map({state: i for i, state in enumerate(STATE_ORDER)}).fillna(len(STATE_ORDER))
    order = table.assign(_rank=rank, _neg=-table["val_accuracy"].astype(float))
    order = order.sort_values(["_rank", "_neg", "trial"], na_position="last", kind="stable")
    return table.loc[order.index].reset_index(drop=True)


def _override_text(value: Any) -> Any:
    """A composed list as the search space writes its choices (``[512,64]``), so both spaces' columns compare."""
    return "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else value


def pareto_table(trials: pd.DataFrame, study: optuna.Study) -> pd.DataFrame:
    """The trials of a two-objective study that no other trial beats on both val accuracy and parameter count,
    smallest first: what each extra parameter buys. Empty for a single-objective study.
    """
    if len(study.directions) < 2:
        return trials.iloc[0:0]
    front = {t.number for t in study.best_trials}
    return trials[trials["trial"].isin(front)].sort_values(["n_params", "trial"], ignore_index=True)


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
    # Two objectives: the importances for val accuracy (PED-ANOVA looks for low target values: negated).
    target = (lambda t: -t.values[0]) if len(study.directions) > 1 else None
    with warnings.catch_warnings():  # PED-ANOVA's reminder that it minimises a target: negated above
        warnings.filterwarnings("ignore", message="PedAnovaImportanceEvaluator computes")
        importances = optuna.importance.get_param_importances(study, target=target)
    names = readable_param_names(list(importances))
    table = pd.DataFrame({"parameter": [names[p] for p in importances], "importance": list(importances.values())})
    # Optuna orders ties by a set's iteration order, which changes from process to process: break them by name.
    return table.sort_values(["importance", "parameter"], ascending=[False, True], ignore_index=True)


def history_table(study: optuna.Study) -> pd.DataFrame:
    """Per-epoch records of every trial that wrote ``metrics.json``, long format (one row per trial and epoch)
    for plotting learning curves; trials without a run folder or ``metrics.json`` have no rows.
    """
    ref = StudyRef.of(study)
    frames = [
        pd.DataFrame(metrics["history"]).assign(trial=trial.number, state=trial.state.name)
        for trial in study.get_trials(deepcopy=False)
        if (recorded := trial.user_attrs.get(RUN_DIR_ATTR))
        and (metrics := run_metrics(ref.run_dir(recorded)))
        and metrics["history"]
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
