"""The fused Triton head, checked on CPU under Triton's interpreter (TRITON_INTERPRET=1)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

SCRIPT = textwrap.dedent(
    """
    import torch
    from sparsebridge.encoder import triton_head
    assert triton_head.available(torch.device("cpu"))
    torch.manual_seed(0)
    # rows spanning tile edges, documents straddling tiles, vocab not a multiple of the tile
    for documents, length, width, vocab in [(3, 5, 32, 70), (4, 40, 64, 100), (1, 7, 48, 33), (9, 1, 32, 40)]:
        hidden = torch.randn(documents * length, width)
        weight = torch.randn(vocab, width)
        got = triton_head.max_logits(hidden, weight, length)
        want = (hidden @ weight.t()).view(documents, length, vocab).amax(dim=1)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)
    try:
        triton_head.max_logits(torch.randn(10, 8), torch.randn(5, 8), 3)
    except ValueError:
        pass
    else:
        raise AssertionError("rows not divisible by length must be refused")
    print("ok")
    """
)


def test_fused_head_equals_matmul_then_max_in_the_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
