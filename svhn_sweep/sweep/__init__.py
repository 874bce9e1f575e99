"""The sweep: config schemas, one trial, the final retrain, the Optuna study, pruning and the checks before a sweep.

It composes the core with Hydra and Optuna; the sweeper plugin that drives it lives in
``hydra_plugins/svhn_sweep_optuna`` (Hydra finds sweepers only in that namespace).
"""
