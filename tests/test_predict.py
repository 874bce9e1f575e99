"""The final model in use: ``svhn-sweep-predict`` and ``svhn_sweep.load_final_model`` on image files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import svhn_sweep
from svhn_sweep import predict
from svhn_sweep.core.evaluation import load_test_predictions
from svhn_sweep.review.model import svhn_crop_transform
from svhn_sweep.review.plots import load_test_images
from tests.conftest import TEST_SIZE, Sweep


@pytest.mark.slow
def test_test_images_written_as_png_are_predicted_as_the_final_retrain_did(
    sweep: Sweep, tmp_path: Path, capsys
) -> None:
    """The whole test file as PNGs, read back through the command: the labels of ``test_predictions.npz``, and a
    file that is no image (or not there, or cut short) gets one line naming it while the others are classified.
    """
    predictions, truth = load_test_predictions(sweep.dir / "final")
    images = load_test_images(sweep.dir / "final", truth)
    paths = []
    for index, pixels in enumerate(images):
        paths.append(tmp_path / f"test{index:04d}.png")
        Image.fromarray(pixels.transpose(1, 2, 0)).save(paths[-1])
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("a house number, honest")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(paths[0].read_bytes()[:60])
    missing = tmp_path / "missing.png"
    bad = [not_an_image, missing, truncated]

    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(sweep.dir), str(paths[0]), *map(str, bad), *map(str, paths[1:])])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 1  # some files could not be read
    assert len(err.splitlines()) == len(bad)
    for path, line in zip(bad, err.splitlines(), strict=True):
        assert line.startswith(f"svhn-sweep-predict: cannot read {path} as an image: ")
    printed = [line.split(": ") for line in out.splitlines()]
    assert [name for name, _ in printed] == list(map(str, paths)) and len(paths) == TEST_SIZE
    assert np.array_equal([int(answer.split()[0]) for _, answer in printed], predictions)

    predict.main([str(sweep.dir), str(paths[0]), "--top", "3"])  # all files readable: exit status 0
    (line,) = capsys.readouterr().out.splitlines()
    answers = line.removeprefix(f"{paths[0]}: ").split("  ")
    digits = [int(answer.split()[0]) for answer in answers]
    probabilities = [float(answer.split()[1].strip("()")) for answer in answers]
    assert len(set(digits)) == 3 and digits[0] == predictions[0]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0005


@pytest.mark.slow
def test_load_final_model_gives_probabilities_for_images_of_any_size_and_mode(sweep: Sweep) -> None:
    final = svhn_sweep.load_final_model(sweep.dir)
    assert not final.model.training and final.config == OmegaConf.load(sweep.dir / "final" / "config.yaml")
    predictions, truth = load_test_predictions(sweep.dir / "final")
    pixels = load_test_images(sweep.dir / "final", truth)[:8]
    photos = [Image.fromarray(p.transpose(1, 2, 0)) for p in pixels]
    probabilities = final.probabilities(photos)
    assert probabilities.shape == (8, 10) and torch.allclose(probabilities.sum(1), torch.ones(8))
    assert np.array_equal(probabilities.argmax(1).numpy(), predictions[:8])
    others = [photos[0].resize((90, 60)).convert("L"), photos[1].convert("RGBA"), photos[2].convert("P")]
    assert final.probabilities(others).shape == (3, 10)


def test_a_folder_without_a_final_model_is_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(tmp_path), str(tmp_path / "any.png")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert f"{tmp_path / 'study.yaml'} not found: {tmp_path} is not a sweep folder" in err
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(tmp_path), str(tmp_path / "any.png"), "--final", "final-2"])
    assert exit_info.value.code == 2 and f"{tmp_path / 'final-2' / 'config.yaml'} not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(tmp_path), "any.png", "--top", "11"])
    assert exit_info.value.code == 2 and "from 1 to 10" in capsys.readouterr().err


def test_images_are_converted_as_svhn_crops_are_stored() -> None:
    """RGB 32x32 uint8, whatever comes in; a 32x32 RGB image is passed through untouched."""
    transform = svhn_crop_transform()
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert torch.equal(transform(Image.fromarray(rgb)), torch.from_numpy(rgb).permute(2, 0, 1))
    grey = transform(Image.fromarray(rgb[:, :, 0]).resize((64, 48)))
    assert grey.shape == (3, 32, 32) and grey.dtype == torch.uint8
    assert torch.equal(grey[0], grey[1]) and torch.equal(grey[1], grey[2])
    rgba = np.dstack([rgb, np.full((32, 32), 7, np.uint8)])
    assert torch.equal(transform(Image.fromarray(rgba)), torch.from_numpy(rgb).permute(2, 0, 1))
    flat = transform(Image.new("RGB", (200, 100), (10, 20, 30)))
    assert flat.shape == (3, 32, 32) and flat[:, 5, 7].tolist() == [10, 20, 30]
