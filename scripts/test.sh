#!/usr/bin/env bash
# Quick start 2: the test suite (fast tests and the marked slow end-to-end ones),
# one pytest worker per core (pytest-xdist); the tests of a file stay on one
# worker so its shared trained fixtures are built once.
# Extra args go to pytest, e.g. `bash scripts/test.sh -m "not slow"`, or
# `bash scripts/test.sh -n 0 tests/models` for one process.
# TEST_WORKERS=N sets the number of workers (default: one per core, at most 4:
# each holds TensorFlow and a model, ~1-2 GB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
CORES="$(nproc 2>/dev/null || echo 2)"
WORKERS="${TEST_WORKERS:-$(( CORES < 4 ? CORES : 4 ))}"
exec "$PY" -m pytest -n "$WORKERS" --dist loadfile "$@"
