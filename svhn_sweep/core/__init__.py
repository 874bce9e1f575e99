"""The core: data, the synthetic stand-in, models, the training loop and evaluation, in plain PyTorch.

Nothing here imports Hydra, OmegaConf or Optuna (``tests/test_layers.py`` checks it), so the training path runs
and is benchmarked on a machine that has only torch and torchvision.
"""
