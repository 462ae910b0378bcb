#!/usr/bin/env bash
# Every benchmark of BENCHMARKS.md, in its order, with the settings it quotes.
# Usage: bash bench/run_all.sh [OUT_DIR]   (default bench-results/<date>)
# Takes about 1.5-2 hours on a 2-core CPU; each figure goes to its own log.
# Set QUICK=1 for a few-minute smoke run (fewer trunks, rounds and steps).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
OUT="${1:-$ROOT/bench-results/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"
export TF_CPP_MIN_LOG_LEVEL=2 PYTHONUNBUFFERED=1

run() {  # run NAME CMD...: prints and logs one benchmark
  local name="$1"; shift
  echo "== $name: $*"
  "$@" 2>&1 | tee "$OUT/$name.txt"
}

if [ "${QUICK:-0}" = 1 ]; then
  run train_step "$PY" bench/train_step.py --trunks resnet50_v1 --rounds 1 --steps 1 --batch 2
  run input_pipeline "$PY" bench/input_pipeline.py --tasks rotation
  exit 0
fi

run model_sizes "$PY" bench/model_sizes.py
# 1 + 2: every trunk at k = 4, rotation and supervised steps, fp32 and bf16,
# against keras.applications.ResNet50; fraction of the matmul peak.
run train_step "$PY" bench/train_step.py --batch 4 --rounds 3 --steps 2
# XLA on and off (the jit_compile default).
run train_step_xla "$PY" bench/train_step.py --trunks resnet50_v1 revnet50 \
  --tasks rotation --batch 2 --rounds 2 --jit both --no_reference
# 5: every task x trunk at k = 4 and 16 (bf16, the fast path here).
run throughput_table "$PY" bench/train_step.py --no_reference \
  --tasks rotation exemplar jigsaw relative_patch_location supervised \
  --widths 4 16 --batch 1 --steps 1 --rounds 1 --precisions bfloat16
# 3: each task's input pipeline per core against the train step.
run input_pipeline "$PY" bench/input_pipeline.py
# Memory: recomputation and RevNet's reversible backward pass.
run memory "$PY" bench/memory.py
# 4: the demo end to end, float32 then bfloat16.
run end_to_end "$PY" bench/end_to_end.py
# Evaluation: extraction and the L-BFGS solver.
run feature_extraction "$PY" bench/feature_extraction.py
# scikit-learn is the reference here only: installed for this one benchmark.
"$PY" -m pip install -q --disable-pip-version-check -r requirements-bench.txt
run lbfgs_vs_sklearn "$PY" bench/lbfgs_vs_sklearn.py
echo "Logs in $OUT"
