"""The layout's rules, checked on the source: one package per stage, imports only flow downstream.

Stages in flow order: ingest -> features -> index -> ranking -> evaluation | service -> cli. A module
may import the modules of its own stage and of the stages before it (and the shared
``exceptions``, ``defaults``, ``_version``), never a later stage; imports under
``if TYPE_CHECKING:`` are for type checkers and do not count. No two modules import each other,
directly or through others, wherever the import statement stands (module level or in a function).
"""

import ast
import pickle
import warnings
from pathlib import Path

import pytest

import similarity
from similarity._deprecated import ALIASES

PACKAGE = Path(similarity.__file__).parent

STAGES = {
    "similarity.exceptions": 0,
    "similarity.defaults": 0,
    "similarity._version": 0,
    "similarity._deprecated": 0,
    "similarity.ingest": 1,
    "similarity.features": 2,
    "similarity.index": 3,
    "similarity.ranking": 4,
    "similarity.evaluation": 5,
    "similarity.service": 5,
    "similarity.cli": 6,
}
"""Stage of each top-level module or package; the package root sits above all."""

TOP = {"similarity"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports anywhere, TYPE_CHECKING blocks aside."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                for stmt in child.orelse:
                    visit_one(stmt)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            found.update(subs)
            if target in modules and len(subs) < len(node.names):
                found.add(target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in modules)
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _stage(name: str) -> float:
    if name in TOP:
        return float("inf")
    for prefix, stage in STAGES.items():
        if name == prefix or name.startswith(prefix + "."):
            return stage
    raise AssertionError(f"{name} belongs to no stage: add it to a stage package (or to STAGES)")


def _top(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_every_module_belongs_to_a_stage():
    for name in _modules():
        _stage(name)


def test_imports_only_flow_downstream():
    wrong = []
    for name, deps in _graph().items():
        for dep in deps:
            same_stage_package = _top(dep) == _top(name)
            if not same_stage_package and _stage(dep) >= _stage(name):
                wrong.append(f"{name} imports {dep}")
    assert not wrong, "imports against the flow:\n" + "\n".join(sorted(wrong))


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_flow_check_sees_function_level_imports(tmp_path):
    source = tmp_path / "similarity" / "index" / "thing.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from ..ranking import Ranker\n\nif TYPE_CHECKING:\n    from ..service import app\n")
    modules = {"similarity.index.thing": source, "similarity.ranking": source, "similarity.service.app": source}
    assert _imports("similarity.index.thing", source, modules) == {"similarity.ranking"}


@pytest.mark.parametrize(
    "old, name, new",
    [
        ("similarity.rank", "Ranker", similarity.Ranker),
        ("similarity.rank", "Filters", similarity.Filters),
        ("similarity.blend", "FusionBlend", similarity.FusionBlend),
        ("similarity.featurize", "StructuredFeaturizer", similarity.StructuredFeaturizer),
        ("similarity.loaders.sources", "load_trials", similarity.load_trials),
        ("similarity.backends", "make_backend", None),
        ("similarity.selection", "nested_cross_validation", None),
    ],
)
def test_old_module_paths_import_with_a_deprecation_warning(old, name, new):
    import importlib
    import sys

    for loaded in [m for m in sys.modules if m == old or m.startswith(old.split(".")[0] + "." + old.split(".")[1])]:
        if loaded in ALIASES:
            sys.modules.pop(loaded)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        module = importlib.import_module(old)
    value = getattr(module, name)
    assert new is None or value is new
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        module.nothing_here


def test_encoders_pickled_under_the_old_paths_still_load():
    featurizer = similarity.StructuredFeaturizer(["phase"]).fit([["PHASE1"], ["PHASE2"]])
    data = pickle.dumps(featurizer, protocol=2).replace(b"similarity.features.structured", b"similarity.featurize")
    assert b"similarity.featurize" in data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = pickle.loads(data)
    assert type(loaded) is similarity.StructuredFeaturizer
    assert (loaded.transform([["PHASE2"]]) != featurizer.transform([["PHASE2"]])).nnz == 0
