#!/usr/bin/env bash
# Quick start 2: the test suite (fast tests and the marked slow end-to-end ones).
# Extra args go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec "$PY" -m pytest "$@"
