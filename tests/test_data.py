import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from svhn_sweep.core.data import DataError, SVHNSource, SyntheticSource, _load_cached, _md5
from tests.conftest import TEST_SIZE, TRAIN_SIZE


def source(root: Path, **kwargs) -> SyntheticSource:
    return SyntheticSource(str(root), train_size=TRAIN_SIZE, test_size=TEST_SIZE, **kwargs)


@pytest.fixture
def private_copy(synthetic_root: Path, tmp_path: Path) -> Path:
    """A copy of the shared data set that a test may damage."""
    shutil.copytree(synthetic_root, tmp_path / "data")
    return tmp_path / "data"


def test_loader_reads_the_mat_as_svhn_does(synthetic_root: Path) -> None:
    split = source(synthetic_root).load("train")
    raw = scipy.io.loadmat(source(synthetic_root).root / "train_32x32.mat")
    assert split.images.dtype == torch.uint8 and split.images.shape == (TRAIN_SIZE, 3, 32, 32)
    # torchvision's reader: X (H, W, C, N) -> (N, C, H, W), label 10 -> 0
    assert np.array_equal(split.images.numpy(), raw["X"].transpose(3, 2, 0, 1))
    expected = raw["y"].ravel().astype(np.int64)
    expected[expected == 10] = 0
    assert np.array_equal(split.labels.numpy(), expected)
    assert set(split.labels.tolist()) == set(range(10))


def test_train_val_split_is_fixed_by_seed_and_disjoint(synthetic_root: Path) -> None:
    data = source(synthetic_root, val_fraction=0.25)
    train, val = data.train_val(seed=1)
    again, _ = data.train_val(seed=1)
    other, _ = data.train_val(seed=2)
    assert len(val) == TRAIN_SIZE // 4 and len(train) + len(val) == TRAIN_SIZE
    assert again is train  # made once per process: later trials in a worker reuse it
    assert torch.equal(train.images, again.images)
    assert not torch.equal(train.labels, other.labels)

    def keys(split):
        return {image.numpy().tobytes() for image in split.images}

    assert len(keys(data.load("train"))) == TRAIN_SIZE  # images are distinct: disjointness is meaningful
    assert not keys(train) & keys(val)


def test_parsed_arrays_are_cached_beside_the_mat(private_copy: Path, monkeypatch) -> None:
    data = source(private_copy)
    first = data.load("test")
    assert (data.root / "test_32x32.npz").exists()
    _load_cached.cache_clear()

    def no_parsing(*args):
        raise AssertionError("a cache hit must not parse the .mat")

    monkeypatch.setattr("svhn_sweep.core.data._parse_mat", no_parsing)
    assert torch.equal(data.load("test").images, first.images)
    assert data.load("test") is data.load("test")  # and the process keeps it


def test_cache_is_readable_by_whoever_may_read_the_mat(private_copy: Path) -> None:
    data = source(private_copy)
    for mode in (0o644, 0o640):
        (data.root / "test_32x32.mat").chmod(mode)
        (data.root / "test_32x32.npz").unlink(missing_ok=True)
        _load_cached.cache_clear()
        data.load("test")
        assert (data.root / "test_32x32.npz").stat().st_mode & 0o777 == mode


def test_stale_cache_is_rebuilt_not_used(private_copy: Path) -> None:
    data = source(private_copy)
    mat = data.root / "train_32x32.mat"
    before = data.load("train")
    raw = scipy.io.loadmat(mat)
    raw["X"] = 255 - raw["X"]
    scipy.io.savemat(mat, {"X": raw["X"], "y": raw["y"]})
    checksums = json.loads((data.root / "md5.json").read_text())
    (data.root / "md5.json").write_text(json.dumps({**checksums, mat.name: _md5(mat)}))
    after = data.load("train")
    assert torch.equal(after.images, 255 - before.images)


def test_truncated_mat_gets_one_clear_message_and_is_never_cached(private_copy: Path) -> None:
    data = source(private_copy)
    mat = data.root / "train_32x32.mat"
    mat.write_bytes(mat.read_bytes()[: mat.stat().st_size // 2])
    os.utime(mat)
    (data.root / "train_32x32.npz").unlink(missing_ok=True)
    with pytest.raises(DataError) as error:
        data.load("train")
    assert str(mat) in str(error.value) and "Delete it" in str(error.value)
    assert not (data.root / "train_32x32.npz").exists()


def test_missing_svhn_without_network_says_where_to_put_the_files(tmp_path: Path) -> None:
    with pytest.raises(DataError) as error:
        SVHNSource(str(tmp_path / "svhn")).load("train")
    message = str(error.value)
    for needed in (str(tmp_path / "svhn"), "train_32x32.mat", "test_32x32.mat", "data=synthetic"):
        assert needed in message
