"""Sweep throughput: trials per minute and the wall time of a fixed search, its best val accuracy beside it.

    python benchmarks/sweep_throughput.py                                    # CPU: 8 one-epoch trials, n_jobs 1, 2
    python benchmarks/sweep_throughput.py --device cuda --out throughput.md  # GPU: MLP 40 x 10 epochs, 1/4/8/2
                                                                             # in flight, then the CNN 16 x 10
    python benchmarks/sweep_throughput.py --barrier --seeds 42 43 44         # batches against asynchronous slots

``--barrier`` (issue 19) runs the pruned search (12 trials x 4 epochs, the default median pruner, joblib with
``--slots`` 2 trials in flight, one torch thread per trial) once with ``hydra.sweeper.batch=true`` (each batch waits
for its slowest trial) and once asynchronously (a slot starts its next trial as soon as its last one is told), and
gives for each: trials per minute of the whole command, the slots' utilisation (the trials' own run time,
``metrics.json`` ``duration_s`` summed, over slots x the time from the first trial's start to the last one's end),
and the per-trial overhead: on each slot, the time from one trial's end to the next one's first epoch (the sweeper's
tell and ask, the launcher, Hydra composing the job's config and folder, the data in the worker and the model
build; in batch mode also the wait for the batch's slowest trial), from the trials' ``metrics.json`` ``clock``.

One row per search and number of trials in flight: the real command (``python -m svhn_sweep --multirun
data=synthetic ...``, ``sweep.pruner=none``, no final step) in a fresh folder, once per sampler seed; one trial in
flight is the default basic launcher, more are ``hydra/launcher=joblib`` with ``hydra.sweeper.n_jobs``. The value
is trials per minute of the whole command (start-up included, as a user waits for it); the note has the wall time,
the best val accuracy per seed (batching must not make the search worse: TPE runs with ``constant_liar``), the
ratio to the same search one trial at a time, and whether the rows tried the same configs (TPE's first 10 trials
are its seeded random start-up, so a search of fewer trials proposes the same ones whatever ``n_jobs`` is); when
they did, how far each trial's val accuracy moved. On a CPU it moves with the thread count, which the sweeper
splits between the trials in flight (cores / n_jobs); ``--threads`` fixes it for every row, and then nothing
that runs beside a trial may change its result.
The data set is the procedural stand-in (``data=synthetic``), not SVHN.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the checkout's package and these benchmarks, installed or not

from benchmarks.sweep_overhead import multirun  # noqa: E402
from benchmarks.table import Bench, machine  # noqa: E402
from svhn_sweep.constants import METRICS_FILE, SVHN_TEST_SIZE, SVHN_TRAIN_SIZE  # noqa: E402
from svhn_sweep.core.data import SyntheticSource  # noqa: E402


@dataclass(frozen=True)
class Search:
    """A fixed search: the model's default search space, this many trials of this many epochs (pruned: the
    default pruner, else none).
    """

    model: str
    trials: int
    epochs: int
    pruned: bool = False


@dataclass(frozen=True)
class Sweep:
    """What one command did: its wall seconds, its trials' parameters and values in order, the best val accuracy,
    and each trial's ``metrics.json`` (its ``duration_s``, ``clock`` and ``process``).
    """

    wall: float
    params: tuple[str, ...]
    values: tuple[float | None, ...]
    best: float
    runs: tuple[dict, ...] = ()


def run_sweep(
    root: Path, sizes: tuple[int, int], search: Search, n_jobs: int, seed: int, device: str, extra: tuple[str, ...]
) -> Sweep:
    """Run the search once, in a fresh folder whose ``data/synthetic`` links to ``root``, with ``extra`` overrides."""
    from optuna.trial import TrialState  # the sweep's own packages, imported only where a sweep is measured

    from svhn_sweep.sweep.study import StudyRef

    parallel = ["hydra/launcher=joblib", f"hydra.sweeper.n_jobs={n_jobs}", f"hydra.launcher.n_jobs={n_jobs}"]
    overrides = [
        f"data.train_size={sizes[0]}",
        f"data.test_size={sizes[1]}",
        f"model={search.model}",
        f"trainer.epochs={search.epochs}",
        f"trainer.device={device}",
        f"seed={seed}",
        *([] if search.pruned else ["sweep.pruner=none"]),
        "final.enabled=false",
        f"hydra.sweeper.n_trials={search.trials}",
        *(parallel if n_jobs > 1 else []),
        *extra,
    ]
    with multirun(root, overrides) as (sweep_dir, _, wall):
        trials = StudyRef.from_sweep_dir(sweep_dir).load().trials
        runs = tuple(json.loads((sweep_dir / str(t.number) / METRICS_FILE).read_text()) for t in trials)
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
    params = tuple(str(sorted(t.params.items())) for t in trials)
    return Sweep(wall, params, tuple(t.value for t in trials), max(complete, default=float("nan")), runs)


def trials_per_minute(
    root: Path,
    sizes: tuple[int, int],
    search: Search,
    n_jobs: int,
    seeds: list[int],
    device: str,
    extra: tuple[str, ...],
    serial: dict[int, Sweep],
) -> tuple[float, str]:
    """Trials per minute over one sweep per seed; against ``serial`` (the same search one at a time) when measured.

    The one-at-a-time row fills ``serial`` for the rows after it.
    """
    sweeps = {seed: run_sweep(root, sizes, search, n_jobs, seed, device, extra) for seed in seeds}
    if n_jobs == 1:
        serial.update(sweeps)
    wall = sum(s.wall for s in sweeps.values())
    rate = 60 * search.trials * len(seeds) / wall
    best = ", ".join(f"{s.best:.4f}" for s in sweeps.values())
    note = f"wall {wall / len(seeds):.1f} s per search; best val acc {best} (seed {', '.join(map(str, seeds))})"
    if n_jobs > 1 and all(seed in serial for seed in seeds):
        serial_rate = 60 * search.trials * len(seeds) / sum(serial[seed].wall for seed in seeds)
        note += f"; {rate / serial_rate:.2f}× one at a time"
        if all(sweeps[seed].params == serial[seed].params for seed in seeds):
            # The same configs alone and beside others: what runs beside a trial must not change its result.
            apart = max(
                abs(a - b)
                for seed in seeds
                for a, b in zip(sweeps[seed].values, serial[seed].values, strict=True)
                if a is not None and b is not None
            )
            note += f"; same trials as one at a time, val acc differs by at most {apart:.4f}"
        else:
            note += "; other trials than one at a time (TPE past its start-up)"
    return rate, note


@dataclass(frozen=True)
class SlotUse:
    """How one mode's sweeps used their slots, over all seeds (see the module docstring)."""

    rate: float  # trials per minute of the commands
    utilisation: float  # the trials' own seconds over slots x their span, all sweeps together
    overhead: float  # median seconds from a slot's trial ending to its next trial's first epoch
    before_job: float  # median of its part before the next job's task starts (sweeper, launcher, Hydra)
    in_job: float  # median of its part in the task (data in the worker, model build)
    sweeps: dict[int, Sweep]


def slot_use(sweeps: dict[int, Sweep], slots: int, trials: int) -> SlotUse:
    """Utilisation and per-trial overhead of ``sweeps`` (one per seed), from their trials' ``metrics.json``."""
    own = span = 0.0
    gaps: list[tuple[float, float]] = []  # (end -> next task start, next task start -> its first epoch)
    for sweep in sweeps.values():
        clocks = [(r["process"]["slot"], r["clock"]) for r in sweep.runs]
        own += sum(r["duration_s"] for r in sweep.runs)
        span += max(c["ended"] for _, c in clocks) - min(c["started"] for _, c in clocks)
        for slot in range(slots):
            ran = sorted((c for s, c in clocks if s == slot), key=lambda c: c["started"])
            gaps += [
                (after["started"] - before["ended"], after["training"] - after["started"])
                for before, after in zip(ran, ran[1:], strict=False)
                if after["training"] is not None
            ]
    if not gaps:
        raise RuntimeError("no slot ran two trials that trained: give more trials than slots")
    return SlotUse(
        rate=60 * trials * len(sweeps) / sum(s.wall for s in sweeps.values()),
        utilisation=own / (slots * span),
        overhead=statistics.median(a + b for a, b in gaps),
        before_job=statistics.median(a for a, _ in gaps),
        in_job=statistics.median(b for _, b in gaps),
        sweeps=sweeps,
    )


def measure_mode(
    root: Path, sizes: tuple[int, int], search: Search, args: argparse.Namespace, batch: bool, into: list[SlotUse]
) -> tuple[float, str]:
    """Trials per minute of the search in one mode over the seeds; its :class:`SlotUse` goes to ``into``."""
    extra = ("trainer.num_threads=1", f"hydra.sweeper.batch={str(batch).lower()}")
    sweeps = {seed: run_sweep(root, sizes, search, args.slots, seed, args.device, extra) for seed in args.seeds}
    into.append(slot_use(sweeps, args.slots, search.trials))
    walls = ", ".join(f"{s.wall:.1f}" for s in sweeps.values())
    best = ", ".join(f"{s.best:.4f}" for s in sweeps.values())
    return into[0].rate, f"wall {walls} s; best val acc {best} (seed {', '.join(map(str, args.seeds))})"


def utilisation_row(measured: list[SlotUse]) -> tuple[float, str]:
    """The slots' utilisation of a mode measured before, with the trials' own time and how many were pruned."""
    (use,) = measured
    runs = [r for s in use.sweeps.values() for r in s.runs]
    pruned = sum(r["status"] == "pruned" for r in runs)
    own = sum(r["duration_s"] for r in runs)
    return use.utilisation, f"trials' own {own:.1f} s; {pruned} of {len(runs)} trials pruned"


def overhead_row(measured: list[SlotUse], batch: bool) -> tuple[float, str]:
    """The per-trial overhead of a mode measured before, with its two parts."""
    (use,) = measured
    reads = max(r["process"]["data_disk_reads"] for s in use.sweeps.values() for r in s.runs)
    waiting = ", waiting for the batch's slowest trial" if batch else ""
    return use.overhead, (
        f"median parts: {use.before_job:.2f} s before the job's task (tell, ask, launcher, Hydra's config and "
        f"folder{waiting}), {use.in_job:.2f} s in it (data, model build); a worker read the train file at most "
        f"{reads}x"
    )


def barrier_rows(bench: Bench, root: Path, sizes: tuple[int, int], args: argparse.Namespace) -> None:
    """The batch loop against asynchronous slots on the pruned search: three rows per mode."""
    search = Search("mlp", *args.mlp, pruned=True)
    shape = f"mlp search, {search.trials} trials x {search.epochs} epochs, median pruner, {args.slots} slots"
    for mode, batch in (("batch", True), ("async", False)):
        measured: list[SlotUse] = []
        rate = partial(measure_mode, root, sizes, search, args, batch, measured)
        bench.measure(f"{mode}_rate", f"{shape}, {mode}: trials per minute", rate, kind="number")
        use = partial(utilisation_row, measured)
        bench.measure(f"{mode}_use", f"{shape}, {mode}: utilisation of the slots", use, kind="fraction")
        overhead = partial(overhead_row, measured, batch)
        bench.measure(f"{mode}_overhead", f"{shape}, {mode}: slot free -> next trial training", overhead)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line; the defaults follow the device (a CPU gets the small search)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--jobs", type=int, nargs="+", help="trials in flight per row (CPU: 1 2; CUDA: 1 4 8 2)")
    parser.add_argument("--models", nargs="+", choices=["mlp", "cnn"], help="searches (CPU: mlp; CUDA: mlp cnn)")
    parser.add_argument(
        "--mlp", type=int, nargs=2, metavar=("TRIALS", "EPOCHS"), help="CPU: 8 1; CUDA: 40 10; --barrier: 12 4"
    )
    parser.add_argument("--cnn", type=int, nargs=2, metavar=("TRIALS", "EPOCHS"), default=[16, 10])
    parser.add_argument("--seeds", type=int, nargs="+", default=[42], help="sampler seeds (one sweep each per row)")
    parser.add_argument("--data-root", default="data/synthetic", help="where the synthetic set is (generated once)")
    parser.add_argument("--train-size", type=int, default=SVHN_TRAIN_SIZE)
    parser.add_argument("--test-size", type=int, default=SVHN_TEST_SIZE)
    parser.add_argument(
        "--threads",
        type=int,
        help="trainer.num_threads for every trial (default: the sweeper's, cores / n_jobs): with the same count "
        "at every n_jobs, a trial's val accuracy must not move with what runs beside it",
    )
    parser.add_argument("--out", help="also write the report (markdown) to this file, updated after every row")
    parser.add_argument(
        "--barrier",
        action="store_true",
        help="instead: batches against asynchronous slots on the pruned MLP search (utilisation, overhead)",
    )
    parser.add_argument("--slots", type=int, default=2, help="--barrier: trials in flight (default 2)")
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    args.jobs = args.jobs or ([1, 4, 8, 2] if cuda else [1, 2])
    args.models = args.models or (["mlp", "cnn"] if cuda else ["mlp"])
    args.mlp = args.mlp or ([12, 4] if args.barrier else [40, 10] if cuda else [8, 1])
    return args


def main(argv: list[str] | None = None) -> None:
    """Measure each search with each number of trials in flight and print the table."""
    args = parse_args(argv)
    sizes, root = (args.train_size, args.test_size), Path(args.data_root).resolve()
    start = time.perf_counter()
    SyntheticSource(str(root), train_size=sizes[0], test_size=sizes[1]).ensure_files()
    prepared = time.perf_counter() - start
    device = torch.device(args.device)
    header = "\n".join(
        [
            f"svhn_sweep sweep throughput, {datetime.datetime.now().isoformat(timespec='seconds')}",
            f"Machine: {machine(device)}",
            f"Data: the synthetic SVHN stand-in (not SVHN), train file {sizes[0]} rows, in {root} "
            f"(ready in {prepared:.0f} s)",
            f"Command: python benchmarks/sweep_throughput.py {' '.join(sys.argv[1:] if argv is None else argv)}",
            "Value: trials per minute of the whole command, start-up included; one sweep per seed"
            + (" (with --barrier also the slots' utilisation and the per-trial overhead)." if args.barrier else "."),
        ]
    )
    bench = Bench(device, header, Path(args.out) if args.out else None)
    if args.barrier:
        barrier_rows(bench, root, sizes, args)
        print(bench.report())
        return
    extra = () if args.threads is None else (f"trainer.num_threads={args.threads}",)
    for model in args.models:
        search = Search(model, *(args.mlp if model == "mlp" else args.cnn))
        serial: dict[int, Sweep] = {}
        for n_jobs in sorted(args.jobs, key=lambda n: n != 1):  # one at a time first: the others compare to it
            bench.measure(
                f"{model}_{n_jobs}",
                f"{model} search, {search.trials} trials x {search.epochs} epochs, {n_jobs} in flight (trials/min)",
                partial(trials_per_minute, root, sizes, search, n_jobs, args.seeds, args.device, extra, serial),
                kind="number",
            )
    print(bench.report())


if __name__ == "__main__":
    main()
