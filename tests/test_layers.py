"""The package's layers run one way: a module imports only from its own layer or the ones below.

Lowest first (README, "Layers"):

    0  io, utils, errors, privacy, config, metrics, store, tasks (the task kinds), and medsight/__init__ (it only holds the version)
    1  data, transforms
    2  models, planning
    3  runtime
    4  training
    5  inference
    6  evaluation
    7  service, pacs, node, cli, cli_common, cli_pacs, cli_cache, cli_audit, cli_node, cli_serve, cli_pretrain, cli_deid, demo, api (the Python API)

Every module under src/medsight is read with ``ast`` (imports at the top and inside functions;
relative imports resolved; imports under ``if TYPE_CHECKING:`` ignored, they do not run).
The test fails on an import from a lower layer to a higher one, on an import cycle between
packages, and on an import cycle between modules.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = "medsight"
SRC = Path(__file__).resolve().parents[1] / "src" / ROOT

LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "io", "utils", "errors", "privacy", "config", "metrics", "store", "tasks"),  # "": medsight/__init__.py (the version)
    ("data", "transforms"),
    ("models", "planning"),
    ("runtime",),
    ("training",),
    ("inference",),
    ("evaluation",),
    ("service", "pacs", "node", "cli", "cli_common", "cli_pacs", "cli_cache", "cli_audit", "cli_node", "cli_serve", "cli_pretrain", "cli_deid", "demo",
     "api"),
)
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS) for name in names}


@dataclass(frozen=True)
class Import:
    source: str  # importing module, dotted
    target: str  # imported module, dotted
    where: str  # file:line


def package_of(module: str) -> str:
    """``medsight.training.history`` -> ``training``; ``medsight.config`` -> ``config``; ``medsight`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_of(module: str) -> int:
    package = package_of(module)
    if package not in LAYER_OF:
        raise KeyError(f"{module}: package {package!r} has no layer; add it to LAYERS in tests/test_layers.py")
    return LAYER_OF[package]


def module_name(path: Path, src: Path = SRC) -> str:
    parts = [src.name, *path.relative_to(src).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import/ImportFrom node, skipping the bodies of ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def imports_of(source: str, module: str, is_package: bool, filename: str, known: set[str]) -> list[Import]:
    """The medsight modules that ``module`` (its text ``source``) imports.

    ``from a.b import c`` names module ``a.b.c`` when that is a module in ``known``, else ``a.b``.
    """
    found = []
    nodes = sorted(_import_nodes(ast.parse(source, filename=filename)), key=lambda n: (n.lineno, n.col_offset))
    for node in nodes:
        where = f"{filename}:{node.lineno}"
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join(package + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        for target in targets:
            imp = Import(module, target, where)
            if (target == ROOT or target.startswith(ROOT + ".")) and imp not in found:
                found.append(imp)
    return found


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components of more than one node (or a node that imports itself)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def violations(imports: list[Import]) -> list[str]:
    """Upward imports, then cycles between packages, then cycles between modules; one line each."""
    problems = []
    for imp in imports:
        if layer_of(imp.target) > layer_of(imp.source):
            problems.append(f"{imp.where}: upward import {imp.source} (layer {layer_of(imp.source)}) -> "
                            f"{imp.target} (layer {layer_of(imp.target)})")
    for kind, key in (("packages", package_of), ("modules", lambda m: m)):
        graph: dict[str, set[str]] = {}
        edges: dict[tuple[str, str], list[str]] = {}
        for imp in imports:
            a, b = key(imp.source), key(imp.target)
            if a == b or (kind == "modules" and imp.source.startswith(imp.target + ".")):
                continue  # within one package / a module importing its own package (its __init__)
            graph.setdefault(a, set()).add(b)
            if imp.where not in edges.setdefault((a, b), []):
                edges[(a, b)].append(imp.where)
        for component in _strongly_connected(graph):
            members = set(component)
            lines = [f"  {a} -> {b}: {', '.join(wheres)}"
                     for (a, b), wheres in sorted(edges.items()) if a in members and b in members]
            problems.append(f"cycle between {kind} {', '.join(component)}:\n" + "\n".join(lines))
    return problems


def package_imports(src: Path = SRC) -> list[Import]:
    files = sorted(src.rglob("*.py"))
    known = {module_name(path, src) for path in files}
    found = []
    for path in files:
        found += imports_of(path.read_text(encoding="utf-8"), module_name(path, src), path.name == "__init__.py",
                            str(path.relative_to(src.parents[1])), known)
    return found


def test_layers_run_one_way():
    found = package_imports()
    assert len(found) > 100, "the checker found almost no imports: is it reading the package?"
    problems = violations(found)
    assert not problems, f"{len(problems)} layer violation(s):\n" + "\n".join(problems)


def test_every_package_has_a_layer():
    packages = {package_of(module_name(path)) for path in SRC.rglob("*.py")}
    assert packages - set(LAYER_OF) == set()


# ---- the checker itself, on a fake package ----

def _fake(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "src" / ROOT
    for name, text in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return src


def test_checker_finds_an_upward_import_and_a_cycle(tmp_path):
    src = _fake(tmp_path, {
        "__init__.py": "",
        "io/__init__.py": "",
        "io/read.py": "def f():\n    from medsight.training.trainer import x\n",  # upward, in a function
        "utils/__init__.py": "",
        "utils/a.py": "import medsight.errors\n",
        "errors.py": "from medsight.utils import a\n",  # same layer, a cycle with utils/a.py
        "training/__init__.py": "",
        "training/trainer.py": "from ..io import read\nx = 1\n",  # relative, downward: fine
        "runtime/__init__.py": "",
        "runtime/typed.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                            "    from medsight.training import trainer\n",  # ignored
    })
    problems = violations(package_imports(src))
    assert any(p.startswith("src/medsight/io/read.py:2: upward import medsight.io.read (layer 0) -> "
                            "medsight.training.trainer (layer 4)") for p in problems), problems
    assert any(p.startswith("cycle between packages errors, utils") and "src/medsight/errors.py:1" in p
               for p in problems), problems
    assert any(p.startswith("cycle between modules medsight.errors, medsight.utils.a") for p in problems)
    # io <-> training is a package cycle too (io.read up, trainer down); runtime imports nothing that runs
    assert any(p.startswith("cycle between packages io, training") for p in problems), problems
    assert not any("runtime" in p for p in problems), problems
    assert len(problems) == 5, problems


def test_relative_imports_resolve_in_packages_and_modules():
    known = {"medsight.a", "medsight.a.b", "medsight.a.c", "medsight.d"}
    in_init = imports_of("from . import b\nfrom .. import d\n", "medsight.a", True, "a/__init__.py", known)
    assert [i.target for i in in_init] == ["medsight.a.b", "medsight.d"]
    in_module = imports_of("from .c import x\nfrom ..d import y\n", "medsight.a.b", False, "a/b.py", known)
    assert [i.target for i in in_module] == ["medsight.a.c", "medsight.d"]


@pytest.mark.parametrize("module, layer", [("medsight.config", 0), ("medsight.io.read", 0),
                                           ("medsight.training.history", 4), ("medsight", 0),
                                           ("medsight.demo", 7)])
def test_layer_of(module, layer):
    assert layer_of(module) == layer


def test_every_import_of_a_medsight_name_resolves():
    """Imports inside functions run only when called; a moved name must not wait for that."""
    import importlib

    missing = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("medsight"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    if not hasattr(module, alias.name):
                        try:
                            importlib.import_module(f"{node.module}.{alias.name}")
                        except ImportError:
                            missing.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: {node.module}.{alias.name}")
    assert not missing, "names imported but not defined:\n" + "\n".join(missing)
