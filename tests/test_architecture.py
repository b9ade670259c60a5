"""The package's shape, read from the source alone (``ast``: nothing is imported, so it is fast).

    (a) no import cycle between the modules of ``stages/``: the graph holds every import,
        at the top of a module, inside functions (a lazy import hides a cycle, it does not
        remove it) AND under ``if TYPE_CHECKING:`` (a circle of types is still a circle), ``from stages.x import y`` counting as an import of ``stages.x.y`` when y is
        a submodule, and an import of ``stages.a.b`` from outside ``stages.a`` counting as one of
        the package ``stages.a`` too (Python runs ``stages/a/__init__.py`` first);
    (b) no module (of ``stages/``, ``tests/`` or ``benchmarks/``) imports an underscore-prefixed
        name from a module of ``stages``: what another module needs gets a public name and home;
    (c) no module or package of ``stages/`` is named like a generic "utils" / "helpers": a reader
        finds a concept by its name (house style, principle 1);
    (d) the layers go one way (``LAYERS``, bottom first): a module imports its own layer and the
        layers below, never one above; among the stages, only earlier generations; and
        ``training/``, ``ops/`` and ``data/`` import no stage, no figure and no evaluation code.

A failure prints what to fix: the cycle as a chain of modules, the file and line of each import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "stages"


def module_name(path: Path, root: Path = ROOT) -> str:
    """``stages/ops/nms.py`` -> ``stages.ops.nms``; ``stages/ops/__init__.py`` -> ``stages.ops``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def find_modules(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """``{module name: file}`` for every module of ``package`` under ``root``."""
    return {module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def resolve_from(node: ast.ImportFrom, importer: str, importer_is_package: bool) -> str:
    """The absolute module of ``from <module> import ...``, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    package = importer.split(".") if importer_is_package else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, root: Path = ROOT, package: str = PACKAGE):
    """Every import of a file, anywhere in it: ``(module, names imported from it, line)``.

    ``import a.b`` -> ``("a.b", [], line)``; ``from a import b, c`` -> ``("a", ["b", "c"], line)``.
    """
    tree = parse(path)
    inside = path.is_relative_to(root / package)
    name = module_name(path, root) if inside else path.stem
    for node in ast.walk(tree):  # under ``if TYPE_CHECKING:`` too: a type-only circle is a circle
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            module = resolve_from(node, name, is_package(path)) if inside else (node.module or "")
            yield module, [alias.name for alias in node.names], node.lineno


def ancestors(module: str) -> list[str]:
    """``stages.a.b`` -> ``["stages", "stages.a"]``."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> dict[str, dict[str, int]]:
    """``{module: {imported module of the package: first line}}`` for each of its modules."""
    modules = find_modules(root, package)
    graph: dict[str, dict[str, int]] = {}
    for importer, path in modules.items():
        edges = graph.setdefault(importer, {})
        own_packages = set(ancestors(importer)) | ({importer} if is_package(path) else set())
        for module, names, line in imports(path, root, package):
            targets = [f"{module}.{n}" if f"{module}.{n}" in modules else module for n in names]
            for target in targets or [module]:
                if target not in modules:
                    continue  # not ours: torch, numpy, ...
                # the packages Python initialises on the way, except those the importer is in
                for t in [a for a in ancestors(target) if a not in own_packages] + [target]:
                    if t != importer and t in modules:
                        edges.setdefault(t, line)
    return graph


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle ``[m0, m1, ..., m0]`` per strongly connected component (Tarjan's algorithm)."""
    index, low, on_stack, stack, components = {}, {}, set(), [], []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
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
                components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for component in components:  # a shortest way back to the start, inside the component
        start = min(component)
        paths, seen = {start: [start]}, {start}
        queue = [start]
        while queue:
            v = queue.pop(0)
            for w in sorted(graph[v]):
                if w == start:
                    cycles.append(paths[v] + [start])
                    queue = []
                    break
                if w in component and w not in seen:
                    seen.add(w)
                    paths[w] = paths[v] + [w]
                    queue.append(w)
    return cycles


def describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    """Each step of a cycle with the file and line of its import."""
    modules = find_modules()
    return "\n    ".join(f"{a} -> {b}  ({modules[a].relative_to(ROOT)}:{graph[a][b]})"
                         for a, b in zip(cycle, cycle[1:]))


# ------------------------------------------------------------------------------------------------
# the checker itself, on worked examples
# ------------------------------------------------------------------------------------------------

def test_find_cycles_worked_example():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1, "d": 1}, "d": {}, "e": {"d": 1}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b": 1}, "b": {}}) == []


def test_the_graph_sees_lazy_relative_and_submodule_imports(tmp_path):
    files = {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from pkg.sub import b  # lazy, and b is a submodule\n",
        "pkg/sub/__init__.py": "from pkg.sub.b import g\n",
        "pkg/sub/b.py": "import numpy\nfrom ..c import h  # relative: pkg.c\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import sub\n"
                    "from pkg.a import f\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = import_graph(tmp_path, "pkg")
    assert graph["pkg.a"] == {"pkg.sub": 2, "pkg.sub.b": 2}  # b's package __init__ runs first
    assert graph["pkg.sub.b"] == {"pkg.c": 2}  # not pkg.sub: b is inside it; numpy is not ours
    assert graph["pkg.c"] == {"pkg.sub": 3, "pkg.a": 4}  # a type-only import counts too
    assert find_cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]  # one cycle per component


# ------------------------------------------------------------------------------------------------
# the checks
# ------------------------------------------------------------------------------------------------

def test_no_import_cycle_in_stages():
    graph = import_graph()
    cycles = find_cycles(graph)
    assert not cycles, "import cycles (break each one: move what both need to a third module):\n" + \
        "\n".join(f"  {' -> '.join(c)}\n    {describe(c, graph)}" for c in cycles)


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def test_no_module_imports_a_private_name_of_stages():
    files = [p for folder in ("stages", "tests", "benchmarks") for p in sorted((ROOT / folder).rglob("*.py"))]
    found = []
    for path in files:
        for module, names, line in imports(path):
            if module != PACKAGE and not module.startswith(PACKAGE + "."):
                continue
            private = [n for n in names if is_private(n)]
            private += [part for part in module.split(".") if is_private(part)]
            if private:
                found.append(f"{path.relative_to(ROOT)}:{line}: {', '.join(private)} from {module}")
    assert not found, "private names imported across modules (give them a public name and home):\n  " + \
        "\n  ".join(found)


GENERIC = re.compile(r"(^|_)(utils?|utilities|helpers?|misc)($|_)")


def test_no_generic_utils_module_in_stages():
    generic = [str(p.relative_to(ROOT)) for p in sorted((ROOT / PACKAGE).rglob("*"))
               if (p.is_dir() or p.suffix == ".py") and GENERIC.search(p.stem)]
    assert not generic, f"modules named like a grab-bag (name them after their concept): {generic}"


# ------------------------------------------------------------------------------------------------
# (d) the layers, bottom first: the package map of the code
# ------------------------------------------------------------------------------------------------

LAYERS = (
    # generic, below everything: box ops and lesson ops, the dataset item, atomic files, --device,
    # config dataclasses <-> command-line flags
    ("foundations", ("stages.ops", "stages.data", "stages.files", "stages.devices", "stages.flags")),
    # what every stage shares: the CNN, selective search, the one evaluator, the one training loop,
    # the training recipe, the drawing helpers (``figures/__init__`` imports nothing)
    ("shared", ("stages.backbone", "stages.selective_search", "stages.evaluation", "stages.training",
                "stages.recipe", "stages.figures", "stages.figures.draw")),
    # the four generations, each the previous one plus its paper's change (GENERATIONS)
    ("stages", ("stages.rcnn", "stages.fast_rcnn", "stages.faster_rcnn", "stages.mask_rcnn")),
    # a stage command's life: prepare, train or restore, evaluate and save
    ("running", ("stages.run",)),
    # torchvision's tutorial path and the peers on our backbone
    ("torchvision", ("stages.torchvision",)),
    # what users run on top: each stage's command (``__main__``) and run_stage() over them, a
    # trained run read back (any stage, torchvision's path too), the comparison, predictions, the
    # error table, the lecture figures, the notebooks' helpers
    ("commands", ("stages", "stages.__main__", "stages.run_stage", "stages.trained_run", "stages.compare",
                  "stages.compare_report", "stages.compare_reuse", "stages.predict", "stages.errors",
                  "stages.notebook", "stages.mask_rcnn.ablation",
                  *(f"stages.figures.{m}" for m in ("__main__", "common", "rcnn", "fast_rcnn",
                                                    "faster_rcnn", "mask_rcnn", "evaluation",
                                                    "comparison", "diagrams", "gallery",
                                                    "dataset_preview")))),
)
GENERATIONS = ("stages.rcnn", "stages.fast_rcnn", "stages.faster_rcnn", "stages.mask_rcnn")
LOW = ("stages.training", "stages.ops", "stages.data")  # generic: no stage, figure or evaluation
NOT_BELOW_LOW = GENERATIONS + ("stages.figures", "stages.evaluation")


def owner(module: str, prefixes) -> str | None:
    """The longest prefix of ``prefixes`` that ``module`` is or lies inside, or None."""
    hits = [p for p in prefixes if module == p or module.startswith(p + ".")]
    return max(hits, key=len) if hits else None


def layer_of(module: str) -> int:
    """The index in ``LAYERS`` of a module; a stage's command (``__main__``) is a command."""
    if module.endswith(".__main__"):
        return len(LAYERS) - 1
    prefixes = {p: i for i, (_, ps) in enumerate(LAYERS) for p in ps}
    return prefixes[owner(module, prefixes)]


def layer_violations(graph: dict[str, dict[str, int]]) -> list[str]:
    found = []
    for importer, edges in sorted(graph.items()):
        for target, line in sorted(edges.items()):
            why = None
            if layer_of(target) > layer_of(importer):
                why = (f"{LAYERS[layer_of(importer)][0]} imports {LAYERS[layer_of(target)][0]}, "
                       "a layer above it")
            elif owner(importer, LOW) and owner(target, NOT_BELOW_LOW):
                why = f"{owner(importer, LOW)} is generic: it imports no stage, figure or evaluation"
            elif (owner(importer, GENERATIONS) and owner(target, GENERATIONS)
                  and not importer.endswith(".__main__") and GENERATIONS.index(owner(target, GENERATIONS))
                  > GENERATIONS.index(owner(importer, GENERATIONS))):
                why = "a stage imports only earlier generations"
            if why:
                found.append(f"{importer} -> {target} (line {line}): {why}")
    return found


def test_every_module_has_a_layer():
    unplaced = []
    for module in find_modules():
        try:
            layer_of(module)
        except KeyError:
            unplaced.append(module)
    assert not unplaced, f"modules in no layer of LAYERS (place each one): {unplaced}"


def test_the_layer_rule_worked_example():
    graph = {"stages.ops.nms": {"stages.evaluation.coco": 3},       # foundations -> shared: up
             "stages.training.engine": {"stages.evaluation": 9},     # a generic layer -> evaluation
             "stages.fast_rcnn.model": {"stages.mask_rcnn.fpn": 5},  # a later generation
             "stages.mask_rcnn.model": {"stages.fast_rcnn.head": 7, "stages.ops.boxes": 2},
             "stages.compare": {"stages.run": 1}}
    found = layer_violations(graph)
    assert [f.split(" (")[0] for f in found] == ["stages.fast_rcnn.model -> stages.mask_rcnn.fpn",
                                                  "stages.ops.nms -> stages.evaluation.coco",
                                                  "stages.training.engine -> stages.evaluation"]


def test_layers_go_one_way():
    found = layer_violations(import_graph())
    assert not found, "imports against the layers (LAYERS, bottom first):\n  " + "\n  ".join(found)
