"""The CPU heads on real splade-tiny hidden states: every head gives the full-logits head's weights,
and the default head is chosen once, recorded, and overridable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsebridge.encoder import Encoder
from sparsebridge.encoder.sparsify import pack_vocabulary_tiles, splade_max_logits, splade_max_logits_tiled
from sparsebridge.encoder.stages import HEAD_VARIABLE, LINEAR_VARIABLE, Head, SpladeStages

# Mixed lengths (a 1-token text, a truncated one) and a run of one length, which the tokenizer
# batches without padding.
SAME_LENGTH = [f"the cat number {n} sat on the mat" for n in range(10, 22)]


def hidden_batches(stages: SpladeStages, texts: list[str]) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    """The body's hidden states of ``texts`` in small token-budget batches; padding positions hold
    large values, so a head that failed to exclude them would pool them."""
    batches = []
    with torch.inference_mode():
        for batch in stages.tokenize(texts, token_budget=600, max_batch_size=16):
            ids, mask = stages.to_device(batch)
            hidden = stages.body(ids, mask).clone()
            if mask is not None:
                hidden[~mask] = 30.0
            batches.append((hidden, mask))
    return batches


@pytest.fixture(scope="module")
def batches(
    encoder: Encoder, corpus: list[tuple[str, str]]
) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    assert encoder.stages is not None
    texts = [text for _, text in corpus[:60]] + ["a", "Longer text " * 200] + SAME_LENGTH
    return hidden_batches(encoder.stages, texts)


def assert_same_weights(got: torch.Tensor, want: torch.Tensor) -> None:
    """Same non-zero set, weights within 1e-5 (the parity tolerance)."""
    np.testing.assert_array_equal((got > 0).numpy(), (want > 0).numpy())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_every_cpu_head_equals_the_full_logits_head(
    encoder: Encoder, batches: list[tuple[torch.Tensor, torch.Tensor | None]]
) -> None:
    stages = encoder.stages
    assert stages is not None
    padded = [mask for _, mask in batches if mask is not None]
    assert any(len(set(mask.sum(dim=1).tolist())) > 1 for mask in padded), "padded batches of mixed lengths"
    assert any(mask is None for _, mask in batches), "one batch runs unpadded"
    heads = [head for head in stages.heads() if head is not Head.TRITON]
    assert Head.TILED in heads and Head.TORCH in heads
    with torch.inference_mode():
        for hidden, mask in batches:
            want = stages.head(hidden, mask, method=Head.TORCH, chunk_tokens=1024)
            assert int((want > 0).sum()) > 0
            for head in heads:
                assert_same_weights(stages.head(hidden, mask, method=head, chunk_tokens=64), want)


@pytest.mark.parametrize(("tile_tokens", "tile_vocab"), [(1, 30000), (7, 1000), (100, 4096), (10_000, 30522)])
def test_tiled_max_logits_at_tile_sizes_that_do_not_divide(
    encoder: Encoder,
    batches: list[tuple[torch.Tensor, torch.Tensor | None]],
    tile_tokens: int,
    tile_vocab: int,
) -> None:
    """Raw max logits (before the activation), so within float32 rounding of their size."""
    stages = encoder.stages
    assert stages is not None
    weight, bias = stages.projection.weight, stages.projection.bias
    with torch.inference_mode():
        for hidden, mask in batches[:3] + batches[-1:]:
            want = splade_max_logits(hidden, mask, weight, bias, chunk_tokens=1024)
            got = splade_max_logits_tiled(
                hidden, mask, weight, bias, tile_tokens=tile_tokens, tile_vocab=tile_vocab
            )
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            packed = pack_vocabulary_tiles(weight, tile_vocab=tile_vocab)  # through oneDNN
            got = splade_max_logits_tiled(
                hidden, mask, weight, bias, tile_tokens=tile_tokens, packed_tiles=packed
            )
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            with pytest.raises(ValueError, match="packed tiles cover"):
                splade_max_logits_tiled(hidden, mask, weight, bias, packed_tiles=packed[:-1])


def test_the_choice_is_the_probes_fastest_and_first(encoder: Encoder) -> None:
    stages = encoder.stages
    assert stages is not None
    choice = stages.head_choice
    assert choice.reason == "probe" and choice.probe_tokens >= 256
    cpu_heads = {head for head in stages.heads() if head is not Head.TRITON}
    assert set(choice.seconds) == cpu_heads
    assert choice.head is min(choice.seconds, key=choice.seconds.__getitem__)
    assert stages.heads()[0] is choice.head
    assert choice.head.value in str(choice)


def test_environment_and_use_head_override_the_choice(
    encoder: Encoder, corpus: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [text for _, text in corpus[:12]]
    want = encoder.encode_documents(texts)
    monkeypatch.setenv(HEAD_VARIABLE, "torch")
    pinned = Encoder(encoder.model)
    assert pinned.stages is not None
    assert pinned.stages.head_choice.head is Head.TORCH and pinned.stages.head_choice.reason == "environment"
    assert pinned.stages.heads()[0] is Head.TORCH
    for head in (Head.TILED, Head.TORCH):
        assert pinned.stages.use_head(head.value).head is head
        for a, b in zip(pinned.encode_documents(texts), want, strict=True):
            np.testing.assert_array_equal(a.indices, b.indices)
            np.testing.assert_allclose(a.values, b.values, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="unknown head"):
        pinned.stages.use_head("fastest")
    for bad, message in (("fastest", "unknown head"), ("triton", "head .triton. cannot run on cpu")):
        monkeypatch.setenv(HEAD_VARIABLE, bad)
        with pytest.raises(ValueError, match=f"{HEAD_VARIABLE}={bad}: {message}"):
            Encoder(encoder.model)


def test_encoders_of_one_model_share_the_probes_choices_and_give_identical_vectors(
    encoder: Encoder, corpus: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probes time shapes, once per process: a second encoder of the model takes the first one's
    choices (not a second timing, which a busy moment could tip), so its vectors are bit-identical."""
    monkeypatch.delenv(HEAD_VARIABLE, raising=False)
    monkeypatch.delenv(LINEAR_VARIABLE, raising=False)
    first = Encoder(encoder.model)
    second = Encoder(encoder.model)
    assert first.stages is not None and second.stages is not None
    assert first.stages.head_choice.reason == "probe" and first.stages.linear_choice.reason == "probe"
    assert second.stages.head_choice is first.stages.head_choice
    assert second.stages.linear_choice is first.stages.linear_choice
    texts = [text for _, text in corpus[:20]]
    for a, b in zip(first.encode_documents(texts), second.encode_documents(texts), strict=True):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.values, b.values)
