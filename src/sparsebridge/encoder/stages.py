"""The SPLADE fast path as four public stages: tokenize, body, head, extract.

:class:`SpladeStages` recognises a ``[Transformer(fill-mask), SpladePooling(max)]`` model once,
and then runs its stages on request. The :class:`~sparsebridge.encoder.Encoder` chains them;
benchmarks and diagnostics time them one at a time::

    stages = encoder.stages                       # None when the model takes the generic path
    for batch in stages.tokenize(texts, token_budget=8192, max_batch_size=256):
        ids, mask = stages.to_device(batch)
        hidden = stages.body(ids, mask)           # [B, L, H]: the model up to its vocabulary projection
        dense = stages.head(hidden, mask)         # [B, V]: max-pooled, activated SPLADE weights
        for position, vector in extractor.submit(batch.positions, dense): ...

The model is never modified: the body runs a copy of the module path that leads to the output
projection, in which the projection is an identity (the copy shares every parameter and buffer with
the model). A :class:`SpladeStages` holds no per-call state, so one instance serves many threads.

Which head :meth:`SpladeStages.head` runs by default is decided once per model, when
:meth:`SpladeStages.find` recognises it (see :attr:`SpladeStages.head_choice`): on CUDA the fused
Triton kernel where Triton is present; on a CPU the fastest of the CPU heads on a short probe
batch, timed there and then. The environment variable ``SPARSEBRIDGE_HEAD`` (a :class:`Head`
value) or :meth:`SpladeStages.use_head` overrides the choice.

On a CPU the body's linear layers may run through oneDNN with weights packed once for it
(:attr:`SpladeStages.linear_choice`): torch's default float32 matmul there is the BLAS it was
built with (MKL in the PyPI wheels), which on some CPUs (AMD's, measured in docs/performance.md)
runs several times slower than oneDNN on the same instructions. Both are float32 with float32
accumulation; the choice changes the summation order only. Which one runs is timed once per
model on one of its own layers; ``SPARSEBRIDGE_LINEAR`` (``torch`` or ``onednn``) overrides it.

Each probe's outcome is kept for the process, per shape timed: every later encoder of a model
with the same shapes takes the same choices without timing again, so two encoders of one model in
one process give bit-identical vectors.
"""

from __future__ import annotations

import copy
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from sparsebridge.encoder import triton_head
from sparsebridge.encoder.batching import HostBatch, tokenized_batches
from sparsebridge.encoder.extract import non_finite_message
from sparsebridge.encoder.sparsify import (
    QuantizedProjection,
    onednn_linear,
    onednn_pack,
    pack_vocabulary_tiles,
    pad_with_first_token,
    splade_activation,
    splade_max_logits,
    splade_max_logits_screened,
    splade_max_logits_tiled,
)
from sparsebridge.errors import ModelOutputError

if TYPE_CHECKING:
    from sentence_transformers import SparseEncoder

__all__ = [
    "HEAD_VARIABLE",
    "LINEAR_VARIABLE",
    "Head",
    "HeadChoice",
    "LinearChoice",
    "SpladeStages",
    "attention_without_cudnn",
    "model_name",
]

logger = logging.getLogger(__name__)

# A few words of different lengths: the check that the body and the projection reproduce the model.
_PROBE_TEXTS = ["sparse retrieval", "a second, longer text: so that the probe batch has padding"]

HEAD_VARIABLE = "SPARSEBRIDGE_HEAD"
"""The environment variable that overrides the head choice (a :class:`Head` value, e.g. ``tiled``)."""

# The head probe times each CPU head on the probe texts repeated to about this many tokens.
_HEAD_PROBE_TOKENS = 512

LINEAR_VARIABLE = "SPARSEBRIDGE_LINEAR"
"""The environment variable that overrides how the body's linear layers run on a CPU (``torch`` or
``onednn``)."""

# The linear probe times one layer of the body at these token counts (a short query, a batch).
_LINEAR_PROBE_TOKENS = (8, 128)


class Head(str, Enum):
    """How :meth:`SpladeStages.head` computes the max-pooled logits."""

    TORCH = "torch"
    """Chunked matmul and max in torch, on any device."""
    TRITON = "triton"
    """The fused Triton kernel (CUDA): no logits in memory."""
    INT8_SCREEN = "int8-screen"
    """A CPU int8 screen with an exact error bound, then float32 where a weight can be positive."""
    TILED = "tiled"
    """CPU float32 in cache-sized tiles of the vocabulary, each max-pooled as it is computed (each
    tile packed once for oneDNN where a float32 model runs on a CPU with oneDNN)."""


@dataclass(frozen=True)
class HeadChoice:
    """Which head :meth:`SpladeStages.head` runs by default, and why.

    Attributes:
        head: The head.
        reason: ``"probe"`` (the fastest on the probe batch), ``"device"`` (CUDA: the fused
            kernel where Triton is present, else torch), ``"environment"`` (``SPARSEBRIDGE_HEAD``)
            or ``"use_head"``.
        seconds: The probe's time for each head it timed (best of three runs on the probe batch);
            empty unless ``reason`` is ``"probe"``.
        probe_tokens: Tokens in the probe batch (0 when there was no probe).
    """

    head: Head
    reason: str
    seconds: Mapping[Head, float] = field(default_factory=dict)
    probe_tokens: int = 0

    def __str__(self) -> str:
        if not self.seconds:
            return f"{self.head.value} ({self.reason})"
        timed = ", ".join(f"{head.value} {1000 * s:.1f} ms" for head, s in self.seconds.items())
        return f"{self.head.value} (probe on {self.probe_tokens} tokens: {timed})"


@dataclass(frozen=True)
class LinearChoice:
    """How the body's linear layers run, and why.

    Attributes:
        onednn: oneDNN with weights packed for it (a second, packed copy of each linear weight of
            the body: as much memory again as those weights); else torch's own ``linear``.
        reason: ``"probe"`` (the faster on one of the body's layers), ``"environment"``
            (``SPARSEBRIDGE_LINEAR``), ``"device"`` (not a float32 model on a CPU with oneDNN: torch),
            or why oneDNN was given up for torch (it did not reproduce the model's own logits).
        seconds: The probe's time for each (``"torch"``, ``"onednn"``): best of three rounds over
            the probe's token counts; empty unless ``reason`` is ``"probe"``.
    """

    onednn: bool
    reason: str
    seconds: Mapping[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        name = "onednn" if self.onednn else "torch"
        if not self.seconds:
            return f"{name} ({self.reason})"
        timed = ", ".join(f"{key} {1000 * s:.2f} ms" for key, s in self.seconds.items())
        return f"{name} (probe: {timed})"


class _OneDnnLinear(nn.Linear):
    """An ``nn.Linear`` of the body that multiplies through oneDNN with a packed copy of its weight.

    It shares ``weight`` and ``bias`` with the model's layer (code that reads them sees the model's).
    """

    packed: torch.Tensor

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return onednn_linear(input, self.packed, self.bias)


class SpladeStages:
    """The stages of the SPLADE fast path for one MLM + max-pooling model (see the module docstring).

    Build it with :meth:`find`, which returns None for models that need the generic path.

    Attributes:
        projection: The model's vocabulary projection (``nn.Linear``, ``[V, H]`` weight).
        tokenizer: The model's tokenizer.
        max_seq_length: Texts are truncated to this many tokens.
        double_log: The activation is ``log1p(log1p(relu(x)))`` instead of ``log1p(relu(x))``.
        model_name: The model's name or path, for messages.
    """

    def __init__(
        self,
        *,
        hf_model: nn.Module,
        projection_name: str,
        tokenizer: Any,
        max_seq_length: int,
        double_log: bool,
        model_name: str,
    ) -> None:
        projection = hf_model.get_submodule(projection_name)
        if not isinstance(projection, nn.Linear):
            raise TypeError(f"{projection_name} is not an nn.Linear")
        self.projection = projection
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.double_log = double_log
        self.model_name = model_name
        self._hf_model = hf_model
        self._projection_name = projection_name
        self._body = _without(hf_model, projection_name)
        self.linear_choice = self._choose_linear()
        if self.linear_choice.onednn:
            self._body = _with_onednn_linears(self._body)
        self._tokenize = functools.partial(
            tokenizer,
            truncation=True,
            max_length=max_seq_length,
            padding=True,
            return_tensors="np",
            return_token_type_ids=False,
        )
        self._screen_lock = threading.Lock()
        self._screen: QuantizedProjection | None = None
        self._screen_made = False
        self._tiles: list[torch.Tensor] | None = None
        self._choice_lock = threading.Lock()
        self._choice: HeadChoice | None = None
        self._probe_batch: tuple[torch.Tensor, torch.Tensor | None] | None = None

    @classmethod
    def find(cls, model: SparseEncoder) -> SpladeStages | None:
        """The stages of ``model`` if it is ``[Transformer(fill-mask), SpladePooling(max)]``, else None.

        The vocabulary projection is the model's ``get_output_embeddings()`` when that is a linear
        layer of vocabulary size, else the last such ``nn.Linear`` in the model (custom models
        often keep it as ``decoder`` without exposing it). It is trusted only after a probe: the
        body followed by the projection must reproduce the model's own logits, padded and unpadded.

        Raises:
            ModelOutputError: The model's own output on the probe is NaN or Inf.
        """
        from sentence_transformers.sparse_encoder.modules import SpladePooling

        modules = list(model.children())
        if len(modules) != 2 or not isinstance(modules[1], SpladePooling):
            return None
        transformer, pooling = modules
        if pooling.pooling_strategy != "max" or getattr(transformer, "transformer_task", None) != "fill-mask":
            return None
        # Per-task lengths, query expansion or tokenizer overrides change tokenization: generic path.
        for option in ("query_length", "document_length", "query_expansion", "processing_kwargs"):
            if getattr(transformer, option, None):
                return None
        hf_model = getattr(transformer, "model", None)
        if not isinstance(hf_model, nn.Module):
            return None
        name = _projection_name(hf_model)
        if name is None:
            return None
        stages = cls(
            hf_model=hf_model,
            projection_name=name,
            tokenizer=transformer.tokenizer,
            max_seq_length=int(cast(Any, transformer).max_seq_length),
            double_log=pooling.activation_function == "log1p_relu",
            model_name=model_name(model),
        )
        if not stages._reproduces_model():
            if not stages.linear_choice.onednn:
                return None
            # a model whose layers oneDNN's linear cannot serve as called: its own torch layers
            stages._use_torch_linears("oneDNN's linear did not reproduce the model")
            if not stages._reproduces_model():
                return None
        logger.info(
            "%s: head %s; linear layers %s", stages.model_name, stages.head_choice, stages.linear_choice
        )
        return stages

    @property
    def device(self) -> torch.device:
        return self.projection.weight.device

    @property
    def vocab_size(self) -> int:
        return self.projection.out_features

    def heads(self) -> list[Head]:
        """The heads that can run here, the one :meth:`head` uses by default (:attr:`head_choice`) first."""
        chosen = self.head_choice.head
        return [chosen, *(head for head in self._available_heads() if head is not chosen)]

    @property
    def head_choice(self) -> HeadChoice:
        """The default head and why it was chosen (made once, on first use: :meth:`find` uses it).

        ``SPARSEBRIDGE_HEAD`` set to a :class:`Head` value picks that head (an error if it cannot
        run here). Otherwise on CUDA the fused Triton kernel where Triton is present, else torch;
        on a CPU each CPU head (the int8 screen on x86 CPUs with AVX2, the tiled and the plain
        float32 heads) runs once to warm up and three times timed on the probe texts repeated to ~512
        tokens, and the fastest wins. Every head gives the same vectors (within float32
        rounding), so the choice changes speed only. On a busy machine the timings are noisy, and
        the choice may differ from a quiet machine's.
        """
        if self._choice is None:
            with self._choice_lock:
                if self._choice is None:
                    self._choice = self._choose_head()
        return self._choice

    def use_head(self, head: Head | str) -> HeadChoice:
        """Make ``head`` the default for every later call (and every thread); returns the new choice.

        Raises:
            ValueError: ``head`` is not a head or cannot run on this device.
        """
        chosen = self._runnable(head)
        with self._choice_lock:
            self._choice = HeadChoice(chosen, "use_head")
        return self._choice

    def _available_heads(self) -> list[Head]:
        """Every head that can run on this device, in order of preference before any timing."""
        if self.device.type == "cuda":
            return [Head.TRITON, Head.TORCH] if triton_head.available(self.device) else [Head.TORCH]
        available = [Head.INT8_SCREEN] if self.screen is not None else []
        available += [Head.TILED, Head.TORCH]
        if triton_head.available(self.device):  # Triton's interpreter (TRITON_INTERPRET=1): tests only
            available.append(Head.TRITON)
        return available

    def _runnable(self, head: Head | str) -> Head:
        try:
            chosen = Head(head)
        except ValueError:
            raise ValueError(f"unknown head {head!r}: one of {', '.join(h.value for h in Head)}") from None
        available = self._available_heads()
        if chosen not in available:
            names = ", ".join(h.value for h in available)
            raise ValueError(f"head {chosen.value!r} cannot run on {self.device} (here: {names})")
        return chosen

    def _choose_head(self) -> HeadChoice:
        requested = os.environ.get(HEAD_VARIABLE, "").strip()
        if requested:
            try:
                return HeadChoice(self._runnable(requested), "environment")
            except ValueError as e:
                raise ValueError(f"{HEAD_VARIABLE}={requested}: {e}") from None
        available = self._available_heads()
        if self.device.type != "cpu":
            return HeadChoice(available[0], "device")
        candidates = [head for head in available if head is not Head.TRITON]
        key = ("head", tuple(self.projection.weight.shape), self.projection.weight.dtype, tuple(candidates))
        return cast(HeadChoice, _probed(key, lambda: self._probe_heads(candidates)))

    def _probe_heads(self, candidates: Sequence[Head]) -> HeadChoice:
        hidden, mask = self._head_probe_batch()
        seconds: dict[Head, float] = dict.fromkeys(candidates, float("inf"))
        with torch.inference_mode():
            # a warm-up run of each (allocations, oneDNN's kernels for these shapes), then three
            # timed rounds that take turns, so that a busy moment of the machine hits every head
            for timed in (False, True, True, True):
                for head in candidates:
                    start = time.perf_counter()
                    self.head(hidden, mask, method=head, chunk_tokens=1024)
                    if timed:
                        seconds[head] = min(seconds[head], time.perf_counter() - start)
        fastest = min(candidates, key=seconds.__getitem__)  # ties go to the earlier, preferred head
        return HeadChoice(fastest, "probe", seconds, probe_tokens=hidden.shape[0] * hidden.shape[1])

    def _head_probe_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Hidden states to time the heads on: the probe texts' (from :meth:`find`), repeated."""
        if self._probe_batch is None:  # built without find(): random states of the model's width
            generator = torch.Generator().manual_seed(0)
            hidden = torch.randn(2, 16, self.projection.in_features, generator=generator)
            self._probe_batch = hidden.to(self.device, self.projection.weight.dtype), None
        hidden, mask = self._probe_batch
        copies = max(1, _HEAD_PROBE_TOKENS // (hidden.shape[0] * hidden.shape[1]))
        return hidden.repeat(copies, 1, 1), None if mask is None else mask.repeat(copies, 1)

    def _use_torch_linears(self, reason: str) -> None:
        self._body = _without(self._hf_model, self._projection_name)
        self.linear_choice = LinearChoice(False, reason)

    def _choose_linear(self) -> LinearChoice:
        """oneDNN or torch for the body's linear layers (see :class:`LinearChoice`)."""
        layers = [m for m in self._body.modules() if type(m) is nn.Linear]
        if not layers or not _onednn_float32([layer.weight for layer in layers]):
            return LinearChoice(False, "device")
        requested = os.environ.get(LINEAR_VARIABLE, "").strip()
        if requested:
            if requested not in ("torch", "onednn"):
                raise ValueError(f"{LINEAR_VARIABLE}={requested}: one of torch, onednn")
            return LinearChoice(requested == "onednn", "environment")
        layer = max(layers, key=lambda m: m.weight.numel())
        return cast(
            LinearChoice, _probed(("linear", tuple(layer.weight.shape)), lambda: _probe_linear(layer))
        )

    def _packed_tiles(self) -> list[torch.Tensor] | None:
        """The projection packed for oneDNN in the tiled head's tiles, for a float32 model on a CPU
        with oneDNN (made once); None elsewhere."""
        if not _onednn_float32([self.projection.weight]):
            return None
        if self._tiles is None:
            with self._screen_lock:
                if self._tiles is None:
                    self._tiles = pack_vocabulary_tiles(self.projection.weight.detach())
        return self._tiles

    @property
    def screen(self) -> QuantizedProjection | None:
        """The int8 copy of the projection, on CPUs where the int8 screen applies (made once)."""
        if not self._screen_made:
            with self._screen_lock:
                if not self._screen_made:
                    self._screen = QuantizedProjection.create(self.projection.weight)
                    self._screen_made = True
        return self._screen

    def tokenize(
        self,
        texts: Sequence[str],
        *,
        token_budget: int,
        max_batch_size: int,
        chunk_size: int = 1024,
        window: int = 32,
        pool: ProcessPoolExecutor | None = None,
        workers: int = 0,
    ) -> Iterator[HostBatch]:
        """Token-budget batches of ``texts`` on the host (see :func:`.batching.tokenized_batches`).

        ``pool`` (from :func:`.batching.tokenizer_pool` with :attr:`tokenize_function`) tokenises
        chunks in worker processes. Each batch's ``positions`` index ``texts``.
        """
        return tokenized_batches(
            self._tokenize,
            texts,
            pad_id=self.tokenizer.pad_token_id or 0,
            token_budget=token_budget,
            max_batch_size=max_batch_size,
            chunk_size=chunk_size,
            window=window,
            pool=pool,
            workers=workers,
        )

    @property
    def tokenize_function(self) -> functools.partial[Any]:
        """The picklable tokenizer call that :meth:`tokenize` uses (for a tokenizer pool)."""
        return self._tokenize

    def to_device(self, batch: HostBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``input_ids`` and ``mask`` of a batch on the model's device (pinned, asynchronous on CUDA)."""
        return _to_device(batch.input_ids, self.device), (
            None if batch.mask is None else _to_device(batch.mask, self.device)
        )

    def body(self, input_ids: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Hidden states ``[B, L, H]`` right before the vocabulary projection.

        ``mask`` is None for unpadded batches: they run without an attention mask (no
        device-to-host sync, and SDPA may pick flash attention). With a 2-D mask transformers
        checks it for padding (``mask.all()``), a sync per padded batch (~5 ms measured on an H100).
        """
        with attention_without_cudnn([self.device]):
            return _logits(
                self._body(input_ids=input_ids, attention_mask=None if mask is None else mask.long())
            )

    def head(
        self,
        hidden: torch.Tensor,
        mask: torch.Tensor | None,
        *,
        method: Head | None = None,
        chunk_tokens: int,
    ) -> torch.Tensor:
        """Activated SPLADE weights ``[B, V]`` (float32) from the body's hidden states.

        The max over real tokens is taken on raw logits and activated once. ``method`` defaults to
        :attr:`head_choice`; ``chunk_tokens`` bounds the tokens whose logits the torch and int8
        heads hold at once (the tiled head's tiles have a fixed, cache-sized shape). A row whose
        hidden states are not all finite comes out as NaN, which the extractor reports as
        :class:`~sparsebridge.errors.ModelOutputError`.
        """
        method = self.head_choice.head if method is None else self._runnable(method)
        weight, bias = self.projection.weight, self.projection.bias
        padded = pad_with_first_token(hidden, mask)
        finite = torch.isfinite(padded).flatten(1).all(dim=1)
        if method is Head.TILED:
            pooled = splade_max_logits_tiled(padded, None, weight, bias, packed_tiles=self._packed_tiles())
        elif method is Head.INT8_SCREEN:
            screen = self.screen
            assert screen is not None
            if not bool(finite.all()):  # the screen's quantisation needs finite inputs (CPU: no sync cost)
                hidden = torch.where(finite[:, None, None], hidden, 0)
            pooled = splade_max_logits_screened(hidden, mask, weight, bias, screen, chunk_tokens=chunk_tokens)
        elif method is Head.TRITON:
            pooled = triton_head.max_logits(padded.flatten(0, 1), weight, padded.shape[1])
            pooled = pooled + bias if bias is not None else pooled
        else:
            pooled = splade_max_logits(padded, None, weight, bias, chunk_tokens=chunk_tokens)
        dense = splade_activation(pooled, double_log=self.double_log)
        return dense.masked_fill_(~finite[:, None], float("nan"))

    def _reproduces_model(self) -> bool:
        """Whether body + projection give the model's own logits on a padded and an unpadded batch."""
        features = self.tokenizer(
            _PROBE_TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False
        )
        ids = features["input_ids"].to(self.device)
        mask = features["attention_mask"].to(self.device)
        with torch.inference_mode():
            try:
                expected = _logits(self._hf_model(input_ids=ids, attention_mask=mask))
            except Exception:  # a forward that needs more inputs than ids and mask: generic path
                return False
            if not bool(torch.isfinite(expected[mask.bool()]).all()):
                raise ModelOutputError(non_finite_message(self.model_name), self.model_name)
            try:
                hidden = self.body(ids, mask.bool())
                padded = self.projection(hidden)
                unpadded = self.projection(self.body(ids[1:], None))
            except Exception:  # the model's forward does not fit the fast path's calls
                return False
        self._probe_batch = hidden, mask.bool()
        # Unpadded rows may run another attention kernel than the padded batch: in 16-bit floats
        # that moves logits by up to a few percent of their range; a wrong projection moves them by
        # about all of it.
        scale = float(expected.abs().max()) or 1.0
        tolerance = 1e-3 if expected.dtype == torch.float32 else 5e-2
        close = functools.partial(torch.allclose, rtol=0.0, atol=tolerance * scale)
        real = mask.bool()
        return bool(
            padded.shape == expected.shape
            and close(padded[real], expected[real])
            and close(unpadded[0], expected[1])
        )


def model_name(model: nn.Module) -> str:
    """The name or path a model was loaded from, as its transformers config records it."""
    for module in model.modules():
        name = getattr(getattr(module, "config", None), "name_or_path", None)
        if isinstance(name, str) and name:
            return name
    return type(model).__name__


def _projection_name(hf_model: nn.Module) -> str | None:
    """Name of the vocabulary projection: ``get_output_embeddings()``, else the last vocab-sized linear."""
    vocab = getattr(getattr(hf_model, "config", None), "vocab_size", None)
    names = {id(module): name for name, module in hf_model.named_modules() if name}
    get_output = getattr(hf_model, "get_output_embeddings", None)
    exposed = get_output() if callable(get_output) else None
    if isinstance(exposed, nn.Linear) and id(exposed) in names:
        return str(names[id(exposed)])
    if not isinstance(vocab, int):
        return None
    linear = [name for name, module in hf_model.named_modules() if isinstance(module, nn.Linear)]
    sized = [name for name in linear if hf_model.get_submodule(name).out_features == vocab]
    return sized[-1] if sized else None


def _without(root: nn.Module, name: str) -> nn.Module:
    """A copy of ``root`` whose submodule ``name`` is an identity; nothing of ``root`` changes.

    Only the modules on the path to ``name`` are copied, shallowly (each with its own table of
    children); every parameter, buffer and other submodule is shared with ``root``.
    """
    head, _, rest = name.partition(".")
    clone = copy.copy(root)
    clone._modules = dict(root._modules)
    child = root._modules[head]
    assert child is not None
    clone._modules[head] = _without(child, rest) if rest else nn.Identity()
    return clone


def _probe_linear(layer: nn.Linear) -> LinearChoice:
    """Time torch's linear and oneDNN's on ``layer`` at the probe's token counts."""
    weight, bias = layer.weight, layer.bias
    with torch.inference_mode():
        packed = onednn_pack(weight)
        generator = torch.Generator().manual_seed(0)
        inputs = [torch.randn(n, layer.in_features, generator=generator) for n in _LINEAR_PROBE_TOKENS]
        runs: dict[str, Callable[[torch.Tensor], Any]] = {
            "torch": lambda x: nn.functional.linear(x, weight, bias),
            "onednn": lambda x: onednn_linear(x, packed, bias),
        }
        seconds = dict.fromkeys(runs, float("inf"))
        for timed in (False, True, True, True):  # a warm-up, then three rounds taking turns
            for name, run in runs.items():
                start = time.perf_counter()
                for x in inputs:
                    run(x)
                if timed:
                    seconds[name] = min(seconds[name], time.perf_counter() - start)
    return LinearChoice(seconds["onednn"] < seconds["torch"], "probe", seconds)


_probed_lock = threading.Lock()
_probed_choices: dict[tuple[Any, ...], Any] = {}


def _probed(key: tuple[Any, ...], probe: Callable[[], Any]) -> Any:
    """``probe()``'s outcome, made once per ``key`` (the shapes timed) for the whole process."""
    with _probed_lock:
        if key not in _probed_choices:
            _probed_choices[key] = probe()
        return _probed_choices[key]


def _onednn_float32(weights: Sequence[torch.Tensor]) -> bool:
    """Whether oneDNN's float32 linear can serve these weights: all float32, on a CPU with oneDNN."""
    return (
        torch.backends.mkldnn.is_available()  # type: ignore[no-untyped-call]
        and all(w.device.type == "cpu" and w.dtype == torch.float32 for w in weights)
    )


def _with_onednn_linears(root: nn.Module) -> nn.Module:
    """A copy of ``root`` in which every ``nn.Linear`` runs through oneDNN; nothing of ``root`` changes.

    The modules on the path to each linear layer are copied shallowly (each with its own table of
    children); each linear layer becomes an :class:`_OneDnnLinear` sharing its weight and bias.
    """
    if type(root) is nn.Linear:
        linear = copy.copy(root)
        linear._parameters = dict(root._parameters)
        linear.__class__ = _OneDnnLinear
        linear.packed = onednn_pack(root.weight)
        return linear
    if not any(type(m) is nn.Linear for m in root.modules()):
        return root
    clone = copy.copy(root)
    clone._modules = {
        name: None if child is None else _with_onednn_linears(child) for name, child in root._modules.items()
    }
    return clone


def _logits(output: Any) -> torch.Tensor:
    """The logits of an MLM's output: a ``ModelOutput``, a dict or a tuple (logits first)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, dict) or hasattr(output, "keys"):
        return cast(torch.Tensor, output["logits"])
    return cast(torch.Tensor, output[0])


def _to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    tensor = torch.from_numpy(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor


_cudnn_lock = threading.Lock()
_cudnn_users = 0
_cudnn_was_enabled = True


@contextmanager
def _cudnn_attention_off() -> Iterator[None]:
    global _cudnn_users, _cudnn_was_enabled
    with _cudnn_lock:
        if _cudnn_users == 0:
            _cudnn_was_enabled = torch.backends.cuda.cudnn_sdp_enabled()  # type: ignore[no-untyped-call]
            torch.backends.cuda.enable_cudnn_sdp(False)
        _cudnn_users += 1
    try:
        yield
    finally:
        with _cudnn_lock:
            _cudnn_users -= 1
            if _cudnn_users == 0:
                torch.backends.cuda.enable_cudnn_sdp(_cudnn_was_enabled)


def attention_without_cudnn(devices: Sequence[torch.device]) -> AbstractContextManager[Any]:
    """On CUDA, SDPA may pick flash, memory-efficient or math attention, but not cuDNN's.

    cuDNN attention builds a plan for every new batch shape: ~75 ms per shape on an H100, against
    ~8 ms for the whole 12-layer forward it serves (bench/results/gpu-h100-shapes.log), and
    token-budget batches rarely repeat a shape. The switch is process-wide, so it is counted: the
    first thread to enter turns cuDNN attention off, the last to leave restores the setting.
    """
    if not any(device.type == "cuda" for device in devices):
        return nullcontext()
    return _cudnn_attention_off()
