"""How fast svhn_sweep trains, against the original course notebook's pipeline, on SVHN-sized data, in one process.

    python benchmarks/bench.py                                   # CPU: the full table, about 8 min on 2 cores
    python benchmarks/bench.py --device cuda --quick --out gpu.md  # GPU: a few minutes, no Hydra/Optuna needed

Rows, each the median of ``--repeats`` runs (row 4's matmul timings: of as many as ``torch.utils.benchmark``
needs to settle), speed-up = row 1's time / the row's time; each row is measured by one module beside this
driver, whose docstring says how:

1. the notebook's pipeline as it writes it: torchvision's SVHN ``__getitem__`` (a PIL image per sample,
   then ToTensor + Normalize), DataLoader + SubsetRandomSampler, batch 64, the 1x100 MLP, SGD; one epoch (its
   ``train_model``: the training pass and ``compute_accuracy`` on val). It runs on the CPU, as the notebook does
   (``notebook_pipeline.py``);
2. ``svhn_sweep.core.train.fit`` with the same model and optimizer, batch 64, one epoch (training pass + val)
   (``epochs.py``);
3. the same at ``trainer.batch_size`` (the trainer's default, ``svhn_sweep.core.train.BATCH_SIZE``);
4. this machine's fp32 matmul throughput and the fraction of it that row 3 reaches (read from row 3's fp32
   twin where ``trainer.amp=auto`` is bf16: CUDA, CPUs with AMX), counting the matmul FLOPs
   the epoch really runs (forward; backward: weight gradients, and input gradients except for the first layer,
   whose input needs none; val: forward) (``matmul_peak.py``);
5. per-trial overhead of a real multirun (``python -m svhn_sweep --multirun``, basic and joblib launchers):
   the time between consecutive trials' ends minus the time inside their epochs, so that the once-per-sweep
   cost (Python, torch and Hydra start-up, the first data load) stays out of it and is shown beside it
   (``sweep_overhead.py``);
6. loading the train file: the first load of the ``.mat`` (md5, parse, writing the ``.npz``) and a cached one
   (``data_load.py``).

With ``--device cuda`` it adds the epochs without CUDA graphs (``trainer.cuda_graphs=false``), the small CNN
(``model=cnn``) per epoch, fp32 and bf16 autocast, with ``torch.compile`` (first epoch, compile included, and
later ones), and a check that CUDA graphs train to the same parameters as eager steps (``cuda_graphs_check.py``).
``--quick`` uses random pixels of the same shapes (timing does not depend on them), runs the notebook pipeline
once, and skips rows 5 and 6, so it needs only torch, torchvision, numpy and this package's core: no Hydra,
Optuna or data files. ``table.py`` holds the rows, their targets and the report.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the checkout's package and these benchmarks, installed or not

from benchmarks import cuda_graphs_check, data_load, matmul_peak, sweep_overhead  # noqa: E402
from benchmarks.epochs import Epochs, notebook_mlp, precision  # noqa: E402
from benchmarks.notebook_pipeline import NOTEBOOK_BATCH, VAL_FRACTION, notebook_epoch  # noqa: E402
from benchmarks.table import Bench, machine  # noqa: E402
from svhn_sweep.constants import IMAGE_SHAPE, NUM_CLASSES, SPLIT_FILES, SVHN_TEST_SIZE, SVHN_TRAIN_SIZE  # noqa: E402
from svhn_sweep.core.data import Split, SyntheticSource  # noqa: E402
from svhn_sweep.core.models import CNN  # noqa: E402
from svhn_sweep.core.train import BATCH_SIZE  # noqa: E402


def random_train_file(size: int) -> Split:
    """SVHN-shaped uint8 images and labels, for timing only."""
    generator = torch.Generator().manual_seed(0)
    return Split(
        torch.randint(0, 256, (size, *IMAGE_SHAPE), dtype=torch.uint8, generator=generator),
        torch.randint(0, NUM_CLASSES, (size,), generator=generator),
    )


def train_val(full: Split) -> tuple[Split, Split]:
    """The train file split as the notebook splits it: a random ``VAL_FRACTION`` of it held out."""
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(0))
    n_val = int(len(full) * VAL_FRACTION)
    return full.subset(order[n_val:]), full.subset(order[:n_val])


def mlp_rows(bench: Bench, epochs: Epochs) -> None:
    """Rows 2-4: the notebook's MLP through ``fit`` at the notebook's batch and the trainer's, then the matmul peak."""
    cuda = bench.device.type == "cuda"
    bench.measure(
        "ours64",
        f"svhn_sweep fit, batch {NOTEBOOK_BATCH}, same model and SGD; 1 epoch",
        partial(epochs.later, notebook_mlp, NOTEBOOK_BATCH),
        kind="epoch",
    )
    key = "mlp_gpu" if cuda else "ours"
    bench.measure(
        key,
        f"svhn_sweep fit, batch {BATCH_SIZE} (trainer.batch_size); 1 epoch",
        partial(epochs.later, notebook_mlp, BATCH_SIZE),
        kind="epoch",
    )
    if epochs.amp:
        bench.measure(
            "mlp_fp32",
            "the same in fp32 (trainer.amp=false); 1 epoch",
            partial(epochs.later, notebook_mlp, BATCH_SIZE, amp=False),
            kind="epoch",
        )
    if cuda:
        bench.measure(
            "mlp_eager",
            "the same without CUDA graphs (trainer.cuda_graphs=false); 1 epoch",
            partial(epochs.later, notebook_mlp, BATCH_SIZE, cuda_graphs=False),
            kind="epoch",
        )
    seconds = bench.value("mlp_fp32") if epochs.amp else bench.value(key)  # the fp32 epoch, against the fp32 peak
    if seconds is not None:
        peak = partial(matmul_peak.peak_fraction, seconds, len(epochs.train), len(epochs.val), bench.device)
        bench.measure(
            "peak", f"fraction of the fp32 matmul peak that the batch-{BATCH_SIZE} epoch reaches", peak, kind="fraction"
        )


def cnn_rows(bench: Bench, epochs: Epochs, compile_model: bool) -> None:
    """The small CNN's epochs: as the trainer runs it, in fp32, without CUDA graphs, compiled; each where it applies."""
    cuda, shown = bench.device.type == "cuda", precision(epochs.amp)
    bench.measure(
        "cnn_gpu",
        f"small CNN (model=cnn), batch {BATCH_SIZE}, {shown}; 1 epoch",
        partial(epochs.later, CNN, BATCH_SIZE),
        kind="epoch",
    )
    if epochs.amp:
        bench.measure(
            "cnn_fp32",
            f"small CNN, batch {BATCH_SIZE}, fp32; 1 epoch",
            partial(epochs.later, CNN, BATCH_SIZE, amp=False),
            kind="epoch",
        )
    if cuda:
        bench.measure(
            "cnn_eager",
            f"small CNN, batch {BATCH_SIZE}, {shown}, without CUDA graphs; 1 epoch",
            partial(epochs.later, CNN, BATCH_SIZE, cuda_graphs=False),
            kind="epoch",
        )
    if compile_model:
        bench.measure(
            "cnn_compile",
            f"small CNN, trainer.compile=true, {shown}: first epoch, compile included",
            partial(epochs.first_compiled, CNN, BATCH_SIZE),
            kind="epoch",
        )


def run(args: argparse.Namespace) -> str:
    """Measure every row that applies to ``args`` and return the report: a header and a markdown table."""
    device = torch.device(args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu")
    cuda, repeats, sizes = device.type == "cuda", args.repeats, (args.train_size, args.test_size)
    root = Path(args.data_root).resolve()
    source = None if args.quick else SyntheticSource(str(root), train_size=sizes[0], test_size=sizes[1])
    full = random_train_file(sizes[0]) if source is None else source.load("train")
    epochs = Epochs(*(split.to(device) for split in train_val(full)), repeats)
    data_line = (
        "random uint8 pixels of SVHN's shapes (timing only)"
        if source is None
        else f"the synthetic SVHN stand-in (SVHN-sized, not SVHN) in {root}"
    )
    header = "\n".join(
        [
            f"svhn_sweep benchmark, {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"Machine: {machine(device)}",
            f"Data: {data_line}; train file {sizes[0]} rows -> {len(epochs.train)} train + {len(epochs.val)} val",
            f"Command: python benchmarks/bench.py {' '.join(sys.argv[1:])}  (medians of {repeats} repeats)",
        ]
    )
    bench = Bench(device, header, Path(args.out) if args.out else None)

    bench.measure(
        "notebook",
        f"notebook pipeline: Dataset + DataLoader, batch {NOTEBOOK_BATCH}, MLP 1×100, SGD; 1 epoch",
        partial(notebook_epoch, full, 1 if args.quick else repeats),
    )
    mlp_rows(bench, epochs)
    if not (args.quick or args.skip_sweep):
        for launcher in sweep_overhead.LAUNCHERS:
            bench.measure(
                launcher.name,
                f"sweep overhead per trial, {launcher.name} launcher (n_jobs={launcher.n_jobs})",
                partial(sweep_overhead.per_trial_overhead, root, sizes, launcher, repeats),
            )
    if source is not None and not args.skip_load:
        bench.measure(
            "first",
            f"first load of {SPLIT_FILES['train']} ({sizes[0]} rows) into tensors",
            partial(data_load.first_load, source, repeats),
        )
        bench.measure(
            "cached", "cached load of the same (.npz beside the .mat)", partial(data_load.cached_load, source, repeats)
        )
    if cuda if args.cnn is None else args.cnn:
        cnn_rows(bench, epochs, cuda if args.compile is None else args.compile)
    if cuda:
        bench.measure(
            "graphs_same",
            "CUDA graphs change no number: largest parameter difference to eager after 2 epochs (fp32)",
            partial(cuda_graphs_check.graph_difference, epochs.train, epochs.val, BATCH_SIZE),
            kind="number",
        )
    return bench.report()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; every row that a flag skips is named in its help."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per row; the median is shown (the matmul peak row picks its own)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="random pixels, notebook pipeline once, no sweep or load rows (no Hydra/Optuna needed)",
    )
    parser.add_argument("--data-root", default="data/synthetic", help="where the synthetic set is (generated once)")
    parser.add_argument("--train-size", type=int, default=SVHN_TRAIN_SIZE)
    parser.add_argument("--test-size", type=int, default=SVHN_TEST_SIZE)
    parser.add_argument("--skip-sweep", action="store_true", help="skip row 5 (needs the full install)")
    parser.add_argument("--skip-load", action="store_true", help="skip row 6")
    parser.add_argument("--cnn", action=argparse.BooleanOptionalAction, help="CNN rows (default: on CUDA only)")
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, help="the CNN's torch.compile row (default: on CUDA only)"
    )
    parser.add_argument("--out", help="also write the report (markdown) to this file, updated after every row")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Print the report of the rows that the command line asks for."""
    print(run(parse_args(argv)))


if __name__ == "__main__":
    main()
