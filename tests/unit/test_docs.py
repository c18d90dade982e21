"""The README and docs/ stay true to the code: links resolve, examples compile, CLI options exist."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

import sparsebridge
from sparsebridge import errors
from sparsebridge.backends import DEFAULT_TARGET

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
LIBRARY_SECTION = "## Quick start: library"

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Options of other tools that the docs mention next to sparsebridge's own.
_OTHER_TOOLS_OPTIONS = {"--no-deps"}


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")}


def broken_links(page: Path) -> list[str]:
    """Every relative link of ``page`` whose file, or whose ``#anchor`` in that file, is missing."""
    broken = []
    for target in _LINK.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in _anchors(resolved):
            broken.append(f"{target} (no heading #{anchor} in {resolved.name})")
    return broken


def readme_library_example() -> str:
    """The first Python block of the README's library quick start."""
    text = README.read_text(encoding="utf-8")
    start = text.index(LIBRARY_SECTION)
    end = text.find("\n## ", start + len(LIBRARY_SECTION))
    blocks = [
        code for lang, code in _FENCE.findall(text[start : end if end != -1 else None]) if lang == "python"
    ]
    if not blocks:
        raise AssertionError(f"README section {LIBRARY_SECTION!r} has no python block")
    return blocks[0]


def cli_lines() -> list[tuple[Path, str]]:
    """``sparsebridge ...`` command lines from the shell blocks of every page (continuations joined)."""
    lines = []
    for page in PAGES:
        for lang, code in _FENCE.findall(page.read_text(encoding="utf-8")):
            if lang not in ("bash", "sh", "shell", ""):
                continue
            for line in code.replace("\\\n", " ").splitlines():
                if line.strip().startswith("sparsebridge "):
                    lines.append((page, line.strip()))
    return lines


@cache
def cli_help(*command: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "sparsebridge.cli", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"sparsebridge {' '.join(command)} --help failed:\n{result.stderr}"
    return result.stdout


def _command_of(line: str) -> tuple[str, ...]:
    words = line.split()[1:3]
    return tuple(words) if words[:1] == ["bench"] else tuple(words[:1])


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_points_to_an_existing_file_and_heading(page: Path) -> None:
    assert broken_links(page) == []


def test_a_broken_link_is_reported(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A heading\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md) [ok](there.md#a-heading) [web](https://example.com/x) [self](#top)\n"
        "# Top\n[gone](missing.md) [bad anchor](there.md#nope)\n```\n[in code](ignored.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(page) == [
        "missing.md (no such file)",
        "there.md#nope (no heading #nope in there.md)",
    ]


def test_the_readme_library_example_compiles_and_uses_the_public_api() -> None:
    example = readme_library_example()
    tree = ast.parse(compile(example, "README.md: library quick start", "exec", flags=ast.PyCF_ONLY_AST))
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "sparsebridge"
        for alias in node.names
    }
    assert imported, "the README's library example imports nothing from sparsebridge"
    assert imported <= set(sparsebridge.__all__), imported - set(sparsebridge.__all__)
    assert len(example.splitlines()) <= 15, "the README's library example should stay about 10 lines"


@pytest.mark.parametrize(
    ("page", "line"), cli_lines(), ids=lambda x: x.name if isinstance(x, Path) else x.split("--")[0][:40]
)
def test_every_option_of_a_documented_command_exists(page: Path, line: str) -> None:
    command = _command_of(line)
    help_text = cli_help(*command)
    missing = [option for option in _OPTION.findall(line) if option not in _OPTION.findall(help_text)]
    assert missing == [], f"{page.name}: `{line}` uses options `sparsebridge {' '.join(command)}` lacks"


def test_the_default_target_the_docs_name_is_the_code_s() -> None:
    for page in (README, ROOT / "docs" / "cli.md"):
        assert DEFAULT_TARGET in page.read_text(encoding="utf-8"), f"{page.name} names another default"


def test_every_option_named_in_the_cli_page_exists() -> None:
    known = set(_OPTION.findall(cli_help()))
    for command in (("encode",), ("ingest",), ("search",), ("eval",), ("bench", "ingest"), ("serve",)):
        known |= set(_OPTION.findall(cli_help(*command)))
    named = set(_OPTION.findall((ROOT / "docs" / "cli.md").read_text(encoding="utf-8")))
    assert named - known - _OTHER_TOOLS_OPTIONS == set()


def test_the_library_page_names_every_exception() -> None:
    page = (ROOT / "docs" / "library.md").read_text(encoding="utf-8")
    exceptions = [name for name in errors.__all__ if issubclass(getattr(errors, name), BaseException)]
    assert [name for name in exceptions if name not in page] == []
