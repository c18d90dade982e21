"""Build a local custom-code SPLADE model directory from ``tests/remote_code/modeling_rotary_mlm.py``.

The directory holds the modelling file, a ``config.json`` whose ``auto_map`` points at it (so
transformers loads it only with ``trust_remote_code=True``), random weights, and the splade-tiny
tokenizer without ``token_type_ids``. The projection's bias is shifted so that a text has about
``active_dims`` positive weights, as a trained SPLADE model does.
"""

from __future__ import annotations

import importlib.util
import json
import random
import shutil
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from sparsebridge.encoder.models import resolve_model

MODELING = Path(__file__).parent / "remote_code" / "modeling_rotary_mlm.py"


def modeling() -> ModuleType:
    """The modelling file, imported under its own name (for tests that need its functions)."""
    spec = importlib.util.spec_from_file_location("rotary_mlm_fixture", MODELING)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def texts(tokenizer: Any, count: int, words: int, seed: int = 0) -> list[str]:
    """Texts of random whole words from the tokenizer's vocabulary, ``words/2`` to ``3*words/2`` long."""
    vocab = sorted(w for w in tokenizer.get_vocab() if w.isalpha() and w.islower() and len(w) > 2)
    rng = random.Random(seed)
    return [
        " ".join(rng.choices(vocab, k=rng.randint(max(1, words // 2), words * 3 // 2))) for _ in range(count)
    ]


def build(
    directory: Path,
    *,
    layers: int = 2,
    hidden: int = 64,
    heads: int = 4,
    intermediate: int = 128,
    active_dims: int = 100,
    seed: int = 0,
) -> Path:
    """Write the model directory (see the module docstring) and return it."""
    from transformers import AutoTokenizer

    module = modeling()
    tokenizer_dir = Path(resolve_model("splade-tiny"))
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = module.RotaryMLMConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
    )
    torch.manual_seed(seed)
    model = module.RotaryMLMForMaskedLM(config).eval()
    batch = tokenizer(texts(tokenizer, 32, 40, seed=seed + 1), padding=True, return_tensors="pt")
    with torch.inference_mode():
        logits = model(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        pooled = logits.masked_fill(~batch["attention_mask"].bool()[..., None], float("-inf")).amax(dim=1)
        threshold = torch.quantile(pooled.flatten()[:1_000_000], 1 - active_dims / pooled.shape[1])
        model.decoder.bias -= threshold
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    shutil.copy(MODELING, directory / MODELING.name)
    config_path = directory / "config.json"
    saved = json.loads(config_path.read_text())
    saved["auto_map"] = {
        "AutoConfig": "modeling_rotary_mlm.RotaryMLMConfig",
        "AutoModel": "modeling_rotary_mlm.RotaryMLMModel",
        "AutoModelForMaskedLM": "modeling_rotary_mlm.RotaryMLMForMaskedLM",
    }
    config_path.write_text(json.dumps(saved, indent=2))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, directory / name)
    tokenizer_config = directory / "tokenizer_config.json"
    options = json.loads(tokenizer_config.read_text())
    options.update(model_input_names=["input_ids", "attention_mask"], model_max_length=256)
    tokenizer_config.write_text(json.dumps(options, indent=2))
    return directory
