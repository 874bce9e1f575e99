import pytest
import torch
from torch import nn

from svhn_sweep.core.models import CNN, MLP


def layer_types(model: nn.Module) -> list[type]:
    return [type(m) for m in model]


@pytest.mark.parametrize("hidden", [[100], [256, 128], [64, 32, 16]])
def test_mlp_maps_images_to_ten_logits(hidden: list[int]) -> None:
    model = MLP(hidden)
    assert model(torch.randn(5, 3, 32, 32)).shape == (5, 10)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == list(zip([3072, *hidden], [*hidden, 10], strict=True))


def test_batchnorm_placement_relative_to_activation() -> None:
    assert layer_types(MLP([8], "before")) == [nn.Flatten, nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert layer_types(MLP([8], "after")) == [nn.Flatten, nn.Linear, nn.ReLU, nn.BatchNorm1d, nn.Linear]
    assert layer_types(MLP([8], "none")) == [nn.Flatten, nn.Linear, nn.ReLU, nn.Linear]
    assert layer_types(MLP([8], "after", dropout=0.5)) == [
        nn.Flatten,
        nn.Linear,
        nn.ReLU,
        nn.BatchNorm1d,
        nn.Dropout,
        nn.Linear,
    ]


def test_unknown_batchnorm_placement_is_rejected() -> None:
    with pytest.raises(ValueError, match="sideways"):
        MLP([8], "sideways")


def test_cnn_maps_images_to_ten_logits() -> None:
    model = CNN([8, 16])
    assert model(torch.randn(4, 3, 32, 32)).shape == (4, 10)
    assert sum(isinstance(m, nn.Conv2d) for m in model) == 2
