"""A sweep folder as a pandas table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf


def trials_table(sweep_dir: Path) -> pd.DataFrame:
    """One row per finished run folder: its overrides as columns, val accuracy, epochs, duration."""
    rows = []
    for metrics_file in sorted(Path(sweep_dir).glob("*/metrics.json")):
        run_dir = metrics_file.parent
        if run_dir.name == "final":
            continue
        metrics = json.loads(metrics_file.read_text())
        overrides = OmegaConf.load(run_dir / ".hydra" / "overrides.yaml")
        params = dict(str(o).split("=", 1) for o in overrides)
        rows.append({"run": run_dir.name, "val_accuracy": metrics["val_accuracy"], **params,
                     "epochs": metrics["epochs"], "duration_s": round(metrics["duration_s"], 2)})
    table = pd.DataFrame(rows)
    return table.sort_values("val_accuracy", ascending=False) if rows else table
