"""The import graph of ``vectorizer_module``, ``clip_training`` and ``plugin_api`` has no cycle, imports run
one way, as ``docs/architecture.md`` lists the modules (each imports only modules above it), and the
service never imports training or the plugin. The graph is read from the source with ``ast`` (nothing is
imported); imports inside functions count too, since a deferred import is still a dependency."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("vectorizer_module", "clip_training", "plugin_api")
SERVICE = "vectorizer_module"
ARCHITECTURE = ROOT / "docs" / "architecture.md"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that the module ``name`` (at ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # "from a import b": the module a.b if there is one, else a (b is a name defined in a)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # "import a.b.c" of a name inside a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported(name, path, known) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None if it has none (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def documented_order(text: str) -> list[str]:
    """The modules of the fenced package trees of ``text`` (``package/`` then indented ``name.py`` or
    ``folder/`` lines, two spaces a level), as dotted names, in the order listed."""
    order = []
    for block in re.findall(r"^```\n(.*?)^```", text, re.M | re.S):
        lines = block.splitlines()
        if not re.fullmatch(r"\w+/", lines[0].strip()):
            continue
        folders = [lines[0].strip().rstrip("/")]
        for line in lines[1:]:
            match = re.match(r"^( *)([\w/]+(?:\.py|/))(?:\s|$)", line)
            if not match:
                continue
            level = len(match.group(1)) // 2
            folders = folders[:level]
            if match.group(2).endswith("/"):
                folders.append(match.group(2).rstrip("/"))
            else:
                order.append(".".join(folders + match.group(2).removesuffix(".py").split("/")))
    return order


def test_the_graph_is_read():
    graph = import_graph()
    assert "vectorizer_module.models.hf_clip" in graph["vectorizer_module.models.openclip"]
    assert "vectorizer_module.models.files" in graph["vectorizer_module.models.st_text"]
    assert "plugin_api.processes" in graph["plugin_api.stack"]


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def within(name: str, parts: tuple[str, ...]) -> bool:
    return any(name == part or name.startswith(part + ".") for part in parts)


def unnamed_by_the_list(path: Path) -> bool:
    """A package's ``__init__.py`` or ``__main__.py``: the list names folders and modules only."""
    return path.name in ("__init__.py", "__main__.py")


def test_each_documented_module_imports_only_modules_listed_above_it():
    graph, order = import_graph(), documented_order(ARCHITECTURE.read_text(encoding="utf-8"))
    position = {name: index for index, name in enumerate(order)}
    known = modules()
    unlisted = [n for n in graph if n not in position and not unnamed_by_the_list(known[n])]
    assert not unlisted, f"modules missing from {ARCHITECTURE.name}: {unlisted}"
    upward = [
        f"{name} imports {target}, listed below it"
        for name in order
        for target in sorted(graph.get(name, ()))
        if position.get(target, -1) > position[name]
    ]
    assert not upward, "; ".join(upward)


def test_the_documented_order_is_read():
    order = documented_order(ARCHITECTURE.read_text(encoding="utf-8"))
    assert order.index("vectorizer_module.models.files") < order.index("vectorizer_module.models.loading")
    assert "clip_training.random_models.clip" in order and "vectorizer_module.protocols.common" in order
    assert order[-1] == "plugin_api.cli"
    assert order.index("vectorizer_module.answers") < order.index("vectorizer_module.engine")
    assert order.index("vectorizer_module.cli") < order.index("clip_training.random_models.clip")
    assert order.index("clip_training.shapes.synthetic") < order.index("plugin_api.sample")
    text = "```\npkg/\n  a.py   x\n  sub/\n    b.py  y\n  c/d.py z\n  e.py\n```\n"
    assert documented_order(text) == ["pkg.a", "pkg.sub.b", "pkg.c.d", "pkg.e"]


def test_the_service_imports_neither_training_nor_the_plugin():
    graph = import_graph()
    reached = {
        f"{name} imports {target}"
        for name, targets in graph.items()
        if within(name, (SERVICE,))
        for target in targets
        if not within(target, (SERVICE,))
    }
    assert not reached, "; ".join(sorted(reached))
    assert any(within(t, (SERVICE,)) for t in graph["clip_training.train"])  # the graph does cross the other way


@pytest.mark.parametrize(
    "graph, cycle",
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
        ({"a": {"b", "c"}, "b": set(), "c": {"c2"}, "c2": {"c"}}, ["c", "c2", "c"]),
    ],
)
def test_find_cycle(graph, cycle):
    assert find_cycle(graph) == cycle


def test_a_relative_import_is_resolved(tmp_path):
    source = tmp_path / "b.py"
    source.write_text("from .. import a\nfrom ..a import thing\nfrom . import c\n")
    known = {"pkg": None, "pkg.sub": None, "pkg.a": None, "pkg.sub.b": None}
    # a module a.b if there is one, else the package that defines the name
    assert imported("pkg.sub.b", source, known) == {"pkg.a", "pkg.sub"}
