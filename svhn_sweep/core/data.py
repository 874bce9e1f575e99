"""SVHN files to in-memory uint8 tensors, parsed once.

Both sources read the ``.mat`` files through ``torchvision.datasets.SVHN`` (md5 check, 10 -> 0 labels,
NCHW transpose); the arrays it yields are then cached in a ``.npz`` beside the ``.mat`` (keyed by the
``.mat``'s size and mtime, so a changed file is re-parsed) and in this process (so trials that share a
worker share the data). Training never touches a Dataset or DataLoader: a split is two tensors.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from filelock import FileLock
from torchvision.datasets import SVHN

from svhn_sweep.constants import SPLIT_FILES, SVHN_MEAN, SVHN_STD, SVHN_TEST_SIZE, SVHN_TRAIN_SIZE
from svhn_sweep.core.errors import UserError
from svhn_sweep.core.files import atomic_write
from svhn_sweep.core.synthetic import write_synthetic_svhn

# Reads from disk (.npz or .mat) in this process: a worker that runs many trials reads each file once.
disk_reads = 0


class DataError(UserError):
    """A data problem the user must fix by hand; the message says how."""


@dataclass(frozen=True)
class Split:
    """A labelled set of images: uint8 (N, 3, 32, 32) and int64 (N,), on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, index: torch.Tensor) -> Split:
        """The rows at ``index``, in that order."""
        # index_select copies whole rows; advanced indexing (images[index]) goes element by element, 2-8x slower
        return Split(self.images.index_select(0, index), self.labels.index_select(0, index))

    def to(self, device: torch.device | str) -> Split:
        """The same split on ``device``."""
        return Split(self.images.to(device), self.labels.to(device))

    @staticmethod
    def concat(*splits: Split) -> Split:
        """One split of all the rows of ``splits``, in order (train + val for the final retrain)."""
        return Split(torch.cat([s.images for s in splits]), torch.cat([s.labels for s in splits]))


class Normalizer:
    """The notebook's ToTensor + Normalize(mean, std), applied to a whole uint8 batch at once."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device | str = "cpu"):
        self.offset = torch.tensor([255.0 * m for m in mean], device=device).view(1, 3, 1, 1)
        self.scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=device).view(1, 3, 1, 1)

    def __call__(self, images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Float images; into ``out`` (a float32 tensor of ``images``' shape, overwritten) when given.

        A loop that reuses one ``out`` for every batch skips a fresh allocation per batch, which on a CPU costs
        page faults as large as the batch. The values are those of ``(images.float() - offset) * scale``.
        """
        if out is None:
            out = torch.empty(images.shape, device=images.device)
        return out.copy_(images).sub_(self.offset).mul_(self.scale)


class SVHNSource:
    """The real SVHN through torchvision; never falls back to other data."""

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.2,
        mean: Sequence[float] = SVHN_MEAN,
        std: Sequence[float] = SVHN_STD,
        download: bool = True,
    ) -> None:
        self.root = Path(root).absolute()  # relative to where the command runs (the sweep resolves it for jobs)
        self.val_fraction = val_fraction
        self.mean = list(mean)
        self.std = list(std)
        self.download = download

    def normalizer(self, device: torch.device | str = "cpu") -> Normalizer:
        """This data set's normalisation, its constants on ``device``."""
        return Normalizer(self.mean, self.std, device)

    def load(self, split: str) -> Split:
        """Read one file of the data set (``train`` or ``test``) as uint8 tensors."""
        return _load_cached(*self._file_key(split))

    def ensure_files(self) -> None:
        """Download (or generate) both files if missing, without parsing them."""
        for split in SPLIT_FILES:
            self._prepare(split)

    def train_val(self, seed: int) -> tuple[Split, Split]:
        """The train file split into (train, val); the same seed gives the same split in every trial.

        Made once per process, like the file's arrays: trials that share a worker share the split too.
        """
        return _train_val_cached(self._file_key("train"), seed, self.val_fraction)

    def _file_key(self, split: str) -> tuple[str, int, int, str, str]:
        """What identifies the split's file and its content (path, size, mtime, split, md5) for the caches."""
        md5 = self._prepare(split)
        path = self.root / SPLIT_FILES[split]
        stat = path.stat()
        return str(path), stat.st_size, stat.st_mtime_ns, split, md5

    def _prepare(self, split: str) -> str:
        """Make sure the split's file is on disk; return the md5 it must have."""
        if not (self.root / SPLIT_FILES[split]).exists():
            if not self.download:
                raise DataError(self._missing_message(split, "download=false"))
            try:
                SVHN(str(self.root), split=split, download=True)
            except Exception as error:  # urllib, socket and md5 errors all mean "no usable file"
                raise DataError(self._missing_message(split, error)) from None
        return SVHN.split_list[split][2]

    def _missing_message(self, split: str, reason: object) -> str:
        return (
            f"SVHN file {SPLIT_FILES[split]} is not in {self.root} and could not be downloaded ({reason}).\n"
            f"Put train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ into "
            f"{self.root} (or point data.root at the folder that holds them), "
            "or run offline on the procedural stand-in with data=synthetic."
        )


class SyntheticSource(SVHNSource):
    """The procedural stand-in: generated once into ``root/<sizes-seed>/``, then read exactly like SVHN."""

    def __init__(
        self,
        root: str,
        val_fraction: float = 0.2,
        mean: Sequence[float] = SVHN_MEAN,
        std: Sequence[float] = SVHN_STD,
        train_size: int = SVHN_TRAIN_SIZE,
        test_size: int = SVHN_TEST_SIZE,
        generator_seed: int = 0,
    ) -> None:
        super().__init__(root, val_fraction, mean, std, download=False)
        self.root = self.root / f"train{train_size}-test{test_size}-seed{generator_seed}"
        self.sizes = {"train": train_size, "test": test_size}
        self.generator_seed = generator_seed

    def _prepare(self, split: str) -> str:
        """Generate both files on first use; ``md5.json`` is written last, so it marks a finished set."""
        checksum_file = self.root / "md5.json"
        self.root.mkdir(parents=True, exist_ok=True)
        with FileLock(self.root / ".generate.lock"):  # parallel trials: one generates, the others wait
            if not checksum_file.exists():
                write_synthetic_svhn(self.root, self.sizes["train"], self.sizes["test"], self.generator_seed)
                checksums = {name: _md5(self.root / name) for name in SPLIT_FILES.values()}
                with atomic_write(checksum_file) as handle:
                    handle.write(json.dumps(checksums, indent=1).encode())
        return json.loads(checksum_file.read_text())[SPLIT_FILES[split]]


@lru_cache(maxsize=4)
def _load_cached(path: str, size: int, mtime_ns: int, split: str, md5: str) -> Split:
    """Arrays from the ``.npz`` beside the ``.mat`` when it was made from this very file, else re-parsed."""
    global disk_reads
    disk_reads += 1
    cache = Path(path).with_suffix(".npz")
    stamp = np.array([size, mtime_ns], dtype=np.int64)
    if cache.exists():
        try:
            with np.load(cache) as stored:
                if np.array_equal(stored["source_stat"], stamp):
                    return Split(torch.from_numpy(stored["images"]), torch.from_numpy(stored["labels"]))
        except (OSError, ValueError, KeyError):
            pass  # an unreadable cache is rebuilt below
    images, labels = _parse_mat(Path(path), split, md5)
    # Whoever may read the .mat may read its cache.
    with atomic_write(cache, mode=os.stat(path).st_mode & 0o777) as handle:
        np.savez(handle, images=images, labels=labels, source_stat=stamp)
    return Split(torch.from_numpy(images), torch.from_numpy(labels))


@lru_cache(maxsize=2)
def _train_val_cached(file_key: tuple[str, int, int, str, str], seed: int, val_fraction: float) -> tuple[Split, Split]:
    full = _load_cached(*file_key)
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(seed))
    n_val = int(len(full) * val_fraction)
    return full.subset(order[n_val:]), full.subset(order[:n_val])


def _parse_mat(path: Path, split: str, md5: str) -> tuple[np.ndarray, np.ndarray]:
    """Torchvision's SVHN reader (md5 check, 10 -> 0, NCHW) on ``path``, checked against ``md5``."""

    class _Checked(SVHN):
        split_list = {split: ["", path.name, md5]}

    try:
        dataset = _Checked(str(path.parent), split=split)
    except Exception as error:
        raise DataError(
            f"{path} is damaged or not an SVHN .mat file ({error}). "
            "Delete it and fetch it again (for data=synthetic: delete its folder to regenerate)."
        ) from None
    return np.ascontiguousarray(dataset.data), dataset.labels


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
