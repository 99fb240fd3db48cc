"""The layout ARCHITECTURE.md describes, held by the code: layers, no import cycles, one public seam.

The import graph is read from the source with ``ast`` (every import, at module level or inside a
function; imports under ``if TYPE_CHECKING:`` are left out, they never run), over the folders
pyproject.toml maps into the ``zoo`` package. A third-party import-graph tool would not do here:
they walk the installed ``zoo`` folder and miss ``stages/`` and ``cli/``, which are mapped in.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from conftest import REPO

# Lowest first: a module may import its own package and anything in a lower layer, never a higher one.
LAYERS = [
    ("foundation", ["zoo.errors", "zoo.config", "zoo.log", "zoo.version", "zoo.lazy", "zoo.java"]),
    ("plugins", ["zoo.plugins"]),
    ("conformance kit", ["zoo.testing"]),  # reaches stages only through the plugin registry
    ("hub", ["zoo.hub"]),
    ("cluster", ["zoo.cluster"]),
    ("runtime", ["zoo.runtime", "zoo.lineage"]),  # lineage: the provenance records the stages write
    ("stages", ["zoo.stages"]),
    ("pipelines and checks", ["zoo.pipelines", "zoo.doctor", "zoo.incremental", "zoo.consistency"]),
    ("the public API", ["zoo"]),  # the package itself: names load lazily from the layers below
    ("command line", ["zoo.cli"]),
]


def _package_dirs() -> dict[str, Path]:
    """``{package: folder}`` from pyproject.toml, the one place the layout is written down."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: REPO / folder for name, folder in config["package-dir"].items()}


def _modules() -> dict[str, Path]:
    """Every module of the ``zoo`` package, named as it is imported, with its file."""
    roots = sorted(_package_dirs().items(), key=lambda kv: -len(kv[0]))
    found: dict[str, Path] = {}
    for package, folder in roots:
        for path in folder.rglob("*.py"):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join([package, *parts])
            found.setdefault(name, path)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``zoo`` that module ``name`` imports."""
    is_package = path.name == "__init__.py"
    tree = ast.parse(path.read_text(), str(path))
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skipped |= {id(n) for child in node.body for n in ast.walk(child)}
    out: set[str] = set()

    def known(target: str) -> str | None:
        while target and target not in modules:
            target = target.rpartition(".")[0]
        return target or None

    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        for target in targets:
            resolved = known(target) if target.startswith("zoo") else None
            if resolved and resolved != name:
                out.add(resolved)
    return out


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _layer(module: str) -> int:
    best, rank = "", -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, rank = prefix, i
    return rank


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
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
        for w in graph.get(v, ()):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_layout_is_read_from_pyproject_and_covers_every_folder():
    modules = _modules()
    assert {"zoo.hub.cache", "zoo.runtime.sessions", "zoo.stages.image_featurizer", "zoo.stages.workers.images",
            "zoo.cli.main", "zoo.plugins.stage_registry", "zoo.testing.tiny"} <= set(modules)
    assert [m for m in modules if _layer(m) < 0] == [], "every module belongs to a layer of ARCHITECTURE.md"


def test_the_graph_reader_sees_imports_inside_functions():
    graph = _graph()
    assert "zoo.stages.workers.images" in graph["zoo.stages.image_featurizer"]  # imported inside _apply
    assert "zoo.runtime.jvm_functions" in graph["zoo.stages.image_featurizer"]  # at module level
    assert "zoo.hub.api" not in graph["zoo"]  # only under TYPE_CHECKING (the package loads it lazily)


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_a_planted_cycle_would_be_found():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_import_goes_down_the_layers():
    wrong = [f"{module} ({LAYERS[_layer(module)][0]}) imports {target} ({LAYERS[_layer(target)][0]})"
             for module, targets in _graph().items() for target in sorted(targets) if _layer(target) > _layer(module)]
    assert wrong == []


def test_stages_and_the_cli_import_only_public_modules():
    private = [f"{module} imports {target}" for module, targets in _graph().items()
               if module.startswith(("zoo.stages", "zoo.cli")) for target in sorted(targets)
               if any(part.startswith("_") for part in target.split("."))]
    assert private == []
    # the issue's own check, word for word
    grep = subprocess.run(["grep", "-rnE", r"zoo\._|from zoo\.[a-z_.]*\._", "stages", "cli"], cwd=REPO,
                          capture_output=True, text=True)
    assert grep.returncode == 1 and grep.stdout == "", grep.stdout


def test_pipeline_imports_the_stage_classes_it_builds():
    assert {"zoo.stages.image_featurizer", "zoo.stages.image_augmenter",
            "zoo.stages.group_average"} <= _graph()["zoo.pipelines"]


def test_the_version_is_written_once():
    text = (REPO / "zoo" / "version.py").read_text()
    version = re.search(r'__version__ = "([^"]+)"', text).group(1)
    hits = subprocess.run(["grep", "-rn", "--include=*.py", "--include=*.toml", "-F", version, "zoo", "stages", "cli",
                           "pyproject.toml"], cwd=REPO, capture_output=True, text=True).stdout.splitlines()
    assert [h for h in hits if not h.startswith("zoo/version.py:")] == []
    import zoo

    assert zoo.__version__ == version
    done = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('sparkzoo'))"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == version


def test_no_assert_checks_input_in_library_code():
    """``python -O`` strips asserts: a check that guards input must raise a ZooError instead."""
    found = []
    for path in [*(REPO / "zoo").rglob("*.py"), *(REPO / "stages").rglob("*.py"), *(REPO / "cli").rglob("*.py")]:
        found += [f"{path.relative_to(REPO)}:{n.lineno}" for n in ast.walk(ast.parse(path.read_text()))
                  if isinstance(n, ast.Assert)]
    assert found == []
