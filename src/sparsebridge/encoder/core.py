"""The encoding core: any sentence-transformers ``SparseEncoder`` in, :class:`SparseVector` out."""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sparsebridge.encoder.batching import plan_batches, prefetch, tokenizer_pool
from sparsebridge.encoder.coalesce import Coalescer
from sparsebridge.encoder.extract import SparseExtractor
from sparsebridge.encoder.loading import cast_floating, restore_constructor_buffers
from sparsebridge.encoder.stages import Head, SpladeStages, attention_without_cudnn, model_name
from sparsebridge.errors import InputError, ModelLoadError
from sparsebridge.types import SparseVector, check_pruning

if TYPE_CHECKING:
    from sentence_transformers import SparseEncoder

__all__ = ["Encoder", "Task"]

logger = logging.getLogger(__name__)

_GENERIC_TOKEN_BUDGET = 4096
_DEVICE_CHUNK = 65536  # texts a device takes from the shared queue at once


class Task(str, Enum):
    """Which of the model's paths encodes the text."""

    QUERY = "query"
    DOCUMENT = "document"


# What a gathered pass shares: the task and the pruning options of every call in it.
_PassKey = tuple[Task, int | None, float]


class Encoder:
    """Encode texts into :class:`SparseVector` with a sentence-transformers sparse model.

    The encoder owns batching (length-sorted, token-budget batches), pooling and pruning on the
    device; only indices and values cross to the host. For MLM + max-pooling (SPLADE) models it
    pools raw logits in chunks and activates once (the fast path); every other architecture runs
    through the model's own modules (the generic path), including routers whose query side is
    inference-free.

    One encoder may serve many threads and event loops at once (a web app answering searches): a
    call never modifies the model and keeps its state to itself. Concurrent calls of fewer than
    ``coalesce_max_batch`` texts share forward passes (see :mod:`sparsebridge.encoder.coalesce`):
    a call that finds the encoder idle runs at once, calls that arrive during a pass form the
    next one, and each caller gets its own vectors, equal to those of a lone call up to float
    rounding (the same non-zero dimensions, weights within 1e-5). Larger calls run directly, in
    the caller's thread. The fast path's stages are public (:attr:`stages`).

    Args:
        model: A loaded sentence-transformers ``SparseEncoder`` (see :meth:`load`).
        token_budget: Most padded tokens per batch (default 65536 on CUDA, 8192 on CPU).
        max_batch_size: Most texts per batch (default 1024 on CUDA, 256 on CPU).
        head_chunk_tokens: Tokens whose logits are materialised at once by the unfused head.
        fast_path: Use the SPLADE fast path when the model allows it.
        fused_head: On CUDA, use the fused Triton head (no logits in memory) when Triton is present.
        coalesce: Gather concurrent small calls into shared passes (False: every call runs on its
            own, concurrently with the others).
        coalesce_max_batch: Most texts per gathered pass (default 32 on a CPU, 256 on CUDA: a CPU
            pass over a few dozen short queries is already compute-bound, so larger passes add
            latency, not throughput). Calls with at least this many texts are not gathered.
        coalesce_max_wait: Under load (the last pass gathered several calls), the longest the next
            pass waits for more calls, in seconds (default 0.002; 0 never waits). A call that finds
            the encoder idle never waits.

    Example:
        >>> enc = Encoder.load("naver/splade-v3")  # doctest: +SKIP
        >>> [v] = enc.encode_queries(["what is splade"], top_k=64)  # doctest: +SKIP
        >>> enc.tokens(v)  # doctest: +SKIP
        {'spl': 2.1, ...}
    """

    def __init__(
        self,
        model: SparseEncoder,
        *,
        token_budget: int | None = None,
        max_batch_size: int | None = None,
        head_chunk_tokens: int | None = None,
        fast_path: bool = True,
        fused_head: bool = True,
        coalesce: bool = True,
        coalesce_max_batch: int | None = None,
        coalesce_max_wait: float = 0.002,
    ) -> None:
        cuda = model.device.type == "cuda"
        token_budget = token_budget or (65536 if cuda else 8192)
        max_batch_size = max_batch_size or (1024 if cuda else 256)
        if token_budget <= 0 or max_batch_size <= 0:
            raise ValueError("token_budget and max_batch_size must be positive")
        if head_chunk_tokens is not None and head_chunk_tokens <= 0:
            raise ValueError("head_chunk_tokens must be positive")
        self.model = model
        self.token_budget = token_budget
        self.max_batch_size = max_batch_size
        self.head_chunk_tokens = head_chunk_tokens or (8192 if model.device.type == "cuda" else 1024)
        self.model_name = model_name(model)
        self._stages = SpladeStages.find(model) if fast_path else None
        self.fused_head = fused_head
        cores = os.cpu_count() or 1
        self._tokenizer_workers = min(8, cores // 2) if cores >= 4 else 0
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._replicas: list[Encoder] = []
        self._pool_owner: Encoder | None = None
        self._vocab: list[str] | None = None
        self._token_ids: dict[str, int] | None = None
        self.coalescer: Coalescer[_PassKey, str, SparseVector] | None = None
        """The coalescer of concurrent calls (None when ``coalesce=False``); metrics read it."""
        if coalesce:
            self.coalescer = Coalescer(
                _weak_run(self),
                max_batch=(256 if cuda else 32) if coalesce_max_batch is None else coalesce_max_batch,
                max_wait=coalesce_max_wait,
                name=f"sparsebridge-coalesce-{self.model_name}",
            )
            weakref.finalize(self, self.coalescer.close)

    @classmethod
    def load(
        cls,
        model_name_or_path: str,
        *,
        device: str | None = None,
        devices: Sequence[str] | None = None,
        dtype: torch.dtype | None = None,
        trust_remote_code: bool = False,
        **options: Any,
    ) -> Encoder:
        """Load a ``SparseEncoder`` by hub name or local path.

        Args:
            model_name_or_path: A Hugging Face hub name, a local directory, or a bundled test
                model's short name (``splade-tiny``, see :mod:`sparsebridge.encoder.models`).
            device: ``"cuda"``, ``"cpu"``, ... Defaults to CUDA when present, else CPU.
            devices: Several devices of this machine (``["cuda:0", "cuda:1"]``) instead of
                ``device``: one copy of the model on each, fed from one queue of chunks of texts
                (a device named twice gets two copies, whose host work then overlaps).
            dtype: Defaults to ``torch.bfloat16`` on CUDA and ``torch.float32`` elsewhere.
            trust_remote_code: Passed to transformers; needed by models with custom code (NeoBERT).
                Buffers that such code computes in its constructor are restored after loading
                (see :mod:`sparsebridge.encoder.loading`).
            **options: Keyword options of :class:`Encoder` (``token_budget``, ``max_batch_size``...).

        Raises:
            ModelLoadError: The model cannot be found or loaded.
            ModelOutputError: The loaded model's output is NaN or Inf.
        """
        if devices is not None:
            names = list(devices)
            if isinstance(devices, str) or not names or device is not None:
                raise ValueError("pass devices as a non-empty list of device names, and no device")
            encoders = [
                cls.load(
                    model_name_or_path,
                    device=name,
                    dtype=dtype,
                    trust_remote_code=trust_remote_code,
                    **options,
                )
                for name in names
            ]
            primary = encoders[0]
            primary._replicas = encoders[1:]
            for replica in primary._replicas:
                replica._pool_owner = primary
            return primary
        from sentence_transformers import SparseEncoder

        from sparsebridge.encoder.models import resolve_model

        model_name_or_path = resolve_model(model_name_or_path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype is None:
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        try:
            model = SparseEncoder(model_name_or_path, device=device, trust_remote_code=trust_remote_code)
        except Exception as e:  # transformers raises OSError, ValueError, HF errors...
            raise ModelLoadError(f"cannot load sparse model {model_name_or_path!r}: {e}") from e
        restore_constructor_buffers(model)
        cast_floating(model, dtype)
        model.eval()
        return cls(model, **options)

    @property
    def suggested_batch_size(self) -> int:
        """Texts per ``encode_*`` call that keep the device busy: 16,384 per GPU, 256 on a CPU.

        Each call ends by waiting for its last batches, so calls of a few hundred texts leave a GPU
        idle between them; on a CPU small calls cost nothing and keep progress fine-grained.
        """
        gpus = sum(device.type == "cuda" for device in self.devices)
        return 16384 * gpus if gpus else 256

    @property
    def devices(self) -> list[torch.device]:
        """Every device this encoder runs on (one, unless loaded with ``devices``)."""
        return [self.device, *(replica.device for replica in self._replicas)]

    @property
    def device(self) -> torch.device:
        return self.model.device

    @property
    def uses_fast_path(self) -> bool:
        """True when the MLM + max-pooling fast path is active."""
        return self._stages is not None

    @property
    def stages(self) -> SpladeStages | None:
        """The fast path's stages (tokenize, body, head), to time or run them one at a time.

        None when the model takes the generic path.
        """
        return self._stages

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def vocab(self) -> list[str]:
        """Token string of every output dimension (index -> token)."""
        if self._vocab is None:
            tokenizer = self.model.tokenizer
            # Sparse models output one dimension per vocabulary entry. (The model's reported
            # embedding dimension is not reliable before a first forward pass.)
            size = self._stages.vocab_size if self._stages is not None else len(tokenizer)
            self._vocab = list(tokenizer.convert_ids_to_tokens(list(range(size))))
        return self._vocab

    @property
    def max_seq_length(self) -> int:
        """Texts are truncated to this many tokens (special tokens and the task's prompt included)."""
        return int(self.model.max_seq_length)

    def token_counts(self, texts: Sequence[str], *, task: Task = Task.QUERY) -> list[int]:
        """Tokens of each text on ``task``'s path before truncation (prompt and special tokens included).

        A text with more than :attr:`max_seq_length` tokens is truncated when encoded.
        """
        _, prompted = self._prepare(texts, Task(task), None, 0.0)
        encoded = self.model.tokenizer(prompted, add_special_tokens=True, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def token(self, index: int) -> str:
        """The token string of output dimension ``index``."""
        if not 0 <= index < self.vocab_size:
            raise ValueError(f"token index {index} is outside the vocabulary [0, {self.vocab_size})")
        return self.vocab[index]

    def token_id(self, token: str) -> int:
        """The output dimension of ``token``."""
        if self._token_ids is None:
            self._token_ids = {t: i for i, t in enumerate(self.vocab)}
        try:
            return self._token_ids[token]
        except KeyError:
            raise ValueError(f"token {token!r} is not in the model's vocabulary") from None

    def tokens(self, vector: SparseVector) -> dict[str, float]:
        """``{token string: weight}`` of a vector, for inspection."""
        return {self.token(i): w for i, w in vector.as_dict().items()}

    def encode_documents(
        self, texts: Sequence[str], *, top_k: int | None = None, min_weight: float = 0.0
    ) -> list[SparseVector]:
        """Encode documents with the model's document path; results in input order."""
        return self._encode(self._prepare(texts, Task.DOCUMENT, top_k, min_weight))

    def encode_queries(
        self, texts: Sequence[str], *, top_k: int | None = None, min_weight: float = 0.0
    ) -> list[SparseVector]:
        """Encode queries with the model's query path (inference-free where the model is).

        Concurrent calls share forward passes (see the class docstring).
        """
        return self._encode(self._prepare(texts, Task.QUERY, top_k, min_weight))

    async def aencode_documents(
        self, texts: Sequence[str], *, top_k: int | None = None, min_weight: float = 0.0
    ) -> list[SparseVector]:
        """:meth:`encode_documents` for asyncio: the pass runs in a thread, never in the event loop."""
        return await self._aencode(self._prepare(texts, Task.DOCUMENT, top_k, min_weight))

    async def aencode_queries(
        self, texts: Sequence[str], *, top_k: int | None = None, min_weight: float = 0.0
    ) -> list[SparseVector]:
        """:meth:`encode_queries` for asyncio: the pass runs in a thread, never in the event loop.

        Calls from tasks and from threads share the same passes. Cancelling the awaiting task
        before its pass starts drops its texts from the pass.

        Example:
            >>> vectors = await enc.aencode_queries(["what is splade"])  # doctest: +SKIP
        """
        return await self._aencode(self._prepare(texts, Task.QUERY, top_k, min_weight))

    def _prepare(
        self, texts: Sequence[str], task: Task, top_k: int | None, min_weight: float
    ) -> tuple[_PassKey, list[str]]:
        """The pass key and the checked, prompted texts of a call (errors raise in the caller)."""
        check_pruning(top_k, min_weight)
        checked = _checked_texts(texts)
        prompt = self.model.prompts.get(task.value) or ""
        if prompt:
            checked = [prompt + t for t in checked]
        return (task, top_k, min_weight), checked

    def _gathered(self, texts: list[str]) -> Coalescer[_PassKey, str, SparseVector] | None:
        """The coalescer when a call of ``texts`` shares passes with others, else None."""
        if self.coalescer is None or not texts or len(texts) >= self.coalescer.max_batch:
            return None
        return self.coalescer

    def _encode(self, call: tuple[_PassKey, list[str]]) -> list[SparseVector]:
        key, texts = call
        coalescer = self._gathered(texts)
        return coalescer.call(key, texts) if coalescer is not None else self._run_pass(key, texts)

    async def _aencode(self, call: tuple[_PassKey, list[str]]) -> list[SparseVector]:
        key, texts = call
        coalescer = self._gathered(texts)
        if coalescer is not None:
            return await asyncio.wrap_future(coalescer.submit(key, texts))
        return await asyncio.to_thread(self._run_pass, key, texts)

    def _run_pass(self, key: _PassKey, texts: list[str]) -> list[SparseVector]:
        """Encode checked, prompted ``texts`` on every device of this encoder."""
        task, top_k, min_weight = key
        if not texts:
            return []
        with attention_without_cudnn(self.devices):
            if not self._replicas:
                return self._encode_here(texts, task, top_k=top_k, min_weight=min_weight)
            return self._encode_on_every_device(texts, task, top_k=top_k, min_weight=min_weight)

    def _encode_on_every_device(
        self, texts: list[str], task: Task, *, top_k: int | None, min_weight: float
    ) -> list[SparseVector]:
        """Chunks of texts in one queue; one thread per device takes the next chunk when it is free."""
        workers = [self, *self._replicas]
        size = min(_DEVICE_CHUNK, -(-len(texts) // len(workers)))
        starts: queue.SimpleQueue[int] = queue.SimpleQueue()
        for start in range(0, len(texts), size):
            starts.put(start)
        results: list[SparseVector | None] = [None] * len(texts)
        failures: list[BaseException] = []

        def work(encoder: Encoder) -> None:
            while not failures:
                try:
                    start = starts.get_nowait()
                except queue.Empty:
                    return
                try:
                    chunk = texts[start : start + size]
                    results[start : start + size] = encoder._encode_here(
                        chunk, task, top_k=top_k, min_weight=min_weight
                    )
                except BaseException as error:  # re-raised in the caller's thread
                    failures.append(error)

        threads = [
            threading.Thread(target=work, args=(encoder,), name=f"sparsebridge-{encoder.device}", daemon=True)
            for encoder in workers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]
        return [v for v in results if v is not None]

    def _encode_here(
        self, texts: list[str], task: Task, *, top_k: int | None, min_weight: float
    ) -> list[SparseVector]:
        """Encode on this encoder's own device (``texts`` already checked and prompted)."""
        run_batch = self._fast_batches if self._stages is not None else self._generic_batches
        extractor = SparseExtractor(
            device=self.device, top_k=top_k, min_weight=min_weight, model=self.model_name
        )
        results: list[SparseVector | None] = [None] * len(texts)
        device = torch.cuda.device(self.device) if self.device.type == "cuda" else nullcontext()
        with torch.inference_mode(), device:  # CUDA streams, events and Triton use the current device
            for positions, dense in run_batch(texts, task):
                for position, vector in extractor.submit(positions, dense):
                    results[position] = vector
            for position, vector in extractor.drain():
                results[position] = vector
        return [v for v in results if v is not None]

    def _fast_batches(self, texts: list[str], task: Task) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        stages = self._stages
        assert stages is not None
        chunk_size = 1024
        pool = self._tokenizer_pool(stages.tokenize_function) if len(texts) > chunk_size else None
        host_batches = stages.tokenize(
            texts,
            token_budget=self.token_budget,
            max_batch_size=self.max_batch_size,
            chunk_size=chunk_size,
            window=32,  # batches cut from up to 32k texts at once: most get one exact length, no mask
            pool=pool,
            workers=self._tokenizer_workers,
        )
        head = stages.heads()[0]
        if head is Head.TRITON and not (self.fused_head and self.device.type == "cuda"):
            head = Head.TORCH
        for batch in prefetch(host_batches, depth=4):
            ids, mask = stages.to_device(batch)
            # Padded batches keep the 2-D mask: a ready 4-D boolean mask avoids transformers' padding
            # check but ran 3x slower in SDPA with cuDNN attention allowed (run B in bench/results/).
            hidden = stages.body(ids, mask)
            yield batch.positions, stages.head(hidden, mask, method=head, chunk_tokens=self.head_chunk_tokens)

    def _tokenizer_pool(self, tokenize: Any) -> ProcessPoolExecutor | None:
        """Worker processes that tokenise chunks in parallel, started on first large input.

        Tokenising is the host's largest cost once the GPU runs the model; one process keeps up
        with about a tenth of an H100. Only machines with >= 4 cores get workers. An encoder's
        copies on other devices use the same pool.
        """
        if self._pool_owner is not None:
            return self._pool_owner._tokenizer_pool(tokenize)
        if self._tokenizer_workers == 0:
            return None
        with self._pool_lock:
            if self._pool is None:
                self._pool = tokenizer_pool(tokenize, self._tokenizer_workers)
                weakref.finalize(self, self._pool.shutdown, wait=False, cancel_futures=True)
            return self._pool

    def _generic_batches(self, texts: list[str], task: Task) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
        from sentence_transformers.util import batch_to_device

        # Character length is the proxy for token length here; the tokenizer may differ per route.
        char_lengths = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        approx_tokens = np.minimum(char_lengths // 4 + 2, self.model.max_seq_length or 512)
        # The model materialises [batch, length, vocab] logits here: smaller batches than the fast path.
        budget = min(self.token_budget, _GENERIC_TOKEN_BUDGET)
        for positions in plan_batches(approx_tokens, token_budget=budget, max_batch_size=self.max_batch_size):
            batch = [texts[i] for i in positions.tolist()]
            features = batch_to_device(self.model.preprocess(batch, task=task.value), self.device)
            yield positions, self.model(features, task=task.value)["sentence_embedding"]


def _weak_run(encoder: Encoder) -> Callable[[_PassKey, list[str]], list[SparseVector]]:
    """``encoder._run_pass`` without a strong reference: the coalescer's thread must not keep the
    encoder alive (its finalizer closes the coalescer)."""
    reference = weakref.ref(encoder)

    def run(key: _PassKey, texts: list[str]) -> list[SparseVector]:
        alive = reference()
        if alive is None:
            raise RuntimeError("the encoder was garbage-collected")
        return alive._run_pass(key, texts)

    return run


def _checked_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("pass a list of strings, not a single string")
    checked = list(texts)
    for position, text in enumerate(checked):
        if not isinstance(text, str):
            raise InputError(f"text #{position} is {type(text).__name__}, not a string")
        if not text.strip():
            raise InputError(f"text #{position} is empty")
    return checked
