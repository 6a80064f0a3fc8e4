"""The package's shape: one import name, imports that flow one way, no circle, unique names."""

from __future__ import annotations

import ast
import tomllib
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("hwnas", "search", "supernet", "latency", "db", "app")
# Layer order: a package may import only those to its right (and itself).
ALLOWED = {
    "app": {"search", "db", "latency", "supernet"},
    "search": {"latency", "supernet", "db"},
    "latency": {"supernet"},
    "supernet": set(),
    "db": set(),
}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["hwnas", *parts] if parts[0] != "hwnas" else parts)


def sources() -> dict[str, Path]:
    found = {}
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            found[module_name(path)] = path
    return found


def imports(path: Path, known: set[str]) -> set[str]:
    """Every hwnas module `path` imports, at module level or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import mod` depends on the submodule, `from mod import name` on mod
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [s for s in subs if s in known]
            if len(names) < len(subs):
                names.append(node.module)
        for name in names:
            if name in known:
                out.add(name)
    return out


def graph() -> dict[str, set[str]]:
    mods = sources()
    return {m: imports(p, set(mods)) - {m} for m, p in mods.items()}


def test_no_import_circle():
    edges = graph()
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert cycles == []


def test_imports_flow_down():
    wrong = []
    for mod, targets in graph().items():
        layer = mod.split(".")[1] if mod.count(".") else "hwnas"
        if layer not in ALLOWED:
            continue
        for t in targets:
            other = t.split(".")[1] if t.count(".") else "hwnas"
            if other != layer and other in ALLOWED and other not in ALLOWED[layer]:
                wrong.append(f"{mod} -> {t}")
    assert wrong == []


def test_no_two_modules_share_a_file_name():
    names = defaultdict(list)
    for path in sources().values():
        if path.name not in ("__init__.py", "__main__.py"):
            names[path.name].append(str(path.relative_to(ROOT)))
    assert {n: p for n, p in names.items() if len(p) > 1} == {}


def test_package_list_names_every_package_folder():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    folders = {module_name(p) for p in sources().values() if p.name == "__init__.py"}
    assert folders == listed
    for pkg, folder in cfg["package-dir"].items():
        assert (ROOT / folder / "__init__.py").is_file(), pkg


def test_no_bare_import_of_a_folder_name():
    """Inside the package every import goes through `hwnas.`: `import search` would find a
    user's own `search/` folder first."""
    bare = []
    for path in [
        *sources().values(),
        *(ROOT / "tests").rglob("*.py"),
        *(ROOT / "bench").rglob("*.py"),
    ]:
        for node in ast.walk(ast.parse(path.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            bare += [f"{path}: {m}" for m in mods if m.split(".")[0] in FOLDERS[1:]]
    assert bare == []
