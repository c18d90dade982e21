"""NanoBEIR by name: the loader on a local dataset in the hub's layout, the offline error, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest

from sparsebridge.cli import main
from sparsebridge.errors import InputError
from sparsebridge.eval.nanobeir import NANOBEIR, load_dataset_argument, load_nanobeir

TOPICS = {
    "river": "river water flow delta bank flood",
    "space": "planet star orbit moon galaxy telescope",
    "cell": "protein gene cell enzyme membrane virus",
}


def write_nanobeir(root: Path, names: list[str]) -> Path:
    """A dataset repository laid out like sentence-transformers/NanoBEIR-en (parquet, YAML configs)."""
    configs = {"corpus": [], "queries": [], "qrels": []}
    for name in names:
        split = f"Nano{NANOBEIR[name]}"
        corpus = [{"_id": f"{name}-{t}", "text": f"{words} ({name})"} for t, words in TOPICS.items()]
        corpus.append({"_id": f"{name}-empty", "text": ""})  # dropped, as sentence-transformers does
        queries = [{"_id": f"q-{t}", "text": words.split()[0]} for t, words in TOPICS.items()]
        queries.append({"_id": "q-unjudged", "text": "nothing relevant"})  # no qrels row: dropped
        qrels = [{"query-id": f"q-{t}", "corpus-id": f"{name}-{t}"} for t in TOPICS]
        for subset, rows in (("corpus", corpus), ("queries", queries), ("qrels", qrels)):
            path = root / subset / f"{split}.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            datasets.Dataset.from_list(rows).to_parquet(str(path))
            configs[subset].append(f"  - split: {split}\n    path: {subset}/{split}.parquet")
    yaml = "".join(
        f"- config_name: {subset}\n  data_files:\n" + "\n".join(files) + "\n"
        for subset, files in configs.items()
    )
    (root / "README.md").write_text(f"---\nconfigs:\n{yaml}---\n")
    return root


def test_loader_converts_like_sentence_transformers(tmp_path: Path) -> None:
    repository = str(write_nanobeir(tmp_path / "NanoBEIR-en", ["msmarco", "scifact"]))
    dataset = load_nanobeir("MSMARCO", repository=repository, cache_dir=str(tmp_path / "cache"))
    assert set(dataset.corpus) == {"msmarco-river", "msmarco-space", "msmarco-cell"}
    assert dataset.corpus["msmarco-river"].text == "river water flow delta bank flood (msmarco)"
    assert dataset.queries == {"q-river": "river", "q-space": "planet", "q-cell": "protein"}
    assert dataset.qrels == {f"q-{t}": {f"msmarco-{t}": 1} for t in TOPICS}
    other = load_dataset_argument("nanobeir/scifact", repository=repository)
    assert set(other.corpus) == {"scifact-river", "scifact-space", "scifact-cell"}
    with pytest.raises(InputError, match="unknown NanoBEIR set 'msmarc'"):
        load_nanobeir("msmarc", repository=repository)


def test_offline_without_cache_names_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "empty-cache"
    with pytest.raises(InputError, match=f"not in the datasets cache at {cache}.*switched off"):
        load_nanobeir("nfcorpus", cache_dir=str(cache))


def test_cli_all_nanobeir_prints_each_set_and_the_mean(
    tmp_path: Path, splade_tiny_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = write_nanobeir(tmp_path / "NanoBEIR-en", list(NANOBEIR))
    output = tmp_path / "results.json"
    args = ["eval", "--all-nanobeir", "--nanobeir-repository", str(repository), "--model", splade_tiny_path]
    assert main([*args, "--device", "cpu", "--to", "memory://", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    lines = {line.split()[0]: line for line in printed.splitlines() if line.strip()}
    assert set(NANOBEIR) <= set(lines) and "mean" in lines
    results = json.loads(output.read_text())
    assert set(results["datasets"]) == set(NANOBEIR)
    per_set = [r["modes"]["sparse"]["ndcg@10"] for r in results["datasets"].values()]
    assert results["mean"]["sparse"]["ndcg@10"] == pytest.approx(sum(per_set) / len(per_set))
    assert f"{results['mean']['sparse']['ndcg@10']:.4f}" in lines["mean"]
    assert all(0 < v <= 1 for v in per_set)


def test_cli_one_set_by_name(
    tmp_path: Path, splade_tiny_path: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repository = write_nanobeir(tmp_path / "NanoBEIR-en", ["nq"])
    args = ["eval", "--dataset", "nanobeir/nq", "--nanobeir-repository", str(repository)]
    assert main([*args, "--model", splade_tiny_path, "--device", "cpu", "--to", "memory://"]) == 0
    assert "sparse" in capsys.readouterr().out
    # a repository without every set: refused before any model is loaded or anything written
    every = ["eval", "--all-nanobeir", "--nanobeir-repository", str(repository), "--model", "no-such-model"]
    assert main([*every, "--to", "memory://"]) != 0
    assert "cannot load NanoBEIR 'arguana'" in capsys.readouterr().err
