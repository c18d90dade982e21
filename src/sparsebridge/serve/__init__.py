"""``sparsebridge serve``: the encoder (and a search target) behind HTTP, for apps in any language.

- :mod:`sparsebridge.serve.options`: what the service allows (limits, task, key), no I/O.
- :mod:`sparsebridge.serve.app`: the ASGI app (Starlette): ``POST /embed_sparse`` in the shapes of
  Hugging Face text-embeddings-inference, ``POST /search``, ``GET /health``, ``GET /metrics``.
- :mod:`sparsebridge.serve.command`: the ``serve`` subcommand of the CLI (uvicorn).

Needs the ``serve`` extra (``pip install 'sparsebridge[serve]'``); see docs/serving.md.
"""

from sparsebridge.serve.options import ServeOptions, read_api_key

__all__ = ["ServeOptions", "read_api_key"]
