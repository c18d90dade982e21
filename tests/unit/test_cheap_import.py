"""``import sparsebridge`` and the CLI's help never load PyTorch (apps and scripts start fast)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[2] / "src")
HEAVY = ("torch", "transformers", "sentence_transformers")


def _loaded_after(code: str) -> list[str]:
    probe = f"{code}\nimport sys\nprint('loaded:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env={"PYTHONPATH": SRC}, timeout=120
    )
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("loaded:"), done.stdout
    return [m for m in last.removeprefix("loaded:").split(",") if m]


def test_import_sparsebridge_loads_no_model_library() -> None:
    assert _loaded_after("import sparsebridge; sparsebridge.open_backend('memory://')") == []


@pytest.mark.parametrize(
    "argv", [["--help"], ["ingest", "--help"], ["search", "--help"], ["eval", "--help"], ["serve", "--help"]]
)
def test_cli_help_loads_no_model_library(argv: list[str]) -> None:
    code = f"from sparsebridge.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert _loaded_after(code) == []


def test_the_encoder_is_still_one_attribute_away() -> None:
    assert "torch" in _loaded_after("import sparsebridge; sparsebridge.Encoder")
