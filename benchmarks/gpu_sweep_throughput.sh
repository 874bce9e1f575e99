#!/usr/bin/env bash
# The GPU rows of issues 11 and 19, prepared for a session that is lent a CUDA machine; about 7 minutes on one
# H100 (estimate: not run yet). From the repository root:
#
#     bash benchmarks/gpu_sweep_throughput.sh OUT_DIR        # the device tool: command 'bash benchmarks/gpu_sweep_
#                                                            # throughput.sh "$OUT"', timeout_s 420, carry [".whl"]
#
# The machine has torch; if Hydra/Optuna are missing, it installs the wheels carried in .whl/ (ignored by git; the
# checkout itself is run through PYTHONPATH), made here beforehand with
#     pip download -d .whl --no-deps hydra-core==1.4.0rc3 omegaconf antlr4-python3-runtime optuna alembic \
#         sqlalchemy colorlog mako hydra-optuna-sweeper==1.4.0rc3 hydra-joblib-launcher==1.4.0rc3 joblib \
#         hydra-submitit-launcher==1.4.0rc3 submitit cloudpickle filelock tabulate pandas tzdata python-dateutil
# (plus scipy/matplotlib if the machine lacks them; the tree that travels is limited to 64 MiB).
#
# 1. SVHN-sized synthetic data, generated once (about a minute on one core);
# 2. the MLP search (40 trials x 10 epochs) with 1, 4 and 8 trials in flight, then the CNN search (16 x 10) with 1
#    and 4: each a table in OUT_DIR, written after every row, so a run cut short keeps what it measured;
# 3. batches against asynchronous slots (issue 19; the rows of step 2 run asynchronously, the default): the pruned
#    MLP search, 12 trials x 4 epochs, 4 slots, its utilisation and per-trial overhead (about 2 minutes, estimate);
# 4. the device spread: a 2-trials-per-card joblib sweep, printing the device each trial trained on (on a machine
#    with one card all are cuda:0; with several, each card gets two).
set -uo pipefail
out=${1:-.}
mkdir -p "$out"
python -c "import hydra, optuna, hydra_plugins.hydra_joblib_launcher" 2>/dev/null ||
    pip install --no-index --no-deps .whl/*.whl >/dev/null
nvidia-smi -L | tee "$out/gpus.txt"
python -c "from svhn_sweep.core.data import SyntheticSource as S; S('data/synthetic').ensure_files()"
timeout 170 python benchmarks/sweep_throughput.py --device cuda --models mlp --jobs 1 4 8 --out "$out/mlp.md"
timeout 110 python benchmarks/sweep_throughput.py --device cuda --models cnn --jobs 1 4 --out "$out/cnn.md"
timeout 150 python benchmarks/sweep_throughput.py --device cuda --barrier --slots 4 --out "$out/barrier.md"
spread=$(mktemp -d)
(cd "$spread" && ln -s "$OLDPWD/data" data && PYTHONPATH="$OLDPWD" timeout 60 python -m svhn_sweep --multirun \
    data=synthetic hydra/launcher=joblib hydra.sweeper.trials_per_device=2 hydra.sweeper.n_trials=4 \
    trainer.epochs=1 final.enabled=false > "$out/spread.log" 2>&1)
python - "$spread" <<'EOF' | tee "$out/spread.txt"
import json, pathlib, sys
for metrics in sorted(pathlib.Path(sys.argv[1]).glob("outputs/sweeps/*/*/metrics.json")):
    print(metrics.parent.name, json.loads(metrics.read_text())["process"]["device"])
EOF
