"""The shared encoding core: loading, batching, device work and the SPLADE fast path."""

from sparsebridge.encoder.core import Encoder, Task
from sparsebridge.encoder.stages import Head, SpladeStages

__all__ = ["Encoder", "Head", "SpladeStages", "Task"]
