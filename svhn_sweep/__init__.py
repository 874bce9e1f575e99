"""svhn_sweep: Hydra + Optuna sweeps of PyTorch classifiers on SVHN, from a course notebook to a framework."""
