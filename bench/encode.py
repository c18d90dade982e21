"""Encoding throughput: sparsebridge's core against sentence-transformers, same model, same texts, one run.

    python bench/encode.py                                  # splade-tiny on this machine (CPU)
    python bench/encode.py --model bert-base --tokens 80    # random-weight BERT-base SPLADE (GPU)
    python bench/encode.py --model bert-base --layers 28    # seed-model-sized (28 x 768)
    python bench/encode.py --model rotary-mlm --layers 2    # custom-code NeoBERT-like model (CPU or GPU)

``bert-base`` builds a random-weight ``BertForMaskedLM`` whose MLM bias is shifted so documents get
about ``--active-dims`` non-zeros (throughput depends on the architecture, and sparse extraction
costs on the number of active dims). ``rotary-mlm`` builds the custom-code test model of
``tests/remote_code/`` (rotary attention, SwiGLU, RMSNorm: NeoBERT's shape, ``--hidden`` wide),
loaded with ``trust_remote_code`` and its constructor buffers restored on both sides. Texts are
random whole-word vocabulary tokens, ``--tokens`` long on average. Prints one line per
configuration and the ratio to sentence-transformers' best setting; ``--json`` appends the results
(with the machine) to a JSON Lines file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from machine import describe, summary

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def machine() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores"


def make_texts(tokenizer: Any, count: int, tokens: int, seed: int = 0) -> list[str]:
    """Texts of random whole-word tokens, lengths uniform in [tokens/2, 3*tokens/2]."""
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and w.islower() and len(w) > 2]
    rng = random.Random(seed)
    words.sort()
    return [
        " ".join(rng.choice(words) for _ in range(rng.randint(max(1, tokens // 2), tokens * 3 // 2)))
        for _ in range(count)
    ]


def random_splade(layers: int, active_dims: int, tokenizer_dir: str, device: str) -> str:
    """Save a random-weight BERT-base MLM as a SPLADE model dir with ~active_dims non-zeros per doc."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = BertConfig(vocab_size=len(tokenizer), num_hidden_layers=layers, max_position_embeddings=512)
    model = BertForMaskedLM(config).eval()
    texts = make_texts(tokenizer, 64, 80, seed=99)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.inference_mode():
        logits = model.to(device)(**batch.to(device)).logits
        mask = batch["attention_mask"].bool()[..., None]
        pooled = logits.masked_fill(~mask, float("-inf")).amax(dim=1)
        threshold = torch.quantile(
            pooled.float().flatten()[:1_000_000].cpu(), 1 - active_dims / pooled.shape[1]
        )
        model.cls.predictions.decoder.bias.data -= threshold.to(device)
    out = tempfile.mkdtemp(prefix=f"splade-random-{layers}l-")
    model.cpu().save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def timed(fn: Callable[[], Any], device: str) -> tuple[float, Any]:
    """Seconds ``fn`` takes (device work included) and what it returned."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def profile_fast_path(encoder: Any, texts: list[str], device: str) -> dict[str, float]:
    """Texts per second of each stage of the fast path, each stage run alone over all texts (synchronised)."""
    from sparsebridge.encoder.extract import SparseExtractor
    from sparsebridge.encoder.stages import Head

    stages = encoder.stages
    stage_rates: dict[str, float] = {}
    stage_rates["tokenize"], batches = timed(
        lambda: list(
            stages.tokenize(texts, token_budget=encoder.token_budget, max_batch_size=encoder.max_batch_size)
        ),
        device,
    )
    stage_rates["to_device"], on_device = timed(lambda: [stages.to_device(b) for b in batches], device)
    with torch.inference_mode():
        stage_rates["body"], hidden = timed(lambda: [stages.body(i, m) for i, m in on_device], device)
        chunk = encoder.head_chunk_tokens
        for head in reversed(stages.heads()):  # the default head last: its output feeds the extractor
            stage_rates[f"head_{head.value.replace('-', '_')}"], dense = timed(
                lambda h=head: [
                    stages.head(x, m, method=h, chunk_tokens=chunk)
                    for x, (_, m) in zip(hidden, on_device, strict=True)
                ],
                device,
            )
        assert head is stages.heads()[0] and Head.TORCH in stages.heads()

        def extract() -> int:
            extractor = SparseExtractor(device=torch.device(device), top_k=None, min_weight=0.0)
            count = 0
            for b, d in zip(batches, dense, strict=True):
                count += sum(1 for _ in extractor.submit(b.positions, d))
            return count + sum(1 for _ in extractor.drain())

        stage_rates["extract"], _ = timed(extract, device)
    return {k: len(texts) / v for k, v in stage_rates.items()}


@contextlib.contextmanager
def padded_batches_only(enabled: bool) -> Iterator[None]:
    """The fast path as it was before unpadded batches: every batch padded, with a mask."""
    from sparsebridge.encoder import batching

    original = batching.plan_exact_batches

    def none_exact(lengths: Any, **_: Any) -> tuple[list[Any], Any]:
        return [], np.arange(len(lengths))

    if enabled:
        batching.plan_exact_batches = none_exact  # type: ignore[assignment]
    try:
        yield
    finally:
        batching.plan_exact_batches = original


def print_main_thread_profile(fn: Callable[[], Any]) -> None:
    """cProfile one run: where the calling thread computes, and where it waits (locks, syncs)."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.runcall(fn)
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(22)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="splade-tiny", help="splade-tiny, bert-base, rotary-mlm, a path or hub name"
    )
    parser.add_argument("--layers", type=int, default=12, help="bert-base, rotary-mlm: number of layers")
    parser.add_argument("--hidden", type=int, default=768, help="rotary-mlm: width")
    parser.add_argument("--active-dims", type=int, default=180, help="bert-base: target non-zeros per doc")
    parser.add_argument("--tokens", type=int, default=80, help="average words per text")
    parser.add_argument("--docs", type=int, default=0, help="texts for sparsebridge (default: by device)")
    parser.add_argument("--st-docs", type=int, default=0, help="texts for sentence-transformers")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="append results to this JSON Lines file")
    parser.add_argument("--label", default="", help="free text stored with the results")
    parser.add_argument("--profile", action="store_true", help="also time each fast-path stage alone")
    parser.add_argument(
        "--padded", action="store_true", help="also run the fast path with padded batches only"
    )
    parser.add_argument(
        "--cprofile", action="store_true", help="print where the fast path's main thread spends time"
    )
    args = parser.parse_args()

    from sentence_transformers import SparseEncoder

    from sparsebridge.encoder import Encoder
    from sparsebridge.encoder.loading import cast_floating, restore_constructor_buffers
    from sparsebridge.encoder.models import resolve_model

    cuda = args.device.startswith("cuda")
    name = args.model
    path = resolve_model(name)
    if name == "bert-base":
        path = random_splade(args.layers, args.active_dims, resolve_model("splade-tiny"), args.device)
        name = f"random BERT {args.layers}x768"
    remote = name == "rotary-mlm"
    if remote:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from remote_code_model import build

        out = Path(tempfile.mkdtemp(prefix="rotary-mlm-")) / "model"
        path = str(
            build(out, layers=args.layers, hidden=args.hidden, heads=args.hidden // 64,
                  intermediate=args.hidden * 8 // 3, active_dims=args.active_dims)
        )  # fmt: skip
        name = f"custom-code rotary MLM {args.layers}x{args.hidden}"

    def load(device: str) -> Any:
        model = SparseEncoder(path, device=device, trust_remote_code=remote)
        restore_constructor_buffers(model)  # the constructor's values, as a transformers 4 load kept them
        model.max_seq_length = 256
        return model

    docs = args.docs or (20000 if cuda else 256)
    st_docs = args.st_docs or (4096 if cuda else 256)

    base = load(args.device)
    texts = make_texts(base.tokenizer, max(docs, st_docs), args.tokens)
    lengths = [len(ids) for ids in base.tokenizer(texts[:512], truncation=True, max_length=256)["input_ids"]]
    results: list[dict[str, Any]] = []
    head_choice = ""

    def record(config: str, count: int, seconds: float, nnz: float) -> None:
        results.append({"config": config, "docs": count, "seconds": seconds, "docs_per_s": count / seconds,
                        "avg_nnz": nnz})  # fmt: skip
        print(
            f"{config:<44} {count / seconds:>10.1f} docs/s   ({count} docs, {seconds:.2f} s, nnz {nnz:.0f})"
        )

    dtypes = [("fp32", torch.float32)] + ([("bf16", torch.bfloat16)] if cuda else [])
    st_settings = [("fp32", 32), ("bf16", 128)] if cuda else [("fp32", 32)]
    cpu = describe()
    print(f"model {name}, device {args.device} ({machine()}), avg tokens {sum(lengths) / len(lengths):.0f}")
    print(summary(cpu))
    for label, batch_size in st_settings:
        model = load(args.device)
        cast_floating(model, dict(dtypes)[label] if cuda else torch.float32)  # complex buffers stay complex
        subset = texts[:st_docs]
        model.encode_document(subset[: 4 * batch_size], batch_size=batch_size)  # warm-up
        seconds, out = timed(
            lambda m=model, b=batch_size, s=subset: m.encode_document(s, batch_size=b), args.device
        )
        nnz = float(out.coalesce().indices().shape[1]) / len(subset)
        record(f"sentence-transformers {label} batch {batch_size}", len(subset), seconds, nnz)
        del model, out

    by_length = sorted(texts, key=len)
    warm_up = by_length[:128] + by_length[-128:]  # shortest and longest: every kernel variant compiles
    for label, dtype in dtypes[-1:]:  # the device's default dtype: bf16 on CUDA, fp32 on CPU
        variants = [("fast", True, False), ("generic", False, False)]
        if args.padded:
            variants.insert(1, ("fast, padded batches only", True, True))
        for variant, fast, padded in variants:
            model = load(args.device)
            cast_floating(model, dtype)
            encoder = Encoder(model, fast_path=fast)
            subset = texts[:docs] if fast else texts[:st_docs]
            with padded_batches_only(padded):
                encoder.encode_documents(warm_up[:128])
                encoder.encode_documents(warm_up[128:])
                if fast and cuda:  # large inputs start the tokenizer worker processes: not part of the timing
                    encoder.encode_documents(texts[-8192:])
                seconds, vectors = timed(lambda e=encoder, s=subset: e.encode_documents(s), args.device)
                if args.cprofile and fast and not padded:
                    print_main_thread_profile(lambda e=encoder, s=subset: e.encode_documents(s))
            nnz = sum(len(v) for v in vectors) / len(vectors)
            assert encoder.uses_fast_path == fast
            if fast and encoder.stages is not None:
                head_choice = f"{encoder.stages.head_choice}; linear layers {encoder.stages.linear_choice}"
                print(f"fast path head: {head_choice}")
            record(f"sparsebridge {label} {variant} path", len(subset), seconds, nnz)
            del model, encoder

    stage_rates: dict[str, float] = {}
    if args.profile:
        model = load(args.device)
        cast_floating(model, dtypes[-1][1])
        encoder = Encoder(model)
        profile_fast_path(encoder, texts[:32], args.device)  # warm-up: every kernel on shorter batches
        stage_rates = profile_fast_path(encoder, texts[: min(docs, 20000)], args.device)
        print("fast path stages alone (docs/s): " + ", ".join(f"{k} {v:.0f}" for k, v in stage_rates.items()))
        del model, encoder

    best_st = max(r["docs_per_s"] for r in results if r["config"].startswith("sentence-transformers"))
    best_ours = max(r["docs_per_s"] for r in results if r["config"].startswith("sparsebridge"))
    print(f"ratio sparsebridge / sentence-transformers (best of each): {best_ours / best_st:.2f}x")
    if args.json:
        entry = {
            "model": name,
            "device": args.device,
            "machine": machine(),
            "cpu": cpu,
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "head": head_choice,
            "avg_tokens": sum(lengths) / len(lengths),
            "torch": torch.__version__,
            "label": args.label,
            "results": results,
            "ratio_best": best_ours / best_st,
            "stages_docs_per_s": stage_rates,
            "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        with args.json.open("a") as f:
            f.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    main()
