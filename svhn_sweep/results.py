"""A sweep as pandas tables, built from its Optuna study and the trials' ``metrics.json``."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pandas as pd

from svhn_sweep.study import StudyRef


def readable_param_names(names: list[str]) -> dict[str, str]:
    """``optimizer.lr`` -> ``lr``, ``model.hidden_sizes`` -> ``hidden_sizes``; the full name where short ones clash."""
    short = {name: name.rsplit(".", 1)[-1] for name in names}
    clashes = {s for s in short.values() if list(short.values()).count(s) > 1}
    return {name: (name if s in clashes else s) for name, s in short.items()}


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, val accuracy, each searched parameter, epochs run, duration, run folder."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "params", "duration", "user_attrs"))
    params = [c.removeprefix("params_") for c in frame.columns if c.startswith("params_")]
    names = readable_param_names(params)
    table = pd.DataFrame({"trial": frame["number"], "state": frame["state"], "val_accuracy": frame["value"]})
    for param in params:
        table[names[param]] = frame[f"params_{param}"]
    run_dirs = frame.get("user_attrs_run_dir", pd.Series([None] * len(frame)))
    table["epochs"] = [_epochs_run(run_dir) for run_dir in run_dirs]
    table["duration_s"] = frame["duration"].dt.total_seconds().round(2) if "duration" in frame else None
    table["fail_reason"] = frame.get("user_attrs_fail_reason")
    table["run_dir"] = run_dirs
    return table.sort_values("val_accuracy", ascending=False, na_position="last").reset_index(drop=True)


def load_sweep(sweep_dir: Path) -> pd.DataFrame:
    """The trials table of the study behind a sweep folder."""
    return trials_table(StudyRef.from_sweep_dir(sweep_dir).load())


def _epochs_run(run_dir: str | None) -> int | None:
    metrics = Path(run_dir) / "metrics.json" if isinstance(run_dir, str) else None
    if metrics is None or not metrics.exists():
        return None
    return json.loads(metrics.read_text())["epochs"]
