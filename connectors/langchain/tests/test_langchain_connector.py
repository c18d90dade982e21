"""sparsebridge-langchain against real LangChain objects, embedded Qdrant, OpenSearch and splade-tiny."""

from __future__ import annotations

import asyncio
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
from langchain_core.documents import Document as LangChainDocument
from langchain_qdrant import QdrantVectorStore, RetrievalMode
from qdrant_client import models

from sparsebridge import Backend, DenseEncoder, Document, Encoder, HybridQuery, QdrantBackend
from sparsebridge.backends import point_id
from sparsebridge.query import fuse
from sparsebridge_langchain import (
    SparsebridgeDenseEmbeddings,
    SparsebridgeRetriever,
    SparsebridgeSparseEmbeddings,
    qdrant_vector_store,
)

K = 5
QDRANT_RRF = models.RrfQuery(rrf=models.Rrf(k=61))  # Qdrant's k for our 1-based RRF with k = 60


# (a) sparsebridge writes, LangChain's own QdrantVectorStore reads.


def by_doc_id(documents: list[Document]) -> dict[str, str]:
    return {point_id(d.id): d.id for d in documents}


def store_hits(
    store: QdrantVectorStore, query: str, documents: list[Document], **options: object
) -> list[tuple[str, float]]:
    ids = by_doc_id(documents)
    found = store.similarity_search_with_score(query, k=K, **options)
    for doc, _ in found:
        assert doc.page_content == next(d.text for d in documents if d.id == ids[doc.metadata["_id"]])
    return [(ids[doc.metadata["_id"]], score) for doc, score in found]


def test_langchain_store_reads_a_sparse_collection_sparsebridge_wrote(
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    documents: list[Document],
    encoder: Encoder,
    queries: list[str],
) -> None:
    backend = ingested(make_backend("qdrant+local"))
    assert isinstance(backend, QdrantBackend)
    store = qdrant_vector_store(backend, encoder)
    for query in queries:
        [vector] = encoder.encode_queries([query])
        assert_same_top_k(backend.search(vector, k=3 * K), store_hits(store, query, documents), k=K)


def test_langchain_store_reads_a_hybrid_collection_sparsebridge_wrote(
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    documents: list[Document],
    encoder: Encoder,
    dense_encoder: DenseEncoder,
    queries: list[str],
) -> None:
    backend = ingested(make_backend("qdrant+local", dense_size=MINILM_SIZE), dense_encoder)
    assert isinstance(backend, QdrantBackend)
    store = qdrant_vector_store(backend, encoder, dense_embedding=SparsebridgeDenseEmbeddings(dense_encoder))
    memory = reference(documents, encoder, dense_encoder)
    for query in queries:
        [sparse] = encoder.encode_queries([query])
        [embedding] = dense_encoder.encode_queries([query])
        # LangChain asks each leg for k candidates: the same query through sparsebridge's backend.
        [ours] = backend.search_hybrid_batch(
            [HybridQuery(sparse=sparse, dense=embedding, candidates=K)], RRF, k=2 * K
        )
        got = store_hits(store, query, documents, hybrid_fusion=QDRANT_RRF)
        assert_same_top_k(ours, got, k=K)
        assert_same_top_k(
            exact_hybrid(memory, encoder, dense_encoder, query, candidates=K, k=2 * K), got, k=K
        )


def test_langchain_defaults_do_not_read_a_sparsebridge_collection(
    make_backend: Callable[..., Backend], ingested: Callable[..., Backend], encoder: Encoder
) -> None:
    """Why the helper exists: LangChain's default sparse vector name is not sparsebridge's."""
    backend = ingested(make_backend("qdrant+local"))
    assert isinstance(backend, QdrantBackend)
    with pytest.raises(Exception, match="langchain-sparse"):
        QdrantVectorStore(
            client=backend.client,
            collection_name=backend.target.collection,
            retrieval_mode=RetrievalMode.SPARSE,
            sparse_embedding=SparsebridgeSparseEmbeddings(encoder),
        )


def test_store_helper_refuses_what_does_not_fit(
    make_backend: Callable[..., Backend], encoder: Encoder, dense_encoder: DenseEncoder
) -> None:
    with pytest.raises(TypeError, match="QdrantBackend"):
        qdrant_vector_store(make_backend("memory"), encoder)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dense_size"):
        qdrant_vector_store(
            make_backend("qdrant+local"), encoder, dense_embedding=SparsebridgeDenseEmbeddings(dense_encoder)
        )


# (b) LangChain writes through its own store with sparsebridge's embeddings, then reads.


@pytest.mark.parametrize("hybrid", [False, True], ids=["sparse", "hybrid"])
def test_langchain_writes_and_reads_like_sparsebridge(
    make_backend: Callable[..., Backend],
    documents: list[Document],
    encoder: Encoder,
    dense_encoder: DenseEncoder,
    queries: list[str],
    hybrid: bool,
) -> None:
    backend = make_backend("qdrant+local", **({"dense_size": MINILM_SIZE} if hybrid else {}))
    assert isinstance(backend, QdrantBackend)
    dense = SparsebridgeDenseEmbeddings(dense_encoder) if hybrid else None
    store = qdrant_vector_store(backend, encoder, dense_embedding=dense)
    store.add_texts(
        [d.text for d in documents],
        [dict(d.metadata) for d in documents],
        ids=[point_id(d.id) for d in documents],
    )
    memory = reference(documents, encoder, dense_encoder if hybrid else None)
    for query in queries:
        if hybrid:
            got = store_hits(store, query, documents, hybrid_fusion=QDRANT_RRF)
            assert_same_top_k(
                exact_hybrid(memory, encoder, dense_encoder, query, candidates=K, k=2 * K), got, k=K
            )
        else:
            [vector] = encoder.encode_queries([query])
            assert_same_top_k(memory.search(vector, k=3 * K), store_hits(store, query, documents), k=K)


# (c) the retriever over every backend, contract-style.


def hybrid_options(name: str, dense_encoder: DenseEncoder) -> tuple[dict[str, object], dict[str, object]]:
    """(backend options, retriever options) of hybrid on ``name``: a dense leg, or BM25 on OpenSearch."""
    if name == "opensearch":  # the test node has no k-NN plugin: the second leg is BM25
        return {}, {"bm25": True}
    return {"dense_size": MINILM_SIZE}, {"dense_encoder": dense_encoder}


def check_documents(found: list[LangChainDocument], documents: list[Document]) -> None:
    originals = {d.id: d for d in documents}
    scores = [doc.metadata["score"] for doc in found]
    assert scores == sorted(scores, reverse=True)
    for doc in found:
        original = originals[doc.id]
        assert doc.metadata["doc_id"] == doc.id
        assert doc.page_content == original.text
        assert {k: v for k, v in doc.metadata.items() if k not in ("doc_id", "score")} == original.metadata


@pytest.mark.parametrize("name", BACKENDS)
def test_retriever_sparse_matches_the_exact_reference(
    name: str,
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    documents: list[Document],
    encoder: Encoder,
    queries: list[str],
) -> None:
    retriever = SparsebridgeRetriever(backend=ingested(make_backend(name)), encoder=encoder, k=K)
    memory = reference(documents, encoder)
    for query in queries:
        found = retriever.invoke(query)
        check_documents(found, documents)
        [vector] = encoder.encode_queries([query])
        assert_same_top_k(
            memory.search(vector, k=3 * K),
            [(d.id, d.metadata["score"]) for d in found],
            k=K,
            rel=score_tolerance(name),
        )


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
    backend_options, options = hybrid_options(name, dense_encoder)
    backend = make_backend(name, **backend_options)
    ingested(backend, options.get("dense_encoder"))
    retriever = SparsebridgeRetriever(
        backend=backend, encoder=encoder, mode="hybrid", k=K, candidates=20, **options
    )
    memory = reference(documents, encoder, dense_encoder)
    for query in queries:
        found = retriever.invoke(query)
        check_documents(found, documents)
        [sparse] = encoder.encode_queries([query])
        if name == "opensearch":  # the engine's sparse and BM25 legs, fused by sparsebridge's definition
            legs = [backend.search(sparse, k=20), *backend.search_text_batch([query], k=20)]  # type: ignore[attr-defined]
            expected = fuse(legs, RRF, limit=3 * K)
        elif name == "elasticsearch":  # the engine's sparse and dense legs (9-bit sparse scores)
            expected = engine_hybrid(backend, encoder, dense_encoder, query, candidates=20, k=3 * K)
        else:
            expected = exact_hybrid(memory, encoder, dense_encoder, query, candidates=20, k=3 * K)
        assert_same_top_k(expected, [(d.id, d.metadata["score"]) for d in found], k=K)


def test_retriever_bm25_mode(
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    documents: list[Document],
    encoder: Encoder,
    queries: list[str],
) -> None:
    backend = ingested(make_backend("opensearch"))
    retriever = SparsebridgeRetriever(backend=backend, mode="bm25", k=K)
    for query in queries:
        found = retriever.invoke(query)
        check_documents(found, documents)
        [expected] = backend.search_text_batch([query], k=K)  # type: ignore[attr-defined]
        assert [(d.id, d.metadata["score"]) for d in found] == [(h.id, h.score) for h in expected]
        assert found


@pytest.mark.parametrize("name", EXACT_BACKENDS)
def test_retriever_refuses_bm25_where_the_backend_has_none(
    name: str, make_backend: Callable[..., Backend], encoder: Encoder
) -> None:
    with pytest.raises(ValueError, match="no BM25"):
        SparsebridgeRetriever(backend=make_backend(name), mode="bm25")
    with pytest.raises(ValueError, match="no BM25"):
        SparsebridgeRetriever(backend=make_backend(name), encoder=encoder, mode="hybrid", bm25=True)


def test_retriever_refuses_bad_setups_and_queries(
    make_backend: Callable[..., Backend], ingested: Callable[..., Backend], encoder: Encoder
) -> None:
    backend = ingested(make_backend("memory"))
    with pytest.raises(ValueError, match="needs a sparsebridge Encoder"):
        SparsebridgeRetriever(backend=backend)
    with pytest.raises(ValueError, match="second leg"):
        SparsebridgeRetriever(backend=backend, encoder=encoder, mode="hybrid")
    with pytest.raises(ValueError, match="hybrid mode only"):
        SparsebridgeRetriever(backend=backend, encoder=encoder, bm25=True)
    with pytest.raises(ValueError):
        SparsebridgeRetriever(backend=backend, encoder=encoder, k=0)
    with pytest.raises(ValueError):
        SparsebridgeRetriever(backend="memory://", encoder=encoder)
    retriever = SparsebridgeRetriever(backend=backend, encoder=encoder)
    with pytest.raises(ValueError, match="non-blank"):
        retriever.invoke("   ")
    with pytest.raises(ValueError, match="positive integer"):
        retriever.invoke("river", k=0)


# (d) invoke / ainvoke / batch; async embeddings.


def test_invoke_ainvoke_and_batch_agree(
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    encoder: Encoder,
    queries: list[str],
) -> None:
    retriever = SparsebridgeRetriever(backend=ingested(make_backend("qdrant+local")), encoder=encoder, k=K)
    one_by_one = [retriever.invoke(q) for q in queries]
    assert all(one_by_one)
    # batch() runs its queries concurrently and the encoder gathers them into shared passes: the
    # same documents, scores within the coalescing tolerance
    assert_same_documents(retriever.batch(queries), one_by_one)
    assert_same_documents([asyncio.run(retriever.ainvoke(queries[0]))], one_by_one[:1])
    assert_same_documents([retriever.invoke(queries[0], k=2)], [one_by_one[0][:2]])


def assert_same_documents(got: list[list[LangChainDocument]], want: list[list[LangChainDocument]]) -> None:
    assert [[d.id for d in docs] for docs in got] == [[d.id for d in docs] for docs in want]
    assert [[d.page_content for d in docs] for docs in got] == [
        [d.page_content for d in docs] for docs in want
    ]
    for docs, wanted in zip(got, want, strict=True):
        for doc, expected in zip(docs, wanted, strict=True):
            assert doc.metadata == {
                **expected.metadata,
                "score": pytest.approx(expected.metadata["score"], rel=1e-5),
            }


def test_async_embeddings_equal_sync(encoder: Encoder, queries: list[str]) -> None:
    sparse = SparsebridgeSparseEmbeddings(encoder)
    assert asyncio.run(sparse.aembed_documents(queries)) == sparse.embed_documents(queries)
    assert asyncio.run(sparse.aembed_query(queries[0])) == sparse.embed_query(queries[0])


# (e) the query side is the model's query path.


def test_sparse_embeddings_use_the_query_and_document_paths(
    asymmetric_encoder: Encoder, queries: list[str]
) -> None:
    sparse = SparsebridgeSparseEmbeddings(asymmetric_encoder)
    for query, doc_vector in zip(queries, asymmetric_encoder.encode_documents(queries), strict=True):
        [query_vector] = asymmetric_encoder.encode_queries([query])
        assert query_vector != doc_vector  # the two paths differ on this model
        got = sparse.embed_query(query)
        assert (got.indices, got.values) == (query_vector.indices.tolist(), query_vector.values.tolist())
    docs = sparse.embed_documents(queries)
    expected = asymmetric_encoder.encode_documents(queries)
    assert [(d.indices, d.values) for d in docs] == [
        (v.indices.tolist(), v.values.tolist()) for v in expected
    ]


def test_dense_embeddings_are_the_dense_encoder_vectors(
    dense_encoder: DenseEncoder, queries: list[str]
) -> None:
    dense = SparsebridgeDenseEmbeddings(dense_encoder)
    assert dense.embed_query(queries[0]) == dense_encoder.encode_queries(queries[:1])[0].tolist()
    assert dense.embed_documents(queries) == dense_encoder.encode_documents(queries).tolist()


def test_docs_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(docs_example("langchain"), "docs/connectors/langchain.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mars space "), lines
    assert lines[-1].startswith("Yeast makes bread dough rise"), lines
