#!/usr/bin/env bash
# Quick start 1: rotation on Fashion-MNIST, then linear evaluation of the trained
# and a random trunk; prints a results table. Extra args go to train_and_eval.py.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$PY" train_and_eval.py --config=configs/demo_fashion_mnist.gin \
  --workdir="${WORKDIR:-$ROOT/workdirs/demo}" "$@"
