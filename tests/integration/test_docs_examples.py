"""The Python examples of the README and docs/ run as written (bundled models, embedded targets)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
# Examples that need something the test machine lacks say so on a line of their own; examples
# that load a model from the hub ("owner/name") cannot run offline either.
_SKIP_MARK = "# needs:"
_HUB_MODEL = re.compile(r"""(?:\.load\(|model=)\s*["'][\w.-]+/[\w.-]+["']""")

# Runs every block in one interpreter (torch is imported once), each in a fresh namespace, and
# reports which block failed.
_RUNNER = """
import json, sys, traceback
for name, code in json.load(sys.stdin):
    print(f"=== {name}", flush=True)
    try:
        exec(compile(code, name, "exec"), {"__name__": "__main__"})
    except BaseException:
        traceback.print_exc(file=sys.stdout)
        print(f"=== FAILED {name}", flush=True)
        sys.exit(1)
"""


def _examples() -> list[tuple[str, str]]:
    examples = []
    for page in PAGES:
        blocks = [code for lang, code in _FENCE.findall(page.read_text(encoding="utf-8")) if lang == "python"]
        for i, code in enumerate(blocks):
            if _SKIP_MARK not in code and not _HUB_MODEL.search(code):
                examples.append((f"{page.relative_to(ROOT)}[{i}]", code))
    return examples


def test_every_python_example_in_the_docs_runs(tmp_path: Path) -> None:
    examples = _examples()
    assert any(name.startswith("README.md") for name, _ in examples)
    result = subprocess.run(
        [sys.executable, "-c", _RUNNER],
        input=json.dumps(examples),
        cwd=tmp_path,  # the examples write under .sparsebridge/ in the working directory
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HAYSTACK_TELEMETRY_ENABLED": "False"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    failed = result.stdout.rpartition("\n=== ")[0].rpartition("=== ")[2]  # the last example's output
    assert result.returncode == 0, f"=== {failed[-6000:]}\nstderr:\n{result.stderr[-2000:]}"
    readme_output = result.stdout.split("=== README.md[0]\n")[1].split("=== ")[0].splitlines()
    assert readme_output[0].startswith("mars "), readme_output  # the red planet first
