"""The load rows: reading the train file into tensors, the first time (from the ``.mat``) and from the cache.

Every trial starts by loading the train file; a first load checks the md5, parses the ``.mat`` and writes the
``.npz`` cache beside it, later loads read that cache. The in-process cache (which makes a worker's second trial
free) is cleared before each load, so that each one really reads the disk.
"""

from __future__ import annotations

from benchmarks.table import median_seconds
from svhn_sweep.constants import SPLIT_FILES
from svhn_sweep.core import data
from svhn_sweep.core.data import SyntheticSource


def load_seconds(source: SyntheticSource, first: bool, repeats: int) -> float:
    """Median seconds to load the train file into tensors, without (``first``) or with the ``.npz`` cache."""
    cache = (source.root / SPLIT_FILES["train"]).with_suffix(".npz")

    def forget() -> None:
        if first:
            cache.unlink(missing_ok=True)
        data._load_cached.cache_clear()

    return median_seconds(lambda: source.load("train"), repeats, before=forget)


def first_load(source: SyntheticSource, repeats: int) -> tuple[float, str]:
    """The first load's seconds, and the row's note."""
    return load_seconds(source, True, repeats), "md5, loadmat, .npz written"


def cached_load(source: SyntheticSource, repeats: int) -> tuple[float, str]:
    """A cached load's seconds, and the row's note."""
    return load_seconds(source, False, repeats), "warm page cache"
