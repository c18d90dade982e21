"""``sparsebridge bench ingest``: how well the pipeline overlaps encoding and writing.

In one run, on synthetic documents:

- encode-only rate: the encoder alone, in batches, no sink;
- sink-only rate: the whole pipeline with vectors encoded beforehand (the encoder stage only looks
  them up), so the sink is the only cost;
- pipeline rate: the whole pipeline with the real encoder;
- overlap efficiency = pipeline / min(encode-only, sink-only): 1.0 means the slower stage alone
  sets the pace; on a machine where the encoder and the engine share the same CPU cores it is
  bounded by how much CPU the two stages leave each other;
- memory high-water mark: the largest resident set size sampled during the pipeline run, and its
  growth over the resident size before it.
"""

from __future__ import annotations

import os
import platform
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from sparsebridge.backends.base import Backend
from sparsebridge.backends.targets import redact_uri
from sparsebridge.encoder import Encoder
from sparsebridge.ingest.pipeline import IngestStats, ingest
from sparsebridge.types import Document, SparseVector

__all__ = ["BenchResult", "bench_ingest", "synthetic_documents"]

_WORDS = (
    "river water flow delta bank flood stream valley bridge planet star orbit moon galaxy telescope "
    "rocket comet protein gene cell enzyme membrane virus vaccine immune compiler python memory thread "
    "cache index query server bread coffee cheese pasta oven sugar flour recipe city train market "
    "music paint garden winter summer ocean mountain forest desert island history science"
).split()


def synthetic_documents(
    n: int, *, seed: int = 0, prefix: str = "doc", words: tuple[int, int] = (8, 32)
) -> Iterator[Document]:
    """``n`` deterministic synthetic documents, generated lazily (memory stays flat)."""
    rng = random.Random(seed)
    for i in range(n):
        yield Document(f"{prefix}-{i}", " ".join(rng.choice(_WORDS) for _ in range(rng.randint(*words))))


@dataclass
class BenchResult:
    """Rates in documents per second, and memory in MiB."""

    target: str
    machine: str
    cores: int
    device: str
    docs: int
    encode_docs: int
    sink_docs: int
    batch_size: int
    writers: int
    encode_rate: float
    sink_rate: float
    pipeline_rate: float
    overlap_efficiency: float
    rss_before_mib: float
    rss_peak_mib: float
    pipeline_encode_busy: float
    pipeline_write_busy: float

    def to_json(self) -> dict[str, Any]:
        """The result as JSON."""
        return asdict(self)


class _PreEncoded:
    """Stands in for the encoder in the sink-only run: vectors by text, computed beforehand."""

    def __init__(self, vectors: dict[str, SparseVector]) -> None:
        self.vectors = vectors

    def encode_documents(self, texts: Sequence[str], **_: Any) -> list[SparseVector]:
        return [self.vectors[t] for t in texts]


def _rss_mib() -> float:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_ingest(
    *,
    encoder: Encoder,
    backend_factory: Any,
    target: str,
    docs: int = 100_000,
    encode_docs: int = 10_000,
    sink_docs: int = 20_000,
    batch_size: int | None = None,
    writers: int = 2,
    log: Any = print,
) -> BenchResult:
    """Measure the three rates and the memory high-water mark (see the module docstring).

    Args:
        encoder: The encoder to measure.
        backend_factory: ``f(name) -> Backend``: a fresh, empty index/collection per phase.
        target: The target URI, recorded as :func:`~sparsebridge.backends.targets.redact_uri`
            shows it (no credentials).
        docs: Documents of the full pipeline run (the memory high-water mark is taken there).
        encode_docs: Documents of the encode-only run.
        sink_docs: Documents of the sink-only run.
        batch_size: Documents per batch (default: the encoder's ``suggested_batch_size``).
        writers: Concurrent writers.
        log: Where progress lines go.
    """
    if batch_size is None:
        batch_size = encoder.suggested_batch_size
    warm = list(synthetic_documents(min(512, encode_docs), seed=99))
    encoder.encode_documents([d.text for d in warm])  # load kernels, warm the allocator

    texts = [d.text for d in synthetic_documents(encode_docs, seed=1)]
    started = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        encoder.encode_documents(texts[i : i + batch_size])
    encode_rate = len(texts) / (time.perf_counter() - started)
    log(f"encode-only: {encode_rate:.0f} docs/s ({len(texts)} docs)")

    sink_corpus = list(synthetic_documents(sink_docs, seed=2, prefix="sink"))
    vectors: dict[str, SparseVector] = {}
    unique = list(dict.fromkeys(d.text for d in sink_corpus))
    for i in range(0, len(unique), 1024):
        chunk = unique[i : i + 1024]
        vectors.update(zip(chunk, encoder.encode_documents(chunk), strict=True))
    backend: Backend = backend_factory("bench-sink")
    try:
        sink = ingest(
            sink_corpus,
            encoder=cast(Encoder, _PreEncoded(vectors)),
            backend=backend,
            batch_size=batch_size,
            writers=writers,
            max_dead_letter_fraction=1.0,
        )
    finally:
        backend.close()
    del vectors, sink_corpus
    sink_rate = sink.written / sink.elapsed_s
    log(f"sink-only: {sink_rate:.0f} docs/s ({sink.written} docs; writers busy {sink.write_busy:.0%})")

    rss_before = _rss_mib()
    peak = [rss_before]

    def sample(_: IngestStats) -> None:
        peak[0] = max(peak[0], _rss_mib())

    backend = backend_factory("bench-pipeline")
    try:
        full = ingest(
            synthetic_documents(docs, seed=3, prefix="full"),
            encoder=encoder,
            backend=backend,
            batch_size=batch_size,
            writers=writers,
            on_progress=sample,
            max_dead_letter_fraction=1.0,
        )
    finally:
        backend.close()
    peak[0] = max(peak[0], _rss_mib())
    pipeline_rate = full.written / full.elapsed_s
    log(f"pipeline: {pipeline_rate:.0f} docs/s ({full.summary()})")
    result = BenchResult(
        target=redact_uri(target),
        machine=f"{platform.node()} {platform.machine()} {platform.processor() or ''}".strip(),
        cores=os.cpu_count() or 1,
        device=str(encoder.device),
        docs=full.written,
        encode_docs=len(texts),
        sink_docs=sink.written,
        batch_size=batch_size,
        writers=writers,
        encode_rate=encode_rate,
        sink_rate=sink_rate,
        pipeline_rate=pipeline_rate,
        overlap_efficiency=pipeline_rate / min(encode_rate, sink_rate),
        rss_before_mib=rss_before,
        rss_peak_mib=peak[0],
        pipeline_encode_busy=full.encode_busy,
        pipeline_write_busy=full.write_busy,
    )
    log(
        f"overlap efficiency {result.overlap_efficiency:.2f}; "
        f"memory {rss_before:.0f} -> peak {peak[0]:.0f} MiB"
    )
    return result
