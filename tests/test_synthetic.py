"""The synthetic SVHN stand-in: real-reader round trip, determinism, atomic writes, and image sanity."""

from __future__ import annotations

import time
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import scipy.io
from torchvision.datasets import SVHN
from torchvision.datasets.utils import calculate_md5

from svhn_sweep.core import synthetic
from svhn_sweep.core.synthetic import render_digits, synthetic_split, write_synthetic_svhn

TRAIN, TEST = 200, 100


def _read_with_torchvision(root: Path, split: str) -> SVHN:
    """Torchvision's own SVHN reader, with only its md5 check pointed at our file."""

    class SyntheticSVHN(SVHN):
        split_list = {
            name: [url, filename, calculate_md5(root / filename)]
            for name, (url, filename, _) in SVHN.split_list.items()
            if (root / filename).exists()
        }

    return SyntheticSVHN(root, split=split)


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("svhn") / "nested"  # also checks that root is created
    write_synthetic_svhn(root, TRAIN, TEST, seed=0)
    return root


@pytest.fixture(scope="module")
def sample() -> tuple[np.ndarray, np.ndarray]:
    """Enough images for per-class statistics (about 1 s to render)."""
    return synthetic_split(3000, np.random.default_rng(123))


def _ink(images: np.ndarray) -> np.ndarray:
    """Polarity-free 'ink' map per image: grey-level distance from the image's median, unit mean."""
    grey = images.astype(np.float64).mean(axis=3)
    dev = np.abs(grey - np.median(grey, axis=(1, 2), keepdims=True))
    return (dev / (dev.mean(axis=(1, 2), keepdims=True) + 1e-9)).reshape(len(grey), -1)


@pytest.mark.parametrize(("split", "size", "stream"), [("train", TRAIN, 0), ("test", TEST, 1)])
def test_torchvision_reads_the_files_as_written(written: Path, split: str, size: int, stream: int) -> None:
    raw = scipy.io.loadmat(written / f"{split}_32x32.mat")
    assert raw["X"].dtype == np.uint8 and raw["X"].shape == (32, 32, 3, size)
    assert raw["y"].dtype == np.uint8 and raw["y"].shape == (size, 1)
    assert set(np.unique(raw["y"])) <= set(range(1, 11))
    assert 10 in raw["y"] and 0 not in raw["y"]

    ds = _read_with_torchvision(written, split)
    assert ds.data.dtype == np.uint8 and ds.data.shape == (size, 3, 32, 32)
    np.testing.assert_array_equal(ds.labels, np.where(raw["y"][:, 0] == 10, 0, raw["y"][:, 0]))
    image, label = ds[0]
    assert image.size == (32, 32) and label == ds.labels[0]

    # The documented stream layout: split `stream` of SeedSequence(seed).spawn(2), pixel for pixel.
    seq = np.random.SeedSequence(0).spawn(2)[stream]
    images, labels = synthetic_split(size, np.random.default_rng(seq))
    np.testing.assert_array_equal(ds.labels, labels)
    np.testing.assert_array_equal(ds.data, images.transpose(0, 3, 1, 2))


def test_same_seed_gives_identical_files_and_test_size_leaves_train_alone(
    tmp_path: Path, written: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "asctime", lambda *args: "Thu Jan  1 00:00:00 1970")  # scipy's header clock
    write_synthetic_svhn(tmp_path / "same", TRAIN, TEST // 2, seed=0)
    assert (tmp_path / "same" / "train_32x32.mat").read_bytes() == (written / "train_32x32.mat").read_bytes()
    assert sorted(p.name for p in (tmp_path / "same").iterdir()) == ["test_32x32.mat", "train_32x32.mat"]

    write_synthetic_svhn(tmp_path / "other", TRAIN, TEST, seed=1)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        ours, theirs = (scipy.io.loadmat(root / name)["X"] for root in (written, tmp_path / "other"))
        assert (ours != theirs).mean() > 0.5


def test_seed_changes_the_images() -> None:
    labels = np.arange(50) % 10
    same = render_digits(labels, np.random.default_rng(7)), render_digits(labels, np.random.default_rng(7))
    other = render_digits(labels, np.random.default_rng(8))
    np.testing.assert_array_equal(*same)
    assert (same[0] != other).mean() > 0.5


def test_interrupted_write_keeps_old_file_and_leaves_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_synthetic_svhn(tmp_path, 20, 10, seed=1)
    before = (tmp_path / "train_32x32.mat").read_bytes()

    def savemat_then_crash(file: BinaryIO, mdict: dict, **kwargs: object) -> None:
        file.write(b"MATLAB 5.0 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic.scipy.io, "savemat", savemat_then_crash)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_svhn(tmp_path, 30, 10, seed=2)
    assert (tmp_path / "train_32x32.mat").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test_32x32.mat", "train_32x32.mat"]


def test_render_rejects_non_digit_labels() -> None:
    with pytest.raises(ValueError, match="0..9"):
        render_digits(np.array([3, 10]), np.random.default_rng(0))
    with pytest.raises(ValueError, match="1-D integer"):
        render_digits(np.array([1.0, 2.0]), np.random.default_rng(0))


def test_labels_are_all_digits_mildly_skewed_like_svhn(sample: tuple[np.ndarray, np.ndarray]) -> None:
    counts = np.bincount(sample[1], minlength=10)
    assert counts.min() > 0.05 * counts.sum()  # every digit well represented ...
    assert counts[1] > counts[7:].max() and counts[2] > counts[7:].max()  # ... with SVHN's lean to 1 and 2


def test_images_are_structured_pictures_not_noise_or_blanks(sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, _ = sample
    assert images.dtype == np.uint8 and images.shape == (3000, 32, 32, 3)
    per_image_std = images.reshape(len(images), -1).std(axis=1)
    assert per_image_std.min() > 2.0  # no blank crops
    assert 20.0 < images.std() < 90.0
    assert len(np.unique(images.reshape(len(images), -1).mean(axis=1).round())) > 100  # varied colours
    # Neighbouring pixels agree within an image (uniform noise would give ~0).
    grey = images.astype(np.float64).mean(axis=3)
    grey -= grey.mean(axis=(1, 2), keepdims=True)
    assert np.corrcoef(grey[:, :, :-1].ravel(), grey[:, :, 1:].ravel())[0, 1] > 0.6


def test_digit_identity_is_visible_but_not_trivially(sample: tuple[np.ndarray, np.ndarray]) -> None:
    images, labels = sample
    ink = _ink(images)
    # Class-mean ink maps differ between digits far more than between two halves of one digit.
    halves = [np.stack([ink[k::2][labels[k::2] == d].mean(axis=0) for d in range(10)]) for k in (0, 1)]
    within = np.linalg.norm(halves[0] - halves[1], axis=1).mean()
    means = np.stack([ink[labels == d].mean(axis=0) for d in range(10)])
    between = np.mean([np.linalg.norm(means[i] - means[j]) for i in range(10) for j in range(i + 1, 10)])
    assert between > 1.5 * within
    # A nearest-class-mean template matcher beats chance clearly, yet stays far from solving the task.
    train, held_out = slice(0, 2000), slice(2000, None)
    templates = np.stack([ink[train][labels[train] == d].mean(axis=0) for d in range(10)])
    guess = ((ink[held_out][:, None, :] - templates[None]) ** 2).sum(axis=-1).argmin(axis=1)
    accuracy = (guess == labels[held_out]).mean()
    assert 0.25 < accuracy < 0.8
