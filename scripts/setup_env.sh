#!/usr/bin/env bash
# Makes the project's environment on a fresh machine, idempotently:
#   - Debian's dataset-fashion-mnist (the demo's and the tests' real data),
#   - a virtualenv in .venv with the pinned requirements.txt.
# Prints nothing but progress; source-able: sets $PY to the env's python.
# Set SSL_PYTHON=/path/to/python to use an existing interpreter instead of .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

if [ ! -f "$FMNIST" ]; then
  echo "[setup] installing Debian package dataset-fashion-mnist ..."
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

if [ -n "${SSL_PYTHON:-}" ]; then
  PY="$SSL_PYTHON"
else
  BASE_PY="$(command -v python3.11 || command -v python3)"
  if [ ! -x "$ROOT/.venv/bin/python" ]; then
    echo "[setup] creating virtualenv .venv with $("$BASE_PY" --version) ..."
    "$BASE_PY" -m venv "$ROOT/.venv"
  fi
  PY="$ROOT/.venv/bin/python"
fi

STAMP="$ROOT/.venv/.requirements.sha"
WANT="$(cat "$ROOT/requirements.txt" "$ROOT/requirements-nodeps.txt" | sha256sum | cut -d' ' -f1)"
if [ -n "${SSL_PYTHON:-}" ] || [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[setup] installing requirements.txt (first time: a few minutes) ..."
  "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$PY" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt"
  "$PY" -m pip install -q --disable-pip-version-check --no-deps -r "$ROOT/requirements-nodeps.txt"
  [ -z "${SSL_PYTHON:-}" ] && echo "$WANT" > "$STAMP"
fi
export PY
