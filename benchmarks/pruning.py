"""Pruned versus unpruned sweeps, same sampler seeds and trial count: epochs trained, wall time, best val accuracy.

    python benchmarks/pruning.py                                   # none vs median, 20 trials x 8 epochs, seed 42
    python benchmarks/pruning.py --pruners none median hyperband --seeds 0 1 2
    python benchmarks/pruning.py --pruners none --seeds 0 1 2 --replay median median:n_warmup_steps=1 hyperband
    python benchmarks/pruning.py --unpruned SWEEP_DIR... --replay ...   # replay on sweeps already run (unpruned)

Each sweep is the real command (``python -m svhn_sweep --multirun data=synthetic ...``) in a fresh folder; the
figures come from its Optuna study. A pruner is ``NAME`` (an option of ``sweep/pruner``) or
``NAME:KEY=VALUE,...`` (its keys overridden). ``--replay`` also runs each candidate pruner, in this process, on
the recorded learning curves of every unpruned sweep (trials in their order, each reported epoch by epoch, stopped
when the pruner says so): many pruners for the price of one sweep per seed, on the trial sequence of the
unpruned search (a real pruned sweep's sampler would see the pruned trials and propose others). Only the sampler's
seed changes between seeds. The data set is the procedural stand-in, not SVHN.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import optuna
import pandas as pd
from omegaconf import OmegaConf
from optuna.trial import TrialState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the checkout's package, installed or not

from benchmarks.sweeps import REPO, add_sweep_arguments, load_note, medians, run_sweep, seed_overrides  # noqa: E402
from svhn_sweep.sweep.config import build  # noqa: E402
from svhn_sweep.sweep.study import StudyRef  # noqa: E402

PRUNER_CONF = REPO / "svhn_sweep" / "conf" / "sweep" / "pruner"


def parse_pruner(spec: str) -> tuple[str, list[str]]:
    """``median:n_warmup_steps=1,n_startup_trials=2`` -> ("median", ["n_warmup_steps=1", "n_startup_trials=2"])."""
    name, _, keys = spec.partition(":")
    return name, [key for key in keys.split(",") if key]


def pruner_overrides(spec: str) -> list[str]:
    """The command line that chooses a pruner spec."""
    name, keys = parse_pruner(spec)
    if name == "none":
        return ["sweep.pruner=none"]
    return [f"sweep/pruner={name}", *(f"sweep.pruner.{key}" for key in keys)]


def build_pruner(spec: str, epochs: int) -> optuna.pruners.BasePruner:
    """The pruner a spec names, built from its ``sweep/pruner`` file as the sweep would."""
    name, keys = parse_pruner(spec)
    if name == "none":
        return optuna.pruners.NopPruner()
    node = OmegaConf.merge(
        {"trainer": {"epochs": epochs}},
        {"pruner": OmegaConf.load(PRUNER_CONF / f"{name}.yaml")},
        OmegaConf.from_dotlist([f"pruner.{key}" for key in keys]),
    )
    return build(node.pruner)


def curves(sweep_dir: str) -> list[list[float]]:
    """Each complete trial's val accuracy per epoch, in trial order (diverged trials are left out)."""
    trials = StudyRef.from_sweep_dir(Path(sweep_dir)).load().get_trials(states=(TrialState.COMPLETE,))
    return [[t.intermediate_values[step] for step in sorted(t.intermediate_values)] for t in trials]


def replay(recorded: list[list[float]], pruner: optuna.pruners.BasePruner) -> dict[str, object]:
    """Run ``pruner`` over recorded curves as a sweep would: report each epoch, ask it before all but the last."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", pruner=pruner, sampler=optuna.samplers.RandomSampler(0))
    epochs = 0
    for curve in recorded:
        trial = study.ask()
        for step, value in enumerate(curve, start=1):
            trial.report(value, step)
            epochs += 1
            if step < len(curve) and trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, curve[-1])
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    return {
        "trials": len(recorded),
        "complete": len(complete),
        "pruned": len(recorded) - len(complete),
        "epochs": epochs,
        "best_val_acc": max(t.value for t in complete),
    }


def compared(table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Each row against the baseline pruner's row of the same seed: epochs in %, best val accuracy in points."""
    base = table[table["pruner"] == baseline].set_index("seed")
    table = table.copy()
    table["epochs_%"] = (100 * table["epochs"] / table["seed"].map(base["epochs"])).round(1)
    table["vs_base_pts"] = (100 * (table["best_val_acc"] - table["seed"].map(base["best_val_acc"]))).round(2)
    return table


def main() -> None:
    """Run one sweep per pruner and seed (and replay the candidates), then print the tables, each against none."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pruners", nargs="+", default=["none", "median"], help="the first is the baseline")
    parser.add_argument("--replay", nargs="*", default=[], metavar="PRUNER", help="replayed on the unpruned curves")
    parser.add_argument("--unpruned", nargs="*", default=[], metavar="SWEEP_DIR", help="replay on these, run none")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=8)
    add_sweep_arguments(parser, train_size=20000, test_size=2000)
    args = parser.parse_intermixed_args()  # overrides may come before or after the options
    if args.unpruned:
        table = pd.DataFrame({"pruner": "none", "seed": seed, "folder": f} for seed, f in enumerate(args.unpruned))
        return print_replay(table, args.replay, args.epochs)
    if args.replay and "none" not in args.pruners:
        parser.error("--replay needs the unpruned sweeps: put none into --pruners")

    runs = []
    for seed in args.seeds:
        for spec in args.pruners:
            overrides = [
                f"trainer.epochs={args.epochs}",
                f"hydra.sweeper.n_trials={args.trials}",
                "final.enabled=false",
                *pruner_overrides(spec),
                *seed_overrides(args, seed),
            ]
            runs.append({"pruner": spec, "seed": seed, **run_sweep(f"pruning-{seed}", overrides)})
            print(pd.DataFrame(runs[-1:]).to_markdown(index=False), flush=True)
    table = compared(pd.DataFrame(runs), args.pruners[0])
    print(
        f"\nSynthetic data set (not SVHN), {args.train_size} train images, {args.trials} trials x {args.epochs} "
        f"epochs, sampler seeds {args.seeds}, overrides {args.overrides or 'none'}; baseline {args.pruners[0]}; "
        f"{load_note()} at the end"
    )
    columns = ["epochs_%", "vs_base_pts", "best_val_acc", "epochs", "wall_s"]
    print(table.drop(columns=["folder", "test_acc"]).to_markdown(index=False))
    print(medians(table, "pruner", columns).to_markdown())
    if args.replay:
        print_replay(table, args.replay, args.epochs)


def print_replay(table: pd.DataFrame, specs: list[str], epochs: int) -> None:
    """Replay ``specs`` on the unpruned sweeps of ``table`` and print each seed's row and the medians."""
    unpruned = table[table["pruner"] == "none"]
    replayed = pd.DataFrame(
        {"pruner": spec, "seed": row.seed, **replay(curves(row.folder), build_pruner(spec, epochs))}
        for spec in ["none", *specs]
        for row in unpruned.itertuples()
    )
    replayed = compared(replayed, "none")
    print("\nReplayed on the unpruned sweeps' learning curves (same trials, in order):")
    print(replayed.to_markdown(index=False))
    print(medians(replayed, "pruner", ["epochs_%", "vs_base_pts", "best_val_acc", "epochs"]).to_markdown())


if __name__ == "__main__":
    main()
