"""A Haystack retriever component over any sparsebridge backend."""

from __future__ import annotations

from typing import Any

import numpy as np
from haystack import Document, component, default_from_dict, default_to_dict
from haystack.dataclasses import SparseEmbedding
from haystack.utils import Secret, deserialize_secrets_inplace
from haystack.utils.auth import SecretType

from sparsebridge import (
    Backend,
    DenseEncoder,
    Encoder,
    Fusion,
    FusionMethod,
    SearchHit,
    SparseVector,
    open_backend,
)
from sparsebridge.backends import parse_target
from sparsebridge.search import Searcher, SearchMode, check_setup, hit_text

__all__ = ["SparsebridgeRetriever", "to_document"]


def to_document(hit: SearchHit) -> Document:
    """A Haystack ``Document``: id = the document id, content = its text, meta = its metadata, score."""
    return Document(
        id=hit.id, content=hit_text(hit), meta=dict(hit.payload.get("metadata") or {}), score=hit.score
    )


def _credentials_apart(
    target: str, username: str | None, password: Secret | None, backend_options: dict[str, Any] | None
) -> tuple[str, str | None, Secret | None]:
    """The target URI without credentials (as it is serialized), the user and the password.

    A password in the URI becomes a token ``Secret``: usable here, never serialized.
    """
    given = sorted({"api_key", "username", "password"} & set(backend_options or {}))
    if given:
        raise ValueError(
            f"give {', '.join(given)} as the retriever's own argument (api_key and password as a "
            "haystack Secret, e.g. Secret.from_env_var(NAME)), not in backend_options, which are "
            "serialized as they are"
        )
    parsed = parse_target(target)
    if parsed.username is not None and username is not None and parsed.username != username:
        raise ValueError(f"target {parsed.uri!r}: the URI and username= give different users")
    if parsed.password is not None and password is not None:
        raise ValueError(
            f"target {parsed.uri!r}: give the password once, as password=Secret.from_env_var(NAME)"
        )
    secret = Secret.from_token(parsed.password) if parsed.password is not None else password
    return parsed.uri, parsed.username or username, secret


@component
class SparsebridgeRetriever:
    """Retrieve from any sparsebridge backend: Qdrant, Qdrant Edge, OpenSearch, Elasticsearch, memory.

    Modes: ``sparse`` (SPLADE), ``hybrid`` (SPLADE fused with a dense leg and/or BM25, fused by the
    backend as sparsebridge defines each fusion) and ``bm25`` (the engine's full-text search;
    OpenSearch and Elasticsearch). ``run`` takes the query text and, optionally, the query's sparse
    embedding (from :class:`~sparsebridge_haystack.SparsebridgeSparseTextEmbedder`) and dense
    embedding; what is not given is encoded here.

    Built from a target URI (``qdrant+local://DIR/COLLECTION``, ``opensearch://HOST:PORT/INDEX``...)
    and model names, the component serializes (``to_dict`` / pipeline ``dumps``); secrets are
    Haystack ``Secret`` objects (environment variables), and the target is serialized without
    its user information. A password in the target URI (``opensearch://USER:PASSWORD@HOST/INDEX``)
    is used, but then the component does not serialize: give it as ``Secret.from_env_var``. Built
    from a ``Backend`` or ``Encoder`` object, it works in-process but does not serialize.

    Args:
        target: A sparsebridge target URI, or a ``Backend``.
        model: The sparse model (name or path for ``Encoder.load``, or an ``Encoder``); ``None`` in
            ``bm25`` mode.
        mode: ``sparse``, ``hybrid`` or ``bm25``.
        top_k: Documents per query.
        dense_model: Hybrid: a dense leg with this ``DenseEncoder`` model (name or path).
        bm25: Hybrid: adds the backend's BM25 leg.
        fusion: Hybrid: ``rrf``, ``dbsf``, ``minmax``, ``zscore`` or ``sum``.
        rrf_k: Hybrid: RRF's rank constant (1-based ranks).
        fusion_weights: Hybrid: one weight per leg (sparse, dense, bm25; those present).
        candidates: Hybrid: hits per leg before fusion.
        device: Device for the models.
        backend_options: Keyword options of ``open_backend`` (``dense_size``, ``field``...);
            credentials are refused here (they would be serialized as given).
        api_key: Qdrant server or Elasticsearch API key.
        username: OpenSearch/Elasticsearch user.
        password: OpenSearch/Elasticsearch password.

    Example:
        >>> retriever = SparsebridgeRetriever(target="qdrant+local://./data/docs", model="splade-tiny")
        >>> retriever.run(query="which planet is red")["documents"][0].id  # doctest: +SKIP
        'mars'
    """

    def __init__(
        self,
        target: str | Backend,
        model: str | Encoder | None = "splade-tiny",
        *,
        mode: str = "sparse",
        top_k: int = 10,
        dense_model: str | None = None,
        bm25: bool = False,
        fusion: str = "rrf",
        rrf_k: int = 60,
        fusion_weights: list[float] | None = None,
        candidates: int = 100,
        device: str | None = None,
        backend_options: dict[str, Any] | None = None,
        api_key: Secret | None = None,
        username: str | None = None,
        password: Secret | None = None,
    ) -> None:
        if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k <= 0:
            raise ValueError(f"top_k must be a positive integer, got {top_k!r}")
        if isinstance(target, str):
            parsed_target: str | None
            parsed_target, username, password = _credentials_apart(
                target, username, password, backend_options
            )
            backend: Backend = open_backend(
                parsed_target,
                api_key=api_key.resolve_value() if api_key else None,
                username=username,
                password=password.resolve_value() if password else None,
                **(backend_options or {}),
            )
        elif isinstance(target, Backend):
            if backend_options or api_key or username or password:
                raise ValueError("backend_options and credentials apply to a target URI, not to a Backend")
            parsed_target, backend = None, target
        else:
            raise TypeError(f"target must be a target URI or a sparsebridge Backend, got {target!r}")
        self._init = {
            "target": parsed_target,
            "model": model if isinstance(model, str) or model is None else None,
            "mode": mode,
            "top_k": top_k,
            "dense_model": dense_model,
            "bm25": bm25,
            "fusion": fusion,
            "rrf_k": rrf_k,
            "fusion_weights": fusion_weights,
            "candidates": candidates,
            "device": device,
            "backend_options": backend_options,
            "api_key": api_key,
            "username": username,
            "password": password,
        }
        self._serializable = parsed_target is not None and not isinstance(model, Encoder)
        self._mode = SearchMode(mode)
        if self._mode is not SearchMode.BM25 and model is None:
            raise ValueError(f"{self._mode.value} mode needs a sparse model (model=...)")
        if model is not None and not isinstance(model, (str, Encoder)):
            raise TypeError(f"model must be a model name or path or a sparsebridge Encoder, got {model!r}")
        self._fusion = Fusion(
            FusionMethod(fusion), k=rrf_k, weights=None if fusion_weights is None else tuple(fusion_weights)
        )
        check_setup(
            backend,
            self._mode,
            dense=dense_model is not None,
            bm25=bm25,
            fusion=self._fusion,
            candidates=candidates,
        )
        self._model, self._device, self._dense_model = model, device, dense_model
        self._bm25, self._candidates = bm25, candidates
        self._backend, self._owns_backend = backend, parsed_target is not None
        self._searcher: Searcher | None = None
        self.top_k = top_k

    def warm_up(self) -> None:
        """Load the models (once)."""
        if self._searcher is not None:
            return
        encoder = self._model if isinstance(self._model, Encoder) else None
        if isinstance(self._model, str) and self._mode is not SearchMode.BM25:
            encoder = Encoder.load(self._model, device=self._device)
        dense = (
            None if self._dense_model is None else DenseEncoder.load(self._dense_model, device=self._device)
        )
        self._searcher = Searcher(
            self._backend,
            encoder,
            self._mode,
            dense_encoder=dense,
            bm25=self._bm25,
            fusion=self._fusion,
            candidates=self._candidates,
        )

    def close(self) -> None:
        """Close the backend this component opened from its target URI."""
        if self._owns_backend:
            self._backend.close()

    def to_dict(self) -> dict[str, Any]:
        if not self._serializable:
            raise ValueError(
                "SparsebridgeRetriever built from a Backend or Encoder object cannot be serialized; "
                "build it from a target URI and model names"
            )
        params = dict(self._init)
        for key in ("api_key", "password"):
            secret = params[key]
            if isinstance(secret, Secret) and secret.type is SecretType.TOKEN:
                raise ValueError(
                    f"SparsebridgeRetriever's {key} is a token (given as Secret.from_token, or in the "
                    f"target URI) and cannot be serialized: give it as {key}=Secret.from_env_var(NAME)"
                )
            params[key] = secret.to_dict() if isinstance(secret, Secret) else None
        return default_to_dict(self, **params)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SparsebridgeRetriever:
        deserialize_secrets_inplace(data["init_parameters"], keys=["api_key", "password"])
        return default_from_dict(cls, data)

    @component.output_types(documents=list[Document])
    def run(
        self,
        query: str,
        top_k: int | None = None,
        query_sparse_embedding: SparseEmbedding | None = None,
        query_embedding: list[float] | None = None,
    ) -> dict[str, Any]:
        """The top documents for ``query``, best first.

        Args:
            query: The query text.
            top_k: Documents to return (default: the component's ``top_k``).
            query_sparse_embedding: The query's sparse embedding (else encoded here).
            query_embedding: The query's dense embedding for a hybrid dense leg (else encoded here).
        """
        self.warm_up()
        assert self._searcher is not None
        options: dict[str, Any] = {}
        if query_sparse_embedding is not None:
            options["sparse"] = [
                SparseVector.from_lists(query_sparse_embedding.indices, query_sparse_embedding.values)
            ]
        if query_embedding is not None:
            options["dense"] = [np.asarray(query_embedding, dtype=np.float32)]
        [hits] = self._searcher.search([query], k=self.top_k if top_k is None else top_k, **options)
        return {"documents": [to_document(hit) for hit in hits]}
