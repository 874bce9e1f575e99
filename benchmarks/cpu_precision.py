"""fp32 against bf16 autocast on this CPU, per epoch of the package's training path: what ``trainer.amp=auto``
follows from on a CPU (bf16 where the CPU has AMX matrix units, fp32 elsewhere).

For each default pyramid (``peer_script.CONFIGS``) and ``--batch-sizes`` value: seconds of one ``core.train.fit``
epoch (training pass + val, the sweep's SGD), the median of ``--repeats`` epochs after a first, untimed one, in
fp32 and under bf16 autocast, and their ratio. Random pixels of SVHN's shapes: timing does not depend on them
(what bf16 does to accuracy is in the sweeps' own figures: ``peer_script.py``, the default sweep).

    python benchmarks/cpu_precision.py                       # 8 pyramids x batch 128, 256; about 4 min on 2 cores
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from a checkout

from benchmarks.bench import random_train_file, train_val  # noqa: E402
from benchmarks.peer_script import CONFIGS, LR, MOMENTUM, WEIGHT_DECAY, name  # noqa: E402
from benchmarks.table import machine  # noqa: E402
from svhn_sweep.constants import SVHN_MEAN, SVHN_STD, SVHN_TRAIN_SIZE  # noqa: E402
from svhn_sweep.core.data import Normalizer  # noqa: E402
from svhn_sweep.core.models import MLP  # noqa: E402
from svhn_sweep.core.train import bf16_matrix_units, fit  # noqa: E402


def epoch_seconds(hidden: list[int], batch: int, amp: bool, repeats: int, data: tuple) -> float:
    """Median seconds of the epochs after the first of one ``fit`` run."""
    train, val = data
    torch.manual_seed(0)
    model = MLP(hidden)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    normalize = Normalizer(SVHN_MEAN, SVHN_STD, torch.device("cpu"))
    history = fit(model, optimizer, None, train, val, normalize, 1 + repeats, batch, seed=0, amp=amp)
    return statistics.median(stats.seconds for stats in history[1:])


def main() -> None:
    """The table to stdout, as markdown for docs/performance.md."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--repeats", type=int, default=2, help="timed epochs after the first")
    parser.add_argument("--train-size", type=int, default=SVHN_TRAIN_SIZE)
    args = parser.parse_args()
    data = train_val(random_train_file(args.train_size))
    cpu = torch.device("cpu")
    print(f"Machine: {machine(cpu)}; bf16 matrix units (AMX): {'yes' if bf16_matrix_units(cpu) else 'no'}")
    print(f"Command: python benchmarks/cpu_precision.py --batch-sizes {' '.join(map(str, args.batch_sizes))}\n")
    print("| model | batch | fp32 epoch | bf16 epoch | bf16 speed-up |\n|---|---|---|---|---|")
    for hidden in CONFIGS:
        for batch in args.batch_sizes:
            fp32, bf16 = (epoch_seconds(hidden, batch, amp, args.repeats, data) for amp in (False, True))
            print(f"| {name(hidden)} | {batch} | {fp32:.3f} s | {bf16:.3f} s | {fp32 / bf16:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
