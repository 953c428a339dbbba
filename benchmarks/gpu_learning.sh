#!/usr/bin/env bash
# The GPU learning runs of issues 11 and 12, in one call on a GPU node (about 8 minutes on an H100):
# Breakout NA, 1M steps, evaluations every 100k (10 games), SPEC §4 otherwise —
#   fast-gpu        one run alone (seed 0)
#   fast-pack2-gpu  a pack of 2 (seeds 0 and 1), one process
# side by side. Only what docs/benchmarks.md's parity table needs comes back under OUT: each run's
# evaluations.npz and TensorBoard events, the logs, parity.md and parity.png (checkpoints stay behind).
#
#   export PYTHONPATH=$PWD/.gpu-site:$PWD/src
#   bash benchmarks/gpu_learning.sh "$OUT"              # OUT: where the results go
#   bash benchmarks/gpu_learning.sh /tmp/l 20000 10000  # a dry run: 20k steps, evaluations every 10k
set -euo pipefail
out=${1:?usage: gpu_learning.sh OUT [STEPS] [EVAL_FREQ]}
steps=${2:-1000000}
eval_freq=${3:-100000}
work=$(mktemp -d)
common=(--engines fast --steps "$steps" --eval-freq "$eval_freq" --eval-episodes 10 --out "$work")
mkdir -p "$out"
python benchmarks/parity.py "${common[@]}" --seeds 0 --label fast-gpu >"$out/fast-gpu.log" 2>&1 &
alone=$!
python benchmarks/parity.py "${common[@]}" --seeds 0 1 --pack 2 --label fast-pack2-gpu >"$out/fast-pack2-gpu.log" 2>&1 &
pack=$!
status=0
wait "$alone" || status=$?
wait "$pack" || status=$?
python benchmarks/parity.py --plot-only --out "$work" >"$out/plot.log" 2>&1 || status=$?
for run in "$work"/*_seed*; do
    mkdir -p "$out/$(basename "$run")"
    cp "$run/evaluations.npz" "$run/config.yml" "$out/$(basename "$run")/" 2>/dev/null || true
done
cp -r "$work/tb" "$work/parity.md" "$work/parity.png" "$out/" 2>/dev/null || true
exit "$status"
