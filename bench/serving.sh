#!/usr/bin/env bash
# The query-serving and document benchmarks in one command, bounded in time (~25 minutes on a quiet
# 2-core CPU; each configuration stops after REQUESTS answers or SECONDS seconds):
#   0. bench/linear.py: torch's linear against oneDNN's at the 28 x 768 model's layer shapes;
#   1. bench/serving.py, 28 x 768 custom-code model: lone queries, concurrency 1/4/16/64 in process
#      and over HTTP (sparsebridge serve + wrk) against sentence-transformers per request;
#   2. the same for splade-tiny;
#   3. bench/encode.py --profile, splade-tiny documents: fast path vs sentence-transformers, each
#      head alone; then again with the CPU capped to AVX2 (oneDNN, ATen and MKL: an emulation of an
#      AVX2-only CPU on a newer one, recorded as such, not a measurement of one).
# Results are appended to bench/results/linear.jsonl, serving.jsonl and encode.jsonl with the
# machine and load.
# Run from the repo root: bench/serving.sh [label]. Needs wrk (apt-get install wrk).
set -uo pipefail
LABEL="${1:-}"
SECONDS_PER="${SECONDS_PER:-20}"
REQUESTS="${REQUESTS:-2000}"
PY="${PYTHON:-.venv/bin/python}"
export PYTHONPATH="$PWD/src" HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
quiet() { grep --line-buffered -v -i -E "loading weights|warn" ; }
timeout 300 "$PY" bench/linear.py --json bench/results/linear.jsonl --label "$LABEL" 2>&1 | quiet
timeout 1200 "$PY" bench/serving.py --model rotary-mlm --layers 28 --hidden 768 --http \
  --seconds "$SECONDS_PER" --requests "$REQUESTS" --lone 100 --json bench/results/serving.jsonl --label "$LABEL" 2>&1 | quiet
timeout 600 "$PY" bench/serving.py --model splade-tiny --http \
  --seconds "$SECONDS_PER" --requests "$REQUESTS" --json bench/results/serving.jsonl --label "$LABEL" 2>&1 | quiet
timeout 1200 "$PY" bench/encode.py --profile --json bench/results/encode.jsonl --label "$LABEL" 2>&1 | quiet
ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
  timeout 1200 "$PY" bench/encode.py --profile --json bench/results/encode.jsonl --label "$LABEL (AVX2 caps)" 2>&1 | quiet
