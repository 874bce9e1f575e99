"""Facts every layer shares, each stated once: SVHN's classes and shapes, sizes, statistics and file names, the
files a sweep writes, and where studies are stored by default. Imports nothing, so any layer may import it.
"""

NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)  # channels, height, width: SVHN's cropped digits (format 2)

# SVHN's two files (torchvision's names) and their sizes; the synthetic stand-in defaults to the same sizes.
SPLIT_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
SVHN_TRAIN_SIZE = 73257
SVHN_TEST_SIZE = 26032

# Per-channel mean and std of SVHN's pixels in [0, 1]: the notebook's ``transforms.Normalize``.
SVHN_MEAN = (0.43, 0.44, 0.47)
SVHN_STD = (0.20, 0.20, 0.20)

# Where every sweep started in a folder keeps its Optuna studies, unless hydra.sweeper.storage says otherwise.
DEFAULT_STORAGE = "sqlite:///outputs/optuna.db"

# What a sweep folder holds (outputs/sweeps/<date_time>/ by default).
MULTIRUN_FILE = "multirun.yaml"  # the sweep's composed config, as Hydra's own sweeper saves it
STUDY_FILE = "study.yaml"  # storage URL and study name: anything that has the folder can open the study
RESULTS_FILE = "optimization_results.yaml"  # as hydra-optuna-sweeper names it; written once the sweep finishes
TRIALS_CSV = "trials.csv"
FINAL_DIR = "final"  # the retrained best config and its test score
PLOTS_DIR = "plots"
# ... and each run folder (a trial's, or FINAL_DIR).
METRICS_FILE = "metrics.json"
ERROR_FILE = "error.txt"
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.yaml"
PREDICTIONS_FILE = "test_predictions.npz"
CHECKPOINT_FILE = "checkpoint.pt"  # the state after the last epoch done; gone once the run finishes

# User attributes the sweeper sets on a study's trials, read by the final step and the tables.
ENQUEUED_ATTR = "enqueued"  # True on a trial of hydra.sweeper.enqueue (e.g. the notebook's model, as reference)
COMPOSED_ATTR = "composed"  # config values a custom_search_space hook composed, e.g. model.hidden_sizes from widths
OVERRIDES_ATTR = "overrides"  # the trial's searched values as overrides: what the final step retrains
