"""The benchmark's table: its rows, their targets, the machine line and the markdown report.

Each module beside this one measures one thing and hands back ``(value, note)``; :meth:`Bench.measure` turns that
into a row. It notes how much of the row's time other processes kept a CPU busy (on a shared machine a figure
means little without it), judges the row against its target, and rewrites the report after every row, so that a
run cut short (a device lease running out) still leaves the rows it measured.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

# A row's measurement: its value (seconds, or a fraction for the peak row) and its note.
Measurement = Callable[[], tuple[float, str]]
# How a row shows its value: "epoch" rows are seconds with a speed-up against the notebook's row, "fraction" rows
# a percentage, "number" rows the value as it is, "seconds" rows just seconds.
Kind = Literal["seconds", "epoch", "fraction", "number"]
BASELINE = "notebook"  # the row that the epoch rows' speed-ups are against

# Targets of issue 5, for a 2-core CPU and for an H100: row key -> (device type, wording, test). The fit epochs at
# batch 64 and 256 are judged on their speed-up against the notebook on the CPU, on their time on a GPU.
TARGETS: dict[str, tuple[str, str, Callable[[float], bool]]] = {
    "ours64": ("cpu", "≥ 8×", lambda speedup: speedup >= 8),
    "ours": ("cpu", "≥ 15×", lambda speedup: speedup >= 15),
    "peak": ("cpu", "≥ 70 %", lambda fraction: fraction >= 0.70),
    "basic": ("cpu", "≤ 0.5 s", lambda seconds: seconds <= 0.5),
    "joblib": ("cpu", "≤ 0.5 s", lambda seconds: seconds <= 0.5),
    "cached": ("cpu", "≤ 1 s", lambda seconds: seconds <= 1.0),
    "mlp_gpu": ("cuda", "≤ 0.2 s (H100)", lambda seconds: seconds <= 0.2),
    "cnn_gpu": ("cuda", "≤ 2 s (H100)", lambda seconds: seconds <= 2.0),
    # issue 18: a checkpoint after every epoch costs under 5 % of an epoch of the default MLP (checkpoint_cost.py)
    "ckpt_cost": ("cpu", "< 5 %", lambda fraction: fraction < 0.05),
    "async_use": ("cpu", "≥ 90 %", lambda fraction: fraction >= 0.90),  # issue 19: sweep_throughput.py --barrier
}
JUDGED_ON_SPEEDUP = ("ours64", "ours")


@dataclass
class Row:
    """One line of the table, as shown; ``value`` is what its target judges."""

    key: str
    label: str
    value: float | None  # seconds, or a fraction for the peak row; None when the measurement failed
    shown: str
    speedup: str = ""
    target: str = ""
    note: str = ""


def median_seconds(run: Callable[[], object], repeats: int, before: Callable[[], object] = lambda: None) -> float:
    """Median wall seconds of ``repeats`` calls of ``run``, each after an untimed ``before``.

    For runs long enough that one call is a measurement (an epoch, a file load): ``torch.utils.benchmark`` would
    add warm-up calls of its own, and the first such call is often the very thing being measured.
    """
    seconds = []
    for _ in range(repeats):
        before()
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def machine(device: torch.device) -> str:
    """CPU model, cores, torch and its threads, load average (and the GPU): what the figures depend on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):  # Linux names the model; elsewhere platform's guess stays
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    text = (
        f"CPU {cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if device.type == "cuda":
        text += f"; GPU {torch.cuda.get_device_name(device)}"
    return text


def cpu_wait_seconds() -> float | None:
    """Linux's CPU pressure counter: total seconds in which some runnable task waited for a CPU."""
    try:
        return int(Path("/proc/pressure/cpu").read_text().split()[4].split("=")[1]) / 1e6
    except (OSError, IndexError, ValueError):
        return None


def fmt_seconds(seconds: float) -> str:
    """Seconds to three decimals below 10 s, to one above: the digits that runs repeat."""
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


@dataclass
class Bench:
    """The rows measured so far; with ``out``, the report is rewritten there after every row."""

    device: torch.device
    header: str
    out: Path | None
    rows: list[Row] = field(default_factory=list)

    def value(self, key: str) -> float | None:
        """The value of the row ``key``; None if it was not measured or failed."""
        return next((row.value for row in self.rows if row.key == key), None)

    def measure(self, key: str, label: str, how: Measurement, kind: Kind = "seconds") -> None:
        """Run one measurement; a failure becomes a row that says so, and the rest of the table still runs."""
        print(f"... {label}", file=sys.stderr, flush=True)
        waited, start = cpu_wait_seconds(), time.perf_counter()
        try:
            value, note = how()
        except Exception as error:  # one broken row must not cost the whole (possibly one-shot) run
            traceback.print_exc()
            self.rows.append(Row(key, label, None, "failed", note=f"{type(error).__name__}: {error}"[:300]))
            self.save()
            return
        if waited is not None:  # how much of the row's time runnable tasks waited for a CPU (others' load)
            note += f"; CPU contention {(cpu_wait_seconds() - waited) / (time.perf_counter() - start):.0%}"
        shown = {"fraction": f"{value:.0%}", "number": f"{value:.3g}"}.get(kind) or fmt_seconds(value)
        row = Row(key, label, value, shown, note=note)
        baseline = self.value(BASELINE)
        speedup = baseline / value if baseline and kind == "epoch" else None
        if speedup is not None:
            row.speedup = f"{speedup:.1f}×"
        if key in TARGETS and TARGETS[key][0] == self.device.type:
            _, wording, ok = TARGETS[key]
            judged = speedup if key in JUDGED_ON_SPEEDUP else value
            if judged is not None:
                row.target = f"{wording}: {'met' if ok(judged) else 'MISSED'}"
        self.rows.append(row)
        print(f"    {row.shown} {row.speedup} {row.target}", file=sys.stderr, flush=True)
        self.save()

    def report(self) -> str:
        """The header and a markdown table of the rows."""
        lines = [
            self.header,
            "",
            "| # | measurement | median | speed-up vs (1) | target | note |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {i} | {r.label} | {r.shown} | {r.speedup} | {r.target} | {r.note} |" for i, r in enumerate(self.rows, 1)
        ]
        return "\n".join(lines) + "\n"

    def save(self) -> None:
        """Write the report to ``out``, so that a run cut short still leaves the rows it measured."""
        if self.out is not None:
            self.out.parent.mkdir(parents=True, exist_ok=True)
            self.out.write_text(self.report())
