"""sparsebridge-llamaindex against real LlamaIndex objects, embedded Qdrant, OpenSearch and splade-tiny."""

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
from llama_index.core import Settings
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import VectorStoreQuery, VectorStoreQueryMode
from llama_index.vector_stores.qdrant import QdrantVectorStore

from sparsebridge import Backend, DenseEncoder, Document, Encoder, HybridQuery, QdrantBackend
from sparsebridge.backends import point_id
from sparsebridge.query import fuse
from sparsebridge_llamaindex import (
    SparsebridgeRetriever,
    SparseQueryBundle,
    qdrant_vector_store,
    sparse_doc_fn,
    sparse_query_fn,
)

K = 5
C = 20  # candidates per leg in hybrid queries


def store_hits(
    store: QdrantVectorStore, documents: list[Document], query: str, *, dense: DenseEncoder | None = None
) -> list[tuple[str, float]]:
    """LlamaIndex's own store queried in sparse mode, or hybrid with ``dense``; (doc id, score) pairs."""
    ids = {point_id(d.id): d for d in documents}
    if dense is None:
        request = VectorStoreQuery(query_str=query, mode=VectorStoreQueryMode.SPARSE, similarity_top_k=K)
    else:
        request = VectorStoreQuery(
            query_str=query,
            query_embedding=dense.encode_queries([query])[0].tolist(),
            mode=VectorStoreQueryMode.HYBRID,
            similarity_top_k=C,
            sparse_top_k=C,
            hybrid_top_k=K,
        )
    result = store.query(request)
    assert result.ids is not None and result.similarities is not None and result.nodes is not None
    for node_id, node in zip(result.ids, result.nodes, strict=True):
        assert node.get_content() == ids[node_id].text
    return [(ids[i].id, s) for i, s in zip(result.ids, result.similarities, strict=True)]


# (a) sparsebridge writes, LlamaIndex's own QdrantVectorStore reads.


@pytest.mark.parametrize("hybrid", [False, True], ids=["sparse", "hybrid"])
def test_llamaindex_store_reads_a_collection_sparsebridge_wrote(
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    documents: list[Document],
    encoder: Encoder,
    dense_encoder: DenseEncoder,
    queries: list[str],
    hybrid: bool,
) -> None:
    dense = dense_encoder if hybrid else None
    backend = ingested(make_backend("qdrant+local", **({"dense_size": MINILM_SIZE} if hybrid else {})), dense)
    assert isinstance(backend, QdrantBackend)
    store = qdrant_vector_store(backend, encoder)
    memory = reference(documents, encoder, dense)
    for query in queries:
        got = store_hits(store, documents, query, dense=dense)
        [sparse] = encoder.encode_queries([query])
        if hybrid:
            [embedding] = dense_encoder.encode_queries([query])
            [ours] = backend.search_hybrid_batch(
                [HybridQuery(sparse=sparse, dense=embedding, candidates=C)], RRF, k=3 * K
            )
            assert_same_top_k(ours, got, k=K)
            assert_same_top_k(
                exact_hybrid(memory, encoder, dense_encoder, query, candidates=C, k=3 * K), got, k=K
            )
        else:
            assert_same_top_k(backend.search(sparse, k=3 * K), got, k=K)
            assert_same_top_k(memory.search(sparse, k=3 * K), got, k=K)


# (b) LlamaIndex writes through its own store with sparsebridge's functions, then reads.


def test_llamaindex_writes_and_reads_like_sparsebridge(
    make_backend: Callable[..., Backend],
    documents: list[Document],
    encoder: Encoder,
    dense_encoder: DenseEncoder,
    queries: list[str],
) -> None:
    backend = make_backend("qdrant+local", dense_size=MINILM_SIZE)
    assert isinstance(backend, QdrantBackend)
    store = qdrant_vector_store(backend, encoder)
    embeddings = dense_encoder.encode_documents([d.text for d in documents])
    # LlamaIndex encodes get_content(MetadataMode.EMBED): metadata lines + text, unless excluded
    nodes = [
        TextNode(
            id_=point_id(d.id),
            text=d.text,
            metadata=dict(d.metadata),
            excluded_embed_metadata_keys=list(d.metadata),
            embedding=e.tolist(),
        )
        for d, e in zip(documents, embeddings, strict=True)
    ]
    assert len(store.add(nodes)) == len(documents)
    memory = reference(documents, encoder, dense_encoder)
    for query in queries:
        [sparse] = encoder.encode_queries([query])
        assert_same_top_k(memory.search(sparse, k=3 * K), store_hits(store, documents, query), k=K)
        got = store_hits(store, documents, query, dense=dense_encoder)
        assert_same_top_k(
            exact_hybrid(memory, encoder, dense_encoder, query, candidates=C, k=3 * K), got, k=K
        )


def test_sparse_functions_are_batched_encoder_calls(encoder: Encoder, queries: list[str]) -> None:
    indices, values = sparse_doc_fn(encoder)(queries)
    expected = encoder.encode_documents(queries)
    assert indices == [v.indices.tolist() for v in expected]
    assert values == [v.values.tolist() for v in expected]
    with pytest.raises(TypeError, match="Encoder"):
        sparse_doc_fn("splade-tiny")  # type: ignore[arg-type]


# (c) the retriever over every backend, contract-style.


def check_nodes(found: list[NodeWithScore], documents: list[Document]) -> None:
    originals = {d.id: d for d in documents}
    scores = [n.score for n in found]
    assert scores == sorted(scores, reverse=True)  # type: ignore[type-var]
    for hit in found:
        original = originals[hit.node.node_id]
        assert hit.node.get_content() == original.text
        assert hit.node.metadata == original.metadata


def pairs(found: list[NodeWithScore]) -> list[tuple[str, float]]:
    return [(n.node.node_id, float(n.score or 0.0)) for n in found]


@pytest.mark.parametrize("name", BACKENDS)
def test_retriever_sparse_matches_the_exact_reference(
    name: str,
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    documents: list[Document],
    encoder: Encoder,
    queries: list[str],
) -> None:
    retriever = SparsebridgeRetriever(ingested(make_backend(name)), encoder, similarity_top_k=K)
    memory = reference(documents, encoder)
    for query in queries:
        found = retriever.retrieve(query)
        check_nodes(found, documents)
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
    if name == "opensearch":  # the test node has no k-NN plugin: the second leg is BM25
        backend, options = ingested(make_backend(name)), {"bm25": True}
    else:
        backend = ingested(make_backend(name, dense_size=MINILM_SIZE), dense_encoder)
        options = {"dense_encoder": dense_encoder}
    retriever = SparsebridgeRetriever(
        backend, encoder, mode="hybrid", similarity_top_k=K, candidates=C, **options
    )
    memory = reference(documents, encoder, dense_encoder)
    for query in queries:
        found = retriever.retrieve(query)
        check_nodes(found, documents)
        [sparse] = encoder.encode_queries([query])
        if name == "opensearch":  # the engine's sparse and BM25 legs, fused by sparsebridge's definition
            legs = [backend.search(sparse, k=C), *backend.search_text_batch([query], k=C)]  # type: ignore[attr-defined]
            expected = fuse(legs, RRF, limit=3 * K)
        elif name == "elasticsearch":  # the engine's sparse and dense legs (9-bit sparse scores)
            expected = engine_hybrid(backend, encoder, dense_encoder, query, candidates=C, k=3 * K)
        else:
            expected = exact_hybrid(memory, encoder, dense_encoder, query, candidates=C, k=3 * K)
        assert_same_top_k(expected, pairs(found), k=K)


def test_retriever_bm25_mode(
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    documents: list[Document],
    queries: list[str],
) -> None:
    backend = ingested(make_backend("opensearch"))
    retriever = SparsebridgeRetriever(backend, mode="bm25", similarity_top_k=K)
    for query in queries:
        found = retriever.retrieve(query)
        check_nodes(found, documents)
        [expected] = backend.search_text_batch([query], k=K)  # type: ignore[attr-defined]
        assert found and pairs(found) == [(h.id, h.score) for h in expected]


@pytest.mark.parametrize("name", EXACT_BACKENDS)
def test_retriever_refuses_bm25_where_the_backend_has_none(
    name: str, make_backend: Callable[..., Backend], encoder: Encoder
) -> None:
    with pytest.raises(ValueError, match="no BM25"):
        SparsebridgeRetriever(make_backend(name), mode="bm25")


def test_retriever_needs_no_embed_model_and_refuses_bad_input(
    make_backend: Callable[..., Backend], ingested: Callable[..., Backend], encoder: Encoder
) -> None:
    with pytest.raises(ImportError):  # LlamaIndex's default embed_model (OpenAI) is not installed
        _ = Settings.embed_model
    retriever = SparsebridgeRetriever(ingested(make_backend("memory")), encoder)
    assert retriever.retrieve("river flood")
    with pytest.raises(ValueError, match="non-blank"):
        retriever.retrieve(" ")
    with pytest.raises(ValueError, match="similarity_top_k"):
        SparsebridgeRetriever(make_backend("memory"), encoder, similarity_top_k=0)
    with pytest.raises(ValueError, match="second leg"):
        SparsebridgeRetriever(make_backend("memory"), encoder, mode="hybrid")


def test_precomputed_query_vectors_are_used(
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    encoder: Encoder,
    dense_encoder: DenseEncoder,
    queries: list[str],
) -> None:
    backend = ingested(make_backend("qdrant+local", dense_size=MINILM_SIZE), dense_encoder)
    sparse = SparsebridgeRetriever(backend, encoder, similarity_top_k=K)
    hybrid = SparsebridgeRetriever(
        backend, encoder, mode="hybrid", dense_encoder=dense_encoder, similarity_top_k=K, candidates=C
    )
    river, planet = queries[0], queries[1]
    [planet_vector] = encoder.encode_queries([planet])
    [planet_dense] = dense_encoder.encode_queries([planet])
    # the text says "river", the vectors say "planet": the vectors win
    bundle = SparseQueryBundle(query_str=river, sparse_embedding=planet_vector)
    assert pairs(sparse.retrieve(bundle)) == pairs(sparse.retrieve(planet))
    assert pairs(sparse.retrieve(bundle)) != pairs(sparse.retrieve(river))
    bundle = SparseQueryBundle(
        query_str=river, sparse_embedding=planet_vector, embedding=planet_dense.tolist()
    )
    assert pairs(hybrid.retrieve(bundle)) == pairs(hybrid.retrieve(planet))
    assert pairs(hybrid.retrieve(QueryBundle(river, embedding=planet_dense.tolist()))) != pairs(
        hybrid.retrieve(river)
    )


def test_aretrieve_equals_retrieve(
    make_backend: Callable[..., Backend],
    ingested: Callable[..., Backend],
    encoder: Encoder,
    queries: list[str],
) -> None:
    retriever = SparsebridgeRetriever(ingested(make_backend("qdrant+local")), encoder, similarity_top_k=K)
    for query in queries:
        assert pairs(asyncio.run(retriever.aretrieve(query))) == pairs(retriever.retrieve(query))


# (e) the query side is the model's query path.


def test_sparse_query_fn_uses_the_query_path(asymmetric_encoder: Encoder, queries: list[str]) -> None:
    indices, values = sparse_query_fn(asymmetric_encoder)(queries)
    expected = asymmetric_encoder.encode_queries(queries)
    documents = asymmetric_encoder.encode_documents(queries)
    assert all(q != d for q, d in zip(expected, documents, strict=True))
    assert (indices, values) == (
        [v.indices.tolist() for v in expected],
        [v.values.tolist() for v in expected],
    )
    doc_indices, _ = sparse_doc_fn(asymmetric_encoder)(queries)
    assert doc_indices == [v.indices.tolist() for v in documents]


def test_docs_example_runs_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(docs_example("llamaindex"), "docs/connectors/llamaindex.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("mars space "), lines
    assert lines[-2] == "bread" and lines[-1].startswith("The Nile flows north"), lines
