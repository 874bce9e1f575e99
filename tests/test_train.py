import torch
from torch import nn

from svhn_sweep.data import Normalizer, Split
from svhn_sweep.models import MLP
from svhn_sweep.train import accuracy, fit, predict


def toy_split(n: int = 256, seed: int = 0) -> Split:
    """Class = which channel is brightest, so a small net learns it in a few epochs."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=g)
    images = torch.randint(0, 100, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    images[torch.arange(n), labels] += 120
    return Split(images, labels)


def test_normalizer_matches_seed_to_tensor_then_normalize() -> None:
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    mean, std = [0.43, 0.44, 0.47], [0.2, 0.2, 0.2]
    expected = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    torch.testing.assert_close(Normalizer(mean, std)(images), expected)


class ChannelPicker(nn.Module):
    """Predicts class c from the mean of channel c: a known model for a known accuracy."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def test_accuracy_on_a_known_case() -> None:
    data = toy_split(100)
    identity = Normalizer([0, 0, 0], [1 / 255] * 3)
    assert accuracy(ChannelPicker(), data, identity) == 1.0
    flipped = Split(data.images, (data.labels + 1) % 3)
    flipped.labels[:25] = data.labels[:25]  # exactly 25 of 100 still right
    assert accuracy(ChannelPicker(), flipped, identity, batch_size=7) == 0.25
    assert torch.equal(predict(ChannelPicker(), data, identity, batch_size=7), data.labels)


def run_fit(seed: int, epochs: int = 5, scheduler: bool = True):
    torch.manual_seed(seed)
    model = MLP([16])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.04, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5) if scheduler else None
    data = toy_split()
    return fit(model, optimizer, sched, data, toy_split(64, seed=1), Normalizer([0.4] * 3, [0.2] * 3),
               epochs=epochs, batch_size=32, seed=seed)


def test_step_scheduler_halves_the_learning_rate_every_two_epochs() -> None:
    history = run_fit(seed=0, epochs=6)
    assert [round(h.lr, 6) for h in history] == [0.04, 0.04, 0.02, 0.02, 0.01, 0.01]


def test_training_learns_and_is_reproducible() -> None:
    first, second = run_fit(seed=3), run_fit(seed=3)
    assert [(h.loss, h.val_acc) for h in first] == [(h.loss, h.val_acc) for h in second]
    assert first[-1].loss < first[0].loss
    assert first[-1].val_acc > 0.8
    assert [h.loss for h in run_fit(seed=4)] != [h.loss for h in first]
