"""A custom-code model (``trust_remote_code``) loads correctly, takes the fast path and stays exact.

The model is ``tests/remote_code/modeling_rotary_mlm.py``: a complex rotary table computed in its
constructor as a non-persistent buffer, a projection named ``decoder`` that
``get_output_embeddings()`` does not return, and no ``token_type_ids``. Its directory is written
by the test; nothing comes from the hub.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SparseEncoder
from torch import nn

from remote_code_model import build, modeling
from sparsebridge.backends import MemoryBackend
from sparsebridge.cli import main
from sparsebridge.encoder import Encoder
from sparsebridge.encoder.extract import SparseExtractor
from sparsebridge.encoder.loading import cast_floating, restore_constructor_buffers
from sparsebridge.encoder.stages import LINEAR_VARIABLE, SpladeStages
from sparsebridge.errors import ModelLoadError, ModelOutputError
from sparsebridge.ingest import ingest
from sparsebridge.types import SparseVector

SAME_LENGTH = [f"the cat number {n} sat on the mat" for n in range(10, 22)]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("remote") / "rotary-mlm")


def correct_table(model: SparseEncoder) -> torch.Tensor:
    config = model[0].model.config
    head_dim = config.hidden_size // config.num_attention_heads
    return modeling().rotary_table(head_dim, config.max_position_embeddings, config.rotary_base)


@pytest.fixture(scope="module")
def reference(model_dir: Path) -> SparseEncoder:
    """sentence-transformers' own model, with the table a transformers 4.x load would have kept."""
    model = SparseEncoder(str(model_dir), device="cpu", trust_remote_code=True)
    model[0].model.model.rotary = correct_table(model)
    return model


@pytest.fixture(scope="module")
def remote(model_dir: Path) -> Encoder:
    return Encoder.load(str(model_dir), device="cpu", trust_remote_code=True)


def assert_same(ours: list[SparseVector], ref: torch.Tensor) -> None:
    assert len(ours) == ref.shape[0]
    for row, vector in zip(ref, ours, strict=True):
        nonzero = torch.nonzero(row > 0).flatten().numpy()
        assert len(nonzero) > 0
        np.testing.assert_array_equal(vector.indices, nonzero)
        np.testing.assert_allclose(vector.values, row[nonzero].numpy(), rtol=0, atol=1e-5)


def test_plain_load_leaves_garbage_and_encoder_load_restores_the_constructor_buffer(
    model_dir: Path, remote: Encoder
) -> None:
    plain = SparseEncoder(str(model_dir), device="cpu", trust_remote_code=True)
    table = plain[0].model.model.rotary
    assert table.dtype == torch.complex64
    assert not torch.equal(table, correct_table(plain))  # the trap is real under this transformers
    restored = remote.model[0].model.model.rotary
    assert restored.dtype == torch.complex64 and torch.equal(restored, correct_table(plain))
    assert "model.rotary" in restore_constructor_buffers(plain[0].model)
    assert torch.equal(plain[0].model.model.rotary, correct_table(plain))


def test_fast_path_engages_through_the_decoder_projection(remote: Encoder) -> None:
    hf_model = remote.model[0].model
    assert hf_model.get_output_embeddings() is None
    assert remote.stages is not None and remote.stages.projection is hf_model.decoder
    assert remote.vocab_size == 30522


def test_the_probe_rejects_a_projection_that_is_not_the_last_step(remote: Encoder) -> None:
    """The projection is trusted only if the body followed by it reproduces the model's logits."""
    hf_model = remote.model[0].model
    options = {
        "tokenizer": remote.model.tokenizer,
        "max_seq_length": 256,
        "double_log": False,
        "model_name": "m",
    }
    assert SpladeStages(hf_model=hf_model, projection_name="decoder", **options)._reproduces_model()
    assert not SpladeStages(hf_model=hf_model, projection_name="transform", **options)._reproduces_model()


@pytest.mark.parametrize("fast_path", [True, False])
@pytest.mark.parametrize("query", [False, True])
def test_parity_with_sentence_transformers(
    remote: Encoder, reference: SparseEncoder, corpus: list[tuple[str, str]], fast_path: bool, query: bool
) -> None:
    encoder = Encoder(remote.model, fast_path=fast_path, token_budget=512)
    assert encoder.uses_fast_path == fast_path
    texts = [text for _, text in corpus[:60]] + ["Longer text " * 200] + SAME_LENGTH  # truncated; unpadded
    encode = encoder.encode_queries if query else encoder.encode_documents
    reference_encode = reference.encode_query if query else reference.encode_document
    want = reference_encode(texts, convert_to_sparse_tensor=False, batch_size=16).cpu()
    assert_same(encode(texts), want)


@pytest.mark.parametrize("linear", ["torch", "onednn"])
def test_both_linear_kernels_give_the_reference_vectors_and_leave_the_model_alone(
    remote: Encoder,
    reference: SparseEncoder,
    corpus: list[tuple[str, str]],
    linear: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(LINEAR_VARIABLE, linear)
    hf_model = remote.model[0].model
    state = {name: tensor.data_ptr() for name, tensor in hf_model.state_dict().items()}
    encoder = Encoder(remote.model, token_budget=512)
    assert encoder.stages is not None
    choice = encoder.stages.linear_choice
    assert (choice.onednn, choice.reason) == (linear == "onednn", "environment")
    texts = [text for _, text in corpus[:40]] + ["Longer text " * 200] + SAME_LENGTH
    for query in (False, True):
        encode = encoder.encode_queries if query else encoder.encode_documents
        reference_encode = reference.encode_query if query else reference.encode_document
        want = reference_encode(texts, convert_to_sparse_tensor=False, batch_size=16).cpu()
        assert_same(encode(texts), want)
    # the model keeps its own layers and tensors; the body's packed layers share its weights
    assert all(type(m).__name__ != "_OneDnnLinear" for m in hf_model.modules())
    assert {name: tensor.data_ptr() for name, tensor in hf_model.state_dict().items()} == state
    body = [m for m in encoder.stages._body.modules() if isinstance(m, nn.Linear)]
    assert body and all(type(m).__name__ == "_OneDnnLinear" for m in body) == (linear == "onednn")
    weights = {p.data_ptr() for p in hf_model.parameters()}
    assert all(m.weight.data_ptr() in weights for m in body)


def test_the_linear_choice_is_the_probes_faster_and_a_bad_override_is_refused(
    remote: Encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(LINEAR_VARIABLE, raising=False)
    choice = Encoder(remote.model).stages.linear_choice  # type: ignore[union-attr]
    assert choice.reason == "probe" and set(choice.seconds) == {"torch", "onednn"}
    assert choice.onednn == (choice.seconds["onednn"] < choice.seconds["torch"])
    assert ("onednn" if choice.onednn else "torch") in str(choice)
    monkeypatch.setenv(LINEAR_VARIABLE, "mkl")
    with pytest.raises(ValueError, match=f"{LINEAR_VARIABLE}=mkl: one of torch, onednn"):
        Encoder(remote.model)


def test_every_head_gives_the_reference_weights(remote: Encoder, reference: SparseEncoder) -> None:
    stages = remote.stages
    assert stages is not None
    texts = ["rivers flood the valley", "a longer text, about planets, moons and their orbits", "cells"]
    [batch] = list(stages.tokenize(texts, token_budget=4096, max_batch_size=8))
    ids, mask = stages.to_device(batch)
    assert mask is not None
    want = reference.encode_document([texts[i] for i in batch.positions], convert_to_sparse_tensor=False)
    with torch.inference_mode():
        hidden = stages.body(ids, mask)
        for head in stages.heads():
            got = stages.head(hidden, mask, method=head, chunk_tokens=64)
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_dtype_cast_keeps_complex_buffers(model_dir: Path) -> None:
    model = SparseEncoder(str(model_dir), device="cpu", trust_remote_code=True)
    restore_constructor_buffers(model)
    table = model[0].model.model.rotary.clone()
    cast_floating(model, torch.bfloat16)
    assert model[0].model.decoder.weight.dtype == torch.bfloat16
    assert torch.equal(model[0].model.model.rotary, table)  # complex64, untouched
    cast_floating(model, torch.float32)
    with pytest.warns(UserWarning, match="imaginary"):  # what Module.to would have done
        model.to(torch.bfloat16)
    assert not model[0].model.model.rotary.is_complex()
    with pytest.raises(ValueError, match="floating"):
        cast_floating(model, torch.int8)


def poisoned(model_dir: Path) -> Encoder:
    """An encoder built on a healthy model whose weights turn NaN afterwards."""
    encoder = Encoder.load(str(model_dir), device="cpu", trust_remote_code=True)
    encoder.model[0].model.model.norm.weight.data[0] = float("nan")
    return encoder


@pytest.mark.parametrize("fast_path", [True, False])
def test_nan_output_raises_on_both_paths(model_dir: Path, fast_path: bool) -> None:
    encoder = poisoned(model_dir)
    if not fast_path:
        encoder = Encoder(encoder.model, fast_path=False)
    with pytest.raises(ModelOutputError, match=r"rotary-mlm.*NaN or Inf for 2 of 2 texts") as caught:
        encoder.encode_documents(["rivers flood the valley", "planets"])
    assert caught.value.model.endswith("rotary-mlm")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (
        type(copy) is ModelOutputError and copy.model == caught.value.model and str(copy) == str(caught.value)
    )


def test_ingest_stops_on_nan_output_instead_of_dead_lettering(model_dir: Path, tmp_path: Path) -> None:
    backend = MemoryBackend()
    documents = [{"id": str(i), "text": f"text number {i}"} for i in range(6)]
    with pytest.raises(ModelOutputError):
        ingest(
            documents, encoder=poisoned(model_dir), backend=backend, batch_size=3, run_dir=tmp_path / "run"
        )
    assert backend.count() == 0


def test_nan_model_is_refused_when_the_encoder_is_built(model_dir: Path) -> None:
    model = poisoned(model_dir).model
    with pytest.raises(ModelOutputError, match="NaN or Inf"):
        Encoder(model)
    Encoder(model, fast_path=False)  # the generic path runs no probe; it raises on its first batch


def test_every_cpu_head_turns_a_nan_row_into_an_error(remote: Encoder) -> None:
    stages = remote.stages
    assert stages is not None
    [batch] = list(
        stages.tokenize(["one text", "a second text", "third"], token_budget=4096, max_batch_size=8)
    )
    ids, mask = stages.to_device(batch)
    with torch.inference_mode():
        hidden = stages.body(ids, mask).clone()
        hidden[1, 0, 3] = float("inf")
        for head in stages.heads():
            dense = stages.head(hidden, mask, method=head, chunk_tokens=64)
            assert torch.isnan(dense[1]).all() and torch.isfinite(dense[[0, 2]]).all()
            extractor = SparseExtractor(device=stages.device, top_k=None, min_weight=0.0, model="m")
            with pytest.raises(ModelOutputError, match="1 of 3 texts"):
                list(extractor.submit(batch.positions, dense))


TRITON_SCRIPT = textwrap.dedent(
    """
    import torch
    from torch import nn
    from sparsebridge.encoder.stages import Head, SpladeStages
    model = nn.Module()
    model.decoder = nn.Linear(32, 70)  # a small vocabulary: the interpreter runs one program per tile
    stages = SpladeStages(
        hf_model=model, projection_name="decoder", tokenizer=lambda *a, **k: None, max_seq_length=8,
        double_log=False, model_name="tiny",
    )
    assert Head.TRITON in stages.heads()
    hidden = torch.randn(3, 4, 32)
    hidden[2, 1, 0] = float("nan")
    with torch.inference_mode():  # as the encoder runs its stages
        dense = stages.head(hidden, None, method=Head.TRITON, chunk_tokens=64)
        want = stages.head(hidden[:2], None, method=Head.TORCH, chunk_tokens=64)
    assert torch.isnan(dense[2]).all(), dense
    torch.testing.assert_close(dense[:2], want, rtol=1e-5, atol=1e-5)
    print("ok")
    """
)


def test_triton_head_turns_a_nan_row_into_nan_in_the_interpreter() -> None:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    result = subprocess.run([sys.executable, "-c", TRITON_SCRIPT], env=env, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]


def test_cli_encode_exits_non_zero_on_a_nan_model(model_dir: Path, tmp_path: Path) -> None:
    broken = tmp_path / "nan-model"
    broken.mkdir()
    for item in model_dir.iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    weights = load_file(broken / "model.safetensors")
    weights["model.norm.weight"][0] = float("nan")
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps({"id": str(i), "text": f"text number {i}"}) + "\n" for i in range(3)))
    out = tmp_path / "vectors.jsonl"
    args = ["encode", "--model", str(broken), "--trust-remote-code", "--device", "cpu"]
    code = main([*args, "--input", str(docs), "--output", str(out)])
    assert code != 0
    assert not out.exists() or out.read_text() == ""


def test_missing_dependency_of_custom_code_is_named(model_dir: Path, tmp_path: Path) -> None:
    needy = tmp_path / "needs-a-package"
    needy.mkdir()
    for item in model_dir.iterdir():
        (needy / item.name).write_bytes(item.read_bytes())
    source = needy / "modeling_rotary_mlm.py"
    source.write_text("import sparsebridge_absent_dependency  # noqa\n" + source.read_text())
    with pytest.raises(ModelLoadError, match="sparsebridge_absent_dependency"):
        Encoder.load(str(needy), device="cpu", trust_remote_code=True)
