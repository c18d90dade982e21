"""The device-side head and pruning against a naive reference, on small random shapes."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sparsebridge.encoder.extract import to_sparse_vectors
from sparsebridge.encoder.sparsify import splade_activation, splade_max_logits


def naive(hidden: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    logits = hidden @ weight.t() + bias
    activated = torch.log1p(torch.relu(logits)) * mask[..., None]
    return activated.amax(dim=1)


@pytest.mark.parametrize("chunk_tokens", [1, 7, 1000])
def test_pooled_head_equals_naive(chunk_tokens: int) -> None:
    torch.manual_seed(0)
    hidden = torch.randn(4, 9, 16, dtype=torch.float64)
    weight = torch.randn(50, 16, dtype=torch.float64)
    bias = torch.randn(50, dtype=torch.float64) - 1.0
    lengths = torch.tensor([9, 5, 1, 3])
    mask = torch.arange(9)[None, :] < lengths[:, None]
    # padding positions hold garbage that would win the max if it were not excluded
    hidden[~mask] = 100.0
    ours = splade_activation(
        splade_max_logits(hidden, mask, weight, bias, chunk_tokens=chunk_tokens), double_log=False
    )
    torch.testing.assert_close(ours, naive(hidden, mask, weight, bias).float())


def test_double_log_variant() -> None:
    x = torch.tensor([[-1.0, 0.0, 3.0]])
    torch.testing.assert_close(splade_activation(x, double_log=True), torch.log1p(torch.log1p(torch.relu(x))))


def test_to_sparse_vectors_prunes_and_keeps_row_order() -> None:
    dense = torch.tensor([[0.0, 0.5, 0.2, 0.9], [0.0, 0.0, 0.0, 0.0], [0.3, 0.0, 0.0, 0.1]])
    a, b, c = to_sparse_vectors(dense, top_k=None, min_weight=0.0)
    assert a.as_dict() == pytest.approx({1: 0.5, 2: 0.2, 3: 0.9})
    assert len(b) == 0
    assert c.as_dict() == pytest.approx({0: 0.3, 3: 0.1})
    a, _, c = to_sparse_vectors(dense, top_k=2, min_weight=0.15)
    assert a.as_dict() == pytest.approx({1: 0.5, 3: 0.9})
    assert c.as_dict() == pytest.approx({0: 0.3})


@pytest.mark.parametrize(("padded", "chunk_tokens"), [(True, 16), (True, 1000), (False, 20)])
def test_screened_head_is_exact_where_positive_and_zero_elsewhere(padded: bool, chunk_tokens: int) -> None:
    from sparsebridge.encoder.sparsify import QuantizedProjection, _cpu_has_vnni, splade_max_logits_screened

    torch.manual_seed(1)
    weight = torch.randn(400, 32) / 4
    projection = QuantizedProjection.create(weight)
    if projection is None:
        pytest.skip("no int8 screen here (no AVX2, or no oneDNN int8 matmul): the encoder uses float32 heads")
    assert projection.levels == (255 if _cpu_has_vnni() else 127)
    hidden = torch.randn(6, 11, 32) * 3 + torch.linspace(-4, 8, 32)  # a shared component, as in BERT
    lengths = torch.tensor([11, 7, 1, 4, 9, 2] if padded else [11] * 6)
    mask = torch.arange(11)[None, :] < lengths[:, None]
    hidden[~mask] = 50.0
    exact = splade_max_logits(hidden, mask, weight, None, chunk_tokens=16)
    # a bias that puts many max logits within int8 error of zero (the hard case for the screen),
    # and the rest of the vocabulary far below zero (the common case, which it must rule out)
    bias = -exact.median(dim=0).values + torch.randn(400) * 1e-3
    bias[200:] = -exact[:, 200:].amax(dim=0) - 3.0
    exact = exact + bias
    screened = splade_max_logits_screened(
        hidden, mask if padded else None, weight, bias, projection, chunk_tokens=chunk_tokens
    )
    positive = exact > 0
    assert 0 < int(positive.sum()) < positive.numel()
    torch.testing.assert_close(screened[positive], exact[positive], rtol=0, atol=1e-5)
    assert torch.all(screened[~positive] <= 0)
    # far below zero: screened out (a row's finite ones there are its share of the padding columns)
    assert torch.isinf(screened[:, 200:]).float().mean() > 0.5
    torch.testing.assert_close(
        splade_activation(screened, double_log=False), splade_activation(exact, double_log=False)
    )


def test_activation_bits_follow_the_isa_onednn_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    """8-bit activations only where oneDNN may use VNNI; 7 bits on AVX2 kernels (which sum pairs of
    u8 x s8 products in saturating 16 bits); no screen below AVX2."""
    from sparsebridge.encoder.sparsify import QuantizedProjection, _cpu_flags

    weight = torch.randn(40, 8)
    flags = _cpu_flags()
    if "avx2" not in flags or not torch.backends.mkldnn.is_available():
        assert QuantizedProjection.create(weight) is None
        return
    vnni = bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"})
    for cap, levels in (
        ("SSE41", None),
        ("avx", None),
        ("AVX2", 127),
        ("avx512_core", 127),
        ("AVX512_CORE_VNNI", 255 if vnni else 127),
        ("", 255 if vnni else 127),
    ):
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
        projection = QuantizedProjection.create(weight)
        assert (None if projection is None else projection.levels) == levels, cap


def test_screened_head_is_exact_on_onednn_avx2_kernels() -> None:
    """The screen test again with oneDNN capped to AVX2 (set before oneDNN starts, so in a new
    process): the kernels an AVX2-only CPU runs, with their saturating 16-bit pair sums."""
    from sparsebridge.encoder.sparsify import _cpu_flags

    if "avx2" not in _cpu_flags() or not torch.backends.mkldnn.is_available():
        pytest.skip("no AVX2 or no oneDNN here")
    test = f"{__file__}::test_screened_head_is_exact_where_positive_and_zero_elsewhere"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0 and "3 passed" in result.stdout, result.stdout[-3000:]


@pytest.mark.parametrize(("top_k", "capacity"), [(None, 64), (None, 8), (5, 64)])
def test_extractor_matches_direct_extraction(top_k: int | None, capacity: int) -> None:
    """The extractor's fixed-width candidates (what CUDA copies to the host) give the exact vectors:
    with room for every weight, with rows over capacity (extracted again) and with top-k."""
    from sparsebridge.encoder.extract import SparseExtractor

    torch.manual_seed(3)
    dense = torch.relu(torch.randn(6, 40) - 0.5)
    dense[2] = 0.0
    dense[4, :] = 0.5  # ties
    extractor = SparseExtractor(device=torch.device("cpu"), top_k=top_k, min_weight=0.1, capacity=capacity)
    got = dict(extractor.submit(np.arange(10, 16), dense))
    want = to_sparse_vectors(dense, top_k=top_k, min_weight=0.1)
    assert [got[p] for p in range(10, 16)] == want
    assert len(got[12]) == 0
    if capacity < 40 and top_k is None:
        assert max(len(v) for v in want) > capacity, "some rows overflow the capacity"
