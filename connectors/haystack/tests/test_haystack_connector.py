"""sparsebridge-haystack against real Haystack pipelines, embedded Qdrant, OpenSearch and splade-tiny."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from connector_testing import (
    BACKENDS,
    EXACT_BACKENDS,
    MINILM_SIZE,
    RRF,
    assert_same_top_k,
    docs_example,
    engine_hybrid,
    exact_hybrid,
    reference,
    score_tolerance,
)
from haystack import Document as HaystackDocument
from haystack import Pipeline
from haystack.components.writers import DocumentWriter
from haystack.core.errors import DeserializationError
from haystack.utils import Secret
from haystack_integrations.components.retrievers.qdrant import (
    QdrantHybridRetriever,
    QdrantSparseEmbeddingRetriever,
)
from haystack_integrations.document_stores.qdrant import QdrantDocumentStore
from haystack_integrations.document_stores.qdrant.document_store import QdrantStoreError

from sparsebridge import Backend, DenseEncoder, Document, Encoder, QdrantBackend
from sparsebridge.query import fuse
from sparsebridge_haystack import (
    SparsebridgeRetriever,
    SparsebridgeSparseDocumentEmbedder,
    SparsebridgeSparseTextEmbedder,
)

K = 5


def pairs(found: list[HaystackDocument]) -> list[tuple[str, float]]:
    return [(d.id, float(d.score or 0.0)) for d in found]


def check_documents(found: list[HaystackDocument], documents: list[Document]) -> None:
    originals = {d.id: d for d in documents}
    scores = [d.score for d in found]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    for doc in found:
        assert doc.content == originals[doc.id].text
        assert doc.meta == originals[doc.id].metadata


# (a) Haystack's own store cannot open a collection sparsebridge wrote (hard-coded vector names).


def test_haystack_store_refuses_a_collection_sparsebridge_wrote(
    make_backend: Callable[..., Backend], ingested: Callable[..., Backend], dense_encoder: DenseEncoder
) -> None:
    backend = ingested(make_backend("qdrant+local", dense_size=MINILM_SIZE), dense_encoder)
    assert isinstance(backend, QdrantBackend) and backend.target.path is not None
    backend.close()  # embedded Qdrant: one client per directory
    store = QdrantDocumentStore(
        path=backend.target.path,
        index=backend.target.collection,
        use_sparse_embeddings=True,
        embedding_dim=MINILM_SIZE,
        progress_bar=False,
    )
    with pytest.raises(QdrantStoreError, match="created outside of Haystack"):
        store.count_documents()


# (b) Haystack writes through its own store with sparsebridge's embedders, then reads.


def test_haystack_pipeline_writes_and_reads_like_sparsebridge(
    tmp_path: Path,
    documents: list[Document],
    encoder: Encoder,
    dense_encoder: DenseEncoder,
    queries: list[str],
) -> None:
    store = QdrantDocumentStore(
        path=str(tmp_path / "haystack"),
        index="docs",
        use_sparse_embeddings=True,
        embedding_dim=MINILM_SIZE,
        progress_bar=False,
    )
    dense = dense_encoder.encode_documents([d.text for d in documents])
    indexing = Pipeline()
    indexing.add_component("sparse", SparsebridgeSparseDocumentEmbedder(model=encoder))
    indexing.add_component("writer", DocumentWriter(store))
    indexing.connect("sparse.documents", "writer.documents")
    indexing.run(
        {
            "sparse": {
                "documents": [
                    HaystackDocument(id=d.id, content=d.text, meta=dict(d.metadata), embedding=e.tolist())
                    for d, e in zip(documents, dense, strict=True)
                ]
            }
        }
    )
    assert store.count_documents() == len(documents)
    text_embedder = SparsebridgeSparseTextEmbedder(model=encoder)
    sparse_retriever = QdrantSparseEmbeddingRetriever(document_store=store, top_k=K)
    hybrid_retriever = QdrantHybridRetriever(document_store=store, top_k=K, rrf_k=61)  # our RRF k = 60
    memory = reference(documents, encoder, dense_encoder)
    for query in queries:
        sparse = text_embedder.run(query)["sparse_embedding"]
        found = sparse_retriever.run(query_sparse_embedding=sparse)["documents"]
        check_documents(found, documents)
        [vector] = encoder.encode_queries([query])
        assert_same_top_k(memory.search(vector, k=3 * K), pairs(found), k=K)
        embedding = dense_encoder.encode_queries([query])[0].tolist()
        found = hybrid_retriever.run(query_embedding=embedding, query_sparse_embedding=sparse)["documents"]
        check_documents(found, documents)
        # qdrant-haystack sets no prefetch limit: Qdrant's default, 10 candidates per leg
        expected = exact_hybrid(memory, encoder, dense_encoder, query, candidates=10, k=3 * K)
        assert_same_top_k(expected, pairs(found), k=K)


# (c) the retriever component over every backend, contract-style.


@pytest.mark.parametrize("name", BACKENDS)
def test_retriever_sparse_matches_the_exact_reference(
    name: str,
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    documents: list[Document],
    encoder: Encoder,
    queries: list[str],
) -> None:
    retriever = SparsebridgeRetriever(ingested(make_backend(name)), encoder, top_k=K)
    memory = reference(documents, encoder)
    for query in queries:
        found = retriever.run(query=query)["documents"]
        check_documents(found, documents)
        [vector] = encoder.encode_queries([query])
        assert_same_top_k(memory.search(vector, k=3 * K), pairs(found), k=K, rel=score_tolerance(name))


@pytest.mark.parametrize("name", BACKENDS)
def test_retriever_hybrid_matches_the_library(
    name: str,
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    documents: list[Document],
    encoder: Encoder,
    dense_encoder: DenseEncoder,
    queries: list[str],
) -> None:
    c = 20
    if name == "opensearch":  # the test node has no k-NN plugin: the second leg is BM25
        backend = ingested(make_backend(name))
        retriever = SparsebridgeRetriever(backend, encoder, mode="hybrid", bm25=True, top_k=K, candidates=c)
    else:
        backend = ingested(make_backend(name, dense_size=MINILM_SIZE), dense_encoder)
        # the dense leg from the query embedding given to run (a dense text embedder upstream)
        retriever = SparsebridgeRetriever(
            backend, encoder, mode="hybrid", dense_model="minilm", device="cpu", top_k=K, candidates=c
        )
    memory = reference(documents, encoder, dense_encoder)
    for query in queries:
        embedding = None if name == "opensearch" else dense_encoder.encode_queries([query])[0].tolist()
        found = retriever.run(query=query, query_embedding=embedding)["documents"]
        check_documents(found, documents)
        [sparse] = encoder.encode_queries([query])
        if name == "opensearch":  # the engine's sparse and BM25 legs, fused by sparsebridge's definition
            legs = [backend.search(sparse, k=c), *backend.search_text_batch([query], k=c)]  # type: ignore[attr-defined]
            expected = fuse(legs, RRF, limit=3 * K)
        elif name == "elasticsearch":  # the engine's sparse and dense legs (9-bit sparse scores)
            expected = engine_hybrid(backend, encoder, dense_encoder, query, candidates=c, k=3 * K)
        else:
            expected = exact_hybrid(memory, encoder, dense_encoder, query, candidates=c, k=3 * K)
        assert_same_top_k(expected, pairs(found), k=K)


def test_retriever_bm25_mode(
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    documents: list[Document],
    queries: list[str],
) -> None:
    backend = ingested(make_backend("opensearch"))
    retriever = SparsebridgeRetriever(backend, None, mode="bm25", top_k=K)
    for query in queries:
        found = retriever.run(query=query)["documents"]
        check_documents(found, documents)
        [expected] = backend.search_text_batch([query], k=K)  # type: ignore[attr-defined]
        assert found and pairs(found) == [(h.id, h.score) for h in expected]


@pytest.mark.parametrize("name", EXACT_BACKENDS)
def test_retriever_refuses_what_the_backend_cannot_do(
    name: str, make_backend: Callable[..., Backend], encoder: Encoder
) -> None:
    with pytest.raises(ValueError, match="no BM25"):
        SparsebridgeRetriever(make_backend(name), None, mode="bm25")
    with pytest.raises(ValueError, match="second leg"):
        SparsebridgeRetriever(make_backend(name), encoder, mode="hybrid")
    with pytest.raises(ValueError, match="needs a sparse model"):
        SparsebridgeRetriever(make_backend(name), None)
    with pytest.raises(ValueError, match="top_k"):
        SparsebridgeRetriever(make_backend(name), encoder, top_k=0)
    with pytest.raises(ValueError, match=r"unknown target scheme|not a URI"):
        SparsebridgeRetriever("nowhere", encoder)


def test_precomputed_sparse_embedding_is_used(
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    encoder: Encoder,
    queries: list[str],
) -> None:
    retriever = SparsebridgeRetriever(ingested(make_backend("qdrant+local")), encoder, top_k=K)
    planet = SparsebridgeSparseTextEmbedder(model=encoder).run(queries[1])["sparse_embedding"]
    given = retriever.run(query=queries[0], query_sparse_embedding=planet)["documents"]
    assert pairs(given) == pairs(retriever.run(query=queries[1])["documents"])
    assert pairs(given) != pairs(retriever.run(query=queries[0])["documents"])


# (d) a pipeline survives dumps() / loads().


def test_pipeline_round_trips_through_yaml(
    tmp_path: Path, ingested: Callable[..., Backend], documents: list[Document], queries: list[str]
) -> None:
    from sparsebridge import open_backend

    target = f"qdrant+local://{tmp_path / 'qdrant'}/docs"
    ingested(open_backend(target)).close()  # embedded Qdrant: one client per directory
    pipeline = Pipeline()
    pipeline.add_component("embedder", SparsebridgeSparseTextEmbedder(model="splade-tiny", device="cpu"))
    pipeline.add_component("retriever", SparsebridgeRetriever(target, "splade-tiny", device="cpu", top_k=K))
    pipeline.connect("embedder.sparse_embedding", "retriever.query_sparse_embedding")
    text = pipeline.dumps()
    assert target in text
    before = [pipeline.run({"embedder": {"text": q}, "retriever": {"query": q}}) for q in queries]
    pipeline.close()
    with pytest.raises(DeserializationError, match="allowlist"):  # Haystack trusts its own modules only
        Pipeline.loads(text)
    loaded = Pipeline.loads(text, allowed_modules=["sparsebridge_haystack"])
    after = [loaded.run({"embedder": {"text": q}, "retriever": {"query": q}}) for q in queries]
    loaded.close()
    assert [pairs(r["retriever"]["documents"]) for r in after] == [
        pairs(r["retriever"]["documents"]) for r in before
    ]
    assert all(r["retriever"]["documents"] for r in after)
    check_documents(after[0]["retriever"]["documents"], documents)


def test_serialization_keeps_secrets_out_and_refuses_objects(
    monkeypatch: pytest.MonkeyPatch, make_backend: Callable[..., Backend], encoder: Encoder
) -> None:
    monkeypatch.setenv("SB_TEST_PASSWORD", "hunter2")
    retriever = SparsebridgeRetriever(
        "opensearch://localhost:9200/docs",
        "splade-tiny",
        username="reader",
        password=Secret.from_env_var("SB_TEST_PASSWORD"),
    )
    data = retriever.to_dict()
    assert "hunter2" not in repr(data)
    assert SparsebridgeRetriever.from_dict(retriever.to_dict()).to_dict() == data  # from_dict edits its input
    with pytest.raises(ValueError, match="cannot be serialized"):
        SparsebridgeRetriever(make_backend("memory"), encoder).to_dict()
    with pytest.raises(ValueError, match="cannot be serialized"):
        SparsebridgeSparseTextEmbedder(model=encoder).to_dict()
    assert SparsebridgeSparseTextEmbedder.from_dict(SparsebridgeSparseTextEmbedder().to_dict()).to_dict() == (
        SparsebridgeSparseTextEmbedder().to_dict()
    )


def test_credentials_in_the_target_uri_are_used_and_never_serialized(monkeypatch: pytest.MonkeyPatch) -> None:
    in_uri = SparsebridgeRetriever("opensearch://reader:hunter2@localhost:9200/docs", "splade-tiny")
    target = in_uri._backend.target  # type: ignore[attr-defined]
    assert (target.username, target.password) == ("reader", "hunter2")  # used
    pipeline = Pipeline()
    pipeline.add_component("retriever", in_uri)
    with pytest.raises(ValueError, match="from_env_var") as caught:
        pipeline.dumps()
    assert "hunter2" not in str(caught.value)
    monkeypatch.setenv("SB_TEST_PASSWORD", "hunter2")
    from_env = SparsebridgeRetriever(
        "opensearch://reader@localhost:9200/docs",
        "splade-tiny",
        password=Secret.from_env_var("SB_TEST_PASSWORD"),
    )
    assert from_env._backend.target.password == "hunter2"  # type: ignore[attr-defined]
    pipeline = Pipeline()
    pipeline.add_component("retriever", from_env)
    text = pipeline.dumps()
    assert "hunter2" not in text and "target: opensearch://localhost:9200/docs" in text and "reader" in text
    with pytest.raises(ValueError, match="once"):
        SparsebridgeRetriever(
            "opensearch://reader:x@localhost/docs",
            "splade-tiny",
            password=Secret.from_env_var("SB_TEST_PASSWORD"),
        )
    for key in ("password", "username", "api_key"):
        with pytest.raises(ValueError, match="not in backend_options"):
            SparsebridgeRetriever(
                "opensearch://localhost/docs", "splade-tiny", backend_options={key: "hunter2"}
            )


# (e) the text embedder is the model's query path, the document embedder its document path.


def test_embedders_use_the_query_and_document_paths(asymmetric_encoder: Encoder, queries: list[str]) -> None:
    text_embedder = SparsebridgeSparseTextEmbedder(model=asymmetric_encoder)
    document_embedder = SparsebridgeSparseDocumentEmbedder(model=asymmetric_encoder)
    inputs = [HaystackDocument(id=f"q{n}", content=q) for n, q in enumerate(queries)]
    embedded = document_embedder.run(inputs)["documents"]
    assert all(d.sparse_embedding is None for d in inputs)  # the inputs are not modified
    as_documents = asymmetric_encoder.encode_documents(queries)  # one batch, as the embedder encodes them
    for query, doc, as_document in zip(queries, embedded, as_documents, strict=True):
        [as_query] = asymmetric_encoder.encode_queries([query])
        assert as_query != as_document
        got = text_embedder.run(query)["sparse_embedding"]
        assert (got.indices, got.values) == (as_query.indices.tolist(), as_query.values.tolist())
        assert doc.sparse_embedding is not None
        assert (doc.sparse_embedding.indices, doc.sparse_embedding.values) == (
            as_document.indices.tolist(),
            as_document.values.tolist(),
        )
    with pytest.raises(ValueError, match="without text"):
        document_embedder.run([HaystackDocument(id="empty", content="  ")])


def test_docs_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(docs_example("haystack"), "docs/connectors/haystack.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mars space "), lines
    assert lines[-1] == "bread", lines
