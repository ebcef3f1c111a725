"""The import structure: one-way dependencies between packages and no import cycles.

Every import counts, including those inside functions (an import moved into a function hides
a cycle from Python, not from a reader). The checks run on the source with `ast`, so they
cover modules whose dependencies (TensorFlow, Faust) are not importable here.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]

# Which top-level parts of the project each part may import (besides itself). Anything not
# listed is an upward or sideways import. `recloop.cli` and the process wiring sit on top.
ALLOWED: dict[str, set[str]] = {
    "recloop": set(),
    "recloop.core": set(),
    "recloop.models": set(),
    "recloop.models.runtime": {"recloop.core"},
    "recloop.models.data": {"recloop.core", "recloop.models.runtime"},
    "recloop.models.evaluate": {
        "recloop.core",
        "recloop.models.runtime",
        "recloop.models.data",
        "recloop.models.metrics",
    },
    "recloop.models.metrics": set(),
    "recloop.models.train": {
        "recloop.core",
        "recloop.models.runtime",
        "recloop.models.data",
        "recloop.models.evaluate",
        "recloop.models.metrics",
    },
    "recloop.models.fidelity": {
        "recloop.core",
        "recloop.models.data",
        "recloop.models.metrics",
        "recloop.models.runtime",
    },
    "recloop.streams": {"recloop.core", "recloop.models.runtime"},
    "recloop.simulator": {"recloop.core", "recloop.models.runtime", "recloop.models.data"},
    "recloop.brokers": {"recloop.core"},
    "recloop.processes": {"recloop.core"},
    "recloop.cli": {"*"},
    "recloop.__main__": {"recloop.cli"},
}
# Only training code may import TensorFlow (and its exporters).
TRAINING_ONLY = {"tensorflow", "keras", "tf2onnx"}
TRAINING_PARTS = {"recloop.models.train"}


def module_files() -> dict[str, Path]:
    """Every project module, by its installed dotted name."""
    modules: dict[str, Path] = {}
    for package, directory in PACKAGE_DIR.items():
        base = ROOT / directory
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            name = ".".join([package, *parts])
            # recloop/ is mapped as a whole; its mapped children are found under their own dirs.
            if any(
                name.startswith(f"{other}.") or name == other
                for other in PACKAGE_DIR
                if other != package and other.startswith(f"{package}.")
            ):
                continue
            modules[name] = path
    return modules


def imports_of(path: Path, module: str) -> Iterable[str]:
    """The absolute names a module imports, anywhere in its body."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            yield prefix
            for alias in node.names:
                yield f"{prefix}.{alias.name}"


def resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name refers to (the longest known prefix)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def graph() -> dict[str, set[str]]:
    modules = module_files()
    edges: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {resolve(n, modules) for n in imports_of(path, module)}
        edges[module] = {t for t in targets if t and t != module and not module.startswith(f"{t}.")}
    return edges


def part_of(module: str) -> str:
    """The ALLOWED key a module belongs to (the longest matching prefix)."""
    keys = sorted(ALLOWED, key=len, reverse=True)
    for key in keys:
        if module == key or module.startswith(f"{key}."):
            return key
    raise AssertionError(f"{module} belongs to no part in ALLOWED; add it there")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def upward(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for module, targets in sorted(edges.items()):
        mine = part_of(module)
        allowed = ALLOWED[mine]
        for target in sorted(targets):
            theirs = part_of(target)
            if theirs != mine and "*" not in allowed and theirs not in allowed:
                bad.append(f"{module} -> {target} ({mine} may import only {sorted(allowed)})")
    return bad


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


def test_dependencies_point_one_way() -> None:
    assert upward(graph()) == []


def test_core_imports_nothing_else_of_the_project() -> None:
    edges = graph()
    core = {m: t for m, t in edges.items() if m.startswith("recloop.core")}
    assert core, "recloop.core not found"
    assert all(t.startswith("recloop.core") for targets in core.values() for t in targets)


def test_tensorflow_only_in_training_code() -> None:
    modules = module_files()
    offenders = [
        f"{module} imports {name}"
        for module, path in modules.items()
        if part_of(module) not in TRAINING_PARTS
        for name in imports_of(path, module)
        if name.split(".")[0] in TRAINING_ONLY
    ]
    assert offenders == []


def test_no_plain_top_level_imports_of_project_directories() -> None:
    """`models`, `streams` and `simulator` install as `recloop.*`; a plain import would break."""
    plain = {"models", "streams", "simulator"}
    offenders = []
    for path in [
        *ROOT.glob("recloop/**/*.py"),
        *ROOT.glob("tests/**/*.py"),
        *ROOT.glob("scripts/*.py"),
        *(ROOT / d for d in ()),
    ]:
        for name in imports_of(path, "tests.x"):
            if name.split(".")[0] in plain:
                offenders.append(f"{path.relative_to(ROOT)}: {name}")
    for directory in ("models", "streams", "simulator", "grafana"):
        for path in (ROOT / directory).rglob("*.py"):
            for name in imports_of(path, "recloop.x"):
                if name.split(".")[0] in plain:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


def test_pyproject_lists_every_package() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {m for m, p in module_files().items() if p.name == "__init__.py"}
    assert listed == on_disk


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set()}, []),
    ],
)
def test_the_cycle_check_finds_a_cycle(edges: dict[str, set[str]], expected: list) -> None:
    assert cycles(edges) == expected


def test_the_direction_check_finds_an_upward_import() -> None:
    edges = {"recloop.core.contract": {"recloop.streams.app"}, "recloop.streams.app": set()}
    assert upward(edges) == [
        "recloop.core.contract -> recloop.streams.app (recloop.core may import only [])"
    ]
