"""The documents stay true: every file path they cite exists, and docs/results.md is current.

Paths are collected from docs/*.md, README.md and the docstrings and comments of the package's
and the benches' .py files. A path counts as cited when it starts with one of the repository's
top-level folders (`supernet/depthwise.py`, `search/services/`, `.ci/run`), names a source or
document file (`DESIGN.md`, `services/search.py`) or is a Markdown link's target; it must exist
relative to the repository root, the citing file's folder (`[results.md](results.md)`) or a
package folder, and a bare file name anywhere in the checkout (file names are unique). Placeholders
(`DIR/NAME.json`, `FILE.toml`), globs, URLs and paths outside the checkout are not paths here.
"""

from __future__ import annotations

import ast
import functools
import io
import re
import tokenize
from pathlib import Path

import pytest

from bench import results_doc

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ("search", "supernet", "latency", "db", "app", "hwnas")
TOP = (*PACKAGE, "bench", "docs", "tests", ".ci")
# a source or document file; a bare `train.toml` or `data.json` is the user's, not ours
EXTENSIONS = ("py", "md", "cc")
# a path-like word: folders and a name, or a bare file name with a source/document extension
WORD = re.compile(r"(?<![\w.~/$@:*-])(\.?[\w-][\w.-]*(?:/[\w.-]+)*/?)")
# a Markdown link's target, without its #anchor
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
# files that commands write where they run, named in the docs as outputs, not repository files
OUTPUTS = {"report.md"}


def _is_placeholder(word: str) -> bool:
    """`DIR/NAME.json`, `FILE.toml`: a part in capitals (README.md and DESIGN.md are files)."""
    caps = re.compile(r"[A-Z][A-Z0-9_]*(\.\w+)?")
    return any(caps.fullmatch(part) and not part.endswith(".md") for part in word.split("/"))


def cited_paths(text: str) -> set[str]:
    """The repository paths a text cites (see the module docstring)."""
    found = set()
    for m in WORD.finditer(text):
        word = m.group(1).rstrip(".")
        after = text[m.end() : m.end() + 1]
        if after in ("*", "{", "<") or _is_placeholder(word) or word in OUTPUTS:
            continue
        in_repo = "/" in word and word.split("/")[0] in TOP
        if in_repo or re.fullmatch(rf"(.*/)?[\w-][\w.-]*\.({'|'.join(EXTENSIONS)})", word):
            found.add(word)
    found.update(m.group(1) for m in LINK.finditer(text) if "://" not in m.group(1))
    return found


def python_prose(path: Path) -> str:
    """The docstrings and comments of a Python file."""
    source = path.read_text()
    parts = [
        tok.string
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    ]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            parts.append(ast.get_docstring(node, clean=False) or "")
    return "\n".join(parts)


def citing_files() -> list[Path]:
    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    code = [p for d in (*PACKAGE, "bench") for p in sorted((ROOT / d).rglob("*.py"))]
    return docs + code


@functools.cache
def file_names() -> frozenset[str]:
    """The names of the checkout's files: no two share a name (tests/test_architecture.py)."""
    return frozenset(p.name for d in TOP for p in (ROOT / d).rglob("*") if p.is_file())


def _exists(word: str, citing: Path) -> bool:
    """Relative to the root, the citing file's folder or (`services/search.py`) a package; a bare
    file name (`analysis.py` in a paragraph on `search/report/`) anywhere in the checkout."""
    bases = (ROOT, citing.parent, *(ROOT / d for d in PACKAGE))
    if any((base / word).exists() for base in bases):
        return True
    return "/" not in word and word in file_names()


@pytest.mark.parametrize("path", citing_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cited_path_exists(path: Path) -> None:
    text = python_prose(path) if path.suffix == ".py" else path.read_text()
    missing = sorted(w for w in cited_paths(text) if not _exists(w, path))
    assert not missing, f"{path.relative_to(ROOT)} cites paths that do not exist: {missing}"


def test_cited_paths_are_found() -> None:
    text = (
        "see `supernet/depthwise.py`, [latency](docs/latency.md), DESIGN.md and .ci/run; "
        "not DIR/NAME.json, FILE.toml, https://example.org/a.py, ~/.cache/hwnas or *.py"
    )
    assert cited_paths(text) == {
        "supernet/depthwise.py",
        "docs/latency.md",
        "DESIGN.md",
        ".ci/run",
    }


def test_results_md_is_generated_from_its_json() -> None:
    expected = results_doc.render(results_doc.load())
    actual = (ROOT / "docs" / "results.md").read_text()
    assert actual == expected, "docs/results.md is stale: run `python -m bench.results_doc`"


def test_results_wrapping_keeps_every_word_and_starts_no_block() -> None:
    text = "the figure " * 8 + "- 1. # > | ``` " + "and more words " * 8
    lines = results_doc.wrap(text, width=30)
    assert " ".join(lines).split() == text.split()
    assert not any(results_doc.BLOCK_START.match(line.split()[0]) for line in lines)
    command = "python -m bench search_efficiency --db URL --run syn4 -- --samplers tpe --seeds 10"
    wrapped = results_doc.command_lines(command, width=40)
    assert len(wrapped) > 1 and all(len(line) <= 40 for line in wrapped)
    assert " ".join(line.removesuffix(" \\").strip() for line in wrapped) == command
