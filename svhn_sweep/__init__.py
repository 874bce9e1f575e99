"""svhn_sweep: Hydra + Optuna sweeps of PyTorch classifiers on SVHN, from a course notebook to a framework."""

from __future__ import annotations

from typing import Any

__all__ = ["load_final_model"]


def __getattr__(name: str) -> Any:
    """``svhn_sweep.load_final_model``, imported on first use: ``import svhn_sweep`` alone stays free of torch."""
    if name == "load_final_model":
        from svhn_sweep.review.model import load_final_model

        return load_final_model
    raise AttributeError(f"module 'svhn_sweep' has no attribute {name!r}")
