from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from svhn_sweep.core.data import Normalizer, Split
from svhn_sweep.core.errors import ConfigError
from svhn_sweep.core.models import MLP
from svhn_sweep.core.train import (
    DIVERGENCE_CHECK_EVERY,
    DivergedError,
    accuracy,
    fit,
    make_capturable,
    predict,
    use_amp,
    use_cuda_graphs,
)
from svhn_sweep.sweep.trial import train_and_validate


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
    buffer = torch.full((4, 3, 32, 32), float("nan"))
    assert Normalizer(mean, std)(images, out=buffer) is buffer
    assert torch.equal(buffer, Normalizer(mean, std)(images))


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


def run_fit(seed: int, epochs: int = 5, scheduler: bool = True, **switches: bool):
    torch.manual_seed(seed)
    model = MLP([16])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.04, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5) if scheduler else None
    data = toy_split()
    return fit(
        model,
        optimizer,
        sched,
        data,
        toy_split(64, seed=1),
        Normalizer([0.4] * 3, [0.2] * 3),
        epochs=epochs,
        batch_size=32,
        seed=seed,
        **switches,
    )


def test_step_scheduler_halves_the_learning_rate_every_two_epochs() -> None:
    history = run_fit(seed=0, epochs=6)
    assert [round(h.lr, 6) for h in history] == [0.04, 0.04, 0.02, 0.02, 0.01, 0.01]


def test_training_learns_and_is_reproducible() -> None:
    first, second = run_fit(seed=3), run_fit(seed=3)
    assert [(h.loss, h.val_acc) for h in first] == [(h.loss, h.val_acc) for h in second]
    assert first[-1].loss < first[0].loss
    assert first[-1].val_acc > 0.8
    assert [h.loss for h in run_fit(seed=4)] != [h.loss for h in first]


def reference_epochs(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    data: Split,
    val: Split,
    mean: list[float],
    std: list[float],
    epochs: int,
    batch_size: int,
    seed: int,
):
    """The plain loop the fast path must match: seed-style normalisation, a sync per batch, no tricks."""
    generator = torch.Generator().manual_seed(seed)
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def normalize(images: torch.Tensor) -> torch.Tensor:
        return (images.float() - 255 * mean_t) * (1 / (255 * std_t))

    results = []
    for _ in range(epochs):
        model.train()
        loss_sum, correct = 0.0, 0
        for index in torch.randperm(len(data), generator=generator).split(batch_size):
            logits = model(normalize(data.images[index]))
            loss = F.cross_entropy(logits, data.labels[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum += loss.item() * len(index)
            correct += int((logits.argmax(1) == data.labels[index]).sum())
        model.eval()
        with torch.no_grad():
            val_acc = (model(normalize(val.images)).argmax(1) == val.labels).float().mean().item()
        results.append((loss_sum / len(data), correct / len(data), val_acc))
    return results


def test_fast_path_gives_the_numbers_of_a_plain_training_loop() -> None:
    mean, std = [0.43, 0.44, 0.47], [0.2, 0.2, 0.2]
    data, val = toy_split(300), toy_split(50, seed=1)
    models = []
    for _ in range(2):
        torch.manual_seed(7)
        model = MLP([32], batchnorm="after")
        # the same optimizer kernel in both: fit's own choice of it is the next test's subject
        models.append((model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, fused=True)))
    (fast, fast_opt), (plain, plain_opt) = models
    history = fit(fast, fast_opt, None, data, val, Normalizer(mean, std), epochs=3, batch_size=64, seed=5)
    expected = reference_epochs(plain, plain_opt, data, val, mean, std, epochs=3, batch_size=64, seed=5)
    for stats, (loss, train_acc, val_acc) in zip(history, expected, strict=True):
        assert stats.loss == pytest.approx(loss, rel=1e-5)
        assert (stats.train_acc, stats.val_acc) == (train_acc, val_acc)
    for fast_param, plain_param in zip(fast.parameters(), plain.parameters(), strict=True):
        assert torch.equal(fast_param, plain_param)  # bit for bit: the speed work changed no arithmetic


@pytest.mark.parametrize(
    ("chosen", "kernel"), [({}, True), ({"fused": False}, False), ({"foreach": True}, None), ({"foreach": False}, None)]
)
def test_cpu_training_takes_the_fused_optimizer_step_unless_one_was_chosen(chosen: dict, kernel: bool | None) -> None:
    """The fused step is the per-operation step's update up to rounding: the same run ends within float32's last
    bits, which momentum and weight decay carry from step to step.
    """
    data, val, normalize = toy_split(300), toy_split(50, seed=1), Normalizer([0.4] * 3, [0.2] * 3)
    trained = []
    for options in (chosen, {"foreach": False}):
        torch.manual_seed(7)
        model = MLP([64, 32])
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3, **options)
        fit(model, optimizer, None, data, val, normalize, epochs=2, batch_size=32, seed=5, verbose=False)
        trained.append((optimizer.param_groups[0]["fused"], list(model.parameters())))
    (fused, params), (_, reference) = trained
    assert fused == kernel
    for param, expected in zip(params, reference, strict=True):
        torch.testing.assert_close(param, expected, rtol=1e-5, atol=1e-6)


def test_divergence_stops_training_within_a_few_dozen_batches() -> None:
    torch.manual_seed(0)
    model = MLP([16])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e6)
    steps = []
    optimizer.register_step_post_hook(lambda *_: steps.append(1))
    data = toy_split(4 * DIVERGENCE_CHECK_EVERY * 8)  # 4 checks' worth of batches of 8
    with pytest.raises(DivergedError, match=r"^loss became (nan|inf) in epoch 1 \(lr=1e\+06\)"):
        fit(model, optimizer, None, data, None, Normalizer([0.4] * 3, [0.2] * 3), epochs=3, batch_size=8, seed=0)
    assert len(steps) == DIVERGENCE_CHECK_EVERY  # the first check caught it; the epoch's other batches never ran


def test_compiled_model_trains_to_the_same_numbers(monkeypatch) -> None:
    compiled = []

    def compile_eagerly(model: nn.Module) -> nn.Module:  # dynamo's graph capture without inductor's slow codegen
        compiled.append(model)
        return real_compile(model, backend="eager")

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", compile_eagerly)
    eager, again = run_fit(seed=3, epochs=2), run_fit(seed=3, epochs=2, compile_model=True)
    assert len(compiled) == 1
    assert [(h.loss, h.val_acc) for h in again] == [(h.loss, h.val_acc) for h in eager]


def test_amp_is_on_where_the_device_has_bf16_matrix_units_unless_set() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    amx = "amx_bf16" in Path("/proc/cpuinfo").read_text().split()  # the CPU's own word, not torch's probe
    assert (use_amp("auto", cpu), use_amp("auto", cuda)) == (amx, True)
    assert (use_amp(True, cpu), use_amp(False, cuda)) == (True, False)


def test_cuda_graphs_are_on_for_cuda_only_and_refused_without_it() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (use_cuda_graphs("auto", cpu), use_cuda_graphs("auto", cuda)) == (False, True)
    assert (use_cuda_graphs(True, cuda), use_cuda_graphs(False, cuda), use_cuda_graphs(False, cpu)) == (
        True,
        False,
        False,
    )
    with pytest.raises(ConfigError, match=r"trainer\.cuda_graphs=True: CUDA graphs need a CUDA device.*on cpu"):
        use_cuda_graphs(True, cpu)


def test_only_optimizers_whose_step_can_be_captured_get_cuda_graphs() -> None:
    params = list(MLP([8]).parameters())
    sgd, adam, adagrad = (torch.optim.SGD(params, lr=0.1), torch.optim.Adam(params), torch.optim.Adagrad(params))
    assert not adam.param_groups[0]["capturable"]
    assert (make_capturable(sgd), make_capturable(adam), make_capturable(adagrad)) == (True, True, False)
    assert adam.param_groups[0]["capturable"]  # its step count will live on the device, inside the graph


def test_bf16_autocast_trains_on_cpu_too() -> None:
    history = run_fit(seed=3, epochs=3, amp=True)
    assert history[-1].loss < history[0].loss and history[-1].val_acc > 0.8


def test_trainer_switches_reach_the_training_loop(compose_cfg, small_data, tmp_path, monkeypatch) -> None:
    seen = []

    def spy(*args, **kwargs):
        seen.append({key: kwargs[key] for key in ("amp", "compile_model", "cuda_graphs")})
        return fit(*args, **kwargs)

    monkeypatch.setattr(torch, "compile", lambda model: model)
    monkeypatch.setattr("svhn_sweep.sweep.training.fit", spy)
    for switches in (["trainer.amp=false"], ["trainer.amp=true", "trainer.compile=true"]):
        train_and_validate(compose_cfg(*small_data, "trainer.epochs=1", "trainer.device=cpu", *switches), tmp_path)
    assert seen == [
        {"amp": False, "compile_model": False, "cuda_graphs": False},
        {"amp": True, "compile_model": True, "cuda_graphs": False},
    ]
