"""The package's layers: imports point down, never up or sideways, and never in a cycle (lazy ones too).

    cli → tune → study, analysis, interpret → engines → agents, envs → games, host → errors, fileio, console, yamlfile

Each package's ``__init__.py`` says the same in words; this test keeps the words true.
"""

import ast
import re
from pathlib import Path

import dimattn

SRC = Path(dimattn.__file__).parent
#: A module may import modules of a lower layer, and of its own package. ``networks`` is the re-export
#: that keeps checkpoints written before the layout move loadable.
LAYER = {"errors": 0, "fileio": 0, "console": 0, "yamlfile": 0, "host": 1, "games": 1, "agents": 2, "envs": 2,
         "networks": 3, "engines": 3, "study": 4, "analysis": 4, "interpret": 4, "axes": 4, "tune": 5, "cli": 6,
         "__main__": 7, "__init__": 7}
#: Sideways arrows between packages of one layer that are part of the design.
ALLOWED = {("analysis", "engines"), ("axes", "analysis"), ("axes", "interpret"), ("fileio", "errors"),
           ("yamlfile", "errors"), ("yamlfile", "fileio")}


def _imports() -> dict[str, set[str]]:
    graph = {}
    for path in SRC.rglob("*.py"):
        module = ".".join(("dimattn", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[module] = {t for t in targets if t.startswith("dimattn.")}
    return graph


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_imports_point_down():
    wrong = []
    for module, targets in _imports().items():
        if module == "dimattn":
            continue
        here = _package(module)
        for target in targets:
            there = _package(target)
            if there == here or there not in LAYER:
                continue
            if LAYER[there] > LAYER[here] or (LAYER[there] == LAYER[here] and (here, there) not in ALLOWED):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    graph = _imports()
    modules = set(graph)

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = {m: {r for t in ts if (r := resolve(t)) and r != m and r != "dimattn"} for m, ts in graph.items()}

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for nxt in edges.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    cycles = sorted(m for m in edges if m in reachable(m) and not m.endswith("__init__"))
    assert not cycles, f"modules in import cycles: {cycles}"


def test_analysis_imports_only_the_modules_its_index_names():
    """analysis/__init__.py's "May import:" names modules of other packages one by one: nothing else is imported."""
    doc = ast.get_docstring(ast.parse((SRC / "analysis" / "__init__.py").read_text())) or ""
    allowed = re.findall(r"``(dimattn(?:\.\w+)+)``", doc.split("May import:")[1].split("Nothing else")[0])
    assert "dimattn.engines.rundir" in allowed and "dimattn.errors" in allowed, allowed
    wrong = [f"{module} -> {target}" for module, targets in _imports().items() if module.startswith("dimattn.analysis")
             for target in targets if target != "dimattn" and not target.startswith("dimattn.analysis")
             and not any(target == a or target.startswith(f"{a}.") for a in allowed)]
    assert not wrong, "analysis imports what its __init__ does not declare:\n" + "\n".join(sorted(wrong))


def test_package_indexes_name_every_module():
    """Each subpackage's ``__init__`` docstring draws its files, one indented ``name.py`` line each: every
    module of the package is there, and nothing that is not a module."""
    wrong = []
    for init in sorted(SRC.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        named = re.findall(r"^ +([A-Za-z_]\w*\.py)\b", doc, re.MULTILINE)
        modules = {p.name for p in init.parent.glob("*.py")} - {"__init__.py"}
        package = init.parent.name
        wrong += [f"{package}/__init__.py does not name {m}" for m in sorted(modules - set(named))]
        wrong += [f"{package}/__init__.py names {m}, which is not a module of {package}"
                  for m in sorted(set(named) - modules)]
        wrong += [f"{package}/__init__.py names {m} twice" for m in sorted({m for m in named if named.count(m) > 1})]
    assert not wrong, "package indexes out of date:\n" + "\n".join(wrong)
