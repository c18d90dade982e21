"""The core's vectors equal sentence-transformers' on the real splade-tiny model (fp32, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsebridge.encoder import Encoder
from sparsebridge.encoder.stages import Head
from sparsebridge.errors import InputError, ModelLoadError
from sparsebridge.types import SparseVector


def reference(encoder: Encoder, texts: list[str], *, query: bool, top_k: int | None) -> torch.Tensor:
    encode = encoder.model.encode_query if query else encoder.model.encode_document
    return encode(texts, max_active_dims=top_k, convert_to_sparse_tensor=False, batch_size=16).cpu()


def assert_same(ours: list[SparseVector], ref: torch.Tensor) -> None:
    assert len(ours) == ref.shape[0]
    for row, vector in zip(ref, ours, strict=True):
        nonzero = torch.nonzero(row > 0).flatten().numpy()
        np.testing.assert_array_equal(vector.indices, nonzero)
        np.testing.assert_allclose(vector.values, row[nonzero].numpy(), rtol=0, atol=1e-5)


# Twelve texts of one token length: with a 512-token budget (unpadded batches from 512 // 8 = 64
# tokens of one length) they run unpadded and without an attention mask, the rest padded.
SAME_LENGTH = [f"the cat number {n} sat on the mat" for n in range(10, 22)]


@pytest.mark.parametrize("query", [False, True])
@pytest.mark.parametrize("top_k", [None, 16])
@pytest.mark.parametrize("token_budget", [None, 512])
def test_parity_with_sentence_transformers(
    encoder: Encoder, corpus: list[tuple[str, str]], query: bool, top_k: int | None, token_budget: int | None
) -> None:
    texts = [text for _, text in corpus[:96]] + ["a", "Longer text " * 200] + SAME_LENGTH  # tiny, truncated
    if token_budget is not None:
        lengths = [len(ids) for ids in encoder.model.tokenizer(SAME_LENGTH)["input_ids"]]
        assert len(set(lengths)) == 1 and lengths[0] * len(lengths) >= token_budget // 8
        encoder = Encoder(encoder.model, token_budget=token_budget)
    encode = encoder.encode_queries if query else encoder.encode_documents
    ours = encode(texts, top_k=top_k)
    assert_same(ours, reference(encoder, texts, query=query, top_k=top_k))
    if top_k is not None:
        assert max(len(v) for v in ours) <= top_k


def test_several_devices_take_chunks_from_one_queue(
    encoder: Encoder, corpus: list[tuple[str, str]], splade_tiny_path: str
) -> None:
    """Two copies (both on the CPU here; one per GPU on a GPU machine) give the one-device vectors."""
    texts = [text for _, text in corpus] + SAME_LENGTH
    multi = Encoder.load(splade_tiny_path, devices=["cpu", "cpu"], token_budget=512)
    assert multi.devices == [torch.device("cpu")] * 2
    assert multi.suggested_batch_size == encoder.suggested_batch_size == 256  # small calls are free on a CPU
    assert_same(multi.encode_documents(texts), reference(encoder, texts, query=False, top_k=None))
    assert_same(multi.encode_queries(texts[:3]), reference(encoder, texts[:3], query=True, top_k=None))
    multi._replicas[0].model.to("meta")  # the second device fails: the caller gets its error
    with pytest.raises((RuntimeError, NotImplementedError, TypeError)):
        multi.encode_documents(texts)
    for bad in ([], "cpu"):
        with pytest.raises(ValueError, match="devices"):
            Encoder.load(splade_tiny_path, devices=bad)
    with pytest.raises(ValueError, match="devices"):
        Encoder.load(splade_tiny_path, device="cpu", devices=["cpu"])


def test_fast_path_equals_generic_path(encoder: Encoder, corpus: list[tuple[str, str]]) -> None:
    """End to end with every head that can be the default here (the int8 screen on AVX2 CPUs)."""
    from sparsebridge.encoder.sparsify import _activation_levels

    assert encoder.stages is not None
    heads = [head for head in encoder.stages.heads() if head is not Head.TRITON]
    assert (Head.INT8_SCREEN in heads) == (encoder.device.type == "cpu" and _activation_levels() is not None)
    generic = Encoder(encoder.model, fast_path=False)
    assert not generic.uses_fast_path
    texts = [text for _, text in corpus[:64]]
    want = generic.encode_documents(texts)
    for head in heads:
        fast = Encoder(encoder.model)
        assert fast.stages is not None and fast.stages.use_head(head).head is head
        for got, slow in zip(fast.encode_documents(texts), want, strict=True):
            np.testing.assert_array_equal(got.indices, slow.indices)
            np.testing.assert_allclose(got.values, slow.values, atol=1e-5)


def test_min_weight_and_order_independence(encoder: Encoder, corpus: list[tuple[str, str]]) -> None:
    texts = [text for _, text in corpus[:40]]
    full = encoder.encode_documents(texts)
    pruned = encoder.encode_documents(texts, min_weight=0.5)
    for a, b in zip(full, pruned, strict=True):
        assert b == a.prune(min_weight=0.5)
    # small budget: many batches; results come back in input order regardless
    small = Encoder(encoder.model, token_budget=64, max_batch_size=3).encode_documents(texts)
    for a, b in zip(full, small, strict=True):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_allclose(a.values, b.values, atol=1e-5)


def test_vectors_are_positive_sorted_and_typed(encoder: Encoder) -> None:
    [v] = encoder.encode_documents(["sparse retrieval with splade"])
    assert v.indices.dtype == np.int32 and v.values.dtype == np.float32
    assert np.all(np.diff(v.indices) > 0) and np.all(v.values > 0)


def test_token_mapping(encoder: Encoder) -> None:
    assert encoder.vocab_size == 30522
    assert encoder.token(encoder.token_id("river")) == "river"
    assert {".", "...", "##."} <= set(encoder.vocab)
    [v] = encoder.encode_queries(["river"], top_k=3)
    assert "river" in encoder.tokens(v)
    with pytest.raises(ValueError):
        encoder.token(30522)
    with pytest.raises(ValueError):
        encoder.token_id("no-such-token-here")


def test_bad_input(encoder: Encoder) -> None:
    assert encoder.encode_documents([]) == []
    with pytest.raises(TypeError):
        encoder.encode_documents("a single string")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="#1 is empty"):
        encoder.encode_documents(["fine", "  "])
    with pytest.raises(InputError, match="#0 is int"):
        encoder.encode_queries([3])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        encoder.encode_documents(["x"], top_k=0)


def test_unknown_model_path(tmp_path: object) -> None:
    with pytest.raises(ModelLoadError, match="cannot load sparse model"):
        Encoder.load(str(tmp_path) + "/no-such-model", device="cpu")


def assert_bf16_close_to_fp32(
    bf16: Encoder, fp32: Encoder, corpus: list[tuple[str, str]], queries: list[str]
) -> None:
    """bf16 vectors against fp32: top-32 overlap >= 0.99; retrieval scores within 1% on average.

    The score error is measured where retrieval happens: on each query's top-10 documents (by
    fp32 score), and over all pairs in aggregate (sum of |error| / sum of scores). Per pair over
    all positive products it is larger (~2.4% on splade-tiny), dominated by near-zero products.
    """
    texts = [text for _, text in corpus]
    low, exact = bf16.encode_documents(texts), fp32.encode_documents(texts)
    overlaps = []
    for a, b in zip(low, exact, strict=True):
        k = min(32, len(b))
        top_b = set(b.indices[np.argsort(-b.values)[:k]].tolist())
        top_a = set(a.indices[np.argsort(-a.values)[:k]].tolist())
        overlaps.append(len(top_a & top_b) / max(k, 1))
    top_errors, total_error, total = [], 0.0, 0.0
    for query in fp32.encode_queries(queries):
        want = np.array([d.dot(query) for d in exact])
        got = np.array([d.dot(query) for d in low])
        best = np.argsort(-want)[:10]
        top_errors.extend(np.abs(got[best] - want[best]) / want[best])
        total_error += float(np.abs(got - want).sum())
        total += float(want.sum())
    assert np.mean(overlaps) >= 0.99, np.mean(overlaps)
    assert np.mean(top_errors) <= 0.01, np.mean(top_errors)
    assert total_error / total <= 0.01, total_error / total


def test_bf16_on_cpu_is_close_to_fp32(
    splade_tiny_path: str, encoder: Encoder, corpus: list[tuple[str, str]], queries: list[str]
) -> None:
    bf16 = Encoder.load(splade_tiny_path, device="cpu", dtype=torch.bfloat16)
    assert bf16.uses_fast_path
    assert_bf16_close_to_fp32(bf16, encoder, corpus, queries)


def _architectures(splade_tiny_path: str) -> dict[str, object]:
    """Sparse encoders of other shapes, built from the bundled weights (seeded where new layers are)."""
    from sentence_transformers import SparseEncoder
    from sentence_transformers.sentence_transformer.modules import Pooling
    from sentence_transformers.sparse_encoder.modules import (
        Router,
        SparseAutoEncoder,
        SparseStaticEmbedding,
        SpladePooling,
        Transformer,
    )

    from sparsebridge.encoder.models import resolve_model

    def mlm() -> Transformer:
        return Transformer(splade_tiny_path, transformer_task="fill-mask")

    torch.manual_seed(0)
    minilm = Transformer(resolve_model("minilm"))
    body = mlm()
    static = SparseStaticEmbedding(body.tokenizer, weight=torch.rand(body.tokenizer.vocab_size))
    modules = {
        "relu-max": [mlm(), SpladePooling("max", activation_function="relu")],
        "sum-pooling": [mlm(), SpladePooling("sum")],
        "inference-free-router": [Router.for_query_document([static], [body, SpladePooling("max")])],
        "csr-on-a-dense-model": [
            minilm,
            Pooling(minilm.get_embedding_dimension(), "mean"),
            SparseAutoEncoder(input_dim=384, hidden_dim=1536, k=32, k_aux=64),
        ],
    }
    return {name: SparseEncoder(modules=m, device="cpu") for name, m in modules.items()}


def test_parity_on_other_architectures(splade_tiny_path: str, corpus: list[tuple[str, str]]) -> None:
    """Max pooling over ReLU logits takes the fast path; the rest (sum pooling, an inference-free
    query side, a sparse autoencoder over a dense model) the generic one: all equal the model's own."""
    texts = [text for _, text in corpus[:24]] + ["a", "Longer text " * 20] + SAME_LENGTH[:4]
    for name, model in _architectures(splade_tiny_path).items():
        encoder = Encoder(model)  # type: ignore[arg-type]
        assert encoder.uses_fast_path == (name == "relu-max"), name
        for query, top_k in ((False, None), (True, 8)):
            encode = encoder.encode_queries if query else encoder.encode_documents
            assert_same(encode(texts, top_k=top_k), reference(encoder, texts, query=query, top_k=top_k))
