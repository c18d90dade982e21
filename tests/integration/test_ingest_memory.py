"""Ingest memory stays bounded however many documents stream through it (a real Qdrant Edge shard).

A child process ingests a generator of documents (never a list) with the bundled splade-tiny
encoder into a Qdrant Edge shard that rolls over every hundred points, as it does every 100,000
at scale. Its anonymous resident memory (the process's own, not the page cache of mapped files)
is sampled after every batch; the peak must stay within a fixed margin of what it was before the
first document, once the encoder and the shard were warmed up. The documents are large (every
one carries 48 KB of metadata; their text is short, so encoding is quick): the stream is ~110 MiB,
~40 times what the pipeline's queues hold at most, so holding a good part of it, as an unbounded
queue or an accumulating stage would, crosses the margin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

DOCUMENTS = 2400
MARGIN_MIB = 48  # the stream is ~110 MiB: holding half of it crosses this

CHILD = r"""
import json, sys
from pathlib import Path

from sparsebridge.backends import open_backend
from sparsebridge.backends.qdrant import edge
from sparsebridge.encoder import Encoder
from sparsebridge.ingest import PipelineOptions, ingest

model, shard, count, queue_batches = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
edge.ROLLOVER_POINTS = 100  # the shard rolls over as at scale, at a size a test reaches


def anon_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


def documents():
    words = "river planet protein compiler bread market valley orbit enzyme thread".split()
    for i in range(count):
        text = " ".join(words[(i + j) % len(words)] for j in range(12))
        yield {"id": f"doc-{i}", "text": text, "notes": f"{i} " + "x" * 48_000}  # kept as metadata


samples = []
done = 0


def sample(new: int) -> None:
    global done
    done += new
    samples.append((done, anon_mib()))


encoder = Encoder.load(model, device="cpu")
with open_backend(f"qdrant+edge://{shard}/docs") as backend:
    encoder.encode_documents(["warm up " * 40] * 16)
    backend.ensure_schema()
    sample(0)
    stats = ingest(
        documents(),
        encoder=encoder,
        backend=backend,
        pipeline=PipelineOptions(batch_size=16, writers=2, queue_batches=queue_batches),
        on_batch=sample,
    )
    assert stats.written == count and backend.count() == count, (stats, count)
print(json.dumps(samples))
"""


def peaks(splade_tiny_path: str, shard: Path, queue_batches: int = 2) -> tuple[float, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, splade_tiny_path, str(shard), str(DOCUMENTS), str(queue_batches)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    samples = json.loads(done.stdout.strip().splitlines()[-1])
    return samples[0][1], max(mib for _, mib in samples)


def test_ingest_memory_does_not_grow_with_the_stream(splade_tiny_path: str, tmp_path: Path) -> None:
    before, peak = peaks(splade_tiny_path, tmp_path)
    assert peak - before < MARGIN_MIB, f"anonymous memory grew from {before:.0f} to {peak:.0f} MiB"
