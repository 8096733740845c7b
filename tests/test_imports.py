"""The import graph: toolkit/data is model-agnostic, and module-level imports form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path
from toolkit.paths import ROOT

PACKAGES = ("toolkit", "jobs", "extensions_built_in")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """Project modules `path` imports (at module level only, or anywhere, TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(
                        package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                    )
                found.add(base)
                found.update(f"{base}.{alias.name}" for alias in node.names)
            if not top_level_only or isinstance(node, (ast.If, ast.Try)):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    child = getattr(node, field, None)
                    if isinstance(child, list):
                        visit(child)

    visit(tree.body)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def test_data_package_imports_no_model_code():
    for path in (ROOT / "toolkit" / "data").glob("*.py"):
        bad = sorted(
            m for m in imports(path, top_level_only=False) if m.startswith(("toolkit.models", "toolkit.stable"))
        )
        assert not bad, f"{path.name} imports {bad}: toolkit/data takes what depends on the model as arguments"


def test_dataset_and_references_do_not_import_each_other():
    data = ROOT / "toolkit" / "data"
    assert not any(m.startswith("toolkit.data.dataset") for m in imports(data / "references.py", False))
    assert not any(m.startswith("toolkit.data.references") for m in imports(data / "dataset.py", False))


def test_module_level_imports_have_no_cycle():
    modules = project_modules()
    graph = {
        name: {m for m in imports(path, top_level_only=True) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A package's __init__ importing its own submodules is how packages work, not a cycle.
    graph = {name: {m for m in deps if not m.startswith(name + ".")} for name, deps in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str):
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                walk(dep)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name)
