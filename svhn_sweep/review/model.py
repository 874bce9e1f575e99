"""The final model of a sweep, ready to classify images of any size or mode: ``svhn_sweep.load_final_model``.

What ``svhn-sweep-predict`` uses; in Python, ``load_final_model(sweep_dir).probabilities([Image.open(path)])``
gives one row of 10 class probabilities per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from torch import nn
from torchvision import transforms

from svhn_sweep.constants import CONFIG_FILE, IMAGE_SHAPE, MODEL_FILE
from svhn_sweep.core.data import Normalizer
from svhn_sweep.core.errors import UserError
from svhn_sweep.core.train import EVAL_BATCH_SIZE, autocast, use_amp
from svhn_sweep.review.results import final_folder
from svhn_sweep.sweep.config import build


def svhn_crop_transform() -> transforms.Compose:
    """Any PIL image as SVHN stores its cropped digits: RGB, 32x32, uint8 (3, 32, 32).

    Grey, palette and RGBA images become RGB (alpha dropped); other sizes are resized to 32x32 (bilinear with
    antialiasing, aspect ratio not kept, as SVHN's crops were made); a 32x32 RGB image passes unchanged.
    The pixels stay uint8, so the model's own normalisation (:class:`~svhn_sweep.core.data.Normalizer`, the
    data config's mean and std) runs on them exactly as in training.
    """
    return transforms.Compose(
        [
            transforms.Lambda(lambda image: image.convert("RGB")),
            transforms.Resize(IMAGE_SHAPE[1:], antialias=True),
            transforms.PILToTensor(),
        ]
    )


@dataclass(frozen=True)
class FinalModel:
    """A trained classifier with the preprocessing its training used; ``config`` is the run's composed config."""

    model: nn.Module
    transform: transforms.Compose
    normalize: Normalizer
    config: DictConfig
    device: torch.device

    @torch.inference_mode()
    def probabilities(self, images: Sequence[Image.Image], batch_size: int = EVAL_BATCH_SIZE) -> torch.Tensor:
        """Class probabilities (N, 10), one row per image, in order: softmax of the model's logits, computed in the
        precision the retrain scored the test set in (``trainer.amp``), so that both predict the same classes.
        """
        pixels = torch.stack([self.transform(image) for image in images]).to(self.device)
        with autocast(self.device, use_amp(self.config.trainer.amp, self.device)):
            logits = [self.model(self.normalize(chunk)).float() for chunk in pixels.split(batch_size)]
        return torch.cat(logits).softmax(1)


def load_final_model(
    sweep_dir: str | Path, device: str | torch.device = "cpu", final_dir: str | Path | None = None
) -> FinalModel:
    """The retrained best config of a sweep folder (``config.yaml`` + ``model.pt`` of the final step the study
    records, the newest that finished; ``final_dir="final-2"`` for another), in eval mode.

    Raises :class:`~svhn_sweep.core.errors.UserError` naming the file when there is no final model.
    """
    folder = final_folder(sweep_dir, final_dir)
    if folder is None:
        raise UserError(
            f"The study of {sweep_dir} records no final step (yet): it runs when the sweep finishes. Give the "
            "folder of a finished sweep (outputs/sweeps/<date_time>), or a final folder of it (final_dir=/--final)."
        )
    for name in (CONFIG_FILE, MODEL_FILE):
        if not (folder / name).exists():
            raise UserError(
                f"{folder / name} not found: {sweep_dir} has no such final model. It is written when the sweep "
                "finishes; give the folder of a finished sweep (outputs/sweeps/<date_time>)."
            )
    config = OmegaConf.load(folder / CONFIG_FILE)
    model = build(config.model)
    model.load_state_dict(torch.load(folder / MODEL_FILE, map_location=device, weights_only=True))
    model.to(device).eval()
    normalize = Normalizer(config.data.mean, config.data.std, device)
    return FinalModel(model, svhn_crop_transform(), normalize, config, torch.device(device))
