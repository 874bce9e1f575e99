"""svhn_sweep's Optuna sweeper: hydra-optuna-sweeper with persistent studies, pruning and shared workers."""
