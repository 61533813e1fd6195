"""The layer map of CONTRIBUTING.md, checked on the source: imports point down only, and no cycles.

Every ``import`` and ``from ... import`` in the project's packages counts, the ones inside functions
too (a lazy import is still a dependency); only those under ``if TYPE_CHECKING:`` are left out. The
checker is tested on a small tree of its own first, so that it is known to catch what it looks for.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("audiotok", "codec", "tokenlm", "multimodal", "eval")

# (module prefix, group, layer). An import may go to a lower layer, or stay inside its own group.
# The longest matching prefix decides a module's group.
LAYERS = [
    ("codec.tokens", "codec-api", 0),  # the token API and audio I/O that everything speaks
    ("codec.audio", "codec-api", 0),
    ("codec.store", "codec-api", 0),
    ("codec.vocab", "codec-api", 0),
    ("codec.nn", "codec-nets", 1),  # codecs: ours and the pretrained adapters
    ("codec.pretrained", "codec-nets", 1),
    ("codec.registry", "codec-registry", 2),  # picks a codec by name or folder
    ("codec.pipeline", "codec-pipeline", 2),  # the file pipeline of `audiotok tokenize`
    ("codec.data", "codec-data", 2),  # the corpus builder: never the codec's network or training
    ("codec.train", "codec-train", 3),
    ("codec.cli", "codec-cli", 3),
    ("codec", "codec-init", 3),  # `from codec import X`: for the packages above, not for codec itself
    ("tokenlm", "tokenlm", 10),
    ("multimodal", "multimodal", 20),
    ("eval", "eval", 30),
    ("audiotok", "audiotok", 40),  # the command line's dispatcher imports every package
]


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, name: str, modules: set[str]) -> set[str]:
    """The project modules that the module ``name`` (file ``path``) imports, resolved to modules."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_lines(tree)
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub where there is one
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # `import codec.nn.model.X` -> codec.nn.model
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, set[str]]:
    files = {module_name(p, root): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    return {name: imports_of(path, name, set(files)) for name, path in files.items()}


def layer_of(module: str, layers: list[tuple[str, str, int]]) -> tuple[str, int]:
    matches = [(len(prefix), group, layer) for prefix, group, layer in layers
               if module == prefix or module.startswith(prefix + ".")]  # fmt: skip
    if not matches:
        raise AssertionError(f"{module} is in no layer of tests/test_layers.py; add it to LAYERS")
    _, group, layer = max(matches)
    return group, layer


def upward_imports(graph: dict[str, set[str]], layers: list[tuple[str, str, int]]) -> list[str]:
    problems = []
    for source, targets in sorted(graph.items()):
        group, layer = layer_of(source, layers)
        for target in sorted(targets):
            target_group, target_layer = layer_of(target, layers)
            if target_group != group and target_layer >= layer:
                problems.append(f"{source} ({group}, layer {layer}) imports {target} ({target_group}, "
                                f"layer {target_layer})")  # fmt: skip
    return problems


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first search (each reported once, from its smallest module)."""
    cycles: set[tuple[str, ...]] = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :]
                start = cycle.index(min(cycle))
                cycles.add(tuple(cycle[start:] + cycle[:start]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return [list(c) for c in sorted(cycles)]


# ------------------------------------------------------------------------------------ the checker itself
def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return import_graph(tmp_path, ("low", "high"))


TOY_LAYERS = [("low", "low", 0), ("high", "high", 1)]


def test_checker_finds_an_upward_import_even_inside_a_function(tmp_path):
    graph = _tree(tmp_path, {
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from high.b import g\n    return g\n",
        "high/__init__.py": "",
        "high/b.py": "from low import a\n\ndef g():\n    return a\n",
    })  # fmt: skip
    assert graph["low.a"] == {"high.b"} and graph["high.b"] == {"low.a"}
    assert upward_imports(graph, TOY_LAYERS) == ["low.a (low, layer 0) imports high.b (high, layer 1)"]
    assert import_cycles(graph) == [["high.b", "low.a"]]


def test_checker_ignores_type_checking_imports_and_resolves_relative_ones(tmp_path):
    graph = _tree(tmp_path, {
        "low/__init__.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from high import b\n",
        "low/a.py": "from . import c\nfrom .c import x\n",
        "low/c.py": "x = 1\n",
        "high/__init__.py": "",
        "high/b.py": "import low.a\n",
    })  # fmt: skip
    assert graph["low"] == set() and graph["low.a"] == {"low.c"} and graph["high.b"] == {"low.a"}
    assert upward_imports(graph, TOY_LAYERS) == [] and import_cycles(graph) == []


def test_checker_rejects_a_module_outside_every_layer(tmp_path):
    graph = _tree(tmp_path, {"low/__init__.py": "", "high/__init__.py": "", "high/x.py": ""})
    with pytest.raises(AssertionError, match="in no layer"):
        upward_imports(graph, [("low", "low", 0)])


# ------------------------------------------------------------------------------------------- the project
@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT, PACKAGES)


def test_no_import_cycles(graph):
    assert import_cycles(graph) == []


def test_imports_point_down_the_layers(graph):
    assert upward_imports(graph, LAYERS) == []


def test_the_corpus_builder_needs_no_codec_network_or_training(graph):
    """tokenlm and multimodal build their data with codec.data; it must not pull in the codec's model."""
    reached, todo = set(), [m for m in graph if m.startswith("codec.data")]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module])
    assert not {m for m in reached if m.startswith(("codec.nn", "codec.train", "codec.pipeline"))}
