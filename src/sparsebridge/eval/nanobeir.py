"""NanoBEIR by name: the 13 small BEIR sets that sentence-transformers model cards report.

``load_nanobeir("msmarco")`` reads the set from the Hugging Face dataset
``sentence-transformers/NanoBEIR-en`` (subsets ``corpus``, ``queries`` and ``qrels``, one split
per set, named ``NanoMSMARCO`` and so on) with the ``datasets`` library, which caches it; later
runs, offline included, read the cache. The conversion follows sentence-transformers'
``NanoBEIREvaluator`` (what the cards' numbers come from): a document is its ``text``, empty
documents and queries are dropped, every qrels row is relevant with grade 1, and only queries with
a relevant document are kept.

``repository`` may also be a local directory in the same layout (a dataset repository with those
subsets and splits), which is how the loader is tested.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from sparsebridge.errors import InputError, MissingExtraError
from sparsebridge.eval.beir import BeirDataset, load_beir
from sparsebridge.eval.metrics import METRICS
from sparsebridge.eval.runner import EvalReport
from sparsebridge.types import Document

__all__ = [
    "NANOBEIR",
    "NANOBEIR_REPOSITORY",
    "load_dataset_argument",
    "load_nanobeir",
    "nanobeir_mean",
    "nanobeir_table",
]

NANOBEIR_REPOSITORY = "sentence-transformers/NanoBEIR-en"
PREFIX = "nanobeir/"

NANOBEIR = {
    "arguana": "ArguAna",
    "climatefever": "ClimateFEVER",
    "dbpedia": "DBPedia",
    "fever": "FEVER",
    "fiqa2018": "FiQA2018",
    "hotpotqa": "HotpotQA",
    "msmarco": "MSMARCO",
    "nfcorpus": "NFCorpus",
    "nq": "NQ",
    "quoraretrieval": "QuoraRetrieval",
    "scidocs": "SCIDOCS",
    "scifact": "SciFact",
    "touche2020": "Touche2020",
}
"""Short name (as in ``--dataset nanobeir/<name>``) -> the set's name in ``Nano<Name>`` splits."""


def load_dataset_argument(
    argument: str, *, split: str = "test", repository: str | None = None
) -> BeirDataset:
    """``nanobeir/<name>`` through :func:`load_nanobeir`, anything else as a BEIR directory."""
    if argument.lower().startswith(PREFIX):
        return load_nanobeir(argument[len(PREFIX) :], repository=repository or NANOBEIR_REPOSITORY)
    return load_beir(argument, split=split)


def load_nanobeir(
    name: str, *, repository: str = NANOBEIR_REPOSITORY, cache_dir: str | None = None
) -> BeirDataset:
    """Load one NanoBEIR set (see the module docstring).

    Args:
        name: A key of :data:`NANOBEIR` (case-insensitive), e.g. ``"msmarco"``.
        repository: The hub dataset, or a local directory in its layout.
        cache_dir: Where ``datasets`` caches downloads (default: its own, ``HF_DATASETS_CACHE``).

    Raises:
        InputError: Unknown name, or the set is neither reachable nor cached (the message names
            the cache directory).
        MissingExtraError: ``datasets`` is not installed.
    """
    key = name.lower()
    if key not in NANOBEIR:
        raise InputError(f"unknown NanoBEIR set {name!r} (known: {', '.join(NANOBEIR)})")
    try:
        import datasets
    except ImportError as e:
        raise MissingExtraError("datasets", "nanobeir") from e
    split = f"Nano{NANOBEIR[key]}"
    tables: dict[str, Any] = {}
    for subset in ("corpus", "queries", "qrels"):
        try:
            tables[subset] = datasets.load_dataset(repository, subset, split=split, cache_dir=cache_dir)
        except Exception as e:  # offline, not cached, moved: datasets raises many types
            cache = cache_dir or str(datasets.config.HF_DATASETS_CACHE)
            offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
            hub = "is switched off (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)" if offline else "did not answer"
            raise InputError(
                f"cannot load NanoBEIR {key!r} ({repository}, subset {subset!r}, split {split!r}): "
                f"it is not in the datasets cache at {cache} and the hub {hub}; run once with network "
                f"access to cache it, or point HF_DATASETS_CACHE at a cache that has it "
                f"({type(e).__name__}: {e})"
            ) from e
    return _converted(tables["corpus"], tables["queries"], tables["qrels"], source=f"{repository}:{split}")


def _converted(
    corpus_rows: Sequence[Mapping[str, Any]],
    query_rows: Sequence[Mapping[str, Any]],
    qrels_rows: Sequence[Mapping[str, Any]],
    *,
    source: str,
) -> BeirDataset:
    corpus = {
        str(row["_id"]): Document(str(row["_id"]), row["text"], {})
        for row in corpus_rows
        if row["text"].strip()
    }
    all_queries = {str(row["_id"]): row["text"] for row in query_rows if row["text"].strip()}
    qrels: dict[str, dict[str, int]] = {}
    for row in qrels_rows:
        query_id = str(row["query-id"])
        documents = row["corpus-id"] if isinstance(row["corpus-id"], list) else [row["corpus-id"]]
        for document_id in documents:
            qrels.setdefault(query_id, {})[str(document_id)] = 1
    queries = {q: text for q, text in all_queries.items() if q in qrels}
    if not corpus or not queries:
        raise InputError("no documents, or no query with a relevant document", source=source)
    return BeirDataset(corpus=corpus, queries=queries, qrels={q: qrels[q] for q in queries})


def nanobeir_table(reports: Mapping[str, EvalReport]) -> str:
    """Per-set nDCG@10 of every mode (backend, then exact), active dims, and the mean over the sets."""
    names = list(reports)
    if not names:
        raise ValueError("no reports")
    modes = list(reports[names[0]].modes)
    columns = [(mode, "backend") for mode in modes] + [(mode, "exact") for mode in modes]
    columns = [(m, side) for m, side in columns if side == "backend" or m in reports[names[0]].exact]
    metric = "ndcg@10"
    header = f"{'dataset':<16}" + "".join(
        f"{(m if s == 'backend' else m + ' exact'):>14}" for m, s in columns
    )
    header += f"{'q dims':>9}{'d dims':>9}"
    lines = [f"NanoBEIR {metric}", header]
    sums = [0.0] * (len(columns) + 2)

    def row(label: str, values: list[float]) -> str:
        return (
            f"{label:<16}"
            + "".join(f"{v:>14.4f}" for v in values[:-2])
            + "".join(f"{v:>9.1f}" for v in values[-2:])
        )

    for name in names:
        report = reports[name]
        values = [(report.modes if s == "backend" else report.exact)[m][metric] for m, s in columns]
        values += [report.active_dims["query"], report.active_dims["document"]]
        sums = [a + b for a, b in zip(sums, values, strict=True)]
        lines.append(row(name, values))
    lines.append(row("mean", [v / len(names) for v in sums]))
    return "\n".join(lines)


def nanobeir_mean(reports: Mapping[str, EvalReport]) -> dict[str, dict[str, float]]:
    """Mean over the sets of every backend metric, per mode."""
    modes = next(iter(reports.values())).modes
    return {
        mode: {
            metric: sum(r.modes[mode][metric] for r in reports.values()) / len(reports) for metric in METRICS
        }
        for mode in modes
    }
