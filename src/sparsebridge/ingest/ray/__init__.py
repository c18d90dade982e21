"""Ingestion on a Ray cluster: Ray Data reads, an actor pool encodes, a Datasink writes.

::

    read                 datasets.py: a file read by one task running the same source and
                         read_batches as ingest() (the same dead letters); or an existing
                         ray.data.Dataset, each row checked by the same source rules
    map_batches          actors.py: each encoder actor loads the models once and runs encode_batch
    write_datasink       actors.py: writer actors run write_batch on a sparsebridge backend, then
                         journal the batch (journal.py)

A Ray row is one whole batch (work.py: the batch and the journal key of each of its items, the
input position or, for a Dataset, the id), so Ray never re-cuts batches and every encoder call sees
the texts ingest() would give it.

The driver (driver.py, :func:`ray_ingest`) opens the run as ingest() does
(:class:`~sparsebridge.ingest.run.Run`: the lock, the checkpoint, the dead-letter file). The journal
(``RUN_DIR/ray/*.jsonl``) holds one line per written batch, appended and fsynced after the engine
acknowledged it. A re-run with ``resume=True`` skips every journaled key; a batch written but not
journaled (a kill in between) is written again, which the same ids and the same run number make
harmless (the engine keeps one copy). At the end the driver counts the journal into the run, which
writes ``RUN_DIR/dead_letter.jsonl`` (in input order), checks the dead-letter fraction and marks the
checkpoint done.
"""

from __future__ import annotations

from sparsebridge.errors import MissingExtraError

try:
    import pyarrow  # noqa: F401
    import ray.data  # noqa: F401
except ImportError as e:  # the package is the extra: importing it without ray says what to install
    raise MissingExtraError("ray[data]", "ray") from e

# _Writer, _Work and _table: the Ray tests drive a writer actor in-process on a hand-made row.
from sparsebridge.ingest.ray.actors import Writer as _Writer  # noqa: F401
from sparsebridge.ingest.ray.driver import RayOptions, ray_ingest
from sparsebridge.ingest.ray.journal import JOURNAL_DIR
from sparsebridge.ingest.ray.work import Work as _Work  # noqa: F401
from sparsebridge.ingest.ray.work import table as _table  # noqa: F401

__all__ = ["JOURNAL_DIR", "RayOptions", "ray_ingest"]
