"""The shared encoding core: loading, batching, device work and the SPLADE fast path."""

from sparsebridge.encoder.core import Encoder, Task

__all__ = ["Encoder", "Task"]
