"""The package's shape: imports flow one way through the layers, no cycles, small files and functions.

Every module's imports are read with `ast` (nothing is imported). An import counts where it runs:
at module level or inside a function; imports under `if TYPE_CHECKING:` (annotations only) do not.
Importing `a.b.c` also runs the `__init__` of `a.b` when that package has imports of its own.

The layers, lowest first (docs/architecture.md says what each owns). A module may import its
own package and anything in a lower layer; packages that share a layer never import each other.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "polyformer"
ROOT = "polyformer"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors", ("polyformer.errors",)),
    ("runtime", ("polyformer.runtime",)),
    ("config", ("polyformer.config",)),
    ("core", ("polyformer.core",)),
    ("heads, precision", ("polyformer.heads", "polyformer.precision", "polyformer.quantized")),
    ("models", ("polyformer.models",)),
    ("file formats", ("polyformer.gguf_file", "polyformer.data.debian")),
    ("catalog", ("polyformer.data.catalog",)),
    ("locations", ("polyformer.locations",)),
    ("tokenizers", ("polyformer.tokenizers",)),
    ("io, data", ("polyformer.io", "polyformer.data")),
    ("generation, training", ("polyformer.generation", "polyformer.training")),
    ("embeddings, tasks", ("polyformer.embeddings", "polyformer.tasks")),
    ("public API", ("polyformer.task_pipelines", ROOT)),
    ("server, compare, bench", ("polyformer.server", "polyformer.compare", "polyformer.bench")),
    ("cli", ("polyformer.cli",)),
]

# Deferred imports (inside a function) that go up a layer on purpose, with the reason.
UPWARD_BY_DESIGN = {
    ("polyformer.models", "polyformer.generation.decoding"):
        "model.generate(), the transformers-style convenience, hands the request to the generation "
        "layer; nothing in generation imports models at run time, so there is no cycle",
}

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    deferred: bool  # inside a function: runs when called, not when the module is imported
    through: str = ""  # for a package `__init__` run on the way: the module the statement names


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(node: ast.Import | ast.ImportFrom, source: str) -> list[str]:
    """The polyformer modules an import statement runs (a `from m import name` names a module when one exists)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = source if MODULES[source].name == "__init__.py" else source.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}" if base else package
        names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
    return [name for name in names if name == ROOT or name.startswith(ROOT + ".")]


def _edges_of(source: str) -> list[Edge]:
    edges: list[Edge] = []

    def visit(node: ast.AST, deferred: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for branch in child.orelse:
                    visit(branch, deferred)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                visit(child, True)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                edges.extend(Edge(source, target, child.lineno, deferred) for target in _imported(child, source))
            else:
                visit(child, deferred)

    visit(ast.parse(MODULES[source].read_text(encoding="utf-8")), False)
    return edges


def _runs_imports(package: str) -> bool:
    """Whether importing something inside `package` runs imports of its `__init__`."""
    path = MODULES.get(package)
    return path is not None and path.name == "__init__.py" and bool(_edges_of(package))


def edges() -> list[Edge]:
    """Every import edge, plus the package `__init__`s an import runs on the way to its target."""
    found: list[Edge] = []
    for source in MODULES:
        for edge in _edges_of(source):
            found.append(edge)
            parts = edge.target.split(".")
            for end in range(2, len(parts)):
                package = ".".join(parts[:end])
                inside = source == package or source.startswith(package + ".")
                if not inside and _runs_imports(package):
                    found.append(Edge(source, package, edge.line, edge.deferred, edge.target))
    return [edge for edge in found if edge.target != edge.source]


def layer_of(module: str) -> tuple[int, str]:
    """(layer index, the layer entry that holds the module): the longest entry naming it or a package above it."""
    best: tuple[int, str] | None = None
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            holds = module == entry or (entry != ROOT and module.startswith(entry + "."))
            if holds and (best is None or len(entry) > len(best[1])):
                best = (index, entry)
    if best is None:
        pytest.fail(f"{module} is in no layer: add it (or its package) to LAYERS here and to docs/architecture.md")
    return best


def test_every_module_is_in_a_layer():
    for module in MODULES:
        layer_of(module)


def test_imports_flow_down_the_layers():
    wrong = []
    for edge in edges():
        (source_layer, source_entry), (target_layer, target_entry) = layer_of(edge.source), layer_of(edge.target)
        upward = target_layer > source_layer or (target_layer == source_layer and target_entry != source_entry)
        if upward and not (edge.deferred and _by_design(edge)):
            wrong.append(f"{edge.source}:{edge.line} imports {edge.target} "
                         f"({LAYERS[source_layer][0]} → {LAYERS[target_layer][0]})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for edge in edges():
        if not _by_design(edge):
            graph[edge.source].add(edge.target)
    cycles = _cycles(graph)
    assert not cycles, "modules that import each other (directly or around a ring):\n" + "\n".join(
        ", ".join(cycle) for cycle in cycles)


def _by_design(edge: Edge) -> bool:
    return (edge.source, edge.through or edge.target) in UPWARD_BY_DESIGN


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def test_the_upward_exceptions_are_still_needed():
    present = {(edge.source, edge.target) for edge in edges() if edge.deferred}
    assert set(UPWARD_BY_DESIGN) <= present, "an exception in UPWARD_BY_DESIGN no longer happens: remove it"


def test_the_layer_check_catches_what_it_is_for():
    """The checker itself: an upward import and a two-module cycle in made-up code are found."""
    tree = ast.parse("from polyformer.cli.main import app\n")
    node = tree.body[0]
    assert isinstance(node, ast.ImportFrom) and _imported(node, "polyformer.core.block") == ["polyformer.cli.main"]
    assert layer_of("polyformer.core.block")[0] < layer_of("polyformer.cli.main")[0]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]


def test_files_stay_under_the_line_limit():
    long = {name: n for name, path in MODULES.items() if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert not long, f"modules over {MAX_FILE_LINES} lines: {long}"


def test_functions_stay_under_the_line_limit():
    long = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1  # decorators excluded, docstring included
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} ({length} lines, from line {node.lineno})")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long)
