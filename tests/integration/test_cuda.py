"""GPU checks: they run wherever CUDA is present and skip only where it is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_parity import assert_bf16_close_to_fp32

from remote_code_model import build
from sparsebridge.encoder import Encoder
from sparsebridge.encoder.extract import SparseExtractor, to_sparse_vectors
from sparsebridge.encoder.stages import Head

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def cuda_encoder(splade_tiny_path: str) -> Encoder:
    return Encoder.load(splade_tiny_path, device="cuda")  # bf16 by default


def test_fused_triton_head_matches_torch_on_bf16() -> None:
    from sparsebridge.encoder import triton_head

    torch.manual_seed(0)
    documents, length, width, vocab = 37, 53, 768, 30522
    hidden = torch.randn(documents * length, width, device="cuda", dtype=torch.bfloat16)
    weight = torch.randn(vocab, width, device="cuda", dtype=torch.bfloat16) / 30
    got = triton_head.max_logits(hidden, weight, length)
    want = (hidden.float() @ weight.float().t()).view(documents, length, vocab).amax(dim=1)
    torch.testing.assert_close(got, want, rtol=2e-2, atol=2e-2)


def test_gpu_encoders_suggest_large_calls(cuda_encoder: Encoder) -> None:
    assert cuda_encoder.suggested_batch_size == 16384  # each call ends by waiting for the GPU


def test_deferred_extraction_equals_immediate() -> None:
    torch.manual_seed(1)
    dense = torch.relu(torch.randn(64, 30522, device="cuda") - 2.5)
    dense[3, :1500] = 1.0  # more than the capacity: re-extracted exactly
    positions = np.arange(64)
    for top_k in (None, 50):
        extractor = SparseExtractor(device=torch.device("cuda"), top_k=top_k, min_weight=0.0, capacity=1024)
        got = dict(extractor.submit(positions, dense))
        got.update(extractor.drain())
        want = to_sparse_vectors(dense, top_k=top_k, min_weight=0.0)
        for position in positions.tolist():
            assert got[position] == want[position]


def test_bf16_cuda_vectors_match_fp32_cpu(
    cuda_encoder: Encoder, encoder: Encoder, corpus: list[tuple[str, str]], queries: list[str]
) -> None:
    assert_bf16_close_to_fp32(cuda_encoder, encoder, corpus, queries)


def test_unpadded_batches_match_fp32_cpu(
    cuda_encoder: Encoder, encoder: Encoder, corpus: list[tuple[str, str]], queries: list[str]
) -> None:
    """A small token budget makes same-length groups of the corpus run unpadded, without a mask."""
    assert_bf16_close_to_fp32(Encoder(cuda_encoder.model, token_budget=256), encoder, corpus, queries)


def test_fused_and_unfused_heads_agree(cuda_encoder: Encoder, corpus: list[tuple[str, str]]) -> None:
    texts = [text for _, text in corpus[:64]]
    unfused = Encoder(cuda_encoder.model, fused_head=False)
    for a, b in zip(cuda_encoder.encode_documents(texts), unfused.encode_documents(texts), strict=True):
        shared = np.intersect1d(a.indices, b.indices)
        assert len(shared) >= 0.98 * max(len(a), len(b))


def test_custom_code_model_on_cuda(
    tmp_path_factory: pytest.TempPathFactory, corpus: list[tuple[str, str]]
) -> None:
    """The custom-code fixture (complex rotary buffer, ``decoder`` projection): fast path, exact in fp32."""
    path = str(build(tmp_path_factory.mktemp("remote-cuda") / "rotary-mlm"))
    texts = [text for _, text in corpus[:64]]
    cpu = Encoder.load(path, device="cpu", trust_remote_code=True).encode_documents(texts)
    fp32 = Encoder.load(path, device="cuda", dtype=torch.float32, trust_remote_code=True)
    assert fp32.uses_fast_path
    for a, b in zip(fp32.encode_documents(texts), cpu, strict=True):
        got, want = a.as_dict(), b.as_dict()
        assert len(want) > 0
        for index in got.keys() | want.keys():  # weights near zero may fall on either side of it
            assert abs(got.get(index, 0.0) - want.get(index, 0.0)) < 1e-3
    bf16 = Encoder.load(path, device="cuda", trust_remote_code=True)
    assert bf16.stages is not None and bf16.stages.heads()[0] is Head.TRITON
    table = bf16.model[0].model.model.rotary
    assert table.dtype == torch.complex64 and bf16.stages.projection.weight.dtype == torch.bfloat16
    assert all(len(v) > 0 for v in bf16.encode_documents(texts))
